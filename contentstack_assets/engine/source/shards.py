"""Which shard a user uid belongs to (`shards: N`), in Python and in the source database's SQL, so that each
shard of a sync reads only its own rows.

A uid's shard is the first 32 bits of the MD5 of its UTF-8 text, modulo N: MD5 is the one hash PostgreSQL,
MySQL/MariaDB, DuckDB and Snowflake all compute, so the database picks the same shard as `shard_of`.

The database hashes the uid column's text as it is; the rules trim any whitespace (engine/convert). The
two agree on a *regular* uid, whose text begins and ends with a printable ASCII character other than a
space: nothing to trim. Every shard also reads the irregular rows (a NULL, an empty or blank uid, one
wrapped in a tab or a no-break space: few in any table) and keeps, of all it read, the rows whose uid the
rules give to it (`mine`), so each row is kept by exactly one shard. A regular text the
database writes otherwise than the rules (a DOUBLE 42.0, which the rules make "42") may be read by another
shard than its uid's: that shard sets it aside with the reason `STRAY`, never sends it as its own. On
SQLite the shard is a function of the connection that applies the rules themselves. Where the dialect has
none of this, every shard reads every row and keeps its own.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from contentstack_assets.engine.convert import convert_uids
from contentstack_assets.engine.convert.rules import one_uid

_MYSQL = frozenset({"mysql", "mariadb"})
_HEX_DIGITS = "0123456789abcdef"  # MD5's text, lower case on every database
SQLITE_FUNCTION = (
    "contentstack_uid_shard"  # registered on every SQLite connection (engine/source/dialects.py)
)
# why a row a shard read is set aside there (see the module)
STRAY = (
    "the source database writes this user uid otherwise than the rules do (a number like 42.0, a boolean): "
    "with `shards`, its shard is unknown to the database; cast it to text in the source query"
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


def mine(raw_uids: pd.Series, index: int, shards: int, *, by_database: bool) -> np.ndarray:
    """Which rows of a chunk shard `index` keeps: those whose uid the rules give to it. After a read the
    database sliced (`by_database`), also the regular rows the database gave it whatever the rules say
    (their owner never reads them: the mapping sets them aside as `STRAY`); the irregular rows every shard
    reads go to their owner alone."""
    owner = row_shards(raw_uids, shards)
    keep = owner == index
    if by_database:
        keep |= _regular(raw_uids)
    return keep


def _regular(raw_uids: pd.Series) -> np.ndarray:
    """Whether each value's text begins and ends with a printable ASCII character other than a space (the
    database's `_regular_condition`)."""
    return np.fromiter(
        (
            value is not None
            and value == value
            and (text := value if isinstance(value, str) else str(value)) != ""
            and "!" <= text[0] <= "~"
            and "!" <= text[-1] <= "~"
            for value in raw_uids.tolist()
        ),
        dtype=bool,
        count=len(raw_uids),
    )


def sqlite_uid_shard(value: object, shards: int) -> int:
    """The SQLite function: `row_shards` of one value (the rules' own uid, else shard 0)."""
    uid, error = one_uid(value)
    if error is not None:
        return 0
    return int.from_bytes(hashlib.md5(uid.encode()).digest()[:4], "big") % shards


def can_slice(dialect: str) -> bool:
    """Whether the database can tell each row's shard (else each shard filters a whole read)."""
    return dialect in ("postgresql", "duckdb", "sqlite", "snowflake") or dialect in _MYSQL


def shard_condition(column: sa.ColumnElement, dialect: str, index: int, shards: int) -> sa.ColumnElement:
    """The rows shard `index` of `shards` reads: those of its regular uids, and every irregular row (`mine`
    keeps its own of those)."""
    if dialect == "sqlite":
        return sa.func.contentstack_uid_shard(column, shards) == index
    text = _text(column, dialect)
    number = _md5_prefix(text, dialect)  # a regular uid has nothing to trim
    regular = sa.and_(column.is_not(None), _regular_condition(text, dialect))
    return sa.or_((number % shards) == index, sa.not_(regular))


def _text(column: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    if dialect == "postgresql":
        return sa.cast(column, sa.Text)
    if dialect in _MYSQL:
        return sa.cast(column, sa.CHAR)
    return sa.cast(column, sa.String)


def _regular_condition(text: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    first, last = "^[!-~]", "[!-~]$"
    if dialect == "duckdb":
        return sa.and_(sa.func.regexp_matches(text, first), sa.func.regexp_matches(text, last))
    if dialect == "snowflake":  # REGEXP_LIKE matches the whole text; 's': a newline inside is any character
        return sa.and_(
            sa.func.regexp_like(text, "^[!-~].*$", "s"), sa.func.regexp_like(text, "^.*[!-~]$", "s")
        )
    operator = "~" if dialect == "postgresql" else "REGEXP"
    return sa.and_(text.op(operator)(first), text.op(operator)(last))


def _md5_prefix(text: sa.ColumnElement, dialect: str) -> sa.ColumnElement:
    """The first 32 bits of the text's MD5, as a non-negative integer."""
    hexadecimal = sa.func.substr(sa.func.md5(text), 1, 8)
    if dialect == "postgresql":
        bits = sa.literal_column("'x'", sa.Text).concat(hexadecimal)
        return sa.cast(sa.cast(bits, postgresql.BIT(32)), sa.BigInteger)
    if dialect == "duckdb":
        return sa.cast(sa.literal_column("'0x'", sa.String).concat(hexadecimal), sa.BigInteger)
    if dialect == "snowflake":  # hex digit by digit: TO_NUMBER(.., 'XXXXXXXX') is Snowflake's alone
        digits = (
            sa.func.position(sa.func.substr(hexadecimal, place, 1), _HEX_DIGITS) - 1 for place in range(1, 9)
        )
        return functools.reduce(lambda number, digit: number * 16 + digit, digits)
    if dialect in _MYSQL:
        return sa.func.conv(hexadecimal, 16, 10)  # the number's text, compared as a number
    raise ValueError(f"no shard of a row on {dialect}")
