"""Bootstrap through Dagster: an ad-hoc collection, its discovery run, then its build run.

The command writes the collection to ``<OUTPUT_DIR>/collections.yaml`` and runs the code
location's own jobs (``discover_<c>_job``, then ``build_<c>_job``) with ``execute_job`` on a
local instance, so the runs, their logs and the wheel materializations show up in the UI.
Step processes rebuild the job from the collections file (:func:`bootstrap_job`).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..core.errors import ConfigError
from ..core.graph import DependencyGraph
from ..core.index_server import write_simple_tree
from ..core.layout import OutputLayout
from ..defs.collections import Collection, load_collections
from ..defs.discovery import discover_job_name
from ..defs.executor import ENV_MAX_CONCURRENT
from ..defs.graph_state import build_job_name
from ..defs.location import build_definitions
from ..defs.resources import FromagerResource
from ..defs.wheels import wheel_op_name
from .progress import ProgressPrinter

ENV_DAGSTER_HOME = "DAGSTER_HOME"
COLLECTIONS_FILE = "collections.yaml"
SESSION_TAG = "fromager/session"
COLLECTION_TAG = "fromager/collection"
_ENGINE_EVENTS = {"resolve", "download", "discover", "build", "built", "reused", "failed"}
# The runs' own console logger would repeat every event; the watcher prints progress instead.
_QUIET = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
_DAGSTER_YAML = """\
# Local instance of fromager-dagster (SQLite under this folder), written by the CLI.
telemetry:
  enabled: false
# Step processes log a few events to the console before the run's loggers exist; the
# event log keeps every level regardless.
python_logs:
  python_log_level: INFO
"""


def dagster_home(output_dir: Path) -> Path:
    """``$DAGSTER_HOME`` if set, else ``<OUTPUT_DIR>/dagster-home``."""
    explicit = os.environ.get(ENV_DAGSTER_HOME, "").strip()
    return Path(explicit).resolve() if explicit else output_dir.resolve() / "dagster-home"


def open_instance(home: Path) -> dg.DagsterInstance:
    """The instance in ``home``; a fresh folder gets a dagster.yaml (SQLite, no telemetry)."""
    home.mkdir(parents=True, exist_ok=True)
    if not (home / "dagster.yaml").exists():
        (home / "dagster.yaml").write_text(_DAGSTER_YAML, encoding="utf-8")
    return dg.DagsterInstance.from_config(str(home))


def collection_name(requirements: Sequence[Requirement]) -> str:
    """``stevedore``, ``flask-requests``, ``a-b-c-and-4-more``: from the top-level names."""
    names = sorted({canonicalize_name(r.name) for r in requirements}) or ["bootstrap"]
    more = f"-and-{len(names) - 3}-more" if len(names) > 3 else ""
    return "-".join(names[:3]) + more


def write_collection(
    output_dir: Path,
    name: str,
    *,
    requirements: Sequence[str],
    requirement_files: Sequence[str],
    constraints: Sequence[str],
    index_url: str | None,
) -> Path:
    """Write ``<OUTPUT_DIR>/collections.yaml`` with the one collection of this command."""

    def located(p: str) -> str:
        return p if "://" in p else str(Path(p).resolve())

    body: dict[str, Any] = {
        "requirements": list(requirements),
        "requirement_files": [located(p) for p in requirement_files],
        "constraints": [located(p) for p in constraints],
        "output_dir": str(output_dir.resolve()),
        "sdist_only": True,  # discovery builds what builds need; the build run does the rest
    }
    if index_url:
        body["index_url"] = index_url
    path = output_dir.resolve() / COLLECTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by `fromager-dagster bootstrap`; `fromager-dagster ui -O` serves it.\n"
    path.write_text(header + yaml.safe_dump({"collections": {name: body}}), encoding="utf-8")
    return path


def bootstrap_job(
    collections_file: str, name: str, job_name: str, concurrency: int, isolate: bool
) -> dg.JobDefinition:
    """Reconstructor of the command's jobs, called in the CLI and in every step process."""
    collection = load_collections(Path(collections_file))[name]
    defs = build_definitions(
        {name: collection},
        concurrency=concurrency,
        fromager=FromagerResource(network_isolation=isolate, reuse_wheels=True),
    )
    return defs.resolve_job_def(job_name)


@dataclass
class RunOutcome:
    """What one run did, read from its events."""

    job_name: str
    run_id: str = ""
    success: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    materializations: list[dict[str, Any]] = field(default_factory=list)


class RunWatcher:
    """Follows one run's event log (polling the instance) and prints progress lines."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        session: str,
        outcome: RunOutcome,
        printer: ProgressPrinter,
        requirement_of: Callable[[str], str],
    ) -> None:
        self.instance, self.session, self.outcome = instance, session, outcome
        self.printer, self.requirement_of = printer, requirement_of
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
            except Exception:  # a busy SQLite file; the next poll or the final drain catches up
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
                self.printer.note(f"dagster run {runs[0].run_id} ({self.outcome.job_name})")
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
        if kind == "STEP_START" and requirement:
            self.printer("build", requirement)
        elif kind == "STEP_UP_FOR_RETRY":
            self.printer.note(f"retrying {requirement or step}")
        elif kind == "ASSET_MATERIALIZATION":
            self._on_materialization(event, requirement)
        elif kind == "STEP_FAILURE":
            self._on_failure(event, requirement or step)
        elif kind == "RUN_FAILURE" and not self.outcome.errors:
            self.outcome.errors.append(f"{self.outcome.job_name}: {event.message}")

    def _on_log(self, message: str) -> None:
        event, _, rest = message.partition(" ")
        if event not in _ENGINE_EVENTS:
            return
        if event == "resolve":
            self.printer(event, rest)
        else:
            key, _, detail = rest.partition(" ")
            self.printer(event, key, detail)

    def _on_materialization(self, event: Any, requirement: str) -> None:
        meta = {k: getattr(v, "value", v) for k, v in event.materialization.metadata.items()}
        self.outcome.materializations.append(meta)
        if not requirement:
            return
        if meta.get("reused"):
            self.printer("reused", requirement, Path(str(meta.get("wheel_path", ""))).name)
        else:
            self.printer("built", requirement, f"{meta.get('build_seconds', 0):.1f}s")

    def _on_failure(self, event: Any, who: str) -> None:
        data = event.step_failure_data
        user = data.user_failure_data if data is not None else None
        lines: list[str] = []
        if user is not None:
            listed = getattr(user.metadata.get("failures"), "value", "") or ""
            lines = [x[2:] for x in str(listed).splitlines() if x.startswith("- ")]
            lines = lines or [user.description or ""]
        elif data is not None and data.error is not None:
            error = data.error
            while error.cause is not None:  # the user code's own exception, not Dagster's wrapper
                error = error.cause
            lines = [f"{who}: {(error.message.strip().splitlines() or [''])[0]}"]
        for line in lines:
            self.printer("failed", who, line)
        self.outcome.errors.extend(line for line in lines if line)
        if data is not None and data.error is not None:
            step = event.step_key or self.outcome.job_name
            self.outcome.tracebacks.append(
                f"Traceback of step {step} (run {self.outcome.run_id}):\n{data.error.to_string()}"
            )


@dataclass(frozen=True)
class DagsterBootstrap:
    """The command's settings once its arguments are checked."""

    output_dir: Path
    name: str
    collections_file: Path
    jobs: int
    isolate: bool
    build_wheels: bool  # False with --sdist-only: discovery builds what builds need, no more


@dataclass
class DagsterResult:
    home: Path
    runs: list[RunOutcome]
    built: list[str]
    reused: list[str]
    nodes: int
    seconds: float

    @property
    def errors(self) -> list[str]:
        return [e for r in self.runs for e in r.errors]

    @property
    def tracebacks(self) -> list[str]:
        return [t for r in self.runs for t in r.tracebacks]


def run_bootstrap(settings: DagsterBootstrap, printer: ProgressPrinter) -> DagsterResult:
    """Discovery run, then (unless sdist-only) the build run; stops after a failed run."""
    started = time.perf_counter()
    os.environ[ENV_MAX_CONCURRENT] = str(settings.jobs)
    home = dagster_home(settings.output_dir)
    instance = open_instance(home)
    collection = load_collections(settings.collections_file).get(settings.name)
    if collection is None:
        raise ConfigError(f"{settings.collections_file}: no collection {settings.name!r}")
    session = uuid.uuid4().hex
    runs = [_run(instance, settings, collection, discover_job_name(collection), session, printer)]
    if runs[0].success and settings.build_wheels:
        target = _target(settings, build_job_name(collection))
        if _has_job(target):
            runs.append(_run(instance, settings, collection, target, session, printer))
    layout = OutputLayout(settings.output_dir.resolve())
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    built, reused = _tally(runs)
    graph_path = layout.work_dir / "graph.json"
    nodes = len(DependencyGraph.load(graph_path).nodes) - 1 if graph_path.is_file() else 0
    return DagsterResult(home, runs, built, reused, nodes, time.perf_counter() - started)


def _target(settings: DagsterBootstrap, job_name: str) -> dg.ReconstructableJob:
    return dg.build_reconstructable_job(
        __name__,
        bootstrap_job.__name__,
        reconstructable_kwargs={
            "collections_file": str(settings.collections_file),
            "name": settings.name,
            "job_name": job_name,
            "concurrency": settings.jobs,
            "isolate": settings.isolate,
        },
    )


def _has_job(target: dg.ReconstructableJob) -> bool:
    try:
        target.get_definition()
    except Exception:  # no wheel assets: the graph has nothing to build from source
        return False
    return True


def _run(
    instance: dg.DagsterInstance,
    settings: DagsterBootstrap,
    collection: Collection,
    job: str | dg.ReconstructableJob,
    session: str,
    printer: ProgressPrinter,
) -> RunOutcome:
    target = _target(settings, job) if isinstance(job, str) else job
    job_def = target.get_definition()
    requirements = _requirements_by_step(collection)
    outcome = RunOutcome(job_name=job_def.name)
    tags = {SESSION_TAG: session, COLLECTION_TAG: collection.ident, "fromager/cli": "bootstrap"}
    start = time.perf_counter()
    with (
        RunWatcher(instance, session, outcome, printer, lambda s: requirements.get(s, "")),
        dg.execute_job(
            target, instance, run_config=_QUIET, tags=tags, raise_on_error=False
        ) as result,
    ):
        outcome.run_id = result.run_id
        outcome.success = result.success
    outcome.seconds = time.perf_counter() - start
    if not outcome.success and not outcome.errors:
        outcome.errors.append(f"{outcome.job_name}: run {outcome.run_id} failed")
    return outcome


def _requirements_by_step(collection: Collection) -> dict[str, str]:
    """Step key -> ``name==version`` for the wheel assets of the collection's graph."""
    if not collection.graph_path.is_file():
        return {}
    graph = DependencyGraph.load(collection.graph_path)
    return {
        wheel_op_name(collection, n.canonicalized_name, n.version): key
        for key, n in graph.nodes.items()
        if key
    }


def _tally(runs: list[RunOutcome]) -> tuple[list[str], list[str]]:
    built: set[str] = set()
    reused: set[str] = set()
    for run in runs:
        for meta in run.materializations:
            if "built_for_discovery" in meta:
                built |= {x for x in str(meta["built_for_discovery"]).split(", ") if x}
                reused |= {x for x in str(meta.get("reused_for_discovery", "")).split(", ") if x}
            elif "requirement" in meta:
                (reused if meta.get("reused") else built).add(str(meta["requirement"]))
    return sorted(built), sorted(reused - built)


def describe_runs(result: DagsterResult) -> list[str]:
    """Summary lines: each run's id and time, and how to see them."""
    lines = [
        f"dagster run: {r.run_id} {r.job_name} ({'success' if r.success else 'failure'}, "
        f"{r.seconds:.1f}s)"
        for r in result.runs
        if r.run_id
    ]
    lines.append(f"dagster instance: {result.home}")
    return lines
