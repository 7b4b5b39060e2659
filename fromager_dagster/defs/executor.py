"""The run executor: multiprocess (forkserver), bounded, with lanes for exclusive builds."""

from __future__ import annotations

import os

import dagster as dg

ENV_MAX_CONCURRENT = "FROMAGER_DAGSTER_MAX_CONCURRENT"
ENV_EXECUTOR = "FROMAGER_DAGSTER_EXECUTOR"  # "threads": steps in threads of the run worker


def max_concurrent() -> int:
    """``$FROMAGER_DAGSTER_MAX_CONCURRENT``, default the number of cores."""
    raw = os.environ.get(ENV_MAX_CONCURRENT, "").strip()
    try:
        value = int(raw) if raw else (os.cpu_count() or 1)
    except ValueError:
        value = os.cpu_count() or 1
    return max(1, value)


def executor_config(concurrency: int | None = None) -> dict[str, object]:
    """``n`` slots, forkserver, and one lane per slot, each lane limited to one step."""
    n = concurrency or max_concurrent()
    return {
        "max_concurrent": n,
        "start_method": {"forkserver": {}},
        "tag_concurrency_limits": [{"key": f"lane_{i}", "limit": 1} for i in range(n)],
    }


def build_executor(concurrency: int | None = None) -> dg.ExecutorDefinition:
    """The ``multiprocess_executor`` configured by :func:`executor_config`; with
    ``$FROMAGER_DAGSTER_EXECUTOR=threads``, the thread executor with the same slots and lanes."""
    if os.environ.get(ENV_EXECUTOR, "").strip().lower() == "threads":
        from .thread_executor import thread_executor

        config = executor_config(concurrency)
        config.pop("start_method")
        return thread_executor.configured(config, name="fromager_threads")
    return dg.multiprocess_executor.configured(
        executor_config(concurrency), name="fromager_multiprocess"
    )
