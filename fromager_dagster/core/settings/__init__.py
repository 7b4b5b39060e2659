"""Per-package settings from an overrides folder: layout, schema, sections, templates.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .layout import default_paths
    from .loading import lint_overrides, list_overrides, load_settings
    from .overrides import DEFAULT_VARIANT, Settings

#: The public names, and the module of this package that defines each.
_MODULES = {
    "DEFAULT_VARIANT": "overrides",
    "Settings": "overrides",
    "default_paths": "layout",
    "lint_overrides": "loading",
    "list_overrides": "loading",
    "load_settings": "loading",
}
__all__ = [
    "DEFAULT_VARIANT",
    "Settings",
    "default_paths",
    "lint_overrides",
    "list_overrides",
    "load_settings",
]
__getattr__ = lazy_names(__name__, _MODULES)
