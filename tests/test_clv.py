"""Customer lifetime value: BG/NBD and Gamma-Gamma against the published CDNOW figures,
parameter recovery from simulated customers, the summary built from transactions, the CLI.

``tests/data/cdnow_*`` is the CDNOW sample of Fader, Hardie and Lee (2005) (2,357
customers, first purchases in Q1 1997), as redistributed with the MIT-licensed
``lifetimes`` package: the transactions (``cdnow_sample.txt.gz``) and the published
calibration summary over 39 weeks to 1997-09-30 (``cdnow_summary.csv.gz``: x, t_x, T in
weeks, zbar = mean repeat spend).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats

from segmint.clv import (
    BetaGeo,
    ClvResult,
    GammaGamma,
    _bgnbd_loglik,
    _gg_loglik,
    clv_summary,
    customer_value,
    parse_horizon,
    simulate_bgnbd,
)
from segmint.errors import ConfigError, DataQualityError, WrongTypeError
from segmint.pipeline import prepare

DATA = Path(__file__).parent / "data"
# Fader, Hardie and Lee (2005), "Counting your customers the easy way", table/figure 1.
PUBLISHED_BGNBD = {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}
PUBLISHED_LL = -9582.4
# Fader and Hardie (2013), "The Gamma-Gamma model of monetary value", CDNOW estimates.
PUBLISHED_GG = {"p": 6.25, "q": 3.74, "v": 15.44}


@pytest.fixture(scope="module")
def cdnow_summary() -> pd.DataFrame:
    return pd.read_csv(DATA / "cdnow_summary.csv.gz")


@pytest.fixture(scope="module")
def cdnow_lines() -> pd.DataFrame:
    raw = pd.read_csv(
        DATA / "cdnow_sample.txt.gz",
        sep=r"\s+",
        header=None,
        names=["master_id", "id", "date", "cds", "amount"],
    )
    return pd.DataFrame(
        {
            "customer_id": raw["id"].astype(str),
            "invoice_date": pd.to_datetime(raw["date"].astype(str), format="%Y%m%d"),
            "amount": raw["amount"].astype(float),
        }
    )


def test_bgnbd_matches_published_cdnow_estimates(cdnow_summary: pd.DataFrame) -> None:
    bg = BetaGeo.fit(cdnow_summary["x"], cdnow_summary["t_x"], cdnow_summary["T"])
    assert bg.converged
    for name, published in PUBLISHED_BGNBD.items():
        assert getattr(bg, name) == pytest.approx(published, rel=0.02), name
    assert bg.log_likelihood == pytest.approx(PUBLISHED_LL, abs=0.1)
    # The paper's worked example: x=2, t_x=30.43, T=38.86 expects 1.226 purchases in the
    # next 39 weeks.
    assert float(bg.expected_purchases(39, 2, 30.43, 38.86)) == pytest.approx(1.226, abs=2e-3)


def test_gamma_gamma_matches_published_cdnow_estimates(cdnow_summary: pd.DataFrame) -> None:
    gg = GammaGamma.fit(cdnow_summary["x"], cdnow_summary["zbar"])
    assert gg.converged and gg.n_customers == 946
    for name, published in PUBLISHED_GG.items():
        assert getattr(gg, name) == pytest.approx(published, rel=0.02), name
    # Expected spend shrinks a customer's own mean towards the population mean.
    pop = gg.p * gg.v / (gg.q - 1)
    own = 100.0
    one, many = gg.expected_spend([1, 50], [own, own])
    assert pop < one < many < own


def test_summary_from_transactions_reproduces_published_summary(
    cdnow_lines: pd.DataFrame, cdnow_summary: pd.DataFrame
) -> None:
    con = ibis.duckdb.connect()
    table = con.create_table("cdnow", ibis.memtable(cdnow_lines), temp=True)
    ours = clv_summary(table, "1997-10-01", unit="W")
    assert ours.attrs == {"snapshot_date": "1997-10-01", "unit": "W"}
    assert list(ours.columns) == ["customer_id", "frequency", "recency", "T", "monetary_value"]
    both = cdnow_summary.merge(
        ours.assign(ID=ours["customer_id"].astype(int)), on="ID", validate="one_to_one"
    )
    assert len(both) == 2357
    assert (both["x"] == both["frequency"]).all()
    # the published file is rounded to 2 decimals
    np.testing.assert_allclose(both["recency"], both["t_x"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(both["T_y"], both["T_x"], atol=0.005 + 1e-9)
    np.testing.assert_allclose(both["monetary_value"], both["zbar"], atol=0.005 + 1e-9)
    # lines on or after the snapshot are ignored; days are the default unit
    days = clv_summary(table, "1997-10-01")
    np.testing.assert_allclose(days["T"], ours["T"] * 7)


def test_summary_from_a_customer_table_counts_repeat_purchases() -> None:
    """From a customer table, BG/NBD's frequency is the number of *repeat* purchases
    (orders - 1), as in pymc-marketing and lifetimes; passing the orders themselves made
    every one-time buyer look like a repeat buyer and inflated every prediction."""
    feats = pd.DataFrame(
        {
            "customer_id": ["b", "a"],
            "frequency": [1, 3],
            "monetary": [50.0, 90.0],
            "tenure_days": [0, 20],
            "first_purchase": pd.to_datetime(["2021-03-01 09:30", "2021-01-01 15:00"]),
            "last_purchase": pd.to_datetime(["2021-03-01 09:30", "2021-01-21 15:00"]),
        }
    )
    out = clv_summary(feats, "2021-04-01")
    assert list(out.columns) == ["customer_id", "frequency", "recency", "T", "monetary_value"]
    assert out["customer_id"].tolist() == ["a", "b"]
    a, b = (out.iloc[i].to_dict() for i in range(2))
    # T: first purchase to the end of the observation period (2021-03-31), in days
    assert a == {
        "customer_id": "a",
        "frequency": 2,
        "recency": 20.0,
        "T": 89.0,
        "monetary_value": 30.0,
    }
    assert b == {
        "customer_id": "b",
        "frequency": 0,
        "recency": 0.0,
        "T": 30.0,
        "monetary_value": 0.0,
    }
    assert out["frequency"].dtype == "int64"
    # the snapshot is 30 days after the data end: kept, for the note in ClvResult.notes
    assert out.attrs == {"snapshot_date": "2021-04-01", "unit": "D", "data_end": "2021-03-02"}
    weeks = clv_summary(feats, "2021-04-01", unit="W")
    np.testing.assert_allclose(weeks["T"], [89 / 7, 30 / 7])
    assert weeks["frequency"].tolist() == [2, 0]


@pytest.mark.datasets
def test_summary_of_flo_counts_repeat_orders(flo: Path) -> None:
    """FLO is customer-level (order counts and totals per customer): the summary's
    frequency is online + offline orders - 1, checked against the raw file."""
    from segmint.clean import clean
    from segmint.io import read_source
    from segmint.schema import resolve

    ours = clv_summary(clean(resolve(read_source(flo)))).set_index("customer_id")
    raw = pd.read_csv(flo).set_index("master_id").loc[ours.index]
    assert len(ours) == 19_945 and ours.attrs["snapshot_date"] == "2021-05-31"
    orders = raw["order_num_total_ever_online"] + raw["order_num_total_ever_offline"]
    assert (ours["frequency"].to_numpy() == orders.to_numpy() - 1).all()
    first = pd.to_datetime(raw["first_order_date"])
    last = pd.to_datetime(raw["last_order_date"])
    assert (ours["recency"].to_numpy() == (last - first).dt.days.to_numpy()).all()
    T = (pd.Timestamp("2021-05-30") - first).dt.days.to_numpy()
    assert (ours["T"].to_numpy() == T).all()
    value = raw["customer_value_total_ever_online"] + raw["customer_value_total_ever_offline"]
    np.testing.assert_allclose(ours["monetary_value"], value / orders, rtol=1e-9)


@pytest.mark.parametrize("seed", [1, 2])
def test_bgnbd_recovers_simulated_parameters(seed: int) -> None:
    truth = {"r": 0.5, "alpha": 6.0, "a": 0.7, "b": 3.0}
    rng = np.random.default_rng(seed)
    sim = simulate_bgnbd(20_000, rng.uniform(20, 80, 20_000), seed=seed, **truth)
    bg = BetaGeo.fit(sim["frequency"], sim["recency"], sim["T"])
    assert bg.r == pytest.approx(truth["r"], rel=0.1)
    assert bg.alpha == pytest.approx(truth["alpha"], rel=0.15)
    assert bg.a == pytest.approx(truth["a"], rel=0.2)
    assert bg.b == pytest.approx(truth["b"], rel=0.25)
    # Customers the model thinks are alive are alive more often than the others.
    p = bg.p_alive(sim["frequency"], sim["recency"], sim["T"])
    assert sim["alive"][p > 0.8].mean() > sim["alive"][p < 0.3].mean() + 0.3


def test_expected_purchases_of_a_new_customer_match_simulation() -> None:
    truth = {"r": 0.8, "alpha": 10.0, "a": 1.5, "b": 4.0}
    bg = BetaGeo(**truth)
    sim = simulate_bgnbd(100_000, 52.0, seed=3, **truth)
    # purchases in (0, 52] after a first purchase at time 0 = frequency
    mean = sim["frequency"].mean()
    se = sim["frequency"].std() / np.sqrt(len(sim))
    assert bg.expected_purchases_new(52.0) == pytest.approx(mean, abs=4 * se)


def test_expected_purchases_at_a_equal_to_one() -> None:
    """The formulas divide by a - 1: at a = 1 they gave 0 purchases (NaN turned into 0)
    and a ZeroDivisionError for a new customer. They now take the limit, which lies
    between the values on either side."""
    x, tx, T = np.array([0.0, 2, 5]), np.array([0.0, 30, 35]), np.array([40.0, 40, 40])
    at = BetaGeo(r=0.24, alpha=4.4, a=1.0, b=2.4)
    below = BetaGeo(r=0.24, alpha=4.4, a=0.999, b=2.4)
    above = BetaGeo(r=0.24, alpha=4.4, a=1.001, b=2.4)
    mid = at.expected_purchases(39, x, tx, T)
    lo, hi = above.expected_purchases(39, x, tx, T), below.expected_purchases(39, x, tx, T)
    assert (mid > 0).all() and ((lo < mid) & (mid < hi)).all()
    np.testing.assert_allclose(mid, (lo + hi) / 2, rtol=1e-5)
    new = at.expected_purchases_new(39)
    assert above.expected_purchases_new(39) < new < below.expected_purchases_new(39)


def test_analytic_gradients_match_finite_differences(cdnow_summary: pd.DataFrame) -> None:
    d = cdnow_summary
    w = np.ones(len(d))
    args = (d["x"].to_numpy(float), d["t_x"].to_numpy(float), d["T"].to_numpy(float), w)
    p0 = np.array([0.3, 5.0, 0.9, 2.0])
    err = optimize.check_grad(
        lambda p: _bgnbd_loglik(p, *args)[0], lambda p: _bgnbd_loglik(p, *args)[1], p0
    )
    assert err < 1e-3 * np.linalg.norm(_bgnbd_loglik(p0, *args)[1])
    rep = d[d["x"] > 0]
    gargs = (rep["x"].to_numpy(float), rep["zbar"].to_numpy(float), np.ones(len(rep)))
    g0 = np.array([5.0, 3.0, 12.0])
    err = optimize.check_grad(
        lambda p: _gg_loglik(p, *gargs)[0], lambda p: _gg_loglik(p, *gargs)[1], g0
    )
    assert err < 1e-3 * np.linalg.norm(_gg_loglik(g0, *gargs)[1])


def test_gamma_gamma_recovers_simulated_parameters() -> None:
    rng = np.random.default_rng(5)
    p, q, v = 4.0, 3.0, 20.0
    n = 20_000
    x = rng.integers(1, 20, n)
    nu = rng.gamma(q, 1 / v, n)  # rate of each customer's spend distribution
    z = rng.gamma(p * x, 1 / (nu * x))  # mean of x Gamma(p, nu) draws
    gg = GammaGamma.fit(x, z)
    assert gg.p == pytest.approx(p, rel=0.1)
    assert gg.q == pytest.approx(q, rel=0.1)
    assert gg.v == pytest.approx(v, rel=0.15)
    assert abs(gg.frequency_correlation) < 0.05


def test_customer_value_horizon_discount_margin(cdnow_summary: pd.DataFrame) -> None:
    summary = cdnow_summary.rename(
        columns={"ID": "customer_id", "x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    )
    summary.attrs["unit"] = "W"
    short = customer_value(summary, horizon="13W")
    long = customer_value(summary, horizon="52W")
    assert short.horizon_days == 91
    t = long.table
    assert (t["clv_value"] >= short.table["clv_value"] - 1e-9).all()
    np.testing.assert_allclose(
        t["clv_value"], t["clv_expected_purchases"] * t["clv_expected_spend"]
    )
    discounted = customer_value(summary, horizon="52W", discount_rate=0.2).table["clv_value"]
    assert (discounted <= t["clv_value"] + 1e-9).all()
    assert discounted.sum() < t["clv_value"].sum() * 0.97
    half = customer_value(summary, horizon="52W", margin=0.5).table["clv_value"]
    np.testing.assert_allclose(half, t["clv_value"] / 2)
    # Independent check of the expected purchases formula by numerical integration is
    # hard; check its limits instead: 0 at t=0, increasing, p_alive within (0, 1].
    bg = long.bgnbd
    x, tx, T = (summary[c].to_numpy(float) for c in ("frequency", "recency", "T"))
    assert np.allclose(bg.expected_purchases(0.0, x, tx, T), 0)
    assert (bg.expected_purchases(10, x, tx, T) <= bg.expected_purchases(20, x, tx, T)).all()
    assert ((t["clv_p_alive"] > 0) & (t["clv_p_alive"] <= 1)).all()
    assert (t.loc[summary["frequency"] == 0, "clv_p_alive"] == 1).all()
    seg = long.by_segment(np.where(summary["frequency"] > 2, 1, 0), names={0: "few", 1: "many"})
    assert seg["customers"].sum() == 2357
    assert seg["clv_value_share"].sum() == pytest.approx(1.0)
    assert (
        seg.set_index("segment_name").loc["many", "clv_value_mean"]
        > seg.set_index("segment_name").loc["few", "clv_value_mean"]
    )

    # labels indexed by customer id are matched on it, in any order (they were taken by
    # position: sorted labels gave every segment other customers' values)
    labels = pd.Series(np.where(summary["frequency"] > 2, 1, 0), index=long.table["customer_id"])
    shuffled = labels.sample(frac=1.0, random_state=0)
    pd.testing.assert_frame_equal(long.by_segment(shuffled), long.by_segment(labels.to_numpy()))
    # ids as floats (pandas reads a CustomerID column with blanks so) match the table's
    floats = labels.copy()
    floats.index = pd.to_numeric(floats.index).astype(float)  # CDNOW's ids are numbers
    pd.testing.assert_frame_equal(long.by_segment(floats), long.by_segment(labels))
    with pytest.raises(WrongTypeError, match="not a DataFrame"):
        long.by_segment(shuffled.to_frame())
    with pytest.raises(ConfigError, match="no label for 1 of 2,357 customers"):
        long.by_segment(shuffled.iloc[1:])
    with pytest.raises(ConfigError, match="2,356 labels for 2,357 customers"):
        long.by_segment(labels.to_numpy()[1:])


def test_bad_inputs_are_clear() -> None:
    with pytest.raises(DataQualityError, match="at least 10 customers"):
        BetaGeo.fit([1, 2], [1, 2], [3, 3])
    with pytest.raises(DataQualityError, match="no customer has a repeat purchase"):
        BetaGeo.fit(np.zeros(20), np.zeros(20), np.full(20, 5.0))
    with pytest.raises(DataQualityError, match="row 3"):
        BetaGeo.fit(np.ones(20), [1, 1, 9] + [1] * 17, np.full(20, 5.0))
    with pytest.raises(ConfigError, match="not a length of time"):
        parse_horizon("soon")
    assert parse_horizon("1Y") == pytest.approx(365.25)
    assert parse_horizon(30) == 30.0


def test_simulation_follows_the_model() -> None:
    # With a = b huge, p ~ 0: nobody drops out and purchases are NBD (Poisson-Gamma).
    sim = simulate_bgnbd(50_000, 10.0, r=2.0, alpha=4.0, a=1e-6, b=1e6, seed=0)
    expected = stats.nbinom(2.0, 4.0 / (4.0 + 10.0))
    assert sim["frequency"].mean() == pytest.approx(expected.mean(), rel=0.03)
    assert sim["alive"].all()


def _cdnow_csv(cdnow_lines: pd.DataFrame, path: Path) -> Path:
    cdnow_lines.rename(columns={"invoice_date": "order_date", "amount": "sales"}).to_csv(
        path, index=False
    )
    return path


def test_cli_clv_writes_values_and_pymc_summary(
    cli, cdnow_lines: pd.DataFrame, tmp_path: Path
) -> None:
    data = _cdnow_csv(cdnow_lines, tmp_path / "cdnow.csv")
    out, pymc = tmp_path / "clv.parquet", tmp_path / "pymc.csv"
    r = cli(
        "clv", data, "--snapshot-date", "1997-10-01", "--horizon", "39W",
        "--out", out, "--pymc", pymc, "--keep-duplicates", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    info = json.loads(r.out)
    # Days, not weeks: alpha is 7 times larger; r, a, b do not depend on the unit. Eight
    # zero-value lines are cleaned away, so allow 3 % instead of 2 %.
    assert info["bgnbd"]["r"] == pytest.approx(PUBLISHED_BGNBD["r"], rel=0.03)
    assert info["bgnbd"]["alpha"] / 7 == pytest.approx(PUBLISHED_BGNBD["alpha"], rel=0.03)
    assert info["horizon_days"] == 273
    values = pd.read_parquet(out)
    buyers = cdnow_lines.loc[cdnow_lines["amount"] > 0, "customer_id"].nunique()
    assert len(values) == buyers and values["customer_id"].is_unique
    assert {"clv_value", "clv_p_alive", "clv_expected_purchases"} <= set(values.columns)
    layout = pd.read_csv(pymc)
    assert list(layout.columns) == ["customer_id", "frequency", "recency", "T", "monetary_value"]
    assert info["expected_value"] == pytest.approx(values["clv_value"].sum())
    assert not list(tmp_path.glob("*.tmp*"))


def test_cli_clv_bad_horizon_is_one_line(cli, cdnow_lines: pd.DataFrame, tmp_path: Path) -> None:
    data = _cdnow_csv(cdnow_lines, tmp_path / "cdnow.csv")
    r = cli("clv", data, "--horizon", "soon")
    assert r.code == 2
    assert r.err.strip().splitlines()[0].startswith("Error: --horizon 'soon'")
    assert "Traceback" not in r.err


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--horizon", "0D", "--horizon '0D' is not a length of time"),
        ("--discount-rate", "-1", "--discount-rate -1.0 is out of range"),
        ("--margin", "0", "--margin 0.0 must be above 0 and at most 1"),
        ("--margin", "1.5", "--margin 1.5 must be above 0 and at most 1"),
    ],
)
def test_cli_clv_bad_setting_is_named_by_its_flag_before_reading(
    cli, tmp_path: Path, option: str, value: str, message: str
) -> None:
    """A bad valuation setting is refused by the flag typed and before any data is read
    (the file here does not even exist): it named the setting ("margin 0.0") after
    loading and cleaning the whole file."""
    r = cli("clv", tmp_path / "missing.csv", option, value)
    assert r.code == 2
    first = r.err.strip().splitlines()[0]
    assert first.startswith(f"Error: {message}"), r.err
    assert "Traceback" not in r.err


def test_notes_on_no_drop_out_and_a_horizon_past_the_history(
    cli, cdnow_lines: pd.DataFrame, tmp_path: Path
) -> None:
    """clv.json and summary.json said nothing (note: null) where the report warned of a
    fit without drop-out, and a 12-month horizon on three months of history forecast more
    than the shop's whole year, silently."""
    data = _cdnow_csv(cdnow_lines, tmp_path / "cdnow.csv")
    args = ("clv", data, "--snapshot-date", "1997-10-01", "--keep-duplicates", "--json")
    info = json.loads(cli(*args, "--horizon", "26W").out)
    assert info["notes"] == []  # CDNOW: a / (a + b) is about 25 %
    r = cli(*args[:-1], "--horizon", "2Y")
    assert r.code == 0 and "longer than the history the models were fitted on" in " ".join(
        r.err.split()
    )
    info = json.loads(cli(*args, "--horizon", "2Y").out)
    assert len(info["notes"]) == 1 and "(730 days)" in info["notes"][0]
    flat = BetaGeo(r=0.5, alpha=5.0, a=0.006, b=23.5)  # Online Retail's fit
    summary = pd.DataFrame({"frequency": [1], "recency": [10.0], "T": [100.0]})
    result = ClvResult(summary, flat, GammaGamma(), 90.0, 0.0, pd.DataFrame())
    assert len(result.notes) == 1 and "almost no drop-out" in result.notes[0]
    assert "0.03%" in result.notes[0]


def test_customers_left_without_a_value_by_a_heavy_tailed_spend_fit_are_named() -> None:
    """With Gamma-Gamma q <= 1 (mean spend of a new customer infinite) every customer
    without a repeat purchase has no expected spend or value (NaN), and the totals
    skip them: nothing said so."""
    rng = np.random.default_rng(0)
    n = 400
    x = rng.integers(0, 5, n)
    nu = rng.gamma(0.8, 1 / 10.0, n)  # q = 0.8: spend levels with a heavy tail
    m = np.array([rng.gamma(3.0, 1 / nu[i], x[i]).mean() if x[i] else 0.0 for i in range(n)])
    summary = pd.DataFrame(
        {
            "customer_id": [str(i) for i in range(n)],
            "frequency": x,
            "recency": np.where(x > 0, rng.uniform(0, 300, n), 0.0),
            "T": 300.0,
            "monetary_value": m,
        }
    )
    result = customer_value(summary, horizon="90D")
    assert result.gamma_gamma.q <= 1
    empty = result.table["clv_value"].isna()
    assert empty.sum() == (x == 0).sum() > 0
    notes = [n for n in result.notes if "Gamma-Gamma fit has q" in n]
    assert len(notes) == 1 and f"{empty.sum()} customers without a repeat purchase" in notes[0]
    assert notes[0] in result.describe()["notes"]


def test_a_spend_fit_run_off_to_no_spread_is_named(
    cli, retail_pandas: pd.DataFrame, cdnow_summary: pd.DataFrame, tmp_path: Path
) -> None:
    """The first 12 customers of Online Retail: the Gamma-Gamma fit ran off to p = 40,000
    (no spread of spend within a customer), was reported as converged with no note, and
    every expected spend was the customer's own mean."""
    first = retail_pandas["CustomerID"].dropna().unique()[:12]
    path = tmp_path / "twelve.csv"
    retail_pandas[retail_pandas["CustomerID"].isin(first)].to_csv(path, index=False)
    result = customer_value(prepare(path))
    gg = result.gamma_gamma
    assert gg.p > 1000 and gg.converged
    notes = [n for n in result.notes if "Gamma-Gamma fit on 11 repeat customers" in n]
    assert len(notes) == 1 and "own mean" in notes[0]
    res = cli("clv", path)
    assert res.code == 0, res.err
    assert "finds no variation in a customer's spend" in " ".join(res.err.split())
    # a fit that can tell keeps quiet (the paper's CDNOW sample: p = 6.25)
    summary = cdnow_summary.rename(
        columns={"ID": "customer_id", "x": "frequency", "t_x": "recency", "zbar": "monetary_value"}
    )
    summary.attrs["unit"] = "W"
    assert not any("no variation" in n for n in customer_value(summary, horizon="52W").notes)


def test_snapshot_outside_the_data_is_refused_not_read_as_drop_out(
    cli, cdnow_lines: pd.DataFrame, tmp_path: Path
) -> None:
    """A snapshot long after the last purchase made BG/NBD read the days without data as
    days without purchases (Online Retail a year on: 716 expected purchases instead of
    18,806), silently; before the first purchase the error spoke of "0 customers"."""
    data = _cdnow_csv(cdnow_lines, tmp_path / "cdnow.csv")  # lines up to 1998-06-30
    late = cli("clv", data, "--snapshot-date", "1998-09-01", "--keep-duplicates")
    assert late.code == 2 and "Traceback" not in late.err
    flat = " ".join(late.err.split())
    assert "snapshot date 1998-09-01 is 62 days after the data end" in flat
    assert "last purchase 1998-06-30" in flat and "--snapshot-date" in flat
    early = cli("clv", data, "--snapshot-date", "1996-06-01", "--keep-duplicates")
    assert early.code == 2 and "Traceback" not in early.err
    assert "data start on 1997-01-01" in " ".join(early.err.split())
    # within a month of the end: fitted, and the JSON says the snapshot is past the data
    ok = cli("clv", data, "--snapshot-date", "1998-07-21", "--keep-duplicates", "--json")
    assert ok.code == 0, ok.err
    notes = json.loads(ok.out)["notes"]
    assert any("20 days after the end of the data (1998-07-01" in n for n in notes), notes
    # a customer-level table (FLO style) is held to the same rule
    feats = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(12)],
            "frequency": [3] * 12,
            "monetary": [90.0] * 12,
            "tenure_days": [20] * 12,
            "first_purchase": pd.to_datetime(["2021-01-01"] * 12),
            "last_purchase": pd.to_datetime(["2021-01-21"] * 12),
        }
    )
    with pytest.raises(DataQualityError, match="2022-01-01 is 344 days after the data end"):
        clv_summary(feats, "2022-01-01")


def test_customers_who_all_buy_alike_get_their_purchases_not_zero() -> None:
    """Twenty customers who each bought on the 1st of January, February and March: the
    fit runs to the no-heterogeneity limit (r about 1e5), scipy's hyp2f1 returns NaN
    there, and every expected purchase came out as 0 (NaN turned into 0 silently). The
    rate is 2 repeat purchases in the 59 days observed, so a year holds about 12.4."""
    rows = [
        {"customer_id": f"c{c}", "invoice_date": pd.Timestamp(d), "amount": 10.0}
        for c in range(20)
        for d in ("2011-01-01", "2011-02-01", "2011-03-01")
    ]
    con = ibis.duckdb.connect()
    table = con.create_table("alike", ibis.memtable(pd.DataFrame(rows)), temp=True)
    result = customer_value(table, "2011-03-02", horizon="12M")
    assert result.bgnbd.r > 1_000  # the degenerate fit this is about
    rate = result.bgnbd.r / result.bgnbd.alpha * 365.25  # purchases a year, no drop-out
    purchases = result.table["clv_expected_purchases"].to_numpy()
    assert purchases == pytest.approx(np.full(20, rate), rel=0.01)
    assert 12 < purchases[0] < 12.8
    assert result.table["clv_value"].to_numpy() == pytest.approx(purchases * 10.0)
    # the series agrees with scipy where scipy is right (CDNOW-sized parameters)
    from scipy import special

    from segmint.clv import _power_hyp2f1_series

    A, B, C, z = np.array([2.2, 5.0]), np.array([3.4, 9.0]), np.array([3.2, 9.8]), 0.4
    expected = (1 - z) ** A * special.hyp2f1(A, B, C, z)
    np.testing.assert_allclose(_power_hyp2f1_series(A, B, C, np.full(2, z)), expected, 1e-10)


def test_series_rows_are_summed_in_bounded_chunks_and_once_each() -> None:
    """Where scipy gives up, rows are summed from the series 64 distinct rows at a time
    (all at once, a block of terms of 1M customers would need terabytes); repeated rows
    get their distinct row's value and every chunk the value of a row summed alone."""
    from segmint.clv import _SERIES_ROWS, _power_hyp2f1, _power_hyp2f1_series

    n = 3 * _SERIES_ROWS + 5
    A = np.repeat(1e5 + np.arange(n, dtype=float), 2)  # each row twice
    B, C = np.full(2 * n, 2.5), np.full(2 * n, 4.0)
    z = np.full(2 * n, 0.0004)
    got = _power_hyp2f1(A, B, C, z)
    assert np.isfinite(got).all() and (got > 0).all()
    np.testing.assert_array_equal(got[0::2], got[1::2])
    for i in (0, _SERIES_ROWS, n - 1):
        alone = _power_hyp2f1_series(A[[2 * i]], B[:1], C[:1], z[:1])
        np.testing.assert_allclose(got[2 * i], alone[0], rtol=1e-12)


def test_cli_clv_on_customers_who_spend_alike_prints_no_numpy_warnings(cli, tmp_path: Path) -> None:
    """Gamma-Gamma on customers who all spend the same runs its parameters to overflow:
    numpy's RuntimeWarnings (eight lines of source code) reached the terminal; the
    fit's convergence is said once, as a note."""
    rows = [
        {"customer_id": f"c{c}", "order_date": d, "sales": 10.0}
        for c in range(20)
        for d in ("2011-01-01", "2011-02-01", "2011-03-01")
    ]
    data = tmp_path / "alike.csv"
    pd.DataFrame(rows).to_csv(data, index=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a console script shows every one of them
        r = cli("clv", data)
    assert r.code == 0, r.err
    numeric = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert numeric == [], [str(w.message) for w in numeric]
    assert "Gamma-Gamma fit did not converge" in " ".join(r.err.split())


def test_a_12_month_horizon_on_a_year_of_history_is_not_called_longer() -> None:
    """A 12M horizon (365.25 days) on a year of history (T = 365) gave the note "the
    horizon (365 days) is longer than the history ... (365 days)", a contradiction (seen
    on `segmint demo --customers 300`); a horizon a whole day longer still gets it."""
    fit = BetaGeo(r=0.5, alpha=5.0, a=0.5, b=1.5)  # drop-out seen: no other note
    year = pd.DataFrame({"frequency": [1, 0], "recency": [10.0, 0.0], "T": [365.0, 40.0]})
    result = ClvResult(year, fit, GammaGamma(), 365.25, 0.0, pd.DataFrame())
    assert result.notes == []
    shorter = year.assign(T=[364.0, 40.0])
    notes = ClvResult(shorter, fit, GammaGamma(), 365.25, 0.0, pd.DataFrame()).notes
    assert len(notes) == 1 and "(365 days) is longer than" in notes[0] and "(364 days)" in notes[0]
