"""The source reader: chunked reads of a table or query through SQLAlchemy, its window, probe and per-day
digests (`reader`), what differs between databases (`dialects`), how a window meets the partition column
(`window`), and what a failed read tells the user (`errors`).
"""

from contentstack_assets.engine.source.dialects import _engine, engine_for
from contentstack_assets.engine.source.errors import DRIVER_EXTRAS, SourceError, _reason
from contentstack_assets.engine.source.reader import PRIMARY_KEY, PROGRESS_EVERY_S, SourceReader
from contentstack_assets.engine.source.window import (
    EPOCH_MILLISECONDS_BELOW,
    EPOCH_MILLISECONDS_FROM,
    Window,
    days_of,
)

__all__ = [
    "DRIVER_EXTRAS",
    "EPOCH_MILLISECONDS_BELOW",
    "EPOCH_MILLISECONDS_FROM",
    "PRIMARY_KEY",
    "PROGRESS_EVERY_S",
    "SourceError",
    "SourceReader",
    "Window",
    "_engine",  # the engine per URL: tests dispose of its pool or clear its cache
    "_reason",  # a database error's first line, secrets scrubbed: the secret-leak suite checks it
    "days_of",
    "engine_for",
]
