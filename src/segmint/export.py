"""Campaign lists from a run folder: customers per segment, ready for a CRM upload."""

from __future__ import annotations

import contextlib
import difflib
import json
import logging
import os
import re
import stat
from pathlib import Path

import pandas as pd

from segmint.errors import ConfigError, InputError
from segmint.io import atomic_path, escape_formulas

__all__ = ["EXPORT_COLUMNS", "export_segments"]

log = logging.getLogger(__name__)

#: Columns of a campaign list, in order (those the run has).
EXPORT_COLUMNS = (
    "customer_id",
    "segment_id",
    "segment_name",
    "action",
    "recency_days",
    "frequency",
    "monetary",
    "avg_basket_value",
    "last_purchase",
    "country",
    "rfm_segment",
    "rfm_rule_set",
    "clv_value",
    "clv_expected_purchases",
    "snapshot_date",
    "model_id",
)

#: Columns rounded to cents in a campaign list (the run keeps full precision).
_ROUNDED = ("monetary", "avg_basket_value", "clv_value", "clv_expected_purchases")


def _run_facts(run_dir: Path) -> dict[str, str]:
    """The snapshot date (customers.parquet metadata), the RFM rule set when the table
    lacks its column (a run written by an earlier segmint), and the model id (as
    :attr:`SegmentModel.model_id` gives it and ``segmint score`` stores it) of a run,
    when known: a list can then be traced to the run it came from."""
    import json
    import zipfile

    import pyarrow.parquet as pq

    from segmint.rfm import rule_set_label

    facts: dict[str, str] = {}
    schema = pq.read_schema(run_dir / "customers.parquet")
    meta = schema.metadata or {}
    if b"segmint" in meta:
        stored = json.loads(meta[b"segmint"])
        snapshot = stored.get("snapshot_date")
        if snapshot:
            facts["snapshot_date"] = str(snapshot)
        rfm = stored.get("rfm")
        if isinstance(rfm, dict) and rfm.get("rule_set") and "rfm_rule_set" not in schema.names:
            # a run of an earlier segmint has rfm_segment without its rule set: the list
            # says which one named the segments all the same
            facts["rfm_rule_set"] = rule_set_label(rfm["rule_set"], rfm.get("rule_set_version"))
    try:
        with zipfile.ZipFile(run_dir / "model.segmint") as z:
            bundle = json.loads(z.read("metadata.json"))
        sha = bundle.get("model_content_sha256") or bundle.get("model_sha256")
        if sha:
            facts["model_id"] = str(sha)[:16]
    except (OSError, KeyError, ValueError, zipfile.BadZipFile):
        pass  # no readable bundle beside the table: the list has no model id
    return facts


def _slug(name: str) -> str:
    """A file-name part for a segment name, letters of any script kept."""
    return re.sub(r"[\W_]+", "_", name.lower()).strip("_") or "segment"


def _unique_slugs(wanted: list[str], chosen: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """One file name per segment: two names with the same slug ("At risk" and "At-risk",
    or names of symbols only) get ``_2``, ``_3`` instead of one overwriting the other."""
    from segmint.features import _unique

    out: list[tuple[str, pd.DataFrame]] = []
    for n in wanted:
        slug = _unique(_slug(n), [s for s, _ in out])
        out.append((slug, chosen[chosen["segment_name"] == n]))
    return out


def export_segments(
    run_dir: str | Path,
    *,
    segments: list[str] | None = None,
    fmt: str = "csv",
    out: str | Path | None = None,
    single_file: bool = False,
    escape: bool = True,
) -> list[tuple[Path, int]]:
    """Write one file per segment (or one file with a ``segment_name`` column).

    Parameters
    ----------
    run_dir : path
        Output folder of ``segmint run`` (reads its ``customers.parquet``).
    segments : list of str, optional
        Segment names to export (case-insensitive); default every segment.
    fmt : {"csv", "xlsx"}
    out : path, optional
        Folder for the files; default ``RUN_DIR/exports``.
    single_file : bool
        One file ``campaign.<fmt>`` instead of one per segment.
    escape : bool
        CSV: prefix text cells that a spreadsheet would run as a formula (``=``, ``+``,
        ``-``, ``@``, tab, CR) with ``'`` (:func:`segmint.io.escape_formulas`); numbers
        stay numbers. ``False`` for a program that reads the list. An xlsx file always
        stores text as text (never as a formula or a link), so it needs no escaping.

    Returns
    -------
    list of (path, customers)

    Raises
    ------
    ConfigError
        Unknown segment (naming the closest one) or format.
    InputError
        ``run_dir`` is not a run folder.
    """
    if fmt not in ("csv", "xlsx"):
        raise ConfigError(
            f"--format {fmt!r}: not a format for campaign lists",
            hint="use --format csv or --format xlsx",
        )
    source = Path(run_dir) / "customers.parquet"
    if not source.is_file():
        raise InputError(
            f"{run_dir}: not a segmint run folder (no customers.parquet)",
            hint="give the --out folder of `segmint run`",
            code="not_a_run",
        )
    customers = pd.read_parquet(source)
    names = list(dict.fromkeys(customers.sort_values("segment_id")["segment_name"]))
    if segments:
        wanted = []
        lower = {n.lower(): n for n in names}
        for s in segments:
            if s.lower() not in lower:
                close = difflib.get_close_matches(s, names, n=1)
                raise ConfigError(
                    f"no segment named {s!r} in {run_dir}"
                    + (f" (did you mean {close[0]!r}?)" if close else ""),
                    hint=f"segments: {', '.join(names)}",
                )
            wanted.append(lower[s.lower()])
        # a segment asked for twice (``-s champions -s Champions``) is one list: each
        # time had its own file (champions.csv, champions_2.csv) with the same customers
        wanted = list(dict.fromkeys(wanted))
    else:
        wanted = names
    customers = customers.assign(**_run_facts(Path(run_dir)))
    for c in _ROUNDED:
        if c in customers.columns:
            customers[c] = customers[c].round(2)
    cols = [c for c in EXPORT_COLUMNS if c in customers.columns]
    chosen = customers[customers["segment_name"].isin(wanted)][cols]
    chosen = chosen.sort_values(["segment_name", "customer_id"], kind="stable")
    folder = Path(out) if out else Path(run_dir) / "exports"
    folder.mkdir(parents=True, exist_ok=True)
    parts = [("campaign", chosen)] if single_file else _unique_slugs(wanted, chosen)
    targets = [(folder / f"{stem}.{fmt}", stem, frame) for stem, frame in parts]
    for path, _, _ in targets:
        if (path.exists() or path.is_symlink()) and not path.is_file():
            raise InputError(
                f"{path}: is a folder or another non-file, so the list "
                f"{path.name} cannot be written there; nothing was exported",
                hint="move or rename it, or export to another --out folder",
                code="output_not_a_file",
            )
    # every list is written to its temporary name first and all are renamed into place
    # together, then the manifest: a failure (or Ctrl-C) part way left the new lists
    # written so far beside the previous export's, with a manifest naming the old set
    written = []
    with contextlib.ExitStack() as together:
        for path, stem, frame in targets:
            tmp = together.enter_context(atomic_path(path))
            _write_list(frame, tmp, fmt, stem, escape)
            written.append((path, len(frame)))
    _replace_manifest(folder, written, customers)
    return written


def _write_list(frame: pd.DataFrame, tmp: Path, fmt: str, stem: str, escape: bool) -> None:
    """One campaign list as CSV (formulas escaped unless ``escape`` is False) or xlsx."""
    if fmt == "csv":
        (escape_formulas(frame) if escape else frame).to_csv(tmp, index=False)
        return
    # text stays text: xlsxwriter's defaults write a string starting with "=" as a
    # formula and a URL as a link (ids come from the source data)
    options = {"strings_to_formulas": False, "strings_to_urls": False}
    with pd.ExcelWriter(tmp, engine="xlsxwriter", engine_kwargs={"options": options}) as xl:
        frame.to_excel(xl, index=False, sheet_name=stem[:31])


#: The list of the files of the last export in a folder (see :func:`_replace_manifest`).
MANIFEST = "exports.json"


def _is_our_export(folder: Path, name: str) -> bool:
    """Whether ``folder/name`` can be a list this module wrote: a plain file name (no
    folder, not hidden) of the form it gives files (a segment's slug or ``campaign``,
    ``.csv`` or ``.xlsx``), a regular file (not a link, a folder or a device) and with
    the content of one (a CSV whose header starts with ``customer_id,``, or a zip). A
    manifest can be edited: one listing ``..`` crashed the export, and one listing
    ``notes.txt`` deleted it."""
    stem, dot, ending = name.rpartition(".")
    if not dot or ending not in ("csv", "xlsx") or stem != _slug(stem):
        return False
    if name != Path(name).name or "/" in name or "\\" in name or name.startswith("."):
        return False
    path = folder / name
    try:
        if not stat.S_ISREG(os.lstat(path).st_mode):
            return False
        with open(path, "rb") as fh:
            head = fh.readline(4096)
    except OSError:
        return False
    if ending == "xlsx":
        return head.startswith(b"PK\x03\x04")
    # the header of a campaign list: export columns in their order (a scored CSV,
    # customer_id,segment_id,segment_name,action,rfm_score,..., is not one)
    columns = head.decode("utf-8", "replace").strip().split(",")
    order = [c for c in EXPORT_COLUMNS if c in columns]
    return columns[:1] == ["customer_id"] and columns == order and "segment_name" in columns


def _replace_manifest(
    folder: Path, written: list[tuple[Path, int]], customers: pd.DataFrame
) -> None:
    """Make the folder hold one export: the files of the previous export that this one
    did not rewrite are removed (only those its ``exports.json`` lists and that are
    campaign lists by name and content, see :func:`_is_our_export`: other files are
    never touched, other entries are named in a warning), and the manifest lists the new
    set with its run and model. Lists of two models side by side were picked up together
    by a downstream ``*.csv``."""
    manifest = folder / MANIFEST
    names = {p.name for p, _ in written}
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("files", [])
    except (OSError, ValueError, AttributeError):
        previous = []
    if not isinstance(previous, list):  # a string would be taken letter by letter
        previous = []
    ignored = []
    for entry in previous:
        name = entry.get("file") if isinstance(entry, dict) else entry
        if not isinstance(name, str) or name in names:
            continue
        try:
            if _is_our_export(folder, name):
                (folder / name).unlink(missing_ok=True)
                continue
        except OSError:  # say, no right to delete it: left as it is
            pass
        if name:
            ignored.append(name)
    if ignored:
        log.warning(
            "%s lists %d file(s) this export did not remove, as segmint cannot have "
            "written them: %s",
            manifest,
            len(ignored),
            ", ".join(repr(n) for n in ignored[:5]) + (", ..." if len(ignored) > 5 else ""),
        )
    first = customers.iloc[0] if len(customers) else {}
    body = {
        "model_id": first.get("model_id") if len(customers) else None,
        "snapshot_date": str(first.get("snapshot_date")) if len(customers) else None,
        "rfm_rule_set": first.get("rfm_rule_set") if len(customers) else None,
        "files": [{"file": p.name, "customers": n} for p, n in written],
    }
    with atomic_path(manifest) as tmp:
        Path(tmp).write_text(json.dumps(body, indent=2, default=str), encoding="utf-8")
