"""`contentstack_assets.PersonalizeSyncsComponent`: the syncs of a spec from a project's `defs.yaml`."""
