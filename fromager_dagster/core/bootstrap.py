"""Bootstrap: discover and build a whole dependency tree from source, independent parts in parallel.

Every package-version is a node processed by its own thread: prepare the source, discover its
build requirements (build-system, then the backend's and the sdist hook's), build the wheel
once every build requirement's wheel and install closure exist, then read its install
requirements from the wheel. Heavy work (downloads, environments, hooks, builds) is bounded by
``jobs`` slots; waiting never holds a slot. Waits are recorded so that a build-dependency
cycle is reported as an error instead of hanging.
"""

from __future__ import annotations

import email
import json
import os
import shutil
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from . import source_urls, sources, wheels
from .buildenv import BuildEnv, BuildEnvFactory
from .errors import BuildCycleError, BuildError, FromagerDagsterError
from .failures import DEPENDENCY_EXTRACTION_STEP, write_failure_report
from .graph import BUILD_TYPES, ROOT, DependencyGraph, ReqType, write_atomic
from .hooks import BuildSystem, HookCaller
from .index import DistFile, IndexClient
from .index_server import LocalIndexServer, write_simple_tree
from .layout import OutputLayout
from .plugins import Plugins
from .plugins import steps as plugin_steps
from .plugins.finder import source_policy
from .prebuilt import fetch_prebuilt_wheel
from .prepare import PreparedSource, build_fingerprint, hook_environ, prepare_source
from .requirements import Constraints
from .resolver import ResolvedPackage, Resolver
from .settings import Settings
from .vcs import GitSources
from .wheel_extras import wheel_extras

DEFAULT_SOURCE_DATE_EPOCH = 315532800  # 1980-01-01, the earliest time a zip can hold


class Progress(Protocol):
    """Receives ``(event, package key, detail)`` as work happens; must be thread-safe."""

    def __call__(self, event: str, key: str, detail: str = "") -> None: ...


def _no_progress(event: str, key: str, detail: str = "") -> None:
    return None


@dataclass(frozen=True)
class BootstrapOptions:
    jobs: int = field(default_factory=lambda: os.cpu_count() or 1)
    sdist_only: bool = False
    isolate: bool = True
    source_date_epoch: int = DEFAULT_SOURCE_DATE_EPOCH
    keep_build_envs: bool = False
    test_mode: bool = False  # keep going; fall back to a pre-built wheel; write a report
    skip_constraints: bool = False  # do not write constraints.txt
    multiple_versions: bool = False  # every version each requirement admits, not the newest
    min_release_age: float | None = None  # days; a package's resolver_dist setting wins


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


class DependencyFailedError(BuildError):
    """A package cannot build because one of its build requirements failed."""

    step = "build dependency"


class BootstrapFailed(FromagerDagsterError):
    """One or more packages failed; ``failures`` holds each root cause."""

    def __init__(self, failures: Sequence[FromagerDagsterError]) -> None:
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


@dataclass
class _Node:
    pkg: ResolvedPackage
    extras: set[str]
    build_known: threading.Event = field(default_factory=threading.Event)
    install_known: threading.Event = field(default_factory=threading.Event)
    wheel_lock: threading.Lock = field(default_factory=threading.Lock)
    error: FromagerDagsterError | None = None
    wheel: Path | None = None
    wheel_error: FromagerDagsterError | None = None
    env: BuildEnv | None = None
    hooks: HookCaller | None = None
    build_reqs: dict[str, list[str]] = field(default_factory=dict)
    reused: bool = False
    extras_done: set[str] = field(default_factory=set)
    installed: set[str] = field(default_factory=set)
    speculative: Future[Path] | None = None
    environ: dict[str, str] | None = None  # the hooks' extra environment, once known
    sdist: Path | None = None  # the re-packed sdist, once written
    repacking: Future[None] | None = None
    archive: Path | None = None  # the downloaded source archive, once downloaded

    @property
    def key(self) -> str:
        return self.pkg.key


class _Run:
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
        self.settings = settings
        self.plugins = plugins
        self.git = git
        self.resolver = resolver
        self.index = index
        self.layout = layout
        self.envs = envs
        self.options = options
        self.progress = progress
        self.graph = DependencyGraph()
        self.nodes: dict[str, _Node] = {}
        self.threads: list[threading.Thread] = []
        self.lock = threading.Lock()
        self.slots = threading.BoundedSemaphore(max(1, options.jobs))
        self.net_slots = threading.BoundedSemaphore(max(4, 2 * options.jobs))
        self.waits: dict[str, set[str]] = defaultdict(set)
        self.timings: dict[str, float] = defaultdict(float)
        self.built: list[str] = []
        self.reused: list[str] = []
        self.prebuilt: list[str] = []
        self.recovered: list[FromagerDagsterError] = []  # test mode: failed, then pre-built
        self.hook_pool = ThreadPoolExecutor(
            max_workers=max(4, 2 * options.jobs), thread_name_prefix="aux"
        )
        self.background: list[Future[None]] = []

    # -- bookkeeping -------------------------------------------------------------------------

    @contextmanager
    def _timed(
        self, category: str, slots: threading.BoundedSemaphore | None = None
    ) -> Iterator[None]:
        if slots is not None:
            slots.acquire()
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            if slots is not None:
                slots.release()
            with self.lock:
                self.timings[category] += elapsed

    def _log(self, node: _Node) -> Path:
        return self.layout.log_path(node.pkg.name, str(node.pkg.version))

    def _start_wait(self, waiter: str, target: str) -> None:
        """Record that ``waiter``'s build needs ``target``'s wheel; refuse a cycle."""
        with self.lock:
            path = self._wait_path(target, waiter)
            if path is not None:
                cycle = [waiter, *path]
                raise BuildCycleError(
                    "build dependency cycle: "
                    + " -> ".join(cycle)
                    + "; break it with a pre-built wheel for one of these packages",
                    package=canonicalize_name(waiter.split("==")[0]),
                    version=waiter.split("==")[1],
                )
            self.waits[waiter].add(target)

    def _end_wait(self, waiter: str, target: str) -> None:
        with self.lock:
            self.waits[waiter].discard(target)

    def _wait_path(self, start: str, goal: str) -> list[str] | None:
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
            stack.extend((nxt, [*path, nxt]) for nxt in self.waits.get(key, ()))
        return None

    # -- graph growth ------------------------------------------------------------------------

    def _link(
        self, parent: str, req: Requirement, req_type: ReqType, pkg: ResolvedPackage | None = None
    ) -> list[str]:
        """Add the edge(s) ``parent -> req`` and start work on each new child; their keys."""
        if pkg is not None:
            chosen = [pkg]
        else:
            self.progress("resolve", str(req))
            with self._timed("resolve", self.net_slots):
                from_git = self.git.resolve(req)
                if from_git is not None:
                    chosen = [from_git]
                elif self.options.multiple_versions:
                    chosen = self.resolver.resolve_all(req)
                else:
                    chosen = [self.resolver.resolve(req)]
        for found in chosen:
            self.graph.add_node(
                found.name,
                str(found.version),
                download_url=found.source.url,
                pre_built=found.source.kind == "wheel",
                constraint=str(found.constraint) if found.constraint is not None else None,
            )
            self.graph.add_edge(parent, found.key, req_type, req)
            self._spawn(found, set(req.extras))
        return [found.key for found in chosen]

    def _spawn(self, pkg: ResolvedPackage, extras: set[str]) -> None:
        with self.lock:
            node = self.nodes.get(pkg.key)
            if node is None:
                node = _Node(pkg, set(extras))
                self.nodes[pkg.key] = node
                thread = threading.Thread(
                    target=self._process, args=(node,), name=pkg.key, daemon=True
                )
                self.threads.append(thread)
                thread.start()
                return
            new_extras = extras - node.extras
            node.extras |= new_extras
        if new_extras and node.install_known.is_set() and node.error is None:
            self._link_install(node)

    # -- one package -------------------------------------------------------------------------

    def _process(self, node: _Node) -> None:
        try:
            try:
                if node.pkg.source.kind == "wheel":
                    self._download_prebuilt(node, node.pkg.source)
                else:
                    self._discover_build(node)
                    if not self.options.sdist_only:
                        self._ensure_wheel(node.key)
            except FromagerDagsterError as exc:
                # a failed wheel build has had its chance to fall back in _ensure_wheel
                if exc is node.wheel_error or not self._fall_back(node, exc):
                    raise
            self._link_install(node)
            self.plugins.run_hooks(
                "post_bootstrap",
                name=node.pkg.name,
                version=node.pkg.version,
                variant=self.settings.variant,
                sdist=self._repacked(node),
                wheel=node.wheel,
            )
        except FromagerDagsterError as exc:
            self._fail(node, exc)
        except Exception as exc:  # a bug or an unexpected OS error: keep the run consistent
            self._fail(
                node,
                BuildError(
                    f"unexpected {type(exc).__name__}: {exc}",
                    package=node.pkg.name,
                    version=str(node.pkg.version),
                    log_path=str(self._log(node)),
                ),
            )
        finally:
            node.build_known.set()
            node.install_known.set()

    def _download_prebuilt(self, node: _Node, wheel: DistFile) -> None:
        """A pre_built package: the wheel the resolver chose, as it is."""
        self.progress("download", node.key, wheel.filename)
        with self._timed("download", self.net_slots):
            path = sources.download(self.index.session, wheel, self.layout.wheels_prebuilt)
        self._take_prebuilt(node, path)

    def _take_prebuilt(self, node: _Node, path: Path) -> None:
        """Use a downloaded pre-built wheel (a pre_built package, or a test-mode fallback)."""
        node.wheel = path  # no lock: a failed build may hold it while falling back here
        self.plugins.run_hooks(
            "prebuilt_wheel",
            name=node.pkg.name,
            version=node.pkg.version,
            variant=self.settings.variant,
            wheel=path,
        )
        node.build_known.set()
        with self.lock:
            self.prebuilt.append(node.key)
        self.progress("prebuilt", node.key, path.name)

    def _fall_back(self, node: _Node, exc: FromagerDagsterError) -> bool:
        """Test mode: record the failure, then carry on with a pre-built wheel if there is one."""
        if not self.options.test_mode or isinstance(exc, DependencyFailedError | BuildCycleError):
            return False
        exc.package = exc.package or node.pkg.name
        exc.version = exc.version or str(node.pkg.version)
        try:
            with self._timed("download", self.net_slots):
                found = fetch_prebuilt_wheel(
                    self.index, node.pkg.name, str(node.pkg.version), self.layout.wheels_prebuilt
                )
        except FromagerDagsterError:
            return False  # no wheel to fall back on: the caller reports the failure
        with self.lock:
            self.recovered.append(exc)
        self.progress("failed", node.key, exc.one_line())
        recorded = self.graph.nodes[node.key]
        recorded.pre_built, recorded.download_url = True, found.url
        self._take_prebuilt(node, found.path)
        return True

    def _fail(self, node: _Node, exc: FromagerDagsterError) -> None:
        exc.package = exc.package or node.pkg.name
        exc.version = exc.version or str(node.pkg.version)
        node.error = exc
        if not isinstance(exc, DependencyFailedError):
            self.progress("failed", node.key, exc.one_line())

    def _cache_path(self, node: _Node) -> Path:
        return self.layout.cache_dir / f"{node.pkg.name}-{node.pkg.version}.json"

    def _cached_build(self, node: _Node) -> dict[str, Any] | None:
        """The record of an earlier build of this exact source, if its wheel is still there."""
        try:
            record: dict[str, Any] = json.loads(self._cache_path(node).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        wheel = self.layout.wheels_downloads / str(record.get("wheel", ""))
        if (
            record.get("source_sha256") != node.pkg.source.sha256
            or record.get("build_tag") != self._build_tag(node)
            or record.get("settings") != self._fingerprint(node)
            or not wheel.is_file()
            or sources.sha256_file(wheel) != record.get("wheel_sha256")
        ):
            return None
        record["wheel_path"] = wheel
        return record

    def _discover_build(self, node: _Node) -> None:
        name, version = node.pkg.name, str(node.pkg.version)
        record = self._cached_build(node)
        if record is not None:
            node.reused = True
            node.wheel = record["wheel_path"]
            for req_type in BUILD_TYPES:
                for text in record["build_requires"].get(req_type, []):
                    self._link(node.key, Requirement(text), req_type)
            node.build_known.set()
            with self.lock:
                self.reused.append(node.key)
            self.progress("reused", node.key, node.wheel.name)
            return

        log = self._log(node)
        log.write_text(f"# {node.key} from {node.pkg.source.url}\n", encoding="utf-8")
        self.progress("download", node.key)
        with self._timed("download", self.net_slots):
            archive = node.archive = self._download(node, log)
        with self._timed("unpack"):
            pkg_dir = self.layout.package_dir(name, version)
            prepared = prepare_source(
                archive,
                self.layout.work_dir,
                settings=self.settings,
                name=name,
                version=version,
                log=log,
                plugins=self.plugins,
            )
        for patch in prepared.patches:
            self.progress("patched", node.key, patch.name)
        source_dir = prepared.project_dir
        environ = self._environ(node, source_dir)
        # the re-packed sdist is an output nobody waits for: make it off the critical path
        node.repacking = self._background(self._repack, node, prepared.root)
        build_system = prepared.build_system
        system_children = [
            key for r in build_system.requires for key in self._link(node.key, r, "build-system")
        ]
        node.build_reqs["build-system"] = [str(r) for r in build_system.requires]

        self.progress("discover", node.key)
        with self._timed("environments", self.slots):
            node.env = self.envs.create(pkg_dir / "build-env", log=log)
        node.installed = set(self._install(node, system_children))
        node.hooks = self._hook_caller(node, source_dir, build_system)
        with self._timed("hooks", self.slots):
            # Independent subprocesses, side by side, each in its own copy of the source (setuptools
            # writes egg-info into the tree): the sdist hook, and a speculative build_wheel that is
            # kept when the backend asks for nothing beyond what is already installed.
            sdist_hooks = self._hook_caller(
                node, self._copy_source(prepared, pkg_dir / "sdist-src"), build_system
            )
            sdist_future = self.hook_pool.submit(
                plugin_steps.sdist_requirements,
                self.plugins,
                sdist_hooks,
                name=name,
                version=version,
                settings=self.settings,
                environ=environ,
                log=log,
            )
            if not self.options.sdist_only and not self._overridden(node, "build_wheel"):
                spec_log = pkg_dir / "speculative-build.log"
                spec_hooks = self._hook_caller(
                    node,
                    self._copy_source(prepared, pkg_dir / "spec-src"),
                    build_system,
                    log=spec_log,
                )
                node.speculative = self.hook_pool.submit(
                    spec_hooks.build_wheel, pkg_dir / "spec-dist"
                )
            backend = plugin_steps.backend_requirements(
                self.plugins,
                node.hooks,
                name=name,
                version=version,
                settings=self.settings,
                environ=environ,
                log=log,
            )
            sdist = sdist_future.result()
        for req_type, reqs in (("build-backend", backend), ("build-sdist", sdist)):
            for req in reqs:
                self._link(node.key, req, req_type)
            node.build_reqs[req_type] = [str(r) for r in reqs]
        node.build_known.set()

    def _hook_caller(
        self, node: _Node, source_dir: Path, build_system: BuildSystem, log: Path | None = None
    ) -> HookCaller:
        assert node.env is not None
        return HookCaller(
            source_dir,
            build_system,
            node.env,
            log=log or self._log(node),
            isolate=self.options.isolate,
            extra_environ=self._environ(node, source_dir),
            package=node.pkg.name,
            version=str(node.pkg.version),
            config_settings=self.settings.package(node.pkg.name).config_settings,
        )

    def _overridden(self, node: _Node, step: str) -> bool:
        return self.plugins.override(node.pkg.name, step) is not None

    def _download(self, node: _Node, log: Path) -> Path:
        """The sdist: from a plugin, the settings' download_source URL, or the index."""
        name, dest = node.pkg.name, self.layout.sdists_downloads
        step = self.plugins.override(name, "download_source")
        if step is not None:
            return step(
                name=name,
                version=node.pkg.version,
                url=node.pkg.source.url,
                dest_dir=dest,
                settings=self.settings,
                session=self.index.session,
                log=log,
            )
        found = source_urls.download_override(
            self.index.session, node.pkg, self.settings.package(name), dest
        )
        if found is not None:
            return found[0]
        return sources.download(self.index.session, node.pkg.source, dest)

    def _environ(self, node: _Node, source_dir: Path) -> dict[str, str]:
        """The hooks' extra environment: settings, then an update_extra_environ plugin."""
        if node.environ is None:
            name, version = node.pkg.name, str(node.pkg.version)
            node.environ = plugin_steps.extra_environ(
                self.plugins,
                name=name,
                version=version,
                source_dir=source_dir,
                settings=self.settings,
                base=hook_environ(
                    self.settings, name, version, source_date_epoch=self.options.source_date_epoch
                ),
                log=self._log(node),
            )
        return node.environ

    def _build_tag(self, node: _Node) -> int:
        return self.settings.build_tag(node.pkg.name, str(node.pkg.version))

    def _fingerprint(self, node: _Node) -> str:
        return build_fingerprint(self.settings, self.plugins, node.pkg.name, str(node.pkg.version))

    @staticmethod
    def _copy_source(prepared: PreparedSource, dest: Path) -> Path:
        """A copy of the whole tree; the copy's project folder."""
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(prepared.root, dest, symlinks=True)
        return dest / prepared.project_dir.relative_to(prepared.root)

    def _adopt_speculative(self, node: _Node) -> Path | None:
        """The speculative wheel, if its environment was exactly the one the build needs."""
        future, node.speculative = node.speculative, None
        if future is None:
            return None
        pkg_dir = self.layout.package_dir(node.pkg.name, str(node.pkg.version))
        spec_log = pkg_dir / "speculative-build.log"
        needed = set(self.graph.children(node.key, BUILD_TYPES))
        try:
            built = future.result()
        except FromagerDagsterError:
            built = None
        valid = needed <= node.installed
        if built is not None and valid:
            with self._log(node).open("a", encoding="utf-8") as out:
                out.write(spec_log.read_text(encoding="utf-8", errors="replace"))
        for leftover in (pkg_dir / "spec-src", pkg_dir / "sdist-src", spec_log):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return built if valid else None

    def _repack(self, node: _Node, source_dir: Path) -> None:
        """The sdist of the prepared tree in sdists-repo/builds (a build_sdist plugin's)."""
        name, version = node.pkg.name, str(node.pkg.version)
        with self._timed("repack"):
            node.sdist = plugin_steps.build_sdist(
                self.plugins,
                source_dir,
                self.layout.repacked_sdist(name, version),
                name=name,
                version=version,
                settings=self.settings,
                environ=node.environ or {},
                log=self._log(node),
                source_date_epoch=self.options.source_date_epoch,
            )

    def _background(self, func: Any, node: _Node, *args: Any) -> Future[None]:
        def task() -> None:
            try:
                func(node, *args)
            except FromagerDagsterError as exc:
                self._fail(node, exc)

        future = self.hook_pool.submit(task)
        with self.lock:
            self.background.append(future)
        return future

    def _repacked(self, node: _Node) -> Path | None:
        """The re-packed sdist, once the background re-pack is done (None if it failed)."""
        if node.repacking is not None:
            node.repacking.result()
        return node.sdist

    def _install(self, node: _Node, children: list[str]) -> list[str]:
        """Wait for the wheels of ``children`` and their install closure; install them."""
        pins = self._installable(node.key, children)
        assert node.env is not None
        missing = [pin for pin in pins if pin not in node.installed]
        with self._timed("environments", self.slots):
            self.envs.install(node.env, missing, log=self._log(node))
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
            self._start_wait(waiter, key)
            try:
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
            finally:
                self._end_wait(waiter, key)
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

    def _build_wheel(self, node: _Node) -> Path:
        node.build_known.wait()
        if node.error is not None:
            raise node.error
        if node.wheel is not None:
            return node.wheel
        self.progress("build", node.key)
        start = time.perf_counter()
        pkg_dir = self.layout.package_dir(node.pkg.name, str(node.pkg.version))
        # what the settings add to the wheel (SBOM, Requires-External); the builder passes the
        # same values (the graph's download_url, the archive's sha256), so the bytes agree
        extras = wheel_extras(
            self.settings,
            node.pkg.name,
            str(node.pkg.version),
            source_url=node.pkg.source.url,
            source_sha256=sources.sha256_file(node.archive) if node.archive else None,
            source_date_epoch=self.options.source_date_epoch,
        )
        with self._timed("builds", self.slots):
            built = self._adopt_speculative(node)
        if built is None:
            self._install(node, self.graph.children(node.key, BUILD_TYPES))
            assert node.hooks is not None
            with self._timed("builds", self.slots):
                built = plugin_steps.build_wheel(
                    self.plugins,
                    node.hooks,
                    pkg_dir / "dist",
                    name=node.pkg.name,
                    version=node.pkg.version,
                    settings=self.settings,
                    environ=node.environ or {},
                    log=self._log(node),
                )
        assert node.env is not None and node.hooks is not None
        built = plugin_steps.add_wheel_metadata(
            self.plugins,
            built,
            name=node.pkg.name,
            version=node.pkg.version,
            source_dir=node.hooks.source_dir,
            settings=self.settings,
            environ=node.environ or {},
            log=self._log(node),
        )
        wheel = wheels.finalize_wheel(
            built,
            self.layout.wheels_downloads,
            build_tag=self._build_tag(node),
            source_date_epoch=self.options.source_date_epoch,
            extras=extras,
        )
        shutil.rmtree(pkg_dir / "spec-dist", ignore_errors=True)
        shutil.rmtree(pkg_dir / "dist", ignore_errors=True)
        if not self.options.keep_build_envs:
            shutil.rmtree(node.env.path, ignore_errors=True)
        record = {
            "source_sha256": node.pkg.source.sha256,
            "build_tag": self._build_tag(node),
            "settings": self._fingerprint(node),
            "build_requires": node.build_reqs,
            "wheel": wheel.name,
            "wheel_sha256": sources.sha256_file(wheel),
        }
        write_atomic(self._cache_path(node), json.dumps(record, indent=2))
        self.plugins.run_hooks(
            "post_build",
            name=node.pkg.name,
            version=node.pkg.version,
            variant=self.settings.variant,
            sdist=self._repacked(node),
            wheel=wheel,
        )
        with self.lock:
            self.built.append(node.key)
        self.progress("built", node.key, f"{time.perf_counter() - start:.1f}s")
        return wheel

    def _link_install(self, node: _Node) -> None:
        with self.lock:
            extras = set(node.extras) - node.extras_done
            first = not node.extras_done
            node.extras_done |= extras | {""}
        if not extras and not first:
            return
        # Under the wheel lock: a lazy wheel build (sdist-only) must not run in the same source
        # tree, nor delete the environment, while the metadata hook runs.
        with node.wheel_lock:
            if node.wheel is not None:
                try:
                    metadata = wheels.read_metadata(node.wheel)
                except FromagerDagsterError as exc:
                    exc.step = DEPENDENCY_EXTRACTION_STEP  # the wheel is there; its METADATA not
                    raise
            else:
                assert node.hooks is not None
                pkg_dir = self.layout.package_dir(node.pkg.name, str(node.pkg.version))
                with self._timed("hooks", self.slots):
                    dist_info = node.hooks.prepare_metadata(pkg_dir / "metadata")
                metadata = email.message_from_bytes((dist_info / "METADATA").read_bytes())
        wanted = sorted(extras) if not first else sorted(extras | {""})
        for req in wheels.install_requirements(metadata, extras=wanted):
            self._link(node.key, req, "install")
        node.install_known.set()

    # -- the whole run -----------------------------------------------------------------------

    def run(self, toplevel: Sequence[Requirement]) -> None:
        self.progress("resolve", ", ".join(str(r) for r in toplevel))
        from_git = [r for r in toplevel if self.git.source_for(r) is not None]
        for req in from_git:
            self._link_toplevel(req)
        toplevel = [r for r in toplevel if r not in from_git]
        if self.options.multiple_versions:
            for req in toplevel:
                self._link_toplevel(req)
        else:
            try:
                with self._timed("resolve"):
                    chosen = self.resolver.resolve_together(toplevel)
            except FromagerDagsterError:
                if not self.options.test_mode:
                    raise
                for req in toplevel:  # find which requirement cannot be met; keep the others
                    self._link_toplevel(req)
            else:
                for req in toplevel:
                    self._link(ROOT, req, "toplevel", chosen[canonicalize_name(req.name)])
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
        self.hook_pool.shutdown()

    def _link_toplevel(self, req: Requirement) -> None:
        try:
            self._link(ROOT, req, "toplevel")
        except FromagerDagsterError as exc:
            if not self.options.test_mode:
                raise
            exc.package = exc.package or canonicalize_name(req.name)
            with self.lock:
                self.recovered.append(exc)  # nothing to build: reported, not fatal
            self.progress("failed", str(req), exc.one_line())

    def failures(self) -> list[FromagerDagsterError]:
        return [
            n.error
            for n in self.nodes.values()
            if n.error is not None and not isinstance(n.error, DependencyFailedError)
        ] or [n.error for n in self.nodes.values() if n.error is not None]


def bootstrap(
    requirements: Sequence[Requirement],
    *,
    index: IndexClient,
    constraints: Constraints,
    layout: OutputLayout,
    options: BootstrapOptions | None = None,
    progress: Progress | None = None,
    settings: Settings | None = None,
) -> BootstrapResult:
    """Discover and build ``requirements`` and everything they need; write the outputs.

    Outside test mode any failure raises BootstrapFailed (after the independent work is done).
    In test mode the run keeps going, falls back to pre-built wheels where the index has one,
    writes fromager's failure report and returns the failures in the result.
    """
    options = options or BootstrapOptions()
    settings = settings or Settings()
    layout.ensure()
    started = time.perf_counter()
    plugins = Plugins.load()
    policy = source_policy(
        settings, index, min_release_age=options.min_release_age, plugins=plugins
    )
    git = GitSources(
        settings,
        constraints,
        downloads_dir=layout.sdists_downloads,
        work_dir=layout.work_dir,
        logs_dir=layout.logs_dir,
        source_date_epoch=options.source_date_epoch,
    )
    with LocalIndexServer(layout.wheel_roots) as server:
        run = _Run(
            resolver=Resolver(index, constraints, policy),
            index=index,
            layout=layout,
            envs=BuildEnvFactory(server.url, cache_dir=layout.work_dir / "uv-cache"),
            options=options,
            progress=progress or _no_progress,
            settings=settings,
            plugins=plugins,
            git=git,
        )
        run.run(list(requirements))
    failures = run.failures()
    write_simple_tree(layout.wheel_roots, layout.wheels_simple)
    if failures and not options.test_mode:
        raise BootstrapFailed(failures)
    outputs = run.graph.write(
        layout.work_dir,
        constraints=not (options.skip_constraints or options.multiple_versions),
    )
    reported = [*run.recovered, *failures]
    return BootstrapResult(
        graph=run.graph,
        outputs=outputs,
        built=sorted(run.built),
        reused=sorted(run.reused),
        seconds=time.perf_counter() - started,
        timings=dict(run.timings),
        failures=reported,
        failure_report=write_failure_report(layout.work_dir, reported) if reported else None,
        prebuilt=sorted(run.prebuilt),
    )
