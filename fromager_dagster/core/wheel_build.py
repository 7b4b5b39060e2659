"""A prepared source built into a finalized wheel: its hooks, its wheel server, its metadata."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from . import sources, wheels
from .build_settings import DEFAULT_SOURCE_DATE_EPOCH, BuildSettings
from .buildenv import BuildEnv
from .hooks import HookCaller
from .index_server import LocalIndexServer
from .layout import OutputLayout
from .plugins import Plugins
from .plugins import steps as plugin_steps
from .prepare import PreparedSource
from .wheel_extras import wheel_extras


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
    isolate: bool,
    log: Path,
    name: str,
    version: str,
    environ: dict[str, str],
) -> HookCaller:
    """The PEP 517 hooks of ``prepared`` in ``env``, with the settings' config_settings."""
    return HookCaller(
        prepared.project_dir,
        prepared.build_system,
        env,
        log=log,
        isolate=isolate,
        extra_environ=environ,
        package=name,
        version=version,
        config_settings=settings.config_settings,
    )


def make_wheel(
    layout: OutputLayout,
    name: str,
    version: str,
    prepared: PreparedSource,
    env: BuildEnv,
    settings: BuildSettings,
    build_tag: int,
    isolate: bool,
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
    extras = wheel_extras(
        settings.settings,
        name,
        version,
        source_url=source_url,
        source_sha256=sources.sha256_file(archive) if archive is not None else None,
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
    built = plugin_steps.add_wheel_metadata(
        plugins,
        built,
        name=name,
        version=version,
        source_dir=prepared.project_dir,
        settings=settings.settings,
        environ=environ,
        log=log,
    )
    wheel = wheels.finalize_wheel(
        built, layout.wheels_downloads, build_tag=build_tag, source_date_epoch=epoch, extras=extras
    )
    shutil.rmtree(dist, ignore_errors=True)
    return wheel
