"""Build environments: a fresh virtual environment that installs only from the local wheel index."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .errors import BuildError


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


class BuildEnvFactory:
    """Creates build environments that can install only wheels from ``index_url``.

    ``index_url`` is the local wheel server on 127.0.0.1; every install is
    ``--only-binary :all:`` with that index and no other, so nothing can come from upstream.
    """

    def __init__(self, index_url: str, *, cache_dir: Path, python: str = sys.executable) -> None:
        self.index_url = index_url
        self.cache_dir = cache_dir
        self.python = python
        self._uv = uv_binary()

    def _run(self, args: list[str], log: Path, what: str) -> None:
        with log.open("a", encoding="utf-8") as out:
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
                f"{what} failed (uv exit {proc.returncode})",
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
                "--refresh",
                *pins,
            ],
            log,
            f"installing {', '.join(pins)} into the build environment",
        )
