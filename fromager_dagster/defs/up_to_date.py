"""Which wheel assets need a step: "materialize changed and missing" for the collection.

A wheel asset is up to date when the engine would reuse its wheel (the build record's
inputs all still hold: :func:`fromager_dagster.core.repository.records.reusable_build`) and the
instance's latest materialization of it has the same code version and the same wheel
(sha256). Everything else, missing, changed or never recorded in this instance, needs a step.
The command line, the rebuild sensor and the schedule's rebuild all select with this.
"""

from __future__ import annotations

import dagster as dg

from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository import WheelRepository, reusable_wheel

from .collections import Collection
from .wheels import built_nodes, code_version, node_asset_key

CODE_VERSION_TAG = "dagster/code_version"


def wheels_needing_steps(
    instance: dg.DagsterInstance, collection: Collection, graph: DependencyGraph
) -> list[dg.AssetKey]:
    """The keys of ``graph``'s wheel assets that are missing or changed, in key order."""
    layout = OutputLayout(collection.output_dir)
    settings = collection.settings()
    repository = WheelRepository(layout)
    plugins = Plugins.load()
    keys = {node_asset_key(graph, collection.variant, key): key for key in built_nodes(graph)}
    latest = instance.get_latest_materialization_events(list(keys))
    needed = []
    for asset_key, node_key in keys.items():
        event = latest.get(asset_key)
        materialization = event.asset_materialization if event is not None else None
        if materialization is None:
            needed.append(asset_key)
            continue
        recorded = {k: getattr(v, "value", v) for k, v in materialization.metadata.items()}
        tags = materialization.tags or {}
        if tags.get(CODE_VERSION_TAG) != code_version(graph, node_key, settings):
            needed.append(asset_key)
            continue
        built = reusable_wheel(
            graph, node_key, layout, settings=settings, plugins=plugins, repository=repository
        )
        if built is None or recorded.get("wheel_sha256") != built.sha256:
            needed.append(asset_key)
    # what builds with a wheel that will be rebuilt runs too: its step reuses its own wheel
    # if the rebuilt one has the same bytes, and rebuilds it if not
    stale, built_here = {keys[k] for k in needed}, set(keys.values())
    for node_key in graph.build_order_keys():
        if node_key in built_here and stale & set(graph.build_requirements(node_key)):
            stale.add(node_key)
    return sorted(k for k, node_key in keys.items() if node_key in stale)
