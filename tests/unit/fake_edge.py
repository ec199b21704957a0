"""An in-process fake of the Edge client: the verbs `EdgeClient` offers, answered from a script, no HTTP.

Each call is answered by the next scripted `Response` for its user (then `ok`), after yielding to the event
loop (`latency_s`) so that several calls are in flight at once, as over a network.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

from contentstack_assets.personalize.client import Response

OK = Response(ok=True, status=200, attempts=1, latency_ms=1.0)


def refused(status: int = 404) -> Response:
    return Response(ok=False, status=status, attempts=1, latency_ms=1.0, error=f"HTTP {status}: refused")


def failed(status: int = 500, attempts: int = 3) -> Response:
    return Response(ok=False, status=status, attempts=attempts, latency_ms=1.0, error=f"HTTP {status}: boom")


UNREACHABLE = Response(
    ok=False, status=None, attempts=2, latency_ms=1.0, error="connection refused", unreachable=True
)


@dataclass(frozen=True)
class Call:
    verb: str
    user_uid: str | None
    payload: object


class FakeEdgeClient:
    """Answers `update_attributes`, `merge_users` and `track_events` like `EdgeClient`, and records them.

    `answers`: per user uid, the responses of its successive calls; `default`: the answer otherwise.
    `before_each`: called with every call before it is answered (to check what the state says then)."""

    def __init__(
        self,
        answers: dict[str, list[Response]] | None = None,
        *,
        default: Response = OK,
        latency_s: float = 0.0,
        before_each: Callable[[Call], None] | None = None,
    ):
        self.answers = {uid: list(queue) for uid, queue in (answers or {}).items()}
        self.default = default
        self.latency_s = latency_s
        self.before_each = before_each
        self.calls: list[Call] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.opened = 0
        self.closed = 0

    async def __aenter__(self) -> FakeEdgeClient:
        self.opened += 1
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self.closed += 1

    async def update_attributes(self, user_uid: str, attributes: dict) -> Response:
        return await self._call(Call("update_attributes", user_uid, dict(attributes)))

    async def merge_users(self, source_uid: str, target_uid: str) -> Response:
        return await self._call(Call("merge_users", source_uid, {"targetUserUid": target_uid}))

    async def track_events(self, user_uid: str, event_keys: list[str]) -> Response:
        return await self._call(Call("track_events", user_uid, list(event_keys)))

    def bodies(self) -> dict[str, dict]:
        """The last attributes body sent to each user."""
        return {call.user_uid: call.payload for call in self.calls if call.verb == "update_attributes"}

    async def _call(self, call: Call) -> Response:
        if self.opened == self.closed:
            raise RuntimeError("open the client first: `async with` it, as EdgeClient requires")
        if self.before_each is not None:
            self.before_each(call)
        self.calls.append(call)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.latency_s)
        finally:
            self.in_flight -= 1
        queue = self.answers.get(call.user_uid)
        return queue.pop(0) if queue else self.default
