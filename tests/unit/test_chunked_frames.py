"""A read too big for one piece (engine/frames.py): written chunk by chunk, read back identical one chunk at a
time; duplicates found across chunks on the uid as the rules make it; rows numbered on from chunk to chunk."""

from __future__ import annotations

import datetime as dt
import pickle

import pandas as pd
import pytest

from contentstack_assets.engine.frames import ChunkedFrame, ChunkWriter, chunks_of, collect, whole
from contentstack_assets.engine.mapping import duplicate_uids, map_frame, map_users, uid_hashes_of
from contentstack_assets.spec import UsersSync
from contentstack_assets.wire import REJECTION, ROW, UID


def _chunk(start: int, rows: int) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_uid": pd.Series([f"u{index}" for index in range(start, start + rows)], dtype=object),
            "seen": pd.Series(
                [
                    dt.datetime(2024, 1, 1) + dt.timedelta(minutes=index)
                    for index in range(start, start + rows)
                ],
                dtype=object,
            ),
            "orders": pd.Series(list(range(start, start + rows)), dtype=object),
        }
    )


@pytest.fixture(autouse=True)
def _staging(tmp_path, monkeypatch):
    monkeypatch.setenv("CONTENTSTACK_CHUNKS_DIR", str(tmp_path / "staging"))


def test_one_chunk_stays_a_plain_frame_in_memory_and_writes_nothing(tmp_path):
    frame = collect([_chunk(0, 5)])
    assert isinstance(frame, pd.DataFrame) and len(frame) == 5
    assert not (tmp_path / "staging").exists()
    assert list(chunks_of(frame)) == [frame]


def test_several_chunks_come_back_identical_one_at_a_time_with_the_whole_frames_attrs():
    parts = [_chunk(0, 4), _chunk(4, 4), _chunk(8, 2)]
    for part in parts:
        part.attrs["read_at"] = 17
    frame = collect(parts)
    assert isinstance(frame, ChunkedFrame)
    assert frame.lengths == [4, 4, 2] and len(frame) == 10 and "orders" in frame
    for got, expected in zip(frame.chunks(), parts, strict=True):
        pd.testing.assert_frame_equal(got, expected)
        assert got.attrs == {"read_at": 17}
        assert type(got["seen"].iat[0]) is dt.datetime and type(got["orders"].iat[0]) is int
    pd.testing.assert_frame_equal(whole(frame), pd.concat(parts, ignore_index=True))
    assert list(frame.column("user_uid")) == [f"u{index}" for index in range(10)]
    # the chunk files hold no attrs (they go with the frame once, not with each chunk)
    with (frame.directory / "000002.pkl").open("rb") as file:
        assert pickle.load(file)["attrs"] == {}


def test_a_chunk_added_in_memory_follows_the_files_and_leaves_them_as_they_are():
    frame = collect([_chunk(0, 3), _chunk(3, 3)])
    extended = frame.with_chunk(_chunk(100, 2))
    assert len(extended) == 8 and len(frame) == 6
    assert list(extended.column("user_uid"))[-2:] == ["u100", "u101"]
    assert sorted(path.name for path in frame.directory.iterdir()) == ["000001.pkl", "000002.pkl"]


def test_moved_chunks_are_read_from_their_new_place_and_a_missing_one_says_what_to_do(tmp_path):
    frame = collect([_chunk(0, 3), _chunk(3, 3)])
    moved = frame.moved_to(tmp_path / "stored" / "all.run.chunks")
    assert not frame.directory.exists() and len(moved) == 6
    (moved.directory / "000002.pkl").unlink()
    with pytest.raises(FileNotFoundError, match=r"chunk 2 of 2 .* run the step again"):
        list(moved.chunks())


def test_a_failed_read_leaves_no_chunks_behind(tmp_path):
    def chunks():
        yield _chunk(0, 3)
        yield _chunk(3, 3)
        raise RuntimeError("the connection dropped")

    with pytest.raises(RuntimeError):
        collect(chunks())
    assert list((tmp_path / "staging").iterdir()) == []


def test_an_empty_read_is_an_empty_frame():
    writer = ChunkWriter()
    empty = pd.DataFrame({"user_uid": pd.Series([], dtype=object)})
    assert writer.finish({"read_at": 1}, empty=empty).attrs == {"read_at": 1}


SYNC = UsersSync.model_validate(
    {
        "name": "users",
        "source": {"url": "sqlite:///unused.db", "table": "users"},
        "destination": {"project_uid": "p", "edge_url": "http://127.0.0.1:1"},
        "match": {"column": "user_uid"},
        "attributes": {"orders": {"column": "orders", "type": "integer"}},
    }
)


def _raw(uids: list[object]) -> pd.DataFrame:
    return pd.DataFrame(
        {"user_uid": pd.Series(uids, dtype=object), "orders": pd.Series(range(len(uids)), dtype=object)}
    )


def test_duplicates_are_found_across_chunks_on_the_trimmed_uid():
    raw = collect([_raw(["a", "b", None]), _raw(["c", " a ", "d"]), _raw(["e", "d", 7])])
    assert duplicate_uids(raw, "user_uid") == {"a", "d"}
    assert duplicate_uids(collect([_raw(["a", "b"]), _raw(["c", "e"])]), "user_uid") == set()


def test_a_chunked_mapping_equals_the_mapping_in_one_piece():
    parts = [_raw(["a", "b", None]), _raw(["c", " a ", "x" * 70]), _raw(["e", "d", "d"])]
    one_piece = map_users(pd.concat(parts, ignore_index=True), SYNC)
    seen = []
    chunked = map_frame(collect(parts), SYNC, on_chunk=seen.append)
    assert isinstance(chunked, ChunkedFrame) and len(seen) == 3
    pd.testing.assert_frame_equal(whole(chunked), one_piece)
    assert list(whole(chunked)[ROW]) == list(range(1, 10))
    rejected = whole(chunked).loc[lambda frame: frame[REJECTION].notna(), [UID, REJECTION]]
    assert set(rejected[UID].dropna()) >= {"a", "d"}


def test_the_reads_uid_hashes_spare_the_mapping_a_pass_and_move_with_the_chunks(tmp_path):
    raw = collect([_raw(["a", "b"]), _raw([" a ", None, "c"])], uid_hashes_of(SYNC))
    assert len(raw.hashes()) == 4  # the null uid has none
    assert duplicate_uids(raw, "user_uid") == {"a"}
    moved = raw.moved_to(tmp_path / "kept.chunks")
    assert len(moved.hashes()) == 4 and duplicate_uids(moved, "user_uid") == {"a"}
    assert collect([_raw(["a"]), _raw(["b"])]).hashes() is None


def test_on_disk_one_chunk_or_none_is_a_chunked_frame_of_files(tmp_path):
    one = collect([_chunk(0, 30)], on_disk=True)
    assert isinstance(one, ChunkedFrame) and len(one) == 30 and (one.directory / "000001.pkl").exists()
    pd.testing.assert_frame_equal(one.to_frame(), _chunk(0, 30))
    empty = ChunkWriter().finish(empty=_chunk(0, 0), on_disk=True)
    assert isinstance(empty, ChunkedFrame) and len(empty) == 0
    assert list(empty.to_frame().columns) == ["user_uid", "seen", "orders"]


def test_chunks_moved_again_by_a_retried_step_stay_where_they_went(tmp_path):
    frame = collect([_chunk(0, 10), _chunk(10, 20)])
    moved = frame.moved_to(tmp_path / "stored")
    again = frame.moved_to(tmp_path / "stored")  # the step tried again holds the staging path, now gone
    assert again.directory == moved.directory and again.to_frame().equals(moved.to_frame())
