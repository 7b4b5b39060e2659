"""Bootstrap: discover and build a whole dependency tree from source in parallel."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fromager_dagster.core.bootstrap.failures import write_failure_report
from fromager_dagster.core.bootstrap.options import (
    DEFAULT_SOURCE_DATE_EPOCH,
    BootstrapOptions,
    Progress,
    no_progress,
)
from fromager_dagster.core.bootstrap.scheduler import Scheduler
from fromager_dagster.core.bootstrap.waits import DependencyFailedError
from fromager_dagster.core.build.environment import BuildEnvFactory, temporary_session
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.graph.model import ROOT, DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.page_cache import PageCache
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.index.simple_pages import write_simple_tree
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.plugins.finder import settings_resolver
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.vcs import GitSources

__all__ = [
    "DEFAULT_SOURCE_DATE_EPOCH",
    "BootstrapFailed",
    "BootstrapOptions",
    "BootstrapResult",
    "DependencyFailedError",
    "Progress",
    "bootstrap",
]


@dataclass(frozen=True)
class BootstrapResult:
    graph: DependencyGraph
    outputs: dict[str, Path]
    built: list[str]
    reused: list[str]
    seconds: float
    timings: dict[str, float]
    failures: list[FromagerDagsterError] = field(default_factory=list)  # test mode only
    failure_report: Path | None = None  # test mode only, when something failed
    prebuilt: list[str] = field(default_factory=list)


class BootstrapFailed(FromagerDagsterError):  # noqa: N818  a public name
    """One or more packages failed; ``failures`` holds each root cause."""

    def __init__(self, failures: Sequence[FromagerDagsterError]) -> None:
        # one cause met by several packages (a build cycle fails each package on it) once
        failures = list({f.one_line(): f for f in failures}.values())
        first = failures[0]
        more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
        super().__init__(
            f"{first.message}{more}",
            package=first.package,
            version=first.version,
            log_path=first.log_path,
            step=first.step,
        )
        self.failures = list(failures)

    def __reduce__(self) -> tuple[Any, ...]:
        return (BootstrapFailed, (self.failures,))


def bootstrap(
    requirements: Sequence[Requirement],
    *,
    index: IndexClient,
    constraints: Constraints,
    layout: OutputLayout,
    options: BootstrapOptions | None = None,
    progress: Progress | None = None,
    settings: Settings,
) -> BootstrapResult:
    """Discover and build ``requirements`` and everything they need; write the outputs.

    Outside test mode any failure raises BootstrapFailed (after the independent work is done).
    In test mode the run keeps going, falls back to pre-built wheels where the index has one,
    writes fromager's failure report and returns the failures in the result.
    """
    options = options or BootstrapOptions()
    layout.ensure()
    index = index.with_page_cache(PageCache(layout.cache_dir / "index-pages"))
    started = time.perf_counter()
    plugins = Plugins.load()
    resolver = settings_resolver(
        index, constraints, settings, plugins=plugins, min_release_age=options.min_release_age
    )
    git = GitSources(
        settings,
        constraints,
        downloads_dir=layout.sdists_downloads,
        work_dir=layout.work_dir,
        logs_dir=layout.logs_dir,
        source_date_epoch=options.source_date_epoch,
    )
    with (
        LocalIndexServer(layout.wheel_roots) as server,
        temporary_session(layout.work_dir / "uv-cache") as cache,
    ):
        run = Scheduler(
            resolver=resolver,
            index=index,
            layout=layout,
            envs=BuildEnvFactory(server.url, cache_dir=cache),
            options=options,
            progress=progress or no_progress,
            settings=settings,
            plugins=plugins,
            git=git,
        )
        _run(run, list(requirements))
    return _result(run, layout, options, started)


def _run(run: Scheduler, toplevel: Sequence[Requirement]) -> None:
    """Link the top-level requirements (resolved together unless told otherwise); wait for
    everything they lead to."""
    run.tally.progress("resolve", ", ".join(str(r) for r in toplevel))
    from_git = [r for r in toplevel if run.git.source_for(r) is not None]
    for req in from_git:
        _link_toplevel(run, req)
    toplevel = [r for r in toplevel if r not in from_git]
    if run.options.multiple_versions:
        for req in toplevel:
            _link_toplevel(run, req)
    else:
        try:
            with run.tally.timed("resolve"):
                chosen = run.resolver.resolve_together(toplevel)
        except FromagerDagsterError:
            if not run.options.test_mode:
                raise
            for req in toplevel:  # find which requirement cannot be met; keep the others
                _link_toplevel(run, req)
        else:
            for req in toplevel:
                run.link(ROOT, req, "toplevel", chosen[canonicalize_name(req.name)])
    run.join()


def _link_toplevel(run: Scheduler, req: Requirement) -> None:
    """One top-level requirement resolved alone; in test mode its failure is recorded."""
    try:
        run.link(ROOT, req, "toplevel")
    except FromagerDagsterError as exc:
        if not run.options.test_mode:
            raise
        exc.package = exc.package or canonicalize_name(req.name)
        run.tally.recover(str(req), exc)  # nothing to build: reported, not fatal


def _result(
    run: Scheduler, layout: OutputLayout, options: BootstrapOptions, started: float
) -> BootstrapResult:
    """Write the outputs (and in test mode the failure report); BootstrapFailed outside it."""
    failures = run.failures()
    if failures and not options.test_mode:
        # the index over what was built; a full disk must not hide the package's failure
        with contextlib.suppress(OSError):
            write_simple_tree(layout.wheel_roots, layout.wheels_simple)
        raise BootstrapFailed(failures)
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    outputs = run.graph.write(
        layout.work_dir,
        constraints=not (options.skip_constraints or options.multiple_versions),
    )
    reported = [*run.tally.recovered, *failures]
    return BootstrapResult(
        graph=run.graph,
        outputs=outputs,
        built=sorted(run.tally.outcomes["built"]),
        reused=sorted(run.tally.outcomes["reused"]),
        seconds=time.perf_counter() - started,
        timings=dict(run.tally.timings),
        failures=reported,
        failure_report=write_failure_report(layout.work_dir, reported) if reported else None,
        prebuilt=sorted(run.tally.outcomes["prebuilt"]),
    )
