"""Tests for fromager_dagster.core.sources.urls, against an HTTP server on 127.0.0.1."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from fromager_dagster.core.errors import ConfigError, HashMismatchError, SourceError
from fromager_dagster.core.http import make_session
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.resolve.resolver import Resolver
from fromager_dagster.core.settings.overrides import PackageSettings
from fromager_dagster.core.settings.sections import DownloadSource
from fromager_dagster.core.sources import archives as sources
from fromager_dagster.core.sources.unpacking import unpack
from fromager_dagster.core.sources.urls import (
    download_from_url,
    download_override,
    source_url_for,
    template_problems,
)
from tests.fixtures.packages import FixturePackage, make_sdist

SETTINGS_FILE = Path("overrides/settings/fx_url.yaml")


def _settings(url: str | None, filename: str | None = None) -> PackageSettings:
    return PackageSettings(
        name=canonicalize_name("fx-url"),
        download_source=DownloadSource(url=url, destination_filename=filename),
        source_file=SETTINGS_FILE,
    )


class _QuietHandler(SimpleHTTPRequestHandler):
    requests_seen: ClassVar[list[str]] = []

    def log_message(self, format: str, *args: Any) -> None:
        _QuietHandler.requests_seen.append(self.path)


@pytest.fixture
def http_files(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """(base URL, folder) of a plain HTTP server on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "www"
    folder.mkdir()
    _QuietHandler.requests_seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietHandler, directory=str(folder)))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder
    finally:
        server.shutdown()
        thread.join()
        server.server_close()


# -- templates ---------------------------------------------------------------------------------


def test_no_download_source_means_the_index() -> None:
    assert source_url_for(_settings(None), "fx-url", "1.0") is None


def test_templates_expand_version_and_canonical_name() -> None:
    pkg = _settings(
        "https://files.example.invalid/${canonicalized_name}/v${version}/src.tar.gz?x=$$1",
        "${canonicalized_name}-${version}.tar.gz",
    )
    assert source_url_for(pkg, "FX_Url", "2.0.1") == (
        "https://files.example.invalid/fx-url/v2.0.1/src.tar.gz?x=$1",
        "fx-url-2.0.1.tar.gz",
    )
    bare = _settings("https://files.example.invalid/archive/v$version.zip")
    assert source_url_for(bare, "fx-url", "3") == (
        "https://files.example.invalid/archive/v3.zip",
        "v3.zip",
    )


def test_template_problems_name_the_unknown_variable_and_a_stray_dollar() -> None:
    assert template_problems("${canonicalized_name}-${version}") == []
    assert template_problems("${dist_name}-${version}") == [
        (
            "'${dist_name}-${version}' uses ${dist_name}; only ${version}, ${canonicalized_name} "
            "are known"
        )
    ]
    assert "write '$$' for a '$'" in template_problems("price-$-${version}")[0]


@pytest.mark.parametrize(
    ("url", "filename", "expected"),
    [
        ("https://h.example.invalid/${name}.tar.gz", None, r"download_source\.url: .*\$\{name\}"),
        ("https://h.example.invalid/x.tar.gz", "../${version}.tar.gz", "not a plain file name"),
        ("https://h.example.invalid/download", None, "'download' is not a source archive"),
        ("ftp://h.example.invalid/x.tar.gz", None, "is not an http"),
        ("https://h.example.invalid/x.tar.gz", "${oops", "destination_filename: .*'\\$'"),
    ],
)
def test_bad_templates_are_config_errors_naming_the_file_and_key(
    url: str, filename: str | None, expected: str
) -> None:
    with pytest.raises(ConfigError, match=expected) as info:
        source_url_for(_settings(url, filename), "fx-url", "1.0")
    assert info.value.message.startswith(f"{SETTINGS_FILE}: download_source.")
    assert info.value.package == "fx-url"


# -- downloading --------------------------------------------------------------------------------


def test_version_from_the_index_archive_from_the_templated_url(
    http_files: tuple[str, Path], tmp_path: Path
) -> None:
    base, www = http_files
    # the index has fx-url 1.0 and 1.1; the release server has a different build of each
    index_pkgs = [FixturePackage("fx-url", version=v) for v in ("1.0", "1.1")]
    for pkg in index_pkgs:
        make_sdist(pkg, tmp_path / "index")
    upstream = FixturePackage("fx-url", version="1.1", install_requires=("fx-extra",))
    served = make_sdist(upstream, www / "releases" / "fx-url" / "v1.1")
    settings = _settings(
        base + "/releases/${canonicalized_name}/v${version}/" + upstream.sdist_filename,
        "${canonicalized_name}-${version}-upstream.tar.gz",
    )
    with LocalIndexServer([tmp_path / "index"]) as server:
        resolved = Resolver(IndexClient(server.url), Constraints()).resolve(Requirement("fx-url"))
    dest = tmp_path / "sdists-repo" / "downloads"
    fetched = download_override(make_session(retries=0), resolved, settings, dest)
    assert fetched is not None
    archive, pkg = fetched
    assert archive == dest / "fx-url-1.1-upstream.tar.gz"
    assert archive.read_bytes() == served.read_bytes()
    assert pkg.source.url == f"{base}/releases/fx-url/v1.1/{upstream.sdist_filename}"
    assert pkg.source.sha256 == sources.sha256_file(served) != resolved.source.sha256
    assert (pkg.key, pkg.source.filename) == ("fx-url==1.1", archive.name)
    tree = unpack(archive, tmp_path / "work")
    assert "fx-extra" in (tree / "fixture.json").read_text()
    assert download_override(make_session(retries=0), resolved, _settings(None), dest) is None


def test_without_a_known_hash_the_file_is_fetched_again_and_its_hash_recorded(
    http_files: tuple[str, Path], tmp_path: Path
) -> None:
    base, www = http_files
    served = make_sdist(FixturePackage("fx-url", version="2.0"), www)
    args: dict[str, Any] = {
        "name": "fx-url",
        "version": "2.0",
        "url": f"{base}/{served.name}",
        "filename": served.name,
        "dest_dir": tmp_path / "dl",
    }
    session = make_session(retries=0)
    path, file = download_from_url(session, **args)
    download_from_url(session, **args)
    assert _QuietHandler.requests_seen.count(f"/{served.name}") == 2
    assert file.sha256 == sources.sha256_file(path)
    # with the hash recorded by the first run, a rerun reuses the file without a request
    download_from_url(session, sha256=file.sha256, **args)
    assert _QuietHandler.requests_seen.count(f"/{served.name}") == 2
    (tmp_path / "dl" / served.name).unlink()
    with pytest.raises(HashMismatchError):
        download_from_url(session, sha256="0" * 64, **args)
    assert not (tmp_path / "dl" / served.name).exists()


def test_missing_file_on_the_server_is_a_source_error(
    http_files: tuple[str, Path], tmp_path: Path
) -> None:
    base, _ = http_files
    with pytest.raises(SourceError, match="HTTP status 404") as info:
        download_from_url(
            make_session(retries=0),
            name="fx-url",
            version="9.0",
            url=f"{base}/missing-9.0.tar.gz",
            filename="missing-9.0.tar.gz",
            dest_dir=tmp_path / "dl",
        )
    assert (info.value.package, info.value.version) == ("fx-url", "9.0")
    assert not (tmp_path / "dl" / "missing-9.0.tar.gz").exists()
