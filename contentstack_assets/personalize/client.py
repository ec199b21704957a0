"""HTTP clients for the Personalize Edge API (no auth, one user per request) and the Management API.

The Edge client is asynchronous (aiohttp). A sync sends thousands of small requests that mostly wait on the
network; one event loop holds `concurrency` of them in flight for about a third of the CPU that a thread per
request over urllib3 costs, and on a small machine that CPU is what caps a first sync (docs/contract-notes.md
has the measurements). Retries live here: 429, 5xx, dropped connections and timeouts are retried with
exponential backoff and jitter, `Retry-After` is honoured (capped, so a hostile header cannot park a run for
an hour), a request has a deadline for its whole answer besides its timeout per read (a server trickling a
byte at a time would otherwise hold it for ever), and every attempt is counted so `requests_sent` is honest. A response never reaches a log with its
headers; an error text is the status and the start of the API's response body.

The Management client makes a few calls per run (listing the project's keys; with `create_missing`, creating
the missing ones) and stays on `requests` with urllib3's `Retry`, which honours `Retry-After` on a 429; it
also paces itself under the Management API's 10 requests a second.
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import os
import random
import ssl
import threading
import time
import urllib.parse
import urllib.request
import zlib
from dataclasses import dataclass, replace
from types import TracebackType

import aiohttp
import certifi
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
USER_AGENT = "contentstack_assets (+https://github.com/contentstack-assets)"


@dataclass(frozen=True)
class Response:
    """The outcome of one call, after retries."""

    ok: bool
    status: int | None
    attempts: int
    latency_ms: float
    error: str | None = None
    body: str | None = None
    unreachable: bool = False  # no connection at all (refused, no such host, TLS): the same for every call
    # an attempt's answer was lost after the request went out: the API may have applied it (the call may
    # still have succeeded on a later attempt, which then applied it again)
    answer_lost: bool = False


class PersonalizeError(RuntimeError):
    """A call that cannot succeed as configured; the message says what to fix."""


@dataclass(frozen=True)
class RetryPolicy:
    """When to try a request again, and how long to wait first."""

    max_retries: int = 5
    backoff_factor: float = 0.5
    backoff_max_s: float = 30.0
    retry_after_max_s: float = 60.0

    def delay_s(self, retry: int, retry_after: str | None = None) -> float:
        """Seconds before retry number `retry` (1, 2, ...): the server's `Retry-After` when it sends one
        (capped), else `backoff_factor * 2^(retry-1)` (capped) plus up to half a factor of jitter."""
        if retry_after is not None:
            seconds = _retry_after_s(retry_after)
            if seconds is not None:
                return min(seconds, self.retry_after_max_s)
        backoff = min(self.backoff_max_s, self.backoff_factor * 2 ** (retry - 1))
        return backoff + random.uniform(0, self.backoff_factor / 2)


def _retry_after_s(value: str) -> float | None:
    """`Retry-After` as seconds from now: delta-seconds or an HTTP date (RFC 9110); None when unreadable."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())


def _error_text(status: int, text: str) -> str:
    body = text.strip().replace("\n", " ")
    return f"HTTP {status}: {body[:200]}" if body else f"HTTP {status}"


def _decompressed(body: bytes, encoding: str | None, limit: int = 65536) -> bytes:
    """An error body as the server wrote it (at most `limit` bytes of it). The Edge session leaves bodies
    compressed (a success body is never read, so decompressing it would be CPU spent for nothing) while
    aiohttp asks for gzip or deflate, so an error body is decompressed here; an encoding it cannot undo stays."""
    encoding = (encoding or "").strip().lower()
    if encoding not in ("gzip", "x-gzip", "deflate"):
        return body
    for wbits in (32 + zlib.MAX_WBITS, -zlib.MAX_WBITS):  # gzip or zlib header, else raw deflate
        try:
            return zlib.decompressobj(wbits).decompress(body, limit)
        except zlib.error:
            continue
    return body


def _proxy_for(base_url: str) -> str | None:
    """The proxy the environment sets for `base_url` (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY), read once
    when a client is built, as `requests` would read it on every call."""
    url = urllib.parse.urlsplit(base_url)
    if urllib.request.proxy_bypass(url.hostname or ""):
        return None
    proxies = urllib.request.getproxies()
    proxy = proxies.get(url.scheme) or proxies.get("all")
    if not proxy:
        return None
    if "://" not in proxy:
        proxy = f"http://{proxy}"
    if not proxy.lower().startswith(("http://", "https://")):
        raise PersonalizeError(
            f"the proxy set in the environment for {url.scheme} ({urllib.parse.urlsplit(proxy).scheme}://...) is not an HTTP "
            "proxy, which the Edge client cannot use: set HTTPS_PROXY to an http:// proxy, or exempt the API host "
            "with NO_PROXY"
        )
    return proxy


def _tls_context() -> ssl.SSLContext:
    """Certificates from REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE / SSL_CERT_FILE when set, else certifi's bundle
    (what `requests` trusts)."""
    bundle = next(
        (
            os.environ[name]
            for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE", "SSL_CERT_FILE")
            if os.environ.get(name)
        ),
        certifi.where(),
    )
    if os.path.isdir(bundle):
        return ssl.create_default_context(capath=bundle)
    return ssl.create_default_context(cafile=bundle)


class EdgeClient:
    """Domain verbs over the Edge API for one project, as coroutines on one pool of connections.

    Open it in the event loop that makes the calls (`async with EdgeClient(...) as edge:`); it holds at most
    `pool_size` connections and makes further calls wait for one. It keeps no cookies and does not follow
    redirects: the Edge API answers every call itself, so a 3xx is reported as a failure that names the URL to
    fix, rather than re-sent to wherever it points.
    """

    def __init__(
        self,
        base_url: str,
        project_uid: str,
        *,
        pool_size: int = 16,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        deadline_s: float | None = None,
        max_retries: int = 5,
        backoff_factor: float = 0.5,
        backoff_max_s: float = 30.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.project_uid = project_uid
        self.pool_size = pool_size
        self.retry = RetryPolicy(max_retries, backoff_factor, backoff_max_s)
        # per read, and a deadline for the whole request: a server trickling a byte per second never trips
        # the read timeout (waiting for a pooled connection counts too: the pool holds `concurrency` of them)
        self._timeout = aiohttp.ClientTimeout(
            total=deadline_s if deadline_s is not None else connect_timeout_s + timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=timeout_s,
        )
        self._headers = {
            "User-Agent": USER_AGENT,
            "Accept": "*/*",
            "Content-Type": "application/json",
            "x-project-uid": project_uid,
        }
        self._proxy = _proxy_for(self.base_url)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> EdgeClient:
        tls = _tls_context() if self.base_url.startswith("https://") else None
        connector = aiohttp.TCPConnector(limit=self.pool_size, ttl_dns_cache=300, ssl=tls if tls else True)
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._timeout,
            headers=self._headers,
            proxy=self._proxy,
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=False,
        )
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    # -- verbs ------------------------------------------------------------------------------------
    async def update_attributes(self, user_uid: str, attributes: dict) -> Response:
        """PATCH /user-attributes: a partial update of one user's custom attributes."""
        return await self._call("PATCH", "/user-attributes", attributes, user_uid)

    async def merge_users(self, source_uid: str, target_uid: str) -> Response:
        """POST /user-attributes/actions/merge: fold an anonymous user into a known one (source wins)."""
        return await self._call(
            "POST",
            "/user-attributes/actions/merge",
            {"sourceUserUid": source_uid, "targetUserUid": target_uid},
            None,
        )

    async def track_events(
        self, user_uid: str, event_keys: list[str], *, resend_lost: bool = True
    ) -> Response:
        """POST /events: one user's conversion events as one JSON array. The API has no idempotency key:
        with `resend_lost=False` a request whose answer was lost after it went out is not sent again (the
        response says `answer_lost`)."""
        return await self._call(
            "POST",
            "/events",
            [{"eventKey": key, "type": "EVENT"} for key in event_keys],
            user_uid,
            resend_lost=resend_lost,
        )

    # -- transport -------------------------------------------------------------------------------
    async def _call(
        self, method: str, path: str, payload: object, user_uid: str | None, *, resend_lost: bool = True
    ) -> Response:
        if self._session is None:
            raise RuntimeError("open the client first: `async with EdgeClient(...) as edge:`")
        headers = None if user_uid is None else {"x-cs-personalize-user-uid": user_uid}
        data = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
        url = self.base_url + path
        started = time.perf_counter()
        attempts = 0
        lost = False
        while True:
            attempts += 1
            retry_after = None
            try:
                async with self._session.request(
                    method, url, data=data, headers=headers, allow_redirects=False
                ) as response:
                    body = await response.read()
                    status = response.status
                    if not 200 <= status < 300:
                        body = _decompressed(body, response.headers.get("Content-Encoding"))
                    text = body.decode("utf-8", "replace")
                    if status in RETRY_STATUSES:
                        retry_after = response.headers.get("Retry-After")
            except (aiohttp.ClientError, TimeoutError, OSError) as error:
                # before ValueError: a certificate error is both (ssl.CertificateError)
                lost = lost or _answer_may_be_lost(error)
                if lost and not resend_lost:
                    return replace(self._transport_failure(error, attempts, started), answer_lost=True)
                if _is_retryable(error) and attempts <= self.retry.max_retries:
                    await asyncio.sleep(self.retry.delay_s(attempts))
                    continue
                return replace(self._transport_failure(error, attempts, started), answer_lost=lost)
            except ValueError:  # aiohttp refuses a header value (a CR/LF): no request went out
                return Response(
                    False,
                    None,
                    attempts,
                    _ms_since(started),
                    "not sent: the user uid holds a character an HTTP header cannot carry",
                )
            if status in RETRY_STATUSES and attempts <= self.retry.max_retries:
                await asyncio.sleep(self.retry.delay_s(attempts, retry_after))
                continue
            latency = _ms_since(started)
            if 200 <= status < 300:
                return Response(True, status, attempts, latency, body=text[:200], answer_lost=lost)
            return Response(
                False, status, attempts, latency, self._edge_error_text(status, text), answer_lost=lost
            )

    def _transport_failure(self, error: BaseException, attempts: int, started: float) -> Response:
        """A call that got no answer; one that could not even connect (refused, no such host, a certificate)
        names the Edge URL, since every other call will fail the same way."""
        text = _describe_exception(error)
        unreachable = isinstance(error, aiohttp.ClientConnectorError)
        if unreachable:
            text = f"{text}; Edge API at {self.base_url}: check region / edge_url and that this machine can reach it"
        return Response(False, None, attempts, _ms_since(started), text, unreachable=unreachable)

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


def _answer_may_be_lost(error: BaseException) -> bool:
    """Whether the request may have reached the API before the error: anything but a failure to connect
    (a dropped connection or a timeout while waiting for the answer)."""
    if isinstance(error, aiohttp.ClientConnectorError | aiohttp.ConnectionTimeoutError):
        return False
    return isinstance(
        error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError | OSError
    )


def _is_retryable(error: BaseException) -> bool:
    """A lost connection or a timeout may succeed next time; a certificate, a proxy refusal or a bad URL won't."""
    if isinstance(error, aiohttp.ClientSSLError | aiohttp.InvalidURL | aiohttp.ClientProxyConnectionError):
        return False
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return True  # resolvers fail transiently too
    return isinstance(
        error, aiohttp.ClientConnectionError | aiohttp.ClientPayloadError | TimeoutError | OSError
    )


def _describe_exception(error: BaseException) -> str:
    """A one-line reason for a transport failure, with no URL, query or headers."""
    if isinstance(error, aiohttp.ClientProxyConnectionError | aiohttp.ClientHttpProxyError):
        return (
            "connection failed: the proxy from the environment (HTTPS_PROXY / HTTP_PROXY / ALL_PROXY) could "
            "not be reached or refused the connection (check it, or exempt the API host with NO_PROXY)"
        )
    if isinstance(error, aiohttp.ClientConnectorDNSError):
        return "connection failed: the host name does not resolve (check region / the API URL)"
    if isinstance(error, aiohttp.ClientSSLError):
        return (
            "connection failed: TLS handshake error (the server's certificate is not trusted or invalid; a "
            "private CA or TLS-inspecting proxy needs its CA in SSL_CERT_FILE or REQUESTS_CA_BUNDLE)"
        )
    if isinstance(error, TimeoutError):  # aiohttp's socket timeouts derive from it
        return "timed out (retries exhausted): no answer within the client's timeout"
    if isinstance(error, aiohttp.ClientConnectorError):
        refused = isinstance(error.os_error, ConnectionRefusedError)
        what = "connection refused" if refused else "cannot connect"
        return f"connection failed (retries exhausted): {what} (is the API URL right and the service up?)"
    if isinstance(
        error,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | aiohttp.ClientPayloadError
        | ConnectionError,
    ):
        return "connection failed (retries exhausted): the server closed the connection without an answer"
    return f"connection failed (retries exhausted): {type(error).__name__}"


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000.0


# -- the Management API ----------------------------------------------------------------------------
def _session(
    pool_size: int, max_retries: int, backoff_factor: float, backoff_max_s: float
) -> requests.Session:
    retry = Retry(
        total=max_retries,
        other=0,
        allowed_methods=None,
        status_forcelist=sorted(RETRY_STATUSES),
        backoff_factor=backoff_factor,
        backoff_max=backoff_max_s,
        backoff_jitter=backoff_factor / 2,
        respect_retry_after_header=True,
        raise_on_status=False,  # a status still failing after the last retry is returned, not raised
    )
    adapter = HTTPAdapter(pool_connections=1, pool_maxsize=pool_size, pool_block=True, max_retries=retry)
    session = requests.Session()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers.update({"User-Agent": USER_AGENT})
    return session


class ManagementRefused(PersonalizeError):
    """A create the Management API answered with an error: `status` and `detail` (the status and the start of
    its body) let the caller say what it means for the sync."""

    def __init__(self, message: str, status: int, detail: str) -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail


class _Pacer:
    """At most `per_second` requests a second from this client: each waits for its turn (the Management API
    allows 10 a second per organization and answers 429 above it)."""

    def __init__(self, per_second: float) -> None:
        self._interval = 1.0 / per_second if per_second > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = time.monotonic()
            turn = max(now, self._next)
            self._next = turn + self._interval
        if turn > now:
            time.sleep(turn - now)


_PACERS: dict[tuple[str, float], _Pacer] = {}
_PACERS_LOCK = threading.Lock()


def _pacer_for(base_url: str, per_second: float) -> _Pacer:
    """One pacer per Management host in this process: the API counts the requests of the whole organization,
    so every client of a run (each sync's, each shard's) shares the pace."""
    with _PACERS_LOCK:
        return _PACERS.setdefault((base_url, per_second), _Pacer(per_second))


class ManagementClient:
    """The Management API: listing a project's attributes and events to check the spec against them, and
    creating the missing ones (`create_attribute`, `create_event`: the `personalize:manage` scope)."""

    def __init__(
        self,
        base_url: str,
        project_uid: str,
        token: str,
        *,
        timeout_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        deadline_s: float | None = None,
        max_retries: int = 3,
        requests_per_second: float = 10.0,
    ):
        self.base_url = base_url.rstrip("/")
        self.project_uid = project_uid
        self._token = token
        self._pacer = _pacer_for(self.base_url, requests_per_second)
        self.timeout = (connect_timeout_s, timeout_s)
        self.deadline_s = deadline_s if deadline_s is not None else connect_timeout_s + timeout_s
        self.retry = RetryPolicy(max_retries, 1.0, 10.0)
        self.session = _session(2, max_retries, 1.0, 10.0)

    def list_attributes(self) -> list[dict]:
        return self._get("/attributes", "attributes")

    def list_events(self) -> list[dict]:
        return self._get("/events", "events")

    def create_attribute(self, key: str, name: str, description: str) -> bool:
        """POST /attributes: create the custom attribute `key`. True when created, False when the project
        holds it already (the API's 409, e.g. after a retry of a create whose answer was lost)."""
        return self._create(
            "/attributes", {"name": name, "key": key, "description": description}, "attribute"
        )

    def create_event(self, key: str, description: str) -> bool:
        """POST /events (the Management API's): create the event `key`. True when created, False when the
        project holds it already."""
        return self._create("/events", {"key": key, "description": description}, "event")

    def _create(self, path: str, payload: dict[str, str], what: str) -> bool:
        key = payload["key"]
        response = self._send("POST", path, f"create {what} {key!r}", payload)
        if response.status_code == 409:
            return False
        if response.status_code == 401:
            raise PersonalizeError(
                f"the Personalize Management API refused the management token (HTTP 401) while creating {what} "
                f"{key!r} in project {self.project_uid}: the token is wrong, expired or revoked. Set "
                "PERSONALIZE_MANAGEMENT_TOKEN to a valid user session token or OAuth token."
            )
        if not response.ok:
            detail = _error_text(response.status_code, response.text)
            raise ManagementRefused(
                f"creating {what} {key!r} in project {self.project_uid} failed: {detail}",
                response.status_code,
                detail,
            )
        return True

    def _send(self, method: str, path: str, what: str, payload: dict | None = None) -> requests.Response:
        """One call, paced, with urllib3's retries and the deadline's; `what` names it in a failure."""
        # a session token goes in `authtoken`, an OAuth token as a bearer; both shapes are accepted
        header = (
            {"authorization": self._token}
            if self._token.lower().startswith("bearer ")
            else {"authtoken": self._token}
        )
        attempts = 0
        while True:
            attempts += 1
            try:
                return self._fetch(path, {"x-project-uid": self.project_uid, **header}, method, payload)
            except requests.RequestException as error:
                if isinstance(error, _DeadlinePassed) and attempts <= self.retry.max_retries:
                    time.sleep(self.retry.delay_s(attempts))
                    continue
                raise PersonalizeError(
                    f"cannot reach the Personalize Management API at {self.base_url} to {what}: "
                    f"{_describe_requests_exception(error)}"
                ) from None

    def _get(self, path: str, what: str) -> list[dict]:
        response = self._send("GET", path, f"list {what}")
        if response.status_code in (401, 403):
            raise PersonalizeError(
                f"the Personalize Management API refused the management token (HTTP {response.status_code}) while "
                f"listing {what} of project {self.project_uid}: the token is wrong, expired or revoked, or lacks the "
                "personalize:read scope. Set PERSONALIZE_MANAGEMENT_TOKEN to a valid user session token or OAuth "
                "token (stack management tokens are refused), or leave it empty to skip the key check (not with "
                "`destination.create_missing: true`, which needs it)."
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
            listed = listed.get(what)
        if not isinstance(listed, list):
            # an error envelope read as an empty list would tell the user to create what exists
            excerpt = " ".join(response.text.split())[:200]
            raise PersonalizeError(
                f"the Personalize Management API answered 200 with an unexpected body to list {what} of project "
                f"{self.project_uid} (not a list of {what}): {excerpt}"
            )
        return [item for item in listed if isinstance(item, dict)]

    def _fetch(
        self, path: str, headers: dict[str, str], method: str = "GET", payload: dict | None = None
    ) -> requests.Response:
        """`method` `path`, its body read whole by the deadline: the timeouts of `requests` bound each read of
        the socket, so a server sending a byte every few seconds would hold the call for ever. urllib3 retries
        what fails before the answer's head (a 429 after its Retry-After); a body late or cut off is
        `_DeadlinePassed`, retried by `_send`."""
        self._pacer.wait()
        deadline = time.monotonic() + self.deadline_s
        response = self.session.request(
            method, self.base_url + path, headers=headers, json=payload, timeout=self.timeout, stream=True
        )
        try:
            body = _read_by(response, deadline)
        except BaseException:
            response.close()  # the connection is dropped, not handed back half read
            raise
        response._content = body  # where `requests` keeps a body it reads itself
        response._content_consumed = True
        response.close()  # back to the pool
        return response


def _read_by(response: requests.Response, deadline: float) -> bytes:
    """The decoded body of a streamed response, read whole before `deadline` (a `time.monotonic()`)."""
    chunks = []
    try:
        while time.monotonic() < deadline:
            chunk = response.raw.read1(65536, decode_content=True)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    except urllib3.exceptions.ReadTimeoutError:
        raise _DeadlinePassed("no answer within the read timeout") from None
    except urllib3.exceptions.DecodeError as error:
        raise requests.exceptions.ContentDecodingError(error) from None
    except urllib3.exceptions.HTTPError as error:
        raise requests.exceptions.ConnectionError(error) from None
    raise _DeadlinePassed("no whole answer by the deadline")


class _DeadlinePassed(requests.exceptions.ReadTimeout):
    """A Management API answer not read whole within the client's deadline."""


def _describe_requests_exception(error: requests.RequestException) -> str:
    """A one-line reason for a Management API call that never got an answer, with no URL or headers."""
    if isinstance(error, requests.exceptions.ProxyError):
        return (
            "connection failed: the proxy from the environment could not be reached or refused the connection"
        )
    if isinstance(error, requests.exceptions.SSLError):
        return "connection failed: TLS handshake error (the server's certificate is not trusted or invalid)"
    if isinstance(error, requests.Timeout):
        return "timed out (retries exhausted): no answer within the client's timeout"
    text = str(error)
    if "NameResolutionError" in text or "Name or service not known" in text:
        return "connection failed: the host name does not resolve (check region / the API URL)"
    if "Connection refused" in text:
        return "connection failed (retries exhausted): connection refused (is the API URL right and the service up?)"
    return "connection failed (retries exhausted): the server closed the connection or could not be reached"
