"""Per-package build settings read from an overrides folder (fromager's settings format).

``load_settings`` reads ``settings.yaml`` and ``settings/<override_name>.yaml`` and validates
them strictly (every problem of every file is reported at once); ``Settings`` answers what a
build of one package-version needs in one variant: environment, build tag, patches and a
fingerprint of all of it.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidName, NormalizedName, canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import ConfigError

DEFAULT_VARIANT = "cpu"
DEFAULT_SETTINGS_FILE = Path("overrides/settings.yaml")
DEFAULT_SETTINGS_DIR = Path("overrides/settings")
DEFAULT_PATCHES_DIR = Path("overrides/patches")


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

    def resolved_url(self, name: str, version: str) -> str | None:
        """``url`` with ``${version}`` and ``${canonicalized_name}`` filled in."""
        return _fill_source_template(self.url, name, version)

    def resolved_filename(self, name: str, version: str) -> str | None:
        """``destination_filename`` with ``${version}`` and ``${canonicalized_name}`` filled in."""
        return _fill_source_template(self.destination_filename, name, version)


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
    sbom: Mapping[str, Any] = field(default_factory=dict)  # settings.yaml `sbom:`, kept as read

    def package(self, name: str) -> PackageSettings:
        """The settings of ``name`` (defaults when it has no file)."""
        canonical = canonicalize_name(name)
        return self.packages.get(canonical) or PackageSettings(name=canonical)

    def pre_built(self, name: str) -> bool:
        return self.package(name).for_variant(self.variant).pre_built

    def exclusive_build(self, name: str) -> bool:
        return self.package(name).build_options.exclusive_build

    def build_tag(self, name: str, version: str) -> int:
        """Changelog entries for this package's version plus the variant's global entries.

        As in fromager, a local version label is ignored (``1.0+x`` counts ``1.0``'s entries)
        and a pre-built package has no build tag (0): its wheel is used as published.
        """
        if self.pre_built(name):
            return 0
        wanted = _public_version(version)
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
        wanted = _public_version(version)
        found: list[Path] = []
        for folder, folder_version in _patch_folders(self.patches_dir, override_name(name)):
            if folder_version is None or folder_version == wanted:
                for where in (folder, folder / self.variant):
                    found.extend(sorted(p for p in where.glob("*.patch") if p.is_file()))
        return sorted(found, key=lambda path: path.name)

    def fingerprint(self, name: str, version: str) -> str:
        """sha256 over everything in the settings that changes the build of ``name==version``
        (effective env, config_settings, build tag, project_override, patch contents).

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
        }
        digest = hashlib.sha256(json.dumps(doc, sort_keys=True).encode())
        for patch in self.patches(name, version):
            content = patch.read_bytes()
            digest.update(f"\0patch {patch.name} {len(content)}\0".encode())
            digest.update(content)
        return digest.hexdigest()


class SettingsError(ConfigError):
    """Settings files with problems; ``problems`` holds each as ``<file>: <key>: <what>``."""

    def __init__(self, message: str, *, problems: tuple[str, ...] = (), **fields: Any) -> None:
        super().__init__(message, **fields)
        self.problems = tuple(problems) or (message,)

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "problems": self.problems}


# --- templates ----------------------------------------------------------------------------

_PLACEHOLDER = re.compile(
    r"\$(?:(?P<escaped>\$)"
    r"|(?P<named>[_a-z][_a-z0-9]*)"
    r"|\{(?P<braced>[_a-z][_a-z0-9]*)(?::-(?P<default>[^}:]*))?\}"
    r"|(?P<invalid>))",
    re.IGNORECASE | re.ASCII,
)
_SOURCE_NAMES = frozenset({"version", "canonicalized_name"})


def template_problem(value: str, *, names: frozenset[str] | None = None) -> str | None:
    """Why ``value`` is not a valid template, or ``None`` when it is.

    Without ``names`` (environment values) any variable may be used, with ``${VAR:-default}``,
    but the only ``__dunder__`` name is ``__version__``. With ``names`` (download_source) only
    those names are defined and defaults are not supported.
    """
    for match in _PLACEHOLDER.finditer(value):
        pos = match.start()
        if match["invalid"] is not None:
            if value.startswith("${", pos) and "}" not in value[pos:]:
                return f"unclosed '${{' at position {pos}"
            return (
                f"bad placeholder {value[pos : pos + 12]!r} at position {pos}: expected $NAME, "
                "${NAME}, ${NAME:-default}, or $$ for a literal $"
            )
        name = match["named"] or match["braced"]
        if name is None:
            continue
        if names is not None:
            if name not in names or match["default"] is not None:
                allowed = " or ".join(f"${{{n}}}" for n in sorted(names))
                return f"unknown placeholder {match.group(0)!r}: expected {allowed}"
        elif name.startswith("__") and name.endswith("__") and name != "__version__":
            return f"unknown variable ${{{name}}}: the only __name__ variable is ${{__version__}}"
    return None


def expand_template(value: str, scope: Mapping[str, str]) -> str:
    """Expand ``$VAR``, ``${VAR}``, ``${VAR:-default}`` and ``$$`` in a validated template.

    A variable missing from ``scope`` takes its default (the first one written for that name
    in ``value``, as fromager does), else expands to ``''`` like a shell.
    """
    defaults: dict[str, str] = {}
    for match in _PLACEHOLDER.finditer(value):
        if match["default"] is not None:
            defaults.setdefault(match["braced"], match["default"])

    def substitute(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name = match["named"] or match["braced"]
        if name is None:
            return match.group(0)
        return scope[name] if name in scope else defaults.get(name, "")

    return _PLACEHOLDER.sub(substitute, value)


def _fill_source_template(template: str | None, name: str, version: str) -> str | None:
    if template is None:
        return None
    return expand_template(template, {"version": version, "canonicalized_name": name})


def _public_version(version: str) -> Version | None:
    try:
        return Version(Version(version).public)
    except InvalidVersion:
        return None


# --- reading and validating ---------------------------------------------------------------


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _unknown_key(key: str, allowed: frozenset[str]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    if close:
        return f"unknown key; did you mean {close[0]!r}?"
    return f"unknown key; expected one of {', '.join(sorted(allowed))}"


def _path(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


class _Reader:
    """Typed access to one YAML document that collects every problem with its key path."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, path: str, what: str) -> None:
        self.problems.append(f"{self.source}: {path}: {what}" if path else f"{self.source}: {what}")

    def table(self, value: Any, path: str, allowed: frozenset[str] | None) -> dict[str, Any]:
        """``value`` as a mapping with string keys (null is empty); unknown keys reported."""
        if value is None:
            return {}
        if not isinstance(value, dict):
            self.add(path, f"expected a mapping, got {_show(value)}")
            return {}
        result: dict[str, Any] = {}
        for key, item in value.items():
            if not isinstance(key, str):
                self.add(_path(path, key), f"keys must be strings, got {_show(key)}")
            elif allowed is not None and key not in allowed:
                self.add(_path(path, key), _unknown_key(key, allowed))
            else:
                result[key] = item
        return result

    def section(
        self, data: dict[str, Any], key: str, prefix: str, allowed: frozenset[str] | None
    ) -> dict[str, Any]:
        return self.table(data.get(key), _path(prefix, key), allowed)

    def _get(
        self,
        data: dict[str, Any],
        key: str,
        prefix: str,
        default: Any,
        ok: Callable[[Any], bool],
        expected: str,
    ) -> Any:
        if key not in data:
            return default
        value = data[key]
        if ok(value):
            return value
        self.add(_path(prefix, key), f"expected {expected}, got {_show(value)}")
        return default

    def boolean(self, data: dict[str, Any], key: str, prefix: str, default: bool) -> bool:
        value: bool = self._get(
            data, key, prefix, default, lambda v: isinstance(v, bool), "true or false"
        )
        return value

    def optional_bool(self, data: dict[str, Any], key: str, prefix: str) -> bool | None:
        value: bool | None = self._get(
            data, key, prefix, None, lambda v: v is None or isinstance(v, bool), "true or false"
        )
        return value

    def optional_str(self, data: dict[str, Any], key: str, prefix: str) -> str | None:
        value: str | None = self._get(
            data, key, prefix, None, lambda v: v is None or isinstance(v, str), "a string"
        )
        return value

    def integer(
        self, data: dict[str, Any], key: str, prefix: str, default: int | None, minimum: int
    ) -> int | None:
        def ok(v: Any) -> bool:
            return (v is None and default is None) or (
                isinstance(v, int) and not isinstance(v, bool) and v >= minimum
            )

        value: int | None = self._get(data, key, prefix, default, ok, f"an integer >= {minimum}")
        return value

    def number(
        self, data: dict[str, Any], key: str, prefix: str, default: float, minimum: float
    ) -> float:
        def ok(v: Any) -> bool:
            return isinstance(v, int | float) and not isinstance(v, bool) and v >= minimum

        return float(self._get(data, key, prefix, default, ok, f"a number >= {minimum}"))

    def strings(self, value: Any, path: str) -> tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        self.add(path, f"expected a list of strings, got {_show(value)}")
        return ()

    def string_list(self, data: dict[str, Any], key: str, prefix: str) -> tuple[str, ...]:
        return self.strings(data[key], _path(prefix, key)) if key in data else ()

    def string_map(self, data: dict[str, Any], key: str, prefix: str) -> dict[str, str]:
        result: dict[str, str] = {}
        path = _path(prefix, key)
        for name, value in self.section(data, key, prefix, None).items():
            if isinstance(value, str):
                result[name] = value
            else:
                self.add(_path(path, name), f"expected a string, got {_show(value)}")
        return result


_ENV_NAME = re.compile(r"[^=\0]+")


def _env(r: _Reader, data: dict[str, Any], prefix: str) -> dict[str, str]:
    """``env``: values are strings (numbers and booleans converted as fromager does)."""
    result: dict[str, str] = {}
    path = _path(prefix, "env")
    for name, raw in r.section(data, "env", prefix, None).items():
        where = _path(path, name)
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
            r.add(where, f"expected a string, number or boolean, got {_show(raw)}")
            continue
        problem = template_problem(value)
        if problem:
            r.add(where, f"bad template {value!r}: {problem}")
            continue
        result[name] = value
    return result


def _changelog(r: _Reader, data: dict[str, Any]) -> dict[str, tuple[str, ...]]:
    """``changelog``: version -> entries; versions must parse and be distinct."""
    raw = data.get("changelog")
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        r.add("changelog", f"expected a mapping of version to entries, got {_show(raw)}")
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


def _variants(r: _Reader, data: dict[str, Any]) -> dict[str, VariantSettings]:
    result: dict[str, VariantSettings] = {}
    for name, raw in r.section(data, "variants", "", None).items():
        where = f"variants.{name}"
        section = r.table(raw, where, _VARIANT_KEYS)
        result[name] = VariantSettings(
            env=_env(r, section, where),
            pre_built=r.boolean(section, "pre_built", where, False),
            wheel_server_url=r.optional_str(section, "wheel_server_url", where),
            annotations=r.string_map(section, "annotations", where),
        )
    return result


def _download_source(r: _Reader, data: dict[str, Any]) -> DownloadSource:
    section = r.section(data, "download_source", "", frozenset({"url", "destination_filename"}))
    values: dict[str, str | None] = {}
    for key in ("url", "destination_filename"):
        value = r.optional_str(section, key, "download_source")
        problem = template_problem(value, names=_SOURCE_NAMES) if value else None
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


def _resolver_dist(r: _Reader, data: dict[str, Any]) -> ResolverDist:
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
    if dist.ignore_platform and not dist.include_wheels:
        r.add(f"{where}.ignore_platform", "has no effect without include_wheels: true")
    return dist


def _build_options(r: _Reader, data: dict[str, Any]) -> BuildOptions:
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


def _project_override(r: _Reader, data: dict[str, Any]) -> ProjectOverride:
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


def _config_settings(r: _Reader, data: dict[str, Any]) -> dict[str, str | tuple[str, ...]]:
    result: dict[str, str | tuple[str, ...]] = {}
    for key, value in r.section(data, "config_settings", "", None).items():
        if isinstance(value, str):
            result[key] = value
        elif isinstance(value, list) and all(isinstance(item, str) for item in value):
            result[key] = tuple(value)
        else:
            r.add(
                f"config_settings.{key}",
                f"expected a string or a list of strings, got {_show(value)}",
            )
    return result


def _git_options(r: _Reader, data: dict[str, Any]) -> dict[str, Any]:
    where = "git_options"
    section = r.section(data, where, "", frozenset({"submodules", "submodule_paths"}))
    result: dict[str, Any] = {}
    if "submodules" in section:
        result["submodules"] = r.boolean(section, "submodules", where, False)
    if "submodule_paths" in section:
        result["submodule_paths"] = list(r.string_list(section, "submodule_paths", where))
    return result


_PURL_KEYS = frozenset({"type", "namespace", "name", "version", "repository_url", "upstream"})


def _purl(r: _Reader, data: dict[str, Any]) -> tuple[str | None, dict[str, str]]:
    """``purl``: a purl string, or fromager's mapping form (type, name, ... overrides)."""
    value = data.get("purl")
    if value is None or isinstance(value, str):
        return value, {}
    if not isinstance(value, dict):
        r.add("purl", f"expected a string or a mapping, got {_show(value)}")
        return None, {}
    section = r.table(value, "purl", _PURL_KEYS)
    return None, {
        key: item for key in section if (item := r.optional_str(section, key, "purl")) is not None
    }


def _build_dir(r: _Reader, data: dict[str, Any]) -> str | None:
    value = r.optional_str(data, "build_dir", "")
    if value is not None:
        path = PurePosixPath(value)
        if path.is_absolute() or ".." in path.parts:
            r.add("build_dir", f"expected a relative path inside the source tree, got {value!r}")
            return None
    return value


_PACKAGE_KEYS = frozenset(
    {
        "env",
        "variants",
        "download_source",
        "resolver_dist",
        "build_dir",
        "changelog",
        "config_settings",
        "build_options",
        "git_options",
        "project_override",
        "annotations",
        "purl",
    }
)


def _package_settings(name: NormalizedName, raw: Any, r: _Reader) -> PackageSettings:
    data = r.table(raw, "", _PACKAGE_KEYS)
    purl, purl_config = _purl(r, data)
    return PackageSettings(
        name=name,
        env=_env(r, data, ""),
        variants=_variants(r, data),
        download_source=_download_source(r, data),
        resolver_dist=_resolver_dist(r, data),
        build_dir=_build_dir(r, data),
        changelog=_changelog(r, data),
        config_settings=_config_settings(r, data),
        build_options=_build_options(r, data),
        git_options=_git_options(r, data),
        project_override=_project_override(r, data),
        annotations=r.string_map(data, "annotations", ""),
        purl=purl,
        purl_config=purl_config,
        source_file=r.source,
    )


def _global_settings(raw: Any, r: _Reader) -> tuple[dict[str, tuple[str, ...]], dict[str, Any]]:
    """``settings.yaml``: ``changelog.<variant>: [entries]`` and ``sbom`` (kept as read)."""
    data = r.table(raw, "", frozenset({"changelog", "sbom"}))
    changelog = {
        variant: r.strings(entries, f"changelog.{variant}")
        for variant, entries in r.section(data, "changelog", "", None).items()
    }
    return changelog, r.section(data, "sbom", "", None)


class _StrictLoader(yaml.SafeLoader):  # type: ignore[misc]
    """PyYAML's safe loader, but a key written twice in one mapping is an error."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        if isinstance(key, str | int | float | bool) and key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"key {key!r} is written twice", key_node.start_mark
            )
        seen.add(key if isinstance(key, str | int | float | bool) else id(key_node))
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node))


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def _read_yaml(path: Path, r: _Reader) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        r.add("", f"cannot read: {exc}")
        return None
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = f"line {mark.line + 1}: " if mark is not None else ""
        r.add("", f"{line}invalid YAML: {exc.problem or exc.context}")
    except yaml.YAMLError as exc:
        r.add("", f"invalid YAML: {exc}")
    return None


def _check_exists(path: Path | None, what: str, *, is_dir: bool) -> None:
    if path is None:
        return
    if not path.exists():
        raise ConfigError(f"{what} {path} does not exist; give an existing path or leave it out")
    if path.is_dir() != is_dir:
        kind = "folder" if is_dir else "file"
        raise ConfigError(f"{what} {path} is not a {kind}")


def settings_files(settings_dir: Path) -> list[Path]:
    """The per-package settings files of ``settings_dir`` (``*.yaml``, as fromager reads)."""
    return sorted(p for p in settings_dir.glob("*.yaml") if p.is_file())


def _file_name_problem(path: Path) -> tuple[NormalizedName | None, str | None]:
    stem = path.stem
    try:
        name = canonicalize_name(stem, validate=True)
    except InvalidName:
        return None, f"{path}: {stem!r} is not a package name"
    expected = override_name(name)
    if stem != expected:
        return None, f"{path}: file name is not an override name; rename it to {expected}.yaml"
    return name, None


def load_settings(
    *,
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
    variant: str = DEFAULT_VARIANT,
) -> Settings:
    """Read and strictly validate the settings; ConfigError lists every problem of a file.

    A path left out (``None``) means no such input; a path given must exist. Problems of all
    files are raised together as one SettingsError (``problems``: one entry per problem,
    ``<file>: <key path>: <what>``; the message joins them with ``'; '``).
    """
    if not variant or "/" in variant or variant in {".", ".."}:
        raise ConfigError(f"variant {variant!r} is not a valid variant name")
    _check_exists(settings_file, "settings file", is_dir=False)
    _check_exists(settings_dir, "settings folder", is_dir=True)
    _check_exists(patches_dir, "patches folder", is_dir=True)
    problems: list[str] = []
    files: list[Path] = []
    global_changelog: dict[str, tuple[str, ...]] = {}
    sbom: dict[str, Any] = {}
    if settings_file is not None:
        files.append(settings_file)
        reader = _Reader(settings_file)
        global_changelog, sbom = _global_settings(_read_yaml(settings_file, reader), reader)
        problems.extend(reader.problems)
    packages: dict[NormalizedName, PackageSettings] = {}
    for path in settings_files(settings_dir) if settings_dir is not None else []:
        files.append(path)
        name, problem = _file_name_problem(path)
        if problem is not None or name is None:
            problems.append(problem or f"{path}: bad file name")
            continue
        reader = _Reader(path)
        packages[name] = _package_settings(name, _read_yaml(path, reader), reader)
        problems.extend(reader.problems)
    if problems:
        raise SettingsError("; ".join(problems), problems=tuple(problems))
    return Settings(
        variant=variant,
        packages=packages,
        global_changelog=global_changelog,
        patches_dir=patches_dir,
        files=tuple(files),
        sbom=sbom,
    )


def default_paths(
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
    *,
    root: Path = Path("."),
) -> tuple[Path | None, Path | None, Path | None]:
    """Fill the paths not given with ``overrides/...`` under ``root``, where those exist.

    For command-line options whose default is fromager's ``overrides/`` layout: an explicit
    path is kept (and must exist), a missing default simply means no settings.
    """

    def pick(given: Path | None, default: Path) -> Path | None:
        if given is not None:
            return given
        candidate = root / default
        return candidate if candidate.exists() else None

    return (
        pick(settings_file, DEFAULT_SETTINGS_FILE),
        pick(settings_dir, DEFAULT_SETTINGS_DIR),
        pick(patches_dir, DEFAULT_PATCHES_DIR),
    )


# --- patch folders and the overrides listing ----------------------------------------------


def _patch_folders(patches_dir: Path, oname: str) -> Iterator[tuple[Path, Version | None]]:
    """The unversioned folder of ``oname`` first, then its ``<oname>-<version>`` folders."""
    plain = patches_dir / oname
    if plain.is_dir():
        yield plain, None
    for folder in sorted(patches_dir.glob(f"{oname}-*")):
        if not folder.is_dir():
            continue
        suffix = folder.name[len(oname) + 1 :]
        try:
            yield folder, Version(Version(suffix).public)
        except InvalidVersion as exc:
            raise ConfigError(
                f"patch folder {folder}: {suffix!r} is not a version; name it "
                f"{oname}-<version>, or {override_name(folder.name)} for every version"
            ) from exc


def patch_folder_problem(folder: Path) -> str | None:
    """Why ``folder`` (an entry of the patches folder) is not a valid patch folder name."""
    name = folder.name
    if not folder.is_dir():
        return f"{folder}: not a folder; patches go in <override_name>[-<version>]/"
    base, _, suffix = name.rpartition("-") if "-" in name else (name, "", "")
    if suffix:
        try:
            Version(suffix)
        except InvalidVersion:
            base = ""
    try:
        canonical = canonicalize_name(base, validate=True)
    except InvalidName:
        return (
            f"{folder}: not <override_name> or <override_name>-<version>; "
            f"did you mean {override_name(name)}?"
        )
    expected = override_name(canonical)
    if base != expected:
        want = f"{expected}-{suffix}" if suffix else expected
        return f"{folder}: folder name is not an override name; rename it to {want}"
    return None


def patch_folder_package(folder: Path) -> NormalizedName:
    """The package a patch folder (``<override_name>`` or ``<override_name>-<version>``) is for."""
    name = folder.name
    base, _, suffix = name.rpartition("-")
    if base:
        try:
            Version(suffix)
            name = base
        except InvalidVersion:
            pass
    return canonicalize_name(name)


def _has_patches(folder: Path) -> bool:
    return any(folder.glob("*.patch")) or any(folder.glob("*/*.patch"))


def list_overrides(settings: Settings) -> list[NormalizedName]:
    """Packages with a settings file or a patch folder holding patches, sorted."""
    names: set[NormalizedName] = set(settings.packages)
    if settings.patches_dir is not None:
        for folder in settings.patches_dir.iterdir():
            if folder.is_dir() and not folder.name.startswith(".") and _has_patches(folder):
                names.add(patch_folder_package(folder))
    return sorted(names)


@dataclass(frozen=True)
class LintReport:
    """What ``lint_overrides`` found: one line per problem, and what it checked."""

    problems: tuple[str, ...]
    settings_files: int
    patch_folders: int


def lint_overrides(
    *,
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
    variant: str = DEFAULT_VARIANT,
) -> LintReport:
    """Check an overrides folder without building: settings files validate, settings and patch
    folders are named for packages. A path given that does not exist raises ConfigError."""
    problems: list[str] = []
    try:
        load_settings(
            settings_file=settings_file,
            settings_dir=settings_dir,
            patches_dir=patches_dir,
            variant=variant,
        )
    except SettingsError as exc:
        problems.extend(exc.problems)
    count = 1 if settings_file is not None else 0
    if settings_dir is not None:
        count += len(settings_files(settings_dir))
        for entry in sorted(settings_dir.iterdir()):
            if entry.suffix != ".yaml" and not entry.name.startswith("."):
                problems.append(f"{entry}: not a .yaml file; fromager reads only *.yaml here")
    folders = 0
    if patches_dir is not None:
        for entry in sorted(patches_dir.iterdir()):
            if entry.name.startswith("."):
                continue
            folders += entry.is_dir()
            problem = patch_folder_problem(entry)
            if problem:
                problems.append(problem)
    return LintReport(tuple(problems), count, folders)
