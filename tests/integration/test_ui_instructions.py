"""The UI instructions of docs/ui.md and the README, checked against a real `dg dev` on the demo through the
webserver's GraphQL API: each test sends what the UI sends for one instruction (the mutations of Dagster
1.13's dialogs, read from its `LaunchAssetChoosePartitionsDialog` and `LaunchAssetExecutionButton`).

One webserver serves every test of the module. The runs are polled with a generous deadline, never timed.
What GraphQL cannot check: the dialog's range syntax (`[2024-01-01...2024-01-31]`, brackets included) is parsed
in the browser into the partition keys sent here.
"""

import datetime as dt
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from contentstack_assets.demo import DEMO_DAYS, DEMO_PROJECT_UID
from tests.integration.test_dagster_dev import (
    BACKFILL_STATUS,
    LAUNCH_BACKFILL,
    LOCATION,
    RANGE_END,
    RANGE_START,
    REPOSITORY,
    DevServer,
    dagster_dev,
    demo_environment,
    graphql,
    wait_for_backfill_runs,
    wait_for_run,
)

DEADLINE_S = 240  # for a backfill's run to be created and to finish: a deadline, not a timing
# about 110 s on a shared 2-core machine: the webserver's start, the daemon's backfill tick, two runs side by
# side whose every step is a process that loads the code location
pytestmark = [pytest.mark.slow, pytest.mark.timeout(DEADLINE_S + 180)]
SYNC_TAG, DRY_RUN_TAG, FROM_UI = "contentstack/sync", "contentstack/dry_run", "dagster/from_ui"
USERS_ASSETS = [["users", "source_users"], ["users", "mapped_attributes"], ["users", "personalize_users"]]
DOCS_RANGE = ("2024-01-01", "2024-01-31")  # the range docs/ui.md and the README tell the user to type
REPOSITORY_SELECTOR = {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY}


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[DevServer, object, Path]]:
    workdir = tmp_path_factory.mktemp("ui")
    with (
        demo_environment(workdir) as (env, emulator),
        dagster_dev(env, workdir / "dagster_dev.log") as dev,
    ):
        yield dev, emulator, workdir / "dagster_dev.log"


@pytest.fixture(scope="module")
def launched(server) -> dict:
    """The backfills the docs launch, all at once (the daemon turns them into runs on one tick): "Materialize
    all" on the group over the docs' range, and *Jobs* -> `users_dry_run` -> *Materialize* over the demo's
    days."""
    dev, _, _ = server
    today = dt.datetime.now(dt.UTC).date()
    recent = ((today - dt.timedelta(days=DEMO_DAYS)).isoformat(), today.isoformat())
    return {
        "materialize_all": launch(dev.url, _days(*DOCS_RANGE), job=None),
        "dry_run": launch(dev.url, _days(*recent), job="users_dry_run"),
        "recent": recent,
    }


def _days(first: str, last: str) -> list[str]:
    start, end = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(start + dt.timedelta(days=offset)).isoformat() for offset in range((end - start).days + 1)]


def launch(url: str, partition_names: list[str], job: str | None) -> str:
    """The backfill the partition dialog launches: with `job` (opened from that job's page) a backfill of the
    job's partition set, else (the group's "Materialize all", whose first common job is the hidden
    `__ASSET_JOB`) a pure asset backfill. The dialog adds `dagster/from_ui`."""
    params = {
        "tags": [{"key": FROM_UI, "value": "true"}],
        "assetSelection": [{"path": path} for path in USERS_ASSETS],
        "partitionNames": partition_names,
        "fromFailure": False,
    }
    if job:
        params["selector"] = {
            "partitionSetName": f"{job}_partition_set",
            "repositorySelector": REPOSITORY_SELECTOR,
        }
    result = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def finished_run(server, backfill_id: str, started: float) -> dict:
    """The one run of a backfill, finished, with its tags as a dict and its job."""
    dev, _, log = server
    [created] = wait_for_backfill_runs(dev.url, backfill_id, timeout=DEADLINE_S)
    run_id = created["runId"]
    run = wait_for_run(dev.url, run_id, timeout=max(30.0, DEADLINE_S - (time.monotonic() - started)))
    assert run["status"] == "SUCCESS", (run, log.read_text()[-3000:])
    backfill = graphql(dev.url, BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
    return {
        **run,
        "runId": run_id,
        "tags": {tag["key"]: tag["value"] for tag in run["tags"]},
        "backfill": backfill,
    }


RUN_JOB = """
query Run($runId: ID!) { runOrError(runId: $runId) { ... on Run { jobName } } }
"""

PUSH_EVENTS = """
{ assetOrError(assetKey: {path: ["users", "personalize_users"]}) { ... on Asset {
    assetMaterializations(limit: 1000) { runId partition metadataEntries { label } }
    assetObservations(limit: 100) { runId metadataEntries { label } } } } }
"""


def _push_events(url: str) -> tuple[list[dict], list[dict]]:
    asset = graphql(url, PUSH_EVENTS)["assetOrError"]
    return asset["assetMaterializations"], asset["assetObservations"]


def test_the_group_lineage_page_and_its_pool(server):
    """*Catalog* -> group **users** -> *Lineage* (`/locations/contentstack_assets/asset-groups/users/lineage`):
    the location and group the link names hold the three assets; the push runs in `personalize_<project uid>`
    (*Deployment* -> *Concurrency*). "Materialize all" launches a pure asset backfill because the assets' first
    common job is the hidden implicit one (the dialog's `getCommonJob`)."""
    dev, _, _ = server
    nodes = graphql(
        dev.url,
        '{ assetNodes(group: {groupName: "users", repositoryName: "__repository__", '
        'repositoryLocationName: "contentstack_assets"}) { assetKey { path } jobNames pools } }',
    )["assetNodes"]
    assert sorted(node["assetKey"]["path"] for node in nodes) == sorted(USERS_ASSETS)
    for node in nodes:
        assert node["jobNames"][0] == "__ASSET_JOB" and {"users_sync", "users_dry_run"} <= set(
            node["jobNames"]
        )
    pools = {tuple(node["assetKey"]["path"]): node["pools"] for node in nodes}
    assert pools[("users", "personalize_users")] == [f"personalize_{DEMO_PROJECT_UID}"]


def test_materialize_all_over_the_docs_range_is_one_run(server, launched):
    """Walkthrough steps 1-3: "Materialize all..." -> `[2024-01-01...2024-01-31]` -> "Launch backfill" gives
    ONE run over the range, with the range tags, that materializes each day of the push."""
    started = time.monotonic()
    run = finished_run(server, launched["materialize_all"], started)
    assert (run["tags"][RANGE_START], run["tags"][RANGE_END]) == DOCS_RANGE
    assert run["backfill"]["numPartitions"] == 31
    assert {step["stepKey"] for step in run["stepStats"]} == {
        "users__source_users",
        "users__mapped_attributes",
        "users__personalize_users",
    }
    dev, _, _ = server
    # docs/production.md: such a run is of Dagster's implicit asset job, which carries no tag of ours
    assert graphql(dev.url, RUN_JOB, {"runId": run["runId"]})["runOrError"]["jobName"] == "__ASSET_JOB"
    assert SYNC_TAG not in run["tags"]
    materializations, _ = _push_events(dev.url)
    days = {event["partition"] for event in materializations if event["runId"] == run["runId"]}
    assert days == set(_days(*DOCS_RANGE))


def test_a_dry_run_from_its_job_page_is_tagged_and_observes_the_push(server, launched):
    """ "*Jobs* -> `users_dry_run` -> *Materialize*, choose a range, launch": one run of `users_dry_run` with the
    tags `contentstack/sync=users` and `contentstack/dry_run=true`, its plan an observation of the push (with
    `dry_run` and `plan_sample`), no materialization, nothing sent."""
    started = time.monotonic()
    run = finished_run(server, launched["dry_run"], started)
    assert run["tags"][SYNC_TAG] == "users" and run["tags"][DRY_RUN_TAG] == "true"
    assert (run["tags"][RANGE_START], run["tags"][RANGE_END]) == launched["recent"]
    dev, emulator, _ = server
    assert graphql(dev.url, RUN_JOB, {"runId": run["runId"]})["runOrError"]["jobName"] == "users_dry_run"
    materializations, observations = _push_events(dev.url)
    assert not [event for event in materializations if event["runId"] == run["runId"]]
    [observation] = [event for event in observations if event["runId"] == run["runId"]]
    labels = {entry["label"] for entry in observation["metadataEntries"]}
    assert {"dry_run", "plan_sample", "users_changed"} <= labels
    assert emulator.users() == {}  # neither run sent anything: January 2024 holds no demo user


CONFIG_VALID = """
query Valid($selector: PipelineSelector!, $config: RunConfigData) {
  isPipelineConfigValid(pipeline: $selector, mode: "default", runConfigData: $config) {
    __typename
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def test_the_dry_run_config_of_the_docs_is_valid_on_the_sync_jobs_launchpad(server):
    """docs/ui.md's YAML for `users_sync`'s Launchpad, and the run config fields the README lists."""
    dev, _, _ = server
    selector = {**REPOSITORY_SELECTOR, "pipelineName": "users_sync"}
    for config in ({"dry_run": True}, {"full_resync": True}, {"allow_source_shrink": True}):
        run_config = {"ops": {"users__personalize_users": {"config": config}}}
        valid = graphql(dev.url, CONFIG_VALID, {"selector": selector, "config": run_config})
        assert valid["isPipelineConfigValid"]["__typename"] == "PipelineConfigValidationValid", valid
    wrong = {"ops": {"users__personalize_users": {"config": {"dry_run": "yes"}}}}
    invalid = graphql(dev.url, CONFIG_VALID, {"selector": selector, "config": wrong})
    assert invalid["isPipelineConfigValid"]["__typename"] == "RunConfigValidationInvalid"


AUTOMATION = """
{ repositoryOrError(repositorySelector: {repositoryLocationName: "contentstack_assets",
                                          repositoryName: "__repository__"}) {
    ... on Repository { schedules { name scheduleState { status } } sensors { name sensorState { status } } } } }
"""


def test_automation_lists_what_the_docs_name_in_the_states_they_give(server):
    """*Automation*: `users_schedule` and `users_source_changed` start stopped, `users_reconcile` running, the
    alert sensors stopped without `CONTENTSTACK_ALERT_WEBHOOK_URL` (the demo environment sets none)."""
    dev, _, _ = server
    repository = graphql(dev.url, AUTOMATION)["repositoryOrError"]
    states = {item["name"]: item["scheduleState"]["status"] for item in repository["schedules"]}
    states |= {item["name"]: item["sensorState"]["status"] for item in repository["sensors"]}
    assert states["users_schedule"] == "STOPPED" and states["users_source_changed"] == "STOPPED"
    assert states["users_reconcile"] == "RUNNING"
    assert states["contentstack_failure_alerts"] == states["contentstack_check_alerts"] == "STOPPED"
