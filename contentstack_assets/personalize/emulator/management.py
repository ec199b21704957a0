"""The Management API's routes: GET and POST /attributes, GET and POST /events, behind the token check (an
authtoken or a Bearer header; a read-only token may list but not create: 403), the project check and the
rate limit (`management_rate_limit`, 10 a second by default, as the real API's: 429 with Retry-After). They
apply the latency but no faults.

A create adds the key to the project: it is listed from then on and the Edge accepts it. A key the project
holds already is refused with 409 (DUPLICATE_KEY), a create beyond the project's limit with 422
(LIMIT_EXCEEDED). POST /events is the Edge's route too: a request carrying a management token (authtoken, or
authorization: Bearer) is the Management API's, any other goes to the Edge.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from contentstack_assets.personalize.emulator.config import EmulatorConfig
from contentstack_assets.personalize.emulator.protocol import (
    BadRequest,
    error_response,
    management_token_of,
    parse_json,
    require_json_content_type,
    require_project,
)
from contentstack_assets.personalize.emulator.state import ProjectState

Handler = Callable[[web.Request], Awaitable[web.Response]]


class ManagementRoutes:
    """The Management API's handlers over one project's state."""

    def __init__(self, state: ProjectState) -> None:
        self._state = state

    def add_to(self, router: web.UrlDispatcher, *, edge_events: Handler) -> None:
        """Add the routes; `edge_events` answers a POST /events that carries no management token."""
        router.add_get("/attributes", self._list_attributes)
        router.add_post("/attributes", self._create_attribute)
        router.add_get("/events", self._list_events)

        async def post_events(request: web.Request) -> web.Response:
            if management_token_of(request) is None:
                return await edge_events(request)
            return await self._create_event(request)

        router.add_post("/events", post_events)

    async def _management(
        self,
        request: web.Request,
        answer: Callable[[EmulatorConfig, str, bytes], web.Response],
        *,
        creates: bool = False,
    ) -> web.Response:
        body = await request.read()
        config = self._state.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000.0)
        token = management_token_of(request)
        if token is None:
            return error_response(
                401, "UNAUTHORIZED", "an authtoken or authorization: Bearer header is required"
            )
        read_only = (
            config.management_read_only_token is not None and token == config.management_read_only_token
        )
        if not read_only and config.management_token is not None and token != config.management_token:
            return error_response(401, "UNAUTHORIZED", "invalid authentication token")
        if config.management_rate_limit is not None and not self._state.management_limiter.allow(
            config.management_rate_limit, time.monotonic()
        ):
            self._state.counters.faults_injected["management_rate_limit"] += 1
            return error_response(
                429, "TOO_MANY_REQUESTS", "rate limit exceeded", headers={"Retry-After": "1"}
            )
        if creates and read_only:
            return error_response(
                403,
                "FORBIDDEN",
                "the token is not allowed to manage this project (the personalize:manage scope is required)",
            )
        try:
            project = require_project(request, config)
            return answer(config, project, body)
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.message, **exc.details)

    # -- attributes ----------------------------------------------------------------------------------
    def _attributes(self, config: EmulatorConfig, project: str) -> list[dict[str, Any]]:
        configured = [
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
        known = {item["key"] for item in configured}
        created = [
            {**item, "project": project}
            for key, item in self._state.created_attributes.items()
            if key not in known
        ]
        return configured + created

    async def _list_attributes(self, request: web.Request) -> web.Response:
        return await self._management(
            request, lambda config, project, body: web.json_response(self._attributes(config, project))
        )

    async def _create_attribute(self, request: web.Request) -> web.Response:
        def create(config: EmulatorConfig, project: str, body: bytes) -> web.Response:
            fields = _fields(request, body, required=("name", "key"), optional=("description",))
            existing = self._attributes(config, project)
            _refuse_duplicate_or_full(
                "attribute", fields["key"], existing, config.attribute_limit, "custom attributes"
            )
            item = {
                "uid": _stable_uid("attribute", fields["key"]),
                "key": fields["key"],
                "name": fields["name"],
                "description": fields.get("description", ""),
                "project": project,
                "__type": "CUSTOM",
            }
            self._state.created_attributes[fields["key"]] = item
            return web.json_response(item, status=201)

        return await self._management(request, create, creates=True)

    # -- events --------------------------------------------------------------------------------------
    def _events(self, config: EmulatorConfig, project: str) -> list[dict[str, Any]]:
        configured = [
            {"uid": _stable_uid("event", key), "key": key, "description": "", "project": project}
            for key in config.events or []
        ]
        known = {item["key"] for item in configured}
        created = [
            {**item, "project": project}
            for key, item in self._state.created_events.items()
            if key not in known
        ]
        return configured + created

    async def _list_events(self, request: web.Request) -> web.Response:
        return await self._management(
            request, lambda config, project, body: web.json_response(self._events(config, project))
        )

    async def _create_event(self, request: web.Request) -> web.Response:
        def create(config: EmulatorConfig, project: str, body: bytes) -> web.Response:
            fields = _fields(request, body, required=("key",), optional=("description",))
            existing = self._events(config, project)
            _refuse_duplicate_or_full("event", fields["key"], existing, config.event_limit, "events")
            item = {
                "uid": _stable_uid("event", fields["key"]),
                "key": fields["key"],
                "description": fields.get("description", ""),
                "project": project,
            }
            self._state.created_events[fields["key"]] = item
            return web.json_response(item, status=201)

        return await self._management(request, create, creates=True)


def _fields(
    request: web.Request, body: bytes, *, required: tuple[str, ...], optional: tuple[str, ...]
) -> dict[str, str]:
    """The body's fields: a JSON object of strings, the required ones non-empty, no others."""
    require_json_content_type(request)
    payload = parse_json(body)
    if not isinstance(payload, dict):
        raise BadRequest(400, "INVALID_BODY", "request body must be a JSON object")
    extra = sorted(set(payload) - set(required) - set(optional))
    if extra:
        raise BadRequest(400, "INVALID_BODY", "unexpected field(s): " + ", ".join(extra))
    for name in required:
        value = payload.get(name)
        if not isinstance(value, str) or not value.strip():
            raise BadRequest(400, "INVALID_BODY", f"{name} must be a non-empty string")
    for name in optional:
        if name in payload and not isinstance(payload[name], str):
            raise BadRequest(400, "INVALID_BODY", f"{name} must be a string")
    return payload


def _refuse_duplicate_or_full(
    kind: str, key: str, existing: list[dict[str, Any]], limit: int, plural: str
) -> None:
    if any(item["key"] == key for item in existing):
        raise BadRequest(
            409, "DUPLICATE_KEY", f"an {kind} with the key {key!r} already exists in this project"
        )
    if len(existing) >= limit:
        raise BadRequest(
            422,
            "LIMIT_EXCEEDED",
            f"the project has reached its limit of {limit} {plural}",
            errors={"limit": limit, "count": len(existing)},
        )


def _stable_uid(kind: str, key: str) -> str:
    # Management objects need a uid that stays the same across restarts and calls.
    return hashlib.sha1(f"{kind}:{key}".encode()).hexdigest()[:24]
