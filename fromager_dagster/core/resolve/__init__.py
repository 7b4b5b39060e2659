"""Choosing versions: requirements and constraints, and the resolver.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .requirements import Constraints, toplevel_requirements

#: The public names, and the module of this package that defines each.
_MODULES = {
    "Constraints": "requirements",
    "toplevel_requirements": "requirements",
}
__all__ = [
    "Constraints",
    "toplevel_requirements",
]
__getattr__ = lazy_names(__name__, _MODULES)
