"""Reading a spec: the file (or a component's parsed YAML), with a key given twice refused, `${VAR}` and
`${VAR:-default}` read from the environment, relative SQLite paths taken from the spec's folder, and every
sync checked as a whole: a code location never carries half a spec.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa
import yaml
from pydantic import ValidationError

from contentstack_assets.spec.errors import SpecError, _at, _describe, _where, _yaml_problem
from contentstack_assets.spec.syncs import SyncsSpec

SYNCS_FILE_ENV = "CONTENTSTACK_SYNCS_FILE"

_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def spec_path() -> Path:
    configured = os.environ.get(SYNCS_FILE_ENV)
    if configured:
        return Path(configured)
    # the current directory's: an installed package has no project root of its own to fall back on
    return Path.cwd() / "syncs.yaml"


def load_spec(path: str | Path | None = None) -> SyncsSpec:
    """Read and check a sync spec file.

    Args:
        path: the `syncs.yaml` to read; by default `$CONTENTSTACK_SYNCS_FILE`, else `syncs.yaml` in the
            current directory.

    Returns:
        The spec, every sync checked; `${VAR}` and `${VAR:-default}` read from the environment.

    Raises:
        SpecError: one paragraph naming the file, the sync and the key, for every problem found.
    """
    path = Path(path) if path is not None else spec_path()
    try:
        text = path.read_text()
    except OSError as error:
        raise SpecError(
            f"{path}: cannot read the sync spec ({error.strerror}); point {SYNCS_FILE_ENV} at your syncs.yaml, "
            "or run from the directory that holds it"
        ) from None
    try:
        raw = yaml.load(text, Loader=_SpecLoader)  # a SafeLoader subclass
    except _DuplicateKey as duplicate:
        key, first, second = duplicate.args
        raise SpecError(
            f"{path}: key {key!r} appears twice in one mapping, on lines {first} and {second} (YAML would "
            "silently keep the second): remove one of them"
        ) from None
    except yaml.YAMLError as error:
        raise SpecError(f"{path}: not valid YAML: {_yaml_problem(error)}") from None
    if not isinstance(raw, dict) or "syncs" not in raw:
        raise SpecError(f"{path}: expected a mapping with a `syncs:` list at the top")
    return spec_from_data(raw, path)


def spec_from_data(raw: dict, path: Path, line_of: Callable[[tuple], int | None] | None = None) -> SyncsSpec:
    """The spec from parsed YAML (`{"syncs": [...]}`): `${VAR}` read, relative SQLite paths taken from
    `path`'s folder, every sync checked. `line_of` maps a key's location (`("syncs", 0, "source")`) to its
    line, for errors that point into a file other than a plain spec (a component's `defs.yaml`)."""
    raw = _interpolate(raw, path, raw.get("syncs"), (), line_of)
    _resolve_sqlite_paths(raw, path)
    try:
        spec = SyncsSpec.model_validate(raw)
    except ValidationError as error:
        raise SpecError(_describe(error, path, raw, line_of)) from None
    return spec.model_copy(update={"path": path})


class _DuplicateKey(Exception):
    """A key given twice in one mapping: (key, first line, second line)."""


class _SpecLoader(yaml.SafeLoader):
    """PyYAML keeps the last of two equal keys without a word: here the second one is an error."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor` may be overridden by the mapping's own keys, as YAML means it
            key = self.construct_object(key_node, deep=deep)
            line = key_node.start_mark.line + 1
            try:
                if key in seen:
                    raise _DuplicateKey(key, seen[key], line)
                seen[key] = line
            except TypeError:
                continue  # an unhashable key: the base class reports it
        return super().construct_mapping(node, deep)


def _interpolate(node: Any, path: Path, syncs: Any, loc: tuple, line_of=None) -> Any:
    """Replace ${VAR} and ${VAR:-default}; drop keys that end up empty (absent for optional keys)."""
    if isinstance(node, dict):
        result = {}
        for key, value in node.items():
            value = _interpolate(value, path, syncs, (*loc, key), line_of)
            if value != "" or not _is_interpolated(node[key]):
                result[key] = value
        return result
    if isinstance(node, list):
        return [_interpolate(item, path, syncs, (*loc, index), line_of) for index, item in enumerate(node)]
    if not isinstance(node, str):
        return node

    def substitute(match: re.Match) -> str:
        variable, default = match.group(1), match.group(2)
        value = os.environ.get(variable)
        if value is None:
            if default is None:
                raise SpecError(
                    f"{_at(path, loc, line_of)}: {_where(loc, syncs)}: environment variable {variable} is not set "
                    f"(set it, or write ${{{variable}:-default}})"
                )
            return default
        return value

    return _ENV_REF.sub(substitute, node)


def _is_interpolated(value: Any) -> bool:
    return isinstance(value, str) and bool(_ENV_REF.search(value))


def _resolve_sqlite_paths(raw: dict, path: Path) -> None:
    """A relative SQLite path in the spec is relative to the spec file, not to the current directory."""
    for sync in raw.get("syncs") or []:
        source = sync.get("source") if isinstance(sync, dict) else None
        url = source.get("url") if isinstance(source, dict) else None
        if not isinstance(url, str) or not url.startswith("sqlite"):
            continue
        try:
            parsed = sa.engine.make_url(url)
        except Exception:
            continue  # reported by validation
        database = parsed.database
        if (
            database
            and database != ":memory:"
            and not database.startswith("file:")
            and not Path(database).is_absolute()
        ):
            source["url"] = parsed.set(database=str((path.parent / database).resolve())).render_as_string(
                hide_password=False
            )
