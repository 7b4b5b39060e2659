"""Offline end-to-end bootstrap of fixture packages served by a real local index."""

from __future__ import annotations

import io
import json
import socket
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from fromager_dagster.core.bootstrap.run import BootstrapFailed, BootstrapOptions, bootstrap
from fromager_dagster.core.build.isolation import isolation_problem
from fromager_dagster.core.errors import (
    BuildCycleError,
    HashMismatchError,
    ResolutionError,
    UnsafeArchiveError,
)
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.resolve.requirements import Constraints, parse_requirement
from fromager_dagster.core.settings.overrides import Settings
from tests.fixtures.packages import FixturePackage, Upstream


def run(
    upstream: Upstream,
    out: Path,
    reqs: list[str],
    constraints: list[str] = (),  # type: ignore[assignment]
    **options: object,
):
    url = upstream.server.url if upstream.server else upstream.start()
    return bootstrap(
        [parse_requirement(r) for r in reqs],
        index=IndexClient(url),
        constraints=Constraints.from_lines([("test", c) for c in constraints]),
        layout=OutputLayout(out),
        options=BootstrapOptions(**{"jobs": 2, "isolate": False, **options}),  # type: ignore[arg-type]
        settings=Settings(),
    )


def edges(graph_json: dict, key: str) -> list[tuple[str, str, str]]:
    return [(e["req_type"], e["key"], e["req"]) for e in graph_json[key]["edges"]]


def test_build_chain_install_cycle_extras_and_markers(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(
        FixturePackage("fx-tool"),
        FixturePackage("fx-backend-dep", install_requires=("fx-helper",)),
        FixturePackage("fx-helper"),
        FixturePackage("fx-sdist-dep"),
        FixturePackage(
            "fx-app",
            build_system_requires=("fx-tool>=1",),
            backend_requires=("fx-backend-dep",),
            sdist_requires=("fx-sdist-dep",),
            # the build imports modules of its build requirements and their install closure
            import_check=("fx_tool", "fx_backend_dep", "fx_helper"),
            install_requires=(
                "fx-lib[fast]",
                'fx-never; python_version < "3"',
                'fx-only-extra; extra == "unused"',
            ),
            extras=("unused",),
        ),
        FixturePackage(
            "fx-lib", install_requires=("fx-cyc", 'fx-speed; extra == "fast"'), extras=("fast",)
        ),
        FixturePackage("fx-speed"),
        FixturePackage("fx-cyc", install_requires=("fx-lib",)),
    )
    out = tmp_path / "out"
    result = run(upstream, out, ["fx-app"])
    graph = json.loads((out / "work-dir" / "graph.json").read_text())
    assert edges(graph, "") == [("toplevel", "fx-app==1.0", "fx-app")]
    assert edges(graph, "fx-app==1.0") == [
        ("build-system", "fx-tool==1.0", "fx-tool>=1"),
        ("build-backend", "fx-backend-dep==1.0", "fx-backend-dep"),
        ("build-sdist", "fx-sdist-dep==1.0", "fx-sdist-dep"),
        ("install", "fx-lib==1.0", "fx-lib[fast]"),
    ]
    assert edges(graph, "fx-lib==1.0") == [
        ("install", "fx-cyc==1.0", "fx-cyc"),
        ("install", "fx-speed==1.0", 'fx-speed; extra == "fast"'),
    ]
    assert edges(graph, "fx-cyc==1.0") == [("install", "fx-lib==1.0", "fx-lib")]
    assert "fx-never==1.0" not in graph and "fx-only-extra==1.0" not in graph
    order = [e["dist"] for e in json.loads((out / "work-dir" / "build-order.json").read_text())]
    assert order.index("fx-tool") < order.index("fx-app")
    assert order.index("fx-backend-dep") < order.index("fx-app")
    assert order.index("fx-helper") < order.index("fx-app")
    assert sorted(order) == sorted(k.split("==")[0] for k in graph if k)
    assert (out / "work-dir" / "constraints.txt").read_text() == (
        "fx-app==1.0\nfx-cyc==1.0\nfx-lib==1.0\nfx-speed==1.0\n"
    )
    wheels = sorted(p.name for p in (out / "wheels-repo" / "downloads").iterdir())
    assert "fx_app-1.0-0-py3-none-any.whl" in wheels and len(wheels) == 8
    assert (out / "wheels-repo" / "simple" / "fx-app" / "index.html").is_file()
    assert (out / "sdists-repo" / "builds" / "fx_app-1.0.tar.gz").is_file()
    log = (out / "work-dir" / "logs" / "fx-app-1.0.log").read_text()
    assert "get_requires_for_build_wheel" in log and "build_wheel" in log
    assert len(result.built) == 8 and result.reused == []

    again = run(upstream, out, ["fx-app"])
    assert again.built == [] and len(again.reused) == 8
    assert json.loads((out / "work-dir" / "graph.json").read_text()) == graph


def test_constraints_choose_versions_and_prereleases(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(
        FixturePackage("fx-a", "1.0"),
        FixturePackage("fx-a", "2.0"),
        FixturePackage("fx-a", "3.0rc1"),
        FixturePackage("fx-b", "1.0", install_requires=("fx-a",)),
    )
    out = tmp_path / "out"
    run(upstream, out, ["fx-b"], ["fx-a<2"])
    graph = json.loads((out / "work-dir" / "graph.json").read_text())
    assert "fx-a==1.0" in graph and graph["fx-a==1.0"]["constraint"] == "fx-a<2"
    out2 = tmp_path / "out2"
    run(upstream, out2, ["fx-b"])
    assert "fx-a==2.0" in json.loads((out2 / "work-dir" / "graph.json").read_text())
    out3 = tmp_path / "out3"
    run(upstream, out3, ["fx-a>=3.0rc1"])
    assert "fx-a==3.0rc1" in json.loads((out3 / "work-dir" / "graph.json").read_text())


def test_conflict_names_packages_and_specifiers(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a", "1.0"), FixturePackage("fx-a", "2.0"))
    with pytest.raises(ResolutionError) as info:
        run(upstream, tmp_path / "out", ["fx-a>=2"], ["fx-a<2"])
    message = str(info.value)
    assert "fx-a>=2" in message and "fx-a<2" in message
    assert not (tmp_path / "out" / "work-dir" / "graph.json").exists()


def test_blocked_package(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a"))
    with pytest.raises(ResolutionError, match="blocked"):
        run(upstream, tmp_path / "out", ["fx-a"], ["fx-a<0"])


def test_yanked_release_is_skipped(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a", "1.0"), FixturePackage("fx-a", "2.0"))
    upstream.yanked["fx_a-2.0.tar.gz"] = "broken"
    out = tmp_path / "out"
    run(upstream, out, ["fx-a"])
    assert list(json.loads((out / "work-dir" / "graph.json").read_text())) == ["", "fx-a==1.0"]


def test_build_cycle_is_an_error_that_prints_the_cycle(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(
        FixturePackage("fx-a", build_system_requires=("fx-b",)),
        FixturePackage("fx-b", build_system_requires=("fx-a",)),
    )
    with pytest.raises(BootstrapFailed) as info:
        run(upstream, tmp_path / "out", ["fx-a"])
    causes = [f for f in info.value.failures if isinstance(f, BuildCycleError)]
    assert causes, info.value.failures
    assert "fx-a==1.0 -> fx-b==1.0" in str(causes[0]) or "fx-b==1.0 -> fx-a==1.0" in str(causes[0])


def test_failing_backend_names_package_and_log_and_spares_independent(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(FixturePackage("fx-bad", fail_build=True), FixturePackage("fx-good"))
    out = tmp_path / "out"
    with pytest.raises(BootstrapFailed) as info:
        run(upstream, out, ["fx-bad", "fx-good"])
    (failure,) = info.value.failures
    assert failure.package == "fx-bad" and failure.step == "build_wheel"
    assert failure.log_path and "fixture build failure" in Path(failure.log_path).read_text()
    assert (out / "wheels-repo" / "downloads" / "fx_good-1.0-0-py3-none-any.whl").is_file()
    assert not (out / "work-dir" / "graph.json").exists()


def _tamper(folder: Path, filename: str, extra_member: tuple[str, bytes] | None = None) -> None:
    """Rewrite an sdist in place (so the index's hash no longer matches the old bytes)."""
    path = folder / filename
    with tarfile.open(path) as tar:
        members = [(m, tar.extractfile(m).read() if m.isfile() else None) for m in tar.getmembers()]
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members:
            tar.addfile(member, io.BytesIO(data) if data is not None else None)
        if extra_member:
            info = tarfile.TarInfo(extra_member[0])
            info.size = len(extra_member[1])
            tar.addfile(info, io.BytesIO(extra_member[1]))


def test_hash_mismatch_is_refused(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a"))
    url = upstream.start()
    index = IndexClient(url)
    index.files("fx-a")  # the index page (and its hash) is read before the file changes
    _tamper(upstream.folder, "fx_a-1.0.tar.gz", ("fx_a-1.0/extra.txt", b"changed"))
    out = tmp_path / "out"
    with pytest.raises(BootstrapFailed) as info:
        bootstrap(
            [parse_requirement("fx-a")],
            index=index,
            constraints=Constraints(),
            layout=OutputLayout(out),
            options=BootstrapOptions(jobs=1, isolate=False),
            settings=Settings(),
        )
    assert isinstance(info.value.failures[0], HashMismatchError)
    assert list((out / "sdists-repo" / "downloads").iterdir()) == []


def test_archive_with_parent_member_is_refused(upstream: Upstream, tmp_path: Path) -> None:
    upstream.add(FixturePackage("fx-a"))
    _tamper(upstream.folder, "fx_a-1.0.tar.gz", ("fx_a-1.0/../../escape.txt", b"x"))
    out = tmp_path / "out"
    with pytest.raises(BootstrapFailed) as info:
        run(upstream, out, ["fx-a"])
    assert isinstance(info.value.failures[0], UnsafeArchiveError)
    assert not (tmp_path / "escape.txt").exists() and not (out / "escape.txt").exists()


def test_independent_builds_run_in_parallel(upstream: Upstream, tmp_path: Path) -> None:
    record = tmp_path / "events.jsonl"
    upstream.add(
        FixturePackage("fx-p", sleep=1.0, record_to=str(record)),
        FixturePackage("fx-q", sleep=1.0, record_to=str(record)),
    )
    run(upstream, tmp_path / "out", ["fx-p", "fx-q"])
    events = [json.loads(line) for line in record.read_text().splitlines()]
    spans = {}
    for event in events:
        spans.setdefault(event["name"], {})[event["event"]] = event["t"]
    (p, q) = spans.values()
    assert p["start"] < q["end"] and q["start"] < p["end"], "the two builds did not overlap"


@pytest.mark.skipif(isolation_problem() is not None, reason="unshare --net unavailable")
def test_build_hook_cannot_reach_host_loopback(upstream: Upstream, tmp_path: Path) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    port = listener.getsockname()[1]
    upstream.add(FixturePackage("fx-net", connect_to=("127.0.0.1", port)))
    out = tmp_path / "out"
    try:
        run(upstream, out, ["fx-net"], isolate=True)
    finally:
        listener.close()
    wheel = out / "wheels-repo" / "downloads" / "fx_net-1.0-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        verdict = zf.read("fx_net/netcheck.txt").decode()
    assert verdict.startswith("blocked"), verdict
    assert accepted == []
