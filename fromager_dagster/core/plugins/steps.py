"""The overridable steps as the engine runs them: a package's plugin override, else the default.

Discovery (bootstrap) and the build commands (builder) both call these, so a plugin changes a
package's build the same way in both stages. ``plugins`` is the run's :class:`Plugins`; every
function takes the package's name and version in any spelling and passes the plugin the
canonical name and a ``Version``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from fromager_dagster.core.build.hooks import HookCaller
from fromager_dagster.core.errors import SourceError
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.plugins.registry import Plugins
from fromager_dagster.core.plugins.wheel_metadata import add_extra_metadata
from fromager_dagster.core.resolve.requirements import marker_holds, parse_requirement
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.repack import repack_sdist


def _ids(name: str, version: str | Version) -> tuple[NormalizedName, Version]:
    return canonicalize_name(name), version if isinstance(version, Version) else Version(version)


def plugin_requirements(
    texts: Iterable[str], *, name: str, version: str | Version, step: str
) -> list[Requirement]:
    """A plugin's requirement strings as requirements, those whose markers do not hold left out."""
    where = f"{package_key(canonicalize_name(name), version)} {step} plugin"
    reqs = [parse_requirement(text, source=where) for text in texts]
    return [r for r in reqs if marker_holds(r)]


def extra_environ(
    plugins: Plugins,
    *,
    name: str,
    version: str | Version,
    source_dir: Path,
    settings: Settings,
    base: Mapping[str, str],
    log: Path,
) -> dict[str, str]:
    """``base`` (the settings' environment) updated by an ``update_extra_environ`` override."""
    environ = dict(base)
    step = plugins.override(name, "update_extra_environ")
    if step is not None:
        canonical, ver = _ids(name, version)
        added = step(
            name=canonical,
            version=ver,
            source_dir=source_dir,
            settings=settings,
            extra_environ=dict(environ),
            log=log,
        )
        environ.update(added or {})
    return environ


def _dependencies(
    step_name: str,
    plugins: Plugins,
    hooks: HookCaller,
    *,
    name: str,
    version: str | Version,
    settings: Settings,
    environ: Mapping[str, str],
    log: Path,
) -> list[Requirement] | None:
    step = plugins.override(name, step_name)
    if step is None:
        return None
    canonical, ver = _ids(name, version)
    texts = step(
        name=canonical,
        version=ver,
        source_dir=hooks.source_dir,
        settings=settings,
        hooks=hooks,
        extra_environ=dict(environ),
        log=log,
    )
    return plugin_requirements(texts, name=name, version=version, step=step_name)


def backend_requirements(
    plugins: Plugins,
    hooks: HookCaller,
    *,
    name: str,
    version: str | Version,
    settings: Settings,
    environ: Mapping[str, str],
    log: Path,
) -> list[Requirement]:
    """The ``build-backend`` requirements: a ``get_build_backend_dependencies`` override's, else
    the backend's ``get_requires_for_build_wheel``. ``environ`` is the hooks' extra environment."""
    found = _dependencies(
        "get_build_backend_dependencies",
        plugins,
        hooks,
        name=name,
        version=version,
        settings=settings,
        environ=environ,
        log=log,
    )
    return hooks.requires_for_wheel() if found is None else found


def sdist_requirements(
    plugins: Plugins,
    hooks: HookCaller,
    *,
    name: str,
    version: str | Version,
    settings: Settings,
    environ: Mapping[str, str],
    log: Path,
) -> list[Requirement]:
    """The ``build-sdist`` requirements: a ``get_build_sdist_dependencies`` override's, else the
    backend's ``get_requires_for_build_sdist``."""
    found = _dependencies(
        "get_build_sdist_dependencies",
        plugins,
        hooks,
        name=name,
        version=version,
        settings=settings,
        environ=environ,
        log=log,
    )
    return hooks.requires_for_sdist() if found is None else found


def build_sdist(
    plugins: Plugins,
    source_dir: Path,
    dest: Path,
    *,
    name: str,
    version: str | Version,
    settings: Settings,
    environ: Mapping[str, str],
    log: Path,
    source_date_epoch: int,
) -> Path:
    """The re-packed sdist of the prepared tree ``source_dir`` at ``dest``: a ``build_sdist``
    override's, else a reproducible tar of the tree. SourceError if the override writes it
    anywhere but ``dest``."""
    step = plugins.override(name, "build_sdist")
    if step is None:
        return repack_sdist(
            source_dir,
            dest,
            name=name,
            version=str(version),
            source_date_epoch=source_date_epoch,
        )
    canonical, ver = _ids(name, version)
    dest.parent.mkdir(parents=True, exist_ok=True)
    written = step(
        name=canonical,
        version=ver,
        source_dir=source_dir,
        dest=dest,
        settings=settings,
        extra_environ=dict(environ),
        log=log,
    )
    if written.resolve() != dest.resolve():
        raise SourceError(
            f"build_sdist plugin of {canonical} wrote {written}, not {dest}; it must write the "
            "sdist at the `dest` it is given",
            package=canonical,
            version=str(ver),
            log_path=str(log),
            step="build_sdist",
        )
    return dest


def build_wheel(
    plugins: Plugins,
    hooks: HookCaller,
    out_dir: Path,
    *,
    name: str,
    version: str | Version,
    settings: Settings,
    environ: Mapping[str, str],
    log: Path,
) -> Path:
    """The backend's wheel in ``out_dir``: a ``build_wheel`` override's, else the PEP 517
    ``build_wheel`` hook's. Pass it to :func:`add_wheel_metadata`, then finalise it."""
    step = plugins.override(name, "build_wheel")
    canonical, ver = _ids(name, version)
    if step is None:
        return hooks.build_wheel(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    built: Path = step(
        name=canonical,
        version=ver,
        source_dir=hooks.source_dir,
        out_dir=out_dir,
        settings=settings,
        hooks=hooks,
        extra_environ=dict(environ),
        log=log,
    )
    return built


def add_wheel_metadata(
    plugins: Plugins,
    built: Path,
    *,
    name: str,
    version: str | Version,
    source_dir: Path,
    settings: Settings,
    environ: Mapping[str, str],
    log: Path,
) -> Path:
    """``built`` (the backend's wheel, rewritten in place) after an
    ``add_extra_metadata_to_wheels`` override added to its ``.dist-info``; call it before
    ``wheels.finalize_wheel``, which regenerates RECORD."""
    step = plugins.override(name, "add_extra_metadata_to_wheels")
    if step is None:
        return built
    canonical, ver = _ids(name, version)
    return add_extra_metadata(
        built,
        step,
        name=canonical,
        version=ver,
        source_dir=source_dir,
        settings=settings,
        extra_environ=dict(environ),
        log=log,
    )
