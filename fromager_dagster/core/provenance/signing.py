"""DSSE envelopes: signing a provenance statement with an Ed25519 key, and checking one.

The envelope is the one in-toto and SLSA use (``payloadType``, base64 ``payload``,
``signatures`` of ``keyid`` and ``sig``), signed over DSSE's pre-authentication encoding
``DSSEv1 <len> <type> <len> <payload>``. Keys are PEM files (PKCS#8 private, SubjectPublicKeyInfo
public); the ``keyid`` is the sha256 of the raw public key, in hex.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fromager_dagster.core.errors import ConfigError

if TYPE_CHECKING:  # cryptography is imported where a key is used, never at start-up
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

PAYLOAD_TYPE = "application/vnd.in-toto+json"
#: The variable naming the Ed25519 private key (a PEM file) that signs provenance.
SIGNING_KEY_ENV = "FROMAGER_DAGSTER_SIGNING_KEY"


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what is actually signed."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The Ed25519 private key in the PEM file ``path``; ConfigError naming it otherwise."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{path}: cannot read a PEM private key ({exc}); {SIGNING_KEY_ENV} must name an "
            "unencrypted Ed25519 key, e.g. made by `openssl genpkey -algorithm ed25519`"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: not an Ed25519 key; provenance is signed with Ed25519")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The Ed25519 public key in ``path``: a public key PEM, or the private key's."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the key ({exc.strerror})") from exc
    if b"PRIVATE KEY" in data:
        return load_private_key(path).public_key()
    try:
        key = serialization.load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{path}: not a PEM public key ({exc})") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key")
    return key


def key_id(public: Ed25519PublicKey) -> str:
    from cryptography.hazmat.primitives import serialization

    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()


def sign(payload: bytes, key: Ed25519PrivateKey) -> dict[str, Any]:
    """``payload`` (a statement's JSON) in a DSSE envelope signed by ``key``."""
    signature = key.sign(pae(PAYLOAD_TYPE, payload))
    return {
        "payloadType": PAYLOAD_TYPE,
        "payload": base64.b64encode(payload).decode("ascii"),
        "signatures": [
            {
                "keyid": key_id(key.public_key()),
                "sig": base64.b64encode(signature).decode("ascii"),
            }
        ],
    }


def is_envelope(document: Mapping[str, Any]) -> bool:
    return "payloadType" in document and "payload" in document


def payload(envelope: Mapping[str, Any]) -> bytes:
    """The envelope's payload bytes; ValueError when it is not base64."""
    return base64.b64decode(str(envelope["payload"]), validate=True)


def verify(envelope: Mapping[str, Any], public: Ed25519PublicKey) -> bool:
    """True when one of the envelope's signatures is ``public``'s over its payload."""
    from cryptography.exceptions import InvalidSignature

    try:
        body = payload(envelope)
        message = pae(str(envelope["payloadType"]), body)
        signatures = list(envelope.get("signatures") or [])
    except (ValueError, KeyError, TypeError):
        return False
    for entry in signatures:
        try:
            public.verify(base64.b64decode(str(entry["sig"]), validate=True), message)
        except (InvalidSignature, ValueError, KeyError, TypeError):
            continue
        return True
    return False
