"""MySQL and MariaDB databases: a table, view or ``SELECT`` copied once into Parquet.

Read with PyMySQL (pure Python, nothing to build) in one read-only transaction with a
consistent snapshot (``START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY``): the
server refuses anything that would write, and the rows are one snapshot. An unbuffered
cursor streams the rows in batches into a Parquet copy in the engine's spill folder, so
memory stays bounded for millions of lines; the usual DuckDB path (mapping, type checks,
cleaning, features) then reads the copy, as for an SQLite database.

Column types are mapped deliberately: integers -> ``BIGINT`` (``BIGINT UNSIGNED``, whose
values may pass the signed range, -> text with every digit), ``DECIMAL`` -> decimal (as
PostgreSQL's ``numeric``), ``FLOAT``/``DOUBLE`` -> double, ``DATE``/``DATETIME`` -> a
timestamp without zone, ``TIMESTAMP`` -> an instant in UTC (the session's ``time_zone``
is ``+00:00``), which ``--timezone`` converts like PostgreSQL's ``timestamptz``; zero
dates (``0000-00-00``) are read as missing and counted; everything else as text (utf8mb4)
or bytes.

TLS is set in the URL's query as the ``mysql`` client's options (``ssl_mode``,
``ssl_ca``, ``ssl_cert``, ``ssl_key``), made into an :class:`ssl.SSLContext` for PyMySQL.
The password comes from the URL or, as for the ``mysql`` client, the ``MYSQL_PWD``
environment variable; it never appears in a message or a log (see
:func:`segmint.engines.mask_url`).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import ibis
import pyarrow as pa

from segmint.errors import ConfigError, EnvironmentFailure, InputError
from segmint.sqlite import _CopyProgress, check_copied_columns, only_table

__all__ = ["MYSQL_SCHEMES", "is_mysql_url", "read_mysql"]

log = logging.getLogger(__name__)

#: URL schemes read as a MySQL or MariaDB database (SQLAlchemy's spellings too).
MYSQL_SCHEMES = ("mysql", "mariadb", "mysql+pymysql", "mariadb+pymysql")
#: Rows fetched and written to the Parquet copy at a time (bounds the memory used).
BATCH_ROWS = 65_536
#: Seconds to wait for the server to accept the connection.
CONNECT_TIMEOUT = 10

#: Server and client error numbers of failures the same command may survive when retried:
#: too many connections, server shutting down, lock wait timeout, deadlock, query
#: interrupted, cannot connect (socket, TCP, unknown host), server gone away, lost
#: connection.
_RETRYABLE = frozenset({1040, 1053, 1077, 1205, 1213, 1317, 2002, 2003, 2005, 2006, 2013, 2055})
_ACCESS_DENIED = 1045
_DB_ACCESS_DENIED = 1044
_BAD_DB = 1049
_PRIVILEGE = frozenset({1142, 1143, 1227, 1370})
_READ_ONLY = frozenset({1792, 1290})
_SYNTAX = 1064
_SSL_CONNECTION_ERROR = 2026


def is_mysql_url(value: object) -> bool:
    """Whether ``value`` is a ``mysql://`` (``mariadb://``, ``mysql+pymysql://``) URL."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in MYSQL_SCHEMES


def _mask(url: str) -> str:
    from segmint.engines import mask_url

    return mask_url(url)


def _connect_args(url: str) -> tuple[dict[str, Any], str]:
    """PyMySQL's connection arguments from ``mysql://USER[:PASSWORD]@HOST[:PORT]/DB``
    (``?unix_socket=PATH`` for a socket; ``ssl_mode``, ``ssl_ca``, ``ssl_cert``,
    ``ssl_key`` for TLS), and the TLS mode; the password from the URL or ``MYSQL_PWD``."""
    from segmint.engines import check_url_userinfo

    shown = _mask(url)
    check_url_userinfo(url)
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise ConfigError(
            f"{shown}: is not a valid MySQL URL (the host or port cannot be read)",
            hint="use mysql://USER@HOST[:PORT]/DATABASE, e.g. mysql://reader@db.shop.local/shop",
        ) from None
    database = unquote(parts.path.lstrip("/"))
    if not database or "/" in database:
        raise ConfigError(
            f"{shown}: name the database after the host",
            hint="use mysql://USER@HOST[:PORT]/DATABASE, e.g. mysql://reader@db.shop.local/shop",
        )
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    unknown = sorted(set(options) - {"unix_socket", "password", *_TLS_OPTIONS, *_MODE_OPTIONS})
    if unknown:
        raise ConfigError(
            f"{shown}: unknown URL option(s) {', '.join(unknown)}",
            hint="the URL may have ?unix_socket=/path/to/mysqld.sock and the TLS options "
            "ssl_mode=DISABLED|PREFERRED|REQUIRED|VERIFY_CA|VERIFY_IDENTITY, ssl_ca=FILE, "
            "ssl_cert=FILE, ssl_key=FILE",
        )
    password = parts.password
    if password is not None:
        password = unquote(password)
    else:
        password = options.get("password", os.environ.get("MYSQL_PWD"))
    args: dict[str, Any] = {
        "host": parts.hostname or "localhost",
        "port": port or 3306,
        "user": unquote(parts.username) if parts.username else _login_name(),
        "password": password or "",
        "database": database,
        "charset": "utf8mb4",
        "connect_timeout": CONNECT_TIMEOUT,
        "autocommit": True,
        "local_infile": False,
    }
    if "unix_socket" in options:
        args["unix_socket"] = options["unix_socket"]
    mode, context = _tls(options, shown)
    if mode == "DISABLED":
        args["ssl_disabled"] = True
    elif context is not None:
        args["ssl"] = context
    return args, mode


#: The TLS files a URL may name (as the mysql client's --ssl-ca, --ssl-cert, --ssl-key;
#: ``ssl-ca`` is read as ``ssl_ca``).
_TLS_OPTIONS = ("ssl_ca", "ssl_cert", "ssl_key", "ssl-ca", "ssl-cert", "ssl-key")
#: The spellings of the TLS mode (the mysql client's --ssl-mode, libpq's sslmode).
_MODE_OPTIONS = ("ssl_mode", "ssl-mode", "sslmode")
#: The modes, weakest first; from REQUIRED on the session must be encrypted.
TLS_MODES = ("DISABLED", "PREFERRED", "REQUIRED", "VERIFY_CA", "VERIFY_IDENTITY")


def _tls(options: dict[str, str], shown: str) -> tuple[str, Any]:
    """The TLS mode the URL asks for and the :class:`ssl.SSLContext` that makes it
    (None: PyMySQL's default, which encrypts when the server offers it, unchecked).

    Without ``ssl_mode``, a CA file means VERIFY_IDENTITY (a CA is given to check the
    server with), a client certificate alone REQUIRED, nothing PREFERRED, as the
    ``mysql`` client does."""
    import ssl

    files = {k.replace("-", "_"): v for k, v in options.items() if k in _TLS_OPTIONS}
    modes = {options[k] for k in _MODE_OPTIONS if k in options}
    if len(modes) > 1:
        raise ConfigError(
            f"{shown}: the TLS mode is given twice, differently ({', '.join(sorted(modes))})",
            hint="give one ssl_mode=...",
        )
    given = modes.pop().strip().upper().replace("-", "_") if modes else None
    if given is not None and given not in TLS_MODES:
        raise ConfigError(
            f"{shown}: unknown ssl_mode={given}",
            hint=f"use one of {', '.join(TLS_MODES)} (as the mysql client's --ssl-mode)",
        )
    mode = given or (
        "VERIFY_IDENTITY" if "ssl_ca" in files else "REQUIRED" if files else "PREFERRED"
    )
    if files and mode in ("DISABLED", "PREFERRED"):
        raise ConfigError(
            f"{shown}: ssl_mode={mode} does not use {', '.join(sorted(files))}",
            hint="use ssl_mode=VERIFY_IDENTITY (check the server's certificate and name "
            "with ssl_ca), VERIFY_CA or REQUIRED, or leave the files out",
        )
    if mode in ("VERIFY_CA", "VERIFY_IDENTITY") and "ssl_ca" not in files:
        raise ConfigError(
            f"{shown}: ssl_mode={mode} checks the server's certificate against a CA: "
            "give its file with ssl_ca=PATH",
            hint="the provider's CA bundle, e.g. ?ssl_mode=VERIFY_IDENTITY&ssl_ca="
            "/etc/ssl/rds-global-bundle.pem",
        )
    if "ssl_key" in files and "ssl_cert" not in files:
        raise ConfigError(
            f"{shown}: ssl_key is given without ssl_cert (the client certificate it goes with)",
            hint="give both: ?ssl_cert=client-cert.pem&ssl_key=client-key.pem",
        )
    for option, path in sorted(files.items()):
        if not os.path.isfile(path) or not os.access(path, os.R_OK):
            what = "cannot be read" if os.path.exists(path) else "no such file"
            raise ConfigError(
                f"{shown}: {option}={path}: {what}",
                hint=f"check the path of {option} (relative paths start from the current "
                f"folder: {Path.cwd()})",
            )
    if mode in ("DISABLED", "PREFERRED"):
        return mode, None
    if mode == "REQUIRED" and "ssl_ca" in files:
        log.warning(
            "%s: ssl_mode=REQUIRED encrypts but does not check the server's certificate "
            "against ssl_ca; ssl_mode=VERIFY_IDENTITY (or VERIFY_CA) does",
            shown,
        )
    context = ssl.create_default_context()
    if mode == "REQUIRED":
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        context.check_hostname = mode == "VERIFY_IDENTITY"
        context.verify_mode = ssl.CERT_REQUIRED
        # MariaDB's and MySQL's generated certificates fail Python 3.13's strict checks
        context.verify_flags &= ~getattr(ssl, "VERIFY_X509_STRICT", 0)
        try:
            context.load_verify_locations(cafile=files["ssl_ca"])
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"{shown}: ssl_ca={files['ssl_ca']}: is not a PEM certificate file "
                f"({_ssl_reason(exc)})",
                hint="give the CA certificate in PEM form (-----BEGIN CERTIFICATE-----)",
            ) from None
    if "ssl_cert" in files:
        try:
            context.load_cert_chain(files["ssl_cert"], keyfile=files.get("ssl_key"))
        except (ssl.SSLError, ValueError) as exc:
            raise ConfigError(
                f"{shown}: ssl_cert={files['ssl_cert']}"
                f"{', ssl_key=' + files['ssl_key'] if 'ssl_key' in files else ''}: not a "
                f"PEM certificate and its private key ({_ssl_reason(exc)})",
                hint="give the client certificate and its key in PEM form (without a "
                "passphrase); the key goes in ssl_key unless the certificate file has it",
            ) from None
    return mode, context


def _ssl_reason(exc: BaseException) -> str:
    """The readable part of an :mod:`ssl` error (its verify message or reason)."""
    return str(getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or exc).strip()


def _tls_failure(exc: BaseException, url: str, shown: str, mode: str) -> ConfigError | None:
    """A failed TLS handshake or a server without TLS, as a configuration mistake."""
    import ssl

    original = getattr(exc, "original_exception", None) or exc.__cause__ or exc.__context__
    if isinstance(original, ssl.SSLCertVerificationError):
        return ConfigError(
            f"{shown}: the server's certificate was refused (ssl_mode={mode}): "
            f"{_ssl_reason(original)}",
            hint="give with ssl_ca the CA that signed the server's certificate (the "
            "provider's CA bundle) and the host name the certificate was made for; "
            "ssl_mode=VERIFY_CA checks the CA but not the name",
            code="tls_error",
        )
    if isinstance(original, ssl.SSLError):
        return ConfigError(
            f"{shown}: the TLS handshake failed (ssl_mode={mode}): {_ssl_reason(original)}",
            hint="check that the server has TLS on and the ssl_cert/ssl_key it expects, "
            "or ask the DBA which TLS versions and certificates it accepts",
            code="tls_error",
        )
    if _error_number(exc) == _SSL_CONNECTION_ERROR:
        return _no_tls(shown, mode, _error_text(exc, url))
    return None


def _no_tls(shown: str, mode: str, reason: str = "") -> ConfigError:
    return ConfigError(
        f"{shown}: the server does not offer TLS, and ssl_mode={mode} requires it"
        f"{' (' + reason + ')' if reason else ''}; nothing was read",
        hint="ask the DBA to turn TLS on (ssl_cert and ssl_key in the server's "
        "configuration), or, on a network you trust, use ssl_mode=PREFERRED",
        code="tls_error",
    )


def _login_name() -> str:
    """The user the mysql client would log in as when the URL names none."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name (a container without an /etc/passwd entry)
        return ""


def _error_number(exc: BaseException) -> int | None:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def _error_text(exc: BaseException, url: str) -> str:
    from segmint.engines import mask_passwords

    args = getattr(exc, "args", ())
    text = str(args[1]) if len(args) > 1 else str(exc) or type(exc).__name__
    return mask_passwords(text.strip().splitlines()[0] if text.strip() else text, url)[:500]


@contextlib.contextmanager
def _errors(url: str, display: str, what: str = "") -> Iterator[None]:
    """Turn PyMySQL's errors into segmint's, naming the (masked) database."""
    import pymysql

    try:
        yield
    except pymysql.MySQLError as exc:
        number = _error_number(exc)
        text = _error_text(exc, url)
        where = f"{display}{': ' + what if what else ''}"
        if number in _RETRYABLE or (number is None and isinstance(exc, pymysql.OperationalError)):
            raise EnvironmentFailure(
                f"{where}: {text}",
                hint="the server did not answer, is overloaded or restarting, or dropped the "
                "connection: check that it runs and this machine reaches it, and try again "
                "later (a scheduler can retry on exit status 75)",
                code="database_unavailable",
            ) from None
        if number == _ACCESS_DENIED:
            raise InputError(
                f"{where}: {text}",
                hint="check the user and host in the URL and the password (in the URL or "
                "the MYSQL_PWD environment variable); the DBA can check the user's grants",
                code="access_denied",
            ) from None
        if number in (_BAD_DB, _DB_ACCESS_DENIED):
            raise InputError(
                f"{where}: {text}",
                hint="check the database name after the host in the URL (SHOW DATABASES "
                "in the mysql client lists those the user may read)",
                code="no_such_database",
            ) from None
        if number in _PRIVILEGE:
            raise InputError(
                f"{where}: {text}",
                hint="the user lacks a privilege: ask the DBA to GRANT SELECT on the tables read",
                code="permission_denied",
            ) from None
        if number in _READ_ONLY:
            raise ConfigError(
                f"{where}: --query may only read (one SELECT); the server refused this one "
                f"({text}), and nothing was changed",
                hint="give only the SELECT that reads the lines, e.g. "
                "--query 'SELECT * FROM order_lines WHERE shop_id = 3'",
            ) from None
        if what == "query":
            raise InputError(
                f"{where}: {text}",
                hint="check the SQL given with --query (try it in the mysql client first)",
                code="bad_query",
            ) from None
        raise InputError(f"{where}: {text}", code="database_error") from None


def _quote(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def _tables(cur: Any, schema: str | None) -> list[str]:
    """The tables and views of ``schema`` (default: the URL's database)."""
    if schema is None:
        cur.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = DATABASE() ORDER BY table_name"
        )
    else:
        cur.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = %s ORDER BY table_name",
            (schema,),
        )
    return [r[0] for r in cur.fetchall()]


def _find_table(cur: Any, table: str, display: str) -> tuple[str, str, str]:
    """``table`` (``name`` or ``database.name``) as the server spells it: quoted, and
    its database (empty: the URL's) and name."""
    schema, _, name = table.rpartition(".") if "." in table else ("", "", table)
    names = _tables(cur, schema or None)
    found = [n for n in names if n == name] or [n for n in names if n.lower() == name.lower()]
    if len(found) != 1:
        raise InputError(
            f"{display}: no such table {table!r}",
            hint=f"tables there: {', '.join(names[:20]) or 'none'}",
            code="no_such_table",
        )
    quoted = f"{_quote(schema)}.{_quote(found[0])}" if schema else _quote(found[0])
    return quoted, schema, found[0]


def _row_estimate(cur: Any, schema: str, name: str) -> int | None:
    """The server's estimate of a base table's rows (``information_schema.tables.
    table_rows``: InnoDB's statistics, read without a scan; often off by some percent,
    so the progress says "about"); None for a view or without statistics."""
    cur.execute(
        "SELECT table_rows FROM information_schema.tables WHERE table_schema = "
        "COALESCE(NULLIF(%s, ''), DATABASE()) AND table_name = %s "
        "AND table_type = 'BASE TABLE'",
        (schema, name),
    )
    found = cur.fetchall()
    return int(found[0][0]) if found and found[0][0] else None


#: ``SELECT ... INTO OUTFILE | DUMPFILE | @var`` (also inside a literal, rare enough).
_WRITES_FILE = re.compile(r"\bINTO\s+(?:OUTFILE|DUMPFILE|@)", re.IGNORECASE)


def _statement_body(query: str) -> str:
    from segmint.sqlite import _statement_body as body

    return body(query)


#: A value of a date column that is no date (MySQL's zero dates ``0000-00-00``, or
#: ``2011-00-00`` where the server allows it): read as missing, and counted.
class _NoDate:
    __slots__ = ()


_NO_DATE = _NoDate()


def _to_datetime(text: str) -> dt.datetime | _NoDate:
    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        return _NO_DATE


def _converters() -> dict[int, Any]:
    """PyMySQL's converters, with dates parsed by :func:`_to_datetime` (PyMySQL returns
    a zero date's text, which no Arrow timestamp takes) and ``TIME`` kept as text."""
    from pymysql.constants import FIELD_TYPE
    from pymysql.converters import conversions

    conv = dict(conversions)
    for code in (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME, FIELD_TYPE.TIMESTAMP, FIELD_TYPE.NEWDATE):
        conv[code] = _to_datetime
    conv[FIELD_TYPE.TIME] = str
    return conv


def _kinds(fields: list[Any]) -> list[tuple[str, pa.DataType]]:
    """How each column of the result is read: ``(kind, Arrow type)``."""
    from pymysql.constants import FIELD_TYPE, FLAG

    ints = {FIELD_TYPE.TINY, FIELD_TYPE.SHORT, FIELD_TYPE.INT24, FIELD_TYPE.LONG}
    ints.add(FIELD_TYPE.YEAR)
    blobs = {FIELD_TYPE.TINY_BLOB, FIELD_TYPE.MEDIUM_BLOB, FIELD_TYPE.LONG_BLOB}
    blobs |= {FIELD_TYPE.BLOB, FIELD_TYPE.VAR_STRING, FIELD_TYPE.STRING, FIELD_TYPE.VARCHAR}
    kinds: list[tuple[str, pa.DataType]] = []
    for f in fields:
        t = f.type_code
        if t in ints or (t == FIELD_TYPE.LONGLONG and not f.flags & FLAG.UNSIGNED):
            kinds.append(("int", pa.int64()))
        elif t == FIELD_TYPE.LONGLONG:
            kinds.append(("text", pa.string()))  # BIGINT UNSIGNED: up to 2**64 - 1
        elif t in (FIELD_TYPE.FLOAT, FIELD_TYPE.DOUBLE):
            kinds.append(("float", pa.float64()))
        elif t in (FIELD_TYPE.DECIMAL, FIELD_TYPE.NEWDECIMAL):
            scale = f.scale or 0
            # the display length counts the sign and the point
            digits = f.length - (1 if scale else 0) - (0 if f.flags & FLAG.UNSIGNED else 1)
            if max(digits, scale) <= 38:
                kinds.append(("decimal", pa.decimal128(38, scale)))
            else:
                kinds.append(("text", pa.string()))  # beyond Arrow's 38 digits
        elif t == FIELD_TYPE.TIMESTAMP:
            kinds.append(("date", pa.timestamp("us", tz="UTC")))
        elif t in (FIELD_TYPE.DATE, FIELD_TYPE.DATETIME, FIELD_TYPE.NEWDATE):
            kinds.append(("date", pa.timestamp("us")))
        elif t in blobs and f.charsetnr == 63 or t in (FIELD_TYPE.GEOMETRY, FIELD_TYPE.BIT):
            kinds.append(("bytes", pa.binary()))
        else:  # VARCHAR, TEXT, ENUM, SET, JSON, TIME: text as the server writes it
            kinds.append(("text", pa.string()))
    return kinds


def read_mysql(
    url: str,
    *,
    table: str | None = None,
    query: str | None = None,
    con: ibis.BaseBackend | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """A table, view or the result of a ``SELECT`` in MySQL or MariaDB, as a Source.

    The rows are copied once, in batches, into a Parquet file in the engine's spill
    folder (removed with the engine); every later stage scans that copy, like a large
    CSV file's. ``_row`` numbers the rows in the order the server returns them.

    Parameters
    ----------
    url : str
        ``mysql://USER[:PASSWORD]@HOST[:PORT]/DATABASE`` (or ``mariadb://``,
        ``mysql+pymysql://``); without a password in it, ``MYSQL_PWD`` is used.
    table : str, optional
        The table or view to read (``name`` or ``database.name``; another case is
        found when only one name matches).
    query : str, optional
        One ``SELECT`` to read instead; the server refuses anything that writes (the
        transaction is read-only).
    con : ibis backend, optional
        The DuckDB backend to register the copy in; default a new one.
    progress : callable, optional
        Called with a short text as the copy goes on (rows copied so far, the rate and,
        for a table, about how many there are; at most once a second); nothing is
        printed.

    Returns
    -------
    Source

    Raises
    ------
    ConfigError
        Both ``table`` and ``query`` given; no ``table`` for a database of several
        tables; a query that is not one read-only statement; a malformed URL; a TLS
        option or file that is wrong, a server certificate refused, a server without
        TLS when the URL requires it.
    InputError
        Wrong user or password, unknown database, missing table, a query the server
        cannot run, no rows; :class:`~segmint.errors.EnvironmentFailure` (exit status
        75) when the server cannot be reached, is full or drops the connection.
    """
    import pymysql
    import pymysql.cursors

    from segmint.io import _ROW_COLUMN, _finish_view, _private_folder, connect

    shown = _mask(url)
    if table is not None and query is not None:
        raise ConfigError(
            f"{shown}: say what to read with one of --table or --query, not both",
            hint="e.g. --table order_lines or --query 'SELECT * FROM order_lines WHERE ...'",
        )
    conn = _connect(url, cursorclass=pymysql.cursors.SSCursor, conv=_converters())
    estimate: int | None = None
    try:
        with _errors(url, shown):
            cur = conn.cursor()
            # TIMESTAMP values in UTC, marked as instants; one read-only snapshot
            cur.execute("SET SESSION time_zone = '+00:00'")
            cur.execute("SET SESSION TRANSACTION READ ONLY")
            cur.execute("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            if query is None:
                if table is None:
                    table = only_table(_tables(cur, None), shown)
                quoted, schema, name = _find_table(cur, table, shown)
                estimate = _row_estimate(cur, schema, name)
                shown = f"{shown}#{table}"
        if query is None:
            with _errors(url, shown):
                cur.execute(f"SELECT * FROM {quoted}")
        else:
            shown = f"{shown} (query)"
            body = _statement_body(query)
            if _WRITES_FILE.search(body):
                # a read-only transaction still lets SELECT ... INTO OUTFILE write a file
                # on the server (for a user with the FILE privilege): refused before it runs
                raise ConfigError(
                    f"{shown}: --query may only read (one SELECT); INTO OUTFILE, INTO "
                    "DUMPFILE and INTO @variable write, and nothing was run",
                    hint="leave the INTO clause out: segmint reads the rows the SELECT returns",
                )
            try:
                with _errors(url, shown, "query"):
                    cur.execute(body)
            except InputError as err:
                if err.code != "bad_query" or ";" not in body:
                    raise
                raise ConfigError(
                    f"{shown}: --query must be one SELECT statement, and this one has more "
                    f"after a ';' or a syntax error ({err.message.split(': ', 2)[-1]}); "
                    "nothing was run",
                    hint="give only the SELECT that reads the lines; run other statements "
                    "in the mysql client",
                ) from None
        fields = list(cur._result.fields) if cur._result is not None else []
        columns = [f.name for f in fields]
        check_copied_columns(columns, shown, "SELECT o.id AS order_id, ...")
        kinds = _kinds(fields)
        con = con or connect()
        folder = _private_folder(con, "segmint-copy-", shown)
        target = folder / "rows.parquet"
        try:
            report = _CopyProgress(progress, shown, estimate, approx=True)
            rows, no_dates = _copy(
                cur, columns, kinds, target, url, shown, query is not None, report
            )
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        _close(conn)
    if rows == 0:
        raise InputError(f"{shown}: has no rows", code="no_rows")
    if no_dates:
        log.warning(
            "%s: %s read as missing (zero dates such as 0000-00-00; the cleaning counts "
            "the lines without a date)",
            shown,
            ", ".join(f"{n} value(s) of {c!r}" for c, n in no_dates.items()),
        )
    log.info("copied %d rows of %s into %s", rows, shown, target)
    details: dict[str, Any] = {
        "table": table,
        "query": query,
        "copy": "parquet",
        "zero_dates": no_dates,
    }
    sql = f"read_parquet('{str(target).replace(chr(39), chr(39) * 2)}')"
    source = _finish_view(con, sql, shown, "mysql", details, row_column=_ROW_COLUMN, columnar=True)
    return source


def _connect(url: str, **extra: Any) -> Any:
    """A PyMySQL connection to ``url`` with its TLS options (``extra``: more arguments
    of :func:`pymysql.connect`); from ``ssl_mode=REQUIRED`` on, a session that is not
    encrypted is refused (older PyMySQL fell back to plain text silently).

    Raises
    ------
    ConfigError
        A bad URL or TLS option, a certificate refused, a server without TLS.
    InputError
        Wrong user or password, unknown database (EnvironmentFailure: unreachable).
    """
    import pymysql

    shown = _mask(url)
    args, mode = _connect_args(url)
    try:
        with _errors(url, shown, "cannot connect"):
            conn = pymysql.connect(**args, **extra)
    except InputError as err:  # EnvironmentFailure too: a handshake fails as "cannot connect"
        failure = _tls_failure(err.__context__ or err, url, shown, mode)
        if failure is not None:
            raise failure from None
        raise
    if mode in TLS_MODES[2:]:
        with _errors(url, shown), conn.cursor(pymysql.cursors.Cursor) as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
            found = cur.fetchall()
        if not (found and found[0][1]):
            _close(conn)
            raise _no_tls(shown, mode)
    return conn


def _close(conn: Any) -> None:
    """Close ``conn`` without reading the rest of an unfinished result (an error before
    or during the copy): PyMySQL would read every remaining row first, or warn later."""
    result = getattr(conn, "_result", None)
    if result is not None and getattr(result, "unbuffered_active", False):
        result.unbuffered_active = False
        with contextlib.suppress(Exception):
            conn._force_close()
        return
    with contextlib.suppress(Exception):
        conn.close()


def _copy(
    cur: Any,
    columns: list[str],
    kinds: list[tuple[str, pa.DataType]],
    target: Path,
    url: str,
    display: str,
    is_query: bool,
    report: Callable[[int], None] = lambda _done: None,
) -> tuple[int, dict[str, int]]:
    """Stream the cursor's rows into ``target`` (Parquet, zstd), with a 0-based row
    number column, calling ``report(rows so far)`` after each batch; return the number
    of rows and, per date column, how many of its values were no date (read as
    missing)."""
    import pyarrow.parquet as pq

    from segmint.io import _ROW_COLUMN

    schema = pa.schema(
        [pa.field(c, k[1]) for c, k in zip(columns, kinds, strict=True)]
        + [pa.field(_ROW_COLUMN, pa.int64())]
    )
    done = 0
    no_dates: dict[str, int] = {}
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        while True:
            with _errors(url, display, "query" if is_query else ""):
                batch = cur.fetchmany(BATCH_ROWS)
            if not batch:
                break
            arrays = []
            for name, values, (kind, arrow) in zip(
                columns, zip(*batch, strict=True), kinds, strict=True
            ):
                if kind == "date":
                    bad = sum(1 for v in values if v is _NO_DATE)
                    if bad:
                        no_dates[name] = no_dates.get(name, 0) + bad
                        values = tuple(None if v is _NO_DATE else v for v in values)
                elif kind == "text":
                    values = tuple(v if v is None or isinstance(v, str) else str(v) for v in values)
                elif kind == "bytes":
                    values = tuple(v.encode() if isinstance(v, str) else v for v in values)
                arrays.append(pa.array(values, arrow))
            arrays.append(pa.array(range(done, done + len(batch)), pa.int64()))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            done += len(batch)
            report(done)
    return done, no_dates
