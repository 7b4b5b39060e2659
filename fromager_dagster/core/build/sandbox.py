"""The build sandbox: how PEP 517 hooks and build subprocesses are confined, and their limits.

Three kinds (docs/security.md says what each one guarantees):

- ``bwrap``: bubblewrap. The host filesystem read-only; the caller's home directories,
  ``/tmp``, ``/var/tmp`` and ``/run`` replaced by empty folders; only the directories a call
  names writable (the package's own source tree and output folder); new network (loopback
  only), PID, IPC and UTS namespaces; ``--die-with-parent``; an unprivileged user inside
  (uid 65534 when the tool runs as root, set by ``setpriv`` after bubblewrap made the mounts;
  the caller's own uid otherwise).
- ``unshare``: the network namespace alone (loopback only), plus new PID, IPC and UTS
  namespaces when unshare can make them; the filesystem is the caller's.
- ``none``: no confinement.

Whatever the kind, a call sees only the environment :func:`hook_environ` builds (an explicit
allowlist), runs in a new session whose process group is killed when it ends, and is killed
with its whole process tree when it passes its time or log-size limit (:func:`run_confined`).
"""

from __future__ import annotations

import contextlib
import functools
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fromager_dagster.core.build.isolation import isolated, isolation_problem
from fromager_dagster.core.errors import IsolationError
from fromager_dagster.core.package_log import DEFAULT_KEEP_LOG_MB, keep_head_and_tail

SandboxKind = Literal["bwrap", "unshare", "none"]
SANDBOX_KINDS: tuple[SandboxKind, ...] = ("bwrap", "unshare", "none")

#: The user a hook runs as inside bubblewrap when the tool runs as root (``nobody``).
SANDBOX_UID = 65534

#: Defaults of the settings' ``sandbox`` section: a large C++ build stays well inside them.
DEFAULT_HOOK_TIMEOUT = 6 * 3600.0
DEFAULT_MAX_LOG_MB = 1024

_POLL = 0.25  # seconds between two looks at a running process's clock and log size

# Folders whose contents a bubblewrap sandbox never sees (replaced by empty tmpfs mounts).
_MASKED = ("/tmp", "/var/tmp", "/run", "/root", "/home")

#: Variables of the caller's environment that reach a hook; everything else is dropped.
PASSED_VARIABLES = frozenset(
    {
        "PATH", "LANG", "LANGUAGE", "TZ", "TERM", "SOURCE_DATE_EPOCH",
        "CC", "CXX", "CPP", "LD", "AR", "NM", "RANLIB",
        "CFLAGS", "CXXFLAGS", "CPPFLAGS", "LDFLAGS", "PKG_CONFIG_PATH",
        "MAKEFLAGS", "CMAKE_BUILD_PARALLEL_LEVEL", "MAX_JOBS",
    }
)  # fmt: skip


class SandboxError(IsolationError):
    """The sandbox that was asked for cannot be made here, or cannot reach a path."""

    step = "sandbox"


@dataclass(frozen=True)
class HookLimits:
    """How long one hook call may run and how much log it may write (settings ``sandbox``)."""

    timeout: float = DEFAULT_HOOK_TIMEOUT  # seconds
    max_log_bytes: int = DEFAULT_MAX_LOG_MB * 1024 * 1024
    timeout_is_transient: bool = False  # a hook killed at its limit is worth a retry
    keep_log_bytes: int = DEFAULT_KEEP_LOG_MB * 1024 * 1024  # of its output: head and tail


@dataclass(frozen=True)
class Sandbox:
    """One of :data:`SANDBOX_KINDS`; ``note`` says what a fallback does not cover."""

    kind: SandboxKind = "none"
    note: str = ""

    def __bool__(self) -> bool:
        """True when hooks are isolated at all (``network-isolated``, as before)."""
        return self.kind != "none"

    def command(
        self,
        argv: Sequence[str],
        *,
        cwd: Path,
        writable: Iterable[Path] = (),
        readable: Iterable[Path] = (),
    ) -> list[str]:
        """``argv`` wrapped: run in ``cwd`` with only ``writable`` writable; ``readable``
        must be visible (bound again where a masked folder hides them)."""
        if self.kind == "none":
            return list(argv)
        if self.kind == "unshare":
            return _unshare_command(list(argv))
        return _bwrap_command(list(argv), cwd=cwd, writable=writable, readable=readable)

    def prepare(self, writable: Iterable[Path]) -> None:
        """Make ``writable`` writable by the sandbox's user (bubblewrap as root: uid 65534)."""
        if self.kind == "bwrap" and _drops_to_nobody():
            for path in writable:
                _chown_tree(path, SANDBOX_UID)


def as_sandbox(isolate: bool | Sandbox) -> Sandbox:
    """``isolate`` as a Sandbox: True is the best available (an error if none isolates)."""
    if isinstance(isolate, Sandbox):
        return isolate
    return resolve_sandbox(None, network_isolation=isolate)


def resolve_sandbox(kind: str | None, *, network_isolation: bool | None = None) -> Sandbox:
    """The sandbox to use. ``kind`` (``--sandbox``) wins; else ``network_isolation`` False is
    ``none``, True insists on isolation, None takes the best that works: bubblewrap, else
    unshare (with a note saying what is not covered), else nothing (likewise)."""
    if kind is not None:
        if kind not in ("bwrap", "unshare", "none"):
            raise SandboxError(
                f"--sandbox {kind!r} is not one of {', '.join(SANDBOX_KINDS)}; choose one of them"
            )
        if kind == "bwrap" and (problem := bwrap_problem()) is not None:
            raise SandboxError(
                f"--sandbox bwrap was asked for but bubblewrap cannot run here: {problem}; "
                "install it (apt-get install -y bubblewrap) or choose --sandbox unshare"
            )
        if kind == "unshare" and (problem := isolation_problem()) is not None:
            raise SandboxError(
                f"--sandbox unshare was asked for but cannot run here: {problem}; "
                "choose --sandbox none to build without isolation"
            )
        return Sandbox("bwrap" if kind == "bwrap" else "unshare" if kind == "unshare" else "none")
    if network_isolation is False:
        return Sandbox("none")
    return _best(insist=bool(network_isolation))


@functools.cache
def _best(*, insist: bool) -> Sandbox:
    problem = bwrap_problem()
    if problem is None:
        return Sandbox("bwrap")
    if isolation_problem() is None:
        return Sandbox(
            "unshare",
            note=f"bubblewrap is unavailable ({problem}); build hooks only lose the network: "
            "they can read and write whatever this user can (install bubblewrap for the full "
            "sandbox, docs/security.md)",
        )
    if insist:
        raise SandboxError(
            f"network isolation was asked for but neither bubblewrap ({problem}) nor "
            f"unshare ({isolation_problem()}) works here; pass --sandbox none to build "
            "without it"
        )
    return Sandbox(
        "none",
        note=f"neither bubblewrap ({problem}) nor unshare works here: build hooks run "
        "unconfined, with the network (docs/security.md)",
    )


# -- bubblewrap ---------------------------------------------------------------------------------


def _drops_to_nobody() -> bool:
    return os.geteuid() == 0


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
    if _drops_to_nobody() and setpriv is None:
        return "running as root needs 'setpriv' (util-linux) to drop to an unprivileged user"
    with tempfile.TemporaryDirectory(prefix="fromager-dagster-sandbox-") as tmp:
        folder = Path(tmp)
        Sandbox("bwrap").prepare([folder])
        argv = _bwrap_command(["/bin/sh", "-c", "echo ok > probe"], cwd=folder, writable=[folder])
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=30, env={})
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


def _bwrap_command(
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
    if _drops_to_nobody():
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
    if not _drops_to_nobody():
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


# -- unshare ------------------------------------------------------------------------------------


def _unshare_command(argv: list[str]) -> list[str]:
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
        )
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return extras if proc.returncode == 0 else ()


# -- environment and limits ---------------------------------------------------------------------


def hook_environ(extra: Mapping[str, str], *, home: Path) -> dict[str, str]:
    """The environment of a hook: :data:`PASSED_VARIABLES` and ``LC_*`` from the caller's,
    ``HOME`` and ``TMPDIR`` of its own, pip and uv kept off any index, then ``extra`` (the
    settings' ``env``, a plugin's, the build environment's PATH)."""
    environ = {k: v for k, v in os.environ.items() if k in PASSED_VARIABLES or k.startswith("LC_")}
    environ.setdefault("PATH", os.defpath)
    environ.update(
        HOME=str(home),
        TMPDIR="/tmp",
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
