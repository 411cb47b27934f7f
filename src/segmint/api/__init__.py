"""The segmentation service: a FastAPI app around one model bundle.

``create_app(ApiSettings(model=...))`` loads the bundle once and serves:

* ``GET /health``: liveness and whether the model is loaded (never needs the API key);
* ``GET /v1/model``: what the model is (feature set, snapshot rule, training size,
  versions, features and their training ranges);
* ``GET /v1/segments``: segment profiles, names and actions;
* ``POST /v1/predict``: one customer (``{"customer": {...}}``) or a batch
  (``{"customers": [...]}``, at most ``max_batch``) -> segment, name, action, classic
  RFM segment (training cut points), confidence, distance and out-of-range warnings.

Every field is validated by a pydantic model built from the bundle's features (types,
signs, no NaN or infinity, no unknown fields, sizes), so user input gets a 4xx with one
JSON error shape (``{"error", "message", "hint", "field"}``), never a 500. An optional
API key (``X-API-Key``) protects everything but ``/health``; every response carries an
``X-Request-ID`` and each request is logged as one structured line.
"""

from segmint.api.app import ApiSettings, create_app, create_app_from_env

__all__ = ["ApiSettings", "create_app", "create_app_from_env"]
