"""What differs between databases, kept apart from the reader: one engine per URL (DuckDB's connections
closed after each read and its buffer pool bounded, MySQL/MariaDB sessions in UTC), the driver's own errors, a
SQLite file that must exist, DuckDB's column types, SQLite's renamed repeats, rtrim's arity, and per dialect
the SQL of a row's partition day and of its value as a number (the sensor's per-day digests).
"""

from __future__ import annotations

import functools
import os
import re
import warnings
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

import sqlalchemy as sa

from contentstack_assets.engine.source.errors import SourceError, _missing_driver
from contentstack_assets.engine.source.shards import SQLITE_FUNCTION, sqlite_uid_shard
from contentstack_assets.spec import SourceSpec

_INTEGER_TEXT = re.compile(r"-?[0-9]+")
# dialects whose rtrim takes no second argument (the characters to trim): reads by text match text only there
_RTRIM_ONE_ARGUMENT = frozenset({"mysql", "mariadb", "mssql", "databricks"})  # Spark: rtrim(trim, str)
_MYSQL = frozenset({"mysql", "mariadb"})
# the most values one IN list may hold ("maximum number of expressions in a list exceeded, expected at most
# 16,384"): a longer list is split into IN lists joined by OR
_IN_LIST_MAX = {"snowflake": 16_384}
# zoned timestamp types whose SQLAlchemy class has no `timezone` flag (snowflake-sqlalchemy's)
_ZONED_TYPE_NAMES = frozenset({"TIMESTAMP_TZ", "TIMESTAMP_LTZ"})
# DuckDB runs in this process, and its buffer pool keeps every block a read touches up to its memory_limit (80%
# of the machine's memory by default): one scan of a 10M-row table leaves ~230 MiB in the sync's process, a
# 100M-row one ten times that. The sync's reads stream (no sort, no join: a projection, a filter, a hash), so
# the sync's own connections bound the pool and DuckDB evicts what they have read; a URL that sets
# memory_limit (`duckdb:///f.duckdb?memory_limit=1GB`) keeps its own. A scan pins a 256 KiB block per column
# and thread (8 columns on 64 threads fail under 96 MB), hence a share per thread.
DUCKDB_READ_MEMORY_MIB = 64
DUCKDB_THREAD_MEMORY_MIB = 16  # 64 columns a thread (measured: 8 columns take 1.5-2 MiB)


@functools.lru_cache(maxsize=32)
def _engine(url: str) -> sa.Engine:
    # one engine (one connection pool) per URL for the life of the process; a DuckDB file is locked by any
    # open connection (another process cannot write it), so its connections close as soon as a read ends
    backend = sa.engine.make_url(url).get_backend_name()
    if backend == "duckdb":
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        if "memory_limit" not in sa.engine.make_url(url).query:
            sa.event.listen(engine, "do_connect", _duckdb_bounded)
        return engine
    engine = sa.create_engine(url, pool_pre_ping=True)
    if backend == "sqlite":
        sa.event.listen(engine, "connect", _sqlite_functions)
    if backend in _MYSQL:
        # a TIMESTAMP comes back in the session's time zone, naive: the server's default may be any zone,
        # and naive means UTC here, so every session reads (and the window compares) in UTC
        sa.event.listen(engine, "connect", _mysql_session_in_utc)
    return engine


def duckdb_read_memory(threads: object = None) -> str:
    """The bound of DuckDB's buffer pool on the sync's connections: `DUCKDB_READ_MEMORY_MIB`, or more with
    many threads (the URL's `threads`, else DuckDB's default, one a core)."""
    count = int(threads) if threads else (os.cpu_count() or 1)
    return f"{max(DUCKDB_READ_MEMORY_MIB, DUCKDB_THREAD_MEMORY_MIB * count)}MB"


def _duckdb_bounded(dialect: sa.Dialect, _record: object, cargs: tuple, cparams: dict) -> object | None:
    """A DuckDB connection whose database's buffer pool is bounded (`duckdb_read_memory`); None (connect as
    the URL says) when this process already has the file open with settings of its own, which DuckDB
    refuses to mix (a user's dagster-duckdb resource, say)."""
    import duckdb

    config = dict(cparams.get("config", {}))
    config["memory_limit"] = duckdb_read_memory(
        config.get("threads") or cparams.get("url_config", {}).get("threads")
    )
    try:
        return dialect.connect(*cargs, **{**cparams, "config": config})
    except duckdb.ConnectionException as error:
        if "different configuration" not in str(error):
            raise
        return None


def _sqlite_functions(dbapi_connection: object, _record: object) -> None:
    # a shard's read of its own rows (`shards: N`, engine/source/shards.py)
    dbapi_connection.create_function(SQLITE_FUNCTION, 2, sqlite_uid_shard, deterministic=True)


def _mysql_session_in_utc(dbapi_connection: object, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("SET time_zone = '+00:00'")
    finally:
        cursor.close()


def engine_for(source: SourceSpec) -> sa.Engine:
    _check_sqlite_file(source)
    try:
        return _engine(source.url.get_secret_value())
    except (ImportError, sa.exc.NoSuchModuleError) as error:
        raise SourceError(_missing_driver(source, error)) from None


def driver_error(source: SourceSpec) -> type[Exception]:
    """The base of the driver's own errors (PEP 249's `Error`): a fetch from the driver's cursor, the
    reader's fast path, raises them as they are, not wrapped by SQLAlchemy."""
    return getattr(engine_for(source).dialect.loaded_dbapi, "Error", sa.exc.SQLAlchemyError)


def _check_sqlite_file(source: SourceSpec) -> None:
    """A SQLite source must name an existing file: SQLite would create an empty one on connect, and the read
    would then blame a missing table for what is a mistyped path."""
    url = sa.engine.make_url(source.url.get_secret_value())
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return
    if database.startswith("file:"):  # a URI filename (`?uri=true`): file:PATH?mode=...
        if url.query.get("mode") == "memory" or "mode=memory" in database:
            return
        database = database.removeprefix("file:").split("?", 1)[0]
    if not Path(database).exists():
        raise SourceError(
            f"source {source.display_url}: the SQLite database file {database} does not exist "
            "(check source.url; a relative path is relative to the spec file)"
        )


def is_zoned_type(declared: sa.types.TypeEngine | None) -> bool:
    """Whether a declared column type holds instants with their zone (a timestamptz, a TIMESTAMP_TZ)."""
    return bool(getattr(declared, "timezone", False) or type(declared).__name__ in _ZONED_TYPE_NAMES)


def text_in_condition(column: sa.ColumnElement, values: Sequence[str], dialect: str) -> sa.ColumnElement:
    """The condition that the column, as trimmed text, is one of the values (ids arrive as text, the column
    may be an integer), or for a value that is an integer's text, a number with a zero fraction."""
    text = sa.func.trim(sa.cast(column, sa.String))
    condition = _in(text, list(values), dialect)
    integers = [value for value in values if _INTEGER_TEXT.fullmatch(value)]
    if integers and dialect not in _RTRIM_ONE_ARGUMENT:
        # a number stored with a fraction (SQLite's REAL 42.0, a numeric(10,2) 42.00) is id "42" but
        # its text is "42.0": also compare that text without the zeros of its fraction
        whole = sa.func.rtrim(sa.func.rtrim(text, sa.literal("0")), sa.literal("."))
        condition = sa.or_(condition, _in(sa.case((text.like(sa.literal("%.%")), whole)), integers, dialect))
    return condition


def _in(expression: sa.ColumnElement, values: list[str], dialect: str) -> sa.ColumnElement:
    most = _IN_LIST_MAX.get(dialect, len(values)) or 1
    parts = [expression.in_(values[start : start + most]) for start in range(0, len(values), most)]
    return sa.or_(*parts) if len(parts) > 1 else expression.in_(values)


def day_and_sum(
    column: sa.ColumnElement,
    dialect: str,
    *,
    epoch_scale: int | None,
    zoned: bool,
    declared: sa.types.TypeEngine | None,
) -> tuple[sa.ColumnElement, sa.ColumnElement | None]:
    """The expression of a value's partition day, and of the value as a number (None: no such sum).

    `epoch_scale`: 1 or 1000 for a column of epoch (milli)seconds; `zoned`: the column holds instants with
    their zone; `declared`: the column's declared type, for a table (None for a query)."""
    text = isinstance(declared, sa.String)  # a declared text type (a query's columns declare none)
    if epoch_scale is not None:
        seconds_per_day = 86_400 * epoch_scale
        return sa.cast(sa.func.floor(column / seconds_per_day), sa.BigInteger), column
    if dialect == "sqlite":
        # the window compares the stored text with bare dates: a row belongs to the day its text starts with
        return sa.func.substr(column, 1, 10), sa.func.julianday(column)
    if dialect == "postgresql":
        if zoned:
            utc = sa.func.timezone("UTC", column)
            return sa.cast(utc, sa.Date), sa.func.extract("epoch", column)
        if text:
            return sa.func.substr(column, 1, 10), None
        return sa.cast(column, sa.Date), sa.func.extract("epoch", column)
    if dialect in _MYSQL:
        if text:
            return sa.func.substr(column, 1, 10), None
        # the session is in UTC (see _engine): a TIMESTAMP's day is its UTC day; a zero date has none
        micros = sa.func.to_seconds(column) * 1_000_000 + sa.func.microsecond(column)
        return sa.cast(column, sa.Date), micros
    if dialect == "snowflake" and not text:
        # a TIMESTAMP_TZ keeps each value's own offset, a TIMESTAMP_LTZ the session's: cast to a date,
        # either is the local day; CONVERT_TIMEZONE('UTC', x) makes it the UTC day
        day_of = sa.func.convert_timezone("UTC", column) if zoned else column
        return sa.cast(day_of, sa.Date), sa.func.date_part(sa.literal_column("epoch_microsecond"), column)
    if dialect == "duckdb":
        if text:
            return sa.func.substr(column, 1, 10), None
        # a TIMESTAMPTZ is cast to a date in the session's zone (the machine's by default): take UTC's
        day_of = sa.func.timezone("UTC", column) if zoned else column
        return sa.cast(day_of, sa.Date), sa.func.epoch_us(column)
    return sa.cast(column, sa.Date), None


# DuckDB's information_schema type names for the partition column's declared type (duckdb-engine's own
# reflection queries PostgreSQL catalogs DuckDB lacks under SQLAlchemy 2.1)
_DUCKDB_TYPES: tuple[tuple[str, Callable[[], sa.types.TypeEngine]], ...] = (
    ("TIMESTAMP WITH TIME ZONE", lambda: sa.TIMESTAMP(timezone=True)),
    ("TIMESTAMP", sa.TIMESTAMP),
    ("DATE", sa.Date),
    ("VARCHAR", sa.String),
    ("DECIMAL", sa.Numeric),
    ("DOUBLE", sa.Float),
    ("FLOAT", sa.Float),
    ("BIGINT", sa.BigInteger),
    ("INTEGER", sa.Integer),
    ("SMALLINT", sa.Integer),
    ("TINYINT", sa.Integer),
    ("HUGEINT", sa.BigInteger),
    ("UBIGINT", sa.BigInteger),
    ("UINTEGER", sa.Integer),
)


def _table_columns(connection: sa.Connection, table: str, schema: str | None) -> dict[str, dict]:
    """The table's columns by name, each with its declared `type`; NoSuchTableError when it is absent."""
    if connection.dialect.name != "duckdb":
        inspector = sa.inspect(connection)
        with warnings.catch_warnings():
            # snowflake-sqlalchemy answers a missing table with no columns and this warning (it swallows the
            # error of its DESC TABLE): the table is missing, not its columns, and that is said once, below
            warnings.filterwarnings("ignore", "Failed to reflect table", sa.exc.SAWarning)
            found = inspector.get_columns(table, schema=schema)
        if not found and not inspector.has_table(table, schema=schema):
            raise sa.exc.NoSuchTableError(table)
        return {column["name"]: column for column in found}
    columns = sa.table(
        "columns",
        sa.column("table_name"),
        sa.column("table_schema"),
        sa.column("column_name"),
        sa.column("data_type"),
        sa.column("ordinal_position"),
        schema="information_schema",
    )
    in_schema = sa.bindparam("schema", schema) if schema else sa.func.current_schema()
    statement = (
        sa.select(columns.c.column_name, columns.c.data_type)
        .where(columns.c.table_name == sa.bindparam("table", table), columns.c.table_schema == in_schema)
        .order_by(columns.c.ordinal_position)
    )
    rows = connection.execute(statement).all()
    if not rows:
        raise sa.exc.NoSuchTableError(table)
    return {name: {"name": name, "type": _duckdb_type(data_type)} for name, data_type in rows}


def _duckdb_type(data_type: str) -> sa.types.TypeEngine:
    upper = data_type.upper()
    for prefix, kind in _DUCKDB_TYPES:
        if upper.startswith(prefix):
            return kind()
    return sa.types.NullType()


def _repeated_names(names: Sequence[str], dialect: str) -> set[str]:
    """The column names a result holds more than once. SQLite renames the repeats of a subquery's column
    `name:1`, `name:2`... and answers `name` with the first."""
    repeated = {name for name, times in Counter(names).items() if times > 1}
    if dialect == "sqlite":
        for name in names:
            base, colon, suffix = name.rpartition(":")
            if colon and suffix.isdigit() and base in names:
                repeated.add(base)
    return repeated
