"""Automatic model selection at scale: `Segmenter` on 100k and 1M customers x 6 features.

Each measurement runs in a fresh child process (see ``_harness.py``); peak memory is the
child's own ``ru_maxrss``. Measured, for each size:

* **segmint**: ``Segmenter(features=SIX, algorithm=["kmeans", "minibatch_kmeans",
  "gmm"], random_state=0).fit(customers)``, otherwise the defaults: the K-Means family
  and Gaussian mixtures for k = 2..10 (27 candidates; the default search leaves
  MiniBatch K-Means out, so it is a little faster), every metric, bootstrap stability,
  the winner refitted on everyone;
* **floor**: one scikit-learn ``KMeans(n_clusters=7, random_state=0)`` (its default
  ``n_init``) on the same transformed matrix (log1p + StandardScaler of the six
  features, the transform not timed): the least any k-means segmentation costs.

Data: the customer features of ``make_transactions(n_customers=20000, seed=0)`` (the
planted personas), resampled with replacement to N customers with a small multiplicative
jitter (lognormal, sigma 0.05; counts rounded), written once to
``benchmarks/data/customers_<N>.parquet``.

Usage::

    .venv/bin/python benchmarks/segment.py                 # 100k and 1M
    .venv/bin/python benchmarks/segment.py --customers 100k
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import HERE, mib, run_child, say, source_revision  # noqa: E402

SIX = [
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_basket_value",
    "unique_products",
]
TARGET_SECONDS = 60.0
TARGET_GIB = 3.0


def parse_count(text: str) -> int:
    text = text.strip().upper()
    mult = {"K": 1_000, "M": 1_000_000}.get(text[-1], 1)
    return int(float(text[:-1] if mult > 1 else text) * mult)


def child(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd

    result: dict = {}
    path = Path(args.data)
    if args.child == "make-data":
        from segmint.datasets import make_transactions
        from segmint.features import customer_features
        from segmint.pipeline import prepare

        lines, _ = make_transactions(n_customers=20_000, seed=0)
        base = customer_features(prepare(lines).cleaned).to_pandas()[SIX]
        rng = np.random.default_rng(0)
        idx = rng.integers(0, len(base), args.n)
        data = base.iloc[idx].reset_index(drop=True).astype(float)
        jitter = rng.lognormal(0.0, 0.05, size=data.shape)
        data = data * jitter
        for col in ("recency_days", "frequency", "tenure_days", "unique_products"):
            data[col] = data[col].round()
        data["frequency"] = data["frequency"].clip(lower=1)
        data.insert(0, "customer_id", [f"C{i:08d}" for i in range(args.n)])
        data.to_parquet(path)
        result["rows"] = len(data)
    elif args.child == "segmint":
        from segmint import Segmenter

        customers = pd.read_parquet(path)
        t0 = time.perf_counter()
        seg = Segmenter(
            features=SIX, algorithm=["kmeans", "minibatch_kmeans", "gmm"], random_state=0
        ).fit(customers)
        result["seconds"] = time.perf_counter() - t0
        t = seg.selection_
        result.update(
            chosen=f"{seg.algorithm_} k={seg.n_segments_}",
            candidates=len(t),
            fit_by_algorithm=t.groupby("algorithm")["fit_seconds"].sum().round(2).to_dict(),
            stability_by_algorithm=t.groupby("algorithm")["stability_seconds"]
            .sum()
            .round(2)
            .to_dict(),
        )
    elif args.child == "floor":
        from sklearn.cluster import KMeans
        from sklearn.preprocessing import StandardScaler

        X = pd.read_parquet(path)[SIX].to_numpy(float)
        X = StandardScaler().fit_transform(np.log1p(np.clip(X, 0, None)))
        t0 = time.perf_counter()
        KMeans(n_clusters=7, random_state=0).fit(X)
        result["seconds"] = time.perf_counter() - t0
    Path(args.result).write_text(json.dumps(result))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--customers", default="100k,1M", help="comma-separated sizes (K, M)")
    p.add_argument("--data-dir", default=str(HERE / "data"))
    p.add_argument("--child", help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--temp-dir", help=argparse.SUPPRESS)
    p.add_argument("--result", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args)
        return 0
    script = str(Path(__file__).resolve())
    data_dir = Path(args.data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    say(f"segmint at {source_revision()}; {os.cpu_count()} cores")
    rows = []
    failed = False
    for n in [parse_count(s) for s in args.customers.split(",")]:
        data = data_dir / f"customers_{n}.parquet"
        if not data.is_file():
            say(f"generating {n:,} customers -> {data}")
            r = run_child(script, ["--data", str(data), "--n", str(n)], "make-data", None)
            if not r["ok"]:
                say("data generation failed")
                return 1
        out: dict = {"customers": n}
        for mode in ("floor", "segmint"):
            say(f"{mode} on {n:,} customers (load average {os.getloadavg()[0]:.1f})")
            r = run_child(script, ["--data", str(data)], mode, None)
            if not r["ok"]:
                say(f"{mode} failed with status {r['returncode']}")
                failed = True
                continue
            out[mode] = r
            say(f"  {r['seconds']:.1f} s, peak {mib(r['peak_kib'])} MiB")
            if mode == "segmint":
                say(f"  chosen {r['chosen']} of {r['candidates']} candidates")
                say(f"  fit seconds by algorithm {r['fit_by_algorithm']}")
                say(f"  stability seconds by algorithm {r['stability_by_algorithm']}")
        rows.append(out)
    print()
    print("| customers | segmint auto selection s | peak MiB | chosen | floor KMeans s | ratio |")
    print("|--:|--:|--:|---|--:|--:|")
    for r in rows:
        s, f = r.get("segmint"), r.get("floor")
        if not s or not f:
            continue
        print(
            f"| {r['customers']:,} | {s['seconds']:.1f} | {mib(s['peak_kib'])} | {s['chosen']} "
            f"| {f['seconds']:.2f} | {s['seconds'] / f['seconds']:.1f}x |"
        )
    print()
    for r in rows:
        s = r.get("segmint")
        if s and r["customers"] >= 1_000_000:
            ok_t = s["seconds"] <= TARGET_SECONDS
            ok_m = s["peak_kib"] / 1024**2 <= TARGET_GIB
            print(
                f"target at {r['customers']:,}: <= {TARGET_SECONDS:.0f} s "
                f"{'holds' if ok_t else 'MISSED'} ({s['seconds']:.1f} s), <= {TARGET_GIB} GiB "
                f"{'holds' if ok_m else 'MISSED'} ({s['peak_kib'] / 1024**2:.2f} GiB)"
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
