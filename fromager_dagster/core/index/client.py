"""Package index client: a project's distribution files from a PEP 503 / PEP 691 simple index."""

from __future__ import annotations

import contextlib
import functools
import re
import sys
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, Literal
from urllib.parse import unquote, urldefrag, urljoin, urlsplit

import requests
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

from fromager_dagster.core.credentials import redact_url, split_credentials
from fromager_dagster.core.errors import IndexAccessError
from fromager_dagster.core.http import RetryingSession, fetch, make_session
from fromager_dagster.core.index.page_cache import (
    ROW_ERRORS,
    PageCache,
    page_digest,
    upload_time_of,
    upload_time_value,
)

__all__ = [
    "ACCEPT",
    "SDIST_EXTENSIONS",
    "DistFile",
    "IndexClient",
    "make_session",
    "parse_dist_filename",
]

#: What ``IndexClient`` asks for: PEP 691 JSON first, PEP 503 HTML as a fallback.
ACCEPT = ", ".join(
    (
        "application/vnd.pypi.simple.v1+json",
        "application/vnd.pypi.simple.v1+html;q=0.2",
        "text/html;q=0.1",
    )
)
_JSON_TYPES = frozenset(
    {"application/vnd.pypi.simple.v1+json", "application/vnd.pypi.simple.latest+json"}
)
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
def _python_admits(requires_python: str, python: Version) -> bool:
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
    return project, _version(parts[1])


@functools.lru_cache(maxsize=4096)
def _wheel_project(name: str) -> NormalizedName | None:
    """A wheel file name's project part, checked and normalized once per spelling."""
    if not name or "__" in name or _WHEEL_NAME.match(name) is None:
        return None
    return canonicalize_name(name)


@functools.lru_cache(maxsize=65536)
def _version(text: str) -> Version:
    """A version string parsed once (a page gives each version to many files)."""
    return Version(text)


@dataclass
class _Entry:
    lock: threading.Lock = field(default_factory=threading.Lock)
    done: bool = False
    files: list[DistFile] = field(default_factory=list)
    error: IndexAccessError | None = None


class IndexClient:
    """Reads project pages from one simple index; thread-safe, one request per project."""

    def __init__(
        self,
        index_url: str,
        *,
        session: requests.Session | None = None,
        timeout: float = 30.0,
        python_version: str | None = None,
    ) -> None:
        index_url = index_url if index_url.endswith("/") else index_url + "/"
        #: For messages: the URL with its password (if any) replaced by ``****``.
        self.display_url = redact_url(index_url)
        self.session = session if session is not None else make_session()
        # The credentials stay with the session (per origin); the URL every page, file and
        # graph record derives from has none.
        self.index_url, credentials = split_credentials(index_url)
        if credentials is not None and isinstance(self.session, RetryingSession):
            self.session.credentials.add(self.index_url, credentials)
        elif credentials is not None:
            self.session.auth = (credentials[0], credentials[1])
        self.timeout = timeout
        self.python_version = python_version or "{}.{}.{}".format(*sys.version_info[:3])
        self._python = Version(self.python_version)
        self._lock = threading.Lock()
        self._entries: dict[NormalizedName, _Entry] = {}
        self.page_cache: PageCache | None = None  # see with_page_cache

    def files(self, name: str) -> list[DistFile]:
        """Installable files of project ``name``, sorted by version ascending.

        Yanked files, files whose Requires-Python excludes our Python and files whose names
        do not parse as a distribution of ``name`` are left out.
        """
        key = canonicalize_name(name)
        with self._lock:
            entry = self._entries.setdefault(key, _Entry())
        with entry.lock:
            if not entry.done:
                try:
                    entry.files = self._fetch(key)
                except IndexAccessError as exc:
                    entry.error = exc
                entry.done = True
        if entry.error is not None:
            raise entry.error
        return list(entry.files)

    @contextlib.contextmanager
    def prefetching(self, names: Iterable[str], *, workers: int = 8) -> Iterator[None]:
        """Read the pages of ``names`` in the background while the body runs.

        A bootstrap resolves a tree level by level, one page's round trip after another; the
        names it will most likely ask for (the previous graph's, the constraints') are read
        at once instead, so that most of its questions find the answer already there. A page
        asked for meanwhile is read only once (:meth:`files` waits for the read under way);
        a failed read is the same error :meth:`files` would have raised. What is not read
        when the body ends is not read.
        """
        wanted = list(dict.fromkeys(canonicalize_name(n) for n in names))
        pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="prefetch")
        try:
            for name in wanted:
                pool.submit(self._prefetch, name)
            yield
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _prefetch(self, name: NormalizedName) -> None:
        with contextlib.suppress(IndexAccessError):
            self.files(name)

    def _fetch(self, name: NormalizedName) -> list[DistFile]:
        url = urljoin(self.index_url, f"{name}/")
        try:
            response = fetch(self.session, url, headers={"Accept": ACCEPT}, timeout=self.timeout)
        except requests.RequestException as exc:
            raise IndexAccessError(
                f"could not read {url} for package {name}: {_reason(exc)}", package=name
            ) from exc
        if response.status_code in (404, 410):
            raise IndexAccessError(
                f"package {name} not found on index {self.index_url}",
                package=name,
                transient=False,
            )
        if response.status_code != 200:
            raise IndexAccessError(
                f"could not read {url} for package {name}: "
                f"HTTP {response.status_code} {response.reason}",
                package=name,
                transient=response.status_code >= 500 or response.status_code == 429,
            )
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        cache, digest = self.page_cache, ""
        if cache is not None:
            digest = page_digest(response.url, content_type, self.python_version, response.content)
            known = self._cached_files(name, cache.load(name, digest))
            if known is not None:
                return known
        try:
            if content_type in _JSON_TYPES:
                links = _links_from_json(response.json(), response.url)
            else:
                links = _links_from_html(response.text, response.url)
            found = [f for f in (self._dist_file(name, link) for link in links) if f]
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise IndexAccessError(
                f"could not parse {url} for package {name}: {exc}", package=name
            ) from exc
        found.sort(key=lambda f: (f.version, f.kind, f.filename))
        if cache is not None:
            cache.store(name, digest, [_file_row(f) for f in found])
        return found

    def other_index(self, index_url: str) -> IndexClient:
        """A client of ``index_url`` with this one's session, Python and page cache."""
        client = IndexClient(
            index_url,
            session=self.session,
            timeout=self.timeout,
            python_version=self.python_version,
        )
        client.page_cache = self.page_cache
        return client

    def with_page_cache(self, cache: PageCache) -> IndexClient:
        """A client of the same index that keeps parsed pages in ``cache``
        (:mod:`.index.page_cache`); the pages either client has read are read for both."""
        client = self.other_index(self.index_url)
        client.display_url = self.display_url
        client.page_cache = cache
        client._lock, client._entries = self._lock, self._entries
        return client

    def _cached_files(self, name: NormalizedName, rows: list[Any] | None) -> list[DistFile] | None:
        """The files a cache kept for this page (already filtered and sorted), or None."""
        if rows is None:
            return None
        try:
            found = [
                DistFile(
                    name=name,
                    version=_version(version),
                    filename=filename,
                    url=url,
                    kind=kind,
                    sha256=sha256,
                    requires_python=requires_python,
                    upload_time=upload_time_of(uploaded),
                )
                for filename, version, kind, url, sha256, requires_python, uploaded in rows
            ]
        except ROW_ERRORS:
            return None
        ok = all(
            f.kind in ("sdist", "wheel")
            and isinstance(f.filename, str)
            and isinstance(f.url, str)
            and isinstance(f.sha256, (str, type(None)))
            and isinstance(f.requires_python, (str, type(None)))
            for f in found
        )
        return found if ok else None

    def _dist_file(self, name: NormalizedName, link: _Link) -> DistFile | None:
        if link.yanked:
            return None
        parsed = parse_dist_filename(link.filename)
        if parsed is None or parsed[0] != name:
            return None
        if link.requires_python and not self._python_ok(link.requires_python):
            return None
        url, fragment = urldefrag(link.url) if "#" in link.url else (link.url, "")
        sha256 = link.sha256
        if sha256 is None and fragment.startswith("sha256="):
            sha256 = fragment[len("sha256=") :]
        return DistFile(
            name=parsed[0],
            version=parsed[1],
            filename=link.filename,
            url=url,
            kind=parsed[2],
            sha256=sha256.lower() if sha256 else None,
            requires_python=link.requires_python,
            upload_time=parse_upload_time(link.upload_time),
        )

    def _python_ok(self, requires_python: str) -> bool:
        return _python_admits(requires_python, self._python)


def _file_row(file: DistFile) -> list[Any]:
    """A file as :class:`~.index.page_cache.PageCache` keeps it (see ``_cached_files``)."""
    return [
        file.filename,
        str(file.version),
        file.kind,
        file.url,
        file.sha256,
        file.requires_python,
        upload_time_value(file.upload_time),
    ]


@dataclass(frozen=True)
class _Link:
    filename: str
    url: str  # absolute, fragment kept
    sha256: str | None
    requires_python: str | None
    yanked: bool
    upload_time: str | None = None


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out ({exc})"
    return str(exc) or type(exc).__name__


def _filename_from_url(url: str) -> str:
    return unquote(urlsplit(url).path.rsplit("/", 1)[-1])


_ABSOLUTE = ("https://", "http://")


def _links_from_json(data: Any, page_url: str) -> list[_Link]:
    links = []
    for item in data["files"]:
        url = str(item["url"])
        if not url.startswith(_ABSOLUTE):  # most indexes give absolute URLs: no join to do
            url = urljoin(page_url, url)
        hashes = item.get("hashes") or {}
        yanked = item.get("yanked", False)
        requires_python = item.get("requires-python")
        links.append(
            _Link(
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


def _links_from_html(text: str, page_url: str) -> list[_Link]:
    parser = _AnchorParser()
    parser.feed(text)
    parser.close()
    base = urljoin(page_url, parser.base) if parser.base else page_url
    return list(_html_links(parser.anchors, base))


def _html_links(anchors: Iterable[dict[str, str | None]], base: str) -> Iterable[_Link]:
    for attrs in anchors:
        url = urljoin(base, attrs["href"] or "")
        requires_python = attrs.get("data-requires-python")
        yield _Link(
            filename=_filename_from_url(url),
            url=url,
            sha256=None,
            requires_python=requires_python.strip() if requires_python else None,
            yanked="data-yanked" in attrs,
            upload_time=attrs.get("data-upload-time"),
        )
