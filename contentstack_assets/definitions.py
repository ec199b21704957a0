"""The code location: every sync of the spec as Dagster definitions."""

from __future__ import annotations

import dagster as dg

from contentstack_assets.resources import FrameIOManager, PersonalizeResource, SyncStateResource
from contentstack_assets.spec import SyncsSpec, load_spec
from contentstack_assets.syncs.cadence import failure_alerts
from contentstack_assets.syncs.events import build_events_sync
from contentstack_assets.syncs.merges import build_merges_sync
from contentstack_assets.syncs.users import build_users_sync


def build_definitions(spec: SyncsSpec, resources: dict | None = None) -> dg.Definitions:
    """Every sync of the spec; `resources` replaces default resources by key (tests, custom retries)."""
    builders = {"users": build_users_sync, "events": build_events_sync, "merges": build_merges_sync}
    per_sync = [builders[sync.kind](sync, spec) for sync in spec.syncs]
    return dg.Definitions.merge(
        *per_sync,
        dg.Definitions(
            sensors=[failure_alerts],
            resources={
                "personalize": PersonalizeResource(),
                "sync_state": SyncStateResource(),
                "io_manager": FrameIOManager(),
                **(resources or {}),
            },
        ),
    )


@dg.definitions
def defs() -> dg.Definitions:
    # a spec error raises here, with the file, sync and key: the location fails whole, never half-loaded
    return build_definitions(load_spec())
