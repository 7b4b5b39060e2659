"""Questions about the packages of a graph: select them, why each is there, which are
duplicated, what changed between two graphs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.graph.model import ROOT, DependencyGraph, Edge, Node, ReqType


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
        return sorted(found, key=lambda n: version_key(n.version))
    wanted = {_parse_version(v, name) for v in versions}
    chosen = [n for n in found if version_key(n.version) in wanted]
    if not chosen:
        have = ", ".join(n.version for n in sorted(found, key=lambda n: version_key(n.version)))
        raise ConfigError(
            f"{source}: package {name} has no version {', '.join(versions)} in this graph "
            f"(it has {have})"
        )
    return sorted(chosen, key=lambda n: version_key(n.version))


def _parse_version(text: str, name: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion as exc:
        raise ConfigError(f"{name}: {text!r} is not a valid version") from exc


def version_key(text: str) -> Version:
    """``text`` as a version to sort by (an invalid one sorts first, as ``0``)."""
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
        nodes.sort(key=lambda n: version_key(n.version))
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


# --- changes ---------------------------------------------------------------------------------


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
        return {name: tuple(sorted(v, key=version_key)) for name, v in found.items()}

    before, after = versions(old), versions(new)
    changes = []
    for name in sorted(before.keys() | after.keys()):
        was, now = before.get(name, ()), after.get(name, ())
        if was == now:
            continue
        change = "added" if not was else "removed" if not now else "changed"
        changes.append(GraphChange(name, change, was, now))
    return changes
