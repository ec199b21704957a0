"""The sync state store: what was delivered to whom, what failed, what was rejected, and the sync log, in one
SQLAlchemy database (SQLite by default, PostgreSQL in production). Secrets never enter: the log keeps the keys
sent, not their values, and error texts come from the API's response body.
"""

from contentstack_assets.engine.state.database import (
    STATE_URL_ENV,
    StateSchemaError,
    StateStoreError,
    default_state_url,
    utcnow,
)
from contentstack_assets.engine.state.migrations import MIGRATIONS, SCHEMA_VERSION
from contentstack_assets.engine.state.outcomes import ItemOutcome, UserOutcome
from contentstack_assets.engine.state.store import StateStore
from contentstack_assets.engine.state.tables import (
    destinations,
    items,
    metadata,
    rejections,
    resend,
    runs,
    schema_version,
    sync_log,
    users,
)
from contentstack_assets.engine.state.user_queries import uid_hashes

__all__ = [
    "uid_hashes",
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "STATE_URL_ENV",
    "ItemOutcome",
    "StateSchemaError",
    "StateStore",
    "StateStoreError",
    "UserOutcome",
    "default_state_url",
    "destinations",
    "items",
    "metadata",
    "rejections",
    "resend",
    "runs",
    "schema_version",
    "sync_log",
    "users",
    "utcnow",
]
