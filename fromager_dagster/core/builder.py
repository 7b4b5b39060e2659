"""Hermetic build of one graph node: from the recorded graph and downloaded sources only."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

from . import sources, wheels
from .buildenv import BuildEnvFactory
from .errors import BuildError, SourceError
from .graph import DependencyGraph
from .hooks import HookCaller, read_build_system
from .index_server import LocalIndexServer
from .layout import OutputLayout

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
    source_path: Path
    reused: bool = False


def find_wheel(layout: OutputLayout, name: str, version: str) -> Path | None:
    """The wheel of ``name==version`` in the local repository (built or pre-built), if any."""
    wanted_name, wanted_version = canonicalize_name(name), Version(version)
    for root in layout.wheel_roots:
        if not root.is_dir():
            continue
        for path in sorted(root.glob("*.whl")):
            try:
                wheel_name, wheel_version, _, _ = parse_wheel_filename(path.name)
            except ValueError:
                continue
            if wheel_name == wanted_name and wheel_version == wanted_version:
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


def missing_build_requirements(graph: DependencyGraph, key: str, layout: OutputLayout) -> list[str]:
    """Build requirements of ``key`` whose wheels are not in the local repository."""
    missing = []
    for dep in graph.build_requirements(key):
        node = graph.nodes[dep]
        if find_wheel(layout, node.canonicalized_name, node.version) is None:
            missing.append(dep)
    return missing


def build_node(
    graph: DependencyGraph,
    key: str,
    *,
    layout: OutputLayout,
    isolate: bool,
    build_tag: int = 0,
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH,
    index_url: str | None = None,
    keep_build_env: bool = False,
) -> BuiltWheel:
    """Build ``key``'s wheel from the graph's recorded build requirements, hermetically.

    No discovery hook runs and no index is asked: the build environment gets exactly the
    wheels of ``graph.build_requirements(key)`` from the local repository (served on
    127.0.0.1, or ``index_url`` if a server is already running). A missing requirement wheel
    fails at once, naming it.
    """
    node = graph.nodes[key]
    name, version = node.canonicalized_name, node.version
    layout.ensure()
    log = layout.log_path(name, version)
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
    log.write_text(f"# hermetic build of {key} from {archive.name}\n", encoding="utf-8")
    source_dir = sources.unpack(archive, layout.work_dir)
    sources.repack_sdist(
        source_dir,
        layout.repacked_sdist(name, version),
        name=name,
        version=version,
        source_date_epoch=source_date_epoch,
    )
    build_system = read_build_system(source_dir, package=name)
    pins = graph.build_requirements(key)
    pkg_dir = layout.package_dir(name, version)
    server = LocalIndexServer(layout.wheel_roots) if index_url is None else None
    try:
        if server is not None:
            server.start()
            index_url = server.url
        assert index_url is not None
        envs = BuildEnvFactory(index_url, cache_dir=layout.work_dir / "uv-cache")
        env = envs.create(pkg_dir / "build-env", log=log)
        envs.install(env, pins, log=log)
    finally:
        if server is not None:
            server.stop()
    hooks = HookCaller(
        source_dir,
        build_system,
        env,
        log=log,
        isolate=isolate,
        extra_environ={"SOURCE_DATE_EPOCH": str(source_date_epoch)},
        package=name,
        version=version,
    )
    built = hooks.build_wheel(pkg_dir / "dist")
    wheel = wheels.finalize_wheel(
        built, layout.wheels_downloads, build_tag=build_tag, source_date_epoch=source_date_epoch
    )
    shutil.rmtree(pkg_dir / "dist", ignore_errors=True)
    if not keep_build_env:
        shutil.rmtree(env.path, ignore_errors=True)
    return BuiltWheel(
        key=key,
        path=wheel,
        sha256=sources.sha256_file(wheel),
        size=wheel.stat().st_size,
        seconds=time.perf_counter() - start,
        log_path=log,
        source_path=archive,
    )
