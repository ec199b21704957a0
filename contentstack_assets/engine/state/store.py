"""`StateStore`: one database holding every sync's state, opened at the newest schema, its queries grouped by
subject in the classes it is made of.
"""

from __future__ import annotations

from contentstack_assets.engine.state.database import _make_engine, default_state_url
from contentstack_assets.engine.state.destination_queries import DestinationQueries
from contentstack_assets.engine.state.item_queries import ItemQueries
from contentstack_assets.engine.state.log_queries import LogQueries
from contentstack_assets.engine.state.migrations import migrate
from contentstack_assets.engine.state.resend_queries import ResendQueries
from contentstack_assets.engine.state.run_queries import RunQueries
from contentstack_assets.engine.state.user_queries import UserQueries
from contentstack_assets.urls import mask_url


class StateStore(DestinationQueries, UserQueries, ItemQueries, ResendQueries, RunQueries, LogQueries):
    def __init__(self, url: str | None = None):
        self.url = url or default_state_url()
        self.engine = _make_engine(self.url)
        self.migrate()

    def __repr__(self) -> str:
        return f"StateStore({mask_url(self.url)})"

    def migrate(self) -> int:
        """Bring the store to SCHEMA_VERSION (`migrations.migrate`); returns the version found before."""
        return migrate(self.engine, self.url)
