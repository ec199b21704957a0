"""Every change delivered, eventually: failed and unconfirmed users of any day are retried, stuck users are
users that can still be delivered, and a null never hashes like a text (issue 13, items 6, 9 and 12).

Each test here failed on the code before its fix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contentstack_assets.engine.plan import fingerprints
from contentstack_assets.engine.state import StateStore
from tests.helpers import fast_retries, push_metadata, run_job, users_sync, write_spec, write_sqlite_table

DAY_1, DAY_2 = "2024-03-01", "2024-03-02"


def _rows(n: int = 10, **changes) -> list[dict]:
    """u00..u04 updated on DAY_1, the others on DAY_2; `birth_date` holds the `extra` attribute (null)."""
    rows = [
        dict(user_uid=f"u{i:02d}", plan_name="free", is_vip=i % 2, birth_date=None,
             updated_at=f"{DAY_1 if i < n // 2 else DAY_2} 10:00:00")
        for i in range(n)
    ]  # fmt: skip
    for uid, values in changes.items():
        rows[int(uid.removeprefix("u"))].update(values)
    return rows


ATTRIBUTES = {
    "plan": {"column": "plan_name", "type": "string"},
    "vip": {"column": "is_vip", "type": "boolean"},
    "extra": {"column": "birth_date", "type": "string"},
}


@pytest.fixture
def write(tmp_path, emulator):
    """write(rows, partitioned=..., **sync overrides) -> spec path: the source table and the spec rewritten."""

    def write(rows: list[dict], partitioned: bool = False, **overrides):
        url = write_sqlite_table(tmp_path / "src.db", rows)
        overrides.setdefault("attributes", ATTRIBUTES)
        sync = users_sync(url, emulator.url, **overrides)
        if partitioned:
            sync["source"].update(updated_at="updated_at", start_date=DAY_1)
        return write_spec(tmp_path / "syncs.yaml", [sync])

    return write


def _refuse_extra(emulator) -> None:
    """A user whose row carries `extra` is refused (400, unknown key); the others are accepted."""
    emulator.configure(attributes=["plan", "vip"])


def _day(spec, instance, day: str):
    return run_job(spec, "users_sync", instance, partition_range=(day, day), resources=fast_retries())


# -- 12: a null never hashes like a text -------------------------------------------------------------------
def test_a_null_and_the_text_none_are_different_values(write, emulator, instance):
    text = "None"
    assert run_job(write(_rows(), nulls="send"), "users_sync", instance).success
    assert emulator.users()["u01"]["extra"] is None
    metadata = push_metadata(
        run_job(write(_rows(u01={"birth_date": text}), nulls="send"), "users_sync", instance)
    )
    assert metadata["requests_sent"] == 1
    assert emulator.users()["u01"]["extra"] == text
    metadata = push_metadata(run_job(write(_rows(), nulls="send"), "users_sync", instance))
    assert metadata["requests_sent"] == 1
    assert emulator.users()["u01"]["extra"] is None


@pytest.mark.parametrize("null", [None, np.nan, pd.NA, pd.NaT])
@pytest.mark.parametrize("text", ["None", "nan", "NaT", "<NA>"])
def test_no_null_fingerprints_like_a_text(null, text):
    frame = pd.DataFrame({"plan": pd.Series([null, text], dtype=object), "vip": [True, True]})
    first, second = fingerprints(frame, ["plan", "vip"])
    assert first != second


def test_a_row_without_nulls_keeps_its_fingerprint():
    frame = pd.DataFrame(
        {"plan": pd.Series(["free", None], dtype=object), "ltv": [1.5, np.nan], "vip": [True, False]}
    )
    before = pd.util.hash_pandas_object(frame, index=False, categorize=False).to_numpy().view("int64")
    after = fingerprints(frame, list(frame.columns)).to_numpy()
    assert after[0] == before[0] and after[1] != before[1]


# -- 6: failed and unconfirmed users of other days are read again by uid ---------------------------------
def test_a_user_that_failed_on_one_day_is_retried_by_a_run_over_another_day(write, emulator, instance):
    spec = write(_rows(u02={"birth_date": "x"}), partitioned=True)
    _refuse_extra(emulator)
    assert not _day(spec, instance, DAY_1).success
    assert StateStore().user_state("users", "u02")["failed_runs"] == 1
    emulator.configure(attributes=None)
    metadata = push_metadata(_day(spec, instance, DAY_2))
    assert emulator.users().get("u02", {}).get("extra") == "x"
    assert metadata["users_reread_failed"] == 1 and metadata["users_failed"] == 0
    assert StateStore().user_state("users", "u02")["failed_runs"] == 0
    assert metadata["users_stuck"] == 0


def test_a_user_cut_after_the_write_ahead_is_unconfirmed_and_read_again(write, emulator, instance):
    assert _day(write(_rows(), partitioned=True), instance, DAY_1).success
    # u03 moves; a run over its day plans it, writes ahead and dies before the request goes out
    spec = write(_rows(u03={"plan_name": "gold"}), partitioned=True)
    store = StateStore()
    store.forget_in_flight("users", [("u03", ("plan",))])
    state = store.user_state("users", "u03")
    metadata = push_metadata(_day(spec, instance, DAY_2))
    assert emulator.users()["u03"]["plan"] == "gold"
    assert state["fingerprint"] is None and state["last_status"] is None  # not 200: nothing is confirmed
    assert metadata["users_reread_failed"] == 1 and metadata["users_new"] == 5  # and the day's own users
    assert store.log_for_user("u03", "users")[0]["keys"] == "plan"
    assert store.user_state("users", "u03")["last_status"] == 200


# -- 9: stuck users are users the source still holds, with a valid row --------------------------------------
def _fail_u02(spec, instance, emulator, partitioned: bool = False) -> None:
    _refuse_extra(emulator)
    run = (
        _day(spec, instance, DAY_1)
        if partitioned
        else run_job(spec, "users_sync", instance, resources=fast_retries())
    )
    assert push_metadata(run)["users_stuck"] == 1  # stuck_after_runs: 1


def test_a_failing_user_that_left_the_source_is_no_longer_stuck(write, emulator, instance):
    _fail_u02(write(_rows(u02={"birth_date": "x"}), stuck_after_runs=1), instance, emulator)
    rows = [row for row in _rows() if row["user_uid"] != "u02"]
    metadata = push_metadata(run_job(write(rows, stuck_after_runs=1), "users_sync", instance))
    assert metadata["users_stuck"] == 0
    assert StateStore().user_state("users", "u02") is None


def test_a_failing_user_of_another_day_that_left_the_source_is_no_longer_stuck(write, emulator, instance):
    spec = write(_rows(u02={"birth_date": "x"}), partitioned=True, stuck_after_runs=1)
    _fail_u02(spec, instance, emulator, partitioned=True)
    rows = [row for row in _rows() if row["user_uid"] != "u02"]
    metadata = push_metadata(_day(write(rows, partitioned=True, stuck_after_runs=1), instance, DAY_2))
    assert metadata["users_stuck"] == 0 and metadata["users_reread_failed"] == 0
    assert StateStore().user_state("users", "u02") is None


def test_a_failing_user_now_rejected_is_counted_as_rejected_not_stuck(write, emulator, instance):
    _fail_u02(write(_rows(u02={"birth_date": "x"}), stuck_after_runs=1), instance, emulator)
    emulator.configure(attributes=None)
    rejected = _rows(u02={"birth_date": "x", "is_vip": "maybe"})
    metadata = push_metadata(run_job(write(rejected, stuck_after_runs=1), "users_sync", instance))
    assert metadata["users_stuck"] == 0 and metadata["rows_rejected"] == 1
    # once valid again it is sent, as any user the API does not hold yet
    metadata = push_metadata(
        run_job(write(_rows(u02={"birth_date": "x"}), stuck_after_runs=1), "users_sync", instance)
    )
    assert metadata["users_delivered"] == 1 and emulator.users()["u02"]["extra"] == "x"
