"""The Management API's routes: GET /attributes and GET /events list the project's configured keys, behind
the token check (an authtoken or a Bearer header) and the project check. They apply the latency but no faults.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from typing import Any

from aiohttp import web

from contentstack_assets.personalize.emulator.config import EmulatorConfig
from contentstack_assets.personalize.emulator.protocol import BadRequest, error_response, require_project
from contentstack_assets.personalize.emulator.state import ProjectState


class ManagementRoutes:
    """The Management API's handlers over one project's state."""

    def __init__(self, state: ProjectState) -> None:
        self._state = state

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/attributes", self._list_attributes)
        router.add_get("/events", self._list_events)

    async def _management(
        self, request: web.Request, listing: Callable[[EmulatorConfig, str], list[dict[str, Any]]]
    ) -> web.Response:
        config = self._state.config
        if config.latency_ms > 0:
            await asyncio.sleep(config.latency_ms / 1000.0)
        token = request.headers.get("authtoken", "").strip()
        if not token:
            scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
            token = credentials.strip() if scheme.lower() == "bearer" else ""
        if not token:
            return error_response(
                401, "UNAUTHORIZED", "an authtoken or authorization: Bearer header is required"
            )
        if config.management_token is not None and token != config.management_token:
            return error_response(401, "UNAUTHORIZED", "invalid authentication token")
        try:
            project = require_project(request, config)
        except BadRequest as exc:
            return error_response(exc.status, exc.code, exc.message)
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


def _stable_uid(kind: str, key: str) -> str:
    # Management objects need a uid that stays the same across restarts and calls.
    return hashlib.sha1(f"{kind}:{key}".encode()).hexdigest()[:24]
