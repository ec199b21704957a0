"""Chunked reads of a source table or query through SQLAlchemy.

Values come back exactly as the database driver returns them (object columns: `None` stays distinct from
a float NaN, text dates stay text) because conversion is the job of `convert/`, judged on the stored value.
Table, schema and column names are SQLAlchemy identifiers, quoted by the dialect and never formatted into
SQL text (bound values get fixed parameter names, never ones derived from a column name); a `query:` is
wrapped as a subquery so the window filter and column list still go through SQLAlchemy.
A partition column of epoch numbers (seconds or milliseconds, told apart by their size) is compared with
epoch numbers; one of timestamps or ISO text, with timestamps or dates.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pandas._libs.lib import to_object_array_tuples  # C transposition of row tuples

from contentstack_assets.spec import SourceSpec
from contentstack_assets.urls import scrub

PROGRESS_EVERY_S = 2.0
# epoch seconds reach 10^11 only in the year 5138, milliseconds passed it in 1973; above 10^14 (milliseconds of
# 5138) they would be micro- or nanoseconds, which are refused
EPOCH_MILLISECONDS_FROM = 10**11
EPOCH_MILLISECONDS_BELOW = 10**14
_DIGITS_TEXT = re.compile(r"\s*[+-]?[0-9]+(?:\.[0-9]*)?\s*")
_INTEGER_TEXT = re.compile(r"-?[0-9]+")
# dialects whose rtrim takes no second argument (the characters to trim): reads by text match text only there
_RTRIM_ONE_ARGUMENT = frozenset({"mysql", "mariadb", "mssql", "databricks"})  # Spark: rtrim(trim, str)


class SourceError(RuntimeError):
    """The source cannot be read as the spec says: the message names the URL (masked), table and column."""


@dataclass(frozen=True)
class Window:
    """A half-open range of UTC time [start, end) on the partition column."""

    start: dt.datetime
    end: dt.datetime


# the extra of this package that installs each warehouse's SQLAlchemy dialect and driver
# (`pip install 'contentstack_assets[EXTRA]'`), by the URL's backend name
DRIVER_EXTRAS = {
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "duckdb": "duckdb",
    "snowflake": "snowflake",
    "bigquery": "bigquery",
    "redshift": "redshift",
    "databricks": "databricks",
}
# the driver each extra brings, where the dialect's default driver is another one: the URL must name it
_EXTRA_DRIVERS = {"mysql": "pymysql", "mariadb": "pymysql", "redshift": "redshift_connector"}
_MYSQL = frozenset({"mysql", "mariadb"})
# zoned timestamp types whose SQLAlchemy class has no `timezone` flag (snowflake-sqlalchemy's)
_ZONED_TYPE_NAMES = frozenset({"TIMESTAMP_TZ", "TIMESTAMP_LTZ"})


@functools.lru_cache(maxsize=32)
def _engine(url: str) -> sa.Engine:
    # one engine (one connection pool) per URL for the life of the process; a DuckDB file is locked by any
    # open connection (another process cannot write it), so its connections close as soon as a read ends
    backend = sa.engine.make_url(url).get_backend_name()
    if backend == "duckdb":
        return sa.create_engine(url, poolclass=sa.pool.NullPool)
    engine = sa.create_engine(url, pool_pre_ping=True)
    if backend in _MYSQL:
        # a TIMESTAMP comes back in the session's time zone, naive: the server's default may be any zone,
        # and naive means UTC here, so every session reads (and the window compares) in UTC
        sa.event.listen(engine, "connect", _mysql_session_in_utc)
    return engine


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


def _missing_driver(source: SourceSpec, error: Exception) -> str:
    """What to install for a URL whose SQLAlchemy dialect or driver is absent."""
    url = sa.engine.make_url(source.url.get_secret_value())
    backend = url.get_backend_name()
    what = f"source {source.display_url}: no SQLAlchemy driver for {url.drivername!r} ({error})"
    extra = DRIVER_EXTRAS.get(backend)
    if extra is None:
        return f"{what}: install the package that provides this SQLAlchemy dialect and its driver"
    advice = f"{what}: pip install 'contentstack_assets[{extra}]'"
    driver = _EXTRA_DRIVERS.get(backend)
    if driver and url.drivername.partition("+")[2] != driver:
        advice += f", and name its driver in the URL: {backend}+{driver}://..."
    return advice


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


def _reason(source: SourceSpec, error: Exception) -> str:
    original = getattr(error, "orig", None) or error
    lines = str(original).strip().splitlines()
    return scrub(lines[0] if lines else type(original).__name__, source.url.get_secret_value())


class SourceReader:
    """Reads the columns a sync needs from one source, optionally within a time window."""

    def __init__(self, source: SourceSpec, columns: Sequence[str]):
        self.source = source
        self.columns = list(dict.fromkeys(columns))  # keep order, drop repeats
        self._window_column_has_tz = False
        self._window_column_type: sa.types.TypeEngine | None = None  # the declared type, for a table
        self._epoch_scale: int | None = None  # 1 or 1000 for a partition column of epoch (milli)seconds
        self._window_column_text = False  # a query's partition column seen holding text
        self._dialect = ""  # the name of the dialect `_relation` was read with

    @contextlib.contextmanager
    def _database_errors(self) -> Iterator[None]:
        """A database error as one SourceError naming the source (password masked) and its table."""
        try:
            yield
        except SourceError:
            raise
        except sa.exc.SQLAlchemyError as error:
            raise SourceError(
                f"source {self.source.display_url} ({self.source.relation}): {_reason(self.source, error)}"
            ) from None

    # -- the statement ------------------------------------------------------------------------------
    def _relation(self, connection: sa.Connection) -> sa.FromClause:
        source = self.source
        self._dialect = connection.dialect.name
        if source.table is not None:
            try:
                found = _table_columns(connection, source.table, source.db_schema)
            except sa.exc.NoSuchTableError:
                raise SourceError(
                    f"source {source.display_url}: table {source.relation!r} does not exist"
                ) from None
            missing = [column for column in self.columns if column not in found]
            if missing:
                raise SourceError(
                    f"source {source.display_url}: table {source.relation!r} has no column "
                    f"{', '.join(repr(c) for c in missing)} (it has: {', '.join(found)})"
                )
            window_column = source.partition_column
            if window_column:
                self._window_column_type = found[window_column]["type"]
                self._window_column_has_tz = bool(
                    getattr(self._window_column_type, "timezone", False)
                    or type(self._window_column_type).__name__ in _ZONED_TYPE_NAMES
                )
            return self._table()
        # a query: learn its columns from an empty read, then wrap it as a subquery
        query = _one_statement(source)
        probe = (
            sa.select(sa.literal_column("*")).select_from(sa.text(query).columns().subquery("src")).limit(0)
        )
        result_columns = list(connection.execute(probe).keys())
        # only a repeated name the sync reads is refused: `SELECT a.*, b.*` may repeat an `id` it never reads
        repeated = _repeated_names(result_columns, connection.dialect.name)
        ambiguous = [column for column in self.columns if column in repeated]
        if ambiguous:
            raise SourceError(
                f"source {source.display_url}: the query returns more than one column named "
                f"{', '.join(repr(c) for c in ambiguous)}: alias them (`AS`) so that each column the sync "
                "reads has a name of its own"
            )
        missing = [column for column in self.columns if column not in result_columns]
        if missing:
            raise SourceError(
                f"source {source.display_url}: the query returns no column "
                f"{', '.join(repr(c) for c in missing)} (it returns: {', '.join(result_columns)})"
            )
        return sa.text(query).columns(*(sa.column(c) for c in self.columns)).subquery("src")

    def _table(self) -> sa.TableClause:
        return sa.table(
            self.source.table, *(sa.column(c) for c in self.columns), schema=self.source.db_schema
        )

    def _statement(
        self,
        relation: sa.FromClause,
        window: Window | None,
        text_in: tuple[str, Sequence[str]] | None = None,
        dialect: str = "",
    ) -> sa.Select:
        statement = sa.select(*(relation.c[c] for c in self.columns))
        if text_in is not None:
            # ids arrive as text, the column may be an integer: compare the column's trimmed text
            column_name, values = text_in
            text = sa.func.trim(sa.cast(relation.c[column_name], sa.String))
            condition = text.in_(list(values))
            integers = [value for value in values if _INTEGER_TEXT.fullmatch(value)]
            if integers and dialect not in _RTRIM_ONE_ARGUMENT:
                # a number stored with a fraction (SQLite's REAL 42.0, a numeric(10,2) 42.00) is id "42" but
                # its text is "42.0": also compare that text without the zeros of its fraction
                whole = sa.func.rtrim(sa.func.rtrim(text, sa.literal("0")), sa.literal("."))
                condition = sa.or_(condition, sa.case((text.like(sa.literal("%.%")), whole)).in_(integers))
            statement = statement.where(condition)
        if window is not None:
            column = relation.c[self.source.partition_column]
            # fixed parameter names: SQLAlchemy would name them after the (spec-given) column otherwise
            statement = statement.where(
                column >= sa.bindparam("window_start", self._bound_time(window.start)),
                column < sa.bindparam("window_end", self._bound_time(window.end)),
            )
        return statement

    def _bound_time(self, moment: dt.datetime) -> dt.datetime | str | int:
        """A UTC instant as the partition column compares it.

        SQLite stores timestamps as text and compares text: '2024-01-05 00:00:00.000000' (SQLAlchemy's
        rendering of a datetime) sorts after '2024-01-05 00:00:00' and '2024-01-05', which would put a row
        at midnight into the day before. A day boundary is bound as the bare date, which sorts before every
        text of that day, whatever its separator or precision. Typed columns get a datetime, naive (UTC)
        for a naive column, aware for a timestamptz; a column of epoch numbers gets its epoch number.
        """
        utc = moment.astimezone(dt.UTC)
        if self._epoch_scale is not None:
            return int(utc.timestamp()) * self._epoch_scale
        if self._dialect == "sqlite" or self._compares_as_text():
            aligned = utc.time() == dt.time(0)
            return utc.strftime("%Y-%m-%d") if aligned else utc.strftime("%Y-%m-%d %H:%M:%S")
        return utc if self._window_column_has_tz else utc.replace(tzinfo=None)

    def _compares_as_text(self) -> bool:
        """Whether the partition column holds text (declared, or seen by `_detect_epoch` in a query's
        result): PostgreSQL and DuckDB refuse to compare text with a timestamp, MySQL compares it as text.
        Such a column is bound as SQLite's is: text, a bare date for a day boundary."""
        return self._window_column_text or isinstance(self._window_column_type, sa.String)

    def _detect_epoch(self, connection: sa.Connection, relation: sa.FromClause) -> None:
        """Whether the partition column holds epoch numbers, and in which unit (sets `_epoch_scale`).

        SQLite keeps each value's own type and sorts every number before every text, so its min and max tell
        numbers, text, or both; elsewhere a column has one type: a declared timestamp, date or text type
        needs no read, else one value says. Numbers beside text, or numbers stored as text, cannot be
        compared with a window: the spec is refused.
        """
        self._epoch_scale = None
        source = self.source
        column_name = source.partition_column
        column = relation.c[column_name]
        if connection.dialect.name == "sqlite":
            statement = sa.select(sa.func.min(column), sa.func.max(column))
        elif self._window_column_type is not None and not isinstance(
            self._window_column_type, (sa.Integer, sa.Numeric, sa.types.NullType)
        ):
            return
        else:
            statement = sa.select(column).limit(1)
        row = connection.execute(statement.where(column.is_not(None))).first()
        if row is None or row[0] is None:
            return
        values = list(row)
        if any(isinstance(value, dt.datetime) and value.tzinfo is not None for value in values):
            # a `query:` over a zoned column (its type is not declared): bind the window as an instant, or
            # the driver would shift a naive bound by the session's time zone
            self._window_column_has_tz = True
        numbers = [_is_number(value) for value in values]
        where = f"source {source.display_url} ({source.relation}): the partition column {column_name!r}"
        if any(numbers) and not all(numbers):
            raise SourceError(
                f"{where} holds both numbers ({values[numbers.index(True)]!r}) and text or other values "
                f"({values[numbers.index(False)]!r}); it must hold timestamps, ISO-8601 text or epoch numbers "
                "only, one kind"
            )
        if not any(numbers):
            self._window_column_text = all(isinstance(value, str) for value in values)
            if all(isinstance(value, str) and _DIGITS_TEXT.fullmatch(value) for value in values):
                raise SourceError(
                    f"{where} holds numbers as text ({values[0]!r}): they would be compared with dates as "
                    "text; store epoch numbers as numbers, or timestamps as ISO-8601 text"
                )
            return
        largest = max(abs(value) for value in values)
        if largest >= EPOCH_MILLISECONDS_BELOW:
            raise SourceError(
                f"{where} holds epoch numbers up to {largest}: only epoch seconds or milliseconds are "
                "supported (convert micro- or nanoseconds in a `query:`)"
            )
        self._epoch_scale = 1000 if largest >= EPOCH_MILLISECONDS_FROM else 1

    def _epoch_time(self, value: object) -> object:
        """A value of an epoch partition column as the UTC instant it stands for (others as they are)."""
        if self._epoch_scale is None or not _is_number(value):
            return value
        return dt.datetime.fromtimestamp(float(value) / self._epoch_scale, dt.UTC)

    # -- reading ------------------------------------------------------------------------------------
    def read(
        self,
        window: Window | None = None,
        on_progress: Callable[[int], None] | None = None,
        *,
        text_in: tuple[str, Sequence[str]] | None = None,
    ) -> pd.DataFrame:
        """Every row of the source (within the window; with `text_in=(column, values)` only the rows whose
        column, as trimmed text, is one of the values, or for a value that is an integer's text, a number
        with a zero fraction: 42.0 for "42"), as object columns of raw driver values. The caller keeps the
        rows whose column gives one of the values by its own rule (the text "42.0" is not id "42").

        `on_progress(rows so far)` is called every `PROGRESS_EVERY_S` seconds at most (each call is a line in
        the run's log, an event Dagster stores) and once with the total."""
        chunks: list[np.ndarray] = []
        rows_read = reported = 0
        last_report = time.monotonic()
        with self._database_errors(), engine_for(self.source).connect() as connection:
            relation = self._relation(connection)
            if window is not None:
                self._detect_epoch(connection, relation)
            statement = self._statement(relation, window, text_in, connection.dialect.name)
            result = connection.execution_options(stream_results=True).execute(statement)
            # the driver's own cursor (server-side on PostgreSQL): its plain tuples, not a SQLAlchemy Row
            # per row. The columns are untyped (`sa.column`), so SQLAlchemy would not process any value
            # anyway; skipping the Rows is most of the time of reading a million of them.
            cursor = result.cursor
            try:
                rows = _prefetched(result)
                rows += cursor.fetchmany(self.source.chunk_size - len(rows))
                while rows:
                    chunks.append(_rows_to_array(rows, len(self.columns)))
                    rows_read += len(rows)
                    if on_progress and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                        on_progress(rows_read)
                        reported, last_report = rows_read, time.monotonic()
                    rows = cursor.fetchmany(self.source.chunk_size)
            finally:
                result.close()
        if on_progress and reported != rows_read:
            on_progress(rows_read)
        table = np.concatenate(chunks) if chunks else np.empty((0, len(self.columns)), dtype=object)
        data = {
            name: pd.Series(np.ascontiguousarray(table[:, index]), dtype=object, copy=False)
            for index, name in enumerate(self.columns)
        }
        return pd.DataFrame(data, copy=False)

    def _typed_watermark(self, watermark: str | dt.datetime, dialect: str) -> str | dt.datetime | float:
        if self._epoch_scale is not None:
            # the probe's max as text ('1709287204'), or an instant the range read returned
            if isinstance(watermark, str) and _DIGITS_TEXT.fullmatch(watermark):
                return float(watermark)
            try:
                moment = pd.Timestamp(watermark)
            except ValueError:  # a cursor from before the column held numbers: read from the epoch on
                return 0
            moment = moment.tz_localize(dt.UTC) if moment.tzinfo is None else moment
            return moment.timestamp() * self._epoch_scale
        if dialect == "sqlite" or self._compares_as_text():
            return watermark if isinstance(watermark, str) else watermark.isoformat(sep=" ")
        try:
            moment = pd.Timestamp(watermark).to_pydatetime()
        except ValueError:
            return watermark  # not a timestamp (a text column): compare as text
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=dt.UTC)  # naive = UTC (contract)
        moment = moment.astimezone(dt.UTC)
        return moment if self._window_column_has_tz else moment.replace(tzinfo=None)

    def count(self) -> int:
        """How many rows the whole source holds (no window)."""
        with self._database_errors(), engine_for(self.source).connect() as connection:
            relation = self._relation(connection)
            return int(connection.execute(self._count_statement(relation)).scalar_one())

    def _count_statement(self, relation: sa.FromClause) -> sa.Select:
        return sa.select(sa.func.count()).select_from(relation)

    def probe(self) -> dict[str, str | int | None]:
        """A cheap fingerprint of the source: the spec's probe query, else max(partition column) and count."""
        source = self.source
        with self._database_errors(), engine_for(source).connect() as connection:
            if source.probe_query:
                row = connection.execute(sa.text(source.probe_query)).first()
                return {"probe": None if row is None else "|".join(str(v) for v in row)}
            relation = self._relation(connection)
            row = connection.execute(self._probe_statement(relation)).one()
            probe = {"rows": int(row.rows)}
            if source.partition_column:
                probe["max_updated"] = None if row.max_updated is None else str(row.max_updated)
            return probe

    def _probe_statement(self, relation: sa.FromClause) -> sa.Select:
        measures = [sa.func.count().label("rows")]
        if self.source.partition_column:
            measures.append(sa.func.max(relation.c[self.source.partition_column]).label("max_updated"))
        return sa.select(*measures).select_from(relation)

    def day_digests(self) -> dict[str, str]:
        """Per UTC day of the partition column (as the day's window reads it), a short digest of its rows,
        computed by the database in one GROUP BY: the count, the min and max of the column, and where the
        dialect can, the sum of its values as numbers (so a row whose `updated_at` moves within its day moves
        the digest). A day whose digest moved has rows that were added, removed or touched, whatever their
        time: a row loaded late with an old `updated_at` moves its own day."""
        column_name = self.source.partition_column
        reader = SourceReader(self.source, [column_name])
        with self._database_errors(), engine_for(self.source).connect() as connection:
            relation = reader._relation(connection)
            reader._detect_epoch(connection, relation)
            rows = connection.execute(reader._digest_statement(relation)).all()
        digests: dict[str, str] = {}
        for row in rows:
            key = reader._day_key(row[0])
            if key is None:
                continue
            text = "|".join(str(value) for value in row[1:])
            if key in digests:  # two spellings of one day (a date and a text): one digest of both
                text = digests[key] + "|" + text
            digests[key] = hashlib.blake2b(text.encode(), digest_size=6).hexdigest()
        return digests

    def _digest_statement(self, relation: sa.FromClause) -> sa.Select:
        """Per partition day: the day, the count, min and max of the partition column, and its sum."""
        column = relation.c[self.source.partition_column]
        day, total = self._day_and_sum(column, self._dialect)
        measures = [sa.func.count().label("n"), sa.func.min(column), sa.func.max(column)]
        if total is not None:
            measures.append(sa.func.sum(total))
        return sa.select(day.label("day"), *measures).where(column.is_not(None)).group_by(day)

    def _day_and_sum(
        self, column: sa.ColumnElement, dialect: str
    ) -> tuple[sa.ColumnElement, sa.ColumnElement | None]:
        """The expression of a value's partition day, and of the value as a number (None: no such sum)."""
        if self._epoch_scale is not None:
            seconds_per_day = 86_400 * self._epoch_scale
            return sa.cast(sa.func.floor(column / seconds_per_day), sa.BigInteger), column
        if dialect == "sqlite":
            # the window compares the stored text with bare dates: a row belongs to the day its text starts with
            return sa.func.substr(column, 1, 10), sa.func.julianday(column)
        if dialect == "postgresql":
            if self._window_column_has_tz:
                utc = sa.func.timezone("UTC", column)
                return sa.cast(utc, sa.Date), sa.func.extract("epoch", column)
            kind = self._window_column_type
            if kind is not None and isinstance(kind, sa.String):
                return sa.func.substr(column, 1, 10), None
            return sa.cast(column, sa.Date), sa.func.extract("epoch", column)
        kind = self._window_column_type
        text = kind is not None and isinstance(kind, sa.String)
        if dialect in _MYSQL:
            if text:
                return sa.func.substr(column, 1, 10), None
            # the session is in UTC (see _engine): a TIMESTAMP's day is its UTC day; a zero date has none
            micros = sa.func.to_seconds(column) * 1_000_000 + sa.func.microsecond(column)
            return sa.cast(column, sa.Date), micros
        if dialect == "snowflake" and not text:
            # a TIMESTAMP_TZ keeps each value's own offset, a TIMESTAMP_LTZ the session's: cast to a date,
            # either is the local day; CONVERT_TIMEZONE('UTC', x) makes it the UTC day
            day_of = sa.func.convert_timezone("UTC", column) if self._window_column_has_tz else column
            return sa.cast(day_of, sa.Date), sa.func.date_part(sa.literal_column("epoch_microsecond"), column)
        if dialect == "duckdb":
            if text:
                return sa.func.substr(column, 1, 10), None
            # a TIMESTAMPTZ is cast to a date in the session's zone (the machine's by default): take UTC's
            day_of = sa.func.timezone("UTC", column) if self._window_column_has_tz else column
            return sa.cast(day_of, sa.Date), sa.func.epoch_us(column)
        return sa.cast(column, sa.Date), None

    def _day_key(self, value: object) -> str | None:
        """A day expression's value as a partition key (`YYYY-MM-DD`); None for what names no day."""
        if self._epoch_scale is not None and _is_number(value):
            return (dt.date(1970, 1, 1) + dt.timedelta(days=int(value))).isoformat()
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).date().isoformat() if value.tzinfo else value.date().isoformat()
        if isinstance(value, dt.date):
            return value.isoformat()
        text = str(value)
        if not _DAY_TEXT.fullmatch(text):
            return None
        try:  # MySQL's zero date '0000-00-00' (or '2024-02-00') names no day: no window reads its rows
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            return None

    def partition_range_since(self, watermark: str | dt.datetime | None) -> tuple[object, object] | None:
        """The lowest and highest partition-column values at or above a watermark (the max a probe
        returned, as text or datetime), computed by the database; None when no row is that recent.

        At or above: rows loaded in the same second as the watermark's row are still ahead of it. SQLite
        compares the text it stored with the text it returned; a typed column (PostgreSQL refuses
        `timestamptz >= varchar`) gets a datetime; a column of epoch numbers gets a number, and its values
        come back as the UTC datetimes they stand for.
        """
        column_name = self.source.partition_column
        reader = SourceReader(self.source, [column_name])
        with self._database_errors(), engine_for(self.source).connect() as connection:
            relation = reader._relation(connection)
            reader._detect_epoch(connection, relation)
            column = relation.c[column_name]
            statement = sa.select(sa.func.min(column), sa.func.max(column)).where(column.is_not(None))
            if watermark is not None:
                bound = reader._typed_watermark(watermark, connection.dialect.name)
                statement = statement.where(column >= sa.bindparam("watermark", bound))
            lowest, highest = connection.execute(statement).one()
        return None if highest is None else (reader._epoch_time(lowest), reader._epoch_time(highest))


_DAY_TEXT = re.compile(r"\d{4}-\d{2}-\d{2}")

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
        return {column["name"]: column for column in sa.inspect(connection).get_columns(table, schema=schema)}
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


# what a ';' may hide in: literals, quoted names, comments, PostgreSQL's dollar quotes
_SQL_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|--[^\n]*|/\*.*?\*/|\$(\w*)\$.*?\$\1\$|;""", re.DOTALL
)
_STATEMENT_TAIL = re.compile(r"(?:\s|;|--[^\n]*|/\*.*?\*/)*", re.DOTALL)


def _one_statement(source: SourceSpec) -> str:
    """The spec's query as the text to wrap in a subquery: cut at a ';' followed only by blanks, comments or
    more ';', and ended by a newline so that a closing line comment cannot swallow the wrapping's closing
    parenthesis. A ';' followed by more SQL is refused: a subquery is one statement."""
    query = source.query or ""
    for token in _SQL_TOKENS.finditer(query):
        if token.group() != ";":
            continue
        if not _STATEMENT_TAIL.fullmatch(query, token.end()):
            raise SourceError(
                f"source {source.display_url}: the query holds more than one statement (a ';' followed by "
                "more SQL); `query:` takes one statement only, a SELECT"
            )
        return query[: token.start()].rstrip() + "\n"
    return query.rstrip() + "\n"


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


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, Decimal, np.integer, np.floating)) and not isinstance(value, bool)


def _prefetched(result: sa.CursorResult) -> list[tuple]:
    """The rows SQLAlchemy already took from the cursor: a streaming result buffers the first one ahead."""
    buffer = getattr(result.cursor_strategy, "_rowbuffer", None)
    if not buffer:
        return []
    rows = [tuple(row) for row in buffer]
    buffer.clear()
    return rows


def _rows_to_array(rows: Sequence[Sequence[object]], width: int) -> np.ndarray:
    """A chunk of driver rows as a 2-D object array, values untouched (pandas' C transposition of tuples;
    rows of another sequence type, as some drivers return, are made tuples first)."""
    if not isinstance(rows[0], tuple):
        rows = [tuple(row) for row in rows]
    table = to_object_array_tuples(list(rows))
    if table.shape[1] != width:  # pragma: no cover - a driver returning more or fewer columns than asked
        raise SourceError(f"the driver returned {table.shape[1]} columns where {width} were selected")
    return table
