"""Change detection in the source database: a run that reads the whole source first reads only each row's uid
and the database's hash of the row (engine/source/digests.py), and reads whole only the rows of users it
cannot prove unchanged.

The state keeps per user a source digest D and the fingerprint F the row of digest D maps to (`cs_users.
source_digest`, `digest_fingerprint`). That pair is a fact about a row, true whatever the order of runs: the
digest's prefix names the spec's salt, this module's `DIGEST_VERSION`, the driver and its version and the
column types, so a row hashing to D maps to the same wire values. A user is left unread when its row hashes to
D and its confirmed fingerprint is F (no failure, nothing in flight, no merge since: all of those clear or
move the fingerprint): exactly the users the plan would find unchanged. Every other row is read whole, with
its digest, in batches of uids: new users, moved rows, rejected rows (they hold no digest), failing and
unconfirmed users, and the rows of uids the source holds more than once (`_given_again`: the duplicates are
rejected as before).

The frame of those rows carries in its attrs the whole source's row count (`SOURCE_ROWS`, for the empty-source
guard), the rows left unread (`DIGEST_UNCHANGED`) and, for `on_delete: clear`, every uid of the source
(`PRESENT`). A sharded sync does the same in each shard, over the shard's slice of the source (its digests'
read and its rows' reads carry the shard's condition, engine/source/shards.py), each shard's frame with the
attrs of its own slice. Where the dialect cannot hash or the run reads a window of days, the read is the
whole read it always was.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert import Converted, convert_uids
from contentstack_assets.engine.frames import ChunkedFrame, ChunkWriter, Frame, ShardedFrame, collect
from contentstack_assets.engine.mapping import map_frame, source_columns, stamp_read_time, uid_hashes_of
from contentstack_assets.engine.plan import spec_salt
from contentstack_assets.engine.source import SourceReader, engine_for
from contentstack_assets.engine.source.digests import DIGEST, can_digest
from contentstack_assets.engine.state import StateStore, uid_hashes
from contentstack_assets.spec import UsersSync
from contentstack_assets.wire import UID

T = TypeVar("T")
DIGEST_VERSION = 1  # moved by a release whose conversion of a value changes: every user is read again
SOURCE_ROWS = "source_rows"  # frame attrs: the rows of the whole source
DIGEST_UNCHANGED = "rows_digest_unchanged"  # frame attrs: rows left unread, their digest unmoved
PRESENT = "present_uids"  # frame attrs: every uid of the source (on_delete: clear)
UID_BATCH = 20_000  # uids per read of whole rows
READ_AHEAD_ROWS = 200_000  # rows of the digests' read held while the state's digests are still being read
SEEN_MAX = 255  # rows counted per digest of the state (one byte)
WHOLE_SHARE = 0.3  # above this share of rows to read whole (and one batch), one read of every row is cheaper
# and above this many batches, whatever the share: a batch's read compares the uid trimmed, as text, so each is
# a scan of the table (no index helps). At 1M rows (PostgreSQL, `bench/read_changed_run.py`): 50,000 moved
# took 3.7 s by uid, 100,000 5.7 s, 290,000 14.7 s; a whole read 4.5-5.0 s, plus the map and plan of the
# unchanged rows (~2.7 s): the two meet near 7 batches, at any size (both scan the whole table)
WHOLE_BATCHES = 6


class Uids:
    """The uids of the whole source, carried in a frame's attrs: pandas deep-copies attrs on every operation
    of the frame, and this holder is handed on as it is (nothing changes it)."""

    def __init__(self, values: np.ndarray):
        self.values = values

    def __deepcopy__(self, memo: dict) -> Uids:
        return self

    def __len__(self) -> int:
        return len(self.values)


def present_uids(frame: Frame | ShardedFrame) -> np.ndarray | None:
    """Every uid of the source a read by digests saw (with `on_delete: clear`), or None. Of a sharded read,
    where a shard read by digests: every shard's, each the uids its read by digests saw or those it read."""
    if isinstance(frame, ShardedFrame):
        held = [part.attrs.get(PRESENT) for part in frame.parts]
        if all(uids is None for uids in held):
            return None
        return np.concatenate([
            uids.values if uids is not None else _mapped_uids(part)
            for uids, part in zip(held, frame.parts, strict=True)
        ])  # fmt: skip
    held = frame.attrs.get(PRESENT)
    return None if held is None else held.values


def _mapped_uids(frame: Frame) -> np.ndarray:
    uids = frame.column(UID) if isinstance(frame, ChunkedFrame) else frame[UID]
    return uids.to_numpy(dtype=object)


def digest_prefix(sync: UsersSync) -> str:
    return f"{DIGEST_VERSION}:{spec_salt(sync)}"


def digests_apply(sync: UsersSync) -> bool:
    """Whether a run of this sync over the whole source (or a shard's slice of it) can detect changes in the
    database."""
    return can_digest(engine_for(sync.source).dialect.name)


def is_partial(frame: Frame) -> bool:
    """Whether a read's frame left rows unread (users unchanged by their digest)."""
    return bool(frame.attrs.get(DIGEST_UNCHANGED))


def read_changed(
    sync: UsersSync,
    store: StateStore,
    *,
    on_progress: Callable[[int], None] | None = None,
    log: Callable[[str], None] = print,
    reader: SourceReader | None = None,
    shard: tuple[int, int] | None = None,
    on_disk: bool = False,
) -> Frame:
    """The whole source's rows that may need a request, with their digests (see the module); `reader`: the
    reader of `source_columns(sync)` to use (its `column_types` are the source's after the read). `shard=
    (index, shards)`: of that shard's slice of the source only (its rows, its counts, its uids); `on_disk`:
    a frame of chunk files even for one chunk."""
    columns = source_columns(sync)
    reader = reader or SourceReader(sync.source, columns)
    prefix = digest_prefix(sync)
    key = store.key_of(sync)
    name = sync.name if shard is None else f"{sync.name}: shard {shard[0] + 1} of {shard[1]}"

    def every_row() -> Frame:
        chunks = reader.read_chunks(on_progress=on_progress, digest=prefix, shard=shard)
        return _whole(collect(chunks, uid_hashes_of(sync), on_disk=on_disk))

    if not store.has_source_digests(key):  # a first sync, a spec change that moved nothing yet
        return every_row()
    # the state's digests are read while the source hashes its rows, and the source hashes its next chunk
    # while this one is compared: both databases and this process at work at once
    with ThreadPoolExecutor(max_workers=2, thread_name_prefix="digests") as pool:
        known = _loaded(pool, store, key)
        # closed however the scan ends (a failure's traceback would keep the read-ahead thread waiting)
        with contextlib.closing(_read_ahead(pool, reader.read_digest_chunks(prefix, shard=shard))) as chunks:
            scan = _scan(sync, chunks, known)
    total, moved = scan.total, len(scan.moved)
    if moved > UID_BATCH and (moved > WHOLE_SHARE * total or moved > WHOLE_BATCHES * UID_BATCH):
        log(f"{name}: {moved} of {total} rows may have moved: reading every row")
        return every_row()
    converted = convert_uids(scan.moved)  # once, for both
    again = _given_again(store, key, scan, converted)
    frame = _read_rows(sync, columns, prefix, scan.moved, converted, again, shard)
    if frame is None:
        log(f"{name}: rows moved between the reads of digests and of rows: reading every row")
        return every_row()
    if on_disk and not isinstance(frame, ChunkedFrame):
        frame = collect([frame], on_disk=True)
    frame.attrs[SOURCE_ROWS] = total
    unread = total - len(frame) if len(frame) < total else 0
    frame.attrs[DIGEST_UNCHANGED] = unread
    if scan.present is not None:
        frame.attrs[PRESENT] = scan.present
    if on_progress:
        on_progress(len(frame))
    log(f"{name}: {total} rows in the source, {unread} unchanged by their digest, {len(frame)} read whole")
    return frame


def read_whole_mapped(sync: UsersSync, shard: tuple[int, int] | None = None) -> Frame:
    """Every row of the source (`shard`: of that shard's slice), read and mapped now, chunk by chunk: a full
    resync after a read by digests, which left the unchanged users unread. With each row's digest, which the
    push records (without, the next run would read every row again)."""
    started = time.time()
    reader = SourceReader(sync.source, source_columns(sync))
    chunks = reader.read_chunks(digest=digest_prefix(sync), shard=shard)
    frame = collect(chunks, uid_hashes_of(sync))
    try:
        return map_frame(stamp_read_time(frame, started), sync, shard=shard)
    finally:
        if isinstance(frame, ChunkedFrame):  # the raw chunks, once mapped
            frame.remove()


@dataclass
class _Scan:
    total: int  # rows in the source
    moved: pd.Series  # the raw uids of the rows to read whole
    known: np.ndarray  # the state's digests, sorted
    seen: np.ndarray  # per digest of `known`: the rows that hash to it, up to SEEN_MAX (uint8)
    present: Uids | None  # every uid of the source (on_delete: clear)


def _scan(sync: UsersSync, chunks: Iterator[pd.DataFrame], known: Future[np.ndarray]) -> _Scan:
    """One narrow read of every row's uid and digest, a chunk at a time, compared with the state's digests
    (`known`, still being read when the first chunks come: up to `READ_AHEAD_ROWS` rows wait for them). A
    row is left unread when its digest is one the state holds. What stays is the raw uid of each row to read
    whole and, per digest of the state, how many rows hash to it (one byte a user, up to `SEEN_MAX`): from
    those, `_given_again` finds the uids the source holds more than once. No uid is converted or hashed
    unless `on_delete: clear` needs every uid."""
    match = sync.match.column
    total = 0
    moved: list[pd.Series] = []
    present: list[np.ndarray] | None = [] if sync.on_delete == "clear" else None
    waiting: list[pd.DataFrame] = []
    seen: np.ndarray | None = None  # made once the state's digests are in

    def compare(chunk: pd.DataFrame) -> None:
        nonlocal seen
        digests = known.result()
        if seen is None:
            seen = np.zeros(len(digests), dtype=np.uint8)
        raw = chunk[match]
        same, at = _matched(chunk[DIGEST].to_numpy(), digests)
        _count(seen, at)
        moved.append(raw[~same])
        if present is not None:
            uids = convert_uids(raw).values.to_numpy(dtype=object)
            present.append(uids[pd.notna(uids)])

    for chunk in chunks:
        total += len(chunk)
        waiting.append(chunk)
        if known.done() or sum(len(held) for held in waiting) >= READ_AHEAD_ROWS:
            for held in waiting:
                compare(held)
            waiting.clear()
    for held in waiting:
        compare(held)
    digests = known.result()
    return _Scan(
        total=total,
        moved=pd.concat(moved, ignore_index=True) if moved else pd.Series([], dtype=object),
        known=digests,
        seen=seen if seen is not None else np.zeros(len(digests), dtype=np.uint8),
        present=None if present is None else Uids(np.concatenate(present)),
    )


def _given_again(store: StateStore, key: str, scan: _Scan, converted: Converted) -> dict[str, int]:
    """The uids of rows left unread that the source gives more than once, each with its rows left unread
    (they are then read whole, and the mapping rejects every row of such a uid): a user whose recorded
    digest two rows hash to (the same row given twice), or one row while a row read whole gives the same uid
    (spelled `' u4'` or `'\tu4'`). A digest hashes its row's raw uid, so a row that hashes to a user's digest
    is that user's row; the state names the owners of the few digests and uids in question (asked whatever
    their state now: a run that failed one meanwhile leaves its digest as the scan compared it). `converted`:
    the moved rows' uids."""
    if not scan.seen.any():  # no row left unread
        return {}
    moved_uids = set(converted.values[converted.errors.isna()].tolist())
    twice = scan.known[scan.seen >= 2]
    if not moved_uids and not len(twice):
        return {}
    owners = store.load_digest_owners(key, user_uids=moved_uids, digests=twice)
    if not owners:
        return {}
    uids = [uid for uid, _ in owners]
    digests = np.fromiter((digest for _, digest in owners), dtype=np.int64, count=len(owners))
    at = np.minimum(np.searchsorted(scan.known, digests), len(scan.known) - 1)
    unread = np.where(scan.known[at] == digests, scan.seen[at], 0)
    needed = np.fromiter((1 if uid in moved_uids else 2 for uid in uids), dtype=np.int64, count=len(uids))
    return {uid: int(rows) for uid, rows, least in zip(uids, unread, needed, strict=True) if rows >= least}


def _count(seen: np.ndarray, at: np.ndarray) -> None:
    """Adds the rows that hash to each digest of the state (their positions `at`, in order) to `seen`, up
    to `SEEN_MAX`."""
    if len(at):
        starts = np.flatnonzero(np.concatenate(([True], at[1:] != at[:-1])))
        where, times = at[starts], np.diff(np.append(starts, len(at)))
        seen[where] = np.minimum(seen[where] + times, SEEN_MAX)


def _loaded(pool: ThreadPoolExecutor, store: StateStore, key: str) -> Future[np.ndarray]:
    """The state's digests (`load_source_digest_set`), read by a thread of `pool`; by this one for a
    state in SQLite's memory, which another thread's connection would find empty."""
    url = store.engine.url
    if url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:"):
        done: Future[np.ndarray] = Future()
        done.set_result(store.load_source_digest_set(key))
        return done
    return pool.submit(store.load_source_digest_set, key)


def _read_ahead(pool: ThreadPoolExecutor, chunks: Iterator[T], depth: int = 1) -> Iterator[T]:
    """The items of `chunks`, each taken from it by a thread of `pool` while the one before is in use (up to
    `depth` waiting): the database makes the next chunk meanwhile. Stopped early, the thread stops too."""
    handed: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    end = object()

    def hand(item: object) -> bool:
        while not stop.is_set():
            try:
                handed.put(item, timeout=0.05)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in chunks:
                if not hand(item):
                    return
            hand(end)
        except BaseException as error:  # noqa: BLE001 - raised again where the items are used
            hand(_Raised(error))
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()

    running = pool.submit(produce)
    try:
        while (item := handed.get()) is not end:
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        running.result()


@dataclass
class _Raised:
    error: BaseException


def _matched(digests: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each row may be left unread, its digest being one of the state's (`known`, sorted), and the
    positions in `known` of the digests found, in order. The digests are looked up sorted (the state is
    walked, not jumped about); a row's own answer comes from the few digests not found, usually none.

    A digest the state holds was made of a row read whole whose uid the mapping accepted (the same
    conversion: `DIGEST_VERSION`), so such a row has a valid uid; a false match needs a row to share its
    64-bit digest with another user's recorded row."""
    if not len(known):  # the state's digests went meanwhile (a spec change): every row is read
        return np.zeros(len(digests), dtype=bool), np.empty(0, dtype=np.intp)
    ordered = np.sort(digests)
    at = np.minimum(np.searchsorted(known, ordered), len(known) - 1)
    hit = known[at] == ordered
    missed = ordered[~hit]  # sorted
    if not len(missed):
        return np.ones(len(digests), dtype=bool), at
    near = np.minimum(np.searchsorted(missed, digests), len(missed) - 1)
    return missed[near] != digests, at[hit]


def _whole(frame: Frame) -> Frame:
    frame.attrs[SOURCE_ROWS] = len(frame)
    frame.attrs[DIGEST_UNCHANGED] = 0
    return frame


def _read_rows(
    sync: UsersSync,
    columns: list[str],
    prefix: str,
    raw_wanted: pd.Series,
    converted: Converted,
    again: dict[str, int],
    shard: tuple[int, int] | None = None,
) -> Frame | None:
    """The whole rows of the wanted uids (raw, as the digests' read gave them) and of the uids given again
    (`again`: uid -> its rows left unread), read by their uid's text (a missing uid: by NULL); None when a
    wanted row is not among them (a row changed, left or is spelled so the database's TRIM does not find
    it, e.g. '\tu4', since the digests were read: the caller reads every row instead). `converted`: the
    wanted uids as the mapping makes them."""
    valid = converted.errors.isna().to_numpy()
    wanted_uids = set(converted.values[valid].tolist()) | set(again)
    # rows whose uid itself is rejected: found again by their raw text, or as NULL
    rejected = raw_wanted[~valid]
    texts = {str(value).strip() for value in rejected.tolist() if value is not None and value == value}
    or_null = bool(rejected.isna().any())
    values = sorted(wanted_uids | texts)
    match = sync.match.column
    writer = ChunkWriter()  # batch by batch: a third of a big table may have moved
    attrs: dict = {}
    found_raw: list[np.ndarray] = []
    found_again: list[pd.Series] = []
    batches = [values[start : start + UID_BATCH] for start in range(0, len(values), UID_BATCH)] or [[]]
    for index, batch in enumerate(batches):
        nulls = or_null and index == 0
        if not batch and not nulls:
            continue
        candidates = SourceReader(sync.source, columns).read(
            text_in=(match, batch), digest=prefix, or_null=nulls, shard=shard
        )
        # each row is kept by the one batch that holds its uid (a number may match two texts: 42.0 and 42)
        in_batch = set(batch)
        found = convert_uids(candidates[match])
        rejected_uid = found.errors.notna().to_numpy()
        raw = candidates[match]
        raw_text = raw.map(lambda value: None if value is None or value != value else str(value).strip())
        keep = (found.values.isin(in_batch & wanted_uids).to_numpy() & ~rejected_uid) | (
            rejected_uid & (raw_text.isin(in_batch & texts).to_numpy() | (raw.isna().to_numpy() & nulls))
        )
        writer.write(candidates.loc[keep].reset_index(drop=True))
        found_raw.append(_raw_keys(raw[keep]))
        kept_uids = found.values[keep & ~rejected_uid]
        found_again.append(kept_uids[kept_uids.isin(again)])
        attrs = dict(candidates.attrs)  # the table's primary key
    if writer.chunks and _all_found(raw_wanted, converted, again, found_raw, found_again):
        return writer.finish(attrs)
    if not len(raw_wanted) and not again:
        return pd.DataFrame(
            {
                **{column: pd.Series([], dtype=object) for column in columns},
                DIGEST: pd.Series([], dtype=np.int64),
            }
        )
    if writer.chunks:
        frame = writer.finish(attrs)
        if isinstance(frame, ChunkedFrame):
            frame.remove()
    return None


def _all_found(
    raw_wanted: pd.Series,
    converted: Converted,
    again: dict[str, int],
    found_raw: list[np.ndarray],
    found_again: list[pd.Series],
) -> bool:
    """Whether the rows read hold every wanted row, as its raw uid, and for each uid given again its rows
    left unread besides the wanted rows of that uid: a row one uid's extra rows stand in for is missed."""
    wanted = pd.Series(_raw_keys(raw_wanted)).value_counts()
    held = pd.Series(np.concatenate(found_raw) if found_raw else [], dtype=np.uint64).value_counts()
    if (held.reindex(wanted.index, fill_value=0) < wanted).any():
        return False
    if not again:
        return True
    moved = converted.values[converted.errors.isna()]
    moved_rows = moved[moved.isin(again)].value_counts()
    found_rows = pd.concat(found_again).value_counts() if found_again else pd.Series(dtype=np.int64)
    return all(found_rows.get(uid, 0) >= moved_rows.get(uid, 0) + rows for uid, rows in again.items())


def _raw_keys(raw: pd.Series) -> np.ndarray:
    """A 64-bit hash of each raw uid as the driver gave it, its type with its text (NULL apart)."""
    text = [
        "\x00" if value is None or value != value else f"{type(value).__name__}\x00{value}"
        for value in raw.tolist()
    ]
    return uid_hashes(np.asarray(text, dtype=object))
