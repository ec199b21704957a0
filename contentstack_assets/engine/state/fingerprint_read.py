"""The columnar read behind `load_fingerprints`: up to millions of (user uid, fingerprint, failed runs) rows
into one DataFrame, a chunk at a time, with every 64-bit fingerprint exact.
"""

from __future__ import annotations

import gc
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import pandas as pd
import sqlalchemy as sa

try:  # the C transposition of row tuples to an object array, which pandas uses for its own frames
    from pandas._libs.lib import to_object_array_tuples
except ImportError:  # pragma: no cover - a pandas without it
    to_object_array_tuples = None

_FETCH_CHUNK = 100_000


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large result is read: the rows are tuples of strings and
    integers, which hold no cycles, but creating a million of them triggers its passes over all of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


GATHER_BLOCK = 1 << 22  # items of one block of `gathered` (32 MiB of int64: the C library maps it apart)


def gathered(batches: Iterable[np.ndarray], dtype: type) -> np.ndarray:
    """The batches as one array, written into blocks of `GATHER_BLOCK` items as they come (a block's pages
    are only touched as it fills), then joined into one, each block let go once copied: the peak is about
    the array and one block. (Batches held until the end and freed in pieces stay in the process's heap;
    numpy's `resize` fills every page it grows by with zeros.)"""
    blocks = [np.empty(GATHER_BLOCK, dtype=dtype)]
    at = 0  # items in the last block
    for batch in batches:
        while len(batch):
            if at == GATHER_BLOCK:
                blocks.append(np.empty(GATHER_BLOCK, dtype=dtype))
                at = 0
            fits = min(len(batch), GATHER_BLOCK - at)
            blocks[-1][at : at + fits] = batch[:fits]
            at += fits
            batch = batch[fits:]
    if len(blocks) == 1:
        return blocks[0][:at]  # its untouched pages cost nothing
    joined = np.empty(GATHER_BLOCK * (len(blocks) - 1) + at, dtype=dtype)
    blocks.reverse()
    for start in range(0, len(joined), GATHER_BLOCK):
        block = blocks.pop()
        joined[start : start + GATHER_BLOCK] = block[: len(joined) - start]
        del block
    return joined


def plain_rows(result: sa.CursorResult, size: int) -> Iterator[list[tuple]]:
    """A streamed result's rows as the driver's plain tuples, `size` at a time (no SQLAlchemy Row made per
    row), with the rows SQLAlchemy may already have taken into its own buffer first."""
    buffer = getattr(result.cursor_strategy, "_rowbuffer", None)
    first = [tuple(row) for row in buffer] if buffer else []
    if buffer:
        buffer.clear()
    while rows := first + result.cursor.fetchmany(size - len(first)):
        first = []
        yield rows


def _fingerprint_chunks(
    connection: sa.Connection, statement: sa.Select, *, stream: bool = False
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(user_uid, fingerprint, fingerprint is NULL, failed_runs) column arrays of a statement's rows, a chunk
    at a time, from the driver's plain tuples: for columns that need no result processing (text and integers)
    this skips building a SQLAlchemy Row per row. Fingerprints go from Python ints to int64 directly (a NULL
    as 0 under the mask), never through a float, so 64-bit hashes stay exact."""
    # `stream`: a server-side cursor (the driver holds one chunk, not the whole result), whose first rows
    # SQLAlchemy may already have taken into its own buffer
    result = connection.execution_options(stream_results=stream).execute(statement)
    try:
        for rows in plain_rows(result, _FETCH_CHUNK):
            table = _object_table(rows)
            fingerprints = table[:, 1]
            null = pd.isna(fingerprints)
            if null.any():
                fingerprints[null] = 0
            yield (
                table[:, 0],  # a view: the concatenation copies it, and lets the table go
                fingerprints.astype(np.int64),
                np.asarray(null, dtype=bool),
                table[:, 2].astype(np.int64),
            )
    finally:
        result.close()


def _object_table(rows: list[tuple]) -> np.ndarray:
    """Row tuples as a 2-D object array, transposed in C by pandas where it can."""
    if to_object_array_tuples is not None:
        return to_object_array_tuples(rows)
    table = np.empty((len(rows), len(rows[0])), dtype=object)
    table[:] = rows
    return table


def _fingerprint_frame(
    chunks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> pd.DataFrame:
    def column(index: int, dtype: type) -> np.ndarray:
        parts = [chunk[index] for chunk in chunks]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)

    # built column by column: a frame of rows would infer float64 for fingerprints next to a NULL one and
    # round 64-bit hashes, which then never match
    return pd.DataFrame(
        {
            "fingerprint": pd.arrays.IntegerArray(column(1, np.int64), column(2, bool)),
            "failed_runs": column(3, np.int64),
        },
        index=pd.Index(column(0, object), name="user_uid", dtype=object),
        copy=False,  # the columns are fresh arrays of their own
    )


class FingerprintIndex:
    """The state's fingerprints of a sync too big to read whole, 16 bytes a user: each user's uid as its
    64-bit hash (`uid_hashes`) and its fingerprint, in 16 sorted buckets by the hash's top bits (sorted one
    bucket at a time, so that building it holds little more than itself). The few users not plainly
    delivered (a failure counted, a delivery unconfirmed) and any uid whose hash another user of the state
    shares are kept by their text instead (`exact`), and looked up exactly.

    `frame(uids)` is what `load_fingerprints(key, uids)` gives for those users (a chunk's), from memory: a
    uid of the chunk that is not in the state could take a state user's entry only by sharing its 64-bit
    hash, and would then still be sent unless its row also maps to that user's exact fingerprint."""

    BUCKET_BITS = 4

    def __init__(
        self,
        chunks: Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
        hash_uids,
        keep=None,
    ):
        """`keep(uids)`: which users of the state to index (a shard's own), else all."""
        self._hash_uids = hash_uids
        buckets: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in range(1 << self.BUCKET_BITS)]
        exact: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        shift = np.uint64(64 - self.BUCKET_BITS)
        for uids, fingerprints, null, failed in chunks:
            if keep is not None:
                kept = np.asarray(keep(uids), dtype=bool)
                uids, fingerprints, null, failed = uids[kept], fingerprints[kept], null[kept], failed[kept]
            special = null | (failed > 0)
            if special.any():
                exact.append((uids[special], fingerprints[special], null[special], failed[special]))
            plain = ~special
            hashed, prints = self._hash_uids(uids[plain]), fingerprints[plain]
            bucket_of = (hashed >> shift).astype(np.intp)
            for bucket in np.unique(bucket_of):
                mine = bucket_of == bucket
                buckets[bucket].append((hashed[mine], prints[mine]))
        self._hashes: list[np.ndarray] = []
        self._prints: list[np.ndarray] = []
        for parts in buckets:
            hashed = np.concatenate([part[0] for part in parts]) if parts else np.empty(0, np.uint64)
            prints = np.concatenate([part[1] for part in parts]) if parts else np.empty(0, np.int64)
            parts.clear()
            order = np.argsort(hashed, kind="stable")
            self._hashes.append(hashed[order])
            self._prints.append(prints[order])
        self.users = sum(len(hashes) for hashes in self._hashes) + sum(len(part[0]) for part in exact)
        # uids whose hash two plain users share: looked up by text too (`_shared`)
        self._shared = [np.unique(hashes[1:][hashes[1:] == hashes[:-1]]) for hashes in self._hashes]
        self._exact = _fingerprint_frame(exact)
        self._shift = shift

    def frame(self, uids: pd.Series, load_exact) -> pd.DataFrame:
        """user_uid -> fingerprint, failed_runs of those of `uids` the state holds; `load_exact(uids)`: the
        state's rows of uids (`load_fingerprints(by_uid=True)`), for those whose hash the index shares."""
        values = np.asarray(uids, dtype=object)
        hashed = self._hash_uids(values)
        bucket_of = (hashed >> self._shift).astype(np.intp)
        found_uids, found_prints, shared_uids = [], [], []
        for bucket in np.unique(bucket_of):
            mine = np.flatnonzero(bucket_of == bucket)
            hashes, prints = self._hashes[bucket], self._prints[bucket]
            at = np.searchsorted(hashes, hashed[mine])
            inside = at < len(hashes)
            hit = np.zeros(len(mine), dtype=bool)
            hit[inside] = hashes[at[inside]] == hashed[mine][inside]
            shared = np.isin(hashed[mine], self._shared[bucket]) if len(self._shared[bucket]) else None
            if shared is not None and shared.any():
                shared_uids.append(values[mine[shared]])
                hit &= ~shared
            found_uids.append(values[mine[hit]])
            found_prints.append(prints[at[hit]])
        found = pd.DataFrame(
            {
                "fingerprint": pd.arrays.IntegerArray(
                    np.concatenate(found_prints) if found_prints else np.empty(0, np.int64),
                    np.zeros(sum(map(len, found_prints)), dtype=bool),
                ),
                "failed_runs": np.zeros(sum(map(len, found_prints)), dtype=np.int64),
            },
            index=pd.Index(np.concatenate(found_uids) if found_uids else [], name="user_uid", dtype=object),
        )
        parts = [found, self._exact.loc[self._exact.index.isin(values)]]
        if shared_uids:
            parts.append(load_exact(pd.Series(np.concatenate(shared_uids), dtype=object)))
        frame = pd.concat(parts)
        return frame[~frame.index.duplicated(keep="last")]
