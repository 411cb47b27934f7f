"""Property-based fuzzing of the live API from its own OpenAPI schema (schemathesis).

Schemathesis generates valid and invalid requests for every operation of
``/openapi.json`` and checks that no answer is a 5xx, that every status code, content
type, header and body conforms to the schema, and that unsupported methods are refused
properly. (Its "schema-valid request accepted" check is left out: a random file is valid
for the upload field's schema but, rightly, not a readable transactions file.)
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import segmint
from segmint.datasets import make_transactions
from test_api import _start, _stop

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "unsupported_method",
]


def test_fuzzing_finds_no_server_error_and_no_schema_violation(tmp_path: Path) -> None:
    lines, _ = make_transactions(n_customers=300, seed=13)
    out = tmp_path / "run"
    segmint.run(lines, {"segment": {"algorithm": "kmeans", "n_clusters": 3}}, out=out)
    proc, base = _start(out / "model.segmint", "--max-batch", "20")
    try:
        exe = Path(sys.executable).with_name("schemathesis")
        result = subprocess.run(
            [
                exe,
                "run",
                f"{base}/openapi.json",
                "--checks",
                ",".join(CHECKS),
                "--max-examples",
                "60",
                "--seed",
                "1",
                "--suppress-health-check",
                "all",
                "--request-timeout",
                "60",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        _stop(proc)
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert result.returncode == 0, report
    assert "5/5" in result.stdout and "Tested: 5" in result.stdout, report
