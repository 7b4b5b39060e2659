"""The discovery asset's tables: the graph's nodes, and what changed since the previous graph.

A wheel asset of a version no longer in the graph has no definition any more: the UI shows
its history under its old key as an "External Asset". The change table names those keys, so
the discovery that dropped them says which they are (docs/ui.md: what to do with them).
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from fromager_dagster.core.graph import ROOT, DependencyGraph, graph_changes

from .keys import wheel_key

NODE_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("name", "string", description="canonical package name"),
        dg.TableColumn("version", "string"),
        dg.TableColumn(
            "pre_built", "bool", description="installed from the index, not built from source"
        ),
        dg.TableColumn("build_requirements", "string", description="name==version, ..."),
        dg.TableColumn("asset_key", "string", description="the wheel asset (none if pre-built)"),
    ]
)
CHANGE_COLUMNS = dg.TableSchema(
    columns=[
        dg.TableColumn("name", "string"),
        dg.TableColumn("change", "string", description="added, removed or changed"),
        dg.TableColumn("old_versions", "string"),
        dg.TableColumn("new_versions", "string"),
        dg.TableColumn(
            "removed_asset_keys",
            "string",
            description="wheel assets of the old versions: no longer defined (External Asset)",
        ),
    ]
)


def nodes_table(graph: DependencyGraph, variant: str) -> dg.MetadataValue:
    """One row per node of ``graph``, in build order (then any node outside it, by key)."""
    order = graph.build_order_keys()
    ordered = set(order)
    order += sorted(k for k in graph.nodes if k != ROOT and k not in ordered)
    rows = []
    for key in order:
        node = graph.nodes[key]
        asset = wheel_key(variant, node.canonicalized_name, node.version).to_user_string()
        rows.append(
            dg.TableRecord(
                {
                    "name": node.canonicalized_name,
                    "version": node.version,
                    "pre_built": node.pre_built,
                    "build_requirements": ", ".join(graph.build_requirements(key)) or "none",
                    "asset_key": "none" if node.pre_built else asset,
                }
            )
        )
    return dg.MetadataValue.table(rows, schema=NODE_COLUMNS)


def changes_metadata(
    old: DependencyGraph | None, new: DependencyGraph, variant: str
) -> dict[str, Any]:
    """``changes`` (a table; absent on the first discovery), ``removed_wheels`` (the wheel
    assets the new graph no longer defines: their keys, or "none")."""
    if old is None:
        return {"changes": "first discovery: no previous graph to compare with"}
    rows, removed = [], []
    for change in graph_changes(old, new):
        gone = [
            wheel_key(variant, change.name, v).to_user_string()
            for v in change.old_versions
            if v not in change.new_versions and _built(old, change.name, v)
        ]
        removed.extend(gone)
        rows.append(
            dg.TableRecord(
                {
                    "name": change.name,
                    "change": change.change,
                    "old_versions": ", ".join(change.old_versions) or "none",
                    "new_versions": ", ".join(change.new_versions) or "none",
                    "removed_asset_keys": ", ".join(gone) or "none",
                }
            )
        )
    metadata: dict[str, Any] = {
        "changes": dg.MetadataValue.table(rows, schema=CHANGE_COLUMNS)
        if rows
        else "none: the same packages and versions as the previous graph",
        "removed_wheels": dg.MetadataValue.md("\n".join(f"- `{k}`" for k in removed))
        if removed
        else "none",
    }
    return metadata


def _built(graph: DependencyGraph, name: str, version: str) -> bool:
    node = graph.nodes.get(f"{name}=={version}")
    return node is not None and not node.pre_built
