"""The output folder's lock as Dagster runs take it: a command's own runs never wait on the
lock their command holds; a run launched elsewhere takes it, or refuses naming the holder."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from fromager_dagster.core.output_lock import (
    LOCK_FILE,
    OutputBusyError,
    hold_output,
    hold_output_for_run,
)

HOLD = """
import sys, time
from pathlib import Path
from fromager_dagster.core.output_lock import hold_output
with hold_output(Path(sys.argv[1]), "fromager-dagster bootstrap fx-app"):
    print("held", flush=True)
    time.sleep(120)
"""
RUN_STEP = """
import sys
from pathlib import Path
from fromager_dagster.core.output_lock import hold_output_for_run
with hold_output_for_run(Path(sys.argv[1]), sys.argv[2]):
    print("inside", flush=True)
"""


def _step(root: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", RUN_STEP, str(root), run_id],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture
def command(tmp_path: Path) -> Iterator[Path]:
    """A command (another process) holding the output folder's lock."""
    root = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(root)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "held\n"
        yield root
    finally:
        proc.kill()
        proc.wait()


def test_a_run_launched_elsewhere_refuses_a_folder_a_command_holds(command: Path) -> None:
    with pytest.raises(OutputBusyError) as caught, hold_output_for_run(command, "ui-run"):
        pytest.fail("the step ran while a command held the folder")
    line = caught.value.one_line()
    assert "is in use by another run" in line and "fromager-dagster bootstrap fx-app" in line


def test_a_command_s_own_runs_do_not_wait_on_its_lock(tmp_path: Path) -> None:
    root = tmp_path / "out"
    with hold_output(root, "fromager-dagster bootstrap fx-app"):
        with hold_output_for_run(root, "in-process-run"):  # the run in the command's process
            pass
        child = _step(root, "step-process-run")  # a step process the command started
        assert child.returncode == 0 and child.stdout == "inside\n", child.stderr
        assert "fromager-dagster bootstrap" in (root / LOCK_FILE).read_text()  # still its hold


def test_threads_of_one_run_share_one_hold(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    inside = threading.Barrier(2, timeout=30)

    def sibling() -> None:
        with hold_output_for_run(root, "run-1"):
            inside.wait()

    with hold_output_for_run(root, "run-1"):
        thread = threading.Thread(target=sibling)
        thread.start()
        inside.wait()  # both threads of run-1 inside at once
        thread.join()
        assert (root / LOCK_FILE).read_text().endswith(": dagster run run-1\n")
    with hold_output(root, "fromager-dagster build-parallel"):  # released when the run ends
        pass


def test_step_processes_of_one_run_share_the_hold_another_run_refuses(tmp_path: Path) -> None:
    root = tmp_path / "out"
    root.mkdir()
    hold = RUN_STEP.replace('print("inside", flush=True)', 'print("inside", flush=True); input()')
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, str(root), "run-1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "inside\n"
        with hold_output_for_run(root, "run-1"):  # another step process of run-1
            pass
        with (
            pytest.raises(OutputBusyError, match="dagster run run-1"),
            hold_output_for_run(root, "run-2"),
        ):
            pass
        with (  # a command started meanwhile refuses too
            pytest.raises(OutputBusyError),
            hold_output(root, "fromager-dagster build-parallel"),
        ):
            pass
    finally:
        proc.kill()
        proc.wait()


def test_a_collection_s_first_run_creates_the_folder(tmp_path: Path) -> None:
    root = tmp_path / "new" / "out"
    with hold_output_for_run(root, "first-run"):
        assert (root / LOCK_FILE).read_text().endswith(": dagster run first-run\n")
