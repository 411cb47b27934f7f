"""The Segmenter: scikit-learn compatibility, transforms, every algorithm, model selection."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.datasets import make_blobs
from sklearn.exceptions import NotFittedError
from sklearn.metrics import adjusted_rand_score
from sklearn.metrics.pairwise import euclidean_distances
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

from segmint import Segmenter
from segmint.datasets import make_transactions
from segmint.errors import ConfigError, DataQualityError
from segmint.features import customer_features
from segmint.pipeline import prepare
from segmint.segment import ALGORITHMS, NOISE, CustomerTransform, SelectionRule, choose
from segmint.segment.transforms import signed_log1p

# -- scikit-learn's own estimator checks ---------------------------------------------

_BY_NAME = {
    "check_dataframe_column_names_consistency": (
        "by design: features are picked by name from a wider customer table, so extra "
        "columns and another column order are accepted instead of refused"
    )
}


@parametrize_with_checks(
    [
        Segmenter(algorithm="kmeans", k_range=(2, 4), stability_resamples=1),
        Segmenter(algorithm=["gmm", "agglomerative_ward"], n_clusters=3, sample_size=30),
        CustomerTransform(),
        CustomerTransform(log="all", scaler="robust", clip=0.95, pca=2),
    ],
    expected_failed_checks=lambda est: _BY_NAME,
)
def test_sklearn_compatible(estimator, check) -> None:
    check(estimator)


# -- planted personas ---------------------------------------------------------------


def _persona_features(seed: int, n: int = 3000) -> pd.DataFrame:
    lines, personas = make_transactions(n_customers=n, seed=seed)
    feats = customer_features(prepare(lines).cleaned).to_pandas()
    return feats.merge(personas, on="customer_id", validate="one_to_one")


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_auto_selection_recovers_the_planted_personas(seed: int) -> None:
    feats = _persona_features(seed)
    seg = Segmenter(random_state=0).fit(feats)
    planted = feats["persona"].nunique()
    assert planted == 7
    assert seg.n_segments_ == planted, seg.explain()
    ari = adjusted_rand_score(feats["persona"], seg.labels_)
    assert ari >= 0.8, (ari, seg.explain())
    # the table has every candidate (2 algorithms x k 2..10) and exactly one winner
    assert len(seg.selection_) == 18
    assert seg.selection_["chosen"].sum() == 1
    assert "Runner-up" in seg.explain()


# -- the source project's recipe on the real Online Retail data ---------------------


def test_online_retail_recipe_matches_plain_scikit_learn(online_retail: Path) -> None:
    feats = customer_features(prepare(online_retail).cleaned).to_pandas()
    rfm = ["recency_days", "frequency", "monetary"]
    seg = Segmenter(
        features=rfm,
        log=["frequency", "monetary"],
        scaler="standard",
        algorithm="kmeans",
        n_clusters=4,
        algorithm_params={"kmeans": {"n_init": 10}},
        stability_resamples=0,
        random_state=42,
    ).fit(feats)

    X = feats[rfm].to_numpy(float)
    X[:, 1:] = np.sign(X[:, 1:]) * np.log1p(np.abs(X[:, 1:]))
    plain = KMeans(n_clusters=4, n_init=10, random_state=42).fit_predict(
        StandardScaler().fit_transform(X)
    )
    assert len(feats) > 4000
    assert adjusted_rand_score(plain, seg.labels_) == 1.0
    # same partition, only renamed: the contingency table is a permutation
    table = pd.crosstab(plain, seg.labels_)
    assert ((table > 0).sum(axis=1) == 1).all() and ((table > 0).sum(axis=0) == 1).all()
    assert seg.transform_.log_features_ == ["frequency", "monetary"]


# -- every algorithm of the registry --------------------------------------------------


@pytest.fixture(scope="module")
def blobs() -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_blobs(
        n_samples=600, centers=[[0, 0, 0], [6, 6, 0], [0, 6, 6]], cluster_std=0.7, random_state=3
    )
    return pd.DataFrame(X, columns=["a", "b", "c"]), y


@pytest.mark.filterwarnings("ignore:Graph is not fully connected")
@pytest.mark.parametrize("name", sorted(ALGORITHMS))
def test_every_registered_algorithm(name: str, blobs, tmp_path: Path) -> None:
    from segmint.bundle import load_model, save_model

    frame, truth = blobs
    alg = ALGORITHMS[name]
    seg = Segmenter(
        algorithm=name,
        n_clusters=3,
        log="none",
        stability_resamples=1,
        algorithm_params={"hdbscan": {"min_cluster_size": 30}, "optics": {"min_samples": 30}},
    ).fit(frame)
    assert seg.algorithm_ == name
    assert len(seg.labels_) == len(frame)
    assigned = seg.labels_ != NOISE
    assert assigned.mean() > 0.8
    assert adjusted_rand_score(truth[assigned], seg.labels_[assigned]) > 0.9, name
    if alg.uses_k:
        assert seg.n_segments_ == 3
    # new customers are assigned by the model (or the nearest-neighbour extension)
    assert np.array_equal(seg.predict(frame.iloc[:50]), seg.labels_[:50])
    details = seg.predict_details(frame.iloc[:50])
    assert list(details.columns) == ["segment_id", "distance", "confidence"]
    ok = details["segment_id"] != NOISE
    assert details.loc[ok, "confidence"].between(0, 1).all()
    assert (details["distance"] >= 0).all()
    assert seg.transform(frame.iloc[:5]).shape == (5, seg.n_segments_)
    # every algorithm's model loads under the bundle's exact type allow-list
    model = load_model(save_model(seg, tmp_path / "m.segmint", {}))
    assert np.array_equal(model.predict(frame), seg.predict(frame))


@pytest.mark.parametrize("name", ["dbscan", "hdbscan"])
def test_density_noise_is_its_own_segment(name: str, blobs) -> None:
    frame, _ = blobs
    far = pd.DataFrame([[40.0, -40.0, 40.0], [-50.0, 30.0, -45.0], [35.0, 45.0, -50.0]])
    far.columns = frame.columns
    data = pd.concat([frame, far], ignore_index=True)
    seg = Segmenter(
        algorithm=name,
        log="none",
        scaler="none",
        stability_resamples=0,
        algorithm_params={"hdbscan": {"min_cluster_size": 30}},
    ).fit(data)
    assert seg.has_noise_
    assert (seg.labels_[-3:] == NOISE).all()
    assert seg.segment_sizes_[NOISE] >= 3
    assert seg.n_segments_ == 3  # noise is not counted as a segment and not merged
    assert (seg.predict(far) == NOISE).all()
    assert "unassigned/outlier" in seg.explain()


def test_quadratic_algorithms_fit_on_a_sample_and_extend(blobs) -> None:
    frame, _ = blobs
    full = Segmenter(
        algorithm="agglomerative_ward", n_clusters=3, sample_size=10_000, stability_resamples=0
    ).fit(frame)
    sampled = Segmenter(
        algorithm="agglomerative_ward", n_clusters=3, sample_size=120, stability_resamples=0
    ).fit(frame)
    assert not full.sampled_ and sampled.sampled_
    assert sampled.sample_size_ == 120
    assert len(sampled.labels_) == len(frame)
    assert adjusted_rand_score(full.labels_, sampled.labels_) > 0.95
    assert "sample of 120 of 600 customers" in sampled.explain()
    assert "extended to the rest by the nearest sampled customer" in sampled.explain()
    assert sampled.assigner_ is not None


def test_a_sampled_dbscan_explains_its_own_extension_rule(blobs) -> None:
    """A sampled DBSCAN passes segments on from its core customers within eps only (the
    rest are unassigned), but explain() said "by the nearest sampled customer"."""
    frame, _ = blobs
    seg = Segmenter(algorithm="dbscan", sample_size=200, stability_resamples=0).fit(frame)
    assert seg.sampled_
    text = seg.explain()
    assert "nearest sampled customer" not in text
    assert (
        "extended to the rest by the segment of the nearest sampled core customer within "
        "eps, or unassigned beyond it"
    ) in text


def test_a_density_method_says_it_did_not_use_the_number_asked_for(blobs) -> None:
    """``run --algorithm dbscan --k 5`` gave 3 segments without a word about the 5."""
    frame, _ = blobs
    seg = Segmenter(algorithm="dbscan", n_clusters=5, stability_resamples=0).fit(frame)
    assert seg.n_segments_ == 3
    assert (
        "DBSCAN finds its own number of segments, so the 5 asked for (n_clusters, --k) was "
        "not used for it."
    ) in seg.explain()
    auto = Segmenter(algorithm="dbscan", stability_resamples=0).fit(frame)
    assert "asked for" not in auto.explain()


# -- selection --------------------------------------------------------------------------


def _table(rows: list[tuple]) -> pd.DataFrame:
    cols = ["algorithm", "k", "n_segments", "silhouette", "calinski_harabasz"]
    cols += ["davies_bouldin", "stability", "min_share", "noise_share"]
    return pd.DataFrame([r if len(r) == len(cols) else (*r, 0.0) for r in rows], columns=cols)


def test_rule_thresholds_ranks_and_fewer_segments_within_tolerance() -> None:
    table = _table(
        [
            ("a", 2, 2, 0.50, 100.0, 0.9, 0.99, 0.40),  # ranks 3,3,3
            ("a", 3, 3, 0.70, 300.0, 0.5, 0.95, 0.20),  # best on all three
            ("a", 4, 4, 0.69, 290.0, 0.6, 0.90, 0.15),  # second
            ("a", 5, 5, 0.90, 900.0, 0.1, 0.40, 0.10),  # best but unstable: excluded
            ("a", 6, 6, 0.95, 950.0, 0.1, 0.90, 0.01),  # best but a tiny segment: excluded
        ]
    )
    pos, out, note = choose(table, SelectionRule(0.6, 0.02, 0.5))
    assert pos == 1 and note is None
    assert list(out["eligible"]) == [True, True, True, False, False]
    assert out.loc[3, "excluded_because"] == "stability below 0.6"
    assert out.loc[4, "excluded_because"] == "a segment under 2% of customers"
    assert list(out.loc[:2, "score"]) == [3.0, 1.0, 2.0]
    # a tolerance of one rank lets k=3 win over... itself still (fewest among near-best)
    pos, out, _ = choose(table, SelectionRule(0.6, 0.02, 2.0))
    assert pos == 0  # k=2 is within 2 ranks of the best and has fewer segments
    # nothing eligible: every candidate competes, and the note says so
    pos, out, note = choose(table, SelectionRule(1.0, 0.02, 0.5))
    assert pos == 4 and "no candidate passed" in note


def test_rule_thresholds_are_inclusive() -> None:
    """ "At least" 0.6 stability and 2 % of customers: a candidate exactly at a threshold
    is eligible (found by mutation testing: nothing held the boundary)."""
    table = _table(
        [
            ("a", 2, 2, 0.50, 100.0, 0.9, 0.60, 0.40),  # stability exactly 0.6
            ("a", 3, 3, 0.70, 300.0, 0.5, 0.95, 0.02),  # smallest segment exactly 2 %
            ("a", 4, 4, 0.69, 290.0, 0.6, 0.90, 0.15, 0.25),  # noise exactly 25 %
        ]
    )
    _, out, note = choose(table, SelectionRule(0.6, 0.02, 0.5, max_noise_share=0.25))
    assert note is None and out["eligible"].all()


def test_rule_excludes_a_density_candidate_that_leaves_many_customers_unassigned() -> None:
    """HDBSCAN on FLO left 55 % of the customers as noise and was eligible; its
    silhouette, computed without the noise, would flatter it."""
    table = _table(
        [
            ("kmeans", 2, 2, 0.40, 100.0, 0.9, 0.99, 0.40),
            ("hdbscan", None, 2, 0.90, 900.0, 0.2, 0.95, 0.10, 0.55),  # best, mostly noise
            ("dbscan", None, 3, 0.80, 800.0, 0.3, 0.95, 0.10, 0.25),  # at the threshold
        ]
    )
    pos, out, _ = choose(table, SelectionRule(0.6, 0.02, 0.25))
    assert pos == 2
    assert list(out["eligible"]) == [True, False, True]
    assert out.loc[1, "excluded_because"] == "over 25% of customers unassigned (noise)"
    pos, out, _ = choose(table, SelectionRule(0.6, 0.02, 0.25, max_noise_share=0.6))
    assert pos == 1 and out["eligible"].all()


def test_selection_table_csv_explain_elbow_and_progress(tmp_path: Path, blobs) -> None:
    frame, _ = blobs
    calls: list[tuple[int, int, str]] = []
    seg = Segmenter(algorithm=["kmeans", "gmm"], k_range=(2, 6), stability_resamples=2)
    seg.fit(frame, progress=lambda d, t, m: calls.append((d, t, m)))
    assert seg.n_segments_ == 3
    t = seg.selection_
    for col in (
        "algorithm k n_segments silhouette davies_bouldin calinski_harabasz inertia elbow "
        "bic aic min_share noise_share stability eligible score chosen"
    ).split():
        assert col in t.columns, col
    assert t.loc[t.algorithm == "gmm", "bic"].notna().all()
    assert t.loc[t.algorithm == "kmeans", "bic"].isna().all()
    assert seg.elbows_["kmeans"] == 3
    assert calls[-1][0] == calls[-1][1] == 10
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)
    out = seg.write_selection(tmp_path / "sel" / "selection.csv")
    back = pd.read_csv(out)
    assert len(back) == 10 and back["chosen"].sum() == 1
    text = seg.explain()
    assert "3 segments" in text and "Runner-up" in text and "elbow" in text
    assert not list((tmp_path / "sel").glob("*.part"))


def test_a_candidates_stability_does_not_depend_on_the_other_candidates() -> None:
    """The bootstrap seeds were drawn from one generator in search order, so the same
    candidate (K-Means, k) had another stability when the algorithms were listed in
    another order, when another algorithm was added, or when it was fitted alone with
    a fixed k (on Online Retail, K-Means with 6 segments: 0.75, 0.94, 0.72, 0.80), which
    could move it across min_stability and change the chosen model."""
    feats = _persona_features(1, n=800)
    kw = {"k_range": (3, 7), "stability_resamples": 2, "random_state": 5}
    tables = [
        Segmenter(algorithm=algs, **kw).fit(feats).selection_.set_index(["algorithm", "k"])
        for algs in (["kmeans", "gmm"], ["gmm", "kmeans"], ["kmeans"])
    ]
    first = tables[0].loc["kmeans", "stability"]
    assert first.nunique() > 1  # the resamples do move it: the check below is not vacuous
    for other in tables[1:]:
        pd.testing.assert_series_equal(other.loc["kmeans", "stability"], first)
    pd.testing.assert_series_equal(
        tables[1].loc["gmm", "stability"], tables[0].loc["gmm", "stability"]
    )
    alone = Segmenter(algorithm="kmeans", n_clusters=6, **kw).fit(feats).selection_
    assert alone["stability"].iloc[0] == first.loc[6]


def test_the_same_partition_from_two_algorithms_ties_in_the_selection(blobs) -> None:
    """K-Means, a Gaussian mixture and Ward find the same three blobs; numbered in
    another order, their Davies–Bouldin differs in the last bit, which ranked Ward 1st
    and the others 2.5th, so rounding noise chose the model instead of the documented
    tie-break (the first candidate searched)."""
    frame, _ = blobs
    seg = Segmenter(
        algorithm=["kmeans", "gmm", "agglomerative_ward"], n_clusters=3, random_state=0
    ).fit(frame)
    t = seg.selection_
    assert len({round(v, 12) for v in t["davies_bouldin"]}) == 1  # the same partition
    assert (t["score"] == 2.0).all()
    assert seg.algorithm_ == "kmeans"
    # the table keeps the 10 significant digits the metrics are ranked at: the last-bit
    # noise made selection.csv (and the report's chart) differ between identical runs
    for metric in ("davies_bouldin", "silhouette", "calinski_harabasz"):
        assert t[metric].nunique() == 1, metric
        assert all(v == float(f"{v:.10g}") for v in t[metric])


def test_explain_shows_tied_places_and_a_tied_runner_up_as_ties(blobs) -> None:
    """Tied candidates have average ranks (three tied for first: 2.0 each), which the
    explanation rounded to "(2nd)" for the winner, and it said the runner-up, with the
    same score and segments, "scored worse"."""
    frame, _ = blobs
    seg = Segmenter(
        algorithm=["kmeans", "gmm", "agglomerative_ward"], n_clusters=3, random_state=0
    ).fit(frame)
    assert (seg.selection_["score"] == 2.0).all()
    text = seg.explain()
    assert "(2nd)" not in text and "scored worse" not in text
    assert text.count("(tied 1st)") == 3
    assert "count the mean of the places they share" in text
    assert "tied with the winner on score and number of segments" in text
    # an untied place stays as it was
    solo = Segmenter(algorithm="kmeans", k_range=(2, 4), random_state=0).fit(frame)
    assert "(1st)" in solo.explain() and "tied" not in solo.explain()


def test_candidates_below_the_thresholds_that_competed_are_not_called_excluded(blobs) -> None:
    """When no candidate passes the thresholds every one with two or more segments
    competes (the note says so), yet the explanation went on "Excluded: 3 for stability
    below 0.6", the winner among them. They are said to compete below the thresholds; a
    candidate with too few segments is still excluded."""
    frame, _ = blobs
    seg = Segmenter(k_range=(2, 4), algorithm="kmeans", min_segment_share=0.4, random_state=0)
    text = seg.fit(frame).explain()
    assert "every candidate with two or more segments competed" in text
    assert "Excluded" not in text
    assert "Below the thresholds, yet competing as none passed them: 3 for " in text
    passing = Segmenter(k_range=(2, 4), algorithm="kmeans", min_segment_share=0.3).fit(frame)
    assert "Excluded: 1 for " in passing.explain() and "yet competing" not in passing.explain()


def test_dbscan_border_point_gets_the_segment_scoring_gives_it() -> None:
    """A DBSCAN border point within eps of two clusters' core points: fitted on every
    customer (no sample), it kept DBSCAN's own label (the cluster that reached it first,
    here the left one), while predict, and so ``segmint score`` and the distance and
    confidence of ``run``, used the nearest core point (the right one). On FLO with
    ``sample_size = 20000`` two customers changed segment between run and score."""
    x = [0, 0.25, 0.5, 0.75, 1.0, 2.04, 3.0, 3.25, 3.5, 3.75, 4.0]
    frame = pd.DataFrame({"x": x})
    seg = Segmenter(
        features=["x"],
        algorithm="dbscan",
        algorithm_params={"dbscan": {"eps": 1.05, "min_samples": 4}},
        log="none",
        scaler="none",
        stability_resamples=0,
    ).fit(frame)
    assert not seg.sampled_ and seg.n_segments_ == 2
    labels = seg.labels_
    assert labels[5] == labels[6] != labels[4]  # 2.04 is 0.96 from 3.0, 1.04 from 1.0
    assert np.array_equal(seg.predict(frame), labels)
    assert np.array_equal(seg.predict_details(frame)["segment_id"].to_numpy(), labels)


def test_time_budget_stops_the_search(blobs) -> None:
    frame, _ = blobs
    seg = Segmenter(algorithm="kmeans", time_budget=0.0, stability_resamples=0).fit(frame)
    assert len(seg.selection_) == 1
    assert seg.candidates_skipped_ == 8
    assert "time budget" in seg.explain()


def test_deterministic_and_cloneable(blobs) -> None:
    frame, _ = blobs
    a = Segmenter(k_range=(2, 4), random_state=7, stability_resamples=1)
    b = clone(a)
    assert b.get_params() == a.get_params()
    la = a.fit_predict(frame)
    lb = b.fit_predict(frame)
    assert np.array_equal(la, lb)
    timing = ["fit_seconds", "stability_seconds"]
    pd.testing.assert_frame_equal(
        a.selection_.drop(columns=timing), b.selection_.drop(columns=timing)
    )
    b.set_params(n_clusters=4, algorithm="kmeans")
    assert b.fit(frame).n_segments_ == 4


def test_segment_ids_are_ordered_by_size(blobs) -> None:
    frame, _ = blobs
    uneven = pd.concat([frame.iloc[:200], frame.iloc[200:300], frame.iloc[400:]])
    seg = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(uneven)
    sizes = [seg.segment_sizes_[i] for i in range(3)]
    assert sizes == sorted(sizes, reverse=True)


# -- transforms ---------------------------------------------------------------------------


def test_transform_auto_log_clip_scale_encode() -> None:
    rng = np.random.default_rng(0)
    n = 500
    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "recency_days": rng.uniform(1, 365, n),
            "frequency": rng.geometric(0.3, n).astype(float),
            "monetary": rng.lognormal(5, 1.2, n),
            "tenure_days": rng.uniform(0, 300, n),
            "country": rng.choice(["UK", "DE", "FR"], n, p=[0.8, 0.1, 0.1]),
        }
    )
    t = CustomerTransform(categorical=["country"], clip=0.99).fit(frame)
    assert t.features_ == ["recency_days", "frequency", "monetary", "tenure_days"]
    assert t.log_features_ == ["frequency", "monetary"]  # the skewed ones
    Z = t.transform(frame)
    assert Z.shape == (n, 4 + 3)
    assert np.allclose(Z[:, :4].mean(axis=0), 0, atol=0.05)
    names = list(t.get_feature_names_out())
    assert names[:4] == ["recency_days", "log_frequency", "log_monetary", "tenure_days"]
    assert {"country_UK", "country_DE", "country_FR"} <= set(names)
    # winsorised: no transformed value beyond the clip bounds
    logged = signed_log1p(frame["monetary"].to_numpy())
    assert t.clip_high_[2] < logged.max()
    # ordinal encoding and PCA by explained variance
    t2 = CustomerTransform(categorical=["country"], encoding="ordinal", pca=0.9).fit(frame)
    assert t2.transform(frame).shape[1] == t2.pca_.n_components_ < 5
    assert t2.describe()["pca_explained_variance"] >= 0.9
    # unseen country does not fail; values outside the training range are reported
    new = frame.iloc[:2].copy()
    new["country"] = ["Atlantis", "UK"]
    new.loc[new.index[0], "monetary"] = 1e9
    assert t.transform(new).shape == (2, 7)
    flags = t.out_of_range(new)
    assert flags.loc[0, "monetary"] and not flags.loc[1].any()
    # a country the model never saw is an extrapolation too, with either encoding
    assert list(flags.columns[flags.loc[0]]) == ["monetary", "country"]
    flags2 = t2.out_of_range(new)
    assert flags2.loc[0, "country"] and not flags2.loc[1, "country"]
    # negative net monetary is logged symmetrically, never NaN
    assert np.isfinite(signed_log1p(np.array([-50.0, 0.0, 50.0]))).all()


@pytest.mark.parametrize("scaler", ["standard", "robust", "minmax", "quantile", "none"])
def test_every_scaler(scaler: str, blobs) -> None:
    frame, _ = blobs
    Z = CustomerTransform(scaler=scaler, log="none").fit_transform(frame)
    assert Z.shape == frame.shape and np.isfinite(Z).all()
    if scaler == "minmax":
        assert Z.min() == 0 and Z.max() == 1


def test_works_on_any_numeric_table_and_on_customer_level_features(flo: Path) -> None:
    table = pd.DataFrame({"spend": [1, 2, 3, 100, 110, 120.0], "visits": [1, 1, 2, 9, 8, 9]})
    seg = Segmenter(n_clusters=2, algorithm="kmeans", stability_resamples=0).fit(table)
    assert seg.transform_.features_ == ["spend", "visits"]
    assert len(set(seg.labels_[:3])) == 1 and seg.labels_[0] != seg.labels_[-1]
    feats = customer_features(prepare(flo).cleaned)
    seg = Segmenter(algorithm="kmeans", k_range=(3, 5), stability_resamples=1).fit(feats)
    assert seg.n_customers_ == feats.n_customers
    assert seg.transform_.features_ == ["recency_days", "frequency", "monetary", "tenure_days"]


def test_clear_errors() -> None:
    frame = pd.DataFrame({"recency_days": [1.0, 2, 3, 4], "frequency": [1, 2, 3, 4]})
    frame["monetary"] = [1.0, 2, 3, 4]
    with pytest.raises(ConfigError, match=r"unknown algorithm 'kmean' \(did you mean 'kmeans'"):
        Segmenter(algorithm="kmean").fit(frame)
    with pytest.raises(ConfigError, match="n_clusters='many'"):
        Segmenter(n_clusters="many").fit(frame)
    with pytest.raises(ConfigError, match=r"k_range=\(1, 3\)"):
        Segmenter(k_range=(1, 3)).fit(frame)
    with pytest.raises(ConfigError, match=r"feature column\(s\) \['spend'\] not in"):
        Segmenter(features=["spend"]).fit(frame)
    with pytest.raises(ConfigError, match="unknown scaler 'standart'.*'standard'"):
        Segmenter(scaler="standart").fit(frame)
    bad = frame.assign(monetary=[1.0, np.nan, 3, np.inf])
    with pytest.raises(DataQualityError, match=r"'monetary' has 2 missing or infinite.*row 2"):
        Segmenter().fit(bad)
    text = frame.assign(frequency=["a", "b", "c", "d"])
    with pytest.raises(ConfigError, match="(?s)'frequency' is not numeric.*categorical"):
        Segmenter().fit(text)
    seg = Segmenter(algorithm="kmeans", n_clusters=2, stability_resamples=0).fit(frame)
    with pytest.raises(ConfigError, match=r"\['monetary'\] not in the customer table"):
        seg.predict(frame.drop(columns="monetary"))


@pytest.mark.parametrize(("n", "k"), [(2000, 5), (300, 2), (60, 9)])
def test_silhouette_from_distances_equals_scikit_learn(n, k):
    """The model search's own silhouette (one matrix product per labelling) gives
    scikit-learn's figure, singletons included."""
    from sklearn.metrics import pairwise_distances, silhouette_score

    from segmint.segment.selection import silhouette_precomputed

    rng = np.random.default_rng(n)
    X = np.vstack([rng.normal(loc=i, size=(n // k, 3)) for i in range(k)])
    labels = np.repeat(np.arange(k), n // k)
    labels[rng.choice(len(labels), len(labels) // 10, replace=False)] = rng.integers(0, k)
    labels[0] = k + 5  # a segment of one customer
    D = pairwise_distances(X)
    expected = silhouette_score(D, labels, metric="precomputed")
    assert silhouette_precomputed(D, labels) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "step",
    [
        "standard",
        "standard_nomean",
        "robust",
        "minmax",
        "minmax_clip",
        "pca",
        "pca_whiten",
        "quantile",
    ],
)
def test_apply_fitted_equals_scikit_learn_transform(step: str) -> None:
    """The service's NumPy arithmetic gives what scikit-learn's own transform gives."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import (
        MinMaxScaler,
        QuantileTransformer,
        RobustScaler,
        StandardScaler,
    )

    from segmint.segment.transforms import apply_fitted

    rng = np.random.default_rng(3)
    train = rng.lognormal(size=(300, 4))
    new = rng.lognormal(size=(40, 4)) * 1.5  # some values outside the training range
    est = {
        "standard": StandardScaler(),
        "standard_nomean": StandardScaler(with_mean=False),
        "robust": RobustScaler(),
        "minmax": MinMaxScaler(),
        "minmax_clip": MinMaxScaler(clip=True),
        "pca": PCA(n_components=3),
        "pca_whiten": PCA(n_components=2, whiten=True),
        "quantile": QuantileTransformer(n_quantiles=50),
    }[step].fit(train)
    np.testing.assert_allclose(apply_fitted(est, new), est.transform(new), rtol=1e-12, atol=1e-12)
    assert apply_fitted(est, new[:1]).shape == est.transform(new[:1]).shape


def test_euclidean_and_nearest_centre_equal_scikit_learn() -> None:
    from sklearn.cluster import KMeans
    from sklearn.metrics import pairwise_distances

    from segmint.segment.segmenter import euclidean

    rng = np.random.default_rng(5)
    X = rng.normal(size=(5000, 3))
    km = KMeans(6, n_init=3, random_state=0).fit(X)
    d = euclidean(X, km.cluster_centers_)
    np.testing.assert_allclose(d, pairwise_distances(X, km.cluster_centers_), rtol=1e-9, atol=1e-9)
    assert (d.argmin(axis=1) == km.predict(X)).all()
    # blocks: a table larger than one block gives the same rows as one row at a time
    big = rng.normal(size=(300_000, 3))
    np.testing.assert_array_equal(
        euclidean(big, km.cluster_centers_)[-5:], euclidean(big[-5:], km.cluster_centers_)
    )


# -- the value tier -------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiered() -> tuple[pd.DataFrame, Segmenter]:
    feats = _persona_features(0, n=1500)
    seg = Segmenter(algorithm="kmeans", n_clusters=4, value_tier=0.05, stability_resamples=0)
    return feats, seg.fit(feats)


def test_value_tier_is_the_top_share_by_monetary_and_the_rest_is_clustered_alone(
    tiered,
) -> None:
    """The tier holds exactly the customers above the (1 - share) quantile of monetary;
    the other customers are segmented as if the tier were not there at all."""
    feats, seg = tiered
    money = feats["monetary"].to_numpy(float)
    threshold = np.sort(money)[int(np.floor(0.95 * (len(money) - 1)))]  # the "lower" quantile
    assert seg.tier_threshold_ == threshold
    in_tier = money > threshold
    assert abs(in_tier.sum() - 0.05 * len(money)) <= 1 + (money == threshold).sum()
    assert np.array_equal(seg.labels_ == seg.tier_segment_, in_tier)
    assert seg.n_segments_ == 5 and seg.segment_sizes_[seg.tier_segment_] == in_tier.sum()
    # the others: the same partition as a model fitted on them alone
    alone = Segmenter(algorithm="kmeans", n_clusters=4, stability_resamples=0)
    alone.fit(feats[~in_tier])
    assert adjusted_rand_score(alone.labels_, seg.labels_[~in_tier]) == 1.0
    assert seg.n_clustered_ == (~in_tier).sum() and seg.n_customers_ == len(feats)
    # the tier's centre is the mean of its customers in the transformed space
    Z = seg.embed(feats)
    assert np.allclose(seg.cluster_centers_[seg.tier_segment_], Z[in_tier].mean(axis=0))
    text = seg.explain()
    assert "plus a value tier" in text and f"{in_tier.sum():,} customers" in text
    assert seg.describe()["value_tier"] == {
        "share": 0.05,
        "threshold": threshold,
        "segment": seg.tier_segment_,
        "customers": int(in_tier.sum()),
    }


def test_value_tier_prediction_and_bundle_round_trip(tiered, tmp_path: Path) -> None:
    """predict, predict_details, the bundle and the service's NumPy path agree; a new
    customer above the threshold joins the tier whatever the other features say."""
    from segmint.bundle import load_model, save_model

    feats, seg = tiered
    assert np.array_equal(seg.predict(feats), seg.labels_)
    details = seg.predict_details(feats)
    assert np.array_equal(details["segment_id"], seg.labels_)
    assert (details["confidence"][seg.labels_ == seg.tier_segment_] == 1.0).all()
    quiet = feats.nsmallest(1, "monetary").copy()
    rich = quiet.assign(monetary=seg.tier_threshold_ * 1.01)
    assert seg.predict(quiet)[0] != seg.tier_segment_
    assert seg.predict(rich)[0] == seg.tier_segment_
    # the training range covers the tier: its customers are not extrapolations
    assert not seg.transform_.out_of_range(feats).to_numpy().any()
    path = save_model(seg, tmp_path / "m.segmint", {"segments": {}})
    model = load_model(path)
    assert np.array_equal(model.predict(feats), seg.labels_)
    assigned = model.assign(feats)
    cols = {f: feats[f].to_numpy(float) for f in model.features}
    fast = model.assign_columns(cols, feats["customer_id"])
    assert np.array_equal(fast["segment_id"], assigned["segment_id"])
    assert np.allclose(fast["confidence"], assigned["confidence"])
    # saved from Python without names: every segment still has a name and an action
    # (the service's answers promise text), as a run names segments without RFM axes
    n = seg.n_segments_
    assert model.names == {i: f"Segment {i + 1}" for i in range(n)}
    assert assigned["segment_name"].notna().all() and assigned["action"].notna().all()
    assert None not in fast["segment_name"] and None not in fast["action"]
    with pytest.raises(ConfigError, match="need the customers' monetary"):
        seg.details_from_matrix(seg.embed(feats))


def test_value_tier_errors() -> None:
    feats = _persona_features(1, n=300)
    with pytest.raises(ConfigError, match="between 0 and 0.5"):
        Segmenter(value_tier=0.7).fit(feats)
    with pytest.raises(ConfigError, match="'monetary' among the features"):
        Segmenter(value_tier=0.05, features=["recency_days", "frequency"]).fit(feats)
    with pytest.raises(ConfigError, match="'monetary' column"):
        Segmenter(value_tier=0.05).fit(feats.drop(columns="monetary"))
    flat = feats.assign(monetary=100.0)
    with pytest.raises(DataQualityError, match="tied"):
        Segmenter(value_tier=0.05).fit(flat)
    seg = Segmenter(value_tier=0.05, n_clusters=3, stability_resamples=0).fit(feats)
    with pytest.raises(ConfigError, match="'monetary' column"):
        seg.predict(feats.drop(columns="monetary"))
    # one cluster beside the tier is two segments: allowed
    two = Segmenter(value_tier=0.05, n_clusters=1, stability_resamples=0).fit(feats)
    assert len(np.unique(two.labels_)) == 2


def test_one_cluster_beside_a_value_tier_is_explained_as_asked() -> None:
    """``--k 1 --value-tier 0.05`` (documented as allowed) was explained as "K-Means with
    1 segments ... (K-Means; 1 to 1 segments)" and with "Warning: it fails the selection
    rule (fewer than 2 segments)... try other algorithms or numbers of segments"; the
    report's candidate note read "chosen (although fewer than 2 segments)"."""
    feats = _persona_features(2, n=1500)
    seg = Segmenter(algorithm="kmeans", value_tier=0.05, n_clusters=1, stability_resamples=0)
    text = seg.fit(feats).explain()
    assert "Chose K-Means with 1 segment plus a value tier" in text
    assert "(K-Means; 1 segment)" in text
    assert "Warning" not in text and "fails the selection rule" not in text
    assert "One segment beside the value tier, as asked (n_clusters = 1)" in text
    assert seg.selection_["excluded_because"].iloc[0] == ""
    four = Segmenter(algorithm="kmeans", n_clusters=4, stability_resamples=0).fit(feats)
    assert "(K-Means; 4 segments)" in four.explain()


def test_one_cluster_beside_a_value_tier_with_the_default_search_is_explained() -> None:
    """``--k 1 --value-tier 0.02`` with the default algorithms (K-Means and a Gaussian
    mixture, each giving the one segment) was explained as "Rule: among the 0
    candidates ... The winner scored nan: ; stability 1.00. Excluded: 1 for fewer than
    2 segments"."""
    feats = _persona_features(2, n=1500)
    seg = Segmenter(value_tier=0.05, n_clusters=1, stability_resamples=1).fit(feats)
    text = seg.explain()
    assert "nan" not in text and "among the 0 candidates" not in text
    assert "Excluded" not in text and "Warning" not in text
    assert "One segment beside the value tier, as asked (n_clusters = 1)" in text
    assert "Every algorithm searched gives that one segment; K-Means, the first" in text
    assert "(K-Means, Gaussian mixture; 1 segment)" in text


def test_value_tier_below_one_percent_is_named_with_its_digits() -> None:
    """A tier of 0.5% is called "0.5%" (not "0%") in the explanation and the notes."""
    feats = _persona_features(2, n=1500)
    seg = Segmenter(algorithm="kmeans", n_clusters=3, value_tier=0.005, stability_resamples=0)
    seg.fit(feats)
    assert "the top 0.5% of customers by monetary value" in seg.explain()
    assert seg.segment_notes()[seg.tier_segment_].startswith("value tier: the top 0.5% ")


def test_a_constant_feature_is_not_logged_and_raises_no_warning() -> None:
    """tenure_days is 0 for every customer of a one-day file: its skew is undefined; the
    transform reads it as 0 (not logged) without scipy's RuntimeWarning reaching the user."""
    import warnings

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "recency_days": rng.integers(0, 300, 200).astype(float),
            "frequency": rng.integers(1, 20, 200).astype(float),
            "monetary": rng.lognormal(5, 1, 200),
            "tenure_days": np.zeros(200),
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        t = CustomerTransform().fit(frame)
    assert "tenure_days" not in t.log_features_ and "monetary" in t.log_features_


def test_a_lone_candidate_that_fails_the_rule_is_flagged_and_one_segment_is_refused() -> None:
    """A fixed k leaves one candidate: the explanation said only "it was the only
    candidate" even when it broke the rule, and a density method that ignores k and
    finds one segment was accepted as if asked for."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "recency_days": np.r_[rng.uniform(1, 300, 300), [5000.0, 5200.0]],
            "frequency": np.r_[rng.integers(1, 10, 300), [1, 1]].astype(float),
            "monetary": np.r_[rng.uniform(10, 900, 300), [20.0, 30.0]],
        }
    )
    seg = Segmenter(
        algorithm="agglomerative_average", n_clusters=3, log="none", stability_resamples=0
    ).fit(frame)
    assert seg.selection_["min_share"].iloc[0] < 0.02
    assert "Warning: it fails the selection rule (a segment under 2% of customers)" in (
        seg.explain()
    )
    with pytest.raises(DataQualityError, match="no candidate segmentation found two or more"):
        Segmenter(
            algorithm="dbscan",
            n_clusters=4,
            algorithm_params={"dbscan": {"eps": 1000.0}},
            stability_resamples=0,
        ).fit(frame)
    # n_clusters=1 means "one segment, as asked" only to methods that take a k: a density
    # method leaving every customer unassigned was accepted with no segment at all, and
    # transform() then failed on the empty centres
    with pytest.raises(DataQualityError, match="no candidate segmentation found two or more"):
        Segmenter(
            algorithm="dbscan",
            n_clusters=1,
            algorithm_params={"dbscan": {"eps": 1e-9, "min_samples": 5}},
            stability_resamples=0,
        ).fit(frame)
    one = Segmenter(algorithm="kmeans", n_clusters=1, stability_resamples=0).fit(frame)
    assert one.n_segments_ == 1 and one.transform(frame).shape == (len(frame), 1)


def test_confidence_is_about_the_assigned_segment() -> None:
    """For algorithms whose segments are not always the nearest centre (complete linkage
    here), confidence was 1 - d1/d2 of the nearest *other* segment; it is measured from
    the assigned segment, and a customer nearer another centre gets 0."""
    X, _ = make_blobs(n_samples=600, centers=4, cluster_std=2.5, random_state=3)
    frame = pd.DataFrame(X + 20, columns=["recency_days", "frequency"])
    frame["monetary"] = np.abs(X[:, 0]) + 1
    seg = Segmenter(
        algorithm="agglomerative_complete", n_clusters=4, log="none", stability_resamples=0
    ).fit(frame)
    d = seg.predict_details(frame)
    dist = seg.transform_.transform(frame)[:, None, :] - seg.cluster_centers_[None, :, :]
    dist = np.sqrt((dist**2).sum(axis=2))
    own = dist[np.arange(len(frame)), d["segment_id"]]
    others = np.where(np.eye(4, dtype=bool)[d["segment_id"]], np.inf, dist).min(axis=1)
    nearer_elsewhere = own > others
    assert nearer_elsewhere.any()  # the case this is about
    assert (d.loc[nearer_elsewhere, "confidence"] == 0).all()
    expected = np.clip(1 - own / others, 0, 1)
    assert np.allclose(d["confidence"], expected)
    km = Segmenter(algorithm="kmeans", n_clusters=4, log="none", stability_resamples=0).fit(frame)
    dk = km.predict_details(frame)
    part = np.sort(euclidean_distances(km.transform_.transform(frame), km.cluster_centers_), 1)
    assert np.allclose(dk["confidence"], 1 - part[:, 0] / part[:, 1])  # unchanged for K-Means


def test_a_segmenter_saved_before_max_noise_share_still_loads(blobs) -> None:
    """Bundles written before the noise threshold existed restore it with its default."""
    frame, _ = blobs
    seg = Segmenter(algorithm="kmeans", k_range=(2, 4), stability_resamples=0).fit(frame)
    state = seg.__getstate__()
    del state["max_noise_share"]
    old = Segmenter.__new__(Segmenter)
    old.__setstate__(state)
    assert old.get_params()["max_noise_share"] == 0.25
    assert "at most 25% unassigned" in old.explain()
    np.testing.assert_array_equal(old.predict(frame), seg.predict(frame))


def test_convergence_warnings_are_summarised_not_printed_per_candidate() -> None:
    """Customers with few distinct values: K-Means finds fewer clusters than asked and
    scikit-learn printed one ConvergenceWarning per candidate and refit (a screenful on
    a small file); they are kept and explained once."""
    frame = pd.DataFrame(
        {
            "recency_days": [1.0, 1, 1, 50, 50, 50, 90, 90] * 3,
            "frequency": [1.0, 1, 1, 2, 2, 2, 5, 5] * 3,
            "monetary": [10.0, 10, 10, 20, 20, 20, 90, 90] * 3,
        }
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        seg = Segmenter(algorithm="kmeans", k_range=(2, 5), stability_resamples=1).fit(frame)
    assert seg.convergence_warnings_
    assert "Number of distinct clusters" in seg.convergence_warnings_[0]
    assert "scikit-learn warned while fitting" in seg.explain()


def test_optics_defaults_find_segments_on_the_demo_customers() -> None:
    """OPTICS' xi extraction kept clusters as small as min_samples customers: on the
    demo's 2,000 customers it left 65 % unassigned, with segments under 2 % (which the
    selection rule rejects anyway). Its clusters now start at 2 % of the customers."""
    lines = make_transactions(n_customers=2000, seed=0).lines
    customers = customer_features(prepare(lines).cleaned).to_pandas()
    seg = Segmenter(algorithm="optics", random_state=0, stability_resamples=1).fit(customers)
    row = seg.selection_.iloc[0]
    assert 3 <= row["n_segments"] <= 8
    assert row["min_share"] >= 0.02
    assert row["noise_share"] < 0.3  # was 0.65


def test_density_methods_say_why_they_found_one_segment() -> None:
    """Customers that form one dense group (Online Retail: OPTICS finds one cluster at
    every setting that leaves most customers assigned) gave "try other parameters"; the
    error now says what each density method found and why."""
    rng = np.random.default_rng(0)
    customers = pd.DataFrame(
        {
            "recency_days": rng.gamma(2.0, 40.0, 1500),
            "frequency": rng.poisson(3, 1500) + 1.0,
            "monetary": rng.lognormal(6, 0.6, 1500),
            "tenure_days": rng.gamma(3.0, 60.0, 1500),
        }
    )
    with pytest.raises(DataQualityError) as err:
        Segmenter(algorithm="optics", random_state=0, stability_resamples=1).fit(customers)
    message = err.value.message
    assert "OPTICS found 1 segment" in message
    assert "one dense group" in message and "kmeans" in message


def test_density_reason_tells_one_group_from_groups_with_too_many_left_out() -> None:
    """The error said "one dense group" also when a density method had found several
    segments and was passed over for leaving too many customers unassigned."""
    from segmint.segment.segmenter import _density_reason

    one = pd.DataFrame({"algorithm": ["optics"], "n_segments": [1], "noise_share": [0.1]})
    assert "one dense group" in _density_reason(one, 0.25)
    many = pd.DataFrame(
        {"algorithm": ["optics", "dbscan"], "n_segments": [3, 1], "noise_share": [0.8, 0.05]}
    )
    reason = _density_reason(many, 0.25)
    assert "found 3 segments and left 80% of the customers unassigned" in reason
    assert "one dense group" not in reason
    assert "unassigned than the selection allows (25%, max_noise_share)" in reason
    assert _density_reason(pd.DataFrame({"algorithm": ["kmeans"], "n_segments": [1]})) == ""


def test_a_search_on_few_customers_tries_the_segment_counts_they_allow(caplog) -> None:
    """The default k_range (2, 10) on 8 customers failed on k = 9 ("K-Means could not be
    fitted with 9 segments on 8 customers") although k = 2 to 7 could be searched."""
    X = pd.DataFrame(np.random.RandomState(0).rand(8, 3), columns=["a", "b", "c"])
    with caplog.at_level("WARNING", logger="segmint.segment.segmenter"):
        seg = Segmenter(algorithm="kmeans", random_state=0).fit(X)
    assert seg.k_range_capped_ == (2, 7)
    assert sorted(seg.selection_["k"].unique()) == [2, 3, 4, 5, 6, 7]
    assert "segment counts of 2 to 7 searched instead of 2 to 10" in caplog.text
    assert "only 2 to 7 segments could be searched" in seg.explain()
    # a count asked for explicitly is not changed behind the user's back
    with pytest.raises(DataQualityError, match="with 9 segments on 8 customers"):
        Segmenter(algorithm="kmeans", n_clusters=9).fit(X)
    # enough customers: nothing capped
    assert (
        Segmenter(algorithm="kmeans", k_range=(2, 4), random_state=0).fit(X).k_range_capped_ is None
    )
    # too few to segment at all: the message had no hint, unlike every other error
    for rows, needed in ((1, "at least 2"), (2, "at least 3")):
        with pytest.raises(DataQualityError, match=needed) as err:
            Segmenter(algorithm="kmeans").fit(X.head(rows))
        assert "use data with more customers" in err.value.hint


# -- scikit-learn model selection and conventions -----------------------------------


def test_grid_search_without_scoring_finds_the_planted_number_of_segments() -> None:
    """GridSearchCV(Segmenter(...)) with no scoring= uses Segmenter.score (it failed:
    "the estimator passed should have a 'score' method"), across k and algorithms."""
    from sklearn.model_selection import GridSearchCV

    X, _ = make_blobs(
        n_samples=400, centers=[[0, 0], [8, 0], [0, 8], [8, 8]], cluster_std=1.0, random_state=5
    )
    frame = pd.DataFrame(X, columns=["a", "b"])
    search = GridSearchCV(
        Segmenter(algorithm="kmeans", log="none", stability_resamples=0),
        {"n_clusters": [2, 3, 4, 5, 6], "algorithm": ["kmeans", "gmm"]},
        cv=3,
    ).fit(frame)
    assert search.best_params_["n_clusters"] == 4
    assert search.best_score_ > 0.5
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.score(frame) == search.best_estimator_.score(frame)


def test_score_is_the_selection_silhouette_with_unassigned_customers_counted_zero(blobs):
    from sklearn.metrics import silhouette_samples

    frame, _ = blobs
    seg = Segmenter(algorithm=["kmeans", "gmm"], k_range=(2, 5), stability_resamples=0)
    seg.fit(frame)
    chosen = seg.selection_[seg.selection_["chosen"]].iloc[0]
    assert seg.score(frame) == pytest.approx(chosen["silhouette"], rel=1e-9)
    # a density method's noise: the selection leaves it out, score counts it 0
    noisy = frame.copy()
    noisy.loc[len(noisy)] = [30.0, -30.0, 30.0]  # far from everyone: unassigned
    dbscan = Segmenter(algorithm="dbscan", stability_resamples=0, log="none").fit(noisy)
    assert dbscan.has_noise_
    row = dbscan.selection_[dbscan.selection_["chosen"]].iloc[0]
    assigned = 1 - row["noise_share"]
    assert dbscan.score(noisy) == pytest.approx(row["silhouette"] * assigned, rel=1e-9)
    assert dbscan.score(noisy) < row["silhouette"]
    # above silhouette_sample: the same sample every time, drawn from the fit's seed
    small = clone(seg).set_params(silhouette_sample=100).fit(frame)
    assert small.score(frame) == small.score(frame)
    rows = np.sort(np.random.default_rng(small.random_state_).choice(600, 100, replace=False))
    Z, labels = small.embed(frame)[rows], small.predict(frame)[rows]
    assert small.score(frame) == pytest.approx(silhouette_samples(Z, labels).mean())
    # one segment: nothing to compare, 0 (not NaN, which a grid search cannot rank)
    one = Segmenter(algorithm="kmeans", n_clusters=2, stability_resamples=0).fit(frame)
    assert one.score(frame[one.labels_ == 0]) == 0.0


def test_transform_columns_are_named_as_kmeans_names_them(blobs) -> None:
    from sklearn.pipeline import make_pipeline

    frame, _ = blobs
    frame = frame.set_axis(range(100, 700))
    seg = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(frame)
    names = ["segmenter0", "segmenter1", "segmenter2"]
    assert list(seg.get_feature_names_out()) == names
    assert list(seg.get_feature_names_out(["a", "b", "c"])) == names
    with pytest.raises(ValueError, match="input_features is not equal to feature_names_in_"):
        seg.get_feature_names_out(["x", "y", "z"])
    out = seg.set_output(transform="pandas").transform(frame)
    assert list(out.columns) == names and (out.index == frame.index).all()
    assert np.allclose(out.to_numpy(), euclidean_distances(seg.embed(frame), seg.cluster_centers_))
    assert out.to_numpy().argmin(axis=1).tolist() == seg.labels_.tolist()
    pipe = make_pipeline(Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0))
    pipe.set_output(transform="polars")
    assert pipe.fit_transform(frame).columns == names
    assert list(pipe.get_feature_names_out()) == names
    with pytest.raises(NotFittedError):
        Segmenter().get_feature_names_out()


def test_random_state_takes_a_numpy_random_state_as_scikit_learn_does(blobs, tmp_path) -> None:
    import json

    from segmint.bundle import load_model, save_model

    frame, _ = blobs
    params = {"algorithm": ["kmeans", "gmm"], "k_range": (2, 4), "stability_resamples": 1}
    a = Segmenter(random_state=np.random.RandomState(7), **params).fit(frame)
    b = Segmenter(random_state=np.random.RandomState(7), **params).fit(frame)
    assert a.random_state_ == b.random_state_  # the same seed, the same segments
    assert (a.labels_ == b.labels_).all()
    pd.testing.assert_frame_equal(
        a.selection_.drop(columns=["fit_seconds", "stability_seconds"]),
        b.selection_.drop(columns=["fit_seconds", "stability_seconds"]),
    )
    # the seed drawn refits the same model; a shared RandomState advances, as in sklearn
    c = Segmenter(random_state=a.random_state_, **params).fit(frame)
    assert (c.labels_ == a.labels_).all() and np.allclose(c.cluster_centers_, a.cluster_centers_)
    shared = np.random.RandomState(7)
    first = Segmenter(random_state=shared, **params).fit(frame).random_state_
    assert Segmenter(random_state=shared, **params).fit(frame).random_state_ != first
    assert Segmenter(random_state=3, **params).fit(frame).random_state_ == 3  # ints as before
    # the bundle keeps the seed (a RandomState is neither JSON nor trusted by skops)
    model = load_model(save_model(a, tmp_path / "m.segmint", {}))
    assert model.segmenter.random_state == a.random_state_
    assert isinstance(a.random_state, np.random.RandomState)  # the user's object untouched
    assert (model.predict(frame) == a.labels_).all()
    assert json.loads(json.dumps(a.describe()))["random_state"] == a.random_state_
    for wrong in ("seven", -1, 1.5, np.random.default_rng(0)):
        with pytest.raises(ConfigError, match=r"random_state=.* is not an integer from 0"):
            Segmenter(random_state=wrong, algorithm="kmeans", n_clusters=2).fit(frame)


@pytest.mark.parametrize("name", ["hdbscan", "optics"])
def test_a_density_method_that_cannot_be_fitted_does_not_blame_a_number_of_segments(
    name: str,
) -> None:
    """On 6 customers HDBSCAN and OPTICS fail (min_samples 10) and the error read
    "HDBSCAN could not be fitted with 2 segments on 6 customers ... Hint: try fewer
    segments": they take no number of segments, so that hint changes nothing."""
    frame = pd.DataFrame({"a": [1.0, 2, 3, 10, 11, 12], "b": [0.0, 1, 0, 5, 6, 5]})
    with pytest.raises(DataQualityError) as info:
        Segmenter(algorithm=name, stability_resamples=0).fit(frame)
    assert "could not be fitted with its parameters on 6 customers" in str(info.value)
    assert "segments on" not in str(info.value)
    assert "finds its own number of segments" in info.value.hint
    assert "fewer segments" not in info.value.hint
    with pytest.raises(DataQualityError, match="fitted with 5 segments on 6 customers"):
        Segmenter(algorithm="spectral", n_clusters=5, stability_resamples=0).fit(frame)


def test_a_sampled_hdbscan_leaves_a_far_outlier_unassigned(blobs, tmp_path: Path) -> None:
    """A sampled HDBSCAN extended every customer by the nearest sampled one, however far:
    an outlier far from every fitted customer, which HDBSCAN would call noise, got a
    segment, in-process and from a saved model. It is unassigned now (the rule is
    HDBSCAN's mutual reachability), customers inside the clusters keep their segments,
    and the fitted customers get the segments HDBSCAN itself gave them."""
    from sklearn.cluster import HDBSCAN

    from segmint.bundle import load_model, save_model

    frame, truth = blobs
    # scattered customers between the blobs: the fitted sample has noise too
    scatter = np.random.default_rng(0).uniform(1, 5, size=(80, 3))
    frame = pd.concat([frame, pd.DataFrame(scatter, columns=frame.columns)], ignore_index=True)
    seg = Segmenter(
        algorithm="hdbscan",
        sample_size=300,
        log="none",
        scaler="none",
        stability_resamples=0,
        algorithm_params={"hdbscan": {"min_cluster_size": 20}},
    ).fit(frame)
    assert seg.sampled_
    # one far beyond each blob: its nearest sampled customer is in that blob
    far = pd.DataFrame({"a": [-60.0, 70.0, -5.0], "b": [-5.0, 70.0, 70.0], "c": [0.0, -5.0, 70.0]})
    inside = pd.DataFrame({"a": [0.1, 6.0, 0.0], "b": [0.0, 6.1, 6.0], "c": [0.0, 0.0, 5.9]})
    model = load_model(save_model(seg, tmp_path / "m.segmint", {}))
    for scorer in (seg, model):
        assert (scorer.predict(far) == NOISE).all()
        got = scorer.predict(inside)
        assert len(set(got)) == 3 and (got != NOISE).all()
        assert np.array_equal(got, seg.predict(inside))
    assert np.array_equal(model.predict(frame), seg.labels_)
    assert -1 in model.names  # the model says scoring can leave customers unassigned
    # the blobs' customers keep the segment of their blob (one segment per blob)
    blob = seg.labels_[: len(truth)]
    assert (blob != NOISE).mean() > 0.9
    assert adjusted_rand_score(truth[blob != NOISE], blob[blob != NOISE]) == 1.0
    # the fitted customers: HDBSCAN's own labels, where its fit saw them
    fitted = seg.assigner_.reference_
    own = HDBSCAN(min_cluster_size=20, copy=True).fit_predict(fitted)
    assert (own == NOISE).any() and (own != NOISE).sum() > 250
    assert np.array_equal(seg.assigner_.predict(fitted), own)
    assert (
        "extended to the rest by the segment of the sampled customer nearest in HDBSCAN's "
        "mutual reachability, or unassigned beyond every segment's reach"
    ) in seg.explain()


def test_a_sampled_optics_leaves_a_far_outlier_unassigned(tmp_path: Path) -> None:
    """A sampled OPTICS extended every customer by the nearest sampled one, however far:
    a customer far beyond every fitted one, which OPTICS would call noise, got a
    segment, in-process and from a saved model. It is unassigned now (the rule is
    OPTICS's reachability within each segment's limit), and the fitted customers keep
    the labels OPTICS itself gave them, visiting order and all."""
    from sklearn.cluster import OPTICS

    from segmint.bundle import load_model, save_model
    from segmint.segment import NearestAssigner, OpticsAssigner

    lines = make_transactions(n_customers=3000, seed=0).lines
    customers = customer_features(prepare(lines).cleaned).to_pandas()
    seg = Segmenter(
        algorithm="optics", sample_size=1000, random_state=0, stability_resamples=0
    ).fit(customers)
    assert seg.sampled_ and isinstance(seg.assigner_, OpticsAssigner)
    # customers of a segment spending a hundred times as much: far beyond every fitted
    # customer, yet nearest to sampled customers of a segment, whose segment they got
    some = customers[seg.labels_ == 1].head(3)
    far = some.assign(monetary=some["monetary"] * 100)
    nearest = NearestAssigner().fit(seg.assigner_.reference_, seg.assigner_.labels_)
    assert (nearest.predict(seg.transform_.transform(far)) != NOISE).all()
    model = load_model(save_model(seg, tmp_path / "m.segmint", {}))
    for scorer in (seg, model):
        assert (scorer.predict(far) == NOISE).all()
        assert np.array_equal(scorer.predict(customers), seg.labels_)
    assert -1 in model.names  # the model says scoring can leave customers unassigned
    # customers the sample did not hold still get segments: most of them, as in the fit
    assert (seg.labels_ != NOISE).mean() > 0.6
    # the fitted customers: OPTICS's own labels, where its fit saw them
    fitted = seg.assigner_.reference_
    own = OPTICS(**seg.model_.get_params()).fit_predict(fitted)
    assert (own == NOISE).any() and len(set(own) - {NOISE}) >= 3
    assert np.array_equal(seg.assigner_.predict(fitted), own)
    assert (
        "extended to the rest by the segment of the sampled customer with the smallest "
        "OPTICS reachability to it, or unassigned beyond the largest reachability inside "
        "every segment"
    ) in seg.explain()


def test_stability_refits_print_no_joblib_warning_from_another_thread(tmp_path: Path) -> None:
    """Stability refits ran in threads, and scikit-learn's joblib wrapper empties the
    process-wide warning filters in each task (Python 3.11): a refit whose neighbour
    search started a Parallel in that moment printed "`sklearn.utils.parallel.delayed`
    should be used with `sklearn.utils.parallel.Parallel`" on stderr. A real process
    switching threads as often as it can showed it in 5 of 5 runs of these 30 fits."""
    import subprocess
    import sys

    script = tmp_path / "refits.py"
    script.write_text(
        "import sys\n"
        "sys.setswitchinterval(1e-6)\n"
        "import pandas as pd\n"
        "from sklearn.datasets import make_blobs\n"
        "from segmint import Segmenter\n"
        "X, _ = make_blobs(n_samples=80, centers=3, random_state=0)\n"
        "frame = pd.DataFrame(X, columns=['a', 'b'])\n"
        "for rep in range(30):\n"
        "    Segmenter(algorithm=['agglomerative_ward', 'dbscan'], k_range=(2, 3),\n"
        "              sample_size=40, stability_resamples=16, log='none',\n"
        "              random_state=rep).fit(frame)\n"
        "print('fitted')\n"
    )
    res = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=600, check=False
    )
    assert res.returncode == 0 and res.stdout.strip() == "fitted", res.stderr
    assert "should be used with" not in res.stderr


def test_concurrent_predictions_print_no_joblib_warning(tmp_path: Path) -> None:
    """``segmint serve`` predicts in several threads at once. The nearest-neighbour
    rules of density and sampled models asked ``NearestNeighbors.kneighbors``, which
    goes through scikit-learn's joblib wrapper: its tasks empty the process-wide warning
    filters (Python 3.11), and a prediction in another thread then printed
    "`sklearn.utils.parallel.delayed` should be used with `sklearn.utils.parallel.
    Parallel`" (hundreds of times in these predictions). The rules query their KD-tree
    directly now; a saved model gives the segments it gave in the process that fitted it.
    """
    import subprocess
    import sys

    script = tmp_path / "predict.py"
    script.write_text(
        "import sys, threading\n"
        "import numpy as np, pandas as pd\n"
        "from sklearn.datasets import make_blobs\n"
        "from segmint import Segmenter\n"
        "from segmint.bundle import load_model, save_model\n"
        "X, _ = make_blobs(n_samples=600, centers=[[0, 0], [8, 8], [0, 8]], random_state=0)\n"
        "frame = pd.DataFrame(X, columns=['a', 'b'])\n"
        "models = []\n"
        "for alg in ('agglomerative_ward', 'dbscan', 'hdbscan', 'optics'):\n"
        "    seg = Segmenter(algorithm=alg, n_clusters=3, sample_size=300, log='none',\n"
        "                    stability_resamples=0, random_state=0).fit(frame)\n"
        "    model = load_model(save_model(seg, f'{sys.argv[1]}/{alg}.segmint', {}))\n"
        "    assert np.array_equal(model.predict(frame), seg.labels_), alg\n"
        "    models.append(model)\n"
        "sys.setswitchinterval(1e-6)\n"
        "def work():\n"
        "    for _ in range(150):\n"
        "        for model in models:\n"
        "            model.predict(frame.iloc[:2])\n"
        "threads = [threading.Thread(target=work) for _ in range(6)]\n"
        "for t in threads:\n"
        "    t.start()\n"
        "for t in threads:\n"
        "    t.join()\n"
        "print('predicted')\n"
    )
    res = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert res.returncode == 0 and res.stdout.strip() == "predicted", res.stderr
    assert "should be used with" not in res.stderr


def test_a_model_saved_with_the_nearest_neighbors_index_still_loads(blobs, tmp_path) -> None:
    """Bundles saved before the assigners kept a KD-tree hold a ``NearestNeighbors``
    (``nn_``) and no ``tree_``: they load and give the same segments."""
    from sklearn.neighbors import NearestNeighbors

    from segmint.bundle import load_model, save_model
    from segmint.segment import NearestAssigner

    frame, _ = blobs
    seg = Segmenter(
        algorithm="agglomerative_ward", n_clusters=3, sample_size=200, stability_resamples=0
    ).fit(frame)
    new = seg.assigner_
    old = NearestAssigner.__new__(NearestAssigner)
    old.__dict__.update(
        radius=None,
        reference_=new.reference_,
        labels_=new.labels_,
        nn_=NearestNeighbors(n_neighbors=1).fit(new.reference_),
    )
    seg.assigner_ = old
    model = load_model(save_model(seg, tmp_path / "old.segmint", {}))
    assert not hasattr(model.segmenter.assigner_, "tree_")
    np.testing.assert_array_equal(model.predict(frame), seg.labels_)


def _libgomp_settings(env: dict[str, str | None]) -> str:
    """What libgomp says it uses (``OMP_DISPLAY_ENV=VERBOSE``) when a fresh process
    imports segmint and then scikit-learn, with ``env`` over this environment (None
    removes a variable). libgomp reads its settings once, when it loads."""
    import os
    import subprocess
    import sys

    full = {**os.environ, "OMP_DISPLAY_ENV": "VERBOSE", **env}
    res = subprocess.run(
        [sys.executable, "-c", "import segmint, sklearn.cluster; print('ok')"],
        capture_output=True,
        text=True,
        env={k: v for k, v in full.items() if v is not None},
        timeout=300,
        check=False,
    )
    assert res.returncode == 0 and res.stdout.strip() == "ok", res.stderr
    return res.stderr


@pytest.mark.parametrize(
    ("given", "spin"),
    [(None, "0"), ("", "0"), ("ACTIVE", "30000000000")],
    ids=["unset", "empty", "user-active"],
)
def test_openmp_threads_sleep_while_waiting_unless_the_user_says_otherwise(
    given: str | None, spin: str
) -> None:
    """scikit-learn's OpenMP runtime (libgomp) spins idle threads by default; beside
    OpenBLAS' own threads, or other work on the machine, K-Means fits took 10 to 30
    times longer (benchmarks/threads.py). Importing segmint before scikit-learn makes
    waiting threads sleep. libgomp reads the setting once when it loads, so this runs in
    a fresh process and asks libgomp itself (``OMP_DISPLAY_ENV``) what it uses: a spin
    count of 0 is the passive policy. A user's own value wins; an empty one (libgomp's
    "invalid value") counts as unset."""
    said = _libgomp_settings({"OMP_WAIT_POLICY": given, "GOMP_SPINCOUNT": None})
    assert f"GOMP_SPINCOUNT = '{spin}'" in said, said
    assert "Invalid value" not in said


@pytest.mark.parametrize(
    ("segmint_threads", "omp_threads", "expected"),
    [("5", None, "5"), ("5", "3", "3"), ("lots", None, None), ("", None, None)],
    ids=["segmint-threads", "user-omp-wins", "not-a-number", "empty"],
)
def test_segmint_threads_caps_the_openmp_threads_of_model_fitting(
    segmint_threads: str, omp_threads: str | None, expected: str | None
) -> None:
    """SEGMINT_THREADS (``--threads``) capped DuckDB only, and scikit-learn's OpenMP
    still took every core of a shared server. Importing segmint now passes it on to
    libgomp, which reads it once when it loads: asked in a fresh process
    (``OMP_DISPLAY_ENV``). The user's OMP_NUM_THREADS wins; a value that is not a
    thread count changes nothing here (connecting the engine refuses it)."""
    import os

    said = _libgomp_settings({"SEGMINT_THREADS": segmint_threads, "OMP_NUM_THREADS": omp_threads})
    default = str(len(os.sched_getaffinity(0)))  # libgomp's own choice: the usable cores
    assert f"OMP_NUM_THREADS = '{expected or default}'" in said, said


def test_models_are_fitted_with_one_blas_thread_and_the_setting_is_restored() -> None:
    """Segmenter.fit limits BLAS to one thread while it fits (a few-column matrix gains
    nothing from more, and on a busy machine they wait on each other: Gaussian mixtures
    took up to 3.9x as long; benchmarks/threads.py), and gives the user's setting back
    afterwards, also when the fit fails."""
    from threadpoolctl import threadpool_info

    def blas_threads() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas_threads()
    seen: list[set[int]] = []
    X, _ = make_blobs(n_samples=300, centers=3, random_state=0)
    frame = pd.DataFrame(X, columns=["a", "b"])
    Segmenter(algorithm=["kmeans", "gmm"], k_range=(2, 4), log="none", random_state=0).fit(
        frame, progress=lambda done, total, what: seen.append(blas_threads())
    )
    assert seen and all(s == {1} for s in seen), seen
    assert blas_threads() == before
    with pytest.raises(DataQualityError):
        Segmenter(algorithm=["kmeans"], log="none").fit(frame.head(2))
    assert blas_threads() == before


def test_no_candidate_passing_the_rule_is_a_warning_not_a_rule_applied() -> None:
    """With no candidate passing the thresholds (OPTICS and DBSCAN on Online Retail:
    a segment of 99 % of the customers) the explanation read "Rule: among the 0
    candidates with stability of at least 0.6 ..." and had no warning, although a lone
    failing candidate gets one."""
    feats = _persona_features(3, n=600)
    seg = Segmenter(
        algorithm="kmeans", k_range=(2, 4), min_segment_share=0.45, stability_resamples=0
    ).fit(feats)
    assert not seg.selection_["eligible"].any()
    text = seg.explain()
    assert "among the 0 candidates" not in text and "Rule:" not in text
    assert "Warning: no candidate passed the selection rule (stability of at least" in text
    assert "try other algorithms or numbers of segments" in text
    passing = Segmenter(algorithm="kmeans", k_range=(2, 4), stability_resamples=0).fit(feats)
    assert "Rule: among the 3 candidates with stability" in passing.explain()
    assert "Warning" not in passing.explain()


def test_a_density_winner_outside_the_searched_counts_says_so() -> None:
    """`--algorithm kmeans,hdbscan --k-min 3 --k-max 5` chose HDBSCAN with 7 segments and
    explained it as "(K-Means, HDBSCAN; 3 to 5 segments)" without a word on the 7."""
    feats = _persona_features(0, n=1500)
    seg = Segmenter(
        algorithm=["kmeans", "hdbscan"], k_range=(2, 3), stability_resamples=0, random_state=0
    ).fit(feats)
    assert seg.algorithm_ == "hdbscan" and seg.n_segments_ == 7
    assert "HDBSCAN finds its own number of segments: its 7 are outside the 2 to 3" in (
        seg.explain()
    )
    del seg.k_range_capped_  # a model saved before the attribute existed still explains
    assert "its 7 are outside the 2 to 3" in seg.explain()
    wide = Segmenter(
        algorithm=["kmeans", "hdbscan"], k_range=(2, 8), stability_resamples=0, random_state=0
    ).fit(feats)
    assert wide.algorithm_ == "hdbscan" and "are outside" not in wide.explain()


def test_parameters_of_an_algorithm_not_searched_are_named(caplog) -> None:
    """`algorithm_params = {gmm = {...}}` with `algorithm = "kmeans"` was dropped without
    a word; a warning now names it (a warning: a segmint.toml may keep them for another
    run's --algorithm)."""
    X = pd.DataFrame(np.random.RandomState(0).rand(200, 3), columns=["a", "b", "c"])
    params = {"gmm": {"n_init": 2}, "kmeans": {"n_init": 3}}
    with caplog.at_level("WARNING", logger="segmint.segment.segmenter"):
        Segmenter(algorithm="kmeans", n_clusters=3, algorithm_params=params).fit(X)
    said = [r.getMessage() for r in caplog.records if "algorithm_params" in r.getMessage()]
    assert said == ["algorithm_params for gmm not used: it is not searched (algorithm: kmeans)"]
    caplog.clear()
    with caplog.at_level("WARNING", logger="segmint.segment.segmenter"):
        Segmenter(algorithm=["kmeans", "gmm"], n_clusters=3, algorithm_params=params).fit(X)
    assert not [r for r in caplog.records if "algorithm_params" in r.getMessage()]
