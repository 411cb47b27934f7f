"""Model bundles: one file with the fitted model and everything needed to score with it.

A bundle (``model.segmint``) is a zip archive with two members:

* ``model.skops``: the fitted :class:`~segmint.segment.Segmenter` (transform + model),
  saved with **skops**, never pickle. Loading lists the types in the file that skops does
  not trust by default and refuses the file unless each is one of the few classes a
  segmint model holds (:data:`_ALLOWED_TYPES`, exact names: never a whole module, since a
  module's *functions* can be called by a crafted file), so opening a bundle cannot run
  arbitrary code;
* ``metadata.json``: format name and version, the SHA-256 of ``model.skops`` and of the
  metadata itself (``metadata_sha256``, over its canonical JSON without that key), feature
  set and version, snapshot rule, cleaning and RFM settings (with the training cut points,
  so scoring uses the same RFM segments), segment names, actions and profiles, the
  selection table, a fingerprint of the training data, and library versions.

A changed byte in either member (a renamed segment, an edited rule, a damaged model) is
refused as tampered. The checksums catch damage and edits, not forgery: whoever can write
the file can recompute them; what makes opening any bundle safe is the type allow-list.
Bundles of format 1 (before ``metadata_sha256``) are still read, with the model's checksum
only and a warning; a ``metadata_sha256`` is checked whatever the version says.

Training data is never needed to score: :meth:`SegmentModel.score` runs the same cleaning
and features on new transactions (or reads a feature table) and assigns segments.
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import io
import json
import logging
import os
import re
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from segmint._tables import ACCEPTED, has_arrow_stream, to_arrow, to_frame
from segmint._text import count
from segmint.errors import BundleError, InputError, WrongTypeError
from segmint.features import FEATURE_SET, FEATURE_SET_VERSION, check_feature_set
from segmint.io import atomic_path

log = logging.getLogger(__name__)

__all__ = ["FORMAT", "FORMAT_VERSION", "SegmentModel", "load_model", "save_model"]

FORMAT = "segmint-model"
FORMAT_VERSION = 2
_KNOWN_VERSIONS = (1, 2)

#: Every type a segmint model holds beyond what skops trusts by default (scikit-learn's
#: estimators, NumPy arrays and dtypes). Exact names: a prefix such as ``sklearn.`` would
#: also admit functions, which a crafted file can have skops call while loading.
_ALLOWED_TYPES = frozenset(
    {
        "segmint.segment.segmenter.Segmenter",
        "segmint.segment.transforms.CustomerTransform",
        "segmint.segment.algorithms.NearestAssigner",
        "segmint.segment.algorithms.OpticsAssigner",
        "segmint.segment.algorithms.ReachabilityAssigner",
        # the nearest-neighbour index of the assigners (density and sampled models; a
        # NearestNeighbors in bundles saved before they kept the KDTree itself)
        "sklearn.neighbors._kd_tree.KDTree",
        "sklearn.neighbors._ball_tree.BallTree",
        "sklearn.metrics._dist_metrics.EuclideanDistance64",
    }
)


def _allowed(type_name: str) -> bool:
    return type_name in _ALLOWED_TYPES


#: Largest ``metadata.json`` a bundle may hold: a real one is tens of kilobytes.
_MAX_METADATA_BYTES = 64 * 2**20
#: Largest ``model.skops`` (and the sum of its own members): a nearest-neighbour index
#: over a large ``sample_size`` is hundreds of megabytes.
_MAX_MODEL_BYTES = 2 * 2**30
#: Above :data:`_RATIO_FROM` bytes, a member may unpack to at most this many times its
#: packed size. A model's JSON packs about 10 x and its arrays hardly at all; a zip
#: bomb packs 1000 x (3 MB of ``model.segmint`` unpacked to 3 GB and took 6.6 GB of
#: memory before the checksum refused it).
_MAX_RATIO = 100
_RATIO_FROM = 16 * 2**20


def _check_sizes(z: zipfile.ZipFile, limits: dict[str, int], where: str, what: str) -> None:
    """Refuse an archive whose members would unpack to more than ``limits`` allow
    (by name; ``"*"``: the sum of all members) or far more than their packed size,
    before anything is read: the sizes are those its directory declares, which
    :mod:`zipfile` never reads past."""
    infos = z.infolist()
    total = sum(i.file_size for i in infos)
    for info in infos:
        limit = limits.get(info.filename)
        too_big = limit is not None and info.file_size > limit
        packed = max(info.compress_size, 1)
        if too_big or (info.file_size > _RATIO_FROM and info.file_size > _MAX_RATIO * packed):
            raise BundleError(
                f"{where}: {what}{info.filename} unpacks to {info.file_size:,} bytes "
                f"from {info.compress_size:,}, more than a segmint model holds: the file "
                "was changed or damaged",
                hint="retrain with `segmint run`; never load model files from untrusted sources",
                code="tampered",
            )
    if "*" in limits and total > limits["*"]:
        raise BundleError(
            f"{where}: {what.rstrip('/ ')} unpacks to {total:,} bytes, more than a segmint "
            "model holds: the file was changed or damaged",
            hint="retrain with `segmint run`; never load model files from untrusted sources",
            code="tampered",
        )


def _lean(segmenter: Any) -> Any:
    """A copy without training-size arrays (labels, selection table) or timings: what
    scoring needs."""
    lean = copy.copy(segmenter)
    seed = getattr(segmenter, "random_state_", None)
    if seed is not None and not isinstance(segmenter.random_state, int | np.integer):
        # a numpy RandomState is neither JSON nor a type skops trusts at load: the model
        # keeps the seed the fit drew from it, which refits the same segments
        lean.random_state = seed
    lean.labels_ = None
    lean.selection_ = None
    # how long the fit took is not part of the model (it made two fits of the same data
    # differ; run.json keeps the timings)
    lean.fit_seconds_ = None
    if lean.assigner_ is not None:
        lean.model_ = None  # the nearest-neighbour assigner does the predicting
    elif hasattr(lean.model_, "labels_"):
        lean.model_ = copy.copy(lean.model_)
        lean.model_.labels_ = None
    return lean


def _versions() -> dict[str, str]:
    import platform

    import sklearn

    from segmint import __version__

    return {
        "segmint": __version__,
        "scikit-learn": sklearn.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
        "python": platform.python_version(),
    }


def _metadata_digest(meta: dict[str, Any]) -> str:
    """SHA-256 of the metadata's canonical JSON (sorted keys), without metadata_sha256."""
    body = {k: v for k, v in meta.items() if k != "metadata_sha256"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_SKOPS_IDS = re.compile(r'("__id__": |"file": ")(\d+)')


def _content_id(model_bytes: bytes) -> str:
    """SHA-256 of what the fitted model is, not of how skops laid it out: skops names
    its members and ``__id__`` fields after Python object ids, so two fits of the same
    data and seed gave different bytes, and a nightly retrain on unchanged data changed
    ``model_id`` (every row of a ``--write-to`` table was "updated"). The ids are
    numbered in order of appearance and each member is hashed by its content."""
    with zipfile.ZipFile(io.BytesIO(model_bytes)) as z:
        blobs = {name: z.read(name) for name in z.namelist()}
    schema = blobs.pop("schema.json", b"").decode("utf-8")
    order: dict[str, str] = {}
    schema = _SKOPS_IDS.sub(
        lambda m: m.group(1) + order.setdefault(m.group(2), str(len(order))), schema
    )
    h = hashlib.sha256(schema.encode("utf-8"))
    for name in sorted(blobs, key=lambda n: order.get(n.split(".")[0], n)):
        h.update(order.get(name.split(".")[0], name).encode())
        h.update(hashlib.sha256(blobs[name]).digest())
    return h.hexdigest()


def save_model(segmenter: Any, path: str | Path, metadata: dict[str, Any]) -> Path:
    """Write a bundle (see the module docstring) atomically; returns its path."""
    import skops.io as sio

    if not hasattr(segmenter, "model_"):
        # an AttributeError ('Segmenter' object has no attribute 'assigner_') otherwise
        raise WrongTypeError(
            f"save_model takes a fitted Segmenter, and this {type(segmenter).__name__} is "
            "not fitted",
            hint="call segmenter.fit(customers) first (or save the model of segmint.run)",
        )
    model_bytes = sio.dumps(_lean(segmenter))
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created_at": metadata.pop("created_at", None)
        or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "model_sha256": hashlib.sha256(model_bytes).hexdigest(),
        "model_content_sha256": _content_id(model_bytes),
        "feature_set": FEATURE_SET,
        "feature_set_version": FEATURE_SET_VERSION,
        "versions": _versions(),
        **metadata,
    }
    meta["metadata_sha256"] = _metadata_digest(meta)
    with atomic_path(path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as z:
            z.writestr("metadata.json", json.dumps(meta, indent=2, allow_nan=False))
            z.writestr("model.skops", model_bytes)
    return Path(path)


class SegmentModel:
    """A loaded bundle: assign segments to new customers without the training data.

    Attributes
    ----------
    segmenter : Segmenter
        The fitted transform and model.
    metadata : dict
        Everything stored beside the model (names, actions, profiles, selection, ...).
    """

    def __init__(self, segmenter: Any, metadata: dict[str, Any], path: str | None = None):
        self.segmenter = segmenter
        self.metadata = metadata
        self.path = path

    def __repr__(self) -> str:
        """The file, the model and its features (the default was only the address)."""
        from segmint.segment.segmenter import _NAMES

        seg = self.segmenter
        algorithm = getattr(seg, "algorithm_", None)
        try:
            features = ", ".join(self.features)
        except AttributeError:  # a segmenter without a fitted transform
            features = "?"
        return (
            f"<SegmentModel {self.path!r}: {_NAMES.get(str(algorithm), algorithm)}, "
            f"{getattr(seg, 'n_segments_', '?')} segments on {features}>"
        )

    @property
    def names(self) -> dict[int, str]:
        """Segment id -> name, every segment named ("Segment 3" when the bundle has no
        name for it), and ``-1`` (unassigned) whenever the model can give it: DBSCAN
        trained with every customer in a segment still leaves a new customer farther than
        ``eps`` from every core customer unassigned, who was scored with no name and no
        action (and broke the API's answer schema)."""
        from segmint.profile import NOISE_NAME

        names = {int(k): v for k, v in self.metadata.get("segment_names", {}).items()}
        if self._may_leave_unassigned():
            names.setdefault(-1, NOISE_NAME)
        # a bundle saved from Python without names (``save_model(seg, path, {})``): the
        # neutral names a table without RFM features gets, never none
        for i in range(int(getattr(self.segmenter, "n_segments_", 0))):
            names.setdefault(i, f"Segment {i + 1}")
        return names

    @property
    def actions(self) -> dict[int, str]:
        """Segment id -> suggested action (``-1`` as for :attr:`names`)."""
        from segmint.profile import ACTIONS, NOISE_NAME

        actions = {int(k): v for k, v in self.metadata.get("segment_actions", {}).items()}
        if self._may_leave_unassigned():
            actions.setdefault(-1, ACTIONS[NOISE_NAME][0])
        for i in range(int(getattr(self.segmenter, "n_segments_", 0))):
            actions.setdefault(i, "No action set: the model was saved without actions")
        return actions

    def _may_leave_unassigned(self) -> bool:
        """Whether scoring can give segment ``-1``: the training left customers
        unassigned, or the model assigns within a reach (DBSCAN's ``eps``, HDBSCAN's
        mutual reachability)."""
        seg = self.segmenter
        assigner = getattr(seg, "assigner_", None)
        return bool(getattr(seg, "has_noise_", False)) or bool(
            getattr(assigner, "may_leave_unassigned", False)
        )

    def load_config(self, data: Any = None) -> Any:
        """How the training data was read (:class:`~segmint.config.LoadConfig`: mapping,
        date layout, encoding, ...), the default for reading ``data``. The training
        workbook's sheet applies only when ``data`` is an Excel file too (a later
        workbook of the same layout); a CSV has no sheet."""
        from segmint.config import LoadConfig
        from segmint.io import detect_format

        stored = dict(self.metadata.get("load", {}))
        try:
            excel = isinstance(data, str | Path) and detect_format(data)[0] == "excel"
        except InputError:  # not a file ending segmint knows: the reader will say so
            excel = False
        if not excel:
            stored.pop("sheet", None)
            stored.pop("all_sheets", None)
        return LoadConfig.model_validate(stored)

    @property
    def model_id(self) -> str:
        """A short id of the fitted model (16 hex digits of the SHA-256 of its content),
        stored beside assignments written to a database so a reader knows which model
        made them: the same data, options and seed give the same id. (Bundles written
        before the content hash: of the model file's bytes.)"""
        key = self.metadata.get("model_content_sha256") or self.metadata.get("model_sha256")
        return str(key or "")[:16]

    @property
    def features(self) -> list[str]:
        """The features the model segments on."""
        return list(self.segmenter.transform_.features_) + list(
            self.segmenter.transform_.categorical_
        )

    def predict(self, customers: Any) -> np.ndarray:
        """Segment id per customer (features table rows; a pandas DataFrame or any table
        with the Arrow stream interface). No customers: an empty array, as :meth:`assign`
        gives an empty table (scikit-learn refuses an array of 0 rows)."""
        frame = to_frame(customers, "SegmentModel.predict")
        if frame is not None and len(frame) == 0:
            return np.zeros(0, dtype=np.int64)
        return self.segmenter.predict(customers if frame is None else frame)

    def assign(self, customers: Any, rfm: pd.DataFrame | None = None) -> pd.DataFrame:
        """Assignments: ``customer_id, segment_id, segment_name, action``, with ``rfm``
        (:meth:`rfm`) ``rfm_score, rfm_segment, rfm_rule_set``, then ``confidence,
        distance, out_of_range, out_of_range_features``.

        ``customers`` is a feature table: a pandas DataFrame or any table with the
        Arrow stream interface (polars, pyarrow, a DuckDB relation). ``out_of_range``
        flags customers with a feature outside the training range (their segment is an
        extrapolation); ``out_of_range_features`` names those features.
        """
        frame = to_frame(customers, "SegmentModel.assign")
        if frame is None:
            raise WrongTypeError(
                f"SegmentModel.assign takes a customer table ({ACCEPTED}), not a "
                f"{type(customers).__module__}.{type(customers).__qualname__}",
                hint="pass segmint.features.customer_features(...).to_pandas()",
            )
        customers = frame
        if len(customers) == 0:  # scikit-learn refuses an empty array: nothing to assign
            cols = ["customer_id", "segment_id", "segment_name", "action"]
            cols += ["rfm_score", "rfm_segment", "rfm_rule_set"] if rfm is not None else []
            cols += ["confidence", "distance", "out_of_range", "out_of_range_features"]
            return pd.DataFrame({c: pd.Series(dtype=object) for c in cols})
        details = self.segmenter.predict_details(customers)
        flags = self.segmenter.transform_.out_of_range(customers)
        names, actions = self.names, self.actions
        out = pd.DataFrame(
            {
                "customer_id": (
                    customers["customer_id"].to_numpy()
                    if "customer_id" in customers.columns
                    else np.arange(len(customers)).astype(str)
                ),
                "segment_id": details["segment_id"].to_numpy(),
            }
        )
        out["segment_name"] = out["segment_id"].map(names)
        out["action"] = out["segment_id"].map(actions)
        if rfm is not None:
            out["rfm_score"] = rfm["rfm_score"].to_numpy()
            out["rfm_segment"] = rfm["rfm_segment"].to_numpy()
            # which rule set named them (a table from an older segmint.rfm.score: the
            # model's own)
            out["rfm_rule_set"] = (
                rfm["rfm_rule_set"].to_numpy() if "rfm_rule_set" in rfm else self.rfm_rule_set
            )
        out["confidence"] = details["confidence"].to_numpy()
        out["distance"] = details["distance"].to_numpy()
        out["out_of_range"] = flags.any(axis=1).to_numpy()
        cols = np.array(flags.columns)
        matrix = flags.to_numpy()
        names_out = np.full(len(out), "", dtype=object)
        for i in np.flatnonzero(matrix.any(axis=1)):  # only the flagged rows need a string
            names_out[i] = ",".join(cols[matrix[i]])
        out["out_of_range_features"] = names_out
        return out

    @property
    def numeric_only(self) -> bool:
        """True when the model has no categorical features (the NumPy fast path applies)."""
        return not list(self.segmenter.transform_.categorical_)

    def assign_columns(self, columns: dict[str, Any], ids: Any) -> dict[str, Any]:
        """The NumPy-only version of :meth:`assign` for a service: ``columns`` maps each
        numeric feature (and, for RFM, ``recency_days``, ``frequency``, ``monetary``) to
        an array of finite values. Same results as :meth:`assign`, a fraction of the time
        on small requests (no DataFrame is built). Returns arrays / lists by column."""
        tf = self.segmenter.transform_
        block = np.column_stack([np.asarray(columns[f], dtype=float) for f in tf.features_])
        Z = tf.transform_numeric(block)
        # a value tier is decided on raw monetary (always a feature of such a model)
        money = block[:, tf.features_.index("monetary")] if "monetary" in tf.features_ else None
        labels, distance, confidence = self.segmenter.details_from_matrix(Z, money)
        flags = tf.out_of_range_numeric(block)
        names, actions = self.names, self.actions
        out: dict[str, Any] = {
            "customer_id": list(ids),
            "segment_id": labels,
            "segment_name": [names.get(int(i)) for i in labels],
            "action": [actions.get(int(i)) for i in labels],
            "confidence": confidence,
            "distance": distance,
            "out_of_range": flags.any(axis=1),
            "out_of_range_features": [
                [f for f, bad in zip(tf.features_, row, strict=True) if bad] if row.any() else []
                for row in flags
            ],
        }
        rfm = self._rfm_arrays(columns)
        if rfm is not None:
            out["rfm_score"], out["rfm_segment"] = rfm
            out["rfm_rule_set"] = [self.rfm_rule_set] * len(out["customer_id"])
        return out

    @property
    def rfm_rule_set(self) -> str | None:
        """The label of the rule set that names this model's RFM segments (``rf-grid
        v1``, ``mine v2``, ``mine (user table)``), as every output beside
        ``rfm_segment`` gives it; None when the model has no RFM settings."""
        from segmint.rfm import rule_set_label

        info = self.metadata.get("rfm")
        if not info:
            return None
        return rule_set_label(info.get("rule_set"), info.get("rule_set_version"))

    def _rfm_arrays(self, columns: dict[str, Any]) -> tuple[list[str], list[str]] | None:
        from segmint.rfm import _METRICS, score_values

        info = self.metadata.get("rfm")
        if not info or not all(c in columns for c in _METRICS.values()):
            return None
        rules = self._rule_set(info)
        scores = []
        for letter, col in _METRICS.items():
            cut = info["cut_points"][col]
            scores.append(
                score_values(
                    np.asarray(columns[col], dtype=float),
                    cut["thresholds"],
                    lower_is_better=bool(cut.get("lower_is_better", letter == "r")),
                )
            )
        r, f, m = scores
        cells = [f"{a}{b}{c}" for a, b, c in zip(r, f, m, strict=True)]
        return cells, list(rules.assign(r, f, m))

    def score(
        self,
        data: Any,
        *,
        snapshot_date: str | None = None,
        load: Any = None,
        con: Any = None,
        progress: Any = None,
    ) -> pd.DataFrame:
        """Assign segments to the customers of a transactions file or a feature table.

        Transactions (or a customer-level table such as FLO) go through the cleaning
        and features the model was trained with (snapshot given, or the day after the
        last purchase in the new data); a feature table written by segmint is read as it
        is, after checking its feature set. RFM segments use the training cut points.
        """
        from segmint.config import CleanConfig, LoadConfig
        from segmint.engines import is_database_url, mask_url
        from segmint.features import customer_features, read_features, returns_left_out_note

        if isinstance(load, dict):  # as segmint.run takes its sections
            from pydantic import ValidationError

            from segmint.config import validation_error

            try:
                load = LoadConfig.model_validate(load)
            except ValidationError as exc:
                raise validation_error(exc, "load") from None
        elif load is not None and not isinstance(load, LoadConfig):
            raise WrongTypeError(
                f"load is a {type(load).__name__}, not a LoadConfig or a dict",
                hint='e.g. model.score("sales.csv", load={"columns": {"customer_id": "Kunde"}})',
            )
        from segmint.mysql import is_mysql_url
        from segmint.pipeline import prepare

        url = is_database_url(data) or is_mysql_url(data)
        if not isinstance(data, str | os.PathLike | pd.DataFrame) and has_arrow_stream(data):
            data = to_arrow(data, "SegmentModel.score")  # polars, DuckDB, pyarrow: once
        if isinstance(data, str | os.PathLike):
            where = mask_url(str(data)) if url else str(data)
        else:
            where = "<dataframe>"  # str() of a table printed all of it into each message
        path = Path(data) if isinstance(data, str | Path) and not url else None
        frame: pd.DataFrame
        audit = None
        left_out = None
        from_table = path is not None and _is_feature_table(path)
        if from_table:
            frame, meta = read_features(path)
        else:
            clean_cfg = CleanConfig.model_validate(self.metadata.get("clean", {}))
            load_cfg = load or self.load_config(data)
            prepared = prepare(
                data, load=load_cfg, clean_config=clean_cfg, con=con, progress=progress
            )
            if progress:
                progress("computing customer features")
            window = self.metadata.get("window")
            feats = customer_features(prepared.cleaned, snapshot_date=snapshot_date, window=window)
            meta = feats.metadata()
            audit = prepared.cleaned.audit
            check_feature_set(meta, where)
            frame = feats.to_pandas()
            # customers with returns only (no purchase before the snapshot) get no row:
            # `run` said so, `score` dropped them without a word
            left_out = returns_left_out_note(feats.returns_left_out(), feats.snapshot_date)
        frame = frame.sort_values("customer_id", kind="stable").reset_index(drop=True)
        missing = [c for c in self.features if c not in frame.columns]
        if missing:
            raise InputError(
                f"{where}: the model needs feature(s) {missing}, which these data do not have",
                hint=_missing_features_hint(missing),
                code="feature_mismatch",
            )
        if progress:
            progress(f"assigning {len(frame):,} customers")
        rfm = self.rfm(frame)
        out = self.assign(frame, rfm)
        out.attrs["snapshot_date"] = (meta or {}).get("snapshot_date")
        out.attrs["notes"] = self._score_notes(frame, (meta or {}).get("kind"), out, where)
        if from_table and _window_days(meta.get("window")) != _window_days(
            self.metadata.get("window")
        ):
            # a feature table is read as it is: one built over another period has other
            # frequencies and amounts than the model was fitted on, and said nothing
            def _period(w: Any) -> str:
                return f"a {w} window" if w else "all history"

            out.attrs["notes"].insert(
                0,
                f"{where}: its features were computed over {_period(meta.get('window'))}, "
                f"the model's over {_period(self.metadata.get('window'))}, so frequency and "
                "monetary measure another period and the segments may not mean the same; "
                "compute the table with the model's window, or score the transactions",
            )
        if audit is not None and audit.kind == "customers" and audit.dropped_rows:
            out.attrs["notes"].insert(0, _left_out_note(audit, where))
        if left_out:
            out.attrs["notes"].insert(0, f"{where}: {left_out}")
        for note in out.attrs["notes"]:
            log.warning("%s", note)
        return out

    def traceable(self, assigned: pd.DataFrame) -> pd.DataFrame:
        """``assigned`` (from :meth:`score`) with the snapshot date and this model's id on
        every row, as ``segmint score --out`` and ``/v1/score`` write them: a file of
        scores says which model and which date it comes from (the date was only in
        pandas attrs, lost in the file)."""
        snapshot = assigned.attrs.get("snapshot_date")
        out = assigned.assign(
            snapshot_date=pd.to_datetime(snapshot).date() if snapshot else None,
            model_id=self.model_id,
        )
        out.attrs = dict(assigned.attrs)
        return out

    def _score_notes(
        self, frame: pd.DataFrame, kind: str | None, out: pd.DataFrame, where: str
    ) -> list[str]:
        """Warnings on data unlike the training data: another kind of table, a much
        shorter history, many customers outside the training ranges. (Scoring a month of
        lines with a model trained on a year turned 222 of 227 Champions into other
        segments without a word: features come from the file alone.)"""
        from segmint.features import parse_window
        from segmint.pipeline import _history_days

        notes = []
        trained_kind = self.metadata.get("kind")
        if kind and trained_kind and kind != trained_kind:
            what = {"transactions": "transaction lines", "customers": "a customer-level table"}
            notes.append(
                f"{where}: the model was trained on {what.get(trained_kind, trained_kind)}, "
                f"these data are {what.get(kind, kind)}; their features are built "
                "differently, so the segments may not mean the same"
            )
        window = self.metadata.get("window")
        trained_days = (self.metadata.get("training") or {}).get("history_days")
        if window:
            # the model needs the window's history, or the training history if that was
            # shorter (a 12M model trained on 2 months warned on its own training file)
            snap = dt.date(2000, 1, 1)
            window_days = (snap - parse_window(window, snap)).days
            trained_days = min(window_days, trained_days) if trained_days else window_days
        days = _history_days(frame)
        if trained_days and days is not None and days < 0.5 * trained_days:
            notes.append(
                f"{where} covers {count(days, 'day')} of history, the model was trained on "
                f"{count(trained_days, 'day')}: features are computed from these data alone, so "
                "customers look newer and smaller than at training; score each customer's "
                "full history (all their lines up to the scoring date)"
            )
        share = float(out["out_of_range"].mean()) if len(out) else 0.0
        if share > 0.25:
            notes.append(
                f"{share:.0%} of the customers have a feature outside the training range: "
                "are these data of the same shop, currency and period length as the "
                "training data?"
            )
        return notes

    def rfm(self, frame: pd.DataFrame) -> pd.DataFrame | None:
        """Classic RFM scores and segments with the training cut points (None when the
        model has no RFM settings or the table lacks recency, frequency or monetary)."""
        from segmint.rfm import score as rfm_score

        info = self.metadata.get("rfm")
        if not info or not {"recency_days", "frequency", "monetary"} <= set(frame.columns):
            return None
        thresholds = {m: c["thresholds"] for m, c in info["cut_points"].items()}
        res = rfm_score(frame, rule_set=self._rule_set(info), method="fixed", thresholds=thresholds)
        return res.table

    def _rule_set(self, info: dict[str, Any]) -> Any:
        """The RFM rule set, loaded once (a service scores many small requests)."""
        cached = getattr(self, "_rules", None)
        if cached is not None:
            return cached
        from segmint.rfm import load_rule_set

        if info.get("rule_set_text"):
            import tempfile

            from segmint.errors import ConfigError

            # part of a file name segmint creates: never more than the two endings it
            # writes (300 letters were an OSError, "/" a path under the temporary folder)
            suffix = info.get("rule_set_suffix") or ".toml"
            if suffix not in (".toml", ".csv"):
                raise ValueError(f"rule_set_suffix {suffix[:40]!r} is neither '.toml' nor '.csv'")
            with tempfile.NamedTemporaryFile("w", suffix=suffix, delete=False) as fh:
                fh.write(info["rule_set_text"])
            try:
                # under the name it was trained with, not the temporary file's (the
                # warnings and every rfm_rule_set of the scores read "tmpk3x9_")
                rules = load_rule_set(fh.name, name=info.get("rule_set") or None)
            except ConfigError as exc:  # name the table, not the temporary file
                message = exc.message.replace(fh.name, "the rule table stored in the bundle")
                raise ConfigError(message, hint=exc.hint, code=exc.code) from None
            finally:
                Path(fh.name).unlink(missing_ok=True)
        else:
            rules = load_rule_set(info["rule_set"])
        self._rules = rules
        return rules


def _left_out_note(audit: Any, where: str) -> str:
    """The note for rows of a customer-level table that cleaning left out: each is a
    customer without a segment in the answer (a repeated customer id's second row was
    dropped without a word: 5 rows in, 4 results out)."""
    reasons = "; ".join(f"{count(r.dropped, 'row')}: {r.reason}" for r in audit.rules if r.dropped)
    return (
        f"{where}: {count(audit.dropped_rows, 'row')} of {audit.input_rows:,} left out by "
        f"cleaning and not scored ({reasons}); `segmint clean FILE --rejected "
        "rejected.csv` lists them"
    )


def lifetime_value_features_hint(names: list[str]) -> str:
    """Why a model segmented on lifetime value columns cannot score other data or other
    dates: those columns come from the BG/NBD and Gamma-Gamma fit of the training run,
    which is not part of the model."""
    return (
        f"lifetime value ({', '.join(names)}) is fitted in the training run and not "
        "recomputed for other data or dates: train the model you score or migrate with "
        "on customer features only, e.g. --features recency_days,frequency,monetary"
    )


def _missing_features_hint(missing: list[str]) -> str:
    """How to give the features a model needs: a feature such as ``country`` comes from a
    column of the data (often just named otherwise), not from the kind of table."""
    from segmint.clv import CLV_COLUMNS

    clv = [name for name in missing if name in CLV_COLUMNS]
    if clv:
        return lifetime_value_features_hint(clv)
    columns = []
    for name in missing:
        if name == "country":
            columns.append("country")
        elif name.startswith("channel_share_"):
            columns.append("channel")
        elif name.startswith("category_share_"):
            columns.append("category")
    if not columns:
        return "score data of the same kind (transactions or customer table) as the training data"
    needed = ", ".join(dict.fromkeys(columns))
    first = columns[0]
    return (
        f"the model was trained on data with a {needed} column: score data that have it "
        f"(if it is named otherwise, map it: --map {first}=<column>), or train a model "
        "without it"
    )


def _window_days(window: str | None) -> int | None:
    """A window's length in days (12M and 1Y are the same), None for all history."""
    from segmint.features import parse_window

    if not window:
        return None
    snap = dt.date(2000, 1, 1)
    return (snap - parse_window(window, snap)).days


def _is_feature_table(path: Path) -> bool:
    """Whether ``path`` is a feature table written by segmint (Parquet with our metadata,
    or a CSV with its ``.meta.json``)."""
    name = path.name.lower()
    if name.endswith((".parquet", ".pq")) and path.is_file():
        import pyarrow.parquet as pq

        try:
            meta = pq.read_schema(path).metadata or {}
        except Exception:  # noqa: BLE001 - not a readable Parquet: let the loader explain
            return False
        return any(k.startswith(b"segmint") for k in meta)
    return path.with_name(path.name + ".meta.json").is_file()


def load_model(path: str | Path) -> SegmentModel:
    """Open a bundle, checking its format, version, checksum and the types inside.

    ``path`` is a ``model.segmint`` file or a run folder holding one.

    Raises
    ------
    BundleError
        Missing file, not a segmint bundle, newer format, tampered or corrupted content,
        or types that are not allowed.
    """
    import skops.io as sio

    if not isinstance(path, str | os.PathLike):
        raise WrongTypeError(
            f"load_model takes the path of a model.segmint or a run folder, not a "
            f"{type(path).__name__}",
            hint='e.g. segmint.load_model("my-run/model.segmint")',
        )
    p = Path(path)
    if p.is_dir():  # a run folder: its model
        if not (p / "model.segmint").is_file():
            raise BundleError(
                f"{path}: is a folder without a model.segmint",
                hint="give a run folder written by `segmint run`, or the path of its model.segmint",
            )
        p = p / "model.segmint"
    if not p.is_file():
        raise BundleError(f"{path}: no such model file", hint="give the path of model.segmint")
    try:
        with zipfile.ZipFile(p) as z:
            names = set(z.namelist())
            if not {"metadata.json", "model.skops"} <= names:
                raise BundleError(
                    f"{path}: not a segmint model bundle (it has no metadata.json/model.skops)",
                    hint="use the model.segmint file written by `segmint run`",
                    code="foreign_bundle",
                )
            _check_sizes(
                z,
                {"metadata.json": _MAX_METADATA_BYTES, "model.skops": _MAX_MODEL_BYTES},
                str(path),
                "",
            )
            meta = json.loads(z.read("metadata.json"))
            model_bytes = z.read("model.skops")
    except zipfile.BadZipFile:
        raise BundleError(
            f"{path}: not a segmint model bundle (not a zip archive)",
            hint="use the model.segmint file written by `segmint run` (or its run folder); "
            "the model comes first, then the data (`segmint score MODEL DATA`)",
            code="foreign_bundle",
        ) from None
    except (ValueError, RecursionError, zipfile.LargeZipFile, OSError) as exc:
        # ValueError: bad JSON or UTF-8, and an integer of thousands of digits;
        # RecursionError: JSON nested too deeply
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise BundleError(f"{path}: the bundle is damaged ({reason})", code="tampered") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise BundleError(
            f"{path}: not a segmint model bundle (format {meta.get('format')!r})"
            if isinstance(meta, dict)
            else f"{path}: not a segmint model bundle",
            code="foreign_bundle",
        )
    version = meta.get("format_version")
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {version} is newer than this segmint reads "
            f"({FORMAT_VERSION})",
            hint="upgrade segmint",
            code="bundle_version",
        )
    if type(version) is not int or version not in _KNOWN_VERSIONS:
        raise BundleError(
            f"{path}: metadata.json has format_version {version!r}, which no segmint wrote "
            f"(known: {', '.join(map(str, _KNOWN_VERSIONS))}): the file was changed or damaged",
            hint="retrain with `segmint run`; never load model files from untrusted sources",
            code="tampered",
        )
    try:
        digest = _metadata_digest(meta)
    except ValueError:  # NaN or infinity: never written by save_model
        digest = None
    # checked whenever present: a bundle edited by hand with its format_version set back
    # to 1 (which had no metadata checksum) was read with the edit
    if (version >= 2 or "metadata_sha256" in meta) and meta.get("metadata_sha256") != digest:
        raise BundleError(
            f"{path}: metadata.json does not match its checksum: the file was changed or damaged",
            hint="retrain with `segmint run` (rename segments with --name); never load model "
            "files from untrusted sources",
            code="tampered",
        )
    if version == 1:
        log.warning(
            "%s: a bundle of format 1, from before segmint checked its metadata: an edit "
            "to its names, actions or settings cannot be detected; retrain with `segmint "
            "run` (or save it again) to get format %d",
            path,
            FORMAT_VERSION,
        )
    if hashlib.sha256(model_bytes).hexdigest() != meta.get("model_sha256"):
        raise BundleError(
            f"{path}: the model does not match its checksum: the file was changed or damaged",
            hint="retrain with `segmint run`; never load model files from untrusted sources",
            code="tampered",
        )
    try:
        # model.skops is a zip too: its members are measured before skops reads them
        with zipfile.ZipFile(io.BytesIO(model_bytes)) as inner:
            _check_sizes(inner, {"*": _MAX_MODEL_BYTES}, str(path), "model.skops/")
    except zipfile.BadZipFile:
        raise BundleError(
            f"{path}: the model cannot be read (not a skops file)", code="tampered"
        ) from None
    try:
        types = sio.get_untrusted_types(data=model_bytes)
    except Exception as exc:  # noqa: BLE001 - any parse failure means a bad file
        raise _unreadable(path, exc) from None
    refused = sorted(t for t in types if not _allowed(t))
    if refused:
        raise BundleError(
            f"{path}: the model contains types that are not allowed: {', '.join(refused)}",
            hint="only segmint models trained with `segmint run` can be loaded",
            code="untrusted_types",
        )
    try:
        segmenter = sio.loads(model_bytes, trusted=list(types))
    except Exception as exc:  # noqa: BLE001
        raise _unreadable(path, exc) from None
    if type(segmenter).__name__ != "Segmenter":
        raise BundleError(
            f"{path}: the bundle does not hold a segmint model", code="foreign_bundle"
        )
    check = {
        "feature_set": meta.get("feature_set"),
        "feature_set_version": meta.get("feature_set_version"),
    }
    try:
        check_feature_set(check, str(path))
    except InputError as exc:
        # the model's features cannot be rebuilt by the user: the model must be retrained
        raise BundleError(
            exc.message.replace(": was built with", ": was trained on", 1),
            hint="train the model again with this version of segmint (`segmint run` on "
            "the transactions), then score or serve the new model.segmint",
            code="feature_set_mismatch",
        ) from None
    model = SegmentModel(segmenter, meta, str(p))
    _check_metadata(model, path)
    return model


def _unreadable(path: Any, exc: BaseException) -> BundleError:
    """The error for a model.skops skops cannot read; a KeyError's text alone was
    "'key_types'", so it says which entry is missing."""
    reason = (
        f"its schema lacks the entry {exc}"
        if isinstance(exc, KeyError)
        else str(exc) or type(exc).__name__
    )
    return BundleError(
        f"{path}: the model cannot be read ({reason}): the file was changed or damaged",
        hint="retrain with `segmint run`; never load model files from untrusted sources",
        code="tampered",
    )


def _check_load(load: Any) -> None:
    """Refuse stored reading options that say *where* data lives (engine, Spark master,
    database table or query): segmint never stores them (the scorer names its own
    source), and scoring used them as if the user had typed them, so a bundle from
    elsewhere could send the user's transactions to a Spark master of its choosing or
    run its own query on the user's database."""
    where = {
        "engine": load.engine != "duckdb",
        "spark_master": load.spark_master is not None,
        "table": load.table is not None,
        "query": load.query is not None,
    }
    given = [name for name, set_ in where.items() if set_]
    if given:
        raise ValueError(
            f"it names where to read data ({', '.join(given)}), which segmint never stores"
        )


def _check_metadata(model: SegmentModel, path: str | Path) -> None:
    """Read every metadata entry scoring uses, so a malformed one is refused at load
    with its key named instead of failing later with an internal error. A rule set is
    a shipped name or stored text, never a path: a bundle must not make segmint read
    files on the machine that loads it."""
    from pydantic import ValidationError

    from segmint.config import CleanConfig, LoadConfig
    from segmint.errors import ConfigError
    from segmint.features import parse_window
    from segmint.rfm import RULE_SETS, _check_thresholds

    meta = model.metadata

    def names() -> None:
        for values in (model.names, model.actions):
            if not all(isinstance(v, str) or v is None for v in values.values()):
                raise ValueError("values must be text")

    def rfm() -> None:
        info = meta.get("rfm")
        if info is None:
            return
        if not isinstance(info, dict):
            raise ValueError("must be an object")
        if not info.get("rule_set_text") and info.get("rule_set") not in RULE_SETS:
            raise ValueError(
                f"rule_set {info.get('rule_set')!r} is not a shipped rule set and no rule "
                "table is stored"
            )
        for col, cut in info["cut_points"].items():
            values = [None if v is None else float(v) for v in cut["thresholds"]]
            if col not in ("recency_days", "frequency", "monetary") or len(values) != 4:
                raise ValueError(f"cut points of {col!r} are not 4 thresholds of R, F or M")
            lower = cut.get("lower_is_better", col == "recency_days")
            if not isinstance(lower, bool):
                raise ValueError(f"lower_is_better of {col!r} is not true or false")
            # as `segmint score` checks them (increasing, or decreasing for recency):
            # the service's fast path scores with the cut points as they are
            _check_thresholds({col: values}, col, lower)
        model._rule_set(info)

    def an_object(key: str) -> None:
        # read with .get() by scoring and by the service's /v1/model
        if not isinstance(meta.get(key, {}), dict):
            raise ValueError("must be an object")

    checks = {
        "segment_names": names,
        "clean": lambda: CleanConfig.model_validate(meta.get("clean", {})),
        "load": lambda: _check_load(LoadConfig.model_validate(meta.get("load", {}))),
        "window": lambda: (
            meta.get("window") is None or parse_window(meta["window"], dt.date(2000, 1, 1))
        ),
        "rfm": rfm,
        "training": lambda: an_object("training"),
        "model": lambda: an_object("model"),
    }
    for key, check in checks.items():
        try:
            check()
        except (
            AttributeError,
            TypeError,
            ValueError,
            KeyError,
            OverflowError,
            ConfigError,
        ) as exc:
            if isinstance(exc, ValidationError):
                detail = exc.errors()[0]["msg"]
            else:  # a ConfigError's message without its hint (str() has both)
                detail = exc.message if isinstance(exc, ConfigError) else str(exc)
            raise BundleError(
                f"{path}: metadata.json entry {key!r} is not valid ({detail}): the file was "
                "changed or damaged",
                hint="retrain with `segmint run`; never load model files from untrusted sources",
                code="tampered",
            ) from None
