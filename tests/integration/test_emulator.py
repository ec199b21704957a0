"""The bundled Personalize emulator, over real HTTP."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from contentstack_assets.personalize.emulator import (
    FAULT_KINDS,
    EmulatorConfig,
    EmulatorThread,
    parse_faults,
    run_emulator_in_thread,
    start_emulator_process,
)

PROJECT = "proj0000000000000000000a"
TOKEN = "secret-token"
BASE = EmulatorConfig(
    project_uid=PROJECT,
    attributes=["plan", "ltv", "vip"],
    events=["purchase", "signup"],
    management_token=TOKEN,
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorThread]:
    with run_emulator_in_thread(BASE) as emu:
        yield emu


@pytest.fixture
def emu(server: EmulatorThread) -> EmulatorThread:
    """The module's emulator, back to the base config and empty for each test."""
    server.configure(**BASE.to_json())
    server.reset()
    return server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def edge_headers(user: str | None = "u1", project: str | None = PROJECT) -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if project is not None:
        headers["x-project-uid"] = project
    if user is not None:
        headers["x-cs-personalize-user-uid"] = user
    return headers


def patch(http: requests.Session, emu: Any, body: Any, user: str = "u1") -> requests.Response:
    return http.patch(emu.url + "/user-attributes", json=body, headers=edge_headers(user), timeout=10)


def post_events(http: requests.Session, emu: Any, events: Any, user: str = "u1") -> requests.Response:
    return http.post(emu.url + "/events", json=events, headers=edge_headers(user), timeout=10)


def merge(http: requests.Session, emu: Any, source: Any, target: Any) -> requests.Response:
    return http.post(
        emu.url + "/user-attributes/actions/merge",
        json={"sourceUserUid": source, "targetUserUid": target},
        headers=edge_headers(user=None),
        timeout=10,
    )


# ---- Edge: PATCH /user-attributes ----


def test_patch_applies_and_answers_like_the_edge(emu: EmulatorThread, http: requests.Session) -> None:
    response = patch(http, emu, {"plan": "gold", "ltv": 12.5, "vip": True})
    assert response.status_code == 200
    assert response.text == "User Attributes added successfully"
    assert emu.users() == {"u1": {"plan": "gold", "ltv": 12.5, "vip": True}}
    assert emu.user("u1") == {
        "uid": "u1",
        "attributes": {"plan": "gold", "ltv": 12.5, "vip": True},
        "events": [],
        "merged_into": None,
    }
    assert emu.user("nobody") is None


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        (edge_headers(project=None), 400),
        (edge_headers(user=None), 400),
        ({**edge_headers(), "x-cs-personalize-user-uid": ""}, 400),
        ({**edge_headers(), "x-project-uid": "another-project"}, 404),
        ({**edge_headers(), "Content-Type": "application/x-www-form-urlencoded"}, 415),
        ({**edge_headers(), "Content-Type": "application/xml"}, 415),
    ],
    ids=["no-project", "no-user", "empty-user", "wrong-project", "form-content-type", "xml-content-type"],
)
def test_patch_header_enforcement(
    emu: EmulatorThread, http: requests.Session, headers: dict[str, str], status: int
) -> None:
    response = http.patch(emu.url + "/user-attributes", data=b'{"plan": "gold"}', headers=headers, timeout=10)
    assert response.status_code == status
    body = response.json()
    assert set(body) >= {"error_code", "error_message"}
    if status == 404:
        assert body["error_message"] == "project not found"
    assert emu.users() == {}


def test_json_content_type_with_charset_is_accepted(emu: EmulatorThread, http: requests.Session) -> None:
    headers = {**edge_headers(), "Content-Type": "application/json; charset=utf-8"}
    response = http.patch(emu.url + "/user-attributes", data=b'{"plan": "gold"}', headers=headers, timeout=10)
    assert response.status_code == 200


@pytest.mark.parametrize(
    "content_type",
    ["text/plain;charset=UTF-8", "text/plain", None],
    ids=["text-plain-utf8", "text-plain", "none"],
)
def test_json_under_text_plain_or_no_content_type_is_accepted(
    emu: EmulatorThread, http: requests.Session, content_type: str | None
) -> None:
    """The official SDK sends its JSON as fetch does with a string body: `text/plain;charset=UTF-8`; the real
    Edge accepts it, and a body without a content type too."""
    headers = edge_headers()
    headers.pop("Content-Type")
    if content_type is not None:
        headers["Content-Type"] = content_type
    # requests adds no Content-Type for bytes data, so `None` really sends none.
    patched = http.patch(emu.url + "/user-attributes", data=b'{"plan": "gold"}', headers=headers, timeout=10)
    events = http.post(
        emu.url + "/events", data=b'[{"eventKey": "signup", "type": "EVENT"}]', headers=headers, timeout=10
    )
    merged = http.post(
        emu.url + "/user-attributes/actions/merge",
        data=b'{"sourceUserUid": "u1", "targetUserUid": "u2"}',
        headers={k: v for k, v in headers.items() if k != "x-cs-personalize-user-uid"},
        timeout=10,
    )
    assert [patched.status_code, events.status_code, merged.status_code] == [200, 200, 200]
    assert patched.request.headers.get("Content-Type") == content_type
    assert emu.user("u2") == {
        "uid": "u2",
        "attributes": {"plan": "gold"},
        "events": [{"eventKey": "signup", "type": "EVENT"}],
        "merged_into": None,
    }


@pytest.mark.parametrize("body", [b"plan=gold", b"<plan>gold</plan>", b""])
def test_a_body_that_is_not_json_is_refused_under_text_plain(
    emu: EmulatorThread, http: requests.Session, body: bytes
) -> None:
    headers = {**edge_headers(), "Content-Type": "text/plain;charset=UTF-8"}
    response = http.patch(emu.url + "/user-attributes", data=body, headers=headers, timeout=10)
    assert response.status_code == 400
    assert response.json()["error_code"] == "INVALID_JSON"
    assert emu.users() == {}


def test_any_project_is_accepted_without_a_configured_one(
    emu: EmulatorThread, http: requests.Session
) -> None:
    emu.configure(project_uid=None)
    headers = {**edge_headers(), "x-project-uid": "whatever"}
    assert http.patch(emu.url + "/user-attributes", json={"plan": "a"}, headers=headers).status_code == 200


def test_unknown_attribute_key_is_refused_and_nothing_applied(
    emu: EmulatorThread, http: requests.Session
) -> None:
    response = patch(http, emu, {"plan": "gold", "colour": "red", "size": 3})
    assert response.status_code == 400
    assert "colour" in response.json()["error_message"]
    assert "size" in response.json()["error_message"]
    assert emu.users() == {}
    assert emu.stats()["applied"]["patch"] == 0


def test_any_key_is_accepted_without_configured_attributes(
    emu: EmulatorThread, http: requests.Session
) -> None:
    emu.configure(attributes=None)
    assert patch(http, emu, {"anything": 1}).status_code == 200
    assert emu.users() == {"u1": {"anything": 1}}


@pytest.mark.parametrize(
    "body",
    [b'{"plan": {"a": 1}}', b'{"plan": [1]}', b"[1, 2]", b'"gold"', b"not json", b"", b'{"ltv": NaN}'],
)
def test_patch_body_must_be_a_flat_object(emu: EmulatorThread, http: requests.Session, body: bytes) -> None:
    response = http.patch(emu.url + "/user-attributes", data=body, headers=edge_headers(), timeout=10)
    assert response.status_code == 400
    assert emu.users() == {}


def test_patch_is_a_partial_update_and_null_overwrites(emu: EmulatorThread, http: requests.Session) -> None:
    patch(http, emu, {"plan": "gold", "ltv": 10})
    patch(http, emu, {"ltv": 20, "vip": False})
    assert emu.users()["u1"] == {"plan": "gold", "ltv": 20, "vip": False}
    patch(http, emu, {"plan": None})
    assert emu.users()["u1"] == {"plan": None, "ltv": 20, "vip": False}
    assert emu.stats()["patch_counts"] == {"u1": 3}


# ---- Edge: merge ----


def test_merge_source_wins_events_move_and_source_is_marked(
    emu: EmulatorThread, http: requests.Session
) -> None:
    patch(http, emu, {"plan": "trial", "vip": True}, user="anon")
    post_events(http, emu, [{"eventKey": "signup", "type": "EVENT"}], user="anon")
    patch(http, emu, {"plan": "gold", "ltv": 5}, user="known")
    post_events(http, emu, [{"eventKey": "purchase", "type": "EVENT"}], user="known")

    response = merge(http, emu, "anon", "known")
    assert response.status_code == 200
    response.json()  # a JSON body

    known = emu.user("known")
    anon = emu.user("anon")
    assert known is not None and anon is not None
    assert known["attributes"] == {"plan": "trial", "ltv": 5, "vip": True}
    assert known["events"] == [
        {"eventKey": "purchase", "type": "EVENT"},
        {"eventKey": "signup", "type": "EVENT"},
    ]
    assert known["merged_into"] is None
    assert anon["merged_into"] == "known"
    assert anon["events"] == []
    stats = emu.stats()
    assert stats["merges"] == [["anon", "known"]]
    assert stats["applied"]["merge"] == 1


@pytest.mark.parametrize(
    "body",
    [
        {"sourceUserUid": "", "targetUserUid": "b"},
        {"sourceUserUid": "a"},
        {"sourceUserUid": "a", "targetUserUid": 7},
        ["a", "b"],
    ],
)
def test_merge_validation(emu: EmulatorThread, http: requests.Session, body: Any) -> None:
    response = http.post(
        emu.url + "/user-attributes/actions/merge", json=body, headers=edge_headers(user=None), timeout=10
    )
    assert response.status_code == 400
    assert emu.stats()["merges"] == []


def test_a_merge_of_a_user_into_itself_is_a_no_op(emu: EmulatorThread, http: requests.Session) -> None:
    """The SDK's `setUserId(id, {preserveUserAttributes: true})` with the id it already has sends it."""
    patch(http, emu, {"plan": "gold"}, user="a")
    response = merge(http, emu, "a", "a")
    assert response.status_code == 200
    assert emu.user("a") == {"uid": "a", "attributes": {"plan": "gold"}, "events": [], "merged_into": None}
    assert merge(http, emu, "nobody", "nobody").status_code == 200
    assert emu.user("nobody") is None
    stats = emu.stats()
    assert stats["merges"] == [] and stats["applied"]["merge"] == 0


def test_merge_needs_the_project_header(emu: EmulatorThread, http: requests.Session) -> None:
    response = http.post(
        emu.url + "/user-attributes/actions/merge",
        json={"sourceUserUid": "a", "targetUserUid": "b"},
        headers={"Content-Type": "application/json"},
        timeout=10,
    )
    assert response.status_code == 400


# ---- Edge: events ----


def test_events_are_appended(emu: EmulatorThread, http: requests.Session) -> None:
    impression = {"type": "IMPRESSION", "experienceShortUid": "0", "variantShortUid": "1"}
    assert post_events(http, emu, [{"eventKey": "purchase", "type": "EVENT"}, impression]).status_code == 200
    assert post_events(http, emu, [{"eventKey": "signup", "type": "EVENT"}]).status_code == 200
    user = emu.user("u1")
    assert user is not None
    assert user["events"] == [
        {"eventKey": "purchase", "type": "EVENT"},
        impression,
        {"eventKey": "signup", "type": "EVENT"},
    ]
    stats = emu.stats()
    assert stats["event_counts"] == {"u1": 2}
    assert stats["applied"]["events"] == 2


@pytest.mark.parametrize(
    "events",
    [
        [{"eventKey": "refund", "type": "EVENT"}],
        [{"eventKey": "purchase", "type": "CLICK"}],
        [{"eventKey": "", "type": "EVENT"}],
        [{"eventKey": "purchase", "type": "EVENT", "timestamp": "2024-01-01"}],
        [{"type": "IMPRESSION", "experienceShortUid": "0"}],
        {"eventKey": "purchase", "type": "EVENT"},
    ],
)
def test_events_validation(emu: EmulatorThread, http: requests.Session, events: Any) -> None:
    response = post_events(http, emu, events)
    assert response.status_code == 400
    if events and isinstance(events, list) and events[0].get("eventKey") == "refund":
        assert "refund" in response.json()["error_message"]
    assert emu.users() == {}


def test_an_empty_list_of_events_is_accepted_and_records_nothing(
    emu: EmulatorThread, http: requests.Session
) -> None:
    """The SDK posts `[]` when asked for impressions of experiences it has no active variant for."""
    response = post_events(http, emu, [])
    assert response.status_code == 200
    assert emu.user("u1") is None
    stats = emu.stats()
    assert stats["applied"]["events"] == 0 and stats["event_counts"] == {}
    assert http.post(emu.url + "/events", json=[], headers=edge_headers(user=None)).status_code == 400


def test_events_need_both_headers(emu: EmulatorThread, http: requests.Session) -> None:
    body = [{"eventKey": "purchase", "type": "EVENT"}]
    for headers in (edge_headers(user=None), edge_headers(project=None)):
        assert http.post(emu.url + "/events", json=body, headers=headers, timeout=10).status_code == 400


# ---- Edge: manifest ----


def test_manifest_is_empty_and_keeps_the_users_uid(emu: EmulatorThread, http: requests.Session) -> None:
    """No experiences are emulated: every user has no active variant, in the shape the SDK reads."""
    headers = {"x-project-uid": PROJECT, "x-cs-personalize-user-uid": "u1"}
    response = http.get(emu.url + "/manifest", headers=headers, timeout=10)
    assert response.status_code == 200
    assert response.json() == {"activeVariants": {}, "experiences": []}
    assert response.headers["x-cs-personalize-user-uid"] == "u1"
    # Tags filter experiences; with none there is nothing to filter.
    tagged = http.get(emu.url + "/manifest?tags[]=home", headers=headers, timeout=10)
    assert tagged.json() == {"activeVariants": {}, "experiences": []}
    assert emu.users() == {}
    assert emu.stats()["by_endpoint"]["GET /manifest"] == 2


def test_manifest_issues_a_uid_to_a_new_visitor(emu: EmulatorThread, http: requests.Session) -> None:
    first = http.get(emu.url + "/manifest", headers={"x-project-uid": PROJECT}, timeout=10)
    second = http.get(emu.url + "/manifest", headers={"x-project-uid": PROJECT}, timeout=10)
    assert first.status_code == second.status_code == 200
    issued = first.headers["x-cs-personalize-user-uid"], second.headers["x-cs-personalize-user-uid"]
    assert all(uid.strip() for uid in issued) and issued[0] != issued[1]


def test_manifest_of_an_unknown_project_is_the_sdks_project_not_found(
    emu: EmulatorThread, http: requests.Session
) -> None:
    assert http.get(emu.url + "/manifest", timeout=10).status_code == 400
    response = http.get(emu.url + "/manifest", headers={"x-project-uid": "other"}, timeout=10)
    assert response.status_code == 404
    # The SDK looks for this code under `error` to say "Project not found: <uid>".
    assert response.json()["error"] == "personalize.MANIFEST.PROJECT_NOT_FOUND"


def test_edge_answers_a_browsers_cors_preflight(emu: EmulatorThread, http: requests.Session) -> None:
    """A front end served from another origin calls the Edge with custom headers: the browser asks first."""
    preflight = http.options(
        emu.url + "/user-attributes",
        headers={
            "Origin": "http://localhost:3000",
            "Access-Control-Request-Method": "PATCH",
            "Access-Control-Request-Headers": "x-project-uid,x-cs-personalize-user-uid,x-user-agent",
        },
        timeout=10,
    )
    assert preflight.status_code == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert "PATCH" in preflight.headers["Access-Control-Allow-Methods"]
    allowed = preflight.headers["Access-Control-Allow-Headers"].lower()
    assert "x-cs-personalize-user-uid" in allowed and "x-project-uid" in allowed
    manifest = http.get(
        emu.url + "/manifest",
        headers={"x-project-uid": PROJECT, "Origin": "http://localhost:3000"},
        timeout=10,
    )
    assert manifest.headers["Access-Control-Allow-Origin"] == "*"
    # So that the SDK in a browser can read the uid the Edge issued.
    assert "x-cs-personalize-user-uid" in manifest.headers["Access-Control-Expose-Headers"].lower()
    refused = http.patch(
        emu.url + "/user-attributes", json={"colour": "red"}, headers=edge_headers(), timeout=10
    )
    assert refused.status_code == 400 and refused.headers["Access-Control-Allow-Origin"] == "*"


# ---- Management API ----


def test_management_auth_and_attribute_list(emu: EmulatorThread, http: requests.Session) -> None:
    url = emu.url + "/attributes"
    assert http.get(url, headers={"x-project-uid": PROJECT}).status_code == 401
    assert http.get(url, headers={"x-project-uid": PROJECT, "authtoken": "wrong"}).status_code == 401
    assert (
        http.get(url, headers={"x-project-uid": PROJECT, "authorization": "Bearer wrong"}).status_code == 401
    )
    by_authtoken = http.get(url, headers={"x-project-uid": PROJECT, "authtoken": TOKEN})
    by_bearer = http.get(url, headers={"x-project-uid": PROJECT, "authorization": f"Bearer {TOKEN}"})
    assert by_authtoken.status_code == by_bearer.status_code == 200
    attributes = by_authtoken.json()
    assert attributes == by_bearer.json()
    assert [a["key"] for a in attributes] == ["plan", "ltv", "vip"]
    for attribute in attributes:
        assert set(attribute) == {"uid", "key", "name", "description", "project", "__type"}
        assert attribute["__type"] == "CUSTOM"
        assert attribute["project"] == PROJECT
    wrong_project = http.get(url, headers={"x-project-uid": "other", "authtoken": TOKEN})
    assert wrong_project.status_code == 404


def test_management_event_list_and_open_token(emu: EmulatorThread, http: requests.Session) -> None:
    emu.configure(management_token=None, attributes=None)
    headers = {"x-project-uid": PROJECT, "authtoken": "anything"}
    events = http.get(emu.url + "/events", headers=headers).json()
    assert [e["key"] for e in events] == ["purchase", "signup"]
    assert all(set(e) == {"uid", "key", "description", "project"} for e in events)
    assert http.get(emu.url + "/attributes", headers=headers).json() == []


# ---- Rate limit, faults, outage ----


def test_rate_limit_answers_429_with_retry_after(emu: EmulatorThread, http: requests.Session) -> None:
    emu.configure(rate_limit=5)
    statuses = [patch(http, emu, {"plan": str(i)}, user=f"u{i}") for i in range(12)]
    assert [r.status_code for r in statuses].count(200) == 5
    limited = [r for r in statuses if r.status_code == 429]
    assert len(limited) == 7
    assert all(r.headers["Retry-After"] == "1" for r in limited)
    assert len(emu.users()) == 5
    assert emu.stats()["faults_injected"]["rate_limit"] == 7
    # Management requests are not limited by the Edge's rate limit (they have their own: 10 a second).
    assert http.get(emu.url + "/events", headers={"x-project-uid": PROJECT, "authtoken": TOKEN}).ok


@pytest.mark.parametrize("kind", ["429", "429_no_retry_after", "500", "502", "503", "504"])
def test_status_faults_answer_without_applying(
    emu: EmulatorThread, http: requests.Session, kind: str
) -> None:
    emu.configure(faults={kind: 1.0})
    response = patch(http, emu, {"plan": "gold"})
    assert response.status_code == int(kind[:3])
    assert ("Retry-After" in response.headers) == (kind == "429")
    assert emu.users() == {}
    stats = emu.stats()
    assert stats["faults_injected"] == {kind: 1}
    assert stats["by_status"] == {kind[:3]: 1}


def test_drop_closes_the_connection_without_applying(emu: EmulatorThread, http: requests.Session) -> None:
    assert patch(http, emu, {"plan": "before"}).status_code == 200  # a pooled keep-alive connection
    emu.configure(faults={"drop": 1.0})
    with pytest.raises(requests.ConnectionError):
        patch(http, emu, {"plan": "after"})
    assert emu.users() == {"u1": {"plan": "before"}}
    emu.configure(faults={})
    assert patch(http, emu, {"plan": "again"}).status_code == 200  # the session recovers
    stats = emu.stats()
    assert stats["faults_injected"] == {"drop": 1}
    assert stats["by_status"] == {"200": 2, "dropped": 1}


def test_drop_after_apply_loses_the_response_only(emu: EmulatorThread, http: requests.Session) -> None:
    emu.configure(faults={"drop_after_apply": 1.0})
    with pytest.raises(requests.ConnectionError):
        patch(http, emu, {"plan": "gold"})
    with pytest.raises(requests.ConnectionError):
        post_events(http, emu, [{"eventKey": "purchase", "type": "EVENT"}])
    assert emu.users() == {"u1": {"plan": "gold"}}
    stats = emu.stats()
    assert stats["applied"] == {"patch": 1, "merge": 0, "events": 1}
    assert stats["faults_injected"] == {"drop_after_apply": 2}


def test_slow_fault_delays_then_applies(emu: EmulatorThread, http: requests.Session) -> None:
    emu.configure(faults={"slow": 1.0}, slow_ms=300)
    started = time.monotonic()
    assert patch(http, emu, {"plan": "gold"}).status_code == 200
    assert time.monotonic() - started >= 0.3
    assert emu.users() == {"u1": {"plan": "gold"}}
    assert emu.stats()["faults_injected"] == {"slow": 1}
    # A client that gives up first does not stop the change: its retry would apply it twice.
    with pytest.raises(requests.Timeout):
        http.patch(
            emu.url + "/user-attributes", json={"plan": "late"}, headers=edge_headers("u2"), timeout=0.1
        )
    deadline = time.monotonic() + 5
    while emu.user("u2") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert emu.users()["u2"] == {"plan": "late"}


def test_fail_rate_is_a_seeded_share_of_500s(emu: EmulatorThread, http: requests.Session) -> None:
    def run() -> list[int]:
        emu.reset()
        return [patch(http, emu, {"plan": "x"}, user=f"u{i}").status_code for i in range(200)]

    emu.configure(fail_rate=0.3, seed=7)
    first = run()
    emu.configure(seed=7)
    assert run() == first  # the same seed gives the same fault sequence
    failures = first.count(500)
    assert set(first) == {200, 500}
    assert 30 < failures < 90
    stats = emu.stats()
    assert stats["faults_injected"] == {"500": failures}
    assert len(emu.users()) == 200 - failures


def test_mixed_faults_follow_their_shares(emu: EmulatorThread, http: requests.Session) -> None:
    emu.configure(faults={"502": 0.25, "504": 0.25}, seed=3)
    statuses = [patch(http, emu, {"plan": "x"}, user=f"u{i}").status_code for i in range(200)]
    assert 25 < statuses.count(502) < 75
    assert 25 < statuses.count(504) < 75
    injected = emu.stats()["faults_injected"]
    assert injected == {"502": statuses.count(502), "504": statuses.count(504)}


def test_outage_answers_503_until_it_ends(emu: EmulatorThread, http: requests.Session) -> None:
    emu.configure(outage_s=0.4)
    assert patch(http, emu, {"plan": "x"}).status_code == 503
    assert merge(http, emu, "a", "b").status_code == 503
    assert emu.users() == {}
    time.sleep(0.5)
    assert patch(http, emu, {"plan": "x"}).status_code == 200
    assert emu.stats()["faults_injected"] == {"outage": 2}
    emu.configure(outage_until=time.time() + 60)
    assert patch(http, emu, {"plan": "y"}).status_code == 503
    emu.configure(outage_until=None)
    assert patch(http, emu, {"plan": "y"}).status_code == 200


# ---- Stats, reset, config ----


def test_stats_count_requests_and_the_concurrency_peak(emu: EmulatorThread) -> None:
    # Eight requests overlap when each reaches the emulator before the first is answered: each thread opens
    # its connection before the barrier (a control request, not counted), so that after it only a request
    # is sent, and the emulator holds each for 2 s (a CI run under load once took more than 300 ms to send
    # the eighth: 7 == 8)
    emu.configure(latency_ms=2000)
    barrier = threading.Barrier(8)
    statuses: list[int] = []

    def one(i: int) -> None:
        with requests.Session() as session:
            session.get(emu.url + "/_emulator/stats", timeout=10).raise_for_status()
            barrier.wait()
            statuses.append(patch(session, emu, {"plan": "p"}, user=f"c{i}").status_code)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == [200] * 8
    emu.configure(latency_ms=0)
    with requests.Session() as http:
        patch(http, emu, {"colour": "red"}, user="c0")
        post_events(http, emu, [{"eventKey": "purchase", "type": "EVENT"}], user="c0")
        merge(http, emu, "c1", "c2")
    stats = emu.stats()
    assert stats["max_in_flight"] == 8
    assert stats["requests_total"] == 11
    assert stats["by_endpoint"] == {
        "PATCH /user-attributes": 9,
        "POST /events": 1,
        "POST /user-attributes/actions/merge": 1,
    }
    assert stats["by_status"] == {"200": 10, "400": 1}
    assert stats["applied"] == {"patch": 8, "merge": 1, "events": 1}
    assert stats["patch_counts"] == {f"c{i}": 1 for i in range(8)}
    assert stats["event_counts"] == {"c0": 1}
    assert stats["merges"] == [["c1", "c2"]]
    assert stats["faults_injected"] == {}


def test_reset_clears_data_and_keeps_config(emu: EmulatorThread, http: requests.Session) -> None:
    emu.configure(latency_ms=1)
    patch(http, emu, {"plan": "gold"})
    merge(http, emu, "u1", "u2")
    http.post(emu.url + "/_emulator/reset", timeout=10).raise_for_status()
    assert emu.users() == {}
    stats = emu.stats()
    assert stats["requests_total"] == 0
    assert stats["merges"] == []
    assert stats["applied"] == {"patch": 0, "merge": 0, "events": 0}
    assert emu.config().latency_ms == 1
    assert patch(http, emu, {"colour": "red"}).status_code == 400  # attributes still enforced


def test_config_endpoint(emu: EmulatorThread, http: requests.Session) -> None:
    response = http.post(
        emu.url + "/_emulator/config", json={"attributes": ["plan"], "latency_ms": 5}, timeout=10
    )
    assert response.status_code == 200
    assert response.json()["attributes"] == ["plan"]
    assert http.get(emu.url + "/_emulator/config", timeout=10).json()["latency_ms"] == 5
    assert patch(http, emu, {"ltv": 1}).status_code == 400
    for bad in ({"nope": 1}, {"fail_rate": 2}, {"faults": {"418": 0.5}}, {"rate_limit": 0}, [1]):
        assert http.post(emu.url + "/_emulator/config", json=bad, timeout=10).status_code == 400
    with pytest.raises(ValueError, match="nope"):
        emu.configure(nope=1)


def test_control_endpoints_over_http(emu: EmulatorThread, http: requests.Session) -> None:
    patch(http, emu, {"plan": "gold"}, user="a/b c")
    assert http.get(emu.url + "/_emulator/users", timeout=10).json() == {"a/b c": {"plan": "gold"}}
    user = http.get(emu.url + "/_emulator/users/a%2Fb%20c", timeout=10)
    assert user.json()["attributes"] == {"plan": "gold"}
    assert http.get(emu.url + "/_emulator/users/missing", timeout=10).status_code == 404
    assert http.get(emu.url + "/_emulator/stats", timeout=10).json()["applied"]["patch"] == 1
    # Control requests are not counted.
    assert emu.stats()["requests_total"] == 1


# ---- Config parsing and the command line ----


def test_config_validation_and_fault_spec() -> None:
    assert parse_faults("429:0.05, 500:0.01,drop:0.01") == {"429": 0.05, "500": 0.01, "drop": 0.01}
    config = EmulatorConfig(attributes="plan, ltv", faults="drop_after_apply:0.5")  # type: ignore[arg-type]
    assert config.attributes == ["plan", "ltv"]
    assert config.faults == {"drop_after_apply": 0.5}
    assert set(FAULT_KINDS) >= {"429", "drop", "slow"}
    for bad in (
        {"latency_ms": -1},
        {"faults": {"500": 0.7, "502": 0.7}},
        {"faults": "500"},
        {"seed": "x"},
        {"rate_limit": 1.5},
    ):
        with pytest.raises(ValueError):
            EmulatorConfig(**bad)
    changed = config.with_changes(outage_s=10)
    assert changed.outage_until is not None and changed.outage_until > time.time() + 5
    assert config.outage_until is None


def test_cli_refuses_a_non_loopback_host() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "contentstack_assets.emulator", "--port", "0", "--host", "0.0.0.0"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "loopback" in result.stderr
    assert result.stdout == ""


def test_separate_process_emulator() -> None:
    config = EmulatorConfig(attributes=["plan"], faults={"500": 0.5}, seed=1, latency_ms=1)
    with start_emulator_process(config) as emu, requests.Session() as http:
        assert emu.url.startswith("http://127.0.0.1:") and emu.port > 0
        assert emu.config().faults == {"500": 0.5}
        emu.configure(faults={})
        assert patch(http, emu, {"plan": "gold"}, user="a/b").status_code == 200
        assert emu.users() == {"a/b": {"plan": "gold"}}
        assert emu.user("a/b") == {
            "uid": "a/b",
            "attributes": {"plan": "gold"},
            "events": [],
            "merged_into": None,
        }
        assert emu.user("missing") is None
        assert emu.stats()["applied"]["patch"] == 1
        with pytest.raises(ValueError):
            emu.configure(fail_rate=3)
        emu.reset()
        assert emu.users() == {}
        process = emu.process
        assert process is not None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0  # SIGINT (and SIGTERM, on exit) stop it cleanly
