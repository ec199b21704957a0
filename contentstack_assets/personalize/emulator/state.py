"""The emulated project's memory: its users (attributes, events, what they were merged into), the counters the
stats show, the rate limiter's window and the fault RNG. All of it lives on the server's one event loop, so
nothing here needs a lock.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from contentstack_assets.personalize.emulator.config import EmulatorConfig


@dataclass
class _User:
    uid: str
    attributes: dict[str, Any] = field(default_factory=dict)
    events: list[dict[str, Any]] = field(default_factory=list)
    merged_into: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "uid": self.uid,
            "attributes": dict(self.attributes),
            "events": [dict(event) for event in self.events],
            "merged_into": self.merged_into,
        }


@dataclass
class _Stats:
    requests_total: int = 0
    by_endpoint: Counter[str] = field(default_factory=Counter)
    by_status: Counter[str] = field(default_factory=Counter)
    applied: Counter[str] = field(default_factory=lambda: Counter({"patch": 0, "merge": 0, "events": 0}))
    patch_counts: Counter[str] = field(default_factory=Counter)
    event_counts: Counter[str] = field(default_factory=Counter)
    merges: list[tuple[str, str]] = field(default_factory=list)
    faults_injected: Counter[str] = field(default_factory=Counter)
    max_in_flight: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "requests_total": self.requests_total,
            "by_endpoint": dict(self.by_endpoint),
            "by_status": dict(self.by_status),
            "applied": dict(self.applied),
            "patch_counts": dict(self.patch_counts),
            "event_counts": dict(self.event_counts),
            "merges": [list(pair) for pair in self.merges],
            "faults_injected": dict(self.faults_injected),
            "max_in_flight": self.max_in_flight,
        }


class _SlidingWindowLimiter:
    """At most `limit` accepted requests in any one-second window; refused ones do not count."""

    def __init__(self) -> None:
        self._accepted: deque[float] = deque()

    def allow(self, limit: int, now: float) -> bool:
        accepted = self._accepted
        while accepted and now - accepted[0] >= 1.0:
            accepted.popleft()
        if len(accepted) >= limit:
            return False
        accepted.append(now)
        return True

    def clear(self) -> None:
        self._accepted.clear()


class ProjectState:
    """What the emulator holds. Everything runs on one event loop, so the state needs no locks: each handler
    validates and applies without awaiting in between."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.rng = random.Random(config.seed)
        self.users_by_uid: dict[str, _User] = {}
        # Replaced by `reset`: a request still running then is counted in the old stats only.
        self.counters = _Stats()
        self.limiter = _SlidingWindowLimiter()
        self.management_limiter = _SlidingWindowLimiter()
        self.in_flight = 0
        # What the Management API created, by key, besides the configured keys (cleared by `reset`).
        self.created_attributes: dict[str, dict[str, Any]] = {}
        self.created_events: dict[str, dict[str, Any]] = {}

    # ---- state access (also used directly by the in-thread handle, on the loop) ----

    def configure(self, **knobs: Any) -> EmulatorConfig:
        config = self.config.with_changes(**knobs)
        if "seed" in knobs:
            self.rng.seed(config.seed)
        self.config = config
        return config

    def reset(self) -> None:
        self.users_by_uid.clear()
        self.counters = _Stats(max_in_flight=self.in_flight)
        self.limiter.clear()
        self.management_limiter.clear()
        self.created_attributes.clear()
        self.created_events.clear()
        self.rng.seed(self.config.seed)

    def attribute_keys(self) -> list[str] | None:
        """The project's custom attribute keys (configured, then created), or None when any key is accepted."""
        if self.config.attributes is None:
            return None
        return [
            *self.config.attributes,
            *(k for k in self.created_attributes if k not in self.config.attributes),
        ]

    def event_keys(self) -> list[str] | None:
        """The project's event keys (configured, then created), or None when any key is accepted."""
        if self.config.events is None:
            return None
        return [*self.config.events, *(k for k in self.created_events if k not in self.config.events)]

    def users(self) -> dict[str, dict[str, Any]]:
        return {uid: dict(user.attributes) for uid, user in self.users_by_uid.items()}

    def user(self, uid: str) -> dict[str, Any] | None:
        user = self.users_by_uid.get(uid)
        return None if user is None else user.to_json()

    def stats(self) -> dict[str, Any]:
        return self.counters.to_json()

    def user_record(self, uid: str) -> _User:
        """The user `uid`, created empty on first use."""
        user = self.users_by_uid.get(uid)
        if user is None:
            user = self.users_by_uid[uid] = _User(uid)
        return user
