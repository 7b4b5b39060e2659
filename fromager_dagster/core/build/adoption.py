"""The source tree and build environment a discovery leaves for a package's later build.

A discovery that does not build a package's wheel (``sdist_only``, the Dagster default: the
wheel assets build them) has nevertheless unpacked and patched its source, made its build
environment and installed into it the wheels its build requirements resolved to, to run the
requirement and metadata hooks. The wheel's build, later and maybe in another run, would make
the same again. Instead it adopts them, once, when all of this still holds:

- the record names the same source archive (sha256), build settings fingerprint (patches,
  plugin, environment) and SOURCE_DATE_EPOCH the build has;
- the tree and the environment are still there;
- the environment holds exactly the build's pins (the graph's build stages), and each was
  installed from a wheel whose sha256 is the one the local repository has now (a build
  requirement rebuilt since with other bytes means a fresh environment).

This is what a one-pass bootstrap (and fromager) does anyway: build the wheel in the tree
where the hooks ran. Anything else, and the build unpacks and installs afresh. The record is
claimed (renamed) by the build that adopts it, so a retry after a failure starts clean.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fromager_dagster.core.build.environment import BuildEnv
from fromager_dagster.core.graph.model import write_atomic
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository.records import WheelRepository, repack_identity
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.prepare import PreparedSource, prepared_build_system


@dataclass(frozen=True)
class DiscoveredBuild:
    """What a discovery left: the prepared tree and the build environment."""

    prepared: PreparedSource
    env: BuildEnv


def _record_path(layout: OutputLayout, name: str, version: str) -> Path:
    return layout.package_dir(name, version) / "discovered-build.json"


def record_discovered(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    prepared: PreparedSource,
    env: BuildEnv,
    installed: Iterable[str],
    archive: Path,
    settings: Settings,
    plugins: Plugins,
    source_date_epoch: int,
) -> None:
    """Record the tree and environment discovery leaves for ``name==version``'s build."""
    pins = sorted(set(installed))
    record = {
        **repack_identity(archive, settings, plugins, name, version, source_date_epoch),
        "root": str(prepared.root),
        "project_dir": str(prepared.project_dir),
        "patches": [str(p) for p in prepared.patches],
        "env": str(env.path),
        "installed": WheelRepository(layout).hashes(pins),
    }
    path = _record_path(layout, name, version)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=2))


def forget_discovered(layout: OutputLayout, name: str, version: str) -> None:
    """Drop the record: the tree or environment is about to change (a wheel built in it)."""
    with contextlib.suppress(OSError):
        _record_path(layout, name, version).unlink()


def adopt_discovered(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    pins: Iterable[str],
    archive: Path,
    settings: Settings,
    plugins: Plugins,
    source_date_epoch: int,
    log: Path,
) -> DiscoveredBuild | None:
    """The tree and environment discovery left for this build, claimed; None if any of the
    module's conditions fails (the build then prepares its own)."""
    path = _record_path(layout, name, version)
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict):
        return None
    expected = repack_identity(archive, settings, plugins, name, version, source_date_epoch)
    if not _still_holds(record, expected, layout, sorted(set(pins))):
        return None
    claimed = path.with_name(f"{path.name}.adopted-{os.getpid()}")
    try:
        os.replace(path, claimed)  # one build adopts it; a retry starts afresh
    except OSError:
        return None
    claimed.unlink(missing_ok=True)
    project_dir = Path(record["project_dir"])
    build_system = prepared_build_system(
        project_dir, settings=settings, name=name, version=version, log=log, plugins=plugins
    )
    prepared = PreparedSource(
        Path(record["root"]),
        project_dir,
        build_system,
        tuple(Path(p) for p in record["patches"]),
    )
    env = BuildEnv(Path(record["env"]))
    with log.open("a", encoding="utf-8") as out:
        out.write(
            f"# adopted the source tree and build environment discovery left in {env.path.parent}\n"
        )
    return DiscoveredBuild(prepared, env)


def _still_holds(
    record: dict[str, Any], expected: dict[str, Any], layout: OutputLayout, pins: list[str]
) -> bool:
    if any(record.get(k) != v for k, v in expected.items()):
        return False
    try:
        root, project_dir = Path(record["root"]), Path(record["project_dir"])
        env = BuildEnv(Path(record["env"]))
        installed = record["installed"]
        if not isinstance(record["patches"], list) or not isinstance(installed, dict):
            return False
    except (KeyError, TypeError):
        return False
    if not (root.is_dir() and project_dir.is_dir() and env.python.exists()):
        return False
    if sorted(installed) != pins or env.installed() != pins:
        return False
    return WheelRepository(layout).hashes(pins) == installed
