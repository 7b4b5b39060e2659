"""Plugins: per-package step overrides and global hooks found through entry points.

Two entry-point groups:

``fromager_dagster.project_overrides``
    The entry point's name is a package's override name (canonical, ``-`` written ``_``); its
    value is a module or object whose attributes named after a step in :data:`STEPS` replace
    that step for that package.
``fromager_dagster.hooks``
    The entry point's name is a hook in :data:`HOOKS`; its value is a callable. Every hook
    registered under a name runs, in entry-point (name, value) order.

Every step and hook is called with keyword arguments only, described by the ``typing.Protocol``
below of the same name; a plugin function may declare just the parameters it uses (the others
are not passed), or ``**kwargs``. A plugin that cannot be imported, names an unknown step or
hook, or asks for a parameter that is never passed is a ConfigError; a plugin that raises is
reported as the step's own error class naming the entry point.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import tempfile
import threading
import types
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, overload

import requests
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from .errors import (
    BuildError,
    ConfigError,
    FromagerDagsterError,
    ResolutionError,
    SourceError,
)
from .hooks import HookCaller
from .index import DistFile
from .resolver import PackageFinder
from .settings import Settings, override_name

OVERRIDES_GROUP = "fromager_dagster.project_overrides"
HOOKS_GROUP = "fromager_dagster.hooks"
#: Where ``add_extra_metadata`` writes what an ``add_extra_metadata_to_wheels`` override returns.
PLUGIN_METADATA_FILE = "fromager-dagster-plugin-metadata.json"

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

_STEP_PROTOCOLS: dict[str, type] = {
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
_HOOK_PROTOCOLS: dict[str, type] = {
    "post_bootstrap": PostBootstrap,
    "post_build": PostBuild,
    "prebuilt_wheel": PrebuiltWheel,
}
STEPS: tuple[str, ...] = tuple(_STEP_PROTOCOLS)
HOOKS: tuple[str, ...] = tuple(_HOOK_PROTOCOLS)


def _parameters(protocol: type) -> tuple[str, ...]:
    names = inspect.signature(protocol.__call__).parameters
    return tuple(n for n in names if n != "self")


# -- return-value checks: one per kind of step --------------------------------------------------


def _existing_file(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not Path(value).is_file():
        raise TypeError(f"expected the path of an existing file, got {value!r}")
    return Path(value)


def _existing_dir(value: Any) -> Path:
    if not isinstance(value, str | os.PathLike) or not Path(value).is_dir():
        raise TypeError(f"expected the path of an existing directory, got {value!r}")
    return Path(value)


def _wheel_file(value: Any) -> Path:
    path = _existing_file(value)
    if not path.name.endswith(".whl"):
        raise TypeError(f"expected a .whl file, got {path.name!r}")
    return path


def _requirement_strings(value: Any) -> list[str]:
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"expected a list of requirement strings, got {value!r}")
    result = []
    for item in value:
        text = str(item) if isinstance(item, Requirement) else item
        if not isinstance(text, str):
            raise TypeError(f"expected requirement strings, got {item!r}")
        try:
            Requirement(text)
        except InvalidRequirement as exc:
            raise TypeError(f"invalid requirement {text!r}: {exc}") from exc
        result.append(text)
    return result


def _json_mapping(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"expected a mapping or None, got {value!r}")
    data = dict(value)
    try:
        json.dumps(data, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"expected JSON-serialisable data: {exc}") from exc
    return data


def _environ(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise TypeError(f"expected a mapping of str to str or None, got {value!r}")
    return dict(value)


def _dist_files(value: Any) -> list[DistFile]:
    if not isinstance(value, Iterable) or not all(isinstance(f, DistFile) for f in value):
        raise TypeError(f"expected DistFile values, got {value!r}")
    return sorted(value, key=lambda f: (f.version, f.kind, f.filename))


@dataclass(frozen=True)
class _StepKind:
    error: type[FromagerDagsterError]
    check: Callable[[Any], Any]


_STEP_KINDS: dict[str, _StepKind] = {
    "find_candidates": _StepKind(ResolutionError, _dist_files),
    "download_source": _StepKind(SourceError, _existing_file),
    "prepare_source": _StepKind(SourceError, _existing_dir),
    "get_build_system_dependencies": _StepKind(BuildError, _requirement_strings),
    "get_build_backend_dependencies": _StepKind(BuildError, _requirement_strings),
    "get_build_sdist_dependencies": _StepKind(BuildError, _requirement_strings),
    "build_sdist": _StepKind(SourceError, _existing_file),
    "build_wheel": _StepKind(BuildError, _wheel_file),
    "add_extra_metadata_to_wheels": _StepKind(BuildError, _json_mapping),
    "update_extra_environ": _StepKind(BuildError, _environ),
}


# -- loading ------------------------------------------------------------------------------------


def _label(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    where = f" from {dist.name} {dist.version}" if dist is not None else ""
    return f"entry point {ep.name} = {ep.value} ({ep.group}{where})"


def _load(ep: metadata.EntryPoint) -> Any:
    try:
        return ep.load()
    except Exception as exc:
        raise ConfigError(
            f"plugin {_label(ep)} cannot be loaded: {type(exc).__name__}: {exc}; "
            "fix or uninstall the plugin"
        ) from exc


def _declared_callables(obj: Any) -> list[str]:
    """Public callables a plugin object declares itself (a module's own functions)."""
    if isinstance(obj, types.ModuleType):
        return sorted(
            n
            for n, v in vars(obj).items()
            if not n.startswith("_") and inspect.isfunction(v) and v.__module__ == obj.__name__
        )
    return sorted(n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None)))


def _bind(func: Callable[..., Any], offered: Sequence[str], what: str) -> tuple[str, ...] | None:
    """The parameters to pass ``func`` (None: all, it takes ``**kwargs``); ConfigError if it
    needs one that is never offered or cannot take keywords."""
    try:
        params = inspect.signature(func).parameters.values()
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{what} is not a callable with a readable signature: {exc}") from exc
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    accepted = []
    for p in params:
        if p.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            if p.kind is inspect.Parameter.VAR_POSITIONAL or p.default is p.empty:
                raise ConfigError(f"{what} must take keyword arguments; {p.name!r} cannot be one")
            continue
        if p.name in offered:
            accepted.append(p.name)
        elif p.default is p.empty:
            raise ConfigError(
                f"{what} requires parameter {p.name!r}, which is never passed; "
                f"it may take any of: {', '.join(offered)}"
            )
    return tuple(accepted)


@dataclass(frozen=True)
class _Plugin:
    label: str
    func: Callable[..., Any]
    accepts: tuple[str, ...] | None

    def call(self, kwargs: Mapping[str, Any]) -> Any:
        if self.accepts is None:
            return self.func(**kwargs)
        return self.func(**{k: v for k, v in kwargs.items() if k in self.accepts})


class Plugins:
    """The installed plugins: ``load()`` once per process, then ``override`` and ``run_hooks``."""

    _loaded: ClassVar[Plugins | None] = None
    _lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(
        self,
        overrides: Mapping[str, Mapping[str, _Plugin]],
        hooks: Mapping[str, Sequence[_Plugin]],
    ) -> None:
        self._overrides = {k: dict(v) for k, v in overrides.items()}
        self._hooks = {k: list(v) for k, v in hooks.items()}

    @classmethod
    def load(cls) -> Plugins:
        """The plugins of the installed distributions, read and imported once per process."""
        with cls._lock:
            if cls._loaded is None:
                cls._loaded = cls.from_entry_points(
                    metadata.entry_points(group=OVERRIDES_GROUP),
                    metadata.entry_points(group=HOOKS_GROUP),
                )
            return cls._loaded

    @classmethod
    def clear_cache(cls) -> None:
        """Forget what ``load()`` read (for tests that install or remove plugins)."""
        with cls._lock:
            cls._loaded = None

    @classmethod
    def from_entry_points(
        cls,
        overrides: Iterable[metadata.EntryPoint],
        hooks: Iterable[metadata.EntryPoint],
    ) -> Plugins:
        """Import and check every given entry point; ConfigError names the first bad one."""
        by_package: dict[str, Mapping[str, _Plugin]] = {}
        seen: dict[str, str] = {}
        for ep in sorted(overrides, key=lambda e: (e.name, e.value)):
            package = override_name(ep.name)
            if package in seen:
                raise ConfigError(
                    f"two plugins override package {package}: {seen[package]} and {_label(ep)}; "
                    "uninstall one of them"
                )
            seen[package] = _label(ep)
            by_package[package] = cls._package_steps(ep, _load(ep))
        by_hook: dict[str, list[_Plugin]] = {}
        for ep in sorted(hooks, key=lambda e: (e.name, e.value)):
            if ep.name not in _HOOK_PROTOCOLS:
                raise ConfigError(
                    f"plugin {_label(ep)} registers unknown hook {ep.name!r}; "
                    f"known hooks: {', '.join(HOOKS)}"
                )
            func = _load(ep)
            what = f"hook plugin {_label(ep)}"
            if not callable(func):
                raise ConfigError(f"{what} is not callable")
            accepts = _bind(func, _parameters(_HOOK_PROTOCOLS[ep.name]), what)
            by_hook.setdefault(ep.name, []).append(_Plugin(_label(ep), func, accepts))
        return cls(by_package, by_hook)

    @staticmethod
    def _package_steps(ep: metadata.EntryPoint, obj: Any) -> dict[str, _Plugin]:
        unknown = [n for n in _declared_callables(obj) if n not in _STEP_PROTOCOLS]
        if unknown:
            raise ConfigError(
                f"plugin {_label(ep)} defines {', '.join(unknown)}, which "
                f"{'is not a step' if len(unknown) == 1 else 'are not steps'}; known steps: "
                f"{', '.join(STEPS)} (prefix helpers with '_')"
            )
        steps = {}
        for step, protocol in _STEP_PROTOCOLS.items():
            func = getattr(obj, step, None)
            if func is None:
                continue
            what = f"plugin {_label(ep)} step {step}"
            if not callable(func):
                raise ConfigError(f"{what} is not callable")
            steps[step] = _Plugin(_label(ep), func, _bind(func, _parameters(protocol), what))
        return steps

    # -- lookups ---------------------------------------------------------------------------

    def packages(self) -> list[str]:
        """Override names of the packages that have a plugin."""
        return sorted(self._overrides)

    def hooks(self, hook: str) -> list[str]:
        """Labels of the plugins registered for ``hook``, in the order they run."""
        return [p.label for p in self._hooks.get(hook, [])]

    @overload
    def override(self, name: str, step: Literal["find_candidates"]) -> FindCandidates | None: ...
    @overload
    def override(self, name: str, step: Literal["download_source"]) -> DownloadSource | None: ...
    @overload
    def override(self, name: str, step: Literal["prepare_source"]) -> PrepareSource | None: ...
    @overload
    def override(
        self, name: str, step: Literal["get_build_system_dependencies"]
    ) -> GetBuildSystemDependencies | None: ...
    @overload
    def override(
        self, name: str, step: Literal["get_build_backend_dependencies"]
    ) -> GetBuildBackendDependencies | None: ...
    @overload
    def override(
        self, name: str, step: Literal["get_build_sdist_dependencies"]
    ) -> GetBuildSdistDependencies | None: ...
    @overload
    def override(self, name: str, step: Literal["build_sdist"]) -> BuildSdist | None: ...
    @overload
    def override(self, name: str, step: Literal["build_wheel"]) -> BuildWheel | None: ...
    @overload
    def override(
        self, name: str, step: Literal["add_extra_metadata_to_wheels"]
    ) -> AddExtraMetadataToWheels | None: ...
    @overload
    def override(
        self, name: str, step: Literal["update_extra_environ"]
    ) -> UpdateExtraEnviron | None: ...
    @overload
    def override(self, name: str, step: str) -> Callable[..., Any] | None: ...

    def override(self, name: str, step: str) -> Callable[..., Any] | None:
        """The plugin's replacement for ``step`` of package ``name``, or None.

        The returned callable takes the step's keyword arguments (its Protocol above). Its
        result is checked and normalised (requirement lists become ``list[str]``, mappings
        ``dict``); an exception from the plugin, or a result of the wrong kind, becomes the
        step's error (ResolutionError, SourceError or BuildError) naming the entry point.
        """
        if step not in _STEP_PROTOCOLS:
            raise ValueError(f"unknown step {step!r}; known steps: {', '.join(STEPS)}")
        plugin = self._overrides.get(override_name(name), {}).get(step)
        if plugin is None:
            return None
        kind = _STEP_KINDS[step]

        @functools.wraps(plugin.func)
        def call(**kwargs: Any) -> Any:
            package = str(kwargs.get("name") or canonicalize_name(name))
            version = str(kwargs["version"]) if kwargs.get("version") is not None else None
            log = str(kwargs["log"]) if kwargs.get("log") is not None else None
            fields = {"package": package, "version": version, "log_path": log, "step": step}
            try:
                result = plugin.call(kwargs)
            except FromagerDagsterError as exc:
                exc.package = exc.package or package
                exc.version = exc.version or version
                raise
            except Exception as exc:
                raise kind.error(
                    f"{step} plugin {plugin.label} raised {type(exc).__name__}: {exc}", **fields
                ) from exc
            try:
                return kind.check(result)
            except TypeError as exc:
                raise kind.error(
                    f"{step} plugin {plugin.label} returned a wrong value: {exc}", **fields
                ) from exc

        return call

    def run_hooks(self, hook: str, **kwargs: Any) -> None:
        """Run every plugin registered for ``hook`` with the hook's keyword arguments.

        A plugin that raises stops the rest: BuildError with ``step="hook"`` naming the hook
        and the entry point. Wrong keyword arguments (a bug in the caller) raise TypeError.
        """
        if hook not in _HOOK_PROTOCOLS:
            raise ValueError(f"unknown hook {hook!r}; known hooks: {', '.join(HOOKS)}")
        expected = set(_parameters(_HOOK_PROTOCOLS[hook]))
        if set(kwargs) != expected:
            raise TypeError(f"hook {hook} takes exactly {sorted(expected)}, got {sorted(kwargs)}")
        for plugin in self._hooks.get(hook, []):
            try:
                plugin.call(kwargs)
            except Exception as exc:
                version = kwargs.get("version")
                raise BuildError(
                    f"{hook} hook plugin {plugin.label} raised {type(exc).__name__}: {exc}",
                    package=str(kwargs.get("name")),
                    version=str(version) if version is not None else None,
                    step="hook",
                ) from exc


class PluginFinder:
    """A PackageFinder that asks a package's ``find_candidates`` override before the index.

    Use it in place of the index client when building the Resolver; results are memoised.
    """

    def __init__(self, index: PackageFinder, plugins: Plugins, settings: Settings) -> None:
        self._index = index
        self._plugins = plugins
        self._settings = settings
        self._lock = threading.Lock()
        self._files: dict[NormalizedName, list[DistFile]] = {}

    def files(self, name: str) -> list[DistFile]:
        canonical = canonicalize_name(name)
        find = self._plugins.override(canonical, "find_candidates")
        if find is None:
            return self._index.files(canonical)
        with self._lock:
            if canonical not in self._files:
                found = find(name=canonical, settings=self._settings, index=self._index)
                self._files[canonical] = list(found)
            return list(self._files[canonical])


def add_extra_metadata(
    built_wheel: Path,
    plugin: AddExtraMetadataToWheels,
    *,
    name: NormalizedName,
    version: Version,
    source_dir: Path,
    settings: Settings,
    extra_environ: Mapping[str, str],
    log: Path,
) -> Path:
    """Let ``plugin`` add to the ``.dist-info`` of ``built_wheel`` (rewritten in place).

    The plugin sees the unpacked ``.dist-info`` folder and may add or change files there;
    data it returns is written to :data:`PLUGIN_METADATA_FILE` (sorted JSON). Call it on the
    backend's wheel before ``wheels.finalize_wheel``, which regenerates RECORD.
    """
    try:
        with zipfile.ZipFile(built_wheel) as zin:
            infos = [i for i in zin.infolist() if not i.is_dir()]
            dist_infos = sorted(
                {
                    top
                    for top, _, rest in (i.filename.partition("/") for i in infos)
                    if top.endswith(".dist-info") and rest == "WHEEL"
                }
            )
            if len(dist_infos) != 1:
                raise BuildError(
                    f"{built_wheel.name} has no single .dist-info folder",
                    package=name,
                    version=str(version),
                    log_path=str(log),
                )
            top = dist_infos[0]
            with tempfile.TemporaryDirectory(prefix="plugin-metadata-") as tmp:
                dist_info_dir = Path(tmp) / top
                dist_info_dir.mkdir()
                for info in infos:
                    if info.filename.startswith(f"{top}/"):
                        target = Path(tmp) / info.filename
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(zin.read(info))
                data = plugin(
                    name=name,
                    version=version,
                    source_dir=source_dir,
                    dist_info_dir=dist_info_dir,
                    settings=settings,
                    extra_environ=extra_environ,
                    log=log,
                )
                if data:
                    (dist_info_dir / PLUGIN_METADATA_FILE).write_text(
                        json.dumps(data, indent=2, sort_keys=True) + "\n", encoding="utf-8"
                    )
                _rewrite(built_wheel, zin, infos, top, dist_info_dir)
    except zipfile.BadZipFile as exc:
        raise BuildError(
            f"cannot read the wheel {built_wheel.name}: {exc}", package=name, version=str(version)
        ) from exc
    return built_wheel


def _rewrite(
    wheel: Path,
    zin: zipfile.ZipFile,
    infos: list[zipfile.ZipInfo],
    top: str,
    dist_info_dir: Path,
) -> None:
    """Write ``wheel`` again: its members outside ``top`` as they were, ``top`` from disk."""
    original = {i.filename: i for i in infos}
    fd, tmp_name = tempfile.mkstemp(dir=wheel.parent, prefix=f".{wheel.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as raw, zipfile.ZipFile(raw, "w", zipfile.ZIP_DEFLATED) as zout:
            for info in infos:
                if not info.filename.startswith(f"{top}/"):
                    zout.writestr(info, zin.read(info))
            for path in sorted(p for p in dist_info_dir.rglob("*") if p.is_file()):
                arcname = f"{top}/{path.relative_to(dist_info_dir).as_posix()}"
                info = original.get(arcname) or zipfile.ZipInfo(arcname, (1980, 1, 1, 0, 0, 0))
                info.compress_type = zipfile.ZIP_DEFLATED
                if arcname not in original:
                    info.external_attr = 0o644 << 16
                zout.writestr(info, path.read_bytes())
        os.replace(tmp, wheel)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
