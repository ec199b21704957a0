"""The sync log (`cs_sync_log`) and rejections as read back: per user, per run; and their pruning, by an
age counted in the store's run order.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import sqlalchemy as sa

from contentstack_assets.engine.state import database
from contentstack_assets.engine.state.tables import rejections, runs, sync_log
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


def _of_sync(table: sa.Table, sync: str) -> sa.ColumnElement[bool]:
    """The rows of a sync at any destination (state keys `NAME` and `NAME@<digest>`)."""
    return (table.c.sync == sync) | table.c.sync.startswith(f"{sync}@", autoescape=True)
