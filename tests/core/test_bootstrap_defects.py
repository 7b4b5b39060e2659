"""Bootstrap defects of issue 9, offline: sdist-only metadata."""

from __future__ import annotations

import json
from pathlib import Path

from tests.core.test_bootstrap import run
from tests.fixtures.packages import FixturePackage, Upstream, make_sdist_with_metadata_hook

# -- sdist-only: prepare_metadata_for_build_wheel with the backend's requirements installed -----

# A self-hosting backend (as hatchling: backend-path, nothing in [build-system].requires) whose
# get_requires_for_build_wheel returns fx-pathspec, which its hooks then import.
SELF_HOSTED = FixturePackage(
    "fx-selfhost",
    "1.27.0",
    backend_requires=("fx-pathspec",),
    import_check=("fx_pathspec",),
    install_requires=("fx-pluggy",),
)


def _self_hosted_tree(upstream: Upstream, *, fail_metadata: bool = False) -> None:
    upstream.add(
        FixturePackage("fx-app", install_requires=("fx-selfhost",)),
        FixturePackage("fx-pathspec", "0.12.1"),
        FixturePackage("fx-pluggy", "1.5.0"),
    )
    make_sdist_with_metadata_hook(
        SELF_HOSTED, upstream.folder, imports=("fx_pathspec",), fail=fail_metadata
    )


def _graph(out: Path) -> dict:
    return json.loads((out / "work-dir" / "graph.json").read_text())


def _wheels(out: Path) -> list[str]:
    return sorted(p.name.split("-")[0] for p in (out / "wheels-repo" / "downloads").iterdir())


def test_sdist_only_metadata_hook_gets_the_backend_requirements(
    upstream: Upstream, tmp_path: Path
) -> None:
    _self_hosted_tree(upstream)
    full = run(upstream, tmp_path / "full", ["fx-app"])
    sdist_only = run(upstream, tmp_path / "sdist", ["fx-app"], sdist_only=True)
    graph = _graph(tmp_path / "sdist")
    assert graph == _graph(tmp_path / "full")
    assert [(e["req_type"], e["key"]) for e in graph["fx-selfhost==1.27.0"]["edges"]] == [
        ("build-backend", "fx-pathspec==0.12.1"),
        ("install", "fx-pluggy==1.5.0"),
    ]
    # the hook ran (no wheel of fx-selfhost), with fx-pathspec importable
    assert _wheels(tmp_path / "sdist") == ["fx_pathspec"]
    assert sdist_only.built == ["fx-pathspec==0.12.1"] and len(full.built) == 4
    log = (tmp_path / "sdist" / "work-dir" / "logs" / "fx-selfhost-1.27.0.log").read_text()
    assert "metadata hook imported fx_pathspec" in log


def test_sdist_only_falls_back_to_a_build_when_the_metadata_hook_fails(
    upstream: Upstream, tmp_path: Path
) -> None:
    _self_hosted_tree(upstream, fail_metadata=True)
    run(upstream, tmp_path / "full", ["fx-app"])
    sdist_only = run(upstream, tmp_path / "sdist", ["fx-app"], sdist_only=True)
    assert _graph(tmp_path / "sdist") == _graph(tmp_path / "full")
    assert "fx-pluggy==1.5.0" in _graph(tmp_path / "sdist")
    assert sorted(sdist_only.built) == ["fx-pathspec==0.12.1", "fx-selfhost==1.27.0"]
    log = (tmp_path / "sdist" / "work-dir" / "logs" / "fx-selfhost-1.27.0.log").read_text()
    assert "fixture prepare_metadata_for_build_wheel failure" in log
