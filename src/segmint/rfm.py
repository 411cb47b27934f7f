"""RFM scores 1-5 with honest tie handling, and named segments from versioned rule sets.

**Scoring.** For each of recency (reversed: fewer days is better), frequency and monetary,
a customer's score is ``1 + floor(5 * share of customers strictly worse)``: equal values
always get equal scores, and a block of tied values gets the score where the block
starts (with 60 % of customers on one order, all of them get F = 1 and the next scores
start above them). The scores are then the same as cutting at four thresholds
``t1..t4`` (the smallest values reaching each quintile), which are reported, and can be
given back as *fixed* thresholds to score another period with the same cut points.

**Named segments.** A rule set is data (shipped as TOML in ``segmint/rfm_rules``):
ordered segments, each with R, F and M score ranges, a description and an action; the
first segment whose ranges contain the customer's cell wins, and cells no segment covers
go to the rule set's "Others". Overlaps and gaps are computed on load and reported.
"""

from __future__ import annotations

import csv
import difflib
import io
import logging
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from segmint._tables import ACCEPTED, to_frame
from segmint.errors import ConfigError, WrongTypeError

__all__ = [
    "RULE_SETS",
    "RfmResult",
    "RuleSet",
    "SegmentRule",
    "load_rule_set",
    "quintile_thresholds",
    "score",
    "score_values",
]

log = logging.getLogger(__name__)

#: The rule sets shipped with segmint (name -> file in segmint/rfm_rules).
RULE_SETS = ("rf-grid", "classic-11", "rfm-r-0.3")
_METRICS = {"r": "recency_days", "f": "frequency", "m": "monetary"}
#: The columns a rule-set CSV needs, in the order a row's values are checked.
_CSV_COLUMNS = ("segment", "r_min", "r_max", "f_min", "f_max", "m_min", "m_max")


@dataclass(frozen=True)
class SegmentRule:
    """One named segment: inclusive R, F, M score ranges, a description, an action."""

    name: str
    r: tuple[int, int]
    f: tuple[int, int]
    m: tuple[int, int]
    description: str = ""
    action: str = ""

    def contains(self, r: int, f: int, m: int) -> bool:
        """Whether the cell (r, f, m) is inside all three ranges."""
        return (
            self.r[0] <= r <= self.r[1]
            and self.f[0] <= f <= self.f[1]
            and self.m[0] <= m <= self.m[1]
        )


@dataclass
class RuleSet:
    """An ordered table of segments; the first match wins, uncovered cells are ``other``.

    Attributes
    ----------
    overlaps : list of dict
        Cells matched by more than one segment, with the segment that wins.
    gaps : list of str
        Cells ("RFM" strings) matched by no segment (their customers are ``other``).
    """

    name: str
    version: str
    segments: list[SegmentRule]
    title: str = ""
    source: str = ""
    other: str = "Others"
    overlaps: list[dict[str, Any]] = field(default_factory=list)
    gaps: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lookup = np.empty((6, 6, 6), dtype=object)
        self.overlaps, self.gaps = [], []
        for r in range(1, 6):
            for f in range(1, 6):
                for m in range(1, 6):
                    hits = [s.name for s in self.segments if s.contains(r, f, m)]
                    self._lookup[r, f, m] = hits[0] if hits else self.other
                    if len(hits) > 1:
                        self.overlaps.append(
                            {"cell": f"{r}{f}{m}", "segments": hits, "winner": hits[0]}
                        )
                    elif not hits:
                        self.gaps.append(f"{r}{f}{m}")

    @property
    def label(self) -> str:
        """``name vVERSION``, to print next to segment names (a user's table without a
        version: ``name (user table)``)."""
        return rule_set_label(self.name, self.version)

    @property
    def names(self) -> list[str]:
        """Segment names in rule order, then the name for uncovered cells if any."""
        return [s.name for s in self.segments] + ([self.other] if self.gaps else [])

    def assign(self, r: np.ndarray, f: np.ndarray, m: np.ndarray) -> np.ndarray:
        """Segment names for arrays of R, F, M scores (vectorised lookup)."""
        return self._lookup[np.asarray(r, int), np.asarray(f, int), np.asarray(m, int)]

    def segment(self, name: str) -> SegmentRule | None:
        """The rule called ``name`` (None for ``other``)."""
        return next((s for s in self.segments if s.name == name), None)

    def coverage_text(self) -> str:
        """Overlaps and gaps in words, with an example of each ("" when there are none)."""
        bits = []
        if self.overlaps:
            first = self.overlaps[0]
            losers = ", ".join(first["segments"][1:])
            bits.append(
                f"{len(self.overlaps)} of the 125 R/F/M cells match more than one segment "
                f"and go to the first one listed (e.g. cell {first['cell']}: "
                f"{first['winner']}, not {losers})"
            )
        if self.gaps:
            bits.append(
                f"{len(self.gaps)} cells match no segment and go to {self.other!r} "
                f"(e.g. cell {self.gaps[0]})"
            )
        return "; ".join(bits)

    def report(self) -> dict[str, Any]:
        """Overlaps and gaps, JSON-friendly."""
        return {
            "rule_set": self.name,
            "version": self.version,
            "overlapping_cells": len(self.overlaps),
            "uncovered_cells": len(self.gaps),
            "overlaps": self.overlaps,
            "gaps": self.gaps,
        }


#: The version of a user's rule table that gives none.
USER_VERSION = "user"


def rule_set_label(name: str, version: str | None) -> str:
    """How a rule set is printed: ``rf-grid v1``; ``mine (user table)`` for a user's
    table without a version (it read "mine vuser")."""
    if not version:
        return str(name)
    return f"{name} (user table)" if version == USER_VERSION else f"{name} v{version}"


def _range(value: Any, what: str, where: str) -> tuple[int, int]:
    if value is None:
        return (1, 5)
    if isinstance(value, int) and not isinstance(value, bool):
        value = [value, value]
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise ConfigError(
            f"{where}: {what} must be [low, high] scores, got {value!r}", hint="e.g. r = [4, 5]"
        )
    lo, hi = value
    if not 1 <= lo <= hi <= 5:
        raise ConfigError(
            f"{where}: {what} range {value} is not within 1..5 with low <= high",
            hint="scores run from 1 to 5, e.g. f = [1, 2]",
        )
    return (lo, hi)


def _build(
    data: dict[str, Any],
    where: str,
    default_name: str,
    *,
    shipped: bool = False,
    places: list[str] | None = None,
    quiet: bool = False,
) -> RuleSet:
    known = {"name", "version", "title", "source", "other", "segment"}
    unknown = set(data) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {sorted(unknown)}", hint=f"a rule set has {sorted(known)}"
        )
    rows = data.get("segment")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}: no [[segment]] entries", hint="see segmint/rfm_rules")
    segments, seen = [], set()
    for i, row in enumerate(rows, start=1):
        # a CSV's rows are named by their line ("line 3"): "segment 2" had to be counted
        at = f"{where}, {places[i - 1]}" if places else f"{where}, segment {i}"
        if not isinstance(row, dict):
            # `segment = [1, 2]` was an internal error ('int' object has no attribute 'get')
            raise ConfigError(
                f"{at}: is {row!r}, not a table of name, r, f, m",
                hint='write each segment as [[segment]] with name = "..." and r, f, m ranges',
            )
        name = str(row.get("name", "")).strip()
        if not name:
            raise ConfigError(f"{at}: has no name", hint='e.g. name = "Champions"')
        if name in seen:
            raise ConfigError(
                f"{at}: segment name {name!r} is used twice",
                hint="give each segment its own name",
            )
        extra = set(row) - {"name", "r", "f", "m", "description", "action"}
        if extra:
            raise ConfigError(
                f"{at}: unknown key(s) {sorted(extra)}",
                hint="a segment has name, r, f, m, description, action",
            )
        seen.add(name)
        segments.append(
            SegmentRule(
                name,
                _range(row.get("r"), "r", at),
                _range(row.get("f"), "f", at),
                _range(row.get("m"), "m", at),
                str(row.get("description", "")),
                str(row.get("action", "")),
            )
        )
    other = str(data.get("other", "Others")).strip()
    if not other:
        raise ConfigError(
            f"{where}: other is empty",
            hint='name the cells no segment covers, e.g. other = "Others"',
        )
    rule_set = RuleSet(
        name=str(data.get("name") or default_name),
        version=str(data.get("version", USER_VERSION)),
        segments=segments,
        title=str(data.get("title", "")),
        source=str(data.get("source", "")),
        other=other,
    )
    if rule_set.gaps and other in seen:
        # its customers and those of the uncovered cells shared one name, and every count
        # by segment listed it twice, each time with both groups (shares above 100 %)
        raise ConfigError(
            f"{where}: segment {other!r} has the name given to the {len(rule_set.gaps)} "
            f"cells no segment covers (e.g. cell {rule_set.gaps[0]})",
            hint="rename that segment or cover every cell (in a TOML table, other = "
            '"Rest" names the uncovered cells)',
        )
    if (rule_set.overlaps or rule_set.gaps) and not quiet:
        # a shipped table's overlaps and gaps are documented; in the user's own table
        # they are most likely a typo, and must be seen without -v
        log.log(
            logging.INFO if shipped else logging.WARNING,
            "rule set %s: %s",
            rule_set.label,
            rule_set.coverage_text(),
        )
    return rule_set


def load_rule_set(
    name_or_path: str | Path, *, name: str | None = None, quiet: bool = False
) -> RuleSet:
    """A shipped rule set by name, or a user table from a TOML or CSV file, validated.

    A CSV has the columns ``segment, r_min, r_max, f_min, f_max, m_min, m_max`` and
    optionally ``description, action``; its rule-set name is the file name, unless
    ``name`` is given (a table stored in a model bundle is read from a temporary copy,
    whose file name would otherwise be printed, and stored, as the rule set's).
    ``quiet`` leaves out the warning on overlapping or uncovered cells: for a check before
    any data is read, when the rule set is loaded again to score.

    Raises
    ------
    ConfigError
        Unknown name, unreadable file, bad ranges, duplicate names.
    """
    text = str(name_or_path)
    if text in RULE_SETS:
        raw = (
            resources.files("segmint")
            .joinpath("rfm_rules", f"{text}.toml")
            .read_text(encoding="utf-8")
        )
        return _build(tomllib.loads(raw), f"rule set {text}", text, shipped=True, quiet=quiet)
    path = Path(text)
    if not path.is_file() and path.suffix.lower() in (".toml", ".csv"):
        raise ConfigError(
            f"{text}: rule set file not found",
            hint="a relative path on the command line starts from the current folder "
            f"({Path.cwd()}), one in segmint.toml from the folder of that file",
        )
    if not path.is_file():
        raise ConfigError(
            f"unknown rule set {text!r}",
            hint=f"use one of {', '.join(RULE_SETS)} or the path of a .toml or .csv file",
        )
    if path.suffix.lower() == ".toml":
        try:
            text = path.read_bytes().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{path}: not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at position "
                f"{exc.start})",
                hint="a TOML file is UTF-8: save it as UTF-8 in your editor",
            ) from exc
        try:
            return _build(tomllib.loads(text), str(path), name or path.stem, quiet=quiet)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{path}: not valid TOML ({exc})",
                hint="see the shipped rule sets in segmint/rfm_rules for the format",
            ) from exc
    if path.suffix.lower() == ".csv":
        text = _csv_text(path)
        reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=_csv_delimiter(text))
        # "segment, r_min, ..." (spaces after the commas) was refused as missing r_min
        reader.fieldnames = [f.strip() for f in reader.fieldnames or []]
        rows, row_lines = [], []
        for row in reader:
            if not any((v or "").strip() for k, v in row.items() if k is not None):
                continue  # a blank row a spreadsheet saves as ";;;;;;"
            rows.append(row)
            row_lines.append(reader.line_num)  # where the row ends (a quoted cell may wrap)
        need = set(_CSV_COLUMNS)
        if not rows or not need <= set(rows[0]):
            found = [c for c in (rows[0] if rows else []) if c is not None]
            missing = [c for c in _CSV_COLUMNS if c not in found]
            raise ConfigError(
                f"{path}: needs the columns {', '.join(_CSV_COLUMNS)}"
                + (f"; missing {', '.join(missing)}" if rows else "; it has no rows"),
                hint=(f"columns found: {', '.join(found)}; " if found else "")
                + "optional: description, action",
            )
        known = {*_CSV_COLUMNS, "description", "action"}
        unknown = [f for f in reader.fieldnames if f and f not in known]
        if unknown:
            # a misspelt optional column ("descripton") left every description empty
            close = {
                u: difflib.get_close_matches(u.lower(), sorted(known), n=1, cutoff=0.6)
                for u in unknown
            }
            meant = [f"{u!r} (did you mean {c[0]!r}?)" if c else repr(u) for u, c in close.items()]
            raise ConfigError(
                f"{path}: unknown {'column' if len(unknown) == 1 else 'columns'} "
                f"{', '.join(meant)}",
                hint=f"the columns are {', '.join(_CSV_COLUMNS)} and optionally description, "
                "action",
            )
        segments = []
        for i, row in zip(row_lines, rows, strict=True):
            # a short row has None for its missing cells (int(None) was an internal error)
            empty = [c for c in _CSV_COLUMNS if not (row.get(c) or "").strip()]
            if empty:
                raise ConfigError(
                    f"{path}, line {i}: no value for {', '.join(empty)}",
                    hint="every row needs a segment name and six scores "
                    "(r_min, r_max, f_min, f_max, m_min, m_max), e.g. Best,4,5,4,5,1,5",
                )
            try:
                ranges = {k: [int(row[f"{k}_min"]), int(row[f"{k}_max"])] for k in "rfm"}
            except ValueError as exc:
                raise ConfigError(
                    f"{path}, line {i}: score ranges must be whole numbers",
                    hint="scores run from 1 to 5, e.g. Best,4,5,4,5,1,5",
                ) from exc
            segments.append(
                {
                    "name": row["segment"].strip(),
                    **ranges,
                    "description": row.get("description") or "",
                    "action": row.get("action") or "",
                }
            )
        return _build(
            {"name": name or path.stem, "version": USER_VERSION, "segment": segments},
            str(path),
            name or path.stem,
            places=[f"line {n}" for n in row_lines],
            quiet=quiet,
        )
    raise ConfigError(
        f"{path}: a rule set file must be .toml or .csv",
        hint="see the shipped rule sets in segmint/rfm_rules for the format",
    )


def _csv_delimiter(text: str) -> str:
    """The separator of a rule-set CSV: the one of ``,``, ``;`` and tab that splits its
    header into the most expected column names (a spreadsheet in a German or French
    locale saves "CSV" with ``;``, which was refused as missing every column)."""
    first = text.split("\n", 1)[0]
    return max(
        (",", ";", "\t"),
        key=lambda d: len({c.strip() for c in first.split(d)} & set(_CSV_COLUMNS)),
    )


def _csv_text(path: Path) -> str:
    """The text of a rule-set CSV: UTF-8 (a spreadsheet's "CSV UTF-8" starts with a
    byte-order mark, which would otherwise be part of the first column's name), else
    Windows-1252, as a spreadsheet on Windows saves plain "CSV" (an accented segment name
    was an internal error), else Latin-1."""
    raw = path.read_bytes()
    for encoding in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(encoding)
        except UnicodeDecodeError:
            continue
    return raw.decode("latin-1")


# ---------------------------------------------------------------- scoring
def quintile_thresholds(values: np.ndarray) -> list[float | None]:
    """The four cut points ``t1..t4`` for scores 2..5 ("higher is better" values).

    ``t_k`` is the smallest value whose share of strictly smaller values is at least
    ``k/5``; None when no value gets there (a tied block swallowed that score).
    """
    x = np.sort(np.asarray(values, dtype=float))
    n = len(x)
    if n == 0:
        return [None] * 4
    uniq = np.unique(x)
    below = np.searchsorted(x, uniq, side="left")
    out: list[float | None] = []
    for k in range(1, 5):
        ok = np.nonzero(5 * below >= k * n)[0]
        out.append(float(uniq[ok[0]]) if len(ok) else None)
    return out


def score_values(
    values: np.ndarray, thresholds: list[float | None], lower_is_better: bool = False
) -> np.ndarray:
    """Scores 1-5: one plus the number of thresholds the value reaches.

    Counted with one binary search per value in the sorted thresholds (a count does not
    depend on their order); missing values (NaN) reach none and score 1.
    """
    v = np.asarray(values, dtype=float)
    ts = np.sort(np.array([t for t in thresholds if t is not None], dtype=float))
    if lower_is_better:  # thresholds >= v
        reached = len(ts) - np.searchsorted(ts, v, side="left")
    else:  # thresholds <= v
        reached = np.searchsorted(ts, v, side="right")
    return np.where(np.isnan(v), 1, reached + 1).astype(np.int64)


@dataclass
class RfmResult:
    """Scores, cells and segment names per customer, and how they were made.

    Attributes
    ----------
    table : pandas.DataFrame
        ``customer_id, r_score, f_score, m_score, rfm_score`` (the cell, e.g. ``"555"``),
        ``rfm_segment``, ``rfm_rule_set`` (the rule set's label, e.g. ``rf-grid v1``:
        the same segment names mean other cells in other rule sets, so every table
        that carries them says which one named them).
    cut_points : dict
        Per metric: the column, the four thresholds, and whether lower is better.
    method : str
        ``"quantile"`` or ``"fixed"``.
    rule_set : RuleSet
    """

    table: pd.DataFrame
    cut_points: dict[str, dict[str, Any]]
    method: str
    rule_set: RuleSet

    def segments(self) -> pd.DataFrame:
        """Customers per named segment (every segment of the rule set, empty ones too)."""
        counts = self.table["rfm_segment"].value_counts()
        rows = []
        for name in self.rule_set.names:
            rule = self.rule_set.segment(name)
            n = int(counts.get(name, 0))
            rows.append(
                {
                    "segment": name,
                    "customers": n,
                    "share": n / len(self.table) if len(self.table) else 0.0,
                    "description": rule.description if rule else "cells no rule covers",
                    "action": rule.action if rule else "",
                }
            )
        return pd.DataFrame(rows)

    def metadata(self) -> dict[str, Any]:
        """What is stored with outputs: method, cut points, rule set name and version."""
        return {
            "method": self.method,
            "cut_points": self.cut_points,
            "rule_set": self.rule_set.name,
            "rule_set_version": self.rule_set.version,
        }


def score(
    features: Any,
    *,
    rule_set: str | Path | RuleSet = "rf-grid",
    method: Literal["quantile", "fixed"] = "quantile",
    thresholds: dict[str, list[float]] | None = None,
) -> RfmResult:
    """R, F and M scores 1-5, the RFM cell and the named segment of every customer.

    Parameters
    ----------
    features : CustomerFeatures or pandas.DataFrame
        Needs ``customer_id, recency_days, frequency, monetary``.
    rule_set : str, path or RuleSet
        ``"rf-grid"`` (default), ``"classic-11"``, ``"rfm-r-0.3"``, or a TOML/CSV file.
    method : {"quantile", "fixed"}
        Quintile cut points from these customers, or the given ``thresholds``.
    thresholds : dict, optional
        For ``method="fixed"``: ``{"recency_days": [t1..t4], "frequency": [...],
        "monetary": [...]}``; a score is one plus the number of thresholds reached
        (for recency: at or below). Reuse a previous result's ``cut_points`` to compare
        periods on stable cut points.

    Returns
    -------
    RfmResult

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"customer_id": list("abcde"), "recency_days": [1, 10, 30, 90, 300],
    ...                    "frequency": [9, 5, 3, 2, 1], "monetary": [900, 500, 300, 200, 100]})
    >>> score(df).table["rfm_score"].tolist()
    ['555', '444', '333', '222', '111']
    """
    from segmint.clean import CleanResult

    if isinstance(features, CleanResult) or hasattr(features, "cleaned"):
        raise WrongTypeError(
            f"score takes the customer table, not the clean lines ({type(features).__name__})",
            hint="build it first: score(segmint.features.customer_features(prepared))",
        )
    frame = to_frame(features, "score")
    if frame is None:
        raise WrongTypeError(
            f"score takes a customer table (CustomerFeatures, {ACCEPTED}), not a "
            f"{type(features).__module__}.{type(features).__qualname__}",
            hint="pass segmint.features.customer_features(...) or its to_pandas()",
        )
    missing = [c for c in ("customer_id", *_METRICS.values()) if c not in frame.columns]
    if missing:
        raise ConfigError(
            f"RFM scoring needs the columns {missing}",
            hint="compute them with segmint.features.customer_features",
        )
    rules = rule_set if isinstance(rule_set, RuleSet) else load_rule_set(rule_set)
    if method not in ("quantile", "fixed"):
        raise ConfigError(f"unknown RFM method {method!r}", hint="use 'quantile' or 'fixed'")
    if method == "fixed" and not thresholds:
        raise ConfigError(
            "method 'fixed' needs thresholds",
            hint="give four cut points per metric, e.g. frequency = [2, 3, 5, 8]",
        )
    cut_points: dict[str, dict[str, Any]] = {}
    scores: dict[str, np.ndarray] = {}
    for letter, col in _METRICS.items():
        values = frame[col].to_numpy(dtype=float)
        if np.isnan(values).any():
            raise ConfigError(
                f"column {col} has missing values; RFM scores need all three",
                hint="check the feature table",
            )
        lower = letter == "r"
        if method == "quantile":
            cuts = quintile_thresholds(-values if lower else values)
            cuts = [None if c is None else (-c if lower else c) for c in cuts]
        else:
            cuts = _check_thresholds(thresholds or {}, col, lower)
        scores[letter] = score_values(values, cuts, lower_is_better=lower)
        cut_points[col] = {
            "thresholds": cuts,
            "lower_is_better": lower,
            "rule": (
                "score = 1 + number of thresholds the value is at or below"
                if lower
                else "score = 1 + number of thresholds the value reaches"
            ),
        }
    r, f, m = scores["r"], scores["f"], scores["m"]
    table = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "r_score": r,
            "f_score": f,
            "m_score": m,
            "rfm_score": (
                pd.Series(r).astype(str) + pd.Series(f).astype(str) + pd.Series(m).astype(str)
            ).to_numpy(),
            "rfm_segment": rules.assign(r, f, m),
            "rfm_rule_set": rules.label,
        }
    )
    return RfmResult(table, cut_points, method, rules)


def thresholds_toml(cut_points: dict[str, dict[str, Any]]) -> str:
    """The cut points of a scoring as a ``--rfm-thresholds`` file (``[thresholds]``, four
    numbers per metric, ``inf`` for a score no customer reached), so that another period
    can be scored on the same scale."""
    lines = [
        "# RFM cut points for scores 2, 3, 4 and 5 (recency: at or below; frequency and",
        "# monetary: at or above). Score another period on this scale with",
        "# --rfm-thresholds this-file. inf: no customer reached that score.",
        "[thresholds]",
    ]
    for col in ("recency_days", "frequency", "monetary"):
        values = cut_points[col]["thresholds"]
        lines.append(
            f"{col} = [{', '.join('inf' if v is None else repr(float(v)) for v in values)}]"
        )
    return "\n".join(lines) + "\n"


def _check_thresholds(
    thresholds: dict[str, list[float | None]], col: str, lower: bool
) -> list[float | None]:
    """Four fixed cut points of ``col``, validated. A score no value reaches is None
    (written ``inf`` in a thresholds file): quintiles give it when a tied block of the
    best value swallows the top scores, and such cut points must score again as they
    were stored. Only the last cut points can be unreachable."""
    example = f"e.g. {col} = " + {
        "recency_days": "[180, 90, 30, 14]",
        "monetary": "[250, 500, 1000, 2000]",
    }.get(col, "[2, 3, 5, 8]")
    if not isinstance(thresholds, dict):
        raise ConfigError(
            f"fixed thresholds must be a mapping of recency_days, frequency and monetary to "
            f"four cut points each, got {type(thresholds).__name__}",
            hint='e.g. {"recency_days": [180, 90, 30, 14], "frequency": [2, 3, 5, 8], '
            '"monetary": [250, 500, 1000, 2000]}',
        )
    unknown = [k for k in thresholds if k not in _METRICS.values()]
    if unknown:
        raise ConfigError(
            f"fixed thresholds: unknown {'key' if len(unknown) == 1 else 'keys'} "
            f"{', '.join(map(repr, unknown))}",
            hint="the keys are recency_days, frequency and monetary",
        )
    if col not in thresholds:
        raise ConfigError(f"fixed thresholds for {col} are missing", hint=example)
    cuts = thresholds[col]
    if not isinstance(cuts, list | tuple) or len(cuts) != 4:
        raise ConfigError(
            f"fixed thresholds for {col} must be four numbers, got {cuts!r}", hint=example
        )
    out: list[float | None] = []
    for c in cuts:
        # True is an int to Python and scored as 1: a typo, not a cut point
        number = isinstance(c, int | float | np.integer | np.floating) and not isinstance(
            c, bool | np.bool_
        )
        if c is not None and (not number or np.isnan(float(c))):
            raise ConfigError(
                f"fixed thresholds for {col} must be numbers, got {c!r} in {list(cuts)!r}",
                hint=f"{example}; inf for a score no customer reaches",
            )
        value = None if c is None else float(c)
        if lower and value is not None and -np.inf < value < 0:
            raise ConfigError(
                f"fixed thresholds for {col}: {c!r} days is below 0, which no customer reaches",
                hint=f"write inf for a score no customer reaches ({example})",
            )
        out.append(None if value is None or np.isinf(value) else value)
    given = [c for c in out if c is not None]
    if None in out[: len(given)]:
        raise ConfigError(
            f"fixed thresholds for {col}: only the highest scores can be unreachable "
            f"(inf), got {cuts!r}",
            hint=example,
        )
    diffs = np.diff(np.asarray(given, dtype=float))
    if (lower and (diffs > 0).any()) or (not lower and (diffs < 0).any()):
        raise ConfigError(
            f"fixed thresholds for {col} must be "
            + ("decreasing (fewer days is better)" if lower else "increasing"),
            hint=f"got {cuts}",
        )
    return out
