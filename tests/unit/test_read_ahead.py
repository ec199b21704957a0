"""The digests' read hands its chunks over from a thread of its own (engine/digests.py `_read_ahead`): every
chunk in order, a failure raised where the chunks are used, and a use stopped early stops the thread and
closes the read (its database connection)."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from contentstack_assets.engine.digests import _read_ahead


class _Read:
    def __init__(self, items: int, fail_at: int | None = None):
        self.items, self.fail_at, self.closed, self.made = items, fail_at, False, 0

    def __iter__(self):
        return self._generate()

    def _generate(self):
        try:
            for index in range(self.items):
                if index == self.fail_at:
                    raise RuntimeError(f"the database went away at chunk {index}")
                self.made += 1
                yield index
        finally:
            self.closed = True


def test_every_chunk_comes_in_order():
    read = _Read(50)
    with ThreadPoolExecutor(1) as pool:
        assert list(_read_ahead(pool, iter(read))) == list(range(50))
    assert read.closed


def test_a_failure_of_the_read_is_raised_where_the_chunks_are_used():
    read = _Read(10, fail_at=3)
    seen = []
    with ThreadPoolExecutor(1) as pool, pytest.raises(RuntimeError, match="at chunk 3"):
        for item in _read_ahead(pool, iter(read)):
            seen.append(item)
    assert seen == [0, 1, 2] and read.closed


def test_a_use_stopped_early_stops_the_read():
    read = _Read(1000)
    with ThreadPoolExecutor(1) as pool:
        chunks = _read_ahead(pool, iter(read), depth=1)
        assert next(chunks) == 0
        chunks.close()
    assert read.closed and read.made <= 3  # one in use, one waiting, one being handed over
