"""Frames on disk: the codec of the frames handed between a sync's steps, and the chunked frame of a read
too big for one piece (`ChunkedFrame`: its chunks in files, read back one at a time)."""

from __future__ import annotations

import datetime as dt
import os
import pickle
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pandas as pd

# -- frames on disk ----------------------------------------------------------------------------------
# A million-row frame of raw source values is mostly object columns of Python strings (and, from PostgreSQL,
# datetimes and dates), which pickle one object at a time. A column whose values are all `str` (or None) is
# stored instead as one UTF-8 text, the values joined by NUL, plus a null mask; one of naive datetimes or of
# dates as a numpy datetime64 array plus a null mask; one of Python ints or of Python floats (no None) as one
# numpy array: several times faster both ways, and the values come back identical (same type, same value; a
# str subclass comes back a str). Any other column, one holding a NUL or a time zone, is pickled as it is.
_PACKED = "contentstack_assets.frame/1"
_SEPARATOR = "\x00"


def pack_frame(obj: object) -> object:
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


def unpack_frame(obj: object) -> object:
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


# -- a frame in chunks ------------------------------------------------------------------------------
# A read of more rows than one chunk (`source.chunk_size`) never lives in memory whole: each chunk goes to a
# file as soon as it is read (or mapped), and the next step reads them back one at a time. A read of one chunk
# or fewer stays the plain frame it always was.
HASHES_FILE = (
    "hashes.u64"  # beside the chunks: a hash per row made as they were written, appended chunk by chunk
)
CHUNKS_DIR = "CONTENTSTACK_CHUNKS_DIR"  # where chunks are written before their step's output is stored


class ChunkedFrame:
    """A frame stored as chunk files (`000001.pkl`, ...) in one directory, with what the whole frame says of
    itself: its length, columns and `attrs`. `chunks()` reads them back one at a time, each a frame of the
    same columns carrying the `attrs` (`to_frame()` is the whole frame, for what cannot work chunk by chunk)."""

    def __init__(
        self,
        directory: Path,
        lengths: list[int],
        columns: list[str],
        attrs: dict | None = None,
        extra: pd.DataFrame | None = None,
    ):
        self.directory = Path(directory)
        self.lengths = list(lengths)
        self.columns = list(columns)
        self.attrs: dict = dict(attrs or {})
        self.extra = extra  # a last chunk held in memory (rows read again by uid for a resend)

    def __len__(self) -> int:
        return sum(self.lengths) + (0 if self.extra is None else len(self.extra))

    def with_chunk(self, rows: pd.DataFrame) -> ChunkedFrame:
        """The same chunks followed by `rows`, held in memory (the stored chunks are left as they are)."""
        extra = rows if self.extra is None else pd.concat([self.extra, rows], ignore_index=True)
        return ChunkedFrame(self.directory, self.lengths, self.columns, self.attrs, extra)

    def __contains__(self, column: object) -> bool:
        return column in self.columns

    def __repr__(self) -> str:
        return f"ChunkedFrame({len(self)} rows in {len(self.lengths)} chunks at {self.directory})"

    def hashes(self) -> np.ndarray | None:
        """The 64-bit hashes the read made of its chunks (`collect(hashes=)`), 8 bytes a row, or None."""
        path = self.directory / HASHES_FILE
        return np.fromfile(path, dtype=np.uint64) if path.exists() else None

    def _file(self, index: int) -> Path:
        return self.directory / f"{index + 1:06d}.pkl"

    def chunks(self) -> Iterator[pd.DataFrame]:
        for index in range(len(self.lengths)):
            try:
                with self._file(index).open("rb") as file:
                    chunk = unpack_frame(pickle.load(file))
            except FileNotFoundError as error:
                raise FileNotFoundError(
                    f"chunk {index + 1} of {len(self.lengths)} of a stored frame is gone from {self.directory} "
                    "(a newer store of the same range replaced it after its run had finished, or it was removed): "
                    "run the step again"
                ) from error
            chunk.attrs = dict(self.attrs)
            yield chunk
        if self.extra is not None:
            extra = self.extra.copy(deep=False)
            extra.attrs = dict(self.attrs)
            yield extra

    def column(self, name: str) -> pd.Series:
        """One column of every chunk, as one series (the uids of the whole read, for who left)."""
        parts = [chunk[name] for chunk in self.chunks()]
        return pd.concat(parts, ignore_index=True) if parts else pd.Series([], dtype=object)

    def to_frame(self) -> pd.DataFrame:
        frame = pd.concat(list(self.chunks()), ignore_index=True)
        frame.attrs = dict(self.attrs)
        return frame

    def moved_to(self, directory: Path) -> ChunkedFrame:
        """The same chunks moved to `directory` (replacing what is there); already there when a step that
        moved them is tried again."""
        directory = Path(directory)
        if not self.directory.exists() and directory.exists():
            return ChunkedFrame(directory, self.lengths, self.columns, self.attrs, self.extra)
        if directory.exists():
            shutil.rmtree(directory, ignore_errors=True)
        directory.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(self.directory), str(directory))
        return ChunkedFrame(directory, self.lengths, self.columns, self.attrs, self.extra)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


class ShardedFrame:
    """A read of a sharded sync (`shards: N`) as each shard read it: part `i` holds the rows of shard `i`'s
    users (a frame or a `ChunkedFrame`), `attrs` what the whole read says of itself and, once mapped,
    `rejected` each part's rejected rows apart (shard 0 records them all, once per run)."""

    def __init__(
        self,
        parts: list[pd.DataFrame | ChunkedFrame],
        attrs: dict | None = None,
        rejected: list[pd.DataFrame | ChunkedFrame] | None = None,
    ):
        self.parts = list(parts)
        self.attrs: dict = dict(attrs or {})
        self.rejected = list(rejected or [])

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __repr__(self) -> str:
        return f"ShardedFrame({len(self)} rows in {len(self.parts)} shards)"

    def chunks(self) -> Iterator[pd.DataFrame]:
        for part in self.parts:
            yield from chunks_of(part)

    def column(self, name: str) -> pd.Series:
        """One column of every part, as one series (the uids of the whole read, for who left)."""
        series = [chunk[name] for chunk in self.chunks()]
        return pd.concat(series, ignore_index=True) if series else pd.Series([], dtype=object)

    def moved_to(self, directory: Path) -> ShardedFrame:
        """The same parts, those in chunk files moved to `directory/<shard>`."""

        def moved(part: Frame, name: str) -> Frame:
            return part.moved_to(Path(directory) / name) if isinstance(part, ChunkedFrame) else part

        return ShardedFrame(
            [moved(part, str(index)) for index, part in enumerate(self.parts)],
            self.attrs,
            [moved(part, f"rejected-{index}") for index, part in enumerate(self.rejected)],
        )

    def directories(self) -> list[Path]:
        return [part.directory for part in [*self.parts, *self.rejected] if isinstance(part, ChunkedFrame)]


Frame = pd.DataFrame | ChunkedFrame


def chunks_of(frame: Frame) -> Iterator[pd.DataFrame]:
    """The chunks of a frame: a plain frame is its own one chunk."""
    if isinstance(frame, ChunkedFrame):
        yield from frame.chunks()
    else:
        yield frame


def whole(frame: Frame) -> pd.DataFrame:
    """The frame in one piece (what cannot work chunk by chunk)."""
    return frame.to_frame() if isinstance(frame, ChunkedFrame) else frame


@contextmanager
def removed_after(frame: Frame, unless: Frame | None = None) -> Iterator[None]:
    """The chunks of a frame made for one step only (not stored as any step's output), removed once used."""
    try:
        yield
    finally:
        if isinstance(frame, ChunkedFrame) and frame is not unless:
            frame.remove()


def staging_root() -> Path:
    """Where steps write their chunks before their output is stored (the IO manager then moves them)."""
    return Path(
        os.environ.get(CHUNKS_DIR)
        or Path(os.environ.get("DAGSTER_HOME", ".contentstack")) / "frames" / ".staging"
    )


def staging_dir() -> Path:
    return staging_root() / uuid.uuid4().hex


class ChunkWriter:
    """Collects a step's output chunk by chunk: the first chunk is held in memory; from the second on, every
    chunk is written to a file as it comes. `finish()` gives the plain frame of a single chunk, or the
    `ChunkedFrame` of several."""

    def __init__(self) -> None:
        self._directory: Path | None = None
        self._first: pd.DataFrame | None = None
        self._first_hashes: np.ndarray | None = None
        self._lengths: list[int] = []
        self._columns: list[str] | None = None

    @property
    def chunks(self) -> int:
        return len(self._lengths)

    def write(self, chunk: pd.DataFrame, hashes: np.ndarray | None = None) -> None:
        """`hashes`: a hash per row of the chunk to keep beside the chunks (`ChunkedFrame.hashes`)."""
        if self._columns is None:
            self._columns = list(chunk.columns)
        if not self._lengths:
            self._first, self._first_hashes = chunk, hashes
            self._lengths.append(len(chunk))
            return
        if self._first is not None:
            self._store(0, self._first, self._first_hashes)
            self._first = self._first_hashes = None
        self._lengths.append(len(chunk))
        self._store(len(self._lengths) - 1, chunk, hashes)

    def _store(self, index: int, chunk: pd.DataFrame, hashes: np.ndarray | None = None) -> None:
        if self._directory is None:
            self._directory = staging_dir()
        self._directory.mkdir(parents=True, exist_ok=True)
        if hashes is not None:
            with (self._directory / HASHES_FILE).open("ab") as file:
                file.write(np.ascontiguousarray(hashes, dtype=np.uint64).tobytes())
        with (self._directory / f"{index + 1:06d}.pkl").open("wb") as file:
            packed = pack_frame(chunk)
            if isinstance(packed, dict):  # the whole frame's attrs go with the ChunkedFrame, once
                packed["attrs"] = {}
            pickle.dump(packed, file, protocol=pickle.HIGHEST_PROTOCOL)

    def finish(
        self, attrs: dict | None = None, empty: pd.DataFrame | None = None, *, on_disk: bool = False
    ) -> Frame:
        """The output: `attrs` on it; with no chunk at all, `empty` (or an empty frame). `on_disk`: a
        `ChunkedFrame` even of one chunk or none (what a step hands on holds only where its rows are)."""
        if on_disk and len(self._lengths) <= 1:
            first = (
                self._first if self._first is not None else (empty if empty is not None else pd.DataFrame())
            )
            if not self._lengths:
                self._columns, self._lengths = list(first.columns), [0]
            self._store(0, first, self._first_hashes)
            self._first = self._first_hashes = None
        if len(self._lengths) <= 1 and not on_disk:
            frame = (
                self._first if self._first is not None else (empty if empty is not None else pd.DataFrame())
            )
            frame.attrs.update(attrs or {})
            return frame
        assert self._directory is not None
        return ChunkedFrame(self._directory, self._lengths, self._columns or [], attrs)

    def abandon(self) -> None:
        if self._directory is not None:
            shutil.rmtree(self._directory, ignore_errors=True)


def collect(
    chunks: Iterable[pd.DataFrame],
    hashes: Callable[[pd.DataFrame], np.ndarray] | None = None,
    *,
    on_disk: bool = False,
) -> Frame:
    """The chunks of a read, written as they come: the plain frame of one chunk, a `ChunkedFrame` of more
    (`on_disk`: always). `hashes(chunk)`: 64-bit hashes of the chunk's rows, made while it is in memory and
    kept in a file beside the chunks of a `ChunkedFrame` (`ChunkedFrame.hashes()`)."""
    writer = ChunkWriter()
    attrs: dict = {}
    try:
        for chunk in chunks:
            attrs = dict(chunk.attrs)
            writer.write(chunk, None if hashes is None else hashes(chunk))
    except BaseException:
        writer.abandon()
        raise
    return writer.finish(attrs, on_disk=on_disk)
