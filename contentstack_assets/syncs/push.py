"""What the push assets share: the users push's run config and guards (used by the plain push and by every
shard of a sharded one), and the `delivery_failures` check of the users, events and merges pushes.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
from pydantic import Field

from contentstack_assets.engine.push import SourceShrankError
from contentstack_assets.resources import PersonalizeResource
from contentstack_assets.spec import Sync, UsersSync
from contentstack_assets.syncs.report import failures_sample, user_errors


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


@contextmanager
def push_errors() -> Iterator[None]:
    """`user_errors()`, and the empty-source guard's refusal: both fail the step without a retry (a retry
    would read the same source)."""
    try:
        with user_errors():
            yield
    except SourceShrankError as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


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


def require_attribute_keys(sync: UsersSync, personalize: PersonalizeResource) -> None:
    """The push's own guard, before any client exists: with a management token, a spec key missing from the
    project fails the step with the check's message.

    The blocking `attribute_keys_exist` check stops the push in a run that also maps the rows, but
    mapped_attributes is stored before its check fails, and a later run of the push alone ("Materialize
    selected" in the UI) loads that stored frame without running the check."""
    with user_errors():
        listed = personalize.list_attributes(sync.destination)
    missing = [] if listed is None else missing_attribute_keys(sync, listed)
    if missing:
        raise dg.Failure(
            description=missing_keys_message(sync, missing),
            metadata={"missing_keys": missing},
            allow_retries=False,
        )
