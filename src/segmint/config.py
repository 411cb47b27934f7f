"""Pydantic models for segmint's options; TOML loading; every field documented.

Later stages add their sections here; one model tree, ``extra="forbid"`` so a misspelt key
is an error naming the closest valid key.
"""

from __future__ import annotations

import difflib
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from segmint.errors import ConfigError

__all__ = [
    "DEFAULT_NON_PRODUCT_CODES",
    "DEFAULT_NON_PRODUCT_PREFIXES",
    "CleanConfig",
    "LoadConfig",
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
            raise ValueError("outlier_quantile must be between 0.5 and 1 (e.g. 0.9999)")
        return v


def validation_error(exc: ValidationError, where: str) -> ConfigError:
    """Turn a pydantic error into one ConfigError naming the key, with a hint.

    An unknown key gets the closest valid key as its hint; a bad value gets the field's
    description.
    """
    err = exc.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    fields = _fields_of(exc.title)
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(str(err["loc"][-1]), list(fields), n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
        return ConfigError(f"{where}: unknown option {loc!r}", hint=hint, code="unknown_key")
    msg = str(err["msg"]).removeprefix("Value error, ")
    field_name = str(err["loc"][0]) if err["loc"] else ""
    description = fields.get(field_name)
    hint = f"{field_name}: {description}" if description else "see segmint --help"
    return ConfigError(f"{where}: {loc}: {msg}", hint=hint, code="invalid_value")


def _fields_of(model_name: str) -> dict[str, str]:
    for model in (LoadConfig, CleanConfig):
        if model.__name__ == model_name:
            return {k: f.description or "" for k, f in model.model_fields.items()}
    return {}


def _read_toml(path: str | Path, what: str) -> dict[str, Any]:
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"{path}: {what} file not found") from exc
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid TOML file ({exc})") from exc


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
    """Read fixed RFM cut points: a ``[thresholds]`` table with four numbers per metric.

    Raises
    ------
    ConfigError
        Missing file, bad TOML, or a metric without four numbers.
    """
    data = _read_toml(path, "thresholds")
    table: Any = data.get("thresholds")
    metrics = ("recency_days", "frequency", "monetary")
    example = (
        "[thresholds]\nrecency_days = [180, 90, 30, 14]\nfrequency = [2, 3, 5, 8]\n"
        "monetary = [250, 500, 1000, 2000]"
    )
    if (
        not isinstance(table, dict)
        or set(table) != set(metrics)
        or not all(
            isinstance(v, list) and len(v) == 4 and all(isinstance(x, int | float) for x in v)
            for v in table.values()
        )
    ):
        raise ConfigError(
            f"{path}: needs a [thresholds] table with four numbers for each of "
            f"{', '.join(metrics)}",
            hint=f"e.g.\n{example}",
        )
    return {k: [float(x) for x in v] for k, v in table.items()}


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
