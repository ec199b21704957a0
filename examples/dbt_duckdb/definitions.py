"""dbt on DuckDB upstream of a Personalize sync: the dbt project's assets (seed `raw_users`, model `dim_users`)
and the users sync of syncs.yaml, whose source reads `dim_users` from the same DuckDB file.

The warehouse file is EXAMPLE_DUCKDB_PATH (default: warehouse.duckdb beside this file); dbt writes it from
its own process and the sync reads it read-only, one after the other.
"""

import os
import shutil
import sys
from pathlib import Path

import dagster as dg
from dagster_dbt import DbtCliResource, DbtProject, dbt_assets

from contentstack_assets import build_definitions, load_spec

HERE = Path(__file__).resolve().parent
os.environ.setdefault("EXAMPLE_DUCKDB_PATH", str(HERE / "warehouse.duckdb"))

# the dbt of this interpreter's environment, found without activating it (`make example-dbt` does not)
DBT_EXECUTABLE = shutil.which("dbt") or str(Path(sys.executable).parent / "dbt")

dbt_project = DbtProject(project_dir=HERE / "dbt_project", profiles_dir=HERE / "dbt_project")
dbt_cli = DbtCliResource(project_dir=dbt_project, dbt_executable=DBT_EXECUTABLE)
# the manifest @dbt_assets reads: made once (`dbt parse`) where missing; `dagster dev` remakes it on load
if os.environ.get("DAGSTER_IS_DEV_CLI") or not dbt_project.manifest_path.exists():
    dbt_cli.cli(["parse", "--quiet"], target_path=dbt_project.target_path).wait()


@dbt_assets(manifest=dbt_project.manifest_path, project=dbt_project)
def analytics_dbt_assets(context: dg.AssetExecutionContext, dbt: DbtCliResource):
    """The dbt project, seeds and models, built with `dbt build`."""
    yield from dbt.cli(["build"], context=context).stream()


def build_example_definitions() -> dg.Definitions:
    """The dbt assets and the sync, one code location."""
    dbt_defs = dg.Definitions(assets=[analytics_dbt_assets], resources={"dbt": dbt_cli})
    return dg.Definitions.merge(dbt_defs, build_definitions(load_spec(HERE / "syncs.yaml")))


defs = build_example_definitions()
