"""Fault injection over real HTTP: rate limits, server errors, dropped connections, slow answers, outages.

Every test runs the `users_sync` job against the bundled emulator with a share of its Edge requests
misbehaving, and checks the end state user by user: every valid user holds exactly the expected values,
retries are counted honestly, and nothing that was confirmed is sent twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import dagster as dg
import pytest

from contentstack_assets.personalize.client import EdgeClient, Response
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.resources import PersonalizeResource
from tests.helpers import PROJECT_UID, push_metadata, run_job, users_sync, write_spec, write_sqlite_table

SPEC_KEYS = ["plan", "ltv", "orders", "vip", "signup_at", "birthday"]

# the mix: 5% 429s (half with Retry-After), 3% 5xx, 1% connections dropped before a response
MIXED_FAULTS = {
    "429": 0.025,
    "429_no_retry_after": 0.025,
    "500": 0.0075,
    "502": 0.0075,
    "503": 0.0075,
    "504": 0.0075,
    "drop": 0.01,
}


def rows(n: int, version: int = 0) -> list[dict]:
    """n users whose values depend on `version`, in the forms a warehouse hands over."""
    return [
        dict(
            user_uid=f"f{i:05d}",
            plan_name=f"plan-{(i + version) % 7}",
            lifetime_value=round(i * 1.25 + version, 2),
            order_count=str(i + version),  # integer text
            is_vip=("yes", "no", 1, 0)[(i + version) % 4],
            created_at=f"2024-01-{1 + (i + version) % 28:02d} 10:00:00",
            birth_date=f"19{50 + (i + version) % 50}-06-15",
        )
        for i in range(n)
    ]


def expected(row: dict) -> dict:
    return {
        "plan": row["plan_name"],
        "ltv": float(row["lifetime_value"]),
        "orders": int(row["order_count"]),
        "vip": row["is_vip"] in ("yes", 1),
        "signup_at": row["created_at"].replace(" ", "T") + "Z",
        "birthday": row["birth_date"],
    }


def resources(**settings) -> dict:
    """The job's Personalize resource with test-sized timeouts and backoff (passed to `run_job`)."""
    defaults = dict(timeout_s=1.0, max_retries=6, backoff_factor=0.01, backoff_max_s=0.1)
    return {"personalize": PersonalizeResource(**{**defaults, **settings})}


def failure_messages(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    return "\n".join(event.step_failure_data.error.message for event in failures)


def delivery_check(result: dg.ExecuteInProcessResult) -> dg.AssetCheckEvaluation:
    return next(c for c in result.get_asset_check_evaluations() if c.check_name == "delivery_failures")


@contextlib.contextmanager
def outage_after(emulator, applied: int, outage_s: float) -> Iterator[None]:
    """Start an outage of `outage_s` seconds once the emulator has applied `applied` PATCHes."""
    stop = threading.Event()

    def pull_the_plug() -> None:
        while not stop.is_set():
            if emulator.stats()["applied"]["patch"] >= applied:
                emulator.configure(outage_s=outage_s)
                return
            time.sleep(0.005)

    watcher = threading.Thread(target=pull_the_plug, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()


@pytest.fixture
def spec_for(tmp_path):
    def write(source_rows: list[dict], edge_url: str, **overrides) -> object:
        url = write_sqlite_table(tmp_path / "src.db", source_rows)
        return write_spec(tmp_path / "syncs.yaml", [users_sync(url, edge_url, **overrides)])

    return write


def test_mixed_faults_every_user_lands_exactly_once(spec_for, instance, record_property):
    """5% 429s, 3% 5xx, 1% dropped connections over 2000 users: all delivered, nothing sent twice."""
    source = rows(2000)
    config = EmulatorConfig(
        project_uid=PROJECT_UID, attributes=SPEC_KEYS, latency_ms=1, faults=MIXED_FAULTS, seed=20240601
    )
    with run_emulator_in_thread(config) as emulator:
        spec = spec_for(source, emulator.url, concurrency=16)
        result = run_job(spec, "users_sync", instance, resources=resources())
        assert result.success, failure_messages(result)

        assert emulator.users() == {row["user_uid"]: expected(row) for row in source}
        stats = emulator.stats()
        injected = sum(stats["faults_injected"].values())
        assert injected > 100, stats["faults_injected"]  # the mix really happened
        assert set(stats["faults_injected"]) == set(MIXED_FAULTS)
        # a faulted request is never applied: every user was applied once, whatever it took
        assert set(stats["patch_counts"].values()) == {1}
        metadata = push_metadata(result)
        assert metadata["users_delivered"] == 2000 and metadata["users_failed"] == 0
        # retries are counted: one request per user plus one per fault, as the emulator saw them
        assert stats["requests_total"] == 2000 + injected
        assert metadata["requests_sent"] == stats["requests_total"]
        assert delivery_check(result).passed
        figures = dict(
            faults_injected=stats["faults_injected"], users_expected=2000, requests=stats["requests_total"]
        )
        figures.update(users_delivered=len(emulator.users()), duplicates=0)
        record_property("figures", figures)
        print(f"\nmixed faults: {figures}")

        # the state agrees with the API: a second run has nothing to send
        again = run_job(spec, "users_sync", instance, resources=resources())
        assert push_metadata(again)["requests_sent"] == 0
        assert emulator.stats()["requests_total"] == stats["requests_total"]


def test_slow_and_lost_responses_are_retried_and_land_with_the_right_values(
    spec_for, instance, record_property
):
    """Answers slower than the client's timeout, and answers lost after the change was applied."""
    source = rows(400)
    config = EmulatorConfig(
        project_uid=PROJECT_UID,
        latency_ms=2,
        faults={"slow": 0.03, "drop_after_apply": 0.03, "503": 0.02},
        slow_ms=600,
        seed=7,
    )
    with run_emulator_in_thread(config) as emulator:
        spec = spec_for(source, emulator.url, concurrency=16)
        started = time.monotonic()
        result = run_job(spec, "users_sync", instance, resources=resources(timeout_s=0.2))
        assert result.success, failure_messages(result)
        time.sleep(0.8)  # let the slow requests the client gave up on finish on the server
        stats = emulator.stats()
        assert emulator.users() == {row["user_uid"]: expected(row) for row in source}
        lost = stats["faults_injected"]["slow"] + stats["faults_injected"]["drop_after_apply"]
        assert lost > 5
        # a request whose answer was lost was applied, and its retry too: the same values, twice. On a busy
        # machine an ordinary answer can also miss the 0.2 s timeout, so the exact count is every request the
        # server applied (all but the 503s) beyond one per user
        duplicates = sum(count - 1 for count in stats["patch_counts"].values())
        applied = stats["requests_total"] - stats["faults_injected"]["503"]
        assert duplicates == applied - len(source) and duplicates >= lost, (
            duplicates,
            stats["faults_injected"],
        )
        metadata = push_metadata(result)
        assert metadata["users_delivered"] == 400 and metadata["users_failed"] == 0
        assert metadata["requests_sent"] == stats["requests_total"]
        figures = dict(faults_injected=stats["faults_injected"], users_expected=400, duplicates=duplicates)
        record_property("figures", figures)
        print(f"\nslow and lost responses: {figures}")
        # the client gave up at its timeout instead of waiting for every slow answer in turn
        assert time.monotonic() - started < 30


def test_a_short_outage_is_ridden_out_by_the_retries(spec_for, instance):
    source = rows(200)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=1)) as emulator:
        spec = spec_for(source, emulator.url, concurrency=8)
        # backoff 0.2, 0.4, 0.8, 1, 1 s: about 3.4 s of patience per user, more than the outage
        with outage_after(emulator, applied=50, outage_s=1.0):
            result = run_job(
                spec,
                "users_sync",
                instance,
                resources=resources(max_retries=5, backoff_factor=0.2, backoff_max_s=1.0),
            )
        assert result.success, failure_messages(result)
        stats = emulator.stats()
        assert stats["faults_injected"]["outage"] > 0
        assert emulator.users() == {row["user_uid"]: expected(row) for row in source}
        assert set(stats["patch_counts"].values()) == {1}


def test_an_outage_longer_than_the_retry_budget_fails_clearly_and_the_next_run_finishes(
    spec_for, instance, record_property
):
    """The API goes down mid-delivery and stays down: the run fails saying so; the next run sends the rest."""
    source = rows(600)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=2)) as emulator:
        spec = spec_for(source, emulator.url, concurrency=8)
        with outage_after(emulator, applied=200, outage_s=3600):
            first = run_job(spec, "users_sync", instance, resources=resources(max_retries=2))
        assert not first.success
        metadata = push_metadata(first)
        delivered, failed = metadata["users_delivered"], metadata["users_failed"]
        assert delivered >= 200 and failed >= 300 and delivered + failed == 600
        assert metadata["requests_sent"] == delivered + 3 * failed  # each failed user: 1 try + 2 retries
        message = failure_messages(first)
        assert f"{failed} of 600 users failed after retries" in message
        assert "HTTP 503" in message and "retried by the next run" in message
        check = delivery_check(first)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
        applied_during_first = dict(emulator.stats()["patch_counts"])
        assert len(applied_during_first) == delivered  # the state's "delivered" is what the API holds

        emulator.configure(outage_s=None)  # the API is back
        second = run_job(spec, "users_sync", instance, resources=resources(max_retries=2))
        assert second.success, failure_messages(second)
        metadata = push_metadata(second)
        assert metadata["users_retried"] == failed and metadata["requests_sent"] == failed
        assert emulator.users() == {row["user_uid"]: expected(row) for row in source}
        # nothing lost, nobody sent twice: requests refused by the outage were never applied
        counts = emulator.stats()["patch_counts"]
        assert len(counts) == 600 and set(counts.values()) == {1}
        figures = dict(
            outage_refusals=emulator.stats()["faults_injected"]["outage"],
            first_run_delivered=delivered,
            first_run_failed=failed,
            users_delivered=len(counts),
            duplicates=0,
        )
        record_property("figures", figures)
        print(f"\nlong outage: {figures}")


def one_update(client: EdgeClient) -> Response:
    """One PATCH of user u1 through the client, in an event loop of its own."""

    async def call() -> Response:
        async with client as edge:
            return await edge.update_attributes("u1", {"plan": "gold"})

    return asyncio.run(call())


@pytest.mark.parametrize(
    ("fault", "minimum_s", "maximum_s"),
    [("429", 0.95, 5.0), ("429_no_retry_after", 0.0, 0.5)],
)
def test_retry_after_is_honoured_when_present(fault, minimum_s, maximum_s):
    with run_emulator_in_thread(EmulatorConfig(faults={fault: 1.0})) as emulator:
        client = EdgeClient(emulator.url, PROJECT_UID, max_retries=1, backoff_factor=0.01, backoff_max_s=0.05)
        started = time.monotonic()
        response = one_update(client)
        elapsed = time.monotonic() - started
    assert not response.ok and response.status == 429 and response.attempts == 2
    assert "429" in response.error
    assert minimum_s <= elapsed < maximum_s, elapsed  # the emulator's Retry-After is 1 s


def test_a_timeout_is_reported_as_a_timeout():
    config = EmulatorConfig(faults={"slow": 1.0}, slow_ms=2000)
    with run_emulator_in_thread(config) as emulator:
        client = EdgeClient(emulator.url, PROJECT_UID, timeout_s=0.2, max_retries=1, backoff_factor=0.01)
        started = time.monotonic()
        response = one_update(client)
        elapsed = time.monotonic() - started
    assert not response.ok and response.status is None and response.attempts == 2
    assert "timed out" in response.error
    assert elapsed < 1.5


def test_a_dropped_connection_is_reported_as_a_connection_failure():
    with run_emulator_in_thread(EmulatorConfig(faults={"drop": 1.0})) as emulator:
        response = one_update(EdgeClient(emulator.url, PROJECT_UID, max_retries=2, backoff_factor=0.01))
        assert emulator.stats()["requests_total"] == 3
    assert not response.ok and response.status is None and response.attempts == 3
    assert "connection failed" in response.error


def test_a_value_reverted_after_a_lost_response_is_resent(spec_for, instance):
    no_retries = resources(max_retries=0)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as emulator:
        spec = spec_for([dict(user_uid="a", plan_name="v0")], emulator.url)
        assert run_job(spec, "users_sync", instance, resources=no_retries).success
        spec_for([dict(user_uid="a", plan_name="v1")], emulator.url)
        emulator.configure(faults={"drop_after_apply": 1.0})  # v1 is applied; the answer never comes
        assert not run_job(spec, "users_sync", instance, resources=no_retries).success
        assert emulator.users()["a"] == {"plan": "v1"}

        emulator.configure(faults={})
        spec_for([dict(user_uid="a", plan_name="v0")], emulator.url)  # the warehouse goes back to v0
        assert run_job(spec, "users_sync", instance, resources=no_retries).success
        assert emulator.users()["a"] == {"plan": "v0"}
