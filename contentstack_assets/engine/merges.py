"""One push of a merges sync: map the identity pairs, plan the pairs not merged yet, merge them, record each.

Row rules: both uids follow the user-uid rule (trimmed; missing or invalid rejected).
A row is set aside, with its reason, for a merge of a uid into itself and for every pair of a source uid
that appears with more than one target (which known user is it?). Repeated identical pairs count as one.
Each pair is merged once per sync, ever: the state (`cs_items`) keeps the merged pairs; a pair whose
request failed is due again on the next run.

The Edge merges one pair per request (`POST /user-attributes/actions/merge`, the source's values win).
Chains go in order: a pair whose source is the target of another pair due in the same run waits for that
pair (a -> b is merged before b -> c, so what a knew reaches c); within a wave, pairs go in parallel. A pair
is sent only once every pair into its source uid is merged: when a -> b failed (or was held itself), b -> c
waits for a later run instead of leaving a's values behind for good. The pairs of a cycle do not wait for one
another, only for the pairs into the cycle.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert import convert_uids
from contentstack_assets.engine.deliver import DeliveryReport, deliver
from contentstack_assets.engine.mapping import add_reasons
from contentstack_assets.engine.state import ItemOutcome, StateStore, UserOutcome
from contentstack_assets.personalize.client import EdgeClient, Response
from contentstack_assets.spec import MergesSync, UsersSync
from contentstack_assets.wire import REJECTION, ROW, UID

SOURCE_UID = "source_uid"
TARGET_UID = "target_uid"
SELF_MERGE = "merge of a uid into itself"
MANY_TARGETS = "source uid appears with more than one target"
_PAIR_SEPARATOR = "\t"  # never inside a valid uid (printable ASCII only)


def merges_source_columns(sync: MergesSync) -> list[str]:
    return list(dict.fromkeys([sync.merge.source_column, sync.merge.target_column]))


def pair_id(source_uid: str, target_uid: str) -> str:
    """The state's item id of a merge pair."""
    return f"{source_uid}{_PAIR_SEPARATOR}{target_uid}"


def map_merges(raw: pd.DataFrame, sync: MergesSync) -> pd.DataFrame:
    """source_uid, target_uid, `_row`, `_rejection` (every reason, "; "-joined) per source row."""
    raw = raw.reset_index(drop=True)
    source_column, target_column = sync.merge.source_column, sync.merge.target_column
    sources = convert_uids(raw[source_column])
    targets = convert_uids(raw[target_column])
    reasons = np.full(len(raw), None, dtype=object)
    add_reasons(reasons, sources.errors, prefix=f"{source_column}: ")
    add_reasons(reasons, targets.errors, prefix=f"{target_column}: ")

    both = (sources.values.notna() & targets.values.notna()).to_numpy()
    self_merge = both & (sources.values.to_numpy(dtype=object) == targets.values.to_numpy(dtype=object))
    add_reasons(reasons, pd.Series(np.where(self_merge, SELF_MERGE, None), dtype=object))
    pairs = pd.DataFrame({"s": sources.values, "t": targets.values}).loc[both]
    target_counts = pairs.drop_duplicates().groupby("s")["t"].count()
    ambiguous = set(target_counts.index[target_counts.to_numpy() > 1])
    many = both & sources.values.isin(ambiguous).to_numpy()
    add_reasons(reasons, pd.Series(np.where(many, MANY_TARGETS, None), dtype=object))

    return pd.DataFrame(
        {
            SOURCE_UID: _shown(sources.values, raw[source_column]),
            TARGET_UID: _shown(targets.values, raw[target_column]),
            ROW: pd.Series(np.arange(1, len(raw) + 1), dtype="int64"),
            REJECTION: pd.Series(reasons, dtype=object),
        }
    )


def _shown(uids: pd.Series, raw: pd.Series) -> pd.Series:
    """The uid, or for a rejected one the start of the stored value (to find the row)."""

    def shorten(value: object) -> str | None:
        if value is None or (isinstance(value, float) and value != value):
            return None
        text = str(value)
        return text if len(text) <= 64 else text[:63] + "…"

    return pd.Series(uids.where(uids.notna(), raw.map(shorten)).to_numpy(dtype=object), dtype=object)


def valid_pairs(frame: pd.DataFrame) -> pd.DataFrame:
    """The distinct valid pairs, in order of first appearance."""
    valid = frame.loc[frame[REJECTION].isna(), [SOURCE_UID, TARGET_UID]]
    return valid.drop_duplicates().reset_index(drop=True)


def rejected_merges(frame: pd.DataFrame) -> pd.DataFrame:
    """row_number, user_uid (the source uid), target_uid, reason of the rows set aside."""
    rejected = frame.loc[frame[REJECTION].notna(), [ROW, SOURCE_UID, TARGET_UID, REJECTION]]
    return rejected.rename(columns={ROW: "row_number", SOURCE_UID: UID, REJECTION: "reason"})


# -- the plan --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class MergeRequest:
    source_uid: str
    target_uid: str

    @property
    def item_id(self) -> str:
        return pair_id(self.source_uid, self.target_uid)


@dataclass
class MergesPlan:
    waves: list[list[MergeRequest]]
    pairs_repeated: int
    merges_already_delivered: int

    @property
    def merges_to_send(self) -> int:
        return sum(len(wave) for wave in self.waves)

    def sample(self, limit: int = 10) -> list[dict]:
        return [
            {"source_uid": r.source_uid, "target_uid": r.target_uid} for wave in self.waves for r in wave
        ][:limit]


def merge_waves(requests: list[MergeRequest]) -> list[list[MergeRequest]]:
    """Order a run's pairs so that every pair into a uid goes before the pairs out of it; a cycle goes last."""
    waves: list[list[MergeRequest]] = []
    pending = list(requests)
    while pending:
        targets = {request.target_uid for request in pending}
        ready = [request for request in pending if request.source_uid not in targets]
        if not ready:  # a cycle (a -> b, b -> a): no order helps
            waves.append(pending)
            break
        waves.append(ready)
        chosen = {id(request) for request in ready}
        pending = [request for request in pending if id(request) not in chosen]
    return waves


def plan_merges(pairs: pd.DataFrame, delivered: set[str], rows_valid: int) -> MergesPlan:
    requests = [
        MergeRequest(source, target)
        for source, target in zip(pairs[SOURCE_UID].to_numpy(), pairs[TARGET_UID].to_numpy(), strict=True)
    ]
    due = [request for request in requests if request.item_id not in delivered]
    return MergesPlan(merge_waves(due), rows_valid - len(pairs), len(requests) - len(due))


@dataclass(frozen=True)
class WaitingPair:
    """A pair held back in this run: `feeder`, a pair into its source uid, is not merged (`why`: failed,
    not sent, or waiting itself)."""

    request: MergeRequest
    feeder: MergeRequest
    why: str

    @property
    def reason(self) -> str:
        return f"waits for {self.feeder.source_uid} -> {self.feeder.target_uid} ({self.why})"


def pairs_into(requests: Sequence[MergeRequest]) -> dict[str, list[MergeRequest]]:
    """The pairs into each uid (the pairs that feed the pairs out of it)."""
    into: dict[str, list[MergeRequest]] = {}
    for request in requests:
        into.setdefault(request.target_uid, []).append(request)
    return into


def hold_back(
    wave: list[MergeRequest], into: dict[str, list[MergeRequest]], unmerged: dict[str, str]
) -> tuple[list[MergeRequest], list[WaitingPair]]:
    """Split a wave into the pairs to send and the pairs that wait: a pair waits while a pair into its source
    uid is in `unmerged` (item id -> why, from the earlier waves of the run). Within a wave only the pairs of a
    cycle feed one another; they are sent together, except that when one waits, the pairs it feeds wait too."""
    out_of: dict[str, list[MergeRequest]] = {}
    for request in wave:
        out_of.setdefault(request.source_uid, []).append(request)
    queue = deque(
        (request, feeder, unmerged[feeder.item_id])
        for request in wave
        for feeder in into.get(request.source_uid, ())
        if feeder.item_id in unmerged
    )
    waiting: dict[str, WaitingPair] = {}
    while queue:
        request, feeder, why = queue.popleft()
        if request.item_id not in waiting:
            waiting[request.item_id] = WaitingPair(request, feeder, why)
            queue.extend((fed, request, "waiting") for fed in out_of.get(request.target_uid, ()))
    ready = [request for request in wave if request.item_id not in waiting]
    return ready, [waiting[request.item_id] for request in wave if request.item_id in waiting]


def stuck_waiting(
    waiting: Sequence[WaitingPair], stuck: set[str], into: dict[str, list[MergeRequest]]
) -> set[str]:
    """The waiting pairs that wait, directly or down a chain, for a stuck pair (item ids)."""
    fed: dict[str, list[str]] = {}
    for pair in waiting:
        for feeder in into.get(pair.request.source_uid, ()):
            fed.setdefault(feeder.item_id, []).append(pair.request.item_id)
    found: set[str] = set()
    queue = deque(stuck)
    while queue:
        for item in fed.get(queue.popleft(), ()):
            if item not in found and item not in stuck:
                found.add(item)
                queue.append(item)
    return found


# -- one push --------------------------------------------------------------------------------------------
@dataclass
class MergesPushResult:
    rows_read: int
    rows_rejected: int
    plan: MergesPlan
    report: DeliveryReport[MergeRequest]
    rejected: pd.DataFrame
    dry_run: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    failed_stuck: int = 0  # pairs that failed in this run and in at least `stuck_after_runs` runs in all
    waiting: list[WaitingPair] = field(default_factory=list)
    waiting_stuck: int = 0  # waiting pairs held back, directly or down a chain, by a stuck pair

    @property
    def merges_stuck(self) -> int:
        return self.failed_stuck + self.waiting_stuck

    @property
    def failed_share(self) -> float:
        """The share of failed pairs among those tried, stuck pairs left out of both: a pair the API has
        refused run after run is reported (and still retried), but no longer holds up every run."""
        fresh = self.report.failed - self.failed_stuck
        tried = self.report.delivered + fresh
        return fresh / tried if tried else 0.0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows_read": self.rows_read,
            "rows_rejected": self.rows_rejected,
            "pairs_repeated": self.plan.pairs_repeated,
            "merges_new": self.plan.merges_to_send,
            "merges_already_delivered": self.plan.merges_already_delivered,
            "merges_delivered": self.report.delivered,
            "merges_failed": self.report.failed,
            "merges_waiting": len(self.waiting),
            "merges_stuck": self.merges_stuck,
            "requests_sent": self.report.requests_sent,
        }


def push_merges(
    sync: MergesSync,
    raw: pd.DataFrame,
    *,
    client: EdgeClient | None,
    store: StateStore,
    run_id: str,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
    resend_in: Sequence[UsersSync] = (),
) -> MergesPushResult:
    """Map, plan and merge the pairs of `raw` (the source rows of the run).

    `resend_in`: the users syncs (same project) that depend on this merges sync. Each confirmed merge marks
    its target there, in the transaction that records it, to be resent whole by their next push
    (engine/resend.py): the merge gave the known user the anonymous user's values."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    mapped = map_merges(raw, sync)
    rejected = rejected_merges(mapped)
    pairs = valid_pairs(mapped)
    key = store.key_of(sync)
    resend_keys = [store.key_of(users_sync) for users_sync in resend_in]
    delivered = store.delivered_items(
        key, [pair_id(s, t) for s, t in zip(pairs[SOURCE_UID], pairs[TARGET_UID], strict=True)]
    )
    plan = plan_merges(pairs, delivered, rows_valid=len(mapped) - len(rejected))
    timings["plan"] = time.perf_counter() - started
    log(
        f"{sync.name}: {len(pairs)} distinct valid pairs ({plan.merges_to_send} to merge in {len(plan.waves)} "
        f"wave(s), {plan.merges_already_delivered} merged before); {len(rejected)} rows rejected"
    )
    result = MergesPushResult(len(raw), len(rejected), plan, DeliveryReport(), rejected, dry_run, timings)
    if dry_run:
        return result

    store.start_run(key, run_id, "all", dry_run=False)
    store.prune(key, sync.log_retention_days)
    store.record_rejections(key, run_id, rejected.drop(columns=[TARGET_UID]))

    merged: set[str] = set()
    failed: set[str] = set()
    unmerged: dict[str, str] = {}  # the pairs of earlier waves not merged in this run, with why
    into = pairs_into([request for wave in plan.waves for request in wave])

    def record(batch: list[tuple[MergeRequest, Response]]) -> None:
        for request, response in batch:
            (merged if response.ok else failed).add(request.item_id)
        store.record_item_requests(
            key,
            run_id,
            [_outcomes(request, response) for request, response in batch],
            resend_in=resend_keys,
        )

    delivery_started = time.perf_counter()
    for wave in plan.waves:
        assert client is not None, "a real push needs an Edge client"
        ready, waiting = hold_back(wave, into, unmerged)
        report = deliver(
            ready,
            lambda request: client.merge_users(request.source_uid, request.target_uid),
            client=client,
            concurrency=sync.concurrency,
            record=record,
            total=len(ready),
        )
        result.report.merge(report)
        result.waiting.extend(waiting)
        for request in ready:
            if request.item_id not in merged:
                unmerged[request.item_id] = "failed" if request.item_id in failed else "not sent"
        unmerged.update((pair.request.item_id, "waiting") for pair in waiting)
        log(f"{sync.name}: {result.report.delivered} pairs merged, {result.report.failed} failed")
    timings["deliver"] = time.perf_counter() - delivery_started
    if failed:
        failed_runs = store.item_failed_runs(key, failed)
        stuck = {item for item in failed if failed_runs.get(item, 0) >= sync.stuck_after_runs}
        result.failed_stuck = len(stuck)
        result.waiting_stuck = len(stuck_waiting(result.waiting, stuck, into))
    if result.waiting:
        first = result.waiting[0]
        log(
            f"{sync.name}: {len(result.waiting)} pairs wait for a pair into their source uid not merged yet "
            f"(first: {first.request.source_uid} -> {first.request.target_uid} {first.reason}); a later run "
            "sends them once it is merged"
        )
    store.finish_run(key, run_id, result.counts)
    return result


def _outcomes(request: MergeRequest, response: Response) -> tuple[list[ItemOutcome], UserOutcome]:
    # logged under the known (target) user, whose history it is; `keys` names the uid merged into it
    item = ItemOutcome(request.item_id, request.target_uid, response.ok, response.status, response.error)
    logged = UserOutcome.answered(
        request.target_uid,
        (request.source_uid,),
        response,
        delivered_after=None,
        fingerprint=None,
        request="merge",
    )
    return [item], logged
