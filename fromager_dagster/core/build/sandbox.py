"""The build sandbox: which kind confines PEP 517 hooks and build subprocesses, and how a
command is wrapped in it.

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

Whatever the kind, a call sees only the environment :func:`.confined.hook_environ` builds (an
explicit allowlist), runs in a new session whose process group is killed when it ends, and is
killed with its whole process tree when it passes its time or log-size limit
(:func:`.confined.run_confined`). The bubblewrap command line is :mod:`.bwrap`'s; unshare's is
:mod:`.isolation`'s.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from fromager_dagster.core.build.bwrap import bwrap_command, bwrap_problem, give_to_sandbox_user
from fromager_dagster.core.build.isolation import isolation_problem, unshare_command
from fromager_dagster.core.errors import SandboxError

SandboxKind = Literal["bwrap", "unshare", "none"]
SANDBOX_KINDS: tuple[SandboxKind, ...] = ("bwrap", "unshare", "none")


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
            return unshare_command(list(argv))
        return bwrap_command(list(argv), cwd=cwd, writable=writable, readable=readable)

    def prepare(self, writable: Iterable[Path]) -> None:
        """Make ``writable`` writable by the sandbox's user (bubblewrap as root: uid 65534)."""
        if self.kind == "bwrap":
            give_to_sandbox_user(writable)


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
