"""A hermetic build takes the sdist that discovery re-packed from the same inputs."""

from __future__ import annotations

from pathlib import Path

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.build import builder
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.resolve.requirements import Constraints, toplevel_requirements
from fromager_dagster.core.settings.overrides import Settings
from tests.fixtures.packages import FixturePackage, make_index


def test_build_reuses_the_repacked_sdist_of_the_same_inputs(tmp_path: Path) -> None:
    # members dated before 1980: the archive gives no epoch, so the one a build is given is
    # the one used (core/sources/epoch.py)
    folder = make_index([FixturePackage("rp-app", mtime=0)], tmp_path / "up")
    layout = OutputLayout(tmp_path / "out")
    with LocalIndexServer([folder]) as server:
        graph = bootstrap(
            toplevel_requirements(["rp-app"], []),
            index=IndexClient(server.url),
            constraints=Constraints.from_lines([]),
            layout=layout,
            options=BootstrapOptions(jobs=1, sdist_only=True, isolate=False),
            settings=Settings(),
        ).graph
    sdist = layout.repacked_sdist("rp-app", "1.0")
    written = sdist.stat().st_mtime_ns
    builder.build_node(
        graph,
        "rp-app==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert sdist.stat().st_mtime_ns == written  # taken as it was

    # another SOURCE_DATE_EPOCH is another input: re-packed
    builder.build_node(
        graph,
        "rp-app==1.0",
        layout=layout,
        isolate=False,
        source_date_epoch=1_000_000,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert sdist.stat().st_mtime_ns != written

    # a tampered sdist is not taken, even with every input the same
    sdist.write_bytes(b"not the sdist")
    builder.build_node(
        graph,
        "rp-app==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        source_date_epoch=1_000_000,
        plugins=Plugins.load(),
    )
    assert sdist.read_bytes() != b"not the sdist"
