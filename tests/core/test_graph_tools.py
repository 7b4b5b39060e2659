"""Graph tools on fromager's golden graphs and on small graphs built here."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.graph import files, queries, reports
from fromager_dagster.core.graph.build_order import BuildOrderEntry
from fromager_dagster.core.graph.model import ROOT, DependencyGraph
from fromager_dagster.core.package_id import PackageId

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "golden"
STEVEDORE = GOLDEN / "stevedore" / "graph.json"
CLICK = GOLDEN / "click-constrained" / "graph.json"


def _duplicated() -> DependencyGraph:
    """app needs lib>=1 and tool; tool needs lib<2 to build and lib==1.0 to run; lib 2.0 also
    comes from app. pre-built ``wheelonly`` is installed by app."""
    graph = DependencyGraph()
    graph.add_node(PackageId.of("app", "1.0"))
    graph.add_node(PackageId.of("tool", "1.0"))
    graph.add_node(PackageId.of("lib", "1.0"))
    graph.add_node(PackageId.of("lib", "2.0"))
    graph.add_node(PackageId.of("wheelonly", "3.0"), pre_built=True)
    graph.add_edge(ROOT, "app==1.0", "toplevel", "app")
    graph.add_edge("app==1.0", "tool==1.0", "build-system", "tool")
    graph.add_edge("app==1.0", "lib==2.0", "install", "lib>=1")
    graph.add_edge("app==1.0", "wheelonly==3.0", "install", "wheelonly")
    graph.add_edge("tool==1.0", "lib==1.0", "build-backend", "lib<2")
    graph.add_edge("tool==1.0", "lib==1.0", "install", "lib==1.0")
    return graph


def _cycle() -> DependencyGraph:
    """app installs a and b; both install lib; lib installs a back (a cycle)."""
    graph = DependencyGraph()
    for name in ("app", "a", "b", "lib"):
        graph.add_node(PackageId.of(name, "1"))
    graph.add_edge(ROOT, "app==1", "toplevel", "app")
    graph.add_edge("app==1", "a==1", "install", "a")
    graph.add_edge("app==1", "b==1", "install", "b")
    graph.add_edge("a==1", "lib==1", "install", "lib")
    graph.add_edge("b==1", "lib==1", "install", "lib>=1")
    graph.add_edge("lib==1", "a==1", "install", "a!=2")
    return graph


# --- loading ---------------------------------------------------------------------------------


def test_load_graph_reads_golden_graphs() -> None:
    assert set(files.load_graph(STEVEDORE).nodes) == {
        ROOT,
        "stevedore==5.10.0",
        "pbr==7.1.3",
        "setuptools==84.2.1",
    }
    assert files.load_graph(CLICK).nodes["click==8.1.7"].constraint == "click==8.1.7"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read graph {path}: No such file or directory"),
        ("not json", "{path}: not a graph.json file (not JSON: Expecting value"),
        ("[1, 2]", '{path}: not a graph.json file (no root node "")'),
        ('{"a==1": {}}', '{path}: not a graph.json file (no root node "")'),
        (
            (
                '{"": {"canonicalized_name": "", "version": "0", "edges": '
                '[{"key": "x==1", "req_type": "install", "req": "x"}]}}'
            ),
            "{path}: edge from '' to unknown node 'x==1'",
        ),
        (
            (
                '{"": {"canonicalized_name": "", "version": "0", "edges": '
                '[{"key": "", "req_type": "runtime", "req": "x"}]}}'
            ),
            "{path}: edge from '' to '' has unknown req_type 'runtime'",
        ),
    ],
)
def test_load_graph_errors_name_the_file(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "graph.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError) as info:
        files.load_graph(path)
    assert str(info.value).startswith(message.format(path=path))
    assert "\n" not in str(info.value)


def test_find_graph_file_looks_in_folders(tmp_path: Path) -> None:
    (tmp_path / "work-dir").mkdir()
    (tmp_path / "work-dir" / "graph.json").write_text("{}")
    assert files.find_graph_file(tmp_path) == tmp_path / "work-dir" / "graph.json"
    assert files.find_graph_file(tmp_path / "work-dir") == tmp_path / "work-dir" / "graph.json"
    assert files.find_graph_file(STEVEDORE) == STEVEDORE
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match=f"{empty}: no graph.json"):
        files.find_graph_file(empty)


def test_select_nodes_canonicalizes_and_filters_versions() -> None:
    graph = _duplicated()
    assert [n.key for n in queries.select_nodes(graph, "LIB")] == ["lib==1.0", "lib==2.0"]
    assert [n.key for n in queries.select_nodes(graph, "lib", ["2"])] == ["lib==2.0"]
    with pytest.raises(ConfigError, match=re.escape("g.json: no package nope in this graph")):
        queries.select_nodes(graph, "nope", source="g.json")
    with pytest.raises(ConfigError, match=r"lib has no version 3.0 .*\(it has 1.0, 2.0\)"):
        queries.select_nodes(graph, "lib", ["3.0"])
    with pytest.raises(ConfigError, match="lib: 'x y' is not a valid version"):
        queries.select_nodes(graph, "lib", ["x y"])


# --- why -------------------------------------------------------------------------------------


def test_why_pbr_in_stevedore_names_each_edge_and_the_toplevel_chain() -> None:
    report = queries.why(files.load_graph(STEVEDORE), "pbr==7.1.3")
    toplevel = queries.WhyLink(ROOT, None, (("toplevel", "stevedore"),))
    assert report == queries.WhyReport(
        "pbr==7.1.3",
        None,
        (
            queries.WhyLink(
                "stevedore==5.10.0",
                None,
                (
                    ("build-system", "pbr>=6.1.1"),
                    ("build-backend", "pbr>=2.0.0"),
                    ("build-sdist", "pbr>=2.0.0"),
                ),
                (toplevel,),
            ),
        ),
    )


def test_why_depth_and_req_type_filter() -> None:
    graph = files.load_graph(STEVEDORE)
    shallow = queries.why(graph, "setuptools==84.2.1", depth=1)
    assert [(link.parent, link.above) for link in shallow.links] == [("pbr==7.1.3", ())]
    deep = queries.why(graph, "setuptools==84.2.1")
    assert deep.links[0].above[0].parent == "stevedore==5.10.0"
    assert deep.links[0].above[0].above[0].parent == ROOT
    install = queries.why(graph, "setuptools==84.2.1", req_types=["install"])
    assert install.links[0].edges == (("install", "setuptools"),)
    # the filter applies to the asked node only: the chain above still reaches the root
    assert install.links[0].above[0].above[0].edges == (("toplevel", "stevedore"),)
    assert queries.why(graph, "pbr==7.1.3", req_types=["install"]).links == ()
    # toplevel edges are always shown
    assert queries.why(graph, "stevedore==5.10.0", req_types=["install"]).links[0].parent == ROOT


def test_why_marks_cycles_and_parents_already_shown() -> None:
    report = queries.why(_cycle(), "lib==1")
    a, b = report.links
    assert (a.parent, b.parent) == ("a==1", "b==1")
    assert [(link.parent, link.note) for link in a.above] == [("app==1", ""), ("lib==1", "cycle")]
    assert a.above[0].above[0].parent == ROOT
    assert [(link.parent, link.note, link.above) for link in b.above] == [("app==1", "shown", ())]


def test_why_stays_small_on_a_graph_with_exponentially_many_chains() -> None:
    graph = DependencyGraph()
    graph.add_node(PackageId.of("n", "0"))
    graph.add_edge(ROOT, "n==0", "toplevel", "n")
    for level in range(1, 41):  # 2**40 distinct chains from the root to the last node
        graph.add_node(PackageId.of("n", str(level)))
        for side in ("l", "r"):
            graph.add_node(PackageId.of(f"{side}{level}", "1"))
            graph.add_edge(f"n=={level - 1}", f"{side}{level}==1", "install", side)
            graph.add_edge(f"{side}{level}==1", f"n=={level}", "install", "n")
    start = time.monotonic()
    report = queries.why(graph, "n==40")

    def count(links: tuple[queries.WhyLink, ...]) -> int:
        return sum(1 + count(link.above) for link in links)

    assert count(report.links) <= 3 * len(graph.nodes)
    assert time.monotonic() - start < 5


# --- duplicates ------------------------------------------------------------------------------


def test_duplicates_show_requirers_and_the_usable_version() -> None:
    [dup] = queries.duplicates(_duplicated())
    assert dup.name == "lib"
    assert [v.version for v in dup.versions] == ["1.0", "2.0"]
    assert dup.versions[0].requirers == (
        queries.Requirer("tool==1.0", "build-backend", "lib<2", ("1.0",)),
        queries.Requirer("tool==1.0", "install", "lib==1.0", ("1.0",)),
    )
    assert dup.versions[1].requirers == (
        queries.Requirer("app==1.0", "install", "lib>=1", ("1.0", "2.0")),
    )
    assert dup.usable == "1.0"


def test_duplicates_with_no_common_version() -> None:
    graph = _duplicated()
    graph.add_edge("app==1.0", "lib==2.0", "install", "lib>=2")
    [dup] = queries.duplicates(graph)
    assert dup.usable is None
    assert queries.duplicates(files.load_graph(STEVEDORE)) == []


# --- subset ----------------------------------------------------------------------------------


def test_subset_of_pbr_is_a_loadable_graph_of_what_pbr_needs() -> None:
    graph = files.load_graph(STEVEDORE)
    sub = reports.subset(graph, ["pbr==7.1.3"])
    data = sub.to_json()
    assert list(data) == [ROOT, "pbr==7.1.3", "setuptools==84.2.1"]
    assert data[ROOT]["edges"] == [
        {"key": "pbr==7.1.3", "req_type": "toplevel", "req": "pbr==7.1.3"}
    ]
    assert data["pbr==7.1.3"] == graph.nodes["pbr==7.1.3"].to_json()
    again = DependencyGraph.from_json(json.loads(json.dumps(data)))
    assert [e.dist for e in again.build_order()] == ["setuptools", "pbr"]
    assert again.constraints() == ["pbr==7.1.3", "setuptools==84.2.1"]


def test_subset_of_a_toplevel_package_keeps_its_requirement() -> None:
    graph = files.load_graph(STEVEDORE)
    assert reports.subset(graph, ["stevedore==5.10.0"]).to_json() == graph.to_json()


def test_subset_with_dependents_keeps_the_chains_from_the_root() -> None:
    graph = _duplicated()
    plain = reports.subset(graph, ["tool==1.0"]).to_json()
    assert list(plain) == [ROOT, "tool==1.0", "lib==1.0"]
    wide = reports.subset(graph, ["tool==1.0"], with_dependents=True).to_json()
    assert list(wide) == [ROOT, "app==1.0", "tool==1.0", "lib==1.0"]
    assert wide["app==1.0"]["edges"] == [
        {"key": "tool==1.0", "req_type": "build-system", "req": "tool"}
    ]
    assert wide[ROOT] == graph.to_json()[ROOT]


# --- DOT -------------------------------------------------------------------------------------


def test_to_dot_of_stevedore() -> None:
    dot = reports.to_dot(files.load_graph(STEVEDORE))
    lines = dot.splitlines()
    assert lines[0] == "digraph dependencies {" and lines[-1] == "}"
    assert '  "root" [label="*", shape=circle];' in lines
    assert '  "pbr==7.1.3";' in lines
    edges = [line for line in lines if "->" in line]
    assert edges == [
        '  "root" -> "stevedore==5.10.0" [style=bold, tooltip="toplevel: stevedore"];',
        (
            '  "stevedore==5.10.0" -> "pbr==7.1.3" [style=dashed, color="blue", '
            'tooltip="build-system: pbr>=6.1.1"];'
        ),
        (
            '  "stevedore==5.10.0" -> "pbr==7.1.3" [style=dashed, color="darkgreen", '
            'tooltip="build-backend: pbr>=2.0.0"];'
        ),
        (
            '  "stevedore==5.10.0" -> "pbr==7.1.3" [style=dotted, color="gray40", '
            'tooltip="build-sdist: pbr>=2.0.0"];'
        ),
        (
            '  "pbr==7.1.3" -> "setuptools==84.2.1" [style=dashed, color="blue", '
            'tooltip="build-system: setuptools>=64.0.0; python_version >= \\"3.7\\""];'
        ),
        '  "pbr==7.1.3" -> "setuptools==84.2.1" [style=solid, tooltip="install: setuptools"];',
    ]
    assert dot.count("{") == dot.count("}")


def test_to_dot_install_only_and_prebuilt() -> None:
    graph = _duplicated()
    dot = reports.to_dot(graph, install_only=True)
    assert "tool==1.0" not in dot and "lib==1.0" not in dot
    assert '"app==1.0" -> "lib==2.0" [style=solid, tooltip="install: lib>=1"];' in dot
    assert (
        '"wheelonly==3.0" [label="wheelonly==3.0\\n(prebuilt)", shape=parallelogram, '
        'style=filled, fillcolor="lightgrey"];'
    ) in dot
    assert "build-system" not in dot
    full = reports.to_dot(graph)
    assert '"app==1.0" -> "tool==1.0" [style=dashed, color="blue"' in full


# --- statistics ------------------------------------------------------------------------------


def test_graph_stats_of_stevedore_with_its_build_order() -> None:
    order = files.load_build_order(GOLDEN / "stevedore" / "build-order.json")
    stats = reports.graph_stats(files.load_graph(STEVEDORE), build_order=order)
    assert stats.to_json() == {
        "nodes": 3,
        "packages": 3,
        "edges": {
            "toplevel": 1,
            "install": 1,
            "build-system": 2,
            "build-backend": 1,
            "build-sdist": 1,
        },
        "prebuilt": 0,
        "multiple_versions": {},
        "longest_build_chain": {
            "length": 3,
            "chain": ["setuptools==84.2.1", "pbr==7.1.3", "stevedore==5.10.0"],
        },
        "build_order": {
            "path": "build-order.json",
            "entries": 3,
            "prebuilt": 0,
            "missing_from_build_order": [],
            "not_in_graph": [],
        },
    }


def test_graph_stats_counts_prebuilt_duplicates_and_build_order_mismatch() -> None:
    graph = _duplicated()
    order = [e for e in graph.build_order() if e.dist != "tool"]
    order.append(BuildOrderEntry(dist="Extra_Pkg", version="9"))
    stats = reports.graph_stats(graph, build_order=order)
    assert (stats.nodes, stats.packages, stats.prebuilt) == (5, 4, 1)
    assert stats.multiple_versions == {"lib": ["1.0", "2.0"]}
    # app needs tool built, tool needs lib 1.0 built
    assert stats.longest_build_chain == ["lib==1.0", "tool==1.0", "app==1.0"]
    assert stats.build_order is not None
    assert stats.build_order.missing == ("tool==1.0",)
    assert stats.build_order.extra == ("extra-pkg==9",)
    assert stats.build_order.prebuilt == 1


def test_longest_build_chain_ignores_prebuilt_and_survives_build_cycles() -> None:
    graph = DependencyGraph()
    for name in ("a", "b", "c"):
        graph.add_node(PackageId.of(name, "1"))
    graph.add_node(PackageId.of("p", "1"), pre_built=True)
    graph.add_edge(ROOT, "a==1", "toplevel", "a")
    graph.add_edge("a==1", "b==1", "build-system", "b")
    graph.add_edge("b==1", "c==1", "build-system", "c")
    graph.add_edge("c==1", "a==1", "build-backend", "a")  # loops back
    graph.add_edge("c==1", "p==1", "build-system", "p")
    chain = reports.longest_build_chain(graph)
    assert len(chain) == 3 and set(chain) == {"a==1", "b==1", "c==1"}
    assert "p==1" not in chain


def test_load_build_order_errors(tmp_path: Path) -> None:
    path = tmp_path / "build-order.json"
    path.write_text('{"dist": "x"}')
    with pytest.raises(ConfigError, match=re.escape("not a build-order.json file")):
        files.load_build_order(path)
    with pytest.raises(ConfigError, match="cannot read build order"):
        files.load_build_order(tmp_path / "missing.json")
