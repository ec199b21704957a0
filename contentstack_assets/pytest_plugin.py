"""pytest fixtures for testing your own syncs against the bundled emulator (registered through the
`pytest11` entry point: installing the package is enough).

- `personalize_emulator`: an emulator in a thread for one test; the handle has `.url`, `.users()`,
  `.user(uid)`, `.stats()`, `.configure(**knobs)` and `.reset()`.
- `personalize_emulator_env`: the same emulator, with `PERSONALIZE_EDGE_URL` and its siblings set for the test
  and a sync state of its own.
- `personalize_emulator_config`: the `EmulatorConfig` it starts with; override it in a conftest.py, or give
  one test its own knobs with `@pytest.mark.personalize_emulator(attributes=["plan"], events=["purchase"])`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:  # the emulator (aiohttp) is imported by the fixtures, not whenever pytest starts
    from contentstack_assets.testing import EmulatorConfig, EmulatorThread

MARKER = "personalize_emulator"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**knobs): EmulatorConfig knobs for this test's personalize_emulator "
        "(project_uid, attributes, events, management_token, latency_ms, fail_rate, faults, ...)",
    )


@pytest.fixture
def personalize_emulator_config() -> EmulatorConfig:
    """The knobs every `personalize_emulator` starts with (none: any project, attribute and event)."""
    from contentstack_assets.testing import EmulatorConfig

    return EmulatorConfig()


@pytest.fixture
def personalize_emulator(
    request: pytest.FixtureRequest, personalize_emulator_config: EmulatorConfig
) -> Iterator[EmulatorThread]:
    """An emulator serving on 127.0.0.1 from a thread, empty at the start of the test, stopped after it."""
    from contentstack_assets.testing import run_emulator_in_thread

    config = personalize_emulator_config
    for marker in reversed(list(request.node.iter_markers(MARKER))):  # the closest marker wins
        if marker.args:
            pytest.fail(
                f"@pytest.mark.{MARKER} takes keyword arguments only (EmulatorConfig knobs)", pytrace=False
            )
        try:
            config = config.with_changes(**marker.kwargs)
        except (TypeError, ValueError) as error:
            pytest.fail(f"@pytest.mark.{MARKER}: {error}", pytrace=False)
    with run_emulator_in_thread(config) as emulator:
        yield emulator


@pytest.fixture
def personalize_emulator_env(
    personalize_emulator: EmulatorThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> EmulatorThread:
    """`personalize_emulator`, with the variables a spec reads to reach it set for the test (`emulator_env`),
    and a sync state of the test's own (`CONTENTSTACK_STATE_URL`): a state left by an earlier test would
    record as delivered what this fresh emulator never received."""
    from contentstack_assets.testing import emulator_env

    for name, value in emulator_env(personalize_emulator).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("CONTENTSTACK_STATE_URL", f"sqlite:///{tmp_path / 'contentstack_state.db'}")
    return personalize_emulator
