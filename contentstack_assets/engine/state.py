"""The sync state store: what was delivered to whom, what failed, what was rejected, and the sync log.

One SQLAlchemy database (SQLite by default, PostgreSQL in production) holds, per sync:
- `cs_users`: per user, the values last delivered (JSON), the fingerprint of the row they came from, and
  whether the last attempt failed (how many runs in a row);
- `cs_items`: per delivered-once item (an event id, a merge pair), whether it was delivered or failed;
- `cs_sync_log`: one row per request: user uid, keys sent, status, attempts, latency, error;
- `cs_rejections`: the rows each run set aside, with their reasons;
- `cs_runs`: one row per run with its counts (the empty-source guard reads the last one);
- `cs_resend`: per users sync, the users to resend whole because a merge overwrote their values in
  Personalize (engine/resend.py);
- `cs_destinations`: which state belongs to which destination. Every table above is keyed by a state key:
  the sync's name for the first destination it delivered to, `NAME@<digest>` for each other one, so a sync
  pointed at a new project starts afresh there and finds its old state again when pointed back.

The schema evolves through numbered migrations recorded in `cs_schema_version`. Each migration is frozen: it
holds its own DDL as of its version, never the tables below (which describe the newest schema), so a change
to a table is a new migration and an old store is upgraded step by step. Opening a store applies the missing
ones inside one transaction that holds the store's schema lock, so an old store is upgraded in place, a new
one is built the same way, and processes opening a new store at once take turns.
Secrets never enter: the log keeps keys sent, not values, and error texts come from the API's response body.
"""

from __future__ import annotations

import datetime as dt
import functools
import gc
import hashlib
import json
import os
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd
import sqlalchemy as sa

from contentstack_assets.urls import mask_url

try:  # the C transposition of row tuples to an object array, which pandas uses for its own frames
    from pandas._libs.lib import to_object_array_tuples
except ImportError:  # pragma: no cover - a pandas without it
    to_object_array_tuples = None

STATE_URL_ENV = "CONTENTSTACK_STATE_URL"

T = TypeVar("T")

metadata = sa.MetaData()

schema_version = sa.Table("cs_schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

users = sa.Table(
    "cs_users",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("user_uid", sa.String(256), primary_key=True),
    sa.Column("fingerprint", sa.BigInteger, nullable=True),
    sa.Column("delivered", sa.Text, nullable=False, default="{}"),
    sa.Column("failed_runs", sa.Integer, nullable=False, default=0),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # when the source read that gave the delivered values started (unix microseconds): an older read is stale
    sa.Column("read_at", sa.BigInteger, nullable=True),
    # the few users failing now, found without reading every user (stuck users, the retry count)
    sa.Index(
        "ix_cs_users_failing",
        "sync",
        "failed_runs",
        sqlite_where=sa.text("failed_runs > 0"),
        postgresql_where=sa.text("failed_runs > 0"),
    ),
)

destinations = sa.Table(
    "cs_destinations",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),  # the sync's name in the spec
    sa.Column("destination", sa.String(1024), primary_key=True),  # DestinationSpec.identity
    sa.Column("state_key", sa.String(128), nullable=False),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
)

items = sa.Table(
    "cs_items",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("item_id", sa.String(600), primary_key=True),
    sa.Column("user_uid", sa.String(256), nullable=True),
    sa.Column("delivered", sa.Boolean, nullable=False),
    sa.Column("failed_runs", sa.Integer, nullable=False, default=0),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

sync_log = sa.Table(
    "cs_sync_log",
    metadata,
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

rejections = sa.Table(
    "cs_rejections",
    metadata,
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("user_uid", sa.String(300), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Index("ix_cs_rejections_run", "sync", "run_id"),
)

runs = sa.Table(
    "cs_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("scope", sa.String(64), nullable=False),  # "all", or a partition range
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("counts", sa.Text, nullable=False, default="{}"),
    # the order runs started in (the store's own count): "the last run" and the log's age go by it, never by
    # a clock that may have jumped
    sa.Column("seq", sa.BigInteger, nullable=True),
)


resend = sa.Table(
    "cs_resend",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),  # a users sync
    sa.Column("user_uid", sa.String(256), primary_key=True),
    # how many times the user was marked: a push removes a mark only if nobody marked it again meanwhile
    sa.Column("marks", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),  # the last mark's, e.g. "identities: anon1 -> u1"
    sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
)


# -- migrations ----------------------------------------------------------------------------------------
# Frozen: each one builds what its version added, from table definitions of its own (a snapshot), never from
# the tables above. To change a table, change it above AND add a migration that brings a store of the
# previous version there (an ALTER TABLE, a new table, a data fix); never edit a migration that has shipped.
# tests/test_state_schema.py checks that the migrations, run in order, end exactly at the tables above.
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


MIGRATIONS: list[Callable[[sa.Connection], None]] = [
    _migration_1_users_syncs,
    _migration_2_items,
    _migration_3_resend,
    _migration_4_failing_users_index,
    _migration_5_destinations_and_read_times,
]
SCHEMA_VERSION = len(MIGRATIONS)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def default_state_url() -> str:
    configured = os.environ.get(STATE_URL_ENV)
    if configured:
        return configured
    home = os.environ.get("DAGSTER_HOME")
    directory = Path(home) if home else Path.cwd() / ".contentstack"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'contentstack_state.db'}"


@dataclass(frozen=True)
class UserOutcome:
    """What became of one user's request in a run."""

    user_uid: str
    keys: tuple[str, ...]
    ok: bool
    status: int | None
    attempts: int
    latency_ms: float
    error: str | None
    delivered_after: dict | None  # the user's full delivered values if ok
    fingerprint: int | None
    request: str = "attributes"
    read_at: int | None = None  # when the read that gave these values started (unix microseconds)


@dataclass(frozen=True)
class ItemOutcome:
    """What became of a delivered-once item (an event id, a merge pair)."""

    item_id: str
    user_uid: str
    ok: bool
    status: int | None
    error: str | None


class StateStoreError(RuntimeError):
    """The store cannot be used (damaged, read-only, unreachable): the message names it and what to do."""


class StateSchemaError(StateStoreError):
    """The store cannot be used by this code (its schema is newer): the message says what to do."""


# what a database says when the store itself is unusable (not a busy or conflicting moment), and what to do
_UNUSABLE = (
    ("file is not a database", "the file is not a SQLite database (damaged, or another file at that path)"),
    ("database disk image is malformed", "the SQLite file is damaged"),
    ("readonly database", "it is read-only here"),
    ("read-only", "it is read-only here"),
    ("unable to open database file", "the SQLite file cannot be opened (its folder missing or not writable)"),
    ("disk i/o error", "the disk reported an I/O error"),
    ("database or disk is full", "the disk is full"),
    ("permission denied", "the database user lacks the permission"),
    ("password authentication failed", "the database refused the credentials"),
    ("connection refused", "the database server refused the connection (is it running?)"),
)


def _unusable_store(url: str, error: BaseException) -> StateStoreError | None:
    text = str(error).lower()
    for needle, what in _UNUSABLE:
        if needle in text:
            return StateStoreError(
                f"the sync state store {mask_url(url)} cannot be used: {what}. Point "
                f"{STATE_URL_ENV} at a writable store (a new SQLite file is created and set up on first use), "
                "or repair this one (restore it from a backup, fix its permissions or free disk space); a "
                "store that is moved or replaced forgets what was delivered, and the next run sends every "
                "user whole."
            )
    return None


class StateStore:
    def __init__(self, url: str | None = None):
        self.url = url or default_state_url()
        self.engine = _make_engine(self.url)
        self.migrate()

    def __repr__(self) -> str:
        return f"StateStore({mask_url(self.url)})"

    # -- schema -------------------------------------------------------------------------------------
    def migrate(self) -> int:
        """Bring the store to SCHEMA_VERSION; returns the version found before.

        A store already at this version is only read. Otherwise the migrations run in one transaction that
        holds the schema lock, and the version is read again under it: a process that waited finds the work
        done by the one before it."""
        with self.engine.connect() as connection:
            found = self._schema_version(connection)
        if found == SCHEMA_VERSION:
            return found
        with self._schema_lock() as connection:
            schema_version.create(connection, checkfirst=True)
            found = self._schema_version(connection)
            self._check_not_newer(found)
            for version in range(found + 1, SCHEMA_VERSION + 1):
                MIGRATIONS[version - 1](connection)
                connection.execute(schema_version.insert().values(version=version))
        return found

    @staticmethod
    def _schema_version(connection: sa.Connection) -> int:
        if not sa.inspect(connection).has_table(schema_version.name):
            return 0
        return connection.execute(sa.select(sa.func.max(schema_version.c.version))).scalar() or 0

    def _check_not_newer(self, found: int) -> None:
        if found > SCHEMA_VERSION:
            raise StateSchemaError(
                f"the sync state store {mask_url(self.url)} has schema version {found}, newer than the "
                f"{SCHEMA_VERSION} this contentstack_assets knows: a newer release wrote it. Upgrade "
                f"contentstack_assets where this runs (or point {STATE_URL_ENV} at another store); "
                "the store was left as it is."
            )

    @contextmanager
    def _schema_lock(self) -> Iterator[sa.Connection]:
        """A transaction that holds the store's schema lock from its first statement.

        PostgreSQL: a transaction-scoped advisory lock. SQLite: `BEGIN IMMEDIATE`, which takes the database's
        write lock at once (waiting up to the busy timeout for a process that holds it); the driver's own
        lazy BEGIN would start a read transaction, in which two processes both find no tables and both
        create them (`table ... already exists`)."""
        dialect = self.engine.dialect.name
        with self.engine.connect() as connection:
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

    # -- which state ----------------------------------------------------------------------------------
    def state_key(self, sync: str, destination: str, renamed_from: str | None = None) -> str:
        """The key of the state of sync `sync` at `destination` (an identity of the destination project).

        The first destination a sync meets keeps the sync's name as its key (so a store written before
        destinations were told apart stays with the destination the sync had then); each other destination
        gets `NAME@<digest of the destination>`, registered here, so pointing a sync back finds its state.
        `renamed_from`: a sync with no state of its own takes over the state of that name."""

        lookup = sa.select(destinations.c.state_key).where(
            destinations.c.sync == sync, destinations.c.destination == destination
        )
        with self.engine.connect() as connection:
            found = connection.execute(lookup).scalar()
        if found is not None:
            return found

        def resolve(connection: sa.Connection) -> str:
            if renamed_from and not self._registered(connection, sync):
                self._rename(connection, renamed_from, sync)
            found = connection.execute(lookup).scalar()
            if found is not None:
                return found
            if self._registered(connection, sync):
                key = f"{sync}@{hashlib.blake2b(destination.encode(), digest_size=6).hexdigest()}"
            else:
                key = sync
            connection.execute(
                destinations.insert().values(
                    sync=sync, destination=destination, state_key=key, first_at=utcnow()
                )
            )
            return key

        try:
            return self._write(resolve)
        except sa.exc.IntegrityError:  # another process registered it first
            with self.engine.connect() as connection:
                return connection.execute(lookup).scalar_one()

    def key_of(self, sync: Any) -> str:
        """`state_key` of a sync of the spec (anything with `name`, `destination.identity`, `renamed_from`)."""
        return self.state_key(sync.name, sync.destination.identity, sync.renamed_from)

    @staticmethod
    def _registered(connection: sa.Connection, sync: str) -> bool:
        return (
            connection.execute(
                sa.select(destinations.c.sync).where(destinations.c.sync == sync).limit(1)
            ).first()
            is not None
        )

    @staticmethod
    def _rename(connection: sa.Connection, old: str, new: str) -> None:
        """Every row of sync `old` (each destination's key) becomes sync `new`'s."""
        keys = connection.execute(
            sa.select(destinations.c.state_key).where(destinations.c.sync == old)
        ).scalars().all() or [old]
        for key in keys:
            renamed = new + key[len(old) :] if key.startswith(old) else key
            for table in (users, items, sync_log, rejections, runs, resend):
                connection.execute(table.update().where(table.c.sync == key).values(sync=renamed))
            connection.execute(
                destinations.update()
                .where(destinations.c.state_key == key)
                .values(sync=new, state_key=renamed)
            )

    # -- users --------------------------------------------------------------------------------------
    def load_read_times(self, sync: str, user_uids: Iterable[str]) -> dict[str, int]:
        """When the read that gave each of these users' delivered values started (users that have one)."""
        uids = list(user_uids)
        found: dict[str, int] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(uids), 1000):
                statement = sa.select(users.c.user_uid, users.c.read_at).where(
                    users.c.sync == sync,
                    users.c.user_uid.in_(uids[start : start + 1000]),
                    users.c.read_at.is_not(None),
                )
                found.update((uid, at) for uid, at in connection.execute(statement))
        return found

    def load_fingerprints(self, sync: str, user_uids: pd.Series | None = None) -> pd.DataFrame:
        """user_uid -> fingerprint, failed_runs for the sync (only the given users when few).

        Read as the driver's plain tuples, in chunks, each transposed to numpy columns in C, with the cyclic
        garbage collector paused: a million fresh tuples would otherwise set off its full passes over all of
        them, which cost more than the read itself. (A CSV COPY through psycopg is no faster: it hands over
        one Python block per row.)"""
        base = sa.select(users.c.user_uid, users.c.fingerprint, users.c.failed_runs).where(
            users.c.sync == sync
        )
        with self.engine.connect() as connection:
            if user_uids is not None and len(user_uids) <= 20_000:
                uids = list(user_uids)
                statements = [
                    base.where(users.c.user_uid.in_(uids[start : start + 1000]))
                    for start in range(0, len(uids), 1000)
                ]
            else:
                statements = [base]
            with _gc_paused():
                chunks = [
                    chunk for statement in statements for chunk in _fingerprint_chunks(connection, statement)
                ]
        return _fingerprint_frame(chunks)

    def load_delivered(self, sync: str, user_uids: Iterable[str]) -> dict[str, dict]:
        """The values last delivered to each of these users."""
        uids = list(user_uids)
        found: dict[str, dict] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(uids), 1000):
                statement = sa.select(users.c.user_uid, users.c.delivered).where(
                    users.c.sync == sync, users.c.user_uid.in_(uids[start : start + 1000])
                )
                for uid, delivered in connection.execute(statement):
                    found[uid] = json.loads(delivered)
        return found

    def record_user_outcomes(self, sync: str, run_id: str, outcomes: Sequence[UserOutcome]) -> None:
        """Write confirmed outcomes and their log rows in one transaction (retried as a whole if the database
        aborts it for a deadlock or a conflicting concurrent write, see `_write`).

        A delivery sets the user's values and fingerprint and clears the failure count; a failure keeps the
        last delivered values and fingerprint and counts one more failed run (a new user's row starts at 1).
        """
        if not outcomes:
            return
        now = utcnow()
        ordered = sorted(outcomes, key=lambda o: o.user_uid)  # every run locks rows in uid order
        rows = [_user_row(sync, o, now) for o in ordered]
        log_rows = [_log_row(sync, run_id, o, now) for o in ordered]

        def write(connection: sa.Connection) -> None:
            self._write_user_rows(connection, sync, rows)
            _insert_many(connection, sync_log, log_rows) or connection.execute(sync_log.insert(), log_rows)

        self._write(write)

    def _write_user_rows(self, connection: sa.Connection, sync: str, rows: list[dict]) -> None:
        """Deliveries and failures (rows of `_user_row`, in uid order), on SQLite and PostgreSQL as one
        upsert in that order: a concurrent run's insert of the same user can neither slip in between a read
        and a write (`INSERT ... ON CONFLICT DO UPDATE` is atomic) nor lock its rows in another order."""
        if not _insert_many(connection, users, rows, _users_upsert):
            self._write_user_rows_portably(connection, sync, rows)

    def _write_user_rows_portably(self, connection: sa.Connection, sync: str, rows: list[dict]) -> None:
        delivered = [row for row in rows if row["failed_runs"] == 0]
        if delivered:
            self._upsert(
                connection,
                users,
                delivered,
                ["sync", "user_uid"],
                [
                    "fingerprint",
                    "delivered",
                    "failed_runs",
                    "last_status",
                    "last_error",
                    "updated_at",
                    "read_at",
                ],
            )
        failed = [row for row in rows if row["failed_runs"] != 0]
        if failed:
            self._record_failures(connection, sync, failed)

    @staticmethod
    def _record_failures(connection: sa.Connection, sync: str, failed: list[dict]) -> None:
        """Any database without an upsert: count one more failed run on the rows there, read under a lock,
        and insert the others (a concurrent insert of one of them fails this transaction on its unique key,
        and `_write` runs it again)."""
        existing: set[str] = set()
        uids = [row["user_uid"] for row in failed]
        for start in range(0, len(uids), 1000):
            existing.update(
                uid
                for (uid,) in connection.execute(
                    sa.select(users.c.user_uid)
                    .where(users.c.sync == sync, users.c.user_uid.in_(uids[start : start + 1000]))
                    .order_by(users.c.user_uid)
                    .with_for_update()
                )
            )
        new_rows = [row for row in failed if row["user_uid"] not in existing]
        if new_rows:
            connection.execute(users.insert(), new_rows)
        updates = [
            {
                "uid": row["user_uid"],
                "status": row["last_status"],
                "error": row["last_error"],
                "at": row["updated_at"],
            }
            for row in failed
            if row["user_uid"] in existing
        ]
        if updates:
            connection.execute(
                users.update()
                .where(users.c.sync == sync, users.c.user_uid == sa.bindparam("uid"))
                .values(
                    failed_runs=users.c.failed_runs + 1,
                    last_status=sa.bindparam("status"),
                    last_error=sa.bindparam("error"),
                    updated_at=sa.bindparam("at"),
                ),
                updates,
            )

    def forget_in_flight(self, sync: str, requests: Sequence[tuple[str, Sequence[str]]]) -> None:
        """Write ahead, before these requests go out: each user's state stops claiming the values of the keys
        about to be sent, its fingerprint is cleared and its last status too (in flight, unconfirmed).

        A request can be applied by the API and still never be confirmed here (the answer was lost, or the
        process died). Without this, the state would keep claiming the old values, and a source that later
        goes back to them would count as unchanged while the API holds the newer ones for good. With it, such
        a user is planned as changed and the keys are sent again; a confirmed success writes the full values
        back. Users with no row yet (new users) are untouched: they are new until confirmed anyway."""
        by_keys: dict[tuple[str, ...], list[str]] = {}
        for uid, keys in requests:
            if keys:
                by_keys.setdefault(tuple(sorted(keys)), []).append(uid)
        if not by_keys:
            return
        for uids in by_keys.values():
            uids.sort()
        all_uids = sorted({uid for uids in by_keys.values() for uid in uids})
        dialect = self.engine.dialect.name

        def write(connection: sa.Connection) -> None:
            if dialect == "postgresql":
                # one UPDATE per key set, each locking its rows in the order of its plan: lock them all first,
                # in uid order, as every other write does (SQLite locks the whole database instead)
                for start in range(0, len(all_uids), 1000):
                    connection.execute(
                        sa.select(users.c.user_uid)
                        .where(users.c.sync == sync, users.c.user_uid.in_(all_uids[start : start + 1000]))
                        .order_by(users.c.user_uid)
                        .with_for_update()
                    ).all()
            for keys, uids in sorted(by_keys.items()):
                for start in range(0, len(uids), 1000):
                    where = (users.c.sync == sync) & users.c.user_uid.in_(uids[start : start + 1000])
                    if dialect == "postgresql" or (dialect == "sqlite" and not any('"' in k for k in keys)):
                        # one statement per key set: atomic next to another run's writes to the same rows
                        connection.execute(
                            users.update()
                            .where(where)
                            .values(fingerprint=None, last_status=None, delivered=_without(keys, dialect))
                        )
                    else:
                        self._forget_portably(connection, where, keys)

        self._write(write)

    @staticmethod
    def _forget_portably(connection: sa.Connection, where: sa.ColumnElement, keys: tuple[str, ...]) -> None:
        """Any other database (and SQLite for a key with a double quote, which its JSON paths cannot name):
        read the rows under a lock, write them back without the keys."""
        rows = connection.execute(
            sa.select(users.c.user_uid, users.c.delivered)
            .where(where)
            .order_by(users.c.user_uid)
            .with_for_update()
        ).all()
        if rows:
            connection.execute(
                users.update()
                .where(where, users.c.user_uid == sa.bindparam("uid"))
                .values(fingerprint=None, last_status=None, delivered=sa.bindparam("kept")),
                [
                    {
                        "uid": uid,
                        "kept": json.dumps(
                            {k: v for k, v in json.loads(delivered).items() if k not in keys},
                            separators=(",", ":"),
                        ),
                    }
                    for uid, delivered in rows
                ],
            )

    def refresh_fingerprints(self, sync: str, fingerprints: dict[str, int]) -> None:
        """Users with nothing (left) to send: remember the row so it is not re-examined; any failure is moot."""
        if not fingerprints:
            return
        rows = [{"uid": uid, "fp": fingerprints[uid]} for uid in sorted(fingerprints)]
        statement = (
            users.update()
            .where(users.c.sync == sync, users.c.user_uid == sa.bindparam("uid"))
            .values(fingerprint=sa.bindparam("fp"), failed_runs=0, last_error=None)
        )
        self._write(lambda connection: connection.execute(statement, rows))

    def unconfirmed_users(self, sync: str, limit: int | None = None) -> list[str]:
        """The users whose last delivery is not confirmed (it failed, or was cut after the write-ahead: no
        fingerprint), least recently updated first."""
        unconfirmed = (users.c.failed_runs > 0) | users.c.fingerprint.is_(None)
        statement = (
            sa.select(users.c.user_uid)
            .where(users.c.sync == sync, unconfirmed)
            .order_by(users.c.updated_at, users.c.user_uid)
        )
        if limit is not None:
            statement = statement.limit(limit)
        with self.engine.connect() as connection:
            return list(connection.execute(statement).scalars())

    def drop_unconfirmed(self, sync: str, user_uids: Iterable[str]) -> None:
        """Users the source no longer holds: those whose last delivery is not confirmed leave the state (they
        are no longer retried nor stuck; one that comes back is new)."""
        uids = sorted(set(user_uids))
        unconfirmed = (users.c.failed_runs > 0) | users.c.fingerprint.is_(None)

        def write(connection: sa.Connection) -> None:
            for start in range(0, len(uids), 1000):
                connection.execute(
                    users.delete().where(
                        users.c.sync == sync, users.c.user_uid.in_(uids[start : start + 1000]), unconfirmed
                    )
                )

        if uids:
            self._write(write)

    def set_aside_failures(self, sync: str, user_uids: Iterable[str]) -> None:
        """Failing users whose row is now rejected: no longer counted as failing (nor stuck); their state
        still claims nothing unconfirmed, so a valid row later is diffed and sent."""
        uids = sorted({uid for uid in user_uids if isinstance(uid, str)})

        def write(connection: sa.Connection) -> None:
            for start in range(0, len(uids), 1000):
                connection.execute(
                    users.update()
                    .where(
                        users.c.sync == sync,
                        users.c.failed_runs > 0,
                        users.c.user_uid.in_(uids[start : start + 1000]),
                    )
                    .values(failed_runs=0)
                )

        if uids:
            self._write(write)

    def user_state(self, sync: str, user_uid: str) -> dict | None:
        with self.engine.connect() as connection:
            row = connection.execute(
                sa.select(users).where(users.c.sync == sync, users.c.user_uid == user_uid)
            ).first()
        if row is None:
            return None
        record = dict(row._mapping)
        record["delivered"] = json.loads(record["delivered"])
        return record

    def count_users(self, sync: str) -> int:
        with self.engine.connect() as connection:
            return connection.execute(sa.select(sa.func.count()).where(users.c.sync == sync)).scalar_one()

    def stuck_users(self, sync: str, after_runs: int, limit: int = 20) -> tuple[int, list[dict]]:
        # `failed_runs > 0` as the partial index says it, so that the database reads the index alone
        condition = sa.and_(users.c.sync == sync, users.c.failed_runs > 0, users.c.failed_runs >= after_runs)
        with self.engine.connect() as connection:
            total = connection.execute(sa.select(sa.func.count()).where(condition)).scalar_one()
            sample = connection.execute(
                sa.select(users.c.user_uid, users.c.failed_runs, users.c.last_status, users.c.last_error)
                .where(condition)
                .order_by(users.c.user_uid)
                .limit(limit)
            ).all()
        return total, [dict(row._mapping) for row in sample]

    # -- users to resend whole ------------------------------------------------------------------
    def mark_for_resend(self, sync: str, reasons: dict[str, str]) -> None:
        """These users of users sync `sync` (uid -> why) are to be resent whole (engine/resend.py)."""
        if reasons:
            self._write(lambda connection: self._mark_for_resend(connection, sync, reasons, utcnow()))

    def _mark_for_resend(
        self, connection: sa.Connection, sync: str, reasons: dict[str, str], now: dt.datetime
    ) -> None:
        """In the caller's transaction: the users' state forgets what was delivered to them (the next push
        plans them as changed with nothing delivered, so it sends every non-null attribute), and each
        counts one more mark in `cs_resend` (so a push whose window does not hold them reads them again)."""
        uids = sorted(reasons)
        self._forget_delivered(connection, sync, uids)
        rows = [
            {"sync": sync, "user_uid": uid, "marks": 1, "reason": reasons[uid], "marked_at": now}
            for uid in uids
        ]
        statement = self._insert(resend)
        if statement is not None:
            statement = statement.on_conflict_do_update(
                index_elements=[resend.c.sync, resend.c.user_uid],
                set_={
                    "marks": resend.c.marks + 1,
                    "reason": statement.excluded.reason,
                    "marked_at": statement.excluded.marked_at,
                },
            )
            for start in range(0, len(rows), 2000):
                connection.execute(statement, rows[start : start + 2000])
            return
        existing: set[str] = set()
        for start in range(0, len(uids), 1000):
            existing.update(
                uid
                for (uid,) in connection.execute(
                    sa.select(resend.c.user_uid)
                    .where(resend.c.sync == sync, resend.c.user_uid.in_(uids[start : start + 1000]))
                    .order_by(resend.c.user_uid)
                    .with_for_update()
                )
            )
        new_rows = [row for row in rows if row["user_uid"] not in existing]
        if new_rows:
            connection.execute(resend.insert(), new_rows)
        again = [
            {"uid": r["user_uid"], "why": r["reason"], "at": now} for r in rows if r["user_uid"] in existing
        ]
        if again:
            connection.execute(
                resend.update()
                .where(resend.c.sync == sync, resend.c.user_uid == sa.bindparam("uid"))
                .values(marks=resend.c.marks + 1, reason=sa.bindparam("why"), marked_at=sa.bindparam("at")),
                again,
            )

    def forget_delivered(self, sync: str, user_uids: Iterable[str]) -> None:
        """The state of these users stops claiming any delivered value: the next plan sends them whole."""
        uids = sorted(set(user_uids))
        if uids:
            self._write(lambda connection: self._forget_delivered(connection, sync, uids))

    def _forget_delivered(self, connection: sa.Connection, sync: str, uids: list[str]) -> None:
        for start in range(0, len(uids), 1000):
            where = (users.c.sync == sync) & users.c.user_uid.in_(uids[start : start + 1000])
            if self.engine.dialect.name == "postgresql":  # lock in uid order, as every other write does
                connection.execute(
                    sa.select(users.c.user_uid).where(where).order_by(users.c.user_uid).with_for_update()
                ).all()
            connection.execute(
                users.update().where(where).values(fingerprint=None, delivered="{}", read_at=None)
            )

    def pending_resends(self, sync: str, limit: int | None = None) -> dict[str, int]:
        """The users of users sync `sync` to resend whole, oldest mark first: uid -> marks."""
        statement = (
            sa.select(resend.c.user_uid, resend.c.marks)
            .where(resend.c.sync == sync)
            .order_by(resend.c.marked_at, resend.c.user_uid)
        )
        if limit is not None:
            statement = statement.limit(limit)
        with self.engine.connect() as connection:
            return dict(connection.execute(statement).all())

    def settle_resends(self, sync: str, marks: dict[str, int], regardless: Iterable[str] = ()) -> None:
        """After a push: remove the marks it took care of.

        `marks` are the ones read before the push (uid -> count); a mark counted again meanwhile (a merge of
        another run) stays for the next push. A mark goes when the user's state now holds a delivery
        (values and fingerprint, no failure since): the push sent it whole, or found nothing to send. The
        users in `regardless` (gone from the source, or with nothing to send) lose their marks anyway."""
        if not marks:
            return
        forced = set(regardless) & set(marks)
        state = users.alias("state")
        delivered = sa.exists().where(
            state.c.sync == sync,
            state.c.user_uid == resend.c.user_uid,
            state.c.fingerprint.is_not(None),
            state.c.failed_runs == 0,
        )
        same_mark = (
            (resend.c.sync == sync)
            & (resend.c.user_uid == sa.bindparam("uid"))
            & (resend.c.marks == sa.bindparam("count"))
        )
        settled = [{"uid": uid, "count": marks[uid]} for uid in sorted(marks) if uid not in forced]
        dropped = [{"uid": uid, "count": marks[uid]} for uid in sorted(forced)]

        def write(connection: sa.Connection) -> None:
            if settled:
                connection.execute(resend.delete().where(same_mark, delivered), settled)
            if dropped:
                connection.execute(resend.delete().where(same_mark), dropped)

        self._write(write)

    # -- delivered-once items -------------------------------------------------------------------
    def delivered_items(self, sync: str, item_ids: Iterable[str]) -> set[str]:
        ids = list(item_ids)
        found: set[str] = set()
        with self.engine.connect() as connection:
            for start in range(0, len(ids), 1000):
                found.update(
                    row[0]
                    for row in connection.execute(
                        sa.select(items.c.item_id).where(
                            items.c.sync == sync,
                            items.c.delivered.is_(True),
                            items.c.item_id.in_(ids[start : start + 1000]),
                        )
                    )
                )
        return found

    def record_item_requests(
        self,
        sync: str,
        run_id: str,
        requests: Sequence[tuple[Sequence[ItemOutcome], UserOutcome]],
        resend_in: Sequence[str] = (),
    ) -> None:
        """Write delivered-once items and the log row of the request that carried them, in one transaction
        (retried as a whole if the database aborts it, see `_write`).

        A failure counts one more failed run; a failure never undoes an item already delivered (an
        overlapping run that read it earlier may report late). `resend_in` (a merges sync: the users syncs
        that depend on it): the user of each delivered item is marked to be resent whole in each of them,
        in the same transaction (`mark_for_resend`), so a confirmed merge is never without its mark.
        """
        if not requests:
            return
        now = utcnow()
        outcomes = [item for items_of_request, _ in requests for item in items_of_request]
        delivered = {o.item_id: o for o in outcomes if o.ok}
        failed = {o.item_id: o for o in outcomes if not o.ok and o.item_id not in delivered}
        rows = sorted(  # every run locks rows in item order
            [_item_row(sync, o, now) for o in delivered.values()]
            + [_item_row(sync, o, now) for o in failed.values()],
            key=lambda row: row["item_id"],
        )
        log_rows = [_log_row(sync, run_id, log, now) for _, log in requests]
        marked = {o.user_uid: f"{sync}: {o.item_id.replace(chr(9), ' -> ')}" for o in delivered.values()}

        def write(connection: sa.Connection) -> None:
            self._write_item_rows(connection, sync, rows)
            _insert_many(connection, sync_log, log_rows) or connection.execute(sync_log.insert(), log_rows)
            for users_sync in sorted(set(resend_in)) if marked else ():
                self._mark_for_resend(connection, users_sync, marked, now)

        self._write(write)

    def _write_item_rows(self, connection: sa.Connection, sync: str, rows: list[dict]) -> None:
        """Delivered and failed items (rows of `_item_row`, in item order), on SQLite and PostgreSQL as one
        upsert: a delivery sets the row; a failure inserts it, or counts one more failed run on a row not
        delivered, and leaves a delivered one alone."""
        if not _insert_many(connection, items, rows, _items_upsert):
            self._write_item_rows_portably(connection, sync, rows)

    def _write_item_rows_portably(self, connection: sa.Connection, sync: str, rows: list[dict]) -> None:
        delivered = [row for row in rows if row["delivered"]]
        if delivered:
            self._upsert(
                connection,
                items,
                delivered,
                ["sync", "item_id"],
                ["user_uid", "delivered", "failed_runs", "last_status", "last_error", "updated_at"],
            )
        failed = [row for row in rows if not row["delivered"]]
        if not failed:
            return
        known: dict[str, bool] = {}
        ids = [row["item_id"] for row in failed]
        for start in range(0, len(ids), 1000):
            statement = (
                sa.select(items.c.item_id, items.c.delivered)
                .where(items.c.sync == sync, items.c.item_id.in_(ids[start : start + 1000]))
                .order_by(items.c.item_id)
                .with_for_update()
            )
            known.update(dict(connection.execute(statement).all()))
        new_rows = [row for row in failed if row["item_id"] not in known]
        if new_rows:
            connection.execute(items.insert(), new_rows)
        retried = [
            {
                "id": row["item_id"],
                "status": row["last_status"],
                "error": row["last_error"],
                "at": row["updated_at"],
            }
            for row in failed
            if known.get(row["item_id"]) is False
        ]
        if retried:
            connection.execute(
                items.update()
                .where(
                    items.c.sync == sync,
                    items.c.item_id == sa.bindparam("id"),
                    items.c.delivered.is_(False),
                )
                .values(
                    failed_runs=items.c.failed_runs + 1,
                    last_status=sa.bindparam("status"),
                    last_error=sa.bindparam("error"),
                    updated_at=sa.bindparam("at"),
                ),
                retried,
            )

    def item_failed_runs(self, sync: str, item_ids: Iterable[str]) -> dict[str, int]:
        """For these items not delivered: the number of runs in a row whose attempt failed."""
        ids = sorted(set(item_ids))
        found: dict[str, int] = {}
        with self.engine.connect() as connection:
            for start in range(0, len(ids), 1000):
                found.update(
                    connection.execute(
                        sa.select(items.c.item_id, items.c.failed_runs).where(
                            items.c.sync == sync,
                            items.c.delivered.is_(False),
                            items.c.item_id.in_(ids[start : start + 1000]),
                        )
                    ).all()
                )
        return found

    def undelivered_items(self, sync: str, limit: int | None = None) -> list[dict]:
        """Items whose last attempt failed, oldest first."""
        statement = (
            sa.select(items)
            .where(items.c.sync == sync, items.c.delivered.is_(False))
            .order_by(items.c.updated_at, items.c.item_id)
        )
        if limit is not None:
            statement = statement.limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(statement)]

    def forget_failed_items(self, sync: str, item_ids: Iterable[str]) -> int:
        """Drop these items from the retry set when not delivered (their source rows are gone): they stop
        taking a re-read slot; a delivered one stays. Returns how many were dropped."""
        ids = sorted(set(item_ids))

        def write(connection: sa.Connection) -> int:
            dropped = 0
            for start in range(0, len(ids), 1000):
                dropped += connection.execute(
                    items.delete().where(
                        items.c.sync == sync,
                        items.c.delivered.is_(False),
                        items.c.item_id.in_(ids[start : start + 1000]),
                    )
                ).rowcount
            return dropped

        return self._write(write) if ids else 0

    def count_items(self, sync: str) -> dict[str, int]:
        with self.engine.connect() as connection:
            counts = dict(
                connection.execute(
                    sa.select(items.c.delivered, sa.func.count())
                    .where(items.c.sync == sync)
                    .group_by(items.c.delivered)
                ).all()
            )
        return {"delivered": int(counts.get(True, 0)), "undelivered": int(counts.get(False, 0))}

    # -- runs, rejections, log --------------------------------------------------------------------
    def start_run(self, sync: str, run_id: str, scope: str, dry_run: bool) -> None:
        """Record a run as started: it takes the next number of the store's run order."""

        def write(connection: sa.Connection) -> None:
            seq = connection.execute(sa.select(sa.func.coalesce(sa.func.max(runs.c.seq), 0) + 1)).scalar_one()
            row = {
                "run_id": run_id,
                "sync": sync,
                "started_at": utcnow(),
                "scope": scope,
                "dry_run": dry_run,
                "counts": "{}",
                "seq": seq,
            }
            self._upsert(
                connection, runs, [row], ["run_id", "sync"], ["started_at", "scope", "dry_run", "seq"]
            )

        self._write(write)

    def finish_run(self, sync: str, run_id: str, counts: dict) -> None:
        statement = (
            runs.update()
            .where(runs.c.run_id == run_id, runs.c.sync == sync)
            .values(finished_at=utcnow(), counts=json.dumps(counts))
        )
        self._write(lambda connection: connection.execute(statement))
        self.refresh_statistics()

    def refresh_statistics(self) -> list[str]:
        """PostgreSQL: ANALYZE the state tables that changed much since their statistics were taken.

        A first sync writes a million rows into tables the planner last saw empty, and autovacuum may not
        have caught up by the next run: the planner then reads `sync = ... AND user_uid IN (...)` through
        the index on `sync` alone and filters a million rows per lookup (0.25 s per 1,000 users instead of
        milliseconds). One catalog query decides; the ANALYZE samples, so it costs a fraction of a second
        even for millions of rows. Returns the tables analyzed."""
        if self.engine.dialect.name != "postgresql":
            return []
        names = [table.name for table in (users, items, sync_log)]
        with self.engine.connect() as connection:
            stale = [
                name
                for (name,) in connection.execute(
                    sa.text(
                        "SELECT relname FROM pg_stat_user_tables WHERE schemaname = current_schema() "
                        "AND relname = ANY(:names) AND n_mod_since_analyze > 1000 "
                        "AND n_mod_since_analyze > 0.1 * n_live_tup"
                    ),
                    {"names": names},
                )
            ]
        if stale:
            with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
                for name in sorted(stale):
                    connection.execute(sa.text(f'ANALYZE "{name}"'))  # a name of ours, not from the spec
        return stale

    def last_finished_run(
        self, sync: str, scope: str | None = "all", having: str | None = None
    ) -> dict | None:
        """The last finished real (not dry) run of this scope (None: any), with its counts; with `having`, the
        last whose counts hold that key."""
        statement = (
            sa.select(runs)
            .where(runs.c.sync == sync, runs.c.finished_at.is_not(None), runs.c.dry_run.is_(False))
            .order_by(sa.func.coalesce(runs.c.seq, 0).desc(), runs.c.finished_at.desc())
        )
        if scope is not None:
            statement = statement.where(runs.c.scope == scope)
        with self.engine.connect() as connection:
            for row in connection.execute(statement.limit(200 if having else 1)):
                record = dict(row._mapping)
                record["counts"] = json.loads(record["counts"])
                if having is None or having in record["counts"]:
                    return record
        return None

    def record_rejections(self, sync: str, run_id: str, rejected: pd.DataFrame) -> None:
        """rejected: columns row_number, user_uid, reason."""
        if rejected.empty:
            return
        now = utcnow()
        rows = [
            {
                "sync": sync,
                "run_id": run_id,
                "row_number": int(r.row_number),
                "user_uid": r.user_uid,
                "reason": r.reason,
                "at": now,
            }
            for r in rejected.itertuples(index=False)
        ]

        def write(connection: sa.Connection) -> None:
            connection.execute(
                rejections.delete().where(rejections.c.sync == sync, rejections.c.run_id == run_id)
            )
            for start in range(0, len(rows), 5000):
                connection.execute(rejections.insert(), rows[start : start + 5000])

        self._write(write)

    def prune(self, sync: str, retention_days: int) -> int:
        """Drop log rows and rejections older than the retention; returns log rows removed.

        Called by a run after `start_run`. The age is counted from the earlier of now and the start of the run
        before it (in run order): a clock that jumped ahead in this run cannot make the whole log look old."""

        def write(connection: sa.Connection) -> int:
            latest = (
                connection.execute(
                    sa.select(runs.c.started_at)
                    .where(runs.c.sync == sync)
                    .order_by(sa.func.coalesce(runs.c.seq, 0).desc(), runs.c.started_at.desc())
                    .limit(2)
                )
                .scalars()
                .all()
            )
            now = utcnow()
            if len(latest) == 2:
                before = latest[1] if latest[1].tzinfo else latest[1].replace(tzinfo=dt.UTC)
                now = min(now, before)
            cutoff = now - dt.timedelta(days=retention_days)
            removed = connection.execute(
                sync_log.delete().where(sync_log.c.sync == sync, sync_log.c.at < cutoff)
            ).rowcount
            connection.execute(rejections.delete().where(rejections.c.sync == sync, rejections.c.at < cutoff))
            return removed or 0

        return self._write(write)

    def log_for_user(self, user_uid: str, sync: str | None = None, limit: int = 50) -> list[dict]:
        statement = sa.select(sync_log).where(sync_log.c.user_uid == user_uid)
        if sync:
            statement = statement.where(_of_sync(sync_log, sync))
        statement = statement.order_by(sync_log.c.id.desc()).limit(limit)
        with self.engine.connect() as connection:
            return [dict(row._mapping) for row in connection.execute(statement)]

    def rejections_for_user(self, user_uid: str, sync: str | None = None, limit: int = 20) -> list[dict]:
        statement = sa.select(rejections).where(rejections.c.user_uid == user_uid)
        if sync:
            statement = statement.where(_of_sync(rejections, sync))
        with self.engine.connect() as connection:
            return [
                dict(row._mapping)
                for row in connection.execute(statement.order_by(rejections.c.at.desc()).limit(limit))
            ]

    def run_log(self, sync: str, run_id: str) -> pd.DataFrame:
        with self.engine.connect() as connection:
            rows = connection.execute(
                sa.select(sync_log).where(sync_log.c.sync == sync, sync_log.c.run_id == run_id)
            ).all()
        return pd.DataFrame(rows, columns=[c.name for c in sync_log.columns])

    # -- helpers -------------------------------------------------------------------------------
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


def _users_upsert(statement: Any) -> Any:
    """cs_users: a delivery (failed_runs 0) sets values and fingerprint and clears the failure count; a
    failure keeps them and counts one more failed run."""
    new = statement.excluded
    ok = new.failed_runs == sa.literal_column("0")
    return statement.on_conflict_do_update(
        index_elements=[users.c.sync, users.c.user_uid],
        set_={
            "fingerprint": sa.case((ok, new.fingerprint), else_=users.c.fingerprint),
            "delivered": sa.case((ok, new.delivered), else_=users.c.delivered),
            "failed_runs": sa.case((ok, new.failed_runs), else_=users.c.failed_runs + sa.literal_column("1")),
            "last_status": new.last_status,
            "last_error": new.last_error,
            "updated_at": new.updated_at,
            "read_at": sa.case((ok, new.read_at), else_=users.c.read_at),
        },
    )


def _items_upsert(statement: Any) -> Any:
    """cs_items: a delivery sets the row; a failure counts one more failed run on a row not delivered."""
    new = statement.excluded
    return statement.on_conflict_do_update(
        index_elements=[items.c.sync, items.c.item_id],
        set_={
            "user_uid": sa.case((new.delivered, new.user_uid), else_=items.c.user_uid),
            "delivered": new.delivered,
            "failed_runs": sa.case(
                (new.delivered, new.failed_runs), else_=items.c.failed_runs + sa.literal_column("1")
            ),
            "last_status": new.last_status,
            "last_error": new.last_error,
            "updated_at": new.updated_at,
        },
        where=sa.or_(new.delivered, sa.not_(items.c.delivered)),
    )


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


_FETCH_CHUNK = 100_000


@contextmanager
def _gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while a large result is read: the rows are tuples of strings and
    integers, which hold no cycles, but creating a million of them triggers its passes over all of them."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _fingerprint_chunks(
    connection: sa.Connection, statement: sa.Select
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """(user_uid, fingerprint, fingerprint is NULL, failed_runs) column arrays of a statement's rows, a chunk
    at a time, from the driver's plain tuples: for columns that need no result processing (text and integers)
    this skips building a SQLAlchemy Row per row. Fingerprints go from Python ints to int64 directly (a NULL
    as 0 under the mask), never through a float, so 64-bit hashes stay exact."""
    # not streamed: a streaming result prefetches rows into its own buffer, which the cursor no longer holds
    result = connection.execution_options(stream_results=False).execute(statement)
    try:
        cursor = result.cursor
        while rows := cursor.fetchmany(_FETCH_CHUNK):
            table = _object_table(rows)
            fingerprints = table[:, 1]
            null = pd.isna(fingerprints)
            if null.any():
                fingerprints[null] = 0
            yield (
                table[:, 0],  # a view: the concatenation copies it, and lets the table go
                fingerprints.astype(np.int64),
                np.asarray(null, dtype=bool),
                table[:, 2].astype(np.int64),
            )
    finally:
        result.close()


def _object_table(rows: list[tuple]) -> np.ndarray:
    """Row tuples as a 2-D object array, transposed in C by pandas where it can."""
    if to_object_array_tuples is not None:
        return to_object_array_tuples(rows)
    table = np.empty((len(rows), len(rows[0])), dtype=object)
    table[:] = rows
    return table


def _fingerprint_frame(
    chunks: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]],
) -> pd.DataFrame:
    def column(index: int, dtype: type) -> np.ndarray:
        parts = [chunk[index] for chunk in chunks]
        return np.concatenate(parts).astype(dtype, copy=False) if parts else np.empty(0, dtype=dtype)

    # built column by column: a frame of rows would infer float64 for fingerprints next to a NULL one and
    # round 64-bit hashes, which then never match
    return pd.DataFrame(
        {
            "fingerprint": pd.arrays.IntegerArray(column(1, np.int64), column(2, bool)),
            "failed_runs": column(3, np.int64),
        },
        index=pd.Index(column(0, object), name="user_uid", dtype=object),
        copy=False,  # the columns are fresh arrays of their own
    )


def _without(keys: tuple[str, ...], dialect: str) -> sa.ColumnElement:
    """`cs_users.delivered` (a JSON object as text) without these keys, in the database's own JSON functions;
    the keys travel as bind parameters."""
    if dialect == "sqlite":
        paths = [sa.literal("$." + json.dumps(key)) for key in keys]  # $."key": quoted, any character
        return sa.func.json_remove(users.c.delivered, *paths)
    from sqlalchemy.dialects import postgresql

    as_jsonb = sa.cast(users.c.delivered, postgresql.JSONB)
    removed = as_jsonb.op("-")(sa.literal(list(keys), type_=postgresql.ARRAY(sa.Text)))
    return sa.cast(removed, sa.Text)


_RETRYABLE_SQLSTATES = frozenset({"40P01", "40001", "23505"})  # deadlock, serialization failure, unique key
_SQLITE_BUSY_SNAPSHOT = 517  # a write from a read snapshot another connection has since moved past


def _retryable(error: sa.exc.DBAPIError) -> bool:
    original = error.orig
    sqlstate = getattr(original, "sqlstate", None) or getattr(original, "pgcode", None)
    if sqlstate in _RETRYABLE_SQLSTATES:
        return True
    return getattr(original, "sqlite_errorcode", None) == _SQLITE_BUSY_SNAPSHOT


def _user_row(sync: str, outcome: UserOutcome, now: dt.datetime) -> dict:
    """A user's row after this outcome, as inserted: a delivery's full values, or a failure counted once
    (which, on a row already there, keeps its values and fingerprint and adds one failed run)."""
    if outcome.ok:
        return {
            "sync": sync,
            "user_uid": outcome.user_uid,
            "fingerprint": outcome.fingerprint,
            "delivered": json.dumps(outcome.delivered_after, separators=(",", ":")),
            "failed_runs": 0,
            "last_status": outcome.status,
            "last_error": None,
            "updated_at": now,
            "read_at": outcome.read_at,
        }
    return {
        "sync": sync,
        "user_uid": outcome.user_uid,
        "fingerprint": None,
        "delivered": "{}",
        "failed_runs": 1,
        "last_status": outcome.status,
        "last_error": outcome.error,
        "updated_at": now,
        "read_at": None,
    }


def _item_row(sync: str, outcome: ItemOutcome, now: dt.datetime) -> dict:
    return {
        "sync": sync,
        "item_id": outcome.item_id,
        "user_uid": outcome.user_uid,
        "delivered": outcome.ok,
        "failed_runs": 0 if outcome.ok else 1,
        "last_status": outcome.status,
        "last_error": None if outcome.ok else outcome.error,
        "updated_at": now,
    }


def _log_row(sync: str, run_id: str, outcome: UserOutcome, now: dt.datetime) -> dict:
    return {
        "sync": sync,
        "run_id": run_id,
        "user_uid": outcome.user_uid,
        "at": now,
        "request": outcome.request,
        "keys": ",".join(outcome.keys),
        "status": outcome.status,
        "attempts": outcome.attempts,
        "latency_ms": round(outcome.latency_ms, 3),
        "error": outcome.error,
    }


def _switch_to_wal(cursor, wait_s: float = 30.0) -> None:  # noqa: ANN001 - a sqlite3 cursor
    """`PRAGMA journal_mode=WAL`, waiting out other processes that switch the same new file at the same moment.

    SQLite does not call the busy handler for this pragma when another connection holds the lock it needs
    (waiting there could deadlock), so `database is locked` comes back at once; we wait and try again.
    """
    deadline = time.monotonic() + wait_s
    pause = 0.005
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _of_sync(table: sa.Table, sync: str) -> sa.ColumnElement[bool]:
    """The rows of a sync at any destination (state keys `NAME` and `NAME@<digest>`)."""
    return (table.c.sync == sync) | table.c.sync.startswith(f"{sync}@", autoescape=True)


def _make_engine(url: str) -> sa.Engine:
    engine = sa.create_engine(url, pool_pre_ping=True)

    @sa.event.listens_for(engine, "handle_error")
    def _name_an_unusable_store(context: sa.engine.ExceptionContext) -> None:
        # raised in place of the driver's error: one paragraph naming the store, never a traceback
        unusable = _unusable_store(url, context.original_exception)
        if unusable is not None:
            raise unusable

    if engine.dialect.name == "sqlite":

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection, _record):  # noqa: ANN001
            # WAL lets a reader (the UI, the log CLI) and a writer (a run) work at once; NORMAL is still
            # crash-safe in WAL mode; the busy timeout lets overlapping runs wait for each other's commits
            # (the timeout first: switching a new file to WAL takes a lock another process may hold)
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA busy_timeout=30000")
            _switch_to_wal(cursor)
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.close()

    return engine
