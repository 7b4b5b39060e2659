"""Test mode after a run of wheel builds in which some failed: take each failed build's
pre-built wheel from the index where there is one, then build, in a second pass, what waited
on a package that is now there; what still cannot be built is reported as blocked.

One decision for every way a run of builds is started: the command line does the second pass
itself at once (``build-parallel --test-mode``, ``bootstrap --test-mode``), the Dagster
layer's sensor does it for a run launched from the UI, a schedule or a sensor, with the same
functions, so the wheels and the failures are the same.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.bootstrap.failures import FailureRecord
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.graph.scheduling import blocked_builds, second_pass
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins.registry import Plugins
from fromager_dagster.core.repository.prebuilt import prebuilt_fallback
from fromager_dagster.core.settings.overrides import Settings


@dataclass(frozen=True)
class SecondPass:
    """What test mode does after a run whose builds ``failed``."""

    fallbacks: dict[str, Path] = field(default_factory=dict)  # failed key -> the index's wheel
    no_fallback: dict[str, str] = field(default_factory=dict)  # failed key -> why none (a line)
    rebuild: list[str] = field(default_factory=list)  # the builds to run now, in build order


def plan_second_pass(
    graph: DependencyGraph,
    failed: Iterable[str],
    *,
    layout: OutputLayout,
    index: IndexClient | None,
    settings: Settings,
    plugins: Plugins,
    selected: Collection[str] | None = None,
) -> SecondPass:
    """Take a pre-built wheel for each of the ``failed`` builds (node keys) the index has one
    of (:func:`~fromager_dagster.core.repository.prebuilt.prebuilt_fallback`; none without
    ``index``), then the builds of ``selected`` (the run's; default: every build of the
    graph) that can now run: every build requirement's wheel in the local repository."""
    failed = [key for key in dict.fromkeys(failed) if key in graph.nodes]
    fallbacks: dict[str, Path] = {}
    no_fallback: dict[str, str] = {}
    for key in failed:
        if index is None:
            continue
        node = graph.nodes[key]
        try:
            found = prebuilt_fallback(
                index,
                node.canonicalized_name,
                node.version,
                layout,
                settings=settings,
                plugins=plugins,
            )
        except FromagerDagsterError as exc:
            no_fallback[key] = str(exc)
            continue
        fallbacks[key] = found.path
    done = (wheels_present(graph, layout) - set(failed)) | set(fallbacks)
    rebuild = second_pass(graph, done, failed, selected=selected)
    return SecondPass(fallbacks, no_fallback, rebuild)


def blocked_failures(
    graph: DependencyGraph,
    layout: OutputLayout,
    *,
    failed: Collection[str],
    selected: Collection[str] | None = None,
) -> list[FailureRecord]:
    """The failure records (fromager's ``DependencyFailedError``) of the builds of
    ``selected`` that never ran because a build requirement's wheel is not there; builds that
    ``failed`` themselves have their own record."""
    done = wheels_present(graph, layout) - set(failed)
    return [
        FailureRecord(
            package=graph.nodes[key].canonicalized_name,
            version=graph.nodes[key].version,
            exception_type="DependencyFailedError",
            exception_message=f"not built: build requirement(s) {', '.join(missing)} failed",
            failure_type="bootstrap",
        )
        for key, missing in blocked_builds(graph, done, selected=selected).items()
        if key not in failed
    ]


def wheels_present(graph: DependencyGraph, layout: OutputLayout) -> set[str]:
    """The nodes of ``graph`` whose wheel is in the local repository (built or pre-built)."""
    there: set[tuple[str, Version]] = set()
    for root in layout.wheel_roots:
        for path in root.glob("*.whl") if root.is_dir() else ():
            try:
                name, version, _, _ = parse_wheel_filename(path.name)
            except ValueError:
                continue
            there.add((name, version))
    present = set()
    for key, node in graph.nodes.items():
        try:
            wanted = (canonicalize_name(node.canonicalized_name), Version(node.version))
        except InvalidVersion:
            continue
        if key and wanted in there:
            present.add(key)
    return present
