"""The test harness itself: where it looks for PostgreSQL, and the figures it prints at the end of a run."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from tests import conftest


def test_the_postgres_check_looks_where_the_url_points(request, monkeypatch):
    # a server that is reachable at 127.0.0.1:5432 says nothing about one configured elsewhere
    monkeypatch.setattr(conftest, "POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:1/postgres")
    with pytest.raises((pytest.skip.Exception, pytest.fail.Exception)) as outcome:
        request.getfixturevalue("postgres_url")
    assert "PostgreSQL is not reachable at 127.0.0.1:1" in str(outcome.value)
    assert conftest.postgres_address("postgresql+psycopg://ci:pw@db.internal:6543/ci") == (
        "db.internal",
        6543,
    )
    assert conftest.postgres_address("postgresql+psycopg://postgres@/postgres") == ("127.0.0.1", 5432)


class _Reporter:
    def __init__(self, stats: dict[str, list]):
        self.stats = stats
        self.lines: list[str] = []

    def write_sep(self, sep: str, title: str) -> None:
        self.lines.append(f"{sep * 3} {title} {sep * 3}")

    def write_line(self, line: str) -> None:
        self.lines.append(line)


def _report(nodeid: str, when: str, *properties: tuple[str, object]) -> SimpleNamespace:
    return SimpleNamespace(nodeid=nodeid, when=when, user_properties=list(properties))


def test_recorded_figures_are_printed_once_per_property():
    faults = ("figures", {"faults_injected": 112, "duplicates": 0})
    reporter = _Reporter(
        {
            "passed": [
                _report("tests/test_faults.py::test_mixed", "call", faults),
                _report("tests/test_other.py::test_plain", "call"),
            ],
            "failed": [_report("tests/test_crash.py::test_kills", "call", ("kills_survived", 9))],
            "": [
                _report("tests/test_faults.py::test_mixed", "setup"),
                _report("tests/test_faults.py::test_mixed", "teardown", faults),
                _report(
                    "tests/test_crash.py::test_kills", "teardown", ("kills_survived", 9), ("note", "a b")
                ),
            ],
        }
    )
    conftest.pytest_terminal_summary(reporter)
    assert reporter.lines == [
        "--- figures recorded by tests ---",
        "tests/test_crash.py::test_kills kills_survived=9",
        "tests/test_crash.py::test_kills note=a b",
        'tests/test_faults.py::test_mixed figures={"faults_injected":112,"duplicates":0}',
    ]

    quiet = _Reporter({"passed": [_report("tests/test_other.py::test_plain", "call")]})
    conftest.pytest_terminal_summary(quiet)
    assert quiet.lines == []  # nothing recorded: no section
