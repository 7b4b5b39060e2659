"""bootstrap as Dagster runs: the discovery run, then (unless sdist-only) the build run."""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from ..core.graph import DependencyGraph
from ..core.index_server import write_simple_tree
from ..core.layout import OutputLayout
from ..defs.executor import ENV_MAX_CONCURRENT
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
from .run_events import RunOutcome


@dataclass
class DagsterResult:
    home: Path
    runs: list[RunOutcome]
    built: list[str]
    reused: list[str]
    nodes: int
    seconds: float

    @property
    def errors(self) -> list[str]:
        return [e for r in self.runs for e in r.errors]

    @property
    def tracebacks(self) -> list[str]:
        return [t for r in self.runs for t in r.tracebacks]


def run_bootstrap(settings: DagsterBootstrap, printer: ProgressPrinter) -> DagsterResult:
    """Discovery run, then (unless sdist-only) the build run; stops after a failed run."""
    started = time.perf_counter()
    os.environ[ENV_MAX_CONCURRENT] = str(settings.jobs)
    home = dagster_home(settings.output_dir)
    instance = open_instance(home)
    collection = collection_of(settings)
    session = uuid.uuid4().hex
    runs = [run_discovery(instance, settings, collection, session, printer)]
    if runs[0].success and settings.build_wheels and wheels_to_build(collection):
        runs.append(run_wheels(instance, settings, collection, session, printer))
    layout = OutputLayout(settings.output_dir.resolve())
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    built, reused = tally(runs)
    graph_path = layout.work_dir / "graph.json"
    nodes = len(DependencyGraph.load(graph_path).nodes) - 1 if graph_path.is_file() else 0
    return DagsterResult(home, runs, built, reused, nodes, time.perf_counter() - started)
