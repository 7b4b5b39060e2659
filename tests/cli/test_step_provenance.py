"""`step build-wheel` writes the wheel's provenance and SBOM as a bootstrap does: the source
archive, the patch and the build-environment wheel, SOURCE_DATE_EPOCH from the sdist, signed
with the configured key; `verify` passes on the result and fails once the wheel changes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from fromager_dagster.core.index.server import LocalIndexServer
from tests.fixtures.packages import FixturePackage, make_index

MTIME = 1700000000  # fx-lib's sdist members; its PKG-INFO one second later
PACKAGES = [
    FixturePackage("fx-tool"),
    FixturePackage("fx-lib", build_system_requires=("fx-tool",), mtime=MTIME),
]
PATCH = """--- a/fx_lib/__init__.py
+++ b/fx_lib/__init__.py
@@ -1,3 +1,4 @@
 \"\"\"Fixture package fx-lib.\"\"\"
 
 __version__ = "1.0"
+PATCHED = True
"""  # noqa: W293  a patch's blank context line is one space
STEPS = ("prepare-source", "prepare-build", "build-sdist", "build-wheel")


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FROMAGER_DAGSTER"))
    }
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fromager_dagster", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=environ,
        check=False,
    )


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_step_build_wheel_writes_provenance_and_sbom(tmp_path: Path) -> None:
    upstream = make_index(PACKAGES, tmp_path / "up")
    patches = tmp_path / "patches"
    (patches / "fx_lib").mkdir(parents=True)
    (patches / "fx_lib" / "0001-mark.patch").write_text(PATCH)
    key = Ed25519PrivateKey.generate()
    key_file = tmp_path / "signing.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public = tmp_path / "signing.pub"
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    out = tmp_path / "out"
    common = ("-O", str(out), "--no-network-isolation", "-p", str(patches))
    signed = {"FROMAGER_DAGSTER_SIGNING_KEY": str(key_file)}
    with LocalIndexServer([upstream]) as server:
        for package in ("fx-tool", "fx-lib"):  # fx-lib's build environment installs fx-tool
            proc = _cli("step", "download-source-archive", package, "1.0", server.url, *common)
            assert proc.returncode == 0, proc.stderr
            for step in STEPS:
                proc = _cli("step", step, package, "1.0", *common, **signed)
                assert proc.returncode == 0, (package, step, proc.stderr)
    wheel = Path(proc.stdout.strip().splitlines()[-1])
    assert wheel == out / "wheels-repo/downloads/fx_lib-1.0-0-py3-none-any.whl"
    tool = out / "wheels-repo/downloads/fx_tool-1.0-0-py3-none-any.whl"
    sdist = out / "sdists-repo/downloads/fx_lib-1.0.tar.gz"

    path = out / "wheels-repo/provenance" / f"{wheel.name}.intoto.json"
    envelope = json.loads(path.read_text())
    assert envelope["payloadType"] == "application/vnd.in-toto+json"  # signed: DSSE
    data = json.loads(base64.b64decode(envelope["payload"]))
    parsed = json_format.Parse(json.dumps(data), statement_pb2.Statement())  # strict: schema
    Statement.copy_from_pb(parsed).validate()
    predicate = json_format.Parse(json.dumps(data["predicate"]), provenance_pb2.Provenance())
    assert data["subject"] == [{"name": wheel.name, "digest": {"sha256": _sha256(wheel)}}]
    definition = predicate.build_definition
    assert dict(definition.external_parameters) == {"requirement": "fx-lib==1.0", "variant": "cpu"}
    deps = {
        (d.annotations["kind"], d.name): d.digest["sha256"]
        for d in definition.resolved_dependencies
    }
    assert deps == {
        ("source", sdist.name): _sha256(sdist),
        ("patch", "fx_lib/0001-mark.patch"): _sha256(patches / "fx_lib/0001-mark.patch"),
        ("build-env", tool.name): _sha256(tool),
    }
    epoch = int(definition.internal_parameters["source_date_epoch"])
    assert epoch == MTIME + 1  # from the sdist (its newest member), as a bootstrap takes it
    with zipfile.ZipFile(wheel) as zf:
        sbom = json.loads(zf.read("fx_lib-1.0.dist-info/sboms/fromager-dagster.spdx.json"))
        assert b"PATCHED = True" in zf.read("fx_lib/__init__.py")
        assert {i.date_time for i in zf.infolist()} == {(2023, 11, 14, 22, 13, 20)}
    assert sbom["spdxVersion"] == "SPDX-2.3"

    verify = _cli("verify", str(out), "--public-key", str(public))
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verified 2 wheel(s) against their provenance, 2 signature(s) checked" in verify.stderr
    data_bytes = wheel.read_bytes()
    wheel.write_bytes(data_bytes[:-1] + bytes([data_bytes[-1] ^ 1]))
    verify = _cli("verify", str(out))
    assert verify.returncode == 1
    assert f"{wheel.name}: sha256 " in verify.stdout
