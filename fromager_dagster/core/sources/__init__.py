"""Source archives: download, URLs, git, patches, epoch, and the prepared tree.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .archives import file_sha256
    from .prepare import build_fingerprint

#: The public names, and the module of this package that defines each.
_MODULES = {
    "build_fingerprint": "prepare",
    "file_sha256": "archives",
}
__all__ = [
    "build_fingerprint",
    "file_sha256",
]
__getattr__ = lazy_names(__name__, _MODULES)
