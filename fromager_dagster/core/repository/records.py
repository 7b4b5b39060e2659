"""Build records: what a finished build was made from, and the one rule for reusing its wheel.

A record (``work-dir/cache/<name>-<version>.json``) names the source archive's sha256, the
build tag, the build fingerprint (settings, patches, overriding plugin), the build
requirements as the hooks gave them, every wheel installed into the build environment
with its sha256, and the wheel made with its sha256. A later build of the same
package-version reuses the wheel only if all of these still hold: a rebuilt build
requirement with other bytes, a changed patch or a new source means a new build. The
bootstrap, the wheel assets and the command line all ask :func:`reusable_build`.
"""

from __future__ import annotations

import functools
import json
import os
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.utils import parse_wheel_filename as _parse_wheel_filename
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.graph.model import BUILD_TYPES, write_atomic
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.resolve.resolver import ResolvedPackage
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources
from fromager_dagster.core.sources.prepare import build_fingerprint


@dataclass(frozen=True)
class CachedBuild:
    wheel: Path
    wheel_sha256: str
    build_requires: dict[str, list[str]]  # the requirement strings, by requirement type


def record_path(layout: OutputLayout, name: str, version: str) -> Path:
    return layout.cache_dir / f"{name}-{version}.json"


@functools.lru_cache(maxsize=65536)
def _wheel_id(filename: str) -> tuple[str, Version, int] | None:
    """Name, version and build tag of a wheel file name (None: not a wheel's)."""
    try:
        name, version, build, _ = _parse_wheel_filename(filename)
    except (ValueError, InvalidVersion):
        return None
    return name, version, build[0] if build else 0


#: A folder's wheel file names by folder, with the folder's (inode, mtime) they were read at.
_LISTINGS: dict[str, tuple[tuple[int, int], tuple[str, ...]]] = {}
_LISTINGS_LOCK = threading.Lock()
#: A listing is kept only once its folder is this old: a change within the same clock tick
#: as the last one would not move the folder's mtime (the "racy" case).
_SETTLED_NS = 100_000_000


def _wheel_files(root: Path) -> tuple[str, ...]:
    """The ``*.whl`` names in ``root``, sorted; read again only once the folder changed (a
    discovery checks every package's record against the same folder)."""
    try:
        st = os.stat(root)
    except OSError:
        return ()
    stamp = (st.st_ino, st.st_mtime_ns)
    with _LISTINGS_LOCK:
        known = _LISTINGS.get(str(root))
    if known is not None and known[0] == stamp:
        return known[1]
    try:
        names = tuple(sorted(n for n in os.listdir(root) if n.endswith(".whl")))
    except OSError:
        return ()
    if time.time_ns() - st.st_mtime_ns > _SETTLED_NS:
        with _LISTINGS_LOCK:
            _LISTINGS[str(root)] = (stamp, names)
    return names


class WheelRepository:
    """A snapshot of the local repository's wheels by (name, version), with their hashes
    computed at most once: what checking many records against the repository needs."""

    def __init__(self, layout: OutputLayout) -> None:
        self._paths: dict[tuple[str, Version], Path] = {}
        tags: dict[tuple[str, Version], int] = {}
        for root in layout.wheel_roots:
            for filename in _wheel_files(root):
                parsed = _wheel_id(filename)
                if parsed is None:
                    continue
                name, version, tag = parsed
                if (name, version) not in self._paths or tag > tags[(name, version)]:
                    # the installer takes the highest build tag
                    self._paths[(name, version)], tags[(name, version)] = root / filename, tag
        self._hashes: dict[Path, str] = {}

    def path(self, pin: str) -> Path | None:
        """The wheel of ``name==version``, if the repository has one."""
        name, _, version = pin.partition("==")
        try:
            return self._paths.get((canonicalize_name(name), Version(version)))
        except InvalidVersion:
            return None

    def sha256(self, path: Path) -> str:
        if path not in self._hashes:
            self._hashes[path] = sources.file_sha256(path)
        return self._hashes[path]

    def hashes(self, pins: Iterable[str]) -> dict[str, str]:
        """``pin -> sha256`` of the wheels of ``pins`` (a missing wheel: "")."""
        found = {}
        for pin in sorted(set(pins)):
            path = self.path(pin)
            found[pin] = self.sha256(path) if path is not None else ""
        return found


def reusable_build(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    source_sha256: str | None,
    settings: Settings,
    plugins: Plugins,
    build_requires: Mapping[str, Iterable[str]] | None = None,
    repository: WheelRepository | None = None,
) -> CachedBuild | None:
    """The recorded build of ``name==version`` if it stands for a new build from these inputs.

    ``build_requires`` (by requirement type), when given, must equal the recorded ones (the
    graph's, for a hermetic build). Every wheel that was installed into the build environment
    must still be in the repository with the recorded sha256, and so must the wheel made.
    """
    try:
        record: dict[str, Any] = json.loads(
            record_path(layout, name, version).read_text(encoding="utf-8")
        )
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    identity = _identity(name, version, source_sha256, settings, plugins)
    if any(record.get(key) != value for key, value in identity):
        return None
    recorded = _by_type(record.get("build_requires") or {})
    if build_requires is not None and _sorted(recorded) != _sorted(_by_type(build_requires)):
        return None
    repository = repository or WheelRepository(layout)
    wheel = layout.wheels_downloads / str(record.get("wheel", ""))
    env = record.get("build_env")
    if (
        not wheel.is_file()
        or repository.sha256(wheel) != record.get("wheel_sha256")
        or not isinstance(env, dict)
        or repository.hashes(env) != env
    ):
        return None
    return CachedBuild(wheel, str(record["wheel_sha256"]), recorded)


def cached_build(
    layout: OutputLayout, pkg: ResolvedPackage, settings: Settings, plugins: Plugins
) -> CachedBuild | None:
    """The record of an earlier build of this exact source, if it still stands."""
    return reusable_build(
        layout,
        pkg.name,
        str(pkg.version),
        source_sha256=pkg.source.sha256,
        settings=settings,
        plugins=plugins,
    )


def write_record(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    source_sha256: str | None,
    settings: Settings,
    plugins: Plugins,
    build_requires: Mapping[str, Iterable[str]],
    build_env: Iterable[str],
    wheel: Path,
) -> None:
    """Record the build of ``name==version`` that made ``wheel`` in an environment holding
    the wheels of ``build_env`` (``name==version`` pins)."""
    repository = WheelRepository(layout)
    record = {
        **dict(_identity(name, version, source_sha256, settings, plugins)),
        "build_requires": _by_type(build_requires),
        "build_env": repository.hashes(build_env),
        "wheel": wheel.name,
        "wheel_sha256": sources.sha256_file(wheel),
    }
    path = record_path(layout, name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2))


def _by_type(build_requires: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """The requirements of each build type, in the order the hooks gave them, once each."""
    return {t: list(dict.fromkeys(build_requires.get(t, ()))) for t in BUILD_TYPES}


def _sorted(build_requires: dict[str, list[str]]) -> dict[str, list[str]]:
    return {t: sorted(reqs) for t, reqs in build_requires.items()}


#: How this tool turns a source into a wheel, beyond the inputs a record names: raised when
#: that changes, so that wheels built the old way are built again. 2: an SBOM in every wheel,
#: SOURCE_DATE_EPOCH from the source archive (wheels of 1 differ in bytes from today's).
BUILD_RULES = 2


def _identity(
    name: str, version: str, source_sha256: str | None, settings: Settings, plugins: Plugins
) -> Iterator[tuple[str, Any]]:
    """What must match for a recorded build to stand for a new one, in the order checked."""
    yield "build_rules", BUILD_RULES
    yield "source_sha256", source_sha256
    yield "build_tag", settings.build_tag(name, version)
    yield "settings", build_fingerprint(settings, plugins, name, version)


def _repack_record_path(layout: OutputLayout, name: str, version: str) -> Path:
    return layout.cache_dir / f"{name}-{version}.sdist.json"


def repack_identity(
    archive: Path, settings: Settings, plugins: Plugins, name: str, version: str, epoch: int
) -> dict[str, Any]:
    return {
        "archive_sha256": sources.file_sha256(archive),
        "settings": build_fingerprint(settings, plugins, name, version),
        "source_date_epoch": epoch,
    }


def repacked_sdist(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    archive: Path,
    settings: Settings,
    plugins: Plugins,
    source_date_epoch: int,
) -> Path | None:
    """The re-packed sdist an earlier step made from the same archive, settings (patches,
    plugin) and SOURCE_DATE_EPOCH, still there with the recorded sha256: a re-pack would
    write the same bytes again."""
    try:
        record = json.loads(_repack_record_path(layout, name, version).read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    expected = repack_identity(archive, settings, plugins, name, version, source_date_epoch)
    sdist = layout.sdists_builds / str(record.get("sdist", ""))
    if (
        any(record.get(k) != v for k, v in expected.items())
        or not sdist.is_file()
        or sources.sha256_file(sdist) != record.get("sdist_sha256")
    ):
        return None
    return sdist


def record_repacked_sdist(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    archive: Path,
    settings: Settings,
    plugins: Plugins,
    source_date_epoch: int,
    sdist: Path,
) -> None:
    """Record what ``sdist`` (in sdists-repo/builds) was re-packed from."""
    if sdist.parent != layout.sdists_builds or not sdist.is_file():
        return
    record = {
        **repack_identity(archive, settings, plugins, name, version, source_date_epoch),
        "sdist": sdist.name,
        "sdist_sha256": sources.sha256_file(sdist),
    }
    path = _repack_record_path(layout, name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2))
