"""Screenshot the demo in the Dagster UI for the README and docs/ui.md: `python scripts/screenshot_ui.py`.

Starts `dagster dev` on the demo exactly as the smoke test does (tests/integration/test_dagster_dev.py: a
temporary DAGSTER_HOME with the repository's dagster.yaml, a demo database, the emulator), syncs the users of
the demo's days as one single-run backfill (what "Materialize all" over a range launches), then a dry run from
the `users_dry_run` job's page over the same days, and points headless Chromium at each page the docs show:
the lineage of the `users` group, the push asset's partitions, plots and events (one materialization per day,
each with that day's counts; the dry run as an observation), the checks of the mapped asset, and the Runs
list (the dry run tagged). Writes docs/asset-graph.png and docs/ui-*.png. Needs Chromium
(`apt-get install chromium`). Takes a few minutes, most of it the backfill.
"""

import argparse
import asyncio
import base64
import datetime as dt
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from contentstack_assets.demo import DEMO_DAYS  # noqa: E402
from tests.integration.test_dagster_dev import (  # noqa: E402
    LOCATION,
    dagster_dev,
    demo_environment,
    graphql,
    launch_backfill,
    wait_for_backfill_runs,
    wait_for_run,
)
from tests.integration.test_ui_instructions import launch  # noqa: E402

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


# (file name under docs/, page under the server, what it shows, buttons clicked before the screenshot)
PAGES = [
    (
        "asset-graph.png",
        "/locations/{location}/asset-groups/users/lineage",
        "the users sync's three assets",
        [],
    ),
    ("ui-partitions.png", "/assets/users/personalize_users?view=partitions", "the days delivered", []),
    (
        "ui-plots-by-partition.png",
        "/assets/users/personalize_users?view=overview",
        "each day's own counts, plotted by partition",
        ["Plots"],
    ),
    (
        "ui-plots-by-event.png",
        "/assets/users/personalize_users?view=overview",
        "the same counts, plotted by event",
        ["Plots", "Events"],
    ),
    ("ui-events.png", "/assets/users/personalize_users?view=events", "one materialization per day", []),
    ("ui-checks.png", "/assets/users/mapped_attributes?view=checks", "the checks of the mapped rows", []),
    ("ui-runs.png", "/runs", "the sync's backfill and the dry run's, from its job", []),
]


def screenshot_clicking(
    chromium: str, url: str, output: Path, width: int, height: int, budget_ms: int, clicks: list[str]
) -> None:
    """A page after clicking the buttons labelled `clicks`, in order (a toggle such as Events -> Plots keeps
    its state in the page, not in the URL): Chromium driven over its DevTools protocol."""
    asyncio.run(_drive(chromium, url, output, width, height, budget_ms / 1000, clicks))


async def _drive(
    chromium: str, url: str, output: Path, width: int, height: int, settle_s: float, clicks: list[str]
) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        browser = subprocess.Popen(
            [
                chromium,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--hide-scrollbars",
                "--remote-debugging-port=0",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            for _ in range(200):
                if port_file.exists() and port_file.read_text().strip():
                    break
                await asyncio.sleep(0.1)
            port = port_file.read_text().split()[0]
            async with aiohttp.ClientSession() as session:
                async with session.get(f"http://127.0.0.1:{port}/json/list") as response:
                    [target] = [t for t in await response.json() if t["type"] == "page"]
                async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    calls = iter(range(1, 1_000_000))

                    async def call(method: str, **params) -> dict:
                        number = next(calls)
                        await ws.send_json({"id": number, "method": method, "params": params})
                        async for message in ws:
                            answer = message.json()
                            if answer.get("id") == number:
                                return answer.get("result", {})
                        raise RuntimeError(f"Chromium closed the connection during {method}")

                    await call("Page.enable")
                    await call("Page.navigate", url=url)
                    await asyncio.sleep(settle_s)
                    for label in clicks:
                        script = (
                            "(() => { const b = [...document.querySelectorAll('button')]"
                            f".filter(e => e.textContent.trim().endsWith({label!r})).pop(); if (b) b.click(); return !!b; }})()"
                        )
                        found = await call("Runtime.evaluate", expression=script, returnByValue=True)
                        if not found.get("result", {}).get("value"):
                            texts = await call(
                                "Runtime.evaluate",
                                expression="[...document.querySelectorAll('button')].map(e => e.textContent).join(' | ')",
                                returnByValue=True,
                            )
                            raise RuntimeError(
                                f"no button {label!r} on {url}: {texts['result'].get('value')}"
                            )
                        await asyncio.sleep(settle_s)
                    shot = await call("Page.captureScreenshot", format="png")
                    output.write_bytes(base64.b64decode(shot["data"]))
        finally:
            browser.terminate()
            browser.wait(timeout=30)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=ROOT / "docs", help="where the screenshots go")
    parser.add_argument("--users", type=int, default=1000, help="users in the demo database")
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=900)
    parser.add_argument("--budget-ms", type=int, default=15000, help="virtual time each page gets to render")
    args = parser.parse_args()

    chromium = find_chromium()
    args.docs.mkdir(parents=True, exist_ok=True)
    today = dt.datetime.now(dt.UTC).date()
    first = (today - dt.timedelta(days=DEMO_DAYS)).isoformat()
    days = [(today - dt.timedelta(days=back)).isoformat() for back in range(DEMO_DAYS, -1, -1)]
    with tempfile.TemporaryDirectory(prefix="ui-screens-") as workdir:
        workdir = Path(workdir)
        with (
            demo_environment(workdir, users=args.users) as (env, _emulator),
            dagster_dev(env, workdir / "dagster_dev.log") as server,
        ):
            print(f"dagster dev serves {server.url}")
            paths = [["users", name] for name in ("source_users", "mapped_attributes", "personalize_users")]
            print(f"syncing users from {first} to {today} (one run; Dagster records every day)")
            for backfill_id in (
                launch_backfill(server.url, paths, first, today.isoformat()),
                launch(server.url, days, job="users_dry_run"),
            ):
                [run] = wait_for_backfill_runs(server.url, backfill_id, timeout=300)
                run = wait_for_run(server.url, run["runId"], timeout=1200)
                print(f"backfill {backfill_id}: run {run['status']}")
            graphql(server.url, "mutation { setNuxSeen }")  # no "Join the Dagster community" dialog
            for name, page, what, clicks in PAGES:
                url = server.url + page.format(location=LOCATION)
                if clicks:
                    # the plots of every metadata key, the counts (users_*) below the timings
                    tall = args.height * 5
                    screenshot_clicking(
                        chromium, url, args.docs / name, args.width, tall, args.budget_ms // 2, clicks
                    )
                else:
                    screenshot(chromium, url, args.docs / name, args.width, args.height, args.budget_ms)
                print(f"wrote docs/{name}: {what} ({page})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
