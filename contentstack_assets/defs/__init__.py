"""The demo's defs folder (dg layout, `[tool.dg]` in pyproject.toml): the component in a `defs.yaml`, as in
a user's project. `contentstack_assets.definitions` builds the code location from it."""
