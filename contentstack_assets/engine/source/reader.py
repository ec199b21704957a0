"""Chunked reads of a source table or query through SQLAlchemy: the rows of a window or of given ids, the
count, the sensor's probe, per-day digests and the partition range above a watermark. What differs between
databases is in `dialects`, how a window meets the partition column in `window`.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import re
import time
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import pandas as pd
import sqlalchemy as sa
from pandas._libs.lib import to_object_array_tuples  # C transposition of row tuples

from contentstack_assets.engine.source.dialects import (
    _repeated_names,
    _table_columns,
    day_and_sum,
    driver_error,
    engine_for,
    is_zoned_type,
    text_in_condition,
)
from contentstack_assets.engine.source.digests import DIGEST, row_digest
from contentstack_assets.engine.source.errors import SourceError, _reason
from contentstack_assets.engine.source.shards import can_slice, mine, shard_condition
from contentstack_assets.engine.source.window import (
    Window,
    _is_number,
    bound_time,
    day_key,
    epoch_scale,
    epoch_time,
    partition_sample,
    typed_watermark,
)
from contentstack_assets.spec import SourceSpec

PROGRESS_EVERY_S = 2.0
PRIMARY_KEY = "primary_key"  # frame attribute: the source table's primary key columns, read with the rows
# dialects whose SQLAlchemy inspector reads a primary key (others read none, and a row is found by its uid)
_PRIMARY_KEY_DIALECTS = {"sqlite", "postgresql", "mysql", "mariadb", "mssql", "oracle"}


class SourceReader:
    """Reads the columns a sync needs from one source, optionally within a time window.

    Values come back exactly as the database driver returns them (object columns: `None` stays distinct from
    a float NaN, text dates stay text) because conversion is the job of `convert/`, judged on the stored
    value. Table, schema and column names are SQLAlchemy identifiers, quoted by the dialect and never
    formatted into SQL text (bound values get fixed parameter names, never ones derived from a column name);
    a `query:` is wrapped as a subquery so the window filter and column list still go through SQLAlchemy.
    """

    def __init__(self, source: SourceSpec, columns: Sequence[str]):
        self.source = source
        self.columns = list(dict.fromkeys(columns))  # keep order, drop repeats
        # what a row's digest hashes: the sync's columns, never the primary key a whole read adds (the
        # digests' read has none, and both reads must hash a row alike)
        self._hashed = list(self.columns)
        self._window_column_has_tz = False
        self._window_column_type: sa.types.TypeEngine | None = None  # the declared type, for a table
        self._epoch_scale: int | None = None  # 1 or 1000 for a partition column of epoch (milli)seconds
        self._window_column_text = False  # a query's partition column seen holding text
        self._dialect = ""  # the name of the dialect `_relation` was read with
        self.column_types: dict[
            str, str
        ] = {}  # filled by `read`: declared SQL types, or the driver's values'
        # the table's primary key columns (read beside the sync's, so that a rejected row can be found); none
        # for a query. Filled by `read`
        self.primary_key: list[str] = []
        self._result_types: list[str] = []  # a query's result column types, as its driver describes them
        self._declared: dict[str, sa.types.TypeEngine] = {}  # a table's columns' declared types

    @contextlib.contextmanager
    def _database_errors(self) -> Iterator[None]:
        """A database error as one SourceError naming the source (password masked) and its table."""
        try:
            yield
        except SourceError:
            raise
        except Exception as error:
            if not isinstance(error, (sa.exc.SQLAlchemyError, driver_error(self.source))):
                raise
            raise SourceError(
                f"source {self.source.display_url} ({self.source.relation}): {_reason(self.source, error)}"
            ) from None

    # -- the statement ------------------------------------------------------------------------------
    def _relation(self, connection: sa.Connection, primary_key: bool = False) -> sa.FromClause:
        """The table or wrapped query; with `primary_key` (a read of rows, not a count or probe) the table's
        key columns join the columns read."""
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
            if primary_key:
                self.primary_key = _primary_key(connection, source.table, source.db_schema)
                self.columns += [column for column in self.primary_key if column not in self.columns]
            self._declared = {column: found[column]["type"] for column in self.columns}
            self.column_types = {column: _type_name(kind) for column, kind in self._declared.items()}
            window_column = source.partition_column
            if window_column:
                self._window_column_type = found[window_column]["type"]
                self._window_column_has_tz = is_zoned_type(self._window_column_type)
            return self._table()
        # a query: learn its columns from an empty read, then wrap it as a subquery
        query = _one_statement(source)
        probe = (
            sa.select(sa.literal_column("*")).select_from(sa.text(query).columns().subquery("src")).limit(0)
        )
        probed = connection.execute(probe)
        result_columns = list(probed.keys())
        self._result_types = [f"{item[0]}:{item[1]}" for item in probed.cursor.description or ()]
        probed.close()
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
        digest: str | None = None,
        or_null: bool = False,
    ) -> sa.Select:
        statement = sa.select(*(relation.c[c] for c in self.columns))
        if digest is not None:
            statement = statement.add_columns(self._digest(relation, dialect, digest))
        if text_in is not None:
            column_name, values = text_in
            condition = text_in_condition(relation.c[column_name], values, dialect) if values else sa.false()
            if or_null:
                condition = sa.or_(condition, relation.c[column_name].is_(None))
            statement = statement.where(condition)
        if window is not None:
            column = relation.c[self.source.partition_column]
            # fixed parameter names: SQLAlchemy would name them after the (spec-given) column otherwise
            statement = statement.where(
                column >= sa.bindparam("window_start", self._bound_time(window.start)),
                column < sa.bindparam("window_end", self._bound_time(window.end)),
            )
        return statement

    def _digest(self, relation: sa.FromClause, dialect: str, prefix: str) -> sa.ColumnElement:
        """Each row's hash by the database (engine/source/digests.py) over the sync's columns, after
        `prefix` and what else shapes the values the driver returns: the dialect, the driver and its version,
        the columns' declared types (a table) or described types (a query)."""
        engine = engine_for(self.source)
        dbapi = engine.dialect.dbapi
        driver = f"{engine.dialect.driver}:{getattr(dbapi, '__version__', '')}"
        hashed = self._hashed
        if self.source.table is not None:
            types = sorted((name, kind) for name, kind in self.column_types.items() if name in hashed)
        else:
            types = self._result_types
        described = hashlib.blake2b(
            repr((prefix, dialect, driver, types)).encode(), digest_size=12
        ).hexdigest()
        columns = [relation.c[c] for c in hashed]
        declared = [self._declared.get(c) for c in hashed]
        return row_digest(columns, dialect, described, declared, engine.dialect.server_version_info)

    def read_digests(self, prefix: str, window: Window | None = None) -> pd.DataFrame:
        """The first column of the reader (the uid) and each row's digest (`DIGEST`, int64): one narrow
        read of every row (within the window) where the database computes the hash of every column."""
        chunks = list(self.read_digest_chunks(prefix, window))
        return pd.concat(chunks, ignore_index=True) if len(chunks) > 1 else chunks[0]

    def read_digest_chunks(
        self, prefix: str, window: Window | None = None, *, shard: tuple[int, int] | None = None
    ) -> Iterator[pd.DataFrame]:
        """`read_digests`, at most `max(chunk_size, 100,000)` rows at a time (at least one frame); `shard`: of
        that shard's users only (`read_chunks`)."""
        yielded = False
        with self._database_errors(), engine_for(self.source).connect() as connection:
            relation = self._relation(connection)
            if window is not None:
                self._detect_epoch(connection, relation)
            dialect = connection.dialect.name
            statement = self._statement(relation, window, dialect=dialect).with_only_columns(
                relation.c[self.columns[0]], self._digest(relation, dialect, prefix)
            )
            statement = self._sliced(statement, relation, dialect, shard)
            result = connection.execution_options(stream_results=True).execute(statement)
            try:
                for frame in self._digest_frames(result, dialect, max(self.source.chunk_size, 100_000)):
                    yielded = True
                    yield self._own_rows(frame, dialect, shard)
            finally:
                result.close()
        if not yielded:
            yield self._digest_frame(np.empty(0, dtype=object), np.empty(0, dtype=np.int64))

    def _digest_frames(self, result: sa.CursorResult, dialect: str, size: int) -> Iterator[pd.DataFrame]:
        cursor = result.cursor
        rows = _prefetched(result)
        if (
            dialect == "duckdb"
            and not rows  # nothing taken row by row already (duckdb_engine streams no result ahead)
            and isinstance(self._declared.get(self.columns[0]), sa.String)
        ):
            # DuckDB hands a chunk over as columns, no tuple made per row (text uids only: a column of
            # numbers holding a NULL would come as floats)
            while len(chunk := cursor.fetch_df_chunk(max(1, size // 2048))):
                uids = chunk.iloc[:, 0].to_numpy(dtype=object, na_value=None)
                yield self._digest_frame(uids, chunk.iloc[:, 1].to_numpy(dtype=np.int64))
            return
        rows += cursor.fetchmany(size - len(rows))
        while rows:
            yield self._digest_rows(rows)
            rows = cursor.fetchmany(size)

    def _digest_frame(self, uids: np.ndarray, digests: np.ndarray) -> pd.DataFrame:
        return pd.DataFrame(
            {
                self.columns[0]: pd.Series(np.ascontiguousarray(uids), dtype=object, copy=False),
                DIGEST: digests.astype(np.int64, copy=False),
            },
            copy=False,
        )

    def _digest_rows(self, rows: Sequence[Sequence[object]]) -> pd.DataFrame:
        table = _rows_to_array(rows, 2)
        return self._digest_frame(table[:, 0], table[:, 1])

    def _bound_time(self, moment: dt.datetime) -> dt.datetime | str | int:
        """A UTC instant as the partition column compares it (`window.bound_time`)."""
        as_text = self._dialect == "sqlite" or self._compares_as_text()
        return bound_time(moment, self._epoch_scale, as_text=as_text, zoned=self._window_column_has_tz)

    def _compares_as_text(self) -> bool:
        """Whether the partition column holds text (declared, or seen by `_detect_epoch` in a query's
        result): PostgreSQL and DuckDB refuse to compare text with a timestamp, MySQL compares it as text.
        Such a column is bound as SQLite's is: text, a bare date for a day boundary."""
        return self._window_column_text or isinstance(self._window_column_type, sa.String)

    def _detect_epoch(self, connection: sa.Connection, relation: sa.FromClause) -> None:
        """Whether the partition column holds epoch numbers, and in which unit (sets `_epoch_scale`); numbers
        beside text, or numbers stored as text, cannot be compared with a window: the spec is refused."""
        self._epoch_scale = None
        source = self.source
        column_name = source.partition_column
        values = partition_sample(connection, relation.c[column_name], self._window_column_type)
        if values is None:
            return
        if any(isinstance(value, dt.datetime) and value.tzinfo is not None for value in values):
            # a `query:` over a zoned column (its type is not declared): bind the window as an instant, or
            # the driver would shift a naive bound by the session's time zone
            self._window_column_has_tz = True
        if not any(_is_number(value) for value in values):
            self._window_column_text = all(isinstance(value, str) for value in values)
        where = f"source {source.display_url} ({source.relation}): the partition column {column_name!r}"
        self._epoch_scale = epoch_scale(values, where)

    # -- reading ------------------------------------------------------------------------------------
    def read(
        self,
        window: Window | None = None,
        on_progress: Callable[[int], None] | None = None,
        *,
        text_in: tuple[str, Sequence[str]] | None = None,
        digest: str | None = None,
        or_null: bool = False,
        shard: tuple[int, int] | None = None,
    ) -> pd.DataFrame:
        """Every row of the source (within the window; with `text_in=(column, values)` only the rows whose
        column, as trimmed text, is one of the values, or for a value that is an integer's text, a number
        with a zero fraction: 42.0 for "42"), as object columns of raw driver values. The caller keeps the
        rows whose column gives one of the values by its own rule (the text "42.0" is not id "42").

        `on_progress(rows so far)` is called every `PROGRESS_EVERY_S` seconds at most (each call is a line in
        the run's log, an event Dagster stores) and once with the total.

        `digest`: a prefix; each row's digest computed by the database comes along in column `DIGEST`
        (`read_digests`). `or_null`: with `text_in`, the rows whose column is NULL too. `shard`: of that
        shard's users only (`read_chunks`)."""
        width = len(self.columns) + (digest is not None)
        dialect = engine_for(self.source).dialect.name
        arrays = list(self._arrays(window, on_progress, text_in, digest, or_null, shard))
        table = np.concatenate(arrays) if arrays else np.empty((0, width), dtype=object)
        return self._own_rows(self._frame(table, digest), dialect, shard)

    def read_chunks(
        self,
        window: Window | None = None,
        on_progress: Callable[[int], None] | None = None,
        *,
        digest: str | None = None,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[pd.DataFrame]:
        """`read`, one frame of at most `chunk_size` rows at a time (the last may be empty), so that the whole
        read is never in memory at once. `shard=(index, shards)`: only the rows of that shard's users, picked
        by the database where it can (engine/source/shards.py), else by each chunk's uids as they come."""
        width = len(self.columns) + (digest is not None)
        any_chunk = False
        dialect = engine_for(self.source).dialect.name
        for table in self._arrays(window, on_progress, None, digest, False, shard):
            any_chunk = True
            yield self._own_rows(self._frame(table, digest), dialect, shard)
        if not any_chunk:
            yield self._frame(np.empty((0, width), dtype=object), digest)

    def _arrays(
        self,
        window: Window | None,
        on_progress: Callable[[int], None] | None,
        text_in: tuple[str, Sequence[str]] | None,
        digest: str | None,
        or_null: bool,
        shard: tuple[int, int] | None = None,
    ) -> Iterator[np.ndarray]:
        """The rows read, as 2-D object arrays of at most `chunk_size` rows each."""
        rows_read = reported = 0
        last_report = time.monotonic()
        with self._database_errors(), engine_for(self.source).connect() as connection:
            relation = self._relation(connection, primary_key=True)  # the table's key columns join the read
            width = len(self.columns) + (digest is not None)
            if window is not None:
                self._detect_epoch(connection, relation)
            statement = self._statement(relation, window, text_in, connection.dialect.name, digest, or_null)
            statement = self._sliced(statement, relation, connection.dialect.name, shard)
            result = connection.execution_options(stream_results=True).execute(statement)
            # the driver's own cursor (server-side on PostgreSQL): its plain tuples, not a SQLAlchemy Row
            # per row. The columns are untyped (`sa.column`), so SQLAlchemy would not process any value
            # anyway; skipping the Rows is most of the time of reading a million of them.
            cursor = result.cursor
            try:
                rows = _prefetched(result)
                rows += cursor.fetchmany(self.source.chunk_size - len(rows))
                while rows:
                    rows_read += len(rows)
                    if on_progress and time.monotonic() - last_report >= PROGRESS_EVERY_S:
                        on_progress(rows_read)
                        reported, last_report = rows_read, time.monotonic()
                    yield _rows_to_array(rows, width)
                    rows = cursor.fetchmany(self.source.chunk_size)
            finally:
                result.close()
        if on_progress and reported != rows_read:
            on_progress(rows_read)

    def _sliced(
        self, statement: sa.Select, relation: sa.FromClause, dialect: str, shard: tuple[int, int] | None
    ) -> sa.Select:
        """The statement of the rows of shard `shard=(index, shards)`, where the database can tell them
        (engine/source/shards.py); as it is elsewhere (`_own_rows` keeps the shard's rows as they come)."""
        if shard is None or not can_slice(dialect):
            return statement
        return statement.where(shard_condition(relation.c[self.columns[0]], dialect, *shard))

    def _own_rows(self, frame: pd.DataFrame, dialect: str, shard: tuple[int, int] | None) -> pd.DataFrame:
        """The rows of a read (`_sliced`) that shard keeps (`mine`): SQLite's function applies the rules
        themselves, so its rows are the shard's own."""
        by_database = can_slice(dialect)
        if shard is None or (by_database and dialect == "sqlite"):
            return frame
        keep = mine(frame[self.columns[0]], *shard, by_database=by_database)
        return frame if keep.all() else frame.loc[keep].reset_index(drop=True)

    def _frame(self, table: np.ndarray, digest: str | None) -> pd.DataFrame:
        data = {
            name: pd.Series(np.ascontiguousarray(table[:, index]), dtype=object, copy=False)
            for index, name in enumerate(self.columns)
        }
        if digest is not None:
            data[DIGEST] = pd.Series(table[:, -1].astype(np.int64), copy=False)
        frame = pd.DataFrame(data, copy=False)
        frame.attrs[PRIMARY_KEY] = list(self.primary_key)
        if not self.column_types:  # a query declares no types: name what the driver gave
            self.column_types = {name: _value_type(frame[name]) for name in self.columns}
        return frame

    def _typed_watermark(self, watermark: str | dt.datetime, dialect: str) -> str | dt.datetime | float:
        """A watermark as the partition column compares it (`window.typed_watermark`)."""
        as_text = dialect == "sqlite" or self._compares_as_text()
        return typed_watermark(
            watermark, self._epoch_scale, as_text=as_text, zoned=self._window_column_has_tz
        )

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
            key = day_key(row[0], reader._epoch_scale)
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
        day, total = day_and_sum(
            column,
            self._dialect,
            epoch_scale=self._epoch_scale,
            zoned=self._window_column_has_tz,
            declared=self._window_column_type,
        )
        measures = [sa.func.count().label("n"), sa.func.min(column), sa.func.max(column)]
        if total is not None:
            measures.append(sa.func.sum(total))
        return sa.select(day.label("day"), *measures).where(column.is_not(None)).group_by(day)

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
        if highest is None:
            return None
        return epoch_time(lowest, reader._epoch_scale), epoch_time(highest, reader._epoch_scale)


# what a ';' may hide in: literals, quoted names, comments, PostgreSQL's dollar quotes
_SQL_TOKENS = re.compile(
    r"""'(?:[^']|'')*'|"(?:[^"]|"")*"|`[^`]*`|--[^\n]*|/\*.*?\*/|\$(\w*)\$.*?\$\1\$|;""", re.DOTALL
)
_STATEMENT_TAIL = re.compile(r"(?:\s|;|--[^\n]*|/\*.*?\*/)*", re.DOTALL)


def _primary_key(connection: sa.Connection, table: str, schema: str | None) -> list[str]:
    """The table's primary key columns, in the key's order; none where the dialect's inspector reads none
    (DuckDB, Snowflake and others: a rejected row of theirs is found by its uid)."""
    if connection.dialect.name not in _PRIMARY_KEY_DIALECTS:
        return []
    constraint = sa.inspect(connection).get_pk_constraint(table, schema=schema)
    return list(constraint.get("constrained_columns") or [])


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


def _type_name(declared: object) -> str:
    try:
        return str(declared)
    except Exception:  # a dialect type that cannot render itself without a dialect
        return type(declared).__name__


def _value_type(values: pd.Series) -> str:
    """The Python type of the column's first non-null value, as a driver returned it (`str`, `datetime`)."""
    present = values.dropna()
    return type(present.iloc[0]).__name__ if len(present) else "unknown"
