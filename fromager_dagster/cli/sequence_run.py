"""build and build-sequence: the job of :mod:`fromager_dagster.defs.sequence` run in this
process on the local instance, its progress printed and its outcome summed up."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..core.bootstrap import FailureRecord
from ..core.index import write_simple_tree
from ..core.layout import OutputLayout
from ..defs.run_tags import CLI_TAG
from ..defs.sequence import SequenceBuild, sequence_job, sequence_op_name
from .build_summary import BuildSummary, step_record
from .instance import dagster_home, open_instance
from .progress import ProgressPrinter
from .run_events import QUIET, SESSION_TAG, RunOutcome, watched


def run_sequence(plan: SequenceBuild, printer: ProgressPrinter) -> BuildSummary:
    """Run :func:`sequence_job` in this process on the local instance."""
    started = time.perf_counter()
    home = dagster_home(plan.output_dir)
    instance = open_instance(home)
    OutputLayout(plan.output_dir).ensure()
    job = sequence_job(plan)
    session = uuid.uuid4().hex
    requirements = {sequence_op_name(i, e): e.key for i, e in enumerate(plan.entries)}
    tags = {SESSION_TAG: session, CLI_TAG: plan.job_name}

    def execute() -> Any:
        return job.execute_in_process(
            run_config=QUIET, instance=instance, tags=tags, raise_on_error=False
        )

    outcome = watched(
        instance,
        RunOutcome(job_name=job.name),
        session,
        printer,
        lambda s: requirements.get(s, ""),
        execute,
        own_events=True,  # the ops log their own build / built / reused / prebuilt events
    )
    summary = BuildSummary(home=home, runs=[outcome])
    for meta in outcome.materializations:
        summary.add(meta)
    by_step = {sequence_op_name(i, e): e for i, e in enumerate(plan.entries)}
    for step, failure in outcome.failed_steps.items():
        entry = by_step.get(step)
        summary.failures.append(
            step_record(failure, entry.name if entry else step, entry.version if entry else None)
        )
    if plan.test_mode:
        done = set(summary.built) | set(summary.reused) | set(summary.prebuilt)
        for entry in plan.entries:
            if entry.key not in done and all(
                (f.package, f.version) != (entry.name, entry.version) for f in summary.failures
            ):
                summary.failures.append(
                    FailureRecord(entry.name, entry.version, "RunFailure", "not run", "bootstrap")
                )
    layout = OutputLayout(plan.output_dir)
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    summary.seconds = time.perf_counter() - started
    return summary
