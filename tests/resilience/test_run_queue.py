"""The run queue holds one run per sync, as dagster.yaml and deploy/dagster.yaml configure it.

Runs are created the way the UI and the daemon create them (from the code location loaded by a workspace,
tagged with the job's tags) and submitted to the instance's QueuedRunCoordinator; the queued run
coordinator daemon's own iteration then decides what starts. The launcher is Dagster's test launcher, which
records a launch and runs nothing: what is tested is the queue, not the runs.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import pytest
from dagster._core.remote_representation.external import RemoteJob
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.test_utils import create_run_for_test, create_test_daemon_workspace_context
from dagster._core.workspace.load_target import ModuleTarget
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

from tests.helpers import DEV_INSTANCE, PROJECT_ROOT, users_sync, write_spec
from tests.integration.test_merges import merges_sync
from tests.integration.test_production import production_home

SYNC_TAG = "contentstack/sync"
TEST_LAUNCHER = """
# (test) records launches, runs nothing
run_launcher:
  module: dagster._core.test_utils
  class: MockedRunLauncher
"""
STARTING, QUEUED = DagsterRunStatus.STARTING, DagsterRunStatus.QUEUED


@pytest.fixture(params=["dagster.yaml", "deploy/dagster.yaml"])
def queued_instance(request, tmp_path, monkeypatch) -> Iterator[dg.DagsterInstance]:
    """DAGSTER_HOME holding the project's instance file (the production one on a fresh PostgreSQL)."""
    home = tmp_path / "home"
    if request.param == "dagster.yaml":
        home.mkdir()
        shutil.copy(DEV_INSTANCE, home / "dagster.yaml")
        monkeypatch.setenv("DAGSTER_HOME", str(home))
    else:
        production_home(home, monkeypatch, request.getfixturevalue("postgres_url"))
    with (home / "dagster.yaml").open("a") as file:
        file.write(TEST_LAUNCHER)
    spec = write_spec(
        tmp_path / "syncs.yaml",
        [
            users_sync("sqlite:///unused.db", "http://127.0.0.1:1"),
            merges_sync("sqlite:///unused.db", "http://127.0.0.1:1"),
        ],
    )
    monkeypatch.setenv("CONTENTSTACK_SYNCS_FILE", str(spec))
    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        yield instance


@contextmanager
def _workspace(instance: dg.DagsterInstance):
    """The code location `contentstack_assets.definitions`, loaded as the daemon loads it."""
    target = ModuleTarget(
        module_name="contentstack_assets.definitions",
        attribute=None,
        working_directory=str(PROJECT_ROOT),
        location_name="contentstack_assets",
    )
    with create_test_daemon_workspace_context(target, instance) as context:
        yield context


def _remote_job(context, name: str) -> RemoteJob:
    location = context.create_request_context().get_code_location("contentstack_assets")
    repository = next(iter(location.get_repositories().values()))
    return repository.get_full_job(name)


def _submit(context, instance: dg.DagsterInstance, job: RemoteJob, **run) -> str:
    """A run as a launch creates it: tagged with the job's tags (`merge_dicts(remote_job.tags, ...)`)."""
    created = create_run_for_test(
        instance,
        job_name=job.name,
        tags=dict(job.tags),
        status=DagsterRunStatus.NOT_STARTED,
        job_snapshot=job.job_snapshot,
        remote_job_origin=job.get_remote_origin(),
        job_code_origin=job.get_python_origin(),
        **run,
    )
    instance.submit_run(created.run_id, context.create_request_context())
    return created.run_id


def _dequeue(context) -> None:
    """One iteration of the daemon that starts queued runs (`dagster-daemon run` repeats it)."""
    with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
        list(daemon.run_iteration(context))


def _statuses(instance: dg.DagsterInstance, run_ids: list[str]) -> list[DagsterRunStatus]:
    return [instance.get_run_by_id(run_id).status for run_id in run_ids]


def test_the_queue_starts_one_run_per_sync(queued_instance):
    instance = queued_instance
    with _workspace(instance) as context:
        users_job, merges_job = _remote_job(context, "users_sync"), _remote_job(context, "identities_sync")
        assert users_job.tags[SYNC_TAG] == "users" and merges_job.tags[SYNC_TAG] == "identities"
        runs = [
            _submit(context, instance, users_job),  # a schedule tick ...
            _submit(context, instance, users_job),  # ... and a manual launch of the same sync
            _submit(context, instance, merges_job),  # another sync
        ]
        assert _statuses(instance, runs) == [QUEUED, QUEUED, QUEUED]

        _dequeue(context)
        assert _statuses(instance, runs) == [STARTING, QUEUED, STARTING]
        _dequeue(context)  # still one users run in progress: the second waits
        assert _statuses(instance, runs) == [STARTING, QUEUED, STARTING]

        instance.report_run_failed(instance.get_run_by_id(runs[0]))  # the first run ends
        _dequeue(context)
        assert _statuses(instance, runs)[1] == STARTING


def test_runs_of_the_implicit_asset_job_carry_no_sync_tag_and_are_not_held_back(queued_instance):
    """ "Materialize" in the UI, `dagster asset materialize` and asset backfills run Dagster's implicit asset
    job, which the definitions cannot tag (docs/production.md): the queue does not hold them back, and only
    the API pool bounds their pushes."""
    instance = queued_instance
    users_assets = {
        dg.AssetKey(["users", name]) for name in ("source_users", "mapped_attributes", "personalize_users")
    }
    with _workspace(instance) as context:
        users_job = _remote_job(context, "users_sync")
        asset_job = _remote_job(context, "__ASSET_JOB")
        assert SYNC_TAG not in asset_job.tags
        runs = [
            _submit(context, instance, users_job),
            _submit(context, instance, asset_job, asset_selection=frozenset(users_assets)),
        ]
        assert SYNC_TAG not in instance.get_run_by_id(runs[1]).tags
        _dequeue(context)
        assert _statuses(instance, runs) == [STARTING, STARTING]
