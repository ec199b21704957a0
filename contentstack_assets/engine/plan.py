"""Planning: which users to send, and what each request carries.

Every valid row gets a fingerprint (one vectorised hash of its wire values, salted with the part of the spec that
shapes the wire body: keys, columns or constants, types and the `nulls` mode). A user whose fingerprint matches
the state and whose last delivery succeeded is unchanged: no Python touches it. Only users that are new,
whose fingerprint moved, or whose last delivery failed are looked at one by one, and each of those sends the
keys whose value differs from the value last delivered (the PATCH is a partial update). A spec edit (a key renamed,
retyped, mapped to another column, another `nulls` mode) moves every fingerprint, so every user is diffed again and
gets the keys whose wire value the API does not hold yet. A row that moved but sends nothing (a value stored another way, or a null under `nulls: skip`) costs no request; its new
fingerprint is remembered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from contentstack_assets.spec import AttributeSpec, UsersSync
from contentstack_assets.wire import UID

_MISSING = object()
NEW, CHANGED, RETRY, RESYNC = "new", "changed", "retry", "resync"


def spec_salt(sync: UsersSync) -> int:
    """A 64-bit number that changes with anything in the spec that changes a user's wire body.

    The row hash sees values only: it cannot tell `plan` from `plan_tier`, nor a boolean 1 from an integer 1."""
    shape = {
        "attributes": [_attribute_shape(key, spec) for key, spec in sync.attributes.items()],
        "nulls": sync.nulls,
    }
    digest = hashlib.blake2b(json.dumps(shape, sort_keys=True).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


def _attribute_shape(key: str, spec: AttributeSpec) -> list:
    if spec.column is not None:
        return [key, spec.column, spec.type]  # as before constants existed: their salts stay
    # The literal as the spec gave it, with its YAML type: a constant edited moves every fingerprint, so
    # every user is diffed again and sent the new value.
    return [key, {"value": repr(spec.value)}, spec.type]


def fingerprints(valid: pd.DataFrame, keys: Sequence[str], salt: int = 0) -> pd.Series:
    """A 64-bit hash per row of its wire values, in spec order (stable across runs for the same dtypes),
    xor the spec's salt.

    pandas' row hash (`hash_pandas_object`: its column hashes, combined as it combines them), except that
    pandas hashes an object column's values as their text, so a null would hash like the text "None" (or
    "nan", "NaT", "<NA>"): a null gets a column hash of its own. Only the few values that hash like one of
    those texts are looked at; a row without such a null keeps the hash pandas gives it."""
    if valid.empty:
        return pd.Series([], dtype="int64", index=valid.index)
    multiplier = np.uint64(1000003)
    hashed = np.full(len(valid), 0x345678, dtype=np.uint64)
    for position, key in enumerate(keys):
        column = pd.util.hash_pandas_object(valid[key], index=False, categorize=False).to_numpy()
        suspect = np.flatnonzero(np.isin(column, _NULL_TEXT_HASHES))
        if len(suspect):
            column = column.copy()
            column[suspect[valid[key].iloc[suspect].isna().to_numpy()]] = _NULL_HASH
        remaining = len(keys) - position
        hashed ^= column
        hashed *= multiplier
        multiplier += np.uint64(82520 + remaining + remaining)
    hashed += np.uint64(97531)
    return pd.Series(hashed.view("int64") ^ np.int64(salt), index=valid.index)


_NULL_TEXT_HASHES = pd.util.hash_array(
    np.array(["None", "nan", "NaT", "<NA>"], dtype=object), categorize=False
)
_NULL_HASH = np.uint64(np.iinfo(np.uint64).max)  # what pandas gives a missing value in a categorical


def native_columns(frame: pd.DataFrame, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """Each column as Python values with None for null (JSON-ready)."""
    return {key: frame[key].to_numpy(dtype=object, na_value=None) for key in keys}


@dataclass(frozen=True)
class UserRequest:
    user_uid: str
    body: dict
    delivered_after: dict
    fingerprint: int
    reason: str

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(self.body)


@dataclass
class UsersPlan:
    keys: tuple[str, ...]
    send_nulls: bool
    candidates: pd.DataFrame  # rows that may need a request: user_uid, attributes, _fingerprint, _reason
    previous: dict[str, dict]  # values last delivered, for users already in the state
    counts: dict[str, int]
    refresh: dict[str, int] = field(
        default_factory=dict
    )  # moved rows with nothing to send: uid -> fingerprint
    bodies: dict[str, dict] = field(default_factory=dict)  # precomputed bodies of changed/retry users
    prints: pd.Series | None = None  # every valid row's fingerprint, by the row's index
    stale: list[str] = field(default_factory=list)  # the uids counted in `stale_skipped`

    @property
    def users_to_send(self) -> int:
        return self.counts["new"] + self.counts["changed"] + self.counts["retry"] + self.counts["resync"]

    def requests(self, chunk_size: int = 2000) -> Iterator[UserRequest]:
        """The requests, built lazily chunk by chunk so a first sync of a million users stays small in memory."""
        frame = self.candidates
        for start in range(0, len(frame), chunk_size):
            chunk = frame.iloc[start : start + chunk_size]
            columns = native_columns(chunk, self.keys)
            uids = chunk[UID].to_numpy()
            prints = chunk["_fingerprint"].to_numpy()
            reasons = chunk["_reason"].to_numpy()
            for index, uid in enumerate(uids):
                body = self.bodies.get(uid)
                if body is None:
                    body = {
                        key: columns[key][index]
                        for key in self.keys
                        if self.send_nulls or columns[key][index] is not None
                    }
                if not body:
                    continue
                previous = self.previous.get(uid, {})
                yield UserRequest(uid, body, {**previous, **body}, int(prints[index]), reasons[index])

    def sample_bodies(self, limit: int = 10) -> list[dict]:
        sample = []
        for request in self.requests(chunk_size=limit):
            sample.append({"user_uid": request.user_uid, "reason": request.reason, "body": request.body})
            if len(sample) >= limit:
                break
        return sample


def plan_users(
    valid: pd.DataFrame,
    state: pd.DataFrame,
    *,
    keys: Sequence[str],
    nulls: str,
    full_resync: bool,
    load_delivered: Callable[[list[str]], dict[str, dict]],
    salt: int = 0,
    read_at: int | None = None,
    load_read_times: Callable[[list[str]], dict[str, int]] | None = None,
) -> UsersPlan:
    """Classify every valid user as new, changed, retry (failed earlier), unchanged, stale (or resync).

    `salt`: the spec's `spec_salt` (the same spec must always give the same salt, or every user is diffed).
    `read_at`: when the read of these rows started; a changed or retried user whose values in the state
    came from a later read is stale here (an old frame pushed again, an old backfill delivering after a newer
    run): it is skipped and counted, never sent (`load_read_times(uids)` gives the state's read times)."""
    keys = tuple(keys)
    send_nulls = nulls == "send"
    prints = fingerprints(valid, keys, salt)
    uids = valid[UID]
    known = state.reindex(uids.to_numpy())
    in_state = known["fingerprint"].notna().to_numpy() | known["failed_runs"].notna().to_numpy()
    failed_before = (known["failed_runs"].fillna(0).to_numpy() > 0) & in_state
    same_print = known["fingerprint"].to_numpy(dtype="float64", na_value=np.nan) == prints.to_numpy().astype(
        "float64"
    )
    # float comparison can collide for different 64-bit ints; confirm equality exactly where it matched
    same_print &= known["fingerprint"].fillna(0).astype("int64").to_numpy() == prints.to_numpy()

    counts = {"new": 0, "changed": 0, "retry": 0, "unchanged": 0, "resync": 0, "stale_skipped": 0}
    reason = np.full(len(valid), None, dtype=object)
    whole = np.ones(len(valid), dtype=bool) if full_resync else ~in_state  # sent whole, not diffed
    if full_resync:
        reason[:] = RESYNC
    else:
        reason[~in_state] = NEW
        reason[in_state & failed_before] = RETRY
        reason[in_state & ~failed_before & ~same_print] = CHANGED
    if not send_nulls and whole.any():
        # a user sent whole with every value null has nothing to send: no request, counted unchanged
        rows = np.flatnonzero(whole)
        empty = valid.iloc[rows][list(keys)].isna().all(axis=1).to_numpy()
        reason[rows[empty]] = None

    plan = UsersPlan(
        keys=keys, send_nulls=send_nulls, candidates=valid.iloc[:0], previous={}, counts=counts, prints=prints
    )
    selected = reason != None  # noqa: E711 (elementwise on an object array)
    candidates = valid.loc[selected].copy() if not selected.all() else valid.copy()
    candidates["_fingerprint"] = prints.loc[selected].to_numpy() if not selected.all() else prints.to_numpy()
    candidates["_reason"] = reason[selected]
    counts["unchanged"] = int((~selected).sum())

    if full_resync:
        counts["resync"] = len(candidates)
        plan.candidates = candidates
        return plan

    # users already in the state: diff against what they last received, one by one (few, by construction)
    revisit = candidates["_reason"].isin([CHANGED, RETRY]).to_numpy()
    if revisit.any() and read_at is not None and load_read_times is not None:
        later = load_read_times(list(candidates.loc[revisit, UID]))
        stale = candidates[UID].map(lambda uid: later.get(uid, read_at) > read_at).to_numpy(dtype=bool)
        if stale.any():
            counts["stale_skipped"] = int(stale.sum())
            plan.stale = list(candidates.loc[stale, UID])
            candidates = candidates.loc[~stale]
            revisit = revisit[~stale]
    if revisit.any():
        moved = candidates.loc[revisit]
        plan.previous = load_delivered(list(moved[UID]))
        columns = native_columns(moved, keys)
        drop = np.zeros(len(candidates), dtype=bool)
        positions = np.flatnonzero(revisit)
        for index, uid in enumerate(moved[UID].to_numpy()):
            previous = plan.previous.get(uid, {})
            body = {}
            for key in keys:
                value = columns[key][index]
                if value is None and not send_nulls:
                    continue
                if previous.get(key, _MISSING) != value or _type_moved(previous.get(key, _MISSING), value):
                    body[key] = value
            if body:
                plan.bodies[uid] = body
            else:
                plan.refresh[uid] = int(moved["_fingerprint"].iat[index])
                drop[positions[index]] = True
        counts["unchanged"] += int(drop.sum())
        candidates = candidates.loc[~drop]

    reasons = candidates["_reason"].value_counts()
    for name in (NEW, CHANGED, RETRY):
        counts[name] = int(reasons.get(name, 0))
    plan.candidates = candidates
    return plan


def _type_moved(previous: object, value: object) -> bool:
    """True where == says equal but the wire differs: True == 1 == 1.0 in Python, not in JSON."""
    return (
        previous is not _MISSING
        and type(previous) is not type(value)
        and (isinstance(previous, bool) or isinstance(value, bool))
    )
