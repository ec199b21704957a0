"""The day a partition value falls in, by which a run over several days counts each row on its own day
(the plan counted by day: tests/unit/test_plan.py)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from contentstack_assets.engine.source import days_of


@pytest.mark.parametrize(
    ("values", "days"),
    [
        (
            ["2024-01-05 23:59:59", "2024-01-06", "2024-01-06T00:00:00+05:00"],
            ["2024-01-05", "2024-01-06", "2024-01-06"],
        ),
        ([dt.datetime(2024, 1, 5, 23, 0, tzinfo=dt.timezone(dt.timedelta(hours=-5)))], ["2024-01-06"]),
        ([pd.Timestamp("2024-01-05 10:00")], ["2024-01-05"]),  # naive = UTC
        ([dt.date(2024, 2, 29)], ["2024-02-29"]),
        ([1709251199, 1709251200], ["2024-02-29", "2024-03-01"]),  # epoch seconds
        ([1709251199000, 1709251200000], ["2024-02-29", "2024-03-01"]),  # epoch milliseconds
        ([None, float("nan"), pd.NaT, "soon"], [None, None, None, None]),
    ],
)
def test_the_day_of_a_partition_value(values, days):
    assert days_of(pd.Series(values, dtype=object)).tolist() == days


def test_a_typed_column_of_instants():
    values = pd.Series(pd.to_datetime(["2024-01-05 23:30", None]).tz_localize("America/New_York"))
    assert days_of(values).tolist() == ["2024-01-06", None]
    assert days_of(pd.Series([1709251200.0, np.nan])).tolist() == ["2024-03-01", None]
