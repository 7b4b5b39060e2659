"""The HTTP policy against a proxy on 127.0.0.1 that truncates, resets and refuses responses:
index pages, sdist downloads and constraints URLs are retried; a missing file is not."""

from __future__ import annotations

import pickle
import random
import string
from collections.abc import Iterator
from pathlib import Path

import pytest

from fromager_dagster.core.credentials import (
    redact_text,
    split_credentials,
    strip_credentials,
    with_credentials,
)
from fromager_dagster.core.errors import ConfigError, IndexAccessError, SourceError
from fromager_dagster.core.http import make_session
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.resolve.requirements import Constraints
from fromager_dagster.core.sources.archives import download
from tests.fixtures.faults import FaultyProxy, first_n
from tests.fixtures.packages import FixturePackage, make_index

_NOISE = "".join(random.Random(1).choices(string.ascii_letters, k=400_000))
PKG = FixturePackage("fx-big", module_body=f"DATA = {_NOISE!r}\n")  # ~300 kB compressed


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[str]:
    make_index([PKG], tmp_path / "up")
    with LocalIndexServer([tmp_path / "up"]) as server:
        yield server.url


def _client(proxy: FaultyProxy, retries: int = 3) -> IndexClient:
    return IndexClient(proxy.url, session=make_session(retries=retries, backoff=0.0))


@pytest.mark.parametrize("fault", ["truncate", "reset", "503"])
def test_index_page_is_retried_after_a_broken_response(upstream: str, fault: str) -> None:
    with FaultyProxy(upstream, first_n(2, fault, only="/simple/")) as proxy:
        files = _client(proxy).files("fx-big")
    assert [f.filename for f in files] == [PKG.sdist_filename]
    assert proxy.faults_seen(fault) == 2


def test_index_page_truncated_every_time_is_one_clear_error(upstream: str) -> None:
    proxy = FaultyProxy(upstream, first_n(99, "truncate", only="/simple/"))
    with proxy, pytest.raises(IndexAccessError) as info:
        _client(proxy, retries=2).files("fx-big")
    message = str(info.value)
    assert "fx-big" in message and "3 attempts" in message, message
    assert "broke off" in message or "bytes" in message, message
    assert proxy.faults_seen("truncate") == 3


@pytest.mark.parametrize("ranges", [False, True])
def test_sdist_download_is_retried_after_a_truncated_body(
    upstream: str, tmp_path: Path, ranges: bool
) -> None:
    with FaultyProxy(upstream, first_n(2, "truncate", only="/files/"), ranges=ranges) as proxy:
        client = _client(proxy)
        (sdist,) = client.files("fx-big")
        path = download(client.session, sdist, tmp_path / "dl")
    assert path.read_bytes() == (tmp_path / "up" / PKG.sdist_filename).read_bytes()
    assert list((tmp_path / "dl").iterdir()) == [path]  # no .part left
    file_requests = [(p, f, r) for p, f, r in proxy.log if p.startswith("/files/")]
    assert len(file_requests) == 3
    # the retry asks to resume where the body broke off; a server without ranges sends it all
    assert file_requests[0][2] is None
    assert file_requests[1][2] is not None and file_requests[1][2].startswith("bytes=")


def test_missing_sdist_is_not_transient_and_says_why(upstream: str, tmp_path: Path) -> None:
    with FaultyProxy(upstream, first_n(99, "404", only="/files/")) as proxy:
        client = _client(proxy)
        (sdist,) = client.files("fx-big")
        with pytest.raises(SourceError) as info:
            download(client.session, sdist, tmp_path / "dl")
    error = info.value
    assert "HTTP status 404 (the file is not there)" in str(error)
    assert error.transient is False
    assert pickle.loads(pickle.dumps(error)).transient is False
    assert proxy.counts[next(p for p in proxy.counts if p.startswith("/files/"))] == 1


def test_missing_project_is_not_transient(upstream: str) -> None:
    with FaultyProxy(upstream) as proxy, pytest.raises(IndexAccessError) as info:
        _client(proxy).files("fx-nothing")
    assert info.value.transient is False


def test_constraints_url_is_fetched_with_retries(upstream: str) -> None:
    body = b"fx-big==1.0\n" + b"# pad\n" * 2000
    with FaultyProxy(
        upstream, first_n(2, "truncate", only="constraints"), static={"/c/constraints.txt": body}
    ) as proxy:
        url = proxy.url.replace("/simple/", "/c/constraints.txt")
        session = make_session(retries=3, backoff=0.0)
        constraints = Constraints.from_files([url], session=session)
    assert str(constraints.get("fx-big")) == "fx-big==1.0"
    assert proxy.faults_seen("truncate") == 2


def test_constraints_url_404_is_one_line_config_error(upstream: str) -> None:
    with FaultyProxy(upstream) as proxy:
        url = proxy.url.replace("/simple/", "/files/nope.txt")
        with pytest.raises(ConfigError, match=r"cannot read .*nope.txt: HTTP 404"):
            Constraints.from_files([url], session=make_session(retries=0))


def test_credentials_are_sent_to_their_origin_only_and_never_shown(upstream: str) -> None:
    with FaultyProxy(upstream, auth=("alice", "s3cret")) as proxy:
        secret_url = proxy.url.replace("http://", "http://alice:s3cret@")
        client = IndexClient(secret_url, session=make_session(retries=0))
        (sdist,) = client.files("fx-big")
        assert "s3cret" not in client.index_url and "s3cret" not in sdist.url
        assert "s3cret" not in client.display_url and "alice:****@" in client.display_url
        with pytest.raises(IndexAccessError) as info:
            IndexClient(proxy.url, session=make_session(retries=0)).files("fx-big")
        assert "401" in str(info.value)


def test_url_helpers() -> None:
    url = "https://u%40x:p%3Aw@example.invalid:8443/simple/?q=1"
    clean, found = split_credentials(url)
    assert clean == "https://example.invalid:8443/simple/?q=1"
    assert found == ("u@x", "p:w")
    assert strip_credentials(clean) == clean
    assert split_credentials(with_credentials(clean, found)) == (clean, found)
    text = f"could not read {url}pkg/: boom; see https://token@host.invalid/x"
    redacted = redact_text(text)
    assert "p%3Aw" not in redacted and "token" not in redacted
    assert "u%40x:****@example.invalid" in redacted and "https://****@host.invalid" in redacted
    error = IndexAccessError(text)
    assert "p%3Aw" not in error.one_line() and "token@" not in str(error)


def test_an_error_with_a_multi_line_message_is_one_line() -> None:
    error = SourceError("garbage.tar.gz: not an archive\n  file could not be opened\n\nend")
    assert error.one_line() == (
        "source failed: garbage.tar.gz: not an archive; file could not be opened; end"
    )
