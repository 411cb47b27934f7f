"""FastAPI application factory, request models built from the bundle, error handling.

No ``from __future__ import annotations`` here: FastAPI reads the request model of
``/v1/predict`` from the annotation, and that model is built at run time from the bundle.
"""

import asyncio
import errno
import gc
import json
import logging
import os
import re
import secrets
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
from fastapi import Body, FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    create_model,
    model_validator,
)
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from segmint.api._parquet_size import UnreadableParquet, parquet_decoded_size
from segmint.bundle import SegmentModel, load_model
from segmint.errors import ConfigError, EnvironmentFailure, SegmintError
from segmint.io import escape_formulas as _escape_formulas

__all__ = ["ApiSettings", "create_app", "create_app_from_env"]

access_log = logging.getLogger("segmint.api.access")
_log = logging.getLogger("segmint.api")


class ApiSettings(BaseModel):
    """Settings of the service (``segmint serve`` flags, or ``SEGMINT_*`` variables)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Path of the model bundle (model.segmint).")
    api_key: str | None = Field(
        None, description="Require this key in the X-API-Key header (all but /health)."
    )
    api_key_file: str | None = Field(
        None,
        description="Require one of this file's keys (one a line, # comments) in the "
        "X-API-Key header; the file is read again when it changes (key rotation).",
    )
    max_batch: int = Field(10_000, ge=1, description="Most customers in one /v1/predict call.")
    max_body_bytes: int = Field(
        20_000_000, ge=1_000, description="Largest request body accepted, in bytes."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (off when empty)."
    )
    max_uploads: int = Field(
        2,
        ge=1,
        description="Most /v1/score uploads scored at once by one worker; more wait for a "
        "free slot, up to upload_wait seconds, then get 503.",
    )
    upload_wait: float = Field(
        30.0, ge=0, description="Seconds an upload waits for a free scoring slot."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> "ApiSettings":
        if self.api_key and self.api_key_file:
            raise ValueError(
                "give --api-key (SEGMINT_API_KEY) or --api-key-file (SEGMINT_API_KEY_FILE), "
                "not both: put every key in the file"
            )
        return self

    @property
    def protected(self) -> bool:
        """Whether requests need an API key."""
        return bool(self.api_key or self.api_key_file)


#: Seconds between checks of ``--api-key-file`` for a change.
KEY_FILE_CHECK = 1.0


def read_key_file(path: str | os.PathLike[str]) -> tuple[bytes, ...]:
    """The API keys of a key file: one a line, blank lines and ``#`` comments skipped.

    Raises
    ------
    ConfigError
        Naming the file when it cannot be read or holds no key.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(
            f"cannot read the API key file {str(path)!r}: {reason}",
            hint="give a UTF-8 text file with one key a line (--api-key-file)",
        ) from None
    keys = tuple(
        line.strip().encode()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    )
    if not keys:
        raise ConfigError(
            f"the API key file {str(path)!r} holds no key",
            hint="write one key a line (lines starting with # are comments)",
        )
    return keys


class _Keys:
    """The API keys a request may send: ``--api-key``, or every key of ``--api-key-file``.

    The file is read again when it changes (looked at no more than once a second), so a
    key is rotated without a restart: add the new key, move the clients to it, remove the
    old one. A file that becomes unreadable or empty keeps the keys read last, with a
    warning: a failed edit must never open the service to everyone.
    """

    def __init__(self, settings: ApiSettings) -> None:
        self.path = settings.api_key_file
        self._stamp: tuple[int, int, int] | None = None
        self._checked = time.monotonic()
        if self.path:
            self._stamp = self._stat()
            self.keys = read_key_file(self.path)
        else:
            self.keys = (settings.api_key.encode(),) if settings.api_key else ()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)  # type: ignore[arg-type]
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < KEY_FILE_CHECK:
            return
        self._checked = now
        stamp = self._stat()
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            keys = read_key_file(self.path)  # type: ignore[arg-type]
        except ConfigError as exc:
            _log.warning("%s; the %d key(s) read before stay in use", exc.message, len(self.keys))
            return
        if keys != self.keys:
            _log.warning("API keys read again from %s: %d key(s)", self.path, len(keys))
        self.keys = keys

    def accepts(self, key: bytes | None) -> bool:
        """Whether ``key`` is one of the keys (each compared in constant time)."""
        if self.path:
            self._refresh()
        found = False
        for k in self.keys:  # no early exit: the time does not tell which key matched
            # bytes: compare_digest refuses str with non-ASCII characters
            found |= secrets.compare_digest(key or b"", k)
        return found


class ErrorBody(BaseModel):
    """The one error shape of every 4xx answer."""

    error: str = Field(description="Stable machine-readable code, e.g. invalid_request.")
    message: str = Field(description="What is wrong, naming the field.")
    hint: str | None = Field(None, description="How to fix it.")
    field: str | None = Field(None, description="The offending field, e.g. customer.monetary.")


class PredictResult(BaseModel):
    """The segment of one customer of a ``/v1/predict`` request."""

    index: int = Field(
        description="The customer's position in the request (0-based; 0 for the single "
        "`customer` form): matches results to customers sent without an id."
    )
    customer_id: str | None = Field(
        description="The customer_id sent, echoed back; null when none was sent (never "
        "invented: a made-up id could equal a real customer's)."
    )
    segment_id: int
    segment_name: str
    action: str
    rfm_segment: str | None
    rfm_rule_set: str | None = Field(
        description="The rule set that named rfm_segment, with its version (e.g. "
        "`rf-grid v1`; the same names mean other cells in other rule sets), as "
        "`rfm.rule_set_label` of /v1/model; null when the model has no RFM segments."
    )
    confidence: float | None
    distance: float | None = Field(
        description="Distance to the segment's centre in the model's scaled features; "
        "null when too large to be a number (a customer far outside the training range)."
    )
    out_of_range: bool
    out_of_range_features: list[str] = Field(
        description="The features outside the training range (or a category the training "
        "data did not have), by name; empty when none. The same field as in /v1/score."
    )
    warnings: list[str] = Field(
        description="One sentence per entry of out_of_range_features, for people."
    )


class PredictResults(BaseModel):
    """The answer to a batch (``customers``): one result per customer, in order."""

    results: list[PredictResult]


class ScoreRow(BaseModel):
    """One customer of a ``/v1/score`` answer (the columns of ``segmint score --out``)."""

    customer_id: str
    segment_id: int
    segment_name: str | None
    action: str | None
    rfm_score: str | None = None
    rfm_segment: str | None = None
    rfm_rule_set: str | None = Field(
        None,
        description="The rule set that named rfm_segment, with its version (e.g. "
        "`rf-grid v1`), as in `segmint score --out` and /v1/predict.",
    )
    confidence: float | None
    distance: float | None
    out_of_range: bool
    out_of_range_features: list[str] = Field(
        description="The features outside the training range, by name; empty when none "
        "(a list, as in /v1/predict; the CSV answer writes them comma-separated)."
    )
    snapshot_date: str | None = Field(description="ISO date the features were computed at.")
    model_id: str


class ScoreResults(BaseModel):
    """The JSON answer of ``/v1/score?format=json``."""

    results: list[ScoreRow]
    notes: list[str] = Field(description="Warnings on data unlike the training data.")


class HealthInfo(BaseModel):
    """The answer of ``/health``."""

    status: Literal["ok"]
    model_loaded: bool
    model_id: str = Field(description="The served model (as /v1/model and /v1/score).")
    version: str = Field(description="segmint's version.")
    worker_pid: int = Field(description="The worker process that answered.")


class CutPoints(BaseModel):
    """The thresholds of one RFM score (as ``rfm_thresholds.toml`` of a run)."""

    model_config = ConfigDict(extra="allow")

    thresholds: list[float] = Field(description="Four thresholds between scores 1 to 5.")
    lower_is_better: bool = Field(description="True for recency: fewer days score higher.")
    rule: str = Field(description="How a value's score follows from the thresholds.")


class RfmInfo(BaseModel):
    """The RFM rule set and training cut points behind ``rfm_segment`` of every answer."""

    rule_set: str | None
    rule_set_version: str | None
    rule_set_label: str | None = Field(description="Name and version, e.g. `rf-grid v1`.")
    cut_points: dict[str, CutPoints] | None = Field(
        description="Per scored feature (recency_days, frequency, monetary)."
    )


class ModelInfo(BaseModel):
    """The answer of ``/v1/model``: what the served model expects and how it was made."""

    model_id: str
    feature_set: str | None = Field(description="Name of the feature set, e.g. segmint.customer.")
    feature_set_version: str | None
    snapshot_rule: str | None = Field(description="How the training snapshot date was set.")
    snapshot_date: str | None = Field(description="ISO date of the training features.")
    created_at: str | None = Field(description="When the model was saved (ISO, UTC).")
    training_customers: int | None
    feature_ranges: dict[str, list[float | None]] | None = Field(
        description="Training [min, max] per feature: answers flag values outside "
        "(out_of_range); left out of the schema's examples when an API key is required."
    )
    feature_medians: dict[str, float | None] | None = Field(
        None,
        description="Training median per feature: a typical customer (null for a model "
        "saved before segmint recorded it).",
    )
    features: list[str] = Field(description="The fields every customer of /v1/predict needs.")
    algorithm: str | None
    n_segments: int | None
    explanation: str | None = Field(description="Why this model and number of segments.")
    versions: dict[str, str] | None = Field(description="Library versions it was trained with.")
    max_batch: int = Field(description="Most customers per /v1/predict call.")
    rfm: RfmInfo | None = Field(description="Null when the model has no RFM segments.")


class SegmentProfile(BaseModel):
    """One segment of ``/v1/segments``: its name, action and profile.

    Besides the fields listed, a profile has ``mean_<feature>``, ``median_<feature>``
    and ``index_<feature>`` (the mean as a percentage of all customers' mean) for every
    profiled feature, and ``top_<column>`` (the three most common values with shares)
    for every categorical column."""

    model_config = ConfigDict(extra="allow")
    __pydantic_extra__: dict[str, float | str | None] = Field(init=False)  # type: ignore[assignment]

    segment_id: int = Field(description="-1 for customers no segment takes (density models).")
    name: str
    auto_name: str | None = Field(None, description="The name segmint gave before renaming.")
    action: str | None = Field(None, description="Suggested marketing action.")
    reason: str | None = Field(None, description="Why this action.")
    size: int = Field(description="Training customers in the segment.")
    share_customers: float
    revenue: float | None = Field(None, description="Their net revenue (null without one).")
    share_revenue: float | None = None
    description: str | None = Field(None, description="Medians and caveats in words.")
    rfm_position: float | None = Field(
        None, description="0-1: where the segment sits on recency, frequency and monetary."
    )
    top_rfm_segments: str | None = Field(None, description="Its three main RFM segments.")
    rfm_rule_set: str | None = Field(None, description="The rule set of those RFM segments.")
    clv_value_share: float | None = Field(
        None, description="Its share of the expected lifetime value of all customers."
    )


class BgNbdFit(BaseModel):
    """BG/NBD parameters and fit (purchases and drop-out)."""

    model_config = ConfigDict(extra="allow")

    r: float | None
    alpha: float | None
    a: float | None
    b: float | None
    log_likelihood: float | None
    n_customers: int
    converged: bool


class GammaGammaFit(BaseModel):
    """Gamma-Gamma parameters and fit (spend per purchase)."""

    model_config = ConfigDict(extra="allow")

    p: float | None
    q: float | None
    v: float | None
    log_likelihood: float | None
    n_customers: int
    converged: bool
    frequency_correlation: float | None = Field(
        None, description="Correlation of purchases and spend (the model assumes none)."
    )


class SegmentValue(BaseModel):
    """Lifetime value of one segment."""

    model_config = ConfigDict(extra="allow")

    segment_id: int
    name: str | None
    customers: int
    clv_p_alive_mean: float | None
    clv_expected_purchases_mean: float | None
    clv_value_mean: float | None
    clv_value_total: float | None
    clv_value_share: float | None
    one_purchase_share: float | None = Field(
        None,
        description="Share of customers with one purchase day, whose P(alive) is 1 "
        "however long ago they bought.",
    )


class ClvInfo(BaseModel):
    """Lifetime value (BG/NBD + Gamma-Gamma) of the training customers. When it was left
    out, only ``notes`` (why) and ``segments`` (null) are given."""

    model_config = ConfigDict(extra="allow")

    notes: list[str] = Field(description="Caveats, or why lifetime value was left out.")
    snapshot_date: str | None = None
    unit: str | None = Field(None, description="D: recency and T are in days.")
    horizon_days: float | None = None
    discount_rate: float | None = None
    margin: float | None = Field(None, description="1: values are revenue; below 1, profit.")
    bgnbd: BgNbdFit | None = None
    gamma_gamma: GammaGammaFit | None = None
    customers: int | None = None
    expected_purchases: float | None = Field(None, description="Total over the horizon.")
    expected_value: float | None = Field(None, description="Total over the horizon.")
    segments: list[SegmentValue] | None


class SegmentsInfo(BaseModel):
    """The answer of ``/v1/segments``."""

    segments: list[SegmentProfile]
    clv: ClvInfo | None = Field(description="Null when the model has no lifetime value.")


#: The answers of /v1/score: CSV by default (the web page's download), JSON on request.
_SCORE_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "model": ScoreResults,
        "description": "Every customer's segment: CSV (format=csv, the default; the "
        "columns of ScoreRow, one line per customer) or JSON (format=json)",
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "headers": {
            "X-Segmint-Notes": {
                "description": "CSV only: the notes, as a JSON list of strings",
                "schema": {"type": "string"},
            }
        },
    },
    415: {
        "model": ErrorBody,
        "description": "Not a file type segmint reads, or a compressed request body "
        "(Content-Encoding; upload a .csv.gz file instead)",
    },
    503: {
        "model": ErrorBody,
        "description": "Every scoring slot (--max-uploads) stayed busy for --upload-wait "
        "seconds (busy), or the service's disk is full (disk_full); send the file again "
        "after Retry-After seconds",
        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
    },
}


def _with_api_key(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` declaring the X-API-Key header on every operation but /health, so
    Swagger UI offers "Authorize" and generated clients send the key."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})["APIKey"] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
    }
    for path, operations in schema.get("paths", {}).items():
        if path == "/health":
            continue
        for operation in operations.values():
            operation["security"] = [{"APIKey": []}]
    return schema


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Unreadable request body"},
    401: {"model": ErrorBody, "description": "Missing or wrong API key"},
    413: {"model": ErrorBody, "description": "Request body too large"},
    415: {
        "model": ErrorBody,
        "description": "A compressed request body (Content-Encoding): send it uncompressed",
    },
    422: {"model": ErrorBody, "description": "Invalid input"},
}


def _error(status: int, code: str, message: str, hint: str | None = None, field: str | None = None):
    return JSONResponse(
        status_code=status,
        content={"error": code, "message": message, "hint": hint, "field": field},
    )


def _segmint_error(
    exc: SegmintError, message: str | None = None, hint: str | None = None, field: str | None = None
) -> JSONResponse:
    """The answer to an error segmint raised: 422 for what the request got wrong, 503
    with ``Retry-After`` for a failure of the service's machine (an
    :class:`EnvironmentFailure`, e.g. a full disk while scoring an upload: a 422 told
    the client to change a request that was fine)."""
    if isinstance(exc, EnvironmentFailure):
        response = _error(503, exc.code, message or exc.message, hint or exc.hint, field)
        response.headers["Retry-After"] = str(_RETRY_AFTER)
        return response
    return _error(422, exc.code, message or exc.message, hint or exc.hint, field)


#: Largest magnitude of a feature value in a request. Far beyond any shop's figures, far
#: below where the model's arithmetic overflows: 1e300 gave a distance of infinity, which
#: the answer wrote as ``Infinity`` (not JSON; browsers' JSON.parse refuse the answer).
MAX_FEATURE_VALUE = 1e15


#: Predictions of up to this many customers run on the event loop; larger batches in a
#: worker thread. One customer costs about 0.15 ms; a thread hop about as much again.
_INLINE_ROWS = 64


#: JSON bodies of /v1/predict larger than this are parsed and validated in a worker
#: thread (a customer is about 100 bytes: _INLINE_ROWS of them stay on the event loop).
_INLINE_BYTES = 16_384


#: Large /v1/predict bodies parsed and scored at once (in worker threads) by one worker.
_HEAVY_AT_ONCE = 2


#: Seconds a client is told to wait (``Retry-After``) when every scoring slot is busy.
_RETRY_AFTER = 10


#: An upload may unpack (gzip, Excel's zip, Parquet pages) to this many times the body
#: limit: a 7 MB gzip of one repeated line unpacked to 2 GB and held a worker for 5 min.
_EXPANSION = 10


def _expanded_size(path: Path, limit: int) -> tuple[int, Path]:
    """The bytes ``path`` unpacks to, counted up to just past ``limit``, and the file to
    read. gzip is streamed, never held; a ``.csv.gz`` (any ``X.gz``) is unpacked beside
    it as it is counted and the copy is read, so it is decompressed once. Excel and
    other zip files count the member sizes their directory declares; Parquet its
    decoded size: its pages as their headers declare, at least 8 bytes per value (run-
    length encoding lets a megabyte of pages hold 30M rows) and every text value at its
    length (a 600-byte file held 400 copies of one 1 MB dictionary string). A plain file
    is its own size, and so is a damaged archive (the reader then says what is wrong with
    it); a Parquet file whose size cannot be established raises UnreadableParquet."""
    import gzip
    import zipfile
    import zlib

    try:
        return _unpacked_size(path, limit)
    except (gzip.BadGzipFile, EOFError, zlib.error, zipfile.BadZipFile, ValueError):
        # a damaged archive (pyarrow's errors are ValueErrors): reading it reports the
        # damage. Anything else (say a full disk) is not a reason to skip the limit.
        return path.stat().st_size, path


def _unpacked_size(path: Path, limit: int) -> tuple[int, Path]:
    import gzip
    import zipfile

    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:2] == b"\x1f\x8b":
        inner = path.with_suffix("") if path.suffix.lower() == ".gz" else path
        copy = inner.with_name("unpacked" + inner.suffix) if inner.suffix else None
        total = 0
        out = None
        try:
            if copy is not None:
                try:
                    out = copy.open("wb")
                except OSError:
                    copy = None  # no room for the copy: count only, read the upload
            with gzip.open(path, "rb") as fh:
                while chunk := fh.read(1 << 20):
                    total += len(chunk)
                    if total > limit:
                        break
                    if out is not None:
                        try:
                            out.write(chunk)
                        except OSError:  # the disk filled up: keep counting without it
                            out.close()
                            out = None
                            copy.unlink(missing_ok=True)  # type: ignore[union-attr]
                            copy = None
        except BaseException:
            if copy is not None:
                copy.unlink(missing_ok=True)
            raise
        finally:
            if out is not None:
                out.close()
        return total, (copy if copy is not None and total <= limit else path)
    if magic == b"PK\x03\x04":
        with zipfile.ZipFile(path) as z:
            declared = sum(info.file_size for info in z.infolist())
            if declared > limit or "xl/workbook.xml" not in z.namelist():
                return declared, path
            return max(declared, _xlsx_cells_size(z, limit)), path
    if magic == b"PAR1":
        # every page header and every text value counted, never the footer's sizes
        return parquet_decoded_size(path, limit), path
    return path.stat().st_size, path


#: File endings /v1/score reads (``.ndjson`` before ``.json``, which it ends with). Not
#: the old binary ``.xls``: its cells and shared strings can unpack as an ``.xlsx``'s do
#: (a few KB to gigabytes), and they cannot be counted before the reader holds them.
_UPLOAD_ENDINGS = (".csv", ".tsv", ".txt", ".parquet", ".xlsx", ".ndjson", ".json")


def _upload_suffix(name: str) -> str | None:
    """The ending the upload is saved with (``.csv``, ``.csv.gz``, ``.gz``, ...), one
    of :data:`_UPLOAD_ENDINGS` and never text from the file name itself (a name of 300
    characters between its dots made the temporary file's name too long: a 500), or
    None for a file type segmint does not read. A name without any ending is read as
    CSV, as it was before the ending was checked (``curl -F file=@transactions``)."""
    if not Path(name).suffix:
        return ".csv"
    lower = name.lower()
    gz = lower.endswith(".gz")
    if gz:
        lower = lower[: -len(".gz")]
    for ending in _UPLOAD_ENDINGS:
        if lower.endswith(ending):
            return ending + (".gz" if gz else "")
    return ".gz" if gz else None


#: Bytes a spreadsheet reader holds per cell of a sheet's range (calamine keeps one value
#: for every cell from A1 to the last one used; measured: about 50 bytes with Python's).
_CELL_BYTES = 32


def _xlsx_cells_size(z: Any, limit: int) -> int:
    """What the sheets of an ``.xlsx`` unpack to as cells, counted up to just past
    ``limit``: every cell of each sheet's range (A1 to the last row and column used),
    and each shared-string cell's own copy of its string. A 2 KB workbook with one cell
    in A1 and one in CV300000 took 1.5 GB to read (XFD1048576: far more than any
    machine has), and 400 cells of one shared 1 MB string 1.3 GB from 5 KB, while the
    members it declares stay under a megabyte. The XML is scanned with patterns, in
    chunks (an XML parser took two minutes for 200,000 rows)."""
    names = z.namelist()
    lengths: list[int] = []
    if "xl/sharedStrings.xml" in names:
        for data in _chunks(z, "xl/sharedStrings.xml", b"</si>"):
            # each with its tags: never less than its text
            lengths += [len(m) for m in _SHARED.findall(data)]
    total = 0
    for name in names:
        if not (name.startswith("xl/worksheets/") and name.endswith(".xml")):
            continue
        rows = cols = 0
        for data in _chunks(z, name, b"</row>"):
            refs = _CELL_REF_ALL.findall(data)
            if len(refs) != len(_CELL_TAG.findall(data)):
                # some cell without its position (it follows the one before): slow path
                rows, cols = _range_in_order(data, rows, cols)
            elif refs:
                rows = max(rows, max(int(d) for _, d in refs))
                letters = max((a.upper() for a, _ in refs), key=lambda a: (len(a), a))
                col = 0
                for ch in letters:
                    col = col * 26 + ch - 64
                cols = max(cols, col)
            for index in _SHARED_CELL.findall(data):
                if int(index) < len(lengths):
                    total += lengths[int(index)]
            if total + rows * cols * _CELL_BYTES > limit:
                break
        total += rows * cols * _CELL_BYTES
        if total > limit:
            break
    return total


def _range_in_order(data: bytes, rows: int, cols: int) -> tuple[int, int]:
    """The last row and column used, reading rows and cells in order (for cells that
    leave out their position)."""
    row = rows
    col = 0
    for m in _ROW_OR_CELL.finditer(data):
        row_attrs, cell_attrs = m.groups()
        if row_attrs is not None:
            r = _ROW_NUMBER.search(row_attrs)
            row, col = (int(r.group(1)) if r else row + 1), 0
            continue
        ref = _CELL_REF.search(cell_attrs)
        if ref:
            col = 0
            for ch in ref.group(1).upper():
                col = col * 26 + ch - 64
            row = max(row, int(ref.group(2)))
        else:
            col += 1
        rows, cols = max(rows, row), max(cols, col)
    return rows, cols


_SHARED = re.compile(rb"<(?:\w+:)?si\b.*?</(?:\w+:)?si>", re.DOTALL)
_CELL_TAG = re.compile(rb"<(?:\w+:)?c[\s/>]")
_CELL_REF_ALL = re.compile(
    rb"<(?:\w+:)?c\s[^>]*?\br\s*=\s*[\"']\s*\$?([A-Za-z]{1,3})\$?(\d{1,9})[\"']"
)
_ROW_OR_CELL = re.compile(rb"<(?:\w+:)?row\b([^>]*)>|<(?:\w+:)?c(\s[^>]*|)/?>")
_ROW_NUMBER = re.compile(rb"\br\s*=\s*[\"']\s*(\d{1,9})")
_CELL_REF = re.compile(rb"\br\s*=\s*[\"']\s*\$?([A-Za-z]{1,3})\$?(\d{1,9})")
#: the string index of a shared-string cell (t="s"), whatever else the cell holds
_SHARED_CELL = re.compile(
    rb"<(?:\w+:)?c\s[^>]*?\bt\s*=\s*[\"']s[\"'][^>]*>"
    rb"(?:(?!</(?:\w+:)?c>).)*?<(?:\w+:)?v\b[^>]*>\s*(\d{1,9})",
    re.DOTALL,
)


def _chunks(z: Any, member: str, end: bytes) -> Any:
    """A zip member in pieces of about 4 MiB, each cut after its last ``end`` tag so no
    element is split (a longer element is read whole)."""
    carry = b""
    with z.open(member) as fh:
        while True:
            chunk = fh.read(1 << 22)
            data = carry + chunk
            cut = data.rfind(end) + len(end) if chunk else len(data)
            if cut < len(end):  # no end tag yet: read on
                carry = data
                continue
            yield data[:cut]
            carry = data[cut:]
            if not chunk:
                return


#: Content-Security-Policy of the web page.
_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
#: Response headers a page of an allowed origin (CORS) may read, beyond the few browsers
#: always let through (Content-Type, ...).
_EXPOSED_HEADERS = ("X-Request-ID", "X-Segmint-Notes", "Retry-After", "Content-Disposition")
#: Headers on every response: no MIME sniffing, not framed by other sites.
_SAFE_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY")]


class _BodyTooLarge(Exception):
    """Raised by the guarded ``receive`` when a body without Content-Length grows too big."""


#: Key of the request state that marks a body refused for its size.
_TOO_LARGE = "segmint_body_too_large"


def _too_large(settings: ApiSettings, path: str) -> JSONResponse:
    """The 413 answer, with a hint for the endpoint."""
    return _error(
        413,
        "body_too_large",
        f"the request body is larger than {settings.max_body_bytes:,} bytes",
        hint=(
            "upload a smaller file (split it, or compress it as .csv.gz or Parquet); the "
            "limit is segmint serve --max-body-bytes"
            if path == "/v1/score"
            else "send fewer customers per request"
        ),
    )


class _Guard:
    """Plain ASGI middleware: body size limit, API key, request id, access log.

    Written as ASGI rather than with ``@app.middleware("http")`` (Starlette's
    ``BaseHTTPMiddleware``), which runs every request through an extra task and memory
    streams: with it, one prediction spent more time in the middleware than in the
    model. A body sent without Content-Length (chunked) is counted as it is read and
    refused with 413 once it passes the limit.

    ``POST /v1/predict`` with a JSON body is answered here, without Starlette's routing
    and FastAPI's request handling (about half of the server's time for one customer):
    the same steps as FastAPI's (``json.loads``, then the same pydantic model in Python
    mode, errors reported by the same :func:`_invalid`), then :func:`_predict`. The route
    in the app still documents the endpoint and serves other content types.
    """

    def __init__(
        self, app: Any, settings: ApiSettings, model: SegmentModel, request_model: type[BaseModel]
    ) -> None:
        self.app = app
        self.settings = settings
        self.model = model
        self.request_model = request_model
        self._heavy = asyncio.Semaphore(_HEAVY_AT_ONCE)
        self.keys = _Keys(settings)

    async def _predict(self, receive: Any) -> Response:
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return Response(status_code=400)
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        raw = b"".join(chunks)
        if not raw:  # as FastAPI: a missing body is a missing required field
            return _invalid([{"type": "missing", "loc": ("body",), "msg": "Field required"}])
        if len(raw) > _INLINE_BYTES:
            # parsing, validating and scoring 10,000 customers takes about 0.3 s of
            # Python holding the GIL: on the event loop, or in 30 threads at once, 30
            # such batches held /health for 10 s (a load balancer's timeout). A few at a
            # time in threads: the loop keeps answering, and no throughput is lost (they
            # never ran in parallel anyway: the GIL)
            async with self._heavy:
                return await run_in_threadpool(self._answer, raw)
        body = self._validate(raw)
        if isinstance(body, Response):
            return body
        try:
            return await _predict(self.model, body)
        except SegmintError as exc:  # as the app's handler does for the route
            return _segmint_error(exc)

    def _answer(self, raw: bytes) -> Response:
        """The whole answer to the JSON body ``raw`` (in a worker thread)."""
        body = self._validate(raw)
        if isinstance(body, Response):
            return body
        single = body.customer is not None
        try:
            return _predict_response(
                self.model, [body.customer] if single else body.customers, single=single
            )
        except SegmintError as exc:
            return _segmint_error(exc)

    def _validate(self, raw: bytes) -> Any:
        """The request model for the JSON body ``raw``, or the 422 answer."""
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            # JSONDecodeError and UnicodeDecodeError are ValueErrors; so is an integer
            # of thousands of digits; RecursionError: nesting too deep to parse
            pos = getattr(exc, "pos", getattr(exc, "start", 0))
            reason = (
                "nested too deeply"
                if isinstance(exc, RecursionError)
                else getattr(exc, "msg", None) or getattr(exc, "reason", "") or str(exc)
            )
            return _invalid(
                [
                    {
                        "type": "json_invalid",
                        "loc": ("body", pos),
                        "msg": "JSON decode error",
                        "ctx": {"error": reason},
                    }
                ]
            )
        try:
            return self.request_model.model_validate(data, from_attributes=True)
        except ValidationError as exc:
            return _invalid(exc.errors(include_url=False))

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        settings = self.settings
        rid = size = key = ctype = encoding = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                rid = value.decode("latin-1")
            elif name == b"content-length":
                size = value.decode("latin-1")
            elif name == b"x-api-key":
                key = value
            elif name == b"content-type":
                ctype = value
            elif name == b"content-encoding":
                encoding = value.decode("latin-1").strip().lower()
        if not (rid and len(rid) <= 64 and rid.replace("-", "").isalnum()):
            rid = uuid.uuid4().hex
        path = scope["path"]
        state = {"status": 0, "started": False}
        rid_header = (b"x-request-id", rid.encode())
        # answers of /v1 hold customers' segments and the model's training figures:
        # never kept by a browser's or a proxy's cache (they had no Cache-Control)
        private = path.startswith("/v1/")

        async def send_with_id(message: dict) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                state["started"] = True
                headers = [*message.get("headers", []), rid_header, *_SAFE_HEADERS]
                if private and not any(k.lower() == b"cache-control" for k, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        received = 0

        async def receive_limited() -> dict:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > settings.max_body_bytes:
                    # the form parser turns any error into a 400: this mark lets the
                    # app's error handler answer 413 instead
                    scope.setdefault("state", {})[_TOO_LARGE] = True
                    raise _BodyTooLarge
            return message

        def too_large() -> JSONResponse:
            return _too_large(settings, path)

        # the key first: a client without it learns nothing of the service, its size
        # limit included (an oversized request without the key was a 413, not a 401)
        if (
            settings.protected
            and path != "/health"
            and path != "/"
            and not path.startswith(("/docs", "/redoc", "/openapi.json", "/static", "/favicon"))
            and not self.keys.accepts(key)
        ):
            response = _error(
                401,
                "unauthorized",
                "missing or wrong API key",
                hint="send the key in the X-API-Key header",
                field="X-API-Key",
            )
            # RFC 9110 (15.5.2): a 401 names how to authenticate (it said nothing)
            response.headers["WWW-Authenticate"] = 'APIKey realm="segmint", header="X-API-Key"'
            await response(scope, receive, send_with_id)
        elif size is not None and (not size.isdigit() or int(size) > settings.max_body_bytes):
            await too_large()(scope, receive, send_with_id)
        elif encoding not in (None, "", "identity"):
            await _unsupported_encoding(encoding)(scope, receive, send_with_id)
        else:
            try:
                if (
                    path == "/v1/predict"
                    and scope["method"] == "POST"
                    and ctype is not None
                    and ctype.split(b";")[0].strip().lower() == b"application/json"
                ):
                    response = await self._predict(receive_limited)
                    await response(scope, receive, send_with_id)
                else:
                    await self.app(scope, receive_limited, send_with_id)
            except _BodyTooLarge:
                if state["started"]:  # pragma: no cover - the app streamed before reading
                    raise
                await too_large()(scope, receive, send_with_id)
        if access_log.isEnabledFor(logging.INFO):
            access_log.info(
                json.dumps(
                    {
                        "request_id": rid,
                        "method": scope["method"],
                        "path": path,
                        "status": state["status"],
                        "ms": round((time.perf_counter() - t0) * 1000, 2),
                    }
                )
            )


def _unsupported_encoding(encoding: str) -> JSONResponse:
    """415 for a compressed request body: it was read as it came, so a gzipped JSON body
    was "not valid JSON at character 1" and a gzipped upload "Invalid multipart data"."""
    response = _error(
        415,
        "unsupported_encoding",
        f"Content-Encoding {encoding[:40]!r}: the service reads request bodies uncompressed",
        hint="send the body without Content-Encoding; to upload less to /v1/score, "
        "compress the file itself (transactions.csv.gz) and upload that",
        field="Content-Encoding",
    )
    response.headers["Accept-Encoding"] = "identity"  # RFC 9110, 15.5.16
    return response


def _upload_hint(hint: str | None) -> str | None:
    """The hint for an uploaded file's error. Hints naming command-line options (--map,
    --date-format, ...) cannot be followed by an API caller, who passes only the file."""
    if not hint or "--" not in hint:
        return hint
    return (
        "fix the file itself (column names segmint recognises, ISO dates such as "
        "2011-12-09, numbers without currency signs), or score it with the segmint "
        f"command line, which takes options for this (there: {hint})"
    )


def _invalid(errors: Any, content_type: str = "") -> JSONResponse:
    """The 422 answer for validation errors: the first error, naming its field.

    A body that is not JSON names the body and the character where parsing stopped
    (FastAPI's own error puts that position where a field name goes). A JSON body sent
    without a JSON ``Content-Type`` (curl's ``-d`` sends a form type) is not parsed at
    all; the answer says to set the header instead of "Input should be a valid
    dictionary".
    """
    err = errors[0]
    media = content_type.split(";")[0].strip().lower()
    if (
        tuple(err.get("loc", ())) == ("body",)
        and err.get("type") in {"model_attributes_type", "dict_type"}
        and media != "application/json"
        and not media.endswith("+json")
    ):
        return _error(
            422,
            "invalid_request",
            f"body: not read as JSON: the request's Content-Type is {media or 'missing'!r}",
            hint="send the header Content-Type: application/json "
            "(curl: -H 'Content-Type: application/json')",
            field="body",
        )
    if err.get("type") == "json_invalid":
        loc = tuple(err.get("loc", ()))
        pos = loc[1] if len(loc) > 1 else 0
        reason = (err.get("ctx") or {}).get("error") or "JSON decode error"
        if "set_int_max_str_digits" in str(reason):
            # Python's advice to raise its own limit is no help to a client
            reason = "a number of over 4,300 digits"
        return _error(
            422,
            "invalid_request",
            f"body: not valid JSON at character {pos} ({reason})",
            hint='send a JSON object such as {"customer": {...}} or {"customers": [...]}',
            field="body",
        )
    loc = [str(p) for p in err.get("loc", ()) if p != "body"]
    field = ".".join(loc) or "body"  # an error about the whole body (fast path: loc ())
    msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
    hint = "see /docs for the expected fields"
    if loc and loc[-1] == "customer_id" and err.get("type") == "string_type":
        # Online Retail's ids are numbers: a client sending them as such got only /docs
        hint = 'send the id as a JSON string, e.g. "customer_id": "12346"'
    return _error(422, "invalid_request", f"{field}: {msg}", hint=hint, field=field)


async def _predict(model: SegmentModel, body: Any) -> Response:
    """Answer a validated predict request (small ones inline, large ones in a thread)."""
    single = body.customer is not None
    rows = [body.customer] if single else body.customers
    if len(rows) <= _INLINE_ROWS:
        # a fraction of a millisecond: answered on the event loop, no thread hop
        return _predict_response(model, rows, single=single)
    # large batches in a worker thread, so the server keeps answering others
    return await run_in_threadpool(_predict_response, model, rows, single=single)


def _predict_response(model: SegmentModel, rows: list[Any], *, single: bool) -> Response:
    """Segments for validated request rows, as JSON encoded once.

    Models without categorical features take the NumPy-only path
    (:meth:`SegmentModel.assign_columns`: no DataFrame per request); the others go
    through :meth:`SegmentModel.assign`. Both give the same columns, turned into the
    same records here."""
    # the model's tables need an id per row; the answer echoes only the ids sent (the
    # position, as "1", collided with a real customer "1" of the same batch) and gives
    # every customer its position as "index"
    given = [r.customer_id for r in rows]
    ids = [str(i) for i in range(len(rows))]  # unique row keys, whatever was sent
    if model.numeric_only:
        names = list(model.segmenter.transform_.features_)
        for extra in ("recency_days", "frequency", "monetary"):
            if extra not in names and extra in type(rows[0]).model_fields:
                names.append(extra)
        columns = {f: np.fromiter((getattr(r, f) for r in rows), float, len(rows)) for f in names}
        out = model.assign_columns(columns, ids)
    else:
        frame = pd.DataFrame([r.model_dump() for r in rows]).assign(customer_id=ids)
        table = model.assign(frame, model.rfm(frame))
        out = {c: table[c].tolist() for c in table.columns}
        out["out_of_range_features"] = [
            f.split(",") if f else [] for f in table["out_of_range_features"]
        ]
    rfm_segment = out.get("rfm_segment")
    rfm_rule_set = model.rfm_rule_set
    conf = out["confidence"]
    records = [
        {
            "index": i,
            "customer_id": given[i],
            "segment_id": int(out["segment_id"][i]),
            "segment_name": out["segment_name"][i],
            "action": out["action"][i],
            "rfm_segment": rfm_segment[i] if rfm_segment is not None else None,
            "rfm_rule_set": rfm_rule_set if rfm_segment is not None else None,
            "confidence": None if conf[i] != conf[i] else float(conf[i]),
            # a customer far beyond the training data: inf is not JSON (it was
            # written as Infinity, which strict JSON parsers refuse)
            "distance": _finite_or_none(out["distance"][i]),
            "out_of_range": bool(out["out_of_range"][i]),
            "out_of_range_features": list(out["out_of_range_features"][i]),
            "warnings": [
                _range_warning(model, f, rows[i]) for f in out["out_of_range_features"][i]
            ],
        }
        for i in range(len(rows))
    ]
    body = records[0] if single else {"results": records}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _finite_or_none(value: Any) -> float | None:
    """A float for JSON, or None for NaN and infinity (not JSON numbers)."""
    number = float(value)
    return number if np.isfinite(number) else None


def _range_warning(model: SegmentModel, feature: str, row: Any) -> str:
    """The warning for one out-of-range feature of a request row."""
    if feature in model.segmenter.transform_.categorical_:
        value = getattr(row, feature, None)
        if value is None:
            return f"{feature} is missing, and every training customer had one"
        return f"{feature} {value!r} was not in the training data"
    return f"{feature} is outside the training range"


def _request_examples(model: SegmentModel, *, public_ranges: bool) -> dict[str, Any]:
    """Examples of a ``/v1/predict`` body for the OpenAPI schema, each one a valid request.

    Swagger UI's "Try it out" otherwise built its body from the schema: ``customer`` and
    ``customers`` together, every value at the 10^15 limit, which the service refuses
    (422 "give exactly one"). Values are the training medians (mid-way in the training
    range for a model saved without them); with an API key (training data kept private:
    see :func:`_customer_model`) every number is 1."""
    transform = model.segmenter.transform_
    medians = (model.metadata.get("training") or {}).get("feature_medians") or {}
    customer: dict[str, Any] = {"customer_id": "C-1001"}
    for f, lo, hi in zip(
        transform.features_, transform.training_min_, transform.training_max_, strict=True
    ):
        typical = medians.get(f)
        if typical is None:
            typical = (float(lo) + float(hi)) / 2
        customer[f] = round(float(typical), 2) if public_ranges else 1.0
    encoder = getattr(transform, "encoder_", None)
    for i, c in enumerate(transform.categorical_):
        known = list(encoder.categories_[i]) if encoder is not None and public_ranges else []
        customer[c] = str(known[0]) if known else "example"
    second = customer | {"customer_id": "C-1002"}
    return {
        "one": {"summary": "One customer", "value": {"customer": customer}},
        "batch": {"summary": "A batch of customers", "value": {"customers": [customer, second]}},
    }


def _customer_model(
    model: SegmentModel, max_batch: int, *, public_ranges: bool = True
) -> tuple[type[BaseModel], type[BaseModel]]:
    """Pydantic models of one customer and of a predict request, from the bundle.

    ``public_ranges=False`` (a service with an API key) leaves the training ranges out of
    the schema, which ``/openapi.json`` shows without the key: the largest customer's
    spend is the company's data; ``/v1/model`` (key required) still has them."""
    transform = model.segmenter.transform_
    fields: dict[str, Any] = {
        "customer_id": (
            str | None,
            Field(None, max_length=200, description="Your id, echoed back."),
        )
    }
    ranges = {
        f: (float(lo), float(hi))
        for f, lo, hi in zip(
            transform.features_, transform.training_min_, transform.training_max_, strict=True
        )
    }
    for f, (lo, hi) in ranges.items():
        fields[f] = (
            float,
            Field(
                ...,
                ge=0 if lo >= 0 else -MAX_FEATURE_VALUE,
                le=MAX_FEATURE_VALUE,
                allow_inf_nan=False,
                # a JSON number: "3" or true were taken as 3.0 and 1.0
                strict=True,
                description=(
                    f"training range {lo:g} to {hi:g}"
                    if public_ranges
                    else "a number (training ranges: GET /v1/model)"
                ),
                json_schema_extra=(
                    {"x-training-min": lo, "x-training-max": hi} if public_ranges else None
                ),
            ),
        )
    for c in transform.categorical_:
        fields[c] = (str, Field(..., min_length=1, max_length=200))
    CustomerModel = create_model("Customer", __config__=ConfigDict(extra="forbid"), **fields)  # noqa: N806

    class PredictRequest(BaseModel):
        """One customer, or a batch of customers."""

        model_config = ConfigDict(
            extra="forbid",
            json_schema_extra={"oneOf": [{"required": ["customer"]}, {"required": ["customers"]}]},
        )
        # not nullable in the schema: leave the other one out instead of sending null
        customer: CustomerModel = Field(None)  # type: ignore[valid-type]
        customers: list[CustomerModel] = Field(  # type: ignore[valid-type]
            None, min_length=1, max_length=max_batch
        )

        @model_validator(mode="after")
        def _exactly_one(self) -> "PredictRequest":
            if (self.customer is None) == (self.customers is None):
                raise ValueError("give exactly one of 'customer' or 'customers'")
            return self

    return CustomerModel, PredictRequest


def create_app(settings: ApiSettings) -> FastAPI:
    """The FastAPI app serving one model bundle (loaded once, here)."""
    from segmint import __version__

    model = load_model(settings.model)
    customer_model, predict_model = _customer_model(
        model, settings.max_batch, public_ranges=not settings.protected
    )
    meta = model.metadata
    # FastAPI's /docs and /redoc load Swagger UI and ReDoc from a CDN, blank without
    # internet; fastapi-offline serves the same assets from the installed package
    app = FastAPIOffline(
        title="segmint",
        version=__version__,
        description="Customer segments from a trained segmint model.",
        responses=_ERRORS,
        static_url="/docs/assets",
    )
    app.state.model = model
    app.state.settings = settings
    # each upload being scored holds an engine (up to its 1 GB memory limit) and its
    # tables: without a cap, 40 uploads at once (the thread pool's size) could take
    # 40 GB; the rest wait for a slot, then get 503
    slots = asyncio.Semaphore(settings.max_uploads)
    if settings.protected:
        plain_openapi = app.openapi

        def openapi_with_key() -> dict[str, Any]:
            if app.openapi_schema is None:  # built once, then cached by FastAPI
                app.openapi_schema = _with_api_key(plain_openapi())
            return app.openapi_schema

        app.openapi = openapi_with_key  # type: ignore[method-assign]
    app.add_middleware(_Guard, settings=settings, model=model, request_model=predict_model)
    if settings.cors_origins:
        # added last, so it wraps the guard: preflight requests (which never carry the
        # API key) are answered here, and every answer, the guard's fast path included,
        # gets the CORS headers
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            # a browser hides every other header from a page of another origin: the
            # notes of a CSV answer, the wait of a 503 and the request id were unreadable
            expose_headers=list(_EXPOSED_HEADERS),
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):  # noqa: ANN001
        return _invalid(exc.errors(), request.headers.get("content-type", ""))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # noqa: ANN001
        if request.scope.get("state", {}).get(_TOO_LARGE):  # see _Guard.receive_limited
            return _too_large(settings, request.url.path)
        if _storage_failure(exc.__cause__):
            # the form parser spools an upload over 1 MB to a temporary file; the disk
            # refusing it was "There was an error parsing the body" (400: the client's
            # fault), although the same upload passes once there is room
            return _cannot_store(exc.__cause__)
        response = _http_error(exc.status_code, str(exc.detail), exc.headers or {})
        for key, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            response.headers[key] = value
        return response

    @app.exception_handler(SegmintError)
    async def segmint_error(request: Request, exc: SegmintError):  # noqa: ANN001
        return _segmint_error(exc)

    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The web page: predict, dashboard, score a file. Its Content-Security-Policy
        allows only the app's own scripts, styles and requests (no inline code), so text
        from a request or a bundle can never run as script in it."""
        return FileResponse(static / "index.html", headers={"Content-Security-Policy": _CSP})

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get(
        "/health", response_model=None, responses={200: {"model": HealthInfo, "description": "Up"}}
    )
    async def health() -> dict[str, Any]:
        """Liveness: the service runs and its model is loaded (which model, and which
        worker answered). Answered on the event loop, never queued behind the thread
        pool's large batches, and to HEAD as well as GET (load balancers use both)."""
        return {
            "status": "ok",
            "model_loaded": True,
            "model_id": model.model_id,
            "version": __version__,
            "worker_pid": os.getpid(),
        }

    def _rfm_info(rfm: dict[str, Any] | None) -> dict[str, Any] | None:
        """The rule set (name, version, label) and training cut points behind the
        ``rfm_segment`` of every answer: the same segment names mean other cells in
        other rule sets, and a client could not tell which one the model used."""
        if not rfm:
            return None
        from segmint.rfm import rule_set_label

        return {
            "rule_set": rfm.get("rule_set"),
            "rule_set_version": rfm.get("rule_set_version"),
            "rule_set_label": rule_set_label(rfm.get("rule_set"), rfm.get("rule_set_version")),
            "cut_points": rfm.get("cut_points"),
        }

    # HEAD for load balancers, out of the schema: a second operation there had the same
    # operationId as GET (client generators refuse duplicate ids)
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)

    @app.get(
        "/v1/model",
        response_model=None,
        responses={200: {"model": ModelInfo, "description": "The served model"}},
    )
    def model_info() -> dict[str, Any]:
        """The model: feature set, snapshot rule, training size, versions, features, and
        the RFM rule set and cut points."""
        training = meta.get("training", {})
        return {
            "model_id": model.model_id,
            "feature_set": meta.get("feature_set"),
            "feature_set_version": meta.get("feature_set_version"),
            "snapshot_rule": meta.get("snapshot_rule"),
            "snapshot_date": meta.get("snapshot_date"),
            "created_at": meta.get("created_at"),
            "training_customers": training.get("customers"),
            "feature_ranges": training.get("feature_ranges"),
            "feature_medians": training.get("feature_medians"),
            "features": model.features,
            "algorithm": meta.get("model", {}).get("algorithm"),
            "n_segments": meta.get("model", {}).get("n_segments"),
            "explanation": meta.get("model", {}).get("explanation"),
            "versions": meta.get("versions"),
            "max_batch": settings.max_batch,
            "rfm": _rfm_info(meta.get("rfm")),
        }

    @app.get(
        "/v1/segments",
        response_model=None,
        responses={200: {"model": SegmentsInfo, "description": "Profiles and lifetime value"}},
    )
    def segments() -> dict[str, Any]:
        """Segment profiles with their names and suggested actions, and lifetime value
        (its caveats in ``clv.notes``, also for bundles saved with a ``clv.note``)."""
        from segmint.clv import one_notes_key

        return {"segments": meta.get("profiles", []), "clv": one_notes_key(meta.get("clv"))}

    @app.post(
        "/v1/predict",
        response_model=None,
        responses={
            200: {
                "model": PredictResult | PredictResults,
                "description": "A result for `customer`, or `results` for `customers`",
            }
        },
    )
    async def predict(
        body: Annotated[  # type: ignore[valid-type]
            predict_model,
            Body(openapi_examples=_request_examples(model, public_ranges=not settings.protected)),
        ],
    ) -> dict[str, Any]:
        """Segments for one customer or a batch."""
        # JSON requests are answered by _Guard's fast path; this route documents the
        # endpoint and serves the others (another or no content type)
        return await _predict(model, body)

    @app.post("/v1/score", responses=_SCORE_RESPONSES)
    async def score_file(
        file: Annotated[UploadFile, File(description="Transactions or a segmint feature table.")],
        format: Annotated[
            Literal["csv", "json"], Query(description="The answer's format: csv or json")
        ] = "csv",
        escape_formulas: Annotated[
            bool,
            Query(
                description="CSV only: prefix text cells starting with = + - @ tab or CR "
                "with ' so a spreadsheet shows them as text instead of running them "
                "(numbers are kept). false for a program that reads the CSV; JSON is "
                "never changed."
            ),
        ] = True,
    ) -> Response:
        """Segments for every customer of an uploaded file (streamed back as CSV or JSON)."""
        import tempfile

        name = Path(file.filename or "upload.csv").name
        suffix = _upload_suffix(name)
        if name.lower().removesuffix(".gz").endswith(".xls"):
            return _error(
                415,
                "unsupported_file",
                f"{name}: the service does not read old Excel .xls files (their size "
                "once read cannot be checked beforehand)",
                hint="save the sheet as .xlsx or CSV, or score the .xls with `segmint "
                "score MODEL FILE --out ...` on the command line",
                field="file",
            )
        if suffix is None:
            return _error(
                415,
                "unsupported_file",
                f"{name}: not a file type segmint reads",
                hint="upload CSV, TSV, Parquet, Excel .xlsx or JSON",
                field="file",
            )
        folder = Path(tempfile.mkdtemp(prefix="segmint-upload-"))
        path = folder / f"upload{suffix}"
        written = 0
        try:
            try:
                with path.open("wb") as fh:
                    while chunk := await file.read(1 << 20):
                        written += len(chunk)
                        if written > settings.max_body_bytes:
                            return _error(
                                413,
                                "body_too_large",
                                f"the file is larger than {settings.max_body_bytes:,} bytes",
                                hint="upload a smaller file (split it, or compress it as "
                                ".csv.gz or Parquet); the limit is segmint serve "
                                "--max-body-bytes",
                                field="file",
                            )
                        fh.write(chunk)
            except OSError as exc:
                if not _storage_failure(exc):
                    raise
                # the service's disk (or its file size limit), not the request: it was
                # an internal error (500); the same upload may pass once there is room
                return _cannot_store(exc, name)
            if written == 0:
                return _error(
                    422,
                    "empty_file",
                    f"{name}: the file is empty (0 bytes)",
                    hint="upload the transactions file again: the file sent has no header "
                    "and no rows (was it saved before the upload?)",
                    field="file",
                )
            if slots.locked():  # (a free slot is taken at once, even with a wait of 0)
                try:
                    await asyncio.wait_for(slots.acquire(), timeout=settings.upload_wait)
                except TimeoutError:
                    return _busy(settings)
            else:
                await slots.acquire()
            try:
                return await _score_upload(
                    model, settings, name, path, format=format, escape=escape_formulas
                )
            finally:
                slots.release()
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)

    return app


def _storage_failure(exc: BaseException | None) -> bool:
    """Whether ``exc`` is the service's disk refusing a write: full, over a quota, or
    past the process's file size limit."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


def _cannot_store(exc: BaseException | None, name: str = "the upload") -> JSONResponse:
    """503 ``disk_full`` with Retry-After: an upload the service's disk cannot hold."""
    reason = getattr(exc, "strerror", None) or "no room on the service's disk"
    return _segmint_error(
        EnvironmentFailure(
            f"{name}: the service cannot store the upload now ({reason})",
            hint="send the file again later; if it persists, the service's temporary "
            "folder needs more room (TMPDIR)",
            code="disk_full",
        ),
        field="file",
    )


def _http_error(status: int, detail: str, headers: dict[str, str]) -> JSONResponse:
    """The error body of Starlette's own answers (no route, wrong method, a form it cannot
    parse), with a code of their own: every one was ``http_error`` without a hint, so a
    client could not tell a mistyped path from a wrong method without the status."""
    import http

    try:
        code = http.HTTPStatus(status).phrase.lower().replace(" ", "_").replace("-", "_")
    except ValueError:
        code = "http_error"
    hint = None
    if status == 404:
        hint = "the endpoints are listed at /docs (GET /v1/model, POST /v1/predict, ...)"
    elif status == 405 and headers.get("Allow"):
        hint = f"this path answers {headers['Allow']}"
    return _error(status, code, detail, hint)


def _busy(settings: ApiSettings) -> JSONResponse:
    """503: every scoring slot stayed busy for ``upload_wait`` seconds."""
    response = _error(
        503,
        "busy",
        f"{settings.max_uploads} upload(s) are being scored and none finished within "
        f"{settings.upload_wait:g} s",
        hint=f"send the file again in a moment (Retry-After: {_RETRY_AFTER} s), or score "
        "large files with `segmint score MODEL FILE --out ...`",
        field="file",
    )
    response.headers["Retry-After"] = str(_RETRY_AFTER)
    return response


async def _score_upload(
    model: SegmentModel,
    settings: ApiSettings,
    name: str,
    path: Path,
    *,
    format: str,
    escape: bool,
) -> Response:
    """Score the upload saved at ``path`` (``name`` as sent) into the /v1/score answer."""
    limit = _EXPANSION * settings.max_body_bytes
    try:
        expanded, readable = await run_in_threadpool(_expanded_size, path, limit)
    except UnreadableParquet as exc:
        return _error(
            422,
            "unreadable_file",
            f"{name}: {exc}",
            hint="write the file again with pandas, pyarrow, DuckDB or Spark, or upload it as CSV",
            field="file",
        )
    if expanded > limit:
        return _error(
            413,
            "expands_too_large",
            f"{name}: the file unpacks to more than {limit:,} bytes "
            f"({_EXPANSION} x the --max-body-bytes limit)",
            hint="score large files with `segmint score MODEL FILE --out ...` on the "
            "command line; the service is for small uploads",
            field="file",
        )
    from segmint.sqlite import is_sqlite_file

    if is_sqlite_file(readable):
        # the command line reads SQLite files by their header; the service does not: a
        # view can make rows without end, and the file's size bounds nothing
        return _error(
            415,
            "unsupported_file",
            f"{name}: is an SQLite database, which the service does not read",
            hint="upload the table as CSV or Parquet, or score the database with `segmint "
            "score MODEL sqlite:///FILE --table TABLE --out ...` on the command line",
            field="file",
        )
    try:
        # the engine work runs in a worker thread: the server keeps answering
        scored = await run_in_threadpool(model.score, str(readable))
    except SegmintError as exc:
        message = exc.message.replace(str(readable), name).replace(str(path), name)
        return _segmint_error(exc, message, _upload_hint(exc.hint), field="file")
    notes = [
        n.replace(str(readable), name).replace(str(path), name)
        for n in scored.attrs.get("notes") or []
    ]
    scored = model.traceable(scored)  # the snapshot date and model id on every row
    if format == "json":
        # the snapshot date as ISO text (to_json writes a date as epoch milliseconds)
        plain = scored.assign(snapshot_date=scored["snapshot_date"].astype(str))
        records = json.loads(plain.to_json(orient="records"))
        for record in records:  # a list, as /v1/predict gives it (the CSV keeps the text)
            names = record["out_of_range_features"]
            record["out_of_range_features"] = names.split(",") if names else []
        return JSONResponse({"results": records, "notes": notes})

    if escape:  # the web page offers this CSV for download: Excel opens it
        scored = _escape_formulas(scored)

    def rows():
        yield scored.head(0).to_csv(index=False)
        for start in range(0, len(scored), 10_000):
            yield scored.iloc[start : start + 10_000].to_csv(index=False, header=False)

    return StreamingResponse(
        rows(),
        media_type="text/csv",
        headers={
            "Content-Disposition": 'attachment; filename="segments.csv"',
            # warnings on data unlike the training data, as JSON (ASCII-escaped)
            "X-Segmint-Notes": json.dumps(notes),
        },
    )


def create_app_from_env() -> FastAPI:
    """The app configured by ``SEGMINT_MODEL``, ``SEGMINT_API_KEY`` (or
    ``SEGMINT_API_KEY_FILE``), ``SEGMINT_MAX_BATCH``,
    ``SEGMINT_MAX_BODY_BYTES``, ``SEGMINT_MAX_UPLOADS`` and ``SEGMINT_UPLOAD_WAIT`` (used
    by ``segmint serve --workers N``)."""
    path = os.environ.get("SEGMINT_MODEL")
    if not path:
        raise ConfigError("SEGMINT_MODEL is not set", hint="segmint serve MODEL")
    values: dict[str, Any] = {
        "model": path,
        "api_key": os.environ.get("SEGMINT_API_KEY") or None,
        "api_key_file": os.environ.get("SEGMINT_API_KEY_FILE") or None,
    }
    if os.environ.get("SEGMINT_MAX_BATCH"):
        values["max_batch"] = int(os.environ["SEGMINT_MAX_BATCH"])
    if os.environ.get("SEGMINT_MAX_BODY_BYTES"):
        values["max_body_bytes"] = int(os.environ["SEGMINT_MAX_BODY_BYTES"])
    if os.environ.get("SEGMINT_CORS_ORIGINS"):
        values["cors_origins"] = os.environ["SEGMINT_CORS_ORIGINS"].split(",")
    if os.environ.get("SEGMINT_MAX_UPLOADS"):
        values["max_uploads"] = int(os.environ["SEGMINT_MAX_UPLOADS"])
    if os.environ.get("SEGMINT_UPLOAD_WAIT"):
        values["upload_wait"] = float(os.environ["SEGMINT_UPLOAD_WAIT"])
    app = create_app(ApiSettings(**values))
    # everything loaded so far (libraries, the model) lives as long as the process: move
    # it out of the garbage collector's sight, so its full collections stay short
    gc.collect()
    gc.freeze()
    return app
