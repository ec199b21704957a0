"""A merges sync as Dagster definitions: source_merges -> personalize_merges.

No `from __future__ import annotations` here: Dagster reads the `context` hints of the asset functions.
"""

import time

import dagster as dg
import pandas as pd
from pydantic import Field

from contentstack_assets.engine.merges import TARGET_UID, merges_source_columns, push_merges
from contentstack_assets.engine.resend import resend_syncs
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.io_manager import FRAMES_IO_MANAGER_KEY
from contentstack_assets.resources import PersonalizeResource, SyncStateResource
from contentstack_assets.spec import MergesSync, SyncsSpec
from contentstack_assets.syncs.console import CONSOLE_RUN_CONFIG
from contentstack_assets.syncs.labels import asset_key, asset_labels, push_asset_key, source_deps
from contentstack_assets.syncs.push import (
    delivery_check,
    dry_run_job,
    dry_run_observation,
    push_asset,
    selected,
)
from contentstack_assets.syncs.report import markdown_table, rejected_sample, source_metadata, user_errors
from contentstack_assets.syncs.runs import SYNC_TAG
from contentstack_assets.syncs.schedules import schedules
from contentstack_assets.syncs.sensors import source_changed_sensor


class MergesPushConfig(dg.Config):
    dry_run: bool = Field(
        default=False, description="Compute and report the pairs to merge; send nothing, write no state."
    )


def build_merges_sync(sync: MergesSync, spec: SyncsSpec) -> dg.Definitions:
    name = sync.name
    source_key = asset_key(sync, "source_merges")
    push_key = asset_key(sync, "personalize_merges")
    labels = asset_labels(sync)
    columns = merges_source_columns(sync)
    resend_in = resend_syncs(spec, name)  # users syncs whose merged users are resent whole afterwards

    @dg.asset(
        key=source_key,
        deps=source_deps(sync),
        kinds={"sqlalchemy"},
        io_manager_key=FRAMES_IO_MANAGER_KEY,
        **labels,
        description=f"Identity pairs of {sync.source.relation} at {sync.source.display_url} for the {name} sync",
        metadata={"source": sync.source.display_url, "relation": sync.source.relation},
    )
    def source_merges(context: dg.AssetExecutionContext) -> pd.DataFrame:
        started = time.perf_counter()
        reader = SourceReader(sync.source, columns)
        with user_errors():
            frame = reader.read(on_progress=lambda rows: context.log.info(f"{name}: {rows} rows read"))
        context.add_output_metadata(
            {
                "rows_read": len(frame),
                "read_s": round(time.perf_counter() - started, 3),
                **source_metadata(reader.column_types, frame),
            }
        )
        return frame

    @push_asset(
        sync,
        push_key,
        ins={"source_merges": dg.AssetIn(key=source_key)},
        deps=[push_asset_key(spec, dependency) for dependency in sync.depends_on],
        partitions_def=None,
        backfill_policy=None,
        description=(
            f"Anonymous users of the {name} sync merged into known ones in Personalize project "
            f"{sync.destination.project_uid}: each pair once"
        ),
        check_specs=[
            dg.AssetCheckSpec(
                "delivery_failures",
                asset=push_key,
                description=f"Share of pairs whose merge failed (error above {sync.max_failed_share:.0%}, "
                f"stuck pairs, failed in {sync.stuck_after_runs}+ runs, left out)",
            )
        ],
    )
    def personalize_merges(
        context: dg.AssetExecutionContext,
        config: MergesPushConfig,
        source_merges: pd.DataFrame,
        personalize: PersonalizeResource,
        sync_state: SyncStateResource,
    ):
        started = time.perf_counter()
        client = None if config.dry_run else personalize.edge(sync.destination, sync.concurrency)
        with user_errors():
            result = push_merges(
                sync,
                source_merges,
                client=client,
                store=sync_state.store(),
                run_id=context.run.run_id,
                dry_run=config.dry_run,
                log=context.log.info,
                resend_in=resend_in,
            )
        report = result.report
        failures = markdown_table(
            [
                {
                    "source_uid": request.source_uid,
                    "target_uid": request.target_uid,
                    "status": response.status,
                    "attempts": response.attempts,
                    "error": response.error,
                }
                for request, response in report.failures[:20]
            ],
            ["source_uid", "target_uid", "status", "attempts", "error"],
            "(no failures)",
        )
        waiting = markdown_table(
            [
                {
                    "source_uid": pair.request.source_uid,
                    "target_uid": pair.request.target_uid,
                    "reason": pair.reason,
                }
                for pair in result.waiting[:20]
            ],
            ["source_uid", "target_uid", "reason"],
            "(no pairs waiting)",
        )
        metadata = {
            **result.counts,
            "duration_s": round(time.perf_counter() - started, 3),
            "latency_p50_ms": round(report.percentile_ms(50), 2),
            "latency_p95_ms": round(report.percentile_ms(95), 2),
            "rejected_sample": rejected_sample(
                result.rejected, columns=["user_uid", TARGET_UID, "reason", "row_number"]
            ),
            "failures": failures,
            "waiting": waiting,
        }
        if config.dry_run:
            # the plan, observed: no materialization (the push's history holds merges only)
            plan_sample = markdown_table(result.plan.sample(), ["source_uid", "target_uid"])
            yield dry_run_observation(
                context, push_key, {**metadata, "dry_run": True, "plan_sample": plan_sample}
            )
            return
        # A few failed pairs warn and let the run go on: a users push that depends on this sync still runs
        # (a pair merged by a later run marks its user to be resent whole, engine/resend.py). Above
        # `max_failed_share`, or when delivery stopped on refusals, the destination is the problem: fail.
        fails_step = bool(report.stopped) or result.failed_share > sync.max_failed_share
        yield dg.MaterializeResult(
            metadata=metadata,
            check_results=selected(
                context,
                [
                    delivery_check(
                        sync,
                        failed=report.failed,
                        failed_share=result.failed_share,
                        error=fails_step,
                        merges_stuck=result.merges_stuck,
                        merges_waiting=len(result.waiting),
                        failures=failures,
                        waiting=waiting,
                    )
                ],
            ),
        )
        if report.failed:
            first_request, first = report.failures[0] if report.failures else (None, None)
            summary = (
                f"{name}: {report.failed} of {report.delivered + report.failed} merges failed after retries "
                f"(first: {first_request.source_uid + ' -> ' + first_request.target_uid if first_request else '?'}: "
                f"{first.error if first else '?'}); {report.delivered} were merged"
                + (
                    f", {result.failed_stuck} failed in {sync.stuck_after_runs}+ runs (stuck)"
                    if result.failed_stuck
                    else ""
                )
                + (
                    f"; {len(result.waiting)} pairs wait for a pair into their source uid not merged yet "
                    f"({result.waiting_stuck} of them behind a stuck pair; first: "
                    f"{result.waiting[0].request.source_uid} -> {result.waiting[0].request.target_uid} "
                    f"{result.waiting[0].reason})"
                    if result.waiting
                    else ""
                )
                + ". The failed pairs are retried by the next run, and the pairs waiting for them follow."
            )
            if not fails_step:
                context.log.warning(
                    f"{summary} Below max_failed_share ({sync.max_failed_share:.0%}, stuck pairs left out): "
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
        description=f"Sync {name}: read the identity pairs of {sync.source.relation} and merge those not merged yet in Personalize",
        tags={SYNC_TAG: name},
        config=CONSOLE_RUN_CONFIG,  # user errors without their stack (syncs/console.py)
    )
    return dg.Definitions(
        assets=[source_merges, personalize_merges],
        jobs=[job, dry_run_job(sync, selection, push_key)],
        schedules=schedules(sync, job, None, push_key),
        sensors=[source_changed_sensor(sync, job, None, columns, push_key)],
    )
