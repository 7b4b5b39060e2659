"""What the settings add to a built wheel: ``Requires-External`` lines and the SPDX SBOM."""

from __future__ import annotations

import importlib.metadata
from collections.abc import Mapping
from dataclasses import dataclass, field

from packaging.utils import canonicalize_name

from fromager_dagster.core.errors import BuildError, ConfigError
from fromager_dagster.core.provenance.sbom import (
    DEFAULT_CREATED_EPOCH,
    SBOM_PATH,
    SbomOptions,
    is_sha256,
    package_urls,
    spdx_document,
    spdx_json,
)
from fromager_dagster.core.settings.layout import override_name
from fromager_dagster.core.settings.overrides import Settings

TOOL = "fromager-dagster"


@dataclass(frozen=True)
class WheelExtras:
    """Additions for ``wheels.finalize_wheel``: core-metadata headers appended to ``METADATA``
    (in order) and files written under the ``.dist-info`` directory (relative path -> bytes)."""

    metadata_headers: tuple[tuple[str, str], ...] = ()
    files: Mapping[str, bytes] = field(default_factory=dict)


def wheel_extras(
    settings: Settings,
    name: str,
    version: str,
    *,
    source_url: str | None,
    source_sha256: str | None,
    source_date_epoch: int | None = None,
) -> WheelExtras:
    """What ``settings`` add to ``name==version``'s wheel.

    ``project_override.requires_external`` entries become ``Requires-External`` headers (in
    file order, without repeats). Every wheel also gets ``sboms/fromager-dagster.spdx.json``
    (PEP 770; ``settings.yaml``'s ``sbom:`` section, when there is one, tunes it): the
    package's purl, the source it was
    built from (``source_url``, ``source_sha256``) and its ``annotations`` (the variant's
    override the package's). The SBOM's creation time is
    ``source_date_epoch`` (default 1980-01-01), so the same input gives the same bytes.
    ConfigError for bad settings, naming the file and key.
    """
    canonical = canonicalize_name(name)
    pkg = settings.package(canonical)
    where = str(pkg.source_file or f"settings/{override_name(canonical)}.yaml")
    headers: list[tuple[str, str]] = []
    for index, entry in enumerate(pkg.project_override.requires_external):
        value = entry.strip()
        if not value or any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise ConfigError(
                f"{where}: project_override.requires_external[{index}]: {entry!r} is not one "
                "line of text; write one external requirement per entry, e.g. 'libssl (>=3)'",
                package=canonical,
            )
        if ("Requires-External", value) not in headers:
            headers.append(("Requires-External", value))
    options = SbomOptions.parse(
        settings.sbom or {}, source=str(settings.files[0]) if settings.files else "settings.yaml"
    )
    urls = package_urls(
        canonical,
        version,
        options=options,
        purl=pkg.purl,
        purl_config=pkg.purl_config,
        source=where,
    )
    digest = source_sha256.lower() if source_sha256 else None
    if digest is not None and not is_sha256(digest):
        raise BuildError(
            f"the source sha256 {source_sha256!r} is not a hex sha256 digest",
            package=canonical,
            version=version,
            step="finalize wheel",
        )
    document = spdx_document(
        canonical,
        version,
        options=options,
        urls=urls,
        tool=tool_name(),
        created_epoch=DEFAULT_CREATED_EPOCH if source_date_epoch is None else source_date_epoch,
        source_url=source_url,
        source_sha256=digest,
        annotations=package_annotations(settings, canonical),
    )
    return WheelExtras(metadata_headers=tuple(headers), files={SBOM_PATH: spdx_json(document)})


def package_annotations(settings: Settings, name: str) -> dict[str, str]:
    """The package's ``annotations`` updated with its variant's (fromager's precedence)."""
    pkg = settings.package(name)
    return {**pkg.annotations, **pkg.for_variant(settings.variant).annotations}


def tool_name() -> str:
    """``fromager-dagster-<version>``, this tool's SPDX creator name."""
    try:
        return f"{TOOL}-{importlib.metadata.version(TOOL)}"
    except importlib.metadata.PackageNotFoundError:
        return TOOL
