"""The emulator's command line: `python -m contentstack_assets.emulator --port 8787 ...` (and the
`contentstack-assets emulator` command, which adds options of its own to `build_parser`). `serve` runs it in
this process until SIGTERM or SIGINT, after printing the one line launchers read the URL from.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
from collections.abc import Sequence

from contentstack_assets.personalize.emulator.config import FAULT_KINDS, EmulatorConfig, parse_faults
from contentstack_assets.personalize.emulator.server import (
    Emulator,
    bind,
    is_loopback,
    new_event_loop,
    url_of,
)

#: The start of the one line on stdout; `EmulatorProcess` (process.py) reads the URL after it.
LISTENING_PREFIX = "emulator listening on "


def build_parser(
    prog: str = "python -m contentstack_assets.emulator", *, default_port: int | None = None
) -> argparse.ArgumentParser:
    """The emulator's command line; `serve` runs what it parsed (the `contentstack-assets emulator` command
    adds options of its own first)."""
    parser = argparse.ArgumentParser(
        prog=prog, description="A local imitation of the Contentstack Personalize Edge and Management APIs."
    )
    parser.add_argument(
        "--port",
        type=int,
        required=default_port is None,
        default=default_port,
        help="port to listen on; 0 picks a free one" + (f" (default {default_port})" if default_port else ""),
    )
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--project-uid", help="answer 404 to requests for any other project")
    parser.add_argument("--attributes", help="comma-separated attribute keys; others are refused")
    parser.add_argument("--events", help="comma-separated event keys; others are refused")
    parser.add_argument("--management-token", help="the only token the Management API accepts")
    parser.add_argument(
        "--management-read-only-token",
        help="a token with the personalize:read scope only: it lists, and a create with it gets 403",
    )
    parser.add_argument(
        "--management-rate-limit",
        type=int,
        default=10,
        help="Management requests per second; above it 429 (default 10, as the real API; 0: no limit)",
    )
    parser.add_argument(
        "--attribute-limit",
        type=int,
        default=100,
        help="the project's custom attributes at most (default 100)",
    )
    parser.add_argument(
        "--event-limit", type=int, default=100, help="the project's events at most (default 100)"
    )
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every API request")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of Edge requests answered 500")
    parser.add_argument("--rate-limit", type=int, help="Edge requests per second; above it 429")
    parser.add_argument(
        "--faults",
        default="",
        help=f'fault shares, e.g. "429:0.05,500:0.01,drop:0.01" (kinds: {", ".join(FAULT_KINDS)})',
    )
    parser.add_argument("--slow-ms", type=float, default=5000.0, help="delay of the `slow` fault")
    parser.add_argument("--outage-s", type=float, help="answer every Edge request 503 for this many seconds")
    parser.add_argument(
        "--outage-until", type=float, help="answer every Edge request 503 until this unix time"
    )
    parser.add_argument("--seed", type=int, help="seed of the fault RNG")
    return parser


def _config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    config = EmulatorConfig(
        project_uid=args.project_uid,
        attributes=args.attributes,
        events=args.events,
        management_token=args.management_token,
        management_read_only_token=args.management_read_only_token,
        management_rate_limit=args.management_rate_limit or None,
        attribute_limit=args.attribute_limit,
        event_limit=args.event_limit,
        latency_ms=args.latency_ms,
        fail_rate=args.fail_rate,
        rate_limit=args.rate_limit,
        faults=parse_faults(args.faults),
        slow_ms=args.slow_ms,
        outage_until=args.outage_until,
        seed=args.seed,
    )
    if args.outage_s is not None:
        config = config.with_changes(outage_s=args.outage_s)
    return config


async def _serve_until_signalled(emulator: Emulator, sock: socket.socket) -> None:
    runner = await emulator.start(sock)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The one line on stdout: launchers read the port from it.
    print(f"{LISTENING_PREFIX}{url_of(sock)}", flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    parser = build_parser()
    serve(parser, parser.parse_args(argv))


def serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Serve with the options `parser` parsed into `args` until SIGTERM or SIGINT; a bad option exits
    through `parser` with one line."""
    if not is_loopback(args.host):
        parser.error(f"--host must be a loopback address (127.0.0.1, ::1, localhost), not {args.host!r}")
    try:
        config = _config_from_args(args)
    except ValueError as exc:
        parser.error(str(exc))
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        parser.exit(1, f"emulator: cannot listen on {args.host}:{args.port}: {exc}\n")
    loop = new_event_loop()
    try:
        loop.run_until_complete(_serve_until_signalled(Emulator(config), sock))
    finally:
        with contextlib.suppress(Exception):
            loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
        sock.close()
