"""One push of a users sync: guard, plan, deliver, record. No Dagster here: the asset calls `push_users`."""

from __future__ import annotations

import dataclasses
import itertools
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from contentstack_assets.engine.clears import (
    ClearRequest,
    Leavers,
    TooManyClearsError,
    clear_share_refusal,
    find_leavers,
)
from contentstack_assets.engine.days import DayCounts
from contentstack_assets.engine.deliver import DeliveryReport, deliver
from contentstack_assets.engine.digests import DIGEST_UNCHANGED, present_uids
from contentstack_assets.engine.frames import ChunkedFrame, Frame, chunks_of
from contentstack_assets.engine.mapping import READ_AT, rejected_rows, valid_rows
from contentstack_assets.engine.plan import NEW, RETRY, UserRequest, UsersPlan, plan_users, spec_salt
from contentstack_assets.engine.shards import shard_label, shard_of
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.engine.source.digests import DIGEST
from contentstack_assets.engine.state import StateStore, UserOutcome
from contentstack_assets.personalize.client import EdgeClient, Response
from contentstack_assets.spec import UsersSync
from contentstack_assets.wire import DAY, REJECTION, UID

# a chunked push reads a state of up to this many users whole, once (~70 bytes a user); a bigger one as an
# index of 16 bytes a user (FingerprintIndex), in which each chunk looks its users up
WHOLE_STATE_USERS = 1_000_000


class SourceShrankError(RuntimeError):
    """The source returned far fewer rows than before: stop rather than act on a broken read."""


@dataclass
class PushResult:
    rows_read: int
    rows_rejected: int
    plan: UsersPlan
    report: DeliveryReport[UserRequest]
    rejected: pd.DataFrame
    dry_run: bool
    stuck_total: int = 0
    stuck_sample: list[dict] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)
    # a partitioned run's counts by the day of each user's row (`users_stuck` aside: it is the sync's)
    by_day: DayCounts = field(default_factory=DayCounts)
    # `on_delete: clear`: the users who left (None: this run decides no clears), and their clears' outcomes
    leavers: Leavers | None = None
    clears: DeliveryReport[ClearRequest] = field(default_factory=DeliveryReport)
    # rows of the source left unread: their database digest unmoved (engine/digests.py), users unchanged
    rows_digest_unchanged: int = 0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "rows_digest_unchanged": self.rows_digest_unchanged,
            "users_new": self.plan.counts["new"],
            "users_changed": self.plan.users_to_send,
            "users_unchanged": self.plan.counts["unchanged"] + self.rows_digest_unchanged,
            "users_stale_skipped": self.plan.counts["stale_skipped"],
            "users_retried": self.plan.counts["retry"],
            "users_delivered": self.report.delivered,
            "users_failed": self.report.failed,
            "users_stuck": self.stuck_total,
            "requests_sent": self.report.requests_sent + self.clears.requests_sent,
            "users_to_clear": self.leavers.total if self.leavers else 0,
            "users_cleared": self.users_cleared,
            "users_clear_failed": self.clears.failed,
        }

    @property
    def users_cleared(self) -> int:
        """Leavers the state forgot: their clear confirmed, or nothing of theirs on record to clear."""
        if self.leavers is None or self.dry_run or self.report.stopped:
            return 0
        return self.clears.delivered + len(self.leavers.nothing_sent)


def check_source_size(store: StateStore, sync: UsersSync, rows_read: int, scope: str = "all") -> None:
    """The empty-source guard of a run that read the whole source: its rows against the last such run's.

    A shard compares its own slice with the same shard's last run (`scope` `all/shard-2-of-4`). The rows of
    a run are those it read whole and those it left unread, their digest unmoved (engine/digests.py)."""
    previous = store.last_finished_run(store.key_of(sync), scope=scope)
    counts = previous["counts"] if previous else {}
    before = int(counts.get("rows_read", 0)) + int(counts.get(DIGEST_UNCHANGED, 0))
    where = "" if scope == "all" else f" ({scope.removeprefix('all/')})"
    _guard(
        sync,
        rows_read,
        before,
        f"the source returned {rows_read} rows where the last run read {before}",
        where,
    )


def check_whole_source(store: StateStore, sync: UsersSync, source_rows: int) -> None:
    """The empty-source guard of a run over some days (a day may rightly be empty): the whole source's rows,
    counted now, against the count the last run that counted them recorded."""
    previous = store.last_finished_run(store.key_of(sync), scope=None, having="source_rows")
    before = int(previous["counts"]["source_rows"]) if previous else 0
    _guard(
        sync,
        source_rows,
        before,
        f"the source holds {source_rows} rows where it held {before} at the last run",
    )


def _guard(sync: UsersSync, now: int, before: int, what: str, where: str = "") -> None:
    if before == 0:
        return
    if now == 0 or now < sync.min_source_fraction * before:
        raise SourceShrankError(
            f"sync {sync.name!r}{where}: {what} (below min_source_fraction={sync.min_source_fraction}); nothing "
            "was sent. If the source really shrank, run once with `allow_source_shrink: true` in the "
            "personalize_users config, or lower `min_source_fraction` in the spec."
        )


def push_users(
    sync: UsersSync,
    mapped: Frame,
    *,
    client: EdgeClient | None,
    store: StateStore,
    run_id: str,
    scope: str = "all",
    dry_run: bool = False,
    full_resync: bool = False,
    allow_source_shrink: bool = False,
    log: Callable[[str], None] = print,
    shard: tuple[int, int] | None = None,
    concurrency: int | None = None,
    gone: Sequence[str] = (),
    present: Iterable[str] | None = None,
    allow_clear: bool = False,
) -> PushResult:
    """One push; with `shard=(index, count)` the push of one shard's users (engine/shards.py), recorded as
    its own run row (`<run id>/shard-<i>-of-<n>`, scope `<scope>/shard-<i>-of-<n>`) so that shards of one run
    never overwrite each other's counts, and delivered with `concurrency` requests in flight.

    The empty-source guard: a run over all rows compares what it read with the last such run; a run over some
    days (a day may rightly be empty) counts the whole source, compares it with the last count and records it
    (also when the guard is waived, so the next run compares with the source as it is now).

    `gone`: users the source no longer holds (engine/resend.py); once the guard has passed, those whose last
    delivery is unconfirmed leave the state (with `on_delete: clear` they stay, not counted as failing, for
    the clear of the next whole read). A failing user whose row is now rejected stops counting as failing.
    Either way `users_stuck` counts only users the source still holds with a valid row.

    `on_delete: clear` (engine/clears.py): `present` is the uids of a whole read of the source; by default
    the uids of `mapped` (valid and rejected rows; after a read by digests, every uid it saw, engine/digests.py)
    when the run read every row (`scope` "all", unsharded),
    else none: a run over some days, or a shard not told the whole read's uids, clears nobody. The users of
    the state (a shard: its own) absent from it are cleared after the empty-source guard, unless they are more
    than `max_clear_share` of them and not `allow_clear`: then nothing is sent (`TooManyClearsError`)."""
    timings = {"plan": 0.0, "deliver": 0.0}
    key = store.key_of(sync)  # the state of this sync at this destination
    rows_read = len(mapped)
    unread = int(
        mapped.attrs.get(DIGEST_UNCHANGED, 0)
    )  # rows whose digest said unchanged (engine/digests.py)
    read_at = mapped.attrs.get(READ_AT)
    run_key, run_scope = run_id, scope
    if shard is not None:
        label = shard_label(*shard)
        run_key, run_scope = f"{run_id}/{label}", f"{scope}/{label}"
    source_rows = None if scope == "all" else SourceReader(sync.source, [sync.match.column]).count()
    if not allow_source_shrink and not full_resync:
        if source_rows is None:
            check_source_size(store, sync, rows_read + unread, scope=run_scope)
        else:
            check_whole_source(store, sync, source_rows)

    store.refresh_statistics()  # after a big first sync, before the lookups below
    leavers = _leavers(sync, mapped, store, key, present, scope, shard, read_at)
    if leavers is not None and leavers.sync_leavers:
        if leavers.total:
            log(
                f"{sync.name}: {leavers.total} users left the source"
                + (" and would be cleared" if dry_run else "")
                + f" (on_delete: clear): {', '.join(leavers.uids[:20])}{', ...' if leavers.total > 20 else ''}"
            )
        refusal = clear_share_refusal(sync, leavers)  # every shard judges the sync's share the same way
        if refusal and not allow_clear:
            if not dry_run:
                raise TooManyClearsError(refusal)
            log(f"{sync.name}: a real run would stop here: {refusal}")
    # chunk by chunk (a chunked read: engine/frames.py): each chunk is planned, recorded and delivered before
    # the next is read back, so a run holds one chunk's plan at a time; a frame in one piece is one chunk
    chunked = isinstance(mapped, ChunkedFrame)
    owns = (
        None
        if shard is None
        else (lambda uids, index=shard[0], count=shard[1]: shard_of(uids, count) == index)
    )
    planner = _Planner(sync, store, key, full_resync=full_resync, read_at=read_at, chunked=chunked, owns=owns)
    plans = planner.plans(mapped, log if chunked else None)
    first = next(plans)  # a plan that fails starts no run
    report: DeliveryReport[UserRequest] = DeliveryReport()
    if dry_run:
        for _ in plans:
            pass
        planner.log_totals(log, unread)
        return PushResult(
            rows_read,
            planner.rejected_rows,
            planner.summary,
            report,
            planner.rejected,
            True,
            timings_s={**timings, "plan": planner.seconds},
            by_day=planner.by_day,
            leavers=leavers,
            rows_digest_unchanged=unread,
        )
    if not chunked:
        planner.log_totals(log, unread)

    store.start_run(key, run_key, run_scope, dry_run=False)
    store.prune(key, sync.log_retention_days)
    if sync.on_delete == "clear":
        store.set_aside_failures(key, gone)  # kept: the next whole read clears what they may hold
    else:
        store.drop_unconfirmed(key, gone)
    sent = rejections_recorded = 0
    for planned in itertools.chain([first], plans):
        unchanged_digests, digest_of = _row_digests(planned.mapped, planned.valid, planned.plan)
        # the first chunk with rejections replaces what an earlier try of this step recorded; the next add
        store.record_rejections(key, run_id, planned.rejected, replace=not rejections_recorded)
        rejections_recorded += len(planned.rejected)
        store.set_aside_failures(key, planned.rejected["user_uid"])
        store.refresh_fingerprints(key, planned.plan.refresh)
        store.record_source_digests(key, unchanged_digests)
        if report.stopped or not planned.plan.users_to_send:
            continue  # a destination that refused every request would refuse the next chunk's too
        delivery_started = time.perf_counter()
        assert client is not None, "a real push needs an Edge client"
        chunk_report = deliver(
            planned.plan.requests(),
            lambda request: client.update_attributes(request.user_uid, request.body),
            client=client,
            concurrency=concurrency or sync.concurrency,
            record=_outcomes_recorder(
                store, key, run_id, read_at, digest_of, planner.by_day, planned.user_days
            ),
            before_send=lambda batch: store.forget_in_flight(
                # the write-ahead: users already in the state lose the keys about to be sent until confirmed
                key,
                [(r.user_uid, r.keys) for r in batch if r.reason != NEW],
            ),
            total=planned.plan.users_to_send,
            on_progress=_progress(sync, log, sent),
        )
        sent += planned.plan.users_to_send
        report.merge(chunk_report)
        timings["deliver"] += time.perf_counter() - delivery_started
    if chunked:
        planner.log_totals(log, unread)
    timings["plan"] = planner.seconds
    delivery_started = time.perf_counter()
    # a destination that refused every update (a wrong project) would refuse the clears too
    clears = _clear(sync, store, key, run_id, None if report.stopped else leavers, client, concurrency, log)
    by_day = planner.by_day
    if leavers is not None and leavers.total and not report.stopped:  # clears belong to no day of the run
        by_day.add(None, "users_cleared", clears.delivered + len(leavers.nothing_sent))
        by_day.add(None, "users_clear_failed", clears.failed)
        by_day.add(None, "requests_sent", clears.requests_sent)
    timings["deliver"] += time.perf_counter() - delivery_started
    stuck_total, stuck_sample = store.stuck_users(key, sync.stuck_after_runs)
    result = PushResult(
        rows_read,
        planner.rejected_rows,
        planner.summary,
        report,
        planner.rejected,
        False,
        stuck_total,
        stuck_sample,
        timings_s=timings,
        by_day=by_day,
        leavers=leavers,
        clears=clears,
        rows_digest_unchanged=unread,
    )
    whole_source = {} if source_rows is None else {"source_rows": source_rows}  # for the next run's guard
    store.finish_run(key, run_key, {**result.counts, **whole_source})
    return result


@dataclass
class _Planned:
    """One chunk's plan, with the rows it was made of."""

    mapped: pd.DataFrame
    valid: pd.DataFrame
    rejected: pd.DataFrame
    plan: UsersPlan
    user_days: dict[str, str | None]


class _Planner:
    """Plans a push chunk by chunk, adding up what the whole push reports: the plan's counts (with a sample of
    the first chunk that sends something, for a dry run's `plan_sample`), the rejected rows, the counts by day."""

    def __init__(
        self,
        sync: UsersSync,
        store: StateStore,
        key: str,
        *,
        full_resync: bool,
        read_at: int | None,
        chunked: bool,
        owns: Callable[[np.ndarray], np.ndarray] | None = None,
    ):
        self.sync, self.store, self.key = sync, store, key
        self.full_resync, self.read_at = full_resync, read_at
        # a chunked read reads the state whole once when it is small enough, else an index of it, 16 bytes a
        # user, in which each chunk looks its users up (per-chunk queries cost about 3.6 us a user, the index
        # about 1 us to build)
        self._state = self._index = None
        if chunked:
            if store.count_users(key) <= WHOLE_STATE_USERS:
                self._state = store.load_fingerprints(key)
            else:
                self._index = store.load_fingerprint_index(key, owns)  # a shard's users only
        self.summary: UsersPlan | None = None
        self.valid_rows = 0
        self._rejected: list[pd.DataFrame] = []
        self.by_day = DayCounts()
        self.seconds = 0.0

    @property
    def rejected(self) -> pd.DataFrame:
        return pd.concat(self._rejected, ignore_index=True) if len(self._rejected) > 1 else self._rejected[0]

    @property
    def rejected_rows(self) -> int:
        return sum(len(part) for part in self._rejected)

    def plans(self, mapped: Frame, log: Callable[[str], None] | None) -> Iterator[_Planned]:
        """Each chunk's plan in turn (`log`: a line per chunk, for a chunked read)."""
        done, total = 0, len(mapped)
        for index, chunk in enumerate(chunks_of(mapped)):
            planned = self.plan(chunk)
            done += len(chunk)
            if log is not None:
                counts = planned.plan.counts
                log(
                    f"{self.sync.name}: rows {done - len(chunk) + 1}-{done} of {total} (chunk {index + 1}): "
                    f"{counts['new']} new, {counts['changed']} changed, {counts['retry']} to retry, "
                    f"{counts['unchanged']} unchanged, {len(planned.rejected)} rejected"
                )
            yield planned

    def plan(self, chunk: pd.DataFrame) -> _Planned:
        started = time.perf_counter()
        store, key = self.store, self.key
        valid = valid_rows(chunk)
        rejected = rejected_rows(chunk)
        # a chunk looks up its own users; a frame in one piece of many users reads the state whole
        state = self._state
        if self._index is not None:
            state = self._index.frame(
                valid[UID], lambda uids: store.load_fingerprints(key, uids, by_uid=True)
            )
        elif state is None:
            state = store.load_fingerprints(key, valid[UID] if len(valid) <= 20_000 else None)
        plan = plan_users(
            valid,
            state,
            keys=list(self.sync.attributes),
            nulls=self.sync.nulls,
            full_resync=self.full_resync,
            load_delivered=lambda uids: store.load_delivered(key, uids),
            salt=spec_salt(self.sync),
            read_at=self.read_at,
            load_read_times=lambda uids: store.load_read_times(key, uids),
        )
        by_day, user_days = plan_by_day(chunk, plan)
        self.by_day.merge(by_day)
        self._rejected.append(rejected)
        self.valid_rows += len(valid)
        self._add(plan)
        self.seconds += time.perf_counter() - started
        return _Planned(chunk, valid, rejected, plan, user_days)

    def _add(self, plan: UsersPlan) -> None:
        if self.summary is None:  # the first chunk's plan, its counts added to by the others'
            self.summary = dataclasses.replace(plan, counts=dict(plan.counts))
            return
        for name, count in plan.counts.items():
            self.summary.counts[name] += count
        if self.summary.candidates.empty and not plan.candidates.empty:  # the sample: the first that sends
            self.summary.candidates, self.summary.previous = plan.candidates, plan.previous
            self.summary.bodies = plan.bodies

    def log_totals(self, log: Callable[[str], None], unread: int) -> None:
        counts = self.summary.counts
        log(
            f"{self.sync.name}: plan for {self.valid_rows} valid users: {counts['new']} new, {counts['changed']} changed, "
            f"{counts['retry']} to retry, {counts['unchanged']} unchanged"
            + (f" (and {unread} unread, their digest unmoved)" if unread else "")
            + (
                f", {counts['stale_skipped']} skipped as stale (a later read already delivered them)"
                if counts["stale_skipped"]
                else ""
            )
            + (f", {counts['resync']} to resync" if self.full_resync else "")
            + f"; {self.rejected_rows} rows rejected"
        )


def _outcomes_recorder(
    store: StateStore,
    key: str,
    run_id: str,
    read_at: int | None,
    digest_of: dict[str, int],
    by_day: DayCounts,
    user_days: dict[str, str | None],
) -> Callable[[list[tuple[UserRequest, Response]]], None]:
    def record(batch: list[tuple[UserRequest, Response]]) -> None:
        # the store writes them in uid order and retries a transaction aborted by a concurrent run's writes
        store.record_user_outcomes(
            key,
            run_id,
            [
                UserOutcome.answered(
                    request.user_uid,
                    request.keys,
                    response,
                    delivered_after=request.delivered_after if response.ok else None,
                    fingerprint=request.fingerprint,
                    read_at=read_at,
                    source_digest=digest_of.get(request.user_uid),
                )
                for request, response in batch
            ],
        )
        if user_days:
            for request, response in batch:
                day = user_days.get(request.user_uid)
                by_day.add(day, "users_delivered" if response.ok else "users_failed")
                by_day.add(day, "requests_sent", response.attempts)

    return record


def _progress(
    sync: UsersSync, log: Callable[[str], None], before: int
) -> Callable[[int, int | None, DeliveryReport], None]:
    """The delivery's progress line; the users sent before this chunk (`before`) count on."""

    def progress(done: int, total: int | None, report: DeliveryReport) -> None:
        sent = (
            f"{done} of {total} users sent" if not before else f"{done} of {total} users of this chunk sent"
        )
        so_far = f", {before + done} in all" if before else ""
        log(f"{sync.name}: {sent} ({report.delivered} delivered, {report.failed} failed{so_far})")

    return progress


def _leavers(
    sync: UsersSync,
    mapped: Frame,
    store: StateStore,
    key: str,
    present: Iterable[str] | None,
    scope: str,
    shard: tuple[int, int] | None,
    read_at: int | None,
) -> Leavers | None:
    """The users who left, for a sync with `on_delete: clear` and a run that read the whole source."""
    if sync.on_delete != "clear":
        return None
    if present is None:
        if scope != "all" or shard is not None:
            return None  # a window of days cannot tell who left; a shard's rows lack others' rejections
        present = present_uids(mapped)  # a read by digests: every uid it saw, read whole or not
        if present is None:
            present = mapped.column(UID) if isinstance(mapped, ChunkedFrame) else mapped[UID]
    owns = None
    if shard is not None:
        index, count = shard
        owns = lambda uids: shard_of(uids, count) == index  # noqa: E731
    return find_leavers(sync, store, key, present, owns=owns, read_at=read_at)


def _row_digests(
    mapped: pd.DataFrame, valid: pd.DataFrame, plan: UsersPlan
) -> tuple[list[tuple[str, int, int]], dict[str, int]]:
    """The database digests of the rows read whole (engine/digests.py): (uid, digest, fingerprint) of the
    users this run sends nothing (their digest is stored now), and uid -> digest of those it sends (stored
    with their confirmed delivery). Rows read again by uid for a resend carry none."""
    if DIGEST not in mapped or valid.empty or plan.prints is None:
        return [], {}
    digests = mapped[DIGEST].reindex(valid.index).to_numpy(dtype=object)
    has = np.fromiter((d is not None and d == d for d in digests), dtype=bool, count=len(digests))
    sending = valid.index.isin(plan.candidates.index)
    sending |= valid[UID].isin(plan.stale).to_numpy()
    prints = plan.prints.reindex(valid.index).to_numpy()
    uids = valid[UID].to_numpy()
    quiet = np.flatnonzero(has & ~sending)
    unchanged = [(uids[i], int(digests[i]), int(prints[i])) for i in quiet]
    digest_of = {uids[i]: int(digests[i]) for i in np.flatnonzero(has & sending)}
    return unchanged, digest_of


def _clear(
    sync: UsersSync,
    store: StateStore,
    key: str,
    run_id: str,
    leavers: Leavers | None,
    client: EdgeClient | None,
    concurrency: int | None,
    log: Callable[[str], None],
) -> DeliveryReport[ClearRequest]:
    """Send the leavers their clears; the state forgets each one confirmed (and those with nothing to clear)."""
    report: DeliveryReport[ClearRequest] = DeliveryReport()
    if leavers is None or not leavers.total:
        return report

    def record(batch: list[tuple[ClearRequest, Response]]) -> None:
        store.record_clears(
            key,
            run_id,
            [
                UserOutcome.answered(
                    request.user_uid,
                    request.keys,
                    response,
                    delivered_after=None,
                    fingerprint=None,
                    request="clear",
                )
                for request, response in batch
            ],
        )

    if leavers.nothing_sent:  # no key of theirs on record: forgotten, with a log row that says so
        record([(ClearRequest(uid, {}), Response(True, None, 0, 0.0)) for uid in leavers.nothing_sent])
    if leavers.requests:
        assert client is not None, "a real push needs an Edge client"
        report = deliver(
            leavers.requests,
            lambda request: client.update_attributes(request.user_uid, request.body),
            client=client,
            concurrency=concurrency or sync.concurrency,
            record=record,
            total=len(leavers.requests),
        )
    log(
        f"{sync.name}: {report.delivered + len(leavers.nothing_sent)} users who left the source cleared"
        + (f", {report.failed} clears failed (tried again by the next whole read)" if report.failed else "")
    )
    return report


def plan_by_day(mapped: pd.DataFrame, plan: UsersPlan) -> tuple[DayCounts, dict[str, str | None]]:
    """The read and the plan counted by the day of each row (nothing for a frame without days), and the day
    of each valid user, by which its delivery is counted."""
    by_day = DayCounts()
    if DAY not in mapped:
        return by_day, {}
    valid = mapped[REJECTION].isna().to_numpy()
    by_day.count("rows_read", mapped[DAY])
    by_day.count("rows_rejected", mapped.loc[~valid, DAY])
    uids, days = mapped.loc[valid, UID], mapped.loc[valid, DAY]
    user_days = dict(zip(uids, days, strict=True))
    candidates = plan.candidates
    to_send = candidates[UID].map(user_days)
    by_day.count("users_changed", to_send)
    by_day.count("users_new", to_send[(candidates["_reason"] == NEW).to_numpy()])
    by_day.count("users_retried", to_send[(candidates["_reason"] == RETRY).to_numpy()])
    by_day.count("users_stale_skipped", (user_days.get(uid) for uid in plan.stale))
    unchanged = ~uids.isin(candidates[UID]).to_numpy() & ~uids.isin(plan.stale).to_numpy()
    by_day.count("users_unchanged", days[unchanged])
    return by_day, user_days
