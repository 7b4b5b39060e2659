"""The resolver: versions, constraints, release age, pre-built wheels, every matching version,
and which files count as candidates (resolver_dist settings) on a real local index."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.errors import ResolutionError
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.distributions import DistFile, parse_upload_time
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.resolve.resolver import ResolvedPackage, Resolver, SourcePolicy
from fromager_dagster.core.settings.loading import load_settings
from tests.fixtures.packages import FixturePackage, Upstream, make_sdist, make_wheel

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
    chosen = resolver(min_release_age=ages.get).resolve(Requirement("alpha"))
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


# -- resolver_dist on a real local index ---------------------------------------------------

FOREIGN_TAG = "cp27-cp27m-win32"  # a wheel no interpreter running these tests installs


def publish(upstream: Upstream, version: str, *, sdist: bool, wheel: str | None = None) -> None:
    """Put ``fx-a==version`` on the upstream index: its sdist, and a wheel tagged ``wheel``."""
    pkg = FixturePackage("fx-a", version)
    if sdist:
        make_sdist(pkg, upstream.folder)
    if wheel is not None:
        built = make_wheel(pkg, upstream.folder / "built")
        shutil.move(built, upstream.folder / f"{pkg.base}-{wheel}.whl")
        shutil.rmtree(upstream.folder / "built")


def resolve_with(upstream: Upstream, tmp_path: Path, settings_yaml: str | None) -> ResolvedPackage:
    """Resolve ``fx-a`` on ``upstream`` with ``settings/fx_a.yaml`` holding ``settings_yaml``."""
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir(parents=True, exist_ok=True)
    if settings_yaml is not None:
        (settings_dir / "fx_a.yaml").write_text(settings_yaml, encoding="utf-8")
    settings = load_settings(settings_dir=settings_dir)
    policy = SourcePolicy(
        prebuilt=settings.pre_built, dists=lambda name: settings.package(name).resolver_dist
    )
    url = upstream.server.url if upstream.server else upstream.start()
    return Resolver(IndexClient(url), Constraints(), policy).resolve(Requirement("fx-a"))


def test_include_sdists_false_skips_versions_with_only_an_sdist(
    upstream: Upstream, tmp_path: Path
) -> None:
    publish(upstream, "1.0", sdist=True, wheel="py3-none-any")
    publish(upstream, "2.0", sdist=True)
    assert resolve_with(upstream, tmp_path, None).version == Version("2.0")
    chosen = resolve_with(
        upstream, tmp_path, "resolver_dist:\n  include_sdists: false\n  include_wheels: true\n"
    )
    assert (str(chosen.version), chosen.source.filename) == ("1.0", "fx_a-1.0-py3-none-any.whl")


def test_include_wheels_makes_wheels_candidates_taken_pre_built(
    upstream: Upstream, tmp_path: Path
) -> None:
    publish(upstream, "1.0", sdist=True, wheel="py3-none-any")
    publish(upstream, "2.0", sdist=False, wheel="py3-none-any")
    default = resolve_with(upstream, tmp_path, None)
    assert (str(default.version), default.source.kind) == ("1.0", "sdist")
    chosen = resolve_with(upstream, tmp_path, "resolver_dist:\n  include_wheels: true\n")
    # the wheel is the package's file: bootstrap downloads it as a pre-built wheel
    assert (str(chosen.version), chosen.source.kind) == ("2.0", "wheel")
    assert chosen.source.filename == "fx_a-2.0-py3-none-any.whl"


def test_include_wheels_prefers_a_versions_wheel_to_its_sdist(
    upstream: Upstream, tmp_path: Path
) -> None:
    publish(upstream, "1.0", sdist=True, wheel="py3-none-any")
    chosen = resolve_with(upstream, tmp_path, "resolver_dist:\n  include_wheels: true\n")
    assert chosen.source.filename == "fx_a-1.0-py3-none-any.whl"


def test_ignore_platform_admits_wheels_for_other_platforms(
    upstream: Upstream, tmp_path: Path
) -> None:
    publish(upstream, "1.0", sdist=False, wheel="py3-none-any")
    publish(upstream, "2.0", sdist=False, wheel=FOREIGN_TAG)
    wheels_only = "resolver_dist:\n  include_sdists: false\n  include_wheels: true\n"
    assert resolve_with(upstream, tmp_path, wheels_only).version == Version("1.0")
    chosen = resolve_with(upstream, tmp_path, wheels_only + "  ignore_platform: true\n")
    assert chosen.source.filename == f"fx_a-2.0-{FOREIGN_TAG}.whl"


def test_ignore_platform_still_takes_the_best_ranked_wheel(
    upstream: Upstream, tmp_path: Path
) -> None:
    # this interpreter and ABI on another platform ranks above a wheel for another Python
    other_platform = f"{BEST_TAG.interpreter}-{BEST_TAG.abi}-fx_other_platform"
    publish(upstream, "2.0", sdist=False, wheel=FOREIGN_TAG)
    publish(upstream, "2.0", sdist=False, wheel=other_platform)
    chosen = resolve_with(
        upstream,
        tmp_path,
        "resolver_dist:\n  include_wheels: true\n  ignore_platform: true\n",
    )
    assert chosen.source.filename == f"fx_a-2.0-{other_platform}.whl"
    publish(upstream, "2.0", sdist=False, wheel="py3-none-any")  # a compatible one wins
    chosen = resolve_with(
        upstream,
        tmp_path / "again",
        "resolver_dist:\n  include_wheels: true\n  ignore_platform: true\n",
    )
    assert chosen.source.filename == "fx_a-2.0-py3-none-any.whl"


def test_ignore_platform_applies_to_a_pre_built_package(upstream: Upstream, tmp_path: Path) -> None:
    publish(upstream, "2.0", sdist=True, wheel=FOREIGN_TAG)
    chosen = resolve_with(
        upstream,
        tmp_path,
        "variants:\n  cpu:\n    pre_built: true\nresolver_dist:\n  ignore_platform: true\n",
    )
    assert chosen.source.filename == f"fx_a-2.0-{FOREIGN_TAG}.whl"


@pytest.mark.parametrize(
    ("files", "settings_yaml", "advice"),
    [
        (
            {"sdist": True},
            "resolver_dist:\n  include_sdists: false\n  include_wheels: true\n",
            "set resolver_dist.include_sdists: true",
        ),
        ({"sdist": False, "wheel": "py3-none-any"}, None, "set resolver_dist.include_wheels: true"),
        (
            {"sdist": False, "wheel": FOREIGN_TAG},
            "resolver_dist:\n  include_wheels: true\n",
            "set resolver_dist.ignore_platform: true",
        ),
    ],
)
def test_settings_that_leave_no_candidate_fail_in_one_line(
    upstream: Upstream,
    tmp_path: Path,
    files: dict[str, bool | str],
    settings_yaml: str | None,
    advice: str,
) -> None:
    publish(upstream, "1.0", **files)  # type: ignore[arg-type]
    with pytest.raises(ResolutionError) as caught:
        resolve_with(upstream, tmp_path, settings_yaml)
    message = str(caught.value)
    assert "\n" not in message and caught.value.package == "fx-a"
    assert message.startswith("fx-a: no file on the index is a candidate under resolver_dist ")
    assert message.endswith(advice)


@pytest.mark.parametrize(
    ("pin", "expected"),
    [
        ("gamma==1.0", ["1.0.0+local.1", "1.0.0"]),  # 1.0 is 1.0.0; no local in the pin
        ("gamma==1.0.0+local.1", ["1.0.0+local.1"]),
        ("gamma==1.0rc1", ["1.0rc1"]),
        ("gamma==1.0.post1", ["1.0.post1"]),
        ("gamma==1!1.0", ["1!1.0"]),
        ("gamma==1.*", ["1.1", "1.0.post1", "1.0.0+local.1", "1.0.0", "1.0rc1"]),  # no pin
    ],
)
def test_an_exact_pin_admits_what_the_specifier_does(pin: str, expected: list[str]) -> None:
    files = [
        sdist("gamma", v)
        for v in ("1.0rc1", "1.0.0", "1.0.0+local.1", "1.0.post1", "1.1", "10.0", "1!1.0")
    ]
    found = Resolver(
        FakeFinder(files),
        Constraints.from_lines([("test", pin)]),
        SourcePolicy(now=NOW),
    ).resolve_all(Requirement("gamma>=0.1.dev0"))
    assert [str(p.version) for p in found] == expected
