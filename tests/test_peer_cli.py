"""`chorus peer` against a scripted proxy: every request signed with rising timestamps,
registering again when the proxy forgot the peer, waiting out an outage, leaving when
stopped, giving up on a refusal; earnings verified receipt by receipt."""

import base64
import json
import threading

import httpx

from chorus_litellm.market import cli as peer_cli, peers
from chorus_litellm.settlement.signing import Signer
from chorus_litellm.testing import TEST_SIGNING_SEED

SEED = bytes(range(32))
OFFER = {"pool": "gpu", "base_url": "http://10.0.0.7:11434/v1", "model": "m", "payee": "alice"}


class ScriptedProxy:
    """Answers each request with the next scripted reply for its kind (an exception is raised)."""

    def __init__(self, **script):
        self.script, self.seen = {k: list(v) for k, v in script.items()}, []
        self.stop = threading.Event()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        kind = {"POST": "heartbeat" if request.url.path.endswith("/heartbeat") else "register",
                "DELETE": "leave", "GET": "earnings"}[request.method]
        target = request.url.path + (f"?{request.url.query.decode()}" if request.url.query else "")
        signed = peers.verify(dict(request.headers), request.method, target, request.content, now=1_000_000.0,
                              window_s=300)
        self.seen.append((kind, signed.timestamp))
        reply = self.script[kind].pop(0) if self.script.get(kind) else 200
        if not self.script.get("heartbeat") and kind == "heartbeat":
            self.stop.set()  # the script has run out: stop the client (as SIGTERM would)
        if isinstance(reply, Exception):
            raise reply
        status, body = reply if isinstance(reply, tuple) else (reply, {})
        if kind == "register" and status == 201:
            body = {"peer_id": "x", "pool": "gpu", "heartbeat_s": 20, **body}
        return httpx.Response(status, json={"state": "live", **body} if status == 200 else body)


def client(proxy):
    return peer_cli.PeerClient("http://proxy", SEED, transport=httpx.MockTransport(proxy), clock=lambda: 1_000_000.0)


def test_join_registers_beats_registers_again_waits_out_an_outage_and_leaves(monkeypatch, capsys):
    monkeypatch.setattr(peer_cli, "RETRY_FIRST_S", 0.01)
    down = httpx.ConnectError("refused")
    proxy = ScriptedProxy(register=[201, 201], heartbeat=[200, 404, down, down, 200], leave=[204])
    assert peer_cli.join(client(proxy), OFFER, None, proxy.stop, heartbeat_s=0.01) == 0
    assert [k for k, _ in proxy.seen] == ["register", "heartbeat", "heartbeat", "register", "heartbeat",
                                          "heartbeat", "heartbeat", "leave"]
    stamps = [t for _, t in proxy.seen]
    assert stamps == sorted(set(stamps))  # strictly rising, though the clock stood still
    out = capsys.readouterr().out
    assert "registering again" in out and out.count("proxy unreachable") == 2 and "left the pool" in out


def test_join_waits_for_a_proxy_that_is_not_up_yet_and_gives_up_on_a_refusal(monkeypatch, capsys):
    monkeypatch.setattr(peer_cli, "RETRY_FIRST_S", 0.01)
    refused = ScriptedProxy(register=[httpx.ConnectError("refused"), (403, {"detail": "not on the allowlist"})])
    assert peer_cli.join(client(refused), OFFER, "invite-token", threading.Event(), heartbeat_s=0.01) == 2
    assert [k for k, _ in refused.seen] == ["register", "register"]  # no leave for a peer that never joined
    assert "registration refused (403): not on the allowlist" in capsys.readouterr().out


def test_earnings_verifies_every_receipt_and_flags_a_forged_one(capsys):
    signer = Signer(TEST_SIGNING_SEED)
    me = client(ScriptedProxy()).peer_id

    def receipt(n, amount):
        return signer.sign({"receipt_id": f"r{n}", "issued_at": f"2026-11-30T10:0{n}:00.000000Z", "key_id": signer.key_id,
                            "bounty": {"amount": 1000, "currency": "USD"},
                            "contributions": [{"seat": "s", "amount": amount, "peer_id": me}]})

    good, forged = receipt(1, 300), receipt(2, 200)
    forged["payload"]["contributions"][0]["amount"] = 900  # the proxy's signature no longer holds
    body = {"peer_id": me, "totals": [{"currency": "USD", "amount": 500, "receipts": 2}], "receipts": [good, forged],
            "keys": [{"public_key": base64.b64encode(signer.public_key).decode()}]}
    proxy = ScriptedProxy(earnings=[(200, body)])
    assert peer_cli.show_earnings(client(proxy), [signer.public_key], as_json=True) == 1
    shown = json.loads(capsys.readouterr().out)
    assert [(r["receipt_id"], r["amount"], r["signature"][:8]) for r in shown["receipts"]] == \
        [("r1", 300, "verified"), ("r2", 900, "INVALID ")]
    assert proxy.seen[0][0] == "earnings"


def test_keygen_never_overwrites_a_key(tmp_path, capsys):
    import argparse

    path = tmp_path / "peer.json"
    assert peer_cli.run(argparse.Namespace(peer_command="keygen", out=str(path))) == 0
    assert "peer id ed25519:" in capsys.readouterr().out and oct(path.stat().st_mode)[-3:] == "600"
    before = path.read_text()
    assert peer_cli.run(argparse.Namespace(peer_command="keygen", out=str(path))) == 1
    assert path.read_text() == before


def test_join_with_no_key_file_says_so(tmp_path, capsys):
    from chorus_litellm.cli import main

    code = main(["peer", "join", "--proxy", "http://127.0.0.1:9", "--pool", "gpu", "--base-url", "http://x/v1",
                 "--model", "m", "--payee", "p", "--key", str(tmp_path / "none.json")])
    assert code == 2 and "not a chorus key file" in capsys.readouterr().err
