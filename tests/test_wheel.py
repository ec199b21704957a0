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

# what the build reads; the demo's package data are links to the last two
SHIPPED = ["pyproject.toml", "README.md", "contentstack_assets", "syncs.yaml", "dagster.yaml"]


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
