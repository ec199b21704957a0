"""Scale: how wall time and peak RSS of the users sync grow from 1M to 10M users (issue 19).

    python bench/scale.py                                   # --sizes 1000000,10000000 --databases sqlite
    python bench/scale.py --sizes 10000,100000 --no-append  # a quick look (~2 min)

Issue 19's figures to reach: the peak RSS of a users sync at 10M rows within 1.5x of the 1M figure, and the
wall time of the first sync and of the unchanged rerun growing at most x11 from 1M to 10M.

A first sync of 10M users through the emulator takes about an hour on the 2-core bench machine, so for each
database and size this measures, in a child process each (peak RSS from `os.wait4`, as `bench/sync_run.py`):

1. the DRY RUN of the whole sync on an empty state: the `users_dry_run` job (`dry_run: true` on the push, the
   run tagged as a dry run): it reads, maps and plans every user, and sends nothing. It is the first sync
   without its delivery;
2. the state a completed first sync leaves, written by `bench/seed_state.py` (read, map, plan, and every user
   recorded as delivered; timed, not a figure of the sync);
3. the UNCHANGED RERUN on that state: the REAL `users_sync` job (`bench/sync_run.py`), which must send no
   request. A database that detects changes itself (PostgreSQL, DuckDB: `engine/digests.py`) has no row
   digest in a seeded state, so there a first rerun reads every row and records the digests, and the rerun
   measured is the one after it, as after a real first sync;
4. optionally a bare `pandas.read_sql` of the same columns (`bench/read_sql_run.py`), the floor of a rerun.

The users tables are cached under bench/data/ (git-ignored), keyed by size: a SQLite table is reused while
its file is the one `bench/datagen.py` wrote (size and mtime recorded beside it in `users_N.db.json`);
PostgreSQL's one `users` table is reused while it holds N rows and `postgres_users.json` says it was written
for N. The emulator, spec and state are run_all.py's (`bench/run_all.py`); the spec's `source.chunk_size` is
the spec's default unless `--chunk-size` is given. The figures are printed, and written as the section
"Scale: ..." at the end of docs/benchmarks.md (replacing the one an earlier run wrote) unless --no-append.

This measures whatever the code in the working tree does when it runs: the section records the commit and
whether contentstack_assets/ had uncommitted changes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa
import yaml

BENCH_DIR = Path(__file__).resolve().parent
PROJECT_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))

import datagen  # noqa: E402
import run_all  # noqa: E402
from sync_run import run_child, run_sync  # noqa: E402

SECTION_BEGIN = "<!-- bench/scale.py writes the section below; a rerun replaces it -->"
SECTION_END = "<!-- end of bench/scale.py's section -->"
DRY_RUN_JOB = "users_dry_run"  # `f"{sync.name}_dry_run"`, syncs/push.py dry_run_job
RSS_BOUND = 1.5  # issue 19: peak RSS at 10M within 1.5x of 1M
WALL_BOUND_PER_SIZE = 1.1  # issue 19: x11 wall for x10 users
LOAD_QUIET = 1.5  # above this 1-minute load average (2 cores), a run's wall time shares the CPU
log = run_all.log


# -- the tables, cached -----------------------------------------------------------------------------------------
def _sqlite_path(rows: int) -> Path:
    return datagen.DATA_DIR / f"users_{rows}.db"


def _marker(database: str, rows: int) -> Path:
    if database == "sqlite":
        return _sqlite_path(rows).with_name(f"users_{rows}.db.json")
    return datagen.DATA_DIR / f"{database}_users.json"


def _file_identity(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def _cached(database: str, rows: int) -> dict | None:
    """The marker of a cached table of `rows` users, if the table is still the one written."""
    marker = _marker(database, rows)
    if not marker.exists():
        return None
    recorded = json.loads(marker.read_text())
    if recorded.get("rows") != rows:
        return None
    if database == "sqlite":
        path = _sqlite_path(rows)
        return recorded if path.exists() and recorded.get("file") == _file_identity(path) else None
    if database == "postgres":
        engine = sa.create_engine(datagen.postgres_url())
        try:
            with engine.connect() as connection:
                count = connection.execute(sa.text(f"SELECT count(*) FROM {datagen.TABLE}")).scalar()
        except sa.exc.SQLAlchemyError:
            return None
        finally:
            engine.dispose()
        return recorded if count == rows else None
    return None


def ensure_table(database: str, rows: int) -> dict:
    """The source URL of a users table of `rows` rows, written by datagen.py unless cached; with the time
    generation took (now, or when the cached table was written)."""
    cached = _cached(database, rows)
    if cached is not None:
        log(
            f"{database} {rows}: cached table (written in {cached['generation_s']}s on {cached['written_at']})"
        )
        return {
            "url": datagen.source_url(database, rows),
            "generation_s": cached["generation_s"],
            "cached": True,
        }
    log(f"{database} {rows}: writing the users table (bench/datagen.py)")
    started = time.perf_counter()
    url = datagen.write_table(database, rows)
    generation_s = round(time.perf_counter() - started, 1)
    recorded = {
        "rows": rows,
        "generation_s": generation_s,
        "written_at": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
    }
    if database == "sqlite":
        recorded["file"] = _file_identity(_sqlite_path(rows))
    datagen.DATA_DIR.mkdir(parents=True, exist_ok=True)
    _marker(database, rows).write_text(json.dumps(recorded, indent=2))
    log(f"{database} {rows}: table written in {generation_s}s")
    return {"url": url, "generation_s": generation_s, "cached": False}


# -- the runs ---------------------------------------------------------------------------------------------------
def _load() -> float:
    return round(os.getloadavg()[0], 2)


def seed(spec: Path, env: dict, log_path: Path) -> dict:
    """bench/seed_state.py in a child process: its wall time and peak RSS, the users it recorded."""
    started, load = time.perf_counter(), _load()
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            [sys.executable, str(BENCH_DIR / "seed_state.py"), "--spec", str(spec)],
            env={**os.environ, **env},
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - started
    text = log_path.read_text()
    if os.waitstatus_to_exitcode(status) != 0:
        tail = "".join(text.splitlines(keepends=True)[-30:])
        raise RuntimeError(f"seed_state.py failed:\n{tail}")
    found = re.search(r"seeded (\d+) users", text)
    return {
        "wall_s": round(wall_s, 1),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),
        "users": int(found.group(1)) if found else None,
        "load": [load, _load()],
    }


def _with_emulator(run: dict, emulator, load_before: float) -> dict:
    stats = emulator.stats()
    push = run["metadata"]["personalize_users"]
    run["rows_read"] = run["metadata"]["source_users"].get("rows_read")
    run["rows_digest_unchanged"] = run["metadata"]["source_users"].get("rows_digest_unchanged")
    run["users_to_send"] = push.get("users_to_send")
    run["requests_sent"] = push.get("requests_sent", 0)
    run["emulator_requests"] = stats["requests_total"]
    run["emulator_patches"] = stats["applied"].get("patch", 0)
    run["load"] = [load_before, _load()]
    return run


def _summary(run: dict) -> str:
    return (
        f"success={run['success']} wall={run['wall_s']}s (child {run['child_wall_s']}s) "
        f"peak_rss={run['peak_rss_mib']}MiB read={run['read_s']}s map={run['map_s']}s plan={run['plan_s']}s "
        f"deliver={run['deliver_s']}s rows_read={run['rows_read']} to_send={run['users_to_send']} "
        f"requests={run['requests_sent']} (emulator: {run['emulator_requests']} requests, "
        f"{run['emulator_patches']} patches) load={run['load']}"
    )


def _write_spec(workdir: Path, source_url: str, edge_url: str, args: argparse.Namespace) -> Path:
    spec = run_all._write_spec(workdir / "syncs.yaml", source_url, edge_url, args.concurrency)
    if args.chunk_size:
        document = yaml.safe_load(spec.read_text())
        document["syncs"][0]["source"]["chunk_size"] = args.chunk_size
        spec.write_text(yaml.safe_dump(document, sort_keys=False))
    return spec


def _digests_apply(sync) -> bool:
    """Whether a rerun of this sync detects changes in the database (then a seeded state needs one rerun to
    record the digests); False for code without change detection."""
    try:
        from contentstack_assets.engine.digests import digests_apply
    except ImportError:
        return False
    return digests_apply(sync)


def bench_one(database: str, rows: int, args: argparse.Namespace) -> dict:
    from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process
    from contentstack_assets.spec import load_spec

    figures: dict = {"database": database, "rows": rows, "phases": {}}
    started = time.perf_counter()
    table = ensure_table(database, rows)
    figures["table"] = {**table, "step_s": round(time.perf_counter() - started, 1)}
    workdir = Path(tempfile.mkdtemp(prefix=f"cs_scale_{database}_{rows}_"))
    try:
        state_url = run_all._state_url(database, workdir)
        run_all._drop_state(database, state_url)
        env = {"CONTENTSTACK_STATE_URL": state_url}
        config = EmulatorConfig(
            latency_ms=args.latency_ms, project_uid=run_all.PROJECT_UID, attributes=list(run_all.ATTRIBUTES)
        )
        with start_emulator_process(config) as emulator:
            spec = _write_spec(workdir, table["url"], emulator.url, args)
            figures["chunk_size"] = load_spec(str(spec)).get("users").source.chunk_size
            digests = _digests_apply(load_spec(str(spec)).get("users"))
            figures["digests"] = digests

            if not args.no_read_sql:
                read_sql = run_all._read_sql(table["url"], workdir, "read_sql")
                figures["phases"]["read_sql"] = {
                    "wall_s": read_sql["read_sql_s"],
                    "child_wall_s": read_sql["child_wall_s"],
                    "peak_rss_mib": read_sql["peak_rss_mib"],
                    "rows_read": read_sql["rows"],
                    "requests_sent": 0,
                }
                log(f"{database} {rows}: bare read_sql: {figures['phases']['read_sql']}")

            # 1. the dry run, on an empty state: read, map and plan every user, send nothing
            emulator.reset()
            load = _load()
            out = workdir / "dry_run.json"
            dry = run_child(
                [
                    str(BENCH_DIR / "sync_run.py"),
                    "--spec",
                    str(spec),
                    "--dagster-home",
                    str(workdir / "home_dry"),
                    "--out",
                    str(out),
                    "--job",
                    DRY_RUN_JOB,
                ],
                out,
                env,
            )
            dry = _with_emulator(dry, emulator, load)
            log(f"{database} {rows}: dry run: {_summary(dry)}")
            figures["phases"]["dry_run"] = dry
            if not dry["success"] or dry["emulator_patches"]:
                raise RuntimeError(f"the dry run failed or sent: {json.dumps(dry, default=str)[:3000]}")

            # 2. the state a first sync leaves
            seeded = seed(spec, env, workdir / "seed.log")
            log(f"{database} {rows}: state seeded: {seeded}")
            figures["seed"] = seeded

            # 3. the unchanged rerun (after one that records the digests, where the database makes them)
            home = workdir / "home"
            reruns = (["digests_rerun"] if digests else []) + [
                f"unchanged_rerun_{i}" for i in range(args.repeats)
            ]
            for name in reruns:
                emulator.reset()
                load = _load()
                run = _with_emulator(run_sync(spec, home, workdir / f"{name}.json", env), emulator, load)
                log(f"{database} {rows}: {name}: {_summary(run)}")
                figures["phases"][name] = run
                if not run["success"] or run["emulator_patches"]:
                    raise RuntimeError(f"{name} failed or sent: {json.dumps(run, default=str)[:3000]}")
            measured = sorted(
                (figures["phases"][n] for n in reruns if n.startswith("unchanged")), key=lambda r: r["wall_s"]
            )
            figures["phases"]["unchanged_rerun"] = {
                **measured[(len(measured) - 1) // 2],
                "walls_s": [r["wall_s"] for r in measured],
                "peak_rss_mib": max(r["peak_rss_mib"] for r in measured),
            }
        figures["total_s"] = round(time.perf_counter() - started, 1)
        return figures
    finally:
        if args.keep:
            log(f"{database} {rows}: work directory kept: {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# -- the report -------------------------------------------------------------------------------------------------
PHASES = [
    ("dry_run", "dry run (read, map, plan every user; nothing sent)"),
    ("unchanged_rerun", "unchanged rerun (real `users_sync`, 0 requests)"),
    ("read_sql", "bare `pandas.read_sql` (the floor)"),
]


def _users(rows: int) -> str:
    for unit, size in (("M", 1_000_000), ("k", 1_000)):
        if rows >= size and rows % size == 0:
            return f"{rows // size}{unit}"
    return f"{rows:,}"


def _phases(run: dict) -> str:
    values = [run.get(key) for key in ("read_s", "map_s", "plan_s", "deliver_s")]
    if all(value is None for value in values):
        return ""
    return " / ".join("-" if value is None else f"{value:.2f}" for value in values)


def _git() -> str:
    def git(*argv: str) -> str:
        return subprocess.run(
            ["git", *argv], cwd=PROJECT_ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()

    import contentstack_assets

    package_root = Path(contentstack_assets.__file__).resolve().parent.parent
    changed = git("status", "--porcelain", "--", "contentstack_assets")
    files = len(changed.splitlines())
    head = f"commit {git('rev-parse', '--short', 'HEAD')}"
    if package_root != PROJECT_ROOT:
        # PYTHONPATH named another copy (a `git archive` of a commit, say): that is the code measured
        return (
            f"contentstack_assets imported from {package_root} (PYTHONPATH), not the working tree (at {head})"
        )
    return head + (f", with uncommitted changes to {files} file(s) of contentstack_assets/" if files else "")


def report(
    results: list[dict],
    info: dict,
    command: str,
    elapsed_s: float,
    code: str,
    finished_at: str | None = None,
    load_at_end: list[float] | None = None,
) -> str:
    finished_at = finished_at or f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
    load_at_end = load_at_end or [round(x, 2) for x in os.getloadavg()]
    sizes = sorted({r["rows"] for r in results})
    databases = sorted({r["database"] for r in results})
    title = f"Scale: {_users(sizes[0])} -> {_users(sizes[-1])}"
    if databases != ["sqlite"]:
        title += f" ({', '.join(databases)})"
    chunk_sizes = sorted({r["chunk_size"] for r in results})
    lines = [
        f"## {title}",
        "",
        f"Run of {finished_at} (`bench/scale.py`; issue 19: peak RSS at the largest "
        f"size within {RSS_BOUND}x of the smallest, wall time of the first sync and of the unchanged rerun "
        f"growing at most {WALL_BOUND_PER_SIZE}x the growth in users, x11 for 1M -> 10M).",
        "",
        f"- command: `{command}` ({elapsed_s / 60:.1f} min)",
        f"- code: {code}; `source.chunk_size` {', '.join(f'{c:,}' for c in chunk_sizes)}",
        f"- machine: {info['nproc']} cores (`nproc`), {info['memory_gib']} GiB memory, {info['cpu']}; "
        f"load average at start {info['load_average_at_start']}, at end {load_at_end}",
        f"- versions: Python {info['python']}, pandas {info['pandas']}, numpy {info['numpy']}, "
        f"dagster {info['dagster']}, SQLAlchemy {info['sqlalchemy']}",
        "- the first sync is measured as its dry run (the `users_dry_run` job on an empty state: the same read, map "
        "and plan of every user, no delivery): a delivery of 10M users at the emulator's 20 ms takes about an hour "
        "here, and grows linearly by construction; the unchanged rerun runs on a state written by "
        "`bench/seed_state.py`",
        "",
        "| database | users | phase | wall s | peak RSS MiB | wall x / RSS x vs smallest | rows read | requests sent "
        "| read / map / plan / deliver s | load average (before, after) |",
        "|---|---:|---|---:|---:|---:|---:|---:|---|---|",
    ]
    for database in dict.fromkeys(r["database"] for r in results):
        runs = sorted((r for r in results if r["database"] == database), key=lambda r: r["rows"])
        for key, label in PHASES:
            base = runs[0]["phases"].get(key)
            for r in runs:
                run = r["phases"].get(key)
                if run is None:
                    continue
                ratio = ""
                if base is not None and r is not runs[0]:
                    ratio = f"{run['wall_s'] / base['wall_s']:.1f} / {run['peak_rss_mib'] / base['peak_rss_mib']:.2f}"
                requests = run.get("requests_sent", 0)
                if "emulator_patches" in run:
                    requests = f"{requests} (emulator: {run['emulator_patches']} PATCH)"
                rows_read = "" if run.get("rows_read") is None else f"{run['rows_read']:,}"
                if run.get("rows_digest_unchanged"):
                    rows_read += f" (+{run['rows_digest_unchanged']:,} left unread by digest)"
                lines.append(
                    f"| {database} | {r['rows']:,} | {label} | {run['wall_s']:.2f} | {run['peak_rss_mib']:.0f} "
                    f"| {ratio} | {rows_read} | {requests} | {_phases(run)} "
                    f"| {run.get('load', '')} |"
                )
    lines += ["", "Against the targets (largest size over smallest):", ""]
    lines += [
        "| database | sizes | users x | peak RSS x (<= 1.5) | dry run wall x | unchanged rerun wall x |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for database in dict.fromkeys(r["database"] for r in results):
        runs = sorted((r for r in results if r["database"] == database), key=lambda r: r["rows"])
        if len(runs) < 2:
            continue
        small, large = runs[0], runs[-1]
        growth = large["rows"] / small["rows"]
        wall_bound = WALL_BOUND_PER_SIZE * growth

        def rss(r: dict) -> float:
            return max(r["phases"][key]["peak_rss_mib"] for key in ("dry_run", "unchanged_rerun"))

        def wall(key: str, small=small, large=large, wall_bound=wall_bound) -> str:
            x = large["phases"][key]["wall_s"] / small["phases"][key]["wall_s"]
            return f"{x:.1f} (<= {round(wall_bound, 1):g}: {'met' if x <= wall_bound else 'MISSED'})"

        rss_x = rss(large) / rss(small)
        lines.append(
            f"| {database} | {small['rows']:,} -> {large['rows']:,} | {growth:.0f} "
            f"| {rss_x:.2f} ({rss(small):.0f} -> {rss(large):.0f} MiB: {'met' if rss_x <= RSS_BOUND else 'MISSED'}) "
            f"| {wall('dry_run')} | {wall('unchanged_rerun')} |"
        )
    loads = [
        (r["database"], r["rows"], key, max(r["phases"][key]["load"]))
        for r in results
        for key in ("dry_run", "unchanged_rerun")
        if key in r["phases"] and "load" in r["phases"][key]
    ]
    busy = [
        f"{d} {_users(n)} {k.replace('_', ' ')} at {load}" for d, n, k, load in loads if load > LOAD_QUIET
    ]
    if busy:
        lines += [
            "",
            f"**Wall ratios under load**: the 1-minute load average passed {LOAD_QUIET} on these 2 cores during "
            f"{'; '.join(busy)} (other processes' work shared the CPU): the wall times and their ratios are "
            "upper bounds, the peak RSS figures are not affected.",
        ]
    lines += [
        "",
        "The steps' own times (child process wall, interpreter start and imports included):",
        "",
        "| database | users | table (bench/datagen.py) s | dry run s | seed (bench/seed_state.py) s, peak RSS MiB "
        "| reruns s | whole size s |",
        "|---|---:|---|---:|---|---|---:|",
    ]
    for r in results:
        table = r["table"]
        made = (
            f"{table['generation_s']} (cached, {table['step_s']} to check)"
            if table["cached"]
            else str(table["generation_s"])
        )
        reruns = ", ".join(
            f"{name}: {run['child_wall_s']:.1f}"
            for name, run in r["phases"].items()
            if name.startswith(("digests_rerun", "unchanged_rerun_"))
        )
        lines.append(
            f"| {r['database']} | {r['rows']:,} | {made} | {r['phases']['dry_run']['child_wall_s']:.1f} "
            f"| {r['seed']['wall_s']}, {r['seed']['peak_rss_mib']:.0f} | {reruns} | {r['total_s']} |"
        )
    lines.append("")
    return "\n".join(lines)


def write_section(text: str, begin: str = SECTION_BEGIN, end: str = SECTION_END) -> None:
    """The section between a script's markers (this one's by default), at the end of docs/benchmarks.md:
    replaced in place if an earlier run wrote it, else appended."""
    doc = run_all.DOC
    existing = doc.read_text() if doc.exists() else "# Benchmarks\n"
    block = f"{begin}\n\n{text.rstrip()}\n\n{end}\n"
    if begin in existing and end in existing:
        before, rest = existing.split(begin, 1)
        after = rest.split(end, 1)[1]
        doc.write_text(before + block + after.lstrip("\n"))
    else:
        doc.write_text(existing.rstrip("\n") + "\n\n" + block)


def _section_markers(databases: str) -> tuple[str, str]:
    """The markers of this run's section: SQLite's (the default) has its own, every other set of databases
    one of its own too, so a run on PostgreSQL and DuckDB leaves SQLite's section in place."""
    if databases == "sqlite":
        return SECTION_BEGIN, SECTION_END
    return (
        f"<!-- bench/scale.py --databases {databases} writes the section below; a rerun replaces it -->",
        f"<!-- end of bench/scale.py --databases {databases}'s section -->",
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000000,10000000", help="comma-separated numbers of users")
    parser.add_argument("--databases", default="sqlite", help="comma-separated: sqlite, postgres, duckdb")
    parser.add_argument("--concurrency", type=int, default=64, help="the sync's `concurrency`")
    parser.add_argument("--latency-ms", type=float, default=20.0, help="the emulator's --latency-ms")
    parser.add_argument("--chunk-size", type=int, help="the spec's `source.chunk_size` (default: the spec's)")
    parser.add_argument("--repeats", type=int, default=1, help="unchanged reruns (the median reported)")
    parser.add_argument("--no-read-sql", action="store_true", help="leave out the bare read_sql baseline")
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/benchmarks.md alone")
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument(
        "--keep", action="store_true", help="keep the work directories (state, Dagster homes)"
    )
    parser.add_argument(
        "--code-note", help="said of the code measured in the section (e.g. what PYTHONPATH names)"
    )
    parser.add_argument(
        "--report-json", help="only render (and write) the section from a --json file of an earlier run"
    )
    args = parser.parse_args()
    if args.report_json:
        saved = json.loads(Path(args.report_json).read_text())
        text = report(
            saved["results"],
            saved["machine"],
            saved["command"],
            saved["elapsed_s"],
            saved["code"],
            saved.get("finished_at"),
            saved.get("load_at_end"),
        )
        print(text)
        if not args.no_append:
            write_section(text, *_section_markers(args.databases))
        return
    command = "python bench/scale.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    info = run_all.machine()
    code = _git() + (f"; {args.code_note}" if args.code_note else "")
    log(f"machine: {info}; code: {code}")
    started = time.perf_counter()
    results = []
    saved = lambda: {  # noqa: E731
        "machine": info,
        "code": code,
        "command": command,
        "elapsed_s": time.perf_counter() - started,
        "finished_at": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "load_at_end": [round(x, 2) for x in os.getloadavg()],
        "results": results,
    }
    run_all.each_size(args, bench_one, results, saved)
    text = report(results, info, command, time.perf_counter() - started, code)
    print()
    print(text)
    if not args.no_append:
        write_section(text, *_section_markers(args.databases))
        log(f"wrote the section to {run_all.DOC.relative_to(PROJECT_ROOT)}")


if __name__ == "__main__":
    main()
