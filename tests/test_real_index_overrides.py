"""The shipped overrides against the real index (pinned): the pytest-asyncio 1.1.0 patch
example of the product brief, and one package taken as a pre-built wheel."""

from __future__ import annotations

import shutil
import tarfile
from pathlib import Path

import pytest

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.build.isolation import resolve_isolation
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.url import resolve_index_url
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.resolve.requirements import Constraints, parse_requirement
from fromager_dagster.core.settings.layout import default_paths
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.sources.archives import sha256_file

ROOT = Path(__file__).resolve().parents[1]
PATCH = "0001-remove-setup-cfg.patch"


@pytest.mark.network
def test_pytest_asyncio_patch_example_and_a_prebuilt_wheel(tmp_path: Path) -> None:
    overrides = tmp_path / "overrides"
    shutil.copytree(ROOT / "overrides", overrides)
    (overrides / "settings" / "pygments.yaml").write_text(
        "variants:\n  cpu:\n    pre_built: true\n", encoding="utf-8"
    )
    found = default_paths(root=tmp_path)
    settings = load_settings(settings_file=found[0], settings_dir=found[1], patches_dir=found[2])
    index = IndexClient(resolve_index_url(None))
    out = OutputLayout(tmp_path / "out")
    result = bootstrap(
        [parse_requirement("pytest-asyncio==1.1.0")],
        index=index,
        constraints=Constraints.from_files(
            [str(ROOT / "tests/data/pytest-asyncio-constraints.txt")]
        ),
        layout=out,
        options=BootstrapOptions(jobs=2, isolate=resolve_isolation(None)),
        settings=settings,
    )
    # the patch: named in the log, setup.cfg and write_to gone from the re-packed sdist
    log = out.log_path("pytest-asyncio", "1.1.0").read_text(encoding="utf-8")
    assert f"applying patch {overrides}/patches/pytest_asyncio-1.1.0/{PATCH}" in log
    with tarfile.open(out.repacked_sdist("pytest-asyncio", "1.1.0")) as tf:
        names = tf.getnames()
        assert "pytest_asyncio-1.1.0/pyproject.toml" in names
        assert "pytest_asyncio-1.1.0/setup.cfg" not in names
        pyproject = tf.extractfile("pytest_asyncio-1.1.0/pyproject.toml").read().decode()  # type: ignore[union-attr]
    assert "write_to" not in pyproject
    assert "pytest-asyncio==1.1.0" in result.built
    assert list(out.wheels_downloads.glob("pytest_asyncio-1.1.0-0-*.whl"))
    # the pre-built wheel: downloaded as the index lists it, recorded as pre-built
    assert result.prebuilt == ["pygments==2.21.0"]
    (wheel,) = out.wheels_prebuilt.glob("pygments-2.21.0-*.whl")
    listed = {f.filename: f.sha256 for f in index.files("pygments")}
    assert listed[wheel.name] == sha256_file(wheel)
    node = result.graph.nodes["pygments==2.21.0"]
    assert node.pre_built and node.download_url.endswith(wheel.name)
