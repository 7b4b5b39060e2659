"""Reconstructable jobs of a code location, for runs launched from Python (CLI, benchmarks).

A run of a wheel build is a run of Dagster's implicit asset job selecting a collection's
wheel group, exactly what the UI's "Materialize" launches. That job exists only inside a
repository, so it is reconstructed from the location's module and attribute (a code pointer),
as ``dagster asset materialize -m MODULE`` does; step processes load the same pointer.
"""

from __future__ import annotations

import os

from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository

from fromager_dagster.core.sandbox import Sandbox

__all__ = [
    "IMPLICIT_ASSET_JOB_NAME",
    "ReconstructableJob",
    "assets_job",
    "location_job",
    "resource_config",
]

#: The code location: ``dagster dev -m fromager_dagster.definitions`` loads ``defs`` from it.
LOCATION_MODULE = "fromager_dagster.definitions"
LOCATION_ATTRIBUTE = "defs"


def location_job(
    job_name: str,
    *,
    module: str = LOCATION_MODULE,
    attribute: str = LOCATION_ATTRIBUTE,
    python_file: str | None = None,
) -> ReconstructableJob:
    """Job ``job_name`` of the definitions at ``module:attribute`` (or ``python_file:attribute``);
    the default location reads its collections from ``$FROMAGER_DAGSTER_COLLECTIONS`` and its
    concurrency from ``$FROMAGER_DAGSTER_MAX_CONCURRENT``."""
    if python_file is not None:
        repository = ReconstructableRepository.for_file(python_file, attribute, os.getcwd())
    else:
        repository = ReconstructableRepository.for_module(module, attribute, os.getcwd())
    return repository.get_reconstructable_job(job_name)


def assets_job(
    *,
    module: str = LOCATION_MODULE,
    attribute: str = LOCATION_ATTRIBUTE,
    python_file: str | None = None,
) -> ReconstructableJob:
    """The implicit asset job of those definitions; runs of it pass the keys to materialize
    (``execute_job(..., asset_selection=keys)``)."""
    return location_job(
        IMPLICIT_ASSET_JOB_NAME, module=module, attribute=attribute, python_file=python_file
    )


def resource_config(
    *, network_isolation: bool | Sandbox | None, reuse_wheels: bool
) -> dict[str, object]:
    """Run config for the ``fromager`` resource, as the launchpad's resources section sets it
    (a Sandbox chosen by the caller is passed by its kind)."""
    config: dict[str, object] = {"reuse_wheels": reuse_wheels}
    if isinstance(network_isolation, Sandbox):
        config["sandbox"] = network_isolation.kind
    else:
        config["network_isolation"] = network_isolation
    return {"resources": {"fromager": {"config": config}}}
