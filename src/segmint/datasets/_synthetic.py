"""Synthetic Online-Retail-like transactions from planted customer personas.

Vectorised with NumPy (no Python loop over customers or lines), deterministic for a seed,
and written in chunks for benchmarks of any size. The lines carry the same column names
and the same kinds of dirt as the UCI Online Retail file (guest lines without a customer
id, cancellation invoices, stray returns, postage and manual-adjustment lines, zero
prices, exact duplicates), so the demo exercises the real loading and cleaning path.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from segmint.errors import ConfigError

__all__ = [
    "PERSONAS",
    "Persona",
    "SyntheticData",
    "iter_transactions",
    "make_transactions",
    "write_transactions",
]


@dataclass(frozen=True)
class Persona:
    """How one kind of customer behaves over the observation window.

    ``active`` is the (start, end) of the customer's buying period as fractions of the
    window (0 = first day, 1 = last day), drawn uniformly between the given bounds.
    """

    name: str
    share: float
    orders_per_year: float
    active_start: tuple[float, float]
    active_end: tuple[float, float]
    items_per_order: float
    quantity_scale: float
    max_orders: int | None = None
    min_orders: int = 1


#: The planted personas (shares sum to 1). Real customers overlap; these are planted far
#: enough apart in recency, frequency, spend and tenure that a good segmentation can find
#: them again (the recovery tests rely on it): one-timers have one order in the middle of
#: the window, new customers two or three in its last weeks, hibernating customers a few
#: orders early on only.
PERSONAS: tuple[Persona, ...] = (
    Persona("champions", 0.08, 24.0, (0.0, 0.3), (0.97, 1.0), 20, 2.0, None, 8),
    Persona("loyal", 0.15, 10.0, (0.0, 0.4), (0.92, 1.0), 12, 1.0, None, 4),
    Persona("big_spenders", 0.06, 4.0, (0.0, 0.4), (0.85, 1.0), 30, 8.0, None, 3),
    Persona("new", 0.10, 6.0, (0.90, 0.94), (0.97, 1.0), 8, 1.0, 3, 2),
    Persona("at_risk", 0.13, 9.0, (0.0, 0.2), (0.5, 0.65), 14, 1.2, None, 3),
    Persona("hibernating", 0.18, 2.0, (0.0, 0.15), (0.2, 0.35), 6, 0.8, 4, 2),
    Persona("one_timers", 0.30, 1.0, (0.4, 0.8), (0.4, 0.8), 6, 0.8, 1),
)

_COUNTRIES = np.array(
    [
        "United Kingdom",
        "Germany",
        "France",
        "EIRE",
        "Spain",
        "Netherlands",
        "Belgium",
        "Switzerland",
        "Portugal",
        "Australia",
        "Norway",
        "Italy",
    ]
)
_COUNTRY_P = np.array(
    [0.88, 0.025, 0.022, 0.018, 0.01, 0.008, 0.008, 0.007, 0.006, 0.006, 0.005, 0.005]
)
_WORDS_A = np.array(
    [
        "WHITE",
        "RED",
        "PINK",
        "BLUE",
        "VINTAGE",
        "RETROSPOT",
        "REGENCY",
        "JUMBO",
        "PAPER",
        "HEART",
        "STAR",
        "GLASS",
        "WOODEN",
        "FELT",
        "LUNCH",
    ]
)
_WORDS_B = np.array(
    [
        "T-LIGHT HOLDER",
        "BAG",
        "CAKE STAND",
        "LANTERN",
        "BUNTING",
        "MUG",
        "DOORMAT",
        "CHALKBOARD",
        "CANDLE",
        "TEACUP",
        "BOX",
        "CLOCK",
        "SIGN",
        "NAPKINS",
        "PARTY SET",
    ]
)
#: The UCI Online Retail column names, which the synthetic lines use too.
ONLINE_RETAIL_COLUMNS = [
    "InvoiceNo",
    "StockCode",
    "Description",
    "Quantity",
    "InvoiceDate",
    "UnitPrice",
    "CustomerID",
    "Country",
]


@dataclass
class SyntheticData:
    """Generated lines (UCI Online Retail columns) and the true persona of each customer."""

    lines: pd.DataFrame
    personas: pd.DataFrame

    def __iter__(self):  # allows ``lines, personas = make_transactions(...)``
        return iter((self.lines, self.personas))


def _catalogue(rng: np.random.Generator, n: int = 600) -> pd.DataFrame:
    codes = np.array([f"{20000 + i}{'' if i % 7 else 'A'}" for i in range(n)])
    desc = np.char.add(np.char.add(rng.choice(_WORDS_A, n), " "), rng.choice(_WORDS_B, n))
    price = np.round(np.exp(rng.normal(1.0, 0.75, n)), 2).clip(0.19, 80)
    popularity = 1.0 / np.arange(1, n + 1) ** 0.9
    return pd.DataFrame(
        {"code": codes, "desc": desc, "price": price, "p": popularity / popularity.sum()}
    )


def _day_weights(days: pd.DatetimeIndex) -> np.ndarray:
    """Seasonality: a November peak, quiet Januaries, no trading on Saturdays."""
    doy = days.day_of_year.to_numpy()
    w = 1.0 + 1.2 * np.exp(-(((doy - 320) / 35.0) ** 2)) - 0.3 * np.exp(-(((doy - 15) / 20.0) ** 2))
    w[days.day_of_week.to_numpy() == 5] = 0.0
    return w


def _chunk(
    rng: np.random.Generator,
    n_customers: int,
    first_id: int,
    first_invoice: int,
    start: pd.Timestamp,
    end: pd.Timestamp,
    catalogue: pd.DataFrame,
    dirty: bool,
) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    days = pd.date_range(start.normalize(), end.normalize(), freq="D")
    cdf = np.cumsum(_day_weights(days))
    cdf /= cdf[-1]
    years = (end - start).days / 365.25

    shares = np.array([p.share for p in PERSONAS])
    persona_idx = rng.choice(len(PERSONAS), size=n_customers, p=shares / shares.sum())
    ids = np.arange(first_id, first_id + n_customers)
    country = rng.choice(_COUNTRIES, size=n_customers, p=_COUNTRY_P / _COUNTRY_P.sum())

    # each customer's active period and number of orders
    lo_s = np.array([p.active_start[0] for p in PERSONAS])[persona_idx]
    hi_s = np.array([p.active_start[1] for p in PERSONAS])[persona_idx]
    lo_e = np.array([p.active_end[0] for p in PERSONAS])[persona_idx]
    hi_e = np.array([p.active_end[1] for p in PERSONAS])[persona_idx]
    a_start = rng.uniform(lo_s, hi_s)
    a_end = np.maximum(rng.uniform(lo_e, hi_e), a_start)
    rate = np.array([p.orders_per_year for p in PERSONAS])[persona_idx]
    rate = rate * rng.lognormal(0.0, 0.35, n_customers)
    n_orders = 1 + rng.poisson(np.maximum(rate * (a_end - a_start) * years - 1, 0))
    cap = np.array([p.max_orders or 10**9 for p in PERSONAS])[persona_idx]
    n_orders = np.minimum(n_orders, cap)
    n_orders = np.maximum(n_orders, np.array([p.min_orders for p in PERSONAS])[persona_idx])

    # order dates: seasonal inverse-CDF sampling inside each customer's active period
    cust_of_order = np.repeat(np.arange(n_customers), n_orders)
    u_lo = np.interp(a_start, np.linspace(0, 1, len(cdf)), cdf)[cust_of_order]
    u_hi = np.interp(a_end, np.linspace(0, 1, len(cdf)), cdf)[cust_of_order]
    u = u_lo + (u_hi - u_lo) * rng.random(len(cust_of_order))
    day_idx = np.searchsorted(cdf, u).clip(0, len(days) - 1)
    minutes = rng.integers(8 * 60, 19 * 60, len(cust_of_order))
    when = days.to_numpy()[day_idx] + minutes.astype("timedelta64[m]")

    # guest orders: no customer id (like the 25 % of UCI lines without CustomerID)
    n_guest = int(len(cust_of_order) * 0.6) if dirty else 0
    g_day = np.searchsorted(cdf, rng.random(n_guest)).clip(0, len(days) - 1)
    g_when = days.to_numpy()[g_day] + rng.integers(480, 1140, n_guest).astype("timedelta64[m]")
    order_when = np.concatenate([when, g_when])
    order_cust = np.concatenate([cust_of_order, np.full(n_guest, -1)])
    order_sort = np.argsort(order_when, kind="stable")
    order_when, order_cust = order_when[order_sort], order_cust[order_sort]
    n_all = len(order_when)
    invoice = first_invoice + np.arange(n_all)

    # lines of each order
    items_mean = np.array([p.items_per_order for p in PERSONAS])
    qscale = np.array([p.quantity_scale for p in PERSONAS])
    is_guest = order_cust < 0
    pidx = np.where(is_guest, 0, persona_idx[np.maximum(order_cust, 0)])
    mean_items = np.where(is_guest, 6.0, items_mean[pidx])
    n_lines = 1 + rng.poisson(mean_items - 1)
    line_order = np.repeat(np.arange(n_all), n_lines)
    prod = rng.choice(len(catalogue), size=len(line_order), p=catalogue["p"].to_numpy())
    scale = np.where(is_guest, 0.6, qscale[pidx])[line_order]
    qty = np.maximum(1, np.round(rng.lognormal(1.2, 0.9, len(line_order)) * scale)).astype(np.int64)
    price = catalogue["price"].to_numpy()[prod]
    price = np.where(qty >= 24, np.round(price * 0.85, 2), price)  # bulk discount
    cust_col = np.where(order_cust[line_order] >= 0, ids[np.maximum(order_cust[line_order], 0)], -1)
    country_col = np.where(
        order_cust[line_order] >= 0,
        country[np.maximum(order_cust[line_order], 0)],
        "United Kingdom",
    )
    lines = pd.DataFrame(
        {
            "InvoiceNo": invoice[line_order].astype(str),
            "StockCode": catalogue["code"].to_numpy()[prod],
            "Description": catalogue["desc"].to_numpy()[prod],
            "Quantity": qty,
            "InvoiceDate": order_when[line_order],
            "UnitPrice": price,
            "CustomerID": cust_col,
            "Country": country_col,
        }
    )
    next_invoice = first_invoice + n_all
    if dirty:
        lines, next_invoice = _add_dirt(rng, lines, next_invoice, end)
    lines["CustomerID"] = lines["CustomerID"].astype("Int64").mask(lines["CustomerID"] < 0)
    lines["InvoiceDate"] = pd.to_datetime(lines["InvoiceDate"]).dt.floor("min")
    personas = pd.DataFrame(
        {
            "customer_id": ids.astype(str),
            "persona": np.array([p.name for p in PERSONAS])[persona_idx],
        }
    )
    return lines[ONLINE_RETAIL_COLUMNS], personas, next_invoice


def _add_dirt(
    rng: np.random.Generator, lines: pd.DataFrame, next_invoice: int, end: pd.Timestamp
) -> tuple[pd.DataFrame, int]:
    n = len(lines)
    extra = []
    # postage on ~6 % of non-UK invoices, manual adjustments and bank charges now and then
    inv_first = lines.drop_duplicates("InvoiceNo")
    post = (
        inv_first[(inv_first["Country"] != "United Kingdom")].sample(
            frac=0.6, random_state=int(rng.integers(2**31))
        )
        if len(inv_first)
        else inv_first
    )
    post = post.assign(StockCode="POST", Description="POSTAGE", Quantity=1, UnitPrice=18.0)
    manual = inv_first.sample(frac=0.004, random_state=int(rng.integers(2**31))).assign(
        StockCode="M",
        Description="Manual",
        Quantity=1,
        UnitPrice=np.round(rng.lognormal(1.5, 1.0, 1), 2)[0],
    )
    bank = inv_first.sample(frac=0.001, random_state=int(rng.integers(2**31))).assign(
        StockCode="BANK CHARGES", Description="Bank Charges", Quantity=1, UnitPrice=15.0
    )
    extra += [post, manual, bank]
    # cancellations: ~1.5 % of customer invoices, partly reversed a few days later
    cust_inv = inv_first[inv_first["CustomerID"] >= 0]["InvoiceNo"]
    cancelled = set(cust_inv.sample(frac=0.015, random_state=int(rng.integers(2**31))))
    canc = lines[lines["InvoiceNo"].isin(cancelled)].copy()
    if len(canc):
        canc = canc.sample(frac=0.7, random_state=int(rng.integers(2**31)))
        new_no = {inv: f"C{next_invoice + i}" for i, inv in enumerate(sorted(cancelled))}
        next_invoice += len(new_no)
        canc["InvoiceNo"] = canc["InvoiceNo"].map(new_no)
        canc["Quantity"] = -canc["Quantity"]
        canc["InvoiceDate"] = (
            canc["InvoiceDate"] + pd.to_timedelta(rng.integers(1, 10, len(canc)), unit="D")
        ).clip(upper=end)
        extra.append(canc)
    # stray negative-quantity lines without a customer (stock corrections, price 0)
    k = max(1, n // 2000)
    stray = lines.sample(k, random_state=int(rng.integers(2**31))).assign(
        CustomerID=-1, UnitPrice=0.0
    )
    stray["Quantity"] = -stray["Quantity"]
    extra.append(stray)
    out = pd.concat([lines, *extra], ignore_index=True)
    # zero prices (free samples) and exact duplicates (double-scanned lines)
    zero = rng.random(len(out)) < 0.002
    out.loc[zero, "UnitPrice"] = 0.0
    dup = out.sample(frac=0.01, random_state=int(rng.integers(2**31)))
    out = pd.concat([out, dup], ignore_index=True)
    out = out.sort_values(["InvoiceDate", "InvoiceNo"], kind="stable", ignore_index=True)
    return out, next_invoice


def iter_transactions(
    n_customers: int = 2000,
    *,
    seed: int = 0,
    start: str = "2010-12-01 08:00",
    end: str = "2011-12-09 18:00",
    dirty: bool = True,
    chunk_customers: int = 50_000,
) -> Iterator[SyntheticData]:
    """Generate transactions chunk by chunk (each chunk a disjoint set of customers).

    Memory stays bounded by ``chunk_customers`` whatever ``n_customers`` is. The result
    for a seed does not depend on the chunk size only in distribution, not row for row:
    use :func:`make_transactions` for an exact, in-memory data set.
    """
    if n_customers < 1:
        raise ConfigError("n_customers must be at least 1")
    if chunk_customers < 1:
        raise ConfigError("chunk_customers must be at least 1")
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    if t1 <= t0:
        raise ConfigError(f"end ({end}) must be after start ({start})")
    root = np.random.SeedSequence(seed)
    catalogue = _catalogue(np.random.default_rng(root.spawn(1)[0]))
    n_chunks = math.ceil(n_customers / chunk_customers)
    next_invoice, first_id = 536365, 12346
    for i in range(n_chunks):
        size = min(chunk_customers, n_customers - i * chunk_customers)
        # spawn() is incremental: chunk i always gets the same child, however many follow
        lines, personas, next_invoice = _chunk(
            np.random.default_rng(root.spawn(1)[0]),
            size,
            first_id,
            next_invoice,
            t0,
            t1,
            catalogue,
            dirty,
        )
        first_id += size
        yield SyntheticData(lines, personas)


def make_transactions(
    n_customers: int = 2000,
    *,
    seed: int = 0,
    start: str = "2010-12-01 08:00",
    end: str = "2011-12-09 18:00",
    dirty: bool = True,
) -> SyntheticData:
    """Realistic Online-Retail-like transaction lines with the true persona per customer.

    Parameters
    ----------
    n_customers : int
        Number of identified customers (guest lines without an id come on top).
    seed : int
        Same seed, same data.
    start, end : str
        The observation window.
    dirty : bool
        Add the dirt real exports have (missing ids, cancellations, postage lines, zero
        prices, duplicates); ``False`` gives clean lines only.

    Returns
    -------
    SyntheticData
        ``lines`` with the UCI columns (InvoiceNo, StockCode, Description, Quantity,
        InvoiceDate, UnitPrice, CustomerID, Country) and ``personas`` (customer_id,
        persona). Unpacks as ``lines, personas``.

    Examples
    --------
    >>> lines, personas = make_transactions(n_customers=50, seed=1)
    >>> sorted(personas.persona.unique())[:2]
    ['at_risk', 'big_spenders']
    """
    parts = list(
        iter_transactions(
            n_customers,
            seed=seed,
            start=start,
            end=end,
            dirty=dirty,
            chunk_customers=max(n_customers, 1),
        )
    )
    return parts[0]


def write_transactions(
    path: str | Path,
    *,
    n_lines: int | None = None,
    n_customers: int | None = None,
    seed: int = 0,
    chunk_customers: int = 20_000,
    progress: bool = False,
) -> int:
    """Write synthetic lines to Parquet or CSV in chunks (bounded memory); return lines written.

    Give ``n_lines`` (approximate target, stops at the first chunk boundary past it) or
    ``n_customers``.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if (n_lines is None) == (n_customers is None):
        raise ConfigError("give exactly one of n_lines or n_customers")
    target = Path(path)
    is_parquet = target.suffix.lower() in {".parquet", ".pq"}
    total_customers = n_customers if n_customers is not None else 10**12
    writer = None
    written = 0
    tmp = target.with_name(f".{target.name}.part")
    try:
        for part in iter_transactions(total_customers, seed=seed, chunk_customers=chunk_customers):
            lines = part.lines.copy()
            lines["CustomerID"] = lines["CustomerID"].astype("float64")
            table = pa.Table.from_pandas(lines, preserve_index=False)
            if writer is None:
                writer = (
                    pq.ParquetWriter(tmp, table.schema)
                    if is_parquet
                    else pacsv.CSVWriter(tmp, table.schema)
                )
            writer.write_table(table)
            written += len(lines)
            if progress:
                print(f"  generated {written:,} lines", flush=True)  # noqa: T201
            if n_lines is not None and written >= n_lines:
                break
        if writer is not None:
            writer.close()
        tmp.replace(target)
    finally:
        if tmp.exists():
            tmp.unlink()
    return written
