"""Source rows -> Personalize attributes, with every row rule of the contract applied.

The result is one frame: `user_uid`, one column per attribute key holding its wire value, `_row` (the
1-based row number in the read), `_rejection` (None, or every reason the row was set aside, joined by
"; ") and, for a partitioned sync, `_day` (the UTC day of the row's partition column, by which a run over
several days counts each day); for a table with a primary key, `_source_key` (`id=7`, what finds a rejected row
in the source; None on valid rows). Rejected rows keep their place so nothing is lost; their attribute columns
are null. A constant attribute (`value:` in the spec) is a column like the others, its one wire value in
every row: from here on (fingerprints, diff, delivery, state) nothing tells it apart.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert import convert_column, convert_uids
from contentstack_assets.engine.frames import ChunkedFrame, ChunkWriter, Frame, collect
from contentstack_assets.engine.source import PRIMARY_KEY, days_of
from contentstack_assets.engine.source.digests import DIGEST
from contentstack_assets.engine.source.shards import STRAY, shard_of
from contentstack_assets.spec import UsersSync
from contentstack_assets.wire import DAY, REJECTION, ROW, UID

READ_AT = "read_at"  # frame attribute: when the source read of these rows started (unix microseconds)
# a rejected row's primary key in its source table, "id=7" ("a=1, b=2" for a key of two columns)
SOURCE_KEY = "_source_key"


def source_columns(sync: UsersSync) -> list[str]:
    """The columns a users sync reads: the match column, every mapped column, the partition column."""
    columns = [
        sync.match.column,
        *(attribute.column for attribute in sync.attributes.values() if attribute.column is not None),
    ]
    if sync.source.updated_at:
        columns.append(sync.source.updated_at)
    return list(dict.fromkeys(columns))


def add_reasons(reasons: np.ndarray, errors: pd.Series, prefix: str = "") -> None:
    """Append each non-null error (with an optional prefix) to the row's reasons, in place."""
    failed = errors.notna().to_numpy()
    for index in np.flatnonzero(failed):
        reason = prefix + errors.iat[index]
        reasons[index] = reason if reasons[index] is None else f"{reasons[index]}; {reason}"


def uid_rules(raw_uids: pd.Series, duplicates: set[str] | None = None) -> tuple[pd.Series, np.ndarray]:
    """Trimmed uids and a reasons array: missing, invalid, and every row of a duplicated uid (`duplicates`:
    the uids other chunks of the same read give too)."""
    uids = convert_uids(raw_uids)
    reasons = np.full(len(raw_uids), None, dtype=object)
    add_reasons(reasons, uids.errors)
    twice = duplicated(uids.values)
    if duplicates:
        twice |= uids.values.isin(duplicates).to_numpy()
    add_reasons(reasons, pd.Series(np.where(twice, "duplicate user uid", None), dtype=object))
    return uids.values, reasons


def duplicated(uids: pd.Series) -> np.ndarray:
    """Every row whose (non-null) uid another row has too. Candidates are the rows whose string hash another
    row shares, found by sorting the hashes as integers (the usual case, no uid twice, ends there); they are
    confirmed on the strings themselves, so a collision never rejects a row."""
    present = uids.notna().to_numpy()
    values = uids.to_numpy()[present]
    result = np.zeros(len(uids), dtype=bool)
    hashes = np.fromiter(map(hash, values.tolist()), dtype=np.int64, count=len(values))
    ordered = np.sort(hashes)
    repeated = ordered[1:][ordered[1:] == ordered[:-1]]
    if not len(repeated):
        return result
    candidates = np.flatnonzero(np.isin(hashes, repeated))
    confirmed = pd.Series(values[candidates], dtype=object).duplicated(keep=False).to_numpy()
    result[np.flatnonzero(present)[candidates[confirmed]]] = True
    return result


def map_users(
    raw: pd.DataFrame,
    sync: UsersSync,
    *,
    duplicates: set[str] | None = None,
    first_row: int = 1,
    shard: tuple[int, int] | None = None,
) -> pd.DataFrame:
    """Rename and convert the source columns; set aside (never raise on) rows that break a rule. The read
    time of the rows (`attrs[READ_AT]`) goes with them. One chunk of a longer read: `duplicates`, the uids
    the whole read gives more than once (`duplicate_uids`), and `first_row`, the chunk's first row number.
    `shard=(index, shards)`: the rows that shard read, of which a uid of another shard is set aside (`STRAY`,
    engine/source/shards.py)."""
    read_at = raw.attrs.get(READ_AT)
    key_columns = [column for column in raw.attrs.get(PRIMARY_KEY) or () if column in raw]
    attrs = dict(raw.attrs)
    raw = raw.reset_index(drop=True)
    uid_values, reasons = uid_rules(raw[sync.match.column], duplicates)
    if shard is not None:
        _set_aside_strays(uid_values, reasons, *shard)
    # keep what identifies a rejected row in its report, even when the uid itself is the problem
    shown_uids = uid_values
    missing = uid_values.isna().to_numpy()
    if missing.any():
        shown_uids = uid_values.copy()
        shown_uids[missing] = raw[sync.match.column][missing].map(_shown_uid)

    mapped: dict[str, pd.Series] = {UID: shown_uids}
    for key, attribute in sync.attributes.items():
        if attribute.column is None:
            mapped[key] = constant_column(attribute.value, attribute.type, len(raw))
            continue
        converted = convert_column(raw[attribute.column], attribute.type)
        add_reasons(reasons, converted.errors, prefix=f"{key}: ")
        mapped[key] = converted.values
    mapped[ROW] = pd.Series(np.arange(first_row, first_row + len(raw)), dtype="int64")
    mapped[REJECTION] = pd.Series(reasons, dtype=object)
    mapped.update(day_column(raw, sync.source.partition_column))
    if DIGEST in raw:  # the database's hash of each row (engine/digests.py), kept for the state
        mapped[DIGEST] = raw[DIGEST].astype(object)  # Python ints: exact next to rows without one
    frame = pd.DataFrame(mapped, copy=False)

    rejected = frame[REJECTION].notna()
    if rejected.any():
        for key in sync.attributes:
            frame[key] = frame[key].mask(rejected)
    if key_columns:
        frame[SOURCE_KEY] = source_keys(raw, key_columns, rejected.to_numpy())
    frame.attrs.update(attrs)  # the read time, and what a read by digests tells of the whole source
    if read_at is not None:
        frame.attrs[READ_AT] = read_at
    return frame


def _set_aside_strays(uids: pd.Series, reasons: np.ndarray, index: int, shards: int) -> None:
    valid = np.flatnonzero(uids.notna().to_numpy() & np.equal(reasons, None))
    if not len(valid):
        return
    stray = np.zeros(len(uids), dtype=bool)
    stray[valid[shard_of(uids.to_numpy()[valid].tolist(), shards) != index]] = True
    if stray.any():
        add_reasons(reasons, pd.Series(np.where(stray, STRAY, None), dtype=object))


def map_frame(
    raw: Frame,
    sync: UsersSync,
    on_chunk: Callable[[pd.DataFrame], None] | None = None,
    *,
    first_row: int = 1,
    shard: tuple[int, int] | None = None,
    on_disk: bool = False,
) -> Frame:
    """`map_users` of a read in one piece, or chunk by chunk of a chunked read (its rows numbered on from
    `first_row`, its duplicates found over every chunk): each mapped chunk is written as it is made, and
    handed to `on_chunk` (the counts, the rejected rows and the schema check of the step). `shard`: the part
    of a sharded read that shard read (`map_users`); `on_disk`: chunk files even for one chunk."""
    if not isinstance(raw, ChunkedFrame):
        mapped = map_users(raw, sync, first_row=first_row, shard=shard)
        if on_chunk:
            on_chunk(mapped)
        return collect([mapped], on_disk=True) if on_disk else mapped
    duplicates = duplicate_uids(raw, sync.match.column)
    writer = ChunkWriter()
    try:
        for chunk in raw.chunks():
            mapped = map_users(chunk, sync, duplicates=duplicates, first_row=first_row, shard=shard)
            first_row += len(chunk)
            if on_chunk:
                on_chunk(mapped)
            writer.write(mapped)
    except BaseException:
        writer.abandon()
        raise
    return writer.finish(attrs=dict(raw.attrs), on_disk=on_disk)


def duplicate_uids(raw: ChunkedFrame, column: str) -> set[str]:
    """The uids (trimmed, as the rules make them) that more than one row of a chunked read gives: found by
    their 64-bit hashes, one chunk at a time (8 bytes a row), then confirmed on the text of the few rows whose
    hash another row shares, so a collision never rejects a row."""
    ordered = raw.hashes()  # made by the read (`uid_hashes_of`), else made now
    if ordered is None:
        ordered = np.concatenate([_uid_hashes(chunk[column])[1] for chunk in raw.chunks()])
    ordered.sort()  # in place: the only array of a row's size
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    del ordered
    if not len(repeated):
        return set()
    seen: Counter[str] = Counter()
    for chunk in raw.chunks():
        uids, hashed = _uid_hashes(chunk[column])
        seen.update(uids[np.isin(hashed, repeated)].tolist())
    return {uid for uid, rows in seen.items() if rows > 1}


def uid_hashes_of(sync: UsersSync) -> Callable[[pd.DataFrame], np.ndarray]:
    """What a chunked read keeps of each chunk's uids for `duplicate_uids`: their 64-bit hashes, made while
    the chunk is in memory (the mapping then reads the chunks once, not twice)."""
    return lambda chunk: _uid_hashes(chunk[sync.match.column])[1]


def _uid_hashes(raw_uids: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    uids = convert_uids(raw_uids).values.dropna().to_numpy(dtype=object)
    return uids, pd.util.hash_array(uids, categorize=False)


def source_keys(raw: pd.DataFrame, key_columns: list[str], rows: np.ndarray) -> pd.Series:
    """The primary key of each of the `rows` (a mask) in its source table, as `column=value` joined by ", "
    (`id=7`, `region=eu, id=7`); None elsewhere. Only rejected rows need it: they are few."""
    keys = np.full(len(raw), None, dtype=object)
    for index in np.flatnonzero(rows):
        keys[index] = ", ".join(f"{column}={raw[column].iat[index]}" for column in key_columns)
    return pd.Series(keys, dtype=object)


def constant_column(value: object, type_: str, rows: int) -> pd.Series:
    """A constant's wire value repeated `rows` times, in its type's wire dtype. The spec checked that it
    converts; it is converted once, by the rules every source value goes through."""
    converted = convert_column(pd.Series([value], dtype=object), type_)
    if converted.errors.iat[0] is not None:
        raise ValueError(f"constant {value!r} does not convert to {type_}: {converted.errors.iat[0]}")
    return converted.values.take(np.zeros(rows, dtype=np.intp)).reset_index(drop=True)


def stamp_read_time(frame: pd.DataFrame, started: float) -> pd.DataFrame:
    """Mark a frame read from the source with the time its read started (`time.time()`)."""
    frame.attrs[READ_AT] = int(started * 1_000_000)
    return frame


def day_column(raw: pd.DataFrame, partition_column: str | None) -> dict[str, pd.Series]:
    """`{DAY: the day of each row}` when the rows carry a partition column, else nothing: a run over several
    days counts each row on its own day."""
    if not partition_column or partition_column not in raw:
        return {}
    return {DAY: days_of(raw[partition_column])}


def valid_rows(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.loc[frame[REJECTION].isna()].drop(
        columns=[ROW, REJECTION, DAY, SOURCE_KEY, DIGEST], errors="ignore"
    )


def rejected_rows(frame: pd.DataFrame) -> pd.DataFrame:
    """row_number, user_uid, reason and, for a table with a primary key, source_key of the rows set aside."""
    columns = [ROW, UID, REJECTION, *([SOURCE_KEY] if SOURCE_KEY in frame else [])]
    rejected = frame.loc[frame[REJECTION].notna(), columns]
    return rejected.rename(columns={ROW: "row_number", REJECTION: "reason", SOURCE_KEY: "source_key"})


def _shown_uid(value: object) -> str | None:
    if value is None or (isinstance(value, float) and value != value):
        return None
    text = str(value)
    return text if len(text) <= 64 else text[:63] + "…"
