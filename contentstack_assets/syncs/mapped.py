"""What the mapping step of a users sync reports, sharded or not: the tally of its chunks (valid rows, the
rejected ones with their reasons, the first schema failure) and the check that the spec's keys exist."""

import dagster as dg
import pandas as pd
import pandera.pandas as pa

from contentstack_assets.engine.digests import DIGEST_UNCHANGED, SOURCE_ROWS
from contentstack_assets.engine.mapping import rejected_rows, valid_rows
from contentstack_assets.engine.project_keys import Creation
from contentstack_assets.engine.schema import validate_valid_rows
from contentstack_assets.spec import UsersSync
from contentstack_assets.syncs.project_keys import creation_description, creation_metadata
from contentstack_assets.syncs.push import missing_attribute_keys, missing_keys_message
from contentstack_assets.syncs.report import markdown_table, rejected_sample


def mapped_metadata(frame: object, tally: "MappedTally", map_s: float) -> dict:
    """The metadata of `mapped_attributes`: what the mapping of the read (`frame`, its output) found."""
    return {
        "rows_read": len(frame),
        DIGEST_UNCHANGED: int(frame.attrs.get(DIGEST_UNCHANGED, 0)),
        "rows_valid": tally.valid,
        "rows_rejected": tally.rejected_total,
        "map_s": round(map_s, 3),
        "rejected_sample": rejected_sample(tally.rejected),
    }


def rows_valid_check(sync: UsersSync, frame: object, tally: "MappedTally") -> dg.AssetCheckResult:
    """`rows_valid`: a warning for rejected rows, an error when the valid rows break the schema (a bug)."""
    rejected, schema_failures = tally.rejected_total, tally.schema_failures
    # over the whole source: a read by digests leaves the unchanged rows unread
    source_rows = int(frame.attrs.get(SOURCE_ROWS, len(frame)))
    return dg.AssetCheckResult(
        check_name="rows_valid",
        passed=schema_failures is None and not rejected,
        severity=dg.AssetCheckSeverity.ERROR if schema_failures is not None else dg.AssetCheckSeverity.WARN,
        metadata={
            "num_failures": rejected,
            # the share the check alert compares with the spec's tolerance (syncs/alerts.py)
            "rejected_share": round(rejected / source_rows, 4) if source_rows else 0.0,
            "threshold": sync.max_rejected_share,
            "rejected_sample": rejected_sample(tally.rejected),
            "schema_errors": schema_failures or dg.MetadataValue.md("(valid rows match the schema)"),
        },
    )


class MappedTally:
    """What the mapping of a read found, added up chunk by chunk: the valid rows, the rejected ones (kept
    whole, with their reasons) and the first schema failure of the valid rows (pandera, each chunk)."""

    def __init__(self, sync: UsersSync, read_rows: int):
        self.sync, self.read_rows = sync, read_rows
        self.valid = 0
        self._rejected: list[pd.DataFrame] = []
        self._rejected_count = 0  # rejected rows not kept (`add_part`)
        self.schema_failures: dg.MetadataValue | None = None

    def add_part(
        self, valid: int, rejected: int, rejected_head: pd.DataFrame, schema_failures: dg.MetadataValue | None
    ) -> None:
        """What a shard's mapping found (a sharded sync): its counts and its first rejected rows."""
        self.valid += valid
        self._rejected.append(rejected_head)
        self._rejected_count += rejected - len(rejected_head)  # the rows beyond the head, counted only
        self.schema_failures = self.schema_failures or schema_failures

    def add(self, chunk: pd.DataFrame) -> None:
        valid = valid_rows(chunk)
        self.valid += len(valid)
        self._rejected.append(rejected_rows(chunk))
        if self.schema_failures is None:
            self.schema_failures = _schema_failures_of(valid, self.sync, self.read_rows)

    @property
    def rejected_total(self) -> int:
        return self._rejected_count + sum(len(part) for part in self._rejected)

    @property
    def rejected(self) -> pd.DataFrame:
        """The rejected rows kept: all of them, or of a sharded sync each shard's first."""
        return pd.concat(self._rejected, ignore_index=True) if len(self._rejected) > 1 else self._rejected[0]


def _schema_failures_of(valid: pd.DataFrame, sync: UsersSync, read_rows: int) -> dg.MetadataValue | None:
    """None when the valid rows match the spec's schema; else a table of the failure cases (a bug)."""
    try:
        validate_valid_rows(valid, sync, read_rows)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases.head(20).astype(str).to_dict("records")
        return markdown_table(cases, ["column", "check", "failure_case", "index"])
    return None


def attribute_check(
    sync: UsersSync, listed: list[dict] | None, creation: Creation | None = None
) -> dg.AssetCheckResult:
    if listed is None:
        return dg.AssetCheckResult(
            check_name="attribute_keys_exist",
            passed=True,
            metadata={"checked": False, "reason": "no management token configured: keys not checked"},
        )
    missing = missing_attribute_keys(sync, listed)
    if creation is not None and not creation.dry_run:
        missing = []  # created (or found created meanwhile) before any user is sent
    return dg.AssetCheckResult(
        check_name="attribute_keys_exist",
        # with create_missing, a dry run passes: the keys it lacks would be created by a real run
        passed=not missing or creation is not None,
        severity=dg.AssetCheckSeverity.ERROR,
        description=creation_description(creation, sync.destination.project_uid)
        or (missing_keys_message(sync, missing) if missing else None),
        metadata={
            "checked": True,
            "missing_keys": missing,
            "project_attributes": len({item.get("key") for item in listed})
            + (len(creation.created) if creation else 0),
            **creation_metadata(creation),
        },
    )
