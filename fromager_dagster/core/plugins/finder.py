"""A package finder that lets a plugin's ``find_candidates`` replace the index listing."""

from __future__ import annotations

import threading

from packaging.utils import NormalizedName, canonicalize_name

from ..index import DistFile
from ..resolver import PackageFinder
from ..settings import Settings
from .registry import Plugins


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
