"""What recording delivery outcomes costs the sync state store, per user, on SQLite and PostgreSQL.

    python bench/state_writes.py [--users 20000] [--postgres postgresql+psycopg://postgres@127.0.0.1/postgres]

Writes `--users` confirmed outcomes (six attributes each, as a first sync records them) through
`StateStore.record_user_outcomes` in batches of 500, 50 and 5 (the sizes group commits take under load and
when idle), into a fresh store of each kind, prints microseconds per user (wall time, the database's own
work included) and appends them, with the machine and the command, to docs/benchmarks.md (`--no-append`:
print only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import append_to_doc, machine  # noqa: E402

from contentstack_assets.engine.state import StateStore, UserOutcome  # noqa: E402

BATCHES = (500, 50, 5)


def outcomes(count: int) -> list[UserOutcome]:
    return [
        UserOutcome(
            user_uid=f"u{index:08d}",
            keys=("plan", "ltv", "orders", "vip", "signup_at", "birthday"),
            ok=True,
            status=200,
            attempts=1,
            latency_ms=21.5,
            error=None,
            delivered_after={
                "plan": "pro",
                "ltv": index * 1.5,
                "orders": index,
                "vip": True,
                "signup_at": "2022-03-04T05:06:07Z",
                "birthday": "1980-02-29",
            },
            fingerprint=index * 7919,
        )
        for index in range(count)
    ]


def per_user_us(store: StateStore, rows: list[UserOutcome], batch: int) -> float:
    started = time.perf_counter()
    for start in range(0, len(rows), batch):
        store.record_user_outcomes("users", f"batch-{batch}", rows[start : start + batch])
    return (time.perf_counter() - started) / len(rows) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--postgres", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    info = machine()
    rows = outcomes(args.users)
    stores = {"sqlite": (f"sqlite:///{tempfile.mkdtemp()}/state.db", None)}
    name = f"cs_bench_state_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.postgres, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        stores["postgres"] = (
            sa.engine.make_url(args.postgres).set(database=name).render_as_string(False),
            name,
        )
    except sa.exc.OperationalError as error:
        print(f"postgres skipped: {str(error).splitlines()[0]}")
    table = [
        f"### State writes, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{shlex.join(['python', 'bench/state_writes.py', *sys.argv[1:]])}`",
        f"- machine: {info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}; load average at start "
        f"{info['load_average_at_start']}",
        "",
        "| state store | " + " | ".join(f"us per user, batches of {batch}" for batch in BATCHES) + " |",
        "|---|" + "---:|" * len(BATCHES),
    ]
    try:
        for kind, (url, _) in stores.items():
            store = StateStore(url)
            figures = {batch: per_user_us(store, rows, batch) for batch in BATCHES}
            store.engine.dispose()
            print(kind, "us per user, by batch size:", {batch: round(us, 1) for batch, us in figures.items()})
            table.append(f"| {kind} | " + " | ".join(f"{figures[batch]:.1f}" for batch in BATCHES) + " |")
    finally:
        if "postgres" in stores:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))
    if not args.no_append:
        append_to_doc("\n".join(table) + "\n")
        print("appended to docs/benchmarks.md")


if __name__ == "__main__":
    main()
