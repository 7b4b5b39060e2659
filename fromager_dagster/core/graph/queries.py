"""Questions asked of a finished graph.json: why, duplicates, subsets, DOT, statistics."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.graph.build_order import BuildOrderEntry
from fromager_dagster.core.graph.model import ROOT, DependencyGraph, Edge, Node, ReqType
from fromager_dagster.core.package_id import package_key

if TYPE_CHECKING:
    import networkx as nx

REQ_TYPES: tuple[ReqType, ...] = get_args(ReqType)

# How to_dot draws each kind of edge (Graphviz attributes).
EDGE_STYLES: dict[ReqType, str] = {
    "toplevel": "style=bold",
    "install": "style=solid",
    "build-system": 'style=dashed, color="blue"',
    "build-backend": 'style=dashed, color="darkgreen"',
    "build-sdist": 'style=dotted, color="gray40"',
}


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


def parents_index(graph: DependencyGraph) -> dict[str, list[tuple[str, Edge]]]:
    """For each node key, the ``(parent key, edge)`` pairs that point at it, in graph order."""
    parents: dict[str, list[tuple[str, Edge]]] = {key: [] for key in graph.nodes}
    for key, node in graph.nodes.items():
        for edge in node.edges:
            parents[edge.key].append((key, edge))
    return parents


def select_nodes(
    graph: DependencyGraph, package: str, versions: Sequence[str] = (), *, source: str = "graph"
) -> list[Node]:
    """The nodes of ``package`` (any spelling), limited to ``versions`` when given."""
    name = canonicalize_name(package)
    found = [n for k, n in graph.nodes.items() if k != ROOT and n.canonicalized_name == name]
    if not found:
        raise ConfigError(f"{source}: no package {name} in this graph")
    if not versions:
        return sorted(found, key=lambda n: _version_key(n.version))
    wanted = {_parse_version(v, name) for v in versions}
    chosen = [n for n in found if _version_key(n.version) in wanted]
    if not chosen:
        have = ", ".join(n.version for n in sorted(found, key=lambda n: _version_key(n.version)))
        raise ConfigError(
            f"{source}: package {name} has no version {', '.join(versions)} in this graph "
            f"(it has {have})"
        )
    return sorted(chosen, key=lambda n: _version_key(n.version))


def _parse_version(text: str, name: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise ConfigError(f"{name}: {text!r} is not a valid version") from exc


def _version_key(text: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        return Version("0")


# --- why -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WhyLink:
    """How ``parent`` requires the node below it, and why ``parent`` is in the graph.

    ``edges`` are the ``(req_type, requirement as written)`` pairs from parent to that node.
    ``above`` explains ``parent`` in turn; it is empty when ``parent`` is the root, when the
    depth limit is reached, or when ``note`` says why it is not repeated: ``"cycle"`` (the
    parent is already on this chain) or ``"shown"`` (its chains were given earlier).
    """

    parent: str
    parent_constraint: str | None
    edges: tuple[tuple[ReqType, str], ...]
    above: tuple[WhyLink, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class WhyReport:
    """Every chain from the root down to one node, as a tree of :class:`WhyLink`."""

    key: str
    constraint: str | None
    links: tuple[WhyLink, ...]
    req_types: tuple[ReqType, ...] = ()


def why(
    graph: DependencyGraph,
    key: str,
    *,
    depth: int | None = None,
    req_types: Iterable[ReqType] = (),
) -> WhyReport:
    """The chains of parents from ``key`` back to the root.

    ``depth`` limits how many levels of parents are followed (``None``: up to the root).
    ``req_types`` keeps only edges of those types into ``key`` itself (toplevel edges are always
    kept); the levels above are complete so every chain still ends at the root. A parent whose
    chains were already given is not expanded twice, which keeps the answer linear in the size
    of the graph.
    """
    parents = parents_index(graph)
    types = tuple(req_types)
    expanded: dict[str, int] = {}  # parent -> level at which its chains were given

    def links_of(
        child: str, level: int, path: frozenset[str], only: tuple[ReqType, ...]
    ) -> tuple[WhyLink, ...]:
        grouped: dict[str, list[tuple[ReqType, str]]] = {}
        for parent, edge in parents[child]:
            if only and edge.req_type not in only and edge.req_type != "toplevel":
                continue
            grouped.setdefault(parent, []).append((edge.req_type, edge.req))
        result = []
        for parent, edges in grouped.items():
            node = graph.nodes[parent]
            note = ""
            above: tuple[WhyLink, ...] = ()
            if parent != ROOT and (depth is None or level < depth):
                if parent in path:
                    note = "cycle"
                elif expanded.get(parent, level + 1) <= level:
                    note = "shown"
                else:
                    expanded[parent] = level
                    above = links_of(parent, level + 1, path | {parent}, ())
            result.append(WhyLink(parent, node.constraint, tuple(edges), above, note))
        return tuple(result)

    node = graph.nodes[key]
    return WhyReport(key, node.constraint, links_of(key, 1, frozenset({key}), types), types)


# --- duplicates ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Requirer:
    """One edge into a version of a duplicated package, and which versions it admits."""

    parent: str
    req_type: ReqType
    req: str
    matches: tuple[str, ...]


@dataclass(frozen=True)
class DuplicateVersion:
    version: str
    key: str
    constraint: str | None
    requirers: tuple[Requirer, ...]


@dataclass(frozen=True)
class Duplicate:
    """A package present in several versions; ``usable`` is the newest one every edge admits."""

    name: str
    versions: tuple[DuplicateVersion, ...]
    usable: str | None


def duplicates(graph: DependencyGraph) -> list[Duplicate]:
    """Every package with more than one version in ``graph``, sorted by name."""
    by_name: dict[str, list[Node]] = {}
    for key, node in graph.nodes.items():
        if key != ROOT:
            by_name.setdefault(node.canonicalized_name, []).append(node)
    parents = parents_index(graph)
    result = []
    for name, nodes in sorted(by_name.items()):
        if len(nodes) < 2:
            continue
        nodes.sort(key=lambda n: _version_key(n.version))
        versions = [Version(n.version) for n in nodes]
        entries = []
        admitted_by_all = set(versions)
        for node in nodes:
            requirers = []
            for parent, edge in parents[node.key]:
                matches = _matching(edge.req, versions)
                admitted_by_all &= set(matches)
                requirers.append(
                    Requirer(parent, edge.req_type, edge.req, tuple(str(v) for v in matches))
                )
            entries.append(
                DuplicateVersion(node.version, node.key, node.constraint, tuple(requirers))
            )
        usable = str(max(admitted_by_all)) if admitted_by_all else None
        result.append(Duplicate(name, tuple(entries), usable))
    return result


def _matching(req: str, versions: list[Version]) -> list[Version]:
    try:
        specifier = Requirement(req).specifier
    except InvalidRequirement:
        return []
    return [v for v in versions if specifier.contains(v, prereleases=True)]


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
        name: sorted(found, key=_version_key)
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


__all__ = [
    "EDGE_STYLES",
    "REQ_TYPES",
    "BuildOrderStats",
    "Duplicate",
    "DuplicateVersion",
    "GraphStats",
    "Requirer",
    "WhyLink",
    "WhyReport",
    "digraph",
    "duplicates",
    "find_graph_file",
    "graph_stats",
    "load_build_order",
    "load_graph",
    "longest_build_chain",
    "parents_index",
    "select_nodes",
    "subset",
    "to_dot",
    "why",
]


@dataclass(frozen=True)
class GraphChange:
    """One package whose versions differ between two graphs: ``added`` (new package),
    ``removed`` (gone), or ``changed`` (present in both, other versions)."""

    name: str
    change: str
    old_versions: tuple[str, ...]
    new_versions: tuple[str, ...]


def graph_changes(old: DependencyGraph | None, new: DependencyGraph) -> list[GraphChange]:
    """What changed from ``old`` to ``new``, package by package, sorted by name (everything is
    ``added`` when there is no old graph)."""

    def versions(graph: DependencyGraph | None) -> dict[str, tuple[str, ...]]:
        found: dict[str, set[str]] = {}
        for key, node in graph.nodes.items() if graph is not None else ():
            if key != ROOT:
                found.setdefault(node.canonicalized_name, set()).add(node.version)
        return {name: tuple(sorted(v, key=_version_key)) for name, v in found.items()}

    before, after = versions(old), versions(new)
    changes = []
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name, ()), after.get(name, ())
        if was == now:
            continue
        change = "added" if not was else "removed" if not now else "changed"
        changes.append(GraphChange(name, change, was, now))
    return changes
