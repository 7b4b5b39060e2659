"""Wheel assets from a graph: keys, deps, groups, tags, code versions, checks; a real build."""

import hashlib
import json
import pickle
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.core.errors import BuildError, HashMismatchError, SourceError, is_transient
from fromager_dagster.core.graph import build_lanes
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.defs.collections import Collection
from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource
from fromager_dagster.defs.wheels import code_version, key_part, tag_value
from tests.defs.conftest import CHAIN, discover


def _node(name: str, version: str, edges: list[tuple[str, str]]) -> dict[str, object]:
    return {
        "download_url": f"http://127.0.0.1:1/files/{name}-{version}.tar.gz",
        "pre_built": False,
        "version": version,
        "canonicalized_name": name,
        "constraint": None,
        "edges": [{"key": k, "req_type": t, "req": k.split("==")[0]} for k, t in edges],
    }


GRAPH = {
    "": {**_node("", "0", [("app==1.0+local", "toplevel")]), "download_url": ""},
    "app==1.0+local": _node("app", "1.0+local", [("lib==2.0", "build-system")]),
    "lib==2.0": _node("lib", "2.0", [("tool==1!3.0", "build-backend"), ("dep==1.0", "install")]),
    "tool==1!3.0": _node("tool", "1!3.0", []),
    "dep==1.0": _node("dep", "1.0", []),
}


@pytest.fixture
def written(tmp_path: Path) -> Collection:
    out = tmp_path / "out"
    (out / "work-dir").mkdir(parents=True)
    (out / "work-dir" / "graph.json").write_text(json.dumps(GRAPH))
    return Collection(
        name="my-set", requirements=("app",), output_dir=out, exclusive_build=("tool",)
    )


def test_key_and_tag_sanitising() -> None:
    assert key_part("1!2.0+cu12.x/y") == "1__2.0_cu12.x_y"
    assert tag_value("a==1.0") == "a__1.0"


def test_assets_follow_the_graph(written: Collection) -> None:
    defs = build_definitions({"my-set": written}, concurrency=2)
    dg.Definitions.validate_loadable(defs)
    graph = DependencyGraph.load(written.graph_path)
    specs = {s.key: s for a in defs.assets or [] for s in a.specs}  # type: ignore[union-attr]
    key = dg.AssetKey
    app = key(["wheels", "cpu", "app", "app-1.0_local"])
    lib = key(["wheels", "cpu", "lib", "lib-2.0"])
    tool, dep = (
        key(["wheels", "cpu", "tool", "tool-1__3.0"]),
        key(["wheels", "cpu", "dep", "dep-1.0"]),
    )
    found = key(["discovery", "my_set", "my_set-graph"])
    sbom = key(["sbom", "my_set", "my_set-sbom"])  # the collection's SBOM, after every wheel
    assert set(specs) == {app, lib, tool, dep, found, sbom}
    specs.pop(sbom)
    # the node labels (last key part) name the package and its version
    assert {k.path[-1] for k in specs} == {
        "app-1.0_local",
        "lib-2.0",
        "tool-1__3.0",
        "dep-1.0",
        "my_set-graph",
    }
    # build deps = direct build children + their install closure; install deps are not deps;
    # every wheel is downstream of the discovery that grew it
    assert {d.asset_key for d in specs[app].deps} == {found, lib, dep}
    assert {d.asset_key for d in specs[lib].deps} == {found, tool}
    assert {d.asset_key for d in specs[dep].deps} == {found}
    assert specs[app].group_name == "my_set"
    assert specs[found].group_name == "my_set_discovery"
    assert "no build requirements" not in (specs[lib].description or "")
    assert "tool==1!3.0" in (specs[lib].description or "")
    assert all(v != "" for s in specs.values() for v in s.metadata.values())
    assert set(specs[app].kinds) == {"python", "wheel"}
    assert specs[app].tags["package"] == "app" and specs[app].tags["version"] == "1.0_local"
    assert specs[app].metadata["requirement"] == "app==1.0+local"
    expected = hashlib.sha256(
        json.dumps(
            {
                "source": GRAPH["app==1.0+local"]["download_url"],
                "build_requirements": ["dep==1.0", "lib==2.0"],
                "variant": "cpu",
                "settings": Settings().fingerprint("app", "1.0+local"),
            },
            sort_keys=True,
        ).encode()
    ).hexdigest()
    assert specs[app].code_version == expected
    assert expected == code_version(graph, "app==1.0+local", Settings())
    # one install check per wheel, all in one op that runs after the run's wheels
    assert not any(a.check_specs for a in defs.assets or [])  # type: ignore[union-attr]
    checks = {
        (k.asset_key, k.name)
        for c in defs.asset_checks or []
        for k in c.check_keys  # type: ignore[union-attr]
    }
    installs = [c for c in defs.asset_checks or [] if "installs_and_imports" in str(c.check_keys)]
    assert len(installs) == 1  # one op for every wheel's install check
    assert {k for k in checks if k[1] == "installs_and_imports"} == {
        (k, "installs_and_imports") for k in (app, lib, tool, dep)
    }
    # the collection SBOM's check of every wheel's provenance, the optional reproducible one
    assert {name for _, name in checks} == {
        "installs_and_imports",
        "provenance_verified",
        "reproducible",
    }
    # lanes: the exclusive build takes every lane, the others exactly one
    ops = {a.op.name: a.op.tags for a in defs.assets or []}  # type: ignore[union-attr]
    assert {k for k in ops["build_my_set_tool_1_3_0"] if k.startswith("lane_")} == {
        "lane_0",
        "lane_1",
    }
    assert len([k for k in ops["build_my_set_app_1_0_local"] if k.startswith("lane_")]) == 1
    # no build job of its own: a build is a run of the implicit asset job selecting the group
    job_names = {j.name for j in defs.jobs or []}
    assert job_names == {"discover_my_set_job"}
    assert wheel_keys(defs, written) == sorted([app, lib, tool, dep])


def test_no_graph_means_discovery_only(tmp_path: Path) -> None:
    col = Collection(name="empty", requirements=("x",), output_dir=tmp_path / "none")
    defs = build_definitions({"empty": col})
    dg.Definitions.validate_loadable(defs)
    assert [s.key for a in defs.assets or [] for s in a.specs] == [  # type: ignore[union-attr]
        dg.AssetKey(["discovery", "empty", "empty-graph"])
    ]


def test_transient_classification() -> None:
    assert is_transient(SourceError("download reset"))
    assert is_transient(OSError("killed"))
    assert not is_transient(HashMismatchError("bad hash"))
    failed = BuildError("PEP 517 hook build_wheel exited with status 1", exit_code=1)
    assert not is_transient(failed)
    assert is_transient(BuildError("PEP 517 hook build_wheel was killed", exit_code=-9))
    # the decision reads the exit code, not the message
    assert not is_transient(BuildError("PEP 517 hook build_wheel exited with status -9"))
    assert not is_transient(BuildError("uv failed", exit_code=2))
    assert is_transient(BuildError("exited with status 1", exit_code=1), flaky=True)


def test_killed_process_is_transient_across_processes() -> None:
    """A process killed by a signal, as subprocess reports it, survives pickling (step
    processes send errors to the orchestrator) and is retried; a plain failure is not."""
    code = "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"
    killed = subprocess.run([sys.executable, "-c", code], check=False).returncode
    failed = subprocess.run([sys.executable, "-c", "raise SystemExit(3)"], check=False).returncode
    assert killed == -signal.SIGKILL and failed == 3
    for exit_code, transient in ((killed, True), (failed, False)):
        error = BuildError(f"hook exited with status {exit_code}", exit_code=exit_code)
        copy = pickle.loads(pickle.dumps(error))
        assert (copy.exit_code, copy.killed, is_transient(copy)) == (
            exit_code,
            transient,
            transient,
        )


def test_materialize_fixture_chain(upstream: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = upstream
    col = discover(CHAIN, folder, url, tmp_path / "out")
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    with dg.instance_for_test() as instance:
        result = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=wheel_keys(defs, col)
        )
    assert result.success
    wheels = sorted(p.name for p in (tmp_path / "out" / "wheels-repo" / "downloads").glob("*.whl"))
    assert wheels == [f"fx_{n}-1.0-0-py3-none-any.whl" for n in ("app", "dep", "lib", "tool")]
    checks = result.get_asset_check_evaluations()
    assert len(checks) == 4 and all(c.passed for c in checks)
    [mat] = result.asset_materializations_for_node("build_fx_fx_app_1_0")
    meta = mat.metadata
    assert meta["requirement"].value == "fx-app==1.0"
    assert Path(meta["wheel_path"].value).is_file()
    assert meta["wheel_size"].value > 0 and len(meta["wheel_sha256"].value) == 64
    assert Path(meta["log_path"].value).is_file() and meta["source_url"].value.endswith(".tar.gz")


def test_settings_change_code_version_and_exclusive_build(tmp_path: Path) -> None:
    """A package's settings file changes its code version (the UI shows it stale) and
    ``build_options.exclusive_build`` gives it every lane."""
    graph = DependencyGraph.from_json(GRAPH)
    collection = Collection(name="my_set", output_dir=tmp_path / "out")
    plain = code_version(graph, "lib==2.0", Settings())
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "lib.yaml").write_text(
        "env:\n  LIB_FLAG: on\nbuild_options:\n  exclusive_build: true\n", encoding="utf-8"
    )
    settings = load_settings(settings_dir=tmp_path / "settings")
    assert code_version(graph, "lib==2.0", settings) != plain
    assert code_version(graph, "dep==1.0", settings) == code_version(graph, "dep==1.0", Settings())
    tags = build_lanes(graph, 2, settings, exclusive=collection.exclusive_build)
    assert {k for k in tags["lib==2.0"] if k.startswith("lane_")} == {"lane_0", "lane_1"}
    assert len([k for k in tags["dep==1.0"] if k.startswith("lane_")]) == 1


def test_heavy_builds_take_more_lanes(tmp_path: Path) -> None:
    """``cpu_cores_per_job`` and ``memory_per_job_gb`` take that many lanes (capped at all)."""
    graph = DependencyGraph.from_json(GRAPH)
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "lib.yaml").write_text(
        "build_options:\n  cpu_cores_per_job: 2\n", encoding="utf-8"
    )
    (tmp_path / "settings" / "app.yaml").write_text(
        "build_options:\n  memory_per_job_gb: 5\n", encoding="utf-8"
    )
    (tmp_path / "settings" / "dep.yaml").write_text(
        "build_options:\n  cpu_cores_per_job: 9\n", encoding="utf-8"
    )
    settings = load_settings(settings_dir=tmp_path / "settings")

    def lanes(tags: dict[str, dict[str, str]], key: str) -> set[str]:
        return {k for k in tags[key] if k.startswith("lane_")}

    tags = build_lanes(graph, 4, settings, memory_gb=8)  # 2 GiB per lane
    assert len(lanes(tags, "lib==2.0")) == 2  # two cores
    assert len(lanes(tags, "app==1.0+local")) == 3  # 5 GiB: three 2 GiB shares
    assert len(lanes(tags, "dep==1.0")) == 4  # more cores than lanes: every lane
    assert len(lanes(tags, "tool==1!3.0")) == 1
    assert "fromager/exclusive" not in tags["dep==1.0"]
    roomy = build_lanes(graph, 4, settings, memory_gb=64)  # 16 GiB per lane
    assert len(lanes(roomy, "app==1.0+local")) == 1


def test_no_exclusive_or_heavy_build_means_no_lanes(tmp_path: Path) -> None:
    """Without exclusive or heavy builds, steps are not pinned to lanes: any free slot takes
    the next ready step (a pinned step waited behind a long build on its lane)."""
    graph = DependencyGraph.from_json(GRAPH)
    collection = Collection(name="my_set", output_dir=tmp_path / "out")
    assert build_lanes(graph, 2, Settings(), exclusive=collection.exclusive_build) == {}
    exclusive = Collection(name="my_set", output_dir=tmp_path / "out", exclusive_build=("dep",))
    lanes = build_lanes(graph, 2, Settings(), exclusive=exclusive.exclusive_build)
    assert set(lanes) == set(graph.nodes) - {""}
