"""graph to-dot/why/to-constraints/explain-duplicates/subset, stats, canonicalize, wheel-server."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner, Result

from fromager_dagster.cli.main import cli
from fromager_dagster.core.graph.model import ROOT, DependencyGraph
from fromager_dagster.core.package_id import PackageId

GOLDEN = Path(__file__).resolve().parents[2].parent / "shared" / "golden"
STEVEDORE = GOLDEN / "stevedore" / "graph.json"
CLICK = GOLDEN / "click-constrained" / "graph.json"
REPO = Path(__file__).resolve().parents[2]


def _run(*args: str | Path) -> Result:
    return CliRunner().invoke(cli, [str(a) for a in args], obj={})


def _error_lines(result: Result) -> list[str]:
    return [line for line in result.stderr.splitlines() if line]


def _write(graph: DependencyGraph, path: Path) -> Path:
    path.write_text(json.dumps(graph.to_json(), indent=2))
    return path


def _duplicated(tmp_path: Path, *, conflict: bool = False) -> Path:
    graph = DependencyGraph()
    graph.add_node(PackageId.of("app", "1.0"))
    graph.add_node(PackageId.of("tool", "1.0"), constraint="tool<2")
    graph.add_node(PackageId.of("lib", "1.0"))
    graph.add_node(PackageId.of("lib", "2.0"))
    graph.add_edge(ROOT, "app==1.0", "toplevel", "app")
    graph.add_edge("app==1.0", "tool==1.0", "install", "tool")
    graph.add_edge("app==1.0", "lib==2.0", "install", "lib>=2" if conflict else "lib>=1")
    graph.add_edge("tool==1.0", "lib==1.0", "install", "lib<2")
    return _write(graph, tmp_path / "graph.json")


# --- why -------------------------------------------------------------------------------------


def test_why_pbr_in_stevedore() -> None:
    result = _run("graph", "why", STEVEDORE, "pbr")
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        "pbr==7.1.3\n"
        " * pbr==7.1.3 is a build-system dependency of stevedore==5.10.0 with req pbr>=6.1.1\n"
        " * pbr==7.1.3 is a build-backend dependency of stevedore==5.10.0 with req pbr>=2.0.0\n"
        " * pbr==7.1.3 is a build-sdist dependency of stevedore==5.10.0 with req pbr>=2.0.0\n"
        "   * stevedore==5.10.0 is a toplevel dependency with req stevedore\n"
    )


def test_why_options_depth_req_type_version_and_constraints(tmp_path: Path) -> None:
    result = _run("graph", "why", STEVEDORE, "SetupTools", "--depth", "1", "--req-type", "install")
    assert result.stdout == (
        "setuptools==84.2.1\n * setuptools==84.2.1 is an install dependency of pbr==7.1.3 "
        "with req setuptools\n"
    )
    none = _run("graph", "why", STEVEDORE, "pbr", "--requirement-type", "install")
    assert none.exit_code == 0
    assert none.stdout.splitlines()[1] == " * no install edge leads to pbr==7.1.3"
    click = _run("graph", "why", CLICK, "click")
    assert click.stdout.splitlines() == [
        "click==8.1.7 (constraint: click==8.1.7)",
        " * click==8.1.7 is a toplevel dependency with req click",
    ]
    both = _run("graph", "why", _duplicated(tmp_path), "lib")
    assert both.stdout.split("\n\n")[0].splitlines() == [
        "lib==1.0",
        " * lib==1.0 is an install dependency of tool==1.0 (constraint: tool<2) with req lib<2",
        "   * tool==1.0 is an install dependency of app==1.0 with req tool",
        "     * app==1.0 is a toplevel dependency with req app",
    ]
    assert both.stdout.split("\n\n")[1].startswith("lib==2.0\n")
    one = _run("graph", "why", tmp_path / "graph.json", "lib", "--version", "2.0")
    assert one.stdout.count("lib==1.0") == 0 and "with req lib>=1" in one.stdout


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [
        ["graph", "to-dot", "{graph}"],
        ["graph", "why", "{graph}", "pbr"],
        ["graph", "to-constraints", "{graph}"],
        ["graph", "explain-duplicates", "{graph}"],
        ["graph", "subset", "{graph}", "pbr"],
        ["stats", "{graph}"],
    ],
)
def test_bad_graph_files_give_one_line_errors(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "missing.json"
    not_json = tmp_path / "notes.txt"
    not_json.write_text("hello\n")
    for path, reason in (
        (missing, "No such file or directory"),
        (not_json, "not a graph.json file (not JSON"),
    ):
        result = _run(*[part.format(graph=path) for part in command])
        assert result.exit_code == 1
        [line] = _error_lines(result)
        assert line.startswith("error: ") and str(path) in line and reason in line
        assert result.stdout == ""


def test_unknown_package_or_version_is_one_line_error() -> None:
    for command in (["why"], ["subset"]):
        result = _run("graph", *command, STEVEDORE, "nope")
        assert result.exit_code == 1
        assert _error_lines(result) == [
            f"error: configuration failed: {STEVEDORE}: no package nope in this graph"
        ]
    result = _run("graph", "why", STEVEDORE, "pbr", "--version", "1.0")
    assert result.exit_code == 1
    assert _error_lines(result) == [
        (
            f"error: configuration failed: {STEVEDORE}: package pbr has no version 1.0 in this "
            "graph (it has 7.1.3)"
        )
    ]


# --- to-dot, to-constraints ------------------------------------------------------------------


def test_to_dot_to_stdout_and_file(tmp_path: Path) -> None:
    printed = _run("graph", "to-dot", STEVEDORE)
    assert printed.exit_code == 0
    assert printed.stdout.startswith("digraph dependencies {\n")
    assert printed.stdout.count(" -> ") == 6
    out = tmp_path / "g.dot"
    written = _run("graph", "to-dot", STEVEDORE, "--install-only", "-o", out)
    assert written.exit_code == 0 and written.stdout == ""
    text = out.read_text()
    assert text.count(" -> ") == 1 and '"root" -> "stevedore==5.10.0" [style=bold' in text
    assert "pbr" not in text


@pytest.mark.parametrize("name", ["stevedore", "click-constrained"])
def test_to_constraints_matches_fromager(tmp_path: Path, name: str) -> None:
    expected = (GOLDEN / name / "constraints.txt").read_text()
    assert _run("graph", "to-constraints", GOLDEN / name / "graph.json").stdout == expected
    out = tmp_path / "c.txt"
    assert _run("graph", "to-constraints", GOLDEN / name / "graph.json", "-o", out).exit_code == 0
    assert out.read_text() == expected


def test_to_constraints_conflict_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    graph = _duplicated(tmp_path, conflict=True)
    out = tmp_path / "c.txt"
    result = _run("graph", "to-constraints", graph, "-o", out)
    assert result.exit_code == 1
    assert _error_lines(result) == [
        (
            "error: lib: resolve failed: no single version of lib satisfies every install "
            "requirement (lib<2, lib>=2); found 2.0, 1.0"
        )
    ]
    assert not out.exists()
    assert _run("graph", "to-constraints", _duplicated(tmp_path)).stdout == (
        "app==1.0\nlib==1.0\ntool==1.0\n"
    )


# --- explain-duplicates ----------------------------------------------------------------------


def test_explain_duplicates(tmp_path: Path) -> None:
    result = _run("graph", "explain-duplicates", _duplicated(tmp_path))
    assert result.exit_code == 0
    assert result.stdout == (
        "lib\n"
        "  1.0\n"
        "    install requirement lib<2 of tool==1.0 (matches 1.0)\n"
        "  2.0\n"
        "    install requirement lib>=1 of app==1.0 (matches 1.0, 2.0)\n"
        "  * lib==1.0 satisfies every requirement\n"
    )
    conflict = _run("graph", "explain-duplicates", _duplicated(tmp_path, conflict=True))
    assert conflict.stdout.splitlines()[-1] == (
        "  * no single version of lib satisfies every requirement"
    )
    none = _run("graph", "explain-duplicates", STEVEDORE)
    assert none.stdout == f"no package has more than one version in {STEVEDORE}\n"


# --- subset ----------------------------------------------------------------------------------


def test_subset_writes_a_graph_that_loads_again(tmp_path: Path) -> None:
    out = tmp_path / "pbr.json"
    result = _run("graph", "subset", STEVEDORE, "pbr", "--version", "7.1.3", "-o", out)
    assert result.exit_code == 0, result.output
    sub = DependencyGraph.load(out)
    assert list(sub.nodes) == [ROOT, "pbr==7.1.3", "setuptools==84.2.1"]
    assert sub.children(ROOT) == ["pbr==7.1.3"]
    # the written subset is itself a valid input to the other commands
    why = _run("graph", "why", out, "setuptools")
    assert " * pbr==7.1.3 is a toplevel dependency with req pbr==7.1.3" in why.stdout
    wide = _run("graph", "subset", STEVEDORE, "pbr", "--with-dependents")
    assert list(json.loads(wide.stdout)) == [
        ROOT,
        "stevedore==5.10.0",
        "pbr==7.1.3",
        "setuptools==84.2.1",
    ]


# --- stats -----------------------------------------------------------------------------------


def test_stats_text_and_json(tmp_path: Path) -> None:
    result = _run("stats", GOLDEN / "stevedore")
    assert result.exit_code == 0
    assert result.stdout.splitlines() == [
        f"graph:               {STEVEDORE}",
        "nodes:               3 package versions",
        "packages:            3",
        (
            "edges:               toplevel 1, install 1, build-system 2, build-backend 1, "
            "build-sdist 1"
        ),
        "prebuilt:            0",
        "several versions:    none",
        "longest build chain: 3: setuptools==84.2.1 -> pbr==7.1.3 -> stevedore==5.10.0",
        "build order:         3 entries, 0 prebuilt, matches the graph",
    ]
    data = json.loads(_run("stats", _duplicated(tmp_path), "--json").stdout)
    assert data["multiple_versions"] == {"lib": ["1.0", "2.0"]}
    assert data["build_order"] is None
    assert data["longest_build_chain"] == {"length": 1, "chain": ["app==1.0"]}
    order = tmp_path / "order.json"
    order.write_text("[]")
    mismatch = _run("stats", STEVEDORE, "--build-order", order)
    assert mismatch.stdout.splitlines()[-1] == (
        "build order:         0 entries, 0 prebuilt, missing pbr==7.1.3, setuptools==84.2.1, "
        "stevedore==5.10.0; not in the graph nothing"
    )
    bad = _run("stats", STEVEDORE, "--build-order", tmp_path / "none.json")
    assert bad.exit_code == 1 and len(_error_lines(bad)) == 1
    assert str(tmp_path / "none.json") in bad.stderr


# --- canonicalize ----------------------------------------------------------------------------


def test_canonicalize() -> None:
    result = _run("canonicalize", "Foo.Bar", "PBR", "zope_interface", "a--b")
    assert result.exit_code == 0
    assert result.stdout == "foo-bar\npbr\nzope-interface\na-b\n"
    bad = _run("canonicalize", "good", "not a name")
    assert bad.exit_code == 1
    assert _error_lines(bad) == ["error: 'not a name' is not a valid package name"]


# --- wheel-server ----------------------------------------------------------------------------


def _wheel(folder: Path, name: str, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    stem = f"{name}-{version}"
    path = folder / f"{stem}-0-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", "")
        zf.writestr(
            f"{stem}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nRequires-Python: >=3.9\n",
        )
        zf.writestr(f"{stem}.dist-info/WHEEL", "Wheel-Version: 1.0\nTag: py3-none-any\n")
        zf.writestr(f"{stem}.dist-info/RECORD", "")
    return path


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_wheel_server_serves_downloads_and_prebuilt_until_signalled(
    tmp_path: Path, stop_signal: signal.Signals
) -> None:
    _wheel(tmp_path / "wheels-repo" / "downloads", "built_pkg", "1.0")
    _wheel(tmp_path / "wheels-repo" / "prebuilt", "given_pkg", "2.0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "fromager_dagster", "wheel-server", "-O", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/simple/"), proc.stderr
        page = requests.get(f"{url}built-pkg/", timeout=10)
        assert page.status_code == 200
        assert "built_pkg-1.0-0-py3-none-any.whl#sha256=" in page.text
        assert 'data-requires-python="&gt;=3.9"' in page.text
        data = requests.get(
            f"{url}given-pkg/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            timeout=10,
        ).json()
        [item] = data["files"]
        assert item["filename"] == "given_pkg-2.0-0-py3-none-any.whl"
        wheel = requests.get(requests.compat.urljoin(f"{url}given-pkg/", item["url"]), timeout=10)
        assert (
            wheel.content == (tmp_path / "wheels-repo" / "prebuilt" / item["filename"]).read_bytes()
        )
        os.kill(proc.pid, stop_signal)
        _out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "wheel server stopped" in err
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=5)


def test_wheel_server_without_wheels_repo_is_one_line_error(tmp_path: Path) -> None:
    result = _run("wheel-server", "-O", tmp_path)
    assert result.exit_code == 1
    [line] = _error_lines(result)
    assert f"{tmp_path / 'wheels-repo'}: no wheels-repo/downloads" in line
    # the option can come from the environment too
    from_env = CliRunner().invoke(
        cli,
        ["wheel-server"],
        obj={},
        env={"FROMAGER_DAGSTER_WHEEL_SERVER_OUTPUT_DIR": str(tmp_path / "elsewhere")},
        auto_envvar_prefix="FROMAGER_DAGSTER",
    )
    assert from_env.exit_code == 1
    assert str(tmp_path / "elsewhere" / "wheels-repo") in from_env.stderr
