"""Lifetime value at 1M customers and migration over 12 monthly snapshots of 10M lines.

Each measurement runs in a fresh child process (see ``_harness.py``):

* **clv-fit**: BG/NBD and Gamma-Gamma fitted on 1M customers drawn from known parameters
  (``simulate_bgnbd``, spend from a Gamma-Gamma), then expected purchases, probability
  alive and value for all of them (``customer_value``). Target: under 30 s. Baseline in the
  same run: **clv-eval**, one evaluation of the BG/NBD log-likelihood and its gradient on
  the same 1M customers (the cost of one optimiser step without compression);
* **migration**: ``migrate(model, lines.parquet, every="1M")`` over 12 monthly snapshots
  ending at the last date of a synthetic file of ROWS lines (default 10M), including
  loading and cleaning, the 12 feature tables, the model's assignments, moves and the
  movement model. Target: under 60 s. Baseline: **features**, load + clean + one feature
  table (one snapshot) of the same file. The model is a K-Means k=7 ``segmint.run`` on a
  1M-line file of the same generator (not timed).

Usage::

    .venv/bin/python benchmarks/over_time.py               # both, 10M lines
    .venv/bin/python benchmarks/over_time.py --rows 2000000 --only migration
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import HERE, chunk_customers, mib, run_child, say, source_revision  # noqa: E402


def child(args: argparse.Namespace) -> None:
    result: dict = {}
    if args.child in ("clv-fit", "clv-eval"):
        import numpy as np
        import pandas as pd

        from segmint.clv import _bgnbd_loglik, customer_value, simulate_bgnbd

        n = args.customers
        rng = np.random.default_rng(0)
        sim = simulate_bgnbd(n, rng.uniform(30, 365, n), r=0.8, alpha=60.0, a=0.3, b=3.0, seed=0)
        x = sim["frequency"].to_numpy()
        nu = rng.gamma(3.0, 1 / 400.0, n)
        spend = np.where(x > 0, rng.gamma(4.0 * np.maximum(x, 1), 1 / (nu * np.maximum(x, 1))), 0)
        summary = pd.DataFrame(
            {
                "customer_id": np.arange(n).astype(str),
                "frequency": x,
                "recency": sim["recency"].round(0),
                "T": sim["T"].round(0),
                "monetary_value": spend.round(2),
            }
        )
        summary["recency"] = np.minimum(summary["recency"], summary["T"])
        summary.attrs["unit"] = "D"
        t0 = time.perf_counter()
        if args.child == "clv-fit":
            res = customer_value(summary, horizon="12M")
            result.update(
                seconds=time.perf_counter() - t0,
                r=res.bgnbd.r,
                alpha=res.bgnbd.alpha,
                a=res.bgnbd.a,
                b=res.bgnbd.b,
                value=float(res.table["clv_value"].sum()),
            )
        else:
            _bgnbd_loglik(
                np.array([0.8, 60.0, 0.3, 3.0]),
                summary["frequency"].to_numpy(float),
                summary["recency"].to_numpy(float),
                summary["T"].to_numpy(float),
                np.ones(n),
            )
            result["seconds"] = time.perf_counter() - t0
    elif args.child == "make-data":
        from segmint.datasets._synthetic import write_transactions

        n = write_transactions(
            args.data, n_lines=args.rows, seed=args.seed, chunk_customers=chunk_customers(args.rows)
        )
        result["lines"] = n
    elif args.child == "train":
        import segmint

        segmint.run(
            args.data,
            {
                "segment": {"algorithm": "kmeans", "n_clusters": 7, "stability_resamples": 0},
                "report": {"chart_formats": []},
            },
            out=args.model_dir,
            overwrite=True,
        )
    else:
        import pandas as pd

        from segmint.io import connect

        con = connect(memory_limit=args.memory_limit, temp_directory=args.temp_dir)
        import pyarrow.parquet as pq

        last = pq.read_table(args.data, columns=["InvoiceDate"]).column(0)
        import pyarrow.compute as pc

        end = (pd.Timestamp(pc.max(last).as_py()) + pd.Timedelta(days=1)).date()
        start = (pd.Timestamp(end) - pd.DateOffset(months=11)).date()
        t0 = time.perf_counter()
        if args.child == "migration":
            from segmint.migration import migrate

            res = migrate(args.model, args.data, start=start, end=end, every="1M", con=con)
            result.update(
                seconds=time.perf_counter() - t0,
                snapshots=len(res.dates),
                customers=int(len(res.moves)),
                timings=res.timings,
                accuracy=(res.movement or {}).get("accuracy"),
                baseline_accuracy=(res.movement or {}).get("baseline_accuracy"),
            )
        else:
            from segmint.features import customer_features
            from segmint.pipeline import prepare

            prepared = prepare(args.data, con=con)
            feats = customer_features(prepared.cleaned, end)
            result.update(seconds=time.perf_counter() - t0, customers=feats.n_customers)
    Path(args.result).write_text(json.dumps(result, default=str))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=10_000_000, help="lines for the migration")
    p.add_argument("--customers", type=int, default=1_000_000, help="customers for the CLV fit")
    p.add_argument("--only", choices=["clv", "migration"])
    p.add_argument("--memory-limit", default="1GB")
    p.add_argument("--data-dir", default=str(HERE / "data"))
    for hidden in ("--child", "--data", "--model", "--model-dir", "--temp-dir", "--result"):
        p.add_argument(hidden, help=argparse.SUPPRESS)
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    say(f"segmint at {source_revision()}; {os.cpu_count()} cores")
    here = str(Path(__file__).resolve())
    rows: list[tuple[str, dict]] = []
    failed = False

    def measure(mode: str, extra: list[str]) -> dict | None:
        nonlocal failed
        say(f"{mode} (load average {os.getloadavg()[0]:.1f})")
        r = run_child(here, extra, mode, None)
        if not r["ok"]:
            say(f"{mode} failed with status {r['returncode']}")
            failed = True
            return None
        say(f"  {r['seconds']:.1f} s, peak {mib(r['peak_kib'])} MiB")
        rows.append((mode, r))
        return r

    if args.only in (None, "clv"):
        measure("clv-eval", ["--customers", str(args.customers)])
        measure("clv-fit", ["--customers", str(args.customers)])
    if args.only in (None, "migration"):
        data_dir = Path(args.data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        big = data_dir / f"retail_{args.rows}_seed0.parquet"
        train = data_dir / "retail_1000000_seed1.parquet"
        for path, n, seed in ((big, args.rows, 0), (train, 1_000_000, 1)):
            if not path.is_file():
                say(f"generating {n:,} lines into {path.name}")
                r = run_child(
                    here,
                    ["--data", str(path), "--rows", str(n), "--seed", str(seed)],
                    "make-data",
                    None,
                )
                if not r["ok"]:
                    return 1
        model_dir = data_dir / "over_time_model"
        if not (model_dir / "model.segmint").is_file():
            say("training the model (not timed)")
            r = run_child(
                here, ["--data", str(train), "--model-dir", str(model_dir)], "train", None
            )
            if not r["ok"]:
                return 1
        common = ["--data", str(big), "--memory-limit", args.memory_limit]
        measure("features", common)
        measure("migration", [*common, "--model", str(model_dir / "model.segmint")])
    print()
    base = dict(rows)
    print("| what | seconds | peak MiB | baseline (same run) | ratio | target | verdict |")
    print("|---|--:|--:|---|--:|---|---|")
    for mode, r in rows:
        if mode == "clv-fit":
            b = base.get("clv-eval")
            ratio = f"{r['seconds'] / b['seconds']:.0f}x" if b else "-"
            verdict = "holds" if r["seconds"] < 30 else "MISSED"
            print(
                f"| CLV fit + values, {args.customers:,} customers | {r['seconds']:.1f} | "
                f"{mib(r['peak_kib'])} | one log-likelihood + gradient: "
                f"{b['seconds'] if b else float('nan'):.2f} s | {ratio} | < 30 s | {verdict} |"
            )
        elif mode == "migration":
            b = base.get("features")
            ratio = f"{r['seconds'] / b['seconds']:.1f}x" if b else "-"
            verdict = "holds" if r["seconds"] < 60 else "MISSED"
            print(
                f"| migration, {r['snapshots']} monthly snapshots, {args.rows:,} lines, "
                f"{r['customers']:,} customers | {r['seconds']:.1f} | {mib(r['peak_kib'])} | "
                f"load + clean + one feature table: {b['seconds'] if b else float('nan'):.1f} s "
                f"| {ratio} | < 60 s | {verdict} |"
            )
    for mode, r in rows:
        if mode == "migration":
            print(f"\nmigration stages (s): {r['timings']}")
            print(
                f"movement model accuracy {r['accuracy']}, stays baseline {r['baseline_accuracy']}"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
