"""Future-validated segmentation: outcomes, η² and retention AUC checked independently,
the honest choice by the future on Online Retail, `segmint backtest`, `--select-by future`."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from segmint.backtest import _choose_future, _future_rule, backtest, segment_metrics
from segmint.datasets import make_transactions
from segmint.errors import ConfigError

CUTOFF, SELECT_CUTOFF, HORIZON = "2011-09-01", "2011-06-01", "90D"


def _eta2_by_regression(labels: np.ndarray, y: np.ndarray) -> float:
    """η² as the R² of a least-squares fit of y on segment dummies."""
    dummies = pd.get_dummies(pd.Series(labels).astype(str)).to_numpy(float)
    coef, *_ = np.linalg.lstsq(dummies, y, rcond=None)
    resid = y - dummies @ coef
    return 1 - float(resid @ resid) / float(((y - y.mean()) ** 2).sum())


def _auc_by_mann_whitney(labels: np.ndarray, bought: np.ndarray) -> float:
    """AUC of the segment repeat rate, as the Mann-Whitney U statistic / (n1 n0)."""
    frame = pd.DataFrame({"g": pd.Series(labels).astype(str), "b": bought})
    rate = frame.groupby("g")["b"].transform("mean").to_numpy()
    u = stats.mannwhitneyu(rate[bought], rate[~bought]).statistic
    return float(u) / (bought.sum() * (~bought).sum())


def test_segment_metrics_agree_with_independent_formulas() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 5, 2000)
    y = rng.gamma(1 + labels, 50.0) * (rng.random(2000) < 0.3 + 0.1 * labels)
    bought = y > 0
    m = segment_metrics(labels, y, bought)
    assert m["eta2"] == pytest.approx(_eta2_by_regression(labels, y), abs=1e-9)
    assert m["retention_auc"] == pytest.approx(_auc_by_mann_whitney(labels, bought), abs=1e-9)
    assert m["n_segments"] == 5
    # one segment explains nothing; chance-level AUC
    one = segment_metrics(np.zeros(100), np.arange(100.0), np.arange(100) % 2 == 0)
    assert one["eta2"] == 0 and one["retention_auc"] == 0.5


@pytest.fixture(scope="module")
def retail_backtest(online_retail: Path):
    return backtest(
        online_retail, cutoff=CUTOFF, horizon=HORIZON, select_cutoff=SELECT_CUTOFF, k_max=8
    )


@pytest.mark.datasets
@pytest.mark.slow
def test_backtest_on_online_retail_checked_independently(
    retail_backtest, retail_pandas: pd.DataFrame
) -> None:
    r = retail_backtest
    c = r.customers
    assert str(r.cutoff) == CUTOFF
    # the population: everyone who bought before the cutoff (after cleaning)
    raw = retail_pandas.assign(InvoiceDate=pd.to_datetime(retail_pandas["InvoiceDate"]))
    raw = raw[raw["CustomerID"].notna()]
    before = raw[
        (raw["InvoiceDate"] < CUTOFF)
        & ~raw["InvoiceNo"].str.startswith("C")
        & (raw["Quantity"] > 0)
        & (raw["UnitPrice"] > 0)
    ]
    assert abs(len(c) - before["CustomerID"].nunique()) <= 10
    # outcomes from the raw file with pandas (no segmint cleaning: non-product lines and
    # duplicates make small differences)
    end = pd.Timestamp(CUTOFF) + pd.Timedelta(days=90)
    w = raw[(raw["InvoiceDate"] >= CUTOFF) & (raw["InvoiceDate"] < end)]
    buys = w[~w["InvoiceNo"].str.startswith("C") & (w["Quantity"] > 0) & (w["UnitPrice"] > 0)]
    bought = c["customer_id"].isin(set(buys["CustomerID"].astype(str))).to_numpy()
    assert (bought != c["purchased"].to_numpy()).sum() <= 10
    revenue = (
        (w["Quantity"] * w["UnitPrice"])
        .groupby(w["CustomerID"].astype(str))
        .sum()
        .reindex(c["customer_id"])
        .fillna(0)
        .to_numpy()
    )
    assert np.corrcoef(revenue, c["future_revenue"])[0, 1] > 0.999
    # every row: η² and AUC recomputed with other formulas, on segmint's outcomes exactly
    # and on the pandas outcomes within 0.01
    y, b = c["future_revenue"].to_numpy(), c["purchased"].to_numpy()
    for i, row in r.table.iterrows():
        labels = c[f"seg_{i}"].to_numpy()
        assert row["eta2"] == pytest.approx(_eta2_by_regression(labels, y), abs=1e-9)
        assert row["retention_auc"] == pytest.approx(_auc_by_mann_whitney(labels, b), abs=1e-9)
        assert row["eta2"] == pytest.approx(_eta2_by_regression(labels, revenue), abs=0.01)
        assert row["retention_auc"] == pytest.approx(_auc_by_mann_whitney(labels, bought), abs=0.01)
    kinds = set(r.table["kind"])
    assert kinds == {"chosen (future)", "chosen (geometry)", "recipe", "rfm", "candidate"}
    assert (r.table["n_segments"][r.table["kind"] != "rfm"] <= 8).all()


@pytest.mark.datasets
@pytest.mark.slow
def test_choice_by_the_future_beats_the_recipe_and_rf_grid(retail_backtest) -> None:
    """Chosen at 2011-06-01 (outcomes to 2011-08-30), judged at 2011-09-01."""
    t = retail_backtest.table.set_index("kind")
    fc = retail_backtest.future_choice
    assert str(fc.cutoff) == SELECT_CUTOFF
    chosen = t.loc["chosen (future)"]
    recipe = t.loc["recipe"]
    grid = retail_backtest.table[retail_backtest.table["candidate"] == "RFM segments (rf-grid v1)"]
    assert len(grid) == 1
    grid = grid.iloc[0]
    for other in (recipe, grid):
        assert chosen["eta2"] > other["eta2"]
        assert chosen["retention_auc"] > other["retention_auc"]
    # and the published figures of the issue (recipe 0.070 / 0.725, grid 0.033 / 0.719)
    assert chosen["eta2"] > 0.070 and chosen["retention_auc"] > 0.725
    assert chosen["n_segments"] <= 8
    # the target for eta² (0.15) is reached with a value tier of the top spenders (the
    # AUC target of 0.75 is above the cross-validated reference, see the next test)
    assert chosen["eta2"] >= 0.15
    assert fc.value_tier == 0.02 and chosen["value_tier"] == 0.02
    # every candidate was searched with and without the tier
    cands = retail_backtest.table[retail_backtest.table["kind"] == "candidate"]
    with_tier = cands["value_tier"].notna()
    assert with_tier.any() and (~with_tier).any()
    assert cands.loc[with_tier, "candidate"].str.endswith("+ top 2% tier").all()
    # the choice never saw the evaluated period's outcomes
    assert fc.describe()["cutoff"] == SELECT_CUTOFF
    assert fc.table["chosen"].sum() == 1


@pytest.mark.datasets
@pytest.mark.slow
def test_reference_score_is_out_of_fold_and_bounds_the_segments(retail_backtest) -> None:
    """The reference: a logistic regression fitted fold by fold (recomputed here with an
    explicit loop and a rank-sum AUC). Its AUC is the ceiling the README cites for the
    0.75 target: below 0.75 at this split, and no segmentation beats it by more than a
    hair."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    ref = retail_backtest.reference
    c = retail_backtest.customers
    cols = ref["features"]
    assert {"recency_days", "frequency", "monetary", "tenure_days"} <= set(cols)
    X = np.sign(c[cols].to_numpy(float)) * np.log1p(np.abs(c[cols].to_numpy(float)))
    y = c["purchased"].to_numpy(bool)
    score = np.empty(len(y))
    for train, test in StratifiedKFold(5, shuffle=True, random_state=0).split(X, y):
        scaler = StandardScaler().fit(X[train])
        model = LogisticRegression(max_iter=5000).fit(scaler.transform(X[train]), y[train])
        score[test] = model.predict_proba(scaler.transform(X[test]))[:, 1]
    u = stats.mannwhitneyu(score[y], score[~y]).statistic
    assert ref["retention_auc"] == pytest.approx(u / (y.sum() * (~y).sum()), abs=1e-9)
    assert 0.70 < ref["retention_auc"] < 0.75
    assert (retail_backtest.table["retention_auc"] <= ref["retention_auc"] + 0.01).all()


def _candidates(*rows: tuple[str, int, float, float, float]) -> pd.DataFrame:
    return pd.DataFrame(
        rows, columns=["candidate", "n_segments", "smallest_share", "eta2", "retention_auc"]
    )


def test_choice_by_the_future_skips_tiny_segments() -> None:
    """A candidate whose smallest segment is under min_share is not chosen however well
    it scores (a 1 % segment is no segment to act on); when no candidate passes, the
    best of all is taken rather than none."""
    table = _candidates(
        ("tiny", 4, 0.01, 0.30, 0.80),  # best on both, smallest segment 1 %
        ("ok", 4, 0.10, 0.20, 0.70),
        ("worse", 3, 0.20, 0.10, 0.60),
    )
    pos, out = _choose_future(table, 0.05)
    assert out.loc[pos, "candidate"] == "ok"
    assert out["chosen"].tolist() == [False, True, False]
    assert np.isnan(out.loc[0, "future_rank"])  # not ranked at all
    pos, _ = _choose_future(table, 0.5)  # nobody passes: rank them all
    assert table.loc[pos, "candidate"] == "tiny"


def test_choice_by_the_future_keeps_the_noise_limit() -> None:
    """A density candidate leaving most customers unassigned is not eligible by geometry
    (max_noise_share) and was still choosable by its future."""
    table = _candidates(("noisy", 3, 0.10, 0.30, 0.80), ("clean", 4, 0.10, 0.20, 0.70))
    table["noise_share"] = [0.55, 0.0]
    pos, out = _choose_future(table, 0.05, 0.25)
    assert out.loc[pos, "candidate"] == "clean"
    pos, _ = _choose_future(table, 0.05, 0.6)
    assert table.loc[pos, "candidate"] == "noisy"
    assert "at most 25% unassigned" in _future_rule(0.02, 0.25)


def test_choice_by_the_future_ties_go_to_fewer_segments() -> None:
    """Equal eta² and retention AUC: the simpler segmentation (fewer segments) wins, in
    whatever order the candidates come."""
    five = ("five", 5, 0.10, 0.25, 0.75)
    three = ("three", 3, 0.10, 0.25, 0.75)
    low = ("low", 2, 0.30, 0.05, 0.55)
    for rows in [(five, three, low), (three, five, low), (low, five, three)]:
        pos, out = _choose_future(_candidates(*rows), 0.05)
        assert out.loc[pos, "candidate"] == "three", rows
        assert out.loc[pos, "n_segments"] == 3
        assert out["chosen"].sum() == 1


def test_selection_split_must_not_overlap_the_evaluated_period() -> None:
    lines, _ = make_transactions(n_customers=100, seed=0)
    with pytest.raises(ConfigError, match="overlaps the evaluated period"):
        backtest(lines, cutoff="2011-09-01", select_cutoff="2011-08-01", horizon="90D")
    # "3M" is 91.3125 days: from 2011-06-01 its outcomes run to 2011-08-31 07:30, inside
    # a period starting 2011-08-31 (a date plus the days dropped the quarter day)
    with pytest.raises(ConfigError, match="overlaps the evaluated period") as err:
        backtest(lines, cutoff="2011-08-31", select_cutoff="2011-06-01", horizon="3M")
    assert "on or before 2011-05-31" in err.value.hint


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, pd.DataFrame]:
    lines, truth = make_transactions(n_customers=600, seed=4)
    path = tmp_path_factory.mktemp("bt") / "shop.csv"
    lines.to_csv(path, index=False)
    return path, lines


def test_cli_backtest_prints_every_candidate(cli, shop, tmp_path: Path) -> None:
    path, lines = shop
    dates = pd.to_datetime(lines["InvoiceDate"])
    cutoff = (dates.max() - pd.Timedelta(days=90)).date()
    out = tmp_path / "bt.json"
    r = cli("backtest", path, "--cutoff", cutoff, "--horizon", "60D", "--k-max", "5", "--out", out)
    assert r.code == 0, r.err
    info = json.loads(out.read_text())
    assert info["cutoff"] == str(cutoff)
    names = [row["candidate"] for row in info["candidates"]]
    assert "recipe: log + StandardScaler + K-Means k=4" in names
    assert "RFM segments (rf-grid v1)" in names
    # the table may wrap long names on a narrow console: check each name's first word
    for name in names:
        assert name.split()[0] in r.out, name
    assert "Retention AUC" in " ".join(r.out.split()) and "eta²" in r.out
    bad = cli("backtest", path, "--cutoff", "1990-01-01")
    assert bad.code == 2 and "Traceback" not in bad.err
    typo = cli("backtest", path, "--cutoff", "2011-13-01")
    assert typo.code == 2 and "cutoff '2011-13-01' is not a date" in typo.err


def test_lifetime_value_features_are_refused_by_name(cli, shop, tmp_path: Path) -> None:
    path, _ = shop
    """Segment features that are lifetime value columns (allowed in a plain run) have no
    BG/NBD fit at a cutoff: the back-test and --select-by future failed after the
    features with "fit: feature column(s) ['clv_value'] not in the customer table"."""
    toml = tmp_path / "segmint.toml"
    toml.write_text('[segment]\nfeatures = ["recency_days", "frequency", "clv_value"]\n')
    r = cli("backtest", path, "--cutoff", "2011-06-01", "--config", toml)
    assert r.code == 2 and "Traceback" not in r.err
    flat = " ".join(r.err.split())
    assert "segment.features names lifetime value (clv_value)" in flat
    assert "in the --config file" in flat
    out = tmp_path / "run"
    f = cli("run", path, "--out", out, "--select-by", "future", "--config", toml)
    assert f.code == 2 and not out.exists()
    assert "--features (segment.features) names lifetime value" in " ".join(f.err.split())


def test_a_cutoff_after_the_data_is_refused_naming_a_cutoff_that_fits(cli, shop) -> None:
    """A cutoff after the last purchase has nothing after it to judge the segments by:
    it failed after the features, with a logged warning on recency and "no customer
    bought anything in the 90D after 2030-01-01". Now refused at once, naming the last
    purchase and the latest cutoff whose horizon fits in the data."""
    path, lines = shop
    # a bad horizon is named as typed (it was "horizon '90X'"), before the data are read
    r = cli("backtest", path.with_name("none.csv"), "--cutoff", "2011-01-01", "--horizon", "90X")
    assert r.code == 2 and "--horizon '90X' is not a length of time" in r.err
    r = cli("backtest", path, "--cutoff", "2030-01-01", "--horizon", "3M")
    assert r.code == 2 and "Traceback" not in r.err and "WARNING" not in r.err
    flat = " ".join(r.err.split())
    said = re.search(r"--cutoff 2030-01-01 is after the data's last purchase \((.+?)\)", flat)
    assert said, flat
    # the last kept purchase (the raw file's last line may be one the cleaning drops)
    last = pd.Timestamp(said.group(1))
    assert pd.Timedelta(0) <= pd.Timestamp(lines["InvoiceDate"].max()) - last < pd.Timedelta(days=2)
    fits = (last + pd.Timedelta(days=1) - pd.DateOffset(months=3)).date()
    assert f"e.g. --cutoff {fits}" in flat
    ok = cli("backtest", path, "--cutoff", str(fits), "--horizon", "3M")
    assert ok.code == 0, ok.err
    assert "run past the end of the data" not in " ".join(ok.err.split() + ok.out.split())


def test_backtest_table_csv_never_runs_a_formula(tmp_path: Path) -> None:
    """The back-test table is read in spreadsheets: a candidate named from a user's
    segment names ("=...") is written as text."""
    import datetime as dt

    from segmint.backtest import TABLE_COLUMNS, BacktestResult

    row = dict.fromkeys(TABLE_COLUMNS, 1.0) | {"candidate": "=cmd|' /C calc'!A0", "eta2": -0.5}
    result = BacktestResult(
        dt.date(2011, 9, 1), "90D", pd.DataFrame([row]), customers=pd.DataFrame()
    )
    written = pd.read_csv(result.write(tmp_path / "table.csv"))
    assert written.loc[0, "candidate"] == "'=cmd|' /C calc'!A0"
    assert written.loc[0, "eta2"] == -0.5


def test_a_horizon_cut_short_by_the_data_is_recorded_and_the_cutoff_named(
    cli, shop, tmp_path: Path
) -> None:
    """A horizon running past the end of the data was only a timestamped log line: the
    table's title said "bought in the next 90D", and the JSON (and --json) kept nothing
    of it. A cutoff before the first purchase was reported as "choose a later
    --snapshot-date", an option backtest does not have."""
    path, lines = shop
    kept = lines["CustomerID"].notna() & (lines["Quantity"] > 0) & (lines["UnitPrice"] > 0)
    dates = pd.to_datetime(lines.loc[kept, "InvoiceDate"])  # the lines cleaning keeps
    cutoff = (dates.max() - pd.Timedelta(days=30)).date()
    out = tmp_path / "bt.json"
    r = cli("backtest", path, "--cutoff", cutoff, "--horizon", "90D", "--k-max", "3", "--out", out)
    assert r.code == 0, r.err
    info = json.loads(out.read_text())
    end = (dates.max().normalize() + pd.Timedelta(days=1)).date()
    assert info["outcomes_until"] == str(end)
    seen = (end - cutoff).days
    assert len(info["notes"]) == 1 and f"observed for {seen} days of 90 only" in info["notes"][0]
    flat = " ".join(r.out.split())
    assert f"(observed until {end} only)" in flat
    assert f"observed for {seen} days of 90 only" in " ".join(r.err.split())
    whole = (dates.max() - pd.Timedelta(days=100)).date()
    ok = cli("backtest", path, "--cutoff", whole, "--horizon", "90D", "--k-max", "3", "--json")
    full = json.loads(ok.out)
    assert full["notes"] == [] and full["outcomes_until"] == str(whole + pd.Timedelta(days=90))
    early = cli("backtest", path, "--cutoff", "1990-01-01")
    assert early.code == 2 and "Traceback" not in early.err
    flat = " ".join(early.err.split())
    assert "before the --cutoff 1990-01-01" in flat and "choose a later --cutoff" in flat
    assert "--snapshot-date" not in flat


def test_month_horizons_are_calendar_months_as_the_window_counts_them() -> None:
    """ "3M" was 91.3125 days: the outcomes after 2011-09-01 ran to 2011-12-01 07:30, so a
    purchase at 06:00 that morning counted as bought within three months, although
    ``--window 3M`` and migration's ``--every 1M`` count calendar months."""
    import ibis

    from segmint.backtest import future_outcomes
    from segmint.clv import horizon_end, horizon_start

    lines = ibis.memtable(
        pd.DataFrame(
            {
                "customer_id": ["a", "b", "c", "d"],
                "invoice_id": ["1", "2", "3", "4"],
                "invoice_date": pd.to_datetime(
                    [
                        "2011-09-01 00:00",  # first moment of the horizon
                        "2011-11-30 23:59",  # last minute of the third month
                        "2011-12-01 06:00",  # the next month: was inside "3M"
                        "2012-08-31 23:00",  # inside 1Y
                    ]
                ),
                "amount": [10.0, 20.0, 30.0, 40.0],
            }
        )
    )
    three = future_outcomes(lines, "2011-09-01", "3M").set_index("customer_id")
    assert sorted(three.index) == ["a", "b"]
    assert three.loc["b", "future_revenue"] == 20.0
    year = future_outcomes(lines, "2011-09-01", "1Y").set_index("customer_id")
    assert sorted(year.index) == ["a", "b", "c", "d"]
    days = future_outcomes(lines, "2011-09-01", "91D").set_index("customer_id")
    assert sorted(days.index) == ["a", "b"]  # 2011-12-01 00:00 is 91 days later
    # month ends clamp, and the start of a period is the latest that fits
    assert horizon_end("2011-01-31", "1M") == pd.Timestamp("2011-02-28")
    assert horizon_start("2011-03-31", "1M") == pd.Timestamp("2011-02-28")
    assert horizon_end("2011-09-01", 90.5) == pd.Timestamp("2011-11-30 12:00")
    with pytest.raises(ConfigError, match="'3X' is not a length of time"):
        horizon_end("2011-09-01", "3X")


def test_a_month_horizon_selection_may_end_on_the_evaluated_cutoff() -> None:
    """The selection split 2011-06-01 + "3M" ends at 2011-09-01, the start of the
    evaluated period: allowed (it was allowed by 91.3125 days too); 2011-06-02 is not,
    and the hint names the last split that fits."""
    lines, _ = make_transactions(n_customers=100, seed=0)
    with pytest.raises(ConfigError, match="overlaps the evaluated period") as err:
        backtest(lines, cutoff="2011-09-01", select_cutoff="2011-06-02", horizon="3M")
    assert "on or before 2011-06-01" in err.value.hint
