"""Snowflake without an account: a fakesnow server (the Snowflake HTTP protocol on a local port, backed by
DuckDB) in this process, and snowflake-sqlalchemy's engine pointed at it. The real connector
(snowflake-connector-python 4) logs in and runs every statement over HTTP; only where it connects is changed:
a `do_connect` listener on the dialect adds host, port and `protocol=http` (snowflake-sqlalchemy refuses
those in a URL's query string), so the URLs the project reads are plain `snowflake://user:pw@account/db/schema`.

These tests run in the Makefile's second environment (.venv-warehouses); in the project's own they skip with
the reason (fakesnow is not importable there), and on CI in .venv-warehouses a missing package fails."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from tests.integration.warehouses import require_warehouses_venv

FAKESNOW_MODULES = ("fakesnow", "snowflake.sqlalchemy", "uvicorn", "starlette")


@pytest.fixture(scope="session")
def fakesnow_server() -> Iterator[dict]:
    """A fakesnow server for the session (its databases live in one shared in-memory DuckDB), and every
    snowflake-sqlalchemy connection of the process routed to it."""
    require_warehouses_venv("snowflake,fakesnow", *FAKESNOW_MODULES)
    import fakesnow
    from snowflake.sqlalchemy.snowdialect import SnowflakeDialect

    with _null_timestamps_sent_as_null(), fakesnow.server() as params:

        def route(_dialect, _record, _cargs, cparams: dict) -> None:
            cparams.update(
                host=params["host"],
                port=params["port"],
                protocol=params["protocol"],
                session_parameters=params["session_parameters"],
            )

        sa.event.listen(SnowflakeDialect, "do_connect", route)
        try:
            yield params
        finally:
            sa.event.remove(SnowflakeDialect, "do_connect", route)


@contextlib.contextmanager
def _null_timestamps_sent_as_null() -> Iterator[None]:
    """fakesnow 0.12.1's server encodes a TIMESTAMP_NTZ/_TZ/_LTZ result column as Snowflake's Arrow struct
    (epoch, fraction[, timezone]) without the struct's null mask, so a NULL timestamp reaches the connector
    as epoch 0 (1970-01-01T00:00:00), which Snowflake never sends. Its encoder, with the mask added: the one
    change made to the fake, so that it answers as Snowflake does."""
    import fakesnow.arrow
    import pyarrow as pa
    import pyarrow.compute as pc

    encode = fakesnow.arrow.timestamp_to_sf_struct

    def with_nulls(ts: pa.Array | pa.ChunkedArray) -> pa.Array:
        ts = ts.combine_chunks() if isinstance(ts, pa.ChunkedArray) else ts
        struct = encode(ts)
        children = [struct.field(index) for index in range(struct.type.num_fields)]
        return pa.StructArray.from_arrays(children, fields=list(struct.type), mask=pc.is_null(ts))

    fakesnow.arrow.timestamp_to_sf_struct = with_nulls
    try:
        yield
    finally:
        fakesnow.arrow.timestamp_to_sf_struct = encode


@pytest.fixture
def snowflake_url(fakesnow_server) -> Iterator[str]:
    """A fresh database of its own (and its schema ANALYTICS) on the fakesnow server; yields its URL, as a user writes
    one for Snowflake."""
    from contentstack_assets.engine.source import _engine

    database = f"CS_{uuid.uuid4().hex[:10].upper()}"
    admin = sa.create_engine("snowflake://fake:snow@fakesnow", poolclass=sa.pool.NullPool)
    with admin.begin() as connection:
        connection.execute(sa.text(f"CREATE DATABASE {database}"))
        connection.execute(sa.text(f"CREATE SCHEMA {database}.ANALYTICS"))
    url = f"snowflake://fake:snow@fakesnow/{database}/analytics"
    admin.dispose()
    try:
        yield url
    finally:
        _engine(url).dispose()  # the database stays (fakesnow has no DROP DATABASE) until the session ends
