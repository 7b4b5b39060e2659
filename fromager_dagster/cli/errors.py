"""The command's one error-to-exit handler: an engine error or a disk that refuses us is one
``error:`` line on stderr and exit status 1, with its traceback under ``-v``.

Commands let :class:`~fromager_dagster.core.errors.FromagerDagsterError` propagate; the
``fromager-dagster`` group (:class:`CommandGroup`) turns it into the exit.
"""

from __future__ import annotations

import errno
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

import click

from ..core.bootstrap import BootstrapFailed, FailureRecord
from ..core.errors import FromagerDagsterError

#: A disk that is full, read-only or refuses us: a fact about the machine, not a bug.
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EIO})


def verbose(ctx: click.Context | None = None) -> bool:
    """Whether ``-v`` was given to the ``fromager-dagster`` group."""
    ctx = ctx or click.get_current_context(silent=True)
    if ctx is None:
        return False
    root = ctx.find_root()
    return bool(root.params.get("verbose") or (root.obj or {}).get("verbose"))


def fail(exc: BaseException, *, show_traceback: bool, lines: list[str]) -> NoReturn:
    """Print ``exc``'s traceback (when asked), then ``lines`` as ``error:`` lines; exit 1."""
    if show_traceback:
        traceback.print_exception(exc)
    for line in lines:
        click.echo(f"error: {line}", err=True)
    sys.exit(1)


def echo_run_errors(errors: Sequence[str], tracebacks: Sequence[str], show_traceback: bool) -> None:
    """What failed Dagster runs reported: their tracebacks (when asked), then ``error:`` lines."""
    if show_traceback:
        for text in tracebacks:
            click.echo(text, err=True)
    for line in errors:
        click.echo(f"error: {line}", err=True)


def failure_line(record: FailureRecord) -> str:
    """One package a test-mode run let fail: ``name==version: TYPE failure: EXC: message``."""
    who = f"{record.package}=={record.version}" if record.version else record.package
    return (
        f"{who}: {record.failure_type} failure: {record.exception_type}: {record.exception_message}"
    )


def error_lines(exc: BaseException) -> list[str] | None:
    """The ``error:`` lines for ``exc`` (each root cause of a failed bootstrap), or ``None``
    when it is neither an engine error nor a disk error (a bug: its traceback shows)."""
    if isinstance(exc, BootstrapFailed):
        return [failure.one_line() for failure in exc.failures]
    if isinstance(exc, FromagerDagsterError):
        return [exc.one_line()]
    line = disk_error(exc)
    return None if line is None else [line]


def disk_error(exc: BaseException) -> str | None:
    """One line for an OSError of the disk (or SQLite's "disk is full" / "disk I/O error"
    from the Dagster instance) anywhere in ``exc``'s chain; ``None`` for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, OSError) and seen.errno in _DISK_ERRNOS:
            where = f" {seen.filename}" if seen.filename else ""
            return (
                f"cannot write{where}: {seen.strerror}; free some space (or pass -O a "
                "writable folder) and run the command again"
            )
        text = str(seen).lower()
        if type(seen).__name__ == "OperationalError" and ("disk" in text or "full" in text):
            return (
                f"the Dagster instance cannot write: {str(seen).splitlines()[0]}; free some "
                "space on its disk and run the command again"
            )
        seen = seen.__cause__ or seen.__context__
    return None


class CommandGroup(click.Group):
    """A group whose commands' engine and disk errors end the command as :func:`fail` does."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.exceptions.ClickException:
            raise
        except Exception as exc:
            lines = error_lines(exc)
            if lines is None:
                raise
            fail(exc, show_traceback=verbose(ctx), lines=lines)
