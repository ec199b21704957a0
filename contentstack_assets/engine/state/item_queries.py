"""The events and merges syncs' state (`cs_items`): each delivered-once item (an event id, a merge pair),
whether it was delivered, and how many runs in a row its attempt failed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

from contentstack_assets.engine.state import database
from contentstack_assets.engine.state.outcomes import ItemOutcome, UserOutcome, _item_row, _log_row
from contentstack_assets.engine.state.resend_queries import ResendQueries
from contentstack_assets.engine.state.tables import items, sync_log
from contentstack_assets.engine.state.writes import _insert_many


class ItemQueries(ResendQueries):
    """Delivered-once items; a delivered merge marks its user for a resend (`ResendQueries`)."""

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
        now = database.utcnow()
        outcomes = [item for items_of_request, _ in requests for item in items_of_request]
        delivered = {o.item_id: o for o in outcomes if o.ok or o.unconfirmed}
        failed = {o.item_id: o for o in outcomes if not o.ok and o.item_id not in delivered}
        rows = sorted(  # every run locks rows in item order
            [_item_row(sync, o, now) for o in delivered.values()]
            + [_item_row(sync, o, now) for o in failed.values()],
            key=lambda row: row["item_id"],
        )
        log_rows = [_log_row(sync, run_id, log, now) for _, log in requests]
        marked = {
            o.user_uid: f"{sync}: {o.item_id.replace(chr(9), ' -> ')}" for o in delivered.values() if o.ok
        }

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
