"""What a run reports to the state store per request (a user's outcome, a delivered-once item's), and the
rows of `cs_users`, `cs_items` and `cs_sync_log` that an outcome becomes.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass


@dataclass(frozen=True)
class UserOutcome:
    """What became of one user's request in a run."""

    user_uid: str
    keys: tuple[str, ...]
    ok: bool
    status: int | None
    attempts: int
    latency_ms: float
    error: str | None
    delivered_after: dict | None  # the user's full delivered values if ok
    fingerprint: int | None
    request: str = "attributes"
    read_at: int | None = None  # when the read that gave these values started (unix microseconds)
    # the source database's hash of the row these values came from (engine/digests.py), if it gave one
    source_digest: int | None = None

    @classmethod
    def answered(cls, user_uid: str, keys: tuple[str, ...], response, **rest) -> UserOutcome:
        """The outcome of a request to this user, as the client's `Response` tells it (`rest`: the fields a
        response does not give)."""
        return cls(
            user_uid=user_uid,
            keys=keys,
            ok=response.ok,
            status=response.status,
            attempts=response.attempts,
            latency_ms=response.latency_ms,
            error=response.error,
            **rest,
        )


@dataclass(frozen=True)
class ItemOutcome:
    """What became of a delivered-once item (an event id, a merge pair)."""

    item_id: str
    user_uid: str
    ok: bool
    status: int | None
    error: str | None
    # sent, answer lost, and by the sync's choice never sent again: kept as delivered, with no status and
    # `error` saying so
    unconfirmed: bool = False


def _user_row(sync: str, outcome: UserOutcome, now: dt.datetime) -> dict:
    """A user's row after this outcome, as inserted: a delivery's full values, or a failure counted once
    (which, on a row already there, keeps its values and fingerprint and adds one failed run)."""
    if outcome.ok:
        return {
            "sync": sync,
            "user_uid": outcome.user_uid,
            "fingerprint": outcome.fingerprint,
            "delivered": json.dumps(outcome.delivered_after, separators=(",", ":")),
            "failed_runs": 0,
            "last_status": outcome.status,
            "last_error": None,
            "updated_at": now,
            "read_at": outcome.read_at,
            "source_digest": outcome.source_digest,
            "digest_fingerprint": None if outcome.source_digest is None else outcome.fingerprint,
        }
    return {
        "sync": sync,
        "user_uid": outcome.user_uid,
        "fingerprint": None,
        "delivered": "{}",
        "failed_runs": 1,
        "last_status": outcome.status,
        "last_error": outcome.error,
        "updated_at": now,
        "read_at": None,
        "source_digest": None,
        "digest_fingerprint": None,
    }


def _item_row(sync: str, outcome: ItemOutcome, now: dt.datetime) -> dict:
    return {
        "sync": sync,
        "item_id": outcome.item_id,
        "user_uid": outcome.user_uid,
        "delivered": outcome.ok or outcome.unconfirmed,
        "failed_runs": 0 if outcome.ok or outcome.unconfirmed else 1,
        "last_status": outcome.status,
        "last_error": None if outcome.ok else outcome.error,
        "updated_at": now,
    }


def _log_row(sync: str, run_id: str, outcome: UserOutcome, now: dt.datetime) -> dict:
    return {
        "sync": sync,
        "run_id": run_id,
        "user_uid": outcome.user_uid,
        "at": now,
        "request": outcome.request,
        "keys": ",".join(outcome.keys),
        "status": outcome.status,
        "attempts": outcome.attempts,
        "latency_ms": round(outcome.latency_ms, 3),
        "error": outcome.error,
    }
