"""A wheel's build adopts the tree and environment an sdist-only discovery left, only while
every input still holds (core/build/adoption.py)."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.build import builder
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.resolve.requirements import Constraints, toplevel_requirements
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from tests.fixtures.packages import FixturePackage, make_index

ADOPTED = "# adopted the source tree and build environment"
PACKAGES = [
    FixturePackage("pb-tool", mtime=0),
    FixturePackage("pb-app", build_system_requires=("pb-tool",), mtime=0),
]


def _discover(upstream: Path, out: Path) -> tuple[DependencyGraph, OutputLayout]:
    layout = OutputLayout(out)
    with LocalIndexServer([upstream]) as server:
        graph = bootstrap(
            toplevel_requirements(["pb-app"], []),
            index=IndexClient(server.url),
            constraints=Constraints.from_lines([]),
            layout=layout,
            options=BootstrapOptions(jobs=1, sdist_only=True, isolate=False),
            settings=Settings(),
        ).graph
    return graph, layout


def _adopted(layout: OutputLayout) -> bool:
    return ADOPTED in layout.log_path("pb-app", "1.0").read_text(encoding="utf-8")


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_build_adopts_what_discovery_left_once_and_makes_the_same_wheel(
    tmp_path: Path,
) -> None:
    upstream = make_index(PACKAGES, tmp_path / "up")
    graph, layout = _discover(upstream, tmp_path / "a")
    record = layout.package_dir("pb-app", "1.0") / "discovered-build.json"
    assert record.is_file()  # an install-only package: its tree and environment are kept
    assert not (layout.package_dir("pb-tool", "1.0") / "discovered-build.json").exists()

    adopted = builder.build_node(
        graph,
        "pb-app==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert _adopted(layout)
    assert not record.exists()  # claimed: a second build starts afresh

    # the same wheel as a build that unpacked and installed everything itself
    fresh_graph, fresh = _discover(upstream, tmp_path / "b")
    shutil.rmtree(fresh.package_dir("pb-app", "1.0"))
    built = builder.build_node(
        fresh_graph,
        "pb-app==1.0",
        layout=fresh,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert not _adopted(fresh)
    assert adopted.path.name == built.path.name
    assert _sha(adopted.path) == _sha(built.path)
    assert adopted.sha256 == built.sha256


def test_a_build_requirement_with_other_bytes_means_a_fresh_environment(tmp_path: Path) -> None:
    graph, layout = _discover(make_index(PACKAGES, tmp_path / "up"), tmp_path / "out")
    tool = next(layout.wheels_downloads.glob("pb_tool-1.0-*.whl"))
    original = tool.read_bytes()
    tool.write_bytes(original + b"\0")  # rebuilt since, other bytes, same name
    built = builder.build_node(
        graph,
        "pb-app==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert not _adopted(layout)
    assert built.path.is_file()  # built in an environment of its own


def test_other_settings_mean_a_fresh_tree(tmp_path: Path) -> None:
    graph, layout = _discover(make_index(PACKAGES, tmp_path / "up"), tmp_path / "out")
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    (settings_dir / "pb_app.yaml").write_text("env:\n  PB_FLAG: '1'\n")
    other = load_settings(settings_dir=settings_dir)
    builder.build_node(
        graph, "pb-app==1.0", layout=layout, isolate=False, settings=other, plugins=Plugins.load()
    )
    assert not _adopted(layout)


def test_a_removed_environment_is_not_adopted(tmp_path: Path) -> None:
    graph, layout = _discover(make_index(PACKAGES, tmp_path / "up"), tmp_path / "out")
    shutil.rmtree(layout.package_dir("pb-app", "1.0") / "build-env")
    builder.build_node(
        graph,
        "pb-app==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert not _adopted(layout)
