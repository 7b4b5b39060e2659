"""Following a Dagster run from the CLI: its event log read into progress lines and an outcome."""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import dagster as dg

from ..defs.install_checks import CHECK_NAME as INSTALL_CHECK
from .progress import ProgressPrinter

SESSION_TAG = "fromager/session"
_ENGINE_EVENTS = {
    "resolve",
    "download",
    "discover",
    "build",
    "built",
    "reused",
    "prebuilt",
    "failed",
}
# The runs' own console logger would repeat every event; the watcher prints progress instead.
QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


@dataclass(frozen=True)
class StepFailure:
    """Why one step failed: the user code's own exception, and the step's failure metadata."""

    exception_type: str
    message: str
    metadata: dict[str, Any]


@dataclass
class RunOutcome:
    """What one run did, read from its events."""

    job_name: str
    label: str = ""  # what the run is called in progress output, if not its job's name
    run_id: str = ""
    success: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    materializations: list[dict[str, Any]] = field(default_factory=list)
    failed_steps: dict[str, StepFailure] = field(default_factory=dict)
    checks: dict[str, bool] = field(default_factory=dict)  # install check per requirement

    @property
    def name(self) -> str:
        return self.label or self.job_name


def _values(metadata: Any) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in metadata.items()}


def _user_error(error: Any) -> tuple[str, str]:
    """Class name and message of the user code's exception: the first in the cause chain
    that is not one of Dagster's own (``Failure``, the step execution wrapper)."""
    while error.cause is not None and (
        (error.message or "").startswith("dagster.") or (error.cls_name or "").startswith("Dagster")
    ):
        error = error.cause
    cls_name = error.cls_name or "Exception"
    message = (error.message or "").strip()
    head, sep, rest = message.partition(": ")
    if sep and (head == cls_name or head.endswith("." + cls_name)):
        message = rest
    return cls_name, message


class RunWatcher:
    """Follows one run's event log (polling the instance) and prints progress lines.

    ``requirement_of`` names a step's package (``name==version``); ``announce`` says whether a
    step's start is printed as "building" (not for a step that will only reuse a wheel). Ops
    that log their own ``build``/``built``/``reused`` events set ``own_events``.
    """

    def __init__(
        self,
        instance: dg.DagsterInstance,
        session: str,
        outcome: RunOutcome,
        printer: ProgressPrinter,
        requirement_of: Callable[[str], str],
        announce: Callable[[str], bool] = lambda _step: True,
        *,
        own_events: bool = False,
    ) -> None:
        self.own_events = own_events
        self.instance, self.session, self.outcome = instance, session, outcome
        self.printer, self.requirement_of, self.announce = printer, requirement_of, announce
        self.cursor: str | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True, name="run-watcher")

    def __enter__(self) -> RunWatcher:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self.thread.join()
        self.drain()  # whatever arrived after the last poll

    def _loop(self) -> None:
        while not self.stopping.wait(0.3):
            try:
                self.drain()
            # a busy SQLite file: the next poll or the final drain catches up
            except Exception:  # noqa: BLE001, S112
                continue

    def _find_run(self) -> str:
        if not self.outcome.run_id:
            runs = self.instance.get_runs(
                filters=dg.RunsFilter(
                    job_name=self.outcome.job_name, tags={SESSION_TAG: self.session}
                ),
                limit=1,
            )
            if runs:
                self.outcome.run_id = runs[0].run_id
                self.printer.note(f"dagster run {runs[0].run_id} ({self.outcome.name})")
        return self.outcome.run_id

    def drain(self) -> None:
        run_id = self._find_run()
        while run_id:
            page = self.instance.get_records_for_run(run_id, cursor=self.cursor, limit=500)
            for record in page.records:
                self._on_entry(record.event_log_entry)
            self.cursor = page.cursor
            if not page.has_more:
                break

    def _on_entry(self, entry: Any) -> None:
        event = entry.dagster_event
        if event is None:
            self._on_log(entry.user_message)
            return
        kind = event.event_type_value
        step = event.step_key or ""
        requirement = self.requirement_of(step) if step else ""
        if kind == "STEP_START" and requirement and not self.own_events and self.announce(step):
            self.printer("build", requirement)
        elif kind == "STEP_UP_FOR_RETRY":
            self.printer.note(f"retrying {requirement or step}")
        elif kind == "ASSET_MATERIALIZATION":
            self._on_materialization(event, requirement)
        elif kind == "STEP_FAILURE":
            self._on_failure(event, requirement or step)
        elif kind == "ASSET_CHECK_EVALUATION":
            self._on_check(event.event_specific_data)
        elif kind == "RUN_FAILURE" and not self.outcome.errors:
            self.outcome.errors.append(f"{self.outcome.name}: {event.message}")

    def _on_log(self, message: str) -> None:
        """An op's log event: engine progress lines, one or several (gathered by
        ``defs.progress_log``); other messages are not progress."""
        for line in message.splitlines():
            event, _, rest = line.partition(" ")
            if event not in _ENGINE_EVENTS:
                continue
            if event == "resolve":
                self.printer(event, rest)
            else:
                key, _, detail = rest.partition(" ")
                self.printer(event, key, detail)

    def _on_materialization(self, event: Any, requirement: str) -> None:
        meta = _values(event.materialization.metadata)
        self.outcome.materializations.append(meta)
        if not requirement or self.own_events:
            return
        if meta.get("reused"):
            self.printer("reused", requirement, Path(str(meta.get("wheel_path", ""))).name)
        else:
            self.printer("built", requirement, f"{meta.get('build_seconds', 0):.1f}s")

    def _on_check(self, evaluation: Any) -> None:
        """A failed check is the run's error: the package and the check's own reason."""
        meta = _values(evaluation.metadata)
        who = str(meta.get("requirement") or evaluation.asset_key.to_user_string())
        if evaluation.check_name == INSTALL_CHECK:  # the summary's "install check" count
            self.outcome.checks[who] = bool(evaluation.passed)
        if evaluation.passed:
            return
        reason = str(evaluation.description or meta.get("detail") or "no reason given")
        reason = "; ".join(x.strip() for x in reason.splitlines() if x.strip())  # one line
        self.printer("failed", who, f"{evaluation.check_name}: {reason}")
        self.outcome.errors.append(f"{who}: {evaluation.check_name}: {reason}")

    def _on_failure(self, event: Any, who: str) -> None:
        data = event.step_failure_data
        user = data.user_failure_data if data is not None else None
        lines: list[str] = []
        # test mode's discovery: every package's failure was printed as it happened
        reported = user is not None and "failure_report" in user.metadata
        if user is not None:
            listed = getattr(user.metadata.get("failures"), "value", "") or ""
            lines = [x[2:] for x in str(listed).splitlines() if x.startswith("- ")]
            lines = lines or [user.description or ""]
        elif data is not None and data.error is not None:
            lines = [f"{who}: {(_user_error(data.error)[1].splitlines() or [''])[0]}"]
        for line in lines if not (self.own_events or reported) else ():
            self.printer("failed", who, line)
        if reported and user is not None:
            self.printer.note(user.description or f"{who} failed")
        self.outcome.errors.extend(line for line in lines if line)
        if data is not None and data.error is not None:
            step = event.step_key or self.outcome.job_name
            cls_name, message = _user_error(data.error)
            self.outcome.failed_steps[step] = StepFailure(
                cls_name, message, _values(user.metadata) if user is not None else {}
            )
            self.outcome.tracebacks.append(
                f"Traceback of step {step} (run {self.outcome.run_id}):\n{data.error.to_string()}"
            )


@contextlib.contextmanager
def steps_stdout_apart() -> Iterator[None]:
    """While a run executes, the command's stdout (file descriptor 1) is not the steps' stdout:
    Dagster still captures what a step prints (each build's log) into the run's compute logs,
    but the terminal gets the command's own lines only (progress on stderr, its results on
    stdout once the run is over)."""
    sys.stdout.flush()
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        os.close(devnull)


def watched(
    instance: dg.DagsterInstance,
    outcome: RunOutcome,
    session: str,
    printer: ProgressPrinter,
    requirement_of: Callable[[str], str],
    execute: Callable[[], Any],
    *,
    announce: Callable[[str], bool] = lambda _step: True,
    own_events: bool = False,
) -> RunOutcome:
    """Run ``execute`` (which returns a Dagster result) while a watcher follows the run."""
    start = time.perf_counter()
    watcher = RunWatcher(
        instance, session, outcome, printer, requirement_of, announce, own_events=own_events
    )
    with watcher, steps_stdout_apart():
        result = execute()
        outcome.run_id = result.run_id
        outcome.success = result.success
    outcome.seconds = time.perf_counter() - start
    if not outcome.success and not outcome.errors:
        outcome.errors.append(f"{outcome.name}: run {outcome.run_id} failed")
    return outcome


class RunErrors:
    """The ``errors`` and ``tracebacks`` of a command's result: those of its ``runs``."""

    runs: list[RunOutcome]

    @property
    def errors(self) -> list[str]:
        return [e for r in self.runs for e in r.errors]

    @property
    def tracebacks(self) -> list[str]:
        return [t for r in self.runs for t in r.tracebacks]


class RunsRecord(Protocol):
    """What a command's result has for :func:`describe_runs`."""

    @property
    def home(self) -> Path: ...

    @property
    def runs(self) -> Sequence[RunOutcome]: ...


def describe_runs(result: RunsRecord) -> list[str]:
    """Summary lines: each run's id and time, and how to see them."""
    lines = [
        f"dagster run: {r.run_id} {r.name} ({'success' if r.success else 'failure'}, "
        f"{r.seconds:.1f}s){_checks_summary(r)}"
        for r in result.runs
        if r.run_id
    ]
    lines.append(f"dagster instance: {result.home}")
    return lines


def _checks_summary(run: RunOutcome) -> str:
    """``; install check: 40 of 41 wheels passed`` for a run that checked its wheels."""
    if not run.checks:
        return ""
    passed = sum(run.checks.values())
    return f"; install check: {passed} of {len(run.checks)} wheels passed"
