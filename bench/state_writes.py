"""What recording delivery outcomes costs the sync state store, per user, on SQLite and PostgreSQL.

    python bench/state_writes.py [--users 20000] [--postgres postgresql+psycopg://postgres@127.0.0.1/postgres]

Writes `--users` confirmed outcomes (six attributes each, as a first sync records them) through
`StateStore.record_user_outcomes` in batches of 500, 50 and 5 (the sizes group commits take under load and
when idle), into a fresh store of each kind, and prints microseconds per user (wall time, the database's own
work included).
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid

import sqlalchemy as sa

from contentstack_assets.engine.state import StateStore, UserOutcome


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
    args = parser.parse_args()
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
    try:
        for kind, (url, _) in stores.items():
            store = StateStore(url)
            figures = {batch: per_user_us(store, rows, batch) for batch in (500, 50, 5)}
            store.engine.dispose()
            print(kind, "us per user, by batch size:", {batch: round(us, 1) for batch, us in figures.items()})
    finally:
        if "postgres" in stores:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}"'))


if __name__ == "__main__":
    main()
