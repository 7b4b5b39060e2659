"""One package-version's build, as the hermetic build from the graph and the build from an
index both run it: prepare (or adopt what discovery left), re-pack, environment, wheel,
provenance, post_build hooks."""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.build.adoption import DiscoveredBuild, adopt_discovered
from fromager_dagster.core.build.environment import BuildEnv, BuildEnvFactory, temporary_session
from fromager_dagster.core.build.sandbox import Sandbox
from fromager_dagster.core.build.settings import (
    BuildSettings,
    extra_environ,
)
from fromager_dagster.core.build.steps import (
    build_sdist,
    prepare_build,
)
from fromager_dagster.core.build.wheel import make_wheel, wheel_server
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.provenance.statement import RunInfo, write_provenance
from fromager_dagster.core.repository.built import (
    BuiltWheel,
    accept_prebuilt,
    take_prebuilt,
)
from fromager_dagster.core.repository.records import record_repacked_sdist, repacked_sdist
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.epoch import source_date_epoch as epoch_of_source
from fromager_dagster.core.sources.prepare import PreparedSource, prepare_source


@dataclass(frozen=True)
class PackageBuild:
    """One package-version's build as ``build_node`` and ``build_package`` both run it."""

    layout: OutputLayout
    key: str
    name: str
    version: str
    wanted: BuildSettings
    plugins: Plugins
    isolate: bool | Sandbox
    source_date_epoch: int
    keep_build_env: bool
    run_info: RunInfo  # what the provenance says of the run (collection, run id, key)

    @classmethod
    def of(
        cls,
        layout: OutputLayout,
        key: str,
        name: str,
        version: str,
        *,
        settings: Settings,
        plugins: Plugins,
        isolate: bool | Sandbox,
        source_date_epoch: int,
        keep_build_env: bool,
        run: RunInfo | None = None,
    ) -> PackageBuild:
        """The build of ``name==version`` with ``settings``, output ready."""
        layout.ensure()
        wanted = BuildSettings.of(settings, name, version, source_date_epoch=source_date_epoch)
        return cls(
            layout,
            key,
            name,
            version,
            wanted,
            plugins,
            isolate,
            source_date_epoch,
            keep_build_env,
            run if run is not None else RunInfo(),
        )

    def from_source(self, archive: Path) -> PackageBuild:
        """This build with ``archive``'s SOURCE_DATE_EPOCH (:mod:`.sources.epoch`), the
        current one its fallback."""
        epoch = epoch_of_source(archive, self.source_date_epoch)
        wanted = BuildSettings.of(
            self.wanted.settings, self.name, self.version, source_date_epoch=epoch
        )
        return dataclasses.replace(self, source_date_epoch=epoch, wanted=wanted)

    @property
    def log(self) -> Path:
        return self.layout.log_path(self.name, self.version)

    def take_prebuilt(self, index: IndexClient | None) -> BuiltWheel:
        """The pre-built wheel, from the repository or ``index``, its hooks run."""
        return take_prebuilt(
            self.layout,
            self.name,
            self.version,
            index=index,
            settings=self.wanted.settings,
            plugins=self.plugins,
        )

    def accept_prebuilt(self, path: Path, start: float) -> BuiltWheel:
        """The wheel at ``path``, just downloaded, taken as published."""
        return accept_prebuilt(
            self.layout,
            self.name,
            self.version,
            path,
            start=start,
            reused=False,
            settings=self.wanted.settings,
            plugins=self.plugins,
        )

    def run(
        self,
        archive: Path,
        start: float,
        *,
        pins: list[list[str]] | None,
        wheel_server_url: str | None,
        build_tag: int,
        source_url: str | None,
        uv_cache: Path | None = None,
    ) -> BuiltWheel:
        """Prepare ``archive``, re-pack its sdist, make the build environment, build the wheel,
        then run the ``post_build`` hooks, as a bootstrap does. Every error names the package."""
        try:
            return self.from_source(archive)._run(
                archive, start, pins, wheel_server_url, build_tag, source_url, uv_cache
            )
        except FromagerDagsterError as exc:
            if exc.package is None:
                exc.package, exc.version = self.name, self.version
            raise

    def _run(
        self,
        archive: Path,
        start: float,
        pins: list[list[str]] | None,
        wheel_server_url: str | None,
        build_tag: int,
        source_url: str | None,
        uv_cache: Path | None,
    ) -> BuiltWheel:
        adopted = self._adopted(archive, pins)
        if adopted is not None:
            prepared = adopted.prepared
        else:
            prepared = prepare_source(
                archive,
                self.layout.work_dir,
                settings=self.wanted.settings,
                name=self.name,
                version=self.version,
                log=self.log,
                plugins=self.plugins,
            )
        environ = extra_environ(
            prepared.project_dir, self.wanted, self.plugins, self.name, self.version, self.log
        )
        sdist = self._repacked(archive, prepared, environ)
        if adopted is not None:
            env = adopted.env
        else:
            env = self._environment(prepared, pins, wheel_server_url, uv_cache)
        wheel = make_wheel(
            self.layout,
            self.name,
            self.version,
            prepared,
            env,
            self.wanted,
            build_tag,
            self.isolate,
            self.log,
            self.plugins,
            environ,
            archive=archive,
            source_url=source_url,
        )
        build_env = env.installed()
        if not self.keep_build_env:
            shutil.rmtree(env.path, ignore_errors=True)
        self._post_build(sdist, wheel)
        built = BuiltWheel.since(start, self.key, wheel, self.log, archive)
        finished = time.time()
        write_provenance(
            self.layout,
            self.name,
            self.version,
            wheel=wheel,
            source_archive=archive,
            source_url=source_url,
            settings=self.wanted.settings,
            plugins=self.plugins,
            build_env=build_env,
            source_date_epoch=self.source_date_epoch,
            run=self.run_info,
            started=finished - built.seconds,
            finished=finished,
        )
        return built

    def _adopted(self, archive: Path, pins: list[list[str]] | None) -> DiscoveredBuild | None:
        """The tree and environment discovery left for this very build (:mod:`.build.adoption`);
        only for a build from the graph's pins, where the environment's content is known."""
        if pins is None:
            return None
        return adopt_discovered(
            self.layout,
            self.name,
            self.version,
            pins=[pin for stage in pins for pin in stage],
            archive=archive,
            settings=self.wanted.settings,
            plugins=self.plugins,
            source_date_epoch=self.source_date_epoch,
            log=self.log,
        )

    def _repacked(self, archive: Path, prepared: PreparedSource, environ: dict[str, str]) -> Path:
        """The re-packed sdist: the one discovery (or an earlier build) wrote from the same
        inputs, else a new one."""
        settings, epoch = self.wanted.settings, self.source_date_epoch
        found = repacked_sdist(
            self.layout,
            self.name,
            self.version,
            archive=archive,
            settings=settings,
            plugins=self.plugins,
            source_date_epoch=epoch,
        )
        if found is not None:
            return found
        sdist = build_sdist(
            self.layout,
            self.name,
            self.version,
            prepared,
            source_date_epoch=epoch,
            settings=settings,
            plugins=self.plugins,
            environ=environ,
        )
        record_repacked_sdist(
            self.layout,
            self.name,
            self.version,
            archive=archive,
            settings=settings,
            plugins=self.plugins,
            source_date_epoch=epoch,
            sdist=sdist,
        )
        return sdist

    def _environment(
        self,
        prepared: PreparedSource,
        pins: list[list[str]] | None,
        wheel_server_url: str | None,
        uv_cache: Path | None = None,
    ) -> BuildEnv:
        """The build environment: exactly ``pins`` from the wheel server, stage after stage
        (:meth:`DependencyGraph.build_stages`), or (None) what the build system and the hooks
        ask for (``step prepare-build``)."""
        if pins is None:
            return prepare_build(
                self.layout,
                self.name,
                self.version,
                prepared,
                wheel_server_url=wheel_server_url,
                settings=self.wanted,
                isolate=self.isolate,
                log=self.log,
                plugins=self.plugins,
            )
        with contextlib.ExitStack() as stack:
            url = stack.enter_context(wheel_server(self.layout, wheel_server_url))
            if uv_cache is None:
                uv_cache = stack.enter_context(temporary_session(self.layout.work_dir / "uv-cache"))
            envs = BuildEnvFactory(url, cache_dir=uv_cache)
            env = envs.create(
                self.layout.package_dir(self.name, self.version) / "build-env", log=self.log
            )
            for stage in pins:
                envs.install(env, stage, log=self.log)
        return env

    def _post_build(self, sdist: Path, wheel: Path) -> None:
        """The ``post_build`` hooks, as a bootstrap runs them after each wheel it builds."""
        self.plugins.run_hooks(
            "post_build",
            name=canonicalize_name(self.name),
            version=Version(self.version),
            variant=self.wanted.settings.variant,
            sdist=sdist,
            wheel=wheel,
        )
