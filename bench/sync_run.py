"""One run of the REAL users sync through Dagster, in this process, with its figures as JSON.

    python bench/sync_run.py --spec SPEC --dagster-home DIR --out result.json [--full-resync]

It does what a user's run does: `build_definitions(load_spec(spec)).resolve_job_def("users_sync")
.execute_in_process(instance=...)` on a temporary DagsterInstance under DIR, with the state store named by
`CONTENTSTACK_STATE_URL`. Run it as a child process (`run_sync` below does): its peak RSS is then the
run's own, read by the parent from `os.wait4`.

Phases: `read_s` and `map_s` come from the assets' metadata; `plan_s` and `deliver_s` from the push's own
timings (`plan_s`, `deliver_s` in the push's metadata); `steps` holds each
Dagster step's wall time from the event log (so the IO manager's store/load and Dagster's overhead show as
the step time not covered by the phases).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def _materializations(result) -> dict[str, dict]:
    """Each asset's metadata in the run, by the last part of its key: its materialization's, or its
    observation's (a dry run observes the push instead of materializing it)."""
    found = {}
    events = [
        *(event.event_specific_data.asset_observation for event in result.get_asset_observation_events()),
        *(event.event_specific_data.materialization for event in result.get_asset_materialization_events()),
    ]
    for event in events:
        found[event.asset_key.path[-1]] = {
            key: value.value
            for key, value in event.metadata.items()
            if isinstance(value.value, int | float | bool | str | list) and key != "plan_sample"
        }
    return found


def _step_durations(instance, run_id: str) -> dict[str, float]:
    started: dict[str, float] = {}
    durations: dict[str, float] = {}
    for record in instance.all_logs(run_id):
        event = record.dagster_event
        if event is None or event.step_key is None:
            continue
        if event.event_type_value == "STEP_START":
            started[event.step_key] = record.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in started:
            durations[event.step_key] = round(record.timestamp - started[event.step_key], 3)
    return durations


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spec", required=True)
    parser.add_argument("--dagster-home", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--full-resync", action="store_true")
    parser.add_argument("--job", default="users_sync", help="the job to run (users_dry_run: a dry run)")
    parser.add_argument("--profile", help="write a cProfile of the run here")
    parser.add_argument(
        "--multiprocess",
        action="store_true",
        help="run each step in its own process (Dagster's multiprocess executor), as a deployment does",
    )
    args = parser.parse_args()

    os.environ["DAGSTER_HOME"] = args.dagster_home
    Path(args.dagster_home).mkdir(parents=True, exist_ok=True)
    imports_started = time.perf_counter()
    import dagster as dg

    from contentstack_assets.definitions import build_definitions
    from contentstack_assets.spec import load_spec

    imports_s = time.perf_counter() - imports_started

    run_config = {}
    if args.full_resync:
        run_config = {"ops": {"users__personalize_users": {"config": {"full_resync": True}}}}
    instance_dir = Path(args.dagster_home) / "instance"
    instance_dir.mkdir(parents=True, exist_ok=True)
    instance = dg.DagsterInstance.local_temp(tempdir=str(instance_dir))
    profiler = None
    if args.profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    started = time.perf_counter()
    if args.multiprocess:
        job = dg.build_reconstructable_job(
            "sync_run",
            "job_of",
            reconstructable_args=(args.spec, args.job),
            reconstructor_working_directory=str(BENCH_DIR),
        )
        result = dg.execute_job(job, instance=instance, run_config=run_config, raise_on_error=False)
    else:
        defs = build_definitions(load_spec(args.spec))
        result = defs.resolve_job_def(args.job).execute_in_process(
            instance=instance, run_config=run_config, raise_on_error=False
        )
    wall_s = time.perf_counter() - started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(args.profile)
    metadata = _materializations(result)
    read = metadata.get("source_users", {})
    mapped = metadata.get("mapped_attributes", {})
    push = metadata.get("personalize_users", {})
    figures = {
        "job": args.job,
        "success": result.success,
        "wall_s": round(wall_s, 3),
        "imports_s": round(imports_s, 3),
        "read_s": read.get("read_s"),
        "map_s": mapped.get("map_s"),
        "plan_s": push.get("plan_s", 0.0),
        "deliver_s": push.get("deliver_s", 0.0),
        "push_s": push.get("duration_s"),
        "steps": _step_durations(instance, result.run_id),
        "metadata": {"source_users": read, "mapped_attributes": mapped, "personalize_users": push},
    }
    if not result.success:
        failures = [event.message for event in result.all_events if event.is_failure]
        figures["failures"] = failures[:5]
    Path(args.out).write_text(json.dumps(figures, indent=2, default=str))


def job_of(spec: str, job: str):
    """The job, rebuilt from the spec in each step's process (`--multiprocess`)."""
    from contentstack_assets.definitions import build_definitions
    from contentstack_assets.spec import load_spec

    return build_definitions(load_spec(spec)).resolve_job_def(job)


def run_child(args: list[str], out: Path, env: dict | None = None) -> dict:
    """Run a bench script as a child process (through bench/peak.py); its JSON output plus `peak_rss_mib`
    (the child's own peak: Linux `VmHWM`), `child_wall_s` and `cpu_s`."""
    started = time.perf_counter()
    log_path = out.with_suffix(".log")  # Dagster's console log of the run, out of the way of the figures
    peak_path = out.with_suffix(".peak")
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "peak.py"), str(peak_path), *args],
            env={**os.environ, **(env or {})},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    child_wall_s = time.perf_counter() - started
    if process.returncode != 0:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(f"{' '.join(args)} exited with {process.returncode}:\n{tail}")
    figures = json.loads(out.read_text())
    own = peak_path.read_text().strip() if peak_path.exists() else "None"
    # the child's own peak; ru_maxrss (kilobytes on Linux) only where the platform has no VmHWM
    figures["peak_rss_mib"] = float(own) if own != "None" else round(usage.ru_maxrss / 1024, 1)
    figures["child_wall_s"] = round(child_wall_s, 3)
    figures["cpu_s"] = round(usage.ru_utime + usage.ru_stime, 3)
    return figures


def run_sync(
    spec: Path,
    dagster_home: Path,
    out: Path,
    env: dict,
    full_resync: bool = False,
    profile: str | None = None,
) -> dict:
    args = [
        str(BENCH_DIR / "sync_run.py"),
        "--spec",
        str(spec),
        "--dagster-home",
        str(dagster_home),
        "--out",
        str(out),
    ]
    if full_resync:
        args.append("--full-resync")
    if profile:
        args += ["--profile", profile]
    return run_child(args, out, env)


if __name__ == "__main__":
    main()
