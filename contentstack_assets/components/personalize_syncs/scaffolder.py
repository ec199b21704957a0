"""`dg scaffold defs contentstack_assets.PersonalizeSyncsComponent NAME`: a commented `defs.yaml` that loads
as written (a users sync over a SQLite file of the project, pushed to the bundled emulator)."""

import dagster as dg

TYPE_NAME = "contentstack_assets.PersonalizeSyncsComponent"

DEFS_YAML = """\
# Syncs from SQL to Contentstack Personalize. The keys under `syncs:` are those of a syncs.yaml
# (see the contentstack_assets README, "The sync spec"); `{{{{ env.VAR }}}}` reads the environment.
# Instead of `syncs:`, `syncs_file: syncs.yaml` reads a spec file relative to this one.
type: {type_name}

attributes:
  syncs:
    - name: users                       # prefix of every asset key of this sync: users/source_users ...
      source:
        url: "{{{{ env('WAREHOUSE_URL', 'sqlite:///users.db') }}}}"   # any SQLAlchemy URL
        table: users                    # or `query: SELECT ...`
        # deps: [analytics/dim_users]   # assets upstream of users/source_users
      destination:
        project_uid: "{{{{ env('PERSONALIZE_PROJECT_UID', 'demo00000000000000000001') }}}}"
        region: aws-na
        # edge_url: http://127.0.0.1:8787   # the bundled emulator: python -m contentstack_assets.emulator
      match:
        column: user_uid                # the column holding the Personalize user uid
      attributes:                       # Personalize attribute key -> column and type
        plan: {{column: plan_name, type: string}}
        # source: {{value: warehouse, type: string}}   # a constant: the same value for every user
      # automation: eager               # or {{on_cron: "0 * * * *"}}, or `schedule: "0 * * * *"`
      # key_prefix: [personalize]       # group, owners, tags: labels of the sync's assets
"""


class PersonalizeSyncsScaffolder(dg.Scaffolder):
    """Writes a commented `defs.yaml` for one users sync."""

    def scaffold(self, request: dg.ScaffoldRequest) -> None:
        request.target_path.mkdir(parents=True, exist_ok=True)
        # the public name, however the type was named on the command line
        (request.target_path / "defs.yaml").write_text(DEFS_YAML.format(type_name=TYPE_NAME))
