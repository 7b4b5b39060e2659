"""The UI as an engineer uses it, in a real browser: Debian's chromium driven by playwright.

`fromager-dagster ui` serves an instance where the CLI already bootstrapped the fixture
collection ``fx``. The CLI's runs first: on the Overview timeline, a build step's stdout with
its build log (and no other step's), "Re-execute all" without a warning. Then the browser
launches fx's discovery from the launchpad, then "Materialize all" on the group, reads the
graph's labels, a wheel's page (build log, check), the run list (CLI and UI runs, one
collection tag) and, for the collection ``bad`` (added to the location then) whose package
fails to build, the failed run's page with its log tail, the failed step's stdout and the
asset's page with the log tail. Screenshots go to the test's output folder (and are the
pictures of docs/ui.md). The server is stopped by its pid.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from fromager_dagster.defs.collections import Collection
from fromager_dagster.defs.wheels import wheel_op_name
from tests.defs.conftest import CHAIN
from tests.defs.conftest import upstream as upstream  # the fixture index
from tests.defs.test_webserver import LOCATION, Webserver
from tests.fixtures.packages import FixturePackage, make_index

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # CI installs it (.ci/run, the test extra): missing there is a failure
    if os.environ.get("CI"):
        raise
    pytest.skip("playwright is not installed", allow_module_level=True)
if CHROMIUM is None and not os.environ.get("CI"):
    pytest.skip("Debian's chromium is not installed", allow_module_level=True)

REPO = f"__repository__@{LOCATION}"
FX = Collection(name="fx", requirements=("fx-app",), output_dir=Path("."), index_url="")
RUNS = """
query Runs { runsOrError { ... on Runs { results {
  runId jobName status tags { key value } repositoryOrigin { repositoryLocationName }
} } } }
"""
RELOAD = """
mutation Reload($location: String!) { reloadRepositoryLocation(repositoryLocationName: $location) {
  __typename
} }
"""
#: What the UI says when a run's job no longer matches the loaded one (useJobAvailabilityError)
REEXECUTE_WARNINGS = ("different code location", "The original run loaded", "may be different")


def _runs(server: Webserver) -> list[dict[str, Any]]:
    found = server.graphql(RUNS)["runsOrError"]["results"]
    for run in found:
        run["tags"] = {t["key"]: t["value"] for t in run["tags"]}
    return found  # type: ignore[no-any-return]


def _new_run(server: Webserver, job: str, before: set[str], timeout: float = 60) -> str:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        fresh = [r for r in _runs(server) if r["jobName"] == job and r["runId"] not in before]
        if fresh:
            return str(fresh[0]["runId"])
        time.sleep(0.5)
    raise AssertionError(f"no new run of {job} in {timeout}s")


def test_the_ui_as_a_workbench(upstream: tuple[Path, str], tmp_path: Path) -> None:
    folder, url = upstream
    make_index([*CHAIN, FixturePackage("fx-bad", fail_build=True)], folder)
    shots = tmp_path / "screenshots"
    shots.mkdir()
    home, out = tmp_path / "dagster-home", tmp_path / "out"
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    env.pop("FROMAGER_DAGSTER_WEBSERVER_URL", None)
    env.pop("FROMAGER_DAGSTER_COLLECTIONS", None)
    cli = [sys.executable, "-m", "fromager_dagster", "bootstrap", "fx-app", "--collection", "fx"]
    cli += ["--index-url", url, "--no-network-isolation", "-j", "2", "-O", str(out)]
    done = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-3000:]

    # the UI serves the CLI's collection; later, one whose only package fails to build
    collections = yaml.safe_load((out / "collections.yaml").read_text())
    served = tmp_path / "collections.yaml"
    served.write_text(yaml.safe_dump(collections))
    collections["collections"]["bad"] = {
        "requirements": ["fx-bad"],
        "output_dir": str(tmp_path / "out-bad"),
        "index_url": url,
    }
    (tmp_path / "out-bad").mkdir()
    env["FROMAGER_DAGSTER_COLLECTIONS"] = str(served)
    server = Webserver(out, env, tmp_path / "webserver.log")
    try:
        server.wait_ready()
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            try:
                page = browser.new_page(viewport={"width": 1600, "height": 1000})
                _walk(page, server, shots, lambda: served.write_text(yaml.safe_dump(collections)))
            finally:
                browser.close()
    finally:
        server.stop()
        print(f"screenshots: {shots}")
    assert server.proc.returncode is not None


def _dismiss_welcome(page: Any) -> None:
    """A fresh instance greets with a "Join the Dagster community" dialog: skip it."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=10_000)
    except PlaywrightTimeout:
        return
    skip.click()


def _markdown_showing(page: Any, text: str, shot: Path) -> None:
    """Open the page's long Markdown metadata values ("[Show Markdown]") until one shows
    ``text``; screenshot it."""
    buttons = page.get_by_text("[Show Markdown]")
    buttons.first.wait_for(timeout=30_000)
    for i in range(buttons.count()):
        buttons.nth(i).click()
        dialog = page.get_by_role("dialog")
        dialog.wait_for(timeout=10_000)
        if text in dialog.inner_text():
            page.wait_for_timeout(500)  # the dialog fades in
            page.screenshot(path=str(shot))
            page.keyboard.press("Escape")
            return
        page.keyboard.press("Escape")
        dialog.wait_for(state="detached", timeout=10_000)
    raise AssertionError(f"no Markdown value shows {text!r}")


def _step_log(page: Any, base: str, run: str, step: str, shot: Path, *, shows: str) -> str:
    """The step's captured stdout on its run's page (the step selected, "stdout"), once it
    shows ``shows``; screenshot it."""
    page.goto(f"{base}/runs/{run}?logType=stdout")
    page.get_by_text(step, exact=True).first.click()  # the step's box in the run's chart
    panel = page.locator("[data-content=true]", has_text=shows)
    try:
        panel.first.wait_for(timeout=60_000)
    except PlaywrightTimeout:
        page.screenshot(path=str(shot.with_suffix(".failed.png")))
        raise
    page.screenshot(path=str(shot))
    return str(panel.first.inner_text())


def _cli_runs_first_class(page: Any, server: Webserver, shots: Path) -> None:
    """Runs the CLI launched, before the UI launched any: on the Overview timeline, their step
    pages show their build logs, and one re-executes from the UI without a warning."""
    base = server.url
    cli = [r for r in _runs(server) if r["tags"].get("fromager/cli") == "bootstrap"]
    assert cli and all(r["repositoryOrigin"]["repositoryLocationName"] == LOCATION for r in cli)
    [cli_discovery] = [r["runId"] for r in cli if r["jobName"] == "discover_fx_job"]
    [cli_build] = [r for r in cli if r["jobName"] != "discover_fx_job"]

    # the Overview timeline has a row for the job, and the CLI's run in it
    page.goto(f"{base}/overview/activity/timeline")
    _dismiss_welcome(page)
    chunk = page.locator(
        "xpath=//a[contains(@href, '/jobs/discover_fx_job')]"
        "/ancestor::div[.//*[contains(@class, 'chunk-popover-target')]][1]"
        "//*[contains(@class, 'chunk-popover-target')]"
    )
    chunk.first.wait_for(timeout=60_000)
    chunk.first.hover(force=True)
    page.locator(f"a[href='/runs/{cli_discovery}']").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "timeline.png"))

    # a wheel step's page: the step's stdout is that package's build log, and only its (the
    # build run built fx-app; discovery had built the others, which the run reused)
    text = _step_log(
        page,
        base,
        cli_build["runId"],
        wheel_op_name(FX, "fx-app", "1.0"),
        shots / "step-stdout.png",
        shows="build log of fx-app",
    )
    assert "===== build log of fx-app==1.0" in text, text[:2000]
    assert "fixture-backend: build_wheel fx-app 1.0" in text
    for other in ("fx-tool", "fx-dep", "fx-lib"):
        assert f"build log of {other}==" not in text and f"{other}==1.0: wheel reused" not in text

    # re-execute the CLI's build run from its page: the job is the loaded one, no warning
    page.goto(f"{base}/runs/{cli_build['runId']}")
    button = page.get_by_role("button", name=re.compile(r"Re-execute")).first
    button.wait_for(timeout=60_000)
    page.wait_for_timeout(2_000)  # the job's availability is worked out once the run loaded
    button.hover()
    page.wait_for_timeout(1_000)
    body = page.locator("body").inner_text()
    assert not [w for w in REEXECUTE_WARNINGS if w in body], body[-2000:]
    assert button.locator("[aria-label='warning']").count() == 0
    page.screenshot(path=str(shots / "cli-run.png"))
    before = {r["runId"] for r in _runs(server)}
    button.click()
    again = _new_run(server, cli_build["jobName"], before)
    assert server.wait_run(again, 300) == "SUCCESS"
    [rerun] = [r for r in _runs(server) if r["runId"] == again]
    assert rerun["tags"].get("dagster/parent_run_id") == cli_build["runId"]


def _walk(page: Any, server: Webserver, shots: Path, add_bad: Callable[[], object]) -> None:
    base = server.url
    _cli_runs_first_class(page, server, shots)  # the location is the one the CLI ran
    add_bad()  # a second collection changes the location's jobs: reload it
    server.graphql(RELOAD, {"location": LOCATION})
    server.wait_job("discover_bad_job")
    before = {r["runId"] for r in _runs(server)}

    # 1. discovery from the launchpad
    page.goto(f"{base}/locations/{REPO}/jobs/discover_fx_job/playground")
    _dismiss_welcome(page)
    page.get_by_text("fromager/collection: fx").first.wait_for(timeout=30_000)  # the job's tag
    page.get_by_role("button", name=re.compile("Launch run", re.I)).click()
    discover = _new_run(server, "discover_fx_job", before)
    assert server.wait_run(discover, 300) == "SUCCESS"
    page.wait_for_url(re.compile(r"/runs/"), timeout=30_000)
    page.screenshot(path=str(shots / "discovery-run.png"))

    # 2. the group's graph reads as packages and versions, downstream of discovery
    page.goto(f"{base}/locations/{REPO}/asset-groups/fx")
    for label in ("fx-app-1.0", "fx-lib-1.0", "fx-tool-1.0", "fx-dep-1.0"):
        page.get_by_text(label, exact=True).first.wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "wheels-group.png"))

    # 3. "Materialize all" builds the group
    before = {r["runId"] for r in _runs(server)}
    page.get_by_role("button", name=re.compile("Materialize all")).first.click()
    build = _new_run(server, "__ASSET_JOB", before)
    assert server.wait_run(build, 300) == "SUCCESS"

    # 4. CLI and UI runs carry one collection tag
    runs = _runs(server)
    fx_runs = [r for r in runs if r["tags"].get("fromager/collection") == "fx"]
    assert {r["runId"] for r in fx_runs} >= {discover, build}
    assert any(r["tags"].get("fromager/cli") == "bootstrap" for r in fx_runs)  # the CLI's
    page.goto(f"{base}/runs?q%5B0%5D=tag%3Afromager%2Fcollection%3Dfx")
    page.get_by_text(build[:8]).first.wait_for(timeout=30_000)
    assert len(fx_runs) >= 4  # CLI: discovery + build; UI: discovery + build
    page.screenshot(path=str(shots / "runs.png"))

    # 5. a wheel's page: its build log's last lines, its check
    page.goto(f"{base}/assets/wheels/cpu/fx-lib/fx-lib-1.0")
    page.get_by_text("build_log_tail").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "wheel-page.png"), full_page=True)
    _markdown_showing(page, "fixture-backend: build_wheel fx-lib", shots / "wheel-build-log.png")
    page.goto(f"{base}/assets/wheels/cpu/fx-lib/fx-lib-1.0?view=checks")
    page.get_by_text("installs_and_imports").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "wheel-check.png"))

    # 6. discovery's page: the table of nodes
    page.goto(f"{base}/assets/discovery/fx/fx-graph")
    page.get_by_text("graph_nodes").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "discovery-page.png"), full_page=True)

    # 7. a package that fails to build: the failed run's page shows its log tail
    bad_discovery = server.launch("discover_bad_job", {})
    assert server.wait_run(bad_discovery, 300) == "SUCCESS"
    failed = server.launch("__ASSET_JOB", {}, group="bad")
    assert server.wait_run(failed, 300) == "FAILURE"
    page.goto(f"{base}/runs/{failed}")
    page.get_by_text("STEP_FAILURE", exact=False).first.wait_for(timeout=60_000)
    page.screenshot(path=str(shots / "failed-run.png"))
    _markdown_showing(page, "RuntimeError: fixture build failure", shots / "failed-log-tail.png")
    bad = replace(FX, name="bad")
    text = _step_log(
        page,
        base,
        failed,
        wheel_op_name(bad, "fx-bad", "1.0"),
        shots / "failed-step-stdout.png",
        shows="RuntimeError: fixture build failure",
    )
    assert "===== build log of fx-bad==1.0" in text
    # the asset page: the failed build's observation carries the same log tail
    page.goto(f"{base}/assets/wheels/cpu/fx-bad/fx-bad-1.0?view=events")
    page.get_by_text("log_tail").first.wait_for(timeout=30_000)
    page.screenshot(path=str(shots / "failed-asset.png"))
    tail_shot = shots / "failed-asset-log-tail.png"
    _markdown_showing(page, "RuntimeError: fixture build failure", tail_shot)
