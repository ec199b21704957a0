"""The columnar read behind `load_fingerprints`: up to millions of (user uid, fingerprint, failed runs) rows
into one DataFrame, a chunk at a time, with every 64-bit fingerprint exact.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator, Sequence
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


def _fingerprint_chunks(
    connection: sa.Connection, statement: sa.Select
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(user_uid, fingerprint, fingerprint is NULL, failed_runs) column arrays of a statement's rows, a chunk
    at a time, from the driver's plain tuples: for columns that need no result processing (text and integers)
    this skips building a SQLAlchemy Row per row. Fingerprints go from Python ints to int64 directly (a NULL
    as 0 under the mask), never through a float, so 64-bit hashes stay exact."""
    # not streamed: a streaming result prefetches rows into its own buffer, which the cursor no longer holds
    result = connection.execution_options(stream_results=False).execute(statement)
    try:
        cursor = result.cursor
        while rows := cursor.fetchmany(_FETCH_CHUNK):
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
