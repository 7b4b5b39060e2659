"""The typed seams of plugins: one Protocol per overridable step and per global hook."""

from __future__ import annotations

import inspect
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, Protocol

import requests
from packaging.utils import NormalizedName
from packaging.version import Version

from fromager_dagster.core.build.hooks import HookCaller
from fromager_dagster.core.index.distributions import DistFile
from fromager_dagster.core.resolve.resolver import PackageFinder
from fromager_dagster.core.settings.overrides import Settings

# -- the steps a package's plugin may override ------------------------------------------------


class FindCandidates(Protocol):
    """Replaces the index listing of one package (fromager's ``get_resolver_provider``).

    Return the sdists the resolver may choose from; the resolver still applies requirements,
    constraints and pre-release rules and picks the newest match. ``index`` is the default
    finder, so an override can filter or extend ``index.files(name)``.
    """

    def __call__(
        self, *, name: NormalizedName, settings: Settings, index: PackageFinder
    ) -> Iterable[DistFile]: ...


class DownloadSource(Protocol):
    """Fetch the source archive of ``name==version`` into ``dest_dir``; return its path."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        url: str,
        dest_dir: Path,
        settings: Settings,
        session: requests.Session,
        log: Path,
    ) -> Path: ...


class PrepareSource(Protocol):
    """Unpack (and patch) ``archive`` under ``work_dir``; return the source tree's root."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        archive: Path,
        work_dir: Path,
        settings: Settings,
        log: Path,
    ) -> Path: ...


class GetBuildSystemDependencies(Protocol):
    """The ``build-system`` requirement strings (default: ``[build-system].requires``)."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        source_dir: Path,
        settings: Settings,
        log: Path,
    ) -> Iterable[str]: ...


class GetBuildBackendDependencies(Protocol):
    """The ``build-backend`` requirement strings (default: ``get_requires_for_build_wheel``)."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        source_dir: Path,
        settings: Settings,
        hooks: HookCaller,
        extra_environ: Mapping[str, str],
        log: Path,
    ) -> Iterable[str]: ...


class GetBuildSdistDependencies(Protocol):
    """The ``build-sdist`` requirement strings (default: ``get_requires_for_build_sdist``)."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        source_dir: Path,
        settings: Settings,
        hooks: HookCaller,
        extra_environ: Mapping[str, str],
        log: Path,
    ) -> Iterable[str]: ...


class BuildSdist(Protocol):
    """Write the re-packed sdist of the prepared tree at ``dest``; return ``dest``."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        source_dir: Path,
        dest: Path,
        settings: Settings,
        extra_environ: Mapping[str, str],
        log: Path,
    ) -> Path: ...


class BuildWheel(Protocol):
    """Build a wheel into ``out_dir``; return its path (it is finalised afterwards)."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        source_dir: Path,
        out_dir: Path,
        settings: Settings,
        hooks: HookCaller,
        extra_environ: Mapping[str, str],
        log: Path,
    ) -> Path: ...


class AddExtraMetadataToWheels(Protocol):
    """Add files to the built wheel's ``dist_info_dir`` and/or return JSON data to record."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        source_dir: Path,
        dist_info_dir: Path,
        settings: Settings,
        extra_environ: Mapping[str, str],
        log: Path,
    ) -> Mapping[str, Any] | None: ...


class UpdateExtraEnviron(Protocol):
    """Variables to add to or change in the build environment (``extra_environ`` is read-only)."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        source_dir: Path,
        settings: Settings,
        extra_environ: Mapping[str, str],
        log: Path,
    ) -> Mapping[str, str] | None: ...


# -- the global hooks -------------------------------------------------------------------------


class PostBuild(Protocol):
    """After a wheel is built and finalised (``sdist`` is the re-packed sdist)."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        variant: str,
        sdist: Path | None,
        wheel: Path,
    ) -> None: ...


class PostBootstrap(Protocol):
    """After a package is fully bootstrapped (``wheel`` is None with ``--sdist-only``)."""

    def __call__(
        self,
        *,
        name: NormalizedName,
        version: Version,
        variant: str,
        sdist: Path | None,
        wheel: Path | None,
    ) -> None: ...


class PrebuiltWheel(Protocol):
    """After a pre-built wheel is downloaded and verified instead of built."""

    def __call__(
        self, *, name: NormalizedName, version: Version, variant: str, wheel: Path
    ) -> None: ...


Step = Literal[
    "find_candidates",
    "download_source",
    "prepare_source",
    "get_build_system_dependencies",
    "get_build_backend_dependencies",
    "get_build_sdist_dependencies",
    "build_sdist",
    "build_wheel",
    "add_extra_metadata_to_wheels",
    "update_extra_environ",
]
Hook = Literal["post_bootstrap", "post_build", "prebuilt_wheel"]

STEP_PROTOCOLS: dict[str, type] = {
    "find_candidates": FindCandidates,
    "download_source": DownloadSource,
    "prepare_source": PrepareSource,
    "get_build_system_dependencies": GetBuildSystemDependencies,
    "get_build_backend_dependencies": GetBuildBackendDependencies,
    "get_build_sdist_dependencies": GetBuildSdistDependencies,
    "build_sdist": BuildSdist,
    "build_wheel": BuildWheel,
    "add_extra_metadata_to_wheels": AddExtraMetadataToWheels,
    "update_extra_environ": UpdateExtraEnviron,
}
HOOK_PROTOCOLS: dict[str, type] = {
    "post_bootstrap": PostBootstrap,
    "post_build": PostBuild,
    "prebuilt_wheel": PrebuiltWheel,
}
STEPS: tuple[str, ...] = tuple(STEP_PROTOCOLS)
HOOKS: tuple[str, ...] = tuple(HOOK_PROTOCOLS)


def parameters(protocol: type) -> tuple[str, ...]:
    """The keyword parameters a step or hook is called with, in declaration order."""
    names = inspect.signature(protocol.__call__).parameters
    return tuple(n for n in names if n != "self")
