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

from . import source_urls, sources, wheels
from .bootstrap_capacity import Capacity
from .bootstrap_node import Node
from .bootstrap_options import BootstrapOptions
from .bootstrap_tally import Tally
from .buildenv import BuildEnvFactory
from .errors import FromagerDagsterError
from .failures import DEPENDENCY_EXTRACTION_STEP
from .graph import ReqType
from .hooks import BuildSystem, HookCaller
from .index import IndexClient
from .layout import OutputLayout
from .plugins import Plugins
from .plugins import steps as plugin_steps
from .prepare import PreparedSource, hook_environ, prepare_source
from .settings import Settings

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

    def prepare(self, node: Node) -> PreparedSource:
        """Download the source, unpack and patch it; learn the hooks' extra environment."""
        name, version = node.pkg.name, str(node.pkg.version)
        node.log.write_text(f"# {node.key} from {node.pkg.source.url}\n", encoding="utf-8")
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

        Independent subprocesses, side by side, each in its own copy of the source (setuptools
        writes egg-info into the tree): the sdist hook, and a speculative build_wheel that is
        kept when the backend asks for nothing beyond what is already installed.
        """
        build_system = prepared.build_system
        node.hooks = self._hook_caller(node, prepared.project_dir, build_system)
        with self.tally.timed("hooks", self.capacity.work):
            sdist_src = self._copy_source(prepared, node.pkg_dir / "sdist-src")
            sdist_future = self.capacity.pool.submit(
                self._requirements,
                plugin_steps.sdist_requirements,
                node,
                self._hook_caller(node, sdist_src, build_system),
            )
            if not self.options.sdist_only and not self._overridden(node, "build_wheel"):
                node.speculative = self._speculate(node, prepared)
            backend = self._requirements(plugin_steps.backend_requirements, node, node.hooks)
            sdist = sdist_future.result()
        return [("build-backend", backend), ("build-sdist", sdist)]

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
            dist_info = node.hooks.prepare_metadata(node.pkg_dir / "metadata")
        return email.message_from_bytes((dist_info / "METADATA").read_bytes())

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
                source_date_epoch=self.options.source_date_epoch,
            )

    def _speculate(self, node: Node, prepared: PreparedSource) -> Future[Path]:
        """A build_wheel in a copy of the source, before the backend's requirements are known."""
        spec_hooks = self._hook_caller(
            node,
            self._copy_source(prepared, node.pkg_dir / "spec-src"),
            prepared.build_system,
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
        self, node: Node, source_dir: Path, build_system: BuildSystem, log: Path | None = None
    ) -> HookCaller:
        assert node.env is not None
        return HookCaller(
            source_dir,
            build_system,
            node.env,
            log=log or node.log,
            isolate=self.options.isolate,
            extra_environ=self._environ(node, source_dir),
            package=node.pkg.name,
            version=str(node.pkg.version),
            config_settings=self.settings.package(node.pkg.name).config_settings,
        )

    def _overridden(self, node: Node, step: str) -> bool:
        return self.plugins.override(node.pkg.name, step) is not None

    def _download(self, node: Node) -> Path:
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
                log=node.log,
            )
        found = source_urls.download_override(
            self.index.session, node.pkg, self.settings.package(name), dest
        )
        if found is not None:
            return found[0]
        return sources.download(self.index.session, node.pkg.source, dest)

    def _environ(self, node: Node, source_dir: Path) -> dict[str, str]:
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
                log=node.log,
            )
        return node.environ

    @staticmethod
    def _copy_source(prepared: PreparedSource, dest: Path) -> Path:
        """A copy of the whole tree; the copy's project folder."""
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(prepared.root, dest, symlinks=True)
        return dest / prepared.project_dir.relative_to(prepared.root)
