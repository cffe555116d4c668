"""Key ids: the public name of an Ed25519 key, as receipts (`key_id`) and the
marketplace (a peer's id) write it. Pure: the signing itself is settlement/signing.py.
"""

from __future__ import annotations

import hashlib


def key_id(public_key: bytes) -> str:
    return "ed25519:" + hashlib.sha256(public_key).hexdigest()[:16]
