"""The control endpoints under /_emulator/ (users, one user, stats, reset, config): what a test or a separate
process reads and changes while the emulator runs. No auth, no latency, not counted in the stats;
`EmulatorProcess` (process.py) speaks to them over HTTP.
"""

from __future__ import annotations

import json

from aiohttp import web

from contentstack_assets.personalize.emulator.protocol import error_response
from contentstack_assets.personalize.emulator.state import ProjectState

#: Requests under this prefix are control requests (not counted in the stats).
CONTROL_PREFIX = "/_emulator/"


class ControlRoutes:
    """The control endpoints' handlers over one project's state (no auth, not counted in stats)."""

    def __init__(self, state: ProjectState) -> None:
        self._state = state

    def add_to(self, router: web.UrlDispatcher) -> None:
        router.add_get("/_emulator/users", self._control_users)
        router.add_get("/_emulator/users/{uid:.+}", self._control_user)
        router.add_get("/_emulator/stats", self._control_stats)
        router.add_post("/_emulator/reset", self._control_reset)
        router.add_get("/_emulator/config", self._control_get_config)
        router.add_post("/_emulator/config", self._control_set_config)

    async def _control_users(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.users())

    async def _control_user(self, request: web.Request) -> web.Response:
        user = self._state.user(request.match_info["uid"])
        if user is None:
            return error_response(404, "USER_NOT_FOUND", "user not found")
        return web.json_response(user)

    async def _control_stats(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.stats())

    async def _control_reset(self, request: web.Request) -> web.Response:
        self._state.reset()
        return web.json_response({"reset": True})

    async def _control_get_config(self, request: web.Request) -> web.Response:
        return web.json_response(self._state.config.to_json())

    async def _control_set_config(self, request: web.Request) -> web.Response:
        try:
            knobs = json.loads(await request.read() or b"{}")
            if not isinstance(knobs, dict):
                raise ValueError("the body must be a JSON object of knobs")
            config = self._state.configure(**knobs)
        except (ValueError, TypeError) as exc:
            return error_response(400, "INVALID_CONFIG", str(exc))
        return web.json_response(config.to_json())
