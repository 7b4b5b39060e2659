"""A bootstrap's scheduler: a thread per package-version, growing the graph as each one learns."""

from __future__ import annotations

import copy
import email.message
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion

from fromager_dagster.core.bootstrap.capacity import Capacity
from fromager_dagster.core.bootstrap.discovery_steps import DiscoverySteps
from fromager_dagster.core.bootstrap.node import Node
from fromager_dagster.core.bootstrap.options import BootstrapOptions, Progress
from fromager_dagster.core.bootstrap.prebuilt import PrebuiltWheels
from fromager_dagster.core.bootstrap.tally import Tally
from fromager_dagster.core.bootstrap.waits import DependencyFailedError, Waits
from fromager_dagster.core.bootstrap.wheel_steps import WheelSteps
from fromager_dagster.core.build import wheels
from fromager_dagster.core.build.environment import BuildEnvFactory
from fromager_dagster.core.build.workers import WorkerProcesses
from fromager_dagster.core.errors import BuildCycleError, BuildError, FromagerDagsterError
from fromager_dagster.core.graph.model import BUILD_TYPES, ROOT, DependencyGraph, ReqType
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository.records import CachedBuild, cached_build
from fromager_dagster.core.resolve.resolver import ResolvedPackage, Resolver
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.vcs import GitSources


class Scheduler:
    """Every package-version is a node processed by its own thread: prepare the source, discover
    its build requirements (build-system, then the backend's and the sdist hook's), build the
    wheel once every build requirement's wheel and install closure exist, then read its install
    requirements from the wheel. Heavy work (downloads, environments, hooks, builds) is bounded
    by ``jobs`` slots; waiting never holds a slot. Waits are recorded so that a build-dependency
    cycle is reported as an error instead of hanging.
    """

    def __init__(
        self,
        *,
        resolver: Resolver,
        index: IndexClient,
        layout: OutputLayout,
        envs: BuildEnvFactory,
        options: BootstrapOptions,
        progress: Progress,
        settings: Settings,
        plugins: Plugins,
        git: GitSources,
    ) -> None:
        self.settings, self.plugins, self.layout = settings, plugins, layout
        self.resolver, self.git, self.envs, self.options = resolver, git, envs, options
        self.graph = DependencyGraph()
        self.nodes: dict[str, Node] = {}
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.capacity = Capacity.for_jobs(options.jobs)
        self.waits = Waits()
        self.tally = Tally(progress)
        self.background: list[Future[None]] = []
        self.workers = WorkerProcesses(options.jobs)
        self.steps = DiscoverySteps(
            settings, plugins, layout, index, envs, options, self.tally, self.capacity, self.workers
        )
        self.wheel = WheelSteps(settings, plugins, layout, options)
        self.prebuilt = PrebuiltWheels(
            index, layout, plugins, settings, self.graph, self.tally, self.capacity.net
        )

    # -- graph growth ------------------------------------------------------------------------

    def link(
        self, parent: str, req: Requirement, req_type: ReqType, pkg: ResolvedPackage | None = None
    ) -> list[str]:
        """Add the edge(s) ``parent -> req`` and start work on each new child; their keys.

        A failure to find the child names the child, and the parent and requirement that led
        there, never the parent's version.
        """
        try:
            chosen = [pkg] if pkg is not None else self._resolve(req)
        except FromagerDagsterError as exc:
            raise _led_to(exc, parent, req, req_type) from exc
        for found in chosen:
            self.graph.add_node(
                found.id,
                download_url=found.source.url,
                pre_built=found.source.kind == "wheel",
                constraint=str(found.constraint) if found.constraint is not None else None,
            )
            self.graph.add_edge(parent, found.key, req_type, req)
            self._spawn(found, set(req.extras))
        return [found.key for found in chosen]

    def _resolve(self, req: Requirement) -> list[ResolvedPackage]:
        self.tally.progress("resolve", str(req))
        with self.tally.timed("resolve", self.capacity.net):
            from_git = self.git.resolve(req)
            if from_git is not None:
                return [from_git]
            if self.options.multiple_versions:
                return self.resolver.resolve_all(req)
            return [self.resolver.resolve(req)]

    def _spawn(self, pkg: ResolvedPackage, extras: set[str]) -> None:
        with self.lock:
            node = self.nodes.get(pkg.key)
            if node is None:
                node = Node.of(pkg, extras, self.layout)
                self.nodes[pkg.key] = node
                thread = threading.Thread(
                    target=self._process, args=(node,), name=pkg.key, daemon=True
                )
            else:
                thread = None
                new_extras = extras - node.extras
                node.extras |= new_extras
        if thread is not None:
            # started outside the lock: start() waits until the thread runs, and with every
            # other thread busy that wait would hold up all of them. join() sees it in time:
            # whoever spawns is the main thread before join() or a thread join() waits for.
            thread.start()
            with self.lock:
                self.threads.append(thread)
            return
        if new_extras and node.install_known.is_set() and node.error is None:
            self._link_install(node)

    # -- one package -------------------------------------------------------------------------

    def _process(self, node: Node) -> None:
        try:
            try:
                if node.pkg.source.kind == "wheel":
                    self.prebuilt.download(node)
                else:
                    self._discover_build(node)
                    if not self.options.sdist_only:
                        self._ensure_wheel(node.key)
            except FromagerDagsterError as exc:
                # a failed wheel build has had its chance to fall back in _ensure_wheel
                if exc is node.wheel_error or not self._fall_back(node, exc):
                    raise
            self._link_install(node)
            if self.options.sdist_only:
                self.steps.leave_for_build(node)
            self._run_hooks("post_bootstrap", node)
        except FromagerDagsterError as exc:
            self._fail(node, exc)
        except InvalidVersion as exc:  # a version string in the package's metadata or files
            self._fail(node, BuildError(f"invalid version: {exc}", log_path=str(node.log)))
        except Exception as exc:  # a bug or an unexpected OS error: keep the run consistent
            self._fail(
                node, BuildError(f"unexpected {type(exc).__name__}: {exc}", log_path=str(node.log))
            )
        finally:
            node.build_known.set()
            node.install_known.set()

    def _discover_build(self, node: Node) -> None:
        cached = cached_build(self.layout, node.pkg, self.settings, self.plugins)
        if cached is not None and self._reuse(node, cached):
            return
        prepared = node.prepared = self.steps.prepare(node)
        # the re-packed sdist is an output nobody waits for: make it off the critical path
        node.repacking = self._background(self.steps.repack, node, prepared.root)
        requires = prepared.build_system.requires
        children = [key for r in requires for key in self.link(node.key, r, "build-system")]
        node.build_reqs["build-system"] = [str(r) for r in requires]
        self.steps.create_env(node)
        node.installed = set(self._install(node, children))
        for req_type, reqs in self.steps.build_requirements(node, prepared):
            for req in reqs:
                self._link_hook_requirement(node, req, req_type, node.installed)
            node.build_reqs[req_type] = [str(r) for r in reqs]
        node.build_known.set()

    def _link_hook_requirement(
        self, node: Node, req: Requirement, req_type: ReqType, installed: set[str]
    ) -> list[str]:
        """Link a hook's requirement. One that a package of the build system's closure
        (``installed``) already satisfies keeps that version, as fromager does: a backend
        asking again for ``setuptools_scm`` gets the ``setuptools_scm<8`` the build system
        brought, not a second version the environment cannot hold."""
        name = canonicalize_name(req.name)
        for key in sorted(installed):
            child = self.nodes.get(key)
            if (
                child is not None
                and child.pkg.name == name
                and req.specifier.contains(child.pkg.version, prereleases=True)
            ):
                return self.link(node.key, req, req_type, child.pkg)
        return self.link(node.key, req, req_type)

    def _reuse(self, node: Node, cached: CachedBuild) -> bool:
        """An earlier build's wheel stands if, once its recorded build requirements and their
        install closure are final in this run (reused or rebuilt), the record still holds: a
        build requirement rebuilt with other bytes means a new build. Links the recorded
        requirements either way."""
        node.wheel = cached.wheel  # tentatively: a cycle back to this node takes it
        children = [
            key
            for text in cached.build_requires.get("build-system", [])
            for key in self.link(node.key, Requirement(text), "build-system")
        ]
        try:
            installed = set(self._installable(node.key, children))
            for req_type in ("build-backend", "build-sdist"):
                for text in cached.build_requires.get(req_type, []):
                    req = Requirement(text)
                    children += self._link_hook_requirement(node, req, req_type, installed)
            self._installable(node.key, children)
        except BuildCycleError:
            raise
        except FromagerDagsterError:
            pass  # a build requirement failed: the fresh discovery reports it
        if cached_build(self.layout, node.pkg, self.settings, self.plugins) is None:
            node.wheel = None
            return False
        node.reused = True
        node.build_known.set()
        self.tally.count("reused", node.key, cached.wheel.name)
        return True

    def _fall_back(self, node: Node, exc: FromagerDagsterError) -> bool:
        """Test mode: carry on with a pre-built wheel if the index has one."""
        return self.options.test_mode and self.prebuilt.fall_back(node, exc)

    def _fail(self, node: Node, exc: FromagerDagsterError) -> None:
        node.error = node.stamp(exc)
        if not isinstance(exc, DependencyFailedError):
            self.tally.progress("failed", node.key, exc.one_line())

    def _background(
        self, func: Callable[[Node, Path], None], node: Node, arg: Path
    ) -> Future[None]:
        def task() -> None:
            try:
                func(node, arg)
            except FromagerDagsterError as exc:
                self._fail(node, exc)

        future = self.capacity.pool.submit(task)
        with self.lock:
            self.background.append(future)
        return future

    def _run_hooks(self, event: str, node: Node, wheel: Path | None = None) -> None:
        """The ``post_build`` or ``post_bootstrap`` hooks, once the re-packed sdist is done;
        ``wheel`` (default: the node's, by then) is the one just built."""
        if node.repacking is not None:
            node.repacking.result()
        self.plugins.run_hooks(
            event,
            name=node.pkg.name,
            version=node.pkg.version,
            variant=self.settings.variant,
            sdist=node.sdist,  # None if the re-pack failed
            wheel=wheel or node.wheel,
        )

    # -- build requirements and wheels -------------------------------------------------------

    def _install(self, node: Node, children: list[str]) -> list[str]:
        """Wait for the wheels of ``children`` and their install closure; install them."""
        pins = self._installable(node.key, children)
        assert node.env is not None
        missing = [pin for pin in pins if pin not in node.installed]
        with self.tally.timed("environments", self.capacity.work):
            self.envs.install(node.env, missing, log=node.log)
        node.installed.update(missing)
        return pins

    def _installable(self, waiter: str, keys: list[str]) -> list[str]:
        closure: list[str] = []
        queue = list(dict.fromkeys(keys))
        seen: set[str] = set()
        while queue:
            key = queue.pop(0)
            if key in seen:
                continue
            seen.add(key)
            try:
                with self.waits.waiting(waiter, key):
                    self._ensure_wheel(key)
                    target = self.nodes[key]
                    target.install_known.wait()
                    if target.error is not None:
                        raise target.error
            except BuildCycleError:
                raise
            except FromagerDagsterError as exc:
                raise DependencyFailedError(
                    f"build requirement {key} failed ({exc.step})", step="build dependency"
                ) from exc
            closure.append(key)
            queue.extend(self.graph.children(key, ("install",)))
        return closure

    def _ensure_wheel(self, key: str) -> Path:
        node = self.nodes[key]
        with node.wheel_lock:
            if node.wheel is not None:
                return node.wheel
            if node.wheel_error is not None:
                raise node.wheel_error
            try:
                node.wheel = self._build_wheel(node)
                return node.wheel
            except FromagerDagsterError as exc:
                if self._fall_back(node, exc):
                    assert node.wheel is not None
                    return node.wheel
                node.wheel_error = exc
                raise

    def _build_wheel(self, node: Node) -> Path:
        node.build_known.wait()
        if node.error is not None:
            raise node.error
        if node.wheel is not None:
            return node.wheel
        self.tally.progress("build", node.key)
        start = time.perf_counter()
        extras = self.wheel.extras(node)
        needed = set(self.graph.children(node.key, BUILD_TYPES))
        with self.tally.timed("builds", self.capacity.work):
            built = self.wheel.adopt_speculative(node, needed)
        if built is None:
            self._install(node, self.graph.children(node.key, BUILD_TYPES))
            with self.tally.timed("builds", self.capacity.work):
                built = self.wheel.build(node)
        wheel = self.wheel.finish(node, built, extras)
        self._run_hooks("post_build", node, wheel)
        self.tally.count("built", node.key, f"{time.perf_counter() - start:.1f}s")
        return wheel

    def _link_install(self, node: Node) -> None:
        with self.lock:
            extras = set(node.extras) - node.extras_done
            first = not node.extras_done
            node.extras_done |= extras | {""}
        if not extras and not first:
            return
        metadata = self._install_metadata(node)
        wanted = sorted(extras) if not first else sorted(extras | {""})
        for req in wheels.install_requirements(metadata, extras=wanted):
            self.link(node.key, req, "install")
        node.install_known.set()

    def _install_metadata(self, node: Node) -> email.message.Message:
        """The node's core metadata: its wheel's; else (sdist-only) the prepare_metadata hook's,
        run once what get_requires_for_build_wheel returned is installed, as a build would have
        it; else, where the hook fails, the metadata of the wheel built for it."""
        # Under the wheel lock: a lazy wheel build (sdist-only) must not run in the same source
        # tree, install into the environment or delete it, while the metadata hook runs.
        with node.wheel_lock:
            if node.wheel is None:
                before = set(node.installed)
                self._install(node, self.graph.children(node.key, ("build-backend",)))
                if node.installed != before and node.hooks is not None:
                    # metadata prefetched with fewer packages installed than a build has
                    node.hooks.forget("prepare_metadata_for_build_wheel")
            try:
                return self.steps.install_metadata(node)
            except BuildError as exc:
                if node.wheel is not None:
                    raise
                with node.log.open("a", encoding="utf-8") as out:
                    out.write(f"# {exc.one_line()}; building the wheel to read its METADATA\n")
        self._ensure_wheel(node.key)  # takes the wheel lock itself
        with node.wheel_lock:
            return self.steps.install_metadata(node)

    # -- the end of the run ------------------------------------------------------------------

    def join(self) -> None:
        """Wait for every package's thread, including those started meanwhile, and the
        background work; then stop the hook pool."""
        joined = 0
        while True:
            with self.lock:
                pending = self.threads[joined:]
            if not pending:
                break
            for thread in pending:
                thread.join()
            joined += len(pending)
        for future in self.background:
            future.result()
        self.capacity.pool.shutdown()
        self.workers.close()

    def failures(self) -> list[FromagerDagsterError]:
        """Each failed package's error; those whose build requirement failed only if no other."""
        errors = [n.error for n in self.nodes.values() if n.error is not None]
        return [e for e in errors if not isinstance(e, DependencyFailedError)] or errors


def _led_to(
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
