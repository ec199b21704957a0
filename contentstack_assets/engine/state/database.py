"""Opening the state store: where it is, its SQLAlchemy engine (SQLite set up for concurrent runs), the clock
its rows are stamped with, and the one-paragraph errors that name a store that cannot be used.
"""

from __future__ import annotations

import datetime as dt
import os
import sqlite3
import time
from pathlib import Path

import sqlalchemy as sa

from contentstack_assets.urls import mask_url

STATE_URL_ENV = "CONTENTSTACK_STATE_URL"


def utcnow() -> dt.datetime:
    """The store's clock. The other modules call it as `database.utcnow()`, so a test can move it here."""
    return dt.datetime.now(dt.UTC)


def default_state_url() -> str:
    configured = os.environ.get(STATE_URL_ENV)
    if configured:
        return configured
    home = os.environ.get("DAGSTER_HOME")
    directory = Path(home) if home else Path.cwd() / ".contentstack"
    directory.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{directory / 'contentstack_state.db'}"


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
