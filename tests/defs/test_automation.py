"""Nightly schedule and new-release sensor, evaluated offline against a local index."""

import json
from dataclasses import replace
from pathlib import Path

import dagster as dg

from fromager_dagster.defs.automation import (
    COLLECTION_TAG,
    REBUILD_TAG,
    cursor_timestamp,
    new_release_sensor,
    nightly_schedule,
    release_cursor,
)
from fromager_dagster.defs.discovery import discover_job, discovery_run_config
from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource
from tests.defs.conftest import CHAIN, discover
from tests.fixtures.packages import FixturePackage, make_sdist


def test_nightly_schedule_requests_a_rediscovery(tmp_path: Path) -> None:
    from fromager_dagster.defs.collections import Collection

    col = Collection(name="n", requirements=("x",), output_dir=tmp_path, schedule="15 3 * * *")
    schedule = nightly_schedule(col)
    assert schedule.name == "nightly_n_schedule" and schedule.cron_schedule == "15 3 * * *"
    assert schedule.default_status == dg.DefaultScheduleStatus.STOPPED
    request = schedule.evaluate_tick(dg.build_schedule_context()).run_requests[0]  # type: ignore[index]
    assert request.tags["fromager/rebuild"] == "true"
    assert request.run_config["ops"]["discover_n"]["config"]["requirements"] == ["x"]
    defs = build_definitions({"n": col})
    assert defs.resolve_schedule_def("nightly_n_schedule").job_name == "discover_n_job"


def test_new_release_sensor(upstream: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = upstream
    col = discover(CHAIN, folder, url, tmp_path / "out")
    constraints = tmp_path / "constraints.txt"
    constraints.write_text("fx-dep<2\n")
    col = replace(col, constraints=(constraints,))
    sensor = new_release_sensor([col], [discover_job(col)], minimum_interval_seconds=60)
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    assert sensor.minimum_interval_seconds == 60

    def tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
        with dg.instance_for_test() as instance:
            context = dg.build_sensor_context(cursor=cursor, instance=instance)
            data = sensor.evaluate_tick(context)
        return list(data.run_requests or []), data.cursor

    requests, cursor = tick(None)  # baseline
    assert requests == []
    assert json.loads(cursor or "{}")["fx"]["fx-dep"] == "1.0"  # the newest admissible only

    make_sdist(FixturePackage("fx-dep", "1.1"), folder)
    make_sdist(FixturePackage("fx-dep", "2.0"), folder)  # outside the constraints
    requests, cursor = tick(cursor)
    assert [r.run_key for r in requests] == ["fx:fx-dep==1.1"]
    assert requests[0].job_name == "discover_fx_job"

    requests, cursor = tick(cursor)  # nothing new
    assert requests == []
    assert json.loads(cursor or "{}")["fx"]["fx-dep"] == "1.1"  # 2.0 is not admissible


def test_rebuild_after_discovery_sensor(upstream: tuple[Path, str], tmp_path: Path) -> None:
    """A rebuild-tagged discovery that succeeds requests the collection's wheels once; an
    untagged discovery requests nothing; the first tick only sets the cursor."""
    folder, url = upstream
    col = discover(CHAIN, folder, url, tmp_path / "out")
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    sensor = defs.resolve_sensor_def("rebuild_after_discovery_sensor")
    assert sensor.default_status == dg.DefaultSensorStatus.STOPPED
    discover_job = defs.resolve_job_def("discover_fx_job")
    config = discovery_run_config(col)
    with dg.instance_for_test() as instance:

        def tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
            context = dg.build_sensor_context(cursor=cursor, instance=instance, definitions=defs)
            data = sensor.evaluate_tick(context)
            return list(data.run_requests or []), data.cursor

        tagged = discover_job.execute_in_process(  # before the first tick: not rebuilt
            run_config=config, instance=instance, tags={REBUILD_TAG: "true", COLLECTION_TAG: "fx"}
        )
        requests, cursor = tick(None)
        assert requests == [] and cursor is not None
        untagged = discover_job.execute_in_process(run_config=config, instance=instance)
        tagged = discover_job.execute_in_process(
            run_config=config, instance=instance, tags={REBUILD_TAG: "true", COLLECTION_TAG: "fx"}
        )
        assert untagged.success and tagged.success
        requests, cursor = tick(cursor)
        assert [r.run_key for r in requests] == [tagged.run_id]
        assert requests[0].asset_selection == wheel_keys(defs, col)
        assert requests[0].job_name == "__ASSET_JOB"  # the implicit asset job: no job of ours
        requests, cursor = tick(cursor)
        assert requests == []

        # once the wheels are materialized, another rebuild-tagged discovery with nothing
        # changed requests no build: only missing and changed wheels are rebuilt
        built = defs.resolve_implicit_global_asset_job_def().execute_in_process(
            instance=instance, asset_selection=wheel_keys(defs, col)
        )
        assert built.success
        again = discover_job.execute_in_process(
            run_config=config, instance=instance, tags={REBUILD_TAG: "true", COLLECTION_TAG: "fx"}
        )
        assert again.success
        requests, cursor = tick(cursor)
        assert requests == []


def test_cursor_timestamp_survives_empty_and_edited_cursors() -> None:
    assert cursor_timestamp("1765000000.5") == 1765000000.5
    for bad in (None, "", "  ", "yesterday", "nan", "inf", "-3"):
        assert cursor_timestamp(bad) is None, bad


def test_release_cursor_is_compact_and_tolerant() -> None:
    assert release_cursor(None) == {} and release_cursor("") == {}
    assert release_cursor("{not json") == {} and release_cursor("[1, 2]") == {}
    old = json.dumps({"fx": {"fx-dep": ["1.0", "2.0", "1.10"], "fx-lib": "oops"}, "x": 3})
    assert release_cursor(old) == {"fx": {"fx-dep": "2.0"}}  # newest kept, junk dropped
    assert release_cursor('{"fx": {"fx-dep": "1.1"}}') == {"fx": {"fx-dep": "1.1"}}


def test_rebuild_sensor_ticks_with_an_empty_or_edited_cursor(tmp_path: Path) -> None:
    """The UI's "Preview tick result" passes an empty cursor; a cleared or hand-edited cursor
    must not break real ticks: each takes a new baseline."""
    from fromager_dagster.defs.collections import Collection

    col = Collection(name="n", requirements=("x",), output_dir=tmp_path)
    defs = build_definitions({"n": col})
    sensor = defs.resolve_sensor_def("rebuild_after_discovery_sensor")
    with dg.instance_for_test() as instance:
        for cursor in ("", "garbage", " "):
            context = dg.build_sensor_context(cursor=cursor, instance=instance, definitions=defs)
            data = sensor.evaluate_tick(context)
            assert not data.run_requests and data.skip_message
            assert cursor_timestamp(data.cursor) is not None


def test_new_release_sensor_with_an_unusable_cursor(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = upstream
    col = discover(CHAIN, folder, url, tmp_path / "out")
    sensor = new_release_sensor([col], [discover_job(col)], minimum_interval_seconds=60)
    for cursor in ("", "{oops", '{"fx": {"fx-dep": "not a version"}}'):
        with dg.instance_for_test() as instance:
            data = sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor, instance=instance))
        assert not data.run_requests  # a new baseline, no storm of rediscoveries
        assert json.loads(data.cursor or "{}")["fx"] == {
            "fx-app": "1.0",
            "fx-dep": "1.0",
            "fx-lib": "1.0",
            "fx-tool": "1.0",
        }


def test_new_release_sensor_asks_the_resolvers_rules(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    """What the sensor calls admissible is what discovery would choose: a pre-release, a
    release with only a wheel (the source policy takes sdists) and a version the collection's
    settings leave out are not; the next sdist release is."""
    from tests.fixtures.packages import make_wheel

    folder, url = upstream
    col = discover(CHAIN, folder, url, tmp_path / "out")
    sensor = new_release_sensor([col], [discover_job(col)], minimum_interval_seconds=60)

    def tick(cursor: str | None) -> tuple[list[dg.RunRequest], str | None]:
        with dg.instance_for_test() as instance:
            data = sensor.evaluate_tick(dg.build_sensor_context(cursor=cursor, instance=instance))
        return list(data.run_requests or []), data.cursor

    _, cursor = tick(None)  # baseline
    make_sdist(FixturePackage("fx-dep", "1.5rc1"), folder)  # a pre-release
    make_wheel(FixturePackage("fx-tool", "1.5"), folder)  # a wheel only: never built from
    requests, cursor = tick(cursor)
    assert requests == []
    assert json.loads(cursor or "{}")["fx"]["fx-dep"] == "1.0"
    make_sdist(FixturePackage("fx-tool", "1.6"), folder)
    requests, cursor = tick(cursor)
    assert [r.run_key for r in requests] == ["fx:fx-tool==1.6"]
