"""The clustering algorithms segmint knows: one registry, one place to add an algorithm.

Every entry says how to build the scikit-learn estimator for a number of segments and a
seed, whether the algorithm takes a number of segments at all (density methods do not),
and whether its cost grows with the square of the customers (those are fitted on a
sample and extended to every customer by :class:`NearestAssigner`). Noise points of the
density methods keep the label ``-1`` (:data:`NOISE`): an explicit "unassigned /
outlier" segment, never merged into a real one.
"""

from __future__ import annotations

import difflib
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import (
    DBSCAN,
    HDBSCAN,
    OPTICS,
    AgglomerativeClustering,
    Birch,
    KMeans,
    MiniBatchKMeans,
    SpectralClustering,
)
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.neighbors import KDTree, NearestNeighbors

from segmint.errors import ConfigError

__all__ = [
    "ALGORITHMS",
    "NOISE",
    "Algorithm",
    "NearestAssigner",
    "OpticsAssigner",
    "ReachabilityAssigner",
    "default_sample_size",
    "get_algorithm",
    "register_algorithm",
]

#: Label of customers a density method leaves unassigned (noise / outliers).
NOISE = -1

Builder = Callable[[int | None, int, int, int | None, dict[str, Any]], BaseEstimator]


@dataclass(frozen=True)
class Algorithm:
    """One clustering algorithm.

    Attributes
    ----------
    name : str
        Registry key (``algorithm="..."``).
    family : str
        ``centroid``, ``mixture``, ``density``, ``hierarchical`` or ``graph``.
    build : callable
        ``(n_clusters, n_rows, n_dims, seed, params) -> estimator``; ``params`` are the
        user's overrides, passed on to the estimator.
    uses_k : bool
        Whether the algorithm takes a number of segments (searched by ``n_clusters="auto"``).
    quadratic : bool
        Cost grows with the square of the customers: fitted on a sample, then extended.
    description : str
        One line for the docs and ``segmint algorithms``.
    """

    name: str
    family: str
    build: Builder
    uses_k: bool = True
    quadratic: bool = False
    description: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)

    @property
    def can_predict(self) -> bool:
        """Whether the fitted estimator assigns new customers itself (``predict``)."""
        return self.family in ("centroid", "mixture")


ALGORITHMS: dict[str, Algorithm] = {}


def register_algorithm(algorithm: Algorithm) -> Algorithm:
    """Add (or replace) an algorithm in the registry; returns it."""
    ALGORITHMS[algorithm.name] = algorithm
    return algorithm


def get_algorithm(name: str) -> Algorithm:
    """The registry entry called ``name``, or a ConfigError naming the closest one."""
    try:
        return ALGORITHMS[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(ALGORITHMS), n=1)
        raise ConfigError(
            f"unknown algorithm {name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""),
            hint=f"available: {', '.join(ALGORITHMS)}",
        ) from None


def check_params(name: str, params: dict[str, Any] | None) -> None:
    """Refuse parameters the estimator of algorithm ``name`` does not take (a ConfigError
    naming the closest one and the valid ones): ``algorithm_params = {kmeans = {n_int =
    10}}`` was an internal error (TypeError) once the data were read and the search began.
    """
    if not params:
        return
    if not isinstance(params, dict):
        raise ConfigError(
            f"algorithm_params for {name!r} must be a table of parameters, got {params!r}",
            hint="e.g. algorithm_params = {kmeans = {n_init = 10}}",
        )
    algorithm = get_algorithm(name)
    valid = sorted(algorithm.build(2, 100, 2, 0, {}).get_params(deep=False))
    for key in params:
        if key not in valid:
            close = difflib.get_close_matches(str(key), valid, n=1)
            raise ConfigError(
                f"algorithm_params: {name} has no parameter {key!r}"
                + (f" (did you mean {close[0]!r}?)" if close else ""),
                hint=f"parameters of {name}: {', '.join(valid)}",
            )
    # the values too: `n_init = -1` or `covariance_type = "ful"` was refused only by
    # scikit-learn at the first fit, after the data were read, with a hint about the
    # number of segments. scikit-learn's own constraint check (``_validate_params``, what
    # fit calls first) gives the allowed values; it is skipped on a scikit-learn without it
    est = algorithm.build(2, 100, 2, 0, dict(params))
    if isinstance(est, DBSCAN) and isinstance(est.eps, str) and est.eps == "auto":
        est.set_params(eps=1.0)  # segmint's own value, resolved from the data at fit
    validate = getattr(est, "_validate_params", None)
    if validate is None:  # pragma: no cover - scikit-learn < 1.2
        return
    try:
        validate()
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"algorithm_params: {name}: {exc}",
            hint=f"see scikit-learn's {type(est).__name__} for the allowed values",
        ) from None


def default_sample_size() -> int:
    """How many customers a quadratic algorithm is fitted on by default.

    The largest sample whose n x n float64 distance matrix fits in a tenth of the RAM,
    between 2,000 and 20,000 (beyond 20,000 the fit time, not memory, is the limit on
    a laptop).
    """
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        ram = 8 * 1024**3
    return int(min(20_000, max(2_000, math.sqrt(ram * 0.1 / 8))))


def _merge(defaults: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    out = dict(defaults)
    out.update(params)
    return out


def _kmeans(k, n, d, seed, params):
    return KMeans(**_merge({"n_clusters": k, "n_init": 4, "random_state": seed}, params))


def _minibatch(k, n, d, seed, params):
    return MiniBatchKMeans(
        **_merge({"n_clusters": k, "n_init": 3, "batch_size": 4096, "random_state": seed}, params)
    )


def _gmm(k, n, d, seed, params):
    return GaussianMixture(
        **_merge(
            {"n_components": k, "covariance_type": "full", "n_init": 1, "random_state": seed},
            params,
        )
    )


def _bgmm(k, n, d, seed, params):
    return BayesianGaussianMixture(
        **_merge(
            {
                "n_components": k,
                "covariance_type": "full",
                "weight_concentration_prior_type": "dirichlet_process",
                "max_iter": 500,
                "random_state": seed,
            },
            params,
        )
    )


def _min_samples(n: int, d: int) -> int:
    return max(5, 2 * d)


def _dbscan(k, n, d, seed, params):
    return DBSCAN(**_merge({"eps": "auto", "min_samples": _min_samples(n, d)}, params))


def _hdbscan(k, n, d, seed, params):
    return HDBSCAN(**_merge({"min_cluster_size": max(10, n // 100), "copy": True}, params))


def _optics(k, n, d, seed, params):
    # min_cluster_size: without it xi extraction keeps clusters of min_samples customers
    # and nests them, leaving most customers as noise (demo data: 65 % unassigned, 5
    # segments of which 2 under 2 %); a cluster under 2 % is no segment (the selection's
    # min_segment_share), and with this floor the demo's clusters hold 74 % of customers
    return OPTICS(
        **_merge({"min_samples": max(10, n // 100), "xi": 0.05, "min_cluster_size": 0.02}, params)
    )


def _agglomerative(linkage: str) -> Builder:
    def build(k, n, d, seed, params):
        return AgglomerativeClustering(**_merge({"n_clusters": k, "linkage": linkage}, params))

    return build


def _birch(k, n, d, seed, params):
    return Birch(**_merge({"n_clusters": k, "threshold": 0.3}, params))


def _spectral(k, n, d, seed, params):
    return SpectralClustering(
        **_merge(
            {
                "n_clusters": k,
                "affinity": "nearest_neighbors",
                "n_neighbors": max(10, min(50, n // 200)),
                "assign_labels": "cluster_qr",
                "random_state": seed,
            },
            params,
        )
    )


for _alg in (
    Algorithm("kmeans", "centroid", _kmeans, description="K-Means (Lloyd), k-means++ seeding"),
    Algorithm(
        "minibatch_kmeans",
        "centroid",
        _minibatch,
        description="MiniBatch K-Means: K-Means on mini-batches, for very many customers",
    ),
    Algorithm("gmm", "mixture", _gmm, description="Gaussian mixture, full covariances"),
    Algorithm(
        "bayesian_gmm",
        "mixture",
        _bgmm,
        description="Bayesian Gaussian mixture (Dirichlet process): k is an upper bound; "
        "unneeded components get no customers",
    ),
    Algorithm(
        "dbscan",
        "density",
        _dbscan,
        uses_k=False,
        quadratic=True,
        description="DBSCAN; eps='auto' takes the knee of the k-distance curve (kneed)",
    ),
    Algorithm(
        "hdbscan",
        "density",
        _hdbscan,
        uses_k=False,
        quadratic=True,
        description="HDBSCAN: density clusters of varying density, noise kept apart",
    ),
    Algorithm(
        "optics",
        "density",
        _optics,
        uses_k=False,
        quadratic=True,
        description="OPTICS with xi cluster extraction, noise kept apart",
    ),
    Algorithm(
        "agglomerative_ward",
        "hierarchical",
        _agglomerative("ward"),
        quadratic=True,
        description="Agglomerative clustering, Ward linkage",
    ),
    Algorithm(
        "agglomerative_average",
        "hierarchical",
        _agglomerative("average"),
        quadratic=True,
        description="Agglomerative clustering, average linkage",
    ),
    Algorithm(
        "agglomerative_complete",
        "hierarchical",
        _agglomerative("complete"),
        quadratic=True,
        description="Agglomerative clustering, complete linkage",
    ),
    Algorithm("birch", "hierarchical", _birch, description="Birch (CF tree) + global clustering"),
    Algorithm(
        "spectral",
        "graph",
        _spectral,
        quadratic=True,
        description="Spectral clustering on a nearest-neighbour graph",
    ),
):
    register_algorithm(_alg)


def auto_eps(X: np.ndarray, min_samples: int) -> float:
    """DBSCAN's ``eps`` from the knee of the sorted k-distance curve (kneed).

    The classic heuristic (Ester et al.): sort every point's distance to its
    ``min_samples``-th neighbour; the knee separates dense regions from noise. Falls back
    to the 90th percentile of those distances when the curve has no knee.
    """
    from kneed import KneeLocator

    k = min(min_samples, len(X) - 1)
    dist, _ = NearestNeighbors(n_neighbors=k + 1).fit(X).kneighbors(X)
    kd = np.sort(dist[:, -1])
    fallback = float(np.quantile(kd, 0.9))
    if len(kd) < 10 or kd[-1] <= kd[0]:
        return max(fallback, 1e-9)
    idx = np.linspace(0, len(kd) - 1, min(len(kd), 2000)).astype(int)
    knee = KneeLocator(idx, kd[idx], curve="convex", direction="increasing").knee_y
    eps = float(knee) if knee is not None and knee > 0 else fallback
    return max(eps, 1e-9)


def build_estimator(
    algorithm: Algorithm,
    n_clusters: int | None,
    X: np.ndarray,
    seed: int | None,
    params: dict[str, Any] | None = None,
) -> BaseEstimator:
    """The estimator for ``algorithm`` on data ``X`` (resolving data-dependent defaults)."""
    n, d = X.shape
    est = algorithm.build(n_clusters if algorithm.uses_k else None, n, d, seed, dict(params or {}))
    if isinstance(est, DBSCAN) and est.eps == "auto":
        est.set_params(eps=auto_eps(X, est.min_samples))
    return est


def fit_labels(est: BaseEstimator, X: np.ndarray) -> np.ndarray:
    """Fit ``est`` on ``X`` and return the labels of ``X`` (noise = -1)."""
    if hasattr(est, "fit_predict"):
        return np.asarray(est.fit_predict(X))
    est.fit(X)  # pragma: no cover - every registered estimator has fit_predict
    return np.asarray(est.labels_)  # pragma: no cover


class NearestAssigner(ClusterMixin, BaseEstimator):
    """Assign customers to the segment of their nearest fitted (sample) customer.

    Used to extend algorithms that cannot assign new points (agglomerative, spectral,
    density methods) and those fitted on a sample to every customer. ``radius`` (DBSCAN's
    ``eps``) makes customers farther than it from every reference point noise, which is
    exactly DBSCAN's own rule when the references are its core samples.

    The neighbours come from a :class:`~sklearn.neighbors.KDTree` queried directly, not
    from ``NearestNeighbors.kneighbors``: that goes through scikit-learn's joblib wrapper,
    whose every task empties the process-wide warning filters (before Python 3.14), so
    two threads predicting at once (``segmint serve``) printed "`sklearn.utils.parallel.
    delayed` should be used with `sklearn.utils.parallel.Parallel`". Up to 15 features
    the tree is the index ``NearestNeighbors`` built, so the answers are the same; above,
    it compared every pair with rounded distances, where the tree's are exact.
    """

    def __init__(self, *, radius: float | None = None) -> None:
        self.radius = radius

    def fit(self, X: np.ndarray, y: np.ndarray) -> NearestAssigner:
        """Remember the reference points ``X`` and their labels ``y``."""
        self.reference_ = np.asarray(X, dtype=float)
        self.labels_ = np.asarray(y)
        self.tree_ = KDTree(self.reference_, leaf_size=30, metric="euclidean")
        return self

    def _query(self, X: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Distances to and indices of the ``k`` nearest reference points, nearest first."""
        tree = getattr(self, "tree_", None)
        if tree is None:
            # fitted before the tree (bundles saved with a NearestNeighbors ``nn_``):
            # built once from the reference points: the index NearestNeighbors built
            tree = self.tree_ = KDTree(self.reference_, leaf_size=30, metric="euclidean")
        k = int(min(k, len(self.reference_)))
        return tree.query(np.ascontiguousarray(X, dtype=float), k=k)

    def _in_chunks(self, X: np.ndarray, labels_of: Any) -> np.ndarray:
        """``labels_of(part)`` over ``X`` in parts of 100,000 customers (bounded memory
        for millions of rows)."""
        out = np.empty(len(X), dtype=self.labels_.dtype)
        for start in range(0, len(X), 100_000):
            part = X[start : start + 100_000]
            out[start : start + len(part)] = labels_of(part)
        return out

    def _per_customer(self, per_segment: np.ndarray) -> np.ndarray:
        """A per-segment value (a reach, a limit) for every fitted customer; -1 for noise."""
        if not len(per_segment):
            return np.where(self.labels_ != NOISE, 0.0, -1.0)
        return np.where(self.labels_ != NOISE, per_segment[np.maximum(self.labels_, 0)], -1.0)

    def _closest_allowed(self, idx: np.ndarray, reach: np.ndarray, ok: np.ndarray) -> np.ndarray:
        """Per row, the label of the allowed neighbour (``ok``) of smallest ``reach``,
        nearest first on ties (the neighbours come nearest first); noise when none is."""
        best = np.where(ok, reach, np.inf).argmin(axis=1)
        rows = np.arange(len(idx))
        return np.where(ok[rows, best], self.labels_[idx[rows, best]], NOISE)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Label of the nearest reference point (or noise beyond ``radius``)."""

        def nearest(part: np.ndarray) -> np.ndarray:
            dist, idx = self._query(part, 1)
            labels = self.labels_[idx[:, 0]]
            if self.radius is not None:
                labels = np.where(dist[:, 0] <= self.radius, labels, NOISE)
            return labels

        return self._in_chunks(X, nearest)

    @property
    def may_leave_unassigned(self) -> bool:
        """Whether :meth:`predict` can give noise to a customer far from every segment."""
        return self.radius is not None


class ReachabilityAssigner(NearestAssigner):
    """Assign customers as HDBSCAN would: within mutual reachability of a segment, else noise.

    The nearest-sampled-customer rule gave an outlier far from every fitted customer the
    segment of whichever was nearest, where HDBSCAN would have left it unassigned. This
    rule keeps HDBSCAN's notion of reach (the approximation hdbscan's
    ``approximate_predict`` makes: the new customer changes no one else's core distance):

    * the core distance of a customer is the distance to its ``min_samples``-th nearest
      fitted customer (itself included, as scikit-learn counts), the mutual reachability
      of two customers ``max(core_a, core_b, distance / alpha)``;
    * a segment's reach is the smallest mutual reachability between one of its fitted
      customers and any fitted customer outside it: the level at which HDBSCAN's tree
      merges it with the rest, below which every customer joining it belongs to it;
    * a customer gets the segment of the fitted (non-noise) customer among its
      ``min_samples`` nearest whose mutual reachability to it is smallest and below that
      segment's reach (nearer first on ties); otherwise it is noise.

    A fitted customer is its own nearest at distance 0, so the rule gives the fitted
    customers HDBSCAN's own labels: a segment's customer is within its reach (the tree
    joined it at that level at the latest) and a noise customer below no segment's reach
    (it would have joined the segment).
    """

    def __init__(self, *, min_samples: int = 5, alpha: float = 1.0) -> None:
        self.min_samples = min_samples
        self.alpha = alpha

    def fit(self, X: np.ndarray, y: np.ndarray) -> ReachabilityAssigner:
        """Remember the fitted customers ``X`` (noise included: they set the core
        distances), their labels ``y``, core distances and each segment's reach."""
        from scipy.spatial.distance import cdist

        self.reference_ = np.asarray(X, dtype=float)
        self.labels_ = np.asarray(y)
        self.tree_ = KDTree(self.reference_, leaf_size=30, metric="euclidean")
        self.core_ = self._query(self.reference_, self.min_samples)[0][:, -1]
        n_labels = int(self.labels_.max()) + 1 if len(self.labels_) else 0
        reach = np.full(max(n_labels, 0), np.inf)
        clustered = np.flatnonzero(self.labels_ != NOISE)
        step = max(1, 4_000_000 // max(len(self.reference_), 1))  # ~32 MB per block
        for start in range(0, len(clustered), step):
            rows = clustered[start : start + step]
            # exact distances (cdist), as HDBSCAN's tree compares them: a fitted
            # customer at exactly its segment's reach must stay in it
            mr = cdist(self.reference_[rows], self.reference_) / self.alpha
            np.maximum(mr, self.core_[rows, None], out=mr)
            np.maximum(mr, self.core_[None, :], out=mr)
            mr[self.labels_[rows, None] == self.labels_[None, :]] = np.inf
            np.minimum.at(reach, self.labels_[rows], mr.min(axis=1))
        self.reach_ = self._per_customer(reach)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Segment of the reachable fitted customer (see the class), else noise."""

        def reachable(part: np.ndarray) -> np.ndarray:
            dist, idx = self._query(part, self.min_samples)
            core = dist[:, -1:]  # the customer's own core distance among the fitted
            mr = np.maximum(np.maximum(dist / self.alpha, core), self.core_[idx])
            # below the reach: at it the tree merges the segment with the rest, and
            # which side a customer joining at that very level lands on is a tie HDBSCAN
            # breaks by order; a fitted customer (distance 0) at its segment's reach
            # joined it, one elsewhere at that level did not
            reach = self.reach_[idx]
            ok = (self.labels_[idx] != NOISE) & ((mr < reach) | ((mr <= reach) & (dist == 0)))
            return self._closest_allowed(idx, mr, ok)

        return self._in_chunks(X, reachable)

    @property
    def may_leave_unassigned(self) -> bool:
        """Always: a customer out of every segment's reach is noise."""
        return True


class OpticsAssigner(NearestAssigner):
    """Assign customers as OPTICS reaches them: within a segment's reach, else noise.

    The nearest-sampled-customer rule gave an outlier far from every fitted customer the
    segment of whichever was nearest, where OPTICS would have left it unassigned. This
    rule follows OPTICS's reachability (a new customer changes no one's core distance):

    * a fitted customer's core distance is OPTICS's own (``core_distances``: the distance
      to its ``min_samples``-th nearest fitted customer, itself included; infinite
      beyond ``max_eps``); a new customer's reachability from it is ``max(core,
      distance)``;
    * a segment's limit is the largest reachability OPTICS walked inside it: over the
      segment's customers in OPTICS's ``ordering`` except the first (whose reachability
      is the step into the segment);
    * a customer at exactly a fitted customer's position keeps that customer's label
      (so the fitted customers get OPTICS's own labels: those depend on the order OPTICS
      visited them, which no rule on distances reproduces); any other customer gets the
      segment of the fitted (non-noise) customer among its ``min_samples`` nearest whose
      reachability to it is smallest and at most that segment's limit (nearer first on
      ties); otherwise it is noise.
    """

    def __init__(self, *, min_samples: int = 5) -> None:
        self.min_samples = min_samples

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        core_distances: np.ndarray | None = None,
        reachability: np.ndarray | None = None,
        ordering: np.ndarray | None = None,
    ) -> OpticsAssigner:
        """Remember the fitted customers ``X`` (noise included), their labels ``y``, and
        from OPTICS's ``core_distances_``, ``reachability_`` and ``ordering_`` each
        customer's core distance and its segment's limit.

        Without ``reachability`` and ``ordering`` (not an OPTICS fit) a segment's limit
        is the largest core distance of its customers; without ``core_distances`` they
        are computed from ``X``.
        """
        self.reference_ = np.asarray(X, dtype=float)
        self.labels_ = np.asarray(y)
        self.tree_ = KDTree(self.reference_, leaf_size=30, metric="euclidean")
        if core_distances is None:
            core_distances = self._query(self.reference_, self.min_samples)[0][:, -1]
        self.core_ = np.asarray(core_distances, dtype=float)
        n_labels = int(self.labels_.max()) + 1 if len(self.labels_) else 0
        limit = np.zeros(max(n_labels, 0))
        if reachability is not None and ordering is not None:
            reach = np.asarray(reachability, dtype=float)[np.asarray(ordering)]
            walked = self.labels_[np.asarray(ordering)]
            for label in range(n_labels):
                inside = reach[walked == label][1:]  # the first is the step into it
                inside = inside[np.isfinite(inside)]
                limit[label] = inside.max() if len(inside) else 0.0
        else:
            for label in range(n_labels):
                core = self.core_[self.labels_ == label]
                core = core[np.isfinite(core)]
                limit[label] = core.max() if len(core) else 0.0
        self.limit_ = self._per_customer(limit)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """Segment of the reachable fitted customer (see the class), else noise."""

        def reachable(part: np.ndarray) -> np.ndarray:
            dist, idx = self._query(part, self.min_samples)
            reach = np.maximum(dist, self.core_[idx])
            labels = self.labels_[idx]
            ok = (labels != NOISE) & (reach <= self.limit_[idx])
            got = self._closest_allowed(idx, reach, ok)
            # a fitted customer's own position: OPTICS's label for it
            return np.where(dist[:, 0] == 0, labels[:, 0], got)

        return self._in_chunks(X, reachable)

    @property
    def may_leave_unassigned(self) -> bool:
        """Always: a customer beyond every segment's limit is noise."""
        return True


def make_assigner(est: BaseEstimator, X: np.ndarray, labels: np.ndarray) -> NearestAssigner:
    """The nearest-neighbour rule that extends a fitted ``est`` (on ``X``) to new customers.

    Birch's own ``predict`` is this rule over its subcluster centres, so Birch gets it
    too (it keeps the model file small and free of Birch's internal tree). DBSCAN
    passes segments on from its core samples within ``eps``, HDBSCAN within mutual
    reachability (:class:`ReachabilityAssigner`), so an outlier the model would leave
    unassigned is not given the segment of the nearest fitted customer; OPTICS within
    its reachability (:class:`OpticsAssigner`), for the same reason.
    """
    if isinstance(est, Birch):
        return NearestAssigner().fit(est.subcluster_centers_, est.subcluster_labels_)
    if isinstance(est, DBSCAN):
        core = est.core_sample_indices_
        if len(core) == 0:
            return NearestAssigner(radius=0.0).fit(X[:1], np.array([NOISE]))
        return NearestAssigner(radius=float(est.eps)).fit(X[core], labels[core])
    if isinstance(est, HDBSCAN) and est.metric == "euclidean":
        min_samples = est.min_cluster_size if est.min_samples is None else est.min_samples
        return ReachabilityAssigner(min_samples=int(min_samples), alpha=float(est.alpha)).fit(
            X, labels
        )
    if isinstance(est, OPTICS) and _euclidean(est):
        min_samples = est.min_samples
        if min_samples <= 1:  # a share of the customers, as OPTICS reads it
            min_samples = max(2, int(min_samples * len(X)))
        return OpticsAssigner(min_samples=int(min_samples)).fit(
            X,
            labels,
            core_distances=est.core_distances_,
            reachability=est.reachability_,
            ordering=est.ordering_,
        )
    return NearestAssigner().fit(X, labels)


def _euclidean(est: BaseEstimator) -> bool:
    """Whether ``est`` measures plain Euclidean distances (the assigners' own)."""
    if est.metric == "euclidean":
        return True
    return est.metric == "minkowski" and est.p == 2 and not est.metric_params
