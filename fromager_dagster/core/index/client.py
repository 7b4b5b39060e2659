"""Package index client: a project's distribution files from a PEP 503 / PEP 691 simple index."""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urldefrag, urljoin

import requests
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

from fromager_dagster.core.credentials import redact_url, split_credentials
from fromager_dagster.core.errors import IndexAccessError
from fromager_dagster.core.http import RetryingSession, fetch, make_session
from fromager_dagster.core.index.distributions import (
    DistFile,
    dist_version,
    parse_dist_filename,
    parse_upload_time,
    python_admits,
)
from fromager_dagster.core.index.links import (
    ACCEPT,
    JSON_TYPES,
    Link,
    links_from_html,
    links_from_json,
)
from fromager_dagster.core.index.page_cache import (
    ROW_ERRORS,
    PageCache,
    page_digest,
    upload_time_of,
    upload_time_value,
)
from fromager_dagster.core.index.prefetch import take_prefetched


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

    def _fetch(self, name: NormalizedName) -> list[DistFile]:
        url = urljoin(self.index_url, f"{name}/")
        ahead = take_prefetched(self.index_url, name)
        if ahead is not None:  # read moments ago by this command's helper (.index.prefetch)
            return self._files_of(name, url, ahead.url, ahead.content_type, ahead.body, lambda: "")
        response, content_type = self.read_page(name)
        return self._files_of(
            name, url, response.url, content_type, response.content, lambda: response.text
        )

    def read_page(self, name: NormalizedName) -> tuple[requests.Response, str]:
        """The index's ``200`` answer for project ``name``, and its content type (lower case,
        without parameters); IndexAccessError for anything else. The read-ahead helper
        (:mod:`.index.prefetch`) reads pages with it too."""
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
        return response, response.headers.get("Content-Type", "").split(";")[0].strip().lower()

    def _files_of(
        self,
        name: NormalizedName,
        url: str,
        final_url: str,
        content_type: str,
        body: bytes,
        text: Callable[[], str],
    ) -> list[DistFile]:
        """The files of a page read from ``url`` (``final_url`` after redirects); ``text``
        decodes an HTML body as its response's charset says."""
        cache, digest = self.page_cache, ""
        if cache is not None:
            digest = page_digest(final_url, content_type, self.python_version, body)
            known = self._cached_files(name, cache.load(name, digest))
            if known is not None:
                return known
        try:
            if content_type in JSON_TYPES:
                links = links_from_json(json.loads(body), final_url)
            else:
                links = links_from_html(text(), final_url)
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
            found = [  # positionally, in DistFile's field order: a large page has 10,000 rows
                DistFile(
                    name,
                    dist_version(version),
                    filename,
                    url,
                    kind,
                    sha256,
                    requires_python,
                    upload_time_of(uploaded),
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

    def _dist_file(self, name: NormalizedName, link: Link) -> DistFile | None:
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
        return python_admits(requires_python, self._python)


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


def _reason(exc: requests.RequestException) -> str:
    if isinstance(exc, requests.Timeout):
        return f"timed out ({exc})"
    return str(exc) or type(exc).__name__
