"""The REST API, against a real uvicorn server on 127.0.0.1 (a free port)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

import segmint
from segmint.datasets import make_transactions

SEGMINT = Path(sys.executable).with_name("segmint")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    lines, _ = make_transactions(n_customers=600, seed=7)
    out = tmp_path_factory.mktemp("api") / "run"
    segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 4}}, out=out)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(model: Path, *extra: str):
    port = _free_port()
    proc = subprocess.Popen(
        [SEGMINT, "serve", model, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"server did not start:\n{proc.stdout.read()}")
        time.sleep(0.1)


def _stop(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def server(trained: Path):
    proc, base = _start(trained / "model.segmint", "--max-batch", "50", "--max-body-bytes", "20000")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            yield client
    finally:
        _stop(proc)


def _customer(row: pd.Series) -> dict:
    return {
        "customer_id": row["customer_id"],
        "recency_days": float(row["recency_days"]),
        "frequency": float(row["frequency"]),
        "monetary": float(row["monetary"]),
        "tenure_days": float(row["tenure_days"]),
    }


def test_health_model_and_segments(server, trained: Path) -> None:
    r = server.get("/health")
    assert r.status_code == 200 and r.json()["model_loaded"] is True
    assert len(r.headers["X-Request-ID"]) == 32
    assert (
        server.get("/health", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"]
        == "abc-123"
    )
    info = server.get("/v1/model").json()
    assert info["feature_set"] == "segmint.customer"
    assert info["features"] == ["recency_days", "frequency", "monetary", "tenure_days"]
    assert info["training_customers"] == len(pd.read_parquet(trained / "customers.parquet"))
    assert info["n_segments"] == 4 and info["max_batch"] == 50
    segs = server.get("/v1/segments").json()["segments"]
    assert len(segs) == 4 and all(s["name"] and s["action"] for s in segs)
    assert server.get("/docs").status_code == 200
    assert "/v1/predict" in server.get("/openapi.json").json()["paths"]


def test_predict_matches_the_run(server, trained: Path) -> None:
    run = pd.read_parquet(trained / "customers.parquet")
    one = server.post("/v1/predict", json={"customer": _customer(run.iloc[0])})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["segment_id"] == run["segment_id"].iloc[0]
    assert body["segment_name"] == run["segment_name"].iloc[0]
    assert body["rfm_segment"] == run["rfm_segment"].iloc[0]
    assert body["out_of_range"] is False and body["warnings"] == []
    batch = server.post(
        "/v1/predict", json={"customers": [_customer(r) for _, r in run.head(50).iterrows()]}
    )
    assert batch.status_code == 200, batch.text
    got = [r["segment_id"] for r in batch.json()["results"]]
    assert got == run["segment_id"].head(50).tolist()
    odd = _customer(run.iloc[0]) | {"monetary": 1e12}
    warned = server.post("/v1/predict", json={"customer": odd}).json()
    assert warned["out_of_range"] is True
    assert warned["warnings"] == ["monetary is outside the training range"]


GOOD = {"recency_days": 10.0, "frequency": 3.0, "monetary": 500.0, "tenure_days": 100.0}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"customer": {k: v for k, v in GOOD.items() if k != "monetary"}}, "customer.monetary"),
        ({"customer": GOOD | {"recency_days": -1}}, "customer.recency_days"),
        ({"customer": GOOD | {"frequency": "many"}}, "customer.frequency"),
        ({"customer": GOOD | {"colour": "red"}}, "customer.colour"),
        ({"customer": GOOD | {"customer_id": "x" * 201}}, "customer.customer_id"),
        ({"customers": []}, "customers"),
        ({"customers": [GOOD] * 51}, "customers"),
        ({"customer": GOOD, "customers": [GOOD]}, None),
        ({}, None),
        ([1, 2], None),
    ],
)
def test_every_invalid_field_is_a_4xx_naming_it(server, payload, field) -> None:
    r = server.post("/v1/predict", json=payload)
    assert r.status_code == 422, r.text
    body = r.json()
    assert set(body) == {"error", "message", "hint", "field"}
    assert body["error"] == "invalid_request"
    if field:
        assert body["field"] == field, body


@pytest.mark.parametrize("raw", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_nan_and_infinity_are_refused(server, raw: str) -> None:
    text = (
        '{"customer": {"recency_days": ' + raw + ', "frequency": 1, "monetary": 5, '
        '"tenure_days": 0}}'
    )
    r = server.post("/v1/predict", content=text, headers={"content-type": "application/json"})
    assert r.status_code == 422, r.text
    assert r.json()["field"] == "customer.recency_days"


def test_malformed_json_and_large_bodies(server) -> None:
    r = server.post(
        "/v1/predict", content="{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    big = {"customers": [GOOD | {"customer_id": "c" * 150}] * 200}
    r = server.post("/v1/predict", json=big)
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    assert server.get("/v1/nothing").status_code == 404
    assert server.get("/v1/predict").status_code == 405


def test_api_key(trained: Path) -> None:
    proc, base = _start(trained / "model.segmint", "--api-key", "s3cret")
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/health").status_code == 200  # liveness needs no key
            for headers in ({}, {"X-API-Key": "wrong"}):
                r = c.get("/v1/model", headers=headers)
                assert r.status_code == 401 and r.json()["field"] == "X-API-Key"
                r = c.post("/v1/predict", json={"customer": GOOD}, headers=headers)
                assert r.status_code == 401
            ok = c.post("/v1/predict", json={"customer": GOOD}, headers={"X-API-Key": "s3cret"})
            assert ok.status_code == 200, ok.text
    finally:
        _stop(proc)


def test_serve_refuses_a_bad_bundle(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.segmint"
    bad.write_text("not a model")
    r = cli("serve", bad)
    assert r.code == 2 and r.err.startswith("Error: ") and "not a segmint model" in r.err
