"""When a sync runs on the clock: `N_schedule` on the spec's cron, over the days since the last delivered
read, and `N_reconcile`, a whole read of a partitioned sync diffed against the sync state.

No `from __future__ import annotations` here: Dagster reads the `context` hints of these functions.
"""

import datetime as dt

import dagster as dg

from contentstack_assets.spec import Sync
from contentstack_assets.syncs.partitions import range_request
from contentstack_assets.syncs.runs import SyncJob, recorded_by_dry_run, run_in_progress

LOOKBACK = dt.timedelta(days=1)  # a scheduled run reaches back this far before the last delivered read


def _delivering_records(instance: dg.DagsterInstance, push_key: dg.AssetKey, limit: int = 200):
    """The push asset's latest materializations, newest first: all delivered, but for those of dry runs of
    earlier versions (dry runs materialize nothing now)."""
    records = instance.fetch_materializations(push_key, limit=limit).records
    for record in records:
        if not recorded_by_dry_run(record.asset_materialization):
            yield record


def delivered_through(instance: dg.DagsterInstance, push_key: dg.AssetKey) -> dt.datetime | None:
    """When the read of the last push that covered the days up to its own day started (its run's start), or
    None when no push ever did: every row updated since then (less `LOOKBACK`) is still to be read."""
    starts: dict[str, float | None] = {}
    for record in _delivering_records(instance, push_key):
        if record.run_id not in starts:
            run = instance.get_run_record_by_id(record.run_id)
            starts[record.run_id] = run.start_time if run is not None else None
        started = starts[record.run_id]
        if started is None:
            continue
        moment = dt.datetime.fromtimestamp(started, dt.UTC)
        if record.partition_key is None or record.partition_key >= moment.strftime("%Y-%m-%d"):
            return moment
    return None


def schedules(
    sync: Sync,
    job: SyncJob,
    partitions: dg.PartitionsDefinition | None,
    push_key: dg.AssetKey,
) -> list[dg.ScheduleDefinition]:
    """`N_schedule` on the spec's cron (UTC) when the spec has one, and `N_reconcile` for a partitioned sync;
    both skip while the sync is running."""
    found = []
    if sync.schedule:
        found.append(_schedule(sync, job, partitions, push_key, sync.schedule, reconcile=False))
    if partitions is not None and sync.reconcile_cron:
        found.append(_schedule(sync, job, partitions, push_key, sync.reconcile_cron, reconcile=True))
    return found


def _schedule(
    sync: Sync,
    job: SyncJob,
    partitions: dg.PartitionsDefinition | None,
    push_key: dg.AssetKey,
    cron: str,
    *,
    reconcile: bool,
) -> dg.ScheduleDefinition:
    if reconcile:
        name, what = f"{sync.name}_reconcile", "over every day (a whole read diffed against the sync state)"
    else:
        name = f"{sync.name}_schedule"
        what = "over the days since the last delivered read, less a day" if partitions else ""

    @dg.schedule(
        name=name,
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        description=f"Runs {job.name} on '{cron}' (UTC) {what}; skipped while a run of the sync is in progress",
        # the safety net of a partitioned sync is on unless the spec says `reconcile: false`
        default_status=dg.DefaultScheduleStatus.RUNNING if reconcile else dg.DefaultScheduleStatus.STOPPED,
    )
    def _evaluate(context: dg.ScheduleEvaluationContext):
        running = run_in_progress(context.instance, sync.name)
        if running is not None:
            return dg.SkipReason(
                f"a run of the {sync.name} sync is still in progress ({running.run_id}, {running.status.value}); "
                "not starting another (the next tick covers what this one would have)"
            )
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        run_key = f"{'reconcile' if reconcile else 'schedule'}:{tick.astimezone(dt.UTC).isoformat()}"
        if partitions is None:
            return dg.RunRequest(run_key=run_key)
        since = None if reconcile else delivered_through(context.instance, push_key)
        days = scheduled_days(partitions, tick, since)
        if days is None:
            return dg.SkipReason(f"{tick:%Y-%m-%d} is before the first partition of {sync.name}")
        return range_request(run_key, *days)

    return _evaluate


def scheduled_days(
    partitions: dg.PartitionsDefinition, tick: dt.datetime, since: dt.datetime | None
) -> tuple[str, str] | None:
    """The days a scheduled run covers: from the day of the last delivered read less `LOOKBACK` (a tick
    skipped, a failed run, a daemon that was down: the next tick covers it all; the look-back covers
    transactions still open at that read and text with a negative offset, which SQLite sorts into the day
    before its UTC day) through today's partition; every day from the first partition when nothing was
    delivered yet. None before the first partition."""
    first_partition = partitions.get_first_partition_key()
    latest = tick.astimezone(dt.UTC).strftime("%Y-%m-%d")
    if first_partition is None or latest < first_partition:
        return None
    if since is None:
        return first_partition, latest
    first = (since.astimezone(dt.UTC) - LOOKBACK).strftime("%Y-%m-%d")
    return min(max(first, first_partition), latest), latest
