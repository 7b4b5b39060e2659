"""Tests for fromager_dagster.core.plugins, through real entry points.

The example plugin in tests/fixtures/plugin_example is installed in the test environment
(``make setup``); other plugins are real distributions (a ``.dist-info`` with an
``entry_points.txt``) written into ``tmp_path`` and put on ``sys.path``.
"""

from __future__ import annotations

import itertools
import json
import re
import zipfile
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.build import wheels
from fromager_dagster.core.errors import (
    BuildError,
    ConfigError,
    PatchError,
    ResolutionError,
    SourceError,
)
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.plugins import (
    HOOKS_GROUP,
    OVERRIDES_GROUP,
    PLUGIN_METADATA_FILE,
    PluginFinder,
    Plugins,
    add_extra_metadata,
)
from fromager_dagster.core.plugins import steps as plugin_steps
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.resolve.resolver import Resolver
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.prepare import (
    build_fingerprint,
    prepare_source,
    prepared_build_system,
)
from tests.core.conftest import DistFactory
from tests.fixtures.packages import FixturePackage, make_index, make_sdist, sdist_members

EXAMPLE_LOG = "FROMAGER_DAGSTER_PLUGIN_EXAMPLE_LOG"
_counter = itertools.count()


def _source_tree(pkg: FixturePackage, root: Path) -> Path:
    tree = root / pkg.base
    for rel, text in sdist_members(pkg).items():
        (tree / rel).parent.mkdir(parents=True, exist_ok=True)
        (tree / rel).write_text(text, encoding="utf-8")
    return tree


def _install(
    site: Path, modules: dict[str, str], overrides: dict[str, str], hooks: list[tuple[str, str]]
) -> str:
    """Write a real distribution into ``site`` (on sys.path); return its distribution name."""
    dist = f"tmp-plugin-{next(_counter)}"
    info = site / f"{dist.replace('-', '_')}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = [f"[{OVERRIDES_GROUP}]", *(f"{k} = {v}" for k, v in overrides.items())]
    lines += [f"[{HOOKS_GROUP}]", *(f"{k} = {v}" for k, v in hooks)]
    (info / "entry_points.txt").write_text("\n".join(lines) + "\n")
    for module, source in modules.items():
        (site / f"{module}.py").write_text(source)
    return dist


def _discover() -> Plugins:
    """Read the entry points as ``Plugins.load()`` does, without its process-wide memo."""
    return Plugins.from_entry_points(
        metadata.entry_points(group=OVERRIDES_GROUP), metadata.entry_points(group=HOOKS_GROUP)
    )


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    return folder


def _unique(stem: str) -> str:
    return f"{stem}_{next(_counter)}"


# -- the installed example plugin ------------------------------------------------------------


def test_installed_example_plugin_is_found_and_loading_is_memoised() -> None:
    plugins = Plugins.load()
    assert plugins is Plugins.load()
    assert "fixture_plugged" in plugins.packages()
    assert any(
        "fromager_dagster_plugin_example.hooks:record_post_build" in label
        and "fromager-dagster-plugin-example" in label
        for label in plugins.hooks("post_build")
    )


@pytest.mark.parametrize("spelling", ["fixture-plugged", "Fixture.Plugged", "fixture_plugged"])
def test_build_system_override_is_called_for_every_spelling_of_the_name(
    tmp_path: Path, spelling: str
) -> None:
    pkg = FixturePackage("fixture-plugged", build_system_requires=("fx-base>=1",))
    tree = _source_tree(pkg, tmp_path)
    step = Plugins.load().override(spelling, "get_build_system_dependencies")
    assert step is not None
    found = step(
        name=canonicalize_name(spelling),
        version=Version("1.0"),
        source_dir=tree,
        settings=Settings(),
        log=tmp_path / "build.log",
    )
    assert found == ["fx-base>=1", "fixture-plugged-helper>=1.0"]
    assert [Requirement(r).name for r in found] == ["fx-base", "fixture-plugged-helper"]


def test_update_extra_environ_override_gets_only_the_arguments_it_declares(
    tmp_path: Path,
) -> None:
    step = Plugins.load().override("fixture-plugged", "update_extra_environ")
    assert step is not None
    extra = step(
        name=canonicalize_name("fixture-plugged"),
        version=Version("2.1"),
        source_dir=tmp_path,
        settings=Settings(),
        extra_environ={"SOURCE_DATE_EPOCH": "0", "A": "1"},
        log=tmp_path / "build.log",
    )
    assert extra == {"FIXTURE_PLUGGED": "fixture-plugged==2.1", "FIXTURE_PLUGGED_SEEN": "2"}


def test_steps_a_plugin_does_not_define_and_packages_without_plugin_have_no_override() -> None:
    plugins = Plugins.load()
    assert plugins.override("fixture-plugged", "build_wheel") is None
    assert plugins.describe("fixture-plugged") == (
        "entry point fixture_plugged = fromager_dagster_plugin_example.fixture_plugged "
        "(fromager_dagster.project_overrides from fromager-dagster-plugin-example 0.1.0): "
        "get_build_system_dependencies, update_extra_environ"
    )
    assert plugins.describe("fixture-unplugged") is None
    assert plugins.override("fixture-unplugged", "get_build_system_dependencies") is None
    # the build fingerprint (prepare.build_fingerprint) names every step a package's plugin
    # overrides, so changing or upgrading any of them rebuilds the package
    fingerprint = build_fingerprint(Settings(), plugins, "Fixture_Wired", "1.0")
    assert fingerprint.endswith(
        "fromager-dagster-plugin-example 0.1.0): add_extra_metadata_to_wheels, build_sdist, "
        "find_candidates, get_build_backend_dependencies, get_build_sdist_dependencies, "
        "prepare_source"
    )
    assert fingerprint.startswith(
        build_fingerprint(Settings(), Plugins.none(), "fixture-wired", "1.0")
    )
    with pytest.raises(ValueError, match="unknown step 'build_wheels'"):
        plugins.override("fixture-plugged", "build_wheels")


def test_post_build_hook_of_the_example_plugin_appends_to_its_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "hooks.jsonl"
    monkeypatch.setenv(EXAMPLE_LOG, str(target))
    plugins = Plugins.load()
    for version in ("1.0", "1.1"):
        plugins.run_hooks(
            "post_build",
            name=canonicalize_name("fixture-plugged"),
            version=Version(version),
            variant="cpu",
            sdist=tmp_path / f"fixture_plugged-{version}.tar.gz",
            wheel=tmp_path / f"fixture_plugged-{version}-0-py3-none-any.whl",
        )
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert [(line["name"], line["version"], line["wheel"]) for line in lines] == [
        ("fixture-plugged", "1.0", "fixture_plugged-1.0-0-py3-none-any.whl"),
        ("fixture-plugged", "1.1", "fixture_plugged-1.1-0-py3-none-any.whl"),
    ]


def test_run_hooks_refuses_unknown_hooks_and_wrong_arguments(tmp_path: Path) -> None:
    plugins = Plugins.load()
    with pytest.raises(ValueError, match="unknown hook 'pre_build'"):
        plugins.run_hooks("pre_build", name="x")
    with pytest.raises(TypeError, match="hook post_build takes exactly"):
        plugins.run_hooks("post_build", name=canonicalize_name("x"), version=Version("1"))


# -- plugins written into tmp_path ------------------------------------------------------------


def test_several_hooks_for_one_name_all_run_in_entry_point_order(
    site: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    order = tmp_path / "order.txt"
    module = _unique("aaa_hooks")
    source = (
        "def first(*, name, **kwargs):\n"
        f"    open({str(order)!r}, 'a').write('first ' + name + '\\n')\n"
        "def second(name):\n"
        f"    open({str(order)!r}, 'a').write('second ' + name + '\\n')\n"
    )
    _install(
        site,
        {module: source},
        {},
        [("post_build", f"{module}:second"), ("post_build", f"{module}:first")],
    )
    monkeypatch.setenv(EXAMPLE_LOG, str(order))
    _discover().run_hooks(
        "post_build",
        name="fx-a",
        version=Version("1.0"),
        variant="cpu",
        sdist=None,
        wheel=tmp_path / "fx_a-1.0-0-py3-none-any.whl",
    )
    lines = order.read_text().splitlines()
    assert lines[:2] == ["first fx-a", "second fx-a"]
    # the example plugin's value sorts after "aaa_hooks...": it ran last, into the same file
    assert json.loads(lines[2])["name"] == "fx-a"


def test_unknown_hook_name_is_a_config_error_naming_the_entry_point(site: Path) -> None:
    module = _unique("typo_hooks")
    _install(
        site, {module: "def hook(**kwargs):\n    pass\n"}, {}, [("post_built", f"{module}:hook")]
    )
    with pytest.raises(ConfigError, match=r"unknown hook 'post_built'.*post_bootstrap") as info:
        _discover()
    assert f"{module}:hook" in str(info.value)


def test_plugin_that_fails_to_import_is_a_config_error(site: Path) -> None:
    module = _unique("broken_override")
    dist = _install(site, {module: "import no_such_module_here\n"}, {"fx_broken": module}, [])
    with pytest.raises(ConfigError, match="cannot be loaded: ModuleNotFoundError") as info:
        _discover()
    assert "fx_broken" in str(info.value) and dist in str(info.value)


def test_override_defining_an_unknown_step_is_a_config_error(site: Path) -> None:
    module = _unique("typo_override")
    source = "def build_wheels(**kwargs):\n    pass\ndef _helper():\n    pass\n"
    _install(site, {module: source}, {"fx_typo": module}, [])
    with pytest.raises(ConfigError, match="defines build_wheels, which is not a step"):
        _discover()


def test_override_requiring_a_parameter_never_passed_is_a_config_error(site: Path) -> None:
    module = _unique("ctx_override")
    source = "def build_wheel(ctx, source_dir):\n    pass\n"
    _install(site, {module: source}, {"fx_ctx": module}, [])
    with pytest.raises(ConfigError, match="requires parameter 'ctx', which is never passed"):
        _discover()


def test_two_plugins_for_one_package_is_a_config_error(site: Path) -> None:
    one, two = _unique("one_override"), _unique("two_override")
    _install(site, {one: ""}, {"fx_twice": one}, [])
    _install(site, {two: ""}, {"fx-twice": two}, [])
    with pytest.raises(ConfigError, match="two plugins override package fx_twice"):
        _discover()


def test_raising_step_becomes_the_steps_error_naming_the_entry_point(
    site: Path, tmp_path: Path
) -> None:
    module = _unique("raising_override")
    source = (
        "def download_source(url):\n    raise RuntimeError('mirror down: ' + url)\n"
        "def build_wheel(out_dir):\n    return str(out_dir / 'nothing.whl')\n"
        "def prepare_source(archive):\n"
        "    from fromager_dagster.core.errors import SourceError\n"
        "    raise SourceError('cannot patch ' + archive.name)\n"
    )
    _install(site, {module: source}, {"fx_raising": module}, [])
    plugins = _discover()
    download = plugins.override("fx-raising", "download_source")
    assert download is not None
    log = tmp_path / "fx.log"
    with pytest.raises(SourceError) as info:
        download(
            name=canonicalize_name("fx-raising"),
            version=Version("3.0"),
            url="http://127.0.0.1:9/fx.tar.gz",
            dest_dir=tmp_path,
            settings=Settings(),
            session=None,  # type: ignore[arg-type]  # the plugin does not declare it
            log=log,
        )
    error = info.value
    assert f"{module}" in error.message and "mirror down" in error.message
    assert (error.package, error.version, error.step, error.log_path) == (
        "fx-raising",
        "3.0",
        "download_source",
        str(log),
    )
    build = plugins.override("fx-raising", "build_wheel")
    assert build is not None
    with pytest.raises(BuildError, match="returned a wrong value: expected the path of an"):
        build(
            name=canonicalize_name("fx-raising"),
            version=Version("3.0"),
            source_dir=tmp_path,
            out_dir=tmp_path,
            settings=Settings(),
            hooks=None,  # type: ignore[arg-type]
            extra_environ={},
            log=log,
        )
    prepare = plugins.override("fx-raising", "prepare_source")
    assert prepare is not None
    with pytest.raises(SourceError, match=re.escape("cannot patch fx.tar.gz")) as prep_info:
        prepare(
            name=canonicalize_name("fx-raising"),
            version=Version("3.0"),
            archive=tmp_path / "fx.tar.gz",
            work_dir=tmp_path,
            settings=Settings(),
            log=log,
        )
    # our own errors pass through, completed with the package
    assert (prep_info.value.package, prep_info.value.version) == ("fx-raising", "3.0")


def test_raising_hook_is_a_build_error_at_step_hook(site: Path, tmp_path: Path) -> None:
    module = _unique("raising_hooks")
    source = "def boom(wheel):\n    raise OSError('disk full')\n"
    _install(site, {module: source}, {}, [("prebuilt_wheel", f"{module}:boom")])
    with pytest.raises(BuildError, match=r"prebuilt_wheel hook plugin .*disk full") as info:
        _discover().run_hooks(
            "prebuilt_wheel",
            name=canonicalize_name("fx-a"),
            version=Version("1.0"),
            variant="cpu",
            wheel=tmp_path / "fx_a-1.0-py3-none-any.whl",
        )
    assert (info.value.step, info.value.package, info.value.version) == ("hook", "fx-a", "1.0")


def test_find_candidates_override_narrows_what_the_resolver_sees(
    site: Path, tmp_path: Path
) -> None:
    packages = [FixturePackage("fx-pinned", version=v) for v in ("1.0", "1.5", "2.0")]
    make_index(packages, tmp_path / "dists")
    module = _unique("pinned_override")
    source = (
        "def find_candidates(name, index):\n"
        "    return [f for f in index.files(name) if f.version.major < 2]\n"
    )
    _install(site, {module: source}, {"fx_pinned": module}, [])
    with LocalIndexServer([tmp_path / "dists"]) as server:
        index = IndexClient(server.url)
        plain = Resolver(index, Constraints()).resolve(Requirement("fx-pinned"))
        finder = PluginFinder(index, _discover(), Settings())
        plugged = Resolver(finder, Constraints()).resolve(Requirement("fx-pinned"))
        assert [str(f.version) for f in finder.files("FX_Pinned")] == ["1.0", "1.5"]
    assert (str(plain.version), str(plugged.version)) == ("2.0", "1.5")
    assert plugged.source.filename == "fx_pinned-1.5.tar.gz"


def test_find_candidates_returning_junk_is_a_resolution_error(site: Path) -> None:
    module = _unique("junk_override")
    _install(
        site,
        {module: "def find_candidates():\n    return ['fx-1.0.tar.gz']\n"},
        {"fx_junk": module},
        [],
    )
    finder = PluginFinder(IndexClient("http://127.0.0.1:9/simple/"), _discover(), Settings())
    with pytest.raises(ResolutionError, match="expected DistFile values"):
        finder.files("fx-junk")


def test_add_extra_metadata_writes_plugin_files_and_data_into_the_final_wheel(
    site: Path, tmp_path: Path, dist_factory: DistFactory
) -> None:
    module = _unique("metadata_override")
    source = (
        "def add_extra_metadata_to_wheels(name, version, dist_info_dir):\n"
        "    (dist_info_dir / 'BUILT-BY').write_text('plugin for ' + name)\n"
        "    return {'version': str(version), 'checks': ['a', 'b']}\n"
    )
    _install(site, {module: source}, {"fx_meta": module}, [])
    built = dist_factory.wheel("fx_meta", "1.0")
    step = _discover().override("fx-meta", "add_extra_metadata_to_wheels")
    assert step is not None
    add_extra_metadata(
        built,
        step,
        name=canonicalize_name("fx-meta"),
        version=Version("1.0"),
        source_dir=tmp_path,
        settings=Settings(),
        extra_environ={},
        log=tmp_path / "fx.log",
    )
    final = wheels.finalize_wheel(built, tmp_path / "out", build_tag=2)
    with zipfile.ZipFile(final) as zf:
        names = zf.namelist()
        assert zf.read("fx_meta-1.0.dist-info/BUILT-BY") == b"plugin for fx-meta"
        data = json.loads(zf.read(f"fx_meta-1.0.dist-info/{PLUGIN_METADATA_FILE}"))
        record = zf.read("fx_meta-1.0.dist-info/RECORD").decode()
    assert data == {"checks": ["a", "b"], "version": "1.0"}
    assert "fx_meta/__init__.py" in names
    assert f"fx_meta-1.0.dist-info/{PLUGIN_METADATA_FILE}," in record
    assert final.name == "fx_meta-1.0-2-py3-none-any.whl"


# -- the steps as the engine runs them (plugins/steps.py, prepare.py) -------------------------


def test_build_sdist_override_must_write_at_dest(site: Path, tmp_path: Path) -> None:
    module = _unique("sdist_override")
    source = (
        "def build_sdist(source_dir, dest):\n"
        "    target = dest if source_dir.name == 'good' else dest.with_name('elsewhere.tar.gz')\n"
        "    target.write_bytes(b'sdist of ' + source_dir.name.encode())\n"
        "    return target\n"
    )
    _install(site, {module: source}, {"fx_sdist": module}, [])
    plugins = _discover()
    args = {
        "name": "FX.Sdist",
        "version": "1.0",
        "settings": Settings(),
        "environ": {},
        "log": tmp_path / "fx.log",
        "source_date_epoch": 0,
    }
    dest = tmp_path / "builds" / "fx_sdist-1.0.tar.gz"
    (tmp_path / "good").mkdir()
    assert plugin_steps.build_sdist(plugins, tmp_path / "good", dest, **args) == dest
    assert dest.read_bytes() == b"sdist of good"
    (tmp_path / "bad").mkdir()
    with pytest.raises(
        SourceError, match=r"elsewhere\.tar\.gz, not .*fx_sdist-1\.0\.tar\.gz"
    ) as info:
        plugin_steps.build_sdist(plugins, tmp_path / "bad", dest, **args)
    assert (info.value.package, info.value.step) == ("fx-sdist", "build_sdist")
    # a package without the override gets the reproducible re-pack of the tree
    plain = plugin_steps.build_sdist(
        plugins, tmp_path / "good", tmp_path / "plain.tar.gz", **{**args, "name": "fx-plain"}
    )
    assert plain.read_bytes()[:2] == b"\x1f\x8b"  # gzip


def test_build_system_plugin_requirements_keep_only_markers_that_hold(
    site: Path, tmp_path: Path
) -> None:
    module = _unique("build_system_override")
    source = (
        "def get_build_system_dependencies():\n"
        "    return ['fx-old; python_version < \"3\"', 'fx-new>=2']\n"
    )
    _install(site, {module: source}, {"fx_markers": module}, [])
    tree = _source_tree(FixturePackage("fx-markers", build_system_requires=("fx-own",)), tmp_path)
    found = prepared_build_system(
        tree,
        settings=Settings(),
        name="fx-markers",
        version="1.0",
        log=tmp_path / "fx.log",
        plugins=_discover(),
    )
    assert [str(r) for r in found.requires] == ["fx-new>=2"]


def test_prepare_source_override_replaces_unpacking_patches_and_project_override(
    site: Path, tmp_path: Path
) -> None:
    module = _unique("prepare_override")
    source = (
        "def prepare_source(archive, work_dir):\n"
        "    root = work_dir / 'mine'\n"
        "    (root / 'fx_prep').mkdir(parents=True)\n"
        "    (root / 'pyproject.toml').write_text("
        "'[build-system]\\nrequires = [\"fx-base\"]\\n')\n"
        "    return root\n"
    )
    _install(site, {module: source}, {"fx_prep": module}, [])
    overrides = tmp_path / "overrides"
    (overrides / "settings").mkdir(parents=True)
    (overrides / "settings" / "fx_prep.yaml").write_text(
        "project_override:\n  update_build_requires: ['fx-extra']\n"
    )
    (overrides / "patches" / "fx_prep").mkdir(parents=True)
    (overrides / "patches" / "fx_prep" / "0001-any.patch").write_text("not a patch\n")
    settings = load_settings(settings_dir=overrides / "settings", patches_dir=overrides / "patches")
    archive = make_sdist(FixturePackage("fx-prep"), tmp_path / "dl")
    work = tmp_path / "work"
    args = {"settings": settings, "name": "fx-prep", "version": "1.0", "log": tmp_path / "l"}
    prepared = prepare_source(archive, work, plugins=_discover(), **args)
    assert prepared.root == prepared.project_dir == work / "mine"
    assert prepared.patches == ()
    assert [str(r) for r in prepared.build_system.requires] == ["fx-base"]
    # without the plugin: unpacked, and the settings' patch and project_override apply
    with pytest.raises(PatchError, match=re.escape("0001-any.patch")):
        prepare_source(archive, tmp_path / "plain", plugins=Plugins.none(), **args)
