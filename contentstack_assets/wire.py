"""The wire vocabulary that the spec and the engine share: the attribute types, what a user uid is, and the
column names a mapped frame keeps for itself. It imports nothing from the package, so the spec can validate
against it and the engine convert to it without either reading the other.
"""

from typing import Literal, get_args

AttributeType = Literal["string", "number", "integer", "boolean", "datetime", "date"]
ATTRIBUTE_TYPES: tuple[str, ...] = get_args(AttributeType)

MAX_SAFE_INTEGER = 2**53  # the largest magnitude an integer keeps through a double, as JSON numbers go

# A user uid is the value's text, trimmed: 1-256 printable ASCII characters.
MAX_UID_LENGTH = 256
UID_PATTERN = rf"[\x20-\x7e]{{1,{MAX_UID_LENGTH}}}"
MISSING_UID = "missing user uid"
INVALID_UID = "invalid user uid"

# The mapped frame's own columns, beside one column per attribute key.
UID = "user_uid"
ROW = "_row"  # the 1-based row number in the read
REJECTION = "_rejection"  # None, or every reason the row was set aside, joined by "; "
DAY = "_day"  # a partitioned sync's rows: the UTC day (`YYYY-MM-DD`) of the partition column, None for none


def is_reserved_key(key: str) -> bool:
    """Whether an attribute key would name one of the frame's own columns (`UID`, or any key starting with "_")."""
    return key == UID or key.startswith("_")
