"""Provenance through Dagster: each wheel asset writes and shows it, the collection's SBOM asset
and its provenance_verified check."""

from __future__ import annotations

import json
from pathlib import Path

import dagster as dg

from fromager_dagster.defs.graph_state import wheel_keys
from fromager_dagster.defs.location import build_definitions
from fromager_dagster.defs.provenance import CHECK_NAME, sbom_key
from fromager_dagster.defs.resources import FromagerResource
from tests.defs.conftest import CHAIN, discover


def test_wheel_assets_write_provenance_and_the_collection_sbom_is_checked(
    upstream: tuple[Path, str], tmp_path: Path
) -> None:
    folder, url = upstream
    out = tmp_path / "out"
    col = discover(CHAIN, folder, url, out)
    defs = build_definitions({"fx": col}, fromager=FromagerResource(network_isolation=False))
    job = defs.resolve_implicit_global_asset_job_def()
    selection = [*wheel_keys(defs, col), sbom_key(col)]
    assert sbom_key(col) not in wheel_keys(defs, col)  # not in the wheels' group
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(instance=instance, asset_selection=selection)
        assert result.success
        [mat] = result.asset_materializations_for_node("build_fx_fx_app_1_0")
        path = Path(mat.metadata["provenance_path"].value)
        assert path == out / "wheels-repo/provenance/fx_app-1.0-0-py3-none-any.whl.intoto.json"
        assert mat.metadata["provenance_signed"].value is False
        statement = json.loads(path.read_text())
        run = statement["predicate"]["runDetails"]["metadata"]
        assert run["invocationId"] == result.run_id
        params = statement["predicate"]["buildDefinition"]["externalParameters"]
        assert params == {"requirement": "fx-app==1.0", "variant": "cpu", "collection": "fx"}
        verified = [c for c in result.get_asset_check_evaluations() if c.check_name == CHECK_NAME]
        assert [c.passed for c in verified] == [True], verified
        sbom = json.loads((out / "wheels-repo/sboms/fx.cdx.json").read_text())
        assert sorted(c["bom-ref"] for c in sbom["components"]) == [
            "fx-app==1.0",
            "fx-dep==1.0",
            "fx-lib==1.0",
            "fx-tool==1.0",
        ]

        wheel = out / "wheels-repo/downloads/fx_app-1.0-0-py3-none-any.whl"
        data = wheel.read_bytes()
        wheel.write_bytes(data[:-1] + bytes([data[-1] ^ 1]))
        again = job.execute_in_process(
            instance=instance, asset_selection=[sbom_key(col)], raise_on_error=False
        )
    [check] = [c for c in again.get_asset_check_evaluations() if c.check_name == CHECK_NAME]
    assert not check.passed
    assert "fx_app-1.0-0-py3-none-any.whl: sha256" in check.metadata["problems"].value
