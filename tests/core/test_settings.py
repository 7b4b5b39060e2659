"""Settings: fromager's overrides format, strict validation, env templates, build tags,
patch lookup and fingerprints."""

from __future__ import annotations

import pickle
import textwrap
from pathlib import Path

import pytest

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.settings.layout import default_paths, override_name
from fromager_dagster.core.settings.loading import lint_overrides, list_overrides, load_settings
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.settings.schema import SettingsError
from fromager_dagster.core.settings.sections import DownloadSource
from fromager_dagster.core.settings.template import expand_template, template_problem


class Overrides:
    """An overrides/ folder written in ``tmp_path``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.settings_file = root / "settings.yaml"
        self.settings_dir = root / "settings"
        self.patches_dir = root / "patches"
        self.settings_dir.mkdir(parents=True)
        self.patches_dir.mkdir()

    def package(self, name: str, text: str) -> Path:
        path = self.settings_dir / f"{name}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    def global_(self, text: str) -> Path:
        self.settings_file.write_text(textwrap.dedent(text))
        return self.settings_file

    def patch(self, folder: str, name: str, text: str = "patch\n") -> Path:
        path = self.patches_dir / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        return path

    def load(self, variant: str = "cpu") -> Settings:
        return load_settings(
            settings_file=self.settings_file if self.settings_file.exists() else None,
            settings_dir=self.settings_dir,
            patches_dir=self.patches_dir,
            variant=variant,
        )


@pytest.fixture
def ov(tmp_path: Path) -> Overrides:
    return Overrides(tmp_path / "overrides")


def problems_of(ov: Overrides) -> list[str]:
    with pytest.raises(SettingsError) as info:
        ov.load()
    return list(info.value.problems)


FULL = """
    env:
      CFLAGS: "-O2"
      COUNT: 3
      DEBUG: false
    variants:
      cuda:
        env:
          CFLAGS: "$CFLAGS -DCUDA"
        pre_built: true
        wheel_server_url: https://wheels.example/simple
        annotations:
          team: gpu
    download_source:
      url: "https://src.example/${canonicalized_name}-${version}.tar.gz"
      destination_filename: "${canonicalized_name}-${version}.tar.gz"
    resolver_dist:
      sdist_server_url: https://sdists.example/simple
      include_sdists: true
      include_wheels: true
      ignore_platform: true
      min_release_age: 7
    build_dir: python
    changelog:
      "1.0":
        - rebuilt with new compiler
        - second entry
    config_settings:
      setup-args:
        - "-Dfoo=true"
      --build-option: "--quiet"
    build_options:
      exclusive_build: true
      cpu_cores_per_job: 2
      memory_per_job_gb: 1.5
    git_options:
      submodules: true
      submodule_paths: [vendor/lib]
    project_override:
      update_build_requires: ["setuptools>=70", "cython<3"]
      remove_build_requires: [Ninja]
      requires_external: [openssl-libs]
    annotations:
      maintainer: someone
    purl: "pkg:pypi/my-pkg@1.0"
"""


def test_every_key_is_read(ov: Overrides) -> None:
    ov.package("my_pkg", FULL)
    ov.global_("changelog:\n  cuda: [new toolkit]\nsbom:\n  supplier: 'Organization: X'\n")
    settings = ov.load(variant="cuda")
    pkg = settings.package("My.Pkg")
    assert pkg.name == "my-pkg"
    assert pkg.source_file == ov.settings_dir / "my_pkg.yaml"
    assert dict(pkg.env) == {"CFLAGS": "-O2", "COUNT": "3", "DEBUG": "0"}
    cuda = pkg.for_variant("cuda")
    assert cuda.pre_built is True
    assert cuda.wheel_server_url == "https://wheels.example/simple"
    assert dict(cuda.annotations) == {"team": "gpu"}
    assert pkg.download_source.resolved_url("my-pkg", "1.0") == (
        "https://src.example/my-pkg-1.0.tar.gz"
    )
    assert pkg.download_source.resolved_filename("my-pkg", "1.0") == "my-pkg-1.0.tar.gz"
    assert pkg.resolver_dist.sdist_server_url == "https://sdists.example/simple"
    assert pkg.resolver_dist.include_wheels and pkg.resolver_dist.ignore_platform
    assert pkg.resolver_dist.min_release_age == 7
    assert pkg.build_dir == "python"
    assert dict(pkg.changelog) == {"1.0": ("rebuilt with new compiler", "second entry")}
    assert dict(pkg.config_settings) == {"setup-args": ("-Dfoo=true",), "--build-option": "--quiet"}
    assert pkg.build_options.exclusive_build and settings.exclusive_build("my-pkg")
    assert pkg.build_options.cpu_cores_per_job == 2
    assert pkg.build_options.memory_per_job_gb == 1.5
    assert dict(pkg.git_options) == {"submodules": True, "submodule_paths": ["vendor/lib"]}
    assert pkg.project_override.update_build_requires == ("setuptools>=70", "cython<3")
    assert pkg.project_override.remove_build_requires == ("ninja",)
    assert pkg.project_override.requires_external == ("openssl-libs",)
    assert dict(pkg.annotations) == {"maintainer": "someone"}
    assert pkg.purl == "pkg:pypi/my-pkg@1.0"
    assert settings.pre_built("my_pkg") is True
    assert dict(settings.global_changelog) == {"cuda": ("new toolkit",)}
    assert dict(settings.sbom) == {"supplier": "Organization: X"}
    assert settings.files == (ov.settings_file, ov.settings_dir / "my_pkg.yaml")


def test_package_without_file_gets_defaults(ov: Overrides) -> None:
    settings = ov.load()
    pkg = settings.package("Other_Pkg")
    assert pkg.name == "other-pkg" and pkg.source_file is None
    assert settings.pre_built("other-pkg") is False
    assert settings.exclusive_build("other-pkg") is False
    assert settings.build_tag("other-pkg", "1.0") == 0
    assert settings.environ("other-pkg", "1.0", {"PATH": "/bin"}) == {}


def test_empty_files_and_null_sections_are_defaults(ov: Overrides) -> None:
    ov.package("empty", "")
    ov.package("nulls", "variants:\ndownload_source:\nresolver_dist:\ngit_options:\n")
    ov.global_("")
    settings = ov.load()
    assert settings.package("nulls").resolver_dist.include_sdists is True
    assert settings.package("empty").variants == {}


def test_purl_mapping_form_is_kept(ov: Overrides) -> None:
    ov.package("foo", "purl:\n  type: generic\n  name: foo-fork\n")
    pkg = ov.load().package("foo")
    assert pkg.purl is None
    assert dict(pkg.purl_config) == {"type": "generic", "name": "foo-fork"}


def test_missing_inputs_are_no_settings_but_given_paths_must_exist(tmp_path: Path) -> None:
    settings = load_settings()
    assert settings.packages == {} and settings.patches_dir is None and settings.files == ()
    for kwargs in (
        {"settings_file": tmp_path / "nope.yaml"},
        {"settings_dir": tmp_path / "nope"},
        {"patches_dir": tmp_path / "nope"},
    ):
        with pytest.raises(ConfigError, match="does not exist"):
            load_settings(**kwargs)  # type: ignore[arg-type]
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="is not a folder"):
        load_settings(settings_dir=tmp_path / "file")


def test_default_paths_use_overrides_folder_only_where_it_exists(tmp_path: Path) -> None:
    assert default_paths(root=tmp_path) == (None, None, None)
    (tmp_path / "overrides" / "settings").mkdir(parents=True)
    (tmp_path / "overrides" / "settings.yaml").write_text("")
    explicit = tmp_path / "mine"
    assert default_paths(None, None, explicit, root=tmp_path) == (
        tmp_path / "overrides/settings.yaml",
        tmp_path / "overrides/settings",
        explicit,
    )


def test_default_paths_in_another_overrides_folder(tmp_path: Path) -> None:
    folder = tmp_path / "elsewhere"
    (folder / "patches").mkdir(parents=True)
    (tmp_path / "overrides" / "settings").mkdir(parents=True)  # not looked at
    explicit = tmp_path / "mine.yaml"
    assert default_paths(explicit, root=tmp_path, overrides=folder) == (
        explicit,
        None,
        folder / "patches",
    )


def test_all_problems_of_a_file_are_reported_together(ov: Overrides) -> None:
    path = ov.package(
        "foo",
        """
        build_options:
          exclusive_build: "yes"
          cpu_cores_per_job: 0
          memory_per_job_gb: "lots"
        unknown_key: 1
        envv: {}
        """,
    )
    with pytest.raises(SettingsError) as info:
        ov.load()
    problems = info.value.problems
    assert f"{path}: build_options.exclusive_build: expected true or false, got 'yes'" in problems
    assert f"{path}: build_options.cpu_cores_per_job: expected an integer >= 1, got 0" in problems
    assert f"{path}: build_options.memory_per_job_gb: expected a number >= 0.1, got 'lots'" in (
        problems
    )
    assert any(p.startswith(f"{path}: unknown_key: unknown key") for p in problems)
    assert f"{path}: envv: unknown key; did you mean 'env'?" in problems
    assert len(problems) == 5
    assert str(info.value) == "; ".join(problems)
    assert info.value.one_line().startswith(f"configuration failed: {path}: ")


def test_a_pre_built_variant_may_take_wheels_of_any_platform(ov: Overrides) -> None:
    ov.package(
        "foo",
        """\
        variants:
          cpu:
            pre_built: true
        resolver_dist:
          include_sdists: false
          ignore_platform: true
        """,
    )
    dist = ov.load().package("foo").resolver_dist
    assert (dist.include_sdists, dist.include_wheels, dist.ignore_platform) == (False, False, True)


def test_problems_of_several_files_are_all_reported(ov: Overrides) -> None:
    ov.package("aaa", "pre_built: true\n")
    ov.package("bbb", "build_dir: /abs\n")
    ov.global_("packages: {}\n")
    problems = problems_of(ov)
    assert len(problems) == 3
    assert any("settings.yaml: packages: unknown key" in p for p in problems)
    assert any("aaa.yaml: pre_built: unknown key" in p for p in problems)
    assert any("bbb.yaml: build_dir: expected a relative path" in p for p in problems)


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("env: [a]", "env", "expected a mapping, got a list"),
        ("env:\n  A: [1]", "env.A", "expected a string, number or boolean, got a list"),
        ("env:\n  A: null", "env.A", "expected a string, number or boolean, got null"),
        ("variants:\n  cuda: 3", "variants.cuda", "expected a mapping, got 3"),
        ("variants:\n  cuda:\n    pre_built: 1", "variants.cuda.pre_built", "expected true or"),
        ("variants:\n  cuda:\n    extra: 1", "variants.cuda.extra", "unknown key"),
        (
            "variants:\n  cuda:\n    annotations:\n      a: 1",
            "variants.cuda.annotations.a",
            "string",
        ),
        ("download_source:\n  url: 5", "download_source.url", "expected a string, got 5"),
        (
            "download_source:\n  destination_filename: a/b",
            "download_source.destination_filename",
            "without '/'",
        ),
        ("download_source:\n  sha: x", "download_source.sha", "unknown key"),
        ("resolver_dist:\n  include_sdists: 'no'", "resolver_dist.include_sdists", "true or false"),
        ("resolver_dist:\n  min_release_age: -1", "resolver_dist.min_release_age", ">= 0"),
        (
            "resolver_dist:\n  ignore_platform: true",
            "resolver_dist.ignore_platform",
            "include_wheels",
        ),
        (
            "resolver_dist:\n  include_sdists: false",
            "resolver_dist.include_sdists",
            "no file can be a candidate",
        ),
        ("build_dir: ../up", "build_dir", "relative path inside"),
        ("build_dir: 3", "build_dir", "expected a string"),
        ("changelog: [a]", "changelog", "expected a mapping"),
        ("changelog:\n  '1.0': a", "changelog.1.0", "expected a list of strings, got 'a'"),
        ("changelog:\n  '1.0': [1]", "changelog.1.0", "expected a list of strings"),
        ("changelog:\n  '1.0.x': []", "changelog.1.0.x", "invalid version '1.0.x'"),
        ("changelog:\n  2.0: []", "changelog.2.0", "quoted string"),
        ("changelog:\n  '1.0': []\n  '1.0.0': []", "changelog.1.0.0", "same version as '1.0'"),
        ("config_settings:\n  a: 1", "config_settings.a", "a string or a list of strings"),
        ("config_settings:\n  a: [1]", "config_settings.a", "a string or a list of strings"),
        ("build_options:\n  cpu_cores_per_job: 1.5", "build_options.cpu_cores_per_job", "integer"),
        ("build_options:\n  memory_per_job_gb: 0", "build_options.memory_per_job_gb", ">= 0.1"),
        (
            "build_options:\n  exclusive: true",
            "build_options.exclusive",
            "did you mean 'exclusive_build'",
        ),
        ("git_options:\n  submodules: 'yes'", "git_options.submodules", "true or false"),
        ("git_options:\n  depth: 1", "git_options.depth", "unknown key"),
        (
            "project_override:\n  update_build_requires: ['foo >>> 1']",
            "project_override.update_build_requires[0]",
            "invalid requirement 'foo >>> 1'",
        ),
        (
            "project_override:\n  update_build_requires: 'x'",
            "project_override.update_build_requires",
            "list of strings",
        ),
        (
            "project_override:\n  remove_build_requires: ['not a name!']",
            "project_override.remove_build_requires[0]",
            "invalid package name",
        ),
        (
            "project_override:\n  requires_external: [1]",
            "project_override.requires_external",
            "list of strings",
        ),
        ("annotations:\n  a: [x]", "annotations.a", "expected a string"),
        ("purl: 3", "purl", "a string or a mapping"),
        ("purl:\n  kind: x", "purl.kind", "unknown key"),
        ("- a\n- b", "", "expected a mapping, got a list"),
    ],
)
def test_wrong_types_name_the_key(ov: Overrides, text: str, key: str, expected: str) -> None:
    path = ov.package("foo", text)
    [problem] = problems_of(ov)
    prefix = f"{path}: {key}: " if key else f"{path}: "
    assert problem.startswith(prefix), problem
    assert expected in problem


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("${HOME", "unclosed '${'"),
        ("${__foo__}", "unknown variable ${__foo__}"),
        ("$__bar__", "unknown variable ${__bar__}"),
        ("$(whoami)", "bad placeholder"),
        ("${A:default}", "bad placeholder"),
        ("cost $5", "bad placeholder"),
    ],
)
def test_bad_env_templates(ov: Overrides, value: str, expected: str) -> None:
    path = ov.package("foo", f"variants:\n  rocm:\n    env:\n      X: {value!r}\n")
    [problem] = problems_of(ov)
    assert problem.startswith(f"{path}: variants.rocm.env.X: bad template {value!r}: ")
    assert expected in problem


def test_bad_download_source_template(ov: Overrides) -> None:
    path = ov.package("foo", "download_source:\n  url: 'https://x/${name}/${version:-1}'\n")
    [problem] = problems_of(ov)
    assert problem.startswith(f"{path}: download_source.url: bad template")
    assert "${name}" in problem and "${canonicalized_name} or ${version}" in problem


def test_template_problem_accepts_valid_forms() -> None:
    for value in ("plain", "$A", "${A}", "${A:-}", "${A:-x y}", "$$", "${__version__}", "a$A_b"):
        assert template_problem(value) is None, value
    names = frozenset({"version"})
    assert template_problem("$version-${version}", names=names) is None


def test_settings_file_name_must_be_an_override_name(ov: Overrides) -> None:
    ov.package("My-Pkg", "")
    ov.package("ok_pkg", "env: [broken]")
    problems = problems_of(ov)
    bad = ov.settings_dir / "My-Pkg.yaml"
    assert f"{bad}: file name is not an override name; rename it to my_pkg.yaml" in problems
    assert any(p.startswith(f"{ov.settings_dir / 'ok_pkg.yaml'}: env:") for p in problems)


def test_yaml_syntax_error_names_file_and_line(ov: Overrides) -> None:
    path = ov.package("foo", "env:\n  A: 1\n  B: [unclosed\n")
    [problem] = problems_of(ov)
    assert problem.startswith(f"{path}: line ") and "invalid YAML" in problem


def test_duplicate_yaml_key_is_an_error(ov: Overrides) -> None:
    path = ov.package("foo", "env:\n  A: 1\n  A: 2\n")
    [problem] = problems_of(ov)
    assert problem == f"{path}: line 3: invalid YAML: key 'A' is written twice"


def test_global_settings_keys(ov: Overrides) -> None:
    ov.global_("changelog:\n  cpu: x\nsbom: [1]\nfoo: 1\n")
    problems = problems_of(ov)
    assert len(problems) == 3
    assert any("changelog.cpu: expected a list of strings" in p for p in problems)
    assert any("sbom: expected a mapping" in p for p in problems)
    assert any("foo: unknown key" in p for p in problems)


def test_settings_error_pickles() -> None:
    err = SettingsError("a; b", problems=("a", "b"), package="foo")
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, SettingsError) and back.problems == ("a", "b")
    assert back.package == "foo" and str(back) == "a; b"


# --- build tag ----------------------------------------------------------------------------


def test_build_tag_counts_version_and_variant_entries(ov: Overrides) -> None:
    ov.package("foo", "changelog:\n  '1.0': [a, b]\n  '2.0': [c]\n")
    ov.global_("changelog:\n  cpu: [x]\n  cuda: [y, z]\n")
    cpu, cuda = ov.load(), ov.load(variant="cuda")
    assert cpu.build_tag("foo", "1.0") == 3
    assert cpu.build_tag("foo", "1.0.0") == 3  # versions compared as versions
    assert cpu.build_tag("foo", "1.0+local") == 3  # local label ignored, as fromager
    assert cpu.build_tag("foo", "2.0") == 2
    assert cpu.build_tag("foo", "3.0") == 1
    assert cuda.build_tag("foo", "1.0") == 4
    assert cpu.build_tag("bar", "1.0") == 1


def test_pre_built_package_has_no_build_tag(ov: Overrides) -> None:
    ov.package("foo", "changelog:\n  '1.0': [a]\nvariants:\n  cuda:\n    pre_built: true\n")
    assert ov.load().build_tag("foo", "1.0") == 1
    assert ov.load(variant="cuda").build_tag("foo", "1.0") == 0


# --- environment --------------------------------------------------------------------------


def test_environ_expands_templates_in_order(ov: Overrides) -> None:
    ov.package(
        "foo",
        """
        env:
          PREFIX: "${BASE}/opt"
          FLAGS: "-I$PREFIX/include -v${__version__}"
          UNSET: "[$NOT_SET_ANYWHERE]"
          WITH_DEFAULT: "${MISSING:-fallback}"
          SET_DEFAULT: "${BASE:-unused}"
          MONEY: "$$5"
          SAME: "same"
        variants:
          cuda:
            env:
              FLAGS: "$FLAGS -DCUDA"
              PREFIX: "/cuda${PREFIX}"
        """,
    )
    base = {"BASE": "/base", "SAME": "same"}
    cpu = ov.load().environ("foo", "1.2", base)
    assert cpu == {
        "PREFIX": "/base/opt",
        "FLAGS": "-I/base/opt/include -v1.2",
        "UNSET": "[]",
        "WITH_DEFAULT": "fallback",
        "SET_DEFAULT": "/base",
        "MONEY": "$5",
    }
    cuda = ov.load(variant="cuda").environ("foo", "1.2", base)
    assert cuda["FLAGS"] == "-I/base/opt/include -v1.2 -DCUDA"
    assert cuda["PREFIX"] == "/cuda/base/opt"
    assert base == {"BASE": "/base", "SAME": "same"}  # not modified


def test_expand_template_default_only_when_unset() -> None:
    assert expand_template("${A:-d}", {"A": ""}) == ""
    assert expand_template("${A:-d}/$A", {}) == "d/d"  # fromager: the default applies to $A too
    assert expand_template("x${B}y", {}) == "xy"


# --- patches ------------------------------------------------------------------------------


def test_patches_merge_unversioned_versioned_and_variant_sorted_by_name(ov: Overrides) -> None:
    ov.patch("foo_bar", "0002-all.patch")
    ov.patch("foo_bar", "0005-all.patch")
    ov.patch("foo_bar-1.0", "0001-one.patch")
    ov.patch("foo_bar-1.0", "0004-one.patch")
    ov.patch("foo_bar-2.0", "0003-two.patch")
    ov.patch("foo_bar/cuda", "0003-cuda-all.patch")
    ov.patch("foo_bar-1.0/cuda", "0000-cuda-one.patch")
    ov.patch("foo_bar-1.0/rocm", "0000-rocm.patch")
    ov.patch("foo_bar", "notes.txt")
    ov.patch("foo_barista", "0000-other-package.patch")
    cpu = ov.load()
    names = [p.name for p in cpu.patches("Foo-Bar", "1.0")]
    assert names == ["0001-one.patch", "0002-all.patch", "0004-one.patch", "0005-all.patch"]
    assert [p.name for p in cpu.patches("foo-bar", "1.0.0+local")] == names
    assert [p.name for p in cpu.patches("foo-bar", "2.0")] == [
        "0002-all.patch",
        "0003-two.patch",
        "0005-all.patch",
    ]
    assert [p.name for p in cpu.patches("foo-bar", "3.0")] == ["0002-all.patch", "0005-all.patch"]
    cuda = ov.load(variant="cuda")
    assert [p.name for p in cuda.patches("foo-bar", "1.0")] == [
        "0000-cuda-one.patch",
        "0001-one.patch",
        "0002-all.patch",
        "0003-cuda-all.patch",
        "0004-one.patch",
        "0005-all.patch",
    ]
    assert (
        cuda.patches("foo-bar", "1.0")[0] == ov.patches_dir / "foo_bar-1.0/cuda/0000-cuda-one.patch"
    )


def test_patches_without_patches_dir(ov: Overrides) -> None:
    assert load_settings().patches("foo", "1.0") == []


def test_patch_folder_with_bad_version_is_an_error(ov: Overrides) -> None:
    ov.patch("foo-bar", "0001.patch")
    with pytest.raises(ConfigError, match=r"'bar' is not a version.*foo_bar"):
        ov.load().patches("foo", "1.0")


# --- fingerprint --------------------------------------------------------------------------


def test_fingerprint_is_deterministic_and_changes_with_each_input(ov: Overrides) -> None:
    def fp(variant: str = "cpu", version: str = "1.0") -> str:
        return ov.load(variant).fingerprint("foo", version)

    seen = {fp()}
    assert fp() in seen and len(fp()) == 64

    def changed() -> None:
        value = fp()
        assert value not in seen
        seen.add(value)

    steps = [
        lambda: ov.package("foo", "env:\n  A: x\n"),
        lambda: ov.package("foo", "env:\n  A: y\n"),
        lambda: ov.package("foo", "env:\n  A: y\nconfig_settings:\n  k: v\n"),
        lambda: ov.package("foo", "env:\n  A: y\nconfig_settings:\n  k: [v]\n"),
        lambda: ov.package("foo", "env:\n  A: y\nchangelog:\n  '1.0': [a]\n"),
        lambda: ov.global_("changelog:\n  cpu: [b]\n"),
        lambda: ov.package("foo", "project_override:\n  remove_build_requires: [x]\n"),
        lambda: ov.package("foo", "download_source:\n  url: https://x/$version\n"),
        lambda: ov.package("foo", "build_dir: sub\n"),
        lambda: ov.package("foo", "variants:\n  cpu:\n    pre_built: true\n"),
        lambda: ov.patch("foo", "0001.patch", "one\n"),
        lambda: ov.patch("foo", "0001.patch", "two\n"),
        lambda: (ov.patches_dir / "foo/0001.patch").rename(ov.patches_dir / "foo/0002.patch"),
        lambda: ov.patch("foo-1.0", "0003.patch", "three\n"),
        # what wheel_extras writes into the wheel changes its bytes
        lambda: ov.package("foo", "project_override:\n  requires_external: [libx]\n"),
        lambda: ov.package("foo", "annotations:\n  a: b\n"),
        lambda: ov.package("foo", "annotations:\n  a: c\n"),
        lambda: ov.package("foo", "variants:\n  cpu:\n    annotations: {a: c}\n"),
        lambda: ov.package("foo", "purl: 'pkg:generic/{name}@{version}'\n"),
        lambda: ov.package("foo", "purl:\n  namespace: acme\n"),
        lambda: ov.package("foo", "purl:\n  namespace: other\n"),
        lambda: ov.global_("changelog:\n  cpu: [b]\nsbom:\n"),  # empty: on, the defaults
        lambda: ov.global_("changelog:\n  cpu: [b]\nsbom:\n  purl_type: generic\n"),
    ]
    for step in steps:
        step()
        changed()
    # settings that do not change the build leave it alone
    before = fp()
    ov.package("bar", "annotations:\n  a: b\npurl: 'pkg:generic/{name}@{version}'\n")
    ov.package("foo", (ov.settings_dir / "foo.yaml").read_text() + "variants:\n  cuda: {}\n")
    ov.patch("foo-9.9", "0009.patch")
    assert fp() == before
    ov.package("foo", "purl:\n  namespace: other\nvariants:\n  cuda:\n    annotations: {a: b}\n")
    assert fp() == before  # another variant's annotations
    assert fp(version="2.0") != before  # 0003.patch is for 1.0 only


def test_sbom_section_changes_every_package_fingerprint(ov: Overrides) -> None:
    """A package without a settings file has the default fingerprint; ``sbom:`` changes it."""
    assert ov.load().sbom is None
    ov.global_("changelog:\n  cpu: [b]\n")
    before = ov.load().fingerprint("no-file", "1.0")
    assert ov.load().sbom is None
    for text in ("sbom:\n", "sbom: {}\n"):  # present but empty: on, as in fromager
        ov.global_("changelog:\n  cpu: [b]\n" + text)
        assert ov.load().sbom == {}
        assert ov.load().fingerprint("no-file", "1.0") != before
    empty = ov.load().fingerprint("no-file", "1.0")
    ov.global_("changelog:\n  cpu: [b]\nsbom:\n  supplier: 'Organization: X'\n")
    assert ov.load().fingerprint("no-file", "1.0") not in {before, empty}


def test_fingerprint_ignores_the_process_environment(
    ov: Overrides, monkeypatch: pytest.MonkeyPatch
) -> None:
    ov.package("foo", "env:\n  P: '$HOME/x'\n")
    monkeypatch.setenv("HOME", "/one")
    first = ov.load().fingerprint("foo", "1.0")
    monkeypatch.setenv("HOME", "/two")
    assert ov.load().fingerprint("foo", "1.0") == first


# --- listing and lint ---------------------------------------------------------------------


def test_list_overrides_from_settings_files_and_patch_folders(ov: Overrides) -> None:
    ov.package("zeta", "")
    ov.package("alpha_beta", "")
    ov.patch("gamma-1.0", "0001.patch")
    ov.patch("delta/cuda", "0001.patch")
    ov.patch("alpha_beta", "0001.patch")
    (ov.patches_dir / "empty_folder").mkdir()
    assert list_overrides(ov.load()) == ["alpha-beta", "delta", "gamma", "zeta"]


def test_lint_reports_settings_and_folder_names(ov: Overrides) -> None:
    ov.package("good", "env:\n  A: b\n")
    ov.package("bad", "build_options:\n  exclusive_build: 'yes'\n")
    (ov.settings_dir / "notes.txt").write_text("")
    ov.patch("good", "0001.patch")
    ov.patch("good-1.0", "0001.patch")
    ov.patch("Bad-Name-1.0", "0001.patch")
    ov.patch("foo-bar", "0001.patch")
    (ov.patches_dir / "stray.patch").write_text("")
    report = lint_overrides(settings_dir=ov.settings_dir, patches_dir=ov.patches_dir)
    assert report.settings_files == 2 and report.patch_folders == 4
    assert set(report.problems) == {
        (
            f"{ov.settings_dir / 'bad.yaml'}: build_options.exclusive_build: "
            "expected true or false, got 'yes'"
        ),
        f"{ov.settings_dir / 'notes.txt'}: not a .yaml file; fromager reads only *.yaml here",
        (
            f"{ov.patches_dir / 'Bad-Name-1.0'}: folder name is not an override name; "
            "rename it to bad_name-1.0"
        ),
        (
            f"{ov.patches_dir / 'foo-bar'}: not <override_name> or <override_name>-<version>; "
            "did you mean foo_bar?"
        ),
        (
            f"{ov.patches_dir / 'stray.patch'}: not a folder; "
            "patches go in <override_name>[-<version>]/"
        ),
    }


def test_lint_clean_folder(ov: Overrides) -> None:
    ov.package("good", "")
    ov.global_("")
    ov.patch("good", "0001.patch")
    report = lint_overrides(
        settings_file=ov.settings_file, settings_dir=ov.settings_dir, patches_dir=ov.patches_dir
    )
    assert report.problems == () and report.settings_files == 2 and report.patch_folders == 1


def test_override_name() -> None:
    assert override_name("Foo.Bar-baz") == "foo_bar_baz"


def test_download_source_without_templates() -> None:
    assert DownloadSource().resolved_url("x", "1") is None
