"""The newest schema of the state store: one SQLAlchemy table per kind of record, each keyed by a state key.

A change to a table here is also a new migration (migrations.py), which brings older stores to it.
"""

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table("cs_schema_version", metadata, sa.Column("version", sa.Integer, nullable=False))

# per user: the values last delivered (JSON), the fingerprint of the row they came from, and whether the last
# attempt failed (how many runs in a row)
users = sa.Table(
    "cs_users",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("user_uid", sa.String(256), primary_key=True),
    sa.Column("fingerprint", sa.BigInteger, nullable=True),
    sa.Column("delivered", sa.Text, nullable=False, default="{}"),
    sa.Column("failed_runs", sa.Integer, nullable=False, default=0),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    # when the source read that gave the delivered values started (unix microseconds): an older read is stale
    sa.Column("read_at", sa.BigInteger, nullable=True),
    # change detection in the source database (engine/digests.py): the database's hash of a row this user's
    # source held, and the fingerprint that row maps to. The user is unchanged, unread, while the source's
    # row hashes the same and the user's confirmed `fingerprint` is still that one
    sa.Column("source_digest", sa.BigInteger, nullable=True),
    sa.Column("digest_fingerprint", sa.BigInteger, nullable=True),
    # the few users failing now, found without reading every user (stuck users, the retry count)
    sa.Index(
        "ix_cs_users_failing",
        "sync",
        "failed_runs",
        sqlite_where=sa.text("failed_runs > 0"),
        postgresql_where=sa.text("failed_runs > 0"),
    ),
)

# which state belongs to which destination. Every table here is keyed by a state key: the sync's name for the
# first destination it delivered to, `NAME@<digest>` for each other one, so a sync pointed at a new project
# starts afresh there and finds its old state again when pointed back
destinations = sa.Table(
    "cs_destinations",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),  # the sync's name in the spec
    sa.Column("destination", sa.String(1024), primary_key=True),  # DestinationSpec.identity
    sa.Column("state_key", sa.String(128), nullable=False),
    sa.Column("first_at", sa.DateTime(timezone=True), nullable=False),
)

# per delivered-once item (an event id, a merge pair): whether it was delivered or failed
items = sa.Table(
    "cs_items",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("item_id", sa.String(600), primary_key=True),
    sa.Column("user_uid", sa.String(256), nullable=True),
    sa.Column("delivered", sa.Boolean, nullable=False),
    sa.Column("failed_runs", sa.Integer, nullable=False, default=0),
    sa.Column("last_status", sa.Integer, nullable=True),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

# one row per request: user uid, keys sent, status, attempts, latency, error
sync_log = sa.Table(
    "cs_sync_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("user_uid", sa.String(256), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("request", sa.String(32), nullable=False),
    sa.Column("keys", sa.Text, nullable=False),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    sa.Column("latency_ms", sa.Float, nullable=False),
    sa.Column("error", sa.Text, nullable=True),
    sa.Index("ix_cs_sync_log_user", "sync", "user_uid"),
    sa.Index("ix_cs_sync_log_at", "sync", "at"),
)

# the rows each run set aside, with their reasons
rejections = sa.Table(
    "cs_rejections",
    metadata,
    sa.Column("sync", sa.String(128), nullable=False),
    sa.Column("run_id", sa.String(64), nullable=False),
    sa.Column("row_number", sa.Integer, nullable=False),
    sa.Column("user_uid", sa.String(300), nullable=True),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    # the row's primary key in its source table (`id=7`), when the table has one: what finds the row there
    sa.Column("source_key", sa.Text, nullable=True),
    sa.Index("ix_cs_rejections_run", "sync", "run_id"),
)

# one row per run with its counts (the empty-source guard reads the last one)
runs = sa.Table(
    "cs_runs",
    metadata,
    sa.Column("run_id", sa.String(64), primary_key=True),
    sa.Column("sync", sa.String(128), primary_key=True),
    sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("scope", sa.String(64), nullable=False),  # "all", or a partition range
    sa.Column("dry_run", sa.Boolean, nullable=False),
    sa.Column("counts", sa.Text, nullable=False, default="{}"),
    # the order runs started in (the store's own count): "the last run" and the log's age go by it, never by
    # a clock that may have jumped
    sa.Column("seq", sa.BigInteger, nullable=True),
)

# per users sync, the users to resend whole because a merge overwrote their values in Personalize
# (engine/resend.py)
resend = sa.Table(
    "cs_resend",
    metadata,
    sa.Column("sync", sa.String(128), primary_key=True),  # a users sync
    sa.Column("user_uid", sa.String(256), primary_key=True),
    # how many times the user was marked: a push removes a mark only if nobody marked it again meanwhile
    sa.Column("marks", sa.Integer, nullable=False),
    sa.Column("reason", sa.Text, nullable=False),  # the last mark's, e.g. "identities: anon1 -> u1"
    sa.Column("marked_at", sa.DateTime(timezone=True), nullable=False),
)
