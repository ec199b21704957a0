"""Which users a shard of a users sync owns (`shards: N`), its share of the sync's `concurrency`, and how the
sync state names its run. No Dagster here: syncs/shards.py builds the graph of shard pushes on these.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import numpy as np
import pandas as pd

from contentstack_assets.engine.frames import ChunkedFrame, Frame, collect
from contentstack_assets.engine.mapping import REJECTION, UID


def shard_of(uids: Iterable[str], shards: int) -> np.ndarray:
    """The shard of each uid: CRC-32 of its UTF-8 bytes modulo `shards` (stable everywhere, unlike hash())."""
    return np.fromiter((zlib.crc32(uid.encode()) % shards for uid in uids), dtype=np.int64)


def shard_rows(mapped: Frame, index: int, shards: int) -> Frame:
    """The rows of `mapped_attributes` shard `index` pushes: its valid users, plus every rejected row for
    shard 0 (rejections are recorded once per run, and a rejected row may have no uid). Of a chunked frame,
    chunk by chunk: the shard's rows are chunked in turn (the caller removes them when done)."""
    if isinstance(mapped, ChunkedFrame):
        rows = collect(_rows_of(chunk, index, shards) for chunk in mapped.chunks())
        rows.attrs = dict(mapped.attrs)
        return rows
    return _rows_of(mapped, index, shards)


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
