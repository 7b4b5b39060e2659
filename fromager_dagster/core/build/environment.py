"""Build environments: a fresh virtual environment that installs only from the local wheel index."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from fromager_dagster.core.errors import BuildError
from fromager_dagster.core.package_id import package_key


def uv_binary() -> str:
    """The uv executable shipped with the ``uv`` package (or on PATH)."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        found = shutil.which("uv")
        if found is None:
            raise BuildError("uv is not installed; reinstall fromager-dagster") from None
        return found


def clean_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment without pip/uv settings that could reach another index."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PIP_", "UV_", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"))
    }
    env["PIP_NO_INDEX"] = "1"
    env["UV_NO_CONFIG"] = "1"
    if extra:
        env.update(extra)
    return env


@dataclass(frozen=True)
class BuildEnv:
    """A virtual environment for one build."""

    path: Path

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def environ(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = clean_environ(extra)
        env["VIRTUAL_ENV"] = str(self.path)
        env["PATH"] = f"{self.path / 'bin'}{os.pathsep}{env.get('PATH', '')}"
        return env

    def installed(self) -> list[str]:
        """``name==version`` of every distribution installed in the environment (from its
        ``.dist-info`` folders), sorted: what a build's provenance lists."""
        found = []
        for dist_info in self.path.glob("lib/python*/site-packages/*.dist-info"):
            name, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
            if name and version:
                found.append(package_key(name.replace("_", "-").replace(".", "-").lower(), version))
        return sorted(found)


SESSION_MAX_AGE = 24 * 3600.0


def session_cache(root: Path, session: str) -> Path:
    """The installer cache of one session (a bootstrap, a Dagster run) under ``root``.

    Within a session a wheel's bytes never change under its name: it is installed only once
    it is final. Across sessions they may (a rebuild with other settings keeps the file
    name), and uv's cache keys wheels by name, so each session has a cache of its own:
    a wheel is unpacked into it once, however many environments install it, and no session
    sees another's. Sessions older than a day are removed here.
    """
    sessions = root / "sessions"
    sessions.mkdir(parents=True, exist_ok=True)
    now = time.time()
    for old in sessions.iterdir():
        with contextlib.suppress(OSError):
            if old.name != session and now - old.stat().st_mtime > SESSION_MAX_AGE:
                shutil.rmtree(old, ignore_errors=True)
    path = sessions / session
    path.mkdir(exist_ok=True)
    return path


@contextlib.contextmanager
def temporary_session(root: Path) -> Iterator[Path]:
    """A session cache (:func:`session_cache`) removed when the block ends."""
    path = session_cache(root, f"tmp-{uuid.uuid4().hex}")
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


#: Below this many free bytes a failed write is blamed on a full disk.
_NEARLY_FULL = 1024 * 1024


def _uv_says(log: Path, start: int) -> str:
    """uv's own reason, from what it wrote to ``log`` after byte ``start`` (its ``error:``
    line and first cause); else, on a full disk, that. Empty when neither is known."""
    try:
        with log.open("rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - 64 * 1024))
            text = f.read().decode("utf-8", "replace")
    except OSError:
        text = ""
    said: list[str] = []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("error:") and not said:
            said.append(stripped.removeprefix("error:").strip())
        elif stripped.lower().startswith(("cause:", "caused by:")) and len(said) == 1:
            said.append(stripped.split(":", 1)[1].strip())
    reason = ": ".join(said)
    with contextlib.suppress(OSError):
        stat = os.statvfs(log.parent)
        if "No space left" not in reason and stat.f_bavail * stat.f_frsize < _NEARLY_FULL:
            said.append(
                f"No space left on device (writing into {log.parent.parent}); free some space "
                "and run the command again"
            )
    return ": " + ": ".join(said) if said else ""


class BuildEnvFactory:
    """Creates build environments that can install only wheels from ``index_url``.

    ``index_url`` is the local wheel server on 127.0.0.1; every install is
    ``--only-binary :all:`` with that index and no other, so nothing can come from upstream.
    ``cache_dir`` is a session's cache (:func:`session_cache`), never shared across sessions.
    """

    def __init__(self, index_url: str, *, cache_dir: Path, python: str = sys.executable) -> None:
        self.index_url = index_url
        self.cache_dir = cache_dir
        self.python = python
        self._uv = uv_binary()

    def _run(self, args: list[str], log: Path, what: str) -> None:
        with log.open("a", encoding="utf-8") as out:
            start = out.tell()
            out.write(f"$ uv {' '.join(args)}\n")
            out.flush()
            proc = subprocess.run(
                [self._uv, *args],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=clean_environ(),
                check=False,
            )
        if proc.returncode != 0:
            raise BuildError(
                f"{what} failed (uv exit {proc.returncode}){_uv_says(log, start)}",
                exit_code=proc.returncode,
                log_path=str(log),
            )

    def create(self, dest: Path, *, log: Path) -> BuildEnv:
        if dest.exists():
            shutil.rmtree(dest)
        self._run(
            ["venv", "--quiet", "--no-config", "--python", self.python, str(dest)],
            log,
            "creating the build environment",
        )
        return BuildEnv(dest)

    def install(self, env: BuildEnv, pins: Sequence[str], *, log: Path) -> None:
        """Install exact ``name==version`` pins (and what they need) from the local index."""
        if not pins:
            return
        self._run(
            [
                "pip",
                "install",
                "--no-config",
                "--python",
                str(env.python),
                "--index-url",
                self.index_url,
                "--only-binary",
                ":all:",
                "--cache-dir",
                str(self.cache_dir),
                *pins,
            ],
            log,
            f"installing {', '.join(pins)} into the build environment",
        )
