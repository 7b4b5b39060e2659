"""A prepared source built into a finalized wheel: its hooks, its wheel server, its metadata."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from packaging.version import Version

from fromager_dagster.core.build import wheels
from fromager_dagster.core.build.environment import BuildEnv
from fromager_dagster.core.build.hooks import HookCaller
from fromager_dagster.core.build.sandbox import Sandbox
from fromager_dagster.core.build.settings import DEFAULT_SOURCE_DATE_EPOCH, BuildSettings
from fromager_dagster.core.build.wheel_extras import WheelExtras, wheel_extras
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.plugins import steps as plugin_steps
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources
from fromager_dagster.core.sources.prepare import PreparedSource


@contextmanager
def wheel_server(layout: OutputLayout, url: str | None) -> Iterator[str]:
    """``url``, or the local repository served on 127.0.0.1 for the duration."""
    if url is not None:
        yield url
        return
    with LocalIndexServer(layout.wheel_roots) as server:
        yield server.url


def hook_caller(
    prepared: PreparedSource,
    env: BuildEnv,
    settings: BuildSettings,
    isolate: bool | Sandbox,
    log: Path,
    name: str,
    version: str,
    environ: dict[str, str],
    *,
    source_dir: Path | None = None,
) -> HookCaller:
    """The PEP 517 hooks of ``prepared`` (or of ``source_dir``, a copy of its project folder)
    in ``env``, in the ``isolate`` sandbox with the settings' config_settings, hook limits and
    wheel_top_level. A bootstrap's discovery and the builder both make them here."""
    return HookCaller(
        source_dir or prepared.project_dir,
        prepared.build_system,
        env,
        log=log,
        isolate=isolate,
        extra_environ=environ,
        package=name,
        version=version,
        config_settings=settings.config_settings,
        tree=prepared.root if source_dir is None else source_dir,
        limits=settings.settings.hook_limits(name),
        wheel_top_level=settings.settings.package(name).sandbox.wheel_top_level,
    )


def source_extras(
    settings: Settings,
    name: str,
    version: str,
    *,
    archive: Path | None,
    source_url: str | None,
    source_date_epoch: int,
) -> WheelExtras:
    """What the settings add to the wheel (SBOM, Requires-External), naming the source
    ``archive`` (its sha256) and ``source_url``: a bootstrap and the builder pass the same
    (the graph's download_url), so both make the same bytes."""
    return wheel_extras(
        settings,
        name,
        version,
        source_url=source_url,
        source_sha256=sources.sha256_file(archive) if archive is not None else None,
        source_date_epoch=source_date_epoch,
    )


def finish_wheel(
    plugins: Plugins,
    built: Path,
    dest_dir: Path,
    *,
    name: str,
    version: Version | str,
    source_dir: Path,
    settings: Settings,
    environ: dict[str, str],
    log: Path,
    build_tag: int,
    source_date_epoch: int,
    extras: WheelExtras,
) -> Path:
    """``built`` with an add_extra_metadata_to_wheels plugin's and the settings' metadata,
    finalized (build tag, reproducible) into ``dest_dir``."""
    built = plugin_steps.add_wheel_metadata(
        plugins,
        built,
        name=name,
        version=version,
        source_dir=source_dir,
        settings=settings,
        environ=environ,
        log=log,
    )
    return wheels.finalize_wheel(
        built, dest_dir, build_tag=build_tag, source_date_epoch=source_date_epoch, extras=extras
    )


def make_wheel(
    layout: OutputLayout,
    name: str,
    version: str,
    prepared: PreparedSource,
    env: BuildEnv,
    settings: BuildSettings,
    build_tag: int,
    isolate: bool | Sandbox,
    log: Path,
    plugins: Plugins,
    environ: dict[str, str],
    *,
    archive: Path | None,
    source_url: str | None,
) -> Path:
    """Build, add the plugin's and the settings' metadata, finalize. ``archive`` and
    ``source_url`` (the graph's ``download_url``) are the source the SBOM names: a bootstrap
    passes the same, so both stages make the same bytes."""
    epoch = int(settings.environ.get("SOURCE_DATE_EPOCH", DEFAULT_SOURCE_DATE_EPOCH))
    extras = source_extras(
        settings.settings,
        name,
        version,
        archive=archive,
        source_url=source_url,
        source_date_epoch=epoch,
    )
    dist = layout.package_dir(name, version) / "dist"
    hooks = hook_caller(prepared, env, settings, isolate, log, name, version, environ)
    built = plugin_steps.build_wheel(
        plugins,
        hooks,
        dist,
        name=name,
        version=version,
        settings=settings.settings,
        environ=environ,
        log=log,
    )
    wheel = finish_wheel(
        plugins,
        built,
        layout.wheels_downloads,
        name=name,
        version=version,
        source_dir=prepared.project_dir,
        settings=settings.settings,
        environ=environ,
        log=log,
        build_tag=build_tag,
        source_date_epoch=epoch,
        extras=extras,
    )
    shutil.rmtree(dist, ignore_errors=True)
    return wheel
