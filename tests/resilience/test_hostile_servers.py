"""Hostile servers over real HTTP on 127.0.0.1: answers that trickle, a certificate nobody trusts, a port where
nothing listens, error bodies in gzip, a Management API that answers 200 with something else than a list.

Each server is a plain socket in a thread of its own that says exactly the bytes a test needs; the client and
the delivery must end every request in bounded time and say what is wrong with the destination once.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gzip
import ipaddress
import json
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from contentstack_assets.personalize.client import EdgeClient, ManagementClient, PersonalizeError, Response
from contentstack_assets.resources import PersonalizeResource
from tests.helpers import (
    PROJECT_UID,
    free_port,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)
from tests.resilience.test_hostile_config import TOKEN, assert_one_clear_paragraph

PLAN_ONLY = {"plan": {"column": "plan_name", "type": "string"}}


@contextlib.contextmanager
def hostile_server(
    answer: Callable[[socket.socket, threading.Event], None], tls: ssl.SSLContext | None = None
) -> Iterator[tuple[str, list[int]]]:
    """A server on 127.0.0.1 that reads each request and lets `answer` write whatever it likes; yields its URL
    and a one-item list counting the connections it accepted."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.1)
    stop = threading.Event()
    accepted = [0]

    def serve_one(connection: socket.socket) -> None:
        with contextlib.suppress(OSError), connection:
            if tls is not None:
                connection = tls.wrap_socket(connection, server_side=True)
            read_request(connection)
            answer(connection, stop)

    def serve() -> None:
        while not stop.is_set():
            try:
                connection, _ = listener.accept()
            except TimeoutError:
                continue
            accepted[0] += 1
            connection.settimeout(30)
            threading.Thread(target=serve_one, args=(connection,), daemon=True).start()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    scheme = "https" if tls is not None else "http"
    try:
        yield f"{scheme}://127.0.0.1:{listener.getsockname()[1]}", accepted
    finally:
        stop.set()
        thread.join()
        listener.close()


def read_request(connection: socket.socket) -> None:
    """Read one request's head and body (by Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            return
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            return
        body += chunk


def trickle(body: bytes, every_s: float) -> Callable[[socket.socket, threading.Event], None]:
    """An answer whose headers come at once and whose body then comes one byte every `every_s` seconds."""

    def answer(connection: socket.socket, stop: threading.Event) -> None:
        connection.sendall(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
        )
        for byte in body:
            if stop.wait(every_s):
                return
            connection.sendall(bytes([byte]))

    return answer


def canned(status: int, body: bytes, headers: dict[str, str] | None = None):
    """An answer sent whole: a status, headers and a body."""

    def answer(connection: socket.socket, stop: threading.Event) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\nConnection: close\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
        connection.sendall(head.encode() + b"\r\n" + body)

    return answer


def one_update(client: EdgeClient, user_uid: str = "u1") -> Response:
    async def call() -> Response:
        async with client as edge:
            return await edge.update_attributes(user_uid, {"plan": "gold"})

    return asyncio.run(call())


def self_signed_tls(directory: Path) -> ssl.SSLContext:
    """A server context with a certificate for 127.0.0.1 that no bundle trusts."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .sign(key, hashes.SHA256())
    )
    (directory / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    (directory / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(directory / "cert.pem", directory / "key.pem")
    return context


def step_failure(result) -> str:
    from tests.resilience.test_faults import failure_messages

    return failure_messages(result).removeprefix("dagster._core.definitions.events.Failure: ")


# -- 6: a total deadline per request ---------------------------------------------------------------------------
def test_a_trickling_edge_answer_ends_at_the_deadline_and_is_retried_as_a_timeout():
    """One byte every 0.2 s never trips a 1 s read timeout; the whole answer would take 12 s."""
    with hostile_server(trickle(b" " * 58 + b"{}", 0.2)) as (url, accepted):
        client = EdgeClient(
            url, PROJECT_UID, timeout_s=1.0, connect_timeout_s=1.0, max_retries=1, backoff_factor=0.01
        )
        started = time.monotonic()
        response = one_update(client)
        elapsed = time.monotonic() - started
    assert not response.ok and response.status is None and response.attempts == 2, response
    assert "timed out" in response.error
    assert accepted[0] == 2
    assert elapsed < 10, elapsed


def test_a_trickling_management_answer_ends_at_the_deadline_and_is_retried_as_a_timeout():
    with hostile_server(trickle(b" " * 58 + b"[]", 0.2)) as (url, accepted):
        client = ManagementClient(
            url, PROJECT_UID, TOKEN, timeout_s=1.0, connect_timeout_s=1.0, max_retries=1
        )
        started = time.monotonic()
        with pytest.raises(PersonalizeError) as error:
            client.list_attributes()
        elapsed = time.monotonic() - started
    assert_one_clear_paragraph(str(error.value), "timed out", "to list attributes")
    assert accepted[0] == 2
    assert elapsed < 10, elapsed


# -- 7 and 8: a destination that cannot be reached stops delivery, said once ---------------------------------
def test_a_certificate_error_is_named_as_such_not_blamed_on_the_user_uid(tmp_path):
    with hostile_server(canned(200, b"{}"), tls=self_signed_tls(tmp_path)) as (url, accepted):
        response = one_update(EdgeClient(url, PROJECT_UID, max_retries=2, backoff_factor=0.01))
    assert not response.ok and response.status is None
    assert "user uid" not in response.error, response.error
    assert "certificate" in response.error and url in response.error, response.error
    assert response.attempts == 1 and accepted[0] == 1  # a certificate does not get better on a retry


def unreachable_run(tmp_path, instance, edge_url: str, users: int, concurrency: int):
    rows = [dict(user_uid=f"u{i:04d}", plan_name="free") for i in range(users)]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    spec = write_spec(
        tmp_path / "syncs.yaml", [users_sync(url, edge_url, attributes=PLAN_ONLY, concurrency=concurrency)]
    )
    resource = PersonalizeResource(max_retries=5, backoff_factor=0.01, backoff_max_s=0.05, timeout_s=2)
    return run_job(spec, "users_sync", instance, resources={"personalize": resource})


def test_a_self_signed_edge_stops_delivery_and_names_the_tls_error_once(tmp_path, instance):
    with hostile_server(canned(200, b"{}"), tls=self_signed_tls(tmp_path)) as (url, accepted):
        result = unreachable_run(tmp_path, instance, url, users=60, concurrency=4)
        connections = accepted[0]
    assert not result.success
    message = step_failure(result)
    assert_one_clear_paragraph(message, "delivery stopped", "TLS", "certificate", url)
    assert "user uid" not in message and message.count("TLS handshake error") == 1, message
    metadata = push_metadata(result)
    assert metadata["users_delivered"] == 0 and metadata["users_failed"] <= 5 + 4, metadata
    assert connections == metadata["requests_sent"] == metadata["users_failed"]


def test_an_edge_url_where_nothing_listens_stops_delivery_after_the_first_users(tmp_path, instance):
    """32 users against a closed port took 192 requests (6 each) and minutes before failing."""
    edge_url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    result = unreachable_run(tmp_path, instance, edge_url, users=32, concurrency=8)
    assert not result.success
    message = step_failure(result)
    assert_one_clear_paragraph(
        message, "delivery stopped", "of 32 users", "connection refused", edge_url, "edge_url", "run again"
    )
    metadata = push_metadata(result)
    assert metadata["users_delivered"] == 0
    assert metadata["users_failed"] <= 5 + 8 and metadata["requests_sent"] == 6 * metadata["users_failed"]
    assert time.monotonic() - started < 60


# -- 13: error bodies whatever their encoding ------------------------------------------------------------------
ATTRIBUTE_ERROR = json.dumps({"message": "Attribute plan does not exist in the project"}).encode()


@pytest.mark.parametrize(
    ("encoding", "encode"), [("gzip", gzip.compress), ("deflate", zlib.compress)], ids=["gzip", "deflate"]
)
def test_a_compressed_error_body_is_read(encoding, encode):
    answer = canned(400, encode(ATTRIBUTE_ERROR), {"Content-Encoding": encoding})
    with hostile_server(answer) as (url, _):
        response = one_update(EdgeClient(url, PROJECT_UID, max_retries=0))
    assert not response.ok and response.status == 400
    assert "Attribute plan does not exist" in response.error, response.error
    assert "create it in Personalize" in response.error


# -- 14: a Management API 200 that is not a list ---------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [b'{"error": "project is being migrated"}', b'{"attributes": "none"}', b'"maintenance"', b"42"],
    ids=["error envelope", "envelope without a list", "a string", "a number"],
)
def test_a_management_200_with_an_unexpected_body_is_named_not_read_as_no_attributes(body):
    answer = canned(200, body, {"Content-Type": "application/json"})
    with hostile_server(answer) as (url, _), pytest.raises(PersonalizeError) as error:
        ManagementClient(url, PROJECT_UID, TOKEN, max_retries=0).list_attributes()
    assert_one_clear_paragraph(
        str(error.value), "answered 200 with an unexpected body", "to list attributes", body.decode()[:20]
    )


def test_a_management_envelope_holding_the_list_is_still_read():
    body = json.dumps({"attributes": [{"key": "plan"}]}).encode()
    with hostile_server(canned(200, body, {"Content-Type": "application/json"})) as (url, _):
        assert ManagementClient(url, PROJECT_UID, TOKEN, max_retries=0).list_attributes() == [{"key": "plan"}]
