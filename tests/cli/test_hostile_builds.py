"""Hostile build backends against the sandbox (issue 10): every attempt, through Dagster and
with ``--no-dagster``, must fail.

One ``bootstrap`` per path builds fx-good and one hostile package per attack (each builds with
fx-good, so its wheel and folders exist when the attacks run). Whether an attack succeeded is
decided on the host, after the command: a listener that accepted, a file that exists, a
token found anywhere under the output folder (logs, wheels, the Dagster instance), a process
still alive, a wheel that entered the repository. Where the evidence is missing (no log line
for an attack that reports through its log), the attempt counts as a success.

The two runs are shared by every test of this module (and across xdist workers, through a
lock and a results file), so each attempt is its own test.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import sysconfig
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from fromager_dagster.core.build.bwrap import bwrap_problem
from fromager_dagster.core.index.server import LocalIndexServer
from tests.fixtures.hostile import hostile_package, make_hostile_sdist
from tests.fixtures.packages import FixturePackage, make_sdist

pytestmark = pytest.mark.skipif(
    bwrap_problem() is not None, reason=f"bubblewrap unavailable: {bwrap_problem()}"
)

MODES = ("dagster", "no-dagster")
SECRETS = ("GITHUB_TOKEN", "AWS_SECRET_ACCESS_KEY", "TWINE_PASSWORD", "NETRC", "SSH_AUTH_SOCK")
ATTEMPTS = (
    "tcp-outside-address",
    "tcp-host-loopback",
    "host-unix-socket",
    *(f"read-env-{name}" for name in SECRETS),
    "read-netrc",
    "write-wheels-repo",
    "write-other-package-dirs",
    "write-tool-environment",
    "write-dagster-instance",
    "daemon-outlives-build",
    "hang-forever",
    "hooks-run-as-root",
    "wheel-with-pth",
    "wheel-file-outside-tree",
    "wheel-named-for-other-package",
    "wheel-with-other-version",
)
REFUSED = ("fx-atk-hang", "fx-atk-pth", "fx-atk-outside", "fx-atk-other-name", "fx-atk-version")
HANG_LIMIT = 3


def _host_address() -> str | None:
    """This machine's address on a non-loopback interface (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.200", 9))
            address = str(probe.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


class _Listener:
    """A TCP or Unix socket server counting the connections it accepts."""

    def __init__(self, family: int, address: Any) -> None:
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.bind(address)
        self.sock.listen(16)
        self.accepted = 0
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            conn.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def _contains(root: Path, token: bytes) -> list[str]:
    """Files under ``root`` (and members of zip files) whose bytes contain ``token``."""
    found = []
    for path in root.rglob("*"):
        if not path.is_file() or path.is_symlink():
            continue
        try:
            data = path.read_bytes()
        except OSError:
            continue
        if token in data:
            found.append(str(path))
        if data[:2] == b"PK":
            with contextlib.suppress(zipfile.BadZipFile, OSError), zipfile.ZipFile(path) as zf:
                found += [f"{path}!{n}" for n in zf.namelist() if token in zf.read(n)]
    return found


def _sleepers(token: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            with contextlib.suppress(OSError):
                if token.encode() in (proc / "cmdline").read_bytes():
                    pids.append(int(proc.name))
    return pids


def _wheels(out: Path) -> dict[str, Path]:
    return {p.name: p for p in (out / "wheels-repo" / "downloads").glob("*.whl")}


def _members(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as zf:
        return zf.namelist()


def _log(out: Path, name: str) -> str:
    path = out / "work-dir" / "logs" / f"{name}-1.0.log"
    return path.read_text(encoding="utf-8", errors="replace") if path.is_file() else ""


def _campaign(base: Path, mode: str, *sandbox: str) -> dict[str, dict[str, Any]]:
    """Run one bootstrap of the hostile packages (``sandbox``: more options); the outcome of
    every attempt."""
    out, home = base / "out", base / "home"
    home.mkdir(parents=True)
    tokens = {name: f"tok-{name.lower()}-{secrets.token_hex(8)}" for name in SECRETS}
    netrc_token = f"tok-netrc-{secrets.token_hex(8)}"
    (home / ".netrc").write_text(f"machine index login me password {netrc_token}\n")
    (home / ".netrc").chmod(0o600)
    agent_dir = base / "agent"
    agent_dir.mkdir(mode=0o700)
    agent = agent_dir / "agent.sock"
    tokens["NETRC"], tokens["SSH_AUTH_SOCK"] = str(home / ".netrc"), str(agent)
    purelib = Path(sysconfig.get_paths()["purelib"])
    tool_pth = purelib / f"fromager_dagster_attack_{secrets.token_hex(6)}.pth"
    sleep_token = f"86399.{secrets.randbelow(10**6):06d}"
    host = _host_address()
    lo = _Listener(socket.AF_INET, ("127.0.0.1", 0))
    outside = _Listener(socket.AF_INET, ("0.0.0.0", 0))
    unix = _Listener(socket.AF_UNIX, str(agent))
    good_wheel = out / "wheels-repo" / "downloads" / "fx_good-1.0-0-py3-none-any.whl"
    attacks: dict[str, dict[str, Any]] = {
        "fx-atk-tcp-out": {
            "kind": "tcp",
            "host": host or "127.0.0.2",
            "port": outside.sock.getsockname()[1],
        },
        "fx-atk-tcp-lo": {"kind": "tcp", "host": "127.0.0.1", "port": lo.sock.getsockname()[1]},
        "fx-atk-unix": {"kind": "unix", "path": str(agent)},
        "fx-atk-env": {"kind": "env", "names": list(SECRETS)},
        "fx-atk-netrc": {"kind": "read", "paths": [str(home / ".netrc"), "/root/.netrc"]},
        "fx-atk-repo": {
            "kind": "write",
            "paths": [str(out / "wheels-repo" / "downloads" / "INJECTED.txt")],
            "zips": [str(good_wheel)],
        },
        "fx-atk-others": {
            "kind": "write",
            "paths": [
                str(out / "work-dir" / "fx_good-1.0" / "INJECTED.txt"),
                str(out / "work-dir" / "fx-good-1.0" / "INJECTED.txt"),
                str(out / "work-dir" / "INJECTED.txt"),
                str(out / "sdists-repo" / "INJECTED.txt"),
            ],
        },
        "fx-atk-toolenv": {"kind": "write", "paths": [str(tool_pth)]},
        "fx-atk-instance": {
            "kind": "write",
            "paths": [str(out / "dagster-home" / "INJECTED.txt")],
        },
        "fx-atk-daemon": {"kind": "daemon", "token": sleep_token},
        "fx-atk-hang": {"kind": "hang", "hooks": ["build_wheel"]},
        "fx-atk-uid": {"kind": "uid"},
        "fx-atk-pth": {"kind": "wheel-pth"},
        "fx-atk-outside": {"kind": "wheel-outside"},
        "fx-atk-other-name": {"kind": "wheel-other-name"},
        "fx-atk-version": {"kind": "wheel-other-version"},
    }
    up = base / "up"
    make_sdist(FixturePackage("fx-good"), up)
    for name, attack in attacks.items():
        make_hostile_sdist(hostile_package(name), up, attack)
    settings_dir = base / "settings"
    settings_dir.mkdir()
    (settings_dir / "fx_atk_hang.yaml").write_text(f"sandbox:\n  hook_timeout: {HANG_LIMIT}\n")
    (out / "dagster-home").mkdir(parents=True)  # --no-dagster: the folder an instance would use

    environ = {k: v for k, v in os.environ.items() if not k.startswith(("FROMAGER_DAGSTER_",))}
    environ.pop("DAGSTER_HOME", None)
    environ.update(tokens, HOME=str(home))
    args = [
        sys.executable, "-m", "fromager_dagster.cli.main", "bootstrap", "fx-good", *attacks,
        "-O", str(out), "--settings-dir", str(settings_dir), "-j", "2",
    ]  # fmt: skip
    if mode == "no-dagster":
        args.append("--no-dagster")
    args += sandbox
    timed_out = False
    try:
        with LocalIndexServer([up]) as server:
            proc = subprocess.Popen(
                [*args, "--index-url", server.url],
                env=environ,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            try:
                stdout, stderr = proc.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                timed_out = True
                os.killpg(proc.pid, signal.SIGKILL)
                stdout, stderr = proc.communicate()
        daemons = _sleepers(sleep_token)
        for pid in daemons:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        tool_written = tool_pth.exists()
    finally:
        tool_pth.unlink(missing_ok=True)
        for listener in (lo, outside, unix):
            listener.close()

    wheels = _wheels(out)
    results: dict[str, dict[str, Any]] = {}

    def record(attempt: str, success: bool, evidence: object) -> None:
        results[attempt] = {"success": bool(success), "evidence": str(evidence)[:2000]}

    if host is None:
        record("tcp-outside-address", False, "skip: no non-loopback address")
        results["tcp-outside-address"]["skip"] = True
    else:
        record("tcp-outside-address", outside.accepted, f"{outside.accepted} accepted on {host}")
    record("tcp-host-loopback", lo.accepted, f"{lo.accepted} accepted on 127.0.0.1")
    record("host-unix-socket", unix.accepted, f"{unix.accepted} accepted on {agent}")
    env_log = _log(out, "fx-atk-env")
    reports = re.findall(r"fx-attack \S+ env: env (\{.*?\}) all=", env_log)
    for name in SECRETS:
        # the two paths are also in the attacks' own configuration: the hook's report decides
        leaks = [] if name in ("NETRC", "SSH_AUTH_SOCK") else _contains(out, tokens[name].encode())
        seen = [json.loads(r).get(name) for r in reports]
        record(
            f"read-env-{name}",
            leaks or not reports or any(v is not None for v in seen),
            {"files holding the value": leaks, "hook saw": seen, "reports": len(reports)},
        )
    leaks = _contains(out, netrc_token.encode())
    record("read-netrc", leaks or "fx-attack" not in _log(out, "fx-atk-netrc"), leaks)
    injected = (out / "wheels-repo" / "downloads" / "INJECTED.txt").exists()
    good = wheels.get(good_wheel.name)
    good_members = _members(good) if good is not None else []
    record(
        "write-wheels-repo",
        injected or "injected.py" in good_members or good is None,
        {"INJECTED.txt": injected, "fx-good members": good_members},
    )
    written = [p for p in attacks["fx-atk-others"]["paths"] if Path(p).exists()]
    record("write-other-package-dirs", written, written)
    record("write-tool-environment", tool_written, str(tool_pth))
    instance = out / "dagster-home" / "INJECTED.txt"
    record("write-dagster-instance", instance.exists(), instance)
    daemon_log = _log(out, "fx-atk-daemon")
    record(
        "daemon-outlives-build",
        daemons or "daemon started" not in daemon_log,
        {"alive": daemons, "started": "daemon started" in daemon_log},
    )
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    hang_errors = [e for e in errors if "fx-atk-hang" in e and "time limit" in e]
    record("hang-forever", timed_out or not hang_errors, {"timed out": timed_out, "errors": errors})
    uids = re.findall(r"fx-attack \S+ uid: uid=(\d+)", _log(out, "fx-atk-uid"))
    record("hooks-run-as-root", not uids or "0" in uids, {"uids seen": uids})
    pth = [n for n, p in wheels.items() if any(m.endswith(".pth") for m in _members(p))]
    record("wheel-with-pth", pth, pth)
    record(
        "wheel-file-outside-tree",
        [n for n in wheels if n.startswith("fx_atk_outside-")],
        sorted(wheels),
    )
    record(
        "wheel-named-for-other-package",
        "fx_good/substituted.txt" in good_members,
        good_members,
    )
    record("wheel-with-other-version", [n for n in wheels if "-9.9-" in n], sorted(wheels))
    results["_run"] = {
        "success": False,
        "evidence": json.dumps(
            {
                "returncode": proc.returncode,
                "stderr": stderr[-6000:],
                "header": stderr.partition("\n")[0],  # the first line, whatever the length
                "stdout": stdout[-2000:],
                "wheels": sorted(wheels),
                "errors": errors,
            }
        ),
    }
    return results


@pytest.fixture(scope="module")
def campaigns(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both runs' outcomes, run once for every xdist worker (a lock and a results file)."""
    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "hostile-builds"
    shared.mkdir(exist_ok=True)
    results_file = shared / "results.json"
    with (shared / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if results_file.exists():
                results = json.loads(results_file.read_text())
            else:
                base = tmp_path_factory.mktemp("hostile")
                results = {mode: _campaign(base / mode, mode) for mode in MODES}
                results_file.write_text(json.dumps(results, indent=2))
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return results


def _run_detail(results: dict[str, Any], mode: str) -> str:
    return str(results[mode]["_run"]["evidence"])


@pytest.mark.parametrize("attempt", ATTEMPTS)
@pytest.mark.parametrize("mode", MODES)
def test_attempt_fails(campaigns: dict[str, Any], mode: str, attempt: str) -> None:
    outcome = campaigns[mode][attempt]
    if outcome.get("skip"):
        pytest.skip(outcome["evidence"])
    assert not outcome["success"], (
        f"{attempt} succeeded ({mode}): {outcome['evidence']}\n{_run_detail(campaigns, mode)}"
    )


@pytest.mark.parametrize("mode", MODES)
def test_run_reports_each_refusal_and_builds_the_rest(campaigns: dict[str, Any], mode: str) -> None:
    run = json.loads(campaigns[mode]["_run"]["evidence"])
    assert run["returncode"] == 1, run
    assert "hooks sandboxed (bwrap)" in run["header"], run["header"]
    failed = sorted(re.match(r"error: ([a-z-]+)==", e).group(1) for e in run["errors"])  # type: ignore[union-attr]
    assert failed == sorted(REFUSED), run["errors"]
    for line in run["errors"]:
        assert "Traceback" not in line and line.count("\n") == 0
    refusals = [e for e in run["errors"] if "wheel check" in e]
    assert len(refusals) == 4 and all("refused" in e for e in refusals), run["errors"]
    built = {n.split("-")[0] for n in run["wheels"]}
    expected = {"fx_good"} | {
        n.replace("-", "_") for n in ("fx-atk-tcp-out", "fx-atk-tcp-lo", "fx-atk-unix",
                                      "fx-atk-env", "fx-atk-netrc", "fx-atk-repo",
                                      "fx-atk-others", "fx-atk-toolenv", "fx-atk-instance",
                                      "fx-atk-daemon", "fx-atk-uid")
    }  # fmt: skip
    assert built == expected, run["wheels"]


def test_without_the_sandbox_the_attacks_succeed(tmp_path: Path) -> None:
    """The detectors work: with --sandbox none the attacks that only the sandbox stops do
    succeed (the environment allowlist, the limits and the wheel check still hold)."""
    results = _campaign(tmp_path / "none", "no-dagster", "--sandbox", "none")
    succeeded = {a for a in ATTEMPTS if results[a]["success"]}
    expected = {
        "tcp-host-loopback",
        "host-unix-socket",
        "read-netrc",
        "write-wheels-repo",
        "write-other-package-dirs",
        "write-tool-environment",
        "write-dagster-instance",
        "daemon-outlives-build",
        "hooks-run-as-root",
    }
    if not results["tcp-outside-address"].get("skip"):
        expected.add("tcp-outside-address")
    assert succeeded == expected, {a: results[a] for a in succeeded ^ expected}


def test_summary_no_attempt_succeeds(campaigns: dict[str, Any]) -> None:
    attempts = successes = 0
    lines = []
    for mode in MODES:
        for attempt in ATTEMPTS:
            outcome = campaigns[mode][attempt]
            if outcome.get("skip"):
                continue
            attempts += 1
            successes += bool(outcome["success"])
            if outcome["success"]:
                lines.append(f"  {mode}: {attempt}: {outcome['evidence']}")
    print(f"hostile build attempts: {attempts}, successes: {successes}")
    assert attempts >= 2 * (len(ATTEMPTS) - 1)
    assert successes == 0, "\n".join(lines)
