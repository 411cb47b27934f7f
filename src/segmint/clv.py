"""Customer lifetime value: BG/NBD for purchases and churn, Gamma-Gamma for spend.

The per-customer summary (repeat purchases, recency, age and mean repeat spend) is built
with ibis expressions on the cleaned lines, like the features, so it runs in DuckDB (or
Spark, or PostgreSQL) and only one row per customer comes back. The two models are then
fitted by maximum likelihood with scipy.

Why hand-written: ``lifetimes`` (the usual library) has been unmaintained since 2020 and
does not install with current pandas and scipy; ``pymc-marketing`` fits the same models
by MCMC and brings PyMC, PyTensor and a compiler toolchain, far outside our dependency
set. The likelihoods are a few lines each (Fader, Hardie and Lee 2005; Fader and Hardie
2013) and are checked in the tests against the published CDNOW figures. The summary can
be exported in the column layout pymc-marketing takes (:meth:`ClvResult.write_summary`).

Definitions (the same as ``lifetimes`` and pymc-marketing's ``rfm_summary``):

- purchases are counted per *day*: several invoices on one day are one purchase;
- ``frequency`` = number of repeat purchases (purchase days - 1);
- ``recency`` = time from the first to the last purchase;
- ``T`` = age: time from the first purchase to the end of the observation period (the day
  before the snapshot date);
- ``monetary_value`` = mean value of the repeat purchases (0 without a repeat purchase).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import re
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ibis
import ibis.expr.types as ir
import numpy as np
import pandas as pd
from scipy import optimize, special

from segmint._tables import to_frame
from segmint._text import count
from segmint.clean import CleanResult
from segmint.errors import ConfigError, DataQualityError, WrongTypeError
from segmint.io import atomic_path, output_path, translate_errors
from segmint.schema import customer_key

if TYPE_CHECKING:  # pragma: no cover
    from segmint.pipeline import Prepared

__all__ = [
    "CLV_COLUMNS",
    "BetaGeo",
    "ClvResult",
    "GammaGamma",
    "clv_summary",
    "customer_value",
    "horizon_end",
    "one_notes_key",
    "parse_horizon",
    "simulate_bgnbd",
    "check_value_options",
]

log = logging.getLogger(__name__)

#: Per-customer columns :func:`customer_value` adds to a customer table.
CLV_COLUMNS = ("clv_expected_purchases", "clv_p_alive", "clv_expected_spend", "clv_value")
_UNITS = {"D": 1.0, "W": 7.0}
_HORIZON_RE = re.compile(r"^\s*(\d+)\s*([DWMY])\s*$", re.IGNORECASE)


def parse_horizon(horizon: str | int | float, *, what: str = "horizon") -> float:
    """Length of a horizon in days: a number of days, or ``"90D"``, ``"26W"``, ``"6M"``,
    ``"1Y"`` (a month is 365.25 / 12 days). Errors name ``what`` (an option or key)."""
    if isinstance(horizon, int | float) and not isinstance(horizon, bool):
        if horizon <= 0:
            raise ConfigError(f"{what} {horizon} must be positive", hint="e.g. 90D or 12M")
        return float(horizon)
    m = _HORIZON_RE.match(str(horizon))
    if not m or int(m.group(1)) == 0:
        raise ConfigError(
            f"{what} {horizon!r} is not a length of time",
            hint="use a number and a unit: 90D, 26W, 6M, 12M or 1Y",
        )
    n, unit = int(m.group(1)), m.group(2).upper()
    return n * {"D": 1.0, "W": 7.0, "M": 365.25 / 12, "Y": 365.25}[unit]


def horizon_end(start: Any, horizon: str | int | float, *, what: str = "horizon") -> pd.Timestamp:
    """The first moment after a period of ``horizon`` that starts at ``start``.

    Months and years are calendar months and years, as ``--window`` and migration's
    ``--every`` count them: ``"3M"`` after 2011-09-01 ends at 2011-12-01 (not 91.3125
    days later, at 07:30 of that day). Days, weeks and plain numbers are days.

    >>> str(horizon_end("2011-09-01", "3M"))
    '2011-12-01 00:00:00'
    >>> str(horizon_end("2011-09-01", "90D"))
    '2011-11-30 00:00:00'
    """
    days = parse_horizon(horizon, what=what)  # validates, with the message naming ``what``
    begin = pd.Timestamp(start)
    m = _HORIZON_RE.match(str(horizon)) if isinstance(horizon, str) else None
    if m and m.group(2).upper() in ("M", "Y"):
        n = int(m.group(1))
        return begin + pd.DateOffset(months=n if m.group(2).upper() == "M" else 12 * n)
    return begin + pd.Timedelta(days=days)


def horizon_start(end: Any, horizon: str | int | float, *, what: str = "horizon") -> pd.Timestamp:
    """The latest start whose period of ``horizon`` (see :func:`horizon_end`) ends by ``end``.

    >>> str(horizon_start("2011-09-01", "3M"))
    '2011-06-01 00:00:00'
    >>> str(horizon_start("2011-03-31", "1M"))  # 2011-02-28 + 1M = 2011-03-28
    '2011-02-28 00:00:00'
    """
    days = parse_horizon(horizon, what=what)
    stop = pd.Timestamp(end)
    m = _HORIZON_RE.match(str(horizon)) if isinstance(horizon, str) else None
    if m and m.group(2).upper() in ("M", "Y"):
        n = int(m.group(1))
        return stop - pd.DateOffset(months=n if m.group(2).upper() == "M" else 12 * n)
    return stop - pd.Timedelta(days=days)


def check_value_options(
    horizon: str | int | float,
    discount_rate: float,
    margin: float,
    *,
    names: tuple[str, str, str] = ("horizon", "discount rate", "margin"),
) -> float:
    """Check the valuation settings of :func:`customer_value` and return the horizon in
    days. Errors name ``names`` (the CLI passes its flags, so ``segmint clv`` refuses a bad
    ``--margin`` by that name, and before reading any data)."""
    days = parse_horizon(horizon, what=names[0])
    if not 0 <= discount_rate < 10:
        raise ConfigError(
            f"{names[1]} {discount_rate} is out of range: a yearly rate from 0 up to 10",
            hint="e.g. 0.1 for 10 % a year (0 = no discounting)",
        )
    if not 0 < margin <= 1:
        raise ConfigError(
            f"{names[2]} {margin} must be above 0 and at most 1",
            hint="the share of revenue that is profit, e.g. 0.3 for 30 % (1 = revenue)",
        )
    return days


def one_notes_key(summary: dict[str, Any] | None) -> dict[str, Any] | None:
    """A lifetime-value summary (``clv.json``, a bundle's ``clv``) with its caveats in
    one list, ``notes``.

    Summaries of earlier versions had both ``notes`` (the fit's caveats) and ``note``
    (why lifetime value was left out, else null); the ``note`` is moved into ``notes``,
    so readers of old bundles and files see the same shape as new ones."""
    if summary is None or "note" not in summary:
        return summary
    out = {k: v for k, v in summary.items() if k != "note"}
    notes = list(out.get("notes") or [])
    if summary["note"] and summary["note"] not in notes:
        notes.append(summary["note"])
    out["notes"] = notes
    return out


# --------------------------------------------------------------------------- summary


def _feature_table(data: Any) -> Any:
    """``data`` as a pandas DataFrame when it is a table of customers (a pandas, polars
    or pyarrow table, a DuckDB relation, CustomerFeatures); clean lines (Prepared,
    CleanResult, an ibis table) and anything else as they are."""
    if isinstance(data, CleanResult | ir.Table) or hasattr(data, "cleaned"):
        return data
    frame = to_frame(data, "clv")
    return data if frame is None else frame


def clv_summary(
    lines: Prepared | CleanResult | ir.Table | pd.DataFrame,
    snapshot_date: str | dt.date | None = None,
    *,
    unit: str = "D",
) -> pd.DataFrame:
    """The per-customer summary the CLV models take.

    Parameters
    ----------
    lines : Prepared, CleanResult, ibis.Table or DataFrame
        Clean transaction lines in canonical columns (``customer_id``, ``invoice_date``,
        ``amount``): ``segmint.prepare(...)``, ``clean(...)`` or an ibis table; or a
        customer feature table (from :func:`customer_features`, for
        customer-level inputs such as FLO; see Notes).
    snapshot_date : date or str, optional
        Lines on or after it are ignored; the observation period ends the day before.
        Default: the day after the last purchase.
    unit : {"D", "W"}
        Time unit of ``recency`` and ``T``: days (default) or weeks.

    Returns
    -------
    DataFrame
        ``customer_id, frequency, recency, T, monetary_value`` (pymc-marketing's layout),
        sorted by customer id; ``attrs["snapshot_date"]`` and ``attrs["unit"]`` say how
        it was built.

    Notes
    -----
    From a customer feature table (no purchase dates per order), purchases are orders:
    ``frequency = frequency - 1``, ``recency = tenure_days``, ``T`` from
    ``first_purchase``, and ``monetary_value`` is the mean order value.
    """
    if unit.upper() not in _UNITS:
        raise ConfigError(f"unit {unit!r} is not known", hint="use D (days) or W (weeks)")
    scale = _UNITS[unit.upper()]
    lines = _feature_table(lines)
    if isinstance(lines, pd.DataFrame):
        return _summary_from_features(lines, snapshot_date, scale, unit.upper())
    from segmint.features import clean_lines

    lines = clean_lines(lines, "clv_summary")
    if isinstance(lines, CleanResult):
        if lines.resolved.kind != "transactions":
            from segmint.features import customer_features

            feats = customer_features(lines, snapshot_date)
            return _summary_from_features(
                feats.to_pandas(), feats.snapshot_date, scale, unit.upper()
            )
        table, where = lines.lines, lines.resolved.source.path
    else:
        table, where = lines, "the data"
    from segmint.features import _as_date, _default_snapshot, _exact

    data_end: dt.date | None = None
    with translate_errors(where):
        if snapshot_date is None:
            snapshot = _default_snapshot(table.invoice_date)
        else:
            snapshot = _as_date(snapshot_date)
            span = table.aggregate(
                first=table.invoice_date.min(), last=table.invoice_date.max()
            ).execute()
            data_end = _check_observation_end(snapshot, span["first"].iloc[0], span["last"].iloc[0])
        snap_ts = ibis.literal(pd.Timestamp(snapshot).to_pydatetime(), type="timestamp")
        t = table.filter(table.invoice_date < snap_ts)
        key = customer_key(t)
        days = t.group_by([key, t.invoice_date.date().name("day")]).aggregate(
            value=_exact(t.amount).sum()
        )
        cust = days.group_by(key).aggregate(
            n=days.count(),
            first=days.day.min(),
            last=days.day.max(),
            total=days.value.sum(),
            first_value=days.value.argmin(days.day),
        )
        end = ibis.literal(snapshot - dt.timedelta(days=1), type="date")
        expr = cust.select(
            customer_id=cust[key].cast("string"),
            frequency=(cust.n - 1).cast("int64"),
            recency=cust.last.delta(cust.first, unit="day").cast("float64"),
            T=end.delta(cust.first, unit="day").cast("float64"),
            monetary_value=ibis.ifelse(
                cust.n > 1, (cust.total - cust.first_value) / (cust.n - 1), 0
            ).cast("float64"),
        ).order_by("customer_id")
        frame = expr.to_pandas()
    frame["recency"] /= scale
    frame["T"] /= scale
    frame.attrs.update(snapshot_date=snapshot.isoformat(), unit=unit.upper())
    if data_end is not None and snapshot > data_end:  # the note in ClvResult.notes
        frame.attrs["data_end"] = data_end.isoformat()
    return frame


def _summary_from_features(
    feats: pd.DataFrame, snapshot_date: Any, scale: float, unit: str
) -> pd.DataFrame:
    need = {"customer_id", "frequency", "monetary", "tenure_days", "first_purchase"}
    missing = sorted(need - set(feats.columns))
    if missing:
        # a data problem, not a mistaken option: `segmint run` on a table of recency,
        # frequency and monetary alone leaves lifetime value out with a note and goes on
        raise DataQualityError(
            f"the customer table lacks {', '.join(missing)}, needed for lifetime value: "
            "BG/NBD needs "
            "each customer's first purchase date and the days from first to last purchase",
            hint="give the transaction lines (for raw lines in a DataFrame: "
            "segmint.prepare(df)), a customer table with first and last order dates, or a "
            "table made by customer_features",
        )
    if snapshot_date is None:
        snapshot_date = feats.attrs.get("snapshot_date")
    data_end = None
    if snapshot_date is None:
        snapshot = (pd.Timestamp(feats["last_purchase"].max()) + pd.Timedelta(days=1)).date()
    else:
        snapshot = pd.Timestamp(snapshot_date).date()
        if "last_purchase" in feats.columns and len(feats):
            data_end = _check_observation_end(
                snapshot, feats["first_purchase"].min(), feats["last_purchase"].max()
            )
    end = pd.Timestamp(snapshot - dt.timedelta(days=1))
    orders = feats["frequency"].to_numpy(dtype=float)
    first = pd.to_datetime(feats["first_purchase"]).dt.normalize()
    out = pd.DataFrame(
        {
            "customer_id": feats["customer_id"].to_numpy(),
            "frequency": np.maximum(orders - 1, 0).astype("int64"),
            "recency": feats["tenure_days"].to_numpy(dtype=float) / scale,
            "T": ((end - first).dt.days.to_numpy(dtype=float)) / scale,
            "monetary_value": np.where(
                orders > 1, feats["monetary"].to_numpy(dtype=float) / np.maximum(orders, 1), 0.0
            ),
        }
    )
    out = out.sort_values("customer_id", kind="stable").reset_index(drop=True)
    out.attrs.update(snapshot_date=snapshot.isoformat(), unit=unit)
    if data_end is not None and snapshot > data_end:  # the note in ClvResult.notes
        out.attrs["data_end"] = data_end.isoformat()
    return out


#: A snapshot date further than this many days after the day after the last purchase is
#: refused: the models would read the days without data as days without purchases.
_AFTER_DATA_DAYS = 31


def _check_observation_end(snapshot: dt.date, first: Any, last: Any) -> dt.date | None:
    """Refuse a snapshot date before the first purchase or long after the last one;
    return the end of the data (the day after the last purchase), None without dates.

    BG/NBD reads the time from a customer's last purchase to the end of observation as
    time without purchases: with a snapshot a year after Online Retail ends it saw a
    chance of 24 % to drop out after each purchase (a / (a + b); 0.03 % at the data's own
    end) and expected 716 purchases in the next year instead of 18,806."""
    if first is None or pd.isna(first) or last is None or pd.isna(last):
        return None
    first_day, last_day = pd.Timestamp(first).date(), pd.Timestamp(last).date()
    if snapshot <= first_day:
        raise DataQualityError(
            f"no purchase before the snapshot date {snapshot}: the data start on {first_day}",
            hint=f"choose a --snapshot-date after {first_day}, or leave it out (the day "
            "after the last purchase)",
            code="no_customers",
        )
    end_of_data = last_day + dt.timedelta(days=1)
    gap = (snapshot - end_of_data).days
    if gap > _AFTER_DATA_DAYS:
        raise DataQualityError(
            f"the snapshot date {snapshot} is {gap:,} days after the data end (last "
            f"purchase {last_day}): lifetime value models would read those days without "
            "data as days without purchases, overstate drop-out and understate every value",
            hint=f"use a --snapshot-date on or shortly after {end_of_data} (at most "
            f"{_AFTER_DATA_DAYS} days later), or leave it out",
            code="after_data",
        )
    return end_of_data


# --------------------------------------------------------------------------- models


def _compress(*cols: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
    """Unique rows of the columns and how often each occurs (likelihoods are sums over
    customers, and many customers share the same summary)."""
    stacked = np.column_stack(cols)
    uniq, counts = np.unique(stacked, axis=0, return_counts=True)
    return [uniq[:, i] for i in range(uniq.shape[1])], counts.astype(float)


def _minimize(fun: Any, x0: np.ndarray) -> optimize.OptimizeResult:
    """L-BFGS-B, then Nelder-Mead from where it stopped when it did not converge.

    The optimisers step through overflowing parameters on degenerate data (every
    customer spends the same): numpy's warnings about it are not the user's business
    (they printed eight lines of source code under `segmint clv`), the fit's
    ``converged`` flag and :attr:`ClvResult.notes` are."""
    with np.errstate(all="ignore"):
        return _minimize_quietly(fun, x0)


def _minimize_quietly(fun: Any, x0: np.ndarray) -> optimize.OptimizeResult:
    res = optimize.minimize(fun, x0, method="L-BFGS-B", jac=True, options={"maxiter": 2000})
    if not res.success:  # a second, derivative-free pass from where the first stopped
        alt = optimize.minimize(
            lambda p: fun(p)[0],
            res.x,
            method="Nelder-Mead",
            options={"maxiter": 20000, "xatol": 1e-8, "fatol": 1e-10},
        )
        if alt.fun <= res.fun:
            alt.jac = None
            return alt
    return res


@dataclass
class BetaGeo:
    """The BG/NBD model (Fader, Hardie and Lee 2005): while alive, a customer buys as a
    Poisson process with rate λ ~ Gamma(r, α); after each purchase they drop out with
    probability p ~ Beta(a, b).

    Fit with :meth:`fit`; times (``recency``, ``T``, ``t``) are in the unit of the
    summary the model was fitted on.
    """

    r: float = math.nan
    alpha: float = math.nan
    a: float = math.nan
    b: float = math.nan
    log_likelihood: float = math.nan
    n_customers: int = 0
    converged: bool = False

    @classmethod
    def fit(cls, frequency: Any, recency: Any, T: Any, *, weights: Any = None) -> BetaGeo:
        """Maximum-likelihood fit (L-BFGS-B on log parameters, analytic gradient).

        Raises
        ------
        DataQualityError
            With too few customers or no repeat purchase at all.
        """
        x = np.asarray(frequency, dtype=float)
        tx = np.asarray(recency, dtype=float)
        T_ = np.asarray(T, dtype=float)
        _check_summary(x, tx, T_)
        (x, tx, T_), counts = _compress(x, tx, T_)
        w = counts if weights is None else _compress_weights(frequency, recency, T, weights)
        # Rescale time so that the largest age is 10: alpha is the only parameter that
        # carries the unit, and the optimiser behaves better on numbers near 1.
        scale = 10.0 / max(float(T_.max()), 1e-12)
        txs, Ts = tx * scale, T_ * scale
        total = float(w.sum())

        def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
            ll, grad = _bgnbd_loglik(np.exp(params), x, txs, Ts, w)
            return -ll / total, -grad * np.exp(params) / total

        res = _minimize(nll, np.log([1.0, 1.0, 1.0, 1.0]))
        r, alpha, a, b = np.exp(res.x)
        ll, _ = _bgnbd_loglik(np.array([r, alpha / scale, a, b]), x, tx, T_, w)
        return cls(
            float(r),
            float(alpha / scale),
            float(a),
            float(b),
            float(ll),
            int(round(total)),
            bool(res.success),
        )

    @property
    def params(self) -> dict[str, float]:
        """``{"r", "alpha", "a", "b"}``."""
        return {"r": self.r, "alpha": self.alpha, "a": self.a, "b": self.b}

    def _delta(self, x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> np.ndarray:
        """a / (b + x - 1) * ((α + T) / (α + t_x))^(r + x) for x > 0, else 0."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            log_d = (
                np.log(a)
                - np.log(np.where(x > 0, b + x - 1, 1.0))
                + (r + x) * (np.log(alpha + T) - np.log(alpha + tx))
            )
        return np.where(x > 0, np.exp(np.minimum(log_d, 700.0)), 0.0)

    def p_alive(self, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Probability that each customer is still active at the end of observation."""
        x, tx, T_ = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        return 1.0 / (1.0 + self._delta(x, tx, T_))

    def expected_purchases(self, t: float, frequency: Any, recency: Any, T: Any) -> np.ndarray:
        """Expected number of purchases in the next ``t`` time units, given each
        customer's history (equation 10 of Fader, Hardie and Lee 2005)."""
        x, tx, T_ = (np.asarray(v, dtype=float) for v in (frequency, recency, T))
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if abs(a - 1.0) < _A_ONE:  # 0/0 at a = 1: the mean of both sides of the limit
            return 0.5 * sum(
                replace(self, a=1.0 + 2 * s * _A_ONE).expected_purchases(t, x, tx, T_)
                for s in (-1.0, 1.0)
            )
        z = t / (alpha + T_ + t)
        lead = (a + b + x - 1) / (a - 1)
        body = 1.0 - _power_hyp2f1(r + x, b + x, a + b + x - 1, z)
        out = lead * body / (1.0 + self._delta(x, tx, T_))
        bad = ~np.isfinite(out)
        if bad.any():  # never a silent 0: a value that cannot be computed is an error
            raise DataQualityError(
                f"expected purchases cannot be computed for {count(int(bad.sum()), 'customer')} "
                f"with this BG/NBD fit (r={r:.4g}, alpha={alpha:.4g}, a={a:.4g}, b={b:.4g})",
                hint="the fit is degenerate (customers too alike or too few): use more "
                "customers or a longer history (segmint run can leave lifetime value out: "
                "--no-clv)",
                code="clv_degenerate",
            )
        return np.clip(out, 0.0, None)

    def expected_purchases_new(self, t: float) -> float:
        """Expected purchases in ``t`` time units of a customer just acquired."""
        r, alpha, a, b = self.r, self.alpha, self.a, self.b
        if abs(a - 1.0) < _A_ONE:
            return 0.5 * sum(
                replace(self, a=1.0 + 2 * s * _A_ONE).expected_purchases_new(t) for s in (-1.0, 1.0)
            )
        z = t / (alpha + t)
        body = 1.0 - _power_hyp2f1(np.array([r]), np.array([b]), np.array([a + b - 1]), z)
        return float((a + b - 1) / (a - 1) * body[0])


def _power_hyp2f1(A: Any, B: Any, C: Any, z: Any) -> np.ndarray:
    """``(1 - z)^A * 2F1(A, B; C; z)`` for ``0 <= z < 1``, the term of the BG/NBD
    expected purchases.

    scipy's ``hyp2f1`` gives up (NaN or inf) for large parameters: on customers who all
    buy alike the fit runs to r = 1e5, and every expected purchase used to come out as
    0. Those rows (and any negative result, impossible with positive parameters) are
    summed from the Gauss series in log space instead (the terms are positive when
    ``C > 0``, so nothing cancels)."""
    A, B, C, z = np.broadcast_arrays(*(np.asarray(v, dtype=float) for v in (A, B, C, z)))
    with np.errstate(all="ignore"):
        out = np.power(1.0 - z, A) * special.hyp2f1(A, B, C, z)
    # with positive parameters every term is positive: a negative result is scipy's error
    redo = (~np.isfinite(out) | (out < 0)) & (C > 0) & (A > 0) & (B > 0) & (z >= 0) & (z < 1)
    if redo.any():
        out = out.copy()
        idx = np.flatnonzero(redo)
        # customers share parameters (the same purchase counts and ages): each distinct
        # row is summed once, and at most _SERIES_ROWS at a time, as a block of terms
        # holds rows x 65,536 floats (all of 1M rows at once would need terabytes)
        rows = np.stack([A[idx], B[idx], C[idx], z[idx]], axis=1)
        uniq, inverse = np.unique(rows, axis=0, return_inverse=True)
        values = np.empty(len(uniq))
        for i in range(0, len(uniq), _SERIES_ROWS):
            u = uniq[i : i + _SERIES_ROWS]
            values[i : i + _SERIES_ROWS] = _power_hyp2f1_series(u[:, 0], u[:, 1], u[:, 2], u[:, 3])
        out[idx] = values[inverse.ravel()]
    return out


#: Rows of :func:`_power_hyp2f1_series` summed together (a block of terms of 64 rows is
#: 32 MB per array).
_SERIES_ROWS = 64


def _power_hyp2f1_series(
    A: np.ndarray, B: np.ndarray, C: np.ndarray, z: np.ndarray, max_terms: int = 2_000_000
) -> np.ndarray:
    """:func:`_power_hyp2f1` from its series, term by term in log space, in blocks of
    terms until each row's terms are past their peak and below 1e-17 of the sum."""
    log_z = np.log(np.where(z > 0, z, 1.0))
    log_term = A * np.log1p(-z)  # k = 0
    log_sum = log_term.copy()
    done = z == 0
    k0, block = 0, 256
    while not done.all() and k0 < max_terms:
        k = np.arange(k0, k0 + block, dtype=float)[None, :]
        steps = (
            np.log(A[:, None] + k)
            + np.log(B[:, None] + k)
            - np.log(C[:, None] + k)
            - np.log(k + 1.0)
            + log_z[:, None]
        )
        logs = log_term[:, None] + np.cumsum(steps, axis=1)
        block_sum = np.logaddexp.reduce(logs, axis=1)
        log_sum = np.where(done, log_sum, np.logaddexp(log_sum, block_sum))
        log_term = np.where(done, log_term, logs[:, -1])
        done |= (steps[:, -1] < 0) & (log_term < log_sum - 40.0)
        k0 += block
        block = min(block * 2, 65_536)
    return np.where(done, np.exp(log_sum), np.nan)


#: Below this chance of dropping out after a purchase (a / (a + b)) a BG/NBD fit "sees
#: almost no drop-out" (Online Retail's year: 0.03 %).
_NO_DROPOUT = 0.01

#: Above this Gamma-Gamma p a customer's purchases vary by under 3 % around their mean
#: (coefficient of variation 1 / sqrt(p)): not seen in real spend (Online Retail 2.26,
#: CDNOW 6.25), but where the fit goes when the data cannot tell (12 customers: 40,000).
_NO_SPEND_SPREAD = 1000.0

#: Around a = 1 the expected-purchase formulas are 0/0 (a removable singularity): they are
#: evaluated twice this far on both sides of 1 and averaged (the result is smooth in a).
_A_ONE = 1e-4


def _check_summary(x: np.ndarray, tx: np.ndarray, T: np.ndarray) -> None:
    if len(x) < 10:
        raise DataQualityError(
            f"lifetime value needs at least 10 customers; the data have {len(x)}",
            hint="use data with more customers (segmint run can leave lifetime value out: "
            "--no-clv)",
            code="clv_too_few",
        )
    if not (x > 0).any():
        raise DataQualityError(
            "no customer has a repeat purchase, so purchase rates cannot be estimated",
            hint="use a longer history (segmint run can leave lifetime value out: --no-clv)",
            code="clv_no_repeat",
        )
    bad = (x < 0) | (tx < 0) | (T < tx) | ~np.isfinite(x + tx + T)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataQualityError(
            f"customer summary row {i + 1} is not consistent "
            f"(frequency={x[i]}, recency={tx[i]}, T={T[i]}): need 0 <= recency <= T",
            hint="build the summary with segmint.clv.clv_summary",
            code="clv_bad_summary",
        )


def _compress_weights(*cols_and_weights: Any) -> np.ndarray:
    *cols, weights = cols_and_weights
    stacked = np.column_stack([np.asarray(c, dtype=float) for c in cols])
    _, inverse = np.unique(stacked, axis=0, return_inverse=True)
    return np.bincount(inverse.ravel(), weights=np.asarray(weights, dtype=float))


def _bgnbd_loglik(
    params: np.ndarray, x: np.ndarray, tx: np.ndarray, T: np.ndarray, w: np.ndarray
) -> tuple[float, np.ndarray]:
    """Weighted BG/NBD log-likelihood and its gradient in (r, alpha, a, b)."""
    r, alpha, a, b = params
    dg = special.digamma
    A1 = special.gammaln(r + x) - special.gammaln(r) + r * np.log(alpha)
    A2 = (
        special.gammaln(a + b)
        + special.gammaln(b + x)
        - special.gammaln(b)
        - special.gammaln(a + b + x)
    )
    A3 = -(r + x) * np.log(alpha + T)
    pos = x > 0
    bx1 = np.where(pos, b + x - 1, 1.0)
    A4 = np.where(pos, np.log(a) - np.log(bx1) - (r + x) * np.log(alpha + tx), -np.inf)
    M = np.logaddexp(A3, A4)
    ll = float(np.sum(w * (A1 + A2 + M)))
    # d/dθ log(e^A3 + e^A4) = s3 * dA3 + s4 * dA4
    s3 = np.exp(A3 - M)
    s4 = np.where(pos, np.exp(A4 - M), 0.0)
    dA4_r = np.where(pos, -np.log(alpha + tx), 0.0)
    dA4_alpha = np.where(pos, -(r + x) / (alpha + tx), 0.0)
    d_r = dg(r + x) - dg(r) + np.log(alpha) + s3 * -np.log(alpha + T) + s4 * dA4_r
    d_alpha = r / alpha + s3 * -(r + x) / (alpha + T) + s4 * dA4_alpha
    d_a = dg(a + b) - dg(a + b + x) + s4 * (1.0 / a)
    d_b = dg(a + b) + dg(b + x) - dg(b) - dg(a + b + x) + s4 * np.where(pos, -1.0 / bx1, 0.0)
    grad = np.array([np.sum(w * d) for d in (d_r, d_alpha, d_a, d_b)])
    return ll, grad


@dataclass
class GammaGamma:
    """The Gamma-Gamma spend model (Fader and Hardie 2013): the value of a customer's
    purchases varies around their mean spend ν ~ Gamma(q, γ), each purchase ~ Gamma(p, ν).

    Fitted on customers with at least one repeat purchase and a positive mean; assumes
    spend is independent of purchase frequency (:attr:`frequency_correlation` reports the
    correlation to check)."""

    p: float = math.nan
    q: float = math.nan
    v: float = math.nan
    log_likelihood: float = math.nan
    n_customers: int = 0
    converged: bool = False
    frequency_correlation: float = math.nan

    @classmethod
    def fit(cls, frequency: Any, monetary_value: Any) -> GammaGamma:
        """Maximum-likelihood fit on the customers with ``frequency > 0`` and
        ``monetary_value > 0``."""
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        keep = (x > 0) & (m > 0) & np.isfinite(m)
        if keep.sum() < 10:
            raise DataQualityError(
                f"spend model needs at least 10 repeat customers; the data have {int(keep.sum())}",
                hint="use a longer history (segmint run can leave lifetime value out: --no-clv)",
                code="clv_too_few",
            )
        x, m = x[keep], m[keep]
        corr = float(np.corrcoef(x, m)[0, 1]) if x.std() > 0 and m.std() > 0 else 0.0
        (xs, ms), w = _compress(x, m)
        scale = 10.0 / float(np.median(ms))  # spend in units near 10 for the optimiser
        mss = ms * scale
        total = float(w.sum())

        def nll(params: np.ndarray) -> tuple[float, np.ndarray]:
            ll, grad = _gg_loglik(np.exp(params), xs, mss, w)
            return -ll / total, -grad * np.exp(params) / total

        res = _minimize(nll, np.log([1.0, 2.0, 10.0]))
        p, q, v = np.exp(res.x)
        ll, _ = _gg_loglik(np.array([p, q, v / scale]), xs, ms, w)
        return cls(
            float(p), float(q), float(v / scale), float(ll), int(total), bool(res.success), corr
        )

    @property
    def params(self) -> dict[str, float]:
        """``{"p", "q", "v"}``."""
        return {"p": self.p, "q": self.q, "v": self.v}

    def expected_spend(self, frequency: Any, monetary_value: Any) -> np.ndarray:
        """Expected value of each customer's future purchases: a weighted mean of the
        population mean and their own mean, weighted by their number of purchases."""
        x = np.asarray(frequency, dtype=float)
        m = np.asarray(monetary_value, dtype=float)
        p, q, v = self.p, self.q, self.v
        if q <= 1:
            return np.where(x > 0, m, np.nan)
        m = np.where(x > 0, m, 0.0)
        return (p * (v + x * m)) / (p * x + q - 1)


def _gg_loglik(
    params: np.ndarray, x: np.ndarray, m: np.ndarray, w: np.ndarray
) -> tuple[float, np.ndarray]:
    p, q, v = params
    dg = special.digamma
    px = p * x
    ll = (
        special.gammaln(px + q)
        - special.gammaln(px)
        - special.gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )
    d_p = x * (dg(px + q) - dg(px) + np.log(m) + np.log(x) - np.log(x * m + v))
    d_q = dg(px + q) - dg(q) + np.log(v) - np.log(x * m + v)
    d_v = q / v - (px + q) / (x * m + v)
    grad = np.array([np.sum(w * d) for d in (d_p, d_q, d_v)])
    return float(np.sum(w * ll)), grad


def simulate_bgnbd(
    n: int,
    T: float | np.ndarray,
    *,
    r: float,
    alpha: float,
    a: float,
    b: float,
    seed: int = 0,
) -> pd.DataFrame:
    """Customers drawn from a BG/NBD model: ``frequency, recency, T`` (and the hidden
    ``alive`` flag). Useful to check a fit recovers known parameters."""
    rng = np.random.default_rng(seed)
    T_ = np.broadcast_to(np.asarray(T, dtype=float), (n,)).copy()
    lam = rng.gamma(r, 1.0 / alpha, n)
    p = rng.beta(a, b, n)
    t = np.zeros(n)
    x = np.zeros(n, dtype=np.int64)
    last = np.zeros(n)
    alive = np.ones(n, dtype=bool)
    active = np.ones(n, dtype=bool)  # alive and still inside the observation period
    while active.any():
        idx = np.flatnonzero(active)
        t[idx] += rng.exponential(1.0 / lam[idx])
        inside = t[idx] <= T_[idx]
        buy = idx[inside]
        x[buy] += 1
        last[buy] = t[buy]
        active[idx[~inside]] = False
        dies = buy[rng.random(buy.size) < p[buy]]
        alive[dies] = False
        active[dies] = False
    return pd.DataFrame({"frequency": x, "recency": last, "T": T_, "alive": alive})


# --------------------------------------------------------------------------- results


@dataclass
class ClvResult:
    """Fitted models and per-customer values (see :func:`customer_value`)."""

    summary: pd.DataFrame
    bgnbd: BetaGeo
    gamma_gamma: GammaGamma
    horizon_days: float
    discount_rate: float
    table: pd.DataFrame = field(repr=False)
    #: Share of revenue counted as value (1 = revenue): ``clv_expected_spend`` and
    #: ``clv_value`` are profit when below 1.
    margin: float = 1.0

    @property
    def snapshot_date(self) -> str:
        """End of the observation period + 1 day (ISO date)."""
        return str(self.summary.attrs.get("snapshot_date"))

    @property
    def notes(self) -> list[str]:
        """Caveats on reading these values: a fit that sees almost no drop-out, one that
        did not converge, customers left without a value (Gamma-Gamma q <= 1), a
        snapshot after the data, and a horizon longer than the history the models were
        fitted on."""
        out = []
        bg = self.bgnbd
        drop = bg.a / (bg.a + bg.b) if bg.a + bg.b > 0 else float("nan")
        if drop < _NO_DROPOUT:
            out.append(
                f"BG/NBD sees almost no drop-out in this history (the chance to stop buying "
                f"after a purchase, a / (a + b), is "
                f"{'under 0.01%' if drop < 1e-4 else f'{drop:.2%}'}), so the probability of "
                "being active is close to 1 for everyone, long-lapsed customers too: judge "
                "lapsing by recency and the segments, and lifetime value by its ranking "
                "more than its level"
            )
        failed = [
            name
            for name, fit in (("BG/NBD", self.bgnbd), ("Gamma-Gamma", self.gamma_gamma))
            if fit.n_customers and not fit.converged  # (a hand-made model was not fitted)
        ]
        if failed:
            out.append(
                f"the {' and the '.join(failed)} fit did not converge (customers too alike "
                "or too few to tell the parameters apart): read its values with care"
            )
        gg = self.gamma_gamma
        if gg.n_customers and gg.p > _NO_SPEND_SPREAD:
            # the optimiser ran off to p -> infinity and called it converged: no spread
            # of spend within a customer, so each one's own mean is taken as it is
            out.append(
                f"the Gamma-Gamma fit on {count(gg.n_customers, 'repeat customer')} finds "
                f"no variation in a customer's spend from one purchase to the next "
                f"(p = {gg.p:.3g}), so each repeat customer's expected spend is their own "
                "mean, not pulled toward the others': too few or too alike purchases to "
                "tell, read spend and value with care"
            )
        empty = int(self.table["clv_value"].isna().sum()) if "clv_value" in self.table else 0
        if gg.q <= 1 and empty:
            # expected_spend leaves them NaN: the totals and segment means skip them
            out.append(
                f"the Gamma-Gamma fit has q = {gg.q:.3g} (at most 1: spend varies so much "
                "between customers that the mean spend of a customer not yet seen is "
                f"infinite), so {count(empty, 'customer')} without a repeat purchase "
                "have no expected spend or value (left empty, and out of the totals and "
                "segment means)"
            )
        data_end = self.summary.attrs.get("data_end")
        if data_end:
            gap = (pd.Timestamp(self.snapshot_date) - pd.Timestamp(data_end)).days
            if gap > 0:
                out.append(
                    f"the snapshot date is {count(gap, 'day')} after the end of the data "
                    f"({data_end}, the day after the last purchase): the models count those "
                    "days as days without purchases, so drop-out is higher and values are "
                    "lower than at the end of the data"
                )
        scale = 7.0 if str(self.summary.attrs.get("unit", "D")).upper() == "W" else 1.0
        history = float(self.summary["T"].max()) * scale if len(self.summary) else 0.0
        # compared in whole days, as the note writes them: a 12M horizon (365.25 days) on
        # a year of history (365 days) is not "longer" ("365 days is longer than 365 days")
        if round(self.horizon_days) > round(history):
            out.append(
                f"the horizon ({self.horizon_days:,.0f} days) is longer than the history the "
                f"models were fitted on ({history:,.0f} days): they assume steady buying, so "
                "a forecast that far out extrapolates (seasons included)"
            )
        return out

    def describe(self) -> dict[str, Any]:
        """Parameters, fit quality and totals, JSON-friendly."""
        return {
            "notes": self.notes,
            "snapshot_date": self.snapshot_date,
            "unit": self.summary.attrs.get("unit", "D"),
            "horizon_days": self.horizon_days,
            "discount_rate": self.discount_rate,
            # without it a reader could not tell profit from revenue
            "margin": self.margin,
            "bgnbd": asdict(self.bgnbd),
            "gamma_gamma": asdict(self.gamma_gamma),
            "customers": len(self.table),
            "expected_purchases": float(self.table["clv_expected_purchases"].sum()),
            "expected_value": float(self.table["clv_value"].sum()),
        }

    def _segment_labels(self, segments: Any) -> np.ndarray:
        """One label per row of :attr:`table`: a Series indexed by customer id was taken
        by position, so labels in another order gave every segment the wrong customers'
        values without a word."""
        if isinstance(segments, pd.DataFrame):
            raise WrongTypeError(
                "by_segment takes one label per customer, not a DataFrame",
                hint="pass one column, e.g. customers.set_index('customer_id')['segment_id']",
            )
        n = len(self.table)
        # a default 0..n-1 index (of any length) is positions, not customer ids
        positional = not isinstance(segments, pd.Series) or (
            isinstance(segments.index, pd.RangeIndex) and segments.index.start == 0
        )
        if positional:
            labels = np.asarray(segments)
            if labels.ndim != 1 or len(labels) != n:
                got = (
                    f"{len(labels):,} labels"
                    if labels.ndim == 1
                    else f"labels of shape {labels.shape}"
                )
                raise ConfigError(
                    f"by_segment got {got} for {n:,} customers",
                    hint="give one label per row of the table, or a Series indexed by customer_id",
                )
            return labels
        index = segments.index
        if pd.api.types.is_float_dtype(index) and (index == index.round()).all():
            index = index.astype("int64")  # 17850.0, as pandas reads ids beside blanks
        index = index.astype(str)
        if index.has_duplicates:
            twice = index[index.duplicated()].unique()[:3].tolist()
            raise ConfigError(
                f"by_segment got customers with two labels, e.g. {twice}",
                hint="give one label per customer_id",
            )
        ids = self.table["customer_id"].astype(str)
        missing = ~ids.isin(index)
        if missing.any():
            raise ConfigError(
                f"by_segment has no label for {int(missing.sum()):,} of {n:,} customers, "
                f"e.g. {ids[missing].head(3).tolist()}",
                hint="label every customer of the table (a Series indexed by customer_id)",
            )
        return pd.Series(segments.to_numpy(), index=index).reindex(ids).to_numpy()

    def by_segment(self, segments: pd.Series | np.ndarray, *, names: Any = None) -> pd.DataFrame:
        """Per segment: customers, mean probability alive, expected purchases and value
        (mean and total), the share of the total expected value, and the share of
        customers with a single purchase day (``one_purchase_share``: BG/NBD gives them a
        probability alive of 1 however long ago they bought, so a segment of them looks
        the most "active" of all; the report says so).

        ``segments`` is a Series indexed by customer id (matched on ``customer_id``, in
        any order), or an array (or a Series with a plain 0..n-1 index) in the row order
        of :attr:`table`."""
        frame = self.table.assign(segment_id=self._segment_labels(segments))
        if len(self.summary) == len(frame) and "frequency" in self.summary:
            frame["one_purchase"] = self.summary["frequency"].to_numpy(float) == 0
        g = frame.groupby("segment_id", sort=True)
        out = pd.DataFrame(
            {
                "customers": g.size(),
                "clv_p_alive_mean": g["clv_p_alive"].mean(),
                "clv_expected_purchases_mean": g["clv_expected_purchases"].mean(),
                "clv_value_mean": g["clv_value"].mean(),
                "clv_value_total": g["clv_value"].sum(),
            }
        )
        if "one_purchase" in frame:
            out["one_purchase_share"] = g["one_purchase"].mean()
        total = out["clv_value_total"].sum()
        out["clv_value_share"] = out["clv_value_total"] / total if total > 0 else 0.0
        out = out.reset_index()
        if names is not None:
            out.insert(1, "segment_name", out["segment_id"].map(dict(names)))
        return out

    def write_summary(self, path: str | Path) -> Path:
        """Write the summary in pymc-marketing's layout (``customer_id, frequency,
        recency, T, monetary_value``) as CSV or Parquet, atomically."""
        path = output_path(path, (".csv", ".parquet"))
        cols = ["customer_id", "frequency", "recency", "T", "monetary_value"]
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".parquet":
                self.summary[cols].to_parquet(tmp, index=False)
            else:
                self.summary[cols].to_csv(tmp, index=False)
        return path

    def write_table(self, path: str | Path) -> Path:
        """Write the summary and the per-customer values (CSV or Parquet), atomically."""
        path = output_path(path, (".csv", ".parquet"))
        frame = self.summary.merge(self.table, on="customer_id")
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".parquet":
                frame.to_parquet(tmp, index=False)
            else:
                frame.to_csv(tmp, index=False)
        return path


def customer_value(
    data: Prepared | CleanResult | ir.Table | pd.DataFrame,
    snapshot_date: str | dt.date | None = None,
    *,
    horizon: str | int | float = "12M",
    discount_rate: float = 0.0,
    margin: float = 1.0,
) -> ClvResult:
    """Fit BG/NBD and Gamma-Gamma and value every customer over ``horizon``.

    Parameters
    ----------
    data : Prepared, CleanResult, ibis.Table or DataFrame
        Clean lines, e.g. ``segmint.prepare(...)`` (or a customer feature table, or a
        summary from :func:`clv_summary`).
    snapshot_date : date or str, optional
        As in :func:`clv_summary`.
    horizon : str or number
        How far ahead to value customers (``"90D"``, ``"12M"``, or days).
    discount_rate : float
        Yearly discount rate for future purchases (0 = none); values are discounted
        month by month.
    margin : float
        Share of revenue that is profit (1 = value in revenue).

    Returns
    -------
    ClvResult
        ``table`` has ``customer_id`` and :data:`CLV_COLUMNS`: expected purchases over the
        horizon, probability alive, expected spend per purchase and expected value.
    """
    days = check_value_options(horizon, discount_rate, margin)
    data = _feature_table(data)
    if isinstance(data, pd.DataFrame) and {"recency", "T", "monetary_value"} <= set(data.columns):
        summary = data
    else:
        summary = clv_summary(data, snapshot_date)
    unit = _UNITS[str(summary.attrs.get("unit", "D"))]
    x = summary["frequency"].to_numpy(float)
    tx = summary["recency"].to_numpy(float)
    T = summary["T"].to_numpy(float)
    m = summary["monetary_value"].to_numpy(float)
    bg = BetaGeo.fit(x, tx, T)
    gg = GammaGamma.fit(x, m)
    log.info("BG/NBD %s, Gamma-Gamma %s", bg.params, gg.params)
    spend = gg.expected_spend(x, m) * margin
    h = days / unit
    purchases = bg.expected_purchases(h, x, tx, T)
    if discount_rate > 0:
        step = (365.25 / 12) / unit
        edges = np.append(np.arange(step, h, step), h)
        value = np.zeros_like(purchases)
        prev = np.zeros_like(purchases)
        for end in edges:
            cum = bg.expected_purchases(end, x, tx, T)
            value += (cum - prev) * spend / (1 + discount_rate) ** (end * unit / 365.25)
            prev = cum
    else:
        value = purchases * spend
    table = pd.DataFrame(
        {
            "customer_id": summary["customer_id"].to_numpy(),
            "clv_expected_purchases": purchases,
            "clv_p_alive": bg.p_alive(x, tx, T),
            "clv_expected_spend": spend,
            "clv_value": value,
        }
    )
    return ClvResult(summary, bg, gg, days, discount_rate, table, margin)
