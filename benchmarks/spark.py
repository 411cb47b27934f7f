"""Where a Spark run on a CSV file spends its time, before and after the profile fix.

    .venv/bin/python benchmarks/spark.py [--data FILE.csv[.gz]] [--master local[2]]
        [--only off,on]

Runs ``prepare`` + ``customer_features`` + ``to_pandas`` on Spark in local mode, each stage
timed (load, resolve, clean, features, to_pandas) with the number of Spark jobs it ran
and the seconds those jobs took (the rest of a stage's wall time is the driver's: ibis
compiling, Spark analysing and planning, Python). Two fresh child processes in one run:
``off`` computes the column profile's texts once per check, as segmint did before
2026-12-07, ``on`` projects them first (``schema._profile_columns``); the customer tables
of both are compared. ``--data``
defaults to the Online Retail file of ``$SEGMINT_DATA`` (541,909 lines, gzip).
benchmarks/engines.py compares DuckDB with Spark on Parquet.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from _harness import add_child_arguments, run_child, say, source_revision

STAGES = ("load", "resolve", "clean", "features", "to_pandas")


def _child(args: argparse.Namespace) -> dict:
    t0 = time.perf_counter()
    from segmint import engines, schema
    from segmint.config import CleanConfig, LoadConfig
    from segmint.features import customer_features
    from segmint.pipeline import prepare

    schema._SHARED_PROFILE_TEXTS = args.child == "on"
    session = engines.spark_session(args.master)
    startup = time.perf_counter() - t0
    status = session.sparkContext._jsc.sc().statusStore()

    def jobs() -> tuple[int, float]:
        listed, seconds = status.jobsList(None), 0.0
        for i in range(listed.size()):
            job = listed.apply(i)
            start, end = job.submissionTime(), job.completionTime()
            if start.isDefined() and end.isDefined():
                seconds += (end.get().getTime() - start.get().getTime()) / 1000
        return listed.size(), seconds

    stages: dict[str, dict] = {}
    mark = {"t": time.perf_counter(), "jobs": jobs()}

    def progress(stage: str) -> None:  # prepare's stage names, in order
        name = {"mapping and checking columns": "load", "cleaning": "resolve"}.get(stage)
        if name:
            end(name)

    def end(name: str) -> None:
        now, done = time.perf_counter(), jobs()
        stages[name] = {
            "seconds": round(now - mark["t"], 2),
            "jobs": done[0] - mark["jobs"][0],
            "job_seconds": round(done[1] - mark["jobs"][1], 2),
        }
        mark.update(t=time.perf_counter(), jobs=jobs())

    load = LoadConfig(engine="spark", spark_master=args.master)
    prepared = prepare(args.data, load, CleanConfig(), progress=progress)
    end("clean")
    feats = customer_features(prepared.cleaned)
    end("features")
    frame = feats.to_pandas()
    end("to_pandas")
    frame.to_parquet(args.out)
    return {
        "startup_seconds": round(startup, 2),
        "stages": stages,
        "customers": len(frame),
        "spark": session.version,
    }


def run(args: argparse.Namespace) -> int:
    data = args.data or os.path.join(
        os.environ.get("SEGMINT_DATA", "/work/shared/datasets"), "online_retail.csv.gz"
    )
    if not Path(data).exists():
        print(f"{data}: not found (give --data or set SEGMINT_DATA)", file=sys.stderr)
        return 2
    say(f"segmint {source_revision()}, {data}, master {args.master}")
    results, outs = {}, {}
    for mode in args.only.split(","):
        outs[mode] = str(Path(args.out_dir) / f"spark_{mode}.parquet")
        child = ["--data", data, "--master", args.master, "--out", outs[mode]]
        say(f"profile texts projected first: {mode}")
        results[mode] = run_child(str(Path(__file__).resolve()), child, mode, None)
    print()
    print(f"{'stage':10s}" + "".join(f"  {m + ': s (jobs, s in jobs)':>28s}" for m in results))
    for stage in (*STAGES, "total"):
        row = f"{stage:10s}"
        for r in results.values():
            if not r["ok"]:
                row += f"  {'FAILED':>28s}"
                continue
            if stage == "total":
                s = sum(v["seconds"] for v in r["stages"].values())
                row += f"  {s:>8.1f} (+{r['startup_seconds']:.1f} s JVM start){'':6s}"
                continue
            v = r["stages"][stage]
            row += f"  {v['seconds']:>8.1f} ({v['jobs']:3d} jobs, {v['job_seconds']:6.1f} s)"
        print(row)
    if all(r["ok"] for r in results.values()) and len(outs) == 2:
        import pandas as pd

        a, b = (pd.read_parquet(p) for p in outs.values())
        same = a.equals(b)
        print(f"customer tables identical: {same} ({len(a):,} customers)")
        if not same:
            return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="", help="a CSV file (default: Online Retail)")
    ap.add_argument("--master", default="local[2]")
    ap.add_argument("--only", default="off,on")
    ap.add_argument("--out-dir", default=str(Path(__file__).resolve().parent / "data"))
    add_child_arguments(ap, choices=["off", "on"])
    ap.add_argument("--out", default="", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        result = _child(args)
        Path(args.result).write_text(json.dumps(result, default=str))
        return 0
    Path(args.out_dir).mkdir(parents=True, exist_ok=True)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
