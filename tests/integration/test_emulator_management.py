"""The emulator's Management API creates, over real HTTP: POST /attributes and POST /events (the latter on
the Edge's own path, told apart by the management token), listed from then on and accepted by the Edge; a
duplicate key (409), the project's limit (422), a read-only token (403) and the rate limit (429), each in
Contentstack's error envelope; and the client's create verbs against them."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests

from contentstack_assets.personalize.client import ManagementClient, ManagementRefused
from contentstack_assets.personalize.emulator import (
    EmulatorConfig,
    EmulatorThread,
    build_parser,
    run_emulator_in_thread,
)

PROJECT = "proj0000000000000000000a"
TOKEN = "secret-token"
READ_ONLY = "read-only-token"
BASE = EmulatorConfig(
    project_uid=PROJECT,
    attributes=["plan"],
    events=["purchase"],
    management_token=TOKEN,
    management_read_only_token=READ_ONLY,
    management_rate_limit=None,  # the rate limit has a test of its own
)


@pytest.fixture(scope="module")
def server() -> Iterator[EmulatorThread]:
    with run_emulator_in_thread(BASE) as emu:
        yield emu


@pytest.fixture
def emu(server: EmulatorThread) -> EmulatorThread:
    server.configure(**BASE.to_json())
    server.reset()
    return server


@pytest.fixture
def http() -> Iterator[requests.Session]:
    with requests.Session() as session:
        yield session


def manage(token: str = TOKEN, bearer: bool = False) -> dict[str, str]:
    auth = {"authorization": f"Bearer {token}"} if bearer else {"authtoken": token}
    return {"x-project-uid": PROJECT, **auth}


def edge(user: str = "u1") -> dict[str, str]:
    return {"x-project-uid": PROJECT, "x-cs-personalize-user-uid": user}


def test_a_created_attribute_is_listed_and_accepted_by_the_edge(emu, http):
    # the Edge refuses the key while the project lacks it
    assert http.patch(emu.url + "/user-attributes", json={"tier": "gold"}, headers=edge()).status_code == 400
    created = http.post(
        emu.url + "/attributes",
        json={"name": "Tier", "key": "tier", "description": "from the warehouse"},
        headers=manage(),
    )
    assert created.status_code == 201
    body = created.json()
    assert {key: body[key] for key in ("key", "name", "description", "project", "__type")} == {
        "key": "tier",
        "name": "Tier",
        "description": "from the warehouse",
        "project": PROJECT,
        "__type": "CUSTOM",
    }
    listed = http.get(emu.url + "/attributes", headers=manage(bearer=True)).json()
    assert [item["key"] for item in listed] == ["plan", "tier"]
    assert listed[1]["name"] == "Tier" and listed[1]["uid"] == body["uid"]
    assert http.patch(emu.url + "/user-attributes", json={"tier": "gold"}, headers=edge()).status_code == 200
    assert emu.users() == {"u1": {"tier": "gold"}}
    # a reset empties the project of what was created, as of its users
    emu.reset()
    assert [item["key"] for item in http.get(emu.url + "/attributes", headers=manage()).json()] == ["plan"]


def test_a_created_event_is_listed_and_the_edge_still_takes_its_own_post_events(emu, http):
    refused = http.post(emu.url + "/events", json=[{"eventKey": "signup", "type": "EVENT"}], headers=edge())
    assert refused.status_code == 400 and refused.json()["error_code"] == "UNKNOWN_EVENTS"

    created = http.post(
        emu.url + "/events", json={"key": "signup", "description": "sign-ups"}, headers=manage(bearer=True)
    )
    assert created.status_code == 201 and created.json()["key"] == "signup"
    assert [item["key"] for item in http.get(emu.url + "/events", headers=manage()).json()] == [
        "purchase",
        "signup",
    ]
    # the same path without a management token is the Edge's: the event is now known
    sent = http.post(emu.url + "/events", json=[{"eventKey": "signup", "type": "EVENT"}], headers=edge())
    assert sent.status_code == 200
    assert emu.user("u1")["events"] == [{"eventKey": "signup", "type": "EVENT"}]
    by_endpoint = emu.stats()["by_endpoint"]
    assert by_endpoint["POST /events (management)"] == 1 and by_endpoint["POST /events"] == 2


def test_a_duplicate_key_is_a_conflict(emu, http):
    for path, body in (("/attributes", {"name": "Plan", "key": "plan"}), ("/events", {"key": "purchase"})):
        duplicate = http.post(emu.url + path, json=body, headers=manage())
        assert duplicate.status_code == 409, path
        assert duplicate.json()["error_code"] == "DUPLICATE_KEY" and "error_message" in duplicate.json()
    first = http.post(emu.url + "/attributes", json={"name": "x", "key": "x"}, headers=manage())
    again = http.post(emu.url + "/attributes", json={"name": "x", "key": "x"}, headers=manage())
    assert (first.status_code, again.status_code) == (201, 409)


def test_the_projects_limit_is_an_error_in_the_envelope(emu, http):
    emu.configure(attribute_limit=2, event_limit=1)
    assert http.post(emu.url + "/attributes", json={"name": "a", "key": "a"}, headers=manage()).ok
    full = http.post(emu.url + "/attributes", json={"name": "b", "key": "b"}, headers=manage())
    assert full.status_code == 422
    assert full.json()["error_code"] == "LIMIT_EXCEEDED" and "limit of 2" in full.json()["error_message"]
    assert full.json()["errors"] == {"limit": 2, "count": 2}
    event = http.post(emu.url + "/events", json={"key": "signup"}, headers=manage())
    assert event.status_code == 422 and event.json()["error_code"] == "LIMIT_EXCEEDED"
    assert len(http.get(emu.url + "/attributes", headers=manage()).json()) == 2


def test_a_read_only_token_lists_but_cannot_create(emu, http):
    assert http.get(emu.url + "/attributes", headers=manage(READ_ONLY)).status_code == 200
    assert http.get(emu.url + "/events", headers=manage(READ_ONLY, bearer=True)).status_code == 200
    for path, body in (("/attributes", {"name": "a", "key": "a"}), ("/events", {"key": "a"})):
        refused = http.post(emu.url + path, json=body, headers=manage(READ_ONLY))
        assert refused.status_code == 403, path
        assert "personalize:manage" in refused.json()["error_message"]
    assert (
        http.post(emu.url + "/attributes", json={"name": "a", "key": "a"}, headers=manage("no")).status_code
        == 401
    )
    assert [item["key"] for item in http.get(emu.url + "/attributes", headers=manage()).json()] == ["plan"]


@pytest.mark.parametrize(
    "body",
    [{"key": "a"}, {"name": "a"}, {"name": "a", "key": ""}, {"name": "a", "key": "a", "type": "x"}, ["a"]],
)
def test_a_create_body_is_checked(emu, http, body):
    refused = http.post(emu.url + "/attributes", json=body, headers=manage())
    assert refused.status_code == 400 and refused.json()["error_code"] == "INVALID_BODY"


def test_management_requests_beyond_ten_a_second_get_429_with_retry_after(emu, http):
    emu.configure(management_rate_limit=10)
    answers = [http.get(emu.url + "/attributes", headers=manage()) for _ in range(15)]
    limited = [answer for answer in answers if answer.status_code == 429]
    # 15 requests at once cannot all fall in different seconds' windows of 10
    assert limited and all(answer.headers["Retry-After"] == "1" for answer in limited)
    assert limited[0].json()["error_code"] == "TOO_MANY_REQUESTS"
    assert all(answer.status_code in (200, 429) for answer in answers)
    # the Edge is not limited by it
    assert http.patch(emu.url + "/user-attributes", json={"plan": "x"}, headers=edge()).status_code == 200


def test_the_client_creates_paced_and_reads_a_conflict_as_present(emu):
    emu.configure(management_rate_limit=10)
    client = ManagementClient(emu.url, PROJECT, TOKEN)
    # 15 creates in a row: the client's pace keeps them under 10 a second (or Retry-After covers a burst)
    assert all(client.create_attribute(f"k{index}", f"K{index}", "d") for index in range(15))
    assert client.create_event("signup", "sign-ups") is True
    assert client.create_attribute("plan", "Plan", "") is False  # the project holds it: 409
    assert len(client.list_attributes()) == 16
    with pytest.raises(ManagementRefused) as refused:
        ManagementClient(emu.url, PROJECT, READ_ONLY).create_event("other", "")
    assert refused.value.status == 403 and READ_ONLY not in str(refused.value)


def test_the_command_line_sets_the_management_knobs():
    args = build_parser().parse_args(
        [
            "--port",
            "0",
            "--management-read-only-token",
            "ro",
            "--management-rate-limit",
            "0",
            "--attribute-limit",
            "3",
            "--event-limit",
            "4",
        ]
    )
    from contentstack_assets.personalize.emulator.cli import _config_from_args

    config = _config_from_args(args)
    assert (config.management_read_only_token, config.management_rate_limit) == ("ro", None)
    assert (config.attribute_limit, config.event_limit) == (3, 4)
    assert build_parser().parse_args(["--port", "0"]).management_rate_limit == 10  # the real API's
    round_trip = _config_from_args(build_parser().parse_args(["--port", "0", *config.to_cli_args()]))
    assert round_trip == config
    for bad in ({"attribute_limit": 0}, {"event_limit": True}, {"management_rate_limit": 0}):
        with pytest.raises(ValueError):
            EmulatorConfig(**bad)
    usage = subprocess.run(
        [sys.executable, "-m", "contentstack_assets.emulator", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "--management-read-only-token" in usage.stdout and "--attribute-limit" in usage.stdout
