"""Network isolation (the ``unshare`` sandbox): a build subprocess in a new network namespace
with only loopback, and new PID, IPC and UTS namespaces where unshare can make them."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

from fromager_dagster.core.errors import IsolationError

# Runs inside the new namespace: bring loopback up (it starts down), then exec the command.
_LOOPBACK_UP = """
import fcntl, os, socket, struct, sys
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ifr = struct.pack("16sH", b"lo", 0)
    flags = struct.unpack("16sH", fcntl.ioctl(s.fileno(), 0x8913, ifr))[1]
    fcntl.ioctl(s.fileno(), 0x8914, struct.pack("16sH", b"lo", flags | 0x1))
    s.close()
except OSError:
    pass
os.execvp(sys.argv[1], sys.argv[1:])
"""


# The same with iproute2's ``ip``, where it is installed: a shell and a small C program
# instead of a Python interpreter before every isolated command.
_LOOPBACK_UP_SH = 'ip link set lo up 2>/dev/null; exec "$@"'


def _unshare_prefix() -> list[str]:
    unshare = shutil.which("unshare")
    if unshare is None:
        raise IsolationError(
            "network isolation needs the 'unshare' command (util-linux); install it or pass "
            "--no-network-isolation"
        )
    ip = _ip_command()
    if ip is not None:
        script = _LOOPBACK_UP_SH.replace("ip link", f"{ip} link", 1)
        return [unshare, "--net", "--map-root-user", "/bin/sh", "-c", script, "sh"]
    return [unshare, "--net", "--map-root-user", sys.executable, "-c", _LOOPBACK_UP]


@functools.cache
def _ip_command() -> str | None:
    """iproute2's ``ip`` (often in /usr/sbin, off an unprivileged user's PATH), if any."""
    path = os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin"
    found = shutil.which("ip", path=path)
    return found if found and os.path.exists("/bin/sh") else None


@functools.cache
def isolation_problem() -> str | None:
    """None when isolation works here, else why it does not."""
    try:
        prefix = _unshare_prefix()
    except IsolationError as exc:
        return str(exc)
    try:
        proc = subprocess.run(
            [*prefix, sys.executable, "-c", "pass"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unshare failed to start: {exc}"
    if proc.returncode != 0:
        detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        return f"unshare --net is not permitted here ({detail})"
    return None


def resolve_isolation(requested: bool | None) -> bool:
    """Decide whether to isolate: ``None`` means "where it works"; ``True`` insists."""
    if requested is False:
        return False
    problem = isolation_problem()
    if problem is None:
        return True
    if requested:
        raise IsolationError(
            f"network isolation was requested but is unavailable: {problem}; "
            "pass --no-network-isolation to build without it"
        )
    return False


def isolated(cmd: list[str]) -> list[str]:
    """``cmd`` wrapped so it runs with no network but loopback."""
    return [*_unshare_prefix(), *cmd]


def unshare_command(argv: list[str]) -> list[str]:
    """Today's network namespace, in new PID, IPC and UTS namespaces too: when the command
    ends, whatever it started ends with it."""
    wrapped = isolated(argv)
    wrapped[1:1] = _unshare_extras()
    return wrapped


@functools.cache
def _unshare_extras() -> tuple[str, ...]:
    extras = ("--pid", "--fork", "--kill-child", "--ipc", "--uts")
    try:
        proc = subprocess.run(
            ["unshare", *extras, "--net", "--map-root-user", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return extras if proc.returncode == 0 else ()
