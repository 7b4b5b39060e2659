"""A package's log: discovery's stage kept when the build appends its own, a header per stage,
a process's output past the cap cut to its head and tail."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.build import builder
from fromager_dagster.core.build.confined import HookLimits, hook_environ, run_confined
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_log import keep_head_and_tail, start_stage
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.resolve.requirements import Constraints, toplevel_requirements
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from tests.fixtures.packages import FixturePackage, make_index

TOOL = FixturePackage("fx-tool")
LIB = FixturePackage("fx-lib", build_system_requires=("fx-tool",))


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    folder = make_index([TOOL, LIB], tmp_path / "upstream")
    with LocalIndexServer([folder]) as server:
        yield server.url


def test_the_build_appends_to_the_log_discovery_wrote(upstream: str, tmp_path: Path) -> None:
    """Through Dagster the wheel asset builds after discovery: it must not truncate the log."""
    layout = OutputLayout(tmp_path / "out")
    result = bootstrap(
        toplevel_requirements(["fx-lib"], []),
        index=IndexClient(upstream),
        constraints=Constraints.from_lines([]),
        layout=layout,
        options=BootstrapOptions(jobs=2, sdist_only=True, isolate=False),
        settings=Settings(),
    )
    log = layout.log_path("fx-lib", "1.0")
    discovered = log.read_text()
    assert discovered.startswith("# ===== discovery of fx-lib==1.0 from ")
    assert "get_requires_for_build_wheel" in discovered  # discovery's hook output

    builder.build_node(
        result.graph,
        "fx-tool==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )
    builder.build_node(
        result.graph,
        "fx-lib==1.0",
        layout=layout,
        isolate=False,
        settings=Settings(),
        plugins=Plugins.load(),
    )

    text = log.read_text()
    assert text.startswith(discovered), "the build truncated discovery's log"
    later = text[len(discovered) :]
    assert "# ===== build of fx-lib==1.0 from fx_lib-1.0.tar.gz (hermetic" in later
    assert "build_wheel" in later


def test_a_stage_header_starts_a_fresh_log_only_when_asked(tmp_path: Path) -> None:
    log = tmp_path / "logs" / "a-1.log"
    start_stage(log, "discovery of a==1", fresh=True)
    start_stage(log, "build of a==1")
    assert log.read_text() == "# ===== discovery of a==1 =====\n\n# ===== build of a==1 =====\n"
    start_stage(log, "discovery of a==1", fresh=True)  # a new discovery of the package
    assert log.read_text() == "# ===== discovery of a==1 =====\n"


def test_output_past_the_cap_keeps_its_head_and_tail(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"before\n")
    script = "echo FIRST-LINE; head -c 3000000 /dev/zero | tr '\\0' x; echo; echo LAST-LINE"
    finished = run_confined(
        ["/bin/sh", "-c", script],
        cwd=tmp_path,
        env=hook_environ({}, home=tmp_path),
        log=log,
        limits=HookLimits(keep_log_bytes=64 * 1024),
    )
    assert finished.returncode == 0 and finished.exceeded is None
    data = log.read_bytes()
    assert len(data) < 64 * 1024 + 200, len(data)
    assert data.startswith(b"before\nFIRST-LINE\n")
    assert data.endswith(b"x\nLAST-LINE\n")
    assert b"bytes of output cut here" in data


def test_output_under_the_cap_is_left_alone(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_bytes(b"head\n" + b"y" * 1000)
    assert not keep_head_and_tail(log, 5, 1000)
    assert keep_head_and_tail(log, 5, 100)
    data = log.read_bytes()
    assert data.startswith(b"head\n" + b"y" * 50 + b"\n[fromager-dagster: 900 bytes")
    assert data.endswith(b"]\n" + b"y" * 50)


def test_the_cap_is_a_sandbox_setting(tmp_path: Path) -> None:
    (tmp_path / "settings.yaml").write_text("sandbox:\n  keep_log_mb: 3\n")
    (tmp_path / "settings").mkdir()
    (tmp_path / "settings" / "fx_a.yaml").write_text("sandbox:\n  keep_log_mb: 1\n")
    settings = load_settings(
        settings_file=tmp_path / "settings.yaml", settings_dir=tmp_path / "settings"
    )
    assert settings.hook_limits("fx-a").keep_log_bytes == 1024 * 1024
    assert settings.hook_limits("fx-b").keep_log_bytes == 3 * 1024 * 1024
