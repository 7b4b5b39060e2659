"""Per-package build settings read from an overrides folder (fromager's settings format).

INTERFACE FIRST: the values and method signatures below are the contract the engine, the
CLI and the Dagster layer code against. ``load_settings`` and the methods marked TODO are
filled in by the settings work (strict validation, templating, fingerprints).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name

DEFAULT_VARIANT = "cpu"


def override_name(name: str) -> str:
    """fromager's file-name form of a package name: canonical, with ``-`` written ``_``."""
    return canonicalize_name(name).replace("-", "_")


@dataclass(frozen=True)
class VariantSettings:
    env: Mapping[str, str] = field(default_factory=dict)
    pre_built: bool = False
    wheel_server_url: str | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class DownloadSource:
    url: str | None = None  # template: ${version}, ${canonicalized_name}
    destination_filename: str | None = None  # same templates


@dataclass(frozen=True)
class ResolverDist:
    sdist_server_url: str | None = None
    include_sdists: bool = True
    include_wheels: bool = False
    ignore_platform: bool = False
    min_release_age: int | None = None  # days


@dataclass(frozen=True)
class BuildOptions:
    exclusive_build: bool = False
    cpu_cores_per_job: int = 1
    memory_per_job_gb: float = 1.0


@dataclass(frozen=True)
class ProjectOverride:
    update_build_requires: tuple[str, ...] = ()  # requirement strings, replace by name or add
    remove_build_requires: tuple[str, ...] = ()  # package names
    requires_external: tuple[str, ...] = ()


@dataclass(frozen=True)
class PackageSettings:
    """Everything ``overrides/settings/<override_name>.yaml`` says about one package."""

    name: NormalizedName
    env: Mapping[str, str] = field(default_factory=dict)
    variants: Mapping[str, VariantSettings] = field(default_factory=dict)
    download_source: DownloadSource = field(default_factory=DownloadSource)
    resolver_dist: ResolverDist = field(default_factory=ResolverDist)
    build_dir: str | None = None
    changelog: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # version -> entries
    config_settings: Mapping[str, str | tuple[str, ...]] = field(default_factory=dict)
    build_options: BuildOptions = field(default_factory=BuildOptions)
    git_options: Mapping[str, Any] = field(default_factory=dict)
    project_override: ProjectOverride = field(default_factory=ProjectOverride)
    annotations: Mapping[str, str] = field(default_factory=dict)
    purl: str | None = None
    source_file: Path | None = None  # the YAML file it came from, if any

    def for_variant(self, variant: str) -> VariantSettings:
        return self.variants.get(variant, VariantSettings())


@dataclass(frozen=True)
class Settings:
    """The settings of one run: one variant, every package's settings, the patches folder."""

    variant: str = DEFAULT_VARIANT
    packages: Mapping[NormalizedName, PackageSettings] = field(default_factory=dict)
    global_changelog: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # variant ->
    patches_dir: Path | None = None
    files: tuple[Path, ...] = ()  # every settings file read

    def package(self, name: str) -> PackageSettings:
        """The settings of ``name`` (defaults when it has no file)."""
        canonical = canonicalize_name(name)
        return self.packages.get(canonical) or PackageSettings(name=canonical)

    def pre_built(self, name: str) -> bool:
        return self.package(name).for_variant(self.variant).pre_built

    def exclusive_build(self, name: str) -> bool:
        return self.package(name).build_options.exclusive_build

    def build_tag(self, name: str, version: str) -> int:
        """Changelog entries for this package's version plus the variant's global entries."""
        raise NotImplementedError  # TODO(settings)

    def environ(self, name: str, version: str, base: Mapping[str, str]) -> dict[str, str]:
        """Extra environment for builds of ``name==version``: the package's ``env`` then the
        variant's ``env``, templates expanded against ``base`` and earlier values
        (``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${__version__}``). Only the added or
        changed variables are returned."""
        raise NotImplementedError  # TODO(settings)

    def patches(self, name: str, version: str) -> list[Path]:
        """Patch files for ``name==version`` in this variant, merged and sorted by file name."""
        raise NotImplementedError  # TODO(settings)

    def fingerprint(self, name: str, version: str) -> str:
        """sha256 over everything in the settings that changes the build of ``name==version``
        (effective env, config_settings, build tag, project_override, patch contents)."""
        raise NotImplementedError  # TODO(settings)


def load_settings(
    *,
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
    variant: str = DEFAULT_VARIANT,
) -> Settings:
    """Read and strictly validate the settings; ConfigError lists every problem of a file."""
    raise NotImplementedError  # TODO(settings)
