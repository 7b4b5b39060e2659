"""What a bootstrap reports: progress events, seconds per kind of work, packages by outcome."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

from fromager_dagster.core.bootstrap.options import Progress
from fromager_dagster.core.errors import FromagerDagsterError

Outcome = Literal["built", "reused", "prebuilt"]


class Tally:
    """Thread-safe: every package thread reports here."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.timings: dict[str, float] = defaultdict(float)
        self.outcomes: dict[Outcome, list[str]] = {"built": [], "reused": [], "prebuilt": []}
        self.recovered: list[FromagerDagsterError] = []  # test mode: failed, then carried on
        self._lock = threading.Lock()

    @contextmanager
    def timed(
        self, category: str, slots: threading.BoundedSemaphore | None = None
    ) -> Iterator[None]:
        """Time the block under ``category``, holding one of ``slots`` (if given) meanwhile."""
        if slots is not None:
            slots.acquire()
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = time.perf_counter() - start
            if slots is not None:
                slots.release()
            with self._lock:
                self.timings[category] += elapsed

    def count(self, outcome: Outcome, key: str, detail: str) -> None:
        """``key`` was built, reused or taken pre-built; report it."""
        with self._lock:
            self.outcomes[outcome].append(key)
        self.progress(outcome, key, detail)

    def recover(self, key: str, exc: FromagerDagsterError) -> None:
        """Test mode: ``key`` failed, and the run carries on without failing for it."""
        with self._lock:
            self.recovered.append(exc)
        self.progress("failed", key, exc.one_line())
