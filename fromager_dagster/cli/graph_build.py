"""build-parallel as one Dagster run of the collection graph's wheel assets; test mode's rescue."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import dagster as dg

from ..core.bootstrap import FailureRecord, blocked_failures, plan_second_pass
from ..core.errors import FromagerDagsterError
from ..core.graph import DependencyGraph
from ..core.index import IndexClient, write_simple_tree
from ..core.layout import OutputLayout
from ..core.plugins import Plugins
from ..core.repository import take_prebuilt
from ..core.settings import Settings
from ..defs.collections import Collection
from ..defs.graph_state import publish_graph
from ..defs.wheels import built_nodes, node_asset_key, wheel_op_name
from .build_summary import BuildSummary, step_record
from .instance import dagster_home, open_instance
from .location_run import DagsterBootstrap, collection_of, run_wheels, wheels_to_build
from .progress import ProgressPrinter


@dataclass(frozen=True)
class GraphBuild:
    """A ``build-parallel`` command once its arguments are checked."""

    run: DagsterBootstrap
    test_mode: bool = False
    index: IndexClient | None = None  # only for pre-built nodes and test-mode fallbacks
    publish: bool = True  # publish the graph as a state version (bootstrap's discovery did)


def run_graph_build(plan: GraphBuild, printer: ProgressPrinter) -> BuildSummary:
    """The collection graph's wheel assets as one Dagster run (``-m`` steps at a time).

    Hermetic: the graph and the downloaded sources only. The index is asked only for a
    pre-built node whose wheel is not in ``wheels-repo/prebuilt`` and, in test mode, for a
    fallback wheel of a package that failed; packages whose builds waited on it are then
    built in a second run.
    """
    started = time.perf_counter()
    settings = plan.run
    layout = OutputLayout(settings.output_dir.resolve()).ensure()
    instance = open_instance(dagster_home(settings.output_dir))
    collection = collection_of(settings)
    graph = DependencyGraph.load(collection.graph_path)
    summary = BuildSummary(home=dagster_home(settings.output_dir))
    if plan.publish:
        publish_graph(instance, collection, collection.graph_path)
    session = uuid.uuid4().hex
    prebuilt = [n for key, n in graph.nodes.items() if key and n.pre_built]
    if prebuilt:  # the prebuilt_wheel hooks run with the collection's settings (its variant)
        chosen, plugins = collection.settings(), Plugins.load()
        for node in prebuilt:
            name, version = node.canonicalized_name, node.version
            _prebuilt_node(
                summary, layout, name, version, plan, printer, settings=chosen, plugins=plugins
            )
    wheels = wheels_to_build(instance, collection, reuse=settings.reuse)
    summary.reused_up_to_date(wheels.up_to_date)
    if keys := wheels.keys:
        first = run_wheels(instance, settings, collection, keys, session, printer, command="build")
        summary.runs.append(first)
        for meta in first.materializations:
            summary.add(meta)
        if plan.test_mode and not first.success:
            in_run = set(keys)
            selected = [
                k
                for k in built_nodes(graph)
                if node_asset_key(graph, collection.variant, k) in in_run
            ]
            _rescue(plan, summary, instance, collection, graph, session, printer, selected)
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    summary.seconds = time.perf_counter() - started
    return summary


def _prebuilt_node(
    summary: BuildSummary,
    layout: OutputLayout,
    name: str,
    version: str,
    plan: GraphBuild,
    printer: ProgressPrinter,
    *,
    settings: Settings,
    plugins: Plugins,
) -> None:
    try:
        wheel = take_prebuilt(
            layout, name, version, index=plan.index, settings=settings, plugins=plugins
        )
    except FromagerDagsterError as exc:
        if not plan.test_mode:
            raise
        summary.failures.append(FailureRecord.from_exception(exc, package=name, version=version))
        printer("failed", f"{name}=={version}", exc.one_line())
        return
    summary.prebuilt.append(f"{name}=={version}")
    summary.wheels.append(wheel.path)
    printer("prebuilt", f"{name}=={version}", wheel.path.name)


def _rescue(
    plan: GraphBuild,
    summary: BuildSummary,
    instance: dg.DagsterInstance,
    collection: Collection,
    graph: DependencyGraph,
    session: str,
    printer: ProgressPrinter,
    selected: list[str],
) -> None:
    """Test mode: record each failed build, then the engine's second pass
    (:func:`~fromager_dagster.core.bootstrap.plan_second_pass`, as the Dagster layer's
    sensor does it for a UI run): the index's wheel where there is one, then a second run of
    what waited on a package that is now there."""
    layout = OutputLayout(collection.output_dir)
    step_nodes = {
        wheel_op_name(collection, n.canonicalized_name, n.version): key
        for key, n in graph.nodes.items()
        if key
    }
    failed: list[str] = []
    for run in summary.runs:
        for step, failure in run.failed_steps.items():
            key = step_nodes.get(step, step)
            node = graph.nodes.get(key)
            name, version = (node.canonicalized_name, node.version) if node else (key, None)
            summary.failures.append(step_record(failure, name, version))
            failed.append(key)
    rescue = plan_second_pass(
        graph,
        failed,
        layout=layout,
        index=plan.index,
        settings=collection.settings(),  # a package's resolver_dist.ignore_platform
        plugins=Plugins.load(),
        selected=selected,
    )
    for key, why in rescue.no_fallback.items():
        printer.note(f"no pre-built fallback for {key}: {why}")
    for key, wheel in rescue.fallbacks.items():
        printer("prebuilt", key, wheel.name)
        summary.prebuilt.append(key)
        summary.wheels.append(wheel)
    if rescue.rebuild:
        keys = [node_asset_key(graph, collection.variant, k) for k in rescue.rebuild]
        second = run_wheels(instance, plan.run, collection, keys, session, printer, command="build")
        summary.runs.append(second)
        for meta in second.materializations:
            summary.add(meta)
        for step, failure in second.failed_steps.items():
            key = step_nodes.get(step, step)
            node = graph.nodes[key]
            summary.failures.append(step_record(failure, node.canonicalized_name, node.version))
            failed.append(key)
    summary.failures.extend(blocked_failures(graph, layout, failed=failed, selected=selected))
