"""A sharded sync's unchanged rerun against the same sync unsharded: each shard reads the uids and hashes of
its own slice only and leaves its unchanged users unread (change detection in the database, per shard).

    python bench/shard_rerun.py [--rows 1000000] [--shards 4] [--database postgres] [--repeats 2]

On the cached table of bench/scale.py (bench/data/, or the PostgreSQL database it fills), against the
emulator (no latency: the first sync is only the setup here):
1. the first sync of every user, unsharded, in one process: the state holds every user's digest (the state
   does not depend on `shards`, so both kinds of rerun below start from it);
2. `--repeats` unchanged reruns unsharded in one process (`execute_in_process`), then as many with `shards`
   under Dagster's multiprocess executor (each step its own process, as a deployment runs them): the wall,
   the rows read whole and left unread by shard, the requests, each step's own peak RSS.
Each rerun is the REAL users sync, run by bench/sync_run.py as a child process. The section it writes to
docs/benchmarks.md (between its markers) is replaced by a rerun.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import run_all  # noqa: E402
import scale  # noqa: E402
from shard_memory import _spec, _step_peaks  # noqa: E402
from sync_run import run_child  # noqa: E402

SECTION_BEGIN = "<!-- bench/shard_rerun.py writes the section below; a rerun replaces it -->"
SECTION_END = "<!-- end of bench/shard_rerun.py's section -->"


def _run(spec: Path, workdir: Path, name: str, env: dict, multiprocess: bool) -> dict:
    out = workdir / f"{name}.json"
    args = [str(BENCH_DIR / "sync_run.py"), "--spec", str(spec), "--dagster-home", str(workdir / name)]
    args += ["--out", str(out)] + (["--multiprocess"] if multiprocess else [])
    started = time.perf_counter()
    figures = run_child(args, out, env)
    if not figures["success"]:
        raise RuntimeError(f"{name}: the run failed: {figures.get('failures')}")
    run_all.log(f"{name}: {time.perf_counter() - started:.1f}s")
    return figures


def _rerun_figures(run: dict) -> dict:
    read = run["metadata"]["source_users"]
    push = run["metadata"]["personalize_users"]
    return {
        "wall_s": run["wall_s"],
        "rows_read": read.get("rows_read"),
        "rows_digest_unchanged": read.get("rows_digest_unchanged"),
        "rows_by_shard": read.get("rows_by_shard"),
        "requests_sent": push.get("requests_sent"),
        "users_unchanged": push.get("users_unchanged"),
        "step_peaks_mib": _step_peaks(run),
        "peak_rss_mib": run["peak_rss_mib"],
        "steps": run["steps"],
    }


def measure(args: argparse.Namespace) -> dict:
    from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process

    script = f"import scale, json; print(json.dumps(scale.ensure_table({args.database!r}, {args.rows})))"
    printed = subprocess.run(
        [sys.executable, "-c", script], cwd=BENCH_DIR, capture_output=True, text=True, check=True
    )
    table = json.loads(printed.stdout.strip().splitlines()[-1])
    workdir = Path(tempfile.mkdtemp(prefix="cs_shard_rerun_"))
    state_url = run_all._state_url(args.database, workdir / "state")
    (workdir / "state").mkdir(parents=True, exist_ok=True)
    run_all._drop_state(args.database, state_url)
    env = {"CONTENTSTACK_STATE_URL": state_url}
    figures: dict = {"rows": args.rows, "shards": args.shards, "database": args.database}
    config = EmulatorConfig(
        project_uid=run_all.PROJECT_UID, attributes=list(run_all.ATTRIBUTES), latency_ms=0.0
    )
    with start_emulator_process(config) as emulator:
        unsharded = _spec(workdir, table["url"], emulator.url, 1, None)
        sharded = _spec(workdir, table["url"], emulator.url, args.shards, None)
        first = _run(unsharded, workdir, "first_sync", env, False)
        figures["first_sync"] = {
            "wall_s": first["wall_s"],
            "requests_sent": first["metadata"]["personalize_users"].get("requests_sent"),
        }
        for name, spec, multiprocess in (
            ("unsharded_in_process", unsharded, False),
            (f"{args.shards}_shards_multiprocess", sharded, True),
        ):
            figures[name] = [
                _rerun_figures(_run(spec, workdir, f"{name}_{repeat}", env, multiprocess))
                for repeat in range(args.repeats)
            ]
    return figures


def _median(runs: list[dict], key: str) -> float:
    return round(statistics.median(run[key] for run in runs), 2)


def report(figures: dict, command: str) -> str:
    shards = figures["shards"]
    alone, split = figures["unsharded_in_process"], figures[f"{shards}_shards_multiprocess"]
    last = split[-1]
    lines = [
        f"## A sharded unchanged rerun: {figures['rows']:,} users, {shards} shards ({figures['database']})",
        "",
        f"Command: `{command}` (run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {scale._git()}). "
        f"Setup: the first sync of every user, unsharded ({figures['first_sync']['wall_s']} s, "
        f"{figures['first_sync']['requests_sent']:,} requests, emulator without latency). Then "
        f"{len(alone)} unchanged reruns of each kind; medians.",
        "",
        "| rerun | wall | rows read whole | rows unchanged by their digest | requests | largest step peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, runs in (("unsharded, in one process", alone), (f"{shards} shards, multiprocess", split)):
        peak = max(max(peaks) for peaks in runs[-1]["step_peaks_mib"].values() if peaks)
        lines.append(
            f"| {name} | {_median(runs, 'wall_s')} s | {runs[-1]['rows_read']:,} | "
            f"{runs[-1]['rows_digest_unchanged']:,} | {runs[-1]['requests_sent']} | {peak} MiB |"
        )
    reads = {step: seconds for step, seconds in last["steps"].items() if ".read_" in step}
    lines += [
        "",
        "Each shard's read step (the last sharded rerun): "
        + ", ".join(f"{step.rsplit('.', 1)[-1]} {seconds} s" for step, seconds in sorted(reads.items()))
        + "; its steps' peaks by asset: "
        + "; ".join(f"{asset} {peaks}" for asset, peaks in last["step_peaks_mib"].items() if peaks)
        + " MiB.",
        "",
        "Each shard scans the uids and hashes of its own slice (the shard's condition in SQL) and reads no row "
        "whole. On this machine's two cores the multiprocess executor's own cost (a process per step, "
        f"{3 * shards + 3} steps) dominates the sharded wall; shards divide the work between machines, and "
        "each shard process holds the state's digests of the whole sync (9 bytes a user).",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--database", default="postgres", help="postgres or duckdb (bench/scale.py)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    command = "python bench/shard_rerun.py " + shlex.join(sys.argv[1:])
    figures = measure(args)
    text = report(figures, command.strip())
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))
    if not args.no_append:
        scale.write_section(text, SECTION_BEGIN, SECTION_END)


if __name__ == "__main__":
    main()
