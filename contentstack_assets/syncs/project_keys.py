"""`destination.create_missing` in the Dagster layer: the key checks (`attribute_keys_exist`,
`event_keys_exist`) and the pushes' own guards create the keys the project lacks before anything is sent, or,
in a dry run, say which they would create; what was created goes into the check's metadata (`created_keys`,
`would_create_keys`) and the run's log.
"""

import dagster as dg

from contentstack_assets.engine.project_keys import (
    ATTRIBUTES,
    EVENTS,
    Creation,
    attributes_wanted,
    create_missing,
    events_wanted,
)
from contentstack_assets.resources import PersonalizeResource
from contentstack_assets.spec import EventsSync, UsersSync
from contentstack_assets.syncs.runs import DRY_RUN_TAG


def is_dry_run(context: dg.AssetExecutionContext, push_key: dg.AssetKey) -> bool:
    """Whether this run is a dry run of the sync's push: the dry-run job's tag, or `dry_run: true` in the push's
    run config (set in the Launchpad). The key checks run before the push and must create nothing then."""
    if context.run.tags.get(DRY_RUN_TAG):
        return True
    ops = (context.run.run_config or {}).get("ops") or {}
    return _holds_dry_run(ops.get(push_key.to_python_identifier()))


def _holds_dry_run(config: object) -> bool:
    # a sharded push's config sits one level further down (the graph's ops)
    if not isinstance(config, dict):
        return False
    return config.get("dry_run") is True or any(_holds_dry_run(value) for value in config.values())


def create_missing_attributes(
    sync: UsersSync,
    personalize: PersonalizeResource,
    listed: list[dict] | None,
    *,
    dry_run: bool,
    log,
) -> Creation | None:
    """With `create_missing` (and the project's list at hand), create the attributes the project lacks."""
    if listed is None or not sync.destination.create_missing:
        return None
    return create_missing(
        ATTRIBUTES,
        attributes_wanted(sync),
        listed,
        lambda item: personalize.create_attribute(sync.destination, item.key, item.name, item.description),
        sync_name=sync.name,
        project_uid=sync.destination.project_uid,
        dry_run=dry_run,
        log=log,
    )


def create_missing_event(
    sync: EventsSync,
    personalize: PersonalizeResource,
    listed: list[dict] | None,
    *,
    dry_run: bool,
    log,
) -> Creation | None:
    """With `create_missing`, create the sync's fixed event key when the project lacks it."""
    if listed is None or not sync.destination.create_missing:
        return None
    return create_missing(
        EVENTS,
        events_wanted(sync),
        listed,
        lambda item: personalize.create_event(sync.destination, item.key, item.description),
        sync_name=sync.name,
        project_uid=sync.destination.project_uid,
        dry_run=dry_run,
        log=log,
    )


def creation_metadata(creation: Creation | None) -> dict[str, object]:
    """The check's record of a creation: `created_keys`, or in a dry run `would_create_keys`."""
    if creation is None:
        return {}
    if creation.dry_run:
        return {"would_create_keys": creation.missing}
    return {"created_keys": creation.created}


def creation_description(creation: Creation | None, project_uid: str) -> str | None:
    if creation is None or not creation.missing:
        return None
    if creation.dry_run:
        return (
            f"dry run: would create in project {project_uid}: {', '.join(creation.missing)} (create_missing)"
        )
    if creation.created:
        return f"created in project {project_uid}: {', '.join(creation.created)} (create_missing)"
    return None
