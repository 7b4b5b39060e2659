"""The collection's install check: real environments, real uv, a real local index."""

from __future__ import annotations

import zipfile
from pathlib import Path

from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.repository.install_check import check_installs, installer_reason
from tests.fixtures.packages import FixturePackage, make_wheel


def _broken_wheel(folder: Path, name: str, version: str, body: str) -> Path:
    """A wheel whose only module runs ``body`` when imported."""
    stem = f"{name}-{version}"
    path = folder / f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}/__init__.py", body)
        zf.writestr(
            f"{stem}.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )
        zf.writestr(
            f"{stem}.dist-info/WHEEL",
            "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
        zf.writestr(f"{stem}.dist-info/RECORD", "")
    return path


def test_all_wheels_install_together_and_import(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path / "out").ensure()
    make_wheel(FixturePackage("ic-app", install_requires=("ic-lib",)), layout.wheels_downloads)
    make_wheel(FixturePackage("ic-lib"), layout.wheels_downloads)
    make_wheel(FixturePackage("ic-tool", version="1.0"), layout.wheels_downloads)
    make_wheel(FixturePackage("ic-tool", version="2.0"), layout.wheels_downloads)
    pins = [("ic-app", "1.0"), ("ic-lib", "1.0"), ("ic-tool", "1.0"), ("ic-tool", "2.0")]
    log = layout.logs_dir / "check.log"
    results = check_installs(layout, pins, isolate=False, log=log)
    assert [(r.key, r.passed) for r in results] == [
        ("ic-app==1.0", True),
        ("ic-lib==1.0", True),
        ("ic-tool==1.0", True),
        ("ic-tool==2.0", True),
    ]
    assert results[0].modules == ("ic_app",)
    assert "imported ic_app" in results[0].detail
    # the two versions of ic-tool need two environments: one per layer of versions
    assert log.read_text().count("$ uv venv") == 2


def test_a_missing_install_dependency_is_named_with_the_installers_reason(
    tmp_path: Path,
) -> None:
    layout = OutputLayout(tmp_path / "out").ensure()
    make_wheel(FixturePackage("ic-app", install_requires=("ic-gone",)), layout.wheels_downloads)
    make_wheel(FixturePackage("ic-lib"), layout.wheels_downloads)
    results = check_installs(
        layout, [("ic-app", "1.0"), ("ic-lib", "1.0")], isolate=False, log=tmp_path / "c.log"
    )
    by_key = {r.key: r for r in results}
    assert not by_key["ic-app==1.0"].passed
    detail = by_key["ic-app==1.0"].detail
    assert detail.startswith("does not install: ")
    assert "ic-gone" in detail and "\n" not in detail
    # the innocent wheel is not blamed
    assert by_key["ic-lib==1.0"].passed


def test_an_import_error_names_its_wheel_and_module(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path / "out").ensure()
    _broken_wheel(layout.wheels_downloads, "ic_bad", "1.0", "raise RuntimeError('boom')\n")
    make_wheel(FixturePackage("ic-lib"), layout.wheels_downloads)
    results = check_installs(
        layout, [("ic-bad", "1.0"), ("ic-lib", "1.0")], isolate=False, log=tmp_path / "c.log"
    )
    by_key = {r.key: r for r in results}
    assert by_key["ic-bad==1.0"].detail == "import ic_bad failed: RuntimeError: boom"
    assert not by_key["ic-bad==1.0"].passed
    assert by_key["ic-lib==1.0"].passed


def test_no_wheel_in_the_repository(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path / "out").ensure()
    (result,) = check_installs(layout, [("ic-none", "1.0")], isolate=False, log=tmp_path / "l")
    assert not result.passed
    assert result.detail == "no wheel of ic-none==1.0 in the local repository"


def test_installer_reason_is_one_line() -> None:
    plain = (
        "$ uv pip install x\n"
        "error: No solution found when resolving dependencies\n"
        "  cause: Because ic-gone was not found in the package registry and all versions\n"
        "         of ic-app depend on ic-gone, we can conclude that ic-app cannot be used.\n"
    )
    assert installer_reason(plain) == (
        "Because ic-gone was not found in the package registry and all versions "
        "of ic-app depend on ic-gone, we can conclude that ic-app cannot be used."
    )
    output = (
        "$ uv pip install x\n"
        "  × No solution found when resolving dependencies:\n"
        "  ╰─▶ Because ic-gone was not found in the package registry and ic-app==1.0 depends\n"
        "      on ic-gone, we can conclude that ic-app==1.0 cannot be used.\n"
    )
    reason = installer_reason(output)
    assert reason.startswith("Because ic-gone was not found in the package registry")
    assert "\n" not in reason
