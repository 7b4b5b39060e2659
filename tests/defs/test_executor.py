"""The ``fromager`` executor: kinds, slots and lanes; the scenario through forkserver processes."""

from pathlib import Path

import dagster as dg
import pytest
from dagster._config import process_config

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.defs.executor.definition import (
    build_executor,
    executor_config,
    executor_kind,
    max_concurrent,
)
from tests.defs.conftest import check_scenario, run_scenario


@dg.op
def _noop() -> None:
    pass


@dg.job
def _noop_job() -> None:
    _noop()


def test_max_concurrent_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROMAGER_DAGSTER_MAX_CONCURRENT", "3")
    assert max_concurrent() == 3
    monkeypatch.setenv("FROMAGER_DAGSTER_MAX_CONCURRENT", "many")
    assert max_concurrent() >= 1


def test_threads_by_default_multiprocess_on_request(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FROMAGER_DAGSTER_EXECUTOR", raising=False)
    assert executor_kind() == "threads"
    assert executor_config(3) == {"threads": {"max_concurrent": 3}}
    monkeypatch.setenv("FROMAGER_DAGSTER_EXECUTOR", "Multiprocess")
    assert executor_kind() == "multiprocess"
    assert executor_config(2) == {
        "multiprocess": {"max_concurrent": 2, "start_method": {"forkserver": {}}}
    }
    monkeypatch.setenv("FROMAGER_DAGSTER_EXECUTOR", "celery")
    with pytest.raises(ConfigError, match="FROMAGER_DAGSTER_EXECUTOR='celery'"):
        executor_kind()


@pytest.mark.parametrize("kind", ["threads", "multiprocess"])
def test_executor_defaults_and_lanes(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    """Dagster's config system fills the default kind; a run that adds its own tag limits
    still gets one step per lane."""
    from dagster._core.definitions.job_base import InMemoryJob
    from dagster._core.executor.init import InitExecutorContext
    from dagster._core.executor.multiprocess import MultiprocessExecutor

    from fromager_dagster.defs.executor.threads import ThreadExecutor

    monkeypatch.setenv("FROMAGER_DAGSTER_EXECUTOR", kind)
    executor_def = build_executor(3)
    assert executor_def.name == "fromager"
    field = executor_def.config_schema.as_field()
    processed = process_config(
        field.config_type, {kind: {"tag_concurrency_limits": [{"key": "gpu", "limit": 1}]}}
    )
    assert processed.success, processed.errors
    default = process_config(field.config_type, field.default_value)
    assert list(default.value) == [kind]
    with dg.instance_for_test() as instance:
        executor = executor_def.executor_creation_fn(  # type: ignore[misc]
            InitExecutorContext(
                job=InMemoryJob(_noop_job),
                executor_def=executor_def,
                executor_config=processed.value,
                instance=instance,
            )
        )
    assert isinstance(executor, ThreadExecutor if kind == "threads" else MultiprocessExecutor)
    limits = executor._tag_concurrency_limits
    assert sorted((item["key"], item["limit"]) for item in limits) == [
        ("gpu", 1),
        ("lane_0", 1),
        ("lane_1", 1),
        ("lane_2", 1),
    ]
    assert executor._max_concurrent == 3


def test_multiprocess_run(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scenario with the default left at threads and the run asking for processes (as the
    launchpad would): one forkserver process per step, same order, lanes and retries."""
    monkeypatch.delenv("FROMAGER_DAGSTER_EXECUTOR", raising=False)
    run = run_scenario(
        tmp_path,
        upstream,
        monkeypatch,
        prefix="mp",
        run_config={"execution": {"config": {"multiprocess": {}}}},
    )
    check_scenario(run)
    launches = [m for _, kind, m in run.log if kind == "STEP_WORKER_STARTING"]
    assert launches and all(m.startswith("Launching subprocess") for m in launches)
