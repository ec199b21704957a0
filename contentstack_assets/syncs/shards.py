"""Sharded delivery (`shards: N`): `N/personalize_users` becomes a graph of N shard ops, each planning and
delivering the users whose uid hashes to it (engine/shards.py) with its share of `concurrency`, and a summary
op that is the asset's materialization and check. Who goes where and what a shard owns:
docs/production.md, "Sharded delivery". No `from __future__ import annotations`: Dagster reads the ops' hints.
"""

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import dagster as dg
import numpy as np
import pandas as pd

from contentstack_assets.engine.days import DayCounts
from contentstack_assets.engine.deliver import DeliveryReport
from contentstack_assets.engine.digests import is_partial, read_whole_mapped
from contentstack_assets.engine.frames import Frame, ShardedFrame, removed_after
from contentstack_assets.engine.plan import UserRequest
from contentstack_assets.engine.resend import push_users_resending
from contentstack_assets.engine.shards import concurrency_shares, rejected_uids, shard_of, shard_rows
from contentstack_assets.io_manager import FRAME_TYPE
from contentstack_assets.personalize.client import Response
from contentstack_assets.resources import PersonalizeResource, SyncStateResource
from contentstack_assets.spec import SpecError, SyncsSpec, UsersSync
from contentstack_assets.syncs.labels import push_asset_key
from contentstack_assets.syncs.partitions import is_partitioned_run, metadata_by_day, scope_of
from contentstack_assets.syncs.push import (
    USERS_COUNTED,
    PushConfig,
    clears_failure,
    dry_run_observation,
    present_uids,
    push_errors,
    require_attribute_keys,
    users_by_day,
    users_delivery_check,
    users_delivery_failure,
)
from contentstack_assets.syncs.report import (
    PEAK,
    failures_sample,
    markdown_table,
    peaks_by_shard,
    process_peak_memory,
    rejected_sample,
    user_errors,
)
from contentstack_assets.syncs.runs import SYNC_TAG

# Shard summaries are small objects handed from the shard steps to the summary step. They go through a
# filesystem IO manager (under $DAGSTER_HOME/storage, like the frames under $DAGSTER_HOME/frames), which
# every executor can read back: another process, a Celery worker or a Kubernetes pod on shared storage.
SHARD_IO_MANAGER_KEY = "contentstack_shard_io_manager"
SHARD_IO_MANAGER = dg.FilesystemIOManager()  # one object for every sync: Definitions.merge accepts it once


def resources() -> dict[str, dg.ConfigurableIOManager]:
    """The resources a sharded sync adds to the code location."""
    return {SHARD_IO_MANAGER_KEY: SHARD_IO_MANAGER}


# -- what a shard hands to the summary ---------------------------------------------------------------
@dataclass
class ShardSummary:
    index: int
    concurrency: int
    counts: dict[str, int]
    users_to_send: int
    started_at: float  # unix time, so the summary can tell the wall time of shards on different machines
    finished_at: float
    latencies_ms: np.ndarray
    failures: list[tuple[UserRequest, Response]] = field(default_factory=list)
    rejected: pd.DataFrame = field(default_factory=pd.DataFrame)  # the first rejected rows (shard 0 only)
    plan_sample: list[dict] = field(default_factory=list)  # dry runs
    clear_sample: list[dict] = field(default_factory=list)  # on_delete: clear: who is (or would be) cleared
    clear_failures: list = field(default_factory=list)  # (ClearRequest, Response) of failed clears
    timings_s: dict[str, float] = field(default_factory=dict)  # the push's phases: plan, deliver
    by_day: dict = field(default_factory=dict)  # a partitioned run's counts by day (`users_by_day`)
    would_create: list[str] = field(default_factory=list)  # dry runs with create_missing: keys not created
    peak_rss_mib: float | None = None  # its step's process (`process_peak_memory`)


SUMMED = (
    "rows_read",
    "rows_rejected",
    "rows_digest_unchanged",  # each shard's rows left unread by their digest (engine/digests.py)
    "users_new",
    "users_changed",
    "users_unchanged",
    "users_stale_skipped",
    "users_retried",
    "users_delivered",
    "users_failed",
    "requests_sent",
    "users_resent_after_merge",
    "rows_reread",
    "users_reread_failed",
    "users_to_clear",
    "users_cleared",
    "users_clear_failed",
)


# -- the graph-backed asset ---------------------------------------------------------------------------
def sharded_push_asset(
    sync: UsersSync,
    spec: SyncsSpec,
    *,
    mapped_key: dg.AssetKey,
    push_key: dg.AssetKey,
    check_specs: Sequence[dg.AssetCheckSpec],
    partitions_def: dg.PartitionsDefinition | None,
    backfill_policy: dg.BackfillPolicy | None,
    **labels,
) -> dg.AssetsDefinition:
    """`N/personalize_users` as N shard pushes and a summary; same key, config, check and metadata keys."""
    shards = sync.shards
    check_specs = list(check_specs)
    try:
        shares = concurrency_shares(sync.concurrency, shards)
    except ValueError:
        raise SpecError(
            f"{spec.path}: sync {sync.name!r}: key 'shards': {shards} shards need `concurrency` of at least "
            f"{shards} (each shard holds at least one request in flight; got concurrency {sync.concurrency})"
        ) from None
    shard_ops = [_shard_op(sync, index, shares[index]) for index in range(shards)]
    summary_op = _summary_op(sync, push_key, check_specs)
    upstream = {
        f"after_{dependency}": dg.AssetIn(key=push_asset_key(spec, dependency), dagster_type=dg.Nothing)
        for dependency in sync.depends_on
    }

    @dg.config_mapping
    def same_config_for_every_shard(config: PushConfig) -> dict:
        # the run config stays `ops: {N__personalize_users: {config: {dry_run: ...}}}`, sharded or not
        values = config.model_dump()
        return {
            "summary": {"config": values},
            **{f"shard_{index}": {"config": values} for index in range(shards)},
        }

    def personalize_users(mapped_attributes, **after):
        summaries = [shard_op(mapped_attributes, after=list(after.values())) for shard_op in shard_ops]
        return summary_op(summaries)

    return dg.graph_asset(
        personalize_users,
        key=push_key,
        ins={"mapped_attributes": dg.AssetIn(key=mapped_key), **upstream},
        config=same_config_for_every_shard,
        check_specs=check_specs,
        kinds={"contentstack"},
        partitions_def=partitions_def,
        **labels,
        backfill_policy=backfill_policy,
        description=(
            f"Users of the {sync.name} sync in Personalize project {sync.destination.project_uid}: only changes "
            f"sent, in {shards} shards by user uid"
        ),
    )


def _shard_op(sync: UsersSync, index: int, concurrency: int) -> dg.OpDefinition:
    shards = sync.shards
    label = f"shard {index + 1} of {shards}"

    @dg.op(
        name=f"{sync.name}__push_shard_{index}",
        description=f"Plan and deliver the {sync.name} users of {label} ({concurrency} requests in flight)",
        ins={"mapped_attributes": dg.In(FRAME_TYPE), "after": dg.In(dg.Nothing)},
        out=dg.Out(io_manager_key=SHARD_IO_MANAGER_KEY),
        pool=sync.destination.pool,
        tags={SYNC_TAG: sync.name, "contentstack/shard": f"{index + 1}/{shards}"},
    )
    def push_shard(
        context: dg.OpExecutionContext,
        config: PushConfig,
        mapped_attributes: Frame,
        personalize: PersonalizeResource,
        sync_state: SyncStateResource,
    ) -> ShardSummary:
        started_at = time.time()
        if is_partial(mapped_attributes) and not _made_in(mapped_attributes, shards):
            # what each shard left unread is known only to a read by digests in as many shards
            raise dg.Failure(
                description=f"sync {sync.name!r}: the stored mapped_attributes is a read by digests made with "
                f"another number of shards than the spec's `shards: {shards}`: materialize source_users "
                "again",
                allow_retries=False,
            )
        rows = shard_rows(mapped_attributes, index, shards)
        if config.full_resync and is_partial(rows):
            # a full resync sends every user: this shard's slice is read whole for it
            with removed_after(rows, unless=mapped_attributes), user_errors():
                own = read_whole_mapped(sync, shard=(index, shards))
            with removed_after(own):
                rows = shard_rows(mapped_attributes, index, shards, own=own)
        # also when mapped_attributes was not part of this run
        creation = require_attribute_keys(sync, personalize, dry_run=config.dry_run, log=context.log.info)
        client = None if config.dry_run else personalize.edge(sync.destination, concurrency)
        with push_errors(), removed_after(rows, unless=mapped_attributes):
            # this shard's users a merge overwrote are resent whole (read again outside the run's days)
            result, resends = push_users_resending(
                sync,
                rows,
                store=sync_state.store(),
                # a read by digests left this shard's unchanged users unread
                partitioned=is_partitioned_run(context) or is_partial(rows),
                owns=lambda uids: shard_of(uids, shards) == index,
                # a rejected row of this shard's user is recorded by shard 0, and the user is still in the source
                rejected_elsewhere=rejected_uids(mapped_attributes) if index else (),
                client=client,
                run_id=context.run.run_id,
                scope=scope_of(context),
                dry_run=config.dry_run,
                full_resync=config.full_resync,
                allow_source_shrink=config.allow_source_shrink,
                log=lambda message: context.log.info(f"{label}: {message}"),
                shard=(index, shards),
                concurrency=concurrency,
                # on_delete: clear: the whole read's uids (all shards' rows, rejected ones too); the shard
                # clears only the users of the state it owns
                present=present_uids(context, sync, mapped_attributes),
                allow_clear=config.allow_clear,
            )
        resent = {
            "users_resent_after_merge": len(resends.present),
            "rows_reread": resends.rows_reread,
            "users_reread_failed": resends.unconfirmed_reread,
        }
        counts = {**result.counts, **resent}
        peak = process_peak_memory()
        context.add_output_metadata(
            {**counts, "shard": f"{index + 1}/{shards}", "concurrency": concurrency, **peak}
        )
        return ShardSummary(
            index=index,
            concurrency=concurrency,
            counts=counts,
            users_to_send=result.plan.users_to_send,
            started_at=started_at,
            finished_at=time.time(),
            latencies_ms=np.asarray(result.report.latencies_ms, dtype=np.float32),
            failures=list(result.report.failures),
            rejected=result.rejected.head(20),
            plan_sample=result.plan.sample_bodies() if config.dry_run else [],
            clear_sample=result.leavers.sample() if result.leavers else [],
            clear_failures=list(result.clears.failures),
            timings_s=result.timings_s,
            by_day=users_by_day(result.by_day, resent).as_dict(),
            would_create=creation.missing if creation is not None and creation.dry_run else [],
            peak_rss_mib=peak.get(PEAK),
        )

    return push_shard.alias(f"shard_{index}")


def _made_in(mapped: Frame | ShardedFrame, shards: int) -> bool:
    """Whether a stored read was made in this many shards."""
    return isinstance(mapped, ShardedFrame) and len(mapped.parts) == shards


def _clear_sample(summaries: Sequence[ShardSummary]) -> dict:
    sample = [row for summary in summaries for row in summary.clear_sample][:20]
    return {"clear_sample": markdown_table(sample, ["user_uid", "keys"])} if sample else {}


def check_outputs(check_specs: Sequence[dg.AssetCheckSpec]) -> dict[str, dg.Out]:
    """The outputs a graph-backed asset's summary op yields its checks' results through."""
    return {spec.get_python_identifier(): dg.Out(dg.Nothing, is_required=False) for spec in check_specs}


def _summary_op(
    sync: UsersSync, push_key: dg.AssetKey, check_specs: Sequence[dg.AssetCheckSpec]
) -> dg.OpDefinition:

    @dg.op(
        name=f"{sync.name}__push_summary",
        description=f"Add up the shards of the {sync.name} push: the asset's metadata and delivery check",
        ins={"summaries": dg.In(list)},
        # optional: a dry run records an observation of its plan, no materialization, no check
        out={"result": dg.Out(dg.Nothing, is_required=False), **check_outputs(check_specs)},
    )
    def push_summary(
        context: dg.AssetExecutionContext, config: PushConfig, summaries: list, sync_state: SyncStateResource
    ):
        summaries = sorted(summaries, key=lambda summary: summary.index)
        totals = {key: sum(int(summary.counts[key]) for summary in summaries) for key in SUMMED}
        # stuck users are counted over the whole sync, once every shard has recorded its outcomes
        store = sync_state.store()
        stuck_total, stuck_sample = store.stuck_users(store.key_of(sync), sync.stuck_after_runs)
        failures = [failure for summary in summaries for failure in summary.failures]
        latencies = np.concatenate([summary.latencies_ms for summary in summaries])
        delivered, failed = totals["users_delivered"], totals["users_failed"]
        metadata = {
            **totals,
            "users_stuck": stuck_total,
            "users_to_send": sum(summary.users_to_send for summary in summaries),
            "duration_s": round(
                max(s.finished_at for s in summaries) - min(s.started_at for s in summaries), 3
            ),
            # the phases of the slowest shard (shards plan and deliver side by side)
            **{
                f"{phase}_s": round(max(summary.timings_s.get(phase, 0.0) for summary in summaries), 3)
                for phase in ("plan", "deliver")
            },
            "latency_p50_ms": round(float(np.percentile(latencies, 50)), 2) if latencies.size else 0.0,
            "latency_p95_ms": round(float(np.percentile(latencies, 95)), 2) if latencies.size else 0.0,
            "full_resync": config.full_resync,
            "scope": scope_of(context),
            "rejected_sample": rejected_sample(summaries[0].rejected),
            "failures": failures_sample(failures, lambda request: request.user_uid),
            **_clear_sample(summaries),
            "shards": len(summaries),
            **peaks_by_shard(summaries),
            "shard_table": markdown_table(
                [
                    {
                        "shard": f"{summary.index + 1}/{len(summaries)}",
                        "concurrency": summary.concurrency,
                        **{
                            key: summary.counts[key]
                            for key in (
                                "rows_read",
                                "users_changed",
                                "users_delivered",
                                "users_failed",
                                "requests_sent",
                            )
                        },
                        "duration_s": round(summary.finished_at - summary.started_at, 3),
                    }
                    for summary in summaries
                ],
                [
                    "shard",
                    "concurrency",
                    "rows_read",
                    "users_changed",
                    "users_delivered",
                    "users_failed",
                    "requests_sent",
                    "duration_s",
                ],
            ),
        }
        if config.dry_run:
            sample = [row for summary in summaries for row in summary.plan_sample][:10]
            plan_sample = markdown_table(sample, ["user_uid", "reason", "body"])
            would_create = summaries[0].would_create if summaries else []
            yield dry_run_observation(
                context,
                push_key,
                {**metadata, "dry_run": True, "plan_sample": plan_sample}
                | ({"would_create_keys": would_create} if would_create else {}),
            )
            return
        if stuck_total:
            metadata["stuck_sample"] = markdown_table(
                stuck_sample, ["user_uid", "failed_runs", "last_status", "last_error"]
            )
        context.log.info(
            f"{sync.name}: {len(summaries)} shards: {delivered} users delivered, {failed} failed, "
            f"{totals['requests_sent']} requests in {metadata['duration_s']}s"
        )
        by_day = DayCounts()
        for summary in summaries:
            by_day.merge(summary.by_day)
        yield dg.Output(
            None, "result", metadata=metadata_by_day(context, metadata, by_day.as_dict(), USERS_COUNTED)
        )
        yield users_delivery_check(sync, delivered, failed, failures)
        if failed:
            raise users_delivery_failure(sync, delivered, failed, failures)
        if totals["users_clear_failed"]:
            clears = DeliveryReport(delivered=totals["users_cleared"], failed=totals["users_clear_failed"])
            clears.failures = [failure for summary in summaries for failure in summary.clear_failures]
            raise clears_failure(sync, clears)

    return push_summary.alias("summary")
