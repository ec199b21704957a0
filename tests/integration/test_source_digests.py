"""Change detection in the source database (engine/digests.py), through Dagster to the emulator over real
HTTP, on PostgreSQL, DuckDB and MariaDB: a rerun with nothing changed reads digests only and sends nothing;
a moved row is read and sent alone; a new row, a row changed back, a value stored another way, a duplicate, a
user who failed, a spec change, a user who left (`on_delete: clear`), a full resync, a `query:` source; NULL,
the empty text and the text 'NULL' hash apart; SQLite reads every row as before."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from contentstack_assets.engine.source import SourceError, SourceReader
from contentstack_assets.engine.source.digests import DIGEST
from contentstack_assets.spec import SourceSpec
from tests.helpers import (
    fast_retries,
    push_config,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)
from tests.integration.warehouses import execute, mysql_database, require_modules

ATTRIBUTES = {
    "plan": {"column": "plan_name", "type": "string"},
    "orders": {"column": "order_count", "type": "integer"},
}
COLUMNS = ("user_uid", "plan_name", "order_count")
ROWS = [dict(user_uid=f"u{i}", plan_name="gold", order_count=str(i)) for i in range(1, 6)]


@pytest.fixture(params=["postgresql", "duckdb", "mariadb"])
def source_url(request, tmp_path) -> Iterator[str]:
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_url")
    elif request.param == "duckdb":
        require_modules("duckdb", "duckdb", "duckdb_engine")
        yield f"duckdb:///{tmp_path / 'warehouse.duckdb'}"
    else:
        with mysql_database() as url:
            yield url


def _table(url: str, rows: list[dict]) -> None:
    execute(
        url,
        "DROP TABLE IF EXISTS users",
        "CREATE TABLE users (user_uid VARCHAR(100), plan_name VARCHAR(100), order_count VARCHAR(100))",
        "INSERT INTO users VALUES (:user_uid, :plan_name, :order_count)",
        rows=[{column: row.get(column) for column in COLUMNS} for row in rows],
    )


def _run(tmp_path, instance, emulator, url, rows=None, *, run_config=None, resources=None, **overrides):
    if rows is not None:
        _table(url, rows)
    spec = write_spec(
        tmp_path / "syncs.yaml", [users_sync(url, emulator.url, **{"attributes": ATTRIBUTES, **overrides})]
    )
    return run_job(spec, "users_sync", instance, run_config=run_config, resources=resources)


def _figures(result) -> tuple[int, int, int, int]:
    """rows read whole, rows left unread by their digest, users sent, requests sent"""
    metadata = push_metadata(result)
    sent = metadata["users_delivered"]
    return metadata["rows_read"], metadata["rows_digest_unchanged"], sent, metadata["requests_sent"]


def _stored(emulator, uid: str) -> dict:
    with urllib.request.urlopen(f"{emulator.url}/_emulator/users/{uid}") as response:
        return json.load(response)["attributes"]


def _with(rows: list[dict], uid: str, **values) -> list[dict]:
    return [{**row, **values} if row["user_uid"] == uid else row for row in rows]


def test_a_rerun_reads_only_what_moved(tmp_path, instance, emulator, source_url):
    first = _run(tmp_path, instance, emulator, source_url, ROWS)
    assert first.success and _figures(first) == (5, 0, 5, 5)

    again = _run(tmp_path, instance, emulator, source_url)
    assert again.success and _figures(again) == (0, 5, 0, 0)
    assert push_metadata(again)["users_unchanged"] == 5

    # one row moved, one new: only they are read and sent
    rows = [*_with(ROWS, "u2", plan_name="silver"), dict(user_uid="u6", plan_name="gold", order_count="6")]
    moved = _run(tmp_path, instance, emulator, source_url, rows)
    assert moved.success and _figures(moved) == (2, 4, 2, 2)
    assert _stored(emulator, "u2") == {"plan": "silver", "orders": 2}
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (0, 6, 0, 0)

    # changed back: its digest is the old one, which the state no longer holds as delivered
    back = _run(tmp_path, instance, emulator, source_url, [*ROWS, rows[-1]])
    assert _figures(back) == (1, 5, 1, 1) and _stored(emulator, "u2") == {"plan": "gold", "orders": 2}

    # a value stored another way that maps to the same wire value: read once, nothing sent, then left unread
    spaced = _with([*ROWS, rows[-1]], "u3", order_count=" 3")
    assert _figures(_run(tmp_path, instance, emulator, source_url, spaced)) == (1, 5, 0, 0)
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (0, 6, 0, 0)

    # a duplicate uid: both rows read and rejected, run after run, as without digests
    doubled = [*spaced, dict(user_uid=" u4", plan_name="gold", order_count="4")]
    for _ in range(2):
        result = _run(tmp_path, instance, emulator, source_url, doubled)
        assert result.success and _figures(result) == (2, 5, 0, 0)
        assert push_metadata(result)["rows_rejected"] == 2


def test_the_same_row_given_twice_is_read_and_rejected(tmp_path, instance, emulator, source_url):
    assert _figures(_run(tmp_path, instance, emulator, source_url, ROWS)) == (5, 0, 5, 5)
    # both rows hash to u4's recorded digest: neither is left unread, both are rejected
    twice = [*ROWS, ROWS[3]]
    for _ in range(2):
        result = _run(tmp_path, instance, emulator, source_url, twice)
        assert result.success and _figures(result) == (2, 4, 0, 0)
        assert push_metadata(result)["rows_rejected"] == 2
    assert _figures(_run(tmp_path, instance, emulator, source_url, ROWS))[2:] == (0, 0)

    # u4 twice, and a new user spelled with a tab (its row the database's TRIM does not find by "u7"): u4's
    # second row must not stand in for u7's, which is sent (with one wanted row per uid given again, u7 was
    # counted unchanged and never created)
    new = dict(user_uid="\tu7", plan_name="gold", order_count="7")
    result = _run(tmp_path, instance, emulator, source_url, [*ROWS, ROWS[3], new])
    assert result.success and push_metadata(result)["rows_rejected"] == 2
    assert _stored(emulator, "u7") == {"plan": "gold", "orders": 7}

    # a new row spells u4 with a tab: the database's TRIM does not find it by "u4", nor u4's row by it; the
    # state names u4's unmoved row, and both rows are rejected
    tabbed = [*ROWS, dict(user_uid="\tu4", plan_name="gold", order_count="4")]
    result = _run(tmp_path, instance, emulator, source_url, tabbed)
    assert result.success and push_metadata(result)["rows_rejected"] == 2
    assert _figures(result)[2:] == (0, 0)


def test_a_user_failed_by_another_run_during_the_scan_is_still_found_given_twice(
    tmp_path, instance, emulator, source_url
):
    """The scan compares digests the state gave when it began; a run that fails u4 before the scan asks who
    owns them must not hide u4's second row (the state is asked whatever its users' state now)."""
    import os

    from contentstack_assets.engine import digests
    from contentstack_assets.engine.state import StateStore, UserOutcome
    from contentstack_assets.spec import load_spec

    assert _run(tmp_path, instance, emulator, source_url, ROWS).success
    _table(source_url, [*ROWS, ROWS[3]])
    failed = UserOutcome("u4", ("plan",), False, 500, 3, 1.0, "HTTP 500: boom", None, None)

    class Meanwhile(StateStore):
        def load_digest_owners(self, sync, **lookups):
            self.record_user_outcomes(sync, "another-run", [failed])
            return super().load_digest_owners(sync, **lookups)

    sync = load_spec(str(tmp_path / "syncs.yaml")).get("users")
    store = Meanwhile(os.environ["CONTENTSTACK_STATE_URL"])
    frame = digests.read_changed(sync, store, log=lambda line: None)
    assert sorted(frame["user_uid"].tolist()) == ["u4", "u4"]


def test_a_failed_user_is_retried_though_its_row_did_not_move(tmp_path, instance, emulator, source_url):
    assert _run(tmp_path, instance, emulator, source_url, ROWS).success
    emulator.configure(fail_rate=1.0)
    # the failing runs give up at once (the client's backoff is not what this tests)
    silver = _with(ROWS, "u2", plan_name="silver")
    failed = _run(tmp_path, instance, emulator, source_url, silver, resources=fast_retries(0))
    assert not failed.success and push_metadata(failed)["users_failed"] == 1
    emulator.configure(fail_rate=0.0)
    retried = _run(tmp_path, instance, emulator, source_url)
    assert retried.success and _figures(retried) == (1, 4, 1, 1)
    assert _stored(emulator, "u2") == {"plan": "silver", "orders": 2}
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (0, 5, 0, 0)

    # failed, then its row went back to the digest its confirmed values came from: still read and retried
    emulator.configure(fail_rate=1.0)
    bronze = _with(ROWS, "u2", plan_name="bronze")
    assert not _run(tmp_path, instance, emulator, source_url, bronze, resources=fast_retries(0)).success
    emulator.configure(fail_rate=0.0)
    back = _run(tmp_path, instance, emulator, source_url, silver)
    assert back.success and _figures(back) == (1, 4, 1, 1)


def test_nulls_empty_text_and_the_text_null_hash_apart(source_url):
    _table(source_url, [dict(user_uid="u", plan_name=value, order_count="1") for value in (None, "", "NULL")]
           + [dict(user_uid="u", plan_name="a", order_count="b,c"), dict(user_uid="u", plan_name="a,b", order_count="c")])  # fmt: skip
    source = SourceSpec.model_validate({"url": source_url, "table": "users"})
    digests = SourceReader(source, list(COLUMNS)).read_digests("prefix")[DIGEST].tolist()
    assert len(set(digests)) == 5
    # the same rows read whole carry the same digests
    whole = SourceReader(source, list(COLUMNS)).read(digest="prefix")
    assert sorted(whole[DIGEST].tolist()) == sorted(digests)
    assert SourceReader(source, list(COLUMNS)).read_digests("another")[DIGEST].tolist() != digests


def test_a_table_whose_primary_key_the_sync_does_not_read_is_left_unread(
    tmp_path, instance, emulator, source_url
):
    """A whole read adds the table's primary key to its columns (to name a rejected row); the digests' read
    does not. The digest hashes the sync's columns alone, so the two agree: a rerun reads nothing (it read
    every row, every run, when the key was hashed too)."""
    execute(
        source_url,
        "DROP TABLE IF EXISTS users",
        "CREATE TABLE users (id INTEGER PRIMARY KEY, user_uid VARCHAR(100), plan_name VARCHAR(100), "
        "order_count VARCHAR(100))",
        "INSERT INTO users VALUES (:id, :user_uid, :plan_name, :order_count)",
        rows=[{"id": index, **row} for index, row in enumerate(ROWS)],
    )
    first = _run(tmp_path, instance, emulator, source_url)
    assert first.success and _figures(first) == (5, 0, 5, 5)
    again = _run(tmp_path, instance, emulator, source_url)
    assert again.success and _figures(again) == (0, 5, 0, 0)


@pytest.mark.postgres
def test_values_postgresqls_own_hashes_take_alike_hash_apart(postgres_url):
    """PostgreSQL hashes a row as a record by each type's own hash, which takes some values the mapping
    tells apart for one: numeric 1.0 and 1.00, a float's 0 and -0, '1 day' and '24 hours', citext 'A' and
    'a'. Those columns are hashed by their text (engine/source/digests.py): each row here has its digest."""
    execute(
        postgres_url,
        "CREATE EXTENSION IF NOT EXISTS citext",
        "DROP TABLE IF EXISTS users",
        "CREATE TABLE users (user_uid text, amount numeric, ratio double precision, span interval, "
        "name citext, seen timestamptz, day date, n bigint, flag boolean)",
        "INSERT INTO users VALUES ('u', 1.0, 0, '1 day', 'A', '2024-01-01 00:00+00', '2024-01-01', 1, true), "
        "('u', 1.00, 0, '1 day', 'A', '2024-01-01 00:00+00', '2024-01-01', 1, true), "
        "('u', 1.0, '-0', '1 day', 'A', '2024-01-01 00:00+00', '2024-01-01', 1, true), "
        "('u', 1.0, 0, '24 hours', 'A', '2024-01-01 00:00+00', '2024-01-01', 1, true), "
        "('u', 1.0, 0, '1 day', 'a', '2024-01-01 00:00+00', '2024-01-01', 1, true), "
        "('u', 1.0, 0, '1 day', 'A', '2024-01-01 00:00:01+00', '2024-01-01', 1, true), "
        "('u', 1.0, 0, '1 day', 'A', '2024-01-01 00:00+00', '2024-01-02', 1, true), "
        "('u', 1.0, 0, '1 day', 'A', '2024-01-01 00:00+00', '2024-01-01', NULL, true), "
        "('u', 1.0, 0, '1 day', 'A', '2024-01-01 00:00+00', '2024-01-01', 0, true), "
        "('u', 1.0, 0, '1 day', 'A', '2024-01-01 00:00+00', '2024-01-01', 1, false)",
    )
    columns = ["user_uid", "amount", "ratio", "span", "name", "seen", "day", "n", "flag"]
    source = SourceSpec.model_validate({"url": postgres_url, "table": "users"})
    digests = SourceReader(source, columns).read_digests("prefix")[DIGEST].tolist()
    assert len(set(digests)) == 10
    whole = SourceReader(source, columns).read(digest="prefix")
    assert sorted(whole[DIGEST].tolist()) == sorted(digests)


@pytest.mark.postgres
def test_text_hashes_by_its_bytes_whatever_its_collation_or_padding(postgres_url):
    """A query's columns are hashed by their text, which keeps a column's collation: under a
    case-insensitive one 'A' hashed like 'a' until the text was hashed as `COLLATE "C"`. A `char` column
    keeps its blanks and tells NULL from the empty text."""
    execute(
        postgres_url,
        "DROP TABLE IF EXISTS users",
        "DROP COLLATION IF EXISTS cs_case_blind",
        "CREATE COLLATION cs_case_blind (provider = icu, locale = 'und-u-ks-level2', deterministic = false)",
        "CREATE TABLE users (user_uid text, nick text COLLATE cs_case_blind, code char(2))",
        "INSERT INTO users VALUES ('u', 'A', 'x'), ('u', 'a', 'x'), ('u', 'a', NULL), ('u', 'a', '')",
    )
    columns = ["user_uid", "nick", "code"]
    for source in (
        SourceSpec.model_validate({"url": postgres_url, "table": "users"}),
        SourceSpec.model_validate({"url": postgres_url, "query": "SELECT user_uid, nick, code FROM users"}),
    ):
        digests = SourceReader(source, columns).read_digests("prefix")[DIGEST].tolist()
        assert len(set(digests)) == 4, source


@pytest.mark.parametrize("source_url", ["duckdb"], indirect=True)
def test_duckdbs_digests_come_as_columns_with_every_uid_as_read(source_url):
    """DuckDB hands the digests' read over a chunk of columns at a time (text uids): across its vectors of
    2,048 rows, a NULL uid stays None and every other uid its text, with the digest a whole read gives."""
    execute(
        source_url,
        "DROP TABLE IF EXISTS users",
        "CREATE TABLE users AS SELECT 'u' || i AS user_uid, 'gold' AS plan_name, i::VARCHAR AS order_count "
        "FROM range(120000) t(i)",
        "INSERT INTO users VALUES (NULL, 'gold', '1'), ('', 'gold', '1'), (' u1 ', 'gold', '1'), ('NULL', 'gold', '1')",
    )
    source = SourceSpec.model_validate({"url": source_url, "table": "users"})
    reader = SourceReader(source, list(COLUMNS))
    chunks = list(reader.read_digest_chunks("prefix"))
    assert len(chunks) >= 2 and sum(len(chunk) for chunk in chunks) == 120_004
    read = pd.concat(chunks, ignore_index=True)
    whole = SourceReader(source, list(COLUMNS)).read(digest="prefix")
    as_read = sorted(zip(read["user_uid"].tolist(), read[DIGEST].tolist(), strict=True), key=repr)
    assert as_read == sorted(zip(whole["user_uid"].tolist(), whole[DIGEST].tolist(), strict=True), key=repr)
    assert None in read["user_uid"].tolist() and read[DIGEST].dtype == "int64"


@pytest.mark.parametrize("source_url", ["duckdb"], indirect=True)
def test_a_spec_change_reads_everyone_again(tmp_path, instance, emulator, source_url):
    assert _run(tmp_path, instance, emulator, source_url, ROWS).success
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (0, 5, 0, 0)
    retyped = {**ATTRIBUTES, "orders": {"column": "order_count", "type": "string"}}
    result = _run(tmp_path, instance, emulator, source_url, attributes=retyped)
    assert result.success and _figures(result) == (5, 0, 5, 5)
    assert _stored(emulator, "u1") == {"plan": "gold", "orders": "1"}
    assert _figures(_run(tmp_path, instance, emulator, source_url, attributes=retyped)) == (0, 5, 0, 0)


@pytest.mark.parametrize("source_url", ["duckdb", "postgresql"], indirect=True)
def test_a_user_who_left_is_still_cleared(tmp_path, instance, emulator, source_url):
    assert _run(tmp_path, instance, emulator, source_url, ROWS, on_delete="clear").success
    assert _figures(_run(tmp_path, instance, emulator, source_url, on_delete="clear")) == (0, 5, 0, 0)
    left = _run(tmp_path, instance, emulator, source_url, ROWS[:-1], on_delete="clear")
    metadata = push_metadata(left)
    assert left.success and (metadata["rows_read"], metadata["users_cleared"]) == (0, 1)
    assert _stored(emulator, "u5") == {"plan": None, "orders": None}


@pytest.mark.parametrize("source_url", ["duckdb"], indirect=True)
def test_a_full_resync_and_a_query_source(tmp_path, instance, emulator, source_url):
    query = {"url": source_url, "query": "SELECT * FROM users -- all of them"}
    assert _run(tmp_path, instance, emulator, source_url, ROWS, source=query).success
    assert _figures(_run(tmp_path, instance, emulator, source_url, source=query)) == (0, 5, 0, 0)
    resync = _run(
        tmp_path, instance, emulator, source_url, source=query, run_config=push_config(full_resync=True)
    )
    assert resync.success and push_metadata(resync)["users_delivered"] == 5
    # the full resync's rows were read with their digests: the next run reads nothing again
    assert _figures(_run(tmp_path, instance, emulator, source_url, source=query)) == (0, 5, 0, 0)


def test_sqlite_reads_every_row_as_before(tmp_path, instance, emulator):
    url = write_sqlite_table(tmp_path / "src.db", ROWS, columns=COLUMNS)
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url, attributes=ATTRIBUTES)])
    assert run_job(spec, "users_sync", instance).success
    again = run_job(spec, "users_sync", instance)
    assert _figures(again) == (5, 0, 0, 0)


def test_the_digest_of_a_table_moves_with_its_column_types(tmp_path):
    require_modules("duckdb", "duckdb", "duckdb_engine")
    url = f"duckdb:///{tmp_path / 'w.duckdb'}"
    execute(url, "CREATE TABLE users AS SELECT 'u1' AS user_uid, 1 AS n")
    source = SourceSpec.model_validate({"url": url, "table": "users"})
    before = SourceReader(source, ["user_uid", "n"]).read_digests("p")[DIGEST].tolist()
    execute(url, "DROP TABLE users", "CREATE TABLE users AS SELECT 'u1' AS user_uid, 1.0::DOUBLE AS n")
    assert SourceReader(source, ["user_uid", "n"]).read_digests("p")[DIGEST].tolist() != before
    sa.create_engine(url).dispose()


@pytest.mark.parametrize("source_url", ["duckdb"], indirect=True)
def test_rejected_rows_are_read_every_run_and_the_guard_counts_the_whole_source(
    tmp_path, instance, emulator, source_url
):
    rows = [*ROWS, dict(user_uid="u7", plan_name="gold", order_count="many"), dict(plan_name="gold")]
    for expected in ((7, 0, 5, 5), (2, 5, 0, 0)):  # the rejected rows hold no digest: read again
        result = _run(tmp_path, instance, emulator, source_url, rows)
        assert result.success and _figures(result) == expected
        assert push_metadata(result)["rows_rejected"] == 2
    shrunk = _run(tmp_path, instance, emulator, source_url, ROWS[:2])
    assert not shrunk.success
    failures = [event.step_failure_data.error.message for event in shrunk.all_events if event.is_step_failure]
    assert "the source returned 2 rows where the last run read 7" in "\n".join(failures)


@pytest.mark.parametrize("source_url", ["duckdb", "postgresql"], indirect=True)
def test_an_integer_uid_column(tmp_path, instance, emulator, source_url):
    execute(
        source_url,
        "DROP TABLE IF EXISTS users",
        "CREATE TABLE users (user_uid BIGINT, plan_name VARCHAR(100), order_count VARCHAR(100))",
        "INSERT INTO users VALUES (:user_uid, :plan_name, :order_count)",
        rows=[dict(user_uid=i, plan_name="gold", order_count=str(i)) for i in range(1, 6)],
    )
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (5, 0, 5, 5)
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (0, 5, 0, 0)
    execute(source_url, "UPDATE users SET plan_name = 'silver' WHERE user_uid = 3")
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (1, 4, 1, 1)
    assert _stored(emulator, "3") == {"plan": "silver", "orders": 3}


@pytest.mark.parametrize("source_url", ["duckdb"], indirect=True)
def test_a_user_a_merge_overwrote_is_read_and_resent_though_its_row_did_not_move(
    tmp_path, instance, emulator, source_url
):
    from contentstack_assets.engine.state import StateStore
    from contentstack_assets.spec import load_spec

    assert _run(tmp_path, instance, emulator, source_url, ROWS).success
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (0, 5, 0, 0)
    store = StateStore()
    store.mark_for_resend(store.key_of(load_spec(tmp_path / "syncs.yaml").get("users")), {"u2": "anon -> u2"})
    result = _run(tmp_path, instance, emulator, source_url)
    assert result.success and _figures(result) == (1, 4, 1, 1)
    assert push_metadata(result)["users_resent_after_merge"] == 1
    assert _figures(_run(tmp_path, instance, emulator, source_url)) == (0, 5, 0, 0)


def test_more_moved_rows_than_a_few_reads_by_uid_are_read_in_one_whole_read(
    tmp_path, instance, emulator, source_url, monkeypatch
):
    """Each read of a batch of uids is a scan of the table (the uid is compared trimmed, as text, so no index
    helps): past `WHOLE_BATCHES` batches one read of every row is cheaper, whatever share of the table moved
    (at 1M rows, 290,000 moved took 14.7 s by uid and 5.0 s whole)."""
    import os

    from contentstack_assets.engine import digests
    from contentstack_assets.engine.state import StateStore
    from contentstack_assets.spec import load_spec

    rows = [dict(user_uid=f"u{i}", plan_name="gold", order_count=str(i)) for i in range(1, 41)]
    assert _run(tmp_path, instance, emulator, source_url, rows).success
    monkeypatch.setattr(digests, "UID_BATCH", 2)
    monkeypatch.setattr(digests, "WHOLE_BATCHES", 3)
    sync = load_spec(str(tmp_path / "syncs.yaml")).get("users")
    store = StateStore(os.environ["CONTENTSTACK_STATE_URL"])
    for moved, read in ((6, 6), (7, 40)):  # 3 batches by uid; 4 would be: every row (7 of 40 is under 30%)
        _table(
            source_url, [{**row, "plan_name": "silver"} if i < moved else row for i, row in enumerate(rows)]
        )
        frame = digests.read_changed(sync, store, log=lambda line: None)
        assert len(frame) == read
        assert frame.attrs[digests.DIGEST_UNCHANGED] == 40 - read


def test_a_database_error_while_rows_are_fetched_is_one_paragraph(source_url):
    """The reader fetches from the driver's own cursor, whose errors SQLAlchemy does not wrap: a value that
    fails its query's cast after the first chunks still comes out as the source's one paragraph."""
    if source_url.startswith("mysql"):
        pytest.skip("MySQL casts 'x' to 0 with a warning: no value fails a cast")
    rows = [dict(user_uid=f"u{i}", plan_name="gold", order_count=str(i)) for i in range(3000)]
    _table(source_url, [*rows, dict(user_uid="bad", plan_name="gold", order_count="x")])
    query = "SELECT user_uid, CAST(order_count AS INTEGER) AS orders FROM users"
    source = SourceSpec.model_validate({"url": source_url, "query": query, "chunk_size": 1000})
    with pytest.raises(SourceError, match=r"\(query\): .*x"):
        SourceReader(source, ["user_uid", "orders"]).read()


SHARDED = [dict(user_uid=f"u{i}", plan_name="gold", order_count=str(i)) for i in range(1, 31)]


def _sharded(tmp_path, instance, emulator, url, rows=None, **overrides):
    return _run(tmp_path, instance, emulator, url, rows, shards=3, concurrency=6, **overrides)


def test_each_shard_of_a_rerun_reads_only_what_moved_of_its_own_users(
    tmp_path, instance, emulator, source_url
):
    """`shards: 3`: each shard scans the uids and digests of its own slice and reads whole only its moved,
    new and rejected rows; the shards' counts add up as the unsharded run's."""
    first = _sharded(tmp_path, instance, emulator, source_url, SHARDED)
    assert first.success and _figures(first) == (30, 0, 30, 30)
    again = _sharded(tmp_path, instance, emulator, source_url)
    assert again.success and _figures(again) == (0, 30, 0, 0)
    assert push_metadata(again)["users_unchanged"] == 30
    source = again.asset_materializations_for_node("users__source_users")[0].metadata
    assert (source["rows_read"].value, source["rows_digest_unchanged"].value) == (0, 30)
    assert source["source_rows"].value == 30

    # one moved, one new, one rejected (read every run): only they are read, the two sent
    rows = [
        *_with(SHARDED, "u7", plan_name="silver"),
        dict(user_uid="u31", plan_name="gold", order_count="31"),
        dict(user_uid="u32", plan_name="gold", order_count="x"),
    ]
    moved = _sharded(tmp_path, instance, emulator, source_url, rows)
    assert moved.success and _figures(moved) == (3, 29, 2, 2)
    assert push_metadata(moved)["rows_rejected"] == 1
    assert _stored(emulator, "u7") == {"plan": "silver", "orders": 7}
    assert _stored(emulator, "u31") == {"plan": "gold", "orders": 31}
    assert _figures(_sharded(tmp_path, instance, emulator, source_url)) == (1, 31, 0, 0)

    # a full resync sends every user, the unread ones read whole for it
    resync = _sharded(tmp_path, instance, emulator, source_url, run_config=push_config(full_resync=True))
    assert resync.success and push_metadata(resync)["users_delivered"] == 31
    assert _figures(_sharded(tmp_path, instance, emulator, source_url)) == (1, 31, 0, 0)


@pytest.mark.parametrize("source_url", ["duckdb", "postgresql"], indirect=True)
def test_a_user_who_left_is_cleared_by_its_shard_after_a_read_by_digests(
    tmp_path, instance, emulator, source_url
):
    assert _sharded(tmp_path, instance, emulator, source_url, SHARDED, on_delete="clear").success
    again = _sharded(tmp_path, instance, emulator, source_url, on_delete="clear")
    assert _figures(again) == (0, 30, 0, 0) and push_metadata(again)["users_cleared"] == 0
    left = _sharded(tmp_path, instance, emulator, source_url, SHARDED[:-1], on_delete="clear")
    metadata = push_metadata(left)
    assert left.success and (metadata["rows_read"], metadata["users_cleared"]) == (0, 1)
    assert _stored(emulator, "u30") == {"plan": None, "orders": None}
    assert _stored(emulator, "u29") == {"plan": "gold", "orders": 29}


@pytest.mark.parametrize("shards", [1, 3])
def test_odd_uids_are_read_by_their_own_shard_as_unsharded(tmp_path, instance, emulator, source_url, shards):
    """Uids the database trims otherwise than the rules (a tab), a duplicate spelled with a blank and a NULL
    uid: every shard's database read holds them, and only the shard the rules give each to keeps it, so a
    sharded rerun reads, rejects and leaves unread the rows an unsharded one does."""
    rows = [
        *SHARDED,
        dict(user_uid=" u5", plan_name="gold", order_count="5"),  # u5 twice: both rows rejected
        dict(user_uid=None, plan_name="gold", order_count="0"),
        dict(user_uid="\tu40", plan_name="gold", order_count="40"),  # u40, which TRIM leaves tabbed
    ]
    run = lambda rows=None: _run(  # noqa: E731
        tmp_path, instance, emulator, source_url, rows, shards=shards, concurrency=6
    )
    first = run(rows)
    assert first.success and _figures(first) == (33, 0, 30, 30)
    assert push_metadata(first)["rows_rejected"] == 3
    for _ in range(2):
        again = run()
        assert again.success and _figures(again) == (3, 30, 0, 0)
        assert push_metadata(again)["rows_rejected"] == 3
    # the tabbed row moved: TRIM does not find it by "u40", so the run (a sharded one: the shard of u40)
    # reads its whole slice again instead
    moved = run(_with(rows, "\tu40", plan_name="silver"))
    read, unread, sent, requests = _figures(moved)
    assert moved.success and (read + unread, sent, requests) == (33, 1, 1)
    assert read == 33 if shards == 1 else 4 < read < 33
    assert _stored(emulator, "u40") == {"plan": "silver", "orders": 40}


@pytest.mark.parametrize("source_url", ["duckdb"], indirect=True)
@pytest.mark.parametrize("before", [1, 2])
def test_a_read_by_digests_pushed_in_another_number_of_shards_says_to_read_again(
    tmp_path, instance, emulator, source_url, before
):
    """What each shard of a read by digests left unread is known only in as many shards: a push re-executed
    alone after `shards` changed would take the unread users of the whole source for each shard's own (and
    a full resync would not send them). It stops and says to read again."""
    from contentstack_assets.definitions import build_definitions
    from contentstack_assets.spec import load_spec

    assert _run(tmp_path, instance, emulator, source_url, SHARDED, shards=before, concurrency=6).success
    assert _figures(_run(tmp_path, instance, emulator, source_url, shards=before, concurrency=6))[:2] == (
        0,
        30,
    )
    sync = users_sync(source_url, emulator.url, attributes=ATTRIBUTES, shards=3, concurrency=6)
    job = build_definitions(load_spec(write_spec(tmp_path / "syncs.yaml", [sync]))).resolve_job_def(
        "users_sync"
    )
    result = job.execute_in_process(
        instance=instance,
        asset_selection=[dg.AssetKey(["users", "personalize_users"])],
        run_config=push_config(full_resync=True),
        raise_on_error=False,
    )
    failure = next(event for event in result.all_events if event.is_step_failure)
    message = failure.step_failure_data.error.message
    assert "another number of shards than the spec's `shards: 3`" in message
    assert "materialize source_users again" in message
