"""collections.yaml: defaults, path resolution and strict validation."""

from pathlib import Path

import pytest

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.defs.collections import load_collections

#: The repository's own collections.yaml (the library no longer looks for it there).
REPO_FILE = Path(__file__).resolve().parents[2] / "collections.yaml"


def test_shipped_file_has_stevedore_with_pinned_constraints() -> None:
    stevedore = load_collections(REPO_FILE)["stevedore"]
    assert stevedore.requirements == ("stevedore",)
    assert stevedore.variant == "cpu"
    assert stevedore.output_dir == REPO_FILE.parent / "output" / "stevedore"
    lines = stevedore.constraints[0].read_text().split()
    assert lines == ["setuptools==84.2.1", "pbr==7.1.3", "stevedore==5.10.0"]


def test_relative_paths_and_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("collections:\n  a:\n    requirements: [x]\n    constraints: [c.txt]\n")
    monkeypatch.setenv("FROMAGER_DAGSTER_HOME", str(tmp_path / "home"))
    a = load_collections(path)["a"]
    assert a.constraints == (tmp_path / "c.txt",)
    assert a.output_dir == tmp_path / "home" / "a"
    assert a.ident == "a" and a.sdist_only is True and a.schedule == "0 2 * * *"


def test_every_problem_is_reported_together(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "collections:\n  a:\n    requirements: x\n    colour: red\n  b:\n    variant: cpu\n"
    )
    with pytest.raises(ConfigError) as info:
        load_collections(path)
    text = str(info.value)
    assert str(path) in text
    assert "collections.a.requirements: expected a list of strings" in text
    assert "collections.a.colour: unknown key" in text
    assert "collections.b: needs 'requirements' or 'requirement_files'" in text


def test_run_modes_default_off_and_are_read(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "collections:\n"
        "  plain:\n    requirements: [x]\n"
        "  modes:\n    requirements: [x]\n    test_mode: true\n    multiple_versions: true\n"
        "    skip_constraints: true\n    min_release_age: 7\n"
        "  half_day:\n    requirements: [x]\n    min_release_age: 0.5\n"
        "  explicit_null:\n    requirements: [x]\n    min_release_age: null\n"
    )
    found = load_collections(path)
    plain, modes = found["plain"], found["modes"]
    assert (plain.test_mode, plain.multiple_versions, plain.skip_constraints) == (False,) * 3
    assert plain.min_release_age is None and found["explicit_null"].min_release_age is None
    assert (modes.test_mode, modes.multiple_versions, modes.skip_constraints) == (True,) * 3
    assert modes.min_release_age == 7 and found["half_day"].min_release_age == 0.5


_BOOL = "expected true or false, got"
_DAYS = "expected a number of days (0 or more) or null, got"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("test_mode: yes-please", f"test_mode: {_BOOL} 'yes-please'"),
        ("multiple_versions: 1", f"multiple_versions: {_BOOL} 1"),
        ("skip_constraints: null", f"skip_constraints: {_BOOL} None"),
        ("min_release_age: -1", f"min_release_age: {_DAYS} -1"),
        ("min_release_age: true", f"min_release_age: {_DAYS} True"),
        ("min_release_age: '7'", f"min_release_age: {_DAYS} '7'"),
    ],
)
def test_bad_run_modes_are_one_line_naming_file_collection_and_key(
    tmp_path: Path, line: str, expected: str
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"collections:\n  a:\n    requirements: [x]\n    {line}\n")
    with pytest.raises(ConfigError) as info:
        load_collections(path)
    assert str(info.value) == f"{path}: collections.a.{expected}"


def test_settings_paths_default_to_the_overrides_folder_where_they_exist(tmp_path: Path) -> None:
    """Each settings path: as given (relative to the file), else under ``overrides:`` (default:
    ``overrides/`` beside the file), where it exists; ``overrides: null`` means none."""
    (tmp_path / "overrides" / "settings").mkdir(parents=True)
    (tmp_path / "overrides" / "settings.yaml").write_text("")
    (tmp_path / "other" / "patches").mkdir(parents=True)
    path = tmp_path / "c.yaml"
    path.write_text(
        "collections:\n"
        "  beside:\n    requirements: [x]\n"
        "  mine:\n    requirements: [x]\n    settings_dir: my-settings\n    patches_dir: ''\n"
        "  other:\n    requirements: [x]\n    overrides: other\n"
        "  none:\n    requirements: [x]\n    overrides: null\n    patches_dir: p\n"
    )
    found = load_collections(path)

    def paths(name: str) -> tuple[Path | None, ...]:
        c = found[name]
        return c.settings_file, c.settings_dir, c.patches_dir

    beside = (tmp_path / "overrides" / "settings.yaml", tmp_path / "overrides" / "settings")
    assert paths("beside") == (*beside, None)  # no overrides/patches
    assert paths("mine") == (beside[0], tmp_path / "my-settings", None)
    assert paths("other") == (None, None, tmp_path / "other" / "patches")
    assert paths("none") == (None, None, tmp_path / "p")
    # without an overrides/ folder beside the file, nothing is found
    (tmp_path / "elsewhere").mkdir()
    lone = tmp_path / "elsewhere" / "c.yaml"
    lone.write_text("collections:\n  a:\n    requirements: [x]\n")
    a = load_collections(lone)["a"]
    assert (a.settings_file, a.settings_dir, a.patches_dir) == (None, None, None)
