"""Shards that read their own slice (`shards: N`): each shard's read asks the database for the rows of its
own users only (engine/source/shards.py), on SQLite, PostgreSQL, MariaDB and DuckDB alike, and where a
dialect cannot, keeps its own rows of a whole read; a sharded sync reads, maps and pushes each shard apart
and ends in the API, counts and rejections of the same sync unsharded."""

from __future__ import annotations

import dagster as dg
import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from contentstack_assets.definitions import build_definitions
from contentstack_assets.engine.source import SourceReader, reader
from contentstack_assets.engine.source.shards import STRAY, row_shards, shard_of
from contentstack_assets.engine.state import StateStore
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import SourceSpec, load_spec
from tests.helpers import PROJECT_UID, push_metadata, run_job, users_sync, write_spec, write_sqlite_table
from tests.integration.warehouses import execute, mysql_database

SHARDS = 3
NBSP = "\u00a0"
# what a database may trim otherwise than the rules (ASCII whitespace, a no-break space) and uids the rules
# reject wherever they are read (none, empty, blank, not ASCII, too long)
ODD_UIDS = ["  padded ", "\tTabbed\n", None, "", "   ", "é-not-ascii", "A" * 300, f"{NBSP}nbsp", "42"]
UIDS = ODD_UIDS + [f"user-{index}" for index in range(300)]


def _source_url(dialect: str, tmp_path) -> str:
    rows = [{"user_uid": uid} for uid in UIDS]
    if dialect == "sqlite":
        return write_sqlite_table(tmp_path / "src.db", rows, columns=["user_uid"])
    if dialect == "duckdb":
        path = tmp_path / "src.duckdb"
        with duckdb.connect(str(path)) as connection:
            connection.execute("CREATE TABLE users (user_uid VARCHAR)")
            connection.executemany("INSERT INTO users VALUES (?)", [[uid] for uid in UIDS])
        return f"duckdb:///{path}"
    raise AssertionError(dialect)


@pytest.fixture(params=["sqlite", "postgresql", "mysql", "duckdb"])
def source_url(request, tmp_path):
    rows = [{"user_uid": uid} for uid in UIDS]
    if request.param == "postgresql":
        url = request.getfixturevalue("postgres_url")
        execute(url, "CREATE TABLE users (user_uid TEXT)", "INSERT INTO users VALUES (:user_uid)", rows=rows)
        yield url
    elif request.param == "mysql":
        with mysql_database() as url:
            execute(
                url,
                "CREATE TABLE users (user_uid VARCHAR(400)) CHARACTER SET utf8mb4",
                "INSERT INTO users VALUES (:user_uid)",
                rows=rows,
            )
            yield url
    else:
        yield _source_url(request.param, tmp_path)


def _read(url: str, shard: tuple[int, int] | None = None) -> pd.Series:
    source = SourceSpec.model_validate({"url": url, "table": "users", "chunk_size": 100})
    chunks = list(SourceReader(source, ["user_uid"]).read_chunks(shard=shard))
    return pd.concat(chunks, ignore_index=True)["user_uid"]


def _shards_of_each_row(url: str) -> dict[str | None, list[int]]:
    read_by: dict[str | None, list[int]] = {}
    for index in range(SHARDS):
        for uid in _read(url, (index, SHARDS)):
            read_by.setdefault(uid, []).append(index)
    return read_by


def test_each_shard_reads_the_rows_of_its_own_users_in_the_database(source_url):
    read_by = _shards_of_each_row(source_url)
    dialect = sa.engine.make_url(source_url).get_backend_name()
    assert sorted(map(repr, read_by)) == sorted(map(repr, UIDS))  # every row once, by one shard
    assert all(len(shards) == 1 for shards in read_by.values())
    for uid in UIDS:
        trimmed = None if uid is None else uid.strip()
        valid = bool(trimmed) and trimmed.isascii() and len(trimmed) <= 256
        if not valid:
            continue  # rejected by whichever shard reads it
        # a no-break space too, which the database does not trim: every shard reads it, its owner keeps it
        assert read_by[uid] == [int(shard_of([trimmed], SHARDS)[0])], (uid, dialect)
    assert read_by[None] == [0]  # a null uid: shard 0


def test_where_the_database_cannot_tell_a_shard_each_keeps_its_own_rows_of_a_whole_read(
    tmp_path, monkeypatch
):
    url = _source_url("sqlite", tmp_path)
    monkeypatch.setattr(reader, "can_slice", lambda dialect: False)
    read_by = _shards_of_each_row(url)
    expected = row_shards(pd.Series(UIDS, dtype=object), SHARDS)
    assert {repr(uid): shards for uid, shards in read_by.items()} == {
        repr(uid): [int(shard)] for uid, shard in zip(UIDS, expected, strict=True)
    }


# -- a sharded sync, end to end ------------------------------------------------------------------------
ATTRIBUTES = {
    "plan": {"column": "plan_name", "type": "string"},
    "orders": {"column": "order_count", "type": "integer"},
}


def _rows(changed: tuple[int, ...] = ()) -> list[dict]:
    rows = [
        dict(
            user_uid=f"u{index:04d}",
            plan_name="platinum" if index in changed else "gold",
            order_count="many" if index % 97 == 0 else index,  # rejected: not an integer
        )
        for index in range(1, 1001)
    ]
    rows[449]["user_uid"] = "u0005"  # a duplicate of row 5: both rejected, by the shard of u0005
    rows[700]["user_uid"] = None
    return rows


@pytest.fixture
def second_emulator():
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as handle:
        yield handle


def _rejections(state_url: str, spec_path, run_id: str) -> set[tuple]:
    store = StateStore(state_url)
    sync = load_spec(spec_path).syncs[0]
    return {(row["user_uid"], row["reason"]) for row in store.run_rejections(store.key_of(sync), run_id)}


def test_a_sharded_sync_reads_maps_and_pushes_each_shard_apart_and_ends_as_unsharded(
    tmp_path, emulator, second_emulator, instance, monkeypatch
):
    runs = {}
    for name, emu, shards in (("sharded", emulator, SHARDS), ("whole", second_emulator, 1)):
        folder = tmp_path / name
        folder.mkdir()
        state_url = f"sqlite:///{folder / 'state.db'}"
        monkeypatch.setenv("CONTENTSTACK_STATE_URL", state_url)
        results = []
        for rows in (_rows(), _rows(changed=(3, 500, 999))):
            url = write_sqlite_table(folder / "src.db", rows)
            sync = users_sync(url, emu.url, attributes=ATTRIBUTES, shards=shards, concurrency=6)
            sync["source"]["chunk_size"] = 100
            spec = write_spec(folder / "syncs.yaml", [sync])
            results.append(run_job(spec, "users_sync", instance, raise_on_error=True))
        runs[name] = (emu.users(), [push_metadata(result) for result in results], results, spec, state_url)
    sharded, whole = runs["sharded"], runs["whole"]
    assert sharded[0] == whole[0] and len(sharded[0]) == 1000 - 2 - 1 - 10  # duplicates, null, "many"
    for ours, theirs in zip(sharded[1], whole[1], strict=True):
        for key in ("rows_read", "rows_rejected", "users_new", "users_changed", "users_delivered"):
            assert ours[key] == theirs[key], key
    assert sharded[1][1]["users_changed"] == 3
    last = [result.run_id for result in sharded[2]][-1], [result.run_id for result in whole[2]][-1]
    assert _rejections(sharded[4], sharded[3], last[0]) == _rejections(whole[4], whole[3], last[1])

    # each shard read and mapped only its own users, in its own step
    result = sharded[2][-1]
    steps = {event.step_key for event in result.all_events if event.event_type_value == "STEP_SUCCESS"}
    for index in range(SHARDS):
        assert (
            f"users__source_users.read_{index}" in steps and f"users__mapped_attributes.map_{index}" in steps
        )
    source = result.asset_materializations_for_node("users__source_users")[0].metadata
    by_shard = source["rows_by_shard"].value
    assert sum(by_shard) == source["rows_read"].value == 1000
    assert all(250 < rows < 420 for rows in by_shard)  # about a third each
    mapped = result.asset_materializations_for_node("users__mapped_attributes")[0].metadata
    assert mapped["rows_rejected"].value == 2 + 1 + 10


def test_a_uid_in_a_no_break_space_is_its_trimmed_twins_duplicate_as_unsharded(
    postgres_url, tmp_path, emulator, instance
):
    # PostgreSQL's btrim keeps the no-break space the rules trim: both rows still meet in one shard
    twin = next(
        uid for uid in (f"z{index}" for index in range(100))
        if shard_of([uid], 2)[0] != shard_of([f"{NBSP}{uid}"], 2)[0]
    )  # fmt: skip
    rows = [{"user_uid": f"u{index}", "plan_name": "gold"} for index in range(50)]
    rows += [{"user_uid": twin, "plan_name": "gold"}, {"user_uid": f"{NBSP}{twin}", "plan_name": "gold"}]
    rows.append({"user_uid": f"{NBSP}alone{NBSP}", "plan_name": "gold"})
    execute(
        postgres_url,
        "CREATE TABLE users (user_uid TEXT, plan_name TEXT)",
        "INSERT INTO users VALUES (:user_uid, :plan_name)",
        rows=rows,
    )
    attributes = {"plan": {"column": "plan_name", "type": "string"}}
    spec = write_spec(
        tmp_path / "syncs.yaml", [users_sync(postgres_url, emulator.url, attributes=attributes, shards=2)]
    )
    result = run_job(spec, "users_sync", instance, raise_on_error=True)
    assert set(emulator.users()) == {f"u{index}" for index in range(50)} | {"alone"}
    metadata = push_metadata(result)
    assert metadata["rows_read"] == 53 and metadata["rows_rejected"] == 2  # the twins, as duplicates


def test_a_number_the_database_writes_otherwise_is_set_aside_by_the_shard_that_read_it(
    tmp_path, emulator, instance
):
    # a DOUBLE uid column: DuckDB's text of 7.0 is "7.0", the rules' uid is "7"; when the database gives the
    # row to another shard than the uid's, that shard sets it aside, never sends it as its own
    stray = next(
        index for index in range(100) if shard_of([f"{index}.0"], 2)[0] != shard_of([str(index)], 2)[0]
    )
    path = tmp_path / "src.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute("CREATE TABLE users (user_uid DOUBLE, plan_name VARCHAR)")
        connection.executemany("INSERT INTO users VALUES (?, 'gold')", [[float(stray)], [1000.5]])
    attributes = {"plan": {"column": "plan_name", "type": "string"}}
    spec = write_spec(
        tmp_path / "syncs.yaml",
        [users_sync(f"duckdb:///{path}", emulator.url, attributes=attributes, shards=2)],
    )
    result = run_job(spec, "users_sync", instance)
    assert str(stray) not in emulator.users()
    check = next(
        evaluation
        for evaluation in result.get_asset_check_evaluations()
        if evaluation.check_name == "rows_valid"
    )
    assert not check.passed and STRAY[:40] in check.metadata["rejected_sample"].value


def test_a_marked_user_whose_row_is_rejected_keeps_its_mark_in_any_shard(tmp_path, emulator, instance):
    # shard 0 records every rejected row; the user's own shard must still count it as in the source, as the
    # unsharded push does: its mark is kept (and the row read again each run) until the row is valid
    owned_by_1 = next(f"u{index}" for index in range(100) if shard_of([f"u{index}"], 2)[0] == 1)
    rows = [{"user_uid": f"u{index}", "plan_name": "gold", "order_count": index} for index in range(20)]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    spec = write_spec(
        tmp_path / "syncs.yaml", [users_sync(url, emulator.url, attributes=ATTRIBUTES, shards=2)]
    )
    assert run_job(spec, "users_sync", instance).success
    store = StateStore()
    key = store.key_of(load_spec(spec).get("users"))
    store.mark_for_resend(key, {owned_by_1: f"anon -> {owned_by_1}"})
    rejected = [{**row, "order_count": "many"} if row["user_uid"] == owned_by_1 else row for row in rows]
    write_sqlite_table(tmp_path / "src.db", rejected)
    result = run_job(spec, "users_sync", instance)
    assert push_metadata(result)["rows_rejected"] == 1
    assert owned_by_1 in store.pending_resends(key)  # not taken for gone


def test_an_unsharded_step_handed_a_sharded_frame_says_to_materialize_the_sync_again(tmp_path, instance):
    rows = [{"user_uid": f"u{index}", "plan_name": "gold", "order_count": index} for index in range(20)]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    sharded = users_sync(url, "http://127.0.0.1:1", attributes=ATTRIBUTES, shards=2)
    spec = write_spec(tmp_path / "syncs.yaml", [sharded])
    keys = [sa_key("source_users"), sa_key("mapped_attributes")]
    job = build_definitions(load_spec(spec)).resolve_job_def("users_sync")
    assert job.execute_in_process(instance=instance, asset_selection=keys).success
    spec = write_spec(tmp_path / "syncs.yaml", [{**sharded, "shards": 1}])  # the spec changed since
    job = build_definitions(load_spec(spec)).resolve_job_def("users_sync")
    for step in ("mapped_attributes", "personalize_users"):
        result = job.execute_in_process(
            instance=instance, asset_selection=[sa_key(step)], raise_on_error=False
        )
        failure = next(event for event in result.all_events if event.is_step_failure)
        assert "made in 2 shards" in failure.step_failure_data.error.message
        assert "materialize the whole sync again" in failure.step_failure_data.error.message


def sa_key(asset: str) -> dg.AssetKey:
    return dg.AssetKey(["users", asset])
