"""The state store on a temporary SQLite file, called directly: outcomes recorded and read back, the
write-ahead, which state a destination gets, the order of runs, and pruning of the log."""

from __future__ import annotations

import pandas as pd
import pytest

from contentstack_assets.engine.state import StateStore, UserOutcome

SYNC = "users"


@pytest.fixture
def store(tmp_path) -> StateStore:
    return StateStore(f"sqlite:///{tmp_path / 'state.db'}")


def _ok(uid: str, values: dict, fingerprint: int, read_at: int | None = None) -> UserOutcome:
    return UserOutcome(uid, tuple(values), True, 200, 1, 2.5, None, values, fingerprint, read_at=read_at)


def _failed(uid: str, keys: tuple[str, ...] = ("plan",), status: int = 500) -> UserOutcome:
    return UserOutcome(uid, keys, False, status, 3, 9.0, f"HTTP {status}: boom", None, None)


# -- outcomes --------------------------------------------------------------------------------------
def test_a_delivery_is_read_back_exactly(store):
    huge = -(2**63) + 5  # a 64-bit fingerprint that a float would round
    store.record_user_outcomes(SYNC, "run-1", [_ok("u1", {"plan": "gold", "vip": True}, huge, read_at=77)])
    assert store.load_delivered(SYNC, ["u1", "nobody"]) == {"u1": {"plan": "gold", "vip": True}}
    frame = store.load_fingerprints(SYNC)
    assert frame.loc["u1", "fingerprint"] == huge and frame.loc["u1", "failed_runs"] == 0
    assert store.load_read_times(SYNC, ["u1"]) == {"u1": 77}
    assert store.count_users(SYNC) == 1 and store.count_users("other") == 0


def test_a_failure_keeps_what_was_delivered_and_counts_failed_runs(store):
    store.record_user_outcomes(SYNC, "run-1", [_ok("u1", {"plan": "gold"}, 11), _failed("u2")])
    store.record_user_outcomes(SYNC, "run-2", [_failed("u1"), _failed("u2")])
    u1, u2 = store.user_state(SYNC, "u1"), store.user_state(SYNC, "u2")
    assert (u1["delivered"], u1["fingerprint"], u1["failed_runs"], u1["last_status"]) == (
        {"plan": "gold"},
        11,
        1,
        500,
    )
    assert (u2["delivered"], u2["fingerprint"], u2["failed_runs"]) == ({}, None, 2)
    assert store.stuck_users(SYNC, after_runs=2) == (
        1, [{"user_uid": "u2", "failed_runs": 2, "last_status": 500, "last_error": "HTTP 500: boom"}]
    )  # fmt: skip
    assert store.stuck_users(SYNC, after_runs=1)[0] == 2

    store.record_user_outcomes(SYNC, "run-3", [_ok("u2", {"plan": "silver"}, 22)])
    assert store.user_state(SYNC, "u2")["failed_runs"] == 0
    assert store.stuck_users(SYNC, after_runs=1)[0] == 1


def test_the_log_holds_one_row_per_outcome(store):
    store.record_user_outcomes(SYNC, "run-1", [_ok("u1", {"plan": "gold", "vip": True}, 1), _failed("u2")])
    store.record_user_outcomes(SYNC, "run-2", [_failed("u1", status=429)])
    log = store.log_for_user("u1", sync=SYNC)
    assert [(row["run_id"], row["keys"], row["status"]) for row in log] == [
        ("run-2", "plan", 429),  # newest first
        ("run-1", "plan,vip", 200),
    ]
    assert sorted(store.run_log(SYNC, "run-1")["user_uid"]) == ["u1", "u2"]


def test_the_write_ahead_forgets_only_the_keys_in_flight(store):
    store.record_user_outcomes(
        SYNC, "run-1", [_ok(u, {"plan": "gold", "vip": True, "n": 1}, 5) for u in ("u1", "u2")]
    )
    store.forget_in_flight(SYNC, [("u1", ("plan", "n")), ("new-user", ("plan",))])
    u1 = store.user_state(SYNC, "u1")
    assert u1["delivered"] == {"vip": True} and u1["fingerprint"] is None
    assert store.user_state(SYNC, "u2")["fingerprint"] == 5
    assert store.user_state(SYNC, "new-user") is None  # new users stay new until confirmed
    assert store.unconfirmed_users(SYNC) == ["u1"]


def test_users_gone_from_the_source_leave_the_state_only_when_unconfirmed(store):
    store.record_user_outcomes(SYNC, "run-1", [_ok("kept", {"plan": "gold"}, 1), _failed("gone")])
    store.drop_unconfirmed(SYNC, ["kept", "gone"])
    assert store.user_state(SYNC, "gone") is None
    assert store.user_state(SYNC, "kept") is not None


def test_refreshed_fingerprints_clear_the_failure(store):
    store.record_user_outcomes(SYNC, "run-1", [_ok("u1", {"plan": "gold"}, 1)])
    store.record_user_outcomes(SYNC, "run-2", [_failed("u1")])
    store.refresh_fingerprints(SYNC, {"u1": 99})
    state = store.user_state(SYNC, "u1")
    assert (state["fingerprint"], state["failed_runs"], state["delivered"]) == (99, 0, {"plan": "gold"})


def test_syncs_do_not_see_each_others_users(store):
    store.record_user_outcomes("a", "run-1", [_ok("u1", {"plan": "gold"}, 1)])
    store.record_user_outcomes("b", "run-1", [_ok("u1", {"plan": "silver"}, 2)])
    assert store.load_delivered("a", ["u1"]) == {"u1": {"plan": "gold"}}
    assert store.load_fingerprints("b").loc["u1", "fingerprint"] == 2


# -- which state -----------------------------------------------------------------------------------
def test_each_destination_of_a_sync_has_its_own_state_and_finds_it_again(store):
    first = store.state_key(SYNC, "proj-a https://eu.example")
    second = store.state_key(SYNC, "proj-b https://eu.example")
    assert first == SYNC  # the first destination keeps the sync's name (stores written before destinations)
    assert second.startswith(f"{SYNC}@") and second != first
    assert store.state_key(SYNC, "proj-a https://eu.example") == first
    assert store.state_key(SYNC, "proj-b https://eu.example") == second


def test_a_renamed_sync_takes_over_the_state_of_its_former_name(store):
    old = store.state_key("crm", "proj-a https://eu.example")
    store.record_user_outcomes(old, "run-1", [_ok("u1", {"plan": "gold"}, 1)])
    new = store.state_key("customers", "proj-a https://eu.example", renamed_from="crm")
    assert new == "customers"
    assert store.load_delivered(new, ["u1"]) == {"u1": {"plan": "gold"}}
    assert store.load_delivered("crm", ["u1"]) == {}


# -- runs ------------------------------------------------------------------------------------------
def test_the_last_run_is_the_last_started_not_the_last_finished(store):
    store.start_run(SYNC, "early", "all", dry_run=False)
    store.start_run(SYNC, "late", "all", dry_run=False)
    store.finish_run(SYNC, "late", {"rows_read": 2})
    store.finish_run(SYNC, "early", {"rows_read": 1})
    assert store.last_finished_run(SYNC)["run_id"] == "late"
    store.start_run(SYNC, "early", "all", dry_run=False)  # a re-execution of a run takes a new place
    store.finish_run(SYNC, "early", {"rows_read": 3})
    assert store.last_finished_run(SYNC)["counts"] == {"rows_read": 3}


def test_the_last_run_leaves_out_dry_unfinished_and_other_scopes(store):
    store.start_run(SYNC, "real", "all", dry_run=False)
    store.finish_run(SYNC, "real", {"rows_read": 5})
    store.start_run(SYNC, "dry", "all", dry_run=True)
    store.finish_run(SYNC, "dry", {"rows_read": 6})
    store.start_run(SYNC, "running", "all", dry_run=False)
    store.start_run(SYNC, "days", "2024-01-01...2024-01-03", dry_run=False)
    store.finish_run(SYNC, "days", {"rows_read": 1, "source_rows": 40})
    assert store.last_finished_run(SYNC)["run_id"] == "real"
    assert store.last_finished_run(SYNC, scope=None)["run_id"] == "days"
    assert store.last_finished_run(SYNC, scope=None, having="source_rows")["counts"]["source_rows"] == 40
    assert store.last_finished_run(SYNC, scope="all", having="source_rows") is None
    assert store.last_finished_run("other") is None


def test_pruning_counts_the_age_from_the_start_of_the_run_before(store):
    """With no retention, the log of the run before survives: a run's clock (which may have jumped ahead)
    never makes the previous run's log look old, only what came before that run's start."""
    store.start_run(SYNC, "run-0", "all", dry_run=False)
    store.record_user_outcomes(SYNC, "run-0", [_ok("u0", {"plan": "gold"}, 1)])
    store.record_rejections(
        SYNC, "run-0", pd.DataFrame({"row_number": [2], "user_uid": ["r0"], "reason": ["x"]})
    )
    store.start_run(SYNC, "run-1", "all", dry_run=False)
    store.record_user_outcomes(SYNC, "run-1", [_ok("u1", {"plan": "gold"}, 1)])
    store.record_rejections(
        SYNC, "run-1", pd.DataFrame({"row_number": [3], "user_uid": ["r1"], "reason": ["y"]})
    )
    store.start_run(SYNC, "run-2", "all", dry_run=False)

    assert store.prune(SYNC, retention_days=30) == 0
    assert store.prune(SYNC, retention_days=0) == 1
    assert store.log_for_user("u0", sync=SYNC) == [] and len(store.log_for_user("u1", sync=SYNC)) == 1
    assert store.rejections_for_user("r0", sync=SYNC) == []
    assert [row["reason"] for row in store.rejections_for_user("r1", sync=SYNC)] == ["y"]


def test_rejections_of_a_run_replace_that_runs_earlier_ones(store):
    first = pd.DataFrame(
        {"row_number": [1, 2], "user_uid": ["a", None], "reason": ["bad", "missing user uid"]}
    )
    store.record_rejections(SYNC, "run-1", first)
    store.record_rejections(SYNC, "run-1", first.iloc[:1].assign(reason="worse"))
    assert [row["reason"] for row in store.rejections_for_user("a", sync=SYNC)] == ["worse"]
