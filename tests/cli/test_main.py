"""The command line: help everywhere, one-line errors, exit codes, summary."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fromager_dagster.cli.main import cli
from fromager_dagster.core.index.server import LocalIndexServer
from tests.fixtures.packages import FixturePackage, make_index


def _commands(group: click.Command, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = [prefix]
    if isinstance(group, click.Group):
        ctx = click.Context(group)
        for name in group.list_commands(ctx):
            command = group.get_command(ctx, name)
            assert command is not None, name
            found += _commands(command, (*prefix, name))
    return found


def test_the_commands_are_listed_and_imported_only_when_run() -> None:
    names = {path[0] for path in _commands(cli) if len(path) == 1}
    assert {"bootstrap", "graph", "step", "verify", "ui", "lint", "wheel-server"} <= names
    # a command imports what it needs: listing the overrides does not load Dagster
    probe = (
        "import sys; from fromager_dagster.cli.main import cli; "
        "cli.get_command(None, 'list-overrides'); "
        "print(sorted(m for m in sys.modules if m == 'dagster' or m.startswith('dagster.')))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("path", _commands(cli))
def test_every_command_has_help(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fromager_dagster", *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_bootstrap_success_prints_progress_and_summary(tmp_path: Path) -> None:
    make_index(
        [FixturePackage("fx-tool"), FixturePackage("fx-app", build_system_requires=("fx-tool",))],
        tmp_path / "up",
    )
    with LocalIndexServer([tmp_path / "up"]) as server:
        proc = _cli(
            "bootstrap",
            "fx-app",
            "-O",
            str(tmp_path / "out"),
            "--index-url",
            server.url,
            "--no-network-isolation",
        )
    assert proc.returncode == 0, proc.stderr
    assert "building fx-tool==1.0" in proc.stderr and "built fx-app==1.0" in proc.stderr
    assert "2 packages, 2 built, 0 reused" in proc.stderr
    assert str(tmp_path / "out" / "work-dir" / "graph.json") in proc.stderr


def test_build_failure_is_one_line_with_log_and_exit_1(tmp_path: Path) -> None:
    make_index([FixturePackage("fx-bad", fail_build=True)], tmp_path / "up")
    with LocalIndexServer([tmp_path / "up"]) as server:
        proc = _cli(
            "bootstrap",
            "fx-bad",
            "-O",
            str(tmp_path / "out"),
            "--index-url",
            server.url,
            "--no-network-isolation",
        )
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [
        (
            "error: fx-bad==1.0: build_wheel failed: PEP 517 hook build_wheel exited with status 1 "
            f"(log: {tmp_path / 'out' / 'work-dir' / 'logs' / 'fx-bad-1.0.log'})"
        )
    ]
    assert "Traceback" not in proc.stderr


def test_bad_input_is_one_line_no_traceback(tmp_path: Path) -> None:
    proc = _cli(
        "bootstrap",
        "-r",
        str(tmp_path / "missing.txt"),
        "--index-url",
        "http://127.0.0.1:9/simple/",
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error:") and "missing.txt" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = _cli("bootstrap", "not a requirement!!", "--index-url", "http://127.0.0.1:9/simple/")
    assert proc.returncode == 1 and "invalid requirement" in proc.stderr
    proc = _cli(
        "-v", "bootstrap", "not a requirement!!", "--index-url", "http://127.0.0.1:9/simple/"
    )
    assert "Traceback" in proc.stderr


def test_unreachable_index_names_package(tmp_path: Path) -> None:
    proc = _cli(
        "bootstrap",
        "fx-x",
        "-O",
        str(tmp_path / "out"),
        "--index-url",
        "http://127.0.0.1:9/simple/",
    )
    assert proc.returncode == 1
    assert "fx-x" in proc.stderr and "127.0.0.1:9" in proc.stderr


def test_test_mode_from_the_environment_keeps_going_and_reports(tmp_path: Path) -> None:
    make_index(
        [FixturePackage("fx-bad", fail_build=True), FixturePackage("fx-good")], tmp_path / "up"
    )
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "fx_good.yaml").write_text("changelog:\n  '1.0': [fix]\n")
    with LocalIndexServer([tmp_path / "up"]) as server:
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "fromager_dagster",
                "bootstrap",
                "fx-bad",
                "fx-good",
                "-O",
                str(tmp_path / "out"),
                "--index-url",
                server.url,
                "--no-network-isolation",
                "--settings-dir",
                str(tmp_path / "settings"),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            env={**os.environ, "FROMAGER_DAGSTER_BOOTSTRAP_TEST_MODE": "1"},
            check=False,
        )
    assert proc.returncode == 1, proc.stderr
    assert "through Dagster" in proc.stderr  # test mode no longer falls back to in-process
    assert "2 packages, 1 built, 0 reused, 1 failed" in proc.stderr
    (report,) = (tmp_path / "out" / "work-dir").glob("test-mode-failures-*.json")
    assert f"failure report: {report}" in proc.stderr
    assert [f["package"] for f in json.loads(report.read_text())["failures"]] == ["fx-bad"]
    assert (
        tmp_path / "out" / "wheels-repo" / "downloads" / "fx_good-1.0-1-py3-none-any.whl"
    ).is_file()
