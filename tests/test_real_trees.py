"""Real dependency trees from the real index (pinned by tests/trees/<tree>/constraints.txt),
through Dagster, the way users run them: right on the first cold run, nothing rebuilt on a
rerun, and the same wheels and graph from the other paths.

For each tree:
1. ``bootstrap`` through Dagster, cold (fresh output folder and instance), succeeds on its
   first run, every wheel's install check included;
2. the same command again runs no build step (no build run at all);
3. ``bootstrap --sdist-only --no-dagster`` into another folder, then ``build-parallel`` on
   its graph: graph.json equals the Dagster run's, and every wheel has the same sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

ROOT = Path(__file__).resolve().parents[1]
TREES = sorted(p.name for p in (ROOT / "tests" / "trees").iterdir() if p.is_dir())
TIMEOUT = 1200


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ)
    environ.pop("DAGSTER_HOME", None)
    environ.pop("FROMAGER_DAGSTER_BOOTSTRAP_NO_DAGSTER", None)
    return subprocess.run(
        [sys.executable, "-m", "fromager_dagster", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environ,
    )


def _wheel_hashes(out: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted((out / "wheels-repo" / "downloads").glob("*.whl"))
    }


def _failed_checks(home: Path) -> list[str]:
    failed = []
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is None or event.event_type_value != "ASSET_CHECK_EVALUATION":
                    continue
                data = event.event_specific_data
                if not data.passed:
                    failed.append(f"{data.asset_key.to_user_string()}: {data.description}")
    return failed


@pytest.mark.network
@pytest.mark.parametrize("tree", TREES)
def test_real_tree_through_dagster(tree: str, tmp_path: Path) -> None:
    folder = ROOT / "tests" / "trees" / tree
    inputs = ("-r", str(folder / "requirements.txt"), "-c", str(folder / "constraints.txt"))
    out = tmp_path / "dagster"

    cold = _cli("bootstrap", *inputs, "-O", str(out), "--collection", tree)
    assert cold.returncode == 0, cold.stderr[-6000:]
    assert "FAILED" not in cold.stderr, cold.stderr[-6000:]
    graph = (out / "work-dir" / "graph.json").read_text(encoding="utf-8")
    nodes = graph.count('"canonicalized_name"') - 1
    wheels = _wheel_hashes(out)
    assert len(wheels) == nodes >= 25
    assert _failed_checks(out / "dagster-home") == []

    warm = _cli("bootstrap", *inputs, "-O", str(out), "--collection", tree)
    assert warm.returncode == 0, warm.stderr[-6000:]
    assert f"{nodes} wheels up to date: no build step for them" in warm.stderr, warm.stderr
    assert "building " not in warm.stderr and f"({tree}_wheels)" not in warm.stderr
    assert _wheel_hashes(out) == wheels

    other = tmp_path / "engine"
    sdists = _cli("bootstrap", *inputs, "-O", str(other), "--sdist-only", "--no-dagster")
    assert sdists.returncode == 0, sdists.stderr[-6000:]
    assert (other / "work-dir" / "graph.json").read_text(encoding="utf-8") == graph
    built = _cli(
        "build-parallel", str(other / "work-dir" / "graph.json"), "-O", str(other), "-m", "2"
    )
    assert built.returncode == 0, built.stderr[-6000:]
    assert _wheel_hashes(other) == wheels
