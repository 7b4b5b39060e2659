"""The check of a backend's wheel before it may enter the repository."""

from __future__ import annotations

import base64
import hashlib
import re
import zipfile
from pathlib import Path

import pytest

from fromager_dagster.core.build.wheel_check import WheelRejectedError, check_wheel, tree_names


def _wheel(
    folder: Path,
    members: dict[str, bytes],
    *,
    name: str = "fx_a",
    version: str = "1.0",
    tag: str = "py3-none-any",
    tamper: str | None = None,
    unrecorded: str | None = None,
) -> Path:
    dist_info = f"{name}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    members = {
        **members,
        f"{dist_info}/METADATA": metadata.encode(),
        f"{dist_info}/WHEEL": f"Wheel-Version: 1.0\nTag: {tag}\n".encode(),
    }
    record = []
    for path, data in members.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        if path != unrecorded:
            record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist_info}/RECORD,,")
    wheel = folder / f"{name}-{version}-{tag}.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in members.items():
            zf.writestr(path, data + (b"tampered" if path == tamper else b""))
        zf.writestr(f"{dist_info}/RECORD", "\n".join(record) + "\n")
    return wheel


def test_a_wheel_of_the_package_passes(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path, {"fx_a/__init__.py": b"", "fx_a-1.0.data/scripts/x": b"#!"})
    check_wheel(wheel, name="FX-A", version="1.0")


@pytest.mark.parametrize(
    ("kwargs", "members", "expected"),
    [
        ({"tamper": "fx_a/__init__.py"}, {}, "fx_a/__init__.py does not match its RECORD hash"),
        ({"unrecorded": "fx_a/__init__.py"}, {}, "fx_a/__init__.py is not in RECORD"),
        ({}, {"evil.pth": b"import os"}, "a top-level evil.pth"),
        ({}, {"sitecustomize.py": b""}, "sitecustomize.py outside the package's own tree"),
        ({"name": "fx_b"}, {}, "it is named for fx-b, not fx-a"),
        ({"version": "9.9"}, {}, "its version is 9.9, not 1.0"),
        ({"tag": "cp27-cp27m-win32"}, {}, "do not suit the interpreter"),
        ({}, {"../escape.py": b""}, "would be installed outside site-packages"),
    ],
)
def test_a_bad_wheel_is_refused_naming_the_problem(
    tmp_path: Path, kwargs: dict[str, str], members: dict[str, bytes], expected: str
) -> None:
    wheel = _wheel(tmp_path, {"fx_a/__init__.py": b"", **members}, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(WheelRejectedError) as caught:
        check_wheel(wheel, name="fx-a", version="1.0")
    assert expected in str(caught.value)
    assert caught.value.transient is False and "\n" not in str(caught.value)
    assert caught.value.package == "fx-a"


def test_names_from_the_source_tree_and_the_settings_opt_in(tmp_path: Path) -> None:
    tree = tmp_path / "src"
    (tree / "src" / "attr").mkdir(parents=True)
    (tree / "six.py").write_text("")
    own = tree_names(tree)
    assert {"attr", "six", "src"} <= own
    wheel = _wheel(
        tmp_path,
        {"attr/__init__.py": b"", "six.py": b"", "shim.pth": b"import x"},
    )
    with pytest.raises(WheelRejectedError, match=re.escape("shim.pth")):
        check_wheel(wheel, name="fx-a", version="1.0", own_names=own)
    check_wheel(wheel, name="fx-a", version="1.0", own_names=own, allowed=["shim.pth"])


def test_setuptools_distutils_shim_is_known_and_only_setuptools(tmp_path: Path) -> None:
    shim = {"distutils-precedence.pth": b"import _distutils_hack", "setuptools/__init__.py": b""}
    (tmp_path / "a").mkdir()
    wheel = _wheel(tmp_path / "a", shim, name="setuptools", version="84.2.1")
    check_wheel(wheel, name="setuptools", version="84.2.1")  # no settings needed
    (tmp_path / "b").mkdir()
    other = _wheel(
        tmp_path / "b",
        {"distutils-precedence.pth": b"import os", "fx_a/__init__.py": b""},
    )
    with pytest.raises(WheelRejectedError, match=re.escape("distutils-precedence.pth")):
        check_wheel(other, name="fx-a", version="1.0")
