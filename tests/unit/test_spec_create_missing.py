"""`destination.create_missing` and `attributes.K.name`/`description` in the spec: their defaults, the token
they need, the syncs they do not apply to, and what a creation is named and described as."""

from __future__ import annotations

import pytest
import yaml

from contentstack_assets.engine.project_keys import attributes_wanted, events_wanted
from contentstack_assets.spec import SpecError, load_spec

USERS = {
    "name": "users",
    "source": {"url": "sqlite:///users.db", "table": "users"},
    "destination": {"project_uid": "p" * 24, "management_token": "${TOKEN:-}", "create_missing": True},
    "match": {"column": "user_uid"},
    "attributes": {
        "plan": {"column": "plan_name", "type": "string", "name": "Plan", "description": "The plan"},
        "ltv": {"column": "lifetime_value", "type": "number"},
        "source": {"value": "warehouse", "type": "string"},
    },
}


def _load(tmp_path, *syncs: dict):
    path = tmp_path / "syncs.yaml"
    path.write_text(yaml.safe_dump({"syncs": list(syncs)}, sort_keys=False))
    return load_spec(path)


def test_create_missing_is_off_by_default_and_names_default_to_the_key(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKEN", "t-secret")
    plain = {**USERS, "destination": {"project_uid": "p" * 24}}
    assert _load(tmp_path, plain).get("users").destination.create_missing is False
    sync = _load(tmp_path, USERS).get("users")
    assert sync.destination.create_missing is True
    assert [(item.key, item.name, item.description) for item in attributes_wanted(sync)] == [
        ("plan", "Plan", "The plan"),
        ("ltv", "ltv", "Synced by contentstack_assets sync users from users.lifetime_value"),
        ("source", "source", "Synced by contentstack_assets sync users from a constant of the spec"),
    ]
    query = {**USERS, "source": {"url": "sqlite:///users.db", "query": "SELECT * FROM u"}}
    assert attributes_wanted(_load(tmp_path, query).get("users"))[1].description == (
        "Synced by contentstack_assets sync users from column lifetime_value of its query"
    )


@pytest.mark.parametrize("token", ["${TOKEN:-}", None])
def test_create_missing_without_a_management_token_is_a_spec_error(tmp_path, token):
    destination = {"project_uid": "p" * 24, "create_missing": True}
    if token is not None:
        destination["management_token"] = token  # set, but to an empty variable
    with pytest.raises(SpecError) as raised:
        _load(tmp_path, {**USERS, "destination": destination})
    message = str(raised.value)
    assert "sync 'users': key 'destination'" in message
    assert (
        "`create_missing: true` creates keys through the Management API, which needs a management token"
        in message
    )
    assert "PERSONALIZE_MANAGEMENT_TOKEN" in message and "personalize:manage" in message


def test_create_missing_on_a_merges_sync_or_with_a_key_column_is_a_spec_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKEN", "t-secret")
    destination = USERS["destination"]
    merges = {
        "name": "identities",
        "kind": "merges",
        "source": {"url": "sqlite:///users.db", "table": "links"},
        "destination": destination,
        "merge": {"source_column": "a", "target_column": "b"},
    }
    with pytest.raises(SpecError, match="create_missing` is for users and events syncs") as raised:
        _load(tmp_path, merges)
    assert "t-secret" not in str(raised.value)
    events = {
        "name": "purchases",
        "kind": "events",
        "source": {"url": "sqlite:///users.db", "table": "purchases"},
        "destination": destination,
        "match": {"column": "user_uid"},
        "event": {"id_column": "id", "key_column": "event_name"},
    }
    with pytest.raises(SpecError, match="creates a fixed `event.key`; with `event.key_column`"):
        _load(tmp_path, events)
    fixed = _load(tmp_path, {**events, "event": {"id_column": "id", "key": " purchase "}}).get("purchases")
    assert [(item.key, item.description) for item in events_wanted(fixed)] == [
        ("purchase", "Sent by contentstack_assets sync purchases from purchases")
    ]


def test_an_attributes_name_must_not_be_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("TOKEN", "t-secret")
    attributes = {"plan": {"column": "plan_name", "type": "string", "name": ""}}
    with pytest.raises(SpecError, match="key 'attributes.plan.name'"):
        _load(tmp_path, {**USERS, "attributes": attributes})
