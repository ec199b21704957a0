"""The component: `defs.yaml` with `syncs:` or `syncs_file:` loads the same definitions as the code location,
the scaffolded `defs.yaml` loads as written, and bad input is one paragraph naming the file, line and key."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import dagster as dg
import pytest
from dagster.components.testing import create_defs_folder_sandbox

import contentstack_assets
from contentstack_assets import PersonalizeSyncsComponent, SpecError, definitions
from tests.helpers import PROJECT_ROOT

INLINE = """\
type: contentstack_assets.PersonalizeSyncsComponent
attributes:
  syncs:
    - name: users
      source: {url: "{{ env.WAREHOUSE_URL }}", table: dim_users, deps: [dim_users]}
      destination: {project_uid: "{{ env.PERSONALIZE_PROJECT_UID }}"}
      match: {column: user_uid}
      attributes: {plan: {column: plan_name, type: string}}
      automation: eager
"""


def _load(sandbox, name: str, text: str) -> dg.Definitions:
    path = sandbox.defs_folder_path / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "defs.yaml").write_text(text)
    with sandbox.load_component_and_build_defs(defs_path=path) as (component, defs):
        assert isinstance(component, PersonalizeSyncsComponent)
        return defs


def _names(defs: dg.Definitions) -> dict:
    repository = defs.get_repository_def()
    return {
        "assets": set(defs.resolve_asset_graph().get_all_asset_keys()),
        "jobs": {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")},
        "schedules": {schedule.name for schedule in repository.schedule_defs},
        "sensors": {sensor.name for sensor in repository.sensor_defs},
        "checks": set(defs.resolve_asset_graph().asset_check_keys),
    }


def test_inline_syncs_with_dg_templating(monkeypatch):
    monkeypatch.setenv("WAREHOUSE_URL", "sqlite:///warehouse.db")
    monkeypatch.setenv("PERSONALIZE_PROJECT_UID", "0123456789")  # digits stay text
    with create_defs_folder_sandbox() as sandbox:
        defs = _load(sandbox, "personalize", INLINE)
        graph = defs.resolve_asset_graph()
        source = graph.get(dg.AssetKey(["users", "source_users"]))
        assert source.parent_keys == {dg.AssetKey("dim_users")}
        assert source.automation_condition is not None
        push = dg.AssetKey(["users", "personalize_users"])
        assert "0123456789" in graph.get(push).description
        assert {"users_sync"} <= _names(defs)["jobs"]


def test_the_demo_spec_through_the_component_is_the_code_location():
    with create_defs_folder_sandbox() as sandbox:
        folder = sandbox.defs_folder_path / "personalize"
        folder.mkdir()
        shutil.copy(PROJECT_ROOT / "syncs.yaml", folder / "syncs.yaml")
        defs = _load(
            sandbox,
            "personalize",
            f"type: {PersonalizeSyncsComponent.__module__.split('.')[0]}.PersonalizeSyncsComponent\n"
            "attributes:\n  syncs_file: syncs.yaml\n",
        )
        assert _names(defs) == _names(definitions.defs())


def test_the_scaffolded_defs_yaml_loads_as_written():
    with create_defs_folder_sandbox() as sandbox:
        path = sandbox.scaffold_component(component_cls=PersonalizeSyncsComponent, defs_path="personalize")
        text = (path / "defs.yaml").read_text()
        assert text.startswith("# ") and "type: contentstack_assets.PersonalizeSyncsComponent" in text
        with sandbox.load_component_and_build_defs(defs_path=path) as (_, defs):
            assert (
                dg.AssetKey(["users", "personalize_users"]) in defs.resolve_asset_graph().get_all_asset_keys()
            )


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ("  syncz: []\n", ["defs.yaml:3: key 'attributes.syncz': unknown attribute"]),
        (
            "  syncs_file: syncs.yaml\n  syncs: []\n",
            ["defs.yaml:3: give `syncs`", "not both"],
        ),
        ("  {}\n", ["defs.yaml", "one of the two"]),
        (
            textwrap.indent(INLINE.split("attributes:\n", 1)[1], "")
            .replace("automation: eager", "automation: eager\n      schedule: '0 * * * *'")
            .replace("{{ env.WAREHOUSE_URL }}", "sqlite:///w.db")
            .replace("{{ env.PERSONALIZE_PROJECT_UID }}", "p1"),
            ["defs.yaml:4: sync 'users'", "give `automation` or `schedule`, not both"],
        ),
        (
            "  syncs:\n    - name: users\n      source: {url: 'sqlite:///w.db', table: t}\n"
            "      destination: {project_uid: p1}\n      match: {column: user_uid}\n"
            "      attributes: {plan: {column: plan_name, type: text}}\n",
            ["defs.yaml:8: sync 'users': key 'attributes.plan.type'"],
        ),
        ("  syncs_file: missing.yaml\n", ["defs.yaml:3: syncs_file:", "missing.yaml: cannot read"]),
    ],
)
def test_bad_input_is_one_paragraph_naming_file_line_and_key(attributes, expected):
    with create_defs_folder_sandbox() as sandbox:
        text = f"type: contentstack_assets.PersonalizeSyncsComponent\nattributes:\n{attributes}"
        with pytest.raises(Exception) as raised:
            _load(sandbox, "personalize", text)
        error = raised.value
        while not isinstance(error, SpecError) and error.__cause__ is not None:
            error = error.__cause__
        assert isinstance(error, SpecError), repr(raised.value)
        message = str(error)
        assert "\n" not in message and "Traceback" not in message
        for part in expected:
            assert part in message, message


def test_the_package_import_is_light_and_declares_its_api():
    assert set(contentstack_assets.__all__) >= {
        "PersonalizeSyncsComponent",
        "load_spec",
        "build_definitions",
        "PersonalizeResource",
        "SyncStateResource",
        "PersonalizeTranslator",
    }
    for name in contentstack_assets.__all__:
        assert getattr(contentstack_assets, name).__doc__, name
    assert "PersonalizeSyncsComponent" in dir(contentstack_assets)


def test_importing_the_package_reads_no_spec_and_no_dagster():
    import subprocess
    import sys

    code = "import sys, contentstack_assets; print('dagster' in sys.modules, 'contentstack_assets.spec' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=Path("/")
    )
    assert out.stdout.split() == ["False", "False"]
