"""The Edge API's routes: PATCH /user-attributes, POST /user-attributes/actions/merge, POST /events and
GET /manifest, each checked as the real Edge checks it and answered to any origin (a browser's CORS
preflight included, so a front end can use the emulator as its Edge), and the path every Edge request takes
first, where an outage, the rate limit, the latency and the injected faults (`EmulatorConfig.faults`) are
applied.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiohttp import web

from contentstack_assets.personalize.emulator.config import EmulatorConfig
from contentstack_assets.personalize.emulator.protocol import (
    OUTCOME,
    BadRequest,
    drop_connection,
    error_response,
    parse_json,
    require_json_content_type,
    require_project,
    require_user_uid,
)
from contentstack_assets.personalize.emulator.state import ProjectState

_FAULT_RESPONSES: dict[str, tuple[int, str, str, dict[str, str] | None]] = {
    "429": (429, "TOO_MANY_REQUESTS", "too many requests (emulated fault)", {"Retry-After": "1"}),
    "429_no_retry_after": (429, "TOO_MANY_REQUESTS", "too many requests (emulated fault)", None),
    "500": (500, "INTERNAL_SERVER_ERROR", "internal server error (emulated fault)", None),
    "502": (502, "BAD_GATEWAY", "bad gateway (emulated fault)", None),
    "503": (503, "SERVICE_UNAVAILABLE", "service unavailable (emulated fault)", None),
    "504": (504, "GATEWAY_TIMEOUT", "gateway timeout (emulated fault)", None),
}


_USER_UID_HEADER = "X-CS-Personalize-User-Uid"
# What a browser is told it may send and read: the Edge is called from any site's front end.
_CORS_HEADERS = {
    "Access-Control-Allow-Origin": "*",
    "Access-Control-Expose-Headers": _USER_UID_HEADER,
}
_CORS_PREFLIGHT_HEADERS = {
    **_CORS_HEADERS,
    "Access-Control-Allow-Methods": "GET, POST, PATCH, OPTIONS",
    "Access-Control-Max-Age": "600",
}
# No experiences are emulated: every user's manifest is this one, in the shape the SDK reads.
_EMPTY_MANIFEST: dict[str, Any] = {"activeVariants": {}, "experiences": []}


class EdgeRoutes:
    """The Edge API's handlers over one project's state."""

    def __init__(self, state: ProjectState) -> None:
        self._state = state

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_patch("/user-attributes", self._patch_user_attributes)
        router.add_post("/user-attributes/actions/merge", self._merge_users)
        router.add_get("/manifest", self._get_manifest, allow_head=False)
        for path in ("/user-attributes", "/user-attributes/actions/merge", "/events", "/manifest"):
            router.add_route("OPTIONS", path, self._preflight)

    async def _preflight(self, request: web.Request) -> web.Response:
        requested = request.headers.get("Access-Control-Request-Headers", "")
        headers = {**_CORS_PREFLIGHT_HEADERS, "Access-Control-Allow-Headers": requested or "*"}
        return web.Response(status=204, headers=headers)

    async def _edge(
        self, request: web.Request, apply: Callable[[web.Request, EmulatorConfig, bytes], web.Response]
    ) -> web.Response:
        response = await self._answer(request, apply)
        # Refusals too: a browser hides from the page any answer without them.
        response.headers.update(_CORS_HEADERS)
        return response

    async def _answer(
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
            request[OUTCOME] = "499"
            return web.Response(status=499)
        config = self._state.config
        refusal: web.Response | None = None
        fault: str | None = None
        if config.outage_until is not None and time.time() < config.outage_until:
            refusal = error_response(503, "SERVICE_UNAVAILABLE", "service unavailable (emulated outage)")
            self._state.counters.faults_injected["outage"] += 1
        elif config.rate_limit is not None and not self._state.limiter.allow(
            config.rate_limit, time.monotonic()
        ):
            refusal = error_response(
                429, "TOO_MANY_REQUESTS", "rate limit exceeded", headers={"Retry-After": "1"}
            )
            self._state.counters.faults_injected["rate_limit"] += 1
        else:
            fault = self._draw_fault(config)
            if fault is not None:
                self._state.counters.faults_injected[fault] += 1

        delay_ms = config.latency_ms + (config.slow_ms if fault == "slow" else 0.0)
        if delay_ms > 0:
            await asyncio.sleep(delay_ms / 1000.0)

        if refusal is not None:
            return refusal
        if fault == "drop":
            return drop_connection(request)
        if fault in _FAULT_RESPONSES:
            status, code, message, headers = _FAULT_RESPONSES[fault]
            return error_response(status, code, message, headers=headers)

        try:
            response = apply(request, config, body)
        except BadRequest as exc:
            response = error_response(exc.status, exc.code, exc.message, **exc.details)
        if fault == "drop_after_apply":
            return drop_connection(request)
        return response

    def _draw_fault(self, config: EmulatorConfig) -> str | None:
        table = config.fault_table()
        if not table:
            return None
        # One draw per request: the kinds share the unit interval, so at most one fault applies.
        draw = self._state.rng.random()
        for kind, share in table:
            if draw < share:
                return kind
            draw -= share
        return None

    async def _patch_user_attributes(self, request: web.Request) -> web.Response:
        return await self._edge(request, self._apply_patch)

    def _apply_patch(self, request: web.Request, config: EmulatorConfig, body: bytes) -> web.Response:
        require_project(request, config)
        uid = require_user_uid(request)
        require_json_content_type(request)
        attributes = parse_json(body)
        if not isinstance(attributes, dict):
            raise BadRequest(400, "INVALID_BODY", "request body must be a JSON object of attributes")
        nested = sorted(key for key, value in attributes.items() if isinstance(value, dict | list))
        if nested:
            raise BadRequest(
                400,
                "INVALID_ATTRIBUTE_VALUE",
                "attribute values must be strings, numbers, booleans or null; nested: " + ", ".join(nested),
                errors={"keys": nested},
            )
        known_attributes = self._state.attribute_keys()
        if known_attributes is not None:
            unknown = sorted(set(attributes) - set(known_attributes))
            if unknown:
                raise BadRequest(
                    400,
                    "UNKNOWN_ATTRIBUTES",
                    "unknown attribute key(s): " + ", ".join(unknown),
                    errors={"keys": unknown},
                )
        self._state.user_record(uid).attributes.update(attributes)
        self._state.counters.applied["patch"] += 1
        self._state.counters.patch_counts[uid] += 1
        return web.Response(text="User Attributes added successfully")

    async def _merge_users(self, request: web.Request) -> web.Response:
        return await self._edge(request, self._apply_merge)

    def _apply_merge(self, request: web.Request, config: EmulatorConfig, body: bytes) -> web.Response:
        require_project(request, config)
        require_json_content_type(request)
        payload = parse_json(body)
        if not isinstance(payload, dict):
            raise BadRequest(400, "INVALID_BODY", "request body must be a JSON object")
        extra = sorted(set(payload) - {"sourceUserUid", "targetUserUid"})
        if extra:
            raise BadRequest(400, "INVALID_BODY", "unexpected field(s): " + ", ".join(extra))
        source, target = payload.get("sourceUserUid"), payload.get("targetUserUid")
        for name, value in (("sourceUserUid", source), ("targetUserUid", target)):
            if not isinstance(value, str) or not value.strip():
                raise BadRequest(400, "INVALID_BODY", f"{name} must be a non-empty string")
        assert isinstance(source, str) and isinstance(target, str)
        if source == target:
            # The SDK's `setUserId` with the uid it already has sends this; there is nothing to merge.
            return web.json_response({"message": "Users merged successfully"})

        source_user, target_user = self._state.user_record(source), self._state.user_record(target)
        # On a conflict the source (anonymous) user's value wins, as the real Edge documents.
        target_user.attributes.update(source_user.attributes)
        target_user.events.extend(source_user.events)
        source_user.events = []
        source_user.merged_into = target
        self._state.counters.applied["merge"] += 1
        self._state.counters.merges.append((source, target))
        return web.json_response({"message": "Users merged successfully"})

    async def post_events(self, request: web.Request) -> web.Response:
        """The Edge's POST /events (the route is shared with the Management API's: see management.py)."""
        return await self._edge(request, self._apply_events)

    def _apply_events(self, request: web.Request, config: EmulatorConfig, body: bytes) -> web.Response:
        require_project(request, config)
        uid = require_user_uid(request)
        require_json_content_type(request)
        events = parse_json(body)
        if not isinstance(events, list):
            raise BadRequest(400, "INVALID_BODY", "request body must be a JSON array of events")
        if not events:
            # The SDK posts `[]` for impressions of experiences that have no active variant.
            return web.json_response({"message": "Events added successfully"})
        unknown: list[str] = []
        known_events = self._state.event_keys()
        for index, event in enumerate(events):
            _check_event(index, event)
            key = event.get("eventKey")
            if known_events is not None and event["type"] == "EVENT" and key not in known_events:
                unknown.append(key)
        if unknown:
            raise BadRequest(
                400,
                "UNKNOWN_EVENTS",
                "unknown event key(s): " + ", ".join(sorted(set(unknown))),
                errors={"keys": sorted(set(unknown))},
            )
        self._state.user_record(uid).events.extend(events)
        self._state.counters.applied["events"] += 1
        self._state.counters.event_counts[uid] += 1
        return web.json_response({"message": "Events added successfully"})

    async def _get_manifest(self, request: web.Request) -> web.Response:
        return await self._edge(request, self._answer_manifest)

    def _answer_manifest(self, request: web.Request, config: EmulatorConfig, body: bytes) -> web.Response:
        try:
            require_project(request, config)
        except BadRequest as exc:
            if exc.status == 404:
                # The SDK reads this code under `error` to report "Project not found: <uid>".
                exc.details["error"] = "personalize.MANIFEST.PROJECT_NOT_FOUND"
            raise
        # A visitor without a uid is given one in the answer's header, as the real Edge does; the SDK keeps it.
        uid = request.headers.get(_USER_UID_HEADER, "").strip() or uuid.uuid4().hex
        return web.json_response(_EMPTY_MANIFEST, headers={_USER_UID_HEADER: uid})


def _check_event(index: int, event: Any) -> None:
    if not isinstance(event, dict):
        raise BadRequest(400, "INVALID_EVENT", f"event {index} must be a JSON object")
    kind = event.get("type")
    if kind == "EVENT":
        allowed = {"type", "eventKey"}
        if not isinstance(event.get("eventKey"), str) or not event["eventKey"].strip():
            raise BadRequest(400, "INVALID_EVENT", f"event {index}: eventKey must be a non-empty string")
    elif kind == "IMPRESSION":
        allowed = {"type", "experienceShortUid", "variantShortUid"}
        for name in ("experienceShortUid", "variantShortUid"):
            if not isinstance(event.get(name), str) or not event[name]:
                raise BadRequest(400, "INVALID_EVENT", f"event {index}: {name} must be a non-empty string")
    else:
        raise BadRequest(400, "INVALID_EVENT", f"event {index}: type must be EVENT or IMPRESSION")
    extra = sorted(set(event) - allowed)
    if extra:
        # The real API has no timestamp or properties fields; refusing them catches client mistakes.
        raise BadRequest(400, "INVALID_EVENT", f"event {index}: unexpected field(s): {', '.join(extra)}")
