"""Building one package's wheel: hermetically from the graph, or from an index like fromager.

``build_node`` is the production stage: the graph's recorded build requirements and the
downloaded sources, nothing else. ``build_package`` is fromager's ``build``: the sdist from an
index, the build requirements discovered by the PEP 517 hooks and installed from a wheel
server. Both honour the package's settings (patches, environment, config_settings, build
tag) and the installed plugins' step overrides (``plugins``: None loads them), take
``pre_built`` packages' wheels as they are, and run the plugins' ``post_build`` hooks after a
wheel is built and ``prebuilt_wheel`` hooks on a wheel taken pre-built, as a bootstrap does.
The step functions below them are fromager's ``step`` subcommands; each reads what the
previous one left on disk.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from . import sources, wheels
from .buildenv import BuildEnv, BuildEnvFactory
from .errors import BuildError, ConfigError, SourceError
from .graph import DependencyGraph, write_atomic
from .hooks import HookCaller
from .index import SDIST_EXTENSIONS, IndexClient
from .index_server import LocalIndexServer
from .layout import OutputLayout
from .plugins import Plugins
from .plugins import steps as plugin_steps
from .plugins.finder import source_policy
from .prebuilt import download_prebuilt_wheel
from .prepare import PreparedSource, hook_environ, prepare_source, prepared_build_system
from .requirements import Constraints
from .resolver import ResolvedPackage, Resolver
from .settings import Settings
from .source_urls import download_override
from .wheel_extras import wheel_extras

DEFAULT_SOURCE_DATE_EPOCH = 315532800


@dataclass(frozen=True)
class BuiltWheel:
    """A wheel in the local repository and what it took to make it."""

    key: str
    path: Path
    sha256: str
    size: int
    seconds: float
    log_path: Path
    source_path: Path  # the sdist it was built from (the wheel itself when pre-built)
    reused: bool = False
    prebuilt: bool = False


@dataclass(frozen=True)
class BuildSettings:
    """What the settings say about one package-version's build (defaults without settings)."""

    settings: Settings
    build_tag: int
    environ: dict[str, str]
    config_settings: dict[str, str | list[str]]
    pre_built: bool

    @classmethod
    def of(
        cls,
        settings: Settings | None,
        name: str,
        version: str,
        *,
        source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    ) -> BuildSettings:
        chosen = settings if settings is not None else Settings()
        package = chosen.package(name)
        return cls(
            settings=chosen,
            build_tag=chosen.build_tag(name, version),
            environ=hook_environ(chosen, name, version, source_date_epoch=source_date_epoch),
            config_settings={
                k: v if isinstance(v, str) else list(v) for k, v in package.config_settings.items()
            },
            pre_built=chosen.pre_built(name),
        )


def find_wheel(
    layout: OutputLayout, name: str, version: str, *, build_tag: int | None = None
) -> Path | None:
    """The wheel of ``name==version`` in the local repository (built or pre-built), if any.

    With ``build_tag``, a built wheel (``wheels-repo/downloads``) must carry that build tag;
    pre-built wheels are taken whatever their tag.
    """
    wanted_name, wanted_version = canonicalize_name(name), Version(version)
    for root in layout.wheel_roots:
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*.whl")):
            try:
                wheel_name, wheel_version, build, _ = parse_wheel_filename(path.name)
            except ValueError:
                continue
            if wheel_name != wanted_name or wheel_version != wanted_version:
                continue
            tag = build[0] if build else 0
            if build_tag is not None and root == layout.wheels_downloads and tag != build_tag:
                continue
            return path
    return None


def find_source(layout: OutputLayout, name: str, version: str, download_url: str) -> Path:
    """The downloaded sdist of a node (named by its download URL); SourceError if absent."""
    filename = download_url.rsplit("/", 1)[-1].split("#", 1)[0]
    path = layout.sdists_downloads / filename
    if not filename or not path.is_file():
        raise SourceError(
            f"source {filename or download_url!r} is not in {layout.sdists_downloads}; run "
            "discovery (bootstrap) first",
            package=name,
            version=version,
        )
    return path


def downloaded_source(layout: OutputLayout, name: str, version: str) -> Path:
    """The sdist of ``name==version`` in ``sdists-repo/downloads``; SourceError if absent."""
    wanted_name, wanted_version = canonicalize_name(name), Version(version)
    folder = layout.sdists_downloads
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        for ext in SDIST_EXTENSIONS:
            if not path.name.endswith(ext):
                continue
            try:
                found = parse_sdist_filename(path.name[: -len(ext)] + ".tar.gz")
            except ValueError:
                continue
            if found == (wanted_name, wanted_version):
                return path
    raise SourceError(
        f"no source archive of {wanted_name}=={version} in {folder}; run "
        "`step download-source-archive` first",
        package=wanted_name,
        version=version,
    )


def missing_build_requirements(graph: DependencyGraph, key: str, layout: OutputLayout) -> list[str]:
    """Build requirements of ``key`` whose wheels are not in the local repository."""
    missing = []
    for dep in graph.build_requirements(key):
        node = graph.nodes[dep]
        if find_wheel(layout, node.canonicalized_name, node.version) is None:
            missing.append(dep)
    return missing


def take_prebuilt(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    index: IndexClient | None,
    settings: Settings | None = None,
    plugins: Plugins | None = None,
) -> BuiltWheel:
    """The pre-built wheel of ``name==version``: the one in the repository, else the index's.

    The ``prebuilt_wheel`` hooks of ``plugins`` (None: the installed ones) run on it, with the
    variant of ``settings`` (None: the default variant).
    """
    start = time.perf_counter()
    existing = find_wheel(layout, name, version)
    reused = existing is not None
    if existing is None:
        if index is None:
            raise SourceError(
                f"the pre-built wheel of {name}=={version} is not in {layout.wheels_prebuilt} "
                "and no index was given to download it from",
                package=name,
                version=version,
            )
        existing = download_prebuilt_wheel(index, name, version, layout.wheels_prebuilt)
    return _prebuilt(
        layout,
        name,
        version,
        existing,
        start=start,
        reused=reused,
        settings=settings if settings is not None else Settings(),
        plugins=_installed(plugins),
    )


def _prebuilt(
    layout: OutputLayout,
    name: str,
    version: str,
    path: Path,
    *,
    start: float,
    reused: bool,
    settings: Settings,
    plugins: Plugins,
) -> BuiltWheel:
    """A pre-built wheel taken as it is, once its ``prebuilt_wheel`` hooks have run."""
    plugins.run_hooks(
        "prebuilt_wheel",
        name=canonicalize_name(name),
        version=Version(version),
        variant=settings.variant,
        wheel=path,
    )
    return BuiltWheel(
        key=f"{name}=={version}",
        path=path,
        sha256=sources.sha256_file(path),
        size=path.stat().st_size,
        seconds=time.perf_counter() - start,
        log_path=layout.log_path(name, version),
        source_path=path,
        reused=reused,
        prebuilt=True,
    )


def build_node(
    graph: DependencyGraph,
    key: str,
    *,
    layout: OutputLayout,
    isolate: bool,
    settings: Settings | None = None,
    index: IndexClient | None = None,
    build_tag: int | None = None,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    index_url: str | None = None,
    keep_build_env: bool = False,
    plugins: Plugins | None = None,
) -> BuiltWheel:
    """Build ``key``'s wheel from the graph's recorded build requirements, hermetically.

    No discovery hook runs and no index is asked: the build environment gets exactly the
    wheels of ``graph.build_requirements(key)`` from the local repository (served on
    127.0.0.1, or ``index_url`` if a server is already running). A missing requirement wheel
    fails at once, naming it. ``settings`` (None: defaults) give the patches, environment,
    config_settings and build tag (``build_tag`` overrides it). A pre-built node (in the graph
    or the settings) is taken from ``wheels-repo/prebuilt``, or downloaded from ``index``.
    """
    node = graph.nodes[key]
    name, version = node.canonicalized_name, node.version
    layout.ensure()
    wanted = BuildSettings.of(settings, name, version, source_date_epoch=source_date_epoch)
    plugins = _installed(plugins)
    if node.pre_built or wanted.pre_built:
        return take_prebuilt(
            layout, name, version, index=index, settings=wanted.settings, plugins=plugins
        )
    missing = missing_build_requirements(graph, key, layout)
    if missing:
        raise BuildError(
            f"wheels of build requirements {', '.join(missing)} are missing from "
            f"{layout.wheels_downloads}; build them first",
            package=name,
            version=version,
            step="prepare build",
        )
    archive = find_source(layout, name, version, node.download_url)
    start = time.perf_counter()
    log = layout.log_path(name, version)
    log.write_text(f"# hermetic build of {key} from {archive.name}\n", encoding="utf-8")
    prepared = prepare_source(
        archive,
        layout.work_dir,
        settings=wanted.settings,
        name=name,
        version=version,
        log=log,
        plugins=plugins,
    )
    environ = _environ(prepared, wanted, plugins, name, version, log)
    sdist = build_sdist(
        layout,
        name,
        version,
        prepared,
        source_date_epoch=source_date_epoch,
        settings=wanted.settings,
        plugins=plugins,
        environ=environ,
    )
    pins = graph.build_requirements(key)
    with _wheel_server(layout, index_url) as url:
        envs = BuildEnvFactory(url, cache_dir=layout.work_dir / "uv-cache")
        env = envs.create(layout.package_dir(name, version) / "build-env", log=log)
        envs.install(env, pins, log=log)
    tag = wanted.build_tag if build_tag is None else build_tag
    wheel = _build_wheel(
        layout,
        name,
        version,
        prepared,
        env,
        wanted,
        tag,
        isolate,
        log,
        plugins,
        environ,
        archive=archive,
        source_url=node.download_url or None,
    )
    if not keep_build_env:
        shutil.rmtree(env.path, ignore_errors=True)
    _post_build(plugins, wanted.settings, name, version, sdist=sdist, wheel=wheel)
    return _built(key, wheel, log, archive, start)


def build_package(
    name: str,
    version: str,
    *,
    index: IndexClient,
    layout: OutputLayout,
    isolate: bool,
    wheel_server_url: str | None = None,
    constraints: Constraints | None = None,
    settings: Settings | None = None,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    keep_build_env: bool = False,
    plugins: Plugins | None = None,
) -> BuiltWheel:
    """fromager's ``build``: ``name==version`` from ``index``'s sdist, build requirements
    discovered by the hooks and installed only from ``wheel_server_url`` (default: the local
    repository, served on 127.0.0.1). A pre-built package's wheel comes from ``index``."""
    canonical = canonicalize_name(name)
    layout.ensure()
    wanted = BuildSettings.of(settings, canonical, version, source_date_epoch=source_date_epoch)
    plugins = _installed(plugins)
    if wanted.pre_built:
        return take_prebuilt(
            layout, canonical, version, index=index, settings=wanted.settings, plugins=plugins
        )
    start = time.perf_counter()
    log = layout.log_path(canonical, version)
    log.write_text(f"# build of {canonical}=={version}\n", encoding="utf-8")
    package = resolve_source(
        index,
        canonical,
        version,
        constraints=constraints,
        settings=wanted.settings,
        plugins=plugins,
    )
    if package.source.kind == "wheel":  # resolver_dist.include_wheels: taken as published
        path = sources.download(index.session, package.source, layout.wheels_prebuilt)
        return _prebuilt(
            layout,
            canonical,
            version,
            path,
            start=start,
            reused=False,
            settings=wanted.settings,
            plugins=plugins,
        )
    archive = _download_resolved(index, package, layout, settings=wanted.settings, plugins=plugins)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"# source {archive.name}\n")
    prepared = prepare_source(
        archive,
        layout.work_dir,
        settings=wanted.settings,
        name=canonical,
        version=version,
        log=log,
        plugins=plugins,
    )
    environ = _environ(prepared, wanted, plugins, canonical, version, log)
    sdist = build_sdist(
        layout,
        canonical,
        version,
        prepared,
        source_date_epoch=source_date_epoch,
        settings=wanted.settings,
        plugins=plugins,
        environ=environ,
    )
    env = prepare_build(
        layout,
        canonical,
        version,
        prepared,
        wheel_server_url=wheel_server_url,
        settings=wanted,
        isolate=isolate,
        log=log,
        plugins=plugins,
    )
    wheel = _build_wheel(
        layout,
        canonical,
        version,
        prepared,
        env,
        wanted,
        wanted.build_tag,
        isolate,
        log,
        plugins,
        environ,
        archive=archive,
        source_url=package.source.url,
    )
    if not keep_build_env:
        shutil.rmtree(env.path, ignore_errors=True)
    _post_build(plugins, wanted.settings, canonical, version, sdist=sdist, wheel=wheel)
    return _built(f"{canonical}=={version}", wheel, log, archive, start)


# -- the steps ------------------------------------------------------------------------------


def resolve_source(
    index: IndexClient,
    name: str,
    version: str,
    *,
    constraints: Constraints | None = None,
    settings: Settings | None = None,
    plugins: Plugins | None = None,
) -> ResolvedPackage:
    """The file ``name==version`` is built (or taken pre-built) from, chosen as a bootstrap
    chooses it: a ``find_candidates`` plugin's files, the settings' ``sdist_server_url`` or
    ``index``, filtered by ``resolver_dist`` (a version with a wheel is taken pre-built when
    ``include_wheels`` is set). ResolutionError when no admitted file has that version."""
    try:
        Version(version)
    except InvalidVersion as exc:
        raise ConfigError(f"{version!r} is not a valid version of {name}", package=name) from exc
    chosen = settings if settings is not None else Settings()
    policy = source_policy(chosen, index, plugins=_installed(plugins))
    resolver = Resolver(index, constraints or Constraints.from_lines([]), policy)
    return resolver.resolve(Requirement(f"{canonicalize_name(name)}=={version}"))


def download_source(
    index: IndexClient,
    name: str,
    version: str,
    layout: OutputLayout,
    *,
    constraints: Constraints | None = None,
    settings: Settings | None = None,
    plugins: Plugins | None = None,
) -> Path:
    """Download the sdist of ``name==version`` into ``sdists-repo/downloads``: by a
    ``download_source`` plugin, from the settings' ``download_source.url`` when there is one,
    else from the index ``resolve_source`` chose (hash-verified); ResolutionError when the
    index (or a ``find_candidates`` plugin) has no such version, SourceError when the settings
    take that version as a pre-built wheel."""
    plugins = _installed(plugins)
    package = resolve_source(
        index, name, version, constraints=constraints, settings=settings, plugins=plugins
    )
    return _download_resolved(index, package, layout, settings=settings, plugins=plugins)


def _download_resolved(
    index: IndexClient,
    package: ResolvedPackage,
    layout: OutputLayout,
    *,
    settings: Settings | None,
    plugins: Plugins,
) -> Path:
    """The archive of ``package``, downloaded; its URL recorded for ``step build-wheel``."""
    archive = _fetch(index, package, layout, settings=settings, plugins=plugins)
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


def _fetch(
    index: IndexClient,
    package: ResolvedPackage,
    layout: OutputLayout,
    *,
    settings: Settings | None,
    plugins: Plugins,
) -> Path:
    name, version = package.name, str(package.version)
    step = plugins.override(name, "download_source")
    if step is not None:
        layout.logs_dir.mkdir(parents=True, exist_ok=True)
        return step(
            name=package.name,
            version=package.version,
            url=package.source.url,
            dest_dir=layout.sdists_downloads,
            settings=settings if settings is not None else Settings(),
            session=index.session,
            log=layout.log_path(name, version),
        )
    if settings is not None:
        found = download_override(
            index.session, package, settings.package(name), layout.sdists_downloads
        )
        if found is not None:
            return found[0]
    if package.source.kind != "sdist":
        raise SourceError(
            f"{name}=={version} resolves to the wheel {package.source.filename}, which the "
            "settings take pre-built (pre_built, or resolver_dist.include_wheels): there is no "
            "source to download; set them to false to build it from source",
            package=name,
            version=version,
        )
    return sources.download(index.session, package.source, layout.sdists_downloads)


def _prepared_marker(layout: OutputLayout, name: str, version: str) -> Path:
    return layout.package_dir(name, version) / "prepared-source.json"


def prepare_downloaded(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    settings: Settings | None = None,
    plugins: Plugins | None = None,
) -> PreparedSource:
    """``step prepare-source``: unpack and patch the downloaded sdist of ``name==version`` (or
    let a ``prepare_source`` plugin prepare it); record where the tree is for the later steps."""
    archive = downloaded_source(layout, name, version)
    log = layout.log_path(name, version)
    layout.logs_dir.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as out:
        out.write(f"# prepare source of {name}=={version} from {archive.name}\n")
    chosen = settings if settings is not None else Settings()
    prepared = prepare_source(
        archive,
        layout.work_dir,
        settings=chosen,
        name=name,
        version=version,
        log=log,
        plugins=_installed(plugins),
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
    settings: Settings | None = None,
    plugins: Plugins | None = None,
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
            f"the source of {name}=={version} is not prepared in {layout.work_dir}; run "
            "`step prepare-source` first",
            package=name,
            version=version,
        )
    build_system = prepared_build_system(
        project_dir,
        settings=settings if settings is not None else Settings(),
        name=name,
        version=version,
        log=layout.log_path(name, version),
        plugins=_installed(plugins),
    )
    return PreparedSource(root, project_dir, build_system, patches)


def build_sdist(
    layout: OutputLayout,
    name: str,
    version: str,
    prepared: PreparedSource,
    *,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    settings: Settings | None = None,
    plugins: Plugins | None = None,
    environ: dict[str, str] | None = None,
) -> Path:
    """``step build-sdist``: the prepared tree as a reproducible sdist in ``sdists-repo/builds``
    (or a ``build_sdist`` plugin's sdist there). ``environ``: the build's extra environment
    (default: the settings', updated by an ``update_extra_environ`` plugin)."""
    plugins = _installed(plugins)
    log = layout.log_path(name, version)
    if environ is None:
        wanted = BuildSettings.of(settings, name, version, source_date_epoch=source_date_epoch)
        environ = _environ(prepared, wanted, plugins, name, version, log)
    return plugin_steps.build_sdist(
        plugins,
        prepared.root,
        layout.repacked_sdist(name, version),
        name=name,
        version=version,
        settings=settings if settings is not None else Settings(),
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
    isolate: bool,
    log: Path | None = None,
    plugins: Plugins | None = None,
) -> BuildEnv:
    """``step prepare-build``: a fresh environment with the build-system requirements, then
    what ``get_requires_for_build_wheel`` (or a ``get_build_backend_dependencies`` plugin)
    asks for, installed from the wheel server only."""
    log = log or layout.log_path(name, version)
    plugins = _installed(plugins)
    environ = _environ(prepared, settings, plugins, name, version, log)
    with _wheel_server(layout, wheel_server_url) as url:
        envs = BuildEnvFactory(url, cache_dir=layout.work_dir / "uv-cache")
        env = envs.create(layout.package_dir(name, version) / "build-env", log=log)
        envs.install(env, [str(r) for r in prepared.build_system.requires], log=log)
        hooks = _hooks(prepared, env, settings, isolate, log, name, version, environ)
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


def build_wheel(
    layout: OutputLayout,
    name: str,
    version: str,
    prepared: PreparedSource,
    env: BuildEnv,
    *,
    settings: BuildSettings,
    isolate: bool,
    plugins: Plugins | None = None,
) -> Path:
    """``step build-wheel``: build in ``env`` and finalize into ``wheels-repo/downloads``
    (the SBOM names the source ``step download-source-archive`` recorded, if any)."""
    log = layout.log_path(name, version)
    plugins = _installed(plugins)
    environ = _environ(prepared, settings, plugins, name, version, log)
    archive, source_url = _recorded_source(layout, name, version)
    return _build_wheel(
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


# -- helpers --------------------------------------------------------------------------------


@contextmanager
def _wheel_server(layout: OutputLayout, url: str | None) -> Iterator[str]:
    """``url``, or the local repository served on 127.0.0.1 for the duration."""
    if url is not None:
        yield url
        return
    with LocalIndexServer(layout.wheel_roots) as server:
        yield server.url


def _installed(plugins: Plugins | None) -> Plugins:
    return plugins if plugins is not None else Plugins.load()


def _environ(
    prepared: PreparedSource,
    settings: BuildSettings,
    plugins: Plugins,
    name: str,
    version: str,
    log: Path,
) -> dict[str, str]:
    """The hooks' extra environment: the settings', then an update_extra_environ plugin's."""
    return plugin_steps.extra_environ(
        plugins,
        name=name,
        version=version,
        source_dir=prepared.project_dir,
        settings=settings.settings,
        base=settings.environ,
        log=log,
    )


def _hooks(
    prepared: PreparedSource,
    env: BuildEnv,
    settings: BuildSettings,
    isolate: bool,
    log: Path,
    name: str,
    version: str,
    environ: dict[str, str],
) -> HookCaller:
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


def _build_wheel(
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
    hooks = _hooks(prepared, env, settings, isolate, log, name, version, environ)
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


def _post_build(
    plugins: Plugins, settings: Settings, name: str, version: str, *, sdist: Path, wheel: Path
) -> None:
    """The ``post_build`` hooks, as a bootstrap runs them after each wheel it builds."""
    plugins.run_hooks(
        "post_build",
        name=canonicalize_name(name),
        version=Version(version),
        variant=settings.variant,
        sdist=sdist,
        wheel=wheel,
    )


def _built(key: str, wheel: Path, log: Path, source: Path, start: float) -> BuiltWheel:
    return BuiltWheel(
        key=key,
        path=wheel,
        sha256=sources.sha256_file(wheel),
        size=wheel.stat().st_size,
        seconds=time.perf_counter() - start,
        log_path=log,
        source_path=source,
    )
