"""Segment profiles, business names and suggested actions.

:func:`profile` turns customers and their segment labels into one row per segment: size,
shares of customers and revenue, mean and median of every feature, each mean as an index
against the overall mean (100 = average), the dominant classic RFM segments inside it,
and a business **name**, a suggested **action** and the **reason** in one sentence.

Naming rules (documented in the README; first match wins, names unique within a run)
---------------------------------------------------------------------------------------
Each segment is placed on the whole customer base by the *percentile of its median*:
``p = (customers below + half the customers equal) / all customers`` for recency (low =
bought recently), frequency, monetary, and age (days since the first purchase =
recency + tenure). ``value`` is the mean of the frequency and monetary percentiles.

1. **top tier** — recency ≤ 0.40, frequency ≥ 0.75 and value ≥ 0.75. When the
   segmentation has two or more such segments, the one with the highest median monetary
   is **Champions** and the others **Loyal high spenders**; a single top-tier segment is
   **Loyal high spenders** (a coarse segmentation cannot single out an elite).
2. **Big spenders** — monetary ≥ 0.80 and frequency < 0.75.
3. **New customers** — recency ≤ 0.30 and age ≤ 0.20 (needs tenure).
4. **At risk** — recency ≥ 0.55 and value ≥ 0.50: they were worth a lot and are lapsing
   (a segment at the base's median recency is not lapsing yet).
5. **Dormant** — recency ≥ 0.65.
6. **high value, not lapsed** — recency < 0.55 and value ≥ 0.75 (the top tier's value
   bar, missed only on recency or just under the Big spenders bar): **Loyal high
   spenders** when frequency ≥ 0.75 (they already buy often), else **Big spenders**
   (monetary is then above 0.75). Telling the top fifth by value to "become regulars"
   missed who they are.
7. **Potential loyalists** — recency < 0.55 and 0.50 ≤ value < 0.75.
8. **Occasional low spenders** — everything else: value < 0.50 and recency < 0.65.

When two segments receive the same name, each gets a qualifier from the axis on which
the closest two of them are furthest apart, in the order of that axis:
"Dormant (recent)" / "Dormant (lapsed)", "At risk (lower spend)" / "At risk (higher
spend)"; with three or more, the ones in between are "lapsing", "regular", "mid spend"
or "established" (numbered from low to high when there are several). Only Dormant and
At risk twins are "lapsing" or "lapsed" on recency; other names get "more recent",
"mid recency" and "less recent". Density-method
noise (segment -1) is **Unassigned / outliers**. Every name and action can be
overridden; segments renamed by the user take no part in the qualifiers (rename one of
two "Dormant" and the other is plain "Dormant").

Names and reasons are relative to the customers of the run ("older than most"), never
absolute: in a three-month extract a "Dormant" segment's median last purchase can be 41
days ago. The description beside them gives the segment's own medians.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmint._tables import to_frame
from segmint._text import count
from segmint.errors import ConfigError, DataQualityError, WrongTypeError
from segmint.io import atomic_path, escape_formulas

__all__ = ["ACTIONS", "NOISE_NAME", "Profile", "name_segments", "profile"]

NOISE_NAME = "Unassigned / outliers"

#: Suggested action and the one-sentence reason behind it, per business name.
ACTIONS: dict[str, tuple[str, str]] = {
    "Champions": (
        "VIP programme: early access, referral rewards, no discounts needed",
        "They bought more recently, more often and for more money than most customers, "
        "so keep them delighted.",
    ),
    "Loyal high spenders": (
        "Loyalty programme with personalised cross-sell and upsell",
        "They buy often and spend well above average, so deepen the relationship.",
    ),
    "Big spenders": (
        "Premium offers and account management to raise purchase frequency",
        "Their baskets are large but they buy less often than the best customers.",
    ),
    "New customers": (
        "Onboarding series: welcome e-mails and a second-purchase incentive",
        "They started buying only recently, and the second order decides if they stay.",
    ),
    "At risk": (
        "Win-back campaign: personalised reminders and a reactivation offer",
        "They used to buy often or spend well, but their last purchase is older than "
        "that of most customers.",
    ),
    "Dormant": (
        "Low-cost reactivation e-mail; leave out of expensive channels",
        "Their last purchase is older than that of about two thirds of the customers, "
        "and they were never among the best.",
    ),
    "Potential loyalists": (
        "Membership or loyalty offer to turn them into regulars",
        "They have not lapsed (their last purchase is about as recent as the typical "
        "customer's or more) and buy or spend above the median.",
    ),
    "Occasional low spenders": (
        "Low-cost mass campaigns and bundles to raise the basket",
        "They buy rarely and spend little.",
    ),
    NOISE_NAME: (
        "Review individually before any campaign",
        "Their behaviour is unlike any segment (the clustering left them unassigned).",
    ),
}

#: Per axis, the qualifier for the segment with the lowest percentile, the ones in
#: between and the highest (recency and age percentiles are low for recent / new ones).
_QUALIFIERS = {
    "recency": ("recent", "lapsing", "lapsed"),
    "frequency": ("infrequent", "regular", "frequent"),
    "monetary": ("lower spend", "mid spend", "higher spend"),
    "age": ("newer", "established", "long-standing"),
}
#: The recency qualifiers of segments whose name says they have not lapsed.
_RECENCY_NOT_LAPSED = ("more recent", "mid recency", "less recent")


def _percentile_of(values: np.ndarray, v: float) -> float:
    """Mid-rank percentile of ``v`` among ``values`` (ties count half)."""
    if len(values) == 0 or v != v:
        return float("nan")
    below = np.count_nonzero(values < v)
    equal = np.count_nonzero(values == v)
    return float((below + 0.5 * equal) / len(values))


def _positions(customers: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    """Per segment, the percentiles of its medians (recency, frequency, monetary, age)."""
    cols: dict[str, np.ndarray] = {}
    for name, col in (
        ("recency", "recency_days"),
        ("frequency", "frequency"),
        ("monetary", "monetary"),
    ):
        if col in customers.columns:
            cols[name] = customers[col].to_numpy(float)
    if "recency_days" in customers.columns and "tenure_days" in customers.columns:
        cols["age"] = customers["recency_days"].to_numpy(float) + customers["tenure_days"].to_numpy(
            float
        )
    rows = []
    for seg in sorted(set(labels.tolist())):
        mask = labels == seg
        row: dict[str, Any] = {"segment_id": seg}
        for name, values in cols.items():
            row[name] = _percentile_of(values, float(np.median(values[mask])))
        if "monetary" in cols:
            row["median_monetary"] = float(np.median(cols["monetary"][mask]))
        rows.append(row)
    pos = pd.DataFrame(rows).set_index("segment_id")
    if {"frequency", "monetary"} <= set(pos.columns):
        pos["value"] = (pos["frequency"] + pos["monetary"]) / 2
    return pos


def name_segments(
    positions: pd.DataFrame,
    named: Collection[int] = (),
    modes: Mapping[str, Mapping[int, str]] | None = None,
) -> dict[int, str]:
    """Business names from the segments' percentile positions (rules in the module doc).

    ``named``: segments the user names; they take no part in telling same-name segments
    apart (once one of two "Dormant" is renamed, the other is plain "Dormant").
    ``modes``: per categorical feature the model segmented on, each segment's most common
    value; same-name segments that differ there and hardly on the RFM axes are told
    apart by it ("Potential loyalists (Offline)")."""
    needed = {"recency", "frequency", "monetary"}
    names: dict[int, str] = {}
    if not needed <= set(positions.columns):
        # not an RFM table: neutral names, still unique
        for seg in positions.index:
            names[int(seg)] = NOISE_NAME if seg == -1 else f"Segment {int(seg) + 1}"
        return names
    real = positions[positions.index != -1]
    top = real[
        (real["recency"] <= 0.40) & (real["frequency"] >= 0.75) & (real["value"] >= 0.75)
    ].sort_values("median_monetary", ascending=False)
    for i, seg in enumerate(top.index):
        names[int(seg)] = "Champions" if i == 0 and len(top) >= 2 else "Loyal high spenders"
    for seg, p in real.iterrows():
        if int(seg) in names:
            continue
        age = p.get("age", np.nan)
        if p["monetary"] >= 0.80 and p["frequency"] < 0.75:
            name = "Big spenders"
        elif p["recency"] <= 0.30 and age == age and age <= 0.20:
            name = "New customers"
        elif p["recency"] >= 0.55 and p["value"] >= 0.50:
            name = "At risk"
        elif p["recency"] >= 0.65:
            name = "Dormant"
        elif p["value"] >= 0.75:  # recency < 0.55 here: high value, not lapsed
            # the top tier missed on recency alone (a regular at the typical recency), or
            # monetary just under the Big spenders bar: neither is a "potential" loyalist
            name = "Loyal high spenders" if p["frequency"] >= 0.75 else "Big spenders"
        elif p["value"] >= 0.50:  # recency < 0.55 here
            name = "Potential loyalists"
        else:
            name = "Occasional low spenders"
        names[int(seg)] = name
    if -1 in positions.index:
        names[-1] = NOISE_NAME
    return _unique(names, positions, skip=set(named), modes=modes)


#: Below this smallest gap (in percentile points of the customer base) on every RFM axis,
#: same-name segments told apart by a categorical feature are qualified by its value.
_CATEGORICAL_GAP = 0.10


def _unique(
    names: dict[int, str],
    positions: pd.DataFrame,
    skip: set[int] | None = None,
    modes: Mapping[str, Mapping[int, str]] | None = None,
) -> dict[int, str]:
    out = dict(names)
    by_name: dict[str, list[int]] = {}
    for seg, name in names.items():
        if seg not in (skip or set()):
            by_name.setdefault(name, []).append(seg)
    for name, segs in by_name.items():
        if len(segs) < 2:
            continue
        # the axis on which the closest two of them are furthest apart: the widest
        # spread could come from one outlier and leave two nearly equal (1.5 days of
        # age between a "long-standing" and an "established" that spent 3x more)
        axes = [a for a in _QUALIFIERS if a in positions.columns]
        gap = {a: float(np.diff(np.sort(positions.loc[segs, a].to_numpy())).min()) for a in axes}
        axis = max(gap, key=lambda a: gap[a])
        if gap[axis] < _CATEGORICAL_GAP:
            # nearly equal on recency, frequency, spend and age: "newer" / "long-standing"
            # for 3 percentile points of age would name a difference that is not there;
            # a categorical feature of the model with a different main value per segment
            # is what split them
            by_value = next(
                (
                    {s: str(m[s]) for s in segs}
                    for m in (modes or {}).values()
                    if all(s in m for s in segs) and len({m[s] for s in segs}) == len(segs)
                ),
                None,
            )
            if by_value is not None:
                for seg in segs:
                    out[int(seg)] = f"{name} ({by_value[seg]})"
                continue
        order = positions.loc[segs, axis].sort_values(kind="stable").index
        low, mid, high = _QUALIFIERS[axis]
        if axis == "recency" and name not in _LAPSED_NAMES:
            # "Loyal high spenders (lapsed)" for a segment that bought more recently
            # than the typical customer: only a lapsed name's twins can be "lapsed"
            low, mid, high = _RECENCY_NOT_LAPSED
        middle = len(segs) - 2
        for i, seg in enumerate(order):
            if i == 0:
                q = low
            elif i == len(segs) - 1:
                q = high
            else:
                q = mid if middle == 1 else f"{mid} {i}"
            out[int(seg)] = f"{name} ({q})"
    return out


def _describe(frame: pd.DataFrame, mask: np.ndarray) -> str:
    """One line of median figures, e.g. "last purchase 15 days ago, 22 orders, 5,210 spent"."""
    bits = []
    part = frame[mask]
    if "recency_days" in frame.columns:
        bits.append(f"last purchase {count(part['recency_days'].median(), 'day', fmt=',.0f')} ago")
    if "frequency" in frame.columns:
        bits.append(count(part["frequency"].median(), "order", fmt=",.0f"))
    if "monetary" in frame.columns:
        bits.append(f"{part['monetary'].median():,.0f} spent")
    if "tenure_days" in frame.columns:
        # tenure is first to last purchase: "customer for 0 days" read as brand new for
        # one-time buyers whose only purchase was months ago
        bits.append(
            f"{count(part['tenure_days'].median(), 'day', fmt=',.0f')} from first to last purchase"
        )
    return ("median: " + ", ".join(bits)) if bits else ""


#: Names whose action assumes the customers stopped buying.
_LAPSED_NAMES = ("Dormant", "At risk")
#: Share of a lapsed-named segment buying as recently as the typical customer from which
#: its description warns (a coarse segmentation can lump recent buyers in with lapsed ones).
_CAVEAT_SHARE = 0.2


def _caveat(frame: pd.DataFrame, mask: np.ndarray, base: str) -> str:
    """A warning when the name does not fit many of the segment's own customers: the
    name comes from the segment's medians, and a reactivation campaign sent to a
    "Dormant" segment must not surprise a fifth of it that bought last week."""
    if base not in _LAPSED_NAMES or "recency_days" not in frame.columns:
        return ""
    recency = frame["recency_days"].to_numpy(float)
    typical = float(np.nanmedian(recency))
    share = float(np.mean(recency[mask] <= typical))
    if share < _CAVEAT_SHARE:
        return ""
    return (
        f"but {share:.0%} of them bought in the last {count(typical, 'day', fmt=',.0f')}, "
        "as recently as the "
        "typical customer: leave those out of a reactivation campaign"
    )


@dataclass
class Profile:
    """Per-segment profile table and what it was computed from.

    Attributes
    ----------
    table : DataFrame
        One row per segment (noise last): ``segment_id, name, auto_name, action, reason,
        size, share_customers, revenue, share_revenue, description`` (median figures in
        words), then ``mean_<f>``, ``median_<f>`` and
        ``index_<f>`` per feature, and ``top_rfm_segments`` when RFM segments were given,
        followed by ``rfm_rule_set`` (the rule set that named them) when it is known.
    features : list of str
        The profiled features.
    overall : dict
        Mean and median of every feature over all customers.
    positions : DataFrame
        The percentile positions the names were derived from.
    """

    table: pd.DataFrame
    features: list[str]
    overall: dict[str, dict[str, float]]
    positions: pd.DataFrame
    crosstab: pd.DataFrame | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def names(self) -> dict[int, str]:
        """Segment id -> business name."""
        return dict(zip(self.table["segment_id"], self.table["name"], strict=True))

    def actions(self) -> dict[int, str]:
        """Segment id -> suggested action."""
        return dict(zip(self.table["segment_id"], self.table["action"], strict=True))

    def to_records(self) -> list[dict[str, Any]]:
        """The table as JSON-friendly dictionaries."""
        return json.loads(self.table.to_json(orient="records"))

    def write_csv(self, path: str | Path) -> Path:
        """Write ``segments.csv`` (the profile table), atomically; text cells that a
        spreadsheet would run as a formula (a name given with ``--name``) get a
        leading ``'`` (:func:`segmint.io.escape_formulas`)."""
        with atomic_path(path) as tmp:
            escape_formulas(self.table).to_csv(tmp, index=False)
        return Path(path)


def _as_overrides(value: Mapping[int, str] | Sequence[str] | None, what: str, ids: list[int]):
    out = _overrides(value, what, ids)
    blank = [k for k, v in out.items() if not v]
    if what == "names" and blank:
        # the CLI refused --name 0= ; in Python the segment was listed with no name
        raise ConfigError(
            f"names: segment {blank[0]} is given an empty name",
            hint="give every renamed segment a name, or leave it out to keep its own",
        )
    return out


def _overrides(value: Mapping[int, str] | Sequence[str] | None, what: str, ids: list[int]):
    if value is None:
        return {}
    if isinstance(value, str):  # a Sequence too: "Best" named segments "B", "e", "s", "t"
        raise WrongTypeError(
            f"{what} is one text, not one per segment",
            hint=f'e.g. {what}={{0: "Champions", 1: "At risk"}} or a list in segment order',
        )
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            try:
                key = int(k)
            except (TypeError, ValueError):
                raise ConfigError(f"{what}: {k!r} is not a segment id") from None
            if key not in ids:
                raise ConfigError(
                    f"{what}: there is no segment {key}",
                    hint=f"segment ids of this run: {', '.join(map(str, ids))}",
                )
            out[key] = str(v).strip()
        return out
    values = list(value)
    if len(values) > len(ids):
        raise ConfigError(f"{what}: {len(values)} given for {len(ids)} segments")
    return dict(zip(ids, (str(v).strip() for v in values), strict=False))


def profile(
    customers: Any,
    labels: Sequence[int] | np.ndarray,
    *,
    features: Sequence[str] | None = None,
    rfm_segments: Sequence[str] | pd.Series | None = None,
    rfm_rule_set: str | None = None,
    names: Mapping[int, str] | Sequence[str] | None = None,
    actions: Mapping[int, str] | Sequence[str] | None = None,
    revenue: str = "monetary",
    notes: Mapping[int, str] | None = None,
    categorical: Sequence[str] | None = None,
) -> Profile:
    """Profile segments: sizes, shares, means, medians, indices, names and actions.

    Parameters
    ----------
    customers : DataFrame or CustomerFeatures
        One row per customer (the table the segmentation was fitted on).
    labels : array of int
        Segment id per customer (-1 = unassigned).
    features : list of str, optional
        Features to profile; default every numeric column except ids.
    rfm_segments : array of str, optional
        Classic RFM segment per customer (default the ``rfm_segment`` column when present)
        for the dominant-RFM-segments column and the cross-tab.
    rfm_rule_set : str, optional
        The label of the rule set that named ``rfm_segments`` (e.g. ``"rf-grid v1"``),
        written as the ``rfm_rule_set`` column beside ``top_rfm_segments``: the same
        names mean other cells in other rule sets. Default: the ``rfm_rule_set`` column
        of ``customers`` when the RFM segments come from it too.
    names, actions : dict or list, optional
        Overrides by segment id (or in segment-id order).
    revenue : str, default "monetary"
        Column whose sum is the revenue share.
    notes : dict, optional
        Segment id -> what defines the segment beyond its figures (e.g. the value tier of
        a :class:`~segmint.segment.Segmenter`), put before its ``description``.
    categorical : list of str, optional
        Text columns the segmentation used (``country``, ``last_channel``): each gets a
        ``top_<column>`` column with the segment's three most common values and their
        shares, and same-name segments that differ mainly there are named by their most
        common value.

    Returns
    -------
    Profile

    Raises
    ------
    DataQualityError
        ``labels`` and ``customers`` differ in length.
    ConfigError
        An override names an unknown segment or makes two names equal.

    Examples
    --------
    >>> import pandas as pd
    >>> t = pd.DataFrame({"recency_days": [5, 6, 300, 310], "frequency": [9, 8, 1, 1],
    ...                   "monetary": [900.0, 800.0, 20.0, 30.0]})
    >>> p = profile(t, [0, 0, 1, 1])
    >>> p.table["size"].tolist(), p.table["share_revenue"].round(3).tolist()
    ([2, 2], [0.971, 0.029])
    >>> p.names()
    {0: 'Loyal high spenders', 1: 'Dormant'}
    """
    frame = to_frame(customers, "profile")  # pandas, CustomerFeatures, polars, DuckDB, ...
    if frame is None:
        frame = pd.DataFrame(customers)
    if hasattr(labels, "labels_") or hasattr(labels, "segmenter"):
        # profile(customers, segmenter) was a raw "int() argument must be ... not
        # 'Segmenter'"
        raise WrongTypeError(
            f"profile takes each customer's segment label, not a {type(labels).__name__}",
            hint="pass segmenter.labels_ (or model.predict(customers))",
        )
    try:
        labels = np.asarray(labels).astype(int)
    except (TypeError, ValueError) as exc:
        raise WrongTypeError(
            f"profile's labels must be whole numbers, one per customer ({exc})",
            hint="pass segmenter.labels_ (or model.predict(customers))",
        ) from None
    if len(labels) != len(frame):
        raise DataQualityError(
            f"{len(labels):,} segment labels for {len(frame):,} customers",
            hint="pass the labels of the same customer table",
        )
    if len(frame) == 0:
        raise DataQualityError("no customers to profile")
    if features is None:
        features = [
            c
            for c in frame.columns
            if c != "customer_id"
            and pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])
        ]
    features = list(features)
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"feature(s) {missing} not in the customer table",
            hint=f"columns: {', '.join(map(str, frame.columns))}",
        )
    data = frame[features].astype(float)
    n = len(frame)
    ids = sorted(set(labels.tolist()), key=lambda s: (s == -1, s))
    overall = {
        f: {"mean": float(data[f].mean()), "median": float(data[f].median())} for f in features
    }
    rev = frame[revenue].astype(float) if revenue in frame.columns else None
    total_rev = float(rev.sum()) if rev is not None else float("nan")
    if rfm_segments is None and "rfm_segment" in frame.columns:
        rfm_segments = frame["rfm_segment"]
        if rfm_rule_set is None and "rfm_rule_set" in frame.columns:
            labels_used = frame["rfm_rule_set"].dropna().unique()
            rfm_rule_set = "; ".join(map(str, labels_used)) or None
    rfm = None if rfm_segments is None else pd.Series(np.asarray(rfm_segments), name="rfm")

    categorical = list(categorical or [])
    missing = [c for c in categorical if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"categorical column(s) {missing} not in the customer table",
            hint=f"columns: {', '.join(map(str, frame.columns))}",
        )
    levels = {c: frame[c].astype("string").fillna("(missing)") for c in categorical}
    modes = {
        c: {s: values[labels == s].value_counts().index[0] for s in ids if s != -1}
        for c, values in levels.items()
    }
    positions = _positions(frame, labels)
    name_over = _as_overrides(names, "names", ids)
    action_over = _as_overrides(actions, "actions", ids)
    auto_names = name_segments(positions, modes=modes)
    if name_over:
        # qualifiers that told apart segments the user has renamed go: the segments
        # left with an automatic name are told apart among themselves only, unless that
        # gives a name the user chose for another segment
        among_rest = name_segments(positions, named=set(name_over), modes=modes)
        chosen = set(name_over.values())
        auto_names = {
            s: auto_names[s] if s in name_over or among_rest[s] in chosen else among_rest[s]
            for s in auto_names
        }
    final_names = {s: name_over.get(s, auto_names[s]) for s in ids}
    dupes = {v for v in final_names.values() if list(final_names.values()).count(v) > 1}
    if dupes:
        raise ConfigError(
            f"segment names must be unique; {sorted(dupes)} given to more than one segment",
            hint="give each segment its own name",
        )

    rows = []
    for s in ids:
        mask = labels == s
        size = int(mask.sum())
        auto = auto_names[s]
        base = auto.split(" (")[0]
        action, reason = ACTIONS.get(base, ("", ""))
        row: dict[str, Any] = {
            "segment_id": s,
            "name": final_names[s],
            "auto_name": auto,
            "action": action_over.get(s, action),
            "reason": reason if s not in action_over else "set by the user",
            "size": size,
            "share_customers": size / n,
            "revenue": float(rev[mask].sum()) if rev is not None else np.nan,
            "share_revenue": (
                float(rev[mask].sum()) / total_rev if rev is not None and total_rev else np.nan
            ),
        }
        row["description"] = "; ".join(
            t
            for t in ((notes or {}).get(s), _describe(frame, mask), _caveat(frame, mask, base))
            if t
        )
        part = data[mask]
        for f in features:
            mean = float(part[f].mean())
            row[f"mean_{f}"] = mean
            row[f"median_{f}"] = float(part[f].median())
            base_mean = overall[f]["mean"]
            row[f"index_{f}"] = 100.0 * mean / base_mean if base_mean else np.nan
        if {"recency", "frequency", "monetary"} <= set(positions.columns):
            pos = positions.loc[s]
            row["rfm_position"] = float(
                ((1.0 - pos["recency"]) + pos["frequency"] + pos["monetary"]) / 3.0
            )
        if rfm is not None:
            top = rfm[mask].value_counts(normalize=True).head(3)
            row["top_rfm_segments"] = "; ".join(f"{k} {v:.0%}" for k, v in top.items())
            if rfm_rule_set:
                row["rfm_rule_set"] = rfm_rule_set
        for c, values in levels.items():
            top = values[mask].value_counts(normalize=True).head(3)
            row[f"top_{c}"] = "; ".join(f"{k} {v:.0%}" for k, v in top.items())
        rows.append(row)
    table = pd.DataFrame(rows)
    crosstab = None
    if rfm is not None:
        crosstab = pd.crosstab(
            pd.Series(labels, name="segment_id").map(final_names), rfm.rename("rfm_segment")
        )
    return Profile(
        table=table,
        features=features,
        overall=overall,
        positions=positions,
        crosstab=crosstab,
        meta={
            "n_customers": n,
            "revenue_column": revenue if rev is not None else None,
            "categorical": categorical,
        },
    )
