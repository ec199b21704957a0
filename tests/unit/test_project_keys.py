"""The engine's `create_missing` on its own, with an in-process stand-in for the Management API's create: what
it creates and in which order, a key found created meanwhile, the warning past the default limit, and the
message of a refusal that is neither the scope nor the limit."""

from __future__ import annotations

import pytest

from contentstack_assets.engine.project_keys import ATTRIBUTES, EVENTS, NewKey, create_missing
from contentstack_assets.personalize.client import ManagementRefused, PersonalizeError

WANTED = [NewKey(key, key.title(), f"about {key}") for key in ("plan", "tier", "region")]


def _run(listed, create, **options):
    logs: list[str] = []
    creation = create_missing(
        ATTRIBUTES, WANTED, listed, create, sync_name="users", project_uid="P", log=logs.append, **options
    )
    return creation, logs


def test_only_the_missing_keys_are_created_in_the_specs_order():
    calls: list[NewKey] = []
    creation, logs = _run([{"key": "plan"}], lambda item: calls.append(item) or item.key != "region")
    assert [item.key for item in calls] == ["tier", "region"]
    assert calls[0] == NewKey("tier", "Tier", "about tier")
    assert (creation.missing, creation.created, creation.already_there) == (
        ["tier", "region"],
        ["tier"],
        ["region"],
    )
    assert logs == [
        "users: created custom attribute 'tier' in project P",
        "users: custom attribute 'region' exists in project P already",
    ]


def test_nothing_missing_calls_nothing_and_a_dry_run_creates_nothing():
    def refuse(item):
        raise AssertionError("no create expected")

    creation, logs = _run([{"key": key.key} for key in WANTED], refuse)
    assert (creation.missing, creation.created, logs) == ([], [], [])
    creation, logs = _run([], refuse, dry_run=True)
    assert creation.dry_run and creation.missing == ["plan", "tier", "region"] and creation.created == []
    assert logs == [
        "users: dry run: would create 3 custom attributes in project P: plan, tier, region (nothing created)"
    ]


def test_past_the_default_limit_it_says_so_and_tries():
    listed = [{"key": f"k{index}"} for index in range(99)]
    creation, logs = _run(listed, lambda item: True)
    assert creation.created == ["plan", "tier", "region"]
    assert logs[0] == (
        "users: project P will hold 102 custom attributes, more than the default limit of 100: this works if the "
        "project's limit was raised in Personalize"
    )


def test_another_refusal_names_the_answer_and_what_is_left():
    def create(item):
        if item.key == "tier":
            raise ManagementRefused("x", 400, 'HTTP 400: {"error_message": "key has bad characters"}')
        return True

    with pytest.raises(PersonalizeError) as raised:
        _run([], create)
    assert str(raised.value) == (
        "users: Personalize refused to create custom attribute 'tier' in project P (HTTP 400: "
        '{"error_message": "key has bad characters"}). Missing: tier, region: fix what the answer names, or '
        "create them in Personalize (Attributes) with these exact keys, or set destination.create_missing: "
        "false. Created before the refusal: plan."
    )


def test_a_limit_refusal_for_events_names_events():
    def create(item):
        raise ManagementRefused("x", 422, "HTTP 422: limit reached")

    with pytest.raises(PersonalizeError, match=r"project P is at its limit of events: it holds 5 \(5 before"):
        create_missing(
            EVENTS, WANTED[:1], [{"key": f"e{i}"} for i in range(5)], create, sync_name="s", project_uid="P"
        )
