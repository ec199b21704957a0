"""Turning engine results into Dagster metadata and errors (markdown tables, failures)."""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

import dagster as dg
import pandas as pd

from contentstack_assets.engine.source import SourceError
from contentstack_assets.engine.state import StateStoreError
from contentstack_assets.personalize.client import PersonalizeError

T = TypeVar("T")

SAMPLE_ROWS = 20  # rows a sample table shows; the rest are listed by the command its note names
CELL_CHARS = 120
UID_CHARS = 40  # a long uid is cut in a table so that the reason beside it stays in view
ROW_NUMBER_MEANING = (
    "row_number: the row's place in this run's read of the source (1 = the first row read); the source "
    "has no row order of its own, so find the row by its user_uid."
)
SOURCE_KEY_MEANING = (
    "source_key: the row's primary key in its source table, what finds it there; row_number: its place in "
    "this run's read of the source (1 = the first row read)."
)


def markdown_table(rows: Sequence[dict], columns: Sequence[str], empty: str = "(none)") -> dg.MetadataValue:
    """A markdown table of `rows`; a column whose name ends in "uid" (user_uid, source_uid, ...) holds uids,
    shown by `shown_uid`."""
    if not rows:
        return dg.MetadataValue.md(empty)
    uids = {column for column in columns if column.endswith("uid")}
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [
            shown_uid(row.get(column)) if column in uids else _cell(row.get(column)) for column in columns
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _is_null(value: object) -> bool:
    return (
        value is None or value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value))
    )


def _cell(value: object, limit: int = CELL_CHARS) -> str:
    """A value as a table cell: text as it is (no quotes added), control characters escaped, cut to
    `limit` characters with "…"; other values as JSON; null as empty."""
    if _is_null(value):
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return _escaped(_cut(text, limit))


def shown_uid(value: object, limit: int = UID_CHARS) -> str:
    """A uid as a table cell: null as empty; a uid that is empty or has whitespace at its ends quoted,
    its spaces shown as "␠", so that "  " and "u1 " cannot pass for nothing and "u1"; cut to `limit`."""
    if _is_null(value):
        return ""
    text = str(value)
    if text == "" or text != text.strip():
        return '"' + _escaped(_cut(text, limit - 2)).replace(" ", "␠") + '"'
    return _escaped(_cut(text, limit))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _escaped(text: str) -> str:
    """Control characters as escapes (a newline would end the table's row), pipes escaped."""
    text = "".join(repr(char)[1:-1] if _is_control(char) else char for char in text)
    return text.replace("|", "\\|")


def _is_control(char: str) -> bool:
    return ord(char) < 0x20 or 0x7F <= ord(char) < 0xA0


def rejected_sample(
    rejected: pd.DataFrame,
    limit: int = SAMPLE_ROWS,
    columns: Sequence[str] = ("user_uid", "reason", "row_number"),
) -> dg.MetadataValue:
    """The first `limit` rows of a rejected frame (row_number, user_uid, reason, and for events and merges their
    own columns) as a table of `columns`, a note saying what row_number counts, and, when rows are left out,
    how many and the command that lists them all."""
    keyed = "source_key" in rejected and rejected["source_key"].notna().any()
    if keyed and "source_key" not in columns:  # the source table's key, first: it finds the row
        columns = ["source_key", *columns]
    table = markdown_table(rejected.head(limit).to_dict("records"), columns, "(no rows rejected)")
    if rejected.empty:
        return table
    notes = [SOURCE_KEY_MEANING if keyed else ROW_NUMBER_MEANING] if "row_number" in columns else []
    return _with_notes(table, [*notes, *_left_out(min(limit, len(rejected)), len(rejected), "rejected")])


def failures_sample(
    failures: Iterable[tuple[T, object]], key: Callable[[T], str], limit: int = SAMPLE_ROWS
) -> dg.MetadataValue:
    """The first `limit` failed requests (user, status, attempts, error), and, when some are left out, how
    many and the command that lists them all."""
    failures = list(failures)
    rows = [
        {
            "user_uid": key(request),
            "status": response.status,
            "attempts": response.attempts,
            "error": response.error,
        }
        for request, response in failures[:limit]
    ]
    table = markdown_table(rows, ["user_uid", "status", "attempts", "error"], "(no failures)")
    return _with_notes(table, _left_out(len(rows), len(failures), "failed"))


LISTED = {"rejected": "rejected rows", "failed": "failed users"}
DRY_RUN_TAG = "contentstack/dry_run"


def _left_out(shown: int, total: int, command: str) -> list[str]:
    if shown >= total:
        return []
    step = _current_step()
    if step is not None and step.dry_run:
        where = "a dry run records none of them in the sync state: a run that is not a dry run lists them"
    else:
        where = f"all of them: `{listing_command(command, step)}`"
    return [f"{shown} of {total} {LISTED[command]} shown; {where}"]


def _with_notes(table: dg.MetadataValue, notes: list[str]) -> dg.MetadataValue:
    return dg.MetadataValue.md("\n\n".join([table.value, *notes])) if notes else table


@dataclass(frozen=True)
class _Step:
    sync: str
    run_id: str
    dry_run: bool


def listing_command(command: str, step: _Step | None = None) -> str:
    """The shell command that lists every rejected row (`rejected`) or failed user (`failed`) of this run
    of this sync (`_current_step`; outside a step, placeholders)."""
    step = step or _current_step()
    sync, run_id = (step.sync, step.run_id) if step else ("NAME", "RUN_ID")
    return f"contentstack-assets {command} --sync {sync} --run {run_id}"


def _current_step() -> _Step | None:
    """The sync, run and dry-run flag of the Dagster step running now (`OpExecutionContext.get()`), so that
    every table of a step points at the same listing without each caller passing them; None outside a step.
    The sync is named by the step's asset keys, `[*key_prefix, NAME, asset]` (syncs/labels.py)."""
    try:
        context = dg.OpExecutionContext.get()
    except dg.DagsterInvariantViolationError:
        return None
    sync = "NAME"
    if context.has_assets_def:
        names = {key.path[-2] for key in context.assets_def.keys if len(key.path) > 1}
        sync = names.pop() if len(names) == 1 else sync
    dry_run = context.run.tags.get(DRY_RUN_TAG) == "true" or _configures_dry_run(
        context.run.run_config.get("ops")
    )
    return _Step(sync, context.run_id, dry_run)


def _configures_dry_run(config: object) -> bool:
    """Whether the ops of a run config set `dry_run: true` on any op (a push, or a shard of one)."""
    if not isinstance(config, dict):
        return False
    return config.get("dry_run") is True or any(_configures_dry_run(value) for value in config.values())


@contextmanager
def user_errors():
    """Errors the user must fix (source, API configuration, a state store newer than the code) become one
    clear Dagster failure, not a traceback."""
    try:
        yield
    except (SourceError, PersonalizeError, StateStoreError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


def source_metadata(column_types: dict[str, str], frame: object) -> dict[str, object]:
    """Dagster's standard metadata of a source asset: its row count and its columns with their source
    types (a table's declared SQL types; for a query, the Python type its driver returned: a reader's
    `column_types` after its read)."""
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, type) for name, type in column_types.items()]
        ),
    }


PEAK = "process_peak_rss_mib"


def peaks_by_shard(parts: Sequence[object]) -> dict[str, float | list[float]]:
    """The peak memory of each shard's step process (`peak_rss_mib`): `process_peak_rss_mib_by_shard`, and
    their largest as `process_peak_rss_mib` (the key an unsharded step reports)."""
    peaks = [part.peak_rss_mib for part in parts]
    if not peaks or any(peak is None for peak in peaks):
        return {}
    return {PEAK: max(peaks), f"{PEAK}_by_shard": peaks}


def process_peak_memory() -> dict[str, float]:
    """`process_peak_rss_mib`: the most memory this process has held so far, for a shard's step: its own
    process under the multiprocess, Celery or Kubernetes executors (one process for every step in-process).
    On Linux the high-water mark of the process's own memory (`VmHWM`: `ru_maxrss` would also count what
    the process that started it held, which Linux carries over); elsewhere `ru_maxrss`; nothing where the
    platform cannot tell (Windows)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return {PEAK: round(int(line.split()[1]) / 1024, 1)}  # kB
    except OSError:
        pass
    try:
        import resource
    except ImportError:
        return {}
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return {PEAK: round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)}
