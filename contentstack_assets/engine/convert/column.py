"""A whole column converted: nulls set apart, the type's fast path over what it is sure of, the element rule
over the rest; the values in the dtype their type sends (`WIRE_DTYPES`) and a reason per rejected row.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from contentstack_assets.engine.convert.fast import FAST_PATHS, Ctx, Fast, fast_uid
from contentstack_assets.engine.convert.rules import ELEMENT_RULES, NANLIKE, Result, elem_isna, one_uid
from contentstack_assets.wire import ATTRIBUTE_TYPES, MISSING_UID

WIRE_DTYPES: dict[str, Any] = {
    "string": object,
    "number": "float64",
    "integer": "Int64",
    "boolean": "boolean",
    "datetime": object,
    "date": object,
}


class Converted(NamedTuple):
    values: pd.Series  # same index as the input; dtype WIRE_DTYPES[type]; null where input null or rejected
    errors: pd.Series  # object dtype, same index; None where fine, else a short reason


def _null_masks(values: pd.Series) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(null, nanlike, object array or None). In an object column None / pd.NA / pd.NaT are null and
    a float or Decimal NaN is a value (that no type takes); in a typed column every NA is null."""
    if values.dtype != object:
        null = np.asarray(values.isna().to_numpy(), dtype=bool)
        return null, np.zeros(len(values), dtype=bool), None
    arr = values.to_numpy()
    try:
        na = np.asarray(pd.isna(arr), dtype=bool).copy()
    except Exception:  # e.g. Decimal('sNaN') makes pandas' check raise
        na = np.fromiter((elem_isna(v) for v in arr.tolist()), dtype=bool, count=len(arr))
    nanlike = np.zeros(len(arr), dtype=bool)
    idx = np.flatnonzero(na)
    if idx.size:
        fl = np.fromiter((isinstance(v, NANLIKE) for v in arr[idx].tolist()), dtype=bool, count=idx.size)
        nanlike[idx[fl]] = True
        na[idx[fl]] = False
    return na, nanlike, arr


def _run(
    values: pd.Series,
    one: Callable[[object], Result],
    fast: Callable[[Ctx], Fast] | None,
    storage: Any,
    null_error: str | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(storage array, valid mask, errors) for a column; ``fast`` may be None (element rule only)."""
    n = len(values)
    if storage is object:
        out = np.full(n, None, dtype=object)
    elif storage == np.float64:
        out = np.full(n, np.nan)
    else:
        out = np.zeros(n, dtype=storage)
    ok = np.zeros(n, dtype=bool)
    err = np.full(n, None, dtype=object)
    if n == 0:
        return out, ok, err
    null, nanlike, arr = _null_masks(values)
    if null_error is not None:
        err[null] = null_error
    todo = ~null
    cand = todo & ~nanlike
    if fast is not None and cand.any():
        res = fast(Ctx(values, cand, arr))
        if res is not None:
            handled, vals = res
            pos = np.flatnonzero(cand)[handled]
            if len(pos):
                if storage is object and isinstance(vals, list):
                    tmp = np.empty(len(vals), dtype=object)
                    tmp[:] = vals
                    vals = tmp
                out[pos] = vals
                ok[pos] = True
                todo[pos] = False
    idx = np.flatnonzero(todo)
    if idx.size:
        rest = arr[idx] if arr is not None else values.iloc[idx].astype(object).to_numpy()
        for i, v in zip(idx.tolist(), rest.tolist(), strict=True):
            val, e = one(v)
            if e is not None:
                err[i] = e
            elif val is not None:
                out[i] = val
                ok[i] = True
    return out, ok, err


def _as_series(values: Any) -> pd.Series:
    if isinstance(values, pd.Series):
        return values
    return pd.Series(values, dtype=object)


def _wrap(type_name: str, values: pd.Series, out: np.ndarray, ok: np.ndarray, err: np.ndarray) -> Converted:
    index, name = values.index, values.name
    if type_name == "integer":
        result = pd.Series(pd.arrays.IntegerArray(out, ~ok), index=index, name=name, copy=False)
    elif type_name == "boolean":
        result = pd.Series(pd.arrays.BooleanArray(out, ~ok), index=index, name=name, copy=False)
    elif type_name == "number":
        result = pd.Series(out, index=index, name=name, dtype="float64", copy=False)
    else:
        result = pd.Series(out, index=index, name=name, dtype=object, copy=False)
    return Converted(result, pd.Series(err, index=index, name=name, dtype=object, copy=False))


_STORAGE: dict[str, Any] = {
    "string": object,
    "number": np.float64,
    "integer": np.int64,
    "boolean": bool,
    "datetime": object,
    "date": object,
}


def convert_column(values: pd.Series, type_name: str) -> Converted:
    """Convert one source column to the wire values of ``type_name`` (one of ATTRIBUTE_TYPES).

    Null inputs give null values and no error; a value the type cannot take gives a null value and a
    short reason (without the attribute name) in ``errors``."""
    if type_name not in ATTRIBUTE_TYPES:
        raise ValueError(
            f"unknown attribute type {type_name!r}; expected one of {', '.join(ATTRIBUTE_TYPES)}"
        )
    values = _as_series(values)
    out, ok, err = _run(values, ELEMENT_RULES[type_name], FAST_PATHS[type_name], _STORAGE[type_name])
    return _wrap(type_name, values, out, ok, err)


def convert_uids(values: pd.Series) -> Converted:
    """User uids: the value's text with surrounding whitespace trimmed; "missing user uid" for a null,
    empty or whitespace-only value; "invalid user uid" when longer than 256 characters or holding
    anything but printable ASCII. (Duplicates are the caller's business.)"""
    values = _as_series(values)
    out, ok, err = _run(values, one_uid, fast_uid, object, null_error=MISSING_UID)
    return _wrap("string", values, out, ok, err)


def _convert_column_slow(values: pd.Series, type_name: str) -> Converted:
    """The reference: ``convert_column`` with the element rule only (for tests)."""
    values = _as_series(values)
    out, ok, err = _run(values, ELEMENT_RULES[type_name], None, _STORAGE[type_name])
    return _wrap(type_name, values, out, ok, err)


def _convert_uids_slow(values: pd.Series) -> Converted:
    values = _as_series(values)
    out, ok, err = _run(values, one_uid, None, object, null_error=MISSING_UID)
    return _wrap("string", values, out, ok, err)
