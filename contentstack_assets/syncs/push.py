"""What the push assets share: the users push's run config and guards (used by the plain push and by every
shard of a sharded one), the `delivery_failures` check of the users, events and merges pushes, and what a
dry run records and how it is launched (`N_dry_run`).
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pandas as pd
from pydantic import Field

from contentstack_assets.engine.clears import TooManyClearsError, source_uids
from contentstack_assets.engine.days import DayCounts
from contentstack_assets.engine.deliver import DeliveryReport
from contentstack_assets.engine.digests import present_uids as read_uids
from contentstack_assets.engine.frames import ChunkedFrame, Frame, ShardedFrame
from contentstack_assets.engine.project_keys import Creation
from contentstack_assets.engine.push import PushResult, SourceShrankError
from contentstack_assets.resources import PersonalizeResource
from contentstack_assets.spec import Sync, UsersSync
from contentstack_assets.syncs.labels import asset_labels
from contentstack_assets.syncs.partitions import covers_every_day, is_partitioned_run
from contentstack_assets.syncs.project_keys import create_missing_attributes
from contentstack_assets.syncs.report import failures_sample, markdown_table, user_errors
from contentstack_assets.syncs.runs import DRY_RUN_TAG, SYNC_TAG, SyncJob
from contentstack_assets.wire import UID


class PushConfig(dg.Config):
    """The Launchpad's fields of a users push (`ops: {N__personalize_users: {config: ...}}`)."""

    dry_run: bool = Field(
        default=False,
        description="Compute and report the plan (counts and sample bodies); send nothing, write no state.",
    )
    full_resync: bool = Field(
        default=False,
        description="Ignore the sync state and send every valid user ALL of its attributes (one request "
        "per user, however little changed).",
    )
    allow_source_shrink: bool = Field(
        default=False,
        description="Run even if the source returned far fewer rows than the last run: the empty-source "
        "guard's refusal overridden for this run.",
    )
    allow_clear: bool = Field(
        default=False,
        description="With `on_delete: clear`: clear the users who left the source even if they are more than "
        "`max_clear_share` of the users in the sync state (that guard's refusal overridden for this run).",
    )


@contextmanager
def push_errors() -> Iterator[None]:
    """`user_errors()`, and the refusals of the empty-source guard and of `max_clear_share`: all fail the
    step without a retry (a retry would read the same source)."""
    try:
        with user_errors():
            yield
    except (SourceShrankError, TooManyClearsError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


# -- the push asset -------------------------------------------------------------------------------------
def push_asset(
    sync: Sync,
    key: dg.AssetKey,
    *,
    description: str,
    ins: dict[str, dg.AssetIn],
    deps: list[dg.AssetKey],
    check_specs: list[dg.AssetCheckSpec],
    partitions_def: dg.PartitionsDefinition | None,
    backfill_policy: dg.BackfillPolicy | None,
):
    """The decorator of a push asset: one skippable asset (a multi_asset of one, which may yield no
    materialization and leave its check unevaluated), so that a dry run records its plan as an observation
    and no more. Its op keeps the asset's name (`N__personalize_users`), which its run config names."""
    return dg.multi_asset(
        name=key.to_python_identifier(),
        specs=[
            dg.AssetSpec(
                key,
                deps=[asset_in.key for asset_in in ins.values()] + deps,
                skippable=True,
                kinds={"contentstack"},
                description=description,
                **asset_labels(sync),
            )
        ],
        ins=ins,
        check_specs=check_specs,
        can_subset=True,  # what lets the check be left out; the run's selection is honoured (`selected`)
        pool=sync.destination.pool,
        partitions_def=partitions_def,
        backfill_policy=backfill_policy,
    )


def selected(
    context: dg.AssetExecutionContext, checks: list[dg.AssetCheckResult]
) -> list[dg.AssetCheckResult]:
    """The check results the run selected (all of them, unless a user picked some checks only)."""
    chosen = {check.name for check in context.selected_asset_check_keys}
    return [check for check in checks if check.check_name in chosen]


# -- dry runs ------------------------------------------------------------------------------------------
def dry_run_job(sync: Sync, selection: dg.AssetSelection, push_key: dg.AssetKey) -> SyncJob:
    """`N_dry_run`: the sync's assets with the push's `dry_run: true` preset, and the run tag that marks a dry
    run in the Runs list (a tag is set at launch, so a dry run has a job of its own)."""
    return dg.define_asset_job(
        f"{sync.name}_dry_run",
        selection=selection,
        config={"ops": {push_key.to_python_identifier(): {"config": {"dry_run": True}}}},
        description=f"Dry run of the {sync.name} sync: read and plan as {sync.name}_sync does, then report the "
        "plan (an observation of the push asset) instead of sending it: nothing sent, no state, no "
        "materialization of the push",
        tags={SYNC_TAG: sync.name, DRY_RUN_TAG: "true"},
    )


def dry_run_observation(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, push_key: dg.AssetKey, metadata: dict
) -> dg.AssetObservation:
    """What a dry run records instead of a materialization: its plan, observed on the push asset (so the
    partitions and the plots of the push show deliveries only)."""
    if not context.run.tags.get(DRY_RUN_TAG):
        context.log.info(
            f"dry run: the plan is recorded as an observation of {push_key.to_user_string()}; launch it as "
            f"the dry-run job (or with the tag {DRY_RUN_TAG}=true) to mark the run as a dry run in the Runs list"
        )
    return dg.AssetObservation(asset_key=push_key, metadata=metadata)


# -- the delivery_failures check ---------------------------------------------------------------------
def delivery_check(
    sync: Sync, *, failed: int, failed_share: float, error: bool, **metadata: object
) -> dg.AssetCheckResult:
    """`delivery_failures`: passes when nothing failed; an error when `error` (the destination is the
    problem), else a warning. `metadata` follows the share and the spec's threshold."""
    return dg.AssetCheckResult(
        check_name="delivery_failures",
        passed=failed == 0,
        severity=dg.AssetCheckSeverity.ERROR if error else dg.AssetCheckSeverity.WARN,
        metadata={
            "num_failures": failed,
            "failed_share": round(failed_share, 4),
            "threshold": sync.max_failed_share,
            **metadata,
        },
    )


def users_delivery_check(sync: UsersSync, delivered: int, failed: int, failures: list) -> dg.AssetCheckResult:
    """A users push's `delivery_failures`: warns on any failed user, errors above the spec's `max_failed_share`."""
    attempted = delivered + failed
    failed_share = failed / attempted if attempted else 0.0
    return delivery_check(
        sync,
        failed=failed,
        failed_share=failed_share,
        error=failed_share > sync.max_failed_share,
        failures=failures_sample(failures, lambda request: request.user_uid),
    )


def users_delivery_failure(
    sync: UsersSync, delivered: int, failed: int, failures: list, stopped: str | None = None
) -> dg.Failure:
    """The step failure raised after the metadata is recorded, when some users failed after retries."""
    first = failures[0] if failures else None
    if stopped:
        description = (
            f"{sync.name}: {stopped}. Nothing was delivered; fix the destination and run again: the "
            "users not sent and the failed ones go out then."
        )
    else:
        description = (
            f"{sync.name}: {failed} of {delivered + failed} users failed after retries (first: "
            f"{first[0].user_uid if first else '?'}: {first[1].error if first else '?'}); "
            f"{delivered} were delivered. The failed users are retried by the next run."
        )
    return dg.Failure(
        description=description,
        metadata={"failures": failures_sample(failures, lambda request: request.user_uid)},
    )


# -- users who left the source (`on_delete: clear`) ---------------------------------------------------
def present_uids(
    context: dg.AssetExecutionContext | dg.OpExecutionContext, sync: UsersSync, mapped: Frame
) -> pd.Series | None:
    """The uids of a whole read of the source, by which a push with `on_delete: clear` tells who left; None
    when this run cannot tell. An unpartitioned run read every row: its frame's uids (valid and rejected
    rows, all shards'). A partitioned run over every day (`reconcile`) misses the rows whose day is null or
    outside the partitions: it reads the source's uid column whole. A run over some days clears nobody."""
    if sync.on_delete != "clear":
        return None
    if not is_partitioned_run(context):
        present = read_uids(mapped)  # a read by digests: every uid it saw, read whole or not
        if present is not None:
            return pd.Series(present, dtype=object)
        return mapped.column(UID) if isinstance(mapped, (ChunkedFrame, ShardedFrame)) else mapped[UID]
    if covers_every_day(context, sync.source):
        with user_errors():
            return source_uids(sync)
    return None


def clear_sample(result: PushResult) -> dict:
    """A push's leavers as metadata: who is (or would be) cleared, with the keys."""
    if result.leavers is None or not result.leavers.total:
        return {}
    return {"clear_sample": markdown_table(result.leavers.sample(), ["user_uid", "keys"])}


def clears_failure(sync: UsersSync, clears: DeliveryReport) -> dg.Failure:
    """The step failure raised after the metadata is recorded, when clears failed after retries."""
    request, response = clears.failures[0] if clears.failures else (None, None)
    first = f"{request.user_uid}: {response.error}" if request is not None and response is not None else "?"
    return dg.Failure(
        description=(
            f"{sync.name}: {clears.failed} of {clears.delivered + clears.failed} clears of users who left the "
            f"source failed after retries (first: {first}); they stay in the sync state and the next run that "
            "reads the whole source clears them again."
        ),
        metadata={"failures": failures_sample(clears.failures, lambda request: request.user_uid)},
    )


# -- the attribute keys ------------------------------------------------------------------------------
def missing_attribute_keys(sync: UsersSync, listed: list[dict]) -> list[str]:
    """The spec's attribute keys that the project's attribute list (Management API) lacks."""
    known = {item.get("key") for item in listed}
    return sorted(key for key in sync.attributes if key not in known)


def missing_keys_message(sync: UsersSync, missing: list[str]) -> str:
    return (
        f"missing in project {sync.destination.project_uid}: {', '.join(missing)}: create them in Personalize "
        "(Attributes) with these exact keys, or fix the spec"
    )


def require_attribute_keys(
    sync: UsersSync, personalize: PersonalizeResource, *, dry_run: bool = False, log=None
) -> Creation | None:
    """The push's own guard, before any client exists: with a management token, a spec key missing from the
    project fails the step with the check's message; with `create_missing` it is created instead (in a dry
    run: reported, not created), and what was done is returned.

    The blocking `attribute_keys_exist` check stops the push in a run that also maps the rows, but
    mapped_attributes is stored before its check fails, and a later run of the push alone ("Materialize
    selected" in the UI) loads that stored frame without running the check."""
    with user_errors():
        listed = personalize.list_attributes(sync.destination)
        creation = create_missing_attributes(
            sync, personalize, listed, dry_run=dry_run, log=log or (lambda message: None)
        )
    missing = [] if listed is None or creation is not None else missing_attribute_keys(sync, listed)
    if missing:
        raise dg.Failure(
            description=missing_keys_message(sync, missing),
            metadata={"missing_keys": missing},
            allow_retries=False,
        )
    return creation


# the counts of a users push that add up over days (`users_stuck` is the sync's, the same whatever the day)
USERS_COUNTED = (
    "rows_read",
    "rows_rejected",
    "users_new",
    "users_changed",
    "users_to_send",
    "users_unchanged",
    "users_stale_skipped",
    "users_retried",
    "users_delivered",
    "users_failed",
    "requests_sent",
    "users_resent_after_merge",
    "rows_reread",
    "users_reread_failed",
    "users_cleared",
    "users_clear_failed",
)


def users_by_day(by_day: DayCounts, resends: dict[str, int]) -> DayCounts:
    """A users push's counts by day: the engine's, `users_to_send` (the users changed), and the counts of
    users read again by uid, which belong to no day of the run."""
    days = DayCounts()
    days.merge(by_day)
    for day, counts in by_day.as_dict().items():
        days.add(day, "users_to_send", counts.get("users_changed", 0))
    for name, count in resends.items():
        days.add(None, name, count)
    return days
