"""Hostile configuration: each mistake gives one paragraph that names the problem and the fix, and no secret.

Spec mistakes fail when the spec loads (the code location never carries half a spec); destination mistakes
(a wrong project, a revoked token, an unreachable API) fail the run, over real HTTP against the emulator.
"""

from __future__ import annotations

import dagster as dg
import pytest
import yaml

from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.resources import PersonalizeResource
from contentstack_assets.spec import SpecError, load_spec
from tests.helpers import (
    PROJECT_UID,
    free_port,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

PASSWORD = "Hunter2-Pa55"
TOKEN = "cs-mgmt-tok-9f8e7d6c5b4a"
SECRETS = (PASSWORD, TOKEN)


def assert_one_clear_paragraph(message: str, *words: str) -> None:
    """One paragraph (no blank line, short), holding every word given, and no secret."""
    assert message.strip() and "\n\n" not in message and len(message) < 900, message
    assert "Traceback" not in message, message
    for word in words:
        assert word in message, f"{word!r} not in: {message}"
    for secret in SECRETS:
        assert secret not in message, message


def _base(**destination) -> dict:
    return {
        "name": "users",
        "source": {"url": "sqlite:///users.db", "table": "users"},
        "destination": {"project_uid": PROJECT_UID, **destination},
        "match": {"column": "user_uid"},
        "attributes": {"plan": {"column": "plan_name", "type": "string"}},
    }


def _spec_error(tmp_path, text: str) -> str:
    path = tmp_path / "syncs.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert str(path) in message, message  # every spec error names the file
    return message


# -- the spec ---------------------------------------------------------------------------------------------


def test_a_missing_spec_stops_the_code_location_with_the_variable_to_set(tmp_path, monkeypatch):
    from contentstack_assets.definitions import defs

    missing = tmp_path / "nowhere" / "syncs.yaml"
    monkeypatch.setenv("CONTENTSTACK_SYNCS_FILE", str(missing))
    with pytest.raises(SpecError) as error:
        defs()  # what `dagster dev` and the webserver load: it fails whole
    assert_one_clear_paragraph(
        str(error.value), str(missing), "cannot read the sync spec", "CONTENTSTACK_SYNCS_FILE"
    )


def test_broken_yaml_names_the_line_but_never_echoes_it(tmp_path):
    """PyYAML quotes the offending line; here that line holds the management token."""
    text = (
        "syncs:\n"
        "  - name: users\n"
        f'    destination: {{project_uid: {PROJECT_UID}, management_token: "{TOKEN}" region: aws-na}}\n'
    )
    message = _spec_error(tmp_path, text)
    assert_one_clear_paragraph(message, "not valid YAML", "line 3", "fix the indentation, quotes or brackets")


SPEC_MISTAKES = [
    # (id, spec text, words the message must hold: the place, the problem, the fix)
    ("not a mapping", "- just\n- a list\n", ["a `syncs:` list at the top"]),
    ("no syncs", "syncs: []\n", ["key 'syncs'", "holds no sync", "add at least one"]),
    ("a sync that is not a mapping", "syncs: [42]\n", ["sync #1", "must be a mapping"]),
    (
        "unknown kind",
        yaml.safe_dump({"syncs": [{**_base(), "kind": "orders"}]}),
        ["sync 'users'", "unknown kind 'orders'", "use users, events or merges"],
    ),
    (
        "unknown region",
        yaml.safe_dump({"syncs": [_base(region="mars-1")]}),
        ["key 'destination.region'", "unknown region 'mars-1'", "'aws-na'", "gcp-eu", "edge_url"],
    ),
    (
        "plain http to a remote Edge",
        yaml.safe_dump({"syncs": [_base(edge_url="http://personalize-edge.example.com")]}),
        ["key 'destination.edge_url'", "plain http to a remote host", "use https://"],
    ),
    (
        "plain http to a remote Management API",
        yaml.safe_dump({"syncs": [_base(management_url="http://10.0.0.8:8080", management_token=TOKEN)]}),
        ["key 'destination.management_url'", "plain http", "use https://"],
    ),
    (
        "an API URL carrying a password",
        yaml.safe_dump({"syncs": [_base(edge_url=f"http://svc:{PASSWORD}@edge.example.com")]}),
        ["key 'destination.edge_url'", "must not carry credentials", "remove them"],
    ),
    (
        "an API URL carrying a token in its query",
        yaml.safe_dump({"syncs": [_base(edge_url=f"https://edge.example.com/?token={TOKEN}")]}),
        ["key 'destination.edge_url'", "must not carry a query", "management_token"],
    ),
    (
        "plain http to a remote host, with a token in the query",
        yaml.safe_dump({"syncs": [_base(management_url=f"http://10.0.0.8:8080/?access_token={TOKEN}")]}),
        ["key 'destination.management_url'", "'http://10.0.0.8:8080/?access_token=***'", "use https://"],
    ),
    (
        "not an http URL",
        yaml.safe_dump({"syncs": [_base(edge_url="ftp://edge.example.com")]}),
        ["key 'destination.edge_url'", "not an http(s) URL", "https://"],
    ),
    (
        "a source URL with a password, and no table",
        yaml.safe_dump(
            {
                "syncs": [
                    {**_base(), "source": {"url": f"postgresql+psycopg://etl:{PASSWORD}@db.internal/crm"}}
                ]
            }
        ),
        ["key 'source'", "exactly one of `table` or `query`"],
    ),
    (
        "a source URL with a password that does not parse",
        yaml.safe_dump(
            {
                "syncs": [
                    {
                        **_base(),
                        "source": {"url": f"postgresql://etl:{PASSWORD}@db:port/crm", "table": "users"},
                    }
                ]
            }
        ),
        ["key 'source.url'", "not a SQLAlchemy URL", "postgresql+psycopg://"],
    ),
    (
        "a management token that is not text",
        yaml.safe_dump({"syncs": [_base(management_token=[TOKEN])]}),
        ["key 'destination.management_token'", "valid string"],
    ),
    (
        "an unset variable",
        yaml.safe_dump({"syncs": [_base(project_uid="${NO_SUCH_PROJECT_VAR}")]}),
        [
            "key 'destination.project_uid'",
            "NO_SUCH_PROJECT_VAR is not set",
            "${NO_SUCH_PROJECT_VAR:-default}",
        ],
    ),
]


@pytest.mark.parametrize(("text", "words"), [m[1:] for m in SPEC_MISTAKES], ids=[m[0] for m in SPEC_MISTAKES])
def test_each_spec_mistake_is_one_clear_paragraph(tmp_path, text, words):
    message = _spec_error(tmp_path, text)
    assert_one_clear_paragraph(message, *words)
    assert message.count("\n") == 0, message  # one mistake, one line: no follow-on errors


# -- the destination, at run time ---------------------------------------------------------------------------


def _rows(n: int = 20) -> list[dict]:
    return [dict(user_uid=f"u{index:02d}", plan_name="gold") for index in range(n)]


def _step_failure(result: dg.ExecuteInProcessResult) -> str:
    failures = [event for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_FAILURE]
    assert len(failures) == 1, [event.message for event in failures]
    return failures[0].step_failure_data.error.message.removeprefix(
        "dagster._core.definitions.events.Failure: "
    )


def test_a_wrong_project_uid_says_the_project_uid_is_probably_wrong(tmp_path, instance):
    """The Edge answers 404 for an unknown project: every user fails the same way, and the run says why."""
    url = write_sqlite_table(tmp_path / "src.db", _rows())
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as emulator:
        sync = users_sync(url, emulator.url)
        sync["destination"]["project_uid"] = "wrongproject000000000000"
        result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
        assert emulator.stats()["by_status"] == {"404": 20}  # a 404 is not retried
    assert not result.success
    metadata = push_metadata(result)
    assert metadata["users_failed"] == 20 and metadata["users_delivered"] == 0
    assert_one_clear_paragraph(
        _step_failure(result),
        "20 of 20 users failed",
        "HTTP 404",
        "'wrongproject000000000000'",
        "the project uid is probably wrong",
        "destination.project_uid",
    )


def test_a_wrong_project_uid_with_a_management_token_fails_before_sending(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", _rows())
    config = EmulatorConfig(project_uid=PROJECT_UID, attributes=["plan"], management_token=TOKEN)
    with run_emulator_in_thread(config) as emulator:
        sync = users_sync(url, emulator.url, attributes={"plan": {"column": "plan_name", "type": "string"}})
        sync["destination"].update(
            project_uid="wrongproject000000000000", management_url=emulator.url, management_token=TOKEN
        )
        result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
        assert emulator.stats()["by_endpoint"] == {"GET /attributes": 1}
    assert not result.success
    assert_one_clear_paragraph(
        _step_failure(result),
        "does not know project wrongproject000000000000",
        "HTTP 404",
        "check `destination.project_uid`",
    )


def test_a_revoked_management_token_says_so_without_showing_it(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", _rows())
    config = EmulatorConfig(
        project_uid=PROJECT_UID, attributes=["plan"], management_token="the-current-token"
    )
    with run_emulator_in_thread(config) as emulator:
        sync = users_sync(url, emulator.url, attributes={"plan": {"column": "plan_name", "type": "string"}})
        sync["destination"].update(management_url=emulator.url, management_token=TOKEN)
        result = run_job(
            write_spec(tmp_path / "syncs.yaml", [sync]),
            "users_sync",
            instance,
            resources={"personalize": PersonalizeResource(max_retries=0, timeout_s=5)},
        )
        assert emulator.stats()["by_endpoint"] == {"GET /attributes": 1}  # a 401 is not retried; no Edge call
    assert not result.success
    assert_one_clear_paragraph(
        _step_failure(result),
        "refused the management token (HTTP 401)",
        "expired or revoked",
        "Set PERSONALIZE_MANAGEMENT_TOKEN",
        "leave it empty to skip the key check",
    )


def test_an_edge_url_where_nothing_listens_fails_clearly(tmp_path, instance):
    url = write_sqlite_table(tmp_path / "src.db", _rows(3))
    spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, f"http://127.0.0.1:{free_port()}")])
    result = run_job(
        spec,
        "users_sync",
        instance,
        resources={"personalize": PersonalizeResource(max_retries=1, backoff_factor=0.01, timeout_s=2)},
    )
    assert not result.success
    assert_one_clear_paragraph(
        _step_failure(result), "3 of 3 users failed", "connection refused", "is the API URL right"
    )


def test_a_source_database_that_does_not_exist_masks_the_password(tmp_path, instance, postgres_url):
    import sqlalchemy as sa

    missing = (
        sa.engine.make_url(postgres_url)
        .set(password=PASSWORD, database="no_such_database")
        .render_as_string(hide_password=False)
    )
    with run_emulator_in_thread(EmulatorConfig()) as emulator:
        result = run_job(
            write_spec(tmp_path / "syncs.yaml", [users_sync(missing, emulator.url)]), "users_sync", instance
        )
        assert emulator.stats()["requests_total"] == 0
    assert not result.success
    assert_one_clear_paragraph(_step_failure(result), ":***@127.0.0.1", "no_such_database", "does not exist")


def test_a_mistyped_sqlite_path_says_the_file_does_not_exist_and_creates_none(tmp_path, instance):
    (tmp_path / "demo").mkdir()
    write_sqlite_table(tmp_path / "demo" / "users.db", _rows(3))
    with run_emulator_in_thread(EmulatorConfig()) as emulator:
        sync = users_sync("sqlite:///demo/nope.db", emulator.url)  # relative to the spec file
        result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
        assert emulator.stats()["requests_total"] == 0
    assert not result.success
    missing = tmp_path / "demo" / "nope.db"
    assert_one_clear_paragraph(
        _step_failure(result), f"source sqlite:///{missing}", f"SQLite database file {missing} does not exist"
    )
    assert not missing.exists()  # SQLite would have created an empty file


def test_an_in_memory_sqlite_source_is_not_taken_for_a_missing_file():
    from contentstack_assets.engine.source import SourceError, SourceReader
    from contentstack_assets.spec import SourceSpec

    source = SourceSpec.model_validate({"url": "sqlite:///:memory:", "table": "users"})
    with pytest.raises(SourceError, match="table 'users' does not exist"):
        SourceReader(source, ["user_uid"]).read()


def test_a_wrong_project_uid_stops_delivery_instead_of_sending_every_user(tmp_path, instance):
    """A thousand users and a project the Edge does not know: the sync stops after the first refusals
    (plus what was in flight) rather than sending a thousand requests that cannot succeed."""
    rows = [dict(user_uid=f"u{i:04d}", plan_name="free") for i in range(1000)]
    url = write_sqlite_table(tmp_path / "src.db", rows)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as emulator:
        sync = users_sync(url, emulator.url, attributes={"plan": {"column": "plan_name", "type": "string"}})
        sync["destination"]["project_uid"] = "wrongproject000000000000"
        result = run_job(write_spec(tmp_path / "syncs.yaml", [sync]), "users_sync", instance)
        sent = emulator.stats()["by_status"]["404"]
    assert not result.success
    assert 25 <= sent <= 25 + 2 * sync["concurrency"], sent
    metadata = push_metadata(result)
    assert metadata["users_delivered"] == 0 and metadata["users_failed"] == sent
    assert_one_clear_paragraph(
        _step_failure(result),
        "the first 25 answers were all refusals (HTTP 404)",
        f"delivery stopped after {sent} of 1000 users",
        "the project uid is probably wrong",
        "run again",
    )
