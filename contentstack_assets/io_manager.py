"""The IO manager of the frames between a sync's steps: pickled per asset and partition range, handed over
in memory to the next step in the same process, with a codec that packs text, time and number columns.
"""

import datetime as dt
import os
import pickle
import tempfile
import threading
import time
from collections import OrderedDict
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

FRAMES_IO_MANAGER_KEY = "contentstack_frames"  # our own key: a host project's `io_manager` stays its own


class FrameIOManager(dg.ConfigurableIOManager):
    """Pickles DataFrames per asset and per partition range.

    Dagster's file IO managers store one file per partition and refuse an output that spans a range; a
    single-run backfill hands one frame for the whole range from step to step, so it is stored under the
    range (`2024-01-01...2024-03-31`) and read back by the step that asks for the same range.

    When the next step runs in the same process (the in-process executor, `execute_in_process`, a sharded
    push's ops on one worker), it takes the frame just stored from memory instead of reading the file back:
    the file is still written (for re-execution, a later run of the next asset alone, other processes), and
    the frame in memory is only handed over while the file is still the one it was stored as.

    Each store also removes the asset's frames of other ranges older than `keep_days` (a daily schedule and
    backfills would otherwise pile them up); to run a downstream asset alone on such an old range, materialize
    its upstream asset for that range again.
    """

    base_dir: str | None = None
    keep_days: float = 7.0

    def _path(self, context: dg.OutputContext | dg.InputContext) -> Path:
        base = (
            Path(self.base_dir)
            if self.base_dir
            else Path(os.environ.get("DAGSTER_HOME", ".contentstack")) / "frames"
        )
        if context.has_asset_partitions:
            key_range = context.asset_partition_key_range
            scope = (
                key_range.start
                if key_range.start == key_range.end
                else f"{key_range.start}...{key_range.end}"
            )
        else:
            scope = "all"
        return base.joinpath(*context.asset_key.path) / f"{scope}.pkl"

    def handle_output(self, context: dg.OutputContext, obj: pd.DataFrame) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        # a temporary file of this writer's own: two runs storing the same asset and range at once (a backfill
        # next to a schedule tick) must not write into, or rename away, each other's
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as file:
                pickle.dump(_pack(obj), file, protocol=pickle.HIGHEST_PROTOCOL)
            identity = _JustStored.identity(temporary)  # kept by the rename
            temporary.replace(path)  # a reader never sees half a file; the last store wins
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _just_stored.put(path, obj, identity)
        _remove_older(path, self.keep_days)

    def load_input(self, context: dg.InputContext) -> pd.DataFrame:
        path = self._path(context)
        if not path.exists():
            raise dg.Failure(
                description=f"no stored output of {context.asset_key.to_user_string()} for this partition range "
                f"({path.stem}): materialize it with the same partitions first",
                allow_retries=False,
            )
        kept = _just_stored.take(path)
        if kept is not None:
            return kept
        with path.open("rb") as file:
            return _unpack(pickle.load(file))


def _remove_older(path: Path, keep_days: float) -> None:
    """Remove the frames next to `path` (the same asset's other ranges) last written over `keep_days` ago."""
    cutoff = time.time() - keep_days * 86400
    # and temporary files that old are left by writers that died (a file being written is younger)
    for other in [*path.parent.glob("*.pkl"), *path.parent.glob(".*.tmp")]:
        try:
            if other != path and other.stat().st_mtime < cutoff:
                other.unlink()
        except OSError:  # another run removed or replaced it meanwhile
            continue


class _JustStored:
    """The frames this process stored last, each handed over once to a step that loads the same file
    unchanged since (its identity: inode, size, modification time). A few at most: a frame nobody loads
    is let go when newer ones come."""

    def __init__(self, keep: int = 4):
        self._frames: OrderedDict[Path, tuple[tuple[int, int, int], object]] = OrderedDict()
        self._keep = keep
        self._lock = threading.Lock()

    @staticmethod
    def identity(path: Path) -> tuple[int, int, int]:
        stat = path.stat()
        return stat.st_ino, stat.st_size, stat.st_mtime_ns

    def put(self, path: Path, obj: object, identity: tuple[int, int, int]) -> None:
        """`obj` was stored at `path` as the file of this identity (taken before the rename: a store by
        another process may replace the file right after it)."""
        with self._lock:
            self._frames.pop(path, None)
            self._frames[path] = (identity, obj)
            while len(self._frames) > self._keep:
                self._frames.popitem(last=False)

    def take(self, path: Path) -> object | None:
        with self._lock:
            stored = self._frames.pop(path, None)
        if stored is None:
            return None
        identity, obj = stored
        try:
            return obj if self.identity(path) == identity else None
        except OSError:
            return None


_just_stored = _JustStored()


# -- frames on disk ----------------------------------------------------------------------------------
# A million-row frame of raw source values is mostly object columns of Python strings (and, from PostgreSQL,
# datetimes and dates), which pickle one object at a time. A column whose values are all `str` (or None) is
# stored instead as one UTF-8 text, the values joined by NUL, plus a null mask; one of naive datetimes or of
# dates as a numpy datetime64 array plus a null mask; one of Python ints or of Python floats (no None) as one
# numpy array: several times faster both ways, and the values come back identical (same type, same value; a
# str subclass comes back a str). Any other column, one holding a NUL or a time zone, is pickled as it is.
_PACKED = "contentstack_assets.frame/1"
_SEPARATOR = "\x00"


def _pack(obj: object) -> object:
    if not isinstance(obj, pd.DataFrame) or not obj.columns.is_unique:
        return obj
    columns = []
    for name in obj.columns:
        column = obj[name]
        kind, packed = _pack_objects(column.to_numpy()) if column.dtype == object else ("as-is", None)
        columns.append((name, kind, packed) if packed is not None else (name, "as-is", column))
    return {"format": _PACKED, "index": obj.index, "columns": columns, "attrs": obj.attrs}


def _pack_objects(values: np.ndarray) -> tuple[str, object]:
    present = np.not_equal(values, None)  # elementwise in C
    packed_text = _pack_text(values, present)
    if packed_text is not None:
        return "text", packed_text
    kinds = set(map(type, values.tolist()))
    if kinds <= {dt.datetime, dt.date, type(None)} and len(kinds - {type(None)}) == 1:
        return "time", _pack_times(values, kinds, present)
    if kinds in ({int}, {float}):  # Python numbers, no None: one numpy array, the same numbers back
        try:
            return "number", values.astype(np.int64 if kinds == {int} else np.float64)
        except OverflowError:  # an int beyond 64 bits
            return "as-is", None
    return "as-is", None


def _pack_times(
    values: np.ndarray, kinds: set[type], present: np.ndarray
) -> tuple[np.ndarray, np.ndarray, str] | None:
    """Naive datetimes as datetime64[us] (their exact resolution), dates as datetime64[D]: both come back
    as the same `datetime.datetime` / `datetime.date` objects. Time-zoned values are pickled as they are."""
    texts = values[present]
    unit = "us" if dt.datetime in kinds else "D"
    if unit == "us" and any(value.tzinfo is not None or value.fold for value in texts.tolist()):
        return None
    try:
        stamps = pd.to_datetime(texts).to_numpy()  # in C: numpy's own object conversion is ~20x slower
    except (ValueError, OverflowError):  # beyond what pandas' datetimes hold (year 1, 9999...)
        return None
    return stamps, present, unit


def _pack_text(values: np.ndarray, present: np.ndarray) -> tuple[str, np.ndarray] | None:
    """The values joined by NUL, if every one that is not None is text (a str subclass comes back a str)
    and none holds a NUL itself."""
    texts = values if present.all() else values[present]
    try:
        joined = _SEPARATOR.join(texts.tolist())  # refuses anything but text, in C
    except TypeError:
        return None
    if joined.count(_SEPARATOR) != max(len(texts) - 1, 0):
        return None  # a value holds the separator itself
    return joined, present


def _unpack(obj: object) -> object:
    if not (isinstance(obj, dict) and obj.get("format") == _PACKED):
        return obj  # anything else, or a frame stored by an earlier version
    data = {}
    for name, kind, payload in obj["columns"]:
        if kind == "as-is":
            data[name] = payload
            continue
        if kind == "number":
            numbers = np.empty(len(payload), dtype=object)
            numbers[:] = payload.tolist()
            data[name] = pd.Series(numbers, index=obj["index"], dtype=object, copy=False)
            continue
        values = np.full(len(payload[1]), None, dtype=object)
        if kind == "time":
            stamps, present, unit = payload
            index = pd.DatetimeIndex(stamps)
            values[present] = index.to_pydatetime() if unit == "us" else index.date
        else:
            joined, present = payload
            if present.any():
                values[present] = joined.split(_SEPARATOR)
        data[name] = pd.Series(values, index=obj["index"], dtype=object, copy=False)
    frame = pd.DataFrame(data, index=obj["index"], copy=False)
    frame.attrs.update(obj["attrs"])
    return frame
