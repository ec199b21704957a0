"""The package installs as a wheel: built from the files it ships, installed into a fresh venv, its command,
demo and pytest plugin run from a directory outside any checkout."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.helpers import PROJECT_ROOT

pytestmark = pytest.mark.slow

# what the build reads; the demo's syncs.yaml is a link to the last one (its dagster.yaml lives in the package)
SHIPPED = ["pyproject.toml", "README.md", "contentstack_assets", "syncs.yaml"]


def _run(command: list, cwd: Path, env: dict, timeout: float = 300) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, (
        f"{command}: {result.returncode}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict, Path]:
    """A venv holding only the wheel; its dependencies come from this interpreter's site-packages (a .pth
    line: no download, and no editable install of the checkout, whose own .pth files are not read)."""
    root = tmp_path_factory.mktemp("wheel")
    source = root / "source"
    source.mkdir()
    for name in SHIPPED:
        path = PROJECT_ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(path, source / name)
    env = {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "DAGSTER_HOME")}
    env = {key: value for key, value in env.items() if not key.startswith(("CONTENTSTACK_", "PERSONALIZE_"))}
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", root / "dist", source], root, env)
    (wheel,) = (root / "dist").glob("contentstack_assets-*.whl")

    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], root, env)
    python = venv / "bin" / "python"
    purelib = _run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], root, env)
    (Path(purelib.stdout.strip()) / "dependencies.pth").write_text(sysconfig.get_path("purelib") + "\n")
    _run([sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", wheel], root, env)
    workdir = root / "elsewhere"
    workdir.mkdir()
    return venv, env | {"HOME": str(root)}, workdir


def test_the_package_is_imported_from_the_venv(installed):
    venv, env, workdir = installed
    where = _run(
        [venv / "bin" / "python", "-c", "import contentstack_assets; print(contentstack_assets.__file__)"],
        workdir,
        env,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv)
    help = _run([venv / "bin" / "contentstack-assets", "--help"], workdir, env).stdout
    assert all(f"\n    {command} " in help for command in ("log", "emulator", "demo"))


def test_the_demo_runs_in_any_directory(installed):
    venv, env, workdir = installed
    out = _run(
        [venv / "bin" / "contentstack-assets", "demo", "--users", "40"], workdir, env, timeout=600
    ).stdout
    assert "the emulator now holds" in out and "usr_000001" in out
    assert (workdir / "demo" / "users.db").exists() and (workdir / "syncs.yaml").exists()
    assert (workdir / ".dagster_home" / "dagster.yaml").exists()
    log = _run(
        [venv / "bin" / "contentstack-assets", "log", "usr_000001"],
        workdir,
        env | {"DAGSTER_HOME": str(workdir / ".dagster_home")},
    )
    assert "requests (newest first)" in log.stdout


def test_the_pytest_plugin_comes_with_the_wheel(installed):
    venv, env, workdir = installed
    (workdir / "test_mine.py").write_text(
        "def test_it(personalize_emulator):\n    assert personalize_emulator.users() == {}\n"
    )
    result = _run(
        [venv / "bin" / "python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
        workdir,
        env,
    )
    assert "1 passed" in result.stdout


# a user's own dg project, outside any checkout: an upstream asset writes the table, the component's
# defs.yaml (inline syncs, dg templating, `source.deps` on that asset) sends it
_PROJECT_FILES = {
    "pyproject.toml": """\
[project]
name = "my_project"
version = "0.0.1"

[tool.dg]
directory_type = "project"

[tool.dg.project]
root_module = "my_project"
""",
    "my_project/__init__.py": "",
    "my_project/definitions.py": """\
from pathlib import Path

import dagster as dg


@dg.definitions
def defs():
    return dg.load_from_defs_folder(path_within_project=Path(__file__).parent)
""",
    "my_project/defs/__init__.py": "",
    "my_project/defs/analytics.py": """\
import os
import sqlite3

import dagster as dg


@dg.asset(key=["analytics", "dim_users"])
def dim_users() -> None:
    with sqlite3.connect(os.environ["WAREHOUSE_PATH"]) as db:
        db.execute("DROP TABLE IF EXISTS dim_users")
        db.execute("CREATE TABLE dim_users (user_uid TEXT PRIMARY KEY, plan_name TEXT)")
        db.executemany("INSERT INTO dim_users VALUES (?, ?)", [(f"u{n}", "pro" if n % 2 else "free") for n in range(7)])
""",
    "my_project/defs/personalize/defs.yaml": """\
type: contentstack_assets.PersonalizeSyncsComponent
attributes:
  syncs:
    - name: users
      source: {url: "sqlite:///{{ env.WAREHOUSE_PATH }}", table: dim_users, deps: [analytics/dim_users]}
      destination: {project_uid: demo_project, edge_url: "{{ env.PERSONALIZE_EDGE_URL }}"}
      match: {column: user_uid}
      attributes: {plan: {column: plan_name, type: string}}
""",
}


def test_a_users_dg_project_materializes_through_the_dagster_cli(installed, tmp_path):
    from contentstack_assets.testing import EmulatorConfig, run_emulator_in_thread

    venv, env, _ = installed
    project = tmp_path / "my_project_root"
    for name, text in _PROJECT_FILES.items():
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(text)
    with run_emulator_in_thread(EmulatorConfig(attributes=["plan"])) as emulator:
        run_env = env | {
            "WAREHOUSE_PATH": str(tmp_path / "warehouse.db"),
            "PERSONALIZE_EDGE_URL": emulator.url,
            "DAGSTER_HOME": str(tmp_path / "home"),
            "PYTHONPATH": str(project),
        }
        (tmp_path / "home").mkdir()
        listed = _run(
            [venv / "bin" / "python", "-m", "dagster", "asset", "list", "-m", "my_project.definitions"],
            project,
            run_env,
        ).stdout
        assert {"analytics/dim_users", "users/source_users", "users/personalize_users"} <= set(listed.split())
        _run(
            [
                venv / "bin" / "python",
                "-m",
                "dagster",
                "asset",
                "materialize",
                "-m",
                "my_project.definitions",
                "--select",
                "*",
            ],
            project,
            run_env,
        )
        users = emulator.users()
    assert len(users) == 7 and users["u1"] == {"plan": "pro"}
