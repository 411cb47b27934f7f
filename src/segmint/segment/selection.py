"""Model selection: quality metrics, stability, the elbow, and the rule that picks a model.

Every candidate segmentation (an algorithm and a number of segments) is scored on the same
customers with:

* **silhouette** (higher is better; on one fixed sample of at most ``silhouette_sample``
  customers shared by every candidate, exact below that), **Davies–Bouldin** (lower is
  better) and **Calinski–Harabasz** (higher is better), all from scikit-learn, noise
  points left out;
* **inertia** (within-segment sum of squares, for every algorithm, so the curves compare)
  and its **elbow** per algorithm, found by ``kneed``;
* **BIC/AIC** for Gaussian mixtures (shown, not ranked: they do not compare across
  algorithms);
* the **smallest segment's share** of customers and the **noise share**;
* **stability**: the mean adjusted Rand index between the candidate's labels and the
  labels of the same algorithm refitted on bootstrap resamples (Lange et al. 2004,
  Hennig 2007): a segmentation that changes when the customers are resampled is not one a
  marketing team should build campaigns on.

The rule (:func:`choose`), documented in the README and returned by ``explain()``:

1. A candidate is **eligible** when it has at least 2 segments, its stability is at least
   ``min_stability`` (default 0.6), its smallest segment holds at least
   ``min_segment_share`` of the customers (default 2 %) and a density method leaves at
   most ``max_noise_share`` of them unassigned (default 25 %: a segmentation that puts a
   third of the customers in "review individually" is not one to run campaigns on, and
   its silhouette, computed without the noise, flatters it). When none is, every
   candidate with 2 or more segments competes and the explanation says so.
2. Eligible candidates are ranked on each quality metric, silhouette,
   Calinski–Harabasz and Davies–Bouldin (average ranks for ties; values equal to 10
   significant digits are ties, so the same partition found by two algorithms ties
   instead of being split by rounding noise); the **score** is the
   mean of the three ranks (lower is better). Stability is a threshold, not a rank: past
   it, a more stable but coarser segmentation is not better (2 segments are nearly
   always the most stable).
3. Among the candidates whose score is within ``tolerance`` (default 0.25) of the best,
   the one with the **fewest segments** wins (simpler segmentations are easier to act
   on); remaining ties go to the better score, then to the order of the candidates.
   The score moves in steps of 1/3 of a rank (1/6 with tied metrics), so the default
   settles ties and near-ties only; 1.0 prefers fewer segments one rank place behind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import (
    adjusted_rand_score,
    calinski_harabasz_score,
    davies_bouldin_score,
    silhouette_samples,
    silhouette_score,
)

from segmint.segment.algorithms import NOISE

__all__ = [
    "RANKED_METRICS",
    "SelectionRule",
    "choose",
    "elbows",
    "inertia",
    "score_labels",
    "silhouette_with_unassigned",
    "stability",
]

#: Metrics the rule ranks, with True when higher is better.
RANKED_METRICS: dict[str, bool] = {
    "silhouette": True,
    "calinski_harabasz": True,
    "davies_bouldin": False,
}


@dataclass(frozen=True)
class SelectionRule:
    """Thresholds of the selection rule (see the module docstring)."""

    min_stability: float = 0.6
    min_segment_share: float = 0.02
    tolerance: float = 0.25
    max_noise_share: float = 0.25


def inertia(X: np.ndarray, labels: np.ndarray) -> float:
    """Within-segment sum of squared distances to the segment means (noise left out)."""
    total = 0.0
    for lab in np.unique(labels):
        if lab == NOISE:
            continue
        part = X[labels == lab]
        total += float(((part - part.mean(axis=0)) ** 2).sum())
    return total


def score_labels(
    X: np.ndarray,
    labels: np.ndarray,
    *,
    silhouette_sample: int = 4_000,
    seed: int | None = None,
    model: Any = None,
    distances: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, float]:
    """Every geometric metric of one labelling of ``X`` (see the module docstring).

    ``distances`` is ``(rows, D)``: a fixed sample of rows of ``X`` and their pairwise
    distance matrix, computed once for all candidates, so every candidate's silhouette is
    measured on the same customers and the distances are not recomputed per candidate.
    Without it the silhouette is computed on a random sample of ``silhouette_sample``.
    """
    labels = np.asarray(labels)
    n = len(labels)
    mask = labels != NOISE
    kept = labels[mask]
    uniq, counts = np.unique(kept, return_counts=True)
    out: dict[str, float] = {
        "n_segments": float(len(uniq)),
        "min_share": float(counts.min() / n) if len(counts) else 0.0,
        "noise_share": float(1.0 - mask.mean()),
        "silhouette": np.nan,
        "davies_bouldin": np.nan,
        "calinski_harabasz": np.nan,
        "inertia": inertia(X, labels),
        "bic": np.nan,
        "aic": np.nan,
    }
    if 2 <= len(uniq) < mask.sum():
        Xk = X[mask]
        if distances is not None:
            rows, D = distances
            lab = labels[rows]
            m = lab != NOISE
            if 2 <= len(np.unique(lab[m])) < m.sum():
                Dm = D if m.all() else D[np.ix_(m, m)]
                out["silhouette"] = silhouette_precomputed(Dm, lab[m])
        else:
            sample = silhouette_sample if mask.sum() > silhouette_sample else None
            out["silhouette"] = float(
                silhouette_score(Xk, kept, sample_size=sample, random_state=seed)
            )
        out["davies_bouldin"] = float(davies_bouldin_score(Xk, kept))
        out["calinski_harabasz"] = float(calinski_harabasz_score(Xk, kept))
    if model is not None and hasattr(model, "bic") and hasattr(model, "aic"):
        out["bic"] = float(model.bic(X))
        out["aic"] = float(model.aic(X))
    return out


def silhouette_precomputed(D: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette from a precomputed distance matrix, as scikit-learn's
    ``silhouette_score(D, labels, metric="precomputed")`` computes it.

    Written here because the model search scores up to ~20 labellings of the same
    sample: scikit-learn walks ``D`` row chunk by row chunk with a ``bincount`` per row
    (about 50 ms for 4,000 customers), while the per-segment distance sums are one
    matrix product ``D @ one_hot(labels)`` (a few ms). A test checks equality with
    scikit-learn.
    """
    uniq, inv = np.unique(labels, return_inverse=True)
    n, k = len(labels), len(uniq)
    one_hot = np.zeros((n, k))
    one_hot[np.arange(n), inv] = 1.0
    sums = D @ one_hot
    sizes = one_hot.sum(axis=0)
    rows = np.arange(n)
    own_size = sizes[inv]
    a = sums[rows, inv] / np.maximum(own_size - 1, 1)
    means = sums / sizes
    means[rows, inv] = np.inf
    b = means.min(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        s = (b - a) / np.maximum(a, b)
    s[own_size == 1] = 0.0  # scikit-learn: a singleton's silhouette is 0
    return float(np.mean(np.nan_to_num(s)))


def silhouette_with_unassigned(
    X: np.ndarray, labels: np.ndarray, *, sample_size: int = 4_000, seed: int = 0
) -> float:
    """Mean silhouette of ``labels`` on ``X`` over every customer, unassigned ones
    (:data:`NOISE`) counting 0; the meaning of :meth:`Segmenter.score`.

    The selection table's silhouette leaves unassigned customers out, so a density
    method that leaves out the hard cases scores well for it (the rule caps their
    share instead). A score that compares models on its own counts each of them 0,
    as scikit-learn counts a customer alone in its segment, which makes it the
    selection's silhouette times the share of customers assigned. Above ``sample_size``
    customers a sample of that many is scored, drawn from ``seed`` (the same customers
    every time). 0 when fewer than two segments (or only one customer per segment)
    are left to compare: no structure shown, rather than NaN, which a grid search
    cannot rank.
    """
    labels = np.asarray(labels)
    n = len(labels)
    if n > sample_size:
        rows = np.sort(np.random.default_rng(seed).choice(n, sample_size, replace=False))
        X, labels = X[rows], labels[rows]
    mask = labels != NOISE
    kept = labels[mask]
    if not 2 <= len(np.unique(kept)) < len(kept):
        return 0.0
    return float(silhouette_samples(X[mask], kept).sum() / len(labels))


_THREADS = max(1, min(4, os.cpu_count() or 1))


def stability(
    fit_predict: Callable[[np.ndarray, np.ndarray, int], np.ndarray],
    X: np.ndarray,
    reference: np.ndarray,
    *,
    n_resamples: int,
    rng: np.random.Generator,
    threads: bool = True,
) -> float:
    """Mean adjusted Rand index between ``reference`` and refits on bootstrap resamples.

    ``fit_predict(X_train, X_eval, seed)`` fits a fresh estimator on ``X_train`` and
    labels ``X_eval``. Each resample draws ``len(X)`` customers with replacement; the
    refit labels all of ``X`` and is compared with ``reference`` (noise included as its
    own label). Returns NaN when ``n_resamples`` is 0.

    ``threads=False`` runs the refits one after another in the calling thread: needed
    when they call scikit-learn's joblib wrapper (``sklearn.utils.parallel``: the
    neighbour searches of DBSCAN, HDBSCAN, OPTICS, spectral clustering and of the
    nearest-neighbour assignment), whose every task enters ``warnings.catch_warnings()``
    and empties the warning filters, which before Python 3.14 are one list for the whole
    process. A refit in another thread starting its own ``Parallel`` in that moment took
    the empty list for the filters it must pass on, and its task printed scikit-learn's
    UserWarning "`sklearn.utils.parallel.delayed` should be used with
    `sklearn.utils.parallel.Parallel`" on stderr (and ran with no filters at all).
    """
    if n_resamples <= 0:
        return float("nan")
    draws = []
    for _ in range(n_resamples):  # drawn in order first: the same seeds, run in any order
        idx = rng.integers(0, len(X), len(X))
        draws.append((idx, int(rng.integers(0, 2**31 - 1))))

    def one(draw: tuple[np.ndarray, int]) -> float:
        idx, seed = draw
        return adjusted_rand_score(reference, fit_predict(X[idx], X, seed))

    workers = min(n_resamples, _THREADS) if threads else 1
    if workers == 1:
        scores = [one(draw) for draw in draws]
    else:
        # the refits are independent; NumPy and scikit-learn release the GIL in their
        # heavy loops, so two threads use both cores of a small machine
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=workers) as pool:
            scores = list(pool.map(one, draws))
    return float(np.mean(scores))


def elbows(table: pd.DataFrame) -> dict[str, int | None]:
    """Per algorithm, the number of segments at the elbow of its inertia curve (kneed)."""
    from kneed import KneeLocator

    out: dict[str, int | None] = {}
    for alg, part in table.groupby("algorithm", sort=False):
        part = part.dropna(subset=["k", "inertia"]).sort_values("k")
        if len(part) < 3 or part["k"].nunique() < 3:
            out[str(alg)] = None
            continue
        knee = KneeLocator(
            part["k"].to_numpy(float),
            part["inertia"].to_numpy(float),
            curve="convex",
            direction="decreasing",
        ).knee
        out[str(alg)] = None if knee is None else int(knee)
    return out


def _significant(value: float, digits: int = 10) -> float:
    """``value`` rounded to ``digits`` significant digits (NaN stays NaN)."""
    return float(f"{value:.{digits}g}") if value == value else value


def choose(
    table: pd.DataFrame, rule: SelectionRule, *, fixed: bool = False
) -> tuple[int, pd.DataFrame, str | None]:
    """Apply the selection rule to the candidate table.

    Returns the row position of the winner, the table with the added columns
    ``eligible``, ``excluded_because``, ``rank_<metric>``, ``score`` and ``chosen``, and a
    note when no candidate passed the thresholds. ``fixed``: the user asked for these
    candidates (a fixed number of segments), so when none has two segments the first one
    is taken as asked instead of failing.
    """
    t = table.copy()
    valid = (t["n_segments"] >= 2) & t["silhouette"].notna()
    stab = t["stability"]
    reasons = pd.Series("", index=t.index, dtype=object)
    reasons[~valid] = "fewer than 2 segments"
    low_stab = valid & stab.notna() & (stab < rule.min_stability)
    reasons[low_stab] = f"stability below {rule.min_stability:g}"
    small = valid & ~low_stab & (t["min_share"] < rule.min_segment_share)
    reasons[small] = f"a segment under {rule.min_segment_share:.0%} of customers"
    noisy = valid & ~low_stab & ~small & (t["noise_share"] > rule.max_noise_share)
    reasons[noisy] = f"over {rule.max_noise_share:.0%} of customers unassigned (noise)"
    eligible = valid & ~low_stab & ~small & ~noisy
    note = None
    if not valid.any():
        if not fixed:
            raise ValueError("no candidate has two or more segments")
        for col in ("score", *(f"rank_{m}" for m in RANKED_METRICS)):
            t[col] = np.nan
        t["eligible"] = False
        t["excluded_because"] = reasons
        t.loc[t.index[0], "excluded_because"] = ""  # the one taken was asked for
        t["chosen"] = np.arange(len(t)) == 0
        return 0, t, "fewer than two segments, as asked"
    pool = eligible if eligible.any() else valid
    if not eligible.any():
        note = (
            "no candidate passed the stability, segment-size and noise thresholds, so every "
            "candidate with two or more segments competed"
        )
    ranks = []
    for metric, higher in RANKED_METRICS.items():
        # ranked at 10 significant digits: the same partition numbered another way (K-Means
        # and a mixture finding the same segments) gives a Davies–Bouldin differing in
        # the last bit, and that rounding noise must not decide between them
        col = t.loc[pool, metric].map(_significant)
        if col.notna().any():
            r = col.rank(ascending=not higher, method="average", na_option="bottom")
            t.loc[pool, f"rank_{metric}"] = r
            ranks.append(f"rank_{metric}")
        else:
            t[f"rank_{metric}"] = np.nan
    t["score"] = np.nan
    t.loc[pool, "score"] = t.loc[pool, ranks].mean(axis=1)
    best = t.loc[pool, "score"].min()
    near = t[pool & (t["score"] <= best + rule.tolerance)]
    order = near.assign(_pos=np.arange(len(near))).sort_values(
        ["n_segments", "score", "_pos"], kind="stable"
    )
    winner = order.index[0]
    t["eligible"] = eligible
    t["excluded_because"] = reasons.where(~eligible, "")
    t["chosen"] = t.index == winner
    return int(t.index.get_loc(winner)), t, note
