"""The state store's schema: frozen migrations, upgrades step by step, concurrent first opens, newer stores."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys
import traceback
from pathlib import Path

import pytest
import sqlalchemy as sa

from contentstack_assets.engine import state
from contentstack_assets.engine.state import (
    MIGRATIONS,
    SCHEMA_VERSION,
    StateSchemaError,
    StateStore,
    schema_version,
)

# the checkout; not tests.helpers' PROJECT_ROOT: the spawned processes below import this module, and that one
# imports Dagster
PROJECT_ROOT = Path(__file__).resolve().parents[2]


def _versions(url: str) -> list[int]:
    with sa.create_engine(url).connect() as connection:
        return [v for (v,) in connection.execute(sa.select(schema_version.c.version).order_by("version"))]


def _schema(url: str) -> dict[str, dict]:
    """Each cs_ table's columns (type class, nullability), primary key and indexes, as the database has them."""
    engine = sa.create_engine(url)
    inspector = sa.inspect(engine)
    found = {}
    for name in sorted(n for n in inspector.get_table_names() if n.startswith("cs_")):
        found[name] = {
            "columns": {
                column["name"]: (type(column["type"]).__name__, column["nullable"])
                for column in inspector.get_columns(name)
            },
            "primary_key": sorted(inspector.get_pk_constraint(name)["constrained_columns"]),
            "indexes": sorted((i["name"], tuple(i["column_names"])) for i in inspector.get_indexes(name)),
        }
    engine.dispose()
    return found


def _schema_of_tables(url: str) -> dict[str, dict]:
    """The same description of the newest tables (engine/state/tables.py), created in an empty database."""
    engine = sa.create_engine(url)
    state.metadata.create_all(engine)
    engine.dispose()
    return _schema(url)


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_the_migrations_end_at_the_tables_the_code_uses(tmp_path, database, request):
    """A table changed in engine/state/tables.py without a migration (or the reverse) fails here."""
    if database == "sqlite":
        migrated, direct = (f"sqlite:///{tmp_path / name}.db" for name in ("migrated", "direct"))
    else:
        migrated = request.getfixturevalue("postgres_url")
        direct = f"sqlite:///{tmp_path / 'direct.db'}"  # compared by type class, which both dialects share
    StateStore(migrated)
    assert _versions(migrated) == list(range(1, SCHEMA_VERSION + 1))
    if database == "sqlite":
        assert _schema(migrated) == _schema_of_tables(direct)
    else:
        migrated_schema, direct_schema = _schema(migrated), _schema_of_tables(direct)
        assert migrated_schema.keys() == direct_schema.keys()
        for name, table in migrated_schema.items():
            assert table["columns"].keys() == direct_schema[name]["columns"].keys(), name
            assert table["primary_key"] == direct_schema[name]["primary_key"], name
            assert [i for i, _ in table["indexes"]] == [i for i, _ in direct_schema[name]["indexes"]], name


def test_an_old_store_is_upgraded_step_by_step(tmp_path):
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:  # a store written by the first release: version 1 only
        schema_version.create(connection)
        MIGRATIONS[0](connection)
        connection.execute(schema_version.insert().values(version=1))
        connection.execute(
            sa.text(
                "INSERT INTO cs_users (sync, user_uid, fingerprint, delivered, failed_runs, updated_at) "
                "VALUES ('users', 'u1', 7, '{\"plan\": \"gold\"}', 0, '2024-01-01 00:00:00')"
            )
        )
    engine.dispose()

    store = StateStore(url)
    assert _versions(url) == list(range(1, SCHEMA_VERSION + 1))
    assert store.user_state("users", "u1")["delivered"] == {"plan": "gold"}  # data kept
    assert StateStore(url).migrate() == SCHEMA_VERSION  # nothing left to do


def test_a_store_newer_than_the_code_is_refused_with_a_clear_message(tmp_path):
    url = f"sqlite:///{tmp_path / 'new.db'}"
    StateStore(url)
    with sa.create_engine(url).begin() as connection:
        connection.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1))

    with pytest.raises(StateSchemaError) as raised:
        StateStore(url)
    message = str(raised.value)
    assert f"schema version {SCHEMA_VERSION + 1}" in message and f"the {SCHEMA_VERSION} this" in message
    assert "Upgrade contentstack_assets" in message and "CONTENTSTACK_STATE_URL" in message
    assert _versions(url)[-1] == SCHEMA_VERSION + 1  # left as it was

    # the log CLI says it in one line on stderr, no traceback
    finished = subprocess.run(
        [sys.executable, "-m", "contentstack_assets.log", "u1", "--state-url", url],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        timeout=120,
    )
    assert finished.returncode == 2
    assert "Traceback" not in finished.stderr and message in finished.stderr


def test_a_store_newer_than_the_code_fails_the_push_as_a_user_error(
    tmp_path, emulator, instance, monkeypatch
):
    import dagster as dg

    from tests.helpers import run_job, users_sync, write_spec, write_sqlite_table

    url = f"sqlite:///{tmp_path / 'newer_state.db'}"
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", url)
    StateStore(url)
    with sa.create_engine(url).begin() as connection:
        connection.execute(schema_version.insert().values(version=SCHEMA_VERSION + 1))
    source = write_sqlite_table(tmp_path / "src.db", [{"user_uid": "u1", "plan_name": "gold"}])
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(source, emulator.url)])

    result = run_job(spec, "users_sync", instance)
    assert not result.success
    failure = next(
        event
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
        and event.step_key == "users__personalize_users"
    )
    error = failure.step_failure_data.error
    assert error.cls_name == "Failure" and "newer than the" in error.message
    assert failure.step_failure_data.user_failure_data.description.startswith("the sync state store")
    assert emulator.stats()["requests_total"] == 0


# -- two processes opening a new store at once ------------------------------------------------------
def _open_stores(directory: str, trials: int, barrier, failures) -> None:
    for trial in range(trials):
        barrier.wait(timeout=120)  # every process opens the same new file at the same moment
        try:
            StateStore(f"sqlite:///{directory}/trial-{trial}.db")
        except Exception:  # noqa: BLE001 - reported to the test
            failures.put(f"trial {trial}: {traceback.format_exc(limit=1)}")


def test_processes_opening_a_new_sqlite_store_at_once_take_turns(tmp_path):
    """Without the write lock taken first, about half of such trials failed with `table ... already exists`;
    without waiting out a refused switch to WAL, most runs of 40 trials had one `database is locked`."""
    processes, trials = 4, 40
    context = multiprocessing.get_context("spawn")  # real processes, each with its own engine
    barrier, failures = context.Barrier(processes), context.Queue()
    workers = [
        context.Process(target=_open_stores, args=(str(tmp_path), trials, barrier, failures))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=300)
    assert all(worker.exitcode == 0 for worker in workers)
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []
    for trial in range(trials):
        assert _versions(f"sqlite:///{tmp_path}/trial-{trial}.db") == list(range(1, SCHEMA_VERSION + 1))
