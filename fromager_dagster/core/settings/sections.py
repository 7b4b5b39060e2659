"""The sections of a package settings file: each one's value type and how it is read."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.settings.schema import Reader, key_path, show
from fromager_dagster.core.settings.template import (
    SOURCE_NAMES,
    fill_source_template,
    template_problem,
)


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

    def resolved_url(self, name: str, version: str) -> str | None:
        """``url`` with ``${version}`` and ``${canonicalized_name}`` filled in."""
        return fill_source_template(self.url, name, version)

    def resolved_filename(self, name: str, version: str) -> str | None:
        """``destination_filename`` with ``${version}`` and ``${canonicalized_name}`` filled in."""
        return fill_source_template(self.destination_filename, name, version)


@dataclass(frozen=True)
class ResolverDist:
    sdist_server_url: str | None = None
    include_sdists: bool = True
    include_wheels: bool = False
    ignore_platform: bool = False
    min_release_age: int | None = None  # days
    use_pypi_org_metadata: bool | None = None  # accepted for fromager compatibility


@dataclass(frozen=True)
class BuildOptions:
    exclusive_build: bool = False
    cpu_cores_per_job: int = 1
    memory_per_job_gb: float = 1.0


@dataclass(frozen=True)
class SandboxSettings:
    """``sandbox``: a hook's limits (None: the global settings', else the defaults) and, per
    package, the top-level wheel entries allowed beyond its own tree (a ``.pth`` file...)."""

    hook_timeout: float | None = None  # seconds
    max_log_mb: int | None = None
    timeout_is_transient: bool | None = None
    keep_log_mb: int | None = None
    wheel_top_level: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectOverride:
    update_build_requires: tuple[str, ...] = ()  # requirement strings, replace by name or add
    remove_build_requires: tuple[str, ...] = ()  # package names
    requires_external: tuple[str, ...] = ()


_ENV_NAME = re.compile(r"[^=\0]+")


def read_env(r: Reader, data: dict[str, Any], prefix: str) -> dict[str, str]:
    """``env``: values are strings (numbers and booleans converted as fromager does)."""
    result: dict[str, str] = {}
    path = key_path(prefix, "env")
    for name, raw in r.section(data, "env", prefix, None).items():
        where = key_path(path, name)
        if not _ENV_NAME.fullmatch(name):
            r.add(where, "not a valid environment variable name")
            continue
        if isinstance(raw, bool):
            value = "1" if raw else "0"
        elif isinstance(raw, int | float):
            value = str(raw)
        elif isinstance(raw, str):
            value = raw.strip()
        else:
            r.add(where, f"expected a string, number or boolean, got {show(raw)}")
            continue
        problem = template_problem(value)
        if problem:
            r.add(where, f"bad template {value!r}: {problem}")
            continue
        result[name] = value
    return result


def read_changelog(r: Reader, data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """``changelog``: version -> entries; versions must parse and be distinct."""
    raw = data.get("changelog")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        r.add("changelog", f"expected a mapping of version to entries, got {show(raw)}")
        return {}
    seen: dict[Version, str] = {}
    result: dict[str, tuple[str, ...]] = {}
    for key, entries in raw.items():
        where = f"changelog.{key}"
        if not isinstance(key, str):
            r.add(where, f"write the version as a quoted string (YAML read {key!r} as a number)")
            continue
        try:
            version = Version(key)
        except InvalidVersion:
            r.add(where, f"invalid version {key!r}")
            continue
        if version in seen:
            r.add(where, f"same version as {seen[version]!r}")
            continue
        seen[version] = key
        result[key] = r.strings(entries, where)
    return result


_VARIANT_KEYS = frozenset({"env", "pre_built", "wheel_server_url", "annotations"})


def read_variants(r: Reader, data: dict[str, Any]) -> dict[str, VariantSettings]:
    result: dict[str, VariantSettings] = {}
    for name, raw in r.section(data, "variants", "", None).items():
        where = f"variants.{name}"
        section = r.table(raw, where, _VARIANT_KEYS)
        result[name] = VariantSettings(
            env=read_env(r, section, where),
            pre_built=r.boolean(section, "pre_built", where, False),
            wheel_server_url=r.optional_str(section, "wheel_server_url", where),
            annotations=r.string_map(section, "annotations", where),
        )
    return result


def read_download_source(r: Reader, data: dict[str, Any]) -> DownloadSource:
    section = r.section(data, "download_source", "", frozenset({"url", "destination_filename"}))
    values: dict[str, str | None] = {}
    for key in ("url", "destination_filename"):
        value = r.optional_str(section, key, "download_source")
        problem = template_problem(value, names=SOURCE_NAMES) if value else None
        if value and key == "destination_filename" and "/" in value:
            problem = "must be a file name, without '/'"
        if problem:
            r.add(f"download_source.{key}", f"bad template {value!r}: {problem}")
            value = None
        values[key] = value
    return DownloadSource(**values)


_RESOLVER_KEYS = frozenset(
    {
        "sdist_server_url",
        "include_sdists",
        "include_wheels",
        "ignore_platform",
        "min_release_age",
        "use_pypi_org_metadata",
    }
)


def read_resolver_dist(
    r: Reader, data: dict[str, Any], variants: Mapping[str, VariantSettings]
) -> ResolverDist:
    """``resolver_dist``; a package must be able to have candidates (a pre_built variant
    takes wheels whatever include_sdists and include_wheels say)."""
    where = "resolver_dist"
    section = r.section(data, where, "", _RESOLVER_KEYS)
    dist = ResolverDist(
        sdist_server_url=r.optional_str(section, "sdist_server_url", where),
        include_sdists=r.boolean(section, "include_sdists", where, True),
        include_wheels=r.boolean(section, "include_wheels", where, False),
        ignore_platform=r.boolean(section, "ignore_platform", where, False),
        min_release_age=r.integer(section, "min_release_age", where, None, 0),
        use_pypi_org_metadata=r.optional_bool(section, "use_pypi_org_metadata", where),
    )
    if any(variant.pre_built for variant in variants.values()):
        return dist
    if dist.ignore_platform and not dist.include_wheels:
        r.add(
            f"{where}.ignore_platform",
            "has no effect without include_wheels: true (or a pre_built variant)",
        )
    if not dist.include_sdists and not dist.include_wheels:
        r.add(
            f"{where}.include_sdists",
            "include_sdists and include_wheels are both false, so no file can be a candidate; "
            "set one of them to true",
        )
    return dist


def read_build_options(r: Reader, data: dict[str, Any]) -> BuildOptions:
    where = "build_options"
    keys = frozenset(
        {"exclusive_build", "cpu_cores_per_job", "memory_per_job_gb", "build_ext_parallel"}
    )
    section = r.section(data, where, "", keys)
    r.boolean(section, "build_ext_parallel", where, False)  # deprecated in fromager, ignored
    return BuildOptions(
        exclusive_build=r.boolean(section, "exclusive_build", where, False),
        cpu_cores_per_job=r.integer(section, "cpu_cores_per_job", where, 1, 1) or 1,
        memory_per_job_gb=r.number(section, "memory_per_job_gb", where, 1.0, 0.1),
    )


_SANDBOX_KEYS = frozenset({"hook_timeout", "max_log_mb", "timeout_is_transient", "keep_log_mb"})


def read_sandbox(r: Reader, data: dict[str, Any], *, package: bool) -> SandboxSettings:
    """``sandbox`` (docs/security.md); ``wheel_top_level`` only in a package's settings."""
    where = "sandbox"
    keys = _SANDBOX_KEYS | {"wheel_top_level"} if package else _SANDBOX_KEYS
    section = r.section(data, where, "", keys)
    timeout = (
        r.number(section, "hook_timeout", where, 0.0, 1.0) if "hook_timeout" in section else None
    )
    top_level = r.string_list(section, "wheel_top_level", where)
    for name in top_level:
        if not name or "/" in name or name in {".", ".."}:
            r.add(f"{where}.wheel_top_level", f"{name!r} is not a top-level file or folder name")
    return SandboxSettings(
        hook_timeout=timeout,
        max_log_mb=r.integer(section, "max_log_mb", where, None, 1),
        timeout_is_transient=r.optional_bool(section, "timeout_is_transient", where),
        keep_log_mb=r.integer(section, "keep_log_mb", where, None, 1),
        wheel_top_level=top_level,
    )


def read_project_override(r: Reader, data: dict[str, Any]) -> ProjectOverride:
    where = "project_override"
    keys = frozenset({"update_build_requires", "remove_build_requires", "requires_external"})
    section = r.section(data, where, "", keys)
    update = r.string_list(section, "update_build_requires", where)
    for index, text in enumerate(update):
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            reason = str(exc).splitlines()[0]
            r.add(
                f"{where}.update_build_requires[{index}]", f"invalid requirement {text!r}: {reason}"
            )
    remove: list[str] = []
    for index, text in enumerate(r.string_list(section, "remove_build_requires", where)):
        try:
            remove.append(canonicalize_name(text, validate=True))
        except InvalidName:
            r.add(f"{where}.remove_build_requires[{index}]", f"invalid package name {text!r}")
    return ProjectOverride(
        update_build_requires=update,
        remove_build_requires=tuple(remove),
        requires_external=r.string_list(section, "requires_external", where),
    )


def read_config_settings(r: Reader, data: dict[str, Any]) -> dict[str, str | tuple[str, ...]]:
    result: dict[str, str | tuple[str, ...]] = {}
    for key, value in r.section(data, "config_settings", "", None).items():
        if isinstance(value, str):
            result[key] = value
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            result[key] = tuple(value)
        else:
            r.add(
                f"config_settings.{key}",
                f"expected a string or a list of strings, got {show(value)}",
            )
    return result


def read_git_options(r: Reader, data: dict[str, Any]) -> dict[str, Any]:
    where = "git_options"
    section = r.section(data, where, "", frozenset({"submodules", "submodule_paths"}))
    result: dict[str, Any] = {}
    if "submodules" in section:
        result["submodules"] = r.boolean(section, "submodules", where, False)
    if "submodule_paths" in section:
        result["submodule_paths"] = list(r.string_list(section, "submodule_paths", where))
    return result


_PURL_KEYS = frozenset({"type", "namespace", "name", "version", "repository_url", "upstream"})


def read_purl(r: Reader, data: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """``purl``: a purl string, or fromager's mapping form (type, name, ... overrides)."""
    value = data.get("purl")
    if value is None or isinstance(value, str):
        return value, {}
    if not isinstance(value, dict):
        r.add("purl", f"expected a string or a mapping, got {show(value)}")
        return None, {}
    section = r.table(value, "purl", _PURL_KEYS)
    return None, {
        key: item for key in section if (item := r.optional_str(section, key, "purl")) is not None
    }


def read_build_dir(r: Reader, data: dict[str, Any]) -> str | None:
    value = r.optional_str(data, "build_dir", "")
    if value is not None:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts:
            r.add("build_dir", f"expected a relative path inside the source tree, got {value!r}")
            return None
    return value


def read_global_settings(
    raw: Any, r: Reader
) -> tuple[dict[str, tuple[str, ...]], dict[str, Any] | None, SandboxSettings]:
    """``settings.yaml``: ``changelog.<variant>: [entries]``, ``sbom`` (kept as read; None
    when the key is absent, ``{}`` for an empty ``sbom:`` or ``sbom: {}``, which turn the SBOM
    on with its defaults, as in fromager) and ``sandbox`` (every hook's limits)."""
    data = r.table(raw, "", frozenset({"changelog", "sbom", "sandbox"}))
    changelog = {
        variant: r.strings(entries, f"changelog.{variant}")
        for variant, entries in r.section(data, "changelog", "", None).items()
    }
    sbom = r.section(data, "sbom", "", None) if "sbom" in data else None
    return changelog, sbom, read_sandbox(r, data, package=False)
