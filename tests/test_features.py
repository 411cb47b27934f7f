"""Customer features: every feature of every Online Retail customer against plain pandas,
FLO totals and categories against the raw file, windows, snapshots, feature-set checks."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from segmint.clean import clean
from segmint.config import DEFAULT_NON_PRODUCT_CODES, DEFAULT_NON_PRODUCT_PREFIXES
from segmint.errors import ConfigError, DataQualityError, InputError
from segmint.features import (
    FEATURE_SET,
    FEATURE_SET_VERSION,
    customer_features,
    parse_window,
    read_features,
    returns_left_out_note,
)
from segmint.io import read_source
from segmint.schema import resolve


def _features(data, **kw):
    return customer_features(clean(resolve(read_source(data))), **kw)


# ---------------------------------------------------------------- Online Retail vs pandas
def _pandas_features(df: pd.DataFrame) -> pd.DataFrame:
    """The features computed the plain-pandas way, independently of segmint's code."""
    df = df.copy()
    df["date"] = pd.to_datetime(df["InvoiceDate"])
    df["amount"] = df["Quantity"] * df["UnitPrice"]
    code = df["StockCode"]
    rules = [
        df["CustomerID"].isna(),
        df["date"].isna(),
        df.duplicated(subset=list(df.columns[:8]), keep="first"),
        df["InvoiceNo"].str.upper().str.startswith("C"),
        df["Quantity"] < 0,
        code.isin(DEFAULT_NON_PRODUCT_CODES)
        | code.str.startswith(tuple(DEFAULT_NON_PRODUCT_PREFIXES)),
        df["UnitPrice"] <= 0,
        df["Quantity"] == 0,
    ]
    first_rule = pd.Series(-1, index=df.index)
    for i, pred in enumerate(rules):
        first_rule[(first_rule == -1) & pred] = i
    non_product = rules[5]
    kept = df[first_rule == -1]
    returns = df[first_rule.isin([3, 4]) & ~non_product]
    snapshot = kept["date"].max().normalize() + pd.Timedelta(days=1)
    g = kept.groupby(kept["CustomerID"].astype(str))
    out = pd.DataFrame(
        {
            "first_purchase": g["date"].min(),
            "last_purchase": g["date"].max(),
            "frequency": g["InvoiceNo"].nunique(),
            "gross": g["amount"].sum(),
            "total_quantity": g["Quantity"].sum().astype(float),
            "unique_products": g["StockCode"].nunique(),
        }
    )
    returned = returns["amount"].abs().groupby(returns["CustomerID"].astype(str)).sum()
    out["returned"] = returned.reindex(out.index).fillna(0.0)
    out["monetary"] = out["gross"] - out["returned"]
    out["recency_days"] = (snapshot - out["last_purchase"].dt.normalize()).dt.days
    out["tenure_days"] = (
        out["last_purchase"].dt.normalize() - out["first_purchase"].dt.normalize()
    ).dt.days
    out["avg_basket_value"] = out["monetary"] / out["frequency"]
    out["return_rate"] = np.where(
        out["gross"] > 0, out["returned"] / out["gross"], np.where(out["returned"] > 0, 1.0, 0.0)
    )
    counts = kept.groupby([kept["CustomerID"].astype(str), "Country"]).size().rename("n")
    counts = counts.reset_index().sort_values(
        ["CustomerID", "n", "Country"], ascending=[True, False, True]
    )
    out["country"] = counts.drop_duplicates("CustomerID").set_index("CustomerID")["Country"]
    out.index.name = "customer_id"
    return out, snapshot


def test_every_feature_of_every_online_retail_customer(
    online_retail: Path, retail_pandas: pd.DataFrame
) -> None:
    feats = _features(online_retail)
    ours = feats.to_pandas().set_index("customer_id")
    theirs, snapshot = _pandas_features(retail_pandas)
    assert feats.snapshot_date == snapshot.date() == dt.date(2011, 12, 10)
    assert len(ours) == len(theirs) == 4_334
    assert set(ours.index) == set(theirs.index)
    theirs = theirs.loc[ours.index]
    for col in ("recency_days", "frequency", "tenure_days", "unique_products"):
        assert (ours[col].to_numpy() == theirs[col].to_numpy()).all(), col
    for col in ("monetary", "avg_basket_value", "total_quantity", "return_rate"):
        np.testing.assert_allclose(
            ours[col].to_numpy(), theirs[col].to_numpy(), rtol=1e-9, atol=1e-9, err_msg=col
        )
    for col in ("first_purchase", "last_purchase", "country"):
        assert (ours[col].astype(str).to_numpy() == theirs[col].astype(str).to_numpy()).all()
    assert feats.numeric == [
        "recency_days",
        "frequency",
        "monetary",
        "tenure_days",
        "avg_basket_value",
        "total_quantity",
        "unique_products",
        "return_rate",
    ]


# ---------------------------------------------------------------- FLO vs the raw file
def test_flo_totals_and_categories_match_the_raw_file(flo: Path) -> None:
    raw = pd.read_csv(flo)
    feats = _features(flo)
    ours = feats.to_pandas().set_index("customer_id")
    raw = raw.set_index("master_id").loc[ours.index]
    assert feats.kind == "customers" and len(ours) == 19_945
    assert feats.snapshot_date == dt.date(2021, 5, 31)
    assert ours["frequency"].sum() == 100_219
    orders = raw["order_num_total_ever_online"] + raw["order_num_total_ever_offline"]
    assert (ours["frequency"].to_numpy() == orders.to_numpy()).all()
    value = raw["customer_value_total_ever_online"] + raw["customer_value_total_ever_offline"]
    np.testing.assert_allclose(ours["monetary"], value, rtol=1e-9)
    # the channels are added exactly: in floats 4,858 totals such as 1020.0999999999999
    # were off the cent, so equal spends could get different M scores
    assert (ours["monetary"].to_numpy() == value.round(2).to_numpy()).all()
    assert ours["monetary"].sum() == pytest.approx(9_919_081.11 + 5_064_486.20, abs=0.05)
    online_value = (ours["channel_share_online"] * ours["monetary"]).sum()
    assert online_value == pytest.approx(9_919_081.11, rel=1e-9)
    offline_value = (ours["channel_share_offline"] * ours["monetary"]).sum()
    assert offline_value == pytest.approx(5_064_486.20, rel=1e-9)
    np.testing.assert_allclose(
        ours["online_order_share"], raw["order_num_total_ever_online"] / orders, rtol=1e-9
    )
    last = pd.to_datetime(raw["last_order_date"])
    assert (
        ours["recency_days"].to_numpy() == (pd.Timestamp("2021-05-31") - last).dt.days.to_numpy()
    ).all()
    tokens = raw["interested_in_categories_12"].str.strip("[]").str.split(", ")
    expected_counts = {
        "AKTIFSPOR": 9_204,
        "KADIN": 7_603,
        "ERKEK": 6_642,
        "COCUK": 4_157,
        "AKTIFCOCUK": 3_437,
    }
    for token, count in expected_counts.items():
        col = f"category_{token.lower()}"
        flags = tokens.apply(lambda items, t=token: int(t in items))
        assert (ours[col].to_numpy() == flags.to_numpy()).all(), token
        assert ours[col].sum() == count
    none = ours[[f"category_{t.lower()}" for t in expected_counts]].sum(axis=1) == 0
    assert none.sum() == 2_135


# ---------------------------------------------------------------- small hand-checked
def _lines(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(
        rows,
        columns=[
            "customer_id",
            "invoice_id",
            "invoice_date",
            "quantity",
            "unit_price",
            "product_id",
            "channel",
            "category",
        ],
    )


HAND = _lines(
    [
        ("a", "1", "2024-01-10 10:00", 2, 10.0, "p1", "web", "shoes"),
        ("a", "1", "2024-01-10 10:00", 1, 30.0, "p2", "web", "bags"),
        ("a", "2", "2024-06-20 12:00", 1, 50.0, "p1", "store", "shoes"),
        ("a", "C3", "2024-06-25 12:00", -1, 50.0, "p1", "store", "shoes"),
        ("b", "4", "2024-03-01 09:00", 5, 4.0, "p3", "store", "socks"),
        ("c", "5", "2024-06-29 18:00", 1, 100.0, "p4", "web", "bags"),
        ("c", "6", "2024-07-15 18:00", 1, 100.0, "p4", "web", "bags"),
    ]
)


def test_every_channel_and_category_level_keeps_its_share(tmp_path: Path) -> None:
    """Levels whose names slugged alike ("Web shop" / "web-shop") lost all but one
    column, and Cyrillic names all became "blank": shares summed to a third."""
    lines = _lines(
        [
            ("a", "1", "2024-01-10 10:00", 1, 10.0, "p1", "Магазин", "Обувь"),
            ("a", "2", "2024-02-10 10:00", 1, 20.0, "p1", "Интернет", "Сумки"),
            ("a", "3", "2024-03-10 10:00", 1, 30.0, "p1", "Web shop", "Mağaza"),
            ("b", "4", "2024-03-01 09:00", 1, 40.0, "p3", "web-shop", "Обувь"),
            ("b", "5", "2024-03-02 09:00", 1, 60.0, "p3", "Приложение", "Обувь"),
        ]
    )
    feats = _features(lines).to_pandas().set_index("customer_id")
    channels = sorted(c for c in feats.columns if c.startswith("channel_share_"))
    assert channels == sorted(
        [
            "channel_share_магазин",
            "channel_share_интернет",
            "channel_share_приложение",
            "channel_share_web_shop",
            "channel_share_web_shop_2",
        ]
    )
    assert feats[channels].sum(axis=1).tolist() == pytest.approx([1.0, 1.0])
    assert feats.loc["a", "channel_share_магазин"] == pytest.approx(10 / 60)
    cats = [c for c in feats.columns if c.startswith("category_share_")]
    assert "category_share_mağaza" in cats and "category_share_обувь" in cats
    assert feats[cats].sum(axis=1).tolist() == pytest.approx([1.0, 1.0])
    out = tmp_path / "f.parquet"  # the names survive a written table
    feats.reset_index().to_parquet(out)
    assert sorted(c for c in pd.read_parquet(out).columns if c.startswith("channel_")) == channels


def test_hand_checked_features_with_shares_and_returns() -> None:
    feats = _features(HAND, snapshot_date="2024-07-01")
    df = feats.to_pandas().set_index("customer_id")
    assert feats.snapshot_date == dt.date(2024, 7, 1)
    a, b, c = df.loc["a"], df.loc["b"], df.loc["c"]
    assert (a.recency_days, a.frequency, a.tenure_days, a.unique_products) == (11, 2, 162, 2)
    assert a.monetary == pytest.approx(100.0 - 50.0)
    assert a.return_rate == pytest.approx(0.5)
    assert a.avg_basket_value == pytest.approx(25.0)
    assert a.total_quantity == 4
    assert a.channel_share_web == pytest.approx(0.5)
    assert a.channel_share_store == pytest.approx(0.5)
    assert a.category_share_shoes == pytest.approx(0.7)
    assert (b.recency_days, b.frequency, b.monetary, b.return_rate) == (122, 1, 20.0, 0.0)
    # c's line of 2024-07-15 is after the snapshot and is ignored
    assert (c.recency_days, c.frequency, c.monetary) == (2, 1, 100.0)
    assert "channel_share_web" in feats.numeric and "category_share_bags" in feats.numeric


def test_a_credit_note_written_with_a_positive_quantity_is_subtracted() -> None:
    """A "C" invoice with a positive quantity is still a return: its value was added to
    monetary (20 + 5 = 25, return rate -0.25) instead of subtracted."""
    from segmint.backtest import future_outcomes
    from segmint.migration import _period_revenue

    rows = [
        ("111", "INV1", "2024-01-10 10:00", 2, 10.0, "p1", "web", "shoes"),
        ("111", "CS1002", "2024-01-12 10:00", 1, 5.0, "p1", "web", "shoes"),
        ("111", "C7", "2024-01-13 10:00", -1, 2.0, "p1", "web", "shoes"),
    ]
    cleaned = clean(resolve(read_source(_lines(rows))))
    assert cleaned.audit.returns_rows == 2 and cleaned.audit.returns_amount == -7.0
    f = customer_features(cleaned, snapshot_date="2024-02-01").to_pandas().iloc[0]
    assert f.monetary == pytest.approx(20.0 - 5.0 - 2.0)
    assert f.return_rate == pytest.approx(7.0 / 20.0)
    out = future_outcomes(cleaned, "2024-01-01", "60D")
    assert out["future_revenue"].tolist() == [pytest.approx(13.0)]
    by_period = _period_revenue(cleaned, [dt.date(2024, 1, 1), dt.date(2024, 2, 1)])
    assert by_period["revenue"].tolist() == [pytest.approx(13.0)]


def test_a_return_without_a_purchase_in_the_horizon_counts_against_its_revenue() -> None:
    """Back-test outcomes: a customer who only returned in the horizon had a next-period
    revenue of 0 (returns were subtracted from the window's buyers only), while one who
    also bought a little had it net; both are net now, as the migration's revenue is."""
    from segmint.backtest import future_outcomes
    from segmint.migration import _period_revenue

    rows = [
        ("111", "INV1", "2024-01-10 10:00", 2, 10.0, "p1", "web", "shoes"),
        ("111", "R1", "2024-02-12 10:00", -1, 10.0, "p1", "web", "shoes"),  # return only
        ("222", "INV2", "2024-01-10 10:00", 2, 10.0, "p1", "web", "shoes"),
        ("222", "INV3", "2024-02-11 10:00", 1, 3.0, "p1", "web", "shoes"),
        ("222", "R2", "2024-02-12 10:00", -1, 10.0, "p1", "web", "shoes"),
    ]
    cleaned = clean(resolve(read_source(_lines(rows))))
    out = future_outcomes(cleaned, "2024-02-01", "30D").set_index("customer_id")
    assert out.loc["111", "future_revenue"] == pytest.approx(-10.0)
    assert out.loc["111", "future_orders"] == 0 and not out.loc["111", "purchased"]
    assert out.loc["222", "future_revenue"] == pytest.approx(3.0 - 10.0)
    assert out.loc["222", "future_orders"] == 1 and out.loc["222", "purchased"]
    by_period = _period_revenue(cleaned, [dt.date(2024, 2, 1), dt.date(2024, 3, 2)])
    assert by_period.set_index("customer_id")["revenue"].to_dict() == pytest.approx(
        out["future_revenue"].to_dict()
    )


def test_window_start_country_ties_and_returns_after_the_snapshot() -> None:
    """Boundaries no other test held (found by mutation testing): an order at the very
    start of the window is inside it; the main country of a tie is the first
    alphabetically; a return dated after the snapshot does not count."""
    cols = ["customer_id", "invoice_id", "invoice_date", "quantity", "unit_price"]
    cols += ["product_id", "country"]
    frame = pd.DataFrame(
        [
            ("x", "1", "2024-04-01 00:00", 1, 10.0, "p1", "France"),  # first day of 3M
            ("x", "2", "2024-03-31 23:59", 1, 10.0, "p1", "France"),  # the day before
            ("x", "3", "2024-05-01 10:00", 1, 10.0, "p1", "Belgium"),
            ("x", "3", "2024-05-01 10:00", 2, 10.0, "p2", "Belgium"),
            ("y", "4", "2024-03-01 10:00", 2, 10.0, "p1", "Spain"),
            ("y", "C5", "2024-07-10 10:00", -1, 10.0, "p1", "Spain"),  # after the snapshot
            # two lines without a country, one from Italy: Italian, not "no country"
            ("z", "6", "2024-03-01 10:00", 1, 10.0, "p1", None),
            ("z", "7", "2024-03-02 10:00", 1, 10.0, "p1", None),
            ("z", "8", "2024-03-03 10:00", 1, 10.0, "p1", "Italy"),
            ("w", "9", "2024-03-03 10:00", 1, 10.0, "p1", None),  # none at all
        ],
        columns=cols,
    )
    feats = _features(frame, snapshot_date="2024-07-01", window="3M").to_pandas()
    df = feats.set_index("customer_id")
    assert df.loc["x", "frequency"] == 2  # invoices 1 and 3, not 2
    assert df.loc["x", "country"] == "Belgium"  # 2 lines each: alphabetical
    whole = _features(frame, snapshot_date="2024-07-01").to_pandas().set_index("customer_id")
    assert (whole.loc["y", "monetary"], whole.loc["y", "return_rate"]) == (20.0, 0.0)
    assert whole.loc["z", "country"] == "Italy" and pd.isna(whole.loc["w", "country"])
    assert len(whole) == 4


def test_returns_no_customer_counts_are_named() -> None:
    """Returns kept aside by the cleaning but in no customer's net revenue (dated after
    the default snapshot, the last purchase day + 1, or of a customer with no purchase)
    were in the audit's returns and nowhere else, with no word: the audit's kept value
    plus its returns did not give the customers' revenue. They are named now, and the
    two add up."""
    rows = [
        ("111", "INV1", "2024-01-10 10:00", 2, 10.0, "p1", "web", "shoes"),
        ("111", "C1", "2024-01-12 10:00", -1, 10.0, "p1", "web", "shoes"),  # counted
        ("222", "INV2", "2024-01-15 10:00", 3, 10.0, "p1", "web", "shoes"),
        ("222", "C2", "2024-01-16 09:00", -1, 4.0, "p1", "web", "shoes"),  # after the last sale
        ("222", "C3", "2024-01-17 09:00", -2, 4.0, "p1", "web", "shoes"),  # after the last sale
        ("333", "C4", "2024-01-05 10:00", -1, 7.5, "p1", "web", "shoes"),  # never bought
        ("444", "C5", "2024-01-06 10:00", -1, 2.5, "p1", "web", "shoes"),  # never bought
    ]
    cleaned = clean(resolve(read_source(_lines(rows))))
    feats = customer_features(cleaned)
    assert feats.snapshot_date == dt.date(2024, 1, 16)  # the last purchase day + 1
    left = feats.returns_left_out()
    assert left == {
        "after_snapshot": {"lines": 2, "value": 12.0},
        "no_purchase": {"lines": 2, "value": 10.0, "customers": 2},
    }
    net = feats.to_pandas()["monetary"].sum()
    kept = 20.0 + 30.0
    assert kept + cleaned.audit.returns_amount + 12.0 + 10.0 == pytest.approx(net)
    note = returns_left_out_note(left, feats.snapshot_date)
    assert note is not None
    assert "2 return lines (value 12.00) dated on or after the snapshot date 2024-01-16" in note
    assert "2 return lines (value 10.00) of 2 customers with no purchase" in note
    # a snapshot after every return counts the late ones; a window leaves out, by its
    # definition, the returns before it (not named)
    later = customer_features(cleaned, snapshot_date="2024-02-01")
    assert later.returns_left_out() == {"no_purchase": {"lines": 2, "value": 10.0, "customers": 2}}
    recent = customer_features(cleaned, snapshot_date="2024-02-01", window="20D")
    assert recent.returns_left_out() is None
    assert returns_left_out_note(None, recent.snapshot_date) is None


def test_only_skips_optional_features_and_keeps_the_core_identical() -> None:
    full = _features(HAND, snapshot_date="2024-07-01").to_pandas()
    few = _features(HAND, snapshot_date="2024-07-01", only=["channel_share_web"]).to_pandas()
    assert "unique_products" not in few.columns and "category_share_bags" not in few.columns
    assert "channel_share_web" in few.columns
    same = [c for c in few.columns if c in full.columns]
    assert set(same) >= {"recency_days", "frequency", "monetary", "return_rate"}
    pd.testing.assert_frame_equal(few[same], full[same])


def test_default_snapshot_is_last_date_plus_one_day() -> None:
    feats = _features(HAND)
    assert feats.snapshot_date == dt.date(2024, 7, 16)
    assert feats.to_pandas().set_index("customer_id").loc["c", "recency_days"] == 1


def test_window_restricts_frequency_and_monetary_only() -> None:
    whole = _features(HAND, snapshot_date="2024-07-01").to_pandas().set_index("customer_id")
    recent = _features(HAND, snapshot_date="2024-07-01", window="3M")
    df = recent.to_pandas().set_index("customer_id")
    assert recent.window == "3M"
    # a: only invoice 2 (2024-06-20) and its return fall in April..June
    assert (df.loc["a", "frequency"], df.loc["a", "monetary"]) == (1, 0.0)
    assert df.loc["a", "return_rate"] == 1.0
    # b bought before the window: stays a customer, with nothing in the window
    assert (df.loc["b", "frequency"], df.loc["b", "monetary"]) == (0, 0.0)
    assert df.loc["b", "avg_basket_value"] == 0.0
    for col in ("recency_days", "tenure_days", "first_purchase"):
        assert (df[col] == whole[col]).all()


@pytest.mark.parametrize(
    ("window", "start"),
    [
        ("90D", "2024-04-02"),
        ("6M", "2024-01-01"),
        ("12m", "2023-07-01"),
        ("1Y", "2023-07-01"),
        ("2W", "2024-06-17"),
    ],
)
def test_parse_window(window: str, start: str) -> None:
    assert parse_window(window, dt.date(2024, 7, 1)) == dt.date.fromisoformat(start)


def test_bad_windows_and_snapshots() -> None:
    for bad in ("12", "M", "0M", "3 months"):
        with pytest.raises(ConfigError, match="not a length of time"):
            parse_window(bad, dt.date(2024, 1, 1))
    with pytest.raises(ConfigError, match="not a date"):
        _features(HAND, snapshot_date="someday")
    with pytest.raises(DataQualityError, match="no customer has a purchase before"):
        _features(HAND, snapshot_date="2020-01-01")


def test_customer_level_rejects_a_window(flo: Path) -> None:
    with pytest.raises(ConfigError, match="customer-level"):
        _features(flo, window="6M")


def test_a_snapshot_before_a_customer_tables_last_purchases_is_refused(flo: Path) -> None:
    """A customer-level table cannot be cut back: FLO at 2021-01-01 gave 12,238
    customers a negative recency (down to -149 days) and segments named from them."""
    raw = pd.read_csv(flo)
    last = pd.to_datetime(raw["last_order_date"])
    late = int((last >= "2021-01-01").sum())
    with pytest.raises(ConfigError, match=f"last purchase of {late:,} customers") as err:
        _features(flo, snapshot_date="2021-01-01")
    assert "2021-05-30" in str(err.value) and "cannot be cut back" in str(err.value)
    feats = _features(flo, snapshot_date="2021-06-01").to_pandas()
    assert (feats["recency_days"] >= 1).all() and len(feats) == len(raw)


def test_a_snapshot_long_after_the_data_warns(caplog) -> None:
    with caplog.at_level("WARNING", logger="segmint"):
        _features(HAND, snapshot_date="2025-06-01")
    assert any("days after the last purchase in the data" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="segmint"):
        _features(HAND)
    assert not caplog.records


def test_precomputed_rfm_table() -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["x", "y"],
            "recency": [5, 50],
            "frequency": [3, 1],
            "monetary": [300.0, 20.0],
        }
    )
    feats = _features(df)
    out = feats.to_pandas()
    assert feats.kind == "customers" and feats.snapshot_date is None
    assert out["recency_days"].tolist() == [5, 50]
    assert out["avg_basket_value"].tolist() == [100.0, 20.0]


# ---------------------------------------------------------------- feature-set metadata
def test_feature_set_is_stored_and_checked(tmp_path: Path) -> None:
    feats = _features(HAND, snapshot_date="2024-07-01")
    out = feats.write(tmp_path / "customers.parquet")
    frame, meta = read_features(out)
    assert (meta["feature_set"], meta["feature_set_version"]) == (FEATURE_SET, FEATURE_SET_VERSION)
    assert meta["snapshot_date"] == "2024-07-01"
    assert len(frame) == 3
    csv = feats.write(tmp_path / "customers.csv")
    assert read_features(csv)[1]["feature_set"] == FEATURE_SET

    table = pq.read_table(out)
    other = dict(json.loads(table.schema.metadata[b"segmint"]), feature_set_version="0")
    pq.write_table(
        table.replace_schema_metadata({b"segmint": json.dumps(other).encode()}),
        tmp_path / "old.parquet",
    )
    with pytest.raises(
        InputError,
        match=r"built with feature set segmint.customer v0, but "
        r"this segmint uses segmint.customer v1",
    ):
        read_features(tmp_path / "old.parquet")
    pd.DataFrame({"customer_id": ["a"]}).to_parquet(tmp_path / "plain.parquet")
    with pytest.raises(InputError, match="carries no segmint feature-set metadata"):
        read_features(tmp_path / "plain.parquet")
    with pytest.raises(ConfigError, match=r"must end in \.parquet, \.csv or \.csv\.gz"):
        feats.write(tmp_path / "customers.xlsx")


def test_same_input_same_features(online_retail: Path) -> None:
    a = _features(online_retail).to_pandas()
    b = _features(online_retail).to_pandas()
    pd.testing.assert_frame_equal(a, b)


def test_integer_customer_key_gives_the_same_features_and_audit(
    retail_pandas: pd.DataFrame, tmp_path: Path
) -> None:
    """Online Retail with float ids (grouped by the hidden integer key) and with the same
    ids as text (grouped by the text) give the same cleaning audit, features, back-test
    outcomes and lifetime-value summary."""
    from segmint.backtest import future_outcomes
    from segmint.clv import clv_summary
    from segmint.schema import CUSTOMER_KEY

    runs = {}
    for name, ids in {
        "float": retail_pandas["CustomerID"].astype("float64"),
        "text": retail_pandas["CustomerID"].astype("string"),
    }.items():
        path = tmp_path / f"{name}.parquet"
        retail_pandas.assign(CustomerID=ids).to_parquet(path, index=False)
        cleaned = clean(resolve(read_source(path)))
        assert (CUSTOMER_KEY in cleaned.lines.columns) is (name == "float")
        outcomes = future_outcomes(cleaned, "2011-09-01", "90D")
        outcomes = outcomes.sort_values("customer_id").reset_index(drop=True)
        runs[name] = (
            cleaned.audit.to_dict(),
            customer_features(cleaned).to_pandas(),
            outcomes,
            clv_summary(cleaned),
        )
    (audit_f, feats_f, out_f, clv_f), (audit_t, feats_t, out_t, clv_t) = (
        runs["float"],
        runs["text"],
    )
    audit_f.pop("source"), audit_t.pop("source")
    assert audit_f == audit_t
    assert audit_f["kept_customers"] == len(feats_f) == 4_334
    pd.testing.assert_frame_equal(feats_f, feats_t)
    assert len(out_f) > 1_000
    pd.testing.assert_frame_equal(out_f, out_t)
    pd.testing.assert_frame_equal(clv_f, clv_t)


def test_equal_channel_totals_get_equal_m_scores(tmp_path: Path) -> None:
    """10.01 online + 20.04 offline is the same spend as 30.05 online: the float sum
    30.049999999999997 scored M 3 beside the other customer's 4."""
    from segmint.rfm import score

    rows = [("A", 10.01, 20.04), ("B", 30.05, 0.0), ("C", 1.0, 0.0), ("D", 2.0, 0.0)]
    rows.append(("E", 100.0, 0.0))
    frame = pd.DataFrame(
        {
            "master_id": [r[0] for r in rows],
            "first_order_date": "2020-01-01",
            "last_order_date": "2021-01-01",
            "order_num_total_ever_online": 1.0,
            "order_num_total_ever_offline": 1.0,
            "customer_value_total_ever_online": [r[1] for r in rows],
            "customer_value_total_ever_offline": [r[2] for r in rows],
        }
    )
    frame.to_csv(tmp_path / "flo.csv", index=False)
    feats = _features(tmp_path / "flo.csv")
    table = score(feats.to_pandas()).table.set_index("customer_id")
    assert feats.to_pandas().set_index("customer_id").loc["A", "monetary"] == 30.05
    assert table.loc["A", "m_score"] == table.loc["B", "m_score"]
