"""The pandera schema of a sync's valid rows, derived from the spec (never written by hand).

It guards the hand-off from mapping to delivery: each attribute column has the dtype its type sends
(`WIRE_DTYPES`), user uids are unique, non-empty printable ASCII, and wire text has the exact format.

`validate_valid_rows` checks every row's dtype, nullability, uniqueness and columns; the per-value checks
(formats, ranges) run on every row up to `FULL_CHECK_ROWS` and on a fixed random sample of `SAMPLE_ROWS`
rows above it. The converters already produce exactly these formats (property-tested); re-matching a regular
expression against each of a million values cost more than a second of every run for no new information.
"""

from __future__ import annotations

import pandas as pd
import pandera.pandas as pa

from contentstack_assets.engine.convert import WIRE_DTYPES
from contentstack_assets.spec import UsersSync
from contentstack_assets.wire import MAX_SAFE_INTEGER, UID, UID_PATTERN

# pandera imports its pandas backends on the first validation; a run would pay that (~0.25 s) mid-step
pa.DataFrameSchema.register_default_backends(pd.DataFrame)

_CHECKS: dict[str, list[pa.Check]] = {
    "string": [],
    "number": [pa.Check(lambda s: s.isna() | s.abs().lt(float("inf")), element_wise=False, name="finite")],
    "integer": [pa.Check.in_range(-MAX_SAFE_INTEGER, MAX_SAFE_INTEGER)],
    "boolean": [],
    "datetime": [pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")],
    "date": [pa.Check.str_matches(r"^\d{4}-\d{2}-\d{2}$")],
}


FULL_CHECK_ROWS = 100_000
SAMPLE_ROWS = 20_000


def validate_valid_rows(valid, sync: UsersSync, read_rows: int | None = None) -> int:  # noqa: ANN001 - a DataFrame
    """Validate (raises `pa.errors.SchemaErrors`, lazily collected); returns how many rows had their values
    checked one by one. `read_rows`: the rows of the whole read `valid` is a chunk of; the chunk's share of
    the sample is checked, so a read checks as many values chunked as in one piece."""
    schema = users_schema(sync)
    read_rows = max(read_rows or 0, len(valid))
    # inplace: nothing is coerced, so there is nothing to protect the frame from by copying it first
    if read_rows <= FULL_CHECK_ROWS:
        schema.validate(valid, lazy=True, inplace=True)
        return len(valid)
    sample = min(len(valid), max(1, round(SAMPLE_ROWS * len(valid) / read_rows)))
    shape_only = schema.update_columns({name: {"checks": []} for name in schema.columns})
    shape_only.validate(valid, lazy=True, inplace=True)
    if valid.empty:
        return 0
    values_only = schema.update_columns({name: {"unique": False} for name in schema.columns})
    values_only.validate(valid.sample(sample, random_state=0), lazy=True)
    return sample


def users_schema(sync: UsersSync) -> pa.DataFrameSchema:
    columns = {
        UID: pa.Column(
            object,
            nullable=False,
            unique=True,
            checks=[pa.Check.str_matches(f"^{UID_PATTERN}$")],
            description="Personalize User UID",
        )
    }
    for key, attribute in sync.attributes.items():
        columns[key] = pa.Column(
            WIRE_DTYPES[attribute.type],
            nullable=True,
            checks=_CHECKS[attribute.type],
            description=f"{attribute.type} from column {attribute.column}"
            if attribute.column is not None
            else f"{attribute.type} constant {attribute.value!r}",
        )
    return pa.DataFrameSchema(columns, strict=True, name=f"{sync.name}_valid_rows", coerce=False)
