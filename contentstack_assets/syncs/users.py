"""A users sync as Dagster definitions: source_users -> mapped_attributes -> personalize_users."""

import time

import dagster as dg

from contentstack_assets.engine.digests import (
    DIGEST_UNCHANGED,
    SOURCE_ROWS,
    digests_apply,
    is_partial,
    read_changed,
    read_whole_mapped,
)
from contentstack_assets.engine.frames import Frame, ShardedFrame, collect, removed_after
from contentstack_assets.engine.mapping import (
    map_frame,
    source_columns,
    stamp_read_time,
    uid_hashes_of,
)
from contentstack_assets.engine.resend import push_users_resending
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.io_manager import FRAME_TYPE, FRAMES_IO_MANAGER_KEY
from contentstack_assets.resources import PersonalizeResource, SyncStateResource
from contentstack_assets.spec import SyncsSpec, UsersSync
from contentstack_assets.syncs import shard_reads, shards
from contentstack_assets.syncs.console import CONSOLE_RUN_CONFIG
from contentstack_assets.syncs.labels import asset_key, asset_labels, push_asset_key, source_deps
from contentstack_assets.syncs.mapped import MappedTally, attribute_check, mapped_metadata, rows_valid_check
from contentstack_assets.syncs.partitions import (
    backfill_policy,
    daily_partitions,
    is_partitioned_run,
    metadata_by_day,
    scope_of,
    window_of,
)
from contentstack_assets.syncs.project_keys import (
    create_missing_attributes,
    creation_metadata,
    is_dry_run,
)
from contentstack_assets.syncs.push import (
    USERS_COUNTED,
    PushConfig,
    clear_sample,
    clears_failure,
    dry_run_job,
    dry_run_observation,
    present_uids,
    push_asset,
    push_errors,
    require_attribute_keys,
    selected,
    users_by_day,
    users_delivery_check,
    users_delivery_failure,
)
from contentstack_assets.syncs.report import (
    failures_sample,
    markdown_table,
    process_peak_memory,
    rejected_sample,
    source_metadata,
    user_errors,
)
from contentstack_assets.syncs.runs import SYNC_TAG
from contentstack_assets.syncs.schedules import schedules
from contentstack_assets.syncs.sensors import source_changed_sensor


def build_users_sync(sync: UsersSync, spec: SyncsSpec) -> dg.Definitions:
    name = sync.name
    partitions = daily_partitions(sync.source)
    policy = backfill_policy(sync.source)
    source_key = asset_key(sync, "source_users")
    mapped_key = asset_key(sync, "mapped_attributes")
    push_key = asset_key(sync, "personalize_users")
    common = {**asset_labels(sync), "partitions_def": partitions, "backfill_policy": policy}

    @dg.asset(
        key=source_key,
        deps=source_deps(sync),
        kinds={"sqlalchemy"},
        io_manager_key=FRAMES_IO_MANAGER_KEY,
        dagster_type=FRAME_TYPE,
        description=f"Rows of {sync.source.relation} at {sync.source.display_url} for the {name} sync",
        metadata={"source": sync.source.display_url, "relation": sync.source.relation},
        **common,
    )
    def source_users(context: dg.AssetExecutionContext, sync_state: SyncStateResource) -> Frame:
        reader = SourceReader(sync.source, source_columns(sync))
        started, read_started = time.perf_counter(), time.time()
        window = window_of(context)
        with user_errors():
            progress = lambda rows: context.log.info(f"{name}: {rows} rows read")  # noqa: E731
            if window is None and digests_apply(sync):
                # change detection in the database: unchanged users' rows are left unread (engine/digests.py)
                frame = read_changed(
                    sync, sync_state.store(), on_progress=progress, log=context.log.info, reader=reader
                )
            else:
                # chunk by chunk: a read of more rows than `chunk_size` is written to files as it comes
                frame = collect(reader.read_chunks(window, on_progress=progress), uid_hashes_of(sync))
        stamp_read_time(frame, read_started)
        digested = (
            {"source_rows": frame.attrs[SOURCE_ROWS], DIGEST_UNCHANGED: frame.attrs[DIGEST_UNCHANGED]}
            if SOURCE_ROWS in frame.attrs
            else {}
        )
        context.add_output_metadata(
            {
                "rows_read": len(frame),
                **digested,
                "read_s": round(time.perf_counter() - started, 3),
                **process_peak_memory(),
                "scope": scope_of(context),
                **source_metadata(reader.column_types, frame),
            }
        )
        return frame

    @dg.asset(
        key=mapped_key,
        ins={"source_users": dg.AssetIn(key=source_key, dagster_type=FRAME_TYPE)},
        kinds={"pandas"},
        io_manager_key=FRAMES_IO_MANAGER_KEY,
        dagster_type=FRAME_TYPE,
        description=f"Attributes of the {name} sync, converted to their wire types; bad rows set aside with reasons",
        check_specs=[
            dg.AssetCheckSpec(
                "rows_valid",
                asset=mapped_key,
                blocking=True,
                description="Rows rejected by the row rules (warning), and the schema of the valid rows (error)",
            ),
            dg.AssetCheckSpec(
                "attribute_keys_exist",
                asset=mapped_key,
                blocking=True,
                description="Every attribute key of the spec exists in the Personalize project (Management API)",
            ),
        ],
        **common,
    )
    def mapped_attributes(
        context: dg.AssetExecutionContext, source_users: Frame, personalize: PersonalizeResource
    ):
        with user_errors():
            listed = personalize.list_attributes(sync.destination)
            # destination.create_missing: the missing keys are created here, before any user is sent
            creation = create_missing_attributes(
                sync, personalize, listed, dry_run=is_dry_run(context, push_key), log=context.log.info
            )
        if isinstance(source_users, ShardedFrame):
            raise _unsharded_failure(sync, "source_users", source_users)
        started = time.perf_counter()
        tally = MappedTally(sync, read_rows=len(source_users))
        frame = map_frame(source_users, sync, on_chunk=tally.add)  # chunk by chunk for a chunked read
        context.log.info(f"{name}: {tally.valid} valid rows, {len(tally.rejected)} rejected")
        metadata = {**mapped_metadata(frame, tally, time.perf_counter() - started), **process_peak_memory()}
        yield dg.Output(frame, metadata=metadata)
        yield rows_valid_check(sync, frame, tally)
        yield attribute_check(sync, listed, creation)

    @push_asset(
        sync,
        push_key,
        ins={"mapped_attributes": dg.AssetIn(key=mapped_key)},
        deps=[push_asset_key(spec, dependency) for dependency in sync.depends_on],
        description=f"Users of the {name} sync in Personalize project {sync.destination.project_uid}: only changes sent",
        check_specs=[
            dg.AssetCheckSpec(
                "delivery_failures",
                asset=push_key,
                description=f"Share of users whose delivery failed (error above {sync.max_failed_share:.0%})",
            )
        ],
        partitions_def=partitions,
        backfill_policy=policy,
    )
    def personalize_users(
        context: dg.AssetExecutionContext,
        config: PushConfig,
        mapped_attributes: FRAME_TYPE,  # a frame, or a chunked one (the asset's dependency sets no type)
        personalize: PersonalizeResource,
        sync_state: SyncStateResource,
    ):
        started = time.perf_counter()
        if isinstance(mapped_attributes, ShardedFrame):
            raise _unsharded_failure(sync, "mapped_attributes", mapped_attributes)
        # also when mapped_attributes was not part of this run
        creation = require_attribute_keys(sync, personalize, dry_run=config.dry_run, log=context.log.info)
        client = None if config.dry_run else personalize.edge(sync.destination, sync.concurrency)
        source_frame = mapped_attributes  # the stored output of mapped_attributes, kept for the next run
        if config.full_resync and is_partial(mapped_attributes):
            # a read by digests left unchanged users unread: a full resync sends every user, so read them all
            with user_errors():
                mapped_attributes = read_whole_mapped(sync)
        with push_errors(), removed_after(mapped_attributes, unless=source_frame):
            # users a merge overwrote are resent whole, read again when this run's days miss them (or when a
            # read by digests left them unread)
            result, resends = push_users_resending(
                sync,
                mapped_attributes,
                store=sync_state.store(),
                partitioned=is_partitioned_run(context) or is_partial(mapped_attributes),
                client=client,
                run_id=context.run.run_id,
                scope=scope_of(context),
                dry_run=config.dry_run,
                full_resync=config.full_resync,
                allow_source_shrink=config.allow_source_shrink,
                log=context.log.info,
                # on_delete: clear: the uids of a whole read, by which the push tells who left
                present=present_uids(context, sync, mapped_attributes),
                allow_clear=config.allow_clear,
            )
        report = result.report
        resent = {
            "users_resent_after_merge": len(resends.present),
            "rows_reread": resends.rows_reread,
            "users_reread_failed": resends.unconfirmed_reread,
        }
        metadata = {
            **result.counts,
            "users_to_send": result.plan.users_to_send,
            **resent,
            "duration_s": round(time.perf_counter() - started, 3),
            **process_peak_memory(),
            **{f"{phase}_s": round(result.timings_s.get(phase, 0.0), 3) for phase in ("plan", "deliver")},
            "latency_p50_ms": round(report.percentile_ms(50), 2),
            "latency_p95_ms": round(report.percentile_ms(95), 2),
            "full_resync": config.full_resync,
            "scope": scope_of(context),
            "rejected_sample": rejected_sample(result.rejected),
            "failures": failures_sample(report.failures, lambda request: request.user_uid),
            **clear_sample(result),
        }
        if config.dry_run:
            # the plan, observed: no materialization (the partitions and plots of the push are deliveries)
            plan_sample = markdown_table(result.plan.sample_bodies(), ["user_uid", "reason", "body"])
            yield dry_run_observation(
                context,
                push_key,
                {**metadata, "dry_run": True, "plan_sample": plan_sample, **creation_metadata(creation)},
            )
            return
        if result.stuck_total:
            metadata["stuck_sample"] = markdown_table(
                result.stuck_sample, ["user_uid", "failed_runs", "last_status", "last_error"]
            )
        yield dg.MaterializeResult(
            metadata=metadata_by_day(
                context, metadata, users_by_day(result.by_day, resent).as_dict(), USERS_COUNTED
            ),
            check_results=selected(
                context, [users_delivery_check(sync, report.delivered, report.failed, report.failures)]
            ),
        )
        if report.failed:
            raise users_delivery_failure(
                sync, report.delivered, report.failed, report.failures, report.stopped
            )
        if result.clears.failed:
            raise clears_failure(sync, result.clears)

    resources = {}
    if sync.shards > 1:
        # `shards: N`: each shard reads and maps only its own users (syncs/shard_reads.py)
        source_users = shard_reads.sharded_source_asset(sync, source_key=source_key, **common)
        mapped_attributes = shard_reads.sharded_mapped_asset(
            sync,
            source_key=source_key,
            mapped_key=mapped_key,
            push_key=push_key,
            check_specs=list(mapped_attributes.check_specs),
            **common,
        )
        # `shards: N`: the same asset key, backed by a graph of N shard pushes and a summary
        personalize_users = shards.sharded_push_asset(
            sync,
            spec,
            mapped_key=mapped_key,
            push_key=push_key,
            check_specs=personalize_users.check_specs,
            **common,
        )
        resources = shards.resources()

    selection = dg.AssetSelection.assets(source_key, mapped_key, push_key)
    job = dg.define_asset_job(
        f"{name}_sync",
        selection=selection,
        description=f"Sync {name}: read {sync.source.relation}, check and map its attributes, send what changed to Personalize",
        tags={SYNC_TAG: name},
        config=CONSOLE_RUN_CONFIG,  # user errors without their stack (syncs/console.py)
    )
    return dg.Definitions(
        assets=[source_users, mapped_attributes, personalize_users],
        resources=resources,
        jobs=[job, dry_run_job(sync, selection, push_key)],
        schedules=schedules(sync, job, partitions, push_key),
        sensors=[source_changed_sensor(sync, job, partitions, source_columns(sync), push_key)],
    )


def _unsharded_failure(sync: UsersSync, asset: str, frame: ShardedFrame) -> dg.Failure:
    """An unsharded step handed the stored output of a sharded run (the spec's `shards` changed since)."""
    return dg.Failure(
        description=f"sync {sync.name!r}: the stored {asset} was made in {len(frame.parts)} shards, and the "
        "spec now says `shards: 1`: materialize the whole sync again (source_users, mapped_attributes, "
        "personalize_users)",
        allow_retries=False,
    )
