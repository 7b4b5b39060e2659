"""The record of a bootstrap's finished build: what lets a later run reuse its wheel."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import sources
from .graph import write_atomic
from .layout import OutputLayout
from .plugins import Plugins
from .prepare import build_fingerprint
from .resolver import ResolvedPackage
from .settings import Settings


@dataclass(frozen=True)
class CachedBuild:
    wheel: Path
    build_requires: dict[str, list[str]]  # the requirement strings, by requirement type


def record_path(layout: OutputLayout, pkg: ResolvedPackage) -> Path:
    return layout.cache_dir / f"{pkg.name}-{pkg.version}.json"


def cached_build(
    layout: OutputLayout, pkg: ResolvedPackage, settings: Settings, plugins: Plugins
) -> CachedBuild | None:
    """The record of an earlier build of this exact source, if its wheel is still there."""
    try:
        record: dict[str, Any] = json.loads(record_path(layout, pkg).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    wheel = layout.wheels_downloads / str(record.get("wheel", ""))
    same = all(record.get(key) == value for key, value in _identity(pkg, settings, plugins))
    if not same or not wheel.is_file() or sources.sha256_file(wheel) != record.get("wheel_sha256"):
        return None
    return CachedBuild(wheel, record["build_requires"])


def write_record(
    layout: OutputLayout,
    pkg: ResolvedPackage,
    settings: Settings,
    plugins: Plugins,
    *,
    build_requires: dict[str, list[str]],
    wheel: Path,
) -> None:
    """Record the build of ``pkg`` that made ``wheel``."""
    record = {
        **dict(_identity(pkg, settings, plugins)),
        "build_requires": build_requires,
        "wheel": wheel.name,
        "wheel_sha256": sources.sha256_file(wheel),
    }
    write_atomic(record_path(layout, pkg), json.dumps(record, indent=2))


def _identity(
    pkg: ResolvedPackage, settings: Settings, plugins: Plugins
) -> Iterator[tuple[str, Any]]:
    """What must match for a recorded build to stand for a new one, in the order checked."""
    name, version = pkg.name, str(pkg.version)
    yield "source_sha256", pkg.source.sha256
    yield "build_tag", settings.build_tag(name, version)
    yield "settings", build_fingerprint(settings, plugins, name, version)
