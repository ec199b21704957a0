"""Property tests of the row rules (the user-uid rule, the value fine points) over whole frames, through `map_users`.

test_convert.py checks each conversion on its own; here arbitrary frames of driver values go through the
mapping as a sync reads them: nothing raises, every row is either valid (a clean unique uid, attribute values
that are JSON of their declared type as the request body carries them) or rejected with a reason and no
values, and rows sharing a uid are all rejected.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from decimal import Decimal
from typing import Any

import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contentstack_assets.engine.convert import convert_uids
from contentstack_assets.engine.mapping import REJECTION, ROW, UID, map_users
from contentstack_assets.engine.plan import native_columns
from contentstack_assets.spec import UsersSync

TYPES = {
    "plan": "string",
    "ltv": "number",
    "orders": "integer",
    "vip": "boolean",
    "signup_at": "datetime",
    "birthday": "date",
}
SYNC = UsersSync.model_validate(
    {
        "name": "users",
        "source": {"url": "sqlite:///unused.db", "table": "users"},
        "destination": {"project_uid": "p" * 24},
        "match": {"column": "uid"},
        "attributes": {key: {"column": f"col_{key}", "type": kind} for key, kind in TYPES.items()},
    }
)
COLUMNS = [SYNC.match.column, *(attribute.column for attribute in SYNC.attributes.values())]
UID_REASONS = ("missing user uid", "invalid user uid", "duplicate user uid")
DATETIME_TEXT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", re.ASCII)
DATE_TEXT = re.compile(r"\d{4}-\d\d-\d\d", re.ASCII)

whitespace = st.sampled_from(["", " ", "  ", "\t", "\n", " \r\n"])
any_text = st.text(alphabet=st.characters(exclude_categories=()), max_size=12)  # control chars, surrogates
driver_values = st.one_of(
    st.none(),
    any_text,
    st.builds(lambda pad, text, end: pad + text + end, whitespace, st.text(max_size=8), whitespace),
    st.sampled_from(["true", " No ", "t", "1e3", "42.0", "-1.5e2", "nan", "inf", "2024-02-29", "x" * 300]),
    st.sampled_from(["2024-03-01T10:00:00+02:00", "2024-01-02 03:04:05.999", "0001-01-01", "31/12/2024"]),
    st.integers(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.floats(),  # nan and inf included
    st.decimals(),  # NaN, sNaN and Infinity included
    st.booleans(),
    st.binary(max_size=6),
    st.dates(),
    st.datetimes(),
    st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=-5, minutes=-30))])),
)
# uids from a small pool, padded, in several types, so that rows often share a trimmed uid
uid_values = st.one_of(
    st.builds(
        lambda pad, uid, end: pad + uid + end, whitespace, st.sampled_from(["a", "u1", "42", "é"]), whitespace
    ),
    st.sampled_from([42, 42.0, Decimal("42"), True, "True", b"42", "", "   ", "h" * 257, "tab\there"]),
    driver_values,
)
rows = st.tuples(uid_values, *(driver_values for _ in TYPES))


def _check_wire_value(kind: str, value: Any) -> None:
    json.dumps(value, allow_nan=False)  # what the request body is serialised with
    if kind == "string":
        assert type(value) is str
    elif kind == "number":
        assert type(value) in (int, float) and math.isfinite(value)
    elif kind == "integer":
        assert type(value) is int and abs(value) <= 2**53
    elif kind == "boolean":
        assert type(value) is bool
    elif kind == "datetime":
        assert type(value) is str and DATETIME_TEXT.fullmatch(value), value
        dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ")
    else:
        assert type(value) is str and DATE_TEXT.fullmatch(value), value
        dt.date.fromisoformat(value)


# one failure, shrunk: a frame of many mixed columns takes minutes to shrink for several at once
@settings(
    max_examples=200, deadline=None, report_multiple_bugs=False, suppress_health_check=[HealthCheck.too_slow]
)
@given(st.lists(rows, max_size=20))
def test_every_row_is_valid_or_rejected_with_a_reason(table: list[tuple]) -> None:
    raw = pd.DataFrame(
        {
            column: pd.Series([row[index] for row in table], dtype=object)
            for index, column in enumerate(COLUMNS)
        }
    )
    frame = map_users(raw, SYNC)  # never raises

    assert len(frame) == len(table) and frame[ROW].tolist() == list(range(1, len(table) + 1))
    wire = native_columns(frame, list(TYPES))  # the values as a request body carries them
    raw_uids = raw[SYNC.match.column].tolist()
    trimmed = convert_uids(raw[SYNC.match.column]).values.tolist()  # None where missing or invalid
    valid_uids = []
    for index, reason in enumerate(frame[REJECTION]):
        values = {key: wire[key][index] for key in TYPES}
        sharing = trimmed[index] is not None and trimmed.count(trimmed[index]) > 1
        if reason is None:
            uid = frame[UID].iat[index]
            assert type(uid) is str and 1 <= len(uid) <= 256 and uid == uid.strip(), uid
            assert all(0x20 <= ord(char) <= 0x7E for char in uid), uid
            if isinstance(raw_uids[index], str):
                assert uid == raw_uids[index].strip()
            assert not sharing
            valid_uids.append(uid)
            for key, value in values.items():
                if value is not None:
                    _check_wire_value(TYPES[key], value)
        else:
            assert isinstance(reason, str) and reason.strip(), reason
            assert reason.startswith(UID_REASONS + tuple(f"{key}: " for key in TYPES)), reason
            assert all(value is None for value in values.values()), values
            if sharing:
                assert "duplicate user uid" in reason, reason
            if trimmed[index] is None:
                assert reason.startswith(("missing user uid", "invalid user uid")), reason
    assert len(valid_uids) == len(set(valid_uids))
