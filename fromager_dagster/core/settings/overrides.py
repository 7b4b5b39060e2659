"""Per-package build settings (fromager's settings format): what a build of one
package-version needs in one variant: environment, build tag, patches, hook limits and a
fingerprint of all of it. :mod:`.loading` reads them from an overrides folder.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from fromager_dagster.core.build.confined import (
    DEFAULT_HOOK_TIMEOUT,
    DEFAULT_MAX_LOG_MB,
    HookLimits,
)
from fromager_dagster.core.package_log import DEFAULT_KEEP_LOG_MB
from fromager_dagster.core.settings.layout import override_name, patch_folders, public_version
from fromager_dagster.core.settings.sections import (
    BuildOptions,
    DownloadSource,
    ProjectOverride,
    ResolverDist,
    SandboxSettings,
    VariantSettings,
)
from fromager_dagster.core.settings.template import expand_template

DEFAULT_VARIANT = "cpu"


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
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)
    annotations: Mapping[str, str] = field(default_factory=dict)
    purl: str | None = None
    source_file: Path | None = None  # the YAML file it came from, if any
    purl_config: Mapping[str, str] = field(default_factory=dict)  # `purl:` written as a mapping

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
    sbom: Mapping[str, Any] | None = None  # settings.yaml `sbom:` as read; None: no SBOM
    sandbox: SandboxSettings = field(default_factory=SandboxSettings)  # settings.yaml's

    def package(self, name: str) -> PackageSettings:
        """The settings of ``name`` (defaults when it has no file)."""
        canonical = canonicalize_name(name)
        return self.packages.get(canonical) or PackageSettings(name=canonical)

    def pre_built(self, name: str) -> bool:
        return self.package(name).for_variant(self.variant).pre_built

    def wheel_server_url(self, name: str) -> str | None:
        """The index ``name``'s pre-built wheel comes from, when it is pre-built in this
        variant and the variant names one (``variants.<v>.wheel_server_url``)."""
        if not self.pre_built(name):
            return None
        return self.package(name).for_variant(self.variant).wheel_server_url or None

    def hook_limits(self, name: str) -> HookLimits:
        """The time and log limits of ``name``'s hooks: its ``sandbox`` settings, else the
        global ones, else the defaults."""
        own, common = self.package(name).sandbox, self.sandbox
        timeout = own.hook_timeout or common.hook_timeout or DEFAULT_HOOK_TIMEOUT
        log_mb = own.max_log_mb or common.max_log_mb or DEFAULT_MAX_LOG_MB
        transient = own.timeout_is_transient
        if transient is None:
            transient = bool(common.timeout_is_transient)
        keep_mb = own.keep_log_mb or common.keep_log_mb or DEFAULT_KEEP_LOG_MB
        return HookLimits(timeout, log_mb * 1024 * 1024, transient, keep_mb * 1024 * 1024)

    def exclusive_build(self, name: str) -> bool:
        return self.package(name).build_options.exclusive_build

    def build_tag(self, name: str, version: str) -> int:
        """Changelog entries for this package's version plus the variant's global entries.

        As in fromager, a local version label is ignored (``1.0+x`` counts ``1.0``'s entries)
        and a pre-built package has no build tag (0): its wheel is used as published.
        """
        if self.pre_built(name):
            return 0
        wanted = public_version(version)
        own = sum(
            len(entries)
            for key, entries in self.package(name).changelog.items()
            if wanted is not None and Version(key) == wanted
        )
        return own + len(self.global_changelog.get(self.variant, ()))

    def environ(self, name: str, version: str, base: Mapping[str, str]) -> dict[str, str]:
        """Extra environment for builds of ``name==version``: the package's ``env`` then the
        variant's ``env``, templates expanded against ``base`` and earlier values
        (``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${__version__}``). Only the added or
        changed variables are returned."""
        pkg = self.package(name)
        entries = [*pkg.env.items(), *pkg.for_variant(self.variant).env.items()]
        scope = {**base, "__version__": str(version)}
        result: dict[str, str] = {}
        for key, template in entries:
            scope[key] = result[key] = expand_template(template, scope)
        return {key: value for key, value in result.items() if base.get(key) != value}

    def patches(self, name: str, version: str) -> list[Path]:
        """Patch files for ``name==version`` in this variant, merged and sorted by file name.

        Read from ``<patches_dir>/<override_name>/``, ``<patches_dir>/<override_name>-<version>/``
        (versions compared as versions, local label ignored) and the ``<variant>/`` subfolder of
        either. Files with the same name keep that folder order.
        """
        if self.patches_dir is None:
            return []
        wanted = public_version(version)
        found: list[Path] = []
        for folder, folder_version in patch_folders(self.patches_dir, override_name(name)):
            if folder_version is None or folder_version == wanted:
                for where in (folder, folder / self.variant):
                    found.extend(sorted(p for p in where.glob("*.patch") if p.is_file()))
        return sorted(found, key=lambda path: path.name)

    def fingerprint(self, name: str, version: str) -> str:
        """sha256 over everything in the settings that changes the build of ``name==version``
        (effective env, config_settings, build tag, project_override, patch contents) or the
        wheel's bytes (``sbom``, ``purl``, the package's and the variant's ``annotations``).

        A package with neither a settings file nor a patch folder has the variant's default
        fingerprint, computed once (a code location fingerprints every package it loads).
        """
        if canonicalize_name(name) in self.packages or override_name(name) in self._patched:
            return self._fingerprint(name, version)
        return self._default_fingerprint

    @functools.cached_property
    def _patched(self) -> frozenset[str]:
        """Override names that have a patch folder (``<name>`` or ``<name>-<version>``)."""
        if self.patches_dir is None or not self.patches_dir.is_dir():
            return frozenset()
        return frozenset(
            entry.name.split("-", 1)[0] for entry in self.patches_dir.iterdir() if entry.is_dir()
        )

    @functools.cached_property
    def _default_fingerprint(self) -> str:
        return self._fingerprint("-", "0")  # no package has this name: only the defaults count

    def _fingerprint(self, name: str, version: str) -> str:
        pkg = self.package(name)
        variant = pkg.for_variant(self.variant)
        doc = {
            "environ": self.environ(name, version, {}),
            "config_settings": {
                key: list(value) if isinstance(value, tuple) else value
                for key, value in pkg.config_settings.items()
            },
            "build_tag": self.build_tag(name, version),
            "project_override": asdict(pkg.project_override),
            "download_source": asdict(pkg.download_source),
            "build_dir": pkg.build_dir,
            "git_options": dict(pkg.git_options),
            "pre_built": variant.pre_built,
            "wheel_server_url": variant.wheel_server_url if variant.pre_built else None,
            # what wheel_extras writes into the wheel (requires_external: project_override)
            "sbom": self.sbom,
            "purl": pkg.purl,
            "purl_config": dict(pkg.purl_config),
            "annotations": dict(pkg.annotations),
            "variant_annotations": dict(variant.annotations),
        }
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode())
        for patch in self.patches(name, version):
            content = patch.read_bytes()
            digest.update(f"\0patch {patch.name} {len(content)}\0".encode())
            digest.update(content)
        return digest.hexdigest()
