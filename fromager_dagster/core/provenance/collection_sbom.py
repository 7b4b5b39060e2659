"""The collection's SBOM: every wheel of a graph, as CycloneDX 1.6 JSON.

Made with cyclonedx-python-lib from ``graph.json`` and the output folder. One component per
graph node (``bom-ref`` ``name==version``): its purl, the wheel's file name and sha256, the
source it was built from (a ``distribution`` reference: the download URL and the archive's
sha256) and whether it was taken pre-built. The graph's relationships are kept apart by type:

- run-time (``install`` edges, and the collection's ``toplevel`` requirements from the
  collection's own component) are CycloneDX ``dependencies``;
- build-time edges are component properties ``fromager-dagster:build-system``,
  ``fromager-dagster:build-backend`` and ``fromager-dagster:build-sdist``, one per edge, whose
  value is the ``bom-ref`` of the build requirement.

The serial number is derived from the content and the timestamp from the newest wheel, so the
same wheels give the same document; it is rewritten only when its bytes change.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from fromager_dagster.core.credentials import strip_credentials
from fromager_dagster.core.graph.model import BUILD_TYPES, ROOT, DependencyGraph, write_atomic
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.provenance.statement import provenance_path
from fromager_dagster.core.repository.records import WheelRepository
from fromager_dagster.core.sources import archives as sources

if TYPE_CHECKING:  # cyclonedx is imported where a BOM is made: never at start-up
    from cyclonedx.model.bom import Bom

PREFIX = "fromager-dagster:"
_NAMESPACE = uuid.UUID("6f1c1f0e-2a4b-4b52-9c43-5d1f0a3c7e21")


def sbom_path(layout: OutputLayout, collection: str) -> Path:
    return layout.root / "wheels-repo" / "sboms" / f"{collection}.cdx.json"


def _sdist(layout: OutputLayout, download_url: str) -> Path | None:
    filename = download_url.rsplit("/", 1)[-1].split("#", 1)[0]
    path = layout.sdists_downloads / filename
    return path if filename and path.is_file() else None


def collection_bom(
    layout: OutputLayout, graph: DependencyGraph, *, collection: str, variant: str
) -> Bom:
    """The CycloneDX BOM of the collection ``graph`` describes, with the wheels of ``layout``."""
    from cyclonedx.model import (
        ExternalReference,
        ExternalReferenceType,
        HashAlgorithm,
        HashType,
        Property,
        XsUri,
    )
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.dependency import Dependency
    from packageurl import PackageURL

    repository = WheelRepository(layout)
    components: dict[str, Component] = {}
    newest = 0.0
    for key in sorted(k for k in graph.nodes if k != ROOT):
        node = graph.nodes[key]
        properties = [
            Property(name=f"{PREFIX}variant", value=variant),
            Property(name=f"{PREFIX}prebuilt", value=str(node.pre_built).lower()),
        ]
        hashes = []
        wheel = repository.path(key)
        if wheel is not None:
            hashes.append(HashType(alg=HashAlgorithm.SHA_256, content=repository.sha256(wheel)))
            properties.append(Property(name=f"{PREFIX}wheel", value=wheel.name))
            newest = max(newest, wheel.stat().st_mtime)
            if provenance_path(layout, wheel.name).is_file():
                relative = provenance_path(layout, wheel.name).relative_to(layout.root)
                properties.append(Property(name=f"{PREFIX}provenance", value=str(relative)))
        properties.extend(
            Property(name=f"{PREFIX}{edge.req_type}", value=edge.key)
            for edge in node.edges
            if edge.req_type in BUILD_TYPES
        )
        references = []
        if node.download_url:
            archive = _sdist(layout, node.download_url)
            digests = (
                [HashType(alg=HashAlgorithm.SHA_256, content=sources.file_sha256(archive))]
                if archive is not None
                else []
            )
            references.append(
                ExternalReference(
                    type=ExternalReferenceType.DISTRIBUTION,
                    url=XsUri(strip_credentials(node.download_url)),
                    comment="the wheel as published" if node.pre_built else "the source built",
                    hashes=digests,
                )
            )
        components[key] = Component(
            name=node.canonicalized_name,
            version=node.version,
            type=ComponentType.LIBRARY,
            bom_ref=key,
            purl=PackageURL(type="pypi", name=node.canonicalized_name, version=node.version),
            hashes=hashes,
            external_references=references,
            properties=properties,
        )
    root = Component(
        name=collection,
        type=ComponentType.APPLICATION,
        bom_ref=f"collection:{collection}",
        properties=[Property(name=f"{PREFIX}variant", value=variant)],
    )
    dependencies = [
        Dependency(
            ref=components[key].bom_ref,
            dependencies=[
                Dependency(ref=components[child].bom_ref)
                for child in sorted(graph.children(key, ("install",)))
                if child in components
            ],
        )
        for key in components
    ]
    dependencies.append(
        Dependency(
            ref=root.bom_ref,
            dependencies=[
                Dependency(ref=components[child].bom_ref)
                for child in sorted(graph.children(ROOT) if ROOT in graph.nodes else [])
                if child in components
            ],
        )
    )
    digest = hashlib.sha256()
    for key, component in components.items():
        digest.update(f"{key} {[h.content for h in component.hashes]}\n".encode())
    created = dt.datetime.fromtimestamp(newest or 315532800, tz=dt.UTC).replace(microsecond=0)
    return Bom(
        components=components.values(),
        serial_number=uuid.uuid5(_NAMESPACE, f"{collection}:{variant}:{digest.hexdigest()}"),
        metadata=BomMetaData(component=root, timestamp=created),
        dependencies=dependencies,
    )


def collection_sbom_json(
    layout: OutputLayout, graph: DependencyGraph, *, collection: str, variant: str
) -> str:
    """The collection's SBOM as CycloneDX 1.6 JSON text."""
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion

    bom = collection_bom(layout, graph, collection=collection, variant=variant)
    text: str = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(
        indent=2
    )
    return text + "\n"


def write_collection_sbom(
    layout: OutputLayout, graph: DependencyGraph, *, collection: str, variant: str
) -> Path:
    """Write the collection's SBOM beside the wheel repository (only when it changed)."""
    text = collection_sbom_json(layout, graph, collection=collection, variant=variant)
    path = sbom_path(layout, collection)
    try:
        if path.read_text(encoding="utf-8") == text:
            return path
    except OSError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    return path
