"""When syncs run: the spec's schedule, the source-change sensor, and alerts on failed runs.

No `from __future__ import annotations` here: Dagster reads the `context` hints of these functions.
"""

import datetime as dt
import hashlib
import json
import os
import re
from urllib.parse import urlsplit

import dagster as dg
import requests
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._utils.schedules import get_latest_completed_cron_tick

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
_DATE_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}")


# -- which sync a run belongs to ---------------------------------------------------------------------
def syncs_of_run(run: dg.DagsterRun) -> set[str]:
    """The syncs a run works on: its job's tag, its `N_sync` job name, or the prefixes of the asset keys it
    materializes (a backfill or a "Materialize" click in the UI runs an asset job with neither)."""
    names = set()
    if run.tags.get(SYNC_TAG):
        names.add(run.tags[SYNC_TAG])
    if run.job_name.endswith("_sync"):
        names.add(run.job_name.removesuffix("_sync"))
    names.update(key.path[0] for key in run.asset_selection or () if len(key.path) > 1)
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


# -- the schedule ------------------------------------------------------------------------------------
def schedules(
    sync: Sync, job: UnresolvedAssetJobDefinition, partitions: dg.PartitionsDefinition | None
) -> list[dg.ScheduleDefinition]:
    """`N_schedule` on the spec's cron (UTC) when the spec has one; skipped while the sync is running."""
    if not sync.schedule:
        return []
    cron = sync.schedule

    @dg.schedule(
        name=f"{sync.name}_schedule",
        cron_schedule=cron,
        job=job,
        execution_timezone="UTC",
        description=(
            f"Runs {job.name} on '{cron}' (UTC)"
            + (", over the days since the previous tick (today's partition)" if partitions else "")
            + "; skipped while a run of the sync is in progress"
        ),
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        running = run_in_progress(context.instance, sync.name)
        if running is not None:
            return dg.SkipReason(
                f"a run of the {sync.name} sync is still in progress ({running.run_id}, {running.status.value}); "
                "not starting another"
            )
        tick = context.scheduled_execution_time or dt.datetime.now(dt.UTC)
        run_key = f"schedule:{tick.astimezone(dt.UTC).isoformat()}"
        if partitions is None:
            return dg.RunRequest(run_key=run_key)
        days = scheduled_days(partitions, cron, tick)
        if days is None:
            return dg.SkipReason(f"{tick:%Y-%m-%d} is before the first partition of {sync.name}")
        return _range_request(run_key, *days)

    return [_schedule]


def scheduled_days(
    partitions: dg.PartitionsDefinition, cron: str, tick: dt.datetime
) -> tuple[str, str] | None:
    """The days a scheduled run covers: today's partition (the latest, a UTC day), reaching back to the day of
    the previous tick, so that rows updated between the last tick of a day and midnight are not left behind.
    None before the first partition."""
    first_partition = partitions.get_first_partition_key()
    latest = tick.astimezone(dt.UTC).strftime("%Y-%m-%d")
    if first_partition is None or latest < first_partition:
        return None
    previous_tick = get_latest_completed_cron_tick(cron, tick - dt.timedelta(seconds=1), "UTC")
    return max(previous_tick.astimezone(dt.UTC).strftime("%Y-%m-%d"), first_partition), latest


# -- the source-change sensor ----------------------------------------------------------------------
def source_changed_sensor(
    sync: Sync,
    job: UnresolvedAssetJobDefinition,
    partitions: dg.PartitionsDefinition | None,
    columns: list[str],
) -> dg.SensorDefinition:
    """`N_source_changed`: probe the source cheaply; start a run only when the probe changed since the cursor."""

    @dg.sensor(
        name=f"{sync.name}_source_changed",
        job=job,
        minimum_interval_seconds=60,
        description=(
            f"Starts {job.name} when the source changes: the spec's probe_query if set, else the row count"
            + (" and the latest updated_at; runs over the days whose rows changed" if partitions else "")
        ),
    )
    def _sensor(context: dg.SensorEvaluationContext):
        running = run_in_progress(context.instance, sync.name)
        if running is not None:
            # the cursor stays: the next tick after this run sees every change since the last probe, in one run
            return dg.SkipReason(
                f"a run of the {sync.name} sync is in progress ({running.run_id}); probing later"
            )
        reader = SourceReader(sync.source, columns)
        try:
            probe = reader.probe()
        except SourceError as error:
            return dg.SkipReason(f"cannot probe the source: {error}")
        previous = _read_cursor(context.cursor)
        # the probe alone says whether the source changed; a cursor may also carry the watermark beside it
        if previous is not None and all(previous.get(key) == value for key, value in probe.items()):
            return dg.SkipReason(f"source unchanged since the last probe ({_describe(probe)})")
        run_key = hashlib.sha256(json.dumps(probe, sort_keys=True).encode()).hexdigest()[:16]
        tags = {PROBE_TAG: _describe(probe)[:200]}
        if partitions is None:
            return dg.SensorResult(
                run_requests=[dg.RunRequest(run_key=run_key, tags=tags)], cursor=json.dumps(probe)
            )
        watermark = (previous or {}).get("max_updated")
        try:
            found = reader.partition_range_since(watermark)
        except SourceError as error:
            return dg.SkipReason(f"cannot read the changed days: {error}")
        # the next watermark: the probe's max(updated_at), or with a probe_query the max just found
        cursor = json.dumps({"max_updated": str(found[1]) if found else watermark, **probe})
        days = changed_day_range(found, partitions)
        if days is None:
            return dg.SensorResult(
                skip_reason=dg.SkipReason(
                    f"the source changed ({_describe(probe)}) but no partition day has rows updated since "
                    f"{watermark or 'the start'}"
                ),
                cursor=cursor,
            )
        # one run over the range of changed days: one read, one plan, one delivery
        first, last = days
        return dg.SensorResult(
            run_requests=[_range_request(f"{run_key}:{first}...{last}", first, last, tags)], cursor=cursor
        )

    return _sensor


def _read_cursor(cursor: str | None) -> dict | None:
    if not cursor:
        return None
    try:
        value = json.loads(cursor)
    except ValueError:
        return None  # a cursor of another shape: probe afresh
    return value if isinstance(value, dict) else None


def changed_day_range(
    found: tuple[object, object] | None, partitions: dg.PartitionsDefinition
) -> tuple[str, str] | None:
    """The first and last partition keys (UTC days) to re-read for the lowest and highest updated_at found,
    within the partitions' range; None when there is nothing to read."""
    if found is None:
        return None
    first_partition = partitions.get_first_partition_key()
    with dg.partition_loading_context(effective_dt=dt.datetime.now(dt.UTC)):
        last_partition = partitions.get_last_partition_key()
    lowest, highest = found
    # an endpoint of no day (text that is no timestamp) leaves that side open: read to the partitions' bound
    first = max(min(_days_read(lowest), default=first_partition), first_partition)
    last = min(max(_days_read(highest), default=last_partition), last_partition)
    return (first, last) if first <= last else None


def _days_read(value: object) -> list[str]:
    """The days whose partition reads a value of the partition column: its UTC day, and for text also the date
    it starts with, since SQLite compares the stored text ('2024-02-12T23:30:00-02:00', UTC 2024-02-13, sorts
    among 2024-02-12's rows)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return [value.isoformat()]
    text = str(value).strip()
    days = [text[:10]] if isinstance(value, str) and _DATE_PREFIX.match(text) else []
    try:
        moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(text)
    except ValueError:
        return days
    if moment.tzinfo is not None:  # naive = UTC (contract)
        moment = moment.astimezone(dt.UTC)
    return [*days, moment.date().isoformat()]


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
