"""The scenario through the default executor, steps in threads of the run worker."""

from pathlib import Path

import pytest

from tests.defs.conftest import check_scenario, run_scenario


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
