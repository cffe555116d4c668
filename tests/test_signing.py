import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest

from chorus_litellm.settlement.signing import Signer, SigningError, generate, key_id, verify
from chorus_litellm.core.stages.bounty import Contribution, receipt_payload, split
from chorus_litellm.testing import TEST_SIGNING_SEED

GOLDEN = Path(__file__).parent / "golden" / "receipt.json"


def golden_receipt() -> dict:
    signer = Signer(TEST_SIGNING_SEED)
    contributions = [
        Contribution("model-a", "model-a", "peer:alice", "Paris is the capital.", True, impact=0.6),
        Contribution("model-b", "model-b", "peer:bob", "The capital is Paris.", True, impact=0.4),
        Contribution("model-c", "model-c", "peer:carol", "What is the capital?", False, reason="echo: parrot"),
    ]
    payload = receipt_payload(
        receipt_id="rcpt_golden", debate_id="dbt_golden", issued_at="2026-01-01T00:00:00Z",
        profile="research", messages=[{"role": "user", "content": "What is the capital of France?"}],
        answer="Paris.", contributions=contributions, result=split(1000, contributions), bounty=1000,
        currency="USD", rounds=2, embedding_model="packaged:all-MiniLM-L6-v2", key_id=signer.key_id,
    )
    return signer.sign(payload)


def test_golden_receipt_is_stable_and_verifies():
    receipt = golden_receipt()
    assert receipt == json.loads(GOLDEN.read_text())  # byte-for-byte reproducible signing
    pub = Signer(TEST_SIGNING_SEED).public_key
    assert verify(receipt, [pub]) == key_id(pub)
    amounts = {c["seat"]: c["amount"] for c in receipt["payload"]["contributions"]}
    assert amounts == {"model-a": 525, "model-b": 475, "model-c": 0}
    assert sum(amounts.values()) == 1000


def test_any_changed_byte_fails():
    receipt = golden_receipt()
    pub = Signer(TEST_SIGNING_SEED).public_key
    raw = json.dumps(receipt["payload"], sort_keys=True)
    for i in range(0, len(raw), max(1, len(raw) // 60)):  # ~60 positions across the payload
        flipped = raw[:i] + ("X" if raw[i] != "X" else "Y") + raw[i + 1:]
        try:
            payload = json.loads(flipped)
        except ValueError:
            continue  # not JSON any more: rejected before any signature check
        if payload == receipt["payload"]:
            continue
        with pytest.raises(SigningError):
            verify({**receipt, "payload": payload}, [pub])
    sig = bytearray(base64.b64decode(receipt["signature"]))
    sig[0] ^= 1
    with pytest.raises(SigningError, match="does not match"):
        verify({**receipt, "signature": base64.b64encode(bytes(sig)).decode()}, [pub])


def test_rotation_keeps_old_receipts_verifiable():
    old = golden_receipt()
    new_signer = Signer(bytes(range(1, 33)))
    with pytest.raises(SigningError, match="not among the given public keys"):
        verify(old, [new_signer.public_key])
    assert verify(old, [new_signer.public_key, Signer(TEST_SIGNING_SEED).public_key]).startswith("ed25519:")


def test_key_loading_and_secrecy(tmp_path):
    key = generate()
    env = {"CHORUS_SIGNING_KEY": key["private_key"]}
    signer = Signer.from_env(env)
    assert signer.key_id == key["key_id"] and key["private_key"] not in repr(signer)
    path = tmp_path / "k.json"
    path.write_text(json.dumps(key))
    assert Signer.from_env({"CHORUS_SIGNING_KEY_FILE": str(path)}).key_id == key["key_id"]
    assert Signer.from_env({}) is None
    with pytest.raises(SigningError, match="not valid base64"):
        Signer.from_env({"CHORUS_SIGNING_KEY": "%%%"})
    with pytest.raises(SigningError, match="32 bytes"):
        Signer.from_env({"CHORUS_SIGNING_KEY": base64.b64encode(b"short").decode()})
    path.write_text("{}")
    with pytest.raises(SigningError, match="not a chorus key file"):
        Signer.from_env({"CHORUS_SIGNING_KEY_FILE": str(path)})


def test_cli_keygen_and_verify(tmp_path):
    run = lambda *a: subprocess.run([sys.executable, "-m", "chorus_litellm.cli", *a],  # noqa: E731
                                    capture_output=True, text=True, cwd=tmp_path)
    out = run("keygen", "--out", "key.json")
    key = json.loads((tmp_path / "key.json").read_text())
    assert out.returncode == 0 and key["private_key"] not in out.stdout
    again = run("keygen", "--out", "key.json")
    assert again.returncode == 1 and "not overwriting" in again.stderr
    assert json.loads((tmp_path / "key.json").read_text()) == key
    missing = run("verify", "nope.json", "--public-key", "key.json")
    assert missing.returncode == 1 and missing.stderr.startswith("invalid:")
    assert oct((tmp_path / "key.json").stat().st_mode & 0o777) == "0o600"
    signer = Signer(base64.b64decode(key["private_key"]))
    receipt = golden_receipt()
    payload = {**receipt["payload"], "key_id": signer.key_id}
    signed = signer.sign(payload)
    (tmp_path / "r.json").write_text(json.dumps(signed))
    ok = run("verify", "r.json", "--public-key", "key.json")
    assert ok.returncode == 0 and "valid: receipt rcpt_golden" in ok.stdout
    tampered = json.loads(json.dumps(signed))
    tampered["payload"]["bounty"]["amount"] = 1
    (tmp_path / "bad.json").write_text(json.dumps(tampered))
    bad = run("verify", "bad.json", "--public-key", key["public_key"])
    assert bad.returncode == 1 and "invalid: signature does not match" in bad.stderr
