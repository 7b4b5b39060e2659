"""`lint` and `list-overrides` through the real command group."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from fromager_dagster.cli.main import cli

REPO = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


@pytest.fixture
def overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An overrides/ folder in a fresh current directory."""
    monkeypatch.chdir(tmp_path)
    root = tmp_path / "overrides"
    (root / "settings").mkdir(parents=True)
    (root / "patches").mkdir()
    return root


def add(root: Path, relative: str, text: str = "") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_lint_ok_uses_the_overrides_folder_by_default(overrides: Path) -> None:
    add(overrides, "settings.yaml", "changelog:\n  cpu: [rebuilt]\n")
    add(overrides, "settings/foo_bar.yaml", "env:\n  A: '${B:-x}'\n")
    add(overrides, "patches/foo_bar/0001.patch")
    add(overrides, "patches/foo_bar-1.0/cuda/0002.patch")
    result = run("lint")
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 2 settings files, 2 patch folders\n"


def test_lint_without_overrides_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("lint")
    assert result.exit_code == 0
    assert result.stdout == "ok: 0 settings files, 0 patch folders\n"


def test_lint_prints_every_problem_and_exits_1(overrides: Path) -> None:
    add(overrides, "settings/foo.yaml", "build_options:\n  exclusive_build: 'yes'\nenvs: {}\n")
    add(overrides, "settings/Bad-Name.yaml")
    add(overrides, "patches/Foo-1.0/0001.patch")
    result = run("lint")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        (
            "overrides/settings/Bad-Name.yaml: file name is not an override name; "
            "rename it to bad_name.yaml"
        ),
        "overrides/settings/foo.yaml: envs: unknown key; did you mean 'env'?",
        (
            "overrides/settings/foo.yaml: build_options.exclusive_build: "
            "expected true or false, got 'yes'"
        ),
        "overrides/patches/Foo-1.0: folder name is not an override name; rename it to foo-1.0",
    ]
    assert result.stderr == "lint: 4 problem(s) found\n"


def test_lint_explicit_missing_path_is_a_one_line_error(overrides: Path) -> None:
    result = run("lint", "--settings-dir", "elsewhere/settings")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: configuration failed: settings folder elsewhere/settings does not exist; "
        "give an existing path or leave it out\n"
    )


def test_lint_explicit_paths_and_variant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    add(tmp_path, "conf/global.yaml", "changelog:\n  rocm: [a]\n")
    add(tmp_path, "conf/pkgs/foo.yaml", "variants:\n  rocm:\n    pre_built: true\n")
    add(tmp_path, "conf/diffs/foo/rocm/0001.patch")
    result = run(
        "lint",
        "--settings-file",
        "conf/global.yaml",
        "--settings-dir",
        "conf/pkgs",
        "-p",
        "conf/diffs",
        "--variant",
        "rocm",
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "ok: 2 settings files, 1 patch folders\n"


def test_lint_the_shipped_overrides_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = run("lint")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("ok: ")


def test_list_overrides_sorted_from_settings_and_patches(overrides: Path) -> None:
    add(overrides, "settings/zeta.yaml")
    add(overrides, "settings/alpha_beta.yaml")
    add(overrides, "patches/gamma-1.0/0001.patch")
    add(overrides, "patches/alpha_beta/0001.patch")
    add(overrides, "patches/delta/cuda/0001.patch")
    (overrides / "patches" / "no_patches_here").mkdir()
    result = run("list-overrides")
    assert result.exit_code == 0, result.output
    assert result.stdout == "alpha-beta\ndelta\ngamma\nzeta\n"


def test_list_overrides_options_from_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    add(tmp_path, "p/omega-2.0/0001.patch")
    result = run(
        "list-overrides", env={"FROMAGER_DAGSTER_LIST_OVERRIDES_PATCHES_DIR": str(tmp_path / "p")}
    )
    assert result.exit_code == 0, result.output
    assert result.stdout == "omega\n"


def test_list_overrides_invalid_settings_is_an_error(overrides: Path) -> None:
    add(overrides, "settings/foo.yaml", "env: 3\n")
    result = run("list-overrides")
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: configuration failed: overrides/settings/foo.yaml: env: expected a mapping, got 3\n"
    )


def test_list_overrides_shipped_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    result = run("list-overrides")
    assert result.exit_code == 0, result.output
    assert "pytest-asyncio" in result.stdout.splitlines()
