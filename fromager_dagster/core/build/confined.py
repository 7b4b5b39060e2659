"""One confined process: the environment it sees, its time and log limits, and its process
group, killed when it ends or passes a limit."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from fromager_dagster.core.package_log import DEFAULT_KEEP_LOG_MB, keep_head_and_tail

#: Defaults of the settings' ``sandbox`` section: a large C++ build stays well inside them.
DEFAULT_HOOK_TIMEOUT = 6 * 3600.0
DEFAULT_MAX_LOG_MB = 1024

_POLL = 0.25  # seconds between two looks at a running process's clock and log size

#: Variables of the caller's environment that reach a hook; everything else is dropped.
PASSED_VARIABLES = frozenset(
    {
        "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "SOURCE_DATE_EPOCH",
        "CC", "CXX", "CPP", "LD", "AR", "NM", "RANLIB",
        "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "PKG_CONFIG_PATH",
        "MAKEFLAGS", "CMAKE_BUILD_PARALLEL_LEVEL", "MAX_JOBS",
    }
)  # fmt: skip


@dataclass(frozen=True)
class HookLimits:
    """How long one hook call may run and how much log it may write (settings ``sandbox``)."""

    timeout: float = DEFAULT_HOOK_TIMEOUT  # seconds
    max_log_bytes: int = DEFAULT_MAX_LOG_MB * 1024 * 1024
    timeout_is_transient: bool = False  # a hook killed at its limit is worth a retry
    keep_log_bytes: int = DEFAULT_KEEP_LOG_MB * 1024 * 1024  # of its output: head and tail


def hook_environ(extra: Mapping[str, str], *, home: Path) -> dict[str, str]:
    """The environment of a hook: :data:`PASSED_VARIABLES` and ``LC_*`` from the caller's,
    ``HOME`` and ``TMPDIR`` of its own, pip and uv kept off any index, then ``extra`` (the
    settings' ``env``, a plugin's, the build environment's PATH)."""
    environ = {k: v for k, v in os.environ.items() if k in PASSED_VARIABLES or k.startswith("LC_")}
    environ.setdefault("PATH", os.defpath)
    environ.update(
        HOME=str(home),
        TMPDIR="/tmp",  # noqa: S108  a fixed TMPDIR, not the caller's
        PIP_NO_INDEX="1",
        UV_NO_CONFIG="1",
        PYTHONNOUSERSITE="1",
    )
    environ.update(extra)
    return environ


@dataclass(frozen=True)
class Finished:
    """How a confined process ended: its status, or the limit it was killed at."""

    returncode: int
    exceeded: str | None = None  # "time" or "log"


def run_confined(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    log: Path,
    limits: HookLimits,
    calls: int = 1,
) -> Finished:
    """Run ``argv`` (already wrapped by :meth:`Sandbox.command`) with output appended to
    ``log``, in a new session; kill its process group when it ends (nothing it started
    outlives it) or when it passes ``calls`` times the time limit or writes more than the log
    limit (then ``exceeded`` says which)."""
    with log.open("ab") as out:
        start_size = out.seek(0, os.SEEK_END)
        proc = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        done = threading.Event()
        exceeded: list[str] = []

        def watch() -> None:
            deadline = time.monotonic() + limits.timeout * max(1, calls)
            while not done.wait(_POLL):
                grew = _size(log) - start_size
                why = None
                if time.monotonic() >= deadline:
                    why = "time"
                elif grew > limits.max_log_bytes:
                    why = "log"
                if why is not None:
                    exceeded.append(why)
                    _kill_group(proc.pid)
                    return

        watchdog = threading.Thread(target=watch, daemon=True, name="hook-watchdog")
        watchdog.start()
        try:
            returncode = proc.wait()
        except BaseException:
            _kill_group(proc.pid)
            proc.wait()
            raise
        finally:
            done.set()
            _kill_group(proc.pid)  # whatever it left behind in its session
    if exceeded == ["log"]:  # keep the limit's worth, not what came before the kill
        with log.open("ab") as out:
            out.truncate(start_size + limits.max_log_bytes)
            out.seek(0, os.SEEK_END)
            out.write(b"\n[fromager-dagster: log cut at its limit; the process was killed]\n")
    keep_head_and_tail(log, start_size, limits.keep_log_bytes)
    return Finished(returncode, exceeded[0] if exceeded else None)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


def describe(limits: HookLimits, exceeded: str, calls: int = 1) -> str:
    """What a process killed at a limit is reported as."""
    if exceeded == "time":
        return (
            f"ran past its time limit of {limits.timeout * max(1, calls):g} s and was killed "
            "with all its processes (settings: sandbox.hook_timeout)"
        )
    return (
        f"wrote more than {limits.max_log_bytes // (1024 * 1024)} MiB of log and was killed "
        "with all its processes (settings: sandbox.max_log_mb)"
    )


def python_prefix(env_path: Path) -> Path | None:
    """The base interpreter's prefix of the virtual environment at ``env_path`` (its
    ``pyvenv.cfg`` ``home`` is that prefix's ``bin``)."""
    try:
        text = (env_path / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "home" and value.strip():
            return Path(value.strip()).resolve().parent
    return Path(sys.base_prefix)
