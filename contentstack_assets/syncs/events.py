"""An events sync as Dagster definitions: source_events -> personalize_events.

No `from __future__ import annotations` here: Dagster reads the `context` hints of the asset functions.
"""

import time

import dagster as dg
import pandas as pd
from pydantic import Field

from contentstack_assets.engine.events import (
    EVENT_ID,
    event_keys,
    events_source_columns,
    push_events,
    read_events_by_id,
)
from contentstack_assets.engine.project_keys import Creation
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.io_manager import FRAMES_IO_MANAGER_KEY
from contentstack_assets.resources import PersonalizeResource, SyncStateResource
from contentstack_assets.spec import EventsSync, SyncsSpec
from contentstack_assets.syncs.console import CONSOLE_RUN_CONFIG
from contentstack_assets.syncs.labels import asset_key, asset_labels, push_asset_key, source_deps
from contentstack_assets.syncs.partitions import (
    backfill_policy,
    daily_partitions,
    metadata_by_day,
    scope_of,
    window_of,
)
from contentstack_assets.syncs.project_keys import (
    create_missing_event,
    creation_description,
    creation_metadata,
    is_dry_run,
)
from contentstack_assets.syncs.push import (
    delivery_check,
    dry_run_job,
    dry_run_observation,
    push_asset,
    selected,
)
from contentstack_assets.syncs.report import (
    failures_sample,
    markdown_table,
    rejected_sample,
    source_metadata,
    user_errors,
)
from contentstack_assets.syncs.runs import SYNC_TAG
from contentstack_assets.syncs.schedules import schedules
from contentstack_assets.syncs.sensors import source_changed_sensor

# the counts of an events push that add up over days
EVENTS_COUNTED = (
    "rows_read",
    "rows_reread",
    "rows_rejected",
    "events_new",
    "events_already_delivered",
    "events_delivered",
    "events_failed",
    "events_stuck",
    "events_gone",
    "users_sent",
    "requests_sent",
)


class EventsPushConfig(dg.Config):
    dry_run: bool = Field(
        default=False,
        description="Compute and report the plan (events per user, sample bodies); send nothing, write no state.",
    )


def build_events_sync(sync: EventsSync, spec: SyncsSpec) -> dg.Definitions:
    name = sync.name
    partitions = daily_partitions(sync.source)
    policy = backfill_policy(sync.source)
    source_key = asset_key(sync, "source_events")
    push_key = asset_key(sync, "personalize_events")
    columns = events_source_columns(sync)
    common = {**asset_labels(sync), "partitions_def": partitions, "backfill_policy": policy}

    @dg.asset(
        key=source_key,
        deps=source_deps(sync),
        kinds={"sqlalchemy"},
        io_manager_key=FRAMES_IO_MANAGER_KEY,
        description=f"Event rows of {sync.source.relation} at {sync.source.display_url} for the {name} sync",
        metadata={"source": sync.source.display_url, "relation": sync.source.relation},
        check_specs=[
            dg.AssetCheckSpec(
                "event_keys_exist",
                asset=source_key,
                blocking=True,
                description="The event keys exist in the Personalize project (Management API): a missing fixed "
                "`key` blocks the push; unknown keys in the key column only set their rows aside",
            )
        ],
        **common,
    )
    def source_events(context: dg.AssetExecutionContext, personalize: PersonalizeResource):
        reader = SourceReader(sync.source, columns)
        started = time.perf_counter()
        with user_errors():
            frame = reader.read(
                window_of(context), on_progress=lambda rows: context.log.info(f"{name}: {rows} rows read")
            )
            listed = personalize.list_events(sync.destination)
            # destination.create_missing: the fixed event key is created here, before any event is sent
            creation = create_missing_event(
                sync, personalize, listed, dry_run=is_dry_run(context, push_key), log=context.log.info
            )
        yield dg.Output(
            frame,
            metadata={
                "rows_read": len(frame),
                "read_s": round(time.perf_counter() - started, 3),
                "scope": scope_of(context),
                **source_metadata(reader.column_types, frame),
            },
        )
        yield event_keys_check(sync, frame, listed, creation)

    @push_asset(
        sync,
        push_key,
        ins={"source_events": dg.AssetIn(key=source_key)},
        deps=[push_asset_key(spec, dependency) for dependency in sync.depends_on],
        description=f"Events of the {name} sync in Personalize project {sync.destination.project_uid}: each event id sent once",
        check_specs=[
            dg.AssetCheckSpec(
                "delivery_failures",
                asset=push_key,
                description=f"Share of events whose delivery failed (error above {sync.max_failed_share:.0%}, "
                f"stuck events, failed in {sync.stuck_after_runs}+ runs in a row, left out)",
            )
        ],
        partitions_def=partitions,
        backfill_policy=policy,
    )
    def personalize_events(
        context: dg.AssetExecutionContext,
        config: EventsPushConfig,
        source_events: pd.DataFrame,
        personalize: PersonalizeResource,
        sync_state: SyncStateResource,
    ):
        started = time.perf_counter()
        window = window_of(context)
        with user_errors():
            listed = personalize.list_events(sync.destination)
            # also when source_events was not part of this run; a dry run only says what it would create
            creation = create_missing_event(
                sync, personalize, listed, dry_run=config.dry_run, log=context.log.info
            )
        known_keys = None if listed is None else {item.get("key") for item in listed}
        if known_keys is not None and creation is not None:
            known_keys |= set(creation.missing)  # created now, or would be by a real run
        client = None if config.dry_run else personalize.edge(sync.destination, sync.concurrency)
        with user_errors():
            result = push_events(
                sync,
                source_events,
                client=client,
                store=sync_state.store(),
                run_id=context.run.run_id,
                scope=scope_of(context),
                known_keys=known_keys,
                # a run over some days also retries the failed events of other days
                read_pending=(lambda ids: read_events_by_id(sync, ids)) if window is not None else None,
                dry_run=config.dry_run,
                log=context.log.info,
            )
        report = result.report
        failures = failures_sample(report.failures, lambda request: request.user_uid)
        metadata = {
            **result.counts,
            "duration_s": round(time.perf_counter() - started, 3),
            "latency_p50_ms": round(report.percentile_ms(50), 2),
            "latency_p95_ms": round(report.percentile_ms(95), 2),
            "keys_checked": known_keys is not None,
            "scope": scope_of(context),
            "rejected_sample": rejected_sample(
                result.rejected, columns=["user_uid", EVENT_ID, "reason", "row_number"]
            ),
            "failures": failures,
        }
        if config.dry_run:
            # the plan, observed: no materialization (the partitions and plots of the push are deliveries)
            plan_sample = markdown_table(result.plan.sample(), ["user_uid", "events", "body"])
            yield dry_run_observation(
                context,
                push_key,
                {**metadata, "dry_run": True, "plan_sample": plan_sample, **creation_metadata(creation)},
            )
            return
        if result.events_stuck:
            metadata["stuck_sample"] = markdown_table(
                result.stuck_sample, ["event_id", "user_uid", "failed_runs", "last_status", "last_error"]
            )
        # Above `max_failed_share` (stuck events left out), or when delivery stopped on refusals, the
        # destination is the problem: the step fails. Below it the check warns and the run goes on; the failed
        # events are retried by the next run either way.
        fails_step = bool(report.stopped) or result.failed_share > sync.max_failed_share
        yield dg.MaterializeResult(
            metadata=metadata_by_day(context, metadata, result.by_day.as_dict(), EVENTS_COUNTED),
            check_results=selected(
                context,
                [
                    delivery_check(
                        sync,
                        failed=result.events_failed,
                        failed_share=result.failed_share,
                        error=fails_step,
                        events_stuck=result.events_stuck,
                        failures=failures,
                    )
                ],
            ),
        )
        if result.events_failed:
            first_request, first = report.failures[0] if report.failures else (None, None)
            summary = (
                f"{name}: {result.events_failed} events of {len(result.users_failed)} users failed after retries "
                f"(first: {first_request.user_uid if first_request else '?'}: {first.error if first else '?'}); "
                f"{result.events_delivered} events were delivered"
                + (
                    f", {result.events_stuck} failed in {sync.stuck_after_runs}+ runs in a row (stuck)"
                    if result.events_stuck
                    else ""
                )
                + ". The failed events are retried by the next run."
            )
            if not fails_step:
                context.log.warning(
                    f"{summary} Below max_failed_share ({sync.max_failed_share:.0%}, stuck events left out): "
                    "the run goes on."
                )
                return
            raise dg.Failure(
                description=(f"{name}: {report.stopped}. " if report.stopped else "") + summary,
                metadata={"failures": failures},
            )

    selection = dg.AssetSelection.assets(source_key, push_key)
    job = dg.define_asset_job(
        f"{name}_sync",
        selection=selection,
        description=f"Sync {name}: read the events of {sync.source.relation} and send those not delivered yet to Personalize",
        tags={SYNC_TAG: name},
        config=CONSOLE_RUN_CONFIG,  # user errors without their stack (syncs/console.py)
    )
    return dg.Definitions(
        assets=[source_events, personalize_events],
        jobs=[job, dry_run_job(sync, selection, push_key)],
        schedules=schedules(sync, job, partitions, push_key),
        sensors=[source_changed_sensor(sync, job, partitions, columns, push_key)],
    )


def event_keys_check(
    sync: EventsSync, frame: pd.DataFrame, listed: list[dict] | None, creation: Creation | None = None
) -> dg.AssetCheckResult:
    """Whether the event keys exist in the project; only a missing fixed `key` is an error (it blocks). With
    `create_missing` the fixed key was created (a dry run: would be), and the check passes."""
    if listed is None:
        return dg.AssetCheckResult(
            check_name="event_keys_exist",
            passed=True,
            metadata={"checked": False, "reason": "no management token configured: keys not checked"},
        )
    known = {item.get("key") for item in listed}
    if creation is not None:
        return dg.AssetCheckResult(
            check_name="event_keys_exist",
            passed=True,
            description=creation_description(creation, sync.destination.project_uid),
            metadata={
                "checked": True,
                "missing_keys": creation.missing if creation.dry_run else [],
                "num_failures": 0,
                "project_events": len(known) + len(creation.created),
                **creation_metadata(creation),
            },
        )
    if sync.event.key is not None:
        missing = [] if sync.event.key.strip() in known else [sync.event.key.strip()]
        severity = dg.AssetCheckSeverity.ERROR
        rows_affected = len(frame) if missing else 0
    else:
        keys, _ = event_keys(frame[sync.event.key_column], None, sync.destination.project_uid)
        unknown = keys.dropna()
        unknown = unknown[~unknown.isin(list(known))]
        missing = sorted(set(unknown))
        severity = dg.AssetCheckSeverity.WARN
        rows_affected = len(unknown)
    return dg.AssetCheckResult(
        check_name="event_keys_exist",
        passed=not missing,
        severity=severity,
        description=(
            f"not events of project {sync.destination.project_uid}: {', '.join(missing[:20])}: create them in "
            "Personalize (Events) with these exact keys, or fix the "
            + ("spec" if sync.event.key is not None else "source (those rows are set aside)")
            if missing
            else None
        ),
        metadata={
            "checked": True,
            "missing_keys": missing[:100],
            "num_failures": rows_affected,
            "project_events": len(known),
        },
    )
