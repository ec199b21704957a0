"""When a sync runs on a change: `N_source_changed` compares the source with what the sync's runs delivered
(a digest per day, or the spec's probe) and asks for a run over what differs.

No `from __future__ import annotations` here: Dagster reads the `context` hints of these functions.
"""

import datetime as dt
import hashlib
import json

import dagster as dg

from contentstack_assets.engine.source import SourceError, SourceReader
from contentstack_assets.spec import Sync
from contentstack_assets.syncs.partitions import range_request
from contentstack_assets.syncs.runs import (
    IN_PROGRESS,
    SyncJob,
    is_dry_run,
    recorded_by_dry_run,
    run_in_progress,
)

PROBE_TAG = "contentstack/probe"
REQUEST_TAG = "contentstack/request"  # the sensor's name for the change a run was asked to deliver
MAX_GAP_DAYS = 7  # changed days closer than this share one run (one read) rather than start one each


def source_changed_sensor(
    sync: Sync,
    job: SyncJob,
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
                    range_request(f"{request_id}:{days[0]}...{days[-1]}", days[0], days[-1], tags)
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


def _pushed_in(instance: dg.DagsterInstance, run: dg.DagsterRun, push_key: dg.AssetKey) -> bool:
    """Whether a run got through the push of its rows (it may still have failed for some users, who are
    retried by later runs). A dry run never did, however green."""
    if is_dry_run(run):
        return False
    if run.status == dg.DagsterRunStatus.SUCCESS:
        return True
    records = instance.get_records_for_run(
        run_id=run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
    ).records
    for record in records:
        event = record.event_log_entry.dagster_event
        materialization = event.event_specific_data.materialization if event else None
        if materialization is not None and materialization.asset_key == push_key:
            return not recorded_by_dry_run(materialization)
    return False


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
