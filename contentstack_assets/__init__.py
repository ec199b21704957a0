"""contentstack_assets: keep Contentstack Personalize in step with a SQL user table, as Dagster assets.

The public API is `__all__`. Names load on first use, so `import contentstack_assets` stays light (the
emulator and the log CLI need neither Dagster nor a spec) and no spec is read at import.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_PUBLIC = {
    "PersonalizeSyncsComponent": "contentstack_assets.components.personalize_syncs.component",
    "PersonalizeTranslator": "contentstack_assets.translator",
    "build_definitions": "contentstack_assets.syncs.build",
    "load_spec": "contentstack_assets.spec",
    "SpecError": "contentstack_assets.spec",
    "SyncsSpec": "contentstack_assets.spec",
    "UsersSync": "contentstack_assets.spec",
    "EventsSync": "contentstack_assets.spec",
    "MergesSync": "contentstack_assets.spec",
    "PersonalizeResource": "contentstack_assets.resources",
    "SyncStateResource": "contentstack_assets.resources",
    "FrameIOManager": "contentstack_assets.io_manager",
}
__all__ = [
    "PersonalizeSyncsComponent",
    "PersonalizeTranslator",
    "build_definitions",
    "load_spec",
    "SpecError",
    "SyncsSpec",
    "UsersSync",
    "EventsSync",
    "MergesSync",
    "PersonalizeResource",
    "SyncStateResource",
    "FrameIOManager",
]
assert set(__all__) == set(_PUBLIC)

if TYPE_CHECKING:
    from contentstack_assets.components.personalize_syncs.component import PersonalizeSyncsComponent
    from contentstack_assets.io_manager import FrameIOManager
    from contentstack_assets.resources import PersonalizeResource, SyncStateResource
    from contentstack_assets.spec import EventsSync, MergesSync, SpecError, SyncsSpec, UsersSync, load_spec
    from contentstack_assets.syncs.build import build_definitions
    from contentstack_assets.translator import PersonalizeTranslator


def __getattr__(name: str):
    if name not in _PUBLIC:
        raise AttributeError(f"module 'contentstack_assets' has no attribute {name!r}")
    value = getattr(importlib.import_module(_PUBLIC[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
