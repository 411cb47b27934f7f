"""The ``segmint`` command (Typer): parse options, call the pipeline, render the result.

Errors raised on purpose (:class:`~segmint.errors.SegmintError`) become one red line plus
a hint and the error's exit code, never a traceback (``--debug`` shows it). Anything else
is a bug, and the message says so.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError
from rich.table import Table

from segmint import __version__
from segmint._console import err_console, out_console, render_error, setup_logging, status_progress
from segmint.config import (
    CleanConfig,
    LoadConfig,
    load_mapping_file,
    parse_map_options,
    validation_error,
)
from segmint.errors import ConfigError, SegmintError

__all__ = ["app", "main"]

app = typer.Typer(
    name="segmint",
    help="Customer segmentation from retail transactions: load, clean, segment, report.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
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
        help="Excel sheet name or 0-based number (default: the first).",
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
        help="Switch a cleaning rule off by name (repeatable).",
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
        )
    except ValidationError as exc:
        raise validation_error(exc, "options") from None


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
        raise validation_error(exc, "options") from None


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
            "--threads", min=1, help="Engine threads (default: all cores). Env: SEGMINT_THREADS."
        ),
    ] = None,
    temp_dir: Annotated[
        Path | None,
        typer.Option(
            "--temp-dir",
            help="Where the engine spills (default: a private "
            "temporary folder). Env: SEGMINT_TEMP_DIR.",
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


@app.command()
def inspect(
    file: Annotated[Path, typer.Argument(help="Transactions or customer table to inspect.")],
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
    non_product: NonProductOpt = None,
    keep_duplicates: KeepDuplicatesOpt = False,
    outlier_quantile: OutlierOpt = None,
    disable_rule: DisableRuleOpt = None,
    rejected: RejectedOpt = None,
    snapshot_date: SnapshotOpt = None,
    rule_set: RuleSetOpt = "rf-grid",
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
    )
    cfg = _clean_config(non_product, keep_duplicates, outlier_quantile, disable_rule)
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        summary = run_inspect(
            str(file),
            load,
            cfg,
            rejected=rejected,
            snapshot_date=snapshot_date,
            rule_set=rule_set,
            progress=update,
        )
    finally:
        stop()
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
    else:
        _render_inspect(summary)


@app.command("clean")
def clean_cmd(
    file: Annotated[Path, typer.Argument(help="Transactions or customer table to clean.")],
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
    json_: JsonOpt = False,
) -> None:
    """Clean a file into canonical columns; write kept lines, and optionally the rest."""
    from segmint.io import atomic_path, write_table
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
    )
    cfg = _clean_config(non_product, keep_duplicates, outlier_quantile, disable_rule)
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        prepared = prepare(str(file), load, cfg, progress=update)
        result = prepared.cleaned
        update(f"writing {out}")
        write_table(result.lines.drop("_row"), out)
        if rejected:
            update(f"writing {rejected}")
            result.write_rejected(rejected)
        if returns:
            write_table(result.returns.drop("_row"), returns)
        if audit:
            with atomic_path(audit) as tmp:
                tmp.write_text(result.audit.to_json(), encoding="utf-8")
    finally:
        stop()
    if json_:
        sys.stdout.write(result.audit.to_json() + "\n")
    else:
        _render_audit(result.audit.to_dict())
        out_console.print(f"Kept lines written to [bold]{out}[/]")


@app.command()
def features(
    file: Annotated[Path, typer.Argument(help="Transactions or customer table.")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Where to write the customer table (.parquet or .csv)."),
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
    non_product: NonProductOpt = None,
    keep_duplicates: KeepDuplicatesOpt = False,
    outlier_quantile: OutlierOpt = None,
    disable_rule: DisableRuleOpt = None,
    snapshot_date: SnapshotOpt = None,
    window: Annotated[
        str | None,
        typer.Option(
            "--window",
            help="Restrict frequency and monetary to the last 90D, 6M, 12M, 1Y, ...",
            rich_help_panel="Features",
        ),
    ] = None,
    rule_set: RuleSetOpt = "rf-grid",
    rfm_thresholds: Annotated[
        Path | None,
        typer.Option(
            "--rfm-thresholds",
            help="TOML file with fixed cut points ([thresholds] "
            "recency_days/frequency/monetary = four numbers each) instead of quintiles.",
            rich_help_panel="Features",
        ),
    ] = None,
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
    )
    cfg = _clean_config(non_product, keep_duplicates, outlier_quantile, disable_rule)
    thresholds = load_thresholds_file(rfm_thresholds) if rfm_thresholds else None
    update, stop = status_progress(_state["quiet"] or json_)
    try:
        prepared = prepare(str(file), load, cfg, progress=update)
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
    out_console.print(f"Customer table written to [bold]{out}[/]")


@app.command()
def demo(
    customers: Annotated[
        int,
        typer.Option("--customers", min=50, max=1_000_000, help="Number of synthetic customers."),
    ] = 2000,
    seed: Annotated[int, typer.Option("--seed", help="Random seed (same seed, same data).")] = 42,
    rejected: RejectedOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run segmint on built-in synthetic shop data (no download, no network)."""
    from segmint.datasets import make_transactions
    from segmint.pipeline import inspect as run_inspect

    update, stop = status_progress(_state["quiet"] or json_)
    try:
        update(f"generating {customers:,} synthetic customers")
        lines, personas = make_transactions(n_customers=customers, seed=seed)
        summary = run_inspect(lines, rejected=rejected, progress=update)
    finally:
        stop()
    summary["source"]["path"] = f"built-in demo data ({customers:,} customers, seed {seed})"
    summary["personas"] = personas["persona"].value_counts().to_dict()
    if json_:
        sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        return
    _render_inspect(summary)
    table = Table(title="Planted personas (the truth segmint should recover)")
    table.add_column("persona")
    table.add_column("customers", justify="right")
    for name, n in summary["personas"].items():
        table.add_row(name, f"{n:,}")
    out_console.print(table)


# ------------------------------------------------------------------ rendering
def _render_inspect(summary: dict[str, Any]) -> None:
    src = summary["source"]
    facts = Table(title="Source", show_header=False)
    facts.add_column("what", style="bold")
    facts.add_column("value")
    facts.add_row("file", str(src["path"]))
    facts.add_row("format", str(src["format"]))
    for key in ("compression", "encoding", "delimiter", "header", "sheets", "parts"):
        if src.get(key) is not None:
            value = src[key]
            if key == "delimiter":
                value = {"\t": "tab", ",": "comma", ";": "semicolon", "|": "pipe"}.get(
                    value, repr(value)
                )
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
    for note in mapping["notes"]:
        out_console.print(f"  note: {note}", highlight=False)
    if mapping["unmapped"]:
        out_console.print(f"  not used: {', '.join(mapping['unmapped'])}", highlight=False)
    _render_audit(summary["audit"])
    if "features" in summary:
        _render_features(summary)
    if summary.get("rejected"):
        out_console.print(f"Rejected lines written to [bold]{summary['rejected']}[/]")


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
        title=f"Customer features ({feats['customers']:,} customers, snapshot "
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
    rfm = summary["rfm"]
    cuts = "; ".join(
        f"{col} {'<=' if c['lower_is_better'] else '>='} "
        + "/".join("-" if v is None else f"{v:g}" for v in c["thresholds"])
        for col, c in rfm["cut_points"].items()
    )
    s = Table(
        title=f"RFM segments ({rfm['rule_set']} v{rfm['rule_set_version']}, {rfm['method']} scores)"
    )
    s.add_column("segment")
    s.add_column("customers", justify="right")
    s.add_column("share", justify="right")
    s.add_column("suggested action")
    for row in rfm["segments"]:
        s.add_row(row["segment"], f"{row['customers']:,}", f"{row['share']:.1%}", row["action"])
    out_console.print(s)
    out_console.print(f"RFM cut points for scores 2/3/4/5: {cuts}", highlight=False)


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
        f"{audit['dropped_rows']:,}  {ok}"
    )
    out_console.print(
        f"customers: {audit['input_customers']:,} in input, {audit['kept_customers']:,} kept"
        + (f"; dates {audit['first_date']} to {audit['last_date']}" if audit["first_date"] else "")
    )
    if audit["returns_rows"]:
        out_console.print(
            f"return lines kept aside for return_rate: {audit['returns_rows']:,} "
            f"(value {audit['returns_amount']:,.2f})"
        )


# ------------------------------------------------------------------ entry point
def main(argv: list[str] | None = None) -> int:
    """Console-script entry point: run the app and turn errors into exit codes."""
    args = sys.argv[1:] if argv is None else argv
    try:
        # standalone mode: Typer reports usage errors itself (exit 2) and exits via SystemExit
        app(args=args, prog_name="segmint", standalone_mode=True)
        return 0
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    except SegmintError as exc:
        if _state["debug"] or "--debug" in args:
            traceback.print_exc()
        render_error(exc)
        return exc.exit_code
    except KeyboardInterrupt:
        err_console.print("[red]Interrupted.[/]")
        return 130
    except OSError as exc:
        if _state["debug"] or "--debug" in args:
            traceback.print_exc()
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        render_error(
            ConfigError(f"{where}{exc.strerror or exc}", hint="check the path and its permissions")
        )
        return 2
    except Exception as exc:  # noqa: BLE001 - the last line of defence
        if _state["debug"] or "--debug" in args:
            traceback.print_exc()
        err_console.print(
            f"[bold red]Internal error:[/] {type(exc).__name__}: {exc}\nThis is a bug in "
            f"segmint {__version__}; please report it with the command you ran (run again "
            "with --debug for the traceback).",
            highlight=False,
        )
        return 70


def _entry() -> None:  # pragma: no cover - thin wrapper used by the console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    _entry()
