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


def test_a_scan_that_fails_midway_stops_its_read_ahead(tmp_path, monkeypatch):
    """A failure while the chunks are compared (here: the comparison itself) reaches the caller; the
    read-ahead thread, left waiting to hand over its next chunk, would hold the run forever (the pool waits
    for its threads) unless the scan closes it."""
    import threading
    import types

    import numpy as np
    import pandas as pd
    import sqlalchemy as sa

    from contentstack_assets.engine import digests
    from contentstack_assets.engine.source.digests import DIGEST
    from contentstack_assets.spec import load_spec
    from tests.helpers import users_sync, write_spec

    spec = write_spec(tmp_path / "syncs.yaml", [users_sync("sqlite:///unused.db", "http://127.0.0.1:9")])
    sync = load_spec(str(spec)).get("users")
    read = _Read(1000)

    class Reader:
        def read_digest_chunks(self, prefix, shard=None):
            for index in read:
                yield pd.DataFrame({"user_uid": [f"u{index}"], DIGEST: np.array([index], dtype=np.int64)})

    store = types.SimpleNamespace(
        engine=sa.create_engine(f"sqlite:///{tmp_path / 'state.db'}"),
        key_of=lambda sync: "users",
        has_source_digests=lambda key: True,
        load_source_digest_set=lambda key: np.array([1, 2], dtype=np.int64),
    )

    def fail(*args, **kwargs):
        raise RuntimeError("the comparison failed")

    monkeypatch.setattr(digests, "_matched", fail)
    outcome: list[BaseException] = []

    def scan() -> None:
        try:
            digests.read_changed(sync, store, reader=Reader(), log=lambda line: None)
        except BaseException as error:  # noqa: BLE001 - what the caller sees
            outcome.append(error)

    caller = threading.Thread(target=scan, daemon=True)
    caller.start()
    caller.join(timeout=30)
    assert not caller.is_alive(), "the run hung on its read-ahead thread"
    assert [str(error) for error in outcome] == ["the comparison failed"] and read.closed
