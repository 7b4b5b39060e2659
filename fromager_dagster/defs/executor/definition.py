"""The run executor: steps in threads (default) or in forkserver processes, bounded, with lanes.

Both kinds are one executor definition, ``fromager``, so a run picks its kind from the
launchpad (run config ``execution: {config: {multiprocess: {}}}``) and the default comes from
``$FROMAGER_DAGSTER_EXECUTOR`` (``threads`` unless set to ``multiprocess``). Whatever the
kind and its configured limits, every lane ``lane_<i>`` is limited to one step at a time, which
is what keeps an exclusive build (tagged with every lane) alone.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import dagster as dg
from dagster import Field, Int, Noneable, Selector
from dagster._core.definitions.executor_definition import (
    ExecutorRequirement,
    _core_multiprocess_executor_creation,
    multiple_process_executor_requirements,
)
from dagster._core.execution.retries import RetryMode, get_retries_config
from dagster._core.execution.tags import get_tag_concurrency_limits_config

from fromager_dagster.core.errors import ConfigError

from .threads import ThreadExecutor

ENV_MAX_CONCURRENT = "FROMAGER_DAGSTER_MAX_CONCURRENT"
ENV_EXECUTOR = "FROMAGER_DAGSTER_EXECUTOR"
THREADS = "threads"  # steps in threads of the run worker (definitions built once per run)
MULTIPROCESS = "multiprocess"  # one forkserver process per step (definitions built per step)
EXECUTOR_KINDS = (THREADS, MULTIPROCESS)


def max_concurrent() -> int:
    """``$FROMAGER_DAGSTER_MAX_CONCURRENT``, default the number of cores."""
    raw = os.environ.get(ENV_MAX_CONCURRENT, "").strip()
    try:
        value = int(raw) if raw else (os.cpu_count() or 1)
    except ValueError:
        value = os.cpu_count() or 1
    return max(1, value)


def executor_kind() -> str:
    """``$FROMAGER_DAGSTER_EXECUTOR``: ``threads`` (the default) or ``multiprocess``."""
    raw = os.environ.get(ENV_EXECUTOR, "").strip().lower() or THREADS
    if raw not in EXECUTOR_KINDS:
        raise ConfigError(
            f"${ENV_EXECUTOR}={raw!r}: expected one of {', '.join(EXECUTOR_KINDS)}; "
            "unset it for the default (threads)"
        )
    return raw


def lane_limits(lanes: int) -> list[dict[str, Any]]:
    """One tag concurrency limit per lane: ``lane_<i>`` runs one step at a time."""
    return [{"key": f"lane_{i}", "limit": 1} for i in range(lanes)]


def executor_config(concurrency: int | None = None, kind: str | None = None) -> dict[str, Any]:
    """The run config (``execution.config``) that selects ``kind`` with ``concurrency`` slots
    (default: :func:`max_concurrent`); the lanes are added by the executor itself."""
    kind = kind or executor_kind()
    config: dict[str, Any] = {"max_concurrent": concurrency or max_concurrent()}
    if kind == MULTIPROCESS:
        config["start_method"] = {"forkserver": {}}
    return {kind: config}


def _kind_fields(lanes: int) -> dict[str, Field]:
    slots = Field(
        Noneable(Int),
        default_value=lanes,
        description=f"Steps at once (default {lanes}: one per lane; more cannot run).",
    )
    common = {
        "max_concurrent": slots,
        "tag_concurrency_limits": get_tag_concurrency_limits_config(),  # type: ignore[no-untyped-call]
        "retries": get_retries_config(),  # type: ignore[no-untyped-call]
    }
    start_method = Field(
        Selector(  # type: ignore[no-untyped-call]
            {"forkserver": Field({"preload_modules": Field([str], is_required=False)})}
        ),
        default_value={"forkserver": {}},
        description="Step processes start from a forkserver that preloaded the code location.",
    )
    return {
        THREADS: Field(common, description="Run steps in threads of the run worker."),
        MULTIPROCESS: Field(
            {**common, "start_method": start_method},
            description="Run each step in its own process (forkserver).",
        ),
    }


def _requirements(config: Mapping[str, Any]) -> Sequence[ExecutorRequirement]:
    return multiple_process_executor_requirements() if MULTIPROCESS in config else []


def build_executor(concurrency: int | None = None) -> dg.ExecutorDefinition:
    """The ``fromager`` executor with ``concurrency`` lanes (default :func:`max_concurrent`);
    its default kind is :func:`executor_kind`."""
    lanes = concurrency or max_concurrent()
    default = executor_kind()

    @dg.executor(
        name="fromager",
        config_schema=Field(
            Selector(_kind_fields(lanes)),  # type: ignore[no-untyped-call]
            default_value={default: {}},
        ),
        requirements=_requirements,
    )
    def fromager_executor(init_context: dg.InitExecutorContext) -> Any:
        """Steps in threads of the run worker, or each in a forkserver process; at most one
        step per lane either way."""
        selected: Mapping[str, Any] = init_context.executor_config
        [(kind, config)] = selected.items()
        limits = {item["key"]: item for item in lane_limits(lanes)}
        for item in config.get("tag_concurrency_limits") or []:
            limits[item["key"]] = item  # a run may add limits, or change a lane's on purpose
        config = {**config, "tag_concurrency_limits": list(limits.values())}
        if kind == THREADS:
            return ThreadExecutor(
                retries=RetryMode.from_config(config["retries"]),  # type: ignore[arg-type]
                max_concurrent=config.get("max_concurrent"),
                tag_concurrency_limits=config["tag_concurrency_limits"],
            )
        return _core_multiprocess_executor_creation(config)

    return fromager_executor
