"""The discovery job: writes the graph files, publishes the graph as state, grows the assets."""

import json
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.defs.automation import nightly_schedule
from fromager_dagster.defs.collections import Collection, load_collections
from fromager_dagster.defs.discovery import (
    discover_job_name,
    discovery_key,
    discovery_op_name,
    discovery_run_config,
)
from fromager_dagster.defs.graph_state import state_key, wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource
from tests.defs.conftest import CHAIN
from tests.fixtures.packages import FixturePackage, make_index


def test_discover_job_publishes_graph_state(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = upstream
    make_index(CHAIN, folder)
    monkeypatch.delenv("FROMAGER_DAGSTER_WEBSERVER_URL", raising=False)
    col = Collection(
        name="fx", requirements=("fx-app",), output_dir=tmp_path / "out", index_url=url
    )
    resource = FromagerResource(network_isolation=False)
    with dg.instance_for_test() as instance:
        defs = build_definitions({"fx": col}, fromager=resource)
        assert {j.name for j in defs.jobs or []} == {"discover_fx_job"}  # no graph yet
        result = defs.resolve_job_def("discover_fx_job").execute_in_process(instance=instance)
        assert result.success
        [mat] = result.asset_materializations_for_node("discover_fx")
        meta = mat.metadata
        assert meta["nodes"].value == 4
        assert meta["edges"].value == 4  # toplevel, 2 build-system, 1 install
        assert Path(meta["graph_path"].value).name == "graph.json"
        # fx-dep is reached only through a build requirement: not a runtime constraint
        assert Path(meta["constraints_path"].value).read_text().split() == ["fx-app==1.0"]
        nodes = {(r.data["name"], r.data["asset_key"]) for r in meta["graph_nodes"].value.records}
        assert ("fx-app", "wheels/cpu/fx-app/fx-app-1.0") in nodes and len(nodes) == 4
        assert str(meta["changes"].value).startswith("first discovery")
        assert all(v.value != "" for v in meta.values())
        assert "reused_for_discovery" not in meta  # empty lists are left out
        assert "reloadRepositoryLocation" not in str(meta["reload"].value)
        version = str(meta["state_version"].value).split("`")[1]
        storage = instance.defs_state_storage
        assert storage is not None
        info = storage.get_latest_defs_state_info()
        assert info is not None and info.get_version(state_key(col)) == version
        # the published state, not the output folder, is what the definitions now grow from
        col.graph_path.unlink()
        grown = build_definitions({"fx": col}, fromager=resource)
        keys = {s.key for a in grown.assets or [] for s in a.specs}  # type: ignore[union-attr]
        assert dg.AssetKey(["wheels", "cpu", "fx-app", "fx-app-1.0"]) in keys
        assert {j.name for j in grown.jobs or []} == {"discover_fx_job"}
        assert len(wheel_keys(grown, col)) == 4  # every wheel of CHAIN: what a build selects
    # without state storage in context and no graph.json: discovery only
    bare = build_definitions({"fx": col}, fromager=resource)
    assert {j.name for j in bare.jobs or []} == {"discover_fx_job"}
    assert json.loads((tmp_path / "out" / "work-dir" / "build-order.json").read_text())


def test_reload_location_posts_the_graphql_mutation() -> None:
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from fromager_dagster.defs.graph_state import reload_location

    seen: list[dict[str, object]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen.append({"path": self.path, **body})
            reply = {"data": {"reloadRepositoryLocation": {"__typename": "WorkspaceLocationEntry"}}}
            data = json.dumps(reply).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        answer = reload_location(f"http://127.0.0.1:{server.server_port}", "loc")
    finally:
        server.shutdown()
        server.server_close()
    assert answer == "code location loc reloaded onto the new graph"  # a sentence, no blob
    assert seen[0]["path"] == "/graphql"
    assert seen[0]["variables"] == {"location": "loc"}
    assert "reloadRepositoryLocation(repositoryLocationName: $location)" in str(seen[0]["query"])


def _discover_with(
    col: Collection, instance: dg.DagsterInstance, **modes: object
) -> dg.ExecuteInProcessResult:
    defs = build_definitions({col.name: col}, fromager=FromagerResource(network_isolation=False))
    return defs.resolve_job_def(discover_job_name(col)).execute_in_process(
        instance=instance, run_config=discovery_run_config(col, **modes), raise_on_error=False
    )


def test_test_mode_keeps_going_materializes_the_graph_then_fails_the_run(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = upstream
    make_index([*CHAIN, FixturePackage("fx-old")], folder)
    monkeypatch.delenv("FROMAGER_DAGSTER_WEBSERVER_URL", raising=False)
    col = Collection(
        name="fx", requirements=("fx-app", "fx-old>=2"), output_dir=tmp_path / "out", index_url=url
    )
    work = col.output_dir / "work-dir"
    with dg.instance_for_test() as instance:
        plain = _discover_with(col, instance)  # without test mode: no graph at all
        assert not plain.success and not col.graph_path.exists()
        assert instance.get_latest_materialization_event(discovery_key(col)) is None

        result = _discover_with(col, instance, test_mode=True)
        assert not result.success  # something failed: the run says so
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        user = failure.step_failure_data.user_failure_data
        assert user is not None and user.description is not None
        assert user.description.startswith("test mode: 1 package(s) failed; graph.json was written")
        # ... but the graph was written, materialized and published all the same
        [report] = work.glob("test-mode-failures-*.json")
        [record] = json.loads(report.read_text())["failures"]  # fromager's fields
        assert list(record) == [
            "package", "version", "exception_type", "exception_message", "failure_type"
        ]  # fmt: skip
        assert (record["package"], record["exception_type"], record["failure_type"]) == (
            "fx-old", "ResolutionError", "resolution"
        )  # fmt: skip
        event = instance.get_latest_materialization_event(discovery_key(col))
        assert event is not None and event.asset_materialization is not None
        meta = event.asset_materialization.metadata
        assert meta["nodes"].value == 4  # the chain, discovered in spite of fx-old
        assert meta["failure_count"].value == 1
        assert str(meta["failures"].value).startswith("- fx-old: resolution failure: ")
        assert meta["failure_report"].value == str(report)
        assert meta["failure_records"].value == json.loads(report.read_text())
        assert user.metadata["failure_report"].value == str(report)
        assert {p.name for p in work.glob("*.json")} >= {"graph.json", "build-order.json"}
        storage = instance.defs_state_storage
        assert storage is not None
        info = storage.get_latest_defs_state_info()
        assert info is not None
        assert info.get_version(state_key(col)) in str(meta["state_version"].value)


@pytest.mark.parametrize("mode", ["multiple_versions", "skip_constraints"])
def test_modes_reach_the_engine_and_skip_constraints_txt(
    mode: str, upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, url = upstream
    make_index([FixturePackage("fx-tool"), FixturePackage("fx-tool", version="2.0")], folder)
    monkeypatch.delenv("FROMAGER_DAGSTER_WEBSERVER_URL", raising=False)
    col = Collection(
        name="fx", requirements=("fx-tool",), output_dir=tmp_path / "out", index_url=url
    )
    with dg.instance_for_test() as instance:
        result = _discover_with(col, instance, **{mode: True})
        assert result.success
        [mat] = result.asset_materializations_for_node(discovery_op_name(col))
    graph = json.loads(col.graph_path.read_text())
    versions = sorted(k for k in graph if k)
    assert versions == (
        ["fx-tool==1.0", "fx-tool==2.0"] if mode == "multiple_versions" else ["fx-tool==2.0"]
    )
    assert not (col.output_dir / "work-dir" / "constraints.txt").exists()
    assert mat.metadata["constraints_path"].value == f"none ({mode})"
    assert "failure_count" not in mat.metadata  # not in test mode


def test_a_collections_run_modes_reach_the_discovery_run_config(
    upstream: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """collections.yaml's test_mode and min_release_age are the launchpad's defaults and the
    nightly schedule's run config; a run with the job's defaults runs in test mode."""
    folder, url = upstream
    make_index([*CHAIN, FixturePackage("fx-old")], folder)
    monkeypatch.delenv("FROMAGER_DAGSTER_WEBSERVER_URL", raising=False)
    path = tmp_path / "collections.yaml"
    path.write_text(
        "collections:\n  fx:\n    requirements: [fx-app, fx-old>=2]\n    output_dir: out\n"
        f"    index_url: {url}\n    test_mode: true\n    min_release_age: 0\n"
    )
    col = load_collections(path)["fx"]
    expected = {"test_mode": True, "multiple_versions": False, "skip_constraints": False}
    expected["min_release_age"] = 0
    config = discovery_run_config(col)["ops"][discovery_op_name(col)]["config"]
    assert {k: config[k] for k in expected} == expected
    request = nightly_schedule(col).evaluate_tick(dg.build_schedule_context()).run_requests
    assert request and request[0].run_config == discovery_run_config(col)
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    with dg.instance_for_test() as instance:
        # the job's own defaults, as the launchpad shows them and the sensor's runs take them
        result = defs.resolve_job_def(discover_job_name(col)).execute_in_process(
            instance=instance, raise_on_error=False
        )
        assert not result.success  # fx-old failed: test mode kept going, then said so
        event = instance.get_latest_materialization_event(discovery_key(col))
        assert event is not None and event.asset_materialization is not None
        assert event.asset_materialization.metadata["failure_count"].value == 1
    [report] = (col.output_dir / "work-dir").glob("test-mode-failures-*.json")
    assert [r["package"] for r in json.loads(report.read_text())["failures"]] == ["fx-old"]
