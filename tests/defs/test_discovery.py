"""The discovery job: writes the graph files, publishes the graph as state, grows the assets."""

import json
from pathlib import Path

import dagster as dg
import pytest

from fromager_dagster.defs.collections import Collection
from fromager_dagster.defs.graph_state import state_key, wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.resources import FromagerResource
from tests.defs.conftest import CHAIN
from tests.fixtures.packages import make_index


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
        assert "| 1 |" in meta["preview"].value
        version = meta["state_version"].value
        storage = instance.defs_state_storage
        assert storage is not None
        info = storage.get_latest_defs_state_info()
        assert info is not None and info.get_version(state_key(col)) == version
        # the published state, not the output folder, is what the definitions now grow from
        col.graph_path.unlink()
        grown = build_definitions({"fx": col}, fromager=resource)
        keys = {s.key for a in grown.assets or [] for s in a.specs}  # type: ignore[union-attr]
        assert dg.AssetKey(["wheels", "cpu", "fx-app", "1.0"]) in keys
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
    assert "WorkspaceLocationEntry" in answer
    assert seen[0]["path"] == "/graphql"
    assert seen[0]["variables"] == {"location": "loc"}
    assert "reloadRepositoryLocation(repositoryLocationName: $location)" in str(seen[0]["query"])
