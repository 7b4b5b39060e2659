"""The installed plugins: entry points read, imported and checked once, then looked up."""

from __future__ import annotations

import functools
import inspect
import threading
import types
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, ClassVar, Literal, overload

from packaging.utils import canonicalize_name

from fromager_dagster.core.errors import BuildError, ConfigError, FromagerDagsterError
from fromager_dagster.core.plugins.protocols import (
    HOOK_PROTOCOLS,
    HOOKS,
    STEP_PROTOCOLS,
    STEPS,
    AddExtraMetadataToWheels,
    BuildSdist,
    BuildWheel,
    DownloadSource,
    FindCandidates,
    GetBuildBackendDependencies,
    GetBuildSdistDependencies,
    GetBuildSystemDependencies,
    PrepareSource,
    UpdateExtraEnviron,
    parameters,
)
from fromager_dagster.core.plugins.results import STEP_KINDS
from fromager_dagster.core.settings.layout import override_name

OVERRIDES_GROUP = "fromager_dagster.project_overrides"
HOOKS_GROUP = "fromager_dagster.hooks"


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
                installed = metadata.entry_points()  # every distribution read once, not twice
                cls._loaded = cls.from_entry_points(
                    installed.select(group=OVERRIDES_GROUP), installed.select(group=HOOKS_GROUP)
                )
            return cls._loaded

    @classmethod
    def none(cls) -> Plugins:
        """No plugins: every step is the default one and no hook runs."""
        return cls({}, {})

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
            if ep.name not in HOOK_PROTOCOLS:
                raise ConfigError(
                    f"plugin {_label(ep)} registers unknown hook {ep.name!r}; "
                    f"known hooks: {', '.join(HOOKS)}"
                )
            func = _load(ep)
            what = f"hook plugin {_label(ep)}"
            if not callable(func):
                raise ConfigError(f"{what} is not callable")
            accepts = _bind(func, parameters(HOOK_PROTOCOLS[ep.name]), what)
            by_hook.setdefault(ep.name, []).append(_Plugin(_label(ep), func, accepts))
        return cls(by_package, by_hook)

    @staticmethod
    def _package_steps(ep: metadata.EntryPoint, obj: Any) -> dict[str, _Plugin]:
        unknown = [n for n in _declared_callables(obj) if n not in STEP_PROTOCOLS]
        if unknown:
            raise ConfigError(
                f"plugin {_label(ep)} defines {', '.join(unknown)}, which "
                f"{'is not a step' if len(unknown) == 1 else 'are not steps'}; known steps: "
                f"{', '.join(STEPS)} (prefix helpers with '_')"
            )
        steps = {}
        for step, protocol in STEP_PROTOCOLS.items():
            func = getattr(obj, step, None)
            if func is None:
                continue
            what = f"plugin {_label(ep)} step {step}"
            if not callable(func):
                raise ConfigError(f"{what} is not callable")
            steps[step] = _Plugin(_label(ep), func, _bind(func, parameters(protocol), what))
        return steps

    # -- lookups ---------------------------------------------------------------------------

    def packages(self) -> list[str]:
        """Override names of the packages that have a plugin."""
        return sorted(self._overrides)

    def describe(self, name: str) -> str | None:
        """The plugin overriding package ``name`` and the steps it overrides, or None.

        Names the entry point and its distribution's version: put it in a build's fingerprint
        so that upgrading the plugin rebuilds the package.
        """
        steps = self._overrides.get(override_name(name))
        if not steps:
            return None
        label = next(iter(steps.values())).label
        return f"{label}: {', '.join(sorted(steps))}"

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
        if step not in STEP_PROTOCOLS:
            raise ValueError(f"unknown step {step!r}; known steps: {', '.join(STEPS)}")
        plugin = self._overrides.get(override_name(name), {}).get(step)
        if plugin is None:
            return None
        kind = STEP_KINDS[step]

        @functools.wraps(plugin.func)
        def call(**kwargs: Any) -> Any:
            package = str(kwargs.get("name") or canonicalize_name(name))
            version = str(kwargs["version"]) if kwargs.get("version") is not None else None
            log = str(kwargs["log"]) if kwargs.get("log") is not None else None
            fields: dict[str, Any] = {
                "package": package,
                "version": version,
                "log_path": log,
                "step": step,
            }
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
        if hook not in HOOK_PROTOCOLS:
            raise ValueError(f"unknown hook {hook!r}; known hooks: {', '.join(HOOKS)}")
        expected = set(parameters(HOOK_PROTOCOLS[hook]))
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
