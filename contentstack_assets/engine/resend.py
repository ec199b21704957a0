"""Users read again by uid: those a merge overwrote (resent whole), and those whose last delivery is
unconfirmed. `find_resends` says why each is needed and what the push does with them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert import convert_uids
from contentstack_assets.engine.frames import ChunkedFrame, Frame, chunks_of
from contentstack_assets.engine.mapping import map_users, source_columns
from contentstack_assets.engine.push import PushResult, push_users
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.engine.state import StateStore
from contentstack_assets.spec import SyncsSpec, UsersSync
from contentstack_assets.wire import REJECTION, ROW, UID

MAX_REREAD = 20_000  # users read again per run, oldest first; the others wait for the next run


def resend_syncs(spec: SyncsSpec, merges_sync: str) -> list[UsersSync]:
    """The users syncs whose users a merge by `merges_sync` overwrites: same project, `depends_on` it."""
    merges = spec.get(merges_sync)
    return [
        sync
        for sync in spec.syncs
        if sync.kind == "users"
        and merges_sync in sync.depends_on
        and sync.destination.project_uid == merges.destination.project_uid
    ]


def read_users_by_uid(sync: UsersSync, uids: Sequence[str], batch: int = 5000) -> pd.DataFrame:
    """The source rows of these user uids (any day), in the columns `source_columns` names."""
    columns = source_columns(sync)
    frames = []
    for start in range(0, len(uids), batch):
        chunk = list(uids[start : start + batch])
        candidates = SourceReader(sync.source, columns).read(text_in=(sync.match.column, chunk))
        found = convert_uids(candidates[sync.match.column]).values  # the uid as the run's read makes it
        frames.append(candidates.loc[found.isin(chunk).to_numpy()].reset_index(drop=True))
    if not frames:
        return pd.DataFrame({column: pd.Series([], dtype=object) for column in columns})
    return pd.concat(frames, ignore_index=True)


@dataclass
class Resends:
    """The marked and unconfirmed users one push owns, and what it found of them."""

    marks: dict[str, int] = field(default_factory=dict)  # uid -> marks, as read before the push
    unconfirmed: list[str] = field(default_factory=list)  # users whose last delivery is unconfirmed
    rows: pd.DataFrame | None = None  # mapped rows of those users read again outside the run's window
    gone: list[str] = field(default_factory=list)  # those users the source no longer holds
    nothing_to_send: list[str] = field(default_factory=list)  # valid rows whose every attribute is null

    @property
    def rows_reread(self) -> int:
        return 0 if self.rows is None else len(self.rows)

    @property
    def unconfirmed_reread(self) -> int:
        """Unconfirmed users (failed, or cut after the write-ahead) whose rows were read again."""
        return 0 if self.rows is None else int(self.rows[UID].isin(self.unconfirmed).sum())

    @property
    def present(self) -> list[str]:
        gone = set(self.gone)
        return [uid for uid in self.marks if uid not in gone]

    def with_rows(self, mapped: Frame) -> Frame:
        """The run's mapped rows followed by the rows read again."""
        if not self.rows_reread:
            return mapped
        if isinstance(mapped, ChunkedFrame):
            return mapped.with_chunk(self.rows)
        combined = pd.concat([mapped.reset_index(drop=True), self.rows], ignore_index=True)
        combined.attrs = dict(mapped.attrs)  # the older read time of the two: a stale check errs safe
        return combined


def find_resends(
    sync: UsersSync,
    mapped: Frame,
    store: StateStore,
    *,
    partitioned: bool,
    owns: Callable[[list[str]], np.ndarray] | None = None,
    read: Callable[[UsersSync, Sequence[str]], pd.DataFrame] = read_users_by_uid,
    rejected_elsewhere: Iterable[str] = (),
) -> Resends:
    """The marked and unconfirmed users of this push (`owns(uids)`: a mask of those a shard owns), with the
    rows of those outside `mapped` read again when the run is `partitioned` (an unpartitioned run read the
    whole source, so a user missing from it is gone). `rejected_elsewhere`: uids of the run's rejected rows
    that `mapped` lacks (a shard's, which shard 0 records): still in the source.

    On a merge the Edge keeps the anonymous (source) user's value wherever both users have one, so after it the
    known user's values in Personalize are no longer those the users sync's state says it delivered, and a push
    that compares the warehouse with that state would send nothing. When a merge is confirmed, the merges push
    marks its target in every users sync of the same project that `depends_on` the merges sync, in the same
    transaction (`StateStore.record_item_requests(..., resend_in=...)`): the user's state forgets what it was
    sent, and `cs_resend` keeps the user's uid. The users push then plans that user as changed with nothing
    delivered, and sends every non-null attribute of its row.

    A user whose last delivery failed, or was cut after the write-ahead (no fingerprint, no status), is retried by
    the next run that reads its row; a partitioned run reads the rows updated in its days only, so such a user of
    other days would wait for its day to be run again.

    What this module adds is the push's side of both:
    - `find_resends`: the marked and the unconfirmed users this push owns (at most `MAX_REREAD` of each, oldest
      first); a partitioned run reads again from the source by uid those outside its rows, and their mapped rows
      join the run's rows (the same row rules, the same plan, the same delivery). An unconfirmed user the source no
      longer holds (missing from an unpartitioned run's rows, or from the read by uid) leaves the state once the
      push's empty-source guard has passed (`StateStore.drop_unconfirmed`): it is neither retried nor stuck (with
      `on_delete: clear` it stays, no longer counted as failing, until a run that read the whole source clears
      what it may hold and forgets it: engine/clears.py);
    - before delivery the push forgets the marked users' state again (`StateStore.forget_delivered`): a users push
      of another run may have recorded a delivery planned before the merge landed;
    - `StateStore.settle_resends` after the push removes the marks it took care of (the user is delivered in the
      state, has nothing to send, or is no longer in the source). A marked user whose row is rejected keeps
      its mark, and is read again by each run until its row is valid; so is an unconfirmed one.
    """
    key = store.key_of(sync)
    marks = store.pending_resends(key, limit=MAX_REREAD)
    unconfirmed = [uid for uid in store.unconfirmed_users(key, limit=MAX_REREAD) if uid not in marks]
    if owns is not None:
        marks = _owned(marks, owns)
        unconfirmed = list(_owned(dict.fromkeys(unconfirmed), owns))
    wanted = [*marks, *unconfirmed]
    if not wanted:
        return Resends()
    in_run = pd.concat([chunk.loc[chunk[UID].isin(wanted)] for chunk in chunks_of(mapped)], ignore_index=True)
    present = set(in_run[UID]) | (set(rejected_elsewhere) & set(wanted))
    outside = [uid for uid in wanted if uid not in present][:MAX_REREAD]
    rows = None
    if outside and partitioned:
        raw = read(sync, sorted(outside))
        if len(raw):
            rows = map_users(raw, sync)
            rows[ROW] += len(mapped)  # numbered after the run's own rows
            present.update(rows[UID].dropna())
    marked = in_run.loc[in_run[UID].isin(list(marks))]
    if rows is not None:
        marked = pd.concat([marked, rows.loc[rows[UID].isin(list(marks))]], ignore_index=True)
    return Resends(
        marks=marks,
        unconfirmed=unconfirmed,
        rows=rows,
        gone=sorted(set(outside) - present),
        nothing_to_send=_nothing_to_send(sync, marked),
    )


def _owned(users: dict, owns: Callable[[list[str]], np.ndarray]) -> dict:
    uids = list(users)
    return {uid: users[uid] for uid, owned in zip(uids, owns(uids), strict=True) if owned} if uids else {}


def _nothing_to_send(sync: UsersSync, rows: pd.DataFrame) -> list[str]:
    """Valid rows whose attributes are all null under `nulls: skip`: no request can carry them."""
    if sync.nulls == "send" or rows.empty:
        return []
    valid = rows.loc[rows[REJECTION].isna()]
    empty = valid[list(sync.attributes)].isna().all(axis=1).to_numpy()
    return sorted(valid.loc[empty, UID])


def push_users_resending(
    sync: UsersSync,
    mapped: Frame,
    *,
    store: StateStore,
    partitioned: bool,
    owns: Callable[[list[str]], np.ndarray] | None = None,
    log: Callable[[str], None] = print,
    rejected_elsewhere: Iterable[str] = (),
    **push: Any,
) -> tuple[PushResult, Resends]:
    """`push_users` (same keyword arguments) with the marked users of this push resent whole: read again
    if outside the run's rows, forgotten in the state before delivery, their marks settled after it."""
    resends = find_resends(
        sync, mapped, store, partitioned=partitioned, owns=owns, rejected_elsewhere=rejected_elsewhere
    )
    if resends.marks or resends.unconfirmed:
        log(
            f"{sync.name}: {len(resends.marks)} users marked for a full resend after a merge, "
            f"{len(resends.unconfirmed)} whose last delivery is unconfirmed ({resends.rows_reread} rows read "
            f"again from the source, {len(resends.gone)} no longer in it)"
        )
    dry_run = push.get("dry_run", False)
    if not dry_run:
        store.forget_delivered(store.key_of(sync), resends.present)
    result = push_users(sync, resends.with_rows(mapped), store=store, log=log, gone=resends.gone, **push)
    if not dry_run:
        store.settle_resends(
            store.key_of(sync), resends.marks, regardless=[*resends.gone, *resends.nothing_to_send]
        )
    return result, resends
