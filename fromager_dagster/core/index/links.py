"""A simple index's project page (PEP 691 JSON or PEP 503 HTML) read as its file links."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

#: What ``IndexClient`` asks for: PEP 691 JSON first, PEP 503 HTML as a fallback.
ACCEPT = (
    "application/vnd.pypi.simple.v1+json, "
    "application/vnd.pypi.simple.v1+html;q=0.2, "
    "text/html;q=0.1"
)
#: The content types of a PEP 691 JSON page (anything else is read as PEP 503 HTML).
JSON_TYPES = frozenset(
    {"application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.latest+json"}
)


@dataclass(frozen=True)
class Link:
    """One file link of a project page, as the page gives it (not yet checked or filtered)."""

    filename: str
    url: str  # absolute, fragment kept
    sha256: str | None
    requires_python: str | None
    yanked: bool
    upload_time: str | None = None


def _filename_from_url(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


_ABSOLUTE = ("https://", "http://")


def links_from_json(data: Any, page_url: str) -> list[Link]:
    links = []
    for item in data["files"]:
        url = str(item["url"])
        if not url.startswith(_ABSOLUTE):  # most indexes give absolute URLs: no join to do
            url = urljoin(page_url, url)
        hashes = item.get("hashes") or {}
        yanked = item.get("yanked", False)
        requires_python = item.get("requires-python")
        links.append(
            Link(
                filename=str(item.get("filename") or _filename_from_url(url)),
                url=url,
                sha256=hashes.get("sha256"),
                requires_python=str(requires_python).strip() if requires_python else None,
                yanked=yanked is True or isinstance(yanked, str),
                upload_time=item.get("upload-time"),
            )
        )
    return links


class _AnchorParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.base: str | None = None
        self.anchors: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "base" and self.base is None:
            self.base = dict(attrs).get("href")
        elif tag == "a":
            found = dict(attrs)
            if found.get("href"):
                self.anchors.append(found)


def links_from_html(text: str, page_url: str) -> list[Link]:
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return list(_html_links(parser.anchors, base))


def _html_links(anchors: Iterable[dict[str, str | None]], base: str) -> Iterable[Link]:
    for attrs in anchors:
        url = urljoin(base, attrs["href"] or "")
        requires_python = attrs.get("data-requires-python")
        yield Link(
            filename=_filename_from_url(url),
            url=url,
            sha256=None,
            requires_python=requires_python.strip() if requires_python else None,
            yanked="data-yanked" in attrs,
            upload_time=attrs.get("data-upload-time"),
        )
