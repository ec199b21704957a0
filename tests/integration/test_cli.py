"""The `contentstack-assets` console script: its commands, the demo's emulator and folder, the Makefile's use."""

from __future__ import annotations

import subprocess
import sys

import pytest
import requests

from contentstack_assets import cli
from contentstack_assets.demo import (
    DEMO_ATTRIBUTES,
    DEMO_EVENTS,
    DEMO_MANAGEMENT_TOKEN,
    DEMO_PROJECT_UID,
    demo_file,
    prepare,
)
from tests.helpers import DEV_INSTANCE, PROJECT_ROOT


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: contentstack-assets")
    for command in ("log", "emulator", "demo"):
        assert f"\n    {command} " in out


@pytest.mark.parametrize("argv", [[], ["bogus"]])
def test_no_or_an_unknown_command_is_one_line(capsys, argv):
    with pytest.raises(SystemExit) as exit:
        cli.main(argv)
    assert exit.value.code == 2
    err = capsys.readouterr().err
    assert "contentstack-assets: error:" in err and "Traceback" not in err


def test_log_is_the_module_under_its_own_name(capsys, tmp_path):
    missing = f"sqlite:///{tmp_path / 'none.db'}"
    assert cli.main(["log", "usr_1", "--state-url", missing]) == 2
    assert capsys.readouterr().err.startswith("contentstack-assets log: no sync state at ")
    module = subprocess.run(
        [sys.executable, "-m", "contentstack_assets.log", "usr_1", "--state-url", missing],
        capture_output=True,
        text=True,
    )
    assert module.returncode == 2
    assert module.stderr.startswith("python -m contentstack_assets.log: no sync state at ")


def test_the_demo_emulator_has_the_demo_keys_and_token():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "contentstack_assets.cli",
            "emulator",
            "--demo",
            "--port",
            "0",
            "--latency-ms",
            "1",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = process.stdout.readline()
        assert line.startswith("emulator listening on "), line
        config = requests.get(line.split()[-1] + "/_emulator/config", timeout=10).json()
    finally:
        process.terminate()
        process.wait(timeout=10)
    assert config["project_uid"] == DEMO_PROJECT_UID
    assert config["attributes"] == DEMO_ATTRIBUTES and config["events"] == DEMO_EVENTS
    assert config["management_token"] == DEMO_MANAGEMENT_TOKEN
    assert config["latency_ms"] == 1.0  # an option given beside --demo wins


def test_print_env_points_the_demo_spec_at_an_emulator(capsys):
    assert cli.main(["demo", "--print-env", "http://127.0.0.1:9999"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        f"PERSONALIZE_PROJECT_UID={DEMO_PROJECT_UID}",
        "PERSONALIZE_EDGE_URL=http://127.0.0.1:9999",
        "PERSONALIZE_MANAGEMENT_URL=http://127.0.0.1:9999",
        f"PERSONALIZE_MANAGEMENT_TOKEN={DEMO_MANAGEMENT_TOKEN}",
    ]


def test_prepare_writes_the_demo_folder_wherever_it_is(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("DAGSTER_HOME")
    folder = tmp_path / "somewhere"
    assert cli.main(["demo", "--prepare", "--users", "20", "--dir", str(folder)]) == 0
    assert (folder / "demo" / "users.db").stat().st_size > 0
    assert (folder / "syncs.yaml").read_text() == demo_file("syncs.yaml").read_text()
    assert (folder / ".dagster_home" / "dagster.yaml").read_text() == demo_file("dagster.yaml").read_text()
    # a spec already there is the folder's own: kept
    (folder / "syncs.yaml").write_text("mine")
    prepare(folder, users=20, keep_database=True)
    assert (folder / "syncs.yaml").read_text() == "mine"


def test_the_packaged_demo_files_are_the_checkouts():
    # the spec is the root's syncs.yaml; the instance file lives in the package only (docs/ui.md)
    assert demo_file("syncs.yaml").read_text() == (PROJECT_ROOT / "syncs.yaml").read_text()
    assert demo_file("dagster.yaml").read_text() == DEV_INSTANCE.read_text()
    assert not (PROJECT_ROOT / "dagster.yaml").exists()


def test_a_demo_folder_that_cannot_be_written_is_one_line(tmp_path):
    (tmp_path / "file").write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "contentstack_assets.cli",
            "demo",
            "--prepare",
            "--dir",
            str(tmp_path / "file"),
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("contentstack-assets demo: cannot write the demo's folder")
    assert "Traceback" not in result.stderr and len(result.stderr.splitlines()) == 1
