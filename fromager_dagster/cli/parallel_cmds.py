"""Commands build-parallel and bootstrap-parallel: a graph's wheels as one Dagster run."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import click
from packaging.requirements import Requirement

from ..core.credentials import redact_url
from ..core.errors import ConfigError, FromagerDagsterError
from ..core.graph import DependencyGraph, write_atomic
from ..core.index import IndexClient, resolve_index_url
from ..core.layout import OutputLayout
from ..core.repository import find_source
from ..core.resolve import toplevel_requirements
from .bootstrap_run import run_bootstrap
from .build_context import BuildContext, default_workers, finish, workers_option
from .collection_file import (
    collection_name,
    share_index_credentials,
    toplevel_of,
)
from .errors import echo_run_errors
from .graph_build import GraphBuild, run_graph_build
from .location_run import DagsterBootstrap, tally
from .options import INDEX_URL, REQUIREMENT_FILES, TEST_MODE, OutputOptions, output_options


def check_sources(graph: DependencyGraph, layout: OutputLayout, source: Path) -> None:
    """Every node built from source has its sdist downloaded; ConfigError names the missing."""
    missing = []
    for key, node in graph.nodes.items():
        if not key or node.pre_built:
            continue
        try:
            find_source(layout, node.canonicalized_name, node.version, node.download_url)
        except FromagerDagsterError:
            missing.append(key)
    if missing:
        shown = ", ".join(missing[:5]) + (
            f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        )
        raise ConfigError(
            f"{source}: the sources of {shown} are not in {layout.sdists_downloads}; run "
            "`fromager-dagster bootstrap --sdist-only` with this output folder first"
        )


def graph_plan(
    context: BuildContext,
    graph: DependencyGraph,
    *,
    jobs: int,
    force: bool,
    test_mode: bool,
    index_url: str | None,
) -> GraphBuild:
    """Write the collection of ``graph`` and return the build-parallel plan over it."""
    needs_index = test_mode or any(n.pre_built for n in graph.nodes.values())
    index = IndexClient(resolve_index_url(index_url)) if needs_index else None
    if index_url:
        share_index_credentials(resolve_index_url(index_url))
    toplevel = toplevel_of(graph)
    name = collection_name([Requirement(r.split(";")[0]) for r in toplevel])
    collections_file = context.write_collection(
        name, requirements=toplevel, requirement_files=[], index_url=index_url
    )
    return GraphBuild(
        run=DagsterBootstrap(
            output_dir=context.layout.root,
            name=name,
            collections_file=collections_file,
            jobs=jobs,
            isolate=context.isolate,
            build_wheels=True,
            reuse=not force,
        ),
        test_mode=test_mode,
        index=index,
    )


@click.command("build-parallel")
@click.argument("graph_file", type=click.Path(path_type=Path))
@output_options
@INDEX_URL
@workers_option
@click.option("--force", is_flag=True, help="Rebuild wheels an earlier build made.")
@TEST_MODE
@click.pass_context
def build_parallel_command(
    ctx: click.Context,
    /,
    graph_file: Path,
    output: OutputOptions,
    index_url: str | None,
    max_workers: int | None,
    force: bool,
    test_mode: bool,
) -> None:
    """Build every wheel of GRAPH_FILE (graph.json), in parallel, hermetically.

    Only the graph and the sources already in OUTPUT_DIR/sdists-repo/downloads are used: no
    index is asked and no discovery hook runs again; each build environment holds exactly the
    node's recorded build requirements, from the local repository. The graph's wheel assets
    run as one Dagster run (build_<collection>_job) with at most MAX_WORKERS builds at once.
    The index is asked only for pre-built packages' wheels and, with --test-mode, for the
    wheel of a package that failed.
    """
    context = BuildContext(ctx, output)
    graph = DependencyGraph.load(graph_file)
    graph.check_buildable(str(graph_file))
    check_sources(graph, context.layout, graph_file)
    text = json.dumps(graph.to_json(), indent=2)
    target = context.layout.work_dir / "graph.json"
    plan = graph_plan(
        context,
        graph,
        jobs=max_workers or default_workers(),
        force=force,
        test_mode=test_mode,
        index_url=index_url,
    )
    if not target.is_file() or target.read_text(encoding="utf-8") != text:
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(target, text)
    nodes = len(graph.nodes) - 1
    click.echo(
        f"building {nodes} package(s) from {graph_file} with {plan.run.jobs} worker(s), "
        "hermetically, through Dagster",
        err=True,
    )
    summary = run_graph_build(plan, context.printer())
    finish(summary, context, test_mode=test_mode, packages=nodes)


@click.command("bootstrap-parallel")
@click.argument("requirements", nargs=-1)
@REQUIREMENT_FILES
@output_options
@INDEX_URL
@workers_option
@TEST_MODE
@click.pass_context
def bootstrap_parallel_command(
    ctx: click.Context,
    /,
    requirements: tuple[str, ...],
    requirement_files: tuple[str, ...],
    output: OutputOptions,
    index_url: str | None,
    max_workers: int | None,
    test_mode: bool,
) -> None:
    """bootstrap --sdist-only, then build-parallel on the graph it wrote.

    Discovery resolves REQUIREMENTS, downloads every sdist and builds only the wheels other
    builds need; then every wheel is built from the graph, MAX_WORKERS at a time. Both stages
    are Dagster runs on the local instance. --test-mode applies to the build stage.
    """
    workers = max_workers or default_workers()
    context = BuildContext(ctx, output)
    reqs = toplevel_requirements(requirements, requirement_files)
    url = resolve_index_url(index_url)
    share_index_credentials(url)
    name = collection_name(reqs)
    collections_file = context.write_collection(
        name, requirements=requirements, requirement_files=requirement_files, index_url=url
    )
    run = DagsterBootstrap(
        output_dir=context.layout.root,
        name=name,
        collections_file=collections_file,
        jobs=workers,
        isolate=context.isolate,
        build_wheels=False,
    )
    click.echo(
        f"bootstrapping {len(reqs)} requirement(s) from {redact_url(url)} (sdist only), "
        f"then building with {workers} worker(s), through Dagster",
        err=True,
    )
    printer = context.printer()
    discovered = run_bootstrap(run, printer)
    if discovered.errors:
        echo_run_errors(discovered.errors, discovered.tracebacks, context.verbose)
        sys.exit(1)
    graph = DependencyGraph.load(context.layout.work_dir / "graph.json")
    plan = GraphBuild(
        run=dataclasses.replace(run, build_wheels=True),
        test_mode=test_mode,
        index=IndexClient(url),
    )
    summary = run_graph_build(plan, printer)
    summary.runs[:0] = discovered.runs
    summary.seconds += discovered.seconds
    # a wheel discovery built is built by this command, not reused from an earlier one
    summary.built, summary.reused = tally(summary.runs)
    finish(summary, context, test_mode=test_mode, packages=len(graph.nodes) - 1)
