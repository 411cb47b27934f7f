"""How well *any* score built from purchase history ranks Online Retail customers by
whether they buy again: the ceiling behind issue 9's retention-AUC target.

For each cutoff (default 2011-06-01 and 2011-09-01, 90-day horizon, as the README's
back-test) it fits, out of fold (5-fold stratified cross-validation, seed 0):

* a logistic regression and a gradient-boosted classifier (scikit-learn's
  ``HistGradientBoostingClassifier``) on segmint's eight customer features (signed log),
  the same inputs as ``segmint.backtest.reference_auc``;
* the same two models on those features plus behavioural ones a segmentation could be
  built on: orders and revenue in the last 30, 60, 90 and 180 days, active days and
  months, orders per day of tenure, the mean gap between orders and how overdue the next
  order is (days since the last one / mean gap);
* the same two models on all of those plus signals beyond timing and amounts: whether
  the customer is in the United Kingdom, mean unit price, mean hour and Friday-to-Sunday
  share of the lines, share of bulk lines (quantity >= 12), lines per order, and what
  they buy: 20 components of a truncated SVD of the customer x product matrix (which products each
  customer bought, scikit-learn's ``TruncatedSVD``, seed 0).

The last column cuts the logistic regression's out-of-fold score into eight equal-size
groups and ranks each customer by their group's repeat rate: what eight equal-size
segments cut from that score reach, measured the way segmint measures a segmentation
(in-sample repeat rates).

A segmentation ranks customers by its segments' repeat rates, which is a coarsened
version of such a score, so its AUC stays near or under these figures. The extra
features are computed with pandas on the clean lines (391k lines: an analysis, not the
product path). Prints one line per cutoff, feature set and model.

Usage::

    .venv/bin/python benchmarks/retention_ceiling.py [--data PATH] [--cutoff 2011-09-01 ...]
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from segmint.backtest import future_outcomes
from segmint.features import LINE_FEATURES
from segmint.pipeline import build_features, prepare
from segmint.segment.transforms import signed_log1p

DATA = Path(os.environ.get("SEGMINT_DATA", Path(__file__).resolve().parents[2] / "shared/datasets"))


def behaviour(lines: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Behavioural features per customer from the clean lines before ``cutoff``."""
    before = lines[lines["invoice_date"] < cutoff]
    orders = (
        before.groupby(["customer_id", "invoice_id"])
        .agg(when=("invoice_date", "min"), value=("amount", "sum"))
        .reset_index()
    )
    g = orders.groupby("customer_id")
    out = pd.DataFrame(index=g.size().index)
    for days in (30, 60, 90, 180):
        recent = orders[orders["when"] >= cutoff - pd.Timedelta(days=days)]
        rg = recent.groupby("customer_id")
        out[f"orders_{days}d"] = rg.size().reindex(out.index).fillna(0)
        out[f"revenue_{days}d"] = rg["value"].sum().reindex(out.index).fillna(0)
    out["active_days"] = before.groupby("customer_id")["invoice_date"].agg(
        lambda s: s.dt.normalize().nunique()
    )
    out["active_months"] = before.groupby("customer_id")["invoice_date"].agg(
        lambda s: s.dt.to_period("M").nunique()
    )
    first, last, n = g["when"].min(), g["when"].max(), g.size()
    out["orders_per_day"] = n / ((cutoff - first).dt.days + 1)
    gap = (last - first).dt.days / (n - 1).clip(lower=1)
    out["mean_gap_days"] = gap
    out["overdue"] = (cutoff - last).dt.days / (gap + 1)
    return out


def other_signals(lines: pd.DataFrame, customers: pd.Index, cutoff: pd.Timestamp) -> pd.DataFrame:
    """Signals beyond purchase timing and amounts, per customer, before ``cutoff``: where
    they are, what they pay, when they order, how they order, and what they buy (20 SVD
    components of the customer x product matrix)."""
    before = lines[lines["invoice_date"] < cutoff]
    g = before.groupby("customer_id")
    when = before["invoice_date"]
    out = pd.DataFrame(index=customers)
    country = g["country"].agg(lambda s: s.mode().iat[0])
    out["uk"] = (country == "United Kingdom").astype(float)
    out["mean_price"] = g["unit_price"].mean()
    out["mean_hour"] = when.dt.hour.groupby(before["customer_id"]).mean()
    out["late_week_share"] = (when.dt.day_of_week >= 4).groupby(before["customer_id"]).mean()
    out["bulk_share"] = (before["quantity"] >= 12).groupby(before["customer_id"]).mean()
    out["lines_per_order"] = g.size() / g["invoice_id"].nunique()
    pairs = before[["customer_id", "product_id"]].drop_duplicates()
    products = pd.Index(pairs["product_id"].unique())
    rows = customers.get_indexer(pairs["customer_id"])
    keep = rows >= 0
    matrix = sparse.csr_matrix(
        (np.ones(int(keep.sum())), (rows[keep], products.get_indexer(pairs["product_id"])[keep])),
        shape=(len(customers), len(products)),
    )
    svd = TruncatedSVD(20, random_state=0).fit_transform(matrix)
    for i in range(svd.shape[1]):
        out[f"products_{i}"] = svd[:, i]
    return out.reindex(customers)


def in_groups(score: np.ndarray, y: np.ndarray, groups: int = 8) -> float:
    """AUC of ``score`` cut into ``groups`` equal-size groups, each customer ranked by
    the repeat rate of their group: what that many segments cut from this score reach,
    measured in-sample as segmint measures a segmentation."""
    cut = pd.qcut(pd.Series(score).rank(method="first"), groups, labels=False).to_numpy()
    rate = pd.Series(y).groupby(cut).mean().to_numpy()
    return float(roc_auc_score(y, rate[cut]))


def aucs(X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Out-of-fold AUC of a logistic regression and a boosted model, and of the
    logistic regression's score cut into eight groups."""
    cv = StratifiedKFold(5, shuffle=True, random_state=0)
    models = {
        "logistic": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "boosted": HistGradientBoostingClassifier(
            max_iter=200, learning_rate=0.05, max_leaf_nodes=15, random_state=0
        ),
    }
    scores = {
        name: cross_val_predict(m, X, y, cv=cv, method="predict_proba")[:, 1]
        for name, m in models.items()
    }
    out = {name: float(roc_auc_score(y, s)) for name, s in scores.items()}
    out["8 groups"] = in_groups(scores["logistic"], y)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DATA / "online_retail.csv.gz")
    ap.add_argument("--cutoff", nargs="+", default=["2011-06-01", "2011-09-01"])
    ap.add_argument("--horizon", default="90D")
    args = ap.parse_args()
    warnings.filterwarnings("ignore", category=RuntimeWarning)
    prepared = prepare(args.data)
    prepared.cleaned = prepared.cleaned.persist()  # read once per cutoff and for the lines
    lines = prepared.cleaned.lines.to_pandas()
    print(
        f"{'cutoff':<11} {'features':<28} {'customers':>9} {'logistic':>9} {'boosted':>9}"
        f" {'8 groups':>9}"
    )
    for cut in args.cutoff:
        cutoff = pd.Timestamp(cut)
        feats, _ = build_features(prepared, snapshot_date=cut)
        frame = feats.to_pandas().set_index("customer_id")
        out = future_outcomes(prepared.cleaned, cutoff.date(), args.horizon)
        y = out.set_index("customer_id")["purchased"].reindex(frame.index, fill_value=False)
        y = y.to_numpy(bool)
        cols = [c for c in LINE_FEATURES if c in frame.columns]
        base = frame[cols]
        extra = base.join(behaviour(lines, cutoff))
        more = extra.join(other_signals(lines, frame.index, cutoff))
        for label, table in (
            (f"segmint's {len(cols)}", base),
            (f"+ behaviour ({extra.shape[1]})", extra),
            (f"+ other signals ({more.shape[1]})", more),
        ):
            X = np.nan_to_num(signed_log1p(table.to_numpy(float)))
            r = aucs(X, y)
            print(
                f"{cut:<11} {label:<28} {len(y):>9,} {r['logistic']:>9.3f} {r['boosted']:>9.3f}"
                f" {r['8 groups']:>9.3f}"
            )


if __name__ == "__main__":
    main()
