"""Ed25519 receipts: RFC 8785 canonical JSON, signed with pynacl.

A receipt is `{"payload": {...}, "alg": "Ed25519", "key_id": ..., "signature": base64}`;
the signature covers `rfc8785.dumps(payload)` (the payload carries the key id too). The
key id is `ed25519:` + the first 16 hex digits of SHA-256 over the raw public key, so
any holder of the public key can check which key signed. After a rotation, old public
keys keep verifying old receipts: verification takes a keyring, not one key.

The signing key comes from `CHORUS_SIGNING_KEY` (base64 of the 32-byte seed) or
`CHORUS_SIGNING_KEY_FILE` (the JSON `chorus keygen` writes). It is never logged,
printed or returned; `repr()` of a Signer shows only the key id.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Mapping
from pathlib import Path

import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import SigningKey, VerifyKey

from .keys import key_id
from ..settings import Settings, load_settings

ALG = "Ed25519"


class SigningError(Exception):
    """No usable signing key, or a receipt that does not verify."""


def canonical(payload: dict) -> bytes:
    return rfc8785.dumps(payload)


def generate() -> dict[str, str]:
    key = SigningKey.generate()
    public = bytes(key.verify_key)
    return {"alg": ALG, "key_id": key_id(public),
            "public_key": base64.b64encode(public).decode(),
            "private_key": base64.b64encode(bytes(key)).decode()}


def write_key_file(path: Path) -> dict[str, str]:
    """A new key in `path`, created with mode 600 (never over an existing file)."""
    key = generate()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump(key, fh, indent=2)
    return key


def read_key_file(path: Path) -> bytes:
    """The 32-byte seed in a key file `write_key_file` made; SigningError naming the file."""
    try:
        seed = _b64(json.loads(path.read_text())["private_key"], str(path))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise SigningError(f"{path}: not a chorus key file ({type(exc).__name__})") from None
    if len(seed) != 32:
        raise SigningError(f"{path}: an Ed25519 signing key is 32 bytes")
    return seed


class Signer:
    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise SigningError("an Ed25519 signing key is 32 bytes (base64 of the seed)")
        self._key = SigningKey(seed)
        self.public_key = bytes(self._key.verify_key)
        self.key_id = key_id(self.public_key)

    def __repr__(self) -> str:
        return f"Signer(key_id={self.key_id!r})"

    @classmethod
    def from_settings(cls, settings: Settings) -> Signer | None:
        """The key in `CHORUS_SIGNING_KEY`, else `CHORUS_SIGNING_KEY_FILE`; None when neither is set."""
        if settings.signing_key is not None:
            return cls(_b64(settings.signing_key.get_secret_value(), "CHORUS_SIGNING_KEY"))
        if settings.signing_key_file is not None:
            try:
                return cls(read_key_file(settings.signing_key_file))
            except SigningError as exc:
                raise SigningError(f"CHORUS_SIGNING_KEY_FILE {exc}") from None
        return None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Signer | None:
        """`from_settings` over `environ` (default os.environ); creates no directory."""
        return cls.from_settings(load_settings(environ, create_dirs=False))

    def sign(self, payload: dict) -> dict:
        if payload.get("key_id") != self.key_id:
            raise SigningError("the payload's key_id must be the signer's")
        signature = self._key.sign(canonical(payload)).signature
        return {"payload": payload, "alg": ALG, "key_id": self.key_id,
                "signature": base64.b64encode(signature).decode()}

    def sign_bytes(self, message: bytes) -> str:
        """A detached signature over raw bytes (webhooks), base64."""
        return base64.b64encode(self._key.sign(message).signature).decode()


def _b64(value: str, source: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except ValueError:
        raise SigningError(f"{source}: not valid base64") from None


def public_key_from(value: str) -> bytes:
    """A public key given as base64, or a file holding it (raw, or a keygen JSON)."""
    path = Path(value)
    if path.is_file():
        text = path.read_text().strip()
        value = json.loads(text)["public_key"] if text.startswith("{") else text
    key = _b64(value, "public key")
    if len(key) != 32:
        raise SigningError("an Ed25519 public key is 32 bytes")
    return key


def verify_bytes(message: bytes, signature: str, claimed: str, public_keys: list[bytes]) -> str:
    """Return `claimed` if the key it names (among `public_keys`) signed `message`, else raise SigningError."""
    keyring = {key_id(k): k for k in public_keys}
    if claimed not in keyring:
        raise SigningError(f"signed by key {claimed!r}, which is not among the given public keys")
    try:
        VerifyKey(keyring[claimed]).verify(message, base64.b64decode(signature, validate=True))
    except (BadSignatureError, ValueError):
        raise SigningError("signature does not match the message (tampered or wrong key)") from None
    return claimed


def verify(receipt: dict, public_keys: list[bytes]) -> str:
    """Return the key id that signed `receipt`, or raise SigningError saying why not."""
    try:
        payload, signature = receipt["payload"], receipt["signature"]
        base64.b64decode(signature, validate=True)
    except (KeyError, TypeError, ValueError):
        raise SigningError("not a chorus receipt (payload and base64 signature required)") from None
    if receipt.get("alg") != ALG:
        raise SigningError(f"unsupported algorithm {receipt.get('alg')!r}")
    return verify_bytes(canonical(payload), signature, payload.get("key_id"), public_keys)
