"""Running the emulator as a separate process (`python -m contentstack_assets.emulator`), for tests that kill
it, runs that need their own process and the benchmarks: `start_emulator_process` and the `EmulatorProcess`
handle, which speaks to the control endpoints over HTTP.
"""

from __future__ import annotations

import os
import queue
import site
import subprocess
import sys
import sysconfig
import threading
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import requests

from contentstack_assets.personalize.emulator.cli import LISTENING_PREFIX
from contentstack_assets.personalize.emulator.config import EmulatorConfig


class EmulatorProcess:
    """An emulator running as `python -m contentstack_assets.emulator` in a separate process.

    Start it with `start_emulator_process`; the methods talk to its control endpoints over HTTP.
    `process` is the `subprocess.Popen`, for tests that kill it.
    """

    def __init__(
        self,
        config: EmulatorConfig | None = None,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        startup_timeout: float = 30.0,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self._config = config or EmulatorConfig()
        self._host = host
        self._port = port
        self._startup_timeout = startup_timeout
        self._env = env
        self.process: subprocess.Popen[str] | None = None
        self.url: str = ""
        self.port: int = 0
        self._session = requests.Session()

    @property
    def pid(self) -> int:
        if self.process is None:
            raise RuntimeError("the emulator process is not started")
        return self.process.pid

    def start(self) -> Self:
        env = dict(os.environ if self._env is None else self._env)
        # From a checkout that is not installed, the child needs the checkout on its path; an installed
        # package is found in site-packages, which must not go on PYTHONPATH (it would precede the stdlib).
        package_root = str(Path(__file__).resolve().parents[3])
        if package_root not in _site_directories():
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        command = [
            sys.executable,
            "-m",
            "contentstack_assets.emulator",
            "--host",
            self._host,
            "--port",
            str(self._port),
            *self._config.to_cli_args(),
        ]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
        line = self._read_first_line(self.process)
        if not line.startswith(LISTENING_PREFIX):
            self.stop()
            raise RuntimeError(f"the emulator process did not start: {line!r}")
        self.url = line[len(LISTENING_PREFIX) :].strip()
        self.port = urllib.parse.urlsplit(self.url).port or 0
        return self

    def _read_first_line(self, process: subprocess.Popen[str]) -> str:
        # A reader thread, because a pipe read has no timeout of its own.
        lines: queue.Queue[str] = queue.Queue()
        assert process.stdout is not None
        stdout = process.stdout
        threading.Thread(target=lambda: lines.put(stdout.readline()), daemon=True).start()
        try:
            return lines.get(timeout=self._startup_timeout)
        except queue.Empty:
            self.stop()
            raise RuntimeError(
                f"the emulator process printed nothing within {self._startup_timeout:g}s"
            ) from None

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM, then SIGKILL if it has not exited within `timeout` seconds."""
        self._session.close()
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def kill(self) -> None:
        """SIGKILL: the emulator dies without any clean-up."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _control(self, method: str, path: str, payload: Any = None) -> requests.Response:
        response = self._session.request(method, self.url + path, json=payload, timeout=30)
        if response.status_code >= 400 and response.status_code != 404:
            raise RuntimeError(f"{method} {path}: {response.status_code} {response.text}")
        return response

    def users(self) -> dict[str, dict[str, Any]]:
        return self._control("GET", "/_emulator/users").json()

    def user(self, uid: str) -> dict[str, Any] | None:
        response = self._control("GET", "/_emulator/users/" + urllib.parse.quote(uid, safe=""))
        return None if response.status_code == 404 else response.json()

    def stats(self) -> dict[str, Any]:
        return self._control("GET", "/_emulator/stats").json()

    def config(self) -> EmulatorConfig:
        return EmulatorConfig(**self._control("GET", "/_emulator/config").json())

    def configure(self, **knobs: Any) -> EmulatorConfig:
        response = self._session.post(self.url + "/_emulator/config", json=knobs, timeout=30)
        if response.status_code != 200:
            # Same exception type as the in-thread handle's.
            raise ValueError(response.json().get("error_message", response.text))
        return EmulatorConfig(**response.json())

    def reset(self) -> None:
        self._control("POST", "/_emulator/reset")


def _site_directories() -> set[str]:
    directories = {*site.getsitepackages(), site.getusersitepackages()}
    directories |= {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}
    return {str(Path(directory).resolve()) for directory in directories}


def start_emulator_process(
    config: EmulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
) -> EmulatorProcess:
    """Start the emulator as a separate process; returns once it printed its listening line."""
    return EmulatorProcess(config, host=host, port=port, startup_timeout=startup_timeout, env=env).start()
