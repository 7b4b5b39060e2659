"""Preparing a package's source for its build: unpack, patch, find the project, apply overrides.

Discovery (bootstrap) and the hermetic build (builder) both start here, so a package is
built from exactly the same tree, build system and environment in both stages.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.build.build_system import BuildSystem, read_build_system
from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.plugins.steps import plugin_requirements
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.settings.sections import ProjectOverride
from fromager_dagster.core.sources import unpacking
from fromager_dagster.core.sources.patches import apply_patches


@dataclass(frozen=True)
class PreparedSource:
    """A source tree ready for its PEP 517 hooks."""

    root: Path  # the unpacked, patched tree: what the re-packed sdist holds
    project_dir: Path  # where the hooks run: ``root`` or its ``build_dir`` setting
    build_system: BuildSystem  # with project_override applied
    patches: tuple[Path, ...]  # applied, in order


def prepare_source(
    archive: Path,
    work_dir: Path,
    *,
    settings: Settings,
    name: str,
    version: str,
    log: Path,
    plugins: Plugins,
    unpack: Callable[[Path, Path], Path] = unpacking.unpack,
) -> PreparedSource:
    """Unpack ``archive`` under ``work_dir`` and apply the package's patches and overrides.

    ``unpack`` is :func:`.unpacking.unpack` or the same in another process.

    A ``prepare_source`` plugin replaces the unpacking, the patches and ``project_override``:
    the tree is what it returns. ``build_dir`` still applies, and a
    ``get_build_system_dependencies`` plugin still gives the build-system requirements.
    """
    step = plugins.override(name, "prepare_source")
    if step is None:
        root = unpack(archive, work_dir)
        applied = apply_patches(
            root, settings.patches(name, version), log=log, package=name, version=version
        )
    else:
        root = step(
            name=canonicalize_name(name),
            version=Version(version),
            archive=archive,
            work_dir=work_dir,
            settings=settings,
            log=log,
        )
        applied = []
    package = settings.package(name)
    project_dir = root
    if package.build_dir:
        project_dir = (root / package.build_dir).resolve()
        if not project_dir.is_relative_to(root.resolve()) or not project_dir.is_dir():
            raise ConfigError(
                f"build_dir {package.build_dir!r} is not a folder inside the source of "
                f"{package_key(name, version)}; fix it in {package.source_file or 'the settings'}",
                package=name,
                version=version,
            )
    build_system = prepared_build_system(
        project_dir, settings=settings, name=name, version=version, log=log, plugins=plugins
    )
    return PreparedSource(root, project_dir, build_system, tuple(applied))


def prepared_build_system(
    project_dir: Path,
    *,
    settings: Settings,
    name: str,
    version: str,
    log: Path,
    plugins: Plugins,
) -> BuildSystem:
    """The build system of a prepared tree: ``[build-system]`` with ``project_override``
    applied (unless a ``prepare_source`` plugin prepared the tree), its requirements replaced
    by a ``get_build_system_dependencies`` plugin's."""
    build_system = read_build_system(project_dir, package=name)
    if plugins.override(name, "prepare_source") is None:
        build_system = override_build_system(build_system, settings.package(name).project_override)
    step = plugins.override(name, "get_build_system_dependencies")
    if step is None:
        return build_system
    texts = step(
        name=canonicalize_name(name),
        version=Version(version),
        source_dir=project_dir,
        settings=settings,
        log=log,
    )
    reqs = plugin_requirements(
        texts, name=name, version=version, step="get_build_system_dependencies"
    )
    return replace(build_system, requires=tuple(reqs))


def override_build_system(build_system: BuildSystem, override: ProjectOverride) -> BuildSystem:
    """``[build-system].requires`` after ``remove_build_requires`` and ``update_build_requires``.

    An update replaces the requirement of the same name, or is added when there is none.
    """
    removed = {canonicalize_name(name) for name in override.remove_build_requires}
    updates = [Requirement(text) for text in override.update_build_requires]
    replaced = {canonicalize_name(req.name) for req in updates}
    kept = [
        req
        for req in build_system.requires
        if canonicalize_name(req.name) not in removed | replaced
    ]
    if not removed and not updates:
        return build_system
    return replace(build_system, requires=(*kept, *updates))


#: SOURCE_DATE_EPOCH when not asked for another: 1980-01-01, the earliest time a zip can hold.
DEFAULT_SOURCE_DATE_EPOCH = 315532800


def hook_environ(
    settings: Settings, name: str, version: str, *, source_date_epoch: int
) -> dict[str, str]:
    """The extra environment of every hook and build of ``name==version``."""
    return {
        "SOURCE_DATE_EPOCH": str(source_date_epoch),
        **settings.environ(name, version, os.environ),
    }


def build_fingerprint(settings: Settings, plugins: Plugins, name: str, version: str) -> str:
    """What, beyond the source and the build requirements, decides the build of
    ``name==version``: its settings (env, patches, build tag...) and the plugin overriding it.
    Recorded with every build and compared before a wheel is reused."""
    fingerprint = settings.fingerprint(name, version)
    plugin = plugins.describe(name)
    return fingerprint if plugin is None else f"{fingerprint} {plugin}"
