"""The demo's code location (`dagster dev`, `[tool.dagster]`): the dg defs folder `contentstack_assets/defs/`."""

from __future__ import annotations

import warnings
from pathlib import Path

import dagster as dg

from contentstack_assets.spec import SpecError
from contentstack_assets.syncs.build import build_definitions

__all__ = ["build_definitions", "defs"]


@dg.definitions
def defs() -> dg.Definitions:
    """The demo's code location, a dg project as a user's would be: `contentstack_assets/defs/` holds the
    component's `defs.yaml` (which reads `$CONTENTSTACK_SYNCS_FILE`, else `syncs.yaml` in the working
    directory). The tree is built from the module rather than found through pyproject.toml, so an installed
    wheel serves it too. A spec error raises here, with the file, sync and key: the location fails whole."""
    import contentstack_assets.defs

    tree = dg.ComponentTree.from_module(defs_module=contentstack_assets.defs, project_root=Path.cwd())
    try:
        with warnings.catch_warnings():
            # dg's own beta and preview classes behind every defs folder (code references, module loaders)
            warnings.filterwarnings("ignore", category=dg.BetaWarning)
            warnings.filterwarnings("ignore", category=dg.PreviewWarning)
            return tree.build_defs()
    except Exception as error:
        # dg wraps a component's error in its tree's; the spec's own paragraph is what a user should read
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, SpecError):
            cause = cause.__cause__ or cause.__context__
        if cause is None:
            raise
        raise cause from None
