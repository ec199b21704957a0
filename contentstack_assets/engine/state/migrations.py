"""The state store's schema versions: numbered migrations, recorded in `cs_schema_version`, applied in order
when a store is opened, inside one transaction that holds the store's schema lock: an old store is upgraded
in place, a new one is built the same way, and processes opening a new store at once take turns.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import sqlalchemy as sa

from contentstack_assets.engine.state.database import STATE_URL_ENV, StateSchemaError
from contentstack_assets.engine.state.tables import schema_version
from contentstack_assets.urls import mask_url


# Frozen: each one builds what its version added, from table definitions of its own (a snapshot), never from
# the tables of tables.py. To change a table, change it there AND add a migration that brings a store of the
# previous version to it (an ALTER TABLE, a new table, a data fix); never edit a migration that has shipped.
# tests/integration/test_state_schema.py checks that the migrations, run in order, end exactly at the tables of tables.py.
def _migration_1_users_syncs(connection: sa.Connection) -> None:
    """Version 1: the users syncs' state, the sync log, rejections, runs."""
    snapshot = sa.MetaData()
    sa.Table(
        "cs_users",
        snapshot,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("user_uid", sa.String(256), primary_key=True),
        sa.Column("fingerprint", sa.BigInteger, nullable=True),
        sa.Column("delivered", sa.Text, nullable=False),
        sa.Column("failed_runs", sa.Integer, nullable=False),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    sa.Table(
        "cs_sync_log",
        snapshot,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("user_uid", sa.String(256), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request", sa.String(32), nullable=False),
        sa.Column("keys", sa.Text, nullable=False),
        sa.Column("status", sa.Integer, nullable=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("error", sa.Text, nullable=True),
        sa.Index("ix_cs_sync_log_user", "sync", "user_uid"),
        sa.Index("ix_cs_sync_log_at", "sync", "at"),
    )
    sa.Table(
        "cs_rejections",
        snapshot,
        sa.Column("sync", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("row_number", sa.Integer, nullable=False),
        sa.Column("user_uid", sa.String(300), nullable=True),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Index("ix_cs_rejections_run", "sync", "run_id"),
    )
    sa.Table(
        "cs_runs",
        snapshot,
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scope", sa.String(64), nullable=False),
        sa.Column("dry_run", sa.Boolean, nullable=False),
        sa.Column("counts", sa.Text, nullable=False),
    )
    snapshot.create_all(connection)


def _migration_2_items(connection: sa.Connection) -> None:
    """Version 2: delivered-once items of events and merges syncs."""
    snapshot = sa.MetaData()
    sa.Table(
        "cs_items",
        snapshot,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("item_id", sa.String(600), primary_key=True),
        sa.Column("user_uid", sa.String(256), nullable=True),
        sa.Column("delivered", sa.Boolean, nullable=False),
        sa.Column("failed_runs", sa.Integer, nullable=False),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    snapshot.create_all(connection)


def _migration_3_resend(connection: sa.Connection) -> None:
    """Version 3: users to resend whole after a merge."""
    snapshot = sa.MetaData()
    sa.Table(
        "cs_resend",
        snapshot,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("user_uid", sa.String(256), primary_key=True),
        sa.Column("marks", sa.Integer, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
    )
    snapshot.create_all(connection)


def _migration_4_failing_users_index(connection: sa.Connection) -> None:
    """Version 4: a partial index of the users whose last delivery failed."""
    snapshot = sa.MetaData()
    table = sa.Table(
        "cs_users",
        snapshot,
        sa.Column("sync", sa.String(128)),
        sa.Column("failed_runs", sa.Integer),
    )
    where = sa.text("failed_runs > 0")
    sa.Index(
        "ix_cs_users_failing", table.c.sync, table.c.failed_runs, sqlite_where=where, postgresql_where=where
    ).create(connection)


def _migration_5_destinations_and_read_times(connection: sa.Connection) -> None:
    """Version 5: the state per destination (`cs_destinations`), the read time of what each user holds, the
    order of runs (`cs_runs.seq`; runs from before it count as older than any run after it)."""
    snapshot = sa.MetaData()
    sa.Table(
        "cs_destinations",
        snapshot,
        sa.Column("sync", sa.String(128), primary_key=True),
        sa.Column("destination", sa.String(1024), primary_key=True),
        sa.Column("state_key", sa.String(128), nullable=False),
        sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
    ).create(connection)
    connection.execute(sa.text("ALTER TABLE cs_users ADD COLUMN read_at BIGINT"))
    connection.execute(sa.text("ALTER TABLE cs_runs ADD COLUMN seq BIGINT"))


def _migration_6_rejected_source_keys(connection: sa.Connection) -> None:
    """Version 6: the source table's primary key of each rejected row (`cs_rejections.source_key`; null for the
    rows of earlier runs, of a `query:`, or of a table without a key)."""
    connection.execute(sa.text("ALTER TABLE cs_rejections ADD COLUMN source_key TEXT"))


def _migration_7_source_digests(connection: sa.Connection) -> None:
    """Version 7: per user, the source database's hash of the row last found to map to the user's
    fingerprint (change detection in the database, engine/digests.py)."""
    connection.execute(sa.text("ALTER TABLE cs_users ADD COLUMN source_digest BIGINT"))
    connection.execute(sa.text("ALTER TABLE cs_users ADD COLUMN digest_fingerprint BIGINT"))


MIGRATIONS: list[Callable[[sa.Connection], None]] = [
    _migration_1_users_syncs,
    _migration_2_items,
    _migration_3_resend,
    _migration_4_failing_users_index,
    _migration_5_destinations_and_read_times,
    _migration_6_rejected_source_keys,
    _migration_7_source_digests,
]
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(engine: sa.Engine, url: str) -> int:
    """Bring the store to SCHEMA_VERSION; returns the version found before.

    A store already at this version is only read. Otherwise the migrations run in one transaction that
    holds the schema lock, and the version is read again under it: a process that waited finds the work
    done by the one before it."""
    with engine.connect() as connection:
        found = _schema_version(connection)
    if found == SCHEMA_VERSION:
        return found
    with _schema_lock(engine) as connection:
        schema_version.create(connection, checkfirst=True)
        found = _schema_version(connection)
        _check_not_newer(url, found)
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version - 1](connection)
            connection.execute(schema_version.insert().values(version=version))
    return found


def _schema_version(connection: sa.Connection) -> int:
    if not sa.inspect(connection).has_table(schema_version.name):
        return 0
    return connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0


def _check_not_newer(url: str, found: int) -> None:
    if found > SCHEMA_VERSION:
        raise StateSchemaError(
            f"the sync state store {mask_url(url)} has schema version {found}, newer than the "
            f"{SCHEMA_VERSION} this contentstack_assets knows: a newer release wrote it. Upgrade "
            f"contentstack_assets where this runs (or point {STATE_URL_ENV} at another store); "
            "the store was left as it is."
        )


@contextmanager
def _schema_lock(engine: sa.Engine) -> Iterator[sa.Connection]:
    """A transaction that holds the store's schema lock from its first statement.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: `BEGIN IMMEDIATE`, which takes the database's
    write lock at once (waiting up to the busy timeout for a process that holds it); the driver's own
    lazy BEGIN would start a read transaction, in which two processes both find no tables and both
    create them (`table ... already exists`)."""
    dialect = engine.dialect.name
    with engine.connect() as connection:
        if dialect == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif dialect == "postgresql":
            connection.execute(sa.text("SELECT pg_advisory_xact_lock(7240117)"))
        try:
            yield connection
        except BaseException:
            connection.rollback()
            raise
        connection.commit()
