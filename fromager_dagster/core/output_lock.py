"""One writer per output folder: an exclusive lock file held for the whole command.

``<OUTPUT_DIR>/.fromager-dagster.lock`` is locked with ``fcntl.flock``: the kernel releases it
when its process ends, however it ends (``kill -9`` included), so a lock left by a killed run
is simply taken over by the next. The file names the holder (pid and command) for the
message a second run prints at once. Taking the lock is also the first write into the folder:
a read-only or full disk is reported here, in one line, before anything else is written.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from fromager_dagster.core.errors import ConfigError

__all__ = [
    "LOCK_FILE",
    "OutputBusyError",
    "hold_output",
    "hold_output_for_run",
    "locked_file",
    "remove_stale_parts",
    "unwritable",
]

LOCK_FILE = ".fromager-dagster.lock"
#: Where an interrupted download or write may leave ``*.part`` / ``.*.tmp`` files.
_REPOSITORIES = ("sdists-repo", "wheels-repo")


class OutputBusyError(ConfigError):
    """Another command is writing into the same output folder."""


def unwritable(path: Path, exc: OSError, what: str = "output folder") -> ConfigError:
    """The one-line error for a folder that cannot be written (read-only, full, denied)."""
    reason = exc.strerror or str(exc)
    if exc.errno == errno.ENOSPC:
        hint = "free some space or pass another -O"
    else:
        hint = "pass -O a folder you can write to"
    return ConfigError(f"cannot write to {what} {path}: {reason}; {hint}")


@contextlib.contextmanager
def hold_output(root: Path, command: str) -> Iterator[Path]:
    """Hold the exclusive lock of output folder ``root`` (created if missing) while inside.

    :class:`OutputBusyError` at once when another process holds it, naming its pid and
    command. A folder this call created and nothing else wrote into is removed again on exit,
    so a command that fails on bad input leaves nothing behind.
    """
    root = root.resolve()
    created = not root.exists()
    path = root / LOCK_FILE
    try:
        root.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise unwritable(root, exc) from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip() or "unknown"
            raise OutputBusyError(
                f"output folder {root} is in use by another run ({holder}); wait for it to "
                "finish or pass another -O"
            ) from None
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}: {command}\n".encode(), 0)
        except OSError as exc:
            raise unwritable(root, exc) from exc
        remove_stale_parts(root)
        yield path
    finally:
        if created and _only_lock_left(root):
            with contextlib.suppress(OSError):
                path.unlink()
                root.rmdir()
        os.close(fd)  # releases the lock


#: Output folders this process holds for Dagster runs: root -> (descriptor, steps inside).
_RUN_HOLDS: dict[Path, tuple[int, int]] = {}
_RUN_HOLDS_LOCK = threading.Lock()
_HOLDER = re.compile(r"pid (\d+): (?:dagster run (\S+))?")


@contextlib.contextmanager
def hold_output_for_run(root: Path, run_id: str) -> Iterator[None]:
    """A Dagster run's step writing into output folder ``root`` (the discovery op, a wheel
    asset), however the run was launched.

    Nothing is taken when the lock is held by this process or one of its ancestors: the CLI
    command that launched the run (in its process, or in step processes it started) holds it
    for the whole command. Steps of one run share one hold (threads of the run worker, or
    its step processes: the lock file names the run). Otherwise (a run launched from the UI,
    a schedule or a sensor) the lock is taken while the step runs, or
    :class:`OutputBusyError` names the command or run that holds it.
    """
    root = root.resolve()
    with _RUN_HOLDS_LOCK:
        held = _RUN_HOLDS.get(root)
        if held is not None:
            _RUN_HOLDS[root] = (held[0], held[1] + 1)
    if held is None:
        fd = _take_for_run(root, run_id)
        if fd is None:  # held by an ancestor or a sibling step of this run
            yield
            return
    try:
        yield
    finally:
        with _RUN_HOLDS_LOCK:
            fd, inside = _RUN_HOLDS[root]
            if inside > 1:
                _RUN_HOLDS[root] = (fd, inside - 1)
            else:
                del _RUN_HOLDS[root]
                os.close(fd)  # releases the lock


def _take_for_run(root: Path, run_id: str) -> int | None:
    """The lock's descriptor, now held and registered for this process's steps of the run;
    None when an ancestor or another step of ``run_id`` holds it."""
    path = root / LOCK_FILE
    try:
        root.mkdir(parents=True, exist_ok=True)  # a collection's first run
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise unwritable(root, exc) from exc
    deadline = time.monotonic() + 2.0  # a new holder writes its name just after locking
    while True:
        with _RUN_HOLDS_LOCK:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pass
            else:
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"pid {os.getpid()}: dagster run {run_id}\n".encode(), 0)
                _RUN_HOLDS[root] = (fd, 1)
                return fd
        holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
        found = _HOLDER.match(holder)
        if found and (int(found[1]) in _lineage() or found[2] == run_id):
            os.close(fd)
            return None
        if found or time.monotonic() > deadline:
            os.close(fd)
            raise OutputBusyError(
                f"output folder {root} is in use by another run ({holder or 'unknown'}); "
                "launch this run again when it has finished"
            )
        time.sleep(0.05)


def _lineage() -> set[int]:
    """This process and its ancestors (from /proc; just this process where there is none)."""
    pids, pid = {os.getpid()}, os.getppid()
    while pid > 1 and pid not in pids:
        pids.add(pid)
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            pid = int(stat.rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return pids


def _only_lock_left(root: Path) -> bool:
    try:
        return [p.name for p in root.iterdir()] == [LOCK_FILE]
    except OSError:
        return False


def remove_stale_parts(root: Path) -> list[Path]:
    """Remove the ``*.part`` and ``.*.tmp`` files an interrupted run left in ``root``'s
    repositories and work folder (only the lock holder calls this: no writer is running)."""
    candidates: list[Path] = []
    for name in _REPOSITORIES:
        if (root / name).is_dir():
            candidates += (root / name).rglob("*.part")
            candidates += (root / name).rglob(".*.tmp")
    for folder in (root, root / "work-dir", root / "work-dir" / "cache"):
        if folder.is_dir():
            candidates += folder.glob(".*.tmp")
            candidates += folder.glob(".*.part")
    removed = []
    for stale in candidates:
        with contextlib.suppress(OSError):
            if stale.is_file() and not stale.is_symlink():
                stale.unlink()
                removed.append(stale)
    return removed


@contextlib.contextmanager
def locked_file(path: Path, *, timeout: float = 120.0) -> Iterator[None]:
    """Wait (up to ``timeout`` seconds) for an exclusive lock on ``path``, for a short critical
    section shared between processes (creating one Dagster instance)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise ConfigError(f"{path} stayed locked for {timeout:.0f}s") from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
