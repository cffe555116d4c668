"""The SSRF guard: every outbound request to a URL a user gave (webhook `callback_url`s, peer
base URLs) goes through here, so a caller cannot make the proxy reach its own network.

The rule, applied twice with the same code: every address the host resolves to must be
admitted, either by the operator's `Allowlist` (a hostname or an IP network) or because
`refusal(ip)` finds it a public unicast address. One refused address refuses the URL.
- Request time: `check_url()` raises `UnsafeURL` (a ValueError; the caller answers 400
  before any model is called). Only http/https, a host, no credentials.
- Connect time: `guarded_client()`'s network backend resolves the name again, checks every
  address, and connects to the first one by IP, so a name that resolves differently later
  (DNS rebinding) is refused there too (`httpx.ConnectError` naming the reason). TLS still
  verifies the URL's hostname. Redirects are never followed: the transport itself turns a 3xx
  with a `Location` into the same status without it and with a JSON error naming the refusal
  (`RefuseRedirects`), so neither a client's `follow_redirects` nor a per-request override can
  follow one. Proxy env vars, netrc and unix sockets are never used.
- One client for every such connection: webhooks (`post_json`) and each call to a peer (an
  `openai.AsyncOpenAI` over it, market/sync.py).
- `post_json()` reads at most `max_response_bytes` of the answer.

Boundary: this module knows addresses, names and sockets, not webhooks or peers: what to send,
when, and what a refusal means to the run belong to the caller. Resolution is injectable
(`resolve`, an `async (host, port) -> list[str]`), so tests need no DNS.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
from collections.abc import Awaitable, Callable, Iterable

import httpcore
import httpx

from .allowlist import Allowlist, IPAddress

Resolve = Callable[[str, int], Awaitable[list[str]]]

DEFAULT_PORTS = {"http": 80, "https": 443}
METADATA = frozenset(map(ipaddress.ip_address, ("169.254.169.254", "169.254.170.2", "fd00:ec2::254",
                                                 "100.100.100.200")))
# Named before `is_global` has the last word, so a refusal says which range it hit.
NAMED_RANGES = tuple((ipaddress.ip_network(net), reason) for net, reason in (
    ("10.0.0.0/8", "a private address"), ("172.16.0.0/12", "a private address"),
    ("192.168.0.0/16", "a private address"), ("fc00::/7", "a private address"),
    ("100.64.0.0/10", "a shared (CGNAT) address"), ("198.18.0.0/15", "a benchmarking address"),
    ("192.0.2.0/24", "a documentation address"), ("198.51.100.0/24", "a documentation address"),
    ("203.0.113.0/24", "a documentation address"), ("2001:db8::/32", "a documentation address"),
    ("255.255.255.255/32", "the broadcast address"),
))
NAT64 = ipaddress.ip_network("64:ff9b::/96")


class UnsafeURL(ValueError):
    """A URL the proxy will not request; the message names the reason in plain words."""


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[str, tuple[ipaddress.IPv4Address, ...]] | None:
    """The IPv4 addresses an IPv6 form carries: mapped, compatible (::a.b.c.d), NAT64, 6to4, Teredo."""
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.ipv4_mapped:
        return "IPv4-mapped", (ip.ipv4_mapped,)
    if int(ip) >> 32 == 0:
        return "IPv4-compatible", (low32,)
    if ip in NAT64:
        return "NAT64", (low32,)
    if ip.sixtofour:
        return "6to4", (ip.sixtofour,)
    if ip.teredo:
        return "Teredo", ip.teredo
    return None


def refusal(ip: IPAddress) -> str | None:
    """Why `ip` is not a public unicast destination (a phrase such as 'a loopback address'), or
    None when it is. An IPv6 form that embeds IPv4 is judged by the IPv4 it embeds."""
    if ip in METADATA:
        return "a cloud metadata address"
    if ip.is_unspecified:
        return "an unspecified address"
    if ip.is_loopback:
        return "a loopback address"
    embedded = _embedded_ipv4(ip) if isinstance(ip, ipaddress.IPv6Address) else None
    if embedded:
        kind, addresses = embedded
        return next((f"{kind} {v4}, {why}" for v4 in addresses if (why := refusal(v4))), None)
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_multicast:
        return "a multicast address"
    for net, reason in NAMED_RANGES:
        if ip in net:  # False across IP versions
            return reason
    if ip.is_reserved:
        return "a reserved address"
    return None if ip.is_global else "not globally routable"


async def system_resolve(host: str, port: int) -> list[str]:
    """The system resolver's addresses for `host`, in its order: `socket.getaddrinfo` in a
    thread, whatever the event loop (the proxy runs uvloop, whose `loop.getaddrinfo` is
    libuv's own call of the same C function, out of reach of anything that wraps Python's
    socket module: tests/rebind/sitecustomize.py, a process-wide resolver hook)."""
    infos = await asyncio.to_thread(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def admitted_addresses(host: str, port: int, allowlist: Allowlist, resolve: Resolve,
                             what: str = "URL") -> list[IPAddress]:
    """Every address of `host` (itself when it is an IP literal), each admitted; else UnsafeURL."""
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            addresses = list(dict.fromkeys(map(ipaddress.ip_address, await resolve(host, port))))
        except (OSError, UnicodeError) as exc:
            raise UnsafeURL(f"{what} host {host!r} does not resolve") from exc
    if not addresses:
        raise UnsafeURL(f"{what} host {host!r} does not resolve")
    for ip in addresses:
        if not allowlist.admits(host, ip) and (why := refusal(ip)):
            raise UnsafeURL(f"{what} host {host!r} resolves to {ip}, {why}")
    return addresses


async def check_url(url: str, allowlist: Allowlist, *, resolve: Resolve | None = None, what: str = "URL") -> None:
    """Raise UnsafeURL unless `url` is http(s), has a host and no credentials, and every address
    its host resolves to is admitted. `what` names the URL in messages (e.g. 'callback_url')."""
    try:
        parsed = httpx.URL(url)  # httpx's own parser: the host checked is the host requested
    except httpx.InvalidURL as exc:
        raise UnsafeURL(f"{what} is not a valid URL ({exc})") from exc
    if parsed.scheme not in DEFAULT_PORTS:
        raise UnsafeURL(f"only http and https URLs are allowed, not {parsed.scheme!r}")
    if not parsed.raw_host:
        raise UnsafeURL(f"{what} has no host")
    if parsed.userinfo:
        raise UnsafeURL("URLs with credentials are refused")
    host = parsed.raw_host.decode("ascii")
    await admitted_addresses(host, parsed.port or DEFAULT_PORTS[parsed.scheme], allowlist, resolve or system_resolve,
                             what)


class GuardedBackend(httpcore.AsyncNetworkBackend):
    """httpcore's network backend, but every TCP connect resolves the host itself, checks every
    address with `admitted_addresses`, and hands the inner backend the first one as an IP (the
    name is never resolved again). TLS is unaffected: httpcore's connection passes the URL
    origin's host as `server_hostname` to `start_tls`. Unix sockets are refused."""

    def __init__(self, allowlist: Allowlist, *, resolve: Resolve | None = None,
                 inner: httpcore.AsyncNetworkBackend | None = None) -> None:
        self._allowlist = allowlist
        self._resolve = resolve or system_resolve
        self._inner = inner or httpcore.AnyIOBackend()

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                          ) -> httpcore.AsyncNetworkStream:
        try:
            async with asyncio.timeout(timeout):  # resolution counts against the connect timeout
                addresses = await admitted_addresses(host, port, self._allowlist, self._resolve)
        except UnsafeURL as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
        return await self._inner.connect_tcp(str(addresses[0]), port, timeout=timeout, local_address=local_address,
                                             socket_options=socket_options)

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError(f"unix sockets are refused ({path!r})")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class RefuseRedirects(httpx.AsyncBaseTransport):
    """A transport that answers a redirect itself: a 3xx with a `Location` becomes the same
    status without one and a JSON error body (`{"error": {"message", "type": "redirect_refused"}}`,
    the OpenAI error shape, so an SDK over it reports the reason), after the original answer is
    closed. With no `Location` there is nothing a client could follow."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self._inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        location = response.headers.get("location")
        if not (300 <= response.status_code < 400 and location is not None):
            return response
        await response.aclose()
        try:
            target = request.url.join(location)
            where = f"{target.scheme}://{target.netloc.decode('ascii', 'replace')}"
        except (httpx.InvalidURL, UnicodeError):
            where = "an invalid URL"
        message = (f"{request.url.host} answered {response.status_code} (a redirect to {where}); "
                   "redirects are not followed")
        body = json.dumps({"error": {"message": message, "type": "redirect_refused"}}).encode()
        return httpx.Response(response.status_code, request=request, stream=httpx.ByteStream(body),  # unread
                              headers={"content-type": "application/json", "content-length": str(len(body))})

    async def aclose(self) -> None:
        await self._inner.aclose()


def guarded_client(allowlist: Allowlist, *, timeout: float = 5.0, resolve: Resolve | None = None) -> httpx.AsyncClient:
    """An AsyncClient whose every connection goes through `GuardedBackend`: no redirects (not by
    the client, and refused by the transport), no env proxies or netrc, `timeout` seconds for
    each of connect, read, write and pool (a default: a request may set its own)."""
    transport = httpx.AsyncHTTPTransport(trust_env=False)
    # httpx 0.28 takes no network backend, so its pool is replaced by an equal one that has ours.
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=httpx.create_ssl_context(), max_connections=100, max_keepalive_connections=20,
        keepalive_expiry=5.0, network_backend=GuardedBackend(allowlist, resolve=resolve))
    return httpx.AsyncClient(transport=RefuseRedirects(transport), follow_redirects=False, trust_env=False,
                             timeout=httpx.Timeout(timeout))


async def post_json(client: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str], *,
                    max_response_bytes: int = 65536) -> tuple[int, bytes]:
    """POST `body` as JSON; the status and at most `max_response_bytes` of the raw answer (asked
    uncompressed, so no decompression can grow it). A redirect's status is returned, not followed."""
    merged = httpx.Headers({"content-type": "application/json"})
    merged.update(headers)  # case-insensitive: the caller's content-type wins
    merged["accept-encoding"] = "identity"
    chunks, size = [], 0
    async with client.stream("POST", url, content=body, headers=merged) as response:
        async for chunk in response.aiter_raw():
            chunks.append(chunk)
            size += len(chunk)
            if size >= max_response_bytes:
                break
    return response.status_code, b"".join(chunks)[:max_response_bytes]
