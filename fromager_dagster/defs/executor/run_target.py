"""Reconstructable jobs of a code location, for runs launched from Python (CLI, benchmarks), and
whether the location's definitions load with a defs-state storage.

A run of a wheel build is a run of Dagster's implicit asset job selecting a collection's
wheel group, exactly what the UI's "Materialize" launches. That job exists only inside a
repository, so it is reconstructed from the location's module and attribute (a code pointer),
as ``dagster asset materialize -m MODULE`` does; step processes load the same pointer.

:func:`execute_location_job` is ``dagster.execute_job`` plus the run's code-location origin,
the one ``dagster dev -m fromager_dagster.definitions`` gives the runs it launches: the UI then
counts a CLI run as a run of its location (Overview timeline, re-execution without the
"different code location" warning). ``execute_job`` has no parameter for it, so the run is
created here as ``execute_job`` creates it (dagster 1.13), with the origin, then executed.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import dagster as dg
from dagster._core.code_pointer import CustomPointer, ModuleCodePointer
from dagster._core.definitions.assets.job.asset_job import IMPLICIT_ASSET_JOB_NAME
from dagster._core.definitions.reconstruct import ReconstructableJob, ReconstructableRepository
from dagster._core.execution.api import execute_run
from dagster._core.remote_origin import RemoteJobOrigin, RemoteRepositoryOrigin
from dagster._core.storage.defs_state.base import DefsStateStorage
from dagster._core.workspace.load import location_origin_from_module_name

from fromager_dagster.core.build import Sandbox

__all__ = [
    "IMPLICIT_ASSET_JOB_NAME",
    "ReconstructableJob",
    "assets_job",
    "configured_location_job",
    "execute_location_job",
    "location_job",
    "resource_config",
]

#: The code location: ``dagster dev -m fromager_dagster.definitions`` loads ``defs`` from it.
LOCATION_MODULE = "fromager_dagster.definitions"
LOCATION_ATTRIBUTE = "defs"
#: The same location given its collections file and concurrency as arguments.
CONFIGURED_ATTRIBUTE = "configured_defs"
#: The repository name Dagster gives a module's ``Definitions``.
REPOSITORY_NAME = "__repository__"


def remote_origin(job_name: str, *, module: str = LOCATION_MODULE) -> RemoteJobOrigin:
    """The origin the webserver gives runs of ``job_name`` it launches from the location that
    ``dagster dev -m MODULE`` serves (location name: the module's name)."""
    location = location_origin_from_module_name(module, None, None)
    return RemoteJobOrigin(RemoteRepositoryOrigin(location, REPOSITORY_NAME), job_name)


def execute_location_job(
    job: ReconstructableJob,
    instance: dg.DagsterInstance,
    *,
    run_config: Mapping[str, Any],
    tags: Mapping[str, str],
    asset_selection: Sequence[dg.AssetKey] | None = None,
    module: str = LOCATION_MODULE,
) -> dg.JobExecutionResult:
    """``dagster.execute_job(job, instance, ...)`` whose run carries the location's origin
    (:func:`remote_origin`) and the job's own tags, as a run launched from the UI does."""
    load_data = job.get_repository_definition().repository_load_data  # type: ignore[union-attr]
    if load_data != job.repository.repository_load_data:
        # what loading recorded (defs state read, reconstruction metadata) goes with the job,
        # whose step processes then load the same; without any, the loaded definitions
        # (cached per job) serve the run as they are: the definitions are built once, not twice
        job = job.with_repository_load_data(load_data)
    job_def = job.get_definition()
    run = instance.create_run_for_job(
        job_def=job_def,
        run_config=run_config,
        tags={**job_def.run_tags, **tags},
        job_code_origin=job.get_python_origin(),
        remote_job_origin=remote_origin(job.job_name, module=module),
        repository_load_data=load_data,
        asset_selection=frozenset(asset_selection) if asset_selection else None,
    )
    return execute_run(job, run, instance, raise_on_error=False)


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


def configured_location_job(
    job_name: str, *, collections_file: Path, concurrency: int
) -> ReconstructableJob:
    """Job ``job_name`` of the code location over ``collections_file`` with ``concurrency``
    lanes (``fromager_dagster.definitions.configured_defs``): the configuration travels in the
    job's code pointer, which step processes load too, not in environment variables."""
    pointer = CustomPointer(
        ModuleCodePointer(LOCATION_MODULE, CONFIGURED_ATTRIBUTE, os.getcwd()),
        [str(collections_file), concurrency],
        [],
    )
    return ReconstructableRepository(pointer).get_reconstructable_job(job_name)


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


def loading_with_state_storage() -> bool:
    """True when the location's definitions load with a defs-state storage (a code server,
    ``dagster dev``), False without one (tests, ``Definitions.validate_loadable``, a step
    process): Dagster has no public call that says so, and without one a component's state
    cannot be read from storage (the collection's graph state then reads its graph.json)."""
    return DefsStateStorage.get() is not None
