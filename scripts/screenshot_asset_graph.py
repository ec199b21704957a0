"""Screenshot the asset graph of the demo for the README: `python scripts/screenshot_asset_graph.py`.

Starts `dagster dev` on the demo exactly as the smoke test does (tests/integration/test_dagster_dev.py: a
temporary DAGSTER_HOME with the repository's dagster.yaml, a demo database, the emulator), materializes one
day of the users sync (every day since the spec's start_date, as one single-run backfill; `--one-day` for a
quick run) so the graph shows materialized assets, then points headless Chromium at the lineage page of the
`users` asset group and writes docs/asset-graph.png. Needs Chromium (`apt-get install chromium`).
"""

import argparse
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.integration.test_dagster_dev import (  # noqa: E402
    LOCATION,
    dagster_dev,
    demo_environment,
    graphql,
    launch_backfill,
    wait_for_backfill_runs,
    wait_for_run,
)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_chromium() -> str:
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    sys.exit("no Chromium found: install it (Debian/Ubuntu: apt-get update && apt-get install -y chromium)")


def screenshot(chromium: str, url: str, output: Path, width: int, height: int, budget_ms: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        command = [
            chromium,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={budget_ms}",
            f"--screenshot={output}",
            url,
        ]
        subprocess.run(command, check=True, capture_output=True, timeout=180)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=ROOT / "docs" / "asset-graph.png")
    parser.add_argument("--group", default="users", help="the asset group (sync) to show")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--one-day", action="store_true", help="materialize one day instead of every day")
    parser.add_argument("--budget-ms", type=int, default=15000, help="virtual time the page gets to render")
    args = parser.parse_args()

    chromium = find_chromium()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="asset-graph-") as workdir:
        workdir = Path(workdir)
        with (
            demo_environment(workdir) as (env, _emulator),
            dagster_dev(env, workdir / "dagster_dev.log") as server,
        ):
            print(f"dagster dev serves {server.url}")
            # materialized partitions, so the graph shows real status rather than "never materialized": an asset
            # backfill as the UI launches it, which the daemon runs as one run over the range
            today = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d")
            first = today if args.one_day else "2024-01-01"
            paths = [
                [args.group, name] for name in ("source_users", "mapped_attributes", "personalize_users")
            ]
            print(f"backfilling {args.group} from {first} to {today} (one run; Dagster records every day)")
            backfill_id = launch_backfill(server.url, paths, first, today)
            [run] = wait_for_backfill_runs(server.url, backfill_id, timeout=300)
            run = wait_for_run(server.url, run["runId"], timeout=1200)
            print(f"backfill run {run['status']}")
            graphql(
                server.url, "mutation { setNuxSeen }"
            )  # no "Join the Dagster community" dialog over the graph
            page = f"{server.url}/locations/{LOCATION}/asset-groups/{args.group}/lineage"
            screenshot(chromium, page, args.output, args.width, args.height, args.budget_ms)
            print(f"wrote {args.output} from {page}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
