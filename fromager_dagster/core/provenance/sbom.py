"""SPDX 2.3 SBOM of a built wheel (PEP 770): the ``sbom:`` options, package URLs, the document."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from ipaddress import ip_address
from typing import Any
from urllib.parse import quote, unquote, urlsplit, urlunsplit

from fromager_dagster.core.errors import ConfigError

SBOM_PATH = "sboms/fromager-dagster.spdx.json"  # relative to the wheel's .dist-info directory
DEFAULT_CREATED_EPOCH = 315532800  # 1980-01-01T00:00:00Z, as the wheels' zip dates
NOASSERTION = "NOASSERTION"

_SBOM_KEYS = ("creators", "namespace", "purl_type", "repository_url", "supplier")
_PURL_TYPE = re.compile(r"[a-z][a-z0-9.+-]*")
_PURL = re.compile(r"pkg:[A-Za-z][A-Za-z0-9.+-]*/[^?#]*[^/?#]")
_SHA256 = re.compile(r"[0-9a-f]{64}")
_CREATOR_KINDS = ("Person: ", "Organization: ", "Tool: ")
_SUPPLIER_KINDS = ("Person: ", "Organization: ")


@dataclass(frozen=True)
class SbomOptions:
    """``settings.yaml``'s ``sbom:`` section (fromager's SbomSettings), validated."""

    supplier: str = NOASSERTION  # SPDX supplier of the wheel: "Organization: X" or "Person: X"
    namespace: str = "https://spdx.org/spdxdocs"  # base URL of each documentNamespace
    creators: tuple[str, ...] = ()  # added before this tool's own "Tool: ..." entry
    purl_type: str = "pypi"  # default purl type of every package
    repository_url: str | None = None  # default purl repository_url qualifier

    @classmethod
    def parse(cls, raw: Mapping[str, Any], *, source: str) -> SbomOptions:
        """Validate ``raw`` (the section as read); ConfigError lists every problem of it."""
        problems: list[str] = []

        def bad(key: str, what: str) -> None:
            problems.append(f"{source}: sbom.{key}: {what}")

        for key in sorted(set(raw) - set(_SBOM_KEYS), key=str):
            bad(str(key), f"unknown key; expected one of {', '.join(_SBOM_KEYS)}")

        def text(key: str) -> str | None:
            value = raw.get(key)
            if value is None:
                return None
            if not isinstance(value, str) or not value.strip():
                bad(key, f"expected a non-empty string, got {value!r}")
                return None
            return value.strip()

        supplier = text("supplier") or NOASSERTION
        if supplier != NOASSERTION and not supplier.startswith(_SUPPLIER_KINDS):
            bad("supplier", f"{supplier!r}: write 'Organization: <name>' or 'Person: <name>'")
        namespace = text("namespace") or cls.namespace
        if not _is_url(namespace):
            bad("namespace", f"{namespace!r} is not a URL such as https://example.com/spdx")
        repository_url = text("repository_url")
        if repository_url is not None and not _is_url(repository_url):
            bad("repository_url", f"{repository_url!r} is not a URL")
        purl_type = (text("purl_type") or cls.purl_type).lower()
        if not _PURL_TYPE.fullmatch(purl_type):
            bad("purl_type", f"{purl_type!r} is not a purl type such as pypi or generic")
        creators: list[str] = []
        value = raw.get("creators") or []
        if not isinstance(value, list):
            bad("creators", f"expected a list of strings, got {value!r}")
            value = []
        for index, item in enumerate(value):
            if not isinstance(item, str) or not item.startswith(_CREATOR_KINDS):
                bad(
                    f"creators[{index}]",
                    f"{item!r}: write 'Organization: <name>', 'Person: <name>' or 'Tool: <name>'",
                )
            else:
                creators.append(item)
        if problems:
            raise ConfigError("; ".join(problems))
        return cls(
            supplier=supplier,
            namespace=namespace.rstrip("/"),
            creators=tuple(creators),
            purl_type=purl_type,
            repository_url=repository_url,
        )


@dataclass(frozen=True)
class PackageUrls:
    """The wheel's purl (``downstream``) and the upstream source's (``upstream``)."""

    downstream: str
    upstream: str


def package_urls(
    name: str,
    version: str,
    *,
    options: SbomOptions,
    purl: str | None,
    purl_config: Mapping[str, str],
    source: str,
) -> PackageUrls:
    """Purls as fromager makes them: ``pkg:<purl_type>/<name>@<version>`` by default.

    ``purl`` (fromager's string form) is a template with ``{name}`` and ``{version}`` that
    replaces the whole purl; ``purl_config`` (the mapping form) overrides ``type``,
    ``namespace``, ``name``, ``version`` and ``repository_url`` one by one, and ``upstream``
    names the upstream package outright. Without ``upstream`` the upstream purl is the wheel's
    without qualifiers. ConfigError (naming ``source``) for a bad template or purl.
    """
    if purl is not None:
        try:
            downstream = purl.format(name=name, version=version)
        except (KeyError, IndexError, ValueError) as exc:
            raise ConfigError(
                f"{source}: purl: invalid template {purl!r} ({exc}); "
                "only {name} and {version} can be used"
            ) from exc
        _check_purl(downstream, f"{source}: purl")
        return PackageUrls(downstream, downstream.split("#", 1)[0].split("?", 1)[0])
    kind = purl_config.get("type", options.purl_type).strip().lower()
    if not _PURL_TYPE.fullmatch(kind):
        raise ConfigError(f"{source}: purl.type: {kind!r} is not a purl type such as pypi")
    purl_name = purl_config.get("name") or name
    purl_version = purl_config.get("version") or version
    namespace = purl_config.get("namespace")
    repository_url = purl_config.get("repository_url") or options.repository_url
    qualifiers = {"repository_url": repository_url} if repository_url else {}
    downstream = _purl(kind, namespace, purl_name, purl_version, qualifiers)
    upstream = purl_config.get("upstream")
    if upstream is not None:
        upstream = upstream.strip()
        _check_purl(upstream, f"{source}: purl.upstream")
    else:
        upstream = _purl(kind, namespace, purl_name, purl_version, {})
    return PackageUrls(downstream, upstream)


def spdx_document(
    name: str,
    version: str,
    *,
    options: SbomOptions,
    urls: PackageUrls,
    tool: str,
    created_epoch: int = DEFAULT_CREATED_EPOCH,
    source_url: str | None = None,
    source_sha256: str | None = None,
    annotations: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The SPDX 2.3 document of ``name==version``'s wheel, shaped like fromager's.

    Two packages: ``SPDXRef-wheel`` (the wheel, with its purl, the supplier and the
    ``annotations`` as SPDX annotations ``key=value``) and ``SPDXRef-upstream`` (the source it
    was built from: ``source_url`` without credentials as downloadLocation, ``source_sha256``
    as SHA256 checksum); the document DESCRIBES the wheel, which is GENERATED_FROM upstream.
    ``created`` comes from ``created_epoch``, never the clock, so the same input gives the
    same document. ``tool`` is this tool's creator entry (``fromager-dagster-<version>``).
    """
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(created_epoch))
    wheel_name, wheel_version = _name_version(urls.downstream)
    upstream_name, upstream_version = _name_version(urls.upstream)
    wheel: dict[str, Any] = {
        "SPDXID": "SPDXRef-wheel",
        "name": wheel_name or name,
        "versionInfo": wheel_version or version,
        "downloadLocation": NOASSERTION,
        "filesAnalyzed": False,
        "supplier": options.supplier,
        "externalRefs": [_purl_ref(urls.downstream)],
    }
    if annotations:
        wheel["annotations"] = [
            {
                "annotationDate": created,
                "annotationType": "OTHER",
                "annotator": f"Tool: {tool}",
                "comment": f"{key}={value}",
            }
            for key, value in sorted(annotations.items())
        ]
    upstream: dict[str, Any] = {
        "SPDXID": "SPDXRef-upstream",
        "name": upstream_name or name,
        "versionInfo": upstream_version or version,
        "downloadLocation": _download_location(source_url),
        "filesAnalyzed": False,
        "supplier": NOASSERTION,
        "externalRefs": [_purl_ref(urls.upstream)],
    }
    if source_sha256 is not None:
        upstream["checksums"] = [{"algorithm": "SHA256", "checksumValue": source_sha256}]
    return {
        "spdxVersion": "SPDX-2.3",
        "dataLicense": "CC0-1.0",
        "SPDXID": "SPDXRef-DOCUMENT",
        "name": f"{name}-{version}",
        "documentNamespace": f"{options.namespace}/{name}-{version}.spdx.json",
        "creationInfo": {"created": created, "creators": [*options.creators, f"Tool: {tool}"]},
        "packages": [wheel, upstream],
        "relationships": [
            {
                "spdxElementId": "SPDXRef-DOCUMENT",
                "relationshipType": "DESCRIBES",
                "relatedSpdxElement": "SPDXRef-wheel",
            },
            {
                "spdxElementId": "SPDXRef-wheel",
                "relationshipType": "GENERATED_FROM",
                "relatedSpdxElement": "SPDXRef-upstream",
            },
        ],
    }


def spdx_json(document: Mapping[str, Any]) -> bytes:
    """``document`` as deterministic JSON: sorted keys, two-space indent, final newline."""
    return (json.dumps(document, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


def is_sha256(text: str) -> bool:
    """Whether ``text`` is a lower-case hex sha256 digest."""
    return _SHA256.fullmatch(text) is not None


def _is_url(text: str) -> bool:
    parts = urlsplit(text)
    return bool(parts.scheme and parts.netloc)


def _check_purl(text: str, where: str) -> None:
    if not _PURL.match(text) or any(c.isspace() for c in text):
        raise ConfigError(f"{where}: {text!r} is not a package URL such as pkg:pypi/name@1.0")


def _purl(
    kind: str, namespace: str | None, name: str, version: str, qualifiers: Mapping[str, str]
) -> str:
    """``pkg:type/namespace/name@version?qualifiers``, percent-encoded as the purl spec says."""
    path = [quote(segment, safe=":") for segment in (namespace or "").split("/") if segment]
    text = f"pkg:{kind}/{'/'.join([*path, quote(name, safe=':')])}@{quote(version, safe=':')}"
    if qualifiers:
        text += "?" + "&".join(
            f"{key}={quote(value, safe='/:')}" for key, value in sorted(qualifiers.items())
        )
    return text


def _name_version(purl: str) -> tuple[str, str]:
    """The decoded name and version of ``purl`` (``""`` for a part it does not have)."""
    path = purl.split("#", 1)[0].split("?", 1)[0].partition(":")[2]
    last = path.rstrip("/").rpartition("/")[2]
    name, _, version = last.partition("@")
    return unquote(name), unquote(version)


def _purl_ref(purl: str) -> dict[str, str]:
    return {
        "referenceCategory": "PACKAGE-MANAGER",
        "referenceType": "purl",
        "referenceLocator": purl,
    }


def _download_location(url: str | None) -> str:
    """``url`` without user name or password, or NOASSERTION when there is no URL or only this
    machine can reach it (a path, ``file:``, a loopback host such as a local index server)."""
    parts = urlsplit(url or "")
    if not parts.scheme or not parts.hostname or _is_loopback(parts.hostname):
        return NOASSERTION
    return urlunsplit(parts._replace(netloc=parts.netloc.rpartition("@")[2]))


def _is_loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
