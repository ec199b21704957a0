"""The open-source reverse-ETL peer: drt (PyPI `drt-core`) syncing the bench's users table to the same emulator.

    python bench/drt_peer.py --database sqlite --rows 10000       # writes the table, starts an emulator

drt runs from its own virtual environment (`make bench-drt-venv`: bench/.venv-drt, git-ignored, `drt-core`
pinned to DRT_VERSION), never this project's: `drt run` is a child process whose wall clock is timed from
its start to its exit and whose peak RSS comes from `os.wait4`, as for the sync's own child processes.

The drt project is generated in a work directory: a profile naming the same SQLite / DuckDB / PostgreSQL
table, and one sync through drt's generic `rest_api` destination, one `PATCH /user-attributes` per row
(`body_mode: record`, drt's only per-row mode), its body a Jinja template mapping the six columns to the
six attributes in the contract's wire forms. drt's `rest_api` destination has a fixed URL and fixed
headers; the Edge takes the user in the `x-cs-personalize-user-uid` header, and the one header drt renders
per row is its idempotency header, whose name is configurable: so `native_idempotency_header` names the
Edge's user header and `native_idempotency_key: "{{ row.user_uid }}"` fills it. drt's default pacing
(10 requests/s) is switched off (`rate_limit.requests_per_second: 0`) and rows are handed to the
destination 1,000 at a time (each hand-off opens a new HTTP client in drt 1.2.1): its fastest setting for
this destination. drt sends one request at a time; `--threads` parallelises syncs, not rows.

`check_delivery` reads the emulator's counters and stored users: every request a 2xx, one PATCH per user,
the attributes stored equal to what the bench table holds in the contract's wire forms.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

BENCH_DIR = Path(__file__).resolve().parent
DRT_VENV = BENCH_DIR / ".venv-drt"
DRT_VERSION = "1.2.1"  # the Makefile's DRT_VERSION installs this one
SYNC_NAME = "users_to_personalize"
SAMPLE = 200  # users whose attributes stored by drt are compared with those the sync stores

# The body: the six bench columns as the six attributes, in the contract's wire forms (a datetime as
# ISO-8601 UTC `YYYY-MM-DDTHH:MM:SSZ`, a date as `YYYY-MM-DD`). Written to read both SQLite's text and 0/1
# and DuckDB's / PostgreSQL's native timestamps, dates and booleans: `str()` of a whole-second datetime is
# `YYYY-MM-DD HH:MM:SS`, like SQLite's text.
BODY_TEMPLATE = """{
  "plan": {{ row.plan_name | tojson }},
  "ltv": {{ row.lifetime_value | tojson }},
  "orders": {{ row.order_count | tojson }},
  "vip": {{ 'true' if row.is_vip else 'false' }},
  "signup_at": "{{ row.created_at | string | replace(' ', 'T') }}Z",
  "birthday": "{{ row.birth_date | string }}"
}"""


def drt_executable(venv: Path = DRT_VENV) -> Path:
    return venv / "bin" / "drt"


def drt_available(venv: Path = DRT_VENV) -> bool:
    return drt_executable(venv).exists()


def installed_version(venv: Path = DRT_VENV) -> str:
    python = venv / "bin" / "python"
    return subprocess.run(
        [str(python), "-c", "import importlib.metadata as m; print(m.version('drt-core'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def profile_for(source_url: str) -> dict:
    """drt's profile for one of the bench's SQLAlchemy URLs (bench/datagen.py)."""
    import sqlalchemy as sa

    url = sa.engine.make_url(source_url)
    backend = url.get_backend_name()
    if backend in ("sqlite", "duckdb"):
        return {"type": backend, "database": url.database}
    if backend == "postgresql":
        profile = {
            "type": "postgres",
            "host": url.host or "127.0.0.1",
            "port": url.port or 5432,
            "dbname": url.database,
            "user": url.username or "postgres",
        }
        if url.password:
            profile["password"] = url.password
        return profile
    raise ValueError(f"drt peer: no drt profile for a {backend!r} source ({source_url})")


def write_project(
    directory: Path, source_url: str, edge_url: str, project_uid: str, table: str = "users"
) -> Path:
    """A drt project in `directory` (drt_project.yml, syncs/, and the profile under `directory/home/.drt`,
    drt's `~/.drt`); returns the project directory."""
    project = directory / "project"
    (project / "syncs").mkdir(parents=True, exist_ok=True)
    home = directory / "home" / ".drt"
    home.mkdir(parents=True, exist_ok=True)
    (home / "profiles.yml").write_text(yaml.safe_dump({"bench": profile_for(source_url)}, sort_keys=False))
    (project / "drt_project.yml").write_text(
        yaml.safe_dump({"name": "cs_bench", "version": "0.1", "profile": "bench"}, sort_keys=False)
    )
    sync = {
        "name": SYNC_NAME,
        "description": "the bench users table to the Personalize Edge API, one PATCH per user",
        "model": f"ref('{table}')",
        "destination": {
            "type": "rest_api",
            "url": edge_url.rstrip("/") + "/user-attributes",
            "method": "PATCH",
            "headers": {"Content-Type": "application/json", "x-project-uid": project_uid},
            "body_mode": "record",
            "body_template": BODY_TEMPLATE,
            "native_idempotency_header": "x-cs-personalize-user-uid",
            "native_idempotency_key": "{{ row.user_uid }}",
        },
        "sync": {
            "mode": "full",
            "batch_size": 1000,
            "rate_limit": {"requests_per_second": 0},
            "on_error": "skip",
        },
    }
    (project / "syncs" / f"{SYNC_NAME}.yml").write_text(yaml.safe_dump(sync, sort_keys=False))
    return project


def run_drt(project: Path, limit: int | None = None, venv: Path = DRT_VENV) -> dict:
    """`drt run` in `project` as a child process: wall s from its start to its exit, peak RSS, drt's own
    JSON report of the run."""
    command = [str(drt_executable(venv)), "run", "--output", "json"]
    if limit is not None:
        command += ["--limit", str(limit)]
    env = {
        **os.environ,
        "HOME": str(project.parent / "home"),  # drt reads its profiles from ~/.drt/profiles.yml
        "DO_NOT_TRACK": "1",
        "NO_COLOR": "1",
    }
    log_path = project.parent / "drt_run.log"
    started = time.perf_counter()
    with log_path.open("w") as log_file:
        process = subprocess.Popen(
            command, cwd=project, env=env, stdout=subprocess.PIPE, stderr=log_file, text=True
        )
        stdout = process.stdout.read() if process.stdout else ""
        _, status, usage = os.wait4(process.pid, 0)
    wall_s = time.perf_counter() - started
    returncode = os.waitstatus_to_exitcode(status)
    report = _json_report(stdout)
    if returncode != 0 or report is None:
        tail = "".join(log_path.read_text().splitlines(keepends=True)[-30:])
        raise RuntimeError(
            f"drt run exited with {returncode} in {project}:\n{stdout[-3000:]}\n{tail}".rstrip()
        )
    return {
        "wall_s": round(wall_s, 3),
        "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux: kilobytes
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 3),
        "report": report,
    }


def _json_report(stdout: str) -> dict | None:
    """drt's `--output json` document (the last JSON object it printed)."""
    text = stdout.strip()
    start = text.find("{")
    while start != -1:
        try:
            return json.loads(text[start:])
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
    return None


def sync_counts(report: dict) -> dict:
    """drt's own counts and duration (`duration_seconds`: the sync inside the process, after the
    interpreter's start and drt's imports) for the bench sync, from its JSON report."""
    for sync in report.get("syncs", []):
        if sync.get("name") == SYNC_NAME:
            return {
                "synced": sync.get("rows_synced"),
                "failed": sync.get("rows_failed"),
                "status": sync.get("status"),
                "duration_s": sync.get("duration_seconds"),
            }
    return {"synced": None, "failed": None, "status": None, "duration_s": None}


# -- what the emulator received ------------------------------------------------------------------------
def expected_attributes(row: dict) -> dict:
    """The six attributes of one bench row in the contract's wire forms, whatever the database's types."""

    def timestamp(value) -> str:
        if isinstance(value, dt.datetime):
            return value.strftime("%Y-%m-%dT%H:%M:%SZ")
        return str(value).replace(" ", "T")[:19] + "Z"

    return {
        "plan": row["plan_name"],
        "ltv": float(row["lifetime_value"]),
        "orders": int(row["order_count"]),
        "vip": bool(row["is_vip"]),
        "signup_at": timestamp(row["created_at"]),
        "birthday": str(row["birth_date"])[:10],
    }


def check_delivery(stats: dict, users: dict[str, dict], rows: list[dict]) -> dict:
    """Compare what the emulator counted and stored after drt's run with the rows drt read.

    `stats` is `GET /_emulator/stats`, `users` `GET /_emulator/users` (uid -> attributes), `rows`
    the table's rows drt was given. Returns the counts and every difference (at most 5 listed)."""
    statuses = stats.get("by_status", {})
    refused = {status: count for status, count in statuses.items() if not str(status).startswith("2")}
    patch_counts = stats.get("patch_counts", {})
    wrong = []
    for row in rows:
        uid = row["user_uid"]
        stored = users.get(uid)
        expected = expected_attributes(row)
        if stored != expected:
            wrong.append({"uid": uid, "stored": stored, "expected": expected})
    return {
        "requests": stats.get("requests_total", 0),
        "statuses": statuses,
        "refused": refused,
        "users_stored": len(users),
        "users_patched_once": sum(1 for count in patch_counts.values() if count == 1),
        "users_wrong": len(wrong),
        "examples_wrong": wrong[:5],
        "accepted": not refused
        and not wrong
        and len(patch_counts) == len(rows)
        and all(count == 1 for count in patch_counts.values()),
    }


def read_rows(source_url: str, uids: list[str], table: str = "users") -> list[dict]:
    """The table's rows of these users (those the emulator saw: `--limit` keeps the first N rows drt reads,
    in whatever order the database returns them)."""
    import sqlalchemy as sa

    query = sa.text(f"SELECT * FROM {table} WHERE user_uid IN :uids").bindparams(
        sa.bindparam("uids", expanding=True)
    )
    engine = sa.create_engine(source_url)
    try:
        with engine.connect() as connection:
            return [
                dict(row)
                for start in range(0, len(uids), 5000)
                for row in connection.execute(query, {"uids": uids[start : start + 5000]}).mappings()
            ]
    finally:
        engine.dispose()


def drt_sync(
    emulator, source_url: str, project_uid: str, workdir: Path, users: int | None, total_rows: int
) -> dict:
    """Reset the emulator, run drt over the table (the first `users` rows when fewer than the table's),
    check what the emulator got. Returns the figures of the bench's drt row."""
    emulator.reset()
    project = write_project(workdir / "drt", source_url, emulator.url, project_uid)
    limit = users if users is not None and users < total_rows else None
    run = run_drt(project, limit)
    delivered = users if limit is not None else total_rows
    stored, stats = emulator.users(), emulator.stats()
    check = check_delivery(stats, stored, read_rows(source_url, sorted(stats.get("patch_counts", {}))))
    counts = sync_counts(run["report"])
    sync_s = counts["duration_s"] or run["wall_s"]
    return {
        "version": installed_version(),
        "users": delivered,
        "wall_s": run["wall_s"],
        "sync_s": sync_s,
        "users_per_s": round(delivered / sync_s, 1),
        "users_per_s_process": round(delivered / run["wall_s"], 1),
        "peak_rss_mib": run["peak_rss_mib"],
        "cpu_s": run["cpu_s"],
        "drt_counts": counts,
        # what drt stored for a few users, to compare with what the sync stores for them
        "stored_sample": dict(list(stored.items())[:SAMPLE]),
        **check,
        "accepted": check["accepted"]
        and check["users_patched_once"] == delivered
        and counts["synced"] == delivered
        and counts["failed"] == 0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=["sqlite", "duckdb", "postgres"], default="sqlite")
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    args = parser.parse_args()
    sys.path.insert(0, str(BENCH_DIR))
    import datagen

    from contentstack_assets.personalize.emulator import EmulatorConfig, start_emulator_process

    project_uid = "bench0000000000000000001"
    attributes = ["plan", "ltv", "orders", "vip", "signup_at", "birthday"]
    source_url = datagen.write_table(args.database, args.rows)
    config = EmulatorConfig(latency_ms=args.latency_ms, project_uid=project_uid, attributes=attributes)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="cs_bench_drt_") as workdir,
            start_emulator_process(config) as emulator,
        ):
            figures = drt_sync(emulator, source_url, project_uid, Path(workdir), None, args.rows)
    finally:
        if args.database != "postgres":  # leave the disk as found, as bench/run_all.py does
            Path(source_url.split(":///", 1)[1]).unlink(missing_ok=True)
    figures.pop("stored_sample")
    print(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
