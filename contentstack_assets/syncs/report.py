"""Turning engine results into Dagster metadata and errors (markdown tables, failures)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from contextlib import contextmanager
from typing import TypeVar

import dagster as dg
import pandas as pd

from contentstack_assets.engine.convert import shorten
from contentstack_assets.engine.source import SourceError, SourceReader
from contentstack_assets.engine.state import StateStoreError
from contentstack_assets.personalize.client import PersonalizeError

T = TypeVar("T")


def markdown_table(rows: Sequence[dict], columns: Sequence[str], empty: str = "(none)") -> dg.MetadataValue:
    if not rows:
        return dg.MetadataValue.md(empty)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        cells = [_cell(row.get(column)) for column in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return dg.MetadataValue.md("\n".join(lines))


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return shorten(text, 120).strip("'").replace("|", "\\|")


def rejected_sample(rejected: pd.DataFrame, limit: int = 20) -> dg.MetadataValue:
    return markdown_table(
        rejected.head(limit).to_dict("records"), ["row_number", "user_uid", "reason"], "(no rows rejected)"
    )


def failures_sample(
    failures: Iterable[tuple[T, object]], key: Callable[[T], str], limit: int = 20
) -> dg.MetadataValue:
    rows = [
        {
            "user_uid": key(request),
            "status": response.status,
            "attempts": response.attempts,
            "error": response.error,
        }
        for request, response in list(failures)[:limit]
    ]
    return markdown_table(rows, ["user_uid", "status", "attempts", "error"], "(no failures)")


@contextmanager
def user_errors():
    """Errors the user must fix (source, API configuration, a state store newer than the code) become one
    clear Dagster failure, not a traceback."""
    try:
        yield
    except (SourceError, PersonalizeError, StateStoreError) as error:
        raise dg.Failure(description=str(error), allow_retries=False) from None


def source_metadata(reader: SourceReader, frame: pd.DataFrame) -> dict[str, object]:
    """Dagster's standard metadata of a source asset: its row count and its columns with their source
    types (a table's declared SQL types; for a query, the Python type its driver returned)."""
    return {
        "dagster/row_count": len(frame),
        "dagster/column_schema": dg.TableSchema(
            columns=[dg.TableColumn(name, type) for name, type in reader.column_types.items()]
        ),
    }
