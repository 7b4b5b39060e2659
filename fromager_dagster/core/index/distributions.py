"""Distribution files as an index lists them: their names, versions and wheel tags, and which
wheel this interpreter prefers."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.tags import Tag, sys_tags
from packaging.utils import (
    InvalidSdistFilename,
    InvalidWheelFilename,
    NormalizedName,
    canonicalize_name,
    parse_sdist_filename,
    parse_wheel_filename,
)
from packaging.version import InvalidVersion, Version

#: Source distribution suffixes we understand; anything else that is not a wheel is ignored.
SDIST_EXTENSIONS = (".tar.gz", ".zip", ".tar.bz2", ".tar.xz", ".tgz")

DistKind = Literal["sdist", "wheel"]


@dataclass(frozen=True)
class DistFile:
    """One wheel or sdist listed on the index for a project."""

    name: NormalizedName
    version: Version
    filename: str
    url: str
    kind: DistKind
    sha256: str | None
    requires_python: str | None
    upload_time: datetime | None = None  # PEP 700 upload-time / data-upload-time, when given


def wheel_tag_rank(filename: str, *, ignore_platform: bool = False) -> int | None:
    """Preference of a wheel for this interpreter (lower is better); ``None``: incompatible.

    With ``ignore_platform`` no wheel is incompatible: after the compatible ones come wheels
    for this interpreter and ABI on another platform, then every other wheel.
    """
    try:
        _, _, _, tags = parse_wheel_filename(filename)
    except InvalidWheelFilename:
        return None
    ranks = _supported_tags()
    found = [ranks[tag] for tag in tags if tag in ranks]
    if found:
        return min(found)
    if not ignore_platform:
        return None
    same_python = _supported_pythons()
    found = [
        same_python[t.interpreter, t.abi] for t in tags if (t.interpreter, t.abi) in same_python
    ]
    return len(ranks) + (min(found) if found else len(ranks))


@functools.cache
def _supported_tags() -> dict[Tag, int]:
    return {tag: rank for rank, tag in enumerate(sys_tags())}


@functools.cache
def _supported_pythons() -> dict[tuple[str, str], int]:
    """Each (interpreter, ABI) pair of ``sys_tags()`` and the rank of its first tag."""
    pythons: dict[tuple[str, str], int] = {}
    for tag, rank in _supported_tags().items():
        pythons.setdefault((tag.interpreter, tag.abi), rank)
    return pythons


def best_wheel(files: Iterable[DistFile], *, ignore_platform: bool = False) -> DistFile | None:
    """The wheel among ``files`` that this interpreter prefers (``None``: none is compatible).

    With ``ignore_platform`` any wheel will do, ranked as in :func:`wheel_tag_rank`.
    """
    ranked = [
        (rank, file.filename, file)
        for file in files
        if file.kind == "wheel"
        and (rank := wheel_tag_rank(file.filename, ignore_platform=ignore_platform)) is not None
    ]
    return min(ranked, key=lambda item: item[:2])[2] if ranked else None


def parse_upload_time(text: str | None) -> datetime | None:
    """An ISO 8601 upload time (``Z`` or an offset) as an aware datetime; ``None`` if unreadable."""
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


@functools.lru_cache(maxsize=4096)
def python_admits(requires_python: str, python: Version) -> bool:
    """Whether ``python`` satisfies a file's Requires-Python (a page repeats a few values
    over hundreds of files)."""
    try:
        spec = SpecifierSet(requires_python)
    except InvalidSpecifier:
        return True  # like pip: an unreadable constraint does not hide the file
    return spec.contains(python, prereleases=True)


@functools.lru_cache(maxsize=65536)
def parse_dist_filename(filename: str) -> tuple[NormalizedName, Version, DistKind] | None:
    """Name, version and kind of a wheel or sdist filename; ``None`` if it is neither or invalid.

    A wheel's compatibility tags are not read here (a large project's page lists thousands of
    wheels; :func:`wheel_tag_rank` reads the tags of the few a resolver considers, and turns
    down any whose tags do not parse)."""
    try:
        if filename.endswith(".whl"):
            found = _wheel_name_version(filename)
            return None if found is None else (*found, "wheel")
        for ext in SDIST_EXTENSIONS:
            if filename.endswith(ext):
                # packaging only knows .tar.gz and .zip; the stem rules are the same for all.
                stem = filename[: -len(ext)]
                name, version = parse_sdist_filename(stem + ".tar.gz")
                return name, version, "sdist"
    except (InvalidWheelFilename, InvalidSdistFilename, InvalidVersion):
        return None
    return None


#: PEP 427's escaped project name, and a build tag (as ``packaging.utils`` checks them).
_WHEEL_NAME = re.compile(r"^[\w\d._]*$", re.UNICODE)
_BUILD_TAG = re.compile(r"(\d+)(.*)$")


def _wheel_name_version(filename: str) -> tuple[NormalizedName, Version] | None:
    """``parse_wheel_filename``'s name and version, its checks but the tags' own."""
    stem = filename[: -len(".whl")]
    dashes = stem.count("-")
    if dashes not in (4, 5):
        return None
    parts = stem.split("-", dashes - 2)
    project = _wheel_project(parts[0])
    if project is None:
        return None
    if dashes == 5 and _BUILD_TAG.match(parts[2]) is None:
        return None
    if not all(parts[-1].split("-")):
        return None  # an empty interpreter, ABI or platform tag
    return project, dist_version(parts[1])


@functools.lru_cache(maxsize=4096)
def _wheel_project(name: str) -> NormalizedName | None:
    """A wheel file name's project part, checked and normalized once per spelling."""
    if not name or "__" in name or _WHEEL_NAME.match(name) is None:
        return None
    return canonicalize_name(name)


@functools.lru_cache(maxsize=65536)
def dist_version(text: str) -> Version:
    """A version string parsed once (a page gives each version to many files)."""
    return Version(text)
