"""The emulator's knobs (`EmulatorConfig`), validated where they are set, and the fault kinds a share of Edge
requests can be given (`FAULT_KINDS`, `parse_faults`). The Edge routes (edge.py) decide from these knobs which
request is slowed, refused or dropped.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

#: Fault kinds a share of Edge requests can be given (``EmulatorConfig.faults``).
FAULT_KINDS: tuple[str, ...] = (
    "429",  # rate limited, with Retry-After: 1
    "429_no_retry_after",  # rate limited, without Retry-After
    "500",
    "502",
    "503",
    "504",
    "drop",  # connection closed without a response; nothing applied
    "drop_after_apply",  # applied, then the connection is closed: the response is lost
    "slow",  # answered normally after an extra `slow_ms`
)

#: Every knob `configure` accepts: the config fields plus `outage_s` (an outage starting now).
_EXTRA_KNOBS = ("outage_s",)


def parse_faults(spec: str) -> dict[str, float]:
    """Parse a fault spec such as ``"429:0.05,500:0.01,drop:0.01"`` into ``{kind: share}``."""
    faults: dict[str, float] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        kind, sep, share = item.rpartition(":")
        if not sep or not kind:
            raise ValueError(f"fault {item!r} is not KIND:SHARE (e.g. 500:0.01)")
        try:
            faults[kind.strip()] = float(share)
        except ValueError:
            raise ValueError(f"fault {item!r}: share {share!r} is not a number") from None
    return faults


def _number(name: str, value: Any, *, low: float = 0.0, high: float = math.inf) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value!r}")
    return float(value)


def _optional_text(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a string or null, got {value!r}")
    return value


def _key_list(name: str, value: Any) -> list[str] | None:
    """None means "any key is accepted"; a list (even empty) is the closed set of known keys."""
    if value is None:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list | tuple | set | frozenset):
        raise ValueError(f"{name} must be a list of strings or null, got {value!r}")
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"{name} must hold strings, got {item!r}")
        if item.strip() and item.strip() not in keys:
            keys.append(item.strip())
    return keys


def _faults(value: Any) -> dict[str, float]:
    raw = parse_faults(value) if isinstance(value, str) else value
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"faults must be an object of kind -> share, got {value!r}")
    faults: dict[str, float] = {}
    for kind, share in raw.items():
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r} (known: {', '.join(FAULT_KINDS)})")
        share = _number(f"faults[{kind!r}]", share, high=1.0)
        if share > 0:
            faults[kind] = share
    if sum(faults.values()) > 1.0 + 1e-9:
        raise ValueError(f"fault shares add up to more than 1: {faults}")
    return faults


@dataclass
class EmulatorConfig:
    """The emulator's knobs. Every field can be set at start and changed while it runs.

    Build a changed copy with `with_changes`; the emulator swaps whole configs, so a request always
    sees one consistent set of knobs.
    """

    #: When set, Edge and Management requests for another project get 404 "project not found".
    project_uid: str | None = None
    #: The project's custom attribute keys. When set, a PATCH with any other key is refused (400).
    attributes: list[str] | None = None
    #: The project's event keys. When set, an event with any other key is refused (400).
    events: list[str] | None = None
    #: When set, the Management API accepts only this token (any token is accepted otherwise).
    management_token: str | None = None
    #: A token with the `personalize:read` scope only: it lists, and a create with it is refused (403).
    management_read_only_token: str | None = None
    #: Management requests accepted per second (sliding one-second window), as the real API's 10 per
    #: organization; the others get 429 with Retry-After. None: no limit.
    management_rate_limit: int | None = 10
    #: The project's limits of custom attributes and events (Personalize's defaults: 100 each); a create
    #: beyond them is refused (422).
    attribute_limit: int = 100
    event_limit: int = 100
    #: Added to every API request (not to control endpoints), like a network round trip.
    latency_ms: float = 0.0
    #: Share of Edge requests answered 500 before anything is applied.
    fail_rate: float = 0.0
    #: Edge requests accepted per second (sliding one-second window); the others get 429.
    rate_limit: int | None = None
    #: Share of Edge requests per fault kind (see `FAULT_KINDS`); at most one fault per request.
    faults: dict[str, float] = field(default_factory=dict)
    #: How long a `slow` fault holds the request before answering.
    slow_ms: float = 5000.0
    #: A unix time; until then every Edge request is answered 503.
    outage_until: float | None = None
    #: Seed of the fault RNG, for reproducible fault sequences.
    seed: int | None = None

    def __post_init__(self) -> None:
        # Validating here means a bad knob fails where it is set (CLI, Python or the config
        # endpoint), not in the middle of a run.
        self.project_uid = _optional_text("project_uid", self.project_uid)
        self.attributes = _key_list("attributes", self.attributes)
        self.events = _key_list("events", self.events)
        self.management_token = _optional_text("management_token", self.management_token)
        self.management_read_only_token = _optional_text(
            "management_read_only_token", self.management_read_only_token
        )
        for name in ("management_rate_limit", "attribute_limit", "event_limit"):
            value = getattr(self, name)
            if (value is not None or name != "management_rate_limit") and (
                isinstance(value, bool) or not isinstance(value, int) or value < 1
            ):
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.latency_ms = _number("latency_ms", self.latency_ms)
        self.fail_rate = _number("fail_rate", self.fail_rate, high=1.0)
        rate_limit = self.rate_limit
        if rate_limit is not None and (
            isinstance(rate_limit, bool) or not isinstance(rate_limit, int) or rate_limit < 1
        ):
            raise ValueError(f"rate_limit must be a positive integer or null, got {self.rate_limit!r}")
        self.faults = _faults(self.faults)
        self.slow_ms = _number("slow_ms", self.slow_ms)
        if self.outage_until is not None:
            self.outage_until = _number("outage_until", self.outage_until)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ValueError(f"seed must be an integer or null, got {self.seed!r}")

    @classmethod
    def knob_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls)) + _EXTRA_KNOBS

    def with_changes(self, **knobs: Any) -> EmulatorConfig:
        """A validated copy with `knobs` changed; `outage_s=X` sets `outage_until` to now + X."""
        unknown = sorted(set(knobs) - set(self.knob_names()))
        if unknown:
            raise ValueError(f"unknown emulator knob(s): {', '.join(unknown)}")
        if "outage_s" in knobs:
            outage_s = knobs.pop("outage_s")
            knobs["outage_until"] = None if outage_s is None else time.time() + _number("outage_s", outage_s)
        return dataclasses.replace(self, **knobs)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_cli_args(self) -> list[str]:
        """The command-line options that start an emulator process with this config."""
        args: list[str] = []
        if self.project_uid is not None:
            args += ["--project-uid", self.project_uid]
        if self.attributes is not None:
            args += ["--attributes", ",".join(self.attributes)]
        if self.events is not None:
            args += ["--events", ",".join(self.events)]
        if self.management_token is not None:
            args += ["--management-token", self.management_token]
        if self.management_read_only_token is not None:
            args += ["--management-read-only-token", self.management_read_only_token]
        args += ["--management-rate-limit", str(self.management_rate_limit or 0)]
        args += ["--attribute-limit", str(self.attribute_limit), "--event-limit", str(self.event_limit)]
        args += ["--latency-ms", repr(self.latency_ms), "--fail-rate", repr(self.fail_rate)]
        if self.rate_limit is not None:
            args += ["--rate-limit", str(self.rate_limit)]
        if self.faults:
            args += ["--faults", ",".join(f"{kind}:{share!r}" for kind, share in self.faults.items())]
        args += ["--slow-ms", repr(self.slow_ms)]
        if self.outage_until is not None:
            args += ["--outage-until", repr(self.outage_until)]
        if self.seed is not None:
            args += ["--seed", str(self.seed)]
        return args

    def fault_table(self) -> list[tuple[str, float]]:
        """(kind, share) pairs drawn from with one random number; `fail_rate` counts as "500"."""
        table = dict(self.faults)
        if self.fail_rate:
            table["500"] = table.get("500", 0.0) + self.fail_rate
        return list(table.items())
