"""A bootstrapped package's wheel: the speculative one if it fits, else the backend's; finalized."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fromager_dagster.core.bootstrap.options import BootstrapOptions
from fromager_dagster.core.bootstrap.work import PackageWork, Prepared
from fromager_dagster.core.build.adoption import forget_discovered
from fromager_dagster.core.build.wheel import finish_wheel, source_extras
from fromager_dagster.core.build.wheel_extras import WheelExtras
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.plugins import steps as plugin_steps
from fromager_dagster.core.provenance.statement import write_provenance
from fromager_dagster.core.repository.records import write_record
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.epoch import source_date_epoch


@dataclass(frozen=True)
class WheelSteps:
    """The steps of one package-version's wheel; the scheduler installs its build
    requirements between them."""

    settings: Settings
    plugins: Plugins
    layout: OutputLayout
    options: BootstrapOptions

    def epoch(self, work: PackageWork) -> int:
        """The package's SOURCE_DATE_EPOCH: its archive's (:mod:`.sources.epoch`)."""
        return source_date_epoch(_prepared(work).archive, self.options.source_date_epoch)

    def extras(self, work: PackageWork) -> WheelExtras:
        """What the settings add to the wheel (SBOM, Requires-External).

        The builder passes the same values (the graph's download_url, the archive's sha256),
        so the bytes agree.
        """
        return source_extras(
            self.settings,
            work.pkg.name,
            str(work.pkg.version),
            archive=_prepared(work).archive,
            source_url=work.pkg.source.url,
            source_date_epoch=self.epoch(work),
        )

    def adopt_speculative(self, work: PackageWork, needed: set[str]) -> Path | None:
        """The speculative wheel, if its environment had all of ``needed`` (the build
        requirements' keys), exactly the one the build needs."""
        future, work.speculative = work.speculative, None
        if future is None:
            return None
        spec_log = work.pkg_dir / "speculative-build.log"
        try:
            built: Path | None = future.result()
        except FromagerDagsterError:
            built = None
        valid = needed <= work.installed
        if built is not None and valid:
            with work.log.open("a", encoding="utf-8") as out:
                out.write(spec_log.read_text(encoding="utf-8", errors="replace"))
        for leftover in (work.pkg_dir / "spec-src", work.pkg_dir / "sdist-src", spec_log):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return built if valid else None

    def build(self, work: PackageWork) -> Path:
        """The backend's (or a build_wheel plugin's) wheel, in the environment as it is."""
        assert work.hooks is not None
        forget_discovered(self.layout, work.pkg.name, str(work.pkg.version))  # tree changes
        return plugin_steps.build_wheel(
            self.plugins,
            work.hooks,
            work.pkg_dir / "dist",
            name=work.pkg.name,
            version=work.pkg.version,
            settings=self.settings,
            environ=_prepared(work).environ,
            log=work.log,
        )

    def finish(self, work: PackageWork, built: Path, extras: WheelExtras) -> Path:
        """``built`` with the plugins' and the settings' metadata, finalized into
        wheels-repo/downloads and recorded for reuse; the build's leftovers removed."""
        assert work.env is not None and work.hooks is not None
        wheel = finish_wheel(
            self.plugins,
            built,
            self.layout.wheels_downloads,
            name=work.pkg.name,
            version=work.pkg.version,
            source_dir=work.hooks.source_dir,
            settings=self.settings,
            environ=_prepared(work).environ,
            log=work.log,
            build_tag=self.settings.build_tag(work.pkg.name, str(work.pkg.version)),
            source_date_epoch=self.epoch(work),
            extras=extras,
        )
        shutil.rmtree(work.pkg_dir / "spec-dist", ignore_errors=True)
        shutil.rmtree(work.pkg_dir / "dist", ignore_errors=True)
        if not self.options.keep_build_envs:
            shutil.rmtree(work.env.path, ignore_errors=True)
        write_record(
            self.layout,
            work.pkg.name,
            str(work.pkg.version),
            source_sha256=work.pkg.source.sha256,
            settings=self.settings,
            plugins=self.plugins,
            build_requires=work.build_reqs,
            build_env=work.installed,
            wheel=wheel,
        )
        write_provenance(
            self.layout,
            work.pkg.name,
            str(work.pkg.version),
            wheel=wheel,
            source_archive=_prepared(work).archive,
            source_url=work.pkg.source.url,
            settings=self.settings,
            plugins=self.plugins,
            build_env=work.installed,
            source_date_epoch=self.epoch(work),
            run=self.options.run,
            started=work.started,
        )
        return wheel


def _prepared(work: PackageWork) -> Prepared:
    """What ``work``'s preparation learnt: a wheel is built only once its source is prepared."""
    assert work.prepared is not None, work.key
    return work.prepared
