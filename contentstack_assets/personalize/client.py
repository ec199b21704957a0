"""HTTP clients for the Personalize Edge API (no auth, one user per request) and the Management API.

Retries live here, in urllib3's `Retry`: 429, 5xx and connection errors are retried with exponential backoff
and jitter, `Retry-After` is honoured (capped, so a hostile header cannot park a run for an hour), and every
attempt is counted so `requests_sent` is honest. A response never reaches a log with its headers; an error
text is the status and the start of the API's response body.

The Edge client speaks to urllib3's connection pool directly: `requests` adds about 0.8 ms of CPU per call on
top of it, which caps a first sync at a few hundred users a second on a small machine. The Management client
makes two calls per run and stays on `requests`.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
import time
from dataclasses import dataclass

import requests
import urllib3
from requests.adapters import HTTPAdapter
from requests.utils import (
    DEFAULT_CA_BUNDLE_PATH,
    get_auth_from_url,
    prepend_scheme_if_needed,
    select_proxy,
    urldefragauth,
)
from urllib3 import exceptions as urllib3_exceptions
from urllib3.util import parse_url
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


def _retry(max_retries: int, backoff_factor: float, backoff_max_s: float) -> _CountingRetry:
    return _CountingRetry(
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
        raise_on_status=False,  # a status still failing after the last retry is returned, not raised
    )


def _session(
    pool_size: int, max_retries: int, backoff_factor: float, backoff_max_s: float
) -> requests.Session:
    retry = _retry(max_retries, backoff_factor, backoff_max_s)
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": USER_AGENT})
    return session


def _error_text(status: int, text: str) -> str:
    body = text.strip().replace("\n", " ")
    return f"HTTP {status}: {body[:200]}" if body else f"HTTP {status}"


def _pool_manager(base_url: str, pool_size: int) -> tuple[urllib3.PoolManager, bool]:
    """A urllib3 pool manager for `base_url`, and whether it goes through a proxy.

    The environment is read here, once, the way `requests` reads it on every call (`trust_env`): the proxy
    from HTTPS_PROXY / HTTP_PROXY / ALL_PROXY unless NO_PROXY covers the host, and the CA bundle from
    REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE, else certifi's.
    """
    with requests.Session() as session:
        settings = session.merge_environment_settings(base_url, {}, None, None, None)
    verify = settings["verify"]
    tls: dict[str, object] = {"cert_reqs": "CERT_REQUIRED"}
    if verify is False:
        tls = {"cert_reqs": "CERT_NONE"}
    elif isinstance(verify, str) and os.path.isdir(verify):
        tls["ca_cert_dir"] = verify
    else:
        tls["ca_certs"] = verify if isinstance(verify, str) else DEFAULT_CA_BUNDLE_PATH
    pool = {"num_pools": 1, "maxsize": pool_size, "block": True, **tls}
    proxy = select_proxy(base_url, settings["proxies"])
    if not proxy:
        return urllib3.PoolManager(**pool), False
    proxy = prepend_scheme_if_needed(proxy, "http")
    username, password = get_auth_from_url(proxy)
    if proxy.lower().startswith("socks"):
        try:
            from urllib3.contrib.socks import SOCKSProxyManager
        except ImportError:
            raise PersonalizeError(
                "the proxy set in the environment (ALL_PROXY / HTTPS_PROXY) is a SOCKS proxy, which needs "
                "PySocks: install it (pip install 'requests[socks]') or unset the proxy"
            ) from None
        return SOCKSProxyManager(proxy, username=username, password=password, **pool), True
    headers = urllib3.make_headers(proxy_basic_auth=f"{username}:{password}") if username else None
    return urllib3.ProxyManager(urldefragauth(proxy), proxy_headers=headers, **pool), True


class EdgeClient:
    """Domain verbs over the Edge API for one project. Thread-safe: one connection pool for all threads.

    Calls go straight to urllib3 (the library under `requests`) with the same `Retry` policy, timeouts and a
    pool of `pool_size` connections that makes a thread wait when all are busy. The proxy and CA bundle are
    taken from the environment once, when the client is built (see `_pool_manager`). Unlike a `requests`
    session it keeps no cookies and does not follow redirects: the Edge API answers every call itself, so a
    3xx is reported as a failure that names the URL to fix, rather than re-sent to wherever it points.
    """

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
        self._session_args = (pool_size, max_retries, backoff_factor, backoff_max_s)
        self._session: requests.Session | None = None
        self._retry = _retry(max_retries, backoff_factor, backoff_max_s)
        self._urllib3_timeout = urllib3.Timeout(connect=connect_timeout_s, read=timeout_s)
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Content-Type": "application/json",
            "x-project-uid": project_uid,
        }
        self._manager, proxied = _pool_manager(self.base_url, pool_size)
        if proxied:  # the proxy manager picks the connection and the request's form (absolute or tunnelled)
            self._urlopen = self._manager.urlopen
            self._url_prefix = self.base_url
        else:  # one host: its pool, taken once, saves the manager's lookup on every call
            self._urlopen = self._manager.connection_from_url(self.base_url).urlopen
            self._url_prefix = parse_url(self.base_url).path or ""

    @property
    def session(self) -> requests.Session:
        """A `requests` session with this client's pool size and retry policy, built on first use.

        The client does not use it: it is kept for code written against the earlier `requests` transport
        (bench/prototypes.py reads its adapter).
        """
        if self._session is None:
            self._session = _session(*self._session_args)
        return self._session

    def close(self) -> None:
        self._manager.clear()
        if self._session is not None:
            self._session.close()

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
        headers = self._headers
        if user_uid is not None:
            headers = {**headers, "x-cs-personalize-user-uid": user_uid}
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        _attempts.count = 1
        started = time.perf_counter()
        try:
            response = self._urlopen(
                method,
                self._url_prefix + path,
                body=data,
                headers=headers,
                retries=self._retry,
                timeout=self._urllib3_timeout,
                redirect=False,
            )
        except (urllib3_exceptions.HTTPError, OSError) as error:
            return Response(False, None, _attempts.count, _ms_since(started), _describe_exception(error))
        except ValueError:  # http.client refuses a header value (a CR/LF or a character outside latin-1)
            return Response(
                False,
                None,
                _attempts.count,
                _ms_since(started),
                "not sent: the user uid or project uid holds a character an HTTP header cannot carry",
            )
        latency = _ms_since(started)
        text = response.data.decode("utf-8", "replace")
        if 200 <= response.status < 300:
            return Response(True, response.status, _attempts.count, latency, body=text[:200])
        return Response(
            False, response.status, _attempts.count, latency, self._edge_error_text(response.status, text)
        )

    def _edge_error_text(self, status: int, body: str) -> str:
        """The status and body, plus what to fix where the status says it is the configuration, not the user."""
        text = _error_text(status, body)
        if status == 404:
            return (
                f"{text}; the Edge API does not know project {self.project_uid!r} at {self.base_url}: the project "
                "uid is probably wrong (check destination.project_uid against the project's settings in "
                "Personalize, and its region / edge_url)"
            )
        if status in (401, 403):
            return (
                f"{text}; the Edge API refused project {self.project_uid!r}: check destination.project_uid and "
                "region / edge_url"
            )
        if status == 400 and "attribute" in body.lower():
            return (
                f"{text}; every attribute key sent must exist as a custom attribute of project "
                f"{self.project_uid!r}: create it in Personalize (Attributes) or fix the spec's `attributes`"
            )
        if 300 <= status < 400:
            return f"{text}; {self.base_url} redirects instead of answering: set region / edge_url to the Edge API"
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
                f"listing {what} of project {self.project_uid} failed: "
                f"{_error_text(response.status_code, response.text)}"
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


def _causes(error: BaseException) -> list[BaseException]:
    """The error and those it wraps, outermost first: requests wraps urllib3's MaxRetryError in its args,
    which holds the last attempt's error in `.reason`, which may wrap the socket error in its args."""
    causes = [error]
    while True:
        nested = getattr(error, "reason", None)
        if not isinstance(nested, BaseException):
            nested = next((arg for arg in getattr(error, "args", ()) if isinstance(arg, BaseException)), None)
        if nested is None or any(nested is seen for seen in causes):
            return causes
        causes.append(nested)
        error = nested


def _root_cause(error: BaseException) -> BaseException:
    """The innermost exception behind a requests or urllib3 error."""
    return _causes(error)[-1]


def _describe_exception(error: Exception) -> str:
    """A one-line reason for a transport failure (retries exhausted), with no URL, query or headers."""
    causes = _causes(error)
    cause = causes[-1]
    # the proxy first: it wraps the error of the connection to the proxy, which is not the API's
    if any(
        isinstance(each, urllib3_exceptions.ProxyError | requests.exceptions.ProxyError) for each in causes
    ):
        return (
            "connection failed: the proxy from the environment (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY) could "
            "not be reached or refused the connection (check it, or exempt the API host with NO_PROXY)"
        )
    # name resolution and refused connections next: urllib3 2 derives NewConnectionError from a timeout
    if isinstance(cause, urllib3_exceptions.NameResolutionError):
        return "connection failed: the host name does not resolve (check region / the API URL)"
    if isinstance(cause, ConnectionRefusedError | urllib3_exceptions.NewConnectionError):
        return "connection failed (retries exhausted): connection refused (is the API URL right and the service up?)"
    if isinstance(error, requests.Timeout) or isinstance(
        cause, TimeoutError | urllib3_exceptions.TimeoutError
    ):
        return "timed out (retries exhausted): no answer within the client's timeout"
    # urllib3 reports a failed handshake as its SSLError around the ssl module's (a certificate, a protocol)
    tls_errors = urllib3_exceptions.SSLError | requests.exceptions.SSLError | ssl.SSLError
    if any(isinstance(each, tls_errors) for each in causes):
        return "connection failed: TLS handshake error"
    if isinstance(
        cause, http.client.RemoteDisconnected | ConnectionResetError | urllib3_exceptions.ProtocolError
    ):
        return "connection failed (retries exhausted): the server closed the connection without an answer"
    return f"connection failed (retries exhausted): {type(cause).__name__}"
