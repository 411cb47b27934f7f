"""Cleaning rules as data, applied in a fixed order, with an audit that always balances.

Each rule is a name, a reason and a predicate (an ibis expression, so the same rule runs on
DuckDB, Spark or PostgreSQL). A line is dropped by the *first* rule that matches it in the
documented order; the audit reports for every rule both how many input lines it matches
on its own (``matched``, comparable with figures computed on the raw file) and how many
it dropped (``dropped``). ``input = kept + sum(dropped)`` is checked on every run.
Return lines (cancellation invoices and negative quantities) are dropped from the sales
lines but kept aside in :attr:`CleanResult.returns` for the ``return_rate`` feature.
"""

from __future__ import annotations

import datetime
import itertools
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.datatypes as dt
import ibis.expr.types as ir

from segmint.config import CleanConfig
from segmint.errors import ConfigError, DataQualityError
from segmint.io import store, translate_errors, write_table
from segmint.schema import CUSTOMER_KEY, Resolved, customer_key

__all__ = [
    "CUSTOMER_RULES",
    "TRANSACTION_RULES",
    "CleanResult",
    "CleaningAudit",
    "CleaningRule",
    "RuleResult",
    "clean",
]

log = logging.getLogger(__name__)
_counter = itertools.count(1)

Predicate = Callable[[ir.Table, CleanConfig], "ir.BooleanValue | None"]


@dataclass(frozen=True)
class CleaningRule:
    """One cleaning rule.

    Attributes
    ----------
    name : str
        Stable identifier, used in the audit and in the rejected-lines file.
    reason : str
        One sentence a user reads next to the count.
    predicate : callable
        ``(table, config) -> boolean ibis expression`` (True = drop), or None when the
        columns it needs are absent or the rule is switched off by its parameters.
    is_return : bool
        Lines dropped by this rule are kept aside as returns.
    """

    name: str
    reason: str
    predicate: Predicate
    is_return: bool = False


def _future(t: ir.Table) -> ir.BooleanValue:
    """Lines dated from the day after tomorrow on (local clock): a day of slack so that
    no time zone makes today's sales "future"."""
    today = datetime.date.today()
    limit = datetime.datetime.combine(today + datetime.timedelta(days=2), datetime.time())
    return t.invoice_date >= ibis.literal(limit, type="timestamp")


def _has(t: ir.Table, *cols: str) -> bool:
    return all(c in t.columns for c in cols)


@ibis.udf.scalar.builtin(name="hash")
def _duckdb_hash(value) -> dt.uint64:  # noqa: ANN001 - any DuckDB value
    """DuckDB's own 64-bit hash of one value (here a struct of a line's columns).

    ibis' ``.hash()`` casts each hash through a BIT string to BIGINT, and one hash per
    column then XOR-ed cost about twice one hash of the whole line (10M lines: 2.5 s
    against 1.4 s). Equal values always hash equally (DuckDB's GROUP BY relies on it).
    """


def _missing_id(t: ir.Table) -> ir.BooleanValue:
    """No customer id, tested on the integer key when there is one (missing exactly when
    the text id is): DuckDB formed the text of every id only to test it, which cost the
    audit and the features reading about 0.3 s each per 10M lines."""
    return t[customer_key(t)].isnull()


def _duplicate_rows(
    base: ir.Table,
    key: list[str],
    name: str,
    unmapped: tuple[ir.Table, list[str]] | None = None,
) -> ir.Table:
    """``_row`` of every line that exactly repeats an earlier line (all ``key`` columns,
    and the source's unmapped columns when ``unmapped`` gives them: see
    :func:`_unmapped_columns`).

    Exact, but cheap on DuckDB: one 64-bit hash of the key columns per line, sorted, finds
    the hashes seen more than once; only the few candidate lines with such a hash are
    grouped by the full key, and every line of a group but the first (smallest ``_row``)
    is a duplicate. A hash collision can only make a line a candidate, never a
    duplicate. Measured at 10M lines (benchmarks/README.md): sorting the hashes and
    comparing neighbours took 1.5 s where a group-by on them took 2.1 s (10M distinct
    hashes make a hash table larger than the caches; a sort streams), and grouping the
    candidates 0.13 s where ranking them in a window took 0.22 s; against ranking every
    line by the full key, load+clean+features on 30M lines went from 77 s to 65 s with the
    first hash version. Engines without a general hash function (PostgreSQL) rank every
    line in a window; the result is the same.

    Unmapped columns are joined to the candidate lines only (lines equal in every column
    are equal in the mapped ones, so they are candidates already): joining them to every
    line first took about as long again as the whole rule.
    """
    backend = base._find_backend()
    if backend.name != "duckdb":
        if unmapped is not None:
            base, key = _join_unmapped(base, key, unmapped)
        rank = ibis.row_number().over(group_by=[base[c] for c in key], order_by=base._row)
        dups = base.mutate(_rank=rank).filter(lambda x: x._rank > 0).select("_row")
        return store(backend, name, dups)
    hashed = base.mutate(_h=_duckdb_hash(ibis.struct({c: base[c] for c in key})))
    hashes = hashed.select("_h")
    hashes = hashes.mutate(_prev=hashes._h.lag().over(order_by=hashes._h))
    repeated = hashes.filter(hashes._h == hashes._prev).select("_h").distinct()
    # stored first (a few hashes): in one statement with the grouping below, the table of
    # every hash stayed in memory while the candidates were read, and under a 1 GB limit
    # 30M lines took 21 s instead of 12 s
    repeated = store(backend, f"{name}_hashes", repeated)
    candidates = hashed.semi_join(repeated, "_h")
    if unmapped is not None:
        candidates, key = _join_unmapped(candidates, key, unmapped)
    groups = candidates.group_by(key).aggregate(
        _rows=candidates._row.collect(order_by=candidates._row)
    )
    dups = groups.select(_row=groups._rows[1:].unnest())
    return store(backend, name, dups)


def _unmapped_columns(resolved: Resolved) -> tuple[ir.Table, list[str]] | None:
    """The source's columns that no canonical column was mapped from, as a table of
    ``_row_u`` and ``_u0``, ``_u1``, ... (and those names), or None when every column is
    mapped.

    An exact duplicate repeats the whole input line: compared on the mapped columns only,
    two lines of one invoice that differ only in an unmapped column (the product code of
    a file mapped with ``--map`` without ``product_id``, a line number) were taken for one
    line and the second dropped. ``_sheet`` (added by ``--all-sheets``) is no column of
    the input, so the same line on two sheets is still a duplicate.
    """
    src = resolved.source.table
    mapped = set(resolved.mapping.columns.values())
    extra = [c for c in src.columns if c not in mapped and c not in {"_row", "_sheet"}]
    if not extra:
        return None
    named = {f"_u{i}": src[c] for i, c in enumerate(extra)}
    return src.select(_row_u=src._row, **named), list(named)


def _join_unmapped(
    lines: ir.Table, key: list[str], unmapped: tuple[ir.Table, list[str]]
) -> tuple[ir.Table, list[str]]:
    """``lines`` with the unmapped columns joined on ``_row``, and the key extended."""
    right, names = unmapped
    joined = lines.join(right, lines._row == right._row_u).drop("_row_u")
    return joined, [*key, *names]


def _non_product(t: ir.Table, cfg: CleanConfig) -> ir.BooleanValue | None:
    if not _has(t, "product_id") or not (cfg.non_product_codes or cfg.non_product_prefixes):
        return None
    pid = t.product_id
    pred = pid.isin(cfg.non_product_codes) if cfg.non_product_codes else ibis.literal(False)
    for prefix in cfg.non_product_prefixes:
        pred = pred | pid.startswith(prefix)
    return pred


#: Rules for transaction lines, in the order they apply.
TRANSACTION_RULES: tuple[CleaningRule, ...] = (
    CleaningRule(
        "missing_customer_id",
        "no customer id: the line cannot be attributed to a customer",
        lambda t, c: _missing_id(t),
    ),
    CleaningRule(
        "unparseable_date",
        "the invoice date is missing or not a date",
        lambda t, c: t.invoice_date.isnull(),
    ),
    CleaningRule(
        "future_date",
        "dated more than a day after the day the data is processed: a data-entry or clock "
        "error that would move the snapshot date and every customer's recency",
        lambda t, c: _future(t),
    ),
    CleaningRule(
        "duplicate",
        "exact duplicate of an earlier line (the first one is kept)",
        lambda t, c: None,  # built in clean(): needs the mapped columns as the key
    ),
    CleaningRule(
        "cancellation",
        "cancellation invoice (id starts with C); kept aside as a return",
        # both cases tested directly: upper() would copy every invoice id
        lambda t, c: t.invoice_id.startswith("C") | t.invoice_id.startswith("c"),
        is_return=True,
    ),
    CleaningRule(
        "return",
        "negative quantity (a return); kept aside as a return",
        lambda t, c: t.quantity < 0,
        is_return=True,
    ),
    CleaningRule(
        "non_product",
        "not a product (postage, fees, manual adjustments, vouchers)",
        _non_product,
    ),
    CleaningRule(
        "non_positive_price",
        "unit price is zero, negative or missing",
        lambda t, c: t.unit_price.isnull() | (t.unit_price <= 0),
    ),
    CleaningRule(
        "invalid_quantity",
        "quantity is zero or missing",
        lambda t, c: t.quantity.isnull() | (t.quantity == 0),
    ),
    CleaningRule(
        "outlier",
        "quantity or amount above the configured quantile of clean lines",
        lambda t, c: None,  # built in clean(): its threshold depends on the earlier rules
    ),
)


def _customer_value_negative(t: ir.Table, cfg: CleanConfig) -> ir.BooleanValue | None:
    cols = [
        c
        for c in (
            "frequency",
            "monetary",
            "orders_online",
            "orders_offline",
            "value_online",
            "value_offline",
            "recency_days",
        )
        if c in t.columns
    ]
    if not cols:
        return None
    pred = ibis.literal(False)
    for c in cols:
        pred = pred | (t[c] < 0)
    return pred


def _customer_no_orders(t: ir.Table, cfg: CleanConfig) -> ir.BooleanValue | None:
    if _has(t, "frequency"):
        return t.frequency.isnull() | (t.frequency <= 0)
    parts = [t[c].fill_null(0) for c in ("orders_online", "orders_offline") if c in t.columns]
    return (sum(parts[1:], parts[0]) <= 0) if parts else None


#: Rules for customer-level tables (FLO style), in the order they apply.
CUSTOMER_RULES: tuple[CleaningRule, ...] = (
    CleaningRule(
        "missing_customer_id",
        "no customer id",
        lambda t, c: _missing_id(t),
    ),
    CleaningRule(
        "unparseable_date",
        "the last order date (or recency) is missing or not a date",
        lambda t, c: (
            t.last_purchase.isnull() if _has(t, "last_purchase") else t.recency_days.isnull()
        ),
    ),
    CleaningRule(
        "duplicate_customer",
        "customer id already on an earlier row (the first row is kept)",
        lambda t, c: (
            (ibis.row_number().over(group_by=t[customer_key(t)], order_by=t._row) > 0)
            if c.drop_duplicates
            else None
        ),
    ),
    CleaningRule(
        "negative_values",
        "a negative order count, value or recency",
        _customer_value_negative,
    ),
    CleaningRule(
        "inconsistent_dates",
        "first order date after the last order date",
        lambda t, c: (
            (t.first_purchase > t.last_purchase)
            if _has(t, "first_purchase", "last_purchase")
            else None
        ),
    ),
    CleaningRule(
        "no_orders",
        "no orders at all",
        _customer_no_orders,
    ),
)


@dataclass
class RuleResult:
    """What one rule did: lines it matches on its own, lines it dropped, value dropped."""

    name: str
    reason: str
    matched: int
    dropped: int
    amount_dropped: float | None = None
    enabled: bool = True


@dataclass
class CleaningAudit:
    """Counts per rule; ``input_rows == kept_rows + dropped_rows`` always holds."""

    source: str
    kind: str
    input_rows: int
    kept_rows: int
    rules: list[RuleResult]
    input_customers: int
    kept_customers: int
    returns_rows: int = 0
    returns_amount: float = 0.0
    kept_amount: float | None = None
    first_date: str | None = None
    last_date: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: caveats a reader of the counts should know (e.g. duplicates on data without a
    #: product column); rendered under the audit table
    notes: list[str] = field(default_factory=list)

    @property
    def dropped_rows(self) -> int:
        """Lines dropped by all rules together."""
        return sum(r.dropped for r in self.rules)

    @property
    def balanced(self) -> bool:
        """Whether input = kept + dropped (it always is; checked on every run)."""
        return self.input_rows == self.kept_rows + self.dropped_rows

    def rule(self, name: str) -> RuleResult:
        """The result of the rule called ``name``."""
        for r in self.rules:
            if r.name == name:
                return r
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (written as ``audit.json``)."""
        out = asdict(self)
        out["dropped_rows"] = self.dropped_rows
        out["balanced"] = self.balanced
        return out

    def to_json(self) -> str:
        """The audit as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, default=str)


@dataclass
class CleanResult:
    """Kept lines, return lines kept aside, rejected lines, and the audit.

    The tables are lazy ibis expressions: on DuckDB, the rules over the source (Parquet,
    a database table, the Parquet copy of a large text file, or the parsed lines of a
    smaller text file, stored once) are evaluated by
    each query that reads them, which under a memory limit costs less than writing and
    re-reading a flagged copy of every line; on Spark and PostgreSQL over one stored
    flagged table.
    """

    lines: ir.Table
    returns: ir.Table
    rejected: ir.Table
    audit: CleaningAudit
    resolved: Resolved
    #: kept lines and returns with an ``_is_return`` flag, lazily; set when
    #: :meth:`persist` has something to store (DuckDB over a columnar source)
    persistable: ir.Table | None = field(default=None, repr=False)

    def __repr__(self) -> str:
        """A line of figures from the audit: the default repr printed every lazy ibis
        expression in full (hundreds of lines in a notebook)."""
        a = self.audit
        return (
            f"<CleanResult {a.source!r} ({a.kind}): {a.input_rows:,} rows in, "
            f"{a.kept_rows:,} kept, {a.kept_customers:,} customers, {a.returns_rows:,} "
            f"return lines kept aside; .lines / .returns / .rejected are ibis tables>"
        )

    def persist(self) -> CleanResult:
        """The same result with the kept lines and returns stored once.

        For callers that read the clean lines many times (``segmint run``, migration
        over many snapshots, back-tests): one pass evaluates the rules and keeps the
        result, so every later reading is a scan of a stored table. A no-op when there
        is nothing to gain (text sources other than the Parquet copy of a large text
        file are already parsed into a table, Spark and
        PostgreSQL already keep a flagged copy).
        """
        src = self.persistable
        if src is None:
            return self
        stored = store(src._find_backend(), f"segmint_clean_{next(_counter)}_lines", src)
        cols = [c for c in stored.columns if c != "_is_return"]
        return replace(
            self,
            lines=stored.filter(~stored._is_return).select(*cols),
            returns=stored.filter(stored._is_return).select(*cols),
            persistable=None,
        )

    def write_rejected(self, path: str | Path, *, escape: bool = True) -> Path:
        """Write every dropped line with the rule that dropped it and why.

        Columns: ``rule``, ``reason``, ``source_row`` (1-based data row of the input),
        for a folder of parts ``source_part`` and ``source_part_row`` (the part file and
        the row in it: ``source_row`` counts across the parts), with ``--all-sheets``
        ``sheet_row`` (1-based data row of its sheet, ``_sheet``: ``source_row`` counts on
        through the sheets, and row 1 of the second sheet was "row 91,291", a row that
        sheet does not have), then the input's own columns exactly as read. Parquet or CSV
        by the file ending;
        written atomically. The CSV is for people to review in a spreadsheet, so text
        cells that would run as a formula get a leading ``'`` unless ``escape=False``
        (:func:`segmint.io.escape_formulas`; the raw data's descriptions and ids are
        whatever the source holds).
        """
        reasons = {r.name: r.reason for r in self.audit.rules}
        src = self.resolved.source.table
        rejected = self.rejected.select(_r=self.rejected._row, rule=self.rejected._rule)
        joined = rejected.join(src, rejected._r == src._row)
        original = [c for c in src.columns if c != "_row"]
        if "_sheet" in src.columns:  # --all-sheets: the sheets follow each other in _row
            starts = src.group_by(_s=src._sheet).aggregate(_start=src._row.min())
            joined = joined.join(starts, joined._sheet == starts._s)
        parts = self.resolved.source.part_rows()
        if parts is not None:
            joined = joined.join(parts, joined._r == parts._part_line)
        ours: dict[str, ir.Value] = {
            "rule": joined.rule,
            "reason": joined.rule.cases(*reasons.items(), else_=None),
            "source_row": joined._r,
        }
        if parts is not None:
            ours |= {"source_part": joined._part, "source_part_row": joined._part_row}
        if "_start" in joined.columns:
            ours["sheet_row"] = joined._r - joined._start + 1
        out = joined.select(
            **ours,
            **{(c if c not in ours else f"source_{c}"): joined[c] for c in original},
        ).order_by("source_row")
        with translate_errors(self.resolved.source.path):
            return write_table(out, path, escape=escape)


def clean(resolved: Resolved, config: CleanConfig | None = None) -> CleanResult:
    """Apply the cleaning rules to canonical lines (or customer rows) and audit them.

    Parameters
    ----------
    resolved : Resolved
        From :func:`segmint.schema.resolve`.
    config : CleanConfig, optional
        Rule parameters (non-product codes, duplicates, outliers, disabled rules).

    Returns
    -------
    CleanResult

    Raises
    ------
    ConfigError
        A disabled rule name is unknown.
    DataQualityError
        No line is left after cleaning.
    """
    cfg = config or CleanConfig()
    rules = TRANSACTION_RULES if resolved.kind == "transactions" else CUSTOMER_RULES
    names = [r.name for r in rules]
    # CleanConfig refuses names of no rule; here: a rule of the other kind of table
    other = [n for n in cfg.disabled_rules if n not in names]
    if other:
        what = {"transactions": "transaction lines", "customers": "customer tables"}
        this = what.get(resolved.kind, resolved.kind)
        theirs = what["customers" if resolved.kind == "transactions" else "transactions"]
        raise ConfigError(
            f"{resolved.source.path}: cleaning rule(s) {', '.join(map(repr, other))} "
            f"(--disable-rule, [clean] disabled_rules) apply to {theirs}, and these data "
            f"are {this}",
            hint=f"rules for {this}: {', '.join(names)}",
        )
    con = resolved.source.con
    name = f"segmint_clean_{next(_counter)}"
    # the duplicate rule compares every mapped column (and, see _unmapped_columns, the
    # source's other columns); customers by their integer key when there is one (the
    # same values, cheaper to hash and sort)
    ckey = customer_key(resolved.table)
    key = [
        ckey if c == "customer_id" else c
        for c in resolved.mapping.columns
        if c in resolved.table.columns
    ]
    log.info("cleaning %s (%s)", resolved.source.path, resolved.kind)
    with translate_errors(resolved.source.path, encoding=resolved.source.details.get("encoding")):
        # the one pass over the source: coerced canonical lines, stored once; the rules
        # below are cheap predicates evaluated lazily over this table
        base = resolved.table
        if not resolved.source.columnar:
            # text sources: parsing and coercing the text is the expensive part, and the
            # duplicate rule, the audit and every later reading would each do it again;
            # storing the coerced lines once made clean() on the 541,909-line Online
            # Retail CSV about 3 s faster (6.5 s -> 3.5 s). The Parquet copy of a large
            # text file is read like Parquet: at 10M lines, storing its coerced lines too
            # made clean slower (6.5 s against 4.1 s), the features no faster and the
            # peak 0.45 GiB higher (benchmarks/README.md)
            base = store(con, f"{name}_base", base)
        dup_rows = (
            _duplicate_rows(base, key, f"{name}_duplicates", _unmapped_columns(resolved))
            if cfg.drop_duplicates
            and key
            and "duplicate" not in cfg.disabled_rules
            and any(r.name == "duplicate" for r in rules)
            else None
        )
        preds: dict[str, ir.BooleanValue] = {}
        for rule in rules:
            if rule.name in cfg.disabled_rules:
                continue
            if rule.name == "duplicate":
                pred = base._row.isin(dup_rows._row) if dup_rows is not None else None
            elif rule.name == "outlier":
                pred = _outlier(base, cfg, preds)
            else:
                pred = rule.predicate(base, cfg)
            if pred is not None:
                preds[rule.name] = pred.fill_null(False)
        flagged = base.mutate(**{f"_m_{n}": p for n, p in preds.items()})
        if con.name != "duckdb":
            # Spark and PostgreSQL: one stored copy, so later readings do not repeat the
            # rules (a Spark job or a server round trip each)
            flagged = store(con, f"{name}_flagged", flagged)
        audit = _audit(flagged, resolved, rules, preds, cfg)
    columns = list(base.columns)
    # the kept lines and the returns are selected by the flags alone, not by the rule
    # name: DuckDB turns each ``_row IN (duplicates)`` of a statement into its own join
    # before it drops unused columns, so a rule-name text built from the rules' own
    # expressions cost a second join and a text per line in every reading (the audit's
    # and the features'); the name is built only for the rejected lines
    first, kept_flag = _first_flags(flagged, preds)
    kept = flagged.filter(kept_flag).select(*columns)
    returns_filter = _returns_flag(flagged, rules, first)
    returns = flagged.filter(returns_filter).select(*columns)
    rule_names = [(flagged[f"_m_{n}"], n) for n in preds]
    rule_name = (
        ibis.cases(*rule_names, else_=ibis.null("string")) if rule_names else ibis.null("string")
    )
    rejected = flagged.filter(~kept_flag).select(
        *[c for c in columns if c != CUSTOMER_KEY], _rule=rule_name
    )
    persistable = None
    if con.name == "duckdb" and resolved.source.columnar:
        persistable = flagged.filter(kept_flag | returns_filter).select(
            *columns, _is_return=returns_filter
        )
    for note in (*_assumption_notes(resolved), _duplicates_note(audit, resolved)):
        if note:
            log.warning("%s", note)
            audit.notes.append(note)
    if audit.kept_rows == 0:
        worst = max(audit.rules, key=lambda r: r.dropped)
        by_rule = ", ".join(
            f"{r.name} {r.dropped:,}"
            for r in sorted(audit.rules, key=lambda r: -r.dropped)
            if r.dropped
        )
        raise DataQualityError(
            f"{resolved.source.path}: no line is left after cleaning: all "
            f"{audit.input_rows:,} input lines were dropped ({by_rule}); {worst.name}: "
            f"{worst.reason}",
            hint="check how the columns were mapped (--map CANONICAL=COLUMN to change it), "
            f"or switch the rule off with --disable-rule {worst.name} "
            f"(in Python: CleanConfig(disabled_rules=[{worst.name!r}]))",
            code="nothing_left",
        )
    if not audit.balanced:  # pragma: no cover - an invariant; a failure is a bug
        raise DataQualityError(
            f"cleaning audit does not balance: {audit.input_rows} != {audit.kept_rows} + "
            f"{audit.dropped_rows} (this is a bug in segmint; please report it)"
        )
    return CleanResult(
        lines=kept,
        returns=returns,
        rejected=rejected,
        audit=audit,
        resolved=resolved,
        persistable=persistable,
    )


def _assumption_notes(resolved: Resolved) -> list[str]:
    """Caveats for the order and quantity columns a transaction table lacked.

    Without them every line is its own order and counts one unit, which changes
    frequency, basket value and quantity. ``inspect`` showed this in its mapping notes,
    but ``clean``, ``features`` and ``run`` said nothing, so a user who mapped only some
    columns (or whose order column was not recognised) got every line counted as an
    order without a word. The note names the columns left unused, where the missing one
    may be.
    """
    if resolved.kind != "transactions":
        return []
    how = resolved.mapping.how
    unused = [c for c in resolved.mapping.unmapped if c != "_sheet"]  # --all-sheets' own
    where = f" (columns not used: {', '.join(unused)})" if unused else ""
    notes = []
    if how.get("invoice_id") == "derived":
        notes.append(
            "invoice_id: no order column is mapped, so each line counts as its own order "
            "(frequency counts lines); if a column holds the order or invoice number, map it "
            f"with --map invoice_id=COLUMN{where}"
        )
    if how.get("quantity") == "default":
        notes.append(
            "quantity: no quantity column is mapped, so every line counts 1 unit (a negative "
            "amount: 1 unit returned); if a "
            f"column holds it, map it with --map quantity=COLUMN{where}"
        )
    return notes


def _duplicates_note(audit: CleaningAudit, resolved: Resolved) -> str | None:
    """A caveat when the duplicate rule dropped lines of data that name no product.

    Invoice lines without a product column (``customer, invoice, date, quantity,
    price``) cannot tell two products bought on one invoice with the same quantity and
    price from one line exported twice: the rule drops the second as a duplicate, and
    its revenue with it. The rule still applies (a line exported twice is a real fault,
    and pandas' ``duplicated()`` semantics are what the README promises), but not
    silently: the note names the lines, their value and how to keep them. An unmapped
    column was compared too (see :func:`_unmapped_columns`) but may not name the
    product, so the note says "where the data do not name the product".
    """
    if resolved.kind != "transactions" or not audit.rules:
        return None
    dup = next((r for r in audit.rules if r.name == "duplicate"), None)
    if dup is None or not dup.dropped:
        return None
    if {"product_id", "description"} & set(resolved.mapping.columns):
        return None
    value = f" (value {dup.amount_dropped:,.2f})" if dup.amount_dropped is not None else ""
    lines = "1 line" if dup.dropped == 1 else f"{dup.dropped:,} lines"
    were = "was" if dup.dropped == 1 else "were"
    return (
        f"duplicate: {lines}{value} {were} dropped as exact duplicates of an earlier line, "
        "but no column is mapped as the product (product_id or description): where the "
        "data do not name the product, two products bought on one invoice with the same "
        "quantity and price look alike and the second is dropped. If such lines are real, "
        "keep them with --keep-duplicates; if a column names the product, map it "
        "(--map product_id=COLUMN)"
    )


def _outlier(
    t: ir.Table, cfg: CleanConfig, earlier: dict[str, ir.BooleanValue]
) -> ir.BooleanValue | None:
    q = cfg.outlier_quantile
    if q is None:
        return None
    ok = ibis.literal(True)
    for p in earlier.values():
        ok = ok & ~p
    candidates = t.filter(ok)
    pred = ibis.literal(False)
    for col in ("quantity", "amount"):
        if col in t.columns:
            threshold = candidates[col].quantile(q).as_scalar()
            pred = pred | (t[col] > threshold)
    return pred


def _first_flags(
    t: ir.Table, preds: dict[str, ir.BooleanValue]
) -> tuple[dict[str, ir.BooleanValue], ir.BooleanValue]:
    """Per rule, "this rule is the first whose flag is set" (rule order), and "kept".

    Boolean arithmetic on the ``_m_*`` flag columns of ``t``: the line's rule is the first
    rule that matched it, as in the rejected lines' ``_rule``. Comparing a rule-name text
    with every rule name instead cost about 1 s per 10M lines.
    """
    first: dict[str, ir.BooleanValue] = {}
    seen: ir.BooleanValue = ibis.literal(False)
    for n in preds:
        flag = t[f"_m_{n}"]
        first[n] = flag & ~seen
        seen = seen | flag
    return first, ~seen


def _returns_flag(
    t: ir.Table, rules: tuple[CleaningRule, ...], first: dict[str, ir.BooleanValue]
) -> ir.BooleanValue:
    """Lines kept aside as returns: dropped first by a return rule, and not a non-product."""
    hits = [first[r.name] for r in rules if r.is_return and r.name in first]
    if not hits:
        return ibis.literal(False)
    ret = ibis.or_(*hits)
    if "_m_non_product" in t.columns:
        ret = ret & ~t._m_non_product
    return ret


def _audit(
    stored: ir.Table,
    resolved: Resolved,
    rules: tuple[CleaningRule, ...],
    preds: dict[str, ir.BooleanValue],
    cfg: CleanConfig,
) -> CleaningAudit:
    s = stored
    first, kept = _first_flags(s, preds)
    has_amount = "amount" in s.columns
    date_col = "invoice_date" if resolved.kind == "transactions" else "last_purchase"
    aggs: dict[str, ir.Value] = {
        "input_rows": s.count(),
        "kept_rows": kept.sum(),
        "input_customers": s[customer_key(s)].nunique(),
        "kept_customers": s[customer_key(s)].nunique(where=kept),
    }
    if date_col in s.columns:
        aggs["first_date"] = s[date_col].min(where=kept)
        aggs["last_date"] = s[date_col].max(where=kept)
    if has_amount:
        aggs["kept_amount"] = s.amount.sum(where=kept)
    for n in preds:
        aggs[f"m__{n}"] = s[f"_m_{n}"].sum()
        aggs[f"d__{n}"] = first[n].sum()
        if has_amount:
            aggs[f"a__{n}"] = s.amount.sum(where=first[n])
    if any(r.is_return and r.name in preds for r in rules):
        ret = _returns_flag(s, rules, first)
        aggs["returns_rows"] = ret.sum()
        aggs["returns_amount"] = (-s.amount.abs()).sum(where=ret)
    row = s.aggregate(**aggs).to_pyarrow().to_pylist()[0]
    results = [
        RuleResult(
            name=r.name,
            reason=r.reason,
            matched=int(row.get(f"m__{r.name}") or 0),
            dropped=int(row.get(f"d__{r.name}") or 0),
            amount_dropped=(
                round(float(row.get(f"a__{r.name}") or 0.0), 2) if has_amount else None
            ),
            enabled=r.name in preds,
        )
        for r in rules
    ]

    def _date(v: Any) -> str | None:
        return None if v is None else str(v)

    return CleaningAudit(
        source=resolved.source.path,
        kind=resolved.kind,
        input_rows=int(row["input_rows"]),
        kept_rows=int(row["kept_rows"] or 0),
        rules=results,
        input_customers=int(row["input_customers"] or 0),
        kept_customers=int(row["kept_customers"] or 0),
        returns_rows=int(row.get("returns_rows") or 0),
        returns_amount=round(float(row.get("returns_amount") or 0.0), 2),
        kept_amount=round(float(row["kept_amount"]), 2) if row.get("kept_amount") else None,
        first_date=_date(row.get("first_date")),
        last_date=_date(row.get("last_date")),
        settings=cfg.model_dump(),
    )
