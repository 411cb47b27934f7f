"""Benchmark: automatic model selection (``Segmenter``) on 100k and 1M customers x 6 features.

Usage::

    python benchmarks/segment.py [--customers 100k,1M] [--repeat N] [--keep]
        [--data-dir DIR] [--param KEY=VALUE ...] [--threads N] [--search-threads N]
        [--floor-k K] [--profile]

``--customers`` takes a comma-separated list of sizes (``100000``, ``100k``, ``1M``,
``2.5M``; default ``100k,1M``). For each size it

1. builds the customer table (the DATA below) as ``customers_<N>.parquet`` in the data
   folder, in a child process, or reuses the file already there (files this run
   generated are deleted at the end unless ``--keep`` is given; ``report.py`` reads the
   same files);
2. measures SEGMINT: ``Segmenter(features=SIX, algorithm=SEARCH, random_state=0)
   .fit(customers)``, everything else at its default: the K-Means family and Gaussian
   mixtures (``SEARCH`` = ``kmeans``, ``minibatch_kmeans``, ``gmm``) for k = 2..10, i.e.
   27 candidates, every metric, bootstrap stability, then the winner refitted on every
   customer. It reports the time of ``fit`` (wall and CPU), the child's peak RSS, the
   chosen algorithm and k, the number of candidates, and where the time went (below);
3. measures the FLOOR: one scikit-learn ``KMeans(n_clusters=K, random_state=0)`` (its
   default ``n_init``, i.e. one k-means++ start) fitted on the same matrix the
   Segmenter clusters (segmint's ``CustomerTransform`` of the six features with the
   Segmenter's defaults: ``signed_log1p`` on the skewed ones, then ``StandardScaler``;
   computed before the clock starts). K is the k segmint chose (``--floor-k`` to fix it;
   7 if segmint failed);

and prints a table (time, peak memory, chosen model, floor, ratio segmint/floor), the
stage breakdown, and a verdict on the project's target: **the automatic selection for
1M customers within 60 s on 2 cores and under 3 GiB**. It exits with status 1 when a
measurement fails.

DATA. Six customer features (``recency_days, frequency, monetary, tenure_days,
avg_basket_value, unique_products``) of realistic shape: the customer table of
``segmint.datasets.make_transactions(n_customers=20000, seed=0)`` (the generator with the
planted personas) through ``prepare`` and ``customer_features``, resampled with
replacement to N customers (numpy ``default_rng(0)``), each value multiplied by an
independent lognormal jitter (sigma 0.05, about +-5 %), the counts (recency, frequency,
tenure, unique products) rounded, frequency at least 1, nothing negative, and a fresh
``customer_id`` per row. About 26 bytes a customer in Parquet.

WHERE THE TIME GOES. The candidate table ``seg.selection_`` has ``fit_seconds`` and
``stability_seconds`` per candidate (summed per algorithm here). The rest of ``fit`` is
measured by wrapping, in the child only and without changing segmint, the functions
``fit`` calls with a timer: the feature transform (``CustomerTransform.fit`` and
``.transform``), the shared silhouette distance matrix (``pairwise_distances``), the
scoring of each candidate (silhouette, Davies-Bouldin, Calinski-Harabasz, inertia,
BIC/AIC), the elbow and the selection rule, the final refit on every customer (a model
fitted after the rule chose), and the numbering of the segments (``_set_segments``);
"other" is what remains. The same timers give the CPU seconds of each stage
(``time.process_time``, every thread of the process). A function that is not found (the
code moved) is reported and left unmeasured. ``--profile`` adds one cProfile run of the
segmint child per size (not counted in the figures) and prints its top functions.

EXPERIMENTS. ``--param KEY=VALUE`` (repeatable) passes a Segmenter parameter; the value
is read as JSON when it parses, else as a string. For example ``--param
selection_sample=20000``, ``--param stability_resamples=2``, ``--param algorithm=auto``
(segmint's default search), ``--param 'algorithm_params={"gmm": {"n_init": 1}}'``.
``--threads N`` sets ``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS`` and
``MKL_NUM_THREADS`` for the children (segmint and the floor alike); ``--search-threads
N`` instead limits the thread pools (threadpoolctl) around the search only (model fits,
scoring and stability before the selection rule), not the final refit: what a
``threadpool_limits`` inside ``Segmenter.fit`` would do.

Every measurement runs in a fresh subprocess of this same script (hidden ``--child``
mode); the peak memory is the child's ``ru_maxrss`` as returned by ``os.wait4`` (KiB on
Linux), and the child also reports its ``VmHWM`` right after the measured call. The
parent imports only the standard library (Linux carries a parent's peak RSS into its
children). Times are measured inside the child around the measured call only (imports
and reading the Parquet file excluded). With ``--repeat N`` the fastest time and the
highest peak of the N runs are reported.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path

from _harness import HERE, _vm_hwm_kib, add_child_arguments, mib, run_child, say, source_revision

DEFAULT_DATA_DIR = HERE / "data"
SEED = 0
GIB = 1024**3
#: The six features segmented on.
SIX = [
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_basket_value",
    "unique_products",
]
#: The search the issue asks for: the K-Means family and Gaussian mixtures.
SEARCH = ["kmeans", "minibatch_kmeans", "gmm"]
#: Customers of the generated base table, resampled to N.
BASE_CUSTOMERS = 20_000
#: Sigma of the multiplicative lognormal jitter of each resampled value.
JITTER_SIGMA = 0.05
#: Features rounded to integers after the jitter.
COUNT_FEATURES = ("recency_days", "frequency", "tenure_days", "unique_products")
#: Floor k when segmint chose none (it failed) and --floor-k is not given.
FLOOR_K_FALLBACK = 7
#: Environment variables --threads sets for the children.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
#: The project's target (issue): auto selection for 1M customers, 2 cores.
TARGET_CUSTOMERS = 1_000_000
TARGET_SECONDS = 60.0
TARGET_PEAK = 3 * GIB


def parse_count(text: str) -> int:
    """``100000``, ``100_000``, ``100k``, ``1M``, ``2.5M`` -> customers."""
    m = re.fullmatch(r"\s*([0-9][0-9_]*(?:\.[0-9]+)?)\s*([kKmM]?)\s*", text)
    if not m:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of customers (e.g. 1M)")
    scale = {"": 1, "k": 10**3, "m": 10**6}[m.group(2).lower()]
    n = int(float(m.group(1).replace("_", "")) * scale)
    if n < 3:
        raise argparse.ArgumentTypeError(f"{text!r}: at least 3 customers are needed")
    return n


def parse_counts(text: str) -> list[int]:
    return [parse_count(part) for part in text.split(",") if part.strip()]


def parse_param(text: str) -> tuple[str, object]:
    """``key=value`` -> (key, the JSON value, or the text when it is not JSON)."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip().isidentifier():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. selection_sample=20000)")
    try:
        return key.strip(), json.loads(value)
    except json.JSONDecodeError:
        return key.strip(), value


# ----------------------------------------------------------------------------- child side


def _child_make_data(args: argparse.Namespace) -> dict:
    import numpy as np

    from segmint.datasets import make_transactions
    from segmint.features import customer_features
    from segmint.pipeline import prepare

    t0 = time.perf_counter()
    lines, _ = make_transactions(n_customers=BASE_CUSTOMERS, seed=SEED)
    base = customer_features(prepare(lines).cleaned).to_pandas()[SIX]
    rng = np.random.default_rng(SEED)
    idx = rng.integers(0, len(base), args.n)
    data = base.iloc[idx].reset_index(drop=True).astype(float)
    data = data * rng.lognormal(0.0, JITTER_SIGMA, size=data.shape)
    for col in COUNT_FEATURES:
        data[col] = data[col].round()
    data["frequency"] = data["frequency"].clip(lower=1)
    data = data.clip(lower=0)
    data.insert(0, "customer_id", [f"C{i:08d}" for i in range(args.n)])
    data.to_parquet(args.data)
    return {"rows": len(data), "base_customers": len(base), "seconds": time.perf_counter() - t0}


class _Timers:
    """Wall and CPU seconds spent in the functions (of segmint and scikit-learn) ``fit`` calls.

    Each wrapper adds the time of its calls to a bucket; a call made from inside another
    wrapped call counts in both (the scoring total contains the silhouette). CPU seconds
    are ``time.process_time`` (every thread of the process), which the other processes of
    a busy machine disturb less than the wall time.
    """

    def __init__(self) -> None:
        self.wall: dict[str, float] = {}
        self.cpu: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self.missing: list[str] = []
        self.phase = "search"  # "stability" inside stability(), "final" after the rule
        self.algorithm = "?"  # the algorithm of the candidate being evaluated

    def wrap(self, owner: object, name: str, bucket, enter=None, leave=None) -> None:
        """Time ``owner.name``; ``bucket`` is a name or ``f(args) -> name``."""
        import functools

        fn = getattr(owner, name, None)
        if fn is None:
            self.missing.append(f"{getattr(owner, '__name__', owner)}.{name}")
            return

        def timed(*a, _fn=fn, **kw):
            key = bucket(a) if callable(bucket) else bucket
            if enter:
                enter(a)
            w, c = time.perf_counter(), time.process_time()
            try:
                return _fn(*a, **kw)
            finally:
                self.wall[key] = self.wall.get(key, 0.0) + time.perf_counter() - w
                self.cpu[key] = self.cpu.get(key, 0.0) + time.process_time() - c
                self.calls[key] = self.calls.get(key, 0) + 1
                if leave:
                    leave(a)

        setattr(owner, name, functools.wraps(fn)(timed))


def _instrument() -> _Timers:
    from sklearn.mixture import GaussianMixture

    from segmint.segment import segmenter, selection, transforms

    tm = _Timers()

    def set_phase(phase: str):
        def hook(_args) -> None:
            tm.phase = phase

        return hook

    def fit_bucket(a) -> str:
        alg = getattr(a[1], "name", "?") if len(a) > 1 else "?"
        if tm.phase == "search":
            tm.algorithm = alg
            return f"search_fit.{alg}"
        return "final_refit" if tm.phase == "final" else f"stability_fits.{alg}"

    cls = transforms.CustomerTransform
    tm.wrap(cls, "fit", "transform")
    tm.wrap(cls, "transform", "transform")
    tm.wrap(segmenter, "pairwise_distances", "silhouette_matrix")
    tm.wrap(segmenter, "score_labels", "scoring")
    for name in ("silhouette_score", "davies_bouldin_score", "calinski_harabasz_score"):
        tm.wrap(selection, name, "scoring." + name.removesuffix("_score"))
    tm.wrap(selection, "inertia", "scoring.inertia")
    tm.wrap(GaussianMixture, "bic", "scoring.bic_aic")
    tm.wrap(GaussianMixture, "aic", "scoring.bic_aic")
    tm.wrap(
        segmenter,
        "stability",
        lambda a: f"stability.{tm.algorithm}",
        enter=set_phase("stability"),
        leave=set_phase("search"),
    )
    tm.wrap(segmenter, "elbows", "elbow_and_rule")
    tm.wrap(segmenter, "choose", "elbow_and_rule", leave=set_phase("final"))
    seg = segmenter.Segmenter
    tm.wrap(seg, "_fit_one", fit_bucket)
    tm.wrap(seg, "_set_segments", "numbering")
    return tm


def _limit_search_threads(tm: _Timers, n: int) -> None:
    """Emulate a search run with thread pools limited to ``n`` threads (threadpoolctl):
    every model fit, scoring and distance matrix before the selection rule has run; the
    final refit on every customer keeps the libraries' own number of threads."""
    import functools

    from threadpoolctl import threadpool_limits

    from segmint.segment import segmenter

    for owner, name in (
        (segmenter.Segmenter, "_fit_one"),
        (segmenter, "score_labels"),
        (segmenter, "pairwise_distances"),
    ):
        fn = getattr(owner, name, None)
        if fn is None:
            tm.missing.append(f"{name} (not limited)")
            continue

        def limited(*a, _fn=fn, **kw):
            if tm.phase == "final":
                return _fn(*a, **kw)
            with threadpool_limits(limits=n):
                return _fn(*a, **kw)

        setattr(owner, name, functools.wraps(fn)(limited))


def _threads() -> dict:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover - scikit-learn depends on it
        return {}
    return {f"{i['user_api']}:{i['internal_api']}": i["num_threads"] for i in threadpool_info()}


def _child_segmint(args: argparse.Namespace) -> dict:
    import pandas as pd

    from segmint.segment import DEFAULT_SEARCH, Segmenter

    params = {"features": SIX, "algorithm": SEARCH, "random_state": SEED}
    params.update(json.loads(args.params))
    customers = pd.read_parquet(args.data)
    timers = _instrument()
    if args.search_threads:
        _limit_search_threads(timers, args.search_threads)
    seg = Segmenter(**params)
    profiler = None
    if args.profile_out:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0, c0 = time.perf_counter(), time.process_time()
    seg.fit(customers)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    if profiler is not None:
        profiler.disable()
    hwm = _vm_hwm_kib()
    t = seg.selection_
    won = t[t["chosen"]].iloc[0]

    def per_alg(col: str) -> dict:
        if col not in t.columns:
            return {}
        return {str(k): float(v) for k, v in t.groupby("algorithm", sort=False)[col].sum().items()}

    effective = seg.get_params()
    shown = {
        k: effective[k]
        for k in (
            "algorithm",
            "algorithm_params",
            "k_range",
            "selection_sample",
            "silhouette_sample",
            "stability_resamples",
            "stability_sample",
            "time_budget",
        )
        if k in effective
    }
    result = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "vm_hwm_kib": hwm,
        "customers": len(customers),
        "algorithm": seg.algorithm_,
        "k": seg.k_,
        "n_segments": int(seg.n_segments_),
        "segment_sizes": {str(k): int(v) for k, v in seg.segment_sizes_.items()},
        "candidates": len(t),
        "candidates_skipped": int(getattr(seg, "candidates_skipped_", 0)),
        "winner": {
            m: (None if won[m] != won[m] else round(float(won[m]), 4))
            for m in ("silhouette", "davies_bouldin", "calinski_harabasz", "stability", "score")
            if m in t.columns
        },
        "fit_by_algorithm": per_alg("fit_seconds"),
        "stability_by_algorithm": per_alg("stability_seconds"),
        "timers": timers.wall,
        "timers_cpu": timers.cpu,
        "timer_calls": timers.calls,
        "timers_missing": timers.missing,
        "log_features": list(getattr(seg.transform_, "log_features_", [])),
        "params": json.loads(json.dumps(shown, default=str)),
        "default_search": list(DEFAULT_SEARCH),
        "threads": _threads(),
        "search_threads": args.search_threads or None,
    }
    if profiler is not None:
        import io
        import pstats

        path = Path(args.profile_out)
        profiler.dump_stats(path)
        for key in ("tottime", "cumulative"):
            buf = io.StringIO()
            pstats.Stats(profiler, stream=buf).sort_stats(key).print_stats(25)
            print(f"--- cProfile, top 25 by {key} (stats in {path}) ---")
            print("\n".join(line for line in buf.getvalue().splitlines() if line.strip()))
        result["profile"] = str(path)
    return result


def _child_floor(args: argparse.Namespace) -> dict:
    import inspect

    import pandas as pd
    from sklearn.cluster import KMeans

    from segmint.segment import CustomerTransform

    params = {"features": SIX, "random_state": SEED}
    params.update(json.loads(args.params))
    accepted = inspect.signature(CustomerTransform).parameters
    customers = pd.read_parquet(args.data)
    transform = CustomerTransform(**{k: v for k, v in params.items() if k in accepted})
    Z = transform.fit_transform(customers)
    t0, c0 = time.perf_counter(), time.process_time()
    km = KMeans(n_clusters=args.k, random_state=SEED).fit(Z)
    seconds, cpu = time.perf_counter() - t0, time.process_time() - c0
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "vm_hwm_kib": _vm_hwm_kib(),
        "k": args.k,
        "n_init": int(km._n_init) if hasattr(km, "_n_init") else str(km.n_init),
        "n_iter": int(km.n_iter_),
        "matrix": list(Z.shape),
        "log_features": list(transform.log_features_),
    }


_CHILDREN = {"make-data": _child_make_data, "segmint": _child_segmint, "floor": _child_floor}


def _run_child(args: argparse.Namespace) -> int:
    result = _CHILDREN[args.child](args)
    result.setdefault("vm_hwm_kib", _vm_hwm_kib())
    Path(args.result).write_text(json.dumps(result))
    return 0


# ---------------------------------------------------------------------------- parent side


def _busy_seconds() -> float | None:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat), or None."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def measure(mode: str, data: Path, extra: list[str]) -> dict:
    """One measurement in a fresh subprocess, with the load average when it started and
    ``others_cores``: the cores other processes kept busy meanwhile, on average (the
    machine's busy time from /proc/stat minus the child's own CPU time, over its wall
    time), which says how much of the machine the measurement really had."""
    load = os.getloadavg()[0]
    busy, mine = _busy_seconds(), os.times()
    result = run_child(str(Path(__file__).resolve()), ["--data", str(data), *extra], mode, None)
    after, done = _busy_seconds(), os.times()
    result["load"] = load
    child_cpu = (done.children_user - mine.children_user) + (
        done.children_system - mine.children_system
    )
    wall = result.get("process_seconds") or 0.0
    if busy is not None and after is not None and wall > 0:
        result["others_cores"] = max(0.0, (after - busy - child_cpu) / wall)
    return result


def measure_best(mode: str, data: Path, extra: list[str], times: int) -> dict:
    """Run a measurement ``times`` times: the fastest run, with the highest peak of all."""
    runs = []
    for i in range(max(times, 1)):
        say(f"  {mode} run {i + 1}/{times} (load average {os.getloadavg()[0]:.2f}) ...")
        runs.append(measure(mode, data, extra))
        r = runs[-1]
        if not r["ok"]:
            say(f"  {mode} FAILED (exit {r['returncode']}, peak {mib(r['peak_kib'])} MiB)")
            return r
        say(
            f"  {mode}: {r['seconds']:.2f} s (CPU {r['cpu_seconds']:.2f} s, process "
            f"{r['process_seconds']:.1f} s), peak {mib(r['peak_kib'])} MiB (VmHWM after the "
            f"call {mib(r['vm_hwm_kib'])} MiB); other processes kept "
            f"{r.get('others_cores', float('nan')):.2f} cores busy meanwhile"
        )
    best = dict(min(runs, key=lambda r: r["seconds"]))
    best["peak_kib"] = max(r["peak_kib"] for r in runs)
    best["runs"] = [round(r["seconds"], 2) for r in runs]
    best["loads"] = [round(r["load"], 2) for r in runs]
    best["others"] = [round(r.get("others_cores", float("nan")), 2) for r in runs]
    return best


def stages(r: dict, cpu: bool = False) -> list[tuple[str, float]]:
    """Where the segmint fit's time went: (stage, seconds), summing to the fit's time.

    Wall seconds: the search fits and the stability per algorithm from ``seg.selection_``,
    the rest from the timers. CPU seconds (``cpu=True``): all from the timers.
    """
    tm = r["timers_cpu"] if cpu else r["timers"]

    def by_alg(prefix: str, column: str) -> dict:
        if cpu or not r[column]:
            return {k.split(".", 1)[1]: v for k, v in tm.items() if k.startswith(prefix + ".")}
        return r[column]

    out = [("transform", tm.get("transform", 0.0))]
    out.append(("silhouette distance matrix", tm.get("silhouette_matrix", 0.0)))
    for alg, s in by_alg("search_fit", "fit_by_algorithm").items():
        out.append((f"search fits: {alg}", s))
    parts = {k.split(".", 1)[1]: v for k, v in tm.items() if k.startswith("scoring.")}
    for name in ("silhouette", "davies_bouldin", "calinski_harabasz", "inertia", "bic_aic"):
        if name in parts:
            out.append((f"scoring: {name}", parts[name]))
    out.append(("scoring: other", tm.get("scoring", 0.0) - sum(parts.values())))
    for alg, s in by_alg("stability", "stability_by_algorithm").items():
        out.append((f"stability: {alg}", s))
    out.append(("elbow + rule", tm.get("elbow_and_rule", 0.0)))
    out.append(("final refit on all customers", tm.get("final_refit", 0.0)))
    out.append(("segment numbering + centres", tm.get("numbering", 0.0)))
    total = r["cpu_seconds"] if cpu else r["seconds"]
    out.append(("other", total - sum(s for _, s in out)))
    return out


def describe_segmint(r: dict) -> None:
    skipped = r["candidates_skipped"]
    say(
        f"  chosen {r['algorithm']} k={r['k']} ({r['n_segments']} segments, sizes "
        f"{r['segment_sizes']}) out of {r['candidates']} candidates"
        + (f" ({skipped} skipped by the time budget)" if skipped else "")
        + f"; winner {r['winner']}"
    )
    say(f"  parameters {r['params']}; segmint's default search {r['default_search']}")
    say(
        f"  logged features {r['log_features']}; thread pools {r['threads']}"
        + (f", limited to {r['search_threads']} during the search" if r["search_threads"] else "")
    )
    if r["timers_missing"]:
        say(f"  note: not found, so not timed: {', '.join(r['timers_missing'])}")
    say(
        f"  CPU {r['cpu_seconds']:.1f} s "
        f"({r['cpu_seconds'] / r['seconds']:.2f} cores busy on average)"
    )
    say("  stages (wall s): " + ", ".join(f"{name} {s:.2f}" for name, s in stages(r)))


def _markdown(headers: list[str], body: list[list[str]], left: int = 0) -> None:
    widths = [max(len(h), *(len(b[i]) for b in body)) for i, h in enumerate(headers)]
    print("| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)) + " |")
    rule = ["-" * (w + 2) if i < left else "-" * (w + 1) + ":" for i, w in enumerate(widths)]
    print("|" + "|".join(rule) + "|")
    for b in body:
        cells = [
            c.ljust(w) if i < left else c.rjust(w)
            for i, (c, w) in enumerate(zip(b, widths, strict=True))
        ]
        print("| " + " | ".join(cells) + " |")


def print_table(rows: list[dict]) -> None:
    headers = [
        "customers",
        "candidates",
        "segmint s",
        "segmint CPU s",
        "segmint MiB",
        "chosen",
        "floor k",
        "floor s",
        "floor MiB",
        "segmint/floor time",
        "load",
        "others' cores",
    ]
    body = []
    for row in rows:
        s, f = row.get("segmint") or {}, row.get("floor") or {}
        ok_s, ok_f = bool(s.get("ok")), bool(f.get("ok"))
        body.append(
            [
                f"{row['customers']:,}",
                str(s["candidates"]) if ok_s else "-",
                f"{s['seconds']:.2f}" if ok_s else "FAILED",
                f"{s['cpu_seconds']:.1f}" if ok_s else "-",
                mib(s["peak_kib"]) if ok_s else "-",
                f"{s['algorithm']} k={s['n_segments']}" if ok_s else "-",
                str(f.get("k", "-")),
                f"{f['seconds']:.2f}" if ok_f else "FAILED",
                mib(f["peak_kib"]) if ok_f else "-",
                f"{s['seconds'] / f['seconds']:.0f}x" if ok_s and ok_f else "-",
                "/".join(f"{x:.1f}" for x in s.get("loads", [])) or "-",
                "/".join(f"{x:.2f}" for x in s.get("others", [])) or "-",
            ]
        )
    _markdown(headers, body)


def print_stages(rows: list[dict]) -> None:
    done = [r for r in rows if (r.get("segmint") or {}).get("ok")]
    if not done:
        return
    names = list(dict.fromkeys(name for r in done for name, _ in stages(r["segmint"])))
    headers = ["stage"]
    for r in done:
        headers += [f"{r['customers']:,} wall s", f"{r['customers']:,} CPU s"]
    body = []
    for name in [*names, "total"]:
        cells = [name]
        for r in done:
            s = r["segmint"]
            for cpu in (False, True):
                if name == "total":
                    value = s["cpu_seconds"] if cpu else s["seconds"]
                else:
                    value = dict(stages(s, cpu)).get(name)
                cells.append("-" if value is None else f"{value:.2f}")
        body.append(cells)
    _markdown(headers, body, left=1)


def targets(rows: list[dict]) -> list[str]:
    """A verdict on the project's target for each size measured."""
    out = []
    cores = os.cpu_count()
    for row in rows:
        s = row.get("segmint") or {}
        n = row["customers"]
        if not s.get("ok"):
            out.append(f"{n:,} customers: segmint FAILED, no verdict")
            continue
        where = "" if n == TARGET_CUSTOMERS else f" (the target is set at {TARGET_CUSTOMERS:,})"
        if cores != 2:
            where += f" (measured on {cores} cores, the target is for 2)"
        peak = s["peak_kib"] * 1024
        out.append(
            f"{n:,} customers: auto selection within {TARGET_SECONDS:.0f} s: "
            f"{s['seconds']:.1f} s, {'holds' if s['seconds'] <= TARGET_SECONDS else 'MISSED'}; "
            f"under {TARGET_PEAK / GIB:.0f} GiB: {peak / GIB:.2f} GiB, "
            f"{'holds' if peak < TARGET_PEAK else 'MISSED'}{where}"
        )
    return out


def run(args: argparse.Namespace) -> int:
    data_dir = Path(args.data_dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    params = dict(args.param)
    script = str(Path(__file__).resolve())
    say(
        f"segmint segmentation benchmark: {', '.join(f'{n:,}' for n in args.customers)} "
        f"customers x {len(SIX)} features, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, load average "
        + " ".join(f"{x:.2f}" for x in os.getloadavg())
    )
    say(f"segmint source: {source_revision()}")
    say(
        f"Segmenter(features=SIX, algorithm={SEARCH}, random_state={SEED}"
        + "".join(f", {k}={v!r}" for k, v in params.items())
        + ").fit(customers)"
    )
    if args.threads:
        for var in THREAD_VARIABLES:
            os.environ[var] = str(args.threads)
    env = {k: v for k, v in os.environ.items() if k in THREAD_VARIABLES or k.startswith("OMP_")}
    if env:
        say(f"note: environment of the children {env}")
    search = ["--search-threads", str(args.search_threads)] if args.search_threads else []
    if search:
        say(f"the search runs with its thread pools limited to {args.search_threads}")
    rows: list[dict] = []
    created: list[Path] = []
    failed = False
    try:
        for n in args.customers:
            data = data_dir / f"customers_{n}.parquet"
            if data.exists():
                say(f"reusing {data} ({data.stat().st_size / 2**20:,.1f} MiB)")
            else:
                say(f"generating {n:,} customers into {data} ...")
                gen = run_child(script, ["--data", str(data), "--n", str(n)], "make-data", None)
                if not gen["ok"]:
                    say(f"generation FAILED (exit {gen['returncode']})")
                    return 1
                created.append(data)
                say(
                    f"generated {gen['rows']:,} customers from {gen['base_customers']:,} in "
                    f"{gen['seconds']:.1f} s (peak {mib(gen['peak_kib'])} MiB)"
                )
            row: dict = {"customers": n}
            say(f"segmint on {n:,} customers ({args.repeat} fresh process(es)) ...")
            seg = row["segmint"] = measure_best(
                "segmint", data, ["--params", json.dumps(params), *search], args.repeat
            )
            if seg["ok"]:
                describe_segmint(seg)
            else:
                failed = True
            k = args.floor_k or (seg["n_segments"] if seg["ok"] else FLOOR_K_FALLBACK)
            say(f"floor: one KMeans(n_clusters={k}) on {n:,} customers ...")
            floor = row["floor"] = measure_best(
                "floor", data, ["--k", str(k), "--params", json.dumps(params)], args.repeat
            )
            if floor["ok"]:
                say(
                    f"  floor: n_init {floor['n_init']}, {floor['n_iter']} iterations on a "
                    f"{floor['matrix'][0]:,} x {floor['matrix'][1]} matrix (logged "
                    f"{floor['log_features']})"
                )
            else:
                failed = True
            if args.profile:
                prof = data_dir / f"segment_{n}.prof"
                say(f"profiling one more segmint run (not counted) into {prof} ...")
                r = measure(
                    "segmint",
                    data,
                    ["--params", json.dumps(params), *search, "--profile-out", str(prof)],
                )
                if r["ok"]:
                    say(f"  profiled run: {r['seconds']:.2f} s under cProfile")
            rows.append(row)
    finally:
        for path in created:
            if not args.keep:
                path.unlink(missing_ok=True)
                say(f"removed {path} (use --keep to keep it)")
    print()
    print_table(rows)
    print()
    print("Where the segmint fit's time went (seconds; wall: search fits and stability from")
    print("seg.selection_, the rest timed around the functions fit calls):")
    print()
    print_stages(rows)
    print()
    for line in targets(rows):
        print(line)
    say("FAILED (see above)" if failed else "done")
    return 1 if failed else 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--customers",
        type=parse_counts,
        default=parse_counts("100k,1M"),
        help="comma-separated numbers of customers: 100000, 100k, 1M (default 100k,1M)",
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="runs of segmint and of the floor; the fastest time and the highest peak are "
        "reported (default 1)",
    )
    p.add_argument("--keep", action="store_true", help="keep the data files generated by this run")
    p.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="where the customer tables are generated and reused (default benchmarks/data)",
    )
    p.add_argument(
        "--param",
        type=parse_param,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a Segmenter parameter (repeatable; VALUE read as JSON when it parses), e.g. "
        'selection_sample=20000 or \'algorithm_params={"gmm": {"n_init": 1}}\'',
    )
    p.add_argument(
        "--threads",
        type=int,
        default=0,
        help="threads of the OpenMP and BLAS pools in the children (OMP_NUM_THREADS, "
        "OPENBLAS_NUM_THREADS, MKL_NUM_THREADS; default: the libraries' own, all cores)",
    )
    p.add_argument(
        "--search-threads",
        type=int,
        default=0,
        help="experiment: limit the thread pools to N threads (threadpoolctl) during the "
        "search only (model fits, scoring, stability), not for the final refit",
    )
    p.add_argument(
        "--floor-k",
        type=int,
        default=0,
        help="number of segments of the floor KMeans (default: the k segmint chose)",
    )
    p.add_argument(
        "--profile",
        action="store_true",
        help="one extra cProfile run of segmint per size (not counted); the stats go to "
        "the data folder as segment_<N>.prof",
    )
    # hidden: the subprocess side
    add_child_arguments(p, choices=sorted(_CHILDREN), temp_default="")
    p.add_argument("--data", help=argparse.SUPPRESS)
    p.add_argument("--n", type=int, help=argparse.SUPPRESS)
    p.add_argument("--k", type=int, default=FLOOR_K_FALLBACK, help=argparse.SUPPRESS)
    p.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    p.add_argument("--profile-out", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return _run_child(args)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
