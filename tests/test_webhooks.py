"""callback_url webhooks: signatures a receiver verifies, a durable queue with retries and
backoff, SSRF refusals, against a real loopback receiver (admitted by the allowlist)."""

import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from chorus_litellm.observe.netguard import Allowlist, guarded_client
from chorus_litellm.settlement.signing import Signer, SigningError, generate
from chorus_litellm.storage.sqlite_backend import SQLiteStore
from chorus_litellm.observe.webhooks import Webhooks, backoff, body_of, job_id, verify
from chorus_litellm.core.errors import RequestError

LOOPBACK = Allowlist.parse("127.0.0.1/32")


class Receiver:
    """A real HTTP server on 127.0.0.1 answering `statuses` in turn (then 200)."""

    def __init__(self, *statuses: int) -> None:
        self.statuses, self.seen = list(statuses), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.seen.append((dict(self.headers), body))
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", f"{outer.url}/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Clock:
    def __init__(self):
        self.now = 1_800_000_000.0

    def __call__(self):
        return self.now


@pytest.fixture
def signer():
    key = generate()
    import base64

    return Signer(base64.b64decode(key["private_key"]))


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
async def store(tmp_path, clock):
    s = SQLiteStore(tmp_path / "db.sqlite3", tmp_path / "outbox.sqlite3", clock=clock)
    yield s
    await s.aclose()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.close()


def hooks(store, signer, **options):
    return Webhooks(store, signer, LOOPBACK, rng=random.Random(0), timeout_s=2, **options)


async def pass_once(webhooks):
    async with guarded_client(webhooks.allowlist, timeout=2) as client:
        return await webhooks.deliver_due(client)


async def test_a_delivery_is_signed_and_verifies_with_the_public_key_and_its_id_is_the_idempotency_key(
        store, signer, receiver, clock):
    w = hooks(store, signer)
    payload = {"debate_id": "d1", "answer": "42", "chorus": {"id": "d1"}}
    jid = await w.enqueue(f"{receiver.url}/hook", "team:a", "d1", "run.done", payload)
    assert jid == job_id("team:a", "d1", "run.done") != job_id("team:b", "d1", "run.done")
    assert await pass_once(w) == 1
    ((headers, body),) = receiver.seen
    assert json.loads(body) == payload
    assert headers["X-Chorus-Event"] == "run.done" and headers["Idempotency-Key"] == headers["X-Chorus-Webhook-Id"] == jid
    assert verify(body, headers, [signer.public_key], now=clock.now) == signer.key_id
    with pytest.raises(SigningError, match="does not match"):
        verify(body.replace(b"42", b"43"), headers, [signer.public_key], now=clock.now)  # tampered
    with pytest.raises(SigningError, match="replay"):
        verify(body, headers, [signer.public_key], now=clock.now + 301)  # replayed later
    with pytest.raises(SigningError, match="not among"):
        verify(body, headers, [Signer(bytes(32)).public_key], now=clock.now)
    with pytest.raises(SigningError, match="not a signed chorus webhook"):
        verify(body, {}, [signer.public_key], now=clock.now)
    assert await store.webhook_state(jid) is None and await pass_once(w) == 0  # delivered once


async def test_failures_are_retried_with_backoff_until_a_2xx(store, signer, clock):
    receiver = Receiver(500, 503, 302)
    try:
        w = hooks(store, signer)
        jid = await w.enqueue(f"{receiver.url}/hook", "team:a", "d2", "run.done", {"n": 1})
        delays = []
        for attempt in (1, 2, 3):
            assert await pass_once(w) == 1
            state = await store.webhook_state(jid)
            assert state["attempts"] == attempt and state["state"] == "pending"
            delays.append(state["due"] - clock.now)
            assert await pass_once(w) == 0  # not due yet
            clock.now = state["due"]
        assert state["error"] == "HTTP 302"
        assert 1.6 <= delays[0] <= 2.4 and 3.2 <= delays[1] <= 4.8 and 6.4 <= delays[2] <= 9.6  # doubling
        assert await pass_once(w) == 1
        assert await store.webhook_state(jid) is None and len(receiver.seen) == 4  # the redirect was not followed
        assert len({h["X-Chorus-Signature"] for h, _ in receiver.seen}) >= 1
        assert {h["Idempotency-Key"] for h, _ in receiver.seen} == {jid}
    finally:
        receiver.close()


async def test_a_job_gives_up_after_max_attempts_or_at_once_on_410(store, signer, clock):
    receiver = Receiver(500, 500, 410)
    try:
        w = hooks(store, signer, max_attempts=2)
        jid = await w.enqueue(f"{receiver.url}/a", "team:a", "d3", "run.done", {})
        for _ in range(2):
            await pass_once(w)
            clock.now += 1000
        assert (await store.webhook_state(jid))["state"] == "dead"
        gone = await w.enqueue(f"{receiver.url}/b", "team:a", "d4", "run.done", {})
        await pass_once(w)
        state = await store.webhook_state(gone)
        assert state["state"] == "dead" and state["attempts"] == 1 and state["error"] == "HTTP 410"
    finally:
        receiver.close()


async def test_an_unreachable_receiver_is_a_retry_not_a_crash(store, signer):
    w = hooks(store, signer)
    jid = await w.enqueue("http://127.0.0.1:9/hook", "team:a", "d5", "run.failed", {})
    assert await pass_once(w) == 1
    state = await store.webhook_state(jid)
    assert state["attempts"] == 1 and "ConnectError" in state["error"]


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.1.2.3/hook", "private"), ("http://169.254.169.254/latest", "metadata"),
    ("http://[::ffff:127.0.0.1]/x", "loopback"), ("ftp://example.com/x", "http and https"),
    ("http://user:pw@example.com/x", "credentials"),
])
async def test_unsafe_callback_urls_are_refused_with_the_reason(store, signer, url, reason):
    w = Webhooks(store, signer, Allowlist.parse(""))
    with pytest.raises(RequestError, match=reason) as err:
        await w.check(url)
    assert err.value.status_code == 400 and err.value.param == "callback_url"


async def test_the_allowlist_admits_a_private_target_and_no_key_means_no_webhooks(store, signer, receiver):
    await hooks(store, signer).check(f"{receiver.url}/hook")  # 127.0.0.1/32 listed
    with pytest.raises(RequestError, match="loopback"):
        await Webhooks(store, signer, Allowlist.parse("10.0.0.0/8")).check(f"{receiver.url}/hook")
    with pytest.raises(RequestError, match="signing key"):
        await Webhooks(store, None, LOOPBACK).check(f"{receiver.url}/hook")


def test_backoff_doubles_with_jitter_and_is_capped():
    rng = random.Random(1)
    assert [round(backoff(n, 2.0, 600.0, random.Random(0)) / (2.0 * 2 ** (n - 1)), 3) for n in (1, 2, 3)] == \
        [round(random.Random(0).uniform(0.8, 1.2), 3)] * 3
    assert backoff(30, 2.0, 600.0, rng) <= 720.0


def test_an_oversized_summary_is_sent_without_its_details():
    body = json.loads(body_of({"answer": "x", "chorus": {"id": "d", "profile": "p", "cost": {}, "panel": "y" * 300_000}}))
    assert body["truncated"] is True and body["chorus"] == {"id": "d", "profile": "p", "cost": {}}
