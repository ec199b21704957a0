"""The markdown tables of the asset metadata (syncs/report.py): what a cell shows, and what the sample says
about the rows it leaves out."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from contentstack_assets.syncs.report import failures_sample, markdown_table, rejected_sample


def _rows(table) -> list[list[str]]:
    """The body rows of a markdown table, as cells (escaped pipes kept inside their cell)."""
    lines = [line for line in table.value.splitlines() if line.startswith("| ")][1:]
    return [[cell.strip() for cell in line.strip("|").replace("\\|", "\0").split(" | ")] for line in lines]


def _rejected(uids: list, reasons: list[str] | None = None) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "row_number": np.arange(1, len(uids) + 1),
            "user_uid": pd.Series(uids, dtype=object),
            "reason": reasons or ["missing user uid"] * len(uids),
        }
    )


def test_a_null_uid_is_an_empty_cell_not_nan():
    frame = _rejected([None, np.nan, "u3"])
    frame.loc[1, "user_uid"] = np.nan  # what pandas stores when a column of uids is all null
    rows = _rows(rejected_sample(frame))
    assert [row[0] for row in rows] == ["", "", "u3"]
    assert "NaN" not in rejected_sample(frame).value and "None" not in rejected_sample(frame).value


@pytest.mark.parametrize(
    ("uid", "shown"),
    [("   ", '"␠␠␠"'), (" u1", '"␠u1"'), ("u1\t", '"u1\\t"'), ("", '""'), ("a b", "a b")],
)
def test_whitespace_in_a_uid_is_visible(uid, shown):
    [row] = _rows(rejected_sample(_rejected([uid])))
    assert row[0] == shown


def test_reasons_are_shown_as_they_are_not_quoted():
    reasons = [
        "ltv: 'abc' is not a number",  # repr would wrap this one in double quotes
        'plan: "x" too long',
        "ends with a quote 'x'",
    ]
    rows = _rows(rejected_sample(_rejected(["u1", "u2", "u3"], reasons)))
    assert [row[1] for row in rows] == reasons


def test_a_reason_with_a_pipe_or_a_newline_stays_in_its_cell():
    [row] = _rows(rejected_sample(_rejected(["u1"], ["a | b\nc"])))
    assert row[1] == "a \0 b\\nc"


def test_a_long_uid_is_cut_so_the_reason_stays_in_view():
    uid = "x" * 200
    [row] = _rows(rejected_sample(_rejected([uid], ["orders: not an integer"])))
    assert row[0].startswith("x" * 20) and row[0].endswith("…") and len(row[0]) <= 40
    assert row[1] == "orders: not an integer"


def test_the_uid_comes_first_and_row_number_says_what_it_counts():
    table = rejected_sample(_rejected(["u1"])).value
    assert table.splitlines()[0] == "| user_uid | reason | row_number |"
    assert "row_number: the row's place in this run's read of the source" in table


def test_a_sample_says_how_many_rows_it_leaves_out_and_how_to_list_them():
    table = rejected_sample(_rejected([f"u{index}" for index in range(57)]))
    assert len(_rows(table)) == 20
    assert "20 of 57 rejected rows shown" in table.value
    assert "contentstack-assets rejected --sync NAME --run RUN_ID" in table.value  # outside a run
    whole = rejected_sample(_rejected(["u1", "u2"])).value
    assert "shown" not in whole and "contentstack-assets" not in whole


def test_a_failures_sample_says_how_many_it_leaves_out():
    failures = [
        (
            SimpleNamespace(user_uid=f"u{index}"),
            SimpleNamespace(status=500, attempts=2, error="HTTP 500: boom"),
        )
        for index in range(25)
    ]
    table = failures_sample(failures, lambda request: request.user_uid)
    assert len(_rows(table)) == 20
    assert "20 of 25 failed users shown" in table.value
    assert "contentstack-assets failed --sync NAME --run RUN_ID" in table.value
    assert _rows(failures_sample(failures[:1], lambda request: request.user_uid)) == [
        ["u0", "500", "2", "HTTP 500: boom"]
    ]


def test_other_tables_keep_their_values_and_show_every_uid_column_as_uids():
    table = markdown_table([{"a": 1, "b": {"k": [1, 2]}, "c": None, "d": 0.5}], ["a", "b", "c", "d"])
    assert _rows(table) == [["1", '{"k": [1, 2]}', "", "0.5"]]
    merge = markdown_table([{"source_uid": " a", "target_uid": float("nan")}], ["source_uid", "target_uid"])
    assert _rows(merge) == [['"␠a"', ""]]
