"""Planning, called directly: which users a push sends, what each request carries, and what moves the salt."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contentstack_assets.engine.plan import fingerprints, plan_users, spec_salt
from contentstack_assets.engine.push import plan_by_day
from contentstack_assets.spec import UsersSync
from contentstack_assets.wire import DAY, REJECTION

KEYS = ("plan", "orders", "vip")
BASE_SPEC = {
    "name": "users",
    "source": {"url": "sqlite:///unused.db", "table": "users"},
    "destination": {"project_uid": "p" * 24, "edge_url": "http://127.0.0.1:9"},
    "match": {"column": "user_uid"},
    "attributes": {
        "plan": {"column": "plan_name", "type": "string"},
        "orders": {"column": "order_count", "type": "integer"},
        "vip": {"column": "is_vip", "type": "boolean"},
    },
}


def _sync(**changes) -> UsersSync:
    return UsersSync.model_validate({**BASE_SPEC, **changes})


def _valid(rows: dict[str, tuple]) -> pd.DataFrame:
    """Valid rows as mapping gives them: uid -> (plan, orders, vip), wire dtypes, nulls as None/<NA>."""
    uids = list(rows)
    return pd.DataFrame(
        {
            "user_uid": pd.Series(uids, dtype=object),
            "plan": pd.Series([rows[uid][0] for uid in uids], dtype=object),
            "orders": pd.Series([rows[uid][1] for uid in uids], dtype="Int64"),
            "vip": pd.Series([rows[uid][2] for uid in uids], dtype="boolean"),
        }
    )


def _state(rows: dict[str, tuple[int | None, int]]) -> pd.DataFrame:
    """The state frame as `StateStore.load_fingerprints` returns it: uid -> (fingerprint, failed_runs)."""
    uids = list(rows)
    prints = [rows[uid][0] for uid in uids]
    return pd.DataFrame(
        {
            "fingerprint": pd.arrays.IntegerArray(
                np.array([p or 0 for p in prints], dtype=np.int64),
                np.array([p is None for p in prints], dtype=bool),
            ),
            "failed_runs": np.array([rows[uid][1] for uid in uids], dtype=np.int64),
        },
        index=pd.Index(uids, name="user_uid", dtype=object),
    )


def _plan(valid, state=None, delivered=None, *, nulls="skip", full_resync=False, salt=0, **kwargs):
    asked: list[list[str]] = []

    def load_delivered(uids: list[str]) -> dict[str, dict]:
        asked.append(sorted(uids))
        return {uid: (delivered or {})[uid] for uid in uids if uid in (delivered or {})}

    plan = plan_users(
        valid,
        state if state is not None else _state({}),
        keys=KEYS,
        nulls=nulls,
        full_resync=full_resync,
        load_delivered=load_delivered,
        salt=salt,
        **kwargs,
    )
    return plan, {r.user_uid: r for r in plan.requests()}, asked


def _prints(valid: pd.DataFrame, salt: int = 0) -> dict[str, int]:
    return dict(zip(valid["user_uid"], fingerprints(valid, KEYS, salt).tolist(), strict=True))


# -- spec_salt ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "changes",
    [
        # a key renamed: the same values land under another attribute
        {
            "attributes": {
                **{k: v for k, v in BASE_SPEC["attributes"].items() if k != "plan"},
                "plan_tier": {"column": "plan_name", "type": "string"},
            }
        },  # fmt: skip
        # retyped: the same column, another wire value
        {"attributes": {**BASE_SPEC["attributes"], "orders": {"column": "order_count", "type": "number"}}},
        # mapped to another column
        {"attributes": {**BASE_SPEC["attributes"], "plan": {"column": "plan_code", "type": "string"}}},
        {"nulls": "send"},
    ],
    ids=["key renamed", "retyped", "other column", "nulls mode"],
)
def test_the_salt_moves_with_anything_that_shapes_the_wire_body(changes):
    assert spec_salt(_sync(**changes)) != spec_salt(_sync())


@pytest.mark.parametrize(
    "changes",
    [{"concurrency": 3}, {"schedule": "0 * * * *"}, {"log_retention_days": 1}, {"name": "crm"}],
    ids=["concurrency", "schedule", "retention", "name"],
)
def test_the_salt_ignores_what_does_not_reach_the_wire(changes):
    assert spec_salt(_sync(**changes)) == spec_salt(_sync())


def test_the_salt_of_a_spec_without_constants_is_what_it_was():
    # Pinned: a salt that moved with a release would make every user of every sync be diffed again.
    assert spec_salt(_sync()) == -7639627393593851297


def _with_constant(**attribute) -> UsersSync:
    return _sync(attributes={**BASE_SPEC["attributes"], "source": {"type": "string", **attribute}})


def test_the_salt_moves_with_a_constants_value_and_with_a_column_becoming_a_constant():
    warehouse = spec_salt(_with_constant(value="warehouse"))
    assert warehouse == spec_salt(_with_constant(value="warehouse"))
    assert warehouse != spec_salt(_with_constant(value="crm"))
    assert warehouse != spec_salt(_with_constant(column="warehouse"))
    assert spec_salt(_with_constant(value="1")) != spec_salt(_with_constant(value=1))


def test_the_salt_is_a_signed_64_bit_number_the_same_in_every_call():
    salt = spec_salt(_sync())
    assert salt == spec_salt(_sync())
    assert -(2**63) <= salt < 2**63


# -- fingerprints ------------------------------------------------------------------------------------
def test_fingerprints_change_with_any_value_and_are_stable_otherwise():
    valid = _valid({"u1": ("gold", 3, True), "u2": ("gold", 3, True), "u3": ("gold", 4, True)})
    prints = _prints(valid)
    assert prints["u1"] == prints["u2"]  # the uid is not hashed: the values are
    assert prints["u1"] != prints["u3"]
    assert _prints(valid) == prints


def test_a_null_does_not_hash_like_the_text_none():
    valid = _valid({"null": (None, 1, True), "text": ("None", 1, True), "nan": ("nan", 1, True)})
    prints = _prints(valid)
    assert len(set(prints.values())) == 3


def test_the_salt_is_xored_into_every_fingerprint():
    valid = _valid({"u1": ("gold", 3, True), "u2": (None, None, None)})
    salt = -1234567890123456789
    unsalted, salted = _prints(valid), _prints(valid, salt)
    assert all(salted[uid] == unsalted[uid] ^ salt for uid in unsalted)
    assert salted != unsalted


def test_keys_in_another_order_give_other_fingerprints():
    valid = _valid({"u1": ("gold", 3, True)})
    assert fingerprints(valid, KEYS).iat[0] != fingerprints(valid, tuple(reversed(KEYS))).iat[0]


def test_an_empty_frame_has_no_fingerprints():
    assert fingerprints(_valid({}), KEYS).empty


# -- plan_users --------------------------------------------------------------------------------------
def test_users_not_in_the_state_are_new_and_sent_whole_without_nulls():
    plan, requests, asked = _plan(_valid({"u1": ("gold", 3, True), "u2": (None, 5, False)}))
    assert plan.counts["new"] == 2 and plan.users_to_send == 2
    assert requests["u1"].body == {"plan": "gold", "orders": 3, "vip": True}
    assert requests["u2"].body == {"orders": 5, "vip": False}  # nulls: skip
    assert {r.reason for r in requests.values()} == {"new"}
    assert asked == []  # nothing to diff: the state is not read for new users


def test_nulls_send_puts_the_nulls_in_the_body():
    _, requests, _ = _plan(_valid({"u2": (None, 5, False)}), nulls="send")
    assert requests["u2"].body == {"plan": None, "orders": 5, "vip": False}


def test_a_new_user_with_every_value_null_costs_no_request_under_nulls_skip():
    plan, requests, _ = _plan(_valid({"empty": (None, None, None), "u1": ("gold", 1, True)}))
    assert set(requests) == {"u1"}
    assert plan.counts["new"] == 1 and plan.counts["unchanged"] == 1


def test_unchanged_users_are_not_sent_and_changed_users_send_only_the_keys_that_differ():
    before = _valid({"same": ("gold", 3, True), "moved": ("gold", 3, True)})
    prints = _prints(before)
    now = _valid({"same": ("gold", 3, True), "moved": ("silver", 3, True)})
    delivered = {"moved": {"plan": "gold", "orders": 3, "vip": True}}
    plan, requests, asked = _plan(
        now, _state({"same": (prints["same"], 0), "moved": (prints["moved"], 0)}), delivered
    )
    assert set(requests) == {"moved"}
    assert requests["moved"].body == {"plan": "silver"}  # a partial update
    assert requests["moved"].reason == "changed"
    assert requests["moved"].delivered_after == {"plan": "silver", "orders": 3, "vip": True}
    assert requests["moved"].fingerprint == _prints(now)["moved"]
    assert plan.counts == {**plan.counts, "changed": 1, "unchanged": 1, "new": 0, "retry": 0}
    assert asked == [["moved"]]  # only the moved user's delivered values are read


def test_a_failed_user_is_retried_even_when_its_row_did_not_move():
    valid = _valid({"u1": ("gold", 3, True)})
    # a failure keeps the last delivered values and fingerprint: only `orders` never got through
    state = _state({"u1": (_prints(valid)["u1"], 2)})
    plan, requests, _ = _plan(valid, state, {"u1": {"plan": "gold", "vip": True}})
    assert requests["u1"].reason == "retry"
    assert requests["u1"].body == {"orders": 3}
    assert plan.counts["retry"] == 1


def test_a_moved_row_with_nothing_to_send_is_refreshed_not_sent():
    valid = _valid({"u1": ("gold", 3, True)})
    # the state's fingerprint is another one (say, an older spec's) but the API already holds these values
    plan, requests, _ = _plan(
        valid, _state({"u1": (42, 0)}), {"u1": {"plan": "gold", "orders": 3, "vip": True}}
    )
    assert requests == {}
    assert plan.refresh == {"u1": _prints(valid)["u1"]}
    assert plan.counts["unchanged"] == 1 and plan.users_to_send == 0


def test_a_boolean_delivered_as_an_integer_is_sent_again():
    """`True == 1` in Python; on the wire `true` and `1` differ."""
    valid = _valid({"u1": ("gold", 1, True)})
    plan, requests, _ = _plan(
        valid, _state({"u1": (42, 0)}), {"u1": {"plan": "gold", "orders": True, "vip": 1}}
    )
    assert requests["u1"].body == {"orders": 1, "vip": True}


def test_a_new_salt_makes_every_user_diffed_against_what_it_holds():
    """A spec edit moves every fingerprint: every user is looked at again, and sends what the API lacks."""
    valid = _valid({"u1": ("gold", 3, True), "u2": ("silver", 1, False)})
    old = _prints(valid, salt=1)
    state = _state({uid: (print_, 0) for uid, print_ in old.items()})
    delivered = {"u1": {"plan": "gold", "orders": 3, "vip": True}, "u2": {"plan_tier": "silver", "orders": 1}}

    unchanged, requests, _ = _plan(valid, state, delivered, salt=1)
    assert requests == {} and unchanged.counts["unchanged"] == 2  # the same spec: nothing looked at

    plan, requests, asked = _plan(valid, state, delivered, salt=2)
    assert asked == [["u1", "u2"]]
    assert set(requests) == {"u2"}  # u1 holds every value already: refreshed, no request
    assert requests["u2"].body == {"plan": "silver", "vip": False}
    assert plan.refresh == {"u1": _prints(valid, salt=2)["u1"]}


def test_a_full_resync_sends_every_user_whole():
    valid = _valid({"u1": ("gold", 3, True), "u2": ("silver", None, False)})
    state = _state({uid: (print_, 0) for uid, print_ in _prints(valid).items()})
    plan, requests, asked = _plan(valid, state, full_resync=True)
    assert plan.counts["resync"] == 2 and plan.users_to_send == 2
    assert requests["u2"].body == {"plan": "silver", "vip": False}
    assert {r.reason for r in requests.values()} == {"resync"}
    assert asked == []


def test_a_user_read_later_by_another_run_is_skipped_as_stale():
    before = _valid({"old": ("gold", 1, True), "fresh": ("gold", 1, True)})
    prints = _prints(before)
    now = _valid({"old": ("silver", 1, True), "fresh": ("silver", 1, True)})
    state = _state({uid: (print_, 0) for uid, print_ in prints.items()})
    delivered = {uid: {"plan": "gold", "orders": 1, "vip": True} for uid in prints}
    plan, requests, _ = _plan(
        now,
        state,
        delivered,
        read_at=1_000,
        load_read_times=lambda uids: {"old": 2_000, "fresh": 500},  # `old` was delivered from a later read
    )
    assert set(requests) == {"fresh"}
    assert plan.counts["stale_skipped"] == 1 and plan.counts["changed"] == 1


def test_requests_are_the_same_whatever_the_chunk_size():
    valid = _valid({f"u{i}": (f"p{i % 3}", i, i % 2 == 0) for i in range(23)})
    plan, requests, _ = _plan(valid)
    chunked = list(plan.requests(chunk_size=4))
    assert [r.user_uid for r in chunked] == [f"u{i}" for i in range(23)]
    assert {r.user_uid: r for r in chunked} == requests
    assert [sample["user_uid"] for sample in plan.sample_bodies(limit=5)] == ["u0", "u1", "u2", "u3", "u4"]


def test_the_plan_by_day_counts_each_user_on_the_day_of_its_row_and_adds_up_to_the_plan():
    before = _valid({"same": ("gold", 3, True), "moved": ("gold", 3, True), "late": ("gold", 1, True)})
    prints = _prints(before)
    now = _valid({"same": ("gold", 3, True), "moved": ("silver", 3, True), "new": ("free", 1, False)})
    state = _state({"same": (prints["same"], 0), "moved": (prints["moved"], 0)})
    plan, _, _ = _plan(now, state, {"moved": {"plan": "gold", "orders": 3, "vip": True}})
    mapped = pd.concat([now, pd.DataFrame({"user_uid": ["bad"]})], ignore_index=True)
    mapped[REJECTION] = [None, None, None, "orders: not an integer"]
    mapped[DAY] = ["2024-01-01", "2024-01-02", "2024-01-02", "2024-01-01"]

    by_day, user_days = plan_by_day(mapped, plan)
    assert by_day.as_dict() == {
        "2024-01-01": {"rows_read": 2, "rows_rejected": 1, "users_unchanged": 1},
        "2024-01-02": {"rows_read": 2, "users_changed": 2, "users_new": 1},
    }
    assert plan.users_to_send == 2 and plan.counts["unchanged"] == 1 and plan.counts["new"] == 1
    assert user_days == {"same": "2024-01-01", "moved": "2024-01-02", "new": "2024-01-02"}
    # rows without days (an unpartitioned sync): nothing by day
    assert plan_by_day(mapped.drop(columns=[DAY]), plan)[0].as_dict() == {}
