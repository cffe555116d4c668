import asyncio
import ipaddress

import httpcore
import httpx
import pytest

from chorus_litellm.observe.netguard import (
    Allowlist,
    GuardedBackend,
    UnsafeURL,
    check_url,
    guarded_client,
    post_json,
    refusal,
)

LOOPBACK = Allowlist.parse("127.0.0.1/32")


@pytest.mark.parametrize("address, reason", [
    ("127.0.0.1", "loopback"), ("10.1.2.3", "private"), ("172.16.0.1", "private"),
    ("192.168.1.1", "private"), ("169.254.169.254", "metadata"), ("169.254.1.1", "link-local"),
    ("100.64.0.1", "shared"), ("0.0.0.0", "unspecified"), ("224.0.0.1", "multicast"),
    ("255.255.255.255", "broadcast"), ("198.18.0.1", "benchmarking"), ("192.0.2.1", "documentation"),
    ("::1", "loopback"), ("::", "unspecified"), ("fe80::1", "link-local"), ("fc00::1", "private"),
    ("fd00:ec2::254", "metadata"), ("ff02::1", "multicast"), ("::ffff:127.0.0.1", "loopback"),
    ("::ffff:10.0.0.1", "private"), ("::127.0.0.1", "loopback"), ("64:ff9b::7f00:1", "loopback"),
    ("2002:7f00:1::", "loopback"), ("::ffff:169.254.169.254", "metadata"), ("100.100.100.200", "metadata"),
    ("2001:0:4136:e378:8000:63bf:80ff:fffe", "loopback"),  # Teredo client 127.0.0.1 (stored inverted)
    ("8.8.8.8", None), ("1.1.1.1", None), ("2606:4700:4700::1111", None), ("::ffff:8.8.8.8", None),
])
def test_refusal(address, reason):
    why = refusal(ipaddress.ip_address(address))
    assert why is None if reason is None else reason in why


def resolver(table: dict[str, list[str]]):
    async def resolve(host: str, port: int) -> list[str]:
        if host.removesuffix(".") not in table:  # a trailing dot names the same host, as in DNS
            raise OSError(f"no such host {host}")
        return table[host.removesuffix(".")]
    return resolve


@pytest.mark.parametrize("url, allow, words", [
    ("ftp://example.com/x", "", "only http and https URLs are allowed, not 'ftp'"),
    ("http:///hook", "", "has no host"),
    ("https://user:pw@public.test/hook", "", "URLs with credentials are refused"),
    ("http://10.0.0.5/hook", "", "'10.0.0.5' resolves to 10.0.0.5, a private address"),
    ("http://[::1]:8080/hook", "", "loopback"),
    ("https://mixed.test/hook", "", "'mixed.test' resolves to 10.0.0.5, a private address"),
    ("https://mixed.test/hook", "public.test", "private"),  # another name listed does not help
    ("https://nope.invalid/hook", "", "host 'nope.invalid' does not resolve"),
])
async def test_check_url_refuses(url, allow, words):
    resolve = resolver({"mixed.test": ["93.184.216.34", "10.0.0.5"]})
    with pytest.raises(UnsafeURL, match=words.replace("(", r"\(").replace(")", r"\)")):
        await check_url(url, Allowlist.parse(allow), resolve=resolve)


@pytest.mark.parametrize("url, allow", [
    ("https://public.test/hook", ""),
    ("https://MIXED.test./hook", "mixed.test"),  # by name: case and trailing dot ignored
    ("http://mixed.test:8080/hook", "10.0.0.0/8"),  # by network
    ("http://10.0.0.5/hook", "10.0.0.5"),
])
async def test_check_url_admits(url, allow):
    resolve = resolver({"public.test": ["93.184.216.34", "2606:4700:4700::1111"],
                        "mixed.test": ["93.184.216.34", "10.0.0.5"]})
    await check_url(url, Allowlist.parse(allow), resolve=resolve)


async def test_check_url_names_the_url_it_checks():
    with pytest.raises(UnsafeURL, match="callback_url host '127.0.0.1' resolves to 127.0.0.1, a loopback address"):
        await check_url("http://127.0.0.1/", Allowlist(), what="callback_url")


def test_allowlist_parse():
    allow = Allowlist.parse(" Receiver.Test.,10.0.0.0/8\n127.0.0.1 ::1/128 , 2001:db8::1")
    assert allow.hosts == {"receiver.test"}
    assert [str(n) for n in allow.networks] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128", "2001:db8::1/128"]
    assert allow.admits("receiver.test", ipaddress.ip_address("192.168.0.1"))
    assert allow.admits("other.test", ipaddress.ip_address("10.9.9.9"))
    assert allow.admits("other.test", ipaddress.ip_address("::ffff:127.0.0.1"))
    assert not allow.admits("other.test", ipaddress.ip_address("127.0.0.2"))
    assert not Allowlist.parse(None).admits("localhost", ipaddress.ip_address("8.8.8.8"))
    assert Allowlist.parse("") == Allowlist()


@pytest.mark.parametrize("entry", ["10.0.0.1/8", "300.1.1.1", "*.example.com", "http://x.test", "x.test:80", "a..b",
                                   "10.0.0"])
def test_allowlist_parse_names_bad_entries(entry):
    with pytest.raises(ValueError, match=f"allowlist entry '{entry}'".replace("*", r"\*").replace(".", r"\.")):
        Allowlist.parse(f"ok.test {entry}")


class Receiver:
    """A raw HTTP/1.1 server on `host` (127.0.0.1) that records what arrives and answers with
    `reply` (bytes, or a function of the request's head and body)."""

    def __init__(self, reply=b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", *, hold: bool = False,
                 host: str = "127.0.0.1", port: int = 0):
        self.reply, self.hold, self.connections, self.requests = reply, hold, 0, []
        self.host, self.port = host, port

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, self.host, self.port)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc):
        self.server.close()

    async def handle(self, reader, writer):
        self.connections += 1
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            length = next((int(line.split(":")[1]) for line in head.split("\r\n")
                           if line.lower().startswith("content-length:")), 0)
            self.requests.append((head, await reader.readexactly(length)))
            writer.write(self.reply(*self.requests[-1]) if callable(self.reply) else self.reply)
            await writer.drain()
            if self.hold:  # say no more, keep the connection open until the client gives up
                await reader.read()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


async def test_loopback_is_refused_without_allowlist():
    async with Receiver() as receiver, guarded_client(Allowlist()) as client:
        with pytest.raises(httpx.ConnectError, match="127.0.0.1, a loopback address"):
            await post_json(client, f"http://127.0.0.1:{receiver.port}/hook", b"{}", {})
    assert receiver.connections == 0


async def test_allowlisted_post_arrives_with_body_and_headers():
    async with Receiver() as receiver, guarded_client(LOOPBACK) as client:
        status, body = await post_json(client, f"http://127.0.0.1:{receiver.port}/hook", b'{"a": 1}',
                                       {"X-Chorus-Signature": "sig"})
    assert (status, body) == (200, b"ok")
    [(head, sent)] = receiver.requests
    assert head.startswith("POST /hook HTTP/1.1\r\n")
    assert "x-chorus-signature: sig\r\n" in head.lower() and "content-type: application/json\r\n" in head.lower()
    assert sent == b'{"a": 1}'


async def test_redirect_is_returned_not_followed():
    async with Receiver() as target:
        location = f"http://127.0.0.1:{target.port}/elsewhere"
        reply = f"HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n".encode()
        async with Receiver(reply) as receiver, guarded_client(LOOPBACK) as client:
            status, _ = await post_json(client, f"http://127.0.0.1:{receiver.port}/hook", b"{}", {})
    assert status == 302 and receiver.connections == 1 and target.connections == 0


async def test_large_answer_is_cut_at_the_limit():
    # 10 MB of a body with no length that never ends: only a reader that stops returns at all.
    reply = b"HTTP/1.1 200 OK\r\n\r\n" + b"x" * (10 * 1024 * 1024)
    async with Receiver(reply, hold=True) as receiver, guarded_client(LOOPBACK, timeout=2) as client:
        status, body = await post_json(client, f"http://127.0.0.1:{receiver.port}/hook", b"{}", {},
                                       max_response_bytes=1000)
    assert status == 200 and body == b"x" * 1000


async def test_silent_receiver_is_cut_off_by_the_timeout():
    async with Receiver(b"", hold=True) as receiver, guarded_client(LOOPBACK, timeout=0.5) as client:
        started = asyncio.get_running_loop().time()
        with pytest.raises(httpx.ReadTimeout):
            await post_json(client, f"http://127.0.0.1:{receiver.port}/hook", b"{}", {})
    assert asyncio.get_running_loop().time() - started < 3
    assert len(receiver.requests) == 1


async def test_dns_rebinding_is_refused_at_connect_time():
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])

    async def rebinding(host, port):
        return next(answers)

    async with Receiver() as receiver:
        url = f"http://rebind.test:{receiver.port}/hook"
        await check_url(url, Allowlist(), resolve=rebinding)  # first answer: public
        async with guarded_client(Allowlist(), resolve=rebinding) as client:
            with pytest.raises(httpx.ConnectError, match="'rebind.test' resolves to 127.0.0.1, a loopback address"):
                await post_json(client, url, b"{}", {})
    assert receiver.connections == 0


async def test_allowlisted_name_connects_to_the_pinned_address():
    resolve = resolver({"receiver.test": ["127.0.0.1"]})
    async with Receiver() as receiver, guarded_client(Allowlist.parse("receiver.test"), resolve=resolve) as client:
        status, _ = await post_json(client, f"http://receiver.test:{receiver.port}/hook", b"{}", {})
    assert status == 200
    assert f"\r\nhost: receiver.test:{receiver.port}\r\n" in receiver.requests[0][0].lower()


class RecordingBackend(httpcore.AsyncNetworkBackend):
    """Records what the guard asks of the real backend; the TLS handshake ends the attempt."""

    def __init__(self):
        self.calls = []

    async def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        self.calls.append(("connect", host, port))
        backend = self

        class Stream(httpcore.AsyncNetworkStream):
            async def start_tls(self, ssl_context, server_hostname=None, timeout=None):
                backend.calls.append(("tls", server_hostname))
                raise httpcore.ConnectError("stop here")

            async def aclose(self):
                pass

        return Stream()


async def test_connect_pins_the_ip_and_tls_verifies_the_name():
    recording = RecordingBackend()
    guard = GuardedBackend(Allowlist(), resolve=resolver({"hooks.test": ["93.184.216.34", "2606:4700:4700::1111"]}),
                           inner=recording)
    async with httpcore.AsyncConnectionPool(network_backend=guard) as pool:
        with pytest.raises(httpcore.ConnectError, match="stop here"):
            await pool.request("POST", "https://hooks.test/hook")
    assert recording.calls == [("connect", "93.184.216.34", 443), ("tls", "hooks.test")]


async def test_unix_sockets_are_refused():
    with pytest.raises(httpcore.ConnectError, match="unix sockets are refused"):
        await GuardedBackend(LOOPBACK).connect_unix_socket("/var/run/docker.sock")


@pytest.mark.parametrize("code", [301, 302, 303, 307, 308])
async def test_a_redirect_is_refused_by_the_transport_even_when_a_request_asks_to_follow(code):
    async with Receiver() as target:
        reply = (f"HTTP/1.1 {code} Moved\r\nLocation: http://127.0.0.1:{target.port}/elsewhere\r\n"
                 "Content-Length: 0\r\n\r\n").encode()
        async with Receiver(reply) as receiver, guarded_client(LOOPBACK) as client:
            answer = await client.post(f"http://127.0.0.1:{receiver.port}/hook", content=b"{}", follow_redirects=True)
    assert answer.status_code == code and "location" not in answer.headers
    assert answer.json()["error"] == {"type": "redirect_refused", "message": (
        f"127.0.0.1 answered {code} (a redirect to http://127.0.0.1:{target.port}); redirects are not followed")}
    assert receiver.connections == 1 and target.connections == 0


# -- peers: the probe and every call to a `peer/*` deployment go through the guarded client ----

def chat_answer(text: str) -> bytes:
    import json

    body = json.dumps({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}],
                       "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}}).encode()
    return b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)


class PeerStore:
    """What PeerSync reads and writes of the store, for one live peer."""

    def __init__(self, base_url: str):
        self.record = {"peer_id": "ed25519:00000000000000aa", "base_url": base_url, "model": "m", "payee": "p",
                       "api_key": None, "max_concurrency": 2, "price_per_token": None, "registered_at": 1.0}
        self.reputation = []

    def clock(self):
        return 100.0

    async def all_peers(self):
        return [{"record": self.record, "last_seen": 100.0}]

    async def add_reputation(self, change):
        self.reputation.append(change)


REFUSED = "redirects are not followed"


def peer_sync(store, urls, **kw):
    import litellm

    from chorus_litellm.market import peers
    from chorus_litellm.market.sync import PeerSync

    router = litellm.Router(model_list=[])
    return PeerSync(store, lambda: router, peers.Policy(admission="open"), urls, **kw), router


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "streamed"])
@pytest.mark.parametrize("code", [307, 303, 308])
async def test_a_peer_that_redirects_its_calls_is_a_failed_call_never_followed(code, stream):
    """The peer answers its probe, then redirects every call to a loopback canary the
    allowlist (127.0.0.2 only) refuses: LiteLLM's own client would follow it."""
    import litellm

    async with Receiver(chat_answer("CANARY")) as canary:
        def redirect(head, body):
            if b"Say OK." in body:
                return chat_answer("OK")
            path = head.split(" ")[1]
            return (f"HTTP/1.1 {code} Moved\r\nLocation: http://127.0.0.1:{canary.port}{path}\r\n"
                    "Content-Length: 0\r\n\r\n").encode()

        async with Receiver(redirect, host="127.0.0.2") as peer:
            store = PeerStore(f"http://127.0.0.2:{peer.port}/v1")
            sync, router = peer_sync(store, Allowlist.parse("127.0.0.2/32"))
            try:
                assert (await sync.sync_once())["added"] == [store.record["peer_id"]]  # the probe answered
                with pytest.raises(Exception, match="redirects are not followed") as err:
                    answer = await router.acompletion(model=f"peer/{store.record['peer_id']}", num_retries=0,
                                                      messages=[{"role": "user", "content": "hi"}], stream=stream)
                    if stream:
                        async for _ in answer:
                            pass
                assert getattr(err.value, "status_code", None) == code
                # LiteLLM's health check calls the deployment's params outside the Router: guarded too
                [dep] = router.get_model_list()
                health = await litellm.ahealth_check(dict(dep["litellm_params"]), mode="chat", prompt="hi")
                assert REFUSED in str(health.get("error")), health
            finally:
                await sync.aclose()
    assert len(peer.requests) == 3 and canary.connections == 0


async def test_a_peer_whose_probe_redirects_is_kept_out():
    async with Receiver(chat_answer("CANARY")) as canary:
        reply = (f"HTTP/1.1 307 Moved\r\nLocation: http://127.0.0.1:{canary.port}/v1/chat/completions\r\n"
                 "Content-Length: 0\r\n\r\n").encode()
        async with Receiver(reply, host="127.0.0.2") as peer:
            store = PeerStore(f"http://127.0.0.2:{peer.port}/v1")
            sync, router = peer_sync(store, Allowlist.parse("127.0.0.2/32"))
            try:
                assert (await sync.sync_once())["added"] == []
            finally:
                await sync.aclose()
    assert store.reputation == [{store.record["peer_id"]: {"runs": 1, "failures": 1}}]
    assert peer.connections == 1 and canary.connections == 0 and router.get_model_list() == []


async def test_a_peer_name_rebinding_to_loopback_after_its_check_is_refused_at_connect(monkeypatch):
    """The system resolver answers a public address for the sync's check, then 127.0.0.1:
    every resolver in the process (LiteLLM's too) sees the rebinding."""
    import socket

    real, answers = socket.getaddrinfo, []

    def rebinding(host, port, *args, **kwargs):
        if host != "peer.test":
            return real(host, port, *args, **kwargs)
        answers.append("93.184.216.34" if not answers else "127.0.0.1")
        return real(answers[-1], port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    async with Receiver(chat_answer("CANARY")) as canary:
        store = PeerStore(f"http://peer.test:{canary.port}/v1")
        sync, router = peer_sync(store, Allowlist())
        try:
            assert (await sync.sync_once())["added"] == []
        finally:
            await sync.aclose()
    assert answers[:2] == ["93.184.216.34", "127.0.0.1"] and canary.connections == 0
    assert store.reputation == [{store.record["peer_id"]: {"runs": 1, "failures": 1}}]


async def test_a_call_to_a_peer_deployment_without_a_guarded_client_is_refused():
    """Fail closed: a `peer/*` deployment the guard does not know (added behind PeerSync's back)
    is never called through LiteLLM's own client."""
    import litellm

    from chorus_litellm.market.sync import deployment, install_hook

    install_hook()
    async with Receiver(chat_answer("CANARY")) as canary:
        record = {**PeerStore(f"http://127.0.0.1:{canary.port}/v1").record, "registered_at": 2.0}
        router = litellm.Router(model_list=[deployment(record)])
        with pytest.raises(Exception, match="no guarded client"):
            await router.acompletion(model=f"peer/{record['peer_id']}", num_retries=0,
                                     messages=[{"role": "user", "content": "hi"}])
    assert canary.connections == 0
