"""The CLI: inspect/clean/demo on real files, and one clear line for every bad input."""

from __future__ import annotations

import gzip
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from conftest import retail_frame


def _assert_clean_error(result, *needles: str, code: int | None = None) -> None:
    """Non-zero exit, 'Error:' on one line naming the culprit, a hint, no traceback."""
    assert result.code != 0
    if code is not None:
        assert result.code == code
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("Error: "), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert any(line.startswith("Hint: ") for line in lines[1:]), result.err
    assert "Traceback" not in result.err + result.out


# ---------------------------------------------------------------- bad input
def _empty(tmp: Path) -> Path:
    (p := tmp / "empty.csv").write_bytes(b"")
    return p


def _header_only(tmp: Path) -> Path:
    (p := tmp / "header_only.csv").write_text("InvoiceNo,CustomerID,InvoiceDate,UnitPrice\n")
    return p


def _binary(tmp: Path) -> Path:
    (p := tmp / "garbage.csv").write_bytes(bytes(range(256)) * 64)
    return p


def _unknown_ext(tmp: Path) -> Path:
    (p := tmp / "sales.numbers").write_text("a,b\n1,2\n")
    return p


def _missing_column(tmp: Path) -> Path:
    p = tmp / "no_customer.csv"
    retail_frame().drop(columns="CustomerID").rename(columns={"Country": "Kunde"}).to_csv(
        p, index=False
    )
    return p


def _text_in_numbers(tmp: Path) -> Path:
    df = retail_frame()
    df["UnitPrice"] = df["UnitPrice"].astype(str)
    df.loc[3, "UnitPrice"] = "£4.25"
    (p := tmp / "prices.csv").write_text(df.to_csv(index=False))
    return p


def _bad_dates(tmp: Path, value: str = "someday") -> Path:
    df = retail_frame().assign(InvoiceDate=value)
    df.to_csv(p := tmp / "dates.csv", index=False)
    return p


def _latin1(tmp: Path) -> Path:
    df = retail_frame()
    df.loc[0, "Description"] = "CAFÉ £5"
    df.to_csv(p := tmp / "latin1.csv", index=False, encoding="latin-1")
    return p


def _directory(tmp: Path) -> Path:
    (p := tmp / "exports").mkdir()
    return p


def _not_there(tmp: Path) -> Path:
    return tmp / "does_not_exist.csv"


BAD_INPUTS = {
    "empty file": (_empty, [], ["empty.csv", "empty"]),
    "header only": (_header_only, [], ["header_only.csv", "no data rows"]),
    "binary garbage": (_binary, [], ["garbage.csv", "not look like a text file"]),
    "unknown extension": (_unknown_ext, [], ["sales.numbers", "unknown file type"]),
    "missing required column": (
        _missing_column,
        [],
        ["no_customer.csv", "customer_id", "columns found"],
    ),
    "text in a numeric column": (
        _text_in_numbers,
        [],
        ["prices.csv", "'UnitPrice'", "1 of 6", "'£4.25'", "row 4"],
    ),
    "unparseable dates": (_bad_dates, [], ["dates.csv", "'InvoiceDate'", "'someday'"]),
    "latin-1 read as UTF-8": (_latin1, ["--encoding", "utf-8"], ["latin1.csv", "utf-8"]),
    "a directory": (_directory, [], ["exports", "folder"]),
    "a path that does not exist": (_not_there, [], ["does_not_exist.csv", "no such file"]),
    "brackets in a missing file's name": (
        lambda tmp: tmp / "data[final].csv",
        [],
        ["data[final].csv", "no such file"],
    ),
    "a bad date that looks like a console tag": (
        lambda tmp: _bad_dates(tmp, "[/b]"),
        [],
        ["dates.csv", "'[/b]'"],
    ),
    "a mapping file without its [columns] table": (
        lambda tmp: _bad_dates(tmp),
        ["--mapping", "{tmp}/map.toml"],
        ["map.toml", "needs a [columns] table"],
    ),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_one_clear_line(cli, tmp_path: Path, case: str) -> None:
    make, extra, needles = BAD_INPUTS[case]
    (tmp_path / "map.toml").write_text('customer_id = "CustomerID"\n')
    result = cli("inspect", make(tmp_path), *[a.format(tmp=tmp_path) for a in extra])
    _assert_clean_error(result, *needles)


def test_text_that_looks_like_console_markup_is_printed_as_it_is(
    cli, tmp_path: Path, monkeypatch
) -> None:
    """File names, values and segment names are the user's text: "[/]" or "[b]" in them
    is printed, never read as a rich tag (which raised a traceback or hid the text)."""
    monkeypatch.chdir(tmp_path)  # a short path: the table does not wrap it
    df = retail_frame()
    df["Country"] = "[/]"
    df.to_csv(path := Path("sales[b].csv"), index=False)
    r = cli("inspect", path)
    assert r.code == 0, r.err
    assert "sales[b].csv" in r.out and "[/]" in r.out and "Traceback" not in r.err
    df.rename(columns={"Description": "[red]Item"}).to_csv(path, index=False)
    r = cli("inspect", path)
    assert r.code == 0 and "[red]Item" in r.out, r.err


def test_bad_options_are_clear(cli, retail_csv: Path, tmp_path: Path) -> None:
    _assert_clean_error(
        cli("inspect", retail_csv, "--map", "customerid=CustomerID"),
        "unknown canonical column",
        code=2,
    )
    _assert_clean_error(cli("inspect", retail_csv, "--map", "nonsense"), "--map", code=2)
    _assert_clean_error(
        cli("inspect", retail_csv, "--outlier-quantile", "3"), "outlier_quantile", code=2
    )
    r = cli("inspect", retail_csv, "--mapping", tmp_path / "none.toml")
    assert r.code == 2 and "none.toml" in r.err and "Traceback" not in r.err
    usage = cli("inspect")  # no DATA and no --source: says how to give it
    assert usage.code == 2 and "no data given" in usage.err and "--source" in usage.err


def test_every_user_error_exits_with_2(cli, tmp_path: Path) -> None:
    assert cli("inspect", _not_there(tmp_path)).code == 2
    assert cli("inspect", _missing_column(tmp_path)).code == 2


# ---------------------------------------------------------------- commands
def test_inspect_online_retail(cli, online_retail: Path) -> None:
    r = cli("inspect", online_retail)
    assert r.code == 0, r.err
    out = r.out
    for fact in (
        "gzip",
        "utf-8 (detected)",
        "comma",
        "541,909",
        "135,080",
        "9,288",
        "2,517",
        "5,268",
        "CustomerID",
        "InvoiceDate",
        "balanced",
        "transactions",
    ):
        assert fact in out, fact
    assert "input 541,909 = kept 391,150 + dropped 150,759" in out


def test_inspect_json_and_rejected(cli, online_retail: Path, tmp_path: Path) -> None:
    rejected = tmp_path / "rejected.parquet"
    r = cli("inspect", online_retail, "--json", "--rejected", rejected)
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    audit = summary["audit"]
    assert audit["input_rows"] == 541_909
    assert audit["input_rows"] == audit["kept_rows"] + audit["dropped_rows"]
    rules = {x["name"]: x for x in audit["rules"]}
    assert rules["missing_customer_id"]["matched"] == 135_080
    assert summary["source"]["encoding"] == "utf-8"
    mapping = {c["canonical"]: c["source"] for c in summary["mapping"]["columns"]}
    assert mapping["customer_id"] == "CustomerID"
    df = pd.read_parquet(rejected)
    assert len(df) == audit["dropped_rows"]
    assert df["rule"].value_counts()["missing_customer_id"] == 135_080


def test_inspect_flo(cli, flo: Path) -> None:
    r = cli("inspect", flo)
    assert r.code == 0, r.err
    assert "Mapping (customers)" in r.out
    assert "input 19,945 = kept 19,945 + dropped 0" in r.out
    assert "master_id" in r.out


def test_workbook_with_a_sheet_per_year_names_the_sheets_it_did_not_read(
    cli, tmp_path: Path
) -> None:
    """UCI Online Retail II keeps a year per sheet ("Year 2009-2010", "Year 2010-2011"):
    without --sheet or --all-sheets only the first was read, without a word, so a run
    segmented half the lines with a snapshot date a year early. The sheets left out are
    now a warning and a row of inspect; naming a sheet says which one is wanted."""
    path = tmp_path / "online_retail_II.xlsx"
    df = retail_frame().rename(
        columns={"InvoiceNo": "Invoice", "UnitPrice": "Price", "CustomerID": "Customer ID"}
    )
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    with pd.ExcelWriter(path, engine="xlsxwriter") as xl:
        df.iloc[:2].to_excel(xl, sheet_name="Year 2009-2010", index=False)
        df.iloc[2:].to_excel(xl, sheet_name="Year 2010-2011", index=False)
    r = cli("inspect", path)
    assert r.code == 0, r.err
    warning = " ".join(r.err.split())
    assert "only the first sheet 'Year 2009-2010' was read" in warning, r.err
    assert "'Year 2010-2011'" in warning and "--all-sheets" in warning
    assert re.search(r"sheets not read\s*│\s*'Year 2010-2011'", r.out), r.out
    r = cli("inspect", path, "--json")
    assert json.loads(r.out)["source"]["sheets_not_read"] == ["Year 2010-2011"]
    for chosen in (["--sheet", "Year 2009-2010"], ["--all-sheets"]):
        r = cli("inspect", path, *chosen)
        assert r.code == 0, r.err
        assert "not read" not in r.err + r.out


def test_rejected_lines_of_every_sheet_give_their_row_in_that_sheet(cli, tmp_path: Path) -> None:
    """With --all-sheets the rejected lines' source_row counts on through the sheets: a
    line on the second sheet's first row was "row 3" of a sheet with one data row.
    ``sheet_row`` is its data row in its own sheet (``_sheet``)."""
    path = tmp_path / "two_years.xlsx"
    df = retail_frame()
    df["InvoiceDate"] = pd.to_datetime(df["InvoiceDate"])
    df.loc[2, "CustomerID"] = None  # the first row of the second sheet
    df.loc[5, "UnitPrice"] = 0.0  # its fourth row
    with pd.ExcelWriter(path, engine="xlsxwriter") as xl:
        df.iloc[:2].to_excel(xl, sheet_name="2010", index=False)
        df.iloc[2:].to_excel(xl, sheet_name="2011", index=False)
    rejected = tmp_path / "rejected.csv"
    r = cli("clean", path, "--all-sheets", "--out", tmp_path / "kept.parquet",
            "--rejected", rejected)  # fmt: skip
    assert r.code == 0, r.err
    got = pd.read_csv(rejected, dtype=str)
    assert got[["rule", "source_row", "sheet_row", "_sheet", "InvoiceNo"]].values.tolist() == [
        ["missing_customer_id", "3", "1", "2011", "536367"],
        ["non_positive_price", "6", "4", "2011", "536370"],
    ]
    book = pd.read_excel(path, sheet_name="2011", dtype=str, engine="calamine")
    assert book.iloc[3]["InvoiceNo"] == "536370"  # data row 4 of the sheet


def test_inspect_kaggle_style_latin1_with_us_dates(cli, tmp_path: Path) -> None:
    path = tmp_path / "data.csv.gz"
    df = retail_frame()
    df.loc[0, "Description"] = "Dotcomgiftshop Gift Voucher £40.00"
    df["InvoiceDate"] = [
        "12/1/2010 8:26",
        "12/2/2010 9:00",
        "12/13/2010 10:30",
        "1/4/2011 11:00",
        "1/5/2011 12:00",
        "1/6/2011 13:00",
    ]
    with gzip.open(path, "wt", encoding="latin-1") as fh:
        df.to_csv(fh, index=False)
    r = cli("inspect", path, "--json")
    summary = json.loads(r.out)
    assert summary["source"]["encoding"] == "latin-1"
    assert any("month/day/year" in n for n in summary["mapping"]["notes"])
    assert summary["audit"]["kept_rows"] == 6
    assert summary["audit"]["first_date"] == "2010-12-01 08:26:00"


def test_explicit_mapping_and_mapping_file(cli, tmp_path: Path) -> None:
    path = tmp_path / "de.csv"
    pd.DataFrame(
        {"Kunde": ["1", "2"], "Datum": ["2024-03-01", "2024-03-02"], "Umsatz": [10.0, 20.0]}
    ).to_csv(path, index=False)
    bad = cli("inspect", path)
    _assert_clean_error(bad, "customer_id", "Kunde")
    ok = cli(
        "inspect",
        path,
        "--map",
        "customer_id=Kunde",
        "--map",
        "invoice_date=Datum",
        "--map",
        "amount=Umsatz",
        "--json",
    )
    assert ok.code == 0, ok.err
    how = {c["canonical"]: c["how"] for c in json.loads(ok.out)["mapping"]["columns"]}
    assert how["customer_id"] == "explicit"
    toml = tmp_path / "map.toml"
    toml.write_text('[columns]\ncustomer_id = "Kunde"\ninvoice_date = "Datum"\namount = "Umsatz"\n')
    assert cli("inspect", path, "--mapping", toml).code == 0


def test_clean_writes_every_output(cli, tmp_path: Path) -> None:
    from segmint.datasets import make_transactions

    src = tmp_path / "demo.parquet"
    make_transactions(300, seed=5).lines.to_parquet(src)
    out, rej, ret, aud = (
        tmp_path / n for n in ("kept.parquet", "rejected.csv", "returns.parquet", "audit.json")
    )
    r = cli("clean", src, "--out", out, "--rejected", rej, "--returns", ret, "--audit", aud)
    assert r.code == 0, r.err
    audit = json.loads(aud.read_text())
    kept, rejected = pd.read_parquet(out), pd.read_csv(rej)
    assert len(kept) == audit["kept_rows"]
    assert len(rejected) == audit["dropped_rows"]
    assert len(kept) + len(rejected) == audit["input_rows"]
    assert len(pd.read_parquet(ret)) == audit["returns_rows"] > 0
    assert list(kept.columns)[:3] == ["customer_id", "invoice_id", "invoice_date"]
    # integer ids give the lines a hidden integer customer key: never in a written file
    for written in (kept, rejected, pd.read_parquet(ret)):
        assert not {"_cid", "_row"} & set(written.columns)


def test_rejected_lines_csv_neutralises_spreadsheet_formulas(cli, tmp_path: Path) -> None:
    """Rejected lines carry the raw data's descriptions: one such as =HYPERLINK(...)
    ran as a formula when the rejected.csv was opened in Excel."""
    frame = retail_frame()
    frame.loc[0, "Description"] = '=HYPERLINK("http://evil.example","fix me")'
    frame.loc[0, "Quantity"] = -6  # a return: dropped, with its negative quantity
    frame.loc[1, "CustomerID"] = None  # dropped: no customer id
    frame.loc[1, "Description"] = "+SUM(1,2)"
    src = tmp_path / "lines.csv"
    frame.to_csv(src, index=False)
    out, rej = tmp_path / "kept.parquet", tmp_path / "rejected.csv"
    for extra, prefix in (((), "'"), (("--no-escape-formulas",), "")):
        r = cli("clean", src, "--out", out, "--rejected", rej, *extra)
        assert r.code == 0, r.err
        rejected = pd.read_csv(rej).set_index("source_row")
        assert rejected.loc[1, "Description"] == prefix + frame.loc[0, "Description"]
        assert rejected.loc[2, "Description"] == prefix + "+SUM(1,2)"
        assert rejected.loc[1, "Quantity"] == -6  # a number, not "'-6"
    r = cli("inspect", src, "--rejected", rej)
    assert r.code == 0, r.err
    assert pd.read_csv(rej).set_index("source_row").loc[2, "Description"] == "'+SUM(1,2)"


def test_every_output_is_checked_before_any_is_written(cli, tmp_path: Path) -> None:
    """A bad --audit path (a folder that does not exist) used to fail after the kept
    lines and the rejected lines were already written; every output is now checked
    first: ending, folder, not the input, not another output."""
    from segmint.datasets import make_transactions

    src = tmp_path / "demo.csv"
    make_transactions(150, seed=5).lines.to_csv(src, index=False)
    out, rej = tmp_path / "kept.parquet", tmp_path / "rejected.csv"
    r = cli("clean", src, "--out", out, "--rejected", rej, "--audit", tmp_path / "no" / "a.json")
    _assert_clean_error(r, "--audit", "does not exist", code=2)
    assert not out.exists() and not rej.exists()
    cases = [
        (["clean", src, "--out", src], ["--out", "is also the input"]),
        (["clean", src, "--out", out, "--rejected", out], ["--rejected", "is also --out"]),
        (["clean", src, "--out", out, "--audit", tmp_path / "a.txt"], ["a.txt", ".json"]),
        (["clean", src, "--out", tmp_path], ["is a folder"]),
        (["clv", src, "--out", tmp_path / "clv.xlsx"], ["clv.xlsx", ".csv, .parquet"]),
        (["clv", src, "--pymc", tmp_path / "p.txt"], ["--pymc", "p.txt"]),
        (["backtest", src, "--cutoff", "2011-01-01", "--out", tmp_path / "bt.xlsx"], ["bt.xlsx"]),
        (["features", src, "--out", tmp_path / "f.tsv"], ["f.tsv", ".csv.gz"]),
        (["inspect", src, "--rejected", tmp_path / "r.xlsx"], ["--rejected", "r.xlsx"]),
    ]
    for args, needles in cases:
        _assert_clean_error(cli(*args), *needles, code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.csv"]


def test_clean_writes_all_its_outputs_or_none(cli, tmp_path: Path, monkeypatch) -> None:
    """A failure writing the rejected lines (an engine out of memory, a full disk) left
    the kept lines written beside an exit code 2; the outputs now appear together."""
    from segmint.clean import CleanResult
    from segmint.datasets import make_transactions
    from segmint.errors import InputError

    src = tmp_path / "demo.csv"
    make_transactions(150, seed=5).lines.to_csv(src, index=False)
    out, rej = tmp_path / "kept.parquet", tmp_path / "rejected.parquet"

    def fail(self, path, **options):  # noqa: ANN001, ARG001
        raise InputError("demo.csv: the engine ran out of memory", hint="raise --memory-limit")

    monkeypatch.setattr(CleanResult, "write_rejected", fail)
    r = cli("clean", src, "--out", out, "--rejected", rej)
    _assert_clean_error(r, "out of memory", code=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["demo.csv"]  # no temporary files
    monkeypatch.undo()
    assert cli("clean", src, "--out", out, "--rejected", rej).code == 0
    assert out.is_file() and rej.is_file()


def test_a_ctrl_c_a_library_swallowed_still_stops_the_run(cli, tmp_path: Path, monkeypatch) -> None:
    """A SIGINT whose KeyboardInterrupt a library caught (once in CI, during a Spark
    job's column checks) was lost: the run went on to its end, wrote its folder and
    exited 0. The signal is recorded, and the next stage stops the command in the usual
    orderly way: "Interrupted.", exit 130, no output folder."""
    import os
    import signal

    from segmint.datasets import make_transactions
    from segmint.schema import resolve

    src = tmp_path / "demo.csv"
    make_transactions(150, seed=5).lines.to_csv(src, index=False)

    def swallowing(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        try:  # a library that catches the KeyboardInterrupt and carries on
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:  # noqa: BLE001, S110
            pass
        return resolve(*args, **kwargs)

    monkeypatch.setattr("segmint.pipeline.resolve", swallowing)
    r = cli("run", src, "--out", tmp_path / "run", "--algorithm", "kmeans", "--k", "3")
    assert r.code == 130, (r.code, r.err[-2000:])
    assert "Interrupted." in r.err and "Traceback" not in r.err
    assert not (tmp_path / "run").exists()


def test_unexpected_error_is_an_internal_error_exit_70(cli, tmp_path: Path, monkeypatch) -> None:
    """A bug (an exception that is not a SegmintError) exits 70 (EX_SOFTWARE) with one
    "Internal error" message and no traceback; exit 1 would look like a usage error to
    schedulers and scripts. ``--debug`` shows the traceback."""
    from segmint.clean import CleanResult
    from segmint.datasets import make_transactions

    src = tmp_path / "demo.csv"
    make_transactions(150, seed=5).lines.to_csv(src, index=False)
    out, rej = tmp_path / "kept.parquet", tmp_path / "rejected.parquet"

    def fail(self, path, **options):  # noqa: ANN001, ARG001
        raise RuntimeError("planted bug")

    monkeypatch.setattr(CleanResult, "write_rejected", fail)
    r = cli("clean", src, "--out", out, "--rejected", rej)
    assert r.code == 70, (r.code, r.err)
    assert "Internal error" in r.err and "RuntimeError: planted bug" in r.err
    assert "--debug" in r.err
    assert "Traceback" not in r.err + r.out
    assert not out.exists() and not rej.exists()
    debug = cli("--debug", "clean", src, "--out", out, "--rejected", rej)
    assert debug.code == 70
    assert "Traceback" in debug.err and "planted bug" in debug.err


def test_errors_are_json_on_stdout_with_json(cli, tmp_path: Path) -> None:
    """Errors under --json were plain text only: a script parsing stdout got nothing."""
    import json

    r = cli("inspect", tmp_path / "nothing.csv", "--json")
    assert r.code == 2 and "no such file" in r.err  # still told to people on stderr
    body = json.loads(r.out)
    assert body["error"] == "file_not_found" and "nothing.csv" in body["message"]
    assert body["hint"]
    r = cli("inspect", tmp_path / "nothing.csv")
    assert r.out == ""


def test_engine_limits_are_not_blamed_on_the_file() -> None:
    import duckdb

    from segmint.io import _translate

    oom = _translate(
        duckdb.OutOfMemoryException("Out of Memory Error: could not allocate block"), "x.csv", None
    )
    assert oom.code == "out_of_memory" and "--memory-limit" in oom.hint
    spill = _translate(
        duckdb.IOException("IO Error: Failed to create directory /nope/sub"), "x.csv", None
    )
    assert spill.code == "spill_folder" and "--temp-dir" in spill.hint


def test_a_full_disk_exits_75_with_its_code(cli, tmp_path: Path, monkeypatch) -> None:
    """A full disk exited 2 (a user mistake, "check the path and its permissions" with
    the code os_error for a plain write), so a scheduler could not tell it from a typo.
    Written by the engine or by Python, it is now ``disk_full`` with exit 75
    (EX_TEMPFAIL: retry once there is room), naming the output. /dev/full answers every
    write with "no space left on device"."""
    import contextlib
    import json

    import segmint.clv as sclv
    import segmint.io as sio
    from segmint.datasets import make_transactions

    src = tmp_path / "demo.csv"
    make_transactions(150, seed=5).lines.to_csv(src, index=False)

    @contextlib.contextmanager
    def full(target, **_):  # noqa: ANN001, ANN202
        yield Path("/dev/full")

    monkeypatch.setattr(sio, "atomic_path", full)  # the engine's writer (DuckDB COPY)
    r = cli("clean", src, "--out", tmp_path / "kept.parquet", "--json")
    assert r.code == 75, r.err
    body = json.loads(r.out)
    assert body["error"] == "disk_full" and "kept.parquet" in body["message"]
    monkeypatch.setattr(sclv, "atomic_path", full)  # pandas writing the CLV table
    r = cli("clv", src, "--out", tmp_path / "clv.csv", "--json")
    assert r.code == 75, r.err
    body = json.loads(r.out)
    assert body["error"] == "disk_full" and "Traceback" not in r.err
    assert "disk is full" in r.err and "free some space" in r.err


def test_run_prints_the_caveats_on_lifetime_value(cli, tmp_path: Path) -> None:
    """`segmint clv` printed the fit's caveats; `segmint run` printed only why lifetime
    value was left out, so a forecast far beyond the history (or a fit that did not
    converge) was told in the report and clv.json alone."""
    import json

    from segmint.datasets import make_transactions

    src = tmp_path / "demo.csv"
    make_transactions(300, seed=5).lines.to_csv(src, index=False)
    args = ["--algorithm", "kmeans", "--k", "3", "--clv-horizon", "20Y"]
    r = cli("run", src, "--out", tmp_path / "run", *args)
    assert r.code == 0, r.err
    flat = " ".join(r.err.split())
    assert "Note: lifetime value: the horizon (7,305 days) is longer than the history" in flat
    stored = json.loads((tmp_path / "run" / "clv.json").read_text())["notes"]
    r = cli("run", src, "--out", tmp_path / "again", *args, "--json")
    assert r.code == 0, r.err
    assert json.loads(r.out)["clv_notes"] == stored and len(stored) >= 1


def test_demo(cli, tmp_path: Path) -> None:
    out = tmp_path / "demo"
    r = cli("demo", "--customers", "600", "--out", out)
    assert r.code == 0, r.err
    assert "segments of 600 customers" in r.out
    assert "suggested action" in r.out and "report.html" in r.out
    assert "recovered with adjusted Rand index" in r.out
    assert (out / "report.html").is_file() and (out / "model.segmint").is_file()
    # a second demo replaces the first (and only a demo folder)
    small = cli("demo", "--customers", "300", "--seed", "1", "--out", out, "--json")
    assert small.code == 0, small.err
    data = json.loads(small.out)
    assert sum(data["personas"].values()) == 300
    assert data["audit"]["balanced"] is True
    assert data["customers"] == 300 and data["persona_recovery_ari"] > 0.5
    other = tmp_path / "mine"
    other.mkdir()
    refused = cli("demo", "--out", other)
    assert refused.code == 2 and "not a previous demo output" in refused.err


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_interrupting_an_engine_query_is_an_interruption(tmp_path: Path, signame: str) -> None:
    """Ctrl-C or SIGTERM while DuckDB runs a query ended as "Internal error: Query
    interrupted" (exit 70); it is an interruption (exit 130) that leaves no output."""
    import signal
    import time

    from segmint.datasets._synthetic import write_transactions

    src = tmp_path / "big.csv"
    write_transactions(src, n_lines=1_500_000, seed=0, chunk_customers=750)
    out, rej = tmp_path / "kept.parquet", tmp_path / "rejected.parquet"
    exe = Path(sys.executable).with_name("segmint")
    proc = subprocess.Popen(
        [exe, "-v", "clean", src, "--out", out, "--rejected", rej],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:  # DuckDB is busy once the cleaning starts
            if "cleaning" in line:
                break
        time.sleep(0.3)
        proc.send_signal(getattr(signal, signame))
        rest = proc.stderr.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "Internal error" not in rest and "Interrupted." in rest
    assert not out.exists() and not rej.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.csv"]


@pytest.mark.parametrize(
    ("args", "busy"),
    [
        (["clean", "{src}", "--out", "{out}"], "cleaning"),  # inside a DuckDB query
        (["demo", "--customers", "3000", "--out", "{out}"], "segmentation search"),  # Python
    ],
    ids=["engine", "python"],
)
def test_an_interruption_is_reported_the_same_wherever_it_lands(
    tmp_path: Path, args: list[str], busy: str
) -> None:
    """Ctrl-C in Python code (Typer catches it) printed nothing on stderr; inside a
    DuckDB query it printed "Interrupted." but no JSON on stdout with --json. Both now
    print both, as the README says."""
    import signal

    from segmint.datasets._synthetic import write_transactions

    src, out = tmp_path / "big.csv", tmp_path / "out.parquet"
    if args[0] == "clean":
        write_transactions(src, n_lines=1_500_000, seed=0, chunk_customers=750)
    else:
        out = tmp_path / "demo"
    exe = Path(sys.executable).with_name("segmint")
    command = [a.format(src=src, out=out) for a in args]
    proc = subprocess.Popen(
        [exe, "-v", *command, "--json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for line in proc.stderr:
            if busy in line:
                break
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        rest = proc.stderr.read()
        stdout = proc.stdout.read()
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, rest
    assert "Interrupted." in rest and "Traceback" not in rest
    assert json.loads(stdout)["error"] == "interrupted"
    assert not out.exists()


@pytest.mark.parametrize("args", [["-h"], ["run", "-h"], ["score", "-h"], ["serve", "-h"]])
def test_dash_h_shows_the_help(cli, args: list[str]) -> None:
    """`segmint -h` was "No such option: -h" (exit 2): only --help worked."""
    r = cli(*args)
    assert r.code == 0, r.err
    assert r.out.startswith(f"Usage: segmint {' '.join(args[:-1])}".rstrip())
    assert "--help" in r.out and "No such option" not in r.err


def test_console_script_in_a_real_process(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("segmint")
    assert exe.exists(), "segmint console script is not installed in this environment"
    version = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=120)
    assert version.returncode == 0 and version.stdout.startswith("segmint ")
    missing = subprocess.run(
        [exe, "inspect", tmp_path / "nope.csv"], capture_output=True, text=True, timeout=120
    )
    assert missing.returncode == 2
    assert "Error:" in missing.stderr and "nope.csv" in missing.stderr
    assert "Traceback" not in missing.stderr
    module = subprocess.run(
        [sys.executable, "-m", "segmint", "--help"], capture_output=True, text=True, timeout=120
    )
    assert module.returncode == 0 and "inspect" in module.stdout


def test_features_command_writes_customers_with_rfm(
    cli, online_retail: Path, tmp_path: Path
) -> None:
    from segmint.features import read_features

    out = tmp_path / "customers.parquet"
    r = cli("features", online_retail, "--out", out, "--rule-set", "classic-11")
    assert r.code == 0, r.err
    assert "Customer features (4,334 customers, snapshot 2011-12-10" in r.out
    assert "RFM segments (classic-11 v1, quantile scores)" in r.out
    assert "99 return lines (value 3,922.98) of 28 customers" in " ".join(r.err.split())
    frame, meta = read_features(out)
    assert len(frame) == 4_334
    assert {"recency_days", "r_score", "rfm_score", "rfm_segment"} <= set(frame.columns)
    assert set(frame["rfm_rule_set"]) == {"classic-11 v1"}  # beside every segment name
    assert meta["rfm"]["rule_set"] == "classic-11"
    assert meta["rfm"]["cut_points"]["frequency"]["thresholds"] == [2, 3, 4, 6]

    cuts = tmp_path / "cuts.toml"
    cuts.write_text(
        "[thresholds]\nrecency_days = [180, 90, 30, 14]\n"
        "frequency = [2, 3, 5, 8]\nmonetary = [250, 500, 1000, 2000]\n"
    )
    csv = tmp_path / "customers.csv"
    r = cli(
        "features",
        online_retail,
        "--out",
        csv,
        "--rfm-thresholds",
        cuts,
        "--window",
        "6M",
        "--snapshot-date",
        "2011-12-01",
        "--json",
    )
    assert r.code == 0, r.err
    summary = json.loads(r.out)
    assert summary["rfm"]["method"] == "fixed"
    assert summary["features"]["window"] == "6M"
    assert summary["features"]["snapshot_date"] == "2011-12-01"
    assert pd.read_csv(csv)["customer_id"].nunique() == summary["features"]["customers"]
    assert (tmp_path / "customers.csv.meta.json").is_file()


def test_user_rule_set_overlaps_and_gaps_are_a_warning(
    cli, retail_csv: Path, tmp_path: Path
) -> None:
    """Overlapping and uncovered cells of the user's own rule table were logged at INFO,
    so without -v nothing said that "Good" loses 20 cells to "Best" (a likely typo); a
    shipped rule set's documented gaps stay quiet."""
    rules = tmp_path / "mine.toml"
    rules.write_text(
        'name = "mine"\n'
        '[[segment]]\nname = "Best"\nr = [4, 5]\nf = [4, 5]\n'
        '[[segment]]\nname = "Good"\nr = [3, 5]\nf = [3, 5]\n'
        '[[segment]]\nname = "Lapsed"\nr = [1, 2]\n'
    )
    r = cli("features", retail_csv, "--out", tmp_path / "a.parquet", "--rule-set", rules)
    assert r.code == 0, r.err
    assert "WARNING segmint.rfm: rule set mine" in r.err
    assert "20 of the 125 R/F/M cells match more than one segment" in r.err
    assert "(e.g. cell 441: Best, not Good)" in r.err
    assert "30 cells match no segment and go to 'Others' (e.g. cell 311)" in r.err
    r = cli("features", retail_csv, "--out", tmp_path / "b.parquet", "--rule-set", "classic-11")
    assert r.code == 0 and "segmint.rfm" not in r.err, r.err


def test_user_rule_set_without_version_is_labelled_as_a_user_table(
    cli, retail_csv: Path, tmp_path: Path
) -> None:
    """A rule-set CSV (which has no version) or a TOML without one printed as
    "RFM segments (grid vuser, ...)" and "Rule set grid vuser" in the report."""
    rules = tmp_path / "grid.csv"
    rules.write_text(
        "segment,r_min,r_max,f_min,f_max,m_min,m_max\nHigh,3,5,1,5,1,5\nLow,1,2,1,5,1,5\n"
    )
    r = cli("features", retail_csv, "--out", tmp_path / "a.parquet", "--rule-set", rules)
    assert r.code == 0, r.err
    assert "RFM segments (grid (user table), quantile scores)" in r.out
    assert "vuser" not in r.out + r.err


def test_no_coarse_segmentation_tip_for_a_density_method() -> None:
    """HDBSCAN finding two segments got the tip that "the cluster-quality scores favour
    few segments" and "--k-min 4", neither of which applies to a method that finds its
    own number of segments."""
    import segmint
    from segmint.cli import _coarse_tip
    from segmint.datasets import make_transactions

    lines, _ = make_transactions(n_customers=400, seed=1)
    density = segmint.run(
        lines,
        {
            "clv": {"enabled": False},
            "segment": {
                "stability_resamples": 0,
                "algorithm": "hdbscan",
                "algorithm_params": {"hdbscan": {"min_cluster_size": 60}},
            },
        },
    )
    assert density.segmenter.n_segments_ == 2 and density.segmenter.k_ is None
    assert _coarse_tip(density) is None


def test_features_command_errors(cli, retail_csv: Path, tmp_path: Path) -> None:
    _assert_clean_error(cli("features", retail_csv, "--out", tmp_path / "x.xlsx"), "x.xlsx", code=2)
    _assert_clean_error(
        cli("features", retail_csv, "--out", tmp_path / "x.parquet", "--window", "soon"),
        "not a length of time",
        code=2,
    )
    _assert_clean_error(
        cli("features", retail_csv, "--out", tmp_path / "x.parquet", "--rule-set", "nope"),
        "unknown rule set",
        code=2,
    )
    bad = tmp_path / "cuts.toml"
    bad.write_text("[thresholds]\nfrequency = [1, 2]\n")
    _assert_clean_error(
        cli("features", retail_csv, "--out", tmp_path / "x.parquet", "--rfm-thresholds", bad),
        "cuts.toml",
        code=2,
    )
    assert not (tmp_path / "x.parquet").exists()


def test_features_reuses_the_cut_points_of_an_earlier_features_table(
    cli, retail_csv: Path, tmp_path: Path
) -> None:
    """Comparing two periods on stable cut points: the customer table `segmint features`
    wrote (Parquet, or CSV with its .meta.json) is accepted as --rfm-thresholds; it was
    refused as "not a valid TOML file", so the analyst had to copy the numbers by hand."""
    first = tmp_path / "q1.parquet"
    assert cli("features", retail_csv, "--out", first, "--json").code == 0
    stored = json.loads(pq.read_schema(first).metadata[b"segmint"])["rfm"]["cut_points"]
    first_csv = tmp_path / "q1.csv"
    assert cli("features", retail_csv, "--out", first_csv, "--json").code == 0
    for given in (first, first_csv, tmp_path / "q1.csv.meta.json"):
        r = cli(
            "features",
            retail_csv,
            "--out",
            tmp_path / "q2.parquet",
            "--rfm-thresholds",
            given,
            "--json",
        )
        assert r.code == 0, r.err
        rfm = json.loads(r.out)["rfm"]
        assert rfm["method"] == "fixed"
        assert rfm["cut_points"] == stored
    (tmp_path / "q1.csv.meta.json").unlink()
    _assert_clean_error(
        cli("features", retail_csv, "--out", tmp_path / "x.parquet", "--rfm-thresholds", first_csv),
        "q1.csv",
        "q1.csv.meta.json",
        code=2,
    )


def test_cut_points_out_of_order_are_refused_naming_the_file(
    cli, retail_csv: Path, tmp_path: Path
) -> None:
    """Recency cut points written increasing were refused only at scoring, once the data
    had been read, without naming the file (or the segmint.toml key)."""
    cuts = tmp_path / "cuts.toml"
    cuts.write_text(
        "[thresholds]\nrecency_days = [14, 30, 90, 180]\n"
        "frequency = [2, 3, 5, 8]\nmonetary = [250, 500, 1000, 2000]\n"
    )
    r = cli("features", retail_csv, "--out", tmp_path / "x.parquet", "--rfm-thresholds", cuts)
    _assert_clean_error(r, "cuts.toml", "recency_days must be decreasing", code=2)
    config = tmp_path / "segmint.toml"
    config.write_text(
        "[rfm]\nthresholds = { recency_days = [180, 90, 30, 14], "
        "frequency = [8, 5, 3, 2], monetary = [250, 500, 1000, 2000] }\n"
    )
    r = cli("run", retail_csv, "--out", tmp_path / "run", "--config", config)
    _assert_clean_error(r, "segmint.toml", "rfm.thresholds", "frequency must be increasing", code=2)
    assert not (tmp_path / "run").exists()


def test_a_date_option_not_in_iso_form_is_refused(cli, retail_csv: Path, tmp_path: Path) -> None:
    """`--snapshot-date 01/12/2011` meant 1 December to a UK analyst; pandas read it month
    first and the features were silently measured at 12 January."""
    out = tmp_path / "x.parquet"
    r = cli("features", retail_csv, "--out", out, "--snapshot-date", "01/12/2011")
    _assert_clean_error(r, "'01/12/2011'", "YYYY-MM-DD", code=2)
    assert not out.exists()
    ok = cli("features", retail_csv, "--out", out, "--snapshot-date", "2011-12-01", "--json")
    assert ok.code == 0, ok.err
    assert json.loads(ok.out)["features"]["snapshot_date"] == "2011-12-01"
    # a time of day was cut off without a word (lines of that morning then fell on the
    # other side of a --from, --cutoff or snapshot); midnight is the day itself
    out.unlink()
    r = cli("features", retail_csv, "--out", out, "--snapshot-date", "2011-12-01T12:00")
    _assert_clean_error(r, "'2011-12-01T12:00'", "time of day", code=2)
    assert "e.g. 2011-12-01 or 2011-12-02" in r.err
    assert not out.exists()
    ok = cli("features", retail_csv, "--out", out, "--snapshot-date", "2011-12-01 00:00:00")
    assert ok.code == 0, ok.err


def test_inspect_shows_features_and_rfm(cli, flo: Path) -> None:
    r = cli("inspect", flo, "--json")
    summary = json.loads(r.out)
    assert summary["features"]["customers"] == 19_945
    assert summary["features"]["snapshot_date"] == "2021-05-31"
    names = [row["feature"] for row in summary["features"]["summary"]]
    assert names[:5] == ["recency_days", "frequency", "monetary", "tenure_days", "avg_basket_value"]
    assert summary["rfm"]["rule_set"] == "rf-grid"
    assert sum(s["customers"] for s in summary["rfm"]["segments"]) == 19_945


def test_engine_options(cli, retail_csv: Path, monkeypatch) -> None:
    for name in ("SEGMINT_MEMORY_LIMIT", "SEGMINT_THREADS", "SEGMINT_TEMP_DIR"):
        monkeypatch.delenv(name, raising=False)
    ok = cli("--memory-limit", "500MB", "--threads", "1", "inspect", retail_csv, "--json")
    assert ok.code == 0, ok.err
    bad = cli("--memory-limit", "lots", "inspect", retail_csv)
    _assert_clean_error(bad, "DuckDB refused the engine settings", code=2)


def test_threads_option_caps_the_model_fitting_too(tmp_path: Path) -> None:
    """``--threads`` set DuckDB's threads only; the model fitting (scikit-learn's
    OpenMP) still used every core. Now it caps both, and as an explicit option it wins
    over an OMP_NUM_THREADS in the environment. libgomp says what it uses
    (``OMP_DISPLAY_ENV``) when the run loads scikit-learn."""
    import os

    from segmint.datasets import make_transactions

    data = tmp_path / "lines.csv"
    make_transactions(n_customers=60, seed=3).lines.to_csv(data, index=False)
    env = {**os.environ, "OMP_DISPLAY_ENV": "TRUE", "OMP_NUM_THREADS": "2"}
    env.pop("SEGMINT_THREADS", None)
    res = subprocess.run(
        [sys.executable, "-m", "segmint", "--threads", "3", "--quiet", "run", str(data),
         "--out", str(tmp_path / "run"), "--algorithm", "kmeans", "--k", "3", "--no-clv"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "OMP_NUM_THREADS = '3'" in res.stderr, res.stderr
    assert (tmp_path / "run" / "model.segmint").is_file()


def test_file_and_option_mistakes_come_with_a_hint(cli, retail_csv: Path, tmp_path: Path) -> None:
    """The README: a user mistake prints one line naming the file or option "and a
    hint"; these printed the line alone (and a Parquet file given as --rfm-thresholds
    was reported as a UTF-8 decoding error)."""
    broken = tmp_path / "broken.toml"
    broken.write_text("x = [\n")
    table = tmp_path / "customers.parquet"
    pd.DataFrame({"a": [1]}).to_parquet(table)
    out = ["--out", tmp_path / "x.parquet"]
    cases = [
        (("run", retail_csv, "--out", tmp_path / "r", "--config", tmp_path / "no.toml"), "no.toml"),
        (("run", retail_csv, "--out", tmp_path / "r", "--config", broken), "broken.toml"),
        (("inspect", retail_csv, "--mapping", tmp_path / "no.toml"), "mapping file not found"),
        (("features", retail_csv, *out, "--rfm-thresholds", table), "not a TOML file"),
        (("score", tmp_path, retail_csv), "--out FILE"),
        (("export", tmp_path, "--format", "pdf"), "--format 'pdf'"),
    ]
    for args, needle in cases:
        _assert_clean_error(cli(*args), needle, code=2)


def test_version_works_after_the_command(cli, retail_csv: Path) -> None:
    """The README lists --version among the global options that work before or after
    the command; `segmint clean data.csv --version` was "No such option"."""
    from segmint import __version__

    r = cli("clean", retail_csv, "--version")
    assert r.code == 0, r.err
    assert __version__ in r.out


def test_global_options_work_after_the_command(cli, retail_csv: Path, tmp_path: Path) -> None:
    """`segmint clean data.csv --quiet` as `segmint --quiet clean data.csv` (click reads
    a group's options only before the sub-command, so this was "No such option")."""
    from segmint.cli import hoist_global_options

    out = tmp_path / "kept.parquet"
    r = cli("clean", retail_csv, "--out", out, "--quiet", "--threads", "1", "--debug")
    assert r.code == 0, r.err
    assert out.is_file()
    assert hoist_global_options(["run", "d.csv", "-q", "--memory-limit=2GB", "--k", "3"]) == [
        "-q",
        "--memory-limit=2GB",
        "run",
        "d.csv",
        "--k",
        "3",
    ]
    assert hoist_global_options(["run", "--", "--quiet"]) == ["run", "--", "--quiet"]
    bad = cli("inspect", retail_csv, "--memory-limit", "lots")
    _assert_clean_error(bad, "DuckDB refused the engine settings", code=2)


def test_clean_writes_lines_in_the_order_of_the_input(cli, tmp_path: Path) -> None:
    """The engine scans in parallel: `clean --out` wrote the kept lines in another order
    on every run, so a nightly checksum of the file changed. They follow the input."""
    from segmint.datasets import make_transactions

    lines, _ = make_transactions(n_customers=400, seed=2)
    lines = lines.sample(frac=1.0, random_state=1).reset_index(drop=True)
    data = tmp_path / "lines.parquet"
    lines.to_parquet(data, row_group_size=500)  # many row groups, read by both threads
    digests = set()
    for i in range(3):
        out = tmp_path / f"clean{i}.parquet"
        res = cli(
            "--threads", "2", "clean", data, "--out", out, "--returns", tmp_path / f"r{i}.csv"
        )
        assert res.code == 0, res.err
        digests.add(out.read_bytes())
    kept = pd.read_parquet(tmp_path / "clean0.parquet")
    assert len(digests) == 1
    # the kept lines are a subsequence of the input lines, in the same order
    source = iter(zip(lines["InvoiceNo"].astype(str), lines["StockCode"].astype(str), strict=True))
    kept_keys = zip(kept["invoice_id"].astype(str), kept["product_id"].astype(str), strict=True)
    assert all(key in source for key in kept_keys)
    assert len(kept) > 0.5 * len(lines)


def test_json_mode_answers_json_for_a_refused_command_line(cli) -> None:
    """With --json, an option Typer refuses (unknown, or a value of the wrong type)
    printed nothing on stdout: a script reading it got no JSON at all."""
    for args in (
        ("run", "x.csv", "--bogus", "--json"),
        ("run", "x.csv", "--seed", "abc", "--json"),
    ):
        res = cli(*args)
        assert res.code == 2
        assert json.loads(res.out)["error"] == "usage_error"
        assert res.err.strip()  # Typer's own message stays on stderr
    res = cli("run", "x.csv", "--bogus")
    assert res.code == 2 and res.out == ""


@pytest.mark.parametrize(
    "args",
    [["inspect", "{src}"], ["inspect", "{src}", "--json"], ["--help"], ["--version"]],
    ids=["inspect", "inspect-json", "help", "version"],
)
def test_a_closed_pipe_on_stdout_ends_quietly(args: list[str], tmp_path: Path) -> None:
    """`segmint inspect FILE | head -1` exited 1 (rich's SystemExit, or Click's own
    handler), or printed a traceback: a reader that went away now ends the command
    with 141 (128 + SIGPIPE, as the shell reports for `yes | head -1`), silently."""
    src = tmp_path / "retail.csv"
    retail_frame().to_csv(src, index=False)
    exe = Path(sys.executable).with_name("segmint")
    command = [str(exe), *(a.format(src=src) for a in args)]
    # the reader is gone before segmint writes: the write fails every time
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert err == ""  # no traceback, no "Exception ignored", no "Broken pipe"
    # the shell's own pipe into head: 141 when a write came after head left, else 0
    shell = subprocess.run(
        ["bash", "-c", '"$@" | head -1; echo "status=${PIPESTATUS[0]}" >&2', "_", *command],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert len(shell.stdout.splitlines()) == 1
    assert re.fullmatch(r"status=(0|141)\n", shell.stderr), shell.stderr


def test_a_failure_with_a_closed_pipe_keeps_its_status(tmp_path: Path) -> None:
    """The error is on stderr and the status is the error's (2), also when the JSON
    copy of it cannot be written to stdout (it was a BrokenPipeError traceback)."""
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n")
    exe = Path(sys.executable).with_name("segmint")
    proc = subprocess.Popen(
        [str(exe), "inspect", str(bad), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 2, err
    assert err.startswith("Error: ") and "Traceback" not in err and "Exception" not in err


def test_outputs_written_together_cannot_be_redirected(shared_folder: Path, tmp_path: Path):
    """``clean --out --audit`` (and ``score``, ``clv``) staged each output under a name
    beside it, ``.segmint-<token>-audit.json``, the token shown by the first file's
    temporary name: another user of a shared folder could put a symbolic link at the
    audit's name before it was written, and the audit overwrote the file it pointed to.
    The staged files now sit in folders only the writer enters."""
    from conftest import plant_link_as_other_user
    from segmint.cli import _written_together

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out, audit = shared_folder / "clean.csv", shared_folder / "audit.json"
    with _written_together(out, None, audit) as (o, none, aud):
        planted = plant_link_as_other_user(aud, victim)
        o.write_text("lines")
        aud.write_text("{}")
    assert victim.read_text() == "precious", "the audit followed the planted link"
    assert not planted and none is None
    assert out.read_text() == "lines" and audit.read_text() == "{}"
    assert sorted(p.name for p in shared_folder.iterdir()) == ["audit.json", "clean.csv"]


def test_demo_table_shares_are_the_reports(cli, tmp_path: Path) -> None:
    """The terminal's segment table rounded shares as binary floating point does and the
    report as a reader does (halves up): on the default demo the CLI printed Champions
    (197 of 2,000 customers, 9.85 %) as 9.8% and the report as 9.9 %."""
    import html
    import re

    out = tmp_path / "demo"
    r = cli("demo", "--out", out)
    assert r.code == 0, r.err
    rows: list[list[str]] = []
    for line in r.out.splitlines():
        cells = [c.strip() for c in line.strip("│ ").split("│")]
        if len(cells) != 5:
            continue
        if cells[2].endswith("%") and cells[0]:
            rows.append(cells)
        elif rows and not cells[2] and cells[0]:  # a name wrapped onto the next line
            rows[-1][0] += " " + cells[0]
    printed = {row[0]: (row[2], row[3]) for row in rows}
    page = html.unescape((out / "report.html").read_text(encoding="utf-8"))
    pattern = r"<strong>([^<]+)</strong> · ([\d.]+) % of customers, ([\d.]+) % of revenue"
    reported = {m[0]: (f"{m[1]}%", f"{m[2]}%") for m in re.findall(pattern, page)}
    assert len(reported) >= 4 and printed == reported
    assert reported["Champions"][0] == "9.9%"  # 197 / 2,000 = 9.85 %, halves up


def test_timezone_option_moves_dates_to_local_days(cli, tmp_path: Path) -> None:
    """`features --timezone`: first/last purchase and recency use the shop's local days
    (sales at 9:00 in Sydney were on the previous UTC day); a misspelt zone is one clear
    line naming the option and the closest zone, exit 2, no traceback."""
    sydney = pd.to_datetime(["2024-01-15 09:00", "2024-02-01 08:30"]).tz_localize(
        "Australia/Sydney"
    )
    frame = pd.DataFrame(
        {"customer": ["a", "a"], "invoice": ["1", "2"], "created_at": sydney, "price": [5.0, 7.0]}
    )
    path = tmp_path / "zoned.parquet"
    frame.to_parquet(path)
    out = tmp_path / "c.csv"
    base = ("features", path, "--snapshot-date", "2024-02-10")
    res = cli(*base, "--out", out)
    assert res.code == 0, res.err
    utc = pd.read_csv(out).iloc[0]
    assert (utc["first_purchase"][:10], utc["last_purchase"][:10]) == ("2024-01-14", "2024-01-31")
    res = cli(*base, "--out", out, "--timezone", "Australia/Sydney")
    assert res.code == 0, res.err
    local = pd.read_csv(out).iloc[0]
    assert (local["first_purchase"][:10], local["last_purchase"][:10]) == (
        "2024-01-15",
        "2024-02-01",
    )
    assert local["recency_days"] == utc["recency_days"] - 1
    bad = cli(*base, "--out", tmp_path / "d.csv", "--timezone", "Australia/Sidney")
    assert bad.code == 2
    assert "--timezone" in bad.err and "'Australia/Sydney'" in bad.err
    assert "Traceback" not in bad.err and not (tmp_path / "d.csv").exists()


def test_a_bad_rule_set_is_refused_before_the_data_is_read(cli, tmp_path: Path) -> None:
    """A misspelt rule-set name or a broken table was refused only after the features
    were built (16 s into Online Retail), and a name from segmint.toml without the file."""
    data = tmp_path / "lines.csv"  # a date no reader takes: reading it would fail first
    data.write_text("CustomerID,InvoiceDate,UnitPrice\n1,not a date,2.0\n")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[segment]]\nname = "Best"\nr = [4, 6]\n')
    for command in ("features", "inspect"):
        out = ["--out", tmp_path / "x.csv"] if command == "features" else []
        _assert_clean_error(
            cli(command, data, *out, "--rule-set", "classic11"),
            "--rule-set classic11: unknown rule set 'classic11'",
            code=2,
        )
        _assert_clean_error(
            cli(command, data, *out, "--rule-set", bad), f"--rule-set {bad}", "r range", code=2
        )
    config = tmp_path / "segmint.toml"
    config.write_text('[rfm]\nrule_set = "classic11"\n')
    _assert_clean_error(
        cli("run", data, "--out", tmp_path / "run", "--config", config),
        "segmint.toml: rfm.rule_set: unknown rule set 'classic11'",
        code=2,
    )


def test_rfm_scores_that_collapse_are_explained(cli, tmp_path: Path) -> None:
    """One customer (or all tied) showed cut points "-/-/-/-" and everyone in cell 111
    without a word; a note says why."""
    data = tmp_path / "one.csv"
    data.write_text("CustomerID,InvoiceNo,InvoiceDate,Quantity,UnitPrice\n1,A1,2011-01-01,2,3.5\n")
    res = cli("features", data, "--out", tmp_path / "f.csv")
    assert res.code == 0, res.err
    assert "every customer scores 1 on recency_days, frequency, monetary" in res.err
