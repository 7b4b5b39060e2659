"""fromager's build order: each package-version after everything its build needs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fromager_dagster.core.credentials import strip_credentials
from fromager_dagster.core.graph.model import BUILD_TYPES, ROOT, DependencyGraph
from fromager_dagster.core.package_id import package_key


@dataclass(frozen=True)
class BuildOrderEntry:
    """One entry of build-order.json: the requirement that first led to a package-version,
    the constraint that applied, and where its source (or pre-built wheel) came from."""

    dist: str
    version: str
    req: str = ""
    constraint: str = ""
    prebuilt: bool = False
    source_url: str = ""
    source_url_type: str = "sdist"  # "prebuilt" or "sdist"

    @property
    def key(self) -> str:
        """The graph key of its node, ``dist==version`` as written."""
        return package_key(self.dist, self.version)

    def to_json(self) -> dict[str, Any]:
        """The entry as fromager writes it (its fields in fromager's order)."""
        return {
            "req": self.req,
            "constraint": self.constraint,
            "dist": self.dist,
            "version": self.version,
            "prebuilt": self.prebuilt,
            "source_url": self.source_url,
            "source_url_type": self.source_url_type,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> BuildOrderEntry:
        """An entry read from a build-order.json (``dist`` and ``version`` checked by the
        caller); fields it lacks take their defaults."""
        prebuilt = bool(data.get("prebuilt", False))
        url_type = data.get("source_url_type") or ("prebuilt" if prebuilt else "sdist")
        return cls(
            dist=data["dist"],
            version=data["version"],
            req=str(data.get("req") or ""),
            constraint=str(data.get("constraint") or ""),
            prebuilt=prebuilt,
            source_url=str(data.get("source_url") or ""),
            source_url_type=str(url_type),
        )


def build_order(graph: DependencyGraph) -> list[BuildOrderEntry]:
    """Each node after everything its build needs.

    Depth-first from the root along edge order: a node is emitted after its build edges
    are walked and before its install edges, as fromager's bootstrap does.
    """
    order: list[BuildOrderEntry] = []
    visited: set[str] = set()

    def visit(key: str, req: str) -> None:
        # iterative DFS with explicit frames to survive deep graphs
        frames: list[tuple[str, str, int]] = [(key, req, 0)]
        visited.add(key)
        while frames:
            current, current_req, index = frames.pop()
            edges = graph.nodes[current].edges
            build_edges = [e for e in edges if e.req_type in BUILD_TYPES]
            install_edges = [e for e in edges if e.req_type not in BUILD_TYPES]
            sequence = [*build_edges, None, *install_edges]
            while index < len(sequence):
                edge = sequence[index]
                index += 1
                if edge is None:
                    order.append(_entry(graph, current, current_req))
                    continue
                if edge.key in visited:
                    continue
                visited.add(edge.key)
                frames.append((current, current_req, index))
                frames.append((edge.key, edge.req, 0))
                break

    for edge in graph.nodes[ROOT].edges:
        if edge.key not in visited:
            visit(edge.key, edge.req)
    return order


def _entry(graph: DependencyGraph, key: str, req: str) -> BuildOrderEntry:
    node = graph.nodes[key]
    return BuildOrderEntry(
        dist=node.canonicalized_name,
        version=node.version,
        req=req,
        constraint=node.constraint or "",
        prebuilt=node.pre_built,
        source_url=strip_credentials(node.download_url),
        source_url_type="prebuilt" if node.pre_built else "sdist",
    )
