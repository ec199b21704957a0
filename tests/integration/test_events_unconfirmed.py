"""`event.unconfirmed`: a POST /events whose answer was lost after it went out may or may not have been
counted, and the API has no idempotency key. `resend` (the default) sends it again and reports it; `skip`
never sends it again, keeps it as unconfirmed in the state, and reports it."""

from __future__ import annotations

from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from tests.helpers import PROJECT_UID, fast_retries, run_job, write_spec
from tests.integration.test_events import _event, _keys, _metadata, _write, events_sync
from tests.integration.test_events_retries import KNOWN_EVENTS, _item

USERS = 40


def _counted(emulator) -> int:
    return sum(len(_keys(emulator, f"u{n}")) for n in range(1, USERS + 1))


def _run_with_lost_answers(tmp_path, instance, **event_options):
    url = _write(tmp_path, [_event(n, f"u{n}", "purchase") for n in range(1, USERS + 1)])
    config = EmulatorConfig(
        project_uid=PROJECT_UID, events=KNOWN_EVENTS, faults={"drop_after_apply": 0.25}, seed=11
    )
    emulator_context = run_emulator_in_thread(config)
    emulator = emulator_context.__enter__()
    sync = events_sync(url, emulator.url)
    sync["event"].update(event_options)
    spec = write_spec(tmp_path / "syncs.yaml", [sync])
    result = run_job(spec, "purchases_sync", instance, resources=fast_retries(5))
    return emulator_context, emulator, spec, result


def test_skip_sends_a_lost_event_never_again_and_keeps_it_unconfirmed(tmp_path, instance):
    context, emulator, spec, first = _run_with_lost_answers(tmp_path, instance, unconfirmed="skip")
    try:
        lost = emulator.stats()["faults_injected"]["drop_after_apply"]
        metadata = _metadata(first)
        assert lost > 0 and metadata["events_unconfirmed"] == lost
        assert metadata["events_delivered"] + metadata["events_unconfirmed"] == USERS
        assert metadata["events_failed"] == 0 and first.success
        assert _counted(emulator) == USERS  # each event counted exactly once by the API
        unconfirmed = [n for n in range(1, USERS + 1) if _item(str(n))["last_status"] is None]
        assert len(unconfirmed) == lost
        row = _item(str(unconfirmed[0]))
        assert row["delivered"] and "unconfirmed" in row["last_error"]

        emulator.configure(faults={})
        second = _metadata(run_job(spec, "purchases_sync", instance, resources=fast_retries(5)))
        assert second["requests_sent"] == 0 and second["events_unconfirmed"] == 0
        assert _counted(emulator) == USERS
    finally:
        context.__exit__(None, None, None)


def test_resend_sends_a_lost_event_again_and_reports_it(tmp_path, instance):
    context, emulator, _, first = _run_with_lost_answers(tmp_path, instance)
    try:
        lost = emulator.stats()["faults_injected"]["drop_after_apply"]  # a resent request may be lost again
        metadata = _metadata(first)
        assert 0 < metadata["events_unconfirmed"] <= lost
        assert metadata["events_delivered"] == USERS and first.success
        # what `skip` exists for: the API counted every lost attempt as an event
        assert _counted(emulator) == USERS + lost
    finally:
        context.__exit__(None, None, None)
