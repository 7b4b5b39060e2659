"""Pre-built wheels in a bootstrap: a pre_built package's, and test mode's fallback on one."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

from fromager_dagster.core.bootstrap.tally import Tally
from fromager_dagster.core.bootstrap.waits import DependencyFailedError
from fromager_dagster.core.bootstrap.work import PackageWork
from fromager_dagster.core.errors import BuildCycleError, FromagerDagsterError
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository.prebuilt import prebuilt_fallback
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources


@dataclass(frozen=True)
class PrebuiltWheels:
    index: IndexClient
    layout: OutputLayout
    plugins: Plugins
    settings: Settings
    graph: DependencyGraph  # a fallback's graph node is marked pre_built
    tally: Tally
    net_slots: threading.BoundedSemaphore  # downloads

    def download(self, work: PackageWork) -> None:
        """A pre_built package: the wheel the resolver chose, as it is."""
        wheel = work.pkg.source
        self.tally.progress("download", work.key, wheel.filename)
        with self.tally.timed("download", self.net_slots):
            path = sources.download(self.index.session, wheel, self.layout.wheels_prebuilt)
        self._take(work, path)

    def fall_back(self, work: PackageWork, exc: FromagerDagsterError) -> bool:
        """Record the failure, then carry on with a pre-built wheel if there is one (test mode
        only: the scheduler asks only then; the engine's one fall-back, ``prebuilt_fallback``)."""
        if isinstance(exc, DependencyFailedError | BuildCycleError):
            return False
        work.stamp(exc)
        try:
            with self.tally.timed("download", self.net_slots):
                found = prebuilt_fallback(
                    self.index,
                    work.pkg.name,
                    str(work.pkg.version),
                    self.layout,
                    settings=self.settings,
                    plugins=self.plugins,
                )
        except FromagerDagsterError:
            return False  # no wheel to fall back on: the caller reports the failure
        self.tally.recover(work.key, exc)
        recorded = self.graph.nodes[work.key]
        recorded.pre_built, recorded.download_url = True, found.url
        self._take(work, found.path, hooks=False)  # prebuilt_fallback ran them
        return True

    def _take(self, work: PackageWork, path: Path, *, hooks: bool = True) -> None:
        """Use a downloaded pre-built wheel (a pre_built package, or a test-mode fallback)."""
        work.wheel = path  # no lock: a failed build may hold it while falling back here
        if hooks:
            self.plugins.run_hooks(
                "prebuilt_wheel",
                name=work.pkg.name,
                version=work.pkg.version,
                variant=self.settings.variant,
                wheel=path,
            )
        work.build_known.set()
        self.tally.count("prebuilt", work.key, path.name)
