"""The production instance (deploy/dagster.yaml) and its Kubernetes variants load, and a sync runs on them.

Dagster's storage and the sync state share one fresh PostgreSQL database per test, as in production.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
import yaml
from dagster._core.instance.config import dagster_instance_config

from contentstack_assets.engine.state import StateStore
from tests.helpers import PROJECT_ROOT, push_metadata, run_job, users_sync, write_spec, write_sqlite_table

DEPLOY = PROJECT_ROOT / "deploy"


# -- helpers shared with test_celery.py and test_concurrent_runs.py -----------------------------------
def production_env(postgres_url: str) -> dict[str, str]:
    """The environment deploy/dagster.yaml reads, and the state store URL, all on one PostgreSQL database."""
    url = sa.engine.make_url(postgres_url)
    return {
        "DAGSTER_PG_HOST": url.host or "127.0.0.1",
        "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database,
        "CONTENTSTACK_STATE_URL": postgres_url,
    }


def production_home(home: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str) -> dict[str, str]:
    """DAGSTER_HOME = `home` holding a copy of deploy/dagster.yaml; returns the variables it set."""
    home.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    env = {"DAGSTER_HOME": str(home), **production_env(postgres_url)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def _rows(n: int) -> list[dict]:
    return [
        dict(user_uid=f"p{i:04d}", plan_name="pro" if i % 3 else "free", order_count=i, is_vip=i % 2,
             created_at="2024-02-03 04:05:06")
        for i in range(n)
    ]  # fmt: skip


def _expected(row: dict) -> dict:
    return {
        "plan": row["plan_name"],
        "orders": row["order_count"],
        "vip": bool(row["is_vip"]),
        "signup_at": "2024-02-03T04:05:06Z",
    }


# -- deploy/dagster.yaml ------------------------------------------------------------------------------
def test_production_instance_loads_on_postgres_and_a_sync_runs_on_it(
    tmp_path, monkeypatch, postgres_url, emulator
):
    production_home(tmp_path / "home", monkeypatch, postgres_url)
    rows = _rows(120)
    spec = write_spec(
        tmp_path / "syncs.yaml", [users_sync(write_sqlite_table(tmp_path / "src.db", rows), emulator.url)]
    )

    with dg.DagsterInstance.get() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert type(instance.event_log_storage).__name__ == "PostgresEventLogStorage"
        assert type(instance.schedule_storage).__name__ == "PostgresScheduleStorage"
        assert type(instance.run_coordinator).__name__ == "QueuedRunCoordinator"
        concurrency = instance.get_concurrency_config()
        assert concurrency.run_queue_config.tag_concurrency_limits == [
            {"key": "contentstack/sync", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}
        ]
        assert concurrency.pool_config.default_pool_limit == 1  # the API pool: one push per project
        assert instance.run_retries_enabled and instance.run_retries_max_retries == 2
        assert instance.run_monitoring_enabled

        result = run_job(spec, "users_sync", instance)
        assert result.success
        assert push_metadata(result)["users_delivered"] == len(rows)
        assert emulator.users() == {row["user_uid"]: _expected(row) for row in rows}
        # the run and its materializations are in PostgreSQL, readable by any process on the instance
        assert instance.get_run_by_id(result.run_id).status == dg.DagsterRunStatus.SUCCESS
        assert (
            instance.get_latest_materialization_event(dg.AssetKey(["users", "personalize_users"])) is not None
        )
        # the pool the push ran in was created with the default limit from the file
        assert (
            instance.event_log_storage.get_concurrency_info("personalize_test0000000000000000proj").slot_count
            == 1
        )

    # one database holds Dagster's tables and the sync state's
    tables = set(sa.inspect(sa.create_engine(postgres_url)).get_table_names())
    assert {"runs", "event_logs", "jobs", "concurrency_slots"} <= tables
    assert {"cs_users", "cs_runs", "cs_sync_log"} <= tables
    assert StateStore(postgres_url).count_users("users") == len(rows)

    # a second run on a new instance object (another process would do the same) sees the first one's state
    with dg.DagsterInstance.get() as instance:
        assert push_metadata(run_job(spec, "users_sync", instance))["requests_sent"] == 0
        assert len(instance.get_runs()) == 2


def test_production_instance_names_a_missing_setting(tmp_path, monkeypatch, postgres_url):
    production_home(tmp_path / "home", monkeypatch, postgres_url)
    monkeypatch.delenv("DAGSTER_PG_HOST")
    with pytest.raises(Exception, match="DAGSTER_PG_HOST"):
        dg.DagsterInstance.get()


# -- Kubernetes: deploy/dagster-k8s.yaml and deploy/helm-values.yaml ---------------------------------------
def test_k8s_instance_config_validates_with_the_k8s_run_launcher(tmp_path, monkeypatch):
    """dagster's own validation of the file, and of the launcher's config against K8sRunLauncher's schema
    (dagster-k8s is installed; the launcher itself needs a cluster, so it is not instantiated)."""
    from dagster._config import process_config
    from dagster_k8s import K8sRunLauncher

    for name, value in production_env("postgresql+psycopg://dagster:secret@db:5432/dagster").items():
        monkeypatch.setenv(name, value)
    shutil.copy(DEPLOY / "dagster-k8s.yaml", tmp_path / "dagster.yaml")
    config, custom_class = dagster_instance_config(str(tmp_path))
    assert custom_class is None
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    processed = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert processed.success, processed.errors
    assert "contentstack-secrets" in processed.value["env_secrets"]

    # the same storage, queue limits, pool and retries as deploy/dagster.yaml
    production = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())
    k8s = yaml.safe_load((DEPLOY / "dagster-k8s.yaml").read_text())
    for key in ("storage", "concurrency", "run_retries", "run_coordinator", "python_logs"):
        assert k8s[key] == production[key], key


def test_helm_values_say_what_the_production_instance_says():
    """The chart renders dagster.yaml from these values: they must carry the same limits (checked by structure:
    there is no helm binary here to render the chart)."""
    values = yaml.safe_load((DEPLOY / "helm-values.yaml").read_text())
    production = yaml.safe_load((DEPLOY / "dagster.yaml").read_text())

    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    launcher = values["runLauncher"]["config"]["k8sRunLauncher"]
    assert {"name": "contentstack-secrets"} in launcher["envSecrets"]

    runs, pools = production["concurrency"]["runs"], production["concurrency"]["pools"]
    assert values["concurrency"]["enabled"] is True
    assert values["concurrency"]["runs"]["maxConcurrentRuns"] == runs["max_concurrent_runs"]
    assert values["concurrency"]["runs"]["tagConcurrencyLimits"] == runs["tag_concurrency_limits"]
    assert values["concurrency"]["pools"] == {
        "defaultLimit": pools["default_limit"],
        "granularity": pools["granularity"],
    }
    assert values["pythonLogs"]["dagsterHandlerConfig"] == production["python_logs"]["dagster_handler_config"]
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == "QueuedRunCoordinator"
    assert daemon["runRetries"] == {
        "enabled": True,
        "maxRetries": production["run_retries"]["max_retries"],
        "retryOnAssetOrOpFailure": production["run_retries"]["retry_on_asset_or_op_failure"],
    }

    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["dagsterApiGrpcArgs"] == ["--module-name", "contentstack_assets.definitions"]
    assert {"name": "contentstack-secrets"} in deployment["envSecrets"]
    assert deployment["includeConfigInLaunchedRuns"]["enabled"] is True
    # the state store is the same PostgreSQL as Dagster's storage (the secret holds CONTENTSTACK_STATE_URL)
    assert values["postgresql"]["enabled"] is False and values["global"]["postgresqlSecretName"]
