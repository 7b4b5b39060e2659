"""Reproducible C extensions, provenance, SBOMs and `verify`, on fixture packages built offline."""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from fromager_dagster.core.index.server import LocalIndexServer
from tests.fixtures.packages import FixturePackage, make_index

C_SOURCE = r"""#include <Python.h>

static const char *where = __FILE__;

static PyObject *origin(PyObject *self, PyObject *args) { return PyUnicode_FromString(where); }

static PyMethodDef methods[] = {
    {"origin", origin, METH_NOARGS, "the file this was compiled from"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_ext", NULL, -1, methods};

PyMODINIT_FUNC PyInit__ext(void) { return PyModule_Create(&module); }
"""

#: fx-cext's sdist members are dated 2023-11-14 22:13:20 UTC, its PKG-INFO one second later.
CEXT_MTIME = 1700000000

# fx-app (patched) builds with fx-cext (a C extension), which builds with fx-tool.
PACKAGES = [
    FixturePackage("fx-tool"),
    FixturePackage(
        "fx-cext",
        build_system_requires=("fx-tool",),
        c_source=C_SOURCE,
        mtime=CEXT_MTIME,
        record_env=("SOURCE_DATE_EPOCH",),
    ),
    FixturePackage("fx-app", build_system_requires=("fx-cext",)),
]

PATCH = """--- a/fx_app/__init__.py
+++ b/fx_app/__init__.py
@@ -1,3 +1,4 @@
 \"\"\"Fixture package fx-app.\"\"\"
 
 __version__ = "1.0"
+PATCHED = True
"""  # noqa: W293  a patch's blank context line is one space


APP_WHEEL = "fx_app-1.0-0-py3-none-any.whl"


def _cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_", "FROMAGER_DAGSTER"))
    }
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "fromager_dagster", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=environ,
        check=False,
    )


def _bootstrap(url: str, out: Path, patches: Path, **env: str) -> None:
    proc = _cli(
        "bootstrap", "fx-app", "-O", str(out), "--index-url", url, "--no-dagster",
        "-p", str(patches), "--collection", "fx",
        **env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr


def _wheels(out: Path) -> dict[str, bytes]:
    folder = out / "wheels-repo" / "downloads"
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.whl"))}


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two clean builds of the same graph in different output folders, the second signed."""
    root = tmp_path_factory.mktemp("provenance")
    upstream = make_index(PACKAGES, root / "up")
    patches = root / "patches"
    (patches / "fx_app").mkdir(parents=True)
    (patches / "fx_app" / "0001-mark.patch").write_text(PATCH)
    key = Ed25519PrivateKey.generate()
    key_file = root / "signing.pem"
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    first, second = root / "a" / "out", root / "elsewhere" / "deeper" / "out2"
    with LocalIndexServer([upstream]) as server:
        _bootstrap(server.url, first, patches)
        _bootstrap(server.url, second, patches, FROMAGER_DAGSTER_SIGNING_KEY=str(key_file))
    return {"first": first, "second": second, "key": key_file, "patches": patches}


def test_c_extension_wheels_are_identical_in_two_output_folders(built: dict[str, Path]) -> None:
    first, second = _wheels(built["first"]), _wheels(built["second"])
    assert sorted(first) == [
        "fx_app-1.0-0-py3-none-any.whl",
        "fx_cext-1.0-0-py3-none-any.whl",
        "fx_tool-1.0-0-py3-none-any.whl",
    ]
    with zipfile.ZipFile(
        built["first"] / "wheels-repo/downloads" / "fx_cext-1.0-0-py3-none-any.whl"
    ) as zf:
        [ext] = [n for n in zf.namelist() if n.endswith(".so")]
        shared = zf.read(ext)
    assert shared.startswith(b"\x7fELF")
    assert b"/usr/src/fx-cext-1.0" in shared  # the source path, mapped to a fixed one
    assert str(built["first"]).encode() not in shared
    for name in first:  # file by file, then by sha256
        with (
            zipfile.ZipFile(built["first"] / "wheels-repo/downloads" / name) as a,
            zipfile.ZipFile(built["second"] / "wheels-repo/downloads" / name) as b,
        ):
            assert a.namelist() == b.namelist()
            for member in a.namelist():
                assert a.read(member) == b.read(member), f"{name}: {member} differs"
        assert first[name] == second[name], name


def test_every_wheel_has_an_sbom_inside_by_default(built: dict[str, Path]) -> None:
    wheel = built["first"] / "wheels-repo/downloads" / "fx_app-1.0-0-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        sbom = json.loads(zf.read("fx_app-1.0.dist-info/sboms/fromager-dagster.spdx.json"))
        assert b"PATCHED = True" in zf.read("fx_app/__init__.py")
    assert sbom["spdxVersion"] == "SPDX-2.3"
    upstream = next(p for p in sbom["packages"] if p["SPDXID"] == "SPDXRef-upstream")
    sdist = built["first"] / "sdists-repo/downloads/fx_app-1.0.tar.gz"
    import hashlib

    assert upstream["checksums"] == [
        {"algorithm": "SHA256", "checksumValue": hashlib.sha256(sdist.read_bytes()).hexdigest()}
    ]


def _statement(path: Path) -> dict:
    data = json.loads(path.read_text())
    if "payloadType" in data:
        data = json.loads(base64.b64decode(data["payload"]))
    return data


def test_provenance_validates_against_the_in_toto_and_slsa_schemas(built: dict[str, Path]) -> None:
    folder = built["first"] / "wheels-repo" / "provenance"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"{w}.intoto.json" for w in sorted(_wheels(built["first"]))
    ]
    data = _statement(folder / "fx_app-1.0-0-py3-none-any.whl.intoto.json")
    # the official protobuf definitions, parsed strictly: an unknown or mistyped field fails
    parsed = json_format.Parse(json.dumps(data), statement_pb2.Statement())
    Statement.copy_from_pb(parsed).validate()
    predicate = json_format.Parse(json.dumps(data["predicate"]), provenance_pb2.Provenance())
    assert data["predicateType"] == "https://slsa.dev/provenance/v1"
    wheel = built["first"] / "wheels-repo/downloads/fx_app-1.0-0-py3-none-any.whl"
    import hashlib

    assert data["subject"] == [
        {"name": wheel.name, "digest": {"sha256": hashlib.sha256(wheel.read_bytes()).hexdigest()}}
    ]
    definition = predicate.build_definition
    assert definition.build_type == "urn:fromager-dagster:build-type:wheel:v1"
    assert dict(definition.external_parameters) == {
        "requirement": "fx-app==1.0",
        "variant": "cpu",
        "collection": "fx",
    }
    assert len(definition.internal_parameters["settings_fingerprint"]) > 0
    kinds = {(d.annotations["kind"], d.name) for d in definition.resolved_dependencies}
    assert kinds == {
        ("source", "fx_app-1.0.tar.gz"),
        ("patch", "fx_app/0001-mark.patch"),
        ("build-env", "fx_cext-1.0-0-py3-none-any.whl"),  # fx-tool built it: not installed
    }
    source = [d for d in definition.resolved_dependencies if d.annotations["kind"] == "source"]
    assert source[0].uri.startswith("http://127.0.0.1:")
    details = predicate.run_details
    assert details.builder.id == "urn:fromager-dagster:builder"
    assert details.metadata.started_on.seconds <= details.metadata.finished_on.seconds


def test_collection_sbom_validates_and_keeps_build_and_runtime_apart(
    built: dict[str, Path],
) -> None:
    path = built["first"] / "wheels-repo" / "sboms" / "fx.cdx.json"
    text = path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    by_ref = {c["bom-ref"]: c for c in bom["components"]}
    assert sorted(by_ref) == ["fx-app==1.0", "fx-cext==1.0", "fx-tool==1.0"]
    app = by_ref["fx-app==1.0"]
    assert app["purl"] == "pkg:pypi/fx-app@1.0"
    assert app["hashes"][0]["alg"] == "SHA-256"
    props = {(p["name"], p["value"]) for p in app["properties"]}
    assert ("fromager-dagster:build-system", "fx-cext==1.0") in props
    assert app["externalReferences"][0]["type"] == "distribution"
    deps = {d["ref"]: d.get("dependsOn", []) for d in bom["dependencies"]}
    assert deps["fx-app==1.0"] == []  # a build requirement is not a run-time dependency
    assert deps["collection:fx"] == ["fx-app==1.0"]
    # the same wheels give the same document
    second = (built["second"] / "wheels-repo/sboms/fx.cdx.json").read_text()
    assert json.loads(second)["serialNumber"] == bom["serialNumber"]


def _verify(out: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return _cli("verify", str(out), *args)


def test_verify_passes_on_a_fresh_build(built: dict[str, Path]) -> None:
    proc = _verify(built["first"])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verified 3 wheel(s)" in proc.stderr
    signed = _verify(built["second"], "--public-key", str(built["key"]))
    assert signed.returncode == 0, signed.stdout + signed.stderr
    assert "3 signature(s) checked" in signed.stderr


def _flip_last_byte(path: Path) -> bytes:
    original = path.read_bytes()
    path.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    return original


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (f"wheels-repo/downloads/{APP_WHEEL}", f"{APP_WHEEL}: sha256"),
        ("sdists-repo/downloads/fx_app-1.0.tar.gz", "source archive"),
        ("patch", "patch "),
    ],
)  # fmt: skip
def test_verify_fails_after_one_byte_changes(
    built: dict[str, Path], tmp_path: Path, target: str, expected: str
) -> None:
    out = tmp_path / "out"
    shutil.copytree(built["first"], out, symlinks=True)
    if target == "patch":
        patches = tmp_path / "patches"
        shutil.copytree(built["patches"], patches)
        path = built["patches"] / "fx_app" / "0001-mark.patch"  # the path provenance names
        original = _flip_last_byte(path)
        try:
            proc = _verify(out)
        finally:
            path.write_bytes(original)
    else:
        _flip_last_byte(out / target)
        proc = _verify(out)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert expected in proc.stdout
    assert "problem(s)" in proc.stderr


def test_verify_fails_when_a_build_environment_wheel_is_replaced(
    built: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(built["first"], out, symlinks=True)
    tool = out / "wheels-repo/downloads/fx_tool-1.0-0-py3-none-any.whl"
    with zipfile.ZipFile(tool, "a") as zf:
        zf.writestr("fx_tool/evil.py", "print('hi')\n")
    proc = _verify(out)
    assert proc.returncode == 1
    assert "build-environment wheel fx_tool-1.0-0-py3-none-any.whl has sha256" in proc.stdout


def test_verify_fails_when_a_provenance_file_is_removed(
    built: dict[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(built["first"], out, symlinks=True)
    (out / "wheels-repo/provenance/fx_tool-1.0-0-py3-none-any.whl.intoto.json").unlink()
    proc = _verify(out)
    assert proc.returncode == 1
    lines = proc.stdout.splitlines()
    assert any(line.startswith("fx_tool-1.0-0-py3-none-any.whl: no provenance") for line in lines)
    # the chain no longer closes: fx-cext was built with a wheel that has none
    assert any("fx_tool-1.0-0-py3-none-any.whl has no provenance" in line for line in lines)


def test_verify_fails_on_a_bad_signature(built: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(built["second"], out, symlinks=True)
    path = out / "wheels-repo/provenance/fx_app-1.0-0-py3-none-any.whl.intoto.json"
    envelope = json.loads(path.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["buildDefinition"]["externalParameters"]["variant"] = "rocm"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    path.write_text(json.dumps(envelope))
    proc = _verify(out, "--public-key", str(built["key"]))
    assert proc.returncode == 1
    assert f"{path}: bad signature" in proc.stdout
    other = tmp_path / "other.pem"
    other.write_bytes(
        Ed25519PrivateKey.generate()
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    proc = _verify(built["second"], "--public-key", str(other))
    assert proc.returncode == 1
    assert proc.stdout.count("bad signature") == 3


def test_cli_start_up_imports_no_provenance_library() -> None:
    """cyclonedx, in-toto, protobuf, cryptography and jsonschema are imported where a document
    is made or read: every `fromager-dagster` invocation would pay for them otherwise."""
    heavy = ["cyclonedx", "in_toto_attestation", "cryptography", "jsonschema", "packageurl"]
    code = (
        "import sys, fromager_dagster.cli.main\n"
        f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[]"


def test_source_date_epoch_comes_from_the_sdist(built: dict[str, Path]) -> None:
    """fx-cext's sdist is dated 2023 (PKG-INFO newest): its hooks see that SOURCE_DATE_EPOCH,
    its wheel's members carry that date and its provenance records it; fx-app's sdist is
    dated 1980-01-01, which gives the default."""
    epoch = CEXT_MTIME + 1
    for out in (built["first"], built["second"]):
        wheel = out / "wheels-repo" / "downloads" / "fx_cext-1.0-0-py3-none-any.whl"
        with zipfile.ZipFile(wheel) as zf:
            seen = json.loads(zf.read("fx_cext/build-env.json"))
            dates = {info.date_time for info in zf.infolist()}
        assert seen["env"]["SOURCE_DATE_EPOCH"] == str(epoch)
        assert {d[:5] for d in dates} == {time.gmtime(epoch)[:5]}
        cext = _statement(out / "wheels-repo" / "provenance" / f"{wheel.name}.intoto.json")
        internal = cext["predicate"]["buildDefinition"]["internalParameters"]
        assert internal["source_date_epoch"] == str(epoch)
        app = _statement(out / "wheels-repo" / "provenance" / f"{APP_WHEEL}.intoto.json")
        internal = app["predicate"]["buildDefinition"]["internalParameters"]
        assert internal["source_date_epoch"] == "315532800"


def test_build_parallel_and_build_sequence_write_provenance(tmp_path: Path) -> None:
    """After `bootstrap --sdist-only` (fx-app not built), build-parallel builds fx-app through
    the wheel assets and build-sequence builds all three in another folder: each wheel they
    build has provenance naming its run, `verify` passes on both folders, and the wheels are
    the same bytes."""
    upstream = make_index(PACKAGES, tmp_path / "up")
    graph_out, seq_out = tmp_path / "graph", tmp_path / "elsewhere" / "seq"
    with LocalIndexServer([upstream]) as server:
        boot = _cli(
            "bootstrap", "fx-app", "-O", str(graph_out), "--index-url", server.url,
            "--no-dagster", "--sdist-only",
        )  # fmt: skip
        assert boot.returncode == 0, boot.stderr
        assert not (graph_out / "wheels-repo" / "downloads" / APP_WHEEL).exists()
        work = graph_out / "work-dir"
        parallel = _cli("build-parallel", str(work / "graph.json"), "-O", str(graph_out))
        assert parallel.returncode == 0, parallel.stderr
        sequence = _cli(
            "build-sequence", str(work / "build-order.json"), "-O", str(seq_out),
            "--index-url", server.url,
        )  # fmt: skip
        assert sequence.returncode == 0, sequence.stderr
    for out in (graph_out, seq_out):
        proc = _verify(out)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "verified 3 wheel(s)" in proc.stderr
        app = _statement(out / "wheels-repo" / "provenance" / f"{APP_WHEEL}.intoto.json")
        run = app["predicate"]["runDetails"]["metadata"]
        assert len(run["invocationId"]) == 36  # the Dagster run that built it
        deps = app["predicate"]["buildDefinition"]["resolvedDependencies"]
        assert [d["name"] for d in deps] == ["fx_app-1.0.tar.gz", "fx_cext-1.0-0-py3-none-any.whl"]
    assert _wheels(graph_out) == _wheels(seq_out)


def test_verify_rebuild_names_the_files_of_a_wheel_that_is_not_reproducible(
    tmp_path: Path,
) -> None:
    """fx-nd writes its build environment's path into the wheel: a rebuild in a scratch
    folder differs, and `verify --rebuild` says so naming that file, records the reason beside
    the provenance, and the wheel's asset metadata shows it; fx-tool rebuilds identically."""
    from fromager_dagster.core.layout import OutputLayout
    from fromager_dagster.core.repository.built import BuiltWheel
    from fromager_dagster.defs.provenance import provenance_metadata

    packages = [
        FixturePackage("fx-tool"),
        FixturePackage("fx-nd", build_system_requires=("fx-tool",), record_env=("VIRTUAL_ENV",)),
    ]
    out = tmp_path / "out"
    with LocalIndexServer([make_index(packages, tmp_path / "up")]) as server:
        boot = _cli("bootstrap", "fx-nd", "-O", str(out), "--index-url", server.url, "--no-dagster")
        assert boot.returncode == 0, boot.stderr
    assert _verify(out).returncode == 0
    proc = _verify(out, "--rebuild", "all")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    wheel = out / "wheels-repo" / "downloads" / "fx_nd-1.0-0-py3-none-any.whl"
    lines = proc.stdout.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"{wheel.name}: not reproducible:")
    assert "fx_nd/build-env.json" in lines[0]
    assert "rebuilt fx-tool==1.0: reproducible" in proc.stderr
    assert "1 wheel(s) not reproducible" in proc.stderr
    record = json.loads(
        (out / "wheels-repo" / "provenance" / f"{wheel.name}.reproducibility.json").read_text()
    )
    assert record["reproducible"] is False and "fx_nd/build-env.json" in record["differing"]
    built = BuiltWheel.since(0.0, "fx-nd==1.0", wheel, out / "log", wheel)
    metadata = provenance_metadata(OutputLayout(out), built)
    assert metadata["reproducible"].value is False
    assert "fx_nd/build-env.json" in metadata["not_reproducible_reason"].value
    assert not list((out / "work-dir").glob("rebuild-*"))  # the scratch folders are gone


def test_verify_rebuild_of_the_c_extension_is_identical(built: dict[str, Path]) -> None:
    proc = _verify(built["first"], "--rebuild", "fx-cext", "-p", str(built["patches"]))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rebuilt fx-cext==1.0: reproducible" in proc.stderr
    unknown = _verify(built["first"], "--rebuild", "nope")
    assert unknown.returncode != 0
    assert "--rebuild nope: not a package built from source" in unknown.stderr
