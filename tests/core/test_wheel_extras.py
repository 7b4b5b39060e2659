"""core.build.wheel_extras and core.provenance.sbom: Requires-External and the SBOM."""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
from packaging.metadata import Metadata

from fromager_dagster.core.build.wheel_extras import WheelExtras, tool_name, wheel_extras
from fromager_dagster.core.build.wheels import finalize_wheel
from fromager_dagster.core.errors import BuildError, ConfigError
from fromager_dagster.core.provenance.sbom import SBOM_PATH
from fromager_dagster.core.settings.loading import load_settings
from fromager_dagster.core.settings.overrides import Settings
from tests.fixtures.packages import FixturePackage, make_wheel

SHA = "ab" * 32
EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z


def settings_from(
    tmp_path: Path,
    *,
    global_yaml: str | None = None,
    packages: dict[str, str] | None = None,
    variant: str = "cpu",
) -> Settings:
    """Real settings files in ``tmp_path/overrides``, read with load_settings."""
    root = tmp_path / "overrides"
    settings_dir = root / "settings"
    settings_dir.mkdir(parents=True, exist_ok=True)
    settings_file = None
    if global_yaml is not None:
        settings_file = root / "settings.yaml"
        settings_file.write_text(global_yaml, encoding="utf-8")
    for name, text in (packages or {}).items():
        (settings_dir / f"{name}.yaml").write_text(text, encoding="utf-8")
    return load_settings(settings_file=settings_file, settings_dir=settings_dir, variant=variant)


def sbom_of(extras: WheelExtras) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(extras.files[SBOM_PATH])
    return document


def purls(document: dict[str, Any]) -> list[str]:
    return [p["externalRefs"][0]["referenceLocator"] for p in document["packages"]]


SBOM_ON = 'sbom:\n  supplier: "Organization: ExampleCo"\n'


def test_no_settings_add_only_the_default_sbom() -> None:
    extras = wheel_extras(Settings(), "fx-a", "1.0", source_url=None, source_sha256=None)

    assert extras.metadata_headers == ()
    assert list(extras.files) == [SBOM_PATH]  # on by default: no sbom: section needed
    assert purls(sbom_of(extras)) == ["pkg:pypi/fx-a@1.0", "pkg:pypi/fx-a@1.0"]


def test_requires_external_become_headers_in_order_once(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        packages={
            "fx_a": "project_override:\n"
            "  requires_external: [openssl-libs, 'libffi (>=3.4)', openssl-libs]\n"
        },
    )

    extras = wheel_extras(settings, "FX.A", "1.0", source_url=None, source_sha256=None)

    assert extras.metadata_headers == (
        ("Requires-External", "openssl-libs"),
        ("Requires-External", "libffi (>=3.4)"),
    )
    assert list(extras.files) == [SBOM_PATH]  # no sbom: section: the default SBOM


def test_requires_external_entry_on_two_lines_is_a_config_error(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        packages={"fx_a": 'project_override:\n  requires_external: ["a\\nb"]\n'},
    )

    with pytest.raises(ConfigError, match=r"fx_a\.yaml: project_override\.requires_external\[0\]"):
        wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=None)


def test_sbom_is_on_without_an_sbom_section(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        global_yaml="changelog:\n  cpu: [rebuilt]\n",
        packages={"fx_a": "annotations: {team: a}\npurl: 'pkg:generic/{name}@{version}'\n"},
    )

    extras = wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=SHA)

    doc = sbom_of(extras)
    assert purls(doc) == ["pkg:generic/fx-a@1.0", "pkg:generic/fx-a@1.0"]
    assert doc["packages"][0]["annotations"][0]["comment"] == "team=a"


@pytest.mark.parametrize("section", ["sbom:\n", "sbom: {}\n"])
def test_empty_sbom_section_turns_the_sbom_on_with_its_defaults(
    tmp_path: Path, section: str
) -> None:
    settings = settings_from(tmp_path, global_yaml=section)

    extras = wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=SHA)

    doc = sbom_of(extras)
    assert doc["packages"][0]["supplier"] == "NOASSERTION"
    assert doc["documentNamespace"] == "https://spdx.org/spdxdocs/fx-a-1.0.spdx.json"
    assert doc["creationInfo"]["creators"] == [f"Tool: {tool_name()}"]
    assert purls(doc) == ["pkg:pypi/fx-a@1.0", "pkg:pypi/fx-a@1.0"]


def test_sbom_defaults_follow_fromager(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, global_yaml=SBOM_ON)

    extras = wheel_extras(
        settings,
        "My_Package",
        "2.0.0",
        source_url="https://files.example.com/my_package-2.0.0.tar.gz",
        source_sha256=SHA.upper(),
        source_date_epoch=EPOCH,
    )

    doc = sbom_of(extras)
    assert doc["spdxVersion"] == "SPDX-2.3"
    assert doc["dataLicense"] == "CC0-1.0"
    assert doc["SPDXID"] == "SPDXRef-DOCUMENT"
    assert doc["name"] == "my-package-2.0.0"
    assert doc["documentNamespace"] == "https://spdx.org/spdxdocs/my-package-2.0.0.spdx.json"
    assert doc["creationInfo"] == {
        "created": "2023-11-14T22:13:20Z",
        "creators": [f"Tool: {tool_name()}"],
    }
    wheel, upstream = doc["packages"]
    assert wheel["SPDXID"] == "SPDXRef-wheel"
    assert (wheel["name"], wheel["versionInfo"]) == ("my-package", "2.0.0")
    assert wheel["supplier"] == "Organization: ExampleCo"
    assert "annotations" not in wheel
    assert purls(doc) == ["pkg:pypi/my-package@2.0.0", "pkg:pypi/my-package@2.0.0"]
    assert upstream["downloadLocation"] == "https://files.example.com/my_package-2.0.0.tar.gz"
    assert upstream["checksums"] == [{"algorithm": "SHA256", "checksumValue": SHA}]
    assert doc["relationships"] == [
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
    ]


def test_sbom_bytes_are_deterministic_json_with_sorted_keys(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, global_yaml=SBOM_ON)

    def make() -> bytes:
        extras = wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=SHA)
        return extras.files[SBOM_PATH]

    first, second = make(), make()
    assert first == second
    assert first == (json.dumps(json.loads(first), sort_keys=True, indent=2) + "\n").encode()
    assert json.loads(first)["creationInfo"]["created"] == "1980-01-01T00:00:00Z"


def test_sbom_global_options_and_repository_url_qualifier(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        global_yaml=(
            "sbom:\n"
            "  namespace: https://sbom.example.com/docs/\n"
            "  creators: ['Organization: ExampleCo', 'Person: Jane Doe']\n"
            "  purl_type: Generic\n"
            "  repository_url: https://example.com/simple\n"
        ),
    )

    doc = sbom_of(wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=None))

    assert doc["documentNamespace"] == "https://sbom.example.com/docs/fx-a-1.0.spdx.json"
    assert doc["creationInfo"]["creators"] == [
        "Organization: ExampleCo",
        "Person: Jane Doe",
        f"Tool: {tool_name()}",
    ]
    assert purls(doc) == [
        "pkg:generic/fx-a@1.0?repository_url=https://example.com/simple",
        "pkg:generic/fx-a@1.0",
    ]
    assert doc["packages"][0]["supplier"] == "NOASSERTION"
    assert doc["packages"][1]["downloadLocation"] == "NOASSERTION"
    assert "checksums" not in doc["packages"][1]


def test_purl_string_is_a_template_with_name_and_version(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        global_yaml=SBOM_ON,
        packages={"fx_a": "purl: 'pkg:generic/acme/{name}@{version}?arch=x86_64'\n"},
    )

    doc = sbom_of(wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=None))

    assert purls(doc) == ["pkg:generic/acme/fx-a@1.0?arch=x86_64", "pkg:generic/acme/fx-a@1.0"]
    assert (doc["packages"][0]["name"], doc["packages"][0]["versionInfo"]) == ("fx-a", "1.0")


def test_purl_template_with_an_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path, global_yaml=SBOM_ON, packages={"fx_a": "purl: 'pkg:pypi/{project}@{version}'\n"}
    )

    with pytest.raises(ConfigError, match=r"fx_a\.yaml: purl: invalid template"):
        wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=None)


def test_purl_mapping_overrides_parts_and_names_the_upstream(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        global_yaml=SBOM_ON + "  repository_url: https://global.example.com/simple\n",
        packages={
            "fx_a": (
                "purl:\n"
                "  type: generic\n"
                "  namespace: acme\n"
                "  name: fx-alpha\n"
                "  version: 1.0+acme.1\n"
                "  repository_url: https://wheels.example.com/simple\n"
                "  upstream: pkg:github/acme/fx-alpha@v1.0\n"
            )
        },
    )

    doc = sbom_of(wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=None))

    assert purls(doc) == [
        "pkg:generic/acme/fx-alpha@1.0%2Bacme.1?repository_url=https://wheels.example.com/simple",
        "pkg:github/acme/fx-alpha@v1.0",
    ]
    wheel, upstream = doc["packages"]
    assert (wheel["name"], wheel["versionInfo"]) == ("fx-alpha", "1.0+acme.1")
    assert (upstream["name"], upstream["versionInfo"]) == ("fx-alpha", "v1.0")


def test_bad_upstream_purl_is_a_config_error(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path, global_yaml=SBOM_ON, packages={"fx_a": "purl:\n  upstream: github/acme/x\n"}
    )

    with pytest.raises(ConfigError, match=r"purl\.upstream: 'github/acme/x' is not a package URL"):
        wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=None)


def test_annotations_of_the_variant_override_the_package_ones(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        global_yaml=SBOM_ON,
        packages={
            "fx_a": (
                "annotations: {team: platform, tier: '1'}\n"
                "variants:\n"
                "  rocm:\n"
                "    annotations: {team: gpu}\n"
            )
        },
        variant="rocm",
    )

    doc = sbom_of(
        wheel_extras(
            settings, "fx-a", "1.0", source_url=None, source_sha256=None, source_date_epoch=EPOCH
        )
    )

    assert doc["packages"][0]["annotations"] == [
        {
            "annotationDate": "2023-11-14T22:13:20Z",
            "annotationType": "OTHER",
            "annotator": f"Tool: {tool_name()}",
            "comment": comment,
        }
        for comment in ("team=gpu", "tier=1")
    ]


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:secret@files.example.com/a.tar.gz", "https://files.example.com/a.tar.gz"),
        ("git+https://example.com/acme/a.git@v1.0", "git+https://example.com/acme/a.git@v1.0"),
        ("http://127.0.0.1:41234/packages/a-1.0.tar.gz", "NOASSERTION"),
        ("http://localhost:8080/a-1.0.tar.gz", "NOASSERTION"),
        ("file:///tmp/a-1.0.tar.gz", "NOASSERTION"),
        ("/tmp/a-1.0.tar.gz", "NOASSERTION"),
    ],
)
def test_download_location_hides_credentials_and_local_places(
    tmp_path: Path, url: str, expected: str
) -> None:
    settings = settings_from(tmp_path, global_yaml=SBOM_ON)

    doc = sbom_of(wheel_extras(settings, "fx-a", "1.0", source_url=url, source_sha256=None))

    assert doc["packages"][1]["downloadLocation"] == expected


def test_bad_sbom_section_reports_every_problem(tmp_path: Path) -> None:
    settings = settings_from(
        tmp_path,
        global_yaml=(
            "sbom:\n"
            "  supplier: ExampleCo\n"
            "  namespace: not-a-url\n"
            "  creators: [ExampleCo]\n"
            "  suplier: 'Organization: X'\n"
        ),
    )

    with pytest.raises(ConfigError) as info:
        wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256=None)

    message = str(info.value)
    assert "settings.yaml: sbom.suplier: unknown key" in message
    assert "sbom.supplier: 'ExampleCo': write 'Organization: <name>'" in message
    assert "sbom.namespace: 'not-a-url' is not a URL" in message
    assert "sbom.creators[0]" in message


def test_a_source_sha256_that_is_not_one_is_a_build_error(tmp_path: Path) -> None:
    settings = settings_from(tmp_path, global_yaml=SBOM_ON)

    with pytest.raises(BuildError, match="not a hex sha256"):
        wheel_extras(settings, "fx-a", "1.0", source_url=None, source_sha256="md5:1234")


# -- end to end: a real fixture wheel, finalized with the extras, installed by pip -----------


def _record_ok(wheel: Path) -> list[str]:
    """The RECORD's paths, after checking every hash and size against the zip's contents."""
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        record = next(n for n in names if n.endswith(".dist-info/RECORD"))
        rows = list(csv.reader(io.StringIO(zf.read(record).decode())))
        for path, digest, size in rows:
            if path == record:
                continue
            data = zf.read(path)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert (digest, int(size)) == ("sha256=" + expected.decode(), len(data)), path
    assert sorted(r[0] for r in rows) == sorted(names)
    return [r[0] for r in rows]


def test_finalized_fixture_wheel_carries_headers_and_sbom_and_pip_installs_it(
    tmp_path: Path,
) -> None:
    pkg = FixturePackage("fx-ext", "1.2", install_requires=("fx-dep>=1",))
    built = make_wheel(pkg, tmp_path / "built")
    settings = settings_from(
        tmp_path,
        global_yaml=SBOM_ON,
        packages={
            "fx_ext": (
                "project_override:\n  requires_external: [openssl-libs]\n"
                "annotations: {team: platform}\n"
            )
        },
    )

    def finalize(out: str) -> Path:
        extras = wheel_extras(
            settings,
            pkg.name,
            pkg.version,
            source_url="https://files.example.com/fx_ext-1.2.tar.gz",
            source_sha256=SHA,
            source_date_epoch=EPOCH,
        )
        return finalize_wheel(
            built, tmp_path / out, build_tag=2, source_date_epoch=EPOCH, extras=extras
        )

    wheel, again = finalize("out1"), finalize("out2")

    assert wheel.name == "fx_ext-1.2-2-py3-none-any.whl"
    assert wheel.read_bytes() == again.read_bytes()
    dist_info = "fx_ext-1.2.dist-info"
    assert f"{dist_info}/{SBOM_PATH}" in _record_ok(wheel)
    with zipfile.ZipFile(wheel) as zf:
        metadata = Metadata.from_email(zf.read(f"{dist_info}/METADATA"), validate=True)
        sbom = json.loads(zf.read(f"{dist_info}/{SBOM_PATH}"))
    assert metadata.requires_external == ["openssl-libs"]
    assert [str(r) for r in metadata.requires_dist or []] == ["fx-dep>=1"]
    assert purls(sbom)[0] == "pkg:pypi/fx-ext@1.2"
    assert sbom["packages"][1]["checksums"][0]["checksumValue"] == SHA
    assert sbom["packages"][0]["annotations"][0]["comment"] == "team=platform"

    target = tmp_path / "site"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--no-index",
            "--no-deps",
            "--disable-pip-version-check",
            "--target",
            str(target),
            str(wheel),
        ],
        check=True,
        env=env,
    )
    installed = target / dist_info
    assert json.loads((installed / SBOM_PATH).read_text()) == sbom
    assert "Requires-External: openssl-libs" in (installed / "METADATA").read_text()
    assert f"{dist_info}/{SBOM_PATH}" in (installed / "RECORD").read_text()
