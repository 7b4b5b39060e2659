"""A bootstrapped package's discovery work: download, prepare, environment, requirement hooks."""

from __future__ import annotations

import email
import email.message
import shutil
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from fromager_dagster.core.bootstrap.capacity import Capacity
from fromager_dagster.core.bootstrap.failures import DEPENDENCY_EXTRACTION_STEP
from fromager_dagster.core.bootstrap.node import Node
from fromager_dagster.core.bootstrap.options import BootstrapOptions
from fromager_dagster.core.bootstrap.tally import Tally
from fromager_dagster.core.build import wheels
from fromager_dagster.core.build.adoption import record_discovered
from fromager_dagster.core.build.environment import BuildEnvFactory
from fromager_dagster.core.build.hooks import HookCaller
from fromager_dagster.core.build.settings import BuildSettings, extra_environ
from fromager_dagster.core.build.wheel import hook_caller
from fromager_dagster.core.build.workers import WorkerProcesses
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.graph.model import ReqType
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_log import start_stage
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.plugins import steps as plugin_steps
from fromager_dagster.core.repository.records import record_repacked_sdist
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.epoch import source_date_epoch
from fromager_dagster.core.sources.prepare import PreparedSource, prepare_source
from fromager_dagster.core.sources.urls import fetch_source

RequirementsStep = Callable[..., list[Requirement]]  # plugin_steps.backend_/sdist_requirements


@dataclass(frozen=True)
class DiscoverySteps:
    """The steps, each on one node; the scheduler links what they find into the graph."""

    settings: Settings
    plugins: Plugins
    layout: OutputLayout
    index: IndexClient
    envs: BuildEnvFactory
    options: BootstrapOptions
    tally: Tally
    capacity: Capacity
    workers: WorkerProcesses  # unpacking in other processes

    def prepare(self, node: Node) -> PreparedSource:
        """Download the source, unpack and patch it; learn the hooks' extra environment."""
        name, version = node.pkg.name, str(node.pkg.version)
        start_stage(node.log, f"discovery of {node.key} from {node.pkg.source.url}", fresh=True)
        self.tally.progress("download", node.key)
        with self.tally.timed("download", self.capacity.net):
            archive = node.archive = self._download(node)
        with self.tally.timed("unpack"):
            prepared = prepare_source(
                archive,
                self.layout.work_dir,
                settings=self.settings,
                name=name,
                version=version,
                log=node.log,
                plugins=self.plugins,
                unpack=self.workers.unpack,
            )
        for patch in prepared.patches:
            self.tally.progress("patched", node.key, patch.name)
        self._environ(node, prepared.project_dir)
        return prepared

    def create_env(self, node: Node) -> None:
        """The build environment, still empty of build requirements."""
        self.tally.progress("discover", node.key)
        with self.tally.timed("environments", self.capacity.work):
            node.env = self.envs.create(node.pkg_dir / "build-env", log=node.log)

    def build_requirements(
        self, node: Node, prepared: PreparedSource
    ) -> list[tuple[ReqType, list[Requirement]]]:
        """The backend's and the sdist hook's requirements, once build-system's are installed.

        Both hooks (and, for an sdist-only discovery, the metadata hook that install-only
        packages need) run in one interpreter, one after another in the source tree: the
        backend is imported once. Beside it, unless sdist-only, a speculative build_wheel in
        a copy of the tree, kept when the backend asks for nothing beyond what is installed.
        """
        node.hooks = self._hook_caller(node, prepared)
        with self.tally.timed("hooks", self.capacity.work):
            if not self.options.sdist_only and not self._overridden(node, "build_wheel"):
                node.speculative = self._speculate(node, prepared)
            node.hooks.prefetch(self._prefetched(node), metadata_dir=self._metadata_dir(node))
            backend = self._requirements(plugin_steps.backend_requirements, node, node.hooks)
            sdist = self._requirements(plugin_steps.sdist_requirements, node, node.hooks)
        return [("build-backend", backend), ("build-sdist", sdist)]

    def _prefetched(self, node: Node) -> list[str]:
        """The hooks that will be called for ``node`` unless a plugin answers instead."""
        hooks = []
        if not self._overridden(node, "get_build_backend_dependencies"):
            hooks.append("get_requires_for_build_wheel")
        if not self._overridden(node, "get_build_sdist_dependencies"):
            hooks.append("get_requires_for_build_sdist")
        if self.options.sdist_only:
            hooks.append("prepare_metadata_for_build_wheel")
        return hooks

    @staticmethod
    def _metadata_dir(node: Node) -> Path:
        return node.pkg_dir / "metadata"

    def install_metadata(self, node: Node) -> email.message.Message:
        """The core metadata that names the install requirements: the wheel's, else the
        prepare_metadata hook's. Call it under the node's wheel lock."""
        if node.wheel is not None:
            try:
                return wheels.read_metadata(node.wheel)
            except FromagerDagsterError as exc:
                exc.step = DEPENDENCY_EXTRACTION_STEP  # the wheel is there; its METADATA not
                raise
        assert node.hooks is not None
        with self.tally.timed("hooks", self.capacity.work):
            dist_info = node.hooks.prepare_metadata(self._metadata_dir(node))
        return email.message_from_bytes((dist_info / "METADATA").read_bytes())

    def leave_for_build(self, node: Node) -> None:
        """Record the tree and environment for the wheel's build to adopt
        (:mod:`.build.adoption`), unless a wheel was built in them meanwhile."""
        with node.wheel_lock:
            if node.wheel is not None or node.env is None or node.prepared is None:
                return
            if node.archive is None:
                return
            record_discovered(
                self.layout,
                node.pkg.name,
                str(node.pkg.version),
                prepared=node.prepared,
                env=node.env,
                installed=node.installed,
                archive=node.archive,
                settings=self.settings,
                plugins=self.plugins,
                source_date_epoch=self._epoch(node),
            )

    def repack(self, node: Node, source_dir: Path) -> None:
        """The sdist of the prepared tree in sdists-repo/builds (a build_sdist plugin's)."""
        name, version = node.pkg.name, str(node.pkg.version)
        with self.tally.timed("repack"):
            node.sdist = plugin_steps.build_sdist(
                self.plugins,
                source_dir,
                self.layout.repacked_sdist(name, version),
                name=name,
                version=version,
                settings=self.settings,
                environ=node.environ or {},
                log=node.log,
                source_date_epoch=self._epoch(node),
            )
            if node.archive is not None:
                record_repacked_sdist(
                    self.layout,
                    name,
                    version,
                    archive=node.archive,
                    settings=self.settings,
                    plugins=self.plugins,
                    source_date_epoch=self._epoch(node),
                    sdist=node.sdist,
                )

    def _speculate(self, node: Node, prepared: PreparedSource) -> Future[Path]:
        """A build_wheel in a copy of the source, before the backend's requirements are known."""
        spec_hooks = self._hook_caller(
            node,
            prepared,
            self._copy_source(prepared, node.pkg_dir / "spec-src"),
            log=node.pkg_dir / "speculative-build.log",
        )
        return self.capacity.pool.submit(spec_hooks.build_wheel, node.pkg_dir / "spec-dist")

    def _requirements(
        self, step: RequirementsStep, node: Node, hooks: HookCaller
    ) -> list[Requirement]:
        return step(
            self.plugins,
            hooks,
            name=node.pkg.name,
            version=str(node.pkg.version),
            settings=self.settings,
            environ=node.environ or {},
            log=node.log,
        )

    def _hook_caller(
        self,
        node: Node,
        prepared: PreparedSource,
        source_dir: Path | None = None,
        log: Path | None = None,
    ) -> HookCaller:
        """The hooks of ``prepared``, or of ``source_dir``, a copy of its tree."""
        assert node.env is not None
        tree = source_dir or prepared.project_dir
        return hook_caller(
            prepared,
            node.env,
            self._wanted(node),
            self.options.isolate,
            log or node.log,
            node.pkg.name,
            str(node.pkg.version),
            self._environ(node, tree),
            source_dir=tree,
        )

    def _overridden(self, node: Node, step: str) -> bool:
        return self.plugins.override(node.pkg.name, step) is not None

    def _download(self, node: Node) -> Path:
        """The sdist: from a plugin, the settings' download_source URL, or the index."""
        return fetch_source(
            self.index.session,
            node.pkg,
            self.layout.sdists_downloads,
            settings=self.settings,
            plugins=self.plugins,
            log=node.log,
        )

    def _epoch(self, node: Node) -> int:
        """The node's SOURCE_DATE_EPOCH: its archive's (:mod:`.sources.epoch`)."""
        return source_date_epoch(node.archive, self.options.source_date_epoch)

    def _wanted(self, node: Node) -> BuildSettings:
        """What the settings say about the node's build, as the builder reads them."""
        return BuildSettings.of(
            self.settings,
            node.pkg.name,
            str(node.pkg.version),
            source_date_epoch=self._epoch(node),
        )

    def _environ(self, node: Node, source_dir: Path) -> dict[str, str]:
        """The hooks' extra environment: settings, then an update_extra_environ plugin."""
        if node.environ is None:
            node.environ = extra_environ(
                source_dir,
                self._wanted(node),
                self.plugins,
                node.pkg.name,
                str(node.pkg.version),
                node.log,
            )
        return node.environ

    @staticmethod
    def _copy_source(prepared: PreparedSource, dest: Path) -> Path:
        """A copy of the whole tree; the copy's project folder."""
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(prepared.root, dest, symlinks=True)
        return dest / prepared.project_dir.relative_to(prepared.root)
