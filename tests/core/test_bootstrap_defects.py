"""Bootstrap defects of issue 9, offline: sdist-only metadata, and who a failure names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fromager_dagster.core.bootstrap.run import BootstrapFailed
from fromager_dagster.core.errors import IndexAccessError, ResolutionError
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


# -- failures name the package that failed, and the parent and requirement that led there -------


def _only_failure(upstream: Upstream, out: Path, reqs: list[str], constraints: list[str] = ()):  # type: ignore[assignment]
    with pytest.raises(BootstrapFailed) as info:
        run(upstream, out, reqs, constraints)
    (failure,) = info.value.failures
    return failure


def test_blocked_build_requirement_names_it_not_the_parents_version(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(
        FixturePackage("fx-pbr", "6.1.0"),
        FixturePackage("fx-stevedore", "5.10.0", build_system_requires=("fx-pbr>=2",)),
    )
    failure = _only_failure(upstream, tmp_path / "out", ["fx-stevedore"], ["fx-pbr<0"])
    assert isinstance(failure, ResolutionError)
    assert (failure.package, failure.version) == ("fx-pbr", None)
    line = failure.one_line()
    assert line.startswith("fx-pbr: resolve failed: ")
    assert "5.10.0" not in line.split(":")[0]
    assert "build-system requirement 'fx-pbr>=2' of fx-stevedore==5.10.0" in line


@pytest.mark.parametrize(
    ("parent", "error", "named"),
    [
        # a build requirement on a version the index lacks
        (
            FixturePackage("fx-platformdirs", "4.14.9", build_system_requires=("fx-sbom==2.0",)),
            ResolutionError,
            "build-system requirement 'fx-sbom==2.0' of fx-platformdirs==4.14.9",
        ),
        # a backend requirement on a package the index lacks altogether
        (
            FixturePackage("fx-platformdirs", "4.14.9", backend_requires=("fx-nowhere",)),
            IndexAccessError,
            "build-backend requirement 'fx-nowhere' of fx-platformdirs==4.14.9",
        ),
        # an install requirement on a version the index lacks
        (
            FixturePackage("fx-platformdirs", "4.14.9", install_requires=("fx-sbom>=3",)),
            ResolutionError,
            "install requirement 'fx-sbom>=3' of fx-platformdirs==4.14.9",
        ),
    ],
)
def test_missing_requirement_names_it_and_its_parent(
    upstream: Upstream,
    tmp_path: Path,
    parent: FixturePackage,
    error: type[Exception],
    named: str,
) -> None:
    upstream.add(parent, FixturePackage("fx-sbom", "1.0"))
    failure = _only_failure(upstream, tmp_path / "out", ["fx-platformdirs"])
    missing = "fx-nowhere" if error is IndexAccessError else "fx-sbom"
    assert isinstance(failure, error)
    assert (failure.package, failure.version) == (missing, None)
    line = failure.one_line()
    assert line.startswith(f"{missing}: {failure.step} failed: "), line
    assert "4.14.9" not in line.split(":")[0] and named in line


def test_failure_report_names_the_failed_package(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(
        FixturePackage("fx-pbr", "6.1.0"),
        FixturePackage("fx-stevedore", "5.10.0", build_system_requires=("fx-pbr>=2",)),
    )
    result = run(upstream, tmp_path / "out", ["fx-stevedore"], ["fx-pbr<0"], test_mode=True)
    assert result.failure_report is not None
    (record,) = json.loads(result.failure_report.read_text())["failures"]
    assert set(record) == {
        "package",
        "version",
        "exception_type",
        "exception_message",
        "failure_type",
    }
    assert (record["package"], record["version"]) == ("fx-pbr", None)
    assert record["failure_type"] == "resolution"
    assert "of fx-stevedore==5.10.0" in record["exception_message"]


def test_a_build_requirement_whose_wheel_fails_is_named_with_its_own_reason(
    upstream: Upstream, tmp_path: Path
) -> None:
    # sdist-only: fx-tool's discovery succeeds; only its wheel, built because fx-app's build
    # needs it, fails. The failure reported is fx-tool's own, not only fx-app's waiting on it.
    upstream.add(
        FixturePackage("fx-tool", fail_build=True),
        FixturePackage("fx-app", build_system_requires=("fx-tool",)),
    )
    with pytest.raises(BootstrapFailed) as failed:
        run(upstream, tmp_path / "out", ["fx-app"], sdist_only=True)
    named = {(f.package, f.version): f for f in failed.value.failures}
    assert ("fx-tool", "1.0") in named
    assert "fixture build failure" in named[("fx-tool", "1.0")].one_line() or (
        named[("fx-tool", "1.0")].log_path
        and "fixture build failure"
        in Path(str(named[("fx-tool", "1.0")].log_path)).read_text(encoding="utf-8")
    )
