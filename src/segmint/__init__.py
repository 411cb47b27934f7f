"""segmint: customer segments a marketing team can act on, from raw retail transactions."""

from segmint import clean  # the module; the function is segmint.clean.clean
from segmint.bundle import load_model
from segmint.clean import CleaningAudit, CleanResult
from segmint.config import CleanConfig, LoadConfig
from segmint.errors import SegmintError
from segmint.io import Source, read_source
from segmint.pipeline import inspect, prepare, run
from segmint.schema import Resolved, resolve
from segmint.segment import Segmenter

__version__ = "0.1.0"

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
