"""Per-sync labels, upstream assets and Declarative Automation: `key_prefix`, `group`, `owners`, `tags`,
`source.deps` and `automation` reach every asset, check, job, schedule and sensor of a sync."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from contentstack_assets.definitions import build_definitions
from contentstack_assets.spec import SpecError, load_spec
from tests.helpers import users_sync, write_spec

UPSTREAM = dg.AssetKey(["analytics", "dim_users"])
URL = "sqlite:///users.db"
EDGE = "http://127.0.0.1:9"


def _defs(tmp_path, *syncs: dict) -> dg.Definitions:
    return build_definitions(load_spec(write_spec(tmp_path / "syncs.yaml", list(syncs))))


def _merges(**overrides) -> dict:
    sync = {
        "name": "identities",
        "kind": "merges",
        "source": {"url": URL, "table": "identity_links"},
        "destination": {"project_uid": "p" * 24, "edge_url": EDGE},
        "merge": {"source_column": "anonymous_uid", "target_column": "user_uid"},
    }
    sync.update(overrides)
    return sync


def _events(**overrides) -> dict:
    sync = {
        "name": "purchases",
        "kind": "events",
        "source": {
            "url": URL,
            "table": "purchases",
            "occurred_at": "purchased_at",
            "start_date": "2024-01-01",
        },
        "destination": {"project_uid": "p" * 24, "edge_url": EDGE},
        "match": {"column": "user_uid"},
        "event": {"id_column": "purchase_id", "key": "purchase"},
    }
    sync.update(overrides)
    return sync


LABELS = {
    "key_prefix": "personalize/eu",
    "group": "crm",
    "owners": ["team:growth"],
    "tags": {"domain": "crm"},
}


@pytest.mark.parametrize("shards", [1, 2])
def test_labels_reach_every_asset_check_job_and_dependency(tmp_path, shards):
    defs = _defs(
        tmp_path,
        _merges(**LABELS),
        users_sync(URL, EDGE, depends_on=["identities"], shards=shards, schedule="0 * * * *", **LABELS),
        _events(**LABELS),
    )
    graph = defs.resolve_asset_graph()
    prefix = ["personalize", "eu"]
    expected = {
        dg.AssetKey([*prefix, sync, asset])
        for sync, assets in {
            "users": ("source_users", "mapped_attributes", "personalize_users"),
            "identities": ("source_merges", "personalize_merges"),
            "purchases": ("source_events", "personalize_events"),
        }.items()
        for asset in assets
    }
    assert set(graph.get_all_asset_keys()) == expected
    for key in expected:
        node = graph.get(key)
        assert node.group_name == "crm" and node.owners == ["team:growth"], key
        assert node.tags.get("domain") == "crm", key
    users_push = dg.AssetKey([*prefix, "users", "personalize_users"])
    assert dg.AssetKey([*prefix, "identities", "personalize_merges"]) in graph.get(users_push).parent_keys
    checks = {check.asset_key for check in graph.asset_check_keys}
    assert checks <= expected and users_push in checks
    job = defs.resolve_job_def("users_sync")
    assert {key for key in job.asset_layer.selected_asset_keys} == {
        key for key in expected if key.path[-2] == "users"
    }
    defs.resolve_schedule_def("users_schedule")
    defs.resolve_sensor_def("users_source_changed")


def test_a_run_of_prefixed_assets_counts_as_a_run_of_its_sync():
    from contentstack_assets.syncs.runs import syncs_of_run

    run = dg.DagsterRun(
        job_name="__ASSET_JOB", asset_selection={dg.AssetKey(["personalize", "eu", "users", "source_users"])}
    )
    assert syncs_of_run(run) == {"users"}


def test_source_deps_are_upstream_of_the_source_asset(tmp_path):
    deps = {"deps": ["analytics/dim_users", "crm_accounts"]}
    defs = _defs(
        tmp_path,
        _merges(source={**_merges()["source"], **deps}),
        users_sync(URL, EDGE, source={"url": URL, "table": "users", **deps}),
        _events(source={**_events()["source"], **deps}),
    )
    graph = defs.resolve_asset_graph()
    for key in ("users/source_users", "identities/source_merges", "purchases/source_events"):
        assert graph.get(dg.AssetKey.from_user_string(key)).parent_keys == {
            UPSTREAM,
            dg.AssetKey("crm_accounts"),
        }
    # no asset of the project has these keys: Dagster shows them as external assets
    assert graph.get(UPSTREAM).is_external


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"automation": "eager", "schedule": "0 * * * *"}, "give `automation` or `schedule`, not both"),
        ({"automation": {"on_cron": "often"}}, "key 'automation.on_cron'"),
        ({"automation": "lazy"}, "key 'automation'"),
        ({"key_prefix": ["a-b"]}, "key 'key_prefix'"),
        ({"owners": ["nobody"]}, "key 'owners'"),
        ({"source": {"url": URL, "table": "users", "deps": ["a//b"]}}, "key 'source.deps'"),
    ],
)
def test_bad_labels_and_automation_are_spec_errors(tmp_path, changes, message):
    path = write_spec(tmp_path / "syncs.yaml", [users_sync(URL, EDGE, **changes)])
    with pytest.raises(SpecError) as error:
        load_spec(path)
    assert message in str(error.value) and "sync 'users'" in str(error.value)


def test_eager_requests_the_sync_after_an_upstream_materialization(tmp_path):
    defs = _defs(
        tmp_path,
        users_sync(
            URL,
            EDGE,
            automation="eager",
            source={"url": URL, "table": "users", "deps": ["analytics/dim_users"]},
        ),
    )
    sync_keys = {key for key in defs.resolve_asset_graph().get_all_asset_keys() if key != UPSTREAM}
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance)
        assert result.total_requested == 0  # the upstream model was never materialized
        instance.report_runless_asset_event(dg.AssetMaterialization(UPSTREAM))
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert {key for key in sync_keys if result.get_num_requested(key) == 1} == sync_keys
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, cursor=result.cursor)
        assert result.total_requested == 0


def test_a_partitioned_sync_is_requested_for_todays_partition_only(tmp_path):
    source = {
        "url": URL,
        "table": "users",
        "updated_at": "updated_at",
        "start_date": "2024-01-01",
        "deps": ["analytics/dim_users"],
    }
    defs = _defs(tmp_path, users_sync(URL, EDGE, automation="eager", source=source))
    push = dg.AssetKey(["users", "personalize_users"])
    now = dt.datetime(2024, 3, 5, 12, tzinfo=dt.UTC)
    with dg.instance_for_test() as instance:
        result = dg.evaluate_automation_conditions(defs=defs, instance=instance, evaluation_time=now)
        instance.report_runless_asset_event(dg.AssetMaterialization(UPSTREAM))
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=instance, cursor=result.cursor, evaluation_time=now
        )
        [requested] = [r for r in result.results if r.key == push]
        assert requested.true_subset.size == 1
        assert list(requested.true_subset.expensively_compute_partition_keys()) == ["2024-03-05"]


def test_on_cron_sets_the_condition_in_utc(tmp_path):
    defs = _defs(tmp_path, users_sync(URL, EDGE, automation={"on_cron": "0 6 * * *"}))
    for spec in defs.resolve_all_asset_specs():
        condition = spec.automation_condition
        assert condition is not None and "0 6 * * *" in condition.get_label(), spec.key


def test_a_translator_sets_labels_in_python(tmp_path):
    from contentstack_assets import PersonalizeTranslator

    class Crm(PersonalizeTranslator):
        def get_key_prefix(self, sync):
            return ["crm"]

        def get_owners(self, sync):
            return [f"team:{sync.name}"]

    spec = load_spec(
        write_spec(tmp_path / "syncs.yaml", [_merges(), users_sync(URL, EDGE, depends_on=["identities"])])
    )
    graph = build_definitions(spec, translator=Crm()).resolve_asset_graph()
    push = dg.AssetKey(["crm", "users", "personalize_users"])
    assert dg.AssetKey(["crm", "identities", "personalize_merges"]) in graph.get(push).parent_keys
    assert graph.get(push).owners == ["team:users"]

    class Bad(PersonalizeTranslator):
        def get_key_prefix(self, sync):
            return ["no spaces"]

    with pytest.raises(SpecError, match="sync 'identities': key 'key_prefix' from Bad"):
        build_definitions(spec, translator=Bad())
