"""The scan's comparison of a chunk's digests with the state's (engine/digests.py): which rows may be left
unread, and how many rows hash to each of the state's digests, against numpy's own set operations."""

from __future__ import annotations

import numpy as np

from contentstack_assets.engine.digests import SEEN_MAX, _count, _matched


def test_rows_found_and_counted_as_numpy_finds_them():
    rng = np.random.default_rng(19)
    for _ in range(500):
        known = np.unique(rng.integers(-50, 50, rng.integers(0, 40)))
        digests = rng.integers(-60, 60, rng.integers(0, 50))
        same, at = _matched(digests, known)
        assert same.tolist() == np.isin(digests, known).tolist()
        seen = np.zeros(len(known), dtype=np.uint8)
        _count(seen, at)
        _count(seen, at)  # a second chunk adds to the first
        assert seen.tolist() == [min(2 * int((digests == k).sum()), SEEN_MAX) for k in known]


def test_a_digest_seen_past_a_byte_stays_at_its_top():
    seen = np.zeros(1, dtype=np.uint8)
    for _ in range(3):
        _count(seen, _matched(np.full(200, 7), np.array([7]))[1])
    assert seen.tolist() == [SEEN_MAX]
