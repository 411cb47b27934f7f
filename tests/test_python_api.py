"""The library as a notebook user calls it: the objects each step returns are accepted by
the next, wrong kinds of input get a clear error, and results print briefly."""

from __future__ import annotations

import duckdb
import ibis
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest
from sklearn.exceptions import NotFittedError

import segmint
from segmint import Segmenter
from segmint.clv import clv_summary, customer_value
from segmint.datasets import make_transactions
from segmint.errors import WrongTypeError
from segmint.features import customer_features
from segmint.report import build_report
from segmint.rfm import score


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    return make_transactions(n_customers=150, seed=4).lines


@pytest.fixture(scope="module")
def prepared(lines: pd.DataFrame) -> segmint.pipeline.Prepared:
    return segmint.prepare(lines)


def test_what_prepare_returns_goes_straight_into_features_and_clv(prepared) -> None:
    by_prepared = customer_features(prepared).to_pandas()
    by_cleaned = customer_features(prepared.cleaned).to_pandas()
    pd.testing.assert_frame_equal(by_prepared, by_cleaned)
    pd.testing.assert_frame_equal(clv_summary(prepared), clv_summary(prepared.cleaned))
    value = customer_value(prepared, horizon="90D")
    assert len(value.table) == len(by_prepared)


def test_raw_lines_or_a_path_where_clean_lines_belong_say_what_to_pass(lines) -> None:
    for call, wrong in [
        (customer_features, lines),
        (customer_features, "transactions.csv"),
        (clv_summary, "transactions.csv"),
        (customer_value, "transactions.csv"),
    ]:
        with pytest.raises(TypeError, match=r"takes clean lines") as info:
            call(wrong)
        assert isinstance(info.value, WrongTypeError)
        assert "segmint.prepare(data)" in str(info.value)
    # a DataFrame is a customer table to the CLV summary: its error names prepare too
    with pytest.raises(ValueError, match=r"(?s)lacks .* segmint\.prepare\(df\)"):
        clv_summary(lines)


def test_rfm_score_of_clean_lines_names_the_customer_table(prepared) -> None:
    for wrong in (prepared, prepared.cleaned):
        with pytest.raises(TypeError, match="score takes the customer table"):
            score(wrong)
    with pytest.raises(TypeError, match="score takes a customer table"):
        score([1, 2, 3])


def test_report_of_an_unfitted_segmenter_says_fit_first(prepared) -> None:
    feats = customer_features(prepared)
    with pytest.raises(NotFittedError, match="not fitted yet"):
        build_report(feats, Segmenter())


def test_results_print_one_line_in_a_notebook(lines, prepared, tmp_path) -> None:
    run = segmint.run(
        lines,
        {"segment": {"algorithm": "kmeans", "n_clusters": 3}, "clv": {"enabled": False}},
        out=tmp_path / "run",
    )
    model = segmint.load_model(tmp_path / "run" / "model.segmint")
    shown = {
        "run": repr(run),
        "report": repr(run.report),
        "prepared": repr(prepared),
        "cleaned": repr(prepared.cleaned),
        "model": repr(model),
    }
    for name, text in shown.items():
        # the defaults printed the report's HTML (over 1 MB) and every ibis expression
        assert "\n" not in text and len(text) < 300, (name, len(text), text[:500])
    assert shown["run"].startswith("<RunResult: 150 customers in 3 segments (K-Means)")
    assert "3 segments" in shown["report"] and "MB of HTML" in shown["report"]
    assert f"{prepared.cleaned.audit.kept_rows:,} kept" in shown["prepared"]
    assert "K-Means, 3 segments on recency_days" in shown["model"]


def test_a_named_index_is_data_and_an_unnamed_one_is_not(lines) -> None:
    plain = segmint.prepare(lines).cleaned.audit
    # a notebook user's transactions indexed by date (or by customer) are the same data:
    # the index used to be dropped, then "no column for invoice_date"
    for indexed in (lines.set_index("InvoiceDate"), lines.set_index(["CustomerID", "InvoiceNo"])):
        audit = segmint.prepare(indexed).cleaned.audit
        assert (audit.input_rows, audit.kept_rows, audit.kept_customers) == (
            plain.input_rows,
            plain.kept_rows,
            plain.kept_customers,
        )
        assert audit.kept_amount == pytest.approx(plain.kept_amount)
    shuffled = lines.sample(frac=1.0, random_state=0)  # an unnamed index is row numbers
    assert segmint.read_source(shuffled).table.columns[: len(lines.columns)] == tuple(lines.columns)


def test_data_of_a_kind_segmint_does_not_read_names_what_it_takes(lines) -> None:
    for wrong in (lines.to_numpy(), None, lines.to_dict()):
        with pytest.raises(TypeError, match="file path, a pandas DataFrame or any table with"):
            segmint.prepare(wrong)
    with pytest.raises(segmint.SegmintError, match="'Country' appear more than once"):
        segmint.prepare(pd.concat([lines, lines[["Country"]]], axis=1))
    # an Arrow table's repeated name was renamed Country_1 by DuckDB without a word
    doubled = pa.Table.from_pandas(lines).append_column("Country", pa.array(lines["Country"]))
    with pytest.raises(segmint.SegmintError, match="'Country' appear more than once"):
        segmint.prepare(doubled)
    with pytest.raises(TypeError, match="one column, not a table"):
        segmint.prepare(pl.from_pandas(lines["Country"]))
    with pytest.raises(TypeError, match=r"LazyFrame, which is a query.*") as info:
        segmint.prepare(pl.from_pandas(lines).lazy())
    assert ".collect()" in str(info.value)


def _audit(prepared: segmint.pipeline.Prepared) -> tuple[int, int, int, float]:
    a = prepared.cleaned.audit
    return a.input_rows, a.kept_rows, a.kept_customers, round(a.kept_amount, 6)


def test_arrow_stream_tables_are_read_as_pandas_ones_are(lines) -> None:
    """polars, DuckDB relations, pyarrow tables and one-shot RecordBatchReaders are read
    through the Arrow C stream interface, with the same results as pandas."""
    expected = _audit(segmint.prepare(lines))
    con = duckdb.connect()
    con.register("raw_lines", lines)
    for data in (
        pl.from_pandas(lines),
        con.sql("SELECT * FROM raw_lines"),
        pa.Table.from_pandas(lines).to_reader(),  # read once: a second read is empty
        ibis.memtable(lines),
    ):
        assert _audit(segmint.prepare(data)) == expected, type(data)
    reader = pa.Table.from_pandas(lines).to_reader()
    run = segmint.run(reader, {"segment": {"algorithm": "kmeans", "n_clusters": 3}})
    assert run.fingerprint["rows"] == len(lines)  # fingerprinted from the same single read
    closed = duckdb.connect()
    relation = closed.sql("SELECT 1 AS a")
    closed.close()
    with pytest.raises(segmint.SegmintError, match="could not be read.*closed"):
        segmint.read_source(relation)


def test_arrow_stream_customer_tables_go_into_every_stage(lines, prepared, tmp_path) -> None:
    customers = customer_features(prepared).to_pandas()
    con = duckdb.connect()
    con.register("customers", customers)
    expected = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(customers)
    for table in (pl.from_pandas(customers), con.sql("SELECT * FROM customers")):
        seg = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(table)
        assert (seg.labels_ == expected.labels_).all()
        assert (seg.predict(table) == expected.labels_).all()
        assert score(table).table.equals(score(customers).table)
        assert len(build_report(table, seg).profile.table) == 3
        pd.testing.assert_frame_equal(clv_summary(table), clv_summary(customers))
    with pytest.raises(TypeError, match="collect it first"):
        expected.predict(pl.from_pandas(customers).lazy())
    result = segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}})
    model = segmint.load_model(result.write(tmp_path / "run") / "model.segmint")
    by_polars = model.assign(pl.from_pandas(result.customers))
    assert (by_polars["segment_id"] == result.customers["segment_id"]).all()
    scored = model.score(pl.from_pandas(lines))
    assert len(scored) == len(result.customers)


def test_segmenter_matches_arrays_and_tables_as_scikit_learn_does(prepared) -> None:
    table = customer_features(prepared).to_pandas()
    cols = ["recency_days", "frequency", "monetary", "tenure_days"]
    on_table = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(table)
    with pytest.warns(UserWarning, match="does not have valid feature names"):
        by_array = on_table.predict(table[cols].to_numpy())
    assert (by_array == on_table.labels_).all()
    on_array = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0)
    on_array.fit(table[cols].to_numpy())
    with pytest.warns(UserWarning, match="has feature names") as caught:
        by_table = on_array.predict(table[cols])
    assert len(caught) == 1
    assert (by_table == on_array.labels_).all() and (on_array.labels_ == on_table.labels_).all()
    with pytest.raises(ValueError, match="X has 3 features, but Segmenter is expecting 4"):
        on_table.predict(table[cols[:3]].to_numpy())
    # one feature named as a string is that column, not its letters
    one = Segmenter(algorithm="kmeans", n_clusters=2, features="monetary", categorical="country")
    assert one.fit(table).transform_.features_ == ["monetary"]
    assert one.transform_.categorical_ == ["country"]


def test_decimal_money_columns_are_numbers(prepared) -> None:
    """DECIMAL columns (a DuckDB relation over SQL money, pandas.read_sql of NUMERIC:
    decimal.Decimal objects) were refused as "not numeric (dtype object)", with a hint
    to segment on money as a categorical feature."""
    import decimal

    customers = customer_features(prepared).to_pandas()
    con = duckdb.connect()
    con.register("customers", customers)
    relation = con.sql(
        "SELECT * REPLACE (CAST(ROUND(monetary, 2) AS DECIMAL(18, 2)) AS monetary) FROM customers"
    )
    by_decimal = customers.assign(
        monetary=customers["monetary"].map(lambda v: decimal.Decimal(f"{v:.2f}"))
    )
    rounded = customers.assign(monetary=customers["monetary"].round(2))
    expected = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(rounded)
    for table in (relation, pl.from_arrow(relation.arrow()), by_decimal):
        seg = Segmenter(algorithm="kmeans", n_clusters=3, stability_resamples=0).fit(table)
        assert (seg.labels_ == expected.labels_).all(), type(table)
        assert seg.score(table) == pytest.approx(expected.score(rounded))


def test_run_takes_the_path_of_a_configuration_file(lines, tmp_path) -> None:
    """`segmint.run(data, "segmint.toml")`, the obvious call, was an AttributeError ('str'
    object has no attribute 'load'); a config of another type was the same."""
    cfg = tmp_path / "segmint.toml"
    cfg.write_text('[segment]\nalgorithm = "kmeans"\nn_clusters = 3\n\n[clv]\nenabled = false\n')
    for given in (cfg, str(cfg)):
        result = segmint.run(lines, given)
        assert result.customers["segment_id"].nunique() == 3
        assert result.config.segment.n_clusters == 3
    with pytest.raises(TypeError, match="config is a list, not a RunConfig") as info:
        segmint.run(lines, ["kmeans"])
    assert isinstance(info.value, WrongTypeError)
    cfg.write_text("[segment]\nn_clusters = 0\n")
    with pytest.raises(ValueError, match="n_clusters"):
        segmint.run(lines, cfg)
    # a name for a segment the run does not have: the key is named ("names: there is no
    # segment 9" came after the whole search)
    cfg.write_text(
        '[segment]\nalgorithm = "kmeans"\nn_clusters = 3\n\n[segments]\nnames = {9 = "Ghost"}\n'
    )
    with pytest.raises(ValueError, match="segments.names: there is no segment 9") as info:
        segmint.run(lines, cfg)
    assert "change [segments] in the configuration" in info.value.hint


def test_wrong_types_in_the_python_api_say_what_to_pass(lines, prepared, tmp_path) -> None:
    """Each of these was a raw Python or scikit-learn error, or a wrong answer (a number
    as a snapshot date was read as 1970-01-01)."""
    from segmint.bundle import save_model
    from segmint.errors import ConfigError
    from segmint.profile import profile
    from segmint.schema import resolve

    feats = customer_features(prepared).to_pandas()
    with pytest.raises(ConfigError, match="snapshot date 20111210 is a number, not a date"):
        customer_features(prepared, snapshot_date=20111210)
    with pytest.raises(WrongTypeError, match="load_model takes the path"):
        segmint.load_model(5)
    with pytest.raises(WrongTypeError, match="mapping is a list"):
        resolve(segmint.read_source(lines), ["CustomerID"])
    with pytest.raises(WrongTypeError, match="save_model takes a fitted Segmenter"):
        save_model(Segmenter(), tmp_path / "m.segmint", {})
    fitted = Segmenter(algorithm="kmeans", n_clusters=3, random_state=0).fit(feats)
    with pytest.raises(WrongTypeError, match="segmenter.labels_"):
        profile(feats, fitted)
    with pytest.raises(ConfigError, match=r"config\['segment'\] is 5"):
        segmint.run(lines, {"segment": 5})
    # dotted keys, as the CLI's options name them
    result = segmint.run(lines, {"segment.algorithm": "kmeans", "segment.n_clusters": 3})
    assert result.segmenter.n_segments_ == 3
    out = tmp_path / "run"
    result = segmint.run(lines, {"segment.n_clusters": 3}, out=out)
    model = segmint.load_model(out)
    assert model.predict(feats.iloc[:0]).shape == (0,)
    with pytest.raises(WrongTypeError, match="load is a str"):
        model.score(lines, load="columns")
    with pytest.raises(ConfigError, match="load"):
        model.score(lines, load={"colums": {}})
