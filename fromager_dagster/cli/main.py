"""The ``fromager-dagster`` command: fromager-compatible commands over the engine."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click

from ..core.bootstrap import BootstrapFailed, BootstrapOptions, BootstrapResult, bootstrap
from ..core.errors import FromagerDagsterError
from ..core.index import IndexClient
from ..core.index_url import resolve_index_url
from ..core.isolation import resolve_isolation
from ..core.layout import OutputLayout
from ..core.requirements import Constraints, toplevel_requirements
from ..core.settings import default_paths
from . import build_cmds, graph_cmd, overrides_cmd
from .bootstrap_run import DagsterResult, run_bootstrap
from .collection_file import collection_name, write_collection
from .location_run import DagsterBootstrap
from .options import (
    CONSTRAINTS,
    INDEX_URL,
    NETWORK_ISOLATION,
    OUTPUT_DIR,
    REQUIREMENT_FILES,
    apply_options,
    load_cli_settings,
    mode_options,
    settings_options,
)
from .progress import ProgressPrinter
from .run_events import describe_runs

F = TypeVar("F", bound=Callable[..., Any])


def _fail(exc: FromagerDagsterError, verbose: bool) -> None:
    if verbose:
        traceback.print_exception(exc)
    failures = exc.failures if isinstance(exc, BootstrapFailed) else [exc]
    for failure in failures:
        click.echo(f"error: {failure.one_line()}", err=True)
    sys.exit(1)


@click.group(
    context_settings={
        "help_option_names": ["-h", "--help"],
        "auto_envvar_prefix": "FROMAGER_DAGSTER",
    }
)
@click.option("-v", "--verbose", is_flag=True, help="Show every step and tracebacks on errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool) -> None:
    """Rebuild whole Python dependency trees from source, with fromager-compatible outputs."""
    ctx.ensure_object(dict)
    ctx.obj["verbose"] = verbose


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


@cli.command("bootstrap")
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
    variant: str,
    settings_file: Path | None,
    settings_dir: Path | None,
    patches_dir: Path | None,
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
    verbose = ctx.obj["verbose"]
    try:
        reqs = toplevel_requirements(requirements, requirement_files)
        parsed_constraints = Constraints.from_files(constraints)
        index = IndexClient(resolve_index_url(index_url))
        settings = load_cli_settings(variant, settings_file, settings_dir, patches_dir)
        options = BootstrapOptions(
            jobs=jobs,
            sdist_only=sdist_only,
            isolate=resolve_isolation(network_isolation),
            test_mode=test_mode,
            skip_constraints=skip_constraints,
            multiple_versions=multiple_versions,
            min_release_age=min_release_age,
        )
        layout = OutputLayout(output_dir.resolve())
        in_process = test_mode or multiple_versions or skip_constraints or min_release_age
        if in_process and not no_dagster:
            click.echo(
                "note: --test-mode, --multiple-versions, --skip-constraints and "
                "--min-release-age run the engine in this process (as --no-dagster)",
                err=True,
            )
            no_dagster = True
        click.echo(
            f"bootstrapping {len(reqs)} requirement(s) from {index.index_url} with {jobs} job(s)"
            f"{', network-isolated' if options.isolate else ''}"
            f"{'' if no_dagster else ', through Dagster'}",
            err=True,
        )
        if not no_dagster:
            name = collection or collection_name(reqs)
            found = [
                p.resolve() if p is not None else None
                for p in default_paths(settings_file, settings_dir, patches_dir)
            ]
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
            outcome = run_bootstrap(run_settings, ProgressPrinter(verbose=verbose))
    except FromagerDagsterError as exc:
        _fail(exc, verbose)
        return
    if not no_dagster:
        _dagster_summary(outcome, layout, verbose)
        return
    try:
        result = bootstrap(
            reqs,
            index=index,
            constraints=parsed_constraints,
            layout=layout,
            options=options,
            progress=ProgressPrinter(verbose=verbose),
            settings=settings,
        )
    except FromagerDagsterError as exc:
        _fail(exc, verbose)
        return
    _summary(result, layout)
    if result.failures:
        for failure in result.failures:
            click.echo(f"error: {failure.one_line()}", err=True)
        click.echo(f"failure report: {result.failure_report}", err=True)
        sys.exit(1)


def _dagster_summary(result: DagsterResult, layout: OutputLayout, verbose: bool) -> None:
    if result.errors:
        if verbose:
            for text in result.tracebacks:
                click.echo(text, err=True)
        for line in result.errors:
            click.echo(f"error: {line}", err=True)
        for line in describe_runs(result):
            click.echo(line, err=True)
        sys.exit(1)
    click.echo(
        f"done in {result.seconds:.1f}s: {result.nodes} packages, {len(result.built)} built, "
        f"{len(result.reused)} reused",
        err=True,
    )
    _outputs(layout)
    for line in describe_runs(result):
        click.echo(line, err=True)
    click.echo(f"see them in the UI: fromager-dagster ui -O {layout.root}", err=True)


def _outputs(layout: OutputLayout) -> None:
    click.echo(f"wheels:      {layout.wheels_downloads}", err=True)
    click.echo(f"graph:       {layout.work_dir / 'graph.json'}", err=True)
    click.echo(f"build order: {layout.work_dir / 'build-order.json'}", err=True)
    click.echo(f"constraints: {layout.work_dir / 'constraints.txt'}", err=True)
    click.echo(f"logs:        {layout.logs_dir}", err=True)


def _summary(result: BootstrapResult, layout: OutputLayout) -> None:
    nodes = len(result.graph.nodes) - 1
    prebuilt = f", {len(result.prebuilt)} pre-built" if result.prebuilt else ""
    failed = f", {len(result.failures)} failed" if result.failures else ""
    click.echo(
        f"done in {result.seconds:.1f}s: {nodes} packages, {len(result.built)} built, "
        f"{len(result.reused)} reused{prebuilt}{failed}",
        err=True,
    )
    if result.timings:
        spent = ", ".join(f"{k} {v:.1f}s" for k, v in sorted(result.timings.items()))
        click.echo(f"time spent (summed over jobs): {spent}", err=True)
    click.echo(f"wheels:      {layout.wheels_downloads}", err=True)
    click.echo(f"graph:       {result.outputs['graph']}", err=True)
    click.echo(f"build order: {result.outputs['build_order']}", err=True)
    if "constraints" in result.outputs:
        click.echo(f"constraints: {result.outputs['constraints']}", err=True)
    click.echo(f"logs:        {layout.logs_dir}", err=True)


@cli.command("ui")
@click.option(
    "-O",
    "--output-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("."),
    show_default=True,
    help="The output folder of `bootstrap`: its dagster-home/ and collections.yaml are used.",
)
@click.option("--port", type=click.IntRange(1, 65535), default=3000, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
def ui_command(output_dir: Path, port: int, host: str) -> None:
    """Serve the Dagster UI (and daemon) on the instance bootstrap's runs use.

    Runs `dagster dev -m fromager_dagster.definitions` with DAGSTER_HOME set to $DAGSTER_HOME,
    else OUTPUT_DIR/dagster-home, and FROMAGER_DAGSTER_COLLECTIONS to OUTPUT_DIR/collections.yaml
    when bootstrap wrote one (unless already set). Stop it with Ctrl-C.
    """
    from . import ui

    sys.exit(ui.serve(output_dir, host, port))


for _module in (overrides_cmd, graph_cmd, build_cmds):
    _module.register(cli)


def main() -> None:
    cli(obj={}, auto_envvar_prefix="FROMAGER_DAGSTER")


if __name__ == "__main__":
    main()
