"""The wheels' optional ``reproducible`` check: skipped unless turned on (per collection in
collections.yaml, or from the launchpad's resource config); when on, each wheel is rebuilt in
a scratch folder and compared, and a backend that writes the clock and random bytes into its
wheel fails the check with that file named."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.defs.collections import parse_collections
from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.reproducible_check import CHECK_NAME
from fromager_dagster.defs.resources import FromagerResource
from tests.defs.conftest import CHAIN, discover
from tests.fixtures.packages import FixturePackage

# fx-app's backend writes fx_app/build-stamp.txt: the clock and random bytes, every build
NOISY = [
    *CHAIN[:3],
    FixturePackage("fx-app", build_system_requires=("fx-lib",), noise_file="build-stamp.txt"),
]


def _run(col: Any, run_config: dict[str, Any] | None = None) -> dg.ExecuteInProcessResult:
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    job = defs.resolve_implicit_global_asset_job_def()
    with dg.instance_for_test() as instance:
        return job.execute_in_process(
            instance=instance,
            asset_selection=wheel_keys(defs, col),
            run_config=run_config or {},
            raise_on_error=False,
        )


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {
        c.asset_key.path[-2]: c
        for c in result.get_asset_check_evaluations()
        if c.check_name == CHECK_NAME
    }


def _launchpad(on: bool) -> dict[str, Any]:
    return {"resources": {"fromager": {"config": {"reproducible_check": on}}}}


def test_the_check_is_defined_for_every_wheel_and_skipped_when_off(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = upstream
    col = discover(CHAIN, folder, url, tmp_path / "out")
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    checked = {
        key.asset_key.path[-2]
        for c in defs.asset_checks or []
        for key in c.check_keys  # type: ignore[union-attr]
        if key.name == CHECK_NAME
    }
    assert checked == {"fx-app", "fx-lib", "fx-tool", "fx-dep"}
    result = _run(col)
    assert result.success
    assert _checks(result) == {}  # planned, no result: skipped
    assert [c.check_name for c in result.get_asset_check_evaluations()] == [
        "installs_and_imports"
    ] * 4
    assert not list((tmp_path / "out/wheels-repo/provenance").glob("*.reproducibility.json"))


def test_on_per_collection_a_deterministic_build_passes(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = upstream
    out = tmp_path / "out"
    col = replace(discover(CHAIN, folder, url, out), reproducible_check=True)
    result = _run(col)
    assert result.success
    checks = _checks(result)
    assert sorted(checks) == ["fx-app", "fx-dep", "fx-lib", "fx-tool"]
    assert all(c.passed for c in checks.values()), checks
    app = checks["fx-app"]
    wheel = out / "wheels-repo/downloads/fx_app-1.0-0-py3-none-any.whl"
    assert app.metadata["wheel_sha256"].value == app.metadata["rebuilt_sha256"].value
    assert app.metadata["differing_files"].value == "none"
    compared = app.metadata["compared"].value
    assert compared.startswith(f"sha256 of {wheel.name} in wheels-repo/downloads against a rebuild")
    assert "sandbox none" in compared
    record = json.loads(Path(app.metadata["record_path"].value).read_text())
    assert record["reproducible"] is True and record["reason"] == ""
    assert not list((out / "work-dir").glob("rebuild-*"))  # the scratch folders are gone


def test_from_the_launchpad_a_noisy_build_fails_naming_the_file(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = upstream
    out = tmp_path / "out"
    col = discover(NOISY, folder, url, out)  # the collection leaves the check off
    result = _run(col, _launchpad(True))
    assert result.success  # a check's failure is not the run's
    checks = _checks(result)
    assert [n for n, c in sorted(checks.items()) if not c.passed] == ["fx-app"], checks
    app = checks["fx-app"]
    assert "fx_app/build-stamp.txt" in app.description
    assert app.description.startswith("fx_app-1.0-0-py3-none-any.whl is not reproducible: ")
    differing = app.metadata["differing_files"].value
    assert "- `fx_app/build-stamp.txt`" in differing and "RECORD" in differing
    assert "pyproject" not in differing and "__init__" not in differing
    assert app.metadata["wheel_sha256"].value != app.metadata["rebuilt_sha256"].value
    assert "build-stamp.txt" in app.metadata["not_reproducible_reason"].value
    record = json.loads(
        (
            out / "wheels-repo/provenance/fx_app-1.0-0-py3-none-any.whl.reproducibility.json"
        ).read_text()
    )
    assert record["reproducible"] is False and "fx_app/build-stamp.txt" in record["differing"]

    # the launchpad's false wins over a collection that turns it on: skipped, and the wheel
    # (reused, the same bytes) is still recorded as not reproducible, which its asset shows
    again = _run(replace(col, reproducible_check=True), _launchpad(False))
    assert again.success and _checks(again) == {}
    [mat] = again.asset_materializations_for_node("build_fx_fx_app_1_0")
    assert mat.metadata["reproducible"].value is False
    assert "build-stamp.txt" in mat.metadata["not_reproducible_reason"].value


def test_the_collection_key_is_read_and_checked(tmp_path: Path) -> None:
    base = {"requirements": ["fx-app"]}
    cols = parse_collections(
        {"collections": {"a": {**base, "reproducible_check": True}, "b": base}},
        tmp_path / "collections.yaml",
    )
    assert cols["a"].reproducible_check is True and cols["b"].reproducible_check is False
    with pytest.raises(ConfigError, match=r"collections\.a\.reproducible_check: expected true"):
        parse_collections(
            {"collections": {"a": {**base, "reproducible_check": "yes"}}},
            tmp_path / "collections.yaml",
        )
