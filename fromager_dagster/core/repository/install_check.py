"""The collection's install check: its wheels installed together from the local repository,
every top-level module imported.

One environment holds the newest version of every package (a second one the next-newest
versions, where a build tool is there in two versions, and so on), installed with
``--only-binary :all:`` from the local wheel server and nothing else. Only when that
install fails is each wheel installed on its own, to name the ones at fault with the
installer's reason. Imports run in one interpreter per environment (in a network namespace
when builds are isolated), module by module, so one broken module names its own wheel.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.build.confined import hook_environ, python_prefix
from fromager_dagster.core.build.environment import BuildEnv, BuildEnvFactory, temporary_session
from fromager_dagster.core.build.sandbox import Sandbox, as_sandbox
from fromager_dagster.core.build.wheels import wheel_top_level_modules
from fromager_dagster.core.errors import FromagerDagsterError
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.repository.built import find_wheel

IMPORT_TIMEOUT = 600.0

# Runs in the checked environment: import each module named on the command line, one JSON
# line per module, so that a failure names its module and the rest are still tried.
_IMPORTER = """
import importlib, json, sys, warnings
warnings.simplefilter("ignore")
for name in sys.argv[1:]:
    try:
        importlib.import_module(name)
        out = {"module": name, "ok": True}
    except BaseException as exc:
        out = {"module": name, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    sys.__stdout__.write("@@import " + json.dumps(out) + "\\n")
    sys.__stdout__.flush()
"""


@dataclass(frozen=True)
class InstallResult:
    """One wheel's verdict: installed with its dependencies, and its modules imported."""

    name: str
    version: str
    passed: bool
    detail: str  # why not (one line), or what was imported
    wheel: str = ""
    modules: tuple[str, ...] = ()

    @property
    def key(self) -> str:
        return package_key(self.name, self.version)


def check_installs(
    layout: OutputLayout,
    pins: Iterable[tuple[str, str]],
    *,
    isolate: bool | Sandbox,
    log: Path,
    constraints: Path | None = None,
) -> list[InstallResult]:
    """Install the wheels of ``pins`` (name, version) together and import their modules.

    ``constraints`` (the collection's constraints.txt) pins the rest of what they need. Every
    result's ``detail`` is one line; the installer's and the interpreter's output go to
    ``log``.
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("", encoding="utf-8")
    results: dict[str, InstallResult] = {}
    wheels: dict[tuple[str, str], Path] = {}
    for name, version in dict.fromkeys((canonicalize_name(n), v) for n, v in pins):
        wheel = find_wheel(layout, name, version)
        if wheel is None:
            key = package_key(name, version)
            results[key] = InstallResult(
                name, version, False, f"no wheel of {key} in the local repository"
            )
        else:
            wheels[(name, version)] = wheel
    layout.work_dir.mkdir(parents=True, exist_ok=True)
    with (
        LocalIndexServer(layout.wheel_roots) as server,
        tempfile.TemporaryDirectory(prefix="install-check-", dir=layout.work_dir) as tmp,
        temporary_session(layout.work_dir / "uv-cache") as cache,
    ):
        os.chmod(tmp, 0o755)  # noqa: S103  the sandbox's unprivileged user imports from it
        envs = BuildEnvFactory(server.url, cache_dir=cache)
        layers = _layers(wheels)
        # each layer's environment and imports side by side; each its own log, appended after
        logs = [log.with_name(f"{log.name}.{number}") for number in range(len(layers))]
        with ThreadPoolExecutor(max_workers=max(1, min(len(layers), 4))) as pool:
            futures = [
                pool.submit(
                    _check_layer,
                    envs,
                    Path(tmp) / f"env-{number}",
                    layer,
                    wheels,
                    constraints,
                    isolate,
                    logs[number],
                )
                for number, layer in enumerate(layers)
            ]
            checked = [r for future in futures for r in future.result()]
        results.update((r.key, r) for r in checked)
        with log.open("a", encoding="utf-8") as out:
            for part in logs:
                if part.exists():
                    out.write(part.read_text(encoding="utf-8", errors="replace"))
                    part.unlink()
    return sorted(results.values(), key=lambda r: (r.name, Version(r.version)))


def _layers(wheels: dict[tuple[str, str], Path]) -> list[list[tuple[str, str]]]:
    """The newest version of every package, then the next-newest ones, and so on."""
    by_name: dict[str, list[str]] = {}
    for name, version in wheels:
        by_name.setdefault(name, []).append(version)
    layers: list[list[tuple[str, str]]] = []
    for name, versions in sorted(by_name.items()):
        for depth, version in enumerate(sorted(versions, key=Version, reverse=True)):
            if depth == len(layers):
                layers.append([])
            layers[depth].append((name, version))
    return layers


def _check_layer(
    envs: BuildEnvFactory,
    env_dir: Path,
    layer: Sequence[tuple[str, str]],
    wheels: dict[tuple[str, str], Path],
    constraints: Path | None,
    isolate: bool | Sandbox,
    log: Path,
) -> list[InstallResult]:
    own = dict(layer)
    constraint_file = _constraints_for(constraints, own, env_dir.with_suffix(".constraints.txt"))
    specs = [package_key(name, version) for name, version in layer]
    failed: dict[tuple[str, str], str] = {}
    env = envs.create(env_dir, log=log)
    reason = _install(envs, env, specs, constraint_file, log)
    if reason is not None:
        # blame: each wheel on its own, in a fresh environment
        shutil.rmtree(env_dir, ignore_errors=True)
        for pin in layer:
            alone = envs.create(env_dir.with_name(env_dir.name + "-alone"), log=log)
            why = _install(envs, alone, [package_key(*pin)], constraint_file, log)
            if why is not None:
                failed[pin] = f"does not install: {why}"
        if not failed:  # each installs alone; together they conflict
            failed = dict.fromkeys(layer, f"does not install with the rest: {reason}")
        env = envs.create(env_dir, log=log)
        installable = [package_key(*pin) for pin in layer if pin not in failed]
        if installable and _install(envs, env, installable, constraint_file, log) is not None:
            failed.update(dict.fromkeys(layer, f"does not install with the rest: {reason}"))
    modules = {
        pin: tuple(wheel_top_level_modules(wheels[pin])) for pin in layer if pin not in failed
    }
    imported = _import(env, [m for ms in modules.values() for m in ms], isolate, log)
    results = []
    for pin in layer:
        name, version = pin
        wheel = wheels[pin].name
        if pin in failed:
            results.append(InstallResult(name, version, False, failed[pin], wheel))
            continue
        errors = [f"import {m} failed: {imported[m]}" for m in modules[pin] if imported[m]]
        detail = "; ".join(errors) if errors else f"imported {', '.join(modules[pin]) or '(none)'}"
        results.append(InstallResult(name, version, not errors, detail, wheel, modules[pin]))
    return results


def _constraints_for(constraints: Path | None, own: dict[str, str], dest: Path) -> Path | None:
    """The collection's constraints without lines about the layer's own packages, whose
    versions the layer pins itself (an older build tool's, say)."""
    if constraints is None or not constraints.is_file():
        return None
    kept = []
    for line in constraints.read_text(encoding="utf-8").splitlines():
        name = line.split("==", 1)[0].strip()
        if line.strip() and not line.startswith("#") and canonicalize_name(name) not in own:
            kept.append(line)
    dest.write_text("\n".join(kept) + "\n", encoding="utf-8")
    return dest


def _install(
    envs: BuildEnvFactory,
    env: BuildEnv,
    specs: Sequence[str],
    constraints: Path | None,
    log: Path,
) -> str | None:
    """Install ``specs``; None, or the installer's reason in one line."""
    start = log.stat().st_size if log.exists() else 0
    extra = ["--constraint", str(constraints)] if constraints is not None else []
    try:
        envs.install(env, [*extra, *specs], log=log)
    except FromagerDagsterError:
        with log.open("rb") as out:
            out.seek(start)
            return installer_reason(out.read().decode("utf-8", errors="replace"))
    return None


def installer_reason(output: str) -> str:
    """uv's explanation of a failed install, as one line: the causes it gives, else its
    error line, else its last lines."""
    lines = [line.strip(" │╰─▶×\t") for line in output.splitlines()]
    lines = [line for line in lines if line and not line.startswith(("$ uv", "Using ", "hint"))]
    first = next((i for i, line in enumerate(lines) if line.startswith("error")), None)
    if first is None:
        first = next((i for i, line in enumerate(lines) if line.startswith("Because")), None)
    picked = lines[first:] if first is not None else lines[-3:]
    cleaned = [line.removeprefix("error:").removeprefix("cause:").strip() for line in picked]
    causes = [i for i, line in enumerate(cleaned) if line.startswith("Because")]
    text = " ".join(cleaned[causes[0] :] if causes else cleaned)
    text = text or "the installer gave no reason"
    return text if len(text) <= 600 else text[:597] + "..."


def _import(
    env: BuildEnv, modules: Sequence[str], isolate: bool | Sandbox, log: Path
) -> dict[str, str]:
    """Import ``modules`` in ``env``: module -> "" when it imported, else the error."""
    if not modules:
        return {}
    argv = [str(env.python), "-c", _IMPORTER, *modules]
    sandbox = as_sandbox(isolate)
    prefix = python_prefix(env.path)
    readable = [env.path, *([prefix] if prefix is not None else [])]
    argv = sandbox.command(argv, cwd=env.path, readable=readable)
    environ = hook_environ({"VIRTUAL_ENV": str(env.path)}, home=Path(tempfile.gettempdir()))
    environ["PATH"] = f"{env.path / 'bin'}{os.pathsep}{environ['PATH']}"
    try:
        proc = subprocess.run(
            argv,
            env=environ,
            capture_output=True,
            text=True,
            timeout=IMPORT_TIMEOUT,
            check=False,
            cwd=env.path,
        )
        output, stderr = proc.stdout, proc.stderr
        gone = f"the interpreter exited with status {proc.returncode}"
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout.decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        stderr, gone = "", f"the imports took longer than {IMPORT_TIMEOUT:.0f} s"
    with log.open("a", encoding="utf-8") as out:
        out.write(f"$ import {' '.join(modules)}\n{output}{stderr}")
    found: dict[str, str] = {}
    for line in output.splitlines():
        if line.startswith("@@import "):
            item = json.loads(line.removeprefix("@@import "))
            found[item["module"]] = "" if item["ok"] else str(item["error"]).splitlines()[0]
    return {m: found.get(m, f"not reached: {gone}") for m in modules}
