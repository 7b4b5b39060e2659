"""IndexClient against a real local index on 127.0.0.1 (JSON and HTML), errors and retries."""

from __future__ import annotations

import hashlib
import pickle
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from packaging.tags import sys_tags
from packaging.utils import canonicalize_name
from packaging.version import Version

from fromager_dagster.core.errors import IndexAccessError
from fromager_dagster.core.http import make_session
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.distributions import (
    DistFile,
    best_wheel,
    parse_dist_filename,
    wheel_tag_rank,
)
from fromager_dagster.core.index.server import LocalIndexServer

if TYPE_CHECKING:
    from conftest import DistFactory

Reply = tuple[int, dict[str, str], bytes]


class Scripted:
    """A tiny HTTP server answering each GET with the next scripted reply (the last repeats)."""

    def __init__(self, replies: list[Reply] | Callable[[str], Reply], delay: float = 0.0) -> None:
        self.replies = replies
        self.delay = delay
        self.paths: list[str] = []
        self.accepts: list[str | None] = []
        scripted = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                scripted.paths.append(self.path)
                scripted.accepts.append(self.headers.get("Accept"))
                if callable(scripted.replies):
                    status, headers, body = scripted.replies(self.path)
                else:
                    n = min(len(scripted.paths), len(scripted.replies)) - 1
                    status, headers, body = scripted.replies[n]
                time.sleep(scripted.delay)
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/simple/"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted() -> Iterator[Callable[..., Scripted]]:
    servers: list[Scripted] = []

    def start(replies: list[Reply] | Callable[[str], Reply], delay: float = 0.0) -> Scripted:
        servers.append(Scripted(replies, delay))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def html(body: str) -> Reply:
    return 200, {"Content-Type": "text/html; charset=utf-8"}, body.encode()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def folder(dist_factory: DistFactory) -> Path:
    dist_factory.wheel("foo-bar", "1.10")
    dist_factory.wheel("foo-bar", "1.2", requires_python=">=3.8")
    dist_factory.sdist("foo-bar", "1.2", requires_python=">=3.8")
    dist_factory.wheel("foo-bar", "1.0")
    dist_factory.wheel("foo-bar", "3.0", requires_python=">=4")
    dist_factory.sdist("foo-bar", "0.5")  # yanked below
    (dist_factory.folder / "foo-bar-oops.tar.gz").write_bytes(b"not a version")
    (dist_factory.folder / "foo-bar-1.0.egg").write_bytes(b"egg")
    return dist_factory.folder


YANKED = {"foo-bar-0.5.tar.gz": "security"}


@pytest.mark.parametrize("html_only", [False, True], ids=["json", "html"])
def test_files_lists_installable_files_sorted(folder: Path, html_only: bool) -> None:
    with LocalIndexServer([folder], yanked=YANKED, html_only=html_only) as server:
        files = IndexClient(server.url).files("Foo_Bar")
    assert [(str(f.version), f.kind) for f in files] == [
        ("1.0", "wheel"),
        ("1.2", "sdist"),
        ("1.2", "wheel"),
        ("1.10", "wheel"),
    ]
    for f in files:
        assert f.name == "foo-bar"
        assert isinstance(f.version, Version)
        assert f.url == server.url.replace("/simple/", "/files/") + f.filename
        assert f.sha256 == sha256(folder / f.filename)
    sdist = files[1]
    assert sdist == DistFile(
        name=sdist.name,
        version=Version("1.2"),
        filename="foo-bar-1.2.tar.gz",
        url=sdist.url,
        kind="sdist",
        sha256=sha256(folder / "foo-bar-1.2.tar.gz"),
        requires_python=">=3.8",
    )


def test_negotiates_json_when_the_server_offers_it(folder: Path) -> None:
    with LocalIndexServer([folder], yanked=YANKED) as server:
        client = IndexClient(server.url)
        files = client.files("foo-bar")
        raw = client.session.get(
            server.url + "foo-bar/",
            headers={"Accept": "application/vnd.pypi.simple.v1+json"},
            timeout=10,
        )
    assert raw.headers["Content-Type"] == "application/vnd.pypi.simple.v1+json"
    assert len(files) == 4


def test_python_version_option_filters(folder: Path) -> None:
    with LocalIndexServer([folder], yanked=YANKED) as server:
        old = IndexClient(server.url, python_version="3.7.9").files("foo-bar")
        future = IndexClient(server.url, python_version="4.0.0").files("foo-bar")
    assert [str(f.version) for f in old] == ["1.0", "1.10"]
    assert "3.0" in [str(f.version) for f in future]


def test_html_details(scripted: Callable[..., Scripted]) -> None:
    page = """<!DOCTYPE html><html><body>
    <a href="/files/pkg-1.0.tar.gz#sha256=ABC123">pkg-1.0.tar.gz</a>
    <a href="sub/pkg-1.1-py3-none-any.whl#md5=00" data-requires-python="&gt;=3.0">x</a>
    <a href="https://mirror.invalid/p/pkg-1.2.zip" data-requires-python="&gt;=4">pkg-1.2.zip</a>
    <a href="pkg-1.3.tar.gz" data-yanked="">pkg-1.3.tar.gz</a>
    <a href="pkg-1.4.tar.gz" data-yanked>pkg-1.4.tar.gz</a>
    <a href="pkg-1.5.exe">pkg-1.5.exe</a>
    <a href="other-1.0.tar.gz">other-1.0.tar.gz</a>
    <a href="pkg-1.6.tar.xz#sha256=ff">pkg-1.6.tar.xz</a>
    <a href="pkg-1.7.tar.gz" data-requires-python="not a specifier">pkg-1.7.tar.gz</a>
    </body></html>"""
    server = scripted([html(page)])
    files = IndexClient(server.url.rstrip("/")).files("PKG")
    base = server.url.removesuffix("simple/")
    assert [(f.filename, f.url, f.sha256, f.requires_python) for f in files] == [
        ("pkg-1.0.tar.gz", base + "files/pkg-1.0.tar.gz", "abc123", None),
        (
            "pkg-1.1-py3-none-any.whl",
            base + "simple/pkg/sub/pkg-1.1-py3-none-any.whl",
            None,
            ">=3.0",
        ),
        ("pkg-1.6.tar.xz", base + "simple/pkg/pkg-1.6.tar.xz", "ff", None),
        ("pkg-1.7.tar.gz", base + "simple/pkg/pkg-1.7.tar.gz", None, "not a specifier"),
    ]
    assert server.paths == ["/simple/pkg/"]
    assert server.accepts[0] is not None
    assert server.accepts[0].startswith("application/vnd.pypi.simple.v1+json")


def test_json_details(scripted: Callable[..., Scripted]) -> None:
    body = b"""{"meta": {"api-version": "1.0"}, "name": "pkg", "files": [
      {"filename": "pkg-1.0.tar.gz", "url": "../../f/pkg-1.0.tar.gz", "hashes": {"sha256": "aa"}},
      {"filename": "pkg-1.1.tar.gz", "url": "pkg-1.1.tar.gz#sha256=bb", "hashes": {}},
      {"filename": "pkg-1.2.tar.gz", "url": "pkg-1.2.tar.gz", "hashes": {}, "yanked": "bad"},
      {"filename": "pkg-1.3.tar.gz", "url": "pkg-1.3.tar.gz", "hashes": {}, "yanked": true},
      {"filename": "pkg-1.4.tar.gz", "url": "pkg-1.4.tar.gz", "hashes": {}, "yanked": false,
       "requires-python": ">=3.0"},
      {"filename": "pkg-1.5.tar.gz", "url": "pkg-1.5.tar.gz", "hashes": {},
       "requires-python": "<3"},
      {"filename": "pkg_x-1.0.tar.gz", "url": "pkg_x-1.0.tar.gz", "hashes": {}}
    ]}"""
    server = scripted([(200, {"Content-Type": "application/vnd.pypi.simple.v1+json"}, body)])
    files = IndexClient(server.url).files("pkg")
    base = server.url.removesuffix("simple/")
    assert [(f.filename, f.url, f.sha256, f.requires_python) for f in files] == [
        ("pkg-1.0.tar.gz", base + "f/pkg-1.0.tar.gz", "aa", None),
        ("pkg-1.1.tar.gz", base + "simple/pkg/pkg-1.1.tar.gz", "bb", None),
        ("pkg-1.4.tar.gz", base + "simple/pkg/pkg-1.4.tar.gz", None, ">=3.0"),
    ]


def test_unparseable_page_is_an_index_error(scripted: Callable[..., Scripted]) -> None:
    server = scripted([(200, {"Content-Type": "application/vnd.pypi.simple.v1+json"}, b"{")])
    with pytest.raises(IndexAccessError, match="could not parse") as info:
        IndexClient(server.url).files("pkg")
    assert info.value.package == "pkg"


def test_missing_package_names_package_and_index(folder: Path) -> None:
    with LocalIndexServer([folder]) as server, pytest.raises(IndexAccessError) as info:
        IndexClient(server.url).files("No_Such.Thing")
    assert str(info.value) == f"package no-such-thing not found on index {server.url}"
    assert info.value.package == "no-such-thing"
    assert pickle.loads(pickle.dumps(info.value)).package == "no-such-thing"


def test_one_request_per_name_even_when_concurrent(scripted: Callable[..., Scripted]) -> None:
    server = scripted([html('<a href="pkg-1.0.tar.gz">pkg-1.0.tar.gz</a>')], delay=0.3)
    client = IndexClient(server.url)
    results: list[list[DistFile]] = []

    def call(name: str) -> None:
        results.append(client.files(name))

    threads = [threading.Thread(target=call, args=(n,)) for n in ["pkg", "PKG", "Pkg"] * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert server.paths == ["/simple/pkg/"]
    assert len(results) == 9
    assert all(r == results[0] and len(r) == 1 for r in results)
    results[0].clear()  # callers get their own list
    assert len(client.files("pkg")) == 1
    assert len(server.paths) == 1


def test_retries_503_then_succeeds(scripted: Callable[..., Scripted]) -> None:
    fail: Reply = (503, {"Content-Type": "text/plain"}, b"busy")
    server = scripted([fail, fail, html('<a href="pkg-1.0.tar.gz">pkg-1.0.tar.gz</a>')])
    files = IndexClient(server.url, session=make_session(backoff=0.01)).files("pkg")
    assert [f.filename for f in files] == ["pkg-1.0.tar.gz"]
    assert len(server.paths) == 3


def test_retry_after_is_respected(scripted: Callable[..., Scripted]) -> None:
    busy: Reply = (429, {"Retry-After": "1"}, b"slow down")
    server = scripted([busy, html('<a href="pkg-1.0.tar.gz">pkg-1.0.tar.gz</a>')])
    start = time.monotonic()
    files = IndexClient(server.url, session=make_session(backoff=0.0)).files("pkg")
    assert time.monotonic() - start >= 0.9
    assert len(files) == 1
    assert len(server.paths) == 2


def test_gives_up_after_retries_with_reason(scripted: Callable[..., Scripted]) -> None:
    server = scripted([(502, {}, b"bad gateway")])
    client = IndexClient(server.url, session=make_session(retries=2, backoff=0.0))
    with pytest.raises(IndexAccessError) as info:
        client.files("pkg")
    assert len(server.paths) == 3
    message = str(info.value)
    assert "pkg" in message
    assert server.url + "pkg/" in message
    assert "502" in message
    with pytest.raises(IndexAccessError):  # the failure is remembered, not re-fetched
        client.files("pkg")
    assert len(server.paths) == 3


def test_client_error_is_not_retried(scripted: Callable[..., Scripted]) -> None:
    server = scripted([(403, {}, b"no")])
    with pytest.raises(IndexAccessError, match="HTTP 403"):
        IndexClient(server.url, session=make_session(backoff=0.0)).files("pkg")
    assert len(server.paths) == 1


def test_connection_refused_is_an_index_error() -> None:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    port = srv.server_address[1]
    srv.server_close()  # nothing listens on this port now
    url = f"http://127.0.0.1:{port}/simple/"
    client = IndexClient(url, session=make_session(retries=1, backoff=0.0))
    with pytest.raises(IndexAccessError) as info:
        client.files("pkg")
    assert f"could not read {url}pkg/ for package pkg" in str(info.value)


def test_timeout_is_an_index_error(scripted: Callable[..., Scripted]) -> None:
    server = scripted([html("")], delay=2.0)
    client = IndexClient(server.url, session=make_session(retries=0), timeout=0.2)
    start = time.monotonic()
    with pytest.raises(IndexAccessError, match="timed out"):
        client.files("pkg")
    assert time.monotonic() - start < 1.5


def test_index_url_gets_a_trailing_slash() -> None:
    assert IndexClient("http://127.0.0.1:1/simple").index_url == "http://127.0.0.1:1/simple/"


@pytest.mark.parametrize(
    ("filename", "expected"),
    [
        ("Foo_Bar-1.0-py3-none-any.whl", ("foo-bar", "1.0", "wheel")),
        ("foo-bar-1.0.tar.gz", ("foo-bar", "1.0", "sdist")),
        ("foo-bar-1.0.tgz", ("foo-bar", "1.0", "sdist")),
        ("foo-bar-2.0rc1.tar.bz2", ("foo-bar", "2.0rc1", "sdist")),
        ("foo-bar-1.0.zip", ("foo-bar", "1.0", "sdist")),
        ("foo-bar-1.0.tar.xz", ("foo-bar", "1.0", "sdist")),
        ("foo-bar-1.0.egg", None),
        ("foo-bar-1.0.exe", None),
        ("foo-bar.tar.gz", None),
        ("foo-1.0-bad.whl", None),
    ],
)
def test_parse_dist_filename(filename: str, expected: tuple[str, str, str] | None) -> None:
    parsed = parse_dist_filename(filename)
    assert (None if parsed is None else (parsed[0], str(parsed[1]), parsed[2])) == expected


def _wheel(tag: str) -> DistFile:
    filename = f"foo-1.0-{tag}.whl"
    return DistFile(
        canonicalize_name("foo"), Version("1.0"), filename, filename, "wheel", None, None
    )


def test_best_wheel_ignoring_the_platform_still_ranks_compatible_wheels_first() -> None:
    here = next(iter(sys_tags()))
    foreign = _wheel("cp27-cp27m-win32")
    same_python = _wheel(f"{here.interpreter}-{here.abi}-fx_other_platform")
    compatible = _wheel("py3-none-any")
    assert best_wheel([foreign, same_python]) is None
    assert wheel_tag_rank(foreign.filename) is None
    assert best_wheel([foreign], ignore_platform=True) is foreign
    assert best_wheel([foreign, same_python], ignore_platform=True) is same_python
    assert best_wheel([foreign, same_python, compatible], ignore_platform=True) is compatible
    assert best_wheel([compatible]) is compatible
