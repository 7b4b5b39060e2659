"""A run launched outside the CLI (the UI, a schedule) takes the output folder's lock, or
refuses naming the command that holds it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.defs.collections import Collection
from fromager_dagster.defs.discovery import discover_job_name
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource
from tests.core.test_output_lock import HOLD
from tests.defs.conftest import CHAIN
from tests.fixtures.packages import make_index


def test_a_discovery_run_refuses_a_folder_a_command_holds(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = upstream
    make_index(CHAIN, folder)
    monkeypatch.delenv("FROMAGER_DAGSTER_WEBSERVER_URL", raising=False)
    col = Collection(
        name="fx", requirements=("fx-app",), output_dir=tmp_path / "out", index_url=url
    )
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    job = defs.resolve_job_def(discover_job_name(col))
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(col.output_dir)], stdout=subprocess.PIPE, text=True
    )
    with dg.instance_for_test() as instance:
        try:
            assert holder.stdout is not None and holder.stdout.readline() == "held\n"
            refused = job.execute_in_process(instance=instance, raise_on_error=False)
        finally:
            holder.kill()
            holder.wait()
        assert not refused.success
        [failure] = [e for e in refused.all_events if e.event_type_value == "STEP_FAILURE"]
        text = str(failure.step_failure_data.user_failure_data or failure.step_failure_data.error)
        assert "is in use by another run" in text and "fromager-dagster bootstrap" in text, text
        assert not col.graph_path.exists()

        done = job.execute_in_process(instance=instance)  # the command has ended: it runs
        assert done.success and col.graph_path.is_file()
