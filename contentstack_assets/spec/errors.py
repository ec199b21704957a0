"""Spec errors as the user reads them: one line per problem, naming the file (and line where known), the
sync and the key, never echoing a URL, token or password, nor PyYAML's snippet of a line that may hold one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from contentstack_assets.personalize import regions


class SpecError(ValueError):
    """A wrong spec: the message names the file, the sync and the key."""


def _at(path: Path, loc: tuple, line_of: Callable[[tuple], int | None] | None) -> str:
    line = line_of(loc) if line_of else None
    return f"{path}:{line}" if line else str(path)


def _yaml_problem(error: yaml.YAMLError) -> str:
    """Where and what, without PyYAML's snippet of the offending line: that line may hold a secret."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None) or type(error).__name__
    context = getattr(error, "context", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return (
        f"{where}{problem}"
        + (f" ({context})" if context else "")
        + " (fix the indentation, quotes or brackets there)"
    )


def _where(loc: tuple, syncs: Any) -> str:
    """'sync 'users': key 'source.url'' from a location like ('syncs', 0, 'source', 'url')."""
    if len(loc) >= 2 and loc[0] == "syncs" and isinstance(loc[1], int):
        name = None
        if isinstance(syncs, list) and loc[1] < len(syncs) and isinstance(syncs[loc[1]], dict):
            name = syncs[loc[1]].get("name")
        sync = f"sync {name!r}" if name else f"sync #{loc[1] + 1}"
        key = ".".join(str(part) for part in loc[2:] if part not in ("users", "events", "merges"))
        return f"{sync}: key '{key}'" if key else sync
    return f"key '{'.'.join(str(part) for part in loc)}'" if loc else "top level"


def _describe(error: ValidationError, path: Path, raw: dict, line_of=None) -> str:
    items = error.errors(include_url=False)
    # a tuple whose items all failed is also reported too short: only the items' own errors are news
    if any(len(item["loc"]) > 1 and item["loc"][0] == "syncs" for item in items):
        items = [
            item for item in items if not (tuple(item["loc"]) == ("syncs",) and item["type"] == "too_short")
        ]
    lines = []
    for item in items:
        loc = tuple(item["loc"])
        # the discriminated union puts the kind tag into the location: drop it
        loc = tuple(
            part
            for index, part in enumerate(loc)
            if not (index == 2 and part in ("users", "events", "merges"))
        )
        message = item["msg"].removeprefix("Value error, ")
        secret = any(word in str(loc) for word in ("url", "token", "password"))
        show_input = True
        if item["type"] == "extra_forbidden":
            message = "unknown key (check the spelling against the README's spec reference)"
        elif item["type"] == "missing":
            message = "required key is missing"
        elif item["type"] == "sync_not_a_mapping" and isinstance(item.get("input"), dict):
            message = f"unknown kind {item['input'].get('kind')!r}: use users, events or merges"
            show_input = False
        elif loc == ("syncs",) and item["type"] == "too_short":
            message = "the spec holds no sync: add at least one under `syncs:`"
        elif loc[-1:] == ("region",) and item["type"] == "literal_error":
            message = (
                f"unknown region {item['input']!r}: use one of {', '.join(repr(r) for r in regions.HOSTS)}, "
                "or set `edge_url` (and `management_url`) to reach another host"
            )
            show_input = False
        shown = item.get("input")
        hint = ""
        if (
            show_input
            and item["type"] not in ("missing", "extra_forbidden")
            and isinstance(shown, str | int | float)
            and not secret
        ):
            hint = f" (got {shown!r})"
        lines.append(f"{_at(path, loc, line_of)}: {_where(loc, raw.get('syncs'))}: {message}{hint}")
    return "\n".join(lines)
