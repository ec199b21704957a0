"""`destination.create_missing: true` through Dagster, over real HTTP against the emulator: the key checks
create the project's missing custom attributes (users syncs) and fixed event key (events syncs) before
anything is sent, and say what they created; a dry run creates nothing and says what it would; the project's
limit and a token without `personalize:manage` are one clear paragraph; without `create_missing` nothing
changes. The users case runs on a SQLite and a PostgreSQL state, and through the component."""

from __future__ import annotations

import dagster as dg
import pytest
import requests
from dagster.components.testing import create_defs_folder_sandbox

from contentstack_assets import definitions
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import load_spec
from tests.helpers import (
    PROJECT_UID,
    dry_run_plan,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

TOKEN = "mgmt-token-secret"
READ_ONLY = "read-only-secret"
ROWS = [dict(user_uid=f"u{index}", plan_name="free", order_count=index) for index in range(5)]
HELD = ["plan", "ltv", "vip"]  # the project's attributes; the spec adds orders, signup_at, birthday
MISSING = ["orders", "signup_at", "birthday"]  # in the spec's order


def _config(**knobs) -> EmulatorConfig:
    defaults = dict(
        project_uid=PROJECT_UID,
        management_token=TOKEN,
        management_read_only_token=READ_ONLY,
        attributes=HELD,
        events=["purchase"],
    )
    return EmulatorConfig(**{**defaults, **knobs})


def _users(url: str, emu_url: str, *, token: str = TOKEN, create_missing: bool = True, **overrides) -> dict:
    sync = users_sync(url, emu_url, **overrides)
    sync["destination"].update(management_url=emu_url, management_token=token, create_missing=create_missing)
    return sync


def _check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [check] = [c for c in result.get_asset_check_evaluations() if c.check_name == name]
    return check


def _listed(emu, path: str = "/attributes") -> list[dict]:
    return requests.get(
        emu.url + path, headers={"x-project-uid": PROJECT_UID, "authtoken": TOKEN}, timeout=10
    ).json()


def _logs(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(result.run_id))


def _failure(result: dg.ExecuteInProcessResult) -> str:
    failure = next(e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE)
    return failure.step_failure_data.user_failure_data.description or failure.step_failure_data.error.message


# -- users syncs ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("state", ["sqlite", "postgresql"])
def test_the_missing_attributes_are_created_then_every_user_is_delivered(
    tmp_path, instance, monkeypatch, request, state
):
    if state == "postgresql":
        monkeypatch.setenv("CONTENTSTACK_STATE_URL", request.getfixturevalue("postgres_url"))
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    attributes = {
        **users_sync(url, "")["attributes"],
        "orders": {
            "column": "order_count",
            "type": "integer",
            "name": "Orders",
            "description": "Paid orders",
        },
    }
    with run_emulator_in_thread(_config()) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [_users(url, emu.url, attributes=attributes)])
        result = run_job(spec, "users_sync", instance)
        assert result.success
        check = _check(result, "attribute_keys_exist")
        assert check.passed and check.metadata["created_keys"].value == MISSING
        assert check.metadata["missing_keys"].value == []
        assert (
            check.description
            == f"created in project {PROJECT_UID}: orders, signup_at, birthday (create_missing)"
        )
        # the emulator refuses unknown keys at the Edge: every user got through, so the keys came first
        assert push_metadata(result)["users_delivered"] == 5 and len(emu.users()) == 5
        assert emu.users()["u3"]["orders"] == 3
        created = {item["key"]: item for item in _listed(emu)}
        assert list(created) == HELD + MISSING
        assert (created["orders"]["name"], created["orders"]["description"]) == ("Orders", "Paid orders")
        assert created["signup_at"]["name"] == "signup_at"  # the key, when the spec names none
        assert (
            created["signup_at"]["description"]
            == "Synced by contentstack_assets sync users from users.created_at"
        )
        assert emu.stats()["by_endpoint"]["POST /attributes"] == 3
        logs = _logs(instance, result)
        assert "users: created custom attribute 'orders' in project" in logs
        assert TOKEN not in logs

        # the next run finds them: nothing created, nothing to say
        again = run_job(spec, "users_sync", instance)
        assert again.success and _check(again, "attribute_keys_exist").metadata["created_keys"].value == []
        assert emu.stats()["by_endpoint"]["POST /attributes"] == 3


@pytest.mark.parametrize("shards", [1, 2], ids=["one_push", "sharded_push"])
def test_a_dry_run_creates_nothing_and_says_what_it_would(tmp_path, instance, shards):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    with run_emulator_in_thread(_config()) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [_users(url, emu.url, shards=shards)])
        result = run_job(spec, "users_dry_run", instance)
        assert result.success
        check = _check(result, "attribute_keys_exist")
        assert check.passed and check.metadata["would_create_keys"].value == MISSING
        assert (
            check.metadata["missing_keys"].value == sorted(MISSING) and "created_keys" not in check.metadata
        )
        assert check.description.startswith(f"dry run: would create in project {PROJECT_UID}: orders")
        plan = dry_run_plan(result)
        assert plan["would_create_keys"] == MISSING and plan["users_to_send"] == 5
        assert [item["key"] for item in _listed(emu)] == HELD
        stats = emu.stats()
        assert "POST /attributes" not in stats["by_endpoint"] and stats["applied"]["patch"] == 0
        assert "dry run: would create 3 custom attributes" in _logs(instance, result)


@pytest.mark.parametrize("shards", [1, 2], ids=["one_push", "sharded_push"])
def test_the_push_alone_creates_what_is_missing(tmp_path, instance, shards):
    """A stored mapped_attributes pushed alone ("Materialize selected"): the push's own guard creates the keys
    (a dry run of it only says so)."""
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    with run_emulator_in_thread(_config()) as emu:
        # a first run without create_missing stores the mapped frame; its check stops the push
        spec = write_spec(
            tmp_path / "syncs.yaml", [_users(url, emu.url, create_missing=False, shards=shards)]
        )
        assert not run_job(spec, "users_sync", instance).is_node_success("users__personalize_users")
        spec = write_spec(tmp_path / "syncs.yaml", [_users(url, emu.url, shards=shards)])
        defs = definitions.build_definitions(load_spec(spec))
        push = dg.AssetKey(["users", "personalize_users"])

        def push_alone(**config) -> dg.ExecuteInProcessResult:
            return dg.materialize(
                list(defs.assets),
                selection=[push],
                instance=instance,
                resources=defs.resources,
                run_config={"ops": {"users__personalize_users": {"config": config}}} if config else None,
            )

        if shards == 1:
            dry = push_alone(dry_run=True)
            assert dry_run_plan(dry)["would_create_keys"] == MISSING
            assert [item["key"] for item in _listed(emu)] == HELD
        pushed = push_alone()
        assert pushed.success
        assert [item["key"] for item in _listed(emu)] == HELD + MISSING
        assert len(emu.users()) == 5


def test_the_projects_limit_stops_with_the_counts_and_how_to_raise_it(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    with run_emulator_in_thread(_config(attribute_limit=4)) as emu:
        result = run_job(write_spec(tmp_path / "syncs.yaml", [_users(url, emu.url)]), "users_sync", instance)
        assert not result.success
        message = _failure(result)
        assert message == (
            f"users: project {PROJECT_UID} is at its limit of custom attributes: it holds 4 (3 before this run) "
            "and 2 more are missing (signup_at, birthday); Personalize refused to create 'signup_at' (HTTP 422: "
            '{"error_code": "LIMIT_EXCEEDED", "error_message": "the project has reached its limit of 4 custom '
            'attributes", "errors": {"limit": 4, "count": 4}}). A project holds 100 custom attributes by default: '
            "raise its limit in Personalize (up to 1000), or remove custom attributes it no longer uses or keys "
            "from the spec. Created before the refusal: orders."
        )
        assert emu.stats()["applied"]["patch"] == 0


def test_a_spec_that_could_never_fit_is_refused_before_creating_anything(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    held = [f"k{index}" for index in range(998)] + HELD
    with run_emulator_in_thread(_config(attributes=held, attribute_limit=1000)) as emu:
        result = run_job(write_spec(tmp_path / "syncs.yaml", [_users(url, emu.url)]), "users_sync", instance)
        assert not result.success
        message = _failure(result)
        assert f"project {PROJECT_UID} holds 1001 custom attributes and 3 more are missing" in message
        assert "100 by default, 1000 at most once raised in Personalize). Nothing was created" in message
        assert "POST /attributes" not in emu.stats()["by_endpoint"]


def test_a_token_without_the_manage_scope_says_what_to_do(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    with run_emulator_in_thread(_config()) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [_users(url, emu.url, token=READ_ONLY)])
        result = run_job(spec, "users_sync", instance)
        assert not result.success
        message = _failure(result)
        assert message.startswith(
            f"users: the management token may read project {PROJECT_UID} but not create custom attributes in it "
            "(HTTP 403 creating 'orders'): creating needs the personalize:manage scope"
        )
        assert "Missing: orders, signup_at, birthday. Nothing was created." in message
        assert "create_missing: false" in message and READ_ONLY not in message
        assert READ_ONLY not in _logs(instance, result)
        assert emu.stats()["applied"]["patch"] == 0


def test_without_create_missing_the_check_fails_as_before(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    with run_emulator_in_thread(_config()) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [_users(url, emu.url, create_missing=False)])
        result = run_job(spec, "users_sync", instance)
        assert not result.success
        check = _check(result, "attribute_keys_exist")
        assert not check.passed and check.metadata["missing_keys"].value == sorted(MISSING)
        assert "created_keys" not in check.metadata and "would_create_keys" not in check.metadata
        assert "POST /attributes" not in emu.stats()["by_endpoint"]
        assert [item["key"] for item in _listed(emu)] == HELD


# -- events syncs --------------------------------------------------------------------------------------
EVENT_COLUMNS = ["purchase_id", "user_uid"]


def _events(url: str, emu_url: str) -> dict:
    return {
        "name": "signups",
        "kind": "events",
        "source": {"url": url, "table": "signups"},
        "destination": {
            "project_uid": PROJECT_UID,
            "edge_url": emu_url,
            "management_url": emu_url,
            "management_token": TOKEN,
            "create_missing": True,
        },
        "match": {"column": "user_uid"},
        "event": {"id_column": "purchase_id", "key": "signup"},
    }


def test_an_events_sync_creates_its_event_key_then_sends(tmp_path, instance):
    rows = [dict(purchase_id=index, user_uid=f"u{index}") for index in range(3)]
    url = write_sqlite_table(tmp_path / "src.db", rows, table="signups", columns=EVENT_COLUMNS)
    with run_emulator_in_thread(_config()) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [_events(url, emu.url)])
        dry = run_job(spec, "signups_dry_run", instance)
        assert dry.success
        assert _check(dry, "event_keys_exist").metadata["would_create_keys"].value == ["signup"]
        plan = dry_run_plan(dry, "signups", "personalize_events")
        assert plan["would_create_keys"] == ["signup"] and plan["rows_rejected"] == 0
        assert [item["key"] for item in _listed(emu, "/events")] == ["purchase"]

        result = run_job(spec, "signups_sync", instance)
        assert result.success
        check = _check(result, "event_keys_exist")
        assert check.passed and check.metadata["created_keys"].value == ["signup"]
        events = {item["key"]: item for item in _listed(emu, "/events")}
        assert events["signup"]["description"] == "Sent by contentstack_assets sync signups from signups"
        assert emu.user("u2")["events"] == [{"eventKey": "signup", "type": "EVENT"}]
        assert push_metadata(result, "signups", "personalize_events")["events_delivered"] == 3
        stats = emu.stats()["by_endpoint"]
        assert stats["POST /events (management)"] == 1 and stats["POST /events"] == 3


# -- the component -------------------------------------------------------------------------------------
COMPONENT = """\
type: contentstack_assets.PersonalizeSyncsComponent
attributes:
  syncs:
    - name: users
      source: {{url: "{url}", table: users}}
      destination:
        project_uid: {project}
        edge_url: {emu}
        management_url: {emu}
        management_token: {token}
        create_missing: true
      match: {{column: user_uid}}
      attributes:
        plan: {{column: plan_name, type: string}}
        orders: {{column: order_count, type: integer, name: Order count, description: Orders paid}}
"""


def test_the_component_takes_create_missing_and_the_attributes_name_and_description(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", ROWS)
    with run_emulator_in_thread(_config()) as emu, create_defs_folder_sandbox() as sandbox:
        path = sandbox.defs_folder_path / "personalize"
        path.mkdir(parents=True)
        text = COMPONENT.format(url=url, project=PROJECT_UID, emu=emu.url, token=TOKEN)
        (path / "defs.yaml").write_text(text)
        with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
            sync = component.spec.get("users")
            assert sync.destination.create_missing is True
            assert (sync.attributes["orders"].name, sync.attributes["orders"].description) == (
                "Order count",
                "Orders paid",
            )
            result = defs.resolve_job_def("users_sync").execute_in_process(instance=instance)
        assert result.success
        assert _check(result, "attribute_keys_exist").metadata["created_keys"].value == ["orders"]
        orders = next(item for item in _listed(emu) if item["key"] == "orders")
        assert (orders["name"], orders["description"]) == ("Order count", "Orders paid")
        assert emu.users()["u4"] == {"plan": "free", "orders": 4}
