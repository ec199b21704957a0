"""What the schedules, sensors and alerts read of a sync's runs: which sync a run works on, whether one is
still in progress, and whether a run is a dry run (which delivers nothing, and materializes nothing).
"""

from typing import Protocol

import dagster as dg

IN_PROGRESS = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
    dg.DagsterRunStatus.CANCELING,
]
SYNC_TAG = "contentstack/sync"
DRY_RUN_TAG = "contentstack/dry_run"  # "true" on the runs of `N_dry_run`


class SyncJob(Protocol):
    """The `N_sync` job a schedule or sensor starts: what `dg.define_asset_job` returns (its class is not part
    of Dagster's public API, so it is typed by what is used of it)."""

    @property
    def name(self) -> str: ...


def syncs_of_run(run: dg.DagsterRun) -> set[str]:
    """The syncs a run works on: its job's tag, its `N_sync` job name, or the sync part of the asset keys it
    materializes (`[*key_prefix, N, asset]`; a backfill, a "Materialize" click in the UI or a run of
    Dagster's automation sensor has neither)."""
    names = set()
    if run.tags.get(SYNC_TAG):
        names.add(run.tags[SYNC_TAG])
    if run.job_name.endswith("_sync"):
        names.add(run.job_name.removesuffix("_sync"))
    names.update(key.path[-2] for key in run.asset_selection or () if len(key.path) > 1)
    return names


def run_in_progress(instance: dg.DagsterInstance, sync_name: str) -> dg.DagsterRun | None:
    """A queued or running run that works on this sync, if any."""
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=IN_PROGRESS), limit=200):
        if sync_name in syncs_of_run(run):
            return run
    return None


def is_dry_run(run: dg.DagsterRun) -> bool:
    """Whether a run is a dry run: it carries `contentstack/dry_run=true` (every run of `N_dry_run` does)."""
    return run.tags.get(DRY_RUN_TAG) == "true"


def recorded_by_dry_run(materialization: dg.AssetMaterialization | None) -> bool:
    """Whether a push materialization was a dry run's: dry runs record an observation now, but those of
    earlier versions materialized the push with `dry_run: true` in its metadata, and none delivered."""
    dry = materialization.metadata.get("dry_run") if materialization else None
    return bool(dry is not None and dry.value)
