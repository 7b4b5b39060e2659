"""A source tree's ``[build-system]`` table: the backend and its requirements (PEP 517/518),
with setuptools' legacy default where the tree has none."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from packaging.requirements import Requirement

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.core.resolve.requirements import marker_holds, parse_requirement

DEFAULT_REQUIRES = ("setuptools>=40.8.0",)
DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"


@dataclass(frozen=True)
class BuildSystem:
    """The ``[build-system]`` table of a source tree (with the setuptools legacy default)."""

    requires: tuple[Requirement, ...]
    backend: str
    backend_path: tuple[str, ...] | None


def read_build_system(source_dir: Path, *, package: str | None = None) -> BuildSystem:
    """``source_dir``'s build system; ConfigError names pyproject.toml and what is wrong."""
    pyproject = source_dir / "pyproject.toml"
    table: Mapping[str, object] = {}
    if pyproject.exists():
        try:
            data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{pyproject}: invalid TOML: {exc}", package=package) from exc
        raw = data.get("build-system", {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{pyproject}: [build-system] must be a table", package=package)
        table = raw
    requires = table.get("requires", list(DEFAULT_REQUIRES))
    if not isinstance(requires, list) or not all(isinstance(r, str) for r in requires):
        raise ConfigError(
            f"{pyproject}: [build-system].requires must be a list of strings", package=package
        )
    backend = table.get("build-backend", DEFAULT_BACKEND)
    backend_path = table.get("backend-path")
    if isinstance(backend_path, str):  # flit-core 2.x writes one path as a string
        backend_path = [backend_path]
    if not isinstance(backend, str) or (
        backend_path is not None
        and (
            not isinstance(backend_path, list) or not all(isinstance(p, str) for p in backend_path)
        )
    ):
        raise ConfigError(f"{pyproject}: bad build-backend or backend-path", package=package)
    reqs = tuple(parse_requirement(r, source=str(pyproject)) for r in requires)
    return BuildSystem(
        tuple(r for r in reqs if marker_holds(r)),
        backend,
        tuple(backend_path) if backend_path is not None else None,
    )
