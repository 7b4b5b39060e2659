"""Commands: lint, list-overrides."""

from __future__ import annotations

import sys

import click

from ..core.settings import lint_overrides, list_overrides
from .options import OverrideOptions, settings_options


@click.command("lint")
@settings_options
def lint_command(overrides: OverrideOptions) -> None:
    """Check an overrides folder without building anything.

    Every settings file must validate (unknown keys, wrong types, bad templates, invalid
    versions and requirements are reported with the file and the key), and every settings
    file and patch folder must be named for a package (<override_name>.yaml,
    <override_name>/ or <override_name>-<version>/). Prints one line per problem and exits 1
    if there is any.
    """
    settings_file, settings_dir, patches_dir = overrides.found()
    report = lint_overrides(
        settings_file=settings_file,
        settings_dir=settings_dir,
        patches_dir=patches_dir,
        variant=overrides.variant,
    )
    for problem in report.problems:
        click.echo(problem)
    if report.problems:
        click.echo(f"lint: {len(report.problems)} problem(s) found", err=True)
        sys.exit(1)
    click.echo(f"ok: {report.settings_files} settings files, {report.patch_folders} patch folders")


@click.command("list-overrides")
@settings_options
def list_overrides_command(overrides: OverrideOptions) -> None:
    """List the packages that have overrides: a settings file or a patch folder with patches.

    Prints canonical package names, sorted, one per line (as fromager does).
    """
    for name in list_overrides(overrides.load()):
        click.echo(name)
