"""MySQL / MariaDB databases: a table or a SELECT read like a file, with the same results.

One throwaway MariaDB server for the module (tests/mysqlserver.py: mariadb-install-db +
mariadbd on a free loopback port in a temporary folder); the tests fill real tables with
native types and read them through the real pipeline and CLI, comparing the answers with
the same rows read from CSV or Parquet. The reader's password is given through
``MYSQL_PWD`` (as the mysql client takes it) unless a test says otherwise.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from conftest import retail_frame
from mysqlserver import root_connection, server, server_bin, tls_files
from segmint.config import CleanConfig, LoadConfig
from segmint.datasets import make_transactions
from segmint.errors import ConfigError, EnvironmentFailure, InputError
from segmint.features import customer_features
from segmint.pipeline import prepare
from test_sqlite import _audit, _same_features

ON_CI = os.environ.get("CI", "").lower() in ("true", "1", "yes")


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason}; on CI (CI=true) `make test` installs it, so this is a failure")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def maria() -> dict:
    """One MariaDB server for the module; ``MYSQL_PWD`` holds the reader's password."""
    try:
        import pymysql  # noqa: F401
    except ImportError:
        _unavailable("pymysql is not installed")
    if server_bin() is None:
        _unavailable("MariaDB server programs not found (Debian package mariadb-server)")
    with server() as info:
        saved = os.environ.get("MYSQL_PWD")
        os.environ["MYSQL_PWD"] = info["password"]
        try:
            yield info
        finally:
            if saved is None:
                os.environ.pop("MYSQL_PWD", None)
            else:
                os.environ["MYSQL_PWD"] = saved


def _url(info: dict, database: str = "shop", scheme: str = "mysql", password: str = "") -> str:
    secret = f":{password}" if password else ""
    return f"{scheme}://{info['user']}{secret}@{info['host']}:{info['port']}/{database}"


def _run(info: dict, *statements: str, rows=None, database: str = "shop") -> None:  # noqa: ANN001
    """Run statements as root; the last one with ``rows`` (executemany) when given."""
    with root_connection(info, database) as conn, conn.cursor() as cur:
        for i, sql in enumerate(statements):
            if rows is not None and i == len(statements) - 1:
                cur.executemany(sql, rows)
            else:
                cur.execute(sql)


def _fetch(info: dict, sql: str) -> list[tuple]:
    with root_connection(info) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return list(cur.fetchall())


def _retail_table(info: dict, frame: pd.DataFrame, table: str) -> None:
    """Online Retail's columns with the native types of a shop's database."""
    rows = [
        tuple(None if pd.isna(v) else v for v in r)
        for r in frame[
            ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate", "UnitPrice",
             "CustomerID", "Country"]
        ].itertuples(index=False, name=None)
    ]  # fmt: skip
    _run(
        info,
        f"DROP TABLE IF EXISTS {table}",
        f"CREATE TABLE {table} (id INT AUTO_INCREMENT PRIMARY KEY, InvoiceNo VARCHAR(10), "
        "StockCode VARCHAR(20), Description VARCHAR(255), Quantity INT, InvoiceDate DATETIME, "
        "UnitPrice DECIMAL(10,2), CustomerID VARCHAR(12), Country VARCHAR(40)) "
        "CHARACTER SET utf8mb4",
        f"INSERT INTO {table} (InvoiceNo, StockCode, Description, Quantity, InvoiceDate, "
        "UnitPrice, CustomerID, Country) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        rows=rows,
    )


def test_mysql_table_matches_csv_on_online_retail(maria, online_retail, tmp_path):
    """The first 60,000 lines of Online Retail in a MariaDB table (DATETIME, DECIMAL,
    INT, VARCHAR) give the same audit and the same customer features as the same lines
    in the CSV file; the table is left as it was."""
    frame = pd.read_csv(
        online_retail,
        nrows=60_000,
        dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": "Int64"},
    )
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"], format="ISO8601")
    frame["CustomerID"] = frame["CustomerID"].astype("string")
    frame["UnitPrice"] = [Decimal(str(v)) for v in frame["UnitPrice"]]
    _retail_table(maria, frame, "retail")
    csv = tmp_path / "retail.csv"
    frame.to_csv(csv, index=False)

    # the lines in the order of the file (the key is left out: duplicates stay duplicates)
    query = (
        "SELECT InvoiceNo, StockCode, Description, Quantity, InvoiceDate, UnitPrice, "
        "CustomerID, Country FROM retail ORDER BY id"
    )
    from_db = prepare(_url(maria), LoadConfig(query=query), CleanConfig())
    assert from_db.source.format == "mysql"
    assert from_db.source.count() == 60_000
    local = prepare(str(csv), LoadConfig(), CleanConfig())
    assert _audit(from_db) == _audit(local)
    assert any(r["dropped"] for r in _audit(from_db)["rules"])
    features_db = customer_features(from_db.cleaned).to_pandas()
    assert len(features_db) > 1000
    _same_features(customer_features(local.cleaned).to_pandas(), features_db)
    assert _fetch(maria, "SELECT count(*) FROM retail") == [(60_000,)]


def test_every_reading_command_takes_a_mysql_table(maria, cli, tmp_path):
    """run, features, clean, inspect, clv, backtest, score and migrate read
    mysql://... --table (and --source, mariadb://, load.table in segmint.toml) with the
    answers of the same lines in a Parquet file; the password (from MYSQL_PWD, or in the
    URL) is in no output, message or file."""
    lines = make_transactions(600, seed=3).lines
    lines["InvoiceDate"] = pd.to_datetime(lines["InvoiceDate"])
    cols = list(lines.columns)
    assert cols == ["InvoiceNo", "StockCode", "Description", "Quantity", "InvoiceDate",
                    "UnitPrice", "CustomerID", "Country"]  # fmt: skip
    _run(
        maria,
        "DROP TABLE IF EXISTS sales",
        "CREATE TABLE sales (InvoiceNo VARCHAR(12), StockCode VARCHAR(20), Description "
        "TEXT, Quantity INT, InvoiceDate DATETIME, UnitPrice DOUBLE, CustomerID VARCHAR(12), "
        "Country VARCHAR(40))",
        "INSERT INTO sales VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
        rows=[tuple(None if pd.isna(v) else v for v in r)
              for r in lines.itertuples(index=False, name=None)],
    )  # fmt: skip
    local = tmp_path / "sales.parquet"
    lines.to_parquet(local)
    url = _url(maria)
    secret = maria["password"]

    a = cli("features", local, "--out", tmp_path / "a.parquet")
    b = cli("features", url, "--table", "sales", "--out", tmp_path / "b.parquet")
    assert a.code == 0, a.err
    assert b.code == 0, b.err
    _same_features(pd.read_parquet(tmp_path / "a.parquet"), pd.read_parquet(tmp_path / "b.parquet"))

    def both(*args, db_args=("--source", url, "--table", "sales")):
        ra, rb = cli(*args, local, "--json"), cli(*args, *db_args, "--json")
        assert ra.code == 0, ra.err
        assert rb.code == 0, rb.err
        assert secret not in rb.out + rb.err
        return json.loads(ra.out), json.loads(rb.out)

    with_password = _url(maria, scheme="mariadb", password=secret)
    ia, ib = both("inspect", db_args=(with_password, "--table", "SALES", "-v"))
    assert ia["audit"]["rules"] == ib["audit"]["rules"]
    assert ia["audit"]["kept_rows"] == ib["audit"]["kept_rows"] > 0
    assert ib["source"]["path"].startswith("mariadb://reader:***@")
    ca, cb = both("clean", "--out", tmp_path / "kept.parquet")
    assert ca["kept_rows"] == cb["kept_rows"]
    va, vb = both("clv", "--horizon", "90D")
    assert va["customers"] == vb["customers"] > 0
    ba, bb = both("backtest", "--cutoff", "2011-08-01", "--horizon", "60D", "--k-max", "3")
    assert ba["buyers_in_horizon"] == bb["buyers_in_horizon"] > 0

    # run from the database, table named in segmint.toml, password in the URL
    config = tmp_path / "segmint.toml"
    config.write_text('[load]\ntable = "sales"\n')
    common = ("--algorithm", "kmeans", "--k", "3", "--no-clv", "--seed", "1")
    ra = cli("run", local, "--out", tmp_path / "ra", *common)
    rb = cli("run", with_password, "--out", tmp_path / "rb", "--config", config, "-v", *common)
    assert ra.code == 0, ra.err
    assert rb.code == 0, rb.err
    assert secret not in rb.out + rb.err
    sa = pd.read_parquet(tmp_path / "ra" / "customers.parquet")
    sb = pd.read_parquet(tmp_path / "rb" / "customers.parquet")
    assert sa["customer_id"].tolist() == sb["customer_id"].tolist()
    assert sa["segment_id"].tolist() == sb["segment_id"].tolist()
    # run.json names the database without its password; no file of the run holds it
    meta = json.loads((tmp_path / "rb" / "run.json").read_text())["input"]
    assert meta["source"] == with_password.replace(f":{secret}@", ":***@")
    for f in (tmp_path / "rb").rglob("*"):
        assert not f.is_file() or secret.encode() not in f.read_bytes(), f
    model = tmp_path / "ra" / "model.segmint"
    sc = cli("score", model, with_password, "--table", "sales", "--out", tmp_path / "s.parquet")
    assert sc.code == 0, sc.err
    assert secret not in sc.out + sc.err
    scored = pd.read_parquet(tmp_path / "s.parquet")
    assert scored["segment_id"].tolist() == sa["segment_id"].tolist()
    window = ("--from", "2011-06-01", "--to", "2011-09-01", "--no-predict", "--json")
    ma = cli("migrate", model, local, *window)
    mb = cli("migrate", model, url.replace("mysql://", "mysql+pymysql://"), "--table", "sales",
             *window)  # fmt: skip
    assert ma.code == 0, ma.err
    assert mb.code == 0, mb.err
    assert json.loads(ma.out)["matrix"] == json.loads(mb.out)["matrix"]
    res = cli("inspect", url, "--table", "sales", "--engine", "spark")
    assert res.code == 2 and "not on Spark" in res.err, res.err


@pytest.fixture(scope="module")
def woo(maria) -> dict:
    """A WooCommerce-like schema: orders (customer, date as TIMESTAMP) and order_lines
    (product, quantity, DECIMAL price, BIGINT UNSIGNED ids)."""
    frame = retail_frame()
    orders = frame.drop_duplicates("InvoiceNo")
    _run(
        maria,
        "DROP TABLE IF EXISTS orders",
        "CREATE TABLE orders (order_id BIGINT UNSIGNED PRIMARY KEY, customer_id BIGINT "
        "UNSIGNED, created TIMESTAMP NULL, country VARCHAR(40))",
        "SET time_zone = '+00:00'",
        "INSERT INTO orders VALUES (%s, %s, %s, %s)",
        rows=[(int(r.InvoiceNo), int(r.CustomerID), r.InvoiceDate, r.Country)
              for r in orders.itertuples()],
    )  # fmt: skip
    _run(
        maria,
        "DROP TABLE IF EXISTS order_lines",
        "CREATE TABLE order_lines (line_id BIGINT UNSIGNED AUTO_INCREMENT PRIMARY KEY, "
        "order_id BIGINT UNSIGNED, product VARCHAR(20), name VARCHAR(255), qty INT, "
        "price DECIMAL(10,2))",
        "INSERT INTO order_lines (order_id, product, name, qty, price) "
        "VALUES (%s, %s, %s, %s, %s)",
        rows=[(int(r.InvoiceNo), r.StockCode, r.Description, r.Quantity,
               Decimal(str(r.UnitPrice))) for r in frame.itertuples()],
    )  # fmt: skip
    return {"frame": frame}


JOIN = (
    "SELECT o.order_id AS InvoiceNo, o.customer_id AS CustomerID, o.created AS InvoiceDate, "
    "o.country AS Country, l.product AS StockCode, l.name AS Description, l.qty AS Quantity, "
    "l.price AS UnitPrice FROM orders o JOIN order_lines l ON l.order_id = o.order_id"
)


def test_a_query_joins_orders_and_lines_and_may_only_read(maria, woo, cli, tmp_path):
    """--query (a JOIN of orders and order_lines) gives the audit of the same lines in
    a CSV file; a second statement, a write or a syntax error exit 2 naming the query
    and nothing is changed."""
    csv = tmp_path / "lines.csv"
    woo["frame"].to_csv(csv, index=False)
    url = _url(maria)
    res = cli("inspect", url, "--query", JOIN + ";", "--json")
    assert res.code == 0, res.err
    local = cli("inspect", csv, "--json")
    got, want = json.loads(res.out), json.loads(local.out)
    assert got["audit"]["rules"] == want["audit"]["rules"]
    assert got["audit"]["kept_rows"] == want["audit"]["kept_rows"] == 6
    assert got["source"]["path"] == f"{url} (query)"
    run = cli("run", url, "--query", JOIN, "--out", tmp_path / "run", "--algorithm", "kmeans",
              "--k", "2", "--no-clv", "--seed", "1")  # fmt: skip
    assert run.code == 0, run.err
    assert sorted(pd.read_parquet(tmp_path / "run" / "customers.parquet")["customer_id"]) == [
        "12583", "13047", "17850"]  # fmt: skip

    # the README's example, with the shop's own column names mapped by their spelling
    readme = (
        "SELECT o.order_id,\n    o.customer_id, o.created AS order_date, l.product AS "
        "product_id, l.qty AS quantity,\n    l.price FROM orders o JOIN order_lines l ON "
        "l.order_id = o.order_id"
    )
    assert readme in Path(__file__).parents[1].joinpath("README.md").read_text()
    res = cli("inspect", url, "--query", readme, "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["audit"]["kept_rows"] == 6

    before = _fetch(maria, "SELECT count(*) FROM order_lines")
    for query, says in [
        ("DELETE FROM order_lines", "may only read"),
        ("DROP TABLE order_lines", "may only read"),
        ("UPDATE order_lines SET qty = 0", "may only read"),
        ("SELECT * FROM orders; DROP TABLE order_lines", "must be one SELECT statement"),
        (f"SELECT * FROM orders INTO OUTFILE '{tmp_path / 'out.txt'}'", "may only read"),
    ]:
        res = cli("inspect", url, "--query", query, "--json")
        assert res.code == 2, (query, res.err)
        assert says in res.err and "Traceback" not in res.err, res.err
    assert _fetch(maria, "SELECT count(*) FROM order_lines") == before == [(6,)]
    assert not (tmp_path / "out.txt").exists()
    assert _fetch(maria, "SELECT sum(qty) FROM order_lines") == [(Decimal(71),)]
    res = cli("inspect", url, "--query", "SELEC * FROM orders", "--json")
    assert res.code == 2 and json.loads(res.out)["error"] == "bad_query", res.out
    assert "SQL syntax" in res.err and "--query" in res.err
    res = cli("inspect", url, "--query", "SELECT * FROM orders o JOIN order_lines l "
              "ON l.order_id = o.order_id")  # fmt: skip
    assert res.code == 2 and "'order_id' appear more than once" in res.err, res.err


def test_timestamp_is_an_instant_zero_dates_are_missing(maria, woo, caplog):
    """A TIMESTAMP is an instant in UTC, which --timezone turns into the shop's local
    day (whatever the server's own zone); a DATETIME is taken as written; a zero date
    (0000-00-00) is read as missing, said once, and counted by the missing-date rule."""
    columns = {"customer_id": "customer", "invoice_id": "invoice", "invoice_date": "created",
               "unit_price": "price"}  # fmt: skip
    _run(maria, "SET GLOBAL time_zone = '+05:00'")  # the reader sets its session to UTC
    try:
        _run(
            maria,
            "DROP TABLE IF EXISTS zoned",
            "CREATE TABLE zoned (customer VARCHAR(9), invoice VARCHAR(9), created TIMESTAMP "
            "NULL, written DATETIME, price DECIMAL(6,2))",
            "SET time_zone = '+00:00'",
            "INSERT INTO zoned VALUES ('a', '1', '2024-01-14 22:00:00', '2024-01-14 22:00:00', "
            "5), ('a', '2', '2024-07-14 23:00:00', '2024-07-14 23:00:00', 7)",
        )

        def dates(zone: str | None, column: str = "created") -> list[str]:
            load = LoadConfig(table="zoned", columns={**columns, "invoice_date": column},
                              timezone=zone)  # fmt: skip
            lines = prepare(_url(maria), load, CleanConfig()).cleaned.lines.to_pandas()
            return sorted(str(v) for v in lines["invoice_date"])

        assert dates(None) == ["2024-01-14 22:00:00", "2024-07-14 23:00:00"]
        assert dates("Australia/Sydney") == ["2024-01-15 09:00:00", "2024-07-15 09:00:00"]
        assert dates("Australia/Sydney", "written") == dates(None)
    finally:
        _run(maria, "SET GLOBAL time_zone = SYSTEM")

    _run(
        maria,
        "DROP TABLE IF EXISTS zero",
        "SET SESSION sql_mode = ''",
        "CREATE TABLE zero (customer VARCHAR(9), invoice VARCHAR(9), created DATETIME, "
        "price DOUBLE)",
        "INSERT INTO zero VALUES ('a', '1', '2024-01-14 10:00:00', 5), "
        "('b', '2', '0000-00-00 00:00:00', 7), ('c', '3', NULL, 2)",
    )
    assert _fetch(maria, "SELECT CAST(created AS CHAR) FROM zero WHERE invoice = '2'") == [
        ("0000-00-00 00:00:00",)
    ]
    caplog.set_level("WARNING", logger="segmint")
    load = LoadConfig(table="zero", columns=columns)
    got = prepare(_url(maria), load, CleanConfig())
    assert got.source.details["zero_dates"] == {"created": 1}
    assert "1 value(s) of 'created' read as missing (zero dates" in caplog.text
    rules = {r["name"]: r["dropped"] for r in _audit(got)["rules"]}
    assert rules["unparseable_date"] == 2, rules  # the zero date and the NULL
    assert got.cleaned.lines.to_pandas()["customer_id"].tolist() == ["a"]
    assert dt.datetime(2024, 1, 14, 10) == got.cleaned.lines.to_pandas()["invoice_date"][0]


def test_mysql_mistakes_are_clear(maria, woo, cli, tmp_path, monkeypatch):
    """Unknown database, missing table (listing those there), several tables and no
    --table, wrong password (naming user and host, never the password), a server that
    does not answer (75, database_unavailable): one line and a fix, no traceback."""
    import socket

    url = _url(maria)

    def fails(code: int, error: str, says: str, *args) -> str:
        res = cli("inspect", *args, "--json")
        assert res.code == code, res.err
        assert json.loads(res.out)["error"] == error, res.out
        assert says in res.err, res.err
        assert "Traceback" not in res.err
        return res.err

    fails(2, "no_such_database", "'nope'", _url(maria, "nope"), "--table", "sales")
    err = fails(2, "no_such_table", "no such table 'order_line'", url, "--table", "order_line")
    assert "order_lines" in err and "orders" in err
    err = fails(2, "config_error", "tables; say which one to read with --table", url)
    assert "order_lines" in err
    # a database of one table is read without --table; database.name from another one
    _run(maria, "CREATE DATABASE IF NOT EXISTS solo", "GRANT SELECT ON solo.* TO 'reader'@'%'")
    elsewhere = JOIN.replace(" orders", " shop.orders").replace(" order_lines", " shop.order_lines")
    _run(maria, "DROP TABLE IF EXISTS sales", f"CREATE TABLE sales {elsewhere}", database="solo")
    res = cli("inspect", _url(maria, "solo"), "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["source"]["path"].endswith("/solo#sales")
    res = cli("inspect", url, "--table", "solo.sales", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["audit"]["kept_rows"] == 6
    wrong = _url(maria, password="not-the-s3cret")
    err = fails(2, "access_denied", "Access denied for user 'reader'@'127.0.0.1'", wrong,
                "--table", "orders")  # fmt: skip
    assert "not-the-s3cret" not in err and "MYSQL_PWD" in err
    monkeypatch.setenv("MYSQL_PWD", "wrong-env-s3cret")
    res = cli("inspect", url, "--table", "orders", "--json")
    assert res.code == 2 and "wrong-env-s3cret" not in res.out + res.err
    monkeypatch.setenv("MYSQL_PWD", maria["password"])
    with socket.socket() as sock:  # a port nothing listens on once closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    down = f"mysql://reader:s3cret-x@127.0.0.1:{port}/shop"
    err = fails(75, "database_unavailable", "Connection refused", down, "--table", "orders")
    assert "s3cret-x" not in err and "try again" in err

    # a server full of connections (root keeps one in reserve): 75 as well
    import pymysql

    held = []
    with root_connection(maria) as conn, conn.cursor() as cur:
        cur.execute("SET GLOBAL max_connections = 10")  # its least
        try:
            with pytest.raises(pymysql.OperationalError):  # fill the server up
                for _ in range(12):
                    login = {k: maria[k] for k in ("host", "port", "user", "password")}
                    held.append(pymysql.connect(**login))
            fails(75, "database_unavailable", "Too many connections", url, "--table", "orders")
        finally:
            cur.execute("SET GLOBAL max_connections = 20")
            for c in held:
                c.close()

    # the Python API raises the same errors
    with pytest.raises(InputError, match="no such table"):
        prepare(url, LoadConfig(table="nope"), CleanConfig())
    with pytest.raises(EnvironmentFailure):
        prepare(down, LoadConfig(table="orders"), CleanConfig())
    with pytest.raises(ConfigError, match="not both"):
        prepare(url, LoadConfig(table="orders", query=JOIN), CleanConfig())


def test_a_copy_shows_its_progress_on_a_terminal(maria, online_retail):
    """Copying a table of 70,000 lines (two batches) shows on the terminal the rows
    copied so far of about how many the server's statistics say, and the rate; results
    go to stdout untouched; --quiet shows none of it. A query's copy has no total. The
    Python API prints nothing: it calls the progress callback."""
    from conftest import cli_on_terminal
    from segmint.mysql import read_mysql

    frame = pd.read_csv(
        online_retail, nrows=70_000, dtype={"InvoiceNo": str, "StockCode": str, "CustomerID": str}
    )
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"], format="ISO8601")
    _retail_table(maria, frame, "retail_70k")
    _run(maria, "ANALYZE TABLE retail_70k")  # fresh statistics: the estimate of its rows
    url = _url(maria)
    shown = cli_on_terminal("inspect", url, "--table", "retail_70k")
    assert shown.code == 0, shown.err
    assert re.search(
        rf"copying {re.escape(url)}#retail_70k: 65,536 of about [\d,]+ rows \(\d+%\), "
        r"[\d,]+ rows/s",
        shown.err,
    ), shown.err
    assert "copying" not in shown.out and "kept" in shown.out.lower()
    quiet = cli_on_terminal("inspect", url, "--table", "retail_70k", "--quiet")
    assert quiet.code == 0 and "copying" not in quiet.err + quiet.out

    said: list[str] = []
    source = read_mysql(url, query="SELECT * FROM retail_70k", progress=said.append)
    assert source.count() == 70_000
    assert re.fullmatch(
        rf"copying {re.escape(url)} \(query\): 65,536 rows so far, [\d,]+ rows/s", said[0]
    )


@pytest.fixture(scope="module")
def maria_tls(maria, tmp_path_factory) -> dict:
    """A second MariaDB server, with TLS on: a certificate for the name ``localhost``
    signed by a test CA (``info["tls"]``: ``ca``, ``other_ca``, ...), and a table
    ``sales`` of six lines."""
    import shutil

    if shutil.which("openssl") is None:
        _unavailable("the openssl program is not installed (it makes the test certificates)")
    files = tls_files(tmp_path_factory.mktemp("tls"))
    with server(tls=files) as info:
        _retail_table(info, retail_frame(), "sales")
        yield {**info, "tls": files}


def _tls_url(info: dict, query: str, host: str = "localhost") -> str:
    return f"mysql://{info['user']}:{info['password']}@{host}:{info['port']}/shop?{query}"


def test_tls_verify_identity_reads_an_encrypted_session(maria_tls, cli):
    """ssl_mode=VERIFY_IDENTITY with the server's CA reads the table through the CLI,
    and the session those URL options make really is encrypted (Ssl_cipher); without
    a mode a CA means VERIFY_IDENTITY, and VERIFY_CA by address checks the CA only."""
    import pymysql

    from segmint.mysql import _connect_args

    ca = maria_tls["tls"]["ca"]
    for query, host in (
        (f"ssl_mode=VERIFY_IDENTITY&ssl_ca={ca}", "localhost"),
        (f"ssl-mode=verify_ca&ssl-ca={ca}", "127.0.0.1"),
        (f"ssl_ca={ca}", "localhost"),
        ("sslmode=REQUIRED", "127.0.0.1"),
    ):
        url = _tls_url(maria_tls, query, host)
        res = cli("inspect", url, "--table", "sales", "--json")
        assert res.code == 0, res.err
        assert json.loads(res.out)["audit"]["kept_rows"] == 6
        args, mode = _connect_args(url)
        with pymysql.connect(**args) as conn, conn.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            assert cur.fetchall()[0][1], query  # a cipher: the session is encrypted
    assert mode == "REQUIRED"
    args, mode = _connect_args(_tls_url(maria_tls, f"ssl_ca={ca}"))
    assert mode == "VERIFY_IDENTITY" and args["ssl"].check_hostname
    args, mode = _connect_args(_tls_url(maria_tls, "ssl_mode=DISABLED"))
    with pymysql.connect(**args) as conn, conn.cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        assert not cur.fetchall()[0][1]  # DISABLED: plain text, although the server has TLS


def test_tls_mistakes_are_clear(maria, maria_tls, cli, tmp_path):
    """A CA that did not sign the server's certificate, an address the certificate is
    not for, a missing or non-PEM CA file, an unknown mode, and REQUIRED against a
    server without TLS: one line naming the option (and file), exit 2, no traceback."""
    tls = maria_tls["tls"]

    def fails(error: str, says: str, url: str) -> str:
        res = cli("inspect", url, "--table", "sales", "--json")
        assert res.code == 2, res.err
        assert json.loads(res.out)["error"] == error, res.out
        assert says in res.err, res.err
        assert "Traceback" not in res.err and maria_tls["password"] not in res.err
        return res.err

    err = fails(
        "tls_error",
        "the server's certificate was refused (ssl_mode=VERIFY_IDENTITY)",
        _tls_url(maria_tls, f"ssl_mode=VERIFY_IDENTITY&ssl_ca={tls['other_ca']}"),
    )
    assert "ssl_ca" in err
    fails(
        "tls_error",
        "certificate is not valid for '127.0.0.1'",
        _tls_url(maria_tls, f"ssl_mode=VERIFY_IDENTITY&ssl_ca={tls['ca']}", "127.0.0.1"),
    )
    missing = tmp_path / "rds-ca.pem"
    fails(
        "config_error", f"ssl_ca={missing}: no such file", _tls_url(maria_tls, f"ssl_ca={missing}")
    )
    fails(
        "config_error",
        f"ssl_ca={tls['key']}: is not a PEM certificate file",
        _tls_url(maria_tls, f"ssl_ca={tls['key']}"),
    )
    fails("config_error", "unknown ssl_mode=SOMETIMES", _tls_url(maria_tls, "ssl_mode=sometimes"))
    fails(
        "config_error", "give its file with ssl_ca=PATH", _tls_url(maria_tls, "ssl_mode=VERIFY_CA")
    )
    plain = _url(maria, password=maria["password"]) + "?ssl_mode=REQUIRED"
    fails("tls_error", "the server does not offer TLS, and ssl_mode=REQUIRED requires it", plain)
