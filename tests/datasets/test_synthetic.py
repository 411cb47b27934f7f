"""The demo data generator: deterministic, realistic dirt, personas that differ."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from segmint.clean import clean
from segmint.datasets import PERSONAS, iter_transactions, make_transactions, write_transactions
from segmint.errors import ConfigError
from segmint.io import read_source
from segmint.schema import resolve


@pytest.fixture(scope="module")
def demo():
    return make_transactions(n_customers=1500, seed=7)


def test_same_seed_same_data_other_seed_other_data(demo) -> None:
    again = make_transactions(n_customers=1500, seed=7)
    pd.testing.assert_frame_equal(demo.lines, again.lines)
    other = make_transactions(n_customers=1500, seed=8)
    assert not demo.lines.equals(other.lines)


def test_columns_and_personas(demo) -> None:
    lines, personas = demo
    assert list(lines.columns) == [
        "InvoiceNo",
        "StockCode",
        "Description",
        "Quantity",
        "InvoiceDate",
        "UnitPrice",
        "CustomerID",
        "Country",
    ]
    assert len(personas) == 1500 and personas["customer_id"].is_unique
    assert set(personas["persona"]) == {p.name for p in PERSONAS}
    assert abs(sum(p.share for p in PERSONAS) - 1) < 1e-9
    ids = set(lines["CustomerID"].dropna().astype(str))
    assert ids == set(personas["customer_id"])


def test_has_the_dirt_of_real_exports(demo) -> None:
    lines = demo.lines
    assert 0.08 < lines["CustomerID"].isna().mean() < 0.35
    assert lines["InvoiceNo"].str.startswith("C").sum() > 0
    assert (lines["Quantity"] < 0).sum() > lines["InvoiceNo"].str.startswith("C").sum()
    assert {"POST", "M"} <= set(lines["StockCode"])
    assert (lines["UnitPrice"] == 0).sum() > 0
    assert lines.duplicated().sum() > 0
    assert lines["InvoiceDate"].min() >= pd.Timestamp("2010-12-01")
    assert lines["InvoiceDate"].max() <= pd.Timestamp("2011-12-10")
    # seasonality: November is busier than February
    months = lines["InvoiceDate"].dt.month.value_counts()
    assert months[11] > 1.5 * months[2]


def test_clean_data_option() -> None:
    lines, _ = make_transactions(n_customers=200, seed=1, dirty=False)
    assert lines["CustomerID"].notna().all()
    assert (lines["Quantity"] > 0).all() and (lines["UnitPrice"] > 0).all()


def test_personas_behave_as_planted(demo) -> None:
    lines, personas = demo
    result = clean(resolve(read_source(lines)))
    kept = result.lines.execute()
    per = (
        kept.groupby("customer_id")
        .agg(
            orders=("invoice_id", "nunique"), spend=("amount", "sum"), last=("invoice_date", "max")
        )
        .join(personas.set_index("customer_id"))
    )
    med = per.groupby("persona").median()
    assert (
        med.loc["champions", "orders"]
        > med.loc["loyal", "orders"]
        > med.loc["hibernating", "orders"]
    )
    assert med.loc["big_spenders", "spend"] > med.loc["loyal", "spend"]
    assert med.loc["new", "last"] > med.loc["at_risk", "last"] > med.loc["hibernating", "last"]
    assert (per.loc[per.persona == "one_timers", "orders"] == 1).all()
    first = kept.groupby("customer_id")["invoice_date"].min()
    new_ids = personas.loc[personas.persona == "new", "customer_id"]
    assert (first[new_ids] > pd.Timestamp("2011-10-01")).all()


def test_chunks_are_disjoint_and_bounded() -> None:
    parts = list(iter_transactions(250, seed=3, chunk_customers=100))
    assert [len(p.personas) for p in parts] == [100, 100, 50]
    ids = [set(p.personas.customer_id) for p in parts]
    assert not (ids[0] & ids[1]) and not (ids[1] & ids[2])
    invoices = [set(p.lines.InvoiceNo) for p in parts]
    assert not (invoices[0] & invoices[1])


@pytest.mark.parametrize("ending", ["parquet", "csv"])
def test_write_transactions(tmp_path: Path, ending: str) -> None:
    path = tmp_path / f"lines.{ending}"
    n = write_transactions(path, n_lines=20_000, seed=2, chunk_customers=100)
    assert n >= 20_000
    src = read_source(path)
    assert src.count() == n
    assert resolve(src).kind == "transactions"
    assert not list(tmp_path.glob(".*part"))


def test_bad_arguments() -> None:
    with pytest.raises(ConfigError):
        make_transactions(n_customers=0)
    with pytest.raises(ConfigError, match="after start"):
        make_transactions(10, start="2011-01-01", end="2010-01-01")
    with pytest.raises(ConfigError, match="exactly one"):
        write_transactions("x.parquet")
