"""The code location for a distributed deployment: every sync, with each step run as a Celery task.

Point the workspace at this file instead of the `contentstack_assets.definitions` module
(`python_file: deploy/celery_definitions.py`, working directory the project root) and start Celery workers
with `dagster-celery worker start -A dagster_celery.app -y deploy/celery.yaml` on machines that can import
the project and share $DAGSTER_HOME (deploy/dagster.yaml: a persistent instance on PostgreSQL, which the
workers open to record each step's events). A sharded sync (`shards: N`) then delivers its shards on
different workers at once; the pool of its Personalize project still bounds the steps that run together
(docs/production.md).

The broker and result backend come from DAGSTER_CELERY_BROKER_URL and DAGSTER_CELERY_BACKEND_URL (for
example redis://redis:6379/0 and redis://redis:6379/1), the same variables deploy/celery.yaml gives the
workers.
"""

import dagster as dg
from dagster_celery import celery_executor

from contentstack_assets.definitions import build_definitions
from contentstack_assets.spec import load_spec

celery = celery_executor.configured(
    {
        "broker": {"env": "DAGSTER_CELERY_BROKER_URL"},
        "backend": {"env": "DAGSTER_CELERY_BACKEND_URL"},
        # a worker holds one task at a time, so the steps that are ready spread over the idle workers
        "config_source": {"worker_prefetch_multiplier": 1, "task_acks_late": True},
    },
    name="contentstack_celery",
)


@dg.definitions
def defs() -> dg.Definitions:
    return dg.Definitions.merge(build_definitions(load_spec()), dg.Definitions(executor=celery))
