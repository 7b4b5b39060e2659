"""The real thing: `fromager-dagster ui` (dagster dev) on 127.0.0.1, runs launched over GraphQL.

As the UI does: launch the discovery job, wait for the code location to grow the build job
(discovery publishes the graph and asks the webserver to reload), launch it, poll both runs
to SUCCESS and read the wheel materializations from the instance.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import requests

from fromager_dagster.defs.collections import load_collections
from fromager_dagster.defs.discovery import default_config, discovery_op_name
from tests.defs.conftest import CHAIN
from tests.fixtures.packages import make_index

LOCATION = "fromager_dagster.definitions"

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
    ... on InvalidSubsetError { message }
  }
}
"""
RUN_STATUS = """
query Status($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }
"""
GROUP_ASSETS = """
query Group($group: AssetGroupSelector!) { assetNodes(group: $group) { assetKey { path } } }
"""
JOBS = """
query Jobs {
  repositoriesOrError {
    __typename
    ... on RepositoryConnection { nodes { name location { name } jobs { name } } }
  }
}
"""

#: The repository's own collections.yaml (the library no longer looks for it there).
REPO_FILE = Path(__file__).resolve().parents[2] / "collections.yaml"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Webserver:
    """`fromager-dagster ui` in its own process group; stopped by pid with SIGINT."""

    def __init__(self, output: Path, env: dict[str, str], log: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        command = [sys.executable, "-m", "fromager_dagster", "ui", "-O", str(output)]
        self.proc = subprocess.Popen(
            [*command, "--port", str(self.port), "--host", "127.0.0.1"],
            env=env,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180) -> float:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            assert self.proc.poll() is None, self.log.read_text()[-3000:]
            try:
                if requests.get(self.url + "/server_info", timeout=2).ok:
                    return time.monotonic() - start
            except requests.ConnectionError:
                pass
            time.sleep(0.5)
        raise AssertionError(f"webserver not ready in {timeout}s:\n{self.log.read_text()[-3000:]}")

    def graphql(self, query: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        response = requests.post(
            self.url + "/graphql", json={"query": query, "variables": variables or {}}, timeout=60
        )
        response.raise_for_status()
        body = response.json()
        assert "errors" not in body, body
        return body["data"]  # type: ignore[no-any-return]

    def jobs(self) -> tuple[str, set[str]]:
        data = self.graphql(JOBS)["repositoriesOrError"]
        [repo] = [r for r in data["nodes"] if r["location"]["name"] == LOCATION]
        return repo["name"], {j["name"] for j in repo["jobs"]}

    def wait_job(self, job: str, timeout: float = 120) -> str:
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            repo, jobs = self.jobs()
            if job in jobs:
                return repo
            time.sleep(1)
        raise AssertionError(f"job {job} never appeared; jobs: {self.jobs()[1]}")

    def wait_group(self, group: str, timeout: float = 120) -> tuple[str, list[list[str]]]:
        """The repository name and the asset keys of ``group`` once the location has them."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            repo, _ = self.jobs()
            selector = {
                "groupName": group,
                "repositoryName": repo,
                "repositoryLocationName": LOCATION,
            }
            nodes = self.graphql(GROUP_ASSETS, {"group": selector})["assetNodes"]
            if nodes:
                return repo, sorted(n["assetKey"]["path"] for n in nodes)
            time.sleep(1)
        raise AssertionError(f"asset group {group} never appeared")

    def launch(self, job: str, run_config: dict[str, Any], *, group: str | None = None) -> str:
        """Launch ``job``; with ``group``, a run of the implicit asset job materializing the
        group's assets, as the UI's "Materialize all" does."""
        if group is None:
            repo, assets = self.wait_job(job), None
        else:
            repo, assets = self.wait_group(group)
        selector: dict[str, Any] = {
            "repositoryLocationName": LOCATION,
            "repositoryName": repo,
            "jobName": job,
        }
        if assets is not None:
            selector["assetSelection"] = [{"path": path} for path in assets]
        params = {"selector": selector, "runConfigData": run_config}
        result = self.graphql(LAUNCH, {"params": params})["launchRun"]
        assert result["__typename"] == "LaunchRunSuccess", result
        return str(result["run"]["runId"])

    def wait_run(self, run_id: str, timeout: float) -> str:
        start = time.monotonic()
        status = ""
        while time.monotonic() - start < timeout:
            status = self.graphql(RUN_STATUS, {"id": run_id})["runOrError"]["status"]
            if status in ("SUCCESS", "FAILURE", "CANCELED"):
                return str(status)
            time.sleep(1)
        raise AssertionError(f"run {run_id} still {status} after {timeout}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@contextmanager
def _serve(tmp_path: Path, **env_vars: str) -> Iterator[Webserver]:
    home = tmp_path / "dagster-home"
    env = {**os.environ, "DAGSTER_HOME": str(home), **env_vars}
    env.pop("FROMAGER_DAGSTER_WEBSERVER_URL", None)  # `ui` sets it to its own URL
    server = Webserver(tmp_path / "ui-out", env, tmp_path / "webserver.log")
    try:
        server.wait_ready()
        yield server
    finally:
        server.stop()
    assert server.proc.returncode is not None


def _discover_then_build(
    server: Webserver, collections: Path, name: str, *, timeout: float
) -> list[str]:
    """Launch discovery, then materialize the collection's wheel group, as the UI does; the
    run ids, both runs checked SUCCESS."""
    collection = load_collections(collections)[name]
    run_config: dict[str, Any] = {
        "ops": {discovery_op_name(collection): {"config": default_config(collection)}}
    }
    discover = server.launch(f"discover_{collection.ident}_job", run_config)
    assert server.wait_run(discover, timeout) == "SUCCESS"
    build = server.launch("__ASSET_JOB", {}, group=collection.ident)
    assert server.wait_run(build, timeout) == "SUCCESS"
    return [discover, build]


def _wheel_materializations(home: Path, run_id: str) -> dict[str, dict[str, Any]]:
    """``name==version`` -> metadata of each wheel materialization of run ``run_id``."""
    with dg.DagsterInstance.from_config(str(home)) as instance:
        records = instance.get_records_for_run(
            run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
        ).records
    found = {}
    for record in records:
        mat = record.event_log_entry.asset_materialization
        assert mat is not None
        if mat.asset_key.path[0] == "wheels":
            meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
            found[str(meta["requirement"])] = meta
    return found


def test_fixture_collection_through_the_webserver(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = upstream
    make_index(CHAIN, folder)
    collections = tmp_path / "collections.yaml"
    collections.write_text(
        "collections:\n  fx:\n    requirements: [fx-app]\n"
        f"    output_dir: {json.dumps(str(tmp_path / 'out'))}\n"
        f"    index_url: {json.dumps(url)}\n"
    )
    started = time.monotonic()
    with _serve(tmp_path, FROMAGER_DAGSTER_COLLECTIONS=str(collections)) as server:
        _, jobs = server.jobs()
        assert jobs - {"__ASSET_JOB"} == {"discover_fx_job"}  # no graph yet: discovery only
        discover, build = _discover_then_build(server, collections, "fx", timeout=300)
    wheels = _wheel_materializations(tmp_path / "dagster-home", build)
    assert sorted(wheels) == ["fx-app==1.0", "fx-dep==1.0", "fx-lib==1.0", "fx-tool==1.0"]
    for meta in wheels.values():
        assert Path(meta["wheel_path"]).is_file() and "-1.0-0-" in Path(meta["wheel_path"]).name
    assert _wheel_materializations(tmp_path / "dagster-home", discover) == {}
    print(f"webserver fixture round trip: {time.monotonic() - started:.1f}s")


@pytest.mark.network
def test_stevedore_through_the_webserver(tmp_path: Path) -> None:
    """The repository's stevedore collection from the real index: setuptools, pbr, stevedore."""
    with _serve(
        tmp_path,
        FROMAGER_DAGSTER_COLLECTIONS=str(REPO_FILE),
        FROMAGER_DAGSTER_HOME=str(tmp_path / "collections-out"),
    ) as server:
        _, build = _discover_then_build(server, REPO_FILE, "stevedore", timeout=900)
    wheels = _wheel_materializations(tmp_path / "dagster-home", build)
    assert sorted(w.split("==")[0] for w in wheels) == ["pbr", "setuptools", "stevedore"]
