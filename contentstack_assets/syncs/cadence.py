"""When syncs run: the spec's schedule, the source-change sensor, and alerts on failed runs.

No `from __future__ import annotations` here: Dagster reads the `context` hints of these functions.
"""

import datetime as dt
import hashlib
import json
import os
from urllib.parse import urlsplit

import dagster as dg
import requests
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from contentstack_assets.engine.source import SourceError, SourceReader
from contentstack_assets.spec import Sync

IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
ALERT_WEBHOOK_ENV = "CONTENTSTACK_ALERT_WEBHOOK_URL"
WEBSERVER_URL_ENV = "DAGSTER_WEBSERVER_URL"
SYNC_TAG = "contentstack/sync"
PROBE_TAG = "contentstack/probe"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"


# -- which sync a run belongs to ---------------------------------------------------------------------
def syncs_of_run(run: dg.DagsterRun) -> set[str]:
    """The syncs a run works on: its job's tag, its `N_sync` job name, or the sync part of the asset keys it
    materializes (`[*key_prefix, N, asset]`; a backfill, a "Materialize" click in the UI or a run of
    Dagster's automation sensor has neither)."""
    names = set()
    if run.tags.get(SYNC_TAG):
        names.add(run.tags[SYNC_TAG])
    if run.job_name.endswith("_sync"):
        names.add(run.job_name.removesuffix("_sync"))
    names.update(key.path[-2] for key in run.asset_selection or () if len(key.path) > 1)
    return names


def run_in_progress(instance: dg.DagsterInstance, sync_name: str) -> dg.DagsterRun | None:
    """A queued or running run that works on this sync, if any."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS), limit=200):
        if sync_name in syncs_of_run(run):
            return run
    return None


def _range_request(run_key: str, first: str, last: str, tags: dict[str, str] | None = None) -> dg.RunRequest:
    """One run over the days first..last: a single key, or the range tags of a single-run backfill."""
    if first == last:
        return dg.RunRequest(run_key=run_key, partition_key=first, tags=tags or {})
    return dg.RunRequest(run_key=run_key, tags={**(tags or {}), RANGE_START_TAG: first, RANGE_END_TAG: last})


# -- what was delivered -------------------------------------------------------------------------------
LOOKBACK = dt.timedelta(days=1)  # a scheduled run reaches back this far before the last delivered read
REQUEST_TAG = "contentstack/request"  # the sensor's name for the change a run was asked to deliver


def _delivering_records(instance: dg.DagsterInstance, push_key: dg.AssetKey, limit: int = 200):
    """The push asset's latest materializations that delivered (not dry runs), newest first."""
    records = instance.fetch_materializations(push_key, limit=limit).records
    for record in records:
        if not _is_dry_run(record.asset_materialization):
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


def _pushed_in(instance: dg.DagsterInstance, run: dg.DagsterRun, push_key: dg.AssetKey) -> bool:
    """Whether a run got through the push of its rows (it may still have failed for some users, who are
    retried by later runs)."""
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return True
    records = instance.get_records_for_run(
        run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        materialization = event.event_specific_data.materialization if event else None
        if materialization is not None and materialization.asset_key == push_key:
            return not _is_dry_run(materialization)
    return False


def _is_dry_run(materialization: dg.AssetMaterialization | None) -> bool:
    """Whether a push materialization is a dry run's (its `dry_run` metadata), which delivered nothing."""
    dry = materialization.metadata.get("dry_run") if materialization else None
    return bool(dry is not None and dry.value)


# -- the schedule ------------------------------------------------------------------------------------
def schedules(
    sync: Sync,
    job: UnresolvedAssetJobDefinition,
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
    job: UnresolvedAssetJobDefinition,
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
        return _range_request(run_key, *days)

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


# -- the source-change sensor ----------------------------------------------------------------------
def source_changed_sensor(
    sync: Sync,
    job: UnresolvedAssetJobDefinition,
    partitions: dg.PartitionsDefinition | None,
    columns: list[str],
    push_key: dg.AssetKey,
) -> dg.SensorDefinition:
    """`N_source_changed`: compare the source with what the sync's runs delivered; ask for what differs.

    Unpartitioned, the probe (the row count and the latest `updated_at`, or the spec's `probe_query`) is the
    source's digest; partitioned, a digest per day computed by the database (`SourceReader.day_digests`),
    behind the spec's `probe_query` when there is one. The cursor holds the digests that runs delivered
    (`confirmed`) and those a requested run is to deliver (`pending`, by the request's tag): a digest is
    confirmed only once a run of its request got through the push, so a failed run's days are asked again."""

    @dg.sensor(
        name=f"{sync.name}_source_changed",
        job=job,
        minimum_interval_seconds=60,
        description=(
            f"Starts {job.name} when the source changes: "
            + (
                "runs over every day whose rows changed (a digest per day), whenever they changed"
                if partitions
                else "the spec's probe_query if set, else the row count"
            )
            + "; a change counts as delivered once its run got through the push"
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext):
        running = run_in_progress(context.instance, sync.name)
        if running is not None:
            # the cursor stays: the next tick after this run sees every change since, in one request
            return dg.SkipReason(
                f"a run of the {sync.name} sync is in progress ({running.run_id}); probing later"
            )
        state = _read_cursor(context.cursor)
        settled = _settle(context.instance, state, push_key)
        reader = SourceReader(sync.source, columns)
        try:
            probe = reader.probe()
            if partitions is not None and (not sync.source.probe_query or probe != state.get("probe")):
                current = reader.day_digests()
            else:
                current = {"": _describe(probe)}
        except SourceError as error:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"cannot probe the source: {error}"), cursor=_dump(state)
            )
        if partitions is not None and sync.source.probe_query and probe == state.get("probe"):
            return dg.SensorResult(
                skip_reason=dg.SkipReason(f"source unchanged since the last probe ({_describe(probe)})"),
                cursor=_dump(state),
            )
        state["probe"] = probe
        changed = _changed(state["confirmed"], current, partitions)
        if not changed:
            reason = f"source unchanged since the last delivered run ({_describe(probe)})"
            if settled:
                reason += f"; {settled}"
            return dg.SensorResult(skip_reason=dg.SkipReason(reason), cursor=_dump(state))
        state["n"] = state.get("n", 0) + 1
        requests = []
        for days in _blocks(sorted(changed)) if partitions is not None else [[""]]:
            digest = {day: changed[day] for day in days if day in changed}
            request_id = (
                f"{state['n']}-"
                + hashlib.sha256(json.dumps(digest, sort_keys=True).encode()).hexdigest()[:12]
            )
            tags = {PROBE_TAG: _describe(probe)[:200], REQUEST_TAG: request_id}
            state["pending"][request_id] = digest
            if partitions is None:
                requests.append(dg.RunRequest(run_key=request_id, tags=tags))
            else:
                requests.append(
                    _range_request(f"{request_id}:{days[0]}...{days[-1]}", days[0], days[-1], tags)
                )
        return dg.SensorResult(run_requests=requests, cursor=_dump(state))

    return _sensor


def _read_cursor(cursor: str | None) -> dict:
    """The sensor's state; a cursor of an earlier shape (or none) starts afresh: everything is asked once."""
    try:
        value = json.loads(cursor) if cursor else None
    except ValueError:
        value = None
    if not isinstance(value, dict) or value.get("v") != 2:
        return {"v": 2, "confirmed": {}, "pending": {}, "n": 0}
    return value


def _dump(state: dict) -> str:
    return json.dumps(state, sort_keys=True)


def _settle(instance: dg.DagsterInstance, state: dict, push_key: dg.AssetKey) -> str:
    """Move the digests of requests whose run got through the push to `confirmed`; drop the others (their
    days differ from `confirmed`, so they are asked again). Returns what it did, for the tick's message."""
    delivered = failed = 0
    for request_id, digest in list(state["pending"].items()):
        runs = instance.get_runs(filters=dg.RunsFilter(tags={REQUEST_TAG: request_id}), limit=5)
        if any(run.status in IN_PROGRESS for run in runs):
            continue
        del state["pending"][request_id]
        if any(_pushed_in(instance, run, push_key) for run in runs):
            for day, value in digest.items():
                if value is None:
                    state["confirmed"].pop(day, None)
                else:
                    state["confirmed"][day] = value
            delivered += 1
        else:
            failed += 1
            state.pop("probe", None)  # digest the days again even if a probe_query says nothing moved
    parts = [f"{delivered} request(s) delivered"] if delivered else []
    if failed:
        parts.append(f"{failed} request(s) whose run failed are asked again")
    return ", ".join(parts)


def _changed(
    confirmed: dict[str, str], current: dict[str, str], partitions: dg.PartitionsDefinition | None
) -> dict[str, str | None]:
    """The digests that differ from what was delivered (None: the day has no rows now), within the partitions:
    a day before the first partition is never read, one after today waits for its partition to exist."""
    changed: dict[str, str | None] = {
        day: digest for day, digest in current.items() if confirmed.get(day) != digest
    }
    changed.update({day: None for day in confirmed if day not in current})
    if partitions is None:
        return changed
    first = partitions.get_first_partition_key()
    last = partitions.get_last_partition_key()  # today's, as Dagster's clock says
    return {day: digest for day, digest in changed.items() if first <= day <= last}


MAX_GAP_DAYS = 7  # changed days closer than this share one run (one read) rather than start one each


def _blocks(days: list[str]) -> list[list[str]]:
    """Sorted days in runs of nearby days: a late row three years back does not make today's run read three
    years, and days a few apart are read in one go."""
    blocks: list[list[str]] = []
    for day in days:
        if (
            blocks
            and (dt.date.fromisoformat(day) - dt.date.fromisoformat(blocks[-1][-1])).days <= MAX_GAP_DAYS
        ):
            blocks[-1].append(day)
        else:
            blocks.append([day])
    return blocks


def _describe(probe: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in probe.items())


# -- alerts ----------------------------------------------------------------------------------------
@dg.run_failure_sensor(
    name="contentstack_failure_alerts",
    monitor_all_code_locations=False,
    description=f"Posts a Slack-compatible message to ${ALERT_WEBHOOK_ENV} when a sync run fails",
    # stopped by default like every schedule and sensor here (the contract): turn it on with the webhook set
    default_status=dg.DefaultSensorStatus.STOPPED,
)
def failure_alerts(context: dg.RunFailureSensorContext):
    webhook = os.environ.get(ALERT_WEBHOOK_ENV)
    if not webhook:
        return dg.SkipReason(f"{ALERT_WEBHOOK_ENV} is not set")
    run = context.dagster_run
    names = syncs_of_run(run)
    if not names:
        return dg.SkipReason(f"run {run.run_id} of {run.job_name} is not a sync run")
    post_alert(webhook, alert_message(", ".join(sorted(names)), run.run_id, failure_summary(context)))
    context.log.info(f"alert for run {run.run_id} posted to {urlsplit(webhook).hostname}")
    return None


def failure_summary(context: dg.RunFailureSensorContext) -> str:
    """What went wrong, in the words of the first failed step (a dg.Failure's description), else of the run."""
    for event in context.get_step_failure_events():
        data = event.step_failure_data
        description = data.user_failure_data.description if data.user_failure_data else None
        message = description or (data.error.message if data.error else None)
        if message:
            # "dagster._core.definitions.events.Failure: ..." -> "..."
            first = message.strip().splitlines()[0]
            head, separator, rest = first.partition(": ")
            if separator and "." in head and " " not in head:
                first = rest
            return f"{event.step_key}: {first}"
    return context.failure_event.message or "the run failed"


def alert_message(sync_name: str, run_id: str, error: str | None) -> dict:
    """A Slack incoming-webhook payload (`text` and `blocks`), with the same facts as plain fields."""
    base = os.environ.get(WEBSERVER_URL_ENV, "http://localhost:3000").rstrip("/")
    link = f"{base}/runs/{run_id}"
    summary = (error or "the run failed").strip().splitlines()[0][:500]
    return {
        "text": f":rotating_light: contentstack sync `{sync_name}` failed: {summary} (<{link}|run {run_id[:8]}>)",
        "blocks": [
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": f"*contentstack sync `{sync_name}` failed*\n{summary}"},
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": f"run <{link}|{run_id}>"}]},
        ],
        "sync": sync_name,
        "run_id": run_id,
        "run_url": link,
        "error": summary,
    }


def post_alert(webhook: str, message: dict) -> None:
    """POST the message; an error names the webhook's host only (a Slack webhook URL is a secret)."""
    from contentstack_assets.personalize.regions import check_api_url

    host = urlsplit(webhook).hostname or "?"
    try:
        check_api_url(webhook)  # https only, except to this machine
    except ValueError:
        raise ValueError(f"{ALERT_WEBHOOK_ENV} must be an https:// URL (http only to this machine)") from None
    try:
        response = requests.post(webhook, json=message, timeout=10)
        response.raise_for_status()
    except requests.RequestException as error:
        status = getattr(error.response, "status_code", None)
        raise RuntimeError(
            f"posting the alert to {host} failed: {type(error).__name__}"
            + (f" (HTTP {status})" if status else "")
        ) from None
