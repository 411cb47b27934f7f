"""Future-validated segmentation: do the segments predict what customers do next?

Features and segments are computed from the data before a cutoff date; the outcomes are
what each of those customers did in the ``horizon`` after it (revenue, and whether they
bought again). For every candidate segmentation the back-test reports:

- **eta²** (η², the correlation ratio): the share of the variance of next-period revenue
  that the segments explain, ``SS_between / SS_total`` (0 = segments say nothing about
  future revenue, 1 = all of it);
- **retention AUC**: how well segment membership ranks customers by whether they buy
  again. Each customer is scored with their segment's repeat-purchase rate and the score
  is compared with the outcome (ROC AUC; 0.5 = no better than chance). Both figures use
  the segments' own outcomes, as a marketer reading the back-test would.

Candidates: the segmentation segmint chooses (geometric selection), every other
candidate of its model search, the classic RFM segments of the rule set, the R x F cells,
and the recipe of the source notebooks (log1p + StandardScaler + K-Means, k = 4, on
recency, frequency and monetary). Selecting *by the future* is honest only on an earlier
split: :func:`select_by_future` chooses on outcomes that end before the cutoff being
evaluated (or before the snapshot of a run), never on the outcomes it is judged by.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis
import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.cluster import KMeans
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from segmint._text import count
from segmint.errors import ConfigError, DataQualityError
from segmint.io import atomic_path, escape_formulas, output_path
from segmint.schema import customer_key
from segmint.segment.algorithms import NOISE
from segmint.segment.segmenter import share_text

__all__ = [
    "BacktestResult",
    "FutureChoice",
    "backtest",
    "future_outcomes",
    "reference_auc",
    "segment_metrics",
    "select_by_future",
]

log = logging.getLogger(__name__)
Progress = Callable[[str], None]

#: Columns of the back-test table.
TABLE_COLUMNS = (
    "candidate",
    "kind",
    "algorithm",
    "k",
    "value_tier",
    "n_segments",
    "smallest_share",
    "eta2",
    "retention_auc",
    "silhouette",
)


def future_outcomes(cleaned: Any, cutoff: str | dt.date, horizon: str | float) -> pd.DataFrame:
    """What every customer bought in ``[cutoff, cutoff + horizon)``.

    Parameters
    ----------
    cleaned : CleanResult or ibis.Table
        Clean transaction lines (returns kept aside are subtracted from the revenue).
    cutoff : date or str
    horizon : str or number of days
        ``"90D"``, ``"3M"``, ...

    Returns
    -------
    DataFrame
        ``customer_id, future_revenue, future_orders, purchased`` for customers who
        bought or returned in the window (everyone else: 0, 0, False); revenue is net of
        the returns, also for a customer who only returned (negative, no orders).
    """
    from segmint.clean import CleanResult
    from segmint.clv import horizon_end
    from segmint.features import _exact

    start = pd.Timestamp(cutoff)
    end = horizon_end(start, horizon)
    lines = cleaned.lines if isinstance(cleaned, CleanResult) else cleaned
    s_ts, e_ts = start.to_pydatetime(), end.to_pydatetime()
    returns = cleaned.returns if isinstance(cleaned, CleanResult) else None
    key = customer_key(lines)
    if returns is not None and key not in returns.columns:
        key = "customer_id"
    w = lines.filter((lines.invoice_date >= s_ts) & (lines.invoice_date < e_ts))
    # sales and returns in one table: a customer who only returns in the window has a
    # negative revenue (it was 0: the returns were joined to the buyers of the window)
    parts = [w.select(key, value=_exact(w.amount), invoice=w.invoice_id.cast("string"))]
    if returns is not None:
        r = returns.filter((returns.invoice_date >= s_ts) & (returns.invoice_date < e_ts))
        parts.append(
            r.select(key, value=-_exact(r.amount).abs(), invoice=ibis.null().cast("string"))
        )
    both = ibis.union(*parts, distinct=False) if len(parts) > 1 else parts[0]
    bought = both.group_by(key).aggregate(
        revenue=both.value.sum(), future_orders=both.invoice.nunique()
    )
    out = bought.select(
        customer_id=bought[key].cast("string"),
        future_revenue=bought.revenue.cast("float64"),
        future_orders=bought.future_orders.cast("int64"),
    ).to_pandas()
    out["purchased"] = out["future_orders"] > 0
    return out


def segment_metrics(labels: Any, revenue: Any, purchased: Any) -> dict[str, float]:
    """η² of ``revenue`` by segment and the retention AUC of segment membership.

    >>> segment_metrics([0, 0, 1, 1], [0.0, 0.0, 10.0, 10.0], [False, False, True, True])
    {'eta2': 1.0, 'retention_auc': 1.0, 'n_segments': 2, 'smallest_share': 0.5}
    """
    lab = pd.factorize(pd.Series(np.asarray(labels)).astype(str))[0]
    y = np.asarray(revenue, dtype=float)
    r = np.asarray(purchased, dtype=bool)
    n = len(lab)
    sizes = np.bincount(lab)
    means = np.bincount(lab, weights=y) / sizes
    total = float(((y - y.mean()) ** 2).sum())
    between = float((sizes * (means - y.mean()) ** 2).sum())
    eta2 = between / total if total > 0 else math.nan
    rates = np.bincount(lab, weights=r.astype(float)) / sizes
    auc = float(roc_auc_score(r, rates[lab])) if 0 < r.sum() < n else math.nan
    return {
        "eta2": round(eta2, 12),
        "retention_auc": round(auc, 12),
        "n_segments": int(len(sizes)),
        "smallest_share": float(sizes.min() / n),
    }


def reference_auc(frame: pd.DataFrame, seed: int = 0, folds: int = 5) -> dict[str, Any]:
    """How well a *continuous* score ranks customers by buying again: the ceiling to
    read the segmentations' retention AUC against.

    A logistic regression on every customer feature (signed log, standardised), fitted
    and scored out of fold (stratified ``folds``-fold cross-validation, shuffled with
    ``seed``), so no customer is scored by a model that saw its outcome. Segments group
    customers, so their AUC is at most about what such a score reaches on the same
    features; a target above it asks for other data, not another segmentation.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline

    from segmint.features import LINE_FEATURES
    from segmint.segment.transforms import signed_log1p

    cols = [c for c in LINE_FEATURES if c in frame.columns]
    y = frame["purchased"].to_numpy(bool)
    out: dict[str, Any] = {
        "model": "logistic regression, cross-validated",
        "features": cols,
        "folds": folds,
        "retention_auc": math.nan,
    }
    if not cols or min(y.sum(), (~y).sum()) < folds:
        return out
    X = signed_log1p(frame[cols].to_numpy(float))
    X = np.nan_to_num(X, nan=0.0, posinf=0.0, neginf=0.0)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
    score = cross_val_predict(model, X, y, cv=cv, method="predict_proba")[:, 1]
    out["retention_auc"] = round(float(roc_auc_score(y, score)), 12)
    return out


def _recipe_labels(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """The source notebooks' recipe: log1p, StandardScaler, K-Means k=4 on R, F, M."""
    X = np.log1p(frame[["recency_days", "frequency", "monetary"]].clip(lower=0).to_numpy(float))
    Z = StandardScaler().fit_transform(X)
    return KMeans(4, n_init=10, random_state=seed).fit_predict(Z)


@dataclass
class _Snapshot:
    """Features, RFM and outcomes of one cutoff."""

    cutoff: dt.date
    customers: pd.DataFrame  # features + rfm columns + outcomes, sorted by id
    rfm: Any


def _snapshot(
    prepared: Any, config: Any, cutoff: Any, horizon: Any, option: str = "--cutoff"
) -> _Snapshot:
    from segmint.pipeline import build_features

    try:
        feats, rfm = build_features(
            prepared,
            snapshot_date=str(cutoff),
            window=config.features.window,
            rule_set=config.rfm.rule_set,
            thresholds=config.rfm.thresholds,
        )
    except DataQualityError as exc:
        if exc.code != "no_customers":
            raise
        # the features' own message names --snapshot-date, which backtest does not have
        first = prepared.cleaned.lines.invoice_date.min().execute()
        known = first is not None and not pd.isna(first)
        start = f" (the data start on {pd.Timestamp(first).date()})" if known else ""
        raise DataQualityError(
            f"no customer has a purchase before the {option} {cutoff}{start}",
            hint=f"choose a later {option}",
            code="no_customers",
        ) from exc
    frame = feats.to_pandas().sort_values("customer_id", kind="stable").reset_index(drop=True)
    rfm_t = rfm.table.set_index("customer_id").reindex(frame["customer_id"]).reset_index()
    for col in ("r_score", "f_score", "rfm_segment"):
        frame[col] = rfm_t[col].to_numpy()
    out = future_outcomes(prepared.cleaned, feats.snapshot_date, horizon)
    frame = frame.merge(out, on="customer_id", how="left")
    frame["future_revenue"] = frame["future_revenue"].fillna(0.0)
    frame["future_orders"] = frame["future_orders"].fillna(0).astype("int64")
    frame["purchased"] = frame["future_orders"] > 0
    if not frame["purchased"].any():
        raise DataQualityError(
            f"no customer bought anything in the {horizon} after {feats.snapshot_date}",
            hint="choose an earlier cutoff or a longer horizon: the data must cover the "
            "horizon after the cutoff",
            code="no_future",
        )
    return _Snapshot(feats.snapshot_date, frame, rfm)


#: The value tier tried beside the configured setting when the configuration has none.
DEFAULT_VALUE_TIER = 0.02


def _tiers(config: Any) -> list[float | None]:
    """The value-tier settings searched: the configured one first, then the other of
    "none" and a tier (the configured share, or :data:`DEFAULT_VALUE_TIER`)."""
    own = config.segment.value_tier
    return [own, None] if own is not None else [None, DEFAULT_VALUE_TIER]


def _tier_suffix(tier: float | None) -> str:
    """How a candidate's name says it has a value tier (" + top 2% tier")."""
    return f" + top {share_text(tier)} tier" if tier is not None else ""


def _search(
    snap: _Snapshot, config: Any, k_max: int | None, progress: Progress | None
) -> pd.DataFrame:
    """Fit the configured model search at a snapshot, once without and once with a value
    tier (:func:`_tiers`); every candidate (at most ``k_max`` segments, the tier
    included) with its labels on all customers, and the η² / AUC of each. The chosen
    candidate of the configured setting is "chosen (geometry)"."""
    from segmint.pipeline import make_segmenter

    frame = snap.customers
    rows = []
    for n, tier in enumerate(_tiers(config)):
        top = (config.segment.k_max if k_max is None else k_max) - (tier is not None)
        if top < config.segment.k_min:
            continue
        seg = make_segmenter(config.segment, len(frame), k_max=top).set_params(value_tier=tier)
        if progress:
            progress(
                "fitting the model search"
                + (f" with the top {share_text(tier)} as a value tier" if tier is not None else "")
            )
        try:
            seg.fit(frame)
        except DataQualityError as exc:
            if tier is None or n == 0:
                raise
            log.warning("back-test: no candidates with a value tier of %g: %s", tier, exc)
            continue
        sel = seg.selection_
        suffix = _tier_suffix(tier)
        for i, cand in enumerate(sel.itertuples()):
            k = None if cand.k != cand.k else int(cand.k)
            chosen = bool(cand.chosen) and n == 0
            if cand.chosen:
                labels = seg.labels_
            else:
                if progress:
                    progress(f"fitting candidate {i + 1} of {len(sel)}{suffix} on all customers")
                one = clone(seg).set_params(
                    algorithm=cand.algorithm,
                    n_clusters=k if k is not None else "auto",
                    stability_resamples=0,
                )
                labels = one.fit(frame).labels_
            rows.append(
                {
                    "candidate": f"{cand.algorithm}"
                    + (f" k={k}" if k is not None else "")
                    + suffix,
                    "kind": "chosen (geometry)" if chosen else "candidate",
                    "algorithm": cand.algorithm,
                    "k": k,
                    "value_tier": tier,
                    "silhouette": float(cand.silhouette),
                    "stability": float(cand.stability),
                    "noise_share": float(np.mean(np.asarray(labels) == NOISE)),
                    **segment_metrics(labels, frame["future_revenue"], frame["purchased"]),
                    "_labels": labels,
                }
            )
    return pd.DataFrame(rows)


@dataclass
class FutureChoice:
    """The candidate chosen by its future at an earlier split."""

    cutoff: dt.date
    horizon: str
    algorithm: str
    k: int | None
    table: pd.DataFrame = field(repr=False)
    rule: str = ""
    value_tier: float | None = None

    def describe(self) -> dict[str, Any]:
        """JSON-friendly: the split, the choice, the rule and every candidate's scores."""
        cols = ["candidate", "algorithm", "k", "value_tier", "n_segments", "smallest_share",
                "eta2", "retention_auc", "future_rank", "chosen"]  # fmt: skip
        return {
            "cutoff": self.cutoff.isoformat(),
            "horizon": self.horizon,
            "algorithm": self.algorithm,
            "k": self.k,
            "value_tier": self.value_tier,
            "rule": self.rule,
            "candidates": json_records(self.table[cols]),
        }


def json_records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Rows as JSON-friendly dicts (NaN -> None, numpy scalars -> Python)."""
    import json

    return json.loads(frame.to_json(orient="records"))


def _future_rule(min_share: float, max_noise: float = 0.25) -> str:
    return (
        "candidates whose smallest segment holds at least "
        f"{min_share:.0%} of customers and that leave at most {max_noise:.0%} unassigned "
        "are ranked on eta² of next-period revenue and on "
        "retention AUC (each rank scaled to 0-1, 1 = best); the best mean rank wins, ties "
        "go to fewer segments"
    )


def _choose_future(
    table: pd.DataFrame, min_share: float, max_noise: float = 0.25
) -> tuple[int, pd.DataFrame]:
    t = table.copy()
    ok = (t["smallest_share"] >= min_share) & t["eta2"].notna() & t["retention_auc"].notna()
    if "noise_share" in t.columns:  # the geometric rule's noise limit holds here too
        ok &= t["noise_share"].fillna(0) <= max_noise
    if not ok.any():
        ok = t["eta2"].notna() & t["retention_auc"].notna()
    if not ok.any():
        raise DataQualityError(
            "no candidate segmentation could be scored on the future",
            hint="check that customers bought in the horizon after the cutoff",
            code="no_future",
        )
    score = pd.Series(np.nan, index=t.index)
    sub = t[ok]
    ranks = [
        (sub[c].rank(method="average") - 1) / max(len(sub) - 1, 1)
        for c in ("eta2", "retention_auc")
    ]
    score[ok] = (ranks[0] + ranks[1]) / 2
    t["future_rank"] = score
    best = score.max()
    tied = t[score >= best - 1e-12]
    pos = int(tied.sort_values(["n_segments"], kind="stable").index[0])
    t["chosen"] = t.index == pos
    return pos, t


def _check_no_lifetime_value(config: Any, what: str) -> None:
    """Refuse segment features that are lifetime value columns: a cutoff has customer
    features but no BG/NBD fit (it failed later as "fit: feature column(s)
    ['clv_value'] not in the customer table")."""
    from segmint.clv import CLV_COLUMNS

    clv = [f for f in config.segment.features or [] if f in CLV_COLUMNS]
    if clv:
        run = what.startswith("--")  # segmint run has --features; backtest only --config
        raise ConfigError(
            f"{'--features (segment.features)' if run else 'segment.features'} names "
            f"lifetime value ({', '.join(clv)}), which {what} does not fit at its cutoffs",
            hint="segment on customer features only, e.g. --features "
            "recency_days,frequency,monetary, or use --select-by geometry"
            if run
            else "leave the clv_ columns out of segment.features in the --config file",
        )


def select_by_future(
    prepared: Any,
    config: Any,
    *,
    cutoff: str | dt.date,
    horizon: str = "90D",
    k_max: int | None = None,
    progress: Progress | None = None,
    option: str = "selection cutoff",
) -> FutureChoice:
    """Choose the algorithm and number of segments by what they predict.

    Every candidate of the configured search is fitted on the customers as they were at
    ``cutoff`` and scored on what they did in ``horizon`` after it; see
    :func:`_future_rule` for the rule. Use a ``cutoff`` whose horizon ends before the
    data you will judge the choice on (:func:`backtest` and ``segmint run --select-by
    future`` do). ``option`` names the cutoff in errors (``--select-cutoff``).
    """
    say = progress or (lambda _s: None)
    _check_no_lifetime_value(config, "--select-by future")
    say(f"scoring candidate segmentations on the {horizon} after {cutoff}")
    snap = _snapshot(prepared, config, cutoff, horizon, option)
    table = _search(snap, config, k_max, progress)
    seg_cfg = config.segment
    pos, table = _choose_future(
        table.drop(columns="_labels"), seg_cfg.min_segment_share, seg_cfg.max_noise_share
    )
    row = table.loc[pos]
    return FutureChoice(
        cutoff=snap.cutoff,
        horizon=str(horizon),
        algorithm=str(row["algorithm"]),
        k=None if row["k"] != row["k"] or row["k"] is None else int(row["k"]),
        table=table,
        rule=_future_rule(seg_cfg.min_segment_share, seg_cfg.max_noise_share),
        value_tier=None if pd.isna(row["value_tier"]) else float(row["value_tier"]),
    )


@dataclass
class BacktestResult:
    """The back-test table and what it was computed on.

    Attributes
    ----------
    table : DataFrame
        One row per candidate segmentation: :data:`TABLE_COLUMNS`.
    customers : DataFrame
        The customers at the cutoff: features, RFM, outcomes and one ``seg_<i>`` label
        column per row of ``table``.
    future_choice : FutureChoice or None
        The choice made at the earlier split (``select_cutoff``), when asked for.
    reference : dict
        :func:`reference_auc`: the retention AUC of a cross-validated continuous score
        on the same features, the ceiling to read the segments' AUC against.
    outcomes_until : date or None
        The end of the outcomes actually observed: ``cutoff + horizon``, or the end of
        the data when the horizon runs past it (then :attr:`notes` says so).
    notes : list of str
        Caveats on reading the table (a horizon cut short by the end of the data).
    """

    cutoff: dt.date
    horizon: str
    table: pd.DataFrame
    customers: pd.DataFrame = field(repr=False)
    future_choice: FutureChoice | None = None
    reference: dict[str, Any] = field(default_factory=dict)
    outcomes_until: dt.date | None = None
    notes: list[str] = field(default_factory=list)

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary: the split, outcomes and the table."""
        c = self.customers
        return {
            "cutoff": self.cutoff.isoformat(),
            "horizon": self.horizon,
            "outcomes_until": self.outcomes_until.isoformat() if self.outcomes_until else None,
            "notes": list(self.notes),
            "customers": int(len(c)),
            "buyers_in_horizon": int(c["purchased"].sum()),
            "future_revenue": float(c["future_revenue"].sum()),
            "candidates": json_records(self.table[list(TABLE_COLUMNS)]),
            "future_choice": self.future_choice.describe() if self.future_choice else None,
            "reference": self.reference,
        }

    def segments(self, row: int) -> pd.DataFrame:
        """Per segment of one candidate: customers, next-period revenue (mean and share)
        and the share who bought again."""
        lab = self.customers[f"seg_{row}"]
        g = self.customers.groupby(lab)
        out = pd.DataFrame(
            {
                "customers": g.size(),
                "future_revenue_mean": g["future_revenue"].mean(),
                "future_revenue_share": g["future_revenue"].sum()
                / max(self.customers["future_revenue"].sum(), 1e-12),
                "bought_again": g["purchased"].mean(),
            }
        )
        return out.rename_axis("segment").reset_index()

    def write(self, path: str | Path) -> Path:
        """Write the table (CSV, or JSON with the whole description), atomically."""
        import json

        path = output_path(path, (".csv", ".json"), ".csv (the table) or .json (everything)")
        with atomic_path(path) as tmp:
            if path.suffix.lower() == ".json":
                Path(tmp).write_text(json.dumps(self.describe(), indent=2), encoding="utf-8")
            else:
                escape_formulas(self.table[list(TABLE_COLUMNS)]).to_csv(tmp, index=False)
        return path


def backtest(
    data: Any,
    *,
    cutoff: str | dt.date,
    horizon: str = "90D",
    config: Any = None,
    select_cutoff: str | dt.date | None = None,
    k_max: int | None = 8,
    con: ibis.BaseBackend | None = None,
    progress: Progress | None = None,
) -> BacktestResult:
    """Back-test candidate segmentations on what customers did after ``cutoff``.

    Parameters
    ----------
    data : path, DataFrame, Arrow stream table (pyarrow, polars, DuckDB) or Prepared
        Transactions (prepared once; every cutoff reuses the clean lines).
    cutoff : date or str
        Features and segments use the data before it; outcomes the ``horizon`` after.
    horizon : str
        ``"90D"``, ``"3M"``, ...
    config : RunConfig or dict, optional
        Loading, cleaning, features, RFM and model-search options, as for ``segmint run``.
    select_cutoff : date or str, optional
        Also choose a segmentation by its future at this earlier cutoff (its horizon
        must end on or before ``cutoff``) and evaluate that choice at ``cutoff``: the
        honest test of ``--select-by future``.
    k_max : int, optional, default 8
        At most this many segments per candidate (None: the configuration's k_max).

    Returns
    -------
    BacktestResult
    """
    from segmint.clv import horizon_end, horizon_start
    from segmint.config import RunConfig, load_run_config
    from segmint.features import _as_date
    from segmint.pipeline import Prepared, make_segmenter, prepare

    say = progress or (lambda _s: None)
    if config is None:
        config = RunConfig()
    elif isinstance(config, dict):
        config = load_run_config(
            None, {f"{s}.{k}": v for s, sec in config.items() for k, v in sec.items()}
        )
    _check_no_lifetime_value(config, "a back-test")
    cut = _as_date(cutoff, "cutoff")
    # calendar months and years ("3M" after 2011-09-01 ends at 2011-12-01), as --window
    # counts them; timestamps, so that a horizon of a fractional number of days is kept
    end = horizon_end(cut, horizon)
    days = (end - pd.Timestamp(cut)) / pd.Timedelta(days=1)
    if select_cutoff is not None:
        sel = _as_date(select_cutoff, "selection cutoff")
        if horizon_end(sel, horizon) > pd.Timestamp(cut):
            latest = horizon_start(cut, horizon).floor("D").date()
            raise ConfigError(
                f"the selection split ({sel} + {horizon}) overlaps the evaluated period "
                f"starting {cut}: choosing on outcomes you are judged on is not honest",
                hint=f"use a selection cutoff on or before {latest}",
            )
    prepared = (
        data
        if isinstance(data, Prepared)
        else prepare(data, config.load, config.clean, con=con, progress=say)
    )
    # every cutoff reads the clean lines: keep them once
    prepared.cleaned = prepared.cleaned.persist()
    if prepared.resolved.kind != "transactions":
        raise ConfigError(
            "a back-test needs transaction lines with dates: a customer-level table has "
            "no purchases to split at a cutoff",
            hint="give the transactions the customer table was made from",
        )
    last = pd.Timestamp(prepared.cleaned.lines.invoice_date.max().execute()).date()
    notes = []
    end_of_data = pd.Timestamp(last + dt.timedelta(days=1))
    if cut > last:
        # no line after the cutoff: nothing to judge the segments by (it failed after
        # the features, with a warning on recency and "no customer bought anything")
        fits = horizon_start(end_of_data, horizon).floor("D").date()
        raise ConfigError(
            f"--cutoff {cut} is after the data's last purchase ({last}): there are no "
            "purchases after it to judge the segments by",
            hint=f"choose a cutoff whose {horizon} horizon fits in the data, on or before "
            f"{fits} (e.g. --cutoff {fits})",
            code="cutoff_after_data",
        )
    if end > end_of_data:
        seen = max((end_of_data - pd.Timestamp(cut)).days, 0)
        notes.append(
            f"the {horizon} after {cut} run past the end of the data ({end_of_data.date()}, "
            f"the day after the last purchase): outcomes are observed for "
            f"{count(seen, 'day')} of {days:g} only, so fewer customers buy again and "
            "next-period revenue is lower than over the whole horizon; compare the "
            "candidates with each other, not with a back-test whose horizon is complete"
        )
    choice = None
    if select_cutoff is not None:
        choice = select_by_future(
            prepared,
            config,
            cutoff=sel,
            horizon=horizon,
            k_max=k_max,
            progress=say,
            option="--select-cutoff",
        )
    say(f"features and outcomes at {cut}")
    snap = _snapshot(prepared, config, cut, horizon)
    frame = snap.customers
    say("fitting candidate segmentations")
    table = _search(snap, config, k_max, say)
    seed = int(config.segment.seed)
    extra = [
        ("recipe: log + StandardScaler + K-Means k=4", "recipe", "kmeans", 4,
         _recipe_labels(frame, seed)),
        (f"RFM segments ({snap.rfm.rule_set.label})", "rfm", None, None,
         frame["rfm_segment"].to_numpy()),
        ("R x F cells", "rfm", None, None,
         (frame["r_score"].astype(str) + frame["f_score"].astype(str)).to_numpy()),
    ]  # fmt: skip
    if choice is not None:
        say(f"fitting the segmentation chosen at {choice.cutoff} on {cut}")
        fixed = make_segmenter(config.segment, len(frame), k_max=k_max).set_params(
            algorithm=choice.algorithm,
            n_clusters=choice.k if choice.k is not None else "auto",
            stability_resamples=0,
            value_tier=choice.value_tier,
        )
        extra.insert(
            0,
            (
                f"chosen by future at {choice.cutoff}: {choice.algorithm}"
                + (f" k={choice.k}" if choice.k else "")
                + _tier_suffix(choice.value_tier),
                "chosen (future)",
                choice.algorithm,
                choice.k,
                fixed.fit(frame).labels_,
            ),
        )
    rows = [
        {
            "candidate": name,
            "kind": kind,
            "algorithm": alg,
            "k": k,
            "value_tier": choice.value_tier if kind == "chosen (future)" and choice else None,
            "silhouette": math.nan,
            **segment_metrics(labels, frame["future_revenue"], frame["purchased"]),
            "_labels": labels,
        }
        for name, kind, alg, k, labels in extra
    ]
    table = pd.concat([pd.DataFrame(rows), table], ignore_index=True)
    order = {"chosen (future)": 0, "chosen (geometry)": 1, "recipe": 2, "rfm": 3, "candidate": 4}
    table = table.sort_values(
        by=["kind", "eta2"],
        key=lambda s: s.map(order) if s.name == "kind" else -s,
        kind="stable",
    ).reset_index(drop=True)
    labels = {f"seg_{i}": lab for i, lab in enumerate(table.pop("_labels"))}
    customers = pd.concat([frame, pd.DataFrame(labels)], axis=1)
    table["k"] = table["k"].astype("Int64")
    say("reference: a cross-validated continuous score")
    reference = reference_auc(frame, seed)
    result = BacktestResult(cut, str(horizon), table, customers, choice, reference)
    result.outcomes_until = min(end, end_of_data).date()
    result.notes = notes
    return result
