"""What a bootstrap is asked for: its options, and the progress callback it reports to."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Protocol

from fromager_dagster.core.build.sandbox import Sandbox
from fromager_dagster.core.provenance.statement import RunInfo
from fromager_dagster.core.sources.prepare import (
    DEFAULT_SOURCE_DATE_EPOCH as DEFAULT_SOURCE_DATE_EPOCH,
)


class Progress(Protocol):
    """Receives ``(event, package key, detail)`` as work happens; must be thread-safe."""

    def __call__(self, event: str, key: str, detail: str = "") -> None: ...


def no_progress(event: str, key: str, detail: str = "") -> None:  # noqa: ARG001  Progress's names
    return None


@dataclass(frozen=True)
class BootstrapOptions:
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    sdist_only: bool = False
    isolate: bool | Sandbox = True  # True: the best sandbox that works here
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH
    keep_build_envs: bool = False
    test_mode: bool = False  # keep going; fall back to a pre-built wheel; write a report
    skip_constraints: bool = False  # do not write constraints.txt
    multiple_versions: bool = False  # every version each requirement admits, not the newest
    min_release_age: float | None = None  # days; a package's resolver_dist setting wins
    # the collection, run id and signing key provenance names (frozen: one default serves all)
    run: RunInfo = RunInfo()  # noqa: RUF009
