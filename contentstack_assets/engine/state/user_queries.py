"""The users syncs' state (`cs_users`): per user, what was delivered and the fingerprint of its row, read
before a push to plan it; confirmed outcomes written after it; the write-ahead before requests go out; and
the users that failed or were never confirmed.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from contentstack_assets.engine.state import database
from contentstack_assets.engine.state.fingerprint_read import (
    FingerprintIndex,
    _fingerprint_chunks,
    _fingerprint_frame,
    _gc_paused,
    gathered,
    plain_rows,
)
from contentstack_assets.engine.state.outcomes import UserOutcome, _log_row, _user_row
from contentstack_assets.engine.state.tables import sync_log, users
from contentstack_assets.engine.state.writes import StoreBase, _insert_many

# uids per lookup of a chunk's users (under SQLite's 32,766 bound variables, PostgreSQL's 65,535)
LOOKUP_BATCH = 5000


class UserQueries(StoreBase):
    """Per user of a users sync: the values last delivered, the row's fingerprint, the failures."""

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

    def load_fingerprints(
        self, sync: str, user_uids: pd.Series | None = None, *, by_uid: bool = False
    ) -> pd.DataFrame:
        """user_uid -> fingerprint, failed_runs for the sync (only the given users when few, or always with
        `by_uid`: a chunk of a longer read looks up its own users, never the whole state).

        Read as the driver's plain tuples, in chunks, each transposed to numpy columns in C, with the cyclic
        garbage collector paused: a million fresh tuples would otherwise set off its full passes over all of
        them, which cost more than the read itself. (A CSV COPY through psycopg is no faster: it hands over
        one Python block per row.)"""
        base = sa.select(users.c.user_uid, users.c.fingerprint, users.c.failed_runs).where(
            users.c.sync == sync
        )
        with self.engine.connect() as connection:
            if user_uids is not None and (by_uid or len(user_uids) <= 20_000):
                uids = list(user_uids)
                statements = [
                    base.where(users.c.user_uid.in_(uids[start : start + LOOKUP_BATCH]))
                    for start in range(0, len(uids), LOOKUP_BATCH)
                ]
            else:
                statements = [base]
            with _gc_paused():
                chunks = [
                    chunk for statement in statements for chunk in _fingerprint_chunks(connection, statement)
                ]
        return _fingerprint_frame(chunks)

    def load_fingerprint_index(self, sync: str, owns=None) -> FingerprintIndex:
        """The sync's fingerprints, 16 bytes a user (`FingerprintIndex`): what a chunked push of a state too
        big to read whole looks its chunks' users up in; `owns(uids)`: a shard's users only. Read through a
        server-side cursor, a chunk at a time."""
        statement = sa.select(users.c.user_uid, users.c.fingerprint, users.c.failed_runs).where(
            users.c.sync == sync
        )
        with self.engine.connect() as connection, _gc_paused():
            return FingerprintIndex(_fingerprint_chunks(connection, statement, stream=True), uid_hashes, owns)

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
        now = database.utcnow()
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
                    "source_digest",
                    "digest_fingerprint",
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

    def load_source_digests(self, sync: str) -> pd.Series:
        """user_uid -> source digest of the users a run may leave unread when their source row still hashes
        the same (engine/digests.py): a confirmed delivery (a fingerprint, no failure) whose fingerprint is
        the one the digest's row maps to. Any other user (failing, in flight, forgotten by a merge, its row
        seen under another digest) is read whole. Runs read `load_source_digest_set` (the digests alone);
        this names each user, to inspect."""
        statement = sa.select(users.c.user_uid, users.c.source_digest).where(*_digest_usable(sync))
        with self.engine.connect() as connection:
            rows = connection.execute(statement).all()
        return pd.Series(
            [digest for _, digest in rows],
            index=pd.Index([uid for uid, _ in rows], dtype=object),
            dtype=np.int64,
        )

    def load_source_digest_set(self, sync: str) -> np.ndarray:
        """The digests of `load_source_digests`, sorted, 8 bytes a user: a digest hashes its row's uid with the
        row's values, so a row hashing to one of them is its user's row, unmoved (engine/digests.py)."""
        statement = sa.select(users.c.source_digest).where(*_digest_usable(sync))
        with self.engine.connect() as connection, _gc_paused():
            # streamed (a server-side cursor on PostgreSQL): the driver holds a batch, not every row
            result = connection.execution_options(stream_results=True).execute(statement)
            try:
                batches = (
                    np.fromiter(itertools.chain.from_iterable(rows), dtype=np.int64, count=len(rows))
                    for rows in plain_rows(result, 50_000)
                )
                digests = gathered(batches, np.int64)
            finally:
                result.close()
        digests.sort()  # in place
        return digests

    def load_digest_owners(
        self, sync: str, *, user_uids: Iterable[str] = (), digests: Iterable[int] = ()
    ) -> list[tuple[str, int]]:
        """(user_uid, source digest) of the users with a digest that are among `user_uids` or hold one of
        `digests`, usable or not (a run may have failed one since `load_source_digest_set`): whose unmoved row
        another row of the source may give again (engine/digests.py finds the uids the source holds twice by
        them, not by a hash of every row)."""
        lookups = [
            (users.c.user_uid, sorted(set(user_uids))),
            (users.c.source_digest, sorted({int(digest) for digest in digests})),
        ]
        found: list[tuple[str, int]] = []
        with self.engine.connect() as connection:
            for column, values in lookups:
                for start in range(0, len(values), LOOKUP_BATCH):
                    statement = sa.select(users.c.user_uid, users.c.source_digest).where(
                        users.c.sync == sync,
                        users.c.source_digest.is_not(None),
                        column.in_(values[start : start + LOOKUP_BATCH]),
                    )
                    found += [(uid, digest) for uid, digest in connection.execute(statement)]
        return found

    def has_source_digests(self, sync: str) -> bool:
        """Whether `load_source_digest_set` finds any user (a run then compares the source's digests)."""
        statement = sa.select(users.c.user_uid).where(*_digest_usable(sync)).limit(1)
        with self.engine.connect() as connection:
            return connection.execute(statement).first() is not None

    def record_source_digests(self, sync: str, digests: Sequence[tuple[str, int, int]]) -> None:
        """(user_uid, source digest, fingerprint its row maps to) of users whose row was read whole and found
        to send nothing: a fact about the row, true whatever the order of runs; it lets a later run skip the
        user only while the user's confirmed fingerprint is that one (`load_source_digests`)."""
        rows = sorted(digests)
        if not rows:
            return
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects import postgresql

            batch = (
                sa.func.json_to_recordset(sa.cast(sa.bindparam("batch", type_=sa.Text), postgresql.JSON))
                .table_valued(
                    sa.column("u", sa.Text), sa.column("d", sa.BigInteger), sa.column("f", sa.BigInteger)
                )
                .render_derived(name="batch", with_types=True)
            )
            statement = (
                users.update()
                .where(users.c.sync == sync, users.c.user_uid == batch.c.u)
                .values(source_digest=batch.c.d, digest_fingerprint=batch.c.f)
            )
            payloads = [
                json.dumps([{"u": u, "d": d, "f": f} for u, d, f in rows[start : start + 5000]])
                for start in range(0, len(rows), 5000)
            ]

            def write(connection: sa.Connection) -> None:
                for payload in payloads:
                    connection.execute(statement, {"batch": payload})

        else:
            statement = (
                users.update()
                .where(users.c.sync == sync, users.c.user_uid == sa.bindparam("u"))
                .values(source_digest=sa.bindparam("d"), digest_fingerprint=sa.bindparam("f"))
            )
            parameters = [{"u": u, "d": d, "f": f} for u, d, f in rows]

            def write(connection: sa.Connection) -> None:
                connection.execute(statement, parameters)

        self._write(write)

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

    def record_clears(self, sync: str, run_id: str, outcomes: Sequence[UserOutcome]) -> None:
        """Clears of users who left the source (`on_delete: clear`), with their log rows, in one transaction:
        a confirmed clear forgets the user (one who comes back is new); a failed one leaves the user's row
        as it was, so the next whole read clears the same keys again."""
        if not outcomes:
            return
        now = database.utcnow()
        ordered = sorted(outcomes, key=lambda o: o.user_uid)
        forgotten = [o.user_uid for o in ordered if o.ok]
        log_rows = [_log_row(sync, run_id, o, now) for o in ordered]

        def write(connection: sa.Connection) -> None:
            for start in range(0, len(forgotten), 1000):
                connection.execute(
                    users.delete().where(
                        users.c.sync == sync, users.c.user_uid.in_(forgotten[start : start + 1000])
                    )
                )
            _insert_many(connection, sync_log, log_rows) or connection.execute(sync_log.insert(), log_rows)

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
            "source_digest": sa.case((ok, new.source_digest), else_=users.c.source_digest),
            "digest_fingerprint": sa.case((ok, new.digest_fingerprint), else_=users.c.digest_fingerprint),
        },
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


def _digest_usable(sync: str) -> list[sa.ColumnElement[bool]]:
    """The users whose source digest lets a run leave their row unread (`load_source_digests`)."""
    return [
        users.c.sync == sync,
        users.c.source_digest.is_not(None),
        users.c.failed_runs == 0,
        users.c.fingerprint == users.c.digest_fingerprint,
    ]


def uid_hashes(uids: np.ndarray) -> np.ndarray:
    """A stable 64-bit hash of each uid's text (pandas' SipHash of the UTF-8 bytes, the same in every process)."""
    return pd.util.hash_array(np.asarray(uids, dtype=object), categorize=False)
