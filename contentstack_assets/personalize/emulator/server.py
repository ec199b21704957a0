"""The emulator as one aiohttp application: a project's state, the Edge, Management and control routes over
it, and the middleware that counts API requests. Also the listening socket (loopback only, bound up front so
`--port 0` knows its port) and the event loop, shared by the thread and the process runners.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Callable
from typing import Any

from aiohttp import web

from contentstack_assets.personalize.emulator.config import EmulatorConfig
from contentstack_assets.personalize.emulator.control import CONTROL_PREFIX, ControlRoutes
from contentstack_assets.personalize.emulator.edge import EdgeRoutes
from contentstack_assets.personalize.emulator.management import ManagementRoutes
from contentstack_assets.personalize.emulator.protocol import OUTCOME, management_token_of
from contentstack_assets.personalize.emulator.state import ProjectState

# Sized for hundreds of clients connecting at once; the kernel caps it at somaxconn.
_LISTEN_BACKLOG = 2048
# Stopping must not wait for requests sleeping out a long latency or a `slow` fault.
_SHUTDOWN_TIMEOUT_S = 0.5


class Emulator:
    """One project's state served as an aiohttp application (`start` serves it on a bound socket)."""

    def __init__(self, config: EmulatorConfig) -> None:
        # Also read directly by the in-thread handle, on the loop.
        self.state = ProjectState(config)

    def build_app(self) -> web.Application:
        app = web.Application(middlewares=[self._track])
        edge = EdgeRoutes(self.state)
        edge.add_to(app.router)
        ManagementRoutes(self.state).add_to(app.router, edge_events=edge.post_events)
        ControlRoutes(self.state).add_to(app.router)
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
        if request.path.startswith(CONTROL_PREFIX):
            return await handler(request)
        resource = request.match_info.route.resource
        endpoint = f"{request.method} {resource.canonical}" if resource is not None else "other"
        if endpoint == "POST /events" and management_token_of(request) is not None:
            endpoint = "POST /events (management)"  # the Management API's, on the Edge's path
        # A request still running when the stats are reset is counted in the old stats only.
        stats = self.state.counters
        stats.requests_total += 1
        stats.by_endpoint[endpoint] += 1
        self.state.in_flight += 1
        if self.state.in_flight > stats.max_in_flight:
            stats.max_in_flight = self.state.in_flight
        status = "500"
        try:
            response: web.StreamResponse = await handler(request)
            status = request.get(OUTCOME) or str(response.status)
            return response
        except web.HTTPException as exc:
            status = str(exc.status)
            raise
        finally:
            self.state.in_flight -= 1
            stats.by_status[status] += 1


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """Bind the listening socket up front, so `--port 0` yields the chosen port before serving."""
    if not is_loopback(host):
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


def url_of(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def new_event_loop() -> asyncio.AbstractEventLoop:
    # uvloop roughly doubles the requests one core can answer; the emulator works without it.
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
