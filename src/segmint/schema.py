"""Canonical columns, auto-mapping of source column names, explicit mapping, type coercion.

Coercion is written as ibis expressions (``try_cast``, regular expressions, string
functions), never as DuckDB-only SQL, so the same definitions run on Spark and PostgreSQL.
Dates in any of the usual layouts (ISO, ``12/1/2010 8:26``, ``01.12.2010``, ``dd/mm/yy``)
are recognised from the whole column; an ambiguous day/month order is an error unless the
user says which (``dayfirst`` or ``date_format``).
"""

from __future__ import annotations

import datetime
import difflib
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from segmint.errors import (
    ConfigError,
    InputError,
    MissingColumnError,
    ParseError,
    WrongTypeError,
)
from segmint.io import Source, translate_errors

__all__ = [
    "CUSTOMER_COLUMNS",
    "TRANSACTION_COLUMNS",
    "ColumnSpec",
    "Mapping",
    "Resolved",
    "normalize_name",
    "resolve",
]

log = logging.getLogger(__name__)

Kind = Literal["transactions", "customers"]


@dataclass(frozen=True)
class ColumnSpec:
    """A canonical column: its type, whether it is required, and the names it is known by."""

    name: str
    dtype: Literal["id", "string", "number", "timestamp"]
    description: str
    aliases: tuple[str, ...] = ()
    required: bool = False


def timezone_hint(zone: str) -> str | None:
    """None when ``zone`` is an IANA time zone name, else a hint (with the closest name).

    Checked before any data is read: DuckDB's ICU names no option, and a typo
    (``"Europe/Amsterdm"``) would otherwise fail deep in the first query.
    """
    import zoneinfo

    names = zoneinfo.available_timezones()
    if zone in names:
        return None
    close = difflib.get_close_matches(zone, sorted(names), n=1, cutoff=0.6)
    names_hint = "an IANA name such as Europe/Amsterdam, America/New_York or UTC"
    return f"did you mean {close[0]!r}? ({names_hint})" if close else f"give {names_hint}"


def _spec(name: str, dtype: Any, description: str, aliases: str, required: bool = False):
    return ColumnSpec(name, dtype, description, tuple(aliases.split()), required)


_CUSTOMER_ID_ALIASES = (
    "customerid customer custid customerno customernumber customercode customerkey clientid "
    "client clientno clientnumber userid memberid membernumber buyerid accountid shopperid "
    "masterid"
)

#: Canonical columns of transaction lines (DESIGN.md, "Data contracts").
TRANSACTION_COLUMNS: dict[str, ColumnSpec] = {
    s.name: s
    for s in [
        _spec("customer_id", "id", "who bought", _CUSTOMER_ID_ALIASES, True),
        _spec(
            "invoice_id",
            "string",
            "the order or invoice a line belongs to (absent: each line is its own order)",
            "invoiceno invoice invoiceid invoicenumber invoicenr orderid order orderno "
            "ordernumber ordernr transactionid transaction transactionno receiptid receiptno "
            "receipt basketid billno documentno salesorder",
        ),
        _spec(
            "invoice_date",
            "timestamp",
            "when the purchase happened",
            "invoicedate orderdate date timestamp datetime transactiondate "
            "transactiondatetime purchasedate purchasedatetime saledate salesdate "
            "orderdatetime ordertime createdat orderedat purchasetime invoicedatetime "
            "dateoforder time",
            True,
        ),
        _spec(
            "quantity",
            "number",
            "units on the line (absent: 1)",
            "quantity qty units unitssold quantitysold itemcount numberofitems "
            "quantityordered qtyordered pieces",
        ),
        _spec(
            "unit_price",
            "number",
            "price of one unit (one of unit_price or amount is required)",
            "unitprice price priceeach itemprice priceperunit sellingprice saleprice",
        ),
        _spec(
            "amount",
            "number",
            "line value (absent: quantity x unit_price)",
            "amount sales revenue total totalamount totalprice linetotal lineamount value "
            "salesamount netsales totalsales totalvalue salesvalue grossamount netamount "
            "subtotal",
        ),
        _spec(
            "product_id",
            "string",
            "product code (SKU, stock code)",
            "stockcode sku product productid productcode productno itemid item itemcode "
            "itemno article articleid articleno articlenumber ean upc",
        ),
        _spec(
            "description",
            "string",
            "product name",
            "description productname itemname productdescription itemdescription "
            "articlename productdesc",
        ),
        _spec(
            "country",
            "string",
            "customer's country",
            "country countryname countrycode shipcountry billingcountry customercountry",
        ),
        _spec("channel", "string", "sales channel", "channel saleschannel orderchannel platform"),
        _spec(
            "category",
            "string",
            "product category",
            "category productcategory categoryname department productline",
        ),
    ]
}

#: Canonical columns of a customer-level table (FLO style, or precomputed RFM).
CUSTOMER_COLUMNS: dict[str, ColumnSpec] = {
    s.name: s
    for s in [
        _spec("customer_id", "id", "the customer", _CUSTOMER_ID_ALIASES, True),
        _spec(
            "first_purchase",
            "timestamp",
            "first order date",
            "firstorderdate firstpurchasedate firstpurchase firstorder firstdate "
            "firsttransactiondate customersince",
        ),
        _spec(
            "last_purchase",
            "timestamp",
            "last order date (or recency_days)",
            "lastorderdate lastpurchasedate lastpurchase lastorder lastdate lasttransactiondate",
        ),
        _spec("last_purchase_online", "timestamp", "last online order", "lastorderdateonline"),
        _spec("last_purchase_offline", "timestamp", "last offline order", "lastorderdateoffline"),
        _spec(
            "recency_days",
            "number",
            "days since the last order (or last_purchase)",
            "recency recencydays dayssincelastorder dayssincelastpurchase",
        ),
        _spec(
            "frequency",
            "number",
            "number of orders (or orders_online + orders_offline)",
            "frequency orders ordercount numorders numberoforders totalorders norders "
            "purchases numpurchases transactioncount",
        ),
        _spec(
            "orders_online",
            "number",
            "online orders",
            "ordernumtotaleveronline ordersonline onlineorders",
        ),
        _spec(
            "orders_offline",
            "number",
            "offline (store) orders",
            "ordernumtotaleveroffline ordersoffline offlineorders storeorders",
        ),
        _spec(
            "monetary",
            "number",
            "total spend (or value_online + value_offline)",
            "monetary monetaryvalue totalspent totalspend totalrevenue customervalue "
            "lifetimevalue revenue sales totalsales amount totalamount spend",
        ),
        _spec(
            "value_online",
            "number",
            "online spend",
            "customervaluetotaleveronline valueonline onlinevalue onlinespend onlinerevenue",
        ),
        _spec(
            "value_offline",
            "number",
            "offline (store) spend",
            "customervaluetotaleveroffline valueoffline offlinevalue offlinespend "
            "offlinerevenue storespend",
        ),
        _spec("tenure_days", "number", "days between first and last order", "tenure tenuredays"),
        _spec("first_channel", "string", "channel of the orders", "orderchannel firstchannel"),
        _spec(
            "last_channel", "string", "channel of the last order", "lastorderchannel lastchannel"
        ),
        _spec(
            "categories",
            "string",
            "categories bought, as a list such as [KADIN, ERKEK]",
            "interestedincategories12 interestedincategories categories interests",
        ),
        _spec("country", "string", "customer's country", "country countryname countrycode"),
    ]
}

_SCHEMAS: dict[str, dict[str, ColumnSpec]] = {
    "transactions": TRANSACTION_COLUMNS,
    "customers": CUSTOMER_COLUMNS,
}


def normalize_name(name: str) -> str:
    """Lower-case a column name and drop everything but letters and digits.

    ``"Customer ID"``, ``"customer_id"`` and ``"CustomerID"`` all become ``"customerid"``.
    """
    return re.sub(r"[^0-9a-z]", "", name.lower())


@dataclass
class Mapping:
    """Which source column became which canonical column, and how."""

    kind: Kind
    columns: dict[str, str]
    how: dict[str, str]
    notes: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form, in canonical column order."""
        rows = [
            {"canonical": c, "source": self.columns.get(c), "how": self.how[c]}
            for c in _SCHEMAS[self.kind]
            if c in self.how
        ]
        rows += [
            {"canonical": c, "source": None, "how": h}
            for c, h in self.how.items()
            if c not in _SCHEMAS[self.kind]
        ]
        return {"kind": self.kind, "columns": rows, "notes": self.notes, "unmapped": self.unmapped}


@dataclass
class Resolved:
    """A source in canonical columns: the lazy table plus the mapping that produced it."""

    table: ir.Table
    mapping: Mapping
    source: Source

    @property
    def kind(self) -> Kind:
        """``"transactions"`` (one row per line) or ``"customers"`` (one row per customer)."""
        return self.mapping.kind

    def has(self, column: str) -> bool:
        """Whether the canonical ``column`` exists (mapped or derived)."""
        return column in self.table.columns


def _auto_map(
    columns: list[str], schema: dict[str, ColumnSpec], explicit: dict[str, str]
) -> dict[str, str]:
    """Known aliases for every canonical column not mapped explicitly; a source column
    is used once."""
    taken = set(explicit.values())
    by_norm: dict[str, str] = {}
    for c in columns:
        by_norm.setdefault(normalize_name(c), c)
    found: dict[str, str] = dict(explicit)
    for spec in schema.values():
        if spec.name in found:
            continue
        for alias in spec.aliases:
            src = by_norm.get(alias)
            if src is not None and src not in taken:
                found[spec.name] = src
                taken.add(src)
                break
    return found


def _is_transactions(found: dict[str, str]) -> bool:
    return "invoice_date" in found and ("unit_price" in found or "amount" in found)


def _is_customers(found: dict[str, str]) -> bool:
    return (
        "customer_id" in found
        and ("last_purchase" in found or "recency_days" in found)
        and ("frequency" in found or {"orders_online", "orders_offline"} & found.keys())
        and ("monetary" in found or {"value_online", "value_offline"} & found.keys())
    )


def build_mapping(
    columns: list[str],
    explicit: dict[str, str] | None = None,
    kind: Kind | None = None,
    *,
    path: str = "the source",
) -> Mapping:
    """Map source columns to canonical ones: explicit entries first, then known aliases.

    Raises
    ------
    ConfigError
        An explicit entry names an unknown canonical column.
    MissingColumnError
        A required column is missing or an explicit entry names a column not in the file;
        the message lists the columns found and the closest names.
    """
    explicit = dict(explicit or {})
    if kind is not None and kind not in _SCHEMAS:
        raise ConfigError(f"unknown kind {kind!r}", hint="use 'transactions' or 'customers'")
    known = set(TRANSACTION_COLUMNS) | set(CUSTOMER_COLUMNS)
    for canonical, src in explicit.items():
        if canonical not in known and src in known:
            # the common slip: source=canonical, as a rename from the file's name reads
            raise ConfigError(
                f"mapping {canonical}={src} is the wrong way round: {src!r} is a canonical "
                f"column and {canonical!r} is not",
                hint=f"write the canonical name first: --map {src}={canonical} "
                f'(or {src} = "{canonical}" under [columns] in a mapping file)',
                code="unknown_canonical",
            )
        if canonical not in known:
            close = difflib.get_close_matches(canonical, sorted(known), n=1)
            raise ConfigError(
                f"mapping names unknown canonical column {canonical!r}",
                hint=(f"did you mean {close[0]!r}? " if close else "")
                + "canonical columns: "
                + ", ".join(sorted(known)),
                code="unknown_canonical",
            )
        if src not in columns:
            raise MissingColumnError(
                f"{path}: mapping {canonical}={src} names a column that is not in the file "
                f"(columns found: {', '.join(columns)})",
                hint=_closest_hint(src, columns),
            )
    _check_mapped_once(explicit)
    candidates: dict[str, dict[str, str]] = {}
    for k, schema in _SCHEMAS.items():
        mine = {c: s for c, s in explicit.items() if c in schema}
        candidates[k] = _auto_map(columns, schema, mine)
    if kind is None:
        if _is_transactions(candidates["transactions"]):
            kind = "transactions"
        elif _is_customers(candidates["customers"]):
            kind = "customers"
        elif explicit and set(explicit) <= set(CUSTOMER_COLUMNS) - set(TRANSACTION_COLUMNS):
            kind = "customers"
        else:
            kind = "transactions"
    found = candidates[kind]
    stray = {c for c in explicit if c not in _SCHEMAS[kind]}
    if stray:
        raise ConfigError(
            f"mapping names {', '.join(sorted(stray))}, which a {kind} table does not have",
            hint=f"{kind} columns: {', '.join(_SCHEMAS[kind])}",
        )
    _check_required(kind, found, columns, path)
    how = {c: ("explicit" if c in explicit else "auto") for c in found}
    used = set(found.values())
    return Mapping(
        kind=kind,
        columns=found,
        how=how,
        unmapped=[c for c in columns if c not in used],
    )


def _with_other_sheets(exc: MissingColumnError, details: dict[str, Any]) -> MissingColumnError:
    """A workbook's first sheet is often a cover or summary and the lines are on another:
    name the sheets not read, so the fix (``--sheet``) is in the hint, not only --map."""
    # only when the first sheet was read by default: after --sheet NAME the hint to read
    # another sheet answered a question the user had settled
    others = details.get("sheets_not_read") or []
    if not others:
        return exc
    listed = ", ".join(repr(s) for s in others)
    return MissingColumnError(
        exc.message,
        hint=f"the workbook has other sheets ({listed}): read one with --sheet NAME, or "
        f"--all-sheets; {exc.hint}"
        if exc.hint
        else "read another sheet with --sheet NAME",
        code=exc.code,
    )


#: A name pandas gives the second, third, ... column of a repeated name (``X.1``).
_PANDAS_RENAMED = re.compile(r"^(?P<name>.+)\.(?P<n>[1-9][0-9]*)$")


def _pandas_renamed(columns: list[str]) -> list[dict[str, Any]]:
    """Columns ``X.1``, ``X.2`` beside a column ``X``: how pandas names the repeats of a
    repeated column name, so a file written by pandas (``to_excel``, ``to_csv``) keeps
    the two columns under names of their own that still say they were one name."""
    position = {c: i + 1 for i, c in enumerate(columns)}
    groups: dict[str, list[str]] = {}
    for c in columns:
        match = _PANDAS_RENAMED.match(c)
        if match and match["name"] in position:
            groups.setdefault(match["name"], [match["name"]]).append(c)
    return [
        {"name": name, "positions": [position[c] for c in cols], "columns": cols, "pandas": True}
        for name, cols in groups.items()
    ]


def _same_names(columns: list[str], m: Mapping) -> list[dict[str, Any]]:
    """Columns whose names differ only in case, spaces or punctuation from a column
    auto-mapping took (``Quantity`` and ``quantity`` in a PostgreSQL table or a
    DataFrame, ``CustomerID`` and ``Customer ID``): auto-mapping took the first."""
    position = {c: i + 1 for i, c in enumerate(columns)}
    found = []
    for canonical, src in m.columns.items():
        if m.how.get(canonical) != "auto":
            continue
        same = [c for c in columns if normalize_name(c) == normalize_name(src)]
        if len(same) > 1:
            found.append(
                {
                    "name": src,
                    "positions": [position[c] for c in same],
                    "columns": same,
                    "same": True,
                }
            )
    return found


def _check_repeated_columns(source: Source, m: Mapping) -> None:
    """Refuse a column name written more than once in the source when auto-mapping would
    use one of those columns: which one holds the data is a guess (DuckDB reads the
    second ``X`` as ``X_1``, and ``X`` was taken without a word). A choice made with
    ``--map`` is kept, with a note; repeated names the mapping does not use are a warning
    and a note (``inspect`` shows the notes).

    Raises
    ------
    InputError
        Naming the file (and part or sheet), the name, its positions and the fixes.
    """
    groups = list(source.details.get("repeated_columns") or [])
    groups += _pandas_renamed(source.columns)
    groups += _same_names(source.columns, m)
    unused: dict[tuple[str, ...], list[str]] = {}
    for group in groups:
        members: list[str] = group["columns"]
        where = source.path + (f"/{group['part']}" if group.get("part") else "")
        if group.get("sheet"):
            where += f" (sheet {group['sheet']!r})"
        positions = ", ".join(str(p) for p in group["positions"][:-1])
        positions += f" and {group['positions'][-1]}"
        read_as = ", ".join(repr(c) for c in members[:-1]) + f" and {members[-1]!r}"
        if group.get("pandas"):
            what = (
                f"has columns {read_as} (columns {positions}): {members[-1]!r} is how "
                f"pandas names a second column called {group['name']!r}"
            )
        elif group.get("same"):
            what = (
                f"has columns {read_as} (columns {positions}), names that differ only in "
                "letter case, spaces or punctuation"
            )
        else:
            what = (
                f"has {len(members)} columns named {group['name']!r} (columns {positions}, "
                f"read as {read_as})"
            )
        used = {c: s for c, s in m.columns.items() if s in members}
        auto = [c for c in used if m.how.get(c) == "auto"]
        if auto:
            canonical = auto[0]
            choices = " or ".join(
                f"--map {canonical}={c} (column {p})"
                for c, p in zip(members, group["positions"], strict=True)
            )
            raise InputError(
                f"{where}: {what}, and {used[canonical]!r} would be used for {canonical}: "
                "which of them holds it is a guess",
                hint=f"rename the columns at the source so that each has its own name, or "
                f"choose one with {choices}",
                code="duplicate_column",
            )
        if used:
            for canonical, src in used.items():
                m.notes.append(f"{canonical}: {src!r} as mapped, although {where} {what}")
            continue
        key = (group["name"], *members)
        unused.setdefault(key, []).append(f"{where}: {what}")
    for places in unused.values():
        more = f" (and {len(places) - 1} more parts)" if len(places) > 1 else ""
        text = f"{places[0]}{more}; none of them is used"
        log.warning("%s", text)
        m.notes.append(text)


def _closest_hint(name: str, columns: list[str]) -> str:
    norm = {normalize_name(c): c for c in columns}
    close = difflib.get_close_matches(normalize_name(name), list(norm), n=3, cutoff=0.5)
    if close:
        return "closest columns: " + ", ".join(repr(norm[c]) for c in close)
    return "check the spelling, or map the column with --map canonical=source"


#: Roles one source column may fill together: a product's name is its only id in some
#: exports (``--map product_id=Description --map description=Description``).
_SHAREABLE_ROLES = frozenset({"product_id", "description"})


def _check_mapped_once(explicit: dict[str, str]) -> None:
    """Refuse one source column mapped to two roles: ``--map customer_id=X --map
    invoice_id=X`` made every customer's orders one and was taken without a word."""
    roles: dict[str, list[str]] = {}
    for canonical, src in explicit.items():
        roles.setdefault(src, []).append(canonical)
    for src, names in roles.items():
        if len(names) > 1 and not set(names) <= _SHAREABLE_ROLES:
            given = " and ".join(f"{name}={src}" for name in names)
            raise ConfigError(
                f"mapping {given} gives column {src!r} {len(names)} roles",
                hint="map each role to its own column (a role with no column can be left "
                "out: see `segmint inspect` for what each one defaults to)",
                code="column_mapped_twice",
            )


def _check_required(kind: str, found: dict[str, str], columns: list[str], path: str) -> None:
    schema = _SCHEMAS[kind]
    missing: list[str] = [c for c, s in schema.items() if s.required and c not in found]
    if kind == "transactions" and not {"unit_price", "amount"} & found.keys():
        missing.append("unit_price (or amount)")
    if kind == "customers":
        if not {"last_purchase", "recency_days"} & found.keys():
            missing.append("last_purchase (or recency_days)")
        if "frequency" not in found and not {"orders_online", "orders_offline"} & found.keys():
            missing.append("frequency (or orders_online/orders_offline)")
        if "monetary" not in found and not {"value_online", "value_offline"} & found.keys():
            missing.append("monetary (or value_online/value_offline)")
    if not missing:
        return
    first = missing[0].split(" ")[0]
    spec = schema[first]
    names = {normalize_name(c): c for c in columns if c not in found.values()}
    close = (
        difflib.get_close_matches(first.replace("_", ""), list(names), n=3, cutoff=0.4)
        or [n for n in names if any(a[:4] in n for a in spec.aliases[:6])][:3]
    )
    suggestion = ", ".join(repr(names[c]) for c in close)
    raise MissingColumnError(
        f"{path}: no column for {', '.join(missing)} in a {kind} table "
        f"(columns found: {', '.join(columns)})",
        hint=(f"closest: {suggestion}; " if suggestion else "")
        + f"map it explicitly, e.g. --map {first}=<column>",
    )


# ---------------------------------------------------------------- coercion


#: What is trimmed from both ends of text values: Python's ``string.whitespace``, the
#: characters ibis' ``strip()`` removes.
_BLANKS = " \t\n\r\x0b\x0c"


#: Text that spreadsheets, pandas, R and database exports write for "no value": a
#: customer id or a number written so is missing (a customer called "NULL" would
#: otherwise collect every line without an id). Exact spellings: a set lookup per value.
NULL_MARKERS = (
    "nan", "NaN", "NAN", "null", "NULL", "Null", "none", "None", "NONE",
    "n/a", "N/A", "#N/A", "NA", "<NA>", "NaT", "-", "(null)",
)  # fmt: skip


def _unmarked(s: ir.StringValue) -> ir.StringValue:
    """``s`` with the :data:`NULL_MARKERS` turned into missing values."""
    return ibis.ifelse(s.isin(NULL_MARKERS), ibis.null("string"), s)


def _text(col: ir.Value, plain: bool = False) -> ir.StringValue:
    """Text with surrounding blanks removed; empty text is missing.

    The trim runs only on values whose first or last character is a control character
    or a space (code <= 32, which includes every character ``strip()`` removes), so the
    result is the same as trimming every value. Testing the two ends costs a third of
    trimming: on a column of distinct values (invoice ids) 0.24 s against 0.84 s per
    10M lines, on every reading of the lines. ``plain=True`` says a scan has shown that
    no value of the column starts or ends with a blank (:func:`_may_need_trim`), so the
    value is used as it is (see :func:`resolve`).
    """
    s = col.cast("string")
    if plain:
        return s.nullif("")
    edge = (s.ascii_str() <= 32) | (s.right(1).ascii_str() <= 32)
    return edge.ifelse(s.strip(), s).nullif("")


@ibis.udf.scalar.builtin(name="array_extract")
def _char_at(value: str, index: int) -> str:  # type: ignore[empty-body]
    """DuckDB's ``value[index]``: one character (a code point, not a grapheme cluster) of
    text; ``-1`` is the last one."""


def _may_need_trim(col: ir.Value) -> ir.BooleanValue:
    """True for a text value that may start or end with a blank (never False for one that
    does): ``value < "!"`` is true exactly when the first byte is below ``!`` (code 33)
    or the value is empty, and the same test of the last character covers the end.

    One comparison of the last character replaced one ``ends_with`` per blank: the check
    of the four text columns of 10M Parquet lines took 0.43 s instead of 0.79 s (each
    ``ends_with`` about 0.1 s). DuckDB only (the scan runs only there): its binary string
    order, and ``value[-1]`` by code point; ``reverse()`` would be as fast but reverses
    grapheme clusters, which can hide a final blank behind a prepended mark."""
    s = col.cast("string")
    return (s < "!") | (_char_at(s, -1) < "!")


def _whole_ids(col: ir.Value) -> ir.BooleanValue:
    """True for a float customer id written as an integer (``17850.0`` -> ``17850``)."""
    return (col == col.floor()) & (col.abs() < 2**53)


def _customer_id(col: ir.Value, plain: bool = False) -> ir.StringValue:
    """Customer ids as text; ``17850.0`` (spreadsheets, float columns) and ``17850,0``
    (the same from a decimal-comma export) become ``17850``.

    ``plain``: for text, as for :func:`_text`; for a float column, a scan has shown every
    id is whole (:func:`_whole_ids`), so the per-value test is left out (10M lines: 0.15 s
    against 0.23 s per reading)."""
    dtype = col.type()
    if dtype.is_integer():
        return col.cast("string")
    if dtype.is_floating():
        if plain:
            return col.cast("int64").cast("string")
        return ibis.ifelse(_whole_ids(col), col.cast("int64").cast("string"), col.cast("string"))
    s = _unmarked(_text(col, plain))
    # the regular expression runs only on values that can need it (fast path); an
    # extraction, not a replacement with a back-reference, which engines spell
    # differently (Spark's Java regexes read "\1" as a literal "1": every id became "1")
    # ``12347,0``: a float id from a decimal-comma export (pandas ``decimal=","``, a
    # European Excel); one or two zeros only, as ``1,000`` may group thousands
    maybe = s.endswith("0") & (s.contains(".") | s.contains(","))
    whole = s.re_extract(r"^(-?[0-9]+)(\.0+|,00?)$", 1)
    # nested, so the expression runs only where ``maybe`` holds (no match: "" or missing)
    return ibis.ifelse(maybe, ibis.ifelse(whole.notnull() & (whole != ""), whole, s), s)


#: A number in Excel's scientific notation (``1.23457E+11``): how Excel writes a number
#: of 12 or more digits in a "General" cell to CSV, rounded to 6 significant digits.
_SCIENTIFIC = r"^[+-]?[0-9]([.,][0-9]+)?[Ee]\+[0-9]+$"


def _scientific_id(s: ir.StringValue) -> ir.BooleanValue:
    """Whether a text id is a number in scientific notation (the regular expression runs
    only on values with an ``E+``: ids are read on every line)."""
    maybe = s.contains("E+") | s.contains("e+")
    return ibis.ifelse(maybe, s.re_search(_SCIENTIFIC), False)


def _refuse_scientific_ids(source: Source, m: Mapping, src: str, count: int) -> None:
    """Stop on customer ids such as ``1.23457E+11``: Excel rounded long ids to 6 digits
    when it saved the CSV, so different customers share one text and were silently
    merged into one (their recency, frequency and segment with them). No reading can
    recover the digits; only a new export can."""
    canonical = next((k for k, v in m.columns.items() if v == src), "customer_id")
    row, value = _example(source, src, _scientific_id(_text(source.table[src])))
    ids = "1 id" if count == 1 else f"{count:,} ids"
    raise ParseError(
        f"{source.path}: column {src!r} ({canonical}) has {ids} in scientific "
        f"notation, e.g. {value!r} in {source.where(row)}: a spreadsheet rounded them when "
        "it saved the file (1.23457E+11 stands for every id from 123456500000 to "
        "123457499999), so different customers would be merged",
        hint=f"export the file again with the column {src!r} formatted as text (or as a "
        "number with 0 decimals), or map another id column with --map customer_id=<column>",
        code="rounded_ids",
        file=source.path,
        column=src,
        row=row,
    )


#: Hidden column of the canonical table: the customer id as an integer, present
#: only when every id is a whole number stored as a number (an integer column, or a float
#: column a scan has shown to hold whole numbers only), so that ``customer_id`` is exactly
#: its text. Cleaning and features group and hash customers by it: grouping on an integer
#: instead of text (and not turning every line's id into text first) made load+clean+
#: features on 10M lines about 1.7 s faster (benchmarks/README.md). Like ``_row``, it is
#: left out of every table segmint writes for users.
CUSTOMER_KEY = "_cid"


def _customer_key(col: ir.Value, plain: bool) -> ir.IntegerValue | None:
    """The integer behind ``customer_id`` (:data:`CUSTOMER_KEY`), or None for text ids
    and for float ids not shown to be whole."""
    dtype = col.type()
    if dtype.is_integer():
        return col  # as it is: an unsigned 64-bit id may not fit a signed one
    if dtype.is_floating() and plain:
        return col.cast("int64")  # whole and below 2**53 (the scan checked)
    return None


def customer_key(t: ir.Table) -> str:
    """The column to group customers of ``t`` by: :data:`CUSTOMER_KEY` when ``t`` has it,
    else ``customer_id``. Its text form is always ``customer_id``."""
    return CUSTOMER_KEY if CUSTOMER_KEY in t.columns else "customer_id"


def public_columns(t: ir.Table) -> list[str]:
    """The columns of a canonical table without segmint's hidden ones (``_row``, the
    customer key)."""
    return [c for c in t.columns if c not in ("_row", CUSTOMER_KEY)]


_DATE_RE = (
    r"^(\d{1,4})[/.\-](\d{1,2})[/.\-](\d{1,4})"
    r"(?:[ T]+(\d{1,2}):(\d{2})(?::(\d{2}))?(?:[.,]\d+)?\s*([AaPp][Mm])?)?$"
)
#: :data:`_DATE_RE` for dates whose first field is a four-digit year (``2010/12/01``).
_YEAR_FIRST_RE = r"^(\d{4})" + _DATE_RE.removeprefix(r"^(\d{1,4})")
_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_FORMAT_TOKENS = {
    "%Y": (r"(\d{4})", "year"),
    "%y": (r"(\d{2})", "year"),
    "%m": (r"(\d{1,2})", "month"),
    "%d": (r"(\d{1,2})", "day"),
    "%H": (r"(\d{1,2})", "hour"),
    "%I": (r"(\d{1,2})", "hour"),
    "%M": (r"(\d{1,2})", "minute"),
    "%S": (r"(\d{1,2})", "second"),
    "%p": (r"([AaPp][Mm])", "ampm"),
    "%b": (r"([A-Za-z]{3})[A-Za-z]*", "monthname"),
    "%B": (r"([A-Za-z]{3})[A-Za-z]*", "monthname"),
}


def _compile_format(fmt: str) -> tuple[str, list[str]]:
    """strftime-style format -> (regex, field names in group order)."""
    pattern, fields, i = "^", [], 0
    while i < len(fmt):
        token = fmt[i : i + 2]
        if token in _FORMAT_TOKENS:
            rx, name = _FORMAT_TOKENS[token]
            pattern += rx
            fields.append(name)
            i += 2
        elif token == "%f":
            pattern += r"\d+"
            i += 2
        elif token == "%%":
            pattern += "%"
            i += 2
        elif fmt[i] == "%":
            raise ConfigError(
                f"date format {fmt!r}: unsupported directive {token!r}",
                hint="use %Y %y %m %d %H %I %M %S %p %b %f and literal characters",
            )
        else:
            pattern += r"\s+" if fmt[i] == " " else re.escape(fmt[i])
            i += 1
    return pattern + r"\s*$", fields


#: What PostgreSQL's casts accept, as regular expressions (see _try_cast).
_PG_CASTABLE = {
    "float64": r"^\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]{1,3})?\s*$",
    "int64": r"^\s*[+-]?[0-9]{1,18}\s*$",
    "timestamp": r"^\s*[0-9]{4}-(0?[1-9]|1[0-2])-(0?[1-9]|[12][0-9]|3[01])"
    r"([ T]([01]?[0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?)?\s*$",
}


def _try_cast(
    s: ir.StringValue, to: str, *, valid: ir.BooleanValue | None = None, digits: bool = False
) -> ir.Value:
    """``s.try_cast(to)`` (NULL when the text is not a ``to``) on every engine.

    ibis compiles ``try_cast`` to a plain ``CAST`` on PostgreSQL, where one bad value fails
    the whole query; there the cast runs only on text that matches what PostgreSQL
    accepts (``_PG_CASTABLE``), so a bad value becomes NULL as it does on DuckDB and
    Spark. Text segmint built itself needs no such check: ``digits`` (a regular-expression
    group of digits, or NULL) casts as it is, and ``valid`` alone (e.g. the day exists in
    that month) guards a timestamp assembled from checked parts. PostgreSQL does not share
    repeated sub-expressions, so every check avoided here is saved many times per line.
    An ISO timestamp naming a day that does not exist (2011-02-30) still fails the query
    on PostgreSQL, with its error.
    """
    try:
        engine = s._find_backend().name
    except Exception:  # noqa: BLE001 - an unbound expression: the generic form
        engine = None
    if engine != "postgres":
        return s.try_cast(to)
    if digits:
        return s.cast(to)
    guard = valid if valid is not None else s.re_search(_PG_CASTABLE[to])
    return ibis.ifelse(guard, s.cast(to), ibis.null(to))


def _days_in_month(year: ir.IntegerValue, month: ir.IntegerValue) -> ir.IntegerValue:
    leap = ((year % 4 == 0) & (year % 100 != 0)) | (year % 400 == 0)
    return ibis.cases(
        (month == 2, ibis.ifelse(leap, 29, 28)),
        (month.isin([4, 6, 9, 11]), 30),
        else_=31,
    )


def _parts_to_timestamp(s: ir.StringValue, pattern: str, fields: list[str]) -> ir.TimestampValue:
    def part(name: str) -> ir.Value | None:
        if name not in fields:
            return None
        return s.re_extract(pattern, fields.index(name) + 1).nullif("")

    def num(name: str, default: int) -> ir.IntegerValue:
        p = part(name)
        if p is None:
            return ibis.literal(default)
        return _try_cast(p, "int64", digits=True).fill_null(default)

    year = num("year", 0)
    year = year + ibis.ifelse(year < 100, ibis.ifelse(year < 69, 2000, 1900), 0)
    if "monthname" in fields:
        low = part("monthname").lower()
        month = ibis.cases(*[(low == m, i + 1) for i, m in enumerate(_MONTHS)], else_=0)
    else:
        month = num("month", 0)
    hour = num("hour", 0)
    ampm = part("ampm")
    if ampm is not None:
        pm = ampm.upper() == "PM"
        hour = ibis.ifelse(pm & (hour < 12), hour + 12, ibis.ifelse(~pm & (hour == 12), 0, hour))
        hour = hour.fill_null(num("hour", 0))

    def pad(v: ir.IntegerValue, n: int) -> ir.StringValue:
        return v.cast("string").lpad(n, "0")

    day, minute, second = num("day", 0), num("minute", 0), num("second", 0)
    iso = (
        pad(year, 4)
        + "-"
        + pad(month, 2)
        + "-"
        + pad(day, 2)
        + " "
        + pad(hour, 2)
        + ":"
        + pad(minute, 2)
        + ":"
        + pad(second, 2)
    )
    matched = s.re_search(pattern)
    valid = (
        month.between(1, 12)
        & (day >= 1)
        & (day <= _days_in_month(year, month))
        & hour.between(0, 23)
        & minute.between(0, 59)
        & second.between(0, 59)
    )
    parsed = _try_cast(iso, "timestamp", valid=valid)
    return ibis.ifelse(matched, parsed, ibis.null("timestamp"))


def _order_fields(order: str) -> list[str]:
    letters = {"y": "year", "m": "month", "d": "day"}
    return [letters[c] for c in order] + ["hour", "minute", "second", "ampm"]


#: Day 0 of Excel's serial dates (the 1900 system, after its 1900-02-29 quirk).
_EXCEL_EPOCH = datetime.datetime(1899, 12, 30)
_UNIX_EPOCH = datetime.datetime(1970, 1, 1)
#: Numbers a date column holds, by size: Unix seconds and milliseconds, read as such
#: between these bounds (1973 to 2286); Excel's serial days end at 2958465 (9999-12-31).
_UNIX_RANGES = {"unix_s": (1e8, 1e10), "unix_ms": (1e11, 1e13)}
#: A column is taken for Unix time only if every value is from 1990 on and none is later
#: than tomorrow: 2010120108 (yyyymmddHH) is "2033" in seconds, 201012010830 "1976" in
#: milliseconds; such numbers are refused with the --date-format hint as before.
_UNIX_FIRST_YEAR_SECONDS = 631_152_000  # 1990-01-01


@ibis.udf.scalar.builtin(name="timezone")
def _local_time(zone: str, instant: dt.Timestamp(timezone="UTC")) -> dt.Timestamp():  # type: ignore[empty-body]
    """The wall time in ``zone`` of an instant: ``timezone(zone, timestamptz)``, the same
    function in DuckDB (its bundled ICU, no download) and PostgreSQL."""


@ibis.udf.scalar.builtin(name="from_utc_timestamp")
def _spark_local_time(instant: dt.Timestamp(), zone: str) -> dt.Timestamp():  # type: ignore[empty-body]
    """Spark's spelling of :func:`_local_time`: ``from_utc_timestamp(ts, zone)`` shifts
    an instant to its wall time in ``zone`` (daylight saving included). Spark keeps
    instants as its session-zone ``TIMESTAMP``, which segmint's sessions set to UTC."""


def date_expression(
    col: ir.Value,
    how: str,
    plain: bool = False,
    zone: str | None = None,
    *,
    instant: bool = False,
    engine: str = "duckdb",
) -> ir.TimestampValue:
    """A timestamp expression for ``col`` parsed the way ``how`` says.

    ``how`` is ``"native"`` (already a date type), ``"excel"`` (serial day numbers),
    ``"iso"`` (cast), ``"ymd"``, ``"dmy"``,
    ``"mdy"`` (the usual layouts with ``/``, ``.`` or ``-``, optional time and AM/PM),
    or a strftime format such as ``"%d.%m.%Y %H:%M"``. ``plain``: as for :func:`_text`.
    ``zone``: an IANA time zone; a native column that carries a zone (an instant) is
    read as the wall time there rather than in UTC, so that its dates are the shop's
    local days (a 9:00 sale in Sydney is 22:00 of the day before in UTC). Columns
    without a zone are local times already and are left as they are. ``instant``: the
    column holds instants although its type names no zone (Spark's ``TIMESTAMP``, see
    :attr:`segmint.io.Source.instants`). ``engine``: the ibis backend's name, which
    says how the conversion is spelt (``"pyspark"``: ``from_utc_timestamp``).
    """
    if how == "native":
        dtype = col.type()
        zoned = dtype.is_timestamp() and (instant or dtype.timezone is not None)
        if zone is not None and zoned and engine == "pyspark":
            return _spark_local_time(col, zone).cast("timestamp")
        if zone is not None and zoned:
            if dtype.timezone != "UTC":
                col = col.cast(dt.Timestamp(timezone="UTC", scale=dtype.scale))
            return _local_time(zone, col).cast("timestamp")
        return col.cast("timestamp")
    if "%" in how and col.type().is_floating():
        # a spreadsheet keeps 20101201 as the float 20101201.0: its digits, not ".0"
        whole = ibis.ifelse(col == col.floor(), col.cast("int64").cast("string"), None)
        return _parts_to_timestamp(whole, *_compile_format(how))
    if how == "excel":
        # Excel's serial day numbers: days since 1899-12-30, the fraction is the time
        # (1 = 1899-12-31, 2958465 = 9999-12-31)
        day = col.cast("float64")
        seconds = (day * 86400).round().cast("int64")
        stamp = ibis.literal(_EXCEL_EPOCH, type="timestamp") + seconds.as_interval("s")
        return ibis.ifelse((day >= 1) & (day < 2958466), stamp, ibis.null("timestamp"))
    if how in _UNIX_RANGES:
        # Unix time (seconds or milliseconds since 1970-01-01 UTC): instants, read as the
        # wall time in --timezone when one is given, else as UTC
        value = col.cast("float64")
        lo, hi = _UNIX_RANGES[how]
        seconds = (value / (1000 if how == "unix_ms" else 1)).round().cast("int64")
        if zone is not None and engine != "pyspark":
            utc = ibis.literal(_UNIX_EPOCH, type=dt.Timestamp(timezone="UTC"))
            stamp = _local_time(zone, utc + seconds.as_interval("s")).cast("timestamp")
        else:
            stamp = ibis.literal(_UNIX_EPOCH, type="timestamp") + seconds.as_interval("s")
            if zone is not None:
                stamp = _spark_local_time(stamp, zone).cast("timestamp")
        return ibis.ifelse((value >= lo) & (value < hi), stamp, ibis.null("timestamp"))
    s = _text(col, plain)
    if how == "iso":
        return _try_cast(s, "timestamp")
    if how in {"ymd", "dmy", "mdy"}:
        # a date with a four-digit year first (ISO, 2010/12/01) among day/month/year text,
        # e.g. a real date cell in a spreadsheet column of text dates, or parts of a folder
        # written by two systems, is unambiguous: read it too
        parsed = _parts_to_timestamp(s, _DATE_RE, _order_fields(how))
        if how != "ymd":
            parsed = parsed.fill_null(_parts_to_timestamp(s, _YEAR_FIRST_RE, _order_fields("ymd")))
        return parsed.fill_null(_try_cast(s, "timestamp"))
    pattern, fields = _compile_format(how)
    return _parts_to_timestamp(s, pattern, fields)


#: "1.234,56": dots grouping thousands before a decimal comma (European spreadsheets).
_THOUSANDS_DOT = r"^[+-]?[1-9]\d{0,2}(\.\d{3})+(,\d*)?$"
#: "1,234.56": commas grouping thousands before a decimal point (UK/US spreadsheets).
_THOUSANDS_COMMA = r"^[+-]?[1-9]\d{0,2}(,\d{3})+(\.\d*)?$"


#: "1 234,56", "1 234.56" (a space, no-break space or narrow no-break space grouping
#: thousands: French, Nordic and SI spreadsheets) and "1'234.50" (Swiss).
_THOUSANDS_SPACE = "^[+-]?[1-9][0-9]{0,2}([ \u00a0\u202f'][0-9]{3})+([.,][0-9]*)?$"


def _ungrouped(s: ir.StringValue) -> ir.StringValue:
    """``s`` without the spaces or apostrophes that group its thousands (never a decimal
    separator, so in any mode): such numbers were refused as "not numbers"."""
    bare = s.replace(" ", "").replace("\u00a0", "").replace("\u202f", "").replace("'", "")
    return ibis.ifelse(s.re_search(_THOUSANDS_SPACE), bare, s)


def _number_cast(s: ir.StringValue, mode: str) -> ir.FloatingValue:
    """The number of the text ``s`` in ``mode``, its thousands groups (spaces,
    apostrophes) read too. The groups are looked for only where the plain cast fails:
    a value that casts has none, and a regular expression on every value of every
    number column made cleaning about 30 % slower (2M lines: 4.5 -> 6.0 CPU seconds)."""
    plain = _try_cast(_number_text(s, mode), "float64")
    return plain.coalesce(_try_cast(_number_text(_ungrouped(s), mode), "float64"))


def _number_text(s: ir.StringValue, mode: str) -> ir.StringValue:
    """The text of a number in ``mode`` rewritten for a plain cast: ``"plain"`` as it is,
    ``"comma"`` (decimal comma; dots only as thousands groups), ``"thousands_comma"``
    (decimal point; commas only as thousands groups)."""
    if mode == "comma":
        return ibis.ifelse(s.re_search(_THOUSANDS_DOT), s.replace(".", ""), s).replace(",", ".")
    if mode == "thousands_comma":
        return ibis.ifelse(s.re_search(_THOUSANDS_COMMA), s.replace(",", ""), s)
    return s


def _number_expression(col: ir.Value, mode: str, plain: bool = False) -> ir.FloatingValue:
    if col.type().is_numeric() or col.type().is_boolean():
        return col.cast("float64")
    return _number_cast(_unmarked(_text(col, plain)), mode)


# ---------------------------------------------------------------- resolve


def resolve(
    source: Source,
    mapping: dict[str, str] | None = None,
    *,
    kind: Kind | None = None,
    date_format: str | None = None,
    dayfirst: bool | None = None,
    max_bad_date_share: float = 0.5,
    timezone: str | None = None,
) -> Resolved:
    """Map a source to canonical columns and coerce their types, with clear errors.

    Parameters
    ----------
    source : Source
        From :func:`segmint.io.read_source`.
    mapping : dict, optional
        Explicit ``{canonical: source_column}`` entries; they win over auto-mapping.
    kind : {"transactions", "customers"}, optional
        Force the table kind instead of recognising it from the columns.
    date_format : str, optional
        strftime-style format for every date column (``"%d/%m/%Y %H:%M"``).
    dayfirst : bool, optional
        Resolve ``01/02/2011``-style dates as day first (True) or month first (False)
        when the data cannot tell.
    max_bad_date_share : float
        Above this share of unparseable dates in a column, fail instead of letting the
        ``unparseable_date`` cleaning rule drop the rows.
    timezone : str, optional
        IANA zone (``"Europe/Amsterdam"``) whose local time date columns that carry a
        zone are read as; default UTC. Text dates are taken as written.

    Returns
    -------
    Resolved

    Raises
    ------
    MissingColumnError, ParseError, ConfigError
    """
    if timezone is not None:
        hint = timezone_hint(timezone) if isinstance(timezone, str) else "give it as text"
        if hint is not None:
            raise ConfigError(f"unknown time zone {timezone!r} (timezone)", hint=hint)
    if mapping is not None and not isinstance(mapping, dict):
        raise WrongTypeError(
            f"mapping is a {type(mapping).__name__}, not a dict of canonical column to "
            "source column",
            hint='e.g. resolve(source, {"customer_id": "Kunde", "invoice_date": "Datum"})',
        )
    try:
        m = build_mapping(source.columns, mapping, kind, path=source.path)
    except MissingColumnError as exc:
        raise _with_other_sheets(exc, source.details) from None
    _check_repeated_columns(source, m)
    t = source.table
    schema = _SCHEMAS[m.kind]
    numeric = [c for c in m.columns if schema[c].dtype == "number"]
    dates = [c for c in m.columns if schema[c].dtype == "timestamp"]
    # columnar sources on DuckDB (also the Parquet copy of a large text file) are read
    # again by every later query (cleaning, audit, features), so the same scan also finds
    # the columns that can be read as they are: text with no value to trim, a float id
    # column of whole numbers only; other text sources are parsed once and their coerced
    # lines stored, so there it would not pay
    ids = m.columns.get("customer_id")
    plain_check: list[str] = []
    if source.con.name == "duckdb" and source.columnar:
        plain_check = list(dict.fromkeys(c for c in m.columns.values() if t[c].type().is_string()))
        if ids is not None and t[ids].type().is_floating():
            plain_check.append(ids)  # checked for whole numbers instead
    # a text file's values with a line break: the sign of a quote opened and closed only
    # on a later line, which joins every line between into one value (see _note_breaks)
    breaks: list[str] = []
    if (
        _CHECK_LINE_BREAKS
        and source.con.name == "duckdb"
        and source.details.get("delimiter") is not None
    ):
        breaks = list(
            dict.fromkeys(
                src
                for c, src in m.columns.items()
                if schema[c].dtype in {"id", "string"} and t[src].type().is_string()
            )
        )
    stats = _profile_columns(source, m, numeric, dates, plain_check, ids, breaks)
    _note_breaks(source, m, breaks, stats)
    if stats.get("ids__scientific"):
        _refuse_scientific_ids(source, m, ids, stats["ids__scientific"])
    plain = {c for i, c in enumerate(plain_check) if not stats.get(f"plain__{i}")}
    exprs: dict[str, ir.Value] = {}
    date_how: dict[str, str] = {}
    for canonical, src in m.columns.items():
        col, dtype = t[src], schema[canonical].dtype
        if dtype == "id":
            exprs[canonical] = _customer_id(col, src in plain)
        elif dtype == "string":
            exprs[canonical] = _text(col, src in plain)
        elif dtype == "number":
            mode = _decide_number(source, m, canonical, src, stats)
            exprs[canonical] = _number_expression(col, mode, src in plain)
            _check_magnitude(source, canonical, src, exprs[canonical], stats)
        else:
            how = _decide_date(source, canonical, src, stats, date_format, dayfirst)
            if how not in {"native", "iso"}:
                m.notes.append(f"{canonical}: dates read as {_describe_how(how)}")
            date_how[canonical] = how
            instant = src in source.instants
            exprs[canonical] = date_expression(
                col, how, src in plain, timezone, instant=instant, engine=source.con.name
            )
            if timezone is not None and how == "native" and col.type().is_timestamp():
                if instant or col.type().timezone is not None:
                    m.notes.append(f"{canonical}: instants read as local time in {timezone}")
    if m.kind == "transactions":
        _derive_transaction_columns(m, exprs, t)
    else:
        _note_channel_totals(m)
    for canonical, how in date_how.items():
        all_iso = stats.get(f"{canonical}__iso") == stats.get(f"{canonical}__present")
        if how == "native" or (how == "iso" and all_iso):
            continue  # the profile already showed every value parses
        _check_dates(source, m, canonical, how, max_bad_date_share)
    hidden: dict[str, ir.Value] = {"_row": t._row}
    if ids is not None:
        key = _customer_key(t[ids], ids in plain)
        if key is not None:
            hidden[CUSTOMER_KEY] = key
    table = t.select(**exprs, **hidden)
    return Resolved(table=table, mapping=m, source=source)


def _derive_transaction_columns(m: Mapping, exprs: dict[str, ir.Value], t: ir.Table) -> None:
    if "invoice_id" not in exprs:
        exprs["invoice_id"] = "L" + t._row.cast("string")
        m.how["invoice_id"] = "derived"
        m.notes.append("invoice_id: no order column, so each line is its own order")
    # A refund in a file without a quantity, or with the units as a positive count, is
    # written as negative money: it becomes a return (negative quantity, positive price)
    # as in UCI-style lines, not a "non-positive price" dropped with its value still in
    # the customer's monetary.
    if "quantity" not in exprs:
        money = exprs["amount"] if "amount" in exprs else exprs["unit_price"]
        exprs["quantity"] = ibis.ifelse(money < 0, -1.0, 1.0)
        if "unit_price" in exprs:
            # a price as negative as its amount is the refund's; a negative price beside a
            # positive amount contradicts it and stays for the price rule to drop
            price = exprs["unit_price"]
            exprs["unit_price"] = ibis.ifelse((price < 0) & (money < 0), -price, price)
        m.how["quantity"] = "default"
        m.notes.append(
            "quantity: no quantity column, so every line counts 1 unit (a negative amount: "
            "1 unit returned)"
        )
    if "amount" not in exprs:
        exprs["amount"] = exprs["quantity"] * exprs["unit_price"]
        m.how["amount"] = "derived"
        m.notes.append("amount: computed as quantity x unit_price")
    elif "unit_price" not in exprs:
        q, amount = exprs["quantity"], exprs["amount"]
        exprs["quantity"] = ibis.ifelse((amount < 0) & (q > 0), -q, q)
        exprs["unit_price"] = ibis.ifelse(q != 0, amount.abs() / q.abs(), amount.abs())
        m.how["unit_price"] = "derived"
        m.notes.append(
            "unit_price: computed as |amount| / |quantity| (a negative amount is a return)"
        )
    order = list(TRANSACTION_COLUMNS)
    ordered = {c: exprs[c] for c in order if c in exprs}
    exprs.clear()
    exprs.update(ordered)


#: Project the profile's texts first on Spark (see :func:`_profile_columns`); off only
#: to measure what it saves (benchmarks/spark.py).
_SHARED_PROFILE_TEXTS = True

#: Whether the profile scan of a DuckDB text source counts values with a line break
#: (_note_breaks). Always on; benchmarks/load_clean.py --line-breaks-ab turns it off in
#: one child to measure what it costs.
_CHECK_LINE_BREAKS = True


def _profile_columns(
    source: Source,
    m: Mapping,
    numeric: list[str],
    dates: list[str],
    plain_check: Sequence[str] = (),
    ids: str | None = None,
    breaks: Sequence[str] = (),
) -> dict[str, Any]:
    """One scan over the source: parse failures of numbers, the shape of date strings,
    for each ``plain_check`` column whether it must be coerced value by value
    (``plain__<i>``: a text value may need trimming, or a float customer id is not whole),
    and for each ``breaks`` column how many values hold a line break (``breaks__<i>``).

    The check makes the text columns of a clean Parquet file cost nothing on each later
    reading: at 10M lines it took 0.78 s once, and load + clean + features went from
    9.5 s to 6.0 s (benchmarks/README.md)."""
    t = source.table
    # on Spark the texts the checks read (and the date's regex groups) are projected
    # first, so each is computed once per line: inlined, Spark evaluated each as often as
    # the checks name it (the plan of this one query printed 488,000 characters), and
    # the profile of the Online Retail CSV took 51 s instead of 13 s on local[2]
    # (benchmarks/spark.py). DuckDB shares repeated sub-expressions itself.
    shared = source.con.name == "pyspark" and _SHARED_PROFILE_TEXTS
    texts: dict[str, ir.StringValue] = {}
    if ids is not None and t[ids].type().is_string():
        texts["id"] = _text(t[ids])
    for c in numeric:
        if t[m.columns[c]].type().is_string():
            texts[f"n:{c}"] = _unmarked(_text(t[m.columns[c]]))
    for c in dates:
        if t[m.columns[c]].type().is_string():
            texts[f"d:{c}"] = _text(t[m.columns[c]])
    if shared and texts:
        t = t.mutate(**{f"_segmint_t{i}": v for i, v in enumerate(texts.values())})
        texts = {k: t[f"_segmint_t{i}"] for i, k in enumerate(texts)}
        groups = {}
        for i, c in enumerate(dates):
            if f"d:{c}" in texts:
                s = texts[f"d:{c}"]
                matched = s.re_search(_DATE_RE)
                groups[f"_segmint_m{i}"] = matched
                for g in (1, 2):
                    groups[f"_segmint_g{i}_{g}"] = ibis.ifelse(
                        matched, s.re_extract(_DATE_RE, g), ibis.null("string")
                    )
        if groups:
            t = t.mutate(**groups)
            texts = {k: t[f"_segmint_t{i}"] for i, k in enumerate(texts)}
    aggs: dict[str, ir.Value] = {}
    if ids is not None and t[ids].type().is_string():
        aggs["ids__scientific"] = _scientific_id(texts["id"]).sum()
    for i, c in enumerate(plain_check):
        col = t[c]
        if col.type().is_floating():  # a float customer id: any value not whole?
            aggs[f"plain__{i}"] = (col.notnull() & ~_whole_ids(col)).any()
        else:
            aggs[f"plain__{i}"] = _may_need_trim(col).any()
    for i, c in enumerate(breaks):
        aggs[f"breaks__{i}"] = t[c].contains("\n").sum()
    for c in numeric:
        col = t[m.columns[c]]
        if col.type().is_string():
            s = texts[f"n:{c}"]
            aggs[f"{c}__present"] = s.notnull().sum()
            for mode in _NUMBER_MODES:
                bad = _number_cast(s, mode).isnull()
                aggs[f"{c}__bad_{mode}"] = (s.notnull() & bad).sum()
            aggs[f"{c}__absmax"] = _number_cast(s, "plain").abs().max()
            aggs[f"{c}__dotted"] = s.contains(".").sum()
            aggs[f"{c}__grouped"] = s.re_search(_THOUSANDS_DOT).sum()
            aggs[f"{c}__commas"] = s.contains(",").sum()
            aggs[f"{c}__grouped_comma"] = s.re_search(_THOUSANDS_COMMA).sum()
        elif col.type().is_numeric():
            aggs[f"{c}__absmax"] = col.cast("float64").abs().max()
    for c in dates:
        col = t[m.columns[c]]
        if not col.type().is_string():
            continue
        s = texts[f"d:{c}"]
        matched = s.re_search(_DATE_RE)

        def grp(i: int, s: ir.StringValue = s, matched: ir.Value = matched) -> ir.Value:
            return ibis.ifelse(matched, s.re_extract(_DATE_RE, i), ibis.null("string"))

        if shared:
            j = dates.index(c)
            matched = t[f"_segmint_m{j}"]

            def grp(i: int, j: int = j) -> ir.Value:  # noqa: F811
                return t[f"_segmint_g{j}_{i}"]

        aggs[f"{c}__present"] = s.notnull().sum()
        aggs[f"{c}__iso"] = _try_cast(s, "timestamp").notnull().sum()
        aggs[f"{c}__matched"] = matched.sum()
        # the day/month order is read from values whose first field is not a year: one
        # ISO date among "12/13/2010" text made 2010 the largest "day" (read day-first)
        short = grp(1).length() != 4
        aggs[f"{c}__p1_max"] = _try_cast(grp(1), "int64").max(where=short)
        aggs[f"{c}__p2_max"] = _try_cast(grp(2), "int64").max(where=short)
        aggs[f"{c}__p1_year"] = (grp(1).length() == 4).sum()
        # day/month/year values not written with dots (01.12.2010 is day-first wherever
        # dots are used): none, and an order the values leave open is read day-first
        aggs[f"{c}__undotted"] = (short & (s.substr(grp(1).length(), 1) != ".")).sum()
    if not aggs:
        return {}
    with translate_errors(source.path, encoding=source.details.get("encoding")):
        row = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    return {k: (v or 0) for k, v in row.items()}


def _note_breaks(source: Source, m: Mapping, breaks: Sequence[str], stats: dict[str, Any]) -> None:
    """Warn when values of a text file's mapped text columns span several lines.

    A value that opens a quote by mistake (``"WHITE HEART`` in a description) and a later
    line that closes one (``BIG MUG"``) make one valid quoted value of every line between:
    those lines are not read as lines of their own, so their customers and revenue were
    gone with the input count agreeing. DuckDB and pandas parse the file the same way (it
    is valid CSV), so this cannot be refused; the warning names the column, the first row
    and how many lines of the file were taken into values, so a user can check."""
    for i, src in enumerate(breaks):
        n = stats.get(f"breaks__{i}", 0)
        if not n:
            continue
        col = source.table[src]
        row, value = _example(source, src, col.contains("\n"))
        with translate_errors(source.path):
            joined = (
                source.table.aggregate(n=(col.length() - col.replace("\n", "").length()).sum())
                .execute()["n"]
                .iloc[0]
            )
        canonical = next(c for c, s in m.columns.items() if s == src)
        first = str(value).split("\n", 1)[0]
        first = first if len(first) <= 40 else first[:37] + "..."
        values = "1 value" if n == 1 else f"{n:,} values"
        span = "spans" if n == 1 else "span"
        lines = "1 more line" if joined == 1 else f"{int(joined):,} more lines"
        text = (
            f"{source.path}: {values} of column {src!r} ({canonical}) {span} several lines of "
            f"the file, taking in {lines}, the first in {source.where(row)} (starting "
            f"{first!r}): a quote opened in a value and closed only on a later line joins "
            "the lines between into that value, and they are not read as lines of their "
            "own; if that is not meant, fix the quotes in the file (a quote inside a "
            'quoted value is written twice: "")'
        )
        log.warning("%s", text)
        m.notes.append(text)


#: Largest quantity, price or amount of one line taken as real: sums are exact decimals
#: of 38 digits (9 after the point), and no shop sells a trillion of anything in a line.
MAX_LINE_VALUE = 1e12


def _check_magnitude(
    source: Source, canonical: str, src: str, expr: ir.Value, stats: dict[str, Any]
) -> None:
    """Refuse a number column holding infinity, NaN or a value above
    :data:`MAX_LINE_VALUE` (``1e29`` from a mangled export), naming the row: such a value
    failed much later as a decimal conversion error that named no row."""
    largest = stats.get(f"{canonical}__absmax")
    if largest is None or largest <= MAX_LINE_VALUE:
        return
    bad = expr.notnull() & ~(expr.abs() <= MAX_LINE_VALUE)
    row, value = _example(source, src, bad)
    raise ParseError(
        f"{source.path}: column {src!r} ({canonical}) has {value!r} in {source.where(row)}, "
        f"beyond any real {canonical.replace('_', ' ')} (limit {MAX_LINE_VALUE:,.0f})",
        hint="fix or remove that line (a number written with an exponent, a merged cell, or "
        f"an id in the wrong column), or map another column with --map {canonical}=<column>",
        code="implausible_number",
        file=source.path,
        column=src,
        row=row,
    )


def _example(source: Source, src: str, bad: ir.BooleanValue) -> tuple[int, Any]:
    t = source.table
    with translate_errors(source.path):
        rows = t.filter(bad).order_by(t._row).select(t._row, t[src]).limit(1).execute()
    value = rows[src].iloc[0]
    # a plain Python value, so messages show 20101201, not np.int64(20101201)
    return int(rows["_row"].iloc[0]), value.item() if hasattr(value, "item") else value


#: How number text is read, in the order tried: as it is, with a decimal comma (and dots
#: grouping thousands), with commas grouping thousands. A lone "1,234" reads as 1.234,
#: as segmint always read a decimal comma; "1,234.56" only fits the last.
_NUMBER_MODES = ("plain", "comma", "thousands_comma")
_NUMBER_NOTES = {
    "comma": "decimal comma (e.g. 2,55 or 1.234,56) read as a decimal point",
    "thousands_comma": "commas grouping thousands (e.g. 1,234.56) removed",
}


def _decide_number(
    source: Source, m: Mapping, canonical: str, src: str, stats: dict[str, Any]
) -> str:
    """The first mode of :data:`_NUMBER_MODES` in which every value is a number; else an
    error quoting a value that is not a number in the mode that fits most values."""
    if not stats.get(f"{canonical}__present", 0):
        return "plain"
    bad = {mode: stats.get(f"{canonical}__bad_{mode}", 0) for mode in _NUMBER_MODES}
    comma_file = any(
        stats.get(f"{c}__bad_plain", 0) and not stats.get(f"{c}__bad_comma", 0)
        for c in m.columns
        if c != canonical
    )
    every_dot_groups = stats.get(f"{canonical}__dotted", 0) == stats.get(f"{canonical}__grouped", 0)
    if comma_file and bad["plain"] == 0 and bad["comma"] == 0 and every_dot_groups:
        # another column of the file needs a decimal comma, and every dot of this one
        # groups thousands (1.000, 12.500; not 1.5 or 0.500): the same convention, so
        # "1.000" is a thousand, not one (read plainly, it was 1)
        m.notes.append(
            f"{canonical}: read with the file's decimal comma (dots group thousands: 1.000 = 1000)"
        )
        return "comma"
    point_file = any(
        stats.get(f"{c}__dotted", 0) > stats.get(f"{c}__grouped", 0)
        and not (stats.get(f"{c}__bad_plain", 0) and stats.get(f"{c}__bad_thousands_comma", 0))
        for c in m.columns
        if c != canonical
    )
    every_comma_groups = stats.get(f"{canonical}__commas", 0) == stats.get(
        f"{canonical}__grouped_comma", 0
    )
    if (
        point_file
        and bad["plain"]
        and bad["thousands_comma"] == 0
        and every_comma_groups
        and not stats.get(f"{canonical}__dotted", 0)
    ):
        # another column of the file has decimal points (2.55), and every comma of this
        # one groups thousands (1,000; not 2,5): the same convention, so "1,000" is a
        # thousand, not one (read with a decimal comma, 1,000 units became 1)
        m.notes.append(
            f"{canonical}: read with the file's decimal point (commas group thousands: "
            "1,000 = 1000)"
        )
        return "thousands_comma"
    for mode in _NUMBER_MODES:
        if not bad[mode]:
            if mode in _NUMBER_NOTES:
                m.notes.append(f"{canonical}: {_NUMBER_NOTES[mode]}")
            return mode
    best = min(_NUMBER_MODES, key=lambda mode: bad[mode])
    s = _unmarked(_text(source.table[src]))
    wrong = s.notnull() & _number_cast(s, best).isnull()
    row, value = _example(source, src, wrong)
    present = stats.get(f"{canonical}__present", 0)
    sign = next((c for c in _CURRENCY_SIGNS if c in str(value)), None)
    if sign is not None:
        # "£10.50": money exported in a Currency format; removing the rows (the hint
        # for a stray value) would remove the data
        hint = (
            f"the values carry a currency sign ({sign}): export the column as plain "
            "numbers (a Number format, not Currency) or remove the sign, e.g. 10.50"
        )
    elif bad[best] == present:
        hint = (
            f"none of its values is a number: map the column that holds the {canonical} "
            f"with --map {canonical}=<column>"
        )
    else:
        hint = f"fix or remove those rows, or map another column with --map {canonical}=<column>"
    raise ParseError(
        f"{source.path}: column {src!r} ({canonical}) has {bad[best]:,} of {present:,} values "
        f"that are not numbers, e.g. {value!r} in {source.where(row)}",
        hint=hint,
        code="not_a_number",
        file=source.path,
        column=src,
        row=row,
    )


#: Currency signs and codes a money column exported in a Currency format carries.
_CURRENCY_SIGNS = ("£", "$", "€", "¥", "₹", "CHF", "EUR", "USD", "GBP", "zł")


def _decide_date(
    source: Source,
    canonical: str,
    src: str,
    stats: dict[str, Any],
    date_format: str | None,
    dayfirst: bool | None,
) -> str:
    col = source.table[src]
    if col.type().is_temporal():
        return "native"
    if date_format:  # the user's layout wins, also over numbers such as 20101201
        _compile_format(date_format)  # validates the format early
        return date_format
    if col.type().is_numeric():
        # dates as numbers: spreadsheet serial days (checked by _check_dates), or Unix
        # seconds or milliseconds (pandas' to_json, API exports) when every value has
        # their size; they were "not recognisable dates" with no option to read them
        with translate_errors(source.path):
            lo, hi = source.table.aggregate(lo=col.min(), hi=col.max()).execute().iloc[0]
        try:
            lo, hi = float(lo), float(hi)
        except (TypeError, ValueError):  # None or pd.NA: no value to tell by
            return "excel"
        if lo != lo or hi != hi:  # NaN
            return "excel"
        latest = time.time() + 86400
        for how, scale in (("unix_s", 1), ("unix_ms", 1000)):
            if _UNIX_FIRST_YEAR_SECONDS * scale <= lo and hi <= latest * scale:
                return how
        return "excel"
    present = stats.get(f"{canonical}__present", 0)
    if not col.type().is_string() or not present:
        return "iso"
    matched = stats[f"{canonical}__matched"]
    # DuckDB's own cast also takes "01/12/10" (as the year 1, 12 December): trust it only
    # when no value looks like day/month/year with a short first field
    if stats[f"{canonical}__iso"] == present and stats[f"{canonical}__p1_year"] >= matched:
        return "iso"
    if not matched:
        return "iso"  # nothing looks like a date: _check_dates reports it
    if stats[f"{canonical}__p1_year"] == matched:
        return "ymd"
    # day/month/year values (also among a majority of ISO dates: a folder whose parts come
    # from two systems, where they were dropped as unparseable) are read in the order
    # their values show or the user gives; the year-first values are read as well
    p1, p2 = stats[f"{canonical}__p1_max"], stats[f"{canonical}__p2_max"]
    contradicted = (dayfirst is False and p1 > 12) or (dayfirst is True and p2 > 12)
    if contradicted and not (p1 > 12 and p2 > 12):
        # the option asked for was overridden by the data with only a note: say so, and
        # let the user decide (a file of mixed orders is not read either way)
        field = 1 if dayfirst is False else 2
        s = _text(col)
        part = _try_cast(s.re_extract(_DATE_RE, field), "int64")
        short = s.re_search(_DATE_RE) & ~s.re_search(_YEAR_FIRST_RE)
        row, value = _example(source, src, short & (part > 12))
        given, other = (
            ("--monthfirst", "--dayfirst")
            if dayfirst is False
            else (
                "--dayfirst",
                "--monthfirst",
            )
        )
        raise ParseError(
            f"{source.path}: column {src!r} ({canonical}) has {value!r} ("
            f"{source.where(row)}), which cannot be a date in the order {given} asks for "
            "(its month would be above 12)",
            hint=f"leave out {given} (the values' order is detected), give {other}, or "
            "give --date-format for the exact layout",
            code="date_order_contradicted",
            file=source.path,
            column=src,
            row=row,
        )
    if p1 > 12 and p2 <= 12:
        return "dmy"
    if p2 > 12 and p1 <= 12:
        return "mdy"
    if p1 <= 12 and p2 <= 12:
        if dayfirst is not None:
            return "dmy" if dayfirst else "mdy"
        if stats.get(f"{canonical}__undotted", 1) == 0:
            return "dmy"  # 01.12.2010: dots are written day-first (Germany, Russia, ...)
        s = _text(col)
        short = s.re_search(_DATE_RE) & ~s.re_search(_YEAR_FIRST_RE)
        row, value = _example(source, src, short)
        raise ParseError(
            f"{source.path}: column {src!r} ({canonical}) has dates such as {value!r} ("
            f"{source.where(row)}) whose day/month order is ambiguous: no value has a day "
            "above 12",
            hint="say which with --dayfirst / --monthfirst, or give --date-format "
            "(e.g. '%d/%m/%Y %H:%M')",
            code="ambiguous_dates",
            file=source.path,
            column=src,
            row=row,
        )
    return "dmy"  # both above 12: nothing parses; _check_dates reports it


def _note_channel_totals(m: Mapping) -> None:
    """A customer table whose total comes from one channel only says so: FLO without
    ``customer_value_total_ever_offline`` got an online-only monetary beside a frequency
    of both channels, and an average basket of one over the other, silently."""
    pairs = (("frequency", "orders"), ("monetary", "value"))
    for total, stem in pairs:
        if total in m.columns:
            continue
        have = [c for c in (f"{stem}_online", f"{stem}_offline") if c in m.columns]
        if len(have) == 1:
            missing = f"{stem}_offline" if have[0].endswith("online") else f"{stem}_online"
            m.notes.append(
                f"{total}: from {m.columns[have[0]]} only (no column for {missing}); map it "
                f"with --map {missing}=<column> if the file has it"
            )


def _describe_how(how: str) -> str:
    return {
        "dmy": "day/month/year",
        "mdy": "month/day/year",
        "ymd": "year/month/day",
        "excel": "Excel serial day numbers (days since 1899-12-30)",
        "unix_s": "Unix time in seconds (since 1970-01-01 UTC)",
        "unix_ms": "Unix time in milliseconds (since 1970-01-01 UTC)",
    }.get(how, f"format {how!r}")


def _suggest_format(value: Any) -> str:
    """A ``--date-format`` for a date such as ``value`` (``01-Dec-2010`` ->
    ``%d-%b-%Y``, ``Dec 1, 2010`` -> ``%b %d, %Y``, ``20101201`` -> ``%Y%m%d``); the
    generic example when it is not so simple. Every date not recognised got the same
    example (``%d.%m.%Y %H:%M``), whatever it looked like."""
    text = str(value).strip()
    if re.fullmatch(r"(19|20)\d{6}", text):
        return "%Y%m%d"
    clock = re.search(r"(\s+|T)(\d{1,2}):(\d{2})(:\d{2})?$", text)
    time = ""
    if clock:
        time = clock.group(1) + "%H:%M" + (":%S" if clock.group(4) else "")
        text = text[: clock.start()]
    tokens = re.findall(r"[A-Za-z]+|\d+|[^A-Za-z\d]+", text)
    names = [t for t in tokens if t[:3].lower() in _MONTHS and t.isalpha()]
    if len(names) != 1:
        return "%d.%m.%Y %H:%M"
    out, seen_day = [], False
    for t in tokens:
        if t.isalpha():
            out.append("%b" if len(t) == 3 else "%B" if t[:3].lower() in _MONTHS else t)
        elif t.isdigit() and len(t) == 4:
            out.append("%Y")
        elif t.isdigit() and not seen_day:
            out.append("%d")
            seen_day = True
        elif t.isdigit():
            out.append("%y")
        else:
            out.append(t.replace("%", "%%"))
    return "".join(out) + time


def _check_dates(
    source: Source, m: Mapping, canonical: str, how: str, max_bad_share: float
) -> None:
    """Count values that are present but not dates; fail above ``max_bad_share``."""
    src = m.columns[canonical]
    col = source.table[src]
    numbers = how == "excel" or how in _UNIX_RANGES
    if not (col.type().is_string() or numbers or "%" in how):
        return
    raw = col if numbers else _text(col)
    parsed = date_expression(col, how)
    bad_expr = raw.notnull() & parsed.isnull()
    with translate_errors(source.path):
        counts = source.table.aggregate(present=raw.notnull().sum(), bad=bad_expr.sum()).execute()
    present, bad = int(counts["present"].iloc[0] or 0), int(counts["bad"].iloc[0] or 0)
    if not bad:
        return
    if present and bad / present <= max_bad_share:
        m.notes.append(
            f"{canonical}: {bad:,} value(s) are not dates; the unparseable_date rule drops them"
        )
        return
    row, value = _example(source, src, bad_expr)
    raise ParseError(
        f"{source.path}: column {src!r} ({canonical}) has {bad:,} of {present:,} values that "
        f"are not recognisable dates, e.g. {value!r} in {source.where(row)}",
        hint=(
            "dates written as numbers are read as Excel serial days (1 = 1899-12-31), or "
            "as Unix seconds or milliseconds when every value has that size; for numbers "
            "such as 20101201 give --date-format '%Y%m%d'; convert others to dates, or map "
            f"another column with --map {canonical}=<column>"
            if numbers
            else f"the values do not match --date-format {how!r}: compare it with the "
            "example (%d day, %m month, %Y year, %y two-digit year, %H:%M time)"
            if "%" in how
            else f"give the layout with --date-format (e.g. {_suggest_format(value)!r}), "
            f"or map another column with --map {canonical}=<column>"
        ),
        code="bad_dates",
        file=source.path,
        column=src,
        row=row,
    )
