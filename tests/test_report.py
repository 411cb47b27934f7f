"""The HTML report, its charts and summary.json."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from segmint import Segmenter
from segmint.datasets import make_transactions
from segmint.features import customer_features
from segmint.pipeline import prepare
from segmint.report import CHART_TITLES, build_report, script_json
from segmint.rfm import score

#: ``http(s)://`` strings allowed in the report: inside the inlined Vega bundle, XML
#: namespaces (identifiers, never fetched), an error message and the Vega schema id of
#: compiled specs, and the editor link of Vega-Embed's action menu, which the report
#: switches off (``actions: false``).
_ALLOWED_URLS = {
    "http://www.w3.org/2000/svg",
    "http://www.w3.org/1999/xlink",
    "http://www.w3.org/2000/xmlns/",
    "https://github.com/vega/vega-lite/issues/2415",
    "https://vega.github.io/schema/vega/v6.json",
    "https://vega.github.io/editor/",
}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    lines, _ = make_transactions(n_customers=1500, seed=2)
    prepared = prepare(lines)
    feats = customer_features(prepared.cleaned)
    rfm = score(feats)
    customers = feats.to_pandas()
    seg = Segmenter(algorithm=["kmeans", "gmm"], k_range=(3, 8), random_state=0).fit(customers)
    report = build_report(
        customers, seg, rfm=rfm, audit=prepared.cleaned.audit, features_meta=feats.metadata()
    )
    out = tmp_path_factory.mktemp("report")
    return report, out, customers, seg, prepared


def test_report_is_self_contained(built) -> None:
    report, out, *_ = built
    path = report.write(out / "report.html")
    html = path.read_text(encoding="utf-8")
    # no resource is loaded from anywhere: no src/href/url()/@import to a network address
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", html, re.I)
    assert not re.search(r"url\(\s*['\"]?\s*(https?:)?//", html, re.I)
    assert "@import" not in html
    assert not re.search(r"<link\b", html, re.I)
    # every other http(s) string is one of the known non-fetched identifiers of the bundle
    urls = set(re.findall(r"https?://[^\s\"'`)<>]*[^\s\"'`)<>.,;]", html))
    assert urls <= _ALLOWED_URLS, urls - _ALLOWED_URLS
    assert "vegaEmbed" in html and "actions: false" in html


def test_report_has_every_section_and_chart(built) -> None:
    report, _, customers, seg, prepared = built
    html = report.html
    for anchor in ("summary", "cleaning", "features", "selection", "profiles", "map", "rfm"):
        assert f'id="{anchor}"' in html, anchor
    for key in report.charts:
        assert f'id="chart-{key}"' in html, key
    assert set(report.charts) == set(CHART_TITLES) - {"dendrogram"}
    assert seg.explain() in html
    audit = prepared.cleaned.audit
    assert f"{audit.input_rows:,} input lines = {audit.kept_rows:,} kept" in " ".join(html.split())
    for name in report.profile.table["name"]:
        assert name in html
    assert '<meta name="viewport"' in html
    flat = " ".join(html.split())
    # what was clustered on, and how (was only in summary.json)
    tf = seg.describe()["transform"]
    assert f'id="model-features">Segmented on {", ".join(tf["features"])}' in flat
    assert f"{tf['scaler']} scaling" in flat
    # the classic RFM section: rule set with its version, cut points, segment table
    assert "Rule set rf-grid v1, scores 1 to 5 by quintiles" in flat
    assert 'id="rfm-segments"' in html and "Champions" in flat
    cuts = report.summary["rfm"]["cut_points"]["frequency"]["thresholds"]
    assert "frequency &ge; " + " / ".join("–" if v is None else f"{v:,.0f}" for v in cuts) in flat
    # a share shows as a percentage (a mean return rate of 0.03 read "0.0")
    rate = report.profile.table["mean_return_rate"].iloc[0]
    assert f"{rate * 100:.1f} %" in flat


def test_rfm_section_names_the_overlaps_and_gaps_of_the_rule_set(built, tmp_path) -> None:
    """A user's rule table with overlapping and uncovered cells: the report said nothing
    about them (an INFO log line was all), so a segment that never wins a cell looked
    simply small. The shipped rf-grid, a complete partition, shows no such line."""
    report, _, customers, seg, prepared = built
    assert 'id="rfm-coverage"' not in report.html
    rules = tmp_path / "mine.toml"
    rules.write_text(
        'name = "mine"\nversion = "2"\n'
        '[[segment]]\nname = "Best"\nr = [4, 5]\nf = [4, 5]\n'
        '[[segment]]\nname = "Good"\nr = [3, 5]\nf = [3, 5]\n'
        '[[segment]]\nname = "Lapsed"\nr = [1, 2]\n'
    )
    rfm = score(customers, rule_set=rules)
    mine = build_report(customers, seg, rfm=rfm, audit=prepared.cleaned.audit)
    flat = " ".join(mine.html.split())
    assert (
        'id="rfm-coverage">Rule set mine: 20 of the 125 R/F/M cells match more than one '
        "segment and go to the first one listed (e.g. cell 441: Best, not Good); 30 cells "
        "match no segment and go to &#39;Others&#39; (e.g. cell 311)."
    ) in flat
    assert mine.summary["rfm"]["coverage"].startswith("20 of the 125")
    assert "Rule set mine v2, scores 1 to 5" in flat
    rules.write_text(rules.read_text().replace('version = "2"\n', ""))
    unversioned = build_report(customers, seg, rfm=score(customers, rule_set=rules))
    flat = " ".join(unversioned.html.split())
    assert "Rule set mine (user table), scores 1 to 5" in flat and "vuser" not in flat


def test_report_says_when_frequency_and_monetary_cover_a_window(built) -> None:
    """With --window 6M the report showed the revenue of the last six months as "net
    revenue" beside the first-to-last purchase dates of the whole history, and nothing
    said that F and M (and the profiles' orders and spend) cover only that window."""
    report, _, _, seg, prepared = built
    flat = " ".join(report.html.split())
    assert "features-window" not in flat and "in the last" not in flat
    feats = customer_features(prepared.cleaned, window="6M")
    customers = feats.to_pandas()
    windowed = build_report(
        customers,
        labels=seg.predict(customers),
        rfm=score(feats),
        features_meta=feats.metadata(),
    )
    flat = " ".join(windowed.html.split())
    assert windowed.summary["data"]["window"] == "6M"
    assert "<span>net revenue in the last 6M</span>" in flat
    assert "Window 6M: frequency, monetary, basket" in flat
    assert "by quintiles, frequency and monetary over the last 6M." in flat


def test_profiles_show_the_categorical_features_the_model_used(built) -> None:
    """Segmented with ``categorical=["country"]``, the profile table (report,
    summary.json, segments.csv) showed no country at all."""
    _, _, customers, _, prepared = built
    seg = Segmenter(algorithm="kmeans", n_clusters=3, categorical=["country"], random_state=0).fit(
        customers
    )
    report = build_report(customers, seg, audit=prepared.cleaned.audit)
    assert report.summary["categorical"] == ["country"]
    tops = [g["top_country"] for g in report.summary["segments"]]
    assert all(t and t.split(";")[0].rsplit(" ", 1)[1].endswith("%") for t in tops), tops
    flat = " ".join(report.html.split())
    assert '<th class="text">main country</th>' in flat
    assert f'<td class="text">{tops[0]}</td>' in flat


def test_candidate_table_shows_unassigned_share_and_bic_where_they_exist(built) -> None:
    """The report's candidate table had no column for the customers a density method
    leaves unassigned nor for the mixtures' BIC (both in selection.csv and summary.json),
    and a lone candidate that fails the rule read only "chosen"."""
    report, _, customers, seg, prepared = built
    flat = " ".join(report.html.split())
    assert "<th>BIC</th>" in flat and "<th>unassigned</th>" not in flat  # kmeans + gmm
    gmm = seg.selection_[seg.selection_["algorithm"] == "gmm"].iloc[0]
    assert f"<td>{gmm['bic']:,.0f}</td>" in flat
    dbscan = Segmenter(algorithm="dbscan", stability_resamples=2, random_state=0).fit(customers)
    noise = dbscan.selection_["noise_share"].iloc[0]
    assert noise > 0
    density = build_report(customers, dbscan, audit=prepared.cleaned.audit)
    flat = " ".join(density.html.split())
    assert "<th>unassigned</th>" in flat and "<th>BIC</th>" not in flat
    assert f"<td>{noise * 100:.1f} %</td>" in flat
    reason = dbscan.selection_["excluded_because"].iloc[0]
    assert reason == "stability below 0.6"  # a lone candidate used although it fails
    assert f"chosen (although {reason})" in flat


def test_summary_json_has_the_same_figures(built) -> None:
    report, out, customers, seg, prepared = built
    path = report.write_summary(out / "summary.json")
    summary = json.loads(path.read_text())
    assert summary["data"]["customers"] == len(customers)
    assert summary["data"]["revenue"] == pytest.approx(customers["monetary"].sum())
    assert summary["n_segments"] == seg.n_segments_
    sizes = {s["name"]: s["size"] for s in summary["segments"]}
    assert sizes == dict(
        zip(report.profile.table["name"], report.profile.table["size"], strict=True)
    )
    assert sum(sizes.values()) == len(customers)
    assert summary["cleaning"]["balanced"] is True
    assert summary["model"]["algorithm"] == seg.algorithm_
    assert len(summary["selection"]) == len(seg.selection_)
    assert summary["rfm"]["rule_set"] == "rf-grid"
    assert summary["map"]["shown"] == len(customers)
    for s in summary["segments"]:
        assert f"{s['size']:,}" in report.html


def test_static_charts_png_and_svg(built) -> None:
    report, out, *_ = built
    files = report.write_charts(out / "charts")
    assert len(files) == 2 * len(report.charts)
    for f in files:
        data = f.read_bytes()
        if f.suffix == ".png":
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
        else:
            assert data.lstrip().startswith(b"<svg") and b"</svg>" in data
    assert not list((out / "charts").glob("*.part"))


def test_the_same_report_writes_the_same_svg_files(built) -> None:
    """vl-convert numbers gradients (the colour legends) with one counter per process
    and the charts are drawn in parallel, so two runs on the same data and seed wrote
    ``gradient_2`` in one SVG and ``gradient_3`` in the other; the same report written
    twice in one process differed in every chart with a colour scale."""
    report, out, *_ = built
    first = report.write_charts(out / "svg1", formats=("svg",))
    second = report.write_charts(out / "svg2", formats=("svg",))
    assert any(b"gradient_" in f.read_bytes() for f in first)  # the case is exercised
    for a, b in zip(first, second, strict=True):
        assert a.read_bytes() == b.read_bytes(), a.name


def test_large_data_is_sampled_in_point_charts() -> None:
    rng = np.random.default_rng(0)
    n = 30_000
    customers = pd.DataFrame(
        {
            "customer_id": np.arange(n).astype(str),
            "recency_days": rng.integers(1, 365, n),
            "frequency": rng.geometric(0.3, n),
            "monetary": rng.lognormal(5, 1, n),
        }
    )
    seg = Segmenter(algorithm="kmeans", n_clusters=4, stability_resamples=0).fit(customers)
    report = build_report(customers, seg, sample=2000)
    assert report.summary["map"] == {
        "method": "PCA of the transformed features",
        "shown": 2000,
        "customers": n,
        "explained_variance": pytest.approx(report.summary["map"]["explained_variance"]),
    }
    subtitle = report.charts["customer_map"]["title"]["subtitle"]
    assert subtitle == "2,000 of 30,000 customers (random sample)"
    # the map carries the sample, never every customer
    assert len(json.dumps(report.charts["customer_map"])) < 400_000


def test_dendrogram_when_a_hierarchical_model_wins(built) -> None:
    _, _, customers, _, _ = built
    seg = Segmenter(algorithm="agglomerative_ward", n_clusters=5, stability_resamples=0).fit(
        customers
    )
    report = build_report(customers, seg)
    assert "dendrogram" in report.charts
    assert 'id="chart-dendrogram"' in report.html


def test_labels_without_a_model(tmp_path: Path) -> None:
    customers = pd.DataFrame(
        {
            "recency_days": [3, 5, 200, 250],
            "frequency": [9, 7, 1, 1],
            "monetary": [900, 700, 30, 20.0],
        }
    )
    report = build_report(customers, labels=[0, 0, 1, 1], title="Tiny <b>shop</b>")
    assert "Tiny &lt;b&gt;shop&lt;/b&gt;" in report.html  # escaped
    assert "selection" not in report.summary or report.summary["selection"] is None
    assert report.write(tmp_path / "r.html").stat().st_size > 100_000


def test_report_renders_in_a_real_browser(built, browser) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import console_errors, save_screenshot, wait_for

    report, out, *_ = built
    path = report.write(out / "browser" / "report.html")
    browser.set_window_size(1280, 900)
    browser.get(path.resolve().as_uri())
    wait_for(browser, "#summary")
    charts = browser.find_elements(By.CSS_SELECTOR, "div.chart")
    assert len(charts) == len(report.charts)

    def all_drawn(driver) -> bool:
        return all(
            c.find_elements(By.CSS_SELECTOR, "svg.marks") or c.get_attribute("class").count("error")
            for c in driver.find_elements(By.CSS_SELECTOR, "div.chart")
        )

    WebDriverWait(browser, 60).until(all_drawn)
    assert not browser.find_elements(By.CSS_SELECTOR, ".chart-error")
    for chart in charts:  # every chart drew marks, not an empty canvas
        marks = chart.find_elements(By.CSS_SELECTOR, "svg.marks path, svg.marks text")
        assert marks, chart.get_attribute("id")
    assert console_errors(browser) == []
    save_screenshot(browser, "report-desktop")
    # on a phone the page does not scroll sideways (wide charts and tables scroll alone)
    browser.set_window_size(390, 844)
    browser.refresh()
    WebDriverWait(browser, 60).until(all_drawn)
    overflow = browser.execute_script(
        "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 1, overflow
    assert console_errors(browser) == []
    save_screenshot(browser, "report-phone")


#: Segment names that end a script element early, or keep it from ending (``<!--`` then
#: ``<script>`` puts the HTML parser in a state where ``</script>`` does not close it).
_HOSTILE_NAMES = {
    0: "<!--<script>",
    1: "</script><script>window.segmintPwned = 1</script>",
    2: "A & B > C 'quoted' \\ end",
}


def test_hostile_segment_names_stay_data(built, browser) -> None:
    from html.parser import HTMLParser

    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import console_errors

    _, out, customers, seg, _ = built
    report = build_report(customers, seg, names=_HOSTILE_NAMES)

    class Scripts(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.scripts: list[str] = []
            self.inside = False

        def handle_starttag(self, tag, attrs) -> None:
            if tag == "script":
                self.inside = True
                self.scripts.append("")

        def handle_endtag(self, tag) -> None:
            self.inside = self.inside and tag != "script"

        def handle_data(self, data) -> None:
            if self.inside:
                self.scripts[-1] += data

    parser = Scripts()
    parser.feed(report.html)
    assert len(parser.scripts) == 2  # the inlined Vega bundle and the charts' script
    code = parser.scripts[1]
    assert "vegaEmbed" in code and code.rstrip().endswith("})();"), code[-200:]
    specs = code.split("var specs = ", 1)[1].split(";\n", 1)[0]
    assert not set("<>&") & set(specs)
    # the line separators (which old JavaScript engines took for line ends) are escaped
    # too; not in a name drawn here: Vega's expression parser refuses them in a string
    assert script_json(["\u2028\u2029</script>"]) == '["\\u2028\\u2029\\u003c/script\\u003e"]'
    text = json.dumps(json.loads(specs), ensure_ascii=False)
    for name in _HOSTILE_NAMES.values():
        assert json.dumps(name, ensure_ascii=False)[1:-1] in text

    path = report.write(out / "hostile" / "report.html")
    browser.get(path.resolve().as_uri())
    charts = browser.find_elements(By.CSS_SELECTOR, "div.chart")
    assert len(charts) == len(report.charts)
    WebDriverWait(browser, 60).until(
        lambda d: all(
            c.find_elements(By.CSS_SELECTOR, "svg.marks") or "error" in c.get_attribute("class")
            for c in d.find_elements(By.CSS_SELECTOR, "div.chart")
        )
    )
    errors = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".chart-error")]
    assert errors == []
    assert browser.execute_script("return window.segmintPwned === undefined")
    assert browser.execute_script("return document.scripts.length") == 2
    drawn = browser.execute_script(
        "return Array.from(document.querySelectorAll('div.chart svg')).map(s => s.textContent)"
        ".join(' ')"
    )
    assert "<!--<script>" in drawn, drawn[:500]
    assert console_errors(browser) == []


def test_lifetime_value_notes_are_shown(built) -> None:
    """The CLV notes (a fit without drop-out, a horizon past the history) are in the
    report; the drop-out one gives way to the longer paragraph when every segment is
    "active" (it was left out even when no segment was)."""
    from segmint.report import _render

    report = built[0]
    summary = dict(report.summary)
    seg = {
        "name": "A",
        "customers": 10,
        "clv_p_alive_mean": 0.9,
        "clv_expected_purchases_mean": 1.0,
        "clv_value_mean": 5.0,
        "clv_value_share": 1.0,
    }
    summary["clv"] = {
        "segments": [seg],
        "bgnbd": {"r": 0.5, "alpha": 5.0, "a": 0.006, "b": 23.5},
        "gamma_gamma": {"p": 6.0, "q": 4.0, "v": 15.0},
        "customers": 10,
        "horizon_days": 365.25,
        "discount_rate": 0.0,
        "expected_value": 50.0,
        "expected_purchases": 10.0,
        "notes": ["BG/NBD sees almost no drop-out here", "the horizon is longer"],
    }
    html = _render(summary, report.charts)
    assert "almost no drop-out here" in html and "the horizon is longer" in html
    assert 'id="clv-alive-note"' not in html
    summary["clv"]["segments"] = [{**seg, "clv_p_alive_mean": 0.995}]
    html = _render(summary, report.charts)
    assert 'id="clv-alive-note"' in html and "almost no drop-out here" not in html
    assert "the horizon is longer" in html


def test_report_numbers_round_as_a_reader_does() -> None:
    """575 of 2,000 customers (28.75 %) showed as "28.7 %" (the binary float just under
    the half), and a segment with a tiny negative revenue as "-0.0 %"."""
    from segmint.report import number_text, percent_text

    assert percent_text(575 / 2000) == "28.8 %"
    assert percent_text(-0.00001) == "0.0 %" and number_text(-0.0004, 2) == "0.00"
    assert percent_text(0.123456, 2) == "12.35 %" and percent_text(1.0) == "100.0 %"
    assert number_text(1234567.891, 1) == "1,234,567.9" and number_text(2.5) == "3"
    assert number_text(None) == "–" and percent_text(None) == "–"
    assert number_text(-1234.55, 1) == "-1,234.6"


def test_returns_are_said_to_lower_net_revenue(built, tmp_path: Path) -> None:
    """The cleaning section said the return lines "were kept aside for the return rate",
    so a reader took the net revenue at the top for gross of them; they are subtracted
    from it (monetary is net) and the section now says so, with their value."""
    import html as html_lib

    report, *_ = built
    audit = report.summary["cleaning"]
    assert audit["returns_rows"] > 0
    path = report.write(tmp_path / "report.html")
    page = html_lib.unescape(Path(path).read_text(encoding="utf-8"))
    text = " ".join(page.split('id="cleaning"')[1].split("<table")[0].split())
    assert "subtracted from their customers' net revenue" in text
    assert f"{audit['returns_amount']:,.2f}" in text


def test_no_drop_out_on_a_long_history_is_not_blamed_on_a_short_one(built) -> None:
    """On FLO (orders from 2013 to 2021, every customer a buyer of the last year) the
    report said the fit saw no drop-out "which happens when the data cover too little
    time to see customers leave": eight years are not too little time."""
    from segmint.report import _render

    report = built[0]
    seg = {
        "name": "A",
        "customers": 10,
        "clv_p_alive_mean": 0.999,
        "clv_expected_purchases_mean": 1.0,
        "clv_value_mean": 5.0,
        "clv_value_share": 1.0,
    }
    summary = dict(report.summary)
    summary["clv"] = {
        "segments": [seg],
        "bgnbd": {"r": 2.7, "alpha": 504.0, "a": 33.1, "b": 172292.0},
        "gamma_gamma": {"p": 7.8, "q": 8.1, "v": 136.8},
        "customers": 10,
        "horizon_days": 365.25,
        "discount_rate": 0.0,
        "expected_value": 50.0,
        "expected_purchases": 10.0,
        "notes": [],
    }

    def paragraph(first: str, last: str) -> str:
        summary["data"] = {**report.summary["data"], "first_purchase": first}
        summary["data"]["last_purchase"] = last
        html = _render(summary, report.charts)
        return html.split('id="clv-alive-note">')[1].split("</p>")[0]

    long = paragraph("2013-01-14", "2021-05-30")
    assert "too little time" not in long and "the data cover 8.4 years" in long
    assert "too little time" in paragraph("2010-12-01", "2011-12-09")


def test_the_report_says_where_the_selection_metrics_were_measured(built) -> None:
    """The candidate table's silhouette is measured on a sample of ``silhouette_sample``
    customers (and every metric on ``selection_sample`` when there are more), so on
    FLO the report's 0.285 did not match scikit-learn's 0.287 on all customers, and
    nothing in the report said why."""
    from sklearn.metrics import silhouette_score

    _, _, customers, _, _ = built
    n = len(customers)
    seg = Segmenter(
        algorithm="kmeans", n_clusters=4, silhouette_sample=300, stability_resamples=0
    ).fit(customers)
    assert seg.describe()["scored_on"] == {
        "customers": n,
        "candidates_fitted_on": n,
        "silhouette_customers": 300,
    }
    flat = " ".join(build_report(customers, seg).html.split())
    assert (
        f"Silhouette on a random sample of 300 of those {n:,} customers, the same for "
        "every candidate; Davies–Bouldin and Calinski–Harabasz on all of them." in flat
    )
    assert "were fitted and scored on a random sample" not in flat
    full = silhouette_score(seg.embed(customers), seg.labels_)
    assert seg.selection_["silhouette"].iloc[0] != pytest.approx(full, abs=1e-6)
    # the candidates searched on a sample of the customers: said too
    sampled = Segmenter(
        algorithm="kmeans", n_clusters=4, selection_sample=500, stability_resamples=0
    ).fit(customers)
    flat = " ".join(build_report(customers, sampled).html.split())
    assert (
        f"The candidates were fitted and scored on a random sample of 500 of the {n:,} "
        "customers clustered (the chosen model was then refitted on all)." in flat
    )
    # every customer scored: no note
    exact = Segmenter(algorithm="kmeans", n_clusters=4, stability_resamples=0).fit(customers)
    assert 'id="metrics-sample"' not in build_report(customers, exact).html


def test_cleaning_notes_are_in_the_report(tmp_path: Path) -> None:
    """The audit's notes (duplicates dropped from lines that name no product) were in
    audit.json, summary.json and the terminal, but not in the report's cleaning section,
    the one place a marketer reads: they are now under the audit table."""
    import segmint

    lines, _ = make_transactions(n_customers=300, seed=3)
    lines = lines.drop(columns=["StockCode", "Description"])
    out = tmp_path / "run"
    config = {"segment": {"algorithm": "kmeans", "n_clusters": 3}, "clv": {"enabled": False}}
    segmint.run(lines, config, out=out)
    summary = json.loads((out / "summary.json").read_text())
    notes = summary["cleaning"]["notes"]
    assert len(notes) == 1 and notes[0].startswith("duplicate: ")
    html = (out / "report.html").read_text()
    shown = re.findall(r'<p class="muted cleaning-note">(.*?)</p>', html, re.S)
    assert [" ".join(n.split()) for n in shown] == [f"Note: {' '.join(notes[0].split())}"]
    assert html.index("cleaning-note") < html.index('<section id="features">')
    # a run whose audit has no note shows none
    plain = tmp_path / "plain"
    with_products, _ = make_transactions(n_customers=300, seed=3)
    segmint.run(with_products, config, out=plain)
    assert "cleaning-note" not in (plain / "report.html").read_text()
