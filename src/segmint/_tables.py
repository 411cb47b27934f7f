"""Tables from other libraries: anything with the Arrow PyCapsule stream interface.

polars DataFrames, pyarrow Tables and RecordBatchReaders, DuckDB relations, ibis tables
and pandas DataFrames all implement ``__arrow_c_stream__`` (the Arrow C stream
interface). segmint reads such an object once, as Arrow, without going through pandas:
DuckDB scans the Arrow table where it stands (polars' buffers are shared, not copied),
and a one-shot stream (a ``RecordBatchReader``) is not read twice.
"""

from __future__ import annotations

from typing import Any, Protocol

import pandas as pd
import pyarrow as pa

from segmint.errors import InputError, WrongTypeError

__all__ = [
    "ACCEPTED",
    "ArrowStreamTable",
    "has_arrow_stream",
    "refuse_lazy",
    "to_arrow",
    "to_frame",
]

#: What the functions that take a table accept, for their messages.
ACCEPTED = (
    "a pandas DataFrame or any table with the Arrow stream interface (pyarrow Table or "
    "RecordBatchReader, polars DataFrame, DuckDB relation)"
)


class ArrowStreamTable(Protocol):
    """Any object with the Arrow PyCapsule stream interface (for type hints)."""

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any: ...


def _kind(obj: Any) -> str:
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


def has_arrow_stream(obj: Any) -> bool:
    """Whether ``obj`` implements the Arrow PyCapsule stream interface."""
    return hasattr(type(obj), "__arrow_c_stream__")


def refuse_lazy(obj: Any, who: str) -> None:
    """A clear error for a lazy query (a polars ``LazyFrame``): it holds no rows until it
    is collected, and it has no Arrow stream to read them from."""
    if type(obj).__name__ == "LazyFrame" and hasattr(obj, "collect"):
        raise WrongTypeError(
            f"{who} got a polars LazyFrame, which is a query, not data",
            hint="collect it first: pass lazy_frame.collect()",
        )


def _read(obj: Any, who: str) -> pa.Table | None:
    """``obj``'s Arrow stream read whole; None when the stream is not a table (a
    column: a pandas or polars Series, a pyarrow ChunkedArray)."""
    try:
        return pa.table(obj)
    except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError) as exc:
        if "non-struct" in str(exc):
            return None
        raise InputError(
            f"{who}: the {_kind(obj)} given could not be read as an Arrow table ({exc})",
            hint="convert it to a pyarrow Table or a pandas DataFrame first",
            code="unreadable_file",
        ) from None
    except Exception as exc:  # a DuckDB relation of a closed connection, a failed query
        if type(exc).__module__.split(".")[0] not in ("duckdb", "_duckdb", "polars"):
            raise
        raise InputError(
            f"{who}: the {_kind(obj)} given could not be read: {exc}",
            hint="check that its query runs (and that its DuckDB connection is still open)",
            code="unreadable_file",
        ) from None


def to_arrow(obj: Any, who: str = "the data") -> pa.Table:
    """``obj`` (a pyarrow Table or any object with ``__arrow_c_stream__``) as a pyarrow
    Table, read once through the Arrow C stream interface (no pandas copy).

    Raises
    ------
    WrongTypeError
        For a lazy polars query, or a stream that is one column, not a table.
    InputError
        When the object cannot be read (e.g. a DuckDB relation whose connection was
        closed).
    """
    if isinstance(obj, pa.Table):
        return obj
    refuse_lazy(obj, who)
    table = _read(obj, who)
    if table is None:
        raise WrongTypeError(
            f"{who} got a {_kind(obj)}, which is one column, not a table",
            hint="pass a table (e.g. series.to_frame())",
        )
    return table


def _decimals_as_floats(table: pa.Table) -> pa.Table:
    """DECIMAL columns (money in SQL databases, DuckDB sums of them) as float64: pandas
    makes them columns of ``decimal.Decimal`` objects, which every numeric step refused
    as "not numeric (dtype object)"."""
    for i, field in enumerate(table.schema):
        if pa.types.is_decimal(field.type):
            table = table.set_column(i, field.name, table.column(i).cast(pa.float64()))
    return table


def to_frame(obj: Any, who: str = "the data") -> pd.DataFrame | None:
    """A pandas DataFrame of a table from another library, for the stages that work in
    pandas (RFM scores, profiles, the model): a pandas DataFrame as it is; an Arrow
    stream (pyarrow, polars, DuckDB, ibis) read as in :func:`to_arrow`, its DECIMAL
    columns as floats; another object with ``to_pandas()`` (CustomerFeatures) by it.
    None when ``obj`` is not a table (arrays, lists, a Series: the caller treats them
    as it did before)."""
    if isinstance(obj, pd.DataFrame):
        return obj
    if isinstance(obj, pd.Series):
        return None
    refuse_lazy(obj, who)
    if has_arrow_stream(obj):
        table = _read(obj, who)
        return None if table is None else _decimals_as_floats(table).to_pandas()
    if hasattr(obj, "to_pandas"):
        frame = obj.to_pandas()
        return frame if isinstance(frame, pd.DataFrame) else None
    return None
