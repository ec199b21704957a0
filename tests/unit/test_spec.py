"""The sync spec: typed models, ${VAR} interpolation, and errors that name the file, the sync and the key."""

from __future__ import annotations

import pytest
import yaml

from contentstack_assets.spec import SpecError, UsersSync, load_spec

BASE = {
    "name": "users",
    "source": {"url": "sqlite:///users.db", "table": "users"},
    "destination": {"project_uid": "p" * 24},
    "match": {"column": "user_uid"},
    "attributes": {"plan": {"column": "plan_name", "type": "string"}},
}


def _write(tmp_path, *syncs: dict, raw: str | None = None):
    path = tmp_path / "syncs.yaml"
    path.write_text(raw if raw is not None else yaml.safe_dump({"syncs": list(syncs)}))
    return path


def _merged(**changes) -> dict:
    sync = yaml.safe_load(yaml.safe_dump(BASE))
    for dotted, value in changes.items():
        node = sync
        *parents, last = dotted.split("__")
        for part in parents:
            node = node.setdefault(part, {})
        if value is ...:
            node.pop(last)
        else:
            node[last] = value
    return sync


def test_the_demo_spec_loads_with_its_defaults():
    spec = load_spec()
    users = spec.get("users")
    assert isinstance(users, UsersSync)
    assert users.schedule == "0 * * * *" and users.concurrency == 16 and users.nulls == "skip"
    assert users.source.updated_at == "updated_at" and str(users.source.start_date) == "2024-01-01"
    assert users.destination.region == "aws-na"
    assert set(users.attributes) == {"plan", "ltv", "orders", "vip", "signup_at", "birthday"}


def test_defaults_and_region_hosts(tmp_path):
    sync = load_spec(_write(tmp_path, BASE)).get("users")
    assert sync.concurrency == 16 and sync.nulls == "skip" and sync.kind == "users"
    assert sync.destination.resolved_edge_url == "https://personalize-edge.contentstack.com"
    assert sync.destination.resolved_management_url == "https://personalize-api.contentstack.com"
    eu = load_spec(_write(tmp_path, _merged(destination__region="gcp-eu"))).get("users")
    assert eu.destination.resolved_edge_url == "https://gcp-eu-personalize-edge.contentstack.com"


def test_relative_sqlite_paths_are_relative_to_the_spec_file(tmp_path):
    sync = load_spec(_write(tmp_path, BASE)).get("users")
    assert sync.source.url.get_secret_value() == f"sqlite:///{tmp_path / 'users.db'}"


def test_environment_interpolation(tmp_path, monkeypatch):
    monkeypatch.setenv("PROJECT", "q" * 24)
    monkeypatch.setenv("EMPTY", "")
    sync = _merged(
        destination__project_uid="${PROJECT}",
        destination__edge_url="${EDGE:-http://127.0.0.1:9999}",
        destination__management_token="${EMPTY}",
        concurrency="${CONC:-4}",
    )
    loaded = load_spec(_write(tmp_path, sync)).get("users")
    assert loaded.destination.project_uid == "q" * 24
    assert loaded.destination.edge_url == "http://127.0.0.1:9999"
    assert loaded.destination.management_token is None  # an empty value counts as absent
    assert loaded.concurrency == 4


def test_an_unset_variable_is_named(tmp_path):
    path = _write(tmp_path, _merged(destination__project_uid="${NOPE_NOT_SET}"))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message and "sync 'users'" in message and "NOPE_NOT_SET" in message
    assert "destination.project_uid" in message


@pytest.mark.parametrize(
    ("changes", "key", "words"),
    [
        ({"attributes__plan__type": "float"}, "attributes.plan.type", "'string'"),
        ({"name": "Users"}, "name", "[a-z][a-z0-9_]*"),
        ({"source__query": "SELECT 1"}, "source", "exactly one of `table` or `query`"),
        ({"source__updated_at": "updated_at"}, "source", "`start_date` is required"),
        ({"destination__region": "mars-1"}, "destination.region", "'aws-na'"),
        ({"destination__edge_url": "http://personalize.example.com"}, "destination.edge_url", "https://"),
        ({"concurrency": 0}, "concurrency", "greater than or equal to 1"),
        ({"schedule": "every hour"}, "schedule", "not a cron expression"),
        ({"nulls": "drop"}, "nulls", "'skip'"),
        ({"match": ...}, "match", "required key is missing"),
        ({"attributes": {}}, "attributes", "at least 1"),
        ({"extra_key": 1}, "extra_key", "unknown key"),
        ({"depends_on": ["nothing"]}, "", "depends_on names 'nothing'"),
        ({"source__url": "not a url"}, "source.url", "not a SQLAlchemy URL"),
    ],
)
def test_errors_name_the_file_sync_and_key(tmp_path, changes, key, words):
    path = _write(tmp_path, _merged(**changes))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message and words in message, message
    if key:
        assert f"key '{key}'" in message and ("sync 'users'" in message or "sync 'Users'" in message), message


@pytest.mark.parametrize("key", ["user_uid", "_row", "_rejection", "_fingerprint", "_reason", "_anything"])
def test_an_attribute_key_that_names_an_internal_column_is_a_spec_error(tmp_path, key):
    """`user_uid: {column: email}` would overwrite the uid column of the mapped frame: users under wrong uids."""
    path = _write(tmp_path, _merged(**{f"attributes__{key}": {"column": "email", "type": "string"}}))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message and "sync 'users'" in message and "key 'attributes'" in message, message
    assert f"attribute key {key!r} is reserved" in message, message


def test_duplicate_names_and_malformed_files(tmp_path):
    with pytest.raises(SpecError, match="used twice"):
        load_spec(_write(tmp_path, BASE, BASE))
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(_write(tmp_path, raw="syncs: [unclosed"))
    with pytest.raises(SpecError, match="a `syncs:` list"):
        load_spec(_write(tmp_path, raw="- just a list"))
    with pytest.raises(SpecError, match="cannot read the sync spec"):
        load_spec(tmp_path / "missing.yaml")


DUPLICATE_ATTRIBUTE = """\
syncs:
  - name: users
    source: {url: "sqlite:///users.db", table: users}
    destination: {project_uid: pppppppppppppppppppppppp}
    match: {column: user_uid}
    attributes:
      plan: {column: plan_name, type: string}
      ltv: {column: lifetime_value, type: number}
      plan: {column: plan_code, type: string}
"""


@pytest.mark.parametrize(
    "raw, key, lines",
    [
        (DUPLICATE_ATTRIBUTE, "'plan'", (7, 9)),
        ("syncs: []\nsyncs:\n  - name: users\n", "'syncs'", (1, 2)),
        ('syncs:\n  - {name: users, name: orders, source: {url: "x"}}\n', "'name'", (2, 2)),
    ],
)
def test_a_duplicate_key_is_a_spec_error_naming_both_lines(tmp_path, raw, key, lines):
    path = _write(tmp_path, raw=raw)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message and f"key {key}" in message and f"lines {lines[0]} and {lines[1]}" in message
    assert "\n" not in message and "Traceback" not in message


def test_yaml_merge_keys_are_not_taken_for_duplicates(tmp_path):
    raw = DUPLICATE_ATTRIBUTE.replace("      plan: {column: plan_code, type: string}\n", "").replace(
        "    destination: {project_uid: pppppppppppppppppppppppp}",
        "    destination: &dest {project_uid: pppppppppppppppppppppppp}\n"
        "    extra: {<<: *dest, project_uid: qqqqqqqqqqqqqqqqqqqqqqqq}",
    )
    with pytest.raises(SpecError) as error:  # `extra` is an unknown key; the merge itself is fine
        load_spec(_write(tmp_path, raw=raw))
    assert "key 'extra': unknown key" in str(error.value) and "twice" not in str(error.value)


def test_a_password_in_the_source_url_never_shows(tmp_path):
    path = _write(
        tmp_path, _merged(source__url="postgresql+psycopg://etl:hunter2@db.internal/crm", source__table=...)
    )
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert "hunter2" not in str(error.value)
    sync = load_spec(
        _write(tmp_path, _merged(source__url="postgresql+psycopg://etl:hunter2@db.internal/crm"))
    )
    assert sync.get("users").source.display_url == "postgresql+psycopg://etl:***@db.internal/crm"
    assert "hunter2" not in repr(sync)


def test_depends_on_cycles_and_blank_event_keys_are_spec_errors(tmp_path):
    first = _merged(name="a", depends_on=["b"])
    second = _merged(name="b", depends_on=["a"])
    with pytest.raises(SpecError, match="depends_on makes a cycle: a -> b -> a"):
        load_spec(_write(tmp_path, first, second))
    events = {
        "name": "purchases",
        "kind": "events",
        "source": BASE["source"],
        "destination": BASE["destination"],
        "match": BASE["match"],
        "event": {"id_column": "purchase_id", "key": "   "},
    }
    with pytest.raises(SpecError, match="sync 'purchases': key 'event': `key` is blank"):
        load_spec(_write(tmp_path, events))


# -- constant attributes --------------------------------------------------------------------------------
def _with_source(attribute: dict) -> dict:
    return _merged(attributes={**BASE["attributes"], "source": attribute})


@pytest.mark.parametrize(
    ("value", "type_"),
    [
        ("warehouse", "string"),
        (3, "integer"),
        ("10", "integer"),
        (2.5, "number"),
        (True, "boolean"),
        ("2024-01-01", "date"),
        ("2024-01-01T10:00:00Z", "datetime"),
    ],
)
def test_a_constant_attribute_needs_no_column(tmp_path, value, type_):
    path = _write(tmp_path, _with_source({"value": value, "type": type_}))
    attribute = load_spec(path).get("users").attributes["source"]
    assert attribute.column is None and attribute.value == value and attribute.type == type_


def test_a_yaml_date_is_a_constant_of_its_own(tmp_path):
    raw = yaml.safe_dump({"syncs": [BASE]}).replace(
        "      type: string\n",
        "      type: string\n    since:\n      value: 2024-01-01\n      type: date\n",
        1,
    )
    attribute = load_spec(_write(tmp_path, raw=raw)).get("users").attributes["since"]
    assert str(attribute.value) == "2024-01-01"


@pytest.mark.parametrize(
    ("attribute", "words"),
    [
        ({"type": "string"}, ["key 'attributes.source'", "exactly one of `column` or `value`"]),
        (
            {"column": "origin", "value": "warehouse", "type": "string"},
            ["key 'attributes.source'", "exactly one of `column` or `value`"],
        ),
        ({"value": None, "type": "string"}, ["key 'attributes.source'", "cannot be null"]),
        ({"value": "abc", "type": "integer"}, ["key 'attributes.source.value'", "integer", "'abc'"]),
        ({"value": 2.5, "type": "integer"}, ["key 'attributes.source.value'", "integer"]),
        ({"value": "maybe", "type": "boolean"}, ["key 'attributes.source.value'", "boolean"]),
        ({"value": "yesterday", "type": "datetime"}, ["key 'attributes.source.value'", "datetime"]),
        ({"value": "31/12/1990", "type": "date"}, ["key 'attributes.source.value'", "date"]),
        ({"value": [1, 2], "type": "string"}, ["key 'attributes.source.value'"]),
    ],
    ids=[
        "neither",
        "both",
        "null",
        "text-integer",
        "fraction-integer",
        "boolean",
        "datetime",
        "date",
        "list",
    ],
)
def test_a_constant_is_checked_against_its_type_naming_file_sync_and_key(tmp_path, attribute, words):
    path = _write(tmp_path, _with_source(attribute))
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message and "sync 'users'" in message
    for word in words:
        assert word in message, message
