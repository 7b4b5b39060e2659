"""The engine's packages name their public API in ``__init__`` and import each name from its
module only when it is first used (PEP 562), so that importing one module of the engine does
not import every package it mentions, and packages that use each other do not import in a
cycle at start-up."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """The ``__getattr__`` of ``package``: each name of ``modules`` (name -> module of the
    package that defines it), imported on first use and kept in the package."""

    def __getattr__(name: str) -> Any:  # noqa: N807  a module's __getattr__ (PEP 562)
        module = modules.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
