"""The project's error tree: one root, a few branches, structured fields, picklable."""

from __future__ import annotations

from typing import Any

from fromager_dagster.core.credentials import redact_text
from fromager_dagster.core.package_id import package_key


class FromagerDagsterError(Exception):
    """Root of every error the engine raises on purpose.

    Carries structured fields so callers (CLI, Dagster) can format them; ``str()`` is one
    sentence a user can act on. Picklable: keyword fields survive process boundaries.
    """

    step = "run"

    def __init__(
        self,
        message: str,
        *,
        package: str | None = None,
        version: str | None = None,
        log_path: str | None = None,
        step: str | None = None,
        transient: bool | None = None,
    ) -> None:
        message = redact_text(message)  # a URL's password never reaches a message
        super().__init__(message)
        self.message = message
        self.package = package
        self.version = version
        self.log_path = log_path
        if step is not None:
            self.step = step
        #: Worth retrying? ``None``: decided by the error's type (a caller's policy).
        self.transient = transient

    def _fields(self) -> dict[str, Any]:
        """The keyword fields ``__init__`` takes; subclasses with more fields extend this."""
        return {
            "package": self.package,
            "version": self.version,
            "log_path": self.log_path,
            "step": self.step,
            "transient": self.transient,
        }

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (type(self), self.message, self._fields()))

    def __str__(self) -> str:
        return self.message

    def one_line(self) -> str:
        """`<package>==<version>: <step>: <message> (log: <path>)` with the parts that are known."""
        who = self.package or ""
        if who and self.version:
            who = package_key(who, self.version)
        text = f"{who}: {self.step} failed" if who else f"{self.step} failed"
        text = f"{text}: {_single_line(self.message)}"
        if self.log_path:
            text += f" (log: {self.log_path})"
        return text


def _single_line(text: str) -> str:
    """``text`` on one line: a library's multi-line message joined with "; "."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return "; ".join(lines)


def _rebuild(cls: type[FromagerDagsterError], message: str, fields: dict[str, Any]) -> Any:
    return cls(message, **fields)


class ConfigError(FromagerDagsterError):
    """Bad input: a requirements or constraints file, an option, a settings file."""

    step = "configuration"


class IndexAccessError(FromagerDagsterError):
    """The package index could not be read."""

    step = "index"


class ResolutionError(FromagerDagsterError):
    """No version satisfies the requirements and constraints."""

    step = "resolve"


class SourceError(FromagerDagsterError):
    """A source archive could not be downloaded, verified or unpacked."""

    step = "source"


class HashMismatchError(SourceError):
    """A downloaded file does not have the sha256 the index promised."""

    step = "download"


class UnsafeArchiveError(SourceError):
    """An archive member would escape the destination or is not a plain file."""

    step = "unpack"


class PatchError(SourceError):
    """A patch from the overrides folder does not apply to the package's source."""

    step = "patch"


class BuildError(FromagerDagsterError):
    """A build environment, a PEP 517 hook or a wheel build failed.

    ``exit_code`` is the failed process's status when there was one (negative: killed by that
    signal), so callers can tell a crash worth retrying from a deterministic failure.
    """

    step = "build"

    def __init__(self, message: str, *, exit_code: int | None = None, **fields: Any) -> None:
        super().__init__(message, **fields)
        self.exit_code = exit_code

    def _fields(self) -> dict[str, Any]:
        return {**super()._fields(), "exit_code": self.exit_code}

    @property
    def killed(self) -> bool:
        """The process was killed by a signal (out of memory, a timeout, an operator)."""
        return self.exit_code is not None and self.exit_code < 0


class BuildCycleError(FromagerDagsterError):
    """Packages need each other's wheels to build: no order can satisfy them."""

    step = "discover"


class IsolationError(FromagerDagsterError):
    """Network isolation was requested but cannot be set up on this machine."""

    step = "isolation"


class SandboxError(IsolationError):
    """The sandbox that was asked for cannot be made here, or cannot reach a path."""

    step = "sandbox"


class RepositoryError(FromagerDagsterError):
    """The local wheel repository or its server is not usable."""

    step = "repository"


def is_transient(exc: BaseException, *, flaky: bool = False) -> bool:
    """Worth retrying (the wheel assets' retry policy): network and download trouble, killed
    processes, OS errors.

    A BuildError is deterministic unless its process was killed by a signal (``exit_code``
    negative: out of memory, a timeout, an operator), or the package is declared flaky
    (collection key ``flaky_build``).
    """
    if isinstance(exc, FromagerDagsterError) and exc.transient is not None:
        return exc.transient  # the engine knows (a killed hook: settings; a 503 after retries)
    if isinstance(exc, HashMismatchError | UnsafeArchiveError):
        return False
    if isinstance(exc, IndexAccessError | SourceError | OSError):
        return True
    if isinstance(exc, BuildError):
        return flaky or exc.killed
    return False
