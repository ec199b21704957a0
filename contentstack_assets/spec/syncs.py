"""The three kinds of sync (users, events, merges), the settings they share (schedule, automation, keys,
owners, tags, reconciliation) and the whole spec: its syncs, names unique, `depends_on` acyclic.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from contentstack_assets.spec.models import (
    KEY_PART,
    AttributeSpec,
    AutomationSpec,
    DestinationSpec,
    MatchSpec,
    SourceSpec,
    _Model,
    _valid_cron,
)
from contentstack_assets.wire import UID, is_reserved_key

DEFAULT_RECONCILE = "0 3 * * *"  # a partitioned sync's whole read, daily at 03:00 UTC
SYNC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")

TAG_TEXT = re.compile(r"^[\w.-]{0,63}$")
TAG_KEY = re.compile(r"^([\w.-]{1,63}/)?[\w.-]{1,63}$")


class _SyncBase(_Model):
    name: str
    source: SourceSpec
    destination: DestinationSpec
    schedule: str | None = None
    automation: AutomationSpec | None = Field(
        None,
        description="the Dagster AutomationCondition of the sync's assets: eager, or {on_cron: CRON}; not "
        "with `schedule`",
    )
    key_prefix: tuple[str, ...] = Field((), description="asset key parts before the sync's name")
    group: str | None = Field(None, description="the assets' group (default: the sync's name)")
    owners: tuple[str, ...] = ()
    tags: dict[str, str] = {}
    concurrency: int = Field(16, ge=1, le=512)
    depends_on: tuple[str, ...] = ()
    max_failed_share: float = Field(
        0.05, ge=0, le=1, description="share of failed users above which the delivery check is an error"
    )
    stuck_after_runs: int = Field(3, ge=1, description="failed runs after which a user is reported as stuck")
    log_retention_days: int = Field(30, ge=0)
    renamed_from: str | None = Field(
        None, description="the sync's former name: its state (what each user holds, events sent) carries over"
    )
    reconcile: str | Literal[False] | None = Field(
        None,
        description=(
            "cron (UTC) of a run over every day of a partitioned sync, diffed against the state (default "
            f"'{DEFAULT_RECONCILE}'); false: none"
        ),
    )

    @field_validator("key_prefix", mode="before")
    @classmethod
    def _split_key_prefix(cls, prefix: Any) -> Any:
        return tuple(prefix.split("/")) if isinstance(prefix, str) else prefix

    @field_validator("key_prefix")
    @classmethod
    def _check_key_prefix(cls, prefix: tuple[str, ...]) -> tuple[str, ...]:
        if not all(KEY_PART.match(part) for part in prefix):
            raise ValueError("asset key parts are letters, digits and _ (e.g. [personalize] or 'a/b')")
        return prefix

    @field_validator("group")
    @classmethod
    def _check_group(cls, group: str | None) -> str | None:
        if group is not None and not KEY_PART.match(group):
            raise ValueError("a Dagster group name is letters, digits and _")
        return group

    @field_validator("owners")
    @classmethod
    def _check_owners(cls, owners: tuple[str, ...]) -> tuple[str, ...]:
        # Dagster is the judge of what it accepts: its public AssetSpec checks each owner
        import dagster as dg

        for owner in owners:
            try:
                dg.AssetSpec(key="owner_check", owners=[owner])
            except dg.DagsterInvalidDefinitionError:
                raise ValueError(f"{owner!r} is not an owner: give an email address or 'team:NAME'") from None
        return owners

    @field_validator("tags")
    @classmethod
    def _check_tags(cls, tags: dict[str, str]) -> dict[str, str]:
        for key, value in tags.items():
            if not TAG_KEY.match(key) or not TAG_TEXT.match(value):
                raise ValueError(
                    f"tag {key}: {value!r}: keys and values are up to 63 letters, digits, _, - or . "
                    "(a key may have one 'prefix/')"
                )
        return tags

    @model_validator(mode="after")
    def _check_automation(self) -> _SyncBase:
        if self.automation is not None and self.schedule:
            raise ValueError(
                "give `automation` or `schedule`, not both: `automation` lets Dagster's automation sensor "
                "start the sync's assets, `schedule` starts its job on a cron"
            )
        return self

    @field_validator("name", "renamed_from")
    @classmethod
    def _check_name(cls, name: str | None) -> str | None:
        if name is not None and not SYNC_NAME.match(name):
            raise ValueError("must match [a-z][a-z0-9_]* (it prefixes every asset key of the sync)")
        return name

    @property
    def reconcile_cron(self) -> str | None:
        """The reconciliation's cron: the spec's, else the default for a partitioned sync, else none."""
        if self.reconcile is False or not self.source.partition_column:
            return None
        return self.reconcile or DEFAULT_RECONCILE

    @model_validator(mode="after")
    def _check_reconcile(self) -> _SyncBase:
        if isinstance(self.reconcile, str) and not self.source.partition_column:
            raise ValueError(
                "`reconcile` is for partitioned syncs (with `source.updated_at`/`occurred_at`): an "
                "unpartitioned sync reads the whole source every run"
            )
        return self

    @field_validator("schedule", "reconcile")
    @classmethod
    def _check_cron(cls, cron: str | None) -> str | None:
        return _valid_cron(cron) if isinstance(cron, str) else cron


class UsersSync(_SyncBase):
    """A users sync: the match column's users and their attributes, each change sent once (`kind: users`)."""

    kind: Literal["users"] = "users"
    match: MatchSpec
    attributes: dict[str, AttributeSpec] = Field(min_length=1)
    nulls: Literal["skip", "send"] = "skip"
    max_rejected_share: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of rejected rows above which contentstack_check_alerts posts (rows_valid warns on any)",
    )
    min_source_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="stop when an unpartitioned read returns fewer rows than this share of the last run's",
    )
    shards: int = Field(1, ge=1, le=256)
    on_delete: Literal["keep", "clear"] = Field(
        "keep",
        description="a user delivered to before and on no row of a run that read the whole source: keep what "
        "they hold, or clear it (one PATCH setting to null exactly the keys this sync sent them; then "
        "forgotten). A partitioned sync clears in its runs over every day (`reconcile`)",
    )
    max_clear_share: float = Field(
        0.2,
        ge=0,
        le=1,
        description="with on_delete: clear, stop (nothing sent) when a run would clear more than this share of "
        "the users in the sync state; `allow_clear: true` in the run config lets one run through",
    )

    @field_validator("attributes")
    @classmethod
    def _check_attribute_keys(cls, attributes: dict[str, AttributeSpec]) -> dict[str, AttributeSpec]:
        # the mapped frame holds the attributes beside the uid and the engine's own `_`-prefixed columns:
        # such a key would overwrite one of them and send data under the wrong user
        for key in attributes:
            if is_reserved_key(key):
                raise ValueError(
                    f"attribute key {key!r} is reserved ({UID!r} and keys starting with '_' name the "
                    "sync's own columns): rename the attribute"
                )
        return attributes

    @model_validator(mode="after")
    def _check_source(self) -> UsersSync:
        if self.source.occurred_at:
            raise ValueError("`source.occurred_at` belongs to events syncs; users syncs use `updated_at`")
        return self


class EventSpec(_Model):
    id_column: str = Field(min_length=1)
    key_column: str | None = None
    key: str | None = None
    # a request whose answer was lost after it went out may have been counted: send it again (it may count
    # twice), or never again (it may not count at all); either way the run reports `events_unconfirmed`
    unconfirmed: Literal["resend", "skip"] = "resend"

    @model_validator(mode="after")
    def _one_key(self) -> EventSpec:
        if (self.key_column is None) == (self.key is None):
            raise ValueError("give exactly one of `key_column` or `key`")
        if self.key is not None and not self.key.strip():
            raise ValueError("`key` is blank: every event would be rejected as 'empty event key'")
        return self


class EventsSync(_SyncBase):
    """An events sync: each event id of the source delivered once (`kind: events`)."""

    kind: Literal["events"]
    match: MatchSpec
    event: EventSpec

    @model_validator(mode="after")
    def _check_source(self) -> EventsSync:
        if self.source.updated_at:
            raise ValueError("events syncs partition on `source.occurred_at`, not `updated_at`")
        return self

    @model_validator(mode="after")
    def _check_create_missing(self) -> EventsSync:
        if self.destination.create_missing and self.event.key is None:
            raise ValueError(
                "`destination.create_missing` creates a fixed `event.key`; with `event.key_column` the keys come "
                "from the rows and are not created (rows with an unknown key are set aside): create those events "
                "in Personalize, or use `event.key`, or remove `create_missing`"
            )
        return self


class MergeSpec(_Model):
    source_column: str = Field(min_length=1)
    target_column: str = Field(min_length=1)


class MergesSync(_SyncBase):
    """A merges sync: anonymous uids merged into known users, each pair once (`kind: merges`)."""

    kind: Literal["merges"]
    merge: MergeSpec

    @model_validator(mode="after")
    def _check_source(self) -> MergesSync:
        if self.source.partition_column:
            raise ValueError("merges syncs read the whole identity table; they take no partition column")
        return self

    @model_validator(mode="after")
    def _check_create_missing(self) -> MergesSync:
        if self.destination.create_missing:
            raise ValueError(
                "`destination.create_missing` is for users and events syncs: a merge needs no attribute or "
                "event; remove it"
            )
        return self


Sync = Annotated[
    Annotated[UsersSync, Tag("users")]
    | Annotated[EventsSync, Tag("events")]
    | Annotated[MergesSync, Tag("merges")],
    Discriminator(
        lambda value: value.get("kind", "users") if isinstance(value, dict) else getattr(value, "kind", None),
        custom_error_type="sync_not_a_mapping",
        custom_error_message="each sync must be a mapping with `name`, `source`, `destination`, ...",
    ),
]


class SyncsSpec(_Model):
    """The whole spec: its syncs (names unique, `depends_on` acyclic) and the file it came from."""

    syncs: tuple[Sync, ...] = Field(min_length=1)
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _check_names(self) -> SyncsSpec:
        names = [sync.name for sync in self.syncs]
        for sync in self.syncs:
            if sync.renamed_from in names:
                raise ValueError(
                    f"sync {sync.name!r}: renamed_from names {sync.renamed_from!r}, which is still a sync of "
                    "this spec (two syncs cannot share one state)"
                )
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"sync name {name!r} is used twice")
        for sync in self.syncs:
            for dependency in sync.depends_on:
                if dependency not in names:
                    raise ValueError(
                        f"sync {sync.name!r}: depends_on names {dependency!r}, which is not a sync"
                    )
                if dependency == sync.name:
                    raise ValueError(f"sync {sync.name!r}: depends_on names itself")
        _check_no_cycle({sync.name: sync.depends_on for sync in self.syncs})
        return self

    def get(self, name: str) -> Sync:
        return next(sync for sync in self.syncs if sync.name == name)


def _check_no_cycle(dependencies: dict[str, tuple[str, ...]]) -> None:
    """depends_on becomes asset lineage, which must be acyclic: name the loop if there is one."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        if name in done:
            return
        if name in visiting:
            loop = [*visiting[visiting.index(name) :], name]
            raise ValueError(f"depends_on makes a cycle: {' -> '.join(loop)}")
        visiting.append(name)
        for dependency in dependencies.get(name, ()):
            visit(dependency)
        visiting.pop()
        done.add(name)

    for name in dependencies:
        visit(name)
