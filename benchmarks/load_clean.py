"""Benchmark: segmint load + clean against a raw DuckDB scan of the same file.

Usage::

    python benchmarks/load_clean.py --rows 1000000 [--format csv|parquet|both]
        [--data-dir DIR] [--memory-limit 1GB|none] [--threads N] [--keep]
        [--repeat N] [--floor-repeat N] [--spill-root DIR] [--line-breaks-ab]

For each format it

1. generates about ``--rows`` synthetic Online-Retail-like lines (seed 0) with
   :func:`segmint.datasets._synthetic.write_transactions`, or reuses a file of the same
   size and format already in the data folder (generated files are deleted at the end
   unless ``--keep`` is given);
2. measures the FLOOR: one DuckDB ``SELECT COUNT(*) FROM read_csv(path, all_varchar=true)``
   (``read_parquet`` for Parquet) on that file, and a SCAN that reads every value
   (``BIT_XOR(HASH(column))`` of every column; ``COUNT(*)`` of a Parquet file is answered
   from its metadata, so the floor alone says little for Parquet);
3. measures segmint: ``prepare(path, con=connect(memory_limit=..., temp_directory=...))``
   and its ``.cleaned.audit`` (the full audit is computed inside ``prepare``);

and prints a table with the times, the ratios segmint/floor and segmint/scan, the peak
resident memory of each and the audit totals. It exits with status 1 when an audit does
not balance (input != kept + dropped), the audit's input differs from the file's row
count, or a measurement fails.

Every step runs in a fresh subprocess of this same script (hidden ``--child`` mode), so
the peak memory reported is that of one measurement alone. The peak is the child's
``ru_maxrss`` as returned by ``os.wait4`` for that child (KiB on Linux). Linux carries the
*parent's* peak RSS into a child across ``exec``, so this parent process imports only the
standard library and stays at a few MiB; the child also reports its own ``VmHWM`` from
``/proc/self/status`` as a cross-check. Times are measured inside the child around the
measured call only (interpreter start and imports excluded).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

from _harness import (
    HERE,
    StagePeaks,
    _vm_hwm_kib,
    add_child_arguments,
    chunk_customers,
    mib,
    parse_rows,
    run_child,
    say,
    source_revision,
)

DEFAULT_DATA_DIR = HERE / "data"
SEED = 0
GIB = 1024**3
TARGET_PEAK = 2 * GIB  # the project's goal at 10M lines


# ----------------------------------------------------------------------------- child side


def _child_generate(args: argparse.Namespace) -> dict:
    from segmint.datasets._synthetic import write_transactions

    t0 = time.perf_counter()
    n = write_transactions(
        Path(args.path), n_lines=args.rows, seed=SEED, chunk_customers=chunk_customers(args.rows)
    )
    return {"lines": n, "seconds": time.perf_counter() - t0}


def _duckdb_settings(args: argparse.Namespace) -> list[str]:
    out = []
    if args.memory_limit:
        out.append(f"SET memory_limit = '{args.memory_limit}'")
    if args.threads:
        out.append(f"SET threads = {int(args.threads)}")
    if args.temp_dir:
        out.append(f"SET temp_directory = '{args.temp_dir}'")
    return out


def _child_floor(args: argparse.Namespace) -> dict:
    import duckdb

    con = duckdb.connect()
    for stmt in _duckdb_settings(args):
        con.execute(stmt)
    path = args.path.replace("'", "''")
    reader = (
        f"read_parquet('{path}')"
        if args.path.endswith(".parquet")
        else f"read_csv('{path}', all_varchar=true)"
    )
    what = "COUNT(*)"
    if args.child == "scan":  # every value of every column read, not only the row count
        names = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}").fetchall()]
        # BIT_XOR(HASH(...)) and not MAX(): DuckDB answers MIN/MAX of Parquet columns
        # from the row-group statistics without reading the values
        what += "".join(f', BIT_XOR(HASH("{n}"))' for n in names)
    t0 = time.perf_counter()
    count = con.execute(f"SELECT {what} FROM {reader}").fetchone()[0]
    seconds = time.perf_counter() - t0
    con.close()
    return {"seconds": seconds, "count": int(count), "duckdb": duckdb.__version__}


def _child_segmint(args: argparse.Namespace) -> dict:
    from segmint import schema
    from segmint.io import connect
    from segmint.pipeline import prepare

    # the A/B of --line-breaks-ab: the same run without the profile's line-break count
    schema._CHECK_LINE_BREAKS = args.child != "segmint-nobreaks"

    con = connect(
        memory_limit=args.memory_limit or None,
        threads=args.threads or None,
        temp_directory=args.temp_dir or None,
    )
    peaks = StagePeaks()
    stages = iter(["load", "resolve", "clean"])
    t0 = time.perf_counter()

    def progress(stage: str) -> None:
        print(f"           child: {time.perf_counter() - t0:7.1f}s {stage}", flush=True)
        peaks.mark(next(stages, stage))

    prepared = prepare(args.path, con=con, progress=progress)
    audit = prepared.cleaned.audit
    seconds = time.perf_counter() - t0
    progress("done")
    return {
        "seconds": seconds,
        "timings": prepared.timings,
        "stage_peaks_kib": {k: v for k, v in peaks.stop().items() if k != "done"},
        "input_rows": audit.input_rows,
        "kept_rows": audit.kept_rows,
        "dropped_rows": audit.dropped_rows,
        "balanced": audit.balanced,
        "rules": {r.name: r.dropped for r in audit.rules},
    }


def _run_child(args: argparse.Namespace) -> int:
    fn = {
        "generate": _child_generate,
        "floor": _child_floor,
        "scan": _child_floor,
        "segmint": _child_segmint,
        "segmint-nobreaks": _child_segmint,
    }
    result = fn[args.child](args)
    result["vm_hwm_kib"] = _vm_hwm_kib()
    Path(args.result).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------- parent side


def measure(mode: str, path: Path, args: argparse.Namespace) -> dict:
    """Run one measurement in a fresh subprocess; add its peak RSS and wall time."""
    child_args = [
        "--path",
        str(path),
        "--rows",
        str(args.rows),
        "--memory-limit",
        args.memory_limit,
        "--threads",
        str(args.threads),
    ]
    return run_child(str(Path(__file__).resolve()), child_args, mode, args.spill_root)


def measure_best(mode: str, path: Path, args: argparse.Namespace, times: int) -> dict:
    """Run a measurement ``times`` times: the fastest run, with the highest peak of all."""
    runs = [measure(mode, path, args) for _ in range(max(times, 1))]
    failed = [r for r in runs if not r["ok"]]
    if failed:
        return failed[0]
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_kib"] = max(r["peak_kib"] for r in runs)
    best["runs"] = [round(r["seconds"], 3) for r in runs]
    return best


def data_file(data_dir: Path, rows: int, fmt: str) -> Path:
    return data_dir / f"retail_{rows}_seed{SEED}.{fmt}"


def _secs(m: dict) -> str:
    return f"{m['seconds']:.2f}" if m.get("ok") else "FAILED"


def _ratio(a: dict, b: dict) -> str:
    return f"{a['seconds'] / b['seconds']:.1f}x" if a.get("ok") and b.get("ok") else "-"


def print_table(rows: list[dict]) -> None:
    headers = [
        "format",
        "rows",
        "floor s",
        "scan s",
        "segmint s",
        "ratio/floor",
        "ratio/scan",
        "floor MiB",
        "scan MiB",
        "segmint MiB",
        "lines/s",
        "input",
        "kept",
        "dropped",
        "balanced",
    ]
    body = []
    for r in rows:
        f, sc, s = r["floor"], r["scan"], r["segmint"]
        ok = bool(s.get("ok"))
        body.append(
            [
                r["format"],
                f"{r['lines']:,}",
                _secs(f),
                _secs(sc),
                _secs(s),
                _ratio(s, f),
                _ratio(s, sc),
                mib(f.get("peak_kib")),
                mib(sc.get("peak_kib")),
                mib(s.get("peak_kib")),
                f"{r['lines'] / s['seconds']:,.0f}" if ok else "-",
                f"{s['input_rows']:,}" if ok else "-",
                f"{s['kept_rows']:,}" if ok else "-",
                f"{s['dropped_rows']:,}" if ok else "-",
                str(s["balanced"]) if ok else "-",
            ]
        )
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    line = "| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |"
    print(line)
    print("|" + "|".join("-" * (w + 2) for w in widths) + "|")
    for b in body:
        cells = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(b, widths, strict=True))
        ]
        print("| " + " | ".join(cells) + " |")


def run(args: argparse.Namespace) -> int:
    formats = ["csv", "parquet"] if args.format == "both" else [args.format]
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    if args.spill_root:
        Path(args.spill_root).mkdir(parents=True, exist_ok=True)
    say(
        f"segmint load+clean benchmark: {args.rows:,} lines, formats {', '.join(formats)}, "
        f"DuckDB memory_limit={args.memory_limit or 'none (DuckDB default)'}, "
        f"threads={args.threads or 'default'}, "
        f"{os.cpu_count()} cores, Python {platform.python_version()}, load average "
        f"{os.getloadavg()[0]:.2f}"
    )
    say(f"segmint source: {source_revision()}")
    results: list[dict] = []
    created: list[Path] = []
    failed = False
    for fmt in formats:
        path = data_file(data_dir, args.rows, fmt)
        generated = None
        if path.exists():
            say(f"[{fmt}] reusing {path} ({path.stat().st_size / 2**20:,.0f} MiB)")
        else:
            say(f"[{fmt}] generating ~{args.rows:,} lines into {path} ...")
            gen = measure("generate", path, args)
            if not gen["ok"]:
                say(f"[{fmt}] generation FAILED (exit {gen['returncode']})")
                failed = True
                continue
            created.append(path)
            generated = gen["lines"]
            say(
                f"[{fmt}] generated {gen['lines']:,} lines in {gen['seconds']:.1f}s "
                f"({path.stat().st_size / 2**20:,.0f} MiB, generator peak "
                f"{mib(gen['peak_kib'])} MiB)"
            )
        say(
            f"[{fmt}] floor: DuckDB COUNT(*) over the file, fastest of {args.floor_repeat} "
            f"fresh processes (load average {os.getloadavg()[0]:.2f}) ..."
        )
        floor = measure_best("floor", path, args, args.floor_repeat)
        if floor["ok"]:
            say(
                f"[{fmt}] floor: {floor['count']:,} rows in {floor['seconds']:.2f}s, "
                f"peak {mib(floor['peak_kib'])} MiB (VmHWM {mib(floor['vm_hwm_kib'])} MiB; "
                f"runs {floor['runs']} s)"
            )
        else:
            say(f"[{fmt}] floor FAILED (exit {floor['returncode']})")
            failed = True
        say(
            f"[{fmt}] scan: DuckDB hash of every value, fastest of {args.floor_repeat} fresh "
            f"processes (load average {os.getloadavg()[0]:.2f}) ..."
        )
        scan = measure_best("scan", path, args, args.floor_repeat)
        if scan["ok"]:
            say(
                f"[{fmt}] scan: {scan['seconds']:.2f}s, peak {mib(scan['peak_kib'])} MiB "
                f"(VmHWM {mib(scan['vm_hwm_kib'])} MiB; runs {scan['runs']} s)"
            )
        else:
            say(f"[{fmt}] scan FAILED (exit {scan['returncode']})")
            failed = True
        say(
            f"[{fmt}] segmint: prepare() + audit, fastest of {args.repeat} fresh process(es) "
            f"(load average {os.getloadavg()[0]:.2f}) ..."
        )
        seg = measure_best("segmint", path, args, args.repeat)
        if seg["ok"]:
            t = seg["timings"]
            say(
                f"[{fmt}] segmint: {seg['seconds']:.2f}s (load {t['load']:.2f}s, "
                f"resolve {t['resolve']:.2f}s, clean {t['clean']:.2f}s; process "
                f"{seg['process_seconds']:.1f}s), peak {mib(seg['peak_kib'])} MiB "
                f"(VmHWM {mib(seg['vm_hwm_kib'])} MiB; runs {seg['runs']} s)"
            )
            stage_peaks = seg.get("stage_peaks_kib", {})
            say(
                f"[{fmt}] segmint: peak RSS per stage (sampled every 20 ms): "
                + ", ".join(f"{k} {mib(v)} MiB" for k, v in stage_peaks.items())
            )
            say(f"[{fmt}] audit dropped per rule: {seg['rules']}")
            if not seg["balanced"]:
                say(f"[{fmt}] AUDIT DOES NOT BALANCE")
                failed = True
            if floor["ok"] and floor["count"] != seg["input_rows"]:
                say(
                    f"[{fmt}] MISMATCH: the file has {floor['count']:,} rows but the audit "
                    f"counts {seg['input_rows']:,} input rows"
                )
                failed = True
        else:
            say(
                f"[{fmt}] segmint FAILED (exit {seg['returncode']}, after "
                f"{seg['process_seconds']:.1f}s, peak {mib(seg['peak_kib'])} MiB)"
            )
            failed = True
        if args.line_breaks_ab and fmt == "csv" and seg["ok"]:
            say(
                f"[{fmt}] segmint without the line-break check (A/B), fastest of "
                f"{args.repeat} (load average {os.getloadavg()[0]:.2f}) ..."
            )
            nob = measure_best("segmint-nobreaks", path, args, args.repeat)
            if nob["ok"]:
                cost = seg["seconds"] - nob["seconds"]
                say(
                    f"[{fmt}] line-break check: {seg['seconds']:.2f}s with it, "
                    f"{nob['seconds']:.2f}s without (runs {seg['runs']} / {nob['runs']} s): "
                    f"it costs {cost:+.2f}s ({cost / nob['seconds']:+.1%}) of prepare(); "
                    f"resolve stage (where the profile scan runs) "
                    f"{seg['timings']['resolve']:.2f}s with, {nob['timings']['resolve']:.2f}s "
                    f"without"
                )
            else:
                say(f"[{fmt}] segmint without the line-break check FAILED")
                failed = True
        lines = floor.get("count") or seg.get("input_rows") or generated or 0
        results.append(
            {"format": fmt, "lines": lines, "floor": floor, "scan": scan, "segmint": seg}
        )
    if not args.keep:
        for path in created:
            path.unlink(missing_ok=True)
        if created:
            say(f"removed {len(created)} generated file(s) (use --keep to keep them)")
    if results:
        print()
        print_table(results)
        print()
        for r in results:
            peak = r["segmint"].get("peak_kib")
            if r["segmint"].get("ok"):
                verdict = "under" if peak * 1024 < TARGET_PEAK else "OVER"
                print(
                    f"{r['format']}: segmint peak {peak / 2**20:.2f} GiB, {verdict} the 2 GiB "
                    f"target"
                )
    if failed:
        say("FAILED (see above)")
        return 1
    say("done")
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--rows",
        type=parse_rows,
        required=True,
        help="lines to generate (approximate): 1000000, 1M, 10M (K, M and G suffixes)",
    )
    p.add_argument("--format", choices=["csv", "parquet", "both"], default="both")
    p.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="where data files are generated and reused (default benchmarks/data)",
    )
    p.add_argument(
        "--memory-limit",
        default="1GB",
        help="DuckDB memory_limit (default 1GB); 'none' leaves DuckDB's default (80%% of RAM)",
    )
    p.add_argument("--threads", type=int, default=0, help="DuckDB threads (default: all)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="segmint measurements per format; the fastest is reported (default 1)",
    )
    p.add_argument(
        "--floor-repeat",
        type=int,
        default=3,
        help="floor and scan measurements per format; the fastest is reported (default 3)",
    )
    p.add_argument(
        "--spill-root",
        default=None,
        help="folder for DuckDB spill directories (default: the system temp folder)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the generated data files for the next run"
    )
    p.add_argument(
        "--line-breaks-ab",
        action="store_true",
        help="CSV only: also time prepare() without the check for values spanning lines "
        "(a stray quote), and print what the check costs",
    )
    # hidden: the subprocess side
    add_child_arguments(
        p, choices=["generate", "floor", "scan", "segmint", "segmint-nobreaks"], temp_default=""
    )
    p.add_argument("--path", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.memory_limit.strip().lower() in {"", "none"}:
        args.memory_limit = ""
    if args.rows < 1:
        p.error("--rows must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return _run_child(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
