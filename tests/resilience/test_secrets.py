"""Secrets never show: a database password and a management token, through full syncs that succeed and fail.

The source and the sync state store sit on the local PostgreSQL behind a URL with a password, in its user part
or as a `?password=` query parameter (trust authentication ignores it, so any password works); the Management
API token is checked by the emulator.
Then every place a secret could surface is searched: every Dagster event of every run (messages, metadata,
check results, failures), the stored runs and job snapshots, the sync state's tables (sync log, rejections,
users, runs), sensor answers, exception texts, what reached stdout/stderr and Python logging, and every file
the runs left behind.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from urllib.parse import quote, quote_plus

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._serdes import serialize_value

from contentstack_assets.definitions import build_definitions
from contentstack_assets.engine.source import _reason
from contentstack_assets.engine.state import StateStore, metadata
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.resources import PersonalizeResource
from contentstack_assets.spec import SourceSpec, load_spec
from tests.helpers import DEMO_ATTRIBUTES, PROJECT_UID, push_metadata, run_job, write_spec

PASSWORD = "S3cret:P@ss/w0rd!"  # characters that a URL must escape
TOKEN = "cs-tok-7c1f9e2b-SECRET"
SECRET_FORMS = {
    "password": PASSWORD,
    "password, URL-escaped": quote(PASSWORD, safe=""),
    "password, partly escaped": quote(PASSWORD, safe=":!"),
    "password, form-escaped": quote_plus(PASSWORD),
    "management token": TOKEN,
}


def _create_source(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(
            sa.text(
                "CREATE TABLE users (user_uid text, plan_name text, lifetime_value numeric, order_count bigint, "
                "is_vip boolean, created_at timestamptz, birth_date date)"
            )
        )
        connection.execute(
            sa.text("INSERT INTO users VALUES (:u, :p, :l, :o, :v, now(), '1990-01-01')"),
            [dict(u=f"s{i:03d}", p="gold", l=i, o=i, v=i % 2 == 0) for i in range(40)]
            + [dict(u="s000", p="duplicate", l=0, o=0, v=True)],  # a rejection, with its reason in the state
        )
    engine.dispose()


def _state_dump(url: str) -> str:
    """Every row of every table of the sync state store, as text."""
    store = StateStore(url)
    with store.engine.connect() as connection:
        return "\n".join(
            repr(row) for table in metadata.sorted_tables for row in connection.execute(sa.select(table))
        )


def _files_under(*roots: Path) -> dict[str, bytes]:
    found = {}
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file():
                found[str(path)] = path.read_bytes()
    return found


QUERY_SECRET = "Qu3ry:S3cret/V@l!"
ODBC = quote_plus(
    f"DRIVER={{ODBC Driver 18 for SQL Server}};SERVER=db.internal;UID=etl;PWD={{{QUERY_SECRET}}};"
)


@pytest.mark.parametrize(
    "url, shown",
    [
        (
            f"postgresql+psycopg://postgres@127.0.0.1:5432/crm?password={quote_plus(QUERY_SECRET)}",
            "postgresql+psycopg://postgres@127.0.0.1:5432/crm?password=***",
        ),
        (
            f"postgresql+psycopg://etl:{quote(QUERY_SECRET, safe='')}@db.internal/crm?sslmode=require"
            f"&sslpassword={quote(QUERY_SECRET, safe='')}&application_name=sync",
            "postgresql+psycopg://etl:***@db.internal/crm?sslmode=require&sslpassword=***&application_name=sync",
        ),
        (
            f"snowflake://etl@acct/db?private_key_passphrase={quote_plus(QUERY_SECRET)}&warehouse=wh"
            f"&Api_Key={quote_plus(QUERY_SECRET)}&PWD={quote_plus(QUERY_SECRET)}",
            "snowflake://etl@acct/db?private_key_passphrase=***&warehouse=wh&Api_Key=***&PWD=***",
        ),
        (
            f"postgresql+psycopg://db.internal/crm?passwd={quote_plus(QUERY_SECRET)}&client_secret=x{QUERY_SECRET}"
            f"&access_token=t{QUERY_SECRET}&key=k{QUERY_SECRET}",
            "postgresql+psycopg://db.internal/crm?passwd=***&client_secret=***&access_token=***&key=***",
        ),
        (f"mssql+pyodbc:///?odbc_connect={ODBC}", "mssql+pyodbc:///?odbc_connect=***"),
    ],
)
def test_credential_query_parameters_are_masked_wherever_a_url_is_shown(url, shown):
    source = SourceSpec(url=url, table="users")
    assert source.display_url == shown
    # a driver's error text: the URL itself, and the secret raw, URL-escaped and inside a connection string
    error = Exception(
        f"cannot connect to {url}: password {QUERY_SECRET!r} refused (conninfo password={quote_plus(QUERY_SECRET)}, "
        f"odbc {quote(QUERY_SECRET, safe='')} PWD={{{QUERY_SECRET}}})"
    )
    reason = _reason(source, error)
    assert shown in reason and "***" in reason
    for form in (QUERY_SECRET, quote_plus(QUERY_SECRET), quote(QUERY_SECRET, safe=""), ODBC):
        assert form not in reason, reason


@pytest.mark.filterwarnings("ignore:Query string argument:sqlalchemy.exc.SAWarning")  # pysqlite ignores it
def test_the_state_store_url_is_shown_masked(tmp_path):
    url = f"sqlite:///{tmp_path / 'state.db'}?api_key={quote_plus(QUERY_SECRET)}&timeout=30"
    shown = repr(StateStore(url))
    assert shown == f"StateStore(sqlite:///{tmp_path / 'state.db'}?api_key=***&timeout=30)"


@pytest.mark.parametrize(
    "state_url, shown",
    [
        ("sqlite:///{tmp_path}/typo.db?api_key={secret}", "no sync state at sqlite:///{tmp_path}/typo.db?api_key=***"),
        ("postgresql+psycopg://etl@127.0.0.1:1/state?password={secret}", "cannot read the sync state at "
         "postgresql+psycopg://etl@127.0.0.1:1/state?password=***: connection failed"),
    ],
)  # fmt: skip
def test_the_sync_log_cli_masks_credential_query_parameters(tmp_path, capsys, state_url, shown):
    from contentstack_assets import log

    url = state_url.format(tmp_path=tmp_path, secret=quote_plus(QUERY_SECRET))
    assert log.main(["u0001", "--state-url", url]) == 2
    error = capsys.readouterr().err
    assert shown.format(tmp_path=tmp_path) in error and error.count("\n") == 1, error
    assert QUERY_SECRET not in error and quote_plus(QUERY_SECRET) not in error, error


@pytest.mark.parametrize("where", ["user part", "query parameter"])
def test_no_secret_reaches_any_log_metadata_state_error_or_output(
    tmp_path, instance, postgres_url, monkeypatch, capfd, caplog, where
):
    caplog.set_level(logging.DEBUG)
    parsed = sa.engine.make_url(postgres_url)
    if where == "user part":
        secret_url = parsed.set(password=PASSWORD).render_as_string(hide_password=False)
        assert quote(PASSWORD, safe="") in secret_url or quote(PASSWORD, safe=":!") in secret_url
        masked = ":***@127.0.0.1"
    else:  # libpq takes the password from the query as well (postgresql://etl@db/crm?password=...)
        secret_url = parsed.update_query_dict({"password": PASSWORD}).render_as_string(hide_password=False)
        assert quote_plus(PASSWORD) in secret_url
        masked = "?password=***"
    _create_source(postgres_url)
    # the secrets arrive the way they do in production: from the environment, through ${VAR} in the spec
    monkeypatch.setenv("SOURCE_DATABASE_URL", secret_url)
    monkeypatch.setenv("PERSONALIZE_MANAGEMENT_TOKEN", TOKEN)
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", secret_url)

    config = EmulatorConfig(
        project_uid=PROJECT_UID, attributes=list(DEMO_ATTRIBUTES), management_token=TOKEN, seed=3
    )
    texts: dict[str, str] = {}
    with run_emulator_in_thread(config) as emulator:

        def spec_for(table: str, name: str, create_missing: bool = False) -> Path:
            sync = {
                "name": "users",
                "source": {"url": "${SOURCE_DATABASE_URL}", "table": table},
                "destination": {
                    "project_uid": PROJECT_UID,
                    "edge_url": emulator.url,
                    "management_url": emulator.url,
                    "management_token": "${PERSONALIZE_MANAGEMENT_TOKEN}",
                    "create_missing": create_missing,
                },
                "match": {"column": "user_uid"},
                "attributes": DEMO_ATTRIBUTES,
            }
            return write_spec(tmp_path / name, [sync])

        good, broken = spec_for("users", "syncs.yaml"), spec_for("no_such_table", "broken.yaml")
        no_retries = {"personalize": PersonalizeResource(max_retries=0, timeout_s=5)}
        runs = {}
        emulator.configure(fail_rate=0.3)  # failures: error texts in the log, the state and the run's failure
        runs["partly failed"] = run_job(good, "users_sync", instance, resources=no_retries)
        emulator.configure(fail_rate=0.0)
        runs["succeeded"] = run_job(good, "users_sync", instance, resources=no_retries)
        runs["missing table"] = run_job(broken, "users_sync", instance, resources=no_retries)
        emulator.configure(management_token="a-rotated-token")  # ours is revoked: a 401
        runs["revoked token"] = run_job(good, "users_sync", instance, resources=no_retries)

        assert not runs["partly failed"].success and push_metadata(runs["partly failed"])["users_failed"] > 0
        assert runs["succeeded"].success and len(emulator.users()) == 39  # s000 is rejected (duplicate)
        assert not runs["missing table"].success and not runs["revoked token"].success

        # destination.create_missing: keys created with the token, then refused to a read-only one (a 403)
        creating = spec_for("users", "creating.yaml", create_missing=True)
        emulator.configure(management_token=TOKEN, attributes=list(DEMO_ATTRIBUTES)[:4])
        runs["created keys"] = run_job(creating, "users_sync", instance, resources=no_retries)
        assert runs["created keys"].success
        emulator.reset()
        emulator.configure(management_token="another-token", management_read_only_token=TOKEN)
        runs["read-only token"] = run_job(creating, "users_sync", instance, resources=no_retries)
        assert not runs["read-only token"].success

        # the source-changed sensor, on a source it cannot read: its skip reason names the (masked) URL
        defs = build_definitions(load_spec(broken))
        sensor = defs.resolve_sensor_def("users_source_changed")
        tick = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
        texts["sensor answer"] = serialize_value(tick)
        assert "***" in tick.skip_message

    for label, result in runs.items():
        texts[f"events of the {label} run"] = serialize_value(list(instance.all_logs(result.run_id)))
        texts[f"messages of the {label} run"] = "\n".join(str(event.message) for event in result.all_events)
        run = instance.get_run_by_id(result.run_id)
        texts[f"stored {label} run"] = serialize_value(run)
        texts[f"job snapshot of the {label} run"] = serialize_value(
            instance.get_job_snapshot(run.job_snapshot_id)
        )
        texts[f"failures of the {label} run"] = "\n".join(
            event.step_failure_data.error.to_string()
            for event in result.all_events
            if event.event_type == dg.DagsterEventType.STEP_FAILURE
        )
    texts["definitions"] = repr(load_spec(good)) + repr(StateStore(secret_url))
    texts["sync state"] = _state_dump(secret_url)
    captured = capfd.readouterr()
    texts["stdout"], texts["stderr"], texts["python logging"] = captured.out, captured.err, caplog.text
    files = _files_under(Path(os.environ["DAGSTER_HOME"]), Path(instance.root_directory))

    # the searches are not vacuous: the failures, the sync log and the masked URL really are in there
    assert "users failed after retries" in texts["failures of the partly failed run"]
    assert "HTTP 500" in texts["sync state"] and "duplicate user uid" in texts["sync state"]
    assert masked in texts["failures of the missing table run"]
    assert "refused the management token" in texts["failures of the revoked token run"]
    assert "created custom attribute 'signup_at'" in texts["events of the created keys run"]
    assert "personalize:manage" in texts["failures of the read-only token run"]
    assert "STEP_FAILURE" in texts["stderr"] and files

    leaks = [
        f"{form} in {where}"
        for where, text in texts.items()
        for form, secret in SECRET_FORMS.items()
        if secret in text
    ] + [
        f"{form} in file {path}"
        for path, content in files.items()
        for form, secret in SECRET_FORMS.items()
        if secret.encode() in content
    ]
    assert not leaks, leaks
