"""The dependency graph: model, graph.json, build order, and questions asked of it.

Its public names are below; each is imported from its module when first used, so that
importing one module of the engine does not import every package it names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fromager_dagster.core.public_names import lazy_names

if TYPE_CHECKING:
    from .build_order import BuildOrderEntry
    from .files import REQ_TYPES, find_graph_file, load_build_order, load_graph
    from .model import BUILD_TYPES, ROOT, DependencyGraph, ReqType, write_atomic
    from .queries import (
        Duplicate,
        WhyLink,
        WhyReport,
        duplicates,
        graph_changes,
        select_nodes,
        why,
    )
    from .reports import GraphStats, graph_stats, subset, to_dot
    from .scheduling import (
        EXCLUSIVE_TAG,
        blocked_builds,
        build_lanes,
        build_priorities,
        machine_memory_gb,
        second_pass,
    )

#: The public names, and the module of this package that defines each.
_MODULES = {
    "BUILD_TYPES": "model",
    "BuildOrderEntry": "build_order",
    "DependencyGraph": "model",
    "Duplicate": "queries",
    "EXCLUSIVE_TAG": "scheduling",
    "GraphStats": "reports",
    "REQ_TYPES": "files",
    "ROOT": "model",
    "ReqType": "model",
    "WhyLink": "queries",
    "WhyReport": "queries",
    "blocked_builds": "scheduling",
    "build_lanes": "scheduling",
    "build_priorities": "scheduling",
    "duplicates": "queries",
    "find_graph_file": "files",
    "graph_changes": "queries",
    "graph_stats": "reports",
    "load_build_order": "files",
    "load_graph": "files",
    "machine_memory_gb": "scheduling",
    "second_pass": "scheduling",
    "select_nodes": "queries",
    "subset": "reports",
    "to_dot": "reports",
    "why": "queries",
    "write_atomic": "model",
}
__all__ = [
    "BUILD_TYPES",
    "EXCLUSIVE_TAG",
    "REQ_TYPES",
    "ROOT",
    "BuildOrderEntry",
    "DependencyGraph",
    "Duplicate",
    "GraphStats",
    "ReqType",
    "WhyLink",
    "WhyReport",
    "blocked_builds",
    "build_lanes",
    "build_priorities",
    "duplicates",
    "find_graph_file",
    "graph_changes",
    "graph_stats",
    "load_build_order",
    "load_graph",
    "machine_memory_gb",
    "second_pass",
    "select_nodes",
    "subset",
    "to_dot",
    "why",
    "write_atomic",
]
__getattr__ = lazy_names(__name__, _MODULES)
