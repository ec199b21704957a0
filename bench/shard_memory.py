"""Peak memory of a sharded sync's processes against the same sync unsharded (issue 19: "with 4 shards on one
machine each shard process under 0.4x of the unsharded peak").

    python bench/shard_memory.py [--rows 1000000] [--shards 4] [--database sqlite] [--chunk-sizes 50000,1000000]

Each figure is a dry run of the REAL users sync (read, map and plan every user, send nothing) on the cached
table of bench/scale.py (bench/data/), run by bench/sync_run.py as a child process:
- unsharded, in one process (`execute_in_process`): the peak RSS of that process (its own, bench/peak.py);
- unsharded and sharded under Dagster's multiprocess executor (`--multiprocess`, each step its own process,
  as a deployment runs them): each step's own peak, which the shards' steps report in their metadata
  (`process_peak_rss_mib_by_shard`);
- a bare interpreter that imports Dagster and this package: what every process holds before any row.
The section it writes to docs/benchmarks.md (between its markers) is replaced by a rerun.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
import run_all  # noqa: E402
import scale  # noqa: E402
from sync_run import run_child  # noqa: E402

SECTION_BEGIN = "<!-- bench/shard_memory.py writes the section below; a rerun replaces it -->"
SECTION_END = "<!-- end of bench/shard_memory.py's section -->"
BOUND = 0.4  # issue 19: each shard process under 0.4x of the unsharded peak
ASSETS = ("source_users", "mapped_attributes", "personalize_users")


def _imports_only_mib() -> float:
    script = (
        "import dagster, pandas, pandera; from contentstack_assets.definitions import build_definitions; "
        "from contentstack_assets.syncs.report import process_peak_memory; "
        "print(process_peak_memory()['process_peak_rss_mib'])"
    )
    return round(float(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                                      check=True).stdout), 1)  # fmt: skip


def _spec(workdir: Path, source_url: str, edge_url: str, shards: int, chunk_size: int | None) -> Path:
    spec = run_all._write_spec(workdir / f"syncs_{shards}.yaml", source_url, edge_url, 64)
    document = yaml.safe_load(spec.read_text())
    document["syncs"][0]["shards"] = shards
    if chunk_size:
        document["syncs"][0]["source"]["chunk_size"] = chunk_size
    spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return spec


def _dry_run(spec: Path, workdir: Path, name: str, env: dict, multiprocess: bool) -> dict:
    out = workdir / f"{name}.json"
    args = [str(BENCH_DIR / "sync_run.py"), "--spec", str(spec), "--dagster-home", str(workdir / name)]
    args += ["--out", str(out), "--job", scale.DRY_RUN_JOB] + (["--multiprocess"] if multiprocess else [])
    started = time.perf_counter()
    figures = run_child(args, out, env)
    if not figures["success"]:
        raise RuntimeError(f"{name}: the dry run failed: {figures.get('failures')}")
    run_all.log(f"{name}: {time.perf_counter() - started:.1f}s, peak of the run's process "
                f"{figures['peak_rss_mib']} MiB")  # fmt: skip
    return figures


def _step_peaks(figures: dict) -> dict[str, list[float]]:
    """Each asset's steps' peaks (MiB), from their metadata: a shard step each, or the one step."""
    peaks = {}
    for asset in ASSETS:
        metadata = figures["metadata"].get(asset, {})
        by_shard = metadata.get("process_peak_rss_mib_by_shard")
        one = [metadata["process_peak_rss_mib"]] if "process_peak_rss_mib" in metadata else []
        peaks[asset] = by_shard or one
    return peaks


def measure(args: argparse.Namespace, chunk_size: int) -> dict:
    from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process

    # the table is written (or found cached) by a child: a process's peak RSS passes to the processes it
    # starts (Linux keeps it across fork and exec), and writing a big table would inflate every figure below
    script = f"import scale, json; print(json.dumps(scale.ensure_table({args.database!r}, {args.rows})))"
    printed = subprocess.run(
        [sys.executable, "-c", script], cwd=BENCH_DIR, capture_output=True, text=True, check=True
    )
    table = json.loads(printed.stdout.strip().splitlines()[-1])
    workdir = Path(tempfile.mkdtemp(prefix="cs_shard_memory_"))
    figures: dict = {
        "rows": args.rows,
        "shards": args.shards,
        "database": args.database,
        "chunk_size": chunk_size,
    }
    figures["imports_only_mib"] = _imports_only_mib()
    config = EmulatorConfig(project_uid=run_all.PROJECT_UID, attributes=list(run_all.ATTRIBUTES))
    with start_emulator_process(config) as emulator:
        for name, shards, multiprocess in (
            ("unsharded_in_process", 1, False),
            ("unsharded_multiprocess", 1, True),
            (f"{args.shards}_shards_multiprocess", args.shards, True),
        ):
            state_url = run_all._state_url(args.database, workdir / name)
            (workdir / name).mkdir(parents=True, exist_ok=True)
            run_all._drop_state(args.database, state_url)
            spec = _spec(workdir, table["url"], emulator.url, shards, chunk_size)
            run = _dry_run(spec, workdir, name, {"CONTENTSTACK_STATE_URL": state_url}, multiprocess)
            figures[name] = {
                "wall_s": run["wall_s"],
                "peak_rss_mib": run["peak_rss_mib"],  # the run's process, its own (bench/peak.py)
                "step_peaks_mib": _step_peaks(run),
                "rows_read": run["metadata"]["source_users"].get("rows_read"),
            }
    return figures


def report(figures: dict, command: str) -> str:
    unsharded = figures["unsharded_in_process"]["peak_rss_mib"]
    sharded = figures[f"{figures['shards']}_shards_multiprocess"]
    base = figures["imports_only_mib"]
    lines = [
        f"## Shards' memory: {figures['rows']:,} users, {figures['shards']} shards, chunk_size "
        f"{figures['chunk_size']:,} ({figures['database']})",
        "",
        f"Command: `{command}` (run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, "
        f"{scale._git()}). Dry runs (read, map, plan every user; nothing sent).",
        "",
        "| run | wall | peak RSS of the run's own process |",
        "|---|---:|---:|",
    ]
    for name in (
        "unsharded_in_process",
        "unsharded_multiprocess",
        f"{figures['shards']}_shards_multiprocess",
    ):
        run = figures[name]
        lines.append(f"| {name.replace('_', ' ')} | {run['wall_s']} s | {run['peak_rss_mib']} MiB |")
    single = figures["unsharded_multiprocess"]["step_peaks_mib"]
    lines += [
        "",
        f"Each step's own process, multiprocess executor (unsharded, and {figures['shards']} shards):",
        "",
    ]
    lines += ["| step | unsharded step (MiB) | shard steps (MiB) | largest shard / unsharded in-process peak "
              "| largest shard / unsharded step | above the imports: shard / unsharded step |",
              "|---|---:|---|---:|---:|---:|"]  # fmt: skip
    worst = 0.0
    for asset, peaks in sharded["step_peaks_mib"].items():
        if not peaks:
            continue
        largest = max(peaks)
        worst = max(worst, largest)
        alone = (single.get(asset) or [float("nan")])[0]
        lines.append(
            f"| {asset} | {alone} | {', '.join(map(str, peaks))} | {largest / unsharded:.2f}x | "
            f"{largest / alone:.2f}x | {(largest - base) / max(alone - base, 1):.2f}x |"
        )
    verdict = "met" if worst < BOUND * unsharded else "missed"
    lines += [
        "",
        f"An interpreter that only imports Dagster, pandas, pandera and this package holds {base} MiB. The "
        f"unsharded run's process peaks at {unsharded} MiB, {unsharded - base:.0f} MiB above that. "
        f"Target: each shard process under {BOUND}x the unsharded peak ({BOUND * unsharded:.0f} MiB): "
        f"**{verdict}** (largest shard step {worst} MiB, {worst / unsharded:.2f}x). A process holds at most "
        f"`chunk_size` rows at a time and a shard {figures['rows'] // figures['shards']:,} rows: "
        + (
            "with chunks smaller than a shard, every process holds about a chunk, sharded or not, and shards "
            "divide the work, not a process's memory."
            if figures["chunk_size"] < figures["rows"] // figures["shards"]
            else "a shard's steps hold its rows, about a quarter of the unsharded steps' (the column above the imports)."
        ),
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--database", default="sqlite", help="sqlite or postgres (bench/datagen.py)")
    parser.add_argument(
        "--chunk-sizes",
        default="50000,1000000",
        help="the spec's `source.chunk_size`, one set of runs each (50,000: the default; the table's size: the "
        "whole read in one chunk, where memory follows the rows a process holds)",
    )
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    args = parser.parse_args()
    command = "python bench/shard_memory.py " + shlex.join(sys.argv[1:])
    runs = [measure(args, int(size)) for size in args.chunk_sizes.split(",")]
    text = "\n\n".join(report(figures, command.strip()) for figures in runs)
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(runs, indent=2))
    if not args.no_append:
        scale.write_section(text, SECTION_BEGIN, SECTION_END)


if __name__ == "__main__":
    main()
