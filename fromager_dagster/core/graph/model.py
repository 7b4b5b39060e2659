"""The dependency graph: typed edges, fromager's graph.json, build order and constraints."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from packaging.requirements import Requirement
from packaging.utils import InvalidName, canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.credentials import strip_credentials
from fromager_dagster.core.errors import BuildCycleError, ConfigError, ResolutionError
from fromager_dagster.core.package_id import PackageId, package_key

if TYPE_CHECKING:
    from fromager_dagster.core.graph.build_order import BuildOrderEntry

ReqType = Literal["toplevel", "install", "build-system", "build-backend", "build-sdist"]
BUILD_TYPES: tuple[ReqType, ...] = ("build-system", "build-backend", "build-sdist")
ROOT = ""


@dataclass(frozen=True)
class Edge:
    key: str
    req_type: ReqType
    req: str


@dataclass
class Node:
    key: str
    canonicalized_name: str
    version: str
    download_url: str = ""
    pre_built: bool = False
    constraint: str | None = None
    edges: list[Edge] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "download_url": strip_credentials(self.download_url),
            "pre_built": self.pre_built,
            "version": self.version,
            "canonicalized_name": self.canonicalized_name,
            "constraint": self.constraint,
            "edges": [{"key": e.key, "req_type": e.req_type, "req": e.req} for e in self.edges],
        }

    @property
    def id(self) -> PackageId:
        """The package-version of a node (not of the root); graph.json's names and versions
        are checked when it is read."""
        return PackageId.of(self.canonicalized_name, self.version)


class DependencyGraph:
    """Nodes keyed ``name==version`` plus the root ``""``; safe to grow from many threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.nodes: dict[str, Node] = {ROOT: Node(ROOT, "", "0")}

    def add_node(
        self,
        package: PackageId,
        *,
        download_url: str = "",
        pre_built: bool = False,
        constraint: str | None = None,
    ) -> Node:
        key = package.key
        with self._lock:
            node = self.nodes.get(key)
            if node is None:
                node = Node(
                    key, package.name, str(package.version), download_url, pre_built, constraint
                )
                self.nodes[key] = node
            return node

    def add_edge(self, parent: str, child: str, req_type: ReqType, req: Requirement | str) -> None:
        edge = Edge(child, req_type, str(req))
        with self._lock:
            edges = self.nodes[parent].edges
            if edge not in edges:
                edges.append(edge)

    def children(self, key: str, types: tuple[ReqType, ...] | None = None) -> list[str]:
        return [e.key for e in self.nodes[key].edges if types is None or e.req_type in types]

    def install_closure(self, keys: list[str]) -> list[str]:
        """``keys`` and everything reachable from them through install edges, in DFS order."""
        seen: dict[str, None] = {}
        stack = list(reversed(keys))
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen[key] = None
            stack.extend(reversed(self.children(key, ("install",))))
        return list(seen)

    def build_requirements(self, key: str) -> list[str]:
        """What must be installed to build ``key``: its build children and their install closure."""
        direct = list(dict.fromkeys(self.children(key, BUILD_TYPES)))
        return self.install_closure(direct)

    def build_stages(self, key: str) -> list[list[str]]:
        """:meth:`build_requirements` in the order a bootstrap installs them: the
        build-system requirements' closure, then what the hooks added. A hook may ask for
        another version of a package the build system brought (``setuptools_scm<8`` in
        ``[build-system]``, ``setuptools_scm`` from the backend): the later stage replaces it,
        as it did when the package was discovered."""
        first = self.install_closure(list(dict.fromkeys(self.children(key, ("build-system",)))))
        rest = [k for k in self.build_requirements(key) if k not in set(first)]
        return [stage for stage in (first, rest) if stage]

    def walk(self) -> Iterator[str]:
        """Node keys reachable from the root, in depth-first pre-order along edge order."""
        seen: set[str] = set()
        stack = [ROOT]
        while stack:
            key = stack.pop()
            if key in seen:
                continue
            seen.add(key)
            yield key
            stack.extend(reversed([e.key for e in self.nodes[key].edges]))

    def to_json(self) -> dict[str, Any]:
        return {key: self.nodes[key].to_json() for key in self.walk()}

    @classmethod
    def from_json(cls, data: dict[str, Any], *, source: str = "graph.json") -> DependencyGraph:
        graph = cls()
        try:
            for key, raw in data.items():
                node = Node(
                    key,
                    raw["canonicalized_name"],
                    raw["version"],
                    raw.get("download_url", ""),
                    bool(raw.get("pre_built", False)),
                    raw.get("constraint"),
                    [Edge(e["key"], e["req_type"], e["req"]) for e in raw.get("edges", [])],
                )
                graph.nodes[key] = node
            _check_nodes(graph, source)
            for node in graph.nodes.values():
                for edge in node.edges:
                    if edge.key not in graph.nodes:
                        raise ConfigError(
                            f"{source}: edge from {node.key!r} to unknown node {edge.key!r}"
                        )
        except (KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(
                f"{source}: not a graph.json file (missing or bad field {exc})"
            ) from exc
        return graph

    @classmethod
    def load(cls, path: Path) -> DependencyGraph:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cannot read graph {path}: {exc}") from exc
        return cls.from_json(data, source=str(path))

    def build_cycle(self) -> list[str]:
        """Keys of nodes whose builds need each other, first repeated last (``[]``: none).

        Builds need their :meth:`build_requirements`; a graph with such a cycle has no
        build order."""
        import networkx as nx  # imported when asked: 0.3 s the commands need not pay

        needs: nx.DiGraph[str] = nx.DiGraph()
        for key in self.nodes:
            if key:
                needs.add_node(key)
                needs.add_edges_from((key, k) for k in self.build_requirements(key))
        try:
            arcs = nx.find_cycle(needs)
        except nx.NetworkXNoCycle:
            return []
        return [arc[0] for arc in arcs] + [arcs[-1][1]]

    def check_buildable(self, source: str) -> None:
        """BuildCycleError naming a build cycle of the graph read from ``source``."""
        cycle = self.build_cycle()
        if cycle:
            raise BuildCycleError(
                f"{source}: packages need each other's wheels to build: {' -> '.join(cycle)}; "
                "no build order exists (fix the graph, or pre-build one of them)",
                step="configuration",
            )

    def build_order_keys(self) -> list[str]:
        """The node keys of :meth:`build_order`, each after everything its build needs."""
        return [entry.key for entry in self.build_order()]

    def build_order(self) -> list[BuildOrderEntry]:
        """fromager's build-order.json: each node after everything its build needs
        (:func:`~fromager_dagster.core.graph.build_order.build_order`)."""
        from fromager_dagster.core.graph.build_order import build_order

        return build_order(self)

    def constraints(self) -> list[str]:
        """``name==version`` for packages reachable through toplevel and install edges.

        Where a package has several versions, the newest that every install edge admits.
        """
        reachable = self.install_closure(self.children(ROOT))
        by_name: dict[str, list[str]] = {}
        for key in reachable:
            if key == ROOT:
                continue
            by_name.setdefault(self.nodes[key].canonicalized_name, []).append(key)
        lines = []
        for name, keys in sorted(by_name.items()):
            if len(keys) == 1:
                lines.append(keys[0])
                continue
            reqs = [
                Requirement(e.req)
                for parent in reachable
                for e in self.nodes[parent].edges
                if e.req_type in ("toplevel", "install")
                and self.nodes[e.key].canonicalized_name == name
            ]
            versions = sorted((Version(self.nodes[k].version) for k in keys), reverse=True)
            chosen = next(
                (
                    v
                    for v in versions
                    if all(r.specifier.contains(v, prereleases=True) for r in reqs)
                ),
                None,
            )
            if chosen is None:
                raise ResolutionError(
                    f"no single version of {name} satisfies every install requirement "
                    f"({', '.join(sorted({str(r) for r in reqs}))}); found "
                    f"{', '.join(str(v) for v in versions)}",
                    package=name,
                )
            lines.append(package_key(name, chosen))
        return lines

    def write(self, work_dir: Path, *, constraints: bool = True) -> dict[str, Path]:
        """Write graph.json, build-order.json and (unless skipped) constraints.txt atomically;
        return their paths."""
        work_dir.mkdir(parents=True, exist_ok=True)
        paths = {
            "graph": work_dir / "graph.json",
            "build_order": work_dir / "build-order.json",
        }
        texts = {
            "graph": json.dumps(self.to_json(), indent=2),
            "build_order": json.dumps([e.to_json() for e in self.build_order()], indent=2),
        }
        if constraints:
            paths["constraints"] = work_dir / "constraints.txt"
            texts["constraints"] = "".join(f"{line}\n" for line in self.constraints())
        write_atomic_set({paths[key]: text for key, text in texts.items()})
        return paths


def _check_nodes(graph: DependencyGraph, source: str) -> None:
    """Names and versions read from a file become paths: each must be a normalized package
    name and a valid version. One ConfigError lists every bad node."""
    problems = []
    for key, node in graph.nodes.items():
        if not key:
            continue
        name, version = node.canonicalized_name, node.version
        if not isinstance(name, str) or not _valid_name(name):
            problems.append(f"node {key!r}: canonicalized_name {name!r} is not a normalized name")
            continue
        try:
            Version(version)
        except (InvalidVersion, TypeError):
            problems.append(f"node {key!r}: version {version!r} is not a valid version")
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems))


def _valid_name(name: str) -> bool:
    try:
        return canonicalize_name(name, validate=True) == name
    except InvalidName:
        return False


def write_atomic_set(files: dict[Path, str]) -> None:
    """Write every file under a temporary name first, then rename them all into place: a
    failure (a full disk, a kill) while writing leaves the earlier set whole, none of it new."""
    temps = {path: _temp_name(path) for path in files}
    try:
        for path, text in files.items():
            temps[path].write_text(text, encoding="utf-8")
        for path, tmp in temps.items():
            os.replace(tmp, path)
    finally:
        for tmp in temps.values():
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)


def _temp_name(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary name beside ``path`` and rename it into place."""
    tmp = _temp_name(path)
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk leaves no half-written file behind
        raise
