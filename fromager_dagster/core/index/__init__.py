"""The package index: its client, parsed-page cache, read-ahead helper, URL, and the local
index server.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .client import IndexClient
    from .prefetch import reading_ahead
    from .server import LocalIndexServer
    from .simple_pages import write_simple_tree
    from .url import ENV_VAR, resolve_index_url

#: The public names, and the module of this package that defines each.
_MODULES = {
    "ENV_VAR": "url",
    "IndexClient": "client",
    "LocalIndexServer": "server",
    "reading_ahead": "prefetch",
    "resolve_index_url": "url",
    "write_simple_tree": "simple_pages",
}
__all__ = [
    "ENV_VAR",
    "IndexClient",
    "LocalIndexServer",
    "reading_ahead",
    "resolve_index_url",
    "write_simple_tree",
]
__getattr__ = lazy_names(__name__, _MODULES)
