"""Through Dagster: install dependencies built later in the same run, and reruns that skip
every up-to-date wheel."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest
from click.testing import CliRunner

from fromager_dagster import definitions
from fromager_dagster.cli.main import cli
from fromager_dagster.core.index import client, prefetch
from fromager_dagster.core.index.server import LocalIndexServer
from tests.cli.test_dagster_bootstrap import _cli
from tests.fixtures.packages import FixturePackage, make_index

# od-app and od-dep are install-only (nothing builds with them): both are built in the build
# run, and od-dep's build is slow, so od-app's wheel exists well before its install closure.
LATE = [
    FixturePackage("od-tool", record_env=("OD_FLAVOUR",)),
    FixturePackage("od-dep", sleep=2.0),
    FixturePackage("od-app", build_system_requires=("od-tool",), install_requires=("od-dep",)),
]


@pytest.fixture
def index(tmp_path: Path):  # type: ignore[no-untyped-def]
    make_index(LATE, tmp_path / "up")
    with LocalIndexServer([tmp_path / "up"]) as server:
        yield server.url


def _checks(home: Path) -> dict[str, bool]:
    with dg.DagsterInstance.from_config(str(home)) as instance:
        found: dict[str, bool] = {}
        for run in instance.get_runs():
            for entry in instance.all_logs(run.run_id):
                event = entry.dagster_event
                if event is not None and event.event_type_value == "ASSET_CHECK_EVALUATION":
                    data = event.event_specific_data
                    found[data.asset_key.path[2]] = data.passed
        return found


def test_install_check_waits_for_the_install_closure_and_reruns_build_nothing(
    index: str, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    args = ("bootstrap", "od-app", "--index-url", index, "--no-network-isolation", "-j", "2")
    cold = _cli(*args, "-O", str(out))
    assert cold.returncode == 0, cold.stderr
    assert "FAILED" not in cold.stderr
    # one check per wheel, all passed, in the one install-check step after the wheels
    assert _checks(out / "dagster-home") == {"od-tool": True, "od-dep": True, "od-app": True}
    assert "(success, " in cold.stderr and "; install check: 3 of 3 wheels passed" in cold.stderr

    warm = _cli(*args, "-O", str(out))
    assert warm.returncode == 0, warm.stderr
    assert "3 wheels up to date: no build step for them" in warm.stderr
    runs = [line for line in warm.stderr.splitlines() if line.startswith("dagster run: ")]
    assert [line.split()[3] for line in runs] == ["discover_od_app_job"]  # no build run
    assert "building " not in warm.stderr
    assert "3 packages, 0 built, 3 reused" in warm.stderr

    # a changed input: od-tool's settings give its build another environment, and its
    # wheel other bytes; what was built with it is rebuilt, and only that
    settings = tmp_path / "settings"
    settings.mkdir()
    (settings / "od_tool.yaml").write_text("env:\n  OD_FLAVOUR: b\n")
    again = _cli(*args, "-O", str(out), "--settings-dir", str(settings))
    assert again.returncode == 0, again.stderr
    assert "building od-tool==1.0" in again.stderr, again.stderr
    assert "building od-app==1.0" in again.stderr, again.stderr
    assert "building od-dep==1.0" not in again.stderr


def test_a_failed_install_check_fails_the_command_with_its_reason(tmp_path: Path) -> None:
    broken = FixturePackage("od-broken", module_body="raise RuntimeError('broken on import')\n")
    make_index([broken], tmp_path / "up")
    with LocalIndexServer([tmp_path / "up"]) as server:
        out = tmp_path / "out"
        args = ("bootstrap", "od-broken", "--index-url", server.url, "--no-network-isolation")
        result = _cli(*args, "-O", str(out))
    assert result.returncode == 1, result.stderr
    expected = (
        "error: od-broken==1.0: installs_and_imports: "
        "import od_broken failed: RuntimeError: broken on import"
    )
    assert expected in result.stderr.splitlines(), result.stderr
    assert _checks(out / "dagster-home") == {"od-broken": False}


def test_a_rerun_starts_cheaply(
    index: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rerun through Dagster (in this process, so that it can be watched) takes every page
    discovery reads from the helper that read them while the command started, builds the
    location's definitions once for its run, and logs nothing after the run's success."""

    out = tmp_path / "out"
    args = ["bootstrap", "od-app", "--index-url", index, "--no-network-isolation", "-O", str(out)]
    cold = _cli(*args)
    assert cold.returncode == 0, cold.stderr

    taken: list[str] = []
    requested: list[str] = []
    helpers: list[prefetch.PagePrefetch] = []
    take, start = client.take_prefetched, prefetch.PagePrefetch.start

    def counted_take(index_url: str, name: str):  # type: ignore[no-untyped-def]
        page = take(index_url, name)  # type: ignore[arg-type]
        (taken if page is not None else requested).append(name)
        return page

    def kept_start(index_url: str, names: list[str]):  # type: ignore[no-untyped-def]
        helper = start(index_url, names)
        helpers.append(helper)  # type: ignore[arg-type]
        return helper

    monkeypatch.setattr(client, "take_prefetched", counted_take)
    monkeypatch.setattr(prefetch.PagePrefetch, "start", kept_start)
    builds: list[object] = []
    build = definitions.build_definitions

    def counted_build(*args: object, **kwargs: object) -> dg.Definitions:
        builds.append(args)
        return build(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(definitions, "build_definitions", counted_build)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    warm = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert warm.exit_code == 0, warm.output
    assert "3 packages, 0 built, 3 reused" in warm.output
    assert sorted(taken) == ["od-app", "od-dep", "od-tool"] and requested == []
    # the helper went with the discovery run, and took its folder with it
    assert len(helpers) == 1 and helpers[0].process.returncode == 0
    assert not helpers[0].folder.exists()
    assert len(builds) == 1  # not once to learn what loading records and once to run
    with dg.DagsterInstance.from_config(str(out / "dagster-home")) as instance:
        latest = instance.get_runs(limit=1)[0]
        assert latest.job_name == "discover_od_app_job"
        kinds = [
            e.dagster_event.event_type_value
            for e in instance.all_logs(latest.run_id)
            if e.dagster_event is not None
        ]
    assert kinds[-1] == "PIPELINE_SUCCESS", kinds[-4:]
