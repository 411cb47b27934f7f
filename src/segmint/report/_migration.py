"""The migration report: a Sankey flow, a heatmap of row shares, sizes over time.

Vega-Lite has no Sankey mark, so the layout (node heights proportional to customers,
bands stacked on both sides) is computed here and each band is drawn as an area between
two smooth curves: a handful of lines of arithmetic, and the chart stays a plain
Vega-Lite spec that renders offline in the HTML and to PNG with vl-convert.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from segmint.report import Report, _jsonable, _render
from segmint.report._charts import _data, _spec

_STEPS = 24


def _palette(states: list[str]) -> alt.Scale:
    return alt.Scale(domain=states, scheme="tableau10" if len(states) <= 10 else "tableau20")


def sankey_layout(matrix: pd.DataFrame, gap: float = 0.02) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Node boxes and band outlines of a two-column Sankey diagram of ``matrix``
    (from-states as rows, to-states as columns; counts).

    Returns ``(nodes, bands)``: nodes have ``side, state, y0, y1, customers``; bands have
    one row per drawn point: ``band, from_state, to_state, customers, x, y0, y1``
    (y from 0 at the top to 1 at the bottom).
    """
    total = float(matrix.to_numpy().sum())
    if total <= 0:
        return pd.DataFrame(), pd.DataFrame()
    rows = [r for r in matrix.index if matrix.loc[r].sum() > 0]
    cols = [c for c in matrix.columns if matrix[c].sum() > 0]
    scale = (1.0 - gap * max(len(rows), len(cols))) / total

    def place(names: list[str], sizes: list[float]) -> dict[str, list[float]]:
        out, y = {}, 0.0
        for name, size in zip(names, sizes, strict=True):
            out[name] = [y, y + size * scale]
            y += size * scale + gap
        return out

    left = place(rows, [float(matrix.loc[r].sum()) for r in rows])
    right = place(cols, [float(matrix[c].sum()) for c in cols])
    nodes = [
        {"side": side, "state": s, "y0": pos[0], "y1": pos[1], "customers": int(n)}
        for side, places, counts in (
            ("from", left, matrix.sum(axis=1)),
            ("to", right, matrix.sum(axis=0)),
        )
        for s, pos in places.items()
        for n in [counts[s]]
    ]
    l_off = {r: left[r][0] for r in rows}
    r_off = {c: right[c][0] for c in cols}
    x = np.linspace(0.0, 1.0, _STEPS)
    ease = 3 * x**2 - 2 * x**3
    bands = []
    band = 0
    for r in rows:
        for c in cols:
            n = float(matrix.loc[r, c])
            if n <= 0:
                continue
            h = n * scale
            a0, b0 = l_off[r], r_off[c]
            l_off[r] += h
            r_off[c] += h
            top = a0 + (b0 - a0) * ease
            for xi, ti in zip(x, top, strict=True):
                bands.append(
                    {
                        "band": band,
                        "from_state": r,
                        "to_state": c,
                        "customers": int(n),
                        "x": float(xi),
                        "y0": float(ti),
                        "y1": float(ti + h),
                    }
                )
            band += 1
    return pd.DataFrame(nodes), pd.DataFrame(bands)


def _sankey(matrix: pd.DataFrame, states: list[str], d0: str, d1: str) -> dict[str, Any]:
    nodes, bands = sankey_layout(matrix)
    color = alt.Color("from_state:N", scale=_palette(states), title="from")
    y_scale = alt.Scale(domain=[0, 1], reverse=True, nice=False)
    x_scale = alt.Scale(domain=[-0.28, 1.28], nice=False)
    flow = (
        alt.Chart(_data(bands))
        .mark_area(opacity=0.45, interpolate="linear")
        .encode(
            x=alt.X("x:Q", scale=x_scale, axis=None),
            y=alt.Y("y0:Q", scale=y_scale, axis=None),
            y2="y1:Q",
            detail="band:N",
            color=color,
            tooltip=["from_state:N", "to_state:N", alt.Tooltip("customers:Q", format=",")],
        )
    )
    nodes = nodes.assign(
        x0=np.where(nodes["side"] == "from", -0.03, 1.0),
        x1=np.where(nodes["side"] == "from", 0.0, 1.03),
        xl=np.where(nodes["side"] == "from", -0.04, 1.04),
        ym=(nodes["y0"] + nodes["y1"]) / 2,
        label=nodes["state"] + " (" + nodes["customers"].map("{:,}".format) + ")",
    )
    boxes = (
        alt.Chart(_data(nodes))
        .mark_rect()
        .encode(
            x=alt.X("x0:Q", scale=x_scale),
            x2="x1:Q",
            y=alt.Y("y0:Q", scale=y_scale),
            y2="y1:Q",
            color=alt.Color("state:N", scale=_palette(states), legend=None),
            tooltip=["side:N", "state:N", alt.Tooltip("customers:Q", format=",")],
        )
    )
    left = (
        alt.Chart(_data(nodes[nodes["side"] == "from"]))
        .mark_text(align="right", baseline="middle", fontSize=11)
        .encode(x=alt.X("xl:Q", scale=x_scale), y=alt.Y("ym:Q", scale=y_scale), text="label:N")
    )
    right = (
        alt.Chart(_data(nodes[nodes["side"] == "to"]))
        .mark_text(align="left", baseline="middle", fontSize=11)
        .encode(x=alt.X("xl:Q", scale=x_scale), y=alt.Y("ym:Q", scale=y_scale), text="label:N")
    )
    chart = alt.layer(flow, boxes, left, right).properties(
        width="container",
        height=max(320, 34 * max(len(matrix.index), len(matrix.columns))),
        title=f"Where customers went: {d0} (left) to {d1} (right)",
    )
    return _spec(chart.configure_view(stroke=None))


def _heatmap(matrix: pd.DataFrame, shares: pd.DataFrame, d0: str, d1: str) -> dict[str, Any]:
    long = (
        matrix.stack()
        .rename("customers")
        .reset_index()
        .rename(columns={"level_0": "from_state", "level_1": "to_state"})
    )
    long.columns = ["from_state", "to_state", "customers"]
    long["row_share"] = shares.stack().to_numpy()
    rows, cols = list(matrix.index), list(matrix.columns)
    base = alt.Chart(_data(long)).encode(
        x=alt.X("to_state:N", sort=cols, title=f"segment on {d1}"),
        y=alt.Y("from_state:N", sort=rows, title=f"segment on {d0}"),
    )
    cells = base.mark_rect().encode(
        color=alt.Color(
            "row_share:Q", scale=alt.Scale(scheme="blues", domain=[0, 1]), title="share of row"
        ),  # fmt: skip
        tooltip=[
            "from_state:N",
            "to_state:N",
            alt.Tooltip("customers:Q", format=","),
            alt.Tooltip("row_share:Q", format=".1%"),
        ],
    )
    text = base.mark_text(fontSize=10).encode(
        text=alt.Text("customers:Q", format=","),
        color=alt.condition("datum.row_share > 0.5", alt.value("white"), alt.value("black")),
    )
    return _spec(
        (cells + text).properties(
            width="container", height=max(240, 30 * len(rows)), title="Transition matrix"
        )
    )


def _sizes(states: pd.DataFrame, dates: list[dt.date], order: list[str]) -> dict[str, Any] | None:
    """Stacked areas of the customers in each state at each snapshot.

    Every state present at some snapshot has a count at every snapshot (0 where it is
    empty: a stacked area with a missing point is drawn across it), and the stack
    follows the value order. (The stack used to be ordered by the count itself, which
    Vega-Lite reads as a field to group by: every area was one point wide, and the
    chart came out empty.)"""
    if len(dates) < 3:
        return None
    cols = [d.isoformat() for d in dates]
    long = states[cols].melt(var_name="snapshot", value_name="state").dropna()
    domain = [*order, "(lost)"]
    present = [s for s in domain if s in set(long["state"])]
    counts = (
        long.groupby(["snapshot", "state"])
        .size()
        .reindex(pd.MultiIndex.from_product([cols, present], names=["snapshot", "state"]))
        .fillna(0)
        .astype("int64")
        .rename("customers")
        .reset_index()
    )
    counts["rank"] = counts["state"].map({s: i for i, s in enumerate(domain)})
    chart = (
        alt.Chart(_data(counts))
        .mark_area()
        .encode(
            x=alt.X("snapshot:T", title="snapshot"),
            y=alt.Y("customers:Q", stack=True, title="customers"),
            color=alt.Color("state:N", scale=_palette(domain), sort=domain, title="segment"),
            order=alt.Order("rank:O"),
            tooltip=["snapshot:T", "state:N", alt.Tooltip("customers:Q", format=",")],
        )
        .properties(width="container", height=300, title="Segment sizes over time")
    )
    return _spec(chart)


def build_migration_report(result: Any, title: str = "Segment migration") -> Report:
    """The HTML report (Sankey, heatmap, tables, sizes over time) of a MigrationResult."""
    from segmint import __version__

    d0, d1 = result.dates[0].isoformat(), result.dates[-1].isoformat()
    states = [*result.order, "(lost)", "(new)"]
    charts = {
        "migration_flow": _sankey(result.matrix, states, d0, d1),
        "transition_matrix": _heatmap(result.matrix, result.shares, d0, d1),
    }
    sizes = _sizes(result.states, result.dates, result.order)
    if sizes is not None:
        charts["segment_sizes_over_time"] = sizes
    summary = result.summary()
    moves = result.moves
    cells = (
        moves.groupby(["from_state", "to_state"])
        .agg(customers=("customer_id", "size"), revenue=("revenue", "sum"))
        .reset_index()
    )
    cells["row_share"] = cells["customers"] / cells.groupby("from_state")["customers"].transform(
        "sum"
    )
    rank = {s: i for i, s in enumerate(states)}
    cells = cells.sort_values(
        ["from_state", "customers"],
        key=lambda s: s.map(rank) if s.name == "from_state" else -s,
    )
    summary.update(
        title=title,
        segmint_version=__version__,
        generated_at=dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        cells=_jsonable(cells.to_dict(orient="records")),
        # the (lost) column of the matrix and the Sankey: "lost" counts only those who
        # became lost from a segment (the cards count each customer once)
        lost_at_end=int(result.matrix["(lost)"].sum()) if "(lost)" in result.matrix else 0,
        directions=["up", "same", "down", "lost", "reactivated", "new"],
    )
    html = _render(summary, charts, "migration.html.j2")
    return Report(summary=summary, charts=charts, html=html, profile=None)
