"""Where the data lives: PostgreSQL tables read in place and Spark, besides DuckDB.

segmint's cleaning rules and customer features are ibis expressions, so the engine that
holds the data runs them: DuckDB for files (the default, :func:`segmint.io.read_source`),
PostgreSQL for a table or query in a database (cleaning and features run as SQL inside
the server; only the customer-level table comes back), Spark for a data lake (the same
expressions through ibis' pyspark backend). This module opens those engines as a
:class:`segmint.io.Source`, so everything after loading does not care which one it got,
and writes segment assignments back to PostgreSQL.

Credentials come from the URL, the libpq environment (``PGPASSWORD``, ``PGUSER``, ...)
or a ``.pgpass`` file (``PGPASSFILE``); a password never appears in a message or log:
:func:`mask_url` hides it everywhere segmint names a database.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import os
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import ibis
import pandas as pd

from segmint.errors import ConfigError, EnvironmentFailure, InputError, SegmintWarning

__all__ = [
    "DATABASE_SCHEMES",
    "check_write_target",
    "is_database_url",
    "mask_passwords",
    "mask_url",
    "read_database",
    "read_spark",
    "spark_session",
    "write_assignments",
]

log = logging.getLogger(__name__)
_counter = itertools.count(1)

#: URL schemes read as a PostgreSQL database.
DATABASE_SCHEMES = ("postgresql", "postgres")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")


def is_database_url(value: object) -> bool:
    """Whether ``value`` is a ``postgresql://`` (or ``postgres://``) URL."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() in DATABASE_SCHEMES


def mask_url(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and logs): the one
    after the user name and a ``password=`` (or ``sslpassword=``) parameter, which
    libpq reads from the query too.

    >>> mask_url("postgresql://ana:s3cret@db.example.com:5432/shop")
    'postgresql://ana:***@db.example.com:5432/shop'
    >>> mask_url("postgresql://ana@db/shop?sslmode=require&password=s3cret")
    'postgresql://ana@db/shop?sslmode=require&password=***'
    """
    # the user information split by hand, up to the last "@" before the query: urlsplit
    # stops at the first "@" or "/", so a password holding one ("Sum@er", "w/rd") was
    # printed from there on; and its .port raised ValueError on a port that is not a
    # number, which made masking the URL in an error message a crash
    span = _userinfo(url)
    if span is not None:
        start, end = span
        info = url[start:end]
        if ":" in info:
            url = f"{url[:start]}{info.split(':', 1)[0]}:***{url[end:]}"
    head, q, query = url.partition("?")
    return head + q + _QUERY_PASSWORD.sub(r"\1***", query)


def _userinfo(url: str) -> tuple[int, int] | None:
    """Where the user information of ``url`` starts and ends (at the last ``@`` before
    the query), or None without one."""
    begin = url.find("://")
    if begin < 0:
        return None
    start = begin + 3
    stop = url.find("?", start)
    end = url.rfind("@", start, len(url) if stop < 0 else stop)
    return (start, end) if end >= 0 else None


def check_url_userinfo(url: str) -> None:
    """Refuse a URL whose password (or user name) holds ``@`` or ``/`` as it is.

    libpq and urlsplit end the user information at the first ``@`` (or the host at a
    ``/``), so ``postgresql://ana:Sum@er@db/shop`` tried the host ``er@db`` (a DNS
    failure, exit 75, retried by a scheduler for ever) with the rest of the password in
    its message. The user must write them percent-encoded.

    >>> check_url_userinfo("postgresql://ana:Sum%40er@db/shop")  # encoded: accepted
    """
    span = _userinfo(url)
    if span is None:
        return
    info = url[span[0] : span[1]]
    user, colon, rest = info.partition(":")
    slash = "/" in info and "@" not in urlsplit_netloc(url) and colon
    if "@" in info or (slash and not rest.split("/", 1)[0].isdigit()):
        raise ConfigError(
            f"{mask_url(url)}: the user name or password holds '@' or '/' as it is",
            hint="write them percent-encoded in the URL (@ as %40, / as %2F, : as %3A), or "
            "leave the password out of the URL and give it in PGPASSWORD (MYSQL_PWD for "
            "MySQL)",
        )


def urlsplit_netloc(url: str) -> str:
    """The host part urlsplit reads from ``url`` ("" when it cannot)."""
    try:
        return urlsplit(url).netloc
    except ValueError:
        return ""


_URL_PASSWORD = re.compile(r"(\w+://[^:/@\s]+:)[^@\s]+@")
#: A password given as a parameter (a URL's query, or a libpq connection string).
_QUERY_PASSWORD = re.compile(r"((?:^|[&?\s])(?:ssl)?password\s*=\s*)[^&\s]+", re.IGNORECASE)


def _url_secrets(url: str) -> list[str]:
    """The passwords written in ``url`` (after the user name, in its query)."""
    from urllib.parse import unquote

    found = []
    span = _userinfo(url)
    if span is not None and ":" in url[span[0] : span[1]]:
        found.append(url[span[0] : span[1]].split(":", 1)[1])
    query = url.partition("?")[2]
    found += [m.group(0).split("=", 1)[1] for m in _QUERY_PASSWORD.finditer(query)]
    return [v for s in found if s for v in {s, unquote(s)}]


def mask_passwords(text: str, url: str | None = None) -> str:
    """``text`` with the password of ``url`` and of any ``scheme://user:password@`` or
    ``password=...`` hidden (for messages that quote a driver's or an engine's error).

    >>> mask_passwords("cannot reach postgresql://ana:s3cret@db/shop", "postgresql://ana:s3cret@db/shop")
    'cannot reach postgresql://ana:***@db/shop'
    """
    for secret in _url_secrets(url) if url else []:
        text = text.replace(secret, "***")
    return _QUERY_PASSWORD.sub(r"\1***", _URL_PASSWORD.sub(r"\1***@", text))


def error_summary(exc: BaseException, url: str | None = None) -> str:
    """The first line of an engine's error, passwords hidden (a Py4J error from Spark
    gives the Java exception's message instead of "An error occurred while calling")."""
    java = getattr(exc, "java_exception", None)
    text = str(java.toString()) if java is not None else str(exc)
    first = (text.strip().splitlines() or [type(exc).__name__])[0]
    return mask_passwords(first, url)[:500]


def _need(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ConfigError(
            f"this needs the optional package {module!r}, which is not installed",
            hint=f"install it with: pip install 'segmint[{extra}]'",
            code="missing_extra",
        ) from None


@contextlib.contextmanager
def database_errors(url: str, what: str = "") -> Iterator[None]:
    """Turn driver errors into :class:`InputError` naming the (masked) database."""
    psycopg = _need("psycopg", "postgres")
    try:
        yield
    except psycopg.Error as exc:
        message = error_summary(exc, url)
        hint = "check the URL, that the server runs and accepts you, and the table name"
        if what == "query" and isinstance(exc, psycopg.ProgrammingError):
            # a typo in --query is not a matter of the URL or a table name
            hint = "check the SQL given with --query (try it in psql first)"
        code = "database_error"
        if _database_unavailable(exc):
            raise EnvironmentFailure(
                f"{mask_url(url)}{': ' + what if what else ''}: {message}",
                hint="the server did not answer, is overloaded or restarting, or dropped the "
                "connection: check that it runs and this machine reaches it, and try again "
                "later (a scheduler can retry on exit status 75)",
                code="database_unavailable",
            ) from None
        if isinstance(exc, psycopg.OperationalError):
            hint = (
                "check host, port, user and database in the URL; a password can come from "
                "the URL, PGPASSWORD or a .pgpass file"
            )
        elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
            # not a matter of the URL or the table name: the role lacks a grant
            hint = (
                "the role of the URL lacks a privilege: ask the DBA to GRANT USAGE on the "
                "schema and SELECT on the table read (SELECT, INSERT, UPDATE on the one "
                "--write-table writes)"
            )
            code = "permission_denied"
        raise InputError(
            f"{mask_url(url)}{': ' + what if what else ''}: {message}",
            hint=hint,
            code=code,
        ) from None


#: SQLSTATE classes and codes of failures the same command may survive when retried:
#: connection exceptions, insufficient resources (disk full, out of memory, too many
#: connections), operator intervention (shutdown, "cannot connect now"), serialization
#: failures and deadlocks.
_RETRYABLE_SQLSTATE = ("08", "53", "57P", "40001", "40P01")

#: What libpq and psycopg say (with no SQLSTATE) when the connection failed for a reason
#: that may pass: the network, the host's name (a DNS failure; a misspelt host lands
#: here too, and a retry costs little), or a server full, starting up, shutting down or
#: recovering. Compared in lower case.
_RETRYABLE_TEXT = (
    "connection refused",
    "timeout expired",
    "timed out",
    "no route to host",
    "network is unreachable",
    "connection reset",
    "server closed the connection unexpectedly",
    "could not receive data",
    "could not send data",
    "consuming input failed",
    "the connection is lost",
    "could not translate host name",
    "failed to resolve host",
    "temporary failure in name resolution",
    "too many clients",
    "remaining connection slots",
    "the database system is starting up",
    "the database system is shutting down",
    "the database system is in recovery mode",
    "the database system is not yet accepting connections",
    "the database system is not accepting connections",
)


def _database_unavailable(exc: Exception) -> bool:
    """Whether a driver error is the server's or the network's state rather than the
    URL's, the query's or the role's: an error with a retryable SQLSTATE, or a failed
    connection (no SQLSTATE) for a reason that may pass. A wrong password, user or
    database name, or an invalid option in the URL, stays a user mistake."""
    import psycopg

    state = getattr(exc, "sqlstate", None)
    if state:
        return state.startswith(_RETRYABLE_SQLSTATE)
    if not isinstance(exc, psycopg.OperationalError):
        return False
    text = str(exc).lower()
    return any(reason in text for reason in _RETRYABLE_TEXT)


def connect_database(url: str) -> ibis.BaseBackend:
    """An ibis PostgreSQL backend for ``url`` (libpq's environment and .pgpass apply)."""
    _need("psycopg", "postgres")
    scheme, sep, rest = url.partition("://")
    if scheme.lower() == "postgres":
        # by hand: urlsplit raised ValueError on a malformed host ("[::1" without its
        # "]"), an internal error; libpq reports such a URL (masked) like any other
        url = "postgresql" + sep + rest
    check_url_userinfo(url)
    with database_errors(url, "cannot connect"):
        import psycopg

        raw = psycopg.connect(url, autocommit=True)
        # timestamptz columns read as UTC, as DuckDB and Spark read them, whatever the
        # server's or PGTZ's zone (explicit rather than left to ibis' set-up)
        raw.execute("SET TIME ZONE 'UTC'")
        return ibis.postgres.from_connection(raw)


def read_database(url: str, *, table: str | None = None, query: str | None = None) -> Any:
    """A table (or the result of a ``SELECT``) in PostgreSQL, as a lazy segmint Source.

    Nothing is transferred here: cleaning and features later run inside the server.
    Every row gets ``_row`` (``row_number()`` in the table's physical order), used like a
    file's row number in the rejected-lines output.

    Raises
    ------
    ConfigError
        Neither or both of ``table`` and ``query`` given, or a malformed table name.
    InputError
        The server cannot be reached, the table does not exist, or it has no rows.
    """
    from segmint.io import Source

    if (table is None) == (query is None):
        raise ConfigError(
            f"{mask_url(url)}: say what to read with exactly one of --table or --query",
            hint="e.g. --table sales or --query 'SELECT * FROM sales WHERE ...'",
        )
    con = connect_database(url)
    display = f"{mask_url(url)}#{table}" if table else f"{mask_url(url)} (query)"
    _check_temp_tables(con, url, display)
    with database_errors(url, f"table {table}" if table else "query"):
        if table is not None:
            if not _IDENT.match(table):
                raise ConfigError(
                    f"--table {table!r} is not a table name",
                    hint="use name or schema.name (letters, digits, _); use --query for more",
                )
            schema, _, name = table.rpartition(".")
            t = _pg_table(con, name, schema or None)
            if t is None:
                names = con.list_tables(database=schema or None)
                close = ", ".join(sorted(names)[:10]) or "none"
                raise InputError(
                    f"{display}: no such table",
                    hint=f"tables there: {close}",
                    code="no_such_table",
                )
        else:
            # a temporary view of the query (gone with the connection); ibis' own
            # con.sql() cannot be used: with this sqlglot it emits a broken DROP VIEW
            view = f"segmint_query_{os.getpid()}_{next(_counter)}"
            # the extended protocol (binary=True) takes one statement: with the simple
            # one, "--query 'SELECT * FROM sales; DROP TABLE sales'" ran the DROP too
            import psycopg

            try:
                con.con.execute(
                    f"CREATE TEMPORARY VIEW {view} AS {query.strip().rstrip(';')}", binary=True
                )
            except (psycopg.errors.SyntaxError, psycopg.errors.FeatureNotSupported) as exc:
                first = query.strip().lstrip("(").split(None, 1)[0].lower() if query.strip() else ""
                if "data-modifying" in str(exc) or (
                    isinstance(exc, psycopg.errors.SyntaxError) and first in _WRITING_SQL
                ):
                    # as --query on SQLite and MySQL: a raw "syntax error at DELETE" read as
                    # a typo in the SQL, not as a refusal to write
                    raise ConfigError(
                        f"{display}: --query may only read (one SELECT); this one does more, "
                        "and nothing was run",
                        hint="give only the SELECT that reads the lines, e.g. "
                        "--query 'SELECT * FROM sales WHERE shop_id = 3'",
                    ) from None
                if "multiple commands" not in str(exc):
                    raise
                raise ConfigError(
                    f"{display}: --query must be one SELECT statement, and this one has "
                    "more after a ';'; nothing was run",
                    hint="give only the SELECT that reads the lines; run other statements in psql",
                ) from None
            t = con.table(view)
        if "_row" in t.columns:
            raise InputError(
                f"{display}: has a column named '_row', which segmint reserves",
                hint="rename it in a --query",
                code="reserved_column",
            )
        if t.limit(1).count().execute() == 0:
            raise InputError(f"{display}: has no rows", code="no_rows")
        # ibis types PostgreSQL's money as decimal(19, 4), but the server casts money
        # only to numeric ("cannot cast type money to double precision", reported as a
        # server problem) and sends its text ("$1,234.50", an internal error in Arrow):
        # every decimal is read through numeric, which changes nothing for a true one
        wide = {
            c: t[c].cast(ibis.dtype(f"decimal(38, {d.scale if d.scale is not None else 9})"))
            for c, d in t.schema().items()
            if d.is_decimal()
        }
        t = t.mutate(**wide, _row=ibis.row_number() + 1)
    return Source(
        table=t,
        con=con,
        path=display,
        format="postgres",
        details={"engine": "postgres", "table": table, "query": query},
    )


#: First words of statements that change data or the database (a typo such as "SELEC"
#: stays a syntax error to fix).
_WRITING_SQL = frozenset(
    "insert update delete merge upsert create drop alter truncate grant revoke copy call do "
    "lock vacuum reindex cluster refresh comment set reset".split()
)


def _check_temp_tables(con: Any, url: str, display: str) -> None:
    """Refuse, before any work, a session that cannot create temporary tables.

    The cleaning keeps intermediate tables (and ``--query`` its view) as temporary
    objects in the server. A read replica (hot standby), a role with
    ``default_transaction_read_only`` or without the TEMP privilege failed later with
    "cannot execute CREATE TABLE in a read-only transaction" and the hint to check the
    data, or the hint to grant SELECT, which the role had."""
    import psycopg

    probe = f"segmint_probe_{os.getpid()}_{next(_counter)}"
    try:
        con.con.execute(f"CREATE TEMPORARY TABLE {probe} (x integer)")
        con.con.execute(f"DROP TABLE {probe}")
    except (psycopg.errors.ReadOnlySqlTransaction, psycopg.errors.InsufficientPrivilege) as exc:
        raise InputError(
            f"{display}: this session cannot create temporary tables ({error_summary(exc, url)})",
            hint="segmint cleans and computes inside PostgreSQL and keeps its intermediate "
            "tables as temporary tables: use the primary server, not a read replica, with a "
            "role that has TEMP on the database (GRANT TEMP ON DATABASE name TO role) and "
            "whose transactions are not read-only; or copy the lines out (\\copy sales TO "
            "'sales.csv' CSV HEADER in psql) and read the file",
            code="read_only_session",
        ) from None


def _pg_table(con: Any, name: str, schema: str | None) -> Any:
    """The table, view or materialized view ``name``: as written, else folded to lower
    case as PostgreSQL does with unquoted names (``CREATE TABLE Shop.Sales`` makes
    ``shop.sales``).
    None when neither exists. (``list_tables`` leaves materialized views out.)"""
    folded = schema.lower() if schema else None
    for cand in dict.fromkeys(((name, schema), (name.lower(), schema), (name.lower(), folded))):
        with contextlib.suppress(Exception):
            return con.table(cand[0], database=cand[1])
    return None


# -- Spark -----------------------------------------------------------------------------


_SESSIONS: dict[str, Any] = {}


def spark_session(master: str | None = None) -> Any:
    """A (cached) Spark session; ``master`` defaults to ``$SPARK_MASTER`` or ``local[*]``.

    Local sessions get settings that keep small jobs fast (few shuffle partitions, no UI).
    segmint's results need two SQL settings (time zone UTC, ANSI mode off); when a
    session already runs in this process with other values, they are set on it and a
    warning names the change (Spark has one session per process). A master that cannot
    be reached is an :class:`InputError` naming it.
    """
    _need("pyspark", "spark")
    from pyspark.sql import SparkSession

    master = master or os.environ.get("SPARK_MASTER") or "local[*]"
    if master in _SESSIONS:
        return _SESSIONS[master]
    if not _SPARK_MASTER.match(master):
        # Spark itself refused it only after starting a JVM: 10 s and a Java stack trace
        raise ConfigError(
            f"--spark-master {master!r} (or SPARK_MASTER) is not a Spark master",
            hint="use local, local[4], local[*], spark://HOST:7077, yarn or "
            "k8s://https://HOST:PORT",
        )
    active = SparkSession.getActiveSession()
    before = {}
    if active is not None:
        before = {k: active.conf.get(k, None) for k in _SPARK_SQL_SETTINGS}
    builder = SparkSession.builder.appName("segmint").master(master)
    for key, value in _SPARK_SQL_SETTINGS.items():
        builder = builder.config(key, value)
    builder = builder.config("spark.ui.enabled", "false").config(
        "spark.ui.showConsoleProgress", "false"
    )
    if master.startswith("local"):
        # local mode: the driver JVM is started here, so quieten its console log (Spark's
        # default prints WARN lines about host names and native libraries on every run);
        # on a cluster the site's own log4j configuration applies
        builder = builder.config(
            "spark.driver.extraJavaOptions", f"-Dlog4j2.configurationFile={_log4j_file()}"
        )
        builder = builder.config("spark.sql.shuffle.partitions", str(2 * (os.cpu_count() or 2)))
        builder = builder.config(
            "spark.driver.memory", os.environ.get("SEGMINT_SPARK_MEMORY", "2g")
        )
    _check_master_reachable(master)
    _check_java()
    # pyspark 4.0 calls pandas with an argument pandas 3 deprecates: not the user's concern
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated", module="pyspark")
    import signal
    import threading

    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # noqa: BLE001 - Py4J, PySpark or a JVM start failure
        raise InputError(
            f"cannot start Spark with master {master!r}: {error_summary(exc)}",
            hint="check --spark-master (or SPARK_MASTER) and that the cluster is running "
            "and reachable; leave it out to run Spark locally",
            code="spark_unavailable",
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    if main and signal.getsignal(signal.SIGINT) is not previous:
        signal.signal(signal.SIGINT, _interrupt_spark(session.sparkContext, previous))
        term = signal.getsignal(signal.SIGTERM)
        if callable(term):  # the CLI's: a scheduler stopping the run, treated as Ctrl-C
            signal.signal(signal.SIGTERM, _interrupt_spark(session.sparkContext, term))
    changed = {k: v for k, v in before.items() if v is not None and v != _SPARK_SQL_SETTINGS[k]}
    if changed:
        warnings.warn(
            "segmint set "
            + ", ".join(f"{k}={_SPARK_SQL_SETTINGS[k]} (was {v})" for k, v in changed.items())
            + " on the Spark session already running in this process: its results depend "
            "on them",
            stacklevel=2,
        )
    _SESSIONS[master] = _SESSIONS[session.sparkContext.master] = session
    return session


#: The masters Spark 4 takes: local modes, a standalone cluster (several hosts for high
#: availability), YARN and Kubernetes.
_SPARK_MASTER = re.compile(
    r"^(local(\[(\*|\d+)(,\s*\d+)?\])?|local-cluster\[\d+,\s*\d+,\s*\d+\]"
    r"|spark://\S+|yarn|k8s://\S+)$"
)


def _interrupt_spark(context: Any, previous: Any) -> Any:
    """A SIGINT handler for the one PySpark installs (and one around the CLI's SIGTERM
    handler): cancel the running Spark jobs from another thread, then do what the
    handler before Spark did (the CLI's: an orderly
    "Interrupted.", exit 130, outputs removed). PySpark's own handler called the JVM
    from inside the signal handler, while the main thread was waiting on the same
    connection: Ctrl-C printed two Py4J tracebacks and ended as "Spark cannot read it"
    (exit 2)."""
    import signal
    import threading

    def cancel() -> None:
        with contextlib.suppress(Exception):
            context.cancelAllJobs()

    def handler(signum: int, frame: Any) -> None:
        threading.Thread(target=cancel, name="segmint-cancel-spark", daemon=True).start()
        # Py4J logs the interrupted call with a traceback on the root logger
        # ("KeyboardInterrupt while sending command.") and, when its socket is already
        # closed, "Exception occurred while shutting down connection" on its own
        # loggers: the run is ending, and the CLI says "Interrupted.". A filter on the
        # root logger drops the first (filters see only a logger's own records); the
        # level of "py4j" silences the others (its loggers leave theirs unset)
        if _quiet_py4j_interrupt not in logging.getLogger().filters:
            logging.getLogger().addFilter(_quiet_py4j_interrupt)
        logging.getLogger("py4j").setLevel(logging.CRITICAL + 1)
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            raise KeyboardInterrupt

    return handler


def _quiet_py4j_interrupt(record: logging.LogRecord) -> bool:
    """Drop Py4J's "KeyboardInterrupt while sending command." (the CLI says
    "Interrupted.")."""
    return record.getMessage() != "KeyboardInterrupt while sending command."


def _check_master_reachable(master: str, timeout: float = 5.0) -> None:
    """A standalone master (``spark://host:port``, or ``spark://h1:p1,h2:p2`` with
    standby masters) that accepts no connection is an error at once: Spark itself
    retries for about a minute and prints its stack traces before giving up. Only a
    TCP connection is tried (no log configuration is touched); other masters (yarn,
    k8s://, local) are left to Spark."""
    import socket
    from urllib.parse import urlsplit

    if not master.startswith("spark://"):
        return
    failures = []
    for part in master.removeprefix("spark://").split(","):
        try:
            where = urlsplit(f"spark://{part}")
            host, port = where.hostname, where.port or 7077
        except ValueError:
            host, port = None, None
        if not host:
            raise InputError(
                f"Spark master {master!r}: {part!r} is not a host:port",
                hint="e.g. --spark-master spark://spark-master:7077",
                code="spark_unavailable",
            )
        try:
            with socket.create_connection((host, port), timeout=timeout):
                return  # one reachable master is enough
        except OSError as exc:
            failures.append(f"{host}:{port} ({exc.strerror or exc})")
    raise EnvironmentFailure(
        f"cannot reach the Spark master {master!r}: {'; '.join(failures)}",
        hint="check --spark-master (or SPARK_MASTER), that the master is running and that "
        "this machine can reach its port; leave it out to run Spark locally",
        code="spark_unavailable",
    )


def _check_java() -> None:
    """The Java that PySpark's launcher would run (``$JAVA_HOME/bin/java``, else ``java``
    on the PATH) exists, or an :class:`InputError` saying so. (Without one, Spark failed
    with "Java gateway process exited", shell errors on stderr and the hint to check
    --spark-master and the cluster, although the driver JVM runs on this machine for
    every master, local ones too.)"""
    import shutil

    home = os.environ.get("JAVA_HOME")
    if home:
        java = os.path.join(home, "bin", "java")
        if os.path.isfile(java) and os.access(java, os.X_OK):
            return
        problem = f"JAVA_HOME is {home!r}, which has no bin/java"
    elif shutil.which("java"):
        return
    else:
        problem = "no 'java' on the PATH and JAVA_HOME is not set"
    raise InputError(
        f"Spark needs a Java runtime (17 or later) on this machine: {problem}",
        hint="install one (e.g. apt install openjdk-17-jre-headless) or set JAVA_HOME to "
        "its folder; or leave --engine spark out to run on DuckDB",
        code="spark_unavailable",
    )


#: The SQL settings segmint's expressions are written for.
_SPARK_SQL_SETTINGS = {"spark.sql.session.timeZone": "UTC", "spark.sql.ansi.enabled": "false"}


_LOG4J: list[str] = []


def _log4j_file() -> str:
    """A log4j2 configuration that prints only errors, written once per process in a
    private folder (a predictable name in the shared temporary folder could be planted
    as a link by another user), removed at exit."""
    import atexit
    import shutil
    import tempfile

    if _LOG4J:
        return _LOG4J[0]
    folder = tempfile.mkdtemp(prefix="segmint-log4j2-")
    atexit.register(shutil.rmtree, folder, True)
    path = os.path.join(folder, "log4j2.properties")
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(
            "rootLogger.level = error\n"
            "rootLogger.appenderRef.stderr.ref = console\n"
            "appender.console.type = Console\n"
            "appender.console.name = console\n"
            "appender.console.target = SYSTEM_ERR\n"
            "appender.console.layout.type = PatternLayout\n"
            "appender.console.layout.pattern = spark: %p %c{1}: %m%n\n"
            # PySpark runs as Spark's "shell": unless Spark's own loggers have a
            # level of their own, it prints "Setting default log level to WARN"
            "logger.spark.name = org.apache.spark\n"
            "logger.spark.level = error\n"
        )
    _LOG4J.append(path)
    return path


def read_spark(
    source: str,
    *,
    master: str | None = None,
    format: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
) -> Any:
    """A Parquet/CSV path (file or folder) or a Spark table name, as a lazy segmint Source.

    CSV is read with every column as text, exactly like the DuckDB reader, so the same
    parsing expressions decide types, quotes inside a quoted value doubled (``""``) as
    DuckDB reads them, and with ``multiLine`` so that a quoted value
    holding a line break stays one line, as DuckDB reads it (a CSV file is then read by
    one task: Parquet is the format for large data). ``_row`` is the 1-based data row
    in the order Spark reads (file order for a file): each partition's own position plus
    the lines of the partitions before it, counted in one pass.
    A file's format comes from its ending, as for DuckDB (:func:`segmint.io.detect_format`);
    Excel and JSON are refused with a clear message. A CSV file's ``encoding`` and
    ``delimiter`` are detected as the DuckDB reader does when not given (a local file or
    folder; a remote one is read as UTF-8 with commas unless they are given), and
    ``header=False`` names the columns ``column0``, ``column1``, ... as DuckDB does.
    """
    from segmint.io import Source, detect_format

    session = spark_session(master)
    from py4j.protocol import Py4JError
    from pyspark.errors import PySparkException
    from pyspark.sql import functions as F

    con = ibis.pyspark.connect(session)
    path = os.path.expanduser(source)
    exists = os.path.exists(path) or "://" in source
    fmt = (format or "").lower() or None
    if exists and fmt is None:
        if os.path.isfile(path):
            fmt = detect_format(path)[0]
        else:  # a folder or a remote location: Parquet parts, unless it holds none
            fmt = "parquet"
            if os.path.isdir(path) and not any(
                f.endswith(".parquet") for _, _, fs in os.walk(path) for f in fs
            ):
                fmt = "csv"
    if exists and fmt not in ("csv", "tsv", "parquet"):
        raise ConfigError(
            f"{source}: the Spark engine reads Parquet or CSV, not {fmt}",
            hint="convert the file to Parquet, or leave --engine spark out",
        )
    if not exists and (os.sep in source or re.search(r"\.(csv|tsv|txt|parquet|pq)$", path)):
        raise InputError(
            f"{source}: no such file or folder",
            hint="check the path; a name without a path is read as a Spark catalog table",
            code="file_not_found",
        )
    display = source if exists else f"spark table {source}"
    try:
        if not exists:
            df = session.table(source)
            fmt = "spark-table"
        elif fmt == "parquet":
            df = session.read.parquet(path)
        else:
            charset, sep, has_header = _spark_csv_dialect(
                path, display, fmt, encoding, delimiter, header
            )
            if charset not in _SPARK_PLAIN_CHARSETS:
                # Spark 4 reads other charsets (windows-1252, ...) only with this flag
                session.conf.set("spark.sql.legacy.javaCharsets", "true")
            df = session.read.csv(
                path,
                header=has_header,
                sep=sep,
                encoding=charset,
                inferSchema=False,
                multiLine=True,
                # a quote inside a quoted value is doubled ("SIGN ""OPEN"" BOARD"), as
                # DuckDB and RFC 4180 read it; Spark's default escape is a backslash, which
                # kept the doubled quotes or split the value at a comma inside it
                escape='"',
            )
            if not has_header:  # _c0, _c1, ... named as DuckDB names them
                df = df.toDF(*(f"column{i}" for i in range(len(df.columns))))
        # monotonically_increasing_id = partition index << 33 | position in the partition
        df = df.withColumn("_segmint_mid", F.monotonically_increasing_id())
        part = F.shiftright("_segmint_mid", 33)
        sizes = dict(df.groupBy(part.alias("p")).count().collect())
        empty = not sizes
    except (PySparkException, Py4JError) as exc:
        raise InputError(
            f"{display}: Spark cannot read it ({error_summary(exc)})",
            hint="give a Parquet/CSV path or the name of a table in the Spark catalog",
            code="unreadable_file",
        ) from None
    if "_row" in df.columns:
        raise InputError(f"{display}: has a column named '_row', which segmint reserves")
    if empty:
        raise InputError(f"{display}: has no rows", code="no_rows")
    name = f"segmint_spark_{next(_counter)}"
    offsets, total = [], 0
    for p in sorted(sizes):
        offsets += [F.lit(p), F.lit(total)]
        total += sizes[p]
    position = F.col("_segmint_mid").bitwiseAND(F.lit((1 << 33) - 1))
    row = F.element_at(F.create_map(*offsets), part) + position + 1
    df.withColumn("_row", row).drop("_segmint_mid").createOrReplaceTempView(name)
    from pyspark.sql.types import TimestampType

    # TIMESTAMP (with the session's zone, UTC) holds instants; TIMESTAMP_NTZ (a Parquet
    # timestamp without a zone) holds local times: ibis types both as a plain timestamp
    instants = tuple(f.name for f in df.schema.fields if type(f.dataType) is TimestampType)
    return Source(
        table=con.table(name),
        con=con,
        path=display,
        format="csv" if fmt in ("csv", "tsv") else fmt,
        details={"engine": "spark", "master": session.sparkContext.master},
        instants=instants,
    )


#: Python's codec names -> the names Spark 4's CSV reader accepts without
#: ``spark.sql.legacy.javaCharsets`` (set for any other, e.g. cp1252).
_SPARK_CHARSETS = {"iso8859-1": "iso-8859-1", "ascii": "us-ascii", "utf-16-be": "utf-16be",
                   "utf-16-le": "utf-16le", "utf-32": "utf-32", "utf-16": "utf-16",
                   "utf-8": "utf-8"}  # fmt: skip
_SPARK_PLAIN_CHARSETS = frozenset(_SPARK_CHARSETS.values())


def _spark_csv_dialect(
    path: str,
    display: str,
    fmt: str,
    encoding: str | None,
    delimiter: str | None,
    header: bool | None,
) -> tuple[str, str, bool]:
    """The charset, separator and header flag Spark reads a CSV ``path`` (file or folder
    of parts) with: as given, else detected like the DuckDB reader (encoding from the
    whole file, delimiter the candidate occurring most in the first line). Spark read
    every file as UTF-8 with commas, ignoring --encoding and --delimiter: a Latin-1
    export gave country names with U+FFFD, and a semicolon file one column."""
    import codecs

    from segmint.io import (
        MIXED_ENCODING,
        _check_encoding_name,
        _text_lines,
        detect_encoding,
        detect_format,
    )

    if os.path.isfile(path):
        files = [path]
    elif os.path.isdir(path):
        files = sorted(
            os.path.join(d, f)
            for d, _, fs in os.walk(path)
            for f in fs
            if not f.startswith(("_", "."))
        )
    else:
        files = []  # a remote location: nothing to look at here
    comps = [detect_format(f)[1] for f in files]
    if encoding is not None:
        _check_encoding_name(encoding)
    else:
        found = {detect_encoding(f, c) for f, c in zip(files, comps, strict=True)} or {"utf-8"}
        if len(found) > 1:
            raise InputError(
                f"{display}: its parts are in different encodings ({', '.join(sorted(found))})",
                hint="give the encoding of all of them with --encoding, or convert them to UTF-8",
                code="bad_encoding",
            )
        encoding = found.pop()
    charset = codecs.lookup(encoding).name
    if charset == MIXED_ENCODING:
        raise InputError(
            f"{display}: is UTF-8 with some lines in Windows-1252, which Spark cannot read "
            "as one encoding",
            hint="convert it to UTF-8 first (the DuckDB engine reads it as it is), or give "
            "--encoding cp1252 to read all of it as Windows-1252",
            code="bad_encoding",
        )
    charset = _SPARK_CHARSETS.get(charset, charset)
    if delimiter is not None:
        sep = "\t" if delimiter == "\\t" else delimiter
        if len(sep) != 1:
            raise ConfigError(
                f"delimiter must be one character, got {delimiter!r}",
                hint="use e.g. --delimiter ';' or --delimiter '\\t'",
            )
    elif fmt == "tsv":
        sep = "\t"
    else:
        first = _text_lines(Path(files[0]), comps[0], encoding, 1) if files else []
        sep = max(",;\t|", key=first[0].count) if first and first[0].strip() else ","
        if first and not first[0].count(sep):
            sep = ","
    return charset, sep, True if header is None else header


# -- writing assignments back ------------------------------------------------------------


_PG_TYPES = {
    "b": "boolean",
    "i": "bigint",
    "u": "bigint",
    "f": "double precision",
    "M": "timestamptz",
}


def _pg_type(series: pd.Series) -> str:
    return _PG_TYPES.get(series.dtype.kind, "text")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def write_assignments(
    url: str,
    table: str,
    frame: pd.DataFrame,
    *,
    model_id: str,
    scored_at: dt.datetime | None = None,
    key: str = "customer_id",
    chunk_rows: int = 50_000,
    replace: bool = False,
) -> dict[str, int]:
    """Upsert one row per customer into ``table`` in one transaction.

    The table is created when missing (primary key ``key``); new columns of ``frame`` are
    added. Rows whose values did not change keep their ``scored_at``, so writing the same
    scores twice changes nothing (idempotent). ``replace`` also deletes the rows of
    customers not in ``frame``, so the table holds exactly this scoring (customers gone
    from the source no longer keep an old segment). Any failure or interruption rolls the
    whole write back: readers see either the old table or the new one.

    Returns
    -------
    dict
        ``rows`` written, ``inserted``, ``updated``, ``unchanged`` and ``deleted`` counts,
        and the ``table`` written as PostgreSQL names it (``crm.customer_segments`` for
        ``crm.Customer_Segments``, see :func:`_write_target`).
    """
    psycopg = _need("psycopg", "postgres")
    from psycopg import sql

    if not _IDENT.match(table):
        raise ConfigError(
            f"--table {table!r} is not a table name",
            hint="use name or schema.name (letters, digits, _)",
        )
    if key not in frame.columns:
        raise ConfigError(f"the scores have no {key!r} column to write by")
    if frame[key].duplicated().any():
        dup = frame.loc[frame[key].duplicated(), key].iloc[0]
        raise InputError(f"customer {dup!r} appears twice in the scores", code="duplicate_key")
    stamp = scored_at or dt.datetime.now(dt.UTC)
    data = frame.copy()
    data["model_id"] = model_id
    data["scored_at"] = pd.Timestamp(stamp)
    cols = list(data.columns)
    types = {c: ("text" if c in (key, "model_id") else _pg_type(data[c])) for c in cols}
    types["scored_at"] = "timestamptz"
    for c in _DATE_COLUMNS & set(cols):
        # a calendar date, not an instant: as timestamptz (midnight UTC) a CRM session
        # west of Greenwich showed the day before, and ::date gave it
        types[c] = "date"
        data[c] = [None if _missing(v) else pd.Timestamp(v).date() for v in data[c]]
    ident = {c: sql.Identifier(c) for c in cols}
    compare = [c for c in cols if c not in (key, "scored_at")]
    with database_errors(url, f"writing table {table}"):
        with psycopg.connect(url) as conn, conn.transaction():
            cur = conn.cursor()
            # timestamps without a zone are UTC, as everywhere in segmint; in the
            # server's or PGTZ's zone they were stored shifted, and a writer in another
            # zone "updated" every row of unchanged scores
            cur.execute("SET LOCAL TIME ZONE 'UTC'")
            role = cur.execute("SELECT current_user").fetchone()[0]
            schema, name = _write_target(cur, table)
            target = sql.Identifier(schema, name) if schema else sql.Identifier(name)
            existing = _check_existing_table(cur, table, schema, name, types, key)
            # DDL only where needed: a role granted SELECT, INSERT and UPDATE on a table
            # a DBA created may neither CREATE in its schema nor ALTER the table, and
            # CREATE TABLE IF NOT EXISTS / ADD COLUMN IF NOT EXISTS check those rights
            # even when there is nothing to do
            if existing is None:
                with _privileges(role, table, "create"):
                    cur.execute(
                        sql.SQL("CREATE TABLE {} ({}, PRIMARY KEY ({}))").format(
                            target,
                            sql.SQL(", ").join(
                                sql.SQL("{} {}").format(ident[c], sql.SQL(types[c])) for c in cols
                            ),
                            ident[key],
                        )
                    )
            else:
                missing = [c for c in cols if c not in existing]
                optional = [c for c in missing if c in _LABEL_COLUMNS]
                if optional and not _owns(cur, schema, name):
                    # a table the DBA created before segmint wrote rfm_rule_set: the
                    # nightly write failed until the owner added the column; the label
                    # is also in the model (model_id), so it is left out, with a warning
                    warnings.warn(
                        f"table {table} has no column {', '.join(optional)}, and role "
                        f"{role!r} may not add it: written without it (the model_id "
                        f"column identifies the model and its rule set); the owner can "
                        f"run ALTER TABLE {table} ADD COLUMN "
                        + ", ADD COLUMN ".join(f"{c} {types[c]}" for c in optional),
                        SegmintWarning,
                        stacklevel=2,
                    )
                    missing = [c for c in missing if c not in optional]
                    cols = [c for c in cols if c not in optional]
                    data = data.drop(columns=optional)
                    compare = [c for c in compare if c not in optional]
                with _privileges(role, table, "alter", [f"{c} {types[c]}" for c in missing]):
                    for c in missing:
                        cur.execute(
                            sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
                                target, ident[c], sql.SQL(types[c])
                            )
                        )
            stage = sql.Identifier(f"segmint_stage_{os.getpid()}_{next(_counter)}")
            cur.execute(
                sql.SQL("CREATE TEMP TABLE {} ({}) ON COMMIT DROP").format(
                    stage,
                    sql.SQL(", ").join(
                        sql.SQL("{} {}").format(ident[c], sql.SQL(types[c])) for c in cols
                    ),
                )
            )
            copy_sql = sql.SQL("COPY {} ({}) FROM STDIN").format(
                stage, sql.SQL(", ").join(ident[c] for c in cols)
            )
            with cur.copy(copy_sql) as copy:
                for start in range(0, len(data), chunk_rows):
                    chunk = data.iloc[start : start + chunk_rows]
                    for row in chunk.itertuples(index=False, name=None):
                        copy.write_row([None if _missing(v) else _plain(v) for v in row])
            with _privileges(role, table, "write"):
                cur.execute(
                    sql.SQL(
                        "SELECT count(*) FILTER (WHERE t.{k} IS NULL), "
                        "count(*) FILTER (WHERE t.{k} IS NOT NULL AND ({changed})) "
                        "FROM {s} s LEFT JOIN {t} t ON t.{k} = s.{k}"
                    ).format(
                        k=ident[key],
                        s=stage,
                        t=target,
                        changed=sql.SQL(" OR ").join(
                            sql.SQL("t.{c} IS DISTINCT FROM s.{c}").format(c=ident[c])
                            for c in compare
                        ),
                    )
                )
                inserted, updated = cur.fetchone()
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {t} AS segmint_old ({cols}) SELECT {cols} FROM {s} "
                        "ON CONFLICT ({k}) DO UPDATE SET {sets} WHERE {changed}"
                    ).format(
                        t=target,
                        cols=sql.SQL(", ").join(ident[c] for c in cols),
                        s=stage,
                        k=ident[key],
                        sets=sql.SQL(", ").join(
                            sql.SQL("{c} = EXCLUDED.{c}").format(c=ident[c])
                            for c in cols
                            if c != key
                        ),
                        changed=sql.SQL(" OR ").join(
                            sql.SQL("segmint_old.{c} IS DISTINCT FROM EXCLUDED.{c}").format(
                                c=ident[c]
                            )
                            for c in compare
                        ),
                    )
                )
            deleted = 0
            if replace:
                with _privileges(role, table, "delete"):
                    cur.execute(
                        sql.SQL(
                            "DELETE FROM {t} AS segmint_old WHERE NOT EXISTS "
                            "(SELECT 1 FROM {s} s WHERE s.{k} = segmint_old.{k})"
                        ).format(t=target, s=stage, k=ident[key])
                    )
                    deleted = cur.rowcount
    rows = len(data)
    return {
        "table": f"{schema}.{name}" if schema else name,
        "rows": rows,
        "inserted": int(inserted),
        "updated": int(updated),
        "unchanged": rows - int(inserted) - int(updated),
        "deleted": int(deleted),
    }


#: Column types of an existing table that accept what segmint writes as each type.
_PG_ACCEPTS = {
    "text": ("text", "character varying", "character"),
    "bigint": ("bigint", "integer", "smallint", "numeric", "double precision", "real"),
    "double precision": ("double precision", "real", "numeric"),
    "boolean": ("boolean",),
    "timestamptz": ("timestamp with time zone", "timestamp without time zone"),
    "date": ("date", "timestamp with time zone", "timestamp without time zone"),
}

#: Columns written as ``date``: the day the scores are as of.
_DATE_COLUMNS = frozenset({"snapshot_date"})


def _write_target(cur: Any, table: str) -> tuple[str, str]:
    """The schema ("" for the search path) and name ``--write-table`` ``table`` means,
    as PostgreSQL reads an unquoted name and as ``--table`` finds one: the table as
    written if it exists, else folded to lower case (``crm.Customer_Segments`` is the
    ``crm.customer_segments`` a DBA created with plain SQL); a new table is created
    under the folded name, the one plain SQL (``SELECT * FROM Scores``) finds. (The name
    was quoted as written: a second table ``"Customer_Segments"`` was created beside the
    one the CRM reads, and received every score.)"""
    schema, _, name = table.rpartition(".")

    def exists(s: str, n: str) -> bool:
        regclass = ".".join(_quote(p) for p in ((s, n) if s else (n,)))
        cur.execute("SELECT to_regclass(%s) IS NOT NULL", (regclass,))
        return bool(cur.fetchone()[0])

    for cand in dict.fromkeys(((schema, name), (schema, name.lower()))):
        if exists(*cand):
            return cand
    if schema and schema != schema.lower():
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,))
        if not cur.fetchone()[0]:  # "Crm" as PostgreSQL reads it unquoted: crm
            schema = schema.lower()
    return schema, name.lower()


def _check_existing_table(
    cur: Any,
    table: str,
    schema: str,
    name: str,
    types: dict[str, str],
    key: str,
    columns: bool = True,
) -> dict[str, tuple[str, bool, bool]] | None:
    """Refuse, with a message naming the column, an existing ``table`` (found as
    ``schema.name``) the upsert cannot write: not a table, no unique ``key``, a column
    of an incompatible type, or a required column segmint does not fill. (The server's
    own errors come mid-write and name neither the option nor the fix.)

    With ``columns`` False, only the table's kind and key are checked (the columns to
    write are not known yet). Returns the existing table's columns (name -> type, NOT
    NULL, has a default), or None when there is no such table yet."""
    regclass = ".".join(_quote(p) for p in ((schema, name) if schema else (name,)))
    if schema:
        cur.execute("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,))
        if not cur.fetchone()[0]:
            # the server's own error came from CREATE TABLE, with a hint to check the URL
            raise InputError(
                f"table {table}: the schema {schema!r} does not exist, and segmint never "
                "creates schemas",
                hint=f"ask your DBA, or CREATE SCHEMA {schema}; or choose another --write-table",
                code="table_layout",
            )
    cur.execute("SELECT c.relkind FROM pg_class c WHERE c.oid = to_regclass(%s)", (regclass,))
    found = cur.fetchone()
    if found is None:
        return None  # created by the caller
    hint = "choose another --write-table, or drop or alter this one"
    if found[0] not in ("r", "p"):
        raise InputError(
            f"{table} is not a plain table (it is a view or another kind of relation)",
            hint=hint,
            code="table_layout",
        )
    cur.execute(
        # identity and generated columns fill themselves, as a default does
        "SELECT a.attname, format_type(a.atttypid, NULL), a.attnotnull, "
        "a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> '' "
        "FROM pg_attribute a WHERE a.attrelid = to_regclass(%s) AND a.attnum > 0 "
        "AND NOT a.attisdropped",
        (regclass,),
    )
    existing = {n: (t, notnull, default) for n, t, notnull, default in cur.fetchall()}
    if key not in existing:
        raise InputError(
            f"table {table} has no {key!r} column, so it is not a table of segmint scores "
            f"(its columns: {', '.join(sorted(existing)) or 'none'})",
            hint=hint,
            code="table_layout",
        )
    for column, ours in types.items():
        if column in existing and existing[column][0] not in _PG_ACCEPTS.get(ours, (ours,)):
            raise InputError(
                f"table {table}: column {column!r} is {existing[column][0]}, but segmint "
                f"writes {ours} there",
                hint=hint,
                code="table_layout",
            )
    required = sorted(
        n
        for n, (_, notnull, default) in existing.items()
        if notnull and not default and n not in types and columns
    )
    if required:
        raise InputError(
            f"table {table}: column(s) {', '.join(map(repr, required))} must be filled "
            "(NOT NULL, no default) and segmint does not write them",
            hint=hint,
            code="table_layout",
        )
    cur.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_index i JOIN pg_attribute a "
        "ON a.attrelid = i.indrelid AND a.attnum = i.indkey[0] "
        # one key column (INCLUDE columns do not count), checked at once: ON CONFLICT
        # refuses a deferrable constraint, and a partial index does not match it
        "WHERE i.indrelid = to_regclass(%s) AND i.indisunique AND i.indimmediate "
        "AND i.indnkeyatts = 1 AND i.indpred IS NULL AND a.attname = %s)",
        (regclass, key),
    )
    if not cur.fetchone()[0]:
        raise InputError(
            f"table {table}: {key!r} is not a primary key or unique column (checked at "
            "once, not deferrable), so scores cannot be updated customer by customer",
            hint=(
                f"add one: ALTER TABLE {table} ADD PRIMARY KEY ({key}); "
                "or choose another --write-table"
            ),
            code="table_layout",
        )
    return existing


#: Columns that only label another (the rule set of ``rfm_segment``): written when the
#: table has them or the role may add them, else left out with a warning.
_LABEL_COLUMNS = frozenset({"rfm_rule_set"})


def _owns(cur: Any, schema: str | None, name: str) -> bool:
    """Whether the current role may ALTER the table (owns it, or is a member of the
    owning role, or is a superuser)."""
    regclass = ".".join(_quote(p) for p in ((schema, name) if schema else (name,)))
    cur.execute(
        "SELECT pg_has_role(current_user, c.relowner, 'USAGE') OR "
        "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user) "
        "FROM pg_class c WHERE c.oid = to_regclass(%s)",
        (regclass,),
    )
    row = cur.fetchone()
    return bool(row and row[0])


@contextlib.contextmanager
def _privileges(
    role: str, table: str, step: str, columns: list[str] | None = None
) -> Iterator[None]:
    """Turn the server's "permission denied" during one ``step`` of a write into a
    message naming the role and the grant (or the DBA's statement) that lets it write;
    the server's own text named neither, and the hint said to check the URL."""
    import psycopg

    try:
        yield
    except psycopg.errors.InsufficientPrivilege as exc:
        raise _privilege_error(role, table, step, columns, error_summary(exc)) from None


def _privilege_error(
    role: str, table: str, step: str, columns: list[str] | None = None, server: str = ""
) -> InputError:
    """The :class:`InputError` for a role lacking the right for ``step`` ("create",
    "alter", "write" or "delete") of writing ``table``."""
    schema = table.rpartition(".")[0] or "public"
    said = f" ({server})" if server else ""
    if step == "create":
        what = f"role {role!r} may not create the table {table}{said}"
        hint = (
            f"have the DBA create it (or GRANT CREATE ON SCHEMA {schema} TO {role}) and "
            f"GRANT SELECT, INSERT, UPDATE ON {table} TO {role}; or choose another "
            "--write-table"
        )
    elif step == "delete":
        what = (
            f"role {role!r} may not delete from the table {table}{said}, which "
            "--write-mode replace does for customers not in the new scores"
        )
        hint = f"GRANT DELETE ON {table} TO {role}; or write with --write-mode upsert"
    elif step == "alter":
        what = (
            f"table {table} lacks the column(s) {', '.join(columns or [])}, and only "
            f"its owner may add them; role {role!r} is not the owner"
        )
        hint = (
            f"have the owner run ALTER TABLE {table} ADD COLUMN ... for each; or "
            "choose another --write-table"
        )
    else:
        what = f"role {role!r} may not write the table {table}{said}"
        hint = f"GRANT SELECT, INSERT, UPDATE ON {table} TO {role}"
    return InputError(what, hint=hint, code="permission_denied")


def check_write_target(
    url: str, table: str, *, key: str = "customer_id", replace: bool = False
) -> None:
    """Before any work, what :func:`write_assignments` would only find at the end: the
    server cannot be reached or refuses the login, the schema is missing, an existing
    table has no unique ``key`` or is not a table, or the role lacks the rights to
    create or write it (and, with ``replace``, to delete from it). (Scoring a large
    table first and then failing on a mistyped password wasted the whole scoring.)
    Column types are checked at the write, when the scores' columns are known. Nothing
    is changed in the database.

    Raises
    ------
    ConfigError
        A malformed table name.
    InputError
        Any of the problems above, naming the setting to fix.
    """
    psycopg = _need("psycopg", "postgres")

    if not _IDENT.match(table):
        raise ConfigError(
            f"--write-table {table!r} is not a table name",
            hint="use name or schema.name (letters, digits, _)",
        )
    with database_errors(url, f"writing table {table}"):
        with psycopg.connect(url) as conn, conn.transaction():
            cur = conn.cursor()
            role = cur.execute("SELECT current_user").fetchone()[0]
            schema, name = _write_target(cur, table)
            existing = _check_existing_table(cur, table, schema, name, {key: "text"}, key, False)
            if existing is None:
                cur.execute(
                    "SELECT has_schema_privilege(coalesce(nullif(%s, ''), current_schema()), "
                    "'CREATE')",
                    (schema,),
                )
                if not cur.fetchone()[0]:
                    raise _privilege_error(role, table, "create")
                return
            regclass = ".".join(_quote(p) for p in ((schema, name) if schema else (name,)))
            cur.execute(
                # column-level grants count: the upsert names its columns
                "SELECT bool_and(has_any_column_privilege(to_regclass(%s), p)) "
                "FROM unnest(ARRAY['SELECT', 'INSERT', 'UPDATE']) AS p",
                (regclass,),
            )
            if not cur.fetchone()[0]:
                raise _privilege_error(role, table, "write")
            if replace:
                cur.execute("SELECT has_table_privilege(to_regclass(%s), 'DELETE')", (regclass,))
                if not cur.fetchone()[0]:
                    raise _privilege_error(role, table, "delete")


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """NumPy scalars as Python values (psycopg's COPY adapts those)."""
    return value.item() if hasattr(value, "item") else value
