"""graph.json round trip, build order and constraints against fromager's golden outputs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from fromager_dagster.core.errors import ConfigError, ResolutionError
from fromager_dagster.core.graph.build_order import BuildOrderEntry
from fromager_dagster.core.graph.model import ROOT, DependencyGraph
from fromager_dagster.core.package_id import PackageId

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "golden"


@pytest.mark.parametrize("name", ["stevedore", "click-constrained"])
def test_golden_round_trip_order_and_constraints(name: str, tmp_path: Path) -> None:
    folder = GOLDEN / name
    graph = DependencyGraph.load(folder / "graph.json")
    paths = graph.write(tmp_path)
    assert paths["graph"].read_text() == (folder / "graph.json").read_text()
    assert json.loads(paths["build_order"].read_text()) == json.loads(
        (folder / "build-order.json").read_text()
    )
    assert paths["constraints"].read_text() == (folder / "constraints.txt").read_text()


def test_build_requirements_are_build_children_and_their_install_closure() -> None:
    graph = DependencyGraph.load(GOLDEN / "stevedore" / "graph.json")
    assert graph.build_requirements("stevedore==5.10.0") == ["pbr==7.1.3", "setuptools==84.2.1"]
    assert graph.build_requirements("setuptools==84.2.1") == []


def _graph_with_two_versions(install_req: str) -> DependencyGraph:
    graph = DependencyGraph()
    for version in ("1.0", "2.0"):
        graph.add_node(PackageId.of("lib", version))
    graph.add_node(PackageId.of("app", "1.0"))
    graph.add_node(PackageId.of("tool", "1.0"))
    graph.add_edge(ROOT, "app==1.0", "toplevel", "app")
    graph.add_edge(ROOT, "tool==1.0", "toplevel", "tool")
    graph.add_edge("app==1.0", "lib==1.0", "install", install_req)
    graph.add_edge("tool==1.0", "lib==2.0", "install", "lib")
    return graph


def test_constraints_pick_newest_version_every_install_edge_admits() -> None:
    assert _graph_with_two_versions("lib<=2").constraints() == [
        "app==1.0",
        "lib==2.0",
        "tool==1.0",
    ]
    assert _graph_with_two_versions("lib<2").constraints() == [
        "app==1.0",
        "lib==1.0",
        "tool==1.0",
    ]
    with pytest.raises(ResolutionError, match="lib==3"):
        _graph_with_two_versions("lib==3").constraints()


def test_build_order_puts_build_dependencies_first_and_install_after() -> None:
    graph = DependencyGraph()
    for name in ("app", "tool", "lib"):
        graph.add_node(PackageId.of(name, "1"))
    graph.add_edge(ROOT, "app==1", "toplevel", "app")
    graph.add_edge("app==1", "tool==1", "build-system", "tool")
    graph.add_edge("app==1", "lib==1", "install", "lib")
    graph.add_edge("lib==1", "app==1", "install", "app")
    assert [e.dist for e in graph.build_order()] == ["tool", "app", "lib"]


def test_bad_graph_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "graph.json"
    path.write_text('{"": {"edges": []}}')
    with pytest.raises(ConfigError, match=re.escape("graph.json")):
        DependencyGraph.load(path)
    path.write_text("not json")
    with pytest.raises(ConfigError, match="cannot read graph"):
        DependencyGraph.load(path)


def test_build_order_entries_are_typed_and_written_as_fromager_writes_them(
    tmp_path: Path,
) -> None:
    graph = DependencyGraph()
    graph.add_node(PackageId.of("app", "1"), download_url="https://u:p@example.test/app-1.tar.gz")
    graph.add_node(PackageId.of("tool", "2"), pre_built=True, constraint="tool<3")
    graph.add_edge(ROOT, "app==1", "toplevel", "app")
    graph.add_edge("app==1", "tool==2", "build-system", "tool<3")
    order = graph.build_order()
    assert [(e.key, e.req, e.prebuilt, e.source_url_type) for e in order] == [
        ("tool==2", "tool<3", True, "prebuilt"),
        ("app==1", "app", False, "sdist"),
    ]
    written = json.loads(graph.write(tmp_path)["build_order"].read_text(encoding="utf-8"))
    assert written[0] == {
        "req": "tool<3",
        "constraint": "tool<3",
        "dist": "tool",
        "version": "2",
        "prebuilt": True,
        "source_url": "",
        "source_url_type": "prebuilt",
    }
    assert written[1]["source_url"] == "https://example.test/app-1.tar.gz"
    assert [BuildOrderEntry.from_json(e) for e in written] == order
