"""The demo: a SQLite user table with a few thousand realistic users (some deliberately bad), the bundled
emulator, and one run of the sync, printed. `contentstack-assets demo` (or `make demo` in a checkout).

It works in a folder of its own (default: the current directory): `demo/users.db`, a copy of the demo's
`syncs.yaml` and `.dagster_home/` (unless DAGSTER_HOME is set), so it runs the same from a checkout or from
an installed wheel.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sqlite3
import sys
import warnings
from importlib.resources import as_file, files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from contentstack_assets.personalize.emulator import EmulatorConfig

DEMO_DB = Path("demo") / "users.db"  # under the demo's folder
DEMO_PROJECT_UID = "demo00000000000000000001"
DEMO_MANAGEMENT_TOKEN = "demo-management-token"
DEMO_ATTRIBUTES = ["plan", "ltv", "orders", "vip", "signup_at", "birthday", "is_pro"]  # is_pro: pro_audience
DEMO_EVENTS = ["purchase", "signup", "newsletter_opt_in"]
DEMO_DAYS = 30  # the demo's rows were updated within the last 30 days; its run covers those partitions
# the run's progress and warnings on the console, without the DEBUG line of every Dagster event
CONSOLE_AT_INFO = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}


def demo_file(name: str) -> Traversable:
    """The demo's `syncs.yaml` or `dagster.yaml`, shipped inside the package."""
    return files("contentstack_assets") / "demo_project" / name


def demo_emulator_config() -> EmulatorConfig:
    """The emulator the demo spec expects: its project, attribute and event keys, and management token."""
    from contentstack_assets.personalize.emulator import EmulatorConfig

    return EmulatorConfig(
        project_uid=DEMO_PROJECT_UID,
        attributes=DEMO_ATTRIBUTES,
        events=DEMO_EVENTS,
        management_token=DEMO_MANAGEMENT_TOKEN,
        latency_ms=5,
    )


def demo_env(emulator_url: str) -> dict[str, str]:
    """The variables that point the demo spec at an emulator started with `demo_emulator_config`."""
    return {
        "PERSONALIZE_PROJECT_UID": DEMO_PROJECT_UID,
        "PERSONALIZE_EDGE_URL": emulator_url,
        "PERSONALIZE_MANAGEMENT_URL": emulator_url,
        "PERSONALIZE_MANAGEMENT_TOKEN": DEMO_MANAGEMENT_TOKEN,
    }


PLANS = ["free", "starter", "pro", "enterprise"]
FIRST = [
    "ada",
    "alan",
    "grace",
    "linus",
    "margaret",
    "ken",
    "barbara",
    "dennis",
    "radia",
    "tim",
    "frances",
    "guido",
]

# (description, column overrides): each bad row breaks one rule of the contract
BAD_ROWS: list[tuple[str, dict]] = [
    ("missing user uid", {"user_uid": None}),
    ("whitespace-only user uid", {"user_uid": "   "}),
    ("empty user uid", {"user_uid": ""}),
    ("non-ASCII user uid", {"user_uid": "usér_ñ_001"}),
    ("user uid over 256 characters", {"user_uid": "u" * 300}),
    ("duplicate user uid (1 of 2)", {"user_uid": "usr_duplicate"}),
    ("duplicate user uid (2 of 2)", {"user_uid": " usr_duplicate "}),
    ("lifetime value not a number", {"lifetime_value": "n/a"}),
    ("order count not an integer", {"order_count": 2.5}),
    ("order count above 2^53", {"order_count": 2**60}),
    ("vip flag not a boolean", {"is_vip": "maybe"}),
    ("signup time not a datetime", {"created_at": "yesterday"}),
    ("birthday not an ISO date", {"birth_date": "31/12/1990"}),
    ("lifetime value infinite", {"lifetime_value": "Infinity"}),
]


def _user(index: int, rng: random.Random, now: dt.datetime) -> dict:
    created = dt.datetime(2021, 1, 1) + dt.timedelta(seconds=rng.randrange(0, 3 * 365 * 86400))
    # recent updates: the demo's run covers the last DEMO_DAYS daily partitions
    updated = now - dt.timedelta(seconds=rng.randrange(0, DEMO_DAYS * 86400))
    plan = rng.choices(PLANS, weights=[50, 25, 20, 5])[0]
    orders = rng.randrange(0, 60) if plan != "free" else rng.randrange(0, 5)
    return {
        "user_uid": f"usr_{index:06d}",
        "email": f"{rng.choice(FIRST)}.{index}@example.com",
        "plan_name": plan,
        "lifetime_value": round(orders * rng.uniform(8, 120), 2) if rng.random() > 0.03 else None,
        "order_count": orders,
        "is_vip": rng.choice([0, 1, "yes", "no", "TRUE", "f"]) if rng.random() > 0.02 else None,
        "created_at": created.strftime("%Y-%m-%d %H:%M:%S"),
        "birth_date": (dt.date(1950, 1, 1) + dt.timedelta(days=rng.randrange(0, 55 * 365))).isoformat()
        if rng.random() > 0.1
        else None,
        "updated_at": updated.strftime("%Y-%m-%d %H:%M:%S"),
    }


def create_demo_database(path: Path = DEMO_DB, users: int = 3000, seed: int = 7) -> Path:
    """(Re)create the demo database: a `users` table, `purchases` and `identity_links` beside it."""
    rng = random.Random(seed)
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)
    rows = [_user(index, rng, now) for index in range(1, users + 1)]
    for offset, (_, overrides) in enumerate(BAD_ROWS):
        row = _user(users + offset + 1, rng, now)
        row.update(overrides)
        rows.append(row)
    with sqlite3.connect(path) as connection:
        connection.execute(
            "CREATE TABLE users (user_uid TEXT, email TEXT, plan_name TEXT, lifetime_value REAL, order_count INTEGER, "
            "is_vip, created_at TIMESTAMP, birth_date DATE, updated_at TIMESTAMP)"
        )
        connection.executemany(
            "INSERT INTO users VALUES (:user_uid, :email, :plan_name, :lifetime_value, :order_count, :is_vip, "
            ":created_at, :birth_date, :updated_at)",
            rows,
        )
        _create_events_and_identities(connection, rng, users, now)
    return path


def _create_events_and_identities(
    connection: sqlite3.Connection, rng: random.Random, users: int, now: dt.datetime
) -> None:
    connection.execute(
        "CREATE TABLE purchases (purchase_id TEXT, user_uid TEXT, event_name TEXT, purchased_at TIMESTAMP)"
    )
    purchases = []
    for number in range(1, users // 2 + 1):
        when = now - dt.timedelta(seconds=rng.randrange(0, DEMO_DAYS * 86400))
        purchases.append(
            (
                f"pur_{number:07d}",
                f"usr_{rng.randrange(1, users + 1):06d}",
                rng.choice(DEMO_EVENTS[:2]),
                when.strftime("%Y-%m-%d %H:%M:%S"),
            )
        )
    recent = (now - dt.timedelta(days=1)).strftime("%Y-%m-%d %H:%M:%S")
    purchases.append(("pur_bad_key", "usr_000001", "   ", recent))  # empty event key: rejected
    purchases.append((None, "usr_000002", "purchase", recent))  # null event id: rejected
    connection.executemany("INSERT INTO purchases VALUES (?, ?, ?, ?)", purchases)
    connection.execute("CREATE TABLE identity_links (anonymous_uid TEXT, user_uid TEXT)")
    links = [(f"anon_{index:06d}", f"usr_{index:06d}") for index in range(1, users // 10 + 1)]
    links.append(("usr_000005", "usr_000005"))  # a merge of a uid into itself: rejected
    connection.executemany("INSERT INTO identity_links VALUES (?, ?)", links)


def run_demo(database: Path) -> int:
    """Start the emulator, run every sync job of the demo spec on `database` once into DAGSTER_HOME, print
    what happened."""
    import dagster as dg

    from contentstack_assets.definitions import build_definitions
    from contentstack_assets.engine import state
    from contentstack_assets.personalize.emulator import start_emulator_process
    from contentstack_assets.spec import load_spec

    home = Path(os.environ["DAGSTER_HOME"])
    config = demo_emulator_config()
    with start_emulator_process(config) as emulator:
        print(f"emulator: {emulator.url} (project {DEMO_PROJECT_UID})")
        # the spec shipped with the package, whatever syncs.yaml the folder holds: only the demo's
        # own source and emulator, never a project's real ones
        os.environ.update(demo_env(emulator.url), SOURCE_DATABASE_URL=f"sqlite:///{database.resolve()}")
        with as_file(demo_file("syncs.yaml")) as spec_file:
            spec = load_spec(spec_file)
        with warnings.catch_warnings():  # `backfill_policy` is a beta parameter, chosen knowingly (README)
            warnings.simplefilter("ignore", dg.BetaWarning)
            defs = build_definitions(spec)
        instance = dg.DagsterInstance.get()
        failed = False
        first_day = (dt.datetime.now(dt.UTC) - dt.timedelta(days=DEMO_DAYS)).strftime("%Y-%m-%d")
        for sync in _in_dependency_order(spec.syncs):
            job = defs.resolve_job_def(f"{sync.name}_sync")
            tags = {}
            if job.partitions_def is not None:
                keys = [key for key in job.partitions_def.get_partition_keys() if key >= first_day]
                tags = {
                    "dagster/asset_partition_range_start": keys[0],
                    "dagster/asset_partition_range_end": keys[-1],
                }
            print(f"\n== {job.name} ({tags and f'partitions {keys[0]}...{keys[-1]}' or 'whole source'})")
            result = job.execute_in_process(
                instance=instance, tags=tags, raise_on_error=False, run_config=CONSOLE_AT_INFO
            )
            failed |= not result.success
            printed = set()  # a range run records one materialization per day, each with the run's `run_*`
            for event in result.get_asset_materialization_events():
                materialization = event.event_specific_data.materialization
                key = materialization.asset_key
                if key.path[-1].startswith("personalize_") and key not in printed:
                    printed.add(key)
                    _print_counts(materialization.metadata)
            _print_rejections(sync.name, result.run_id, state.StateStore())
        users = emulator.users()
        print(f"\nthe emulator now holds {len(users)} users; a few of them:")
        for uid in [uid for uid in sorted(users) if uid.startswith("usr_")][:5]:
            print(f"  {uid}: {users[uid]}")
        print(f"\nruns are recorded in {home} (in a checkout, `make dev` opens them in the Dagster UI)")
    return 1 if failed else 0


def _in_dependency_order(syncs: tuple) -> list:
    """Syncs named in `depends_on` first (merges before the users they feed)."""
    ordered: list = []
    remaining = list(syncs)
    while remaining:
        done = {sync.name for sync in ordered}
        ready = [sync for sync in remaining if set(sync.depends_on) <= done] or remaining[:1]
        ordered.extend(ready)
        remaining = [sync for sync in remaining if sync not in ready]
    return ordered


def _print_counts(metadata: dict) -> None:
    """The run's counts: those of its one materialization, or the `run_*` totals of a run over several days
    (each day's materialization holds that day's own counts)."""
    days = metadata.get("run_days")
    values = {key: value.value for key, value in metadata.items()}
    if days is not None:
        values = {key.removeprefix("run_"): value for key, value in values.items() if key.startswith("run_")}
    shown = [
        key
        for key in values
        if key.endswith(
            (
                "_read",
                "_rejected",
                "_changed",
                "_unchanged",
                "_delivered",
                "_cleared",
                "_failed",
                "_sent",
                "duration_s",
            )
        )
    ]
    over = f" (over {days.value} days)" if days is not None else ""
    print("  " + ", ".join(f"{key}={values[key]}" for key in shown) + over)


def _print_rejections(sync_name: str, run_id: str, store) -> None:  # noqa: ANN001
    import sqlalchemy as sa

    from contentstack_assets.engine.state import rejections

    with store.engine.connect() as connection:
        rows = connection.execute(
            sa.select(rejections.c.row_number, rejections.c.user_uid, rejections.c.reason)
            .where(rejections.c.sync == sync_name, rejections.c.run_id == run_id)
            .order_by(rejections.c.row_number)
        ).all()
    if rows:
        print(f"  rejected rows ({len(rows)}), kept in the sync state with their reasons:")
        for row_number, uid, reason in rows:
            print(f"    row {row_number} ({(uid or '')[:30]!r}): {reason}")


def prepare(folder: Path, users: int = 3000, keep_database: bool = False) -> Path:
    """The demo's folder: its database, a copy of its spec (unless a syncs.yaml is there) and DAGSTER_HOME
    (set to `.dagster_home` in it unless given) with the demo's dagster.yaml; returns the database."""
    database = folder / DEMO_DB
    if not (keep_database and database.exists()):
        create_demo_database(database, users=users)
        print(f"created {database}: {users} users and {len(BAD_ROWS)} deliberately bad rows")
    spec = folder / "syncs.yaml"
    if not spec.exists():
        spec.write_text(demo_file("syncs.yaml").read_text())
        print(f"wrote {spec}: the demo spec")
    home = Path(os.environ.setdefault("DAGSTER_HOME", str((folder / ".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(demo_file("dagster.yaml").read_text())
    return database


def main(argv: list[str] | None = None, prog: str = "python -m contentstack_assets.demo") -> int:
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(), help="the demo's folder (default: here)")
    parser.add_argument("--users", type=int, default=3000)
    parser.add_argument("--keep-database", action="store_true", help="reuse demo/users.db if it exists")
    parser.add_argument("--prepare", action="store_true", help="write the demo's folder, run nothing")
    parser.add_argument(
        "--print-env",
        metavar="EMULATOR_URL",
        nargs="?",
        const="http://127.0.0.1:8787",
        help="print the variables that point the demo spec at an emulator started with "
        "`contentstack-assets emulator --demo` (default http://127.0.0.1:8787), and exit",
    )
    args = parser.parse_args(argv)

    if args.print_env:
        for name, value in demo_env(args.print_env).items():
            print(f"{name}={value}")
        return 0
    try:
        database = prepare(args.dir, users=args.users, keep_database=args.keep_database)
    except OSError as error:
        parser.exit(1, f"{prog}: cannot write the demo's folder {args.dir.resolve()}: {error}\n")
    return 0 if args.prepare else run_demo(database)


if __name__ == "__main__":
    sys.exit(main())
