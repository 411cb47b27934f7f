"""The same pipeline inside PostgreSQL and on Spark: identical results to DuckDB.

PostgreSQL tests start a throwaway server (tests/pgcluster.py: initdb + pg_ctl in a temp
folder, on a free loopback port) and read tables in place; Spark tests run PySpark in
local mode. Both skip with the reason when the server programs, Java or the optional
packages are missing, and fail instead on CI (CI=true), where `make test` installs them.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sys
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import int96_parquet, zoned_parquet
from pgcluster import cluster, load_frame, server_bin
from segmint.config import CleanConfig, LoadConfig
from segmint.datasets import make_transactions
from segmint.errors import ConfigError, InputError, SegmintWarning
from segmint.features import customer_features
from segmint.pipeline import prepare

ON_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason}; on CI (CI=true) `make test` installs it, so this is a failure")
    pytest.skip(reason)


def _assert_same_features(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Identical customers and features; floats to 1e-9 relative."""
    assert list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    for c in a.columns:
        x, y = a[c], b[c]
        assert x.dtype == y.dtype, c
        if x.dtype.kind == "f":
            np.testing.assert_allclose(y, x, rtol=1e-9, atol=0, err_msg=c)
        else:
            assert x.equals(y), c


def _assert_same_segments(local: pd.DataFrame, other: pd.DataFrame) -> None:
    """A model fitted on the DuckDB features assigns the other engine's customers to the
    same segments."""
    from segmint import Segmenter

    seg = Segmenter(
        features=["recency_days", "frequency", "monetary", "tenure_days"],
        algorithm="kmeans",
        n_clusters=5,
        stability_resamples=0,
        random_state=0,
    ).fit(local)
    labels = seg.predict(local)
    assert len(set(labels)) == 5
    assert (seg.predict(other) == labels).all()


def _assert_same_inspect(a: dict, b: dict) -> None:
    """Two `segmint inspect --json` outputs: the same audit and features, the feature
    summary's floats up to summation order."""
    assert a["audit"]["rules"] == b["audit"]["rules"]
    fa, fb = a["features"], b["features"]
    assert {k: v for k, v in fa.items() if k != "summary"} == {
        k: v for k, v in fb.items() if k != "summary"
    }
    for ra, rb in zip(fa["summary"], fb["summary"], strict=True):
        assert ra.keys() == rb.keys() and ra["feature"] == rb["feature"]
        for key, value in ra.items():
            if isinstance(value, float):
                assert rb[key] == pytest.approx(value, rel=1e-9, abs=1e-12), key
            else:
                assert rb[key] == value, key


def _audit_counts(prepared) -> dict:
    audit = json.loads(prepared.cleaned.audit.to_json())
    audit.pop("source")
    return audit


@pytest.fixture(scope="module")
def lines() -> pd.DataFrame:
    """Generated lines with the usual dirt (missing ids, returns, duplicates, ...)."""
    return make_transactions(1500, seed=7).lines


# ------------------------------------------------------------------------ PostgreSQL


PG_PASSWORD = "s3cret-for-tests"


@pytest.fixture(scope="module")
def pg_url(tmp_path_factory) -> str:
    """A server that asks for a password; the tests give it through a .pgpass file
    (PGPASSFILE), as a nightly job would, so the URL itself carries none."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        _unavailable("psycopg is not installed (pip install 'segmint[postgres]')")
    if server_bin() is None:
        _unavailable("PostgreSQL server programs not found (Debian package postgresql)")
    pgpass = tmp_path_factory.mktemp("pgpass") / ".pgpass"
    with cluster(password=PG_PASSWORD) as url:
        port = url.rsplit(":", 1)[1].split("/")[0]
        pgpass.write_text(f"127.0.0.1:{port}:*:segmint:{PG_PASSWORD}\n")
        pgpass.chmod(0o600)
        saved = os.environ.get("PGPASSFILE")
        os.environ["PGPASSFILE"] = str(pgpass)
        try:
            yield url
        finally:
            if saved is None:
                os.environ.pop("PGPASSFILE", None)
            else:
                os.environ["PGPASSFILE"] = saved


@pytest.fixture(scope="module")
def pg_sales(pg_url: str, lines: pd.DataFrame) -> str:
    """Generated lines as a typed table (timestamp, bigint, double), as in a warehouse."""
    load_frame(pg_url, "sales", lines)
    return "sales"


def _fetch(url: str, query: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as conn:
        return conn.execute(query).fetchall()


def test_postgres_matches_duckdb_on_online_retail(pg_url, online_retail, tmp_path):
    raw = pd.read_csv(
        online_retail,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"},
        parse_dates=["InvoiceDate"],
    )
    load_frame(pg_url, "online_retail", raw)
    in_db = prepare(pg_url, LoadConfig(table="online_retail"), CleanConfig())
    local = prepare(str(online_retail), LoadConfig(), CleanConfig())
    assert in_db.source.format == "postgres"
    assert _audit_counts(in_db) == _audit_counts(local)
    a = customer_features(local.cleaned).to_pandas()
    b = customer_features(in_db.cleaned).to_pandas()
    _assert_same_features(a, b)
    _assert_same_segments(a, b)


def test_postgres_columns_differing_only_in_case_are_not_guessed(pg_url, lines):
    """PostgreSQL keeps ``"Quantity"`` and ``"quantity"`` apart; auto-mapping took the
    first without a word (the other was "not used"). Refused naming both, and a choice
    made with the mapping is kept."""
    frame = lines[lines["CustomerID"].notna()].head(200).copy()
    frame["quantity"] = frame["Quantity"] * 1000
    load_frame(pg_url, "two_quantities", frame)
    with pytest.raises(InputError) as e:
        prepare(pg_url, LoadConfig(table="two_quantities"), CleanConfig())
    assert "has columns 'Quantity' and 'quantity'" in e.value.message
    assert "--map quantity=quantity" in e.value.hint
    chosen = prepare(
        pg_url, LoadConfig(table="two_quantities", columns={"quantity": "quantity"}), CleanConfig()
    )
    got = chosen.cleaned.lines.to_pandas()["quantity"]
    assert (got.abs() >= 1000).all()


def test_postgres_money_columns_are_read_as_numbers(pg_url):
    """A legacy ``money`` price column: the server refused to cast it to double ("the
    engine stopped with an error ... check that the server is reachable"), and the
    preview `inspect` shows failed in Arrow on its text ("$1,234.50", an internal error)."""
    import psycopg

    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS legacy; CREATE TABLE legacy (customer text, "
            "invoice text, day date, price money, qty int)"
        )
        conn.execute(
            "INSERT INTO legacy VALUES ('a', '1', '2010-12-01', '1,234.50', 2), "
            "('b', '2', '2010-12-02', '2.50', 1)"
        )
    columns = {"customer_id": "customer", "invoice_id": "invoice", "invoice_date": "day",
               "unit_price": "price", "quantity": "qty"}  # fmt: skip
    prep = prepare(pg_url, LoadConfig(table="legacy", columns=columns), CleanConfig())
    got = prep.cleaned.lines.to_pandas().sort_values("invoice_id")
    assert got["amount"].tolist() == [2469.0, 2.5]
    assert prep.source.table.limit(5).to_pyarrow().num_rows == 2


def test_postgres_text_columns_parse_like_files(pg_url, lines, tmp_path):
    """A table of text columns (a raw import) parses exactly like the same CSV: a value
    that is not a number is reported with its row, and dates that are not dates are
    dropped by the same rule, instead of failing the query (ibis compiles try_cast to a
    plain CAST on PostgreSQL)."""
    from segmint.errors import ParseError

    text = lines.head(3_000).astype("string").astype(object)
    text["InvoiceDate"] = [
        None if v is None else pd.Timestamp(v).strftime("%m/%d/%Y %H:%M")
        for v in text["InvoiceDate"]
    ]
    text.loc[8, "InvoiceDate"] = "02/30/2011 10:00"  # no such day
    text.loc[9, "InvoiceDate"] = "someday"
    # float ids from a decimal-comma export: "17850,0" is customer 17850 there too
    comma = text["CustomerID"].notna() & (text.index % 7 == 0)
    text.loc[comma, "CustomerID"] = text.loc[comma, "CustomerID"] + ",0"
    bad = text.copy()
    bad.loc[3, "Quantity"] = "three"
    for frame, table in ((bad, "sales_bad"), (text, "sales_text")):
        frame.to_csv(tmp_path / f"{table}.csv", index=False)
        load_frame(pg_url, table, frame, text=True)

    errors = []
    for data, load in (
        (str(tmp_path / "sales_bad.csv"), LoadConfig()),
        (pg_url, LoadConfig(table="sales_bad")),
    ):
        with pytest.raises(ParseError) as err:
            prepare(data, load, CleanConfig())
        errors.append(str(err.value).split(": ", 1)[1])
    assert errors[0] == errors[1]
    assert "'three' in data row 4" in errors[1]

    local = prepare(str(tmp_path / "sales_text.csv"), LoadConfig(), CleanConfig())
    in_db = prepare(pg_url, LoadConfig(table="sales_text"), CleanConfig())
    audit = _audit_counts(in_db)
    assert audit == _audit_counts(local)
    rules = {r["name"]: r["matched"] for r in audit["rules"]}
    assert rules["unparseable_date"] == 2
    in_db_features = customer_features(in_db.cleaned).to_pandas()
    _assert_same_features(customer_features(local.cleaned).to_pandas(), in_db_features)
    assert comma.sum() > 100 and not in_db_features["customer_id"].str.contains(",").any()


def test_postgres_duplicates_compare_unmapped_columns_like_files(pg_url, tmp_path):
    """Lines that differ only in a column no canonical column is mapped from (the
    product of a table mapped without product_id) are two lines in the database as in
    a file; a line repeated whole is one duplicate."""
    frame = pd.DataFrame(
        [
            ("536365", "85123A", 6, "2010-12-01 08:26:00", 2.55, "17850"),
            ("536365", "71053", 6, "2010-12-01 08:26:00", 2.55, "17850"),
            ("536365", "71053", 6, "2010-12-01 08:26:00", 2.55, "17850"),
        ],
        columns=["beleg", "artikel", "menge", "datum", "preis", "kunde"],
    )
    frame["datum"] = pd.to_datetime(frame["datum"])
    frame.to_csv(tmp_path / "belege.csv", index=False)
    load_frame(pg_url, "belege", frame)
    columns = {
        "customer_id": "kunde",
        "invoice_id": "beleg",
        "invoice_date": "datum",
        "quantity": "menge",
        "unit_price": "preis",
    }
    for data, load in (
        (str(tmp_path / "belege.csv"), LoadConfig(columns=columns)),
        (pg_url, LoadConfig(table="belege", columns=columns)),
    ):
        audit = prepare(data, load, CleanConfig()).cleaned.audit
        assert (audit.input_rows, audit.kept_rows, audit.rule("duplicate").dropped) == (3, 2, 1)


def test_postgres_query_instead_of_table(pg_url, pg_sales):
    country = "United Kingdom"
    prepared = prepare(
        pg_url,
        LoadConfig(query=f"SELECT * FROM sales WHERE \"Country\" = '{country}'"),
        CleanConfig(),
    )
    feats = customer_features(prepared.cleaned).to_pandas()
    assert (feats["country"] == country).all()
    assert len(feats) > 100


def test_run_score_and_write_back(cli, pg_url, pg_sales, tmp_path):
    """read -> clean -> features in the server -> run -> score -> upsert; the second
    write of the same scores changes nothing (idempotent)."""
    out = tmp_path / "run"
    res = cli(
        "run", "--source", pg_url, "--table", pg_sales, "--out", out,
        "--algorithm", "kmeans", "--k", "4", "--no-clv", "--seed", "3",
    )  # fmt: skip
    assert res.code == 0, res.err
    assert not (out / "rejected.parquet").exists()  # dropped lines stay in the database
    run_info = json.loads((out / "run.json").read_text())
    assert "rejected.parquet" not in run_info["files"]
    customers = pd.read_parquet(out / "customers.parquet")

    def write_back(*more):
        return cli(
            "score", out / "model.segmint", "--source", pg_url, "--table", pg_sales,
            "--write-to", pg_url, "--write-table", "crm.customer_segments", "--json", *more,
        )  # fmt: skip

    scored = tmp_path / "scored.parquet"
    res = write_back("--out", scored)
    assert res.code == 2 and "crm" in res.err  # schema crm does not exist: a clear error
    # the file and the table are written together or not at all: no --out was left
    # beside a table that never got the scores
    assert not scored.exists() and not list(tmp_path.glob(".segmint-*"))
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA crm")
    res = write_back("--out", scored)
    assert res.code == 0, res.err
    assert len(pd.read_parquet(scored)) == len(customers)
    first = json.loads(res.out)["database"]
    assert first["inserted"] == len(customers) and first["updated"] == 0
    written = (
        "SELECT customer_id, segment_id, segment_name, model_id, scored_at "
        "FROM crm.customer_segments ORDER BY customer_id"
    )
    rows = _fetch(pg_url, written)
    got = pd.DataFrame(rows, columns=["customer_id", "segment_id", "name", "model", "at"])
    expected = customers.sort_values("customer_id")
    assert got["customer_id"].tolist() == expected["customer_id"].astype(str).tolist()
    assert got["segment_id"].tolist() == expected["segment_id"].tolist()
    assert got["model"].nunique() == 1 and len(got["model"].iloc[0]) == 16
    snapshots = _fetch(pg_url, "SELECT DISTINCT snapshot_date FROM crm.customer_segments")
    run_snapshot = json.loads((out / "summary.json").read_text())["data"]["snapshot_date"]
    assert [str(r[0]) for r in snapshots] == [run_snapshot]  # a date column
    # the CRM's table says which rule set named rfm_segment, as score --out does
    rule_sets = _fetch(pg_url, "SELECT DISTINCT rfm_rule_set FROM crm.customer_segments")
    assert rule_sets == [("rf-grid v1",)]

    res = write_back()
    assert res.code == 0, res.err
    second = json.loads(res.out)["database"]
    assert second == {**first, "inserted": 0, "unchanged": len(customers)}
    again = _fetch(pg_url, written)
    assert again == rows  # same rows, same scored_at: nothing was rewritten


def test_clean_writes_lines_from_the_database(cli, pg_url, pg_sales, tmp_path):
    """Kept and rejected lines stream out of the server into Parquet/CSV files, every
    line accounted for (input = kept + dropped)."""
    kept, rejected = tmp_path / "kept.parquet", tmp_path / "rejected.csv"
    res = cli(
        "clean", "--source", pg_url, "--table", pg_sales, "--out", kept,
        "--rejected", rejected, "--json",
    )  # fmt: skip
    assert res.code == 0, res.err
    audit = json.loads(res.out)
    lines_kept, lines_dropped = pd.read_parquet(kept), pd.read_csv(rejected)
    assert len(lines_kept) == audit["kept_rows"]
    assert len(lines_dropped) == audit["input_rows"] - audit["kept_rows"]
    assert lines_dropped["source_row"].is_unique
    counts = lines_dropped["rule"].value_counts().to_dict()
    assert counts == {r["name"]: r["dropped"] for r in audit["rules"] if r["dropped"]}


def test_inspect_clv_backtest_and_migrate_read_the_database(cli, pg_url, pg_sales, lines, tmp_path):
    """Every command that reads transactions takes --source/--table: the same answers
    from the database as from a Parquet file of the same lines."""
    local = tmp_path / "sales.parquet"
    lines.to_parquet(local)
    db = ("--source", pg_url, "--table", pg_sales)

    def both(*args):
        a, b = cli(*args, local, "--json"), cli(*args, *db, "--json")
        assert a.code == 0, a.err
        assert b.code == 0, b.err
        return json.loads(a.out), json.loads(b.out)

    a, b = both("inspect")
    _assert_same_inspect(a, b)
    assert a["audit"]["kept_rows"] == b["audit"]["kept_rows"] > 0

    a, b = both("clv", "--horizon", "90D")
    assert a["customers"] == b["customers"] > 0
    for key, value in a["bgnbd"].items():
        assert b["bgnbd"][key] == pytest.approx(value, rel=1e-6), key

    a, b = both("backtest", "--cutoff", "2011-08-01", "--horizon", "60D", "--k-max", "4")
    assert a["buyers_in_horizon"] == b["buyers_in_horizon"] > 0
    ta, tb = pd.DataFrame(a["candidates"]), pd.DataFrame(b["candidates"])
    assert ta["candidate"].tolist() == tb["candidate"].tolist()
    np.testing.assert_allclose(ta["eta2"], tb["eta2"], rtol=1e-9)
    np.testing.assert_allclose(ta["retention_auc"], tb["retention_auc"], rtol=1e-9)

    model_dir = tmp_path / "run"
    res = cli(
        "run", local, "--out", model_dir, "--algorithm", "kmeans", "--k", "3", "--no-clv",
        "--seed", "1",
    )  # fmt: skip
    assert res.code == 0, res.err
    model = model_dir / "model.segmint"
    ra = cli("migrate", model, local, "--from", "2011-06-01", "--to", "2011-09-01",
             "--no-predict", "--json")  # fmt: skip
    rb = cli("migrate", model, *db, "--from", "2011-06-01", "--to", "2011-09-01",
             "--no-predict", "--json")  # fmt: skip
    assert ra.code == 0, ra.err
    assert rb.code == 0, rb.err
    ma, mb = json.loads(ra.out), json.loads(rb.out)
    for key in ("customers", "moved_up", "moved_down", "stayed", "new", "lost", "matrix"):
        assert ma[key] == mb[key], key
    assert ma["customers"] > 0
    assert mb["revenue_in_period"] == pytest.approx(ma["revenue_in_period"], rel=1e-9)


def test_write_back_is_one_transaction(pg_url, monkeypatch):
    """An interruption in the middle of the write leaves the table exactly as it was."""
    from segmint import engines

    frame = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(5000)],
            "segment_id": np.arange(5000) % 4,
            "segment_name": "A",
            "monetary": np.linspace(0, 1000, 5000),
        }
    )
    stamp = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    done = engines.write_assignments(pg_url, "segs", frame, model_id="m1", scored_at=stamp)
    assert done == {
        "table": "segs",
        "rows": 5000,
        "inserted": 5000,
        "updated": 0,
        "unchanged": 0,
        "deleted": 0,
    }
    before = _fetch(pg_url, "SELECT * FROM segs ORDER BY customer_id")

    changed = frame.assign(segment_id=(frame["segment_id"] + 1) % 4)
    changed = pd.concat(
        [
            changed,
            pd.DataFrame(
                {"customer_id": ["new"], "segment_id": [0], "segment_name": "B", "monetary": [1.0]}
            ),
        ],  # fmt: skip
        ignore_index=True,
    )
    calls = {"n": 0}
    plain = engines._plain

    def interrupt_midway(value):
        calls["n"] += 1
        if calls["n"] == 8000:  # about half-way through COPY
            raise KeyboardInterrupt
        return plain(value)

    monkeypatch.setattr(engines, "_plain", interrupt_midway)
    with pytest.raises(KeyboardInterrupt):
        engines.write_assignments(pg_url, "segs", changed, model_id="m2")
    monkeypatch.setattr(engines, "_plain", plain)
    assert _fetch(pg_url, "SELECT * FROM segs ORDER BY customer_id") == before

    # a failure inside the server (duplicate customer in the new scores) is refused first
    with pytest.raises(InputError, match="appears twice"):
        engines.write_assignments(
            pg_url, "segs", pd.concat([changed, changed.tail(1)]), model_id="m2"
        )
    assert _fetch(pg_url, "SELECT * FROM segs ORDER BY customer_id") == before

    # and the completed write changes exactly the rows whose segment moved
    done = engines.write_assignments(pg_url, "segs", changed, model_id="m1")
    assert done == {
        "table": "segs",
        "rows": 5001,
        "inserted": 1,
        "updated": 5000,
        "unchanged": 0,
        "deleted": 0,
    }


def test_write_back_refuses_a_table_of_another_layout(pg_url):
    """Writing scores into an existing table the upsert cannot fill is refused before
    anything is written, naming the table and the column, and leaves the table as it
    was; a compatible table (other column types that accept the values, extra columns
    with defaults) is written."""
    from segmint import engines

    frame = pd.DataFrame({"customer_id": ["a", "b"], "segment_id": [1, 2], "monetary": [1.5, 2.5]})
    setup = [
        (
            "lay_nokey",
            "CREATE TABLE layouts.lay_nokey (id text PRIMARY KEY)",
            "no 'customer_id' column",
        ),
        (
            "lay_type",
            "CREATE TABLE layouts.lay_type (customer_id text PRIMARY KEY, monetary integer)",
            "column 'monetary' is integer, but segmint writes double precision",
        ),
        (
            "lay_req",
            "CREATE TABLE layouts.lay_req (customer_id text PRIMARY KEY, region text NOT NULL)",
            "'region' must be filled",
        ),
        (
            "lay_unique",
            "CREATE TABLE layouts.lay_unique (customer_id text, segment_id bigint)",
            "not a primary key or unique column",
        ),
        (
            "lay_view",
            "CREATE VIEW layouts.lay_view AS SELECT 'x'::text AS customer_id",
            "not a plain",
        ),
        (
            "lay_defer",
            "CREATE TABLE layouts.lay_defer "
            "(customer_id text UNIQUE DEFERRABLE INITIALLY DEFERRED)",
            "not deferrable",
        ),
    ]
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        # a schema of its own: the tables must not show up in other tests' table lists
        conn.execute("CREATE SCHEMA layouts")
        for _, ddl, _ in setup:
            conn.execute(ddl)
        conn.execute("INSERT INTO layouts.lay_unique VALUES ('a', 9)")
        conn.execute(
            "CREATE TABLE layouts.lay_ok (customer_id varchar(20) PRIMARY KEY, segment_id integer, "
            "monetary numeric, note text NOT NULL DEFAULT '')"
        )
    for table, _, message in setup:
        with pytest.raises(InputError, match=message) as err:
            engines.write_assignments(pg_url, f"layouts.{table}", frame, model_id="m")
        assert table in str(err.value) and err.value.code == "table_layout"
        # the way out names the writing option (--table is the one that reads)
        assert "--write-table" in err.value.hint and "--table" not in err.value.hint.replace(
            "--write-table", ""
        )
    assert _fetch(pg_url, "SELECT * FROM layouts.lay_unique") == [("a", 9)]
    done = engines.write_assignments(pg_url, "layouts.lay_ok", frame, model_id="m")
    assert done["inserted"] == 2
    # tables that fill their other columns themselves, or key by a unique index with
    # INCLUDE columns, were wrongly refused by the first version of the check
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE layouts.lay_ident (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
            "customer_id text UNIQUE, at timestamptz NOT NULL DEFAULT now())"
        )
        conn.execute("CREATE TABLE layouts.lay_incl (customer_id text, segment_id bigint)")
        conn.execute("CREATE UNIQUE INDEX ON layouts.lay_incl (customer_id) INCLUDE (segment_id)")
    for table in ("lay_ident", "lay_incl"):
        written = engines.write_assignments(pg_url, f"layouts.{table}", frame, model_id="m")
        assert written["inserted"] == 2
    assert _fetch(
        pg_url, "SELECT customer_id, segment_id, monetary, note FROM layouts.lay_ok ORDER BY 1"
    ) == [
        ("a", 1, Decimal("1.5"), ""),
        ("b", 2, Decimal("2.5"), ""),
    ]


def test_a_mistyped_query_is_blamed_on_the_query(cli, pg_url):
    """A syntax error in --query had the hint to check the URL, the server and the
    table name."""
    res = cli("inspect", "--source", pg_url, "--query", "SELEC 1")
    assert res.code == 2
    first, hint = res.err.strip().splitlines()[:2]
    assert "syntax error" in first and "Traceback" not in res.err
    assert "--query" in hint and "URL" not in hint


def test_a_query_runs_one_select_and_nothing_after_it(cli, pg_url, pg_sales):
    """--query "SELECT ...; DROP TABLE ..." ran the DROP too (the simple query protocol
    runs every statement), under `inspect`, which only reads. Only one statement is
    taken now, and the message says so; a trailing ';' and a ';' inside a string or a
    comment are still one statement."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE precious (x int)")
    try:
        drop = f"SELECT * FROM {pg_sales}; DROP TABLE precious"
        res = cli("inspect", "--source", pg_url, "--query", drop)
        assert res.code == 2 and "Traceback" not in res.err
        assert "--query must be one SELECT statement" in res.err
        assert _fetch(pg_url, "SELECT to_regclass('precious') IS NOT NULL") == [(True,)]
        for one in (
            f"SELECT * FROM {pg_sales} ;  ",
            f"SELECT * FROM {pg_sales} WHERE 'a;b' <> 'c' -- x; DROP TABLE precious",
        ):
            res = cli("inspect", "--json", "--source", pg_url, "--query", one)
            assert res.code == 0, res.err
        assert _fetch(pg_url, "SELECT to_regclass('precious') IS NOT NULL") == [(True,)]
    finally:
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("DROP TABLE IF EXISTS precious")


def test_write_back_to_a_missing_schema_says_to_create_it(pg_url):
    """The README: segmint never creates schemas, and a missing one is a clear error
    ("ask your DBA, or CREATE SCHEMA crm"); the hint said to check the URL and server."""
    from segmint import engines

    frame = pd.DataFrame({"customer_id": ["a"], "segment_id": [1]})
    with pytest.raises(InputError, match="schema 'nowhere' does not exist") as err:
        engines.write_assignments(pg_url, "nowhere.scores", frame, model_id="m")
    assert "CREATE SCHEMA nowhere" in err.value.hint
    assert _fetch(pg_url, "SELECT 1 FROM pg_namespace WHERE nspname = 'nowhere'") == []


def test_write_back_finds_a_mixed_case_table_name_as_postgresql_does(pg_url):
    """--write-table crm.Customer_Segments is the crm.customer_segments a DBA created
    with plain SQL (as --table folds an unquoted name): the name was quoted as written,
    so a second table "Customer_Segments" was created beside the one the CRM reads and
    received every score. A new mixed-case name is created folded, so plain SQL finds it."""
    import psycopg

    from segmint import engines

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA crm_case")
        conn.execute(
            "CREATE TABLE crm_case.customer_segments (customer_id text PRIMARY KEY, "
            "segment_id bigint)"
        )
    frame = pd.DataFrame({"customer_id": ["a", "b"], "segment_id": [1, 2]})
    done = engines.write_assignments(pg_url, "crm_case.Customer_Segments", frame, model_id="m")
    assert done["inserted"] == 2
    assert done["table"] == "crm_case.customer_segments"  # the summary names the real table
    done = engines.write_assignments(pg_url, "CRM_CASE.CUSTOMER_SEGMENTS", frame, model_id="m")
    assert done["unchanged"] == 2
    assert _fetch(pg_url, "SELECT customer_id FROM crm_case.customer_segments ORDER BY 1") == [
        ("a",),
        ("b",),
    ]
    tables = "SELECT table_schema, table_name FROM information_schema.tables WHERE "
    tables += "table_schema IN ('crm_case', 'public') AND "
    tables += "lower(table_name) IN ('customer_segments', 'fresh_scores') ORDER BY 1, 2"
    assert _fetch(pg_url, tables) == [("crm_case", "customer_segments")]
    assert engines.write_assignments(pg_url, "Fresh_Scores", frame, model_id="m")["table"] == (
        "fresh_scores"
    )
    assert _fetch(pg_url, "SELECT count(*) FROM Fresh_Scores") == [(2,)]
    assert _fetch(pg_url, tables) == [
        ("crm_case", "customer_segments"),
        ("public", "fresh_scores"),
    ]


def test_write_back_with_only_row_privileges_on_a_dba_table(pg_url):
    """The usual warehouse set-up: the DBA creates crm.customer_segments and grants the
    writing role SELECT, INSERT and UPDATE only. The write failed with "permission
    denied for schema crm" (CREATE TABLE IF NOT EXISTS and ADD COLUMN IF NOT EXISTS
    need CREATE on the schema and ownership even when there is nothing to do), and a
    role missing a right got the hint to check the URL; now the upsert runs, and a
    missing right is named with the grant that fixes it."""
    import psycopg

    from segmint import engines

    frame = pd.DataFrame({"customer_id": ["a", "b"], "segment_id": [1, 2], "monetary": [1.5, 2.0]})
    full = (
        "(customer_id text PRIMARY KEY, segment_id bigint, monetary double precision, "
        "model_id text, scored_at timestamptz)"
    )
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE crm_writer LOGIN PASSWORD 'w-pass'")
        conn.execute("CREATE SCHEMA crm_rights")
        conn.execute("GRANT USAGE ON SCHEMA crm_rights TO crm_writer")
        for name in ("segs", "narrow", "readonly"):
            layout = (
                "(customer_id text PRIMARY KEY, segment_id bigint)" if name == "narrow" else full
            )
            conn.execute(f"CREATE TABLE crm_rights.{name} {layout}")
        for name in ("segs", "narrow"):
            conn.execute(f"GRANT SELECT, INSERT, UPDATE ON crm_rights.{name} TO crm_writer")
        conn.execute("GRANT SELECT ON crm_rights.readonly TO crm_writer")
        conn.execute("CREATE SCHEMA crm_hidden")  # no USAGE for crm_writer
        conn.execute("CREATE TABLE crm_hidden.segs (customer_id text PRIMARY KEY)")
    writer = pg_url.replace("segmint@", "crm_writer:w-pass@")

    done = engines.write_assignments(writer, "crm_rights.segs", frame, model_id="m")
    assert done["inserted"] == 2
    again = engines.write_assignments(writer, "crm_rights.segs", frame, model_id="m")
    assert again["unchanged"] == 2
    assert _fetch(pg_url, "SELECT customer_id, segment_id FROM crm_rights.segs ORDER BY 1") == [
        ("a", 1),
        ("b", 2),
    ]
    cases = [
        ("crm_rights.fresh", "may not create the table", "GRANT CREATE ON SCHEMA crm_rights"),
        ("crm_rights.narrow", "lacks the column(s) monetary double precision", "ALTER TABLE"),
        ("crm_rights.readonly", "may not write the table", "GRANT SELECT, INSERT, UPDATE ON"),
    ]
    for table, message, hint in cases:
        with pytest.raises(InputError) as err:
            engines.write_assignments(writer, table, frame, model_id="m")
        assert message in str(err.value) and "crm_writer" in str(err.value), str(err.value)
        assert hint in err.value.hint and "URL" not in err.value.hint
        assert err.value.code == "permission_denied"
        assert "w-pass" not in str(err.value) + err.value.hint
    for table in ("crm_hidden.segs", "crm_hidden.fresh"):
        with pytest.raises(InputError, match="permission denied for schema crm_hidden") as err:
            engines.write_assignments(writer, table, frame, model_id="m")
        assert "GRANT USAGE" in err.value.hint and err.value.code == "permission_denied"
    with pytest.raises(InputError, match="permission denied for schema crm_hidden") as err:
        engines.read_database(writer, table="crm_hidden.segs")
    assert "GRANT USAGE" in err.value.hint and "URL," not in err.value.hint
    assert _fetch(pg_url, "SELECT count(*) FROM crm_rights.readonly") == [(0,)]
    assert _fetch(pg_url, "SELECT to_regclass('crm_rights.fresh') IS NULL") == [(True,)]
    # a DBA table from before scores carried rfm_rule_set: the nightly write failed on
    # that one label column until the owner added it; it is now written without it,
    # with a warning giving the ALTER TABLE (the owner's own writes add it as before)
    labelled = frame.assign(rfm_segment=["Champions", "Lost"], rfm_rule_set="rf-grid v1")
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE crm_rights.older (customer_id text PRIMARY KEY, segment_id bigint, "
            "monetary double precision, rfm_segment text, model_id text, scored_at timestamptz)"
        )
        conn.execute("GRANT SELECT, INSERT, UPDATE ON crm_rights.older TO crm_writer")
    with pytest.warns(SegmintWarning, match="no column rfm_rule_set") as said:
        done = engines.write_assignments(writer, "crm_rights.older", labelled, model_id="m")
    assert "ADD COLUMN rfm_rule_set text" in str(said[0].message)
    assert done["inserted"] == 2
    assert _fetch(pg_url, "SELECT rfm_segment FROM crm_rights.older ORDER BY 1") == [
        ("Champions",),
        ("Lost",),
    ]
    # any other missing column: refused as before
    with pytest.raises(InputError, match="lacks the column"), pytest.warns(SegmintWarning):
        engines.write_assignments(
            writer, "crm_rights.older", labelled.assign(extra=1.0), model_id="m"
        )
    done = engines.write_assignments(pg_url, "crm_rights.older", labelled, model_id="m")
    assert done["updated"] == 2  # the owner adds it
    assert _fetch(pg_url, "SELECT DISTINCT rfm_rule_set FROM crm_rights.older") == [("rf-grid v1",)]


def test_write_back_snapshot_date_is_a_date_whatever_the_time_zone(pg_url, monkeypatch):
    """snapshot_date was a timestamptz written in the writer's session zone: from a
    client with PGTZ=America/New_York it was stored as 05:00 UTC, the same scores
    written from another zone "updated" every row, and a CRM session in Los Angeles
    read the day before. It is now a date column, and naive timestamps are UTC."""
    import psycopg

    from segmint import engines

    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "segment_id": [1, 2],
            "snapshot_date": pd.Timestamp("2011-12-10"),
            "last_purchase": pd.Timestamp("2011-12-09 23:30"),
        }
    )
    monkeypatch.setenv("PGTZ", "America/New_York")
    assert engines.write_assignments(pg_url, "tz_scores", frame, model_id="m")["inserted"] == 2
    monkeypatch.setenv("PGTZ", "Asia/Tokyo")
    assert engines.write_assignments(pg_url, "tz_scores", frame, model_id="m")["unchanged"] == 2
    monkeypatch.delenv("PGTZ")
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET TIME ZONE 'America/Los_Angeles'")
        kind = "SELECT data_type FROM information_schema.columns WHERE table_name = 'tz_scores' "
        assert conn.execute(kind + "AND column_name = 'snapshot_date'").fetchone() == ("date",)
        got = conn.execute(
            "SELECT DISTINCT snapshot_date, last_purchase AT TIME ZONE 'UTC' FROM tz_scores"
        ).fetchall()
    assert got == [(dt.date(2011, 12, 10), dt.datetime(2011, 12, 9, 23, 30))]

    # a table made by the earlier version (timestamptz) is still written, unchanged
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE tz_old (customer_id text PRIMARY KEY, segment_id bigint, "
            "snapshot_date timestamptz, model_id text, scored_at timestamptz)"
        )
    small = frame.drop(columns="last_purchase")
    assert engines.write_assignments(pg_url, "tz_old", small, model_id="m")["inserted"] == 2
    assert engines.write_assignments(pg_url, "tz_old", small, model_id="m")["unchanged"] == 2


def _small_run(cli, lines: pd.DataFrame, tmp_path: Path) -> tuple[Path, Path]:
    """3,000 lines as Parquet and a K-Means run on them: (data file, run folder)."""
    data = tmp_path / "lines.parquet"
    lines.head(3000).to_parquet(data)
    out = tmp_path / "run"
    args = ["--algorithm", "kmeans", "--k", "3", "--no-clv", "--seed", "1"]
    assert cli("run", data, "--out", out, *args).code == 0
    return data, out


def test_write_to_target_is_checked_before_scoring(cli, pg_url, lines, tmp_path):
    """score --write-to with a wrong password, a missing schema or a role without rights
    scored all the data first and failed only at the write (on a large table, after
    the whole scoring). The target is now checked first, like an output file: these
    data lack a date column, and the error is still the database's."""
    import psycopg

    data, out = _small_run(cli, lines, tmp_path)
    broken = tmp_path / "no_dates.parquet"
    lines.head(50).drop(columns="InvoiceDate").to_parquet(broken)
    assert "date" in cli("score", out / "model.segmint", broken, "--out", tmp_path / "s.csv").err

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE early_ro LOGIN PASSWORD 'ro-pass'")
        conn.execute("CREATE TABLE early_scores (customer_id text PRIMARY KEY)")
        conn.execute("GRANT SELECT ON early_scores TO early_ro")
    wrong = pg_url.replace("segmint@", "segmint:not-the-password@")
    reader = pg_url.replace("segmint@", "early_ro:ro-pass@")
    cases = [
        (wrong, "scores", "password authentication failed", "database_error"),
        (pg_url, "nowhere.scores", "schema 'nowhere' does not exist", "table_layout"),
        (reader, "early_new", "may not create the table early_new", "permission_denied"),
        (reader, "early_scores", "may not write the table early_scores", "permission_denied"),
    ]
    for url, table, message, code in cases:
        res = cli(
            "score", out / "model.segmint", broken, "--write-to", url, "--write-table", table,
            "--json",
        )  # fmt: skip
        assert res.code == 2, res.err
        error = json.loads(res.out)
        assert message in error["message"] and error["error"] == code, error
        assert "not-the-password" not in res.out + res.err and "Traceback" not in res.err
    # the check changes nothing: no table was created
    assert _fetch(pg_url, "SELECT to_regclass('early_new') IS NULL") == [(True,)]


def test_write_mode_replace_leaves_exactly_the_new_scores(cli, pg_url, lines, tmp_path):
    """Customers missing from a new scoring (gone from the source, or left out by a
    --query) kept their old segment and model_id in the table for ever: an upsert has no
    way to remove them. --write-mode replace deletes them in the same transaction; a role
    without DELETE is told before any scoring, and upsert stays the default."""
    import psycopg

    from segmint import engines

    old = pd.DataFrame({"customer_id": ["a", "b", "c"], "segment_id": [1, 2, 3]})
    new = pd.DataFrame({"customer_id": ["b", "c", "d"], "segment_id": [2, 1, 1]})
    assert engines.write_assignments(pg_url, "rep_scores", old, model_id="m1")["inserted"] == 3
    kept = engines.write_assignments(pg_url, "rep_scores", new, model_id="m2")
    assert kept["deleted"] == 0 and _fetch(pg_url, "SELECT count(*) FROM rep_scores") == [(4,)]
    done = engines.write_assignments(pg_url, "rep_scores", new, model_id="m2", replace=True)
    assert done == {
        "table": "rep_scores",
        "rows": 3,
        "inserted": 0,
        "updated": 0,
        "unchanged": 3,
        "deleted": 1,
    }
    got = _fetch(pg_url, "SELECT customer_id, segment_id, model_id FROM rep_scores ORDER BY 1")
    assert got == [("b", 2, "m2"), ("c", 1, "m2"), ("d", 1, "m2")]

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE rep_writer LOGIN PASSWORD 'rw-pass'")
        conn.execute("GRANT SELECT, INSERT, UPDATE ON rep_scores TO rep_writer")
    writer = pg_url.replace("segmint@", "rep_writer:rw-pass@")
    engines.check_write_target(writer, "rep_scores")  # enough for an upsert
    with pytest.raises(InputError, match="may not delete from the table rep_scores") as err:
        engines.check_write_target(writer, "rep_scores", replace=True)
    assert "GRANT DELETE ON rep_scores TO rep_writer" in err.value.hint
    # the CLI: the option is checked, and the count of deleted rows is said
    data, out = _small_run(cli, lines, tmp_path)
    model = out / "model.segmint"
    res = cli("score", model, data, "--out", tmp_path / "s.csv", "--write-mode", "replace")
    assert res.code == 2 and "--write-mode applies to --write-to" in res.err
    res = cli("score", model, data, "--write-to", pg_url, "--write-mode", "overwrite")
    assert res.code == 2 and "is not upsert or replace" in res.err
    target = ["--write-to", pg_url, "--write-table", "rep_scores", "--write-mode", "replace"]
    res = cli("score", model, data, *target)
    assert res.code == 0, res.err
    assert "3 deleted" in " ".join(res.out.split())  # b, c and d are not in these data
    res = cli("score", model, data, *target, "--json")
    written = json.loads(res.out)["database"]
    assert written["deleted"] == 0 and written["unchanged"] == written["rows"]
    assert _fetch(pg_url, "SELECT count(*) FROM rep_scores") == [(written["rows"],)]


def test_credentials_and_masked_passwords(cli, pg_url, pg_sales, tmp_path, monkeypatch):
    """A password from the URL, PGPASSWORD or .pgpass works; a wrong or missing one is a
    clear error; a password never appears in a message."""
    port = pg_url.rsplit(":", 1)[1].split("/")[0]
    out = tmp_path / "f.parquet"
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    res = cli("features", "--source", pg_url, "--table", pg_sales, "--out", out)
    assert res.code == 2 and "password" in res.err and "PGPASSWORD" in res.err
    with_password = pg_url.replace("segmint@", f"segmint:{PG_PASSWORD}@")
    res = cli("features", "--source", with_password, "--table", pg_sales, "--out", out)
    assert res.code == 0, res.err
    assert PG_PASSWORD not in res.err + res.out
    assert PG_PASSWORD not in (out.read_bytes().decode("latin-1"))
    monkeypatch.setenv("PGPASSWORD", PG_PASSWORD)
    assert cli("features", "--source", pg_url, "--table", pg_sales, "--out", out).code == 0
    monkeypatch.delenv("PGPASSWORD")

    secret = "pa55-w0rd-xyz"
    url = f"postgresql://segmint:{secret}@127.0.0.1:{port}/postgres"
    res = cli("features", "--source", url, "--table", "sales", "--out", out)
    assert res.code == 2 and "password authentication failed" in res.err
    assert secret not in res.err + res.out and "segmint:***@127.0.0.1" in res.err
    # a closed port: a connection error (worth retrying: 75), still masked
    res = cli("run", f"postgresql://ana:{secret}@127.0.0.1:1/shop", "--table", "t")
    assert res.code == 75 and secret not in res.err and "ana:***@" in res.err


def test_a_password_in_the_url_query_is_masked(cli, pg_url, pg_sales, tmp_path, monkeypatch):
    """libpq also takes the password as a ``password=`` parameter of the URL: it was
    printed, and written to run.json and the report, as given."""
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    url = f"{pg_url}?sslmode=disable&password={PG_PASSWORD}"
    out = tmp_path / "run"
    res = cli("-v", "run", "--source", url, "--table", pg_sales, "--out", out, "--k-max", "3")
    assert res.code == 0, res.err
    assert PG_PASSWORD not in res.err + res.out
    for f in out.rglob("*"):
        if f.is_file():
            assert PG_PASSWORD.encode() not in f.read_bytes(), f
    assert "password=***" in (out / "run.json").read_text()
    # errors: a closed port; a port that is not a number (masking it was a crash)
    secret = "pa55-w0rd-xyz"
    for bad, status in (
        (f"postgresql://ana@127.0.0.1:1/shop?password={secret}", 75),
        (f"postgresql://ana:{secret}@127.0.0.1:abc/shop", 2),
    ):
        res = cli("inspect", "--json", "--source", bad, "--table", "t")
        assert res.code == status, res.err
        assert secret not in res.err + res.out and "***" in res.err


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_a_malformed_database_url_is_a_clear_error(cli, scheme: str) -> None:
    """A host bracket left open (``@[::1/shop``) made connecting an internal error
    (exit 70: "ValueError: Invalid IPv6 URL"); now libpq's message, password masked.
    (No server needed: the URL is refused before any connection.)"""
    pytest.importorskip("psycopg")
    secret = "pa55-w0rd-xyz"
    res = cli("run", f"{scheme}://ana:{secret}@[::1/shop", "--table", "t")
    assert res.code == 2, res.err
    assert "Traceback" not in res.err and "Internal error" not in res.err
    assert secret not in res.err + res.out and "ana:***@[::1/shop" in res.err


def test_a_database_that_does_not_answer_exits_75_a_bad_url_2(cli, tmp_path) -> None:
    """A database that refused the connection exited 2, like a misspelt option: a
    scheduler could not tell a failure worth retrying (the server is down, restarting,
    full) from one that fails again unchanged. It now exits 75 (EX_TEMPFAIL) with the
    code ``database_unavailable``; a URL that cannot work (an invalid option) stays 2.
    (No server needed: nothing listens on the port; the wrong password case, a reply of
    a running server, is in test_write_to_target_is_checked_before_scoring.)"""
    import socket

    pytest.importorskip("psycopg")
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://ana:s3cret-x@127.0.0.1:{port}/shop"
    res = cli("features", "--source", url, "--table", "t", "--out", tmp_path / "f.csv", "--json")
    assert res.code == 75, res.err
    error = json.loads(res.out)
    assert error["error"] == "database_unavailable" and "Connection refused" in error["message"]
    assert "retry" in error["hint"] and "s3cret-x" not in res.out + res.err
    assert "Traceback" not in res.err and not (tmp_path / "f.csv").exists()
    res = cli("inspect", "--source", url + "?sslmode=bogus", "--table", "t", "--json")
    assert res.code == 2, res.err
    assert json.loads(res.out)["error"] == "database_error" and "sslmode" in res.err


def test_retryable_database_errors_by_sqlstate() -> None:
    """Which driver errors are the server's state (retry) rather than the user's."""
    psycopg = pytest.importorskip("psycopg")
    from segmint.engines import _database_unavailable

    class Failed(psycopg.OperationalError):
        def __init__(self, message: str, state: str | None) -> None:
            self._state = state  # before the driver's __init__, which may read it
            super().__init__(message)

        @property
        def sqlstate(self) -> str | None:  # noqa: D102
            return self._state

    retry = [("canceling statement due to conflict with recovery", "40001"),
             ("deadlock detected", "40P01"), ("could not extend file", "53100"),
             ("terminating connection due to administrator command", "57P01"),
             ("connection failure", "08006"),
             ('connection to server at "db" failed: FATAL:  sorry, too many clients already',
              None),
             ("connection failed: timeout expired", None)]  # fmt: skip
    stay = [("relation \"t\" does not exist", "42P01"), ("permission denied", "42501"),
            ('failed: FATAL:  password authentication failed for user "ana"', None),
            ('failed: FATAL:  database "shop" does not exist', None),
            ('connection is bad: invalid port number: "99999"', None)]  # fmt: skip
    assert [m for m, s in retry if not _database_unavailable(Failed(m, s))] == []
    assert [m for m, s in stay if _database_unavailable(Failed(m, s))] == []
    assert not _database_unavailable(psycopg.ProgrammingError("syntax error"))


def test_database_mistakes_are_clear(cli, pg_url, pg_sales, tmp_path):
    res = cli("run", "--source", pg_url, "--table", "no_such_table", "--out", tmp_path / "r")
    assert res.code == 2
    assert "no such table" in res.err and "sales" in res.err  # lists the tables there
    res = cli("run", "--source", pg_url, "--out", tmp_path / "r")
    assert res.code == 2 and "--table or --query" in res.err
    res = cli("run", "data.csv", "--table", "sales", "--out", tmp_path / "r")
    assert res.code == 2 and "postgresql://" in res.err
    res = cli("run", "--source", pg_url, "--query", "SELEC nonsense", "--out", tmp_path / "r")
    assert res.code == 2 and "query" in res.err and "Traceback" not in res.err
    assert not (tmp_path / "r").exists()
    # an error raised by the server while it cleans (an ISO date for a day that does not
    # exist, which PostgreSQL's cast refuses): one clear line, not an internal error
    frame = pd.DataFrame(
        {
            "InvoiceNo": ["1", "2"],
            "StockCode": ["A", "B"],
            "Quantity": ["1", "2"],
            "InvoiceDate": ["2011-02-03 10:00", "2011-02-30 10:00"],
            "UnitPrice": ["1.5", "2.5"],
            "CustomerID": ["7", "8"],
        }
    )
    load_frame(pg_url, "impossible", frame, text=True)
    res = cli("features", "--source", pg_url, "--table", "impossible", "--out", tmp_path / "f.csv")
    assert res.code == 2, res.err
    assert "#impossible: the engine stopped with an error" in res.err
    assert "out of range" in res.err and "Traceback" not in res.err


def test_postgres_customer_level_table_and_table_names(pg_url, flo, tmp_path):
    """FLO in PostgreSQL failed ("cannot cast type boolean to bigint", from the category
    columns); an unquoted mixed-case name and a materialized view were "no such table"."""
    import psycopg

    raw = pd.read_csv(flo)
    load_frame(pg_url, "flo", raw)
    in_db = prepare(pg_url, LoadConfig(table="flo"), CleanConfig())
    local = prepare(str(flo), LoadConfig(), CleanConfig())
    a = customer_features(local.cleaned).to_pandas()
    b = customer_features(in_db.cleaned).to_pandas()
    assert any(c.startswith("category_") for c in a.columns)
    _assert_same_features(a, b)
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP MATERIALIZED VIEW IF EXISTS flo_mv")
        conn.execute("CREATE MATERIALIZED VIEW flo_mv AS SELECT * FROM flo")
        conn.execute("DROP TABLE IF EXISTS folded")
        conn.execute("CREATE TABLE Folded AS SELECT * FROM flo LIMIT 50")  # -> folded
        conn.execute("DROP SCHEMA IF EXISTS shop CASCADE")
        conn.execute("CREATE SCHEMA Shop")
        conn.execute("CREATE TABLE Shop.Sales AS SELECT * FROM flo LIMIT 40")  # shop.sales
    cases = (("flo_mv", len(raw)), ("Folded", 50), ("public.FOLDED", 50), ("Shop.Sales", 40))
    for table, rows in cases:
        got = prepare(pg_url, LoadConfig(table=table), CleanConfig())
        assert got.cleaned.audit.input_rows == rows, table


def test_missing_extra_names_it(monkeypatch):
    from segmint import engines

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(ConfigError) as err:
        engines.read_database("postgresql://localhost/db", table="sales")
    assert "segmint[postgres]" in err.value.hint
    monkeypatch.setitem(sys.modules, "pyspark", None)
    with pytest.raises(ConfigError) as err:
        engines.spark_session("local[1]")
    assert "segmint[spark]" in err.value.hint


# ------------------------------------------------------------------------------ Spark


@pytest.fixture(scope="module")
def spark() -> str:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        _unavailable("pyspark is not installed (pip install 'segmint[spark]')")
    if shutil.which("java") is None and not os.environ.get("JAVA_HOME"):
        _unavailable("Java is not installed (Spark needs a JRE, e.g. openjdk-17)")
    from segmint.engines import spark_session

    spark_session("local[2]")
    return "local[2]"


def test_spark_matches_duckdb_on_online_retail(spark, online_retail):
    load = LoadConfig(engine="spark", spark_master=spark)
    on_spark = prepare(str(online_retail), load, CleanConfig())
    local = prepare(str(online_retail), LoadConfig(), CleanConfig())
    assert on_spark.source.details["engine"] == "spark"
    assert _audit_counts(on_spark) == _audit_counts(local)
    a = customer_features(local.cleaned).to_pandas()
    b = customer_features(on_spark.cleaned).to_pandas()
    _assert_same_features(a, b)
    _assert_same_segments(a, b)


def test_spark_run_and_score_match_duckdb(cli, spark, lines, tmp_path):
    """Generated Parquet: the same run on both engines gives the same customers,
    features and segments, and the model scores Spark data exactly as DuckDB data."""
    data = tmp_path / "lines.parquet"
    lines.to_parquet(data)
    args = ["--algorithm", "kmeans", "--k", "4", "--no-clv", "--seed", "1"]
    assert cli("run", data, "--out", tmp_path / "local", *args).code == 0
    res = cli(
        "run", data, "--engine", "spark", "--spark-master", spark, "--out", tmp_path / "spark",
        *args,
    )  # fmt: skip
    assert res.code == 0, res.err
    local = pd.read_parquet(tmp_path / "local" / "customers.parquet")
    remote = pd.read_parquet(tmp_path / "spark" / "customers.parquet")
    _assert_same_features(local, remote)  # features, RFM and segment columns
    assert (tmp_path / "local" / "rejected.parquet").exists()
    assert not (tmp_path / "spark" / "rejected.parquet").exists()

    model = tmp_path / "local" / "model.segmint"
    assert cli("score", model, data, "--out", tmp_path / "a.parquet").code == 0
    res = cli("score", model, data, "--engine", "spark", "--out", tmp_path / "b.parquet")
    assert res.code == 0, res.err
    a, b = pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet")
    pd.testing.assert_frame_equal(a, b)
    assert a["segment_id"].tolist() == local["segment_id"].tolist()


def test_spark_inspect_and_clv_match_duckdb(cli, spark, lines, tmp_path):
    """The engine options on the other commands: inspect and clv on Spark give the
    audit, features and lifetime-value fit that DuckDB gives for the same file."""
    data = tmp_path / "lines.parquet"
    lines.to_parquet(data)
    on_spark = ("--engine", "spark", "--spark-master", spark)
    for command in (("inspect",), ("clv", "--horizon", "90D")):
        a = cli(*command, data, "--json")
        b = cli(*command, data, *on_spark, "--json")
        assert a.code == 0, a.err
        assert b.code == 0, b.err
        ja, jb = json.loads(a.out), json.loads(b.out)
        if command[0] == "inspect":
            _assert_same_inspect(ja, jb)
        else:
            assert ja["customers"] == jb["customers"] > 0
            for key, value in ja["bgnbd"].items():
                assert jb["bgnbd"][key] == pytest.approx(value, rel=1e-6), key


def test_spark_bad_inputs_are_clear(cli, spark, tmp_path):
    res = cli("features", tmp_path / "nothing.parquet", "--engine", "spark", "--out",
              tmp_path / "f.parquet")  # fmt: skip
    assert res.code == 2 and "nothing.parquet: no such file" in res.err
    book = tmp_path / "sales.xlsx"
    pd.DataFrame({"a": [1]}).to_excel(book)
    res = cli("features", book, "--engine", "spark", "--out", tmp_path / "f.parquet")
    assert res.code == 2 and "reads Parquet or CSV, not excel" in res.err
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet\n")
    res = cli("features", broken, "--engine", "spark", "--out", tmp_path / "f.parquet")
    assert res.code == 2 and "Spark cannot read it" in res.err
    assert "Traceback" not in res.err and "bug" not in res.err


def test_spark_reads_text_files_and_customer_tables_like_duckdb(spark, flo, tmp_path):
    """Three differences found on Spark: ids written 17850.0 all became "1" (a regex
    back-reference Spark spells differently), a quoted value with a line break split the
    line in two, and FLO failed (a generator nested in an expression). Also the rejected
    lines' source_row is the file's data row, as with DuckDB."""
    rows = [
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country",
        '536365,85123A,"WHITE\nHEART",6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom',
        "536366,22633,WARMER,2,2010-12-01 09:00:00,1.85,17850,United Kingdom",
        '536367,84879,BIRD,32,2010-12-02 10:00:00,1.69,12583.0,"Germany\nBavaria"',
        "536368,84879,BIRD,1,2010-12-02 11:00:00,1.69,,France",
        'C536369,84879,BIRD,-1,2010-12-02 12:00:00,1.69,"12583,0",France',  # decimal comma
        "536370,22633,WARMER,0,2010-12-03 12:00:00,1.85,13047.0,France",
        # quotes doubled inside a quoted value (RFC 4180): Spark's backslash escape split
        # the value at its comma ("not a number" in Quantity) or kept the doubled quotes
        '536371,22633,"SIGN ""OPEN, CLOSED"" BOARD",2,2010-12-03 13:00:00,1.85,17850,UK',
        '536372,22633,"LETTER ""D"" RING",1,2010-12-03 14:00:00,1.85,17850,UK',
    ]
    data = tmp_path / "odd.csv"
    data.write_text("\n".join(rows) + "\n")
    spark_load = LoadConfig(engine="spark", spark_master=spark)
    on_spark, local = prepare(str(data), spark_load), prepare(str(data), LoadConfig())
    assert _audit_counts(on_spark) == _audit_counts(local)
    a = customer_features(local.cleaned).to_pandas()
    b = customer_features(on_spark.cleaned).to_pandas()
    assert sorted(a["customer_id"]) == ["12583", "17850"]
    assert a.set_index("customer_id").loc["12583", "return_rate"] > 0  # the "12583,0" return
    _assert_same_features(a, b)
    texts = {
        name: sorted(prepared.cleaned.lines.description.to_pandas().dropna())
        for name, prepared in (("local", local), ("spark", on_spark))
    }
    assert texts["spark"] == texts["local"]
    assert {'SIGN "OPEN, CLOSED" BOARD', 'LETTER "D" RING'} <= set(texts["local"])
    rejected = {}
    for name, prepared in (("local", local), ("spark", on_spark)):
        out = prepared.cleaned.write_rejected(tmp_path / f"{name}.parquet")
        rejected[name] = pd.read_parquet(out).sort_values("source_row")
    assert rejected["spark"]["source_row"].tolist() == rejected["local"]["source_row"].tolist()
    assert rejected["local"]["source_row"].tolist() == [4, 5, 6]

    a = customer_features(prepare(str(flo), LoadConfig()).cleaned).to_pandas()
    b = customer_features(prepare(str(flo), spark_load).cleaned).to_pandas()
    _assert_same_features(a, b)


def test_spark_reads_csv_encodings_delimiters_and_headers_like_duckdb(spark, lines, tmp_path):
    """Spark read every CSV as UTF-8 with commas and a header, ignoring --encoding,
    --delimiter and --no-header: a Windows-1252 export with semicolons (as Excel writes
    one in Germany) was one column, and with --delimiter ';' its country names had
    U+FFFD where DuckDB read "Österreich". Now both engines read the same lines."""
    frame = lines.head(400).copy()
    frame["Country"] = np.where(np.arange(len(frame)) % 2, "Österreich", "España")
    frame["Description"] = frame["Description"].astype(str) + " 5 €"
    frame.to_csv(tmp_path / "export.csv", sep=";", index=False, encoding="cp1252")
    parts = tmp_path / "parts"
    parts.mkdir()
    for i, chunk in enumerate((frame.iloc[:150], frame.iloc[150:])):
        chunk.to_csv(parts / f"part-{i}.csv", index=False, encoding="latin-1", sep="|",
                     columns=[c for c in frame.columns if c != "Description"])  # fmt: skip
    frame.to_csv(tmp_path / "bare.csv", index=False, header=False)
    columns = {"customer_id": "column6", "invoice_date": "column4", "invoice_id": "column0",
               "quantity": "column3", "unit_price": "column5", "country": "column7"}  # fmt: skip
    cases = [
        (tmp_path / "export.csv", {}),
        (tmp_path / "export.csv", {"encoding": "cp1252", "delimiter": ";"}),
        (parts, {}),
        (tmp_path / "bare.csv", {"header": False, "columns": columns}),
    ]
    for data, options in cases:
        local = prepare(str(data), LoadConfig(**options))
        on_spark = prepare(str(data), LoadConfig(engine="spark", spark_master=spark, **options))
        assert _audit_counts(on_spark) == _audit_counts(local), data
        a = customer_features(local.cleaned).to_pandas()
        b = customer_features(on_spark.cleaned).to_pandas()
        _assert_same_features(a, b)
        assert "España" in set(b["country"]) <= {"Österreich", "España"}, data


def test_an_interrupted_spark_call_leaves_py4j_silent(caplog) -> None:
    """A signal landing while Py4J waited on its socket made Py4J log "Exception occurred
    while shutting down connection" with a BrokenPipeError traceback on stderr, after
    segmint's "Interrupted." (seen when the signal arrived during cleaning): the filter
    meant to drop Py4J's messages sat on the root logger, which filters only its own
    records. Once interrupted, every Py4J logger is silent."""
    import logging

    from segmint.engines import _interrupt_spark

    class Context:  # what the handler calls on the SparkContext, from another thread
        def cancelAllJobs(self) -> None:
            pass

    def previous(signum: int, frame: object) -> None:  # the CLI's handler
        raise KeyboardInterrupt

    handler = _interrupt_spark(Context(), previous)
    try:
        with pytest.raises(KeyboardInterrupt):
            handler(2, None)
        with caplog.at_level(logging.DEBUG):
            try:
                raise BrokenPipeError(32, "Broken pipe")
            except BrokenPipeError:
                logging.getLogger("py4j.clientserver").exception(
                    "Exception occurred while shutting down connection"
                )
            logging.getLogger("py4j.java_gateway").info("KeyboardInterrupt while sending command.")
            # Py4J's own interruption message goes to the root logger
            logging.getLogger().error("KeyboardInterrupt while sending command.")
        assert not caplog.records, [r.getMessage() for r in caplog.records]
    finally:
        logging.getLogger("py4j").setLevel(logging.NOTSET)


@pytest.mark.parametrize("signal_name", ["SIGINT", "SIGTERM"])
def test_ctrl_c_during_a_spark_job_is_an_orderly_interruption(spark, tmp_path, signal_name):
    """Ctrl-C while Spark ran a job: PySpark's own SIGINT handler called the JVM from
    inside the signal handler, on the connection the main thread was waiting on; the
    run printed two Py4J tracebacks and ended as "Spark cannot read it" (exit 2), or
    silently with 130; SIGTERM (a scheduler) printed Py4J's traceback. Now:
    "Interrupted.", exit 130, no traceback, no output folder."""
    import signal
    import subprocess
    import time

    data = tmp_path / "lines.parquet"
    make_transactions(3000, seed=2).lines.to_parquet(data)
    segmint_cli = os.path.join(os.path.dirname(sys.executable), "segmint")
    out = tmp_path / "run"
    proc = subprocess.Popen(
        [segmint_cli, "run", data, "--engine", "spark", "--spark-master", "local[1]",
         "--out", out, "--no-clv", "-v"],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    seen = []
    for line in proc.stderr:  # the log line of the first stage after reading
        seen.append(line)
        if "mapping and checking columns" in line:
            time.sleep(1.0)  # inside the Spark jobs of the column checks
            proc.send_signal(getattr(signal, signal_name))
            break
    err = "".join(seen) + proc.stderr.read()
    assert proc.wait(timeout=300) == 130, err[-3000:]
    assert "Interrupted." in err and "Traceback" not in err, err[-3000:]
    assert "cannot read" not in err
    assert not out.exists() and not list(tmp_path.glob(".run*"))


def test_spark_session_settings_changed_are_named(spark):
    """segmint reused a running session and changed its time zone without a word."""
    from segmint import engines

    session = engines.spark_session(spark)
    session.conf.set("spark.sql.session.timeZone", "Europe/Berlin")
    saved = dict(engines._SESSIONS)
    engines._SESSIONS.clear()
    try:
        with pytest.warns(UserWarning, match=r"timeZone=UTC \(was Europe/Berlin\)"):
            again = engines.spark_session(spark)
        assert again is session
        assert session.conf.get("spark.sql.session.timeZone") == "UTC"
    finally:
        engines._SESSIONS.update(saved)


def test_spark_master_that_cannot_start_is_a_clear_error(tmp_path):
    """A master Spark cannot use ended in Java stack traces and "a bug in segmint"; it is
    now refused before Spark starts."""
    import subprocess

    pytest.importorskip("pyspark")
    data = tmp_path / "lines.parquet"
    make_transactions(50, seed=1).lines.to_parquet(data)
    segmint_cli = os.path.join(os.path.dirname(sys.executable), "segmint")
    res = subprocess.run(
        [segmint_cli, "features", data, "--engine", "spark", "--spark-master", "nonsense://x",
         "--out", tmp_path / "f.parquet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 2, res.stderr[-2000:]
    # refused before a JVM starts (it took 10 s and printed a Java stack trace)
    assert res.stderr.startswith(
        "Error: --spark-master 'nonsense://x' (or SPARK_MASTER) is not a Spark master"
    ), res.stderr
    assert "Exception" not in res.stderr and "bug in segmint" not in res.stderr


def test_spark_without_java_names_java_not_the_master(tmp_path):
    """Without Java (none on the PATH, or a JAVA_HOME without bin/java), Spark failed
    with "Java gateway process exited", shell errors and the hint to check
    --spark-master and the cluster, on a local run that has no cluster."""
    import subprocess

    pytest.importorskip("pyspark")
    data = tmp_path / "lines.parquet"
    make_transactions(50, seed=1).lines.to_parquet(data)
    segmint_cli = os.path.join(os.path.dirname(sys.executable), "segmint")
    empty = tmp_path / "bin"
    empty.mkdir()
    base = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "SPARK_HOME")}
    for env, problem in (
        ({**base, "PATH": str(empty)}, "no 'java' on the PATH"),
        ({**base, "JAVA_HOME": str(tmp_path / "nojava")}, "which has no bin/java"),
    ):
        res = subprocess.run(
            [segmint_cli, "inspect", data, "--engine", "spark"],
            capture_output=True, text=True, timeout=300, env=env,
        )  # fmt: skip
        assert res.returncode == 2, res.stderr[-2000:]
        assert "Spark needs a Java runtime" in res.stderr and problem in res.stderr
        assert "JAVA_HOME" in res.stderr and "cluster" not in res.stderr
        assert "gateway" not in res.stderr and "Traceback" not in res.stderr


def test_unreachable_spark_master_fails_at_once_without_java_traces(tmp_path):
    """A standalone master on a closed port took about 70 s of Spark's retries and
    printed some 120 lines of Java stack traces before segmint's error; a TCP check
    first makes it one clear error within seconds, without starting the JVM."""
    import socket
    import subprocess
    import time

    pytest.importorskip("pyspark")
    data = tmp_path / "lines.parquet"
    make_transactions(50, seed=1).lines.to_parquet(data)
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    master = f"spark://127.0.0.1:{port}"
    segmint_cli = os.path.join(os.path.dirname(sys.executable), "segmint")
    t0 = time.monotonic()
    res = subprocess.run(
        [segmint_cli, "run", data, "--engine", "spark", "--spark-master", master,
         "--out", tmp_path / "run"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    took = time.monotonic() - t0
    assert res.returncode == 75, res.stderr[-2000:]  # EX_TEMPFAIL: worth retrying later
    lines = res.stderr.strip().splitlines()
    assert lines[0] == (
        f"Error: cannot reach the Spark master '{master}': 127.0.0.1:{port} (Connection refused)"
    ), res.stderr[-2000:]
    assert lines[1].startswith("Hint: ") and "--spark-master" in lines[1]
    assert len(lines) == 2 and "at org.apache" not in res.stderr and "Exception" not in res.stderr
    assert took < 30, took  # Spark's own retries take about a minute
    assert not (tmp_path / "run").exists()
    # the same for a master given as host:port pairs (standby masters), and in JSON
    res = subprocess.run(
        [segmint_cli, "features", data, "--engine", "spark", "--spark-master",
         f"{master},127.0.0.1:{port}", "--out", tmp_path / "f.parquet", "--json"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 75 and json.loads(res.stdout)["error"] == "spark_unavailable"


def test_spark_run_prints_no_log_notices(spark, tmp_path):
    """A local Spark run from the command line: the answer on stdout, and on stderr
    none of Spark's log lines ("Setting default log level to WARN", WARN lines); the
    only line left is the JVM's own note on an incubator module, which no log setting
    reaches."""
    import subprocess

    data = tmp_path / "lines.parquet"
    make_transactions(50, seed=1).lines.to_parquet(data)
    segmint_cli = os.path.join(os.path.dirname(sys.executable), "segmint")
    res = subprocess.run(
        [segmint_cli, "features", data, "--engine", "spark", "--out", tmp_path / "f.parquet"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Customer table written" in res.stdout
    left = [
        line for line in res.stderr.splitlines() if line.strip() and "incubator modules" not in line
    ]
    assert left == [], left


def test_spark_log_configuration_is_private() -> None:
    """It was written under a predictable name in the shared temporary folder (another
    user could plant a link there) and left behind; now a private folder per process."""
    from segmint.engines import _log4j_file

    path = Path(_log4j_file())
    assert path.parent.name.startswith("segmint-log4j2-")
    assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    assert "logger.spark.level = error" in path.read_text()
    assert _log4j_file() == str(path)  # once per process


def test_postgres_timezone_reads_timestamptz_as_local_time(pg_url):
    """``--timezone`` in the server: ``timestamptz`` sales at 9:00 in Sydney are on that
    day, not on the UTC day before; the same as DuckDB on the same instants in Parquet."""
    import psycopg

    with psycopg.connect(pg_url) as conn:
        conn.execute(
            "DROP TABLE IF EXISTS zoned; CREATE TABLE zoned (customer text, invoice text, "
            "sold timestamptz, price float8)"
        )
        conn.execute(
            "INSERT INTO zoned VALUES ('a', '1', '2024-01-15 09:00+11', 5), "
            "('a', '2', '2024-07-15 09:00+10', 7)"
        )
    columns = {"customer_id": "customer", "invoice_id": "invoice", "invoice_date": "sold",
               "unit_price": "price"}  # fmt: skip

    def dates(zone: str | None) -> list[str]:
        load = LoadConfig(table="zoned", columns=columns, timezone=zone)
        lines = prepare(pg_url, load, CleanConfig()).cleaned.lines.to_pandas()
        return sorted(str(v) for v in lines["invoice_date"])

    assert dates(None) == ["2024-01-14 22:00:00", "2024-07-14 23:00:00"]
    assert dates("Australia/Sydney") == ["2024-01-15 09:00:00", "2024-07-15 09:00:00"]


def test_spark_timezone_gives_the_local_days_duckdb_gives(cli, spark, tmp_path):
    """``--timezone`` on Spark (it was refused): a Parquet ``timestamp[tz]`` (or INT96) is Spark's
    ``TIMESTAMP``, read as the shop's wall time with ``from_utc_timestamp``, so first
    and last purchase per customer are the local days DuckDB gives for the same file;
    a timestamp without a zone (Spark's ``TIMESTAMP_NTZ``) and text are read as written,
    and without a zone both engines keep the UTC days."""
    path = zoned_parquet(tmp_path / "zoned.parquet")
    columns = {"customer_id": "customer", "invoice_id": "invoice", "unit_price": "price"}

    noted = set()

    def days(
        date_column: str, zone: str | None, engine: str, data: Path = path
    ) -> list[tuple[str, str, str]]:
        load = LoadConfig(
            engine=engine,
            spark_master=spark if engine == "spark" else None,
            columns={**columns, "invoice_date": date_column},
            timezone=zone,
        )
        prepared = prepare(str(data), load, CleanConfig())
        if (
            f"invoice_date: instants read as local time in {zone}"
            in prepared.resolved.mapping.notes
        ):
            noted.add((date_column, engine))
        f = customer_features(prepared.cleaned).to_pandas()
        return [
            (r.customer_id, str(r.first_purchase), str(r.last_purchase))
            for r in f.sort_values("customer_id").itertuples()
        ]

    cases = {
        ("sydney", "Australia/Sydney"): ("2024-01-15 09:00:00", "2024-07-15 09:00:00"),
        ("sydney", None): ("2024-01-14 22:00:00", "2024-07-14 23:00:00"),
        ("utc", "America/New_York"): ("2024-01-14 21:30:00", "2024-07-14 21:30:00"),
        ("wall", "America/New_York"): ("2024-01-15 09:00:00", "2024-07-15 09:00:00"),
        ("text", "America/New_York"): ("2024-01-15 09:00:00", "2024-01-15 09:00:00"),
    }
    for (date_column, zone), (first, last) in cases.items():
        expected = [("a", first, last), ("b", first, last)]
        assert days(date_column, zone, "duckdb") == expected, (date_column, zone)
        assert days(date_column, zone, "spark") == expected, (date_column, zone)
    assert noted == {(c, e) for c in ("sydney", "utc") for e in ("duckdb", "spark")}
    # INT96, Spark's and Hive's timestamp: UTC instants in a zone-less type, which DuckDB
    # left in UTC under --timezone while Spark moved them
    int96 = int96_parquet(tmp_path / "int96.parquet")
    for zone, (first, last) in [
        ("Australia/Sydney", cases[("sydney", "Australia/Sydney")]),
        (None, cases[("sydney", None)]),
    ]:
        expected = [("a", first, last), ("b", first, last)]
        assert days("sydney", zone, "duckdb", int96) == expected, zone
        assert days("sydney", zone, "spark", int96) == expected, zone

    # through the CLI: the option is taken, and a misspelt zone is still refused
    out = tmp_path / "spark.csv"
    mapping = ("--map", "customer_id=customer", "--map", "invoice_id=invoice",
               "--map", "invoice_date=sydney", "--map", "unit_price=price")  # fmt: skip
    on_spark = ("--engine", "spark", "--spark-master", spark)
    res = cli("features", path, *on_spark, *mapping, "--timezone", "Australia/Sydney",
              "--out", out)  # fmt: skip
    assert res.code == 0, res.err
    got = pd.read_csv(out)
    assert got["first_purchase"].str[:10].tolist() == ["2024-01-15"] * 2
    assert got["last_purchase"].str[:10].tolist() == ["2024-07-15"] * 2
    bad = cli("features", path, *on_spark, *mapping, "--timezone", "Australia/Sidney",
              "--out", tmp_path / "bad.csv")  # fmt: skip
    assert bad.code == 2 and "'Australia/Sydney'" in bad.err and "Traceback" not in bad.err


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://ana:Sum@er2024xyz@127.0.0.1:1/shop",
        "mysql://reader:Sum@er2024/xyz@127.0.0.1:1/shop",
        "mysql://reader:my@Pass:w/rd@127.0.0.1:1/shop",
        "postgresql://ana:pa/ss@127.0.0.1:1/shop",
    ],
)
def test_a_password_with_an_unencoded_at_or_slash_is_refused_unprinted(cli, url: str) -> None:
    """libpq and urlsplit end the user information at the first '@' (the host at a '/'):
    the rest of the password was printed ("failed to resolve host 'er2024xyz@...'"), and
    PostgreSQL's DNS failure exited 75, so a scheduler retried a typo for ever."""
    pytest.importorskip("psycopg")
    res = cli("inspect", url, "--table", "sales")
    assert res.code == 2, res.err
    secret = url.split("://", 1)[1].split(":", 1)[1].rsplit("@", 1)[0]
    for piece in {secret, *secret.replace("/", "@").split("@")}:
        if len(piece) >= 4:  # "ss" of "pa/ss" is in any English message
            assert piece not in res.err + res.out, piece
    assert "the user name or password holds '@' or '/' as it is" in res.err
    assert "%40" in res.err and ":***@127.0.0.1:1/shop" in res.err


def test_a_read_only_session_and_a_writing_query_are_named(cli, pg_url, pg_sales, tmp_path):
    """A read replica or a read-only role failed inside the cleaning ("cannot execute
    CREATE TABLE in a read-only transaction", with the hint to check the data), and a
    role without TEMP got the hint to grant SELECT, which it had. A --query that writes
    got a raw "syntax error at or near DELETE"."""
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE replica_reader LOGIN PASSWORD 'rr'")
        conn.execute(f"GRANT SELECT ON {pg_sales} TO replica_reader")
        conn.execute("ALTER ROLE replica_reader SET default_transaction_read_only = on")
    port = pg_url.rsplit(":", 1)[1].split("/")[0]
    url = f"postgresql://replica_reader:rr@127.0.0.1:{port}/postgres"
    for how in (["--table", pg_sales], ["--query", f"SELECT * FROM {pg_sales}"]):
        res = cli("features", "--source", url, *how, "--out", tmp_path / "f.parquet")
        assert res.code == 2, res.err
        assert "this session cannot create temporary tables" in res.err
        assert "read-only transaction" in res.err and "GRANT TEMP ON DATABASE" in res.err
        assert "rr@" not in res.err
    res = cli("features", "--source", pg_url, "--query", f"DELETE FROM {pg_sales}",
              "--out", tmp_path / "f.parquet")  # fmt: skip
    assert res.code == 2 and "--query may only read (one SELECT)" in res.err, res.err
    assert "nothing was run" in res.err
    assert _fetch(pg_url, f"SELECT count(*) > 0 FROM {pg_sales}") == [(True,)]


def test_spark_engine_with_a_postgresql_url_is_refused(cli) -> None:
    """--engine spark with a postgresql:// URL ran inside PostgreSQL without a word."""
    res = cli("inspect", "postgresql://ana@127.0.0.1:1/shop", "--table", "t", "--engine", "spark")
    assert res.code == 2 and "inside PostgreSQL, not on Spark" in res.err, res.err
