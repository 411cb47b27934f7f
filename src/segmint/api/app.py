"""FastAPI application factory, request models built from the bundle, error handling.

No ``from __future__ import annotations`` here: FastAPI reads the request model of
``/v1/predict`` from the annotation, and that model is built at run time from the bundle.
"""

import json
import logging
import os
import secrets
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, File, Query, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from segmint.bundle import SegmentModel, load_model
from segmint.errors import ConfigError, SegmintError

__all__ = ["ApiSettings", "create_app", "create_app_from_env"]

access_log = logging.getLogger("segmint.api.access")


class ApiSettings(BaseModel):
    """Settings of the service (``segmint serve`` flags, or ``SEGMINT_*`` variables)."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="Path of the model bundle (model.segmint).")
    api_key: str | None = Field(
        None, description="Require this key in the X-API-Key header (all but /health)."
    )
    max_batch: int = Field(10_000, ge=1, description="Most customers in one /v1/predict call.")
    max_body_bytes: int = Field(
        20_000_000, ge=1_000, description="Largest request body accepted, in bytes."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (off when empty)."
    )


class ErrorBody(BaseModel):
    """The one error shape of every 4xx answer."""

    error: str = Field(description="Stable machine-readable code, e.g. invalid_request.")
    message: str = Field(description="What is wrong, naming the field.")
    hint: str | None = Field(None, description="How to fix it.")
    field: str | None = Field(None, description="The offending field, e.g. customer.monetary.")


_ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "Unreadable request body"},
    401: {"model": ErrorBody, "description": "Missing or wrong API key"},
    413: {"model": ErrorBody, "description": "Request body too large"},
    422: {"model": ErrorBody, "description": "Invalid input"},
}


def _error(status: int, code: str, message: str, hint: str | None = None, field: str | None = None):
    return JSONResponse(
        status_code=status,
        content={"error": code, "message": message, "hint": hint, "field": field},
    )


def _predict_response(model: SegmentModel, rows: list[Any], *, single: bool) -> Response:
    """Segments for validated request rows, as JSON encoded once.

    Models without categorical features take the NumPy-only path
    (:meth:`SegmentModel.assign_columns`: no DataFrame per request); the others go
    through :meth:`SegmentModel.assign`. Both give the same columns, turned into the
    same records here."""
    ids = [r.customer_id for r in rows]
    if all(i is None for i in ids):
        ids = [str(i) for i in range(len(rows))]
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
    conf = out["confidence"]
    records = [
        {
            "customer_id": ids[i],
            "segment_id": int(out["segment_id"][i]),
            "segment_name": out["segment_name"][i],
            "action": out["action"][i],
            "rfm_segment": rfm_segment[i] if rfm_segment is not None else None,
            "confidence": None if conf[i] != conf[i] else float(conf[i]),
            "distance": float(out["distance"][i]),
            "out_of_range": bool(out["out_of_range"][i]),
            "warnings": [
                f"{f} is outside the training range" for f in out["out_of_range_features"][i]
            ],
        }
        for i in range(len(rows))
    ]
    body = records[0] if single else {"results": records}
    return Response(json.dumps(body, separators=(",", ":")), media_type="application/json")


def _customer_model(model: SegmentModel, max_batch: int) -> tuple[type[BaseModel], type[BaseModel]]:
    """Pydantic models of one customer and of a predict request, from the bundle."""
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
                ge=0 if lo >= 0 else None,
                allow_inf_nan=False,
                description=f"training range {lo:g} to {hi:g}",
                json_schema_extra={"x-training-min": lo, "x-training-max": hi},
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
    customer_model, predict_model = _customer_model(model, settings.max_batch)
    meta = model.metadata
    app = FastAPI(
        title="segmint",
        version=__version__,
        description="Customer segments from a trained segmint model.",
        responses=_ERRORS,
    )
    app.state.model = model
    app.state.settings = settings
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
        )

    @app.middleware("http")
    async def guard(request: Request, call_next):  # noqa: ANN001 - starlette signature
        t0 = time.perf_counter()
        rid = request.headers.get("x-request-id", "")
        if not (0 < len(rid) <= 64 and rid.replace("-", "").isalnum()):
            rid = uuid.uuid4().hex
        path = request.url.path
        size = request.headers.get("content-length")
        if size is not None and (not size.isdigit() or int(size) > settings.max_body_bytes):
            response = _error(
                413,
                "body_too_large",
                f"the request body is larger than {settings.max_body_bytes:,} bytes",
                hint="send fewer customers per request",
            )
        elif (
            settings.api_key
            and path != "/health"
            and not path.startswith(("/docs", "/openapi.json", "/static", "/favicon"))
            and path != "/"
            and not secrets.compare_digest(request.headers.get("x-api-key", ""), settings.api_key)
        ):
            response = _error(
                401,
                "unauthorized",
                "missing or wrong API key",
                hint="send the key in the X-API-Key header",
                field="X-API-Key",
            )
        else:
            response = await call_next(request)
        response.headers["X-Request-ID"] = rid
        access_log.info(
            json.dumps(
                {
                    "request_id": rid,
                    "method": request.method,
                    "path": path,
                    "status": response.status_code,
                    "ms": round((time.perf_counter() - t0) * 1000, 2),
                }
            )
        )
        return response

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):  # noqa: ANN001
        err = exc.errors()[0]
        loc = [str(p) for p in err.get("loc", ()) if p != "body"]
        field = ".".join(loc) or None
        msg = str(err.get("msg", "invalid value")).removeprefix("Value error, ")
        return _error(
            422,
            "invalid_request",
            f"{field}: {msg}" if field else msg,
            hint="see /docs for the expected fields",
            field=field,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):  # noqa: ANN001
        response = _error(exc.status_code, "http_error", str(exc.detail))
        for key, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            response.headers[key] = value
        return response

    @app.exception_handler(SegmintError)
    async def segmint_error(request: Request, exc: SegmintError):  # noqa: ANN001
        return _error(422, exc.code, exc.message, exc.hint)

    static = Path(__file__).parent / "static"
    app.mount("/static", StaticFiles(directory=static), name="static")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        """The web page: predict, dashboard, score a file."""
        return FileResponse(static / "index.html")

    @app.get("/favicon.ico", include_in_schema=False)
    def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/health")
    def health() -> dict[str, Any]:
        """Liveness: the service runs and its model is loaded."""
        return {"status": "ok", "model_loaded": True, "version": __version__}

    @app.get("/v1/model")
    def model_info() -> dict[str, Any]:
        """The model: feature set, snapshot rule, training size, versions, features."""
        training = meta.get("training", {})
        return {
            "feature_set": meta.get("feature_set"),
            "feature_set_version": meta.get("feature_set_version"),
            "snapshot_rule": meta.get("snapshot_rule"),
            "snapshot_date": meta.get("snapshot_date"),
            "created_at": meta.get("created_at"),
            "training_customers": training.get("customers"),
            "feature_ranges": training.get("feature_ranges"),
            "features": model.features,
            "algorithm": meta.get("model", {}).get("algorithm"),
            "n_segments": meta.get("model", {}).get("n_segments"),
            "explanation": meta.get("model", {}).get("explanation"),
            "versions": meta.get("versions"),
            "max_batch": settings.max_batch,
        }

    @app.get("/v1/segments")
    def segments() -> dict[str, Any]:
        """Segment profiles with their names and suggested actions."""
        return {"segments": meta.get("profiles", []), "clv": meta.get("clv")}

    @app.post("/v1/predict")
    def predict(body: predict_model) -> dict[str, Any]:  # type: ignore[valid-type]
        """Segments for one customer or a batch."""
        rows = [body.customer] if body.customer is not None else body.customers
        return _predict_response(model, rows, single=body.customer is not None)

    @app.post(
        "/v1/score",
        responses={415: {"model": ErrorBody, "description": "Not a file type segmint reads"}},
    )
    async def score_file(
        file: Annotated[UploadFile, File(description="Transactions or a segmint feature table.")],
        format: Annotated[str, Query(pattern="^(csv|json)$", description="csv or json")] = "csv",
    ) -> Response:
        """Segments for every customer of an uploaded file (streamed back as CSV or JSON)."""
        import tempfile

        name = Path(file.filename or "upload.csv").name
        suffix = "".join(Path(name).suffixes[-2:]) or ".csv"
        if not suffix.lower().endswith(
            (".csv", ".gz", ".tsv", ".parquet", ".xlsx", ".xls", ".json", ".ndjson", ".txt")
        ):
            return _error(
                415,
                "unsupported_file",
                f"{name}: not a file type segmint reads",
                hint="upload CSV, TSV, Parquet, Excel or JSON",
                field="file",
            )
        folder = Path(tempfile.mkdtemp(prefix="segmint-upload-"))
        path = folder / f"upload{suffix}"
        written = 0
        try:
            with path.open("wb") as fh:
                while chunk := await file.read(1 << 20):
                    written += len(chunk)
                    if written > settings.max_body_bytes:
                        return _error(
                            413,
                            "body_too_large",
                            f"the file is larger than {settings.max_body_bytes:,} bytes",
                            field="file",
                        )
                    fh.write(chunk)
            if written == 0:
                return _error(422, "empty_file", f"{name}: the file is empty", field="file")
            try:
                # the engine work runs in a worker thread: the server keeps answering
                scored = await run_in_threadpool(model.score, str(path))
            except SegmintError as exc:
                message = exc.message.replace(str(path), name)
                return _error(422, exc.code, message, exc.hint, field="file")
        finally:
            import shutil

            shutil.rmtree(folder, ignore_errors=True)
        if format == "json":
            records = json.loads(scored.to_json(orient="records"))
            return JSONResponse({"results": records})

        def rows():
            yield scored.head(0).to_csv(index=False)
            for start in range(0, len(scored), 10_000):
                yield scored.iloc[start : start + 10_000].to_csv(index=False, header=False)

        return StreamingResponse(
            rows(),
            media_type="text/csv",
            headers={"Content-Disposition": 'attachment; filename="segments.csv"'},
        )

    return app


def create_app_from_env() -> FastAPI:
    """The app configured by ``SEGMINT_MODEL``, ``SEGMINT_API_KEY``, ``SEGMINT_MAX_BATCH``
    and ``SEGMINT_MAX_BODY_BYTES`` (used by ``segmint serve --workers N``)."""
    path = os.environ.get("SEGMINT_MODEL")
    if not path:
        raise ConfigError("SEGMINT_MODEL is not set", hint="segmint serve MODEL")
    values: dict[str, Any] = {"model": path, "api_key": os.environ.get("SEGMINT_API_KEY") or None}
    if os.environ.get("SEGMINT_MAX_BATCH"):
        values["max_batch"] = int(os.environ["SEGMINT_MAX_BATCH"])
    if os.environ.get("SEGMINT_MAX_BODY_BYTES"):
        values["max_body_bytes"] = int(os.environ["SEGMINT_MAX_BODY_BYTES"])
    if os.environ.get("SEGMINT_CORS_ORIGINS"):
        values["cors_origins"] = os.environ["SEGMINT_CORS_ORIGINS"].split(",")
    return create_app(ApiSettings(**values))
