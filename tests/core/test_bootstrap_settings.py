"""Bootstrap with an overrides folder: env, config_settings, changelog, patches, variants,
pre-built packages, project overrides; and the run modes (test mode, skip constraints,
multiple versions)."""

from __future__ import annotations

import json
import tarfile
import zipfile
from pathlib import Path

import pytest

from fromager_dagster.core.bootstrap.run import BootstrapFailed, BootstrapOptions, bootstrap
from fromager_dagster.core.errors import PatchError, ResolutionError
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository.built import take_prebuilt
from fromager_dagster.core.resolve.requirements import Constraints, parse_requirement
from fromager_dagster.core.settings.layout import default_paths
from fromager_dagster.core.settings.loading import load_settings
from tests.fixtures.packages import FixturePackage, Upstream, make_wheel

ADD_FILE_PATCH = """\
--- /dev/null
+++ b/fx_a/patched.txt
@@ -0,0 +1 @@
+patched by overrides
"""

BAD_PATCH = """\
--- a/fx_a/__init__.py
+++ b/fx_a/__init__.py
@@ -1,3 +1,3 @@
 nothing like this
-is in the file
+so it cannot apply
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def run(
    upstream: Upstream,
    out: Path,
    reqs: list[str],
    overrides: Path | None = None,
    *,
    variant: str = "cpu",
    constraints: list[str] = [],  # noqa: B006
    **options: object,
):
    url = upstream.server.url if upstream.server else upstream.start()
    found = default_paths(root=overrides.parent) if overrides else (None, None, None)
    settings = load_settings(
        settings_file=found[0], settings_dir=found[1], patches_dir=found[2], variant=variant
    )
    return bootstrap(
        [parse_requirement(r) for r in reqs],
        index=IndexClient(url),
        constraints=Constraints.from_lines([("test", c) for c in constraints]),
        layout=OutputLayout(out),
        options=BootstrapOptions(**{"jobs": 2, "isolate": False, **options}),  # type: ignore[arg-type]
        settings=settings,
    )


def wheel_json(wheel: Path, member: str) -> dict:
    with zipfile.ZipFile(wheel) as zf:
        return json.loads(zf.read(member))


RECORDING = FixturePackage("fx-a", record_env=("FX_GREETING", "FX_BASE"))


def test_env_config_settings_and_changelog_reach_the_build(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(RECORDING)
    overrides = tmp_path / "overrides"
    write(overrides / "settings.yaml", "changelog:\n  cpu: [rebuilt for the new toolchain]\n")
    write(
        overrides / "settings" / "fx_a.yaml",
        "env:\n"
        "  FX_BASE: base\n"
        "  FX_GREETING: hello-${__version__}-$FX_BASE\n"
        "config_settings:\n"
        "  opt: one\n"
        "changelog:\n"
        '  "1.0": [first fix, second fix]\n'
        "variants:\n"
        "  cuda:\n"
        "    env:\n"
        "      FX_GREETING: gpu\n",
    )
    result = run(upstream, tmp_path / "out", ["fx-a"], overrides)
    wheel = tmp_path / "out" / "wheels-repo" / "downloads" / "fx_a-1.0-3-py3-none-any.whl"
    assert result.built == ["fx-a==1.0"] and wheel.is_file()  # 2 package + 1 global entries
    seen = wheel_json(wheel, "fx_a/build-env.json")
    assert seen["env"] == {"FX_GREETING": "hello-1.0-base", "FX_BASE": "base"}
    assert seen["config_settings"] == {"opt": "one"}

    cuda = run(upstream, tmp_path / "cuda", ["fx-a"], overrides, variant="cuda")
    assert cuda.built == ["fx-a==1.0"]
    # the global changelog is per variant: only the package's two entries count for cuda
    wheel = tmp_path / "cuda" / "wheels-repo" / "downloads" / "fx_a-1.0-2-py3-none-any.whl"
    assert wheel_json(wheel, "fx_a/build-env.json")["env"]["FX_GREETING"] == "gpu"


def test_changed_settings_rebuild_instead_of_reusing(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(RECORDING)
    overrides = tmp_path / "overrides"
    settings = write(overrides / "settings" / "fx_a.yaml", "env:\n  FX_GREETING: one\n")
    assert run(upstream, tmp_path / "out", ["fx-a"], overrides).built == ["fx-a==1.0"]
    assert run(upstream, tmp_path / "out", ["fx-a"], overrides).reused == ["fx-a==1.0"]
    settings.write_text("env:\n  FX_GREETING: two\n", encoding="utf-8")
    again = run(upstream, tmp_path / "out", ["fx-a"], overrides)
    assert again.built == ["fx-a==1.0"] and again.reused == []


def test_patches_are_applied_logged_and_repacked(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a"))
    overrides = tmp_path / "overrides"
    write(overrides / "patches" / "fx_a-1.0" / "0001-add-file.patch", ADD_FILE_PATCH)
    write(overrides / "patches" / "fx_a-2.0" / "0001-other-version.patch", BAD_PATCH)
    out = tmp_path / "out"
    run(upstream, out, ["fx-a"], overrides)
    with zipfile.ZipFile(out / "wheels-repo" / "downloads" / "fx_a-1.0-0-py3-none-any.whl") as zf:
        assert zf.read("fx_a/patched.txt") == b"patched by overrides\n"
    with tarfile.open(out / "sdists-repo" / "builds" / "fx_a-1.0.tar.gz") as tf:
        assert "fx_a-1.0/fx_a/patched.txt" in tf.getnames()
    log = (out / "work-dir" / "logs" / "fx-a-1.0.log").read_text(encoding="utf-8")
    assert "0001-add-file.patch" in log and "0001-other-version.patch" not in log


def test_a_patch_that_does_not_apply_fails_naming_it(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a"), FixturePackage("fx-b"))
    overrides = tmp_path / "overrides"
    write(overrides / "patches" / "fx_a" / "0001-bad.patch", BAD_PATCH)
    with pytest.raises(BootstrapFailed) as info:
        run(upstream, tmp_path / "out", ["fx-a", "fx-b"], overrides)
    (failure,) = info.value.failures
    assert isinstance(failure, PatchError)
    assert failure.package == "fx-a" and "0001-bad.patch" in failure.one_line()
    # the independent package still built
    assert list((tmp_path / "out" / "wheels-repo" / "downloads").glob("fx_b-1.0-*.whl"))


def test_project_override_changes_build_system_requirements(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(
        FixturePackage("fx-a", build_system_requires=("fx-old",)),
        FixturePackage("fx-tool"),
    )
    overrides = tmp_path / "overrides"
    write(
        overrides / "settings" / "fx_a.yaml",
        "project_override:\n  remove_build_requires: [fx-old]\n"
        "  update_build_requires: ['fx-tool>=1.0']\n",
    )
    result = run(upstream, tmp_path / "out", ["fx-a"], overrides)
    graph = result.graph.to_json()
    assert [(e["req_type"], e["key"], e["req"]) for e in graph["fx-a==1.0"]["edges"]] == [
        ("build-system", "fx-tool==1.0", "fx-tool>=1.0")
    ]


def test_pre_built_package_is_downloaded_not_built(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a", install_requires=("fx-b",)), FixturePackage("fx-b"))
    make_wheel(FixturePackage("fx-b"), upstream.folder)
    overrides = tmp_path / "overrides"
    write(overrides / "settings" / "fx_b.yaml", "variants:\n  cpu:\n    pre_built: true\n")
    out = tmp_path / "out"
    result = run(upstream, out, ["fx-a"], overrides)
    assert result.built == ["fx-a==1.0"] and result.prebuilt == ["fx-b==1.0"]
    assert (out / "wheels-repo" / "prebuilt" / "fx_b-1.0-py3-none-any.whl").is_file()
    graph = json.loads((out / "work-dir" / "graph.json").read_text())
    assert graph["fx-b==1.0"]["pre_built"] is True
    assert graph["fx-b==1.0"]["download_url"].endswith("fx_b-1.0-py3-none-any.whl")
    order = {e["dist"]: e for e in json.loads((out / "work-dir" / "build-order.json").read_text())}
    assert (order["fx-b"]["prebuilt"], order["fx-b"]["source_url_type"]) == (True, "prebuilt")
    assert (order["fx-a"]["prebuilt"], order["fx-a"]["source_url_type"]) == (False, "sdist")


def test_test_mode_keeps_going_falls_back_and_reports(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(
        FixturePackage("fx-a", install_requires=("fx-broken", "fx-lost")),
        FixturePackage("fx-broken", fail_build=True),
        FixturePackage("fx-lost", fail_build=True),
        FixturePackage("fx-fine"),
        FixturePackage("fx-old"),
    )
    make_wheel(FixturePackage("fx-broken"), upstream.folder)  # fx-lost has no fallback
    out = tmp_path / "out"
    result = run(upstream, out, ["fx-a", "fx-fine", "fx-old>=2"], test_mode=True)
    assert sorted(result.built) == ["fx-a==1.0", "fx-fine==1.0"]
    assert result.prebuilt == ["fx-broken==1.0"]
    assert result.failure_report is not None
    assert result.failure_report.parent == out / "work-dir"
    assert result.failure_report.name.startswith("test-mode-failures-")
    report = json.loads(result.failure_report.read_text())
    by_package = {f["package"]: f for f in report["failures"]}
    assert sorted(by_package) == ["fx-broken", "fx-lost", "fx-old"]
    assert by_package["fx-lost"]["version"] == "1.0"
    assert by_package["fx-old"]["failure_type"] == "resolution"
    assert by_package["fx-old"]["version"] is None
    assert by_package["fx-broken"]["failure_type"] == "bootstrap"
    for failure in report["failures"]:
        assert set(failure) == {
            "package",
            "version",
            "exception_type",
            "exception_message",
            "failure_type",
        }
    graph = json.loads((out / "work-dir" / "graph.json").read_text())
    assert graph["fx-broken==1.0"]["pre_built"] is True


def test_skip_constraints_and_multiple_versions(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a", "1.0"), FixturePackage("fx-a", "1.1"))
    plain = run(upstream, tmp_path / "plain", ["fx-a"], skip_constraints=True)
    assert "constraints" not in plain.outputs
    assert not (tmp_path / "plain" / "work-dir" / "constraints.txt").exists()
    assert sorted(k for k in plain.graph.nodes if k) == ["fx-a==1.1"]

    many = run(upstream, tmp_path / "many", ["fx-a>=1.0"], multiple_versions=True)
    assert sorted(k for k in many.graph.nodes if k) == ["fx-a==1.0", "fx-a==1.1"]
    assert sorted(many.built) == ["fx-a==1.0", "fx-a==1.1"]
    assert not (tmp_path / "many" / "work-dir" / "constraints.txt").exists()


def test_installed_plugin_overrides_steps_and_its_hook_runs(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """tests/fixtures/plugin_example (installed by `make setup`) plugs fixture-plugged."""
    upstream.add(
        FixturePackage("fixture-plugged", record_env=("FIXTURE_PLUGGED",)),
        FixturePackage("fixture-plugged-helper"),
    )
    hook_log = tmp_path / "post-build.jsonl"
    monkeypatch.setenv("FROMAGER_DAGSTER_PLUGIN_EXAMPLE_LOG", str(hook_log))
    out = tmp_path / "out"
    result = run(upstream, out, ["fixture-plugged"])
    graph = result.graph.to_json()
    assert [
        (e["req_type"], e["key"], e["req"]) for e in graph["fixture-plugged==1.0"]["edges"]
    ] == [("build-system", "fixture-plugged-helper==1.0", "fixture-plugged-helper>=1.0")]
    wheel = out / "wheels-repo" / "downloads" / "fixture_plugged-1.0-0-py3-none-any.whl"
    seen = wheel_json(wheel, "fixture_plugged/build-env.json")
    assert seen["env"] == {"FIXTURE_PLUGGED": "fixture-plugged==1.0"}
    lines = [json.loads(line) for line in hook_log.read_text().splitlines()]
    assert sorted((x["name"], x["wheel"], x["sdist"]) for x in lines) == [
        ("fixture-plugged", wheel.name, "fixture_plugged-1.0.tar.gz"),
        (
            "fixture-plugged-helper",
            "fixture_plugged_helper-1.0-0-py3-none-any.whl",
            "fixture_plugged_helper-1.0.tar.gz",
        ),
    ]


def test_git_requirement_is_cloned_built_and_recorded(upstream: Upstream, tmp_path: Path) -> None:
    from tests.core.test_vcs import commit_all, git, write_tree

    repo = tmp_path / "fx-git-repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    write_tree(FixturePackage("fx-git", version="1.0", install_requires=("fx-dep",)), repo)
    sha = commit_all(repo, "fx-git 1.0")
    git(repo, "tag", "v1.0")
    upstream.add(FixturePackage("fx-dep"))
    out = tmp_path / "out"
    result = run(upstream, out, [f"fx-git @ git+file://{repo}@v1.0"])
    assert sorted(result.built) == ["fx-dep==1.0", "fx-git==1.0"]
    node = result.graph.to_json()["fx-git==1.0"]
    assert node["download_url"] == f"git+file://{repo}@{sha}"
    assert (out / "sdists-repo" / "downloads" / "fx_git-1.0.tar.gz").is_file()


def test_resolver_dist_include_wheels_takes_the_index_wheel_pre_built(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(FixturePackage("fx-a", install_requires=("fx-b",)), FixturePackage("fx-b"))
    make_wheel(FixturePackage("fx-b"), upstream.folder)
    overrides = tmp_path / "overrides"
    write(overrides / "settings" / "fx_b.yaml", "resolver_dist:\n  include_wheels: true\n")
    out = tmp_path / "out"
    result = run(upstream, out, ["fx-a"], overrides)
    assert result.built == ["fx-a==1.0"] and result.prebuilt == ["fx-b==1.0"]
    assert (out / "wheels-repo" / "prebuilt" / "fx_b-1.0-py3-none-any.whl").is_file()
    assert not list((out / "wheels-repo" / "downloads").glob("fx_b-*"))
    assert not list((out / "sdists-repo" / "downloads").glob("fx_b-*"))
    graph = json.loads((out / "work-dir" / "graph.json").read_text())
    assert graph["fx-b==1.0"]["pre_built"] is True
    assert graph["fx-b==1.0"]["download_url"].endswith("fx_b-1.0-py3-none-any.whl")
    assert graph["fx-a==1.0"]["pre_built"] is False  # its index has no wheel of fx-a anyway


def test_resolver_dist_without_sdists_fails_in_one_line_on_an_sdist_only_index(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(FixturePackage("fx-a", install_requires=("fx-b",)), FixturePackage("fx-b"))
    overrides = tmp_path / "overrides"
    write(
        overrides / "settings" / "fx_b.yaml",
        "resolver_dist:\n  include_sdists: false\n  include_wheels: true\n",
    )
    with pytest.raises(BootstrapFailed) as info:
        run(upstream, tmp_path / "out", ["fx-a"], overrides)
    (failure,) = info.value.failures
    assert isinstance(failure, ResolutionError) and failure.package == "fx-b"
    assert "\n" not in failure.message
    assert failure.message == (
        "fx-b: no file on the index is a candidate under resolver_dist include_sdists=false, "
        "include_wheels=true, ignore_platform=false: the index has 1 sdist and 0 wheels; "
        "set resolver_dist.include_sdists: true (install requirement 'fx-b' of fx-a==1.0)"
    )


def test_pre_built_wheel_comes_from_the_variants_wheel_server(
    upstream: Upstream, tmp_path: Path
) -> None:
    """``variants.<v>.wheel_server_url``: a package pre-built in that variant is taken from
    that server (here the main index has only its sdist); other variants ignore it."""
    upstream.add(FixturePackage("fx-a", install_requires=("fx-b",)), FixturePackage("fx-b"))
    wheels = tmp_path / "wheel-server"
    make_wheel(FixturePackage("fx-b"), wheels)
    with LocalIndexServer([wheels]) as server:
        overrides = tmp_path / "overrides"
        write(
            overrides / "settings" / "fx_b.yaml",
            f"variants:\n  cpu:\n    pre_built: true\n    wheel_server_url: {server.url}\n",
        )
        out = tmp_path / "out"
        result = run(upstream, out, ["fx-a"], overrides)
        assert result.built == ["fx-a==1.0"] and result.prebuilt == ["fx-b==1.0"]
        graph = json.loads((out / "work-dir" / "graph.json").read_text())
        assert graph["fx-b==1.0"]["download_url"].startswith(server.url.split("/simple")[0])
        # a hermetic build of the graph on a fresh repository takes it from there too
        layout = OutputLayout(tmp_path / "again")
        settings = load_settings(settings_dir=overrides / "settings")
        taken = take_prebuilt(
            layout,
            "fx-b",
            "1.0",
            index=IndexClient(upstream.server.url),
            settings=settings,
            plugins=Plugins.load(),
        )
        assert taken.path.parent == layout.wheels_prebuilt and taken.path.is_file()
    # without the server setting, the main index has no wheel of fx-b: the pre-built one fails
    plain = tmp_path / "plain" / "overrides"
    write(plain / "settings" / "fx_b.yaml", "variants:\n  cpu:\n    pre_built: true\n")
    with pytest.raises(BootstrapFailed, match="fx-b"):
        run(upstream, tmp_path / "plain" / "out", ["fx-a"], plain)
