"""Commands: build, build-sequence, build-parallel, bootstrap-parallel, step."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click
from packaging.requirements import Requirement
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..core import builder
from ..core.errors import ConfigError, FromagerDagsterError
from ..core.failures import write_failure_report
from ..core.graph import DependencyGraph, write_atomic
from ..core.index import IndexClient
from ..core.index_url import resolve_index_url
from ..core.isolation import resolve_isolation
from ..core.layout import OutputLayout
from ..core.requirements import Constraints, toplevel_requirements
from ..core.settings import Settings
from . import dagster_run
from .options import (
    CONSTRAINTS,
    INDEX_URL,
    NETWORK_ISOLATION,
    OUTPUT_DIR,
    REQUIREMENT_FILES,
    TEST_MODE,
    apply_options,
    load_cli_settings,
    settings_options,
)
from .progress import ProgressPrinter

__all__ = ["register", "settings_options"]

F = TypeVar("F", bound=Callable[..., Any])


def output_options(func: F) -> F:
    """-O, -c, --network-isolation and the settings options, shared by every build command."""
    return apply_options(func, [OUTPUT_DIR, CONSTRAINTS, NETWORK_ISOLATION, settings_options])


def _workers_option(func: F) -> F:
    return click.option(
        "-m",
        "--max-workers",
        type=click.IntRange(min=1),
        default=None,
        help="How many builds run at once. Default: the number of cores.",
    )(func)


class _Context:
    """What every command needs once its options are checked (nothing is written yet)."""

    def __init__(self, ctx: click.Context, options: dict[str, Any]) -> None:
        self.verbose = bool((ctx.obj or {}).get("verbose"))
        self.layout = OutputLayout(Path(options["output_dir"]).resolve())
        self.constraint_files: tuple[str, ...] = tuple(options["constraints"])
        self.paths = _settings_paths(
            options["settings_file"], options["settings_dir"], options["patches_dir"]
        )
        self.variant: str = options["variant"]
        self.settings: Settings = load_cli_settings(self.variant, *self.paths)
        self.constraints = Constraints.from_files(self.constraint_files)
        self.isolate = resolve_isolation(options["network_isolation"])

    def printer(self) -> ProgressPrinter:
        return ProgressPrinter(verbose=self.verbose)


def _settings_paths(
    settings_file: Path | None, settings_dir: Path | None, patches_dir: Path | None
) -> tuple[Path | None, Path | None, Path | None]:
    """The three settings paths, defaulting like ``load_cli_settings`` to ``./overrides``."""

    def default(given: Path | None, relative: str) -> Path | None:
        if given is not None:
            return given.resolve()
        candidate = Path("overrides") / relative
        return candidate.resolve() if candidate.exists() else None

    return (
        default(settings_file, "settings.yaml"),
        default(settings_dir, "settings"),
        default(patches_dir, "patches"),
    )


def _fail(exc: FromagerDagsterError, verbose: bool) -> NoReturn:
    if verbose:
        traceback.print_exception(exc)
    click.echo(f"error: {exc.one_line()}", err=True)
    sys.exit(1)


def _pin(name: str, version: str) -> tuple[str, str]:
    """Canonical name and checked version, or ConfigError naming the bad one."""
    try:
        canonical = canonicalize_name(name, validate=True)
    except InvalidName as exc:
        raise ConfigError(f"{name!r} is not a valid package name") from exc
    try:
        Version(version)
    except InvalidVersion as exc:
        raise ConfigError(f"{version!r} is not a valid version of {canonical}") from exc
    return canonical, version


def _finish(
    summary: dagster_run.BuildSummary, context: _Context, *, test_mode: bool, packages: int
) -> None:
    """Print the outcome (wheel paths on stdout); write the failure report; exit 1 on failure."""
    for wheel in dict.fromkeys(summary.wheels):
        click.echo(str(wheel))
    failed = len(summary.failures) if test_mode else len(summary.errors)
    click.echo(
        f"done in {summary.seconds:.1f}s: {packages} packages, {len(summary.built)} built, "
        f"{len(summary.reused)} reused, {len(summary.prebuilt)} pre-built"
        + (f", {failed} failed" if failed else ""),
        err=True,
    )
    click.echo(f"wheels:      {context.layout.wheels_downloads}", err=True)
    click.echo(f"logs:        {context.layout.logs_dir}", err=True)
    for line in dagster_run.describe_runs(summary):
        click.echo(line, err=True)
    click.echo(f"see them in the UI: fromager-dagster ui -O {context.layout.root}", err=True)
    if test_mode and summary.failures:
        report = write_failure_report(context.layout.work_dir, summary.failures)
        for record in summary.failures:
            who = f"{record.package}=={record.version}" if record.version else record.package
            click.echo(
                f"error: {who}: {record.failure_type} failure: {record.exception_type}: "
                f"{record.exception_message}",
                err=True,
            )
        click.echo(f"failure report: {report}", err=True)
        sys.exit(1)
    if not test_mode and summary.errors:
        if context.verbose:
            for text in summary.tracebacks:
                click.echo(text, err=True)
        for line in summary.errors:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)


# -- build, build-sequence ------------------------------------------------------------------


@click.command("build")
@click.argument("dist_name")
@click.argument("dist_version")
@click.argument("index_url")
@output_options
@TEST_MODE
@click.pass_context
def build_command(
    ctx: click.Context, /, dist_name: str, dist_version: str, index_url: str, **options: Any
) -> None:
    """Build DIST_NAME==DIST_VERSION's wheel from its sdist on INDEX_URL.

    The sdist comes from INDEX_URL; the build requirements, discovered by the package's PEP 517
    hooks, are installed only from INDEX_URL too (fromager's wheel server of already built
    wheels). The wheel goes to OUTPUT_DIR/wheels-repo/downloads and its path is printed. Runs
    as a Dagster run (build_wheel_job) on the local instance.
    """
    test_mode = options.pop("test_mode")
    try:
        context = _Context(ctx, options)
        name, version = _pin(dist_name, dist_version)
        url = resolve_index_url(index_url)
        entry = dagster_run.SequenceEntry(name, version, context.settings.pre_built(name))
        plan = dagster_run.SequenceBuild(
            output_dir=context.layout.root,
            job_name="build_wheel_job",
            entries=(entry,),
            index=IndexClient(url),
            wheel_server_url=url,
            constraints=context.constraints,
            settings=context.settings,
            isolate=context.isolate,
            force=True,
            test_mode=test_mode,
        )
        click.echo(f"building {name}=={version} from {url}, through Dagster", err=True)
        summary = dagster_run.run_sequence(plan, context.printer())
    except FromagerDagsterError as exc:
        _fail(exc, bool((ctx.obj or {}).get("verbose")))
    _finish(summary, context, test_mode=test_mode, packages=1)


def read_build_order(path: Path) -> list[tuple[str, str, bool]]:
    """``(name, version, prebuilt)`` of every entry of a build-order.json; ConfigError lists
    every bad entry."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read build order {path}: {exc}") from exc
    if not isinstance(data, list):
        raise ConfigError(f"{path}: expected a JSON list of build-order entries")
    entries: list[tuple[str, str, bool]] = []
    problems: list[str] = []
    for position, raw in enumerate(data):
        where = f"entry {position}"
        if not isinstance(raw, dict):
            problems.append(f"{where}: expected an object")
            continue
        dist, version = raw.get("dist"), raw.get("version")
        if not isinstance(dist, str) or not isinstance(version, str):
            problems.append(f"{where}: needs string fields 'dist' and 'version'")
            continue
        try:
            name, version = _pin(dist, version)
        except ConfigError as exc:
            problems.append(f"{where}: {exc.message}")
            continue
        prebuilt = raw.get("prebuilt") is True or raw.get("source_url_type") == "prebuilt"
        entries.append((name, version, prebuilt))
    if problems:
        raise ConfigError(f"{path}: " + "; ".join(problems))
    return entries


@click.command("build-sequence")
@click.argument("build_order_file", type=click.Path(path_type=Path))
@output_options
@INDEX_URL
@click.option("--force", is_flag=True, help="Rebuild wheels already in the repository.")
@TEST_MODE
@click.pass_context
def build_sequence_command(ctx: click.Context, /, build_order_file: Path, **options: Any) -> None:
    """Build every entry of BUILD_ORDER_FILE (build-order.json) in order, one at a time.

    Each sdist comes from the index; its build requirements are installed only from the local
    repository of the wheels built so far (OUTPUT_DIR/wheels-repo). A wheel already in the
    repository with the expected build tag is reused unless --force. Pre-built entries take
    the index's wheel. Runs as a Dagster run (build_sequence_job) on the local instance.
    """
    test_mode, force, index_url = (
        options.pop("test_mode"),
        options.pop("force"),
        options.pop("index_url"),
    )
    try:
        context = _Context(ctx, options)
        entries = tuple(
            dagster_run.SequenceEntry(n, v, p or context.settings.pre_built(n))
            for n, v, p in read_build_order(build_order_file)
        )
        if not entries:
            raise ConfigError(f"{build_order_file}: the build order is empty")
        index = IndexClient(resolve_index_url(index_url))
        plan = dagster_run.SequenceBuild(
            output_dir=context.layout.root,
            job_name="build_sequence_job",
            entries=entries,
            index=index,
            wheel_server_url=None,
            constraints=context.constraints,
            settings=context.settings,
            isolate=context.isolate,
            force=force,
            test_mode=test_mode,
        )
        click.echo(
            f"building {len(entries)} package(s) in order from {index.index_url}, through Dagster",
            err=True,
        )
        summary = dagster_run.run_sequence(plan, context.printer())
    except FromagerDagsterError as exc:
        _fail(exc, bool((ctx.obj or {}).get("verbose")))
    _finish(summary, context, test_mode=test_mode, packages=len(entries))


# -- build-parallel, bootstrap-parallel -----------------------------------------------------


def _check_sources(graph: DependencyGraph, layout: OutputLayout, source: Path) -> None:
    """Every node built from source has its sdist downloaded; ConfigError names the missing."""
    missing = []
    for key, node in graph.nodes.items():
        if not key or node.pre_built:
            continue
        try:
            builder.find_source(layout, node.canonicalized_name, node.version, node.download_url)
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


def _graph_plan(
    context: _Context,
    graph: DependencyGraph,
    *,
    jobs: int,
    force: bool,
    test_mode: bool,
    index_url: str | None,
) -> dagster_run.GraphBuild:
    """Write the collection of ``graph`` and return the build-parallel plan over it."""
    needs_index = test_mode or any(n.pre_built for n in graph.nodes.values())
    index = IndexClient(resolve_index_url(index_url)) if needs_index else None
    toplevel = dagster_run.toplevel_of(graph)
    name = dagster_run.collection_name([Requirement(r.split(";")[0]) for r in toplevel])
    collections_file = dagster_run.write_collection(
        context.layout.root,
        name,
        requirements=toplevel,
        requirement_files=[],
        constraints=context.constraint_files,
        index_url=index_url,
        variant=context.variant,
        settings_file=context.paths[0],
        settings_dir=context.paths[1],
        patches_dir=context.paths[2],
    )
    return dagster_run.GraphBuild(
        run=dagster_run.DagsterBootstrap(
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


def _default_workers() -> int:
    return os.cpu_count() or 1


@click.command("build-parallel")
@click.argument("graph_file", type=click.Path(path_type=Path))
@output_options
@INDEX_URL
@_workers_option
@click.option("--force", is_flag=True, help="Rebuild wheels an earlier build made.")
@TEST_MODE
@click.pass_context
def build_parallel_command(ctx: click.Context, /, graph_file: Path, **options: Any) -> None:
    """Build every wheel of GRAPH_FILE (graph.json), in parallel, hermetically.

    Only the graph and the sources already in OUTPUT_DIR/sdists-repo/downloads are used: no
    index is asked and no discovery hook runs again; each build environment holds exactly the
    node's recorded build requirements, from the local repository. The graph's wheel assets
    run as one Dagster run (build_<collection>_job) with at most MAX_WORKERS builds at once.
    The index is asked only for pre-built packages' wheels and, with --test-mode, for the
    wheel of a package that failed.
    """
    test_mode, force = options.pop("test_mode"), options.pop("force")
    index_url, workers = options.pop("index_url"), options.pop("max_workers")
    try:
        context = _Context(ctx, options)
        graph = DependencyGraph.load(graph_file)
        _check_sources(graph, context.layout, graph_file)
        text = json.dumps(graph.to_json(), indent=2)
        target = context.layout.work_dir / "graph.json"
        plan = _graph_plan(
            context,
            graph,
            jobs=workers or _default_workers(),
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
        summary = dagster_run.run_graph_build(plan, context.printer())
    except FromagerDagsterError as exc:
        _fail(exc, bool((ctx.obj or {}).get("verbose")))
    _finish(summary, context, test_mode=test_mode, packages=nodes)


@click.command("bootstrap-parallel")
@click.argument("requirements", nargs=-1)
@REQUIREMENT_FILES
@output_options
@INDEX_URL
@_workers_option
@TEST_MODE
@click.pass_context
def bootstrap_parallel_command(
    ctx: click.Context,
    /,
    requirements: tuple[str, ...],
    requirement_files: tuple[str, ...],
    **options: Any,
) -> None:
    """bootstrap --sdist-only, then build-parallel on the graph it wrote.

    Discovery resolves REQUIREMENTS, downloads every sdist and builds only the wheels other
    builds need; then every wheel is built from the graph, MAX_WORKERS at a time. Both stages
    are Dagster runs on the local instance. --test-mode applies to the build stage.
    """
    test_mode, index_url = options.pop("test_mode"), options.pop("index_url")
    workers = options.pop("max_workers") or _default_workers()
    verbose = bool((ctx.obj or {}).get("verbose"))
    try:
        context = _Context(ctx, options)
        reqs = toplevel_requirements(requirements, requirement_files)
        url = resolve_index_url(index_url)
        name = dagster_run.collection_name(reqs)
        collections_file = dagster_run.write_collection(
            context.layout.root,
            name,
            requirements=requirements,
            requirement_files=requirement_files,
            constraints=context.constraint_files,
            index_url=url,
            variant=context.variant,
            settings_file=context.paths[0],
            settings_dir=context.paths[1],
            patches_dir=context.paths[2],
        )
        run = dagster_run.DagsterBootstrap(
            output_dir=context.layout.root,
            name=name,
            collections_file=collections_file,
            jobs=workers,
            isolate=context.isolate,
            build_wheels=False,
        )
        click.echo(
            f"bootstrapping {len(reqs)} requirement(s) from {url} (sdist only), then building "
            f"with {workers} worker(s), through Dagster",
            err=True,
        )
        printer = context.printer()
        discovered = dagster_run.run_bootstrap(run, printer)
        if discovered.errors:
            if verbose:
                for text in discovered.tracebacks:
                    click.echo(text, err=True)
            for line in discovered.errors:
                click.echo(f"error: {line}", err=True)
            sys.exit(1)
        graph = DependencyGraph.load(context.layout.work_dir / "graph.json")
        plan = dagster_run.GraphBuild(
            run=dataclasses.replace(run, build_wheels=True),
            test_mode=test_mode,
            index=IndexClient(url),
        )
        summary = dagster_run.run_graph_build(plan, printer)
        summary.runs[:0] = discovered.runs
        summary.seconds += discovered.seconds
        # a wheel discovery built is built by this command, not reused from an earlier one
        summary.built, summary.reused = dagster_run.tally(summary.runs)
    except FromagerDagsterError as exc:
        _fail(exc, verbose)
    _finish(summary, context, test_mode=test_mode, packages=len(graph.nodes) - 1)


# -- step -----------------------------------------------------------------------------------


@click.group("step")
def step_group() -> None:
    """fromager's build steps one at a time, each reading what the previous one left.

    download-source-archive, prepare-source, prepare-build, build-sdist, build-wheel: plain
    engine calls in this process (no Dagster run).
    """


def _step(
    ctx: click.Context,
    /,
    options: dict[str, Any],
    dist_name: str,
    dist_version: str,
    action: Callable[[_Context, str, str], Path],
) -> None:
    try:
        context = _Context(ctx, options)
        name, version = _pin(dist_name, dist_version)
        click.echo(str(action(context, name, version)))
    except FromagerDagsterError as exc:
        _fail(exc, bool((ctx.obj or {}).get("verbose")))


@step_group.command("download-source-archive")
@click.argument("dist_name")
@click.argument("dist_version")
@click.argument("index_url")
@output_options
@click.pass_context
def step_download(
    ctx: click.Context, /, dist_name: str, dist_version: str, index_url: str, **options: Any
) -> None:
    """Download DIST_NAME==DIST_VERSION's sdist from INDEX_URL into sdists-repo/downloads."""

    def action(context: _Context, name: str, version: str) -> Path:
        index = IndexClient(resolve_index_url(index_url))
        return builder.download_source(
            index,
            name,
            version,
            context.layout,
            constraints=context.constraints,
            settings=context.settings,
        )

    _step(ctx, options, dist_name, dist_version, action)


@step_group.command("prepare-source")
@click.argument("dist_name")
@click.argument("dist_version")
@output_options
@click.pass_context
def step_prepare_source(
    ctx: click.Context, /, dist_name: str, dist_version: str, **options: Any
) -> None:
    """Unpack the downloaded sdist and apply the package's patches; print the source tree."""

    def action(context: _Context, name: str, version: str) -> Path:
        return builder.prepare_downloaded(
            context.layout, name, version, settings=context.settings
        ).root

    _step(ctx, options, dist_name, dist_version, action)


@step_group.command("prepare-build")
@click.argument("dist_name")
@click.argument("dist_version")
@output_options
@click.option(
    "--wheel-server-url",
    default=None,
    help="Install build requirements from this index. Default: the local repository.",
)
@click.pass_context
def step_prepare_build(
    ctx: click.Context, /, dist_name: str, dist_version: str, **options: Any
) -> None:
    """Create the build environment: build-system requirements, then the backend's."""
    wheel_server_url = options.pop("wheel_server_url")

    def action(context: _Context, name: str, version: str) -> Path:
        prepared = builder.prepared_source(context.layout, name, version, settings=context.settings)
        env = builder.prepare_build(
            context.layout,
            name,
            version,
            prepared,
            wheel_server_url=wheel_server_url,
            settings=builder.BuildSettings.of(context.settings, name, version),
            isolate=context.isolate,
        )
        return env.path

    _step(ctx, options, dist_name, dist_version, action)


@step_group.command("build-sdist")
@click.argument("dist_name")
@click.argument("dist_version")
@output_options
@click.pass_context
def step_build_sdist(
    ctx: click.Context, /, dist_name: str, dist_version: str, **options: Any
) -> None:
    """Re-pack the prepared source as a reproducible sdist in sdists-repo/builds."""

    def action(context: _Context, name: str, version: str) -> Path:
        prepared = builder.prepared_source(context.layout, name, version, settings=context.settings)
        return builder.build_sdist(context.layout, name, version, prepared)

    _step(ctx, options, dist_name, dist_version, action)


@step_group.command("build-wheel")
@click.argument("dist_name")
@click.argument("dist_version")
@output_options
@click.pass_context
def step_build_wheel(
    ctx: click.Context, /, dist_name: str, dist_version: str, **options: Any
) -> None:
    """Build the wheel in the prepared environment into wheels-repo/downloads."""

    def action(context: _Context, name: str, version: str) -> Path:
        prepared = builder.prepared_source(context.layout, name, version, settings=context.settings)
        env = builder.build_env(context.layout, name, version)
        return builder.build_wheel(
            context.layout,
            name,
            version,
            prepared,
            env,
            settings=builder.BuildSettings.of(context.settings, name, version),
            isolate=context.isolate,
        )

    _step(ctx, options, dist_name, dist_version, action)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    for command in (
        build_command,
        build_sequence_command,
        build_parallel_command,
        bootstrap_parallel_command,
        step_group,
    ):
        group.add_command(command)
