"""The one orchestrator of the stages; the CLI and the API call these and hold no logic.

For now: load -> map -> clean (``prepare``) and the summary behind ``segmint inspect``.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa

from segmint.clean import CleanResult, clean
from segmint.config import CleanConfig, LoadConfig
from segmint.features import CustomerFeatures, customer_features
from segmint.io import Source, read_source, translate_errors
from segmint.rfm import RfmResult, score
from segmint.schema import Resolved, resolve

__all__ = ["Prepared", "build_features", "features_summary", "inspect", "prepare"]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class Prepared:
    """A source loaded, mapped to canonical columns and cleaned."""

    source: Source
    resolved: Resolved
    cleaned: CleanResult
    timings: dict[str, float] = field(default_factory=dict)


def prepare(
    data: str | os.PathLike[str] | pd.DataFrame | pa.Table,
    load: LoadConfig | None = None,
    clean_config: CleanConfig | None = None,
    *,
    con: ibis.BaseBackend | None = None,
    progress: Progress | None = None,
) -> Prepared:
    """Load, map and clean ``data``; each stage timed.

    Parameters
    ----------
    data : path, DataFrame or pyarrow Table
        Transactions or a customer-level table.
    load : LoadConfig, optional
        Reader and mapping options.
    clean_config : CleanConfig, optional
        Cleaning rule options.
    con : ibis backend, optional
        The DuckDB engine to use (default: a new one).
    progress : callable, optional
        Called with a short stage description before each stage.

    Returns
    -------
    Prepared
    """
    load = load or LoadConfig()
    say = progress or (lambda _stage: None)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    say(f"reading {data if isinstance(data, str | Path) else 'data'}")
    source = read_source(
        data,
        format=load.format,
        encoding=load.encoding,
        delimiter=load.delimiter,
        header=load.header,
        sheet=load.sheet,
        all_sheets=load.all_sheets,
        con=con,
    )
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("mapping and checking columns")
    resolved = resolve(
        source,
        load.columns,
        kind=load.kind,
        date_format=load.date_format,
        dayfirst=load.dayfirst,
    )
    timings["resolve"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("cleaning")
    cleaned = clean(resolved, clean_config)
    timings["clean"] = time.perf_counter() - t0
    return Prepared(source, resolved, cleaned, timings)


def build_features(
    prepared: Prepared,
    *,
    snapshot_date: str | None = None,
    window: str | None = None,
    rule_set: str = "rf-grid",
    thresholds: dict[str, list[float]] | None = None,
    progress: Progress | None = None,
) -> tuple[CustomerFeatures, RfmResult]:
    """Customer features and RFM scores of a prepared source (timed into ``prepared``)."""
    say = progress or (lambda _stage: None)
    t0 = time.perf_counter()
    say("computing customer features")
    feats = customer_features(prepared.cleaned, snapshot_date, window=window)
    prepared.timings["features"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("scoring RFM")
    rfm = score(
        feats,
        rule_set=rule_set,
        method="fixed" if thresholds else "quantile",
        thresholds=thresholds,
    )
    prepared.timings["rfm"] = time.perf_counter() - t0
    return feats, rfm


def features_summary(feats: CustomerFeatures, rfm: RfmResult, prepared: Prepared) -> dict[str, Any]:
    """The JSON-friendly ``features``, ``rfm`` and ``timings`` parts of a summary."""
    return {
        "features": {
            **feats.metadata(),
            "customers": feats.n_customers,
            "summary": feats.summary(),
        },
        "rfm": {
            **rfm.metadata(),
            "rule_set_title": rfm.rule_set.title,
            "segments": rfm.segments().to_dict(orient="records"),
        },
        "timings": {k: round(v, 3) for k, v in prepared.timings.items()},
    }


def inspect(
    data: str | os.PathLike[str] | pd.DataFrame | pa.Table,
    load: LoadConfig | None = None,
    clean_config: CleanConfig | None = None,
    *,
    rejected: str | os.PathLike[str] | None = None,
    snapshot_date: str | None = None,
    rule_set: str = "rf-grid",
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Everything ``segmint inspect`` shows, as one JSON-friendly dict.

    Keys: ``source`` (format, encoding, delimiter, ...), ``columns`` (name, type, example),
    ``mapping``, ``audit``, ``features`` (snapshot date, per-feature summary), ``rfm``
    (rule set, cut points, customers per segment) and ``timings``; ``rejected`` when
    ``rejected`` was given.
    """
    prepared = prepare(data, load, clean_config, progress=progress)
    feats, rfm = build_features(
        prepared, snapshot_date=snapshot_date, rule_set=rule_set, progress=progress
    )
    src = prepared.source
    with translate_errors(src.path):
        head = src.table.limit(50).to_pyarrow().to_pylist()
    columns = []
    for name, dtype in src.table.schema().items():
        if name == "_row":
            continue
        example = next((r[name] for r in head if r[name] not in (None, "")), None)
        columns.append({"name": name, "type": str(dtype), "example": _jsonable(example)})
    summary: dict[str, Any] = {
        "source": src.describe(),
        "columns": columns,
        "mapping": prepared.resolved.mapping.to_dict(),
        "audit": prepared.cleaned.audit.to_dict(),
        **features_summary(feats, rfm, prepared),
    }
    if rejected is not None:
        if progress:
            progress(f"writing rejected lines to {rejected}")
        summary["rejected"] = str(prepared.cleaned.write_rejected(rejected))
    return summary


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
