"""Segment profiles, business names and actions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmint import Segmenter
from segmint.datasets import make_transactions
from segmint.errors import ConfigError, DataQualityError, WrongTypeError
from segmint.features import customer_features
from segmint.pipeline import prepare
from segmint.profile import ACTIONS, NOISE_NAME, name_segments, profile


def test_hand_checked_profile() -> None:
    t = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "recency_days": [5.0, 7, 300, 320, 340],
            "frequency": [10, 8, 1, 1, 2],
            "monetary": [1000.0, 600, 50, 30, 20],
        }
    )
    p = profile(t, [1, 1, 0, 0, 0], rfm_segments=["A", "A", "B", "B", "C"])
    tab = p.table.set_index("segment_id")
    assert list(tab.index) == [0, 1]
    assert tab.loc[1, "size"] == 2 and tab.loc[0, "size"] == 3
    assert tab.loc[1, "share_customers"] == pytest.approx(0.4)
    assert tab.loc[1, "share_revenue"] == pytest.approx(1600 / 1700)
    assert tab.loc[1, "revenue"] == pytest.approx(1600)
    assert tab.loc[0, "mean_monetary"] == pytest.approx(100 / 3)
    assert tab.loc[0, "median_recency_days"] == 320
    # index: segment mean against the mean of all customers (340), x100
    assert tab.loc[1, "index_monetary"] == pytest.approx(100 * 800 / 340)
    assert tab.loc[0, "top_rfm_segments"] == "B 67%; C 33%"
    assert "rfm_rule_set" not in tab.columns  # not known: not made up
    assert p.overall["frequency"] == {"mean": 4.4, "median": 2.0}
    assert p.crosstab.loc[tab.loc[1, "name"], "A"] == 2
    assert tab.loc[1, "description"].startswith("median: last purchase 6 days ago, 9 orders")
    noted = profile(t, [1, 1, 0, 0, 0], notes={1: "value tier: the top 40%"}).table
    assert noted["description"].tolist() == [
        tab.loc[0, "description"],
        "value tier: the top 40%; " + tab.loc[1, "description"],
    ]
    assert set(p.names()) == {0, 1} and len(set(p.names().values())) == 2
    for name in p.names().values():
        assert name.split(" (")[0] in ACTIONS


def test_segments_csv_names_the_rule_set_of_its_rfm_segments(tmp_path: Path) -> None:
    """top_rfm_segments ("Champions 67%") is followed by the rule set that named them,
    given or read from the table's rfm_rule_set column, and segments.csv keeps it."""
    t = pd.DataFrame({"recency_days": [1.0, 2, 90, 95], "frequency": [5, 6, 1, 1]})
    t["monetary"] = [500.0, 450, 20, 25]
    given = profile(t, [0, 0, 1, 1], rfm_segments=list("AABB"), rfm_rule_set="mine v2").table
    cols = list(given.columns)
    assert cols[cols.index("top_rfm_segments") + 1] == "rfm_rule_set"
    assert given["rfm_rule_set"].tolist() == ["mine v2", "mine v2"]
    t["rfm_segment"] = ["Champions", "Champions", "Lost", "Lost"]
    t["rfm_rule_set"] = "rfm-r-0.3 v1"
    p = profile(t, [0, 0, 1, 1], features=["recency_days", "frequency", "monetary"])
    written = pd.read_csv(p.write_csv(tmp_path / "segments.csv"))
    cols = list(written.columns)
    assert cols[cols.index("top_rfm_segments") + 1] == "rfm_rule_set"
    assert written["rfm_rule_set"].tolist() == ["rfm-r-0.3 v1", "rfm-r-0.3 v1"]
    assert written["top_rfm_segments"].tolist() == ["Champions 100%", "Lost 100%"]


def test_overrides_and_their_errors(tmp_path: Path) -> None:
    t = pd.DataFrame({"recency_days": [1.0, 2, 90, 95], "frequency": [5, 6, 1, 1]})
    t["monetary"] = [500.0, 450, 20, 25]
    p = profile(t, [0, 0, 1, 1], names={1: "Sleepers"}, actions={1: "Send a postcard"})
    assert p.names()[1] == "Sleepers"
    assert p.actions()[1] == "Send a postcard"
    row = p.table.set_index("segment_id").loc[1]
    assert row["reason"] == "set by the user" and row["auto_name"] != "Sleepers"
    assert profile(t, [0, 0, 1, 1], names=["X", "Y"]).names() == {0: "X", 1: "Y"}
    with pytest.raises(ConfigError, match="there is no segment 7"):
        profile(t, [0, 0, 1, 1], names={7: "Nope"})
    with pytest.raises(ConfigError, match="names must be unique"):
        profile(t, [0, 0, 1, 1], names={0: "Same", 1: "Same"})
    with pytest.raises(DataQualityError, match="3 segment labels for 4 customers"):
        profile(t, [0, 0, 1])
    out = p.write_csv(tmp_path / "segments.csv")
    assert pd.read_csv(out)["name"].tolist() == p.table["name"].tolist()
    # segments.csv is opened in spreadsheets: a name is never run as a formula
    risky = profile(t, [0, 0, 1, 1], names={1: "=1+1"})
    written = pd.read_csv(risky.write_csv(tmp_path / "risky.csv")).set_index("segment_id")
    assert written.loc[1, "name"] == "'=1+1" and risky.names()[1] == "=1+1"
    assert written["mean_monetary"].tolist() == risky.table["mean_monetary"].tolist()


def test_noise_segment_and_duplicate_names_are_made_unique() -> None:
    positions = pd.DataFrame(
        {
            "recency": [0.9, 0.8, 0.5, 0.1],
            "frequency": [0.2, 0.3, 0.2, 0.9],
            "monetary": [0.2, 0.2, 0.2, 0.9],
            "age": [0.6, 0.7, 0.5, 0.8],
            "median_monetary": [10.0, 12, 9, 900],
        },
        index=pd.Index([0, 1, 2, -1], name="segment_id"),
    )
    positions["value"] = (positions["frequency"] + positions["monetary"]) / 2
    names = name_segments(positions)
    assert names[-1] == NOISE_NAME
    assert names[0] == "Dormant (lapsed)" and names[1] == "Dormant (recent)"
    assert names[2] == "Occasional low spenders"


def test_qualifiers_follow_their_axis_and_every_position_has_its_name() -> None:
    """The lower-spend twin is "(lower spend)" (the pairs were reversed for frequency and
    monetary), three twins get a middle qualifier, and a valuable segment at recency
    0.47 is a potential loyalist (it fell through to "Occasional low spenders")."""
    positions = pd.DataFrame(
        {
            "recency": [0.7, 0.7, 0.3, 0.3, 0.3, 0.47],
            "frequency": [0.6, 0.6, 0.1, 0.3, 0.2, 0.65],
            "monetary": [0.55, 0.78, 0.2, 0.2, 0.2, 0.6],
            "age": [0.5, 0.5, 0.5, 0.5, 0.5, 0.5],
            "median_monetary": [100.0, 120, 10, 10, 10, 70],
        },
        index=pd.Index([0, 1, 2, 3, 4, 5], name="segment_id"),
    )
    positions["value"] = (positions["frequency"] + positions["monetary"]) / 2
    names = name_segments(positions)
    assert names[0] == "At risk (lower spend)" and names[1] == "At risk (higher spend)"
    assert names[2] == "Occasional low spenders (infrequent)"
    assert names[4] == "Occasional low spenders (regular)"
    assert names[3] == "Occasional low spenders (frequent)"
    assert names[5] == "Potential loyalists"


def test_twins_are_told_apart_on_the_axis_where_each_pair_differs() -> None:
    """Three "Potential loyalists" on Online Retail were qualified by age, where two of
    them were 1.5 days apart ("long-standing" and "established") while their spend
    differed threefold. The axis is now the one whose closest two segments are furthest
    apart, not the one with the widest spread."""
    positions = pd.DataFrame(
        {
            "recency": [0.3, 0.3, 0.3],
            "frequency": [0.1, 0.2, 0.3],
            "monetary": [0.2, 0.2, 0.2],
            "age": [0.45, 0.80, 0.81],  # widest spread, but two nearly equal
            "median_monetary": [10.0, 10, 10],
        },
        index=pd.Index([0, 1, 2], name="segment_id"),
    )
    positions["value"] = (positions["frequency"] + positions["monetary"]) / 2
    names = name_segments(positions)
    assert names == {
        0: "Occasional low spenders (infrequent)",
        1: "Occasional low spenders (regular)",
        2: "Occasional low spenders (frequent)",
    }


def test_categorical_features_are_profiled_and_name_twins_they_split() -> None:
    """Segmented with ``--categorical last_channel`` (FLO), two segments alike on
    recency, frequency and spend differ in their main channel; the profile showed no
    channel at all and called them "(newer)" and "(long-standing)" for 3 percentile
    points of age. Each segment now has ``top_last_channel``, and such twins are named
    by their main value; twins far apart on an RFM axis keep that axis' qualifier."""
    rng = np.random.default_rng(0)
    n = 200  # customers per segment: 0 and 1 drawn alike; 2 and 3 apart on recency
    recency = [rng.uniform(5, 60, 2 * n), rng.uniform(200, 260, n), rng.uniform(300, 400, n)]
    table = pd.DataFrame(
        {
            "recency_days": np.concatenate([*recency, rng.uniform(1, 5, n)]),
            "frequency": np.concatenate([rng.integers(3, 6, 2 * n), rng.integers(1, 3, 3 * n)]),
            "monetary": np.concatenate([rng.uniform(300, 600, 2 * n), rng.uniform(10, 900, 3 * n)]),
            "tenure_days": np.concatenate([rng.uniform(100, 300, 2 * n), np.zeros(3 * n)]),
            "last_channel": ["Offline"] * n + ["Android App"] * n + ["Mobile"] * (3 * n),
        }
    )
    labels = np.repeat([0, 1, 2, 3, 4], n)
    p = profile(table, labels, categorical=["last_channel"])
    t = p.table.set_index("segment_id")
    assert t.loc[0, "top_last_channel"] == "Offline 100%"
    assert t.loc[2, "top_last_channel"] == "Mobile 100%"
    names = p.names()
    assert names[0] == "Potential loyalists (Offline)"
    assert names[1] == "Potential loyalists (Android App)"
    # the same main value, far apart on RFM axes: an RFM qualifier stays
    assert names[2] == "Dormant (newer)" and names[3] == "Dormant (long-standing)"
    assert profile(table, labels).names()[0] == "Potential loyalists (newer)"  # as before
    assert p.meta["categorical"] == ["last_channel"]
    with pytest.raises(ConfigError, match="country"):
        profile(table, labels, categorical=["country"])


def test_only_lapsed_names_get_lapsed_qualifiers() -> None:
    """FLO segmented on recency, frequency, monetary and two category flags: two "Loyal
    high spenders" 61 and 80 days after their last purchase (the base's median: 110
    days) became "(recent)" and "(lapsed)", and a Loyal or Occasional segment is not
    lapsed by its own name's rule. Dormant and At risk twins keep "recent"/"lapsed"."""
    positions = pd.DataFrame(
        {
            "recency": [0.323, 0.391, 0.301, 0.403, 0.345, 0.715, 0.882, 0.308],
            "frequency": [0.758, 0.823, 0.346, 0.346, 0.346, 0.346, 0.346, 0.971],
            "monetary": [0.75, 0.78, 0.25, 0.28, 0.27, 0.28, 0.29, 0.97],
            "age": [0.6, 0.62, 0.3, 0.32, 0.31, 0.5, 0.52, 0.8],
            "median_monetary": [900.0, 976, 342, 363, 350, 366, 373, 2296],
        },
        index=pd.Index(range(8), name="segment_id"),
    )
    positions["value"] = (positions["frequency"] + positions["monetary"]) / 2
    names = name_segments(positions)
    assert names[0] == "Loyal high spenders (more recent)"
    assert names[1] == "Loyal high spenders (less recent)"
    assert [names[i] for i in (2, 4, 3)] == [
        "Occasional low spenders (more recent)",
        "Occasional low spenders (mid recency)",
        "Occasional low spenders (less recent)",
    ]
    assert names[5] == "Dormant (recent)" and names[6] == "Dormant (lapsed)"
    assert names[7] == "Champions"
    assert not any("lapsed" in n or "lapsing" in n for i, n in names.items() if i < 5)


def test_high_value_segments_near_the_thresholds_are_not_potential_loyalists() -> None:
    """A segment in the top fifth by value at the typical recency, just under the Big
    spenders bar (monetary 0.78, frequency 0.86), was "Potential loyalists", told to
    "turn them into regulars": they buy more often than 86 % of the customers."""
    positions = pd.DataFrame(
        {
            "recency": [0.50, 0.45, 0.50, 0.20, 0.80],
            "frequency": [0.86, 0.72, 0.60, 0.90, 0.20],
            "monetary": [0.78, 0.79, 0.60, 0.90, 0.20],
        },
        index=pd.Index([0, 1, 2, 3, 4], name="segment_id"),
    ).assign(age=0.5, median_monetary=[5.0, 4.0, 3.0, 9.0, 1.0])
    positions["value"] = (positions["frequency"] + positions["monetary"]) / 2
    names = name_segments(positions)
    # the regular high spender at the typical recency, beside the top tier's one
    assert names[3] == "Loyal high spenders (more recent)"
    assert names[0] == "Loyal high spenders (less recent)"  # at the typical recency
    assert names[1] == "Big spenders"  # value 0.755, monetary just under 0.80
    assert names[2] == "Potential loyalists"  # value 0.60: above the median only
    assert names[4] == "Dormant"
    # on a whole profile: the action follows the name
    rng = np.random.default_rng(1)
    n = 1000
    frame = pd.DataFrame(
        {
            "recency_days": rng.uniform(1, 365, n),
            "frequency": rng.uniform(1, 20, n),
            "monetary": rng.uniform(10, 1000, n),
        }
    )
    # segment 1: middling recency, frequency near the top, monetary just under 0.80
    q = frame.quantile
    high = frame.index[:100]
    frame.loc[high, "recency_days"] = q(0.5)["recency_days"]
    frame.loc[high, "frequency"] = q(0.86)["frequency"]
    frame.loc[high, "monetary"] = q(0.78)["monetary"]
    labels = np.zeros(n, int)
    labels[:100] = 1
    table = profile(frame, labels).table.set_index("segment_id")
    assert table.loc[1, "name"] == "Loyal high spenders"
    assert "regulars" not in table.loc[1, "action"]


def test_naming_boundaries_percentile_ties_and_the_caveat_threshold() -> None:
    """Boundaries no other test held (found by mutation testing): recency 0.55 is already
    "At risk" for a valuable segment; tied values count half in a percentile; a lapsed
    segment of which exactly a fifth bought recently gets the caveat."""
    from segmint.profile import _percentile_of

    positions = pd.DataFrame(
        {"recency": [0.55, 0.57, 0.54], "frequency": [0.6] * 3, "monetary": [0.6] * 3},
        index=pd.Index([0, 1, 2], name="segment_id"),
    ).assign(age=0.5, median_monetary=[1.0, 2.0, 3.0], value=0.6)
    names = name_segments(positions)
    assert names[2] == "Potential loyalists"
    assert {names[0], names[1]} == {"At risk (recent)", "At risk (lapsed)"}
    values = np.array([1.0, 1, 1, 1, 2, 3])
    assert _percentile_of(values, 1.0) == pytest.approx(2 / 6)  # (0 below + 4/2) / 6
    assert _percentile_of(values, 2.0) == pytest.approx(4.5 / 6)
    # 20 customers: 10 recent ones (segment 0) and 10 lapsed ones (segment 1), of which
    # exactly 2 (20 %) bought as recently as the typical customer
    recency = np.r_[np.arange(1.0, 11.0), [5.0, 6.0], np.arange(300.0, 308.0)]
    frame = pd.DataFrame(
        {
            "recency_days": recency,
            "frequency": np.r_[np.full(10, 9.0), np.full(10, 1.0)],
            "monetary": np.r_[np.full(10, 900.0), np.full(10, 10.0)],
        }
    )
    labels = np.r_[np.zeros(10, int), np.ones(10, int)]
    table = profile(frame, labels).table.set_index("segment_id")
    assert table.loc[1, "name"] == "Dormant"
    typical = np.median(recency)
    assert np.mean(recency[labels == 1] <= typical) == 0.2
    assert "but 20% of them bought in the last" in table.loc[1, "description"]


def test_a_lapsed_name_warns_when_many_of_its_customers_bought_recently() -> None:
    """A coarse segmentation can call a segment "Dormant" from its medians while a
    quarter of it bought as recently as the typical customer: the description says so."""
    rng = np.random.default_rng(0)
    recency = np.concatenate([rng.uniform(1, 40, 200), rng.uniform(150, 300, 150),
                              rng.uniform(5, 30, 50)])  # fmt: skip
    frame = pd.DataFrame(
        {
            "recency_days": recency,
            "frequency": np.r_[rng.integers(5, 20, 200), rng.integers(1, 3, 200)].astype(float),
            "monetary": np.r_[rng.uniform(1000, 5000, 200), rng.uniform(50, 300, 200)],
        }
    )
    labels = np.r_[np.zeros(200, int), np.ones(200, int)]
    table = profile(frame, labels).table.set_index("segment_id")
    assert table.loc[1, "name"] == "Dormant"
    typical = np.median(recency)
    share = np.mean(recency[labels == 1] <= typical)
    assert share >= 0.2
    assert (
        f"but {share:.0%} of them bought in the last {typical:,.0f} days"
        in (table.loc[1, "description"])
    )
    assert "but" not in table.loc[0, "description"]


@pytest.fixture(scope="module")
def personas_named() -> pd.DataFrame:
    lines, personas = make_transactions(n_customers=3000, seed=4)
    feats = customer_features(prepare(lines).cleaned).to_pandas()
    seg = Segmenter(random_state=0).fit(feats)
    p = profile(feats, seg.labels_)
    feats["name"] = p.table.set_index("segment_id")["name"].reindex(seg.labels_).to_numpy()
    return feats.merge(personas, on="customer_id")


@pytest.mark.parametrize(
    ("persona", "name"),
    [
        ("champions", "Champions"),
        ("at_risk", "At risk"),
        ("new", "New customers"),
        ("loyal", "Loyal high spenders"),
        ("hibernating", "Dormant"),
        ("big_spenders", "Big spenders"),
        ("one_timers", "Occasional low spenders"),
    ],
)
def test_planted_personas_get_the_matching_names(personas_named, persona, name) -> None:
    got = personas_named.loc[personas_named["persona"] == persona, "name"].value_counts()
    assert got.index[0] == name, got
    assert got.iloc[0] / got.sum() > 0.7


def test_online_retail_recipe_names_match_the_published_characterisation(online_retail) -> None:
    feats = customer_features(prepare(online_retail).cleaned).to_pandas()
    seg = Segmenter(
        features=["recency_days", "frequency", "monetary"],
        log=["frequency", "monetary"],
        algorithm="kmeans",
        n_clusters=4,
        algorithm_params={"kmeans": {"n_init": 10}},
        stability_resamples=0,
        random_state=42,
    ).fit(feats)
    p = profile(feats, seg.labels_)
    # the source project: occasional buyers, loyal high spenders, dormant, potential loyalists
    assert set(p.names().values()) == {
        "Occasional low spenders",
        "Loyal high spenders",
        "Dormant",
        "Potential loyalists",
    }
    tab = p.table.set_index("name")
    assert tab.loc["Loyal high spenders", "share_revenue"] > 0.5
    assert tab.loc["Dormant", "median_recency_days"] > 180
    assert np.isclose(p.table["share_customers"].sum(), 1.0)
    assert np.isclose(p.table["share_revenue"].sum(), 1.0)


def test_an_empty_name_or_one_text_for_all_names_is_refused() -> None:
    """`names={0: ""}` listed a segment with no name (the CLI refused `--name 0=`), and
    `names="Best"` named the segments "B", "e", "s", "t"."""
    frame = pd.DataFrame(
        {
            "customer_id": list("abcdef"),
            "recency_days": [1, 2, 3, 40, 50, 60],
            "frequency": [5, 6, 7, 1, 1, 2],
            "monetary": [100.0, 200, 300, 10, 20, 30],
        }
    )
    labels = [0, 0, 0, 1, 1, 1]
    with pytest.raises(ConfigError, match="segment 0 is given an empty name"):
        profile(frame, labels, names={0: " "})
    with pytest.raises(WrongTypeError, match="names is one text"):
        profile(frame, labels, names="Best")
    assert profile(frame, labels, names={0: "Top"}).table["name"].tolist()[0] == "Top"
