"""Command bootstrap: discover and build a tree, as Dagster runs or in this process."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click

from ..core.bootstrap import BootstrapOptions, BootstrapResult, bootstrap
from ..core.errors import ConfigError
from ..core.graph import DependencyGraph
from ..core.index import IndexClient, resolve_index_url
from ..core.layout import OutputLayout
from ..core.provenance import RunInfo
from ..core.resolve import Constraints, toplevel_requirements
from ..defs.collections import valid_collection_name
from .bootstrap_run import DagsterResult, RunModes, run_bootstrap
from .build_context import hold_output_folder
from .collection_file import collection_name, share_index_credentials, write_collection
from .errors import echo_run_errors, failure_line
from .errors import verbose as verbose_flag
from .location_run import DagsterBootstrap
from .options import (
    CONSTRAINTS,
    INDEX_URL,
    NETWORK_ISOLATION,
    OUTPUT_DIR,
    REQUIREMENT_FILES,
    OverrideOptions,
    apply_options,
    mode_options,
    resolve_cli_sandbox,
    settings_options,
)
from .progress import ProgressPrinter
from .run_events import describe_runs

F = TypeVar("F", bound=Callable[..., Any])


def _sandboxed(isolate: object) -> str:
    kind = getattr(isolate, "kind", "none")
    return "" if kind == "none" else f", hooks sandboxed ({kind})"


def build_options(func: F) -> F:
    """Options shared by the commands that discover or build."""
    jobs = click.option(
        "-j",
        "--jobs",
        type=click.IntRange(min=1),
        default=os.cpu_count() or 1,
        show_default="number of cores",
        help="How many downloads, environments, hooks and builds run at once.",
    )
    return apply_options(func, [CONSTRAINTS, OUTPUT_DIR, jobs, INDEX_URL, NETWORK_ISOLATION])


@click.command("bootstrap")
@click.argument("requirements", nargs=-1)
@REQUIREMENT_FILES
@click.option(
    "--sdist-only",
    is_flag=True,
    help="Build wheels only for build dependencies; read other packages' metadata.",
)
@click.option(
    "--collection",
    default=None,
    metavar="NAME",
    help="Name of the collection the Dagster runs belong to. Default: the requirements' names.",
)
@click.option(
    "--no-dagster",
    is_flag=True,
    envvar="FROMAGER_DAGSTER_BOOTSTRAP_NO_DAGSTER",
    help="Run the engine directly in this process instead of as Dagster runs.",
)
@build_options
@settings_options
@mode_options
@click.pass_context
def bootstrap_command(
    ctx: click.Context,
    requirements: tuple[str, ...],
    requirement_files: tuple[str, ...],
    sdist_only: bool,
    collection: str | None,
    no_dagster: bool,
    constraints: tuple[str, ...],
    output_dir: Path,
    jobs: int,
    index_url: str | None,
    network_isolation: bool | None,
    overrides: OverrideOptions,
    test_mode: bool,
    skip_constraints: bool,
    multiple_versions: bool,
    min_release_age: float | None,
) -> None:
    """Resolve, download and build REQUIREMENTS and everything they need, from source.

    Writes graph.json, build-order.json and constraints.txt to OUTPUT_DIR/work-dir and the
    wheels to OUTPUT_DIR/wheels-repo. By default discovery and the wheel builds run as Dagster
    runs on the local instance ($DAGSTER_HOME, else OUTPUT_DIR/dagster-home), so
    `fromager-dagster ui -O OUTPUT_DIR` shows them; --no-dagster runs the engine directly.
    """
    verbose = verbose_flag(ctx)
    variant = overrides.variant
    if collection is not None and not valid_collection_name(collection):
        raise ConfigError(
            f"--collection {collection!r} is not a valid name: use letters, digits, "
            "'_', '.' and '-', starting with a letter or digit"
        )
    reqs = toplevel_requirements(requirements, requirement_files)
    parsed_constraints = Constraints.from_files(constraints)
    index = IndexClient(resolve_index_url(index_url))
    settings = overrides.load()
    options = BootstrapOptions(
        jobs=jobs,
        sdist_only=sdist_only,
        isolate=resolve_cli_sandbox(network_isolation),
        test_mode=test_mode,
        skip_constraints=skip_constraints,
        multiple_versions=multiple_versions,
        min_release_age=min_release_age,
        run=RunInfo.from_environ(os.environ, collection=collection or collection_name(reqs)),
    )
    layout = OutputLayout(output_dir.resolve())
    hold_output_folder(ctx, layout.root)
    click.echo(
        f"bootstrapping {len(reqs)} requirement(s) from {index.display_url} with {jobs} job(s)"
        f"{_sandboxed(options.isolate)}"
        f"{'' if no_dagster else ', through Dagster'}",
        err=True,
    )
    if not no_dagster:
        share_index_credentials(resolve_index_url(index_url))
        name = collection or collection_name(reqs)
        found = overrides.paths()
        run_settings = DagsterBootstrap(
            output_dir=layout.root,
            name=name,
            collections_file=write_collection(
                layout.root,
                name,
                requirements=requirements,
                requirement_files=requirement_files,
                constraints=constraints,
                index_url=index_url,
                variant=variant,
                settings_file=found[0],
                settings_dir=found[1],
                patches_dir=found[2],
            ),
            jobs=jobs,
            isolate=options.isolate,
            build_wheels=not sdist_only,
        )
        modes = RunModes(
            test_mode=test_mode,
            multiple_versions=multiple_versions,
            skip_constraints=skip_constraints,
            min_release_age=min_release_age,
        )
        outcome = run_bootstrap(run_settings, ProgressPrinter(verbose=verbose), modes, index=index)
        if outcome.built and (layout.work_dir / "graph.json").is_file():
            _write_sbom(layout, DependencyGraph.load(layout.work_dir / "graph.json"), name, variant)
        _dagster_summary(outcome, layout, verbose)
        return
    result = bootstrap(
        reqs,
        index=index,
        constraints=parsed_constraints,
        layout=layout,
        options=options,
        progress=ProgressPrinter(verbose=verbose),
        settings=settings,
    )
    _summary(result, layout)
    if result.built:
        _write_sbom(layout, result.graph, options.run.collection or "", settings.variant)
    if result.failures:
        for failure in result.failures:
            click.echo(f"error: {failure.one_line()}", err=True)
        click.echo(f"failure report: {result.failure_report}", err=True)
        sys.exit(1)


def _write_sbom(layout: OutputLayout, graph: DependencyGraph, name: str, variant: str) -> None:
    """The collection's SBOM, as its Dagster asset writes it, once something was built."""
    from ..core.provenance import write_collection_sbom

    write_collection_sbom(layout, graph, collection=name or layout.root.name, variant=variant)


def _dagster_summary(result: DagsterResult, layout: OutputLayout, verbose: bool) -> None:
    """Print the outcome of the Dagster runs; exit 1 when a run or (test mode) a package
    failed."""
    if result.errors and not result.failures:
        echo_run_errors(result.errors, result.tracebacks, verbose)
        for line in describe_runs(result):
            click.echo(line, err=True)
        sys.exit(1)
    _done(
        result.seconds, result.nodes, result.built, result.reused, result.prebuilt, result.failures
    )
    _outputs(layout, result.outputs)
    for line in describe_runs(result):
        click.echo(line, err=True)
    click.echo(f"see them in the UI: fromager-dagster ui -O {layout.root}", err=True)
    if result.failures:
        for record in result.failures:
            click.echo(f"error: {failure_line(record)}", err=True)
        click.echo(f"failure report: {result.failure_report}", err=True)
        sys.exit(1)


def _done(
    seconds: float,
    nodes: int,
    built: Sequence[str],
    reused: Sequence[str],
    prebuilt: Sequence[str],
    failures: Sequence[object],
) -> None:
    click.echo(
        f"done in {seconds:.1f}s: {nodes} packages, {len(built)} built, {len(reused)} reused"
        + (f", {len(prebuilt)} pre-built" if prebuilt else "")
        + (f", {len(failures)} failed" if failures else ""),
        err=True,
    )


def _outputs(layout: OutputLayout, outputs: dict[str, Path]) -> None:
    """Where the wheels and discovery's files are (constraints.txt only when written)."""
    click.echo(f"wheels:      {layout.wheels_downloads}", err=True)
    for key, label, name in (
        ("graph", "graph", "graph.json"),
        ("build_order", "build order", "build-order.json"),
    ):
        click.echo(f"{label + ':':<13}{outputs.get(key, layout.work_dir / name)}", err=True)
    if "constraints" in outputs:
        click.echo(f"constraints: {outputs['constraints']}", err=True)
    click.echo(f"logs:        {layout.logs_dir}", err=True)


def _summary(result: BootstrapResult, layout: OutputLayout) -> None:
    nodes = len(result.graph.nodes) - 1
    _done(result.seconds, nodes, result.built, result.reused, result.prebuilt, result.failures)
    if result.timings:
        spent = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(result.timings.items()))
        click.echo(f"time spent (summed over jobs): {spent}", err=True)
    _outputs(layout, result.outputs)
