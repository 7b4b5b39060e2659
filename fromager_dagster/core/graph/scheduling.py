"""How the builds of a graph share the machine and the run: lanes for exclusive and heavy
builds, each build's priority, and test mode's second pass after failed builds.

The Dagster layer turns lanes and priorities into op tags; the second pass is asked by the
command line and by the Dagster layer's second-pass sensor alike.
"""

from __future__ import annotations

import math
import os
from collections.abc import Collection, Iterable
from pathlib import Path
from urllib.parse import urlsplit

from packaging.utils import canonicalize_name

from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.settings.overrides import Settings

#: The tag that makes a build take every lane (Dagster's op tag and the executor's).
EXCLUSIVE_TAG = "fromager/exclusive"


def build_lanes(
    graph: DependencyGraph,
    lanes: int,
    settings: Settings,
    *,
    exclusive: Iterable[str] = (),
    memory_gb: float | None = None,
) -> dict[str, dict[str, str]]:
    """Tags per node key: the "lanes" trick for exclusive and heavy builds.

    Without any exclusive or heavy build there are no lanes (no tags): the executor's
    ``max_concurrent`` is the only limit, and a step starts as soon as a slot is free.
    Otherwise the executor runs at most one step per lane at a time. A build takes one lane
    (round robin in build order), or more when its ``build_options`` ask for it: one lane per
    ``cpu_cores_per_job``, or as many lanes as it takes for their share of the machine's
    memory (``memory_gb``, default this machine's, split evenly) to cover
    ``memory_per_job_gb``, whichever is more, at most every lane. An exclusive build
    (``exclusive``, the collection's ``exclusive_build``, or ``build_options.exclusive_build``)
    takes every lane.
    """
    alone: set[str] = {canonicalize_name(n) for n in exclusive}
    lane_memory = (memory_gb if memory_gb is not None else machine_memory_gb()) / lanes
    wanted = {
        key: _lanes_wanted(graph.nodes[key].canonicalized_name, alone, settings, lane_memory, lanes)
        for key in graph.build_order_keys()
    }
    if all(need == 1 and not every for need, every in wanted.values()):
        # every build takes one slot: the executor's max_concurrent alone limits them, and no
        # step waits for "its" lane behind a long build while another lane is free
        return {}
    tags: dict[str, dict[str, str]] = {}
    position = 0
    for key, (need, every) in wanted.items():
        if every:
            tags[key] = {f"lane_{i}": "1" for i in range(lanes)} | {EXCLUSIVE_TAG: "true"}
            continue
        tags[key] = {f"lane_{(position + i) % lanes}": "1" for i in range(need)}
        position += need
    return tags


def _lanes_wanted(
    name: str, exclusive: set[str], settings: Settings, lane_memory: float, lanes: int
) -> tuple[int, bool]:
    """How many lanes ``name``'s build takes, and whether it is exclusive (every lane)."""
    if name in exclusive or settings.exclusive_build(name):
        return lanes, True
    options = settings.package(name).build_options
    by_memory = math.ceil(options.memory_per_job_gb / lane_memory) if lane_memory else 1
    return min(lanes, max(1, options.cpu_cores_per_job, by_memory)), False


def machine_memory_gb() -> float:
    """This machine's physical memory in GiB (0 when the system does not say)."""
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError):
        return 0.0


def build_priorities(graph: DependencyGraph, layout: OutputLayout) -> dict[str, int]:
    """Priority per node: the longest chain of builds from it to the end, each build weighed
    by its source archive's size in KiB (a large sdist is a long build: babel's 10 MB of
    locale data). A run that starts the ready build of highest priority first starts the
    long chains early instead of leaving them behind short builds that came first."""
    order = graph.build_order_keys()
    dependents: dict[str, list[str]] = {}
    for key in order:
        for dep in graph.build_requirements(key):
            dependents.setdefault(dep, []).append(key)
    priority: dict[str, int] = {}
    for key in reversed(order):
        node = graph.nodes[key]
        archive = layout.sdists_downloads / Path(urlsplit(node.download_url).path).name
        try:
            cost = max(1, archive.stat().st_size // 1024) if node.download_url else 1
        except OSError:
            cost = 1
        after = max((priority.get(d, 0) for d in dependents.get(key, [])), default=0)
        priority[key] = cost + after
    return priority


def second_pass(
    graph: DependencyGraph,
    done: Collection[str],
    failed: Collection[str],
    *,
    selected: Collection[str] | None = None,
) -> list[str]:
    """Test mode: the builds (node keys, in build order) to run again after a run in which
    ``failed`` failed, now that ``done`` (every wheel there: built, reused, pre-built, a failed
    build's fall-back) is there: those of ``selected`` (default: all) that are not done, did
    not fail themselves, and whose build requirements are all done or in this pass before
    them."""
    again: list[str] = []
    for key in graph.build_order_keys():
        if key in done or key in failed or graph.nodes[key].pre_built:
            continue
        if selected is not None and key not in selected:
            continue
        if all(dep in done or dep in again for dep in graph.build_requirements(key)):
            again.append(key)
    return again


def blocked_builds(
    graph: DependencyGraph, done: Collection[str], *, selected: Collection[str] | None = None
) -> dict[str, list[str]]:
    """The builds of ``selected`` (default: all; node key -> its build requirements not done)
    that could not run because a build requirement is not ``done``, in build order."""
    blocked: dict[str, list[str]] = {}
    for key in graph.build_order_keys():
        if key in done or graph.nodes[key].pre_built:
            continue
        if selected is not None and key not in selected:
            continue
        missing = [dep for dep in graph.build_requirements(key) if dep not in done]
        if missing:
            blocked[key] = missing
    return blocked
