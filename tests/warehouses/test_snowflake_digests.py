"""Change detection in Snowflake (engine/source/digests.py), through snowflake-sqlalchemy and the real
connector against the fakesnow server: the scenarios of tests/integration/test_source_digests.py, each run
here on Snowflake (a rerun reads only what moved and sends nothing else; a duplicate; a failed user; NULL,
the empty text and the text 'NULL'; a user who left; a wide change read whole), and the values Snowflake's
`HASH` takes alike by their value, told apart by their text.

fakesnow runs the SQL on DuckDB: these tests prove what the expression computes there and that Snowflake's
SQL for it is valid; what `HASH` takes alike on Snowflake itself is its documentation's (the module)."""

from __future__ import annotations

from contentstack_assets.engine.source import SourceReader
from contentstack_assets.engine.source.digests import DIGEST, can_digest
from contentstack_assets.spec import SourceSpec
from tests.integration import test_source_digests as scenarios
from tests.integration.warehouses import execute


def test_a_rerun_reads_only_what_moved(tmp_path, instance, emulator, snowflake_url):
    scenarios.test_a_rerun_reads_only_what_moved(tmp_path, instance, emulator, snowflake_url)


def test_the_same_row_given_twice_is_read_and_rejected(tmp_path, instance, emulator, snowflake_url):
    scenarios.test_the_same_row_given_twice_is_read_and_rejected(tmp_path, instance, emulator, snowflake_url)


def test_a_failed_user_is_retried_though_its_row_did_not_move(tmp_path, instance, emulator, snowflake_url):
    scenarios.test_a_failed_user_is_retried_though_its_row_did_not_move(
        tmp_path, instance, emulator, snowflake_url
    )


def test_nulls_empty_text_and_the_text_null_hash_apart(snowflake_url):
    scenarios.test_nulls_empty_text_and_the_text_null_hash_apart(snowflake_url)


def test_a_spec_change_reads_everyone_again(tmp_path, instance, emulator, snowflake_url):
    scenarios.test_a_spec_change_reads_everyone_again(tmp_path, instance, emulator, snowflake_url)


def test_a_user_who_left_is_still_cleared(tmp_path, instance, emulator, snowflake_url):
    scenarios.test_a_user_who_left_is_still_cleared(tmp_path, instance, emulator, snowflake_url)


def test_a_full_resync_and_a_query_source(tmp_path, instance, emulator, snowflake_url):
    scenarios.test_a_full_resync_and_a_query_source(tmp_path, instance, emulator, snowflake_url)


def test_more_moved_rows_than_a_few_reads_by_uid_are_read_in_one_whole_read(
    tmp_path, instance, emulator, snowflake_url, monkeypatch
):
    scenarios.test_more_moved_rows_than_a_few_reads_by_uid_are_read_in_one_whole_read(
        tmp_path, instance, emulator, snowflake_url, monkeypatch
    )


def test_snowflake_hashes_rows():
    assert can_digest("snowflake")


def test_values_snowflakes_hash_takes_alike_hash_apart(snowflake_url):
    """Each row differs from the first in one value only, one the mapping tells apart: a float's -0 and a
    float in its last bit, a NULL, an empty text, a text with a blank, a
    timestamp by a microsecond, a value inside a VARIANT. Every row has a digest of its own, the same on the
    narrow read and the whole one, and within 63 bits (Snowflake's HASH is signed, DuckDB's unsigned)."""
    execute(
        snowflake_url,
        "CREATE TABLE USERS (USER_UID VARCHAR, RATIO FLOAT, PRICE NUMBER(10,2), NAME VARCHAR, "
        "SEEN TIMESTAMP_NTZ, PROFILE VARIANT)",
        "INSERT INTO USERS SELECT 'u', 0.0::FLOAT, 1.50, 'A', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', -0.0::FLOAT, 1.50, 'A', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.1::FLOAT, 1.50, 'A', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.30000000000000004::FLOAT, 1.50, 'A', "
        "'2024-01-01 00:00:00'::TIMESTAMP_NTZ, PARSE_JSON('{\"a\": 1, \"b\": 2}')",
        "INSERT INTO USERS SELECT 'u', 0.3::FLOAT, 1.50, 'A', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.0::FLOAT, NULL, 'A', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.0::FLOAT, 1.50, '', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.0::FLOAT, 1.50, 'A ', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.0::FLOAT, 1.50, 'a', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.0::FLOAT, 1.50, 'A', '2024-01-01 00:00:00.000001'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 2}\')',
        "INSERT INTO USERS SELECT 'u', 0.0::FLOAT, 1.50, 'A', '2024-01-01 00:00:00'::TIMESTAMP_NTZ, "
        'PARSE_JSON(\'{"a": 1, "b": 3}\')',
    )
    columns = ["user_uid", "ratio", "price", "name", "seen", "profile"]
    table = SourceSpec.model_validate({"url": snowflake_url, "table": "users"})
    digests = SourceReader(table, columns).read_digests("prefix")[DIGEST].tolist()
    assert len(set(digests)) == 11
    assert all(0 <= digest < 2**63 for digest in digests)
    whole = SourceReader(table, columns).read(digest="prefix")
    assert sorted(whole[DIGEST].tolist()) == sorted(digests)


def test_a_read_of_more_uids_than_one_in_list_holds(snowflake_url):
    """A rerun reads up to 20,000 moved uids at a time, past Snowflake's 16,384 values of one IN list: the
    read through the lists `text_in_condition` splits them into gives every wanted row, and no other.
    fakesnow has no such limit (the compile test in test_source_dialects.py holds the split to it)."""
    execute(
        snowflake_url,
        "CREATE TABLE USERS AS SELECT 'u' || SEQ4() AS USER_UID, 'gold' AS PLAN_NAME "
        "FROM TABLE(GENERATOR(ROWCOUNT => 20001))",
    )
    wanted = [f"u{number}" for number in range(20_000)]
    source = SourceSpec.model_validate({"url": snowflake_url, "table": "users"})
    read = SourceReader(source, ["user_uid", "plan_name"]).read(text_in=("user_uid", wanted))
    assert sorted(read["user_uid"]) == sorted(wanted)
