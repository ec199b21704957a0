"""HTTP clients for the Personalize Edge API (no auth, one user per request) and the Management API.

Retries live here, in urllib3's `Retry`: 429, 5xx and connection errors are retried with exponential backoff
and jitter, `Retry-After` is honoured (capped, so a hostile header cannot park a run for an hour), and every
attempt is counted so `requests_sent` is honest. A response never reaches a log with its headers; an error
text is the status and the start of the API's response body.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter
from urllib3 import exceptions as urllib3_exceptions
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)
USER_AGENT = "contentstack_assets (+https://github.com/contentstack-assets)"

_attempts = threading.local()


class _CountingRetry(Retry):
    """urllib3 Retry that counts the attempts of the request running on this thread."""

    retry_after_max: float = 60.0

    def increment(self, *args, **kwargs):  # noqa: ANN002, ANN003
        # called after each failed attempt; another request follows unless the budget is spent
        retry = super().increment(*args, **kwargs)  # raises MaxRetryError when exhausted: no new request
        _attempts.count = getattr(_attempts, "count", 1) + 1
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        return min(super().parse_retry_after(retry_after), self.retry_after_max)


@dataclass(frozen=True)
class Response:
    """The outcome of one call, after retries."""

    ok: bool
    status: int | None
    attempts: int
    latency_ms: float
    error: str | None = None
    body: str | None = None


class PersonalizeError(RuntimeError):
    """A Management API call that cannot succeed as configured; the message says what to fix."""


def _session(
    pool_size: int, max_retries: int, backoff_factor: float, backoff_max_s: float
) -> requests.Session:
    retry = _CountingRetry(
        total=max_retries,
        connect=max_retries,
        read=max_retries,
        status=max_retries,
        other=0,
        allowed_methods=None,  # PATCH attributes, merges and events are all safe to repeat after a lost response
        status_forcelist=RETRY_STATUSES,
        backoff_factor=backoff_factor,
        backoff_max=backoff_max_s,
        backoff_jitter=backoff_factor / 2,
        respect_retry_after_header=True,
        raise_on_status=False,
    )
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": USER_AGENT})
    return session


def _error_text(response: requests.Response) -> str:
    body = response.text.strip().replace("\n", " ")
    return f"HTTP {response.status_code}: {body[:200]}" if body else f"HTTP {response.status_code}"


class EdgeClient:
    """Domain verbs over the Edge API for one project. Thread-safe: one pooled session for all threads."""

    def __init__(
        self,
        base_url: str,
        project_uid: str,
        *,
        pool_size: int = 16,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        max_retries: int = 5,
        backoff_factor: float = 0.5,
        backoff_max_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.project_uid = project_uid
        self.timeout = (connect_timeout_s, timeout_s)
        self.session = _session(pool_size, max_retries, backoff_factor, backoff_max_s)

    def close(self) -> None:
        self.session.close()

    def __enter__(self) -> EdgeClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- verbs ------------------------------------------------------------------------------------
    def update_attributes(self, user_uid: str, attributes: dict) -> Response:
        """PATCH /user-attributes: a partial update of one user's custom attributes."""
        return self._call("PATCH", "/user-attributes", attributes, user_uid)

    def merge_users(self, source_uid: str, target_uid: str) -> Response:
        """POST /user-attributes/actions/merge: fold an anonymous user into a known one (source wins)."""
        return self._call(
            "POST",
            "/user-attributes/actions/merge",
            {"sourceUserUid": source_uid, "targetUserUid": target_uid},
            None,
        )

    def track_events(self, user_uid: str, event_keys: list[str]) -> Response:
        """POST /events: one user's conversion events as one JSON array."""
        return self._call(
            "POST", "/events", [{"eventKey": key, "type": "EVENT"} for key in event_keys], user_uid
        )

    # -- transport -------------------------------------------------------------------------------
    def _call(self, method: str, path: str, payload: object, user_uid: str | None) -> Response:
        headers = {"x-project-uid": self.project_uid, "Content-Type": "application/json"}
        if user_uid is not None:
            headers["x-cs-personalize-user-uid"] = user_uid
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False)
        _attempts.count = 1
        started = time.perf_counter()
        try:
            response = self.session.request(
                method, self.base_url + path, data=data, headers=headers, timeout=self.timeout
            )
        except requests.RequestException as error:
            return Response(False, None, _attempts.count, _ms_since(started), _describe_exception(error))
        latency = _ms_since(started)
        if 200 <= response.status_code < 300:
            return Response(True, response.status_code, _attempts.count, latency, body=response.text[:200])
        return Response(
            False, response.status_code, _attempts.count, latency, self._edge_error_text(response)
        )

    def _edge_error_text(self, response: requests.Response) -> str:
        """The status and body, plus what to fix where the status says it is the configuration, not the user."""
        text = _error_text(response)
        if response.status_code == 404:
            return (
                f"{text}; the Edge API does not know project {self.project_uid!r} at {self.base_url}: the project "
                "uid is probably wrong (check destination.project_uid against the project's settings in "
                "Personalize, and its region / edge_url)"
            )
        if response.status_code in (401, 403):
            return (
                f"{text}; the Edge API refused project {self.project_uid!r}: check destination.project_uid and "
                "region / edge_url"
            )
        if response.status_code == 400 and "attribute" in response.text.lower():
            return (
                f"{text}; every attribute key sent must exist as a custom attribute of project "
                f"{self.project_uid!r}: create it in Personalize (Attributes) or fix the spec's `attributes`"
            )
        return text


class ManagementClient:
    """The Management API: listing a project's attributes and events to check the spec against them."""

    def __init__(
        self, base_url: str, project_uid: str, token: str, *, timeout_s: float = 10.0, max_retries: int = 3
    ):
        self.base_url = base_url.rstrip("/")
        self.project_uid = project_uid
        self._token = token
        self.timeout = (5.0, timeout_s)
        self.session = _session(2, max_retries, 1.0, 10.0)

    def list_attributes(self) -> list[dict]:
        return self._get("/attributes", "attributes")

    def list_events(self) -> list[dict]:
        return self._get("/events", "events")

    def _get(self, path: str, what: str) -> list[dict]:
        # a session token goes in `authtoken`, an OAuth token as a bearer; both shapes are accepted
        header = (
            {"authorization": self._token}
            if self._token.lower().startswith("bearer ")
            else {"authtoken": self._token}
        )
        try:
            response = self.session.get(
                self.base_url + path,
                headers={"x-project-uid": self.project_uid, **header},
                timeout=self.timeout,
            )
        except requests.RequestException as error:
            raise PersonalizeError(
                f"cannot reach the Personalize Management API at {self.base_url} to list {what}: "
                f"{_describe_exception(error)}"
            ) from None
        if response.status_code in (401, 403):
            raise PersonalizeError(
                f"the Personalize Management API refused the management token (HTTP {response.status_code}) while "
                f"listing {what} of project {self.project_uid}: the token is wrong, expired or revoked, or lacks the "
                "personalize:read scope. Set PERSONALIZE_MANAGEMENT_TOKEN to a valid user session token or OAuth "
                "token (stack management tokens are refused), or leave it empty to skip the key check."
            )
        if response.status_code == 404:
            raise PersonalizeError(
                f"the Personalize Management API does not know project {self.project_uid} (HTTP 404) at "
                f"{self.base_url}: check `destination.project_uid` and `region`/`management_url`."
            )
        if not response.ok:
            raise PersonalizeError(
                f"listing {what} of project {self.project_uid} failed: {_error_text(response)}"
            )
        try:
            listed = response.json()
        except ValueError:
            raise PersonalizeError(
                f"listing {what}: the Management API answered something that is not JSON"
            ) from None
        if isinstance(listed, dict):  # tolerate an envelope such as {"attributes": [...]}
            listed = listed.get(what, [])
        return [item for item in listed if isinstance(item, dict)]


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception behind a requests error: requests wraps urllib3's MaxRetryError in its
    args, which holds the last attempt's error in `.reason`, which may wrap the socket error in its args."""
    seen: set[int] = set()
    while id(error) not in seen:
        seen.add(id(error))
        nested = getattr(error, "reason", None)
        if not isinstance(nested, BaseException):
            nested = next((arg for arg in getattr(error, "args", ()) if isinstance(arg, BaseException)), None)
        if nested is None:
            break
        error = nested
    return error


def _describe_exception(error: Exception) -> str:
    """A one-line reason for a transport failure (retries exhausted), with no URL, query or headers."""
    cause = _root_cause(error)
    # name resolution and refused connections first: urllib3 2 derives NewConnectionError from a timeout
    if isinstance(cause, urllib3_exceptions.NameResolutionError):
        return "connection failed: the host name does not resolve (check region / the API URL)"
    if isinstance(cause, ConnectionRefusedError | urllib3_exceptions.NewConnectionError):
        return "connection failed (retries exhausted): connection refused (is the API URL right and the service up?)"
    if isinstance(error, requests.Timeout) or isinstance(
        cause, TimeoutError | urllib3_exceptions.TimeoutError
    ):
        return "timed out (retries exhausted): no answer within the client's timeout"
    if isinstance(error, requests.exceptions.SSLError) or isinstance(cause, urllib3_exceptions.SSLError):
        return "connection failed: TLS handshake error"
    if isinstance(
        cause, http.client.RemoteDisconnected | ConnectionResetError | urllib3_exceptions.ProtocolError
    ):
        return "connection failed (retries exhausted): the server closed the connection without an answer"
    return f"connection failed (retries exhausted): {type(cause).__name__}"
