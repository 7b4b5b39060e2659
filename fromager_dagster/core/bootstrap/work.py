"""The work on one package-version of a bootstrap: what its thread has learnt and made so far."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from packaging.utils import canonicalize_name

from fromager_dagster.core.build.environment import BuildEnv
from fromager_dagster.core.build.hooks import HookCaller
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.resolve.resolver import ResolvedPackage
from fromager_dagster.core.sources.prepare import PreparedSource


@dataclass(frozen=True)
class Prepared:
    """What is known once a package's source is prepared: the downloaded archive, its
    unpacked and patched tree, and the hooks' extra environment."""

    archive: Path
    source: PreparedSource
    environ: dict[str, str]


@dataclass
class PackageWork:
    """One package-version's thread of a bootstrap: its events and lock, then what each step
    has made (``prepared`` once the source is; ``env`` and ``hooks`` once the build
    environment is; ``wheel`` or an error at the end)."""

    pkg: ResolvedPackage
    extras: set[str]
    log: Path  # the package's build log
    pkg_dir: Path  # its folder in the work dir
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
    sdist: Path | None = None  # the re-packed sdist, once written
    repacking: Future[None] | None = None
    prepared: Prepared | None = None  # its source, once prepared
    started: float = field(default_factory=time.time)  # when its work began (provenance)

    @classmethod
    def of(cls, pkg: ResolvedPackage, extras: set[str], layout: OutputLayout) -> PackageWork:
        version = str(pkg.version)
        return cls(
            pkg,
            set(extras),
            log=layout.log_path(pkg.name, version),
            pkg_dir=layout.package_dir(pkg.name, version),
        )

    @property
    def key(self) -> str:
        return self.pkg.key

    def stamp(self, exc: FromagerDagsterError) -> FromagerDagsterError:
        """``exc``, naming this package-version where it names no package; its version only
        where it names this package without one (never this version for another package)."""
        if not exc.package:
            exc.package = self.pkg.name
        if exc.version is None and canonicalize_name(exc.package) == self.pkg.name:
            exc.version = str(self.pkg.version)
        return exc
