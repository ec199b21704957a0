"""Users who left the source (`on_delete: clear`): who they are, what each is sent, and the guard on how
many one run may clear. No Dagster here: `push_users` calls `find_leavers` and delivers the clears.

Only a run that read the whole source can tell who left. A user in the sync state (this sync, this
destination) whose uid is on no row of that read (valid or rejected: a rejected row is still there) left.
Each leaver gets one `PATCH /user-attributes` setting to null exactly the keys this sync delivered to them,
as the state records them; when their last delivery is unconfirmed (failed, cut after the write-ahead, or
forgotten after a merge), the request that may have landed carried some of the spec's keys, so those are
nulled too. Once confirmed, the state forgets the user: one who comes back is new and gets everything.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert import convert_uids
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.engine.state import StateStore
from contentstack_assets.spec import UsersSync

SAMPLE = 20  # leavers named in a report or an error


class TooManyClearsError(RuntimeError):
    """A run would clear more than `max_clear_share` of the sync's users: stop rather than act on a bad read."""


@dataclass(frozen=True)
class ClearRequest:
    """One leaver's clear: every key this sync sent them, set to null."""

    user_uid: str
    body: dict  # key -> None

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.body)


@dataclass
class Leavers:
    """The users of the state that a whole read no longer holds."""

    requests: list[ClearRequest] = field(default_factory=list)
    nothing_sent: list[str] = field(default_factory=list)  # leavers with no key on record: forgotten only
    # the share guard is the sync's, whichever shard judges it: every shard sees the same figures, so
    # either all of them stop or none does
    users_in_state: int = 0  # the users in the sync state
    sync_leavers: list[str] = field(default_factory=list)  # the sync's leavers, every shard's
    newer: int = 0  # absent here, but delivered from a later read than this run's: left alone

    @property
    def uids(self) -> list[str]:
        return sorted([*(request.user_uid for request in self.requests), *self.nothing_sent])

    @property
    def total(self) -> int:
        return len(self.requests) + len(self.nothing_sent)

    def sample(self, limit: int = SAMPLE) -> list[dict]:
        rows = [{"user_uid": r.user_uid, "keys": ", ".join(r.keys)} for r in self.requests[:limit]]
        rows += [{"user_uid": uid, "keys": ""} for uid in self.nothing_sent[: limit - len(rows)]]
        return rows


def source_uids(sync: UsersSync) -> pd.Series:
    """The uid of every row of the whole source, whatever its partition column holds (a partitioned run's
    window misses rows with a null or out-of-range day): the uids a run over every day decides leavers by."""
    column = sync.match.column
    return convert_uids(SourceReader(sync.source, [column]).read()[column]).values


def find_leavers(
    sync: UsersSync,
    store: StateStore,
    key: str,
    present: Iterable[str],
    *,
    owns: Callable[[list[str]], np.ndarray] | None = None,
    read_at: int | None = None,
) -> Leavers:
    """The users of state `key` that are not in `present`, the uids of a whole read, with what each of them
    that `owns` marks (a shard's own; default all) is sent. A user whose state came from a read later than `read_at` (this
    frame is older than a delivery already made) is not judged by it."""
    state = store.load_fingerprints(key)
    leavers = Leavers(users_in_state=len(state))
    present_uids = pd.Index(pd.Series(list(present), dtype=object).dropna())
    absent = state.loc[~state.index.isin(present_uids)]
    if absent.empty:
        return leavers
    candidates = sorted(absent.index)
    if read_at is not None:
        later = store.load_read_times(key, candidates)
        newer = {uid for uid in candidates if later.get(uid, read_at) > read_at}
        leavers.newer = len(newer)
        candidates = [uid for uid in candidates if uid not in newer]
    leavers.sync_leavers = candidates
    if owns is not None and candidates:
        candidates = [uid for uid, mine in zip(candidates, owns(candidates), strict=True) if mine]
    unconfirmed = set(absent.index[absent["fingerprint"].isna().to_numpy() | (absent["failed_runs"] > 0)])
    delivered = store.load_delivered(key, candidates)
    for uid in candidates:
        keys = list(delivered.get(uid, {}))
        if uid in unconfirmed:
            keys += [k for k in sync.attributes if k not in keys]
        if keys:
            leavers.requests.append(ClearRequest(uid, dict.fromkeys(keys)))
        else:
            leavers.nothing_sent.append(uid)
    return leavers


def clear_share_refusal(sync: UsersSync, leavers: Leavers, where: str = "") -> str | None:
    """Why this run must not clear so many users (one paragraph), or None when the sync's leavers (every
    shard's) are within `max_clear_share` of the users in the state."""
    total = len(leavers.sync_leavers)
    if not total or total <= sync.max_clear_share * leavers.users_in_state:
        return None
    share = total / leavers.users_in_state
    shown = ", ".join(leavers.sync_leavers[:5]) + (", ..." if total > 5 else "")
    return (
        f"sync {sync.name!r}{where}: this run would clear {total} of the {leavers.users_in_state} "
        f"users in the sync state ({share:.0%}, above max_clear_share={sync.max_clear_share}): they are on no "
        f"row of the source (e.g. {shown}), and `on_delete: clear` would set to null every attribute this "
        "sync sent them; nothing was sent. If they really left, run once with `allow_clear: true` in the "
        "personalize_users config, or raise `max_clear_share` in the spec; if the source is wrong, fix it "
        "and run again."
    )
