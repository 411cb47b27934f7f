"""Customer features: one row per customer, from clean lines or a customer-level table.

Every feature is an ibis expression (group-bys, conditional sums, window ranks), executed
by DuckDB out-of-core, and portable to Spark and PostgreSQL: no SQL strings and no Python
loop over rows or customers here. Lines are first aggregated per invoice and then per
customer, which avoids a ``COUNT(DISTINCT invoice)`` over all lines.

The feature set is named and versioned (:data:`FEATURE_SET`, :data:`FEATURE_SET_VERSION`);
both are stored with every written table, and :func:`read_features` refuses a table built
with another feature set.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import logging
import numbers
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from segmint._tables import has_arrow_stream, refuse_lazy
from segmint.clean import CleanResult
from segmint.errors import ConfigError, DataQualityError, InputError, WrongTypeError
from segmint.io import atomic_path, store, translate_errors
from segmint.schema import customer_key

if TYPE_CHECKING:  # pragma: no cover
    from segmint.pipeline import Prepared

__all__ = [
    "CORE_FEATURES",
    "FEATURE_SET",
    "FEATURE_SET_VERSION",
    "LINE_FEATURES",
    "CustomerFeatures",
    "check_feature_set",
    "clean_lines",
    "customer_features",
    "parse_window",
    "read_features",
]

log = logging.getLogger(__name__)
_counter = itertools.count(1)

#: Name and version of the feature definitions; bump the version when a definition changes.
FEATURE_SET = "segmint.customer"
FEATURE_SET_VERSION = "1"
#: Features every table has, whatever the input kind.
CORE_FEATURES = ("recency_days", "frequency", "monetary", "tenure_days", "avg_basket_value")
#: The numeric per-customer features from transaction lines (without channel and category
#: shares, which depend on the data).
LINE_FEATURES = (*CORE_FEATURES, "total_quantity", "unique_products", "return_rate")
_META_KEY = b"segmint"


@dataclass
class CustomerFeatures:
    """The feature table (materialised in the engine) and how it was built.

    Attributes
    ----------
    table : ibis.Table
        One row per customer, ordered by ``customer_id``.
    snapshot_date : datetime.date or None
        The reference date recency is measured from (None only when a customer-level
        source gives recency itself).
    kind : str
        ``"transactions"`` or ``"customers"``: what the features were computed from.
    window : str or None
        The window frequency/monetary were restricted to (e.g. ``"12M"``).
    numeric : list of str
        The numeric feature columns (candidates for clustering).
    """

    table: ir.Table
    snapshot_date: dt.date | None
    kind: str
    window: str | None = None
    numeric: list[str] = field(default_factory=list)
    feature_set: str = FEATURE_SET
    version: str = FEATURE_SET_VERSION
    #: the return lines the cleaning kept aside (transactions only), for
    #: :meth:`returns_left_out`
    returns: ir.Table | None = field(default=None, repr=False, compare=False)

    def to_pandas(self) -> pd.DataFrame:
        """The table as a pandas DataFrame (one row per customer: small).

        Sorted by customer id, dates in microseconds whatever the engine (Spark returns
        nanoseconds), so a DuckDB, Spark or PostgreSQL run gives the same frame.
        """
        table = self.table
        if table._find_backend().name != "duckdb":
            # a stored DuckDB table keeps the customer order it was written in; other
            # engines promise no order when reading back
            table = table.order_by("customer_id")
        frame = table.to_pandas()
        for c in frame.columns:
            if frame[c].dtype.kind == "M" and str(frame[c].dtype) != "datetime64[us]":
                frame[c] = frame[c].astype("datetime64[us]")
        return frame

    def returns_left_out(self) -> dict[str, Any] | None:
        """The return lines kept aside by the cleaning that no customer's net revenue
        counts, so a reader can tell why the audit's returns exceed what the customers'
        ``monetary`` subtracts (nothing is left out silently).

        Two kinds, each with its ``lines`` and ``value`` (positive): ``after_snapshot``,
        returns dated on or after the snapshot date (with the default snapshot, the
        last *purchase* day + 1, those of later days), and ``no_purchase``, returns of
        customers with no purchase before the snapshot (``customers``: how many), whom
        no row of the table stands for. Returns before a ``window`` are left out by the
        window's definition and not counted here. None when nothing is left out (or
        the features were not built from transaction lines with their returns).
        """
        if self.returns is None or self.kind != "transactions" or self.snapshot_date is None:
            return None
        r = self.returns
        snap = ibis.literal(pd.Timestamp(self.snapshot_date).to_pydatetime(), type="timestamp")
        after = r.filter(r.invoice_date >= snap)
        before = r.filter(r.invoice_date < snap)
        if self.window:
            start = parse_window(self.window, self.snapshot_date)
            before = before.filter(
                before.invoice_date
                >= ibis.literal(pd.Timestamp(start).to_pydatetime(), type="timestamp")
            )
        orphans = before.anti_join(self.table.select("customer_id"), "customer_id")
        late = after.aggregate(lines=after.count(), value=_exact(after.amount).abs().sum())
        lone = orphans.aggregate(
            lines=orphans.count(),
            value=_exact(orphans.amount).abs().sum(),
            customers=orphans.customer_id.nunique(),
        )
        out: dict[str, Any] = {}
        for name, expr in (("after_snapshot", late), ("no_purchase", lone)):
            row = expr.to_pandas().iloc[0]
            lines = int(row["lines"] or 0)
            if lines:
                out[name] = {
                    k: (round(float(v), 2) if k == "value" else int(v))
                    for k, v in row.items()
                    if pd.notna(v)
                }
        return out or None

    @property
    def n_customers(self) -> int:
        """Number of customers (rows)."""
        return int(self.table.count().execute())

    def metadata(self) -> dict[str, Any]:
        """What is stored with every output: feature set, version, snapshot, window."""
        return {
            "feature_set": self.feature_set,
            "feature_set_version": self.version,
            "snapshot_date": None if self.snapshot_date is None else str(self.snapshot_date),
            "kind": self.kind,
            "window": self.window,
            "numeric": self.numeric,
        }

    def summary(self) -> list[dict[str, Any]]:
        """Per numeric feature: count, mean, min, quartiles, max (one query)."""
        t = self.table
        aggs: dict[str, ir.Value] = {}
        for c in self.numeric:
            col = t[c].cast("float64")
            aggs[f"{c}__count"] = col.count()
            aggs[f"{c}__mean"] = col.mean()
            aggs[f"{c}__min"] = col.min()
            aggs[f"{c}__p25"] = col.quantile(0.25)
            aggs[f"{c}__median"] = col.quantile(0.5)
            aggs[f"{c}__p75"] = col.quantile(0.75)
            aggs[f"{c}__max"] = col.max()
        row = t.aggregate(**aggs).to_pyarrow().to_pylist()[0]
        stats = ("count", "mean", "min", "p25", "median", "p75", "max")
        return [{"feature": c, **{s: row[f"{c}__{s}"] for s in stats}} for c in self.numeric]

    def write(
        self,
        path: str | Path,
        extra: pd.DataFrame | None = None,
        extra_meta: dict[str, Any] | None = None,
    ) -> Path:
        """Write the table to Parquet (metadata inside) or CSV, also gzipped (``.csv.gz``;
        metadata in a sidecar ``<file>.meta.json``), atomically.

        ``extra`` adds columns per ``customer_id`` (e.g. RFM scores); ``extra_meta`` is
        stored beside the feature-set metadata (e.g. the RFM rule set and cut points).
        """
        target = Path(path)
        name = target.name.lower()
        if not name.endswith((".parquet", ".pq", ".csv", ".csv.gz")):
            raise ConfigError(
                f"{path}: feature output must end in .parquet, .csv or .csv.gz",
                hint="e.g. --out customers.parquet",
            )
        meta = json.dumps({**self.metadata(), **(extra_meta or {})}, default=str)
        frame = self.to_pandas()
        if extra is not None:
            frame = frame.merge(extra, on="customer_id", how="left", validate="one_to_one")
        if name.endswith((".csv", ".csv.gz")):
            # mtime 0: the same table gives the same bytes (the gzip header holds a time)
            gz = {"method": "gzip", "mtime": 0} if name.endswith(".gz") else None
            with atomic_path(target) as tmp:
                frame.to_csv(tmp, index=False, compression=gz)
            with atomic_path(target.with_name(target.name + ".meta.json")) as tmp:
                tmp.write_text(meta, encoding="utf-8")
            return target
        arrow = pa.Table.from_pandas(frame, preserve_index=False)
        arrow = arrow.replace_schema_metadata(
            {**(arrow.schema.metadata or {}), _META_KEY: meta.encode()}
        )
        with atomic_path(target) as tmp:
            pq.write_table(arrow, tmp)
        return target


def check_feature_set(meta: dict[str, Any] | None, where: str) -> None:
    """Refuse features built with another feature set or version.

    Raises
    ------
    InputError
        Naming what the data was built with and what this segmint expects.
    """
    if not meta or "feature_set" not in meta:
        raise InputError(
            f"{where}: carries no segmint feature-set metadata",
            hint="build the feature table with `segmint features` (Parquet keeps the "
            "metadata; a CSV needs its .meta.json beside it)",
            code="feature_set_mismatch",
        )
    got = (meta.get("feature_set"), str(meta.get("feature_set_version")))
    if got != (FEATURE_SET, FEATURE_SET_VERSION):
        raise InputError(
            f"{where}: was built with feature set {got[0]} v{got[1]}, but this segmint uses "
            f"{FEATURE_SET} v{FEATURE_SET_VERSION}",
            hint="rebuild the features from the transactions with this version of segmint",
            code="feature_set_mismatch",
        )


def read_features(path: str | Path) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a feature table written by :meth:`CustomerFeatures.write` and check its set.

    Returns
    -------
    (DataFrame, metadata dict)
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{path}: no such file", code="file_not_found")
    if p.name.lower().endswith((".parquet", ".pq")):
        try:
            table = pq.read_table(p)
        except (pa.ArrowInvalid, OSError) as exc:
            raise InputError(f"{path}: not a readable Parquet file ({exc})") from exc
        raw = (table.schema.metadata or {}).get(_META_KEY)
        meta = json.loads(raw) if raw else None
        frame = table.to_pandas()
    else:
        side = p.with_name(p.name + ".meta.json")
        meta = json.loads(side.read_text()) if side.is_file() else None
        gz = "gzip" if p.name.lower().endswith(".gz") else None
        frame = pd.read_csv(p, dtype={"customer_id": str}, compression=gz)
    check_feature_set(meta, str(path))
    return frame, meta or {}


_WINDOW_RE = re.compile(r"^\s*(\d+)\s*([DWMY])\s*$", re.IGNORECASE)


def returns_left_out_note(info: dict[str, Any] | None, snapshot: Any) -> str | None:
    """One sentence naming the return lines no customer's net revenue counts (see
    :meth:`CustomerFeatures.returns_left_out`); None when there are none."""
    from segmint._text import count

    if not info:
        return None
    parts = []
    if "after_snapshot" in info:
        late = info["after_snapshot"]
        parts.append(
            f"{count(late['lines'], 'return line')} (value {late['value']:,.2f}) dated on or "
            f"after the snapshot date {snapshot} (a later snapshot date counts them)"
        )
    if "no_purchase" in info:
        lone = info["no_purchase"]
        parts.append(
            f"{count(lone['lines'], 'return line')} (value {lone['value']:,.2f}) of "
            f"{count(lone['customers'], 'customer')} with no purchase before the snapshot "
            "date, who have no row"
        )
    return "returns in no customer's net revenue: " + "; ".join(parts)


def parse_window(window: str, snapshot: dt.date) -> dt.date:
    """First day inside a window such as ``"12M"``, ``"6M"``, ``"90D"``, ``"52W"``, ``"1Y"``
    that ends the day before ``snapshot``.

    Raises
    ------
    ConfigError
        For anything else.
    """
    m = _WINDOW_RE.match(window or "")
    if not m or int(m.group(1)) == 0:
        raise ConfigError(
            f"window {window!r} is not a length of time",
            hint="use a number and a unit: 90D, 26W, 6M, 12M or 1Y",
        )
    n, unit = int(m.group(1)), m.group(2).upper()
    offset = {
        "D": pd.DateOffset(days=n),
        "W": pd.DateOffset(weeks=n),
        "M": pd.DateOffset(months=n),
        "Y": pd.DateOffset(years=n),
    }[unit]
    return (pd.Timestamp(snapshot) - offset).date()


_ISO_DATE_RE = re.compile(r"\s*\d{4}-\d{1,2}-\d{1,2}(?:[ T][0-9:.]*)?\s*$")


def _as_date(value: Any, what: str = "snapshot date") -> dt.date:
    """``value`` as a date, or a ConfigError naming ``what`` (an option or key).

    Text must be ISO (YYYY-MM-DD): pandas reads ``01/12/2011`` month first, so a
    snapshot meant as 1 December silently became 12 January."""
    if isinstance(value, numbers.Number) and not isinstance(value, bool):
        # pd.Timestamp(20111210) is 20,111,210 nanoseconds after 1970: "no customer has a
        # purchase before the snapshot date 1970-01-01"
        raise ConfigError(
            f"{what} {value!r} is a number, not a date",
            hint="give it as text YYYY-MM-DD or a datetime.date, e.g. '2011-12-10'",
        )
    if isinstance(value, str) and not _ISO_DATE_RE.match(value):
        raise ConfigError(
            f"{what} {value!r} is not a date in the form YYYY-MM-DD",
            hint="write it as year-month-day, e.g. 2011-12-10 (a date such as 01/12/2011 "
            "could be 1 December or 12 January)",
        )
    try:
        stamp = pd.Timestamp(value)
    except (ValueError, TypeError) as exc:
        raise ConfigError(
            f"{what} {value!r} is not a date", hint="use YYYY-MM-DD, e.g. 2011-12-10"
        ) from exc
    if isinstance(value, str) and stamp != stamp.normalize():
        # snapshots, cut-offs and --from/--to are whole days: "2011-06-01T12:00" was
        # silently cut to 2011-06-01, so lines of that morning fell on the other side
        raise ConfigError(
            f"{what} {value!r} has a time of day: segmint's snapshot and cut-off dates are "
            "whole days (a date counts from its midnight)",
            hint=f"give the day alone, e.g. {stamp.date().isoformat()} or "
            f"{(stamp.date() + dt.timedelta(days=1)).isoformat()}",
        )
    return stamp.date()


def _slug(value: str) -> str:
    """A column-name part for a level: lower case, letters and digits of any script
    ("Mağaza" -> "mağaza"; ASCII-only slugs turned Cyrillic levels into one "blank")."""
    return re.sub(r"[\W_]+", "_", str(value).lower()).strip("_") or "blank"


def _unique(name: str, taken: Sequence[str]) -> str:
    """``name``, or ``name_2``, ``name_3``, ... when two levels give the same slug
    ("Web shop" and "web-shop": one of them was dropped without a word)."""
    out, n = name, 1
    while out in taken:
        n += 1
        out = f"{name}_{n}"
    return out


def clean_lines(data: Any, who: str) -> CleanResult | ir.Table:
    """The clean lines in ``data``, for the functions that start from them.

    A :class:`~segmint.clean.CleanResult` or an ibis table in canonical columns is used
    as it is, and a :class:`~segmint.pipeline.Prepared` (what :func:`segmint.prepare`
    returns) by its ``cleaned`` lines. Anything else (a DataFrame of raw lines, a path)
    is a :class:`~segmint.errors.WrongTypeError` saying what to pass instead, not an
    ``AttributeError`` from deep inside.
    """
    if isinstance(data, CleanResult | ir.Table):
        return data
    cleaned = getattr(data, "cleaned", None)
    if isinstance(cleaned, CleanResult):
        return cleaned
    refuse_lazy(data, who)
    raw = isinstance(data, str | Path) or has_arrow_stream(data)  # pandas, polars, DuckDB...
    raise WrongTypeError(
        f"{who} takes clean lines (segmint.prepare(...), a CleanResult or an ibis table "
        f"in canonical columns), not a {type(data).__module__}.{type(data).__qualname__}",
        hint=(
            "map and clean the data first: prepared = segmint.prepare(data), then pass "
            "prepared (or prepared.cleaned)"
            if raw
            else "pass segmint.prepare(data) or segmint.clean.clean(segmint.resolve(...))"
        ),
    )


def customer_features(
    lines: Prepared | CleanResult | ir.Table,
    snapshot_date: str | dt.date | None = None,
    *,
    returns: ir.Table | None = None,
    window: str | None = None,
    max_levels: int = 20,
    only: Sequence[str] | None = None,
) -> CustomerFeatures:
    """One row per customer with recency, frequency, monetary and the rest.

    Parameters
    ----------
    lines : Prepared, CleanResult or ibis.Table
        Clean lines (or customer rows) in canonical columns: ``segmint.prepare(...)``,
        ``clean(...)`` or an ibis table. A Prepared or CleanResult also brings the
        return lines kept aside.
    snapshot_date : date or str, optional
        Reference date: recency is counted in days from it, and lines on or after it are
        ignored. Default: the last purchase date in the data + 1 day (always reported).
    returns : ibis.Table, optional
        Return lines (when ``lines`` is a table); used for ``return_rate`` and net
        ``monetary``.
    window : str, optional
        Restrict frequency, monetary, basket, quantity, products and returns to this window
        before the snapshot (``"12M"``, ``"6M"``, ``"90D"``); recency, tenure and first/last
        purchase always use the whole history.
    max_levels : int
        At most this many channel or category share columns (the largest by revenue).
    only : list of str, optional
        Compute the core features (and ``return_rate``) and only these optional ones
        (``unique_products``, ``country``, ``channel_share_*``, ``category_share_*``); the
        optional ones cost extra passes over the lines, which scoring many snapshots with
        a model that does not use them need not pay for. Default: all.

    Returns
    -------
    CustomerFeatures

    Notes
    -----
    From transaction lines: ``recency_days`` = snapshot - date of last purchase;
    ``frequency`` = distinct invoices; ``monetary`` = net revenue (sales minus the value of
    returns); ``tenure_days`` = last - first purchase date; ``avg_basket_value`` =
    monetary / frequency; ``total_quantity`` = units bought; ``unique_products`` =
    distinct products; ``return_rate`` = value returned / value bought; ``country`` = the
    country of most of the customer's lines that name one (ties: alphabetical; none
    when no line does); ``channel_share_*`` and
    ``category_share_*`` = share of the customer's sales in each channel or category.

    From a customer-level table (FLO style): frequency and monetary are the online plus
    offline totals, ``channel_share_online/offline`` the value shares, ``online_order_share``
    the share of orders online, and the list of categories becomes one 0/1
    ``category_<name>`` column per category.
    """
    lines = clean_lines(lines, "customer_features")
    if isinstance(lines, CleanResult):
        kind = lines.resolved.kind
        returns = lines.returns if returns is None else returns
        table = lines.lines
        where = lines.resolved.source.path
        encoding = lines.resolved.source.details.get("encoding")
    else:
        table = lines
        kind = "transactions" if "invoice_date" in table.columns else "customers"
        where, encoding = "the data", None
    if (
        snapshot_date is None
        and kind == "transactions"
        and isinstance(lines, CleanResult)
        and lines.audit.last_date
    ):
        # the audit already has the date of the last kept line: the default snapshot
        # without another pass over every line (about 1.5 s at 10M lines)
        snapshot_date = pd.Timestamp(lines.audit.last_date).date() + dt.timedelta(days=1)
    if (
        snapshot_date is not None
        and kind == "transactions"
        and isinstance(lines, CleanResult)
        and lines.audit.last_date
    ):
        last = pd.Timestamp(lines.audit.last_date).date()
        gap = (_as_date(snapshot_date) - last).days
        if gap > _SNAPSHOT_GAP_DAYS:
            log.warning(
                "snapshot date %s is %d days after the last purchase in the data (%s): "
                "every customer's recency includes those days without data",
                _as_date(snapshot_date),
                gap,
                last,
            )
    with translate_errors(where, encoding=encoding):
        if kind == "transactions":
            expr, snapshot, numeric = _from_lines(
                table, returns, snapshot_date, window, max_levels, only
            )
        else:
            if window:
                raise ConfigError(
                    "window cannot be used with a customer-level table: it holds only "
                    "lifetime totals",
                    hint="leave --window out, or give transaction lines",
                )
            expr, snapshot, numeric = _from_customers(table, snapshot_date, max_levels)
        con = table._find_backend()
        name = f"segmint_features_{next(_counter)}"
        stored = store(con, name, expr.order_by("customer_id"))
    n = int(stored.count().execute())
    if n == 0:
        raise DataQualityError(
            f"{where}: no customer has a purchase before the snapshot date {snapshot}",
            hint="choose a later --snapshot-date",
            code="no_customers",
        )
    log.info("features: %d customers, snapshot %s", n, snapshot)
    return CustomerFeatures(
        stored, snapshot, kind, window, numeric, returns=returns if kind == "transactions" else None
    )


def _default_snapshot(date_col: ir.Value) -> dt.date:
    last = date_col.max().execute()
    if last is None or pd.isna(last):
        raise DataQualityError(
            "no dates to derive a snapshot date from", hint="give --snapshot-date"
        )
    return pd.Timestamp(last).date() + dt.timedelta(days=1)


def _from_lines(
    t: ir.Table,
    returns: ir.Table | None,
    snapshot_date: Any,
    window: str | None,
    max_levels: int,
    only: Sequence[str] | None = None,
) -> tuple[ir.Table, dt.date, list[str]]:
    def wanted(name: str) -> bool:
        return only is None or name in only or any(o.startswith(f"{name}_") for o in only)

    # customers are grouped by their integer key when the lines (and returns) have one:
    # the same groups as customer_id, cheaper to hash; its text is customer_id
    key = customer_key(t)
    if returns is not None and key not in returns.columns:
        key = "customer_id"
    snapshot = (
        _as_date(snapshot_date) if snapshot_date is not None else _default_snapshot(t.invoice_date)
    )
    snap_ts = ibis.literal(pd.Timestamp(snapshot).to_pydatetime(), type="timestamp")
    lines = t.filter(t.invoice_date < snap_ts)
    start = parse_window(window, snapshot) if window else None
    start_ts = (
        ibis.literal(pd.Timestamp(start).to_pydatetime(), type="timestamp") if start else None
    )

    inv = lines.group_by([key, "invoice_id"]).aggregate(
        value=_exact(lines.amount).sum(),
        qty=_exact(lines.quantity).sum(),
        first=lines.invoice_date.min(),
        last=lines.invoice_date.max(),
    )
    in_window = (inv.first >= start_ts) if start_ts is not None else None
    cust = inv.group_by(key).aggregate(
        first_purchase=inv.first.min(),
        last_purchase=inv.last.max(),
        frequency=inv.count(where=in_window),
        gross=inv.value.sum(where=in_window).fill_null(0),
        total_quantity=inv.qty.sum(where=in_window).fill_null(0),
    )
    scoped = lines.filter(lines.invoice_date >= start_ts) if start_ts is not None else lines
    parts: list[ir.Table] = []
    numeric = list(CORE_FEATURES) + ["total_quantity"]
    if "product_id" in t.columns and wanted("unique_products"):
        pairs = scoped.select(key, "product_id").distinct()
        parts.append(pairs.group_by(key).aggregate(unique_products=pairs.product_id.count()))
        numeric.append("unique_products")
    ret_value = None
    if returns is not None:  # always: monetary is net of returns
        r = returns.filter(returns.invoice_date < snap_ts)
        if start_ts is not None:
            r = r.filter(r.invoice_date >= start_ts)
        # the value of a return whatever the sign it was written with: a credit note
        # with a positive quantity (a "C" invoice) added to monetary before
        ret_value = r.group_by(key).aggregate(returned=_exact(r.amount).abs().sum())
        parts.append(ret_value)
    if "country" in t.columns and wanted("country"):
        # the most common *known* country: a customer with two lines without a country
        # and one from France is French (a missing value outnumbering it gave none)
        known = lines.filter(lines.country.notnull())
        by_country = known.group_by([key, "country"]).aggregate(n=known.count())
        rank = ibis.row_number().over(
            group_by=by_country[key],
            order_by=[by_country.n.desc(), by_country.country.asc()],
        )
        parts.append(
            by_country.mutate(_rank=rank).filter(lambda x: x._rank == 0).select(key, "country")
        )
    for col in ("channel", "category"):
        if col in t.columns and wanted(f"{col}_share"):
            share, names = _shares(scoped, col, max_levels, key)
            parts.append(share)
            numeric += names

    out = cust
    for part in parts:
        out = out.left_join(part, key).drop(f"{key}_right")
    returned = (
        out.returned.fill_null(0).cast("float64") if ret_value is not None else ibis.literal(0.0)
    )
    snap_date = ibis.literal(snapshot, type="date")
    gross = out.gross.cast("float64")
    monetary = gross - returned
    freq = out.frequency
    cols: dict[str, ir.Value] = {
        "customer_id": out[key].cast("string") if key != "customer_id" else out.customer_id,
        "recency_days": snap_date.delta(out.last_purchase.date(), unit="day").cast("int64"),
        "frequency": freq.cast("int64"),
        "monetary": monetary.cast("float64"),
        "tenure_days": out.last_purchase.date()
        .delta(out.first_purchase.date(), unit="day")
        .cast("int64"),
        "avg_basket_value": ibis.ifelse(freq > 0, monetary / freq, 0.0).cast("float64"),
        "total_quantity": out.total_quantity.cast("float64"),
    }
    if "unique_products" in out.columns:
        cols["unique_products"] = out.unique_products.fill_null(0).cast("int64")
    if ret_value is not None:
        cols["return_rate"] = ibis.ifelse(
            gross > 0, returned / gross, ibis.ifelse(returned > 0, 1.0, 0.0)
        ).cast("float64")
        numeric.append("return_rate")
    for name in numeric:
        if name.startswith(("channel_share_", "category_share_")):
            cols[name] = out[name].fill_null(0.0)
    cols["first_purchase"] = out.first_purchase
    cols["last_purchase"] = out.last_purchase
    if "country" in out.columns:
        cols["country"] = out.country
    ordered = [c for c in numeric if c in cols]
    numeric = ordered
    return out.select(**cols), snapshot, numeric


#: Money and quantities are summed as exact decimals (9 decimal places) and turned back
#: into floats at the end: floating-point sums depend on the order the engine adds the
#: values in, which varies between runs of a parallel engine, and the same input must give
#: bit-for-bit the same features (and segments) every time.
_EXACT = "decimal(38, 9)"


def _exact(value: ir.NumericValue) -> ir.NumericValue:
    return value.cast(_EXACT)


def _shares(
    lines: ir.Table, col: str, max_levels: int, key: str = "customer_id"
) -> tuple[ir.Table, list[str]]:
    """Share of each customer's sales in each level of ``col`` (top levels by revenue)."""
    top = (
        lines.filter(lines[col].notnull())
        .group_by(col)
        .aggregate(v=lines.amount.sum())
        .order_by(ibis.desc("v"))
        .limit(max_levels)
        .execute()[col]
        .tolist()
    )
    names: list[str] = []
    amount = _exact(lines.amount)
    aggs: dict[str, ir.Value] = {"_total": amount.sum().cast("float64")}
    for level in top:
        name = _unique(f"{col}_share_{_slug(level)}", names)
        names.append(name)
        aggs[name] = amount.sum(where=lines[col] == level).cast("float64")
    g = lines.group_by(key).aggregate(**aggs)
    shares = {n: ibis.ifelse(g._total != 0, g[n].fill_null(0.0) / g._total, 0.0) for n in names}
    return g.select(key, **shares), names


#: A snapshot date further than this after the last purchase gets a warning.
_SNAPSHOT_GAP_DAYS = 31


def _check_customer_snapshot(t: ir.Table, snapshot: dt.date) -> None:
    """Refuse a snapshot date on or before a customer table's last purchases.

    Transaction lines after a snapshot are left out; a customer-level table holds
    totals up to its own date and cannot be cut back, so such a snapshot gave negative
    recencies (FLO at 2021-01-01: 12,238 customers, as low as -149 days) and segments
    named from them."""
    snap = ibis.literal(pd.Timestamp(snapshot).to_pydatetime(), type="timestamp")
    last = t.last_purchase.cast("timestamp")
    row = t.aggregate(late=last.count(where=last >= snap), latest=last.max()).execute().iloc[0]
    late = int(row["late"] or 0)
    if late:
        latest = pd.Timestamp(row["latest"]).date()
        raise ConfigError(
            f"snapshot date {snapshot} is on or before the last purchase of {late:,} "
            f"customers (the latest on {latest}): a customer-level table holds totals up "
            "to its own date and cannot be cut back to an earlier one",
            hint=f"use a snapshot date after {latest}, or leave --snapshot-date out",
        )


def _from_customers(
    t: ir.Table, snapshot_date: Any, max_levels: int
) -> tuple[ir.Table, dt.date | None, list[str]]:
    cols = set(t.columns)

    def total(single: str, a: str, b: str) -> ir.Value:
        if single in cols:
            return t[single]
        present = [t[c].fill_null(0.0) for c in (a, b) if c in cols]
        if len(present) == 1:
            return present[0]
        # added as exact decimals, as lines are summed (see _EXACT): in floats 10.01 +
        # 20.04 is 30.049999999999997, which scored M below a customer with 30.05
        return (_exact(present[0]) + _exact(present[1])).cast("float64")

    freq = total("frequency", "orders_online", "orders_offline")
    mon = total("monetary", "value_online", "value_offline")
    snapshot: dt.date | None
    out: dict[str, ir.Value] = {"customer_id": t.customer_id}
    if "last_purchase" in cols:
        snapshot = (
            _as_date(snapshot_date)
            if snapshot_date is not None
            else _default_snapshot(t.last_purchase)
        )
        if snapshot_date is not None:
            _check_customer_snapshot(t, snapshot)
        snap_date = ibis.literal(snapshot, type="date")
        out["recency_days"] = snap_date.delta(t.last_purchase.date(), unit="day").cast("int64")
    else:
        snapshot = _as_date(snapshot_date) if snapshot_date is not None else None
        out["recency_days"] = t.recency_days.cast("int64")
    out["frequency"] = freq.cast("int64")
    out["monetary"] = mon.cast("float64")
    if "tenure_days" in cols:
        out["tenure_days"] = t.tenure_days.cast("int64")
    elif {"first_purchase", "last_purchase"} <= cols:
        out["tenure_days"] = (
            t.last_purchase.date().delta(t.first_purchase.date(), unit="day").cast("int64")
        )
    out["avg_basket_value"] = ibis.ifelse(freq > 0, mon / freq, 0.0).cast("float64")
    numeric = list(CORE_FEATURES)
    if "tenure_days" not in out:
        # a table of recency, frequency and monetary only: no column of nulls, which the
        # default segmentation (recency, frequency, monetary, tenure) would refuse as text
        numeric.remove("tenure_days")
    if {"value_online", "value_offline"} <= cols:
        out["channel_share_online"] = ibis.ifelse(mon != 0, t.value_online / mon, 0.0)
        out["channel_share_offline"] = ibis.ifelse(mon != 0, t.value_offline / mon, 0.0)
        numeric += ["channel_share_online", "channel_share_offline"]
    if {"orders_online", "orders_offline"} <= cols:
        out["online_order_share"] = ibis.ifelse(freq != 0, t.orders_online / freq, 0.0)
        numeric.append("online_order_share")
    if "categories" in cols:
        # "[KADIN, ERKEK]", "KADIN|ERKEK" or "KADIN;ERKEK": one list of names
        items = t.categories.re_replace(r"[\[\]'\"]", "").re_replace(r"[|;]", ",").split(",")
        tokens = (
            # unnest first, then strip: Spark refuses a generator nested in an expression
            t.select(c=items.unnest())
            .mutate(c=lambda x: x.c.strip())
            .filter(lambda x: x.c != "")
            .group_by("c")
            .aggregate(n=lambda x: x.count())
            .order_by([ibis.desc("n"), "c"])
            .limit(max_levels)
            .execute()["c"]
            .tolist()
        )
        clean_items = items.map(lambda x: x.strip())
        for token in sorted(tokens):
            name = _unique(f"category_{_slug(token)}", list(out))
            # ifelse, not a cast: PostgreSQL cannot cast a boolean to bigint
            out[name] = ibis.ifelse(clean_items.contains(token).fill_null(False), 1, 0).cast(
                "int64"
            )
            numeric.append(name)
    if "first_purchase" in cols:
        out["first_purchase"] = t.first_purchase
    if "last_purchase" in cols:
        out["last_purchase"] = t.last_purchase
    for passthrough in ("country", "first_channel", "last_channel"):
        if passthrough in cols:
            out[passthrough] = t[passthrough]
    return t.select(**out), snapshot, numeric
