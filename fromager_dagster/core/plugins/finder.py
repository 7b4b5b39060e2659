"""Where the resolver finds each package's files: a plugin's ``find_candidates``, the settings'
``wheel_server_url`` (pre-built) or ``sdist_server_url``, or the main index, and which of those
files the settings admit."""

from __future__ import annotations

import functools
import threading

from packaging.utils import NormalizedName, canonicalize_name

from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.distributions import DistFile
from fromager_dagster.core.plugins.registry import Plugins
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.resolve.resolver import PackageFinder, Resolver, SourcePolicy
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.settings.sections import ResolverDist


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


def server_url(settings: Settings, name: str) -> str | None:
    """The index ``name``'s files come from, if not the main one: its variant's
    ``wheel_server_url`` when it is pre-built there, else its ``resolver_dist.sdist_server_url``."""
    return settings.wheel_server_url(name) or settings.package(name).resolver_dist.sdist_server_url


def source_policy(
    settings: Settings,
    index: IndexClient,
    *,
    min_release_age: float | None = None,
    plugins: Plugins,
) -> SourcePolicy:
    """What the settings (and find_candidates plugins) say about where and how each package's
    files are chosen: its ``pre_built`` variant, its ``resolver_dist`` (``sdist_server_url``,
    ``include_sdists``, ``include_wheels``, ``ignore_platform``, ``min_release_age``, which
    wins over ``min_release_age`` here) and a plugin's ``find_candidates``."""
    lock = threading.Lock()
    finders: dict[str, IndexClient] = {}
    plugged = PluginFinder(index, plugins, settings)

    def finder(name: str) -> PackageFinder | None:
        if plugins.override(name, "find_candidates") is not None:
            return plugged
        url = server_url(settings, name)
        if not url:
            return None
        with lock:
            return finders.setdefault(url, index.other_index(url))

    # asked once per file of a package's index page: the settings are read once per package
    @functools.cache
    def age(name: str) -> float | None:
        own = settings.package(name).resolver_dist.min_release_age
        return own if own is not None else min_release_age

    @functools.cache
    def dists(name: str) -> ResolverDist:
        return settings.package(name).resolver_dist

    return SourcePolicy(
        prebuilt=settings.pre_built,
        min_release_age=age,
        finder=finder,
        dists=dists,
    )


def settings_resolver(
    index: IndexClient,
    constraints: Constraints,
    settings: Settings,
    *,
    plugins: Plugins,
    min_release_age: float | None = None,
) -> Resolver:
    """The resolver a bootstrap chooses versions with: ``constraints``, and the files and
    release ages :func:`source_policy` admits under ``settings`` and ``plugins``. The
    new-release sensor asks the same one which release is the newest admissible."""
    policy = source_policy(settings, index, min_release_age=min_release_age, plugins=plugins)
    return Resolver(index, constraints, policy)
