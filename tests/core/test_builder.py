"""Building one package: hermetically from the graph with its settings, pre-built, from an index."""

from __future__ import annotations

import json
import re
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.build import builder
from fromager_dagster.core.build import steps as build_steps
from fromager_dagster.core.build.settings import BuildSettings
from fromager_dagster.core.errors import BuildError, ResolutionError, SourceError
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import PackageId
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.resolve.requirements import Constraints, toplevel_requirements
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.archives import sha256_file
from tests.fixtures.packages import FixturePackage, make_index, make_sdist, make_wheel

TOOL = FixturePackage("fx-tool")
ENV = FixturePackage("fx-env", build_system_requires=("fx-tool",), record_env=("FX_FLAG",))
PRE = FixturePackage("fx-pre")
PLAIN = FixturePackage("fxplain")  # its sdist unpacks into work-dir/fxplain-1.0, its package dir
PATCH = """\
--- /dev/null
+++ b/fx_env/patched.txt
@@ -0,0 +1 @@
+patched by the overrides folder
"""


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    folder = make_index([TOOL, ENV, PRE, PLAIN], tmp_path / "upstream")
    make_wheel(PRE, folder)
    with LocalIndexServer([folder]) as server:
        yield folder, server.url


def _discover(url: str, layout: OutputLayout, *requirements: str) -> DependencyGraph:
    result = bootstrap(
        toplevel_requirements(list(requirements), []),
        index=IndexClient(url),
        constraints=Constraints.from_lines([]),
        layout=layout,
        options=BootstrapOptions(jobs=2, sdist_only=True, isolate=False),
        settings=Settings(),
    )
    return result.graph


def _member(wheel: Path, name: str) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return zf.read(name).decode()


def test_build_node_applies_the_package_settings(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    layout = OutputLayout(tmp_path / "out")
    graph = _discover(upstream[1], layout, "fx-env")
    overrides = tmp_path / "overrides"
    (overrides / "settings").mkdir(parents=True)
    (overrides / "settings" / "fx_env.yaml").write_text(
        "env:\n  FX_FLAG: 'on-${__version__}'\n"
        "config_settings:\n  mode: fast\n"
        "changelog:\n  '1.0': ['rebuilt with a patch']\n"
    )
    (overrides / "patches" / "fx_env").mkdir(parents=True)
    (overrides / "patches" / "fx_env" / "0001-add-file.patch").write_text(PATCH)
    settings = load_settings(settings_dir=overrides / "settings", patches_dir=overrides / "patches")

    built = builder.build_node(
        graph,
        "fx-env==1.0",
        layout=layout,
        isolate=False,
        settings=settings,
        plugins=Plugins.load(),
    )

    assert built.path == layout.wheels_downloads / "fx_env-1.0-1-py3-none-any.whl"  # build tag 1
    seen = json.loads(_member(built.path, "fx_env/build-env.json"))
    assert seen == {"env": {"FX_FLAG": "on-1.0"}, "config_settings": {"mode": "fast"}}
    assert _member(built.path, "fx_env/patched.txt") == "patched by the overrides folder\n"
    assert "0001-add-file.patch" in built.log_path.read_text()
    with tarfile.open(layout.repacked_sdist("fx-env", "1.0")) as tar:
        assert "fx_env-1.0/fx_env/patched.txt" in tar.getnames()
    # the hermetic build ran no discovery hook (discovery's stage comes first in the same log)
    build_stage = built.log_path.read_text().split("# ===== build of fx-env==1.0 from")[1]
    assert "get_requires_for_build" not in build_stage

    # without settings: defaults (no patch, build tag 0, no extra environment)
    plain = builder.build_node(
        graph,
        "fx-env==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert plain.path.name == "fx_env-1.0-0-py3-none-any.whl"
    assert json.loads(_member(plain.path, "fx_env/build-env.json"))["env"] == {"FX_FLAG": None}


def test_missing_build_requirement_is_named(upstream: tuple[Path, str], tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path / "out")
    graph = _discover(upstream[1], layout, "fx-env")
    for wheel in layout.wheels_downloads.glob("fx_tool-*.whl"):
        wheel.unlink()
    with pytest.raises(BuildError, match=r"fx-tool==1\.0 are missing") as info:
        builder.build_node(
            graph,
            "fx-env==1.0",
            layout=layout,
            isolate=False,
            settings=Settings(),
            plugins=Plugins.load(),
        )
    assert info.value.package == "fx-env" and info.value.step == "prepare build"


def test_pre_built_nodes_take_the_index_wheel(upstream: tuple[Path, str], tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path / "out")
    graph = DependencyGraph()
    graph.add_node(PackageId.of("fx-pre", "1.0"), pre_built=True)
    graph.add_node(PackageId.of("fx-tool", "1.0"))
    with pytest.raises(SourceError, match="no index was given"):
        builder.build_node(
            graph,
            "fx-pre==1.0",
            layout=layout,
            isolate=False,
            settings=Settings(),
            plugins=Plugins.load(),
        )

    index = IndexClient(upstream[1])
    first = builder.build_node(
        graph,
        "fx-pre==1.0",
        layout=layout,
        isolate=False,
        index=index,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert first.prebuilt and not first.reused
    assert first.path == layout.wheels_prebuilt / "fx_pre-1.0-py3-none-any.whl"
    assert first.path.read_bytes() == (upstream[0] / first.path.name).read_bytes()
    again = builder.build_node(
        graph,
        "fx-pre==1.0",
        layout=layout,
        isolate=False,
        index=index,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert again.prebuilt and again.reused and again.path == first.path

    # the settings can make a package pre-built too (variant cpu, the default)
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    (settings_dir / "fx_tool.yaml").write_text("variants:\n  cpu:\n    pre_built: true\n")
    settings = load_settings(settings_dir=settings_dir)
    make_wheel(TOOL, upstream[0])
    tool = builder.build_node(
        graph,
        "fx-tool==1.0",
        layout=layout,
        isolate=False,
        index=index,
        settings=settings,
        plugins=Plugins.load(),
    )
    assert tool.prebuilt and tool.path.parent == layout.wheels_prebuilt


def test_build_package_and_the_steps(upstream: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = upstream
    index = IndexClient(url)
    # fromager's build: build requirements discovered by the hooks, installed from the wheel
    # server (here the upstream index, which also holds fx-tool's wheel)
    make_wheel(TOOL, folder)
    layout = OutputLayout(tmp_path / "out")
    built = builder.build_package(
        "FX_Env",
        "1.0",
        index=index,
        layout=layout,
        isolate=False,
        wheel_server_url=url,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert built.path == layout.wheels_downloads / "fx_env-1.0-0-py3-none-any.whl"
    log = built.log_path.read_text()
    assert "fx-tool" in log and "get_requires_for_build_wheel" in log
    assert (layout.sdists_downloads / "fx_env-1.0.tar.gz").is_file()
    with pytest.raises(ResolutionError, match="fx-env"):
        builder.build_package(
            "fx-env",
            "9.9",
            index=index,
            layout=layout,
            isolate=False,
            settings=Settings(),
            plugins=Plugins.load(),
        )

    # the steps, each reading what the previous one left (build requirements: local repository)
    steps = OutputLayout(tmp_path / "steps").ensure()
    archive = build_steps.download_source(
        index, "fxplain", "1.0", steps, settings=Settings(), plugins=Plugins.load()
    )
    assert archive == steps.sdists_downloads / "fxplain-1.0.tar.gz"
    prepared = build_steps.prepare_downloaded(
        steps, "fxplain", "1.0", settings=Settings(), plugins=Plugins.load()
    )
    assert (prepared.root / "pyproject.toml").is_file()
    defaults = BuildSettings.of(Settings(), "fxplain", "1.0")
    env = build_steps.prepare_build(
        steps,
        "fxplain",
        "1.0",
        prepared,
        wheel_server_url=None,
        settings=defaults,
        isolate=False,
        plugins=Plugins.load(),
    )
    assert build_steps.build_env(steps, "fxplain", "1.0") == env
    # the environment now sits beside the tree; later steps still find the tree itself
    again = build_steps.prepared_source(
        steps, "fxplain", "1.0", settings=Settings(), plugins=Plugins.load()
    )
    assert again.root == prepared.root and again.build_system == prepared.build_system
    sdist = build_steps.build_sdist(
        steps, "fxplain", "1.0", again, settings=Settings(), plugins=Plugins.load()
    )
    assert sdist == steps.repacked_sdist("fxplain", "1.0") and sdist.is_file()
    wheel = build_steps.build_wheel(
        steps,
        "fxplain",
        "1.0",
        again,
        env,
        settings=defaults,
        isolate=False,
        plugins=Plugins.load(),
    )
    assert wheel == steps.wheels_downloads / "fxplain-1.0-0-py3-none-any.whl"
    with pytest.raises(SourceError, match="step prepare-source"):
        build_steps.prepared_source(
            steps, "fx-tool", "1.0", settings=Settings(), plugins=Plugins.load()
        )
    with pytest.raises(SourceError, match="step download-source-archive"):
        build_steps.prepare_downloaded(
            steps, "fx-env", "1.0", settings=Settings(), plugins=Plugins.load()
        )
    with pytest.raises(BuildError, match="step prepare-build"):
        build_steps.build_env(steps, "fx-env", "1.0")


def test_build_package_takes_the_download_source_url(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    make_sdist(FixturePackage("fx-tool", record_env=("FROM_MIRROR",)), mirror)
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    with LocalIndexServer([mirror]) as server:
        files = server.url.replace("/simple/", "/files/")
        (settings_dir / "fx_tool.yaml").write_text(
            f"download_source:\n  url: '{files}${{canonicalized_name}}-${{version}}.tar.gz'\n"
            "  destination_filename: 'fx_tool-${version}.tar.gz'\n"
        )
        (mirror / "fx-tool-1.0.tar.gz").write_bytes((mirror / "fx_tool-1.0.tar.gz").read_bytes())
        layout = OutputLayout(tmp_path / "out")
        built = builder.build_package(
            "fx-tool",
            "1.0",
            index=IndexClient(upstream[1]),  # the version comes from the index...
            layout=layout,
            isolate=False,
            settings=load_settings(settings_dir=settings_dir),
            plugins=Plugins.load(),
        )
    # ...the archive from the URL: only the mirror's copy records FROM_MIRROR
    assert "FROM_MIRROR" in _member(built.path, "fx_tool/build-env.json")
    assert built.source_path == layout.sdists_downloads / "fx_tool-1.0.tar.gz"


def test_build_commands_follow_resolver_dist(upstream: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = upstream
    index = IndexClient(url)
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    (settings_dir / "fx_pre.yaml").write_text("resolver_dist:\n  include_wheels: true\n")
    (settings_dir / "fxplain.yaml").write_text(
        "resolver_dist:\n  include_sdists: false\n  include_wheels: true\n"
    )
    settings = load_settings(settings_dir=settings_dir)
    layout = OutputLayout(tmp_path / "out")
    # fromager's build takes the version's wheel as published, as a bootstrap would
    built = builder.build_package(
        "fx-pre",
        "1.0",
        index=index,
        layout=layout,
        isolate=False,
        settings=settings,
        plugins=Plugins.load(),
    )
    assert built.prebuilt and built.path == layout.wheels_prebuilt / PRE.wheel_filename
    assert built.path.read_bytes() == (folder / PRE.wheel_filename).read_bytes()
    assert not list(layout.wheels_downloads.glob("*.whl"))
    assert not list(layout.sdists_downloads.glob("*"))
    with pytest.raises(
        SourceError, match=re.escape("resolves to the wheel fx_pre-1.0-py3-none-any.whl")
    ):
        build_steps.download_source(
            index, "fx-pre", "1.0", layout, settings=settings, plugins=Plugins.load()
        )
    # only sdists on the index and include_sdists: false: the resolver's one-line error
    with pytest.raises(ResolutionError, match="fxplain: no file on the index is a candidate"):
        builder.build_package(
            "fxplain",
            "1.0",
            index=index,
            layout=layout,
            isolate=False,
            settings=settings,
            plugins=Plugins.load(),
        )
    with pytest.raises(ResolutionError, match="include_sdists=false"):
        build_steps.download_source(
            index, "fxplain", "1.0", layout, settings=settings, plugins=Plugins.load()
        )


def test_build_package_resolves_from_the_sdist_server_url(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    mirror = make_index([FixturePackage("fxplain", "3.0")], tmp_path / "mirror")
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    with LocalIndexServer([mirror]) as server:
        (settings_dir / "fxplain.yaml").write_text(
            f"resolver_dist:\n  sdist_server_url: '{server.url}'\n"
        )
        layout = OutputLayout(tmp_path / "out")
        archive = build_steps.download_source(
            IndexClient(upstream[1]),  # has fxplain 1.0 only
            "fxplain",
            "3.0",
            layout,
            settings=load_settings(settings_dir=settings_dir),
            plugins=Plugins.load(),
        )
    assert archive == layout.sdists_downloads / "fxplain-3.0.tar.gz"


def test_step_build_wheel_names_the_downloaded_source_in_the_sbom(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    overrides = tmp_path / "overrides"
    (overrides / "settings").mkdir(parents=True)
    (overrides / "settings.yaml").write_text("sbom:\n  purl_type: pypi\n")
    (overrides / "settings" / "fxplain.yaml").write_text(
        "project_override:\n  requires_external: [libplain]\n"
    )
    settings = load_settings(
        settings_file=overrides / "settings.yaml", settings_dir=overrides / "settings"
    )
    steps = OutputLayout(tmp_path / "steps").ensure()
    archive = build_steps.download_source(
        IndexClient(upstream[1]),
        "fxplain",
        "1.0",
        steps,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    prepared = build_steps.prepare_downloaded(
        steps, "fxplain", "1.0", settings=settings, plugins=Plugins.load()
    )
    wanted = BuildSettings.of(settings, "fxplain", "1.0")
    env = build_steps.prepare_build(
        steps,
        "fxplain",
        "1.0",
        prepared,
        wheel_server_url=None,
        settings=wanted,
        isolate=False,
        plugins=Plugins.load(),
    )
    wheel = build_steps.build_wheel(
        steps,
        "fxplain",
        "1.0",
        prepared,
        env,
        settings=wanted,
        isolate=False,
        plugins=Plugins.load(),
    )
    assert "Requires-External: libplain\n" in _member(wheel, "fxplain-1.0.dist-info/METADATA")
    sbom = json.loads(_member(wheel, "fxplain-1.0.dist-info/sboms/fromager-dagster.spdx.json"))
    assert sbom["packages"][1]["checksums"][0]["checksumValue"] == sha256_file(archive)
