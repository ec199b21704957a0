"""The sync log (`cs_sync_log`) and rejections as read back: per user, per run (every rejected row and
failed request of a run, for `contentstack-assets rejected|failed`); and their pruning, by an age counted
in the store's run order.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pandas as pd
import sqlalchemy as sa

from contentstack_assets.engine.state import database
from contentstack_assets.engine.state.tables import items, rejections, runs, sync_log
from contentstack_assets.engine.state.writes import StoreBase


class LogQueries(StoreBase):
    """What the log holds for a user or a run, and its retention."""

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
            now = database.utcnow()
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

    def run_ids(self, sync: str, prefix: str = "") -> list[str]:
        """The Dagster run ids of the sync's recorded runs (any destination; dry runs record none) that
        start with `prefix`, newest first. A sharded run counts once (its shards record `RUN_ID/i-of-n`)."""
        statement = (
            sa.select(runs.c.run_id)
            .where(_of_sync(runs, sync), runs.c.run_id.startswith(prefix, autoescape=True))
            .order_by(sa.func.coalesce(runs.c.seq, 0).desc(), runs.c.started_at.desc())
        )
        with self.engine.connect() as connection:
            found = [run_id.split("/")[0] for run_id in connection.execute(statement).scalars()]
        return list(dict.fromkeys(found))

    def sync_names(self) -> list[str]:
        """The syncs with a recorded run, by name (the state keys `NAME@<digest>` counted as NAME)."""
        with self.engine.connect() as connection:
            keys = connection.execute(sa.select(runs.c.sync).distinct()).scalars().all()
        return sorted({key.split("@")[0] for key in keys})

    def run_rejections(self, sync: str, run_id: str) -> Iterator[dict]:
        """Every row the run set aside (sync, run_id, row_number, user_uid, reason, at, source_key), in read
        order."""
        statement = (
            sa.select(rejections)
            .where(_of_sync(rejections, sync), rejections.c.run_id == run_id)
            .order_by(rejections.c.sync, rejections.c.row_number)
        )
        with self.engine.connect() as connection:
            for row in connection.execution_options(yield_per=5000).execute(statement):
                yield dict(row._mapping)

    def run_failures(self, sync: str, run_id: str) -> Iterator[dict]:
        """Every request of the run that failed after its retries (sync, run_id, user_uid, request, keys,
        status, attempts, error, at), in the order they were recorded. For an events or merges sync, `items`:
        the request's event ids or merge pairs still undelivered whose last failure is this request (the
        store writes a request's log row and its items with one time); a later run that delivered or failed
        them again takes them."""
        # the undelivered items are the sync's retry set, few; read once, not joined per log row (cs_items
        # has no index by user)
        undelivered: dict[tuple, list[str]] = {}
        with self.engine.connect() as connection:
            for key, user_uid, updated_at, item_id in connection.execute(
                sa.select(items.c.sync, items.c.user_uid, items.c.updated_at, items.c.item_id)
                .where(_of_sync(items, sync), items.c.delivered.is_(False))
                .order_by(items.c.item_id)
            ):
                undelivered.setdefault((key, user_uid, updated_at), []).append(item_id)
            statement = (
                sa.select(*(c for c in sync_log.columns if c.name not in ("id", "latency_ms")))
                .where(_of_sync(sync_log, sync), sync_log.c.run_id == run_id, sync_log.c.error.is_not(None))
                .order_by(sync_log.c.id)
            )
            for row in connection.execution_options(yield_per=5000).execute(statement):
                record = dict(row._mapping)
                record["items"] = undelivered.get((record["sync"], record["user_uid"], record["at"]), [])
                yield record


def _of_sync(table: sa.Table, sync: str) -> sa.ColumnElement[bool]:
    """The rows of a sync at any destination (state keys `NAME` and `NAME@<digest>`)."""
    return (table.c.sync == sync) | table.c.sync.startswith(f"{sync}@", autoescape=True)
