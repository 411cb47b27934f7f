"""Readers for every supported source (DuckDB does the reading) and atomic writers.

A :class:`Source` wraps a lazy ibis table backed by DuckDB: nothing is pulled into pandas,
so files of several GB load with bounded memory. Every source gets a ``_row`` column, the
1-based number of the data row in the file (header excluded), used in error messages and in
the rejected-lines output.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import gzip
import itertools
import logging
import os
import re
import secrets
import shutil
import tempfile
import weakref
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
import pyarrow as pa

from segmint._tables import ACCEPTED, ArrowStreamTable, has_arrow_stream, refuse_lazy, to_arrow
from segmint.errors import ConfigError, EnvironmentFailure, InputError, WrongTypeError

__all__ = [
    "DEFAULT_MEMORY_LIMIT",
    "FORMATS",
    "Source",
    "atomic_path",
    "connect",
    "detect_encoding",
    "detect_format",
    "escape_formulas",
    "read_source",
    "translate_errors",
    "write_table",
]

log = logging.getLogger(__name__)

#: Supported formats and the file name endings that select them.
FORMATS: dict[str, tuple[str, ...]] = {
    "csv": (".csv", ".txt", ".dat"),
    "tsv": (".tsv", ".tab"),
    "parquet": (".parquet", ".pq", ".parq"),
    "excel": (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"),
    "json": (".json",),
    "ndjson": (".ndjson", ".jsonl"),
}
#: Formats read as text (every value parsed from a string). Their parsed lines are stored
#: once by cleaning; Parquet sources, and the Parquet copy of a large text file
#: (:attr:`Source.columnar`), are read again by each query.
TEXT_FORMATS = frozenset({"csv", "tsv", "json", "ndjson", "excel"})
_COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}
_SAMPLE_BYTES = 1 << 16
_CHUNK_BYTES = 1 << 22
#: Text files up to about this much text (a gzipped file counts 8x its size on disk)
#: are parsed once into a DuckDB table in memory at load; larger ones once into a Parquet
#: copy in the engine's spill folder (see :func:`_read_csv`). ``$SEGMINT_TEXT_IN_MEMORY``
#: (bytes; 0 = always the copy) overrides it.
MATERIALIZE_TEXT_BYTES = 256 << 20
_C1_BYTES = re.compile(rb"[\x80-\x9f]")
_TEMP_DIRS: list[Path] = []
_counter = itertools.count(1)


#: Engine defaults, overridable per call or by environment variables (the CLI's
#: ``--memory-limit``, ``--threads`` and ``--temp-dir`` set these).
DEFAULT_MEMORY_LIMIT = "1GB"


def connect(
    *,
    memory_limit: str | None = None,
    threads: int | None = None,
    temp_directory: str | os.PathLike[str] | None = None,
) -> ibis.BaseBackend:
    """Open an in-process DuckDB engine (through ibis) for one segmint session.

    Memory is bounded by default so that files far larger than memory run with a
    predictable footprint: above the limit DuckDB spills to a private temporary folder
    (removed with the engine, or at exit). Measured: 10M lines peak at about 1.2 GiB of
    process memory with the 1 GB default (benchmarks/README.md).

    Parameters
    ----------
    memory_limit : str, optional
        DuckDB memory limit such as ``"2GB"``; default ``$SEGMINT_MEMORY_LIMIT`` or
        ``"1GB"``. ``"none"`` leaves DuckDB's own default (80 % of RAM).
    threads : int, optional
        Worker threads; default ``$SEGMINT_THREADS`` or all cores.
    temp_directory : path, optional
        Where DuckDB spills; default ``$SEGMINT_TEMP_DIR`` or a private temporary folder.

    Returns
    -------
    ibis.BaseBackend
        An ibis DuckDB backend; ``backend.con`` is the raw DuckDB connection.

    Raises
    ------
    ConfigError
        For a memory limit or thread count DuckDB does not accept.
    """
    memory_limit = memory_limit or os.environ.get("SEGMINT_MEMORY_LIMIT") or DEFAULT_MEMORY_LIMIT
    env_threads = os.environ.get("SEGMINT_THREADS", "").strip()
    if threads is None and env_threads:
        if not env_threads.isdigit() or int(env_threads) < 1:
            # refused like a bad --threads (it was ignored, and every core used)
            raise ConfigError(
                f"SEGMINT_THREADS={env_threads!r} is not a number of threads",
                hint="give a whole number of at least 1, e.g. SEGMINT_THREADS=4",
            )
        threads = int(env_threads)
    temp = temp_directory or os.environ.get("SEGMINT_TEMP_DIR")
    private = None
    if not temp:
        private = Path(tempfile.mkdtemp(prefix="segmint-spill-"))
        temp = private
    raw = duckdb.connect()
    try:
        if str(memory_limit).lower() != "none":
            raw.execute(f"SET memory_limit = '{_sql_str(str(memory_limit))}'")
        if threads:
            raw.execute(f"SET threads = {int(threads)}")
        raw.execute(f"SET temp_directory = '{_sql_str(str(temp))}'")
    except duckdb.Error as exc:
        if private is not None:
            shutil.rmtree(private, ignore_errors=True)
        raise ConfigError(
            f"DuckDB refused the engine settings ({str(exc).splitlines()[0]})",
            hint="use e.g. --memory-limit 2GB and --threads 4",
        ) from exc
    raw.execute("SET preserve_insertion_order = true")
    raw.execute("SET enable_progress_bar = false")  # segmint reports progress itself
    # timestamps with a zone (Parquet, pandas) become UTC whatever the machine's zone
    # (DuckDB's own default is the local zone; ibis sets UTC too, said here explicitly
    # because dates, recencies and segments depend on it; tested)
    raw.execute("SET TimeZone = 'UTC'")
    backend = ibis.duckdb.from_connection(raw)
    if private is not None:
        # removed with the engine (a long-running service opens one per upload), or at
        # exit at the latest
        try:
            weakref.finalize(backend, shutil.rmtree, str(private), True)
        except TypeError:  # pragma: no cover - an engine object without weak references
            _TEMP_DIRS.append(private)
    return backend


#: A token in the names of the columns segmint adds to a source's own (a folder's part,
#: a row number), so that no column of the data can have their name: a data column
#: ``segmint_part`` was renamed ``segmint_part_1`` and the folder failed with a
#: TypeError, one called ``file_index`` hid DuckDB's own and the folder was unreadable
#: ("Could not convert string 'x' to UINT32").
_TOKEN = secrets.token_hex(6)

#: The hidden column of a folder's lines with each line's part (the position of its file
#: in the list read), so that errors can name the part file; never part of the source.
#: A number: the path on every line of a text folder parsed into memory took about 60
#: bytes a line (2M lines: 52 -> 167 MB).
PART_COLUMN = f"segmint_part_{_TOKEN}"
#: DuckDB's ``filename`` column of a folder's reader, under a name of segmint's own
#: (DuckDB's virtual ``file_index`` is hidden by a data column of that name).
_FILE_COLUMN = f"segmint_file_{_TOKEN}"
#: The 0-based row numbers of a text file parsed into memory.
_ROW_COLUMN = f"segmint_row_{_TOKEN}"


@dataclass
class Source:
    """A loaded source: a lazy ibis table plus what was detected about the file.

    Attributes
    ----------
    table : ibis.Table
        The source's own columns (as text for CSV/TSV) plus ``_row``.
    con : ibis.BaseBackend
        The DuckDB backend that evaluates ``table``.
    path : str
        The file read (``"<dataframe>"`` for in-memory data).
    format : str
        One of :data:`FORMATS` or ``"dataframe"``.
    details : dict
        What was detected or given: compression, encoding, delimiter, header, sheets.
    """

    table: ibis.Table
    con: ibis.BaseBackend
    path: str
    format: str
    details: dict[str, Any] = field(default_factory=dict)
    #: Whether each reading of ``table`` scans columnar data (a Parquet file, a database
    #: table, or the Parquet copy of a large text file), so that later stages read it
    #: lazily, like Parquet, instead of storing the coerced lines once as for text.
    #: Default: by the format (not one of :data:`TEXT_FORMATS`).
    columnar: bool | None = None
    #: A folder of parts: the relation behind ``table`` with each line's part (column
    #: :data:`PART_COLUMN`) and 1-based row (``part_row_sql``), and the part files' names
    #: in that order; read only by :meth:`part_rows` and :meth:`where`.
    part_relation: str | None = None
    part_row_sql: str | None = None
    part_names: list[str] = field(default_factory=list)
    #: Columns that hold instants although their ibis type carries no zone: Spark's
    #: ``TIMESTAMP`` (local time zone; a Parquet ``timestamp[tz]``, a catalog table's
    #: ``timestamp``), which ibis types like ``TIMESTAMP_NTZ``. ``--timezone`` converts
    #: them, as it converts DuckDB's and PostgreSQL's ``timestamptz``.
    instants: tuple[str, ...] = ()
    #: A workbook: each sheet read, in ``_row`` order, with the spreadsheet row number of
    #: each of its data rows (title and blank rows skipped); read only by :meth:`where`.
    sheet_rows: list[tuple[str, np.ndarray]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.columnar is None:
            self.columnar = self.format not in TEXT_FORMATS

    @property
    def columns(self) -> list[str]:
        """The source's own column names (without ``_row``)."""
        return [c for c in self.table.columns if c != "_row"]

    def count(self) -> int:
        """Number of data rows (one scan of the file)."""
        with translate_errors(self.path):
            return int(self.table.count().execute())

    def describe(self) -> dict[str, Any]:
        """A JSON-friendly summary of the source (no data scan)."""
        return {"path": self.path, "format": self.format, **self.details}

    def part_rows(self) -> ibis.Table | None:
        """For a folder of parts: each line's ``_row`` (as ``_part_line``) with its
        ``_part`` (the name shown in messages) and ``_part_row`` (1-based data row in that
        part), named so as not to meet a source's own columns; ``None`` else."""
        if self.part_relation is None:
            return None
        names = ", ".join(f"'{_sql_str(n)}'" for n in self.part_names)
        part = f"[{names}][p + 1]"
        name = f"segmint_parts_{next(_counter)}"
        with translate_errors(self.path):
            self.con.con.execute(
                f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT r AS _part_line, '
                f"{part} AS _part, r - min(r) OVER (PARTITION BY p) + 1 AS _part_row FROM "
                f'(SELECT "{PART_COLUMN}" AS p, {self.part_row_sql} AS r '
                f"FROM {self.part_relation})"
            )
        return self.con.table(name)

    def where(self, row: int) -> str:
        """Where data row ``row`` (``_row``) is, for messages: ``"data row 12"``, or for a
        folder of parts ``"data row 3 of part-00001.csv (row 12 of the folder)"``.

        A row counted across 200 Spark parts named no file a user could open; the part is
        looked up only here, on the way to an error (one scan of the parts). A workbook's
        row is named by its sheet and spreadsheet row (``"data row 3 of sheet '2011b'
        (spreadsheet row 6)"``): ``--all-sheets`` counted on through the sheets, and title
        rows above the header made the data row differ from the row Excel shows."""
        if self.sheet_rows:
            return self._sheet_where(row)
        if self.part_relation is None:
            return f"data row {row}"
        sql = (
            f'WITH n AS (SELECT "{PART_COLUMN}" AS p, {self.part_row_sql} AS r '
            f"FROM {self.part_relation}) "
            f"SELECT p, {int(row)} - min(r) + 1 FROM n "
            f"WHERE p = (SELECT p FROM n WHERE r = {int(row)}) GROUP BY p"
        )
        try:
            found = self.con.con.execute(sql).fetchone()
        except duckdb.Error:  # pragma: no cover - the message keeps the folder's row
            found = None
        if not found or not 0 <= found[0] < len(self.part_names):
            return f"data row {row}"
        part = self.part_names[found[0]]
        return f"data row {found[1]} of {part} (row {row} of the folder)"

    def _sheet_where(self, row: int) -> str:
        first = 1
        for name, rows in self.sheet_rows:
            if first <= row < first + len(rows):
                at = row - first
                where = f"data row {at + 1}"
                if len(self.sheet_rows) > 1:
                    where += f" of sheet {name!r}"
                return f"{where} (spreadsheet row {int(rows[at])})"
            first += len(rows)
        return f"data row {row}"


def detect_format(path: str | os.PathLike[str]) -> tuple[str, str | None]:
    """Return ``(format, compression)`` from the file name.

    Raises
    ------
    InputError
        When the ending is not one segmint reads; the message lists the supported ones.
    """
    name = Path(path).name.lower()
    compression = None
    for ending, comp in _COMPRESSIONS.items():
        if name.endswith(ending):
            compression, name = comp, name[: -len(ending)]
            break
    for fmt, endings in FORMATS.items():
        if name.endswith(endings):
            if compression and fmt in {"excel", "parquet"}:
                break
            return fmt, compression
    supported = ", ".join(e for endings in FORMATS.values() for e in endings)
    raise InputError(
        f"{path}: unknown file type (supported endings: {supported}, optionally "
        f"compressed with .gz or .zst)",
        hint="rename the file or give its format explicitly with --format "
        "csv|tsv|parquet|excel|json|ndjson",
        code="unknown_format",
    )


#: The encoding of a text file that is UTF-8 except for some lines written in Windows-1252
#: (a file appended to by two systems): UTF-8, with each byte that is not valid UTF-8
#: read as Windows-1252 (Latin-1 for its five unused bytes). A codec of that name is
#: registered, so it is also accepted as ``--encoding``.
MIXED_ENCODING = "utf-8+cp1252"
_MIXED_ERRORS = "segmint-cp1252-fallback"


def _cp1252_fallback(exc: UnicodeError) -> tuple[str, int]:
    """Codec error handler: the bytes that are not UTF-8, read as Windows-1252."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    text = "".join(
        chr(b) if b in b"\x81\x8d\x8f\x90\x9d" else bytes([b]).decode("cp1252")
        for b in exc.object[exc.start : exc.end]
    )
    return text, exc.end


def _mixed_codec(name: str) -> Any:
    import codecs

    if name not in {"utf_8_cp1252", MIXED_ENCODING}:  # the name as codecs.lookup passes it
        return None

    class _Decoder(codecs.BufferedIncrementalDecoder):
        def _buffer_decode(self, data: Any, errors: str, final: bool) -> tuple[str, int]:
            return codecs.utf_8_decode(data, _MIXED_ERRORS, final)

    def decode(data: Any, errors: str = "strict") -> tuple[str, int]:
        return codecs.utf_8_decode(data, _MIXED_ERRORS, True)

    return codecs.CodecInfo(
        name=MIXED_ENCODING,
        encode=codecs.utf_8_encode,
        decode=decode,
        incrementaldecoder=_Decoder,
        incrementalencoder=codecs.getincrementalencoder("utf-8"),
    )


def _register_mixed_codec() -> None:
    import codecs

    codecs.register_error(_MIXED_ERRORS, _cp1252_fallback)
    codecs.register(_mixed_codec)


_register_mixed_codec()


def detect_encoding(path: str | os.PathLike[str], compression: str | None = None) -> str:
    """Detect the text encoding of a file: ``utf-8``, ``utf-16``, ``cp1252``, ``latin-1``,
    or :data:`MIXED_ENCODING` (UTF-8 with some lines in Windows-1252).

    The whole file is streamed once in 4 MiB chunks (pure-ASCII chunks cost almost
    nothing). Written here rather than with a charset-detection library because those
    guess from letter statistics, which are unreliable on files that are 99.9 % ASCII
    digits; the realistic choice for shop exports is UTF-8 versus Windows-1252/Latin-1,
    and this check is exact for it: valid UTF-8 means UTF-8; otherwise any byte in
    0x80-0x9F (printable only in Windows-1252, e.g. the euro sign) means ``cp1252``,
    and none means ``latin-1``. A file with more valid UTF-8 characters than bytes that
    are not UTF-8 is UTF-8 with some lines in Windows-1252 (read as Windows-1252 whole,
    each of its ``£`` became ``Â£``); it is logged with the first such line.
    """
    import codecs

    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    good = bad = lines = 0
    first_bad: int | None = None
    has_c1 = False
    with _open_bytes(path, compression) as fh:
        data = fh.read(_CHUNK_BYTES)
        if data.startswith((b"\xff\xfe", b"\xfe\xff")):
            return "utf-16"
        while data:
            if not data.isascii():
                text = decoder.decode(data)
                # U+FFFD written in the file (EF BF BD) is no error
                n_bad = max(0, text.count("\ufffd") - data.count(b"\xef\xbf\xbd"))
                if n_bad and first_bad is None:
                    first_bad = lines + text.count("\n", 0, text.index("\ufffd")) + 1
                bad += n_bad
                good += len(text) - len(text.encode("ascii", "ignore")) - n_bad
                has_c1 = has_c1 or bool(_C1_BYTES.search(data))
                if bad >= 1000 and bad > 10 * good and has_c1:
                    break  # plainly a single-byte file: no need to read on
            lines += data.count(b"\n")
            data = fh.read(_CHUNK_BYTES)
    bad += decoder.decode(b"", final=True).count("\ufffd")
    if not bad:
        return "utf-8"
    if good > bad:
        log.warning(
            "%s: UTF-8 except %d byte(s) in Windows-1252 (the first in line %d): each is "
            "read as Windows-1252, the rest as UTF-8; give --encoding to read it otherwise",
            path,
            bad,
            first_bad or 1,
        )
        return MIXED_ENCODING
    return "cp1252" if has_c1 else "latin-1"


@contextlib.contextmanager
def _open_bytes(path: str | os.PathLike[str], compression: str | None) -> Iterator[Any]:
    """The decompressed bytes of ``path``; a compressed file cut short or damaged is an
    :class:`InputError` (Python's EOFError reached the CLI, which took it for Ctrl-D and
    printed only "Aborted!")."""
    import zlib

    try:
        with _open_raw(path, compression) as fh:
            yield fh
    except (EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise _damaged(path, exc) from None
    except Exception as exc:
        if type(exc).__name__ != "ZstdError":
            raise
        raise _damaged(path, exc) from None


def _damaged(path: str | os.PathLike[str], exc: BaseException) -> InputError:
    return InputError(
        f"{path}: the compressed file is cut short or damaged ({exc or type(exc).__name__})",
        hint="copy or download it again (gzip -t FILE checks a .gz file); if only its end "
        "is lost, decompress what is left and read that",
        code="damaged_file",
    )


@contextlib.contextmanager
def _open_raw(path: str | os.PathLike[str], compression: str | None) -> Iterator[Any]:
    if compression == "gzip":
        with gzip.open(path, "rb") as fh:
            yield fh
    elif compression == "zstd":
        try:
            import zstandard
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise InputError(
                f"{path}: reading .zst text needs the 'zstandard' package for detection",
                hint="give --encoding utf-8 (DuckDB reads .zst itself) or decompress it",
            ) from exc
        with open(path, "rb") as raw, zstandard.ZstdDecompressor().stream_reader(raw) as fh:
            yield fh
    else:
        with open(path, "rb") as fh:
            yield fh


def read_source(
    source: str | os.PathLike[str] | pd.DataFrame | pa.Table | ArrowStreamTable,
    *,
    format: str | None = None,
    encoding: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
    sheet: str | int | None = None,
    all_sheets: bool = False,
    con: ibis.BaseBackend | None = None,
    progress: Callable[[str], None] | None = None,
) -> Source:
    """Open a transaction or customer file as a lazy DuckDB-backed table.

    Parameters
    ----------
    source : path, pandas.DataFrame or a table with the Arrow stream interface
        A file (CSV/TSV/TXT, optionally ``.gz``/``.zst``; Parquet file or folder of
        Parquet parts; Excel ``.xlsx/.xlsm/.xls/.ods``; JSON array or NDJSON) or data
        already in memory. A CSV/TSV file is parsed here, once: into a table in memory,
        or above :data:`MATERIALIZE_TEXT_BYTES` into a Parquet copy in the engine's
        spill folder (``details["copy"]``), removed with the engine. Tables from other
        libraries (pyarrow Table or RecordBatchReader, polars DataFrame, DuckDB
        relation, ibis table: anything with ``__arrow_c_stream__``) are read once as
        Arrow, which DuckDB scans in place (no pandas copy); a polars LazyFrame must be
        collected first.
    format : str, optional
        Force a format instead of guessing it from the file name.
    encoding : str, optional
        Text encoding of CSV/TSV files. Default: detected (UTF-8, UTF-16, Windows-1252,
        Latin-1). Any Python codec name is accepted; encodings DuckDB does not read
        natively are transcoded to UTF-8 in a streaming pass.
    delimiter : str, optional
        Field separator; default sniffed (``,``, ``;``, tab, ``|``).
    header : bool, optional
        Whether the first line holds column names; default sniffed.
    sheet : str or int, optional
        Excel sheet name or 0-based index; default the first sheet.
    all_sheets : bool
        Concatenate every sheet (same columns required); adds a ``_sheet`` column.
    con : ibis backend, optional
        The DuckDB backend to register the source in; default a new one.
    progress : callable, optional
        For an SQLite file, called with a short text as its table is copied (rows so far
        of the total, and the rate; at most once a second), as
        :func:`segmint.sqlite.read_sqlite` does; nothing is printed.

    Returns
    -------
    Source

    Raises
    ------
    InputError
        With the file name and a fix for: missing paths, folders without data files,
        empty files, header-only files, binary content, unknown types, bad encodings.

    Examples
    --------
    >>> import pandas as pd
    >>> src = read_source(pd.DataFrame({"a": [1, 2]}))
    >>> src.count()
    2
    """
    if not isinstance(source, str | os.PathLike | pd.DataFrame | pa.Table):
        # polars, DuckDB relations, ibis tables, RecordBatchReaders: read once through the
        # Arrow C stream interface, which DuckDB scans without a pandas copy
        refuse_lazy(source, "read_source")
        if has_arrow_stream(source):
            source = to_arrow(source, "read_source")
        else:
            # Path() of an array or a dict raised pathlib's "expected str, bytes or
            # os.PathLike object"
            kind = f"{type(source).__module__}.{type(source).__qualname__}"
            raise WrongTypeError(
                f"the data must be a file path, {ACCEPTED}, not {kind}",
                hint="a dict or records: pandas.DataFrame(data); a NumPy array: a "
                "DataFrame with column names",
            )
    con = con or connect()
    if isinstance(source, pd.DataFrame | pa.Table):
        arrow = _frame_to_arrow(source) if isinstance(source, pd.DataFrame) else source
        _refuse_repeated(pd.Index(arrow.column_names))
        if arrow.num_rows == 0:
            raise InputError("the data given has no rows", code="empty_input")
        return _finish(con, arrow, "<dataframe>", "dataframe", {})

    path = Path(source)
    display = str(source)
    if not path.exists():
        raise InputError(
            f"{display}: no such file",
            hint=f"check the path (relative paths start from the current folder: {Path.cwd()})",
            code="file_not_found",
        )
    if path.is_dir():
        return _read_directory(con, path, display, encoding, delimiter, header)
    if path.is_file():
        from segmint.sqlite import is_sqlite_file, read_sqlite

        if is_sqlite_file(path):
            # its only table (a database of several says which to give with --table)
            return read_sqlite(path, con=con, display=display, progress=progress)
        _refuse_model_bundle(path, display)
    if format is None:
        fmt, compression = detect_format(path)
    else:
        fmt = format.lower()
        if fmt not in FORMATS:
            raise ConfigError(
                f"unknown format {format!r}",
                hint=f"use one of: {', '.join(FORMATS)}",
            )
        compression = next(
            (c for e, c in _COMPRESSIONS.items() if path.name.lower().endswith(e)), None
        )
    if path.stat().st_size == 0:
        raise InputError(
            f"{display}: the file is empty (0 bytes)",
            hint="export the data again; the file has no header and no rows",
            code="empty_file",
        )
    if (sheet is not None or all_sheets) and fmt != "excel":
        raise ConfigError(
            f"{display}: --sheet/--all-sheets apply to Excel files, and this is {fmt}",
            hint="leave the sheet option out",
        )
    if fmt in {"csv", "tsv"}:
        if fmt == "tsv" and delimiter is None:
            delimiter = "\t"
        return _read_csv(con, path, display, compression, encoding, delimiter, header)
    if fmt == "parquet":
        repeated, int96 = _parquet_footers(con, [path], None, display)
        details: dict[str, Any] = {"repeated_columns": repeated} if repeated else {}
        # a single file numbers its rows in parallel (file_row_number) instead of with a
        # single-threaded row_number() window (which a file with a column of that name
        # still needs)
        sql = f"read_parquet('{_sql_str(str(path))}')"
        if "file_row_number" in _column_names(con, sql, display):
            source = _finish_view(con, sql, display, fmt, details)
        else:
            sql = f"read_parquet('{_sql_str(str(path))}', file_row_number=true)"
            source = _finish_view(con, sql, display, fmt, details, row_column="file_row_number")
        source.instants = int96
        return source
    if fmt in {"json", "ndjson"}:
        sample = _check_not_binary(path, display, compression)
        kind = "newline_delimited" if fmt == "ndjson" else _json_kind(sample, display)
        sql = _json_as_text(con, f"read_json('{_sql_str(str(path))}', format='{kind}')", display)
        # parsed once, as CSV is: into memory, or a large file into a Parquet copy that
        # later stages scan instead of parsing the JSON again
        small = path.stat().st_size * (8 if compression else 1) <= _in_memory_text_bytes()
        details = {"compression": compression, "in_memory": small}
        if small:
            return _finish_view(con, sql, display, fmt, details, materialize=True)
        details["copy"] = "parquet"
        copy_sql, row_column = _parquet_copy(con, sql, display, details)
        return _finish_view(
            con, copy_sql, display, fmt, details, row_column=row_column, columnar=True
        )
    return _read_excel(con, path, display, sheet, all_sheets)


def _refuse_model_bundle(path: Path, display: str) -> None:
    """Refuse a segmint model bundle given where data is expected (``segmint inspect
    model.segmint``, or ``score``'s two files swapped): it was "unknown file type" with
    a hint to rename the file, which sends the user the wrong way."""
    if not (path.name.lower().endswith(".segmint") or zipfile.is_zipfile(path)):
        return
    try:
        with zipfile.ZipFile(path) as z:
            names = set(z.namelist())
    except (zipfile.BadZipFile, OSError):
        names = set()
    if path.name.lower().endswith(".segmint") or {"metadata.json", "model.skops"} <= names:
        raise InputError(
            f"{display}: is a segmint model, not data",
            hint="give the transactions file here; a model is used with "
            "`segmint score MODEL DATA --out PATH` (the model first) or `segmint serve MODEL`",
            code="model_not_data",
        )


def _read_directory(
    con: ibis.BaseBackend,
    path: Path,
    display: str,
    encoding: str | None = None,
    delimiter: str | None = None,
    header: bool | None = None,
) -> Source:
    """A folder of Parquet (or CSV) parts, as Spark and many exporters write them.

    The parts' columns are matched by name (``union_by_name``): a column that only later
    parts have (a field added to the export) was dropped from every part when the first
    part's columns were taken for all, and is now kept, missing in the parts without it.
    CSV parts are read as one CSV file is: ``encoding``, ``delimiter`` and ``header``
    apply to every part, and without ``encoding`` each part's encoding is detected.
    """
    if (path / "run.json").is_file() or (path / "model.segmint").is_file():
        raise InputError(
            f"{display}: is a folder of segmint results (it holds run.json or "
            "model.segmint), not input data",
            hint="give the transactions file itself; to assign segments with this run's "
            f"model: segmint score {display} DATA --out scored.parquet",
            code="segmint_output",
        )
    parts = sorted(path.rglob("*.parquet"))
    # CSV parts, also compressed as Spark writes them (part-00000-....csv.gz)
    endings = tuple(".csv" + e for e in ("", *_COMPRESSIONS))
    texts = sorted(p for p in path.rglob("*") if p.name.lower().endswith(endings) and p.is_file())
    if parts and texts:
        # only the Parquet parts were read, and the CSV parts' lines left out without a word
        raise InputError(
            f"{display}: holds both Parquet parts ({len(parts)}, e.g. "
            f"{_part_names(path, parts[:1])[0]}) and CSV parts ({len(texts)}, e.g. "
            f"{_part_names(path, texts[:1])[0]}); segmint reads one kind per folder",
            hint="move the parts of one kind to a folder of their own, or convert them to "
            "the other kind",
            code="mixed_parts",
        )
    if parts:
        # the files listed, not a glob: the position of each in the list is its part
        sql = _with_part("read_parquet", parts, ["union_by_name=true"])
        names = _part_names(path, parts)
        details: dict[str, Any] = {"parts": len(parts)}
        repeated, int96 = _parquet_footers(con, parts, names, display)
        if repeated:
            details["repeated_columns"] = repeated
        source = _finish_view(con, sql, display, "parquet", details, parts=names)
        source.instants = int96
        return source
    if texts:
        return _read_csv_parts(con, path, texts, display, {}, encoding, delimiter, header)
    raise InputError(
        f"{display}: is a folder, not a file, and holds no .parquet or .csv(.gz/.zst) parts",
        hint="give the path of a data file (or of a folder of Parquet/CSV parts)",
        code="is_directory",
    )


def _part_names(folder: Path, parts: list[Path]) -> list[str]:
    """The name of each part shown in messages: its path inside the folder."""
    return [str(p.relative_to(folder)) for p in parts]


def _with_part(function: str, files: list[Path], options: list[str]) -> str:
    """DuckDB's reader ``function`` of ``files`` with ``options``, and with
    :data:`PART_COLUMN`: each line's file, its position in ``files``.

    Taken from DuckDB's ``filename`` under a name of segmint's own, not from its virtual
    ``file_index``, which a data column of that name hides (its values were taken for
    part numbers); only the number is kept."""
    listed = "[" + ", ".join(f"'{_sql_str(str(f))}'" for f in files) + "]"
    named = ", ".join([*options, f"filename='{_FILE_COLUMN}'"])
    reader = f"{function}({listed}, {named})"
    return (
        f'(SELECT * EXCLUDE ("{_FILE_COLUMN}"), (list_position({listed}, "{_FILE_COLUMN}") '
        f'- 1)::UINTEGER AS "{PART_COLUMN}" FROM {reader})'
    )


def _read_csv_parts(
    con: ibis.BaseBackend,
    folder: Path,
    parts: list[Path],
    display: str,
    details: dict[str, Any],
    encoding: str | None,
    delimiter: str | None,
    header: bool | None,
) -> Source:
    """CSV parts parsed once, as a single CSV file is (into memory, or into the Parquet
    copy when large), with the dialect sniffed from the first part. Parts in an encoding
    DuckDB does not read, or in another encoding than the rest, are transcoded to UTF-8
    first (a folder of cp1252 parts with ``£`` was refused as "not valid UTF-8" although
    ``--encoding cp1252`` was given: the option was not passed on)."""
    comps = [_COMPRESSIONS.get(p.suffix.lower()) for p in parts]
    empty = []
    for part, comp in zip(parts, comps, strict=True):
        try:
            _check_not_binary(part, str(part), comp)
        except InputError as exc:
            if exc.code != "empty_file":
                raise
            empty.append(part)
    if empty and len(empty) < len(parts):
        # a Spark job writes an empty part for each empty partition: it holds no line,
        # and the folder was refused as "the file is empty"
        log.warning(
            "%s: %d empty part(s) left out (e.g. %s)",
            display,
            len(empty),
            _part_names(folder, empty[:1])[0],
        )
        keep = [i for i, p in enumerate(parts) if p not in empty]
        parts, comps = [parts[i] for i in keep], [comps[i] for i in keep]
        details["empty_parts"] = len(empty)
    elif empty:
        raise InputError(
            f"{display}: every part is empty ({len(parts)} parts)",
            hint="export the data again",
            code="empty_file",
        )
    details["parts"] = len(parts)
    if encoding is not None:
        _check_encoding_name(encoding)
        encodings = [encoding] * len(parts)
    else:
        encodings = [detect_encoding(p, c) for p, c in zip(parts, comps, strict=True)]
    natives = {_DUCKDB_ENCODINGS.get(e.lower()) for e in encodings}
    files = list(parts)
    folders: list[Path] = []
    if len(natives) == 1 and None not in natives:
        native = natives.pop()
    else:
        native = "utf-8"
        for i, (part, enc) in enumerate(zip(parts, encodings, strict=True)):
            if _DUCKDB_ENCODINGS.get(enc.lower()) != "utf-8":
                files[i] = _transcode(con, part, comps[i], enc, str(part))
                folders.append(files[i].parent)
    first_comp = comps[0] if files[0] == parts[0] else None
    details.update(
        {
            "compression": "+".join(dict.fromkeys(c for c in comps if c)) or None,
            "encoding": "+".join(dict.fromkeys(encodings)),
            "encoding_detected": encoding is None,
        }
    )
    if folders:
        details["transcoded"] = True
    size = sum(p.stat().st_size * (8 if c else 1) for p, c in zip(parts, comps, strict=True))
    small = size <= _in_memory_text_bytes()
    try:
        return _parse_csv(
            con,
            files[0],
            first_comp,
            display,
            native,
            delimiter,
            header,
            details,
            in_memory=small,
            files=files,
            part_names=_part_names(folder, parts),
            compressions=[
                c if f == p else None for f, p, c in zip(files, parts, comps, strict=True)
            ],
        )
    finally:
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)


def _check_not_binary(path: Path, display: str, compression: str | None) -> bytes:
    try:
        with _open_bytes(path, compression) as fh:
            sample = fh.read(_SAMPLE_BYTES)
    except (OSError, EOFError) as exc:
        raise InputError(
            f"{display}: cannot be read as {compression or 'plain'} data ({exc})",
            hint="check that the file is complete and its ending matches its content",
            code="unreadable_file",
        ) from exc
    if not sample:
        raise InputError(
            f"{display}: the file is empty", hint="export the data again", code="empty_file"
        )
    if len(sample) < _SAMPLE_BYTES and not sample.removeprefix(b"\xef\xbb\xbf").strip():
        # only blanks (or a byte-order mark): DuckDB read a header "column0" and no rows
        raise InputError(
            f"{display}: holds only blank lines (no header, no data)",
            hint="export the data again",
            code="empty_file",
        )
    nul = sample.find(b"\x00")
    if nul >= 0 and not sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(
            f"{display}: does not look like a text file (binary content at byte {nul})",
            hint="is it a spreadsheet or an archive saved with a .csv/.json ending? "
            "Export it as CSV, or give --format",
            code="binary_file",
        )
    return sample


_DUCKDB_ENCODINGS = {
    "utf-8": "utf-8",
    "utf8": "utf-8",
    "latin-1": "latin-1",
    "latin1": "latin-1",
    "iso-8859-1": "latin-1",
    "utf-16": "utf-16",
}


def _read_csv(
    con: ibis.BaseBackend,
    path: Path,
    display: str,
    compression: str | None,
    encoding: str | None,
    delimiter: str | None,
    header: bool | None,
) -> Source:
    _check_not_binary(path, display, compression)
    detected = encoding is None
    small = path.stat().st_size * (8 if compression else 1) <= _in_memory_text_bytes()
    if encoding is None and small and not _has_utf16_bom(path, compression):
        # a small file is parsed whole at once: let DuckDB's UTF-8 check decide, and
        # scan the bytes in Python only when it fails (saves a pass over the file)
        try:
            source = _read_csv(con, path, display, compression, "utf-8", delimiter, header)
        except InputError as exc:
            if exc.code != "bad_encoding":
                raise
        else:
            source.details["encoding_detected"] = True
            return source
    if encoding is None:
        encoding = detect_encoding(path, compression)
    else:
        _check_encoding_name(encoding)
    details: dict[str, Any] = {
        "compression": compression,
        "encoding": encoding,
        "encoding_detected": detected,
    }
    read_path = path
    native = _DUCKDB_ENCODINGS.get(encoding.lower())
    if native is None:
        read_path = _transcode(con, path, compression, encoding, display)
        details["transcoded"] = True
        native = "utf-8"
    try:
        return _parse_csv(
            con,
            read_path,
            compression if read_path == path else None,
            display,
            native,
            delimiter,
            header,
            details,
            in_memory=small,
        )
    finally:
        if read_path != path:
            # the lines are parsed (into memory or the Parquet copy): nothing reads the
            # UTF-8 text again, and it is as large as the file
            shutil.rmtree(read_path.parent, ignore_errors=True)


def _check_encoding_name(encoding: str) -> None:
    """Refuse an encoding name Python does not know (``--encoding``)."""
    import codecs

    try:
        codecs.lookup(encoding)
    except LookupError as exc:
        raise ConfigError(
            f"unknown encoding {encoding!r}",
            hint="use e.g. utf-8, latin-1, cp1252, utf-16",
        ) from exc


def _parse_csv(
    con: ibis.BaseBackend,
    read_path: Path,
    compression: str | None,
    display: str,
    native: str,
    delimiter: str | None,
    header: bool | None,
    details: dict[str, Any],
    *,
    in_memory: bool,
    files: list[Path] | None = None,
    part_names: list[str] | None = None,
    compressions: list[str | None] | None = None,
) -> Source:
    """Sniff the dialect of a text file DuckDB reads in ``native`` encoding and parse it
    once: into a table in memory, or (``in_memory=False``) into a Parquet copy.

    ``files`` (parts of one table, ``read_path`` the first) are parsed together with the
    dialect of ``read_path``, their columns matched by name (``part_names`` and
    ``compressions``: theirs, in the same order)."""
    encoding = details["encoding"]
    options = [f"encoding='{native}'"]
    if delimiter is not None:
        if len(delimiter.encode()) != 1 and delimiter != "\\t":
            raise ConfigError(
                f"delimiter must be one character, got {delimiter!r}",
                hint="use e.g. --delimiter ';' or --delimiter '\\t'",
            )
        options.append(f"delim='{_sql_str(delimiter)}'")
    if header is not None:
        options.append(f"header={'true' if header else 'false'}")
    file_sql = _sql_str(str(read_path))
    try:
        with translate_errors(display, encoding=encoding):
            sniff = con.con.execute(
                f"SELECT Delimiter, HasHeader, len(Columns), SkipRows FROM sniff_csv('{file_sql}', "
                f"{', '.join(options)}, sample_size=20480)"
            ).fetchone()
    except InputError:
        _ragged_line(read_path, compression, native, display)
        raise
    if delimiter is None and header is not False:
        # one bad line in the sample can make the sniffer take the whole header for one
        # column, or pick another delimiter ("no column for customer_id (columns found:
        # A;B;C)"): say which line, when the lines agree on another layout
        head = _text_lines(read_path, compression, native, 1)
        if head and (sniff[2] == 1 or sniff[0] not in head[0]):
            _ragged_line(read_path, compression, native, display)
    if sniff[3] and header is not False:
        # a line with more fields than the header (an unquoted delimiter) made the sniffer
        # skip every line above it and take that line for the header: a file read as
        # zero rows, and a folder's part silently left out
        _ragged_line(read_path, compression, native, display)
    # the sniffed number of lines above the header, for every part of a folder too (each
    # part was sniffed on its own, so one ragged part lost all its lines)
    options.append(f"skip={int(sniff[3])}")
    details["delimiter"] = delimiter if delimiter is not None else sniff[0]
    details["header"] = header if header is not None else bool(sniff[1])
    if delimiter is None:
        options.append(f"delim='{_sql_str(details['delimiter'])}'")
    if header is None:
        options.append(f"header={'true' if details['header'] else 'false'}")
    if files is not None:
        if details["header"]:
            _check_part_headers(
                files,
                compressions or [compression] * len(files),
                part_names or [f.name for f in files],
                native,
                int(sniff[3]),
                details["delimiter"],
                display,
            )
        sql = _with_part("read_csv", files, [*options, "union_by_name=true", "all_varchar=true"])
    else:
        sql = f"read_csv('{file_sql}', {', '.join(options)}, all_varchar=true)"
    details["in_memory"] = in_memory
    try:
        source = _parse_text(con, sql, display, details, in_memory, part_names)
    except InputError:
        if files is not None:
            # DuckDB names the part it could not read, not the line: find the line
            for i, f in enumerate(files):
                comp = compressions[i] if compressions else None
                name = part_names[i] if part_names else f.name
                _ragged_line(f, comp, native, f"{display}/{name}")
        raise
    if details["header"]:
        repeated = _csv_repeated_names(
            con,
            files if files is not None else [read_path],
            compressions if compressions is not None else [compression],
            part_names if files is not None else None,
            native,
            options,
            int(sniff[3]),
            details["delimiter"],
            source.columns,
            display,
        )
        if repeated:
            details["repeated_columns"] = repeated
    return source


def _parse_text(
    con: ibis.BaseBackend,
    sql: str,
    display: str,
    details: dict[str, Any],
    in_memory: bool,
    part_names: list[str] | None,
) -> Source:
    """Parse the text ``sql`` reads once, into memory or into a Parquet copy."""
    if in_memory:
        # a small text file is parsed once into memory: the mapping profile, the checks,
        # cleaning and the rejected lines then read the table instead of parsing (and
        # un-gzipping) the text again each time (Online Retail: resolve + clean 4.1 -> 1.8 s)
        return _finish_view(con, sql, display, "csv", details, materialize=True, parts=part_names)
    # a larger one once into a Parquet file of its text values: every later stage scans
    # that (in parallel, only the columns it needs) like a Parquet source, instead of
    # parsing the text again (10M lines: see benchmarks/README.md)
    details["copy"] = "parquet"
    copy_sql, row_column = _parquet_copy(con, sql, display, details)
    return _finish_view(
        con,
        copy_sql,
        display,
        "csv",
        details,
        row_column=row_column,
        columnar=True,
        parts=part_names,
    )


def _column_names(con: ibis.BaseBackend, relation_sql: str, display: str) -> list[str]:
    """The column names of ``relation_sql`` (bound, not read)."""
    with translate_errors(display):
        return [r[0] for r in con.con.execute(f"DESCRIBE SELECT * FROM {relation_sql}").fetchall()]


def _repeated_names(
    raw: list[str | None], loaded: list[str], part: str | None = None
) -> list[dict[str, Any]]:
    """The names ``raw`` (a file's header) holds more than once, compared as DuckDB does
    (case-insensitively): each with its 1-based positions and the names the columns were
    loaded under (``loaded``, in the same order: DuckDB calls the second ``X_1``).

    Read as they were, the second column of a repeated name was an unused ``X_1`` and
    nothing said which one the mapping took; :func:`segmint.schema.resolve` refuses a
    repeated name it would use and warns about the others."""
    groups: dict[str, list[int]] = {}
    for i, name in enumerate(raw):
        if name is not None and name.strip():
            groups.setdefault(name.strip().lower(), []).append(i)
    found = []
    for positions in groups.values():
        if len(positions) > 1 and max(positions) < len(loaded):
            entry: dict[str, Any] = {
                "name": str(raw[positions[0]]).strip(),
                "positions": [i + 1 for i in positions],
                "columns": [loaded[i] for i in positions],
            }
            if part is not None:
                entry["part"] = part
            found.append(entry)
    return found


def _csv_header(
    path: Path, compression: str | None, encoding: str, skip: int, delim: str
) -> list[str]:
    """The fields of a text file's header line (after ``skip`` lines), as written."""
    import csv

    lines = _text_lines(path, compression, encoding, skip + 1)
    if len(lines) <= skip:
        return []
    line = lines[skip].removeprefix("\ufeff")
    try:
        return next(csv.reader([line], delimiter=delim), [])
    except csv.Error:
        return []


def _check_part_headers(
    files: list[Path],
    compressions: list[str | None],
    names: list[str],
    encoding: str,
    skip: int,
    delim: str,
    display: str,
) -> None:
    """Refuse a folder's part whose header is not one of the first part's layout: written
    with another delimiter (its lines were one column, dropped as "no customer id"), or
    without a header line (its first line was taken for column names, and every line
    dropped). Columns added, left out or in another order are fine (matched by name).

    Raises
    ------
    InputError
        Naming the part and what its first line holds.
    """
    first = _csv_header(files[0], compressions[0], encoding, skip, delim)
    known = {h.strip().lower() for h in first if h.strip()}
    if len(first) < 2:
        return
    for f, comp, name in zip(files[1:], compressions[1:], names[1:], strict=True):
        head = _csv_header(f, comp, encoding, skip, delim)
        if not head:
            continue
        line = delim.join(head)
        if len(head) == 1:
            raise InputError(
                f"{display}/{name}: its header {line[:100]!r} has no {delim!r}, the "
                f"delimiter of {names[0]}: the part is written in another layout",
                hint="export every part with the same delimiter (or read that part on its "
                "own, with --delimiter)",
                code="mixed_parts",
            )
        if not {h.strip().lower() for h in head} & known:
            raise InputError(
                f"{display}/{name}: its first line {line[:100]!r} shares no column name "
                f"with the header of {names[0]}: the part has no header line, or other "
                "columns",
                hint="export every part with the same header line",
                code="mixed_parts",
            )


def _csv_repeated_names(
    con: ibis.BaseBackend,
    files: list[Path],
    compressions: list[str | None],
    names: list[str] | None,
    native: str,
    options: list[str],
    skip: int,
    delim: str,
    loaded: list[str],
    display: str,
) -> list[dict[str, Any]]:
    """:func:`_repeated_names` of every file's header; ``loaded``: the columns of the one
    file read alone (a folder's part is described alone when its header repeats a name)."""
    found: list[dict[str, Any]] = []
    for i, f in enumerate(files):
        raw = _csv_header(f, compressions[i], native, skip, delim)
        lowered = [r.strip().lower() for r in raw if r.strip()]
        if len(set(lowered)) == len(lowered):
            continue
        if names is None:
            found += _repeated_names(raw, loaded)
            continue
        sql = f"read_csv('{_sql_str(str(f))}', {', '.join(options)}, all_varchar=true)"
        found += _repeated_names(raw, _column_names(con, sql, display), names[i])
    return found


def _parquet_footers(
    con: ibis.BaseBackend, files: list[Path], names: list[str] | None, display: str
) -> tuple[list[dict[str, Any]], tuple[str, ...]]:
    """What the Parquet files' footers (only they are read) tell: the repeated column
    names (:func:`_repeated_names`: pyarrow writes a table whose columns repeat a name,
    and DuckDB reads the second as ``X_1``), and the top-level columns stored as INT96
    timestamps in any file.

    INT96 is the timestamp Spark (its default ``outputTimestampType``) and Hive write: a
    UTC instant, which Spark reads as one, while DuckDB types it as a zone-less
    ``TIMESTAMP``. They are :attr:`Source.instants`, so ``--timezone`` moves them to the
    shop's local time on DuckDB as it does on Spark (the same file, the same days).
    """
    import pyarrow.parquet as pq

    found: list[dict[str, Any]] = []
    int96: dict[str, None] = {}
    for i, f in enumerate(files):
        try:
            schema = pq.read_metadata(f).schema
            raw = schema.to_arrow_schema().names
        except (pa.ArrowException, OSError):
            continue  # DuckDB's own reading says what is wrong with it
        for j in range(len(schema)):
            column = schema.column(j)
            # a top-level column's path is its name ("s.ts" is field ts of a struct s)
            if column.physical_type == "INT96" and column.path == column.name:
                int96[column.name] = None
        lowered = [r.lower() for r in raw]
        if len(set(lowered)) == len(lowered):
            continue
        loaded = _column_names(con, f"read_parquet('{_sql_str(str(f))}')", display)
        found += _repeated_names(raw, loaded, None if names is None else names[i])
    return found, tuple(int96)


def _in_memory_text_bytes() -> int:
    """:data:`MATERIALIZE_TEXT_BYTES`, or ``$SEGMINT_TEXT_IN_MEMORY`` (bytes) when set."""
    value = os.environ.get("SEGMINT_TEXT_IN_MEMORY", "").strip()
    if not value:
        return MATERIALIZE_TEXT_BYTES
    if not value.isdigit():
        raise ConfigError(
            f"SEGMINT_TEXT_IN_MEMORY={value!r} is not a number of bytes",
            hint="give a whole number of bytes, e.g. 268435456 (256 MiB); 0 puts every "
            "text file into a Parquet copy",
        )
    return int(value)


def _parquet_copy(
    con: ibis.BaseBackend, relation_sql: str, display: str, details: dict[str, Any]
) -> tuple[str, str]:
    """Parse ``relation_sql`` once into a Parquet file in a private folder of the engine's
    spill folder; return the SQL that reads it and its column of 0-based row numbers.

    The copy is written in the order of the lines (DuckDB keeps the insertion order of a
    ``COPY`` when ``preserve_insertion_order`` is on, as :func:`connect` sets it), so
    Parquet's own ``file_row_number`` is the data row number of the text file: numbering
    the lines in a window while copying made the copy single-threaded (10M lines: about
    twice the time), and is done only for a file with a column of that name. The folder
    is removed with the engine, or at exit.
    """
    columns = _column_names(con, relation_sql, display)
    numbered = ""
    row_column = "file_row_number"
    if row_column in columns:
        row_column = _ROW_COLUMN
        numbered = f', row_number() OVER () - 1 AS "{row_column}"'
    folder = _private_folder(con, "segmint-copy-", display)
    target = _sql_str(str(folder / "lines.parquet"))
    raw = con.con
    ordered = str(
        raw.execute("SELECT current_setting('preserve_insertion_order')").fetchone()[0]
    ).lower() in {"true", "1"}
    log.info("parsing %s once into %s", display, folder)
    try:
        if not ordered:
            raw.execute("SET preserve_insertion_order = true")
        with translate_errors(display, encoding=details.get("encoding")):
            raw.execute(
                f"COPY (SELECT *{numbered} FROM {relation_sql}) TO '{target}' "
                "(FORMAT parquet, COMPRESSION zstd)"
            )
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    finally:
        if not ordered:
            raw.execute("SET preserve_insertion_order = false")
    if numbered:
        return f"read_parquet('{target}')", row_column
    return f"read_parquet('{target}', file_row_number=true)", row_column


def _private_folder(con: ibis.BaseBackend, prefix: str, display: str) -> Path:
    """A new folder inside the engine's spill folder (the system's temporary folder when
    the engine has DuckDB's default, ``.tmp`` in the current folder), removed when the
    engine is garbage-collected or at exit, whichever comes first."""
    base = ""
    with contextlib.suppress(duckdb.Error, AttributeError):
        base = str(con.con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    root = Path(base) if base and base != ".tmp" else Path(tempfile.gettempdir())
    try:
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=prefix, dir=root))
    except OSError as exc:
        raise InputError(
            f"{display}: cannot write the engine's temporary copy to {root} ({exc})",
            hint="give --temp-dir a folder that exists and you can write to "
            "(or leave it out for a private temporary folder)",
            code="spill_folder",
        ) from exc
    try:
        weakref.finalize(con, shutil.rmtree, str(folder), True)
    except TypeError:  # pragma: no cover - an engine object without weak references
        _TEMP_DIRS.append(folder)
    return folder


def _has_utf16_bom(path: Path, compression: str | None) -> bool:
    with _open_bytes(path, compression) as fh:
        return fh.read(2) in (b"\xff\xfe", b"\xfe\xff")


def _transcode(
    con: ibis.BaseBackend, path: Path, compression: str | None, encoding: str, display: str
) -> Path:
    """Stream a file in an encoding DuckDB cannot read into a temporary UTF-8 copy (in a
    private folder of the engine's spill folder; the caller removes it once parsed)."""
    tmpdir = _private_folder(con, "segmint-transcode-", display)
    out = tmpdir / "transcoded.csv"
    log.info("transcoding %s from %s to UTF-8", display, encoding)
    import codecs

    decoder = codecs.getincrementaldecoder(encoding)(errors="strict")
    try:
        with _open_bytes(path, compression) as src, open(out, "w", encoding="utf-8") as dst:
            while data := src.read(_CHUNK_BYTES):
                dst.write(decoder.decode(data))
            dst.write(decoder.decode(b"", final=True))
    except UnicodeDecodeError as exc:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise InputError(
            f"{display}: is not valid {encoding} ({exc.reason} at byte {exc.start} of a chunk)",
            hint="give the right --encoding (utf-8, cp1252, latin-1, ...)",
            code="bad_encoding",
        ) from exc
    except BaseException:
        shutil.rmtree(tmpdir, ignore_errors=True)
        raise
    return out


def _cleanup_temp_dirs() -> None:
    for d in _TEMP_DIRS:
        shutil.rmtree(d, ignore_errors=True)


atexit.register(_cleanup_temp_dirs)


def _read_excel(
    con: ibis.BaseBackend, path: Path, display: str, sheet: str | int | None, all_sheets: bool
) -> Source:
    from python_calamine import CalamineWorkbook

    try:
        book = CalamineWorkbook.from_path(str(path))
    except Exception as exc:
        raise InputError(
            f"{display}: cannot be read as a spreadsheet ({exc})",
            hint="open it in a spreadsheet program and save it as .xlsx or .csv",
            code="unreadable_file",
        ) from exc
    names = list(book.sheet_names)
    if all_sheets:
        chosen = names
    elif sheet is None:
        chosen = names[:1]
    elif isinstance(sheet, str) and sheet in names:  # a name wins, also "2024" or "1"
        chosen = [sheet]
    elif isinstance(sheet, int) or (isinstance(sheet, str) and sheet.isdigit()):
        idx = int(sheet)
        if not 0 <= idx < len(names):
            raise InputError(
                f"{display}: has "
                + (f"no sheet named {sheet!r} and " if isinstance(sheet, str) else "")
                + f"no sheet number {idx} (it has {len(names)}: {names})",
                hint="give one of the sheet names above; sheet numbers start at 0",
                code="unknown_sheet",
            )
        chosen = [names[idx]]
    else:
        if sheet not in names:
            raise InputError(
                f"{display}: has no sheet {sheet!r}; sheets: {names}",
                hint="give one of the sheet names above, or --all-sheets",
                code="unknown_sheet",
            )
        chosen = [sheet]
    tables = []
    skipped: dict[str, int] = {}
    repeated: list[dict[str, Any]] = []
    sheet_rows: list[tuple[str, np.ndarray]] = []
    for name in chosen:
        ws = book.get_sheet_by_name(name)
        at = ws.start[0] + 1 if ws.start else 1  # the spreadsheet row of the first one read
        numbered = [
            (at + i, r)
            for i, r in enumerate(ws.to_python(skip_empty_area=True))
            if any(v not in ("", None) for v in r)
        ]
        rows = [r for _, r in numbered]
        # the visible worksheets (no chart or hidden sheet), as the "not read" warning
        others = ", ".join(repr(n) for n in _unread_sheets(book, names, [name]))
        elsewhere = f" (the workbook also has {others})" if others and sheet is None else ""
        if not rows:
            if all_sheets:
                log.warning("%s: sheet %r is empty, not read", display, name)
                continue
            raise InputError(
                f"{display}: sheet {name!r} is empty",
                hint=f"choose another sheet with --sheet NAME{elsewhere}",
                code="empty_file",
            )
        top = _header_row(rows)
        if top:
            skipped[name] = top
            log.info("%s: sheet %r: %d row(s) above the header skipped", display, name, top)
        written = [str(h) for h in rows[top]]
        header = _unique_names([h.strip() or f"column{i}" for i, h in enumerate(written)])
        for entry in _repeated_names(written, header):
            if all_sheets:
                entry["sheet"] = name
            repeated.append(entry)
        body = rows[top + 1 :]
        if not body:
            # a cover or notes sheet (a title in A1): --all-sheets stopped on it, and the
            # hint of the first sheet did not name the sheets that hold the lines
            if all_sheets:
                log.warning(
                    "%s: sheet %r has no rows below its first line, not read", display, name
                )
                continue
            raise InputError(
                f"{display}: sheet {name!r} has a header but no data rows",
                hint=f"read another sheet with --sheet NAME{elsewhere}"
                if elsewhere
                else "export the sheet with its data",
                code="no_rows",
            )
        columns = {
            h: _excel_column([r[i] if i < len(r) else "" for r in body])
            for i, h in enumerate(header)
        }
        table = pa.table(columns)
        if all_sheets:
            table = table.append_column("_sheet", pa.array([name] * table.num_rows))
        tables.append((name, table))
        sheet_rows.append((name, np.array([n for n, _ in numbered[top + 1 :]], dtype=np.int64)))
    if not tables:
        raise InputError(f"{display}: every sheet is empty", code="empty_file")
    if len(tables) > 1:
        first_name, first = tables[0]
        for name, t in tables[1:]:
            if t.column_names != first.column_names:
                raise InputError(
                    f"{display}: sheet {name!r} has columns {t.column_names[:-1]}, "
                    f"unlike sheet {first_name!r} ({first.column_names[:-1]})",
                    hint="--all-sheets needs the same columns on every sheet; choose one "
                    "sheet with --sheet",
                    code="sheet_mismatch",
                )
        merged = pa.concat_tables(
            [t.cast(pa.schema([(c, pa.string()) for c in t.column_names])) for _, t in tables]
        )
    else:
        merged = tables[0][1]
    details: dict[str, Any] = {"sheets": [n for n, _ in tables], "sheets_available": names}
    if skipped:
        details["title_rows"] = skipped
    if repeated:
        details["repeated_columns"] = repeated
    unread = _unread_sheets(book, names, chosen) if sheet is None and not all_sheets else []
    if unread:
        details["sheets_not_read"] = unread
        log.warning(
            "%s: only the first sheet %r was read; the workbook has %d more (%s), not read: "
            "--all-sheets reads every sheet (they need the same columns), --sheet NAME "
            "another one",
            display,
            chosen[0],
            len(unread),
            ", ".join(map(repr, unread)),
        )
    source = _finish(con, merged, display, "excel", details)
    source.sheet_rows = sheet_rows
    return source


def _unread_sheets(book: Any, names: list[str], chosen: list[str]) -> list[str]:
    """The visible worksheets of ``book`` that were not read (not chart sheets).

    By default only the first sheet is read, and a workbook that keeps a year per sheet
    (UCI Online Retail II: "Year 2009-2010", "Year 2010-2011") lost every sheet but the
    first without a word: half the lines, and a snapshot date a year early.
    """
    import python_calamine as pc

    try:
        meta = {m.name: m for m in book.sheets_metadata}
        visible, worksheet = pc.SheetVisibleEnum.Visible, pc.SheetTypeEnum.WorkSheet
    except AttributeError:  # an older python-calamine: no metadata, every sheet counts
        meta = {}
    return [
        name
        for name in names
        if name not in chosen
        and (name not in meta or (meta[name].visible == visible and meta[name].typ == worksheet))
    ]


def _header_row(rows: list[list[Any]]) -> int:
    """Index of a sheet's header row: title or note rows above it are skipped, as
    DuckDB's sniffer skips them in a CSV file (a report title in A1 became the header,
    and every real column was called ``column1``, ``column2``, ...).

    A leading row (of the first 10) is taken for a title when it fills fewer cells than
    most of the first 50 rows and at most half as many (so a header with a blank name or
    two is still the header).
    """
    counts = [sum(v not in ("", None) for v in r) for r in rows[:50]]
    if len(counts) < 3:
        return 0
    typical = sorted(counts)[len(counts) // 2]
    for i, n in enumerate(counts[:10]):
        if n >= typical or n > max(1, typical // 2):
            return i
    return 0


def _unique_names(names: list[str]) -> list[str]:
    """Repeated column names made unique as DuckDB does for CSV headers (the first keeps
    its name, the next ``name_1``, ...): a dict of columns kept only the last one.
    Compared case-insensitively, as DuckDB compares column names."""
    seen: set[str] = set()
    out = []
    for name in names:
        new, n = name, 0
        while new.lower() in seen:
            n += 1
            new = f"{name}_{n}"
        seen.add(new.lower())
        out.append(new)
    return out


def _excel_column(values: list[Any]) -> pa.Array:
    """Typed column from spreadsheet cells: numbers, datetimes, or text for mixed cells."""
    import datetime as dt

    cells = [None if v == "" else v for v in values]
    present = [v for v in cells if v is not None]
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pa.array(cells, type=pa.float64())
    if present and all(isinstance(v, dt.datetime) for v in present):
        return pa.array(cells, type=pa.timestamp("us"))
    if present and all(isinstance(v, dt.date) for v in present):
        return pa.array(
            [dt.datetime.combine(v, dt.time()) if v is not None else None for v in cells],
            type=pa.timestamp("us"),
        )
    return pa.array([_cell_text(v) for v in cells], type=pa.string())


def _cell_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _finish(
    con: ibis.BaseBackend, arrow: pa.Table, display: str, fmt: str, details: dict[str, Any]
) -> Source:
    name = f"segmint_mem_{next(_counter)}"
    con.con.register(name, arrow)
    lowered = [c.lower() for c in arrow.column_names]
    if len(set(lowered)) < len(lowered):
        # names that differ only in case (a DataFrame's Quantity and quantity): DuckDB
        # reads the second as quantity_1, as it does a CSV header's
        loaded = _column_names(con, f'"{name}"', display)
        details = {**details, "repeated_columns": _repeated_names(arrow.column_names, loaded)}
    return _finish_view(con, name, display, fmt, details)


def _json_kind(sample: bytes, display: str) -> str:
    """DuckDB's ``format`` for a ``.json`` file from its first bytes: ``array`` when it
    opens with ``[`` (after a byte-order mark and blanks), else ``auto``.

    DuckDB's own detection read a JSON array behind a UTF-8 byte-order mark (as Windows
    tools write it) as one value, a column ``json``, and mapping failed naming no real
    column. An empty array is refused here with its own message (it had "a header but
    no data rows (columns: json)").
    """
    body = sample.removeprefix(b"\xef\xbb\xbf").lstrip()
    if not body.startswith(b"["):
        return "auto"
    if body[1:].lstrip().startswith(b"]"):
        raise InputError(
            f"{display}: is an empty JSON array (no records)",
            hint="export the data again with its rows",
            code="no_rows",
        )
    return "array"


def _refuse_nested_json(described: list[tuple[Any, ...]], display: str) -> None:
    """Refuse JSON whose every field is an object or a list: pandas' default
    ``DataFrame.to_json()`` (one object of columns, each an object keyed by row number)
    and its ``split``, ``index``, ``values`` and ``table`` layouts. Read as records, such
    a file was one line of nested values and ended in "no line is left after cleaning:
    all 1 input lines were dropped", or a mapping error listing ``columns, index, data``.
    """
    types = [str(row[1]).upper() for row in described]
    if not types or not all(
        t.startswith(("STRUCT", "MAP", "UNION")) or t.endswith("]") for t in types
    ):
        return
    names = ", ".join(str(row[0]) for row in described[:5]) + (", ..." if len(types) > 5 else "")
    raise InputError(
        f"{display}: holds no flat records: every field is an object or a list ({names}), "
        "as pandas' DataFrame.to_json() writes a table by default",
        hint="write one flat object per line: df.to_json(path, orient='records') (an array "
        "of objects) or df.to_json(path, orient='records', lines=True) (NDJSON)",
        code="unsupported_format",
    )


def _json_as_text(con: ibis.BaseBackend, sql: str, display: str) -> str:
    """``sql`` with every column DuckDB typed JSON (values of mixed kinds, e.g. ids as
    text in some records and numbers in others) read as the text of its values: used as
    they are, such columns kept the quotes of their strings (``"00123"``) and prices
    written as ``"3.5"`` became missing."""
    with translate_errors(display):
        described = con.con.execute(f"DESCRIBE SELECT * FROM {sql}").fetchall()
    _refuse_nested_json(described, display)
    if not any(str(row[1]).upper() == "JSON" for row in described):
        return sql
    parts = []
    for row in described:
        q = '"' + str(row[0]).replace('"', '""') + '"'
        parts.append(
            f"json_extract_string({q}, '$') AS {q}" if str(row[1]).upper() == "JSON" else q
        )
    return f"(SELECT {', '.join(parts)} FROM {sql})"


def _missing(value: Any) -> bool:
    """None, NaN, NaT or pandas' NA (whose truth value cannot be asked)."""
    return value is None or (not isinstance(value, str) and bool(pd.isna(value)))


def _refuse_repeated(columns: pd.Index) -> None:
    """Refuse a table with a repeated column name: DuckDB renamed the second
    ``CustomerID`` of an Arrow table (a DuckDB relation's ``SELECT a, a``) to
    ``CustomerID_1`` without a word, and pandas' repeated columns failed deep inside."""
    dups = columns[columns.duplicated()].unique()
    if len(dups):
        raise InputError(
            f"<dataframe>: column name(s) {', '.join(map(repr, dups))} appear more than once",
            hint="rename or drop the repeated columns (each column needs its own name)",
            code="duplicate_column",
        )


def _frame_to_arrow(frame: pd.DataFrame) -> pa.Table:
    """A pandas frame as Arrow; a column of mixed Python types (ids ``"00123"`` beside
    ``123``, as a spreadsheet import gives) becomes text, as a CSV column would be,
    instead of failing with Arrow's own type error.

    A named index (``df.set_index("InvoiceDate")``, a customer id as the index) is data
    and becomes a column, as ``reset_index()`` would make it; it used to be dropped, and
    the mapping then said the table had no date (or customer) column. An unnamed index
    (the row numbers) is not data and is left out."""
    named = [n for n in frame.index.names if n is not None and n not in frame.columns]
    if named:
        frame = frame.reset_index(level=named)
    _refuse_repeated(frame.columns)
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        fixed = frame.copy()
        for col in fixed.columns:
            if fixed[col].dtype == object:
                fixed[col] = fixed[col].map(lambda v: None if _missing(v) else str(v))
        try:
            return pa.Table.from_pandas(fixed, preserve_index=False)
        except (pa.ArrowTypeError, pa.ArrowInvalid) as exc:
            raise InputError(
                f"<dataframe>: a column cannot be read ({exc})",
                hint="give each column one type (text, number or date)",
                code="unreadable_file",
            ) from None


def _text_lines(path: Path, compression: str | None, encoding: str, n: int) -> list[str]:
    """The first ``n`` lines of a text file (decompressed and decoded), for diagnostics."""
    import io as _io
    import zlib

    out: list[str] = []
    with _open_bytes(path, compression) as raw:
        text = _io.TextIOWrapper(raw, encoding=encoding, errors="replace", newline="")
        try:
            for line in text:
                out.append(line)
                if len(out) >= n:
                    break
        except (EOFError, zlib.error, OSError):
            # a compressed file cut short: the lines before the cut are the diagnosis's,
            # and the engine's error says what is wrong
            pass
    return out


def _ragged_line(path: Path, compression: str | None, encoding: str, display: str) -> None:
    """Raise an :class:`InputError` naming the first line (of the first 20,480, the
    sniffer's sample) whose number of fields differs from the header's, if there is one.

    Called when DuckDB's dialect sniffer fails, takes the header for a single column or
    picks a delimiter the header does not contain: its own message ("Error when sniffing
    file") names no line. The delimiter is the candidate that occurs most in the first
    line; nothing is raised unless that gives at least 3 fields and most lines have the
    header's number of fields (a title line above the header is no ragged line).
    Quoting follows the CSV standard.
    """
    import csv

    lines = _text_lines(path, compression, encoding, 20_480)
    if len(lines) < 2:
        return
    delim = max(",;\t|", key=lines[0].count)
    if not lines[0].count(delim):
        return
    rows = csv.reader(lines, delimiter=delim)
    try:
        width = len(next(rows))
        first_bad = None
        total = agree = 0
        for row in rows:
            if not row:
                continue
            total += 1
            if len(row) == width:
                agree += 1
            elif first_bad is None:
                first_bad = (rows.line_num, row)
    except csv.Error:
        return
    if first_bad is None or width < 3 or 2 * agree <= total:
        return
    number, row = first_bad
    shown = delim.join(row)
    raise InputError(
        f"{display}: line {number} has {len(row)} fields where the header has {width} "
        f"(delimiter {delim!r}): {shown[:120]!r}",
        hint="a value containing the delimiter must be in double quotes; fix or remove that "
        "line (a spreadsheet export quotes such values)",
        code="ragged_line",
    )


def _finish_view(
    con: ibis.BaseBackend,
    relation_sql: str,
    display: str,
    fmt: str,
    details: dict[str, Any],
    row_column: str | None = None,
    *,
    materialize: bool = False,
    columnar: bool | None = None,
    parts: list[str] | None = None,
) -> Source:
    """Register ``relation_sql`` as a view with ``_row`` (1-based data row numbers);
    ``row_column`` names a 0-based row-number column the reader already provides.
    ``materialize`` reads it into a temporary table instead (parsed once); ``columnar``
    is passed to the :class:`Source`. ``parts`` (a folder's part names): the relation
    has :data:`PART_COLUMN`, kept out of the view and read by :meth:`Source.where`."""
    name = f"segmint_src_{next(_counter)}"
    if materialize:
        # parse the whole file now, numbering its rows; the checks below and every later
        # stage read the table
        row_column = row_column or _ROW_COLUMN
        with translate_errors(display, encoding=details.get("encoding")):
            con.con.execute(
                f'CREATE OR REPLACE TEMP TABLE "{name}_raw" AS SELECT *, '
                f'row_number() OVER () - 1 AS "{row_column}" FROM {relation_sql}'
            )
        relation_sql = f'"{name}_raw"'
    with translate_errors(display, encoding=details.get("encoding")):
        probe = con.con.execute(f"SELECT * FROM {relation_sql} LIMIT 1")
        columns = [d[0] for d in probe.description if d[0] not in (row_column, PART_COLUMN)]
        first = probe.fetchall()
    if "_row" in columns:
        raise InputError(
            f"{display}: has a column named '_row', which segmint reserves for row numbers",
            hint="rename that column in the file",
            code="reserved_column",
        )
    if not first:
        raise InputError(
            f"{display}: has a header but no data rows (columns: {', '.join(columns)})",
            hint="export the data again with its rows",
            code="no_rows",
        )
    with translate_errors(display, encoding=details.get("encoding")):
        hidden = [row_column] if row_column else []
        if parts is not None:
            hidden.append(PART_COLUMN)
        quoted = ", ".join(f'"{c}"' for c in hidden)
        exclude = f"* EXCLUDE ({quoted})" if hidden else "*"
        row_sql = f'"{row_column}" + 1' if row_column else "row_number() OVER ()"
        select = f"{exclude}, {row_sql} AS _row"
        con.con.execute(
            f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT {select} FROM {relation_sql}'
        )
    table = con.table(name)
    source = Source(
        table=table, con=con, path=display, format=fmt, details=details, columnar=columnar
    )
    if parts is not None:
        source.part_relation, source.part_row_sql = relation_sql, row_sql
        source.part_names = parts
    return source


@contextlib.contextmanager
def translate_errors(path: str, *, encoding: str | None = None) -> Iterator[None]:
    """Turn DuckDB's reader errors into :class:`InputError` naming the file and a fix;
    errors of the other engines (PostgreSQL, Spark) into one naming the source."""
    try:
        yield
    except duckdb.Error as exc:
        raise _translate(exc, path, encoding) from exc
    except _other_engine_errors() as exc:
        from segmint.engines import error_summary

        raise InputError(
            f"{path}: the engine stopped with an error ({error_summary(exc)})",
            hint="check the data and that the server or cluster is reachable; --debug shows "
            "the whole error",
            code="engine_error",
        ) from exc


def _other_engine_errors() -> tuple[type[BaseException], ...]:
    """Error classes of the engines loaded in this process (never imports one)."""
    import sys

    found: list[type[BaseException]] = []
    for module, name in (
        ("psycopg", "Error"),
        ("pyspark.errors", "PySparkException"),
        ("py4j.protocol", "Py4JError"),
    ):
        cls = getattr(sys.modules.get(module), name, None)
        if isinstance(cls, type):
            found.append(cls)
    return tuple(found)


def _translate(exc: duckdb.Error, path: str, encoding: str | None) -> InputError:
    text = str(exc)
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    line = re.search(r"Line: (\d+)", text)
    where = f" (line {line.group(1)})" if line else ""
    # the engine's own limits first: they are not the file's fault
    if isinstance(exc, duckdb.OutOfMemoryException) or "Out of Memory Error" in text:
        return InputError(
            f"{path}: the engine ran out of memory ({first})",
            hint="raise --memory-limit (default 1GB), use fewer --threads (each needs its "
            "own memory), or point --temp-dir at a disk with more free space for spilling",
            code="out_of_memory",
        )
    if "no space left on device" in text.lower():
        return EnvironmentFailure(
            f"{path}: the disk is full ({first})",
            hint="free some space, or point --temp-dir at a disk with more room: the engine "
            "spills there, and keeps there the Parquet copy of a large text file (typically "
            "under a tenth of the text's size)",
            code="disk_full",
        )
    if "Failed to create directory" in text or "temp_directory" in text.lower():
        return InputError(
            f"{path}: the engine cannot use its spill folder ({first})",
            hint="give --temp-dir a folder that exists and you can write to "
            "(or leave it out for a private temporary folder)",
            code="spill_folder",
        )
    low = text.lower()
    if ("gzip" in low or "zstd" in low) and any(
        w in low for w in ("unexpected end", "truncated", "corrupt", "invalid", "incorrect")
    ):
        # a download or copy cut short: not a matter of delimiter, quoting or encoding
        return _damaged(path, RuntimeError(first))
    if "unicode" in text.lower() or "not utf-8" in text.lower() or "encoded" in text.lower():
        return InputError(
            f"{path}: is not valid {encoding or 'UTF-8'} text{where}",
            hint="give the right encoding, e.g. --encoding latin-1 or --encoding cp1252 "
            "(or leave --encoding out to detect it)",
            code="bad_encoding",
        )
    if "parquet" in text.lower() and ("magic" in text.lower() or "not a" in text.lower()):
        return InputError(
            f"{path}: is not a valid Parquet file ({first})",
            hint="check the file is complete and really Parquet",
            code="unreadable_file",
        )
    cast = re.search(
        r'reading file "(.+?)": failed to cast column "(.+?)" from type (\S+) to (\S+?)[:)]', text
    )
    if cast:
        # the parts of a folder store one column with types DuckDB cannot unify
        return InputError(
            f"{path}: column {cast.group(2)!r} is {cast.group(3)} in {cast.group(1)} but "
            f"{cast.group(4)} in other parts, and cannot be read as one column",
            hint="write every part with the same type for that column (e.g. timestamps, "
            "not epoch numbers), or read the parts separately",
            code="mixed_parts",
        )
    repeated = re.search(r'(in (?:record/value|line) \d+).*has duplicate key "(.*)"', first)
    if repeated:
        where_json = repeated.group(1).replace("record/value", "record")
        return InputError(
            f"{path}: the key {repeated.group(2)!r} appears twice in one object ({where_json})",
            hint="write each key once per record (which of the two values is meant is a "
            "guess); rename one of them in the export",
            code="duplicate_column",
        )
    if "json" in text.lower():
        return InputError(
            f"{path}: cannot be read as JSON{where} ({first})",
            hint="segmint reads a JSON array of objects or one object per line (NDJSON)",
            code="unreadable_file",
        )
    fields = re.search(r"Expected Number of Columns: (\d+) Found: (\d+)", text)
    if fields and line:
        # a line deep in a large file (beyond the sniffer's sample) with a field too many
        # or too few: DuckDB's first line named only its number
        original = re.search(r"Original Line: (.*)", text)
        part = re.search(r"^\s*file = (.+)$", text, re.MULTILINE)
        named = part.group(1).strip() if part else path
        # a part of a folder is named; a UTF-8 copy of a transcoded file is not
        where_file = "" if named == path or "segmint-transcode-" in named else f" of {named}"
        shown = f": {original.group(1)[:120]!r}" if original else ""
        return InputError(
            f"{path}: line {line.group(1)}{where_file} has {fields.group(2)} fields where the "
            f"header has {fields.group(1)}{shown}",
            hint="a value containing the delimiter must be in double quotes; fix or remove "
            "that line (a spreadsheet export quotes such values)",
            code="ragged_line",
        )
    if "csv" in text.lower() or "sniff" in text.lower():
        return InputError(
            f"{path}: cannot be read as CSV{where} ({first})",
            hint="check the delimiter (--delimiter), quoting and encoding (--encoding)",
            code="unreadable_file",
        )
    return InputError(
        f"{path}: cannot be read ({first})",
        hint="check the file and its format (--format)",
        code="unreadable_file",
    )


def store(con: ibis.BaseBackend, name: str, expr: ir.Table) -> ir.Table:
    """Compute ``expr`` once and keep the result for this session, under ``name``.

    DuckDB and PostgreSQL get a temporary table (gone with the connection); Spark, whose
    ibis backend has no temporary tables, a cached DataFrame behind a temporary view.
    Cleaning and features store their intermediate tables through this one function so
    the same code runs on every engine.
    """
    if con.name == "pyspark":
        # ibis' own expr.cache() on Spark: session.sql(...).cache() + a temporary view
        return con._create_cached_table(name, expr)
    return con.create_table(name, expr, temp=True)


def _write_batches(data: ir.Table, tmp: Path, kind: str, *, gzip_csv: bool) -> None:
    """Stream a table of another engine (PostgreSQL, Spark) into a file in batches."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    reader = data.to_pyarrow_batches(chunk_size=100_000)
    with contextlib.ExitStack() as stack:
        if kind == "parquet":
            writer = stack.enter_context(pq.ParquetWriter(tmp, reader.schema))
        else:
            sink: Any = stack.enter_context(
                gzip.open(tmp, "wb") if gzip_csv else open(tmp, "wb")  # noqa: SIM115
            )
            writer = stack.enter_context(pacsv.CSVWriter(sink, reader.schema))
        for batch in reader:
            writer.write_batch(batch)


def _sql_str(value: str) -> str:
    return value.replace("'", "''")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, parents: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success.

    A failure (or Ctrl-C) leaves no half-written file behind. With ``parents=False``
    the folder must already exist: a writer thread that outlives an interrupted run
    then fails instead of re-creating a folder the run has just removed.

    The temporary file has ``path``'s own name, inside a hidden folder only this user
    can enter (``mkdtemp``, mode 0700): the name of a temporary *file* beside ``path``
    was free for a moment between choosing and writing it, and whoever else could write
    in that folder (a shared exports folder) could put a symbolic link there, through
    which the writer overwrote any file the user may write.
    """
    import shutil

    target = Path(path)
    if target.is_dir():
        # checked first: the rename failed after the work, naming the hidden temporary
        # file (".adir.x1y2.part/adir: Is a directory")
        raise ConfigError(
            f"{target}: is a folder, not a file",
            hint=f"give a file name, e.g. {target / 'out'}{''.join(target.suffixes)} "
            "(or remove the folder)",
        )
    if parents:
        target.parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent))
    tmp_path = folder / target.name
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def output_path(path: str | os.PathLike[str], endings: tuple[str, ...], what: str = "") -> Path:
    """``path`` as a Path if its name ends in one of ``endings`` (the formats a writer
    chooses by the ending), else a ConfigError with an example; ``what`` says what each
    ending holds, e.g. " (the table) or .json (everything)"."""
    target = Path(path)
    if not target.name.lower().endswith(endings):
        listed = what or ", ".join(endings)
        raise ConfigError(
            f"{path}: the file name must end in {listed}",
            hint=f"e.g. {target.name.split('.')[0] or 'output'}{endings[0]}",
            code="output_ending",
        )
    return target


#: First characters that make a spreadsheet read a CSV cell as a formula (OWASP "CSV
#: injection"): ``=``, ``+``, ``-``, ``@``, tab and carriage return.
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
#: A cell that is a plain number is left alone: it cannot be a formula. The forms of
#: number segmint reads (README "Input data"): "-5", "+1.5e3", a decimal comma ("-2,55"),
#: and thousands grouped by dots or commas ("-1.234,56", "-1,234.56"), so negative
#: amounts of a European or UK/US file stay numbers in rejected lines.
_PLAIN_NUMBER = (
    r"[+-]?(?:[0-9]+(?:[.,][0-9]*)?|[.,][0-9]+"
    r"|[1-9][0-9]{0,2}(?:\.[0-9]{3})+(?:,[0-9]*)?"
    r"|[1-9][0-9]{0,2}(?:,[0-9]{3})+(?:\.[0-9]*)?)(?:[eE][+-]?[0-9]+)?"
)


def escape_formulas(data: pd.DataFrame) -> pd.DataFrame:
    """Prefix text cells that a spreadsheet would run as a formula with ``'``.

    A customer id or product description such as ``=HYPERLINK(...)`` or ``@SUM(...)``
    from the raw data is otherwise executed when a marketer opens the CSV in Excel or
    LibreOffice (OWASP "CSV injection"); with the apostrophe the spreadsheet shows the
    text. Only text cells starting with one of :data:`FORMULA_START` change; number
    columns, dates and text cells that are plain numbers (``-5``) are kept as they are.
    Returns a copy when anything changed, else ``data`` itself.
    """
    out = data
    for col in data.columns:
        values = data[col]
        if not (
            pd.api.types.is_object_dtype(values)
            or pd.api.types.is_string_dtype(values)
            or isinstance(values.dtype, pd.CategoricalDtype)
        ):
            continue
        text = values.astype(object) if isinstance(values.dtype, pd.CategoricalDtype) else values
        try:  # .str gives NaN for the non-text cells of an object column: kept
            risky = text.str.startswith(FORMULA_START, na=False) & ~text.str.fullmatch(
                _PLAIN_NUMBER, na=False
            )
        except AttributeError:  # an object column without text (dates, decimals)
            continue
        if risky.any():
            if out is data:
                out = data.copy()
            fixed = text.astype(object).copy()
            fixed[risky] = "'" + fixed[risky].astype(str)
            out[col] = fixed if values.dtype == object else fixed.astype("string")
    return out


def _escape_formulas_expr(data: ir.Table) -> ir.Table:
    """:func:`escape_formulas` as an ibis expression, run by the table's own engine."""
    start = ibis.literal(list(FORMULA_START))
    changes = {}
    for col in data.columns:
        value = data[col]
        if not value.type().is_string():
            continue
        risky = start.contains(value.substr(0, 1)) & ~value.re_search(f"^{_PLAIN_NUMBER}$")
        changes[col] = ibis.ifelse(risky.fill_null(False), ibis.literal("'") + value, value)
    return data.mutate(**changes) if changes else data


def write_table(
    data: ibis.Table | pd.DataFrame,
    path: str | os.PathLike[str],
    *,
    con: Any = None,
    escape: bool = False,
) -> Path:
    """Write a table to Parquet or CSV (chosen by the ending), atomically and streaming.

    ibis tables are written by their engine (DuckDB ``COPY``) without going through pandas.
    ``escape=True`` neutralises spreadsheet formulas in the text cells of a CSV
    (:func:`escape_formulas`) for a file people open in Excel; Parquet is never changed.

    Raises
    ------
    ConfigError
        When the ending is neither ``.parquet`` nor ``.csv``.
    """
    target = Path(path)
    suffix = target.name.lower()
    if suffix.endswith((".parquet", ".pq")):
        kind = "parquet"
    elif suffix.endswith((".csv", ".csv.gz")):
        kind = "csv"
    else:
        raise ConfigError(
            f"{path}: output must end in .parquet or .csv",
            hint=f"e.g. {target.with_name(target.name.split('.')[0] + '.parquet').name}",
        )
    if escape and kind == "csv":
        if isinstance(data, pd.DataFrame):
            data = escape_formulas(data)
        else:
            data = _escape_formulas_expr(data)
    try:
        with atomic_path(target) as tmp:
            if isinstance(data, pd.DataFrame):
                if kind == "parquet":
                    data.to_parquet(tmp, index=False)
                else:
                    gz = "gzip" if suffix.endswith("gz") else None
                    data.to_csv(tmp, index=False, compression=gz)
            elif data._find_backend().name != "duckdb":
                _write_batches(data, tmp, kind, gzip_csv=suffix.endswith(".gz"))
            else:
                raw = data._find_backend().con
                sql = ibis.to_sql(data, dialect="duckdb")
                opts = "FORMAT PARQUET" if kind == "parquet" else "FORMAT CSV, HEADER true"
                if kind == "csv" and suffix.endswith(".gz"):
                    opts += ", COMPRESSION gzip"
                raw.execute(f"COPY ({sql}) TO '{_sql_str(str(tmp))}' ({opts})")
    except (OSError, duckdb.IOException) as exc:
        # the output file, not the input: a full disk was "a bug in segmint" (exit 70)
        # when DuckDB wrote it, and "check the path" without the file's name otherwise
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if getattr(exc, "errno", None) == errno.ENOSPC or "no space left" in first.lower():
            raise EnvironmentFailure(
                f"{target}: the disk is full (nothing was written)",
                hint="free some space, or write the output to another disk",
                code="disk_full",
            ) from None
        raise InputError(
            f"{target}: cannot be written ({first})",
            hint="check that the folder exists and that you can write to it",
            code="write_failed",
        ) from None
    return target
