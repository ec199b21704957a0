"""What every API route shares on the wire: Contentstack's error body, the refusal a handler raises
(`BadRequest`), the checks of the project and user headers and of a JSON body (under the content types the
real Edge accepts), and a connection closed without an answer.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from contentstack_assets.personalize.emulator.config import EmulatorConfig


class BadRequest(Exception):
    """A refused request; turned into a JSON error response by the Edge pipeline."""

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


def error_response(
    status: int, code: str, message: str, *, headers: Mapping[str, str] | None = None, **details: Any
) -> web.Response:
    # The shape of Contentstack's own error bodies.
    return web.json_response(
        {"error_code": code, "error_message": message, **details}, status=status, headers=headers
    )


#: What stats record for a request answered without an HTTP status ("dropped", "499").
OUTCOME = web.RequestKey("emulator_outcome", str)


def drop_connection(request: web.Request) -> web.Response:
    """Close the connection without an answer, so the client sees a connection error.

    aiohttp then fails to write the returned response into the closed transport and drops it
    quietly; the response object only satisfies the handler's return type.
    """
    request[OUTCOME] = "dropped"
    transport = request.transport
    if transport is not None:
        transport.close()
    return web.Response(status=500)


def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's json module would accept them.
    raise ValueError(f"{name} is not valid JSON")


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body, parse_constant=_reject_constant)
    except ValueError as exc:
        raise BadRequest(400, "INVALID_JSON", f"request body is not valid JSON: {exc}") from None


#: Content types a JSON body may come under. The official SDK passes its JSON text to fetch without a content
#: type, so it goes as `text/plain;charset=UTF-8`, and the real Edge accepts it; a body without any content type
#: is read as JSON too. Other media types (forms, XML) are refused.
JSON_BODY_TYPES = frozenset({"application/json", "text/plain"})


def require_json_content_type(request: web.Request) -> None:
    # aiohttp reports a missing header as application/octet-stream: look at the header itself.
    if "Content-Type" not in request.headers:
        return
    if request.content_type not in JSON_BODY_TYPES:
        raise BadRequest(
            415,
            "UNSUPPORTED_MEDIA_TYPE",
            "Content-Type must be application/json or text/plain (a JSON body), "
            f"got {request.headers.get('Content-Type')!r}",
        )


def require_project(request: web.Request, config: EmulatorConfig) -> str:
    project = request.headers.get("x-project-uid", "").strip()
    if not project:
        raise BadRequest(400, "MISSING_PROJECT_UID", "x-project-uid header is required")
    if config.project_uid is not None and project != config.project_uid:
        raise BadRequest(404, "PROJECT_NOT_FOUND", "project not found")
    return project


def require_user_uid(request: web.Request) -> str:
    uid = request.headers.get("x-cs-personalize-user-uid", "")
    if not uid.strip():
        raise BadRequest(400, "MISSING_USER_UID", "x-cs-personalize-user-uid header is required")
    return uid


def management_token_of(request: web.Request) -> str | None:
    """The Management API's token of a request (`authtoken`, or `authorization: Bearer`), None without one.
    An Edge request carries none: that is how the shared POST /events route tells the two APIs apart."""
    token = request.headers.get("authtoken", "").strip()
    if not token:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        token = credentials.strip() if scheme.lower() == "bearer" else ""
    return token or None
