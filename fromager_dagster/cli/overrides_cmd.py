"""Commands: lint, list-overrides."""

from __future__ import annotations

import sys
import traceback
from pathlib import Path
from typing import NoReturn

import click

from ..core.errors import FromagerDagsterError
from ..core.settings import default_paths, lint_overrides, list_overrides, load_settings
from .options import settings_options


def _fail(ctx: click.Context, exc: FromagerDagsterError) -> NoReturn:
    """One line on stderr, exit 1 (the traceback too with -v), as the main group does."""
    if (ctx.find_root().obj or {}).get("verbose"):
        traceback.print_exception(exc)
    click.echo(f"error: {exc.one_line()}", err=True)
    sys.exit(1)


def register(group: click.Group) -> None:
    """Add this module's commands to ``group``."""
    group.add_command(lint_command)
    group.add_command(list_overrides_command)


@click.command("lint")
@settings_options
@click.pass_context
def lint_command(
    ctx: click.Context,
    variant: str,
    settings_file: Path | None,
    settings_dir: Path | None,
    patches_dir: Path | None,
) -> None:
    """Check an overrides folder without building anything.

    Every settings file must validate (unknown keys, wrong types, bad templates, invalid
    versions and requirements are reported with the file and the key), and every settings
    file and patch folder must be named for a package (<override_name>.yaml,
    <override_name>/ or <override_name>-<version>/). Prints one line per problem and exits 1
    if there is any.
    """
    try:
        found = default_paths(settings_file, settings_dir, patches_dir)
        report = lint_overrides(
            settings_file=found[0], settings_dir=found[1], patches_dir=found[2], variant=variant
        )
    except FromagerDagsterError as exc:
        _fail(ctx, exc)
    for problem in report.problems:
        click.echo(problem)
    if report.problems:
        click.echo(f"lint: {len(report.problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"ok: {report.settings_files} settings files, {report.patch_folders} patch folders")


@click.command("list-overrides")
@settings_options
@click.pass_context
def list_overrides_command(
    ctx: click.Context,
    variant: str,
    settings_file: Path | None,
    settings_dir: Path | None,
    patches_dir: Path | None,
) -> None:
    """List the packages that have overrides: a settings file or a patch folder with patches.

    Prints canonical package names, sorted, one per line (as fromager does).
    """
    try:
        found = default_paths(settings_file, settings_dir, patches_dir)
        settings = load_settings(
            settings_file=found[0], settings_dir=found[1], patches_dir=found[2], variant=variant
        )
    except FromagerDagsterError as exc:
        _fail(ctx, exc)
    for name in list_overrides(settings):
        click.echo(name)
