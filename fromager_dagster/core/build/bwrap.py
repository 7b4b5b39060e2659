"""The bubblewrap sandbox: its command line, the probe that it works here, and the writable
folders given to its unprivileged user (docs/security.md)."""

from __future__ import annotations

import functools
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

from fromager_dagster.core.errors import SandboxError

#: The user a hook runs as inside bubblewrap when the tool runs as root (``nobody``).
SANDBOX_UID = 65534

# Folders whose contents a bubblewrap sandbox never sees (replaced by empty tmpfs mounts).
_MASKED = ("/tmp", "/var/tmp", "/run", "/root", "/home")  # noqa: S108  mount points


def drops_to_nobody() -> bool:
    """Whether hooks run as :data:`SANDBOX_UID` (the tool runs as root)."""
    return os.geteuid() == 0


def give_to_sandbox_user(writable: Iterable[Path]) -> None:
    """Make ``writable`` writable by the sandbox's user (as root: uid 65534)."""
    if drops_to_nobody():
        for path in writable:
            _chown_tree(path, SANDBOX_UID)


@functools.cache
def _tools() -> tuple[str | None, str | None]:
    """``bwrap`` and ``setpriv`` on PATH."""
    return shutil.which("bwrap"), shutil.which("setpriv")


@functools.cache
def bwrap_problem() -> str | None:
    """None when a bubblewrap sandbox works here (checked once by running one), else why."""
    bwrap, setpriv = _tools()
    if bwrap is None:
        return "the 'bwrap' command is not installed"
    if drops_to_nobody() and setpriv is None:
        return "running as root needs 'setpriv' (util-linux) to drop to an unprivileged user"
    with tempfile.TemporaryDirectory(prefix="fromager-dagster-sandbox-") as tmp:
        folder = Path(tmp)
        give_to_sandbox_user([folder])
        argv = bwrap_command(["/bin/sh", "-c", "echo ok > probe"], cwd=folder, writable=[folder])
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=30, env={}, check=False
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"bwrap failed to start: {exc}"
        if proc.returncode != 0 or not (folder / "probe").is_file():
            detail = (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
            return f"bwrap cannot make a sandbox here ({detail})"
    return None


def _masked_roots() -> tuple[str, ...]:
    home = os.environ.get("HOME", "")
    roots = list(_MASKED)
    if home and home != "/" and not any(_under(home, root) for root in roots):
        roots.append(home)
    return tuple(roots)


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def bwrap_command(
    argv: list[str], *, cwd: Path, writable: Iterable[Path], readable: Iterable[Path] = ()
) -> list[str]:
    bwrap, setpriv = _tools()
    assert bwrap is not None
    masked = _masked_roots()
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
    for root in masked:
        if os.path.isdir(root):
            args += ["--tmpfs", root]
    made: set[str] = set()
    binds: list[tuple[str, str]] = [("--ro-bind", str(p)) for p in readable]
    binds += [("--bind", str(p)) for p in writable]
    for flag, raw in binds:
        path = os.path.abspath(raw)
        hidden = next((r for r in masked if _under(path, r)), None)
        if hidden is None:
            _check_reachable(path)
            if flag == "--ro-bind":
                continue  # visible already, read-only
        else:
            args += _mount_points(path, hidden, made)
        args += [flag, path, path]
    args += [
        "--unshare-net", "--unshare-pid", "--unshare-ipc", "--unshare-uts",
        "--unshare-cgroup-try", "--hostname", "sandbox",
        "--die-with-parent", "--new-session", "--chdir", str(cwd),
    ]  # fmt: skip
    if drops_to_nobody():
        assert setpriv is not None
        nobody = str(SANDBOX_UID)
        args += [
            "--", setpriv, f"--reuid={nobody}", f"--regid={nobody}", "--clear-groups",
            "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs",
        ]  # fmt: skip
    else:
        args += ["--unshare-user", "--cap-drop", "ALL"]
    return [*args, "--", *argv]


def _mount_points(path: str, root: str, made: set[str]) -> list[str]:
    """``--dir`` for each folder between the masked ``root`` and ``path`` (mode 0755, so the
    unprivileged user can pass through the empty folder that hides the host's)."""
    args: list[str] = []
    parts = Path(path).relative_to(root).parts[:-1]
    current = root
    for part in parts:
        current = f"{current.rstrip('/')}/{part}"
        if current not in made:
            made.add(current)
            args += ["--perms", "0755", "--dir", current]
    return args


def _check_reachable(path: str) -> None:
    """SandboxError when the unprivileged user cannot pass through a folder above ``path``."""
    if not drops_to_nobody():
        return
    for parent in (Path(path), *Path(path).parents):
        if not _searchable(str(parent)):
            raise SandboxError(
                f"the build sandbox's user (uid {SANDBOX_UID}) cannot reach {path}: {parent} is "
                f"not searchable by others; run `chmod o+x {parent}`, put the output folder "
                "elsewhere, or choose --sandbox unshare"
            )


@functools.cache
def _searchable(folder: str) -> bool:
    try:
        mode = os.stat(folder).st_mode
        return not stat.S_ISDIR(mode) or bool(mode & stat.S_IXOTH)
    except OSError:
        return True  # bubblewrap reports a missing folder itself


def _chown_tree(top: Path, uid: int) -> None:
    """Give ``top`` and everything below it (symlinks themselves, never their targets) to
    ``uid``. Before every hook call, over the package's tree and build environment (thousands
    of files): coreutils' ``chown -R`` walks them several times faster than Python does."""
    if not top.exists():
        return
    chown = _chown_command()
    if chown is not None:
        done = subprocess.run(
            [chown, "-R", "-P", "-h", f"{uid}:{uid}", "--", str(top)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        if done.returncode == 0:
            return
    for root, dirs, files in os.walk(top):
        for name in (root, *(os.path.join(root, n) for n in (*dirs, *files))):
            try:
                if os.lstat(name).st_uid != uid:
                    os.lchown(name, uid, uid)
            except OSError:
                pass


@functools.cache
def _chown_command() -> str | None:
    """coreutils' ``chown`` from the system's folders (not PATH: a build must not choose it)."""
    for folder in ("/usr/bin", "/bin"):
        path = os.path.join(folder, "chown")
        if os.access(path, os.X_OK):
            return path
    return None
