"""A run executor that runs steps in threads of the run worker: the definitions, the job, the plan
and the resources are built once per run instead of once per step.

Dagster still does the scheduling: the steps come from Dagster's ``ActiveExecution`` (topological
order, ``max_concurrent``, tag concurrency limits, so the "lanes" for exclusive builds, retry
policies and their delays, instance concurrency pools), and each step runs Dagster's own
``dagster_event_sequence_for_step``, so the event log is the one the other executors write
(STEP_START, materializations, checks, STEP_SUCCESS / STEP_FAILURE / STEP_UP_FOR_RETRY).
Only the place a step runs changes: a thread instead of a process. Builds spend their time in
subprocesses (uv, the build backend), which release the GIL.

This sits on Dagster's executor extension point (``@executor``, ``Executor.execute``) and uses
``dagster._core`` internals the way dagster-celery and dagster-dask do; tested against the
pinned dagster minor version by tests/defs/test_executor_threads.py.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

from dagster._core.events import DagsterEvent, EngineEventData
from dagster._core.execution.api import ExecuteRunWithPlanIterable
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.execution.context.system import PlanExecutionContext, PlanOrchestrationContext
from dagster._core.execution.context_creation_job import PlanExecutionContextManager
from dagster._core.execution.plan.active import ActiveExecution
from dagster._core.execution.plan.execute_plan import (
    _trigger_hook,
    dagster_event_sequence_for_step,
)
from dagster._core.execution.plan.instance_concurrency_context import InstanceConcurrencyContext
from dagster._core.execution.plan.plan import ExecutionPlan
from dagster._core.execution.retries import RetryMode
from dagster._core.execution.step_dependency_config import StepDependencyConfig
from dagster._core.executor.base import Executor
from dagster._utils.error import serializable_error_info_from_exc_info
from dagster_shared.error import SerializableErrorInfo

from .step_logs import routed_output, step_log

_DONE = object()
_IDLE_SECONDS = 1.0  # longest wait for step events: how soon a termination request is seen


class ThreadExecutor(Executor):
    """Steps of one run in up to ``max_concurrent`` threads of the run worker."""

    def __init__(
        self,
        retries: RetryMode,
        max_concurrent: int | None = None,
        tag_concurrency_limits: list[dict[str, Any]] | None = None,
    ) -> None:
        self._retries = retries
        self._max_concurrent = max(1, max_concurrent or os.cpu_count() or 1)
        self._tag_concurrency_limits = list(tag_concurrency_limits or [])

    @property
    def retries(self) -> RetryMode:
        return self._retries

    @property
    def step_dependency_config(self) -> StepDependencyConfig:
        return StepDependencyConfig.default()

    def execute(
        self, plan_context: PlanOrchestrationContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        yield DagsterEvent.engine_event(
            plan_context,
            f"Executing steps in up to {self._max_concurrent} threads (pid: {os.getpid()})",
            event_specific_data=EngineEventData.in_process(
                os.getpid(), execution_plan.step_keys_to_execute
            ),
        )
        yield from iter(
            ExecuteRunWithPlanIterable(
                execution_plan=plan_context.execution_plan,
                iterator=self._threaded_iterator,
                execution_context_manager=PlanExecutionContextManager(
                    job=plan_context.job,
                    retry_mode=plan_context.retry_mode,
                    execution_plan=plan_context.execution_plan,
                    run_config=plan_context.run_config,
                    dagster_run=plan_context.dagster_run,
                    instance=plan_context.instance,
                    raise_on_error=plan_context.raise_on_error,
                    output_capture=plan_context.output_capture,
                    step_dependency_config=self.step_dependency_config,
                ),
            )
        )
        yield DagsterEvent.engine_event(
            plan_context,
            f"Finished steps in threads (pid: {os.getpid()})",
            event_specific_data=EngineEventData.in_process(os.getpid()),
        )

    def _threaded_iterator(
        self, job_context: PlanExecutionContext, execution_plan: ExecutionPlan
    ) -> Iterator[DagsterEvent]:
        events: queue.SimpleQueue[tuple[str, object]] = queue.SimpleQueue()
        running: dict[str, tuple[threading.Thread, Any, list[DagsterEvent]]] = {}
        stopping = False
        with ExitStack() as stack:
            concurrency = stack.enter_context(
                InstanceConcurrencyContext(job_context.instance, job_context.dagster_run)
            )
            active = stack.enter_context(
                ActiveExecution(
                    execution_plan,
                    retry_mode=job_context.retry_mode,
                    max_concurrent=self._max_concurrent,
                    tag_concurrency_limits=self._tag_concurrency_limits,
                    instance_concurrency_context=concurrency,
                    step_dependency_config=job_context.step_dependency_config,
                )
            )
            yield from self._capture_logs(job_context, stack)
            stack.enter_context(routed_output())  # each step's own writes: its own log
            while (not stopping and not active.is_complete) or running:
                if not stopping and active.check_for_interrupts():
                    stopping = True
                    active.mark_interrupted()
                    yield DagsterEvent.engine_event(
                        job_context,
                        "Thread executor: termination requested; letting running steps finish",
                        EngineEventData.interrupted(list(running)),
                    )
                if not stopping:
                    yield from self._launch(job_context, active, running, events)
                if not running:
                    if not stopping and not active.is_complete:
                        active.sleep_til_ready()
                    continue
                # Sleep until a step reports (or a retry delay or a pool claim is due, or a
                # second passed, to notice a termination request); nothing else can free a step.
                for key, payload in _next_batch(events, _wait_seconds(active)):
                    _, step_context, step_events = running[key]
                    if isinstance(payload, DagsterEvent):
                        step_events.append(payload)
                        yield payload
                        active.handle_event(payload)
                        continue
                    if isinstance(payload, SerializableErrorInfo):  # the thread itself broke
                        yield DagsterEvent.engine_event(
                            step_context,
                            f"Thread executor: step {key} raised outside the step's own "
                            "error handling",
                            EngineEventData.engine_error(payload),
                        )
                        failure = self.log_failure_or_retry_event_after_error(
                            step_context, payload, active.get_known_state()
                        )
                        step_events.append(failure)
                        yield failure
                        active.handle_event(failure)
                    thread, _, _ = running.pop(key)
                    thread.join()
                    active.verify_complete(job_context, key)
                    plan_events = list(active.plan_events_iterator(job_context))
                    step_events.extend(plan_events)
                    yield from plan_events
                    yield from _trigger_hook(step_context, step_events)
                yield from active.plan_events_iterator(job_context)

    def _launch(
        self,
        job_context: PlanExecutionContext,
        active: ActiveExecution,
        running: dict[str, tuple[threading.Thread, Any, list[DagsterEvent]]],
        events: queue.SimpleQueue[tuple[str, object]],
    ) -> Iterator[DagsterEvent]:
        """Start a thread for every step Dagster allows now (order, slots, lanes, pools)."""
        while True:
            steps = active.get_steps_to_execute(limit=self._max_concurrent - len(running))
            yield from active.concurrency_event_iterator(job_context)
            if not steps:
                return
            batch = []
            for step in steps:  # the whole batch is logged as launched before any step runs
                step_context = job_context.for_step(step, active.get_known_state())
                yield DagsterEvent.step_worker_starting(
                    step_context, f'Starting a thread for "{step.key}".', metadata={}
                )
                thread = threading.Thread(
                    target=_run_step,
                    args=(step.key, job_context, step_context, events),
                    name=f"dagster-step-{step.key}",
                    daemon=True,
                )
                running[step.key] = (thread, step_context, [])
                batch.append(thread)
            for thread in batch:
                thread.start()

    @staticmethod
    def _capture_logs(
        job_context: PlanExecutionContext, stack: ExitStack
    ) -> Iterator[DagsterEvent]:
        """The run's capture of the process's file descriptors (what bypasses ``sys.stdout``:
        subprocesses that inherit them). It names no step: each step has its own log
        (:mod:`.step_logs`), which the UI would not pick if this one named the step too."""
        manager = job_context.instance.compute_log_manager
        log_key = manager.build_log_key_for_run(
            job_context.run_id,
            create_compute_log_file_key(),  # type: ignore[no-untyped-call]
        )
        try:
            log_context = stack.enter_context(manager.capture_logs(log_key))
            yield DagsterEvent.capture_logs(job_context, [], log_key, log_context)
        except Exception:  # noqa: BLE001  as in Dagster's executors: reported, not fatal
            yield DagsterEvent.engine_event(
                job_context,
                "Exception while setting up compute log capture",
                EngineEventData(error=serializable_error_info_from_exc_info(sys.exc_info())),
            )


def _run_step(
    key: str,
    job_context: PlanExecutionContext,
    step_context: Any,
    events: queue.SimpleQueue,  # type: ignore[type-arg]
) -> None:
    """Dagster's step body in this thread, its output in its own compute log; every event,
    then a done marker, goes to ``events``."""
    try:
        with step_log(job_context, key) as captured:
            if captured is not None:
                events.put((key, captured))
            _step_events(key, step_context, events)
    except BaseException:  # noqa: BLE001 - reported to the orchestrating thread
        events.put((key, serializable_error_info_from_exc_info(sys.exc_info())))
        return
    events.put((key, _DONE))


def _step_events(key: str, step_context: Any, events: queue.SimpleQueue) -> None:  # type: ignore[type-arg]
    """The step's events, as Dagster's step execution logs them, into ``events``."""
    events.put(
        (
            key,
            DagsterEvent.step_worker_started(
                step_context.log,
                step_context.job_name,
                message=f'Executing step "{key}" in thread {threading.current_thread().name}.',
                metadata={"pid": str(os.getpid())},
                step_key=key,
            ),
        )
    )
    for event in dagster_event_sequence_for_step(step_context):
        events.put((key, event))


def _wait_seconds(active: ActiveExecution) -> float:
    """Until the next retry delay or pool claim check is due, at most ``_IDLE_SECONDS``."""
    due: float = active.sleep_interval()  # type: ignore[no-untyped-call]
    return min(due, _IDLE_SECONDS) if due > 0 else _IDLE_SECONDS


def _next_batch(
    events: queue.SimpleQueue[tuple[str, object]], timeout: float
) -> list[tuple[str, object]]:
    """The next event (waiting up to ``timeout``) and every one already queued after it, in
    arrival order (per step: emission order); empty when none arrived."""
    try:
        batch = [events.get(timeout=timeout)]
    except queue.Empty:
        return []
    while True:
        try:
            batch.append(events.get_nowait())
        except queue.Empty:
            return batch
