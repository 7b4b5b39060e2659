"""CLI commands as Dagster runs on a local instance: bootstrap, build-parallel, build(-sequence).

``bootstrap`` and ``build-parallel`` write their collection to ``<OUTPUT_DIR>/collections.yaml``
and run the code location's own jobs (``discover_<c>_job``, ``build_<c>_job``) with
``execute_job``; step processes rebuild the job from the collections file
(:func:`bootstrap_job`). ``build`` and ``build-sequence`` run a job of their own, one op per
package in order (:func:`sequence_job`), in this process. Every run, its logs and the wheel
materializations show up in the UI; a watcher follows the event log and prints progress.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ..core.builder import build_package, find_wheel, take_prebuilt
from ..core.errors import ConfigError, FromagerDagsterError
from ..core.failures import FailureRecord, classify
from ..core.graph import ROOT, DependencyGraph
from ..core.index import IndexClient
from ..core.index_server import write_simple_tree
from ..core.layout import OutputLayout
from ..core.prebuilt import download_prebuilt_wheel
from ..core.requirements import Constraints
from ..core.settings import Settings
from ..defs.collections import Collection, load_collections
from ..defs.discovery import discover_job_name
from ..defs.executor import ENV_MAX_CONCURRENT
from ..defs.graph_state import build_job_name, publish_graph
from ..defs.location import build_definitions
from ..defs.resources import FromagerResource
from ..defs.wheels import node_asset_key, reusable_wheel, wheel_key, wheel_op_name
from .progress import ProgressPrinter

ENV_DAGSTER_HOME = "DAGSTER_HOME"
COLLECTIONS_FILE = "collections.yaml"
SESSION_TAG = "fromager/session"
COLLECTION_TAG = "fromager/collection"
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
    names = sorted({str(canonicalize_name(r.name)) for r in requirements}) or ["bootstrap"]
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
    variant: str | None = None,
    settings_file: Path | None = None,
    settings_dir: Path | None = None,
    patches_dir: Path | None = None,
) -> Path:
    """Write ``<OUTPUT_DIR>/collections.yaml`` with the one collection of this command.

    The settings paths are written as given (absolute); without them the collection has no
    overrides (the ``overrides/`` folder beside the file is not picked up by accident).
    """

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
    if variant:
        body["variant"] = variant
    body["overrides"] = None
    for key, path in (
        ("settings_file", settings_file),
        ("settings_dir", settings_dir),
        ("patches_dir", patches_dir),
    ):
        if path is not None:
            body[key] = str(path.resolve())
    path = output_dir.resolve() / COLLECTIONS_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    header = "# Written by the fromager-dagster CLI; `fromager-dagster ui -O` serves it.\n"
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(header + yaml.safe_dump({"collections": {name: body}}), encoding="utf-8")
    tmp.replace(path)
    return path


def bootstrap_job(
    collections_file: str,
    name: str,
    job_name: str,
    concurrency: int,
    isolate: bool,
    reuse: bool = True,
) -> dg.JobDefinition:
    """Reconstructor of the command's jobs, called in the CLI and in every step process."""
    collection = load_collections(Path(collections_file))[name]
    defs = build_definitions(
        {name: collection},
        concurrency=concurrency,
        fromager=FromagerResource(network_isolation=isolate, reuse_wheels=reuse),
    )
    return defs.resolve_job_def(job_name)


# -- following a run ------------------------------------------------------------------------


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
    run_id: str = ""
    success: bool = False
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)
    tracebacks: list[str] = field(default_factory=list)
    materializations: list[dict[str, Any]] = field(default_factory=list)
    failed_steps: dict[str, StepFailure] = field(default_factory=dict)


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
        announce: Callable[[str], bool] = lambda step: True,
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
        if kind == "STEP_START" and requirement and not self.own_events and self.announce(step):
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
        meta = _values(event.materialization.metadata)
        self.outcome.materializations.append(meta)
        if not requirement or self.own_events:
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
            lines = [f"{who}: {(_user_error(data.error)[1].splitlines() or [''])[0]}"]
        for line in lines if not self.own_events else ():
            self.printer("failed", who, line)
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


def _watched(
    instance: dg.DagsterInstance,
    outcome: RunOutcome,
    session: str,
    printer: ProgressPrinter,
    requirement_of: Callable[[str], str],
    execute: Callable[[], Any],
    *,
    announce: Callable[[str], bool] = lambda step: True,
    own_events: bool = False,
) -> RunOutcome:
    """Run ``execute`` (which returns a Dagster result) while a watcher follows the run."""
    start = time.perf_counter()
    watcher = RunWatcher(
        instance, session, outcome, printer, requirement_of, announce, own_events=own_events
    )
    with watcher:
        result = execute()
        outcome.run_id = result.run_id
        outcome.success = result.success
    outcome.seconds = time.perf_counter() - start
    if not outcome.success and not outcome.errors:
        outcome.errors.append(f"{outcome.job_name}: run {outcome.run_id} failed")
    return outcome


# -- bootstrap and build-parallel: the code location's jobs ---------------------------------


@dataclass(frozen=True)
class DagsterBootstrap:
    """The command's settings once its arguments are checked."""

    output_dir: Path
    name: str
    collections_file: Path
    jobs: int
    isolate: bool
    build_wheels: bool  # False with --sdist-only: discovery builds what builds need, no more
    reuse: bool = True  # reuse a wheel built earlier from the same recorded inputs


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
    collection = _collection(settings)
    session = uuid.uuid4().hex
    runs = [_run(instance, settings, collection, discover_job_name(collection), session, printer)]
    if runs[0].success and settings.build_wheels:
        target = _target(settings, build_job_name(collection))
        if _has_job(target):
            runs.append(_run(instance, settings, collection, target, session, printer))
    layout = OutputLayout(settings.output_dir.resolve())
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    built, reused = tally(runs)
    graph_path = layout.work_dir / "graph.json"
    nodes = len(DependencyGraph.load(graph_path).nodes) - 1 if graph_path.is_file() else 0
    return DagsterResult(home, runs, built, reused, nodes, time.perf_counter() - started)


def _collection(settings: DagsterBootstrap) -> Collection:
    collection = load_collections(settings.collections_file).get(settings.name)
    if collection is None:
        raise ConfigError(f"{settings.collections_file}: no collection {settings.name!r}")
    return collection


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
            "reuse": settings.reuse,
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
    *,
    asset_selection: Sequence[dg.AssetKey] | None = None,
    command: str = "bootstrap",
) -> RunOutcome:
    target = _target(settings, job) if isinstance(job, str) else job
    job_def = target.get_definition()
    graph = _graph(collection)
    requirements = _requirements_by_step(collection, graph)
    building = job_def.name == build_job_name(collection)
    reusable = _reusable_steps(collection, graph) if settings.reuse and building else set()
    tags = {SESSION_TAG: session, COLLECTION_TAG: collection.ident, "fromager/cli": command}

    def execute() -> Any:
        with dg.execute_job(
            target,
            instance,
            run_config=_QUIET,
            tags=tags,
            raise_on_error=False,
            asset_selection=asset_selection,
        ) as result:
            return result

    return _watched(
        instance,
        RunOutcome(job_name=job_def.name),
        session,
        printer,
        lambda s: requirements.get(s, ""),
        execute,
        announce=lambda s: s not in reusable,
    )


def _graph(collection: Collection) -> DependencyGraph | None:
    return DependencyGraph.load(collection.graph_path) if collection.graph_path.is_file() else None


def _requirements_by_step(collection: Collection, graph: DependencyGraph | None) -> dict[str, str]:
    """Step key -> ``name==version`` for the wheel assets of the collection's graph."""
    if graph is None:
        return {}
    return {
        wheel_op_name(collection, n.canonicalized_name, n.version): key
        for key, n in graph.nodes.items()
        if key
    }


def _reusable_steps(collection: Collection, graph: DependencyGraph | None) -> set[str]:
    """Steps whose wheel an earlier build made from the same inputs: they will only reuse it."""
    if graph is None:
        return set()
    layout = OutputLayout(collection.output_dir)
    settings = collection.settings()
    return {
        wheel_op_name(collection, node.canonicalized_name, node.version)
        for key, node in graph.nodes.items()
        if key and not node.pre_built and reusable_wheel(graph, key, layout, settings) is not None
    }


def tally(runs: list[RunOutcome]) -> tuple[list[str], list[str]]:
    """Built in this session (by discovery or a build run) and reused from an earlier one."""
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


def describe_runs(result: DagsterResult | BuildSummary) -> list[str]:
    """Summary lines: each run's id and time, and how to see them."""
    lines = [
        f"dagster run: {r.run_id} {r.job_name} ({'success' if r.success else 'failure'}, "
        f"{r.seconds:.1f}s)"
        for r in result.runs
        if r.run_id
    ]
    lines.append(f"dagster instance: {result.home}")
    return lines


@dataclass
class BuildSummary:
    """What a build command did: its runs, the wheels by fate, and (test mode) the failures."""

    home: Path
    runs: list[RunOutcome] = field(default_factory=list)
    built: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    prebuilt: list[str] = field(default_factory=list)
    failures: list[FailureRecord] = field(default_factory=list)
    wheels: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def errors(self) -> list[str]:
        return [e for r in self.runs for e in r.errors]

    @property
    def tracebacks(self) -> list[str]:
        return [t for r in self.runs for t in r.tracebacks]

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


@dataclass(frozen=True)
class GraphBuild:
    """A ``build-parallel`` command once its arguments are checked."""

    run: DagsterBootstrap
    test_mode: bool = False
    index: IndexClient | None = None  # only for pre-built nodes and test-mode fallbacks


def run_graph_build(plan: GraphBuild, printer: ProgressPrinter) -> BuildSummary:
    """The collection graph's wheel assets as one Dagster run (``-m`` steps at a time).

    Hermetic: the graph and the downloaded sources only. The index is asked only for a
    pre-built node whose wheel is not in ``wheels-repo/prebuilt`` and, in test mode, for a
    fallback wheel of a package that failed; packages whose builds waited on it are then
    built in a second run.
    """
    started = time.perf_counter()
    settings = plan.run
    os.environ[ENV_MAX_CONCURRENT] = str(settings.jobs)
    layout = OutputLayout(settings.output_dir.resolve()).ensure()
    instance = open_instance(dagster_home(settings.output_dir))
    collection = _collection(settings)
    graph = DependencyGraph.load(collection.graph_path)
    summary = BuildSummary(home=dagster_home(settings.output_dir))
    publish_graph(instance, collection, collection.graph_path)
    session = uuid.uuid4().hex
    for key, node in graph.nodes.items():
        if key and node.pre_built:
            _prebuilt_node(summary, layout, node.canonicalized_name, node.version, plan, printer)
    target = _target(settings, build_job_name(collection))
    if _has_job(target):
        first = _run(instance, settings, collection, target, session, printer, command="build")
        summary.runs.append(first)
        for meta in first.materializations:
            summary.add(meta)
        if plan.test_mode and not first.success:
            _rescue(plan, summary, instance, collection, graph, target, session, printer)
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    summary.seconds = time.perf_counter() - started
    return summary


def _prebuilt_node(
    summary: BuildSummary,
    layout: OutputLayout,
    name: str,
    version: str,
    plan: GraphBuild,
    printer: ProgressPrinter,
) -> None:
    try:
        wheel = take_prebuilt(layout, name, version, index=plan.index)
    except FromagerDagsterError as exc:
        if not plan.test_mode:
            raise
        summary.failures.append(FailureRecord.from_exception(exc, package=name, version=version))
        printer("failed", f"{name}=={version}", exc.one_line())
        return
    summary.prebuilt.append(f"{name}=={version}")
    summary.wheels.append(wheel.path)
    printer("prebuilt", f"{name}=={version}", wheel.path.name)


def _rescue(
    plan: GraphBuild,
    summary: BuildSummary,
    instance: dg.DagsterInstance,
    collection: Collection,
    graph: DependencyGraph,
    target: dg.ReconstructableJob,
    session: str,
    printer: ProgressPrinter,
) -> None:
    """Test mode: record each failed build, take the index's wheel where there is one, then
    build (in a second run) what waited on a package that is now available."""
    layout = OutputLayout(collection.output_dir)
    step_nodes = {
        wheel_op_name(collection, n.canonicalized_name, n.version): key
        for key, n in graph.nodes.items()
        if key
    }
    done = {k for k, n in graph.nodes.items() if k and n.pre_built} | set(summary.built)
    done |= set(summary.reused)
    failed: list[str] = []
    for run in summary.runs:
        for step, failure in run.failed_steps.items():
            key = step_nodes.get(step, step)
            node = graph.nodes.get(key)
            name, version = (node.canonicalized_name, node.version) if node else (key, None)
            summary.failures.append(_record(failure, name, version))
            failed.append(key)
    for key in failed:
        node = graph.nodes.get(key)
        if node is None or plan.index is None:
            continue
        try:
            wheel = download_prebuilt_wheel(
                plan.index, node.canonicalized_name, node.version, layout.wheels_prebuilt
            )
        except FromagerDagsterError as exc:
            printer.note(f"no pre-built fallback for {key}: {exc}")
            continue
        printer("prebuilt", key, wheel.name)
        summary.prebuilt.append(key)
        summary.wheels.append(wheel)
        done.add(key)
    waiting = [e for e in graph.build_order() if f"{e['dist']}=={e['version']}" not in done]
    retry: list[str] = []
    for entry in waiting:
        key = f"{entry['dist']}=={entry['version']}"
        if key in failed:
            continue
        if all(dep in done or dep in retry for dep in graph.build_requirements(key)):
            retry.append(key)
    if retry:
        keys = [node_asset_key(graph, collection.variant, k) for k in retry]
        second = _run(
            instance,
            plan.run,
            collection,
            target,
            session,
            printer,
            asset_selection=keys,
            command="build",
        )
        summary.runs.append(second)
        for meta in second.materializations:
            summary.add(meta)
        for step, failure in second.failed_steps.items():
            node = graph.nodes[step_nodes.get(step, step)]
            summary.failures.append(_record(failure, node.canonicalized_name, node.version))
    built = set(summary.built) | set(summary.reused) | set(summary.prebuilt)
    recorded = {(f.package, f.version) for f in summary.failures}
    for entry in waiting:
        key = f"{entry['dist']}=={entry['version']}"
        if key in built or (entry["dist"], entry["version"]) in recorded:
            continue
        blockers = [d for d in graph.build_requirements(key) if d not in built]
        summary.failures.append(
            FailureRecord(
                package=entry["dist"],
                version=entry["version"],
                exception_type="DependencyFailedError",
                exception_message=f"not built: build requirement(s) {', '.join(blockers)} failed",
                failure_type="bootstrap",
            )
        )


def _record(failure: StepFailure, name: str, version: str | None) -> FailureRecord:
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


# -- build and build-sequence: one op per package, in order ---------------------------------


@dataclass(frozen=True)
class SequenceEntry:
    name: str
    version: str
    prebuilt: bool = False

    @property
    def key(self) -> str:
        return f"{self.name}=={self.version}"


@dataclass(frozen=True)
class SequenceBuild:
    """A ``build`` or ``build-sequence`` command once its arguments are checked."""

    output_dir: Path
    job_name: str
    entries: tuple[SequenceEntry, ...]
    index: IndexClient  # sdists, pre-built wheels and test-mode fallbacks
    wheel_server_url: str | None  # build requirements; None: the local repository
    constraints: Constraints
    settings: Settings
    isolate: bool
    force: bool = False
    test_mode: bool = False


def sequence_op_name(position: int, entry: SequenceEntry) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", f"build_{position:04d}_{entry.name}_{entry.version}")


def sequence_job(plan: SequenceBuild) -> dg.JobDefinition:
    """One op per entry, run in order. Without test mode each op waits on the previous one
    (a failure stops the sequence); in test mode they are independent, ordered by priority."""
    nodes = [
        _sequence_op(plan, position, entry, chained=position > 0 and not plan.test_mode)
        for position, entry in enumerate(plan.entries)
    ]
    dependencies: dict[str, dict[str, dg.DependencyDefinition]] = {}
    if not plan.test_mode:
        for before, after in zip(nodes, nodes[1:], strict=False):
            dependencies[after.name] = {"after": dg.DependencyDefinition(before.name)}
    graph = dg.GraphDefinition(
        name=plan.job_name,
        node_defs=nodes,
        dependencies=dependencies,
        description="Build wheels one at a time, in order (fromager's build-sequence).",
    )
    return graph.to_job(executor_def=dg.in_process_executor)


def _sequence_op(
    plan: SequenceBuild, position: int, entry: SequenceEntry, *, chained: bool
) -> dg.OpDefinition:
    layout = OutputLayout(plan.output_dir)
    asset_key = wheel_key(plan.settings.variant, entry.name, entry.version)

    def materialize(wheel: Path, seconds: float, **flags: bool) -> dg.AssetMaterialization:
        return dg.AssetMaterialization(
            asset_key=asset_key,
            description=f"Wheel of {entry.key} ({plan.job_name})",
            metadata={
                "requirement": entry.key,
                "wheel_path": dg.MetadataValue.path(str(wheel)),
                "wheel_size": dg.MetadataValue.int(wheel.stat().st_size),
                "build_seconds": dg.MetadataValue.float(round(seconds, 3)),
                **{k: dg.MetadataValue.bool(v) for k, v in flags.items()},
            },
        )

    def compute(context, inputs):  # type: ignore[no-untyped-def]  # Dagster reads annotations
        tag = plan.settings.build_tag(entry.name, entry.version)
        existing = (
            None if plan.force else find_wheel(layout, entry.name, entry.version, build_tag=tag)
        )
        if existing is not None:
            context.log.info(f"reused {entry.key} {existing.name}")
            yield materialize(
                existing, 0.0, reused=True, prebuilt=existing.parent == layout.wheels_prebuilt
            )
            yield dg.Output(None)
            return
        context.log.info(f"build {entry.key}")
        try:
            if entry.prebuilt:
                built = take_prebuilt(layout, entry.name, entry.version, index=plan.index)
            else:
                built = build_package(
                    entry.name,
                    entry.version,
                    index=plan.index,
                    layout=layout,
                    isolate=plan.isolate,
                    wheel_server_url=plan.wheel_server_url,
                    constraints=plan.constraints,
                    settings=plan.settings,
                )
        except FromagerDagsterError as exc:
            yield from _sequence_failure(context, plan, layout, entry, exc, materialize)
            return
        if built.prebuilt:
            context.log.info(f"prebuilt {entry.key} {built.path.name}")
        else:
            context.log.info(f"built {entry.key} {built.seconds:.1f}s")
        yield materialize(built.path, built.seconds, prebuilt=built.prebuilt)
        yield dg.Output(None)

    return dg.OpDefinition(
        compute_fn=compute,
        name=sequence_op_name(position, entry),
        ins={"after": dg.In(dg.Nothing)} if chained else {},
        outs={"result": dg.Out(dg.Nothing)},
        tags={"dagster/priority": str(-position)},
        description=f"Build {entry.key}.",
    )


def _sequence_failure(
    context: dg.OpExecutionContext,
    plan: SequenceBuild,
    layout: OutputLayout,
    entry: SequenceEntry,
    exc: FromagerDagsterError,
    materialize: Callable[..., dg.AssetMaterialization],
) -> Iterator[Any]:
    """Fail the step; in test mode first take the index's wheel, so later builds can use it."""
    context.log.info(f"failed {entry.key} {exc.one_line()}")
    record = FailureRecord.from_exception(exc, package=entry.name, version=entry.version)
    metadata: dict[str, Any] = {
        "error": exc.one_line(),
        "failure_record": json.dumps(asdict(record)),
    }
    if exc.log_path:
        metadata["log_path"] = dg.MetadataValue.path(str(exc.log_path))
    if plan.test_mode and not entry.prebuilt:
        try:
            wheel = download_prebuilt_wheel(
                plan.index, entry.name, entry.version, layout.wheels_prebuilt
            )
        except FromagerDagsterError as missing:
            context.log.info(f"no pre-built fallback for {entry.key}: {missing}")
        else:
            context.log.info(f"prebuilt {entry.key} {wheel.name}")
            metadata["prebuilt_fallback"] = dg.MetadataValue.path(str(wheel))
            yield materialize(wheel, 0.0, prebuilt=True, prebuilt_fallback=True)
    raise dg.Failure(description=exc.one_line(), metadata=metadata, allow_retries=False) from exc


def run_sequence(plan: SequenceBuild, printer: ProgressPrinter) -> BuildSummary:
    """Run :func:`sequence_job` in this process on the local instance."""
    started = time.perf_counter()
    home = dagster_home(plan.output_dir)
    instance = open_instance(home)
    OutputLayout(plan.output_dir).ensure()
    job = sequence_job(plan)
    session = uuid.uuid4().hex
    requirements = {sequence_op_name(i, e): e.key for i, e in enumerate(plan.entries)}
    tags = {SESSION_TAG: session, "fromager/cli": plan.job_name}

    def execute() -> Any:
        return job.execute_in_process(
            run_config=_QUIET, instance=instance, tags=tags, raise_on_error=False
        )

    outcome = _watched(
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
            _record(failure, entry.name if entry else step, entry.version if entry else None)
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


def toplevel_of(graph: DependencyGraph) -> list[str]:
    """The graph's top-level requirements as written, else every node's pin."""
    reqs = [e.req for e in graph.nodes[ROOT].edges if e.req_type == "toplevel"]
    return reqs or [key for key in graph.nodes if key]
