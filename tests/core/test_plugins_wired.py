"""The plugin steps in real runs: a bootstrap and the build commands with the installed example
plugin's ``fixture-wired`` overrides (tests/fixtures/plugin_example, installed by
`make setup`): find_candidates, prepare_source, get_build_backend_dependencies,
get_build_sdist_dependencies, build_sdist and add_extra_metadata_to_wheels each leave a mark the
tests look for."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import pytest
from fromager_dagster_plugin_example import fixture_wired as plugin
from fromager_dagster_plugin_example import hooks
from packaging.version import Version

from fromager_dagster.core.bootstrap.run import BootstrapOptions, BootstrapResult, bootstrap
from fromager_dagster.core.build import builder
from fromager_dagster.core.build import steps as build_steps
from fromager_dagster.core.build.settings import BuildSettings
from fromager_dagster.core.errors import ResolutionError
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import PackageId
from fromager_dagster.core.plugins import (
    HOOKS_GROUP,
    OVERRIDES_GROUP,
    PLUGIN_METADATA_FILE,
    Plugins,
)
from fromager_dagster.core.resolve.requirements import Constraints, parse_requirement
from fromager_dagster.core.settings.layout import default_paths
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.archives import sha256_file
from tests.fixtures.packages import FixturePackage, Upstream, make_wheel

WIRED = FixturePackage("fixture-wired", backend_requires=("fixture-wired-helper",))
NEWER = FixturePackage("fixture-wired", "2.0")  # left out by the plugin's find_candidates
HELPERS = [
    FixturePackage("fixture-wired-helper"),  # the backend's own requirement
    FixturePackage("fixture-wired-backend"),  # added by get_build_backend_dependencies
    FixturePackage("fixture-wired-sdist"),  # returned by get_build_sdist_dependencies
]
KEY = "fixture-wired==1.0"
WHEEL = "fixture_wired-1.0-0-py3-none-any.whl"
DIST_INFO = "fixture_wired-1.0.dist-info"

# A patch that cannot apply: the prepare_source override replaces the patches, so it is never
# tried (without the override the bootstrap fails on it).
UNAPPLIABLE_PATCH = """\
--- a/fixture_wired/__init__.py
+++ b/fixture_wired/__init__.py
@@ -1,2 +1,2 @@
 nothing like this
-is in the file
+so it cannot apply
"""


@dataclass(frozen=True)
class Wired:
    url: str
    out: Path
    overrides: Path
    result: BootstrapResult
    wheel_bytes: bytes  # the bootstrap's wheel, before any later build rewrites it


def _settings(overrides: Path) -> Settings:
    found = default_paths(root=overrides.parent)
    return load_settings(settings_file=found[0], settings_dir=found[1], patches_dir=found[2])


@pytest.fixture(scope="module")
def wired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wired]:
    """One bootstrap of fixture-wired, shared by the tests that read its outputs."""
    assert "fixture_wired" in Plugins.load().packages(), "run `make setup` to install the plugin"
    tmp = tmp_path_factory.mktemp("wired")
    upstream = Upstream(tmp / "upstream")
    upstream.folder.mkdir()
    upstream.add(WIRED, NEWER, *HELPERS)
    overrides = tmp / "overrides"
    patch = overrides / "patches" / "fixture_wired" / "0001-never.patch"
    patch.parent.mkdir(parents=True)
    patch.write_text(UNAPPLIABLE_PATCH, encoding="utf-8")
    url = upstream.start()
    try:
        out = tmp / "out"
        result = bootstrap(
            [parse_requirement("fixture-wired")],
            index=IndexClient(url),
            constraints=Constraints.from_lines([]),
            layout=OutputLayout(out),
            options=BootstrapOptions(jobs=2, isolate=False),
            settings=_settings(overrides),
        )
        wheel = out / "wheels-repo" / "downloads" / WHEEL
        yield Wired(url, out, overrides, result, wheel.read_bytes())
    finally:
        assert upstream.server is not None
        upstream.server.stop()


def _edges(result: BootstrapResult, req_type: str) -> list[tuple[str, str]]:
    edges = result.graph.to_json()[KEY]["edges"]
    return [(e["key"], e["req"]) for e in edges if e["req_type"] == req_type]


def _wheel_member(data: bytes, member: str) -> str:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        return zf.read(member).decode()


def _has_plugin_metadata(wheel: Path) -> bool:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    return {f"{DIST_INFO}/{plugin.METADATA_FILE}", f"{DIST_INFO}/{PLUGIN_METADATA_FILE}"} <= names


def _sdist_names(path: Path) -> list[str]:
    with tarfile.open(path) as tf:
        return tf.getnames()


# -- the bootstrap ---------------------------------------------------------------------------


def test_prepare_source_override_gives_the_tree_that_is_built(wired: Wired) -> None:
    assert wired.result.built == sorted([KEY, *(f"{p.name}==1.0" for p in HELPERS)])
    # the plugin's file is in the wheel: the build ran in the tree the plugin prepared...
    marker = _wheel_member(wired.wheel_bytes, f"fixture_wired/{plugin.PREPARED_MARKER}")
    assert marker == "fixture-wired==1.0\n"
    # ...and the patch (which cannot apply) was never tried: the plugin replaces the patches
    log = (wired.out / "work-dir" / "logs" / "fixture-wired-1.0.log").read_text()
    assert "0001-never.patch" not in log


def test_build_backend_dependencies_override_gives_the_build_backend_edges(
    wired: Wired,
) -> None:
    # the backend's own requirement (through the hooks the plugin is given), then the plugin's
    assert _edges(wired.result, "build-backend") == [
        ("fixture-wired-helper==1.0", "fixture-wired-helper"),
        ("fixture-wired-backend==1.0", plugin.BACKEND_REQUIREMENT),
    ]
    written = json.loads((wired.out / "work-dir" / "graph.json").read_text())
    assert {e["key"] for e in written[KEY]["edges"] if e["req_type"] == "build-backend"} == {
        "fixture-wired-helper==1.0",
        "fixture-wired-backend==1.0",
    }


def test_build_sdist_dependencies_override_gives_the_build_sdist_edges(wired: Wired) -> None:
    assert _edges(wired.result, "build-sdist") == [
        ("fixture-wired-sdist==1.0", plugin.SDIST_REQUIREMENT)
    ]


def test_build_sdist_override_writes_the_sdist_in_sdists_repo_builds(wired: Wired) -> None:
    sdist = wired.out / "sdists-repo" / "builds" / "fixture_wired-1.0.tar.gz"
    names = _sdist_names(sdist)
    assert f"fixture_wired-1.0/{plugin.SDIST_MARKER}" in names
    assert f"fixture_wired-1.0/fixture_wired/{plugin.PREPARED_MARKER}" in names
    with tarfile.open(sdist) as tf:
        note = tf.extractfile(f"fixture_wired-1.0/{plugin.SDIST_MARKER}")
        assert note is not None and note.read() == b"SOURCE_DATE_EPOCH=315532800\n"
    # packages without the plugin keep the default re-pack
    helper = wired.out / "sdists-repo" / "builds" / "fixture_wired_helper-1.0.tar.gz"
    assert not any(plugin.SDIST_MARKER in name for name in _sdist_names(helper))


def test_extra_metadata_override_is_in_the_final_wheels_dist_info(wired: Wired) -> None:
    assert _wheel_member(wired.wheel_bytes, f"{DIST_INFO}/{plugin.METADATA_FILE}") == (
        "fixture-wired==1.0\n"
    )
    data = json.loads(_wheel_member(wired.wheel_bytes, f"{DIST_INFO}/{PLUGIN_METADATA_FILE}"))
    assert data == {"package": "fixture-wired==1.0", "source_date_epoch": "315532800"}
    record = _wheel_member(wired.wheel_bytes, f"{DIST_INFO}/RECORD")
    assert f"{DIST_INFO}/{plugin.METADATA_FILE},sha256=" in record
    assert f"{DIST_INFO}/{PLUGIN_METADATA_FILE},sha256=" in record
    # the wheel was finalised afterwards: build tag and all
    assert "Build: 0" in _wheel_member(wired.wheel_bytes, f"{DIST_INFO}/WHEEL")


# -- the build commands ----------------------------------------------------------------------


def test_hermetic_build_of_the_graph_runs_the_same_overrides(wired: Wired) -> None:
    layout = OutputLayout(wired.out)
    graph = DependencyGraph.load(wired.out / "work-dir" / "graph.json")
    built = builder.build_node(
        graph,
        KEY,
        layout=layout,
        isolate=False,
        settings=_settings(wired.overrides),
        plugins=Plugins.load(),
    )
    # same tree, same metadata, deterministic finalisation: the very same wheel
    assert built.path.name == WHEEL and _has_plugin_metadata(built.path)
    assert built.path.read_bytes() == wired.wheel_bytes
    sdist = layout.repacked_sdist("fixture-wired", "1.0")
    assert f"fixture_wired-1.0/{plugin.SDIST_MARKER}" in _sdist_names(sdist)


def test_build_steps_run_the_overrides(wired: Wired, tmp_path: Path) -> None:
    """fromager's `step` commands, build requirements served from the bootstrap's wheels."""
    steps = OutputLayout(tmp_path / "steps").ensure()
    settings = _settings(wired.overrides)
    index = IndexClient(wired.url)
    # find_candidates: the index's 2.0 is not a version this package has
    assert [f.version for f in index.files("fixture-wired")] == [Version("1.0"), Version("2.0")]
    with pytest.raises(ResolutionError, match="fixture-wired"):
        build_steps.download_source(
            index, "fixture-wired", "2.0", steps, settings=settings, plugins=Plugins.load()
        )
    build_steps.download_source(
        index, "fixture-wired", "1.0", steps, settings=settings, plugins=Plugins.load()
    )
    prepared = build_steps.prepare_downloaded(
        steps, "fixture-wired", "1.0", settings=settings, plugins=Plugins.load()
    )
    assert prepared.patches == ()
    assert (prepared.project_dir / "fixture_wired" / plugin.PREPARED_MARKER).is_file()
    wanted = BuildSettings.of(settings, "fixture-wired", "1.0")
    with LocalIndexServer(OutputLayout(wired.out).wheel_roots) as server:
        env = build_steps.prepare_build(
            steps,
            "fixture-wired",
            "1.0",
            prepared,
            wheel_server_url=server.url,
            settings=wanted,
            isolate=False,
            plugins=Plugins.load(),
        )
    # get_build_backend_dependencies decided what the environment holds
    for module in ("fixture_wired_helper", "fixture_wired_backend"):
        subprocess.run([str(env.python), "-c", f"import {module}"], check=True)
    again = build_steps.prepared_source(
        steps, "fixture-wired", "1.0", settings=settings, plugins=Plugins.load()
    )
    sdist = build_steps.build_sdist(
        steps, "fixture-wired", "1.0", again, settings=settings, plugins=Plugins.load()
    )
    assert f"fixture_wired-1.0/{plugin.SDIST_MARKER}" in _sdist_names(sdist)
    wheel = build_steps.build_wheel(
        steps,
        "fixture-wired",
        "1.0",
        again,
        env,
        settings=wanted,
        isolate=False,
        plugins=Plugins.load(),
    )
    assert _has_plugin_metadata(wheel)
    assert wheel.read_bytes() == wired.wheel_bytes


def test_build_package_discovers_backend_requirements_through_the_override(
    wired: Wired, tmp_path: Path
) -> None:
    layout = OutputLayout(tmp_path / "build")
    with LocalIndexServer(OutputLayout(wired.out).wheel_roots) as server:
        built = builder.build_package(
            "fixture-wired",
            "1.0",
            index=IndexClient(wired.url),
            layout=layout,
            isolate=False,
            wheel_server_url=server.url,
            settings=_settings(wired.overrides),
            keep_build_env=True,
            plugins=Plugins.load(),
        )
    assert _has_plugin_metadata(built.path)
    assert built.path.read_bytes() == wired.wheel_bytes
    with tarfile.open(layout.repacked_sdist("fixture-wired", "1.0")) as tf:
        assert f"fixture_wired-1.0/{plugin.SDIST_MARKER}" in tf.getnames()
    env = layout.package_dir("fixture-wired", "1.0") / "build-env" / "bin" / "python"
    subprocess.run([str(env), "-c", "import fixture_wired_backend"], check=True)


def test_build_node_honours_the_build_system_and_environment_overrides(
    upstream: Upstream, tmp_path: Path
) -> None:
    """fixture-plugged's get_build_system_dependencies and update_extra_environ, rebuilt from
    the bootstrap's graph: the same edges are needed and the same environment is seen."""
    upstream.add(
        FixturePackage("fixture-plugged", record_env=("FIXTURE_PLUGGED",)),
        FixturePackage("fixture-plugged-helper"),
    )
    layout = OutputLayout(tmp_path / "out")
    result = bootstrap(
        [parse_requirement("fixture-plugged")],
        index=IndexClient(upstream.start()),
        constraints=Constraints.from_lines([]),
        layout=layout,
        options=BootstrapOptions(jobs=2, isolate=False),
        settings=Settings(),
    )
    wheel = layout.wheels_downloads / "fixture_plugged-1.0-0-py3-none-any.whl"
    first = wheel.read_bytes()
    built = builder.build_node(
        result.graph,
        "fixture-plugged==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    assert built.path == wheel
    seen = json.loads(_wheel_member(wheel.read_bytes(), "fixture_plugged/build-env.json"))
    assert seen["env"] == {"FIXTURE_PLUGGED": "fixture-plugged==1.0"}
    assert wheel.read_bytes() == first
    # the step commands read the same build-system requirements from the prepared tree
    build_steps.prepare_downloaded(
        layout, "fixture-plugged", "1.0", settings=Settings(), plugins=Plugins.load()
    )
    prepared = build_steps.prepared_source(
        layout, "fixture-plugged", "1.0", settings=Settings(), plugins=Plugins.load()
    )
    assert [str(r) for r in prepared.build_system.requires] == ["fixture-plugged-helper>=1.0"]


def test_build_package_honours_download_source_and_build_wheel_overrides(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Plugins passed in explicitly (a distribution written to a folder on sys.path)."""
    site = tmp_path / "site"
    info = site / "tmp_wired_plugin-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tmp-wired-plugin\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(
        f"[{OVERRIDES_GROUP}]\nfx_steps = tmp_wired_steps\n", encoding="utf-8"
    )
    (site / "tmp_wired_steps.py").write_text(
        "def download_source(url, dest_dir, session, log):\n"
        "    target = dest_dir / url.rsplit('/', 1)[-1]\n"
        "    target.write_bytes(session.get(url, timeout=30).content)\n"
        "    log.parent.mkdir(parents=True, exist_ok=True)\n"
        "    with log.open('a') as out:\n"
        "        out.write('plugin downloaded ' + url + '\\n')\n"
        "    return target\n"
        "\n"
        "def build_wheel(hooks, out_dir, log):\n"
        "    built = hooks.build_wheel(out_dir)\n"
        "    with log.open('a') as out:\n"
        "        out.write('plugin built ' + built.name + '\\n')\n"
        "    return built\n",
        encoding="utf-8",
    )
    monkeypatch.syspath_prepend(str(site))
    plugins = Plugins.from_entry_points(
        metadata.entry_points(group=OVERRIDES_GROUP), metadata.entry_points(group=HOOKS_GROUP)
    )
    upstream.add(FixturePackage("fx-steps"))
    url = upstream.start()
    layout = OutputLayout(tmp_path / "out")
    built = builder.build_package(
        "fx-steps",
        "1.0",
        index=IndexClient(url),
        layout=layout,
        isolate=False,
        plugins=plugins,
        settings=Settings(),
    )
    log = built.log_path.read_text()
    assert "plugin downloaded http://127.0.0.1:" in log
    assert "plugin built fx_steps-1.0-py3-none-any.whl" in log
    assert built.path == layout.wheels_downloads / "fx_steps-1.0-0-py3-none-any.whl"


# -- the settings' wheel extras in both stages -----------------------------------------------

SBOM_SETTINGS = 'sbom:\n  supplier: "Organization: ExampleCo"\n'
WIRED_SETTINGS = (
    "project_override:\n"
    "  requires_external: ['libfixture (>=1)', openssl-libs]\n"
    "annotations: {team: platform, tier: '1'}\n"
    "variants:\n"
    "  cpu:\n"
    "    annotations: {team: wired}\n"
    "purl:\n"
    "  namespace: acme\n"
)
SBOM_MEMBER = f"{DIST_INFO}/sboms/fromager-dagster.spdx.json"


def test_sbom_and_requires_external_give_the_same_wheel_in_bootstrap_and_the_builder(
    tmp_path: Path,
) -> None:
    upstream = Upstream(tmp_path / "upstream")
    upstream.folder.mkdir()
    upstream.add(WIRED, *HELPERS)
    overrides = tmp_path / "overrides"
    (overrides / "settings").mkdir(parents=True)
    (overrides / "settings.yaml").write_text(SBOM_SETTINGS, encoding="utf-8")
    (overrides / "settings" / "fixture_wired.yaml").write_text(WIRED_SETTINGS, encoding="utf-8")
    settings = _settings(overrides)
    url = upstream.start()
    try:
        out = tmp_path / "out"
        bootstrap(
            [parse_requirement("fixture-wired")],
            index=IndexClient(url),
            constraints=Constraints.from_lines([]),
            layout=OutputLayout(out),
            options=BootstrapOptions(jobs=2, isolate=False),
            settings=settings,
        )
        wheel = out / "wheels-repo" / "downloads" / WHEEL
        first = wheel.read_bytes()
        # the settings' additions, beside the plugin's metadata
        metadata = _wheel_member(first, f"{DIST_INFO}/METADATA")
        assert "Requires-External: libfixture (>=1)\nRequires-External: openssl-libs\n" in metadata
        assert _has_plugin_metadata(wheel)
        sbom = json.loads(_wheel_member(first, SBOM_MEMBER))
        wheel_pkg, upstream_pkg = sbom["packages"]
        assert wheel_pkg["supplier"] == "Organization: ExampleCo"
        assert wheel_pkg["externalRefs"][0]["referenceLocator"] == (
            "pkg:pypi/acme/fixture-wired@1.0"
        )
        assert [a["comment"] for a in wheel_pkg["annotations"]] == ["team=wired", "tier=1"]
        archive = out / "sdists-repo" / "downloads" / WIRED.sdist_filename
        assert upstream_pkg["checksums"] == [
            {"algorithm": "SHA256", "checksumValue": sha256_file(archive)}
        ]
        assert upstream_pkg["downloadLocation"] == "NOASSERTION"  # the index is on 127.0.0.1
        assert f"{SBOM_MEMBER},sha256=" in _wheel_member(first, f"{DIST_INFO}/RECORD")

        # the hermetic build of the graph: the very same bytes
        layout = OutputLayout(out)
        graph = DependencyGraph.load(out / "work-dir" / "graph.json")
        built = builder.build_node(
            graph, KEY, layout=layout, isolate=False, settings=settings, plugins=Plugins.load()
        )
        assert built.path == wheel and wheel.read_bytes() == first

        # fromager's build, requirements from the bootstrap's wheels: the same bytes again
        with LocalIndexServer(layout.wheel_roots) as server:
            again = builder.build_package(
                "fixture-wired",
                "1.0",
                index=IndexClient(url),
                layout=OutputLayout(tmp_path / "build"),
                isolate=False,
                wheel_server_url=server.url,
                settings=settings,
                plugins=Plugins.load(),
            )
        assert again.path.read_bytes() == first

        # the SBOM's source URL is the graph node's download_url
        graph.nodes[
            KEY
        ].download_url = f"https://user:secret@files.example.com/packages/{WIRED.sdist_filename}"
        moved = builder.build_node(
            graph, KEY, layout=layout, isolate=False, settings=settings, plugins=Plugins.load()
        )
        location = json.loads(_wheel_member(moved.path.read_bytes(), SBOM_MEMBER))["packages"][1]
        assert location["downloadLocation"] == (
            f"https://files.example.com/packages/{WIRED.sdist_filename}"
        )
    finally:
        assert upstream.server is not None
        upstream.server.stop()


# -- the hooks in the build commands ---------------------------------------------------------


def _hook_lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_build_node_and_build_package_run_the_post_build_hook(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The installed example plugin's post_build hook records each wheel the builder builds."""
    assert Plugins.load().hooks("post_build"), "run `make setup` to install the plugin"
    upstream.add(
        FixturePackage("fx-hooked", build_system_requires=("fx-hook-tool",)),
        FixturePackage("fx-hook-tool"),
    )
    url = upstream.start()
    layout = OutputLayout(tmp_path / "out")
    result = bootstrap(
        [parse_requirement("fx-hooked")],
        index=IndexClient(url),
        constraints=Constraints.from_lines([]),
        layout=layout,
        options=BootstrapOptions(jobs=2, isolate=False),
        settings=Settings(),
    )
    hook_log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv(hooks.LOG_VARIABLE, str(hook_log))  # from here on the hook records
    settings = load_settings(variant="rocm")
    built = builder.build_node(
        result.graph,
        "fx-hooked==1.0",
        layout=layout,
        isolate=False,
        settings=settings,
        plugins=Plugins.load(),
    )
    expected = {
        "hook": "post_build",
        "name": "fx-hooked",
        "version": "1.0",
        "variant": "rocm",
        "sdist": "fx_hooked-1.0.tar.gz",  # the re-packed sdist in sdists-repo/builds
        "wheel": built.path.name,
    }
    assert _hook_lines(hook_log) == [expected]

    with LocalIndexServer(layout.wheel_roots) as server:
        again = builder.build_package(
            "fx-hooked",
            "1.0",
            index=IndexClient(url),
            layout=OutputLayout(tmp_path / "build"),
            isolate=False,
            wheel_server_url=server.url,
            settings=settings,
            plugins=Plugins.load(),
        )
    assert again.path.name == built.path.name
    assert _hook_lines(hook_log) == [expected, expected]


def test_taking_a_pre_built_wheel_runs_the_prebuilt_wheel_hook(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The example plugin's hooks, given explicitly: prebuilt_wheel, and not post_build, runs
    wherever the builder takes a wheel as published."""
    plugins = Plugins.from_entry_points(
        [],
        [
            metadata.EntryPoint(name=hook, value=f"{hooks.__name__}:{func}", group=HOOKS_GROUP)
            for hook, func in (
                ("post_build", "record_post_build"),
                ("prebuilt_wheel", "record_prebuilt_wheel"),
            )
        ],
    )
    for name in ("fx-pre", "fx-wheels"):
        upstream.add(FixturePackage(name))
        make_wheel(FixturePackage(name), upstream.folder)
    index = IndexClient(upstream.start())
    overrides = tmp_path / "overrides"
    (overrides / "settings").mkdir(parents=True)
    (overrides / "settings" / "fx_pre.yaml").write_text("variants:\n  cpu:\n    pre_built: true\n")
    (overrides / "settings" / "fx_wheels.yaml").write_text(
        "resolver_dist:\n  include_wheels: true\n"
    )
    settings = _settings(overrides)
    hook_log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv(hooks.LOG_VARIABLE, str(hook_log))

    def taken(name: str) -> dict[str, object]:
        wheel = FixturePackage(name).wheel_filename
        return {
            "hook": "prebuilt_wheel",
            "name": name,
            "version": "1.0",
            "variant": "cpu",
            "wheel": wheel,
        }

    graph = DependencyGraph()
    graph.add_node(PackageId.of("fx-pre", "1.0"), pre_built=True)
    layout = OutputLayout(tmp_path / "out")
    built = builder.build_node(
        graph,
        "fx-pre==1.0",
        layout=layout,
        isolate=False,
        index=index,
        plugins=plugins,
        settings=Settings(),
    )
    assert built.prebuilt and _hook_lines(hook_log) == [taken("fx-pre")]
    # build: a pre_built package, and a version resolver_dist takes as a wheel
    for name in ("fx-pre", "fx-wheels"):
        built = builder.build_package(
            name,
            "1.0",
            index=index,
            layout=OutputLayout(tmp_path / name),
            isolate=False,
            settings=settings,
            plugins=plugins,
        )
        assert built.prebuilt
    assert _hook_lines(hook_log) == [taken("fx-pre"), taken("fx-pre"), taken("fx-wheels")]
