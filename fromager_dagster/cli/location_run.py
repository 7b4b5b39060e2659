"""Runs of the code location's own jobs (``discover_<c>_job``, ``build_<c>_job``) from the CLI.

The command writes its collection to ``<OUTPUT_DIR>/collections.yaml`` and runs the jobs with
``execute_job``; step processes rebuild the job from that file (:func:`bootstrap_job`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg

from ..core.errors import ConfigError
from ..core.graph import DependencyGraph
from ..core.layout import OutputLayout
from ..defs.collections import Collection, load_collections
from ..defs.graph_state import build_job_name
from ..defs.location import build_definitions
from ..defs.resources import FromagerResource
from ..defs.wheels import reusable_wheel, wheel_op_name
from .progress import ProgressPrinter
from .run_events import QUIET, SESSION_TAG, RunOutcome, watched

COLLECTION_TAG = "fromager/collection"


@dataclass(frozen=True)
class DagsterBootstrap:
    """The command's settings once its arguments are checked."""

    output_dir: Path
    name: str
    collections_file: Path
    jobs: int
    isolate: bool
    build_wheels: bool  # False with --sdist-only: discovery builds what builds need, no more
    reuse: bool = True  # reuse a wheel built earlier from the same recorded inputs


def bootstrap_job(
    collections_file: str,
    name: str,
    job_name: str,
    concurrency: int,
    isolate: bool,
    reuse: bool = True,
) -> dg.JobDefinition:
    """Reconstructor of the command's jobs, called in the CLI and in every step process."""
    collection = load_collections(Path(collections_file))[name]
    defs = build_definitions(
        {name: collection},
        concurrency=concurrency,
        fromager=FromagerResource(network_isolation=isolate, reuse_wheels=reuse),
    )
    return defs.resolve_job_def(job_name)


def collection_of(settings: DagsterBootstrap) -> Collection:
    """The command's collection, read back from the file it wrote."""
    collection = load_collections(settings.collections_file).get(settings.name)
    if collection is None:
        raise ConfigError(f"{settings.collections_file}: no collection {settings.name!r}")
    return collection


def job_target(settings: DagsterBootstrap, job_name: str) -> dg.ReconstructableJob:
    """``job_name`` of the command's collection, as step processes rebuild it."""
    return dg.build_reconstructable_job(
        __name__,
        bootstrap_job.__name__,
        reconstructable_kwargs={
            "collections_file": str(settings.collections_file),
            "name": settings.name,
            "job_name": job_name,
            "concurrency": settings.jobs,
            "isolate": settings.isolate,
            "reuse": settings.reuse,
        },
    )


def has_job(target: dg.ReconstructableJob) -> bool:
    """Whether the location has the job (no build job without wheel assets)."""
    try:
        target.get_definition()
    except Exception:  # no wheel assets: the graph has nothing to build from source
        return False
    return True


def run_job(
    instance: dg.DagsterInstance,
    settings: DagsterBootstrap,
    collection: Collection,
    job: str | dg.ReconstructableJob,
    session: str,
    printer: ProgressPrinter,
    *,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    command: str = "bootstrap",
    run_config: dict[str, Any] | None = None,
) -> RunOutcome:
    """Run ``job`` (a name or a target) on ``instance`` and follow it; what the run did."""
    target = job_target(settings, job) if isinstance(job, str) else job
    job_def = target.get_definition()
    graph = _graph(collection)
    requirements = _requirements_by_step(collection, graph)
    building = job_def.name == build_job_name(collection)
    reusable = _reusable_steps(collection, graph) if settings.reuse and building else set()
    tags = {SESSION_TAG: session, COLLECTION_TAG: collection.ident, "fromager/cli": command}

    def execute() -> Any:
        with dg.execute_job(
            target,
            instance,
            run_config={**QUIET, **(run_config or {})},
            tags=tags,
            raise_on_error=False,
            asset_selection=asset_selection,
        ) as result:
            return result

    return watched(
        instance,
        RunOutcome(job_name=job_def.name),
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
    return {
        wheel_op_name(collection, node.canonicalized_name, node.version)
        for key, node in graph.nodes.items()
        if key and not node.pre_built and reusable_wheel(graph, key, layout, settings) is not None
    }


def tally(runs: list[RunOutcome]) -> tuple[list[str], list[str]]:
    """Built in this session (by discovery or a build run) and reused from an earlier one."""
    built: set[str] = set()
    reused: set[str] = set()
    for run in runs:
        for meta in run.materializations:
            if "built_for_discovery" in meta:
                built |= {x for x in str(meta["built_for_discovery"]).split(", ") if x}
                reused |= {x for x in str(meta.get("reused_for_discovery", "")).split(", ") if x}
            elif "requirement" in meta:
                (reused if meta.get("reused") else built).add(str(meta["requirement"]))
    return sorted(built), sorted(reused - built)
