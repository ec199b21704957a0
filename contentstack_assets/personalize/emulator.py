"""A local imitation of the Contentstack Personalize Edge and Management APIs.

The emulator is a real HTTP server (aiohttp on asyncio) so that the demo, the tests and the benchmarks
exercise the same client code, connection pooling, timeouts and retries that talk to the real service.
It keeps what it receives in memory and shows it through a few control endpoints under ``/_emulator/``.

It can also misbehave on purpose: latency, a share of failed requests, a rate limit, an outage, and
fault kinds such as dropped connections or responses lost after the change was applied. Every knob can
be changed while it runs (``POST /_emulator/config`` or ``configure(...)`` on a handle).

Run it as ``python -m contentstack_assets.emulator --port 8787``, or from Python::

    with run_emulator_in_thread(EmulatorConfig(attributes=["plan"])) as emu:
        ...  # emu.url, emu.users(), emu.user(uid), emu.stats(), emu.configure(...), emu.reset()

    with start_emulator_process(EmulatorConfig(latency_ms=20)) as emu:
        ...  # the same methods, over HTTP, against a separate process
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import math
import os
import queue
import random
import signal
import site
import socket
import subprocess
import sys
import sysconfig
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import requests
from aiohttp import web

__all__ = [
    "FAULT_KINDS",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorThread",
    "build_parser",
    "main",
    "parse_faults",
    "run_emulator_in_thread",
    "serve",
    "start_emulator_process",
]

#: Fault kinds a share of Edge requests can be given (``EmulatorConfig.faults``).
FAULT_KINDS: tuple[str, ...] = (
    "429",  # rate limited, with Retry-After: 1
    "429_no_retry_after",  # rate limited, without Retry-After
    "500",
    "502",
    "503",
    "504",
    "drop",  # connection closed without a response; nothing applied
    "drop_after_apply",  # applied, then the connection is closed: the response is lost
    "slow",  # answered normally after an extra `slow_ms`
)

#: Every knob `configure` accepts: the config fields plus `outage_s` (an outage starting now).
_EXTRA_KNOBS = ("outage_s",)

_T = TypeVar("_T")

_LISTENING_PREFIX = "emulator listening on "
_CONTROL_PREFIX = "/_emulator/"
# Sized for hundreds of clients connecting at once; the kernel caps it at somaxconn.
_LISTEN_BACKLOG = 2048
# Stopping must not wait for requests sleeping out a long latency or a `slow` fault.
_SHUTDOWN_TIMEOUT_S = 0.5


# --------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------


def parse_faults(spec: str) -> dict[str, float]:
    """Parse a fault spec such as ``"429:0.05,500:0.01,drop:0.01"`` into ``{kind: share}``."""
    faults: dict[str, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        kind, sep, share = item.rpartition(":")
        if not sep or not kind:
            raise ValueError(f"fault {item!r} is not KIND:SHARE (e.g. 500:0.01)")
        try:
            faults[kind.strip()] = float(share)
        except ValueError:
            raise ValueError(f"fault {item!r}: share {share!r} is not a number") from None
    return faults


def _number(name: str, value: Any, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _optional_text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null, got {value!r}")
    return value


def _key_list(name: str, value: Any) -> list[str] | None:
    """None means "any key is accepted"; a list (even empty) is the closed set of known keys."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list of strings or null, got {value!r}")
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{name} must hold strings, got {item!r}")
        if item.strip() and item.strip() not in keys:
            keys.append(item.strip())
    return keys


def _faults(value: Any) -> dict[str, float]:
    raw = parse_faults(value) if isinstance(value, str) else value
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"faults must be an object of kind -> share, got {value!r}")
    faults: dict[str, float] = {}
    for kind, share in raw.items():
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        share = _number(f"faults[{kind!r}]", share, high=1.0)
        if share > 0:
            faults[kind] = share
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError(f"fault shares add up to more than 1: {faults}")
    return faults


@dataclass
class EmulatorConfig:
    """The emulator's knobs. Every field can be set at start and changed while it runs.

    Build a changed copy with `with_changes`; the emulator swaps whole configs, so a request always
    sees one consistent set of knobs.
    """

    #: When set, Edge and Management requests for another project get 404 "project not found".
    project_uid: str | None = None
    #: The project's custom attribute keys. When set, a PATCH with any other key is refused (400).
    attributes: list[str] | None = None
    #: The project's event keys. When set, an event with any other key is refused (400).
    events: list[str] | None = None
    #: When set, the Management API accepts only this token (any token is accepted otherwise).
    management_token: str | None = None
    #: Added to every API request (not to control endpoints), like a network round trip.
    latency_ms: float = 0.0
    #: Share of Edge requests answered 500 before anything is applied.
    fail_rate: float = 0.0
    #: Edge requests accepted per second (sliding one-second window); the others get 429.
    rate_limit: int | None = None
    #: Share of Edge requests per fault kind (see `FAULT_KINDS`); at most one fault per request.
    faults: dict[str, float] = field(default_factory=dict)
    #: How long a `slow` fault holds the request before answering.
    slow_ms: float = 5000.0
    #: A unix time; until then every Edge request is answered 503.
    outage_until: float | None = None
    #: Seed of the fault RNG, for reproducible fault sequences.
    seed: int | None = None

    def __post_init__(self) -> None:
        # Validating here means a bad knob fails where it is set (CLI, Python or the config
        # endpoint), not in the middle of a run.
        self.project_uid = _optional_text("project_uid", self.project_uid)
        self.attributes = _key_list("attributes", self.attributes)
        self.events = _key_list("events", self.events)
        self.management_token = _optional_text("management_token", self.management_token)
        self.latency_ms = _number("latency_ms", self.latency_ms)
        self.fail_rate = _number("fail_rate", self.fail_rate, high=1.0)
        rate_limit = self.rate_limit
        if rate_limit is not None and (
            isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 1
        ):
            raise ValueError(f"rate_limit must be a positive integer or null, got {self.rate_limit!r}")
        self.faults = _faults(self.faults)
        self.slow_ms = _number("slow_ms", self.slow_ms)
        if self.outage_until is not None:
            self.outage_until = _number("outage_until", self.outage_until)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or null, got {self.seed!r}")

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls)) + _EXTRA_KNOBS

    def with_changes(self, **knobs: Any) -> EmulatorConfig:
        """A validated copy with `knobs` changed; `outage_s=X` sets `outage_until` to now + X."""
        unknown = sorted(set(knobs) - set(self.knob_names()))
        if unknown:
            raise ValueError(f"unknown emulator knob(s): {', '.join(unknown)}")
        if "outage_s" in knobs:
            outage_s = knobs.pop("outage_s")
            knobs["outage_until"] = None if outage_s is None else time.time() + _number("outage_s", outage_s)
        return dataclasses.replace(self, **knobs)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_cli_args(self) -> list[str]:
        """The command-line options that start an emulator process with this config."""
        args: list[str] = []
        if self.project_uid is not None:
            args += ["--project-uid", self.project_uid]
        if self.attributes is not None:
            args += ["--attributes", ",".join(self.attributes)]
        if self.events is not None:
            args += ["--events", ",".join(self.events)]
        if self.management_token is not None:
            args += ["--management-token", self.management_token]
        args += ["--latency-ms", repr(self.latency_ms), "--fail-rate", repr(self.fail_rate)]
        if self.rate_limit is not None:
            args += ["--rate-limit", str(self.rate_limit)]
        if self.faults:
            args += ["--faults", ",".join(f"{kind}:{share!r}" for kind, share in self.faults.items())]
        args += ["--slow-ms", repr(self.slow_ms)]
        if self.outage_until is not None:
            args += ["--outage-until", repr(self.outage_until)]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        return args

    def fault_table(self) -> list[tuple[str, float]]:
        """(kind, share) pairs drawn from with one random number; `fail_rate` counts as "500"."""
        table = dict(self.faults)
        if self.fail_rate:
            table["500"] = table.get("500", 0.0) + self.fail_rate
        return list(table.items())


# --------------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------------
# Request helpers
# --------------------------------------------------------------------------------------------------


class _BadRequest(Exception):
    """A refused request; turned into a JSON error response by the Edge pipeline."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def _error(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **details: Any
) -> web.Response:
    # The shape of Contentstack's own error bodies.
    return web.json_response(
        {"error_code": code, "error_message": message, **details}, status=status, headers=headers
    )


_FAULT_RESPONSES: dict[str, tuple[int, str, str, dict[str, str] | None]] = {
    "429": (429, "TOO_MANY_REQUESTS", "too many requests (emulated fault)", {"Retry-After": "1"}),
    "429_no_retry_after": (429, "TOO_MANY_REQUESTS", "too many requests (emulated fault)", None),
    "500": (500, "INTERNAL_SERVER_ERROR", "internal server error (emulated fault)", None),
    "502": (502, "BAD_GATEWAY", "bad gateway (emulated fault)", None),
    "503": (503, "SERVICE_UNAVAILABLE", "service unavailable (emulated fault)", None),
    "504": (504, "GATEWAY_TIMEOUT", "gateway timeout (emulated fault)", None),
}

#: What stats record for a request answered without an HTTP status ("dropped", "499").
_OUTCOME = web.RequestKey("emulator_outcome", str)


def _drop_connection(request: web.Request) -> web.Response:
    """Close the connection without an answer, so the client sees a connection error.

    aiohttp then fails to write the returned response into the closed transport and drops it
    quietly; the response object only satisfies the handler's return type.
    """
    request[_OUTCOME] = "dropped"
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=500)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's json module would accept them.
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except ValueError as exc:
        raise _BadRequest(400, "INVALID_JSON", f"request body is not valid JSON: {exc}") from None


def _require_json_content_type(request: web.Request) -> None:
    if request.content_type != "application/json":
        raise _BadRequest(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            f"Content-Type must be application/json, got {request.headers.get('Content-Type')!r}",
        )


def _require_project(request: web.Request, config: EmulatorConfig) -> str:
    project = request.headers.get("x-project-uid", "").strip()
    if not project:
        raise _BadRequest(400, "MISSING_PROJECT_UID", "x-project-uid header is required")
    if config.project_uid is not None and project != config.project_uid:
        raise _BadRequest(404, "PROJECT_NOT_FOUND", "project not found")
    return project


def _require_user_uid(request: web.Request) -> str:
    uid = request.headers.get("x-cs-personalize-user-uid", "")
    if not uid.strip():
        raise _BadRequest(400, "MISSING_USER_UID", "x-cs-personalize-user-uid header is required")
    return uid


def _stable_uid(kind: str, key: str) -> str:
    # Management objects need a uid that stays the same across restarts and calls.
    return hashlib.sha1(f"{kind}:{key}".encode()).hexdigest()[:24]


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front, so `--port 0` yields the chosen port before serving."""
    if not _is_loopback(host):
        raise ValueError(f"the emulator only listens on loopback addresses, not {host!r}")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except BaseException:
        sock.close()
        raise
    return sock


def _url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


# --------------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------------


class _Emulator:
    """The emulator's state and aiohttp handlers. Everything runs on one event loop, so the
    state needs no locks: each handler validates and applies without awaiting in between."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self._rng = random.Random(config.seed)
        self._users: dict[str, _User] = {}
        self._stats = _Stats()
        self._limiter = _SlidingWindowLimiter()
        self._in_flight = 0

    # ---- state access (also used directly by the in-thread handle, on the loop) ----

    def configure(self, **knobs: Any) -> EmulatorConfig:
        config = self.config.with_changes(**knobs)
        if "seed" in knobs:
            self._rng.seed(config.seed)
        self.config = config
        return config

    def reset(self) -> None:
        self._users.clear()
        self._stats = _Stats(max_in_flight=self._in_flight)
        self._limiter.clear()
        self._rng.seed(self.config.seed)

    def users(self) -> dict[str, dict[str, Any]]:
        return {uid: dict(user.attributes) for uid, user in self._users.items()}

    def user(self, uid: str) -> dict[str, Any] | None:
        user = self._users.get(uid)
        return None if user is None else user.to_json()

    def stats(self) -> dict[str, Any]:
        return self._stats.to_json()

    def _user(self, uid: str) -> _User:
        user = self._users.get(uid)
        if user is None:
            user = self._users[uid] = _User(uid)
        return user

    # ---- application ----

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._track])
        app.router.add_patch("/user-attributes", self._patch_user_attributes)
        app.router.add_post("/user-attributes/actions/merge", self._merge_users)
        app.router.add_post("/events", self._post_events)
        app.router.add_get("/attributes", self._list_attributes)
        app.router.add_get("/events", self._list_events)
        app.router.add_get("/_emulator/users", self._control_users)
        app.router.add_get("/_emulator/users/{uid:.+}", self._control_user)
        app.router.add_get("/_emulator/stats", self._control_stats)
        app.router.add_post("/_emulator/reset", self._control_reset)
        app.router.add_get("/_emulator/config", self._control_get_config)
        app.router.add_post("/_emulator/config", self._control_set_config)
        return app

    async def start(self, sock: socket.socket) -> web.AppRunner:
        runner = web.AppRunner(
            self.build_app(),
            handle_signals=False,
            # Per-request access logging would cost more than the handlers themselves.
            access_log=None,
            shutdown_timeout=_SHUTDOWN_TIMEOUT_S,
        )
        await runner.setup()
        await web.SockSite(runner, sock, backlog=_LISTEN_BACKLOG).start()
        return runner

    @web.middleware
    async def _track(self, request: web.Request, handler: Callable[[web.Request], Any]) -> web.StreamResponse:
        """Count API requests by endpoint and status, and how many are handled at once."""
        if request.path.startswith(_CONTROL_PREFIX):
            return await handler(request)
        resource = request.match_info.route.resource
        endpoint = f"{request.method} {resource.canonical}" if resource is not None else "other"
        # A request still running when the stats are reset is counted in the old stats only.
        stats = self._stats
        stats.requests_total += 1
        stats.by_endpoint[endpoint] += 1
        self._in_flight += 1
        if self._in_flight > stats.max_in_flight:
            stats.max_in_flight = self._in_flight
        status = "500"
        try:
            response: web.StreamResponse = await handler(request)
            status = request.get(_OUTCOME) or str(response.status)
            return response
        except web.HTTPException as exc:
            status = str(exc.status)
            raise
        finally:
            self._in_flight -= 1
            stats.by_status[status] += 1

    async def _edge(
        self, request: web.Request, apply: Callable[[web.Request, EmulatorConfig, bytes], web.Response]
    ) -> web.Response:
        """The path every Edge request takes: outage, rate limit and faults are decided on arrival,
        then the latency passes, then the request is answered (and applied unless a fault says no).

        The body is read on arrival, as a real server has it before it starts working: a client
        that gives up during the latency or a `slow` fault does not stop the change being applied.
        """
        try:
            body = await request.read()
        except ConnectionError:
            # The client went away mid-body; there is nobody to answer ("499" in nginx terms).
            request[_OUTCOME] = "499"
            return web.Response(status=499)
        config = self.config
        refusal: web.Response | None = None
        fault: str | None = None
        if config.outage_until is not None and time.time() < config.outage_until:
            refusal = _error(503, "SERVICE_UNAVAILABLE", "service unavailable (emulated outage)")
            self._stats.faults_injected["outage"] += 1
        elif config.rate_limit is not None and not self._limiter.allow(config.rate_limit, time.monotonic()):
            refusal = _error(429, "TOO_MANY_REQUESTS", "rate limit exceeded", headers={"Retry-After": "1"})
            self._stats.faults_injected["rate_limit"] += 1
        else:
            fault = self._draw_fault(config)
            if fault is not None:
                self._stats.faults_injected[fault] += 1

        delay_ms = config.latency_ms + (config.slow_ms if fault == "slow" else 0.0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)

        if refusal is not None:
            return refusal
        if fault == "drop":
            return _drop_connection(request)
        if fault in _FAULT_RESPONSES:
            status, code, message, headers = _FAULT_RESPONSES[fault]
            return _error(status, code, message, headers=headers)

        try:
            response = apply(request, config, body)
        except _BadRequest as exc:
            response = _error(exc.status, exc.code, exc.message, **exc.details)
        if fault == "drop_after_apply":
            return _drop_connection(request)
        return response

    def _draw_fault(self, config: EmulatorConfig) -> str | None:
        table = config.fault_table()
        if not table:
            return None
        # One draw per request: the kinds share the unit interval, so at most one fault applies.
        draw = self._rng.random()
        for kind, share in table:
            if draw < share:
                return kind
            draw -= share
        return None

    # ---- Edge API ----

    async def _patch_user_attributes(self, request: web.Request) -> web.Response:
        return await self._edge(request, self._apply_patch)

    def _apply_patch(self, request: web.Request, config: EmulatorConfig, body: bytes) -> web.Response:
        _require_project(request, config)
        uid = _require_user_uid(request)
        _require_json_content_type(request)
        attributes = _parse_json(body)
        if not isinstance(attributes, dict):
            raise _BadRequest(400, "INVALID_BODY", "request body must be a JSON object of attributes")
        nested = sorted(key for key, value in attributes.items() if isinstance(value, dict | list))
        if nested:
            raise _BadRequest(
                400,
                "INVALID_ATTRIBUTE_VALUE",
                "attribute values must be strings, numbers, booleans or null; nested: " + ", ".join(nested),
                errors={"keys": nested},
            )
        if config.attributes is not None:
            unknown = sorted(set(attributes) - set(config.attributes))
            if unknown:
                raise _BadRequest(
                    400,
                    "UNKNOWN_ATTRIBUTES",
                    "unknown attribute key(s): " + ", ".join(unknown),
                    errors={"keys": unknown},
                )
        self._user(uid).attributes.update(attributes)
        self._stats.applied["patch"] += 1
        self._stats.patch_counts[uid] += 1
        return web.Response(text="User Attributes added successfully")

    async def _merge_users(self, request: web.Request) -> web.Response:
        return await self._edge(request, self._apply_merge)

    def _apply_merge(self, request: web.Request, config: EmulatorConfig, body: bytes) -> web.Response:
        _require_project(request, config)
        _require_json_content_type(request)
        payload = _parse_json(body)
        if not isinstance(payload, dict):
            raise _BadRequest(400, "INVALID_BODY", "request body must be a JSON object")
        extra = sorted(set(payload) - {"sourceUserUid", "targetUserUid"})
        if extra:
            raise _BadRequest(400, "INVALID_BODY", "unexpected field(s): " + ", ".join(extra))
        source, target = payload.get("sourceUserUid"), payload.get("targetUserUid")
        for name, value in (("sourceUserUid", source), ("targetUserUid", target)):
            if not isinstance(value, str) or not value.strip():
                raise _BadRequest(400, "INVALID_BODY", f"{name} must be a non-empty string")
        assert isinstance(source, str) and isinstance(target, str)
        if source == target:
            raise _BadRequest(400, "INVALID_BODY", "sourceUserUid and targetUserUid must differ")

        source_user, target_user = self._user(source), self._user(target)
        # On a conflict the source (anonymous) user's value wins, as the real Edge documents.
        target_user.attributes.update(source_user.attributes)
        target_user.events.extend(source_user.events)
        source_user.events = []
        source_user.merged_into = target
        self._stats.applied["merge"] += 1
        self._stats.merges.append((source, target))
        return web.json_response({"message": "Users merged successfully"})

    async def _post_events(self, request: web.Request) -> web.Response:
        return await self._edge(request, self._apply_events)

    def _apply_events(self, request: web.Request, config: EmulatorConfig, body: bytes) -> web.Response:
        _require_project(request, config)
        uid = _require_user_uid(request)
        _require_json_content_type(request)
        events = _parse_json(body)
        if not isinstance(events, list) or not events:
            raise _BadRequest(400, "INVALID_BODY", "request body must be a non-empty JSON array of events")
        unknown: list[str] = []
        for index, event in enumerate(events):
            _check_event(index, event)
            key = event.get("eventKey")
            if config.events is not None and event["type"] == "EVENT" and key not in config.events:
                unknown.append(key)
        if unknown:
            raise _BadRequest(
                400,
                "UNKNOWN_EVENTS",
                "unknown event key(s): " + ", ".join(sorted(set(unknown))),
                errors={"keys": sorted(set(unknown))},
            )
        self._user(uid).events.extend(events)
        self._stats.applied["events"] += 1
        self._stats.event_counts[uid] += 1
        return web.json_response({"message": "Events added successfully"})

    # ---- Management API ----

    async def _management(
        self, request: web.Request, listing: Callable[[EmulatorConfig, str], list[dict[str, Any]]]
    ) -> web.Response:
        config = self.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000.0)
        token = request.headers.get("authtoken", "").strip()
        if not token:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            token = credentials.strip() if scheme.lower() == "bearer" else ""
        if not token:
            return _error(401, "UNAUTHORIZED", "an authtoken or authorization: Bearer header is required")
        if config.management_token is not None and token != config.management_token:
            return _error(401, "UNAUTHORIZED", "invalid authentication token")
        try:
            project = _require_project(request, config)
        except _BadRequest as exc:
            return _error(exc.status, exc.code, exc.message)
        return web.json_response(listing(config, project))

    async def _list_attributes(self, request: web.Request) -> web.Response:
        def listing(config: EmulatorConfig, project: str) -> list[dict[str, Any]]:
            return [
                {
                    "uid": _stable_uid("attribute", key),
                    "key": key,
                    "name": key,
                    "description": "",
                    "project": project,
                    "__type": "CUSTOM",
                }
                for key in config.attributes or []
            ]

        return await self._management(request, listing)

    async def _list_events(self, request: web.Request) -> web.Response:
        def listing(config: EmulatorConfig, project: str) -> list[dict[str, Any]]:
            return [
                {"uid": _stable_uid("event", key), "key": key, "description": "", "project": project}
                for key in config.events or []
            ]

        return await self._management(request, listing)

    # ---- control endpoints (no auth, not counted in stats) ----

    async def _control_users(self, request: web.Request) -> web.Response:
        return web.json_response(self.users())

    async def _control_user(self, request: web.Request) -> web.Response:
        user = self.user(request.match_info["uid"])
        if user is None:
            return _error(404, "USER_NOT_FOUND", "user not found")
        return web.json_response(user)

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"reset": True})

    async def _control_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self.config.to_json())

    async def _control_set_config(self, request: web.Request) -> web.Response:
        try:
            knobs = json.loads(await request.read() or b"{}")
            if not isinstance(knobs, dict):
                raise ValueError("the body must be a JSON object of knobs")
            config = self.configure(**knobs)
        except (ValueError, TypeError) as exc:
            return _error(400, "INVALID_CONFIG", str(exc))
        return web.json_response(config.to_json())


def _check_event(index: int, event: Any) -> None:
    if not isinstance(event, dict):
        raise _BadRequest(400, "INVALID_EVENT", f"event {index} must be a JSON object")
    kind = event.get("type")
    if kind == "EVENT":
        allowed = {"type", "eventKey"}
        if not isinstance(event.get("eventKey"), str) or not event["eventKey"].strip():
            raise _BadRequest(400, "INVALID_EVENT", f"event {index}: eventKey must be a non-empty string")
    elif kind == "IMPRESSION":
        allowed = {"type", "experienceShortUid", "variantShortUid"}
        for name in ("experienceShortUid", "variantShortUid"):
            if not isinstance(event.get(name), str) or not event[name]:
                raise _BadRequest(400, "INVALID_EVENT", f"event {index}: {name} must be a non-empty string")
    else:
        raise _BadRequest(400, "INVALID_EVENT", f"event {index}: type must be EVENT or IMPRESSION")
    extra = sorted(set(event) - allowed)
    if extra:
        # The real API has no timestamp or properties fields; refusing them catches client mistakes.
        raise _BadRequest(400, "INVALID_EVENT", f"event {index}: unexpected field(s): {', '.join(extra)}")


# --------------------------------------------------------------------------------------------------
# Handles
# --------------------------------------------------------------------------------------------------


class EmulatorThread:
    """An emulator serving from a background thread with its own event loop (same process).

    Start it with `run_emulator_in_thread`; use it as a context manager or call `stop()`.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._emulator = _Emulator(config or EmulatorConfig())
        self._sock = _bind(host, port)
        self.url: str = _url_of(self._sock)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._serve, name=f"personalize-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise RuntimeError("the emulator failed to start") from self._startup_error
        return self

    def _serve(self) -> None:
        loop = _new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(self._emulator.start(self._sock))
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _on_loop(self, call: Callable[[], _T]) -> _T:
        """Run `call` on the server's loop, so the test thread never reads state mid-update."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")

        async def run() -> _T:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def users(self) -> dict[str, dict[str, Any]]:
        return self._on_loop(self._emulator.users)

    def user(self, uid: str) -> dict[str, Any] | None:
        return self._on_loop(lambda: self._emulator.user(uid))

    def stats(self) -> dict[str, Any]:
        return self._on_loop(self._emulator.stats)

    def config(self) -> EmulatorConfig:
        return self._on_loop(lambda: self._emulator.config)

    def configure(self, **knobs: Any) -> EmulatorConfig:
        return self._on_loop(lambda: self._emulator.configure(**knobs))

    def reset(self) -> None:
        self._on_loop(self._emulator.reset)


def run_emulator_in_thread(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> EmulatorThread:
    """Start an emulator on a background thread; returns once it accepts connections."""
    return EmulatorThread(config, host=host, port=port).start()


class EmulatorProcess:
    """An emulator running as `python -m contentstack_assets.emulator` in a separate process.

    Start it with `start_emulator_process`; the methods talk to its control endpoints over HTTP.
    `process` is the `subprocess.Popen`, for tests that kill it.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config or EmulatorConfig()
        self._host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._env = env
        self.process: subprocess.Popen[str] | None = None
        self.url: str = ""
        self.port: int = 0
        self._session = requests.Session()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the emulator process is not started")
        return self.process.pid

    def start(self) -> Self:
        env = dict(os.environ if self._env is None else self._env)
        # From a checkout that is not installed, the child needs the checkout on its path; an installed
        # package is found in site-packages, which must not go on PYTHONPATH (it would precede the stdlib).
        package_root = str(Path(__file__).resolve().parents[2])
        if package_root not in _site_directories():
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "contentstack_assets.emulator",
            "--host",
            self._host,
            "--port",
            str(self._port),
            *self._config.to_cli_args(),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        line = self._read_first_line(self.process)
        if not line.startswith(_LISTENING_PREFIX):
            self.stop()
            raise RuntimeError(f"the emulator process did not start: {line!r}")
        self.url = line[len(_LISTENING_PREFIX) :].strip()
        self.port = urllib.parse.urlsplit(self.url).port or 0
        return self

    def _read_first_line(self, process: subprocess.Popen[str]) -> str:
        # A reader thread, because a pipe read has no timeout of its own.
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            return lines.get(timeout=self._startup_timeout)
        except queue.Empty:
            self.stop()
            raise RuntimeError(
                f"the emulator process printed nothing within {self._startup_timeout:g}s"
            ) from None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        self._session.close()
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        """SIGKILL: the emulator dies without any clean-up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _control(self, method: str, path: str, payload: Any = None) -> requests.Response:
        response = self._session.request(method, self.url + path, json=payload, timeout=30)
        if response.status_code >= 400 and response.status_code != 404:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def users(self) -> dict[str, dict[str, Any]]:
        return self._control("GET", "/_emulator/users").json()

    def user(self, uid: str) -> dict[str, Any] | None:
        response = self._control("GET", "/_emulator/users/" + urllib.parse.quote(uid, safe=""))
        return None if response.status_code == 404 else response.json()

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "/_emulator/stats").json()

    def config(self) -> EmulatorConfig:
        return EmulatorConfig(**self._control("GET", "/_emulator/config").json())

    def configure(self, **knobs: Any) -> EmulatorConfig:
        response = self._session.post(self.url + "/_emulator/config", json=knobs, timeout=30)
        if response.status_code != 200:
            # Same exception type as the in-thread handle's.
            raise ValueError(response.json().get("error_message", response.text))
        return EmulatorConfig(**response.json())

    def reset(self) -> None:
        self._control("POST", "/_emulator/reset")


def _site_directories() -> set[str]:
    directories = {*site.getsitepackages(), site.getusersitepackages()}
    directories |= {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    return {str(Path(directory).resolve()) for directory in directories}


def start_emulator_process(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> EmulatorProcess:
    """Start the emulator as a separate process; returns once it printed its listening line."""
    return EmulatorProcess(config, host=host, port=port, startup_timeout=startup_timeout, env=env).start()


# --------------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------------


def build_parser(
    prog: str = "python -m contentstack_assets.emulator", *, default_port: int | None = None
) -> argparse.ArgumentParser:
    """The emulator's command line; `serve` runs what it parsed (the `contentstack-assets emulator` command
    adds options of its own first)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="A local imitation of the Contentstack Personalize Edge and Management APIs."
    )
    parser.add_argument(
        "--port",
        type=int,
        required=default_port is None,
        default=default_port,
        help="port to listen on; 0 picks a free one" + (f" (default {default_port})" if default_port else ""),
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--project-uid", help="answer 404 to requests for any other project")
    parser.add_argument("--attributes", help="comma-separated attribute keys; others are refused")
    parser.add_argument("--events", help="comma-separated event keys; others are refused")
    parser.add_argument("--management-token", help="the only token the Management API accepts")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API request")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of Edge requests answered 500")
    parser.add_argument("--rate-limit", type=int, help="Edge requests per second; above it 429")
    parser.add_argument(
        "--faults",
        default="",
        help=f'fault shares, e.g. "429:0.05,500:0.01,drop:0.01" (kinds: {", ".join(FAULT_KINDS)})',
    )
    parser.add_argument("--slow-ms", type=float, default=5000.0, help="delay of the `slow` fault")
    parser.add_argument("--outage-s", type=float, help="answer every Edge request 503 for this many seconds")
    parser.add_argument(
        "--outage-until", type=float, help="answer every Edge request 503 until this unix time"
    )
    parser.add_argument("--seed", type=int, help="seed of the fault RNG")
    return parser


def _config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    config = EmulatorConfig(
        project_uid=args.project_uid,
        attributes=args.attributes,
        events=args.events,
        management_token=args.management_token,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        rate_limit=args.rate_limit,
        faults=parse_faults(args.faults),
        slow_ms=args.slow_ms,
        outage_until=args.outage_until,
        seed=args.seed,
    )
    if args.outage_s is not None:
        config = config.with_changes(outage_s=args.outage_s)
    return config


def _new_event_loop() -> asyncio.AbstractEventLoop:
    # uvloop roughly doubles the requests one core can answer; the emulator works without it.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


async def _serve_until_signalled(emulator: _Emulator, sock: socket.socket) -> None:
    runner = await emulator.start(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The one line on stdout: launchers read the port from it.
    print(f"{_LISTENING_PREFIX}{_url_of(sock)}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    serve(parser, parser.parse_args(argv))


def serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Serve with the options `parser` parsed into `args` until SIGTERM or SIGINT; a bad option exits
    through `parser` with one line."""
    if not _is_loopback(args.host):
        parser.error(f"--host must be a loopback address (127.0.0.1, ::1, localhost), not {args.host!r}")
    try:
        config = _config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sock = _bind(args.host, args.port)
    except OSError as exc:
        parser.exit(1, f"emulator: cannot listen on {args.host}:{args.port}: {exc}\n")
    loop = _new_event_loop()
    try:
        loop.run_until_complete(_serve_until_signalled(_Emulator(config), sock))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        sock.close()
