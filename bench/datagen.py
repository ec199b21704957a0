"""Benchmark users tables: N deterministic users in SQLite or PostgreSQL, and a 1% change of them.

The table has the demo's columns with native types (SQLite TEXT/REAL/INTEGER; PostgreSQL text, double
precision, bigint, boolean, timestamp, date), a primary key on `user_uid`, and no bad rows: the benchmark
measures the sync's throughput, not its rejections (the tests cover those).

    python bench/datagen.py --database sqlite --rows 100000
    python bench/datagen.py --database postgres --rows 1000000 --change 0.01
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sqlite3
import time
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

BENCH_DIR = Path(__file__).resolve().parent
DATA_DIR = BENCH_DIR / "data"
POSTGRES_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
POSTGRES_DATABASE = "cs_bench"
TABLE = "users"
PLANS = np.array(["free", "starter", "pro", "enterprise"], dtype=object)
COLUMNS = [
    "user_uid",
    "plan_name",
    "lifetime_value",
    "order_count",
    "is_vip",
    "created_at",
    "birth_date",
    "updated_at",
]
SEED = 20240601


def sqlite_url(rows: int) -> str:
    return f"sqlite:///{DATA_DIR / f'users_{rows}.db'}"


def postgres_url(database: str = POSTGRES_DATABASE) -> str:
    return sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=database).render_as_string(hide_password=False)


def source_url(database: str, rows: int) -> str:
    urls = {
        "sqlite": sqlite_url,
        "duckdb": lambda rows: duckdb_url(rows),
        "postgres": lambda rows: postgres_url(),
    }
    return urls[database](rows)


def uid(index: int) -> str:
    return f"usr_{index:08d}"


def users_frame(rows: int, seed: int = SEED) -> pd.DataFrame:
    """The users, built column-wise with numpy (a million rows in about a second)."""
    rng = np.random.default_rng(seed)
    index = np.arange(rows)
    created = np.datetime64("2021-01-01T00:00:00") + rng.integers(0, 3 * 365 * 86400, rows).astype(
        "timedelta64[s]"
    )
    updated = np.maximum(created, np.datetime64("2024-01-01T00:00:00")) + rng.integers(
        0, 86400 * 100, rows
    ).astype("timedelta64[s]")
    birth = np.datetime64("1950-01-01") + rng.integers(0, 50 * 365, rows).astype("timedelta64[D]")
    return pd.DataFrame(
        {
            "user_uid": np.char.add("usr_", np.char.zfill(index.astype(str), 8)).astype(object),
            "plan_name": PLANS[rng.integers(0, len(PLANS), rows)],
            "lifetime_value": np.round(rng.gamma(2.0, 150.0, rows), 2),
            "order_count": rng.integers(0, 200, rows),
            "is_vip": rng.random(rows) < 0.1,
            "created_at": pd.to_datetime(created),
            "birth_date": pd.to_datetime(birth).date,
            "updated_at": pd.to_datetime(updated),
        }
    )


def changed_indices(rows: int, share: float, seed: int = SEED + 1) -> np.ndarray:
    """Which users a `share` change touches: a seeded random sample, sorted."""
    count = max(1, round(rows * share))
    return np.sort(np.random.default_rng(seed).choice(rows, size=count, replace=False))


# -- SQLite ----------------------------------------------------------------------------------------
def write_sqlite(rows: int) -> str:
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"users_{rows}.db"
    path.unlink(missing_ok=True)
    frame = users_frame(rows)
    # SQLite stores timestamps and dates as ISO text (what Python's sqlite3 adapters and most apps write)
    frame["created_at"] = frame["created_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame["updated_at"] = frame["updated_at"].dt.strftime("%Y-%m-%d %H:%M:%S")
    frame["birth_date"] = frame["birth_date"].astype(str)
    frame["is_vip"] = frame["is_vip"].astype(int)
    with sqlite3.connect(path) as connection:
        connection.execute("PRAGMA journal_mode=OFF")
        connection.execute("PRAGMA synchronous=OFF")
        connection.execute(
            f"CREATE TABLE {TABLE} (user_uid TEXT PRIMARY KEY, plan_name TEXT, lifetime_value REAL, "
            "order_count INTEGER, is_vip INTEGER, created_at TEXT, birth_date TEXT, updated_at TEXT)"
        )
        connection.executemany(
            f"INSERT INTO {TABLE} VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            frame.itertuples(index=False, name=None),
        )
    return f"sqlite:///{path}"


def change_sqlite(rows: int, share: float, round_: int = 0) -> list[str]:
    uids = [uid(i) for i in changed_indices(rows, share, SEED + 1 + round_)]
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S")
    with sqlite3.connect(DATA_DIR / f"users_{rows}.db") as connection:
        connection.executemany(
            f"UPDATE {TABLE} SET order_count = order_count + 1, lifetime_value = lifetime_value + 10, "
            "updated_at = ? WHERE user_uid = ?",
            [(now, u) for u in uids],
        )
    return uids


# -- PostgreSQL ------------------------------------------------------------------------------------
def ensure_postgres_database() -> None:
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        exists = connection.execute(
            sa.text("SELECT 1 FROM pg_database WHERE datname = :name"), {"name": POSTGRES_DATABASE}
        ).first()
        if not exists:
            connection.execute(sa.text(f'CREATE DATABASE "{POSTGRES_DATABASE}"'))
    admin.dispose()


def _psycopg_connect():
    import psycopg

    url = sa.engine.make_url(postgres_url())
    return psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True
    )


def write_postgres(rows: int) -> str:
    ensure_postgres_database()
    frame = users_frame(rows)
    buffer = io.StringIO()
    frame.to_csv(buffer, index=False, header=False, date_format="%Y-%m-%d %H:%M:%S")
    with _psycopg_connect() as connection:
        connection.execute(f"DROP TABLE IF EXISTS {TABLE}")
        connection.execute(
            f"CREATE TABLE {TABLE} (user_uid text PRIMARY KEY, plan_name text, lifetime_value double precision, "
            "order_count bigint, is_vip boolean, created_at timestamp, birth_date date, updated_at timestamp)"
        )
        with connection.cursor().copy(f"COPY {TABLE} FROM STDIN WITH (FORMAT csv)") as copy:
            copy.write(buffer.getvalue())
        connection.execute(f"VACUUM ANALYZE {TABLE}")
    return postgres_url()


def change_postgres(rows: int, share: float, round_: int = 0) -> list[str]:
    uids = [uid(i) for i in changed_indices(rows, share, SEED + 1 + round_)]
    with _psycopg_connect() as connection:
        connection.execute(
            f"UPDATE {TABLE} SET order_count = order_count + 1, lifetime_value = lifetime_value + 10, "
            "updated_at = now() AT TIME ZONE 'utc' WHERE user_uid = ANY(%s)",
            [uids],
        )
        connection.execute(f"VACUUM ANALYZE {TABLE}")
    return uids


# -- DuckDB ----------------------------------------------------------------------------------------
def duckdb_url(rows: int) -> str:
    return f"duckdb:///{DATA_DIR / f'users_{rows}.duckdb'}"


def write_duckdb(rows: int) -> str:
    import duckdb

    DATA_DIR.mkdir(parents=True, exist_ok=True)
    path = DATA_DIR / f"users_{rows}.duckdb"
    path.unlink(missing_ok=True)
    frame = users_frame(rows)  # noqa: F841 (read by DuckDB's replacement scan)
    with duckdb.connect(str(path)) as connection:
        connection.execute(
            f"CREATE TABLE {TABLE} (user_uid VARCHAR PRIMARY KEY, plan_name VARCHAR, lifetime_value DOUBLE, "
            "order_count BIGINT, is_vip BOOLEAN, created_at TIMESTAMP, birth_date DATE, updated_at TIMESTAMP)"
        )
        connection.execute(f"INSERT INTO {TABLE} SELECT * FROM frame")
    return duckdb_url(rows)


def change_duckdb(rows: int, share: float, round_: int = 0) -> list[str]:
    import duckdb

    uids = [uid(i) for i in changed_indices(rows, share, SEED + 1 + round_)]
    with duckdb.connect(str(DATA_DIR / f"users_{rows}.duckdb")) as connection:
        connection.execute(
            f"UPDATE {TABLE} SET order_count = order_count + 1, lifetime_value = lifetime_value + 10, "
            "updated_at = now()::TIMESTAMP WHERE list_contains(?, user_uid)",
            [uids],
        )
    return uids


def write_table(database: str, rows: int) -> str:
    writers = {"sqlite": write_sqlite, "postgres": write_postgres, "duckdb": write_duckdb}
    return writers[database](rows)


def change_table(database: str, rows: int, share: float, round_: int = 0) -> list[str]:
    """Change `share` of the users (a different sample each round); returns their uids."""
    changers = {"sqlite": change_sqlite, "postgres": change_postgres, "duckdb": change_duckdb}
    return changers[database](rows, share, round_)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--change", type=float, help="instead of writing: change this share of the users")
    parser.add_argument(
        "--round", type=int, default=0, help="with --change: which sample of users (0, 1, ...)"
    )
    args = parser.parse_args()
    started = time.perf_counter()
    if args.change:
        changed = change_table(args.database, args.rows, args.change, args.round)
        print(f"changed {len(changed)} users in {time.perf_counter() - started:.1f}s")
    else:
        url = write_table(args.database, args.rows)
        print(f"wrote {args.rows} users to {url} in {time.perf_counter() - started:.1f}s")


if __name__ == "__main__":
    main()
