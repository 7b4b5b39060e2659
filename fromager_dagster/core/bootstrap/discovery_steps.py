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
from fromager_dagster.core.bootstrap.options import BootstrapOptions
from fromager_dagster.core.bootstrap.tally import Tally
from fromager_dagster.core.bootstrap.work import PackageWork, Prepared
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
    """The steps, each on one package-version; the scheduler links what they find into the graph."""

    settings: Settings
    plugins: Plugins
    layout: OutputLayout
    index: IndexClient
    envs: BuildEnvFactory
    options: BootstrapOptions
    tally: Tally
    capacity: Capacity
    workers: WorkerProcesses  # unpacking in other processes

    def prepare(self, work: PackageWork) -> Prepared:
        """Download the source, unpack and patch it; learn the hooks' extra environment."""
        name, version = work.pkg.name, str(work.pkg.version)
        start_stage(work.log, f"discovery of {work.key} from {work.pkg.source.url}", fresh=True)
        self.tally.progress("download", work.key)
        with self.tally.timed("download", self.capacity.net):
            archive = self._download(work)
        with self.tally.timed("unpack"):
            source = prepare_source(
                archive,
                self.layout.work_dir,
                settings=self.settings,
                name=name,
                version=version,
                log=work.log,
                plugins=self.plugins,
                unpack=self.workers.unpack,
            )
        for patch in source.patches:
            self.tally.progress("patched", work.key, patch.name)
        environ = extra_environ(
            source.project_dir,
            self._wanted(work, archive),
            self.plugins,
            name,
            version,
            work.log,
        )
        return Prepared(archive, source, environ)

    def create_env(self, work: PackageWork) -> None:
        """The build environment, still empty of build requirements."""
        self.tally.progress("discover", work.key)
        with self.tally.timed("environments", self.capacity.work):
            work.env = self.envs.create(work.pkg_dir / "build-env", log=work.log)

    def build_requirements(
        self, work: PackageWork, prepared: Prepared
    ) -> list[tuple[ReqType, list[Requirement]]]:
        """The backend's and the sdist hook's requirements, once build-system's are installed.

        Both hooks (and, for an sdist-only discovery, the metadata hook that install-only
        packages need) run in one interpreter, one after another in the source tree: the
        backend is imported once. Beside it, unless sdist-only, a speculative build_wheel in
        a copy of the tree, kept when the backend asks for nothing beyond what is installed.
        """
        work.hooks = self._hook_caller(work, prepared)
        with self.tally.timed("hooks", self.capacity.work):
            if not self.options.sdist_only and not self._overridden(work, "build_wheel"):
                work.speculative = self._speculate(work, prepared)
            work.hooks.prefetch(self._prefetched(work), metadata_dir=self._metadata_dir(work))
            backend = self._requirements(
                plugin_steps.backend_requirements, work, work.hooks, prepared.environ
            )
            sdist = self._requirements(
                plugin_steps.sdist_requirements, work, work.hooks, prepared.environ
            )
        return [("build-backend", backend), ("build-sdist", sdist)]

    def _prefetched(self, work: PackageWork) -> list[str]:
        """The hooks that will be called for ``work`` unless a plugin answers instead."""
        hooks = []
        if not self._overridden(work, "get_build_backend_dependencies"):
            hooks.append("get_requires_for_build_wheel")
        if not self._overridden(work, "get_build_sdist_dependencies"):
            hooks.append("get_requires_for_build_sdist")
        if self.options.sdist_only:
            hooks.append("prepare_metadata_for_build_wheel")
        return hooks

    @staticmethod
    def _metadata_dir(work: PackageWork) -> Path:
        return work.pkg_dir / "metadata"

    def install_metadata(self, work: PackageWork) -> email.message.Message:
        """The core metadata that names the install requirements: the wheel's, else the
        prepare_metadata hook's. Call it under the package's wheel lock."""
        if work.wheel is not None:
            try:
                return wheels.read_metadata(work.wheel)
            except FromagerDagsterError as exc:
                exc.step = DEPENDENCY_EXTRACTION_STEP  # the wheel is there; its METADATA not
                raise
        assert work.hooks is not None
        with self.tally.timed("hooks", self.capacity.work):
            dist_info = work.hooks.prepare_metadata(self._metadata_dir(work))
        return email.message_from_bytes((dist_info / "METADATA").read_bytes())

    def leave_for_build(self, work: PackageWork) -> None:
        """Record the tree and environment for the wheel's build to adopt
        (:mod:`.build.adoption`), unless a wheel was built in them meanwhile."""
        with work.wheel_lock:
            prepared = work.prepared
            if work.wheel is not None or work.env is None or prepared is None:
                return
            record_discovered(
                self.layout,
                work.pkg.name,
                str(work.pkg.version),
                prepared=prepared.source,
                env=work.env,
                installed=work.installed,
                archive=prepared.archive,
                settings=self.settings,
                plugins=self.plugins,
                source_date_epoch=self._epoch(prepared.archive),
            )

    def repack(self, work: PackageWork, prepared: Prepared) -> None:
        """The sdist of the prepared tree in sdists-repo/builds (a build_sdist plugin's)."""
        name, version = work.pkg.name, str(work.pkg.version)
        epoch = self._epoch(prepared.archive)
        with self.tally.timed("repack"):
            work.sdist = plugin_steps.build_sdist(
                self.plugins,
                prepared.source.root,
                self.layout.repacked_sdist(name, version),
                name=name,
                version=version,
                settings=self.settings,
                environ=prepared.environ,
                log=work.log,
                source_date_epoch=epoch,
            )
            record_repacked_sdist(
                self.layout,
                name,
                version,
                archive=prepared.archive,
                settings=self.settings,
                plugins=self.plugins,
                source_date_epoch=epoch,
                sdist=work.sdist,
            )

    def _speculate(self, work: PackageWork, prepared: Prepared) -> Future[Path]:
        """A build_wheel in a copy of the source, before the backend's requirements are known."""
        spec_hooks = self._hook_caller(
            work,
            prepared,
            self._copy_source(prepared.source, work.pkg_dir / "spec-src"),
            log=work.pkg_dir / "speculative-build.log",
        )
        return self.capacity.pool.submit(spec_hooks.build_wheel, work.pkg_dir / "spec-dist")

    def _requirements(
        self, step: RequirementsStep, work: PackageWork, hooks: HookCaller, environ: dict[str, str]
    ) -> list[Requirement]:
        return step(
            self.plugins,
            hooks,
            name=work.pkg.name,
            version=str(work.pkg.version),
            settings=self.settings,
            environ=environ,
            log=work.log,
        )

    def _hook_caller(
        self,
        work: PackageWork,
        prepared: Prepared,
        source_dir: Path | None = None,
        log: Path | None = None,
    ) -> HookCaller:
        """The hooks of ``prepared``, or of ``source_dir``, a copy of its tree."""
        assert work.env is not None
        tree = source_dir or prepared.source.project_dir
        return hook_caller(
            prepared.source,
            work.env,
            self._wanted(work, prepared.archive),
            self.options.isolate,
            log or work.log,
            work.pkg.name,
            str(work.pkg.version),
            prepared.environ,
            source_dir=tree,
        )

    def _overridden(self, work: PackageWork, step: str) -> bool:
        return self.plugins.override(work.pkg.name, step) is not None

    def _download(self, work: PackageWork) -> Path:
        """The sdist: from a plugin, the settings' download_source URL, or the index."""
        return fetch_source(
            self.index.session,
            work.pkg,
            self.layout.sdists_downloads,
            settings=self.settings,
            plugins=self.plugins,
            log=work.log,
        )

    def _epoch(self, archive: Path) -> int:
        """The package's SOURCE_DATE_EPOCH: its archive's (:mod:`.sources.epoch`)."""
        return source_date_epoch(archive, self.options.source_date_epoch)

    def _wanted(self, work: PackageWork, archive: Path) -> BuildSettings:
        """What the settings say about the package's build, as the builder reads them."""
        return BuildSettings.of(
            self.settings,
            work.pkg.name,
            str(work.pkg.version),
            source_date_epoch=self._epoch(archive),
        )

    @staticmethod
    def _copy_source(prepared: PreparedSource, dest: Path) -> Path:
        """A copy of the whole tree; the copy's project folder."""
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(prepared.root, dest, symlinks=True)
        return dest / prepared.project_dir.relative_to(prepared.root)
