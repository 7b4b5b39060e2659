"""Runs of the code location's jobs from the CLI: discovery, and the wheels' materialization.

The command writes its collection to ``<OUTPUT_DIR>/collections.yaml`` and runs the jobs of
the code location (``fromager_dagster.definitions``) over that file with ``execute_job``:
``discover_<c>_job``, and Dagster's implicit asset job selecting the collection's wheel
assets, as the UI does. The file and the concurrency are the location's arguments
(:func:`~fromager_dagster.defs.executor.run_target.configured_location_job`), which step processes
rebuild it from.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ..core.build import Sandbox
from ..core.errors import ConfigError
from ..core.graph import DependencyGraph
from ..core.layout import OutputLayout
from ..core.plugins import Plugins
from ..core.repository import WheelRepository, reusable_wheel
from ..defs.collections import Collection, load_collections
from ..defs.discovery import discover_job_name
from ..defs.executor import (
    IMPLICIT_ASSET_JOB_NAME,
    configured_location_job,
    execute_location_job,
    resource_config,
)
from ..defs.run_tags import CLI_TAG, COLLECTION_TAG
from ..defs.up_to_date import wheels_needing_steps
from ..defs.wheels import (
    built_nodes,
    graph_wheel_keys,
    node_asset_key,
    wheel_op_name,
)
from .progress import ProgressPrinter
from .run_events import QUIET, SESSION_TAG, RunOutcome, watched


@dataclass(frozen=True)
class DagsterBootstrap:
    """The command's settings once its arguments are checked."""

    output_dir: Path
    name: str
    collections_file: Path
    jobs: int
    isolate: bool | Sandbox
    build_wheels: bool  # False with --sdist-only: discovery builds what builds need, no more
    reuse: bool = True  # reuse a wheel built earlier from the same recorded inputs


def collection_of(settings: DagsterBootstrap) -> Collection:
    """The command's collection, read back from the file it wrote."""
    collection = load_collections(settings.collections_file).get(settings.name)
    if collection is None:
        raise ConfigError(f"{settings.collections_file}: no collection {settings.name!r}")
    return collection


def run_config(settings: DagsterBootstrap) -> dict[str, Any]:
    """Quiet logging, and the ``fromager`` resource as the command's options set it."""
    return {
        **QUIET,
        **resource_config(network_isolation=settings.isolate, reuse_wheels=settings.reuse),
    }


@dataclass(frozen=True)
class WheelPlan:
    """The collection's wheel assets split: those to run, and those up to date."""

    keys: list[dg.AssetKey]
    up_to_date: list[str]  # ``name==version`` of the wheel assets left alone


def wheels_to_build(
    instance: dg.DagsterInstance, collection: Collection, *, reuse: bool = True
) -> WheelPlan:
    """The collection's wheel assets to materialize (none before discovery, or when all are
    pre-built): with ``reuse``, only the missing and changed ones, as "materialize changed
    and missing" would (:func:`~fromager_dagster.defs.up_to_date.wheels_needing_steps`)."""
    graph = _graph(collection)
    if graph is None:
        return WheelPlan([], [])
    if not reuse:
        return WheelPlan(graph_wheel_keys(graph, collection.variant), [])
    needed = set(wheels_needing_steps(instance, collection, graph))
    up_to_date = [
        key
        for key in built_nodes(graph)
        if node_asset_key(graph, collection.variant, key) not in needed
    ]
    return WheelPlan(sorted(needed), sorted(up_to_date))


def run_discovery(
    instance: dg.DagsterInstance,
    settings: DagsterBootstrap,
    collection: Collection,
    session: str,
    printer: ProgressPrinter,
    *,
    discovery_config: dict[str, Any] | None = None,
) -> RunOutcome:
    """A run of the collection's discovery job (``discovery_config``: its run config)."""
    job_name = discover_job_name(collection)
    return _run(
        instance, settings, collection, job_name, session, printer, extra_config=discovery_config
    )


def run_wheels(
    instance: dg.DagsterInstance,
    settings: DagsterBootstrap,
    collection: Collection,
    keys: Sequence[dg.AssetKey],
    session: str,
    printer: ProgressPrinter,
    *,
    command: str = "bootstrap",
) -> RunOutcome:
    """A run materializing ``keys``, the collection's wheel assets (:func:`wheels_to_build`)
    or some of them, as the UI's "Materialize" does: Dagster's implicit asset job with that
    selection."""
    return _run(
        instance,
        settings,
        collection,
        IMPLICIT_ASSET_JOB_NAME,
        session,
        printer,
        label=f"{collection.ident}_wheels",
        asset_selection=keys,
        command=command,
    )


def _run(
    instance: dg.DagsterInstance,
    settings: DagsterBootstrap,
    collection: Collection,
    job_name: str,
    session: str,
    printer: ProgressPrinter,
    *,
    label: str = "",
    asset_selection: Sequence[dg.AssetKey] | None = None,
    command: str = "bootstrap",
    extra_config: dict[str, Any] | None = None,
) -> RunOutcome:
    """Run ``job_name`` of the code location on ``instance`` and follow it (``extra_config``:
    run config beside the logging and ``fromager`` resource sections)."""
    graph = _graph(collection)
    requirements = _requirements_by_step(collection, graph)
    building = asset_selection is not None
    reusable = _reusable_steps(collection, graph) if settings.reuse and building else set()
    tags = {SESSION_TAG: session, COLLECTION_TAG: collection.ident, CLI_TAG: command}

    def execute() -> Any:
        # dg.execute_job, with the UI's code-location origin. Its result is not entered as a
        # context: that would initialize the run's resources again to load step outputs
        # (nothing here reads them), logging their start-up in the run after its success.
        return execute_location_job(
            configured_location_job(
                job_name, collections_file=settings.collections_file, concurrency=settings.jobs
            ),
            instance,
            run_config={**run_config(settings), **(extra_config or {})},
            tags=tags,
            asset_selection=asset_selection,
        )

    return watched(
        instance,
        RunOutcome(job_name=job_name, label=label),
        session,
        printer,
        lambda s: requirements.get(s, ""),
        execute,
        announce=lambda s: s not in reusable,
    )


def _graph(collection: Collection) -> DependencyGraph | None:
    return DependencyGraph.load(collection.graph_path) if collection.graph_path.is_file() else None


def _requirements_by_step(collection: Collection, graph: DependencyGraph | None) -> dict[str, str]:
    """Step key -> ``name==version`` for the wheel assets of the collection's graph."""
    if graph is None:
        return {}
    return {
        wheel_op_name(collection, n.canonicalized_name, n.version): key
        for key, n in graph.nodes.items()
        if key
    }


def _reusable_steps(collection: Collection, graph: DependencyGraph | None) -> set[str]:
    """Steps whose wheel an earlier build made from the same inputs: they will only reuse it."""
    if graph is None:
        return set()
    layout = OutputLayout(collection.output_dir)
    settings = collection.settings()
    repository = WheelRepository(layout)
    plugins = Plugins.load()
    return {
        wheel_op_name(collection, node.canonicalized_name, node.version)
        for key, node in graph.nodes.items()
        if key
        and not node.pre_built
        and reusable_wheel(
            graph, key, layout, settings=settings, plugins=plugins, repository=repository
        )
        is not None
    }


def tally(runs: list[RunOutcome]) -> tuple[list[str], list[str]]:
    """Built in this session (by discovery or a build run) and reused from an earlier one."""
    built: set[str] = set()
    reused: set[str] = set()
    for run in runs:
        for meta in run.materializations:
            if "graph_path" in meta:  # discovery's; its lists are left out when empty
                built |= {x for x in str(meta.get("built_for_discovery", "")).split(", ") if x}
                reused |= {x for x in str(meta.get("reused_for_discovery", "")).split(", ") if x}
            elif "requirement" in meta:
                (reused if meta.get("reused") else built).add(str(meta["requirement"]))
    return sorted(built), sorted(reused - built)
