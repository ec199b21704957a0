"""Conversion of source column values to Personalize wire values. Pure functions, no Dagster.

- ``convert_column(values, type_name)`` turns one source column into the values that go on the wire for
  one attribute type, with a short reason for every value the type cannot take;
- ``convert_uids(values)`` turns the match column into user uids, or "missing user uid" /
  "invalid user uid";
- ``shorten(value)`` renders a value for a reason or a log line.

`rules` holds the per-element rule of every type (the reference), `fast` the vectorised fast paths,
`iso8601` the ISO-8601 reading and writing both use, `column` the pass of a column through them.
"""

from contentstack_assets.engine.convert.column import (
    WIRE_DTYPES,
    Converted,
    convert_column,
    convert_uids,
)
from contentstack_assets.engine.convert.column import _convert_column_slow as _convert_column_slow
from contentstack_assets.engine.convert.column import _convert_uids_slow as _convert_uids_slow
from contentstack_assets.engine.convert.rules import shorten
from contentstack_assets.wire import ATTRIBUTE_TYPES

__all__ = [
    "ATTRIBUTE_TYPES",
    "WIRE_DTYPES",
    "Converted",
    "convert_column",
    "convert_uids",
    "shorten",
]
