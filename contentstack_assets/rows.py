"""Every rejected row or failed user of one run, from the state store, as CSV or JSON: the whole list behind
the asset metadata's 20-row samples.

    contentstack-assets rejected --sync NAME [--run RUN_ID] [--format csv|json] [--out FILE] [--state-url URL]
    contentstack-assets failed   --sync NAME [--run RUN_ID] [--format csv|json] [--out FILE] [--state-url URL]

Reads the state store of CONTENTSTACK_STATE_URL (default: SQLite under DAGSTER_HOME or .contentstack/), as
`contentstack-assets log` does. Without --run, the sync's latest recorded run; a dry run records nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from contentstack_assets.engine.state import StateStore
from contentstack_assets.log import UsageError, error_line, open_state, reading_state

COLUMNS = {
    "rejected": ["sync", "run_id", "source_key", "row_number", "user_uid", "reason", "at"],
    "failed": ["sync", "run_id", "user_uid", "request", "keys", "status", "attempts", "error", "items", "at"],
}
WHAT = {"rejected": "rejected rows", "failed": "failed users"}
DESCRIPTION = {
    "rejected": "Every row a run of a sync set aside, with its reason. source_key is the row's primary key in "
    "its source table (`id=7`; empty for a `query:` or a table without one, where the row is found by its "
    "user_uid); row_number is its place in the run's read of the source (1 = the first row read).",
    "failed": "Every request of a run that failed after its retries: the user, the status, the attempts and the "
    "API's error; for an events or merges sync, `items`: its event ids or merge pairs still undelivered.",
}


def main(command: str, argv: list[str] | None = None, prog: str | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=prog or f"contentstack-assets {command}", description=DESCRIPTION[command]
    )
    parser.add_argument("--sync", required=True, metavar="NAME", help="the sync's name in the spec")
    parser.add_argument(
        "--run",
        metavar="RUN_ID",
        help="the Dagster run id, or its first characters (default: the latest run)",
    )
    parser.add_argument("--format", choices=["csv", "json"], default="csv", help="csv (default) or json")
    parser.add_argument(
        "--out", type=Path, metavar="FILE", help="write to this file (default: standard output)"
    )
    parser.add_argument("--state-url", default=None, metavar="URL", help="SQLAlchemy URL of the state store")
    args = parser.parse_args(argv)
    try:
        store, shown = open_state(args.state_url)
        with reading_state(shown, store.url):
            run_id = _run_of(store, shown, args.sync, args.run)
            rows = store.run_rejections if command == "rejected" else store.run_failures
            with _output(args.out) as out:
                written = _write(rows(args.sync, run_id), COLUMNS[command], args.format, out)
    except UsageError as error:
        return error_line(parser.prog, str(error))
    except BrokenPipeError:  # `... | head`: the reader has what it wanted
        sys.stdout = None  # nothing more goes to the closed pipe, not even at exit
        return 0
    except OSError as error:
        return error_line(parser.prog, f"cannot write {args.out or 'the output'}: {error.strerror or error}")
    where = f" to {args.out}" if args.out else ""
    if args.out or not written:
        print(
            f"{written or 'no'} {WHAT[command]} of run {run_id} of sync {args.sync}{where}", file=sys.stderr
        )
    return 0


def _run_of(store: StateStore, shown: str, sync: str, run: str | None) -> str:
    """The run asked for (an id or its first characters), or the sync's latest recorded run."""
    found = store.run_ids(sync, run or "")
    if run is not None and run in found:
        return run
    if found and (run is None or len(found) == 1):
        return found[0]
    if found:
        raise UsageError(f"--run {run} names {len(found)} runs of sync {sync}: give more of the run id")
    if run is None:
        known = store.sync_names()
        there = f"syncs there: {', '.join(known)}" if known else "no runs recorded there"
        raise UsageError(f"no run of sync {sync} in the state at {shown} ({there})")
    raise UsageError(
        f"no run {run} of sync {sync} in the state at {shown} (a dry run records nothing; the latest run "
        "is listed when --run is left out)"
    )


@contextmanager
def _output(path: Path | None) -> Iterator[TextIO]:
    if path is None:
        yield sys.stdout
        return
    with path.open("w", newline="", encoding="utf-8") as file:
        yield file


def _write(rows: Iterable[dict], columns: list[str], format: str, out: TextIO) -> int:
    """Rows as CSV (a header, then one line each) or as a JSON array (one object a line); returns how many."""
    count = 0
    if format == "csv":
        writer = csv.DictWriter(out, columns, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({column: _csv_value(row.get(column)) for column in columns})
            count += 1
        return count
    out.write("[")
    for row in rows:
        out.write(",\n" if count else "\n")
        out.write(
            json.dumps({column: _json_value(row.get(column)) for column in columns}, ensure_ascii=False)
        )
        count += 1
    out.write("\n]\n" if count else "]\n")
    return count


def _csv_value(value: object) -> object:
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False) if value else ""
    return _json_value(value)


def _json_value(value: object) -> object:
    if isinstance(value, dt.datetime):  # the store writes UTC; SQLite gives it back without its zone
        return (value if value.tzinfo else value.replace(tzinfo=dt.UTC)).isoformat()
    return value
