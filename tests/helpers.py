"""Helpers for tests: source tables, spec files, running a sync job through Dagster."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import yaml

from contentstack_assets.definitions import build_definitions
from contentstack_assets.spec import load_spec

PROJECT_ROOT = Path(__file__).resolve().parent.parent  # the checkout: the tests are not installed
# the embedded default instance that `make dev` and the demo copy into $DAGSTER_HOME
DEV_INSTANCE = PROJECT_ROOT / "contentstack_assets" / "demo_project" / "dagster.yaml"
PROJECT_UID = "test0000000000000000proj"


def json_text(value: object) -> str:
    """A value as JSON text, to compare what reached the API: in Python `True == 1` and `1000 == 1000.0`,
    so `==` on parsed values would pass a boolean sent as 1 or an integer sent as 1000.0."""
    return json.dumps(value, sort_keys=True)


# -- source tables ---------------------------------------------------------------------------------
USER_COLUMNS = [
    "user_uid",
    "plan_name",
    "lifetime_value",
    "order_count",
    "is_vip",
    "created_at",
    "birth_date",
    "updated_at",
]

DEMO_ATTRIBUTES = {
    "plan": {"column": "plan_name", "type": "string"},
    "ltv": {"column": "lifetime_value", "type": "number"},
    "orders": {"column": "order_count", "type": "integer"},
    "vip": {"column": "is_vip", "type": "boolean"},
    "signup_at": {"column": "created_at", "type": "datetime"},
    "birthday": {"column": "birth_date", "type": "date"},
}


def write_sqlite_table(
    path: Path, rows: Sequence[dict], table: str = "users", columns: Sequence[str] = USER_COLUMNS
) -> str:
    """(Re)write a SQLite table with untyped columns (SQLite keeps each value's own type); returns the URL."""
    with sqlite3.connect(path) as connection:
        connection.execute(f'DROP TABLE IF EXISTS "{table}"')
        connection.execute(f'CREATE TABLE "{table}" ({", ".join(columns)})')
        connection.executemany(
            f'INSERT INTO "{table}" VALUES ({", ".join("?" for _ in columns)})',
            [tuple(row.get(column) for column in columns) for row in rows],
        )
    return f"sqlite:///{path}"


def write_spec(path: Path, syncs: list[dict]) -> Path:
    path.write_text(yaml.safe_dump({"syncs": syncs}, sort_keys=False))
    return path


def users_sync(url: str, edge_url: str, **overrides) -> dict:
    sync = {
        "name": "users",
        "source": {"url": url, "table": "users"},
        "destination": {"project_uid": PROJECT_UID, "edge_url": edge_url},
        "match": {"column": "user_uid"},
        "attributes": DEMO_ATTRIBUTES,
        "concurrency": 8,
    }
    sync.update(overrides)
    return sync


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_job(
    spec_path: Path,
    job_name: str,
    instance: dg.DagsterInstance,
    *,
    run_config: dict | None = None,
    partition_range: tuple[str, str] | None = None,
    raise_on_error: bool = False,
    resources: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Run a sync job of a spec file exactly as the code location defines it (resources may be replaced)."""
    defs = build_definitions(load_spec(spec_path), resources=resources)
    tags = {}
    if partition_range:
        tags = {
            "dagster/asset_partition_range_start": partition_range[0],
            "dagster/asset_partition_range_end": partition_range[1],
        }
    return defs.resolve_job_def(job_name).execute_in_process(
        instance=instance, run_config=run_config or {}, tags=tags, raise_on_error=raise_on_error
    )


def push_metadata_by_day(
    result: dg.ExecuteInProcessResult, sync: str = "users", asset: str = "personalize_users"
) -> dict[str | None, dict]:
    """The personalize_* materializations of a run by partition (None when unpartitioned), as plain values."""
    days = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == dg.AssetKey([sync, asset]):
            days[materialization.partition] = {
                key: value.value for key, value in materialization.metadata.items()
            }
    return days


def push_metadata(
    result: dg.ExecuteInProcessResult, sync: str = "users", asset: str = "personalize_users"
) -> dict:
    """The run's figures of its personalize_* materialization, as plain values. A run over several days
    materializes each day with that day's counts and the run's totals as `run_*`: here the totals stand for
    the counts, once checked to be what the days add up to."""
    by_day = push_metadata_by_day(result, sync, asset)
    if not by_day:
        raise AssertionError(f"no materialization of {sync}/{asset} in run {result.run_id}")
    first = next(iter(by_day.values()))
    if "run_days" not in first:
        return first
    assert first["run_days"] == len(by_day)
    totals = {key.removeprefix("run_"): value for key, value in first.items() if key.startswith("run_")}
    for key, total in totals.items():
        if key not in ("days", "duration_s") and key in first:  # a count; not a phase timing (run_plan_s)
            assert sum(day[key] for day in by_day.values()) == total, key
    # no timing of the run's repeated on every day under a day's name: it would plot as time spent per day
    assert [
        key for key in first if key.endswith("_s") and key != "duration_s" and not key.startswith("run_")
    ] == []
    return {**first, **totals}


def dry_run_plan(
    result: dg.ExecuteInProcessResult, sync: str = "users", asset: str = "personalize_users"
) -> dict:
    """The plan a dry run recorded, as plain values: the metadata of its observation of the push asset, once
    checked that the run materialized nothing there."""
    assert not push_metadata_by_day(result, sync, asset), "a dry run materialized the push asset"
    observations = [
        event.event_specific_data.asset_observation
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.ASSET_OBSERVATION
        and event.event_specific_data.asset_observation.asset_key == dg.AssetKey([sync, asset])
    ]
    assert len(observations) == 1, f"{len(observations)} observations of {sync}/{asset}"
    return {key: value.value for key, value in observations[0].metadata.items()}


def fast_retries(max_retries: int = 1) -> dict:
    """A Personalize resource that gives up quickly, for tests of failures."""
    from contentstack_assets.resources import PersonalizeResource

    return {
        "personalize": PersonalizeResource(
            max_retries=max_retries, backoff_factor=0.01, backoff_max_s=0.05, timeout_s=5
        )
    }


def push_config(**values) -> dict:
    return {"ops": {"users__personalize_users": {"config": values}}}
