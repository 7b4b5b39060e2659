"""fromager's ``step`` subcommands: each reads what the previous one left on disk."""

from __future__ import annotations

import json
import time
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.build.environment import BuildEnv, BuildEnvFactory, temporary_session
from fromager_dagster.core.build.sandbox import Sandbox
from fromager_dagster.core.build.settings import (
    DEFAULT_SOURCE_DATE_EPOCH,
    BuildSettings,
    extra_environ,
)
from fromager_dagster.core.build.wheel import hook_caller, make_wheel, wheel_server
from fromager_dagster.core.errors import BuildError, ConfigError, SourceError
from fromager_dagster.core.graph.model import write_atomic
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.package_log import start_stage
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.plugins import steps as plugin_steps
from fromager_dagster.core.plugins.finder import settings_resolver
from fromager_dagster.core.provenance.statement import RunInfo, write_provenance
from fromager_dagster.core.repository.built import downloaded_source
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.resolve.resolver import ResolvedPackage
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.epoch import source_date_epoch as epoch_of_source
from fromager_dagster.core.sources.prepare import (
    PreparedSource,
    prepare_source,
    prepared_build_system,
)
from fromager_dagster.core.sources.urls import fetch_source


def resolve_source(
    index: IndexClient,
    name: str,
    version: str,
    *,
    constraints: Constraints | None = None,
    settings: Settings,
    plugins: Plugins,
) -> ResolvedPackage:
    """The file ``name==version`` is built (or taken pre-built) from, chosen as a bootstrap
    chooses it: a ``find_candidates`` plugin's files, the settings' ``sdist_server_url`` or
    ``index``, filtered by ``resolver_dist`` (a version with a wheel is taken pre-built when
    ``include_wheels`` is set). ResolutionError when no admitted file has that version."""
    try:
        Version(version)
    except InvalidVersion as exc:
        raise ConfigError(f"{version!r} is not a valid version of {name}", package=name) from exc
    resolver = settings_resolver(
        index, constraints or Constraints.from_lines([]), settings, plugins=plugins
    )
    return resolver.resolve(Requirement(package_key(canonicalize_name(name), version)))


def download_source(
    index: IndexClient,
    name: str,
    version: str,
    layout: OutputLayout,
    *,
    constraints: Constraints | None = None,
    settings: Settings,
    plugins: Plugins,
) -> Path:
    """Download the sdist of ``name==version`` into ``sdists-repo/downloads``: by a
    ``download_source`` plugin, from the settings' ``download_source.url`` when there is one,
    else from the index ``resolve_source`` chose (hash-verified); ResolutionError when the
    index (or a ``find_candidates`` plugin) has no such version, SourceError when the settings
    take that version as a pre-built wheel."""
    package = resolve_source(
        index, name, version, constraints=constraints, settings=settings, plugins=plugins
    )
    return download_resolved(index, package, layout, settings=settings, plugins=plugins)


def download_resolved(
    index: IndexClient,
    package: ResolvedPackage,
    layout: OutputLayout,
    *,
    settings: Settings,
    plugins: Plugins,
) -> Path:
    """The archive of ``package``, downloaded; its URL recorded for ``step build-wheel``."""
    archive = fetch_source(
        index.session,
        package,
        layout.sdists_downloads,
        settings=settings,
        plugins=plugins,
        log=layout.log_path(package.name, str(package.version)),
    )
    marker = _source_marker(layout, package.name, str(package.version))
    marker.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(marker, json.dumps({"archive": archive.name, "url": package.source.url}))
    return archive


def _source_marker(layout: OutputLayout, name: str, version: str) -> Path:
    """The download's record; not in the package dir, which unpacking may replace."""
    return layout.cache_dir / f"{name}-{version}.source.json"


def _recorded_source(
    layout: OutputLayout, name: str, version: str
) -> tuple[Path | None, str | None]:
    """The downloaded archive of ``name==version`` and the URL it was resolved to, as far as
    ``sdists-repo/downloads`` and the download's record tell."""
    try:
        archive: Path | None = downloaded_source(layout, name, version)
    except SourceError:
        archive = None
    try:
        record = json.loads(_source_marker(layout, name, version).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return archive, None
    if archive is None or not isinstance(record, dict) or record.get("archive") != archive.name:
        return archive, None
    url = record.get("url")
    return archive, url if isinstance(url, str) else None


def _prepared_marker(layout: OutputLayout, name: str, version: str) -> Path:
    """The record of where ``step prepare-source`` left the tree."""
    return layout.package_dir(name, version) / "prepared-source.json"


def prepare_downloaded(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    settings: Settings,
    plugins: Plugins,
) -> PreparedSource:
    """``step prepare-source``: unpack and patch the downloaded sdist of ``name==version`` (or
    let a ``prepare_source`` plugin prepare it); record where the tree is for the later steps."""
    archive = downloaded_source(layout, name, version)
    log = layout.log_path(name, version)
    start_stage(log, f"prepare source of {package_key(name, version)} from {archive.name}")
    chosen = settings if settings is not None else Settings()
    prepared = prepare_source(
        archive,
        layout.work_dir,
        settings=chosen,
        name=name,
        version=version,
        log=log,
        plugins=plugins,
    )
    marker = _prepared_marker(layout, name, version)
    marker.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "archive": archive.name,
        "root": str(prepared.root),
        "project_dir": str(prepared.project_dir),
        "patches": [str(p) for p in prepared.patches],
    }
    write_atomic(marker, json.dumps(record, indent=2))
    return prepared


def prepared_source(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    settings: Settings,
    plugins: Plugins,
) -> PreparedSource:
    """The tree ``step prepare-source`` left (not unpacked again); SourceError if absent."""
    try:
        record = json.loads(_prepared_marker(layout, name, version).read_text(encoding="utf-8"))
        root, project_dir = Path(record["root"]), Path(record["project_dir"])
        patches = tuple(Path(p) for p in record["patches"])
        found = root.is_dir() and project_dir.is_dir()
    except (OSError, ValueError, KeyError, TypeError):
        found = False
    if not found:
        raise SourceError(
            f"the source of {package_key(name, version)} is not prepared in {layout.work_dir}; "
            "run `step prepare-source` first",
            package=name,
            version=version,
        )
    build_system = prepared_build_system(
        project_dir,
        settings=settings,
        name=name,
        version=version,
        log=layout.log_path(name, version),
        plugins=plugins,
    )
    return PreparedSource(root, project_dir, build_system, patches)


def build_sdist(
    layout: OutputLayout,
    name: str,
    version: str,
    prepared: PreparedSource,
    *,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    settings: Settings,
    plugins: Plugins,
    environ: dict[str, str] | None = None,
) -> Path:
    """``step build-sdist``: the prepared tree as a reproducible sdist in ``sdists-repo/builds``
    (or a ``build_sdist`` plugin's sdist there). ``environ``: the build's extra environment
    (default: the settings', updated by an ``update_extra_environ`` plugin)."""
    log = layout.log_path(name, version)
    if environ is None:
        wanted = BuildSettings.of(settings, name, version, source_date_epoch=source_date_epoch)
        environ = extra_environ(prepared.project_dir, wanted, plugins, name, version, log)
    return plugin_steps.build_sdist(
        plugins,
        prepared.root,
        layout.repacked_sdist(name, version),
        name=name,
        version=version,
        settings=settings,
        environ=environ,
        log=log,
        source_date_epoch=source_date_epoch,
    )


def prepare_build(
    layout: OutputLayout,
    name: str,
    version: str,
    prepared: PreparedSource,
    *,
    wheel_server_url: str | None,
    settings: BuildSettings,
    isolate: bool | Sandbox,
    log: Path | None = None,
    plugins: Plugins,
) -> BuildEnv:
    """``step prepare-build``: a fresh environment with the build-system requirements, then
    what ``get_requires_for_build_wheel`` (or a ``get_build_backend_dependencies`` plugin)
    asks for, installed from the wheel server only."""
    log = log or layout.log_path(name, version)
    environ = extra_environ(prepared.project_dir, settings, plugins, name, version, log)
    with (
        wheel_server(layout, wheel_server_url) as url,
        temporary_session(layout.work_dir / "uv-cache") as cache,
    ):
        envs = BuildEnvFactory(url, cache_dir=cache)
        env = envs.create(layout.package_dir(name, version) / "build-env", log=log)
        envs.install(env, [str(r) for r in prepared.build_system.requires], log=log)
        hooks = hook_caller(prepared, env, settings, isolate, log, name, version, environ)
        backend = plugin_steps.backend_requirements(
            plugins,
            hooks,
            name=name,
            version=version,
            settings=settings.settings,
            environ=environ,
            log=log,
        )
        envs.install(env, [str(r) for r in backend], log=log)
    return env


def build_env(layout: OutputLayout, name: str, version: str) -> BuildEnv:
    """The environment ``step prepare-build`` left; BuildError if there is none."""
    env = BuildEnv(layout.package_dir(name, version) / "build-env")
    if not env.python.exists():
        raise BuildError(
            f"no build environment in {env.path}; run `step prepare-build` first",
            package=name,
            version=version,
            step="prepare build",
        )
    return env


def source_epoch(layout: OutputLayout, name: str, version: str) -> int:
    """The ``SOURCE_DATE_EPOCH`` of ``name==version``'s build, as a bootstrap takes it: from
    the downloaded archive (:mod:`.sources.epoch`), 1980-01-01 without one."""
    archive, _ = _recorded_source(layout, name, version)
    return epoch_of_source(archive)


def build_wheel(
    layout: OutputLayout,
    name: str,
    version: str,
    prepared: PreparedSource,
    env: BuildEnv,
    *,
    settings: BuildSettings,
    isolate: bool | Sandbox,
    plugins: Plugins,
    run: RunInfo | None = None,
) -> Path:
    """``step build-wheel``: build in ``env`` and finalize into ``wheels-repo/downloads``
    (the SBOM names the source ``step download-source-archive`` recorded, if any), then write
    the wheel's provenance as a bootstrap does: the recorded source archive, the patches and
    every wheel installed in ``env`` (``run``: the collection, run id and signing key)."""
    started = time.time()
    log = layout.log_path(name, version)
    environ = extra_environ(prepared.project_dir, settings, plugins, name, version, log)
    archive, source_url = _recorded_source(layout, name, version)
    wheel = make_wheel(
        layout,
        name,
        version,
        prepared,
        env,
        settings,
        settings.build_tag,
        isolate,
        log,
        plugins,
        environ,
        archive=archive,
        source_url=source_url,
    )
    write_provenance(
        layout,
        name,
        version,
        wheel=wheel,
        source_archive=archive,
        source_url=source_url,
        settings=settings.settings,
        plugins=plugins,
        build_env=env.installed(),
        source_date_epoch=int(settings.environ.get("SOURCE_DATE_EPOCH", DEFAULT_SOURCE_DATE_EPOCH)),
        run=run if run is not None else RunInfo(),
        started=started,
    )
    return wheel
