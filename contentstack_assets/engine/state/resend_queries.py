"""The users of a users sync to resend whole (`cs_resend`) because a merge overwrote their values in
Personalize: marked by a merges sync, taken care of and settled by the next push (engine/resend.py).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import sqlalchemy as sa

from contentstack_assets.engine.state import database
from contentstack_assets.engine.state.tables import resend, users
from contentstack_assets.engine.state.writes import StoreBase


class ResendQueries(StoreBase):
    """Marks of users to resend whole, and the state they make forget."""

    def mark_for_resend(self, sync: str, reasons: dict[str, str]) -> None:
        """These users of users sync `sync` (uid -> why) are to be resent whole (engine/resend.py)."""
        if reasons:
            self._write(
                lambda connection: self._mark_for_resend(connection, sync, reasons, database.utcnow())
            )

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
