"""Run one sync job as a real, separate process: what the crash tests SIGKILL.

    python tests/sync_process.py SPEC_PATH [--job users_sync] [--run-config JSON]

The job runs exactly as the code location defines it (`build_definitions(load_spec(SPEC_PATH))`), in
process, on an ephemeral Dagster instance; the sync state store and the frames directory come from the
environment as for any run (`CONTENTSTACK_STATE_URL`, `DAGSTER_HOME`). Dagster's console log goes to
stderr, line by line, so a parent can follow the run's phases. Exit status: 0 when the run succeeded,
1 when it failed.
"""

import argparse
import json
import sys
from pathlib import Path

# runnable as a script from anywhere: the checkout that holds this file comes first on the path
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import dagster as dg  # noqa: E402

from contentstack_assets.definitions import build_definitions  # noqa: E402
from contentstack_assets.spec import load_spec  # noqa: E402

READY_LINE = "sync_process: definitions loaded"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tests/sync_process.py", description=__doc__.splitlines()[0])
    parser.add_argument("spec", type=Path, help="the sync spec (syncs.yaml)")
    parser.add_argument("--job", default="users_sync", help="the job to run (default: users_sync)")
    parser.add_argument("--run-config", default="{}", help="run config as JSON")
    args = parser.parse_args(argv)

    job = build_definitions(load_spec(args.spec)).resolve_job_def(args.job)
    print(READY_LINE, file=sys.stderr, flush=True)
    result = job.execute_in_process(
        instance=dg.DagsterInstance.ephemeral(), run_config=json.loads(args.run_config), raise_on_error=False
    )
    outcome = "succeeded" if result.success else "failed"
    print(f"sync_process: run {result.run_id} {outcome}", file=sys.stderr, flush=True)
    return 0 if result.success else 1


if __name__ == "__main__":
    sys.exit(main())
