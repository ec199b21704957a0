"""The custom attributes and events a sync needs in its Personalize project, and, with
`destination.create_missing: true`, creating the missing ones through the Management API before anything is
sent (a dry run only says which it would create).

A project holds 100 custom attributes and 100 events by default, and up to 1000 once the limit is raised in
Personalize; the raised limit cannot be read, so the spec is refused up front only when it could never fit
(more than 1000), and otherwise the API's refusal of a create is turned into one paragraph with the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from contentstack_assets.personalize.client import ManagementRefused, PersonalizeError
from contentstack_assets.spec import EventsSync, UsersSync

#: A project's limit of custom attributes (and of events) unless raised in Personalize, and the most it can be
#: raised to.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


@dataclass(frozen=True)
class NewKey:
    """A custom attribute or event to create: its key, name (attributes only) and description."""

    key: str
    name: str
    description: str


@dataclass(frozen=True)
class KeyKind:
    what: str  # "custom attribute"
    plural: str  # "custom attributes"
    screen: str  # where Personalize's UI lists them


ATTRIBUTES = KeyKind("custom attribute", "custom attributes", "Attributes")
EVENTS = KeyKind("event", "events", "Events")


@dataclass(frozen=True)
class Creation:
    """What `create_missing` did: the keys missing before it, those it created, those the project turned out
    to hold already (created meanwhile), and whether it was a dry run (then nothing is created)."""

    missing: list[str]
    created: list[str]
    already_there: list[str]
    dry_run: bool


def attributes_wanted(sync: UsersSync) -> list[NewKey]:
    """Every attribute key of a users sync, named and described as the spec says (default: the key, and
    where the sync reads it)."""
    relation = sync.source.relation
    wanted = []
    for key, attribute in sync.attributes.items():
        if attribute.column is None:
            origin = "a constant of the spec"
        elif sync.source.table:
            origin = f"{relation}.{attribute.column}"
        else:
            origin = f"column {attribute.column} of its query"
        description = attribute.description or (
            f"Synced by contentstack_assets sync {sync.name} from {origin}"
        )
        wanted.append(NewKey(key, attribute.name or key, description))
    return wanted


def events_wanted(sync: EventsSync) -> list[NewKey]:
    """The fixed event key of an events sync (none with `key_column`: those keys come from the rows)."""
    if sync.event.key is None:
        return []
    key = sync.event.key.strip()
    return [NewKey(key, key, f"Sent by contentstack_assets sync {sync.name} from {sync.source.relation}")]


def missing_keys(wanted: list[NewKey], listed: list[dict]) -> list[NewKey]:
    known = {item.get("key") for item in listed}
    return [item for item in wanted if item.key not in known]


def create_missing(
    kind: KeyKind,
    wanted: list[NewKey],
    listed: list[dict],
    create: Callable[[NewKey], bool],
    *,
    sync_name: str,
    project_uid: str,
    dry_run: bool = False,
    log: Callable[[str], None] = lambda message: None,
) -> Creation:
    """Create, one by one, the keys of `wanted` that `listed` (the project's list) lacks; `create` makes one
    (False: the project held it already). A refusal stops with one paragraph saying what to do."""
    missing = missing_keys(wanted, listed)
    names = [item.key for item in missing]
    if not missing:
        return Creation([], [], [], dry_run)
    held = len({item.get("key") for item in listed})
    if held + len(missing) > MAX_LIMIT:
        raise PersonalizeError(
            f"{sync_name}: project {project_uid} holds {held} {kind.plural} and {len(missing)} more are missing "
            f"({_keys(names)}): that is more than a project can hold ({DEFAULT_LIMIT} by default, {MAX_LIMIT} "
            f"at most once raised in Personalize). Nothing was created: remove {kind.plural} the project no "
            "longer uses, or keys from the spec."
        )
    if dry_run:
        log(
            f"{sync_name}: dry run: would create {len(missing)} {kind.plural} in project {project_uid}: "
            f"{_keys(names)} (nothing created)"
        )
        return Creation(names, [], [], True)
    if held + len(missing) > DEFAULT_LIMIT:
        log(
            f"{sync_name}: project {project_uid} will hold {held + len(missing)} {kind.plural}, more than the "
            f"default limit of {DEFAULT_LIMIT}: this works if the project's limit was raised in Personalize"
        )
    created: list[str] = []
    already: list[str] = []
    for item in missing:
        try:
            made = create(item)
        except ManagementRefused as refused:
            raise PersonalizeError(
                _refusal(kind, refused, item.key, names, created, held, sync_name, project_uid)
            ) from None
        (created if made else already).append(item.key)
        log(
            f"{sync_name}: created {kind.what} {item.key!r} in project {project_uid}"
            if made
            else f"{sync_name}: {kind.what} {item.key!r} exists in project {project_uid} already"
        )
    return Creation(names, created, already, False)


def _refusal(
    kind: KeyKind,
    refused: ManagementRefused,
    key: str,
    missing: list[str],
    created: list[str],
    held: int,
    sync_name: str,
    project_uid: str,
) -> str:
    remaining = [name for name in missing if name not in created]
    done = f" Created before the refusal: {_keys(created)}." if created else " Nothing was created."
    by_hand = (
        f"create them in Personalize ({kind.screen}) with these exact keys, or set "
        "destination.create_missing: false"
    )
    if refused.status == 403:
        return (
            f"{sync_name}: the management token may read project {project_uid} but not create {kind.plural} in "
            f"it (HTTP 403 creating {key!r}): creating needs the personalize:manage scope (an OAuth token) or a "
            "user whose role may manage the project (a user session token). Set PERSONALIZE_MANAGEMENT_TOKEN "
            f"to such a token, or {by_hand}. Missing: {_keys(remaining)}.{done}"
        )
    now = held + len(created)
    if "limit" in refused.detail.lower() or now >= DEFAULT_LIMIT:
        return (
            f"{sync_name}: project {project_uid} is at its limit of {kind.plural}: it holds {now} ({held} before "
            f"this run) and {len(remaining)} more are missing ({_keys(remaining)}); Personalize refused to "
            f"create {key!r} ({refused.detail}). A project holds {DEFAULT_LIMIT} {kind.plural} by default: "
            f"raise its limit in Personalize (up to {MAX_LIMIT}), or remove {kind.plural} it no longer uses or "
            f"keys from the spec.{done}"
        )
    return (
        f"{sync_name}: Personalize refused to create {kind.what} {key!r} in project {project_uid} "
        f"({refused.detail}). Missing: {_keys(remaining)}: fix what the answer names, or {by_hand}.{done}"
    )


def _keys(keys: list[str], shown: int = 20) -> str:
    text = ", ".join(keys[:shown])
    return f"{text} and {len(keys) - shown} more" if len(keys) > shown else text
