"""Faults and bad input through the command line, through Dagster and with --no-dagster:
credentials never stored, broken transfers retried, one writer per output folder, one clear
line for each bad input."""

from __future__ import annotations

import json
import os
import random
import shutil
import string
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from fromager_dagster.core.index.server import LocalIndexServer
from tests.fixtures.faults import FaultyProxy, first_n, flaky
from tests.fixtures.packages import FixturePackage, make_index

CHAIN = [
    FixturePackage("fx-tool"),
    FixturePackage("fx-dep"),
    FixturePackage("fx-lib", build_system_requires=("fx-tool",), install_requires=("fx-dep",)),
    FixturePackage("fx-app", build_system_requires=("fx-lib",)),
]
SECRET = "s3cret-Pa55"
PATHS = [pytest.param((), id="dagster"), pytest.param(("--no-dagster",), id="no-dagster")]


def cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FROMAGER_DAGSTER"))
    }
    environ.pop("PIP_INDEX_URL", None)
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fromager_dagster.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    """The command failed with exit code 1 and exactly one ``error:`` line, no traceback."""
    assert result.returncode == 1, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("up")
    make_index(CHAIN, folder)
    with LocalIndexServer([folder]) as server:
        yield server.url


def files_holding(root: Path, needle: str) -> list[str]:
    """Every file under ``root`` (SQLite databases and logs included) containing ``needle``."""
    return [
        str(path.relative_to(root))
        for path in root.rglob("*")
        if path.is_file() and not path.is_symlink() and needle.encode() in path.read_bytes()
    ]


# -- credentials ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_credentials_in_the_index_url_are_stored_nowhere(
    upstream: str, tmp_path: Path, path: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    with FaultyProxy(upstream, auth=("alice", SECRET)) as proxy:
        url = proxy.url.replace("http://", f"http://alice:{SECRET}@")
        args = ("bootstrap", "fx-app", "-O", str(out), "--no-network-isolation", "-j", "2")
        result = cli(*args, "--index-url", url, *path)
        assert result.returncode == 0, result.stderr
        assert proxy.authorizations and all(proxy.authorizations)  # every request logged in
        # a package the index lacks: the error line names the index without the secret
        missing = cli(*args, "--index-url", url, "fx-nothing", *path)
    assert SECRET not in result.stderr + result.stdout
    assert "alice:****@127.0.0.1" in result.stderr  # the header line, redacted
    assert len(list((out / "wheels-repo" / "downloads").glob("*.whl"))) == 4
    graph = (out / "work-dir" / "graph.json").read_text()
    assert f"{proxy.url.removesuffix('/simple/')}/files/fx_app-1.0.tar.gz" in graph
    line = one_error_line(missing)
    assert "fx-nothing" in line and SECRET not in missing.stderr + missing.stdout
    assert files_holding(out, SECRET) == []


def test_bootstrap_parallel_credentials_from_pip_index_url_are_stored_nowhere(
    upstream: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    with FaultyProxy(upstream, auth=("bob", SECRET)) as proxy:
        url = proxy.url.replace("http://", f"http://bob:{SECRET}@")
        result = cli(
            "bootstrap-parallel",
            "fx-app",
            "-O",
            str(out),
            "--no-network-isolation",
            "-m",
            "2",
            PIP_INDEX_URL=url,
            FROMAGER_DAGSTER_EXECUTOR="threads",
        )
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stderr + result.stdout
    assert len(list((out / "wheels-repo" / "downloads").glob("*.whl"))) == 4
    assert files_holding(out, SECRET) == []


# -- broken transfers ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_truncated_pages_and_downloads_are_retried(
    upstream: str, tmp_path: Path, path: tuple[str, ...]
) -> None:
    """Every index page and every sdist is cut short the first time it is asked for."""
    out = tmp_path / "out"
    with FaultyProxy(upstream, first_n(1, "truncate")) as proxy:
        result = cli(
            "bootstrap",
            "fx-app",
            "-O",
            str(out),
            "--no-network-isolation",
            "--index-url",
            proxy.url,
            *path,
            FROMAGER_DAGSTER_EXECUTOR="threads",
        )
    assert result.returncode == 0, result.stderr
    assert proxy.faults_seen("truncate") >= 8  # 4 pages, 4 sdists
    assert len(list((out / "wheels-repo" / "downloads").glob("*.whl"))) == 4
    assert not list(out.rglob("*.part"))


def test_a_flaky_index_does_not_fail_the_run(upstream: str, tmp_path: Path) -> None:
    """503s, resets and truncated bodies on 30% of requests: 5 runs of 5 complete."""
    done = injected = 0
    for seed in range(5):
        out = tmp_path / f"out{seed}"
        with FaultyProxy(upstream, flaky(0.3, seed)) as proxy:
            result = cli(
                "bootstrap",
                "fx-app",
                "-O",
                str(out),
                "--no-network-isolation",
                "--no-dagster",
                "--index-url",
                proxy.url,
                FROMAGER_DAGSTER_HTTP_RETRIES="4",
            )
        done += result.returncode == 0
        injected += sum(proxy.faults_seen(kind) for kind in ("503", "reset", "truncate"))
        assert result.returncode == 0, result.stderr
    assert done == 5
    assert injected >= 5


# -- one writer per output folder ---------------------------------------------------------------

_HOLD = """
import sys, time
from pathlib import Path
from fromager_dagster.core.output_lock import hold_output
with hold_output(Path(sys.argv[1]), "fromager-dagster bootstrap holder-command"):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def held(tmp_path: Path) -> Iterator[tuple[Path, subprocess.Popen[str]]]:
    """An output folder whose lock another process holds (stopped by its pid afterwards)."""
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD, str(out)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    try:
        yield out, holder
    finally:
        holder.kill()
        holder.wait()


def test_a_second_command_into_a_held_output_folder_refuses_at_once(
    held: tuple[Path, subprocess.Popen[str]], upstream: str, tmp_path: Path
) -> None:
    out, holder = held
    (tmp_path / "graph.json").write_text('{"": {"canonicalized_name": "", "version": "0"}}')
    (tmp_path / "order.json").write_text('[{"dist": "fx-tool", "version": "1.0"}]')
    commands = [
        ("bootstrap", "fx-app", "--index-url", upstream, "--no-dagster"),
        ("bootstrap", "fx-app", "--index-url", upstream),
        ("bootstrap-parallel", "fx-app", "--index-url", upstream),
        ("build-parallel", str(tmp_path / "graph.json")),
        ("build-sequence", str(tmp_path / "order.json"), "--index-url", upstream),
        ("build", "fx-tool", "1.0", upstream),
    ]
    for args in commands:
        result = cli(*args, "-O", str(out), "--no-network-isolation")
        line = one_error_line(result)
        assert f"output folder {out} is in use by another run" in line, (args, line)
        assert f"pid {holder.pid}: fromager-dagster bootstrap holder-command" in line, line
    assert sorted(p.name for p in out.iterdir()) == [".fromager-dagster.lock"]


def test_a_killed_holder_leaves_a_lock_the_next_run_takes_over(
    held: tuple[Path, subprocess.Popen[str]], upstream: str
) -> None:
    out, holder = held
    holder.kill()  # kill -9: no cleanup ran
    holder.wait()
    part = out / "sdists-repo" / "downloads" / ".fx_app-1.0.tar.gz.abc123.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"half a download")
    result = cli("bootstrap", "fx-app", "-O", str(out), "--index-url", upstream, "--no-dagster")
    assert result.returncode == 0, result.stderr
    assert not part.exists() and not list(out.rglob("*.part"))


@pytest.mark.parametrize("path", PATHS)
def test_two_concurrent_runs_into_one_folder(
    upstream: str, tmp_path: Path, path: tuple[str, ...]
) -> None:
    out = tmp_path / "out"
    args = ["bootstrap", "fx-app", "-O", str(out), "--index-url", upstream, *path]
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FROMAGER_DAGSTER"))
    }
    first = subprocess.Popen(
        [sys.executable, "-m", "fromager_dagster.cli.main", *args, "--no-network-isolation"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )
    try:
        lock = out / ".fromager-dagster.lock"
        for _ in range(600):
            if lock.is_file() and f"pid {first.pid}:" in lock.read_text():
                break
            assert first.poll() is None, first.communicate()
            time.sleep(0.05)
        second = cli(*args, "--no-network-isolation")
        line = one_error_line(second)
        assert f"in use by another run (pid {first.pid}: fromager-dagster bootstrap" in line
        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    again = cli(*args, "--no-network-isolation")  # released on exit
    assert again.returncode == 0, again.stderr


# -- bad input: one clear line ------------------------------------------------------------------


def _graph(nodes: dict[str, dict[str, object]], top: str) -> str:
    root = {
        "canonicalized_name": "",
        "version": "0",
        "edges": [{"key": top, "req_type": "toplevel", "req": top.split("==", maxsplit=1)[0]}],
    }
    return json.dumps({"": root, **nodes})


def _node(name: str, version: str, *build: str) -> dict[str, object]:
    return {
        "canonicalized_name": name,
        "version": version,
        "download_url": f"http://127.0.0.1:9/files/{name}-{version}.tar.gz",
        "edges": [{"key": k, "req_type": "build-system", "req": k.split("==")[0]} for k in build],
    }


BAD_INPUTS: list[tuple[str, list[str], str]] = []  # (label, args, expected in the one line)


def test_bad_inputs_give_one_clear_line(upstream: str, tmp_path: Path) -> None:
    """Each bad input: exit code 1, one ``error:`` line naming the file or value, no
    traceback, nothing written into the output folder."""
    (tmp_path / "a.txt").write_text("fx-app\n-r b.txt\n")
    (tmp_path / "b.txt").write_text("-r a.txt\n")
    (tmp_path / "latin1.txt").write_bytes("fx-app  # caf\xe9\n".encode("latin-1"))
    (tmp_path / "escape.json").write_text(
        _graph({"x==1.0": _node("../../../escape", "1.0")}, "x==1.0")
    )
    (tmp_path / "badversion.json").write_text(
        _graph({"fx-a==1.0": _node("fx-a", "1.0/../../x")}, "fx-a==1.0")
    )
    (tmp_path / "cycle.json").write_text(
        _graph(
            {
                "fx-a==1.0": _node("fx-a", "1.0", "fx-b==1.0"),
                "fx-b==1.0": _node("fx-b", "1.0", "fx-a==1.0"),
            },
            "fx-a==1.0",
        )
    )
    out = tmp_path / "out"
    cases = [
        ("-r cycle", ["bootstrap", "-r", str(tmp_path / "a.txt")], "include each other"),
        ("-r not UTF-8", ["bootstrap", "-r", str(tmp_path / "latin1.txt")], "not UTF-8"),
        (
            "-r not UTF-8 (no-dagster)",
            ["bootstrap", "--no-dagster", "-r", str(tmp_path / "latin1.txt")],
            "latin1.txt",
        ),
        ("--collection", ["bootstrap", "fx-app", "--collection", "a b"], "--collection 'a b'"),
        ("graph name", ["build-parallel", str(tmp_path / "escape.json")], "'../../../escape'"),
        ("graph version", ["build-parallel", str(tmp_path / "badversion.json")], "'1.0/../../x'"),
        (
            "graph cycle",
            ["build-parallel", str(tmp_path / "cycle.json")],
            "fx-a==1.0 -> fx-b==1.0 -> fx-a==1.0",
        ),
    ]
    for label, args, expected in cases:
        result = (
            cli(*args, "-O", str(out), "--index-url", upstream)
            if args[0] == "bootstrap"
            else cli(*args, "-O", str(out))
        )
        line = one_error_line(result)
        assert expected in line, (label, line)
        assert not out.exists(), (label, sorted(out.rglob("*")))
        BAD_INPUTS.append((label, args, line))
    text = "\n".join(f"  {label}: {line}" for label, _, line in BAD_INPUTS)
    print(f"\n{len(BAD_INPUTS)} bad inputs tried, {len(BAD_INPUTS)} gave one clear line:\n{text}")


# -- a read-only or full disk -------------------------------------------------------------------

_NOISE = "".join(random.Random(1).choices(string.ascii_letters, k=400_000))
BIG = FixturePackage("fx-big", module_body=f"DATA = {_NOISE!r}\n")  # ~590 kB sdist


def on_mount(
    mount: Path, options: str, *args: str, _wrapper: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """The command in a private mount namespace where ``mount`` is a tmpfs with ``options``
    (``ro``; ``size=...``): the host's mounts are untouched."""
    mount.mkdir(parents=True, exist_ok=True)
    script = f'mount -t tmpfs -o {options} tmpfs "$1" && shift && exec "$@"'
    command = [sys.executable, "-m", "fromager_dagster.cli.main", *args]
    if _wrapper:  # runs the command, then looks at the mount before it goes away
        command = [sys.executable, "-c", _wrapper, *command]
    return cli_argv(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            script,
            "sh",
            str(mount),
            *command,
        ],
        **env,
    )


def cli_argv(argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FROMAGER_DAGSTER"))
    }
    environ.update(env)
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=600, env=environ, check=False
    )


needs_mounts = pytest.mark.skipif(
    shutil.which("unshare") is None
    or subprocess.run(
        ["unshare", "--mount", "sh", "-c", "mount -t tmpfs tmpfs /mnt"],
        capture_output=True,
        check=False,
    ).returncode
    != 0,
    reason="needs unshare --mount and tmpfs mounts",
)


@needs_mounts
@pytest.mark.parametrize("path", PATHS)
def test_output_folder_on_a_read_only_mount(
    upstream: str, tmp_path: Path, path: tuple[str, ...]
) -> None:
    mount = tmp_path / "ro"
    result = on_mount(
        mount, "ro", "bootstrap", "fx-app", "-O", str(mount / "out"), "--index-url", upstream, *path
    )
    line = one_error_line(result)
    assert f"cannot write to output folder {mount / 'out'}: Read-only file system" in line, line


@needs_mounts
@pytest.mark.parametrize("path", PATHS)
def test_a_disk_that_fills_is_one_line_and_leaves_nothing_half_written(
    tmp_path: Path, path: tuple[str, ...]
) -> None:
    """The sdist (590 kB) is downloaded and unpacked, then the re-pack fills the disk."""
    make_index([BIG], tmp_path / "up")
    mount, home = tmp_path / "small", tmp_path / "dagster-home"
    out = mount / "out"
    script = (
        "import subprocess, sys, pathlib; "
        "r = subprocess.run(sys.argv[1:]); "
        f"out = pathlib.Path({str(out)!r}); "
        "print(sorted(str(p.relative_to(out)) for p in out.rglob('*') if p.is_file()), "
        "file=sys.stderr); "
        "sys.exit(r.returncode)"
    )
    with LocalIndexServer([tmp_path / "up"]) as server:
        argv = ["bootstrap", "fx-big", "-O", str(out), "--index-url", server.url]
        result = on_mount(
            mount,
            "size=1400k",
            *argv,
            "--no-network-isolation",
            *path,
            DAGSTER_HOME=str(home),
            _wrapper=script,
        )
    line = one_error_line(result)
    assert "No space left on device" in line, line
    # the package that failed, and the file (or folder) that could not be written
    assert line.startswith("error: fx-big==1.0: "), line
    assert str(out) in line, line
    print(line)
    left = result.stderr.strip().splitlines()[-1]
    assert ".part" not in left and ".tmp" not in left, left
    assert "work-dir/graph.json" not in left and "sdists-repo/builds/" not in left, left
    assert "sdists-repo/downloads/fx_big-1.0.tar.gz" in left  # the download fitted


# -- reuse only what a build record vouches for -------------------------------------------------


def test_build_sequence_does_not_trust_a_planted_wheel(upstream: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    order = tmp_path / "order.json"
    order.write_text('[{"dist": "fx-tool", "version": "1.0"}]')
    planted = out / "wheels-repo" / "downloads" / "fx_tool-1.0-0-py3-none-any.whl"
    planted.parent.mkdir(parents=True)
    planted.write_bytes(b"planted, not built")
    args = ("build-sequence", str(order), "-O", str(out), "--index-url", upstream)
    first = cli(*args, "--no-network-isolation", FROMAGER_DAGSTER_EXECUTOR="threads")
    assert first.returncode == 0, first.stderr
    assert "1 built, 0 reused" in first.stderr, first.stderr
    assert planted.read_bytes() != b"planted, not built"  # replaced by the real build
    again = cli(*args, "--no-network-isolation", FROMAGER_DAGSTER_EXECUTOR="threads")
    assert again.returncode == 0 and "0 built, 1 reused" in again.stderr, again.stderr
    planted.write_bytes(b"changed after the build")
    third = cli(*args, "--no-network-isolation", FROMAGER_DAGSTER_EXECUTOR="threads")
    assert third.returncode == 0 and "1 built, 0 reused" in third.stderr, third.stderr


# -- error lines that name what failed ----------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_a_build_cycle_is_printed_once(tmp_path: Path, path: tuple[str, ...]) -> None:
    cycle = [
        FixturePackage("fx-c1", build_system_requires=("fx-c2",)),
        FixturePackage("fx-c2", build_system_requires=("fx-c1",)),
    ]
    make_index(cycle, tmp_path / "up")
    with LocalIndexServer([tmp_path / "up"]) as server:
        result = cli(
            "bootstrap", "fx-c1", "-O", str(tmp_path / "out"), "--index-url", server.url, *path
        )
    line = one_error_line(result)  # one error: line, not one per package on the cycle
    assert "build dependency cycle: " in line, line
    assert not (tmp_path / "out" / "work-dir" / "graph.json").exists()


def test_a_missing_build_requirement_names_the_package_and_uv_s_reason(
    upstream: str, tmp_path: Path
) -> None:
    """fx-lib needs fx-tool's wheel, which the local repository does not have."""
    out = tmp_path / "out"
    result = cli("build", "fx-lib", "1.0", upstream, "-O", str(out), "--no-network-isolation")
    line = one_error_line(result)
    assert line.startswith("error: fx-lib==1.0: build failed: installing fx-tool "), line
    assert "No solution found" in line and "(log: " in line, line


# -- kill -9 at random moments ------------------------------------------------------------------

_OUTPUTS = ("wheels-repo/downloads/*.whl", "sdists-repo/builds/*.tar.gz", "work-dir/*.json")


def _outputs(out: Path) -> dict[str, bytes]:
    """The wheels, re-packed sdists and graph files, by path, with their bytes."""
    found = {
        str(p.relative_to(out)): p.read_bytes() for pattern in _OUTPUTS for p in out.glob(pattern)
    }
    constraints = out / "work-dir" / "constraints.txt"
    if constraints.is_file():
        found["work-dir/constraints.txt"] = constraints.read_bytes()
    return found


def _killed_at(args: list[str], seconds: float) -> int | None:
    """Start the command, SIGKILL its whole process group after ``seconds`` (every process it
    started dies with it, no cleanup runs); None when it finished first."""
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FROMAGER_DAGSTER"))
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "fromager_dagster.cli.main", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=environ,
        start_new_session=True,
    )
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, 9)
        proc.wait()
        return proc.pid
    return None


@pytest.mark.parametrize("path", PATHS)
def test_kill_9_at_random_moments_then_a_rerun_gives_a_clean_run_s_outputs(
    upstream: str, tmp_path: Path, path: tuple[str, ...]
) -> None:
    clean = tmp_path / "clean"
    args = ["bootstrap", "fx-app", "--index-url", upstream, "--no-network-isolation", *path]
    started = time.monotonic()
    first = cli(*args, "-O", str(clean))
    took = time.monotonic() - started
    assert first.returncode == 0, first.stderr
    expected = _outputs(clean)
    assert any(name.endswith(".whl") for name in expected) and "work-dir/graph.json" in expected
    seed = random.randrange(1 << 30)
    moments = sorted(random.Random(seed).uniform(0.3, took) for _ in range(3))
    for i, moment in enumerate(moments):
        out = tmp_path / f"killed-{i}"
        killed = _killed_at([*args, "-O", str(out)], moment)
        rerun = cli(*args, "-O", str(out))
        where = f"seed {seed}, killed at {moment:.2f}s of {took:.1f}s (pid {killed})"
        assert rerun.returncode == 0, (where, rerun.stderr)
        assert _outputs(out) == expected, where
        assert not list(out.rglob("*.part")), where
