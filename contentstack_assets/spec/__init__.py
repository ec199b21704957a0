"""The sync spec: `syncs.yaml` parsed into typed models, where every name, column, type and destination of a
sync comes from. The blocks are in `models`, the three sync kinds and the whole spec in `syncs`, reading a
file in `loading`, and the errors naming file, sync and key in `errors`: a spec loads whole or not at all.
"""

from contentstack_assets.spec.errors import SpecError
from contentstack_assets.spec.loading import SYNCS_FILE_ENV, load_spec, spec_from_data, spec_path
from contentstack_assets.spec.models import (
    KEY_PART,
    AttributeSpec,
    AutomationSpec,
    DestinationSpec,
    MatchSpec,
    SourceSpec,
)
from contentstack_assets.spec.syncs import (
    DEFAULT_RECONCILE,
    SYNC_NAME,
    TAG_KEY,
    TAG_TEXT,
    EventSpec,
    EventsSync,
    MergeSpec,
    MergesSync,
    Sync,
    SyncsSpec,
    UsersSync,
)

__all__ = [
    "DEFAULT_RECONCILE",
    "KEY_PART",
    "SYNCS_FILE_ENV",
    "SYNC_NAME",
    "TAG_KEY",
    "TAG_TEXT",
    "AttributeSpec",
    "AutomationSpec",
    "DestinationSpec",
    "EventSpec",
    "EventsSync",
    "MatchSpec",
    "MergeSpec",
    "MergesSync",
    "SourceSpec",
    "SpecError",
    "Sync",
    "SyncsSpec",
    "UsersSync",
    "load_spec",
    "spec_from_data",
    "spec_path",
]
