"""Delivery: requests in flight, outcomes confirmed in small batches.

A thread pool of `concurrency` workers shares one pooled HTTP session (retries happen inside each call).
At most `2 x concurrency` requests are queued ahead, so a million-user plan never sits in memory as
futures. The calling thread alone records outcomes: every `flush_every_s` (or `flush_max` outcomes) it hands
the confirmed batch to `record`, which writes the state in one transaction. A process killed at any moment
therefore resends at most the requests in flight plus the last unflushed fraction of a second of them.

A destination that refuses everything (a wrong project uid: the Edge's 404; 401/403) is not a per-user
problem: when the first `stop_after_refusals` answers are all such refusals and nothing was delivered,
delivery stops queuing, lets what is in flight land, and says why in `DeliveryReport.stopped`, instead of
sending a million requests that cannot succeed. The users not sent stay unsent and go out next run.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import numpy as np

from contentstack_assets.personalize.client import Response

RequestT = TypeVar("RequestT")
REFUSALS = frozenset({401, 403, 404})  # the destination, not the user: every request would get the same


@dataclass
class DeliveryReport(Generic[RequestT]):
    delivered: int = 0
    failed: int = 0
    requests_sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
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

    def percentile_ms(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q)) if self.latencies_ms else 0.0


def deliver(
    requests: Iterable[RequestT],
    call: Callable[[RequestT], Response],
    *,
    concurrency: int,
    record: Callable[[list[tuple[RequestT, Response]]], None],
    total: int | None = None,
    on_progress: Callable[[int, int | None, DeliveryReport], None] | None = None,
    progress_every_s: float = 5.0,
    flush_every_s: float = 0.2,
    flush_max: int = 500,
    stop_after_refusals: int = 25,
) -> DeliveryReport[RequestT]:
    """Send every request with `concurrency` in flight; every outcome reaches `record` before this returns."""
    report: DeliveryReport[RequestT] = DeliveryReport()
    confirmed: list[tuple[RequestT, Response]] = []
    last_flush = last_progress = time.monotonic()
    done_count = 0

    def flush() -> None:
        nonlocal last_flush
        if confirmed:
            record(list(confirmed))
            confirmed.clear()
        last_flush = time.monotonic()

    pending: dict[Future, RequestT] = {}
    queue: Iterator[RequestT] = iter(requests)
    exhausted = False
    refusals = 0
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="personalize") as pool:
        try:
            while True:
                while not exhausted and len(pending) < 2 * concurrency:
                    request = next(queue, None)
                    if request is None:
                        exhausted = True
                        break
                    pending[pool.submit(call, request)] = request
                if not pending:
                    break
                finished, _ = wait(pending, timeout=flush_every_s, return_when=FIRST_COMPLETED)
                for future in finished:
                    request = pending.pop(future)
                    response = future.result()  # the client returns failures; it does not raise
                    report.add(request, response)
                    confirmed.append((request, response))
                    done_count += 1
                    if response.status in REFUSALS and report.delivered == 0:
                        refusals += 1
                        if refusals >= stop_after_refusals and not exhausted:
                            exhausted = True  # queue nothing more; what is in flight still lands
                            report.stopped = (
                                f"the first {refusals} answers were all refusals (HTTP {response.status}) and "
                                f"none succeeded, so delivery stopped after {len(pending) + done_count} of "
                                f"{total if total is not None else 'all'} users ({response.error})"
                            )
                now = time.monotonic()
                if len(confirmed) >= flush_max or now - last_flush >= flush_every_s:
                    flush()
                if on_progress and now - last_progress >= progress_every_s:
                    on_progress(done_count, total, report)
                    last_progress = now
        finally:
            # on an error (or interrupt) stop queuing, let what is in flight land, and record it
            for future in pending:
                future.cancel()
            for future, request in list(pending.items()):
                if not future.cancelled():
                    try:
                        response = future.result()
                    except Exception:  # noqa: BLE001 - the run is already failing; keep what we know
                        continue
                    report.add(request, response)
                    confirmed.append((request, response))
            flush()
    if on_progress:
        on_progress(done_count, total, report)
    return report
