"""One push of an events sync: map the rows, plan the events not delivered yet, send them, record each one.

Row rules: the user uid as for users syncs (the user-uid rule, minus the duplicate rule: a user
has many events); the event id is the column's text, trimmed; the event key is trimmed. A row is set aside,
with its reason, for a null (or blank) event id, for every row of an event id that appears more than once in
what the run reads, for an empty event key, and for a key the project does not know when its event list is
known (Management API). Each valid event id is delivered once per sync, ever: the state (`cs_items`) keeps
the delivered ids, so a rerun or an overlapping backfill sends nothing twice, and an id whose request failed
is due again on the next run. The new events of one user go out as one `POST /events` with a JSON array; a
request the API refuses with a 400 is split in halves, and the halves are sent again, until each refused event
fails alone (one unknown key must not hold back the other events of its user, run after run).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert import convert_uids, shorten
from contentstack_assets.engine.days import DayCounts
from contentstack_assets.engine.deliver import DeliveryReport, deliver
from contentstack_assets.engine.mapping import add_reasons, day_column, rejected_rows, valid_rows
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.engine.state import ItemOutcome, StateStore, UserOutcome
from contentstack_assets.personalize.client import EdgeClient, Response
from contentstack_assets.spec import EventsSync
from contentstack_assets.wire import DAY, REJECTION, ROW, UID

EVENT_ID = "event_id"
EVENT_KEY = "event_key"
MAX_EVENT_ID_LENGTH = 512  # the state's item ids hold 600 characters
# Payload limits of POST /events are not documented: a user with more new events than this in one run gets
# several requests of this many events each, rather than one body of unbounded size.
MAX_EVENTS_PER_REQUEST = 1000
# A partitioned run re-reads at most this many failed events from outside its window (the oldest first).
MAX_REREAD = 20_000

MISSING_EVENT_ID = "missing event id"
INVALID_EVENT_ID = "invalid event id"
DUPLICATE_EVENT_ID = "duplicate event id"
EMPTY_EVENT_KEY = "empty event key"
INVALID_EVENT_KEY = "invalid event key"


def events_source_columns(sync: EventsSync) -> list[str]:
    """The columns an events sync reads: match, event id, event key (unless fixed), the partition column."""
    columns = [sync.match.column, sync.event.id_column]
    if sync.event.key_column:
        columns.append(sync.event.key_column)
    if sync.source.occurred_at:
        columns.append(sync.source.occurred_at)
    return list(dict.fromkeys(columns))


# -- row rules -------------------------------------------------------------------------------------------
def _is_null(value: object) -> bool:
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    return isinstance(value, float | np.floating | Decimal) and value != value  # NaN


def _text(value: object) -> str | None:
    """A value's text, trimmed, for ids and keys: integral numbers without a fraction (a NULL in an integer
    column makes it float: 42.0 is id "42"); None for bytes and non-finite floats, which name nothing."""
    if isinstance(value, bytes | bytearray | memoryview):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating | Decimal):
        finite = value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)
        if not finite:
            return None
        return str(int(value)) if value == int(value) else str(value)
    return str(value).strip()


def event_ids(values: pd.Series) -> tuple[pd.Series, pd.Series]:
    """Event ids as trimmed text, and a reason (or None) per row."""
    ids = np.full(len(values), None, dtype=object)
    errors = np.full(len(values), None, dtype=object)
    for index, value in enumerate(values.to_numpy(dtype=object)):
        if _is_null(value):
            errors[index] = MISSING_EVENT_ID
            continue
        text = _text(value)
        if text is None or len(text) > MAX_EVENT_ID_LENGTH:
            errors[index] = f"{INVALID_EVENT_ID} {shorten(value)}"
        elif not text:
            errors[index] = MISSING_EVENT_ID
        else:
            ids[index] = text
    return pd.Series(ids, dtype=object), pd.Series(errors, dtype=object)


def event_keys(
    values: pd.Series, known_keys: Collection[str] | None, project_uid: str
) -> tuple[pd.Series, pd.Series]:
    """Event keys trimmed, and a reason (or None) per row: empty, not text, or unknown to the project."""
    keys = np.full(len(values), None, dtype=object)
    errors = np.full(len(values), None, dtype=object)
    known = None if known_keys is None else set(known_keys)
    for index, value in enumerate(values.to_numpy(dtype=object)):
        text = None if _is_null(value) else _text(value)
        if _is_null(value) or text == "":
            errors[index] = EMPTY_EVENT_KEY
        elif text is None:
            errors[index] = f"{INVALID_EVENT_KEY} {shorten(value)}"
        elif known is not None and text not in known:
            errors[index] = f"unknown event key {shorten(text)}: not an event of project {project_uid}"
        else:
            keys[index] = text
    return pd.Series(keys, dtype=object), pd.Series(errors, dtype=object)


def map_events(
    raw: pd.DataFrame, sync: EventsSync, known_keys: Collection[str] | None = None
) -> pd.DataFrame:
    """user_uid, event_id, event_key, `_row` and `_rejection` (every reason, "; "-joined) per source row.

    `known_keys`: the project's event keys (None when unknown: no key is then rejected as unknown)."""
    raw = raw.reset_index(drop=True)
    uids = convert_uids(raw[sync.match.column])
    reasons = np.full(len(raw), None, dtype=object)
    add_reasons(reasons, uids.errors)

    ids, id_errors = event_ids(raw[sync.event.id_column])
    add_reasons(reasons, id_errors)
    duplicated = ids.notna() & ids.duplicated(keep=False)
    add_reasons(reasons, pd.Series(np.where(duplicated, DUPLICATE_EVENT_ID, None), dtype=object))

    if sync.event.key_column:
        key_values = raw[sync.event.key_column]
    else:
        key_values = pd.Series([sync.event.key] * len(raw), dtype=object)
    keys, key_errors = event_keys(key_values, known_keys, sync.destination.project_uid)
    add_reasons(reasons, key_errors)

    shown_uids = uids.values.where(uids.values.notna(), raw[sync.match.column].map(_shown))
    shown_ids = ids.where(ids.notna(), raw[sync.event.id_column].map(_shown))
    return pd.DataFrame(
        {
            UID: pd.Series(shown_uids.to_numpy(dtype=object), dtype=object),
            EVENT_ID: pd.Series(shown_ids.to_numpy(dtype=object), dtype=object),
            EVENT_KEY: keys,
            ROW: pd.Series(np.arange(1, len(raw) + 1), dtype="int64"),
            REJECTION: pd.Series(reasons, dtype=object),
            **day_column(raw, sync.source.partition_column),
        }
    )


def rejected_events(frame: pd.DataFrame) -> pd.DataFrame:
    """row_number, user_uid, event_id, reason of the rows set aside."""
    rejected = rejected_rows(frame)
    rejected.insert(2, EVENT_ID, frame.loc[rejected.index, EVENT_ID])
    return rejected


def _shown(value: object) -> str | None:
    if _is_null(value):
        return None
    text = str(value)
    return text if len(text) <= 64 else text[:63] + "…"


# -- the plan --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class EventsRequest:
    """One `POST /events`: some new events of one user, in source order."""

    user_uid: str
    event_ids: tuple[str, ...]
    event_keys: tuple[str, ...]


@dataclass
class EventsPlan:
    requests: list[EventsRequest]
    events_new: int
    events_already_delivered: int

    @property
    def users_to_send(self) -> int:
        return len({request.user_uid for request in self.requests})

    def sample(self, limit: int = 10) -> list[dict]:
        return [
            {
                "user_uid": r.user_uid,
                "events": len(r.event_ids),
                "body": [{"eventKey": k, "type": "EVENT"} for k in r.event_keys],
            }
            for r in self.requests[:limit]
        ]


def plan_events(
    valid: pd.DataFrame, delivered: Collection[str], max_per_request: int = MAX_EVENTS_PER_REQUEST
) -> EventsPlan:
    """The valid events not delivered yet, grouped per user (users in order of their first new event)."""
    due = ~valid[EVENT_ID].isin(list(delivered)) if len(delivered) else pd.Series(True, index=valid.index)
    new = valid.loc[due]
    grouped: dict[str, tuple[list[str], list[str]]] = {}
    for uid, event_id, key in zip(
        new[UID].to_numpy(), new[EVENT_ID].to_numpy(), new[EVENT_KEY].to_numpy(), strict=True
    ):
        ids, keys = grouped.setdefault(uid, ([], []))
        ids.append(event_id)
        keys.append(key)
    requests = [
        EventsRequest(
            uid, tuple(ids[start : start + max_per_request]), tuple(keys[start : start + max_per_request])
        )
        for uid, (ids, keys) in grouped.items()
        for start in range(0, len(ids), max_per_request)
    ]
    return EventsPlan(requests, events_new=len(new), events_already_delivered=int((~due).sum()))


# -- one push --------------------------------------------------------------------------------------------
@dataclass
class EventsPushResult:
    rows_read: int
    rows_reread: int
    rows_rejected: int
    plan: EventsPlan
    report: DeliveryReport[EventsRequest]
    rejected: pd.DataFrame
    events_delivered: int = 0
    events_failed: int = 0
    dry_run: bool = False
    timings_s: dict[str, float] = field(default_factory=dict)
    users_failed: set[str] = field(default_factory=set)
    events_gone: int = 0  # failed events the re-read did not find in the source: dropped from the retries
    # events of a request whose answer was lost after it went out: resent (`event.unconfirmed: resend`), so
    # perhaps counted twice, or never resent (`skip`), so perhaps not counted at all
    events_unconfirmed: int = 0
    events_stuck: int = 0  # events that failed in this run and in at least `stuck_after_runs` runs in a row
    stuck_sample: list[dict] = field(default_factory=list)
    # a partitioned run's counts by the day of each event's row; a request (and its user) counts on the day
    # of its first event
    by_day: DayCounts = field(default_factory=DayCounts)

    @property
    def failed_share(self) -> float:
        """The share of failed events among those tried, stuck events left out of both: an event the API has
        refused run after run is reported (and still retried), but no longer holds up every run."""
        fresh = self.events_failed - self.events_stuck
        tried = self.events_delivered + fresh
        return fresh / tried if tried else 0.0

    @property
    def counts(self) -> dict[str, int]:
        return {
            "rows_read": self.rows_read,
            "rows_reread": self.rows_reread,
            "rows_rejected": self.rows_rejected,
            "events_new": self.plan.events_new,
            "events_already_delivered": self.plan.events_already_delivered,
            "events_delivered": self.events_delivered,
            "events_failed": self.events_failed,
            "events_stuck": self.events_stuck,
            "events_gone": self.events_gone,
            "events_unconfirmed": self.events_unconfirmed,
            "users_sent": self.plan.users_to_send,
            "requests_sent": self.report.requests_sent,
        }


def push_events(
    sync: EventsSync,
    raw: pd.DataFrame,
    *,
    client: EdgeClient | None,
    store: StateStore,
    run_id: str,
    scope: str = "all",
    known_keys: Collection[str] | None = None,
    read_pending: Callable[[list[str]], pd.DataFrame] | None = None,
    dry_run: bool = False,
    log: Callable[[str], None] = print,
) -> EventsPushResult:
    """Map, plan and deliver the events of `raw` (the source rows of the run).

    `read_pending(ids)`: for a run over a window of days, reads the source rows of events whose earlier
    delivery failed and that lie outside the window, so that a failed event is retried by the next run
    whichever days it covers."""
    timings: dict[str, float] = {}
    started = time.perf_counter()
    rows_read = len(raw)
    rows_reread = 0
    gone: list[str] = []
    if read_pending is not None:
        extra, gone = _pending_rows(sync, raw, store, read_pending)
        if gone:
            log(
                f"{sync.name}: {len(gone)} events that failed earlier are no longer in the source: not retried"
            )
        if len(extra):
            rows_reread = len(extra)
            log(f"{sync.name}: {rows_reread} rows of events that failed earlier re-read from the source")
            raw = pd.concat([raw.reset_index(drop=True), extra.reset_index(drop=True)], ignore_index=True)
    mapped = map_events(raw, sync, known_keys)
    valid = valid_rows(mapped)
    rejected = rejected_events(mapped)
    plan = plan_events(valid, store.delivered_items(store.key_of(sync), valid[EVENT_ID]))
    timings["plan"] = time.perf_counter() - started
    log(
        f"{sync.name}: {len(valid)} valid events ({plan.events_new} new for {plan.users_to_send} users, "
        f"{plan.events_already_delivered} delivered before); {len(rejected)} rows rejected"
    )
    report: DeliveryReport[EventsRequest] = DeliveryReport()
    result = EventsPushResult(
        rows_read, rows_reread, len(rejected), plan, report, rejected, dry_run=dry_run, timings_s=timings
    )
    result.events_gone = len(gone)
    event_days = _plan_by_day(result, mapped, valid, rows_read)
    if dry_run:
        return result

    key = store.key_of(sync)
    store.start_run(key, run_id, scope, dry_run=False)
    store.prune(key, sync.log_retention_days)
    store.record_rejections(key, run_id, rejected.drop(columns=[EVENT_ID]))
    store.forget_failed_items(key, gone)

    resend_lost = sync.event.unconfirmed == "resend"
    refused: list[EventsRequest] = []  # requests of several events refused with a 400: to be split
    skipped: list[EventsRequest] = []  # answers lost and not to be resent: unconfirmed, not failed
    failed: list[ItemOutcome] = []

    def record(batch: list[tuple[EventsRequest, Response]]) -> None:
        outcomes = []
        for request, response in batch:
            if _to_split(request, response):
                # logged, but its events are decided by its halves: a failure here would count a run twice
                refused.append(request)
                outcomes.append(([], _outcomes(request, response)[1]))
                continue
            if response.answer_lost:
                result.events_unconfirmed += len(request.event_ids)
            if response.answer_lost and not resend_lost:
                skipped.append(request)
                outcomes.append(_unconfirmed_outcomes(request, response))
                continue
            outcome = _outcomes(request, response)
            outcomes.append(outcome)
            if response.ok:
                result.events_delivered += len(request.event_ids)
            else:
                result.events_failed += len(request.event_ids)
                result.users_failed.add(request.user_uid)
                failed.extend(outcome[0])
            if event_days:
                name = "events_delivered" if response.ok else "events_failed"
                result.by_day.count(name, (event_days.get(event_id) for event_id in request.event_ids))
        if event_days:
            for request, response in batch:
                result.by_day.add(event_days.get(request.event_ids[0]), "requests_sent", response.attempts)
        store.record_item_requests(key, run_id, outcomes)

    def progress(done: int, total: int | None, report: DeliveryReport) -> None:
        log(
            f"{sync.name}: {done} of {total} requests sent ({result.events_delivered} events delivered, {result.events_failed} failed)"
        )

    delivery_started = time.perf_counter()
    requests = plan.requests
    while requests:
        assert client is not None, "a real push needs an Edge client"
        report = deliver(
            requests,
            lambda request: client.track_events(
                request.user_uid, list(request.event_keys), resend_lost=resend_lost
            ),
            client=client,
            concurrency=sync.concurrency,
            record=record,
            total=len(requests),
            on_progress=progress,
        )
        # a split request is no failure: its events are tried again in its halves; nor is an unconfirmed one
        report.failed -= len(refused) + len(skipped)
        report.failures = [
            (r, response)
            for r, response in report.failures
            if not _to_split(r, response) and (resend_lost or not response.answer_lost)
        ]
        skipped.clear()
        result.report.merge(report)
        # a destination that refuses everything stopped delivery: nothing to split
        requests = [] if report.stopped else [half for request in refused for half in _halves(request)]
        if requests:
            log(
                f"{sync.name}: {len(refused)} requests of several events refused (HTTP 400): sending their "
                f"events again in {len(requests)} smaller requests, to find the refused ones"
            )
        refused.clear()
    timings["deliver"] = time.perf_counter() - delivery_started
    if failed:
        failed_runs = store.item_failed_runs(key, [outcome.item_id for outcome in failed])
        stuck = [o for o in failed if failed_runs.get(o.item_id, 0) >= sync.stuck_after_runs]
        result.events_stuck = len(stuck)
        if event_days:
            result.by_day.count("events_stuck", (event_days.get(o.item_id) for o in stuck))
        result.stuck_sample = [
            {
                "event_id": o.item_id,
                "user_uid": o.user_uid,
                "failed_runs": failed_runs[o.item_id],
                "last_status": o.status,
                "last_error": o.error,
            }
            for o in stuck[:20]
        ]
    store.finish_run(key, run_id, result.counts)
    return result


def _plan_by_day(
    result: EventsPushResult, mapped: pd.DataFrame, valid: pd.DataFrame, rows_read: int
) -> dict[str, str | None]:
    """The read and the plan counted by the day of each row into `result.by_day` (nothing for rows without
    days); returns the day of each valid event, by which its delivery is counted."""
    if DAY not in mapped:
        return {}
    by_day = result.by_day
    by_day.count("rows_read", mapped[DAY].iloc[:rows_read])
    by_day.add(None, "rows_reread", result.rows_reread)  # other days' events: on no day of the run
    by_day.add(None, "events_gone", result.events_gone)
    by_day.count("rows_rejected", mapped.loc[mapped[REJECTION].notna(), DAY])
    event_days = dict(zip(valid[EVENT_ID], mapped.loc[valid.index, DAY], strict=True))
    new = {event_id for request in result.plan.requests for event_id in request.event_ids}
    by_day.count("events_new", (event_days[event_id] for event_id in new))
    by_day.count(
        "events_already_delivered", (day for event_id, day in event_days.items() if event_id not in new)
    )
    first_events = {}
    for request in result.plan.requests:
        first_events.setdefault(request.user_uid, request.event_ids[0])
    by_day.count("users_sent", (event_days[event_id] for event_id in first_events.values()))
    return event_days


def _to_split(request: EventsRequest, response: Response) -> bool:
    """Whether a failed request is split: a 400 (the API refused what it carries, such as an unknown event
    key) for several events, of which the others may well be valid."""
    return response.status == 400 and len(request.event_ids) > 1


def _halves(request: EventsRequest) -> list[EventsRequest]:
    """A refused request's events in two requests: bisecting finds one refused event among n in about
    2 x log2(n) requests, and sends the valid ones on the way."""
    middle = len(request.event_ids) // 2
    return [
        EventsRequest(request.user_uid, request.event_ids[:middle], request.event_keys[:middle]),
        EventsRequest(request.user_uid, request.event_ids[middle:], request.event_keys[middle:]),
    ]


def _unconfirmed_outcomes(
    request: EventsRequest, response: Response
) -> tuple[list[ItemOutcome], UserOutcome]:
    """A request whose answer was lost, not to be sent again (`event.unconfirmed: skip`)."""
    error = f"unconfirmed: {response.error}; the API may or may not have counted it, not resent (event.unconfirmed: skip)"
    lost = replace(response, error=error)
    items, logged = _outcomes(request, lost)
    return [replace(item, unconfirmed=True) for item in items], logged


def _outcomes(request: EventsRequest, response: Response) -> tuple[list[ItemOutcome], UserOutcome]:
    items = [
        ItemOutcome(event_id, request.user_uid, response.ok, response.status, response.error)
        for event_id in request.event_ids
    ]
    logged = UserOutcome.answered(
        request.user_uid,
        request.event_keys,
        response,
        delivered_after=None,
        fingerprint=None,
        request="events",
    )
    return items, logged


def _pending_rows(
    sync: EventsSync, raw: pd.DataFrame, store: StateStore, read_pending: Callable[[list[str]], pd.DataFrame]
) -> tuple[pd.DataFrame, list[str]]:
    """The source rows of the failed events outside `raw` (the oldest `MAX_REREAD` failures), and the ids of
    those the source no longer holds: left in the retry set, they would keep the oldest slots for good."""
    pending = [item["item_id"] for item in store.undelivered_items(store.key_of(sync), limit=MAX_REREAD)]
    if not pending:
        return raw.iloc[:0], []
    in_window, _ = event_ids(raw[sync.event.id_column])
    outside = sorted(set(pending) - set(in_window.dropna()))
    if not outside:
        return raw.iloc[:0], []
    extra = read_pending(outside)
    found, _ = event_ids(extra[sync.event.id_column])
    gone = sorted(set(outside) - set(found.dropna()))
    return (extra[list(raw.columns)] if len(raw.columns) else extra), gone


# -- reading events by id --------------------------------------------------------------------------------
def read_events_by_id(sync: EventsSync, ids: Sequence[str], batch: int = 5000) -> pd.DataFrame:
    """The source rows of these event ids (any day), in the columns `events_source_columns` names."""
    columns = events_source_columns(sync)
    frames = []
    for chunk in _chunks(list(ids), batch):
        candidates = SourceReader(sync.source, columns).read(text_in=(sync.event.id_column, chunk))
        found, _ = event_ids(candidates[sync.event.id_column])  # the id as the run's read makes it
        frames.append(candidates.loc[found.isin(chunk).to_numpy()].reset_index(drop=True))
    if not frames:
        return pd.DataFrame({column: pd.Series([], dtype=object) for column in columns})
    return pd.concat(frames, ignore_index=True)


def _chunks(values: list[str], size: int) -> Iterator[list[str]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]
