"""Sharded delivery (`shards: N`): stable slices by user uid, independent shard pushes, one asset's report."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import sqlalchemy as sa
from dagster._core.definitions.reconstruct import ReconstructableRepository

from contentstack_assets.definitions import build_definitions
from contentstack_assets.engine.mapping import map_users
from contentstack_assets.engine.shards import concurrency_shares, shard_of, shard_rows
from contentstack_assets.engine.state import StateStore, rejections, runs
from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process
from contentstack_assets.spec import SpecError, load_spec
from tests.helpers import (
    DEV_INSTANCE,
    PROJECT_ROOT,
    PROJECT_UID,
    dry_run_plan,
    fast_retries,
    push_config,
    push_metadata,
    push_metadata_by_day,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

N_USERS = 300


def _rows(n: int = N_USERS, **changes) -> list[dict]:
    rows = [dict(user_uid=f"s{i:04d}", plan_name="free", order_count=i, is_vip=i % 2) for i in range(n)]
    for uid, values in changes.items():
        rows[int(uid.removeprefix("s"))].update(values)
    return rows


def _expected(row: dict) -> dict:
    return {"plan": row["plan_name"], "orders": int(row["order_count"]), "vip": bool(row["is_vip"])}


BAD_ROWS = [dict(user_uid=None, plan_name="no uid"), dict(user_uid="s_bad", order_count="many")]


@pytest.fixture
def sharded(tmp_path, emulator):
    """(write rows, spec path) for a users sync in 3 shards over a SQLite table rewritten by each call."""

    def write(rows: list[dict], **overrides) -> Path:
        url = write_sqlite_table(tmp_path / "src.db", rows)
        sync = users_sync(url, emulator.url, **{"shards": 3, "concurrency": 6, **overrides})
        return write_spec(tmp_path / "syncs.yaml", [sync])

    return write


# -- the hash -------------------------------------------------------------------------------------------
def test_shard_of_is_md5_and_the_same_in_another_interpreter():
    uids = ["s0000", "user-42", "anonymous_7f3a", "X" * 256]
    first_32_bits = [int(hashlib.md5(uid.encode()).hexdigest()[:8], 16) for uid in uids]
    assert list(shard_of(uids, 4)) == [bits % 4 for bits in first_32_bits]
    assert list(shard_of(uids, 4)) == [0, 3, 2, 3]  # pinned: a change here moves every user's shard
    # str hashes are salted per process; MD5 is not
    script = "import sys; from contentstack_assets.engine.shards import shard_of; print(shard_of(sys.argv[1:], 7).tolist())"
    other = subprocess.run(
        [sys.executable, "-c", script, *uids], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"}, cwd=PROJECT_ROOT,
    ).stdout  # fmt: skip
    assert other.strip() == str([int(shard) for shard in shard_of(uids, 7)])


def test_shard_rows_split_the_valid_users_and_give_rejected_rows_to_shard_zero(tmp_path):
    url = write_sqlite_table(tmp_path / "src.db", _rows(500) + BAD_ROWS)
    sync = load_spec(
        write_spec(tmp_path / "syncs.yaml", [users_sync(url, "http://127.0.0.1:1", shards=4)])
    ).syncs[0]
    import pandas as pd

    frame = map_users(pd.read_sql_table("users", sa.create_engine(url)), sync)
    slices = [shard_rows(frame, index, 4) for index in range(4)]
    assert sum(len(part) for part in slices) == len(frame)
    assert sorted(np.concatenate([part["_row"].to_numpy() for part in slices])) == list(
        range(1, len(frame) + 1)
    )
    assert slices[0]["_rejection"].notna().sum() == len(BAD_ROWS)
    assert all(part["_rejection"].isna().all() for part in slices[1:])
    for index, part in enumerate(slices):
        valid = part.loc[part["_rejection"].isna(), "user_uid"]
        assert set(shard_of(valid, 4)) == {index}
        assert 80 < len(valid) < 170  # roughly even


@pytest.mark.parametrize(
    ("concurrency", "shards", "shares"),
    [(16, 1, [16]), (16, 4, [4, 4, 4, 4]), (16, 3, [6, 5, 5]), (5, 5, [1] * 5)],
)
def test_concurrency_shares_add_up_to_the_sync_concurrency(concurrency, shards, shares):
    assert concurrency_shares(concurrency, shards) == shares


def test_more_shards_than_concurrency_is_a_spec_error(tmp_path):
    spec = write_spec(
        tmp_path / "syncs.yaml", [users_sync("sqlite:///x.db", "http://127.0.0.1:1", shards=9, concurrency=8)]
    )
    with pytest.raises(
        SpecError, match=r"syncs.yaml: sync 'users': key 'shards': 9 shards need `concurrency` of at least 9"
    ):
        build_definitions(load_spec(spec))


# -- the asset ----------------------------------------------------------------------------------------
def test_sharded_asset_keeps_key_lineage_config_and_check(tmp_path):
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync("sqlite:///x.db", "http://127.0.0.1:1", shards=3)])
    defs = build_definitions(load_spec(spec))
    graph = defs.resolve_asset_graph()
    push = dg.AssetKey(["users", "personalize_users"])
    assert graph.get(push).parent_keys == {dg.AssetKey(["users", "mapped_attributes"])}
    assert graph.get(dg.AssetKey(["users", "mapped_attributes"])).parent_keys == {
        dg.AssetKey(["users", "source_users"])
    }
    assert dg.AssetCheckKey(push, "delivery_failures") in graph.asset_check_keys
    job = defs.resolve_job_def("users_sync")
    steps = {
        node.name for node in job.graph.node_dict["users__personalize_users"].definition.node_dict.values()
    }
    assert steps == {"shard_0", "shard_1", "shard_2", "summary"}
    pools = {
        op.pool
        for op in job.graph.node_dict["users__personalize_users"].definition.iterate_op_defs()
        if op.pool
    }
    assert pools == {f"personalize_{PROJECT_UID}"}


def test_sharded_sync_delivers_everything_once_with_the_unsharded_metadata(
    tmp_path, sharded, emulator, instance
):
    spec = sharded(_rows() + BAD_ROWS)
    result = run_job(spec, "users_sync", instance)
    assert not result.get_step_failure_events() and result.success
    metadata = push_metadata(result)
    assert emulator.users() == {row["user_uid"]: _expected(row) for row in _rows()}
    assert emulator.stats()["requests_total"] == N_USERS and emulator.stats()["max_in_flight"] <= 6
    assert metadata["rows_read"] == N_USERS + len(BAD_ROWS) and metadata["rows_rejected"] == len(BAD_ROWS)
    assert metadata["users_delivered"] == N_USERS == metadata["requests_sent"] == metadata["users_new"]
    assert metadata["shards"] == 3 and "| 3/3 | 2 |" in metadata["shard_table"]
    assert "s_bad" in metadata["rejected_sample"]

    # the same metadata keys as the unsharded asset (plus the shard table)
    unsharded = run_job(sharded(_rows() + BAD_ROWS, shards=1), "users_sync", instance)
    assert set(push_metadata(unsharded)) <= set(metadata)
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "delivery_failures")
    assert check.passed and check.asset_key == dg.AssetKey(["users", "personalize_users"])

    # rejections once under the run id; one run row per shard
    store = StateStore(os.environ["CONTENTSTACK_STATE_URL"])
    with store.engine.connect() as connection:
        assert (
            connection.execute(
                sa.select(sa.func.count()).where(rejections.c.run_id == result.run_id)
            ).scalar()
            == 2
        )
        keys = connection.execute(
            sa.select(runs.c.run_id, runs.c.scope).where(runs.c.run_id.like(f"{result.run_id}%"))
        ).all()
    assert sorted(keys) == [(f"{result.run_id}/shard-{i}-of-3", f"all/shard-{i}-of-3") for i in (1, 2, 3)]
    assert set(store.run_log("users", result.run_id)["user_uid"]) == {row["user_uid"] for row in _rows()}


def test_sharded_sync_sends_only_changes_and_honours_the_run_config(sharded, emulator, instance):
    spec = sharded(_rows())
    assert run_job(spec, "users_sync", instance).success
    assert push_metadata(run_job(spec, "users_sync", instance))["requests_sent"] == 0

    emulator.reset()
    spec = sharded(_rows(s0007={"plan_name": "gold"}, s0100={"order_count": 1}, s0299={"is_vip": 0}))
    dry = dry_run_plan(run_job(spec, "users_dry_run", instance))  # observed, not materialized
    assert dry["users_changed"] == 3 and dry["requests_sent"] == 0 and dry["dry_run"] is True
    assert "s0007" in dry["plan_sample"] and emulator.stats()["requests_total"] == 0

    metadata = push_metadata(run_job(spec, "users_sync", instance))
    assert metadata["users_changed"] == 3 and metadata["users_unchanged"] == N_USERS - 3
    assert emulator.users() == {"s0007": {"plan": "gold"}, "s0100": {"orders": 1}, "s0299": {"vip": False}}

    resync = push_metadata(run_job(spec, "users_sync", instance, run_config=push_config(full_resync=True)))
    assert resync["requests_sent"] == N_USERS and resync["full_resync"] is True


def test_the_empty_source_guard_compares_each_shard_with_its_own_last_run(sharded, emulator, instance):
    rows = _rows()
    spec = sharded(rows)
    assert run_job(spec, "users_sync", instance).success
    # remove most users of shard 2 only: the source as a whole is still above half its size
    owner = shard_of([row["user_uid"] for row in rows], 3)
    kept = [row for row, shard in zip(rows, owner, strict=True) if shard != 1 or row["order_count"] % 10 == 0]
    assert len(kept) > 0.5 * len(rows)
    spec = sharded(kept)
    result = run_job(spec, "users_sync", instance)
    assert not result.success
    failures = [event.step_failure_data.error.message for event in result.get_step_failure_events()]
    assert len(failures) == 1 and "(shard-2-of-3): the source returned" in failures[0], failures
    result = run_job(spec, "users_sync", instance, run_config=push_config(allow_source_shrink=True))
    assert result.success and push_metadata(result)["requests_sent"] == 0


class _Crc32AsMd5:
    """hashlib as the shards saw it before they hashed by MD5: the first 4 bytes are the CRC-32."""

    @staticmethod
    def md5(data: bytes):
        import types
        import zlib

        return types.SimpleNamespace(digest=lambda: zlib.crc32(data).to_bytes(4, "big") + bytes(12))


def test_the_first_run_after_the_hash_moved_to_md5_passes_the_guard_and_sends_nothing(
    sharded, emulator, instance, monkeypatch
):
    """Shards were `crc32(uid) mod N` before: the first run that slices by MD5 moves most users to another
    shard. Each shard's guard compares its slice with that shard's last run, slices of a uniform hash of
    about the same size, so the run passes, and the state, kept by user, finds everyone unchanged."""
    import contentstack_assets.engine.source.shards as shards_module

    rows = _rows()
    spec = sharded(rows)
    with monkeypatch.context() as patched:
        patched.setattr(shards_module, "hashlib", _Crc32AsMd5)
        crc = shard_of([row["user_uid"] for row in rows], 3)
        assert run_job(spec, "users_sync", instance).success
    md5 = shard_of([row["user_uid"] for row in rows], 3)
    assert (crc != md5).mean() > 0.5  # most users moved
    result = run_job(spec, "users_sync", instance)
    assert result.success and push_metadata(result)["requests_sent"] == 0
    assert len(emulator.users()) == N_USERS


def test_failed_users_fail_the_asset_after_reporting_and_are_retried(sharded, emulator, instance):
    spec = sharded(_rows())
    emulator.configure(fail_rate=0.2, seed=5)
    first = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=0))
    assert not first.success
    metadata = push_metadata(first)  # recorded before the step failed
    failed = metadata["users_failed"]
    assert 0 < failed < N_USERS and metadata["users_delivered"] == N_USERS - failed
    assert "| user_uid | status | attempts | error |" in metadata["failures"]
    [step_failure] = first.get_step_failure_events()
    assert step_failure.step_key == "users__personalize_users.summary"
    assert (
        f"{failed} of {N_USERS} users failed after retries"
        in step_failure.step_failure_data.user_failure_data.description
    )
    check = next(c for c in first.get_asset_check_evaluations() if c.check_name == "delivery_failures")
    assert not check.passed and check.metadata["num_failures"].value == failed

    emulator.configure(fail_rate=0.0)
    second = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=0))
    assert second.success and push_metadata(second)["users_retried"] == failed
    assert emulator.users() == {row["user_uid"]: _expected(row) for row in _rows()}


def test_partitioned_sharded_sync_pushes_a_range_in_one_run(tmp_path, emulator, instance):
    rows = [
        {**row, "updated_at": f"2024-03-0{1 + index % 3} 08:00:00"} for index, row in enumerate(_rows(90))
    ]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    sync = users_sync(url, emulator.url, shards=2)
    sync["source"].update(updated_at="updated_at", start_date="2024-03-01")
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "users_sync", instance, partition_range=("2024-03-01", "2024-03-02"))
    assert result.success
    metadata = push_metadata(result)
    assert metadata["scope"] == "2024-03-01...2024-03-02" and metadata["users_delivered"] == 60
    # each day the users of its own rows, added up over the shards
    by_day = push_metadata_by_day(result)
    assert {day: figures["users_delivered"] for day, figures in by_day.items()} == {
        "2024-03-01": 30,
        "2024-03-02": 30,
    }
    assert all(figures["run_users_delivered"] == 60 for figures in by_day.values())
    assert set(emulator.users()) == {
        row["user_uid"] for row in rows if not row["updated_at"].startswith("2024-03-03")
    }
    store = StateStore(os.environ["CONTENTSTACK_STATE_URL"])
    assert (
        store.last_finished_run("users", scope="2024-03-01...2024-03-02/shard-2-of-2")["counts"]["rows_read"]
        > 0
    )


def test_depends_on_a_sync_waits_for_its_push(tmp_path):
    first = users_sync("sqlite:///x.db", "http://127.0.0.1:1", name="crm")
    second = users_sync("sqlite:///y.db", "http://127.0.0.1:1", shards=2, depends_on=["crm"])
    defs = build_definitions(load_spec(write_spec(tmp_path / "syncs.yaml", [first, second])))
    parents = defs.resolve_asset_graph().get(dg.AssetKey(["users", "personalize_users"])).parent_keys
    assert parents == {dg.AssetKey(["users", "mapped_attributes"]), dg.AssetKey(["crm", "personalize_users"])}


# -- in parallel, with the pool -----------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("pool_slots", [1, 2])
def test_shards_run_in_parallel_only_as_far_as_the_pool_allows(tmp_path, monkeypatch, pool_slots):
    """The multiprocess executor runs each shard in its own process; the project's pool (the embedded
    dagster.yaml gives every pool 1 slot) decides how many push at once. The read and the mapping (pool-free
    shard steps of their own) run first, in process: the multiprocess run is the push's."""
    users, concurrency = 1500, 8
    rows = [dict(user_uid=f"m{i:05d}", plan_name="p", order_count=i) for i in range(users)]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    home = Path(os.environ["DAGSTER_HOME"])
    shutil.copy(DEV_INSTANCE, home / "dagster.yaml")
    with start_emulator_process(EmulatorConfig(project_uid=PROJECT_UID, latency_ms=20)) as emu:
        spec = write_spec(
            tmp_path / "syncs.yaml", [users_sync(url, emu.url, shards=2, concurrency=concurrency)]
        )
        monkeypatch.setenv("CONTENTSTACK_SYNCS_FILE", str(spec))
        job = ReconstructableRepository.for_module(
            "contentstack_assets.definitions", "defs", working_directory=str(PROJECT_ROOT)
        ).get_reconstructable_job("users_sync")
        with dg.DagsterInstance.get() as instance:
            instance.event_log_storage.set_concurrency_slots(f"personalize_{PROJECT_UID}", pool_slots)
            read_and_map = [
                dg.AssetKey(["users", "source_users"]),
                dg.AssetKey(["users", "mapped_attributes"]),
            ]
            build_definitions(load_spec(spec)).resolve_job_def("users_sync").execute_in_process(
                instance=instance, asset_selection=read_and_map
            )
            push = [dg.AssetKey(["users", "personalize_users"])]
            with dg.execute_job(job, instance=instance, asset_selection=push) as result:
                assert result.success
                assert push_metadata(result)["users_delivered"] == users
            records = instance.all_logs(result.run_id)
        assert len(emu.users()) == users and emu.stats()["requests_total"] == users
        max_in_flight = emu.stats()["max_in_flight"]

    windows = {}
    for record in records:
        event = record.dagster_event
        if (
            event
            and event.step_key
            and ".shard_" in event.step_key
            and event.event_type_value in ("STEP_START", "STEP_SUCCESS")
        ):
            windows.setdefault(event.step_key, []).append(record.timestamp)
    (start_a, end_a), (start_b, end_b) = windows.values()
    overlapped = start_a < end_b and start_b < end_a
    if pool_slots == 1:
        assert not overlapped and max_in_flight <= concurrency // 2, (windows, max_in_flight)
    else:
        assert overlapped and concurrency // 2 < max_in_flight <= concurrency, (windows, max_in_flight)
