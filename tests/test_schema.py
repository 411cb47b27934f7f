"""Auto-mapping, explicit mapping, and type coercion (ids, numbers, dates) with clear errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import int96_parquet, retail_frame, zoned_parquet
from segmint.clean import clean
from segmint.config import load_mapping_file, parse_map_options
from segmint.errors import ConfigError, InputError, MissingColumnError, ParseError
from segmint.features import customer_features
from segmint.io import read_source
from segmint.schema import (
    CUSTOMER_KEY,
    build_mapping,
    customer_key,
    normalize_name,
    public_columns,
    resolve,
)

UCI_I = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]
UCI_II = [
    "Invoice",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "Price",
    "Customer ID",
    "Country",
]
FLO = [
    "master_id",
    "order_channel",
    "last_order_channel",
    "first_order_date",
    "last_order_date",
    "last_order_date_online",
    "last_order_date_offline",
    "order_num_total_ever_online",
    "order_num_total_ever_offline",
    "customer_value_total_ever_offline",
    "customer_value_total_ever_online",
    "interested_in_categories_12",
]


def test_normalize_name() -> None:
    assert normalize_name("Customer ID") == normalize_name("customer_id") == "customerid"


def test_uci_online_retail_i() -> None:
    m = build_mapping(UCI_I)
    assert m.kind == "transactions"
    assert m.columns == {
        "customer_id": "CustomerID",
        "invoice_id": "InvoiceNo",
        "invoice_date": "InvoiceDate",
        "quantity": "Quantity",
        "unit_price": "UnitPrice",
        "product_id": "StockCode",
        "description": "Description",
        "country": "Country",
    }
    assert set(m.how.values()) == {"auto"}
    assert m.unmapped == []


def test_online_retail_ii() -> None:
    m = build_mapping(UCI_II)
    assert m.kind == "transactions"
    assert m.columns["customer_id"] == "Customer ID"
    assert m.columns["invoice_id"] == "Invoice"
    assert m.columns["unit_price"] == "Price"


def test_flo_is_customer_level() -> None:
    m = build_mapping(FLO)
    assert m.kind == "customers"
    assert m.columns["customer_id"] == "master_id"
    assert m.columns["last_purchase"] == "last_order_date"
    assert m.columns["orders_online"] == "order_num_total_ever_online"
    assert m.columns["value_offline"] == "customer_value_total_ever_offline"
    assert m.columns["categories"] == "interested_in_categories_12"
    assert m.unmapped == []


@pytest.mark.parametrize(
    ("columns", "expected"),
    [
        (
            ["customer", "order_id", "order_date", "price", "qty", "sku"],
            {
                "customer_id": "customer",
                "invoice_id": "order_id",
                "invoice_date": "order_date",
                "unit_price": "price",
                "quantity": "qty",
                "product_id": "sku",
            },
        ),
        (
            ["cust_id", "order_no", "date", "amount", "units", "product"],
            {
                "customer_id": "cust_id",
                "invoice_id": "order_no",
                "invoice_date": "date",
                "amount": "amount",
                "quantity": "units",
                "product_id": "product",
            },
        ),
        (
            ["Client_ID", "Timestamp", "Sales"],
            {"customer_id": "Client_ID", "invoice_date": "Timestamp", "amount": "Sales"},
        ),
        (
            ["client_id", "timestamp", "unit_price", "revenue"],
            {
                "customer_id": "client_id",
                "invoice_date": "timestamp",
                "unit_price": "unit_price",
                "amount": "revenue",
            },
        ),
        (
            ["customer_id", "date", "total"],
            {"customer_id": "customer_id", "invoice_date": "date", "amount": "total"},
        ),
    ],
)
def test_common_spellings(columns: list[str], expected: dict[str, str]) -> None:
    m = build_mapping(columns)
    assert m.kind == "transactions"
    assert m.columns == expected


def test_precomputed_rfm_table_is_customer_level() -> None:
    m = build_mapping(["customer_id", "recency", "frequency", "monetary"])
    assert m.kind == "customers"
    assert m.columns["recency_days"] == "recency"


def test_explicit_mapping_wins() -> None:
    cols = ["Kunde", "Datum", "Betrag", "CustomerID"]
    m = build_mapping(cols, {"customer_id": "Kunde", "invoice_date": "Datum", "amount": "Betrag"})
    assert m.columns == {"customer_id": "Kunde", "invoice_date": "Datum", "amount": "Betrag"}
    assert m.how["customer_id"] == "explicit"
    assert m.unmapped == ["CustomerID"]


def test_explicit_mapping_errors() -> None:
    with pytest.raises(ConfigError, match="unknown canonical column 'custmer_id'") as err:
        build_mapping(UCI_I, {"custmer_id": "CustomerID"})
    assert "customer_id" in err.value.hint
    with pytest.raises(MissingColumnError, match="not in the file") as err:
        build_mapping(UCI_I, {"customer_id": "CustomerId "})
    assert "CustomerID" in err.value.hint


def test_a_mapping_written_the_wrong_way_round_says_so(tmp_path: Path) -> None:
    """`--map Kunde=customer_id` (source=canonical) listed every canonical column but did
    not say the two sides were swapped."""
    with pytest.raises(ConfigError, match="Kunde=customer_id is the wrong way round") as err:
        build_mapping(["Kunde", "InvoiceDate", "UnitPrice"], {"Kunde": "customer_id"})
    assert "--map customer_id=Kunde" in err.value.hint
    path = tmp_path / "sales.csv"
    path.write_text("Kunde,InvoiceDate,UnitPrice\n1,2011-01-02,3.5\n")
    r = subprocess.run(
        [Path(sys.executable).with_name("segmint"), "inspect", path, "--map", "Kunde=customer_id"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "Hint: write the canonical name first: --map customer_id=Kunde" in r.stderr


def test_a_workbook_whose_first_sheet_is_no_table_names_its_other_sheets(
    cli, tmp_path: Path
) -> None:
    """A cover sheet first and the lines on a second sheet: the error listed the cover
    sheet's columns and hinted only at --map; it now names the other sheets and --sheet."""
    path = tmp_path / "sales.xlsx"
    with pd.ExcelWriter(path) as book:
        pd.DataFrame({"Report": ["Sales 2011"]}).to_excel(book, sheet_name="Cover", index=False)
        retail_frame().to_excel(book, sheet_name="Lines", index=False)
    r = cli("inspect", path)
    assert r.code == 2 and "Traceback" not in r.err
    assert "no column for customer_id" in r.err and "columns found: Report" in r.err
    assert "Hint: the workbook has other sheets ('Lines'): read one with --sheet NAME" in r.err
    assert cli("inspect", path, "--sheet", "Lines").code == 0


def test_a_workbook_with_a_title_sheet_and_titled_sheets_names_sheet_and_row(
    cli, tmp_path: Path
) -> None:
    """A cover sheet with only a title, then two sheets of lines under a title and a
    blank row: the default read stopped on the cover with "export the sheet with its
    data", --all-sheets stopped on it too, and a bad value on the second sheet was "data
    row 10" (counted through the sheets; the row Excel shows is 6). After --sheet NAME
    a missing column's hint said to read another sheet."""
    import xlsxwriter

    path = tmp_path / "multi.xlsx"
    book = xlsxwriter.Workbook(path)
    book.add_worksheet("Cover").write(0, 0, "Sales report 2011")
    frame = retail_frame()
    for name, part in (("2011a", frame.iloc[:3]), ("2011b", frame.iloc[3:])):
        sheet = book.add_worksheet(name)
        sheet.write(0, 0, "Report")  # a title, a blank row, then the header (row 3)
        sheet.write_row(2, 0, list(part.columns))
        for i, row in enumerate(part.astype(str).itertuples(index=False)):
            sheet.write_row(3 + i, 0, list(row))
        if name == "2011b":
            sheet.write(5, list(part.columns).index("Quantity"), "six")  # row 6 in Excel
    book.close()
    r = cli("inspect", path)
    assert r.code == 2 and "sheet 'Cover' has a header but no data rows" in r.err
    assert (
        "Hint: read another sheet with --sheet NAME (the workbook also has '2011a', '2011b')"
        in r.err
    )
    r = cli("inspect", path, "--all-sheets")
    assert r.code == 2, r.err
    assert "'six' in data row 3 of sheet '2011b' (spreadsheet row 6)" in r.err
    assert "sheet 'Cover' has no rows below its first line, not read" in r.err
    r = cli("inspect", path, "--sheet", "2011b")
    assert "'six' in data row 3 (spreadsheet row 6)" in r.err
    # a sheet chosen with --sheet that lacks a column: no hint to read another sheet
    chosen = tmp_path / "years.xlsx"
    with pd.ExcelWriter(chosen) as xl:
        frame.to_excel(xl, sheet_name="2023", index=False)
        frame.drop(columns="UnitPrice").to_excel(xl, sheet_name="2024", index=False)
    r = cli("inspect", chosen, "--sheet", "2024")
    assert r.code == 2 and "no column for unit_price" in r.err
    assert "other sheets" not in r.err and "--sheet" not in r.err.split("Hint:")[1]


def test_missing_required_column_lists_columns_and_closest() -> None:
    with pytest.raises(MissingColumnError) as err:
        build_mapping(["Kunden_Nr", "InvoiceDate", "UnitPrice", "Cust"], path="sales.csv")
    msg = str(err.value)
    assert "sales.csv: no column for customer_id" in msg
    assert "columns found: Kunden_Nr, InvoiceDate, UnitPrice, Cust" in msg
    assert "--map customer_id=" in err.value.hint
    assert "'Cust'" in err.value.hint


def test_missing_price_and_amount() -> None:
    with pytest.raises(MissingColumnError, match=r"unit_price \(or amount\)"):
        build_mapping(["customer", "date", "qty"])


def test_mapping_file_and_map_options(tmp_path: Path) -> None:
    path = tmp_path / "map.toml"
    path.write_text('[columns]\ncustomer_id = "Kunde"\ninvoice_date = "Datum"\n')
    assert load_mapping_file(path) == {"customer_id": "Kunde", "invoice_date": "Datum"}
    bad = tmp_path / "bad.toml"
    bad.write_text("columns = 3\n")
    with pytest.raises(ConfigError, match=r"needs a \[columns\] table"):
        load_mapping_file(bad)
    assert parse_map_options(["customer_id=Customer ID"]) == {"customer_id": "Customer ID"}
    with pytest.raises(ConfigError, match="expected canonical=source"):
        parse_map_options(["customer_id"])


# ---------------------------------------------------------------- coercion
def _resolve(df: pd.DataFrame, tmp_path: Path, name: str = "t.csv", **kw):
    path = tmp_path / name
    df.to_csv(path, index=False)
    return resolve(read_source(path), **kw)


def _frame(resolved) -> pd.DataFrame:
    return resolved.table.order_by("_row").execute()


def test_types_and_derived_amount(tmp_path: Path) -> None:
    r = _resolve(retail_frame(), tmp_path)
    df = _frame(r)
    assert r.has("amount") and r.mapping.how["amount"] == "derived"
    assert df["amount"].tolist() == pytest.approx(
        [6 * 2.55, 2 * 1.85, 32 * 1.69, 4 * 4.25, 3 * 5.95, 24 * 3.75]
    )
    assert str(df["invoice_date"].iloc[0]) == "2010-12-01 08:26:00"
    assert r.table.schema()["quantity"].is_floating()


def test_customer_ids_from_spreadsheets_are_normalised(tmp_path: Path) -> None:
    df = retail_frame()
    df["CustomerID"] = ["17850.0", " 17850 ", "13047.00", "", "A-12", "12583"]
    ids = _frame(_resolve(df, tmp_path))["customer_id"].tolist()
    assert ids[:3] == ["17850", "17850", "13047"]
    assert pd.isna(ids[3])
    assert ids[4:] == ["A-12", "12583"]


def test_customer_ids_from_a_decimal_comma_export_are_normalised(
    retail_pandas: pd.DataFrame, tmp_path: Path
) -> None:
    """A European export writes the float ids of Online Retail as ``12347,0`` (pandas'
    ``decimal=","``, the CSV a German or French Excel saves): they are the customers
    ``12347`` of the same lines written with decimal points, not other customers whose
    ids no CRM key matches. ``1,000`` (commas grouping thousands) is not cut to ``1``."""
    lines = retail_pandas.head(3000)
    eu, uk = tmp_path / "eu.csv", tmp_path / "uk.csv"
    lines.astype({"CustomerID": float}).to_csv(eu, sep=";", decimal=",", index=False)
    lines.to_csv(uk, index=False)
    assert "17850,0" in eu.read_text()
    ids = {
        name: _frame(resolve(read_source(path)))["customer_id"].tolist()
        for name, path in (("eu", eu), ("uk", uk))
    }
    assert ids["eu"] == ids["uk"]
    assert "17850" in ids["eu"]
    df = retail_frame()
    df["CustomerID"] = ["17850,0", "13047,00", "1,000", "12,5", "-4,0", "12583"]
    got = _frame(_resolve(df, tmp_path))["customer_id"].tolist()
    assert got == ["17850", "13047", "1,000", "12,5", "-4", "12583"]


def test_invoice_id_and_quantity_defaults(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"customer": ["a", "b"], "date": ["2024-01-01", "2024-01-02"], "sales": [10.0, 20.0]}
    )
    r = _resolve(df, tmp_path)
    out = _frame(r)
    assert out["invoice_id"].tolist() == ["L1", "L2"]
    assert out["quantity"].tolist() == [1.0, 1.0]
    assert out["unit_price"].tolist() == [10.0, 20.0]
    assert any("each line is its own order" in n for n in r.mapping.notes)


def test_decimal_comma(tmp_path: Path) -> None:
    path = tmp_path / "eu.csv"
    path.write_text("Kunde;Datum;Preis;Menge\n1;01.12.2023;2,55;3\n2;13.12.2023;10;1\n")
    r = resolve(
        read_source(path),
        {
            "customer_id": "Kunde",
            "invoice_date": "Datum",
            "unit_price": "Preis",
            "quantity": "Menge",
        },
    )
    out = _frame(r)
    assert out["unit_price"].tolist() == [2.55, 10.0]
    assert out["invoice_date"].dt.strftime("%Y-%m-%d").tolist() == ["2023-12-01", "2023-12-13"]
    assert any("decimal comma" in n for n in r.mapping.notes)


@pytest.mark.parametrize(
    ("prices", "expected", "note"),
    [
        (["2,55", "1.234,56", "-1.000", "10"], [2.55, 1234.56, -1000.0, 10.0], "decimal comma"),
        (["2.55", "1,234.56", "12,000", "10"], [2.55, 1234.56, 12000.0, 10.0], "thousands"),
        # spaces (also no-break ones, as French Excel writes) and Swiss apostrophes
        (["2,55", "1 234,56", "-1\u00a0000", "10"], [2.55, 1234.56, -1000.0, 10.0], "comma"),
        (["2,55", "12\u202f345,5", "10", "1"], [2.55, 12345.5, 10.0, 1.0], "comma"),
        (["2.55", "1'234.50", "10", "1"], [2.55, 1234.5, 10.0, 1.0], ""),
    ],
)
def test_thousands_groups_are_read(tmp_path: Path, prices, expected, note) -> None:
    """European exports write 1.234,56 and UK/US ones 1,234.56: both read as 1234.56
    (the first was refused, quoting a valid "2,55" as the bad value); 1 234,56 and
    1'234.50 were refused as not numbers."""
    path = tmp_path / "prices.csv"
    rows = "".join(f'{i};2023-12-0{i + 1};"{p}";1\n' for i, p in enumerate(prices))
    path.write_text("Kunde;Datum;Preis;Menge\n" + rows)
    cols = {"customer_id": "Kunde", "invoice_date": "Datum", "unit_price": "Preis"}
    r = resolve(read_source(path), cols | {"quantity": "Menge"})
    assert _frame(r)["unit_price"].tolist() == expected
    assert any(note in n for n in r.mapping.notes), r.mapping.notes


def test_a_bad_number_among_decimal_commas_is_the_one_quoted(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "Kunde;Datum;Preis\n1;2023-12-01;2,55\n2;2023-12-02;1.234,56\n3;2023-12-03;abc\n"
    )
    with pytest.raises(ParseError) as err:
        resolve(
            read_source(path),
            {"customer_id": "Kunde", "invoice_date": "Datum", "unit_price": "Preis"},
        )
    assert "has 1 of 3 values that are not numbers, e.g. 'abc' in data row 3" in str(err.value)


def test_text_in_numeric_column_reports_count_and_example(tmp_path: Path) -> None:
    df = retail_frame()
    df["Quantity"] = df["Quantity"].astype(str)
    df.loc[2, "Quantity"] = "three"
    df.loc[4, "Quantity"] = "a few"
    with pytest.raises(ParseError) as err:
        _resolve(df, tmp_path, "qty.csv")
    e = err.value
    assert "qty.csv: column 'Quantity' (quantity) has 2 of 6 values that are not numbers" in str(e)
    assert "'three' in data row 3" in str(e)
    assert (e.column, e.row) == ("Quantity", 3)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            ["12/1/2010 8:26", "12/13/2010 14:05", "1/2/2011 9:00"],
            ["2010-12-01 08:26", "2010-12-13 14:05", "2011-01-02 09:00"],
        ),
        (
            ["01/12/2010 08:26", "13/12/2010 14:05", "02/01/2011 09:00"],
            ["2010-12-01 08:26", "2010-12-13 14:05", "2011-01-02 09:00"],
        ),
        (
            ["01.12.2010", "13.12.2010", "02.01.2011"],
            ["2010-12-01 00:00", "2010-12-13 00:00", "2011-01-02 00:00"],
        ),
        (
            ["2010/12/01 08:26:10", "2010/12/13 14:05:00", "2011/01/02 09:00:00"],
            ["2010-12-01 08:26", "2010-12-13 14:05", "2011-01-02 09:00"],
        ),
        (
            ["30/05/21", "01/06/21", "15/01/99"],
            ["2021-05-30 00:00", "2021-06-01 00:00", "1999-01-15 00:00"],
        ),
        (  # every value is also a valid yy/mm/dd, which DuckDB's cast takes (year 1, ...)
            ["01/12/10 08:26", "18/01/11 14:05", "09/12/11 09:00"],
            ["2010-12-01 08:26", "2011-01-18 14:05", "2011-12-09 09:00"],
        ),
        (
            ["12/01/10", "01/18/11", "12/09/11"],
            ["2010-12-01 00:00", "2011-01-18 00:00", "2011-12-09 00:00"],
        ),
        (
            ["12/1/2010 8:26 PM", "12/13/2010 12:05 AM", "1/2/2011 12:00 PM"],
            ["2010-12-01 20:26", "2010-12-13 00:05", "2011-01-02 12:00"],
        ),
        (
            ["2010-12-01T08:26:00", "2010-12-13 14:05:00", "2011-01-02"],
            ["2010-12-01 08:26", "2010-12-13 14:05", "2011-01-02 00:00"],
        ),
    ],
)
def test_date_layouts_are_recognised(tmp_path: Path, values: list[str], expected) -> None:
    df = pd.DataFrame({"customer": ["a", "b", "c"], "date": values, "sales": [1.0, 2.0, 3.0]})
    out = _frame(_resolve(df, tmp_path))
    assert out["invoice_date"].dt.strftime("%Y-%m-%d %H:%M").tolist() == expected


def test_ambiguous_day_month_is_an_error_unless_told(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {"customer": ["a", "b"], "date": ["01/02/2011", "03/04/2011"], "sales": [1.0, 2.0]}
    )
    with pytest.raises(ParseError, match="day/month order is ambiguous") as err:
        _resolve(df, tmp_path)
    assert "--dayfirst" in err.value.hint
    day = _frame(_resolve(df, tmp_path, dayfirst=True))["invoice_date"]
    month = _frame(_resolve(df, tmp_path, dayfirst=False))["invoice_date"]
    assert day.dt.strftime("%m-%d").tolist() == ["02-01", "04-03"]
    assert month.dt.strftime("%m-%d").tolist() == ["01-02", "03-04"]
    # dotted dates are day-first wherever dots are written (01.02.2011 is 1 February):
    # they stopped the reading as ambiguous; a slash among them still does
    dotted = df.assign(date=["01.02.2011", "03.04.2011 10:15"])
    read = _frame(_resolve(dotted, tmp_path))["invoice_date"]
    assert read.dt.strftime("%m-%d").tolist() == ["02-01", "04-03"]
    assert _frame(_resolve(dotted, tmp_path, dayfirst=False))["invoice_date"].dt.month.tolist() == [
        1,
        3,
    ]
    with pytest.raises(ParseError, match="ambiguous"):
        _resolve(dotted.assign(date=["01.02.2011", "03/04/2011"]), tmp_path)


@pytest.mark.parametrize(
    ("dates", "dayfirst", "given", "bad"),
    [
        (["03/12/2011", "25/12/2011"], False, "--monthfirst", "25/12/2011"),
        (["12/03/2011", "12/25/2011"], True, "--dayfirst", "12/25/2011"),
    ],
)
def test_a_date_order_the_data_contradict_is_refused(
    tmp_path: Path, dates: list[str], dayfirst: bool, given: str, bad: str
) -> None:
    """--monthfirst on dates such as 25/12/2011 was overridden by the data with only a
    note ("dates read as day/month/year"): the option typed was silently ignored."""
    df = pd.DataFrame({"customer": ["a", "b"], "date": dates, "sales": [1.0, 2.0]})
    with pytest.raises(ParseError, match=f"'{bad}' \\(data row 2\\), which cannot be") as err:
        _resolve(df, tmp_path, dayfirst=dayfirst)
    assert given in err.value.message and err.value.code == "date_order_contradicted"
    assert f"leave out {given}" in err.value.hint
    # without the option the order is detected, as before
    got = _frame(_resolve(df, tmp_path))["invoice_date"].dt.strftime("%m-%d").tolist()
    assert got == ["12-03", "12-25"]


def test_explicit_date_format(tmp_path: Path) -> None:
    df = pd.DataFrame(
        {
            "customer": ["a", "b"],
            "date": ["01-Feb-2011 10h", "03-Apr-2011 22h"],
            "sales": [1.0, 2.0],
        }
    )
    out = _frame(_resolve(df, tmp_path, date_format="%d-%b-%Y %Hh"))
    assert out["invoice_date"].dt.strftime("%Y-%m-%d %H").tolist() == [
        "2011-02-01 10",
        "2011-04-03 22",
    ]
    with pytest.raises(ConfigError, match="unsupported directive '%Q'"):
        _resolve(df, tmp_path, date_format="%Q")


def test_few_bad_dates_are_left_to_cleaning(tmp_path: Path) -> None:
    df = retail_frame()
    df.loc[1, "InvoiceDate"] = "not a date"
    r = _resolve(df, tmp_path)
    assert pd.isna(_frame(r)["invoice_date"].iloc[1])
    assert any("1 value(s) are not dates" in n for n in r.mapping.notes)


def test_unparseable_date_column_is_an_error(tmp_path: Path) -> None:
    df = retail_frame()
    df["InvoiceDate"] = ["soon", "later", "yesterday", "never", "tomorrow", "today"]
    with pytest.raises(ParseError, match="not recognisable dates, e.g. 'soon' in data row 1"):
        _resolve(df, tmp_path, "dates.csv")


def test_text_trims_exactly_like_strip() -> None:
    """The two-ends test before trimming gives what trimming every value gives."""
    import ibis

    from segmint.schema import _text

    values = [
        "abc", " abc", "abc ", "\tabc\n", "\x0babc\x0c", "\rabc\r\n", "\x01abc", "abc\x1f",
        "a b", "", " ", "\t \n", "é", " é ", "\u00a0x\u00a0", None,
    ]  # fmt: skip
    t = ibis.memtable({"v": values}, schema={"v": "string"})
    got = ibis.duckdb.connect().execute(t.select(a=_text(t.v), b=t.v.strip().nullif("")))
    assert got["a"].tolist() == got["b"].tolist()
    assert got["a"].tolist()[:6] == ["abc"] * 6


_BLANKY = [
    "abc", " abc", "abc ", "\tabc\n", "\x0babc\x0c", "\rabc\r\n", "\x01abc", "abc\x1f",
    "a b", "", " ", "\t \n", "é", " é ", "\u00a0x\u00a0", "!", "~x", None,
    "\u0600 ", "x\u0600\t", "e\u0301 ", "\u20ac\r",  # a blank after a prepended or combining mark
]  # fmt: skip


def test_blank_check_never_misses_a_value_that_needs_trimming() -> None:
    """``_may_need_trim`` is True wherever trimming would change the value, so reading a
    column it found clean as it is gives what trimming gives."""
    import ibis

    from segmint.schema import _may_need_trim

    t = ibis.memtable({"v": _BLANKY}, schema={"v": "string"})
    got = ibis.duckdb.connect().execute(t.select(v=t.v, may=_may_need_trim(t.v)))
    for v, may in zip(got["v"], got["may"], strict=True):
        if isinstance(v, str) and v.strip(" \t\n\r\x0b\x0c") != v:
            assert may, repr(v)
    flags = dict(zip(got["v"], got["may"], strict=True))
    assert not flags["abc"] and not flags["a b"] and not flags["é"] and not flags["!"]
    assert flags[""] and flags["\x01abc"]  # empty, or a control character first


def test_parquet_text_columns_without_blanks_are_read_as_they_are(tmp_path: Path) -> None:
    """A columnar source's text columns are checked once for blanks; the clean ones are
    read as they are (no trimming on every later reading), the others trimmed, with the
    same values either way."""
    import ibis

    df = retail_frame()
    df["Country"] = [" United Kingdom", "France ", "\tFrance", "Germany", "", "Spain\n"]
    path = tmp_path / "t.parquet"
    df.to_parquet(path, index=False)
    r = resolve(read_source(path))
    got = _frame(r)
    assert [None if pd.isna(v) else v for v in got["country"]] == [
        "United Kingdom", "France", "France", "Germany", None, "Spain",
    ]  # fmt: skip
    assert got["invoice_id"].tolist() == df["InvoiceNo"].astype(str).tolist()
    sql = ibis.to_sql(r.table)
    country_sql = ibis.to_sql(r.table.select("country"))
    invoice_sql = ibis.to_sql(r.table.select("invoice_id"))
    assert "TRIM" in country_sql.upper()
    assert "TRIM" not in invoice_sql.upper() and "TRIM" in sql.upper()
    # the same file as CSV is parsed once and stored by cleaning: no check there
    csv = tmp_path / "t.csv"
    df.to_csv(csv, index=False)
    assert "TRIM" in ibis.to_sql(resolve(read_source(csv)).table.select("invoice_id")).upper()


@pytest.mark.parametrize(
    ("ids", "checked_per_value"),
    [
        ([17850.0, 13047.0, -0.0, None, 12583.0, 2.0**53 - 1], False),
        ([17850.0, 13047.5, 2.0**53, None, 12583.0, 1.0], True),
    ],
)
def test_float_customer_ids_in_parquet(tmp_path: Path, ids: list, checked_per_value: bool) -> None:
    """Float ids are written as integers when whole; a scan decides whether the per-value
    test is needed, with the same ids either way."""
    import ibis

    df = retail_frame()
    df["CustomerID"] = ids
    path = tmp_path / "t.parquet"
    df.to_parquet(path, index=False)
    r = resolve(read_source(path))
    got = [None if pd.isna(v) else v for v in _frame(r)["customer_id"]]

    def reference(v: float | None) -> str | None:
        if v is None:
            return None
        return str(int(v)) if v == int(v) and abs(v) < 2**53 else repr(v)

    want = [reference(v) for v in ids]
    if checked_per_value:
        want[2] = "9007199254740992.0"  # DuckDB's text of a float beyond 2**53
    assert got == want
    assert ("FLOOR" in ibis.to_sql(r.table.select("customer_id")).upper()) is checked_per_value
    # whole ids also give the integer key cleaning and features group by; its text is
    # customer_id
    assert (CUSTOMER_KEY in r.table.columns) is not checked_per_value
    if not checked_per_value:
        keys = r.table.select(k=r.table[CUSTOMER_KEY].cast("string")).execute()["k"]
        assert [None if pd.isna(v) else v for v in keys] == want


def test_customer_key_only_for_numeric_ids(tmp_path: Path) -> None:
    """Integer id columns get the key, text ids (even all digits) do not."""
    df = retail_frame()
    df["CustomerID"] = pd.to_numeric(df["CustomerID"]).astype("Int64")
    df.to_parquet(tmp_path / "int.parquet", index=False)
    r = resolve(read_source(tmp_path / "int.parquet"))
    assert customer_key(r.table) == CUSTOMER_KEY
    assert {"_row", CUSTOMER_KEY} <= set(r.table.columns)
    assert not {"_row", CUSTOMER_KEY} & set(public_columns(r.table))
    assert public_columns(r.table)[0] == "customer_id"
    # unsigned 64-bit ids beyond the signed range are keyed as they are
    big = [2**63 + 5, 2**64 - 1, 17850, 2**63 + 5, 1, 0]
    df.assign(CustomerID=np.array(big, dtype=np.uint64)).to_parquet(tmp_path / "u.parquet")
    u = resolve(read_source(tmp_path / "u.parquet")).table
    got = u.select("customer_id", k=u[CUSTOMER_KEY].cast("string")).execute()
    assert got["customer_id"].tolist() == got["k"].tolist() == [str(v) for v in big]
    feats = customer_features(clean(resolve(read_source(tmp_path / "u.parquet")))).to_pandas()
    assert sorted(feats["customer_id"]) == sorted({str(v) for v in big})
    df["CustomerID"] = df["CustomerID"].astype(str)
    df.to_parquet(tmp_path / "text.parquet", index=False)
    assert customer_key(resolve(read_source(tmp_path / "text.parquet")).table) == "customer_id"


def test_a_decimal_point_file_reads_comma_thousands_in_every_number_column(
    tmp_path: Path,
) -> None:
    """In a file whose prices have decimal points (2.55), quantities "1,000" and "2,500"
    are thousands: read with a decimal comma (every value parsed so) they were 1 and 2.5,
    and the line's amount a thousandth of the real one, without a word."""
    path = tmp_path / "uk.csv"
    path.write_text(
        "InvoiceNo,InvoiceDate,UnitPrice,Quantity,CustomerID\n"
        '1,2010-12-01 08:26,2.55,"1,000",100\n'
        '2,2010-12-02 08:26,3.10,"2,500",101\n'
        "3,2010-12-03 08:26,1.25,12,102\n"
    )
    resolved = resolve(read_source(path))
    got = resolved.table.order_by("invoice_id").to_pandas()
    assert got["quantity"].tolist() == [1000.0, 2500.0, 12.0]
    assert got["amount"].tolist() == pytest.approx([2550.0, 7750.0, 15.0])
    assert any("1,000 = 1000" in n for n in resolved.mapping.notes)
    # a comma that is no thousands group (2,5) keeps the column's decimal comma reading
    path.write_text(
        "InvoiceNo,InvoiceDate,UnitPrice,Quantity,CustomerID\n"
        '1,2010-12-01 08:26,2.55,"1,000",100\n'
        '2,2010-12-02 08:26,3.10,"2,5",101\n'
    )
    got = resolve(read_source(path)).table.order_by("invoice_id").to_pandas()
    assert got["quantity"].tolist() == [1.0, 2.5]


def test_a_decimal_comma_file_reads_every_number_column_with_it(tmp_path: Path) -> None:
    """In a file whose prices need a decimal comma, a quantity "1.000" is a thousand:
    read plainly (every quantity also parsed with a decimal point) it was 1."""
    path = tmp_path / "de.csv"
    path.write_text(
        "Rechnung;Artikel;Menge;Datum;Preis;Kunde\n"
        "1;A;1.000;2010-12-01 10:00;2,50;111\n"
        "2;A;2;2010-12-02 10:00;1.234,50;112\n"
    )
    mapping = {"quantity": "Menge", "unit_price": "Preis", "customer_id": "Kunde",
               "invoice_date": "Datum", "invoice_id": "Rechnung"}  # fmt: skip
    resolved = resolve(read_source(path), mapping)
    got = resolved.table.order_by("invoice_id").to_pandas()
    assert got["quantity"].tolist() == [1000.0, 2.0]
    assert got["unit_price"].tolist() == [2.5, 1234.5]
    assert any("1.000 = 1000" in n for n in resolved.mapping.notes)
    # a column whose dots are decimal points (0.500, 1.5) keeps them, also in such a file
    path.write_text(
        "Rechnung;Artikel;Menge;Datum;Preis;Kunde\n"
        "1;A;0.500;2010-12-01 10:00;2,55;111\n"
        "2;A;1.250;2010-12-02 10:00;2,55;112\n"
        "3;A;1.5;2010-12-02 10:00;2,55;112\n"
    )
    got = resolve(read_source(path), mapping).table.order_by("invoice_id").to_pandas()
    assert got["quantity"].tolist() == [0.5, 1.25, 1.5]


def test_dates_stored_as_numbers_take_a_date_format(tmp_path: Path) -> None:
    """Integer dates such as 20101201 were read as Excel serial days even with
    --date-format '%Y%m%d' (and the error showed np.int64(20101201))."""
    frame = retail_frame()
    frame["InvoiceDate"] = pd.to_datetime(frame["InvoiceDate"]).dt.strftime("%Y%m%d").astype(int)
    path = tmp_path / "ymd.parquet"
    frame.to_parquet(path)
    with pytest.raises(ParseError, match="e.g. 20101201 in data row 1") as err:
        resolve(read_source(path))
    assert "--date-format '%Y%m%d'" in err.value.hint
    got = resolve(read_source(path), date_format="%Y%m%d").table.execute()
    assert got["invoice_date"].min() == pd.Timestamp("2010-12-01")


@pytest.mark.parametrize("value", ["1e29", "inf", "-2e13"])
def test_an_implausible_number_is_named_with_its_row(tmp_path: Path, value: str) -> None:
    """A price of 1e29 passed cleaning and failed in the features as a decimal
    conversion error naming no row."""
    df = retail_frame()
    df["UnitPrice"] = df["UnitPrice"].astype(str)
    df.loc[3, "UnitPrice"] = value
    with pytest.raises(ParseError) as err:
        _resolve(df, tmp_path, "huge.csv")
    assert f"has '{value}' in data row 4, beyond any real unit price" in str(err.value)
    assert (err.value.column, err.value.row) == ("UnitPrice", 4)
    df.loc[3, "UnitPrice"] = "999999999999"  # at the limit: a value, however odd
    assert _resolve(df, tmp_path, "fine.csv").table.count().execute() == 6


def test_a_date_format_that_does_not_match_says_so(tmp_path: Path) -> None:
    """The hint told the user who gave --date-format to give --date-format."""
    with pytest.raises(ParseError) as err:
        _resolve(retail_frame(), tmp_path, date_format="%d.%m.%Y %H:%M")
    assert "do not match --date-format '%d.%m.%Y %H:%M'" in err.value.hint


def test_a_customer_total_from_one_channel_only_is_noted(flo: Path, tmp_path: Path) -> None:
    """FLO without its offline spend gave an online-only monetary beside orders of both
    channels, without a word."""
    path = tmp_path / "flo_online_spend.csv"
    raw = pd.read_csv(flo, nrows=200).drop(columns="customer_value_total_ever_offline")
    raw.to_csv(path, index=False)
    notes = resolve(read_source(path)).mapping.notes
    assert any(
        n.startswith("monetary: from customer_value_total_ever_online only") for n in notes
    ), notes
    full = resolve(read_source(flo)).mapping.notes
    assert not any("only (no column" in n for n in full)


def test_an_iso_date_among_month_first_text_keeps_the_month_first_reading(
    tmp_path: Path,
) -> None:
    """One ISO date among "12/13/2010" text made 2010 the largest first field, so the
    column was read day-first: 12/1/2010 became 12 January and 12/13/2010 was dropped."""
    df = retail_frame(3)
    df["InvoiceDate"] = ["12/1/2010 8:26", "12/13/2010 8:26 PM", "2010-12-20"]
    got = _frame(_resolve(df, tmp_path))["invoice_date"].tolist()
    assert got == [
        pd.Timestamp("2010-12-01 08:26"),
        pd.Timestamp("2010-12-13 20:26"),
        pd.Timestamp("2010-12-20"),
    ]


def test_day_first_dates_among_a_majority_of_iso_dates_are_read_not_dropped(
    tmp_path: Path,
) -> None:
    """A folder whose newer parts come from another system (ISO dates beside the older
    parts' ``25/12/2010``): with ISO dates the majority, the column was read year-first
    and every day/month/year line was dropped as unparseable. They are now read in the
    order their values show (or refused as ambiguous, naming one of them)."""
    folder = tmp_path / "export"
    folder.mkdir()
    old, new = retail_frame(), retail_frame(4)
    old["InvoiceDate"] = ["01/11/2010 08:00", "25/11/2010 09:30"] + ["2010/11/26"] * 4
    new["InvoiceNo"] = [f"7{i:05d}" for i in range(4)]
    (folder / "part-0.csv").write_text(old.to_csv(index=False))
    (folder / "part-1.csv").write_text(new.to_csv(index=False))
    res = clean(resolve(read_source(folder)))
    assert res.audit.kept_rows == 10
    got = sorted(res.lines.to_pandas()["invoice_date"].dt.strftime("%Y-%m-%d %H:%M"))
    assert got[:2] == ["2010-11-01 08:00", "2010-11-25 09:30"]
    assert got[2:6] == ["2010-11-26 00:00"] * 4
    # the day/month values alone cannot tell their order: refused naming one of them
    old["InvoiceDate"] = ["01/11/2010 08:00", "05/11/2010 09:30"] + ["2010-11-26"] * 4
    (folder / "part-0.csv").write_text(old.to_csv(index=False))
    with pytest.raises(ParseError, match=r"such as '01/11/2010 08:00' \(data row 1 of part-0"):
        resolve(read_source(folder))


def test_a_spreadsheet_date_number_takes_a_date_format(tmp_path: Path) -> None:
    """Excel keeps 20101201 as the float 20101201.0, which '%Y%m%d' did not match."""
    import xlsxwriter

    path = tmp_path / "ymd.xlsx"
    book = xlsxwriter.Workbook(path)
    sheet = book.add_worksheet()
    sheet.write_row(0, 0, ["InvoiceNo", "StockCode", "Quantity", "InvoiceDate", "UnitPrice",
                           "CustomerID"])  # fmt: skip
    sheet.write_row(1, 0, ["1", "A", 1, 20101201, 2.5, "7"])
    sheet.write_row(2, 0, ["2", "A", 1, 20101202, 2.5, "8"])
    book.close()
    got = resolve(read_source(path), date_format="%Y%m%d").table.order_by("_row").execute()
    assert got["invoice_date"].tolist() == [pd.Timestamp("2010-12-01"), pd.Timestamp("2010-12-02")]


# ------------------------------------------------------------------ repeated column names
def _repeated(frame: pd.DataFrame, name: str, values: list[object]) -> pd.DataFrame:
    """``frame`` with a second column called ``name`` at the end (pandas allows it)."""
    out = frame.copy()
    out.insert(len(out.columns), f"{name}__second", values, allow_duplicates=True)
    return out.rename(columns={f"{name}__second": name})


def _write(frame: pd.DataFrame, path: Path) -> Path:
    """``frame`` (whose column names may repeat) written as CSV, Excel or Parquet."""
    if path.suffix == ".csv":
        frame.to_csv(path, index=False)
    elif path.suffix == ".xlsx":
        import xlsxwriter

        book = xlsxwriter.Workbook(path)
        sheet = book.add_worksheet("lines")
        sheet.write_row(0, 0, list(frame.columns))
        for i, row in enumerate(frame.itertuples(index=False), start=1):
            sheet.write_row(i, 0, list(row))
        book.close()
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        arrays = [pa.array(frame.iloc[:, i].tolist()) for i in range(frame.shape[1])]
        pq.write_table(pa.Table.from_arrays(arrays, names=list(frame.columns)), path)
    return path


@pytest.mark.parametrize("ending", [".csv", ".xlsx", ".parquet"])
def test_a_repeated_column_name_the_mapping_uses_is_refused(tmp_path: Path, ending: str) -> None:
    """Two columns called ``Quantity``: DuckDB read the second as ``Quantity_1``, the
    mapping took the first without a word (``inspect`` listed the other as not used);
    which one holds the quantities is a guess, so it is refused with both fixes, and a
    choice made with --map is kept."""
    frame = _repeated(retail_frame(), "Quantity", [1000] * 6)
    path = _write(frame, tmp_path / f"lines{ending}")
    with pytest.raises(InputError) as e:
        resolve(read_source(path))
    assert e.value.code == "duplicate_column"
    assert e.value.message.startswith(
        f"{path}: has 2 columns named 'Quantity' (columns 4 and 9, read as 'Quantity' and "
        "'Quantity_1')"
    )
    assert "--map quantity=Quantity (column 4) or --map quantity=Quantity_1 (column 9)" in (
        e.value.hint
    )
    chosen = resolve(read_source(path), {"quantity": "Quantity_1"})
    assert clean(chosen).lines.to_pandas()["quantity"].tolist() == [1000.0] * 6
    assert any("'Quantity_1' as mapped" in n for n in chosen.mapping.notes)


def test_a_repeated_customer_id_is_refused_in_any_case(tmp_path: Path) -> None:
    """``CustomerID`` and ``customerid`` are one name to DuckDB (it reads the second as
    ``customerid_1``): refused as a repeat, naming both positions."""
    frame = retail_frame()
    frame["customerid"] = "99999"
    path = tmp_path / "lines.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError, match=r"2 columns named 'CustomerID' \(columns 7 and 9"):
        resolve(read_source(path))


def test_a_repeated_column_name_not_used_is_a_warning_and_a_note(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    frame = _repeated(retail_frame().assign(Note="a"), "Note", ["b"] * 6)
    path = tmp_path / "lines.csv"
    frame.to_csv(path, index=False)
    with caplog.at_level("WARNING", logger="segmint.schema"):
        resolved = resolve(read_source(path))
    text = (
        f"{path}: has 2 columns named 'Note' (columns 9 and 10, read as 'Note' and "
        "'Note_1'); none of them is used"
    )
    assert text in resolved.mapping.notes
    assert text in caplog.text


def test_a_folder_part_with_a_repeated_column_name_is_named(tmp_path: Path) -> None:
    """In a folder, the part whose header repeats a name is the one named."""
    folder = tmp_path / "export"
    folder.mkdir()
    retail_frame().to_csv(folder / "part-0.csv", index=False)
    _repeated(retail_frame(), "UnitPrice", [9.0] * 6).to_csv(folder / "part-1.csv", index=False)
    with pytest.raises(InputError, match=r"export/part-1\.csv: has 2 columns named 'UnitPrice'"):
        resolve(read_source(folder))


def test_pandas_renamed_repeats_are_refused_when_used(tmp_path: Path) -> None:
    """pandas reads a repeated ``Quantity`` as ``Quantity`` and ``Quantity.1`` and
    writes them so (``to_excel``, ``to_csv``): the same guess, refused the same way."""
    path = tmp_path / "lines.xlsx"
    retail_frame().assign(**{"Quantity.1": 1000}).to_excel(path, index=False)
    with pytest.raises(InputError) as e:
        resolve(read_source(path))
    assert "'Quantity.1' is how pandas names a second column called 'Quantity'" in (e.value.message)
    assert "--map quantity=Quantity.1 (column 9)" in e.value.hint


def test_names_that_differ_only_in_case_or_spaces_are_refused_when_used(tmp_path: Path) -> None:
    """``CustomerID`` beside ``Customer ID`` (a CSV), ``Quantity`` beside ``quantity``
    (a DataFrame; DuckDB reads it as ``quantity_1``): auto-mapping took the first
    without a word."""
    frame = retail_frame()
    frame["Customer ID"] = "99999"
    path = tmp_path / "lines.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(InputError) as e:
        resolve(read_source(path))
    assert "has columns 'CustomerID' and 'Customer ID' (columns 7 and 9)" in e.value.message
    assert "--map customer_id=Customer ID (column 9)" in e.value.hint
    kept = clean(resolve(read_source(path), {"customer_id": "Customer ID"})).lines
    assert set(kept.to_pandas()["customer_id"]) == {"99999"}
    with pytest.raises(InputError, match=r"<dataframe>: has 2 columns named 'Quantity'"):
        resolve(read_source(retail_frame().assign(quantity=1000)))


@pytest.mark.parametrize(
    ("values", "layout"),
    [
        (["01-Dec-2010 08:26", "13-Dec-2010 14:05"], "%d-%b-%Y %H:%M"),
        (["Dec 1, 2010", "Dec 13, 2010"], "%b %d, %Y"),
        (["1 December 2010", "13 December 2010"], "%d %B %Y"),
        (["20101201", "20101213"], "%Y%m%d"),
    ],
)
def test_unrecognised_dates_suggest_a_layout_that_reads_them(
    tmp_path: Path, values: list[str], layout: str
) -> None:
    """Every unrecognised date got the same example layout ('%d.%m.%Y %H:%M'), which
    does not read '01-Dec-2010' or '20101201'; the hint now gives one that does."""
    path = tmp_path / "dates.csv"
    pd.DataFrame({"customer": ["a", "b"], "date": values, "sales": [1.0, 2.0]}).to_csv(
        path, index=False
    )
    with pytest.raises(ParseError) as e:
        resolve(read_source(path))
    assert f"--date-format (e.g. '{layout}')" in e.value.hint
    got = _frame(resolve(read_source(path), date_format=layout))["invoice_date"]
    assert got.dt.strftime("%Y-%m-%d").tolist() == ["2010-12-01", "2010-12-13"]


def test_timezone_reads_instants_as_the_shops_local_time(tmp_path: Path) -> None:
    """A timestamp with a zone is an instant: without --timezone its UTC day was taken,
    and a 9:00 sale in Sydney counted on the day before. With a zone, the local wall time
    (daylight saving included) is read, from any stored zone; text stays as written."""
    path = zoned_parquet(tmp_path / "zoned.parquet")

    def dates(column: str, zone: str | None) -> list[str]:
        mapping = {"invoice_date": column}
        t = resolve(read_source(path), mapping, timezone=zone).table.order_by("_row")
        return [str(v) for v in t.execute()["invoice_date"][:2]]

    assert dates("sydney", None) == ["2024-01-14 22:00:00", "2024-07-14 23:00:00"]
    assert dates("sydney", "Australia/Sydney") == ["2024-01-15 09:00:00", "2024-07-15 09:00:00"]
    assert dates("utc", "America/New_York") == ["2024-01-14 21:30:00", "2024-07-14 21:30:00"]
    assert dates("utc", None) == ["2024-01-15 02:30:00", "2024-07-15 01:30:00"]
    assert dates("text", "America/New_York") == ["2024-01-15 09:00:00"] * 2
    assert dates("wall", "America/New_York") == ["2024-01-15 09:00:00", "2024-07-15 09:00:00"]
    notes = resolve(read_source(path), {"invoice_date": "sydney"}, timezone="UTC").mapping.notes
    assert "invoice_date: instants read as local time in UTC" in notes


def test_timezone_reads_int96_timestamps_as_instants(tmp_path: Path) -> None:
    """Spark and Hive write timestamps as INT96 UTC instants; DuckDB types them as a
    zone-less TIMESTAMP, so --timezone left them in UTC (a 9:00 Sydney sale on the day
    before) while Spark moved them. Read as instants, in a file and in a folder of parts."""
    path = int96_parquet(tmp_path / "int96.parquet")
    folder = tmp_path / "parts"
    folder.mkdir()
    int96_parquet(folder / "part-0.parquet")
    for data in (path, folder):
        source = read_source(data)
        assert source.instants == ("sydney",)

        def dates(zone: str | None, source=source) -> list[str]:
            t = resolve(source, {"invoice_date": "sydney"}, timezone=zone).table.order_by("_row")
            return [str(v) for v in t.execute()["invoice_date"][:2]]

        assert dates(None) == ["2024-01-14 22:00:00", "2024-07-14 23:00:00"]
        assert dates("Australia/Sydney") == ["2024-01-15 09:00:00", "2024-07-15 09:00:00"]
    # a timestamp Parquet stores as INT64 without a zone is a wall time, as before
    assert read_source(zoned_parquet(tmp_path / "zoned.parquet")).instants == ()


def test_resolve_refuses_a_misspelt_time_zone_before_reading(tmp_path: Path) -> None:
    """segmint.resolve(timezone="Europe/Amsterdm") passed the name to DuckDB, which failed
    at the first query with its own NotImplementedException; the Python API now gives
    the same ConfigError, with the closest name, as --timezone and load.timezone."""
    path = zoned_parquet(tmp_path / "zoned.parquet")
    with pytest.raises(ConfigError, match="unknown time zone 'Europe/Amsterdm'") as err:
        resolve(read_source(path), {"invoice_date": "sydney"}, timezone="Europe/Amsterdm")
    assert "'Europe/Amsterdam'" in err.value.hint
    with pytest.raises(ConfigError, match="unknown time zone"):
        resolve(read_source(path), {"invoice_date": "sydney"}, timezone="Mars/Olympus")


def test_customer_ids_rounded_to_scientific_notation_are_refused(cli, tmp_path: Path) -> None:
    """Excel saves a 12-digit id in a "General" cell as ``1.23457E+11`` (6 digits): two
    customers became one text, silently merged into one customer. Refused, naming the
    column, the value, its row and how to export it again; ids such as ``17850.0`` or
    codes with an E are still read."""
    path = tmp_path / "excel_export.csv"
    path.write_text(
        "\ufeffCustomerID,InvoiceNo,InvoiceDate,Quantity,UnitPrice\r\n"
        "17850.0,1,2024-01-15 10:00,1,9.99\r\n"
        "1.23457E+11,2,2024-01-15 11:00,1,9.99\r\n"
        "1.23457E+11,3,2024-01-16 11:00,2,4.50\r\n",
        encoding="utf-8",
    )
    with pytest.raises(ParseError, match="scientific notation") as err:
        resolve(read_source(path))
    assert err.value.column == "CustomerID" and err.value.row == 2
    assert "2 ids" in str(err.value) and "'1.23457E+11' in data row 2" in str(err.value)
    assert "formatted as text" in err.value.hint
    res = cli("inspect", path)
    assert res.code == 2 and "1.23457E+11" in res.err and "Traceback" not in res.err
    fine = tmp_path / "fine.csv"
    fine.write_text(
        "CustomerID,InvoiceNo,InvoiceDate,Quantity,UnitPrice\n"
        "17850.0,1,2024-01-15 10:00,1,9.99\n"
        "AB1E+5,2,2024-01-15 11:00,1,9.99\n"
    )
    ids = resolve(read_source(fine)).table.order_by("_row").execute()["customer_id"]
    assert ids.tolist() == ["17850", "AB1E+5"]


def test_one_column_mapped_to_two_roles_is_refused(cli, tmp_path: Path) -> None:
    """`--map customer_id=CustomerID --map invoice_id=CustomerID` was taken without a
    word and gave every customer one order. A product's name may still be its id."""
    with pytest.raises(ConfigError, match="gives column 'CustomerID' 2 roles") as err:
        build_mapping(UCI_I, {"customer_id": "CustomerID", "invoice_id": "CustomerID"})
    assert err.value.code == "column_mapped_twice"
    shared = build_mapping(UCI_I, {"product_id": "Description", "description": "Description"})
    assert shared.columns["product_id"] == shared.columns["description"] == "Description"
    path = tmp_path / "sales.csv"
    path.write_text("CustomerID,InvoiceDate,UnitPrice\n1,2011-01-02,3.5\n")
    res = cli(
        "features", path, "--map", "customer_id=CustomerID", "--map", "invoice_id=CustomerID",
        "--out", tmp_path / "f.csv",
    )  # fmt: skip
    assert res.code == 2 and "Traceback" not in res.err
    assert "mapping customer_id=CustomerID and invoice_id=CustomerID" in res.err
    assert not (tmp_path / "f.csv").exists()


def test_dates_as_unix_seconds_or_milliseconds_are_read(tmp_path: Path) -> None:
    """pandas' `to_json` writes dates as Unix milliseconds and many API exports as
    seconds: they were "not recognisable dates" with no option to read them (as Excel
    serial days they are thousands of years away). Numbers of that size are instants
    (UTC; --timezone gives the wall time there); Excel serial days are still read."""
    when = pd.to_datetime(["2011-01-03 10:00", "2011-02-10 23:30", "2011-03-01 08:00"])
    frame = pd.DataFrame({"customer_id": ["a", "a", "b"], "sold": when, "price": [10.0, 5, 3]})
    seconds = when.astype("datetime64[s]").astype("int64")
    ms, pq = tmp_path / "ms.json", tmp_path / "s.parquet"
    frame.assign(sold=seconds * 1000).to_json(ms, orient="records")  # to_json's default
    assert "1294048800000" in ms.read_text()
    frame.assign(sold=seconds).to_parquet(pq)
    columns = {"invoice_date": "sold"}
    for path, unit in ((ms, "milliseconds"), (pq, "seconds")):
        r = resolve(read_source(path), columns)
        assert _frame(r)["invoice_date"].tolist() == list(when), path
        assert f"invoice_date: dates read as Unix time in {unit} (since 1970-01-01 UTC)" in (
            r.mapping.notes
        )
    local = _frame(resolve(read_source(pq), columns, timezone="America/New_York"))
    assert local["invoice_date"].dt.strftime("%m-%d %H:%M").tolist() == [
        "01-03 05:00",
        "02-10 18:30",
        "03-01 03:00",
    ]
    # serial days stay serial days; sizes of neither kind are not read as Unix time
    serial = tmp_path / "serial.parquet"
    frame.assign(sold=[40546.0, 40584.5, 40603.25]).to_parquet(serial)
    days = _frame(resolve(read_source(serial), columns))["invoice_date"]
    assert days.dt.strftime("%Y-%m-%d").tolist() == ["2011-01-03", "2011-02-10", "2011-03-01"]
    # yyyymmddHH and yyyymmddHHMM numbers have the size of Unix seconds (a date in 2033)
    # and milliseconds (1976): refused with the --date-format hint, not read as either
    for stamps in ([2010120108, 2011120914, 2011030108], [201012010830, 201112091450, 0]):
        packed = tmp_path / "packed.parquet"
        frame.assign(sold=stamps).to_parquet(packed)
        with pytest.raises(ParseError, match="not recognisable dates"):
            resolve(read_source(packed), columns)
    # a number column without a value: no Unix test to make (min and max were None)
    empty = tmp_path / "empty.parquet"
    frame.assign(sold=pd.array([None] * 3, dtype="Int64")).to_parquet(empty)
    assert _frame(resolve(read_source(empty), columns))["invoice_date"].isna().all()
    odd = tmp_path / "odd.parquet"
    frame.assign(sold=[1294048800.0, 1294048800000.0, 1297380600.0]).to_parquet(odd)
    with pytest.raises(ParseError, match="not recognisable dates") as err:
        resolve(read_source(odd), columns)
    assert "Unix seconds or milliseconds" in err.value.hint


def _run_on_quote_csv(path: Path, *, fixed: bool = False) -> Path:
    """Ten one-line orders; line 4's description opens a quote that line 7 closes."""
    rows = ["InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country"]
    for i in range(10):
        desc = {3: '"WHITE HEART', 6: 'BIG MUG"'}.get(i, "MUG")
        if fixed and i in (3, 6):
            desc = '"' + desc.replace('"', '""') + '"'
        rows.append(f"{536365 + i},85123A,{desc},6,2010-12-01 08:26,2.55,{17850 + i},UK")
    path.write_text("\n".join(rows) + "\n")
    return path


@pytest.mark.parametrize("in_memory", [True, False], ids=["in-memory", "parquet-copy"])
def test_a_quote_joining_lines_into_one_value_is_a_warning(
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    in_memory: bool,
) -> None:
    """A stray opening quote closed lines later makes one (valid) value of three lines:
    their customers were gone without a word, with the input count agreeing."""
    if not in_memory:
        monkeypatch.setenv("SEGMINT_TEXT_IN_MEMORY", "0")
    path = _run_on_quote_csv(tmp_path / "lines.csv")
    with caplog.at_level("WARNING", logger="segmint.schema"):
        resolved = resolve(read_source(path))
    (note,) = [n for n in resolved.mapping.notes if "several lines" in n]
    assert note.startswith(
        f"{path}: 1 value of column 'Description' (description) spans several lines of the "
        "file, taking in 3 more lines, the first in data row 4 (starting 'WHITE HEART,6,"
    )
    assert "fix the quotes in the file" in note
    assert note in caplog.text
    assert len(customer_features(clean(resolved)).to_pandas()) == 7

    fixed = resolve(read_source(_run_on_quote_csv(tmp_path / "fixed.csv", fixed=True)))
    assert not [n for n in fixed.mapping.notes if "several lines" in n]
    assert len(customer_features(clean(fixed)).to_pandas()) == 10
