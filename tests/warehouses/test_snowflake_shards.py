"""Shards that read their own slice on Snowflake (engine/source/shards.py): each shard's read asks Snowflake
for the rows of its own users (`MD5` of the uid's text, its first 8 hex digits as a number, modulo N, and
every irregular row), through snowflake-sqlalchemy and the real connector against the fakesnow server; the
sharded scenarios of tests/integration/test_shard_reads.py and test_source_digests.py, run on Snowflake.

fakesnow runs the SQL on DuckDB: these tests prove what the expression computes there and that it is
Snowflake's SQL (`MD5`, `SUBSTR`, `POSITION`, `REGEXP_LIKE` matching the whole text), not what Snowflake's own
engine makes of it."""

from __future__ import annotations

import pandas as pd
import sqlalchemy as sa

from contentstack_assets.engine.source.shards import _regular, can_slice, shard_condition, shard_of
from tests.integration import test_shard_reads as reads
from tests.integration import test_source_digests as digests
from tests.integration.warehouses import execute


def _users(url: str) -> None:
    execute(
        url,
        "CREATE TABLE users (user_uid VARCHAR)",
        "INSERT INTO users VALUES (:user_uid)",
        rows=[{"user_uid": uid} for uid in reads.UIDS],
    )


def test_snowflake_picks_each_shards_rows():
    assert can_slice("snowflake")


def test_the_database_gives_each_shard_its_regular_uids_and_every_irregular_row(snowflake_url):
    """The shard's condition alone, run by the database: a regular uid (printable ASCII at both ends) is in
    the shard `shard_of` gives it and no other; an irregular one (NULL, blank, wrapped in whitespace, not
    ASCII at an end) in every shard, whose reader keeps it where the rules say."""
    _users(snowflake_url)
    engine = sa.create_engine(snowflake_url, poolclass=sa.pool.NullPool)
    users = sa.Table("users", sa.MetaData(), sa.Column("user_uid", sa.String))
    is_regular = _regular(pd.Series(reads.UIDS, dtype=object))
    regular = [uid for uid, keep in zip(reads.UIDS, is_regular, strict=True) if keep]
    irregular = [uid for uid, keep in zip(reads.UIDS, is_regular, strict=True) if not keep]
    assert len(regular) == 302 and len(irregular) == 7
    expected = dict(zip(regular, shard_of(regular, reads.SHARDS).tolist(), strict=True))
    with engine.connect() as connection:
        for index in range(reads.SHARDS):
            condition = shard_condition(users.c.user_uid, "snowflake", index, reads.SHARDS)
            got = [row[0] for row in connection.execute(sa.select(users.c.user_uid).where(condition))]
            assert sorted(uid for uid in got if uid in expected) == sorted(
                uid for uid, shard in expected.items() if shard == index
            )
            assert sorted(map(repr, (uid for uid in got if uid not in expected))) == sorted(
                map(repr, irregular)
            )
    engine.dispose()


def test_each_shard_reads_the_rows_of_its_own_users_in_the_database(snowflake_url):
    _users(snowflake_url)
    statements = []
    record = lambda conn, cursor, statement, *args: statements.append(statement)  # noqa: E731
    sa.event.listen(sa.engine.Engine, "before_cursor_execute", record)
    try:
        reads.test_each_shard_reads_the_rows_of_its_own_users_in_the_database(snowflake_url)
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", record)
    # the database picked the rows (not every shard reading every row and keeping its own)
    sliced = [statement for statement in statements if "md5(" in statement.lower()]
    assert len(sliced) == reads.SHARDS, statements


def test_each_shard_of_a_rerun_reads_only_what_moved_of_its_own_users(
    tmp_path, instance, emulator, snowflake_url
):
    digests.test_each_shard_of_a_rerun_reads_only_what_moved_of_its_own_users(
        tmp_path, instance, emulator, snowflake_url
    )


def test_odd_uids_are_read_by_their_own_shard_as_unsharded(tmp_path, instance, emulator, snowflake_url):
    digests.test_odd_uids_are_read_by_their_own_shard_as_unsharded(
        tmp_path, instance, emulator, snowflake_url, shards=3
    )
