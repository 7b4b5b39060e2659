"""collections.yaml: defaults, path resolution and strict validation."""

from pathlib import Path

import pytest

from fromager_dagster.core.errors import ConfigError
from fromager_dagster.defs.collections import REPO_FILE, load_collections


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
