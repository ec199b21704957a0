"""Running the emulator in this process: `run_emulator_in_thread` serves it from a background thread with its
own event loop, and the `EmulatorThread` handle reads and changes its state on that loop (the pytest fixture
and most tests use this).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Self, TypeVar

from contentstack_assets.personalize.emulator.config import EmulatorConfig
from contentstack_assets.personalize.emulator.server import Emulator, bind, new_event_loop, url_of

_T = TypeVar("_T")


class EmulatorThread:
    """An emulator serving from a background thread with its own event loop (same process).

    Start it with `run_emulator_in_thread`; use it as a context manager or call `stop()`.
    """

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._emulator = Emulator(config or EmulatorConfig())
        self._sock = bind(host, port)
        self.url: str = url_of(self._sock)
        self.port: int = self._sock.getsockname()[1]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None

    def start(self) -> Self:
        self._thread = threading.Thread(
            target=self._serve, name=f"personalize-emulator-{self.port}", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._startup_error is not None:
            raise RuntimeError("the emulator failed to start") from self._startup_error
        return self

    def _serve(self) -> None:
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            runner = loop.run_until_complete(self._emulator.start(self._sock))
        except BaseException as exc:
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._loop = loop
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.close()

    def stop(self) -> None:
        if self._loop is not None and self._thread is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def _on_loop(self, call: Callable[[], _T]) -> _T:
        """Run `call` on the server's loop, so the test thread never reads state mid-update."""
        if self._loop is None:
            raise RuntimeError("the emulator is not running")

        async def run() -> _T:
            return call()

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=30)

    def users(self) -> dict[str, dict[str, Any]]:
        return self._on_loop(self._emulator.state.users)

    def user(self, uid: str) -> dict[str, Any] | None:
        return self._on_loop(lambda: self._emulator.state.user(uid))

    def stats(self) -> dict[str, Any]:
        return self._on_loop(self._emulator.state.stats)

    def config(self) -> EmulatorConfig:
        return self._on_loop(lambda: self._emulator.state.config)

    def configure(self, **knobs: Any) -> EmulatorConfig:
        return self._on_loop(lambda: self._emulator.state.configure(**knobs))

    def reset(self) -> None:
        self._on_loop(self._emulator.state.reset)


def run_emulator_in_thread(
    config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> EmulatorThread:
    """Start an emulator on a background thread; returns once it accepts connections."""
    return EmulatorThread(config, host=host, port=port).start()
