"""How a sync's assets are named and labelled: keys, group, owners, tags, automation, upstream assets.

Every asset key of a sync comes from `asset_key` (`[*key_prefix, N, name]`): the assets, their checks, the
job's selection, the push key the schedule and sensor look up, and `depends_on` edges.
"""

import dagster as dg

from contentstack_assets.spec import Sync, SyncsSpec

PUSH_ASSETS = {"users": "personalize_users", "events": "personalize_events", "merges": "personalize_merges"}


def asset_key(sync: Sync, name: str) -> dg.AssetKey:
    """The key of the sync's asset `name` (`source_users`, `personalize_users`, ...)."""
    return dg.AssetKey([*sync.key_prefix, sync.name, name])


def push_asset_key(spec: SyncsSpec, name: str) -> dg.AssetKey:
    """The asset whose completion a `depends_on` waits for (the push asset of that sync)."""
    sync = spec.get(name)
    return asset_key(sync, PUSH_ASSETS[sync.kind])


def source_deps(sync: Sync) -> list[dg.AssetKey]:
    """The upstream assets of the source asset (`source.deps`, slash form); unknown ones show as external."""
    return [dg.AssetKey.from_user_string(dep) for dep in sync.source.deps]


def automation_condition(sync: Sync) -> dg.AutomationCondition | None:
    """`automation: eager` or `{on_cron: CRON}` (UTC). For daily-partitioned syncs both conditions target
    the latest time partition only (today's), as Dagster defines them; older days are the schedule's,
    the sensor's and the reconciliation's."""
    if sync.automation is None:
        return None
    if sync.automation.eager:
        return dg.AutomationCondition.eager()
    return dg.AutomationCondition.on_cron(sync.automation.on_cron, cron_timezone="UTC")


def asset_labels(sync: Sync) -> dict:
    """The keyword arguments every asset of the sync shares: group, owners, tags, automation condition."""
    return {
        "group_name": sync.group or sync.name,
        "owners": list(sync.owners),
        "tags": dict(sync.tags),
        "automation_condition": automation_condition(sync),
    }
