"""A catalogue of hostile rows, end to end: one source table through the `users_sync` job to the emulator.

Every class of bad or odd value is one row (or a few) among good ones. Each is either rejected with the
contract's reason, or converted exactly as the contract's type table says, and never stops the others: the
test checks every class against what reached the emulator and what the sync state recorded as rejected.
The emulator knows exactly the spec's attribute keys, so a body with any other key would be refused.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from contentstack_assets.engine.state import StateStore, rejections
from contentstack_assets.io_manager import FrameIOManager
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.resources import SyncStateResource
from tests.helpers import (
    DEMO_ATTRIBUTES,
    PROJECT_UID,
    USER_COLUMNS,
    json_text,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)


@dataclass(frozen=True)
class Sent:
    """The row goes out: the emulator holds exactly these attributes for `uid`."""

    uid: str
    attributes: dict


@dataclass(frozen=True)
class Rejected:
    """Every row of the class is rejected with a reason holding `reason`; nothing is sent for it."""

    reason: str


@dataclass(frozen=True)
class NothingSent:
    """A valid row with nothing to send: no request, no rejection."""

    uid: str


TEN_KB = "0123456789abcdef" * 640
UNICODE = "Zoë ∑ 🚀 日本語 עברית \u202e"
CONTROL = "a\x00b\x1b[31mred\r\n\ttab\x7f"
SQL_LIKE = "'; DROP TABLE users; --"
JSON_LIKE = '{"plan": "admin", "vip": true}'

# (class, rows, expected outcome); rows carry only the columns they need (the others are NULL)
CATALOGUE: list[tuple[str, list[dict], Sent | Rejected | NothingSent]] = [
    ("null uid", [dict(user_uid=None, plan_name="x")], Rejected("missing user uid")),
    ("empty uid", [dict(user_uid="", plan_name="x")], Rejected("missing user uid")),
    ("whitespace uid", [dict(user_uid=" \t ", plan_name="x")], Rejected("missing user uid")),
    ("padded uid", [dict(user_uid="  h-padded  ", plan_name="p")], Sent("h-padded", {"plan": "p"})),
    ("integer uid", [dict(user_uid=9001, plan_name="n")], Sent("9001", {"plan": "n"})),
    ("overlong uid", [dict(user_uid="h" * 257, plan_name="x")], Rejected("invalid user uid")),
    ("non-ASCII uid", [dict(user_uid="h-é", plan_name="x")], Rejected("invalid user uid")),
    ("control character in uid", [dict(user_uid="h\x07bell", plan_name="x")], Rejected("invalid user uid")),
    (
        "duplicate uid after trimming",
        [dict(user_uid="h-dup", plan_name="a"), dict(user_uid=" h-dup", plan_name="b")],
        Rejected("duplicate user uid"),
    ),
    (
        "identical duplicate rows",
        [dict(user_uid="h-twin", plan_name="a"), dict(user_uid="h-twin", plan_name="a")],
        Rejected("duplicate user uid"),
    ),
    ("NaN as text", [dict(user_uid="h-nan", lifetime_value="NaN")], Rejected("ltv: 'NaN' is not a number")),
    (
        "infinite float",
        [dict(user_uid="h-inf", lifetime_value=math.inf)],
        Rejected("ltv: inf is not a finite"),
    ),
    ("Infinity as text", [dict(user_uid="h-ninf", lifetime_value="-Infinity")], Rejected("ltv:")),
    (
        "huge but finite number",
        [dict(user_uid="h-huge", lifetime_value=1e308)],
        Sent("h-huge", {"ltv": 1e308}),
    ),
    (
        "number text beyond float",
        [dict(user_uid="h-1e400", lifetime_value="1e400")],
        Rejected("out of range"),
    ),
    (
        "non-numeric text",
        [dict(user_uid="h-abc", lifetime_value="12abc")],
        Rejected("ltv: '12abc' is not a number"),
    ),
    ("non-ASCII digits", [dict(user_uid="h-arabic", lifetime_value="١٢")], Rejected("ltv:")),
    (
        "numeric text",
        [dict(user_uid="h-numtext", lifetime_value="-1.5e2")],
        Sent("h-numtext", {"ltv": -150.0}),
    ),
    (
        "non-integral integer",
        [dict(user_uid="h-frac", order_count=2.5)],
        Rejected("orders: 2.5 is not an integer"),
    ),
    ("integer above 2^53", [dict(user_uid="h-2p53", order_count=2**53 + 1)], Rejected("above 2^53")),
    ("integral float", [dict(user_uid="h-42", order_count=42.0)], Sent("h-42", {"orders": 42})),
    (
        "integer in exponent form",
        [dict(user_uid="h-1e3", order_count="1e3")],
        Sent("h-1e3", {"orders": 1000}),
    ),
    (
        "odd boolean text",
        [dict(user_uid="h-maybe", is_vip="maybe")],
        Rejected("vip: 'maybe' is not a boolean"),
    ),
    ("boolean 2", [dict(user_uid="h-two", is_vip=2)], Rejected("vip: 2 is not a boolean")),
    ("boolean spelled loudly", [dict(user_uid="h-true", is_vip=" TRUE ")], Sent("h-true", {"vip": True})),
    ("boolean 0.0", [dict(user_uid="h-zero", is_vip=0.0)], Sent("h-zero", {"vip": False})),
    ("empty boolean text is null", [dict(user_uid="h-nobool", is_vip="")], NothingSent("h-nobool")),
    ("unparseable datetime", [dict(user_uid="h-yday", created_at="yesterday")], Rejected("signup_at:")),
    ("epoch number as datetime", [dict(user_uid="h-epoch", created_at=1700000000)], Rejected("signup_at:")),
    (
        "datetime in day/month order",
        [dict(user_uid="h-dmy", created_at="31/12/2024 10:00")],
        Rejected("signup_at:"),
    ),
    (
        "datetime with an offset",
        [dict(user_uid="h-tz", created_at="2024-03-01T01:30:00+02:00")],
        Sent("h-tz", {"signup_at": "2024-02-29T23:30:00Z"}),
    ),
    (
        "fractional seconds",
        [dict(user_uid="h-frac-s", created_at="2024-01-02 03:04:05.999999")],
        Sent("h-frac-s", {"signup_at": "2024-01-02T03:04:05Z"}),
    ),
    (
        "date from a timestamp with an offset",
        [dict(user_uid="h-tzdate", birth_date="2024-01-01T23:30:00-02:00")],
        Sent("h-tzdate", {"birthday": "2024-01-02"}),
    ),
    ("impossible date", [dict(user_uid="h-0229", birth_date="2023-02-29")], Rejected("birthday:")),
    ("five-digit year", [dict(user_uid="h-y10k", birth_date="10000-01-01")], Rejected("birthday:")),
    ("10 KB string", [dict(user_uid="h-10kb", plan_name=TEN_KB)], Sent("h-10kb", {"plan": TEN_KB})),
    ("unicode string", [dict(user_uid="h-unicode", plan_name=UNICODE)], Sent("h-unicode", {"plan": UNICODE})),
    ("control characters", [dict(user_uid="h-ctrl", plan_name=CONTROL)], Sent("h-ctrl", {"plan": CONTROL})),
    ("SQL-looking string", [dict(user_uid="h-sql", plan_name=SQL_LIKE)], Sent("h-sql", {"plan": SQL_LIKE})),
    (
        "JSON-looking string",
        [dict(user_uid="h-json", plan_name=JSON_LIKE)],
        Sent("h-json", {"plan": JSON_LIKE}),
    ),
    ("whitespace-only string", [dict(user_uid="h-blank", plan_name="   ")], Sent("h-blank", {"plan": "   "})),
    (
        "bytes for a string",
        [dict(user_uid="h-bytes", plan_name=b"\x00\xff")],
        Rejected("plan: bytes are not text"),
    ),
    ("every value null", [dict(user_uid="h-empty")], NothingSent("h-empty")),
    (
        "one bad value among good ones",
        [dict(user_uid="h-mixed", plan_name="ok", lifetime_value=1.5, order_count="x")],
        Rejected("orders: 'x' is not an integer"),
    ),
]

GOOD_USERS = 50  # ordinary rows around the hostile ones: they must all go out


def _good(index: int) -> dict:
    return dict(
        user_uid=f"g{index:03d}",
        plan_name="gold",
        lifetime_value=index + 0.5,
        order_count=index,
        is_vip=index % 2,
        created_at="2024-05-01 12:00:00",
        birth_date="1990-01-31",
    )


def _good_expected(index: int) -> dict:
    return {
        "plan": "gold",
        "ltv": index + 0.5,
        "orders": index,
        "vip": bool(index % 2),
        "signup_at": "2024-05-01T12:00:00Z",
        "birthday": "1990-01-31",
    }


@dataclass
class SyncedCatalogue:
    users: dict[str, dict]  # what the emulator holds
    reasons: dict[int, str]  # row number -> rejection reason, from the sync state
    first_row: dict[str, int]  # class -> its first row number
    metadata: dict
    patch_counts: dict[str, int]


@pytest.fixture(scope="module")
def synced(tmp_path_factory) -> SyncedCatalogue:
    """The whole catalogue through one run of the job (module-scoped: one run, one assertion per class)."""
    tmp_path: Path = tmp_path_factory.mktemp("hostile_rows")
    rows, first_row = [], {}
    for index in range(GOOD_USERS // 2):
        rows.append(_good(index))
    for name, class_rows, _ in CATALOGUE:
        first_row[name] = len(rows) + 1
        rows.extend(class_rows)
    for index in range(GOOD_USERS // 2, GOOD_USERS):
        rows.append(_good(index))

    state_url = f"sqlite:///{tmp_path / 'state.db'}"
    url = write_sqlite_table(tmp_path / "src.db", rows, columns=USER_COLUMNS)
    config = EmulatorConfig(project_uid=PROJECT_UID, attributes=list(DEMO_ATTRIBUTES))
    with pytest.MonkeyPatch.context() as env, dg.instance_for_test() as instance:
        env.setenv("DAGSTER_HOME", str(tmp_path))
        with run_emulator_in_thread(config) as emulator:
            spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emulator.url)])
            result = run_job(
                spec,
                "users_sync",
                instance,
                resources={
                    "sync_state": SyncStateResource(url=state_url),
                    "contentstack_frames": FrameIOManager(base_dir=str(tmp_path / "frames")),
                },
            )
            assert result.success
            users, patch_counts = emulator.users(), emulator.stats()["patch_counts"]
    with StateStore(state_url).engine.connect() as connection:
        reasons = dict(
            connection.execute(
                sa.select(rejections.c.row_number, rejections.c.reason).where(
                    rejections.c.run_id == result.run_id
                )
            ).all()
        )
    return SyncedCatalogue(users, reasons, first_row, push_metadata(result), patch_counts)


def test_the_catalogue_covers_at_least_25_classes():
    assert len(CATALOGUE) >= 25
    assert len({name for name, _, _ in CATALOGUE}) == len(CATALOGUE)


@pytest.mark.parametrize(("name", "rows", "outcome"), CATALOGUE, ids=[name for name, _, _ in CATALOGUE])
def test_each_hostile_class_is_rejected_or_converted_as_the_contract_says(synced, name, rows, outcome):
    numbers = range(synced.first_row[name], synced.first_row[name] + len(rows))
    if isinstance(outcome, Rejected):
        for number in numbers:
            assert number in synced.reasons, f"row {number} ({name}) was not rejected"
            assert outcome.reason in synced.reasons[number], synced.reasons[number]
    else:
        assert not set(numbers) & set(synced.reasons), [synced.reasons.get(n) for n in numbers]
    if isinstance(outcome, Sent):
        assert json_text(synced.users.get(outcome.uid)) == json_text(outcome.attributes)
        assert synced.patch_counts[outcome.uid] == 1
    if isinstance(outcome, NothingSent):
        assert outcome.uid not in synced.users


def test_the_good_rows_all_go_out_and_only_the_expected_users_are_sent(synced):
    expected = {f"g{index:03d}": _good_expected(index) for index in range(GOOD_USERS)}
    expected.update(
        {outcome.uid: outcome.attributes for _, _, outcome in CATALOGUE if isinstance(outcome, Sent)}
    )
    assert json_text(synced.users) == json_text(expected)
    rejected_rows = sum(len(rows) for _, rows, outcome in CATALOGUE if isinstance(outcome, Rejected))
    assert synced.metadata["rows_rejected"] == rejected_rows == len(synced.reasons)
    assert synced.metadata["users_delivered"] == len(expected) and synced.metadata["users_failed"] == 0
    assert "(no rows rejected)" not in synced.metadata["rejected_sample"]


def test_a_rejection_reason_shows_the_value_shortened(synced):
    # the 10 KB string is accepted; a 10 KB bad value would be shortened in its reason
    longest = max(synced.reasons.values(), key=len)
    assert len(longest) < 400, longest


# -- attribute keys the project does not have -----------------------------------------------------------

TIER = {"tier": {"column": "tier_name", "type": "string"}}


def _tier_source(tmp_path: Path) -> str:
    rows = [dict(_good(index), tier_name="platinum" if index < 5 else None) for index in range(20)]
    return write_sqlite_table(tmp_path / "src.db", rows, columns=[*USER_COLUMNS, "tier_name"])


def test_an_attribute_key_unknown_to_the_project_fails_those_users_clearly_and_the_others_go_out(
    tmp_path, instance
):
    """No management token: nothing checks the keys up front; the Edge answers 400 for bodies holding `tier`."""
    config = EmulatorConfig(project_uid=PROJECT_UID, attributes=list(DEMO_ATTRIBUTES))
    with run_emulator_in_thread(config) as emulator:
        sync = users_sync(_tier_source(tmp_path), emulator.url, attributes={**DEMO_ATTRIBUTES, **TIER})
        result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
        users = emulator.users()
    assert not result.success
    metadata = push_metadata(result)
    assert metadata["users_failed"] == 5 and metadata["users_delivered"] == 15
    expected = {f"g{index:03d}": _good_expected(index) for index in range(5, 20)}
    assert json_text(users) == json_text(expected)  # tier was null: sent
    message = "\n".join(
        event.step_failure_data.error.message
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE
    )
    assert "5 of 20 users failed" in message and "HTTP 400" in message and "tier" in message
    assert "create it in Personalize (Attributes) or fix the spec" in message
    assert "| g000 | 400 | 1 |" in metadata["failures"]  # a 400 is not retried


def test_with_a_management_token_the_key_check_blocks_before_anything_is_sent(tmp_path, instance):
    config = EmulatorConfig(
        project_uid=PROJECT_UID, attributes=list(DEMO_ATTRIBUTES), management_token="mt-1"
    )
    with run_emulator_in_thread(config) as emulator:
        sync = users_sync(_tier_source(tmp_path), emulator.url, attributes={**DEMO_ATTRIBUTES, **TIER})
        sync["destination"].update(management_url=emulator.url, management_token="mt-1")
        result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
        assert emulator.stats()["by_endpoint"] == {"GET /attributes": 1}  # no Edge request at all
    assert not result.success
    check = next(c for c in result.get_asset_check_evaluations() if c.check_name == "attribute_keys_exist")
    assert not check.passed and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.metadata["missing_keys"].value == ["tier"]
    assert "tier" in check.description and "create them in Personalize" in check.description
    started = {e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START}
    assert "users__personalize_users" not in started  # the blocking check stopped the push
