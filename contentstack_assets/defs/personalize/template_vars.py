"""The template variable of the demo's `defs.yaml`."""

import dagster as dg

from contentstack_assets.spec import spec_path


@dg.template_var
def code_location_spec() -> str:
    """The standalone code location's spec: `$CONTENTSTACK_SYNCS_FILE`, else `syncs.yaml` in the working
    directory, as an absolute path (a relative `syncs_file` would be read beside the `defs.yaml`)."""
    return str(spec_path().resolve())
