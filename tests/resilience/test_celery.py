"""A sharded sync on the distributed executor: dagster-celery, two real Celery workers, Redis, PostgreSQL.

The run's steps are Celery tasks on the local Redis broker; two worker processes started here execute them,
each opening the production instance (deploy/dagster.yaml on a fresh PostgreSQL database) to record events.
The two shards of the push run on the two workers at once, and the project's pool plus the shards'
concurrency shares still keep the requests in flight within the sync's `concurrency`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.definitions.reconstruct import ReconstructableRepository

from contentstack_assets.engine.state import StateStore
from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process
from tests.conftest import require_service
from tests.helpers import PROJECT_UID, push_metadata, users_sync, write_spec, write_sqlite_table
from tests.integration.test_production import DEPLOY, production_home

ROOT = DEPLOY.parent
# Redis databases of their own, so nothing else on the server shares the queue
BROKER_URL = "redis://127.0.0.1:6379/13"
BACKEND_URL = "redis://127.0.0.1:6379/14"
WORKERS = ("cs_worker_a", "cs_worker_b")
USERS = 1200
CONCURRENCY = 8
SHARDS = 2
# each shard's delivery lasts USERS / SHARDS / (CONCURRENCY / SHARDS) * LATENCY_MS = 15 s, far longer than the
# difference in start-up time of the two workers' steps (with 20 ms a CI run once saw the deliveries miss
# each other by a few seconds, although the steps overlapped)
LATENCY_MS = 100


def _rows() -> list[dict]:
    return [
        dict(user_uid=f"c{i:05d}", plan_name=f"plan{i % 7}", order_count=i, is_vip=i % 2)
        for i in range(USERS)
    ]


def _expected(row: dict) -> dict:
    return {"plan": row["plan_name"], "orders": row["order_count"], "vip": bool(row["is_vip"])}


def start_worker(name: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """`dagster-celery worker start` (one task at a time), in a session of its own so it can be stopped whole."""
    command = [
        str(Path(sys.executable).parent / "dagster-celery"),
        "worker", "start", "-A", "dagster_celery.app", "-y", str(DEPLOY / "celery.yaml"), "-n", name,
        "--", "--concurrency=1", "--without-gossip", "--without-mingle",
    ]  # fmt: skip
    bin_dir = str(Path(sys.executable).parent)  # `dagster-celery` spawns `celery` by name, from PATH
    env = {**env, "PATH": os.pathsep.join([bin_dir, env.get("PATH", "")])}
    with log.open("wb") as output:
        return subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )


def stop_worker(process: subprocess.Popen) -> None:
    """SIGTERM to the worker's whole process group (the CLI, Celery and its pool), SIGKILL if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=20)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # the pool's children, even if the parent already left
    process.wait()


def wait_for_workers(
    app, names: tuple[str, ...], processes: list[subprocess.Popen], logs: list[Path]
) -> None:
    """Until every named worker answers a ping (also used by bench/shards_throughput.py)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for process, log in zip(processes, logs, strict=True):
            if process.poll() is not None:
                raise RuntimeError(
                    f"a Celery worker exited ({process.returncode}):\n{log.read_text()[-3000:]}"
                )
        replies = app.control.ping(timeout=1.0) or []
        answered = {name.split("@")[0] for reply in replies for name in reply}
        if set(names) <= answered:
            return
        time.sleep(0.5)
    raise RuntimeError(
        "the Celery workers did not answer within 120s:\n"
        + "\n".join(log.read_text()[-2000:] for log in logs)
    )


@pytest.mark.slow
@pytest.mark.filterwarnings(
    "ignore:Task name 'execute_plan' is already registered"
)  # dagster-celery re-registers per step
@pytest.mark.redis
@pytest.mark.postgres
def test_sharded_sync_on_two_celery_workers(tmp_path, monkeypatch, postgres_url):
    require_service("Redis", "127.0.0.1", 6379)
    from dagster_celery.make_app import make_app

    env = production_home(tmp_path / "home", monkeypatch, postgres_url)
    rows = _rows()
    source = write_sqlite_table(tmp_path / "src.db", rows)
    app = make_app({"broker": BROKER_URL, "backend": BACKEND_URL})
    app.control.purge()  # tasks a killed earlier run may have left in the queue

    workers: list[subprocess.Popen] = []
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=LATENCY_MS)) as emulator:
        spec = write_spec(
            tmp_path / "syncs.yaml",
            [users_sync(source, emulator.url, concurrency=CONCURRENCY, shards=SHARDS)],
        )
        celery_env = {
            "CONTENTSTACK_SYNCS_FILE": str(spec),
            "DAGSTER_CELERY_BROKER_URL": BROKER_URL,
            "DAGSTER_CELERY_BACKEND_URL": BACKEND_URL,
        }
        for name, value in celery_env.items():
            monkeypatch.setenv(name, value)
        worker_env = {**os.environ, **env, **celery_env, "PYTHONPATH": str(ROOT)}
        logs = [tmp_path / f"{name}.log" for name in WORKERS]
        # Dagster's tables in the new database first: two workers starting at once would both create them
        # (a CI run saw one fail on `type "run_tags" already exists`)
        with dg.DagsterInstance.get():
            pass
        try:
            workers = [start_worker(name, worker_env, log) for name, log in zip(WORKERS, logs, strict=True)]
            wait_for_workers(app, WORKERS, workers, logs)

            with dg.DagsterInstance.get() as instance:
                # the project's pool gets one slot per shard, so both shards may run at once
                instance.event_log_storage.set_concurrency_slots(f"personalize_{PROJECT_UID}", SHARDS)
                job = ReconstructableRepository.for_file(
                    str(DEPLOY / "celery_definitions.py"), "defs", working_directory=str(ROOT)
                ).get_reconstructable_job("users_sync")
                started = time.monotonic()
                with dg.execute_job(job, instance=instance) as result:
                    elapsed = time.monotonic() - started
                    assert result.success, "\n".join(log.read_text()[-3000:] for log in logs)
                    metadata = push_metadata(result)
                records = instance.all_logs(result.run_id)

            # every step ran in a Celery worker; the two shards on two different workers, at the same time
            events = [(record.timestamp, record.dagster_event) for record in records if record.dagster_event]
            ran_on = {
                event.step_key: event.event_specific_data.metadata["Celery worker"].value
                for _, event in events
                if event.is_engine_event
                and event.step_key
                and "Celery worker" in (event.event_specific_data.metadata or {})
            }
            shard_steps = [f"users__personalize_users.shard_{index}" for index in range(SHARDS)]
            assert set(shard_steps) <= set(ran_on), ran_on
            assert len({ran_on[step].split("@")[0] for step in shard_steps}) == SHARDS, ran_on
            windows = {
                step: [
                    at
                    for at, event in events
                    if event.step_key == step and event.event_type_value in ("STEP_START", "STEP_SUCCESS")
                ]
                for step in shard_steps
            }
            (start_a, end_a), (start_b, end_b) = windows.values()
            assert start_a < end_b and start_b < end_a, f"the shards did not overlap: {windows}"

            stats = emulator.stats()
            share = CONCURRENCY // SHARDS
            assert share < stats["max_in_flight"] <= CONCURRENCY, stats[
                "max_in_flight"
            ]  # both shards at once, bounded
            assert emulator.users() == {row["user_uid"]: _expected(row) for row in rows}
            assert stats["requests_total"] == USERS  # each user once
            assert metadata["users_delivered"] == USERS and metadata["shards"] == SHARDS
            assert metadata["requests_sent"] == USERS and metadata["users_failed"] == 0

            store = StateStore(postgres_url)
            assert store.count_users("users") == USERS
            shard_runs = [
                store.last_finished_run("users", scope=f"all/shard-{index + 1}-of-{SHARDS}")
                for index in range(SHARDS)
            ]
            assert sum(run["counts"]["users_delivered"] for run in shard_runs) == USERS
            print(
                f"celery: {USERS} users in {elapsed:.1f}s on {len(WORKERS)} workers; max in flight {stats['max_in_flight']}"
            )
        finally:
            for worker in workers:
                stop_worker(worker)
