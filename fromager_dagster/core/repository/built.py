"""Wheels and sources in the local repository: found, taken pre-built, or just built."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name, parse_sdist_filename, parse_wheel_filename
from packaging.version import Version

from fromager_dagster.core.errors import SourceError
from fromager_dagster.core.graph.model import BUILD_TYPES, DependencyGraph, write_atomic
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.distributions import SDIST_EXTENSIONS
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository.prebuilt import download_prebuilt_wheel
from fromager_dagster.core.repository.records import (
    WheelRepository,
    record_path,
    reusable_build,
    write_record,
)
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources


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

    @classmethod
    def since(
        cls,
        start: float,
        key: str,
        path: Path,
        log: Path,
        source: Path,
        *,
        reused: bool = False,
        prebuilt: bool = False,
    ) -> BuiltWheel:
        """The wheel at ``path``, hashed now, made in the time since ``start``."""
        return cls(
            key=key,
            path=path,
            sha256=sources.sha256_file(path),
            size=path.stat().st_size,
            seconds=time.perf_counter() - start,
            log_path=log,
            source_path=source,
            reused=reused,
            prebuilt=prebuilt,
        )


def _built_record_path(layout: OutputLayout, name: str, version: str) -> Path:
    return layout.cache_dir / f"{name}-{version}.built.json"


def record_built_wheel(layout: OutputLayout, name: str, version: str, built: BuiltWheel) -> None:
    """Note that a build command made ``built`` (its file name and sha256), so a rerun can
    trust that wheel (:func:`trusted_wheel`)."""
    path = _built_record_path(layout, name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps({"wheel": built.path.name, "wheel_sha256": built.sha256}))


def trusted_wheel(
    layout: OutputLayout, name: str, version: str, *, build_tag: int | None = None
) -> Path | None:
    """:func:`find_wheel`, but a wheel in ``wheels-repo/downloads`` only when a build record
    (bootstrap's, or a build command's) names that file with its current sha256: a file put
    there by anything else, or changed since, is not reused."""
    path = find_wheel(layout, name, version, build_tag=build_tag)
    if path is None or path.parent != layout.wheels_downloads:
        return path
    actual = sources.file_sha256(path)
    for record in (record_path(layout, name, version), _built_record_path(layout, name, version)):
        try:
            data = json.loads(record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if (
            isinstance(data, dict)
            and data.get("wheel") == path.name
            and data.get("wheel_sha256") == actual
        ):
            return path
    return None


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
        f"no source archive of {package_key(wanted_name, version)} in {folder}; run "
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
    settings: Settings,
    plugins: Plugins,
) -> BuiltWheel:
    """The pre-built wheel of ``name==version``: the one in the repository, else the index's.

    The ``prebuilt_wheel`` hooks of ``plugins`` run on it, with the variant of ``settings``.
    """
    start = time.perf_counter()
    existing = find_wheel(layout, name, version)
    reused = existing is not None
    if existing is None:
        if index is None:
            raise SourceError(
                f"the pre-built wheel of {package_key(name, version)} is not in "
                f"{layout.wheels_prebuilt} "
                "and no index was given to download it from",
                package=name,
                version=version,
            )
        existing = download_prebuilt_wheel(
            index, name, version, layout.wheels_prebuilt, settings=settings
        )
    return accept_prebuilt(
        layout,
        name,
        version,
        existing,
        start=start,
        reused=reused,
        settings=settings,
        plugins=plugins,
    )


def accept_prebuilt(
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
    log = layout.log_path(name, version)
    key = package_key(name, version)
    return BuiltWheel.since(start, key, path, log, path, reused=reused, prebuilt=True)


def reusable_wheel(
    graph: DependencyGraph,
    key: str,
    layout: OutputLayout,
    *,
    settings: Settings,
    plugins: Plugins,
    repository: WheelRepository | None = None,
) -> BuiltWheel | None:
    """The wheel an earlier build (discovery's, or a wheel asset's) made of node ``key`` from
    the same inputs: the engine's rule (:func:`~.records.reusable_build`) with the graph's
    build requirements; None when there is none or the node's source is not downloaded."""
    node = graph.nodes[key]
    name, version = node.canonicalized_name, node.version
    try:
        source = find_source(layout, name, version, node.download_url)
    except SourceError:
        return None
    cached = reusable_build(
        layout,
        name,
        version,
        source_sha256=sources.file_sha256(source),
        settings=settings,
        plugins=plugins,
        build_requires=_recorded_build_requires(graph, key),
        repository=repository,
    )
    if cached is None:
        return None
    return BuiltWheel(
        key=key,
        path=cached.wheel,
        sha256=cached.wheel_sha256,
        size=cached.wheel.stat().st_size,
        seconds=0.0,
        log_path=layout.log_path(name, version),
        source_path=source,
        reused=True,
    )


def build_or_reuse(
    graph: DependencyGraph,
    key: str,
    layout: OutputLayout,
    *,
    settings: Settings,
    plugins: Plugins,
    reuse: bool,
    build: Callable[[], BuiltWheel],
) -> BuiltWheel:
    """Node ``key``'s wheel: the one an earlier build made from the same inputs (with
    ``reuse``), else ``build()``'s, recorded so that later runs (a bootstrap, the assets, the
    command line) reuse it."""
    built = (
        reusable_wheel(graph, key, layout, settings=settings, plugins=plugins) if reuse else None
    )
    if built is not None:
        return built
    built = build()
    node = graph.nodes[key]
    write_record(
        layout,
        node.canonicalized_name,
        node.version,
        source_sha256=sources.file_sha256(built.source_path),
        settings=settings,
        plugins=plugins,
        build_requires=_recorded_build_requires(graph, key),
        build_env=graph.build_requirements(key),
        wheel=built.path,
    )
    return built


def _recorded_build_requires(graph: DependencyGraph, key: str) -> dict[str, list[str]]:
    edges = graph.nodes[key].edges
    return {t: [e.req for e in edges if e.req_type == t] for t in BUILD_TYPES}
