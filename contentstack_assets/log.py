"""The sync log from the command line: what was sent to a user, when, and how it went.

    contentstack-assets log USER_UID [--sync users] [--limit 20] [--json] [--state-url URL]
    python -m contentstack_assets.log ...   (the same)

Reads the state store of CONTENTSTACK_STATE_URL (default: SQLite under DAGSTER_HOME or .contentstack/); how it
finds and reads the store (`open_state`, `reading_state`) is shared by `contentstack-assets rejected|failed`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import sqlalchemy as sa

from contentstack_assets.engine.state import StateSchemaError, StateStore, StateStoreError, default_state_url
from contentstack_assets.urls import mask_url, scrub

PROG = "python -m contentstack_assets.log"


def main(argv: list[str] | None = None, prog: str = PROG) -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("user_uid")
    parser.add_argument("--sync", help="only this sync")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--state-url", default=None, help="SQLAlchemy URL of the state store")
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)

    try:
        store, shown = open_state(args.state_url, hint="e.g. `make log UID=...` for the demo")
        with reading_state(shown, store.url):
            requests = store.log_for_user(args.user_uid, args.sync, args.limit)
            rejections = store.rejections_for_user(args.user_uid, args.sync, args.limit)
            states = [
                state
                for sync in sorted({row["sync"] for row in requests} | ({args.sync} if args.sync else set()))
                if (state := store.user_state(sync, args.user_uid))
            ]
    except UsageError as error:
        return error_line(prog, str(error))
    if args.json:
        for record in [
            *({"state": s} for s in states),
            *({"request": r} for r in requests),
            *({"rejection": r} for r in rejections),
        ]:
            print(json.dumps(record, default=str))
        return 0 if (requests or rejections or states) else 1

    print(f"user {args.user_uid!r} in {mask_url(store.url)}")
    for state in states:
        print(f"  sync {state['sync']}: last delivered {json.dumps(state['delivered'], sort_keys=True)}")
        if state["failed_runs"]:
            print(f"    failing for {state['failed_runs']} run(s): {state['last_error']}")
    if requests:
        print("  requests (newest first):")
        for row in requests:
            outcome = "ok" if row["error"] is None else f"FAILED {row['error']}"
            print(
                f"    {row['at']:%Y-%m-%d %H:%M:%S} {row['sync']} run {row['run_id'][:8]} {row['request']} "
                f"keys=[{row['keys']}] status={row['status']} attempts={row['attempts']} "
                f"{row['latency_ms']:.1f} ms {outcome}"
            )
    for row in rejections:
        print(
            f"  rejected {row['at']:%Y-%m-%d %H:%M:%S} {row['sync']} run {row['run_id'][:8]} row {row['row_number']}: {row['reason']}"
        )
    if not (requests or rejections or states):
        print("  nothing recorded for this user")
        return 1
    return 0


class UsageError(Exception):
    """What the user must fix (the state URL, a run or sync that is not there), said in one line."""


def open_state(state_url: str | None, hint: str = "") -> tuple[StateStore, str]:
    """The state store at `state_url` (default: CONTENTSTACK_STATE_URL, else the default store) and its URL
    as shown (secrets masked). A mistyped SQLite path is an error, not an empty store created there."""
    url = state_url or default_state_url()
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError:
        raise UsageError(
            "--state-url is not a SQLAlchemy URL (e.g. sqlite:///.dagster_home/contentstack_state.db)"
        ) from None
    shown = mask_url(parsed)
    if _missing_sqlite_file(parsed):
        raise UsageError(
            f"no sync state at {shown}: the file does not exist (run with the DAGSTER_HOME or "
            f"CONTENTSTACK_STATE_URL of the syncs{', ' + hint if hint else ''})"
        )
    with reading_state(shown, url):
        return StateStore(url), shown


@contextmanager
def reading_state(shown: str, url: str) -> Iterator[None]:
    """A store that cannot be read is one line naming it (masked), not a traceback."""
    try:
        yield
    except StateSchemaError as error:
        raise UsageError(str(error)) from None
    except StateStoreError as error:  # the store's own paragraph is for runs; here one line, as below
        raise UsageError(
            f"cannot read the sync state at {shown}: {_first_line(error.__context__ or error, url)}"
        ) from None
    except (sa.exc.SQLAlchemyError, ImportError) as error:
        raise UsageError(f"cannot read the sync state at {shown}: {_first_line(error, url)}") from None


def error_line(prog: str, message: str) -> int:
    """One line on stderr, no traceback: the user needs the problem, not the stack."""
    print(f"{prog}: {message}", file=sys.stderr)
    return 2


def _missing_sqlite_file(url: sa.URL) -> bool:
    # SQLite would create an empty store there and report nothing recorded, hiding the mistyped path
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return False
    return not Path(database).exists()


def _first_line(error: BaseException, url: str) -> str:
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return scrub(lines[0] if lines else type(original).__name__, url)


if __name__ == "__main__":
    sys.exit(main())
