"""A local imitation of the Contentstack Personalize Edge and Management APIs.

The emulator is a real HTTP server (aiohttp on asyncio) so that the demo, the tests and the benchmarks
exercise the same client code, connection pooling, timeouts and retries that talk to the real service.
It keeps what it receives in memory and shows it through a few control endpoints under ``/_emulator/``.

It can also misbehave on purpose: latency, a share of failed requests, a rate limit, an outage, and
fault kinds such as dropped connections or responses lost after the change was applied. Every knob can
be changed while it runs (``POST /_emulator/config`` or ``configure(...)`` on a handle).

Run it as ``python -m contentstack_assets.emulator --port 8787``, or from Python::

    with run_emulator_in_thread(EmulatorConfig(attributes=["plan"])) as emu:
        ...  # emu.url, emu.users(), emu.user(uid), emu.stats(), emu.configure(...), emu.reset()

    with start_emulator_process(EmulatorConfig(latency_ms=20)) as emu:
        ...  # the same methods, over HTTP, against a separate process

Where things are: config.py (the knobs and the fault kinds), state.py (users, events, merges, counters),
edge.py (the Edge routes, with the outage, rate limit, latency and faults), management.py (the Management
routes), control.py (/_emulator/), protocol.py (error bodies and request checks), server.py (the application
and its socket), thread.py and process.py (the two handles), cli.py (the command line).
"""

from contentstack_assets.personalize.emulator.cli import build_parser, main, serve
from contentstack_assets.personalize.emulator.config import FAULT_KINDS, EmulatorConfig, parse_faults
from contentstack_assets.personalize.emulator.process import EmulatorProcess, start_emulator_process
from contentstack_assets.personalize.emulator.thread import EmulatorThread, run_emulator_in_thread

__all__ = [
    "FAULT_KINDS",
    "EmulatorConfig",
    "EmulatorProcess",
    "EmulatorThread",
    "build_parser",
    "main",
    "parse_faults",
    "run_emulator_in_thread",
    "serve",
    "start_emulator_process",
]
