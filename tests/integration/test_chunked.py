"""A read of more rows than `chunk_size` is read, mapped, planned and delivered chunk by chunk (engine/frames.py):
the same sync with chunks of 100 rows and in one piece ends in the same API, the same counts and the same
rejections, whatever the variant (duplicates across chunks, shards, `on_delete: clear`, a dry run, a rerun);
the chunks live in files beside the IO manager's, and a newer run's replace an older run's."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from contentstack_assets.engine import push
from contentstack_assets.engine.frames import ChunkedFrame
from contentstack_assets.engine.state import StateStore
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import load_spec
from tests.helpers import (
    PROJECT_UID,
    dry_run_plan,
    push_config,
    push_metadata,
    push_metadata_by_day,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

ATTRIBUTES = {
    "plan": {"column": "plan_name", "type": "string"},
    "orders": {"column": "order_count", "type": "integer"},
}
COUNTS = [
    "rows_read",
    "rows_rejected",
    "users_new",
    "users_changed",
    "users_unchanged",
    "users_delivered",
    "users_failed",
    "requests_sent",
    "users_to_clear",
    "users_cleared",
]


def _rows(changed: tuple[int, ...] = (), without: tuple[int, ...] = ()) -> list[dict]:
    rows = [
        dict(
            user_uid=f"u{index:04d}",
            plan_name=("gold" if index % 3 else None) if index not in changed else "platinum",
            order_count="many" if index % 97 == 0 else index,  # rejected: not an integer
        )
        for index in range(1, 1051)
        if index not in without
    ]
    rows[449]["user_uid"] = "u0005"  # a duplicate of row 5, four chunks later: both rejected
    rows[1039]["user_uid"] = " u0600 "  # the same uid once trimmed, in the last chunk
    rows[700]["user_uid"] = None  # no uid at all
    return rows


def _spec(tmp_path, name: str, edge_url: str, rows: list[dict], chunk_size: int, **overrides):
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    url = write_sqlite_table(folder / "src.db", rows)
    sync = users_sync(url, edge_url, attributes=ATTRIBUTES, **overrides)
    sync["source"]["chunk_size"] = chunk_size
    return write_spec(folder / "syncs.yaml", [sync])


def _state(tmp_path, name: str) -> str:
    return f"sqlite:///{tmp_path / name / 'state.db'}"


def _rejections(state_url: str, spec_path, run_id: str) -> set[tuple]:
    store = StateStore(state_url)
    sync = load_spec(spec_path).syncs[0]
    return {
        (row["row_number"], row["user_uid"], row["reason"])
        for row in store.run_rejections(store.key_of(sync), run_id)
    }


@pytest.fixture
def second_emulator():
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as handle:
        yield handle


@pytest.mark.parametrize(
    "variant",
    [{}, {"shards": 2}, {"on_delete": "clear"}, {"state": "by chunk"}],
    ids=["plain", "shards", "on_delete-clear", "state-looked-up-by-chunk"],
)
def test_chunks_of_100_rows_end_in_the_same_api_counts_and_rejections_as_one_piece(
    tmp_path, emulator, second_emulator, instance, monkeypatch, variant
):
    variant = dict(variant)
    if variant.pop("state", None):  # a state too big to read whole: each chunk looks up its own users
        monkeypatch.setattr(push, "WHOLE_STATE_USERS", 0)
    runs = {}
    for name, emu, chunk_size in (("chunked", emulator, 100), ("whole", second_emulator, 100_000)):
        monkeypatch.setenv("CONTENTSTACK_STATE_URL", _state(tmp_path, name))
        first = _spec(tmp_path, name, emu.url, _rows(), chunk_size, **variant)
        figures = [push_metadata(run_job(first, "users_sync", instance, raise_on_error=True))]
        # a rerun with three users changed (two in later chunks) and two gone
        rerun = _spec(
            tmp_path, name, emu.url, _rows(changed=(2, 555, 1001), without=(10, 900)), chunk_size, **variant
        )
        figures.append(push_metadata(run_job(rerun, "users_sync", instance, raise_on_error=True)))
        last = run_job(rerun, "users_sync", instance, raise_on_error=True)
        figures.append(push_metadata(last))
        runs[name] = (
            emu.users(),
            [{key: run.get(key) for key in COUNTS} for run in figures],
            _rejections(_state(tmp_path, name), rerun, last.run_id),
        )
    chunked, whole = runs["chunked"], runs["whole"]
    assert chunked[0] == whole[0]  # the API holds the same users with the same values
    assert chunked[1] == whole[1]  # every count of every run
    assert chunked[2] == whole[2]  # the same rows rejected, numbered alike, for the same reasons
    first, changed, unchanged = chunked[1]
    assert first["rows_read"] == 1050 and first["users_new"] == 1050 - first["rows_rejected"]
    duplicates = sorted((uid, row) for row, uid, reason in chunked[2] if reason == "duplicate user uid")
    if "shards" in variant:  # each shard reads its own users: rows are numbered shard by shard
        assert [uid for uid, _ in duplicates] == ["u0005", "u0005", "u0600", "u0600"]
    else:  # four chunks apart, and in the first and last chunks (rows after the two removed ones move up)
        assert duplicates == [("u0005", 5), ("u0005", 450), ("u0600", 599), ("u0600", 1040)]
    # the three changed users, and those the moved duplicate and null uid rows let through or set aside
    assert changed["users_changed"] >= 3 and unchanged["requests_sent"] == 0
    if variant.get("on_delete") == "clear":  # u0010 and u0900, and the users those rows now hide
        assert changed["users_to_clear"] >= 2 and changed["users_cleared"] == changed["users_to_clear"]


def test_a_dry_run_of_a_chunked_read_plans_every_chunk_and_sends_nothing(tmp_path, emulator, instance):
    spec = _spec(tmp_path, "dry", emulator.url, _rows(), 100)
    result = run_job(spec, "users_sync", instance, run_config=push_config(dry_run=True), raise_on_error=True)
    plan = dry_run_plan(result)
    assert plan["rows_read"] == 1050 and plan["users_new"] == 1050 - plan["rows_rejected"] > 1000
    assert plan["users_to_send"] == plan["users_new"] and "u0001" in plan["plan_sample"]
    assert emulator.users() == {}
    lines = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert any("rows 1001-1050 of 1050 (chunk 11)" in line for line in lines), "no progress per chunk"


def test_the_chunks_live_beside_the_io_managers_files_and_a_newer_run_replaces_them(
    tmp_path, emulator, instance
):
    spec = _spec(tmp_path, "files", emulator.url, _rows(), 100)
    home = Path(os.environ["DAGSTER_HOME"])  # the test instance's
    frames = home / "frames" / "users"
    stored = []
    for _ in range(2):
        assert run_job(spec, "users_sync", instance).success
        with (frames / "source_users" / "all.pkl").open("rb") as file:
            handle = pickle.load(file)
        assert isinstance(handle, ChunkedFrame) and len(handle.lengths) == 11 and len(handle) == 1050
        assert handle.directory.parent == frames / "source_users"
        assert sorted(path.name for path in handle.directory.glob("*.pkl"))[-1] == "000011.pkl"
        assert (handle.directory / "hashes.u64").stat().st_size == 8 * 1049  # each uid but the null one
        stored.append(handle.directory)
    assert not stored[0].exists() and stored[1].exists()  # the older run's chunks are gone
    mapped = sorted((frames / "mapped_attributes").glob("*.chunks"))
    assert len(mapped) == 1
    assert not list((home / "frames" / ".staging").glob("*/*"))  # nothing left behind


def test_a_newer_run_leaves_the_chunks_of_a_run_still_going(tmp_path, emulator, instance):
    """Two runs of one range at once (a CI run failed so): the later store of `source_users` removed the
    chunks the earlier run's next step was still reading ("chunk ... is gone"). A run's chunks now stay while
    the run is going; once it has finished, the next store of the range removes them."""
    import shutil

    import dagster as dg

    spec = _spec(tmp_path, "going", emulator.url, _rows(), 100)
    frames = Path(os.environ["DAGSTER_HOME"]) / "frames" / "users" / "source_users"
    assert run_job(spec, "users_sync", instance).success
    going = dg.DagsterRun(job_name="users_sync", status=dg.DagsterRunStatus.STARTED)
    instance.add_run(going)
    [finished] = frames.glob("*.chunks")
    still_read = frames / f"all.{going.run_id}.chunks"  # the chunks of a run whose next step reads them now
    shutil.copytree(finished, still_read)

    assert run_job(spec, "users_sync", instance).success
    assert still_read.exists() and not finished.exists()  # the finished run's go, the running run's stay

    instance.report_run_failed(going)
    assert run_job(spec, "users_sync", instance).success
    assert not still_read.exists() and len(list(frames.glob("*.chunks"))) == 1


def test_the_chunks_of_a_run_the_instance_does_not_know_stay(tmp_path, emulator, instance):
    """A run id the instance does not know (another instance's, sharing the folder) may be going: its chunks
    stay after a later store of the same range; `keep_days` removes them in the end."""
    import shutil
    import uuid

    spec = _spec(tmp_path, "unknown", emulator.url, _rows(), 100)
    frames = Path(os.environ["DAGSTER_HOME"]) / "frames" / "users" / "source_users"
    assert run_job(spec, "users_sync", instance).success
    [finished] = frames.glob("*.chunks")
    elsewhere = frames / f"all.{uuid.uuid4()}.chunks"
    shutil.copytree(finished, elsewhere)

    assert run_job(spec, "users_sync", instance).success
    assert elsewhere.exists() and not finished.exists()


def test_a_single_run_backfill_over_many_days_is_read_and_pushed_chunk_by_chunk(
    tmp_path, emulator, second_emulator, instance, monkeypatch
):
    """A single-run backfill over a long range is one read of its whole window: it goes chunk by chunk like
    an unpartitioned read (the memory bound of issue 19), and every day still carries its own counts, the
    same as when the window is read in one piece."""
    rows = [
        {**row, "updated_at": f"2024-01-{1 + index % 30:02d} 10:00:00"} for index, row in enumerate(_rows())
    ]
    days = ("2024-01-01", "2024-01-31")  # the 31st holds no row: an empty day in the range
    frames = Path(os.environ["DAGSTER_HOME"]) / "frames" / "users" / "source_users"
    runs = {}
    for name, emu, chunk_size in (("chunked", emulator, 100), ("whole", second_emulator, 100_000)):
        monkeypatch.setenv("CONTENTSTACK_STATE_URL", _state(tmp_path, name))
        folder = tmp_path / name
        folder.mkdir()
        url = write_sqlite_table(folder / "src.db", rows)
        source = {"url": url, "table": "users", "updated_at": "updated_at", "start_date": "2024-01-01"}
        sync = users_sync(url, emu.url, attributes=ATTRIBUTES, source={**source, "chunk_size": chunk_size})
        spec = write_spec(folder / "syncs.yaml", [sync])
        result = run_job(spec, "users_sync", instance, partition_range=days, raise_on_error=True)
        by_day = push_metadata_by_day(result)
        runs[name] = (
            emu.users(),
            {day: [figures.get(key) for key in COUNTS] for day, figures in by_day.items()},
        )
        [stored] = frames.glob("2024-01-01*.pkl")
        with stored.open("rb") as file:
            handle = pickle.load(file)
        if name == "chunked":  # the window's 1,050 rows held in 11 chunk files, never as one frame
            assert isinstance(handle, ChunkedFrame) and len(handle.lengths) == 11 and len(handle) == 1050
        else:
            assert not isinstance(handle, ChunkedFrame)  # one piece
    chunked, whole = runs["chunked"], runs["whole"]
    assert len(chunked[1]) == 31 and chunked == whole  # the same API; every day's counts alike
    assert chunked[1]["2024-01-31"] == [0] * len(COUNTS)
    rows_read = COUNTS.index("rows_read")
    assert sum(figures[rows_read] for figures in chunked[1].values()) == 1050  # the days add up to the read
