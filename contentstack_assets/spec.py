"""The sync spec: `syncs.yaml` parsed into typed models.

Every name, column, type and destination of a sync comes from here; the pandera schema, the Dagster
definitions and the delivery all read these models. A spec error names the file, the sync and the key, and
loading fails as a whole: a code location never carries half a spec.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import sqlalchemy as sa
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SecretStr,
    Tag,
    ValidationError,
    field_validator,
    model_validator,
)

from contentstack_assets.personalize import regions
from contentstack_assets.urls import mask_url
from contentstack_assets.wire import UID, AttributeType, is_reserved_key

SYNCS_FILE_ENV = "CONTENTSTACK_SYNCS_FILE"
DEFAULT_RECONCILE = "0 3 * * *"  # a partitioned sync's whole read, daily at 03:00 UTC
SYNC_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
KEY_PART = re.compile(r"^[A-Za-z0-9_]+$")  # what Dagster accepts in an asset key part or a group name
TAG_TEXT = re.compile(r"^[\w.-]{0,63}$")
TAG_KEY = re.compile(r"^([\w.-]{1,63}/)?[\w.-]{1,63}$")
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class SpecError(ValueError):
    """A wrong spec: the message names the file, the sync and the key."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class SourceSpec(_Model):
    url: SecretStr = Field(description="any SQLAlchemy URL; a password in it is never shown")
    table: str | None = None
    query: str | None = None
    db_schema: str | None = Field(None, alias="schema")
    updated_at: str | None = None
    occurred_at: str | None = None
    start_date: dt.date | None = None
    probe_query: str | None = Field(
        None, description="optional SQL returning one row whose change means the source changed"
    )
    chunk_size: int = Field(50_000, ge=100, le=5_000_000)
    deps: tuple[str, ...] = Field(
        (), description="asset keys (slash form, e.g. analytics/dim_users) the source asset depends on"
    )

    @field_validator("deps")
    @classmethod
    def _check_deps(cls, deps: tuple[str, ...]) -> tuple[str, ...]:
        for dep in deps:
            if not all(KEY_PART.match(part) for part in dep.split("/")):
                raise ValueError(
                    f"{dep!r} is not an asset key: give it in slash form, parts of letters, digits and _ "
                    "(e.g. analytics/dim_users)"
                )
        return deps

    @model_validator(mode="after")
    def _one_of_table_or_query(self) -> SourceSpec:
        if (self.table is None) == (self.query is None):
            raise ValueError("give exactly one of `table` or `query`")
        if self.query is not None and self.db_schema is not None:
            raise ValueError("`schema` goes with `table`, not with `query`")
        if self.updated_at and self.occurred_at:
            raise ValueError("give `updated_at` (users) or `occurred_at` (events), not both")
        if (self.updated_at or self.occurred_at) and self.start_date is None:
            raise ValueError(
                "`start_date` is required with `updated_at`/`occurred_at` (the first daily partition)"
            )
        return self

    @field_validator("url")
    @classmethod
    def _parse_url(cls, url: SecretStr) -> SecretStr:
        try:
            sa.engine.make_url(url.get_secret_value())
        except Exception:
            raise ValueError(
                "not a SQLAlchemy URL (e.g. sqlite:///demo/users.db or postgresql+psycopg://...)"
            ) from None
        return url

    @property
    def partition_column(self) -> str | None:
        return self.updated_at or self.occurred_at

    @property
    def display_url(self) -> str:
        """The URL with its password and credential parameters masked: the only form that may be shown."""
        return mask_url(self.url.get_secret_value())

    @property
    def relation(self) -> str:
        if self.table:
            return f"{self.db_schema}.{self.table}" if self.db_schema else self.table
        return "query"


class DestinationSpec(_Model):
    project_uid: str = Field(min_length=1)
    region: regions.Region = "aws-na"
    edge_url: str | None = None
    management_url: str | None = None
    management_token: SecretStr | None = None

    @field_validator("edge_url", "management_url")
    @classmethod
    def _check_url(cls, url: str | None) -> str | None:
        if url is None:
            return None
        url = regions.check_api_url(url)
        if urlsplit(url).query:
            # every request appends its path to this URL, and a query may hold a token: never echo it
            raise ValueError(
                "the API URL must not carry a query (?...): give the bare host; a Management API token "
                "goes into `management_token`"
            )
        return url

    @property
    def resolved_edge_url(self) -> str:
        return self.edge_url or regions.edge_url(self.region)

    @property
    def resolved_management_url(self) -> str:
        return self.management_url or regions.management_url(self.region)

    @property
    def identity(self) -> str:
        """The destination as the sync state tells destinations apart: project and Edge URL (no user info,
        query or fragment, which may hold a secret)."""
        parts = urllib.parse.urlsplit(self.resolved_edge_url)
        host = parts.hostname or ""
        netloc = f"{host}:{parts.port}" if parts.port else host
        return f"{self.project_uid} {parts.scheme}://{netloc}{parts.path.rstrip('/')}"

    @property
    def pool(self) -> str:
        """The Dagster concurrency pool shared by every push to this project."""
        return f"personalize_{re.sub(r'[^A-Za-z0-9_]', '_', self.project_uid)}"


class MatchSpec(_Model):
    column: str = Field(min_length=1)


class AttributeSpec(_Model):
    column: str = Field(min_length=1)
    type: AttributeType


class AutomationSpec(_Model):
    """`automation: eager` (read as `{eager: true}`) or `automation: {on_cron: CRON}`."""

    eager: bool = False
    on_cron: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _read_eager(cls, value: Any) -> Any:
        if isinstance(value, str):
            if value != "eager":
                raise ValueError(f"use `eager` or `{{on_cron: CRON}}` (got {value!r})")
            return {"eager": True}
        return value

    @field_validator("on_cron")
    @classmethod
    def _check_cron(cls, cron: str | None) -> str | None:
        return _valid_cron(cron) if cron is not None else None

    @model_validator(mode="after")
    def _one_condition(self) -> AutomationSpec:
        if self.eager == (self.on_cron is not None):
            raise ValueError("use `eager` or `{on_cron: CRON}`, one of the two")
        return self


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


def _valid_cron(cron: str) -> str:
    # Dagster runs the schedule, so its public ScheduleDefinition judges the expression (five fields, no
    # 30 February)
    import dagster as dg

    try:
        dg.ScheduleDefinition(name="cron_check", cron_schedule=cron, job_name="cron_check")
    except dg.DagsterInvalidDefinitionError:
        raise ValueError(f"{cron!r} is not a cron expression (e.g. '0 * * * *')") from None
    return cron


class UsersSync(_SyncBase):
    """A users sync: the match column's users and their attributes, each change sent once (`kind: users`)."""

    kind: Literal["users"] = "users"
    match: MatchSpec
    attributes: dict[str, AttributeSpec] = Field(min_length=1)
    nulls: Literal["skip", "send"] = "skip"
    min_source_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="stop when an unpartitioned read returns fewer rows than this share of the last run's",
    )
    shards: int = Field(1, ge=1, le=256)

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


def spec_path() -> Path:
    configured = os.environ.get(SYNCS_FILE_ENV)
    if configured:
        return Path(configured)
    # the current directory's: an installed package has no project root of its own to fall back on
    return Path.cwd() / "syncs.yaml"


def load_spec(path: str | Path | None = None) -> SyncsSpec:
    """Read and check a sync spec file.

    Args:
        path: the `syncs.yaml` to read; by default `$CONTENTSTACK_SYNCS_FILE`, else `syncs.yaml` in the
            current directory.

    Returns:
        The spec, every sync checked; `${VAR}` and `${VAR:-default}` read from the environment.

    Raises:
        SpecError: one paragraph naming the file, the sync and the key, for every problem found.
    """
    path = Path(path) if path is not None else spec_path()
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(
            f"{path}: cannot read the sync spec ({error.strerror}); point {SYNCS_FILE_ENV} at your syncs.yaml, "
            "or run from the directory that holds it"
        ) from None
    try:
        raw = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except _DuplicateKey as duplicate:
        key, first, second = duplicate.args
        raise SpecError(
            f"{path}: key {key!r} appears twice in one mapping, on lines {first} and {second} (YAML would "
            "silently keep the second): remove one of them"
        ) from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    if not isinstance(raw, dict) or "syncs" not in raw:
        raise SpecError(f"{path}: expected a mapping with a `syncs:` list at the top")
    return spec_from_data(raw, path)


def spec_from_data(raw: dict, path: Path, line_of: Callable[[tuple], int | None] | None = None) -> SyncsSpec:
    """The spec from parsed YAML (`{"syncs": [...]}`): `${VAR}` read, relative SQLite paths taken from
    `path`'s folder, every sync checked. `line_of` maps a key's location (`("syncs", 0, "source")`) to its
    line, for errors that point into a file other than a plain spec (a component's `defs.yaml`)."""
    raw = _interpolate(raw, path, raw.get("syncs"), (), line_of)
    _resolve_sqlite_paths(raw, path)
    try:
        spec = SyncsSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(_describe(error, path, raw, line_of)) from None
    return spec.model_copy(update={"path": path})


def _at(path: Path, loc: tuple, line_of: Callable[[tuple], int | None] | None) -> str:
    line = line_of(loc) if line_of else None
    return f"{path}:{line}" if line else str(path)


class _DuplicateKey(Exception):
    """A key given twice in one mapping: (key, first line, second line)."""


class _SpecLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word: here the second one is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` may be overridden by the mapping's own keys, as YAML means it
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base class reports it
        return super().construct_mapping(node, deep)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's snippet of the offending line: that line may hold a secret."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return (
        f"{where}{problem}"
        + (f" ({context})" if context else "")
        + " (fix the indentation, quotes or brackets there)"
    )


def _interpolate(node: Any, path: Path, syncs: Any, loc: tuple, line_of=None) -> Any:
    """Replace ${VAR} and ${VAR:-default}; drop keys that end up empty (absent for optional keys)."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            value = _interpolate(value, path, syncs, (*loc, key), line_of)
            if value != "" or not _is_interpolated(node[key]):
                result[key] = value
        return result
    if isinstance(node, list):
        return [_interpolate(item, path, syncs, (*loc, index), line_of) for index, item in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match) -> str:
        variable, default = match.group(1), match.group(2)
        value = os.environ.get(variable)
        if value is None:
            if default is None:
                raise SpecError(
                    f"{_at(path, loc, line_of)}: {_where(loc, syncs)}: environment variable {variable} is not set "
                    f"(set it, or write ${{{variable}:-default}})"
                )
            return default
        return value

    return _ENV_REF.sub(substitute, node)


def _is_interpolated(value: Any) -> bool:
    return isinstance(value, str) and bool(_ENV_REF.search(value))


def _resolve_sqlite_paths(raw: dict, path: Path) -> None:
    """A relative SQLite path in the spec is relative to the spec file, not to the current directory."""
    for sync in raw.get("syncs") or []:
        source = sync.get("source") if isinstance(sync, dict) else None
        url = source.get("url") if isinstance(source, dict) else None
        if not isinstance(url, str) or not url.startswith("sqlite"):
            continue
        try:
            parsed = sa.engine.make_url(url)
        except Exception:
            continue  # reported by validation
        database = parsed.database
        if (
            database
            and database != ":memory:"
            and not database.startswith("file:")
            and not Path(database).is_absolute()
        ):
            source["url"] = parsed.set(database=str((path.parent / database).resolve())).render_as_string(
                hide_password=False
            )


def _where(loc: tuple, syncs: Any) -> str:
    """'sync 'users': key 'source.url'' from a location like ('syncs', 0, 'source', 'url')."""
    if len(loc) >= 2 and loc[0] == "syncs" and isinstance(loc[1], int):
        name = None
        if isinstance(syncs, list) and loc[1] < len(syncs) and isinstance(syncs[loc[1]], dict):
            name = syncs[loc[1]].get("name")
        sync = f"sync {name!r}" if name else f"sync #{loc[1] + 1}"
        key = ".".join(str(part) for part in loc[2:] if part not in ("users", "events", "merges"))
        return f"{sync}: key '{key}'" if key else sync
    return f"key '{'.'.join(str(part) for part in loc)}'" if loc else "top level"


def _describe(error: ValidationError, path: Path, raw: dict, line_of=None) -> str:
    items = error.errors(include_url=False)
    # a tuple whose items all failed is also reported too short: only the items' own errors are news
    if any(len(item["loc"]) > 1 and item["loc"][0] == "syncs" for item in items):
        items = [
            item for item in items if not (tuple(item["loc"]) == ("syncs",) and item["type"] == "too_short")
        ]
    lines = []
    for item in items:
        loc = tuple(item["loc"])
        # the discriminated union puts the kind tag into the location: drop it
        loc = tuple(
            part
            for index, part in enumerate(loc)
            if not (index == 2 and part in ("users", "events", "merges"))
        )
        message = item["msg"].removeprefix("Value error, ")
        secret = any(word in str(loc) for word in ("url", "token", "password"))
        show_input = True
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the README's spec reference)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "sync_not_a_mapping" and isinstance(item.get("input"), dict):
            message = f"unknown kind {item['input'].get('kind')!r}: use users, events or merges"
            show_input = False
        elif loc == ("syncs",) and item["type"] == "too_short":
            message = "the spec holds no sync: add at least one under `syncs:`"
        elif loc[-1:] == ("region",) and item["type"] == "literal_error":
            message = (
                f"unknown region {item['input']!r}: use one of {', '.join(repr(r) for r in regions.HOSTS)}, "
                "or set `edge_url` (and `management_url`) to reach another host"
            )
            show_input = False
        shown = item.get("input")
        hint = ""
        if (
            show_input
            and item["type"] not in ("missing", "extra_forbidden")
            and isinstance(shown, str | int | float)
            and not secret
        ):
            hint = f" (got {shown!r})"
        lines.append(f"{_at(path, loc, line_of)}: {_where(loc, raw.get('syncs'))}: {message}{hint}")
    return "\n".join(lines)
