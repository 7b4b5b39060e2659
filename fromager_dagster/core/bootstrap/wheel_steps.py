"""A bootstrapped package's wheel: the speculative one if it fits, else the backend's; finalized."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from fromager_dagster.core.bootstrap.node import Node
from fromager_dagster.core.bootstrap.options import BootstrapOptions
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
    """The steps of one node's wheel; the scheduler installs its build requirements between."""

    settings: Settings
    plugins: Plugins
    layout: OutputLayout
    options: BootstrapOptions

    def epoch(self, node: Node) -> int:
        """The node's SOURCE_DATE_EPOCH: its archive's (:mod:`.sources.epoch`)."""
        return source_date_epoch(node.archive, self.options.source_date_epoch)

    def extras(self, node: Node) -> WheelExtras:
        """What the settings add to the wheel (SBOM, Requires-External).

        The builder passes the same values (the graph's download_url, the archive's sha256),
        so the bytes agree.
        """
        return source_extras(
            self.settings,
            node.pkg.name,
            str(node.pkg.version),
            archive=node.archive,
            source_url=node.pkg.source.url,
            source_date_epoch=self.epoch(node),
        )

    def adopt_speculative(self, node: Node, needed: set[str]) -> Path | None:
        """The speculative wheel, if its environment had all of ``needed`` (the build
        requirements' keys), exactly the one the build needs."""
        future, node.speculative = node.speculative, None
        if future is None:
            return None
        spec_log = node.pkg_dir / "speculative-build.log"
        try:
            built: Path | None = future.result()
        except FromagerDagsterError:
            built = None
        valid = needed <= node.installed
        if built is not None and valid:
            with node.log.open("a", encoding="utf-8") as out:
                out.write(spec_log.read_text(encoding="utf-8", errors="replace"))
        for leftover in (node.pkg_dir / "spec-src", node.pkg_dir / "sdist-src", spec_log):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        return built if valid else None

    def build(self, node: Node) -> Path:
        """The backend's (or a build_wheel plugin's) wheel, in the environment as it is."""
        assert node.hooks is not None
        forget_discovered(self.layout, node.pkg.name, str(node.pkg.version))  # tree changes
        return plugin_steps.build_wheel(
            self.plugins,
            node.hooks,
            node.pkg_dir / "dist",
            name=node.pkg.name,
            version=node.pkg.version,
            settings=self.settings,
            environ=node.environ or {},
            log=node.log,
        )

    def finish(self, node: Node, built: Path, extras: WheelExtras) -> Path:
        """``built`` with the plugins' and the settings' metadata, finalized into
        wheels-repo/downloads and recorded for reuse; the build's leftovers removed."""
        assert node.env is not None and node.hooks is not None
        wheel = finish_wheel(
            self.plugins,
            built,
            self.layout.wheels_downloads,
            name=node.pkg.name,
            version=node.pkg.version,
            source_dir=node.hooks.source_dir,
            settings=self.settings,
            environ=node.environ or {},
            log=node.log,
            build_tag=self.settings.build_tag(node.pkg.name, str(node.pkg.version)),
            source_date_epoch=self.epoch(node),
            extras=extras,
        )
        shutil.rmtree(node.pkg_dir / "spec-dist", ignore_errors=True)
        shutil.rmtree(node.pkg_dir / "dist", ignore_errors=True)
        if not self.options.keep_build_envs:
            shutil.rmtree(node.env.path, ignore_errors=True)
        write_record(
            self.layout,
            node.pkg.name,
            str(node.pkg.version),
            source_sha256=node.pkg.source.sha256,
            settings=self.settings,
            plugins=self.plugins,
            build_requires=node.build_reqs,
            build_env=node.installed,
            wheel=wheel,
        )
        write_provenance(
            self.layout,
            node.pkg.name,
            str(node.pkg.version),
            wheel=wheel,
            source_archive=node.archive,
            source_url=node.pkg.source.url,
            settings=self.settings,
            plugins=self.plugins,
            build_env=node.installed,
            source_date_epoch=self.epoch(node),
            run=self.options.run,
            started=node.started,
        )
        return wheel
