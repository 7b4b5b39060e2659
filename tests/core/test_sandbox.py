"""The sandbox: its choice, its environment, its limits, and what a bubblewrap call can touch."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fromager_dagster.core.build import sandbox as sb
from fromager_dagster.core.build.build_system import read_build_system
from fromager_dagster.core.build.bwrap import bwrap_problem
from fromager_dagster.core.build.confined import HookLimits, hook_environ, run_confined
from fromager_dagster.core.build.environment import BuildEnv
from fromager_dagster.core.build.hooks import HookCaller
from fromager_dagster.core.build.isolation import isolation_problem
from fromager_dagster.core.build.sandbox import Sandbox, resolve_sandbox
from fromager_dagster.core.errors import BuildError, SandboxError
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.schema import SettingsError

needs_bwrap = pytest.mark.skipif(bwrap_problem() is not None, reason="no bubblewrap")


def test_environment_is_an_allowlist(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GITHUB_TOKEN", "secret")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/run/agent")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    environ = hook_environ({"MY_SETTING": "1"}, home=tmp_path)
    assert "GITHUB_TOKEN" not in environ and "SSH_AUTH_SOCK" not in environ
    assert environ["LC_ALL"] == "C.UTF-8" and environ["MY_SETTING"] == "1"
    assert environ["HOME"] == str(tmp_path) and environ["PIP_NO_INDEX"] == "1"


def test_asking_for_an_unknown_or_impossible_sandbox_is_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SandboxError, match="not one of bwrap, unshare, none"):
        resolve_sandbox("docker")
    monkeypatch.setattr(sb, "bwrap_problem", lambda: "the 'bwrap' command is not installed")
    with pytest.raises(SandboxError) as caught:
        resolve_sandbox("bwrap")
    message = str(caught.value)
    assert "\n" not in message and "apt-get install -y bubblewrap" in message
    assert "--sandbox unshare" in message


def test_without_bubblewrap_the_default_falls_back_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sb, "bwrap_problem", lambda: "the 'bwrap' command is not installed")
    monkeypatch.setattr(sb, "isolation_problem", lambda: None)
    sb._best.cache_clear()
    try:
        chosen = resolve_sandbox(None)
    finally:
        sb._best.cache_clear()
    assert chosen.kind == "unshare"
    assert "only lose the network" in chosen.note and "\n" not in chosen.note
    assert resolve_sandbox(None, network_isolation=False) == Sandbox("none")


def test_cli_warns_in_one_line_when_falling_back(tmp_path: Path) -> None:
    """A PATH without bwrap: the command says what is not covered, once, and goes on."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for tool in ("unshare", "ip", "sh"):
        found = subprocess.run(
            ["sh", "-c", f"command -v {tool}"], capture_output=True, text=True, check=False
        )
        if found.stdout.strip():
            (bindir / tool).symlink_to(found.stdout.strip())
    code = (
        "import fromager_dagster.core.build.sandbox as s; c = s.resolve_sandbox(None); "
        "print(c.kind); print(c.note)"
    )
    env = {**os.environ, "PATH": str(bindir)}
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    )
    kind, note = proc.stdout.splitlines()[:2]
    assert kind == ("unshare" if isolation_problem() is None else "none"), note
    assert "bubblewrap" in note and "docs/security.md" in note
    forced = subprocess.run(
        [sys.executable, "-m", "fromager_dagster.cli.main", "build-sequence", "x.json",
         "--sandbox", "bwrap", "-O", str(tmp_path / "o")],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip
    errors = [line for line in forced.stderr.splitlines() if line.startswith("error:")]
    assert forced.returncode == 1 and len(errors) == 1, forced.stderr
    assert "bubblewrap cannot run here" in errors[0]


def test_sandbox_settings_are_read_and_checked(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("sandbox:\n  hook_timeout: 60\n  max_log_mb: 5\n")
    folder = tmp_path / "settings"
    folder.mkdir()
    (folder / "fx_a.yaml").write_text(
        "sandbox:\n  hook_timeout: 7\n  timeout_is_transient: true\n"
        "  wheel_top_level: [extra.pth]\n"
    )
    settings = load_settings(settings_file=tmp_path / "settings.yaml", settings_dir=folder)
    assert settings.hook_limits("fx-a") == HookLimits(7, 5 * 1024 * 1024, True)
    assert settings.hook_limits("fx-b") == HookLimits(60, 5 * 1024 * 1024, False)
    assert settings.package("fx-a").sandbox.wheel_top_level == ("extra.pth",)
    (folder / "fx_b.yaml").write_text("sandbox:\n  hook_timeout: -1\n  wheel_top_level: [a/b]\n")
    with pytest.raises(SettingsError) as caught:
        load_settings(settings_dir=folder)
    assert "sandbox.hook_timeout" in str(caught.value)
    assert "sandbox.wheel_top_level" in str(caught.value)


@pytest.mark.parametrize("kind", ["none", "unshare", "bwrap"])
def test_a_process_past_its_time_limit_is_killed_with_its_tree(tmp_path: Path, kind: str) -> None:
    if kind == "bwrap" and bwrap_problem() is not None:
        pytest.skip("no bubblewrap")
    if kind == "unshare" and isolation_problem() is not None:
        pytest.skip("no unshare")
    marker = f"{86000 + os.getpid() % 1000}.{int(time.time() * 1000) % 10**6:06d}"
    script = f"sleep {marker} & setsid sleep {marker} & sleep 1000"
    sandbox = Sandbox(kind)  # type: ignore[arg-type]
    sandbox.prepare([tmp_path])
    argv = sandbox.command(["/bin/sh", "-c", script], cwd=tmp_path, writable=[tmp_path])
    start = time.monotonic()
    finished = run_confined(
        argv,
        cwd=tmp_path,
        env=hook_environ({}, home=tmp_path),
        log=tmp_path / "log",
        limits=HookLimits(timeout=1),
    )
    assert finished.exceeded == "time" and time.monotonic() - start < 10
    time.sleep(0.3)
    left = [p for p in Path("/proc").iterdir() if p.name.isdigit() and _has(p, marker)]
    for pid in left:
        os.kill(int(pid.name), 9)
    if kind == "none":
        assert len(left) <= 1  # the setsid'd one escapes without a sandbox (docs/security.md)
    else:
        assert left == []


def _has(proc: Path, marker: str) -> bool:
    try:
        return marker.encode() in (proc / "cmdline").read_bytes()
    except OSError:
        return False


def test_a_process_past_its_log_limit_is_killed(tmp_path: Path) -> None:
    argv = ["/bin/sh", "-c", "yes log-line-of-a-chatty-build"]
    finished = run_confined(
        argv,
        cwd=tmp_path,
        env=hook_environ({}, home=tmp_path),
        log=tmp_path / "log",
        limits=HookLimits(max_log_bytes=1024 * 1024),
    )
    assert finished.exceeded == "log"
    log = (tmp_path / "log").read_bytes()
    assert len(log) < 1024 * 1024 + 200 and log.endswith(b"the process was killed]\n")


@needs_bwrap
def test_bwrap_call_writes_only_its_own_folders(tmp_path: Path) -> None:
    own, other = tmp_path / "own", tmp_path / "other"
    own.mkdir()
    other.mkdir()
    sandbox = Sandbox("bwrap")
    sandbox.prepare([own])
    script = (
        "touch own/ok; touch other/bad; touch /etc/bad; touch /tmp/private;"
        " ls /root /home | wc -l; id -u; cat /proc/1/cmdline | tr '\\0' ' '"
    )
    argv = sandbox.command(
        ["/bin/sh", "-c", script.replace("own/", f"{own}/").replace("other/", f"{other}/")],
        cwd=own,
        writable=[own],
    )
    finished = run_confined(
        argv, cwd=own, env=hook_environ({}, home=own), log=tmp_path / "log", limits=HookLimits()
    )
    log = (tmp_path / "log").read_text()
    assert (own / "ok").exists() and not (other / "bad").exists(), log
    assert not Path("/etc/bad").exists()
    assert finished.returncode in (0, 1)
    if os.geteuid() == 0:
        assert "65534" in log.split()


@needs_bwrap
def test_unreachable_output_folder_is_a_clear_error(tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.skip("only root runs hooks as another user")
    locked = Path("/var/lib") / f"fromager-dagster-test-{os.getpid()}"
    (locked / "out").mkdir(parents=True)
    try:
        locked.chmod(0o700)
        with pytest.raises(SandboxError, match=r"cannot reach .*chmod o\+x"):
            Sandbox("bwrap").command(["true"], cwd=locked / "out", writable=[locked / "out"])
    finally:
        (locked / "out").rmdir()
        locked.rmdir()


def test_hook_killed_at_its_limit_is_a_build_error(tmp_path: Path) -> None:
    """Through HookCaller: the hook is named, the limit and the setting too; transient only
    when the settings say so."""
    tree = tmp_path / "src"
    (tree / "_backend").mkdir(parents=True)
    (tree / "pyproject.toml").write_text(
        '[build-system]\nrequires = []\nbuild-backend = "slow"\nbackend-path = ["_backend"]\n'
    )
    (tree / "_backend" / "slow.py").write_text(
        "import time\ndef get_requires_for_build_wheel(config_settings=None):\n"
        "    time.sleep(1000)\n"
    )
    env = BuildEnv(Path(sys.prefix))
    for transient in (False, True):
        hooks = HookCaller(
            tree,
            read_build_system(tree),
            env,
            log=tmp_path / "log",
            isolate=False,
            package="fx-slow",
            version="1.0",
            limits=HookLimits(timeout=1, timeout_is_transient=transient),
        )
        with pytest.raises(BuildError) as caught:
            hooks.requires_for_wheel()
        assert "time limit of 1 s" in str(caught.value)
        assert "sandbox.hook_timeout" in str(caught.value)
        assert caught.value.transient is transient
