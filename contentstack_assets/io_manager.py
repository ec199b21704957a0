"""The IO manager of the frames between a sync's steps: pickled per asset and partition range, handed over
in memory to the next step in the same process, with a codec that packs text, time and number columns.
"""

import os
import pickle
import shutil
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pandas as pd

from contentstack_assets.engine.frames import (
    ChunkedFrame,
    ShardedFrame,
    pack_frame,
    staging_root,
    unpack_frame,
)

FRAMES_IO_MANAGER_KEY = "contentstack_frames"  # our own key: a host project's `io_manager` stays its own
# what passes between a users sync's steps: a frame in one piece, the chunks of a longer read, or the parts
# each shard of a sharded sync read (`shards: N`)
FRAME_TYPE = dg.PythonObjectDagsterType((pd.DataFrame, ChunkedFrame, ShardedFrame), name="Frame")


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

    def handle_output(
        self, context: dg.OutputContext, obj: pd.DataFrame | ChunkedFrame | ShardedFrame
    ) -> None:
        path = self._path(context)
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(obj, (ChunkedFrame, ShardedFrame)):
            # a read too big for one piece: its chunk files move beside the file, which holds where they are
            obj = obj.moved_to(path.parent / f"{path.stem}.{context.run_id}.chunks")
        # a temporary file of this writer's own: two runs storing the same asset and range at once (a backfill
        # next to a schedule tick) must not write into, or rename away, each other's
        descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".tmp")
        temporary = Path(name)
        try:
            with os.fdopen(descriptor, "wb") as file:
                pickle.dump(pack_frame(obj), file, protocol=pickle.HIGHEST_PROTOCOL)
            identity = _JustStored.identity(temporary)  # kept by the rename
            temporary.replace(path)  # a reader never sees half a file; the last store wins
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        _just_stored.put(path, obj, identity)
        _remove_older(path, self.keep_days, _run_going(context))

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
            return unpack_frame(pickle.load(file))


def _run_going(context: dg.OutputContext) -> Callable[[str], bool]:
    """Whether the run of an id may still be going, asked of the instance storing the output (without one,
    as under `build_output_context`, every other run counts as finished)."""
    try:
        instance = context.step_context.instance
    except dg.DagsterInvariantViolationError:
        return lambda run_id: False

    def going(run_id: str) -> bool:
        try:
            run = instance.get_run_by_id(run_id)
        except Exception:  # noqa: BLE001 - the run storage out of reach: keep the chunks (keep_days removes them)
            return True
        # a run this instance does not know (another instance's, sharing the folder) may be going too
        return run is None or not run.is_finished

    return going


def _remove_older(path: Path, keep_days: float, going: Callable[[str], bool]) -> None:
    """Remove the frames next to `path` (the same asset's other ranges) last written over `keep_days` ago.
    `going`: whether a run is still going (its chunks stay while it does, whatever newer run stored since)."""
    cutoff = time.time() - keep_days * 86400
    # and temporary files that old are left by writers that died (a file being written is younger)
    for other in [*path.parent.glob("*.pkl"), *path.parent.glob(".*.tmp")]:
        try:
            if other != path and other.stat().st_mtime < cutoff:
                other.unlink()
        except OSError:  # another run removed or replaced it meanwhile
            continue
    # chunks a step left in the staging place when its process died (a step writing them is younger)
    staging = staging_root()
    for left in staging.glob("*") if staging.is_dir() else ():
        try:
            if left.stat().st_mtime < cutoff:
                shutil.rmtree(left, ignore_errors=True)
        except OSError:
            continue
    # the chunks of chunked frames: those of other finished runs of the same range once a newer run stored
    # its own (a run still going may be reading them in its next step), and any old enough
    for chunks in path.parent.glob("*.chunks"):
        try:
            stem, _, run_id = chunks.name.removesuffix(".chunks").rpartition(".")  # `<range>.<run id>.chunks`
            same_range = stem == path.stem and chunks.stat().st_mtime < path.stat().st_mtime
            replaced = same_range and not _in_use(path, chunks) and not going(run_id)
            if replaced or chunks.stat().st_mtime < cutoff:
                shutil.rmtree(chunks, ignore_errors=True)
        except OSError:
            continue


def _in_use(path: Path, chunks: Path) -> bool:
    """Whether the file at `path` names these chunks (the last store of the range)."""
    try:
        with path.open("rb") as file:
            stored = pickle.load(file)
    except (OSError, pickle.UnpicklingError, EOFError):
        return True
    if isinstance(stored, ShardedFrame):
        return any(directory.parent == chunks for directory in stored.directories())
    return isinstance(stored, ChunkedFrame) and stored.directory == chunks


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
