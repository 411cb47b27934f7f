"""Text files above the in-memory size: parsed once into a Parquet copy in the engine's
spill folder, with every result the same as for a file parsed into memory.

``SEGMINT_TEXT_IN_MEMORY`` (bytes) sets the size; 0 sends every text file to the copy,
so small real files take the large-file path here, on real DuckDB.
"""

from __future__ import annotations

import gc
import gzip
import random
from pathlib import Path

import pandas as pd
import pytest

from segmint.datasets._synthetic import ONLINE_RETAIL_COLUMNS
from segmint.errors import ConfigError, InputError, ParseError
from segmint.features import customer_features
from segmint.io import connect, read_source
from segmint.pipeline import prepare

COLS = list(ONLINE_RETAIL_COLUMNS)
BIG = str(1 << 40)  # every test file in memory
NONE = "0"  # every text file through the Parquet copy


def _lines(n: int = 1500, seed: int = 3) -> list[list]:
    """Lines that hit every cleaning rule, with blanks around values, "no value" markers,
    exact duplicates, returns, postage and non-ASCII text."""
    rng = random.Random(seed)
    out: list[list] = []
    for i in range(n):
        inv = f"{540000 + i // 4}"
        day, hour = 1 + i % 28, 8 + i % 10
        row = [
            inv,
            rng.choice(["85123A", "22633", "84879", "POST", "21756", "gift_0001_10"]),
            rng.choice(["HEART", "CAFÉ SET", "BIRD", "WARMER"]),
            rng.choice([1, 2, 6, 12, -1, 0, 1500]),
            (2011, 1 + i % 12, day, hour, i % 60),
            rng.choice([2.55, 1.85, 0.0, 1234.5, 12.0]),
            rng.choice(["17850", "13047", "12583", "", "NULL", "15408", " 16029 "]),
            rng.choice(["United Kingdom", "France", " Germany", "EIRE"]),
        ]
        if i % 97 == 5:
            row[0] = "C" + row[0]
        if i % 89 == 7:
            row[4] = "not a date"
        if i % 83 == 3:
            row[3] = "N/A"
        out.append(row)
        if i % 50 == 10:
            out.append(list(row))  # an exact duplicate
    return out


def _write(path: Path, rows: list[list], *, sep: str, style: str, encoding: str) -> Path:
    """Write ``rows`` as text: ``style`` "iso" (decimal point, ISO dates), "european"
    (decimal comma, dots grouping thousands, 13.01.2011 dates) or "us" (commas grouping
    thousands, 1/13/2011 8:26 PM dates)."""

    def date(v):
        if isinstance(v, str):
            return v
        y, m, d, h, mi = v
        if style == "european":
            return f"{d:02d}.{m:02d}.{y} {h:02d}:{mi:02d}"
        if style == "us":
            ap = "PM" if h >= 12 else "AM"
            return f"{m}/{d}/{y} {(h - 1) % 12 + 1}:{mi:02d} {ap}"
        return f"{y}-{m:02d}-{d:02d} {h:02d}:{mi:02d}:00"

    def price(v: float) -> str:
        if style == "european":
            whole, frac = f"{v:,.2f}".split(".")
            return whole.replace(",", ".") + "," + frac
        if style == "us":
            return f"{v:,.2f}"
        return repr(v)

    def quote(v) -> str:
        text = str(v)
        return f'"{text}"' if sep in text or '"' in text else text

    lines = [sep.join(COLS)]
    for r in rows:
        cells = [r[0], r[1], r[2], r[3], date(r[4]), price(r[5]), r[6], r[7]]
        lines.append(sep.join(quote(c) for c in cells))
    data = ("\r\n".join(lines) + "\r\n").encode(encoding)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(data))
    elif path.name.endswith(".zst"):
        import zstandard

        path.write_bytes(zstandard.ZstdCompressor().compress(data))
    else:
        path.write_bytes(data)
    return path


VARIANTS = {
    # name: (file name, delimiter, style, encoding)
    "utf8": ("shop.csv", ",", "iso", "utf-8"),
    "gzip": ("shop.csv.gz", ",", "iso", "utf-8"),
    "zstd": ("shop.csv.zst", ",", "iso", "utf-8"),
    "cp1252_decimal_comma": ("shop.csv", ";", "european", "cp1252"),
    "latin1_us_tsv": ("shop.tsv", "\t", "us", "latin-1"),
}


def _prepared(path: Path, monkeypatch, threshold: str, spill: Path):
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", threshold)
    return prepare(path, con=connect(temp_directory=spill))


def _frame(table) -> pd.DataFrame:
    return table.execute().sort_values("_row").reset_index(drop=True)


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_parquet_copy_gives_the_same_lines_audit_rejected_rows_and_features(
    tmp_path: Path, monkeypatch, variant: str
) -> None:
    name, sep, style, encoding = VARIANTS[variant]
    rows = _lines()
    if style == "european":  # a Windows-1252 byte (0x80) that Latin-1 does not print
        rows[7][2] = "EURO € SIGN"
    path = _write(tmp_path / name, rows, sep=sep, style=style, encoding=encoding)
    small = _prepared(path, monkeypatch, BIG, tmp_path / "spill-a")
    large = _prepared(path, monkeypatch, NONE, tmp_path / "spill-b")

    assert small.source.details["in_memory"] is True and not small.source.columnar
    assert large.source.details["in_memory"] is False and large.source.columnar
    assert large.source.details["copy"] == "parquet"
    same = {k: v for k, v in small.source.details.items() if k not in ("in_memory", "copy")}
    assert {k: v for k, v in large.source.details.items() if k in same} == same
    assert same["encoding"] == {"cp1252": "cp1252", "latin-1": "latin-1"}.get(encoding, "utf-8")
    assert small.resolved.mapping.to_dict() == large.resolved.mapping.to_dict()
    if style != "iso":
        assert any(("decimal comma" in n or "commas grouping" in n) for n in
                   small.resolved.mapping.notes)  # fmt: skip
    audit = small.cleaned.audit
    assert audit.to_dict() == large.cleaned.audit.to_dict()
    assert audit.balanced and audit.input_rows == len(rows)
    assert {r.name for r in audit.rules if r.dropped} >= {
        "missing_customer_id", "unparseable_date", "duplicate", "cancellation", "return",
        "non_product", "non_positive_price", "invalid_quantity",
    }  # fmt: skip
    for part in ("lines", "returns", "rejected"):
        pd.testing.assert_frame_equal(
            _frame(getattr(small.cleaned, part)), _frame(getattr(large.cleaned, part))
        )
    persisted = large.cleaned.persist()
    pd.testing.assert_frame_equal(_frame(small.cleaned.lines), _frame(persisted.lines))
    a = pd.read_parquet(small.cleaned.write_rejected(tmp_path / "a.parquet"))
    b = pd.read_parquet(large.cleaned.write_rejected(tmp_path / "b.parquet"))
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == audit.dropped_rows
    # source_row is the data row of the file: the original text of that line is beside it
    first = a.iloc[0]
    assert first["InvoiceNo"] == str(rows[int(first["source_row"]) - 1][0])
    f_small = customer_features(small.cleaned).to_pandas()
    f_large = customer_features(large.cleaned).to_pandas()
    pd.testing.assert_frame_equal(f_small, f_large)
    assert len(f_small) == audit.kept_customers


@pytest.mark.parametrize("fmt", ["ndjson", "json", "json.gz"])
def test_json_is_parsed_once_on_both_paths_with_the_same_results(
    tmp_path: Path, monkeypatch, fmt: str
) -> None:
    """JSON and NDJSON were parsed again by the mapping profile and by cleaning; like
    CSV they are now parsed once, into memory or (large) into the Parquet copy, with
    the same audit, rejected rows and features either way."""
    rows = _lines(800)
    frame = pd.DataFrame(
        [[*r[:4], f"{r[4][0]}-{r[4][1]:02d}-{r[4][2]:02d} {r[4][3]:02d}:{r[4][4]:02d}:00"
          if not isinstance(r[4], str) else r[4], *r[5:]] for r in rows],
        columns=COLS,
    )  # fmt: skip
    path = tmp_path / f"shop.{fmt}"
    text = frame.to_json(orient="records", lines=fmt == "ndjson", force_ascii=False)
    data = text.encode()
    path.write_bytes(gzip.compress(data) if fmt.endswith(".gz") else data)
    small = _prepared(path, monkeypatch, BIG, tmp_path / "spill-a")
    large = _prepared(path, monkeypatch, NONE, tmp_path / "spill-b")
    assert small.source.details["in_memory"] is True
    assert large.source.details["copy"] == "parquet" and large.source.columnar
    audit = small.cleaned.audit
    assert audit.to_dict() == large.cleaned.audit.to_dict()
    assert audit.balanced and audit.input_rows == len(rows) and audit.dropped_rows > 0
    a = pd.read_parquet(small.cleaned.write_rejected(tmp_path / "a.parquet"))
    b = pd.read_parquet(large.cleaned.write_rejected(tmp_path / "b.parquet"))
    pd.testing.assert_frame_equal(a, b)
    first = a.iloc[0]
    assert first["InvoiceNo"] == str(rows[int(first["source_row"]) - 1][0])
    pd.testing.assert_frame_equal(
        customer_features(small.cleaned).to_pandas(), customer_features(large.cleaned).to_pandas()
    )


def test_a_folder_of_csv_parts_is_parsed_once_on_both_paths(tmp_path: Path, monkeypatch) -> None:
    """A folder of CSV parts (as Spark writes them) was parsed again by every stage."""
    rows = _lines(900)[:900]
    parts = tmp_path / "parts"
    parts.mkdir()
    for i in range(3):
        _write(parts / f"part-{i:04d}.csv", rows[i * 300 : (i + 1) * 300], sep=",",
               style="iso", encoding="utf-8")  # fmt: skip
    small = _prepared(parts, monkeypatch, BIG, tmp_path / "spill-a")
    large = _prepared(parts, monkeypatch, NONE, tmp_path / "spill-b")
    assert small.source.details["in_memory"] is True and small.source.details["parts"] == 3
    assert large.source.details["copy"] == "parquet" and large.source.columnar
    audit = small.cleaned.audit
    assert audit.to_dict() == large.cleaned.audit.to_dict() and audit.input_rows == len(rows)
    for part in ("lines", "rejected"):
        pd.testing.assert_frame_equal(
            _frame(getattr(small.cleaned, part)), _frame(getattr(large.cleaned, part))
        )
    pd.testing.assert_frame_equal(
        customer_features(small.cleaned).to_pandas(), customer_features(large.cleaned).to_pandas()
    )


def test_the_copy_is_read_instead_of_the_file_and_removed_with_the_engine(
    tmp_path: Path, monkeypatch
) -> None:
    """Every stage after loading reads the Parquet copy (the text file can go), which
    lives in a private folder of the engine's spill folder until the engine is gone."""
    path = _write(tmp_path / "shop.csv", _lines(300), sep=",", style="iso", encoding="utf-8")
    spill = tmp_path / "spill"
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", NONE)
    con = connect(temp_directory=spill)
    src = read_source(path, con=con)
    copies = list(spill.glob("segmint-copy-*/lines.parquet"))
    assert len(copies) == 1
    path.unlink()  # nothing parses the text again
    from segmint.clean import clean
    from segmint.schema import resolve

    result = clean(resolve(src))
    assert result.audit.balanced and result.audit.input_rows == 306  # 300 + 6 duplicates
    assert customer_features(result).n_customers > 0
    assert len(pd.read_parquet(result.write_rejected(tmp_path / "r.parquet"))) > 0
    del src, result, con
    gc.collect()
    assert not copies[0].parent.exists()
    # a file under the size stays in memory: no copy
    small = _write(tmp_path / "small.csv", _lines(50), sep=",", style="iso", encoding="utf-8")
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "1000000")
    src = read_source(small, con=connect(temp_directory=spill))
    assert src.details["in_memory"] is True and "copy" not in src.details
    assert not list(spill.glob("segmint-copy-*"))


def test_transcoded_text_is_removed_once_parsed(tmp_path: Path, monkeypatch) -> None:
    """A Windows-1252 file is converted to UTF-8 text in a streaming pass; that copy is
    as large as the file and removed as soon as the lines are parsed (both paths)."""
    rows = _lines(200)
    rows[0][2] = "EURO € SIGN"
    path = _write(tmp_path / "w.csv", rows, sep=";", style="european", encoding="cp1252")
    for threshold in (BIG, NONE):
        spill = tmp_path / f"spill-{threshold}"
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", threshold)
        src = read_source(path, con=connect(temp_directory=spill))
        assert src.details["transcoded"] is True and src.details["encoding"] == "cp1252"
        assert not list(spill.glob("segmint-transcode-*"))
        row = src.table.filter(src.table._row == 1).execute().iloc[0]
        assert row["Description"] == "EURO € SIGN"


def test_rows_keep_the_file_order_across_parallel_chunks(tmp_path: Path, monkeypatch) -> None:
    """The copy's row numbers are the file's data rows also when DuckDB parses the file
    in parallel chunks (a file of about 40 MB, two threads)."""
    n = 700_000
    path = tmp_path / "long.csv"
    pad = "x" * 48
    with open(path, "w") as fh:
        fh.write("n,pad,CustomerID\n")
        fh.writelines(f"{i},{pad},{i % 977}\n" for i in range(n))
    assert path.stat().st_size > 32 << 20
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", NONE)
    src = read_source(path, con=connect(threads=2, temp_directory=tmp_path / "spill"))
    t = src.table
    bad = t.aggregate(rows=t.count(), misplaced=(t._row != t.n.cast("int64") + 1).sum()).execute()
    assert int(bad["rows"].iloc[0]) == n and int(bad["misplaced"].iloc[0]) == 0


def _error(path: Path, monkeypatch, threshold: str, tmp_path: Path) -> Exception:
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", threshold)
    spill = tmp_path / f"spill-{path.stem}-{threshold}"
    with pytest.raises((InputError, ParseError)) as info:
        prepare(path, con=connect(temp_directory=spill))
    return info.value


def test_errors_name_the_same_line_and_value_on_both_paths(tmp_path: Path, monkeypatch) -> None:
    rows = _lines(30_000)
    # a line with a field too many, past the 20,480 lines the dialect sniffer reads
    ragged = _write(tmp_path / "ragged.csv", rows, sep=",", style="iso", encoding="utf-8")
    text = ragged.read_text().splitlines()
    text[25_001] += ",EXTRA"
    ragged.write_text("\n".join(text) + "\n")
    # a price that is not a number, in data row 1234
    rows_bad = [list(r) for r in rows[:2000]]
    bad = _write(tmp_path / "bad.csv", rows_bad, sep=",", style="iso", encoding="utf-8")
    lines = bad.read_text().splitlines()
    cells = lines[1234].split(",")
    cells[5] = "12 EUR"
    lines[1234] = ",".join(cells)
    bad.write_text("\n".join(lines) + "\n")
    # day/month order that cannot be told
    amb = tmp_path / "amb.csv"
    amb.write_text(
        "InvoiceNo,InvoiceDate,UnitPrice,CustomerID\n"
        + "".join(f"{i},0{1 + i % 9}/0{1 + i % 7}/2011,1.5,{i % 5}\n" for i in range(300))
    )
    for path, code in ((ragged, None), (bad, "not_a_number"), (amb, "ambiguous_dates")):
        small = _error(path, monkeypatch, BIG, tmp_path)
        large = _error(path, monkeypatch, NONE, tmp_path)
        assert str(small) == str(large)
        assert getattr(small, "code", None) == getattr(large, "code", None)
        if code:
            assert small.code == code
    assert "line 25002" in str(_error(ragged, monkeypatch, NONE, tmp_path))
    # a copy that failed is removed at once
    assert not list((tmp_path / f"spill-ragged-{NONE}").glob("segmint-copy-*"))
    assert "data row 1234" in str(_error(bad, monkeypatch, NONE, tmp_path))
    # --dayfirst resolves it the same way on both paths
    from segmint.config import LoadConfig

    got = []
    for threshold in (BIG, NONE):
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", threshold)
        p = prepare(amb, LoadConfig(dayfirst=True), con=connect(temp_directory=tmp_path / "d"))
        got.append(_frame(p.cleaned.lines))
    pd.testing.assert_frame_equal(*got)


def test_header_only_and_a_bad_size_setting(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "head.csv"
    path.write_text(",".join(COLS) + "\n")
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", NONE)
    with pytest.raises(InputError) as info:
        read_source(path, con=connect(temp_directory=tmp_path / "spill"))
    assert info.value.code == "no_rows"
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "256MB")
    with pytest.raises(ConfigError, match="SEGMINT_TEXT_IN_MEMORY"):
        read_source(path)


def test_an_unusable_spill_folder_or_a_full_disk_is_said_so(tmp_path: Path, monkeypatch) -> None:
    import duckdb

    from segmint.io import _translate

    path = _write(tmp_path / "shop.csv", _lines(20), sep=",", style="iso", encoding="utf-8")
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("x")
    monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", NONE)
    with pytest.raises(InputError) as info:
        read_source(path, con=connect(temp_directory=not_a_folder))
    assert info.value.code == "spill_folder" and "--temp-dir" in info.value.hint
    full = _translate(
        duckdb.IOException('Could not write file "x/lines.parquet": No space left on device'),
        "big.csv",
        None,
    )
    assert full.code == "disk_full" and "--temp-dir" in full.hint


def test_a_column_named_like_the_row_numbers(tmp_path: Path, monkeypatch) -> None:
    """A column called ``file_row_number`` (Parquet's own row-number option) stays a
    column, in a text file's copy and in a Parquet file, and rows are still numbered."""
    path = tmp_path / "frn.csv"
    path.write_text(
        "file_row_number,CustomerID,InvoiceDate,UnitPrice\n"
        + "".join(f"{7 + i},{i % 3},2011-01-0{1 + i % 9},2.5\n" for i in range(40))
    )
    got = []
    for threshold in (BIG, NONE):
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", threshold)
        src = read_source(path, con=connect(temp_directory=tmp_path / "spill"))
        frame = _frame(src.table)
        assert frame["_row"].tolist() == list(range(1, 41))
        assert frame["file_row_number"].tolist() == [str(7 + i) for i in range(40)]
        got.append(frame)
    pd.testing.assert_frame_equal(*got)
    pq = tmp_path / "frn.parquet"
    got[0].drop(columns="_row").to_parquet(pq)
    frame = _frame(read_source(pq).table)
    assert frame["_row"].tolist() == list(range(1, 41))
    assert frame["file_row_number"].tolist() == [str(7 + i) for i in range(40)]
