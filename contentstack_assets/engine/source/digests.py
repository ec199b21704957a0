"""A row's hash computed by the source database, per dialect: change detection without reading the row
(engine/digests.py). A 64-bit integer of the row's values in the columns a sync reads, after a prefix that
names everything else the mapping of the row depends on (the spec's salt, the code, the column types).

Each expression tells NULL from the empty text and from the text 'NULL', and keeps column boundaries:
PostgreSQL 14+ hashes the row as a record (`hash_record_extended`: each value by its type's own hash, no
text made of the row, under half the server's time), older PostgreSQL the row's text (`ROW(...)::text` quotes
and marks as needed), DuckDB its multi-argument `hash`, MySQL/MariaDB an MD5 of each value's length (-1 for
NULL) and text, Snowflake its multi-argument `HASH` of each value and of its text's UTF-8 bytes. Elsewhere
(SQLite, BigQuery, any other) there is none and every run reads every row.

A type's own hash is only used where two values it hashes alike are the same value to the mapping: integers,
booleans, dates and timestamps (an instant's one number). Every other value is hashed by the bytes of its
text (`COLLATE "C"`: a case-insensitive or non-deterministic collation, or `citext`, hashes 'A' like 'a'; a
blank-padded `char` by its output, which keeps the blanks): its own hash is too forgiving for a sync
(`numeric` 1.0 like 1.00, a float's -0 like 0, an interval's '1 day' like '24 hours'), or it is unknown (a
query's columns).

Snowflake's `HASH` takes a number by its value whatever its type (an integer 10, a NUMBER 10.00 and a FLOAT
10.0 hash alike) and a string, as far as its documentation says, under the string's collation: each value
is hashed twice, as it is (every bit of a FLOAT) and as the bytes of its text (`TO_BINARY(TO_VARCHAR(x),
'UTF-8')`: a binary has no collation; the text tells a FLOAT's -0 from 0, a TIMESTAMP_TZ's offset, a
case-insensitive collation's 'A' from 'a'). Its `HASH` is a signed 64-bit integer, fakesnow's (DuckDB's
`hash`) an unsigned one: `BITAND` with 2^63-1 keeps the same 63 bits on both.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

_MYSQL = frozenset({"mysql", "mariadb"})
DIGEST = "__cs_digest"  # the column of a read's frame that holds each row's digest


def can_digest(dialect: str) -> bool:
    return dialect in ("postgresql", "duckdb", "snowflake") or dialect in _MYSQL


def row_digest(
    columns: Sequence[sa.ColumnElement],
    dialect: str,
    prefix: str,
    declared: Sequence[sa.types.TypeEngine | None] = (),
    server_version: tuple | None = None,
) -> sa.ColumnElement:
    """The database's 64-bit hash of these columns' values after `prefix` (a signed BIGINT); `declared`:
    each column's declared type where known (a table's), `server_version`: the server's version."""
    salt = sa.bindparam("digest_prefix", prefix, type_=sa.String)
    if dialect == "postgresql" and server_version is not None and server_version >= (14,):
        kinds = list(declared) + [None] * (len(columns) - len(declared))
        fields = [_record_field(column, kind) for column, kind in zip(columns, kinds, strict=True)]
        # the prefix names the expression too: a server upgraded past 13 moves every digest once
        record = sa.func.row(sa.cast(salt, sa.Text).concat(":record"), *fields)
        return sa.func.hash_record_extended(record, sa.literal_column("0"))
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
    if dialect == "snowflake":
        parts = []
        for column in columns:
            text = sa.func.to_varchar(column)
            parts += [column, sa.func.to_binary(text, sa.literal_column("'UTF-8'"))]
        hashed = sa.func.hash(salt, *parts)
        return sa.cast(sa.func.bitand(hashed, sa.literal_column(str(2**63 - 1))), sa.BigInteger)
    raise ValueError(f"no row digest on {dialect}")


def _record_field(column: sa.ColumnElement, kind: sa.types.TypeEngine | None) -> sa.ColumnElement:
    """A column as PostgreSQL's record hash takes it: as it is where the type's hash tells every two values
    the mapping tells apart, text by its bytes, anything else by its text (see the module)."""
    if isinstance(kind, (sa.Integer, sa.Boolean, sa.Date, sa.DateTime)) and not isinstance(kind, sa.Interval):
        return column
    if isinstance(
        kind, sa.CHAR
    ):  # blank-padded: a cast to text drops the trailing blanks, its output keeps them
        return sa.case((column.is_(None), None), else_=sa.func.concat(column)).collate("C")
    # by the bytes of its text whatever the column's collation (a case-insensitive one, through a query's
    # column or a domain, would hash 'A' like 'a')
    return sa.cast(column, sa.Text).collate("C")
