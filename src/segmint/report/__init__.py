"""Reports: one summary computed once, rendered as a self-contained HTML file, charts, JSON.

:func:`build_report` gathers every figure of a segmentation into one JSON-friendly summary
dict, builds the charts (Vega-Lite through Altair), and renders the HTML report from a
Jinja template (``templates/report.html.j2``, autoescaped) with the styles, the chart
data and the Vega/Vega-Lite/Vega-Embed JavaScript (bundled by vl-convert) inlined: the
file opens offline and references nothing outside itself. The same charts are exported
to PNG and SVG by vl-convert, without a browser or network; ``summary.json`` holds the
same figures as the report.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmint._tables import ACCEPTED, to_frame
from segmint._text import number_text, percent_text
from segmint.errors import ConfigError, DataQualityError
from segmint.features import LINE_FEATURES
from segmint.io import atomic_path
from segmint.profile import Profile, profile
from segmint.report._charts import CHART_TITLES, build_charts

__all__ = ["CHART_TITLES", "Report", "build_report"]

#: Features where a low value is the good one: the profile table colours their index the
#: other way round (a recency index of 150 is a lapsing segment, not a strong one).
LOWER_IS_BETTER = frozenset({"recency_days", "return_rate"})

log = logging.getLogger(__name__)

_TEMPLATES = Path(__file__).parent / "templates"


@functools.lru_cache(maxsize=1)
def _javascript() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script (vl-convert bundles them offline).

    Bundling takes about 2 s, so the result is kept in the user's cache folder
    (``$XDG_CACHE_HOME/segmint`` or ``~/.cache/segmint``), keyed by the vl-convert
    version; when that folder cannot be written the bundle is simply rebuilt.
    """
    import vl_convert as vlc

    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "segmint"
    cached = base / f"vega-bundle-{vlc.__version__}.js"
    try:
        return cached.read_text(encoding="utf-8")
    except OSError:
        pass
    bundle = vlc.javascript_bundle()
    try:
        base.mkdir(parents=True, exist_ok=True)
        with atomic_path(cached) as tmp:
            tmp.write_text(bundle, encoding="utf-8")
    except OSError:
        log.debug("cannot cache the Vega bundle in %s", base)
    return bundle


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        v = float(value)
        return None if v != v or v in (float("inf"), float("-inf")) else v
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, dt.date | dt.datetime | pd.Timestamp):
        return str(value)
    return value


@dataclass
class Report:
    """A built report: the summary, the chart specs and the HTML.

    Attributes
    ----------
    summary : dict
        Every figure shown in the report (what ``summary.json`` holds).
    charts : dict
        Chart key -> Vega-Lite spec.
    html : str
        The self-contained HTML document.
    profile : Profile
        The segment profiles the report shows (``segments.csv``).
    """

    summary: dict[str, Any]
    charts: dict[str, dict[str, Any]]
    html: str
    profile: Profile | None
    timings: dict[str, float] = field(default_factory=dict)

    def __repr__(self) -> str:
        """A line of figures: the default repr printed the whole HTML (over 1 MB, with
        the inlined JavaScript), which a notebook cell showing ``report`` froze on."""
        data = self.summary.get("data") or {}
        size = len(self.html.encode("utf-8")) / 1e6
        return (
            f"<Report {self.summary.get('title', '')!r}: {data.get('customers', 0):,} "
            f"customers, {self.summary.get('n_segments', '?')} segments, "
            f"{len(self.charts)} charts, {size:.1f} MB of HTML; write('report.html'), "
            "write_charts(folder), write_summary(path), .profile>"
        )

    def write(self, path: str | Path) -> Path:
        """Write the HTML report, atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(self.html, encoding="utf-8")
        return Path(path)

    def write_summary(self, path: str | Path) -> Path:
        """Write ``summary.json`` (the same figures as the report), atomically."""
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(self.summary, indent=2, allow_nan=False), encoding="utf-8")
        return Path(path)

    def write_charts(
        self, folder: str | Path, formats: tuple[str, ...] = ("png", "svg"), scale: float = 2.0
    ) -> list[Path]:
        """Export every chart as PNG and/or SVG files into ``folder`` (no browser needed)."""
        import vl_convert as vlc

        bad = [f for f in formats if f not in ("png", "svg")]
        if bad:
            raise ConfigError(f"chart format(s) {bad} not supported", hint="use png and/or svg")
        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)

        def export(job: tuple[str, str]) -> Path:
            key, fmt = job
            static = _static(self.charts[key])
            target = out / f"{key}.{fmt}"
            with atomic_path(target, parents=False) as tmp:
                if fmt == "png":
                    tmp.write_bytes(vlc.vegalite_to_png(static, scale=scale))
                else:
                    tmp.write_text(_stable_ids(vlc.vegalite_to_svg(static)), encoding="utf-8")
            return target

        jobs = [(key, fmt) for key in self.charts for fmt in formats]
        # vl-convert renders outside the GIL: charts are drawn in parallel
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
            return list(pool.map(export, jobs))


def _static(spec: dict[str, Any]) -> dict[str, Any]:
    """A copy with fixed widths (``"container"`` only means something in a page)."""
    text = json.dumps(spec).replace('"width": "container"', '"width": 640')
    return json.loads(text)


def _cleaning(audit: Any) -> dict[str, Any] | None:
    if audit is None:
        return None
    data = audit.to_dict() if hasattr(audit, "to_dict") else dict(audit)
    return _jsonable(data)


def build_report(
    customers: Any,
    segmenter: Any = None,
    *,
    labels: np.ndarray | None = None,
    profile_result: Profile | None = None,
    audit: Any = None,
    rfm: Any = None,
    features_meta: dict[str, Any] | None = None,
    features: list[str] | None = None,
    names: dict[int, str] | None = None,
    actions: dict[int, str] | None = None,
    title: str = "Customer segments",
    source: str | None = None,
    sample: int = 5000,
    seed: int = 0,
    clv: dict[str, Any] | None = None,
    future: dict[str, Any] | None = None,
) -> Report:
    """Build the report of a segmentation.

    Parameters
    ----------
    customers : DataFrame or CustomerFeatures
        One row per customer, as the segmentation saw them.
    segmenter : Segmenter, optional
        The fitted model (selection, map, dendrogram); without it, pass ``labels``.
    labels : array, optional
        Segment per customer (default ``segmenter.labels_``).
    profile_result : Profile, optional
        Precomputed profiles (default: :func:`segmint.profile.profile`).
    audit : CleaningAudit, optional
        The cleaning audit, shown as a table (input = kept + dropped).
    rfm : RfmResult, optional
        Classic RFM scores and segments per customer (the RFM grid and the cross-tab).
    features_meta : dict, optional
        ``CustomerFeatures.metadata()`` (feature set, snapshot date); taken from
        ``customers`` when it is a CustomerFeatures.
    features : list of str, optional
        Features to profile and chart (default the model's, or every numeric column).
    names, actions : dict, optional
        Overrides of the automatic segment names and actions, by segment id.
    title, source : str
        Shown at the top.
    sample : int, default 5000
        At most this many customers are drawn in point charts (the chart says so).
    seed : int, default 0
        Seed of that sample.
    clv : dict, optional
        Lifetime value: ``ClvResult.describe()`` plus ``segments`` (one dict per segment),
        or ``segments`` None and ``notes`` saying why it was left out (a ``note`` string
        of earlier versions is read as one of the ``notes``).
    future : dict, optional
        ``FutureChoice.describe()`` when the segmentation was chosen by its future.

    Returns
    -------
    Report
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    if features_meta is None and hasattr(customers, "metadata"):
        features_meta = customers.metadata()
    frame = to_frame(customers, "build_report")  # pandas, CustomerFeatures, polars, ...
    if frame is None:
        raise ConfigError(
            f"customers must be a CustomerFeatures table or {ACCEPTED}, not a "
            f"{type(customers).__module__}.{type(customers).__qualname__}"
        )
    if labels is None:
        if segmenter is None:
            raise ConfigError("build_report needs a fitted segmenter or labels")
        from sklearn.utils.validation import check_is_fitted

        # scikit-learn's NotFittedError ("call fit first"), not an AttributeError
        check_is_fitted(segmenter, "labels_")
        labels = segmenter.labels_
    labels = np.asarray(labels).astype(int)
    if len(labels) != len(frame):
        raise DataQualityError(
            f"{len(labels):,} labels for {len(frame):,} customers",
            hint="pass the customer table the segmentation was fitted on",
        )
    if rfm is not None:
        rfm_table = rfm.table if hasattr(rfm, "table") else rfm
        extra = [c for c in ("r_score", "f_score", "m_score", "rfm_segment") if c in rfm_table]
        if "customer_id" in frame.columns and "customer_id" in rfm_table.columns:
            merged = frame[["customer_id"]].merge(
                rfm_table[["customer_id", *extra]], on="customer_id", how="left"
            )
            frame = frame.drop(columns=[c for c in extra if c in frame.columns]).assign(
                **{c: merged[c].to_numpy() for c in extra}
            )
    if features is None:
        if segmenter is not None:
            model_feats = list(segmenter.transform_.features_)
            extra_feats = [c for c in LINE_FEATURES if c in frame.columns and c not in model_feats]
            features = model_feats + extra_feats
        else:
            features = [
                c
                for c in frame.columns
                if c not in ("customer_id", "r_score", "f_score", "m_score")
                and pd.api.types.is_numeric_dtype(frame[c])
                and not pd.api.types.is_bool_dtype(frame[c])
            ]
    prof = profile_result or profile(
        frame,
        labels,
        features=features,
        names=names,
        actions=actions,
        categorical=(
            [c for c in segmenter.transform_.categorical_ if c in frame.columns]
            if segmenter is not None
            else None
        ),
    )
    timings["profile"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    charts, info = build_charts(
        frame,
        labels,
        prof.table,
        features,
        segmenter=segmenter,
        crosstab=prof.crosstab,
        sample=sample,
        seed=seed,
    )
    timings["charts"] = time.perf_counter() - t1
    summary = _summary(frame, labels, prof, segmenter, audit, rfm, features_meta, info)
    summary["title"] = title
    from segmint.clv import one_notes_key

    summary["clv"] = one_notes_key(clv)
    summary["future"] = future
    audit_source = getattr(audit, "source", None)
    if audit_source and str(audit_source).startswith("<"):  # an in-memory table
        audit_source = None
    summary["source"] = source or audit_source
    t2 = time.perf_counter()
    html = _render(summary, charts)
    timings["html"] = time.perf_counter() - t2
    timings["total"] = time.perf_counter() - t0
    return Report(summary=summary, charts=charts, html=html, profile=prof, timings=timings)


def _summary(
    frame: pd.DataFrame,
    labels: np.ndarray,
    prof: Profile,
    segmenter: Any,
    audit: Any,
    rfm: Any,
    meta: dict[str, Any] | None,
    info: dict[str, Any],
) -> dict[str, Any]:
    from segmint import __version__

    revenue = float(frame["monetary"].sum()) if "monetary" in frame.columns else None
    data: dict[str, Any] = {
        "customers": int(len(frame)),
        "revenue": revenue,
        "first_purchase": (
            str(pd.Timestamp(frame["first_purchase"].min()).date())
            if "first_purchase" in frame.columns and frame["first_purchase"].notna().any()
            else None
        ),
        "last_purchase": (
            str(pd.Timestamp(frame["last_purchase"].max()).date())
            if "last_purchase" in frame.columns and frame["last_purchase"].notna().any()
            else None
        ),
        "snapshot_date": (meta or {}).get("snapshot_date"),
        # --window: frequency and monetary (so the revenue above) cover only that period
        "window": (meta or {}).get("window"),
        "feature_set": (meta or {}).get("feature_set"),
        "feature_set_version": (meta or {}).get("feature_set_version"),
        # return lines the cleaning kept aside that no customer's revenue counts
        "returns_left_out": (meta or {}).get("returns_left_out"),
        "returns_left_out_note": (meta or {}).get("returns_left_out_note"),
    }
    segments = prof.to_records()
    model = None
    selection = None
    if segmenter is not None:
        model = segmenter.describe()
        cols = [
            c
            for c in (
                "algorithm",
                "k",
                "n_segments",
                "silhouette",
                "davies_bouldin",
                "calinski_harabasz",
                "stability",
                "min_share",
                "noise_share",
                "bic",
                "eligible",
                "excluded_because",
                "score",
                "chosen",
            )
            if c in segmenter.selection_.columns
        ]
        selection = json.loads(segmenter.selection_[cols].to_json(orient="records"))
    rfm_info = None
    if rfm is not None and hasattr(rfm, "segments"):
        rfm_info = {
            "rule_set": getattr(rfm.rule_set, "name", None),
            "rule_set_version": getattr(rfm.rule_set, "version", None),
            "rule_set_label": getattr(rfm.rule_set, "label", None),
            "method": rfm.method,
            "cut_points": rfm.cut_points,
            "segments": json.loads(rfm.segments().to_json(orient="records")),
            # overlapping and uncovered cells of the rule set, in words ("" when none)
            "coverage": (
                rfm.rule_set.coverage_text() if hasattr(rfm.rule_set, "coverage_text") else ""
            ),
        }
    crosstab = None
    if prof.crosstab is not None:
        crosstab = {
            "rows": list(map(str, prof.crosstab.index)),
            "columns": list(map(str, prof.crosstab.columns)),
            "counts": prof.crosstab.to_numpy().tolist(),
        }
    return _jsonable(
        {
            "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "segmint_version": __version__,
            "data": data,
            "cleaning": _cleaning(audit),
            "features": prof.features,
            # text columns the model segmented on: top_<column> of each segment
            "categorical": list(prof.meta.get("categorical", [])),
            "lower_is_better": [f for f in prof.features if f in LOWER_IS_BETTER],
            # shares (0-1) shown as percentages: a mean return rate of 0.03 read "0.0"
            "share_features": [f for f in prof.features if _is_share(f)],
            "overall": prof.overall,
            "segments": segments,
            "n_segments": int(sum(1 for s in segments if s["segment_id"] != -1)),
            "model": model,
            "selection": selection,
            "rfm": rfm_info,
            "segments_vs_rfm": crosstab,
            "map": info.get("map"),
        }
    )


def _is_share(feature: str) -> bool:
    """Features that are shares between 0 and 1 (or 0/1 flags, whose mean is a share)."""
    return feature in ("return_rate", "online_order_share") or feature.startswith(
        ("channel_share_", "category_share_", "category_")
    )


#: Characters of JSON text written as escapes when it sits in an HTML ``<script>``:
#: ``<`` (``</script>`` ends the element and ``<!--<script>`` keeps it from ending),
#: ``>`` and ``&`` (for good measure), and the two line separators old JavaScript
#: engines took for line ends.
_SCRIPT_ESCAPES = {
    ord("<"): "\\u003c",
    ord(">"): "\\u003e",
    ord("&"): "\\u0026",
    0x2028: "\\u2028",
    0x2029: "\\u2029",
}


def script_json(value: Any) -> str:
    """``value`` as JSON text safe inside an HTML ``<script>`` element: the same value
    for ``JSON.parse`` or a JavaScript literal, with no ``<``, ``>`` or ``&`` (a segment
    named ``<!--<script>`` kept the charts' script from ending, and only ``</`` was
    escaped)."""
    return json.dumps(value, separators=(",", ":")).translate(_SCRIPT_ESCAPES)


def _days_between(first: Any, last: Any) -> int | None:
    """Days from ``first`` to ``last`` (ISO dates), None when either is missing: the
    report tells a short history from a long one with it."""
    if not first or not last:
        return None
    return int((pd.Timestamp(str(last)) - pd.Timestamp(str(first))).days)


def _render(
    summary: dict[str, Any],
    charts: dict[str, dict[str, Any]],
    template_name: str = "report.html.j2",
) -> str:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        autoescape=jinja2.select_autoescape(["html", "j2"]),
        undefined=jinja2.StrictUndefined,
    )

    env.filters["number"] = number_text
    env.filters["percent"] = percent_text
    env.globals["days_between"] = _days_between
    template = env.get_template(template_name)
    specs = script_json(charts)
    styles = (_TEMPLATES / "report.css").read_text(encoding="utf-8")
    return template.render(
        s=summary,
        s_chart_keys=list(charts),
        specs_json=specs,
        styles=styles,
        vega_js=_javascript().replace("</script", "<\\/script"),
    )


_GRADIENT_ID = re.compile(r"\bgradient_(\d+)\b")


def _stable_ids(svg: str) -> str:
    """``svg`` with its gradient ids numbered in order of appearance from 0.

    vl-convert numbers gradients with one counter per process, and the charts are drawn
    in parallel, so the same chart got ``gradient_2`` in one run and ``gradient_3`` in the
    next: the same data and seed wrote different SVG files."""
    order: dict[str, str] = {}
    return _GRADIENT_ID.sub(
        lambda m: "gradient_" + order.setdefault(m.group(1), str(len(order))), svg
    )
