"""Reading ``[build-system]``: what real sdists write, including what PEP 517 did not foresee."""

from __future__ import annotations

from pathlib import Path

import pytest

from fromager_dagster.core.build.build_system import read_build_system
from fromager_dagster.core.errors import ConfigError


def _tree(tmp_path: Path, table: str) -> Path:
    (tmp_path / "pyproject.toml").write_text(f"[build-system]\n{table}", encoding="utf-8")
    return tmp_path


def test_backend_path_as_a_string_is_one_path(tmp_path: Path) -> None:
    # flit-core 2.3.0's own pyproject.toml: backend-path = "."
    tree = _tree(
        tmp_path,
        'requires = []\nbuild-backend = "flit_core.build_thyself"\nbackend-path = "."\n',
    )
    system = read_build_system(tree, package="flit-core")
    assert system.backend_path == (".",)
    assert system.backend == "flit_core.build_thyself"
    assert system.requires == ()


def test_backend_path_of_the_wrong_type_is_a_config_error(tmp_path: Path) -> None:
    tree = _tree(tmp_path, 'requires = []\nbuild-backend = "b"\nbackend-path = 3\n')
    with pytest.raises(ConfigError, match="bad build-backend or backend-path"):
        read_build_system(tree, package="x")
