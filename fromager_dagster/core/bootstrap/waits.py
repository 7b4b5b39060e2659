"""Which package's build waits for which wheel: a build-dependency cycle is an error, not a hang;
and which requirement of which parent led to a package that failed."""

from __future__ import annotations

import copy
import threading
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fromager_dagster.core.errors import BuildCycleError, BuildError, FromagerDagsterError
from fromager_dagster.core.graph.model import ROOT, ReqType


class DependencyFailedError(BuildError):
    """A package cannot build because one of its build requirements failed."""

    step = "build dependency"


class Waits:
    """The current waits between package keys (``name==version``); thread-safe."""

    def __init__(self) -> None:
        self._waits: dict[str, set[str]] = defaultdict(set)
        self._lock = threading.Lock()

    @contextmanager
    def waiting(self, waiter: str, target: str) -> Iterator[None]:
        """``waiter``'s build needs ``target``'s wheel meanwhile; BuildCycleError on a cycle."""
        self._start(waiter, target)
        try:
            yield
        finally:
            with self._lock:
                self._waits[waiter].discard(target)

    def _start(self, waiter: str, target: str) -> None:
        with self._lock:
            path = self._path(target, waiter)
            if path is not None:
                cycle = [waiter, *path]
                raise BuildCycleError(
                    "build dependency cycle: "
                    + " -> ".join(cycle)
                    + "; break it with a pre-built wheel for one of these packages",
                    package=canonicalize_name(waiter.split("==", maxsplit=1)[0]),
                    version=waiter.split("==")[1],
                )
            self._waits[waiter].add(target)

    def _path(self, start: str, goal: str) -> list[str] | None:
        """A path of current waits from ``start`` to ``goal`` (inclusive), if any."""
        stack: list[tuple[str, list[str]]] = [(start, [start])]
        seen: set[str] = set()
        while stack:
            key, path = stack.pop()
            if key == goal:
                return path
            if key in seen:
                continue
            seen.add(key)
            stack.extend((nxt, [*path, nxt]) for nxt in self._waits.get(key, ()))
        return None


def led_to(
    exc: FromagerDagsterError, parent: str, req: Requirement, req_type: ReqType
) -> FromagerDagsterError:
    """A copy of ``exc`` (which may be shared: the index client caches its errors) naming the
    required package where it names none, and the requirement and parent that led there."""
    led = copy.copy(exc)
    led.package = exc.package or canonicalize_name(req.name)
    if parent != ROOT:
        led.message = f"{exc.message} ({req_type} requirement '{req}' of {parent})"
        led.args = (led.message,)
    return led
