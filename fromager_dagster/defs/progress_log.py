"""The engine's progress lines in a run's log, gathered into a few events.

Every event a step logs is a write to the instance's event log (on SQLite, a connection and
a commit each): a discovery that reuses 40 wheels would write 40 events, one after the
other, while the engine's threads wait on the logging lock. Lines are gathered instead and
logged together, one event per ``interval`` at most; the first line after a quiet spell
goes out at once, so a long build's start is still seen when it starts. The command line
splits the events back into lines (``cli/run_events``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from types import TracebackType


class GatheredLog:
    """``line(text)`` from any thread; ``emit`` gets the gathered lines, newline-joined."""

    def __init__(self, emit: Callable[[str], None], *, interval: float = 0.5) -> None:
        self._emit = emit
        self._interval = interval
        self._lock = threading.Lock()
        self._emit_lock = threading.Lock()  # events leave in the order their lines came
        self._pending: list[str] = []
        self._last = 0.0  # when the last event left (monotonic)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="progress-log")

    def __enter__(self) -> GatheredLog:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        self.flush()

    def line(self, text: str) -> None:
        with self._lock:
            self._pending.append(text)
            quiet = time.monotonic() - self._last >= self._interval
        if quiet:
            self.flush()

    def flush(self) -> None:
        with self._emit_lock:
            with self._lock:
                lines, self._pending = self._pending, []
                if lines:
                    self._last = time.monotonic()
            if lines:
                self._emit("\n".join(lines))

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()
