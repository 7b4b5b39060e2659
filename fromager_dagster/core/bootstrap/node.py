"""One package-version of a bootstrap: what its thread has learnt and made so far."""

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


@dataclass
class Node:
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
    environ: dict[str, str] | None = None  # the hooks' extra environment, once known
    sdist: Path | None = None  # the re-packed sdist, once written
    repacking: Future[None] | None = None
    archive: Path | None = None  # the downloaded source archive, once downloaded
    prepared: PreparedSource | None = None  # its unpacked, patched tree, once prepared
    started: float = field(default_factory=time.time)  # when its work began (provenance)

    @classmethod
    def of(cls, pkg: ResolvedPackage, extras: set[str], layout: OutputLayout) -> Node:
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
