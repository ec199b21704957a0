"""The crash suite: a real sync process SIGKILLed at random moments, each kill followed by a normal run.

The emulator runs as its own process, so it survives every kill and keeps what it received. Ten kills land
while the sync reads, maps, plans, delivers and records its state (seeded: the same moments every run);
the data changes before each killed run so there is something to send. After each normal run the emulator
holds exactly the expected attributes and the sync state agrees with it; requests that went twice are
counted (only those in flight, or confirmed but not yet recorded, when the process died may).
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa

from contentstack_assets.engine.state import StateStore, runs
from contentstack_assets.personalize.emulator import EmulatorConfig, EmulatorProcess, start_emulator_process
from tests.helpers import (
    PROJECT_ROOT,
    PROJECT_UID,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)
from tests.sync_process import READY_LINE

pytestmark = pytest.mark.slow

SCRIPT = PROJECT_ROOT / "tests" / "sync_process.py"
N_USERS = 2000
NEW_PER_CYCLE = 50
CHANGED_SHARE = 0.6
CONCURRENCY = 8
LATENCY_MS = 15
SEED = 20240917
# where each of the ten kills is aimed; the phase it really hit is read from the process's log
# "flush": mid-delivery, inside a write of confirmed outcomes; "record": inside the last writes of the run
# (the test holds the state database's write lock so the process is caught inside the write)
AIMS = (
    "delivery",
    "reading",
    "mapping",
    "planning",
    "flush",
    "delivery",
    "reading",
    "record",
    "delivery",
    "flush",
)
# what the sync process logs when it enters each phase (Dagster's console log on stderr)
MARKERS = (
    (READY_LINE, "startup"),
    ("users__source_users - STEP_START", "reading"),
    ("users__mapped_attributes - STEP_START", "mapping"),
    ("users__personalize_users - STEP_START", "planning"),
    ("users: plan for", "delivery"),
    ("users__personalize_users - STEP_SUCCESS", "finished"),
)
FINAL_PROGRESS = re.compile(r"users: (\d+) of (\d+) users sent")


class SyncProcess:
    """`tests/sync_process.py` as a child process whose stderr is followed line by line."""

    def __init__(self, spec: Path, env: dict[str, str]):
        self.process = subprocess.Popen(
            [sys.executable, str(SCRIPT), str(spec)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.phase = "starting"
        self._seen: dict[str, threading.Event] = {phase: threading.Event() for _, phase in MARKERS}
        self._reader = threading.Thread(target=self._follow, daemon=True)
        self._reader.start()

    def _follow(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            for marker, phase in MARKERS:
                if marker in line:
                    self.phase = phase
                    self._seen[phase].set()
            progress = FINAL_PROGRESS.search(line)
            if progress and progress.group(1) == progress.group(2):  # every user sent: the run is recorded
                self.phase = "record"

    def wait_for(self, phase: str, timeout: float = 60) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._seen[phase].wait(0.01):
                return True
            if self.process.poll() is not None:
                return False
        return False

    def kill(self) -> bool:
        """SIGKILL; True if the process was still running (the kill really interrupted it)."""
        alive = self.process.poll() is None
        if alive:
            self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        self._reader.join(timeout=5)
        return alive


@dataclass
class Source:
    """The source table: per user a version; the attribute values follow from it."""

    path: Path
    versions: dict[str, int] = field(default_factory=dict)

    def row(self, uid: str) -> dict:
        index, version = int(uid[1:]), self.versions[uid]
        return dict(
            user_uid=uid,
            plan_name=f"plan-{version}-{index % 5}",
            lifetime_value=index + version / 4,
            order_count=index + version,
            is_vip=(index + version) % 2,
            created_at=f"2024-{1 + version % 12:02d}-{1 + index % 28:02d} 08:30:00",
            birth_date=f"19{60 + index % 40}-01-{1 + version % 28:02d}",
        )

    def expected(self, uid: str) -> dict:
        row = self.row(uid)
        return {
            "plan": row["plan_name"],
            "ltv": float(row["lifetime_value"]),
            "orders": row["order_count"],
            "vip": bool(row["is_vip"]),
            "signup_at": row["created_at"].replace(" ", "T") + "Z",
            "birthday": row["birth_date"],
        }

    def write(self) -> str:
        return write_sqlite_table(self.path, [self.row(uid) for uid in sorted(self.versions)])

    def change(self, rng: random.Random) -> set[str]:
        """Bump a share of the users and add new ones; returns the users that now have something to send."""
        changed = set(rng.sample(sorted(self.versions), int(CHANGED_SHARE * len(self.versions))))
        for uid in changed:
            self.versions[uid] += 1
        first_new = len(self.versions)
        for index in range(first_new, first_new + NEW_PER_CYCLE):
            uid = f"c{index:05d}"
            self.versions[uid] = 0
            changed.add(uid)
        self.write()
        return changed


def _assert_state_agrees(store: StateStore, emulator: EmulatorProcess, source: Source) -> None:
    """The emulator holds exactly the expected values, and the sync state says the same of every user."""
    expected = {uid: source.expected(uid) for uid in source.versions}
    held = emulator.users()
    assert held == expected, {
        uid: (held.get(uid), values) for uid, values in expected.items() if held.get(uid) != values
    }
    delivered = store.load_delivered("users", list(expected))
    assert delivered == held
    fingerprints = store.load_fingerprints("users")
    assert set(fingerprints.index) == set(expected)
    assert (fingerprints["failed_runs"] == 0).all() and fingerprints["fingerprint"].notna().all()
    for uid in sorted(expected)[::250]:  # the per-user view (what the log CLI shows) says the same
        state = store.user_state("users", uid)
        assert state["delivered"] == held[uid] and state["failed_runs"] == 0 and state["last_error"] is None


def _assert_state_never_ahead(
    store: StateStore, emulator: EmulatorProcess, source: Source, changed: set[str]
) -> None:
    """After a kill: a user the state records as having the new values really has them at the API."""
    delivered = store.load_delivered("users", sorted(changed))
    held = emulator.users()
    for uid, values in delivered.items():
        if values == source.expected(uid):
            assert held.get(uid) == values, uid


def _runs_recorded(store: StateStore) -> list[bool]:
    """Per run in the state, oldest first: whether it was closed (finish_run)."""
    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(runs.c.finished_at).where(runs.c.sync == "users").order_by(runs.c.started_at)
        ).all()
    return [row.finished_at is not None for row in rows]


def _state_at_kill(store: StateStore, source: Source, changed: set[str], runs_before: int) -> str:
    """What the state held when the process died: outcomes recorded, and how far the run's record got."""
    delivered = store.load_delivered("users", sorted(changed))
    recorded = sum(1 for uid, values in delivered.items() if values == source.expected(uid))
    closed = _runs_recorded(store)[runs_before:]
    run = "run not started" if not closed else ("run closed" if closed[-1] else "run open")
    return f"{recorded} recorded, {run}"


@contextlib.contextmanager
def _state_write_lock(state_url: str) -> Iterator[None]:
    """Hold the SQLite state store's write lock: a process writing its state waits inside the write."""
    connection = sqlite3.connect(sa.engine.make_url(state_url).database, timeout=30, isolation_level=None)
    try:
        connection.execute("BEGIN IMMEDIATE")
        yield
    finally:
        connection.execute("ROLLBACK")
        connection.close()


def _kill_at(aim: str, child: SyncProcess, emulator: EmulatorProcess, state_url: str, applied_before: int,
             to_send: int, rng: random.Random) -> tuple[bool, str, int]:  # fmt: skip
    """Wait for the aimed moment, SIGKILL; returns (interrupted a live run, phase hit, patches applied)."""

    def applied() -> int:
        return emulator.stats()["applied"]["patch"] - applied_before

    def wait_until_applied(target: int) -> None:
        deadline = time.monotonic() + 120
        while applied() < target and child.process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)

    if aim in ("reading", "mapping", "planning"):
        if child.wait_for(aim):
            time.sleep(rng.uniform(0, {"reading": 0.05, "mapping": 0.15, "planning": 0.05}[aim]))
    elif aim == "delivery":
        wait_until_applied(int(rng.uniform(0.1, 0.9) * to_send))
    else:
        # flush: after a random share landed; record: as the last users land. With the write lock held the
        # process blocks in its next state write (outcomes, or the run's record); it dies there.
        wait_until_applied(
            to_send - 2 * CONCURRENCY if aim == "record" else int(rng.uniform(0.2, 0.8) * to_send)
        )
        with _state_write_lock(state_url):
            stalled, last = 0, applied()
            while stalled < 3 and child.process.poll() is None:  # delivery stops while the write waits
                time.sleep(0.1)
                stalled, last = (stalled + 1, last) if applied() == last else (0, applied())
            phase = "state write" if child.process.poll() is None else child.phase
            interrupted = child.kill()
        return interrupted, phase if interrupted else "after the run ended", applied()
    phase = child.phase
    interrupted = child.kill()
    return interrupted, phase if interrupted else "after the run ended", applied()


def test_sigkill_at_ten_random_moments_loses_nothing(tmp_path, instance, record_property):
    rng = random.Random(SEED)
    source = Source(tmp_path / "src.db", {f"c{index:05d}": 0 for index in range(N_USERS)})
    url = source.write()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}  # the state URL and DAGSTER_HOME of this test (conftest)
    store = StateStore(os.environ["CONTENTSTACK_STATE_URL"])
    figures = {"kills_survived": 0, "kills_missed": 0, "duplicates": 0, "users_expected": 0, "phases": []}
    worst = 0

    config = EmulatorConfig(project_uid=PROJECT_UID, latency_ms=LATENCY_MS)
    with start_emulator_process(config) as emulator:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, concurrency=CONCURRENCY)])
        changed = set(source.versions)  # the first killed run is the first sync: everyone is new
        for kill_number, aim in enumerate(AIMS, start=1):
            if kill_number > 1:
                changed = source.change(rng)
            counts_before = dict(emulator.stats()["patch_counts"])
            applied_before = sum(counts_before.values())

            runs_before = len(_runs_recorded(store))
            child = SyncProcess(spec, env)
            interrupted, phase, applied = _kill_at(
                aim, child, emulator, store.url, applied_before, len(changed), rng
            )
            figures["kills_survived" if interrupted else "kills_missed"] += 1
            evidence = _state_at_kill(store, source, changed, runs_before)
            figures["phases"].append(f"{aim}->{phase}: {applied}/{len(changed)} applied, {evidence}")
            _assert_state_never_ahead(store, emulator, source, changed)

            result = run_job(spec, "users_sync", instance)  # the normal run that follows every kill
            assert result.success, kill_number
            _assert_state_agrees(store, emulator, source)

            counts = emulator.stats()["patch_counts"]
            sent = {uid: counts.get(uid, 0) - counts_before.get(uid, 0) for uid in counts}
            assert {uid for uid, times in sent.items() if times} == changed  # nobody unchanged was sent
            duplicates = sum(times - 1 for times in sent.values() if times > 1)
            figures["duplicates"] += duplicates
            figures["users_expected"] += len(changed)
            figures["phases"][-1] += f"; {duplicates} sent twice"
            worst = max(worst, duplicates)

        # the state agrees with the API to the last user: one more run has nothing to send
        assert push_metadata(run_job(spec, "users_sync", instance))["requests_sent"] == 0

    for name in ("kills_survived", "kills_missed", "duplicates", "users_expected"):
        record_property(name, figures[name])
    print("\ncrash suite:", {key: value for key, value in figures.items() if key != "phases"})
    for number, phase in enumerate(figures["phases"], start=1):
        print(f"  kill {number}: {phase}")
    assert figures["kills_survived"] == len(AIMS), figures  # every kill interrupted a live run
    hit = {entry.split("->")[1].split(":")[0] for entry in figures["phases"]}
    assert {"reading", "planning", "delivery", "state write"} <= hit, figures["phases"]
    # only the requests in flight, the confirmations of the state write in progress and those waiting for it
    # (engine/deliver.py: at most 2 x concurrency wait) may go twice
    bound = 5 * CONCURRENCY
    assert worst <= bound, f"a kill resent {worst} users (bound {bound}): {figures['phases']}"


def test_a_value_reverted_after_a_kill_is_resent(tmp_path, instance):
    source = Source(tmp_path / "src.db", {f"c{index:05d}": 0 for index in range(400)})
    url = source.write()
    store = StateStore(os.environ["CONTENTSTACK_STATE_URL"])
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=LATENCY_MS)) as emulator:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, concurrency=CONCURRENCY)])
        assert run_job(spec, "users_sync", instance).success
        for uid in source.versions:
            source.versions[uid] = 1
        source.write()
        applied_before = emulator.stats()["applied"]["patch"]
        child = SyncProcess(spec, {**os.environ, "PYTHONUNBUFFERED": "1"})
        while emulator.stats()["applied"]["patch"] - applied_before < 150 and child.process.poll() is None:
            time.sleep(0.002)
        assert child.kill()

        # users the API holds at version 1 while the state still says version 0 was delivered
        held = emulator.users()
        delivered = store.load_delivered("users", list(source.versions))
        unrecorded = [uid for uid in source.versions if held[uid] != delivered[uid]]
        assert unrecorded, "the kill should leave applied but unrecorded requests"
        for uid in unrecorded:
            source.versions[uid] = 0  # the warehouse goes back to what the state says was delivered
        source.write()
        assert run_job(spec, "users_sync", instance).success
        assert emulator.users() == {uid: source.expected(uid) for uid in source.versions}
