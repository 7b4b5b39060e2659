"""Pre-built wheels: the index's best wheel of one exact version, downloaded hash-verified."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import requests
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from fromager_dagster.core.errors import SourceError
from fromager_dagster.core.index.client import IndexClient
from fromager_dagster.core.index.distributions import DistFile, best_wheel
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.plugins.registry import Plugins
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources


@dataclass(frozen=True)
class PrebuiltDownload:
    """A pre-built wheel taken from an index: where it is now and where it came from."""

    path: Path  # the verified file in the destination folder
    file: DistFile  # the index's entry it was downloaded from

    @property
    def url(self) -> str:
        """The wheel's URL on the index (a graph node's ``download_url``)."""
        return self.file.url


def _wheel_server(index: IndexClient, name: str, settings: Settings) -> IndexClient:
    """The package's variant ``wheel_server_url`` when it is pre-built there, else ``index``."""
    url = settings.wheel_server_url(name)
    return index.other_index(url) if url else index


def fetch_prebuilt_wheel(
    index: IndexClient,
    name: str,
    version: str,
    dest_dir: Path,
    *,
    session: requests.Session | None = None,
    settings: Settings,
) -> PrebuiltDownload:
    """Download the wheel of ``name==version`` this interpreter prefers into ``dest_dir``.

    Among the index's wheels of exactly that version, the one whose tags come first in
    ``packaging.tags.sys_tags()``; where the package's ``resolver_dist.ignore_platform`` in
    ``settings`` is true, any wheel of that version will do (ranked the same way). The
    download is verified against the index's sha256 (a file already in ``dest_dir`` with that
    hash is reused). SourceError names the package and what the index has when no wheel fits.
    """
    canonical = canonicalize_name(name)
    try:
        wanted = Version(version)
    except InvalidVersion as exc:
        raise SourceError(
            f"{version!r} is not a valid version", package=canonical, version=version
        ) from exc
    ignore_platform = settings.package(canonical).resolver_dist.ignore_platform
    index = _wheel_server(index, canonical, settings)
    files = [f for f in index.files(canonical) if f.version == wanted]
    chosen = best_wheel(files, ignore_platform=ignore_platform)
    if chosen is None:
        wheels = sorted(f.filename for f in files if f.kind == "wheel")
        found = (
            f"its wheels ({', '.join(wheels)}) do not fit this interpreter (set "
            "resolver_dist.ignore_platform: true in its settings to take one anyway)"
            if wheels
            else "it has no wheel of that version"
        )
        raise SourceError(
            f"no pre-built wheel of {package_key(canonical, version)} on {index.index_url}: "
            f"{found}",
            package=canonical,
            version=version,
        )
    path = sources.download(session or index.session, chosen, dest_dir)
    return PrebuiltDownload(path=path, file=chosen)


def download_prebuilt_wheel(
    index: IndexClient,
    name: str,
    version: str,
    dest_dir: Path,
    *,
    session: requests.Session | None = None,
    settings: Settings,
) -> Path:
    """The path of :func:`fetch_prebuilt_wheel`'s download (for callers that need no URL)."""
    found = fetch_prebuilt_wheel(index, name, version, dest_dir, session=session, settings=settings)
    return found.path


def prebuilt_fallback(
    index: IndexClient,
    name: str,
    version: str,
    layout: OutputLayout,
    *,
    settings: Settings,
    plugins: Plugins,
    session: requests.Session | None = None,
) -> PrebuiltDownload:
    """Test mode's fall-back once the build of ``name==version`` failed: the index's wheel of
    exactly that version (:func:`fetch_prebuilt_wheel`: the variant's ``wheel_server_url``,
    ``resolver_dist.ignore_platform``), hash-verified into ``wheels-repo/prebuilt``, its
    ``prebuilt_wheel`` hooks run with the variant of ``settings``, so that the builds that
    need it can go on. SourceError (one line: what the index has) when there is none.

    The one implementation for a bootstrap, ``build``/``build-sequence`` and the second pass
    after a run of wheel builds (the command line's and the Dagster layer's alike).
    """
    found = fetch_prebuilt_wheel(
        index, name, version, layout.wheels_prebuilt, session=session, settings=settings
    )
    plugins.run_hooks(
        "prebuilt_wheel",
        name=canonicalize_name(name),
        version=Version(version),
        variant=settings.variant,
        wheel=found.path,
    )
    return found
