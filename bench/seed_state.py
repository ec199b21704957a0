"""Profiling aid: write the sync state a completed first sync would leave, without sending anything.

A first sync of a million users at 20 ms per request takes a quarter of an hour; profiling the reruns does
not need one. This reads and maps the source with the engine, and records every valid user as delivered
(its wire values and fingerprint) through the state store's own `record_user_outcomes`. `run_all.py` never
uses it: its figures come from real first syncs.

    CONTENTSTACK_STATE_URL=... python bench/seed_state.py --spec SPEC
"""

from __future__ import annotations

import argparse
import time

from contentstack_assets.engine.mapping import map_users, source_columns, valid_rows
from contentstack_assets.engine.plan import plan_users, spec_salt
from contentstack_assets.engine.source import SourceReader
from contentstack_assets.engine.state import StateStore, UserOutcome
from contentstack_assets.spec import load_spec


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--spec", required=True)
    parser.add_argument("--sync", default="users")
    args = parser.parse_args()
    started = time.perf_counter()
    sync = load_spec(args.spec).get(args.sync)
    store = StateStore()
    valid = valid_rows(map_users(SourceReader(sync.source, source_columns(sync)).read(), sync))
    empty = store.load_fingerprints(sync.name).iloc[:0]
    plan = plan_users(
        valid,
        empty,
        keys=list(sync.attributes),
        nulls=sync.nulls,
        full_resync=True,
        load_delivered=lambda _: {},
        salt=spec_salt(sync),
    )
    batch: list[UserOutcome] = []
    written = 0
    for request in plan.requests(chunk_size=20_000):
        batch.append(
            UserOutcome(
                request.user_uid,
                request.keys,
                True,
                200,
                1,
                20.0,
                None,
                request.delivered_after,
                request.fingerprint,
            )
        )
        if len(batch) == 20_000:
            store.record_user_outcomes(sync.name, "seeded", batch)
            written += len(batch)
            batch = []
    store.record_user_outcomes(sync.name, "seeded", batch)
    written += len(batch)
    print(f"seeded {written} users in {time.perf_counter() - started:.1f}s into {store}")


if __name__ == "__main__":
    main()
