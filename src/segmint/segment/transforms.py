"""The feature transform of a segmentation: select, log, winsorise, scale, encode, reduce.

One fitted object (:class:`CustomerTransform`) holds every step, so new customers go
through exactly the transform the model was trained on. The numeric steps are written
here rather than as a scikit-learn ``ColumnTransformer`` because two of them depend on the
data at fit time in ways the stock transformers do not offer: the *automatic* choice of
which features to log (by skewness) and winsorising at percentiles learnt on the
training data. Scalers, encoders and PCA are scikit-learn's own.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import skew
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.decomposition import PCA
from sklearn.preprocessing import (
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    QuantileTransformer,
    RobustScaler,
    StandardScaler,
)
from sklearn.utils.validation import check_is_fitted

from segmint._tables import has_arrow_stream, to_frame
from segmint.errors import ConfigError, DataQualityError

__all__ = [
    "DEFAULT_FEATURES",
    "SCALERS",
    "CustomerTransform",
    "as_frame",
    "default_features",
    "signed_log1p",
]

#: Features used when none are named, in this order, when the table has them: the RFM
#: triple plus tenure (how long the customer has been buying), which separates new from
#: established customers that RFM alone confuses.
DEFAULT_FEATURES = ("recency_days", "frequency", "monetary", "tenure_days")
#: The hint of a segmentation of too few customers (it had none: every other error has one).
_FEW_CUSTOMERS_HINT = (
    "segments tell customers apart: use data with more customers (check the cleaning audit "
    "with `segmint inspect` if the file has more)"
)

#: Scaler names accepted by ``scaler=``.
SCALERS = ("standard", "robust", "minmax", "quantile", "none")

_ID_COLUMNS = {"customer_id"}

#: pandas' ``infer_dtype`` of an object column that holds numbers (Decimals, ints, floats)
_NUMBERS = frozenset({"decimal", "integer", "floating", "mixed-integer-float"})


def signed_log1p(x: np.ndarray) -> np.ndarray:
    """``sign(x) * log1p(|x|)``: log1p for non-negative values, symmetric for negative ones.

    Net monetary can be negative (returns exceed purchases); plain ``log1p`` would give
    NaN there, this keeps the order of the values.
    """
    return np.sign(x) * np.log1p(np.abs(x))


def apply_fitted(step: Any, block: np.ndarray) -> np.ndarray:
    """``step.transform(block)`` for a fitted scaler or PCA, as plain NumPy arithmetic.

    The same operations, in the same order, as scikit-learn's own ``transform`` of
    :class:`~sklearn.preprocessing.StandardScaler`, ``RobustScaler``, ``MinMaxScaler`` and
    :class:`~sklearn.decomposition.PCA`, without the input validation around them
    (``validate_data``, namespace and dataframe checks), which costs about 0.1 ms a call
    and was most of a one-customer prediction in the service. The caller passes a finite
    float matrix. Other steps (the quantile scaler) go through their own ``transform``.
    """
    kind = type(step)
    if kind is StandardScaler:
        out = np.array(block, dtype=float)
        if step.with_mean:
            out -= step.mean_
        if step.with_std:
            out /= step.scale_
        return out
    if kind is RobustScaler:
        out = np.array(block, dtype=float)
        if step.with_centering:
            out -= step.center_
        if step.with_scaling:
            out /= step.scale_
        return out
    if kind is MinMaxScaler:
        out = np.array(block, dtype=float)
        out *= step.scale_
        out += step.min_
        if step.clip:
            np.clip(out, step.feature_range[0], step.feature_range[1], out=out)
        return out
    if kind is PCA:
        out = np.asarray(block, dtype=float) @ step.components_.T
        out -= step.mean_.reshape(1, -1) @ step.components_.T
        if step.whiten:
            scale = np.sqrt(step.explained_variance_)
            scale[scale < np.finfo(scale.dtype).eps] = np.finfo(scale.dtype).eps
            out /= scale
        return out
    return step.transform(block)


def is_table(X: Any) -> bool:
    """Whether ``X`` has named columns: a pandas DataFrame, CustomerFeatures, an ibis
    table, or any table with the Arrow stream interface (pyarrow, polars, a DuckDB
    relation). A Series (one column, ``ndim`` 1) is not a table."""
    if isinstance(X, pd.DataFrame):
        return True
    if isinstance(X, pd.Series) or len(getattr(X, "shape", ())) == 1:
        return False
    return hasattr(X, "to_pandas") or has_arrow_stream(X)


def as_frame(X: Any, n_features: int | None = None, owner: str = "the model") -> pd.DataFrame:
    """A pandas DataFrame from a table (pandas, CustomerFeatures, ibis, or anything with
    the Arrow stream interface: pyarrow, polars, a DuckDB relation) or an array.

    Tables keep their column names (features are picked by name, so extra columns such as
    ``customer_id`` or dates may be present). Arrays and other array-likes go through
    scikit-learn's ``check_array`` (its usual errors for 1-D, empty, sparse, complex or
    non-finite input) and get columns ``x0, x1, ...``; ``n_features`` is the number the
    model was fitted on, checked with scikit-learn's message. A polars LazyFrame is a
    :class:`~segmint.errors.WrongTypeError` saying to collect it.
    """
    frame = to_frame(X, owner)
    if frame is not None:
        return frame
    from scipy import sparse
    from sklearn.utils import check_array

    if sparse.issparse(X):
        raise ConfigError(
            "sparse input is not supported: customer features are dense",
            hint="pass a DataFrame or a dense array (X.toarray())",
        )
    arr = check_array(X, dtype="numeric", ensure_min_samples=1)
    if n_features is not None and arr.shape[1] != n_features:
        raise ConfigError(
            f"X has {arr.shape[1]} features, but {owner} is expecting {n_features} "
            "features as input."
        )
    return pd.DataFrame(arr, columns=[f"x{i}" for i in range(arr.shape[1])])


def default_features(frame: pd.DataFrame) -> list[str]:
    """The features a segmentation uses when none are named.

    :data:`DEFAULT_FEATURES` when the table has recency, frequency and monetary (a
    segmint feature table); otherwise every numeric column except ``customer_id`` (any
    numeric customer table).
    """
    if all(c in frame.columns for c in DEFAULT_FEATURES[:3]):
        return [c for c in DEFAULT_FEATURES if c in frame.columns]
    cols = [
        c
        for c in frame.columns
        if c not in _ID_COLUMNS
        and pd.api.types.is_numeric_dtype(frame[c])
        and not pd.api.types.is_bool_dtype(frame[c])
    ]
    if not cols:
        raise ConfigError(
            "the customer table has no numeric column to segment on "
            f"(columns: {', '.join(map(str, frame.columns))})",
            hint="pass features=[...] naming numeric columns",
        )
    return cols


def _scaler(name: str, n_rows: int, random_state: Any) -> Any:
    if name == "standard":
        return StandardScaler()
    if name == "robust":
        return RobustScaler()
    if name == "minmax":
        return MinMaxScaler()
    if name == "quantile":
        return QuantileTransformer(
            n_quantiles=max(2, min(1000, n_rows)),
            output_distribution="normal",
            subsample=100_000,
            random_state=random_state,
        )
    return None


def _names(value: str | Sequence[str]) -> list[str]:
    """A column name or a list of them, as a list."""
    return [value] if isinstance(value, str) else list(value)


def _closest(name: str, options: Sequence[str]) -> str:
    import difflib

    match = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean {match[0]!r}?)" if match else ""


class CustomerTransform(TransformerMixin, BaseEstimator):
    """Turn a customer table into the numeric matrix a clustering algorithm sees.

    Steps, in order: select ``features`` (numeric) and ``categorical`` columns;
    ``signed_log1p`` on the features chosen by ``log``; winsorise every numeric feature
    at the ``clip`` percentile; scale; encode the categorical columns (one-hot 0/1
    columns, or ordinal codes scaled to 0–1); optional PCA.

    Parameters
    ----------
    features : list of str, optional
        Numeric columns to use; default :func:`default_features`.
    categorical : list of str, optional
        Text/categorical columns to include (e.g. ``country``, ``main_channel``).
    log : "auto", "all", "none", bool or list of str, default "auto"
        Which numeric features get ``signed_log1p``. ``"auto"``: those whose sample
        skewness exceeds ``skew_threshold`` (customer spend and order counts nearly
        always do).
    skew_threshold : float, default 1.0
        Skewness above which ``log="auto"`` logs a feature.
    clip : float, optional
        Winsorise numeric features to the ``[1 - clip, clip]`` quantiles of the training
        data (e.g. 0.99), after the log; off by default.
    scaler : {"standard", "robust", "minmax", "quantile", "none"}, default "standard"
    encoding : {"onehot", "ordinal"}, default "onehot"
    max_categories : int, default 20
        One-hot columns per categorical feature; rarer levels share one column.
    pca : int or float, optional
        Number of principal components, or a share of variance to keep (0 < pca < 1).
    random_state : int, optional
        For the quantile scaler's subsample and PCA's solver.
    """

    def __init__(
        self,
        *,
        features: Sequence[str] | None = None,
        categorical: Sequence[str] | None = None,
        log: str | bool | Sequence[str] = "auto",
        skew_threshold: float = 1.0,
        clip: float | None = None,
        scaler: str = "standard",
        encoding: str = "onehot",
        max_categories: int = 20,
        pca: int | float | None = None,
        random_state: int | None = None,
    ) -> None:
        self.features = features
        self.categorical = categorical
        self.log = log
        self.skew_threshold = skew_threshold
        self.clip = clip
        self.scaler = scaler
        self.encoding = encoding
        self.max_categories = max_categories
        self.pca = pca
        self.random_state = random_state

    # -- fitting -------------------------------------------------------------------
    def _check_params(self) -> None:
        if self.scaler not in SCALERS:
            raise ConfigError(
                f"unknown scaler {self.scaler!r}{_closest(str(self.scaler), SCALERS)}",
                hint=f"choose one of: {', '.join(SCALERS)}",
            )
        if self.encoding not in ("onehot", "ordinal"):
            raise ConfigError(
                f"unknown categorical encoding {self.encoding!r}",
                hint="choose 'onehot' or 'ordinal'",
            )
        if self.clip is not None and not 0.5 < float(self.clip) < 1.0:
            raise ConfigError(
                f"clip={self.clip!r} is not a percentile between 0.5 and 1",
                hint="e.g. clip=0.99 winsorises at the 1st and 99th percentiles",
            )
        if self.pca is not None:
            p = self.pca
            ok = (isinstance(p, int | np.integer) and p >= 1) or (
                isinstance(p, float) and 0.0 < p < 1.0
            )
            if not ok:
                raise ConfigError(
                    f"pca={p!r} is neither a number of components (>= 1) nor a share of "
                    "variance (between 0 and 1)",
                    hint="e.g. pca=3 or pca=0.9",
                )

    def _numeric_block(self, frame: pd.DataFrame, where: str) -> np.ndarray:
        missing = [c for c in self.features_ if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"{where}: feature column(s) {missing} not in the customer table",
                hint=f"columns available: {', '.join(map(str, frame.columns))}",
                code="missing_column",
            )
        block = np.empty((len(frame), len(self.features_)), dtype=float)
        for j, c in enumerate(self.features_):
            col = frame[c]
            if not pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
                if pd.api.types.is_bool_dtype(col):
                    col = col.astype(float)
                elif col.dtype == object and pd.api.types.infer_dtype(col) in _NUMBERS:
                    # decimal.Decimal values (pandas.read_sql of a NUMERIC column) were
                    # refused as "not numeric", with a hint to make money categorical
                    col = pd.to_numeric(col)
                else:
                    raise ConfigError(
                        f"{where}: feature {c!r} is not numeric (dtype {col.dtype})",
                        hint="segment on it as a categorical feature (segmint run "
                        f"--categorical {c}, [segment] categorical = [{c!r}], or "
                        "categorical=[...] in Python), or pick numeric features",
                    )
            values = col.to_numpy(dtype=float, na_value=np.nan)
            bad = ~np.isfinite(values)
            if bad.any():
                first = int(np.flatnonzero(bad)[0])
                raise DataQualityError(
                    f"{where}: feature {c!r} has {int(bad.sum()):,} missing or infinite "
                    f"value(s) (first at row {first + 1})",
                    hint="fill or drop those customers before segmenting",
                    code="bad_feature_value",
                )
            block[:, j] = values
        return block

    def fit(self, X: Any, y: Any = None) -> CustomerTransform:
        """Learn which features to log, the clip bounds, the scaler, encoder and PCA."""
        self._check_params()
        frame = as_frame(X)
        self.from_array_ = not is_table(X)
        # one name is one column (as for log=), not a list of its letters
        self.features_ = _names(self.features) if self.features else default_features(frame)
        self.categorical_ = _names(self.categorical or [])
        overlap = set(self.features_) & set(self.categorical_)
        if overlap:
            raise ConfigError(
                f"column(s) {sorted(overlap)} are both numeric and categorical",
                hint="a column is a number to segment on (features=) or a text category "
                "(categorical=, e.g. country), not both; the default features are "
                + ", ".join(DEFAULT_FEATURES),
            )
        if len(frame) < 2:
            raise DataQualityError(
                f"cannot segment {len(frame)} customer(s) (n_samples={len(frame)}): at least "
                "2 are needed",
                hint=_FEW_CUSTOMERS_HINT,
            )
        block = self._numeric_block(frame, "fit")
        self.n_features_in_ = len(self.features_) + len(self.categorical_)
        self.feature_names_in_ = np.array(self.features_ + self.categorical_, dtype=object)
        self.training_min_ = block.min(axis=0)
        self.training_max_ = block.max(axis=0)

        if self.log in ("auto",):
            # a constant feature (e.g. tenure 0 for every customer of a short file) has no
            # skew: scipy warns and returns NaN, read here as 0 (not logged)
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", RuntimeWarning)
                skews = (
                    skew(block, axis=0, bias=False) if len(block) > 2 else np.zeros(block.shape[1])
                )
            skews = np.nan_to_num(skews)
            self.log_features_ = [
                c for c, s in zip(self.features_, skews, strict=True) if s > self.skew_threshold
            ]
        elif self.log in ("all", True):
            self.log_features_ = list(self.features_)
        elif self.log in ("none", False, None):
            self.log_features_ = []
        else:
            wanted = [self.log] if isinstance(self.log, str) else list(self.log)
            unknown = [c for c in wanted if c not in self.features_]
            if unknown:
                raise ConfigError(
                    f"log={unknown} names feature(s) not in features={self.features_}",
                    hint="log takes 'auto', 'all', 'none' or a list of the features",
                )
            self.log_features_ = wanted
        self.log_mask_ = np.array([c in self.log_features_ for c in self.features_])
        block = self._logged(block)
        if self.clip is not None:
            q = float(self.clip)
            self.clip_low_ = np.quantile(block, 1.0 - q, axis=0)
            self.clip_high_ = np.quantile(block, q, axis=0)
            block = np.clip(block, self.clip_low_, self.clip_high_)
        else:
            self.clip_low_ = self.clip_high_ = None
        self.scaler_ = _scaler(self.scaler, len(block), self.random_state)
        if self.scaler_ is not None:
            block = self.scaler_.fit_transform(block)
        parts = [block]
        names = [f"log_{c}" if c in self.log_features_ else c for c in self.features_]
        self.encoder_ = None
        if self.categorical_:
            cats = self._categorical_block(frame, "fit")
            if self.encoding == "onehot":
                self.encoder_ = OneHotEncoder(
                    handle_unknown="infrequent_if_exist",
                    max_categories=self.max_categories,
                    sparse_output=False,
                )
                parts.append(self.encoder_.fit_transform(cats))
                names += list(self.encoder_.get_feature_names_out(self.categorical_))
            else:
                self.encoder_ = OrdinalEncoder(
                    handle_unknown="use_encoded_value", unknown_value=-1
                ).fit(cats)
                parts.append(self._ordinal(self.encoder_.transform(cats)))
                names += list(self.categorical_)
        matrix = np.hstack(parts) if len(parts) > 1 else parts[0]
        self.pca_ = None
        if self.pca is not None:
            n_comp = self.pca if isinstance(self.pca, float) else min(int(self.pca), *matrix.shape)
            self.pca_ = PCA(n_components=n_comp, random_state=self.random_state).fit(matrix)
            names = [f"pc{i + 1}" for i in range(self.pca_.n_components_)]
        self.output_names_ = names
        return self

    def _frame(self, X: Any, owner: str | None = None) -> pd.DataFrame:
        """``X`` as the table the fitted steps read, as scikit-learn matches inputs:
        a model fitted on a table takes an array with its columns in
        :attr:`feature_names_in_` order, and one fitted on an array takes a table's
        columns by position; each with scikit-learn's warning. (Both were an error
        naming invented columns ``x0, x1, ...``.)"""
        owner = owner or type(self).__name__
        if self.from_array_:
            internal = isinstance(X, pd.DataFrame) and list(X.columns) == list(self.features_)
            if is_table(X) and not internal:  # (internal: a frame as_frame made of an array)
                warnings.warn(
                    f"X has feature names, but {owner} was fitted without feature names",
                    UserWarning,
                    stacklevel=3,
                )
                X = as_frame(X).to_numpy()
            return as_frame(X, self.n_features_in_, owner)
        if is_table(X):
            return as_frame(X, owner=owner)
        names = list(self.feature_names_in_)
        if self.categorical_:
            raise ConfigError(
                f"{owner} was fitted on a table with categorical columns "
                f"{self.categorical_}: pass a DataFrame, not an array",
                hint=f"columns needed: {', '.join(names)}",
            )
        frame = as_frame(X, len(names), owner)
        warnings.warn(
            f"X does not have valid feature names, but {owner} was fitted with feature "
            f"names; its columns are read as {', '.join(names)}",
            UserWarning,
            stacklevel=3,
        )
        frame.columns = names
        return frame

    def _logged(self, block: np.ndarray) -> np.ndarray:
        if self.log_mask_.any():
            block = block.copy()
            block[:, self.log_mask_] = signed_log1p(block[:, self.log_mask_])
        return block

    def _categorical_block(self, frame: pd.DataFrame, where: str) -> np.ndarray:
        missing = [c for c in self.categorical_ if c not in frame.columns]
        if missing:
            raise ConfigError(
                f"{where}: categorical column(s) {missing} not in the customer table",
                hint=f"columns available: {', '.join(map(str, frame.columns))}",
                code="missing_column",
            )
        return frame[self.categorical_].astype("string").fillna("(missing)").to_numpy(object)

    def _ordinal(self, codes: np.ndarray) -> np.ndarray:
        sizes = np.array([max(len(c) - 1, 1) for c in self.encoder_.categories_], dtype=float)
        return codes / sizes

    # -- applying ------------------------------------------------------------------
    def transform(self, X: Any) -> np.ndarray:
        """The matrix the clustering sees (rows = customers, columns = :attr:`output_names_`)."""
        check_is_fitted(self, "features_")
        frame = self._frame(X)
        block = self._scaled(self._numeric_block(frame, "transform"))
        parts = [block]
        if self.encoder_ is not None:
            cats = self._categorical_block(frame, "transform")
            coded = self.encoder_.transform(cats)
            parts.append(coded if self.encoding == "onehot" else self._ordinal(coded))
        matrix = np.hstack(parts) if len(parts) > 1 else parts[0]
        if self.pca_ is not None:
            matrix = self.pca_.transform(matrix)
        return np.ascontiguousarray(matrix, dtype=float)

    def _scaled(self, block: np.ndarray) -> np.ndarray:
        block = self._logged(block)
        if self.clip_low_ is not None:
            block = np.clip(block, self.clip_low_, self.clip_high_)
        if self.scaler_ is not None:
            block = self.scaler_.transform(block)
        return block

    def transform_numeric(self, block: np.ndarray) -> np.ndarray:
        """:meth:`transform` of a float matrix already in :attr:`features_` order (no
        categorical columns): the same steps without a DataFrame, for a service that
        scores one customer at a time. The caller checks the values are finite."""
        if not hasattr(self, "features_"):  # check_is_fitted costs more than the rest
            check_is_fitted(self, "features_")
        if self.encoder_ is not None:
            raise ConfigError("transform_numeric needs a model without categorical features")
        matrix = self._logged(np.asarray(block, dtype=float))
        if self.clip_low_ is not None:
            matrix = np.clip(matrix, self.clip_low_, self.clip_high_)
        if self.scaler_ is not None:
            matrix = apply_fitted(self.scaler_, matrix)
        if self.pca_ is not None:
            matrix = apply_fitted(self.pca_, matrix)
        return np.ascontiguousarray(matrix, dtype=float)

    def out_of_range_numeric(self, block: np.ndarray) -> np.ndarray:
        """:meth:`out_of_range` of a float matrix in :attr:`features_` order."""
        slack = 1e-9 * np.maximum(np.abs(self.training_min_), np.abs(self.training_max_))
        return (block < self.training_min_ - slack) | (block > self.training_max_ + slack)

    def out_of_range(self, X: Any) -> pd.DataFrame:
        """Per customer, which features are outside what the model was trained on: a
        numeric value outside the training min–max, or a categorical value (e.g. a
        country) the training data did not have.

        Returns a boolean DataFrame (one column per numeric, then categorical feature);
        scoring reports these customers instead of silently assigning them (an unseen
        level is encoded as "rare" or as no level at all, which is an extrapolation too).
        """
        check_is_fitted(self, "features_")
        frame = self._frame(X)
        block = self._numeric_block(frame, "out_of_range")
        # a relative slack of 1e-9 so that rounding noise is not "out of range"
        flags = pd.DataFrame(self.out_of_range_numeric(block), columns=self.features_)
        if self.encoder_ is not None:
            cats = self._categorical_block(frame, "out_of_range")
            for j, (col, seen) in enumerate(
                zip(self.categorical_, self.encoder_.categories_, strict=True)
            ):
                flags[col] = ~pd.Series(cats[:, j]).isin(set(seen)).to_numpy()
        return flags

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        """Names of the output columns (``log_<feature>``, one-hot levels, or ``pcN``)."""
        check_is_fitted(self, "output_names_")
        return np.array(self.output_names_, dtype=object)

    def describe(self) -> dict[str, Any]:
        """The fitted steps in plain words (for the report and ``explain``)."""
        check_is_fitted(self, "features_")
        out: dict[str, Any] = {
            "features": self.features_,
            "categorical": self.categorical_,
            "log": self.log_features_,
            "clip": self.clip,
            "scaler": self.scaler,
            "encoding": self.encoding if self.categorical_ else None,
            "pca_components": None if self.pca_ is None else int(self.pca_.n_components_),
        }
        if self.pca_ is not None:
            out["pca_explained_variance"] = float(self.pca_.explained_variance_ratio_.sum())
        return out
