"""Fixture trees for the Dagster layer: tiny sdists served on 127.0.0.1, discovered once."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from fromager_dagster.core.bootstrap import BootstrapOptions, bootstrap
from fromager_dagster.core.index import IndexClient
from fromager_dagster.core.index_server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.requirements import Constraints, toplevel_requirements
from fromager_dagster.defs.collections import Collection
from tests.fixtures.packages import FixturePackage, make_index

# fx-app builds with fx-lib (whose install closure brings fx-dep); fx-lib builds with fx-tool.
CHAIN = [
    FixturePackage("fx-tool"),
    FixturePackage("fx-dep"),
    FixturePackage("fx-lib", build_system_requires=("fx-tool",), install_requires=("fx-dep",)),
    FixturePackage("fx-app", build_system_requires=("fx-lib",)),
]


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder of fixture sdists and the URL of an index serving it."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    with LocalIndexServer([folder]) as server:
        yield folder, server.url


def discover(
    packages: list[FixturePackage],
    folder: Path,
    url: str,
    output: Path,
    *,
    name: str = "fx",
    requirements: tuple[str, ...] = ("fx-app",),
    **fields: object,
) -> Collection:
    """Write the sdists, run discovery (sdist-only bootstrap), return the collection."""
    make_index(packages, folder)
    layout = OutputLayout(output)
    bootstrap(
        toplevel_requirements(list(requirements), []),
        index=IndexClient(url),
        constraints=Constraints.from_lines([]),
        layout=layout,
        options=BootstrapOptions(jobs=2, sdist_only=True, isolate=False),
    )
    collection = Collection(name=name, requirements=requirements, output_dir=output, index_url=url)
    return replace(collection, **fields)  # type: ignore[arg-type]
