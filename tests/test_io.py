"""Readers: every format, encodings, sniffing, bad input, atomic writes."""

from __future__ import annotations

import gzip
import json
import os
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from conftest import retail_frame
from segmint.errors import ConfigError, InputError
from segmint.io import (
    atomic_path,
    detect_encoding,
    detect_format,
    escape_formulas,
    read_source,
    write_table,
)


def _rows(src) -> list[dict]:
    return src.table.order_by("_row").to_pyarrow().to_pylist()


# ---------------------------------------------------------------- formats
@pytest.mark.parametrize("sep", [",", ";", "\t", "|"])
def test_csv_delimiter_is_sniffed(tmp_path: Path, sep: str) -> None:
    path = tmp_path / "data.csv"
    retail_frame().to_csv(path, sep=sep, index=False)
    src = read_source(path)
    assert src.details["delimiter"] == sep
    assert src.details["header"] is True
    assert src.columns == list(retail_frame().columns)
    assert src.count() == 6


def test_csv_gz_and_tsv(tmp_path: Path) -> None:
    gz = tmp_path / "data.csv.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        retail_frame().to_csv(fh, index=False)
    tsv = tmp_path / "data.tsv"
    retail_frame().to_csv(tsv, sep="\t", index=False)
    a, b = read_source(gz), read_source(tsv)
    assert a.details["compression"] == "gzip"
    assert b.details["delimiter"] == "\t"
    assert a.count() == b.count() == 6
    assert _rows(a)[0]["CustomerID"] == "17850"


def test_csv_without_header(tmp_path: Path) -> None:
    path = tmp_path / "noheader.csv"
    retail_frame().to_csv(path, index=False, header=False)
    src = read_source(path, header=False)
    assert src.count() == 6
    assert src.details["header"] is False
    assert src.columns[0] == "column0"


def test_rows_are_numbered_in_file_order(retail_csv: Path) -> None:
    rows = _rows(read_source(retail_csv))
    assert [r["_row"] for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [r["InvoiceNo"] for r in rows] == list(retail_frame()["InvoiceNo"])


def test_parquet_file_and_folder_of_parts(tmp_path: Path) -> None:
    df = retail_frame()
    df.to_parquet(tmp_path / "one.parquet")
    parts = tmp_path / "parts"
    parts.mkdir()
    df.iloc[:3].to_parquet(parts / "part-0000.parquet")
    df.iloc[3:].to_parquet(parts / "part-0001.parquet")
    one, folder = read_source(tmp_path / "one.parquet"), read_source(parts)
    assert one.format == folder.format == "parquet"
    assert folder.details["parts"] == 2
    assert one.count() == folder.count() == 6
    assert one.table.schema()["Quantity"].is_integer()


def test_excel_sheet_choice_and_all_sheets(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    df = retail_frame()
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    with pd.ExcelWriter(path, engine="xlsxwriter") as xl:
        df.iloc[:2].to_excel(xl, sheet_name="Dec", index=False)
        df.iloc[2:].to_excel(xl, sheet_name="Jan", index=False)
    first = read_source(path)
    assert first.details["sheets"] == ["Dec"] and first.count() == 2
    by_name, by_number = read_source(path, sheet="Jan"), read_source(path, sheet=1)
    assert by_name.count() == by_number.count() == 4
    both = read_source(path, all_sheets=True)
    assert both.count() == 6
    assert "_sheet" in both.columns
    rows = _rows(first)
    assert rows[0]["CustomerID"] == "17850"
    assert rows[0]["Quantity"] == 6.0
    assert str(rows[0]["InvoiceDate"]).startswith("2010-12-01 08:26")
    with pytest.raises(InputError, match="has no sheet 'Feb'.*Dec.*Jan"):
        read_source(path, sheet="Feb")
    with pytest.raises(InputError, match="no sheet number 5"):
        read_source(path, sheet=5)


def test_excel_sheet_named_like_a_number_is_chosen_by_name(tmp_path: Path) -> None:
    """`--sheet 2024` picks the sheet called "2024", and "1" the sheet called "1" even
    when it is not the second one; a number no sheet is named picks by position."""
    path = tmp_path / "years.xlsx"
    df = retail_frame()
    with pd.ExcelWriter(path, engine="xlsxwriter") as xl:
        df.iloc[:1].to_excel(xl, sheet_name="2023", index=False)
        df.iloc[1:3].to_excel(xl, sheet_name="2024", index=False)
        df.iloc[3:6].to_excel(xl, sheet_name="1", index=False)
    assert read_source(path, sheet="2024").count() == 2
    assert read_source(path, sheet="1").count() == 3
    assert read_source(path, sheet="0").count() == 1  # no sheet "0": the first by position
    assert read_source(path, sheet=1).count() == 2  # an int is always a position
    with pytest.raises(InputError, match="no sheet named '2025' and no sheet number 2025"):
        read_source(path, sheet="2025")


def test_excel_all_sheets_needs_same_columns(tmp_path: Path) -> None:
    path = tmp_path / "book.xlsx"
    with pd.ExcelWriter(path, engine="xlsxwriter") as xl:
        retail_frame().to_excel(xl, sheet_name="A", index=False)
        retail_frame().drop(columns="Country").to_excel(xl, sheet_name="B", index=False)
    with pytest.raises(InputError, match="sheet 'B' has columns"):
        read_source(path, all_sheets=True)


def test_json_array_and_ndjson(tmp_path: Path) -> None:
    records = retail_frame().to_dict(orient="records")
    (tmp_path / "a.json").write_text(json.dumps(records))
    (tmp_path / "b.ndjson").write_text("\n".join(json.dumps(r) for r in records))
    a, b = read_source(tmp_path / "a.json"), read_source(tmp_path / "b.ndjson")
    assert a.count() == b.count() == 6
    assert set(a.columns) == set(b.columns) == set(retail_frame().columns)


def test_json_with_values_of_mixed_kinds(tmp_path: Path) -> None:
    """A column holding strings in some records and numbers in others is typed JSON by
    DuckDB: ids kept their quotes ('"00123"') and a price written "3.5" was dropped as
    non-positive. They are read as the text of their values."""
    from segmint.clean import clean
    from segmint.schema import resolve

    base = {"InvoiceNo": "1", "StockCode": "A", "InvoiceDate": "2010-12-01 10:00"}
    records = [
        base | {"Quantity": "3", "UnitPrice": "3.5", "CustomerID": "00123", "Country": "UK"},
        base
        | {"InvoiceNo": "2", "Quantity": 2, "UnitPrice": 2, "CustomerID": 123, "Country": "UK"},
    ]
    (tmp_path / "mixed.json").write_text(json.dumps(records))
    res = clean(resolve(read_source(tmp_path / "mixed.json")))
    assert res.audit.kept_rows == 2
    kept = res.lines.to_pandas().sort_values("invoice_id")
    assert kept["customer_id"].tolist() == ["00123", "123"]
    assert kept["amount"].tolist() == [10.5, 4.0]


def test_dataframe_with_a_column_of_mixed_types() -> None:
    """Ids "00123" beside 123 in one pandas column failed with Arrow's own type error."""
    frame = retail_frame()
    frame["CustomerID"] = ["00123", 123, 123.0, None, "17850", 17850]
    src = read_source(frame)
    ids = src.table.order_by("_row").execute()["CustomerID"].tolist()
    assert ids[:3] == ["00123", "123", "123.0"] and pd.isna(ids[3])
    frame["CustomerID"] = pd.Series([123, "00123", pd.NA, None, 1, 2], dtype=object)
    ids = read_source(frame).table.order_by("_row").execute()["CustomerID"].tolist()
    assert ids[:2] == ["123", "00123"] and pd.isna(ids[2])  # pandas' NA is missing


def test_dataframe_and_arrow_input() -> None:
    import pyarrow as pa

    df = retail_frame()
    assert read_source(df).count() == 6
    assert read_source(pa.Table.from_pandas(df)).count() == 6


def test_format_option_overrides_the_ending(tmp_path: Path) -> None:
    path = tmp_path / "export.data"
    retail_frame().to_csv(path, index=False)
    assert read_source(path, format="csv").count() == 6
    with pytest.raises(ConfigError, match="unknown format"):
        read_source(path, format="xml")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("a.csv", ("csv", None)),
        ("a.CSV.GZ", ("csv", "gzip")),
        ("a.tsv", ("tsv", None)),
        ("a.parquet", ("parquet", None)),
        ("a.xlsx", ("excel", None)),
        ("a.jsonl", ("ndjson", None)),
        ("a.json.gz", ("json", "gzip")),
        ("a.txt.zst", ("csv", "zstd")),
    ],
)
def test_detect_format(name: str, expected: tuple) -> None:
    assert detect_format(name) == expected


# ---------------------------------------------------------------- encodings
def _write_encoded(path: Path, encoding: str) -> None:
    df = retail_frame()
    df.loc[0, "Description"] = "Dotcomgiftshop Gift Voucher £40.00"
    df.loc[1, "Description"] = "CAFÉ SET – €5"  # en dash and euro exist only in cp1252
    df.to_csv(path, index=False, encoding=encoding)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252", "utf-16"])
def test_encoding_is_detected_and_text_is_right(tmp_path: Path, encoding: str) -> None:
    path = tmp_path / f"{encoding}.csv"
    _write_encoded(path, encoding)
    src = read_source(path)
    assert src.details["encoding"] == encoding
    rows = _rows(src)
    assert rows[0]["Description"] == "Dotcomgiftshop Gift Voucher £40.00"
    assert rows[1]["Description"] == "CAFÉ SET – €5"


def test_latin1_file_like_the_kaggle_copy(tmp_path: Path) -> None:
    path = tmp_path / "kaggle.csv.gz"
    df = retail_frame()
    df.loc[0, "Description"] = "Dotcomgiftshop Gift Voucher £40.00"
    df["InvoiceDate"] = "12/1/2010 8:26"
    with gzip.open(path, "wt", encoding="latin-1") as fh:
        df.to_csv(fh, index=False)
    assert detect_encoding(path, "gzip") == "latin-1"
    src = read_source(path)
    assert src.details["encoding"] == "latin-1"
    assert _rows(src)[0]["Description"].endswith("£40.00")


def test_non_utf8_byte_late_in_the_file_is_found(tmp_path: Path) -> None:
    path = tmp_path / "late.csv"
    body = "a,b\n" + "1,plain ascii\n" * 300_000 + "2,caf\xe9\n"
    path.write_bytes(body.encode("latin-1"))
    assert detect_encoding(path) == "latin-1"
    src = read_source(path)
    assert src.count() == 300_001


@pytest.mark.parametrize("compressed", [False, True])
def test_a_utf8_file_with_a_line_in_cp1252_keeps_both_right(
    tmp_path: Path, monkeypatch, caplog: pytest.LogCaptureFixture, compressed: bool
) -> None:
    """A UTF-8 export with one line appended by a Windows tool in cp1252 was read as
    cp1252 whole: every UTF-8 ``£`` became ``Â£`` and ``É`` ``Ã‰``, without a word. Each
    byte that is not UTF-8 is now read as cp1252 and the rest as UTF-8, with a warning
    naming the first such line (also for a large .gz parsed into the Parquet copy)."""
    if compressed:
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "0")
    df = retail_frame()
    df["Description"] = "CAFÉ SET £5"
    body = df.to_csv(index=False).encode("utf-8")
    body += "536999,1,café – €5,1,2010-12-09 10:00:00,2.5,12583,France\n".encode("cp1252")
    path = tmp_path / ("mixed.csv.gz" if compressed else "mixed.csv")
    path.write_bytes(gzip.compress(body) if compressed else body)
    with caplog.at_level("WARNING", logger="segmint.io"):
        src = read_source(path)
    assert src.details["encoding"] == "utf-8+cp1252"
    got = src.table.order_by("_row").to_pandas()["Description"].tolist()
    assert got == ["CAFÉ SET £5"] * 6 + ["café – €5"]
    assert "UTF-8 except 3 byte(s) in Windows-1252 (the first in line 8)" in caplog.text
    # a file with more bytes that are not UTF-8 than UTF-8 characters is single-byte
    single = tmp_path / "single.csv"
    single.write_bytes("a,b\n1,café – £5 Ã©\n".encode("cp1252"))
    assert detect_encoding(single) == "cp1252"


def test_latin1_file_read_as_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "latin.csv"
    df = retail_frame()
    df.loc[0, "Description"] = "CAFÉ £5"
    df.to_csv(path, index=False, encoding="latin-1")
    with pytest.raises(InputError, match=r"latin\.csv: is not valid utf-8") as err:
        read_source(path, encoding="utf-8").count()
    assert "--encoding latin-1" in err.value.hint


def test_unknown_encoding_name(retail_csv: Path) -> None:
    with pytest.raises(ConfigError, match="unknown encoding 'klingon'"):
        read_source(retail_csv, encoding="klingon")


# ---------------------------------------------------------------- bad input
def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such file"):
        read_source(tmp_path / "nope.csv")


def test_directory_without_data(tmp_path: Path) -> None:
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(InputError, match="is a folder, not a file"):
        read_source(tmp_path)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_bytes(b"")
    with pytest.raises(InputError, match=r"empty\.csv: the file is empty"):
        read_source(path)


@pytest.mark.parametrize(
    ("name", "body"),
    [("blank.csv", b"\n\n  \r\n"), ("bom.csv", b"\xef\xbb\xbf\n"), ("blank.json", b" \n")],
)
def test_a_file_of_blank_lines_says_so(tmp_path: Path, name: str, body: bytes) -> None:
    """A file of blank lines (or only a byte-order mark) "has a header but no data rows
    (columns: column0)": there is no header either."""
    path = tmp_path / name
    path.write_bytes(body)
    with pytest.raises(InputError, match=f"{name}: holds only blank lines") as err:
        read_source(path)
    assert "column0" not in err.value.message


def test_header_only(tmp_path: Path) -> None:
    path = tmp_path / "header.csv"
    path.write_text("InvoiceNo,CustomerID,InvoiceDate,UnitPrice\n")
    with pytest.raises(InputError, match=r"header\.csv: has a header but no data rows"):
        read_source(path)


def test_binary_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.csv"
    path.write_bytes(bytes(range(256)) * 40)
    with pytest.raises(InputError, match=r"garbage\.csv: does not look like a text file"):
        read_source(path)


def test_garbage_parquet_and_excel(tmp_path: Path) -> None:
    pq, xl = tmp_path / "bad.parquet", tmp_path / "bad.xlsx"
    pq.write_bytes(b"this is not parquet at all" * 10)
    xl.write_bytes(b"PK not really a zip" * 10)
    with pytest.raises(InputError, match=r"bad\.parquet"):
        read_source(pq)
    with pytest.raises(InputError, match=r"bad\.xlsx: cannot be read as a spreadsheet"):
        read_source(xl)


def test_unknown_extension(tmp_path: Path) -> None:
    path = tmp_path / "data.xyz"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(InputError, match=r"data\.xyz: unknown file type") as err:
        read_source(path)
    assert "--format" in err.value.hint


def test_truncated_gzip(tmp_path: Path) -> None:
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" * 1000)[:30])
    with pytest.raises(InputError, match=r"cut\.csv\.gz"):
        read_source(path).count()


# ---------------------------------------------------------------- writers
def test_atomic_path_cannot_be_redirected_by_another_user(
    shared_folder: Path, tmp_path: Path
) -> None:
    """The temporary file of an atomic write was a name beside the output, free between
    choosing and writing it: another user of a shared output folder put a symbolic link
    there (seen with inotify, every time), and ``segmint score --out`` overwrote the
    file it pointed to with the scores. It now sits in a folder only the writer enters."""
    from conftest import plant_link_as_other_user
    from segmint.io import atomic_path

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    target = shared_folder / "scores.csv"
    with atomic_path(target) as tmp:
        planted = plant_link_as_other_user(tmp, victim)
        tmp.write_text("scores")
    assert victim.read_text() == "precious", "the write followed the planted link"
    assert not planted
    assert target.read_text() == "scores" and not target.is_symlink()
    assert sorted(p.name for p in shared_folder.iterdir()) == ["scores.csv"]


def test_write_table_is_atomic_and_streams_ibis(tmp_path: Path, retail_csv: Path) -> None:
    src = read_source(retail_csv)
    out = write_table(src.table, tmp_path / "out" / "copy.parquet")
    assert pd.read_parquet(out).shape == (6, 9)
    csv_out = write_table(retail_frame(), tmp_path / "copy.csv")
    assert pd.read_csv(csv_out).shape == (6, 8)
    assert not list(tmp_path.glob(".*.part"))
    with pytest.raises(ConfigError, match="must end in .parquet or .csv"):
        write_table(retail_frame(), tmp_path / "x.txt")


RISKY = ['=HYPERLINK("http://x.example","click")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_escape_formulas_neutralises_text_and_keeps_numbers() -> None:
    """OWASP CSV injection: a text cell starting with = + - @ tab or CR runs as a
    formula in Excel; a leading apostrophe makes it text. Numbers stay numbers."""
    frame = pd.DataFrame(
        {
            "customer_id": [*RISKY, "-5", "+1.5e3", "17850", None],
            "monetary": [-12.5, 1.0, -3.0, 4.0, 5.0, 6.0, -7.25, 8.0, 9.0, 10.0],
            "mixed": ["=1", 2, None, -4.5, "@a", "ok", "-", "b", "c", "d"],
        }
    )
    frame["name"] = pd.Series(["=x", "y"] * 5, dtype="string")
    out = escape_formulas(frame)
    assert out["customer_id"].tolist()[:6] == ["'" + v for v in RISKY]
    # plain numbers written as text (a negative id, an exponent) are not formulas
    assert out["customer_id"].tolist()[6:9] == ["-5", "+1.5e3", "17850"]
    assert out["customer_id"].isna().iloc[9]
    assert out["monetary"].equals(frame["monetary"])  # negative numbers untouched
    assert out["mixed"].tolist()[:7] == ["'=1", 2, None, -4.5, "'@a", "ok", "'-"]
    assert out["name"].dtype == frame["name"].dtype and out["name"].iloc[0] == "'=x"
    assert frame["customer_id"].iloc[0] == RISKY[0]  # the caller's frame is not changed
    clean = pd.DataFrame({"a": ["x", "-1"], "b": [-1, 2], "day": [date(2011, 1, 2)] * 2})
    assert escape_formulas(clean) is clean


def _csv_column(path: Path, column: int = 0) -> list[str]:
    import csv

    with path.open(newline="", encoding="utf-8") as fh:
        return [row[column] for row in list(csv.reader(fh))[1:]]


@pytest.mark.parametrize("kind", ["pandas", "ibis"])
def test_write_table_escapes_formulas_only_when_asked(tmp_path: Path, kind: str) -> None:
    # (a bare CR is left out: pandas does not quote it, so no CSV reader keeps it)
    risky = RISKY[:5]
    frame = pd.DataFrame({"description": [*risky, "-5"], "quantity": [-1, 2, 3, 4, 5, 6]})
    if kind == "pandas":
        data = frame
    else:  # a DuckDB table: escaped by the engine, as the rejected lines are
        frame.to_parquet(tmp_path / "in.parquet")
        data = read_source(tmp_path / "in.parquet").table.drop("_row")
    raw = write_table(data, tmp_path / "raw.csv")
    assert _csv_column(raw) == [*risky, "-5"]
    safe = write_table(data, tmp_path / "safe.csv", escape=True)
    assert _csv_column(safe) == ["'" + v for v in risky] + ["-5"]
    assert _csv_column(safe, 1) == ["-1", "2", "3", "4", "5", "6"]  # still numbers
    assert pd.read_parquet(write_table(data, tmp_path / "t.parquet", escape=True)).equals(frame)


@pytest.mark.parametrize("kind", ["pandas", "ibis"])
def test_escape_formulas_keeps_numbers_in_the_forms_segmint_reads(
    tmp_path: Path, kind: str
) -> None:
    """Rejected lines keep the source's columns as text: a return's amount of a German
    file (-2,55, -1.234,56) or with thousands commas (-1,234.56) is a number to a
    spreadsheet, not a formula, and got a leading apostrophe (a text cell that cannot
    be summed)."""
    numbers = ["-2,55", "-1.234,56", "-1,234.56", "+1,5", "-1.234.567", "-0,5", "-,5"]
    risky = ["-1,5+2", "-2,55;x", "=1,5", "-1.23,4", "@1,5", "-1,2,3e"]
    frame = pd.DataFrame({"amount": numbers + risky})
    if kind == "pandas":
        data = frame
    else:  # the rejected lines' table, escaped by DuckDB
        frame.to_parquet(tmp_path / "in.parquet")
        data = read_source(tmp_path / "in.parquet").table.drop("_row")
    out = _csv_column(write_table(data, tmp_path / "safe.csv", escape=True))
    assert out == numbers + ["'" + v for v in risky]


def test_atomic_path_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "result.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]


def test_reserved_row_column(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    retail_frame().assign(_row=1).to_csv(path, index=False)
    with pytest.raises(InputError, match="column named '_row'"):
        read_source(path)


def test_engine_is_bounded_by_default(monkeypatch) -> None:
    from segmint.io import connect

    monkeypatch.delenv("SEGMINT_MEMORY_LIMIT", raising=False)
    con = connect()
    limit = con.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.endswith("MiB") and float(limit.split()[0]) < 1000
    spill = con.con.execute("SELECT current_setting('temp_directory')").fetchone()[0]
    assert "segmint-spill-" in spill
    monkeypatch.setenv("SEGMINT_MEMORY_LIMIT", "2GB")
    limit = connect().con.execute("SELECT current_setting('memory_limit')").fetchone()[0]
    assert limit.startswith("1.8")  # 2 GB in GiB
    import tempfile

    made: list[str] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, **kwargs):
        made.append(real_mkdtemp(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    with pytest.raises(ConfigError, match="refused"):
        connect(memory_limit="plenty")
    # the refused engine leaves no spill folder behind
    assert len(made) == 1 and not os.path.exists(made[0])
    # a thread count in the environment that is not one is refused, not ignored
    monkeypatch.setenv("SEGMINT_THREADS", "two")
    with pytest.raises(ConfigError, match="SEGMINT_THREADS='two'"):
        connect()
    monkeypatch.setenv("SEGMINT_THREADS", "1")
    assert connect().con.execute("SELECT current_setting('threads')").fetchone()[0] == 1


def test_private_spill_folder_goes_with_its_engine(monkeypatch, online_retail) -> None:
    """Each engine's private spill folder stayed until the process ended: a service
    scoring uploads (one engine each) piled them up. It goes when the engine does."""
    import gc

    from segmint.io import connect
    from segmint.pipeline import prepare

    monkeypatch.delenv("SEGMINT_TEMP_DIR", raising=False)
    con = connect()
    spill = Path(con.con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    prepared = prepare(online_retail, con=con)
    assert spill.is_dir() and prepared.cleaned.audit.balanced
    del con, prepared
    gc.collect()
    assert not spill.exists()


def test_parquet_rows_are_numbered_like_the_file(tmp_path: Path) -> None:
    df = pd.concat([retail_frame()] * 50, ignore_index=True)
    df.to_parquet(tmp_path / "x.parquet", row_group_size=7)
    rows = read_source(tmp_path / "x.parquet").table.order_by("_row").execute()
    assert rows["_row"].tolist() == list(range(1, 301))
    assert rows["InvoiceNo"].tolist() == df["InvoiceNo"].tolist()


def test_engine_draws_no_progress_bar_of_its_own() -> None:
    from segmint.io import connect

    con = connect()
    assert con.con.execute("SELECT current_setting('enable_progress_bar')").fetchone()[0] is False


def test_excel_serial_dates_date_cells_among_text_and_repeated_headers(tmp_path: Path) -> None:
    """Three spreadsheet habits that lost data: dates stored as serial numbers (every line
    dropped: "no line is left"), one real date cell in a column of d/m/Y text (dropped as
    unparseable), and a header repeated (the first column silently replaced)."""
    import datetime as dt

    import xlsxwriter

    from segmint.clean import clean
    from segmint.schema import resolve

    path = tmp_path / "habits.xlsx"
    book = xlsxwriter.Workbook(path)
    serial, mixed = book.add_worksheet("serial"), book.add_worksheet("mixed")
    head = ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice", "CustomerID"]
    serial.write_row(0, 0, [*head, "CustomerID", "Country"])
    serial.write_row(1, 0, ["1", "A", 2, 40513.35, 2.5, "111", "999", "UK"])
    serial.write_row(2, 0, ["2", "A", 1, 40514.5, 2.5, "112", "998", "UK"])
    mixed.write_row(0, 0, [*head, "Country"])
    mixed.write_row(1, 0, ["1", "A", 2, "01/12/2010", 2.5, "111", "UK"])
    mixed.write_row(2, 0, ["2", "A", 1, "15/12/2010", 2.5, "112", "UK"])
    mixed.write_row(3, 0, ["3", "A", 1, None, 2.5, "113", "UK"])
    mixed.write_datetime(3, 3, dt.datetime(2010, 12, 20), book.add_format({"num_format": "d"}))
    book.close()

    src = read_source(path, sheet="serial")
    assert src.columns[:8] == [*head, "CustomerID_1", "Country"]
    with pytest.raises(InputError, match="2 columns named 'CustomerID'"):
        resolve(src)  # which one holds the ids is a guess
    resolved = resolve(src, {"customer_id": "CustomerID"})
    assert any("Excel serial day numbers" in n for n in resolved.mapping.notes)
    kept = clean(resolved).lines.to_pandas()
    assert kept["customer_id"].tolist() == ["111", "112"]  # the first CustomerID column
    assert kept["invoice_date"].tolist() == [
        pd.Timestamp("2010-12-01 08:24:00"),
        pd.Timestamp("2010-12-02 12:00:00"),
    ]
    res = clean(resolve(read_source(path, sheet="mixed"), dayfirst=True))
    assert res.audit.kept_rows == 3
    assert sorted(res.lines.to_pandas()["invoice_date"].dt.day) == [1, 15, 20]


def test_a_ragged_line_near_the_top_is_named(tmp_path: Path) -> None:
    """One line with an extra field in the sniffer's sample made DuckDB take the header
    for a single column ("no column for customer_id (columns found: A,B,C)"), or, with
    --delimiter, "Error when sniffing file" with no line number."""
    lines = retail_frame().to_csv(index=False).splitlines()
    lines[2] += ",extra"
    path = tmp_path / "ragged.csv"
    path.write_text("\n".join(lines) + "\n")
    for delimiter in (None, ","):
        with pytest.raises(InputError, match="line 3 has 9 fields where the header has 8") as e:
            read_source(path, delimiter=delimiter)
        assert e.value.code == "ragged_line" and "double quotes" in e.value.hint
    # a value with the delimiter inside quotes is fine
    fields = lines[2][: -len(",extra")].split(",")
    fields[2] = '"WHITE, RED"'  # the description
    lines[2] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    src = read_source(path)
    assert src.count() == 6 and "WHITE, RED" in set(src.table.execute()["Description"])
    # a title line above the header (with a comma in a ';' file) is no ragged line: the
    # sniffer skips it and finds the columns
    title = tmp_path / "title.csv"
    body = retail_frame().to_csv(index=False, sep=";")
    title.write_text("Umsatzbericht, Dezember 2010\n" + body)
    assert read_source(title).columns[:2] == ["InvoiceNo", "StockCode"]
    # a ';' file with decimal commas: the bad line made the sniffer pick ',' instead
    semi = tmp_path / "semi.csv"
    semi.write_text(
        "InvoiceNo;StockCode;Quantity;InvoiceDate;UnitPrice;CustomerID\n"
        "1;A;1;2011-01-05;2,5;100\n2;A;1;2011-01-05;2,5;101;extra\n"
        "3;A;2;2011-01-06;3,5;102\n4;A;2;2011-01-06;3,5;103\n"
    )
    with pytest.raises(InputError, match="line 3 has 7 fields where the header has 6"):
        read_source(semi)
    # the line number counts physical lines, a quoted line break included
    multi = lines[:]
    fields = multi[1].split(",")
    fields[2] = '"TWO\nLINES"'
    multi[1] = ",".join(fields)
    multi[3] += ",extra"
    path.write_text("\n".join(multi) + "\n")
    with pytest.raises(InputError, match="line 5 has 9 fields"):
        read_source(path)


@pytest.mark.parametrize("orient", ["columns", "split", "index", "values", "table"])
def test_json_of_pandas_other_layouts_is_refused_with_the_records_layout(
    tmp_path: Path, orient: str
) -> None:
    """pandas' default DataFrame.to_json() (orient="columns") was read as one line of
    nested values: "no line is left after cleaning: all 1 input lines were dropped"."""
    path = tmp_path / "sales.json"
    retail_frame().to_json(path, orient=orient)
    with pytest.raises(InputError, match="sales.json: holds no flat records") as err:
        read_source(path)
    assert "orient='records'" in err.value.hint
    retail_frame().to_json(path, orient="records")  # the layout the hint gives is read
    assert read_source(path).count() == len(retail_frame())


def test_sqlite_files_and_sheet_options_on_text_files(tmp_path: Path) -> None:
    """An SQLite file was "unknown file type" (now its only table is read: more in
    test_sqlite.py); --sheet on a CSV was silently ignored."""
    import sqlite3

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE sales (a int)")
        conn.execute("INSERT INTO sales VALUES (1), (2)")
    conn.close()
    assert read_source(db).count() == 2
    csv_path = tmp_path / "a.csv"
    retail_frame().to_csv(csv_path, index=False)
    with pytest.raises(ConfigError, match="apply to Excel files, and this is csv"):
        read_source(csv_path, sheet="2024")


def test_zoned_timestamps_become_utc_whatever_the_machine_zone(tmp_path: Path) -> None:
    """Dates (and so recencies and segments) must not depend on the machine's zone:
    DuckDB converts a timestamp with a zone to its session's zone, which defaults to the
    machine's; segmint's connection sets UTC."""
    import subprocess
    import sys

    frame = retail_frame()
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"]).dt.tz_localize("Europe/Paris")
    path = tmp_path / "zoned.parquet"
    frame.to_parquet(path)
    code = (
        "import sys; from segmint.io import read_source; from segmint.schema import resolve;"
        "t = resolve(read_source(sys.argv[1])).table.order_by('_row').execute();"
        "print(t['invoice_date'].iloc[0])"
    )
    out = {
        zone: subprocess.run(
            [sys.executable, "-c", code, str(path)],
            capture_output=True, text=True, check=True, env=os.environ | {"TZ": zone},
        ).stdout.strip()
        for zone in ("America/New_York", "Asia/Tokyo")
    }  # fmt: skip
    first = pd.Timestamp(retail_frame()["InvoiceDate"].iloc[0]) - pd.Timedelta(hours=1)
    assert set(out.values()) == {str(first)}, out


def test_zstandard_compressed_csv_reads_in_the_default_install(tmp_path: Path) -> None:
    """.zst is listed as supported; the encoding check needed 'zstandard', which was not
    a dependency (and --encoding did not avoid it)."""
    import zstandard

    path = tmp_path / "sales.csv.zst"
    path.write_bytes(
        zstandard.ZstdCompressor().compress(retail_frame().to_csv(index=False).encode())
    )
    src = read_source(path)
    assert src.count() == 6 and src.details["compression"] == "zstd"


def test_a_full_disk_while_writing_names_the_output(monkeypatch, tmp_path: Path) -> None:
    """`clean --out` on a full disk was "Internal error ... a bug in segmint" (exit 70);
    other writers said "check the path" without naming the file. /dev/full answers
    every write with "no space left on device"."""
    import contextlib

    import segmint.io as sio

    @contextlib.contextmanager
    def full(target):
        yield Path("/dev/full")

    monkeypatch.setattr(sio, "atomic_path", full)
    lines = read_source(retail_frame())
    for data in (lines.table, retail_frame()):
        with pytest.raises(InputError) as err:
            sio.write_table(data, tmp_path / "out.parquet")
        assert err.value.code == "disk_full" and "out.parquet" in err.value.message


# ---------------------------------------------------------------- folders of parts
def _retail_extract(retail_pandas: pd.DataFrame) -> pd.DataFrame:
    """200 Online Retail lines and the 32 with a ``£`` in their description."""
    pound = retail_pandas[retail_pandas["Description"].fillna("").str.contains("£")]
    out = pd.concat([retail_pandas.iloc[:200], pound], ignore_index=True)
    out["CustomerID"] = out["CustomerID"].astype("string")
    return out


def test_parquet_parts_keep_a_column_only_later_parts_have(
    tmp_path: Path, retail_pandas: pd.DataFrame
) -> None:
    """An export that gained a column: the first part has no Country. Taking the first
    part's columns for all parts dropped Country from every line."""
    df = _retail_extract(retail_pandas)
    parts = tmp_path / "parts"
    parts.mkdir()
    df.iloc[:100].drop(columns=["Country"]).to_parquet(parts / "part-0000.parquet")
    df.iloc[100:].to_parquet(parts / "part-0001.parquet")
    src = read_source(parts)
    assert "Country" in src.columns
    got = src.table.order_by("_row").execute()
    assert len(got) == len(df)
    assert got["Country"].isna().sum() == 100
    assert got["Country"].iloc[100:].tolist() == df["Country"].iloc[100:].tolist()


@pytest.mark.parametrize("options", [{}, {"encoding": "cp1252", "delimiter": ";"}])
def test_csv_parts_in_cp1252_with_semicolons(
    tmp_path: Path, retail_pandas: pd.DataFrame, options: dict
) -> None:
    """A folder of Windows exports (cp1252, ``;``, a decimal comma): the encoding was not
    detected and ``--encoding``/``--delimiter`` were not passed on, so the folder was
    refused as "not valid UTF-8" whatever the user gave. The parts' columns are matched
    by name (the second part has them in another order)."""
    df = _retail_extract(retail_pandas)
    df["UnitPrice"] = df["UnitPrice"].map(lambda v: repr(float(v)).replace(".", ","))
    parts = tmp_path / "parts"
    parts.mkdir()
    df.iloc[:100].to_csv(parts / "a.csv", sep=";", index=False, encoding="cp1252")
    later = df.iloc[100:]
    later[list(reversed(df.columns))].to_csv(
        parts / "b.csv", sep=";", index=False, encoding="cp1252"
    )
    src = read_source(parts, **options)
    assert src.details["parts"] == 2 and src.details["delimiter"] == ";"
    got = src.table.order_by("_row").execute()
    assert len(got) == len(df)
    assert got["Description"].fillna("").tolist() == df["Description"].fillna("").tolist()
    assert got["Description"].str.contains("£").sum() == 32
    assert got["UnitPrice"].tolist() == df["UnitPrice"].tolist()


def test_excel_title_rows_above_the_header_are_skipped(
    tmp_path: Path, retail_pandas: pd.DataFrame, cli
) -> None:
    """A report workbook: a notes sheet first, then the data under a title and a blank
    row. The title became the header (columns ``column1``, ...) and mapping failed; it
    is now skipped, as in a CSV file, and ``inspect`` says so."""
    df = _retail_extract(retail_pandas)
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    path = tmp_path / "report.xlsx"
    with pd.ExcelWriter(path, engine="xlsxwriter") as xl:
        pd.DataFrame({"note": ["data on the next sheet"]}).to_excel(
            xl, sheet_name="Notes", index=False
        )
        df.to_excel(xl, sheet_name="Sales 2011", index=False, startrow=2)
        xl.sheets["Sales 2011"].write(0, 0, "Online Retail: sales export 2011")
    src = read_source(path, sheet="Sales 2011")
    assert src.columns == list(df.columns)
    assert src.details["title_rows"] == {"Sales 2011": 1}
    got = src.table.order_by("_row").execute()
    assert len(got) == len(df)
    assert got["InvoiceNo"].tolist() == df["InvoiceNo"].tolist()
    assert got["Description"].str.contains("£").sum() == 32
    # a plain sheet (header in the first row) is read as before
    assert "title_rows" not in read_source(path, sheet="Notes").details
    res = cli("inspect", path, "--sheet", "1")
    assert res.code == 0, res.err
    assert "skipped above header" in res.out and "1 row of 'Sales 2011'" in res.out


def test_json_array_with_a_byte_order_mark(tmp_path: Path, retail_pandas: pd.DataFrame) -> None:
    """A JSON array saved by a Windows tool starts with a UTF-8 byte-order mark: DuckDB's
    detection read it as one value (a single column ``json``) and mapping failed. Ids
    written as text in some records and as numbers in others keep their text."""
    from segmint.clean import clean
    from segmint.schema import resolve

    df = _retail_extract(retail_pandas).dropna(subset=["CustomerID"]).iloc[:50]
    records = df.to_dict("records")
    records[0]["CustomerID"] = "00123"
    records[1]["CustomerID"] = int(records[1]["CustomerID"])
    path = tmp_path / "export.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(records, default=str).encode())
    src = read_source(path)
    assert src.columns == list(df.columns)
    assert src.count() == 50
    kept = clean(resolve(src)).lines.order_by("_row").execute()
    assert kept["customer_id"].iloc[0] == "00123"
    assert kept["customer_id"].iloc[1] == str(records[1]["CustomerID"])
    empty = tmp_path / "empty.json"
    empty.write_bytes(b"\xef\xbb\xbf[ ]\r\n")
    with pytest.raises(InputError, match=r"empty\.json: is an empty JSON array"):
        read_source(empty)


def test_folder_of_gzipped_csv_parts(tmp_path: Path, retail_pandas: pd.DataFrame) -> None:
    """Spark writes CSV parts with compression as ``part-00000-....csv.gz`` beside a
    ``_SUCCESS`` marker: the folder was refused as holding "no .parquet or .csv parts"."""
    df = _retail_extract(retail_pandas)
    parts = tmp_path / "out"
    parts.mkdir()
    (parts / "_SUCCESS").write_bytes(b"")
    for i, chunk in enumerate((df.iloc[:100], df.iloc[100:])):
        chunk.to_csv(parts / f"part-0000{i}-x.csv.gz", index=False, encoding="cp1252")
    src = read_source(parts)
    assert src.details["parts"] == 2 and src.details["compression"] == "gzip"
    got = src.table.order_by("_row").execute()
    assert got["InvoiceNo"].tolist() == df["InvoiceNo"].tolist()
    assert got["Description"].str.contains("£").sum() == 32


def _parts_folder(tmp_path: Path, kind: str) -> tuple[Path, pd.DataFrame]:
    """A folder of two parts (the second inside a sub-folder) of 6 + 6 lines; the second
    part's 2nd line has a missing customer id and its 4th a duplicate of its 3rd."""
    first, second = retail_frame(), retail_frame()
    second["InvoiceNo"] = [f"6{i:05d}" for i in range(6)]
    second.loc[1, "CustomerID"] = None
    second.loc[3] = second.loc[2]
    folder = tmp_path / "export"
    (folder / "sub").mkdir(parents=True)
    for df, rel in ((first, "part-0"), (second, "sub/part-1")):
        if kind == "parquet":
            df.to_parquet(folder / f"{rel}.parquet")
        else:  # cp1252: the second part is transcoded to a copy before it is read
            enc = "cp1252" if kind == "csv-cp1252" and rel.startswith("sub") else "utf-8"
            text = df.assign(Description=df["Description"] + (" £" if enc == "cp1252" else ""))
            text.to_csv(folder / f"{rel}.csv", index=False, encoding=enc)
    return folder, second


@pytest.mark.parametrize("kind", ["csv", "csv-copy", "csv-cp1252", "parquet"])
def test_a_folder_names_the_part_of_a_bad_or_dropped_line(
    tmp_path: Path, monkeypatch, kind: str
) -> None:
    """Errors and the rejected lines of a folder gave a row counted across all parts
    ("data row 8"), which names no file a user could open among a Spark job's 200 parts;
    they now name the part and its row."""
    from segmint.clean import clean
    from segmint.schema import resolve

    if kind == "csv-copy":  # the Parquet copy of large text, as for big folders
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "0")
    folder, _ = _parts_folder(tmp_path, kind)
    part = "sub/part-1." + ("parquet" if kind == "parquet" else "csv")
    res = clean(resolve(read_source(folder)))
    out = res.write_rejected(tmp_path / "rejected.csv")
    got = pd.read_csv(out, dtype=str)
    assert got[["rule", "source_row", "source_part", "source_part_row"]].values.tolist() == [
        ["missing_customer_id", "8", part, "2"],
        ["duplicate", "10", part, "4"],
    ]
    assert list(got.columns[5:]) == list(retail_frame().columns)
    # a value that is not a number: the message names the part and its row
    bad = tmp_path / "bad"
    folder.rename(bad)
    frame = retail_frame()
    frame["Quantity"] = frame["Quantity"].astype(str)
    frame.loc[4, "Quantity"] = "six"
    target = bad / "sub" / part.split("/")[1]
    target.unlink()
    if kind == "parquet":
        frame.to_parquet(target)
    else:
        frame.to_csv(target, index=False)
    with pytest.raises(InputError) as e:
        resolve(read_source(bad))
    assert f"'six' in data row 5 of {part} (row 11 of the folder)" in e.value.message
    # a single file keeps its plain row number
    with pytest.raises(InputError) as e:
        resolve(read_source(target))
    assert e.value.message.endswith("'six' in data row 5")


@pytest.mark.parametrize("kind", ["csv", "csv-copy", "parquet"])
@pytest.mark.parametrize("column", ["file_index", "segmint_part", "segmint_file_row"])
def test_a_folder_with_a_column_named_like_the_hidden_ones_is_read_whole(
    tmp_path: Path, monkeypatch, kind: str, column: str
) -> None:
    """A data column called ``file_index`` hid DuckDB's own, so its text made the folder
    unreadable ("Could not convert string to UINT32"; numbers were taken for parts);
    one called ``segmint_part`` was renamed ``segmint_part_1`` and failed with a
    TypeError, one called ``segmint_file_row`` made a text folder unreadable. Each is
    now kept as it is, and errors still name the part and its row."""
    if kind == "csv-copy":
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "0")
    folder = tmp_path / "export"
    folder.mkdir()
    first = retail_frame().assign(**{column: "a"})
    second = retail_frame().assign(**{column: "b"})
    for i, frame in enumerate((first, second)):
        if kind == "parquet":
            frame.to_parquet(folder / f"part-{i}.parquet")
        else:
            frame.to_csv(folder / f"part-{i}.csv", index=False)
    src = read_source(folder)
    assert src.columns == [*retail_frame().columns, column]
    got = src.table.order_by("_row").to_pandas()
    assert got[column].tolist() == ["a"] * 6 + ["b"] * 6
    ending = "parquet" if kind == "parquet" else "csv"
    assert src.where(11) == f"data row 5 of part-1.{ending} (row 11 of the folder)"


@pytest.mark.parametrize(
    ("second", "message"),
    [
        ({"sep": ";"}, r"part-1\.csv: its header 'InvoiceNo;StockCode;.*' has no ','"),
        ({"header": False}, r"part-1\.csv: its first line '700000,85123A,.*' shares no column"),
    ],
)
def test_a_part_in_another_layout_is_refused_not_dropped(
    tmp_path: Path, second: dict, message: str
) -> None:
    """A part written with ``;`` was read as one column and each of its lines dropped as
    "no customer id"; a part without a header line gave its first line as column names
    and every line was dropped. The folder loaded, and the audit showed only drops."""
    folder = tmp_path / "export"
    folder.mkdir()
    other = retail_frame()
    other["InvoiceNo"] = [f"7{i:05d}" for i in range(6)]
    retail_frame().to_csv(folder / "part-0.csv", index=False)
    other.to_csv(folder / "part-1.csv", index=False, **second)
    with pytest.raises(InputError, match=message) as e:
        read_source(folder)
    assert e.value.code == "mixed_parts"


def test_empty_parts_are_left_out_and_mixed_kinds_refused(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A Spark job writes an empty file for each empty partition: the folder was refused
    as "the file is empty". A folder of Parquet and CSV parts was read as its Parquet
    parts only, the CSV lines left out without a word."""
    folder = tmp_path / "export"
    folder.mkdir()
    retail_frame().to_csv(folder / "part-0.csv.gz", index=False)
    (folder / "part-1.csv.gz").write_bytes(gzip.compress(b""))
    (folder / "part-2.csv").write_bytes(b"")
    with caplog.at_level("WARNING", logger="segmint.io"):
        src = read_source(folder)
    assert src.count() == 6
    assert src.details["parts"] == 1 and src.details["empty_parts"] == 2
    assert "2 empty part(s) left out (e.g. part-1.csv.gz)" in caplog.text
    retail_frame().to_parquet(folder / "part-3.parquet")
    with pytest.raises(InputError, match=r"holds both Parquet parts \(1, e\.g\. part-3") as e:
        read_source(folder)
    assert e.value.code == "mixed_parts"


def test_a_part_with_a_ragged_line_is_refused_not_left_out(tmp_path: Path) -> None:
    """A line with two extra fields at the end of one part made DuckDB's sniffer skip
    that part's header and lines and take the bad line for its header: the folder loaded
    with that part's lines silently missing (and its values as column names). A single
    such file read as zero rows of columns named after the bad line's values."""
    folder, _ = _parts_folder(tmp_path, "csv")
    part = folder / "sub" / "part-1.csv"
    with part.open("a") as f:
        f.write("600009,85123A,X,6,2010-12-01 08:26:00,2.55,17850,UK,extra,more\n")
    message = r"part-1\.csv: line 8 has 10 fields where the header has 8"
    for path in (folder, part):
        with pytest.raises(InputError, match=message) as e:
            read_source(path)
        assert e.value.code == "ragged_line"


@pytest.mark.parametrize("ending", [".json", ".ndjson"])
def test_a_json_key_repeated_in_a_record_is_named(tmp_path: Path, ending: str) -> None:
    """A record with the same key twice was "cannot be read as JSON" with a hint about
    arrays and NDJSON; it now names the key and the record."""
    record = '{"InvoiceNo": "1", "Quantity": 2, "Quantity": 5, "CustomerID": "7"}'
    path = tmp_path / f"lines{ending}"
    path.write_text(f"[{record}]" if ending == ".json" else record + "\n")
    with pytest.raises(InputError) as e:
        read_source(path)
    place = "record 1" if ending == ".json" else "line 1"
    assert e.value.message == f"{path}: the key 'Quantity' appears twice in one object (in {place})"
    assert e.value.code == "duplicate_column"


def test_parts_with_a_column_of_types_that_cannot_be_unified_are_named(tmp_path: Path) -> None:
    """Timestamps in one part and epoch seconds in another: the message was DuckDB's
    "Conversion Error ... Unimplemented type for cast" with a hint about --format."""
    from segmint.clean import clean
    from segmint.schema import resolve

    folder = tmp_path / "export"
    folder.mkdir()
    first = retail_frame().assign(InvoiceDate=pd.to_datetime(retail_frame()["InvoiceDate"]))
    second = first.assign(InvoiceDate=first["InvoiceDate"].astype("int64") // 10**9)
    first.to_parquet(folder / "part-0.parquet")
    second.to_parquet(folder / "part-1.parquet")
    with pytest.raises(InputError) as e:
        clean(resolve(read_source(folder)))
    assert e.value.message == (
        f"{folder}: column 'InvoiceDate' is BIGINT in {folder}/part-1.parquet but TIMESTAMP "
        "in other parts, and cannot be read as one column"
    )
    assert e.value.code == "mixed_parts"


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_a_ragged_line_beyond_the_sniffer_sample_is_named_with_its_fields(
    tmp_path: Path, monkeypatch, encoding: str
) -> None:
    """A line with a field too many after the sniffer's 20,480 lines said only "cannot be
    read as CSV (line N) (CSV Error on Line: N)"; it now gives the counts and the line."""
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "0")
    head = "InvoiceNo,InvoiceDate,UnitPrice,Quantity,CustomerID,Description\n"
    good = "1,2010-12-01 08:26:00,2.5,1,100,CAFÉ\n" * 30_000
    bad = '2,2010-12-01 08:26:00,2.5,1,100,"A, B",extra\n'
    path = tmp_path / "lines.csv.gz"
    path.write_bytes(gzip.compress((head + good + bad + good).encode(encoding)))
    with pytest.raises(InputError) as e:
        read_source(path)
    assert e.value.message == (
        f"{path}: line 30002 has 7 fields where the header has 6: "
        "'2,2010-12-01 08:26:00,2.5,1,100,\"A, B\",extra'"
    )
    assert e.value.code == "ragged_line"


@pytest.mark.parametrize("cut", [100_000, 2_000_000])
@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "parquet-copy"])
def test_a_gzip_file_cut_short_is_named(
    cli, online_retail: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cut, in_memory
) -> None:
    """A download cut short printed only "Aborted!" and exited 1 (Python's EOFError, taken
    by the CLI for Ctrl-D), or got the hint to check the delimiter and quoting."""
    if not in_memory:
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "0")
    path = tmp_path / "cut.csv.gz"
    path.write_bytes(online_retail.read_bytes()[:cut])
    res = cli("inspect", path)
    assert res.code == 2, res.err + res.out
    assert res.err.startswith(f"Error: {path}: the compressed file is cut short or damaged")
    assert "gzip -t" in res.err and "Aborted" not in res.err + res.out
    from segmint.pipeline import prepare

    with pytest.raises(InputError, match="cut short or damaged"):
        prepare(path)


def test_writing_over_a_folder_names_it_not_the_temporary_file(cli, tmp_path: Path) -> None:
    """The rename into place failed after the work, naming the hidden temporary file
    (".adir.x1y2.part/adir: Is a directory"), and `init` offered --force, which failed."""
    from segmint.io import atomic_path

    folder = tmp_path / "adir.json"
    folder.mkdir()
    with pytest.raises(ConfigError, match=r"adir\.json: is a folder, not a file"):
        with atomic_path(folder) as tmp:
            tmp.write_text("{}")
    assert folder.is_dir() and not list(tmp_path.glob(".*.part"))
    for extra in ([], ["--force"]):
        res = cli("init", folder, *extra)
        assert res.code == 2 and "is a folder, not a file" in res.err, res.err
        assert "--force" not in res.err and ".part" not in res.err
