"""Which shard a user uid belongs to (`shards: N`), in Python and in the source database's SQL, so that each
shard of a sync reads only its own rows.

A uid's shard is the first 32 bits of the MD5 of its UTF-8 text, modulo N: MD5 is the one hash PostgreSQL,
MySQL/MariaDB, DuckDB and Snowflake all compute, so the database picks the same shard as `shard_of`. The
database hashes the uid column's text trimmed of ASCII whitespace; the rules trim any whitespace
(engine/convert): a row whose uid the two trim differently (a no-break space around it) may be read by
another shard than its uid's, and is set aside there (`STRAY`), never sent by the wrong shard. On SQLite the
shard is a function of the connection that applies the rules themselves. Where the dialect has none of
this, every shard reads every row and keeps its own (`row_shards`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from contentstack_assets.engine.convert import convert_uids

_MYSQL = frozenset({"mysql", "mariadb"})
_ASCII_SPACE = " \t\n\r\x0b\x0c"
SQLITE_FUNCTION = (
    "contentstack_uid_shard"  # registered on every SQLite connection (engine/source/dialects.py)
)
# why a row a shard read is set aside there (see the module)
STRAY = (
    "user uid has surrounding whitespace the source database does not trim (with `shards`, its shard is "
    "unknown to the database): trim it in the source query"
)


def shard_of(uids: Iterable[str], shards: int) -> np.ndarray:
    """The shard of each uid: the first 32 bits of the MD5 of its UTF-8 text, modulo `shards`."""
    return np.fromiter(
        (int.from_bytes(hashlib.md5(uid.encode()).digest()[:4], "big") % shards for uid in uids),
        dtype=np.int64,
    )


def row_shards(raw_uids: pd.Series, shards: int) -> np.ndarray:
    """The shard that reads each row, from the raw values of its uid column: its uid's shard, by the rules'
    own trimming; shard 0 for a row without a valid uid (it is rejected, wherever it is read)."""
    uids = convert_uids(raw_uids)
    valid = uids.errors.isna().to_numpy()
    owner = np.zeros(len(raw_uids), dtype=np.int64)
    owner[valid] = shard_of(uids.values[valid].tolist(), shards)
    return owner


def sqlite_uid_shard(value: object, shards: int) -> int:
    """The SQLite function: `row_shards` of one value."""
    return int(row_shards(pd.Series([value], dtype=object), shards)[0])


def can_slice(dialect: str) -> bool:
    """Whether the database can tell each row's shard (else each shard filters a whole read)."""
    return dialect in ("postgresql", "duckdb", "sqlite") or dialect in _MYSQL


def shard_condition(column: sa.ColumnElement, dialect: str, index: int, shards: int) -> sa.ColumnElement:
    """The rows of shard `index` of `shards`, by their uid column (NULL uids: shard 0)."""
    if dialect == "sqlite":
        return sa.func.contentstack_uid_shard(column, shards) == index
    number = _md5_prefix(_trimmed_text(column, dialect), dialect)
    mine = (number % shards) == index
    return sa.or_(mine, column.is_(None)) if index == 0 else mine


def _trimmed_text(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    spaces = sa.bindparam("uid_spaces", _ASCII_SPACE, type_=sa.String)
    if dialect == "postgresql":
        return sa.func.btrim(sa.cast(column, sa.Text), spaces)
    if dialect == "duckdb":
        return sa.func.trim(sa.cast(column, sa.String), spaces)
    if dialect in _MYSQL:
        pattern = sa.bindparam("uid_spaces", "^[[:space:]]+|[[:space:]]+$", type_=sa.String)
        return sa.func.regexp_replace(sa.cast(column, sa.CHAR), pattern, "")
    raise ValueError(f"no shard of a row on {dialect}")


def _md5_prefix(text: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """The first 32 bits of the text's MD5, as a non-negative integer."""
    hexadecimal = sa.func.substr(sa.func.md5(text), 1, 8)
    if dialect == "postgresql":
        bits = sa.literal_column("'x'", sa.Text).concat(hexadecimal)
        return sa.cast(sa.cast(bits, postgresql.BIT(32)), sa.BigInteger)
    if dialect == "duckdb":
        return sa.cast(sa.literal_column("'0x'", sa.String).concat(hexadecimal), sa.BigInteger)
    return sa.func.conv(hexadecimal, 16, 10)  # MySQL/MariaDB: the number's text, compared as a number
