"""Live progress lines for long commands: what is resolving, building, done."""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO

_VERBS = {
    "resolve": "resolving",
    "download": "downloading",
    "discover": "discovering build requirements of",
    "build": "building",
    "built": "built",
    "reused": "reusing",
    "prebuilt": "using pre-built wheel of",
    "patched": "patched",
    "failed": "FAILED",
}


class ProgressPrinter:
    """Prints one timestamped line per event to stderr; thread-safe."""

    def __init__(self, stream: TextIO | None = None, *, verbose: bool = False) -> None:
        self.stream = stream or sys.stderr
        self.verbose = verbose
        self.started = time.perf_counter()
        self.lock = threading.Lock()
        self.done = 0
        self.building: set[str] = set()

    def __call__(self, event: str, key: str, detail: str = "") -> None:
        if event == "resolve" and not self.verbose:
            return
        with self.lock:
            if event == "build":
                self.building.add(key)
            elif event in ("built", "reused", "prebuilt", "failed"):
                self.building.discard(key)
                self.done += 1
            elapsed = time.perf_counter() - self.started
            verb = _VERBS.get(event, event)
            text = f"[{elapsed:6.1f}s] {verb} {key}"
            if detail and event != "failed":
                text += f" ({detail})"
            if event in ("built", "reused", "prebuilt") and self.building:
                text += f"  [{self.done} done, building: {', '.join(sorted(self.building))}]"
            self._line(text)

    def note(self, text: str) -> None:
        """A line that is not a package event (run ids, retries)."""
        with self.lock:
            elapsed = time.perf_counter() - self.started
            self._line(f"[{elapsed:6.1f}s] {text}")

    def _line(self, text: str) -> None:
        """One line in one write: ``print`` writes the text and its newline apart, and a line
        of another writer to the same stream (a step's output, an error line) can come
        between them, leaving two lines run together."""
        self.stream.write(text + "\n")
        self.stream.flush()
