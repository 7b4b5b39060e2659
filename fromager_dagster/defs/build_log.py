"""A build's log where the UI shows it: the step's captured stdout, and its last lines as
materialization or failure metadata. The full log stays a file under ``work-dir/logs/``."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import dagster as dg

LOG_TAIL_LINES = 40
_TAIL_BYTES = 64 * 1024
_STDOUT = threading.Lock()  # where steps share a stdout (in-process runs): one log at a time


def read_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str | None:
    """The last ``lines`` lines of ``path`` (None when it cannot be read or is empty)."""
    try:
        with path.open("rb") as handle:
            size = handle.seek(0, 2)
            handle.seek(max(0, size - _TAIL_BYTES))
            data = handle.read()
    except OSError:
        return None
    text = data.decode("utf-8", errors="replace").rstrip("\n")
    if not text:
        return None
    return "\n".join(text.splitlines()[-lines:])


def log_tail_markdown(path: Path, lines: int = LOG_TAIL_LINES) -> dg.MetadataValue | None:
    """The log's last lines as a Markdown code block naming the file (None when unreadable)."""
    tail = read_tail(path, lines)
    if tail is None:
        return None
    fence = "````" if "```" in tail else "```"
    return dg.MetadataValue.md(f"Last {lines} lines of `{path}`:\n\n{fence}\n{tail}\n{fence}")


def show_build_log(requirement: str, path: Path, *, reused: bool = False) -> None:
    """Write the build log to stdout, which Dagster captures as the step's compute log (the
    thread executor gives each step thread its own, :mod:`.step_logs`); a reused wheel's step
    says where the earlier build's log is instead."""
    if reused:
        text = f"{requirement}: wheel reused from an earlier build; its log: {path}\n"
    else:
        try:
            body = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            body = f"(cannot read the build log: {exc})\n"
        text = f"===== build log of {requirement}: {path}\n{body.rstrip()}\n===== end of log\n"
    with _STDOUT:
        sys.stdout.write(text)
        sys.stdout.flush()
