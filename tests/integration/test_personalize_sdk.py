"""The official Personalize Edge SDK (`@contentstack/personalize-edge-sdk`, from npm) against the bundled
emulator: what a front end does with it (start, set attributes, trigger events and impressions, log in with
`preserveUserAttributes`) is accepted, and the emulator holds what the SDK sent.

Needs node and npm, and the npm registry: skipped where npm is missing, a failure under CI=true.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from contentstack_assets.personalize.emulator import EmulatorConfig, EmulatorThread, run_emulator_in_thread
from tests.conftest import ON_CI

PROJECT = "proj0000000000000000000a"
SDK = "@contentstack/personalize-edge-sdk@1"

# Run with `node front_end.js EDGE_URL PROJECT_UID`; prints what the SDK saw as JSON.
FRONT_END = """
const Personalize = require('@contentstack/personalize-edge-sdk');
const [edgeUrl, projectUid] = process.argv.slice(2);
(async () => {
  Personalize.setEdgeApiUrl(edgeUrl);
  const sdk = await Personalize.init(projectUid);  // GET /manifest; the Edge issues the visitor's uid
  const anonymous = sdk.getUserId();
  await sdk.set({ plan: 'trial', vip: true });
  await sdk.triggerEvent('signup');
  await sdk.triggerImpressions({ experienceShortUids: ['a'] });  // no active variant: posts []
  await sdk.triggerImpressions({ aliases: ['cs_personalize_a_0'] });
  await sdk.setUserId('known-1', { preserveUserAttributes: true });  // the merge, without a user header
  await sdk.set({ ltv: 12.5 });
  await sdk.setUserId('known-1', { preserveUserAttributes: true });  // a merge into itself
  await sdk.triggerEvent('purchase');
  console.log(JSON.stringify({
    anonymous,
    status: Personalize.getInitializationStatus(),
    variants: sdk.getVariants(),
    aliases: sdk.getVariantAliases(),
  }));
})().catch((error) => { console.error(error); process.exit(1); });
"""


def _unavailable(reason: str) -> None:
    if ON_CI:
        pytest.fail(f"{reason}, and CI=true: the CI machine must have node and npm")
    pytest.skip(f"{reason} (install node 20 and npm to run this test; CI fails instead of skipping)")


@pytest.fixture(scope="module")
def sdk_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A temp dir with the official SDK installed from npm."""
    npm, node = shutil.which("npm"), shutil.which("node")
    if npm is None or node is None:
        _unavailable("node or npm is not on PATH")
    assert npm is not None
    directory = tmp_path_factory.mktemp("personalize_sdk")
    (directory / "package.json").write_text('{"name": "front-end", "private": true}\n')
    installed = subprocess.run(
        [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", SDK],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    if installed.returncode != 0:
        _unavailable(f"`npm install {SDK}` failed: {installed.stderr.strip()[-500:]}")
    (directory / "front_end.js").write_text(FRONT_END)
    return directory


@pytest.fixture
def emu() -> Iterator[EmulatorThread]:
    config = EmulatorConfig(
        project_uid=PROJECT, attributes=["plan", "vip", "ltv"], events=["signup", "purchase"]
    )
    with run_emulator_in_thread(config) as emulator:
        yield emulator


def _run_front_end(sdk_dir: Path, edge_url: str, project: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["node", "front_end.js", edge_url, project], cwd=sdk_dir, capture_output=True, text=True, timeout=60
    )


def test_the_official_sdk_runs_against_the_emulator(sdk_dir: Path, emu: EmulatorThread) -> None:
    ran = _run_front_end(sdk_dir, emu.url, PROJECT)
    assert ran.returncode == 0, ran.stderr
    seen = json.loads(ran.stdout)
    assert seen["status"] == "success"
    assert seen["variants"] == {} and seen["aliases"] == []
    anonymous = seen["anonymous"]
    assert isinstance(anonymous, str) and anonymous

    # The SDK ignores every answer: the emulator's statuses say whether it was accepted.
    stats = emu.stats()
    assert stats["by_status"] == {"200": stats["requests_total"]}
    assert stats["by_endpoint"] == {
        "GET /manifest": 1,
        "PATCH /user-attributes": 2,
        "POST /events": 4,
        "POST /user-attributes/actions/merge": 2,
    }
    assert stats["merges"] == [[anonymous, "known-1"]]

    known = emu.user("known-1")
    assert known is not None
    assert known["attributes"] == {"plan": "trial", "vip": True, "ltv": 12.5}
    assert known["events"] == [
        {"eventKey": "signup", "type": "EVENT"},
        {"experienceShortUid": "a", "variantShortUid": "0", "type": "IMPRESSION"},
        {"eventKey": "purchase", "type": "EVENT"},
    ]
    source = emu.user(anonymous)
    assert source is not None and source["merged_into"] == "known-1" and source["events"] == []


def test_the_sdk_reports_an_unknown_project(sdk_dir: Path, emu: EmulatorThread) -> None:
    ran = _run_front_end(sdk_dir, emu.url, "another-project")
    assert ran.returncode == 1
    assert "Project not found: another-project" in ran.stderr
