"""segmint: customer segments a marketing team can act on, from raw retail transactions.

The public names below are imported on first use (PEP 562), so ``segmint --version`` and
the commands that do not need scikit-learn or ibis start without loading them.
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

# scikit-learn's OpenMP runtime (GNU libgomp in its wheels) keeps idle threads spinning
# after each parallel region by default. K-Means alternates such regions with
# OpenBLAS calls that have their own threads, and on a machine with other work (a CI
# runner, a shared server, a second test worker) the spinning threads take the cores
# the working ones need: with two other busy processes on 2 cores, the model selection
# of `segmint run` on Online Retail took twice as long, three K-Means fits of its
# customers 2.6 to 31 times (benchmarks/threads.py). Idle, sleeping threads cost
# nothing measurable. Read once, when libgomp
# loads, so it is set here, before scikit-learn can be imported; a value the user set
# (OMP_WAIT_POLICY=ACTIVE) wins.
if not os.environ.get("OMP_WAIT_POLICY"):  # empty is libgomp's "invalid value"
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# SEGMINT_THREADS (``--threads``) caps scikit-learn's OpenMP threads as well as DuckDB's:
# a user who gives segmint two cores of a shared server means the model fitting too.
# Read by libgomp when it loads, like the policy above; the user's OMP_NUM_THREADS wins,
# and a value that is not a thread count is left to segmint.io.connect to refuse.
_threads = os.environ.get("SEGMINT_THREADS", "").strip()
if _threads.isdigit() and int(_threads) >= 1 and not os.environ.get("OMP_NUM_THREADS"):
    os.environ["OMP_NUM_THREADS"] = str(int(_threads))
del _threads

__version__ = "0.1.0"

#: public name -> module that defines it (``clean`` is the module itself)
_EXPORTS = {
    "CleanConfig": "segmint.config",
    "CleanResult": "segmint.clean",
    "CleaningAudit": "segmint.clean",
    "LoadConfig": "segmint.config",
    "Resolved": "segmint.schema",
    "SegmintError": "segmint.errors",
    "Segmenter": "segmint.segment",
    "Source": "segmint.io",
    "inspect": "segmint.pipeline",
    "load_model": "segmint.bundle",
    "prepare": "segmint.pipeline",
    "read_source": "segmint.io",
    "resolve": "segmint.schema",
    "run": "segmint.pipeline",
}

__all__ = [
    "CleanConfig",
    "CleanResult",
    "CleaningAudit",
    "LoadConfig",
    "Resolved",
    "SegmintError",
    "Segmenter",
    "Source",
    "__version__",
    "clean",
    "inspect",
    "load_model",
    "prepare",
    "read_source",
    "resolve",
    "run",
]


def __getattr__(name: str) -> Any:
    if name == "clean":  # the module; the function is segmint.clean.clean
        return importlib.import_module("segmint.clean")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segmint' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from segmint import clean
    from segmint.bundle import load_model
    from segmint.clean import CleaningAudit, CleanResult
    from segmint.config import CleanConfig, LoadConfig
    from segmint.errors import SegmintError
    from segmint.io import Source, read_source
    from segmint.pipeline import inspect, prepare, run
    from segmint.schema import Resolved, resolve
    from segmint.segment import Segmenter
