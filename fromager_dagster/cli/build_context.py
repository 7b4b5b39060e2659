"""What the build commands share: their options checked into a BuildContext, the summary and
exit status."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import click
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from ..core.bootstrap import write_failure_report
from ..core.credentials import redact_text
from ..core.errors import ConfigError
from ..core.layout import OutputLayout
from ..core.output_lock import hold_output
from ..core.plugins import Plugins
from ..core.resolve import Constraints
from ..core.settings import Settings
from .build_summary import BuildSummary
from .collection_file import write_collection
from .errors import echo_run_errors, failure_line, verbose
from .options import OutputOptions, resolve_cli_sandbox
from .progress import ProgressPrinter
from .run_events import describe_runs

F = TypeVar("F", bound=Callable[..., Any])


def workers_option(func: F) -> F:
    return click.option(
        "-m",
        "--max-workers",
        type=click.IntRange(min=1),
        default=None,
        help="How many builds run at once. Default: the number of cores.",
    )(func)


class BuildContext:
    """What every command needs once its options are checked (nothing is written yet)."""

    def __init__(self, ctx: click.Context, output: OutputOptions) -> None:
        self.verbose = verbose(ctx)
        self.layout = OutputLayout(output.output_dir.resolve())
        self.constraint_files: tuple[str, ...] = output.constraints
        self.paths = output.overrides.paths()
        self.variant: str = output.overrides.variant
        self.settings: Settings = output.overrides.load()
        self.constraints = Constraints.from_files(self.constraint_files)
        self.isolate = resolve_cli_sandbox(output.network_isolation)
        hold_output_folder(ctx, self.layout.root)

    def printer(self) -> ProgressPrinter:
        return ProgressPrinter(verbose=self.verbose)

    def write_collection(
        self,
        name: str,
        *,
        requirements: Sequence[str],
        requirement_files: Sequence[str],
        index_url: str | None,
    ) -> Path:
        """The command's collection file (:func:`.collection_file.write_collection`), with this
        context's output folder, constraints, variant and settings paths."""
        return write_collection(
            self.layout.root,
            name,
            requirements=requirements,
            requirement_files=requirement_files,
            constraints=self.constraint_files,
            index_url=index_url,
            variant=self.variant,
            settings_file=self.paths[0],
            settings_dir=self.paths[1],
            patches_dir=self.paths[2],
        )

    @property
    def plugins(self) -> Plugins:
        """The installed plugins (read when a step first needs them, once per process)."""
        return Plugins.load()


def hold_output_folder(ctx: click.Context, root: Path) -> None:
    """Hold the output folder's lock until the command ends (one writer per folder); a second
    command into it fails at once naming the first (:func:`~..core.output_lock.hold_output`)."""
    command = redact_text(" ".join(["fromager-dagster", *sys.argv[1:]]))
    ctx.with_resource(hold_output(root, command))


def pin(name: str, version: str) -> tuple[str, str]:
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


def finish(summary: BuildSummary, context: BuildContext, *, test_mode: bool, packages: int) -> None:
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
    for line in describe_runs(summary):
        click.echo(line, err=True)
    click.echo(f"see them in the UI: fromager-dagster ui -O {context.layout.root}", err=True)
    if test_mode and summary.failures:
        report = write_failure_report(context.layout.work_dir, summary.failures)
        for record in summary.failures:
            click.echo(f"error: {failure_line(record)}", err=True)
        click.echo(f"failure report: {report}", err=True)
        sys.exit(1)
    if not test_mode and summary.errors:
        echo_run_errors(summary.errors, summary.tracebacks, context.verbose)
        sys.exit(1)


# -- build, build-sequence ------------------------------------------------------------------


def default_workers() -> int:
    return os.cpu_count() or 1
