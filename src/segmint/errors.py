"""The one exception hierarchy: every message says what went wrong, where, and how to fix it."""

from __future__ import annotations

__all__ = [
    "BundleError",
    "ConfigError",
    "DataQualityError",
    "EnvironmentFailure",
    "InputError",
    "MissingColumnError",
    "NotFittedError",
    "ParseError",
    "SegmintError",
    "SegmintWarning",
    "WrongTypeError",
]


class SegmintError(Exception):
    """Base class of every error segmint raises on purpose.

    Parameters
    ----------
    message : str
        What went wrong and where (file, column, row).
    hint : str, optional
        How to fix it, shown on its own line by the CLI and in the API's error body.
    code : str, optional
        A stable machine-readable identifier (``"missing_column"``, ...).

    The CLI exits with the error's ``exit_code``: 2 for a user mistake (fix the input or
    the options), 75 for an :class:`EnvironmentFailure`; 70 is kept for bugs and 130 for
    an interruption. ``code`` tells the errors apart for machines.
    """

    exit_code = 2
    default_code = "segmint_error"

    def __init__(self, message: str, hint: str | None = None, code: str | None = None):
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.code = code or self.default_code

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message}\nHint: {self.hint}"

    def to_dict(self) -> dict[str, str | None]:
        """The error as the one JSON shape used by the CLI (``--json``) and the API."""
        return {"error": self.code, "message": self.message, "hint": self.hint}


class ConfigError(SegmintError, ValueError):
    """An option, flag or configuration file value is invalid.

    Also a ``ValueError``, as scikit-learn users expect of an invalid parameter.
    """

    exit_code = 2
    default_code = "config_error"


class WrongTypeError(ConfigError, TypeError):
    """A function was given an object of the wrong kind (e.g. a DataFrame of raw lines
    where clean lines are expected). Also a ``TypeError`` (and a ``ValueError``, as a
    :class:`ConfigError`), so ``except TypeError`` catches it as Python users expect."""

    default_code = "wrong_type"


class InputError(SegmintError):
    """An input file or table cannot be used as it is."""

    exit_code = 2
    default_code = "input_error"


class EnvironmentFailure(InputError):
    """The machine or a service failed, not the input or the options: a full disk, a
    database or a Spark master that does not answer (or is overloaded, restarting,
    or dropped the connection).

    The CLI exits with status 75 (``EX_TEMPFAIL`` of BSD's ``sysexits.h``, "try again
    later"), so a scheduler can retry these and not a user mistake (2), which would fail
    again unchanged; the API answers 503. Still an :class:`InputError`, so code catching
    those keeps catching these.
    """

    exit_code = 75
    default_code = "environment"


class MissingColumnError(InputError):
    """A required canonical column could not be found in the source."""

    default_code = "missing_column"


class ParseError(InputError):
    """Values in a source could not be parsed; carries the file, column and row."""

    default_code = "parse_error"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        code: str | None = None,
        *,
        file: str | None = None,
        column: str | None = None,
        row: int | None = None,
    ):
        super().__init__(message, hint, code)
        self.file = file
        self.column = column
        self.row = row


class DataQualityError(SegmintError, ValueError):
    """The data loads but cannot support the requested analysis (e.g. nothing left).

    Also a ``ValueError``, as scikit-learn users expect of unusable input data.
    """

    exit_code = 2
    default_code = "data_quality"


class NotFittedError(SegmintError):
    """A model was used before it was fitted."""

    exit_code = 2
    default_code = "not_fitted"


class BundleError(SegmintError):
    """A model bundle is missing, foreign, tampered with or of an unsupported version."""

    exit_code = 2
    default_code = "bundle_error"


class SegmintWarning(UserWarning):
    """Base class of segmint's warnings."""
