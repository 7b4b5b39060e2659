"""Reading graph.json and build-order.json: finding, loading, and naming what is wrong."""

from __future__ import annotations

import json
from pathlib import Path
from typing import get_args

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.graph.build_order import BuildOrderEntry
from fromager_dagster.core.graph.model import ROOT, DependencyGraph, ReqType

REQ_TYPES: tuple[ReqType, ...] = get_args(ReqType)


def find_graph_file(path: Path) -> Path:
    """``path`` itself, or for a folder its ``graph.json`` or ``work-dir/graph.json``."""
    if not path.is_dir():
        return path
    for candidate in (path / "graph.json", path / "work-dir" / "graph.json"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"{path}: no graph.json in this folder or in its work-dir/")


def load_graph(path: Path) -> DependencyGraph:
    """Read fromager's graph.json; errors name the file and what is wrong with it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read graph {path}: {exc.strerror or exc}") from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path}: not a graph.json file (not JSON: {exc})") from exc
    if not isinstance(data, dict) or ROOT not in data:
        raise ConfigError(f'{path}: not a graph.json file (no root node "")')
    graph = DependencyGraph.from_json(data, source=str(path))
    for node in graph.nodes.values():
        for edge in node.edges:
            if edge.req_type not in REQ_TYPES:
                raise ConfigError(
                    f"{path}: edge from {node.key!r} to {edge.key!r} has unknown req_type "
                    f"{edge.req_type!r} (expected one of {', '.join(REQ_TYPES)})"
                )
    return graph


def load_build_order(path: Path) -> list[BuildOrderEntry]:
    """Read fromager's build-order.json; errors name the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read build order {path}: {exc.strerror or exc}") from exc
    except ValueError as exc:
        raise ConfigError(f"{path}: not a build-order.json file (not JSON: {exc})") from exc
    if not isinstance(data, list) or not all(
        isinstance(e, dict) and isinstance(e.get("dist"), str) and isinstance(e.get("version"), str)
        for e in data
    ):
        raise ConfigError(
            f"{path}: not a build-order.json file (expected a list of objects with dist and "
            "version)"
        )
    return [BuildOrderEntry.from_json(e) for e in data]
