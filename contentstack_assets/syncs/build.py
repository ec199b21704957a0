"""Every sync of a spec as Dagster definitions: the builder behind the component and the code location."""

from __future__ import annotations

import warnings

import dagster as dg

from contentstack_assets.io_manager import FRAMES_IO_MANAGER_KEY, FrameIOManager
from contentstack_assets.resources import PersonalizeResource, SyncStateResource
from contentstack_assets.spec import SyncsSpec
from contentstack_assets.syncs.alerts import alert_sensors
from contentstack_assets.syncs.console import console_logger
from contentstack_assets.syncs.events import build_events_sync
from contentstack_assets.syncs.merges import build_merges_sync
from contentstack_assets.syncs.users import build_users_sync
from contentstack_assets.translator import PersonalizeTranslator


def build_definitions(
    spec: SyncsSpec, resources: dict | None = None, translator: PersonalizeTranslator | None = None
) -> dg.Definitions:
    """Every sync of the spec as Dagster definitions: assets, checks, jobs, schedules, sensors, resources.

    Args:
        spec: the sync spec (`load_spec`).
        resources: replaces default resources by key (`personalize`, `sync_state`, `contentstack_frames`): tests,
            custom retries, another state store.
        translator: sets each sync's asset key prefix, group, owners and tags in Python (by default the
            spec's own keys).

    Returns:
        The definitions, to merge into a project's own or to serve as a code location.
    """
    if translator is not None:
        spec = translator.apply(spec)
    builders = {"users": build_users_sync, "events": build_events_sync, "merges": build_merges_sync}
    with warnings.catch_warnings():
        # Beta parameters used knowingly (each sync's backfill policy, its sensors' owners): said once here,
        # not once per asset in every step process's log
        warnings.filterwarnings("ignore", category=dg.BetaWarning)
        per_sync = [builders[sync.kind](sync, spec) for sync in spec.syncs]
    return dg.Definitions.merge(
        *per_sync,
        dg.Definitions(
            sensors=alert_sensors(),
            # Dagster's console logger under its own key, quieter on user errors (syncs/console.py)
            loggers={"console": console_logger},
            resources={
                "personalize": PersonalizeResource(),
                "sync_state": SyncStateResource(),
                FRAMES_IO_MANAGER_KEY: FrameIOManager(),
                **(resources or {}),
            },
        ),
    )
