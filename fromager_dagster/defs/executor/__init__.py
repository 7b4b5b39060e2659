"""Running this project's jobs: the run executor (steps in threads by default, or in forkserver
processes; lanes for exclusive builds), each step's own compute log, runs launched from
Python with the code location's origin, and whether definitions load with a state storage.

This is the one package that uses Dagster's internal names (``dagster._core``,
``dagster._utils``): an executor, like dagster-celery's and dagster-dask's, is built on them,
and so are a run created with its code-location origin and the defs-state check, which have no
public API. They are pinned to Dagster's minor version (``dagster==1.13.*`` in
pyproject.toml) and exercised by tests/defs/test_executor.py,
tests/defs/test_executor_threads.py and tests/defs/test_reexecution.py. An import-linter
contract keeps every other module of the project on Dagster's public API.
"""

from __future__ import annotations

from .definition import build_executor, max_concurrent
from .run_target import (
    IMPLICIT_ASSET_JOB_NAME,
    ReconstructableJob,
    assets_job,
    configured_location_job,
    execute_location_job,
    loading_with_state_storage,
    location_job,
    resource_config,
)

__all__ = [
    "IMPLICIT_ASSET_JOB_NAME",
    "ReconstructableJob",
    "assets_job",
    "build_executor",
    "configured_location_job",
    "execute_location_job",
    "loading_with_state_storage",
    "location_job",
    "max_concurrent",
    "resource_config",
]
