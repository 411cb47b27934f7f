"""The REST API, against a real uvicorn server on 127.0.0.1 (a free port)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

import segmint
from segmint.api.app import _finite_or_none
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


def _start(model: Path, *extra: str, preexec_fn=None):  # noqa: ANN001
    port = _free_port()
    proc = subprocess.Popen(
        [SEGMINT, "serve", model, "--port", str(port), *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=preexec_fn,  # noqa: PLW1509 - a limit for the server, set before exec
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
    proc, base = _start(
        trained / "model.segmint", "--max-batch", "50", "--max-body-bytes", "2000000"
    )
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
    # which rule set names the rfm_segment of the answers, and on which cut points
    assert info["rfm"]["rule_set_label"] == "rf-grid v1"
    assert set(info["rfm"]["cut_points"]) == {"recency_days", "frequency", "monetary"}
    body = server.get("/v1/segments").json()
    segs = body["segments"]
    assert len(segs) == 4 and all(s["name"] and s["action"] for s in segs)
    # lifetime value per segment, from the run
    assert all(s["mean_clv_value"] >= 0 and 0 <= s["clv_value_share"] <= 1 for s in segs)
    assert sum(s["clv_value_share"] for s in segs) == pytest.approx(1.0)
    assert body["clv"]["bgnbd"]["r"] > 0 and len(body["clv"]["segments"]) == 4
    assert server.get("/docs").status_code == 200
    assert "/v1/predict" in server.get("/openapi.json").json()["paths"]


@pytest.mark.parametrize("rid", ["a" * 65, "bad id!", "<script>", "abc_123", "x\ty"])
def test_unsafe_request_ids_are_replaced(server, rid: str) -> None:
    """The X-Request-ID is echoed in the response and written to the access log: an id
    that is too long or holds anything but letters, digits and dashes (markup, spaces,
    log-line breakers) is replaced by a fresh one instead of being reflected."""
    import re

    for r in (
        server.get("/health", headers={"X-Request-ID": rid}),
        server.post("/v1/predict", json={"recency_days": 1}, headers={"X-Request-ID": rid}),
    ):
        echoed = r.headers["X-Request-ID"]
        assert echoed != rid
        assert re.fullmatch(r"[0-9a-f]{32}", echoed), echoed
    # valid ids, up to 64 characters, are echoed as they are
    for ok in ("abc-123", "A" * 64, "0-1-2"):
        assert server.get("/health", headers={"X-Request-ID": ok}).headers["X-Request-ID"] == ok


def test_predict_matches_the_run(server, trained: Path) -> None:
    run = pd.read_parquet(trained / "customers.parquet")
    one = server.post("/v1/predict", json={"customer": _customer(run.iloc[0])})
    assert one.status_code == 200, one.text
    body = one.json()
    assert body["segment_id"] == run["segment_id"].iloc[0]
    assert body["segment_name"] == run["segment_name"].iloc[0]
    assert body["rfm_segment"] == run["rfm_segment"].iloc[0]
    # which rule set named it, as /v1/model's rfm.rule_set_label and `segmint score`
    assert body["rfm_rule_set"] == run["rfm_rule_set"].iloc[0] == "rf-grid v1"
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


def test_predict_with_a_categorical_model_matches_the_run(tmp_path: Path) -> None:
    """Models with categorical features take the general (pandas) path of /v1/predict;
    it gives the same answers as the run."""
    lines, _ = make_transactions(n_customers=400, seed=3)
    out = tmp_path / "run"
    segmint.run(
        lines,
        {"segment": {"algorithm": "kmeans", "n_clusters": 3, "categorical": ["country"]}},
        out=out,
    )
    assert not segmint.load_model(out / "model.segmint").numeric_only
    run = pd.read_parquet(out / "customers.parquet")
    proc, base = _start(out / "model.segmint")
    try:
        rows = [_customer(r) | {"country": r["country"]} for _, r in run.head(40).iterrows()]
        batch = httpx.post(f"{base}/v1/predict", json={"customers": rows}, timeout=30)
        assert batch.status_code == 200, batch.text
        results = batch.json()["results"]
        assert [r["segment_id"] for r in results] == run["segment_id"].head(40).tolist()
        assert [r["rfm_segment"] for r in results] == run["rfm_segment"].head(40).tolist()
        assert {r["rfm_rule_set"] for r in results} == {"rf-grid v1"}
        odd = rows[0] | {"monetary": 1e12}
        one = httpx.post(f"{base}/v1/predict", json={"customer": odd}, timeout=30).json()
        assert one["customer_id"] == rows[0]["customer_id"]
        assert one["warnings"] == ["monetary is outside the training range"]
        unseen = rows[1] | {"country": "Atlantis"}
        two = httpx.post(f"{base}/v1/predict", json={"customer": unseen}, timeout=30).json()
        assert two["out_of_range"] is True
        assert two["warnings"] == ["country 'Atlantis' was not in the training data"]
        one, _ = _post_schema_examples(base)  # a known country in the examples
        assert one["out_of_range"] is False
    finally:
        _stop(proc)


GOOD = {"recency_days": 10.0, "frequency": 3.0, "monetary": 500.0, "tenure_days": 100.0}


def test_every_result_has_its_position_and_only_the_ids_sent(server) -> None:
    """Customers without an id got their position as customer_id ("0", "1", ...), which
    could be the id of a real customer of the same batch: the results of customer "0"
    and of the first customer without an id could not be told apart. Every result now
    has its position as ``index`` and echoes only the ids that were sent."""
    batch = [GOOD, GOOD | {"customer_id": "0", "monetary": 9000.0}, GOOD | {"customer_id": "1"}]
    r = server.post("/v1/predict", json={"customers": batch})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["index"] for x in results] == [0, 1, 2]
    assert [x["customer_id"] for x in results] == [None, "0", "1"]
    ids = [x["customer_id"] for x in results if x["customer_id"] is not None]
    assert len(ids) == len(set(ids))  # no invented id equals a real one
    single = server.post("/v1/predict", json={"customer": GOOD}).json()
    assert single["index"] == 0 and single["customer_id"] is None
    assert single == results[0]
    r = server.post("/v1/predict", json={"customers": [GOOD | {"frequency": 3}]})  # an int
    assert r.status_code == 200, r.text
    # values beyond what the model's arithmetic holds are refused before it runs (a
    # distance of inf was written as the non-JSON token Infinity); the answer stays JSON
    huge = GOOD | {"frequency": 1.4e308, "monetary": 2.5e38, "tenure_days": 8e307}
    r = server.post("/v1/predict", json={"customer": huge})
    assert r.status_code == 422, r.text

    def refuse(token: str) -> None:
        raise AssertionError(f"not JSON: {token}")

    json.loads(r.text, parse_constant=refuse)
    assert _finite_or_none(float("inf")) is None and _finite_or_none(2.5) == 2.5
    # the OpenAPI schema documents both fields
    schema = server.get("/openapi.json").json()["components"]["schemas"]["PredictResult"]
    assert {"index", "customer_id"} <= set(schema["required"])
    assert "never invented" in schema["properties"]["customer_id"]["description"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"customer": {k: v for k, v in GOOD.items() if k != "monetary"}}, "customer.monetary"),
        ({"customer": GOOD | {"recency_days": -1}}, "customer.recency_days"),
        ({"customer": GOOD | {"frequency": "many"}}, "customer.frequency"),
        ({"customer": GOOD | {"frequency": "3"}}, "customer.frequency"),  # text, not a number
        ({"customer": GOOD | {"monetary": True}}, "customer.monetary"),
        # finite, but the model's arithmetic overflowed: distance Infinity, not JSON
        ({"customer": GOOD | {"tenure_days": 1e300}}, "customer.tenure_days"),
        ({"customer": GOOD | {"monetary": 1e16}}, "customer.monetary"),
        ({"customer": GOOD | {"colour": "red"}}, "customer.colour"),
        ({"customer": GOOD | {"customer_id": "x" * 201}}, "customer.customer_id"),
        ({"customers": []}, "customers"),
        ({"customers": [GOOD] * 51}, "customers"),
        ({"customer": GOOD, "customers": [GOOD]}, "body"),
        ({}, "body"),
        ([1, 2], "body"),
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


def test_extreme_values_are_answered_in_strict_json(server) -> None:
    """Values at the limit still give finite numbers: the answer is JSON a browser parses
    (1e300 once gave ``"distance":Infinity``)."""
    import json

    def strict(text: str) -> dict:
        def refuse(constant: str) -> None:
            raise AssertionError(f"not JSON: {constant}")

        return json.loads(text, parse_constant=refuse)

    limit = {"recency_days": 1e15, "frequency": 1e15, "monetary": 1e15, "tenure_days": 1e15}
    r = server.post("/v1/predict", json={"customer": limit})
    assert r.status_code == 200, r.text
    body = strict(r.text)
    assert body["out_of_range"] is True and body["distance"] > 0


def test_json_sent_without_a_json_content_type_is_named(server) -> None:
    """curl's ``-d`` sends a form content type: FastAPI does not parse the body, and the
    answer said "body: Input should be a valid dictionary...", not what to change."""
    body = json.dumps({"customer": {"recency_days": 10}})
    for ctype in ("application/x-www-form-urlencoded", "text/plain", None):
        headers = {"content-type": ctype} if ctype else {}
        r = server.post("/v1/predict", content=body, headers=headers)
        assert r.status_code == 422, r.text
        err = r.json()
        assert err["field"] == "body"
        assert "Content-Type" in err["message"] and "application/json" in err["hint"]
    # a JSON body that is not an object is still answered about its content
    r = server.post("/v1/predict", json=[1, 2])
    assert r.status_code == 422 and "Content-Type" not in r.json()["message"]


def test_malformed_json_and_large_bodies(server) -> None:
    r = server.post(
        "/v1/predict", content="{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert r.json()["field"] == "body"
    assert r.json()["message"].startswith("body: not valid JSON at character 1 (Expecting")
    r = server.post("/v1/predict", content=b'{"customer": "\xff"}')
    assert r.status_code == 422 and r.json()["field"] == "body", r.text
    big = '{"customers": [' + ",".join(['{"recency_days": 1}'] * 120_000) + "]}"
    assert len(big) > 2_000_000
    r = server.post("/v1/predict", content=big, headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    # Starlette's own answers have codes of their own (all were "http_error")
    missing = server.get("/v1/nothing")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert "/docs" in missing.json()["hint"]
    wrong = server.get("/v1/predict")
    assert wrong.status_code == 405 and wrong.json()["error"] == "method_not_allowed"
    assert wrong.json()["hint"] == "this path answers POST" and wrong.headers["allow"] == "POST"
    # JSON too deep to parse, or an integer of thousands of digits: a 422 naming the
    # body, never a plain-text 500
    deep = '{"customer": ' + "[" * 5000 + "]" * 5000 + "}"
    huge = '{"customer": {"recency_days": ' + "9" * 5000 + "}}"
    for raw, reason in ((deep, "nested too deeply"), (huge, "a number of over 4,300 digits")):
        r = server.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "body" and reason in r.json()["message"], r.json()
        # Python's advice (sys.set_int_max_str_digits) was passed on to the client
        assert "sys." not in r.json()["message"]
    # an id sent as a number: the hint says to send a string, not just "see /docs"
    r = server.post("/v1/predict", json={"customer": GOOD | {"customer_id": 12346}})
    assert r.status_code == 422 and r.json()["field"] == "customer.customer_id", r.text
    assert r.json()["hint"] == 'send the id as a JSON string, e.g. "customer_id": "12346"'


def test_health_answers_promptly_while_large_batches_are_scored(trained: Path) -> None:
    """/health ran in the thread pool and large /v1/predict bodies were parsed on the
    event loop: with 30 batches of 10,000 customers in flight, /health took 8 to 10 s,
    so a load balancer's health check (or a liveness probe) failed a busy worker. It is
    now answered on the event loop (to HEAD too) while the batches are parsed and scored
    a few at a time in threads."""
    import threading

    proc, base = _start(trained / "model.segmint")
    body = json.dumps({"customers": [GOOD] * 10_000}).encode()
    statuses: list[int] = []

    def send_batch() -> None:
        r = httpx.post(
            f"{base}/v1/predict",
            content=body,
            headers={"content-type": "application/json"},
            timeout=300,
        )
        statuses.append(r.status_code)

    try:
        assert httpx.head(f"{base}/health", timeout=10).status_code == 200
        spec = httpx.get(f"{base}/openapi.json", timeout=10).json()
        ids = [op["operationId"] for ops in spec["paths"].values() for op in ops.values()]
        assert len(ids) == len(set(ids)), ids  # HEAD is not a second "health" operation
        senders = [threading.Thread(target=send_batch) for _ in range(30)]
        for t in senders:
            t.start()
        time.sleep(1.0)  # the bodies are sent; the server is busy with them
        waits = []
        with httpx.Client(timeout=60) as c:
            for _ in range(4):
                t0 = time.perf_counter()
                assert c.get(f"{base}/health").status_code == 200
                waits.append(time.perf_counter() - t0)
        busy = any(t.is_alive() for t in senders)
        for t in senders:
            t.join()
        assert busy, "the batches were done before /health was asked: no load measured"
        assert statuses == [200] * 30
        assert max(waits) < 2.0, waits
    finally:
        _stop(proc)


def test_compressed_request_bodies_are_refused_naming_the_header(server, small_csv) -> None:
    """A body sent with Content-Encoding: gzip was read as it came: JSON was "not valid
    JSON at character 1 (invalid start byte)", an upload "Invalid multipart data" (400,
    no hint), and a body labelled br but sent plain was answered as if fine. Each is
    now a 415 naming the header, with Accept-Encoding: identity (RFC 9110)."""
    import gzip

    body = json.dumps({"customer": GOOD}).encode()
    upload = httpx.Request("POST", "http://x/", files={"file": ("a.csv", small_csv.read_bytes())})
    upload.read()
    cases = [
        ("/v1/predict", gzip.compress(body), "application/json", "gzip"),
        ("/v1/predict", body, "application/json", "br"),
        ("/v1/score", gzip.compress(upload.content), upload.headers["content-type"], "gzip"),
    ]
    for path, content, ctype, encoding in cases:
        headers = {"content-type": ctype, "content-encoding": encoding}
        r = server.post(path, content=content, headers=headers)
        assert r.status_code == 415, (path, encoding, r.text)
        err = r.json()
        assert err["error"] == "unsupported_encoding" and err["field"] == "Content-Encoding"
        assert encoding in err["message"] and ".csv.gz" in err["hint"]
        assert r.headers["accept-encoding"] == "identity"
    plain = {"content-type": "application/json", "content-encoding": "identity"}
    assert server.post("/v1/predict", content=body, headers=plain).status_code == 200
    spec = server.get("/openapi.json").json()
    assert "415" in spec["paths"]["/v1/predict"]["post"]["responses"]


@pytest.mark.parametrize(
    "content",
    [
        {"customer": GOOD | {"customer_id": "c1"}},
        {"customers": [GOOD, GOOD | {"monetary": 1e12}]},
        {"customer": GOOD | {"recency_days": -1}},
        {"customer": GOOD | {"frequency": "many"}},
        {"customers": [GOOD] * 51},
        [1, 2],
        "{not json",
        "",
        "null",
    ],
)
def test_fast_path_answers_as_the_fastapi_route(server, content) -> None:
    """JSON requests to /v1/predict are answered by the middleware's fast path; other
    JSON content types go through FastAPI's route. Both give the same status and body."""
    import json

    raw = content if isinstance(content, str) else json.dumps(content)
    fast = server.post("/v1/predict", content=raw, headers={"content-type": "application/json"})
    routed = server.post(
        "/v1/predict", content=raw, headers={"content-type": "application/vnd.api+json"}
    )
    assert fast.status_code == routed.status_code, (fast.text, routed.text)
    assert fast.json() == routed.json()
    assert fast.headers["content-type"] == routed.headers["content-type"]
    assert len(fast.headers["X-Request-ID"]) == 32


def test_chunked_body_over_the_limit_is_refused(server) -> None:
    """A body sent without Content-Length is counted as it arrives (limit 2,000,000)."""
    piece = ('{"recency_days": 1},' * 5_000).encode()

    def chunks():
        yield b'{"customers": ['
        for _ in range(25):  # ~2.5 MB
            yield piece
        yield b'{"recency_days": 1}]}'

    r = server.post("/v1/predict", content=chunks(), headers={"content-type": "application/json"})
    assert r.status_code == 413 and r.json()["error"] == "body_too_large"
    small = server.post(
        "/v1/predict",
        content=iter([b'{"customer": ', json_bytes(GOOD), b"}"]),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 200, small.text


def json_bytes(value: object) -> bytes:
    import json

    return json.dumps(value).encode()


def _health_over_new_connection(port: int) -> dict:
    import json

    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    return json.loads(data.split(b"\r\n\r\n", 1)[1])


def test_workers_share_connections_and_stop_together(trained: Path) -> None:
    """--workers 2: each worker accepts on its own SO_REUSEPORT socket, so new
    connections reach both (with one shared socket, keep-alive clients piled up on one
    worker); a killed worker is replaced; stopping the server stops every worker."""
    import signal

    proc, base = _start(trained / "model.segmint", "--workers", "2")
    port = int(base.rsplit(":", 1)[1])
    try:
        pids = {_health_over_new_connection(port)["worker_pid"] for _ in range(40)}
        assert len(pids) == 2, pids  # all 40 on one worker: chance 2**-39
        assert proc.pid not in pids
        r = httpx.post(f"{base}/v1/predict", json={"customer": GOOD}, timeout=30)
        assert r.status_code == 200, r.text
        # a worker that dies is replaced, and the server keeps answering
        killed = sorted(pids)[0]
        os.kill(killed, signal.SIGKILL)
        deadline = time.monotonic() + 60
        seen: set[int] = set()
        while time.monotonic() < deadline:
            try:
                seen |= {_health_over_new_connection(port)["worker_pid"] for _ in range(10)}
            except (OSError, ValueError):  # a connection to the dead worker failed
                pass
            if seen - pids:
                break
            time.sleep(0.2)
        replacement = seen - pids
        assert replacement, "no new worker replaced the killed one"
        assert killed not in seen
        pids |= replacement
    finally:
        _stop(proc)
    assert proc.returncode == 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        alive = []
        for pid in pids:
            try:
                os.kill(pid, 0)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            break
        time.sleep(0.2)
    assert not alive, f"workers still running after the server stopped: {alive}"


def test_workers_log_requests_as_the_single_process_server_does(trained: Path) -> None:
    """`serve --workers 2 -v`: every request is one JSON line of the access log, as with
    one worker. The spawned workers did not inherit the command's logging set-up, so
    -v had no effect in them and no request was logged."""
    proc, base = _start(trained / "model.segmint", "--workers", "2", "-v")
    try:
        for i in range(6):
            r = httpx.get(f"{base}/health", headers={"X-Request-ID": f"walk-{i}"}, timeout=30)
            assert r.status_code == 200
        time.sleep(1)
    finally:
        _stop(proc)
    lines = [json.loads(x) for x in proc.stdout.read().splitlines() if x.startswith("{")]
    logged = {x["request_id"] for x in lines if x.get("path") == "/health"}
    assert {f"walk-{i}" for i in range(6)} <= logged, lines


def test_a_restarted_worker_serves_the_model_the_server_started_with(
    trained: Path, tmp_path: Path
) -> None:
    """The model file replaced while serving (a run re-done with --overwrite, a new
    bundle copied over the old one), then a worker dies: its replacement loaded the new
    file, and the service answered with two models depending on the connection. Every
    worker now loads the copy taken at start; /health and /v1/model name the model."""
    import shutil
    import signal

    first = segmint.load_model(trained / "model.segmint").model_id
    lines, _ = make_transactions(n_customers=300, seed=3)
    other = tmp_path / "other"
    segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}}, out=other)
    assert segmint.load_model(other / "model.segmint").model_id != first
    live = tmp_path / "live.segmint"
    shutil.copyfile(trained / "model.segmint", live)
    proc, base = _start(live, "--workers", "2")
    port = int(base.rsplit(":", 1)[1])
    try:
        answers = [_health_over_new_connection(port) for _ in range(40)]
        pids = {a["worker_pid"] for a in answers}
        assert {a["model_id"] for a in answers} == {first}
        assert httpx.get(f"{base}/v1/model", timeout=30).json()["model_id"] == first
        shutil.copyfile(other / "model.segmint", live.with_suffix(".new"))
        os.replace(live.with_suffix(".new"), live)
        os.kill(sorted(pids)[0], signal.SIGKILL)
        deadline = time.monotonic() + 60
        seen: dict[int, str] = {}
        while time.monotonic() < deadline and not set(seen) - pids:
            try:
                for _ in range(10):
                    a = _health_over_new_connection(port)
                    seen[a["worker_pid"]] = a["model_id"]
            except (OSError, ValueError):  # a connection to the dead worker failed
                pass
            time.sleep(0.2)
        assert set(seen) - pids, "no new worker replaced the killed one"
        assert set(seen.values()) == {first}, seen
    finally:
        _stop(proc)


def test_serve_refuses_a_port_in_use(cli, trained: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        r = cli("serve", trained / "model.segmint", "--port", str(port), "--workers", "2")
    assert r.code != 0 and r.err.startswith("Error: ") and "in use" in r.err
    assert "Traceback" not in r.err


def test_serve_warns_when_open_to_the_network_without_a_key(trained: Path) -> None:
    """--host 0.0.0.0 without --api-key serves anyone who can reach the machine."""
    proc, _ = _start(trained / "model.segmint", "--host", "0.0.0.0")
    _stop(proc)
    out = proc.stdout.read()
    assert "warning: listening on 0.0.0.0 without an API key" in out, out
    proc, _ = _start(trained / "model.segmint", "--host", "0.0.0.0", "--api-key", "k")
    _stop(proc)
    assert "warning" not in proc.stdout.read()


def test_api_key(trained: Path) -> None:
    proc, base = _start(
        trained / "model.segmint", "--api-key", "s3cret", "--max-body-bytes", "2000000"
    )
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.get("/health").status_code == 200  # liveness needs no key
            # a non-ASCII key (bytes in the header) is a wrong key, not a 500
            for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": "s3cr\u00e9t".encode()}):
                r = c.get("/v1/model", headers=headers)
                assert r.status_code == 401 and r.json()["field"] == "X-API-Key"
                # how to authenticate (RFC 9110 asks it of a 401); never cached
                assert 'header="X-API-Key"' in r.headers["WWW-Authenticate"]
                assert r.headers["Cache-Control"] == "no-store"
                # the key is checked before the size: no limit is told without it
                big = c.post("/v1/predict", content=b"{" + b" " * 3_000_000 + b"}",
                             headers={**headers, "Content-Type": "application/json"})  # fmt: skip
                assert big.status_code == 401, big.text
                r = c.post("/v1/predict", json={"customer": GOOD}, headers=headers)
                assert r.status_code == 401
            keyed = {"X-API-Key": "s3cret", "Content-Type": "application/json"}
            big = c.post("/v1/predict", content=b"{" + b" " * 3_000_000 + b"}", headers=keyed)
            assert big.status_code == 413, big.text  # with the key: the limit, as before
            ok = c.post("/v1/predict", json={"customer": GOOD}, headers={"X-API-Key": "s3cret"})
            assert ok.status_code == 200, ok.text
            # the schema is public (docs work without the key) but holds no training data:
            # the ranges (the largest customer's spend) are behind the key
            schema = c.get("/openapi.json").text
            assert "x-training-min" not in schema and "training ranges: GET /v1/model" in schema
            answer = c.get("/v1/model", headers={"X-API-Key": "s3cret"})
            info = answer.json()
            assert info["feature_ranges"]["monetary"][1] > 0
            # data behind the key: no browser or proxy cache keeps it (it had no
            # Cache-Control); the public liveness check may be cached as before
            assert answer.headers["Cache-Control"] == "no-store"
            assert ok.headers["Cache-Control"] == "no-store"
            assert "Cache-Control" not in c.get("/health").headers
            # its examples tell nothing of the training data either, and still validate
            one, _ = _post_schema_examples(base, {"X-API-Key": "s3cret"})
            assert '"monetary":1.0' in schema.replace(" ", "")
    finally:
        _stop(proc)


def test_api_key_file_rotates_keys_without_a_restart(trained: Path, tmp_path: Path) -> None:
    """One --api-key could not be rotated without a restart (every client cut off at
    once) and showed in every user's ps. --api-key-file takes several keys, in every
    worker, and is read again when it changes; a broken edit keeps the keys read last."""
    keys = tmp_path / "keys.txt"
    keys.write_text("# segmint keys\nold-key\n\n  new-key  \n")
    keys.chmod(0o600)
    proc, base = _start(trained / "model.segmint", "--api-key-file", str(keys), "--workers", "2")

    def status(key: str) -> set[int]:
        # new connections: the two workers each get some of them
        return {
            httpx.get(f"{base}/v1/model", headers={"X-API-Key": key}, timeout=30).status_code
            for _ in range(8)
        }

    def wait_for(key: str, code: int) -> None:
        deadline = time.monotonic() + 20
        while status(key) != {code}:
            assert time.monotonic() < deadline, f"{key}: still {status(key)}, not {code}"
            time.sleep(0.2)

    try:
        assert status("old-key") == status("new-key") == {200}
        assert status("wrong") == status("# segmint keys") == status("") == {401}
        assert httpx.get(f"{base}/health", timeout=30).status_code == 200
        # the schema declares the key, as with --api-key
        assert (
            "APIKey"
            in httpx.get(f"{base}/openapi.json", timeout=30).json()["components"]["securitySchemes"]
        )
        staged = tmp_path / "keys.new"
        staged.write_text("new-key\nnewer-key\n")
        os.replace(staged, keys)
        wait_for("old-key", 401)
        assert status("new-key") == status("newer-key") == {200}
        keys.write_text("# emptied by mistake\n")  # never opens the service to everyone
        time.sleep(2.5)
        assert status("new-key") == {200} and status("") == {401}
        keys.unlink()
        time.sleep(2.5)
        assert status("newer-key") == {200} and status("old-key") == {401}
        keys.write_text("third-key\n")
        wait_for("third-key", 200)
        assert status("new-key") == {401}
    finally:
        _stop(proc)
    out = proc.stdout.read()
    assert "2 API key(s) from" in out and "old-key" not in out, out
    assert "holds no key; the 2 key(s) read before stay in use" in out, out
    assert "API keys read again from" in out, out


def test_api_key_file_mistakes_are_named(cli, trained: Path, tmp_path: Path) -> None:
    model = trained / "model.segmint"
    missing = tmp_path / "nokeys.txt"
    empty = tmp_path / "empty.txt"
    empty.write_text("# no key yet\n\n")
    keys = tmp_path / "keys.txt"
    keys.write_text("k1\n")
    for extra, says in [
        ((missing,), "cannot read the API key file"),
        ((empty,), "holds no key"),
        ((keys, "--api-key", "k2"), "were both given"),
    ]:
        r = cli("serve", model, "--port", "0", "--api-key-file", *extra)
        assert r.code == 2 and says in r.err and "Traceback" not in r.err, r.err
        assert "k1" not in r.err and "k2" not in r.err  # never a key in a message


def test_api_key_file_readable_by_others_is_warned_of(trained: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("k1\n")
    keys.chmod(0o644)
    proc, base = _start(trained / "model.segmint", "--api-key-file", str(keys))
    try:
        assert httpx.get(f"{base}/v1/model", headers={"X-API-Key": "k1"}).status_code == 200
    finally:
        _stop(proc)
    out = proc.stdout.read()
    assert "can be read by other users; chmod 600" in out, out


def test_openapi_declares_the_api_key_and_the_csv_answer(trained: Path, small_csv: Path) -> None:
    """A client generated from /openapi.json (or Swagger UI's "Try it out") did not know
    the service needs X-API-Key (no security scheme: no "Authorize" button, every call a
    401), and /v1/score's answer was declared as JSON only (of no schema), while it
    answers CSV by default."""
    proc, base = _start(trained / "model.segmint", "--api-key", "s3cret")
    try:
        with httpx.Client(base_url=base, timeout=60, headers={"X-API-Key": "s3cret"}) as c:
            schema = c.get("/openapi.json").json()
            assert schema["components"]["securitySchemes"]["APIKey"] == {
                "type": "apiKey",
                "in": "header",
                "name": "X-API-Key",
            }
            for path, operations in schema["paths"].items():
                for operation in operations.values():
                    wanted = None if path == "/health" else [{"APIKey": []}]
                    assert operation.get("security") == wanted, path
            answers = schema["paths"]["/v1/score"]["post"]["responses"]["200"]
            declared = answers["content"]
            assert "X-Segmint-Notes" in answers["headers"]
            with small_csv.open("rb") as fh:
                csv = c.post("/v1/score", files={"file": ("m.csv", fh)})
            assert csv.headers["content-type"].split(";")[0] in declared
            with small_csv.open("rb") as fh:
                body = c.post("/v1/score?format=json", files={"file": ("m.csv", fh)}).json()
            rows = schema["components"]["schemas"]["ScoreRow"]
            assert set(body["results"][0]) == set(rows["properties"])
            assert set(rows["required"]) <= set(body["results"][0])
            assert csv.text.splitlines()[0].split(",") == list(rows["properties"])
        # without a key, the schema asks for none
        _stop(proc)
        proc, base = _start(trained / "model.segmint")
        schema = httpx.get(f"{base}/openapi.json", timeout=30).json()
        assert "securitySchemes" not in schema["components"]
        assert all("security" not in o for ops in schema["paths"].values() for o in ops.values())
    finally:
        _stop(proc)


def test_cors_with_an_api_key(trained: Path, monkeypatch) -> None:
    """With SEGMINT_CORS_ORIGINS, a browser's preflight (which carries no key) is
    answered, and predictions (the middleware's fast path too) carry the CORS header;
    other origins get none."""
    monkeypatch.setenv("SEGMINT_CORS_ORIGINS", "https://crm.example.com")
    proc, base = _start(trained / "model.segmint", "--api-key", "k1")
    origin = {"Origin": "https://crm.example.com"}
    try:
        with httpx.Client(base_url=base, timeout=30) as c:
            pre = c.options(
                "/v1/predict",
                headers=origin
                | {
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "content-type,x-api-key",
                },
            )
            assert pre.status_code == 200, pre.text
            assert pre.headers["access-control-allow-origin"] == "https://crm.example.com"
            r = c.post("/v1/predict", json={"customer": GOOD}, headers=origin | {"X-API-Key": "k1"})
            assert r.status_code == 200, r.text
            assert r.headers["access-control-allow-origin"] == "https://crm.example.com"
            # the page may read the request id, and a CSV answer's notes and file name
            exposed = r.headers["access-control-expose-headers"].lower().split(", ")
            assert {"x-request-id", "x-segmint-notes", "content-disposition"} <= set(exposed)
            assert "retry-after" in exposed  # the wait of a 503 busy
            denied = c.post("/v1/predict", json={"customer": GOOD}, headers=origin)
            assert denied.status_code == 401
            assert denied.headers["access-control-allow-origin"] == "https://crm.example.com"
            other = c.post(
                "/v1/predict",
                json={"customer": GOOD},
                headers={"Origin": "https://evil.example", "X-API-Key": "k1"},
            )
            assert "access-control-allow-origin" not in other.headers
    finally:
        _stop(proc)


def test_serve_refuses_a_bad_bundle(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.segmint"
    bad.write_text("not a model")
    r = cli("serve", bad)
    assert r.code == 2 and r.err.startswith("Error: ") and "not a segmint model" in r.err


@pytest.fixture(scope="module")
def small_csv(tmp_path_factory) -> Path:
    lines, _ = make_transactions(n_customers=60, seed=11)
    path = tmp_path_factory.mktemp("upload") / "new_month.csv"
    lines.to_csv(path, index=False)
    return path


def test_an_upload_the_disk_cannot_store_is_a_503_to_retry(
    trained: Path, small_csv: Path, tmp_path: Path
) -> None:
    """An upload the service's disk could not store was an internal error (500), and an
    engine failure of that kind a 422 (change your request); it is the machine's state,
    so it is now 503 ``disk_full`` with Retry-After, naming the file. A real OS limit:
    the server runs with a file size limit (RLIMIT_FSIZE, SIGXFSZ ignored), so writing
    the upload past it fails with EFBIG, as on a full disk with ENOSPC."""
    import resource
    import signal

    limit = (trained / "model.segmint").stat().st_size + 1_000_000  # room for its copy

    def limited() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    big = tmp_path / "big_month.csv"
    make_transactions(n_customers=3000, seed=3).lines.to_csv(big, index=False)
    assert limit < big.stat().st_size < 50_000_000
    proc, base = _start(trained / "model.segmint", preexec_fn=limited)
    try:
        with httpx.Client(base_url=base, timeout=60) as c, big.open("rb") as fh:
            r = c.post("/v1/score", files={"file": ("big_month.csv", fh, "text/csv")})
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["error"] == "disk_full" and body["field"] == "file"
            assert "File too large" in body["message"]  # spooled by the form parser
            assert r.headers["Retry-After"] == "10" and "later" in body["hint"]
            with small_csv.open("rb") as small:  # the service goes on
                ok = c.post("/v1/score", files={"file": ("new_month.csv", small, "text/csv")})
            assert ok.status_code == 200, ok.text
    finally:
        _stop(proc)


def test_environment_failures_are_503_not_422() -> None:
    """The status of a segmint error: the request's fault (422) or the machine's (503)."""
    from segmint.api.app import _segmint_error
    from segmint.errors import EnvironmentFailure, InputError

    full = _segmint_error(EnvironmentFailure("x: the disk is full", code="disk_full"))
    assert full.status_code == 503 and full.headers["Retry-After"] == "10"
    assert _segmint_error(InputError("x: no customer id column")).status_code == 422


def test_score_a_file_as_csv_and_json(server, small_csv: Path) -> None:
    with small_csv.open("rb") as fh:
        r = server.post("/v1/score", files={"file": ("new_month.csv", fh, "text/csv")})
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/csv")
    import io

    scored = pd.read_csv(io.StringIO(r.text), dtype={"customer_id": str})
    assert list(scored.columns)[:4] == ["customer_id", "segment_id", "segment_name", "action"]
    assert 40 <= len(scored) <= 60 and scored["customer_id"].is_unique
    with small_csv.open("rb") as fh:
        j = server.post("/v1/score?format=json", files={"file": ("new_month.csv", fh, "text/csv")})
    assert j.status_code == 200
    assert [r["segment_id"] for r in j.json()["results"]] == scored["segment_id"].tolist()
    # which model and which date, on every row, as `segmint score --out` writes them
    assert scored["model_id"].nunique() == 1 and len(scored["model_id"].iloc[0]) == 16
    first = j.json()["results"][0]
    assert first["model_id"] == scored["model_id"].iloc[0]
    assert first["snapshot_date"] == scored["snapshot_date"].iloc[0]
    assert len(first["snapshot_date"]) == 10  # an ISO date, not epoch milliseconds
    # the rule set of rfm_segment, right after it, in both answers and in the schema of
    # both endpoints (as `segmint score --out` writes it)
    cols = list(scored.columns)
    assert cols[cols.index("rfm_segment") + 1] == "rfm_rule_set"
    assert set(scored["rfm_rule_set"]) == {"rf-grid v1"} == {first["rfm_rule_set"]}
    schemas = server.get("/openapi.json").json()["components"]["schemas"]
    for component in ("ScoreRow", "PredictResult"):
        props = list(schemas[component]["properties"])
        assert props[props.index("rfm_segment") + 1] == "rfm_rule_set", component
        assert "rf-grid v1" in schemas[component]["properties"]["rfm_rule_set"]["description"]
    _conforms(server, "ScoreResults", j.json())
    # the formats are an enum in the schema (a generated client offers them; a pattern
    # "^(csv|json)$" was a free string to it), and a wrong one is named with the choices
    spec = server.get("/openapi.json").json()["paths"]["/v1/score"]["post"]
    fmt = next(p for p in spec["parameters"] if p["name"] == "format")
    assert fmt["schema"]["enum"] == ["csv", "json"]
    with small_csv.open("rb") as fh:
        bad = server.post("/v1/score?format=xml", files={"file": ("a.csv", fh, "text/csv")})
    assert bad.status_code == 422 and "'csv' or 'json'" in bad.json()["message"]


def _conforms(server, component: str, instance: object) -> None:
    """``instance`` validates against ``component`` of the live /openapi.json."""
    import jsonschema

    spec = server.get("/openapi.json").json()
    schema = {"$ref": f"#/components/schemas/{component}", "components": spec["components"]}
    jsonschema.Draft202012Validator(schema).validate(instance)


def _post_schema_examples(base: str, headers: dict | None = None) -> list[dict]:
    """POST every example body the live schema gives for /v1/predict; their answers."""
    spec = httpx.get(f"{base}/openapi.json", timeout=30).json()
    media = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    answers = []
    for name, example in media["examples"].items():
        r = httpx.post(f"{base}/v1/predict", json=example["value"], headers=headers, timeout=30)
        assert r.status_code == 200, (name, r.text)
        answers.append(r.json())
    assert len(answers) == 2
    return answers


def test_the_schema_examples_are_requests_the_service_accepts(server) -> None:
    """Swagger UI's "Try it out" built its body from the schema: customer and customers
    together, every value 10^15, which the service refuses (422 "give exactly one").
    The schema now gives examples, one customer and a batch, that the service answers."""
    one, batch = _post_schema_examples(str(server.base_url))
    assert one["out_of_range"] is False and one["customer_id"] == "C-1001"
    assert len(batch["results"]) == 2


def test_out_of_range_features_are_a_list_in_both_json_answers(server, tmp_path: Path) -> None:
    """/v1/score's JSON gave out_of_range_features as one comma-separated string, while
    /v1/predict gave a list (of warnings): a client needed two parsers. Both JSON answers
    now give the feature names as a list; the CSV answer keeps its text column."""
    far = {"customer_id": "far", "recency_days": 5.0, "frequency": 4.0}
    far |= {"monetary": 5e8, "tenure_days": 1e6}
    table = tmp_path / "features.csv"
    pd.DataFrame([GOOD | {"customer_id": "near"}, far]).to_csv(table, index=False)
    with table.open("rb") as fh:
        j = server.post("/v1/score?format=json", files={"file": ("f.csv", fh, "text/csv")})
    assert j.status_code == 200, j.text
    rows = {r["customer_id"]: r for r in j.json()["results"]}
    assert rows["near"]["out_of_range_features"] == []
    assert rows["far"]["out_of_range_features"] == ["monetary", "tenure_days"]
    _conforms(server, "ScoreResults", j.json())
    p = server.post("/v1/predict", json={"customers": [GOOD, far]})
    assert p.status_code == 200, p.text
    results = p.json()["results"]
    assert [r["out_of_range_features"] for r in results] == [[], ["monetary", "tenure_days"]]
    assert len(results[1]["warnings"]) == 2
    _conforms(server, "PredictResults", p.json())
    with table.open("rb") as fh:
        c = server.post("/v1/score", files={"file": ("f.csv", fh, "text/csv")})
    assert ',"monetary,tenure_days",' in c.text  # CSV: one text cell


def test_rows_of_an_upload_left_out_by_cleaning_are_in_the_notes(server, tmp_path: Path) -> None:
    """A customer table with a customer id on two rows: cleaning keeps the first row,
    and the answer had 4 results for 5 rows without a word. The notes (JSON, and the
    X-Segmint-Notes header of the CSV) now say how many rows were left out and why."""
    rows = [GOOD | {"customer_id": c} for c in ("a", "b", "b", "c", "d")]
    table = tmp_path / "customers.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    with table.open("rb") as fh:
        j = server.post("/v1/score?format=json", files={"file": ("shop.csv", fh, "text/csv")})
    assert j.status_code == 200, j.text
    assert [r["customer_id"] for r in j.json()["results"]] == ["a", "b", "c", "d"]
    note = j.json()["notes"][0]
    assert note.startswith("shop.csv: 1 row of 5 left out by cleaning"), note
    assert "customer id already on an earlier row" in note
    with table.open("rb") as fh:
        c = server.post("/v1/score", files={"file": ("shop.csv", fh, "text/csv")})
    assert json.loads(c.headers["x-segmint-notes"])[0] == note


def test_scored_csv_download_neutralises_spreadsheet_formulas(
    server, small_csv: Path, tmp_path: Path
) -> None:
    """The web page offers /v1/score's CSV for download: a customer id from the
    uploaded data such as =HYPERLINK(...) ran as a formula when opened in Excel."""
    import io

    lines = pd.read_csv(small_csv, dtype={"CustomerID": str})
    ids = lines["CustomerID"].dropna().unique()
    lines.loc[lines["CustomerID"] == ids[0], "CustomerID"] = '=HYPERLINK("http://x.example")'
    lines.loc[lines["CustomerID"] == ids[1], "CustomerID"] = "@cmd"
    body = lines.to_csv(index=False).encode()

    def scored(query: str = "") -> pd.DataFrame:
        r = server.post(f"/v1/score{query}", files={"file": ("m.csv", body, "text/csv")})
        assert r.status_code == 200, r.text
        return pd.read_csv(io.StringIO(r.text), dtype={"customer_id": str})

    safe = scored()
    assert {'\'=HYPERLINK("http://x.example")', "'@cmd"} <= set(safe["customer_id"])
    assert not safe["customer_id"].str.match(r"[=+\-@]").any()
    assert pd.api.types.is_float_dtype(safe["confidence"])
    raw = scored("?escape_formulas=false")  # for a program reading the CSV
    assert {'=HYPERLINK("http://x.example")', "@cmd"} <= set(raw["customer_id"])
    j = server.post("/v1/score?format=json", files={"file": ("m.csv", body, "text/csv")})
    assert "@cmd" in {r["customer_id"] for r in j.json()["results"]}  # JSON is data


def test_score_upload_without_an_ending_is_read_as_csv(server, small_csv: Path) -> None:
    """A file name without an ending was read as CSV; the fixed list of endings made it
    a 415 (a file sent as ``curl -F file=@transactions``)."""
    r = server.post("/v1/score", files={"file": ("transactions", small_csv.read_bytes(), "x/y")})
    assert r.status_code == 200, r.text
    r = server.post("/v1/score", files={"file": ("sales.v2", b"a,b\n1,2\n", "x/y")})
    assert r.status_code == 415 and r.json()["error"] == "unsupported_file", r.text


def test_uploads_scored_at_once_are_capped(trained: Path, tmp_path: Path) -> None:
    """Each upload being scored holds an engine (up to its 1 GB memory limit) and its
    tables, and as many ran at once as the thread pool has threads (40): a burst of
    uploads could take the machine's memory. Past ``--max-uploads`` they wait
    ``--upload-wait`` seconds for a slot, then get 503 with Retry-After."""
    import concurrent.futures

    lines, _ = make_transactions(n_customers=1500, seed=5)  # 10 MB, 134k lines
    path = tmp_path / "month.csv"
    lines.to_csv(path, index=False)
    data = path.read_bytes()

    def burst(base: str, n: int) -> list[httpx.Response]:
        def one(_: int) -> httpx.Response:
            files = {"file": ("month.csv", data, "text/csv")}
            return httpx.post(f"{base}/v1/score", files=files, timeout=120)

        with concurrent.futures.ThreadPoolExecutor(n) as pool:
            return list(pool.map(one, range(n)))

    proc, base = _start(trained / "model.segmint", "--max-uploads", "1", "--upload-wait", "0")
    try:
        answers = burst(base, 4)
        codes = sorted(r.status_code for r in answers)
        assert codes.count(200) >= 1 and codes.count(503) >= 1, codes
        assert set(codes) == {200, 503}
        busy = next(r for r in answers if r.status_code == 503)
        assert busy.json()["error"] == "busy" and busy.headers["retry-after"] == "10"
        assert "1 upload(s) are being scored" in busy.json()["message"]
        # the slot is free again once the burst is answered
        assert burst(base, 1)[0].status_code == 200
    finally:
        _stop(proc)
    # with a wait long enough, the same burst queues and every upload is scored
    proc, base = _start(trained / "model.segmint", "--max-uploads", "1", "--upload-wait", "300")
    try:
        answers = burst(base, 3)
        assert [r.status_code for r in answers] == [200, 200, 200]
        assert len({r.text for r in answers}) == 1
    finally:
        _stop(proc)


def test_score_upload_refuses_sqlite_databases(server, small_csv: Path, tmp_path: Path) -> None:
    """The command line reads SQLite files (by their header, whatever the name); the
    service does not: a database's views can make rows without end (a recursive view)
    and its size says nothing about what it holds, so an upload, also one named .csv or
    gzipped, is refused with 415 naming the command that reads it."""
    import gzip
    import sqlite3

    db = tmp_path / "shop.db"
    with sqlite3.connect(db) as conn:
        pd.read_csv(small_csv).to_sql("sales", conn, index=False)
    conn.close()
    for name, body in (
        ("sales.csv", db.read_bytes()),
        ("shop", db.read_bytes()),
        ("sales.csv.gz", gzip.compress(db.read_bytes())),
    ):
        r = server.post("/v1/score", files={"file": (name, body, "application/octet-stream")})
        assert r.status_code == 415, (name, r.text)
        assert r.json()["error"] == "unsupported_file" and "SQLite" in r.json()["message"]
        assert "segmint score" in r.json()["hint"] and "--table" in r.json()["hint"]


def test_score_upload_errors(server, small_csv: Path, tmp_path: Path) -> None:
    r = server.post("/v1/score", files={"file": ("empty.csv", b"", "text/csv")})
    assert r.status_code == 422 and r.json()["error"] == "empty_file"
    assert "upload the transactions file again" in r.json()["hint"]  # every 4xx has a hint
    r = server.post("/v1/score", files={"file": ("model.exe", b"MZ....", "application/x")})
    assert r.status_code == 415 and r.json()["field"] == "file"
    # an old binary .xls (here its OLE header): its cells can unpack like an .xlsx's and
    # cannot be counted first, so the service refuses it and names the command line
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504
    for xls in ("sales.xls", "sales.XLS", "sales.xls.gz"):
        r = server.post("/v1/score", files={"file": (xls, ole, "application/vnd.ms-excel")})
        assert r.status_code == 415 and r.json()["error"] == "unsupported_file", r.text
        assert ".xls" in r.json()["message"] and "segmint score" in r.json()["hint"]
    r = server.post("/v1/score", files={"file": ("x.csv", b"a,b\n1,2\n", "text/csv")})
    assert r.status_code == 422 and "x.csv" in r.json()["message"]
    assert "upload" not in r.json()["message"]  # the temporary path is not leaked
    # the CLI's hint (--map ...) is for the command line: an API caller can only fix the file
    assert r.json()["hint"].startswith("fix the file itself"), r.json()
    # the saved upload's name is never built from the caller's: a 300-character part
    # between the dots made it too long for the file system (a 500)
    long_name = "sales." + "x" * 300 + ".CSV"
    r = server.post("/v1/score", files={"file": (long_name, small_csv.read_bytes(), "x/y")})
    assert r.status_code == 200, r.text
    r = server.post("/v1/score", files={"file": ("a.ndjson", b"[1", "x/y")})
    assert r.status_code == 422 and "JSON" in r.json()["message"], r.text
    r = server.post("/v1/score?format=xml", files={"file": ("x.csv", b"a\n1\n", "text/csv")})
    assert r.status_code == 422 and r.json()["field"] == "query.format"
    big = small_csv.read_bytes() * 8  # over the server's 2,000,000-byte limit
    assert len(big) > 2_000_000
    r = server.post("/v1/score", files={"file": ("big.csv", big, "text/csv")})
    assert r.status_code == 413
    assert "smaller file" in r.json()["hint"]
    # the same file sent chunked (no Content-Length): the form parser saw the limit's
    # error as a broken body and answered 400
    boundary = "segmintboundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="big.csv"'
        "\r\nContent-Type: text/csv\r\n\r\n"
    ).encode()
    body = [head, *(big[i : i + 65536] for i in range(0, len(big), 65536))]
    body.append(f"\r\n--{boundary}--\r\n".encode())
    r = server.post(
        "/v1/score",
        content=iter(body),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert r.status_code == 413 and r.json()["error"] == "body_too_large", r.text
    r = server.post("/v1/score")
    assert r.status_code == 422 and r.json()["field"] == "file"
    # a small gzip that unpacks past 10 x the limit (a 7 MB gzip of one repeated line
    # unpacked to 2 GB and held a worker for 5 minutes): refused before it is read
    import gzip

    line = small_csv.read_text().splitlines()[1] + "\n"
    bomb = gzip.compress(small_csv.read_bytes() + line.encode() * (21_000_000 // len(line)))
    assert len(bomb) < 2_000_000
    r = server.post("/v1/score", files={"file": ("bomb.csv.gz", bomb, "application/gzip")})
    assert r.status_code == 413 and r.json()["error"] == "expands_too_large", r.text
    # a Parquet file of nearly constant rows: 1 MB of pages for 30M rows in the review;
    # its size is estimated from rows x columns, not from the encoded pages
    import io

    buf = io.BytesIO()
    pd.read_csv(small_csv).head(1).sample(400_000, replace=True).to_parquet(buf)
    assert len(buf.getvalue()) < 2_000_000
    r = server.post("/v1/score", files={"file": ("many.parquet", buf.getvalue(), "x/y")})
    assert r.status_code == 413 and r.json()["error"] == "expands_too_large", r.text
    # a Parquet file of 400 lines sharing one dictionary-encoded 1 MB string: a few
    # hundred bytes that decode to 400 MB (the old estimate saw 1 MB of pages), and the
    # same string plainly encoded with its footer's sizes rewritten small
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = pa.Table.from_pandas(
        pd.read_csv(small_csv, dtype=str).dropna().head(1), preserve_index=False
    )
    for use_dictionary, rows in ((True, 400), (False, 30)):
        table = pa.concat_tables([lines] * rows)
        table = table.set_column(2, "Description", pa.array(["A" * 1_000_000] * rows))
        buf = io.BytesIO()
        pq.write_table(table, buf, compression="zstd", use_dictionary=use_dictionary)
        data = buf.getvalue()
        if not use_dictionary:
            data = _forge_parquet_sizes(data)
            meta = pq.ParquetFile(io.BytesIO(data)).metadata
            assert meta.row_group(0).total_byte_size < 1_000_000  # the forged footer reads
        assert len(data) < 50_000
        r = server.post("/v1/score", files={"file": ("dict.parquet", data, "x/y")})
        assert r.status_code == 413 and r.json()["error"] == "expands_too_large", r.text
    # a list column may hold any number of values per row: refused as unreadable
    buf = io.BytesIO()
    pq.write_table(pa.table({"customer_id": [["a"] * 10]}), buf)
    r = server.post("/v1/score", files={"file": ("nested.parquet", buf.getvalue(), "x/y")})
    assert r.status_code == 422 and r.json()["error"] == "unreadable_file", r.text
    assert "nested" in r.json()["message"]
    # ordinary lines in Parquet (dictionary-encoded, as pandas writes them) are scored
    buf = io.BytesIO()
    pd.read_csv(small_csv, dtype={"CustomerID": str}).to_parquet(buf, index=False)
    r = server.post("/v1/score", files={"file": ("lines.parquet", buf.getvalue(), "x/y")})
    assert r.status_code == 200, r.text
    # an Excel file (a zip) whose members declare more than the limit
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("xl/worksheets/sheet1.xml", b" " * 21_000_000)
    r = server.post("/v1/score", files={"file": ("big.xlsx", buf.getvalue(), "x/y")})
    assert r.status_code == 413 and r.json()["error"] == "expands_too_large", r.text

    # Excel files whose cells unpack far beyond their XML: one cell in A1 and one in
    # Z100000 (the reader holds the whole range: 1.5 GB for CV300000 from 2 KB), and
    # many cells of one long shared string (each cell gets its own copy)
    def workbook(cells: str, shared: list[str]) -> bytes:
        main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
        rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
        buf = io.BytesIO()
        pkg = "http://schemas.openxmlformats.org/package/2006"
        office = "application/vnd.openxmlformats-officedocument.spreadsheetml"
        kinds = {"workbook.xml": "sheet.main", "worksheets/sheet1.xml": "worksheet"}
        kinds["sharedStrings.xml"] = "sharedStrings"
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(
                "[Content_Types].xml",
                f'<Types xmlns="{pkg}/content-types"><Default Extension="rels" '
                f'ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
                + "".join(
                    f'<Override PartName="/xl/{n}" ContentType="{office}.{k}+xml"/>'
                    for n, k in kinds.items()
                )
                + "</Types>",
            )
            z.writestr(
                "_rels/.rels",
                f'<Relationships xmlns="{pkg}/relationships"><Relationship Id="rId1" '
                f'Type="{rel}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
            )
            z.writestr(
                "xl/_rels/workbook.xml.rels",
                f'<Relationships xmlns="{pkg}/relationships">'
                f'<Relationship Id="rId1" Type="{rel}/worksheet" Target="worksheets/sheet1.xml"/>'
                f'<Relationship Id="rId2" Type="{rel}/sharedStrings" Target="sharedStrings.xml"/>'
                "</Relationships>",
            )
            z.writestr(
                "xl/workbook.xml",
                f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets>'
                '<sheet name="S" sheetId="1" r:id="rId1"/></sheets></workbook>',
            )
            z.writestr(
                "xl/sharedStrings.xml",
                f'<sst xmlns="{main}">'
                + "".join(f"<si><t>{t}</t></si>" for t in shared)
                + "</sst>",
            )
            z.writestr(
                "xl/worksheets/sheet1.xml",
                f'<worksheet xmlns="{main}"><sheetData>{cells}</sheetData></worksheet>',
            )
        return buf.getvalue()

    sparse = workbook(
        '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
        '<row r="100000"><c r="Z100000"><v>1</v></c></row>',
        ["customer_id"],
    )
    repeated = workbook(
        '<row r="1"><c r="A1" t="s"><v>0</v></c></row>'
        + "".join(f'<row r="{i}"><c r="A{i}" t="s"><v>1</v></c></row>' for i in range(2, 202)),
        ["customer_id", "A" * 200_000],
    )
    for book in (sparse, repeated):
        assert len(book) < 5_000
        r = server.post("/v1/score", files={"file": ("cells.xlsx", book, "x/y")})
        assert r.status_code == 413 and r.json()["error"] == "expands_too_large", r.text
    # an ordinary workbook is still read
    book = io.BytesIO()
    pd.read_csv(small_csv, dtype=str).to_excel(book, index=False)
    r = server.post("/v1/score", files={"file": ("sales.xlsx", book.getvalue(), "x/y")})
    assert r.status_code == 200, r.text
    # a damaged gzip is the reader's error, not a 500
    r = server.post("/v1/score", files={"file": ("bad.csv.gz", b"\x1f\x8b\x08junk", "x/y")})
    assert r.status_code == 422, r.text
    # a gzipped upload is scored like the plain file (read from its one unpacked copy)
    plain = small_csv.read_bytes()
    want = server.post("/v1/score?format=json", files={"file": ("x.csv", plain, "text/csv")})
    r = server.post(
        "/v1/score?format=json", files={"file": ("x.csv.gz", gzip.compress(plain), "x/y")}
    )
    assert r.status_code == 200 and want.status_code == 200
    assert r.json() == want.json() and len(r.json()["results"]) > 0
    assert want.json()["notes"] == [] and r.json()["notes"] == []


def _forge_parquet_sizes(data: bytes) -> bytes:
    """``data`` with every byte size of its footer rewritten to 1,000 (the varints padded
    to their old length, so the footer stays readable)."""
    import io

    import pyarrow.parquet as pq

    meta = pq.ParquetFile(io.BytesIO(data)).metadata
    sizes = {meta.row_group(0).total_byte_size}
    sizes |= {meta.row_group(0).column(j).total_uncompressed_size for j in range(meta.num_columns)}

    def varint(n: int, width: int = 0) -> bytes:
        n = n << 1  # zigzag of a positive number
        out = bytearray()
        while n >= 0x80 or len(out) + 1 < width:
            out.append(n & 0x7F | 0x80)
            n >>= 7
        out.append(n)
        return bytes(out)

    length = int.from_bytes(data[-8:-4], "little")
    footer = data[-8 - length : -8]
    for size in sorted(sizes, reverse=True):
        if size > 100_000:
            assert varint(size) in footer
            footer = footer.replace(varint(size), varint(1000, len(varint(size))))
    return data[: -8 - length] + footer + data[-8:]


def test_gzip_upload_is_unpacked_once(tmp_path: Path, monkeypatch) -> None:
    """The size check unpacks a ``.X.gz`` upload beside it and returns that copy to read;
    past the limit it stops and the upload is refused without a full copy."""
    import gzip

    from segmint.api.app import _expanded_size

    data = b"customer_id,recency_days\n" + b"1,2\n" * 10_000
    up = tmp_path / "upload.csv.gz"
    up.write_bytes(gzip.compress(data))
    size, readable = _expanded_size(up, 10**6)
    assert size == len(data) and readable == tmp_path / "unpacked.csv"
    assert readable.read_bytes() == data
    size, readable = _expanded_size(up, 1000)
    assert size > 1000 and readable == up
    bare = tmp_path / "upload.gz"  # no inner extension: measured, read as uploaded
    bare.write_bytes(gzip.compress(data))
    assert _expanded_size(bare, 10**6) == (len(data), bare)

    # no room for the copy: still counted to the limit (a full disk once made the check
    # fall back to the compressed size, letting a gzip bomb through)
    import errno

    real_open = Path.open

    def full_disk(self, mode="r", *args, **kwargs):
        if self.name.startswith("unpacked") and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full_disk)
    (tmp_path / "unpacked.csv").unlink()
    assert _expanded_size(up, 1000)[0] > 1000
    assert _expanded_size(up, 10**6) == (len(data), up)
    assert not (tmp_path / "unpacked.csv").exists()
    # a damaged archive is measured by its size and left to the reader to report
    monkeypatch.undo()
    broken = tmp_path / "broken.csv.gz"
    broken.write_bytes(b"\x1f\x8b\x08junk")
    assert _expanded_size(broken, 10**6) == (broken.stat().st_size, broken)


def test_web_page_in_a_real_browser(
    trained: Path, small_csv: Path, browser, tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import console_errors, save_screenshot, wait_for

    run = pd.read_parquet(trained / "customers.parquet")
    proc, base = _start(trained / "model.segmint")
    try:
        browser.set_window_size(1280, 900)
        browser.get(base + "/")
        wait_for(browser, "#f-recency_days")
        assert "4 segments" in browser.find_element(By.ID, "model-info").text
        # the page runs under a strict Content-Security-Policy (a violation would be a
        # console error, checked below); every answer refuses MIME sniffing and framing
        headers = httpx.get(base + "/", timeout=10).headers
        assert "script-src 'self'" in headers["content-security-policy"]
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["x-frame-options"] == "DENY"
        # a validation error from the API is shown next to its field
        row = run.iloc[3]
        values = {
            "recency_days": row["recency_days"],
            "frequency": row["frequency"],
            "monetary": row["monetary"],
            "tenure_days": row["tenure_days"],
        }
        for name, value in values.items():
            box = browser.find_element(By.ID, f"f-{name}")
            box.clear()
            box.send_keys(str(-5 if name == "recency_days" else value))
        browser.find_element(By.ID, "predict-button").click()
        err = WebDriverWait(browser, 20).until(
            lambda d: d.find_element(By.ID, "f-recency_days-error").text
        )
        assert "recency_days" in err and "greater than or equal to 0" in err
        # the browser logs the deliberate 422 itself; nothing else may be there
        logged = console_errors(browser)
        assert len(logged) == 1 and "/v1/predict" in logged[0] and "422" in logged[0]
        # the real values: the predicted segment is the run's, submitted with the keyboard
        box = browser.find_element(By.ID, "f-recency_days")
        box.clear()
        box.send_keys(str(values["recency_days"]), Keys.ENTER)
        name = wait_for(browser, "#predicted-segment").text
        assert name == row["segment_name"]
        assert "Suggested action" in browser.find_element(By.ID, "prediction").text
        # the RFM segment with the rule set that named it
        rfm = f"RFM segment (rf-grid v1): {row['rfm_segment']}"
        assert rfm in browser.find_element(By.ID, "prediction").text
        # the customer beside the segment's mean and all customers' mean, per feature
        cells = {
            r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")
            for r in browser.find_elements(By.CSS_SELECTOR, "#prediction tr")[1:]
        }
        mine = run[run["segment_id"] == row["segment_id"]]
        for feature in ("recency_days", "monetary"):
            shown = [float(c.text.replace(",", "")) for c in cells[feature][1:]]
            want = [row[feature], mine[feature].mean(), run[feature].mean()]
            assert shown == pytest.approx(want, abs=0.06), feature
        save_screenshot(browser, "page-predict")
        # the dashboard draws one pair of bars per segment
        browser.find_element(By.ID, "tab-dashboard").click()
        wait_for(browser, "#dashboard-bars")
        rows = browser.find_elements(By.CSS_SELECTOR, "#dashboard-table tr")
        assert len(rows) == 1 + 4
        assert len(browser.find_elements(By.CSS_SELECTOR, "#dashboard-bars rect")) == 8
        save_screenshot(browser, "page-dashboard")
        # upload a CSV and get a download link
        browser.find_element(By.ID, "tab-score").click()
        browser.find_element(By.ID, "score-file").send_keys(str(small_csv))
        browser.find_element(By.ID, "score-button").click()
        link = WebDriverWait(browser, 60).until(lambda d: d.find_element(By.ID, "score-download"))
        assert "scored customers" in link.text
        assert link.get_attribute("href").startswith("blob:")
        assert not browser.find_elements(By.ID, "score-notes")
        save_screenshot(browser, "page-score")
        # the service's notes on an upload (X-Segmint-Notes) are shown under the link;
        # the page read only the CSV and dropped them
        table = tmp_path / "shop.csv"
        pd.DataFrame([GOOD | {"customer_id": c} for c in "abbc"]).to_csv(table, index=False)
        browser.find_element(By.ID, "score-file").send_keys(str(table))
        browser.find_element(By.ID, "score-button").click()
        notes = WebDriverWait(browser, 60).until(lambda d: d.find_elements(By.ID, "score-notes"))
        shown = notes[0].text
        assert "shop.csv: 1 row of 4 left out by cleaning" in shown, shown
        assert "3 scored customers" in browser.find_element(By.ID, "score-download").text
        # a phone-sized window: nothing scrolls sideways
        browser.set_window_size(390, 844)
        browser.find_element(By.ID, "tab-predict").click()
        overflow = browser.execute_script(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 1
        save_screenshot(browser, "page-phone")
        assert console_errors(browser) == []
        # the API docs render from assets served by the app (no CDN: no network here)
        browser.set_window_size(1280, 900)
        for page, operation in (("/docs", ".opblock"), ("/redoc", "[data-section-id]")):
            browser.get(base + page)
            WebDriverWait(browser, 30).until(
                lambda d, css=operation: d.find_elements(By.CSS_SELECTOR, css)
            )
            assert "/v1/predict" in browser.find_element(By.TAG_NAME, "body").text, page
            assert "cdn." not in browser.page_source
        save_screenshot(browser, "page-docs")
        # ReDoc's own "API docs by Redocly" footer asks its CDN for a logo (a broken
        # image offline, nothing else): drained here, so that it is not counted against
        # the next test that reads this browser's console
        browser.get("about:blank")
        left = [e for e in console_errors(browser) if "cdn.redoc.ly" not in e]
        assert left == []
    finally:
        _stop(proc)


def _fill_form(browser, values: dict) -> None:
    from selenium.webdriver.common.by import By

    for name, value in values.items():
        box = browser.find_element(By.ID, f"f-{name}")
        box.clear()
        box.send_keys(value)


def test_web_page_reads_numbers_as_it_writes_them(server, browser) -> None:
    """The page writes numbers in the browser's language (help text, placeholder:
    "18,441" in English); typed back the same way, "18,441" was read as 18.441 (the
    comma taken for a decimal comma) and the customer silently got another segment.
    Thousands separators are now read as such; a lone decimal comma (2,5) still works."""
    from selenium.webdriver.common.by import By

    from browser import console_errors, wait_for

    browser.get(str(server.base_url) + "/")
    wait_for(browser, "#f-monetary")
    assert browser.execute_script("return navigator.language").startswith("en")
    typed = {"recency_days": "10", "frequency": "2,5", "monetary": "18,441", "tenure_days": "200"}
    _fill_form(browser, typed)
    browser.find_element(By.ID, "predict-button").click()
    wait_for(browser, "#predicted-segment")
    cells = {
        r.find_elements(By.TAG_NAME, "td")[0].text: r.find_elements(By.TAG_NAME, "td")[1].text
        for r in browser.find_elements(By.CSS_SELECTOR, "#prediction tr")[1:]
    }
    assert cells["monetary"] == "18,441.0" and cells["frequency"] == "2.5", cells
    sent = {"recency_days": 10.0, "frequency": 2.5, "monetary": 18441.0, "tenure_days": 200.0}
    want = server.post("/v1/predict", json={"customer": sent}).json()["segment_name"]
    assert browser.find_element(By.ID, "predicted-segment").text == want
    # what is no number is refused on the page, naming the field
    _fill_form(browser, {"monetary": "1,2,3"})
    browser.find_element(By.ID, "predict-button").click()
    assert browser.find_element(By.ID, "f-monetary-error").text == "monetary must be a number"
    assert console_errors(browser) == []


def test_typical_customer_is_the_training_median(server, trained: Path, browser) -> None:
    """The page's placeholders and the schema's examples sat mid-way in the training
    range: for a skewed feature far from any customer (spend 139,318 where the median
    customer spent 650). They are now the training medians, which /v1/model gives."""
    from browser import wait_for

    customers = pd.read_parquet(trained / "customers.parquet")
    info = server.get("/v1/model").json()
    medians = info["feature_medians"]
    assert set(medians) == set(info["features"])
    for f, value in medians.items():
        assert value == pytest.approx(float(customers[f].median()), rel=1e-12), f
    lo, hi = info["feature_ranges"]["monetary"]
    assert medians["monetary"] < (lo + hi) / 2  # skewed: the middle of the range is no one
    spec = server.get("/openapi.json").json()
    media = spec["paths"]["/v1/predict"]["post"]["requestBody"]["content"]["application/json"]
    example = media["examples"]["one"]["value"]["customer"]
    assert example["monetary"] == round(medians["monetary"], 2)
    browser.get(str(server.base_url) + "/")
    box = wait_for(browser, "#f-monetary")
    shown = f"{round(medians['monetary']):,}"
    assert box.get_attribute("placeholder") == shown
    help_text = browser.find_element("id", "f-monetary-help").text
    said = help_text.rsplit("median ", 1)[1].replace(",", "")
    assert float(said) == pytest.approx(medians["monetary"], abs=0.006), help_text


def test_web_page_says_when_the_service_cannot_be_reached(trained: Path, small_csv, browser):
    """With the server gone, Predict showed nothing and "Score" showed "scoring…" for
    ever (the failed fetch was an uncaught error in the console). Both now say that the
    service cannot be reached."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from browser import console_errors, wait_for

    proc, base = _start(trained / "model.segmint")
    try:
        browser.get(base + "/")
        wait_for(browser, "#f-monetary")
    finally:
        _stop(proc)
    _fill_form(browser, {k: str(v) for k, v in GOOD.items()})
    browser.find_element(By.ID, "predict-button").click()
    shown = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "form-error").text)
    assert "cannot be reached" in shown and "segmint serve" in shown
    browser.find_element(By.ID, "tab-score").click()
    browser.find_element(By.ID, "score-file").send_keys(str(small_csv))
    browser.find_element(By.ID, "score-button").click()
    shown = WebDriverWait(browser, 20).until(lambda d: d.find_element(By.ID, "score-error").text)
    assert "cannot be reached" in shown
    assert browser.find_element(By.ID, "score-result").text == ""
    # the browser logs the refused connections; no script error besides them
    assert not [e for e in console_errors(browser) if "ERR_CONNECTION_REFUSED" not in e]


def test_web_page_asks_for_the_model_once_per_key_change(trained: Path, browser) -> None:
    """Each change of the API key field loaded the model again and registered one more
    change listener: the third change sent 8 requests to /v1/model (then 16, ...)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    proc, base = _start(trained / "model.segmint", "--api-key", "s3cret")
    try:
        browser.get(base + "/")
        info = browser.find_element(By.ID, "model-info")
        WebDriverWait(browser, 20).until(lambda d: "API key" in info.text)
        browser.execute_script(
            "window.calls = []; const f = window.fetch;"
            "window.fetch = (u, o) => { window.calls.push(String(u)); return f(u, o); };"
        )
        box = browser.find_element(By.ID, "api-key")
        for key, fields in (("wrong", 0), ("s3cret", 4), ("other", 0), ("s3cret", 4)):
            box.send_keys(Keys.CONTROL, "a")  # typed over (clear() fires a change of its own)
            box.send_keys(key, Keys.TAB)
            WebDriverWait(browser, 20).until(
                lambda d, n=fields: (
                    len(d.find_elements(By.CSS_SELECTOR, "#fields input")) == n
                    and d.execute_script("return window.calls.length") >= 1
                )
            )
            if fields:  # the segments are asked for once the model is in
                WebDriverWait(browser, 20).until(
                    lambda d: "/v1/segments" in d.execute_script("return window.calls")
                )
            calls = browser.execute_script("const c = window.calls; window.calls = []; return c;")
            assert calls.count("/v1/model") == 1, (key, calls)
            assert calls.count("/v1/segments") == (1 if fields else 0), (key, calls)
    finally:
        browser.execute_script("sessionStorage.clear()")
        _stop(proc)


def test_parquet_size_of_text_stored_whole(tmp_path: Path) -> None:
    """Text columns that are not dictionary-encoded (DELTA_LENGTH_BYTE_ARRAY, as DuckDB's
    PARQUET_VERSION V2 writes a column of many distinct values, or PLAIN) are measured
    by their pages, which hold every value whole: pyarrow cannot read them as a
    dictionary, and such a file was refused as unreadable (422)."""
    import duckdb
    import pyarrow as pa
    import pyarrow.parquet as pq

    from segmint.api.app import _expanded_size

    v2 = tmp_path / "duckdb_v2.parquet"
    duckdb.connect().execute(
        "COPY (SELECT (536365 + i // 3)::VARCHAR AS InvoiceNo, 'P' || (i % 50) AS Description, "
        f"i % 9 AS Quantity FROM range(50000) t(i)) TO '{v2}' (FORMAT parquet, "
        "PARQUET_VERSION V2)"
    )
    encodings = pq.ParquetFile(v2).metadata.row_group(0).column(0).encodings
    assert "DELTA_LENGTH_BYTE_ARRAY" in encodings  # the case of the report
    size, _ = _expanded_size(v2, 10**9)
    assert 50_000 * 3 * 8 <= size < 10**7
    # the same holds for pyarrow's own DELTA_LENGTH_BYTE_ARRAY and PLAIN text, and
    # text stored whole is still counted at its length: 30 values of 1 MB
    ids = pa.array([str(i) for i in range(50_000)])
    for encoding in ("DELTA_LENGTH_BYTE_ARRAY", "PLAIN"):
        path = tmp_path / f"{encoding}.parquet"
        pq.write_table(
            pa.table({"customer_id": ids}),
            path,
            use_dictionary=False,
            column_encoding={"customer_id": encoding},
        )
        size, _ = _expanded_size(path, 10**9)
        assert 50_000 * 8 <= size < 10**7, encoding
        big = tmp_path / f"big_{encoding}.parquet"
        pq.write_table(
            pa.table({"customer_id": ["A" * 1_000_000] * 30}),
            big,
            compression="zstd",
            use_dictionary=False,
            column_encoding={"customer_id": encoding},
        )
        assert big.stat().st_size < 50_000
        assert _expanded_size(big, 10**9)[0] >= 30_000_000, encoding


@pytest.mark.parametrize(
    "config",
    [
        # value tier, a categorical profile column (top_country), lifetime value
        {
            "segment": {
                "algorithm": "kmeans",
                "n_clusters": 3,
                "value_tier": 0.05,
                "categorical": ["country"],
            }
        },
        # no lifetime value (clv: notes only), customers no segment takes (-1)
        {"segment": {"algorithm": "dbscan"}, "clv": {"enabled": False}},
    ],
    ids=["tier-categorical-clv", "dbscan-no-clv"],
)
def test_informational_answers_match_their_documented_schemas(tmp_path: Path, config) -> None:
    """/health, /v1/model and /v1/segments were documented as an untyped "object": a
    client generated from /openapi.json knew none of their fields. Each now has a named
    schema, and the real answers of models of several kinds validate against it."""
    import jsonschema

    lines, _ = make_transactions(n_customers=400, seed=21)
    out = tmp_path / "run"
    segmint.run(lines, config, out=out)
    proc, base = _start(out / "model.segmint")
    try:
        with httpx.Client(base_url=base, timeout=30) as client:
            spec = client.get("/openapi.json").json()
            answers = {p: client.get(p).json() for p in ("/health", "/v1/model", "/v1/segments")}
            row = pd.read_parquet(out / "customers.parquet").iloc[0]
            customer = {
                f: (row[f] if isinstance(row[f], str) else float(row[f]))
                for f in answers["/v1/model"]["features"]
            }
            answer = client.post("/v1/predict", json={"customer": customer})
            assert answer.status_code == 200, answer.text
            predicted = answer.json()
    finally:
        _stop(proc)
    components = spec["components"]["schemas"]
    for path, (name, answer) in {
        "/health": ("HealthInfo", answers["/health"]),
        "/v1/model": ("ModelInfo", answers["/v1/model"]),
        "/v1/segments": ("SegmentsInfo", answers["/v1/segments"]),
    }.items():
        declared = spec["paths"][path]["get"]["responses"]["200"]["content"]
        assert declared["application/json"]["schema"] == {"$ref": f"#/components/schemas/{name}"}
        assert components[name]["properties"], name
        jsonschema.validate(
            answer, {"$ref": f"#/components/schemas/{name}", "components": spec["components"]}
        )
    predict = spec["paths"]["/v1/predict"]["post"]["responses"]["200"]["content"]
    # only the two documented shapes (it also said "any object" beside them)
    assert "additionalProperties" not in predict["application/json"]["schema"]
    jsonschema.validate(
        predicted, {**predict["application/json"]["schema"], "components": spec["components"]}
    )
    segments = answers["/v1/segments"]["segments"]
    if config.get("clv", {}).get("enabled", True):
        assert answers["/v1/segments"]["clv"]["bgnbd"]["converged"] in (True, False)
        assert any(k.startswith("top_country") for k in segments[0])
        assert "mean_monetary" in components["SegmentProfile"]["description"].replace(
            "<feature>", "monetary"
        )
    else:
        assert answers["/v1/segments"]["clv"] is None
        # a summary that says why lifetime value was left out is documented too
        left_out = {"notes": ["lifetime value needs transaction dates"], "segments": None}
        jsonschema.validate(
            left_out, {"$ref": "#/components/schemas/ClvInfo", "components": spec["components"]}
        )
    # a wrong answer is caught: the schemas are not "anything goes"
    broken = {**answers["/v1/segments"], "segments": [{**segments[0], "size": "many"}]}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(
            broken, {"$ref": "#/components/schemas/SegmentsInfo", "components": spec["components"]}
        )


def test_serve_on_port_0_names_the_port_it_listens_on(trained: Path) -> None:
    """--port 0 ("any free port") printed http://127.0.0.1:0 while the server listened on
    a port the user could not know."""
    import re

    proc = subprocess.Popen(
        [SEGMINT, "serve", trained / "model.segmint", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        line = ""
        for line in proc.stdout:  # noqa: B007 - the line that names the address
            if line.startswith("serving "):
                break
        found = re.search(r"on http://127\.0\.0\.1:(\d+) ", line)
        assert found and int(found.group(1)) > 0, line
        deadline = time.monotonic() + 120
        while True:
            try:
                r = httpx.get(f"http://127.0.0.1:{found.group(1)}/health", timeout=2)
                assert r.status_code == 200
                break
            except httpx.TransportError:
                assert proc.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        _stop(proc)
