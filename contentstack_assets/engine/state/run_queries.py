"""Runs (`cs_runs`) in the store's own order, with their counts, and the rows each run set aside
(`cs_rejections`); after a run, fresh planner statistics for the tables it grew (PostgreSQL).
"""

from __future__ import annotations

import json

import pandas as pd
import sqlalchemy as sa

from contentstack_assets.engine.state import database
from contentstack_assets.engine.state.tables import items, rejections, runs, sync_log, users
from contentstack_assets.engine.state.writes import StoreBase


class RunQueries(StoreBase):
    """A run's start, end and counts, and its rejections."""

    def start_run(self, sync: str, run_id: str, scope: str, dry_run: bool) -> None:
        """Record a run as started: it takes the next number of the store's run order."""

        def write(connection: sa.Connection) -> None:
            seq = connection.execute(sa.select(sa.func.coalesce(sa.func.max(runs.c.seq), 0) + 1)).scalar_one()
            row = {
                "run_id": run_id,
                "sync": sync,
                "started_at": database.utcnow(),
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
            .values(finished_at=database.utcnow(), counts=json.dumps(counts))
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

    def record_rejections(
        self, sync: str, run_id: str, rejected: pd.DataFrame, *, replace: bool = True
    ) -> None:
        """rejected: columns row_number, user_uid, reason, and source_key when the source table has a key.
        They replace what the run recorded before (a step run again), unless `replace=False` (the next chunk
        of the same run: added to the chunks' before it)."""
        if rejected.empty:
            return
        now = database.utcnow()
        keys = rejected["source_key"] if "source_key" in rejected else pd.Series(None, index=rejected.index)
        rows = [
            {
                "sync": sync,
                "run_id": run_id,
                "row_number": int(r.row_number),
                "user_uid": r.user_uid,
                "reason": r.reason,
                "at": now,
                "source_key": key if isinstance(key, str) else None,
            }
            for r, key in zip(rejected.itertuples(index=False), keys, strict=True)
        ]

        def write(connection: sa.Connection) -> None:
            if replace:
                connection.execute(
                    rejections.delete().where(rejections.c.sync == sync, rejections.c.run_id == run_id)
                )
            for start in range(0, len(rows), 5000):
                connection.execute(rejections.insert(), rows[start : start + 5000])

        self._write(write)
