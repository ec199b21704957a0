"""`contentstack-assets rejected` and `failed` on a state store written directly: every row of a run, as CSV
or JSON, the latest run by default, and one-line errors."""

from __future__ import annotations

import csv
import io
import json

import pandas as pd
import pytest

from contentstack_assets import cli
from contentstack_assets.engine.state import ItemOutcome, StateStore, UserOutcome


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path, monkeypatch) -> StateStore:
    """A store on SQLite and on PostgreSQL (skipped where none runs): the commands read it through
    CONTENTSTACK_STATE_URL."""
    url = (
        f"sqlite:///{tmp_path / 'state.db'}"
        if request.param == "sqlite"
        else request.getfixturevalue("postgres_url")
    )
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", url)
    return StateStore(url)


def _reject(store: StateStore, sync: str, run_id: str, uids: list) -> None:
    store.start_run(sync, run_id, "all", dry_run=False)
    store.record_rejections(
        sync,
        run_id,
        pd.DataFrame(
            {
                "row_number": range(1, len(uids) + 1),
                "user_uid": pd.Series(uids, dtype=object),
                "reason": [f"orders: 'x{index}' is not an integer" for index in range(len(uids))],
            }
        ),
    )


def _failed(uid: str, status: int = 500) -> UserOutcome:
    return UserOutcome(uid, ("plan",), False, status, 3, 9.0, f"HTTP {status}: boom, {uid}", None, None)


def _run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_every_rejected_row_of_a_run_as_csv(store, capsys):
    long_uid = "y" * 300
    _reject(store, "users", "run-1", [f"u{index:03d}" for index in range(45)] + [None, "  ", long_uid])
    _reject(store, "users", "run-2", ["other"])
    code, out, _ = _run(capsys, "rejected", "--sync", "users", "--run", "run-1")
    assert code == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    assert len(rows) == 48
    assert list(rows[0]) == ["sync", "run_id", "source_key", "row_number", "user_uid", "reason", "at"]
    assert rows[0]["source_key"] == ""  # recorded without one (a `query:`, a table without a key)
    assert rows[0]["reason"] == "orders: 'x0' is not an integer"  # as recorded, not quoted
    assert [row["user_uid"] for row in rows[-3:]] == ["", "  ", long_uid]  # full values in the listing
    assert {row["run_id"] for row in rows} == {"run-1"}
    assert rows[0]["at"].endswith("+00:00")  # UTC, said so, also where SQLite forgets the zone


def test_rejected_defaults_to_the_latest_run_and_writes_json_to_a_file(store, capsys, tmp_path):
    _reject(store, "users", "run-1", ["a", "b"])
    _reject(store, "users", "run-2", ["c", None])
    out_file = tmp_path / "rows.json"
    code, out, err = _run(capsys, "rejected", "--sync", "users", "--format", "json", "--out", str(out_file))
    assert code == 0 and out == ""
    rows = json.loads(out_file.read_text())
    assert [(row["run_id"], row["user_uid"]) for row in rows] == [("run-2", "c"), ("run-2", None)]
    assert "2 rejected rows of run run-2 of sync users" in err


def test_a_run_id_prefix_is_enough(store, capsys):
    _reject(store, "users", "8c1d2e3f-aaaa", ["a"])
    code, out, _ = _run(capsys, "rejected", "--sync", "users", "--run", "8c1d2e3f", "--format", "json")
    assert code == 0 and json.loads(out)[0]["run_id"] == "8c1d2e3f-aaaa"


def test_every_failed_user_of_a_run(store, capsys):
    store.start_run("users", "run-1", "all", dry_run=False)
    store.record_user_outcomes("users", "run-1", [_failed(f"u{index:02d}") for index in range(30)])
    store.start_run("users", "run-2", "all", dry_run=False)
    store.record_user_outcomes("users", "run-2", [_failed("u00", 429)])
    code, out, _ = _run(capsys, "failed", "--sync", "users", "--run", "run-1", "--format", "json")
    assert code == 0
    rows = json.loads(out)
    assert len(rows) == 30 and rows[0]["user_uid"] == "u00" and rows[0]["status"] == 500
    assert rows[0]["error"] == "HTTP 500: boom, u00" and rows[0]["attempts"] == 3
    code, out, _ = _run(capsys, "failed", "--sync", "users")
    assert [row["status"] for row in csv.DictReader(io.StringIO(out))] == ["429"]


def test_the_failed_items_of_an_events_run(store, capsys):
    store.start_run("events", "run-1", "all", dry_run=False)
    failed = UserOutcome("u1", ("purchase",), False, 500, 2, 1.0, "HTTP 500", None, None, request="events")
    delivered = UserOutcome("u2", ("purchase",), True, 200, 1, 1.0, None, None, None, request="events")
    store.record_item_requests(
        "events",
        "run-1",
        [
            (
                [
                    ItemOutcome("e1", "u1", False, 500, "HTTP 500"),
                    ItemOutcome("e2", "u1", False, 500, "HTTP 500"),
                ],
                failed,
            ),
            ([ItemOutcome("e3", "u2", True, 200, None)], delivered),
        ],
    )
    code, out, _ = _run(capsys, "failed", "--sync", "events", "--format", "json")
    assert code == 0
    [row] = json.loads(out)
    assert (row["user_uid"], row["request"], row["items"]) == ("u1", "events", ["e1", "e2"])


def test_a_run_with_nothing_to_list_is_an_empty_listing(store, capsys):
    _reject(store, "users", "run-1", ["a"])
    code, out, err = _run(capsys, "failed", "--sync", "users", "--run", "run-1")
    assert code == 0 and out.splitlines() == [
        "sync,run_id,user_uid,request,keys,status,attempts,error,items,at"
    ]
    assert "no failed users of run run-1 of sync users" in err


def test_an_unknown_run_or_sync_is_one_line(store, capsys):
    _reject(store, "users", "run-1", ["a"])
    code, out, err = _run(capsys, "rejected", "--sync", "users", "--run", "nope")
    assert code == 2 and out == ""
    assert err.startswith("contentstack-assets rejected: no run nope of sync users in the state at ")
    assert "dry run" in err and len(err.splitlines()) == 1
    code, _, err = _run(capsys, "rejected", "--sync", "nobody")
    assert code == 2 and "no run of sync nobody" in err and "syncs there: users" in err


def test_a_secret_in_the_state_url_is_never_printed(tmp_path, capsys):
    url = f"postgresql+psycopg://me:hunter2@127.0.0.1:1/{tmp_path.name}"
    code, _, err = _run(capsys, "rejected", "--sync", "users", "--state-url", url)
    assert code == 2 and "hunter2" not in err and "***" in err
