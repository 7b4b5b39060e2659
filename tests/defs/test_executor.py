"""A fixture graph through the multiprocess executor: order, exclusivity, retries, isolation
of failures."""

import json
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.core.graph import DependencyGraph
from fromager_dagster.defs.executor import executor_config, max_concurrent
from tests.defs import mp_target
from tests.defs.conftest import discover
from tests.fixtures.packages import FixturePackage


def test_max_concurrent_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROMAGER_DAGSTER_MAX_CONCURRENT", "3")
    assert max_concurrent() == 3
    config = executor_config()
    assert config["max_concurrent"] == 3  # type: ignore[index]
    assert config["start_method"] == {"forkserver": {}}
    limits = config["tag_concurrency_limits"]
    assert [t["key"] for t in limits] == ["lane_0", "lane_1", "lane_2"]


def test_multiprocess_run(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = upstream
    record = str(tmp_path / "record.jsonl")
    flaky_file = tmp_path / "fail-once"
    flaky_file.write_text("1")

    def pkg(name: str, **kw: object) -> FixturePackage:
        return FixturePackage(name, record_to=record, **{"sleep": 0.3, **kw})  # type: ignore[arg-type]

    packages = [
        # two independent leaves that build long enough to overlap even on a loaded machine
        pkg("mp-tool", sleep=2.5),
        pkg("mp-dep", sleep=2.5),
        pkg("mp-lib", build_system_requires=("mp-tool",), install_requires=("mp-dep",)),
        pkg("mp-app", build_system_requires=("mp-lib",)),
        pkg("mp-big", sleep=1.0),
        pkg("mp-flaky", fail_times_file=str(flaky_file)),
        pkg("mp-bad", fail_build=True),
    ]
    reqs = ("mp-app", "mp-big", "mp-flaky", "mp-bad")
    col = discover(packages, folder, url, tmp_path / "out", name="mp", requirements=reqs)
    Path(record).unlink(missing_ok=True)  # keep only the builds of the run below
    # make every build really run (no wheel reused from discovery's build records)
    for stale in (col.output_dir / "work-dir" / "cache").glob("mp-*.json"):
        stale.unlink()
    (tmp_path / "c.yaml").write_text(
        "collections:\n  mp:\n"
        f"    requirements: {json.dumps(list(reqs))}\n"
        f"    output_dir: {json.dumps(str(col.output_dir))}\n"
        f"    index_url: {json.dumps(url)}\n"
        "    exclusive_build: [mp-big]\n"
        "    flaky_build: [mp-flaky]\n"
    )
    monkeypatch.setenv("FROMAGER_DAGSTER_COLLECTIONS", str(tmp_path / "c.yaml"))
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(
            dg.reconstructable(mp_target.build_mp_job), instance, raise_on_error=False
        ) as result,
    ):
        assert not result.success
        failed = {e.step_key for e in result.get_step_failure_events()}
        succeeded = set(
            result.get_step_success_events()
            and [e.step_key for e in result.get_step_success_events()]
        )
        retried = [
            e.step_key for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"
        ]
    assert failed == {"build_mp_mp_bad_1_0"}
    assert {"build_mp_mp_app_1_0", "build_mp_mp_big_1_0", "build_mp_mp_flaky_1_0"} <= succeeded
    assert retried == ["build_mp_mp_flaky_1_0"]

    spans: dict[str, list[tuple[float, float]]] = {}
    starts: dict[str, float] = {}
    for line in Path(record).read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            starts[event["name"]] = event["t"]
        else:
            spans.setdefault(event["name"], []).append((starts.pop(event["name"]), event["t"]))
    # every build starts after the wheels it needs were finished
    graph = DependencyGraph.load(col.graph_path)
    for key, node in graph.nodes.items():
        if not key or node.canonicalized_name not in spans:
            continue
        first_start = min(s for s, _ in spans[node.canonicalized_name])
        for dep in graph.build_requirements(key):
            dep_name = graph.nodes[dep].canonicalized_name
            assert max(e for _, e in spans[dep_name]) <= first_start, (key, dep)
    # the exclusive build overlaps nothing
    [(big_start, big_end)] = spans["mp-big"]
    for name, intervals in spans.items():
        if name != "mp-big":
            for start, end in intervals:
                assert end <= big_start or start >= big_end, name
