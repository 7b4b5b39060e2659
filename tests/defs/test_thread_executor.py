"""A fixture graph through the thread executor: Dagster's order, lanes, retries and event log."""

import json
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.defs.executor import build_executor
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource
from tests.defs.conftest import discover
from tests.fixtures.packages import FixturePackage


def build_th_job() -> dg.JobDefinition:
    defs = build_definitions(concurrency=2, fromager=FromagerResource(network_isolation=False))
    return defs.resolve_job_def("build_th_job")


def test_env_selects_thread_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROMAGER_DAGSTER_EXECUTOR", "threads")
    assert build_executor(2).name == "fromager_threads"
    monkeypatch.delenv("FROMAGER_DAGSTER_EXECUTOR")
    assert build_executor(2).name == "fromager_multiprocess"


def test_thread_run(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = upstream
    record = str(tmp_path / "record.jsonl")
    flaky_file = tmp_path / "fail-once"
    flaky_file.write_text("1")

    def pkg(name: str, **kw: object) -> FixturePackage:
        return FixturePackage(name, record_to=record, **{"sleep": 0.3, **kw})  # type: ignore[arg-type]

    packages = [
        pkg("th-tool"),
        pkg("th-dep"),
        pkg("th-lib", build_system_requires=("th-tool",), install_requires=("th-dep",)),
        pkg("th-app", build_system_requires=("th-lib",)),
        pkg("th-big", sleep=1.0),
        pkg("th-flaky", fail_times_file=str(flaky_file)),
    ]
    reqs = ("th-app", "th-big", "th-flaky")
    col = discover(packages, folder, url, tmp_path / "out", name="th", requirements=reqs)
    Path(record).unlink(missing_ok=True)  # keep only the builds of the run below
    for stale in (col.output_dir / "work-dir" / "cache").glob("th-*.json"):
        stale.unlink()  # build records of discovery's wheels: make the run build again
    (tmp_path / "c.yaml").write_text(
        "collections:\n  th:\n"
        f"    requirements: {json.dumps(list(reqs))}\n"
        f"    output_dir: {json.dumps(str(col.output_dir))}\n"
        f"    index_url: {json.dumps(url)}\n"
        "    exclusive_build: [th-big]\n"
        "    flaky_build: [th-flaky]\n"
    )
    monkeypatch.setenv("FROMAGER_DAGSTER_COLLECTIONS", str(tmp_path / "c.yaml"))
    monkeypatch.setenv("FROMAGER_DAGSTER_EXECUTOR", "threads")
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(dg.reconstructable(build_th_job), instance, raise_on_error=False) as result,
    ):
        assert result.success
        events = result.all_events
        started = [e.step_key for e in events if e.event_type_value == "STEP_START"]
        succeeded = {e.step_key for e in events if e.event_type_value == "STEP_SUCCESS"}
        retried = [e.step_key for e in events if e.event_type_value == "STEP_UP_FOR_RETRY"]
        restarted = [e.step_key for e in events if e.event_type_value == "STEP_RESTARTED"]
        materialized = {
            e.asset_key.path[2]
            for e in events
            if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key
        }
        checks = [e for e in events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        engine = [e.message or "" for e in events if e.event_type_value == "ENGINE_EVENT"]
        log = [
            (entry.timestamp, entry.dagster_event.step_key, entry.dagster_event.event_type_value)
            for entry in instance.all_logs(result.run_id)
            if entry.dagster_event is not None
        ]
    names = ["th-tool", "th-dep", "th-lib", "th-app", "th-big", "th-flaky"]
    expected = {f"build_th_{n.replace('-', '_')}_1_0" for n in names}
    assert succeeded == expected
    assert sorted(started) == sorted(expected)
    assert retried == restarted == ["build_th_th_flaky_1_0"]
    assert materialized == set(names)
    assert len(checks) == len(names) and all(c.event_specific_data.passed for c in checks)
    assert any("threads" in m for m in engine)

    # the builds themselves ran (no wheel reused from discovery): each wrote start/end records
    built = {json.loads(line)["name"] for line in Path(record).read_text().splitlines()}
    assert built == set(names)

    # Dagster's order, from the run's event log: each step starts after its deps succeeded
    graph = DependencyGraph.load(col.graph_path)
    step_of = {f"build_th_{n.replace('-', '_')}_1_0": n for n in names}
    spans: dict[str, tuple[float, float]] = {}
    for key, name in step_of.items():
        start = min(t for t, k, kind in log if k == key and kind == "STEP_START")
        end = max(t for t, k, kind in log if k == key and kind == "STEP_SUCCESS")
        spans[name] = (start, end)
    by_name = {node.canonicalized_name: key for key, node in graph.nodes.items() if key}
    for name in names:
        for dep in graph.build_requirements(by_name[name]):
            dep_name = graph.nodes[dep].canonicalized_name
            assert spans[dep_name][1] <= spans[name][0], (name, dep_name)
    # the exclusive build (all lanes) overlaps no other step
    big_start, big_end = spans["th-big"]
    for name, (start, end) in spans.items():
        if name != "th-big":
            assert end <= big_start or start >= big_end, name
    # and steps did run side by side elsewhere (two threads)
    others = sorted(span for name, span in spans.items() if name != "th-big")
    assert any(b[0] < a[1] for a, b in zip(others, others[1:], strict=False))
