"""Where everything lives under the output directory (fromager's layout)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutputLayout:
    """The folders of one output directory; ``ensure()`` creates them."""

    root: Path

    @property
    def sdists_downloads(self) -> Path:
        return self.root / "sdists-repo" / "downloads"

    @property
    def sdists_builds(self) -> Path:
        return self.root / "sdists-repo" / "builds"

    @property
    def wheels_downloads(self) -> Path:
        return self.root / "wheels-repo" / "downloads"

    @property
    def wheels_prebuilt(self) -> Path:
        return self.root / "wheels-repo" / "prebuilt"

    @property
    def wheels_simple(self) -> Path:
        return self.root / "wheels-repo" / "simple"

    @property
    def provenance_dir(self) -> Path:
        """One in-toto provenance file per built wheel (core/provenance/statement.py)."""
        return self.root / "wheels-repo" / "provenance"

    @property
    def work_dir(self) -> Path:
        return self.root / "work-dir"

    @property
    def logs_dir(self) -> Path:
        return self.work_dir / "logs"

    @property
    def cache_dir(self) -> Path:
        """Records of earlier builds, so a rerun can reuse their wheels."""
        return self.work_dir / "cache"

    @property
    def wheel_roots(self) -> list[Path]:
        return [self.wheels_downloads, self.wheels_prebuilt]

    def package_dir(self, name: str, version: str) -> Path:
        return self.work_dir / f"{name}-{version}"

    def repacked_sdist(self, name: str, version: str) -> Path:
        """Where the re-packed (patched, reproducible) sdist of ``name==version`` goes."""
        return self.sdists_builds / f"{name.replace('-', '_')}-{version}.tar.gz"

    def log_path(self, name: str, version: str) -> Path:
        return self.logs_dir / f"{name}-{version}.log"

    def ensure(self) -> OutputLayout:
        for folder in (
            self.sdists_downloads,
            self.sdists_builds,
            self.wheels_downloads,
            self.wheels_prebuilt,
            self.wheels_simple,
            self.logs_dir,
            self.cache_dir,
        ):
            folder.mkdir(parents=True, exist_ok=True)
        return self
