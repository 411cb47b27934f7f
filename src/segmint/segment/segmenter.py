"""The :class:`Segmenter`: transform, candidate models, explained selection, final model."""

from __future__ import annotations

import logging
import numbers
import sys
import time
import warnings
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import (
    BaseEstimator,
    ClassNamePrefixFeaturesOutMixin,
    ClusterMixin,
    TransformerMixin,
)
from sklearn.cluster import KMeans, MiniBatchKMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import pairwise_distances
from sklearn.mixture import BayesianGaussianMixture, GaussianMixture
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import threadpool_limits

from segmint._text import count
from segmint.errors import ConfigError, DataQualityError
from segmint.io import atomic_path
from segmint.segment.algorithms import (
    ALGORITHMS,
    NOISE,
    Algorithm,
    OpticsAssigner,
    ReachabilityAssigner,
    build_estimator,
    check_params,
    default_sample_size,
    fit_labels,
    get_algorithm,
    make_assigner,
)
from segmint.segment.selection import (
    RANKED_METRICS,
    SelectionRule,
    _significant,
    choose,
    elbows,
    score_labels,
    silhouette_with_unassigned,
    stability,
)
from segmint.segment.transforms import (
    _FEW_CUSTOMERS_HINT,
    CustomerTransform,
    as_frame,
    is_table,
)

__all__ = ["DEFAULT_SEARCH", "Segmenter"]

#: Estimators whose fit and predict never call ``sklearn.utils.parallel.Parallel``: their
#: stability refits may run in threads (:func:`~segmint.segment.selection.stability`).
_JOBLIB_FREE = (KMeans, MiniBatchKMeans, GaussianMixture, BayesianGaussianMixture)

log = logging.getLogger(__name__)

#: Algorithms searched when ``algorithm="auto"``: K-Means and Gaussian mixtures, which
#: scale linearly and assign new customers themselves. (MiniBatch K-Means is not in the
#: default search: candidates are compared on at most ``selection_sample`` customers,
#: where full K-Means is fast, and it found the same partitions less stably.)
DEFAULT_SEARCH = ("kmeans", "gmm")

Progress = Callable[[int, int, str], None]

_NAMES = {
    "kmeans": "K-Means",
    "minibatch_kmeans": "MiniBatch K-Means",
    "gmm": "Gaussian mixture",
    "bayesian_gmm": "Bayesian Gaussian mixture",
    "dbscan": "DBSCAN",
    "hdbscan": "HDBSCAN",
    "optics": "OPTICS",
    "agglomerative_ward": "agglomerative (Ward)",
    "agglomerative_average": "agglomerative (average linkage)",
    "agglomerative_complete": "agglomerative (complete linkage)",
    "birch": "Birch",
    "spectral": "spectral clustering",
}

_METRIC_LABELS = {
    "silhouette": "silhouette",
    "calinski_harabasz": "Calinski–Harabasz",
    "davies_bouldin": "Davies–Bouldin",
    "stability": "stability",
}


def _candidate_seed(seed: int, algorithm: str, k: int | None) -> list[int]:
    """The seed of one candidate's bootstrap resamples, from the fit's seed, the
    algorithm's name and its number of segments only.

    Drawn in search order from one generator, a candidate's stability depended on the
    candidates searched before it: K-Means with 6 segments on Online Retail scored 0.75
    searched with ``["kmeans", "gmm"]``, 0.94 with ``["gmm", "kmeans"]``, 0.72 alone
    in a search and 0.80 as the only candidate, which could move it across
    ``min_stability`` and change the winner with the list of algorithms tried.
    """
    return [int(seed), zlib.crc32(algorithm.encode("utf-8")), int(k or 0)]


def _ordinal(n: float) -> str:
    n = int(round(n))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _place(table: pd.DataFrame, metric: str, row: Any) -> str:
    """The place of ``row`` on ``metric`` among the ranked candidates, as the explanation
    shows it: "1st", or "tied 1st" when others have the same value. The rank column holds
    average ranks for ties (three candidates tied for first all have 2.0, two have 1.5),
    which read as "2nd" when rounded: the place is one plus the number of candidates that
    are strictly better."""
    ranked = table[f"rank_{metric}"].notna()
    rank = table.loc[ranked, f"rank_{metric}"]
    better = int((rank < row[f"rank_{metric}"]).sum())
    tied = int((rank == row[f"rank_{metric}"]).sum()) > 1
    return ("tied " if tied else "") + _ordinal(better + 1)


def _fmt(metric: str, value: float) -> str:
    if value != value:  # NaN
        return "n/a"
    if metric == "calinski_harabasz":
        return f"{value:,.0f}"
    return f"{value:.2f}"


def euclidean(Z: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Euclidean distance of every row of ``Z`` to every centre, as ``sqrt(sum((z - c)²))``.

    Written out rather than ``sklearn.metrics.pairwise_distances`` for two reasons: its
    input checks cost about 0.1 ms a call, most of a one-customer prediction in the
    service, and its ``|z|² - 2 z·c + |c|²`` form loses digits for points close to a
    centre. Rows are taken in blocks so memory stays bounded on large tables.
    """
    Z = np.asarray(Z, dtype=float)
    C = np.asarray(centres, dtype=float)
    out = np.empty((len(Z), len(C)))
    step = max(1, 1_000_000 // max(1, C.size))
    for start in range(0, len(Z), step):
        block = Z[start : start + step]
        diff = block[:, None, :] - C[None, :, :]
        out[start : start + step] = np.sqrt(np.einsum("ijk,ijk->ij", diff, diff))
    return out


class _RichProgress:
    """A rich progress bar on stderr (used when ``verbose=True`` and no callback is given)."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._progress = Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=Console(stderr=True),
            transient=not sys.stderr.isatty(),
        )
        self._task: Any = None

    def __call__(self, done: int, total: int, description: str) -> None:
        if self._task is None:
            self._progress.start()
            self._task = self._progress.add_task(description, total=total)
        self._progress.update(self._task, completed=done, total=total, description=description)

    def stop(self) -> None:
        if self._task is not None:
            self._progress.stop()


def share_text(share: float) -> str:
    """A share of customers as a percentage that keeps its digits ("2%", "0.5%", "99.5%"),
    where ``{share:.0%}`` would print a value tier of 0.005 as "0%"."""
    return f"{share * 100:.4g}%"


def _monetary(frame: pd.DataFrame, who: str) -> np.ndarray:
    """The raw ``monetary`` column as floats (non-numbers as NaN), which a value tier is
    decided on; a clear error when the table has none."""
    if "monetary" not in frame.columns:
        raise ConfigError(
            f"{who} needs a 'monetary' column in the customer table",
            hint=f"columns given: {', '.join(map(str, frame.columns))}",
            code="missing_column",
        )
    return pd.to_numeric(frame["monetary"], errors="coerce").to_numpy(float)


class Segmenter(ClassNamePrefixFeaturesOutMixin, ClusterMixin, TransformerMixin, BaseEstimator):
    """Customer segmentation: feature transform, candidate models, explained selection.

    A scikit-learn estimator: ``fit`` / ``predict`` / ``fit_predict`` / ``transform``
    (distances to each segment's centre), ``get_params`` / ``set_params``,
    ``sklearn.base.clone``; the same data and ``random_state`` give the same segments.

    With ``n_clusters="auto"`` (default) every algorithm in ``algorithm`` is fitted for
    every number of segments in ``k_range`` (density methods once), each candidate is
    scored (silhouette, Davies–Bouldin, Calinski–Harabasz, inertia and its elbow, BIC/AIC,
    smallest segment, bootstrap stability) and the rule of
    :mod:`segmint.segment.selection` picks one; :attr:`selection_` holds the table and
    :meth:`explain` says why. The winner is then refitted on every customer (algorithms
    that scale quadratically: on a sample of ``sample_size`` customers, extended to the
    rest by the nearest sampled customer, or for DBSCAN, HDBSCAN and OPTICS by their own
    density rule, which leaves an outlier unassigned; :attr:`sampled_` says so).

    Segment ids are ordered by size (0 = largest). Customers a density method leaves
    unassigned get :data:`~segmint.segment.algorithms.NOISE` (-1), an explicit
    "unassigned / outlier" segment.

    Parameters
    ----------
    features : list of str, optional
        Numeric features to segment on; default recency, frequency, monetary and tenure
        when present, else every numeric column.
    categorical : list of str, optional
        Categorical columns to include (one-hot or ordinal, see ``encoding``).
    algorithm : str or list of str, default "auto"
        A registry name (see :data:`~segmint.segment.algorithms.ALGORITHMS`), a list of
        them, or "auto" (:data:`DEFAULT_SEARCH`).
    n_clusters : "auto" or int, default "auto"
        Search ``k_range``, or use this number of segments.
    k_range : (int, int), default (2, 10)
        Smallest and largest number of segments searched (inclusive).
    log, skew_threshold, clip, scaler, encoding, pca
        The transform, see :class:`~segmint.segment.transforms.CustomerTransform`.
    algorithm_params : dict, optional
        Per algorithm name, keyword arguments for its scikit-learn estimator
        (e.g. ``{"kmeans": {"n_init": 10}, "dbscan": {"eps": 0.4}}``).
    sample_size : int or "auto", default "auto"
        Customers a quadratic algorithm is fitted on
        (:func:`~segmint.segment.algorithms.default_sample_size`).
    selection_sample : int, default 50_000
        Customers the candidates are fitted and scored on during the search (a random
        sample when there are more); the winner is refitted on every customer.
    silhouette_sample : int, default 4_000
        Customers the silhouette is computed on, the same ones for every candidate
        (exact below that; memory grows with its square: 4,000 is 128 MB).
    stability_resamples : int, default 3
        Bootstrap refits per candidate for the stability score (0 = off).
    stability_sample : int, default 10_000
        Customers the stability refits use.
    min_stability, min_segment_share, tolerance, max_noise_share : float
        The selection rule, see :mod:`segmint.segment.selection`.
    time_budget : float, optional
        Seconds for the search; candidates not started when it runs out are skipped
        (always at least one is evaluated) and the explanation says so.
    value_tier : float, optional
        Give the top ``value_tier`` share of customers by ``monetary`` (e.g. 0.02) a
        segment of their own and cluster only the others: a handful of very large
        spenders otherwise stretch the scale every other customer is clustered on, and
        retailers treat them apart anyway. The threshold is fixed at fit
        (:attr:`tier_threshold_`; customers above it join the tier at prediction too);
        the transform, the candidates and their scores use the other customers only.
        Needs ``monetary`` among the features.
    random_state : int, numpy.random.RandomState or None, default 0
        As in scikit-learn: an int gives the same segments every time; a
        ``RandomState`` (or None, NumPy's global one) gives one draw per fit, so a fresh
        ``RandomState(seed)`` gives the same segments. The seed the fit used is
        :attr:`random_state_`; a saved model stores it as its ``random_state``.
    verbose : bool, default False
        Show a progress bar on stderr during the search.
    """

    def __init__(
        self,
        *,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        algorithm: str | Sequence[str] = "auto",
        n_clusters: int | str = "auto",
        k_range: tuple[int, int] = (2, 10),
        log: str | bool | Sequence[str] = "auto",
        skew_threshold: float = 1.0,
        clip: float | None = None,
        scaler: str = "standard",
        encoding: str = "onehot",
        pca: int | float | None = None,
        algorithm_params: dict[str, dict[str, Any]] | None = None,
        sample_size: int | str = "auto",
        selection_sample: int = 50_000,
        silhouette_sample: int = 4_000,
        stability_resamples: int = 3,
        stability_sample: int = 10_000,
        min_stability: float = 0.6,
        min_segment_share: float = 0.02,
        tolerance: float = 0.25,
        max_noise_share: float = 0.25,
        time_budget: float | None = None,
        value_tier: float | None = None,
        random_state: int | np.random.RandomState | None = 0,
        verbose: bool = False,
    ) -> None:
        self.features = features
        self.categorical = categorical
        self.algorithm = algorithm
        self.n_clusters = n_clusters
        self.k_range = k_range
        self.log = log
        self.skew_threshold = skew_threshold
        self.clip = clip
        self.scaler = scaler
        self.encoding = encoding
        self.pca = pca
        self.algorithm_params = algorithm_params
        self.sample_size = sample_size
        self.selection_sample = selection_sample
        self.silhouette_sample = silhouette_sample
        self.stability_resamples = stability_resamples
        self.stability_sample = stability_sample
        self.min_stability = min_stability
        self.min_segment_share = min_segment_share
        self.tolerance = tolerance
        self.max_noise_share = max_noise_share
        self.time_budget = time_budget
        self.value_tier = value_tier
        self.random_state = random_state
        self.verbose = verbose

    def __setstate__(self, state: dict[str, Any]) -> None:
        """Restore a saved Segmenter; parameters added since it was saved get their
        defaults (``max_noise_share``), so older model bundles still load and explain."""
        state.setdefault("max_noise_share", 0.25)
        super().__setstate__(state)

    # -- parameters ----------------------------------------------------------------
    def _algorithms(self) -> list[Algorithm]:
        names: Sequence[str]
        if self.algorithm == "auto":
            names = DEFAULT_SEARCH
        elif isinstance(self.algorithm, str):
            names = [self.algorithm]
        else:
            names = list(self.algorithm)
        if not names:
            raise ConfigError("algorithm=[] names no algorithm", hint="e.g. algorithm='kmeans'")
        unknown = set(self.algorithm_params or {}) - set(ALGORITHMS)
        if unknown:
            get_algorithm(sorted(unknown)[0])  # raises with the closest name
        for alg_name, params in (self.algorithm_params or {}).items():
            check_params(alg_name, params)
        algorithms = [get_algorithm(n) for n in dict.fromkeys(names)]
        searched = {a.name for a in algorithms}
        unused = sorted(get_algorithm(n).name for n in self.algorithm_params or {})
        unused = [n for n in unused if n not in searched]
        if unused:
            # parameters for an algorithm left out of the search were dropped without a
            # word (a segmint.toml may keep them for another run: a warning, not an error)
            log.warning(
                "algorithm_params for %s not used: %s not searched (algorithm: %s)",
                ", ".join(unused),
                "it is" if len(unused) == 1 else "they are",
                ", ".join(sorted(searched)),
            )
        return algorithms

    def _ks(self) -> list[int]:
        if self.n_clusters == "auto":
            try:
                lo, hi = (int(v) for v in self.k_range)
            except (TypeError, ValueError):
                raise ConfigError(
                    f"k_range={self.k_range!r} is not a pair of integers", hint="e.g. (2, 10)"
                ) from None
            if not 2 <= lo <= hi:
                raise ConfigError(
                    f"k_range={self.k_range!r}: need 2 <= smallest <= largest",
                    hint="e.g. k_range=(2, 10)",
                )
            return list(range(lo, hi + 1))
        if isinstance(self.n_clusters, bool) or not isinstance(self.n_clusters, int | np.integer):
            raise ConfigError(
                f"n_clusters={self.n_clusters!r} is neither 'auto' nor an integer",
                hint="e.g. n_clusters=4 or n_clusters='auto'",
            )
        if self.n_clusters < 1:
            raise ConfigError(
                f"n_clusters={self.n_clusters} is below 1",
                hint="use 2 or more (1 makes one segment, which is useful only beside a "
                "value tier)",
            )
        return [int(self.n_clusters)]

    def _sample_size(self) -> int:
        if self.sample_size == "auto":
            return default_sample_size()
        if isinstance(self.sample_size, bool) or not isinstance(self.sample_size, int):
            raise ConfigError(f"sample_size={self.sample_size!r} is neither 'auto' nor an integer")
        if self.sample_size < 10:
            raise ConfigError(f"sample_size={self.sample_size} is too small (10 or more)")
        return int(self.sample_size)

    def _seed(self) -> int:
        """The integer seed of this fit, from ``random_state`` as scikit-learn reads it
        (``check_random_state``): an int is the seed itself (results as before: the same
        int gives the same segments); a ``numpy.random.RandomState`` or None (NumPy's
        global RandomState) gives one draw of it, so the same fresh
        ``RandomState(seed)`` gives the same segments while a shared one advances, as
        in scikit-learn. Every random step of the fit (samples, initialisations,
        bootstraps, the score's sample) derives from this one number, kept as
        :attr:`random_state_` (a RandomState cannot be saved as JSON or trusted by
        skops; the seed can, and refitting with it reproduces the fit)."""
        rs = self.random_state
        if rs is None or isinstance(rs, np.random.RandomState):
            return int(check_random_state(rs).randint(np.iinfo(np.int32).max))
        if isinstance(rs, bool) or not isinstance(rs, numbers.Integral) or not 0 <= rs < 2**32:
            raise ConfigError(
                f"random_state={rs!r} is not an integer from 0 to 2**32 - 1, a "
                "numpy.random.RandomState or None",
                hint="e.g. random_state=0 (the same number gives the same segments)",
            )
        return int(rs)

    def _tier_share(self) -> float | None:
        v = self.value_tier
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int | float | np.floating) or not 0 < v < 0.5:
            raise ConfigError(
                f"value_tier={v!r} is not a share of customers between 0 and 0.5",
                hint="e.g. value_tier=0.02 for the top 2% by monetary value, or None",
            )
        return float(v)

    def _split_tier(self, frame: pd.DataFrame) -> np.ndarray | None:
        """At fit: the threshold of the value tier and which customers are in it."""
        share = self._tier_share()
        self.tier_threshold_ = None
        if share is None:
            return None
        money = _monetary(frame, "value_tier")
        if not np.isfinite(money).all():
            raise DataQualityError(
                "value_tier: 'monetary' has missing or non-numeric values",
                hint="fill or drop those customers first",
            )
        # the value below which (1 - share) of customers lie; customers strictly above
        # it form the tier, so ties at the threshold stay in the clustered part
        threshold = float(np.quantile(money, 1.0 - share, method="lower"))
        tier = money > threshold
        if not tier.any():
            raise DataQualityError(
                f"value_tier={share:g}: no customer spends more than the "
                f"{share_text(1 - share)} quantile ({threshold:,.2f}); the top values are tied",
                hint="use a larger value_tier, or none",
                code="empty_tier",
            )
        self.tier_threshold_ = threshold
        return tier

    def _with_tier(self, raw: np.ndarray, money: Any) -> np.ndarray:
        """Raw labels with the customers above the tier threshold moved to the tier."""
        if getattr(self, "tier_threshold_", None) is None:
            return raw
        if money is None:
            raise ConfigError(
                "this model has a value tier: its predictions need the customers' monetary values",
                hint=f"pass monetary (the tier threshold is {self.tier_threshold_:,.2f})",
            )
        money = np.asarray(money, dtype=float)
        return np.where(money > self.tier_threshold_, self.tier_raw_, raw)

    def _money(self, frame: pd.DataFrame) -> np.ndarray | None:
        if getattr(self, "tier_threshold_", None) is None:
            return None
        return _monetary(frame, "a model with a value tier")

    def _params(self, alg: Algorithm) -> dict[str, Any]:
        return dict((self.algorithm_params or {}).get(alg.name, {}))

    # -- fitting -------------------------------------------------------------------
    def _fit_one(
        self, alg: Algorithm, k: int | None, X: np.ndarray, seed: int | None, sample_size: int
    ) -> tuple[Any, Any, np.ndarray, bool]:
        """Fit ``alg`` on ``X`` (a sample of it when quadratic); labels for all of ``X``."""
        rng = np.random.default_rng(seed)
        sampled = alg.quadratic and len(X) > sample_size
        fit_X = X[np.sort(rng.choice(len(X), sample_size, replace=False))] if sampled else X
        est = build_estimator(alg, k, fit_X, seed, self._params(alg))
        try:
            fit_lab = fit_labels(est, fit_X)
        except ValueError as exc:
            # a density method takes no number of segments (k is the search's first, not
            # used): "HDBSCAN could not be fitted with 2 segments ... try fewer segments"
            # sent the user to an option that changes nothing
            name = _NAMES.get(alg.name, alg.name)
            what = f"with {count(k, 'segment')}" if alg.uses_k and k else "with its parameters"
            hint = (
                "try fewer segments, another algorithm, or check the features"
                if alg.uses_k
                else f"{name} finds its own number of segments: give it more customers, "
                f"other parameters (algorithm_params = {{{alg.name} = {{...}}}}), or use "
                "another algorithm (kmeans, gmm)"
            )
            raise DataQualityError(
                f"{name} could not be fitted {what} on {len(fit_X):,} customers: {exc}",
                hint=hint,
                code="fit_failed",
            ) from exc
        if alg.can_predict:
            assigner = None
            labels = np.asarray(est.predict(X)) if sampled else fit_lab
        else:
            assigner = make_assigner(est, fit_X, fit_lab)
            # every customer's label, the fitted ones' too, comes from the rule that
            # assigns new customers, so scoring the training customers gives the same
            # segments: DBSCAN's own labels put a border point within eps of two clusters
            # in the one that reached it first, the rule in the nearest core point's
            labels = assigner.predict(X)
        return est, assigner, labels, sampled

    def _refit_predict(
        self, alg: Algorithm, k: int | None, sample_size: int
    ) -> Callable[[np.ndarray, np.ndarray, int], np.ndarray]:
        def run(train: np.ndarray, evaluate: np.ndarray, seed: int) -> np.ndarray:
            est, assigner, _, _ = self._fit_one(alg, k, train, seed, sample_size)
            if assigner is not None:
                return assigner.predict(evaluate)
            return np.asarray(est.predict(evaluate))

        return run

    def fit(self, X: Any, y: Any = None, *, progress: Progress | None = None) -> Segmenter:
        """Transform the customers, search the candidates, refit the winner on everyone.

        scikit-learn's convergence warnings (e.g. K-Means finding fewer distinct clusters
        than asked on customers with few distinct values) are not printed once per
        candidate: :attr:`convergence_warnings_` keeps them and :meth:`explain` says so.
        Other warnings pass through.

        Parameters
        ----------
        X : DataFrame, CustomerFeatures or array
            One row per customer.
        progress : callable, optional
            ``progress(done, total, description)`` after each candidate (the CLI shows a
            bar with it); default a rich bar when ``verbose`` is on.
        """
        # one BLAS thread while fitting: the matrices are a few columns wide, so threads
        # only wait on each other, and beside other work on the machine they wait long
        # (three Gaussian mixtures of 100,000 customers: 1.2x faster on an idle 2-core
        # machine, 1.7x on a busy one; benchmarks/threads.py). OpenMP (K-Means) keeps
        # every core.
        with (
            warnings.catch_warnings(record=True) as caught,
            threadpool_limits(limits=1, user_api="blas"),
        ):
            warnings.simplefilter("always", ConvergenceWarning)
            self._fit(X, progress)
        for w in caught:
            if not issubclass(w.category, ConvergenceWarning):
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        self.convergence_warnings_ = sorted(
            {str(w.message) for w in caught if issubclass(w.category, ConvergenceWarning)}
        )
        return self

    def _fit(self, X: Any, progress: Progress | None) -> None:
        t0 = time.perf_counter()
        seed = self._seed()
        algorithms = self._algorithms()
        ks = self._ks()
        sample_size = self._sample_size()
        frame = as_frame(X, owner=type(self).__name__)
        tier = self._split_tier(frame)
        full = frame
        if tier is not None:
            frame = frame[~tier]
        self.transform_ = CustomerTransform(
            features=self.features,
            categorical=self.categorical,
            log=self.log,
            skew_threshold=self.skew_threshold,
            clip=self.clip,
            scaler=self.scaler,
            encoding=self.encoding,
            pca=self.pca,
            random_state=seed,
        ).fit(frame)
        self.transform_.from_array_ = not is_table(X)
        if tier is not None and "monetary" not in self.transform_.features_:
            raise ConfigError(
                "value_tier needs 'monetary' among the features segmented on "
                f"(features: {', '.join(self.transform_.features_)})",
                hint="add monetary to the features, or drop value_tier",
            )
        Z = self.transform_.transform(frame)
        n = len(Z)
        self.n_features_in_ = self.transform_.n_features_in_
        self.feature_names_in_ = self.transform_.feature_names_in_
        if n < 3:
            raise DataQualityError(
                f"cannot segment {n} customers (n_samples={n}): at least 3 are needed",
                hint=_FEW_CUSTOMERS_HINT,
            )
        # a search (n_clusters="auto") tries only the k its customers allow: the default
        # k_range (2, 10) on 8 customers failed on k = 9 although 2 to 7 could be tried
        self.k_range_capped_ = None
        if self.n_clusters == "auto" and ks[0] >= n and any(alg.uses_k for alg in algorithms):
            # the run's --k-min 6 on 6 customers failed as "K-Means could not be fitted
            # with 7 segments ... try fewer segments", naming neither the option nor why
            raise DataQualityError(
                f"cannot search {ks[0]} to {ks[-1]} segments (k_range) of {n} customers: "
                f"at most {n - 1} segments can be searched",
                hint=f"lower the smallest number of segments (--k-min, k_range) to at most "
                f"{n - 1}, or segment more customers",
            )
        if self.n_clusters == "auto" and ks[-1] >= n and ks[0] < n:
            self.k_range_capped_ = (ks[0], n - 1)
            log.warning(
                "%d customers: segment counts of %d to %d searched instead of %d to %d",
                n,
                ks[0],
                n - 1,
                ks[0],
                ks[-1],
            )
            ks = [k for k in ks if k < n]
        master = np.random.default_rng(seed)
        # the search runs on the customers themselves up to selection_sample, so a single
        # candidate fitted on everyone is exactly the final model (and equals a plain
        # scikit-learn fit with the same seed)
        if n > self.selection_sample:
            sel_idx = np.sort(master.choice(n, self.selection_sample, replace=False))
            Zs = Z[sel_idx]
        else:
            Zs = Z
        stab_n = min(len(Zs), self.stability_sample)
        stab_idx = (
            np.sort(master.choice(len(Zs), stab_n, replace=False)) if stab_n < len(Zs) else None
        )
        sil_n = min(len(Zs), self.silhouette_sample)
        sil_rows = (
            np.sort(master.choice(len(Zs), sil_n, replace=False))
            if sil_n < len(Zs)
            else np.arange(len(Zs))
        )
        distances = (sil_rows, pairwise_distances(Zs[sil_rows]))
        # where the selection's metrics were measured: a silhouette on 4,000 of 19,945
        # customers differs from scikit-learn's on all of them (FLO: 0.285 vs 0.287),
        # and the report must say so for its figures to be checked
        self.scored_on_ = {
            "customers": n,
            "candidates_fitted_on": len(Zs),
            "silhouette_customers": int(sil_n),
        }
        candidates = [
            (alg, k)
            for k in ks
            for alg in algorithms
            if alg.uses_k or k == ks[0]  # density methods: once, whatever k
        ]
        total = len(candidates)
        bar = None
        if progress is None and self.verbose:
            bar = progress = _RichProgress()
        rows: list[dict[str, Any]] = []
        fitted: dict[int, tuple[Any, Any, np.ndarray, bool]] = {}
        skipped = 0
        try:
            for i, (alg, k) in enumerate(candidates):
                elapsed = time.perf_counter() - t0
                if self.time_budget is not None and rows and elapsed > self.time_budget:
                    skipped = total - i
                    log.warning(
                        "time budget of %ss used up: %d of %d candidates skipped",
                        self.time_budget,
                        skipped,
                        total,
                    )
                    break
                label = f"{_NAMES.get(alg.name, alg.name)}" + (f", k={k}" if alg.uses_k else "")
                if progress:
                    progress(i, total, f"fitting {label}")
                c0 = time.perf_counter()
                est, assigner, labels, sampled = self._fit_one(alg, k, Zs, seed, sample_size)
                fit_s = time.perf_counter() - c0
                metrics = score_labels(
                    Zs,
                    labels,
                    silhouette_sample=self.silhouette_sample,
                    seed=seed,
                    model=est if alg.family == "mixture" and not sampled else None,
                    distances=distances,
                )
                s0 = time.perf_counter()
                if self.stability_resamples > 0 and metrics["n_segments"] >= 1:
                    sx = Zs if stab_idx is None else Zs[stab_idx]
                    ref = labels if stab_idx is None else labels[stab_idx]
                    stab = stability(
                        self._refit_predict(alg, k, sample_size),
                        sx,
                        ref,
                        n_resamples=int(self.stability_resamples),
                        rng=np.random.default_rng(_candidate_seed(seed, alg.name, k)),
                        # in threads only where no refit enters scikit-learn's joblib
                        # wrapper, which is not thread-safe before Python 3.14 (see
                        # stability); K-Means and mixtures predict themselves without it
                        threads=assigner is None and type(est) in _JOBLIB_FREE,
                    )
                else:
                    stab = float("nan")
                rows.append(
                    {
                        "algorithm": alg.name,
                        "family": alg.family,
                        "k": k if alg.uses_k else np.nan,
                        **metrics,
                        "stability": stab,
                        "sampled": sampled,
                        "fit_seconds": round(fit_s, 3),
                        "stability_seconds": round(time.perf_counter() - s0, 3),
                    }
                )
                fitted[len(rows) - 1] = (est, assigner, labels, sampled)
                if progress:
                    progress(i + 1, total, f"fitted {label}")
        finally:
            if bar is not None:
                bar.stop()
        table = pd.DataFrame(rows)
        table["n_segments"] = table["n_segments"].astype(int)
        knees = elbows(table)
        table["elbow"] = [
            bool(r.k == knees.get(r.algorithm)) if r.k == r.k else False for r in table.itertuples()
        ]
        rule = SelectionRule(
            self.min_stability, self.min_segment_share, self.tolerance, self.max_noise_share
        )
        try:
            # one segment is accepted only when asked for (n_clusters=1, e.g. beside a value
            # tier): a density method that ignores the requested k and finds one is an error
            fixed = self.n_clusters == 1 and any(a.uses_k for a in algorithms)
            if fixed and table["n_segments"].iloc[0] < 1:
                raise ValueError("every customer left unassigned")
            pos, table, note = choose(table, rule, fixed=fixed)
        except ValueError:
            raise DataQualityError(
                "no candidate segmentation found two or more segments "
                f"({', '.join(a.name for a in algorithms)})"
                + _density_reason(table, self.max_noise_share),
                hint="the customers may be too few or too alike; try another algorithm, "
                "other features, or (for density methods) other parameters",
                code="no_segments",
            ) from None
        # the metrics at the 10 significant digits they are ranked at: a silhouette of
        # the same partition could differ in its last bit between runs (threaded sums),
        # so selection.csv and the report's chart differed for the same data and seed
        floats = table.select_dtypes("float").columns
        table[floats] = table[floats].map(_significant)
        self.selection_ = table
        self.elbows_ = knees
        self.selection_note_ = note
        self.candidates_skipped_ = skipped
        self.n_candidates_ = total
        chosen = table.iloc[pos]
        alg = get_algorithm(str(chosen["algorithm"]))
        k = None if chosen["k"] != chosen["k"] else int(chosen["k"])
        self.algorithm_ = alg.name
        self.k_ = k
        # the final model: refit on every customer unless the search already did that
        if Zs is Z:
            est, assigner, raw, sampled = fitted[pos]
        else:
            if progress:
                progress(total, total, f"refitting {_NAMES.get(alg.name, alg.name)} on {n:,}")
            est, assigner, raw, sampled = self._fit_one(alg, k, Z, seed, sample_size)
        self.model_ = est
        self.assigner_ = assigner
        self.sampled_ = bool(sampled)
        self.sample_size_ = min(n, sample_size) if alg.quadratic else n
        self.n_clustered_ = n
        raw = np.asarray(raw).astype(int, copy=False)
        # a raw label no model output can take: above every component's number
        self.tier_raw_ = int(max(raw.max(initial=NOISE), (k or 0) - 1)) + 1
        if tier is not None:
            Z = self.transform_.transform(full)
            # the range new customers are checked against (out_of_range) is that of
            # every training customer: a big spender is not an extrapolation
            block = self.transform_._numeric_block(full, "fit")
            self.transform_.training_min_ = block.min(axis=0)
            self.transform_.training_max_ = block.max(axis=0)
            all_raw = np.full(len(full), self.tier_raw_, dtype=int)
            all_raw[~tier] = raw
            raw = all_raw
        self._set_segments(Z, raw)
        self.tier_segment_ = (
            self.label_map_[self.tier_raw_] if self.tier_threshold_ is not None else None
        )
        self.n_customers_ = len(raw)
        self.random_state_ = seed
        self.fit_seconds_ = round(time.perf_counter() - t0, 3)

    def _set_segments(self, Z: np.ndarray, raw: np.ndarray) -> None:
        """Number segments by size (0 = largest) and keep their centres."""
        uniq, counts = np.unique(raw[raw != NOISE], return_counts=True)
        centres = np.array([Z[raw == u].mean(axis=0) for u in uniq])
        order = sorted(
            range(len(uniq)), key=lambda i: (-counts[i], tuple(np.round(centres[i], 12)))
        )
        self.raw_labels_ = uniq[order]
        self.label_map_ = {int(uniq[i]): new for new, i in enumerate(order)}
        self.cluster_centers_ = centres[order]
        self.n_segments_ = len(uniq)
        self.labels_ = self._map(raw, Z)
        self.has_noise_ = bool((self.labels_ == NOISE).any())
        sizes = np.bincount(self.labels_[self.labels_ != NOISE], minlength=self.n_segments_)
        self.segment_sizes_ = {int(i): int(c) for i, c in enumerate(sizes)}
        if self.has_noise_:
            self.segment_sizes_[NOISE] = int((self.labels_ == NOISE).sum())

    def _map(self, raw: np.ndarray, Z: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw).astype(int, copy=False)
        keys = np.fromiter(self.label_map_.keys(), int, len(self.label_map_))
        values = np.fromiter(self.label_map_.values(), int, len(self.label_map_))
        order = np.argsort(keys)
        keys, values = keys[order], values[order]
        if len(keys):
            pos = np.minimum(np.searchsorted(keys, raw), len(keys) - 1)
            found = keys[pos] == raw
            out = np.where(found, values[pos], NOISE)
        else:
            found = np.zeros(len(raw), dtype=bool)
            out = np.full(len(raw), NOISE, dtype=int)
        # e.g. a mixture component that got no training customer: nearest segment
        unknown = ~found & (raw != NOISE)
        if unknown.any():
            d = euclidean(Z[unknown], self.cluster_centers_)
            out[unknown] = d.argmin(axis=1)
        return out

    # -- applying ------------------------------------------------------------------
    def _raw_predict(self, Z: np.ndarray) -> np.ndarray:
        if self.assigner_ is not None:
            return self.assigner_.predict(Z)
        if type(self.model_) in (KMeans, MiniBatchKMeans):
            # what their predict() computes (the nearest centre), without its input
            # checks and thread-pool set-up (most of a one-customer prediction)
            return euclidean(Z, self.model_.cluster_centers_).argmin(axis=1)
        return np.asarray(self.model_.predict(Z))

    def predict(self, X: Any) -> np.ndarray:
        """Segment id of each customer (-1 = unassigned / outlier for density methods)."""
        check_is_fitted(self, "model_")
        frame = self.transform_._frame(X, type(self).__name__)
        money = self._money(frame)
        Z = self.transform_.transform(frame)
        return self._map(self._with_tier(self._raw_predict(Z), money), Z)

    def fit_predict(self, X: Any, y: Any = None, **kwargs: Any) -> np.ndarray:
        """``fit(X)`` then the segment of every customer of ``X``."""
        return self.fit(X, **kwargs).labels_

    def transform(self, X: Any) -> np.ndarray:
        """Distance of each customer to each segment's centre, in the transformed space."""
        check_is_fitted(self, "model_")
        Z = self.transform_.transform(self.transform_._frame(X, type(self).__name__))
        return euclidean(Z, self.cluster_centers_)

    @property
    def _n_features_out(self) -> int:
        """Columns of :meth:`transform`: one per segment (scikit-learn's
        ``ClassNamePrefixFeaturesOutMixin`` reads it; an attribute error until fitted)."""
        return int(self.cluster_centers_.shape[0])

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the columns :meth:`transform` returns, as scikit-learn's ``KMeans``
        names its distances (``kmeans0, kmeans1, ...``): ``segmenter0, segmenter1, ...``,
        column ``i`` being the distance to segment ``i``'s centre. With them
        ``set_output(transform="pandas")`` (or ``"polars"``) and a ``Pipeline`` name
        the columns. ``input_features`` is only checked against :attr:`feature_names_in_`.
        """
        return super().get_feature_names_out(input_features)

    def score(self, X: Any, y: Any = None) -> float:
        """How well the segments separate the customers of ``X``: higher is better.

        The mean silhouette (-1 to 1) of the segments this model assigns to ``X``
        (:meth:`predict`), measured where the clustering sees the customers (after
        :attr:`transform_`: log, clip, scale, encode, PCA). It is the silhouette the
        model selection ranks, so it compares numbers of segments and algorithms
        (``GridSearchCV(Segmenter(...), {"n_clusters": [3, 4, 5]})`` needs no
        ``scoring=``), but only over one transform: ``features``, ``log``, ``scaler``
        or ``pca`` change the space it is measured in.

        Customers left unassigned (-1, density methods) count 0, as scikit-learn counts
        a customer alone in its segment, so leaving the hard cases out cannot raise the
        score: it is the selection's silhouette times the share assigned. Customers of a
        value tier count as their segment. Above ``silhouette_sample`` customers a
        sample of that many is scored, drawn from the fit's seed (:attr:`random_state_`),
        so the same model and data give the same score. 0 when fewer than two segments
        are left to compare. ``y`` is ignored.

        Examples
        --------
        >>> from sklearn.datasets import make_blobs
        >>> X, _ = make_blobs(n_samples=300, centers=3, random_state=0)
        >>> seg = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(X)
        >>> round(seg.score(X), 2)
        0.48
        """
        check_is_fitted(self, "model_")
        frame = self.transform_._frame(X, type(self).__name__)
        money = self._money(frame)
        Z = self.transform_.transform(frame)
        labels = self._map(self._with_tier(self._raw_predict(Z), money), Z)
        seed = getattr(self, "random_state_", None)  # models saved before it: their int
        if seed is None:
            seed = self.random_state if isinstance(self.random_state, numbers.Integral) else 0
        return silhouette_with_unassigned(
            Z, labels, sample_size=int(self.silhouette_sample), seed=int(seed)
        )

    def embed(self, X: Any) -> np.ndarray:
        """The customers as the clustering sees them (after log, clip, scale, encode, PCA)."""
        check_is_fitted(self, "transform_")
        return self.transform_.transform(self.transform_._frame(X, type(self).__name__))

    def predict_details(self, X: Any) -> pd.DataFrame:
        """Segment, distance to its centre and a confidence in [0, 1] per customer.

        Confidence: for mixtures, the probability of the assigned segment; otherwise
        ``1 - d / d_other`` with d the distance to the assigned segment's centre and
        d_other to the nearest other centre (0 = on the border or nearer another segment,
        as a hierarchical or spectral segment's customer can be; 1 = at the centre);
        NaN for noise.
        """
        check_is_fitted(self, "model_")
        frame = self.transform_._frame(X, type(self).__name__)
        money = self._money(frame)
        Z = self.transform_.transform(frame)
        labels, own, conf = self.details_from_matrix(Z, money)
        return pd.DataFrame({"segment_id": labels, "distance": own, "confidence": conf})

    def details_from_matrix(
        self, Z: np.ndarray, monetary: Any = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Segment, distance and confidence (as :meth:`predict_details`) of customers
        already transformed (``transform_.transform`` or ``transform_numeric``);
        ``monetary`` (raw values) is needed when the model has a value tier."""
        tiered = getattr(self, "tier_threshold_", None) is not None
        labels = self._map(self._with_tier(self._raw_predict(Z), monetary), Z)
        dist = euclidean(Z, self.cluster_centers_)
        own = np.where(
            labels >= 0, dist[np.arange(len(Z)), np.maximum(labels, 0)], dist.min(axis=1)
        )
        if hasattr(self.model_, "predict_proba") and self.assigner_ is None:
            proba = self.model_.predict_proba(Z)
            conf = np.zeros(len(Z))
            comps = [raw for raw in self.label_map_ if raw < proba.shape[1]]
            for raw in comps:
                conf = np.where(labels == self.label_map_[raw], proba[:, raw], conf)
            conf = conf / np.maximum(proba[:, comps].sum(axis=1), 1e-300)
        elif dist.shape[1] >= 2:
            # against the nearest *other* centre: hierarchical, spectral and density
            # segments are not always the nearest centre, and then the customer sits
            # closer to another segment (confidence 0), not "1 - d1/d2" of that other one
            other = dist.copy()
            other[np.arange(len(Z)), np.maximum(labels, 0)] = np.inf
            conf = 1.0 - own / np.maximum(other.min(axis=1), 1e-300)
        else:
            conf = np.ones(len(Z))
        conf = np.where(labels == NOISE, np.nan, np.clip(conf, 0.0, 1.0))
        if tiered:
            conf = np.where(labels == self.tier_segment_, 1.0, conf)  # a rule, not a guess
        return labels, own, conf

    # -- reporting -----------------------------------------------------------------
    def write_selection(self, path: str | Path) -> Path:
        """Write the selection table (every candidate, every metric) as CSV, atomically."""
        check_is_fitted(self, "selection_")
        with atomic_path(path) as tmp:
            self.selection_.to_csv(tmp, index=False)
        return Path(path)

    def segment_notes(self) -> dict[int, str]:
        """Segment id -> what defines it beyond the clustering (the value tier), for the
        profile's description; empty when every segment is a cluster."""
        check_is_fitted(self, "model_")
        tier = getattr(self, "tier_segment_", None)
        if tier is None:
            return {}
        return {
            tier: f"value tier: the top {share_text(self.value_tier)} of customers by monetary "
            f"value (above {self.tier_threshold_:,.2f})"
        }

    def explain(self) -> str:
        """A short paragraph: which model won, by which rule, and what came second."""
        check_is_fitted(self, "selection_")
        if self.selection_ is None:
            from segmint.errors import NotFittedError

            raise NotFittedError(
                "this model was loaded from a bundle, which does not keep the selection table",
                hint="its explanation is in SegmentModel.metadata['model']['explanation']",
            )
        t = self.selection_
        won = t[t["chosen"]].iloc[0]
        name = _NAMES.get(self.algorithm_, self.algorithm_)
        algs = list(dict.fromkeys(t["algorithm"]))
        ks = t["k"].dropna()
        searched = (
            f"{len(t)} candidate segmentation{'s' if len(t) != 1 else ''} "
            f"({', '.join(_NAMES.get(a, a) for a in algs)}"
            + (
                (
                    f"; {int(ks.min())} to {int(ks.max())} segments"
                    if ks.min() != ks.max()
                    else f"; {count(int(ks.min()), 'segment')}"
                )
                if len(ks)
                else ""
            )
            + ")"
        )
        clustered = getattr(self, "n_clustered_", self.n_customers_)
        tier = getattr(self, "tier_segment_", None)
        rule = (
            # DBSCAN's rule (make_assigner): only its core customers pass their segment on
            "the segment of the nearest sampled core customer within eps, or unassigned beyond it"
            if self.algorithm_ == "dbscan"
            # HDBSCAN's (ReachabilityAssigner): an outlier the model would leave out is
            # not given the segment of whichever sampled customer happens to be nearest
            else "the segment of the sampled customer nearest in HDBSCAN's mutual "
            "reachability, or unassigned beyond every segment's reach"
            if isinstance(self.assigner_, ReachabilityAssigner)
            # OPTICS's (OpticsAssigner): the same, by its reachability from a fitted customer
            else "the segment of the sampled customer with the smallest OPTICS reachability "
            "to it, or unassigned beyond the largest reachability inside every segment"
            if isinstance(self.assigner_, OpticsAssigner)
            else "the nearest sampled customer"
        )
        where = (
            f"fitted on a sample of {self.sample_size_:,} of {clustered:,} customers "
            f"and extended to the rest by {rule}"
            if self.sampled_
            else f"fitted on all {clustered:,} customers"
            + (" outside the value tier" if tier is not None else "")
        )
        parts = [
            f"Chose {name} with {count(self.n_segments_ - (tier is not None), 'segment')}"
            + (" plus an unassigned/outlier group" if self.has_noise_ else "")
            + (" plus a value tier" if tier is not None else "")
            + f" ({where}) out of {searched}."
        ]
        found = self.n_segments_ - (tier is not None)
        # (models saved before k_range_capped_ existed have none)
        lo, hi = (int(v) for v in (getattr(self, "k_range_capped_", None) or self.k_range))
        if self.k_ is None and self.n_clusters != "auto":
            # a density method finds its own number: say that the one asked for was not used
            parts.append(
                f"{name} finds its own number of segments, so the {self.n_clusters} asked "
                "for (n_clusters, --k) was not used for it."
            )
        elif self.k_ is None and not lo <= found <= hi:
            # "3 to 5 segments" searched, and 7 chosen without a word
            parts.append(
                f"{name} finds its own number of segments: its {found} are outside the "
                f"{lo} to {hi} searched (k_range, --k-min/--k-max), which applies only to "
                "algorithms that take a number of segments."
            )
        if tier is not None:
            parts.append(
                f"Value tier: the top {share_text(self.value_tier)} of customers by monetary value "
                f"(above {self.tier_threshold_:,.2f}; {self.segment_sizes_[tier]:,} "
                f"customers) form segment {tier} of their own; the transform, the "
                f"candidates and their scores cover the other {clustered:,}."
            )
        if int(won.n_segments) == 1 and tier is not None:
            # one cluster beside a value tier, as the user asked (README): not a failure
            # of the selection rule, and there is no partition for the metrics to score
            # (with several algorithms, the default "auto" too, each gives that one
            # segment and the first searched is taken; the rule's text would read "the
            # winner scored nan")
            parts.append(
                "One segment beside the value tier, as asked (n_clusters = 1): silhouette, "
                "Davies–Bouldin and Calinski–Harabasz need two segments to compare, so "
                f"there are none; stability {_fmt('stability', won.stability)}."
                + (
                    f" Every algorithm searched gives that one segment; {name}, the first "
                    "searched, is used."
                    if len(t) > 1
                    else ""
                )
            )
        elif len(t) == 1:
            parts.append(
                f"It was the only candidate: silhouette {_fmt('silhouette', won.silhouette)}, "
                f"Davies–Bouldin {_fmt('davies_bouldin', won.davies_bouldin)}, "
                f"Calinski–Harabasz {_fmt('calinski_harabasz', won.calinski_harabasz)}, "
                f"stability {_fmt('stability', won.stability)}."
            )
            if not won.eligible and won.excluded_because:
                parts.append(
                    f"Warning: it fails the selection rule ({won.excluded_because}); it is "
                    "used only because nothing else was tried: try other algorithms or "
                    "numbers of segments."
                )
        else:
            n_elig = int(t["eligible"].sum())
            thresholds = (
                f"stability of at least {self.min_stability:g}, no segment under "
                f"{self.min_segment_share:.0%} of customers and at most "
                f"{self.max_noise_share:.0%} unassigned"
            )
            ranking = (
                "the best mean rank over silhouette, Calinski–Harabasz and Davies–Bouldin, "
                f"preferring fewer segments within {self.tolerance:g} of the best"
            )
            if n_elig:
                parts.append(
                    f"Rule: among the {count(n_elig, 'candidate')} with {thresholds}, {ranking}."
                )
            else:
                # "Rule: among the 0 candidates with ..." read as if a rule had chosen,
                # and a lone failing candidate got a warning that several did not
                parts.append(
                    f"Warning: no candidate passed the selection rule ({thresholds}), so "
                    f"every candidate with two or more segments competed on {ranking}: try "
                    "other algorithms or numbers of segments."
                )
            ranks = ", ".join(
                f"{_METRIC_LABELS[m]} {_fmt(m, won[m])} ({_place(t, m, won)})"
                for m in RANKED_METRICS
                if f"rank_{m}" in t.columns and won[f"rank_{m}"] == won[f"rank_{m}"]
            )
            parts.append(
                f"The winner scored {won.score:.2f}: {ranks}; stability "
                f"{_fmt('stability', won.stability)}"
                + (
                    " (candidates tied on a metric count the mean of the places they share)."
                    if "tied " in ranks
                    else "."
                )
            )
            others = t[~t["chosen"] & t["score"].notna()].sort_values("score", kind="stable")
            if len(others):
                ru = others.iloc[0]
                ru_name = _NAMES.get(ru.algorithm, ru.algorithm)
                ru_k = f"{int(ru.n_segments)} segments"
                if ru.score <= won.score + self.tolerance and ru.n_segments > won.n_segments:
                    why = "it has more segments and scored within the tolerance"
                elif ru.score <= won.score:
                    # same segments and the same score: the order of the search decided
                    why = (
                        "it tied with the winner on score and number of segments, and "
                        "the winner comes first in the search order"
                    )
                else:
                    why = "it scored worse"
                parts.append(
                    f"Runner-up: {ru_name} with {ru_k} (score {ru.score:.2f}; silhouette "
                    f"{_fmt('silhouette', ru.silhouette)}, stability "
                    f"{_fmt('stability', ru.stability)}); not chosen because {why}."
                )
            below = t[~t["eligible"] & (t["excluded_because"] != "")]
            # a candidate below the thresholds that still has a score competed (none
            # passed them); "Excluded: 6 for stability below 0.6" after "every candidate
            # competed" contradicted the note and named the winner among the excluded
            for rows, lead in (
                (below[below["score"].isna()], "Excluded: "),
                (
                    below[below["score"].notna()],
                    "Below the thresholds, yet competing as none passed them: ",
                ),
            ):
                if len(rows):
                    counts = rows["excluded_because"].value_counts()
                    parts.append(
                        lead + "; ".join(f"{c} for {reason}" for reason, c in counts.items()) + "."
                    )
        knee = self.elbows_.get(self.algorithm_)
        if knee is not None:
            parts.append(
                f"The elbow of the {name} inertia curve is at {knee} segments"
                + (" (agrees)." if self.k_ == knee else ".")
            )
        capped = getattr(self, "k_range_capped_", None)
        if capped:
            parts.append(
                f"With {self.n_clustered_:,} customers only {capped[0]} to {capped[1]} "
                f"segments could be searched (k_range {tuple(self.k_range)})."
            )
        if self.candidates_skipped_:
            parts.append(
                f"The time budget of {self.time_budget:g} s ran out: "
                f"{self.candidates_skipped_} of {self.n_candidates_} candidates were not tried."
            )
        notes = getattr(self, "convergence_warnings_", [])
        if notes:
            parts.append(
                f"Note: scikit-learn warned while fitting ({len(notes)} kind"
                f'{"s" if len(notes) != 1 else ""}), e.g. "{notes[0]}"; such candidates '
                "may hold fewer distinct segments than asked."
            )
        return " ".join(parts)

    def describe(self) -> dict[str, Any]:
        """The fitted model in plain data (for reports, bundles and ``summary.json``)."""
        check_is_fitted(self, "model_")
        return {
            "algorithm": self.algorithm_,
            "n_segments": self.n_segments_,
            "has_noise": self.has_noise_,
            "k": self.k_,
            "sampled": self.sampled_,
            "sample_size": self.sample_size_,
            "n_customers": self.n_customers_,
            # the integer seed the fit used (a RandomState given as random_state is not
            # JSON): Segmenter(random_state=this) refits the same segments
            "random_state": getattr(self, "random_state_", None),
            "value_tier": (
                {
                    "share": float(self.value_tier),
                    "threshold": self.tier_threshold_,
                    "segment": self.tier_segment_,
                    "customers": self.segment_sizes_[self.tier_segment_],
                }
                if getattr(self, "tier_segment_", None) is not None
                else None
            ),
            "segment_sizes": {str(k): v for k, v in self.segment_sizes_.items()},
            # None for models fitted before it was recorded
            "scored_on": getattr(self, "scored_on_", None),
            "transform": self.transform_.describe(),
            "explanation": self.explain(),
        }


def _density_reason(table: pd.DataFrame, max_noise_share: float | None = None) -> str:
    """Why density methods found fewer than two segments, from what each one found.

    A density method splits customers only where their density drops; purchase-history
    features usually form one dense mass that thins out (Online Retail: OPTICS finds one
    cluster at every setting that leaves most customers assigned), so saying so is more
    useful than "try other parameters"."""
    found = []
    split = False  # a density method found groups but left too many customers out
    for r in table.itertuples():
        if get_algorithm(str(r.algorithm)).family != "density":
            continue
        noise = getattr(r, "noise_share", 0.0)
        split = split or int(r.n_segments) >= 2
        found.append(
            f"{_NAMES.get(str(r.algorithm), r.algorithm)} found {int(r.n_segments)} "
            f"segment{'s' if int(r.n_segments) != 1 else ''}"
            + (f" and left {noise:.0%} of the customers unassigned" if noise == noise else "")
        )
    if not found:
        return ""
    if split:
        limit = f" ({max_noise_share:.0%}, max_noise_share)" if max_noise_share else ""
        why = (
            "where a density method found two or more segments it left more customers "
            f"unassigned than the selection allows{limit}: the groups are small dense "
            "cores in one thinning mass"
        )
    else:
        why = "these customers form one dense group without such gaps"
    return (
        ": " + "; ".join(found) + ". Density methods split customers only where their "
        f"density drops, and {why} (common for recency, frequency and spend); a "
        "partitioning algorithm (kmeans, gmm) divides such a group"
    )
