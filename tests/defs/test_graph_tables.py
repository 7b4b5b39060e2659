"""The discovery asset's node and change tables, from graphs written in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.graph.queries import GraphChange, graph_changes
from fromager_dagster.defs.graph_tables import changes_metadata, nodes_table


def _node(name: str, version: str, edges: list[tuple[str, str]], **extra: Any) -> dict[str, Any]:
    return {
        "download_url": f"https://example.invalid/{name}-{version}.tar.gz",
        "pre_built": False,
        "version": version,
        "canonicalized_name": name,
        "constraint": None,
        "edges": [{"key": k, "req_type": t, "req": k.split("==")[0]} for k, t in edges],
        **extra,
    }


def _graph(tmp_path: Path, name: str, nodes: dict[str, dict[str, Any]]) -> DependencyGraph:
    root = {
        "download_url": "",
        "pre_built": False,
        "version": "0",
        "canonicalized_name": "",
        "constraint": None,
        "edges": [{"key": k, "req_type": "toplevel", "req": k.split("==")[0]} for k in nodes],
    }
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps({"": root, **nodes}))
    return DependencyGraph.load(path)


def test_node_and_change_tables(tmp_path: Path) -> None:
    old = _graph(
        tmp_path,
        "old",
        {
            "app==1.0": _node("app", "1.0", [("tool==1.0", "build-system")]),
            "tool==1.0": _node("tool", "1.0", []),
            "gone==3.0": _node("gone", "3.0", []),
            "bin==1.0": _node("bin", "1.0", [], pre_built=True),
        },
    )
    new = _graph(
        tmp_path,
        "new",
        {
            "app==1.0": _node("app", "1.0", [("tool==2.0", "build-system")]),
            "tool==2.0": _node("tool", "2.0", []),
            "fresh==0.1": _node("fresh", "0.1", []),
            "bin==1.0": _node("bin", "1.0", [], pre_built=True),
        },
    )
    assert graph_changes(old, new) == [
        GraphChange("fresh", "added", (), ("0.1",)),
        GraphChange("gone", "removed", ("3.0",), ()),
        GraphChange("tool", "changed", ("1.0",), ("2.0",)),
    ]
    assert [c.change for c in graph_changes(None, new)] == ["added"] * 4

    rows = {r.data["name"]: r.data for r in nodes_table(new, "cpu").value.records}
    assert rows["app"] == {
        "name": "app",
        "version": "1.0",
        "pre_built": False,
        "build_requirements": "tool==2.0",
        "asset_key": "wheels/cpu/app/app-1.0",
    }
    assert rows["bin"]["asset_key"] == "none" and rows["tool"]["build_requirements"] == "none"

    meta = changes_metadata(old, new, "cuda")
    changes = {r.data["name"]: r.data for r in meta["changes"].value.records}
    assert changes["tool"]["removed_asset_keys"] == "wheels/cuda/tool/tool-1.0-cuda"
    assert changes["gone"]["new_versions"] == "none"
    assert changes["fresh"]["removed_asset_keys"] == "none"
    assert "`wheels/cuda/gone/gone-3.0-cuda`" in meta["removed_wheels"].value
    same = changes_metadata(new, new, "cpu")
    assert same["changes"].startswith("none") and same["removed_wheels"] == "none"
    assert changes_metadata(None, new, "cpu")["changes"].startswith("first discovery")
