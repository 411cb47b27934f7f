"""The report's charts as Vega-Lite specifications, built with Altair.

Every chart gets small, pre-aggregated data (histogram bins, per-segment figures, a
random sample of at most ``sample`` customers for point charts, with the sample size in
the title), so a report for a million customers stays small and quick to build. The
specs are interactive in the HTML report (tooltips, legend toggles) and exported to PNG
and SVG by vl-convert without a browser or network.
"""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd

__all__ = ["CHART_TITLES", "build_charts"]

#: Chart key -> title, in report order.
CHART_TITLES = {
    "segment_sizes": "Segment sizes and revenue shares",
    "snake_plot": "Segment profiles (standardised means)",
    "feature_distributions": "Feature distributions",
    "selection_metrics": "Model selection: metrics by number of segments",
    "customer_map": "Customers on the first two principal components",
    "rfm_grid": "Classic RFM grid: recency x frequency scores",
    "segments_vs_rfm": "Segments against classic RFM segments",
    "dendrogram": "Dendrogram (top levels)",
}

_WIDTH = "container"
#: Room for segment names in legends and axes (Vega-Lite cuts them at 160 px).
_LABEL_LIMIT = 320


def _data(frame: pd.DataFrame) -> alt.Data:
    records = frame.replace({np.nan: None}).to_dict(orient="records")
    return alt.Data(values=records)


def _spec(chart: alt.TopLevelMixin) -> dict[str, Any]:
    spec = chart.to_dict(validate=False)  # the schema check costs seconds; tests render every chart
    spec.pop("$schema", None)  # a URL; the report references nothing outside itself
    return spec


def _palette(names: list[str]) -> alt.Scale:
    return alt.Scale(domain=names, scheme="tableau10" if len(names) <= 10 else "tableau20")


def _segment_sizes(table: pd.DataFrame, names: list[str]) -> dict[str, Any]:
    long = pd.concat(
        [
            pd.DataFrame(
                {
                    "segment": table["name"],
                    "measure": "customers",
                    "share": table["share_customers"],
                }
            ),
            pd.DataFrame(
                {"segment": table["name"], "measure": "revenue", "share": table["share_revenue"]}
            ),
        ]
    )
    legend = alt.selection_point(fields=["measure"], bind="legend")
    chart = (
        alt.Chart(_data(long))
        .mark_bar()
        .encode(
            y=alt.Y("segment:N", sort=names, title=None, axis=alt.Axis(labelLimit=_LABEL_LIMIT)),
            yOffset="measure:N",
            x=alt.X("share:Q", axis=alt.Axis(format="%"), title="share"),
            color=alt.Color("measure:N", title=None),
            opacity=alt.condition(legend, alt.value(1.0), alt.value(0.15)),
            tooltip=["segment:N", "measure:N", alt.Tooltip("share:Q", format=".1%")],
        )
        .add_params(legend)
        .properties(width=_WIDTH, title=CHART_TITLES["segment_sizes"])
    )
    return _spec(chart)


def _snake(customers: pd.DataFrame, labels: np.ndarray, table: pd.DataFrame, features):
    data = customers[features].astype(float)
    mu, sd = data.mean(), data.std(ddof=0).replace(0, 1.0)
    rows = []
    for seg, name in zip(table["segment_id"], table["name"], strict=True):
        z = (data[labels == seg].mean() - mu) / sd
        rows += [{"segment": name, "feature": f, "z": float(z[f])} for f in features]
    frame = pd.DataFrame(rows)
    names = list(table["name"])
    legend = alt.selection_point(fields=["segment"], bind="legend")
    chart = (
        alt.Chart(_data(frame))
        .mark_line(point=True)
        .encode(
            x=alt.X("feature:N", sort=features, title=None, axis=alt.Axis(labelAngle=-30)),
            y=alt.Y("z:Q", title="mean, in standard deviations from all customers"),
            color=alt.Color(
                "segment:N",
                scale=_palette(names),
                sort=names,
                legend=alt.Legend(labelLimit=_LABEL_LIMIT),
            ),
            opacity=alt.condition(legend, alt.value(1.0), alt.value(0.1)),
            tooltip=["segment:N", "feature:N", alt.Tooltip("z:Q", format="+.2f")],
        )
        .add_params(legend)
        .properties(width=_WIDTH, height=280, title=CHART_TITLES["snake_plot"])
    )
    return _spec(chart)


def _log_ticks(lo: float, hi: float) -> list[float]:
    """Tick values for a symlog axis from lo to hi: 0 and the powers of ten between (and
    their negatives), with 2 and 5 times them when the range spans under three decades."""
    top = max(abs(lo), abs(hi), 1.0)
    decades = int(np.floor(np.log10(top)))
    steps = (1, 2, 5) if decades < 3 else (1,)
    mags = [m * 10.0**e for e in range(0, decades + 1) for m in steps]
    if top < 1 or decades < 1:
        mags = [0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 5.0]
    ticks = {0.0} | {m for m in mags if m <= hi} | {-m for m in mags if -m >= lo}
    return sorted(t for t in ticks if lo <= t <= hi)


def _histograms(customers: pd.DataFrame, features: list[str], log_features: set[str]):
    rows = []
    for f in features:
        v = customers[f].to_numpy(float)
        v = v[np.isfinite(v)]
        if len(v) == 0:
            continue
        use_log = f in log_features and np.ptp(v) > 0
        if use_log:  # even bins of sign(x)·log(1 + |x|): the symlog axis, negatives too
            t = np.sign(v) * np.log1p(np.abs(v))
            grid = np.linspace(t.min(), t.max(), 31)
            edges = np.unique(np.sign(grid) * np.expm1(np.abs(grid)))
            edges[0], edges[-1] = v.min(), v.max()
        else:
            edges = np.histogram_bin_edges(v, bins=30)
            if len(np.unique(edges)) < 2:
                edges = np.array([v.min() - 0.5, v.max() + 0.5])
        counts, edges = np.histogram(v, bins=edges)
        for c, lo, hi in zip(counts, edges[:-1], edges[1:], strict=True):
            rows.append(
                {
                    "feature": f + (" (log scale)" if use_log else ""),
                    "from": lo,
                    "to": hi,
                    "customers": int(c),
                }
            )
    frame = pd.DataFrame(rows)
    charts = []
    for f, part in frame.groupby("feature", sort=False):
        log = f.endswith("(log scale)")
        x_scale = alt.Scale(type="symlog") if log else alt.Scale()
        # a symlog axis picks ticks as a linear one does (0k, 200k): give it powers of
        # ten, each label formatted on its own (a shared SI prefix gives "0k")
        x_axis = (
            alt.Axis(
                values=_log_ticks(float(part["from"].min()), float(part["to"].max())),
                labelExpr="abs(datum.value) < 1 ? format(datum.value, '~g') "
                ": format(datum.value, '~s')",
                labelOverlap="greedy",
            )
            if log
            else alt.Axis()
        )
        charts.append(
            alt.Chart(_data(part))
            .mark_rect()
            .encode(
                x=alt.X("from:Q", title=f, scale=x_scale, axis=x_axis),
                x2="to:Q",
                y=alt.Y("customers:Q", title="customers"),
                tooltip=[
                    alt.Tooltip("from:Q", format=",.4~g"),
                    alt.Tooltip("to:Q", format=",.4~g"),
                    "customers:Q",
                ],
            )
            .properties(width=220, height=140)
        )
    rows_of = [alt.hconcat(*charts[i : i + 3]) for i in range(0, len(charts), 3)]
    chart = alt.vconcat(*rows_of).properties(title=CHART_TITLES["feature_distributions"])
    return _spec(chart)


def _selection(selection: pd.DataFrame) -> dict[str, Any] | None:
    t = selection.dropna(subset=["k"])
    if t.empty:
        return None
    metrics = ["silhouette", "davies_bouldin", "calinski_harabasz", "stability", "inertia"]
    metrics = [m for m in metrics if m in t.columns and t[m].notna().any()]
    long = t.melt(
        id_vars=["algorithm", "k", "chosen"], value_vars=metrics, var_name="metric"
    ).dropna(subset=["value"])
    legend = alt.selection_point(fields=["algorithm"], bind="legend")
    base = alt.Chart(_data(long)).encode(
        x=alt.X("k:Q", title="segments", axis=alt.Axis(tickMinStep=1)),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(zero=False)),
        color=alt.Color("algorithm:N"),
        opacity=alt.condition(legend, alt.value(1.0), alt.value(0.1)),
        tooltip=["algorithm:N", "k:Q", "metric:N", alt.Tooltip("value:Q", format=",.3f")],
    )
    lines = base.mark_line(point=True)
    chosen = base.mark_point(
        size=220, shape="diamond", filled=True, color="black"
    ).transform_filter(alt.datum.chosen)
    # one panel per metric, in rows of three; concatenated rather than faceted, because a
    # facet grid with an empty last cell still draws an x axis under it. The legend
    # selection is defined in the first panel; parameters are global, so the others use it
    panels = [
        alt.layer(
            (lines.add_params(legend) if i == 0 else lines).transform_filter(alt.datum.metric == m),
            chosen.transform_filter(alt.datum.metric == m),
        ).properties(width=230, height=150, title=m)
        for i, m in enumerate(metrics)
    ]
    chart = alt.vconcat(
        *[alt.hconcat(*panels[i : i + 3]) for i in range(0, len(panels), 3)]
    ).properties(title=CHART_TITLES["selection_metrics"] + " (diamond = chosen)")
    return _spec(chart)


def _map(
    embedded: np.ndarray, labels: np.ndarray, names: dict[int, str], sample: int, seed: int
) -> tuple[dict[str, Any], dict[str, Any]]:
    from sklearn.decomposition import PCA

    n = len(embedded)
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, sample, replace=False)) if n > sample else np.arange(n)
    dims = min(2, embedded.shape[1])
    pca = PCA(n_components=dims, random_state=seed).fit(embedded[idx])
    xy = pca.transform(embedded[idx])
    if dims == 1:
        xy = np.column_stack([xy[:, 0], np.zeros(len(xy))])
    frame = pd.DataFrame(
        {"pc1": xy[:, 0], "pc2": xy[:, 1], "segment": [names[int(s)] for s in labels[idx]]}
    )
    shown = f"{len(idx):,} of {n:,} customers" + (" (random sample)" if n > sample else "")
    order = list(dict.fromkeys(names.values()))
    legend = alt.selection_point(fields=["segment"], bind="legend")
    chart = (
        alt.Chart(_data(frame))
        .mark_circle(size=14)
        .encode(
            x=alt.X("pc1:Q", title="PC 1"),
            y=alt.Y("pc2:Q", title="PC 2"),
            color=alt.Color("segment:N", scale=_palette(order), sort=order),
            opacity=alt.condition(legend, alt.value(0.7), alt.value(0.03)),
            tooltip=["segment:N"],
        )
        .add_params(legend)
        .properties(
            width=_WIDTH,
            height=380,
            title={"text": CHART_TITLES["customer_map"], "subtitle": shown},
        )
    )
    info = {
        "method": "PCA of the transformed features",
        "shown": int(len(idx)),
        "customers": int(n),
        "explained_variance": float(pca.explained_variance_ratio_.sum()),
    }
    return _spec(chart), info


def _rfm_grid(customers: pd.DataFrame) -> dict[str, Any] | None:
    if not {"r_score", "f_score", "monetary"} <= set(customers.columns):
        return None
    grid = (
        customers.groupby(["r_score", "f_score"])
        .agg(customers=("monetary", "size"), mean_monetary=("monetary", "mean"))
        .reset_index()
    )
    base = alt.Chart(_data(grid)).encode(
        x=alt.X("r_score:O", title="recency score (5 = most recent)", axis=alt.Axis(labelAngle=0)),
        y=alt.Y("f_score:O", title="frequency score", sort="descending"),
    )
    heat = base.mark_rect().encode(
        color=alt.Color("customers:Q", scale=alt.Scale(scheme="blues")),
        tooltip=[
            "r_score:O",
            "f_score:O",
            alt.Tooltip("customers:Q", format=","),
            alt.Tooltip("mean_monetary:Q", format=",.0f"),
        ],
    )
    text = (
        base.mark_text(fontSize=10, lineBreak="\n")
        .encode(
            text=alt.Text("label:N"),
            color=alt.condition(  # white on the darker half of the colour scale
                alt.datum.customers > (grid["customers"].min() + grid["customers"].max()) / 2,
                alt.value("white"),
                alt.value("black"),
            ),
        )
        .transform_calculate(
            label="format(datum.customers, ',') + '\\n' + format(datum.mean_monetary, ',.0f')"
        )
    )
    chart = alt.layer(heat, text).properties(
        width=_WIDTH,
        height=300,
        title={
            "text": CHART_TITLES["rfm_grid"],
            "subtitle": "customers and mean monetary per cell",
        },
    )
    return _spec(chart)


def _crosstab(crosstab: pd.DataFrame | None, rule_set: str | None = None) -> dict[str, Any] | None:
    """Segments against RFM segments; ``rule_set`` (its label) names the rule set on the
    axis: the chart is also written alone (charts/segments_vs_rfm.png), where the
    report's RFM section does not say which rule set the names come from."""
    if crosstab is None or crosstab.empty:
        return None
    long = crosstab.stack().rename("customers").reset_index()
    long.columns = ["segment", "rfm_segment", "customers"]
    long["share_of_segment"] = long["customers"] / long.groupby("segment")["customers"].transform(
        "sum"
    )
    base = alt.Chart(_data(long)).encode(
        x=alt.X(
            "rfm_segment:N",
            title=f"RFM segment ({rule_set})" if rule_set else "RFM segment",
            axis=alt.Axis(labelAngle=-35),
        ),
        y=alt.Y(
            "segment:N",
            title=None,
            sort=list(crosstab.index),
            axis=alt.Axis(labelLimit=_LABEL_LIMIT),
        ),
    )
    heat = base.mark_rect().encode(
        color=alt.Color(
            "share_of_segment:Q",
            scale=alt.Scale(scheme="greens"),
            title="share of segment",
            legend=alt.Legend(format="%"),
        ),
        tooltip=[
            "segment:N",
            "rfm_segment:N",
            alt.Tooltip("customers:Q", format=","),
            alt.Tooltip("share_of_segment:Q", format=".0%"),
        ],
    )
    text = base.mark_text(fontSize=9).encode(text=alt.Text("customers:Q", format=","))
    chart = alt.layer(heat, text).properties(
        width=_WIDTH, height=34 * len(crosstab.index) + 40, title=CHART_TITLES["segments_vs_rfm"]
    )
    return _spec(chart)


def _dendrogram(embedded: np.ndarray, linkage: str, n_segments: int, seed: int):
    from scipy.cluster.hierarchy import dendrogram
    from scipy.cluster.hierarchy import linkage as scipy_linkage

    rng = np.random.default_rng(seed)
    n = len(embedded)
    idx = np.sort(rng.choice(n, 2000, replace=False)) if n > 2000 else np.arange(n)
    Z = scipy_linkage(embedded[idx], method=linkage)
    p = max(12, 3 * n_segments)
    d = dendrogram(Z, truncate_mode="lastp", p=p, no_plot=True)
    rows = []
    for xs, ys in zip(d["icoord"], d["dcoord"], strict=True):
        for (x1, x2), (y1, y2) in zip(
            zip(xs[:-1], xs[1:], strict=True), zip(ys[:-1], ys[1:], strict=True), strict=True
        ):
            rows.append({"x": x1, "x2": x2, "y": y1, "y2": y2})
    frame = pd.DataFrame(rows)
    chart = (
        alt.Chart(_data(frame))
        .mark_rule()
        .encode(
            x=alt.X("x:Q", axis=None),
            x2="x2:Q",
            y=alt.Y("y:Q", title="merge distance"),
            y2="y2:Q",
        )
        .properties(
            width=_WIDTH,
            height=260,
            title={
                "text": CHART_TITLES["dendrogram"],
                "subtitle": f"{linkage} linkage on {len(idx):,} customers, last {p} merges",
            },
        )
    )
    return _spec(chart)


def build_charts(
    customers: pd.DataFrame,
    labels: np.ndarray,
    table: pd.DataFrame,
    features: list[str],
    *,
    segmenter: Any = None,
    crosstab: pd.DataFrame | None = None,
    sample: int = 5000,
    seed: int = 0,
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Every chart of the report as a Vega-Lite spec, and facts about them (map sample)."""
    names = {int(s): n for s, n in zip(table["segment_id"], table["name"], strict=True)}
    order = list(table["name"])
    charts: dict[str, dict[str, Any]] = {
        "segment_sizes": _segment_sizes(table, order),
        "snake_plot": _snake(customers, labels, table, features),
    }
    # skewed features are drawn on a log axis (the ones the model logged, and any other
    # with a long right tail: monetary with a few negative customers included)
    log_features = set(segmenter.transform_.log_features_) if segmenter is not None else set()
    for f in features:
        v = customers[f].astype(float)
        if v.skew() > 1:
            log_features.add(f)
    charts["feature_distributions"] = _histograms(customers, features, log_features)
    info: dict[str, Any] = {}
    embedded = None
    if segmenter is not None:
        sel = _selection(segmenter.selection_)
        if sel is not None:
            charts["selection_metrics"] = sel
        embedded = segmenter.embed(customers)
        charts["customer_map"], info["map"] = _map(embedded, labels, names, sample, seed)
    grid = _rfm_grid(customers)
    if grid is not None:
        charts["rfm_grid"] = grid
    rule_set = (
        str(table["rfm_rule_set"].iloc[0])
        if "rfm_rule_set" in table.columns and len(table)
        else None
    )
    cross = _crosstab(crosstab, rule_set)
    if cross is not None:
        charts["segments_vs_rfm"] = cross
    if embedded is not None and str(segmenter.algorithm_).startswith("agglomerative"):
        linkage = str(segmenter.algorithm_).split("_", 1)[1]
        charts["dendrogram"] = _dendrogram(embedded, linkage, segmenter.n_segments_, seed)
    return {k: charts[k] for k in CHART_TITLES if k in charts}, info
