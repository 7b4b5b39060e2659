"""PEP 517 hooks through pyproject-hooks, in the sandbox: the get_requires hooks, metadata and
builds (:mod:`.build_system` reads which backend)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pyproject_hooks
from packaging.requirements import Requirement

from fromager_dagster.core.build.build_system import BuildSystem
from fromager_dagster.core.build.confined import (
    HookLimits,
    describe,
    hook_environ,
    python_prefix,
    run_confined,
)
from fromager_dagster.core.build.environment import BuildEnv
from fromager_dagster.core.build.sandbox import Sandbox, as_sandbox
from fromager_dagster.core.build.wheel_check import WheelRejectedError, check_wheel, tree_names
from fromager_dagster.core.errors import BuildError
from fromager_dagster.core.resolve.requirements import marker_holds, parse_requirement


class HookCaller:
    """Calls one source tree's PEP 517 hooks in its build environment, logging every output.

    Every call runs in ``isolate``'s sandbox (:mod:`.build.sandbox`; True: the best available,
    False: none) with only the source tree (``tree``: the unpacked tree ``source_dir`` is in),
    the hook's output folder and its own scratch folder writable, an allowlisted environment
    (the settings' ``env`` and ``extra_environ`` on top) and the package's ``limits``. The
    wheel ``build_wheel`` returns is checked (:func:`.build.wheel_check.check_wheel`) against the
    package's name, version and own tree (as it was before any hook ran), ``wheel_top_level``
    allowing more.
    """

    def __init__(
        self,
        source_dir: Path,
        build_system: BuildSystem,
        env: BuildEnv,
        *,
        log: Path,
        isolate: bool | Sandbox,
        extra_environ: Mapping[str, str] | None = None,
        package: str | None = None,
        version: str | None = None,
        config_settings: Mapping[str, str | Sequence[str]] | None = None,
        tree: Path | None = None,
        limits: HookLimits | None = None,
        wheel_top_level: Sequence[str] = (),
    ) -> None:
        self.source_dir = source_dir
        self.tree = tree if tree is not None and source_dir.is_relative_to(tree) else source_dir
        self.config_settings = dict(config_settings or {})
        self.env = env
        self.log = log
        self.sandbox = as_sandbox(isolate)
        self.isolate = bool(self.sandbox)
        self.package = package
        self.version = version
        self.limits = limits or HookLimits()
        self.wheel_top_level = tuple(wheel_top_level)
        self._own_names = tree_names(self.tree)
        self._extra = dict(extra_environ or {})
        self._kept: dict[str, object] = {}  # what prefetch() kept, by hook
        self._caller = pyproject_hooks.BuildBackendHookCaller(
            str(source_dir),
            build_system.backend,
            backend_path=list(build_system.backend_path) if build_system.backend_path else None,
            python_executable=str(env.python),
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

    def _environ(self, home: Path) -> dict[str, str]:
        """The hook's environment: the allowlist, the build environment, the settings'."""
        environ = hook_environ(self._with_prefix_map(dict(self._extra)), home=home)
        environ["VIRTUAL_ENV"] = str(self.env.path)
        environ["PATH"] = f"{self.env.path / 'bin'}{os.pathsep}{environ['PATH']}"
        environ.update(self._backend_environ())
        return environ

    def _invoke(
        self, calls: Sequence[tuple[str, dict[str, object]]], outputs: Sequence[Path] = ()
    ) -> tuple[int, list[dict[str, object] | None], str | None]:
        """Run ``calls`` (hook, keyword arguments) one after another in one interpreter in
        the sandbox, ``outputs`` writable; the exit status, each hook's output.json (None
        when it did not finish) and the limit it was killed at, if any."""
        with (
            tempfile.TemporaryDirectory(prefix="fromager-dagster-hooks-") as scratch,
            _in_process_script() as script,
        ):
            control = Path(scratch)
            home = control / "home"
            home.mkdir()
            argv = [str(self.env.python), "-c", _BATCH, str(script)]
            for number, (hook, kwargs) in enumerate(calls):
                folder = control / str(number)
                folder.mkdir()
                (folder / "input.json").write_text(json.dumps({"kwargs": kwargs}))
                argv += [hook, str(folder)]
            writable = [self.tree, control, *outputs]
            readable = [self.env.path, Path(script).parent]
            prefix = python_prefix(self.env.path)
            if prefix is not None:
                readable.append(prefix)
            self.sandbox.prepare(writable)
            finished = run_confined(
                self.sandbox.command(
                    argv, cwd=self.source_dir, writable=writable, readable=readable
                ),
                cwd=self.source_dir,
                env=self._environ(home),
                log=self.log,
                limits=self.limits,
                calls=len(calls),
            )
            results: list[dict[str, object] | None] = []
            for number in range(len(calls)):
                output = control / str(number) / "output.json"
                results.append(
                    json.loads(output.read_text(encoding="utf-8")) if output.is_file() else None
                )
        return finished.returncode, results, finished.exceeded

    def _failure(self, hook: str, status: int, exceeded: str | None, calls: int) -> BuildError:
        """The error of a hook that wrote no result: its status, or the limit it passed."""
        if exceeded is not None:
            return self._error(
                hook,
                f"PEP 517 hook {hook} {describe(self.limits, exceeded, calls)}",
                transient=exceeded == "time" and self.limits.timeout_is_transient,
            )
        return self._error(hook, f"PEP 517 hook {hook} exited with status {status}", status)

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
        outputs: list[Path] = []
        for hook in hooks:
            kwargs: dict[str, object] = {"config_settings": dict(self.config_settings) or None}
            if hook == "prepare_metadata_for_build_wheel":
                assert metadata_dir is not None
                shutil.rmtree(metadata_dir, ignore_errors=True)
                metadata_dir.mkdir(parents=True)
                outputs.append(metadata_dir)
                kwargs |= {"metadata_directory": str(metadata_dir), "_allow_fallback": False}
            calls.append((hook, kwargs))
        if not calls:
            return
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- PEP 517 hooks {', '.join(hooks)} (one interpreter) ---\n")
        status, results, exceeded = self._invoke(calls, outputs)
        for (hook, _), data in zip(calls, results, strict=True):
            if data is None:
                self._kept[hook] = self._failure(hook, status, exceeded, len(calls))
                break
            self._keep(hook, data)

    def _keep(self, hook: str, data: dict[str, object]) -> None:
        """Keep a prefetched hook's result, or its error; not a missing metadata hook (its
        call then falls back to a build, as pyproject-hooks does)."""
        try:
            self._kept[hook] = self._translated(
                hook, functools.partial(_hook_output, data, hook, self.log)
            )
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

    def _call(self, hook: str, kwargs: dict[str, object], outputs: Sequence[Path] = ()) -> object:
        """Call ``hook`` (or take what :meth:`prefetch` kept for it)."""
        if hook in self._kept:
            kept = self._kept.pop(hook)
            if isinstance(kept, BuildError):
                raise kept
            return kept
        with self.log.open("a", encoding="utf-8") as out:
            out.write(f"--- PEP 517 hook {hook} ---\n")
        kwargs = {**kwargs, "config_settings": dict(self.config_settings) or None}
        status, (data,), exceeded = self._invoke([(hook, kwargs)], outputs)
        if data is None:
            raise self._failure(hook, status, exceeded, 1)
        return self._translated(hook, functools.partial(_hook_output, data, hook, self.log))

    def _translated(self, hook: str, call: Callable[[], object]) -> object:
        """``call()``; translate pyproject_hooks' errors to BuildError here."""
        try:
            return call()
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

    def _error(
        self,
        hook: str,
        message: str,
        exit_code: int | None = None,
        *,
        transient: bool | None = None,
    ) -> BuildError:
        return BuildError(
            message,
            exit_code=exit_code,
            package=self.package,
            version=self.version,
            log_path=str(self.log),
            step=hook,
            transient=transient,
        )

    def _requirements(self, hook: str) -> list[Requirement]:
        raw = self._call(hook, {})
        assert isinstance(raw, list)
        reqs = [parse_requirement(str(r), source=f"{self.package} {hook}") for r in raw]
        return [r for r in reqs if marker_holds(r)]

    def requires_for_wheel(self) -> list[Requirement]:
        return self._requirements("get_requires_for_build_wheel")

    def requires_for_sdist(self) -> list[Requirement]:
        return self._requirements("get_requires_for_build_sdist")

    def build_wheel(self, out_dir: Path) -> Path:
        """The backend's wheel, built into ``out_dir`` (emptied first: the backend writes
        into a folder of its own) and checked before anything takes it."""
        shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True)
        kwargs: dict[str, object] = {
            "wheel_directory": str(out_dir.resolve()),
            "metadata_directory": None,
        }
        name = str(self._call("build_wheel", kwargs, [out_dir]))
        wheel = out_dir / name
        if "/" in name or name in {"", ".", ".."} or not wheel.is_file():
            raise self._error("build_wheel", f"build_wheel returned {name!r}, not a wheel it wrote")
        if self.package is not None and self.version is not None:
            try:
                check_wheel(
                    wheel,
                    name=self.package,
                    version=self.version,
                    own_names=self._own_names,
                    allowed=self.wheel_top_level,
                )
            except WheelRejectedError as exc:
                exc.log_path = str(self.log)
                raise
        return wheel

    def prepare_metadata(self, out_dir: Path) -> Path:
        """The ``.dist-info`` folder (``prepare_metadata_for_build_wheel`` or a full build);
        the one :meth:`prefetch` wrote into ``out_dir``, if it kept it."""
        if "prepare_metadata_for_build_wheel" not in self._kept:
            shutil.rmtree(out_dir, ignore_errors=True)
        out_dir.mkdir(parents=True, exist_ok=True)
        kwargs: dict[str, object] = {
            "metadata_directory": str(out_dir.resolve()),
            "_allow_fallback": True,
        }
        name = self._call("prepare_metadata_for_build_wheel", kwargs, [out_dir])
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


def _hook_output(data: Mapping[str, object], hook: str, log: Path) -> object:
    """A hook's output.json as pyproject-hooks reads it: its return value, or its error.

    The warnings the backend raised go to the build's ``log``, formatted as Python shows them
    (written here: no process-wide warning hook, and each build's go to its own log)."""
    if data.get("unsupported"):
        raise pyproject_hooks.UnsupportedOperation(str(data.get("traceback", "")))
    if data.get("no_backend"):
        raise pyproject_hooks.BackendUnavailable(
            str(data.get("traceback", "")), message=str(data.get("backend_error", ""))
        )
    if data.get("hook_missing"):
        raise pyproject_hooks.HookMissing(str(data.get("missing_hook_name") or hook))
    for item in data.get("warnings") or []:  # type: ignore[attr-defined]
        with log.open("a", encoding="utf-8") as out:
            out.write(
                warnings.formatwarning(
                    item["message"],
                    pyproject_hooks.BuildBackendWarning,
                    item["filename"],
                    item["lineno"],
                )
            )
    return data.get("return_val")
