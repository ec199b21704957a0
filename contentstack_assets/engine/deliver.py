"""Delivery: `concurrency` requests in flight on one event loop, outcomes written to the state by one
writer thread as they are confirmed (the write-ahead and what a kill costs: docs/reliability.md,
"Write-ahead"); a destination that refuses or cannot be reached stops it early, and a terminate from the UI
cancels it cleanly."""

from __future__ import annotations

import asyncio
import itertools
import signal
import threading
import time
from array import array
from collections.abc import Awaitable, Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from contentstack_assets.personalize.client import Response

RequestT = TypeVar("RequestT")
T = TypeVar("T")
REFUSALS = frozenset({401, 403, 404})  # the destination, not the user: every request would get the same
STOP_AFTER_UNREACHABLE = (
    5  # outcomes, each after all its retries: a run against a closed port ends in seconds
)
WRITE_AHEAD_BATCH = 256


@dataclass
class DeliveryReport(Generic[RequestT]):
    delivered: int = 0
    failed: int = 0
    requests_sent: int = 0
    latencies_ms: array = field(default_factory=lambda: array("d"))
    failures: list[tuple[RequestT, Response]] = field(default_factory=list)  # a sample, for the report
    failures_kept: int = 50
    stopped: str | None = None  # why delivery stopped before sending everything

    def add(self, request: RequestT, response: Response) -> None:
        self.requests_sent += response.attempts
        self.latencies_ms.append(response.latency_ms)
        if response.ok:
            self.delivered += 1
        else:
            self.failed += 1
            if len(self.failures) < self.failures_kept:
                self.failures.append((request, response))

    def merge(self, other: DeliveryReport[RequestT]) -> None:
        """Add another report's figures to this one (deliveries in several waves)."""
        self.delivered += other.delivered
        self.failed += other.failed
        self.requests_sent += other.requests_sent
        self.latencies_ms.extend(other.latencies_ms)
        self.failures.extend(other.failures[: max(0, self.failures_kept - len(self.failures))])
        self.stopped = self.stopped or other.stopped

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if len(self.latencies_ms) else 0.0


def deliver(
    requests: Iterable[RequestT],
    send: Callable[[RequestT], Awaitable[Response]],
    *,
    client: AbstractAsyncContextManager,
    concurrency: int,
    record: Callable[[list[tuple[RequestT, Response]]], None],
    before_send: Callable[[list[RequestT]], None] | None = None,
    total: int | None = None,
    on_progress: Callable[[int, int | None, DeliveryReport], None] | None = None,
    progress_every_s: float = 5.0,
    stop_after_refusals: int = 25,
    stop_after_unreachable: int = STOP_AFTER_UNREACHABLE,
) -> DeliveryReport[RequestT]:
    """Send every request with `concurrency` in flight through `client` (opened here, in the loop that uses
    it); every outcome reaches `record` before this returns, or the error that stopped recording is raised.

    The event loop (uvloop when installed) takes the next request from `requests` only when one lands, so a
    million-user plan never sits in memory as tasks. State writes run on one writer thread, in order: before
    a batch goes out, `before_send(batch)` is written and nothing of the batch is sent until it is done;
    confirmed outcomes go to `record` in the next write (group commit), and when `2 x concurrency` wait,
    workers wait too.

    A destination that refuses everything (a wrong project uid: the Edge's 404; 401/403) is not a per-user
    problem: when the first `stop_after_refusals` answers are all refusals and nothing was delivered, delivery
    stops taking requests, lets what is in flight land, and says why in `DeliveryReport.stopped`. The same
    after `stop_after_unreachable` outcomes that could not reach it at all (refused connection, unknown host,
    untrusted certificate), each having used up its retries. The users not sent go out next run.

    A run terminated from the UI gets SIGTERM, and Dagster's handler raises in the main thread; inside the
    loop that exception would land in a callback that logs it and goes on, so while the loop runs such
    signals cancel delivery instead: in-flight requests are dropped, what was confirmed is written, and the
    signal is raised again once the loop is closed, where its handler stops the step."""
    delivery = _Delivery(
        send,
        record,
        before_send,
        concurrency,
        total,
        on_progress,
        progress_every_s,
        stop_after_refusals,
        stop_after_unreachable,
    )
    received: list[int] = []
    report = None
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            try:
                report = runner.run(_cancelled_on_signals(delivery.run(requests, client), received))
            finally:
                delivery.writer.shutdown(wait=True)  # a write handed over before an interrupt still completes
    except asyncio.CancelledError:
        if not received:
            raise
    if received:
        signal.raise_signal(received[0])  # the handler that was in place raises (Dagster: interrupted)
        if report is None:  # a handler that only takes note
            raise InterruptedError(f"delivery stopped by {signal.Signals(received[0]).name}")
    return report


INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


async def _cancelled_on_signals(main: Awaitable[T], received: list[int]) -> T:
    """Await `main`; an interrupt signal with a Python handler of its own (Dagster's, while a step runs)
    cancels it and is noted in `received`, the handler being back in place when this returns."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    replaced: list[tuple[int, object]] = []

    def on_signal(signum: int) -> None:
        if not received:
            received.append(signum)
            task.cancel()

    if threading.current_thread() is threading.main_thread():
        for signum in INTERRUPTS:
            handler = signal.getsignal(signum)
            # SIG_DFL ends the process at once, SIG_IGN ignores it; the default SIGINT handler is asyncio's to
            # handle (Runner cancels the main task and raises KeyboardInterrupt)
            if callable(handler) and handler is not signal.default_int_handler:
                loop.add_signal_handler(signum, on_signal, signum)
                replaced.append((signum, handler))
    try:
        return await main
    finally:
        for signum, handler in replaced:
            loop.remove_signal_handler(signum)
            signal.signal(signum, handler)


class _Delivery(Generic[RequestT]):
    def __init__(
        self,
        send: Callable[[RequestT], Awaitable[Response]],
        record: Callable[[list[tuple[RequestT, Response]]], None],
        before_send: Callable[[list[RequestT]], None] | None,
        concurrency: int,
        total: int | None,
        on_progress: Callable[[int, int | None, DeliveryReport], None] | None,
        progress_every_s: float,
        stop_after_refusals: int,
        stop_after_unreachable: int,
    ):
        self.send, self.record, self.before_send = send, record, before_send
        self.concurrency, self.total = concurrency, total
        self.on_progress, self.progress_every_s = on_progress, progress_every_s
        self.stop_after_refusals = stop_after_refusals
        self.stop_after_unreachable = stop_after_unreachable
        self.report: DeliveryReport[RequestT] = DeliveryReport()
        self.writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sync-state-writer")
        self.confirmed: list[tuple[RequestT, Response]] = []
        self.backlog = 2 * concurrency  # confirmed outcomes that may wait for the write in progress
        self.writing: asyncio.Future | None = None
        self.written = asyncio.Event()  # set when a write ends: workers held back by the backlog go on
        self.error: BaseException | None = None  # the first error of a write or a send: stops delivery
        self.refusals = 0
        self.unreachable = 0
        self.refused: Response | None = None  # the refusal (or unreachable outcome) that stopped delivery
        self.done = 0
        self.last_progress = time.monotonic()

    async def run(self, requests: Iterable[RequestT], client: AbstractAsyncContextManager) -> DeliveryReport:
        """`concurrency` workers take requests from a queue that a feeder fills a batch at a time, each
        batch only once its write-ahead is done; the queue holds at most two batches."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Queue[RequestT | None] = asyncio.Queue(maxsize=2 * WRITE_AHEAD_BATCH)

        async def feed() -> None:
            pending = iter(requests)
            try:
                while batch := list(itertools.islice(pending, WRITE_AHEAD_BATCH)):
                    if self._stopping:
                        break
                    if self.before_send is not None:
                        await loop.run_in_executor(self.writer, self.before_send, batch)
                    for request in batch:
                        await ready.put(request)
            finally:
                for _ in range(self.concurrency):  # one end mark per worker, after what is queued
                    await ready.put(None)

        async def work() -> None:
            while (request := await ready.get()) is not None:
                while len(self.confirmed) >= self.backlog and self.writing is not None and not self._stopping:
                    self.written.clear()
                    await self.written.wait()
                if not self._stopping:
                    await self._one(request)

        async with client:
            try:
                await asyncio.gather(feed(), *(work() for _ in range(self.concurrency)))
            finally:
                # on an error too: what landed is recorded
                await self._drain_writes()
        if self.refused is not None:
            users = f"{self.done} of {self.total if self.total is not None else 'all'} users"
            if self.refused.unreachable:
                self.report.stopped = (
                    f"the first {self.stop_after_unreachable} users could not reach the destination after their "
                    f"retries and none succeeded, so delivery stopped after {users} ({self.refused.error})"
                )
            else:
                self.report.stopped = (
                    f"the first {self.stop_after_refusals} answers were all refusals (HTTP "
                    f"{self.refused.status}) and none succeeded, so delivery stopped after {users} "
                    f"({self.refused.error})"
                )
        if self.on_progress:
            self.on_progress(self.done, self.total, self.report)
        if self.error is not None:
            raise self.error
        return self.report

    @property
    def _stopping(self) -> bool:
        return self.refused is not None or self.error is not None

    async def _one(self, request: RequestT) -> None:
        try:
            response = await self.send(request)
        except Exception as error:  # noqa: BLE001 - the client returns failures; this is a bug: stop, keep it
            self.error = self.error or error
            return
        report = self.report
        report.add(request, response)
        self.confirmed.append((request, response))
        self.done += 1
        if response.status in REFUSALS and report.delivered == 0:
            self.refusals += 1
            if self.refusals >= self.stop_after_refusals and self.refused is None:
                self.refused = response
        elif response.unreachable and report.delivered == 0:
            self.unreachable += 1
            if self.unreachable >= self.stop_after_unreachable and self.refused is None:
                self.refused = response
        self._write_confirmed()
        if self.on_progress and time.monotonic() - self.last_progress >= self.progress_every_s:
            self.last_progress = time.monotonic()
            self.on_progress(self.done, self.total, report)

    def _write_confirmed(self) -> None:
        """Hand what was confirmed to the writer, unless a write is running (it is taken when that ends)."""
        if self.writing is not None or not self.confirmed or self.error is not None:
            return
        batch, self.confirmed = self.confirmed, []
        self.writing = asyncio.get_running_loop().run_in_executor(self.writer, self.record, batch)
        self.writing.add_done_callback(self._written)

    def _written(self, future: asyncio.Future) -> None:
        self.writing = None
        self.written.set()
        if future.cancelled() or future.exception() is not None:
            self.error = self.error or (future.exception() if not future.cancelled() else None)
            return
        self._write_confirmed()

    async def _drain_writes(self) -> None:
        while self.error is None and (self.writing is not None or self.confirmed):
            if self.writing is None:
                self._write_confirmed()
            if self.writing is not None:
                await asyncio.wait([self.writing])


def _loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency where it builds (not on Windows)
        return None
    return uvloop.new_event_loop
