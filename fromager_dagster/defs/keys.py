"""Asset keys and groups of the code location: the one place that names a collection's assets.

Dagster labels a node of the asset graph with the last part of its key, so that part is what
a person reads: ``pbr-7.1.3`` for a wheel (``pbr-7.1.3-cuda`` for a variant other than the
default one), ``stevedore-graph`` for a collection's discovery. Key parts use
``[A-Za-z0-9_.-]`` only: ``+`` is written ``_`` and ``!`` ``__``.

- ``wheels/<variant>/<name>/<name>-<version>[-<variant>]``: one wheel asset per graph node,
  in the group ``<collection>`` (what "Materialize all" on the group builds);
- ``discovery/<collection>/<collection>-graph``: the collection's discovery, upstream of every
  wheel asset it grew, in the group ``<collection>_discovery`` (its launchpad has settings a
  wheel build has not, so it stays out of the wheels' "Materialize all").
"""

from __future__ import annotations

import functools
import re

import dagster as dg

from fromager_dagster.core.settings import DEFAULT_VARIANT as DEFAULT_VARIANT  # re-exported

from .collections import Collection


def key_part(text: str) -> str:
    """``text`` as an asset key part: ``+`` -> ``_``, ``!`` -> ``__``, others outside
    ``[A-Za-z0-9_.-]`` -> ``_``."""
    text = text.replace("!", "__").replace("+", "_")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


def wheel_label(variant: str, name: str, version: str) -> str:
    """The node label of a wheel asset: ``<name>-<version>``, plus ``-<variant>`` for a
    variant other than the default one (so two collections' variants never read alike)."""
    label = f"{name}-{version}"
    if variant != DEFAULT_VARIANT:
        label += f"-{variant}"
    return key_part(label)


@functools.cache
def wheel_key(variant: str, name: str, version: str) -> dg.AssetKey:
    return dg.AssetKey(
        ["wheels", key_part(variant), key_part(name), wheel_label(variant, name, version)]
    )


def discovery_key(collection: Collection) -> dg.AssetKey:
    return dg.AssetKey(["discovery", collection.ident, f"{collection.ident}-graph"])


def wheels_group(collection: Collection) -> str:
    """The group of the collection's wheel assets (and only them)."""
    return collection.ident


def discovery_group(collection: Collection) -> str:
    """The group of the collection's discovery asset, named to sort beside its wheels."""
    return f"{collection.ident}_discovery"
