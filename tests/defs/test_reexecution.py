"""Re-execution from failure rebuilds only what failed and what depends on it."""

import json
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.install_checks import install_check_op_name
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.reproducible_check import reproducible_check_op_name
from fromager_dagster.defs.wheels import wheel_op_name
from tests.defs import mp_target
from tests.defs.conftest import discover
from tests.fixtures.packages import FixturePackage


def _started(instance: dg.DagsterInstance, run_id: str) -> set[str]:
    return {
        e.step_key or ""
        for e in (entry.dagster_event for entry in instance.all_logs(run_id))
        if e is not None and e.event_type_value == "STEP_START"
    }


def test_reexecution_from_failure_rebuilds_the_failed_package_and_its_dependents(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = upstream
    fail_once = tmp_path / "fail-once"
    packages = [
        FixturePackage("rx-tool"),
        FixturePackage("rx-dep"),
        FixturePackage(
            "rx-lib",
            build_system_requires=("rx-tool",),
            install_requires=("rx-dep",),
            fail_times_file=str(fail_once),
        ),
        FixturePackage("rx-app", build_system_requires=("rx-lib",)),
        FixturePackage("rx-side"),
    ]
    reqs = ("rx-app", "rx-side")
    fail_once.write_text("0")  # discovery builds rx-lib (rx-app's build requirement) fine
    col = discover(packages, folder, url, tmp_path / "out", name="rx", requirements=reqs)
    fail_once.write_text("1")  # rx-lib's next build fails (a build error: not retried)
    (col.output_dir / "work-dir" / "cache" / "rx-lib-1.0.json").unlink()  # so it is rebuilt
    (tmp_path / "c.yaml").write_text(
        "collections:\n  rx:\n"
        f"    requirements: {json.dumps(list(reqs))}\n"
        f"    output_dir: {json.dumps(str(col.output_dir))}\n"
        f"    index_url: {json.dumps(url)}\n"
    )
    monkeypatch.setenv("FROMAGER_DAGSTER_COLLECTIONS", str(tmp_path / "c.yaml"))
    step = {short: wheel_op_name(col, f"rx-{short}", "1.0") for short in ("tool", "dep", "lib")}
    step |= {short: wheel_op_name(col, f"rx-{short}", "1.0") for short in ("app", "side")}
    keys = wheel_keys(build_definitions({"rx": col}), col)
    with dg.instance_for_test() as instance:
        with dg.execute_job(
            mp_target.build_fixture_job(), instance, raise_on_error=False, asset_selection=keys
        ) as first:
            assert not first.success
            failed = {e.step_key for e in first.all_events if e.event_type_value == "STEP_FAILURE"}
        assert failed == {step["lib"]}
        assert _started(instance, first.run_id) == {step[s] for s in ("tool", "dep", "lib", "side")}

        # as the UI's "Re-execute from failure" does: on the parent run's asset selection (the
        # Python API plans before subsetting, so the job is given already subset to it)
        options = dg.ReexecutionOptions.from_failure(first.run_id, instance)
        with dg.execute_job(
            mp_target.build_fixture_job().get_subset(asset_selection=frozenset(keys)),
            instance,
            reexecution_options=options,
        ) as again:
            assert again.success
        check = install_check_op_name(col)  # skipped in the first run, after a failed wheel
        optional = reproducible_check_op_name(col)  # the same (it does nothing while off)
        assert _started(instance, again.run_id) == {step["lib"], step["app"], check, optional}
    wheels = sorted(p.name for p in (col.output_dir / "wheels-repo" / "downloads").glob("*.whl"))
    assert [w.split("-")[0] for w in wheels] == ["rx_app", "rx_dep", "rx_lib", "rx_side", "rx_tool"]
