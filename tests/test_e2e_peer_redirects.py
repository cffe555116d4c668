"""A peer's base URL cannot send the proxy anywhere else (issue 23): a peer on an allowed
loopback address (127.0.0.2) answers its probe, then redirects every call (307, 303, 308)
to a canary on 127.0.0.1, which the allowlist refuses as a base URL. Through the real
proxy, a fusion run that seats those peers and direct `peer/*` calls (whole and streamed)
each fail with the refusal, and the canary sees no connection at all. A peer that
redirects its probe is kept out. And a peer whose name rebinds: `rebind.test` resolves to
the peer (127.0.0.2) while it joins and answers, then to 127.0.0.1, where a twin canary
listens on the same port; every call after the move is refused (at connect, or once a
sync pass has checked the name again and dropped the peer) and the twin sees no
connection. (The proxy's resolver is the system's; tests/rebind/sitecustomize.py makes
this proxy's answer for `rebind.test` whatever the test writes. The same below the proxy:
tests/test_netguard.py.)"""

import json
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import openai
import pytest

from tests.conftest import e2e_config, e2e_entry, proxy_env, wait_drawable
from tests.servers import ROOT, litellm_proxy
from tests.test_e2e_peers import Peer, until

CODES = (307, 303, 308)
SYNC_S = 0.5
BOUNTY = {"bounty": {"amount": 1000, "currency": "USD"}}
REFUSED = "redirects are not followed"


def chat_answer(text: str) -> bytes:
    return json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()


class Canary:
    """A server on 127.0.0.1 that counts every TCP connection and answers any request with a
    chat completion saying CANARY (what a followed redirect would bring back)."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.create_server(("127.0.0.1", port))
        self.port, self.connections = self.sock.getsockname()[1], 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(2)
                try:
                    conn.recv(65536)
                    body = chat_answer("CANARY")
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                except OSError:
                    pass


class Redirector(BaseHTTPRequestHandler):
    """Base URL `/<code>/v1`: answers the probe, redirects everything else with `<code>`;
    `/probe<code>/v1`: redirects the probe too. Always to the canary, same path. `/ok/v1`:
    a plain peer, answering PEER to everything."""

    canary_port = 0
    seen: list = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        prefix, rest = self.path.lstrip("/").split("/", 1)
        self.seen.append((prefix, b"Say OK." in body))
        if prefix == "ok" or (b"Say OK." in body and not prefix.startswith("probe")):
            answer = chat_answer("OK" if b"Say OK." in body else "PEER")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
            return
        self.send_response(int(prefix.removeprefix("probe")))
        self.send_header("Location", f"http://127.0.0.1:{self.canary_port}/{rest}")
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def servers():
    canary = Canary()
    handler = type("Handler", (Redirector,), {"canary_port": canary.port, "seen": []})
    redirector = ThreadingHTTPServer(("127.0.0.2", 0), handler)  # HTTP/1.0: a connection per request
    threading.Thread(target=redirector.serve_forever, daemon=True).start()
    twin = Canary(redirector.server_address[1])  # 127.0.0.1, the redirector's port: where a rebinding lands
    yield canary, handler, f"http://127.0.0.2:{redirector.server_address[1]}", twin
    redirector.shutdown()
    canary.sock.close()
    twin.sock.close()


@pytest.fixture(scope="module")
def rebind(tmp_path_factory):
    """The file the market proxy's resolver reads `rebind.test`'s address from."""
    path = tmp_path_factory.mktemp("rebind") / "address"
    path.write_text("127.0.0.2")
    return path


@pytest.fixture(scope="module")
def market(upstream, signing_key, servers, rebind, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("peer-redirects")
    (workdir / "spend.jsonl").touch()
    config = e2e_config(upstream)
    config["model_list"].append(e2e_entry("redirects", {
        "aggregator": {"judge": "judge", "synthesizer": "writer"},
        "panel": {"members": ["model-a", "model-b"], "pool": "gpu", "seats": len(CODES), "min_quorum": 2,
                  # the quorum (model-a, model-b) is in first; each peer's refusal must still be
                  # recorded, not cancelled as a straggler: a loaded CI box once took longer than
                  # the default grace (0.2 x the quorum's time)
                  "timeout_s": 20, "quorum_grace_s": 20, "quorum_grace_ratio": 10}}))
    env = {**proxy_env(workdir, signing_key, workdir / "spend.jsonl"), "CHORUS_PEER_ADMISSION": "open",
           "CHORUS_PEER_URL_ALLOWLIST": "127.0.0.2/32", "CHORUS_PEER_SYNC_S": str(SYNC_S),
           "CHORUS_TEST_REBIND_FILE": str(rebind),
           "PYTHONPATH": os.pathsep.join(str(p) for p in (ROOT / "tests" / "rebind", ROOT / "tests", ROOT))}
    with litellm_proxy(config, workdir, env=env) as (url, _log):
        yield url


def test_a_peer_redirecting_to_a_refused_address_is_a_failed_member_and_never_followed(market, servers, upstream):
    canary, handler, redirector, _twin = servers

    def join(code, pool="gpu"):
        peer = Peer(market)
        assert peer.register(upstream, base_url=f"{redirector}/{code}/v1", pool=pool,
                             payee=f"payee-{code}").status_code == 201
        return peer

    seated = {code: join(code) for code in CODES}  # drawn into the fusion's panel
    # asked directly, in a pool of their own: a failed call cools a deployment down for a while
    whole, streamed = ({code: join(code, "direct") for code in CODES} for _ in range(2))
    sly = join("probe307", "direct")  # redirects its probe as well

    def probed():  # each is probed by the sync; those that answered are deployments in the same pass
        assert sum(probe for _, probe in handler.seen) == 3 * len(CODES) + 1

    until(probed, 30)
    wait_drawable(market, "sk-team-a", "gpu", [peer.id for peer in seated.values()])
    wait_drawable(market, "sk-team-a", "direct", [peer.id for peer in (*whole.values(), *streamed.values())])

    client = openai.OpenAI(base_url=f"{market}/v1", api_key="sk-team-a", max_retries=0, timeout=60)
    resp = client.chat.completions.create(model="fusion/redirects", messages=[{"role": "user", "content": "hi"}],
                                          extra_body={"chorus": {"include_panel": True}, **BOUNTY})
    panel = resp.model_extra["chorus"]["panel"]
    failed = {f["model"]: f for f in panel["failed"]}
    assert set(failed) == {f"peer/{seated[c].id}" for c in CODES}, panel
    for code in CODES:
        failure = failed[f"peer/{seated[code].id}"]
        assert failure["kind"] == "http_error" and failure["status"] == code, failure
        assert f"answered {code} (a redirect to http://127.0.0.1:{canary.port}); {REFUSED}" in failure["detail"]
    assert "CANARY" not in json.dumps(panel["answers"]) and "CANARY" not in resp.choices[0].message.content

    # Asked directly, whole and streamed: the same refusal, never followed.
    for code in CODES:
        with pytest.raises(openai.APIError, match=REFUSED):
            client.chat.completions.create(model=f"peer/{whole[code].id}", messages=[{"role": "user", "content": "x"}])
        with pytest.raises(openai.APIError, match=REFUSED):
            for _ in client.chat.completions.create(model=f"peer/{streamed[code].id}", stream=True,
                                                    messages=[{"role": "user", "content": "x"}]):
                pass

    # The peer whose probe redirected never became a deployment, and its failure counts.
    def counted():
        listed = httpx.get(f"{market}/chorus/v1/peers", params={"pool": "direct"}, timeout=10,
                           headers={"Authorization": "Bearer sk-team-a"}).json()["peers"]
        assert {p["peer_id"]: p for p in listed}[sly.id]["reputation"]["failure_rate"] == 1.0

    until(counted)
    with pytest.raises(openai.APIStatusError):
        client.chat.completions.create(model=f"peer/{sly.id}", messages=[{"role": "user", "content": "x"}])
    assert sum(not probe for _, probe in handler.seen) >= 3 * len(CODES)  # panel and direct calls arrived
    assert canary.connections == 0


def test_a_peer_name_that_rebinds_to_a_refused_address_is_never_reached(market, servers, upstream, rebind):
    _canary, _handler, redirector, twin = servers
    port = redirector.rsplit(":", 1)[1]
    rebind.write_text("127.0.0.2")
    peer = Peer(market)
    joined = peer.register(upstream, base_url=f"http://rebind.test:{port}/ok/v1", pool="rebind", payee="payee-rebind")
    assert joined.status_code == 201, joined.text  # checked at registration: the name is the peer's address
    client = openai.OpenAI(base_url=f"{market}/v1", api_key="sk-team-a", max_retries=0, timeout=30)
    ask = [{"role": "user", "content": "x"}]

    def call():
        try:
            return client.chat.completions.create(model=f"peer/{peer.id}", messages=ask).choices[0].message.content
        except openai.APIError as exc:
            return exc.message

    def answers():  # once its probe passed, a deployment answering through the guarded client
        assert call() == "PEER"

    until(answers, 30)
    # Calls one after another; between two of them the name moves to the refused address,
    # where the twin listens. Every call after that fails: refused where the proxy connects
    # (LiteLLM's Router then retries and cools the deployment down: "no healthy deployments"),
    # or after a sync pass checked the name again and dropped the peer.
    stop, said = threading.Event(), []

    def caller():
        while not stop.is_set():
            at = rebind.read_text()
            said.append((at, call(), rebind.read_text()))

    def answered_at(address):  # at least one whole call, begun and ended with the name at `address`
        assert any(at == then == address for at, _, then in said)

    worker = threading.Thread(target=caller)
    worker.start()
    until(lambda: answered_at("127.0.0.2"), 30)
    time.sleep(0.5)
    rebind.write_text("127.0.0.1")
    time.sleep(SYNC_S + 1)  # calls go on across at least one sync pass after the move
    until(lambda: answered_at("127.0.0.1"), 30)
    stop.set()
    worker.join(60)
    before = [m for at, m, then in said if at == then == "127.0.0.2"]
    after = [m for at, m, then in said if at == then == "127.0.0.1"]  # (not the one the move fell in)
    assert before and all(m == "PEER" for m in before), before
    refusals = ("'rebind.test' resolves to 127.0.0.1, a loopback address", "no healthy deployments",
                "Invalid model name")
    assert after and all(any(r in m for r in refusals) for m in after), after
    print(f"\nrebinding: {len(before)} calls answered before the name moved, {len(after)} refused after")
    assert twin.connections == 0
