"""Building one package's wheel: hermetically from the graph, or from an index like fromager."""

from __future__ import annotations

import time
from pathlib import Path

from packaging.utils import canonicalize_name

from fromager_dagster.core.build.job import PackageBuild
from fromager_dagster.core.build.sandbox import Sandbox
from fromager_dagster.core.build.settings import (
    DEFAULT_SOURCE_DATE_EPOCH,
)
from fromager_dagster.core.build.steps import (
    download_resolved,
    resolve_source,
)
from fromager_dagster.core.errors import BuildError
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.package_log import start_stage
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.provenance.statement import RunInfo
from fromager_dagster.core.repository.built import (
    BuiltWheel,
    find_source,
    missing_build_requirements,
)
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources


def build_node(
    graph: DependencyGraph,
    key: str,
    *,
    layout: OutputLayout,
    isolate: bool | Sandbox,
    settings: Settings,
    index: IndexClient | None = None,
    build_tag: int | None = None,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    index_url: str | None = None,
    keep_build_env: bool = False,
    plugins: Plugins,
    uv_cache: Path | None = None,
    run: RunInfo | None = None,
) -> BuiltWheel:
    """Build ``key``'s wheel from the graph's recorded build requirements, hermetically.

    No discovery hook runs and no index is asked: the build environment gets exactly the
    wheels of ``graph.build_requirements(key)`` from the local repository (served on
    127.0.0.1, or ``index_url`` if a server is already running). A missing requirement wheel
    fails at once, naming it. ``settings`` give the patches, environment,
    config_settings and build tag (``build_tag`` overrides it). A pre-built node (in the graph
    or the settings) is taken from ``wheels-repo/prebuilt``, or downloaded from ``index``.
    ``plugins`` (the installed ones, ``Plugins.load()``) override steps and run their hooks.
    ``uv_cache`` is the installer cache of the caller's session (a Dagster run's, say:
    :func:`~fromager_dagster.core.build.environment.session_cache`); None: one for this build only.
    ``run`` (the collection, Dagster run id and signing key) goes into the wheel's provenance,
    written with every wheel built here; ``source_date_epoch`` is the fallback of the
    source's own (:mod:`.sources.epoch`).
    """
    node = graph.nodes[key]
    job = PackageBuild.of(
        layout,
        key,
        node.canonicalized_name,
        node.version,
        settings=settings,
        plugins=plugins,
        isolate=isolate,
        source_date_epoch=source_date_epoch,
        keep_build_env=keep_build_env,
        run=run,
    )
    if node.pre_built or job.wanted.pre_built:
        return job.take_prebuilt(index)
    _check_build_requirements(graph, key, layout)
    archive = find_source(layout, job.name, job.version, node.download_url)
    start = time.perf_counter()
    start_stage(job.log, f"build of {key} from {archive.name} (hermetic, from the graph)")
    return job.run(
        archive,
        start,
        pins=graph.build_stages(key),
        wheel_server_url=index_url,
        build_tag=job.wanted.build_tag if build_tag is None else build_tag,
        source_url=node.download_url or None,
        uv_cache=uv_cache,
    )


def build_package(
    name: str,
    version: str,
    *,
    index: IndexClient,
    layout: OutputLayout,
    isolate: bool | Sandbox,
    wheel_server_url: str | None = None,
    constraints: Constraints | None = None,
    settings: Settings,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    keep_build_env: bool = False,
    plugins: Plugins,
    run: RunInfo | None = None,
) -> BuiltWheel:
    """fromager's ``build``: ``name==version`` from ``index``'s sdist, build requirements
    discovered by the hooks and installed only from ``wheel_server_url`` (default: the local
    repository, served on 127.0.0.1). A pre-built package's wheel comes from ``index``."""
    canonical = canonicalize_name(name)
    job = PackageBuild.of(
        layout,
        package_key(canonical, version),
        canonical,
        version,
        settings=settings,
        plugins=plugins,
        isolate=isolate,
        source_date_epoch=source_date_epoch,
        keep_build_env=keep_build_env,
        run=run,
    )
    if job.wanted.pre_built:
        return job.take_prebuilt(index)
    start = time.perf_counter()
    start_stage(job.log, f"build of {package_key(canonical, version)}")
    package = resolve_source(
        index,
        canonical,
        version,
        constraints=constraints,
        settings=job.wanted.settings,
        plugins=job.plugins,
    )
    if package.source.kind == "wheel":  # resolver_dist.include_wheels: taken as published
        path = sources.download(index.session, package.source, layout.wheels_prebuilt)
        return job.accept_prebuilt(path, start)
    archive = download_resolved(
        index, package, layout, settings=job.wanted.settings, plugins=job.plugins
    )
    with job.log.open("a", encoding="utf-8") as out:
        out.write(f"# source {archive.name}\n")
    return job.run(
        archive,
        start,
        pins=None,
        wheel_server_url=wheel_server_url,
        build_tag=job.wanted.build_tag,
        source_url=package.source.url,
    )


def _check_build_requirements(graph: DependencyGraph, key: str, layout: OutputLayout) -> None:
    """BuildError naming the build requirements of ``key`` whose wheels are not built yet."""
    missing = missing_build_requirements(graph, key, layout)
    if missing:
        node = graph.nodes[key]
        raise BuildError(
            f"wheels of build requirements {', '.join(missing)} are missing from "
            f"{layout.wheels_downloads}; build them first",
            package=node.canonicalized_name,
            version=node.version,
            step="prepare build",
        )
