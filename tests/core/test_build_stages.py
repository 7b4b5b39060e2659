"""Build requirements that the hooks add: one the build system's closure satisfies keeps that
version (as fromager does); one it does not is installed after the build system's, replacing
the version it brought, in discovery and in the hermetic build alike."""

from __future__ import annotations

from pathlib import Path

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.build import builder
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.resolve.requirements import Constraints, toplevel_requirements
from fromager_dagster.core.settings.overrides import Settings
from tests.fixtures.packages import FixturePackage, make_index

PACKAGES = [
    FixturePackage("st-scm", version="1.0"),
    FixturePackage("st-scm", version="2.0"),
    # as python-dateutil 2.9.0.post0: `setuptools_scm<8` in [build-system], and the backend's
    # get_requires_for_build_wheel asks for plain `setuptools_scm` again
    FixturePackage("st-app", build_system_requires=("st-scm<2",), backend_requires=("st-scm",)),
    # a backend that really needs the newer version
    FixturePackage("st-new", build_system_requires=("st-scm<2",), backend_requires=("st-scm>=2",)),
]


def _discover(tmp_path: Path, requirement: str) -> tuple[DependencyGraph, OutputLayout]:
    folder = make_index(PACKAGES, tmp_path / "up")
    layout = OutputLayout(tmp_path / "out")
    with LocalIndexServer([folder]) as server:
        graph = bootstrap(
            toplevel_requirements([requirement], []),
            index=IndexClient(server.url),
            constraints=Constraints.from_lines([]),
            layout=layout,
            options=BootstrapOptions(jobs=2, sdist_only=True, isolate=False),
            settings=Settings(),
        ).graph
    return graph, layout


def _edges(graph: DependencyGraph, key: str) -> list[tuple[str, str, str]]:
    return [(e.req_type, e.req, e.key) for e in graph.nodes[key].edges]


def test_a_hook_requirement_the_build_system_satisfies_keeps_its_version(
    tmp_path: Path,
) -> None:
    graph, layout = _discover(tmp_path, "st-app")
    assert _edges(graph, "st-app==1.0") == [
        ("build-system", "st-scm<2", "st-scm==1.0"),
        ("build-backend", "st-scm", "st-scm==1.0"),
    ]
    assert "st-scm==2.0" not in graph.nodes
    assert graph.build_stages("st-app==1.0") == [["st-scm==1.0"]]
    built = builder.build_node(
        graph,
        "st-app==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert built.path.name == "st_app-1.0-0-py3-none-any.whl"


def test_build_installs_the_build_system_stage_then_the_hooks_stage(tmp_path: Path) -> None:
    graph, layout = _discover(tmp_path, "st-new")
    assert graph.build_stages("st-new==1.0") == [["st-scm==1.0"], ["st-scm==2.0"]]
    built = builder.build_node(
        graph,
        "st-new==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert built.path.name == "st_new-1.0-0-py3-none-any.whl"
    log = built.log_path.read_text(encoding="utf-8")
    hermetic = log[log.index("# ===== build of st-new==1.0") :]  # after discovery's stage
    assert hermetic.index("st-scm==1.0") < hermetic.index("st-scm==2.0")
