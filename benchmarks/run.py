"""`segmint run` end to end on the real Online Retail file, beside the notebook path.

Each measurement runs in a fresh child process (see ``_harness.py``); peak memory is the
child's own ``ru_maxrss``. On ``../shared/datasets/online_retail.csv.gz`` (541,909
lines):

* **segmint**: ``segmint.run(path, out=tmp)``: load, clean (with the audit and the
  rejected lines), features, RFM, the automatic model selection (27 candidates with
  stability), profiles and names, the HTML report with PNG and SVG charts, the model
  bundle, every file of the run folder. Target: under 15 s and 1.5 GiB on 2 cores;
* **notebook**: what the source projects do by hand: ``pandas.read_csv``, drop missing
  customer ids, cancellations, non-positive quantities and prices, recency / frequency
  (``nunique`` invoices) / monetary by ``groupby``, log of F and M, ``StandardScaler``,
  the elbow loop (``KMeans`` for k = 2..10, inertia only) and ``KMeans(k=4)``. It writes
  nothing and has no audit, report, model file or selection: a floor for "the same
  question answered by hand", not the same work.

Usage::

    .venv/bin/python benchmarks/run.py [--data PATH] [--repeat N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import HERE, add_child_arguments, mib, run_child, say, source_revision  # noqa: E402

DEFAULT_DATA = HERE.parent.parent / "shared" / "datasets" / "online_retail.csv.gz"


def child(args: argparse.Namespace) -> None:
    result: dict = {}
    if args.child == "segmint":
        import segmint
        from segmint.io import connect

        out = Path(tempfile.mkdtemp(prefix="segmint-bench-run-")) / "run"
        t0 = time.perf_counter()
        r = segmint.run(args.data, out=out, con=connect(temp_directory=args.temp_dir))
        result["seconds"] = time.perf_counter() - t0
        result["timings"] = r.timings
        result["chosen"] = f"{r.segmenter.algorithm_} k={r.segmenter.n_segments_}"
        result["customers"] = len(r.customers)
        shutil.rmtree(out.parent, ignore_errors=True)
    else:
        import numpy as np
        import pandas as pd
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler

        t0 = time.perf_counter()
        df = pd.read_csv(args.data, encoding="latin-1", dtype={"CustomerID": str})
        df = df.dropna(subset=["CustomerID"])
        df = df[~df["InvoiceNo"].astype(str).str.startswith("C")]
        df = df[(df["Quantity"] > 0) & (df["UnitPrice"] > 0)]
        df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
        df["TotalPrice"] = df["Quantity"] * df["UnitPrice"]
        snapshot = df["InvoiceDate"].max() + pd.Timedelta(days=1)
        rfm = df.groupby("CustomerID").agg(
            Recency=("InvoiceDate", lambda d: (snapshot - d.max()).days),
            Frequency=("InvoiceNo", "nunique"),
            Monetary=("TotalPrice", "sum"),
        )
        X = rfm.copy()
        X["Frequency"] = np.log(X["Frequency"])
        X["Monetary"] = np.log(X["Monetary"])
        Z = StandardScaler().fit_transform(X)
        inertia = [KMeans(n_clusters=k, random_state=42).fit(Z).inertia_ for k in range(2, 11)]
        labels = KMeans(n_clusters=4, random_state=42).fit_predict(Z)
        result["seconds"] = time.perf_counter() - t0
        result["customers"] = len(rfm)
        result["chosen"] = f"kmeans k=4 (elbow loop of {len(inertia)} fits)"
        assert len(labels) == len(rfm)
    Path(args.result).write_text(json.dumps(result))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--repeat", type=int, default=1, help="runs of each; the fastest counts")
    add_child_arguments(p)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    if not Path(args.data).is_file():
        say(f"{args.data} not found (see ../shared/datasets/README.md)")
        return 1
    say(f"segmint at {source_revision()}; {os.cpu_count()} cores; data {args.data}")
    script = str(Path(__file__).resolve())
    best: dict[str, dict] = {}
    for mode in ("notebook", "segmint"):
        for i in range(args.repeat):
            say(f"{mode} run {i + 1} (load average {os.getloadavg()[0]:.1f})")
            r = run_child(script, ["--data", args.data], mode, None)
            if not r["ok"]:
                say(f"{mode} failed with status {r['returncode']}")
                return 1
            say(f"  {r['seconds']:.1f} s, peak {mib(r['peak_kib'])} MiB, {r['chosen']}")
            if mode == "segmint":
                say(f"  stages: {r['timings']}")
            if mode not in best or r["seconds"] < best[mode]["seconds"]:
                peak = max(r["peak_kib"], best.get(mode, {}).get("peak_kib", 0))
                best[mode] = r | {"peak_kib": peak}
            else:
                best[mode]["peak_kib"] = max(best[mode]["peak_kib"], r["peak_kib"])
    s, n = best["segmint"], best["notebook"]
    print()
    print("| path | seconds | peak MiB | customers | model |")
    print("|---|--:|--:|--:|---|")
    for name, r in (("segmint run (every output)", s), ("notebook (pandas + sklearn)", n)):
        print(
            f"| {name} | {r['seconds']:.1f} | {mib(r['peak_kib'])} | {r['customers']:,} | "
            f"{r['chosen']} |"
        )
    print(
        f"\nsegmint / notebook: {s['seconds'] / n['seconds']:.1f}x the time, "
        f"{s['peak_kib'] / n['peak_kib']:.1f}x the peak memory"
    )
    ok_t, ok_m = s["seconds"] < 15, s["peak_kib"] / 1024**2 < 1.5
    print(
        f"target: under 15 s {'holds' if ok_t else 'MISSED'} ({s['seconds']:.1f} s); "
        f"under 1.5 GiB {'holds' if ok_m else 'MISSED'} ({s['peak_kib'] / 1024**2:.2f} GiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
