"""The bundled Personalize emulator, for testing your own syncs against a real HTTP server.

    from contentstack_assets.testing import EmulatorConfig, run_emulator_in_thread

    with run_emulator_in_thread(EmulatorConfig(attributes=["plan"])) as emulator:
        ...  # point the spec's edge_url at emulator.url, run the sync, then read emulator.user(uid)

Under pytest, the `personalize_emulator` fixture does this for each test (docs/testing.md).
"""

from __future__ import annotations

from contentstack_assets.personalize.emulator import (
    FAULT_KINDS,
    EmulatorConfig,
    EmulatorProcess,
    EmulatorThread,
    run_emulator_in_thread,
    start_emulator_process,
)

__all__ = [
    "FAULT_KINDS",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorThread",
    "emulator_env",
    "run_emulator_in_thread",
    "start_emulator_process",
]


def emulator_env(emulator: EmulatorThread | EmulatorProcess) -> dict[str, str]:
    """The variables a spec reads to reach this emulator: `PERSONALIZE_EDGE_URL` and
    `PERSONALIZE_MANAGEMENT_URL`, plus `PERSONALIZE_PROJECT_UID` and `PERSONALIZE_MANAGEMENT_TOKEN` when the
    emulator is configured with them."""
    config = emulator.config()
    env = {"PERSONALIZE_EDGE_URL": emulator.url, "PERSONALIZE_MANAGEMENT_URL": emulator.url}
    if config.project_uid is not None:
        env["PERSONALIZE_PROJECT_UID"] = config.project_uid
    if config.management_token is not None:
        env["PERSONALIZE_MANAGEMENT_TOKEN"] = config.management_token
    return env
