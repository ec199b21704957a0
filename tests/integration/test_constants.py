"""Constant attributes (`attributes.K: {value: LITERAL, type: T}`) through Dagster, over real HTTP against
the emulator: sent once to every user, then unchanged; a new value resent to every user; the same through
the component; a state on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest
from dagster.components.testing import create_defs_folder_sandbox

from contentstack_assets import PersonalizeSyncsComponent, SpecError
from tests.helpers import json_text, push_metadata, run_job, users_sync, write_spec, write_sqlite_table

ROWS = [
    dict(user_uid="u1", plan_name="gold"),
    dict(user_uid="u2", plan_name=None),
    dict(user_uid="u3", plan_name="free"),
    dict(user_uid=None, plan_name="rejected"),  # a rejected row gets no constant either
]
ATTRIBUTES = {
    "plan": {"column": "plan_name", "type": "string"},
    "source": {"value": "warehouse", "type": "string"},
    "tier": {"value": "2", "type": "integer"},
}


def _spec(tmp_path, url: str, edge_url: str, **constants):
    attributes = {
        **ATTRIBUTES,
        **{key: {**ATTRIBUTES[key], "value": value} for key, value in constants.items()},
    }
    return write_spec(tmp_path / "syncs.yaml", [users_sync(url, edge_url, attributes=attributes)])


def _sent(emulator) -> int:
    return emulator.stats()["applied"]["patch"]


@pytest.mark.parametrize("state", ["sqlite", "postgresql"])
def test_a_constant_is_sent_once_to_every_user_and_resent_when_it_changes(
    tmp_path, emulator, instance, monkeypatch, request, state
):
    if state == "postgresql":
        monkeypatch.setenv("CONTENTSTACK_STATE_URL", request.getfixturevalue("postgres_url"))
    url = write_sqlite_table(tmp_path / "src.db", ROWS)

    first = run_job(_spec(tmp_path, url, emulator.url), "users_sync", instance)
    assert first.success
    assert json_text(emulator.users()) == json_text({
        "u1": {"plan": "gold", "source": "warehouse", "tier": 2},
        "u2": {"source": "warehouse", "tier": 2},  # a user whose columns are all null still gets the constants
        "u3": {"plan": "free", "source": "warehouse", "tier": 2},
    })  # fmt: skip
    metadata = push_metadata(first)
    assert metadata["users_delivered"] == 3 and metadata["rows_rejected"] == 1
    assert _sent(emulator) == 3

    unchanged = run_job(_spec(tmp_path, url, emulator.url), "users_sync", instance)
    assert unchanged.success
    assert push_metadata(unchanged)["users_unchanged"] == 3
    assert _sent(emulator) == 3  # nothing sent again

    emulator.reset()
    moved = run_job(_spec(tmp_path, url, emulator.url, source="crm"), "users_sync", instance)
    assert moved.success
    # Every user gets the new value, and only it: the PATCH is a partial update of what changed.
    assert emulator.users() == {"u1": {"source": "crm"}, "u2": {"source": "crm"}, "u3": {"source": "crm"}}
    assert push_metadata(moved)["users_delivered"] == 3

    # The same literal written another way converts to the same wire value: diffed again, nothing sent.
    emulator.reset()
    again = run_job(_spec(tmp_path, url, emulator.url, source="crm", tier=2), "users_sync", instance)
    assert again.success
    assert _sent(emulator) == 0 and emulator.users() == {}


COMPONENT = """\
type: contentstack_assets.PersonalizeSyncsComponent
attributes:
  syncs:
    - name: users
      source: {{url: "sqlite:///w.db", table: users}}
      destination: {{project_uid: p1}}
      match: {{column: user_uid}}
      attributes:
        plan: {{column: plan_name, type: string}}
        source: {{value: {value}, type: {type}}}
"""


def _load_component(text: str):
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.defs_folder_path / "personalize"
        path.mkdir(parents=True)
        (path / "defs.yaml").write_text(text)
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            assert isinstance(component, PersonalizeSyncsComponent)
            return component, defs


def test_a_constant_through_the_component():
    component, defs = _load_component(COMPONENT.format(value="warehouse", type="string"))
    attribute = component.spec.get("users").attributes["source"]
    assert attribute.value == "warehouse" and attribute.column is None
    assert defs.resolve_job_def("users_sync") is not None


def test_a_constant_that_does_not_convert_is_named_in_the_components_yaml():
    with pytest.raises(Exception) as raised:
        _load_component(COMPONENT.format(value="abc", type="integer"))
    error = raised.value
    while not isinstance(error, SpecError) and error.__cause__ is not None:
        error = error.__cause__
    assert isinstance(error, SpecError), repr(raised.value)
    message = str(error)
    assert "defs.yaml:10: sync 'users': key 'attributes.source.value'" in message, message
    assert "does not convert to integer" in message
