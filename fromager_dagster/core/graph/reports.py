"""Views of a whole graph: a subset of it, its Graphviz drawing, its statistics."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from packaging.utils import canonicalize_name

from fromager_dagster.core.graph.build_order import BuildOrderEntry
from fromager_dagster.core.graph.files import REQ_TYPES
from fromager_dagster.core.graph.model import ROOT, DependencyGraph, Edge, Node, ReqType
from fromager_dagster.core.graph.queries import version_key
from fromager_dagster.core.package_id import package_key

if TYPE_CHECKING:
    import networkx as nx

# How to_dot draws each kind of edge (Graphviz attributes).
EDGE_STYLES: dict[ReqType, str] = {
    "toplevel": "style=bold",
    "install": "style=solid",
    "build-system": 'style=dashed, color="blue"',
    "build-backend": 'style=dashed, color="darkgreen"',
    "build-sdist": 'style=dotted, color="gray40"',
}


# --- subset ----------------------------------------------------------------------------------


def subset(
    graph: DependencyGraph, keys: Sequence[str], *, with_dependents: bool = False
) -> DependencyGraph:
    """A graph.json-compatible graph of ``keys`` and everything they need.

    By default: ``keys``, every node reachable from them (all edge types, so the subset can be
    built on its own), and a root with one toplevel edge to each of ``keys`` (the original
    toplevel requirement when there was one, else ``name==version``).
    ``with_dependents`` adds, as fromager's ``graph subset`` does, every node from which
    ``keys`` can be reached (up to the root), keeping the original edges between kept nodes.
    """
    import networkx as nx  # imported when asked: 0.3 s the commands need not pay

    edges = digraph(graph)
    kept = set(keys).union(*(nx.descendants(edges, key) for key in keys))
    if with_dependents:
        kept |= set().union(*(nx.ancestors(edges, key) for key in keys))
    result = DependencyGraph()
    for key, node in graph.nodes.items():
        if key not in kept or key == ROOT:
            continue
        result.nodes[key] = Node(
            key,
            node.canonicalized_name,
            node.version,
            node.download_url,
            node.pre_built,
            node.constraint,
            [e for e in node.edges if e.key in kept],
        )
    root_edges = graph.nodes[ROOT].edges
    if with_dependents:
        result.nodes[ROOT].edges = [e for e in root_edges if e.key in kept]
    else:
        for key in dict.fromkeys(keys):
            toplevel = [e for e in root_edges if e.key == key]
            node = graph.nodes[key]
            req = package_key(node.canonicalized_name, node.version)
            result.nodes[ROOT].edges.extend(toplevel or [Edge(key, "toplevel", req)])
    return result


def digraph(graph: DependencyGraph) -> nx.DiGraph[str]:
    """``graph`` as a networkx graph: every node, one arc per parent and child (any type)."""
    import networkx as nx

    arcs: nx.DiGraph[str] = nx.DiGraph()
    arcs.add_nodes_from(graph.nodes)
    arcs.add_edges_from((key, e.key) for key, node in graph.nodes.items() for e in node.edges)
    return arcs


# --- DOT -------------------------------------------------------------------------------------


def _dot_id(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def to_dot(graph: DependencyGraph, *, install_only: bool = False) -> str:
    """Graphviz DOT for the graph: one node per ``name==version``, edges styled per req_type.

    The root is drawn as a circle labelled ``*``; pre-built nodes are grey parallelograms
    labelled ``(prebuilt)``. ``install_only`` keeps the root, the toplevel and install edges and
    the nodes they reach (what gets installed, not what is needed to build it).
    """
    if install_only:
        keys = [ROOT, *graph.install_closure(graph.children(ROOT))]
        types: tuple[ReqType, ...] = ("toplevel", "install")
    else:
        keys = list(graph.walk())
        types = REQ_TYPES
    kept = set(keys)
    lines = [
        "digraph dependencies {",
        "  // edges: " + "; ".join(f"{t} [{s}]" for t, s in EDGE_STYLES.items() if t in types),
        '  node [shape=box, fontname="Helvetica"];',
        '  edge [fontname="Helvetica"];',
    ]
    for key in keys:
        node = graph.nodes[key]
        if key == ROOT:
            lines.append(f'  {_dot_id("root")} [label="*", shape=circle];')
        elif node.pre_built:
            label = f'{_dot_id(key)[:-1]}\\n(prebuilt)"'
            lines.append(
                f"  {_dot_id(key)} [label={label}, shape=parallelogram, style=filled, "
                'fillcolor="lightgrey"];'
            )
        else:
            lines.append(f"  {_dot_id(key)};")
    for key in keys:
        source = _dot_id("root" if key == ROOT else key)
        for edge in graph.nodes[key].edges:
            if edge.req_type not in types or edge.key not in kept:
                continue
            tooltip = _dot_id(f"{edge.req_type}: {edge.req}")
            lines.append(
                f"  {source} -> {_dot_id(edge.key)} [{EDGE_STYLES[edge.req_type]}, "
                f"tooltip={tooltip}];"
            )
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- statistics ------------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildOrderStats:
    path: str
    entries: int
    prebuilt: int
    missing: tuple[str, ...]
    extra: tuple[str, ...]


@dataclass(frozen=True)
class GraphStats:
    """Counts over one graph.json (the root not counted)."""

    nodes: int
    packages: int
    edges: dict[str, int]
    prebuilt: int
    multiple_versions: dict[str, list[str]]
    longest_build_chain: list[str]
    build_order: BuildOrderStats | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "nodes": self.nodes,
            "packages": self.packages,
            "edges": self.edges,
            "prebuilt": self.prebuilt,
            "multiple_versions": self.multiple_versions,
            "longest_build_chain": {
                "length": len(self.longest_build_chain),
                "chain": self.longest_build_chain,
            },
            "build_order": None,
        }
        if self.build_order is not None:
            bo = self.build_order
            data["build_order"] = {
                "path": bo.path,
                "entries": bo.entries,
                "prebuilt": bo.prebuilt,
                "missing_from_build_order": list(bo.missing),
                "not_in_graph": list(bo.extra),
            }
        return data


def longest_build_chain(graph: DependencyGraph) -> list[str]:
    """The longest sequence of builds where each needs the previous one's wheel, first first.

    A node needs its build requirements (build edges and their install closure) built before
    it; pre-built nodes are not built and do not count. Its length is the number of rounds a
    level-by-level build needs. Where build requirements loop, the closing step is ignored.
    """

    import networkx as nx

    needs: nx.DiGraph[str] = nx.DiGraph()
    for key in graph.walk():
        if key != ROOT:
            needs.add_node(key)
            if not graph.nodes[key].pre_built:
                needs.add_edges_from((key, k) for k in graph.build_requirements(key) if k != key)
    best: dict[str, tuple[int, str | None]] = {}
    # depth-first, each node once: an arc back to a node on the current path (a loop of
    # build requirements) is not followed, so that closing step is ignored
    for key in nx.dfs_postorder_nodes(needs):
        length, below = max(
            ((best[d][0], d) for d in needs.successors(key) if d in best),
            default=(0, None),
            key=lambda item: item[0],
        )
        best[key] = (0, None) if graph.nodes[key].pre_built else (length + 1, below)
    if not best:
        return []
    top = max(best, key=lambda k: best[k][0])
    chain: list[str] = []
    current: str | None = top
    while current is not None and best[current][0] > 0:
        chain.append(current)
        current = best[current][1]
    return list(reversed(chain))


def graph_stats(
    graph: DependencyGraph,
    *,
    build_order: list[BuildOrderEntry] | None = None,
    build_order_path: str = "build-order.json",
) -> GraphStats:
    """Counts of nodes, packages, edges per type, pre-built nodes, duplicates, build depth."""
    keys = [k for k in graph.walk() if k != ROOT]
    edges: dict[str, int] = dict.fromkeys(REQ_TYPES, 0)
    for key in [ROOT, *keys]:
        for edge in graph.nodes[key].edges:
            edges[edge.req_type] = edges.get(edge.req_type, 0) + 1
    versions: dict[str, list[str]] = {}
    for key in keys:
        node = graph.nodes[key]
        versions.setdefault(node.canonicalized_name, []).append(node.version)
    multiple = {
        name: sorted(found, key=version_key)
        for name, found in sorted(versions.items())
        if len(found) > 1
    }
    order_stats = None
    if build_order is not None:
        ordered = [package_key(canonicalize_name(e.dist), e.version) for e in build_order]
        order_stats = BuildOrderStats(
            path=build_order_path,
            entries=len(build_order),
            prebuilt=sum(1 for e in build_order if e.prebuilt),
            missing=tuple(sorted(set(keys) - set(ordered))),
            extra=tuple(sorted(set(ordered) - set(keys))),
        )
    return GraphStats(
        nodes=len(keys),
        packages=len(versions),
        edges=edges,
        prebuilt=sum(1 for k in keys if graph.nodes[k].pre_built),
        multiple_versions=multiple,
        longest_build_chain=longest_build_chain(graph),
        build_order=order_stats,
    )
