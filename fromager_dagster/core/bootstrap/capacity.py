"""How much of a bootstrap runs at once: slots for heavy work and downloads, a pool for hooks."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass


@dataclass(frozen=True)
class Capacity:
    work: threading.BoundedSemaphore  # environments, hooks, builds: ``jobs`` at once
    net: threading.BoundedSemaphore  # resolution and downloads
    pool: ThreadPoolExecutor  # side-by-side hooks and background work

    @classmethod
    def for_jobs(cls, jobs: int) -> Capacity:
        return cls(
            work=threading.BoundedSemaphore(max(1, jobs)),
            net=threading.BoundedSemaphore(max(8, 4 * jobs)),  # index pages and downloads: waiting
            pool=ThreadPoolExecutor(max_workers=max(4, 2 * jobs), thread_name_prefix="aux"),
        )
