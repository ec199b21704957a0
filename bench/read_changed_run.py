"""The read step of an unchanged rerun alone: `read_changed` (engine/digests.py) on a state a kept scale run
left, with its wall time and the process's peak RSS (`ru_maxrss`).

    python bench/scale.py --databases postgres --sizes 10000000 --keep --no-append   # prints the work directory
    python bench/read_changed_run.py WORKDIR postgresql+psycopg://postgres@127.0.0.1:5432/cs_bench
    python bench/read_changed_run.py WORKDIR sqlite:///WORKDIR/state.db              # a DuckDB source's state

WORKDIR holds the run's `syncs.yaml`; the second argument is its state store (`CONTENTSTACK_STATE_URL` of
that run). The figures in docs/benchmarks.md, "The rerun by digests at 10M", come from this script.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

from contentstack_assets.engine import digests
from contentstack_assets.engine.state import StateStore
from contentstack_assets.spec import load_spec

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mib() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("workdir")
    parser.add_argument("state_url")
    args = parser.parse_args()
    sync = load_spec(os.path.join(args.workdir, "syncs.yaml")).get("users")
    store = StateStore(args.state_url)
    print(f"after imports: {rss_mib():.0f} MiB", flush=True)
    started = time.perf_counter()
    frame = digests.read_changed(sync, store, log=lambda line: print(line, flush=True))
    print(
        f"read_changed: {time.perf_counter() - started:.2f} s, {len(frame)} rows read whole, "
        f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB"
    )


if __name__ == "__main__":
    main()
