"""How much of a bootstrap runs at once, and all it started: slots for heavy work and
downloads, a pool for hooks and background work, the packages' threads; ``join`` waits for
every one of them."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor


class Capacity:
    def __init__(self, jobs: int) -> None:
        #: environments, hooks, builds: ``jobs`` at once
        self.work = threading.BoundedSemaphore(max(1, jobs))
        #: resolution and downloads: mostly waiting, so more at once
        self.net = threading.BoundedSemaphore(max(8, 4 * jobs))
        #: side-by-side hooks and background work
        self.pool = ThreadPoolExecutor(max_workers=max(4, 2 * jobs), thread_name_prefix="aux")
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._background: list[Future[None]] = []

    def start(self, thread: threading.Thread) -> None:
        """Start a package's thread; :meth:`join` waits for it.

        Call it outside any lock the threads take: ``start()`` waits until the thread runs,
        and with every other thread busy that wait would hold up all of them. ``join`` sees
        the thread in time: whoever starts one is the main thread before ``join`` or a thread
        ``join`` waits for.
        """
        thread.start()
        with self._lock:
            self._threads.append(thread)

    def background(self, task: Callable[[], None]) -> Future[None]:
        """Run ``task`` in the pool, beside the packages' threads; :meth:`join` waits for it."""
        future = self.pool.submit(task)
        with self._lock:
            self._background.append(future)
        return future

    def join(self) -> None:
        """Wait for every thread, including those started meanwhile, and the background work;
        then stop the pool."""
        joined = 0
        while True:
            with self._lock:
                pending = self._threads[joined:]
            if not pending:
                break
            for thread in pending:
                thread.join()
            joined += len(pending)
        for future in self._background:
            future.result()
        self.pool.shutdown()
