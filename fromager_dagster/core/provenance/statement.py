"""Provenance of a built wheel: an in-toto Statement v1 with an SLSA Provenance v1 predicate.

One file per wheel, ``wheels-repo/provenance/<wheel>.intoto.json``, written when the wheel is
built (never on a rerun that reuses it): the statement, or a DSSE envelope holding it when a
signing key is configured (:mod:`.provenance.signing`). The statement is made with the in-toto
attestation library's types (``in_toto_attestation``), so its JSON is the specification's.

- subject: the wheel's file name and sha256;
- buildDefinition: :data:`BUILD_TYPE`, the requirement, variant and collection
  (externalParameters), the settings fingerprint and the build's ``SOURCE_DATE_EPOCH``
  (internalParameters), and as
  resolvedDependencies the source archive (URL and sha256), each patch (path and sha256) and
  every wheel installed into the build environment (file name and sha256), each annotated with
  its ``kind``;
- runDetails: the builder (:data:`BUILDER_ID`, this tool's version), the Dagster run id when
  there is one, the build's start and finish times.
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fromager_dagster.core.credentials import strip_credentials
from fromager_dagster.core.graph.model import write_atomic
from fromager_dagster.core.layout import OutputLayout
from fromager_dagster.core.package_id import package_key
from fromager_dagster.core.plugins import Plugins
from fromager_dagster.core.repository.records import WheelRepository
from fromager_dagster.core.settings.overrides import Settings
from fromager_dagster.core.sources import archives as sources
from fromager_dagster.core.sources.prepare import build_fingerprint

# in-toto's and cryptography's modules are imported where a statement is made or read: a
# bootstrap that reuses every wheel never pays for them.

SIGNING_KEY_ENV = "FROMAGER_DAGSTER_SIGNING_KEY"

PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
#: What a build of this type means: docs/provenance.md, "Build type".
BUILD_TYPE = "urn:fromager-dagster:build-type:wheel:v1"
BUILDER_ID = "urn:fromager-dagster:builder"
TOOL = "fromager-dagster"
SUFFIX = ".intoto.json"

#: ``kind`` annotation of each resolved dependency.
SOURCE, PATCH, BUILD_ENV = "source", "patch", "build-env"


@dataclass(frozen=True)
class RunInfo:
    """What the caller knows about the run a wheel is built in."""

    collection: str | None = None
    run_id: str | None = None  # the Dagster run's id
    signing_key: Path | None = None  # an Ed25519 private key (PEM): sign the statement

    @classmethod
    def from_environ(
        cls, environ: Mapping[str, str], *, collection: str | None = None, run_id: str | None = None
    ) -> RunInfo:
        """With the signing key ``$FROMAGER_DAGSTER_SIGNING_KEY`` names, if any."""
        key = environ.get(SIGNING_KEY_ENV, "").strip()
        return cls(collection=collection, run_id=run_id, signing_key=Path(key) if key else None)


def provenance_path(layout: OutputLayout, wheel_name: str) -> Path:
    return layout.provenance_dir / f"{wheel_name}{SUFFIX}"


def builder_version() -> str:
    try:
        return importlib.metadata.version(TOOL)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _timestamp(seconds: float) -> Any:
    from google.protobuf.timestamp_pb2 import Timestamp

    stamp = Timestamp()
    stamp.FromDatetime(dt.datetime.fromtimestamp(seconds, tz=dt.UTC))
    return stamp


def _resource(name: str, sha256: str, kind: str, uri: str = "") -> Any:
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor

    return ResourceDescriptor(
        name=name, uri=uri, digest={"sha256": sha256}, annotations={"kind": kind}
    ).pb


def statement(
    *,
    wheel_name: str,
    wheel_sha256: str,
    requirement: str,
    variant: str,
    collection: str | None,
    settings_fingerprint: str,
    source_date_epoch: int | None = None,
    source: tuple[str, str, str] | None,
    patches: list[tuple[str, str, str]],
    build_env: list[tuple[str, str, str]],
    run_id: str | None,
    started: float,
    finished: float,
) -> dict[str, Any]:
    """The statement as JSON data. ``source``: (archive file name, URL, sha256); ``patches``:
    (name, path, sha256); ``build_env``: (wheel file name, ``name==version``, sha256)."""
    import in_toto_attestation.predicates.provenance.v1.provenance_pb2 as slsa
    from google.protobuf import json_format
    from in_toto_attestation.v1.resource_descriptor import ResourceDescriptor
    from in_toto_attestation.v1.statement import Statement

    external: dict[str, Any] = {"requirement": requirement, "variant": variant}
    if collection:
        external["collection"] = collection
    deps = []
    if source is not None:
        name, url, digest = source
        deps.append(_resource(name, digest, SOURCE, strip_credentials(url)))
    deps += [_resource(name, digest, PATCH, Path(path).as_uri()) for name, path, digest in patches]
    for filename, pin, digest in build_env:
        rd = _resource(filename, digest, BUILD_ENV)
        rd.annotations.update({"requirement": pin})
        deps.append(rd)
    definition = slsa.BuildDefinition(build_type=BUILD_TYPE, resolved_dependencies=deps)
    definition.external_parameters.update(external)
    internal: dict[str, Any] = {"settings_fingerprint": settings_fingerprint}
    if source_date_epoch is not None:
        internal["source_date_epoch"] = str(source_date_epoch)  # as the variable holds it
    definition.internal_parameters.update(internal)
    metadata = slsa.BuildMetadata(started_on=_timestamp(started), finished_on=_timestamp(finished))
    if run_id:
        metadata.invocation_id = run_id
    run = slsa.RunDetails(
        builder=slsa.Builder(id=BUILDER_ID, version={TOOL: builder_version()}),
        metadata=metadata,
    )
    predicate = json_format.MessageToDict(
        slsa.Provenance(build_definition=definition, run_details=run)
    )
    subject = ResourceDescriptor(name=wheel_name, digest={"sha256": wheel_sha256}).pb
    result = Statement([subject], PREDICATE_TYPE, predicate)
    result.validate()
    data: dict[str, Any] = json_format.MessageToDict(result.pb)
    return data


def write_provenance(
    layout: OutputLayout,
    name: str,
    version: str,
    *,
    wheel: Path,
    source_archive: Path | None,
    source_url: str | None,
    settings: Settings,
    plugins: Plugins,
    build_env: Iterable[str],
    source_date_epoch: int,
    run: RunInfo,
    started: float,
    finished: float | None = None,
) -> Path:
    """Write the provenance of ``wheel``, just built from ``source_archive`` in an environment
    holding the wheels of ``build_env`` (``name==version`` pins, hashed from the repository),
    beside the wheel repository; signed when ``run`` has a key."""
    repository = WheelRepository(layout)
    env: list[tuple[str, str, str]] = []
    for pin, digest in repository.hashes(build_env).items():
        path = repository.path(pin)
        env.append((path.name if path is not None else pin, pin, digest))
    source = None
    if source_archive is not None:
        source = (
            source_archive.name,
            source_url or source_archive.resolve().as_uri(),
            sources.file_sha256(source_archive),
        )
    patch_dir = settings.patches_dir
    patches = []
    for patch in settings.patches(name, version):
        label = str(patch.relative_to(patch_dir)) if patch_dir is not None else patch.name
        patches.append((label, str(patch.resolve()), sources.sha256_file(patch)))
    document = statement(
        wheel_name=wheel.name,
        wheel_sha256=sources.file_sha256(wheel),
        requirement=package_key(name, version),
        variant=settings.variant,
        collection=run.collection,
        settings_fingerprint=build_fingerprint(settings, plugins, name, version),
        source_date_epoch=source_date_epoch,
        source=source,
        patches=patches,
        build_env=env,
        run_id=run.run_id,
        started=started,
        finished=finished if finished is not None else dt.datetime.now(dt.UTC).timestamp(),
    )
    text = json.dumps(document, indent=2, sort_keys=True) + "\n"
    if run.signing_key is not None:
        from fromager_dagster.core.provenance import signing

        envelope = signing.sign(text.encode("utf-8"), signing.load_private_key(run.signing_key))
        text = json.dumps(envelope, indent=2) + "\n"
    path = provenance_path(layout, wheel.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text)
    return path


@dataclass(frozen=True)
class Provenance:
    """A provenance file as read: its statement, and its envelope when it is signed."""

    path: Path
    statement: dict[str, Any]
    envelope: dict[str, Any] | None

    @property
    def subject(self) -> tuple[str, str]:
        first = (self.statement.get("subject") or [{}])[0]
        return str(first.get("name", "")), str((first.get("digest") or {}).get("sha256", ""))

    def dependencies(self, kind: str) -> list[dict[str, Any]]:
        definition = (self.statement.get("predicate") or {}).get("buildDefinition") or {}
        return [
            dep
            for dep in definition.get("resolvedDependencies") or []
            if (dep.get("annotations") or {}).get("kind") == kind
        ]

    def summary(self) -> dict[str, Any]:
        """What a wheel's asset shows: the file, the subject, what it was built from."""
        predicate = self.statement.get("predicate") or {}
        run = predicate.get("runDetails") or {}
        return {
            "path": str(self.path),
            "signed": self.envelope is not None,
            "subject_sha256": self.subject[1],
            "source": [d.get("uri") or d.get("name") for d in self.dependencies(SOURCE)],
            "patches": [d.get("name") for d in self.dependencies(PATCH)],
            "build_env": [d.get("name") for d in self.dependencies(BUILD_ENV)],
            "invocation_id": (run.get("metadata") or {}).get("invocationId"),
        }


def read_provenance(path: Path) -> Provenance:
    """The provenance in ``path``; ValueError (naming what is wrong) when it is not one."""
    from fromager_dagster.core.provenance import signing

    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")  # noqa: TRY004  callers catch ValueError
    envelope = None
    if signing.is_envelope(data):
        envelope = data
        data = json.loads(signing.payload(data))
        if not isinstance(data, dict):
            raise ValueError("the envelope's payload is not a JSON object")
    if data.get("_type") != "https://in-toto.io/Statement/v1":
        raise ValueError("not an in-toto Statement v1")
    if data.get("predicateType") != PREDICATE_TYPE:
        raise ValueError(f"predicateType is not {PREDICATE_TYPE}")
    return Provenance(path, data, envelope)


def provenance_of(layout: OutputLayout, wheel: Path) -> Provenance | None:
    """The provenance of ``wheel`` if its file is there and readable."""
    path = provenance_path(layout, wheel.name)
    try:
        return read_provenance(path)
    except (OSError, ValueError):
        return None


__all__ = [
    "BUILD_TYPE",
    "PREDICATE_TYPE",
    "Provenance",
    "RunInfo",
    "provenance_of",
    "provenance_path",
    "read_provenance",
    "statement",
    "write_provenance",
]
