"""The one orchestrator of the stages; the CLI and the API call these and hold no logic.

``prepare`` (load -> map -> clean), ``build_features`` (features + RFM), the summary
behind ``segmint inspect``, and ``run``: every stage end to end, written as one folder.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import pandas as pd
import pyarrow as pa

from segmint._tables import ArrowStreamTable, has_arrow_stream, to_arrow
from segmint._text import count
from segmint.clean import CleanResult, clean
from segmint.clv import CLV_COLUMNS
from segmint.config import CleanConfig, LoadConfig
from segmint.errors import ConfigError, DataQualityError, WrongTypeError
from segmint.features import (
    LINE_FEATURES,
    CustomerFeatures,
    customer_features,
    returns_left_out_note,
)
from segmint.io import Source, read_source, translate_errors
from segmint.rfm import RfmResult, score
from segmint.schema import Resolved, resolve

__all__ = [
    "RUN_FILES",
    "Prepared",
    "RunResult",
    "build_features",
    "features_summary",
    "inspect",
    "prepare",
    "run",
]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]


@dataclass
class Prepared:
    """A source loaded, mapped to canonical columns and cleaned."""

    source: Source
    resolved: Resolved
    cleaned: CleanResult
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        """One line of figures (the default repr printed every ibis expression)."""
        a = self.cleaned.audit
        return (
            f"<Prepared {a.source!r} ({a.kind}): {a.input_rows:,} rows in, {a.kept_rows:,} "
            f"kept, {a.kept_customers:,} customers; .cleaned, .resolved, .source>"
        )


def prepare(
    data: str | os.PathLike[str] | pd.DataFrame | pa.Table | ArrowStreamTable,
    load: LoadConfig | None = None,
    clean_config: CleanConfig | None = None,
    *,
    con: ibis.BaseBackend | None = None,
    progress: Progress | None = None,
) -> Prepared:
    """Load, map and clean ``data``; each stage timed.

    Parameters
    ----------
    data : path, DataFrame or a table with the Arrow stream interface
        Transactions or a customer-level table (pyarrow, polars, a DuckDB relation:
        see :func:`~segmint.io.read_source`).
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
    source = open_source(data, load, con=con, progress=say)
    timings["load"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("mapping and checking columns")
    resolved = resolve(
        source,
        load.columns,
        kind=load.kind,
        date_format=load.date_format,
        dayfirst=load.dayfirst,
        timezone=load.timezone,
    )
    timings["resolve"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("cleaning")
    cleaned = clean(resolved, clean_config)
    timings["clean"] = time.perf_counter() - t0
    return Prepared(source, resolved, cleaned, timings)


def open_source(
    data: str | os.PathLike[str] | pd.DataFrame | pa.Table | ArrowStreamTable,
    load: LoadConfig,
    *,
    con: ibis.BaseBackend | None = None,
    progress: Progress | None = None,
) -> Source:
    """Open ``data`` on the engine that should run the work: a ``postgresql://`` URL in
    its own server (``load.table`` or ``load.query``), ``load.engine = "spark"`` on
    Spark, anything else on DuckDB (an SQLite database, ``sqlite:///`` URL or file, or a
    ``mysql://`` / ``mariadb://`` URL, copied once into Parquet for it)."""
    from segmint import engines
    from segmint import mysql as mysql_db
    from segmint import sqlite as sqlite_db

    say = progress or (lambda _stage: None)
    if engines.is_database_url(data):
        if load.engine == "spark":
            # it ran inside PostgreSQL without a word, while MySQL and SQLite refuse it
            raise ConfigError(
                f"{engines.mask_url(str(data))}: a PostgreSQL table is read and processed "
                "inside PostgreSQL, not on Spark",
                hint="leave --engine spark out (or export the table to Parquet for Spark)",
            )
        say(f"reading {engines.mask_url(str(data))}")
        return engines.read_database(str(data), table=load.table, query=load.query)
    if mysql_db.is_mysql_url(data):
        if load.engine == "spark":
            raise ConfigError(
                f"{engines.mask_url(str(data))}: a MySQL or MariaDB database is read on this "
                "machine, not on Spark",
                hint="leave --engine spark out (or export the table to Parquet for Spark)",
            )
        say(f"reading {engines.mask_url(str(data))}")
        return mysql_db.read_mysql(
            str(data), table=load.table, query=load.query, con=con, progress=say
        )
    sqlite_url = sqlite_db.is_sqlite_url(data)
    if sqlite_url or (isinstance(data, str | os.PathLike) and sqlite_db.is_sqlite_file(data)):
        if load.engine == "spark":
            raise ConfigError(
                f"{data}: an SQLite database is read on this machine, not on Spark",
                hint="leave --engine spark out (or export the table to Parquet for Spark)",
            )
        say(f"reading {data}")
        path = sqlite_db.sqlite_path(str(data)) if sqlite_url else Path(data)
        return sqlite_db.read_sqlite(
            path, table=load.table, query=load.query, con=con, display=str(data), progress=say
        )
    if load.table or load.query:
        raise ConfigError(
            "--table and --query read from a database: give a postgresql://, mysql:// or "
            "sqlite:/// URL (or an SQLite file) as the data",
            hint="e.g. segmint run sqlite:///shop.db --table sales, or "
            "segmint run postgresql://user@host/db --table sales",
        )
    if load.engine == "spark":
        if not isinstance(data, str | os.PathLike):
            raise ConfigError("the Spark engine reads paths or Spark table names, not data frames")
        say(f"reading {data} on Spark")
        return engines.read_spark(
            str(data),
            master=load.spark_master,
            format=load.format,
            encoding=load.encoding,
            delimiter=load.delimiter,
            header=load.header,
        )
    say(f"reading {data if isinstance(data, str | Path) else 'data'}")
    return read_source(
        data,
        format=load.format,
        encoding=load.encoding,
        delimiter=load.delimiter,
        header=load.header,
        sheet=load.sheet,
        all_sheets=load.all_sheets,
        con=con,
    )


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


def _returns_left_out(feats: CustomerFeatures) -> dict[str, Any]:
    """The return lines no customer's revenue counts, as counts and as a sentence (one
    query: see :meth:`CustomerFeatures.returns_left_out`)."""
    left = feats.returns_left_out()
    return {
        "returns_left_out": left,
        "returns_left_out_note": returns_left_out_note(left, feats.snapshot_date),
    }


def features_summary(feats: CustomerFeatures, rfm: RfmResult, prepared: Prepared) -> dict[str, Any]:
    """The JSON-friendly ``features``, ``rfm`` and ``timings`` parts of a summary."""
    return {
        "features": {
            **feats.metadata(),
            "customers": feats.n_customers,
            "summary": feats.summary(),
            **_returns_left_out(feats),
        },
        "rfm": {
            **rfm.metadata(),
            "rule_set_title": rfm.rule_set.title,
            "segments": rfm.segments().to_dict(orient="records"),
        },
        "timings": {k: round(v, 3) for k, v in prepared.timings.items()},
    }


def inspect(
    data: str | os.PathLike[str] | pd.DataFrame | pa.Table | ArrowStreamTable,
    load: LoadConfig | None = None,
    clean_config: CleanConfig | None = None,
    *,
    rejected: str | os.PathLike[str] | None = None,
    snapshot_date: str | None = None,
    rule_set: str = "rf-grid",
    progress: Progress | None = None,
    escape: bool = True,
) -> dict[str, Any]:
    """Everything ``segmint inspect`` shows, as one JSON-friendly dict.

    Keys: ``source`` (format, encoding, delimiter, ...), ``columns`` (name, type, example),
    ``mapping``, ``audit``, ``features`` (snapshot date, per-feature summary), ``rfm``
    (rule set, cut points, customers per segment) and ``timings``; ``rejected`` when
    ``rejected`` was given (a CSV of them escaped against spreadsheet formulas unless
    ``escape=False``: see :meth:`CleanResult.write_rejected`).
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
        summary["rejected"] = str(prepared.cleaned.write_rejected(rejected, escape=escape))
    return summary


def _jsonable(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


# ----------------------------------------------------------------------------- run
#: LoadConfig fields that say where the data lives (not stored in a model bundle).
_WHERE = frozenset({"engine", "spark_master", "table", "query"})

#: Files of a run folder, in the order they are written (see README "Outputs").
RUN_FILES = (
    "customers.parquet",
    "segments.csv",
    "rfm_thresholds.toml",
    "audit.json",
    "rejected.parquet",
    "selection.csv",
    "report.html",
    "summary.json",
    "model.segmint",
    "run.json",
)


def _history_days(customers: pd.DataFrame) -> int | None:
    """Days of history behind a customer table: from the earliest first purchase to the
    snapshot (recency + tenure), None when the table lacks either."""
    if not {"recency_days", "tenure_days"} <= set(customers.columns) or customers.empty:
        return None
    span = (customers["recency_days"] + customers["tenure_days"]).max()
    return None if pd.isna(span) else int(span)


@dataclass
class RunResult:
    """Everything one run produced; ``write(out)`` saves it as a run folder.

    Attributes
    ----------
    customers : DataFrame
        One row per customer (sorted by id): features, RFM scores and segment, the
        segment id, name, action, confidence and distance.
    segmenter : Segmenter
    profile : Profile
    report : Report
    features : CustomerFeatures
    rfm : RfmResult
    prepared : Prepared
    config : RunConfig
    timings : dict
        Seconds per stage.
    """

    customers: pd.DataFrame
    segmenter: Any
    profile: Any
    report: Any
    features: CustomerFeatures
    rfm: RfmResult
    prepared: Prepared
    config: Any
    timings: dict[str, float]
    fingerprint: dict[str, Any]
    out: Path | None = None
    clv: Any = None
    clv_note: str | None = None
    future_choice: Any = None

    def __repr__(self) -> str:
        """What the run found, in one line: the default repr printed the whole customer
        table, the report's HTML and every ibis expression (over 1 MB in a notebook)."""
        seg = self.segmenter
        from segmint.segment.segmenter import _NAMES

        algorithm = getattr(seg, "algorithm_", None)
        return (
            f"<RunResult: {len(self.customers):,} customers in "
            f"{getattr(seg, 'n_segments_', '?')} segments "
            f"({_NAMES.get(str(algorithm), algorithm)}), snapshot "
            f"{self.features.snapshot_date}, out={str(self.out) if self.out else None!r}; "
            ".customers, .profile.table, .report, .segmenter>"
        )

    def bundle_metadata(self) -> dict[str, Any]:
        """What the model bundle stores beside the model."""
        cfg = self.config
        rfm_meta = self.rfm.metadata()
        rule_set_text = None
        suffix = None
        rs = cfg.rfm.rule_set
        if Path(rs).suffix.lower() in (".toml", ".csv") and Path(rs).is_file():
            rule_set_text = Path(rs).read_text(encoding="utf-8")
            suffix = Path(rs).suffix.lower()
        return {
            "snapshot_rule": (
                f"fixed {cfg.features.snapshot_date}"
                if cfg.features.snapshot_date
                else "day after the last purchase in the data"
            ),
            "snapshot_date": self.features.metadata().get("snapshot_date"),
            "window": cfg.features.window,
            "kind": self.features.kind,
            # how to read the data, not where it lived: scoring names its own source
            "load": cfg.load.model_dump(exclude={"columns", *_WHERE})
            | {"columns": cfg.load.columns},
            "clean": cfg.clean.model_dump(),
            "rfm": {
                "rule_set": rfm_meta["rule_set"],
                "rule_set_version": rfm_meta["rule_set_version"],
                "cut_points": rfm_meta["cut_points"],
                "rule_set_text": rule_set_text,
                "rule_set_suffix": suffix,
            },
            "segment_names": {str(k): v for k, v in self.profile.names().items()},
            "segment_actions": {str(k): v for k, v in self.profile.actions().items()},
            "profiles": self.profile.to_records(),
            "selection": json.loads(self.segmenter.selection_.to_json(orient="records")),
            "clv": (dict(self.report.summary["clv"]) if self.report.summary.get("clv") else None),
            "future_selection": (
                self.future_choice.describe() if self.future_choice is not None else None
            ),
            "model": self.segmenter.describe(),
            "training": {
                "customers": int(len(self.customers)),
                "history_days": _history_days(self.customers),
                "fingerprint": self.fingerprint,
                "feature_ranges": {
                    f: [float(lo), float(hi)]
                    for f, lo, hi in zip(
                        self.segmenter.transform_.features_,
                        self.segmenter.transform_.training_min_,
                        self.segmenter.transform_.training_max_,
                        strict=True,
                    )
                },
                # the typical customer (the web page's placeholders, the API's examples):
                # the middle of a skewed range is far from anyone (spend 139,318 where the
                # median customer spent 650)
                "feature_medians": {
                    f: _finite_or_none(pd.to_numeric(self.customers[f], errors="coerce").median())
                    for f in self.segmenter.transform_.features_
                    if f in self.customers
                },
            },
        }

    def write(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write the run folder atomically (see :func:`write_run_folder`)."""
        self.out = write_run_folder(self, out, overwrite=overwrite)
        return self.out


def make_segmenter(seg_cfg: Any, n_customers: int, *, k_max: int | None = None) -> Any:
    """The :class:`~segmint.segment.Segmenter` a ``[segment]`` configuration describes
    (``k_max`` caps the searched number of segments).

    The range is not cut to the customers here: the Segmenter cuts it to those it
    clusters and says so (a warning and a line in ``explain()``), where a cut here
    left the user who asked ``--k-max 10`` of 6 customers without a word.
    ``n_customers`` is kept for callers' compatibility."""
    from segmint.segment import Segmenter

    top = seg_cfg.k_max if k_max is None else min(seg_cfg.k_max, k_max)
    n_clusters = seg_cfg.n_clusters
    return Segmenter(
        features=seg_cfg.features,
        categorical=seg_cfg.categorical or None,
        algorithm=seg_cfg.algorithm,
        n_clusters=n_clusters,
        k_range=(seg_cfg.k_min, top),
        log=seg_cfg.log,
        scaler=seg_cfg.scaler,
        clip=seg_cfg.clip,
        pca=(int(seg_cfg.pca) if seg_cfg.pca is not None and seg_cfg.pca >= 1 else seg_cfg.pca),
        algorithm_params=seg_cfg.algorithm_params or None,
        sample_size=seg_cfg.sample_size or "auto",
        selection_sample=seg_cfg.selection_sample,
        stability_resamples=seg_cfg.stability_resamples,
        min_stability=seg_cfg.min_stability,
        min_segment_share=seg_cfg.min_segment_share,
        tolerance=seg_cfg.tolerance,
        max_noise_share=seg_cfg.max_noise_share,
        time_budget=seg_cfg.time_budget,
        value_tier=seg_cfg.value_tier,
        random_state=seg_cfg.seed,
    )


#: Libraries of the stages after cleaning, imported ahead by _warm_imports.
_LATER_IMPORTS = (
    "sklearn.cluster",
    "sklearn.mixture",
    "sklearn.metrics",
    "segmint.segment",
    "segmint.profile",
    "segmint.report",
    "segmint.bundle",
    "skops.io",
    "altair",
    "vl_convert",
)


def _warm_imports() -> threading.Thread | None:
    """Import the later stages' libraries (scikit-learn, skops, Altair: about 2 s) in a
    background thread while DuckDB loads and cleans, which releases the GIL, so the
    imports are off the critical path of a run. An import error is left for the stage
    that needs the module to report. Returns the thread (None when there is nothing to
    import): :func:`run` joins it before the segmentation, because modules that enter
    ``warnings.catch_warnings()`` as they are imported (skops) restore, on Python 3.11,
    the process-wide warning state they found, which undid the fit's own capture of
    scikit-learn's ConvergenceWarnings and printed them on stderr now and then."""
    import importlib
    import sys

    missing = [m for m in _LATER_IMPORTS if m not in sys.modules]
    if not missing:
        return None

    def work() -> None:
        for module in missing:
            try:
                importlib.import_module(module)
            except Exception:  # noqa: BLE001, S112 - reported by the stage that uses it
                continue

    thread = threading.Thread(target=work, name="segmint-imports")
    thread.start()
    return thread


def _finite_or_none(value: Any) -> float | None:
    """``value`` as a float, or None for a missing or infinite one (JSON has neither)."""
    v = float(value)
    return v if math.isfinite(v) else None


def _fingerprint(data: Any) -> dict[str, Any]:
    """Identify the training data: file name, size and SHA-256, or a hash of a table."""
    from segmint.engines import is_database_url, mask_url
    from segmint.mysql import is_mysql_url

    if is_database_url(data) or is_mysql_url(data):
        # the database's identity without its password; what was read (load.table or
        # load.query) is in the run's configuration beside it
        return {"source": mask_url(str(data))}
    from segmint.sqlite import is_sqlite_url, sqlite_path

    if is_sqlite_url(data):
        data = sqlite_path(str(data))  # the database file, hashed as any input file
    if isinstance(data, str | os.PathLike):
        p = Path(data)
        if p.is_file():
            h = hashlib.sha256()
            with p.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
            return {"source": p.name, "bytes": p.stat().st_size, "sha256": h.hexdigest()}
        return {"source": p.name}
    if isinstance(data, pa.Table):
        data = data.to_pandas()
    if isinstance(data, pd.DataFrame):
        digest = hashlib.sha256(
            pd.util.hash_pandas_object(data, index=False).to_numpy()
        ).hexdigest()
        return {"source": "table", "rows": int(len(data)), "sha256": digest}
    return {"source": type(data).__name__}


def _check_segment_columns(seg_cfg: Any, customers: pd.DataFrame, clv: bool) -> None:
    """The features and categorical columns asked for exist in the customer table (the
    names were checked when the configuration was read; the shares named after channels
    and categories, and the lifetime value columns, depend on the data and options)."""
    from segmint.errors import ConfigError

    for key, flag, names in (
        ("features", "--features", seg_cfg.features or []),
        ("categorical", "--categorical", seg_cfg.categorical or []),
    ):
        missing = [c for c in names if c not in customers.columns]
        if not missing:
            continue
        numeric = [
            c
            for c in customers.columns
            if c != "customer_id" and pd.api.types.is_numeric_dtype(customers[c])
        ]
        why = ""
        if any(c in CLV_COLUMNS for c in missing) and not clv:
            why = " (lifetime value is switched off: leave out --no-clv)"
        raise ConfigError(
            f"{flag} (segment.{key}): {', '.join(map(repr, missing))} "
            f"{'is' if len(missing) == 1 else 'are'} not in the customer table of these "
            f"data{why}",
            hint=f"numeric features of these data: {', '.join(numeric)}"
            if key == "features"
            else "columns of these data: "
            + ", ".join(c for c in customers.columns if c not in numeric and c != "customer_id"),
        )


def run(
    data: str | os.PathLike[str] | pd.DataFrame | pa.Table | ArrowStreamTable,
    config: Any = None,
    *,
    out: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    con: ibis.BaseBackend | None = None,
    progress: Progress | None = None,
    search_progress: Callable[[int, int, str], None] | None = None,
) -> RunResult:
    """Load, clean, build features, score RFM, segment, profile, report and bundle.

    Parameters
    ----------
    data : path, DataFrame or a table with the Arrow stream interface
        Transactions or a customer-level table (pyarrow, polars, a DuckDB relation:
        see :func:`~segmint.io.read_source`).
    config : RunConfig, dict or path of a ``segmint.toml``, optional
        Options of every stage (``segmint init`` writes them all with their defaults).
    out : path, optional
        Write the run folder here (atomically; an existing folder needs ``overwrite``).
    con : ibis backend, optional
        The DuckDB engine (default: a new one with segmint's memory limit).
    progress : callable, optional
        ``progress(stage)`` before each stage.
    search_progress : callable, optional
        ``search_progress(done, total, description)`` during the model search.

    Returns
    -------
    RunResult

    Examples
    --------
    >>> import segmint
    >>> from segmint.datasets import make_transactions
    >>> lines, _ = make_transactions(n_customers=300, seed=1)
    >>> result = segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 4}})
    >>> result.customers["segment_name"].nunique()
    4
    """
    from segmint.config import RunConfig
    from segmint.profile import profile
    from segmint.report import build_report

    if config is None:
        config = RunConfig()
    elif isinstance(config, str | os.PathLike):
        # the file `segmint run --config` reads; it was an AttributeError ('str' object
        # has no attribute 'load')
        from segmint.config import load_run_config

        config = load_run_config(Path(config))
    elif isinstance(config, dict):
        from segmint.config import load_run_config

        flat: dict[str, Any] = {}
        for section, values in config.items():
            if isinstance(values, dict):
                flat.update({f"{section}.{k}": v for k, v in values.items()})
            elif isinstance(section, str) and "." in section:
                flat[section] = values  # {"segment.algorithm": "kmeans"}, as --set takes it
            else:
                raise ConfigError(
                    f"config[{section!r}] is {values!r}, not a section of options",
                    hint='give sections of options, {"segment": {"n_clusters": 5}}, or '
                    'dotted keys, {"segment.n_clusters": 5}',
                )
        config = load_run_config(None, flat)
    elif not isinstance(config, RunConfig):
        raise WrongTypeError(
            f"config is a {type(config).__name__}, not a RunConfig, a dict or the path of a "
            "segmint.toml",
            hint='e.g. segmint.run(data, "segmint.toml") or segmint.run(data, {"segment": '
            '{"n_clusters": 5}})',
        )
    if out is not None:
        check_output_folder(out, overwrite)
    if not isinstance(data, str | os.PathLike | pd.DataFrame | pa.Table) and has_arrow_stream(data):
        # read once: the run fingerprints the data after loading it, and a one-shot
        # stream (a RecordBatchReader) read a second time is empty
        data = to_arrow(data, "segmint.run")
    say = progress or (lambda _stage: None)
    t_all = time.perf_counter()
    imports = _warm_imports()
    prepared = prepare(data, config.load, config.clean, con=con, progress=say)
    # features, lifetime value and the report each read the clean lines: keep them once
    prepared.cleaned = prepared.cleaned.persist()
    timings = dict(prepared.timings)
    feats, rfm = build_features(
        prepared,
        snapshot_date=config.features.snapshot_date,
        window=config.features.window,
        rule_set=config.rfm.rule_set,
        thresholds=config.rfm.thresholds,
        progress=say,
    )
    timings.update({k: prepared.timings[k] for k in ("features", "rfm")})
    customers = feats.to_pandas().sort_values("customer_id", kind="stable").reset_index(drop=True)
    clv_result, clv_note = None, None
    if config.clv.enabled:
        t0 = time.perf_counter()
        clv_result, clv_note = _lifetime_value(prepared, feats, customers, config, say)
        if clv_result is not None:
            values = clv_result.table.set_index("customer_id").reindex(customers["customer_id"])
            for col in values.columns:
                customers[col] = values[col].to_numpy()
        timings["clv"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rfm_table = rfm.table.set_index("customer_id").reindex(customers["customer_id"]).reset_index()
    seg_cfg = config.segment
    if seg_cfg.k_min > seg_cfg.k_max:
        raise ConfigError(
            f"segment.k_min ({seg_cfg.k_min}) is larger than segment.k_max ({seg_cfg.k_max})",
            hint="e.g. --k-min 2 --k-max 10",
        )
    if seg_cfg.n_clusters != "auto" and seg_cfg.n_clusters > len(customers):
        from segmint.errors import DataQualityError

        raise DataQualityError(
            f"{seg_cfg.n_clusters} segments asked for, but the data has only "
            f"{count(len(customers), 'customer')}",
            hint="ask for fewer segments (--k) or use more data",
            code="too_few_customers",
        )
    _check_segment_columns(seg_cfg, customers, config.clv.enabled)
    segmenter = make_segmenter(seg_cfg, len(customers))
    if imports is not None:
        imports.join()  # no import may change the warning state while models are fitted
    future_choice = None
    if seg_cfg.select_by == "future":
        future_choice = _choose_by_future(prepared, feats, config, say)
        segmenter.set_params(
            algorithm=future_choice.algorithm,
            n_clusters=future_choice.k if future_choice.k is not None else "auto",
            value_tier=future_choice.value_tier,
        )
        timings["future_selection"] = time.perf_counter() - t0
    say("searching segmentations")
    segmenter.fit(customers, progress=search_progress)
    timings["segment"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("profiling segments")
    with_rfm = customers.assign(
        rfm_segment=rfm_table["rfm_segment"].to_numpy(),
        rfm_rule_set=rfm_table["rfm_rule_set"].to_numpy(),
    )
    try:
        prof = profile(
            with_rfm,
            segmenter.labels_,
            # once each: a lifetime value column segmented on is also a feature (named
            # twice, it made a two-column frame of the profile's means and an internal error)
            features=list(
                dict.fromkeys(
                    [
                        c
                        for c in customers.columns
                        if c in LINE_FEATURES or c in segmenter.transform_.features_
                    ]
                    + [c for c in CLV_COLUMNS if c in customers.columns]
                )
            ),
            names=config.segments.names or None,
            actions=config.segments.actions or None,
            notes=segmenter.segment_notes(),
            categorical=segmenter.transform_.categorical_,
        )
    except ConfigError as exc:
        if not exc.message.startswith(("names:", "actions:")):
            raise
        # "names: there is no segment 9" came after the whole search, naming neither
        # the key nor where to change it
        raise ConfigError(
            f"segments.{exc.message}",
            hint=(exc.hint + "; " if exc.hint else "")
            + "change [segments] in the configuration (a search's ids change with k)",
            code=exc.code,
        ) from None
    clv_by_segment = None
    if clv_result is not None:
        clv_by_segment = clv_result.by_segment(segmenter.labels_, names=prof.names())
        share = clv_by_segment.set_index("segment_id")["clv_value_share"]
        prof.table["clv_value_share"] = prof.table["segment_id"].map(share).to_numpy()
    details = segmenter.predict_details(customers)
    names, actions = prof.names(), prof.actions()
    full = customers.copy()
    for col in ("r_score", "f_score", "m_score", "rfm_score", "rfm_segment", "rfm_rule_set"):
        full[col] = rfm_table[col].to_numpy()
    full["segment_id"] = segmenter.labels_
    full["segment_name"] = full["segment_id"].map(names)
    full["action"] = full["segment_id"].map(actions)
    full["confidence"] = details["confidence"].to_numpy()
    full["distance"] = details["distance"].to_numpy()
    timings["profile"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    say("building the report")
    report = build_report(
        full,
        segmenter,
        profile_result=prof,
        audit=prepared.cleaned.audit,
        rfm=rfm,
        features_meta=feats.metadata() | _returns_left_out(feats),
        title=config.report.title,
        source=prepared.source.path if isinstance(data, str | os.PathLike) else None,
        sample=config.report.sample,
        seed=seg_cfg.seed,
        clv=_clv_summary(clv_result, clv_by_segment, clv_note),
        future=future_choice.describe() if future_choice is not None else None,
    )
    timings["report"] = time.perf_counter() - t0
    timings["total"] = time.perf_counter() - t_all
    result = RunResult(
        customers=full,
        segmenter=segmenter,
        profile=prof,
        report=report,
        features=feats,
        rfm=rfm,
        prepared=prepared,
        config=config,
        timings={k: round(v, 3) for k, v in timings.items()},
        fingerprint=_fingerprint(data),
        clv=clv_result,
        clv_note=clv_note,
        future_choice=future_choice,
    )
    if out is not None:
        say(f"writing {out}")
        result.write(out, overwrite=overwrite)
    return result


def _lifetime_value(
    prepared: Prepared,
    feats: CustomerFeatures,
    customers: pd.DataFrame,
    config: Any,
    say: Progress,
) -> tuple[Any, str | None]:
    """Fit BG/NBD + Gamma-Gamma; a data problem (too few repeat customers) is reported as
    a note and the run goes on without lifetime value, so one optional stage never sinks
    the segmentation."""
    from segmint.clv import customer_value

    say("fitting lifetime value models")
    try:
        # purchase days come from the lines; a customer-level table only has the
        # feature table already computed (orders, first purchase, tenure)
        data = prepared.cleaned if prepared.resolved.kind == "transactions" else customers
        result = customer_value(
            data,
            feats.snapshot_date,
            horizon=config.clv.horizon,
            discount_rate=config.clv.discount_rate,
            margin=config.clv.margin,
        )
    except DataQualityError as exc:
        note = f"lifetime value left out: {exc.message}"
        log.info(note)  # the CLI prints the note after the run; run.json and the report keep it
        return None, note
    return result, None


def _clv_summary(
    clv: Any, by_segment: pd.DataFrame | None, note: str | None
) -> dict[str, Any] | None:
    """What the report, ``clv.json``, ``summary.json`` and the bundle show of lifetime
    value (``by_segment`` from :meth:`ClvResult.by_segment`).

    Every caveat is in one list, ``notes``: the fit's own (:attr:`ClvResult.notes`), or
    why lifetime value was left out (then ``segments`` is None). There used to be a
    second key, ``note``, null whenever the values were there, beside ``notes``."""
    if clv is None or by_segment is None:
        return {"notes": [note], "segments": None} if note else None
    from segmint.report import _jsonable

    segs = by_segment.rename(columns={"segment_name": "name"}).to_dict(orient="records")
    return clv.describe() | {"segments": _jsonable(segs)}


def _choose_by_future(
    prepared: Prepared, feats: CustomerFeatures, config: Any, say: Progress
) -> Any:
    """``select_by = "future"``: pick the algorithm and k on an earlier split whose
    outcome period ends at the run's snapshot date."""
    from segmint.backtest import select_by_future
    from segmint.clv import horizon_end, horizon_start
    from segmint.features import _as_date

    seg_cfg = config.segment
    if prepared.resolved.kind != "transactions":
        raise ConfigError(
            "select_by = future needs transaction lines with dates; a customer-level table "
            "has no purchases to split",
            hint="use --select-by geometry (the default) for customer tables",
        )
    horizon = seg_cfg.future_horizon
    # calendar months and years: the outcomes of "3M" from 2011-06-01 end at 2011-09-01;
    # a fractional number of days is rounded to whole days up (the split is a date)
    cutoff = (
        _as_date(seg_cfg.future_cutoff, "segment.future_cutoff")
        if seg_cfg.future_cutoff
        else horizon_start(feats.snapshot_date, horizon).floor("D").date()
    )
    if horizon_end(cutoff, horizon) > pd.Timestamp(feats.snapshot_date):
        raise ConfigError(
            f"--future-cutoff (segment.future_cutoff) {cutoff} + {seg_cfg.future_horizon} "
            f"runs past the snapshot date {feats.snapshot_date}",
            hint="choose an earlier --future-cutoff, or leave it out",
        )
    try:
        return select_by_future(
            prepared, config, cutoff=cutoff, horizon=seg_cfg.future_horizon, progress=say
        )
    except DataQualityError as exc:
        if exc.code != "no_customers":
            raise
        # the split is the one given, or the snapshot minus the horizon: say which, and
        # what to change (a shorter horizon does not move a split that was given)
        if seg_cfg.future_cutoff:
            where = f"--future-cutoff (segment.future_cutoff) {cutoff}"
            hint = "choose a later --future-cutoff, or leave it out"
        else:
            where = f"{cutoff} (snapshot {feats.snapshot_date} minus {seg_cfg.future_horizon})"
            hint = (
                "the data need more history than the horizon: use a shorter "
                "--future-horizon, or --select-by geometry"
            )
        raise DataQualityError(
            f"select_by = future: no customer had bought before the selection split {where}",
            hint=hint,
            code="no_customers",
        ) from exc


def check_output_folder(
    out: str | os.PathLike[str], overwrite: bool, *, marker: str = "run.json"
) -> Path:
    """Refuse an existing output folder (unless ``overwrite``) or an unwritable parent.

    ``overwrite`` replaces the whole folder, so it is refused for a folder that has files
    but not ``marker`` (the file every output folder of this kind has): a mistyped
    ``--out ~/Documents --overwrite`` must not delete someone's documents. An existing
    empty folder is used as if it did not exist.
    """
    from segmint.errors import ConfigError

    target = Path(out)
    if target.exists() and not target.is_dir():
        raise ConfigError(f"{target}: exists and is not a folder", hint="choose another --out")
    here = Path.cwd().resolve()
    if target.resolve() == here or target.resolve() in here.parents:
        # the folder is renamed into place: renaming "." fails after all the work
        # ("Device or resource busy"), and replacing the current folder would leave the
        # shell in a deleted one
        raise ConfigError(
            f"--out {out}: "
            + ("is the current folder" if target.resolve() == here else "holds the current folder"),
            hint="segmint writes the output folder whole and renames it into place: name a "
            "new folder, e.g. --out my-run",
            code="output_is_cwd",
        )
    if target.is_dir() and any(target.iterdir()):
        if not overwrite:
            raise ConfigError(
                f"{target}: the output folder already exists",
                hint="choose another --out, or pass --overwrite to replace it (in Python: "
                "another out=, or overwrite=True)",
                code="output_exists",
            )
        if not (target / marker).is_file():
            raise ConfigError(
                f"{target}: --overwrite replaces only a folder segmint wrote (it has no "
                f"{marker}), and this one has other files",
                hint="choose another --out, or empty or remove that folder yourself",
                code="output_not_ours",
            )
    parent = target.resolve().parent
    if not parent.exists():
        raise ConfigError(
            f"--out {out}: the folder {parent} does not exist",
            hint=f"create it first (mkdir -p {parent}), or choose another --out",
        )
    import tempfile

    try:  # a real probe: permissions, read-only file systems, quotas
        Path(tempfile.mkdtemp(prefix=f".{target.name}.probe-", dir=parent)).rmdir()
    except OSError as exc:
        raise ConfigError(
            f"{parent}: cannot write the output folder there ({exc.strerror or exc})",
            hint="choose an --out in a folder you can write to",
            code="not_writable",
        ) from None
    return target


def write_run_folder(result: RunResult, out: str | os.PathLike[str], *, overwrite: bool) -> Path:
    """Write every output of a run into ``out`` atomically (see :func:`write_folder`)."""
    from segmint.bundle import save_model

    return write_folder(
        out, overwrite, lambda tmp: _write_outputs(result, tmp, save_model), marker="run.json"
    )


def write_folder(
    out: str | os.PathLike[str],
    overwrite: bool,
    write: Callable[[Path], None],
    *,
    marker: str,
) -> Path:
    """Let ``write`` fill a hidden temporary folder beside ``out``, then rename it.

    A failure or an interruption (Ctrl-C, SIGTERM) at any moment leaves ``out`` as it
    was: no half-written folder, no hidden leftovers, and a folder being replaced with
    ``overwrite`` is put back if the new one is not complete; a replaced folder keeps
    none of its old files. ``marker`` is the file ``write`` always writes (see
    :func:`check_output_folder`).
    """
    import secrets

    target = check_output_folder(out, overwrite, marker=marker)
    # a symbolic link (a "current" link to a release folder) stays a link: the folder it
    # points to is the one written or replaced (renaming the link itself had left a
    # dangling link and waited 60 s trying to delete it as a folder)
    target = target.resolve() if target.is_symlink() else target
    # the names are chosen before anything is created, so that an interruption arriving
    # right after a folder appears is still inside the ``try`` that removes it
    token = secrets.token_hex(6)
    tmp = target.resolve().parent / f".{target.name}.part-{token}"
    old = tmp.with_name(f".{target.name}.old-{token}")
    try:
        tmp.mkdir()
        write(tmp)
        # checked again: another process may have written the folder meanwhile (two
        # runs to one --out: the later one replaced the other's without --overwrite)
        check_output_folder(target, overwrite, marker=marker)
        if target.exists():
            target.rename(old)
        tmp.rename(target)
    except BaseException:
        if old.exists() and not target.exists():
            old.rename(target)  # the new folder was not complete: the old one stays
        _remove_tree(tmp)
        if not tmp.exists() and target.exists():
            _remove_tree(old)
        raise
    _remove_tree(old)
    return target


def _remove_tree(path: Path, *, patience: float = 60.0) -> None:
    """Remove ``path`` and everything in it, retrying while a writer that is still
    finishing (a chart thread after Ctrl-C) adds files; ``shutil.rmtree`` alone gives
    up on such a race and would leave the folder behind."""
    import shutil

    if path.is_symlink():
        path.unlink()  # a link, not a folder: rmtree refuses it (and would loop here)
        return
    deadline = time.monotonic() + patience
    while path.exists():
        shutil.rmtree(path, ignore_errors=True)
        if not path.exists() or time.monotonic() > deadline:
            return
        time.sleep(0.05)


def _write_outputs(result: RunResult, folder: Path, save_model: Callable[..., Any]) -> None:
    from concurrent.futures import ThreadPoolExecutor

    # the charts (vl-convert, outside the GIL) are drawn while the rest is written; the
    # chart folder exists before the thread starts. The thread is started inside the
    # ``try``: an interruption arriving just after it started must still wait for it, or
    # it went on writing (re-creating the folder) after the caller had removed it
    (folder / "charts").mkdir()
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        charts = pool.submit(
            result.report.write_charts,
            folder / "charts",
            tuple(result.config.report.chart_formats),
        )
        _write_files(result, folder, save_model)
        charts.result()  # re-raises a chart error here
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _write_files(result: RunResult, folder: Path, save_model: Callable[..., Any]) -> None:
    from segmint import __version__
    from segmint.io import write_table
    from segmint.schema import public_columns

    meta = result.features.metadata() | {"rfm": result.rfm.metadata()}
    table = pa.Table.from_pandas(result.customers, preserve_index=False)
    table = table.replace_schema_metadata(
        {**(table.schema.metadata or {}), b"segmint": json.dumps(meta, default=str).encode()}
    )
    import pyarrow.parquet as pq

    pq.write_table(table, folder / "customers.parquet")
    result.profile.write_csv(folder / "segments.csv")
    from segmint.rfm import thresholds_toml

    (folder / "rfm_thresholds.toml").write_text(
        thresholds_toml(result.rfm.cut_points), encoding="utf-8"
    )
    (folder / "audit.json").write_text(result.prepared.cleaned.audit.to_json(), encoding="utf-8")
    engine = result.prepared.source.details.get("engine", "duckdb")
    write_rejected = result.config.clean.write_rejected
    if write_rejected is None:
        # on PostgreSQL and Spark the dropped lines stay where they are: only the
        # customer-level table comes back unless the user asks for them
        write_rejected = engine == "duckdb"
    skipped: list[str] = []
    if not write_rejected:
        skipped.append("rejected.parquet")
    elif result.prepared.resolved.kind == "transactions":
        result.prepared.cleaned.write_rejected(folder / "rejected.parquet")
    else:
        rejected = result.prepared.cleaned.rejected
        write_table(rejected.select(*public_columns(rejected)), folder / "rejected.parquet")
    result.segmenter.write_selection(folder / "selection.csv")
    result.report.write(folder / "report.html")
    result.report.write_summary(folder / "summary.json")
    save_model(result.segmenter, folder / "model.segmint", result.bundle_metadata())
    optional: list[str] = []
    if result.clv is not None:
        (folder / "clv.json").write_text(
            json.dumps(result.report.summary["clv"], indent=2, default=str), encoding="utf-8"
        )
        result.clv.write_summary(folder / "clv_summary.csv")
        optional += ["clv.json", "clv_summary.csv"]
    if result.future_choice is not None:
        (folder / "future_selection.json").write_text(
            json.dumps(result.future_choice.describe(), indent=2, default=str), encoding="utf-8"
        )
        optional.append("future_selection.json")
    run_info = {
        "segmint_version": __version__,
        "config": result.config.model_dump(),
        "input": result.fingerprint,
        "timings": result.timings,
        "customers": int(len(result.customers)),
        "segments": {str(k): v for k, v in result.profile.names().items()},
        "model": {
            "algorithm": result.segmenter.algorithm_,
            "n_segments": result.segmenter.n_segments_,
            "explanation": result.segmenter.explain(),
        },
        "files": [f for f in RUN_FILES if f not in skipped] + optional + ["charts/"],
        "clv_note": result.clv_note,
    }
    (folder / "run.json").write_text(json.dumps(run_info, indent=2, default=str), encoding="utf-8")
