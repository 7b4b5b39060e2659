"""Each step's own compute log when steps run in threads of one process.

Dagster captures a process's output by its file descriptors (``ComputeLogManager.capture_logs``),
which every thread shares: it cannot tell one step's output from another's. So the thread
executor keeps that capture for the run (what reaches the descriptors directly: a subprocess that
inherits them, a C library) and gives each step attempt its own log key, written through the
manager's ``open_log_stream`` and announced by a ``LOGS_CAPTURED`` event naming that step alone,
as Dagster's own executors do for a step process. What a step's thread writes to ``sys.stdout``
or ``sys.stderr`` (a build's log, :func:`.build_log.show_build_log`; a ``print``) goes there:
while a run's steps execute, both are stand-ins that send each write to the stream of the step
the writing thread runs, and everything else to the stream they replaced.

Like the thread executor, this uses ``dagster._core`` internals of the pinned minor version;
tests/defs/test_executor_threads.py runs parallel steps through it on a real instance.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import IO, Any, TextIO

from dagster._core.events import DagsterEvent
from dagster._core.execution.compute_logs import create_compute_log_file_key
from dagster._core.storage.compute_log_manager import CapturedLogContext, ComputeIOType
from dagster._core.storage.local_compute_log_manager import LocalComputeLogManager
from dagster._utils import touch_file

_routes: dict[int, tuple[IO[Any], IO[Any]]] = {}  # thread ident -> the step's (stdout, stderr)
_lock = threading.Lock()
_users = 0  # runs executing in this process; the stand-ins stay while there is one


class _ThreadRouted:
    """``sys.stdout`` or ``sys.stderr`` while steps run: a step thread's writes go to its step's
    stream, any other thread's to ``fallback`` (which every other attribute comes from)."""

    def __init__(self, fallback: TextIO, index: int) -> None:
        self.fallback = fallback
        self._index = index

    def _target(self) -> IO[Any]:
        route = _routes.get(threading.get_ident())
        return self.fallback if route is None else route[self._index]

    def write(self, text: str) -> int:
        target = self._target()
        written = target.write(text)
        if target is not self.fallback and "\n" in text:
            target.flush()  # the UI reads the file while the step runs
        return written

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        self._target().flush()

    def __getattr__(self, name: str) -> Any:  # fileno, encoding, isatty, buffer, ...
        return getattr(self.fallback, name)


@contextmanager
def routed_output() -> Iterator[None]:
    """While the block runs, ``sys.stdout`` and ``sys.stderr`` route by thread (see
    :func:`step_log`); nested or concurrent runs in one process share the stand-ins."""
    global _users  # noqa: PLW0603  how many runs share the stand-ins, under _lock
    with _lock:
        if _users == 0:
            sys.stdout = _ThreadRouted(sys.stdout, 0)
            sys.stderr = _ThreadRouted(sys.stderr, 1)
        _users += 1
    try:
        yield
    finally:
        with _lock:
            _users -= 1
            if _users == 0:
                for name in ("stdout", "stderr"):
                    stream = getattr(sys, name)
                    if isinstance(stream, _ThreadRouted):  # unless someone replaced it since
                        stream.flush()
                        setattr(sys, name, stream.fallback)


@contextmanager
def step_log(job_context: Any, step_key: str) -> Iterator[DagsterEvent | None]:
    """In the step's own thread: a new compute log for this attempt of ``step_key``, which this
    thread's ``sys.stdout``/``sys.stderr`` write to while the block runs (under
    :func:`routed_output`). Yields the ``LOGS_CAPTURED`` event that names it (already in the
    event log; None when the instance keeps no compute logs)."""
    manager = job_context.instance.compute_log_manager
    log_key = manager.build_log_key_for_run(
        job_context.run_id,
        create_compute_log_file_key(),  # type: ignore[no-untyped-call]
    )
    ident = threading.get_ident()
    with ExitStack() as stack:
        try:
            out = stack.enter_context(manager.open_log_stream(log_key, ComputeIOType.STDOUT))
            err = stack.enter_context(manager.open_log_stream(log_key, ComputeIOType.STDERR))
        except Exception:  # noqa: BLE001 - a log that cannot be kept does not fail the step
            out = err = None
        if out is None or err is None:  # no log (NoOpComputeLogManager): the run's log gets it
            yield None
            return
        event = DagsterEvent.capture_logs(
            job_context, [step_key], log_key, CapturedLogContext(log_key)
        )
        _routes[ident] = (out, err)
        try:
            yield event
        finally:
            del _routes[ident]
    if isinstance(manager, LocalComputeLogManager):  # the marker its capture_logs leaves, so
        marker = manager.complete_artifact_path(log_key)  # type: ignore[no-untyped-call]
        touch_file(marker)  # the UI stops waiting for more
