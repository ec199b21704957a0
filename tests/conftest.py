"""Shared fixtures: a real emulator over HTTP, real SQLite/PostgreSQL sources and state, a temp DAGSTER_HOME."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from tests.helpers import PROJECT_UID

POSTGRES_ADMIN_URL = os.environ.get(
    "TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
)
ON_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


def postgres_address(url: str) -> tuple[str, int]:
    """Where the test PostgreSQL listens: the host and port of its URL (TEST_POSTGRES_URL may move it)."""
    parsed = sa.engine.make_url(url)
    return parsed.host or "127.0.0.1", parsed.port or 5432


def require_service(name: str, host: str, port: int) -> None:
    """Skip where the local server is absent, except on CI, where its absence is a failure."""
    if _reachable(host, port):
        return
    message = f"{name} is not reachable at {host}:{port}"
    if ON_CI:
        pytest.fail(f"{message}, and CI=true: the CI machine must run it")
    pytest.skip(f"{message} (start it to run this test; CI fails instead of skipping)")


@pytest.fixture(autouse=True)
def _isolated_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every test gets its own DAGSTER_HOME and state store, and none of the developer's variables."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", f"sqlite:///{tmp_path / 'state.db'}")
    for variable in (
        "CONTENTSTACK_SYNCS_FILE",
        "PERSONALIZE_PROJECT_UID",
        "PERSONALIZE_EDGE_URL",
        "PERSONALIZE_MANAGEMENT_URL",
        "PERSONALIZE_MANAGEMENT_TOKEN",
        "SOURCE_DATABASE_URL",
        "CONTENTSTACK_ALERT_WEBHOOK_URL",
    ):
        monkeypatch.delenv(variable, raising=False)
    yield


@pytest.fixture
def emulator():
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as handle:
        yield handle


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    require_service("PostgreSQL", *postgres_address(POSTGRES_ADMIN_URL))
    name = f"cs_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(POSTGRES_ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        sa.create_engine(url).dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """The figures tests recorded with `record_property` (faults injected, kills survived, ...): one line each
    at the end of the run, so that CI logs show them and not only a JUnit XML nobody opens."""
    recorded: dict[str, list[tuple[str, object]]] = {}
    for reports in terminalreporter.stats.values():
        for report in reports:
            properties = getattr(report, "user_properties", None)
            # each phase's report carries what was recorded so far: keep the fullest
            if properties and len(properties) > len(recorded.get(report.nodeid, [])):
                recorded[report.nodeid] = list(properties)
    if not recorded:
        return
    terminalreporter.write_sep("-", "figures recorded by tests")
    for nodeid, properties in sorted(recorded.items()):
        for name, value in properties:
            shown = value if isinstance(value, str) else json.dumps(value, default=str, separators=(",", ":"))
            terminalreporter.write_line(f"{nodeid} {name}={shown}")
