"""Work in worker processes: parallel builds and unpacking without one interpreter's lock.

A build is mostly subprocesses (hooks, uv), but its own Python work (unpacking the source,
re-packing the sdist, rewriting the wheel, hashing) is not small, and builds running in
threads of one process (Dagster's run worker) take turns on its interpreter lock. The
workers are started once (``spawn``: the caller has threads) and build one node at a time
each; a worker that dies (out of memory, killed) fails that build as a killed process,
which is worth a retry, and the pool is started again for the next one.
"""

from __future__ import annotations

import multiprocessing
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

from fromager_dagster.core.build.builder import build_node
from fromager_dagster.core.build.sandbox import Sandbox
from fromager_dagster.core.errors import BuildError, SourceError
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.provenance.statement import RunInfo
from fromager_dagster.core.repository.built import BuiltWheel
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import unpacking

T = TypeVar("T")


def node_subgraph(graph: DependencyGraph, key: str) -> dict[str, Any]:
    """``key`` and what its build installs, as graph.json data: all a hermetic build of it
    reads (a worker is sent this, not the whole graph)."""
    keep = {key, *graph.build_requirements(key)}
    data = {}
    for name in keep:
        raw = graph.nodes[name].to_json()
        raw["edges"] = [e for e in raw["edges"] if e["key"] in keep]
        data[name] = raw
    return data


def _build_in_worker(
    subgraph: dict[str, Any],
    key: str,
    root: Path,
    isolate: bool | Sandbox,
    settings: Settings,
    uv_cache: Path | None,
    run: RunInfo | None,
) -> BuiltWheel:
    graph = DependencyGraph.from_json(subgraph, source=f"the build of {key}")
    return build_node(
        graph,
        key,
        layout=OutputLayout(root),
        isolate=isolate,
        settings=settings,
        plugins=Plugins.load(),  # the worker's own: plugins are code, not sent to it
        uv_cache=uv_cache,
        run=run,
    )


class WorkerProcesses:
    """Up to ``workers`` processes running module-level functions; started on first use."""

    def __init__(self, workers: int) -> None:
        self.workers = max(1, workers)
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    self.workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def run(self, func: Callable[..., T], *args: Any) -> T:
        """``func(*args)`` in a worker. BrokenProcessPool if the worker died; the pool is
        started again for the next call."""
        pool = self._executor()
        try:
            return pool.submit(func, *args).result()
        except BrokenProcessPool:
            with self._lock:
                if self._pool is pool:
                    self._pool = None
            pool.shutdown(wait=False, cancel_futures=True)
            raise

    def unpack(self, archive: Path, dest_dir: Path) -> Path:
        """:func:`~fromager_dagster.core.sources.unpacking.unpack` in a worker."""
        try:
            return self.run(unpacking.unpack, archive, dest_dir)
        except BrokenProcessPool as exc:
            raise SourceError(f"could not unpack {archive.name}: the worker process died") from exc

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class BuildWorkers(WorkerProcesses):
    """Worker processes that build nodes."""

    def build(
        self,
        graph: DependencyGraph,
        key: str,
        *,
        layout: OutputLayout,
        isolate: bool | Sandbox,
        settings: Settings,
        uv_cache: Path | None = None,
        run: RunInfo | None = None,
    ) -> BuiltWheel:
        """:func:`~fromager_dagster.core.build.builder.build_node` of ``key``, in a worker
        (``run``: what its provenance says of the run)."""
        try:
            return self.run(
                _build_in_worker,
                node_subgraph(graph, key),
                key,
                layout.root,
                isolate,
                settings,
                uv_cache,
                run,
            )
        except BrokenProcessPool as exc:
            node = graph.nodes[key]
            raise BuildError(
                "the build worker process died (killed, or out of memory)",
                exit_code=-9,
                package=node.canonicalized_name,
                version=node.version,
                step="build",
            ) from exc
