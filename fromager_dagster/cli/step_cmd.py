"""Command step: fromager's build steps one at a time, as plain engine calls."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import click

from ..core.build import (
    BuildSettings,
    build_env,
    build_sdist,
    build_wheel,
    download_source,
    prepare_build,
    prepare_downloaded,
    prepared_source,
    source_epoch,
)
from ..core.index import IndexClient, resolve_index_url
from ..core.provenance import RunInfo
from .build_context import BuildContext, pin
from .options import OutputOptions, output_options


@click.group("step")
def step_group() -> None:
    """fromager's build steps one at a time, each reading what the previous one left.

    download-source-archive, prepare-source, prepare-build, build-sdist, build-wheel: plain
    engine calls in this process (no Dagster run).
    """


def _step(
    ctx: click.Context,
    /,
    output: OutputOptions,
    dist_name: str,
    dist_version: str,
    action: Callable[[BuildContext, str, str], Path],
) -> None:
    context = BuildContext(ctx, output)
    name, version = pin(dist_name, dist_version)
    click.echo(str(action(context, name, version)))


def _build_settings(context: BuildContext, name: str, version: str) -> BuildSettings:
    """The package's build settings, ``SOURCE_DATE_EPOCH`` taken from the downloaded source
    as a bootstrap takes it."""
    epoch = source_epoch(context.layout, name, version)
    return BuildSettings.of(context.settings, name, version, source_date_epoch=epoch)


@step_group.command("download-source-archive")
@click.argument("dist_name")
@click.argument("dist_version")
@click.argument("index_url")
@output_options
@click.pass_context
def step_download(
    ctx: click.Context, /, dist_name: str, dist_version: str, index_url: str, output: OutputOptions
) -> None:
    """Download DIST_NAME==DIST_VERSION's sdist from INDEX_URL into sdists-repo/downloads."""

    def action(context: BuildContext, name: str, version: str) -> Path:
        index = IndexClient(resolve_index_url(index_url))
        return download_source(
            index,
            name,
            version,
            context.layout,
            constraints=context.constraints,
            settings=context.settings,
            plugins=context.plugins,
        )

    _step(ctx, output, dist_name, dist_version, action)


@step_group.command("prepare-source")
@click.argument("dist_name")
@click.argument("dist_version")
@output_options
@click.pass_context
def step_prepare_source(
    ctx: click.Context, /, dist_name: str, dist_version: str, output: OutputOptions
) -> None:
    """Unpack the downloaded sdist and apply the package's patches; print the source tree."""

    def action(context: BuildContext, name: str, version: str) -> Path:
        prepared = prepare_downloaded(
            context.layout, name, version, settings=context.settings, plugins=context.plugins
        )
        return prepared.root

    _step(ctx, output, dist_name, dist_version, action)


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
    ctx: click.Context,
    /,
    dist_name: str,
    dist_version: str,
    output: OutputOptions,
    wheel_server_url: str | None,
) -> None:
    """Create the build environment: build-system requirements, then the backend's."""

    def action(context: BuildContext, name: str, version: str) -> Path:
        prepared = prepared_source(
            context.layout, name, version, settings=context.settings, plugins=context.plugins
        )
        env = prepare_build(
            context.layout,
            name,
            version,
            prepared,
            wheel_server_url=wheel_server_url,
            settings=_build_settings(context, name, version),
            isolate=context.isolate,
            plugins=context.plugins,
        )
        return env.path

    _step(ctx, output, dist_name, dist_version, action)


@step_group.command("build-sdist")
@click.argument("dist_name")
@click.argument("dist_version")
@output_options
@click.pass_context
def step_build_sdist(
    ctx: click.Context, /, dist_name: str, dist_version: str, output: OutputOptions
) -> None:
    """Re-pack the prepared source as a reproducible sdist in sdists-repo/builds."""

    def action(context: BuildContext, name: str, version: str) -> Path:
        prepared = prepared_source(
            context.layout, name, version, settings=context.settings, plugins=context.plugins
        )
        epoch = source_epoch(context.layout, name, version)
        return build_sdist(
            context.layout,
            name,
            version,
            prepared,
            source_date_epoch=epoch,
            settings=context.settings,
            plugins=context.plugins,
        )

    _step(ctx, output, dist_name, dist_version, action)


@step_group.command("build-wheel")
@click.argument("dist_name")
@click.argument("dist_version")
@output_options
@click.pass_context
def step_build_wheel(
    ctx: click.Context, /, dist_name: str, dist_version: str, output: OutputOptions
) -> None:
    """Build the wheel in the prepared environment into wheels-repo/downloads, with its SBOM
    inside and its provenance in wheels-repo/provenance (signed when
    $FROMAGER_DAGSTER_SIGNING_KEY names a key), as a bootstrap writes them."""

    def action(context: BuildContext, name: str, version: str) -> Path:
        prepared = prepared_source(
            context.layout, name, version, settings=context.settings, plugins=context.plugins
        )
        env = build_env(context.layout, name, version)
        return build_wheel(
            context.layout,
            name,
            version,
            prepared,
            env,
            settings=_build_settings(context, name, version),
            isolate=context.isolate,
            plugins=context.plugins,
            run=RunInfo.from_environ(os.environ),
        )

    _step(ctx, output, dist_name, dist_version, action)
