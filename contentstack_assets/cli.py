"""`contentstack-assets`: the sync log, a run's rejected rows and failed users, the bundled emulator and the
demo, from the shell.

contentstack-assets log USER_UID [--sync NAME] [--limit N] [--json] [--state-url URL]
contentstack-assets rejected|failed --sync NAME [--run RUN_ID] [--format csv|json] [--out FILE] [--state-url URL]
contentstack-assets emulator [--port 8787] [--demo] [--attributes k1,k2] ...
contentstack-assets demo [--dir DIR] [--prepare] [--print-env [EMULATOR_URL]]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

PROG = "contentstack-assets"
EMULATOR_PORT = 8787  # the port the demo spec's default URLs name
COMMANDS = {
    "log": "what was sent to one user, when, and how it went (from the sync state)",
    "rejected": "every row a run set aside, with its reason, as CSV or JSON (from the sync state)",
    "failed": "every user whose delivery failed in a run, with the error, as CSV or JSON (from the sync state)",
    "emulator": "serve the bundled Personalize emulator on 127.0.0.1",
    "demo": "run the demo: a SQLite user table synced to the emulator",
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        _parser().parse_args(argv)  # --help, or the error that names the commands
        return 2
    command, rest, prog = argv[0], argv[1:], f"{PROG} {argv[0]}"
    if command == "log":
        from contentstack_assets.log import main as log

        return log(rest, prog=prog)
    if command in ("rejected", "failed"):
        from contentstack_assets.rows import main as rows

        return rows(command, rest, prog=prog)
    if command == "emulator":
        return _emulator(rest, prog)
    from contentstack_assets.demo import main as demo

    return demo(rest, prog=prog)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="The sync log and a run's rejected rows and failed users, the bundled emulator and the demo.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    for name, summary in COMMANDS.items():
        commands.add_parser(name, help=summary)
    return parser


def _emulator(argv: list[str], prog: str) -> int:
    from contentstack_assets.demo import demo_emulator_config
    from contentstack_assets.personalize.emulator import build_parser, serve

    parser = build_parser(prog, default_port=EMULATOR_PORT)
    parser.add_argument(
        "--demo",
        action="store_true",
        help="the demo's project, attribute and event keys, management token and latency "
        "(the options given beside it win)",
    )
    if "--demo" in argv:  # the demo's options first: argparse keeps the last value of an option
        argv = [*demo_emulator_config().to_cli_args(), *argv]
    serve(parser, parser.parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
