"""Fixture trees for the Dagster layer: tiny sdists served on 127.0.0.1, discovered once; and
one scheduling scenario (order, exclusivity, retry, failure isolation) run through an executor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.graph import build_lanes
from fromager_dagster.core.graph.model import DependencyGraph
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.resolve.requirements import Constraints, toplevel_requirements
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.defs.collections import Collection
from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.wheels import wheel_op_name
from tests.defs import mp_target
from tests.fixtures.packages import FixturePackage, make_index

# fx-app builds with fx-lib (whose install closure brings fx-dep); fx-lib builds with fx-tool.
CHAIN = [
    FixturePackage("fx-tool"),
    FixturePackage("fx-dep"),
    FixturePackage("fx-lib", build_system_requires=("fx-tool",), install_requires=("fx-dep",)),
    FixturePackage("fx-app", build_system_requires=("fx-lib",)),
]
LANES = 2  # mp_target builds the definitions with two lanes (two slots)


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A folder of fixture sdists and the URL of an index serving it."""
    folder = tmp_path / "upstream"
    folder.mkdir()
    with LocalIndexServer([folder]) as server:
        yield folder, server.url


def discover(
    packages: list[FixturePackage],
    folder: Path,
    url: str,
    output: Path,
    *,
    name: str = "fx",
    requirements: tuple[str, ...] = ("fx-app",),
    **fields: object,
) -> Collection:
    """Write the sdists, run discovery (sdist-only bootstrap), return the collection."""
    make_index(packages, folder)
    layout = OutputLayout(output)
    bootstrap(
        toplevel_requirements(list(requirements), []),
        index=IndexClient(url),
        constraints=Constraints.from_lines([]),
        layout=layout,
        options=BootstrapOptions(jobs=2, sdist_only=True, isolate=False),
        settings=Settings(),
    )
    collection = Collection(name=name, requirements=requirements, output_dir=output, index_url=url)
    return replace(collection, **fields)  # type: ignore[arg-type]


# --------------------------------------------------------------------- the scheduling scenario
# <p>-app builds with <p>-lib, which builds with <p>-tool and installs <p>-dep; <p>-big is an
# exclusive build; <p>-flaky fails once (declared flaky, so retried); <p>-bad always fails.
SCENARIO = ("tool", "dep", "lib", "app", "big", "flaky", "bad")
_TERMINAL = {"STEP_SUCCESS", "STEP_FAILURE", "STEP_UP_FOR_RETRY"}


@dataclass
class ScenarioRun:
    """What one run of the scenario's build job did, from Dagster's event log and from the
    records the fixture backend writes around every real ``build_wheel``."""

    prefix: str
    collection: Collection
    graph: DependencyGraph
    success: bool
    log: list[tuple[str, str, str]]  # (step key, event type, message), in event-log order
    materialized: set[str]  # package names
    checks: dict[str, bool]  # package name -> install check passed
    builds: dict[str, list[tuple[float, float]]]  # package name -> build_wheel intervals

    def step(self, short: str) -> str:
        return wheel_op_name(self.collection, f"{self.prefix}-{short}", "1.0")

    def steps(self, event_type: str) -> list[str]:
        return [key for key, kind, _ in self.log if kind == event_type]

    def in_flight(self) -> list[tuple[str, int, int]]:
        """(step, launch, end) per attempt, as positions in the event log: from the executor's
        STEP_WORKER_STARTING to the step's success, failure or retry request. Positions are
        causal: an executor logs a launch before the step can log anything, and reads a step's
        end only after the step logged it."""
        spans, open_ = [], {}
        for index, (key, kind, _) in enumerate(self.log):
            if kind == "STEP_WORKER_STARTING":
                open_[key] = index
            elif kind in _TERMINAL and key in open_:
                spans.append((key, open_.pop(key), index))
        assert not open_, f"launched without an end: {open_}"
        return spans

    def lanes(self) -> dict[str, set[str]]:
        """Step key -> the lanes its op takes (an exclusive build takes all of them)."""
        tags = build_lanes(
            self.graph,
            LANES,
            self.collection.settings(),
            exclusive=self.collection.exclusive_build,
        )
        return {
            wheel_op_name(self.collection, node.canonicalized_name, node.version): {
                tag for tag in tags[key] if tag.startswith("lane_")
            }
            for key, node in self.graph.nodes.items()
            if key
        }


def scenario_packages(prefix: str, record: Path, flaky_file: Path) -> list[FixturePackage]:
    def pkg(short: str, **kw: Any) -> FixturePackage:
        return FixturePackage(f"{prefix}-{short}", record_to=str(record), **{"sleep": 0.3, **kw})

    return [
        pkg("tool"),
        pkg("dep"),
        pkg("lib", build_system_requires=(f"{prefix}-tool",), install_requires=(f"{prefix}-dep",)),
        pkg("app", build_system_requires=(f"{prefix}-lib",)),
        pkg("big", sleep=1.0),
        pkg("flaky", fail_times_file=str(flaky_file)),
        pkg("bad", fail_build=True),
    ]


def run_scenario(
    tmp_path: Path,
    upstream: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    *,
    prefix: str,
    run_config: dict[str, Any] | None = None,
) -> ScenarioRun:
    """Discover the scenario, then run its build job through ``execute_job`` (a reconstructable
    job on a real instance, as the webserver launches it) with the executor the environment
    and ``run_config`` select."""
    folder, url = upstream
    record, flaky_file = tmp_path / "record.jsonl", tmp_path / "fail-once"
    flaky_file.write_text("1")
    reqs = tuple(f"{prefix}-{short}" for short in ("app", "big", "flaky", "bad"))
    packages = scenario_packages(prefix, record, flaky_file)
    col = discover(packages, folder, url, tmp_path / "out", name=prefix, requirements=reqs)
    record.unlink(missing_ok=True)  # keep only the builds of the run below
    for stale in (col.output_dir / "work-dir" / "cache").glob(f"{prefix}-*.json"):
        stale.unlink()  # discovery's build records: make every build of the run really run
    (tmp_path / "c.yaml").write_text(
        f"collections:\n  {prefix}:\n"
        f"    requirements: {json.dumps(list(reqs))}\n"
        f"    output_dir: {json.dumps(str(col.output_dir))}\n"
        f"    index_url: {json.dumps(url)}\n"
        f"    exclusive_build: [{prefix}-big]\n"
        f"    flaky_build: [{prefix}-flaky]\n"
    )
    monkeypatch.setenv("FROMAGER_DAGSTER_COLLECTIONS", str(tmp_path / "c.yaml"))
    col = replace(col, exclusive_build=(f"{prefix}-big",), flaky_build=(f"{prefix}-flaky",))
    with (
        dg.instance_for_test() as instance,
        dg.execute_job(
            mp_target.build_fixture_job(),
            instance,
            run_config=run_config,
            raise_on_error=False,
            asset_selection=wheel_keys(build_definitions({prefix: col}), col),
        ) as result,
    ):
        log = [
            (e.step_key or "", e.event_type_value, e.message or "")
            for e in (entry.dagster_event for entry in instance.all_logs(result.run_id))
            if e is not None
        ]
        materialized = {
            e.asset_key.path[2]
            for e in result.all_events
            if e.event_type_value == "ASSET_MATERIALIZATION" and e.asset_key
        }
        checks = {
            e.event_specific_data.asset_key.path[2]: e.event_specific_data.passed
            for e in result.all_events
            if e.event_type_value == "ASSET_CHECK_EVALUATION"
        }
        success = result.success
    builds: dict[str, list[tuple[float, float]]] = {}
    starts: dict[str, float] = {}
    for line in record.read_text().splitlines():
        event = json.loads(line)
        if event["event"] == "start":
            starts[event["name"]] = event["t"]
        else:
            builds.setdefault(event["name"], []).append((starts.pop(event["name"]), event["t"]))
    graph = DependencyGraph.load(col.graph_path)
    return ScenarioRun(prefix, col, graph, success, log, materialized, checks, builds)


def check_scenario(run: ScenarioRun) -> None:
    """What any executor must do with the scenario: Dagster's order, lanes and exclusivity,
    the retry of the flaky build, and the failed build stopping nothing independent of it."""
    p = run.prefix
    good = [f"{p}-{short}" for short in SCENARIO if short != "bad"]
    assert not run.success
    assert run.steps("STEP_FAILURE") == [run.step("bad")]
    assert set(run.steps("STEP_SUCCESS")) == {run.step(short) for short in SCENARIO[:-1]}
    assert run.steps("STEP_UP_FOR_RETRY") == [run.step("flaky")]
    assert run.steps("STEP_RESTARTED") == [run.step("flaky")]
    assert run.materialized == set(good)
    # the install check runs once every wheel of the run is there: one failed, none checked
    assert run.checks == {}
    # the builds really ran (no wheel reused from discovery), the flaky one twice
    assert {name: len(spans) for name, spans in run.builds.items()} == {
        **dict.fromkeys(good, 1),
        f"{p}-flaky": 2,
        f"{p}-bad": 1,
    }

    spans = run.in_flight()
    ends = {key: end for key, _, end in spans}  # a step's last end: its success or failure
    # every step is launched after the steps building what it needs succeeded; and the build
    # itself starts after the wheels it needs were written
    by_name = {node.canonicalized_name: key for key, node in run.graph.nodes.items() if key}
    for name in [*good, f"{p}-bad"]:
        key = by_name[name]
        step = wheel_op_name(run.collection, name, "1.0")
        first_launch = min(launch for k, launch, _ in spans if k == step)
        first_build = min(start for start, _ in run.builds[name])
        for dep in run.graph.build_requirements(key):
            dep_name = run.graph.nodes[dep].canonicalized_name
            assert ends[wheel_op_name(run.collection, dep_name, "1.0")] < first_launch, (name, dep)
            assert max(end for _, end in run.builds[dep_name]) <= first_build, (name, dep)

    # lanes, from the ops' tags: steps sharing a lane never overlap (the exclusive build takes
    # every lane, so it overlaps nothing), and steps on different lanes did run side by side
    lanes = run.lanes()
    assert lanes[run.step("big")] == {f"lane_{i}" for i in range(LANES)}
    overlapping = [
        (a, b)
        for i, (a, a_launch, a_end) in enumerate(spans)
        for (b, b_launch, b_end) in spans[i + 1 :]
        if a_launch < b_end and b_launch < a_end
    ]
    assert all(not lanes[a] & lanes[b] for a, b in overlapping), overlapping
    # Two leaves on different lanes are ready at the start, so Dagster launches a pair in one
    # batch (after the exclusive build at the latest): the launches precede both ends.
    leaves = [run.step(short) for short in ("tool", "dep", "flaky", "bad")]
    assert len({lane for leaf in leaves for lane in lanes[leaf]}) == LANES
    assert overlapping, "no two steps were in flight at once"
