"""Merges syncs over real HTTP: each pair once ever, every rejection class, and merges before the users push."""

from __future__ import annotations

import functools
import random

import dagster as dg
import pandas as pd
import pytest
import requests
import sqlalchemy as sa

from contentstack_assets.definitions import build_definitions
from contentstack_assets.engine.merges import (
    MergeRequest,
    WaitingPair,
    hold_back,
    map_merges,
    merge_waves,
    pairs_into,
    stuck_waiting,
)
from contentstack_assets.engine.state import StateStore, rejections
from contentstack_assets.personalize.emulator import EmulatorConfig, run_emulator_in_thread
from contentstack_assets.spec import MergesSync, load_spec
from tests.helpers import (
    PROJECT_UID,
    dry_run_plan,
    fast_retries,
    push_metadata,
    run_job,
    users_sync,
    write_spec,
    write_sqlite_table,
)

LINK_COLUMNS = ["anonymous_uid", "user_uid"]


def merges_sync(url: str, edge_url: str, **overrides) -> dict:
    sync = {
        "name": "identities",
        "kind": "merges",
        "source": {"url": url, "table": "identity_links"},
        "destination": {"project_uid": PROJECT_UID, "edge_url": edge_url},
        "merge": {"source_column": "anonymous_uid", "target_column": "user_uid"},
        "concurrency": 4,
    }
    sync.update(overrides)
    return sync


def _links(tmp_path, pairs: list[tuple]) -> str:
    rows = [dict(zip(LINK_COLUMNS, pair, strict=True)) for pair in pairs]
    return write_sqlite_table(tmp_path / "src.db", rows, table="identity_links", columns=LINK_COLUMNS)


def _metadata(result) -> dict:
    return push_metadata(result, "identities", "personalize_merges")


def _merges(emulator) -> list[tuple[str, str]]:
    return [tuple(pair) for pair in emulator.stats()["merges"]]


def test_each_pair_once_and_every_rejection_class(tmp_path, emulator, instance):
    good = [("a1", "u1"), ("a1", "u1"), (" a2 ", "u2 ")]  # a repeated pair counts as one; uids trimmed
    bad = [
        (("u3", "u3"), "merge of a uid into itself"),
        ((" u3", "u3 "), "merge of a uid into itself"),
        (("a4", "u4"), "source uid appears with more than one target"),
        (("a4", "u5"), "source uid appears with more than one target"),  # every pair of that source
        ((None, "u6"), "anonymous_uid: missing user uid"),
        (("a7", "   "), "user_uid: missing user uid"),
        (("a8", "usér"), "user_uid: invalid user uid"),
    ]
    spec = write_spec(
        tmp_path / "syncs.yaml", [merges_sync(_links(tmp_path, good + [p for p, _ in bad]), emulator.url)]
    )

    dry = run_job(spec, "identities_dry_run", instance)  # the plan, observed; nothing merged or recorded
    assert dry.success and dry_run_plan(dry, "identities", "personalize_merges")["dry_run"] is True
    assert _merges(emulator) == []

    first = run_job(spec, "identities_sync", instance)
    assert first.success
    assert sorted(_merges(emulator)) == [("a1", "u1"), ("a2", "u2")]
    metadata = _metadata(first)
    assert metadata["rows_read"] == len(good) + len(bad) and metadata["rows_rejected"] == len(bad)
    assert metadata["merges_delivered"] == 2 and metadata["merges_failed"] == 0
    assert metadata["requests_sent"] == 2 and metadata["pairs_repeated"] == 1

    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with store.engine.connect() as connection:
        reasons = dict(
            connection.execute(
                sa.select(rejections.c.row_number, rejections.c.reason).where(
                    rejections.c.run_id == first.run_id
                )
            ).all()
        )
    for offset, (_, fragment) in enumerate(bad):
        assert fragment in reasons[len(good) + offset + 1]
    log = store.run_log("identities", first.run_id)
    assert sorted(zip(log["user_uid"], log["keys"], log["request"], strict=True)) == [
        ("u1", "a1", "merge"),
        ("u2", "a2", "merge"),
    ]

    rerun = run_job(spec, "identities_sync", instance)  # nothing is merged twice
    assert rerun.success
    assert _metadata(rerun)["requests_sent"] == 0 and _metadata(rerun)["merges_already_delivered"] == 2
    assert len(_merges(emulator)) == 2


def test_a_failed_merge_is_retried_by_the_next_run(tmp_path, emulator, instance):
    spec = write_spec(
        tmp_path / "syncs.yaml", [merges_sync(_links(tmp_path, [("a1", "u1"), ("a2", "u2")]), emulator.url)]
    )
    emulator.configure(faults={"500": 1.0})
    failed = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert not failed.success
    assert _metadata(failed)["merges_failed"] == 2 and _merges(emulator) == []

    emulator.configure(faults={})
    retried = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert retried.success and _metadata(retried)["merges_delivered"] == 2
    run_job(spec, "identities_sync", instance)
    assert sorted(_merges(emulator)) == [("a1", "u1"), ("a2", "u2")]


@pytest.mark.parametrize("partitioned", [False, True], ids=["unpartitioned_users", "partitioned_users"])
def test_merges_run_before_the_users_push_and_the_warehouse_wins(tmp_path, emulator, instance, partitioned):
    day = "2024-05-01"
    users = [
        dict(
            user_uid="u1",
            plan_name="gold",
            lifetime_value=12.5,
            order_count=3,
            is_vip=None,
            updated_at=f"{day} 10:00:00",
        ),
        dict(
            user_uid="u2",
            plan_name="free",
            lifetime_value=0,
            order_count=0,
            is_vip=0,
            updated_at=f"{day} 11:00:00",
        ),
    ]
    url = write_sqlite_table(tmp_path / "src.db", users)
    _links(tmp_path, [("anon1", "u1"), ("anon2", "u2")])
    # what the anonymous visitors collected on the site, before they signed in
    for uid, attributes in (("anon1", {"plan": "trial", "ltv": 1.0, "vip": True}), ("anon2", {"orders": 9})):
        response = requests.patch(
            f"{emulator.url}/user-attributes",
            json=attributes,
            headers={"x-project-uid": PROJECT_UID, "x-cs-personalize-user-uid": uid},
            timeout=5,
        )
        assert response.ok

    # named to sort after `users`: the in-process executor starts ready steps in name order, so only the
    # depends_on edge can put the merges first
    user_spec = users_sync(url, emulator.url, depends_on=["zz_links"])
    if partitioned:
        user_spec["source"].update(updated_at="updated_at", start_date="2024-01-01")
    spec = write_spec(tmp_path / "syncs.yaml", [user_spec, merges_sync(url, emulator.url, name="zz_links")])
    defs = build_definitions(load_spec(spec))

    graph = defs.resolve_asset_graph()
    users_push, merges_push = (
        dg.AssetKey(["users", "personalize_users"]),
        dg.AssetKey(["zz_links", "personalize_merges"]),
    )
    assert merges_push in graph.get(users_push).parent_keys  # the lineage shows the edge

    # The in-process executor starts ready steps in the order they became ready, by name within a level: in
    # one run of everything the merges push (two steps deep) is ready before the users push (three) and would
    # go first without the edge. So the users' frame is made first, and the run of both pushes starts with the
    # users push ready and first by name (`users` < `zz_links`): only the depends_on edge can hold it back.
    partition_key = day if partitioned else None
    upstream = [dg.AssetKey(["users", "source_users"]), dg.AssetKey(["users", "mapped_attributes"])]
    materialize = functools.partial(
        dg.materialize,
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        partition_key=partition_key,
    )
    assert materialize(selection=upstream).success
    result = materialize(selection=[users_push, dg.AssetKey(["zz_links", "source_merges"]), merges_push])
    assert result.success
    steps = [
        event.step_key for event in result.all_events if event.event_type == dg.DagsterEventType.STEP_START
    ]
    assert steps.index("zz_links__personalize_merges") < steps.index("users__personalize_users"), steps
    assert sorted(_merges(emulator)) == [("anon1", "u1"), ("anon2", "u2")]
    assert emulator.users()["u1"] == {
        "plan": "gold",
        "ltv": 12.5,
        "orders": 3,
        "vip": True,  # null in the warehouse: with `nulls: skip` the anonymous value stays (contract note)
    }
    assert emulator.users()["u2"] == {"plan": "free", "ltv": 0.0, "orders": 0, "vip": False}


def _patch(emulator, uid: str, attributes: dict) -> None:
    response = requests.patch(
        f"{emulator.url}/user-attributes",
        json=attributes,
        headers={"x-project-uid": PROJECT_UID, "x-cs-personalize-user-uid": uid},
        timeout=5,
    )
    assert response.ok


@pytest.mark.parametrize(
    ("partitioned", "shards"),
    [(False, 1), (True, 1), (True, 3)],
    ids=["unpartitioned_users", "partitioned_users", "partitioned_sharded_users"],
)
def test_a_user_synced_before_the_merge_is_resent_whole(tmp_path, emulator, instance, partitioned, shards):
    """u1 got its warehouse values in an earlier run; the merge of anon1 then gives it anon1's values (the
    source wins), and the users push of the same run must resend every attribute of u1, even when the run's
    day is not u1's (partitioned: u1 is read again from the source by uid)."""
    u1_day, run_day = "2024-05-01", "2024-05-02"
    users = [
        dict(
            user_uid="u1",
            plan_name="gold",
            lifetime_value=12.5,
            order_count=3,
            is_vip=None,
            updated_at=f"{u1_day} 10:00:00",
        ),
        dict(
            user_uid="u2", plan_name="free", lifetime_value=0, order_count=0, updated_at=f"{run_day} 09:00:00"
        ),
    ]
    url = write_sqlite_table(tmp_path / "src.db", users)
    _links(tmp_path, [("anon1", "u1")])
    user_spec = users_sync(url, emulator.url, depends_on=["identities"])
    if partitioned:
        user_spec["source"].update(updated_at="updated_at", start_date="2024-01-01")
    if shards > 1:
        user_spec["shards"] = shards
    spec = write_spec(tmp_path / "syncs.yaml", [user_spec, merges_sync(url, emulator.url)])
    defs = build_definitions(load_spec(spec))

    # run 1: the users sync alone (in the partitioned case, u1's day only)
    first = run_job(spec, "users_sync", instance, partition_range=(u1_day, u1_day) if partitioned else None)
    assert first.success and emulator.users()["u1"]["plan"] == "gold"
    # the visitor collected values on the site as anon1, then signed in as u1
    _patch(emulator, "anon1", {"plan": "trial", "ltv": 1.0, "vip": True})

    # run 2: merges and users together (partitioned: over a day that does not hold u1)
    second = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        partition_key=run_day if partitioned else None,
    )
    assert second.success
    assert _merges(emulator) == [("anon1", "u1")]
    assert emulator.users()["u1"] == {
        "plan": "gold",
        "ltv": 12.5,
        "orders": 3,
        "vip": True,
    }  # vip: null in the warehouse
    metadata = push_metadata(second)
    assert metadata["users_resent_after_merge"] == 1
    assert metadata["rows_reread"] == (1 if partitioned else 0)
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    sent = store.run_log("users", second.run_id)
    assert dict(zip(sent["user_uid"], sent["keys"], strict=True))["u1"] == "plan,ltv,orders"  # the full body
    assert metadata["requests_sent"] == (2 if partitioned else 1)  # (partitioned: u2 is new on its day)
    assert store.pending_resends("users") == {}
    assert store.user_state("users", "u1")["delivered"] == {"plan": "gold", "ltv": 12.5, "orders": 3}

    # run 3: nothing left to resend, nothing read again, nothing sent
    third = dg.materialize(
        list(defs.assets),
        instance=instance,
        resources=defs.resources,
        partition_key=run_day if partitioned else None,
    )
    assert third.success
    assert push_metadata(third)["requests_sent"] == 0 and push_metadata(third)["rows_reread"] == 0
    assert emulator.users()["u1"]["plan"] == "gold"


def test_a_mark_made_while_a_push_ran_is_kept_for_the_next_push(tmp_path):
    """A push settles only the marks it read; a merge of another run marking the user again meanwhile (or a
    failed delivery) keeps the mark, and the user's state is forgotten again by the next push."""
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.mark_for_resend("users", {"u1": "identities: anon1 -> u1", "u2": "identities: anon2 -> u2"})
    read = store.pending_resends("users")
    assert read == {"u1": 1, "u2": 1}
    store.mark_for_resend("users", {"u1": "identities: anon3 -> u1"})  # while the push runs
    store.settle_resends("users", read, regardless=["u1", "u2"])
    assert store.pending_resends("users") == {"u1": 2}
    # not delivered in the state (no row, or a failure since): the mark stays
    store.settle_resends("users", {"u1": 2})
    assert store.pending_resends("users") == {"u1": 2}


def _users_and_merges(tmp_path, users_edge: str, merges_edge: str, pairs: list[tuple], **merges_overrides):
    """A users sync that depends on a merges sync; each on its own emulator, so faults hit the merges only."""
    url = write_sqlite_table(
        tmp_path / "src.db", [dict(user_uid="u1", plan_name="gold"), dict(user_uid="u2", plan_name="free")]
    )
    _links(tmp_path, pairs)
    spec = write_spec(
        tmp_path / "syncs.yaml",
        [
            users_sync(url, users_edge, depends_on=["identities"]),
            merges_sync(url, merges_edge, concurrency=1, **merges_overrides),
        ],
    )
    return build_definitions(load_spec(spec), resources=fast_retries(0))


def _faults_drawn(seed: int, share: float, requests: int) -> int:
    draws = random.Random(seed)
    return sum(draws.random() < share for _ in range(requests))


def _merges_check(result) -> dg.AssetCheckEvaluation:
    [check] = [c for c in result.get_asset_check_evaluations() if c.asset_key.path[0] == "identities"]
    return check


def test_a_few_failed_merges_warn_and_the_users_push_still_runs(tmp_path, emulator, instance):
    """One pair in 40 fails (below max_failed_share 5%): the merges step warns instead of failing, so the users
    push of the same run still runs; the next run merges the pair and resends its target whole."""
    # the emulator draws one number per request from its seeded RNG: pick a seed that fails exactly one of
    # 40, and (one request at a time, in source order) put u1 at the place of that request
    seed = next(seed for seed in range(10_000) if _faults_drawn(seed, share=0.02, requests=40) == 1)
    draws = random.Random(seed)
    failing = next(index for index in range(40) if draws.random() < 0.02)
    pairs = [(f"anon{index}", "u1" if index == failing else f"k{index}") for index in range(40)]
    with run_emulator_in_thread(
        EmulatorConfig(project_uid=PROJECT_UID, faults={"500": 0.02}, seed=seed)
    ) as merges_api:
        defs = _users_and_merges(tmp_path, emulator.url, merges_api.url, pairs)
        first = dg.materialize(list(defs.assets), instance=instance, resources=defs.resources)
        assert first.success
        metadata = push_metadata(first, "identities", "personalize_merges")
        assert metadata["merges_failed"] == 1 and metadata["merges_delivered"] == 39
        check = _merges_check(first)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert check.metadata["failed_share"].value == 0.025
        assert emulator.users() == {"u1": {"plan": "gold"}, "u2": {"plan": "free"}}  # the users push ran
        assert set(pairs) - {tuple(p) for p in merges_api.stats()["merges"]} == {(f"anon{failing}", "u1")}

        merges_api.configure(faults={})
        second = dg.materialize(list(defs.assets), instance=instance, resources=defs.resources)
        assert second.success
        assert push_metadata(second, "identities", "personalize_merges")["merges_delivered"] == 1
        assert (f"anon{failing}", "u1") in {tuple(p) for p in merges_api.stats()["merges"]}
        assert push_metadata(second)["users_resent_after_merge"] == 1  # merged late, then resent whole


def test_a_pair_refused_run_after_run_stops_holding_up_the_run_once_stuck(tmp_path, emulator, instance):
    with run_emulator_in_thread(EmulatorConfig(project_uid=PROJECT_UID, faults={"500": 1.0})) as merges_api:
        defs = _users_and_merges(
            tmp_path, emulator.url, merges_api.url, [("anon1", "u1")], stuck_after_runs=2
        )
        first = dg.materialize(
            list(defs.assets), instance=instance, resources=defs.resources, raise_on_error=False
        )
        assert not first.success  # every pair tried failed: the destination may be the problem
        assert _merges_check(first).severity == dg.AssetCheckSeverity.ERROR
        assert not first.is_node_success("users__personalize_users") and emulator.users() == {}

        second = dg.materialize(list(defs.assets), instance=instance, resources=defs.resources)
        assert (
            second.success
        )  # the pair failed in 2 runs now: stuck, reported, retried, not holding up the run
        metadata = push_metadata(second, "identities", "personalize_merges")
        assert metadata["merges_failed"] == 1 and metadata["merges_stuck"] == 1
        check = _merges_check(second)
        assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
        assert emulator.users() == {"u1": {"plan": "gold"}, "u2": {"plan": "free"}}


# -- chains: a pair waits for the pairs into its source uid ------------------------------------------------
def _post_event(emulator, uid: str, key: str) -> None:
    response = requests.post(
        f"{emulator.url}/events",
        json=[{"eventKey": key, "type": "EVENT"}],
        headers={"x-project-uid": PROJECT_UID, "x-cs-personalize-user-uid": uid},
        timeout=5,
    )
    assert response.ok


def _chain_spec(tmp_path, emulator, pairs: list[tuple], **overrides):
    return write_spec(
        tmp_path / "syncs.yaml",
        [merges_sync(_links(tmp_path, pairs), emulator.url, concurrency=1, **overrides)],
    )


def _fail_the_first_request_only(emulator) -> None:
    """Faults on half the requests, seeded so that the first fails and the second (one at a time) passes."""
    seed = next(s for s in range(1000) if (draws := random.Random(s)).random() < 0.5 <= draws.random())
    emulator.configure(faults={"500": 0.5}, seed=seed)


def test_a_pair_waits_while_the_pair_into_its_source_failed(tmp_path, emulator, instance):
    """a -> b fails: b -> c is held back (not sent), counted and reported with the pair it waits for; the
    unrelated x -> y of the same wave is merged."""
    spec = _chain_spec(tmp_path, emulator, [("b", "c"), ("a", "b"), ("x", "y")])
    _fail_the_first_request_only(emulator)  # a -> b, then x -> y
    first = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert _merges(emulator) == [("x", "y")]  # b -> c not sent
    metadata = _metadata(first)
    assert metadata["merges_failed"] == 1 and metadata["merges_delivered"] == 1
    assert metadata["merges_waiting"] == 1 and metadata["requests_sent"] == 2
    assert "| b | c | waits for a -> b (failed) |" in metadata["waiting"]
    [failure] = [e for e in first.all_events if e.event_type == dg.DagsterEventType.STEP_FAILURE]
    message = failure.step_failure_data.error.message
    assert "1 pairs wait for a pair into their source uid not merged yet" in message
    assert "b -> c waits for a -> b (failed)" in message and "Traceback" not in message


def test_the_waiting_pair_goes_in_the_run_that_merges_its_feeder(tmp_path, emulator, instance):
    """Run 2 merges a -> b, then b -> c in a later wave of the same run: c ends with a's values and events."""
    _patch(emulator, "a", {"from_a": "a", "plan": "anonymous"})
    _patch(emulator, "b", {"from_b": "b"})
    _patch(emulator, "c", {"plan": "gold"})
    _post_event(emulator, "a", "viewed")
    spec = _chain_spec(tmp_path, emulator, [("a", "b"), ("b", "c")])
    _fail_the_first_request_only(emulator)  # a -> b; b -> c would pass if it were sent
    first = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert _merges(emulator) == [] and _metadata(first)["merges_waiting"] == 1

    emulator.configure(faults={})
    second = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert second.success
    assert _merges(emulator) == [("a", "b"), ("b", "c")]
    metadata = _metadata(second)
    assert metadata["merges_delivered"] == 2 and metadata["merges_waiting"] == 0
    c = emulator.user("c")
    assert c["attributes"] == {"from_a": "a", "from_b": "b", "plan": "anonymous"}  # the source wins
    assert [event["eventKey"] for event in c["events"]] == ["viewed"]
    assert _metadata(run_job(spec, "identities_sync", instance))["requests_sent"] == 0


def test_a_cycle_waits_as_one_for_the_pairs_into_it_and_is_never_deadlocked(tmp_path, emulator, instance):
    """z -> a feeds the cycle a -> b, b -> a. While z -> a fails the whole cycle waits; once it is merged, the
    cycle's pairs go together in the last wave (they do not wait for one another: one has to go first). A
    self-link is a rejected row and holds nothing back."""
    spec = _chain_spec(tmp_path, emulator, [("a", "b"), ("b", "a"), ("z", "a"), ("s", "s"), ("t", "s")])
    emulator.configure(faults={"500": 1.0})
    first = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    metadata = _metadata(first)
    assert metadata["rows_rejected"] == 1 and metadata["requests_sent"] == 2  # z -> a and t -> s
    assert metadata["merges_failed"] == 2 and metadata["merges_waiting"] == 2
    assert "| a | b | waits for z -> a (failed) |" in metadata["waiting"]
    assert "| b | a | waits for a -> b (waiting) |" in metadata["waiting"]

    emulator.configure(faults={})
    second = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert second.success and _metadata(second)["merges_delivered"] == 4
    merged = _merges(emulator)
    assert set(merged[:2]) == {("z", "a"), ("t", "s")} and set(merged[2:]) == {("a", "b"), ("b", "a")}


def test_a_pair_waiting_on_a_stuck_pair_is_stuck_too(tmp_path, emulator, instance):
    """a -> b fails run after run (stuck_after_runs 2): b -> c and c -> d wait, and are reported stuck with it
    from the second run on; being stuck, none of them holds up the run any more."""
    spec = _chain_spec(tmp_path, emulator, [("a", "b"), ("b", "c"), ("c", "d")], stuck_after_runs=2)
    emulator.configure(faults={"500": 1.0})
    first = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert not first.success
    metadata = _metadata(first)
    assert metadata["merges_waiting"] == 2 and metadata["merges_stuck"] == 0
    assert "| c | d | waits for b -> c (waiting) |" in metadata["waiting"]

    second = run_job(spec, "identities_sync", instance, resources=fast_retries(0))
    assert second.success
    metadata = _metadata(second)
    assert metadata["merges_failed"] == 1 and metadata["merges_waiting"] == 2
    assert metadata["merges_stuck"] == 3 and metadata["requests_sent"] == 1
    assert _merges(emulator) == []


# -- the engine alone --------------------------------------------------------------------------------------
def test_chains_are_merged_in_order_and_cycles_last():
    requests_ = [
        MergeRequest("b", "c"),
        MergeRequest("a", "b"),
        MergeRequest("x", "y"),
        MergeRequest("p", "q"),
        MergeRequest("q", "p"),
    ]
    waves = merge_waves(requests_)
    assert [[(r.source_uid, r.target_uid) for r in wave] for wave in waves] == [
        [("a", "b"), ("x", "y")],
        [("b", "c")],
        [("p", "q"), ("q", "p")],
    ]


def test_hold_back_follows_chains_and_cycles_and_stuck_spreads_down_them():
    a_b, b_c, c_d, x_b = (
        MergeRequest("a", "b"),
        MergeRequest("b", "c"),
        MergeRequest("c", "d"),
        MergeRequest("x", "b"),
    )
    p_q, q_p, z_p, s_s = (
        MergeRequest("p", "q"),
        MergeRequest("q", "p"),
        MergeRequest("z", "p"),
        MergeRequest("s", "s"),
    )
    into = pairs_into([a_b, b_c, c_d, x_b, p_q, q_p, z_p, s_s])
    unmerged = {a_b.item_id: "failed", x_b.item_id: "failed"}
    ready, waiting = hold_back([b_c], into, unmerged)
    assert ready == [] and [pair.reason for pair in waiting] == ["waits for a -> b (failed)"]
    unmerged[b_c.item_id] = "waiting"
    assert [pair.reason for pair in hold_back([c_d], into, unmerged)[1]] == ["waits for b -> c (waiting)"]
    # a cycle is sent whole unless a pair into it is not merged; a self-pair is a cycle of one, never held by itself
    assert hold_back([p_q, q_p, s_s], into, {}) == ([p_q, q_p, s_s], [])
    ready, waiting = hold_back([p_q, q_p, s_s], into, {z_p.item_id: "failed"})
    assert ready == [s_s] and [(w.request, w.why) for w in waiting] == [(p_q, "failed"), (q_p, "waiting")]
    # stuck: any feeder stuck (x -> b, though a -> b is not), and down the chain
    held = [WaitingPair(b_c, a_b, "failed"), WaitingPair(c_d, b_c, "waiting")]
    assert stuck_waiting(held, {x_b.item_id}, into) == {b_c.item_id, c_d.item_id}
    assert stuck_waiting(held, set(), into) == set()


def test_numeric_uids_and_an_ambiguous_self_merge():
    sync = MergesSync.model_validate(
        {
            "name": "m",
            "kind": "merges",
            "source": {"url": "sqlite://", "table": "t"},
            "destination": {"project_uid": PROJECT_UID, "edge_url": "http://127.0.0.1:1"},
            "merge": {"source_column": "s", "target_column": "t"},
        }
    )
    raw = pd.DataFrame({"s": [101, 7.0, "x", "x"], "t": ["u1", 8, "x", "y"]}, dtype=object)
    frame = map_merges(raw, sync)
    assert list(frame["source_uid"][:2]) == ["101", "7"] and list(frame["target_uid"][:2]) == ["u1", "8"]
    assert frame["_rejection"][:2].isna().all()
    assert "merge of a uid into itself" in frame["_rejection"][2]
    assert frame["_rejection"][3] == "source uid appears with more than one target"
