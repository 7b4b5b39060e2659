"""A hermetic build installs its build requirements in the order discovery did: the build
system's first, then what the hooks added, which may replace a version the first brought."""

from __future__ import annotations

from pathlib import Path

from fromager_dagster.core import builder
from fromager_dagster.core.bootstrap import BootstrapOptions, bootstrap
from fromager_dagster.core.index import IndexClient
from fromager_dagster.core.index_server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.requirements import Constraints, toplevel_requirements
from tests.fixtures.packages import FixturePackage, make_index

# as python-dateutil 2.9.0.post0: `setuptools_scm<8` in [build-system], and the backend's
# get_requires_for_build_wheel asks for `setuptools_scm` again, which resolves to the newest
PACKAGES = [
    FixturePackage("st-scm", version="1.0"),
    FixturePackage("st-scm", version="2.0"),
    FixturePackage("st-app", build_system_requires=("st-scm<2",), backend_requires=("st-scm",)),
]


def test_build_installs_the_build_system_stage_then_the_hooks_stage(tmp_path: Path) -> None:
    folder = make_index(PACKAGES, tmp_path / "up")
    layout = OutputLayout(tmp_path / "out")
    with LocalIndexServer([folder]) as server:
        graph = bootstrap(
            toplevel_requirements(["st-app"], []),
            index=IndexClient(server.url),
            constraints=Constraints.from_lines([]),
            layout=layout,
            options=BootstrapOptions(jobs=2, sdist_only=True, isolate=False),
        ).graph
    assert graph.build_stages("st-app==1.0") == [["st-scm==1.0"], ["st-scm==2.0"]]
    built = builder.build_node(graph, "st-app==1.0", layout=layout, isolate=False)
    assert built.path.name == "st_app-1.0-0-py3-none-any.whl"
    log = built.log_path.read_text(encoding="utf-8")
    assert log.index("st-scm==1.0") < log.index("st-scm==2.0")
