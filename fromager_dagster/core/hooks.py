"""PEP 517 through pyproject-hooks: build-system requirements, the get_requires hooks, builds."""

from __future__ import annotations

import contextlib
import functools
import json
import shutil
import subprocess
import tempfile
import threading
import tomllib
import warnings
from collections.abc import Callable, Mapping, Sequence
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
        self._kept: dict[str, object] = {}  # what prefetch() kept, by hook
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

    def prefetch(self, hooks: Sequence[str], *, metadata_dir: Path | None = None) -> None:
        """Run ``hooks`` one after another in one interpreter, so the backend is imported once
        (it is most of a hook's cost), and keep each one's result or error for its call.

        For ``get_requires_for_build_wheel``, ``get_requires_for_build_sdist`` and
        ``prepare_metadata_for_build_wheel`` (into ``metadata_dir``, with no fall-back to a
        build where the backend lacks it). A hook after a failed one keeps nothing: it runs
        again on its own when called. :meth:`forget` drops a kept result the environment has
        made stale.
        """
        calls: list[tuple[str, dict[str, object]]] = []
        for hook in hooks:
            kwargs: dict[str, object] = {"config_settings": dict(self.config_settings) or None}
            if hook == "prepare_metadata_for_build_wheel":
                assert metadata_dir is not None
                shutil.rmtree(metadata_dir, ignore_errors=True)
                metadata_dir.mkdir(parents=True)
                kwargs |= {"metadata_directory": str(metadata_dir), "_allow_fallback": False}
            calls.append((hook, kwargs))
        if not calls:
            return
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- PEP 517 hooks {', '.join(hooks)} (one interpreter) ---\n")
        with tempfile.TemporaryDirectory() as control, _in_process_script() as script:
            argv = [str(self.env.python), "-c", _BATCH, str(script)]
            for number, (hook, kwargs) in enumerate(calls):
                folder = Path(control, str(number))
                folder.mkdir()
                (folder / "input.json").write_text(json.dumps({"kwargs": kwargs}))
                argv += [hook, str(folder)]
            status = 0
            try:
                self._run(argv, cwd=str(self.source_dir), extra_environ=self._backend_environ())
            except subprocess.CalledProcessError as exc:
                status = exc.returncode
            for number, (hook, _) in enumerate(calls):
                output = Path(control, str(number), "output.json")
                if not output.is_file():
                    message = f"PEP 517 hook {hook} exited with status {status}"
                    self._kept[hook] = self._error(hook, message, status)
                    break
                self._keep(hook, json.loads(output.read_text(encoding="utf-8")))

    def _keep(self, hook: str, data: dict[str, object]) -> None:
        """Keep a prefetched hook's result, or its error; not a missing metadata hook (its
        call then falls back to a build, as pyproject-hooks does)."""
        try:
            self._kept[hook] = self._translated(hook, functools.partial(_hook_output, data, hook))
        except BuildError as exc:
            if not (hook == "prepare_metadata_for_build_wheel" and data.get("hook_missing")):
                self._kept[hook] = exc

    def forget(self, hook: str) -> None:
        """Drop what :meth:`prefetch` kept for ``hook``: it runs again when called."""
        self._kept.pop(hook, None)

    def _backend_environ(self) -> dict[str, str]:
        """What pyproject-hooks' in-process script reads to find the backend."""
        environ = {"_PYPROJECT_HOOKS_BUILD_BACKEND": self._caller.build_backend}
        if self._caller.backend_path:
            environ["_PYPROJECT_HOOKS_BACKEND_PATH_JSON"] = json.dumps(self._caller.backend_path)
        return environ

    def _call(self, hook: str, *args: object, **kwargs: object) -> object:
        """Call ``hook`` (or take what :meth:`prefetch` kept for it)."""
        if hook in self._kept:
            kept = self._kept.pop(hook)
            if isinstance(kept, BuildError):
                raise kept
            return kept
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- PEP 517 hook {hook} ---\n")
        if self.config_settings:
            kwargs["config_settings"] = dict(self.config_settings)
        return self._translated(hook, lambda: getattr(self._caller, hook)(*args, **kwargs))

    def _translated(self, hook: str, call: Callable[[], object]) -> object:
        """``call()``; translate pyproject_hooks' and subprocess errors to BuildError here."""
        _current_log.path = self.log
        try:
            return call()
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
        except pyproject_hooks.UnsupportedOperation as exc:
            raise self._error(hook, f"build backend does not support {hook}") from exc
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
        """The ``.dist-info`` folder (``prepare_metadata_for_build_wheel`` or a full build);
        the one :meth:`prefetch` wrote into ``out_dir``, if it kept it."""
        if "prepare_metadata_for_build_wheel" not in self._kept:
            shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        name = self._call("prepare_metadata_for_build_wheel", str(out_dir))
        return out_dir / str(name)


# Runs in the build environment: pyproject-hooks' own in-process script, once per hook named on
# the command line (``<script> <hook> <control dir> [<hook> <control dir>...]``), in one
# interpreter. ``-c`` puts the working directory (the source tree) first on sys.path; a hook
# run as a script would not have it there, so it goes.
_BATCH = """
import runpy, sys
if sys.path and sys.path[0] in ("", "."):
    del sys.path[0]
script, pairs = sys.argv[1], sys.argv[2:]
namespace = runpy.run_path(script, run_name="_in_process")
for hook, control in zip(pairs[::2], pairs[1::2]):
    sys.argv = [script, hook, control]
    namespace["main"]()
"""


def _in_process_script() -> contextlib.AbstractContextManager[Path]:
    from pyproject_hooks._in_process import _in_proc_script_path

    return _in_proc_script_path()  # type: ignore[no-any-return,no-untyped-call]


def _hook_output(data: Mapping[str, object], hook: str) -> object:
    """A hook's output.json as pyproject-hooks reads it: its return value, or its error."""
    if data.get("unsupported"):
        raise pyproject_hooks.UnsupportedOperation(str(data.get("traceback", "")))
    if data.get("no_backend"):
        raise pyproject_hooks.BackendUnavailable(
            str(data.get("traceback", "")), message=str(data.get("backend_error", ""))
        )
    if data.get("hook_missing"):
        raise pyproject_hooks.HookMissing(str(data.get("missing_hook_name") or hook))
    for item in data.get("warnings") or []:  # type: ignore[attr-defined]
        warnings.warn_explicit(
            message=item["message"],
            category=pyproject_hooks.BuildBackendWarning,
            filename=item["filename"],
            lineno=item["lineno"],
        )
    return data.get("return_val")
