"""SQLite databases: a table or a SELECT read like a file, with the same results.

Each test builds real SQLite files (Python's sqlite3 and pandas' ``to_sql``) and reads
them through the real pipeline and CLI; the answers are compared with the same rows read
from CSV or Parquet.
"""

from __future__ import annotations

import hashlib
import json
import re
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import retail_frame
from segmint.config import CleanConfig, LoadConfig
from segmint.datasets import make_transactions
from segmint.errors import ConfigError, InputError, ParseError
from segmint.features import customer_features
from segmint.io import read_source
from segmint.pipeline import prepare


def _audit(prepared) -> dict:
    audit = json.loads(prepared.cleaned.audit.to_json())
    audit.pop("source")
    return audit


def _same_features(a: pd.DataFrame, b: pd.DataFrame) -> None:
    assert list(a.columns) == list(b.columns)
    assert a["customer_id"].tolist() == b["customer_id"].tolist()
    for c in a.columns:
        assert a[c].dtype == b[c].dtype, c
        if a[c].dtype.kind == "f":
            np.testing.assert_allclose(b[c], a[c], rtol=1e-12, atol=0, err_msg=c)
        else:
            assert a[c].equals(b[c]), c


def _to_sqlite(frame: pd.DataFrame, db: Path, table: str = "sales") -> Path:
    with sqlite3.connect(db) as conn:
        frame.to_sql(table, conn, index=False)
    conn.close()
    return db


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def retail_rows(online_retail: Path) -> pd.DataFrame:
    """The first 60,000 lines of Online Retail (about 1,900 customers, with missing ids,
    returns, duplicates and zero prices), typed as a shop's database would hold them;
    the dates stay text as the file writes them ("12/1/2010 8:26")."""
    return pd.read_csv(
        online_retail,
        nrows=60_000,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64", "InvoiceDate": str},
    )


def test_sqlite_table_matches_csv_and_parquet_on_online_retail(retail_rows, tmp_path):
    """The same audit and the same customer features from an SQLite table as from the
    same rows in a CSV and a Parquet file; the database file is left as it was."""
    db = _to_sqlite(retail_rows, tmp_path / "shop.db")
    before = _digest(db)
    csv, parquet = tmp_path / "sales.csv", tmp_path / "sales.parquet"
    retail_rows.to_csv(csv, index=False)
    retail_rows.to_parquet(parquet)

    from_db = prepare(f"sqlite:///{db}", LoadConfig(table="sales"), CleanConfig())
    assert from_db.source.format == "sqlite"
    assert from_db.source.count() == len(retail_rows)
    features_db = customer_features(from_db.cleaned).to_pandas()
    assert len(features_db) > 1000
    for other in (csv, parquet):
        local = prepare(str(other), LoadConfig(), CleanConfig())
        assert _audit(from_db) == _audit(local), other.name
        _same_features(customer_features(local.cleaned).to_pandas(), features_db)
    assert _audit(from_db)["rules"] and any(r["dropped"] for r in _audit(from_db)["rules"])
    # read-only: not one byte written, no journal left beside it
    assert _digest(db) == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("shop.db")) == ["shop.db"]


def test_every_reading_command_takes_an_sqlite_table(cli, tmp_path):
    """run, features, clean, inspect, clv, backtest, score and migrate read
    sqlite:///FILE --table (and --source, a plain path, load.table in segmint.toml)
    with the answers of the same lines in a Parquet file."""
    lines = make_transactions(600, seed=3).lines
    db = _to_sqlite(lines, tmp_path / "shop.db")
    local = tmp_path / "sales.parquet"
    lines.to_parquet(local)
    url = f"sqlite:///{db}"

    a = cli("features", local, "--out", tmp_path / "a.parquet")
    b = cli("features", url, "--table", "sales", "--out", tmp_path / "b.parquet")
    assert a.code == 0, a.err
    assert b.code == 0, b.err
    _same_features(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))

    def both(*args, db_args=("--source", url, "--table", "sales")):
        ra, rb = cli(*args, local, "--json"), cli(*args, *db_args, "--json")
        assert ra.code == 0, ra.err
        assert rb.code == 0, rb.err
        return json.loads(ra.out), json.loads(rb.out)

    ia, ib = both("inspect", db_args=(db, "--table", "sales"))  # a plain path
    assert ia["audit"]["rules"] == ib["audit"]["rules"]
    assert ia["audit"]["kept_rows"] == ib["audit"]["kept_rows"] > 0
    ca, cb = both("clean", "--out", tmp_path / "kept.parquet")
    assert ca["kept_rows"] == cb["kept_rows"]
    va, vb = both("clv", "--horizon", "90D")
    assert va["customers"] == vb["customers"] > 0
    ba, bb = both("backtest", "--cutoff", "2011-08-01", "--horizon", "60D", "--k-max", "3")
    assert ba["buyers_in_horizon"] == bb["buyers_in_horizon"] > 0

    # run from the database, table named in segmint.toml; score and migrate read it too
    config = tmp_path / "segmint.toml"
    config.write_text('[load]\ntable = "sales"\n')
    common = ("--algorithm", "kmeans", "--k", "3", "--no-clv", "--seed", "1")
    ra = cli("run", local, "--out", tmp_path / "ra", *common)
    rb = cli("run", url, "--out", tmp_path / "rb", "--config", config, *common)
    assert ra.code == 0, ra.err
    assert rb.code == 0, rb.err
    sa = pd.read_parquet(tmp_path / "ra" / "customers.parquet")
    sb = pd.read_parquet(tmp_path / "rb" / "customers.parquet")
    assert sa["customer_id"].tolist() == sb["customer_id"].tolist()
    assert sa["segment_id"].tolist() == sb["segment_id"].tolist()
    assert (
        json.loads((tmp_path / "ra" / "audit.json").read_text())["rules"]
        == json.loads((tmp_path / "rb" / "audit.json").read_text())["rules"]
    )
    # run.json identifies the database file as it does any input file
    meta = json.loads((tmp_path / "rb" / "run.json").read_text())["input"]
    assert meta["source"] == "shop.db" and meta["sha256"] == _digest(db)
    model = tmp_path / "ra" / "model.segmint"
    sc = cli("score", model, url, "--table", "sales", "--out", tmp_path / "scored.parquet")
    assert sc.code == 0, sc.err
    scored = pd.read_parquet(tmp_path / "scored.parquet")
    assert scored["segment_id"].tolist() == sa["segment_id"].tolist()
    window = ("--from", "2011-06-01", "--to", "2011-09-01", "--no-predict", "--json")
    ma = cli("migrate", model, local, *window)
    mb = cli("migrate", model, url, "--table", "sales", *window)
    assert ma.code == 0, ma.err
    assert mb.code == 0, mb.err
    assert json.loads(ma.out)["matrix"] == json.loads(mb.out)["matrix"]


def test_a_single_table_database_is_read_without_table(tmp_path):
    """A plain path to an SQLite file (it was refused) reads its only table; a database
    of several tables says which to give."""
    db = _to_sqlite(retail_frame(), tmp_path / "shop.db")
    src = read_source(db)
    assert src.format == "sqlite" and src.count() == 6
    assert src.path == f"{db}#sales"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE customers (id TEXT)")
    conn.close()
    with pytest.raises(ConfigError, match="has 2 tables; say which one") as err:
        read_source(db)
    assert "customers, sales" in err.value.hint
    empty = tmp_path / "empty.db"
    with sqlite3.connect(empty) as conn:
        conn.execute("CREATE TABLE sales (a INTEGER)")
    conn.close()
    with pytest.raises(InputError, match="empty.db#sales: has no rows"):
        read_source(empty)


def _mixed_db(path: Path) -> Path:
    """Online Retail's layout as a careless shop system writes it: Quantity (declared
    without a type) holds integers and text, UnitPrice (NUMERIC) integers and reals,
    CustomerID (INTEGER) an id that is text, the dates are text."""
    rows = [list(r) for r in retail_frame().itertuples(index=False)]
    rows[1][3] = "12"  # text that is a number
    rows[2][5] = 2  # an integer price among reals
    rows[3][6] = "C17850"  # an id that is text in an INTEGER column
    for r in rows:
        r[6] = int(r[6]) if str(r[6]).isdigit() else r[6]
    with sqlite3.connect(path) as conn:
        conn.execute(
            "CREATE TABLE sales (InvoiceNo TEXT, StockCode TEXT, Description TEXT, "
            "Quantity, InvoiceDate TEXT, UnitPrice NUMERIC, CustomerID INTEGER, "
            "Country TEXT)"
        )
        conn.executemany("INSERT INTO sales VALUES (?, ?, ?, ?, ?, ?, ?, ?)", rows)
        kinds = {
            c: {k for (k,) in conn.execute(f"SELECT DISTINCT typeof({c}) FROM sales")}
            for c in ("Quantity", "UnitPrice", "CustomerID")
        }
    conn.close()
    assert kinds == {
        "Quantity": {"integer", "text"},
        "UnitPrice": {"integer", "real"},
        "CustomerID": {"integer", "text"},
    }
    return path


def test_mixed_type_columns_are_parsed_like_csv_text(cli, tmp_path):
    """A column whose rows hold integers and text is read as text and parsed by the
    usual checks: no crash, no value lost (the text "12" is the number 12), and a value that
    is no number is reported naming the column and row, as for the same CSV."""
    db = _mixed_db(tmp_path / "mixed.db")
    src = read_source(db)
    assert src.details["mixed_type_columns"] == ["Quantity", "CustomerID"]
    prepared = prepare(str(db), LoadConfig(), CleanConfig())
    kept = prepared.cleaned.lines.to_pandas().sort_values("invoice_id")
    assert kept["quantity"].tolist() == [6, 12, 32, 4, 3, 24]
    assert kept["unit_price"].tolist() == [2.55, 1.85, 2.0, 4.25, 5.95, 3.75]
    assert "C17850" in kept["customer_id"].tolist()
    res = cli("inspect", db, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["source"]["mixed_type_columns"] == ["Quantity", "CustomerID"]

    # a quantity that is no number: the same ParseError as from the same CSV text
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE sales SET Quantity = 'two' WHERE InvoiceNo = '536367'")
        conn.execute("UPDATE sales SET Quantity = 'ten' WHERE InvoiceNo = '536369'")
    conn.close()
    csv = tmp_path / "mixed.csv"
    with sqlite3.connect(db) as conn:
        pd.read_sql("SELECT * FROM sales", conn).to_csv(csv, index=False)
    conn.close()
    errors = []
    for data in (f"sqlite:///{db}", str(csv)):
        with pytest.raises(ParseError) as err:
            prepare(data, LoadConfig(table="sales") if "sqlite" in data else LoadConfig(),
                    CleanConfig())  # fmt: skip
        errors.append(err.value)
    from_db, from_csv = errors
    assert from_db.column == from_csv.column == "Quantity"
    assert from_db.row == from_csv.row == 3
    assert from_db.message.replace(f"sqlite:///{db}#sales", "X") == from_csv.message.replace(
        str(csv), "X"
    )


def test_a_query_reads_one_select_and_nothing_else(cli, tmp_path):
    """--query (and load.query) is one read-only SELECT: a second statement, a write, an
    ATTACH or a PRAGMA are refused before anything runs; a typo is blamed on the query."""
    lines = make_transactions(300, seed=5).lines
    db = _to_sqlite(lines, tmp_path / "shop.db")
    url = f"sqlite:///{db}"
    some = lines[lines["Country"] == "France"]
    assert 0 < len(some) < len(lines)
    q = "SELECT * FROM sales WHERE Country = 'France'"
    got = prepare(url, LoadConfig(query=q), CleanConfig())
    assert got.source.path == f"{url} (query)"
    assert got.source.count() == len(some)
    local = tmp_path / "france.parquet"
    some.reset_index(drop=True).to_parquet(local)
    assert _audit(got) == _audit(prepare(str(local), LoadConfig(), CleanConfig()))

    before = _digest(db)
    for query, says in [
        ("SELECT * FROM sales; DROP TABLE sales", "must be one SELECT statement"),
        ("DELETE FROM sales", "may only read"),
        (f"ATTACH '{tmp_path / 'new.db'}' AS x", "may only read"),
        ("PRAGMA journal_mode = WAL", "may only read"),
    ]:
        res = cli("inspect", url, "--query", query)
        assert res.code == 2, (query, res.err)
        assert says in res.err and "Traceback" not in res.err, res.err
    assert _digest(db) == before
    assert not (tmp_path / "new.db").exists()
    # dates stored as Unix seconds, converted in the query as the README shows
    frame = retail_frame()
    frame["ts"] = pd.to_datetime(frame.pop("InvoiceDate")).astype("int64") // 10**9
    _to_sqlite(frame, tmp_path / "ts.db")
    q_ts = "SELECT *, datetime(ts, 'unixepoch') AS invoice_date FROM sales"
    res = cli("inspect", tmp_path / "ts.db", "--query", q_ts, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["audit"]["kept_rows"] == 6
    for query, says in [
        ("SELECT InvoiceNo, InvoiceNo FROM sales", "'InvoiceNo' appear more than once"),
        ("SELECT *, 1 AS _row FROM sales", "named '_row'"),
    ]:
        res = cli("inspect", url, "--query", query)
        assert res.code == 2 and says in res.err, res.err
    # a closing ';' followed by a comment, or a comment on the last line
    for tail in ["; -- France only", " -- France only", ";\n/* France; only */\n"]:
        res = cli("inspect", url, "--query", q + tail, "--json")
        assert res.code == 0, (tail, res.err)
        assert json.loads(res.out)["audit"]["input_rows"] == len(some), tail
    res = cli("inspect", url, "--query", "SELECT * FROM sale")
    assert res.code == 2
    assert "no such table: sale" in res.err and "--query" in res.err, res.err
    res = cli("inspect", url, "--table", "sales", "--query", q)
    assert res.code == 2 and "not both" in res.err, res.err


def test_sqlite_mistakes_are_clear(cli, tmp_path, monkeypatch):
    """A missing file, a file that is no database, a missing table, a damaged and a
    locked database: one line naming it and a fix, status 2 (75 for the lock), no
    traceback."""
    db = _to_sqlite(make_transactions(200, seed=1).lines, tmp_path / "shop.db")

    def fails(code: int, says: str, *args) -> str:
        res = cli("inspect", *args)
        assert res.code == code, res.err
        assert says in res.err, res.err
        assert "Traceback" not in res.err
        return res.err

    fails(2, "no such file", "sqlite:///" + str(tmp_path / "nope.db"), "--table", "sales")
    err = fails(2, "no such file", "sqlite:///nope.db", "--table", "sales")
    assert "sqlite:////" in err  # the hint shows an absolute path's four slashes
    fails(2, "is not an SQLite URL", "sqlite://shop.db", "--table", "sales")
    text = tmp_path / "sales.csv"
    retail_frame().to_csv(text, index=False)
    fails(2, "is not an SQLite database", f"sqlite:///{text}", "--table", "sales")
    fails(2, "give a postgresql://, mysql:// or sqlite:/// URL", text, "--table", "sales")
    err = fails(2, "no such table 'orders'", f"sqlite:///{db}", "--table", "orders")
    assert "tables there: sales" in err
    # names ignore case in SQLite
    assert cli("inspect", f"sqlite:///{db}", "--table", "SALES").code == 0

    damaged = tmp_path / "damaged.db"
    data = bytearray(db.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the page of the schema
    damaged.write_bytes(bytes(data))
    fails(2, "is damaged", f"sqlite:///{damaged}", "--table", "sales")

    from segmint import sqlite as sqlite_db

    monkeypatch.setattr(sqlite_db, "BUSY_TIMEOUT", 0.05)
    writer = sqlite3.connect(db, isolation_level=None)
    try:
        writer.execute("BEGIN EXCLUSIVE")
        err = fails(75, "is locked", f"sqlite:///{db}", "--table", "sales")
        assert "try again" in err
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    res = cli("inspect", f"sqlite:///{db}", "--table", "sales", "--engine", "spark")
    assert res.code == 2 and "not on Spark" in res.err, res.err


def test_a_copy_shows_its_progress_on_a_terminal(online_retail, tmp_path):
    """Copying a table of 100,000 lines (two batches) shows on the terminal the rows
    copied so far of the total (counted in the type scan) and the rate, while the
    results go to stdout untouched; --quiet and --json show none of it. The Python API
    prints nothing: it calls the progress callback."""
    from conftest import cli_on_terminal

    frame = pd.read_csv(
        online_retail,
        nrows=100_000,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64", "InvoiceDate": str},
    )
    db = _to_sqlite(frame, tmp_path / "shop.db")
    url = f"sqlite:///{db}"
    shown = cli_on_terminal("inspect", url, "--table", "sales")
    assert shown.code == 0, shown.err
    assert f"checking the types of the values in {url}#sales" in shown.err
    assert re.search(
        rf"copying {re.escape(url)}#sales: 65,536 of 100,000 rows \(65%\), [\d,]+ rows/s",
        shown.err,
    ), shown.err
    assert "copying" not in shown.out and "kept" in shown.out.lower()
    for flag in ("--quiet", "--json"):
        quiet = cli_on_terminal("inspect", url, "--table", "sales", flag)
        assert quiet.code == 0, quiet.err
        assert "copying" not in quiet.err + quiet.out, flag
    # the library itself calls the callback (and prints nothing: the CLI shows it)
    from segmint.sqlite import read_sqlite

    said: list[str] = []
    assert read_sqlite(db, table="sales", progress=said.append).count() == 100_000
    assert said[0] == f"checking the types of the values in {db}#sales"
    assert said[1].startswith(f"copying {db}#sales: 65,536 of 100,000 rows (65%), ")
    # and so does read_source, which opens a file of one table without being told
    from segmint.io import read_source

    said.clear()
    assert read_source(db, progress=said.append).count() == 100_000
    assert said[0] == f"checking the types of the values in {db}#sales", said
    assert any(s.startswith(f"copying {db}#sales: 65,536 of 100,000 rows") for s in said), said
