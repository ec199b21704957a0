"""Smoke test: a real `dagster dev` (webserver + daemon) on the demo, driven through its GraphQL API.

`demo_environment` and `dagster_dev` are also used by scripts/screenshot_asset_graph.py.
"""

import contextlib
import dataclasses
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from contentstack_assets.demo import (
    DEMO_ATTRIBUTES,
    DEMO_DAYS,
    DEMO_EVENTS,
    DEMO_MANAGEMENT_TOKEN,
    DEMO_PROJECT_UID,
    create_demo_database,
)
from contentstack_assets.personalize.emulator import EmulatorConfig, EmulatorProcess, start_emulator_process
from tests.helpers import DEV_INSTANCE, PROJECT_ROOT, free_port

# both runs done within this (each step is a process that loads the code location: ~80 s here when idle, past
# 110 s with the rest of the suite on the other workers)
RUNS_BUDGET_S = 240

LOCATION = "contentstack_assets"
RANGE_START, RANGE_END = "dagster/asset_partition_range_start", "dagster/asset_partition_range_end"
REPOSITORY = "__repository__"


@contextlib.contextmanager
def demo_environment(workdir: Path, users: int = 200) -> Iterator[tuple[dict[str, str], EmulatorProcess]]:
    """A DAGSTER_HOME with the repository's dagster.yaml, a demo database, an emulator process; the
    environment for `dagster dev` on the demo spec (syncs.yaml at the root) pointed at them."""
    home = workdir / "dagster_home"
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEV_INSTANCE, home / "dagster.yaml")
    database = create_demo_database(workdir / "users.db", users=users)
    config = EmulatorConfig(
        project_uid=DEMO_PROJECT_UID,
        attributes=DEMO_ATTRIBUTES,
        events=DEMO_EVENTS,
        management_token=DEMO_MANAGEMENT_TOKEN,
    )
    with start_emulator_process(config) as emulator:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("CONTENTSTACK_", "PERSONALIZE_"))
        }
        env.update(
            DAGSTER_HOME=str(home),
            CONTENTSTACK_STATE_URL=f"sqlite:///{workdir / 'state.db'}",
            SOURCE_DATABASE_URL=f"sqlite:///{database}",
            PERSONALIZE_EDGE_URL=emulator.url,
            PERSONALIZE_MANAGEMENT_URL=emulator.url,
            PERSONALIZE_MANAGEMENT_TOKEN=DEMO_MANAGEMENT_TOKEN,
        )
        yield env, emulator


@dataclasses.dataclass(frozen=True)
class DevServer:
    url: str  # the webserver
    pgid: int  # the process group of dagster dev and everything it started


@contextlib.contextmanager
def dagster_dev(env: dict[str, str], log_path: Path, startup_timeout: float = 60.0) -> Iterator["DevServer"]:
    """`dg dev -w workspace.yaml` (as `make dev` runs it: `dagster dev` is superseded by it) on a free port,
    serving the code location.

    It runs in its own process group, which is killed on the way out (webserver, daemon and code servers)."""
    port = free_port()
    command = [
        str(Path(sys.executable).with_name("dg")),
        "dev",
        "-w",
        "workspace.yaml",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    with log_path.open("w") as log:
        process = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(url, process, log_path, startup_timeout)
        yield DevServer(url, process.pid)
    finally:
        _stop_group(process)


def _wait_until_serving(url: str, process: subprocess.Popen, log_path: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dagster dev exited ({process.returncode}):\n{log_path.read_text()[-3000:]}")
        with contextlib.suppress(requests.RequestException):
            # the webserver answers before the code location is loaded: wait for the location too
            if requests.get(f"{url}/server_info", timeout=2).ok and _location_loaded(url):
                return
        time.sleep(0.5)
    raise TimeoutError(
        f"dagster dev did not serve {url} within {timeout:g}s:\n{log_path.read_text()[-3000:]}"
    )


def _location_loaded(url: str) -> bool:
    data = graphql(
        url,
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on PythonError { message } } } } } }",
    )
    for entry in data["workspaceOrError"]["locationEntries"]:
        if entry["name"] == LOCATION and entry["loadStatus"] == "LOADED":
            error = entry["locationOrLoadError"]
            if error and error["__typename"] == "PythonError":
                raise RuntimeError(f"the code location failed to load: {error['message']}")
            return True
    return False


def _stop_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole process group, then SIGKILL what is left of it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(timeout=15)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # children that outlived dagster dev
    process.wait(timeout=5)


def living_in_group(pgid: int, wait_s: float = 10.0) -> list[str]:
    """The processes of a group still alive (zombies awaiting their reaper do not count), after up to wait_s."""
    deadline = time.monotonic() + wait_s
    while True:
        living = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError):
                # pid (comm) state ppid pgrp ...: split after the command, which may hold spaces
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid and fields[0] != "Z":
                    living.append((stat.parent / "cmdline").read_text().replace("\0", " ")[:120])
        if not living or time.monotonic() > deadline:
            return living
        time.sleep(0.5)


def graphql(url: str, query: str, variables: dict | None = None) -> dict:
    response = requests.post(
        f"{url}/graphql", json={"query": query, "variables": variables or {}}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise AssertionError(f"GraphQL errors: {body['errors']}")
    return body["data"]


ASSET_NODES = """
{ assetNodes { assetKey { path } groupName kinds description
               dependencyKeys { path } jobNames isPartitioned } }
"""

LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId status } }
    ... on PythonError { message }
    ... on InvalidSubsetError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""

RUN_STATUS = """
query Run($runId: ID!) {
  runOrError(runId: $runId) {
    __typename
    ... on Run { status tags { key value } stepStats { stepKey status } }
  }
}
"""


def launch_sync(url: str, job: str, tags: dict[str, str]) -> str:
    params = {
        "selector": {"repositoryLocationName": LOCATION, "repositoryName": REPOSITORY, "jobName": job},
        "runConfigData": {},
        "executionMetadata": {"tags": [{"key": key, "value": value} for key, value in tags.items()]},
    }
    result = graphql(url, LAUNCH_RUN, {"params": params})["launchRun"]
    assert result["__typename"] == "LaunchRunSuccess", result
    return result["run"]["runId"]


LAUNCH_BACKFILL = """
mutation Backfill($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
    ... on PartitionSetNotFoundError { message }
    ... on InvalidSubsetError { message }
  }
}
"""

BACKFILL_STATUS = """
query Backfill($backfillId: String!) {
  partitionBackfillOrError(backfillId: $backfillId) {
    __typename
    ... on PartitionBackfill { status numPartitions runs(limit: 100) { runId status tags { key value } } }
  }
}
"""


def launch_backfill(url: str, asset_paths: list[list[str]], start: str, end: str) -> str:
    """What "Materialize all" -> a partition range -> "Launch backfill" does in the UI: an asset backfill."""
    params = {
        "partitionsByAssets": [
            {"assetKey": {"path": path}, "partitions": {"range": {"start": start, "end": end}}}
            for path in asset_paths
        ],
        "title": f"{start}...{end}",
    }
    result = graphql(url, LAUNCH_BACKFILL, {"params": params})["launchPartitionBackfill"]
    assert result["__typename"] == "LaunchBackfillSuccess", result
    return result["backfillId"]


def wait_for_backfill_runs(url: str, backfill_id: str, timeout: float) -> list[dict]:
    """The runs of an asset backfill, once the daemon has launched any."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        backfill = graphql(url, BACKFILL_STATUS, {"backfillId": backfill_id})["partitionBackfillOrError"]
        if backfill["runs"] or backfill["status"] not in ("REQUESTED", "CANCELING", "FAILING"):
            return backfill["runs"]
        time.sleep(1)
    raise TimeoutError(f"backfill {backfill_id} launched no run within {timeout:g}s")


def wait_for_run(url: str, run_id: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = graphql(url, RUN_STATUS, {"runId": run_id})["runOrError"]
        if run["status"] in ("SUCCESS", "FAILURE", "CANCELED"):
            return run
        time.sleep(1)
    raise TimeoutError(f"run {run_id} did not finish within {timeout:g}s (last status {run['status']})")


@pytest.mark.slow
@pytest.mark.timeout(RUNS_BUDGET_S + 120)
def test_dagster_dev_shows_the_demo_and_runs_a_backfill(tmp_path):
    started = time.monotonic()
    with (
        demo_environment(tmp_path) as (env, emulator),
        dagster_dev(env, tmp_path / "dagster_dev.log") as server,
    ):
        url = server.url
        nodes = {"/".join(node["assetKey"]["path"]): node for node in graphql(url, ASSET_NODES)["assetNodes"]}
        source, mapped, push = (
            nodes["users/source_users"],
            nodes["users/mapped_attributes"],
            nodes["users/personalize_users"],
        )
        assert {"/".join(key["path"]) for key in mapped["dependencyKeys"]} == {"users/source_users"}
        assert "users/mapped_attributes" in {"/".join(key["path"]) for key in push["dependencyKeys"]}
        assert source["dependencyKeys"] == []
        for node in (source, mapped, push):
            assert node["groupName"] == "users" and node["description"] and node["isPartitioned"]
            assert "users_sync" in node["jobNames"]
        assert [source["kinds"], mapped["kinds"], push["kinds"]] == [
            ["sqlalchemy"],
            ["pandas"],
            ["contentstack"],
        ]

        # The demo's users were updated in the last DEMO_DAYS days. The older half: a run of the job over a range
        # (queued, then started by the daemon, as dagster.yaml's coordinator says). The newer half, at the same
        # time: what "Materialize all" -> a partition range -> "Launch backfill" does in the UI, an asset backfill
        # that the daemon runs as ONE run over the range (BackfillPolicy.single_run).
        today = dt.datetime.now(dt.UTC).date()
        first, middle = today - dt.timedelta(days=DEMO_DAYS), today - dt.timedelta(days=DEMO_DAYS // 2)
        older = (first.isoformat(), (middle - dt.timedelta(days=1)).isoformat())
        newer = (middle.isoformat(), today.isoformat())
        run_id = launch_sync(url, "users_sync", {RANGE_START: older[0], RANGE_END: older[1]})
        paths = [["users", "source_users"], ["users", "mapped_attributes"], ["users", "personalize_users"]]
        backfill_id = launch_backfill(url, paths, *newer)

        run = wait_for_run(url, run_id, timeout=max(20.0, RUNS_BUDGET_S - (time.monotonic() - started)))
        assert run["status"] == "SUCCESS", (run, (tmp_path / "dagster_dev.log").read_text()[-3000:])
        assert {step["stepKey"]: step["status"] for step in run["stepStats"]} == {
            "users__source_users": "SUCCESS",
            "users__mapped_attributes": "SUCCESS",
            "users__personalize_users": "SUCCESS",
        }
        # the daemon turns the backfill into its run within a tick (30 s); the run is the whole range
        [backfill_run] = wait_for_backfill_runs(
            url, backfill_id, timeout=max(20.0, RUNS_BUDGET_S - 20 - (time.monotonic() - started))
        )
        tags = {tag["key"]: tag["value"] for tag in backfill_run["tags"]}
        assert (tags[RANGE_START], tags[RANGE_END]) == newer
        backfill_run = wait_for_run(
            url, backfill_run["runId"], timeout=max(20.0, RUNS_BUDGET_S - (time.monotonic() - started))
        )
        assert backfill_run["status"] == "SUCCESS", backfill_run

        delivered = emulator.users()
        assert delivered and all(uid.startswith("usr_") for uid in delivered)
        # each run checked the keys twice (token set): the blocking check of mapped_attributes, and the
        # push's own guard before it sends (a run of the push alone has no such check)
        assert emulator.stats()["by_endpoint"].get("GET /attributes") == 4
    assert living_in_group(server.pgid) == [], "processes of dagster dev outlived it"
    # a clean start and clean runs: no warning that the instance file is not used (it is not in the working
    # directory), no supersession of `dagster dev`, no Beta warning per step process, no stack
    log = (tmp_path / "dagster_dev.log").read_text()
    for noise in ("will not be used", "SupersessionWarning", "BetaWarning", "Stack Trace", "Traceback"):
        assert noise not in log, f"{noise!r} in the dagster dev log:\n{log[-3000:]}"


def test_make_dev_runs_the_key_checks_and_make_log_reads_the_demo_state():
    """`make dev` starts the demo's emulator (its keys and management token: tests/integration/test_cli.py)
    and gives dagster dev the variables `demo --print-env` prints; `make log` reads the state of the demo's
    DAGSTER_HOME; no sed over source files (printed with `make -n`: nothing runs)."""
    if shutil.which("make") is None:
        pytest.skip("make is not installed")

    def planned(*arguments: str) -> str:
        env = {key: value for key, value in os.environ.items() if key != "DAGSTER_HOME"}
        return subprocess.run(
            ["make", "-n", *arguments], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, check=True
        ).stdout

    dev = planned("dev")
    assert "contentstack-assets demo --prepare --keep-database" in dev
    assert "contentstack-assets emulator --demo --port 8787 &" in dev
    assert (
        "env $(.venv/bin/contentstack-assets demo --print-env http://127.0.0.1:8787) .venv/bin/dg dev" in dev
    )
    log = planned("log", "UID=usr_000042")
    assert f"DAGSTER_HOME={PROJECT_ROOT / '.dagster_home'} " in log
    assert "contentstack-assets log 'usr_000042'" in log
    assert "sed " not in (PROJECT_ROOT / "Makefile").read_text()
