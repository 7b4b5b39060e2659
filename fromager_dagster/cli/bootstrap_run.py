"""bootstrap as Dagster runs: the discovery run, then (unless sdist-only) the build run."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..core.bootstrap import FailureRecord, write_failure_report
from ..core.errors import FromagerDagsterError
from ..core.graph import DependencyGraph
from ..core.index import IndexClient, reading_ahead, resolve_index_url, write_simple_tree
from ..core.layout import OutputLayout
from ..core.resolve import toplevel_requirements
from ..defs.collections import Collection
from ..defs.discovery import discovery_run_config
from .graph_build import GraphBuild, run_graph_build
from .instance import dagster_home, open_instance
from .location_run import (
    DagsterBootstrap,
    collection_of,
    run_discovery,
    run_wheels,
    tally,
    wheels_to_build,
)
from .progress import ProgressPrinter
from .run_events import RunErrors, RunOutcome

#: The discovery materialization's metadata keys of the files it wrote.
_DEPENDENCY_FAILED = "DependencyFailedError"  # core.bootstrap's and the build stage's
_OUTPUTS = {
    "graph": "graph_path",
    "build_order": "build_order_path",
    "constraints": "constraints_path",
}


@dataclass(frozen=True)
class RunModes:
    """bootstrap's run modes, given to the discovery run as its config (``DiscoveryConfig``)."""

    test_mode: bool = False
    multiple_versions: bool = False
    skip_constraints: bool = False
    min_release_age: float | None = None


@dataclass
class DagsterResult(RunErrors):
    """What ``bootstrap`` through Dagster did."""

    home: Path
    runs: list[RunOutcome]
    built: list[str]
    reused: list[str]
    nodes: int
    seconds: float
    prebuilt: list[str] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)  # what discovery wrote
    failures: list[FailureRecord] = field(default_factory=list)  # test mode, both stages
    failure_report: Path | None = None  # test mode, when something failed


def run_bootstrap(
    settings: DagsterBootstrap,
    printer: ProgressPrinter,
    modes: RunModes | None = None,
    *,
    index: IndexClient | None = None,
) -> DagsterResult:
    """Discovery run, then (unless sdist-only) the build run.

    Without test mode a failed run stops the command. In test mode a discovery run in which a
    package failed still writes and materializes the graph, then fails; the build stage then
    runs as ``build-parallel --test-mode`` does (``index`` gives the fallback wheels), and the
    failures of both stages go to one report: the one discovery wrote, else a new one.
    """
    modes = modes or RunModes()
    started = time.perf_counter()
    home = dagster_home(settings.output_dir)
    collection = collection_of(settings)
    layout = OutputLayout(settings.output_dir.resolve())
    session = uuid.uuid4().hex
    # the index pages discovery will read, read meanwhile on another core (.index.prefetch)
    with reading_ahead(*_pages_ahead(collection)):
        instance = open_instance(home)
        discovery = run_discovery(
            instance,
            settings,
            collection,
            session,
            printer,
            discovery_config=discovery_run_config(collection, **asdict(modes)),
        )
    runs = [discovery]
    up_to_date: list[str] = []
    found = _discovered(discovery)
    discovered = _records(found) if modes.test_mode else []
    failures = list(discovered)
    report = Path(str(found["failure_report"])) if discovered else None
    prebuilt = _listed(found.get("prebuilt_for_discovery"))
    carry_on = discovery.success or (modes.test_mode and "graph_path" in found)
    if carry_on and settings.build_wheels and modes.test_mode:
        summary = run_graph_build(
            GraphBuild(run=settings, test_mode=True, index=index, publish=False), printer
        )
        runs += summary.runs
        prebuilt += summary.prebuilt
        failures = merge_failures(failures, summary.failures)
        if failures and (report is None or failures != discovered):
            # the build's failures extend the discovery's report, or make one
            report = write_failure_report(layout.work_dir, failures, path=report)
    elif carry_on and settings.build_wheels:
        wanted = wheels_to_build(instance, collection, reuse=settings.reuse)
        if wanted.up_to_date:
            printer.note(f"{len(wanted.up_to_date)} wheels up to date: no build step for them")
        if wanted.keys:
            runs.append(run_wheels(instance, settings, collection, wanted.keys, session, printer))
    if all(run.success for run in runs):
        write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    else:  # the index over what was built; a full disk must not hide why a run failed
        with contextlib.suppress(OSError):
            write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    built, reused = tally(runs)
    reused = sorted(set(reused) | set(up_to_date) - set(built))
    graph_path = layout.work_dir / "graph.json"
    nodes = len(DependencyGraph.load(graph_path).nodes) - 1 if graph_path.is_file() else 0
    return DagsterResult(
        home,
        runs,
        built,
        reused,
        nodes,
        time.perf_counter() - started,
        prebuilt=sorted(set(prebuilt)),
        outputs=_outputs(found),
        failures=failures,
        failure_report=report,
    )


def _pages_ahead(collection: Collection) -> tuple[str, list[str]]:
    """The index and the projects whose pages discovery reads first: the top-level
    requirements', then those of the graph it made last time. Whatever cannot be read here
    is left to discovery, which reports it."""
    names: list[str] = []
    try:
        index_url = resolve_index_url(collection.index_url)
        reqs = toplevel_requirements(collection.requirements, collection.requirement_files)
    except (FromagerDagsterError, OSError, ValueError):
        return "", []
    names += [r.name for r in reqs]
    with contextlib.suppress(FromagerDagsterError, OSError, ValueError):
        if collection.graph_path.is_file():
            graph = DependencyGraph.load(collection.graph_path)
            names += [node.canonicalized_name for key, node in graph.nodes.items() if key]
    return index_url, names


def _discovered(run: RunOutcome) -> dict[str, Any]:
    """The metadata of the discovery run's graph materialization ({} when there is none)."""
    return next((m for m in run.materializations if "graph_path" in m), {})


def _listed(value: Any) -> list[str]:
    return [x for x in str(value or "").split(", ") if x]


def _outputs(found: dict[str, Any]) -> dict[str, Path]:
    """The files discovery wrote (constraints.txt is not written in some modes)."""
    return {
        name: Path(str(found[key]))
        for name, key in _OUTPUTS.items()
        if key in found and not str(found[key]).startswith("none")
    }


def _records(found: dict[str, Any]) -> list[FailureRecord]:
    body = found.get("failure_records") or {}
    return [FailureRecord(**entry) for entry in body.get("failures", [])]


def merge_failures(
    first: Sequence[FailureRecord], more: Sequence[FailureRecord]
) -> list[FailureRecord]:
    """One record per package, ``first``'s before ``more``'s. As the engine reports, a package
    that failed only because a build requirement failed is listed when nothing else failed."""
    merged: dict[tuple[str, str | None], FailureRecord] = {}
    for record in [*first, *more]:
        merged.setdefault((record.package, record.version), record)
    causes = [r for r in merged.values() if r.exception_type != _DEPENDENCY_FAILED]
    return causes or list(merged.values())
