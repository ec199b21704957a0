"""What loading the component costs: a dg project whose `defs.yaml` holds 20 syncs, against Dagster itself.

    python bench/component_load.py [--syncs 20] [--repeat 5]

Each figure is the median wall time of `--repeat` fresh Python processes (imports are never warm in-process):
- `import dagster`: loading Dagster itself;
- an empty defs folder: `dg.ComponentTree.from_module(...).build_defs()` of a project with nothing in it
  (Dagster's component machinery, which also imports every package registered under the
  `dagster_dg_cli.registry_modules` entry point: this one, dagster, and dagster-dbt when it is installed);
- the component: the same project with one `defs.yaml` of `--syncs` users syncs (partitioned, each with a
  schedule), definitions built and every job resolved, as a code server does;
- the same syncs from Python: `build_definitions(load_spec(...))`, no dg machinery (this package's own cost).

The issue's bound: the component at most 2 s more than `import dagster`. It appends the table, with the
machine and the command, to docs/benchmarks.md (`--no-append`: print only).
"""

from __future__ import annotations

import argparse
import datetime as dt
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run_all import append_to_doc, machine  # noqa: E402

BOUND_S = 2.0

_LOAD = """
import importlib, sys
from pathlib import Path
import dagster as dg
sys.path.insert(0, {root!r})
tree = dg.ComponentTree.from_module(defs_module=importlib.import_module("bench_project.defs"), project_root=Path({root!r}))
defs = tree.build_defs()
for job in defs.resolve_all_job_defs():
    pass
"""

_PYTHON = """
from contentstack_assets import build_definitions, load_spec
defs = build_definitions(load_spec({spec!r}))
for job in defs.resolve_all_job_defs():
    pass
"""


def _project(root: Path, syncs: int) -> None:
    defs = root / "bench_project" / "defs"
    defs.mkdir(parents=True)
    (root / "bench_project" / "__init__.py").write_text("")
    (defs / "__init__.py").write_text("")
    if not syncs:
        return
    spec = [
        {
            "name": f"users_{index:02d}",
            "source": {
                "url": f"sqlite:///{root}/warehouse.db",
                "table": "dim_users",
                "updated_at": "updated_at",
                "start_date": "2024-01-01",
                "deps": [f"analytics/dim_users_{index:02d}"],
            },
            "destination": {"project_uid": "bench", "edge_url": "http://127.0.0.1:9"},
            "match": {"column": "user_uid"},
            "attributes": {
                "plan": {"column": "plan_name", "type": "string"},
                "ltv": {"column": "lifetime_value", "type": "number"},
                "signup_at": {"column": "created_at", "type": "datetime"},
            },
            "schedule": "0 * * * *",
        }
        for index in range(syncs)
    ]
    (defs / "personalize").mkdir()
    (defs / "personalize" / "defs.yaml").write_text(
        yaml.safe_dump(
            {"type": "contentstack_assets.PersonalizeSyncsComponent", "attributes": {"syncs": spec}}
        )
    )


def _median_s(code: str, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--syncs", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-append", action="store_true", help="print only; leave docs/benchmarks.md alone")
    args = parser.parse_args()
    info = machine()
    figures = {
        "python alone": _median_s("pass", args.repeat),
        "import dagster": _median_s("import dagster", args.repeat),
    }
    figures["import dagster_dbt (a registered package)"] = _median_s("import dagster_dbt", args.repeat)
    for label, syncs in (("empty defs folder", 0), (f"component, {args.syncs} syncs", args.syncs)):
        with tempfile.TemporaryDirectory() as root:
            _project(Path(root), syncs)
            figures[label] = _median_s(_LOAD.format(root=root), args.repeat)
            if syncs:
                spec = yaml.safe_load((Path(root) / "bench_project/defs/personalize/defs.yaml").read_text())
                (Path(root) / "syncs.yaml").write_text(yaml.safe_dump(spec["attributes"]))
                figures[f"the same {syncs} syncs from Python (no dg)"] = _median_s(
                    _PYTHON.format(spec=f"{root}/syncs.yaml"), args.repeat
                )
    component = figures[f"component, {args.syncs} syncs"]
    over_dagster = component - figures["import dagster"]
    over_folder = component - figures["empty defs folder"]
    own = figures[f"the same {args.syncs} syncs from Python (no dg)"] - figures["import dagster"]
    for label, seconds in figures.items():
        print(f"{label}: {seconds:.2f} s")
    print(
        f"component over import dagster: {over_dagster:.2f} s; over an empty defs folder: {over_folder:.2f} s"
    )
    table = [
        f"### Component load, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "",
        f"- command: `{shlex.join(['python', 'bench/component_load.py', *sys.argv[1:]])}`",
        f"- machine: {info['nproc']} cores, {info['memory_gib']} GiB, {info['cpu']}; load average at start "
        f"{info['load_average_at_start']}",
        f"- median of {args.repeat} fresh processes each",
        "",
        "| what is loaded | wall time, s |",
        "|---|---:|",
        *(f"| {label} | {seconds:.2f} |" for label, seconds in figures.items()),
        "",
        f"The component with {args.syncs} syncs through dg: **{over_dagster:.2f} s over `import dagster`** "
        f"(bound {BOUND_S:.0f} s: {'met' if over_dagster <= BOUND_S else 'missed'}), {over_folder:+.2f} s over "
        "an empty defs folder: dg's load of any project imports every package registered under "
        "`dagster_dg_cli.registry_modules` (here dagster-dbt too), whatever the defs folder holds. This "
        f"package's own part, the same syncs built from Python: **{own:.2f} s over `import dagster`** "
        f"({'within' if own <= BOUND_S else 'past'} the bound).",
    ]
    if not args.no_append:
        append_to_doc("\n".join(table) + "\n")
        print("appended to docs/benchmarks.md")


if __name__ == "__main__":
    main()
