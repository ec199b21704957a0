"""Two runs of one sync at the same time, on overlapping partitions or shards, leave the state consistent.

The run queue keeps one run per sync (tag `contentstack/sync`), but a run started around it (a CLI
`dagster asset materialize`, a backfill next to a schedule tick, a retry) may overlap another. Here two
processes start the same sync together, Dagster's storage and the sync state on one PostgreSQL database,
and afterwards every user's state matches what the API holds: nothing lost, nothing claimed that was not
delivered, and a third run has nothing left to send.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.state import StateStore, runs, users
from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process
from tests.helpers import PROJECT_UID, users_sync, write_spec, write_sqlite_table
from tests.test_production import production_home

ROOT = Path(__file__).resolve().parent.parent
DAYS = ["2024-03-01", "2024-03-02", "2024-03-03", "2024-03-04"]
PER_DAY = 300

# One run in a process of its own: build the job and open the instance, say it is ready, wait for the signal
# file, run, report. Everything slow happens before the signal, so the runs really start together.
RUNNER = """
import json, sys, time
from pathlib import Path
import dagster as dg
from contentstack_assets.definitions import build_definitions
from contentstack_assets.spec import load_spec
from tests.helpers import fast_retries, push_metadata
spec, ready, go, first, last, retries = sys.argv[1:7]
job = build_definitions(load_spec(spec), resources=fast_retries(max_retries=int(retries))).resolve_job_def("users_sync")
tags = {} if first == "-" else {
    "dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last,
}
with dg.DagsterInstance.get() as instance:
    Path(ready).touch()
    while not Path(go).exists():
        time.sleep(0.005)
    result = job.execute_in_process(instance=instance, tags=tags, raise_on_error=False)
    print(json.dumps({"success": result.success, "run_id": result.run_id, **{
        key: value for key, value in push_metadata(result).items() if isinstance(value, (int, float))
    }}))
"""


def _rows() -> list[dict]:
    return [
        dict(user_uid=f"d{day}_{i:04d}", plan_name=f"plan{i % 5}", order_count=i, is_vip=i % 2,
             updated_at=f"{date} 12:00:00")
        for day, date in enumerate(DAYS)
        for i in range(PER_DAY)
    ]  # fmt: skip


def _expected(row: dict) -> dict:
    return {"plan": row["plan_name"], "orders": row["order_count"], "vip": bool(row["is_vip"])}


def _run_together(
    tmp_path: Path, env: dict[str, str], spec: Path, ranges: list[tuple[str, str]], retries: int = 5
) -> list[dict]:
    """Start one process per range, release them at once, and return what each reported."""
    go = tmp_path / "go"
    go.unlink(missing_ok=True)
    ready = [tmp_path / f"ready_{index}" for index in range(len(ranges))]
    for path in ready:
        path.unlink(missing_ok=True)
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", RUNNER, str(spec), str(ready_file), str(go), first, last, str(retries)],
            cwd=ROOT, env={**os.environ, **env, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )
        for ready_file, (first, last) in zip(ready, ranges, strict=True)
    ]  # fmt: skip
    try:
        deadline = time.monotonic() + 90
        while not all(path.exists() for path in ready):
            assert all(process.poll() is None for process in processes), (
                "a run process exited before the start"
            )
            assert time.monotonic() < deadline, "the run processes did not get ready within 90s"
            time.sleep(0.05)
        go.touch()
        outputs = [process.communicate(timeout=150) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    reports = []
    for process, (stdout, stderr) in zip(processes, outputs, strict=True):
        assert stdout.strip(), f"a run printed nothing (exit {process.returncode}):\n{stderr[-3000:]}"
        reports.append(json.loads(stdout.strip().splitlines()[-1]))
    return reports


def _assert_state_matches_the_api(state_url: str, emulator, expected: dict[str, dict]) -> None:
    store = StateStore(state_url)
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(users.c.user_uid, users.c.delivered, users.c.failed_runs, users.c.fingerprint).where(
                users.c.sync == "users"
            )
        ).all()
    state = {uid: json.loads(delivered) for uid, delivered, _, _ in rows}
    assert emulator.users() == expected
    assert state == expected  # what the state says each user holds is exactly what the API holds
    assert all(failed == 0 and fingerprint is not None for _, _, failed, fingerprint in rows)


def _overlapped(state_url: str, run_ids: list[str]) -> bool:
    """Whether the runs' pushes (from the first shard's start to the last shard's end) were under way at once."""
    windows = []
    with StateStore(state_url).engine.connect() as connection:
        for run_id in run_ids:
            rows = connection.execute(
                sa.select(runs.c.started_at, runs.c.finished_at).where(runs.c.run_id.like(f"{run_id}%"))
            ).all()
            windows.append((min(start for start, _ in rows), max(end for _, end in rows)))
    return max(start for start, _ in windows) < min(end for _, end in windows)


def _set_pool(slots: int) -> None:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        instance.event_log_storage.set_concurrency_slots(f"personalize_{PROJECT_UID}", slots)


@pytest.mark.slow
@pytest.mark.postgres
@pytest.mark.parametrize("pool_slots", [1, 4])
def test_overlapping_partition_ranges_at_once(tmp_path, monkeypatch, postgres_url, pool_slots):
    """With the project's pool at its production default (1 slot) the two pushes take turns, even from two
    processes; with more slots (as for a sharded sync) they overlap, and the state stays consistent either way."""
    env = production_home(tmp_path / "home", monkeypatch, postgres_url)
    _set_pool(pool_slots)
    rows = _rows()
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=25)) as emulator:
        sync = users_sync(url, emulator.url, concurrency=4)
        sync["source"].update(updated_at="updated_at", start_date=DAYS[0])
        spec = write_spec(tmp_path / "syncs.yaml", [sync])

        # days 1-3 and days 2-4 at once: the users of days 2 and 3 are in both runs
        reports = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[2]), (DAYS[1], DAYS[3])])
        assert all(report["success"] for report in reports), reports
        counts = emulator.stats()["patch_counts"]
        twice = {uid for uid, count in counts.items() if count > 1}
        if pool_slots == 1:
            # the second push planned after the first recorded its outcomes: nobody was sent twice
            assert not _overlapped(postgres_url, [report["run_id"] for report in reports])
            assert not twice and emulator.stats()["max_in_flight"] <= 4
        else:
            assert _overlapped(postgres_url, [report["run_id"] for report in reports])
            assert twice, "the runs should have raced on shared users"
            assert all(uid.startswith(("d1_", "d2_")) for uid in twice)  # only the days both runs read

        _assert_state_matches_the_api(
            postgres_url, emulator, {row["user_uid"]: _expected(row) for row in rows}
        )
        [again] = _run_together(tmp_path, env, spec, [(DAYS[0], DAYS[3])])
        assert again["success"] and again["requests_sent"] == 0 and again["users_unchanged"] == len(rows)


@pytest.mark.slow
@pytest.mark.postgres
def test_two_sharded_runs_at_once_with_failures(tmp_path, monkeypatch, postgres_url):
    """Every shard pushed by two runs at once while the API fails a share of requests: failures and
    deliveries of one user from two runs land in one consistent row."""
    env = production_home(tmp_path / "home", monkeypatch, postgres_url)
    _set_pool(4)  # both runs' shards push at once
    rows = [{key: value for key, value in row.items() if key != "updated_at"} for row in _rows()]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with start_emulator_process(
        EmulatorConfig(project_uid=PROJECT_UID, latency_ms=25, fail_rate=0.15, seed=3)
    ) as emulator:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, concurrency=4, shards=2)])
        reports = _run_together(tmp_path, env, spec, [("-", "-"), ("-", "-")], retries=0)
        assert _overlapped(postgres_url, [report["run_id"] for report in reports])
        assert all(report["users_failed"] > 0 for report in reports), reports  # the failures really happened

        store = StateStore(postgres_url)
        state = {uid: store.user_state("users", uid) for uid in (row["user_uid"] for row in rows)}
        api = emulator.users()
        failing = {uid for uid, row in state.items() if row is not None and row["failed_runs"] > 0}
        for uid, row in state.items():
            if uid in failing:
                continue  # due again next run, whatever it holds
            # not due again: the state must say exactly what the API holds (nothing lost, nothing invented)
            assert row is not None and row["delivered"] == api.get(uid), (uid, row, api.get(uid))
        assert set(api) <= set(uid for uid, row in state.items() if row is not None)

        emulator.configure(fail_rate=0.0)
        [again] = _run_together(tmp_path, env, spec, [("-", "-")], retries=0)
        # due again: the users no run delivered get their request; those the other run delivered meanwhile
        # (the state kept its values) have nothing left to send
        missing = failing - set(api)
        assert (
            missing and again["success"] and again["requests_sent"] == len(missing) == again["users_retried"]
        )
        _assert_state_matches_the_api(
            postgres_url, emulator, {row["user_uid"]: _expected(row) for row in rows}
        )
