"""Pre-built wheels: the best compatible wheel of one exact version, hash-verified."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from packaging.tags import sys_tags

from fromager_dagster.core.bootstrap.run import BootstrapOptions, bootstrap
from fromager_dagster.core.errors import HashMismatchError, SourceError
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.index.url import resolve_index_url
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.repository.prebuilt import download_prebuilt_wheel, fetch_prebuilt_wheel
from fromager_dagster.core.resolve.requirements import Constraints, parse_requirement
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources.archives import sha256_file
from tests.core.conftest import DistFactory
from tests.fixtures.packages import FixturePackage, Upstream, make_wheel


def test_picks_the_preferred_compatible_wheel(dist_factory: DistFactory, tmp_path: Path) -> None:
    best = str(next(iter(sys_tags())))  # this interpreter's most specific tag
    dist_factory.wheel("fx-w", "1.0", tag="py3-none-any")
    preferred = dist_factory.wheel("fx-w", "1.0", tag=best)
    dist_factory.wheel("fx-w", "1.0", tag="cp27-cp27m-win32")
    dist_factory.wheel("fx-w", "2.0", tag=best)  # another version is never taken
    dist_factory.sdist("fx-w", "1.0")
    dest = tmp_path / "prebuilt"
    with LocalIndexServer([dist_factory.folder]) as server:
        index = IndexClient(server.url)
        path = download_prebuilt_wheel(index, "FX_W", "1.0", dest, settings=Settings())
        assert path == dest / preferred.name
        assert path.read_bytes() == preferred.read_bytes()
        # a second call reuses the verified file, and tells where it came from
        before = path.stat().st_mtime_ns
        found = fetch_prebuilt_wheel(index, "fx-w", "1.0", dest, settings=Settings())
        assert found.path == path
        assert path.stat().st_mtime_ns == before
        [listed] = [f for f in index.files("fx-w") if f.filename == preferred.name]
        assert found.file == listed and found.url == listed.url
        assert found.url.startswith(server.url.rsplit("/simple", 1)[0])
    assert [p.name for p in dest.iterdir()] == [preferred.name]


def test_no_compatible_wheel_names_what_is_there(dist_factory: DistFactory, tmp_path: Path) -> None:
    dist_factory.wheel("fx-w", "1.0", tag="cp27-cp27m-win32")
    dist_factory.sdist("fx-w", "1.0")
    dist_factory.sdist("fx-s", "1.0")
    with LocalIndexServer([dist_factory.folder]) as server:
        index = IndexClient(server.url)
        with pytest.raises(SourceError) as info:
            download_prebuilt_wheel(index, "fx-w", "1.0", tmp_path / "dest", settings=Settings())
        assert "fx-w==1.0" in str(info.value)
        assert "fx_w-1.0-cp27-cp27m-win32.whl" in str(info.value)
        assert info.value.package == "fx-w" and info.value.version == "1.0"
        with pytest.raises(SourceError, match=r"fx-s==1\.0 .*no wheel of that version"):
            download_prebuilt_wheel(index, "fx-s", "1.0", tmp_path / "dest", settings=Settings())
        with pytest.raises(SourceError, match="not a valid version"):
            download_prebuilt_wheel(index, "fx-s", "one", tmp_path / "dest", settings=Settings())
    assert not (tmp_path / "dest").exists() or not list((tmp_path / "dest").iterdir())


def test_hash_mismatch_leaves_nothing(dist_factory: DistFactory, tmp_path: Path) -> None:
    wheel = dist_factory.wheel("fx-w", "1.0")
    with LocalIndexServer([dist_factory.folder]) as server:
        index = IndexClient(server.url)
        index.files("fx-w")  # the index's sha256 is read now...
        wheel.write_bytes(wheel.read_bytes() + b"tampered")  # ...and the file changes after
        with pytest.raises(HashMismatchError):
            download_prebuilt_wheel(index, "fx-w", "1.0", tmp_path / "dest", settings=Settings())
    assert list((tmp_path / "dest").iterdir()) == []


def test_bootstrap_test_mode_falls_back_to_the_same_wheel_and_records_its_url(
    upstream: Upstream, tmp_path: Path
) -> None:
    upstream.add(FixturePackage("fx-broken", fail_build=True))
    wheel = make_wheel(FixturePackage("fx-broken"), upstream.folder)
    out, url = tmp_path / "out", upstream.start()
    result = bootstrap(
        [parse_requirement("fx-broken")],
        index=IndexClient(url),
        constraints=Constraints.from_lines([]),
        layout=OutputLayout(out),
        options=BootstrapOptions(jobs=1, isolate=False, test_mode=True),
        settings=Settings(),
    )
    assert result.prebuilt == ["fx-broken==1.0"] and result.built == []
    [listed] = [f for f in IndexClient(url).files("fx-broken") if f.kind == "wheel"]
    node = result.graph.to_json()["fx-broken==1.0"]
    assert (node["pre_built"], node["download_url"]) == (True, listed.url)
    taken = out / "wheels-repo" / "prebuilt" / wheel.name
    assert taken.read_bytes() == wheel.read_bytes()
    assert [f.package for f in result.failures] == ["fx-broken"]


def test_ignore_platform_takes_a_wheel_of_another_platform(
    dist_factory: DistFactory, tmp_path: Path
) -> None:
    """A package's resolver_dist.ignore_platform lets it take a wheel this interpreter cannot
    install; without settings, or for another package, only fitting wheels count."""
    other = dist_factory.wheel("fx-w", "1.0", tag="cp27-cp27m-win32")
    dist_factory.wheel("fx-plain", "1.0", tag="cp27-cp27m-win32")
    settings_dir = tmp_path / "settings"
    settings_dir.mkdir()
    (settings_dir / "fx_w.yaml").write_text(
        "variants:\n  cpu:\n    pre_built: true\nresolver_dist:\n  ignore_platform: true\n"
    )
    settings = load_settings(settings_dir=settings_dir)
    dest = tmp_path / "prebuilt"
    with LocalIndexServer([dist_factory.folder]) as server:
        index = IndexClient(server.url)
        with pytest.raises(SourceError, match=re.escape("resolver_dist.ignore_platform: true")):
            download_prebuilt_wheel(index, "fx-w", "1.0", dest, settings=Settings())
        with pytest.raises(SourceError, match="do not fit this interpreter"):
            download_prebuilt_wheel(index, "fx-plain", "1.0", dest, settings=settings)
        found = fetch_prebuilt_wheel(index, "fx-w", "1.0", dest, settings=settings)
    assert found.path == dest / other.name
    assert found.path.read_bytes() == other.read_bytes()
    assert [p.name for p in dest.iterdir()] == [other.name]


@pytest.mark.network
def test_real_index_pure_python_wheel(tmp_path: Path) -> None:
    index = IndexClient(resolve_index_url())
    [listed] = [f for f in index.files("packaging") if f.filename.endswith("24.2-py3-none-any.whl")]
    path = download_prebuilt_wheel(index, "packaging", "24.2", tmp_path, settings=Settings())
    assert path.name == "packaging-24.2-py3-none-any.whl"
    assert listed.sha256 is not None and sha256_file(path) == listed.sha256


def test_test_mode_fallback_takes_the_wheel_and_runs_its_hooks(
    upstream: Upstream, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine's one fall-back (a bootstrap's, build-sequence's and the second pass's): the
    index's wheel into wheels-repo/prebuilt, the prebuilt_wheel hooks run with the variant."""
    import json

    from fromager_dagster.core.plugins import Plugins
    from fromager_dagster.core.repository import prebuilt_fallback
    from fromager_dagster.core.settings.overrides import Settings

    wheel = make_wheel(FixturePackage("fx-broken"), upstream.folder)
    url = upstream.start()
    hook_log = tmp_path / "hooks.jsonl"
    monkeypatch.setenv("FROMAGER_DAGSTER_PLUGIN_EXAMPLE_LOG", str(hook_log))
    layout = OutputLayout(tmp_path / "out")
    found = prebuilt_fallback(
        IndexClient(url),
        "fx-broken",
        "1.0",
        layout,
        settings=Settings(variant="rocm"),
        plugins=Plugins.load(),
    )
    assert found.path == layout.wheels_prebuilt / wheel.name
    assert found.path.read_bytes() == wheel.read_bytes()
    [seen] = [json.loads(line) for line in hook_log.read_text().splitlines()]
    assert (seen["hook"], seen["name"], seen["variant"]) == ("prebuilt_wheel", "fx-broken", "rocm")
    with pytest.raises(SourceError, match=re.escape("no pre-built wheel of fx-broken==2.0")):
        prebuilt_fallback(
            IndexClient(url),
            "fx-broken",
            "2.0",
            layout,
            settings=Settings(),
            plugins=Plugins.load(),
        )
