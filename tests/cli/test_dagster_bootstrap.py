"""`fromager-dagster bootstrap` through Dagster: the engine's outputs, runs in the instance."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.core.index_server import LocalIndexServer
from tests.fixtures.packages import FixturePackage, make_index

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
        [sys.executable, "-m", "fromager_dagster.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
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
        wheel_keys = [k for k in instance.get_asset_keys() if k.path[0] == "wheels"]
        assert len(wheel_keys) == 4
        for key in wheel_keys:
            assert instance.get_latest_materialization_event(key) is not None
        assert instance.get_latest_materialization_event(
            dg.AssetKey(["discovery", "fx_app", "graph"])
        )

    # a rerun reuses every wheel, and still matches
    again = _cli(*common, "-O", str(tmp_path / "dagster"))
    assert again.returncode == 0, again.stderr
    assert "4 packages, 0 built, 4 reused" in again.stderr
    assert "building" not in again.stderr.split("(fx_app_wheels)", 1)[1]
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
        "error: fx-bad==1.0: build_wheel failed: PEP 517 hook build_wheel exited with status 1 "
        f"(log: {out / 'work-dir' / 'logs' / 'fx-bad-1.0.log'})"
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
