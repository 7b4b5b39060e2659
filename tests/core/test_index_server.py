"""LocalIndexServer and write_simple_tree: real files, real sockets on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urljoin, urlsplit

import pytest
import requests

from fromager_dagster.core.index.server import LocalIndexServer
from fromager_dagster.core.index.simple_pages import write_simple_tree

if TYPE_CHECKING:
    from conftest import DistFactory

JSON = "application/vnd.pypi.simple.v1+json"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.found: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.found.append(dict(attrs))


def anchors(text: str) -> list[dict[str, str | None]]:
    parser = Anchors()
    parser.feed(text)
    return parser.found


@pytest.fixture
def server(dist_factory: DistFactory) -> Iterator[LocalIndexServer]:
    dist_factory.wheel("foo-bar", "1.0", requires_python=">=3.8")
    dist_factory.sdist("foo-bar", "1.0", requires_python=">=3.8")
    dist_factory.wheel("foo-bar", "0.9")
    dist_factory.sdist("other", "2.0", ext=".zip", requires_python="<4,>=3.9")
    (dist_factory.folder / "notes.txt").write_text("not a distribution")
    (dist_factory.folder / "garbage.whl").write_bytes(b"x")
    yanked = {"foo_bar-0.9-py3-none-any.whl": "broken build"}
    with LocalIndexServer([dist_factory.folder], yanked=yanked) as srv:
        yield srv


def raw_get(srv: LocalIndexServer, path: str) -> tuple[int, bytes]:
    """GET ``path`` exactly as written (no client-side normalisation of ``..``)."""
    parts = urlsplit(srv.url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_url_is_local_simple_root(server: LocalIndexServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/simple/", server.url)
    assert server.port != 0


def test_url_before_start_raises(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError):
        _ = LocalIndexServer([tmp_path]).url


def test_project_list_json_and_html(server: LocalIndexServer) -> None:
    data = requests.get(server.url, headers={"Accept": JSON}, timeout=10)
    assert data.headers["Content-Type"] == JSON
    assert data.json()["projects"] == [{"name": "foo-bar"}, {"name": "other"}]
    page = requests.get(server.url, timeout=10)
    assert page.headers["Content-Type"].startswith("text/html")
    assert [a["href"] for a in anchors(page.text)] == ["foo-bar/", "other/"]


def test_project_page_json(server: LocalIndexServer, dist_factory: DistFactory) -> None:
    response = requests.get(server.url + "foo-bar/", headers={"Accept": JSON}, timeout=10)
    assert response.headers["Content-Type"] == JSON
    data = response.json()
    assert data["name"] == "foo-bar"
    files = {f["filename"]: f for f in data["files"]}
    assert sorted(files) == [
        "foo-bar-1.0.tar.gz",
        "foo_bar-0.9-py3-none-any.whl",
        "foo_bar-1.0-py3-none-any.whl",
    ]
    for filename, entry in files.items():
        assert entry["hashes"] == {"sha256": sha256(dist_factory.folder / filename)}
        body = requests.get(urljoin(response.url, entry["url"]), timeout=10).content
        assert body == (dist_factory.folder / filename).read_bytes()
    assert files["foo_bar-1.0-py3-none-any.whl"]["requires-python"] == ">=3.8"
    assert files["foo-bar-1.0.tar.gz"]["requires-python"] == ">=3.8"
    assert "requires-python" not in files["foo_bar-0.9-py3-none-any.whl"]
    assert files["foo_bar-0.9-py3-none-any.whl"]["yanked"] == "broken build"
    assert files["foo_bar-1.0-py3-none-any.whl"]["yanked"] is False


def test_project_page_html(server: LocalIndexServer, dist_factory: DistFactory) -> None:
    response = requests.get(server.url + "other/", headers={"Accept": "text/html"}, timeout=10)
    assert response.headers["Content-Type"].startswith("text/html")
    assert 'data-requires-python="&lt;4,&gt;=3.9"' in response.text
    [link] = anchors(response.text)
    url, _, fragment = (link["href"] or "").partition("#")
    assert fragment == "sha256=" + sha256(dist_factory.folder / "other-2.0.zip")
    assert link["data-requires-python"] == "<4,>=3.9"
    assert "data-yanked" not in link
    body = requests.get(urljoin(response.url, url), timeout=10).content
    assert body == (dist_factory.folder / "other-2.0.zip").read_bytes()


def test_html_marks_yanked(server: LocalIndexServer) -> None:
    page = requests.get(server.url + "foo-bar/", timeout=10).text
    yanked = {unquote(a["href"] or "").split("#")[0]: a.get("data-yanked") for a in anchors(page)}
    assert yanked["../../files/foo_bar-0.9-py3-none-any.whl"] == "broken build"
    assert "data-yanked" not in page.split("foo_bar-1.0")[1].split("<br/>")[0]


def test_html_only_ignores_json_accept(dist_factory: DistFactory) -> None:
    dist_factory.wheel("pkg", "1.0")
    with LocalIndexServer([dist_factory.folder], html_only=True) as srv:
        response = requests.get(srv.url + "pkg/", headers={"Accept": JSON}, timeout=10)
    assert response.headers["Content-Type"].startswith("text/html")
    assert len(anchors(response.text)) == 1


def test_json_only_when_preferred(server: LocalIndexServer) -> None:
    accept = f"text/html, {JSON};q=0.5"
    response = requests.get(server.url + "other/", headers={"Accept": accept}, timeout=10)
    assert response.headers["Content-Type"].startswith("text/html")


def test_non_canonical_name_redirects(server: LocalIndexServer) -> None:
    response = requests.get(server.url + "Foo_Bar", allow_redirects=False, timeout=10)
    assert response.status_code == 301
    assert response.headers["Location"] == "/simple/foo-bar/"
    followed = requests.get(server.url + "Foo.BAR/", headers={"Accept": JSON}, timeout=10)
    assert followed.url == server.url + "foo-bar/"
    assert followed.json()["name"] == "foo-bar"


def test_unknown_project_is_404(server: LocalIndexServer) -> None:
    assert requests.get(server.url + "nothing-here/", timeout=10).status_code == 404


def test_file_served_with_length(server: LocalIndexServer, dist_factory: DistFactory) -> None:
    path = dist_factory.folder / "foo-bar-1.0.tar.gz"
    response = requests.get(urljoin(server.url, "../files/foo-bar-1.0.tar.gz"), timeout=10)
    assert response.status_code == 200
    assert response.content == path.read_bytes()
    assert response.headers["Content-Length"] == str(path.stat().st_size)
    head = requests.head(urljoin(server.url, "../files/foo-bar-1.0.tar.gz"), timeout=10)
    assert head.headers["Content-Length"] == str(path.stat().st_size)
    assert head.content == b""


@pytest.mark.parametrize(
    "path",
    [
        "/files/../conftest.py",
        "/files/..%2f..%2fconftest.py",
        "/files/%2e%2e",
        "/files/notes.txt",
        "/files/garbage.whl",
        "/files/missing-1.0.tar.gz",
        "/etc/passwd",
    ],
)
def test_files_outside_the_index_are_refused(server: LocalIndexServer, path: str) -> None:
    status, body = raw_get(server, path)
    assert status == 404
    assert body == b"not found\n"


def test_new_and_changed_files_appear_without_restart(
    server: LocalIndexServer, dist_factory: DistFactory
) -> None:
    page = server.url + "foo-bar/"
    before = requests.get(page, headers={"Accept": JSON}, timeout=10).json()["files"]
    new = dist_factory.wheel("foo-bar", "2.0")
    after = requests.get(page, headers={"Accept": JSON}, timeout=10).json()["files"]
    assert len(after) == len(before) + 1
    assert {"sha256": sha256(new)} in [f["hashes"] for f in after]

    dist_factory.wheel("foo-bar", "2.0", requires_python=">=3.12")  # rebuilt: new content
    os.utime(new, ns=(1, 1))  # a different mtime even on coarse-clock filesystems
    rebuilt = requests.get(page, headers={"Accept": JSON}, timeout=10).json()["files"]
    entry = next(f for f in rebuilt if f["filename"] == new.name)
    assert entry["hashes"] == {"sha256": sha256(new)}
    assert entry["requires-python"] == ">=3.12"

    dist_factory.wheel("brand-new", "0.1")
    assert requests.get(server.url + "brand-new/", timeout=10).status_code == 200


def test_multiple_roots_are_merged(dist_factory: DistFactory, tmp_path: Path) -> None:
    second = tmp_path / "second"
    second.mkdir()
    dist_factory.wheel("pkg", "1.0")
    dist_factory.sdist("pkg", "1.1", folder=second, ext=".tar.bz2", requires_python=">=3.10")
    with LocalIndexServer([dist_factory.folder, second]) as srv:
        data = requests.get(srv.url + "pkg/", headers={"Accept": JSON}, timeout=10).json()
        body = requests.get(urljoin(srv.url, "../files/pkg-1.1.tar.bz2"), timeout=10).content
    files = {f["filename"]: f for f in data["files"]}
    assert sorted(files) == ["pkg-1.0-py3-none-any.whl", "pkg-1.1.tar.bz2"]
    assert files["pkg-1.1.tar.bz2"]["requires-python"] == ">=3.10"
    assert body == (second / "pkg-1.1.tar.bz2").read_bytes()


def test_stop_closes_the_port(dist_factory: DistFactory) -> None:
    srv = LocalIndexServer([dist_factory.folder])
    srv.start()
    url = srv.url
    assert requests.get(url, timeout=10).status_code == 200
    srv.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url, timeout=10, headers={"Connection": "close"})


def test_write_simple_tree(dist_factory: DistFactory, tmp_path: Path) -> None:
    wheel = dist_factory.wheel("Foo_Bar", "1.0", requires_python=">=3.8")
    sdist = dist_factory.sdist("foo-bar", "1.0")
    other = dist_factory.sdist("other", "2.0", ext=".tgz")
    (dist_factory.folder / "README.txt").write_text("ignored")
    dest = tmp_path / "site" / "simple"

    write_simple_tree([dist_factory.folder], dest)

    root_links = [a["href"] for a in anchors((dest / "index.html").read_text())]
    assert root_links == ["foo-bar/", "other/"]
    for project, expected in (("foo-bar", {wheel, sdist}), ("other", {other})):
        page = dest / project / "index.html"
        links = anchors(page.read_text())
        resolved = set()
        for link in links:
            href, _, fragment = (link["href"] or "").partition("#")
            assert not href.startswith("/")
            target = (page.parent / unquote(href)).resolve()
            assert fragment == "sha256=" + sha256(target)
            resolved.add(target)
        assert resolved == {p.resolve() for p in expected}
    wheel_link = next(
        a
        for a in anchors((dest / "foo-bar" / "index.html").read_text())
        if (a["href"] or "").split("#")[0].endswith(".whl")
    )
    assert wheel_link["data-requires-python"] == ">=3.8"
    leftovers = [p for p in dest.rglob("*") if p.is_file() and p.name != "index.html"]
    assert leftovers == []


def test_write_simple_tree_replaces_pages(dist_factory: DistFactory, tmp_path: Path) -> None:
    dest = tmp_path / "simple"
    dist_factory.wheel("pkg", "1.0")
    write_simple_tree([dist_factory.folder], dest)
    dist_factory.wheel("pkg", "2.0")
    write_simple_tree([dist_factory.folder], dest)
    hrefs = [a["href"] or "" for a in anchors((dest / "pkg" / "index.html").read_text())]
    assert [h.split("#")[0].rsplit("/", 1)[-1] for h in hrefs] == [
        "pkg-1.0-py3-none-any.whl",
        "pkg-2.0-py3-none-any.whl",
    ]
