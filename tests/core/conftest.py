"""Fixtures for core tests: tiny wheels and sdists written straight into a folder."""

from __future__ import annotations

import io
import tarfile
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

import pytest

from tests.fixtures.packages import Upstream


def _metadata(name: str, version: str, requires_python: str | None) -> str:
    text = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    if requires_python is not None:
        text += f"Requires-Python: {requires_python}\n"
    return text


class DistFactory:
    """Writes minimal but well-formed wheels and sdists into ``folder``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def wheel(
        self,
        name: str,
        version: str,
        *,
        requires_python: str | None = None,
        tag: str = "py3-none-any",
        folder: Path | None = None,
    ) -> Path:
        stem = f"{name.replace('-', '_')}-{version}"
        path = (folder or self.folder) / f"{stem}-{tag}.whl"
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr(f"{name.replace('-', '_')}/__init__.py", "")
            zf.writestr(f"{stem}.dist-info/METADATA", _metadata(name, version, requires_python))
            zf.writestr(f"{stem}.dist-info/WHEEL", f"Wheel-Version: 1.0\nTag: {tag}\n")
            zf.writestr(f"{stem}.dist-info/RECORD", "")
        return path

    def sdist(
        self,
        name: str,
        version: str,
        *,
        requires_python: str | None = None,
        ext: str = ".tar.gz",
        folder: Path | None = None,
    ) -> Path:
        stem = f"{name}-{version}"
        path = (folder or self.folder) / f"{stem}{ext}"
        pkg_info = _metadata(name, version, requires_python).encode()
        if ext == ".zip":
            with zipfile.ZipFile(path, "w") as zf:
                zf.writestr(f"{stem}/PKG-INFO", pkg_info)
                zf.writestr(f"{stem}/setup.py", "")
            return path
        modes: dict[str, Literal["w:gz", "w:bz2", "w:xz"]] = {
            ".tar.gz": "w:gz",
            ".tgz": "w:gz",
            ".tar.bz2": "w:bz2",
            ".tar.xz": "w:xz",
        }
        mode = modes[ext]
        with tarfile.open(path, mode) as tf:
            for member, data in ((f"{stem}/setup.py", b""), (f"{stem}/PKG-INFO", pkg_info)):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
        return path


@pytest.fixture
def dist_factory(tmp_path: Path) -> DistFactory:
    """A ``DistFactory`` writing into ``tmp_path / "dists"``."""
    return DistFactory(tmp_path / "dists")


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    up = Upstream(tmp_path / "upstream")
    up.folder.mkdir()
    yield up
    if up.server is not None:
        up.server.stop()
