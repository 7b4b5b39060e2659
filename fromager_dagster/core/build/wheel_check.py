"""Checking a backend's wheel before it may enter the repository: whose it is, what it holds.

A build backend is untrusted code: its ``build_wheel`` may return a wheel named for another
package or version, with a RECORD that does not match its files, or with files that land
outside the package's own tree when installed (a top-level ``.pth`` runs at every interpreter
start-up). :func:`check_wheel` refuses such a wheel with one :class:`WheelRejectedError`
naming every problem.
"""

from __future__ import annotations

import base64
import csv
import email.parser
import fnmatch
import hashlib
import io
import os
import zipfile
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import BuildError

_HASHES = frozenset({"sha256", "sha384", "sha512", "blake2b", "blake2s", "sha3_256", "sha3_512"})
_UNRECORDED = ("RECORD", "RECORD.jws", "RECORD.p7s")
_SKIPPED_DIRS = frozenset({".git", ".hg", ".svn", "__pycache__"})


class WheelRejectedError(BuildError):
    """A built wheel is not this package's, or holds what it may not; never transient."""

    step = "wheel check"

    def __init__(self, message: str, **fields: object) -> None:
        fields.setdefault("transient", False)
        super().__init__(message, **fields)  # type: ignore[arg-type]


def tree_names(tree: Path) -> frozenset[str]:
    """The stems (the part before the first ``.``) of every file and folder name in a source
    tree: the top-level names its wheel may install (``attr/`` from ``src/attr/``,
    ``six.py`` from ``six.py``, ``_yaml`` from ``lib/_yaml/``)."""
    names: set[str] = set()
    for _, dirs, files in os.walk(tree):
        dirs[:] = [d for d in dirs if d not in _SKIPPED_DIRS]
        names.update(n.split(".", 1)[0] for n in (*dirs, *files))
    names.discard("")
    return frozenset(names)


def _supported_tags() -> frozenset[Tag]:
    return frozenset(sys_tags())


#: Top-level entries that a package's wheel is known to install by design and that the check
#: takes without settings: setuptools' distutils shim (a ``.pth`` that every interpreter runs
#: at start-up, and setuptools is the build tool of most trees). Only for that package name;
#: any other wheel with the same entry is refused as before.
KNOWN_TOP_LEVEL: dict[str, tuple[str, ...]] = {"setuptools": ("distutils-precedence.pth",)}


def check_wheel(
    wheel: Path,
    *,
    name: str,
    version: str,
    own_names: Iterable[str] = (),
    allowed: Iterable[str] = (),
    settings_hint: str = "sandbox.wheel_top_level",
) -> None:
    """WheelRejectedError unless ``wheel`` is ``name==version``'s: its file name, WHEEL and
    METADATA say so, its tags suit this interpreter, every file matches its RECORD hash, and
    each top-level entry is its ``.dist-info``/``.data`` folder, its own module (the
    package name, or a name from its source tree, ``own_names``), or matches ``allowed`` (the
    settings' opt-in) or :data:`KNOWN_TOP_LEVEL` for ``name``. A ``.pth`` file is allowed only
    by those two."""
    canonical = canonicalize_name(name)
    problems = _name_problems(wheel.name, canonical, version)
    allowed = (*allowed, *KNOWN_TOP_LEVEL.get(canonical, ()))
    try:
        with zipfile.ZipFile(wheel) as zf:
            problems += _content_problems(
                zf, canonical, version, set(own_names), allowed, settings_hint
            )
    except (OSError, zipfile.BadZipFile) as exc:
        problems.append(f"not a readable zip file ({exc})")
    if problems:
        raise WheelRejectedError(
            f"the backend's wheel {wheel.name} was refused: {'; '.join(problems)}",
            package=str(canonical),
            version=version,
        )


def _name_problems(filename: str, name: NormalizedName, version: str) -> list[str]:
    try:
        wheel_name, wheel_version, _, tags = parse_wheel_filename(filename)
    except (InvalidWheelFilename, InvalidVersion) as exc:
        return [f"its file name is not a wheel's ({exc})"]
    problems = []
    if wheel_name != name:
        problems.append(f"it is named for {wheel_name}, not {name}")
    if not _same_version(str(wheel_version), version):
        problems.append(f"its version is {wheel_version}, not {version}")
    if not tags & _supported_tags():
        shown = ".".join(sorted(str(t) for t in tags))
        problems.append(f"its tags ({shown}) do not suit the interpreter it was built for")
    return problems


def _same_version(found: str, expected: str) -> bool:
    try:
        return Version(found) == Version(expected)
    except InvalidVersion:
        return found == expected


def _content_problems(
    zf: zipfile.ZipFile,
    name: NormalizedName,
    version: str,
    own_names: set[str],
    allowed: tuple[str, ...],
    hint: str,
) -> list[str]:
    problems: list[str] = []
    members = [i for i in zf.infolist() if not i.is_dir()]
    dist_infos = {PurePosixPath(i.filename).parts[0] for i in members}
    dist_infos = {d for d in dist_infos if d.endswith(".dist-info")}
    if len(dist_infos) != 1:
        return [*problems, f"it has {len(dist_infos)} .dist-info folders, not one"]
    (dist_info,) = dist_infos
    stem = dist_info.removesuffix(".dist-info")
    info_name, _, info_version = stem.partition("-")
    if canonicalize_name(info_name) != name or not _same_version(info_version, version):
        problems.append(f"its {dist_info} is not {name} {version}'s")
    problems += _metadata_problems(zf, dist_info, name, version)
    problems += _record_problems(zf, members, dist_info)
    module = name.replace("-", "_")
    strays: list[str] = []
    for top in sorted({PurePosixPath(i.filename).parts[0] for i in members}):
        if top in (dist_info, f"{stem}.data"):
            continue
        if any(fnmatch.fnmatchcase(top, pattern) for pattern in allowed):
            continue
        if top.endswith(".pth"):
            strays.append(f"a top-level {top} (a .pth file runs at every interpreter start-up)")
        elif top.split(".", 1)[0] not in own_names | {module}:
            strays.append(f"{top} outside the package's own tree")
    if strays:
        problems.append(f"it installs {', '.join(strays)}; allow it in the settings' {hint}")
    return problems


def _metadata_problems(
    zf: zipfile.ZipFile, dist_info: str, name: NormalizedName, version: str
) -> list[str]:
    try:
        raw = zf.read(f"{dist_info}/METADATA")
    except KeyError:
        return [f"{dist_info}/METADATA is missing"]
    metadata = email.parser.BytesParser().parsebytes(raw, headersonly=True)
    found_name, found_version = metadata.get("Name", ""), metadata.get("Version", "")
    if canonicalize_name(str(found_name)) != name or not _same_version(str(found_version), version):
        return [f"its METADATA says {found_name} {found_version}"]
    try:
        wheel_text = zf.read(f"{dist_info}/WHEEL").decode("utf-8", "replace")
    except KeyError:
        return [f"{dist_info}/WHEEL is missing"]
    if not any(line.startswith("Tag:") for line in wheel_text.splitlines()):
        return [f"{dist_info}/WHEEL names no Tag"]
    return []


def _record_problems(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], dist_info: str
) -> list[str]:
    try:
        text = zf.read(f"{dist_info}/RECORD").decode("utf-8")
    except KeyError:
        return [f"{dist_info}/RECORD is missing"]
    except UnicodeDecodeError:
        return [f"{dist_info}/RECORD is not UTF-8"]
    recorded: dict[str, str] = {}
    for row in csv.reader(io.StringIO(text)):
        if row:
            recorded[row[0]] = row[1] if len(row) > 1 else ""
    problems: list[str] = []
    unrecorded = {f"{dist_info}/{n}" for n in _UNRECORDED}
    for info in members:
        path = info.filename
        parts = PurePosixPath(path).parts
        if path.startswith("/") or ".." in parts:
            problems.append(f"{path} would be installed outside site-packages")
            continue
        if path in unrecorded:
            continue
        entry = recorded.pop(path, None)
        if entry is None:
            problems.append(f"{path} is not in RECORD")
            continue
        algorithm, _, expected = entry.partition("=")
        if algorithm not in _HASHES or not expected:
            problems.append(f"{path} has no usable hash in RECORD ({entry or 'empty'})")
            continue
        digest = hashlib.new(algorithm, zf.read(info)).digest()
        if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != expected.rstrip("="):
            problems.append(f"{path} does not match its RECORD hash")
    missing = sorted(p for p in recorded if p not in unrecorded)
    if missing:
        problems.append(f"RECORD lists files the wheel lacks ({', '.join(missing[:5])})")
    return problems[:20]
