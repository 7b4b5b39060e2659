"""Building wheels: environments, sandbox, PEP 517 hooks, wheel finalisation.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .builder import build_package
    from .environment import session_cache
    from .sandbox import SANDBOX_KINDS, Sandbox, resolve_sandbox
    from .settings import BuildSettings
    from .steps import (
        build_env,
        build_sdist,
        build_wheel,
        download_source,
        prepare_build,
        prepare_downloaded,
        prepared_source,
        source_epoch,
    )
    from .workers import BuildWorkers

#: The public names, and the module of this package that defines each.
_MODULES = {
    "BuildSettings": "settings",
    "BuildWorkers": "workers",
    "SANDBOX_KINDS": "sandbox",
    "Sandbox": "sandbox",
    "build_env": "steps",
    "build_package": "builder",
    "build_sdist": "steps",
    "build_wheel": "steps",
    "download_source": "steps",
    "prepare_build": "steps",
    "prepare_downloaded": "steps",
    "prepared_source": "steps",
    "resolve_sandbox": "sandbox",
    "session_cache": "environment",
    "source_epoch": "steps",
}
__all__ = [
    "SANDBOX_KINDS",
    "BuildSettings",
    "BuildWorkers",
    "Sandbox",
    "build_env",
    "build_package",
    "build_sdist",
    "build_wheel",
    "download_source",
    "prepare_build",
    "prepare_downloaded",
    "prepared_source",
    "resolve_sandbox",
    "session_cache",
    "source_epoch",
]
__getattr__ = lazy_names(__name__, _MODULES)
