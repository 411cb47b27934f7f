"""SQLite databases: a table, view or ``SELECT`` copied once into Parquet for DuckDB.

Read with Python's own :mod:`sqlite3` (nothing to install or download: DuckDB's sqlite
extension would be fetched from the network), opened read-only (``mode=ro``: segmint
never writes to the user's database), in one read transaction so the rows are one
consistent snapshot. The rows are streamed in batches into a Parquet copy in the
engine's spill folder, so memory stays bounded for a table of millions of rows; the
usual DuckDB path (mapping, type checks, cleaning, features) then reads the copy.

SQLite is dynamically typed: a column declared ``INTEGER`` can hold text in some rows.
Each column is read by the storage classes its values actually have: only integers ->
``BIGINT``, only reals (or integers and reals) -> ``DOUBLE``, only text -> text, and a
mix with text -> text (numbers written as Python writes them), which segmint's type
checks then parse as they parse a CSV file's text, naming the column and row of a value
that is not a number or a date. No value is dropped or changed on the way.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import ibis
import pyarrow as pa

from segmint.errors import ConfigError, EnvironmentFailure, InputError

__all__ = ["SQLITE_MAGIC", "is_sqlite_file", "is_sqlite_url", "read_sqlite", "sqlite_path"]

log = logging.getLogger(__name__)

#: The first 16 bytes of every SQLite 3 database file.
SQLITE_MAGIC = b"SQLite format 3\x00"
#: Rows fetched and written to the Parquet copy at a time (bounds the memory used).
BATCH_ROWS = 65_536
#: Seconds between two progress reports of a copy (the first batch always reports).
PROGRESS_EVERY = 1.0
#: Seconds to wait for another program's write lock before giving up (SQLite's own
#: busy timeout); a database still locked then exits with 75, to be retried later.
BUSY_TIMEOUT = 5.0
#: Integers beyond this lose digits as a double: a column mixing them with reals is text.
_EXACT_DOUBLE = 2**53
#: What a ``--query`` may do: read (anything else, even on a read-only file, is refused).
_READ_ACTIONS = frozenset(
    {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION}
    | ({sqlite3.SQLITE_RECURSIVE} if hasattr(sqlite3, "SQLITE_RECURSIVE") else set())
)


class _CopyProgress:
    """Reports a database copy through the caller's ``progress(text)`` callback: rows
    copied so far, the rate and, when known, the total (``approx``: an estimate, said
    "about"); at most every :data:`PROGRESS_EVERY` seconds, so a log stays short."""

    def __init__(
        self,
        progress: Callable[[str], None] | None,
        display: str,
        total: int | None = None,
        approx: bool = False,
    ) -> None:
        self._say = progress
        self._display = display
        self._total = total if total else None
        self._approx = approx
        self._start = time.monotonic()
        self._last: float | None = None

    def __call__(self, done: int) -> None:
        if self._say is None:
            return
        now = time.monotonic()
        if self._last is not None and now - self._last < PROGRESS_EVERY:
            return
        self._last = now
        self._say(
            copy_progress_text(self._display, done, self._total, self._approx, now - self._start)
        )


def copy_progress_text(
    display: str, done: int, total: int | None, approx: bool, seconds: float
) -> str:
    """``copying shop.db#sales: 65,536 of 200,000 rows (33%), 410,000 rows/s``; the
    total is left out when unknown or passed (an estimate can be low).

    >>> copy_progress_text("db#t", 65_536, 1_080_000, True, 0.8)
    'copying db#t: 65,536 of about 1,080,000 rows (6%), 81,920 rows/s'
    >>> copy_progress_text("db (query)", 1, None, False, 0.0)
    'copying db (query): 1 row so far'
    >>> copy_progress_text("db#t", 199_500, 200_000, False, 1.0)  # not yet 100%
    'copying db#t: 199,500 of 200,000 rows (99%), 199,500 rows/s'
    """
    text = f"copying {display}: "
    if total and done <= total:
        share = done * 100 // total  # rounded down: 100% only when every row is copied
        text += f"{done:,} of {'about ' if approx else ''}{total:,} rows ({share}%)"
    else:
        text += f"{done:,} {'row' if done == 1 else 'rows'} so far"
    if seconds > 0:
        text += f", {done / seconds:,.0f} rows/s"
    return text


def is_sqlite_url(value: object) -> bool:
    """Whether ``value`` is an ``sqlite:///...`` URL."""
    return isinstance(value, str) and value.split("://", 1)[0].lower() == "sqlite"


def sqlite_path(url: str) -> Path:
    """The file of an ``sqlite:///`` URL, as SQLAlchemy reads it: ``sqlite:///shop.db``
    is ``shop.db`` in the current folder, ``sqlite:////data/shop.db`` is ``/data/shop.db``.

    Raises
    ------
    ConfigError
        For a URL without the three slashes or without a file name.
    """
    scheme, sep, rest = url.partition("://")
    if not sep or not rest.startswith("/") or not rest[1:]:
        raise ConfigError(
            f"{url!r} is not an SQLite URL",
            hint="use sqlite:///shop.db (a file in the current folder), "
            "sqlite:////data/shop.db (an absolute path), or the file's path itself",
        )
    return Path(rest[1:])


def is_sqlite_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` is a file that starts with SQLite's header."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == SQLITE_MAGIC
    except OSError:
        return False


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@contextlib.contextmanager
def _errors(display: str, what: str = "") -> Iterator[None]:
    """Turn :mod:`sqlite3` errors into segmint's, naming the database."""
    try:
        yield
    except sqlite3.Error as exc:
        name = getattr(exc, "sqlite_errorname", "") or ""
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        where = f"{display}{': ' + what if what else ''}"
        if name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in text:
            raise EnvironmentFailure(
                f"{where}: the database is locked ({text})",
                hint="another program is writing to it; try again when it has finished "
                "(a scheduler can retry on exit status 75), or read a copy of the file",
                code="database_locked",
            ) from None
        if name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            raise InputError(
                f"{where}: the database file is damaged ({text})",
                hint="check it with: sqlite3 FILE 'PRAGMA integrity_check'; restore it "
                "from a backup or export it again",
                code="corrupt_database",
            ) from None
        if name.startswith(("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_READONLY")):
            raise InputError(
                f"{where}: cannot open the database ({text})",
                hint="check that you may read the file; a database in WAL mode also needs "
                "its -wal and -shm files beside it, readable (or a folder you may write in)",
                code="database_error",
            ) from None
        if what == "query":
            raise InputError(
                f"{where}: {text}",
                hint="check the SQL given with --query (try it in the sqlite3 shell first)",
                code="bad_query",
            ) from None
        raise InputError(f"{where}: {text}", code="database_error") from None


def _connect(path: Path, display: str) -> sqlite3.Connection:
    """A read-only connection (``mode=ro``: SQLite refuses every write through it)."""
    uri = path.resolve().as_uri() + "?mode=ro"
    with _errors(display, "cannot open"):
        conn = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT, isolation_level=None)
        # a file that only starts like SQLite fails here, not later in the copy
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    return conn


def _tables(conn: sqlite3.Connection) -> list[str]:
    """The database's tables and views (SQLite's own ``sqlite_*`` tables left out)."""
    rows = conn.execute(
        "SELECT name FROM sqlite_master WHERE type IN ('table', 'view') "
        "AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name"
    ).fetchall()
    return [r[0] for r in rows]


def _find_table(conn: sqlite3.Connection, table: str, display: str) -> str:
    """``table`` as the database spells it (SQLite's names ignore ASCII case)."""
    names = _tables(conn)
    for name in names:
        if name == table:
            return name
    folded = [n for n in names if n.lower() == table.lower()]
    if len(folded) == 1:
        return folded[0]
    raise InputError(
        f"{display}: no such table {table!r}",
        hint=f"tables there: {', '.join(names[:20]) or 'none'}",
        code="no_such_table",
    )


def _read_query(conn: sqlite3.Connection, query: str, display: str) -> sqlite3.Cursor:
    """Run the user's ``query``: one statement that only reads (checked by SQLite's
    authorizer as the statement is compiled, before anything runs)."""
    refused: list[int] = []

    def authorize(action: int, *_args: Any) -> int:
        if action in _READ_ACTIONS:
            return sqlite3.SQLITE_OK
        refused.append(action)
        return sqlite3.SQLITE_DENY

    conn.set_authorizer(authorize)
    try:
        return conn.execute(query)
    except (sqlite3.ProgrammingError, sqlite3.Warning) as exc:
        if "one statement" not in str(exc):
            raise
        raise ConfigError(
            f"{display}: --query must be one SELECT statement, and this one has more "
            "after a ';'; nothing was run",
            hint="give only the SELECT that reads the lines",
        ) from None
    except sqlite3.DatabaseError:
        if not refused:
            raise
        raise ConfigError(
            f"{display}: --query may only read (one SELECT); this one does more, and "
            "nothing was run",
            hint="give only the SELECT that reads the lines, e.g. "
            "--query 'SELECT * FROM sales WHERE shop_id = 3'",
        ) from None
    finally:
        conn.set_authorizer(None)


#: What may follow a statement's closing ``;``: blanks and comments.
_TAIL_RE = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)


def _statement_body(query: str) -> str:
    """``query`` without its closing ``;`` and the blanks or comments after it, to be
    put inside the type scan's ``WITH`` (``SELECT ... ; -- last month`` broke it).

    A ``;`` is taken off only when nothing but blanks and comments follows it, so one
    inside a text literal or a comment stays (SQLite has already checked that the
    query is one statement).

    >>> _statement_body("SELECT * FROM sales; -- last month")
    'SELECT * FROM sales'
    >>> _statement_body("SELECT * FROM sales;\\n/* the shop's; own */")
    'SELECT * FROM sales'
    >>> _statement_body("SELECT * FROM sales WHERE note = 'a;b'")
    "SELECT * FROM sales WHERE note = 'a;b'"
    """
    body = query.strip()
    for end in (i for i, ch in enumerate(body) if ch == ";"):
        if _TAIL_RE.fullmatch(body, end + 1):  # the first ';' that only comments follow
            return body[:end].rstrip()
    return body


def _column_kinds(
    conn: sqlite3.Connection, relation: str, columns: list[str]
) -> tuple[list[str], int]:
    """How each column is read, from the storage classes its values have (one scan,
    0.8 s for a million lines of 8 columns): ``int``, ``float``, ``text``, ``blob`` or
    ``mixed`` (written as text); and the number of rows, counted in the same scan (the
    copy's progress shows it as the total: 0.07 s more per million rows)."""
    renamed = ", ".join(f"c{i}" for i in range(len(columns)))
    scan = ", ".join(f"group_concat(DISTINCT typeof(c{i}))" for i in range(len(columns)))
    # the relation on lines of its own: a query may end in a -- comment
    row = conn.execute(
        f"WITH r({renamed}) AS (\n{relation}\n) SELECT {scan}, count(*) FROM r"
    ).fetchone()
    kinds = []
    for i, found in enumerate(row[:-1]):
        classes = set((found or "").split(",")) - {"null", ""}
        if classes == {"integer", "real"}:
            # integers beyond 2**53 would lose digits as doubles: then keep the text
            big = conn.execute(
                f"WITH r({renamed}) AS (\n{relation}\n) SELECT 1 FROM r WHERE "
                f"typeof(c{i}) = 'integer' AND (c{i} > {_EXACT_DOUBLE} "
                f"OR c{i} < -{_EXACT_DOUBLE}) LIMIT 1"
            ).fetchone()
            kinds.append("mixed" if big else "float")
        elif len(classes) > 1:
            kinds.append("mixed")
        else:
            kinds.append(
                {"integer": "int", "real": "float", "blob": "blob"}.get(classes.pop(), "text")
                if classes
                else "text"  # no values at all
            )
    return kinds, int(row[-1])


_ARROW = {"int": pa.int64(), "float": pa.float64(), "text": pa.string(), "blob": pa.binary()}


def _as_text(value: Any) -> str | None:
    """A value of a mixed column as text: numbers as Python writes them (``repr`` keeps
    every digit of a double), blobs as UTF-8 (undecodable bytes replaced)."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return repr(value) if isinstance(value, float) else str(value)


def read_sqlite(
    path: str | os.PathLike[str],
    *,
    table: str | None = None,
    query: str | None = None,
    con: ibis.BaseBackend | None = None,
    display: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Any:
    """A table, view or the result of a ``SELECT`` in an SQLite file, as a segmint Source.

    The rows are copied once, in batches, into a Parquet file in the engine's spill
    folder (removed with the engine); every later stage scans that copy, like a large
    CSV file's. ``_row`` numbers the rows in the order SQLite returns them.

    Parameters
    ----------
    path : path
        The database file (an ``sqlite:///`` URL is resolved by :func:`sqlite_path`).
    table : str, optional
        The table or view to read (as the database spells it, or in another case).
    query : str, optional
        One ``SELECT`` to read instead; anything that would write, attach or change a
        setting is refused before it runs.
    con : ibis backend, optional
        The DuckDB backend to register the copy in; default a new one.
    display : str, optional
        How messages name the database (default: ``path``).
    progress : callable, optional
        Called with a short text as the copy goes on (the type scan, then rows copied
        so far of the total, and the rate; at most once a second); nothing is printed.

    Returns
    -------
    Source

    Raises
    ------
    ConfigError
        Both ``table`` and ``query`` given; no ``table`` for a database of several
        tables; a query that is not one read-only statement.
    InputError
        A missing, non-SQLite, damaged or unreadable file; a missing table; no rows; a
        locked database (:class:`~segmint.errors.EnvironmentFailure`, exit status 75).

    Examples
    --------
    >>> import sqlite3, tempfile, pathlib
    >>> db = pathlib.Path(tempfile.mkdtemp()) / "shop.db"
    >>> with sqlite3.connect(db) as c:
    ...     _ = c.execute("CREATE TABLE sales (customer TEXT, amount REAL)")
    ...     _ = c.execute("INSERT INTO sales VALUES ('a', 1.5), ('b', 2)")
    >>> read_sqlite(db, table="sales").count()
    2
    """
    from segmint.io import _ROW_COLUMN, _finish_view, _private_folder, connect

    path = Path(path)
    shown = display or str(path)
    if table is not None and query is not None:
        raise ConfigError(
            f"{shown}: say what to read with one of --table or --query, not both",
            hint="e.g. --table sales or --query 'SELECT * FROM sales WHERE ...'",
        )
    if not path.exists():
        hint = f"check the path (relative paths start from the current folder: {Path.cwd()})"
        if display and display.lower().startswith("sqlite:///") and not path.is_absolute():
            hint += f"; an absolute path takes four slashes: sqlite:////{path}"
        raise InputError(f"{shown}: no such file ({path})", hint=hint, code="file_not_found")
    if not path.is_file() or not is_sqlite_file(path):
        raise InputError(
            f"{shown}: is not an SQLite database (it does not start with SQLite's header)",
            hint="give an SQLite 3 database file, or read other files without --table/--query",
            code="not_sqlite",
        )
    conn = _connect(path, shown)
    try:
        with _errors(shown):
            conn.execute("BEGIN")  # one snapshot for the type scan and the copy
            if query is None:
                if table is None:
                    table = only_table(_tables(conn), shown)
                else:
                    table = _find_table(conn, table, shown)
                relation = f"SELECT * FROM {_quote(table)}"
                shown = f"{shown}#{table}"
                cur = conn.execute(relation)
            else:
                shown = f"{shown} (query)"
        if query is not None:
            with _errors(shown, "query"):
                cur = _read_query(conn, query, shown)
                relation = _statement_body(query)
        columns = [d[0] for d in cur.description or []]
        check_copied_columns(columns, shown, "SELECT a.id AS a_id, ...")
        if progress:
            progress(f"checking the types of the values in {shown}")
        with _errors(shown, "query" if query is not None else ""):
            kinds, total = _column_kinds(conn, relation, columns)
        con = con or connect()
        folder = _private_folder(con, "segmint-copy-", shown)
        target = folder / "rows.parquet"
        details: dict[str, Any] = {
            "table": table,
            "query": query,
            "copy": "parquet",
            "mixed_type_columns": [c for c, k in zip(columns, kinds, strict=True) if k == "mixed"],
        }
        try:
            report = _CopyProgress(progress, shown, total)
            rows = _copy(cur, columns, kinds, target, shown, query is not None, report)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
    finally:
        conn.close()
    if rows == 0:
        raise InputError(f"{shown}: has no rows", code="no_rows")
    log.info("copied %d rows of %s into %s", rows, shown, target)
    sql = f"read_parquet('{str(target).replace(chr(39), chr(39) * 2)}')"
    return _finish_view(con, sql, shown, "sqlite", details, row_column=_ROW_COLUMN, columnar=True)


def only_table(names: list[str], shown: str) -> str:
    """The one table of a database read without ``--table``; refused, listing them,
    when there are none or several (shared by the SQLite and MySQL readers)."""
    if len(names) != 1:
        if not names:
            raise InputError(f"{shown}: has no tables", code="no_rows")
        raise ConfigError(
            f"{shown}: has {len(names)} tables; say which one to read with --table (or "
            "give a --query)",
            hint=f"tables there: {', '.join(names[:20])}",
        )
    return names[0]


def check_copied_columns(columns: list[str], shown: str, example: str) -> None:
    """Refuse a table or query result that cannot be copied as it is: no columns, a
    column name twice (Parquet keeps one), or segmint's reserved ``_row``; ``example``
    shows how to rename in a ``--query``. Shared by the SQLite and MySQL readers."""
    if not columns:
        raise ConfigError(f"{shown}: --query returns no columns", hint="give a SELECT")
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    if repeated:
        raise InputError(
            f"{shown}: column name(s) {', '.join(map(repr, repeated))} appear more than once",
            hint=f"give each column its own name in the --query ({example})",
            code="duplicate_column",
        )
    if "_row" in columns:
        raise InputError(
            f"{shown}: has a column named '_row', which segmint reserves",
            hint="rename it in a --query (SELECT _row AS row_no, ...)",
            code="reserved_column",
        )


def _copy(
    cur: sqlite3.Cursor,
    columns: list[str],
    kinds: list[str],
    target: Path,
    display: str,
    is_query: bool,
    report: Callable[[int], None] = lambda _done: None,
) -> int:
    """Stream the cursor's rows into ``target`` (Parquet, zstd), with a 0-based row
    number column, calling ``report(rows so far)`` after each batch; return the number
    of rows."""
    import pyarrow.parquet as pq

    from segmint.io import _ROW_COLUMN

    schema = pa.schema(
        [
            pa.field(c, pa.string() if k == "mixed" else _ARROW[k])
            for c, k in zip(columns, kinds, strict=True)
        ]
        + [pa.field(_ROW_COLUMN, pa.int64())]
    )
    done = 0
    with pq.ParquetWriter(target, schema, compression="zstd") as writer:
        while True:
            with _errors(display, "query" if is_query else ""):
                batch = cur.fetchmany(BATCH_ROWS)
            if not batch:
                break
            arrays = []
            for i, (values, kind) in enumerate(zip(zip(*batch, strict=True), kinds, strict=True)):
                try:
                    if kind == "mixed":
                        arrays.append(pa.array([_as_text(v) for v in values], pa.string()))
                    else:
                        arrays.append(pa.array(values, _ARROW[kind]))
                except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
                    # the types were scanned in the same snapshot: only a query whose
                    # result changes from one run to the next (random()) gets here
                    raise InputError(
                        f"{display}: column {columns[i]!r} gave other types of values "
                        "than a first reading of the same rows",
                        hint="make the --query return the same rows each time it runs",
                        code="database_error",
                    ) from None
            arrays.append(pa.array(range(done, done + len(batch)), pa.int64()))
            writer.write_table(pa.Table.from_arrays(arrays, schema=schema))
            done += len(batch)
            report(done)
    return done
