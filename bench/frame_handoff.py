"""What handing frames from asset to asset through the frame IO manager costs, next to the work of the steps.

    python bench/frame_handoff.py [--rows 1000000] [--database sqlite|postgres]

The users sync is three assets: `source_users` (read) -> `mapped_attributes` (map) -> `personalize_users`
(plan and deliver). Each frame crosses a step boundary through the frame IO manager: stored to a file always,
then loaded from the file when the next step runs in another process (the multiprocess executor of
`dagster dev`), or taken from memory when it runs in the same one (`execute_in_process`, one worker). One
`multi_asset` yielding the three keys would skip both. This times, on the bench table (bench/datagen.py),
the read and the mapping the steps do, and the store and the load from file of both frames, in one process,
and appends the table to docs/benchmarks.md (`--no-append`: print only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import tempfile
import time
from pathlib import Path

import dagster as dg

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datagen  # noqa: E402
from run_all import ATTRIBUTES, append_to_doc, machine  # noqa: E402

from contentstack_assets.engine.mapping import (
    map_users,  # noqa: E402
    source_columns,  # noqa: E402
)
from contentstack_assets.engine.source import SourceReader  # noqa: E402
from contentstack_assets.io_manager import FrameIOManager  # noqa: E402
from contentstack_assets.spec import spec_from_data  # noqa: E402


def _timed(function):
    started = time.perf_counter()
    value = function()
    return value, time.perf_counter() - started


def _store_and_load(manager: FrameIOManager, key: list[str], frame) -> tuple[float, float, int]:
    output = dg.build_output_context(asset_key=dg.AssetKey(key))
    _, store_s = _timed(lambda: manager.handle_output(output, frame))
    path = manager._path(output)
    # what a step in another process does: the file, not this process's memory
    path.touch()  # a new modification time: the hand-off cache lets the file win
    loaded, load_s = _timed(lambda: manager.load_input(dg.build_input_context(asset_key=dg.AssetKey(key))))
    assert len(loaded) == len(frame)
    return store_s, load_s, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--database", default="sqlite", choices=["sqlite", "postgres"])
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    info = machine()
    (table_url, write_s) = _timed(lambda: datagen.write_table(args.database, args.rows))
    print(f"table ready in {write_s:.1f} s")
    spec = spec_from_data(
        {
            "syncs": [
                {
                    "name": "users",
                    "source": {"url": table_url, "table": "users"},
                    "destination": {"project_uid": "bench", "edge_url": "http://127.0.0.1:9"},
                    "match": {"column": "user_uid"},
                    "attributes": ATTRIBUTES,
                }
            ]
        },
        Path("<bench>"),
    )
    (sync,) = spec.syncs
    source, read_s = _timed(lambda: SourceReader(sync.source, source_columns(sync)).read(None))
    mapped, map_s = _timed(lambda: map_users(source, sync))
    with tempfile.TemporaryDirectory() as base:
        manager = FrameIOManager(base_dir=base)
        source_io = _store_and_load(manager, ["users", "source_users"], source)
        mapped_io = _store_and_load(manager, ["users", "mapped_attributes"], mapped)
    store_s = source_io[0] + mapped_io[0]
    load_s = source_io[1] + mapped_io[1]
    rows = [
        ("read (source_users' work)", read_s, ""),
        ("map (mapped_attributes' work)", map_s, ""),
        ("store source frame", source_io[0], f"{source_io[2] / 2**20:.0f} MiB"),
        ("load source frame from file", source_io[1], ""),
        ("store mapped frame", mapped_io[0], f"{mapped_io[2] / 2**20:.0f} MiB"),
        ("load mapped frame from file", mapped_io[1], ""),
    ]
    for label, seconds, size in rows:
        print(f"{label}: {seconds:.2f} s {size}")
    work = read_s + map_s
    table = [
        f"### Frame hand-off, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{shlex.join(['python', 'bench/frame_handoff.py', *sys.argv[1:]])}`",
        f"- machine: {info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}; load average at start "
        f"{info['load_average_at_start']}",
        f"- {args.rows:,} users on {args.database}, the six bench attributes",
        "",
        "| step | s | file |",
        "|---|---:|---:|",
        *(f"| {label} | {seconds:.2f} | {size} |" for label, seconds, size in rows),
        "",
        f"Storing both frames costs {store_s:.2f} s ({store_s / work:.0%} of the read and map), loading them "
        f"in other processes {load_s:.2f} s more ({(store_s + load_s) / work:.0%} together).",
    ]
    if not args.no_append:
        append_to_doc("\n".join(table) + "\n")
        print("appended to docs/benchmarks.md")


if __name__ == "__main__":
    main()
