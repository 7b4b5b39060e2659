"""`fromager-dagster bootstrap` through Dagster: the engine's outputs, runs in the instance."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.core.index.server import LocalIndexServer
from tests.fixtures.packages import FixturePackage, make_index, make_wheel

# fx-app builds with fx-lib (whose install closure brings fx-dep); fx-lib builds with fx-tool.
CHAIN = [
    FixturePackage("fx-tool"),
    FixturePackage("fx-dep"),
    FixturePackage("fx-lib", build_system_requires=("fx-tool",), install_requires=("fx-dep",)),
    FixturePackage("fx-app", build_system_requires=("fx-lib",)),
]
OUTPUTS = ("graph.json", "build-order.json", "constraints.txt")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.pop("DAGSTER_HOME", None)
    environ.pop("FROMAGER_DAGSTER_BOOTSTRAP_NO_DAGSTER", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fromager_dagster", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
        check=False,
    )


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    make_index([*CHAIN, FixturePackage("fx-bad", fail_build=True)], tmp_path / "up")
    with LocalIndexServer([tmp_path / "up"]) as server:
        yield server.url


def _wheels(out: Path) -> list[str]:
    return sorted(p.name for p in (out / "wheels-repo" / "downloads").glob("*.whl"))


def test_dagster_path_matches_engine_and_records_runs(index: str, tmp_path: Path) -> None:
    common = ("bootstrap", "fx-app", "--index-url", index, "--no-network-isolation", "-j", "2")
    via_dagster = _cli(*common, "-O", str(tmp_path / "dagster"))
    assert via_dagster.returncode == 0, via_dagster.stderr
    engine = _cli(*common, "-O", str(tmp_path / "engine"), "--no-dagster")
    assert engine.returncode == 0, engine.stderr
    assert "through Dagster" not in engine.stderr

    for name in OUTPUTS:
        dagster_text = (tmp_path / "dagster" / "work-dir" / name).read_text()
        assert dagster_text == (tmp_path / "engine" / "work-dir" / name).read_text(), name
    expected = [f"fx_{n}-1.0-0-py3-none-any.whl" for n in ("app", "dep", "lib", "tool")]
    assert _wheels(tmp_path / "dagster") == _wheels(tmp_path / "engine") == expected

    err = via_dagster.stderr
    assert "building fx-tool==1.0" in err and "built fx-app==1.0" in err
    assert "4 packages, 4 built, 0 reused" in err  # built in this session, some by discovery
    # the build run takes discovery's wheels: shown as reused, never as "building"
    build_run = err.split("(fx_app_wheels)", 1)[1]
    for name in ("fx-tool", "fx-lib", "fx-dep"):
        assert f"reusing {name}==1.0" in build_run and f"building {name}==1.0" not in build_run
    assert "building fx-app==1.0" in build_run and "built fx-app==1.0" in build_run
    assert "Traceback" not in err and " - dagster - " not in err
    run_lines = [line for line in err.splitlines() if line.startswith("dagster run: ")]
    assert [line.split()[3] for line in run_lines] == ["discover_fx_app_job", "fx_app_wheels"]
    assert f"fromager-dagster ui -O {tmp_path / 'dagster'}" in err

    home = tmp_path / "dagster" / "dagster-home"
    with dg.DagsterInstance.from_config(str(home)) as instance:
        runs = instance.get_runs()
        # the wheels are materialized by Dagster's implicit asset job, as the UI does it
        assert sorted(r.job_name for r in runs) == ["__ASSET_JOB", "discover_fx_app_job"]
        assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        assert {r.run_id for r in runs} == {line.split()[2] for line in run_lines}
        for run in runs:  # launched as the UI launches: the location's origin, the tag
            origin = run.remote_job_origin
            assert origin is not None, run.job_name
            assert origin.location_name == "fromager_dagster.definitions"
            assert origin.repository_origin.repository_name == "__repository__"
            assert run.tags["fromager/collection"] == "fx_app"
        wheel_keys = [k for k in instance.get_asset_keys() if k.path[0] == "wheels"]
        assert len(wheel_keys) == 4
        for key in wheel_keys:
            assert instance.get_latest_materialization_event(key) is not None
        assert instance.get_latest_materialization_event(
            dg.AssetKey(["discovery", "fx_app", "fx_app-graph"])
        )

    # a rerun reuses every wheel, runs no build step, and still matches
    again = _cli(*common, "-O", str(tmp_path / "dagster"))
    assert again.returncode == 0, again.stderr
    assert "4 packages, 0 built, 4 reused" in again.stderr
    assert "4 wheels up to date: no build step for them" in again.stderr
    assert "(fx_app_wheels)" not in again.stderr and "building" not in again.stderr
    assert _wheels(tmp_path / "dagster") == expected


def test_dagster_path_build_failure_is_one_line(index: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _cli(
        "bootstrap", "fx-bad", "fx-app", "-O", str(out), "--index-url", index,
        "--no-network-isolation", "--collection", "broken",
    )  # fmt: skip
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        (
            "error: fx-bad==1.0: build_wheel failed: PEP 517 hook build_wheel exited with status 1 "
            f"(log: {out / 'work-dir' / 'logs' / 'fx-bad-1.0.log'})"
        )
    ]
    assert "Traceback" not in proc.stderr
    # independent packages were still built
    assert "fx_app-1.0-0-py3-none-any.whl" in _wheels(out)
    with dg.DagsterInstance.from_config(str(out / "dagster-home")) as instance:
        [build] = instance.get_runs(filters=dg.RunsFilter(job_name="__ASSET_JOB"))
        assert build.status == dg.DagsterRunStatus.FAILURE
    verbose = _cli(
        "-v", "bootstrap", "fx-bad", "-O", str(tmp_path / "v"), "--index-url", index,
        "--no-network-isolation",
    )  # fmt: skip
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr


def test_no_dagster_from_environment(index: str, tmp_path: Path) -> None:
    proc = _cli(
        "bootstrap", "fx-tool", "-O", str(tmp_path / "out"), "--index-url", index,
        "--no-network-isolation", FROMAGER_DAGSTER_BOOTSTRAP_NO_DAGSTER="1",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "through Dagster" not in proc.stderr
    assert not (tmp_path / "out" / "dagster-home").exists()


def _both(*args: str, out: Path) -> tuple[subprocess.CompletedProcess[str], ...]:
    """``bootstrap ARGS`` through Dagster into out/dagster, and --no-dagster into out/engine."""
    common = ("bootstrap", *args, "--no-network-isolation", "-j", "2")
    return (
        _cli(*common, "-O", str(out / "dagster"), FROMAGER_DAGSTER_EXECUTOR="threads"),
        _cli(*common, "-O", str(out / "engine"), "--no-dagster"),
    )


def _same_outputs(out: Path) -> None:
    """The Dagster path wrote what the engine wrote: files of work-dir, wheels."""
    for name in OUTPUTS:
        dagster, engine = out / "dagster" / "work-dir" / name, out / "engine" / "work-dir" / name
        assert dagster.is_file() == engine.is_file(), name
        if engine.is_file():
            assert dagster.read_text() == engine.read_text(), name
    for folder in ("downloads", "prebuilt"):
        dagster_wheels = _wheels_in(out / "dagster" / "wheels-repo" / folder)
        assert dagster_wheels == _wheels_in(out / "engine" / "wheels-repo" / folder), folder


def _wheels_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.glob("*.whl"))


def _discovery_run(home: Path) -> tuple[dg.DagsterRun, dict[str, object]]:
    """The discovery run and its graph materialization's metadata."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [run] = [r for r in instance.get_runs() if r.job_name.startswith("discover_")]
        [key] = [k for k in instance.get_asset_keys() if k.path[0] == "discovery"]
        event = instance.get_latest_materialization_event(key)
        assert event is not None and event.asset_materialization is not None
        meta = {k: v.value for k, v in event.asset_materialization.metadata.items()}
        return run, meta


def test_test_mode_runs_through_dagster_keeps_going_and_reports(tmp_path: Path) -> None:
    # fx-broken fails in discovery (fx-top's build needs it) and the index has its wheel;
    # fx-nowheel fails in the build run and has none; the chain builds regardless
    broken = FixturePackage("fx-broken", fail_build=True)
    packages = [
        *CHAIN,
        broken,
        FixturePackage("fx-top", build_system_requires=("fx-broken",)),
        FixturePackage("fx-nowheel", fail_build=True),
    ]
    upstream = make_index(packages, tmp_path / "up")
    make_wheel(broken, upstream)
    with LocalIndexServer([upstream]) as server:
        dagster, engine = _both(
            "fx-app", "fx-top", "fx-nowheel", "--index-url", server.url, "--test-mode",
            out=tmp_path,
        )  # fmt: skip
    assert dagster.returncode == engine.returncode == 1, dagster.stderr
    assert "through Dagster" in dagster.stderr and "note:" not in dagster.stderr
    _same_outputs(tmp_path)
    summary = "7 packages, 5 built, 0 reused, 1 pre-built, 2 failed"
    assert summary in dagster.stderr and summary in engine.stderr
    # one report, with the failures of both stages, as the engine writes it
    [report] = (tmp_path / "dagster" / "work-dir").glob("test-mode-failures-*.json")
    [engine_report] = (tmp_path / "engine" / "work-dir").glob("test-mode-failures-*.json")
    assert json.loads(report.read_text()) == json.loads(engine_report.read_text())
    assert [r["package"] for r in json.loads(report.read_text())["failures"]] == [
        "fx-broken",
        "fx-nowheel",
    ]
    assert f"failure report: {report}" in dagster.stderr
    errors = [line for line in dagster.stderr.splitlines() if line.startswith("error:")]
    assert [line.split(":")[1].strip() for line in errors] == ["fx-broken==1.0", "fx-nowheel==1.0"]

    home = tmp_path / "dagster" / "dagster-home"
    run, meta = _discovery_run(home)
    # the discovery run failed (a package did), after it materialized the graph naming it
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert run.run_config["ops"]["discover_fx_app_fx_nowheel_fx_top"]["config"]["test_mode"]
    assert meta["failure_count"] == 1 and "- fx-broken==1.0: bootstrap failure" in meta["failures"]
    assert meta["failure_report"] == str(report)
    with dg.DagsterInstance.from_config(str(home)) as instance:
        [build] = instance.get_runs(filters=dg.RunsFilter(job_name="__ASSET_JOB"))
        assert build.status == dg.DagsterRunStatus.FAILURE


@pytest.mark.parametrize("flag", ["--multiple-versions", "--skip-constraints"])
def test_modes_run_through_dagster_with_the_engines_outputs(flag: str, tmp_path: Path) -> None:
    # two versions of fx-tool: the top-level requirement takes 2.0, fx-lib's build needs <2
    packages = [
        FixturePackage("fx-tool"),
        FixturePackage("fx-tool", version="2.0"),
        FixturePackage("fx-lib", build_system_requires=("fx-tool<2",)),
    ]
    make_index(packages, tmp_path / "up")
    with LocalIndexServer([tmp_path / "up"]) as server:
        dagster, engine = _both(
            "fx-lib", "fx-tool", "--index-url", server.url, flag, "--min-release-age", "30",
            out=tmp_path,
        )  # fmt: skip
    assert dagster.returncode == engine.returncode == 0, dagster.stderr
    assert "through Dagster" in dagster.stderr and "note:" not in dagster.stderr
    _same_outputs(tmp_path)
    assert not (tmp_path / "dagster" / "work-dir" / "constraints.txt").exists()
    assert "constraints:" not in dagster.stderr
    assert _wheels_in(tmp_path / "dagster" / "wheels-repo" / "downloads") == [
        "fx_lib-1.0-0-py3-none-any.whl",
        "fx_tool-1.0-0-py3-none-any.whl",
        "fx_tool-2.0-0-py3-none-any.whl",
    ]
    run, meta = _discovery_run(tmp_path / "dagster" / "dagster-home")
    mode = flag[2:].replace("-", "_")
    assert run.status == dg.DagsterRunStatus.SUCCESS
    config = run.run_config["ops"]["discover_fx_lib_fx_tool"]["config"]
    assert config[mode] is True and config["min_release_age"] == 30  # the fixture index has
    # no upload times, so the age only reaches the engine here
    assert meta["constraints_path"] == f"none ({mode})"


def test_build_logs_reach_the_compute_logs_not_the_terminal(index: str, tmp_path: Path) -> None:
    """A command's runs print each build's log into Dagster's captured stdout, as runs the UI
    launches do; the command's own output stays progress and results."""
    out = tmp_path / "out"
    proc = _cli(
        "bootstrap", "fx-app", "--index-url", index, "--no-network-isolation", "-O", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "===== build log of" not in proc.stdout + proc.stderr
    captured = "".join(
        p.read_text(errors="replace") for p in (out / "dagster-home").rglob("*.out") if p.is_file()
    )
    assert "===== build log of fx-app==1.0" in captured
