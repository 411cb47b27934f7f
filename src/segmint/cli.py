"""The ``segmint`` command (Typer): parse options, call the pipeline, render the result.

Errors raised on purpose (:class:`~segmint.errors.SegmintError`) become one red line plus
a hint and exit code 2, never a traceback (``--debug`` shows it). Anything else
is a bug, and the message says so.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from segmint import __version__
from segmint._console import (
    err_console,
    esc,
    interrupted,
    out_console,
    render_error,
    setup_logging,
    status_progress,
)
from segmint._text import count, percent_text
from segmint.config import (
    CleanConfig,
    LoadConfig,
    load_mapping_file,
    parse_map_options,
    validation_error,
)
from segmint.errors import ConfigError, EnvironmentFailure, SegmintError

__all__ = ["app", "main"]

app = typer.Typer(
    name="segmint",
    help="Customer segmentation from retail transactions: load, clean, segment, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    # -h as well as --help, for the app and every command (a newcomer's first try)
    context_settings={"help_option_names": ["-h", "--help"]},
)

_state: dict[str, Any] = {"debug": False, "quiet": False}

# ------------------------------------------------------------------ shared options
FormatOpt = Annotated[
    str | None,
    typer.Option(
        "--format",
        help="Input format (csv, tsv, parquet, excel, json, ndjson); default from the file name.",
        rich_help_panel="Input",
    ),
]
EncodingOpt = Annotated[
    str | None,
    typer.Option(
        "--encoding",
        help="Text encoding (utf-8, latin-1, cp1252, ...); default detected.",
        rich_help_panel="Input",
    ),
]
DelimiterOpt = Annotated[
    str | None,
    typer.Option(
        "--delimiter",
        help="CSV separator; default sniffed. Use '\\t' for tab.",
        rich_help_panel="Input",
    ),
]
HeaderOpt = Annotated[
    bool | None,
    typer.Option(
        "--header/--no-header",
        help="Whether the CSV has a header row; default sniffed.",
        rich_help_panel="Input",
    ),
]
SheetOpt = Annotated[
    str | None,
    typer.Option(
        "--sheet",
        help="Excel sheet name, or 0-based number if no sheet has that name (default: first).",
        rich_help_panel="Input",
    ),
]
AllSheetsOpt = Annotated[
    bool,
    typer.Option("--all-sheets", help="Concatenate every Excel sheet.", rich_help_panel="Input"),
]
KindOpt = Annotated[
    str | None,
    typer.Option(
        "--kind",
        help="'transactions' (one row per line) or 'customers' (one row "
        "per customer); default recognised.",
        rich_help_panel="Input",
    ),
]
MapOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--map",
        help="Explicit column mapping canonical=source (repeatable); wins over auto-mapping.",
        rich_help_panel="Input",
    ),
]
MappingFileOpt = Annotated[
    Path | None,
    typer.Option(
        "--mapping",
        help='TOML file with a [columns] table of canonical = "source".',
        rich_help_panel="Input",
    ),
]
DateFormatOpt = Annotated[
    str | None,
    typer.Option(
        "--date-format",
        help="Layout of the date column, e.g. '%d/%m/%Y %H:%M'.",
        rich_help_panel="Input",
    ),
]
DayFirstOpt = Annotated[
    bool | None,
    typer.Option(
        "--dayfirst/--monthfirst",
        help="Read ambiguous dates such as 01/02/2011 day first or month first.",
        rich_help_panel="Input",
    ),
]
TimezoneOpt = Annotated[
    str | None,
    typer.Option(
        "--timezone",
        help="Time zone of the shop (e.g. Europe/Amsterdam): dates that carry a zone "
        "(Parquet, PostgreSQL timestamptz, MySQL TIMESTAMP) are read as its local time; "
        "default UTC.",
        rich_help_panel="Input",
    ),
]
NonProductOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--non-product",
        help="Product code that is not a product (repeatable; replaces the default list).",
        rich_help_panel="Cleaning",
    ),
]
KeepDuplicatesOpt = Annotated[
    bool,
    typer.Option(
        "--keep-duplicates", help="Do not drop exact duplicate lines.", rich_help_panel="Cleaning"
    ),
]
OutlierOpt = Annotated[
    float | None,
    typer.Option(
        "--outlier-quantile",
        help="Drop lines above this quantile of quantity or amount (e.g. 0.9999); off by default.",
        rich_help_panel="Cleaning",
    ),
]
DisableRuleOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--disable-rule",
        help="Switch a cleaning rule off by name (repeatable); default none.",
        rich_help_panel="Cleaning",
    ),
]
RejectedOpt = Annotated[
    Path | None,
    typer.Option(
        "--rejected",
        help="Write every dropped line with its rule to this .parquet or .csv file.",
        rich_help_panel="Output",
    ),
]
SnapshotOpt = Annotated[
    str | None,
    typer.Option(
        "--snapshot-date",
        help="Reference date for recency (YYYY-MM-DD); default the last purchase date + 1 day.",
        rich_help_panel="Features",
    ),
]
RuleSetOpt = Annotated[
    str,
    typer.Option(
        "--rule-set",
        help="Named RFM segments: rf-grid, classic-11, rfm-r-0.3, or a .toml/.csv file.",
        rich_help_panel="Features",
    ),
]
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json", help="Print a machine-readable JSON summary instead.", rich_help_panel="Output"
    ),
]
EscapeFormulasOpt = Annotated[
    bool,
    typer.Option(
        "--escape-formulas/--no-escape-formulas",
        help="In a CSV, prefix text cells starting with = + - @ tab or CR with ' so a "
        "spreadsheet shows them as text instead of running them (numbers are kept). "
        "--no-escape-formulas for a program that reads the file.",
        rich_help_panel="Output",
    ),
]

DataArg = Annotated[
    str | None,
    typer.Argument(
        help="Transactions or customer table: a file, a folder of Parquet files, a Spark "
        "table name (--engine spark), a postgresql:// URL (with --table or --query), a "
        "mysql:// or mariadb:// URL or an SQLite database (sqlite:///shop.db or its path) "
        "(--table or --query when it has several tables).",
        show_default=False,
    ),
]
SourceOpt = Annotated[
    str | None,
    typer.Option(
        "--source",
        help="The data, instead of the DATA argument: e.g. postgresql://user@host/db, "
        "mysql://user@host/db (password from MYSQL_PWD) or sqlite:///shop.db.",
        rich_help_panel="Where the data lives",
    ),
]
EngineOpt = Annotated[
    str | None,
    typer.Option(
        "--engine",
        help="duckdb (default: files on this machine) or spark (Parquet/CSV paths or Spark "
        "tables, on $SPARK_MASTER or local[*]).",
        rich_help_panel="Where the data lives",
    ),
]
SparkMasterOpt = Annotated[
    str | None,
    typer.Option(
        "--spark-master",
        help="Spark master URL (spark://host:7077, yarn, local[4], ...).",
        rich_help_panel="Where the data lives",
    ),
]
TableOpt = Annotated[
    str | None,
    typer.Option(
        "--table",
        help="With a postgresql:// or mysql:// URL or an SQLite database: the table or "
        "view to read (name, or schema.name in PostgreSQL, database.name in MySQL).",
        rich_help_panel="Where the data lives",
    ),
]
QueryOpt = Annotated[
    str | None,
    typer.Option(
        "--query",
        help="With a postgresql:// or mysql:// URL or an SQLite database: one SELECT to "
        "read instead of a table.",
        rich_help_panel="Where the data lives",
    ),
]


def _mask(url: str) -> str:
    from segmint.engines import mask_url

    return mask_url(url)


def _data(file: str | None, source: str | None, usage: str = "segmint run sales.csv") -> str:
    """The data to read: the DATA argument or --source (exactly one); ``usage`` is the
    command line the hint shows when neither is given."""
    if file is not None and source is not None:
        raise ConfigError(
            "give the data once: either as DATA or with --source, not both",
            hint=f"e.g. drop {_mask(file)!r} and keep --source",
        )
    if file is None and source is None:
        raise ConfigError(
            "no data given",
            hint=f"name a file ({usage}) or a database "
            "(--source postgresql://user@host/db --table sales, mysql://user@host/shop "
            "--table order_lines, or sqlite:///shop.db)",
        )
    return str(file if file is not None else source)


#: File endings each kind of output file is written in.
TABLE_FILES = (".parquet", ".pq", ".csv", ".csv.gz")
FEATURE_FILES = (".parquet", ".pq", ".csv", ".csv.gz")
PLAIN_TABLE_FILES = (".csv", ".parquet")
JSON_FILES = (".json",)


def _check_rule_set(rule_set: str) -> None:
    """Load ``--rule-set`` before any data is read: a misspelt name or a broken table was
    refused only once the features were built."""
    from segmint.rfm import load_rule_set

    try:
        load_rule_set(rule_set, quiet=True)
    except ConfigError as exc:
        raise ConfigError(f"--rule-set {rule_set}: {exc.message}", hint=exc.hint) from None


def _check_outputs(data: str | None, *outputs: tuple[str, Path | None, tuple[str, ...]]) -> None:
    """Check every file a command will write before any work starts, so that a mistake
    in one of them is reported at once and leaves none of the others written.

    Each output is ``(option, path, endings)``: the path must end in one of the endings,
    not be a folder, be in an existing folder segmint can write to, differ from the
    input file ``data`` and from the other outputs. An existing file is replaced (as a
    shell redirection does), atomically.
    """
    import tempfile

    from segmint.io import output_path

    seen: dict[Path, str] = {}
    if data is not None and Path(data).is_file():
        seen[Path(data).resolve()] = "the input"
    for option, path, endings in outputs:
        if path is None:
            continue
        if path.is_dir():
            raise ConfigError(
                f"{option} {path}: is a folder", hint="give the name of a file to write"
            )
        try:
            output_path(path, endings)
        except ConfigError as exc:  # the writers' own check, naming the option
            stem = path.name.split(".")[0] or "output"
            raise ConfigError(
                f"{option} {exc.message}",
                hint=f"e.g. {option} {path.with_name(stem + endings[0])}",
                code=exc.code,
            ) from None
        folder = path.absolute().parent
        if not folder.is_dir():
            raise ConfigError(
                f"{option} {path}: the folder {folder} does not exist",
                hint="create it first, or choose another path",
                code="not_writable",
            )
        try:  # a real probe: permissions, read-only file systems
            fd, probe = tempfile.mkstemp(prefix=f".{path.name}.probe-", dir=folder)
            os.close(fd)
            os.unlink(probe)
        except OSError as exc:
            raise ConfigError(
                f"{option} {path}: cannot write in {folder} ({exc.strerror or exc})",
                hint="choose a folder you can write to",
                code="not_writable",
            ) from None
        key = path.resolve()
        if key in seen:
            raise ConfigError(
                f"{option} {path}: is also {seen[key]}",
                hint="give each output its own file, different from the input",
            )
        seen[key] = option


@contextlib.contextmanager
def _written_together(*paths: Path | None) -> Iterator[list[Path | None]]:
    """Temporary names for several output files that appear together or not at all.

    Each temporary file has its target's name (writers choose the format by the
    ending), in a hidden folder beside the target that only this user can enter; only
    when every one is written are they renamed into place, so a failure writing the
    third output leaves none of the first two. (Names such as ``.segmint-1a2b-audit.json``
    beside the target could be seen and taken first by whoever else may write in that
    folder: a symbolic link put there made the audit overwrite the file it pointed to.)
    """
    import shutil
    import tempfile

    folders: list[Path] = []
    tmps: list[Path | None] = []
    try:
        for p in paths:
            if p is None:
                tmps.append(None)
                continue
            folders.append(Path(tempfile.mkdtemp(prefix=".segmint-", dir=p.absolute().parent)))
            tmps.append(folders[-1] / p.name)
        yield tmps
        for tmp, path in zip(tmps, paths, strict=True):
            if tmp is not None and path is not None:
                os.replace(tmp, path)
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _where(
    load: LoadConfig,
    engine: str | None,
    spark_master: str | None,
    table: str | None,
    query: str | None,
) -> LoadConfig:
    """``load`` with the engine and database options that were given."""
    given = {"engine": engine, "spark_master": spark_master, "table": table, "query": query}
    values = {k: v for k, v in given.items() if v is not None}
    if not values:
        return load
    try:
        return LoadConfig.model_validate(load.model_dump() | values)
    except ValidationError as exc:
        raise validation_error(exc, "options", _section_flags("load")) from None


def _load_config(
    format: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    sheet: str | None = None,
    all_sheets: bool = False,
    kind: str | None = None,
    map: list[str] | None = None,
    mapping: Path | None = None,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    timezone: str | None = None,
) -> LoadConfig:
    columns = load_mapping_file(mapping) if mapping else {}
    columns.update(parse_map_options(map))
    if delimiter in {"\\t", "tab", "TAB"}:
        delimiter = "\t"
    try:
        return LoadConfig(
            format=format,
            encoding=encoding,
            delimiter=delimiter,
            header=header,
            sheet=sheet,
            all_sheets=all_sheets,
            kind=kind,
            columns=columns,
            date_format=date_format,
            dayfirst=dayfirst,
            timezone=timezone,
        )
    except ValidationError as exc:
        raise validation_error(exc, "options", _section_flags("load")) from None


def _clean_config(
    non_product: list[str] | None = None,
    keep_duplicates: bool = False,
    outlier_quantile: float | None = None,
    disable_rule: list[str] | None = None,
) -> CleanConfig:
    values: dict[str, Any] = {
        "drop_duplicates": not keep_duplicates,
        "outlier_quantile": outlier_quantile,
        "disabled_rules": disable_rule or [],
    }
    if non_product:
        values["non_product_codes"] = non_product
    try:
        return CleanConfig(**values)
    except ValidationError as exc:
        raise validation_error(exc, "options", _section_flags("clean")) from None


# ------------------------------------------------------------------ commands
def _version(value: bool) -> None:
    if value:
        out_console.print(f"segmint {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks for errors.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Only results and errors.")] = False,
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="More log output (-vv for debug).")
    ] = 0,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Show the version and exit."
        ),
    ] = False,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            "--memory-limit",
            help="Memory the DuckDB engine may use before spilling to disk (default 1GB; "
            "'none' for DuckDB's own default). Env: SEGMINT_MEMORY_LIMIT.",
        ),
    ] = None,
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="Threads of the engine and of the model fitting (default: all cores). "
            "Env: SEGMINT_THREADS.",
        ),
    ] = None,
    temp_dir: Annotated[
        Path | None,
        typer.Option(
            "--temp-dir",
            help="Where the engine spills and keeps the Parquet copy of a large text file "
            "(default: a private temporary folder). Env: SEGMINT_TEMP_DIR.",
        ),
    ] = None,
) -> None:
    """Customer segmentation from retail transactions."""
    import os

    _state["debug"], _state["quiet"] = debug, quiet
    setup_logging(verbose, quiet)
    for name, value in (
        ("SEGMINT_MEMORY_LIMIT", memory_limit),
        ("SEGMINT_THREADS", threads),
        ("SEGMINT_TEMP_DIR", temp_dir),
    ):
        if value is not None:
            os.environ[name] = str(value)
    if threads is not None:
        # the model fitting too (scikit-learn's OpenMP threads): the option asked for,
        # so it wins over OMP_NUM_THREADS; read when libgomp loads, after this point
        os.environ["OMP_NUM_THREADS"] = str(threads)


@app.command()
def inspect(
    file: DataArg = None,
    format: FormatOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    header: HeaderOpt = None,
    sheet: SheetOpt = None,
    all_sheets: AllSheetsOpt = False,
    kind: KindOpt = None,
    map: MapOpt = None,
    mapping: MappingFileOpt = None,
    date_format: DateFormatOpt = None,
    dayfirst: DayFirstOpt = None,
    timezone: TimezoneOpt = None,
    non_product: NonProductOpt = None,
    keep_duplicates: KeepDuplicatesOpt = False,
    outlier_quantile: OutlierOpt = None,
    disable_rule: DisableRuleOpt = None,
    rejected: RejectedOpt = None,
    snapshot_date: SnapshotOpt = None,
    rule_set: RuleSetOpt = "rf-grid",
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    escape_formulas: EscapeFormulasOpt = True,
    json_: JsonOpt = False,
) -> None:
    """Show how a file is read, how its columns map, what cleaning drops, and the
    customer features and RFM segments that result."""
    from segmint.pipeline import inspect as run_inspect

    load = _load_config(
        format,
        encoding,
        delimiter,
        header,
        sheet,
        all_sheets,
        kind,
        map,
        mapping,
        date_format,
        dayfirst,
        timezone,
    )
    load = _where(load, engine, spark_master, table, query)
    data = _data(file, source, "segmint inspect sales.csv")
    _check_outputs(data, ("--rejected", rejected, TABLE_FILES))
    cfg = _clean_config(non_product, keep_duplicates, outlier_quantile, disable_rule)
    _check_rule_set(rule_set)
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        summary = run_inspect(
            data,
            load,
            cfg,
            rejected=rejected,
            snapshot_date=snapshot_date,
            rule_set=rule_set,
            progress=update,
            escape=escape_formulas,
        )
    finally:
        stop()
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        _render_inspect(summary)


@app.command("clean")
def clean_cmd(
    file: DataArg = None,
    *,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Where to write the kept lines (.parquet or .csv).")
    ],
    format: FormatOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    header: HeaderOpt = None,
    sheet: SheetOpt = None,
    all_sheets: AllSheetsOpt = False,
    kind: KindOpt = None,
    map: MapOpt = None,
    mapping: MappingFileOpt = None,
    date_format: DateFormatOpt = None,
    dayfirst: DayFirstOpt = None,
    timezone: TimezoneOpt = None,
    non_product: NonProductOpt = None,
    keep_duplicates: KeepDuplicatesOpt = False,
    outlier_quantile: OutlierOpt = None,
    disable_rule: DisableRuleOpt = None,
    rejected: RejectedOpt = None,
    returns: Annotated[
        Path | None,
        typer.Option(
            "--returns",
            help="Write the return lines kept aside to this file.",
            rich_help_panel="Output",
        ),
    ] = None,
    audit: Annotated[
        Path | None,
        typer.Option(
            "--audit",
            help="Write the cleaning audit as JSON to this file.",
            rich_help_panel="Output",
        ),
    ] = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    escape_formulas: Annotated[
        bool,
        typer.Option(
            "--escape-formulas/--no-escape-formulas",
            help="In a --rejected CSV, prefix text cells starting with = + - @ tab or CR "
            "with ' so a spreadsheet shows them as text (the kept lines of --out are data "
            "and never changed).",
            rich_help_panel="Output",
        ),
    ] = True,
    json_: JsonOpt = False,
) -> None:
    """Clean a file into canonical columns; write kept lines, and optionally the rest."""
    from segmint.io import write_table
    from segmint.pipeline import prepare

    load = _load_config(
        format,
        encoding,
        delimiter,
        header,
        sheet,
        all_sheets,
        kind,
        map,
        mapping,
        date_format,
        dayfirst,
        timezone,
    )
    load = _where(load, engine, spark_master, table, query)
    data = _data(file, source, "segmint clean sales.csv --out clean.parquet")
    _check_outputs(
        data,
        ("--out", out, TABLE_FILES),
        ("--rejected", rejected, TABLE_FILES),
        ("--returns", returns, TABLE_FILES),
        ("--audit", audit, JSON_FILES),
    )
    cfg = _clean_config(non_product, keep_duplicates, outlier_quantile, disable_rule)
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        prepared = prepare(data, load, cfg, progress=update)
        result = prepared.cleaned
        with _written_together(out, rejected, returns, audit) as (o, rej, ret, aud):
            update(f"writing {out}")
            # in the order of the input (the engine's parallel scan gave another order
            # on every run, so nightly checksums of the file differed)
            write_table(_in_file_order(result.lines), o)
            if rej:
                update(f"writing {rejected}")
                result.write_rejected(rej, escape=escape_formulas)
            if ret:
                write_table(_in_file_order(result.returns), ret)
            if aud:
                aud.write_text(result.audit.to_json(), encoding="utf-8")
    finally:
        stop()
    if json_:
        sys.stdout.write(result.audit.to_json() + "\n")
    else:
        _render_audit(result.audit.to_dict())
        out_console.print(f"Kept lines written to [bold]{esc(out)}[/]", markup=True)


@app.command()
def features(
    file: DataArg = None,
    *,
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Where to write the customer table (.parquet, .csv or .csv.gz)."
        ),
    ],
    format: FormatOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    header: HeaderOpt = None,
    sheet: SheetOpt = None,
    all_sheets: AllSheetsOpt = False,
    kind: KindOpt = None,
    map: MapOpt = None,
    mapping: MappingFileOpt = None,
    date_format: DateFormatOpt = None,
    dayfirst: DayFirstOpt = None,
    timezone: TimezoneOpt = None,
    non_product: NonProductOpt = None,
    keep_duplicates: KeepDuplicatesOpt = False,
    outlier_quantile: OutlierOpt = None,
    disable_rule: DisableRuleOpt = None,
    snapshot_date: SnapshotOpt = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Restrict frequency, monetary, basket, quantity, products and returns to "
            "the last 90D, 6M, 12M, 1Y, ... (recency and tenure use all history); default "
            "all history.",
            rich_help_panel="Features",
        ),
    ] = None,
    rule_set: RuleSetOpt = "rf-grid",
    rfm_thresholds: Annotated[
        Path | None,
        typer.Option(
            "--rfm-thresholds",
            help="Fixed cut points instead of quintiles: a TOML file ([thresholds] "
            "recency_days/frequency/monetary = four numbers each), a customer table "
            "written by segmint features (its cut points), or a run folder or "
            "model.segmint (its training cut points).",
            rich_help_panel="Features",
        ),
    ] = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Compute one row per customer (features, RFM scores and segment) and write it."""
    from segmint.config import load_thresholds_file
    from segmint.pipeline import build_features, features_summary, prepare

    load = _load_config(
        format,
        encoding,
        delimiter,
        header,
        sheet,
        all_sheets,
        kind,
        map,
        mapping,
        date_format,
        dayfirst,
        timezone,
    )
    load = _where(load, engine, spark_master, table, query)
    data = _data(file, source, "segmint features sales.csv --out customers.parquet")
    _check_outputs(data, ("--out", out, FEATURE_FILES))
    cfg = _clean_config(non_product, keep_duplicates, outlier_quantile, disable_rule)
    _check_rule_set(rule_set)
    thresholds = load_thresholds_file(rfm_thresholds) if rfm_thresholds else None
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        prepared = prepare(data, load, cfg, progress=update)
        feats, rfm = build_features(
            prepared,
            snapshot_date=snapshot_date,
            window=window,
            rule_set=rule_set,
            thresholds=thresholds,
            progress=update,
        )
        update(f"writing {out}")
        feats.write(out, extra=rfm.table, extra_meta={"rfm": rfm.metadata()})
    finally:
        stop()
    summary = {"output": str(out), **features_summary(feats, rfm, prepared)}
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    _render_features(summary)
    out_console.print(f"Customer table written to [bold]{esc(out)}[/]", markup=True)


@app.command()
def clv(
    file: DataArg = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write per-customer values (.csv or .parquet)."),
    ] = None,
    horizon: Annotated[
        str, typer.Option("--horizon", help="Value customers over 90D, 6M, 12M, 1Y, ...")
    ] = "12M",
    discount_rate: Annotated[
        float, typer.Option("--discount-rate", help="Yearly discount rate (0 = none).")
    ] = 0.0,
    margin: Annotated[
        float, typer.Option("--margin", help="Share of revenue that is profit (1 = revenue).")
    ] = 1.0,
    pymc: Annotated[
        Path | None,
        typer.Option(
            "--pymc",
            help="Also write the summary in pymc-marketing's layout (customer_id, "
            "frequency, recency, T, monetary_value).",
        ),
    ] = None,
    format: FormatOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    header: HeaderOpt = None,
    sheet: SheetOpt = None,
    all_sheets: AllSheetsOpt = False,
    kind: KindOpt = None,
    map: MapOpt = None,
    mapping: MappingFileOpt = None,
    date_format: DateFormatOpt = None,
    dayfirst: DayFirstOpt = None,
    timezone: TimezoneOpt = None,
    non_product: NonProductOpt = None,
    keep_duplicates: KeepDuplicatesOpt = False,
    outlier_quantile: OutlierOpt = None,
    disable_rule: DisableRuleOpt = None,
    snapshot_date: SnapshotOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Customer lifetime value: fit BG/NBD (purchases, churn) and Gamma-Gamma (spend)."""
    from segmint.clv import check_value_options, customer_value
    from segmint.pipeline import prepare

    # before any data is read, by the flags typed
    check_value_options(
        horizon, discount_rate, margin, names=("--horizon", "--discount-rate", "--margin")
    )

    load = _load_config(
        format,
        encoding,
        delimiter,
        header,
        sheet,
        all_sheets,
        kind,
        map,
        mapping,
        date_format,
        dayfirst,
        timezone,
    )
    load = _where(load, engine, spark_master, table, query)
    data = _data(file, source, "segmint clv sales.csv --out clv.parquet")
    _check_outputs(data, ("--out", out, PLAIN_TABLE_FILES), ("--pymc", pymc, PLAIN_TABLE_FILES))
    cfg = _clean_config(non_product, keep_duplicates, outlier_quantile, disable_rule)
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        prepared = prepare(data, load, cfg, progress=update)
        update("fitting BG/NBD and Gamma-Gamma")
        result = customer_value(
            prepared.cleaned,
            snapshot_date,
            horizon=horizon,
            discount_rate=discount_rate,
            margin=margin,
        )
        with _written_together(out, pymc) as (o, pm):
            if o is not None:
                update(f"writing {out}")
                result.write_table(o)
            if pm is not None:
                result.write_summary(pm)
    finally:
        stop()
    summary = result.describe() | {
        "output": str(out) if out else None,
        "pymc_summary": str(pymc) if pymc else None,
    }
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    bg, gg = result.bgnbd, result.gamma_gamma
    t = Table(title=f"Lifetime value of {count(summary['customers'], 'customer')}")
    t.add_column("model")
    t.add_column("parameters")
    t.add_column("log-likelihood", justify="right")
    t.add_row(
        "BG/NBD",
        f"r={bg.r:.4g}  alpha={bg.alpha:.4g}  a={bg.a:.4g}  b={bg.b:.4g}",
        f"{bg.log_likelihood:,.1f}",
    )
    t.add_row(
        "Gamma-Gamma",
        f"p={gg.p:.4g}  q={gg.q:.4g}  v={gg.v:.4g}",
        f"{gg.log_likelihood:,.1f}",
    )
    out_console.print(t)
    out_console.print(
        f"Snapshot {summary['snapshot_date']}, "
        f"horizon {count(result.horizon_days, 'day', fmt='g')}: "
        f"{summary['expected_purchases']:,.0f} expected purchases worth "
        f"{summary['expected_value']:,.0f}"
        + (f" (profit at a {result.margin:.0%} margin)" if result.margin < 1 else "")
        + ".",
        highlight=False,
    )
    for note in summary["notes"]:
        err_console.print(f"[yellow]Note:[/] {esc(note)}.", highlight=False, markup=True)
    if abs(gg.frequency_correlation) > 0.3:
        err_console.print(
            f"[yellow]Note:[/] spend and purchase frequency correlate "
            f"({gg.frequency_correlation:.2f}); Gamma-Gamma assumes they do not, so "
            "expected spend is less reliable.",
            highlight=False,
            markup=True,
        )
    if out is not None:
        out_console.print(f"Per-customer values written to [bold]{esc(out)}[/]", markup=True)
    if pymc is not None:
        out_console.print(f"pymc-marketing summary written to [bold]{esc(pymc)}[/]", markup=True)


@app.command()
def backtest(
    file: DataArg = None,
    *,
    cutoff: Annotated[
        str,
        typer.Option(
            "--cutoff", help="Features and segments from data before this date (YYYY-MM-DD)."
        ),
    ],
    horizon: Annotated[
        str, typer.Option("--horizon", help="Outcome period after the cutoff: 90D, 3M, ...")
    ] = "90D",
    select_cutoff: Annotated[
        str | None,
        typer.Option(
            "--select-cutoff",
            help="Also choose a segmentation by its future at this earlier date and "
            "evaluate that choice at --cutoff (honest --select-by future).",
        ),
    ] = None,
    k_max: Annotated[
        int, typer.Option("--k-max", help="At most this many segments per candidate.")
    ] = 8,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="segmint.toml (loading, cleaning, model search)."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Write the table (.csv) or everything (.json)."),
    ] = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Back-test segmentations: how much of next-period revenue and repeat buying do
    the segments explain (eta², retention AUC)?"""
    from segmint.backtest import backtest as run_backtest
    from segmint.clv import parse_horizon
    from segmint.config import load_run_config

    parse_horizon(horizon, what="--horizon")  # named as typed, before any data is read
    cfg = load_run_config(config, {})
    cfg.load = _where(cfg.load, engine, spark_master, table, query)
    data = _data(file, source, "segmint backtest sales.csv --cutoff 2011-09-01")
    _check_outputs(data, ("--out", out, (".csv", ".json")))
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        result = run_backtest(
            data,
            cutoff=cutoff,
            horizon=horizon,
            config=cfg,
            select_cutoff=select_cutoff,
            k_max=k_max,
            progress=update,
        )
        if out is not None:
            result.write(out)
    finally:
        stop()
    info = result.describe()
    if json_:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    cut_short = f" (observed until {info['outcomes_until']} only)" if info["notes"] else ""
    t = Table(
        title=f"Back-test at {info['cutoff']}: {count(info['customers'], 'customer')}, "
        f"{info['buyers_in_horizon']:,} bought in the next {horizon}{cut_short}"
    )
    for col, justify in (
        ("candidate", "left"),
        ("kind", "left"),
        ("segments", "right"),
        ("smallest", "right"),
        ("eta² revenue", "right"),
        ("retention AUC", "right"),
    ):
        t.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in info["candidates"]:
        t.add_row(
            row["candidate"],
            row["kind"],
            str(row["n_segments"]),
            percent_text(row["smallest_share"], sep=""),
            _fmt_metric(row["eta2"]),
            _fmt_metric(row["retention_auc"]),
        )
    out_console.print(t)
    out_console.print(
        "eta²: share of the variance of next-period revenue explained by the segments. "
        "Retention AUC: how well a customer's segment ranks them by buying again "
        "(0.5 = chance).",
        highlight=False,
    )
    ref = info.get("reference") or {}
    if ref.get("retention_auc") == ref.get("retention_auc") and ref.get("retention_auc"):
        out_console.print(
            f"Reference, not a segmentation: a {ref['model']} on "
            f"{len(ref['features'])} features ranks the same customers with retention AUC "
            f"{ref['retention_auc']:.3f}; segments grouping customers by these features "
            "rarely rank better.",
            highlight=False,
        )
    for note in info["notes"]:
        err_console.print(f"[yellow]Note:[/] {esc(note)}.", highlight=False, markup=True)
    if out is not None:
        out_console.print(f"Written to [bold]{esc(out)}[/]", markup=True)


def _fmt_metric(value: Any) -> str:
    return "-" if value is None or value != value else f"{value:.3f}"


@app.command()
def migrate(
    model: Annotated[Path, typer.Argument(help="A saved model (model.segmint).")],
    file: DataArg = None,
    *,
    from_: Annotated[str, typer.Option("--from", help="First snapshot date (YYYY-MM-DD).")],
    to: Annotated[str, typer.Option("--to", help="Last snapshot date (YYYY-MM-DD).")],
    every: Annotated[
        str | None,
        typer.Option("--every", help="Also snapshot every 1M, 2W, 30D, ... in between."),
    ] = None,
    lapse: Annotated[
        str,
        typer.Option("--lapse", help="No purchase for longer than this = (lost)."),
    ] = "365D",
    order: Annotated[
        str | None,
        typer.Option(
            "--order",
            help="Every segment name once, from most to least valuable, comma-separated "
            "(default: by the segments' place on recency, frequency and monetary at "
            "training: rfm_position in segments.csv).",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            "-o",
            help="Folder for migration.html, transitions.csv, moves.parquet, ...",
        ),
    ] = None,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite", help="Replace an existing --out folder of an earlier migration."
        ),
    ] = False,
    no_predict: Annotated[
        bool, typer.Option("--no-predict", help="Skip the next-segment movement model.")
    ] = False,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Segment migration: score the same customers at two (or more) snapshot dates with
    one model and show who moved where."""
    from segmint.bundle import load_model
    from segmint.migration import migrate as run_migrate
    from segmint.pipeline import check_output_folder

    if out is not None:  # before the work: refused folders fail at once
        check_output_folder(out, overwrite, marker="migration.json")
    loaded = load_model(model)
    data = _data(
        file,
        source,
        "segmint migrate my-run/model.segmint sales.csv --from 2011-06-01 --to 2011-12-01",
    )
    load = None
    if any(v is not None for v in (engine, spark_master, table, query)):
        # the model's own reading options, with the engine and database ones given here
        trained = loaded.load_config(data)
        load = _where(trained, engine, spark_master, table, query)
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        result = run_migrate(
            loaded,
            data,
            load=load,
            start=from_,
            end=to,
            every=every,
            lapse=lapse,
            order=_csv_list([order], "--order") if order else None,
            predict=not no_predict,
            progress=update,
        )
        if out is not None:
            update(f"writing {out}")
            result.write(out, overwrite=True)
    finally:
        stop()
    info = result.summary()
    if json_:
        sys.stdout.write(json.dumps(info, indent=2, default=str) + "\n")
        return
    t = Table(title=f"Customers from {info['from']} (rows) to {info['to']} (columns)")
    t.add_column("from", justify="left")
    for col in result.matrix.columns:
        t.add_column(str(col), justify="right")
    for state, row in result.matrix.iterrows():
        if row.sum() == 0:
            continue
        t.add_row(str(state), *(f"{int(v):,}" for v in row))
    out_console.print(t)
    # up includes the reactivated and down the newly lost: each customer counts once
    out_console.print(
        f"Of {count(info['customers'], 'customer')}: {info['moved_up']:,} moved up "
        f"({info['reactivated']:,} of them back from (lost)), {info['moved_down']:,} moved "
        f"down ({info['lost']:,} of them to (lost): no purchase for more than "
        f"{count(info['lapse_days'], 'day')}), {info['stayed']:,} stayed, "
        f"{info['new']:,} new since "
        f"{info['from']}; net revenue in the period {info['revenue_in_period']:,.0f}.",
        highlight=False,
    )
    for note in info.get("notes") or []:
        out_console.print(f"[yellow]Note:[/] {esc(note)}", soft_wrap=True, markup=True)
    mm = info.get("movement_model")
    if mm:
        right, stays = (percent_text(mm[k], sep="") for k in ("accuracy", "baseline_accuracy"))
        out_console.print(
            f"Next-segment model: {right} right on {mm['tested_on']}, against "
            f"{stays} for 'stays where it is'.",
            highlight=False,
        )
    if out is not None:
        out_console.print(
            f"Report: [bold]{esc(out / 'migration.html')}[/]", soft_wrap=True, markup=True
        )


ConfigOpt = Annotated[
    Path | None,
    typer.Option(
        "--config", "-c", help="segmint.toml with options for every stage (see segmint init)."
    ),
]
OverwriteOpt = Annotated[
    bool,
    typer.Option(
        "--overwrite",
        help="Replace an existing output folder (only once the new one is complete).",
        rich_help_panel="Output",
    ),
]


def _csv_list(values: list[str] | None, option: str = "") -> list[str] | None:
    """The names of a repeatable, comma-separated option; ``None`` when it was not given.

    Given but empty (``--features ,``) is an error naming ``option``: quietly falling
    back to the default would segment on something the user did not ask for."""
    if not values:
        return None
    out = [v.strip() for item in values for v in item.split(",") if v.strip()]
    if not out:
        raise ConfigError(
            f"{option or 'an option'}: no names given ({', '.join(map(repr, values))})",
            hint=f"give one or more names, comma-separated, or leave {option or 'it'} out "
            "for the default",
        )
    return out


#: The configuration key each option of ``segmint run`` sets.
_RUN_OPTION_KEYS = {
    "format": "load.format",
    "encoding": "load.encoding",
    "delimiter": "load.delimiter",
    "header": "load.header",
    "sheet": "load.sheet",
    "all_sheets": "load.all_sheets",
    "non_product": "clean.non_product_codes",
    "drop_duplicates": "clean.drop_duplicates",
    "outlier_quantile": "clean.outlier_quantile",
    "disable_rule": "clean.disabled_rules",
    "kind": "load.kind",
    "date_format": "load.date_format",
    "dayfirst": "load.dayfirst",
    "timezone": "load.timezone",
    "engine": "load.engine",
    "spark_master": "load.spark_master",
    "table": "load.table",
    "query": "load.query",
    "rejected_lines": "clean.write_rejected",
    "snapshot_date": "features.snapshot_date",
    "window": "features.window",
    "rule_set": "rfm.rule_set",
    "rfm_thresholds": "rfm.thresholds",
    "algorithm": "segment.algorithm",
    "k": "segment.n_clusters",
    "k_min": "segment.k_min",
    "k_max": "segment.k_max",
    "features": "segment.features",
    "categorical": "segment.categorical",
    "seed": "segment.seed",
    "time_budget": "segment.time_budget",
    "value_tier": "segment.value_tier",
    "select_by": "segment.select_by",
    "future_horizon": "segment.future_horizon",
    "future_cutoff": "segment.future_cutoff",
    "clv_horizon": "clv.horizon",
    "clv_enabled": "clv.enabled",
    "title": "report.title",
}

#: The option that sets each configuration key, for messages about a bad value.
_RUN_FLAGS = {
    key: {
        "drop_duplicates": "--keep-duplicates",
        "clv_enabled": "--no-clv",
        "rejected_lines": "--rejected-lines/--no-rejected-lines",
        "dayfirst": "--dayfirst/--monthfirst",
        "header": "--header/--no-header",
    }.get(name, "--" + name.replace("_", "-"))
    for name, key in _RUN_OPTION_KEYS.items()
}


def _section_flags(section: str) -> dict[str, str]:
    """The option that sets each key of one configuration section (``load``, ``clean``),
    so a bad value is reported as ``--format xml: ...``, not ``options: format: ...``."""
    prefix = section + "."
    flags = {k.removeprefix(prefix): v for k, v in _RUN_FLAGS.items() if k.startswith(prefix)}
    if section == "load":
        flags["columns"] = "--map/--mapping"
    return flags


def _run_overrides(**flags: Any) -> dict[str, Any]:
    """Dotted config keys for the flags that were given (flags override the file)."""
    keys = _RUN_OPTION_KEYS
    out: dict[str, Any] = {}
    for name, value in flags.items():
        if value is None or name not in keys:
            continue
        if name == "delimiter" and value in {"\\t", "tab", "TAB"}:
            value = "\t"
        if name == "k":
            value = "auto" if str(value).lower() == "auto" else _int_option("--k", value)
        if name == "algorithm" and len(value) == 1:
            value = value[0]
        out[keys[name]] = value
    return out


def _id_values(flag: str, items: list[str]) -> dict[str, str]:
    """Parse repeated ``ID=TEXT`` options (segment id -> name or action)."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip().lstrip("-").isdigit() or not text.strip():
            raise ConfigError(
                f"{flag} {item!r}: expected SEGMENT_ID=TEXT",
                hint=f"e.g. {flag} 0='Core buyers' (ids are in segments.csv)",
            )
        out[str(int(key))] = text.strip()
    return out


def _int_option(flag: str, value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ConfigError(
            f"{flag} {value!r}: expected 'auto' or a whole number", hint=f"e.g. {flag} 5"
        ) from None


def _search_callback(update: Any) -> Any:
    def cb(done: int, total: int, description: str) -> None:
        update(f"segmentation search {done}/{total}: {description}")

    return cb


@app.command()
def run(
    file: DataArg = None,
    *,
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Output folder (must not exist unless --overwrite).")
    ] = Path("segmint-run"),
    config: ConfigOpt = None,
    overwrite: OverwriteOpt = False,
    format: FormatOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    header: HeaderOpt = None,
    sheet: SheetOpt = None,
    all_sheets: AllSheetsOpt = False,
    kind: KindOpt = None,
    map: MapOpt = None,
    mapping: MappingFileOpt = None,
    date_format: DateFormatOpt = None,
    dayfirst: DayFirstOpt = None,
    timezone: TimezoneOpt = None,
    non_product: NonProductOpt = None,
    keep_duplicates: KeepDuplicatesOpt = False,
    outlier_quantile: OutlierOpt = None,
    disable_rule: DisableRuleOpt = None,
    snapshot_date: SnapshotOpt = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Restrict frequency, monetary, basket, quantity, products and returns to "
            "the last 90D, 6M, 12M, 1Y, ... (recency and tenure use all history); default "
            "all history.",
            rich_help_panel="Features",
        ),
    ] = None,
    rule_set: Annotated[
        str | None,
        typer.Option(
            "--rule-set",
            help="Named RFM segments: rf-grid (default), classic-11, rfm-r-0.3, or a "
            ".toml/.csv file.",
            rich_help_panel="Features",
        ),
    ] = None,
    rfm_thresholds: Annotated[
        Path | None,
        typer.Option(
            "--rfm-thresholds",
            help="Fixed RFM cut points instead of quintiles (to compare periods on one "
            "scale): a TOML file, an earlier run folder or model.segmint, or a customer "
            "table written by segmint features. Overrides [rfm] thresholds; default "
            "quintiles of the data.",
            rich_help_panel="Features",
        ),
    ] = None,
    algorithm: Annotated[
        list[str] | None,
        typer.Option(
            "--algorithm",
            help="Algorithm(s) to try (repeatable or comma-separated); default auto.",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    k: Annotated[
        str | None,
        typer.Option(
            "--k", help="Number of segments, or auto (default).", rich_help_panel="Segmentation"
        ),
    ] = None,
    k_min: Annotated[
        int | None,
        typer.Option(
            "--k-min", help="Smallest k searched (default 2).", rich_help_panel="Segmentation"
        ),
    ] = None,
    k_max: Annotated[
        int | None,
        typer.Option(
            "--k-max", help="Largest k searched (default 10).", rich_help_panel="Segmentation"
        ),
    ] = None,
    features: Annotated[
        list[str] | None,
        typer.Option(
            "--features",
            help="Features to segment on (repeatable or comma-separated); default "
            "recency_days, frequency, monetary, tenure_days.",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    categorical: Annotated[
        list[str] | None,
        typer.Option(
            "--categorical",
            help="Categorical features to segment on too, e.g. country (repeatable or "
            "comma-separated); default none.",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    seed: Annotated[
        int | None,
        typer.Option("--seed", help="Random seed (default 0).", rich_help_panel="Segmentation"),
    ] = None,
    time_budget: Annotated[
        float | None,
        typer.Option(
            "--time-budget",
            help="Seconds for the model search; default no limit.",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    value_tier: Annotated[
        float | None,
        typer.Option(
            "--value-tier",
            help="Give the top share of customers by monetary value (e.g. 0.02) a segment "
            "of their own and cluster the others; off by default.",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    select_by: Annotated[
        str | None,
        typer.Option(
            "--select-by",
            help="geometry (default: cluster quality) or future: choose the algorithm and k "
            "by next-period revenue and repeat purchases on an earlier split.",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    future_horizon: Annotated[
        str | None,
        typer.Option(
            "--future-horizon",
            help="With --select-by future: the outcome period (default 90D).",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    future_cutoff: Annotated[
        str | None,
        typer.Option(
            "--future-cutoff",
            help="With --select-by future: the earlier split (default snapshot - horizon).",
            rich_help_panel="Segmentation",
        ),
    ] = None,
    clv_horizon: Annotated[
        str | None,
        typer.Option(
            "--clv-horizon",
            help="Lifetime value over this period (default 12M).",
            rich_help_panel="Lifetime value",
        ),
    ] = None,
    no_clv: Annotated[
        bool,
        typer.Option(
            "--no-clv", help="Leave lifetime value out.", rich_help_panel="Lifetime value"
        ),
    ] = False,
    title: Annotated[
        str | None,
        typer.Option(
            "--title",
            help="Report title (default 'Customer segments').",
            rich_help_panel="Output",
        ),
    ] = None,
    name: Annotated[
        list[str] | None,
        typer.Option(
            "--name",
            help="Name a segment yourself: ID=NAME (repeatable), e.g. --name 0='Core buyers'.",
            rich_help_panel="Output",
        ),
    ] = None,
    action: Annotated[
        list[str] | None,
        typer.Option(
            "--action",
            help="Set a segment's suggested action: ID=TEXT (repeatable).",
            rich_help_panel="Output",
        ),
    ] = None,
    rejected_lines: Annotated[
        bool | None,
        typer.Option(
            "--rejected-lines/--no-rejected-lines",
            help="Write rejected.parquet (every dropped line). Default: yes for files, no "
            "for PostgreSQL and Spark, where the dropped lines stay in place.",
            rich_help_panel="Output",
        ),
    ] = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Load, clean, build features, score RFM, segment, profile, report and save a model."""
    from segmint.config import load_mapping_file, load_run_config

    overrides = _run_overrides(
        format=format,
        encoding=encoding,
        delimiter=delimiter,
        header=header,
        sheet=sheet,
        all_sheets=all_sheets or None,
        non_product=non_product or None,
        drop_duplicates=False if keep_duplicates else None,
        outlier_quantile=outlier_quantile,
        disable_rule=disable_rule or None,
        kind=kind,
        date_format=date_format,
        dayfirst=dayfirst,
        timezone=timezone,
        snapshot_date=snapshot_date,
        window=window,
        rule_set=rule_set,
        algorithm=_csv_list(algorithm, "--algorithm"),
        k=k,
        k_min=k_min,
        k_max=k_max,
        features=_csv_list(features, "--features"),
        categorical=_csv_list(categorical, "--categorical"),
        seed=seed,
        time_budget=time_budget,
        value_tier=value_tier,
        select_by=select_by,
        future_horizon=future_horizon,
        future_cutoff=future_cutoff,
        clv_horizon=clv_horizon,
        clv_enabled=False if no_clv else None,
        title=title,
        engine=engine,
        spark_master=spark_master,
        table=table,
        query=query,
        rejected_lines=rejected_lines,
    )
    if rfm_thresholds:
        from segmint.config import load_thresholds_file

        # read and checked before any data is read; through the configuration, so inf
        # is kept as null in run.json as for [rfm] thresholds
        overrides["rfm.thresholds"] = load_thresholds_file(rfm_thresholds)
    cfg = load_run_config(config, overrides, _RUN_FLAGS)
    if name:
        cfg.segments.names = {**cfg.segments.names, **_id_values("--name", name)}
    if action:
        cfg.segments.actions = {**cfg.segments.actions, **_id_values("--action", action)}
    if map or mapping:
        columns = dict(cfg.load.columns)
        if mapping:
            columns.update(load_mapping_file(mapping))
        columns.update(parse_map_options(map))
        cfg.load.columns = columns
    result = _run_pipeline(_data(file, source), cfg, out, overwrite, quiet=json_)
    _report_run(result, json_)


def _run_pipeline(data: Any, cfg: Any, out: Path, overwrite: bool, *, quiet: bool) -> Any:
    from segmint.pipeline import check_output_folder
    from segmint.pipeline import run as run_pipeline

    check_output_folder(out, overwrite)
    update, stop = status_progress(_state["quiet"] or quiet)
    try:
        return run_pipeline(
            data,
            cfg,
            out=out,
            overwrite=overwrite,
            progress=update,
            search_progress=_search_callback(update),
        )
    finally:
        stop()


def _future_line(result: Any) -> str:
    """One sentence on a choice made by the future (empty for the usual selection)."""
    fc = getattr(result, "future_choice", None)
    if fc is None:
        return ""
    row = fc.table[fc.table["chosen"]].iloc[0]
    return (
        f"Chosen by the future: on the customers of {fc.cutoff} and what they did in the "
        f"{fc.horizon} after, {row['candidate']} ranked best of "
        f"{count(len(fc.table), 'candidate')} "
        f"(eta² of next revenue {row['eta2']:.3f}, retention AUC "
        f"{row['retention_auc']:.3f}); it was then fitted on the data up to the snapshot. "
    )


def _coarse_tip(result: Any) -> str | None:
    """A pointer to the choice by the future when the geometric search settled on two
    segments of transaction data (the scores favour a coarse split; on Online Retail the
    back-test rates it lowest: next-90-day revenue eta^2 0.023 against 0.236)."""
    seg = result.segmenter
    cfg = result.config.segment
    searched = str(getattr(seg, "n_clusters", "auto")) == "auto"
    if (
        int(seg.n_segments_) != 2
        or not searched
        # a density method finds its own number: no score chose two, and --k-min is
        # not used for it
        or getattr(seg, "k_", None) is None
        or cfg.k_max < 4  # the user kept the search to few segments
        or cfg.select_by == "future"
        or result.features.kind != "transactions"
    ):
        return None
    return (
        "two segments split the customers coarsely (the cluster-quality scores favour "
        "few segments). For segments that predict next-period revenue and repeat "
        "purchases, try --select-by future (see `segmint backtest`), --value-tier 0.02, "
        "or --k-min 4."
    )


def _report_run(result: Any, json_: bool, extra: dict[str, Any] | None = None) -> None:
    rows = result.profile.table
    summary = {
        "out": str(result.out),
        "customers": int(len(result.customers)),
        "model": result.segmenter.algorithm_,
        "n_segments": int(result.segmenter.n_segments_),
        "explanation": _future_line(result) + result.segmenter.explain(),
        "tip": _coarse_tip(result),
        "segments": [
            {
                "segment_id": int(r.segment_id),
                "name": r.name,
                "customers": int(r.size),
                "share_customers": float(r.share_customers),
                "share_revenue": None
                if r.share_revenue != r.share_revenue
                else float(r.share_revenue),
                "action": r.action,
            }
            for r in rows.itertuples()
        ],
        "audit": result.prepared.cleaned.audit.to_dict(),
        "timings": result.timings,
        "clv_note": getattr(result, "clv_note", None),
        "clv_notes": _clv_notes(result),
        "returns_left_out": result.report.summary["data"].get("returns_left_out"),
        "report": str(result.out / "report.html") if result.out else None,
        **(extra or {}),
    }
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    t = Table(title=f"{summary['n_segments']} segments of {summary['customers']:,} customers")
    for name, justify in (
        ("segment", "left"),
        ("customers", "right"),
        ("share", "right"),
        ("revenue", "right"),
        ("suggested action", "left"),
    ):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in summary["segments"]:
        rev = "-" if s["share_revenue"] is None else percent_text(s["share_revenue"], sep="")
        share = percent_text(s["share_customers"], sep="")  # rounded as the report rounds
        t.add_row(s["name"], f"{s['customers']:,}", share, rev, s["action"])
    out_console.print(t)
    out_console.print(summary["explanation"], highlight=False, soft_wrap=True)
    tip = _coarse_tip(result)
    if tip:
        out_console.print(f"[cyan]Tip:[/] {esc(tip)}", highlight=False, markup=True)
    returns_note = result.report.summary["data"].get("returns_left_out_note")
    if returns_note:
        err_console.print(
            f"[yellow]Note:[/] {esc(returns_note)}", highlight=False, markup=True, soft_wrap=True
        )
    for note in summary["clv_notes"]:
        # "lifetime value left out: ..." names the stage itself: no second "lifetime value"
        topic = "" if note.startswith("lifetime value") else "lifetime value: "
        err_console.print(
            f"[yellow]Note:[/] {topic}{esc(note)}",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )
    out_console.print(f"Report: [bold]{esc(summary['report'])}[/]", soft_wrap=True, markup=True)


def _clv_notes(result: Any) -> list[str]:
    """Every caveat on the run's lifetime values: why they were left out, or the fit's
    own (no drop-out seen, no convergence, customers without a value, a horizon beyond
    the history). ``segmint clv`` printed these; ``run`` printed only the first kind, so
    the others were in the report and clv.json alone."""
    notes = [result.clv_note] if getattr(result, "clv_note", None) else []
    clv = getattr(result, "clv", None)
    return notes + [n for n in (getattr(clv, "notes", None) or []) if n not in notes]


@app.command()
def init(
    path: Annotated[Path, typer.Argument(help="Where to write the file.")] = Path("segmint.toml"),
    force: Annotated[bool, typer.Option("--force", help="Replace an existing file.")] = False,
) -> None:
    """Write a commented segmint.toml with every option and its default."""
    from segmint.config import init_toml
    from segmint.io import atomic_path

    if path.is_dir():  # --force cannot replace a folder: say so before suggesting it
        raise ConfigError(
            f"{path}: is a folder, not a file",
            hint=f"give a file name, e.g. segmint init {path / 'segmint.toml'}",
        )
    if path.exists() and not force:
        raise ConfigError(f"{path}: already exists", hint="pass --force to replace it")
    with atomic_path(path) as tmp:
        tmp.write_text(init_toml(), encoding="utf-8")
    out_console.print(
        f"Configuration written to [bold]{esc(path)}[/] "
        f"(edit it, then segmint run DATA --config {esc(path)})",
        markup=True,
    )


@app.command()
def score(
    model: Annotated[Path, typer.Argument(help="model.segmint from a run.")],
    file: DataArg = None,
    *,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Where to write the assignments (.parquet or .csv)."),
    ] = None,
    write_to: Annotated[
        str | None,
        typer.Option(
            "--write-to",
            help="Also (or instead) upsert the assignments into this PostgreSQL database, "
            "table --write-table (one transaction; adds scored_at and model_id).",
            rich_help_panel="Output",
        ),
    ] = None,
    write_table_name: Annotated[
        str | None,
        typer.Option(
            "--write-table",
            help="Table that --write-to writes (created when missing; default customer_segments).",
            rich_help_panel="Output",
        ),
    ] = None,
    write_mode: Annotated[
        str,
        typer.Option(
            "--write-mode",
            help="upsert: insert or update these customers' rows, keep the others; "
            "replace: also delete the rows of customers not in these scores, so the table "
            "holds exactly this scoring (needs DELETE on it).",
            rich_help_panel="Output",
        ),
    ] = "upsert",
    snapshot_date: SnapshotOpt = None,
    format: FormatOpt = None,
    encoding: EncodingOpt = None,
    delimiter: DelimiterOpt = None,
    header: HeaderOpt = None,
    sheet: SheetOpt = None,
    all_sheets: AllSheetsOpt = False,
    kind: KindOpt = None,
    map: MapOpt = None,
    mapping: MappingFileOpt = None,
    date_format: DateFormatOpt = None,
    dayfirst: DayFirstOpt = None,
    timezone: TimezoneOpt = None,
    source: SourceOpt = None,
    engine: EngineOpt = None,
    spark_master: SparkMasterOpt = None,
    table: TableOpt = None,
    query: QueryOpt = None,
    escape_formulas: EscapeFormulasOpt = True,
    json_: JsonOpt = False,
) -> None:
    """Assign segments to the customers of new data with a saved model.

    The data can be a file, a Spark table (--engine spark) or a PostgreSQL table
    (--source postgresql://... --table sales); the assignments go to --out, to a
    PostgreSQL table (--write-to), or both.
    """
    from segmint.bundle import load_model
    from segmint.engines import (
        check_write_target,
        is_database_url,
        mask_url,
        write_assignments,
    )
    from segmint.io import write_table

    # the data first: "segmint score my-run" lacks the data, whatever else it lacks
    data = _data(file, source, "segmint score my-run/model.segmint sales.csv --out scored.parquet")
    if out is None and write_to is None:
        raise ConfigError(
            "say where the assignments go: --out FILE, --write-to postgresql://..., or both",
            hint="e.g. segmint score my-run/model.segmint sales.csv --out scored.parquet",
        )
    if write_mode not in ("upsert", "replace"):
        raise ConfigError(
            f"--write-mode {write_mode!r} is not upsert or replace",
            hint="--write-mode upsert (keep other customers' rows) or --write-mode replace",
        )
    if write_mode != "upsert" and write_to is None:
        raise ConfigError(
            "--write-mode applies to --write-to, which is not given",
            hint="add --write-to postgresql://... or leave out --write-mode",
        )
    if write_table_name is not None and write_to is None:
        # it was ignored without a word: the scores went nowhere near that table
        raise ConfigError(
            f"--write-table {write_table_name} applies to --write-to, which is not given",
            hint="add --write-to postgresql://... or leave out --write-table",
        )
    write_table_name = write_table_name or "customer_segments"
    if write_to is not None and not is_database_url(write_to):
        raise ConfigError(
            f"--write-to {mask_url(write_to)}: give a postgresql:// URL",
            hint="e.g. --write-to postgresql://crm@db.example.com/shop",
        )
    _check_outputs(data, ("--out", out, TABLE_FILES))
    bundle = load_model(model)
    if write_to is not None:
        # the database is an output: a wrong password or a missing schema is found
        # before the scoring, not after it
        check_write_target(write_to, write_table_name, replace=write_mode == "replace")
    load = None
    where = (engine, spark_master, table, query)
    given = (format, encoding, delimiter, header, sheet, kind, map, mapping, date_format, timezone)
    if any(v is not None for v in (*given, dayfirst, *where)) or all_sheets:
        base = bundle.load_config(data)
        load = _load_config(
            format or base.format,
            encoding or base.encoding,
            delimiter or base.delimiter,
            header if header is not None else base.header,
            # a sheet asked for wins over the model's "all sheets", and the reverse
            sheet or (None if all_sheets else base.sheet),
            all_sheets or (base.all_sheets and sheet is None),
            kind or base.kind,
            map,
            mapping,
            date_format or base.date_format,
            dayfirst if dayfirst is not None else base.dayfirst,
            timezone or base.timezone,
        )
        load.columns = {**base.columns, **load.columns}
        load = _where(load, *where)
    update, stop = status_progress(_state["quiet"] or json_)
    written = None
    try:
        assigned = bundle.score(data, snapshot_date=snapshot_date, load=load, progress=update)
        # the file is renamed into place only once the database write (if any) succeeded:
        # a refused write left a fresh --out beside a table still holding the old scores
        with _written_together(out) as (o,):
            if o is not None:
                update(f"writing {out}")
                write_table(bundle.traceable(assigned), o, escape=escape_formulas)
            if write_to is not None:
                update(f"writing {mask_url(write_to)} table {write_table_name}")
                written = write_assignments(
                    write_to,
                    write_table_name,
                    _for_database(assigned),
                    model_id=bundle.model_id,
                    replace=write_mode == "replace",
                )
    finally:
        stop()
    counts = assigned.groupby(["segment_id", "segment_name"]).size()
    summary = {
        "out": None if out is None else str(out),
        "database": None
        if written is None
        else {"url": mask_url(write_to or ""), "table": write_table_name, **written},
        "customers": int(len(assigned)),
        "snapshot_date": assigned.attrs.get("snapshot_date"),
        "out_of_range": int(assigned["out_of_range"].sum()),
        "notes": list(assigned.attrs.get("notes") or []),
        "segments": [
            {"segment_id": int(i), "name": n, "customers": int(c)} for (i, n), c in counts.items()
        ],
    }
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    t = Table(
        title=f"{count(summary['customers'], 'customer')} scored (snapshot "
        f"{summary['snapshot_date'] or 'as given'})"
    )
    t.add_column("segment")
    t.add_column("customers", justify="right")
    for s in summary["segments"]:
        t.add_row(s["name"], f"{s['customers']:,}")
    out_console.print(t)
    if summary["out_of_range"]:
        out_console.print(
            f"[yellow]{count(summary['out_of_range'], 'customer')} "
            f"{'has' if summary['out_of_range'] == 1 else 'have'} a feature outside the "
            "training range[/] (column out_of_range); their segment is an extrapolation.",
            markup=True,
        )
    if out is not None:
        out_console.print(f"Assignments written to [bold]{esc(out)}[/]", markup=True)
    if written is not None:
        out_console.print(
            f"{esc(mask_url(write_to or ''))} table "
            f"[bold]{esc(written.get('table', write_table_name))}[/]: "
            f"{written['inserted']:,} inserted, {written['updated']:,} updated, "
            f"{written['unchanged']:,} unchanged"
            + (f", {written['deleted']:,} deleted" if write_mode == "replace" else ""),
            markup=True,
        )


def _in_file_order(table: Any) -> Any:
    """The public columns of clean lines, in the order of the input lines."""
    from segmint.schema import public_columns

    ordered = table.order_by("_row") if "_row" in table.columns else table
    return ordered.select(*public_columns(table))


def _for_database(assigned: Any) -> Any:
    """The assignment columns a CRM reads, one row per customer (ids as text), with the
    snapshot date the scores are as of (``model_id`` and ``scored_at`` are added by the
    writer)."""
    import pandas as pd

    frame = assigned.copy()
    frame["customer_id"] = frame["customer_id"].astype(str)
    snapshot = assigned.attrs.get("snapshot_date")
    frame["snapshot_date"] = pd.Timestamp(snapshot) if snapshot else pd.NaT
    return frame


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="Output folder of segmint run.")],
    segment: Annotated[
        list[str] | None,
        typer.Option(
            "--segment", "-s", help="Segment name(s) to export (repeatable); default all."
        ),
    ] = None,
    format: Annotated[str, typer.Option("--format", help="csv or xlsx.")] = "csv",
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Folder for the files (default RUN_DIR/exports)."),
    ] = None,
    single_file: Annotated[
        bool,
        typer.Option(
            "--single-file", help="One file with a segment column instead of one per segment."
        ),
    ] = False,
    escape_formulas: EscapeFormulasOpt = True,
) -> None:
    """Write campaign lists (customer id, segment, action, key figures) for a CRM upload."""
    from segmint.export import export_segments

    written = export_segments(
        run_dir,
        segments=segment,
        fmt=format,
        out=out,
        single_file=single_file,
        escape=escape_formulas,
    )
    for path, n in written:
        out_console.print(f"{count(n, 'customer')} -> [bold]{esc(path)}[/]", markup=True)


@app.command()
def serve(
    model: Annotated[Path, typer.Argument(help="model.segmint from a run.")],
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="Port.")] = 8000,
    workers: Annotated[
        int,
        typer.Option(
            "--workers",
            min=1,
            help="Worker processes; each accepts on its own socket (SO_REUSEPORT), so "
            "clients that keep connections open are spread evenly.",
        ),
    ] = 1,
    api_key: Annotated[
        str | None,
        typer.Option(
            "--api-key",
            help="Require this key in the X-API-Key header (env SEGMINT_API_KEY).",
        ),
    ] = None,
    api_key_file: Annotated[
        Path | None,
        typer.Option(
            "--api-key-file",
            help="Require one of this file's keys (one a line, # comments) in the X-API-Key "
            "header; read again when it changes, so keys rotate without a restart (env "
            "SEGMINT_API_KEY_FILE).",
        ),
    ] = None,
    max_batch: Annotated[
        int, typer.Option("--max-batch", min=1, help="Most customers per prediction call.")
    ] = 10_000,
    max_body_bytes: Annotated[
        int, typer.Option("--max-body-bytes", min=1000, help="Largest request body in bytes.")
    ] = 20_000_000,
    max_uploads: Annotated[
        int,
        typer.Option(
            "--max-uploads",
            min=1,
            help="Most /v1/score uploads each worker scores at once (each can use up to "
            "the engine's 1 GB memory limit); more wait for a slot.",
        ),
    ] = 2,
    upload_wait: Annotated[
        float,
        typer.Option(
            "--upload-wait",
            min=0,
            help="Seconds an upload waits for a free slot before a 503 (Retry-After).",
        ),
    ] = 30.0,
) -> None:
    """Serve a model over HTTP: REST API (docs at /docs) for real-time segments."""
    import os
    import shutil

    from segmint.api.serve import port_free, snapshot_model
    from segmint.api.serve import serve as run_server

    # every worker loads a private copy, checked here (one clear line if the bundle is
    # bad): a worker restarted later must not load another model written to the path since
    snapshot, copy = snapshot_model(model)
    try:
        if port and not port_free(host, port):
            raise ConfigError(
                f"cannot listen on {host}:{port}: the address is in use or not available",
                hint="choose another --port (or --host), or stop the server already there",
                code="port_in_use",
            )
        os.environ["SEGMINT_MODEL"] = str(copy)
        key = api_key or os.environ.get("SEGMINT_API_KEY")
        key_file = api_key_file or os.environ.get("SEGMINT_API_KEY_FILE") or None
        if key and key_file:
            raise ConfigError(
                "--api-key (or SEGMINT_API_KEY) and --api-key-file (or "
                "SEGMINT_API_KEY_FILE) were both given",
                hint="put every key in the file and give only --api-key-file (unset "
                "SEGMINT_API_KEY if it is set in the environment)",
            )
        if key:
            os.environ["SEGMINT_API_KEY"] = key
        if key_file:
            from segmint.api.app import read_key_file

            # checked here, once, with one clear line: a worker would fail to start on it.
            # Absolute: the workers must find it whatever their folder.
            key_file = str(Path(key_file).resolve())
            keys = read_key_file(key_file)
            if os.stat(key_file).st_mode & 0o077:
                err_console.print(
                    f"warning: the API key file {esc(key_file)} can be read by other users; "
                    f"chmod 600 {esc(key_file)}",
                    style="yellow",
                )
            os.environ["SEGMINT_API_KEY_FILE"] = key_file
        os.environ["SEGMINT_MAX_BATCH"] = str(max_batch)
        os.environ["SEGMINT_MAX_BODY_BYTES"] = str(max_body_bytes)
        os.environ["SEGMINT_MAX_UPLOADS"] = str(max_uploads)
        os.environ["SEGMINT_UPLOAD_WAIT"] = repr(upload_wait)
        if port == 0:
            # "any free port": chosen here, so the line below names the port clients use
            # (it said http://127.0.0.1:0 while the server listened elsewhere)
            port = _free_port(host)
        err_console.print(
            f"serving {model} on http://{host}:{port} (docs at /docs"
            + (", API key required" if key else "")
            + (f", {len(keys)} API key(s) from {esc(key_file)}" if key_file else "")
            + ")"
        )
        if not key and not key_file and host not in ("127.0.0.1", "localhost", "::1"):
            err_console.print(
                f"warning: listening on {esc(host)} without an API key: anyone who can reach "
                "this machine can use the service, including file uploads to /v1/score; set "
                "--api-key (or SEGMINT_API_KEY) or serve behind a proxy that authenticates",
                style="yellow",
            )
        status = run_server(host, port, workers)
    finally:
        shutil.rmtree(snapshot, ignore_errors=True)
    if status:
        raise typer.Exit(status)


def _free_port(host: str) -> int:
    """A TCP port free on ``host`` now (the system's choice for port 0)."""
    import socket

    family = socket.getaddrinfo(host, 0, type=socket.SOCK_STREAM)[0][0]
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@app.command()
def demo(
    customers: Annotated[
        int,
        typer.Option("--customers", min=50, max=1_000_000, help="Number of synthetic customers."),
    ] = 2000,
    seed: Annotated[
        int,
        typer.Option("--seed", min=0, max=2**32 - 1, help="Random seed (same seed, same data)."),
    ] = 42,
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Output folder (a previous demo there is replaced)."),
    ] = Path("segmint-demo"),
    json_: JsonOpt = False,
) -> None:
    """Run the whole pipeline on built-in synthetic shop data (no download, no network)."""
    from sklearn.metrics import adjusted_rand_score

    from segmint.config import RunConfig
    from segmint.datasets import make_transactions

    overwrite = False
    if out.exists():
        marker = out / "run.json"
        if not marker.is_file() or '"demo": true' not in marker.read_text(encoding="utf-8"):
            raise ConfigError(
                f"{out}: exists and is not a previous demo output",
                hint="choose another --out for the demo",
                code="output_exists",
            )
        overwrite = True
    lines, personas = make_transactions(n_customers=customers, seed=seed)
    cfg = RunConfig()
    cfg.report.title = f"Demo: {customers:,} synthetic customers (seed {seed})"
    result = _run_pipeline(lines, cfg, out, overwrite, quiet=json_)
    from segmint.io import atomic_path

    run_json = out / "run.json"
    info = json.loads(run_json.read_text(encoding="utf-8"))
    info["demo"] = True
    with atomic_path(run_json) as tmp:
        tmp.write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
    merged = result.customers.merge(personas, on="customer_id")
    ari = float(adjusted_rand_score(merged["persona"], merged["segment_id"]))
    extra = {
        "personas": personas["persona"].value_counts().to_dict(),
        "persona_recovery_ari": round(ari, 3),
    }
    _report_run(result, json_, extra)
    if not json_:
        out_console.print(
            f"Planted personas: {len(extra['personas'])}; recovered with adjusted Rand "
            f"index {ari:.2f} (1 = perfectly)."
        )


# ------------------------------------------------------------------ rendering
def _render_inspect(summary: dict[str, Any]) -> None:
    src = summary["source"]
    facts = Table(title="Source", show_header=False)
    facts.add_column("what", style="bold")
    facts.add_column("value")
    facts.add_row("file", str(src["path"]))
    facts.add_row("format", str(src["format"]))
    keys = ("compression", "encoding", "delimiter", "header", "sheets", "sheets_not_read")
    for key in (*keys, "title_rows", "parts"):
        if src.get(key) is not None:
            value = src[key]
            if key == "delimiter":
                value = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(
                    value, repr(value)
                )
            if key == "title_rows":
                key = "skipped above header"
                value = ", ".join(f"{count(n, 'row')} of {sheet!r}" for sheet, n in value.items())
            if key == "sheets_not_read":
                key = "sheets not read"
                value = ", ".join(map(repr, value)) + " (--all-sheets reads every sheet)"
            if key == "encoding" and src.get("encoding_detected"):
                value = f"{value} (detected)"
            facts.add_row(key, str(value))
    facts.add_row("rows", f"{summary['audit']['input_rows']:,}")
    out_console.print(facts)

    cols = Table(title="Columns")
    for name in ("column", "type", "example"):
        cols.add_column(name)
    for c in summary["columns"]:
        cols.add_row(c["name"], c["type"], "" if c["example"] is None else str(c["example"])[:40])
    out_console.print(cols)

    mapping = summary["mapping"]
    mt = Table(title=f"Mapping ({mapping['kind']})")
    for name in ("canonical", "source column", "how"):
        mt.add_column(name)
    for row in mapping["columns"]:
        mt.add_row(row["canonical"], row["source"] or "-", row["how"])
    out_console.print(mt)
    # the audit's notes say the assumed orders and units again, with how to map them
    said = {n.split(":")[0] for n in summary["audit"].get("notes") or []}
    for note in mapping["notes"]:
        if note.split(":")[0] in said & {"invoice_id", "quantity"}:
            continue
        out_console.print(f"  note: {note}", highlight=False)
    if mapping["unmapped"]:
        out_console.print(f"  not used: {', '.join(mapping['unmapped'])}", highlight=False)
    _render_audit(summary["audit"])
    if "features" in summary:
        _render_features(summary)
    if summary.get("rejected"):
        out_console.print(
            f"Rejected lines written to [bold]{esc(summary['rejected'])}[/]", markup=True
        )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 1e12 else f"{value:.3g}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def _render_features(summary: dict[str, Any]) -> None:
    feats = summary["features"]
    window = f", window {feats['window']}" if feats.get("window") else ""
    t = Table(
        title=f"Customer features ({count(feats['customers'], 'customer')}, snapshot "
        f"{feats['snapshot_date'] or 'as given'}{window}; "
        f"{feats['feature_set']} v{feats['feature_set_version']})"
    )
    t.add_column("feature")
    for name in ("mean", "min", "p25", "median", "p75", "max"):
        t.add_column(name, justify="right")
    for row in feats["summary"]:
        t.add_row(
            row["feature"], *[_fmt(row[k]) for k in ("mean", "min", "p25", "median", "p75", "max")]
        )
    out_console.print(t)
    if feats.get("returns_left_out_note"):
        err_console.print(
            f"[yellow]Note:[/] {esc(feats['returns_left_out_note'])}",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )
    from segmint.rfm import rule_set_label

    rfm = summary["rfm"]
    cuts = "; ".join(
        f"{col} {'<=' if c['lower_is_better'] else '>='} "
        + "/".join("-" if v is None else f"{v:g}" for v in c["thresholds"])
        for col, c in rfm["cut_points"].items()
    )
    s = Table(
        title=f"RFM segments ({rule_set_label(rfm['rule_set'], rfm['rule_set_version'])}, "
        f"{rfm['method']} scores)"
    )
    s.add_column("segment")
    s.add_column("customers", justify="right")
    s.add_column("share", justify="right")
    s.add_column("suggested action")
    for row in rfm["segments"]:
        share = percent_text(row["share"], sep="")
        s.add_row(row["segment"], f"{row['customers']:,}", share, row["action"])
    out_console.print(s)
    out_console.print(f"RFM cut points for scores 2/3/4/5: {cuts}", highlight=False)
    flat = [
        col
        for col, c in rfm["cut_points"].items()
        if rfm["method"] == "quantile" and all(v is None for v in c["thresholds"])
    ]
    if flat:
        # "-/-/-/-" and every customer in one cell read like a fault without this
        err_console.print(
            f"[yellow]Note:[/] every customer scores 1 on {', '.join(flat)}: all share "
            "one value (or there is one customer), so quintiles cannot tell them apart",
            highlight=False,
            markup=True,
            soft_wrap=True,
        )


def _render_audit(audit: dict[str, Any]) -> None:
    unit = "lines" if audit["kind"] == "transactions" else "customer rows"
    t = Table(title=f"Cleaning audit ({unit}, rules in the order they apply)")
    t.add_column("rule")
    t.add_column("matched", justify="right")
    t.add_column("dropped", justify="right")
    has_amount = any(r["amount_dropped"] is not None for r in audit["rules"])
    if has_amount:
        t.add_column("value dropped", justify="right")
    t.add_column("reason")
    for r in audit["rules"]:
        if not r["enabled"]:
            continue
        row = [r["name"], f"{r['matched']:,}", f"{r['dropped']:,}"]
        if has_amount:
            row.append(f"{r['amount_dropped']:,.2f}")
        t.add_row(*row, r["reason"])
    out_console.print(t)
    ok = "[green]balanced[/]" if audit["balanced"] else "[red]NOT balanced[/]"
    out_console.print(
        f"input {audit['input_rows']:,} = kept {audit['kept_rows']:,} + dropped "
        f"{audit['dropped_rows']:,}  {ok}",
        markup=True,
    )
    out_console.print(
        f"customers: {audit['input_customers']:,} in input, {audit['kept_customers']:,} kept"
        + (f"; dates {audit['first_date']} to {audit['last_date']}" if audit["first_date"] else "")
    )
    if audit["returns_rows"]:
        out_console.print(
            f"return lines kept aside (subtracted from monetary, and the return_rate): "
            f"{audit['returns_rows']:,} (value {audit['returns_amount']:,.2f})"
        )
    for note in audit.get("notes") or []:
        out_console.print(f"[yellow]Note:[/] {esc(note)}", soft_wrap=True, markup=True)


# ------------------------------------------------------------------ entry point
_GLOBAL_FLAGS = {"--quiet", "-q", "--verbose", "-v", "-vv", "-vvv", "--debug", "--version"}
_GLOBAL_VALUES = {"--memory-limit", "--threads", "--temp-dir"}


def hoist_global_options(args: list[str]) -> list[str]:
    """Move the global options given after the command to before it, so that
    ``segmint run data.csv --quiet`` works as ``segmint --quiet run data.csv`` does
    (click only reads a group's options before the sub-command). Tokens after ``--``
    are left alone."""
    commands = {_command_name(c) for c in app.registered_commands}
    at = next((i for i, a in enumerate(args) if a in commands), None)
    if at is None:
        return list(args)
    head, tail = list(args[:at]), args[at:]
    rest: list[str] = []
    moved: list[str] = []
    i = 0
    while i < len(tail):
        token = tail[i]
        if token == "--":
            rest.extend(tail[i:])
            break
        name = token.split("=", 1)[0]
        if token in _GLOBAL_FLAGS:
            moved.append(token)
        elif name in _GLOBAL_VALUES:
            moved.append(token)
            if "=" not in token and i + 1 < len(tail):
                moved.append(tail[i + 1])
                i += 1
        else:
            rest.append(token)
        i += 1
    return head + moved + rest


def _command_name(info: Any) -> str:
    return info.name or info.callback.__name__.replace("_", "-")


def _json_error(args: list[str], code: str, message: str, hint: str | None) -> None:
    """With --json, the error also goes to stdout as one JSON object (the message stays
    on stderr for people): a script reading stdout gets JSON either way."""
    if "--json" in args:
        try:
            sys.stdout.write(
                json.dumps({"error": code, "message": message, "hint": hint}, ensure_ascii=False)
                + "\n"
            )
            sys.stdout.flush()
        except BrokenPipeError:
            _closed_pipe["seen"] = True  # the error's own exit status still applies


#: Exit status when the reader of stdout went away (``segmint inspect F | head -1``):
#: 128 + SIGPIPE, what the shell reports for a program SIGPIPE ended (``yes | head``).
EXIT_BROKEN_PIPE = 141


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and turn errors into exit codes.

    A closed pipe on stdout (or stderr) ends the command quietly with
    :data:`EXIT_BROKEN_PIPE`, as ``head`` and ``grep -q`` readers expect: no traceback,
    no "Exception ignored" message, and outputs cleaned up as for any error (SIGPIPE
    is not left to kill the process, which would skip that clean-up).
    """
    stdout, stderr = sys.stdout, sys.stderr
    _closed_pipe["seen"] = False
    code = EXIT_BROKEN_PIPE  # when _main itself ends on the closed pipe
    try:
        code = _main(argv)
        sys.stdout.flush()  # what is still buffered: fails now, not at exit
    except BrokenPipeError:
        _closed_pipe["seen"] = True
        # a command that failed keeps its status; one that succeeded lost its output
        code = EXIT_BROKEN_PIPE if code == 0 else code
    # Typer catches a broken pipe itself, exits 1 and wraps the streams in its
    # PacifyFlushWrapper: that wrapper tells its exit 1 from a failure
    if type(sys.stdout).__name__ == "PacifyFlushWrapper":
        code = EXIT_BROKEN_PIPE
        _closed_pipe["seen"] = True
    if _closed_pipe["seen"]:
        sys.stdout, sys.stderr = stdout, stderr
        _silence_closed_streams()
    return code


#: Whether stdout was found closed while the command ran (see :func:`main`).
_closed_pipe = {"seen": False}


def _silence_closed_streams() -> None:
    """Point stdout and stderr at /dev/null, so that the interpreter's flush at exit
    does not fail again on the closed pipe and print "Exception ignored ..." (the
    recipe of the Python documentation on SIGPIPE)."""
    import os

    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        for stream in (sys.stdout, sys.stderr):
            try:
                os.dup2(devnull, stream.fileno())
            except (OSError, ValueError, AttributeError):
                pass  # not a real file (a test's capture): nothing is flushed at exit
    finally:
        os.close(devnull)


def _main(argv: list[str] | None) -> int:
    """:func:`main` without the broken-pipe handling."""
    args = hoist_global_options(sys.argv[1:] if argv is None else list(argv))
    previous = _interrupt_on_sigterm()
    try:
        # standalone mode: Typer reports usage errors itself (exit 2) and exits via SystemExit
        app(args=args, prog_name="segmint", standalone_mode=True)
        return 0
    except SystemExit as exc:
        code = exc.code
        code = code if isinstance(code, int) else (0 if code is None else 1)
        # Typer's own exits: a command line it refused (2, the reason on stderr) or an
        # interruption (130); a script reading --json output gets JSON for these too
        if code == 2:
            _json_error(
                args,
                "usage_error",
                "the command line is not valid (the reason is on stderr)",
                "segmint COMMAND --help lists the options",
            )
        elif code == 130:  # Typer caught the KeyboardInterrupt (it prints no message)
            return _report_interruption(args)
        return code
    except SegmintError as exc:
        if _interrupted["signal"] is not None:  # e.g. "cannot be read (Query interrupted)"
            return _report_interruption(args)
        if _state["debug"] or "--debug" in args:
            traceback.print_exc()
        render_error(exc)
        _json_error(args, exc.code, exc.message, exc.hint)
        return exc.exit_code
    except KeyboardInterrupt:
        return _report_interruption(args)
    except BrokenPipeError:
        raise  # main() ends it quietly: not an error to report on a closed stream
    except OSError as exc:
        if _interrupted["signal"] is not None:
            return _report_interruption(args)
        if _state["debug"] or "--debug" in args:
            traceback.print_exc()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        error: SegmintError = ConfigError(
            f"{where}{exc.strerror or exc}", hint="check the path and its permissions"
        )
        error.code = "os_error"
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):  # e.g. writing a report or a bundle
            error = EnvironmentFailure(
                f"{where}the disk is full ({exc.strerror or exc}; nothing was written)",
                hint="free some space (or raise the quota), or write the output to another disk",
                code="disk_full",
            )
        render_error(error)
        _json_error(args, error.code, error.message, error.hint)
        return error.exit_code
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if _is_interruption(exc):
            return _report_interruption(args)
        if _state["debug"] or "--debug" in args:
            traceback.print_exc()
        err_console.print(
            f"[bold red]Internal error:[/] {type(exc).__name__}: {esc(exc)}\nThis is a bug in "
            f"segmint {__version__}; please report it with the command you ran (run again "
            "with --debug for the traceback).",
            highlight=False,
            markup=True,
        )
        _json_error(args, "internal_error", f"{type(exc).__name__}: {exc}", None)
        return 70
    finally:
        if previous is not None:
            import signal

            signal.signal(signal.SIGINT, previous[0])
            signal.signal(signal.SIGTERM, previous[1])


#: The signal that interrupted the command (shared with the progress callbacks, which
#: stop at the next stage when a library swallowed the KeyboardInterrupt).
_interrupted = interrupted


def _report_interruption(args: list[str]) -> int:
    """End an interrupted command the same way wherever the interruption surfaced (in
    Typer, in segmint, inside a DuckDB query): "Interrupted." on stderr, the
    ``interrupted`` JSON error with ``--json``, exit 130."""
    err_console.print("[red]Interrupted.[/]", markup=True)
    _json_error(args, "interrupted", "interrupted", None)
    return 130


def _interrupt_on_sigterm() -> Any:
    """Treat SIGTERM (a job scheduler stopping the run) like Ctrl-C, so every output
    written so far is removed on the way out, and remember that either arrived: an
    interrupted DuckDB query surfaces as its own error ("Query interrupted"), which must
    end as an interruption (exit 130), not as an internal error. Returns the previous
    SIGINT and SIGTERM handlers."""
    import signal
    import threading

    def handler(signum: int, frame: Any) -> None:
        _interrupted["signal"] = signum
        raise KeyboardInterrupt

    _interrupted["signal"] = None
    if threading.current_thread() is threading.main_thread():
        return (signal.signal(signal.SIGINT, handler), signal.signal(signal.SIGTERM, handler))
    return None


def _is_interruption(exc: BaseException) -> bool:
    """An error raised because the user or a scheduler interrupted the work."""
    if _interrupted["signal"] is not None:
        return True
    return type(exc).__name__ == "InterruptException" or "Query interrupted" in str(exc)


def _entry() -> None:  # pragma: no cover - thin wrapper used by the console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()
