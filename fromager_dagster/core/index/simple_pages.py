"""Simple index pages for local distributions: PEP 503 HTML and PEP 691 JSON, which of them a
client asked for, and a static tree of them on disk."""

from __future__ import annotations

import contextlib
import html
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import quote

from packaging.utils import NormalizedName

from fromager_dagster.core.index.local_files import SHARED_INFO, LocalDist

JSON_TYPE = "application/vnd.pypi.simple.v1+json"
HTML_TYPE = "text/html; charset=utf-8"
_JSON_ACCEPTS = frozenset({JSON_TYPE, "application/vnd.pypi.simple.latest+json"})
_HTML_ACCEPTS = frozenset(
    {
        "application/vnd.pypi.simple.v1+html",
        "application/vnd.pypi.simple.latest+html",
        "text/html",
        "*/*",
        "text/*",
    }
)


def wants_json(accept: str | None) -> bool:
    """Content negotiation per PEP 691: JSON only if asked for at least as strongly as HTML."""
    if not accept:
        return False
    best_json = best_html = -1.0
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        media = media.lower()
        if media in _JSON_ACCEPTS:
            best_json = max(best_json, q)
        elif media in _HTML_ACCEPTS:
            best_html = max(best_html, q)
    return best_json > 0 and best_json >= best_html


def html_page(title: str, anchors: Iterable[str]) -> bytes:
    """A PEP 503 page: ``anchors`` one per line under ``title``."""
    body = "\n".join(f"    {a}<br/>" for a in anchors)
    return (
        "<!DOCTYPE html>\n<html>\n  <head>\n"
        '    <meta name="pypi:repository-version" content="1.0">\n'
        f"    <title>{html.escape(title)}</title>\n  </head>\n  <body>\n"
        f"{body}\n  </body>\n</html>\n"
    ).encode()


def file_anchor(dist: LocalDist, href: str, yanked: str | None) -> str:
    """The ``<a>`` of one file: its sha256, Requires-Python and yanked reason as PEP 503 says."""
    attrs = f' href="{html.escape(f"{href}#sha256={dist.sha256}")}"'
    if dist.requires_python:
        attrs += f' data-requires-python="{html.escape(dist.requires_python)}"'
    if yanked is not None:
        attrs += f' data-yanked="{html.escape(yanked)}"'
    return f"<a{attrs}>{html.escape(dist.filename)}</a>"


def project_list_html(names: Iterable[NormalizedName]) -> bytes:
    """The root page: one link per project."""
    anchors = (f'<a href="{quote(n)}/">{html.escape(n)}</a>' for n in names)
    return html_page("Simple index", anchors)


def write_simple_tree(roots: Sequence[Path], dest: Path) -> None:
    """Write a static PEP 503 tree for ``roots`` into ``dest`` (links relative to the files)."""
    dest = Path(dest)
    projects = SHARED_INFO.scan([Path(r) for r in roots])
    for name in sorted(projects):
        page_dir = dest / name
        page_dir.mkdir(parents=True, exist_ok=True)
        dists = projects[name]
        anchors = [
            file_anchor(
                dists[f], quote(Path(os.path.relpath(dists[f].path, page_dir)).as_posix()), None
            )
            for f in sorted(dists)
        ]
        _write_atomic(page_dir / "index.html", html_page(f"Links for {name}", anchors))
    dest.mkdir(parents=True, exist_ok=True)
    _write_atomic(dest / "index.html", project_list_html(sorted(projects)))


def _write_atomic(path: Path, data: bytes) -> None:
    with contextlib.suppress(OSError):
        if path.read_bytes() == data:
            return  # unchanged: a rerun rewrites nothing
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
