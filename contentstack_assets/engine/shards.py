"""Which users a shard of a users sync owns (`shards: N`), its share of the sync's `concurrency`, and how the
sync state names its run. No Dagster here: syncs/shards.py builds the graph of shard pushes on these.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import numpy as np
import pandas as pd

from contentstack_assets.engine.digests import DIGEST_UNCHANGED, SOURCE_ROWS
from contentstack_assets.engine.frames import ChunkedFrame, Frame, ShardedFrame, chunks_of, collect
from contentstack_assets.engine.mapping import REJECTION, UID
from contentstack_assets.engine.source.shards import shard_of

__all__ = ["concurrency_shares", "rejected_uids", "shard_label", "shard_of", "shard_rows"]
# what a shard's read by digests says of its own slice (the whole read's sums are the sharded frame's)
_SLICE_ATTRS = (SOURCE_ROWS, DIGEST_UNCHANGED)


def shard_rows(mapped: Frame | ShardedFrame, index: int, shards: int, *, own: Frame | None = None) -> Frame:
    """The rows of `mapped_attributes` shard `index` pushes: its valid users, plus every rejected row for
    shard 0 (rejections are recorded once per run, and a rejected row may have no uid). Of a read each shard
    made of its own users (`ShardedFrame`), its own part, with what its read by digests says of its slice
    (`SOURCE_ROWS`, `DIGEST_UNCHANGED`, engine/digests.py); else (a read in one piece) the rows whose uid
    hashes to it. `own`: the shard's slice read and mapped again whole, in place of its part (a full resync
    after a read by digests; the caller refuses a read by digests of another number of shards). Chunk by chunk: the shard's rows are chunked in turn (the caller removes them
    when done)."""
    if isinstance(mapped, ShardedFrame) and len(mapped.parts) == shards:
        part = mapped.parts[index] if own is None else own
        chunks = (chunk.loc[chunk[REJECTION].isna()] for chunk in chunks_of(part))
        if index == 0:  # then every part's rejected rows, a chunk at a time
            chunks = itertools.chain(chunks, _rejected_of(mapped))
        rows = collect(chunks)
        rows.attrs = {key: value for key, value in mapped.attrs.items() if key not in _SLICE_ATTRS}
        if own is not None:  # its read time, and no rows left unread
            rows.attrs.update((key, value) for key, value in own.attrs.items() if key not in _SLICE_ATTRS)
        rows.attrs.update((key, part.attrs[key]) for key in _SLICE_ATTRS if key in part.attrs)
        return rows
    if isinstance(mapped, (ChunkedFrame, ShardedFrame)):  # a sharded read of another number of shards
        rows = collect(_rows_of(chunk, index, shards) for chunk in mapped.chunks())
        rows.attrs = dict(mapped.attrs)
        return rows
    return _rows_of(mapped, index, shards)


def rejected_uids(mapped: Frame | ShardedFrame) -> list[str]:
    """The uids of every rejected row of a read (shard 0 records them; the other shards count them as still
    in the source)."""
    chunks = _rejected_of(mapped) if isinstance(mapped, ShardedFrame) else chunks_of(mapped)
    return [uid for chunk in chunks for uid in chunk.loc[chunk[REJECTION].notna(), UID].dropna().tolist()]


def _rejected_of(mapped: ShardedFrame) -> Iterator[pd.DataFrame]:
    """Every part's rejected rows: kept apart by the mapping, else (a frame stored before) from the parts."""
    if mapped.rejected:
        for part in mapped.rejected:
            yield from (chunk for chunk in chunks_of(part) if len(chunk))
        return
    for chunk in mapped.chunks():
        rejected = chunk.loc[chunk[REJECTION].notna()]
        if len(rejected):
            yield rejected


def _rows_of(mapped: pd.DataFrame, index: int, shards: int) -> pd.DataFrame:
    rejected = mapped[REJECTION].notna().to_numpy()
    owner = np.zeros(len(mapped), dtype=np.int64)
    owner[~rejected] = shard_of(mapped.loc[~rejected, UID], shards)
    keep = (owner == index) & ~rejected
    if index == 0:
        keep |= rejected
    return mapped.loc[keep]


def concurrency_shares(concurrency: int, shards: int) -> list[int]:
    """Requests in flight per shard, adding up to the sync's `concurrency` (the first shards get the rest)."""
    if shards > concurrency:
        raise ValueError(f"{shards} shards need a concurrency of at least {shards}, got {concurrency}")
    base, rest = divmod(concurrency, shards)
    return [base + (1 if index < rest else 0) for index in range(shards)]


def shard_label(index: int, shards: int) -> str:
    """How the sync state names shard `index` (from 0) of a run: `shard-2-of-4` for the second of four."""
    return f"shard-{index + 1}-of-{shards}"
