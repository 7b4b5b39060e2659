"""The resolver: versions, constraints, release age, pre-built wheels, every matching version."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.errors import ResolutionError
from fromager_dagster.core.index import DistFile, parse_upload_time
from fromager_dagster.core.requirements import Constraints
from fromager_dagster.core.resolver import Resolver, SourcePolicy

NOW = datetime(2026, 11, 21, tzinfo=UTC)
BEST_TAG = next(iter(sys_tags()))


class FakeFinder:
    """A PackageFinder over a fixed list of files."""

    def __init__(self, files: list[DistFile]) -> None:
        self._files = files

    def files(self, name: str) -> list[DistFile]:
        return [f for f in self._files if f.name == canonicalize_name(name)]


def sdist(name: str, version: str, *, age_days: float = 365) -> DistFile:
    return DistFile(
        name=canonicalize_name(name),
        version=Version(version),
        filename=f"{name}-{version}.tar.gz",
        url=f"http://127.0.0.1/{name}-{version}.tar.gz",
        kind="sdist",
        sha256=None,
        requires_python=None,
        upload_time=NOW - timedelta(days=age_days),
    )


def wheel(name: str, version: str, tag: str) -> DistFile:
    filename = f"{name}-{version}-{tag}.whl"
    return DistFile(
        name=canonicalize_name(name),
        version=Version(version),
        filename=filename,
        url=f"http://127.0.0.1/{filename}",
        kind="wheel",
        sha256=None,
        requires_python=None,
    )


FILES = [
    sdist("alpha", "1.0"),
    sdist("alpha", "1.1"),
    sdist("alpha", "2.0", age_days=2),
    sdist("alpha", "3.0rc1"),
    wheel("beta", "1.0", "py3-none-any"),
    wheel("beta", "2.0", "cp27-cp27m-win32"),  # nothing this interpreter installs
    sdist("beta", "2.0"),
    wheel("beta", "1.5", f"{BEST_TAG.interpreter}-{BEST_TAG.abi}-{BEST_TAG.platform}"),
    wheel("beta", "1.5", "py3-none-any"),
]


def resolver(constraints: list[str] | None = None, **policy: object) -> Resolver:
    return Resolver(
        FakeFinder(FILES),
        Constraints.from_lines(("test", line) for line in constraints or []),
        SourcePolicy(now=NOW, **policy),  # type: ignore[arg-type]
    )


def test_newest_final_sdist_by_default() -> None:
    assert resolver().resolve(Requirement("alpha")).version == Version("2.0")


def test_min_release_age_skips_young_releases() -> None:
    chosen = resolver(min_release_age=lambda name: 7).resolve(Requirement("alpha"))
    assert chosen.version == Version("1.1")


def test_min_release_age_per_package() -> None:
    ages = {"alpha": 7.0}
    chosen = resolver(min_release_age=lambda name: ages.get(name)).resolve(Requirement("alpha"))
    assert chosen.version == Version("1.1")
    assert resolver(min_release_age=lambda name: None).resolve(Requirement("alpha")).version == (
        Version("2.0")
    )


def test_prebuilt_takes_the_best_compatible_wheel() -> None:
    chosen = resolver(prebuilt=lambda name: name == "beta").resolve(Requirement("beta"))
    # 2.0 has only an incompatible wheel; 1.5's platform wheel beats its py3-none-any one
    assert chosen.version == Version("1.5")
    assert chosen.source.kind == "wheel"
    assert chosen.source.filename.endswith(f"{BEST_TAG.platform}.whl")


def test_without_prebuilt_wheels_are_ignored() -> None:
    chosen = resolver().resolve(Requirement("beta"))
    assert (chosen.version, chosen.source.kind) == (Version("2.0"), "sdist")


def test_resolve_all_lists_every_admitted_version_newest_first() -> None:
    found = resolver(["alpha<2"]).resolve_all(Requirement("alpha>=1.0"))
    assert [str(p.version) for p in found] == ["1.1", "1.0"]
    assert all(str(p.constraint) == "alpha<2" for p in found)


def test_resolve_all_with_nothing_admitted_names_the_package() -> None:
    with pytest.raises(ResolutionError, match=r"alpha: alpha>5"):
        resolver().resolve_all(Requirement("alpha>5"))


def test_no_usable_wheel_is_reported_as_such() -> None:
    with pytest.raises(ResolutionError, match="pre-built wheel versions"):
        resolver(prebuilt=lambda name: True).resolve(Requirement("beta>=2"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2014-07-21T18:07:55.439077Z", datetime(2014, 7, 21, 18, 7, 55, 439077, tzinfo=UTC)),
        ("2020-01-01T00:00:00+00:00", datetime(2020, 1, 1, tzinfo=UTC)),
        ("2020-01-01T00:00:00", datetime(2020, 1, 1, tzinfo=UTC)),
        ("yesterday", None),
        (None, None),
    ],
)
def test_parse_upload_time(text: str | None, expected: datetime | None) -> None:
    assert parse_upload_time(text) == expected
