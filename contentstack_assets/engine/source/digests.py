"""A row's hash computed by the source database, per dialect: change detection without reading the row
(engine/digests.py). A 64-bit integer of the row's values in the columns a sync reads, after a prefix that
names everything else the mapping of the row depends on (the spec's salt, the code, the column types).

Each expression tells NULL from the empty text and from the text 'NULL', and keeps column boundaries:
PostgreSQL hashes the row's text (`ROW(...)::text` quotes and marks as needed), DuckDB its multi-argument
`hash`, MySQL/MariaDB an MD5 of each value's length (-1 for NULL) and text. Elsewhere (SQLite, Snowflake,
any other) there is none and every run reads every row.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

_MYSQL = frozenset({"mysql", "mariadb"})
DIGEST = "__cs_digest"  # the column of a read's frame that holds each row's digest


def can_digest(dialect: str) -> bool:
    return dialect in ("postgresql", "duckdb") or dialect in _MYSQL


def row_digest(columns: Sequence[sa.ColumnElement], dialect: str, prefix: str) -> sa.ColumnElement:
    """The database's 64-bit hash of these columns' values after `prefix` (a signed BIGINT)."""
    salt = sa.bindparam("digest_prefix", prefix, type_=sa.String)
    if dialect == "postgresql":
        text = sa.func.concat(salt, sa.cast(sa.func.row(*columns), sa.Text))
        return sa.func.hashtextextended(text, sa.literal_column("0"))
    if dialect == "duckdb":
        # hash() is a UBIGINT: its upper 63 bits fit a BIGINT
        return sa.cast(sa.func.hash(salt, *columns).op(">>")(sa.literal_column("1")), sa.BigInteger)
    if dialect in _MYSQL:
        parts = []
        for column in columns:
            text = sa.cast(column, sa.CHAR)
            parts += [sa.func.coalesce(sa.func.char_length(text), -1), ":", sa.func.coalesce(text, "")]
        md5 = sa.func.md5(sa.func.concat(salt, *parts))
        # the first 16 hex digits as an unsigned number, cast to SIGNED: the same 64 bits, wrapped
        return sa.cast(sa.func.conv(sa.func.substring(md5, 1, 16), 16, 10), sa.Integer)
    raise ValueError(f"no row digest on {dialect}")
