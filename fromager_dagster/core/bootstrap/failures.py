"""The test-mode failure report: fromager's ``work-dir/test-mode-failures-<timestamp>.json``."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from fromager_dagster.core.errors import FromagerDagsterError, IndexAccessError, ResolutionError
from fromager_dagster.core.graph.model import write_atomic

FailureType = Literal["resolution", "bootstrap", "hook", "dependency_extraction"]

#: Steps whose failure fromager files under ``hook``: the PEP 517 discovery hooks (whose
#: failure leaves the build requirements or the metadata unknown) and the plugin hooks.
HOOK_STEPS = frozenset(
    {
        "get_requires_for_build_wheel",
        "get_requires_for_build_sdist",
        "prepare_metadata_for_build_wheel",
        "post_bootstrap",
        "post_build",
        "prebuilt_wheel",
    }
)
#: The step name for reading a package's install requirements (its wheel's Requires-Dist).
DEPENDENCY_EXTRACTION_STEP = "dependency extraction"


@dataclass(frozen=True)
class FailureRecord:
    """One entry of the report, in fromager's field names."""

    package: str
    version: str | None
    exception_type: str
    exception_message: str
    failure_type: FailureType

    @classmethod
    def from_exception(
        cls, exc: BaseException, *, package: str | None = None, version: str | None = None
    ) -> FailureRecord:
        """The record of ``exc``; ``package``/``version`` fill in what the error does not name."""
        own = exc if isinstance(exc, FromagerDagsterError) else None
        return cls(
            package=(own.package if own else None) or package or "",
            version=(own.version if own else None) or version,
            exception_type=type(exc).__name__,
            exception_message=str(exc),
            failure_type=classify(
                type(exc).__name__,
                own.step if own else None,
                resolution=isinstance(exc, ResolutionError),
            ),
        )


def classify(exception_type: str, step: str | None, *, resolution: bool = False) -> FailureType:
    """fromager's failure type for an error of class ``exception_type`` raised in ``step``.

    Works on names, so errors that crossed a process boundary as text classify the same way.
    """
    if resolution or exception_type in (ResolutionError.__name__, IndexAccessError.__name__):
        return "resolution"  # as fromager: a package the index lacks fails its resolution
    if step in HOOK_STEPS:
        return "hook"
    if step == DEPENDENCY_EXTRACTION_STEP:
        return "dependency_extraction"
    return "bootstrap"


def failure_report_path(work_dir: Path, now: dt.datetime | None = None) -> Path:
    """``work_dir/test-mode-failures-<UTC timestamp>.json`` (fromager's name and format)."""
    moment = now or dt.datetime.now(tz=dt.UTC)
    return work_dir / f"test-mode-failures-{moment.strftime('%Y%m%d-%H%M%S-%f')}.json"


def write_failure_report(
    work_dir: Path,
    failures: Iterable[BaseException | FailureRecord],
    *,
    path: Path | None = None,
) -> Path:
    """Write the report of ``failures`` (errors or records) atomically; return its path.

    ``path``: write there, e.g. over an earlier report that more failures extend (default: a
    new :func:`failure_report_path` in ``work_dir``).
    """
    records = [
        f if isinstance(f, FailureRecord) else FailureRecord.from_exception(f) for f in failures
    ]
    if path is None:
        work_dir.mkdir(parents=True, exist_ok=True)
        path = failure_report_path(work_dir)
    body = {"failures": [asdict(record) for record in records]}
    write_atomic(path, json.dumps(body, indent=2) + "\n")
    return path
