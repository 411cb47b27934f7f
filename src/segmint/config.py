"""Pydantic models for segmint's options; TOML loading; every field documented.

Later stages add their sections here; one model tree, ``extra="forbid"`` so a misspelt key
is an error naming the closest valid key.
"""

from __future__ import annotations

import datetime as dt
import difflib
import math
import re
import tomllib
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from segmint.errors import ConfigError

__all__ = [
    "DEFAULT_NON_PRODUCT_CODES",
    "DEFAULT_NON_PRODUCT_PREFIXES",
    "CleanConfig",
    "FeaturesConfig",
    "LoadConfig",
    "ReportConfig",
    "RfmConfig",
    "RunConfig",
    "SegmentConfig",
    "SegmentsConfig",
    "init_toml",
    "load_run_config",
    "load_mapping_file",
    "load_thresholds_file",
    "parse_map_options",
]

#: Stock codes that are not products: postage, fees, manual adjustments, discounts,
#: samples, bad-debt adjustments, carriage, charity (from the UCI Online Retail data).
DEFAULT_NON_PRODUCT_CODES: tuple[str, ...] = (
    "POST",
    "DOT",
    "M",
    "m",
    "D",
    "C2",
    "S",
    "B",
    "AMAZONFEE",
    "BANK CHARGES",
    "CRUK",
    "PADS",
    "ADJUST",
    "ADJUST2",
    "TEST001",
    "TEST002",
)
#: Stock-code prefixes that are not products (gift vouchers, dotcom adjustments).
DEFAULT_NON_PRODUCT_PREFIXES: tuple[str, ...] = ("gift_0001_", "DCGS")


#: A length of time as segmint reads it (the same form as segmint.features' window and
#: segmint.clv's horizons, which these checks must not import: they import ibis).
_DURATION_RE = re.compile(r"^\s*(\d+)\s*([DWMY])\s*$", re.IGNORECASE)
#: A date as segmint reads it (segmint.features._as_date): ISO, optionally with a time.
_DATE_RE = re.compile(r"^\s*(\d{4})-(\d{1,2})-(\d{1,2})(?:[ T][0-9:.]*)?\s*$")


def _check_duration(value: str | None) -> str | None:
    m = _DURATION_RE.match(value) if isinstance(value, str) else None
    if value is not None and (not m or int(m.group(1)) == 0):
        raise PydanticCustomError(
            "not_a_duration",
            "{value} is not a length of time",
            {"value": repr(value), "hint": "use a number and a unit: 90D, 26W, 6M, 12M or 1Y"},
        )
    return value


def _check_date(value: str | None) -> str | None:
    if value is None:
        return value
    m = _DATE_RE.match(value)
    try:
        if not m:
            raise ValueError(value)
        dt.date(*(int(g) for g in m.groups()))
    except ValueError:
        raise PydanticCustomError(
            "not_a_date",
            "{value} is not a date in the form YYYY-MM-DD",
            {"value": repr(value), "hint": "write it as year-month-day, e.g. 2011-12-10"},
        ) from None
    return value


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class LoadConfig(_Model):
    """How to read the input and map its columns."""

    format: Literal["csv", "tsv", "parquet", "excel", "json", "ndjson"] | None = Field(
        None, description="Input format; default guessed from the file name."
    )
    encoding: str | None = Field(
        None, description="Text encoding of CSV files; default detected (UTF-8, cp1252, ...)."
    )
    delimiter: str | None = Field(None, description="CSV field separator; default sniffed.")
    header: bool | None = Field(None, description="Whether CSV files have a header row.")
    sheet: str | None = Field(None, description="Excel sheet name or 0-based number.")

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        # refused before any data is read, naming the key (it named neither)
        if v is not None:
            import codecs

            try:
                codecs.lookup(v)
            except LookupError:
                raise PydanticCustomError(
                    "unknown_name",
                    "unknown encoding {value}",
                    {"value": repr(v), "hint": "use e.g. utf-8, latin-1, cp1252, utf-16"},
                ) from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, v: str | None) -> str | None:
        # the rule of segmint.io's CSV reader, checked before any data is read
        if v is not None and len(v.encode()) != 1 and v != "\\t":
            raise PydanticCustomError(
                "delimiter",
                "must be one character, got {value}",
                {"value": repr(v), "hint": "e.g. ';' or '\\t' for a tab"},
            )
        return v

    @field_validator("sheet", mode="before")
    @classmethod
    def _sheet_number(cls, v: Any) -> Any:
        # `sheet = 0` in segmint.toml (a number, as the description says) was refused as
        # "Input should be a valid string"; the reader takes "0" as the first sheet
        if isinstance(v, int) and not isinstance(v, bool):
            if v < 0:
                raise PydanticCustomError(
                    "out_of_range",
                    "{value} is no sheet: numbers count from 0",
                    {"value": repr(v), "hint": "give the sheet's name, or 0 for the first"},
                )
            return str(v)
        return v

    all_sheets: bool = Field(False, description="Concatenate every Excel sheet.")
    kind: Literal["transactions", "customers"] | None = Field(
        None, description="Table kind; default recognised from the columns."
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Explicit mapping canonical column -> source column; wins over auto.",
    )
    date_format: str | None = Field(
        None, description="strftime-style layout of date columns, e.g. '%d/%m/%Y %H:%M'."
    )
    dayfirst: bool | None = Field(
        None, description="Read ambiguous dates like 01/02/2011 as day first (true) or not."
    )
    timezone: str | None = Field(
        None,
        description="Time zone (IANA name, e.g. Europe/Amsterdam) of the shop: date columns "
        "that carry a zone (Parquet timestamp[tz], pandas tz-aware, PostgreSQL timestamptz, "
        "MySQL TIMESTAMP) "
        "are read as its local time; default UTC. Dates without a zone (text) are taken "
        "as written.",
    )

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str | None) -> str | None:
        # refused before any data is read (the same check as segmint.resolve)
        if v is None:
            return v
        from segmint.schema import timezone_hint

        hint = timezone_hint(v)
        if hint is not None:
            raise PydanticCustomError(
                "unknown_name", "unknown time zone {value}", {"value": repr(v), "hint": hint}
            )
        return v

    engine: Literal["duckdb", "spark"] = Field(
        "duckdb",
        description="Engine for loading, cleaning and features: duckdb (files, default) or "
        "spark (Parquet/CSV paths or Spark table names). PostgreSQL URLs run in the server.",
    )
    spark_master: str | None = Field(
        None, description="Spark master URL; default $SPARK_MASTER or local[*]."
    )
    table: str | None = Field(
        None,
        description="Database table or view to read (with a postgresql:// or mysql:// URL "
        "or an SQLite database).",
    )
    query: str | None = Field(
        None,
        description="One SELECT to read instead of a table (PostgreSQL or MySQL URL, or "
        "SQLite database).",
    )


class CleanConfig(_Model):
    """Which cleaning rules apply and their parameters."""

    non_product_codes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_PRODUCT_CODES),
        description="Product codes that are not products (postage, fees, adjustments).",
    )
    non_product_prefixes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_NON_PRODUCT_PREFIXES),
        description="Product-code prefixes that are not products.",
    )
    drop_duplicates: bool = Field(True, description="Drop exact duplicate lines.")
    write_rejected: bool | None = Field(
        None,
        description="Write rejected.parquet (every dropped line) in a run folder. Default: "
        "yes for files; no for PostgreSQL and Spark sources, whose dropped lines stay where "
        "they are (audit.json counts them).",
    )
    outlier_quantile: float | None = Field(
        None,
        description="Drop lines whose quantity or amount is above this quantile of the "
        "otherwise clean lines (e.g. 0.9999); off by default.",
    )
    disabled_rules: list[str] = Field(
        default_factory=list, description="Names of rules to switch off."
    )

    @field_validator("outlier_quantile")
    @classmethod
    def _quantile_range(cls, v: float | None) -> float | None:
        if v is not None and not 0.5 < v < 1:
            raise ValueError("outlier_quantile must be above 0.5 and below 1 (e.g. 0.9999)")
        return v

    @field_validator("disabled_rules")
    @classmethod
    def _known_rules(cls, v: list[str]) -> list[str]:
        # checked here, before any data is read; whether a rule applies to the data's
        # kind (transactions or customer table) is checked by clean()
        from segmint.clean import CUSTOMER_RULES, TRANSACTION_RULES

        names = [r.name for r in TRANSACTION_RULES]
        names += [r.name for r in CUSTOMER_RULES if r.name not in names]
        for name in v:
            if name not in names:
                raise _unknown_name(
                    "no cleaning rule {name}",
                    name,
                    names,
                    "rules for transaction lines: "
                    + ", ".join(r.name for r in TRANSACTION_RULES)
                    + "; for customer tables: "
                    + ", ".join(r.name for r in CUSTOMER_RULES),
                )
        return v


class FeaturesConfig(_Model):
    """How customer features are computed."""

    snapshot_date: str | None = Field(
        None,
        description="Date the features are measured at (YYYY-MM-DD); default the day after "
        "the last purchase in the data.",
    )
    window: str | None = Field(
        None,
        description="Restrict frequency, monetary, basket, quantity, products and returns "
        "to the last N months or days before the snapshot, e.g. '12M' or '90D' (recency "
        "and tenure use all history); default all history.",
    )

    _snapshot_is_a_date = field_validator("snapshot_date")(_check_date)
    _window_is_a_duration = field_validator("window")(_check_duration)


class RfmConfig(_Model):
    """Classic RFM scores and named segments."""

    rule_set: str = Field(
        "rf-grid",
        description="Named-segment rule set: rf-grid, classic-11, rfm-r-0.3, or a .toml/.csv file.",
    )
    thresholds: dict[str, list[float | None]] | None = Field(
        None,
        description="Fixed cut points (four per metric: recency_days, frequency, monetary) "
        "instead of quintiles; inf for a score no customer reaches.",
    )

    @field_validator("rule_set")
    @classmethod
    def _rule_set_file_exists(cls, v: str) -> str:
        # checked before any data is read: a misspelt name or a broken table was refused
        # only after the features were built (16 s into Online Retail), and a name from
        # segmint.toml without naming the file
        if Path(v).suffix.lower() in (".toml", ".csv") and not Path(v).is_file():
            raise PydanticCustomError(
                "file_not_found",
                "rule set file {name} not found",
                {
                    "name": repr(v),
                    "hint": "a relative path on the command line starts from the current "
                    f"folder ({Path.cwd()}), one in segmint.toml from the folder of that file",
                },
            )
        from segmint.rfm import load_rule_set

        try:
            load_rule_set(v, quiet=True)
        except ConfigError as exc:
            raise PydanticCustomError(
                "rule_set", "{message}", {"message": exc.message, "hint": exc.hint}
            ) from exc
        return v

    @field_validator("thresholds", mode="before")
    @classmethod
    def _no_booleans(cls, value: Any) -> Any:
        """``true`` in a list of cut points is a typo that pydantic would read as 1."""
        if isinstance(value, dict):
            for name, cuts in value.items():
                if isinstance(cuts, list) and any(isinstance(c, bool) for c in cuts):
                    raise PydanticCustomError(
                        "cut_points",
                        "{name} = {cuts}: cut points must be numbers, not true or false",
                        {
                            "name": name,
                            "cuts": "["
                            + ", ".join(
                                str(c).lower() if isinstance(c, bool) else repr(c) for c in cuts
                            )
                            + "]",
                            "hint": "e.g. frequency = [2, 3, 5, 8]; inf for a score no "
                            "customer reaches",
                        },
                    )
        return value

    @field_validator("thresholds")
    @classmethod
    def _unreachable_as_none(
        cls, value: dict[str, list[float | None]] | None
    ) -> dict[str, list[float | None]] | None:
        """``inf`` (a score no customer reaches) is kept as None: run.json and the other
        JSON records stay valid JSON (``Infinity`` is not)."""
        if value is None:
            return None
        # the metrics and the count of cut points are checked here, before any data is
        # read: they were refused at scoring, as "must be four numbers, got None" for a
        # misspelt metric, naming neither the file nor the key
        metrics = ("recency_days", "frequency", "monetary")
        for name, cuts in value.items():
            if name not in metrics:
                raise _unknown_name(
                    "no RFM metric {name}",
                    name,
                    metrics,
                    "give four cut points for each of recency_days, frequency and monetary",
                )
            if len(cuts) != 4:
                raise PydanticCustomError(
                    "cut_points",
                    "{name} has {n} cut points, not four",
                    {"name": name, "n": len(cuts), "hint": "e.g. frequency = [2, 3, 5, 8]"},
                )
        missing = [m for m in metrics if m not in value]
        if missing:
            raise PydanticCustomError(
                "missing_metric",
                "no cut points for {missing}",
                {
                    "missing": ", ".join(missing),
                    "hint": "fixed thresholds need four cut points for each of recency_days, "
                    "frequency and monetary, e.g. recency_days = [180, 90, 30, 14]",
                },
            )
        from segmint.rfm import _check_thresholds

        for name in value:
            # out of order was refused only at scoring, once the data had been read
            try:
                _check_thresholds(value, name, name == "recency_days")
            except ConfigError as exc:
                raise PydanticCustomError(
                    "cut_points", "{message}", {"message": exc.message, "hint": exc.hint}
                ) from exc
        return {
            k: [None if v is not None and math.isinf(v) else v for v in cuts]
            for k, cuts in value.items()
        }


#: The numeric customer features a segmentation can use (segmint.features, and the
#: lifetime value columns of a run). A copy of ``LINE_FEATURES + CLV_COLUMNS``, because
#: reading options must not import ibis; a test keeps the two equal.
SEGMENT_FEATURES = (
    "recency_days",
    "frequency",
    "monetary",
    "tenure_days",
    "avg_basket_value",
    "total_quantity",
    "unique_products",
    "return_rate",
    "clv_expected_purchases",
    "clv_p_alive",
    "clv_expected_spend",
    "clv_value",
)
#: The features segmented on when ``features`` is not given (a copy of
#: segmint.segment.transforms.DEFAULT_FEATURES, which imports scikit-learn; a test keeps
#: them equal).
_DEFAULT_FEATURES = ("recency_days", "frequency", "monetary", "tenure_days")
#: Numeric features named after values of the data (channels, categories).
_DATA_FEATURE_PREFIXES = ("channel_share_", "category_share_", "category_", "online_order_share")
#: Columns of the customer table that are not numbers, and what to do instead.
_TEXT_COLUMNS = {
    "customer_id": ": it identifies the customer",
    "country": " (it is text): segment on it with --categorical country",
    "first_channel": " (it is text): segment on it with --categorical first_channel",
    "last_channel": " (it is text): segment on it with --categorical last_channel",
    "first_purchase": " (it is a date): use tenure_days or recency_days",
    "last_purchase": " (it is a date): use recency_days",
}


class SegmentConfig(_Model):
    """The segmentation: features, transform, algorithms and model selection."""

    algorithm: str | list[str] = Field(
        "auto",
        description="Clustering algorithm(s) to try: auto (kmeans and gmm) or "
        "names from the registry (see README).",
    )
    n_clusters: int | Literal["auto"] = Field(
        "auto", description="Number of segments, or auto to search k_min..k_max."
    )
    k_min: int = Field(2, ge=2, description="Smallest number of segments searched.")
    k_max: int = Field(10, ge=1, description="Largest number of segments searched.")
    features: list[str] | None = Field(
        None,
        description="Features to segment on; default recency_days, frequency, monetary, "
        "tenure_days.",
    )
    categorical: list[str] = Field(
        default_factory=list, description="Categorical features to include (e.g. country)."
    )
    log: str | list[str] = Field(
        "auto", description="log1p: auto (skewed features), all, none, or a list of features."
    )
    scaler: Literal["standard", "robust", "minmax", "quantile", "none"] = Field(
        "standard", description="Scaler applied after the log."
    )
    clip: float | None = Field(
        None, description="Winsorise features at this percentile (e.g. 0.99); off by default."
    )
    pca: float | None = Field(
        None,
        description="PCA: number of components (>= 1) or share of variance (0-1); off by default.",
    )
    sample_size: int | None = Field(
        None,
        ge=10,
        description="Customers quadratic algorithms are fitted on; default chosen from the "
        "machine's memory.",
    )
    selection_sample: int = Field(
        50_000, ge=100, description="Customers the candidate models are compared on."
    )
    stability_resamples: int = Field(
        3, ge=0, description="Bootstrap refits per candidate for the stability score."
    )
    min_stability: float = Field(
        0.6, ge=0, le=1, description="Candidates less stable than this are not chosen."
    )
    min_segment_share: float = Field(
        0.02, ge=0, lt=1, description="Candidates with a smaller segment are not chosen."
    )
    max_noise_share: float = Field(
        0.25,
        ge=0,
        le=1,
        description="Density candidates leaving more customers unassigned are not chosen.",
    )
    tolerance: float = Field(
        0.25,
        ge=0,
        description="Prefer fewer segments within this much of the best score (a mean of "
        "ranks, in steps of 1/3: 0.25 settles near-ties only, 1 allows one rank place).",
    )
    time_budget: float | None = Field(
        None, gt=0, description="Seconds for the model search; default no limit."
    )
    value_tier: float | None = Field(
        None,
        gt=0,
        lt=0.5,
        description="Top share of customers by monetary value (e.g. 0.02) given a segment "
        "of their own; the others are clustered. Off by default.",
    )
    seed: int = Field(
        0,
        ge=0,
        le=2**32 - 1,
        description="Random seed: the same data and seed, the same segments.",
    )
    algorithm_params: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Per algorithm, scikit-learn parameters, e.g. {kmeans = {n_init = 10}}.",
    )
    select_by: Literal["geometry", "future"] = Field(
        "geometry",
        description="Choose the segmentation by cluster geometry, or by how well it predicts "
        "next-period revenue and repeat purchases on an earlier split (see segmint backtest).",
    )
    future_horizon: str = Field(
        "90D", description="With select_by = future: the outcome period (90D, 3M, ...)."
    )
    future_cutoff: str | None = Field(
        None,
        description="With select_by = future: the earlier split; default the snapshot "
        "date minus the horizon, so the outcomes end where the run's data end.",
    )

    _horizon_is_a_duration = field_validator("future_horizon")(_check_duration)
    _cutoff_is_a_date = field_validator("future_cutoff")(_check_date)

    @field_validator("features")
    @classmethod
    def _known_features(cls, v: list[str] | None) -> list[str] | None:
        # checked before any data is read: names of no customer feature, and columns of
        # the customer table that are not numbers (whether a data-dependent share such as
        # channel_share_web exists is checked once the features are computed)
        if v is None:
            return v
        if not v:
            raise PydanticCustomError(
                "no_features",
                "no feature given",
                {"hint": f"features to segment on: {', '.join(SEGMENT_FEATURES)}"},
            )
        hint = (
            f"features to segment on: {', '.join(SEGMENT_FEATURES)}; and, when the data "
            "have them, channel_share_<channel>, category_share_<category>, "
            "online_order_share and category_<name> (customer tables)"
        )
        for name in v:
            if name in SEGMENT_FEATURES or name.startswith(_DATA_FEATURE_PREFIXES):
                continue
            if name in _TEXT_COLUMNS:
                raise PydanticCustomError(
                    "not_numeric",
                    "{name} is not a number to cluster on{how}",
                    {
                        "name": repr(name),
                        "how": _TEXT_COLUMNS[name],
                        "hint": hint,
                    },
                )
            raise _unknown_name("no customer feature {name}", name, SEGMENT_FEATURES, hint)
        return v

    @field_validator("algorithm")
    @classmethod
    def _known_algorithms(cls, v: str | list[str]) -> str | list[str]:
        # checked before any data is read (the registry, and scikit-learn with it, is
        # imported only for names other than auto): a misspelt name failed once the data
        # were read and the features computed, naming neither the file nor the key
        names = [v] if isinstance(v, str) else list(v)
        if all(n == "auto" for n in names):
            return v
        from segmint.segment.algorithms import get_algorithm

        for name in names:
            if name == "auto":
                continue
            try:
                get_algorithm(name)
            except ConfigError as exc:
                raise PydanticCustomError(
                    "unknown_name", "{message}", {"message": exc.message, "hint": exc.hint}
                ) from None
        return v

    @field_validator("log")
    @classmethod
    def _log_names(cls, v: str | list[str]) -> str | list[str]:
        # 'auto', 'all', 'none', or features (whether they are among the segmentation's
        # features is checked when it is fitted); a word such as "sometimes" was taken
        # for a feature and refused only after the data were read
        names = [v] if isinstance(v, str) else list(v)
        if isinstance(v, str) and v in ("auto", "all", "none"):
            return v
        for name in names:
            if name in SEGMENT_FEATURES or name.startswith(_DATA_FEATURE_PREFIXES):
                continue
            raise _unknown_name(
                "{name} is neither auto, all, none nor a customer feature",
                name,
                ["auto", "all", "none", *SEGMENT_FEATURES],
                "log takes 'auto', 'all', 'none' or a list of the features",
            )
        return v

    @field_validator("clip")
    @classmethod
    def _clip_percentile(cls, v: float | None) -> float | None:
        if v is not None and not 0.5 < v < 1.0:
            raise PydanticCustomError(
                "out_of_range",
                "{value} is not a percentile between 0.5 and 1",
                {
                    "value": repr(v),
                    "hint": "e.g. 0.99 winsorises at the 1st and 99th percentiles",
                },
            )
        return v

    @field_validator("pca")
    @classmethod
    def _pca_components_or_share(cls, v: float | None) -> float | None:
        # refused only once the data were read and the features computed (0, -1), or
        # cut to a whole number without a word (1.5 became 1 component)
        if v is None or (0 < v < 1) or (v >= 1 and float(v).is_integer()):
            return v
        raise PydanticCustomError(
            "out_of_range",
            "{value} is neither a number of components (a whole number, 1 or more) nor a "
            "share of variance (between 0 and 1)",
            {"value": repr(v), "hint": "e.g. 3 components, or 0.9 for 90% of the variance"},
        )

    @field_validator("algorithm_params")
    @classmethod
    def _known_params(cls, v: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        # checked before any data is read (scikit-learn is imported only when parameters
        # are given): a misspelt parameter was an internal error once the search began
        if not v:
            return v
        from segmint.segment.algorithms import check_params, get_algorithm

        for name, params in v.items():
            try:
                get_algorithm(name)
                check_params(name, params)
            except ConfigError as exc:
                raise PydanticCustomError(
                    "unknown_name",
                    "{message}",
                    {"message": exc.message.removeprefix("algorithm_params: "), "hint": exc.hint},
                ) from None
        return v

    @field_validator("categorical")
    @classmethod
    def _text_categories(cls, v: list[str]) -> list[str]:
        # a numeric feature given as a category was refused only after the data were
        # read and its features computed, as "are both numeric and categorical"
        for name in v:
            if name in SEGMENT_FEATURES or name.startswith(_DATA_FEATURE_PREFIXES):
                raise PydanticCustomError(
                    "numeric_category",
                    "{name} is a number, not a category{default}",
                    {
                        "name": repr(name),
                        "default": (
                            " (the default features segment on it already)"
                            if name in _DEFAULT_FEATURES
                            else ""
                        ),
                        "hint": "segment on numbers with --features; --categorical takes text "
                        "columns: country, first_channel, last_channel",
                    },
                )
        return v

    @model_validator(mode="after")
    def _two_segments_at_least(self) -> SegmentConfig:
        """A segmentation tells customers apart: one cluster only beside a value tier."""
        k = self.n_clusters
        if self.k_min > self.k_max:
            raise ValueError(
                f"--k-min / segment.k_min ({self.k_min}) is larger than --k-max / "
                f"segment.k_max ({self.k_max}): the search has no number of segments to "
                "try (e.g. --k-min 2 --k-max 10)"
            )
        if (
            self.value_tier is not None
            and self.features is not None
            and "monetary" not in self.features
        ):
            # refused by the segmenter only after the data were read
            raise ValueError(
                "--value-tier / segment.value_tier needs 'monetary' among --features / "
                f"segment.features ({', '.join(self.features)}): the tier is the top "
                "customers by monetary value; add monetary, or drop the value tier"
            )
        if k != "auto" and (k < 1 or (k == 1 and self.value_tier is None)):
            raise ValueError(
                f"--k / segment.n_clusters = {k} gives fewer than 2 segments: use 2 or more "
                "(--k 2), or "
                "1 beside a value tier (--value-tier 0.02)"
            )
        return self


class SegmentsConfig(_Model):
    """Overrides of the automatic segment names and actions, by segment id."""

    names: dict[str, str] = Field(
        default_factory=dict, description='Segment id -> name, e.g. {"0" = "Core customers"}.'
    )
    actions: dict[str, str] = Field(
        default_factory=dict, description="Segment id -> suggested action."
    )

    @field_validator("names", "actions")
    @classmethod
    def _ids(cls, v: dict[str, str]) -> dict[str, str]:
        # keys are segment ids; a name as key ({Champions = "VIP"}) was refused only once
        # the segments were found, naming neither the file nor the key
        for key in v:
            try:
                int(key)
            except ValueError:
                raise PydanticCustomError(
                    "not_an_id",
                    "{key} is not a segment id",
                    {
                        "key": repr(key),
                        "hint": 'keys are the segment ids of segments.csv, e.g. {"0" = '
                        '"Core customers"}',
                    },
                ) from None
        return v


class ReportConfig(_Model):
    """The HTML report and charts."""

    title: str = Field("Customer segments", description="Title of the report.")
    sample: int = Field(
        5000, ge=100, description="At most this many customers are drawn in point charts."
    )
    chart_formats: list[Literal["png", "svg"]] = Field(
        default_factory=lambda: ["png", "svg"], description="Static chart files to write."
    )


class ClvConfig(_Model):
    """Customer lifetime value (BG/NBD + Gamma-Gamma), added per customer and segment."""

    enabled: bool = Field(True, description="Fit lifetime-value models in segmint run.")
    horizon: str = Field("12M", description="Value customers over this period (90D, 12M, 1Y).")
    discount_rate: float = Field(
        0.0, ge=0, lt=10, description="Yearly discount rate of future purchases (0 = none)."
    )
    margin: float = Field(
        1.0, gt=0, le=1, description="Share of revenue that is profit (1 = value in revenue)."
    )

    _horizon_is_a_duration = field_validator("horizon")(_check_duration)


class RunConfig(_Model):
    """Everything ``segmint run`` does, one section per stage."""

    load: LoadConfig = Field(default_factory=LoadConfig, description="Reading the input.")
    clean: CleanConfig = Field(default_factory=CleanConfig, description="Cleaning rules.")
    features: FeaturesConfig = Field(
        default_factory=FeaturesConfig, description="Customer features."
    )
    rfm: RfmConfig = Field(default_factory=RfmConfig, description="Classic RFM segments.")
    segment: SegmentConfig = Field(
        default_factory=SegmentConfig, description="Segmentation and model selection."
    )
    segments: SegmentsConfig = Field(
        default_factory=SegmentsConfig, description="Name and action overrides."
    )
    clv: ClvConfig = Field(default_factory=ClvConfig, description="Customer lifetime value.")
    report: ReportConfig = Field(default_factory=ReportConfig, description="Report and charts.")

    @model_validator(mode="after")
    def _clv_features_need_clv(self) -> RunConfig:
        clv = [f for f in self.segment.features or [] if f.startswith("clv_")]
        if clv and not self.clv.enabled:
            raise PydanticCustomError(
                "clv_off",
                "segment.features (--features) has {names}, but lifetime value is switched "
                "off (clv.enabled = false, --no-clv)",
                {
                    "names": ", ".join(map(repr, clv)),
                    "hint": "leave out --no-clv, or segment on other features",
                },
            )
        return self


def load_run_config(
    path: str | Path | None,
    overrides: dict[str, Any] | None = None,
    flags: Mapping[str, str] | None = None,
) -> RunConfig:
    """Read ``segmint.toml`` (if given) and apply ``overrides`` (dotted keys from flags).

    ``flags`` names the command-line option of each dotted key (``{"segment.k_min":
    "--k-min"}``): a bad value given by an option is reported with the option's name.

    Raises
    ------
    ConfigError
        Missing or invalid file, unknown key (naming the closest valid one), bad value.
    """
    data: dict[str, Any] = _read_toml(path, "configuration") if path else {}
    where = str(path) if path else "options"
    if path:
        _paths_from_file(data, Path(path))
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        data.setdefault(section, {})
        if not isinstance(data[section], dict):
            raise ConfigError(f"{where}: [{section}] must be a table")
        data[section][key] = value
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        given = {k: v for k, v in (flags or {}).items() if k in (overrides or {})}
        raise validation_error(exc, where, given) from None


def _paths_from_file(data: dict[str, Any], path: Path) -> None:
    """Make the file paths of a configuration file relative to its folder, not to the
    folder segmint is started from: ``rule_set = "rules.csv"`` beside ``segmint.toml``
    was not found when a scheduled job ran ``segmint run --config /crm/segmint.toml``
    from another folder. Paths given by flags stay relative to the current folder."""
    rfm = data.get("rfm")
    if not isinstance(rfm, dict) or not isinstance(rfm.get("rule_set"), str):
        return
    rule_set = Path(rfm["rule_set"]).expanduser()
    if rule_set.suffix.lower() in (".toml", ".csv") and not rule_set.is_absolute():
        rfm["rule_set"] = str(path.parent / rule_set)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json_str(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))  # pragma: no cover


def _toml_key(key: str) -> str:
    """A bare TOML key when it can be one (letters, digits, _ and -), else quoted."""
    import re

    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json_str(key)


def json_str(value: str) -> str:
    """A TOML basic string (JSON escaping is valid TOML)."""
    import json

    return json.dumps(value, ensure_ascii=False)


#: For ``segmint init``: an example value of each option that has no default, written
#: commented out (uncommented, each line is valid TOML and a valid value).
INIT_EXAMPLES: dict[str, Any] = {
    "load.format": "csv",
    "load.encoding": "cp1252",
    "load.delimiter": ";",
    "load.header": True,
    "load.sheet": "2024",
    "load.kind": "transactions",
    "load.columns": {"customer_id": "Kundennummer", "invoice_date": "Belegdatum"},
    "load.date_format": "%d/%m/%Y %H:%M",
    "load.dayfirst": True,
    "load.timezone": "Europe/Amsterdam",
    "load.spark_master": "spark://spark-master:7077",
    "load.table": "sales",
    "load.query": "SELECT * FROM sales WHERE invoice_date >= '2024-01-01'",
    "clean.write_rejected": True,
    "clean.outlier_quantile": 0.9999,
    "features.snapshot_date": "2011-12-10",
    "features.window": "12M",
    "rfm.thresholds": {
        "recency_days": [180, 90, 30, 14],
        "frequency": [2, 3, 5, 8],
        "monetary": [250, 500, 1000, 2000],
    },
    "segment.features": ["recency_days", "frequency", "monetary", "tenure_days"],
    "segment.clip": 0.99,
    "segment.pca": 0.9,
    "segment.sample_size": 10000,
    "segment.time_budget": 120,
    "segment.value_tier": 0.02,
    "segment.algorithm_params": {"kmeans": {"n_init": 10}},
    "segment.future_cutoff": "2011-09-01",
    "segments.names": {"0": "Core customers"},
    "segments.actions": {"0": "Send the catalogue"},
}


def init_toml() -> str:
    """A commented ``segmint.toml`` with every option at its default (``segmint init``)."""
    lines = [
        "# segmint configuration: every option with its default.",
        "# Command-line flags override these values. Options commented out have no default;",
        "# the value shown is an example: remove the '# ' to use it.",
        "",
    ]
    defaults = RunConfig()
    for section, field in RunConfig.model_fields.items():
        model = type(getattr(defaults, section))
        lines.append(f"# {field.description}")
        lines.append(f"[{section}]")
        for key, f in model.model_fields.items():
            value = getattr(getattr(defaults, section), key)
            lines.append(f"# {f.description}")
            if value is None or value == {}:
                example = INIT_EXAMPLES[f"{section}.{key}"]
                lines.append(f"# {key} = {_toml_value(example)}")
            else:
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def did_you_mean(value: str, choices: Iterable[str]) -> str | None:
    """The choice closest to a misspelt ``value`` (difflib), or None; a choice that
    starts with ``value`` wins (``recency`` -> ``recency_days``, not ``frequency``)."""
    choices = list(choices)
    starts = [c for c in choices if value and c.startswith(value)]
    if len(starts) == 1:
        return starts[0]
    close = difflib.get_close_matches(value, choices, n=1)
    return close[0] if close else None


def _unknown_name(
    message: str, name: str, choices: Iterable[str], hint: str
) -> PydanticCustomError:
    """The validation error for a name that is none of ``choices``: ``message`` with
    ``{name}`` (quoted) and "; did you mean ...?" after it when one is close."""
    close = did_you_mean(name, choices)
    return PydanticCustomError(
        "unknown_name",
        message + "{close}",
        {
            "name": repr(name),
            "close": f"; did you mean {close!r}?" if close else "",
            "hint": hint,
        },
    )


def validation_error(
    exc: ValidationError, where: str, flags: Mapping[str, str] | None = None
) -> ConfigError:
    """Turn a pydantic error into one ConfigError naming the key, with a hint.

    An unknown key gets the closest valid key as its hint; a bad value gets the field's
    description (or the hint the validator gave). ``flags`` maps the dotted keys that
    came from command-line options to the option (``{"clean.disabled_rules":
    "--disable-rule"}``): an error in one of them names the option, not the key.
    """
    err = exc.errors()[0]
    fields = _fields_of(exc.title)
    raw = [str(p) for p in err["loc"]]
    # nested models (RunConfig): the fields of the section the key is in; the location
    # stops at the option (pydantic adds the member of a union, e.g. "n_clusters.int")
    model: Any = next((m for m in _MODELS if m.__name__ == exc.title), None)
    parts: list[str] = []
    section_check = False  # a check of a whole section (several of its keys together)
    for part in raw:
        parts.append(part)
        sub = model.model_fields.get(part) if model is not None else None
        ann = getattr(sub, "annotation", None)
        section_check = isinstance(ann, type) and issubclass(ann, BaseModel)
        if section_check:
            model = ann
            fields = {k: f.description or "" for k, f in ann.model_fields.items()}
        elif sub is not None:
            break
    loc = ".".join(parts)
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(parts[-1], list(fields), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
        return ConfigError(f"{where}: unknown option {loc!r}", hint=hint, code="unknown_key")
    msg = str(err["msg"]).removeprefix("Value error, ")
    field_name = next((p for p in reversed(parts) if p in fields), parts[0] if parts else "")
    description = fields.get(field_name)
    hint = f"{field_name}: {description}" if description else "see segmint --help"
    hint = (err.get("ctx") or {}).get("hint") or hint
    if not loc or (section_check and where == "options"):
        # a check of several keys together: the message names them (as options and keys)
        return ConfigError(
            msg if where == "options" else f"{where}: {msg}", hint=hint, code="invalid_value"
        )
    if flags and loc in flags:
        value = err.get("input")
        shown = f" {value}" if isinstance(value, str | int | float) else ""
        return ConfigError(f"{flags[loc]}{shown}: {msg}", hint=hint, code="invalid_value")
    return ConfigError(f"{where}: {loc}: {msg}", hint=hint, code="invalid_value")


def _fields_of(model_name: str) -> dict[str, str]:
    for model in _MODELS:
        if model.__name__ == model_name:
            return {k: f.description or "" for k, f in model.model_fields.items()}
    return {}


_MODELS: tuple[type[BaseModel], ...] = ()


#: What each kind of TOML file is, for the hint of an error reading it.
_TOML_HINTS = {
    "configuration": "`segmint init` writes one with every option",
    "mapping": 'a TOML file with a [columns] table, e.g. customer_id = "Kundennummer"',
    "thresholds": "give a thresholds TOML file ([thresholds] with four numbers per metric), "
    "a run folder or a model.segmint",
}


def _read_toml(path: str | Path, what: str) -> dict[str, Any]:
    hint = _TOML_HINTS.get(what)
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (FileNotFoundError, IsADirectoryError) as exc:
        where = f"(relative paths start from the current folder: {Path.cwd()})"
        raise ConfigError(
            f"{path}: {what} file not found", hint=f"check the path {where}; {hint}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a TOML file (it is not text)", hint=hint) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path}: not a valid TOML file ({exc})",
            hint="fix the place named: one key = value a line, text in quotes, lists in [ ]",
        ) from exc


def load_mapping_file(path: str | Path) -> dict[str, str]:
    """Read ``[columns]`` (canonical = "source") from a TOML file.

    Raises
    ------
    ConfigError
        When the file is missing, not TOML, or has no ``[columns]`` table of strings.
    """
    data = _read_toml(path, "mapping")
    columns: Any = data.get("columns")
    if not isinstance(columns, dict) or not all(isinstance(v, str) for v in columns.values()):
        raise ConfigError(
            f'{path}: needs a [columns] table of canonical = "source column" entries',
            hint='e.g.\n[columns]\ncustomer_id = "Kundennummer"\ninvoice_date = "Datum"',
        )
    return dict(columns)


def load_thresholds_file(path: str | Path) -> dict[str, list[float]]:
    """Read fixed RFM cut points: a ``[thresholds]`` table with four numbers per metric
    (``inf`` for a score no customer reaches, as segmint reports a top score that a tied
    block swallowed).

    Raises
    ------
    ConfigError
        Missing file, bad TOML, or a metric without four numbers.
    """
    path = Path(path)
    if path.is_dir():
        # a run folder: the cut points it wrote, else (runs before that file) its model's
        if (path / "rfm_thresholds.toml").is_file():
            path = path / "rfm_thresholds.toml"
        elif (path / "model.segmint").is_file():
            path = path / "model.segmint"
        else:
            raise ConfigError(
                f"{path}: a folder without rfm_thresholds.toml or model.segmint",
                hint="give a thresholds file, a run folder or a model.segmint",
            )
    if path.is_file() and zipfile.is_zipfile(path):
        from segmint.bundle import load_model  # a model bundle: its training cut points

        info = load_model(path).metadata.get("rfm") or {}
        if not info.get("cut_points"):
            raise ConfigError(f"{path}: the model has no RFM cut points")
        return _checked_thresholds(path, _from_cut_points(info["cut_points"]))
    stored = _feature_table_cut_points(path)
    if stored is not None:
        return _checked_thresholds(path, stored)
    data = _read_toml(path, "thresholds")
    table: Any = data.get("thresholds")
    metrics = ("recency_days", "frequency", "monetary")
    example = (
        "[thresholds]\nrecency_days = [180, 90, 30, 14]\nfrequency = [2, 3, 5, 8]\n"
        "monetary = [250, 500, 1000, 2000]"
    )
    if not isinstance(table, dict):
        raise ConfigError(
            f"{path}: needs a [thresholds] table with four numbers for each of "
            f"{', '.join(metrics)}",
            hint=f"e.g.\n{example}",
        )
    # each key and value checked as rfm.score checks them: the error names the wrong one
    return {k: [float(x) for x in v] for k, v in _checked_thresholds(path, table).items()}


def _from_cut_points(cut_points: dict[str, Any]) -> dict[str, list[float]]:
    """Stored cut points (``{col: {"thresholds": [...]}}``, None for a score no customer
    reached) as fixed thresholds (``inf`` for None)."""
    return {
        col: [float("inf") if v is None else float(v) for v in c["thresholds"]]
        for col, c in cut_points.items()
    }


def _feature_table_cut_points(path: Path) -> dict[str, list[float]] | None:
    """The RFM cut points stored with a customer table of ``segmint features``: a Parquet
    file (metadata inside), a CSV (its ``.meta.json`` beside it) or that ``.meta.json``;
    None for any other file. Scoring the next period on the cut points of the last one
    needed a hand-written TOML file: ``features`` writes them only into the table.

    Raises
    ------
    ConfigError
        Such a file that holds no RFM cut points.
    """
    import json

    name = path.name.lower()
    if not path.is_file() or not name.endswith((".parquet", ".pq", ".csv", ".csv.gz", ".json")):
        return None
    hint = (
        "give the customer table `segmint features` wrote (with its .meta.json beside a "
        "CSV), a thresholds TOML file, a run folder or a model.segmint"
    )
    meta: Any = None
    if name.endswith((".parquet", ".pq")):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            raw = (pq.read_schema(path).metadata or {}).get(b"segmint")
        except (OSError, pa.ArrowInvalid) as exc:
            raise ConfigError(
                f"{path}: not a TOML file, nor a readable Parquet file", hint=hint
            ) from exc
        meta = json.loads(raw) if raw else None
    else:
        side = path if name.endswith(".json") else path.with_name(path.name + ".meta.json")
        if not side.is_file():
            raise ConfigError(
                f"{path}: not a TOML file, and no {side.name} beside it with the RFM cut points",
                hint=hint,
            )
        try:
            meta = json.loads(side.read_text(encoding="utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ConfigError(f"{side}: not a readable JSON file ({exc})", hint=hint) from exc
    cut_points = (meta or {}).get("rfm", {}).get("cut_points") if isinstance(meta, dict) else None
    if not isinstance(cut_points, dict) or not cut_points:
        raise ConfigError(
            f"{path}: not a TOML file, and it holds no RFM cut points (it is not a customer "
            "table written by segmint features)",
            hint=hint,
        )
    return _from_cut_points(cut_points)


def _checked_thresholds(path: Path, table: dict[str, list[float]]) -> dict[str, list[float]]:
    """``table`` once its cut points are in order, refused naming ``path`` otherwise:
    cut points out of order were refused only at scoring, after the data was read, and
    without the file's name."""
    from segmint.rfm import _check_thresholds

    for col in ("recency_days", "frequency", "monetary"):
        try:
            _check_thresholds(table, col, col == "recency_days")
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc.message}", hint=exc.hint) from exc
    return table


def parse_map_options(values: list[str] | None) -> dict[str, str]:
    """Parse repeated ``--map canonical=source`` options."""
    out: dict[str, str] = {}
    for item in values or []:
        canonical, sep, source = item.partition("=")
        if not sep or not canonical.strip() or not source.strip():
            raise ConfigError(
                f"--map {item!r}: expected canonical=source",
                hint="e.g. --map customer_id='Customer ID'",
            )
        out[canonical.strip()] = source.strip()
    return out


_MODELS = (
    LoadConfig,
    CleanConfig,
    FeaturesConfig,
    RfmConfig,
    SegmentConfig,
    SegmentsConfig,
    ClvConfig,
    ReportConfig,
    RunConfig,
)
