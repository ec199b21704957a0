"""What one tick of the source-change sensor costs: the per-day digests (`SourceReader.day_digests`, one
GROUP BY of the partition column in the database) over the benchmark's users table.

    python bench/sensor_digests.py --rows 1000000 --databases sqlite,postgres

Writes the table with bench/datagen.py when it is missing (SQLite: cached under bench/data/; PostgreSQL:
rewritten), times the digests three times (the best counts: a tick runs on a warm database), and appends the
figures, with the machine and the command, to docs/benchmarks.md (`--no-append`: print only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import datagen  # noqa: E402
from run_all import append_to_doc, machine  # noqa: E402

from contentstack_assets.engine.source import SourceReader  # noqa: E402
from contentstack_assets.spec import SourceSpec  # noqa: E402


def time_digests(url: str, repeats: int = 3) -> tuple[float, int]:
    source = SourceSpec(url=url, table="users", updated_at="updated_at", start_date="2000-01-01")
    reader = SourceReader(source, ["user_uid", "updated_at"])
    best, days = float("inf"), 0
    for _ in range(repeats):
        started = time.perf_counter()
        days = len(reader.day_digests())
        best = min(best, time.perf_counter() - started)
    return best, days


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--databases", default="sqlite,postgres")
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    info = machine()
    table = [
        f"### Sensor tick (day digests), {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{shlex.join(['python', 'bench/sensor_digests.py', *sys.argv[1:]])}`",
        f"- machine: {info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}; load average at start "
        f"{info['load_average_at_start']}",
        "",
        "| database | rows | days | digests, best of 3 (s) |",
        "|---|---:|---:|---:|",
    ]
    for database in args.databases.split(","):
        if database == "sqlite" and Path(datagen.sqlite_url(args.rows).removeprefix("sqlite:///")).exists():
            url = datagen.sqlite_url(args.rows)
        else:
            url = datagen.write_table(database, args.rows)
        seconds, days = time_digests(url)
        print(f"{database}: {args.rows} rows, {days} days: {seconds:.3f} s")
        table.append(f"| {database} | {args.rows:,} | {days} | {seconds:.3f} |")
    if not args.no_append:
        append_to_doc("\n".join(table) + "\n")
        print("appended to docs/benchmarks.md")


if __name__ == "__main__":
    main()
