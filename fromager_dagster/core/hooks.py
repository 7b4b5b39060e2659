"""PEP 517 through pyproject-hooks: build-system requirements, the get_requires hooks, builds."""

from __future__ import annotations

import subprocess
import threading
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pyproject_hooks
from packaging.requirements import Requirement

from .buildenv import BuildEnv
from .errors import BuildError, ConfigError
from .isolation import isolated
from .requirements import marker_holds, parse_requirement

_current_log = threading.local()
_original_showwarning = warnings.showwarning


def _showwarning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: object = None,
    line: str | None = None,
) -> None:
    """Backend warnings that pyproject-hooks re-raises go to the calling thread's build log."""
    log: Path | None = getattr(_current_log, "path", None)
    if log is None or not issubclass(category, pyproject_hooks.BuildBackendWarning):
        _original_showwarning(message, category, filename, lineno, file, line)  # type: ignore[arg-type]
        return
    with log.open("a", encoding="utf-8") as out:
        out.write(warnings.formatwarning(message, category, filename, lineno, line))


warnings.showwarning = _showwarning

DEFAULT_REQUIRES = ("setuptools>=40.8.0",)
DEFAULT_BACKEND = "setuptools.build_meta:__legacy__"


@dataclass(frozen=True)
class BuildSystem:
    """The ``[build-system]`` table of a source tree (with the setuptools legacy default)."""

    requires: tuple[Requirement, ...]
    backend: str
    backend_path: tuple[str, ...] | None


def read_build_system(source_dir: Path, *, package: str | None = None) -> BuildSystem:
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


class HookCaller:
    """Calls one source tree's PEP 517 hooks in its build environment, logging every output.

    With ``isolate`` each hook subprocess runs in a new network namespace (loopback only).
    """

    def __init__(
        self,
        source_dir: Path,
        build_system: BuildSystem,
        env: BuildEnv,
        *,
        log: Path,
        isolate: bool,
        extra_environ: Mapping[str, str] | None = None,
        package: str | None = None,
        version: str | None = None,
        config_settings: Mapping[str, str | Sequence[str]] | None = None,
    ) -> None:
        self.source_dir = source_dir
        self.config_settings = dict(config_settings or {})
        self.env = env
        self.log = log
        self.isolate = isolate
        self.package = package
        self.version = version
        self._extra = dict(extra_environ or {})
        self._caller = pyproject_hooks.BuildBackendHookCaller(
            str(source_dir),
            build_system.backend,
            backend_path=list(build_system.backend_path) if build_system.backend_path else None,
            runner=self._run,
            python_executable=str(env.python),
        )

    def _run(
        self,
        cmd: Sequence[str],
        cwd: str | None = None,
        extra_environ: Mapping[str, str] | None = None,
    ) -> None:
        environ = self.env.environ(self._with_prefix_map({**self._extra, **(extra_environ or {})}))
        argv = isolated(list(cmd)) if self.isolate else list(cmd)
        with self.log.open("a", encoding="utf-8") as out:
            out.flush()
            subprocess.run(
                argv, cwd=cwd, env=environ, stdout=out, stderr=subprocess.STDOUT, check=True
            )

    def _with_prefix_map(self, environ: dict[str, str]) -> dict[str, str]:
        """``environ`` with compiler flags that write the source tree and the build
        environment under fixed names into compiled code (debug information, ``__FILE__``),
        so that a C extension's bytes do not depend on where the output folder is."""
        name = f"{self.package or 'package'}-{self.version or '0'}"
        maps = (
            f"-ffile-prefix-map={self.source_dir.resolve()}=/usr/src/{name} "
            f"-ffile-prefix-map={self.env.path.resolve()}=/usr/src/{name}-build-env"
        )
        for flags in ("CFLAGS", "CXXFLAGS"):
            environ[flags] = f"{maps} {environ[flags]}" if environ.get(flags) else maps
        return environ

    def _call(self, hook: str, *args: object, **kwargs: object) -> object:
        """Call ``hook``; translate pyproject_hooks' and subprocess errors to BuildError here."""
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- PEP 517 hook {hook} ---\n")
        _current_log.path = self.log
        if self.config_settings:
            kwargs["config_settings"] = dict(self.config_settings)
        try:
            return getattr(self._caller, hook)(*args, **kwargs)
        except subprocess.CalledProcessError as exc:
            raise self._error(
                hook, f"PEP 517 hook {hook} exited with status {exc.returncode}", exc.returncode
            ) from exc
        except pyproject_hooks.BackendUnavailable as exc:
            detail = getattr(exc, "message", None) or exc.backend_name
            raise self._error(
                hook,
                f"build backend cannot be imported ({detail}); is it in [build-system].requires?",
            ) from exc
        except pyproject_hooks.HookMissing as exc:
            raise self._error(hook, f"build backend has no hook {exc.hook_name}") from exc
        finally:
            _current_log.path = None

    def _error(self, hook: str, message: str, exit_code: int | None = None) -> BuildError:
        return BuildError(
            message,
            exit_code=exit_code,
            package=self.package,
            version=self.version,
            log_path=str(self.log),
            step=hook,
        )

    def _requirements(self, hook: str) -> list[Requirement]:
        raw = self._call(hook)
        assert isinstance(raw, list)
        reqs = [parse_requirement(str(r), source=f"{self.package} {hook}") for r in raw]
        return [r for r in reqs if marker_holds(r)]

    def requires_for_wheel(self) -> list[Requirement]:
        return self._requirements("get_requires_for_build_wheel")

    def requires_for_sdist(self) -> list[Requirement]:
        return self._requirements("get_requires_for_build_sdist")

    def build_wheel(self, out_dir: Path) -> Path:
        out_dir.mkdir(parents=True, exist_ok=True)
        name = self._call("build_wheel", str(out_dir))
        return out_dir / str(name)

    def prepare_metadata(self, out_dir: Path) -> Path:
        """The ``.dist-info`` folder (``prepare_metadata_for_build_wheel`` or a full build)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        name = self._call("prepare_metadata_for_build_wheel", str(out_dir))
        return out_dir / str(name)
