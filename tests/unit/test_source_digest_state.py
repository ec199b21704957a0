"""The state of change detection in the database (engine/digests.py), on SQLite and PostgreSQL state stores
called directly: a user is left unread only while its confirmed fingerprint is the one its stored digest's
row maps to; a failure, the write-ahead, a merge's forgetting, a delivery without a digest all make it read
again; the digests of users found unchanged are stored by one batched write, exact to 64 bits."""

from __future__ import annotations

import pytest

from contentstack_assets.engine.state import StateStore, UserOutcome

SYNC = "users"
BIG = -(2**63) + 7  # a 64-bit digest that a float would round


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path) -> StateStore:
    if request.param == "sqlite":
        return StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    return StateStore(request.getfixturevalue("postgres_url"))


def _ok(uid: str, fingerprint: int, digest: int | None) -> UserOutcome:
    values = {"plan": "gold"}
    return UserOutcome(uid, ("plan",), True, 200, 1, 1.0, None, values, fingerprint, source_digest=digest)


def _failed(uid: str) -> UserOutcome:
    return UserOutcome(uid, ("plan",), False, 500, 3, 1.0, "HTTP 500: boom", None, None)


def test_only_confirmed_users_whose_fingerprint_is_their_digests_are_left_unread(store):
    store.record_user_outcomes(
        SYNC,
        "r1",
        [_ok("u1", 11, BIG), _ok("u2", 12, 2), _ok("u3", 13, 3), _ok("u4", 14, None), _ok("u5", 15, 5)],
    )
    assert store.load_source_digests(SYNC).to_dict() == {"u1": BIG, "u2": 2, "u3": 3, "u5": 5}
    store.record_user_outcomes(SYNC, "r2", [_failed("u2")])  # failing: read again, its digest kept
    store.forget_in_flight(SYNC, [("u3", ("plan",))])  # in flight: no fingerprint
    store.forget_delivered(SYNC, ["u5"])  # a merge overwrote it
    assert store.load_source_digests(SYNC).to_dict() == {"u1": BIG}
    assert store.user_state(SYNC, "u2")["source_digest"] == 2
    # a delivery from a read without digests (a window of days) leaves no digest behind
    store.record_user_outcomes(SYNC, "r3", [_ok("u1", 21, None)])
    assert store.load_source_digests(SYNC).empty


def test_the_digests_of_unchanged_users_are_written_in_one_batch(store):
    store.record_user_outcomes(SYNC, "r1", [_ok(f"u{i}", 100 + i, None) for i in range(7000)])
    store.record_source_digests(SYNC, [(f"u{i}", BIG + i, 100 + i) for i in range(7000)] + [("nobody", 1, 1)])
    loaded = store.load_source_digests(SYNC)
    assert len(loaded) == 7000 and loaded["u6999"] == BIG + 6999 and "nobody" not in loaded
    # a pair whose fingerprint is not the user's confirmed one is stored but leaves the user read
    store.record_source_digests(SYNC, [("u1", 5, 999)])
    assert "u1" not in store.load_source_digests(SYNC)


def test_a_state_in_sqlites_memory_gives_its_digests_to_the_scan():
    """The scan reads the state's digests in a thread of its own; a state in SQLite's memory is one database
    per thread (another thread's connection finds it empty), so there it reads them in the caller's."""
    from concurrent.futures import ThreadPoolExecutor

    from contentstack_assets.engine.digests import _loaded

    store = StateStore("sqlite://")
    store.record_user_outcomes(SYNC, "r1", [_ok("u1", 11, BIG), _ok("u2", 12, 2)])
    with ThreadPoolExecutor(1) as pool:
        assert _loaded(pool, store, SYNC).result().tolist() == [BIG, 2]
