"""How the state store writes: each write one transaction, run again when the database aborts it for a
conflict with another run; an upsert per database (SQLite and PostgreSQL `ON CONFLICT`, elsewhere delete and
insert); and batches of many rows written without SQLAlchemy's per-row parameter processing.
"""

from __future__ import annotations

import datetime as dt
import functools
import json
import random
import time
from collections.abc import Callable
from typing import Any, TypeVar

import sqlalchemy as sa

T = TypeVar("T")


class StoreBase:
    """The store's engine and its ways of writing, which every group of queries of the store builds on."""

    url: str
    engine: sa.Engine

    def _write(self, write: Callable[[sa.Connection], T], attempts: int = 6) -> T:
        """Run `write` in a transaction of its own; run it again, from the start, when the database aborts
        the transaction for a reason that another attempt resolves.

        Two runs writing the same rows at once (overlapping partitions, a run next to a retry, shards of two
        runs) may see PostgreSQL abort one of them as a deadlock or a serialization failure, or reject an
        insert of a row the other one inserted first (where there is no upsert), and SQLite reject a write
        from a snapshot another connection has moved past. Each write method is one such transaction that
        computes nothing outside it, so the next attempt simply sees the other run's committed rows. Every
        write also takes its row locks in key order, which makes the deadlocks rare in the first place."""
        for attempt in range(attempts):
            try:
                with self.engine.begin() as connection:
                    return write(connection)
            except sa.exc.DBAPIError as error:
                if attempt == attempts - 1 or not _retryable(error):
                    raise
            time.sleep(0.02 * 2**attempt * random.uniform(0.5, 1.5))  # jittered: the two runs part ways
        raise AssertionError("unreachable")

    def _insert(self, table: sa.Table) -> Any:
        """An INSERT that can take ON CONFLICT (SQLite, PostgreSQL), or None on another database."""
        dialect = self.engine.dialect.name
        if dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert

            return insert(table)
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert

            return insert(table)
        return None

    def _upsert(
        self, connection: sa.Connection, table: sa.Table, rows: list[dict], keys: list[str], update: list[str]
    ) -> None:
        rows = sorted(rows, key=lambda row: tuple(row[k] for k in keys))  # locks taken in key order
        statement = self._insert(table)
        if statement is not None:
            statement = statement.on_conflict_do_update(
                index_elements=keys, set_={column: statement.excluded[column] for column in update}
            )
            for start in range(0, len(rows), 2000):
                connection.execute(statement, rows[start : start + 2000])
            return
        # other databases: delete and insert inside the caller's transaction
        for row in rows:
            connection.execute(table.delete().where(*(table.c[k] == row[k] for k in keys)))
        connection.execute(table.insert(), rows)


# -- many rows at once --------------------------------------------------------------------------------
# Outcomes are written as they are confirmed, thousands a second during a big sync. Through SQLAlchemy's
# executemany each row costs its parameter processing (~35 us on SQLite) and, on PostgreSQL, one pipelined
# statement in psycopg (~150 us): more CPU than the requests themselves. `_insert_many` writes a batch with
# none of that: PostgreSQL receives one array per column and unnests them in one INSERT ... SELECT; SQLite
# runs the driver's executemany of the statement compiled once.
_JSON_BATCH = 5000


@functools.lru_cache(maxsize=8)  # the rows of a batch share their time
def _json_value(value: object) -> str:
    """Times in the JSON of a batch, as ISO text the server reads back exactly."""
    if isinstance(value, dt.datetime):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} in a state row")


def _insert_many(
    connection: sa.Connection,
    table: sa.Table,
    rows: list[dict],
    upsert: Callable[[Any], Any] | None = None,
) -> bool:
    """Insert rows (all with the same keys) into `table`, through `upsert` (which adds the ON CONFLICT
    clause) when given. Returns False, writing nothing, on a database other than PostgreSQL or SQLite."""
    if not rows:
        return True
    names = tuple(rows[0])
    dialect = connection.dialect
    if dialect.name == "postgresql":
        statement = _postgres_insert(table, names, upsert)
        for start in range(0, len(rows), _JSON_BATCH):
            # one JSON text per batch, taken apart by the server's C parser into typed columns
            payload = json.dumps(
                rows[start : start + _JSON_BATCH], separators=(",", ":"), default=_json_value
            )
            connection.execute(statement, {"batch": payload})
        return True
    if dialect.name == "sqlite":
        sql, processors = _sqlite_insert(dialect, table, names, upsert)
        if processors:
            values = [[row[name] for row in rows] for name in names]
            for index, process in processors:
                values[index] = [process(value) for value in values[index]]
            parameters = list(zip(*values, strict=True))
        else:
            parameters = [tuple(row.values()) for row in rows]
        connection.exec_driver_sql(sql, parameters)
        return True
    return False


@functools.lru_cache(maxsize=32)
def _postgres_insert(table: sa.Table, names: tuple[str, ...], upsert: Callable[[Any], Any] | None) -> Any:
    """The (upserting) INSERT ... SELECT FROM json_to_recordset(:batch) of these columns, built once: building
    it cost ~1 ms of every write, which at a few rows per group commit was most of the write."""
    from sqlalchemy.dialects import postgresql

    batch = (
        sa.func.json_to_recordset(sa.cast(sa.bindparam("batch", type_=sa.Text), postgresql.JSON))
        .table_valued(*(sa.column(name, table.c[name].type) for name in names))
        .render_derived(name="batch", with_types=True)
    )
    statement = postgresql.insert(table).from_select(names, sa.select(*batch.c))
    return upsert(statement) if upsert else statement


@functools.lru_cache(maxsize=32)
def _sqlite_insert(
    dialect: sa.Dialect, table: sa.Table, names: tuple[str, ...], upsert: Callable[[Any], Any] | None
) -> tuple[str, list[tuple[int, Callable[[Any], Any]]]]:
    """The SQL of an (upserting) INSERT of these columns for SQLite's executemany, and the bind processors
    (dates, booleans) to apply to the columns that have one."""
    from sqlalchemy.dialects import sqlite

    statement = sqlite.insert(table).values({name: sa.bindparam(name) for name in names})
    compiled = (upsert(statement) if upsert else statement).compile(dialect=dialect)
    if tuple(compiled.positiontup) != names:  # pragma: no cover - a clause that added a parameter
        raise AssertionError(f"unexpected parameters {compiled.positiontup} for {names}")
    processors = [
        (index, processor)
        for index, name in enumerate(names)
        if (processor := table.c[name].type._cached_bind_processor(dialect)) is not None
    ]
    return compiled.string, processors


_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "23505"})  # deadlock, serialization failure, unique key
_SQLITE_BUSY_SNAPSHOT = 517  # a write from a read snapshot another connection has since moved past


def _retryable(error: sa.exc.DBAPIError) -> bool:
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    return getattr(original, "sqlite_errorcode", None) == _SQLITE_BUSY_SNAPSHOT
