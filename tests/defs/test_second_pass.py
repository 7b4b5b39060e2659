"""Test mode's second pass for a wheel run launched as the UI launches it (not by the CLI):
the sensor takes the failed build's pre-built wheel and requests a run of what waited on it,
with the engine function the command line uses."""

import shutil
from pathlib import Path

import dagster as dg

from fromager_dagster.core.bootstrap import blocked_failures
from fromager_dagster.core.graph import DependencyGraph, blocked_builds, second_pass
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource
from fromager_dagster.defs.run_tags import CLI_TAG, COLLECTION_TAG
from fromager_dagster.defs.second_pass import SECOND_PASS_TAG, SENSOR_NAME
from fromager_dagster.defs.wheels import wheel_key
from tests.defs.conftest import discover
from tests.fixtures.packages import FixturePackage, make_wheel


def test_second_pass_decision_on_a_graph(tmp_path: Path) -> None:
    """The builds of the second pass: not done, not failed, every build requirement done or
    built before them in the same pass; what is still blocked names its missing requirements."""
    node = {"pre_built": False, "constraint": None, "download_url": ""}

    def n(name: str, *builds: str) -> dict[str, object]:
        edges = [{"key": f"{b}==1.0", "req_type": "build-system", "req": b} for b in builds]
        return {**node, "canonicalized_name": name, "version": "1.0", "edges": edges}

    root = {
        **n(""),
        "version": "0",
        "edges": [{"key": f"{k}==1.0", "req_type": "toplevel", "req": k} for k in ("c", "d", "e")],
    }
    graph = DependencyGraph.from_json(
        {
            "": root,
            "a==1.0": n("a"),
            "b==1.0": n("b", "a"),
            "c==1.0": n("c", "b"),
            "x==1.0": n("x"),
            "d==1.0": n("d", "x"),
            "e==1.0": n("e"),
        }
    )
    # a failed and was taken pre-built; x failed with no wheel; e was built
    done, failed = {"a==1.0", "e==1.0"}, {"a==1.0", "x==1.0"}
    assert second_pass(graph, done, failed) == ["b==1.0", "c==1.0"]
    assert second_pass(graph, done, failed, selected={"c==1.0", "d==1.0"}) == []
    assert blocked_builds(graph, done) == {"c==1.0": ["b==1.0"], "d==1.0": ["x==1.0"]}
    records = blocked_failures(graph, OutputLayout(tmp_path), failed=failed)
    assert [(r.package, r.exception_type) for r in records] == [
        ("b", "DependencyFailedError"),
        ("c", "DependencyFailedError"),
        ("d", "DependencyFailedError"),
    ]


def test_a_ui_wheel_run_gets_the_second_pass(upstream: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = upstream
    fails = tmp_path / "fx-bad-failures"
    fails.write_text("0")  # fx-bad builds during discovery (fx-top's build needs it)
    bad = FixturePackage("fx-bad", fail_times_file=str(fails))
    packages = [
        bad,
        FixturePackage("fx-top", build_system_requires=("fx-bad",)),
        FixturePackage("fx-nowheel", fail_build=True),
    ]
    out = tmp_path / "out"
    col = discover(
        packages, folder, url, out, requirements=("fx-top", "fx-nowheel"), test_mode=True
    )
    make_wheel(bad, folder)  # the index's pre-built fallback for fx-bad
    shutil.rmtree(out / "wheels-repo")  # every wheel is built by the run
    shutil.rmtree(out / "work-dir" / "cache", ignore_errors=True)
    fails.write_text("9")
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
            context = dg.build_sensor_context(cursor=cursor, instance=instance, definitions=defs)
            data = sensor.evaluate_tick(context)
            return list(data.run_requests or []), data.cursor

        requests, cursor = tick(None)  # the first tick records the time
        assert requests == []
        # the command line's failed run is not the sensor's: the CLI does its own pass
        cli = job.execute_in_process(
            instance=instance,
            asset_selection=wheel_keys(defs, col),
            tags={CLI_TAG: "build", COLLECTION_TAG: "fx"},
            raise_on_error=False,
        )
        assert not cli.success
        requests, cursor = tick(cursor)
        assert requests == []
        shutil.rmtree(out / "wheels-repo")
        # as the UI's "Materialize all" launches it: no tag but the collection's (added by
        # the assets)
        first = job.execute_in_process(
            instance=instance, asset_selection=wheel_keys(defs, col), raise_on_error=False
        )
        assert not first.success
        assert not list((out / "wheels-repo" / "prebuilt").glob("*.whl"))
        requests, cursor = tick(cursor)
        top = wheel_key("cpu", "fx-top", "1.0")
        assert [(r.run_key, r.asset_selection) for r in requests] == [(first.run_id, [top])]
        prebuilt = [p.name for p in (out / "wheels-repo" / "prebuilt").glob("*.whl")]
        assert prebuilt == [bad.wheel_filename]
        second = job.execute_in_process(
            instance=instance,
            asset_selection=requests[0].asset_selection,
            tags=requests[0].tags,
        )
        assert second.success
        assert requests[0].tags[SECOND_PASS_TAG] == first.run_id
        built = [p.name for p in (out / "wheels-repo" / "downloads").glob("*.whl")]
        assert built == ["fx_top-1.0-0-py3-none-any.whl"]
        requests, cursor = tick(cursor)  # one pass per failure; a second pass is not followed
        assert requests == []
