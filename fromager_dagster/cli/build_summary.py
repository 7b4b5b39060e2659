"""What a build command did: its runs, the wheels by fate, and (test mode) the failures."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.bootstrap import FailureRecord, classify
from .run_events import RunErrors, RunOutcome, StepFailure


@dataclass
class BuildSummary(RunErrors):
    """What a build command did: its runs, the wheels by fate, and (test mode) the failures."""

    home: Path
    runs: list[RunOutcome] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    prebuilt: list[str] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    wheels: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def reused_up_to_date(self, requirements: list[str]) -> None:
        """Count wheels left alone because they are up to date (no step ran for them)."""
        self.reused.extend(requirements)

    def add(self, meta: dict[str, Any]) -> None:
        """Count one wheel materialization (by its metadata)."""
        requirement = str(meta.get("requirement", ""))
        if not requirement:
            return
        if meta.get("prebuilt"):
            self.prebuilt.append(requirement)
        elif meta.get("reused"):
            self.reused.append(requirement)
        else:
            self.built.append(requirement)
        if meta.get("wheel_path"):
            self.wheels.append(Path(str(meta["wheel_path"])))


def step_record(failure: StepFailure, name: str, version: str | None) -> FailureRecord:
    """The failure record of a failed step: the one the step wrote, else one from its error."""
    recorded = failure.metadata.get("failure_record")
    if recorded:
        return FailureRecord(**json.loads(str(recorded)))
    return FailureRecord(
        package=name,
        version=version,
        exception_type=failure.exception_type,
        exception_message=failure.message,
        failure_type=classify(failure.exception_type, None),
    )
