"""A bootstrap's scheduler: a thread per package-version, growing the graph as each one learns."""

from __future__ import annotations

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
from fromager_dagster.core.bootstrap.options import BootstrapOptions, Progress
from fromager_dagster.core.bootstrap.prebuilt import PrebuiltWheels
from fromager_dagster.core.bootstrap.tally import Tally
from fromager_dagster.core.bootstrap.waits import DependencyFailedError, Waits, led_to
from fromager_dagster.core.bootstrap.wheel_steps import WheelSteps
from fromager_dagster.core.bootstrap.work import PackageWork, Prepared
from fromager_dagster.core.build import wheels
from fromager_dagster.core.build.environment import BuildEnvFactory
from fromager_dagster.core.build.workers import WorkerProcesses
from fromager_dagster.core.errors import BuildCycleError, BuildError, FromagerDagsterError
from fromager_dagster.core.graph.model import BUILD_TYPES, DependencyGraph, ReqType
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository.records import CachedBuild, cached_build
from fromager_dagster.core.resolve.resolver import ResolvedPackage, Resolver
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.vcs import GitSources


class Scheduler:
    """Every package-version is worked on by a thread of its own (a :class:`PackageWork`):
    prepare the source, discover its build requirements (build-system, then the backend's and
    the sdist hook's), build the wheel once every build requirement's wheel and install closure
    exist, then read its install requirements from the wheel. Heavy work (downloads,
    environments, hooks, builds) is bounded by ``jobs`` slots; waiting never holds a slot.
    Waits are recorded so that a build-dependency cycle is reported as an error instead of
    hanging.
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
        self.packages: dict[str, PackageWork] = {}
        self.lock = threading.Lock()
        self.capacity = Capacity(options.jobs)
        self.waits = Waits()
        self.tally = Tally(progress)
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
            raise led_to(exc, parent, req, req_type) from exc
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
            work = self.packages.get(pkg.key)
            if work is None:
                work = PackageWork.of(pkg, extras, self.layout)
                self.packages[pkg.key] = work
                thread = threading.Thread(
                    target=self._process, args=(work,), name=pkg.key, daemon=True
                )
            else:
                thread = None
                new_extras = extras - work.extras
                work.extras |= new_extras
        if thread is not None:
            self.capacity.start(thread)  # outside the lock (see Capacity.start)
            return
        if new_extras and work.install_known.is_set() and work.error is None:
            self._link_install(work)

    # -- one package -------------------------------------------------------------------------

    def _process(self, work: PackageWork) -> None:
        try:
            try:
                if work.pkg.source.kind == "wheel":
                    self.prebuilt.download(work)
                else:
                    self._discover_build(work)
                    if not self.options.sdist_only:
                        self._ensure_wheel(work.key)
            except FromagerDagsterError as exc:
                # a failed wheel build has had its chance to fall back in _ensure_wheel
                if exc is work.wheel_error or not self._fall_back(work, exc):
                    raise
            self._link_install(work)
            if self.options.sdist_only:
                self.steps.leave_for_build(work)
            self._run_hooks("post_bootstrap", work)
        except FromagerDagsterError as exc:
            self._fail(work, exc)
        except InvalidVersion as exc:  # a version string in the package's metadata or files
            self._fail(work, BuildError(f"invalid version: {exc}", log_path=str(work.log)))
        except Exception as exc:  # noqa: BLE001  a bug or an OS error: keep the run consistent
            self._fail(
                work, BuildError(f"unexpected {type(exc).__name__}: {exc}", log_path=str(work.log))
            )
        finally:
            work.build_known.set()
            work.install_known.set()

    def _discover_build(self, work: PackageWork) -> None:
        cached = cached_build(self.layout, work.pkg, self.settings, self.plugins)
        if cached is not None and self._reuse(work, cached):
            return
        prepared = work.prepared = self.steps.prepare(work)
        # the re-packed sdist is an output nobody waits for: make it off the critical path
        work.repacking = self._background(self.steps.repack, work, prepared)
        requires = prepared.source.build_system.requires
        children = [key for r in requires for key in self.link(work.key, r, "build-system")]
        work.build_reqs["build-system"] = [str(r) for r in requires]
        self.steps.create_env(work)
        work.installed = set(self._install(work, children))
        for req_type, reqs in self.steps.build_requirements(work, prepared):
            for req in reqs:
                self._link_hook_requirement(work, req, req_type, work.installed)
            work.build_reqs[req_type] = [str(r) for r in reqs]
        work.build_known.set()

    def _link_hook_requirement(
        self, work: PackageWork, req: Requirement, req_type: ReqType, installed: set[str]
    ) -> list[str]:
        """Link a hook's requirement. One that a package of the build system's closure
        (``installed``) already satisfies keeps that version, as fromager does: a backend
        asking again for ``setuptools_scm`` gets the ``setuptools_scm<8`` the build system
        brought, not a second version the environment cannot hold."""
        name = canonicalize_name(req.name)
        for key in sorted(installed):
            child = self.packages.get(key)
            if (
                child is not None
                and child.pkg.name == name
                and req.specifier.contains(child.pkg.version, prereleases=True)
            ):
                return self.link(work.key, req, req_type, child.pkg)
        return self.link(work.key, req, req_type)

    def _reuse(self, work: PackageWork, cached: CachedBuild) -> bool:
        """An earlier build's wheel stands if, once its recorded build requirements and their
        install closure are final in this run (reused or rebuilt), the record still holds: a
        build requirement rebuilt with other bytes means a new build. Links the recorded
        requirements either way."""
        work.wheel = cached.wheel  # tentatively: a cycle back to this package takes it
        children = [
            key
            for text in cached.build_requires.get("build-system", [])
            for key in self.link(work.key, Requirement(text), "build-system")
        ]
        try:
            installed = set(self._installable(work.key, children))
            for req_type in ("build-backend", "build-sdist"):
                for text in cached.build_requires.get(req_type, []):
                    req = Requirement(text)
                    children += self._link_hook_requirement(work, req, req_type, installed)
            self._installable(work.key, children)
        except BuildCycleError:
            raise
        except FromagerDagsterError:
            pass  # a build requirement failed: the fresh discovery reports it
        if cached_build(self.layout, work.pkg, self.settings, self.plugins) is None:
            work.wheel = None
            return False
        work.reused = True
        work.build_known.set()
        self.tally.count("reused", work.key, cached.wheel.name)
        return True

    def _fall_back(self, work: PackageWork, exc: FromagerDagsterError) -> bool:
        """Test mode: carry on with a pre-built wheel if the index has one."""
        return self.options.test_mode and self.prebuilt.fall_back(work, exc)

    def _fail(self, work: PackageWork, exc: FromagerDagsterError) -> None:
        work.error = work.stamp(exc)
        if not isinstance(exc, DependencyFailedError):
            self.tally.progress("failed", work.key, exc.one_line())

    def _background(
        self, func: Callable[[PackageWork, Prepared], None], work: PackageWork, arg: Prepared
    ) -> Future[None]:
        def task() -> None:
            try:
                func(work, arg)
            except FromagerDagsterError as exc:
                self._fail(work, exc)

        return self.capacity.background(task)

    def _run_hooks(self, event: str, work: PackageWork, wheel: Path | None = None) -> None:
        """The ``post_build`` or ``post_bootstrap`` hooks, once the re-packed sdist is done;
        ``wheel`` (default: the package's, by then) is the one just built."""
        if work.repacking is not None:
            work.repacking.result()
        self.plugins.run_hooks(
            event,
            name=work.pkg.name,
            version=work.pkg.version,
            variant=self.settings.variant,
            sdist=work.sdist,  # None if the re-pack failed
            wheel=wheel or work.wheel,
        )

    # -- build requirements and wheels -------------------------------------------------------

    def _install(self, work: PackageWork, children: list[str]) -> list[str]:
        """Wait for the wheels of ``children`` and their install closure; install them."""
        pins = self._installable(work.key, children)
        assert work.env is not None
        missing = [pin for pin in pins if pin not in work.installed]
        with self.tally.timed("environments", self.capacity.work):
            self.envs.install(work.env, missing, log=work.log)
        work.installed.update(missing)
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
                    target = self.packages[key]
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
        work = self.packages[key]
        with work.wheel_lock:
            if work.wheel is not None:
                return work.wheel
            if work.wheel_error is not None:
                raise work.wheel_error
            try:
                work.wheel = self._build_wheel(work)
            except FromagerDagsterError as exc:
                if self._fall_back(work, exc):
                    assert work.wheel is not None
                    return work.wheel
                work.wheel_error = exc
                raise
            else:
                return work.wheel

    def _build_wheel(self, work: PackageWork) -> Path:
        work.build_known.wait()
        if work.error is not None:
            raise work.error
        if work.wheel is not None:
            return work.wheel
        self.tally.progress("build", work.key)
        start = time.perf_counter()
        extras = self.wheel.extras(work)
        needed = set(self.graph.children(work.key, BUILD_TYPES))
        with self.tally.timed("builds", self.capacity.work):
            built = self.wheel.adopt_speculative(work, needed)
        if built is None:
            self._install(work, self.graph.children(work.key, BUILD_TYPES))
            with self.tally.timed("builds", self.capacity.work):
                built = self.wheel.build(work)
        wheel = self.wheel.finish(work, built, extras)
        self._run_hooks("post_build", work, wheel)
        self.tally.count("built", work.key, f"{time.perf_counter() - start:.1f}s")
        return wheel

    def _link_install(self, work: PackageWork) -> None:
        with self.lock:
            extras = set(work.extras) - work.extras_done
            first = not work.extras_done
            work.extras_done |= extras | {""}
        if not extras and not first:
            return
        metadata = self._install_metadata(work)
        wanted = sorted(extras) if not first else sorted(extras | {""})
        for req in wheels.install_requirements(metadata, extras=wanted):
            self.link(work.key, req, "install")
        work.install_known.set()

    def _install_metadata(self, work: PackageWork) -> email.message.Message:
        """The package's core metadata: its wheel's; else (sdist-only) the prepare_metadata hook's,
        run once what get_requires_for_build_wheel returned is installed, as a build would have
        it; else, where the hook fails, the metadata of the wheel built for it."""
        # Under the wheel lock: a lazy wheel build (sdist-only) must not run in the same source
        # tree, install into the environment or delete it, while the metadata hook runs.
        with work.wheel_lock:
            if work.wheel is None:
                before = set(work.installed)
                self._install(work, self.graph.children(work.key, ("build-backend",)))
                if work.installed != before and work.hooks is not None:
                    # metadata prefetched with fewer packages installed than a build has
                    work.hooks.forget("prepare_metadata_for_build_wheel")
            try:
                return self.steps.install_metadata(work)
            except BuildError as exc:
                if work.wheel is not None:
                    raise
                with work.log.open("a", encoding="utf-8") as out:
                    out.write(f"# {exc.one_line()}; building the wheel to read its METADATA\n")
        self._ensure_wheel(work.key)  # takes the wheel lock itself
        with work.wheel_lock:
            return self.steps.install_metadata(work)

    # -- the end of the run ------------------------------------------------------------------

    def join(self) -> None:
        """Wait for every package's thread and the background work; stop the pools."""
        self.capacity.join()
        self.workers.close()

    def failures(self) -> list[FromagerDagsterError]:
        """Each failed package's error, a build requirement's failed wheel included (in an
        sdist-only discovery its own discovery may have succeeded); those whose build
        requirement failed only if no other."""
        errors = [
            error
            for work in self.packages.values()
            if (error := work.error or work.wheel_error) is not None
        ]
        return [e for e in errors if not isinstance(e, DependencyFailedError)] or errors
