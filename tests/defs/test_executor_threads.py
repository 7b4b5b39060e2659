"""The scenario through the default executor, steps in threads of the run worker."""

import json
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.wheels import wheel_op_name
from tests.defs import mp_target
from tests.defs.conftest import check_scenario, discover, run_scenario
from tests.fixtures.packages import FixturePackage


def test_thread_run(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FROMAGER_DAGSTER_EXECUTOR", raising=False)  # threads is the default
    run = run_scenario(tmp_path, upstream, monkeypatch, prefix="th")
    check_scenario(run)
    engine = [m for _, kind, m in run.log if kind == "ENGINE_EVENT"]
    assert any(m.startswith("Executing steps in up to 2 threads") for m in engine)
    launches = [m for _, kind, m in run.log if kind == "STEP_WORKER_STARTING"]
    assert launches and all(m.startswith("Starting a thread") for m in launches)
    started = [m for _, kind, m in run.log if kind == "STEP_WORKER_STARTED"]
    assert len(started) == len(launches) and all(" in thread dagster-step-" in m for m in started)


def test_each_step_has_its_own_compute_log(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two builds in flight at once in threads of one run worker: each step's captured stdout
    (the log the UI shows on the step's page) holds its own package's build log and not the
    other's, and a failed build's log reaches its step too. The run's own capture names no step,
    so the UI picks the step's log for a step."""
    monkeypatch.delenv("FROMAGER_DAGSTER_EXECUTOR", raising=False)
    folder, url = upstream
    packages = [
        FixturePackage("cl-one", sleep=1.0),
        FixturePackage("cl-two", sleep=1.0),
        FixturePackage("cl-bad", fail_build=True),
    ]
    reqs = tuple(p.name for p in packages)
    col = discover(packages, folder, url, tmp_path / "out", name="cl", requirements=reqs)
    for stale in (col.output_dir / "work-dir" / "cache").glob("cl-*.json"):
        stale.unlink()  # discovery's build records: every build of the run really runs
    (tmp_path / "c.yaml").write_text(
        f"collections:\n  cl:\n    requirements: {json.dumps(list(reqs))}\n"
        f"    output_dir: {json.dumps(str(col.output_dir))}\n    index_url: {json.dumps(url)}\n"
    )
    monkeypatch.setenv("FROMAGER_DAGSTER_COLLECTIONS", str(tmp_path / "c.yaml"))
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(
            mp_target.build_fixture_job(),
            instance,
            raise_on_error=False,
            asset_selection=wheel_keys(build_definitions({"cl": col}), col),
        ) as result,
    ):
        events = [e.dagster_event for e in instance.all_logs(result.run_id) if e.dagster_event]
        manager = instance.compute_log_manager
        logs: dict[str, list[str]] = {}
        run_level = []
        for event in events:
            if event.event_type_value != "LOGS_CAPTURED":
                continue
            data = event.logs_captured_data
            log_key = manager.build_log_key_for_run(result.run_id, data.file_key)
            if not data.step_keys:
                run_level.append(log_key)
                continue
            assert len(data.step_keys) == 1, data.step_keys
            assert manager.is_capture_complete(log_key)
            captured = manager.get_log_data(log_key)
            logs.setdefault(data.step_keys[0], []).append(
                (captured.stdout or b"").decode() + (captured.stderr or b"").decode()
            )
        starts = {  # launches: the executor logs a batch before any of its steps runs
            e.step_key: i
            for i, e in enumerate(events)
            if e.event_type_value == "STEP_WORKER_STARTING"
        }
        ends = {
            e.step_key: i
            for i, e in enumerate(events)
            if e.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE")
        }
    step = {p.name: wheel_op_name(col, p.name, "1.0") for p in packages}
    assert len(run_level) == 1  # the run's descriptor-level capture, naming no step
    assert set(logs) == set(step.values()), logs.keys()
    overlapped = [
        (a, b)
        for a in step.values()
        for b in step.values()
        if a < b and starts[a] < ends[b] and starts[b] < ends[a]
    ]
    assert overlapped, "no two builds were in flight at once"  # two slots, three leaves
    for name, key in step.items():
        [text] = logs[key]  # one attempt, one log
        assert f"===== build log of {name}==1.0" in text
        assert f"fixture-backend: build_wheel {name} 1.0" in text
        for other in set(step) - {name}:
            assert f"build log of {other}==" not in text and f" {other} 1.0" not in text
    assert "===== end of log" in logs[step["cl-bad"]][0]  # the failed build's whole log
    # the failed build's last lines: in the failure (run page) and on the asset (its events)
    [failure] = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    user_failure = failure.step_failure_data.user_failure_data
    assert user_failure is not None
    tail = user_failure.metadata["log_tail"].value
    assert "RuntimeError: fixture build failure" in tail and "cl-bad-1.0.log" in tail
    [seen] = [e for e in events if e.event_type_value == "ASSET_OBSERVATION"]
    observation = seen.asset_observation_data.asset_observation
    assert observation.asset_key.path[-2:] == ["cl-bad", "cl-bad-1.0"]
    assert observation.metadata["log_tail"].value == tail
    assert "build_wheel failed" in (observation.description or "")
