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
import json
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
        check=False,
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


@pytest.mark.network
def test_real_c_extensions_are_reproducible_in_two_output_folders(tmp_path: Path) -> None:
    """Two clean builds of a subset of the web tree with C extensions (markupsafe, simplejson,
    and setuptools from source behind them), pinned by the tree's constraints, in output
    folders at different paths: every wheel has the same sha256, each has provenance and
    `verify` passes on both (docs/provenance.md, "Reproducibility")."""
    folder = ROOT / "tests" / "trees" / "web"
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("markupsafe\nsimplejson\n", encoding="utf-8")
    inputs = ("-r", str(requirements), "-c", str(folder / "constraints.txt"))
    first, second = tmp_path / "a", tmp_path / "elsewhere" / "deeper" / "b"
    for out in (first, second):
        proc = _cli("bootstrap", *inputs, "-O", str(out), "--no-dagster")
        assert proc.returncode == 0, proc.stderr[-6000:]
    wheels = _wheel_hashes(first)
    assert {name.split("-")[0] for name in wheels} >= {"markupsafe", "simplejson", "setuptools"}
    compiled = [n for n in wheels if not n.endswith("-py3-none-any.whl")]
    assert len(compiled) >= 2, wheels  # the C extensions: platform wheels
    assert _wheel_hashes(second) == wheels
    for out in (first, second):
        verify = _cli("verify", str(out))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert f"verified {len(wheels)} wheel(s)" in verify.stderr
    # SOURCE_DATE_EPOCH from the sdist (its newest member), not the 1980 fallback
    [markupsafe] = [n for n in wheels if n.startswith("markupsafe-")]
    statement = json.loads(
        (first / "wheels-repo" / "provenance" / f"{markupsafe}.intoto.json").read_text()
    )
    epoch = statement["predicate"]["buildDefinition"]["internalParameters"]["source_date_epoch"]
    assert int(epoch) > 315532800
    again = _cli("verify", str(first), "--rebuild", "markupsafe")  # a third build, compared
    assert again.returncode == 0, again.stdout + again.stderr
    assert "rebuilt markupsafe==3.0.4: reproducible" in again.stderr


@pytest.mark.network
def test_real_tree_is_reproducible_through_dagster(tmp_path: Path) -> None:
    """The whole web tree (41 nodes, C extensions markupsafe and simplejson, every build tool
    from source) bootstrapped through Dagster twice, clean, in output folders at different
    paths: every wheel has the same sha256 in both, or a rebuild records why it cannot, and
    `verify` passes on both (docs/provenance.md, "Reproducibility")."""
    folder = ROOT / "tests" / "trees" / "web"
    inputs = ("-r", str(folder / "requirements.txt"), "-c", str(folder / "constraints.txt"))
    first, second = tmp_path / "a", tmp_path / "elsewhere" / "deeper" / "b"
    for out in (first, second):
        proc = _cli("bootstrap", *inputs, "-O", str(out), "--collection", "web")
        assert proc.returncode == 0, proc.stderr[-6000:]
        assert _failed_checks(out / "dagster-home") == []
    wheels, others = _wheel_hashes(first), _wheel_hashes(second)
    graph = (first / "work-dir" / "graph.json").read_text(encoding="utf-8")
    assert len(wheels) == graph.count('"canonicalized_name"') - 1 >= 39
    assert sorted(others) == sorted(wheels)
    assert len([n for n in wheels if not n.endswith("-none-any.whl")]) >= 2  # C extensions
    differ = sorted(n for n in wheels if wheels[n] != others[n])
    for name in differ:  # not identical: a rebuild must record the reason
        package = name.split("-")[0]
        _cli("verify", str(first), "--rebuild", package)
        record = first / "wheels-repo" / "provenance" / f"{name}.reproducibility.json"
        assert json.loads(record.read_text())["reason"], name
    for out in (first, second):
        verify = _cli("verify", str(out))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert f"verified {len(wheels)} wheel(s)" in verify.stderr
    assert differ == [], f"not reproducible (reasons recorded): {differ}"
