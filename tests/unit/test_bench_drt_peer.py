"""bench/drt_peer.py's check of what drt delivered: it must refuse a refused request, a wrong attribute, a
user patched twice or missed, and read SQLite's text the same as DuckDB's and PostgreSQL's native types."""

from __future__ import annotations

import datetime as dt
import importlib.util
import sys
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def _load_drt_peer():
    spec = importlib.util.spec_from_file_location("bench_drt_peer", BENCH_DIR / "drt_peer.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_drt_peer", module)
    spec.loader.exec_module(module)
    return module


drt_peer = _load_drt_peer()

SQLITE_ROW = {
    "user_uid": "usr_00000001",
    "plan_name": "pro",
    "lifetime_value": 132.14,
    "order_count": 185,
    "is_vip": 1,
    "created_at": "2023-05-18 01:03:50",
    "birth_date": "1952-09-12",
}
NATIVE_ROW = {
    **SQLITE_ROW,
    "is_vip": True,
    "created_at": dt.datetime(2023, 5, 18, 1, 3, 50),
    "birth_date": dt.date(1952, 9, 12),
}
WIRE = {
    "plan": "pro",
    "ltv": 132.14,
    "orders": 185,
    "vip": True,
    "signup_at": "2023-05-18T01:03:50Z",
    "birthday": "1952-09-12",
}


def _stats(statuses: dict[str, int], patch_counts: dict[str, int]) -> dict:
    return {"requests_total": sum(statuses.values()), "by_status": statuses, "patch_counts": patch_counts}


def test_expected_attributes_are_the_wire_forms_whatever_the_database_types():
    assert drt_peer.expected_attributes(SQLITE_ROW) == WIRE
    assert drt_peer.expected_attributes(NATIVE_ROW) == WIRE


def test_a_delivery_of_every_user_once_with_the_right_attributes_is_accepted():
    check = drt_peer.check_delivery(
        _stats({"200": 1}, {"usr_00000001": 1}), {"usr_00000001": dict(WIRE)}, [SQLITE_ROW]
    )
    assert check["accepted"]
    assert check["users_wrong"] == 0 and check["refused"] == {}


def test_a_refused_request_is_not_accepted():
    check = drt_peer.check_delivery(
        _stats({"200": 1, "400": 1}, {"usr_00000001": 1}), {"usr_00000001": dict(WIRE)}, [SQLITE_ROW]
    )
    assert not check["accepted"]
    assert check["refused"] == {"400": 1}


def test_a_wrong_or_missing_attribute_is_not_accepted():
    wrong = {**WIRE, "signup_at": "2023-05-18 01:03:50"}
    check = drt_peer.check_delivery(
        _stats({"200": 1}, {"usr_00000001": 1}), {"usr_00000001": wrong}, [SQLITE_ROW]
    )
    assert not check["accepted"]
    assert check["users_wrong"] == 1
    assert check["examples_wrong"][0]["stored"] == wrong
    missing = drt_peer.check_delivery(_stats({}, {}), {}, [SQLITE_ROW])
    assert not missing["accepted"]


def test_a_user_patched_twice_is_not_accepted():
    check = drt_peer.check_delivery(
        _stats({"200": 2}, {"usr_00000001": 2}), {"usr_00000001": dict(WIRE)}, [SQLITE_ROW]
    )
    assert not check["accepted"]


def test_the_project_sends_the_user_in_the_edge_header(tmp_path):
    project = drt_peer.write_project(
        tmp_path, f"sqlite:///{tmp_path / 'users.db'}", "http://127.0.0.1:9/", "p" * 24
    )
    sync = yaml.safe_load((project / "syncs" / f"{drt_peer.SYNC_NAME}.yml").read_text())
    destination = sync["destination"]
    assert destination["url"] == "http://127.0.0.1:9/user-attributes"
    assert destination["method"] == "PATCH"
    assert destination["headers"]["x-project-uid"] == "p" * 24
    assert destination["native_idempotency_header"] == "x-cs-personalize-user-uid"
    assert destination["native_idempotency_key"] == "{{ row.user_uid }}"
    assert sync["sync"]["rate_limit"] == {"requests_per_second": 0}
    profiles = yaml.safe_load((tmp_path / "home" / ".drt" / "profiles.yml").read_text())
    assert profiles == {"bench": {"type": "sqlite", "database": str(tmp_path / "users.db")}}
