"""Daily partitions on the source's time column, in one place for every kind of sync.

A run may target one day (`dagster/partition` tag) or a range of days (the
`dagster/asset_partition_range_start/end` tags of a single-run backfill); both are the same code path:
one time window `[first day 00:00, day after the last 00:00)` in UTC. A push over several days materializes
each day with that day's own counts (`metadata_by_day`).
"""

import datetime as dt
from collections.abc import Mapping, Sequence

import dagster as dg

from contentstack_assets.engine.source import Window
from contentstack_assets.spec import SourceSpec
from contentstack_assets.syncs.console import CONSOLE_RUN_CONFIG

RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


def daily_partitions(source: SourceSpec) -> dg.DailyPartitionsDefinition | None:
    """UTC days from `start_date`, today included (end_offset=1) so a schedule can sync today's changes."""
    if not source.partition_column:
        return None
    return dg.DailyPartitionsDefinition(
        start_date=source.start_date.isoformat(), timezone="UTC", end_offset=1
    )


def backfill_policy(source: SourceSpec) -> dg.BackfillPolicy | None:
    # a backfill of any range is one run: one read, one plan, one delivery
    return dg.BackfillPolicy.single_run() if source.partition_column else None


def is_partitioned_run(context: dg.AssetExecutionContext) -> bool:
    """Whether this run targets partitions: one key, or a range (where `has_partition_key` is False)."""
    return context.has_partition_key or context.has_partition_key_range


def window_of(context: dg.AssetExecutionContext) -> Window | None:
    """The UTC time window of the run's partitions (one day or a range of days); None when unpartitioned."""
    if not is_partitioned_run(context):
        return None
    window = context.partition_time_window
    return Window(window.start.astimezone(dt.UTC), window.end.astimezone(dt.UTC))


def scope_of(context: dg.AssetExecutionContext) -> str:
    """How the sync state names what a run covered: `all`, a day, or `first...last`."""
    if not is_partitioned_run(context):
        return "all"
    key_range = context.partition_key_range
    return key_range.start if key_range.start == key_range.end else f"{key_range.start}...{key_range.end}"


def covers_every_day(context: dg.AssetExecutionContext | dg.OpExecutionContext, source: SourceSpec) -> bool:
    """Whether this partitioned run covers every day from the first partition through today's (the
    `reconcile` run, or a backfill of them all)."""
    partitions = daily_partitions(source)
    if partitions is None or not is_partitioned_run(context):
        return False
    key_range = context.partition_key_range
    return (
        key_range.start <= partitions.get_first_partition_key()
        and key_range.end >= partitions.get_last_partition_key()
    )


def range_request(run_key: str, first: str, last: str, tags: dict[str, str] | None = None) -> dg.RunRequest:
    """One run over the days first..last: a single key, or the range tags of a single-run backfill. Its run
    config names the console logger (a partitioned job's default config does not reach a range run)."""
    if first == last:
        return dg.RunRequest(
            run_key=run_key, partition_key=first, tags=tags or {}, run_config=CONSOLE_RUN_CONFIG
        )
    return dg.RunRequest(
        run_key=run_key,
        tags={**(tags or {}), RANGE_START_TAG: first, RANGE_END_TAG: last},
        run_config=CONSOLE_RUN_CONFIG,
    )


def metadata_by_day(
    context: dg.AssetExecutionContext,
    metadata: dict,
    by_day: Mapping[str | None, Mapping[str, int]],
    counted: Sequence[str],
) -> dict:
    """A push's metadata for its materializations. A run over one day, or an unpartitioned one, reports its
    counts as they are. A run over several days gives each day's materialization that day's own `counted`
    keys (the rows whose partition column falls in it; what belongs to no day of the run, such as rows read
    again from other days, on its last day) and `duration_s` shared out by rows read, so that the days add
    up to the run; returns the rest, the same on every day, with the run's totals as `run_<key>`,
    `run_duration_s` and `run_days`, and its phase timings as `run_plan_s`, `run_deliver_s`, ... (a day's
    plot of a timing repeated on every day would read as that much time spent on each)."""
    keys = context.partition_keys if is_partitioned_run(context) else []
    if len(keys) < 2:
        return metadata
    last = keys[-1]
    days = {key: dict.fromkeys(counted, 0) for key in keys}
    for day, counts in by_day.items():
        figures = days.get(day, days[last])  # type: ignore[arg-type]  (None: the last day)
        for name in counted:
            figures[name] += counts.get(name, 0)
    rows = sum(figures.get("rows_read", 0) for figures in days.values())
    for figures in days.values():
        share = figures.get("rows_read", 0) / rows if rows else 1 / len(days)
        figures["duration_s"] = round(metadata["duration_s"] * share, 3)
    for key, figures in days.items():
        context.add_asset_metadata(figures, partition_key=key)
    # the run's phase timings (plan_s, deliver_s, ...) are the run's, not a day's: named so, as the totals are
    run_level = {
        (f"run_{name}" if name.endswith("_s") else name): value
        for name, value in metadata.items()
        if name not in days[last]
    }
    totals = {f"run_{name}": metadata[name] for name in (*counted, "duration_s")}
    return {**run_level, **totals, "run_days": len(keys)}
