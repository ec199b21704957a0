"""The `contentstack-assets` console script: its commands, the demo's emulator and folder, the Makefile's use."""

from __future__ import annotations

import csv
import io
import json
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
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from tests.helpers import (
    DEV_INSTANCE,
    PROJECT_ROOT,
    PROJECT_UID,
    dry_run_plan,
    fast_retries,
    push_config,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)


def test_help_lists_the_commands(capsys):
    with pytest.raises(SystemExit) as exit:
        cli.main(["--help"])
    assert exit.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: contentstack-assets")
    for command in ("log", "rejected", "failed", "emulator", "demo"):
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


# -- rejected and failed: every row of a run -------------------------------------------------------
def test_every_rejected_row_and_failed_user_of_a_run_is_listed(tmp_path, instance, capsys):
    good = [dict(user_uid=f"ok{index:02d}", plan_name="free", order_count=index) for index in range(25)]
    odd = [dict(user_uid=None), dict(user_uid="   "), dict(user_uid="z" * 300, plan_name="free")]
    bad = [dict(user_uid=f"bad{index:02d}", plan_name="free", order_count="many") for index in range(26)]
    url = write_sqlite_table(tmp_path / "src.db", odd + good + bad)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, faults={"500": 1.0})) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url)])
        result = run_job(spec, "users_sync", instance, resources=fast_retries(max_retries=0))
    assert not result.success  # every user failed: the step fails after recording them
    run_id = result.run_id

    # the metadata's samples say how many they leave out and the command that lists them all
    metadata = push_metadata(result)
    assert (
        f"20 of 29 rejected rows shown; all of them: `contentstack-assets rejected --sync users --run {run_id}`"
        in (metadata["rejected_sample"])
    )
    assert (
        f"20 of 25 failed users shown; all of them: `contentstack-assets failed --sync users --run {run_id}`"
        in (metadata["failures"])
    )
    sample = metadata["rejected_sample"]
    assert sample.splitlines()[2].startswith("|  | missing user uid | 1 |")  # a null uid: empty, not NaN
    assert sample.splitlines()[3].startswith('| "␠␠␠" | missing user uid | 2 |')
    assert "| " + "z" * 39 + "… | invalid user uid" in sample  # cut, the reason beside it

    assert cli.main(["rejected", "--sync", "users", "--run", run_id]) == 0
    rejected = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rejected) == 29 and {row["run_id"] for row in rejected} == {run_id}
    assert [(row["row_number"], row["user_uid"]) for row in rejected[:2]] == [("1", ""), ("2", "   ")]
    assert (
        rejected[2]["user_uid"] == "z" * 63 + "…"
    )  # as the state holds it (the mapping keeps 64 characters)
    assert rejected[3] | {"at": ""} == {
        "sync": "users",
        "run_id": run_id,
        "source_key": "",  # a table without a primary key: the row is found by its uid
        "row_number": "29",
        "user_uid": "bad00",
        "reason": "orders: 'many' is not an integer",
        "at": "",
    }

    out_file = tmp_path / "failed.json"
    assert (
        cli.main(["failed", "--sync", "users", "--format", "json", "--out", str(out_file)]) == 0
    )  # latest run
    failed = json.loads(out_file.read_text())
    assert sorted(row["user_uid"] for row in failed) == [f"ok{index:02d}" for index in range(25)]
    assert {(row["run_id"], row["status"]) for row in failed} == {(run_id, 500)}
    assert f"25 failed users of run {run_id} of sync users to {out_file}" in capsys.readouterr().err


def test_a_dry_run_sample_says_its_rows_are_not_recorded(tmp_path, instance, capsys):
    bad = [dict(user_uid=f"bad{index:02d}", plan_name="free", order_count="many") for index in range(25)]
    url = write_sqlite_table(tmp_path / "src.db", bad)
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID)) as emu:
        spec = write_spec(tmp_path / "syncs.yaml", [users_sync(url, emu.url)])
        result = run_job(spec, "users_sync", instance, run_config=push_config(dry_run=True))
    assert result.success
    sample = dry_run_plan(result)["rejected_sample"]
    assert "20 of 25 rejected rows shown; a dry run records none of them in the sync state" in sample
    assert "contentstack-assets rejected" not in sample
    assert cli.main(["rejected", "--sync", "users", "--run", result.run_id]) == 2
    assert "a dry run records nothing" in capsys.readouterr().err
