"""The frame IO manager's on-disk format: values come back identical (type, text, None vs NaN)."""

import datetime as dt
import pickle

import numpy as np
import pandas as pd
import pytest

from contentstack_assets.engine.frames import pack_frame as _pack
from contentstack_assets.engine.frames import unpack_frame as _unpack


def _objects(*values: object) -> pd.Series:
    return pd.Series(np.array(values, dtype=object), dtype=object)


def _round_trip(frame: pd.DataFrame) -> pd.DataFrame:
    return _unpack(pickle.loads(pickle.dumps(_pack(frame), protocol=pickle.HIGHEST_PROTOCOL)))


def test_text_columns_are_packed_and_come_back_identical():
    frame = pd.DataFrame(
        {
            "uid": _objects("a", "b", "c", "d"),
            "text": _objects("x", None, "", "ü\x01\n"),
            "all_null": _objects(None, None, None, None),
            "one_empty": _objects("", None, None, None),
            "with_nul": _objects("a\x00b", "c", None, "d"),  # holds the separator: stored as it is
            "mixed": _objects(1, "1", 1.0, float("nan")),  # not all text: stored as it is
            "python_ints": _objects(1, -(2**63), 2**63 - 1, 0),
            "python_floats": _objects(1.5, float("nan"), -0.0, float("inf")),
            "huge_ints": _objects(1, 2**64, 3, 4),  # beyond int64: as it is
            "ints_and_bools": _objects(1, True, 0, False),  # as it is: True is not 1 on the wire
            "ints": pd.array([1, None, 3, 4], dtype="Int64"),
            "stamps": _objects(
                dt.datetime(2024, 1, 2, 3, 4, 5, 678901),
                None,
                dt.datetime(1, 1, 1),
                dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
            ),
            "days": _objects(dt.date(2024, 2, 29), dt.date(1, 1, 1), None, dt.date(9999, 12, 31)),
            "zoned": _objects(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), None, None, None),  # as it is
            "day_and_stamp": _objects(dt.date(2024, 1, 1), dt.datetime(2024, 1, 1), None, None),  # as it is
        }
    ).set_axis(pd.Index([10, 11, 12, 13]))
    frame.attrs["note"] = "kept"
    packed = _pack(frame)
    kinds = {name: kind for name, kind, _ in packed["columns"]}
    assert kinds == {"uid": "text", "text": "text", "all_null": "text", "one_empty": "text",
                     "with_nul": "as-is", "mixed": "as-is", "python_ints": "number", "python_floats": "number",
                     "huge_ints": "as-is", "ints_and_bools": "as-is", "ints": "as-is", "stamps": "time", "days": "time",
                     "zoned": "as-is", "day_and_stamp": "as-is"}  # fmt: skip
    back = _round_trip(frame)
    pd.testing.assert_frame_equal(back, frame)
    assert back.attrs == {"note": "kept"}
    for name in frame.columns:
        assert [repr(v) for v in back[name].to_numpy()] == [repr(v) for v in frame[name].to_numpy()], name
        assert [type(v) for v in back[name].to_numpy()] == [type(v) for v in frame[name].to_numpy()], name


@pytest.mark.parametrize("stored", [[1, 2], {"a": 1}, pd.DataFrame({"a": [1]}).iloc[:0]])
def test_anything_else_and_empty_frames_round_trip(stored):
    back = _round_trip(stored)
    if isinstance(stored, pd.DataFrame):
        pd.testing.assert_frame_equal(back, stored)
    else:
        assert back == stored


def test_storing_a_frame_removes_the_assets_frames_older_than_keep_days(tmp_path):
    import os
    import time

    import dagster as dg

    from contentstack_assets.io_manager import FrameIOManager

    manager = FrameIOManager(base_dir=str(tmp_path), keep_days=7)
    folder = tmp_path / "users" / "source_users"
    folder.mkdir(parents=True)
    old, recent = folder / "2024-01-01.pkl", folder / "2024-01-02...2024-01-09.pkl"
    for path, age_days in ((old, 8), (recent, 6)):
        path.write_bytes(b"x")
        moment = time.time() - age_days * 86400
        os.utime(path, (moment, moment))
    other_asset = tmp_path / "users" / "mapped_attributes" / "2024-01-01.pkl"
    other_asset.parent.mkdir(parents=True)
    other_asset.write_bytes(b"x")
    os.utime(other_asset, (0, 0))
    context = dg.build_output_context(asset_key=dg.AssetKey(["users", "source_users"]))
    manager.handle_output(context, pd.DataFrame({"a": [1]}))
    assert sorted(p.name for p in folder.iterdir()) == ["2024-01-02...2024-01-09.pkl", "all.pkl"]
    assert other_asset.exists()  # another asset's frames are its own stores' business


def _store_repeatedly(base_dir: str, writer: int, times: int, barrier, failures) -> None:
    import traceback

    import dagster as dg

    from contentstack_assets.io_manager import FrameIOManager

    manager = FrameIOManager(base_dir=base_dir)
    context = dg.build_output_context(asset_key=dg.AssetKey(["users", "source_users"]))
    frame = pd.DataFrame({"writer": [writer] * 2000, "text": [f"w{writer}"] * 2000})
    barrier.wait(timeout=120)
    for _ in range(times):
        try:
            manager.handle_output(context, frame)
        except Exception:  # noqa: BLE001 - reported to the test
            failures.put(traceback.format_exc(limit=2))
            return


def test_runs_storing_the_same_frame_at_once_do_not_collide(tmp_path):
    """Two runs of one sync (a backfill next to a schedule tick) store the same asset's frame at the same
    moment: with one shared temporary name, one run's rename found its file renamed away by the other (a CI
    run failed so). Each writer now has a temporary file of its own and the last rename wins."""
    import multiprocessing

    import dagster as dg

    from contentstack_assets.io_manager import FrameIOManager

    writers, times = 4, 60
    context = multiprocessing.get_context("spawn")
    barrier, failures = context.Barrier(writers), context.Queue()
    processes = [
        context.Process(target=_store_repeatedly, args=(str(tmp_path), writer, times, barrier, failures))
        for writer in range(writers)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=300)
    found = []
    while not failures.empty():
        found.append(failures.get())
    assert found == []
    assert all(process.exitcode == 0 for process in processes)
    folder = tmp_path / "users" / "source_users"
    assert [path.name for path in folder.iterdir()] == ["all.pkl"]  # no temporary file left behind
    stored = FrameIOManager(base_dir=str(tmp_path)).load_input(
        dg.build_input_context(asset_key=dg.AssetKey(["users", "source_users"]))
    )
    assert stored["writer"].nunique() == 1 and len(stored) == 2000  # one writer's whole frame
