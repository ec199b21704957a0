"""The pytest plugin for users' own tests, run by pytester on small test files as a user would write them."""

from __future__ import annotations

import textwrap
from importlib.metadata import entry_points

import pytest

from tests.helpers import PROJECT_ROOT

pytest_plugins = ["pytester"]

PLUGIN = "contentstack_assets.pytest_plugin"


def _plugin_args() -> list[str]:
    # installed, the package's pytest11 entry point loads the plugin; from a source checkout, -p does
    installed = any(entry.value == PLUGIN for entry in entry_points(group="pytest11"))
    return [] if installed else ["-p", PLUGIN]


def run(pytester: pytest.Pytester, *args: str, subprocess: bool = False) -> pytest.RunResult:
    runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
    return runner(*_plugin_args(), "-p", "no:cacheprovider", *args)


def test_the_fixture_gives_a_fresh_emulator_and_its_handle(pytester):
    pytester.makepyfile(
        """
        import pytest
        import requests

        HEADERS = {"x-project-uid": "p1", "x-cs-personalize-user-uid": "usr_1"}

        def patch(url, body):
            return requests.patch(url + "/user-attributes", json=body, headers=HEADERS, timeout=10)

        @pytest.mark.parametrize("run", [1, 2])
        def test_empty_at_the_start_of_each_test(personalize_emulator, run):
            assert personalize_emulator.users() == {}
            assert patch(personalize_emulator.url, {"plan": "pro"}).status_code == 200
            assert personalize_emulator.users() == {"usr_1": {"plan": "pro"}}
            assert personalize_emulator.user("usr_1")["attributes"] == {"plan": "pro"}
            assert personalize_emulator.user("usr_2") is None
            personalize_emulator.reset()
            assert personalize_emulator.users() == {}

        @pytest.mark.personalize_emulator(attributes=["plan"], project_uid="p1")
        def test_knobs_from_the_marker(personalize_emulator):
            assert patch(personalize_emulator.url, {"ltv": 3}).status_code == 400
            personalize_emulator.configure(fail_rate=1.0)
            assert patch(personalize_emulator.url, {"plan": "pro"}).status_code == 500

        def test_the_env_fixture(personalize_emulator_env, monkeypatch):
            import os
            assert os.environ["PERSONALIZE_EDGE_URL"] == personalize_emulator_env.url
            assert os.environ["CONTENTSTACK_STATE_URL"].startswith("sqlite:///")
        """
    )
    result = run(pytester)
    result.assert_outcomes(passed=4)


def test_a_conftest_sets_the_knobs_of_every_test(pytester):
    pytester.makeconftest(
        """
        import pytest
        from contentstack_assets.testing import EmulatorConfig

        @pytest.fixture
        def personalize_emulator_config():
            return EmulatorConfig(project_uid="p1", attributes=["plan"], management_token="t")
        """
    )
    pytester.makepyfile(
        """
        import os
        import pytest

        def test_defaults(personalize_emulator_env):
            assert personalize_emulator_env.config().attributes == ["plan"]
            assert os.environ["PERSONALIZE_PROJECT_UID"] == "p1"
            assert os.environ["PERSONALIZE_MANAGEMENT_TOKEN"] == "t"

        @pytest.mark.personalize_emulator(attributes=["plan", "ltv"])
        def test_the_marker_changes_them(personalize_emulator):
            assert personalize_emulator.config().attributes == ["plan", "ltv"]
            assert personalize_emulator.config().project_uid == "p1"
        """
    )
    run(pytester).assert_outcomes(passed=2)


def test_a_bad_knob_is_one_line_without_a_traceback(pytester):
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.personalize_emulator(colour="blue")
        def test_it(personalize_emulator):
            pass
        """
    )
    result = run(pytester)
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*@pytest.mark.personalize_emulator: unknown emulator knob(s): colour*"])
    assert "Traceback" not in result.stdout.str() and "def personalize_emulator" not in result.stdout.str()


def test_the_documented_example_tests_a_users_own_sync(pytester):
    """docs/testing.md's example, on a spec and a table of the user's own."""
    pytester.makefile(
        ".yaml",
        syncs=textwrap.dedent(
            """
            syncs:
              - name: users
                source: {url: "sqlite:///users.db", table: users}
                destination: {project_uid: p1, edge_url: "${PERSONALIZE_EDGE_URL}"}
                match: {column: user_uid}
                attributes:
                  plan: {column: plan_name, type: string}
            """
        ),
    )
    pytester.makepyfile(
        setup_database="""
        import sqlite3
        with sqlite3.connect("users.db") as connection:
            connection.execute("CREATE TABLE users (user_uid TEXT, plan_name TEXT)")
            connection.execute("INSERT INTO users VALUES ('usr_1', 'pro')")
        """
    )
    pytester.runpython(pytester.path / "setup_database.py")
    pytester.makepyfile(test_my_sync=_documented_example())
    # in a process of its own, as a user runs it (Dagster does not survive pytester's in-process reloads)
    # twice (each test with its own emulator and sync state), in a process of its own as a user runs it:
    # Dagster does not survive pytester's in-process module reloads
    args = ("--keep-duplicates", "test_my_sync.py", "test_my_sync.py")
    run(pytester, *args, subprocess=True).assert_outcomes(passed=2)


def _documented_example() -> str:
    text = (PROJECT_ROOT / "docs" / "testing.md").read_text()
    return text.split("```python\n", 1)[1].split("```", 1)[0]
