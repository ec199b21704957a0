"""Sharded delivery on Celery: the push's users/s with one worker against two.

    python bench/shards_throughput.py --users 20000 --latency-ms 20 --concurrency 32

The benchmark users table (bench/datagen.py) is pushed to the bundled emulator (a separate process with
`--latency-ms`) by the REAL sync job of deploy/celery_definitions.py: the production instance
(deploy/dagster.yaml) and the sync state on a fresh PostgreSQL database per configuration, the local Redis
as broker, `dagster-celery worker start` workers (one task at a time each), the project's pool given one
slot per shard. Configurations, all with the same total `concurrency`:
  - 1 worker, unsharded: the baseline, one process holds every request in flight;
  - 1 worker, 2 shards: the shards wait for the one worker, so only half the concurrency is used at a time;
  - 2 workers, 2 shards: the shards on two workers at once, each with half the concurrency.
users/s is users delivered over the push's duration (first shard start to last shard end, the asset's
`duration_s`); the run's wall time adds the read, the mapping and Celery's task hand-offs. The emulator's
counters check every user arrived once and `max_in_flight` stayed within `concurrency`.

It prints the figures and appends them, with the machine and the command, to docs/production.md.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
import yaml

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(PROJECT_ROOT))

import datagen  # noqa: E402
from run_all import ATTRIBUTES, PROJECT_UID, machine  # noqa: E402

from tests.integration.test_production import DEPLOY, production_env  # noqa: E402
from tests.resilience.test_celery import start_worker, stop_worker, wait_for_workers  # noqa: E402

DOC = PROJECT_ROOT / "docs" / "production.md"
MARKER = "<!-- bench/shards_throughput.py appends runs below this line -->"
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BROKER_URL = "redis://127.0.0.1:6379/11"  # Redis databases of the benchmark's own
BACKEND_URL = "redis://127.0.0.1:6379/12"
CONFIGURATIONS = [(1, 1), (1, 2), (2, 2)]  # (workers, shards)


def log(message: str) -> None:
    print(f"[{dt.datetime.now():%H:%M:%S}] {message}", flush=True)


def run_configuration(
    workers: int, shards: int, *, source_url: str, users: int, latency_ms: float, concurrency: int
) -> dict:
    import dagster as dg
    from dagster._core.definitions.reconstruct import ReconstructableRepository
    from dagster_celery.make_app import make_app

    from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process

    database = f"cs_bench_shards_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{database}"'))
    state_url = sa.engine.make_url(ADMIN_URL).set(database=database).render_as_string(hide_password=False)
    work = Path(tempfile.mkdtemp(prefix="cs_bench_shards_"))
    home = work / "home"
    home.mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", home / "dagster.yaml")
    saved = dict(os.environ)
    processes = []
    try:
        with start_emulator_process(
            EmulatorConfig(project_uid=PROJECT_UID, latency_ms=latency_ms)
        ) as emulator:
            spec = work / "syncs.yaml"
            sync = {
                "name": "users",
                "source": {"url": source_url, "table": datagen.TABLE},
                "destination": {"project_uid": PROJECT_UID, "edge_url": emulator.url},
                "match": {"column": "user_uid"},
                "attributes": ATTRIBUTES,
                "concurrency": concurrency,
                "shards": shards,
            }
            spec.write_text(yaml.safe_dump({"syncs": [sync]}, sort_keys=False))
            env = {
                "DAGSTER_HOME": str(home),
                **production_env(state_url),
                "CONTENTSTACK_SYNCS_FILE": str(spec),
                "DAGSTER_CELERY_BROKER_URL": BROKER_URL,
                "DAGSTER_CELERY_BACKEND_URL": BACKEND_URL,
            }
            os.environ.update(env)
            app = make_app({"broker": BROKER_URL, "backend": BACKEND_URL})
            app.control.purge()
            names = tuple(f"cs_bench_{index}" for index in range(workers))
            logs = [work / f"{name}.log" for name in names]
            worker_env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
            processes = [start_worker(name, worker_env, path) for name, path in zip(names, logs, strict=True)]
            wait_for_workers(app, names, processes, logs)

            with dg.DagsterInstance.get() as instance:
                instance.event_log_storage.set_concurrency_slots(f"personalize_{PROJECT_UID}", shards)
                job = ReconstructableRepository.for_file(
                    str(DEPLOY / "celery_definitions.py"), "defs", working_directory=str(PROJECT_ROOT)
                ).get_reconstructable_job("users_sync")
                started = time.perf_counter()
                with dg.execute_job(job, instance=instance) as result:
                    wall_s = time.perf_counter() - started
                    if not result.success:
                        raise RuntimeError(
                            "the run failed:\n" + "\n".join(path.read_text()[-3000:] for path in logs)
                        )
                    metadata = next(
                        {
                            key: value.value
                            for key, value in event.event_specific_data.materialization.metadata.items()
                        }
                        for event in result.get_asset_materialization_events()
                        if event.event_specific_data.materialization.asset_key
                        == dg.AssetKey(["users", "personalize_users"])
                    )
            stats = emulator.stats()
        if (
            metadata["users_delivered"] != users
            or stats["requests_total"] != users
            or len(stats["patch_counts"]) != users
        ):
            raise RuntimeError(
                f"expected {users} users delivered once each: {metadata['users_delivered']}, {stats['requests_total']}"
            )
        if stats["max_in_flight"] > concurrency:
            raise RuntimeError(f"{stats['max_in_flight']} requests in flight with concurrency {concurrency}")
        push_s = float(metadata["duration_s"])
        return {
            "workers": workers,
            "shards": shards,
            "push_s": round(push_s, 2),
            "users_per_s": round(users / push_s),
            "wall_s": round(wall_s, 1),
            "max_in_flight": stats["max_in_flight"],
        }
    finally:
        for process in processes:
            stop_worker(process)
        os.environ.clear()
        os.environ.update(saved)
        sa.create_engine(state_url).dispose()
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(work, ignore_errors=True)


def append_to_doc(
    results: list[dict], args: argparse.Namespace, command: str, load: tuple[float, float]
) -> None:
    info = machine()
    lines = [
        "",
        f"### {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {args.users} users, latency {args.latency_ms:g} ms, "
        f"concurrency {args.concurrency}",
        "",
        f"`{command}` on {info['nproc']} CPUs ({info['cpu']}), {info['memory_gib']} GiB; 1-minute load average "
        f"{load[0]:.1f} before and {load[1]:.1f} after; other work on the machine: {args.note or 'none known'}.",
        "",
        "| Celery workers | shards | push users/s | push s | run wall s | max in flight |",
        "|---:|---:|---:|---:|---:|---:|",
        *(
            f"| {r['workers']} | {r['shards']} | {r['users_per_s']} | {r['push_s']} | {r['wall_s']} | {r['max_in_flight']} |"
            for r in results
        ),
        "",
    ]
    text = DOC.read_text()
    if MARKER not in text:
        text = text.rstrip("\n") + "\n\n" + MARKER + "\n"
    DOC.write_text(text.rstrip("\n") + "\n" + "\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--note", default="", help="what else ran on the machine, for the record")
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/production.md alone")
    parser.add_argument("--configuration", help=argparse.SUPPRESS)  # WORKERS,SHARDS,SOURCE_URL: one child run
    args = parser.parse_args()
    if args.configuration:
        workers, shards, source_url = args.configuration.split(",", 2)
        result = run_configuration(
            int(workers), int(shards), source_url=source_url, users=args.users, latency_ms=args.latency_ms,
            concurrency=args.concurrency,
        )  # fmt: skip
        print(json.dumps(result))
        return
    command = "python bench/shards_throughput.py " + shlex.join(
        [
            "--users",
            str(args.users),
            "--latency-ms",
            f"{args.latency_ms:g}",
            "--concurrency",
            str(args.concurrency),
        ]
    )

    load_before = os.getloadavg()[0]
    log(f"writing {args.users} benchmark users (bench/datagen.py)")
    source_url = datagen.write_sqlite(args.users)
    results = []
    for workers, shards in CONFIGURATIONS:
        log(f"{workers} worker(s), {shards} shard(s): running")
        # each configuration in a process of its own: the code location (and its spec) is loaded once per process
        child = subprocess.run(
            [sys.executable, __file__, "--users", str(args.users), "--latency-ms", str(args.latency_ms),
             "--concurrency", str(args.concurrency), "--configuration", f"{workers},{shards},{source_url}"],
            capture_output=True, text=True, cwd=PROJECT_ROOT,
        )  # fmt: skip
        if child.returncode != 0:
            raise SystemExit(f"{workers} worker(s), {shards} shard(s) failed:\n{child.stderr[-5000:]}")
        result = json.loads(child.stdout.strip().splitlines()[-1])
        results.append(result)
        log(
            f"{workers} worker(s), {shards} shard(s): {result['users_per_s']} users/s "
            f"(push {result['push_s']} s, run {result['wall_s']} s, max in flight {result['max_in_flight']})"
        )
    print()
    print(f"{'workers':>8} {'shards':>7} {'users/s':>9} {'push s':>8} {'wall s':>8} {'in flight':>10}")
    for r in results:
        print(
            f"{r['workers']:>8} {r['shards']:>7} {r['users_per_s']:>9} {r['push_s']:>8} {r['wall_s']:>8} {r['max_in_flight']:>10}"
        )
    if not args.no_append:
        append_to_doc(results, args, command, (load_before, os.getloadavg()[0]))
        log(f"appended to {DOC.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
