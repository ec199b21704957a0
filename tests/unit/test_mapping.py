"""Mapping, called directly: constant attributes become a column of the frame like any mapped column."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from contentstack_assets.engine.convert import WIRE_DTYPES
from contentstack_assets.engine.mapping import map_users, rejected_rows, source_columns, valid_rows
from contentstack_assets.engine.schema import users_schema
from contentstack_assets.engine.source import PRIMARY_KEY
from contentstack_assets.spec import UsersSync


def _sync(**attributes) -> UsersSync:
    return UsersSync.model_validate(
        {
            "name": "users",
            "source": {"url": "sqlite:///unused.db", "table": "users", "updated_at": "updated_at",
                       "start_date": "2024-01-01"},
            "destination": {"project_uid": "p" * 24},
            "match": {"column": "user_uid"},
            "attributes": {"plan": {"column": "plan_name", "type": "string"}, **attributes},
        }
    )  # fmt: skip


def test_a_constant_reads_no_column():
    sync = _sync(source={"value": "warehouse", "type": "string"})
    assert source_columns(sync) == ["user_uid", "plan_name", "updated_at"]


@pytest.mark.parametrize(
    ("value", "type_", "wire"),
    [
        ("warehouse", "string", "warehouse"),
        ("10", "integer", 10),
        (2.5, "number", 2.5),
        ("yes", "boolean", True),
        (dt.date(2024, 1, 2), "date", "2024-01-02"),
        ("2024-01-02T03:04:05+02:00", "datetime", "2024-01-02T01:04:05Z"),
    ],
)
def test_every_valid_row_gets_the_constants_wire_value(value, type_, wire):
    sync = _sync(source={"value": value, "type": type_})
    raw = pd.DataFrame(
        {"user_uid": ["u1", "u2", None], "plan_name": ["gold", None, "x"], "updated_at": [1, 2, 3]}
    )
    frame = map_users(raw, sync)
    assert frame["source"].dtype == WIRE_DTYPES[type_]
    assert frame["source"].tolist()[:2] == [wire, wire]
    assert pd.isna(frame["source"].iloc[2])  # a rejected row's attributes are null, as for any column
    assert frame["_rejection"].tolist() == [None, None, "missing user uid"]
    valid = valid_rows(frame)
    users_schema(sync).validate(valid)
    assert list(valid.columns) == ["user_uid", "plan", "source"]


def test_an_empty_read_maps_to_an_empty_constant_column():
    sync = _sync(source={"value": 3, "type": "integer"})
    frame = map_users(pd.DataFrame({"user_uid": [], "plan_name": [], "updated_at": []}), sync)
    assert len(frame) == 0 and frame["source"].dtype == WIRE_DTYPES["integer"]


def test_a_rejected_row_carries_its_source_key_and_a_valid_row_none():
    """The reader names the table's primary key (frame attribute); the mapping keys the rejected rows only,
    and the valid rows go on without it."""
    raw = pd.DataFrame(
        {
            "user_uid": ["u1", None, "u3"],
            "plan_name": ["free", "free", "pro"],
            "updated_at": ["2024-01-02"] * 3,
            "region": ["eu", "eu", "us"],
            "id": [1, 2, 3],
        },
        dtype=object,
    )
    raw.attrs[PRIMARY_KEY] = ["region", "id"]
    frame = map_users(raw, _sync())
    assert rejected_rows(frame).to_dict("records") == [
        {"row_number": 2, "user_uid": None, "reason": "missing user uid", "source_key": "region=eu, id=2"}
    ]
    assert valid_rows(frame)["user_uid"].tolist() == ["u1", "u3"] and "_source_key" not in valid_rows(frame)
