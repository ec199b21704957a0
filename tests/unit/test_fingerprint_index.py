"""The state's fingerprints as an index of 16 bytes a user (engine/state/fingerprint_read.py): a chunk's
users looked up in it give exactly what the state's rows say, also for users with a failure or an
unconfirmed delivery, and for uids whose 64-bit hashes collide."""

from __future__ import annotations

import numpy as np
import pandas as pd

from contentstack_assets.engine.state import uid_hashes
from contentstack_assets.engine.state.fingerprint_read import FingerprintIndex, _fingerprint_frame


def _state(count: int) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(7)
    uids = np.array([f"user-{index}" for index in range(count)], dtype=object)
    prints = rng.integers(-(2**63), 2**63 - 1, size=count, dtype=np.int64)
    null = np.zeros(count, dtype=bool)
    null[::97] = True  # unconfirmed deliveries
    failed = np.zeros(count, dtype=np.int64)
    failed[::61] = 3
    prints[null] = 0
    return [(uids[start : start + 700], prints[start : start + 700], null[start : start + 700],
             failed[start : start + 700]) for start in range(0, count, 700)]  # fmt: skip


def _colliding(values: np.ndarray) -> np.ndarray:
    """uid_hashes, except that user-1 and user-2 (and the absent ghost-1) share one hash."""
    hashed = uid_hashes(values)
    same = np.isin(values, ["user-1", "user-2", "ghost-1"])
    hashed[same] = np.uint64(12345)
    return hashed


def test_a_chunk_looked_up_in_the_index_gets_exactly_the_state_rows():
    chunks = _state(5000)
    exact = _fingerprint_frame(chunks)
    loaded_exactly: list[list[str]] = []

    def load_exact(uids: pd.Series) -> pd.DataFrame:
        loaded_exactly.append(sorted(uids))
        return exact.loc[exact.index.isin(uids)]

    index = FingerprintIndex(iter(chunks), _colliding)
    assert index.users == 5000
    wanted = pd.Series(["user-0", "user-1", "user-2", "user-97", "user-61", "user-4999", "ghost-1", "nobody"])
    found = index.frame(wanted, load_exact)
    expected = exact.loc[exact.index.isin(wanted)]
    pd.testing.assert_frame_equal(found.sort_index(), expected.sort_index(), check_index_type=False)
    # the uids of the shared hash were read by their text, the absent one among them finds nothing
    assert loaded_exactly == [["ghost-1", "user-1", "user-2"]]


def test_every_user_of_a_big_state_in_random_chunks():
    chunks = _state(20_000)
    exact = _fingerprint_frame(chunks)
    index = FingerprintIndex(iter(chunks), uid_hashes)
    uids = np.array(exact.index, dtype=object)
    np.random.default_rng(1).shuffle(uids)
    for start in range(0, len(uids), 3000):
        wanted = pd.Series([*uids[start : start + 3000], "absent-user"], dtype=object)
        found = index.frame(wanted, lambda _: exact.iloc[:0])
        expected = exact.loc[exact.index.isin(wanted)]
        pd.testing.assert_frame_equal(found.sort_index(), expected.sort_index(), check_index_type=False)


def test_gathered_joins_batches_in_order_across_blocks(monkeypatch):
    import numpy as np

    from contentstack_assets.engine.state import fingerprint_read
    from contentstack_assets.engine.state.fingerprint_read import gathered

    batches = [np.array([3, 1], dtype=np.int64), np.array([], dtype=np.int64), np.array([7], dtype=np.int64)]
    assert gathered(iter(batches), np.int64).tolist() == [3, 1, 7]
    assert gathered([], np.uint64).dtype == np.uint64 and len(gathered([], np.uint64)) == 0
    monkeypatch.setattr(fingerprint_read, "GATHER_BLOCK", 4)
    for sizes in ([4], [3, 5, 2], [9], [1] * 8, [4, 4, 1]):  # a block filled exactly, a batch over three
        values = np.arange(sum(sizes), dtype=np.int64)
        parts = np.split(values, np.cumsum(sizes)[:-1])
        assert gathered(iter(parts), np.int64).tolist() == values.tolist()
