"""The vectorised fast paths, one per attribute type and one for user uids, keyed on the Series dtype and on
`pd.api.types.infer_dtype`. A fast path returns values only for the rows it is sure of and leaves every
other row (odd values, all rejections) to the element rule, so the two agree by construction.
"""

from __future__ import annotations

import datetime as dt
import re
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert.iso8601 import (
    EPOCH_ORDINAL,
    format_seconds,
    in_range,
    iso_bytes_seconds,
)
from contentstack_assets.engine.convert.rules import BOOL_TEXT, NUMERIC_RX
from contentstack_assets.wire import MAX_SAFE_INTEGER, MAX_UID_LENGTH

_SMALL_INT_RX = re.compile(r"[+-]?[0-9]{1,15}")  # |x| < 10^15 < 2^53

# The subset of ISO text the vectorised path hands to pandas' ISO-8601 parser.
_ISO_FAST_RX = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?"
    r"(?:Z|[+-][0-9]{2}(?::?[0-9]{2})?)?)?"
)

# the spellings a fast path maps without trimming or lower-casing (the element rule takes the rest)
_BOOL_TEXT_CASES = {form: b for k, b in BOOL_TEXT.items() for form in (k, k.upper(), k.capitalize())}


def _datetime64_seconds(a: np.ndarray) -> np.ndarray:
    """Epoch seconds (floored) of a naive datetime64 array; NaT -> int64 min (out of range)."""
    return a.astype("datetime64[s]").view(np.int64)


def _series_seconds(values: pd.Series) -> np.ndarray:
    s = values
    if isinstance(s.dtype, pd.DatetimeTZDtype):
        s = s.dt.tz_convert("UTC").dt.tz_localize(None)
    return _datetime64_seconds(s.to_numpy())


def _index_seconds(idx: pd.DatetimeIndex) -> np.ndarray:
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return _datetime64_seconds(idx.to_numpy())


def _all_type(sub: np.ndarray, cls: type) -> bool:
    return set(map(type, sub.tolist())) <= {cls}


def _gate(sub: np.ndarray, rx: re.Pattern[str]) -> np.ndarray:
    match = rx.fullmatch
    return np.fromiter((match(v) is not None for v in sub.tolist()), dtype=bool, count=len(sub))


class Ctx:
    """What a fast path sees: the column, its candidate rows (non-null, not NaN-like) and, for an
    object column, the candidates' values and their inferred kind."""

    def __init__(self, values: pd.Series, cand: np.ndarray, arr: np.ndarray | None) -> None:
        self.values = values
        self.cand = cand
        self.dtype = values.dtype
        self.is_object = arr is not None
        self.sub: np.ndarray | None = arr[cand] if arr is not None else None
        self.kind = pd.api.types.infer_dtype(self.sub, skipna=False) if self.sub is not None else ""

    def typed(self, dtype: Any, na_value: Any) -> np.ndarray:
        return self.values.to_numpy(dtype=dtype, na_value=na_value)[self.cand]


# A fast path returns (mask over the candidate rows it handled, their wire values) or None.
Fast = tuple[np.ndarray, Any] | None


def _is_str_dtype(dtype: Any) -> bool:
    return isinstance(dtype, pd.StringDtype)


def _sub_as_float(ctx: Ctx) -> np.ndarray | None:
    """The candidates as float64 when the column holds plain numbers (None otherwise)."""
    dtype = ctx.dtype
    if ctx.is_object:
        assert ctx.sub is not None
        if ctx.kind in ("floating", "integer", "mixed-integer-float", "decimal"):
            try:
                with np.errstate(all="ignore"):
                    return ctx.sub.astype(np.float64)
            except (OverflowError, ValueError, TypeError, ArithmeticError):
                return None
        return None
    if pd.api.types.is_float_dtype(dtype) or (
        pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)
    ):
        return ctx.typed(np.float64, np.nan)
    return None


def _sub_as_int(ctx: Ctx) -> np.ndarray | None:
    """The candidates as int64 when the column holds ints that fit (None otherwise)."""
    if ctx.is_object:
        assert ctx.sub is not None
        if ctx.kind == "integer":
            try:
                return ctx.sub.astype(np.int64)
            except (OverflowError, ValueError, TypeError):
                return None
        return None
    dtype = ctx.dtype
    if pd.api.types.is_integer_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
        if pd.api.types.is_unsigned_integer_dtype(dtype):
            a = ctx.typed(np.uint64, 0)
            if len(a) and a.max() > np.iinfo(np.int64).max:
                return None
            return a.astype(np.int64)
        return ctx.typed(np.int64, 0)
    return None


def _sub_text(ctx: Ctx) -> np.ndarray | None:
    if ctx.is_object:
        return ctx.sub if ctx.kind == "string" else None
    if _is_str_dtype(ctx.dtype):
        return ctx.values.to_numpy(dtype=object)[ctx.cand]
    return None


def _iso_text_seconds(text: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(handled mask, epoch seconds, text lengths) of ISO text: the common fixed-width shapes read as bytes
    (`iso_bytes_seconds`), the rest of the strict subset through pandas' ISO-8601 parser."""
    ok, secs, lengths = iso_bytes_seconds(text)
    rest = np.flatnonzero(~ok)
    if not len(rest):
        return ok, secs, lengths
    sub = text[rest]
    gate = _gate(sub, _ISO_FAST_RX)
    if gate.any():
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(sub[gate], format="ISO8601", utc=True, errors="coerce")
            s = _index_seconds(pd.DatetimeIndex(parsed))
        except Exception:
            return ok, secs, lengths
        good = in_range(s)
        pos = rest[np.flatnonzero(gate)[good]]
        ok[pos] = True
        secs[pos] = s[good]
    return ok, secs, lengths


def _datetime_like_seconds(ctx: Ctx) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
    """(handled mask, epoch seconds, lengths of the text or None) for datetime64 columns, object columns
    of datetimes or dates, and ISO text columns."""
    dtype = ctx.dtype
    if not ctx.is_object:
        if pd.api.types.is_datetime64_any_dtype(dtype):
            s = _series_seconds(ctx.values)[ctx.cand]
            return in_range(s), s, None
        text = _sub_text(ctx)
        return _iso_text_seconds(text) if text is not None else None
    sub = ctx.sub
    assert sub is not None
    if ctx.kind == "string":
        return _iso_text_seconds(sub)
    if ctx.kind == "date" and _all_type(sub, dt.date):
        ordinals = np.fromiter((v.toordinal() for v in sub.tolist()), dtype=np.int64, count=len(sub))
        s = (ordinals - EPOCH_ORDINAL) * 86400
        return in_range(s), s, None
    if ctx.kind == "datetime":
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                parsed = pd.to_datetime(sub, utc=True, errors="coerce")
            s = _index_seconds(pd.DatetimeIndex(parsed))
        except Exception:
            return None
        return in_range(s), s, None
    return None


# --------------------------------------------------------------------------------------------------
# fast paths per type


def _fast_string(ctx: Ctx) -> Fast:
    dtype = ctx.dtype
    text = _sub_text(ctx)
    if text is not None:
        try:
            "".join(text.tolist()).encode("utf-8")
        except UnicodeEncodeError:  # some lone surrogate: let the element rule find it
            return None
        if ctx.is_object and not _all_type(text, str):  # np.str_ -> str
            return np.ones(len(text), dtype=bool), [str(v) for v in text.tolist()]
        return np.ones(len(text), dtype=bool), text
    if not ctx.is_object and pd.api.types.is_bool_dtype(dtype):
        b = ctx.typed(bool, False)
        return np.ones(len(b), dtype=bool), np.where(b, "true", "false").astype(object)
    ints = _sub_as_int(ctx)
    if ints is not None:
        return np.ones(len(ints), dtype=bool), [str(i) for i in ints.tolist()]
    if not ctx.is_object and dtype == np.float64:
        a = ctx.typed(np.float64, np.nan)
        ok = np.isfinite(a)
        return ok, [repr(x) for x in a[ok].tolist()]
    if not ctx.is_object and pd.api.types.is_datetime64_dtype(dtype):  # naive: Timestamp.isoformat()
        a = ctx.values.to_numpy()[ctx.cand]
        secs = _datetime64_seconds(a)
        ok = in_range(secs) & (a == secs.view("datetime64[s]"))  # whole seconds: no fraction shown
        return ok, format_seconds(secs[ok], width=19)
    return None


def _fast_number(ctx: Ctx) -> Fast:
    # from 2^53 up an int, a decimal or text may be an integer a double cannot hold: the element rule judges
    floats = (ctx.is_object and ctx.kind == "floating") or (
        not ctx.is_object and pd.api.types.is_float_dtype(ctx.dtype)
    )
    a = _sub_as_float(ctx)
    if a is not None:
        ok = np.isfinite(a) if floats else np.abs(a) < 2.0**53
        return ok, a[ok]
    text = _sub_text(ctx)
    if text is not None:
        gate = _gate(text, NUMERIC_RX)
        a = np.full(len(text), np.nan)
        a[gate] = text[gate].astype(np.float64)
        ok = np.abs(a) < 2.0**53
        return ok, a[ok]
    return None


def _fast_integer(ctx: Ctx) -> Fast:
    ints = _sub_as_int(ctx)
    if ints is not None:
        ok = (ints >= -MAX_SAFE_INTEGER) & (ints <= MAX_SAFE_INTEGER)
        return ok, ints[ok]
    if (ctx.is_object and ctx.kind == "floating") or (
        not ctx.is_object and pd.api.types.is_float_dtype(ctx.dtype)
    ):
        a = _sub_as_float(ctx)
        if a is None:
            return None
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(a) & (np.abs(a) <= MAX_SAFE_INTEGER)
            ok &= a == np.trunc(a)
        return ok, a[ok].astype(np.int64)
    if ctx.is_object and ctx.kind == "decimal":
        assert ctx.sub is not None
        a = _sub_as_float(ctx)  # no NaN here: NaN-like values are not candidates
        if a is None:
            return None
        with np.errstate(invalid="ignore"):
            near = np.isfinite(a) & (np.abs(a) < 2.0**53) & (a == np.trunc(a))
        ints = a[near].astype(np.int64)
        # the float is only a guess: keep the rows whose Decimal is exactly that integer
        exact = np.fromiter(
            (d == i for d, i in zip(ctx.sub[near].tolist(), ints.tolist(), strict=True)),
            dtype=bool,
            count=len(ints),
        )
        ok = np.zeros(len(a), dtype=bool)
        ok[np.flatnonzero(near)[exact]] = True
        return ok, ints[exact]
    text = _sub_text(ctx)
    if text is not None:
        gate = _gate(text, _SMALL_INT_RX)
        return gate, text[gate].astype(np.int64)
    return None


def _fast_boolean(ctx: Ctx) -> Fast:
    dtype = ctx.dtype
    if (ctx.is_object and ctx.kind == "boolean") or (not ctx.is_object and pd.api.types.is_bool_dtype(dtype)):
        b = ctx.sub.astype(bool) if ctx.sub is not None else ctx.typed(bool, False)
        return np.ones(len(b), dtype=bool), b
    if ctx.is_object and ctx.kind == "decimal":
        return None
    a = _sub_as_float(ctx)
    if a is not None:
        ok = (a == 0) | (a == 1)
        return ok, a[ok] == 1
    text = _sub_text(ctx)
    if text is not None:
        get = _BOOL_TEXT_CASES.get
        mapped = [get(v) for v in text.tolist()]
        ok = np.fromiter((v is not None for v in mapped), dtype=bool, count=len(mapped))
        vals = np.array([v for v in mapped if v is not None], dtype=bool)
        return ok, vals
    return None


def _fast_datetime(ctx: Ctx) -> Fast:
    r = _datetime_like_seconds(ctx)
    if r is None:
        return None
    ok, secs, _ = r
    return ok, format_seconds(secs[ok])


def _fast_date(ctx: Ctx) -> Fast:
    r = _datetime_like_seconds(ctx)
    if r is None:
        return None
    ok, secs, lengths = r
    if lengths is None:
        return ok, format_seconds(secs[ok], width=10)
    # text of a date alone that reads as one is its own wire value ("2024-05-01"): no new string
    verbatim = (lengths == 10)[ok]
    text = _sub_text(ctx)[ok][verbatim]
    if not _all_type(text, str):  # a str subclass: made plain below
        verbatim[:] = False
    dates = np.empty(len(verbatim), dtype=object)
    dates[verbatim] = text if verbatim.any() else []
    dates[~verbatim] = format_seconds(secs[ok][~verbatim], width=10)
    return ok, dates


FAST_PATHS: dict[str, Callable[[Ctx], Fast]] = {
    "string": _fast_string,
    "number": _fast_number,
    "integer": _fast_integer,
    "boolean": _fast_boolean,
    "datetime": _fast_datetime,
    "date": _fast_date,
}


def fast_uid(ctx: Ctx) -> Fast:
    text = _sub_text(ctx)
    if text is not None:
        if ctx.is_object and not _all_type(text, str):  # np.str_ -> str, one by one
            return _uid_texts(text.tolist())
        plain = _plain_uids(text)
        if plain is None:
            return _uid_texts(text.tolist())
        ok = np.zeros(len(text), dtype=bool)
        vals = np.empty(len(text), dtype=object)
        ok[plain] = True
        vals[plain] = text[plain]  # already a uid as it is: the same string
        others = np.flatnonzero(~plain)
        if len(others):
            others_ok, others_vals = _uid_texts(text[others].tolist())
            ok[others[others_ok]] = True
            vals[others[others_ok]] = others_vals
        return ok, vals[ok]
    ints = _sub_as_int(ctx)
    if ints is not None:
        return np.ones(len(ints), dtype=bool), [str(i) for i in ints.tolist()]
    if not ctx.is_object and pd.api.types.is_float_dtype(ctx.dtype):  # an int id column with NULLs
        a = ctx.typed(np.float64, np.nan)
        with np.errstate(invalid="ignore"):
            ok = np.isfinite(a) & (np.abs(a) < 2.0**53) & (a == np.trunc(a))
        return ok, [str(i) for i in a[ok].astype(np.int64).tolist()]
    return None


def _uid_texts(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(valid mask, the valid uids) of texts, one by one: trimmed, 1-256 printable ASCII characters."""
    out = []
    for v in texts:
        t = str(v).strip()
        out.append(t if 0 < len(t) <= MAX_UID_LENGTH and t.isascii() and t.isprintable() else None)
    vals = np.empty(len(out), dtype=object)
    vals[:] = out
    ok = np.not_equal(vals, None)
    return ok, vals[ok]


def _plain_uids(text: np.ndarray) -> np.ndarray | None:
    """Which texts are valid uids as they are (1-256 printable ASCII characters, no surrounding space),
    from one ASCII buffer of them all; None when the buffer cannot be built (some text is not ASCII or
    holds a newline): the caller goes one by one."""
    values = text.tolist()
    try:
        buffer = np.frombuffer(("\n".join(values) + "\n").encode("ascii"), dtype=np.uint8)
    except UnicodeEncodeError:
        return None
    ends = np.flatnonzero(buffer == 10)
    if len(ends) != len(values):
        return None
    starts = np.concatenate(([0], ends[:-1] + 1))
    lengths = ends - starts
    plain = (lengths > 0) & (lengths <= MAX_UID_LENGTH)
    nonempty = np.flatnonzero(plain)
    plain[nonempty] &= (buffer[starts[nonempty]] != 32) & (buffer[ends[nonempty] - 1] != 32)  # " "
    unprintable = np.flatnonzero(((buffer < 32) | (buffer > 126)) & (buffer != 10))
    plain[np.searchsorted(ends, unprintable)] = False  # the text each such character is in
    return plain
