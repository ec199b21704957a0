"""Which state a sync uses: one state key per sync and destination project, registered in `cs_destinations`,
and a renamed sync taking over the state of its old name.
"""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa

from contentstack_assets.engine.state import database
from contentstack_assets.engine.state.tables import (
    destinations,
    items,
    rejections,
    resend,
    runs,
    sync_log,
    users,
)
from contentstack_assets.engine.state.writes import StoreBase


class DestinationQueries(StoreBase):
    """The state key of a sync at a destination."""

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
                    sync=sync, destination=destination, state_key=key, first_at=database.utcnow()
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
