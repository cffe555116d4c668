"""`chorus peer`: for people who run a model and join a proxy's pool (docs/peers.md).

    chorus peer keygen [--out chorus-peer-key.json]     the peer's Ed25519 key (its id)
    chorus peer join --proxy URL --pool P --base-url URL --model M --payee X [--key F]
                     [--personas a,b] [--max-concurrency N] [--price-per-token USD]
                     [--api-key-env VAR] [--invite-env VAR]
        registers, heartbeats until stopped, registers again when the proxy forgot it
        (a restart with a fresh store), waits out a proxy that is down, and leaves the
        pool on SIGINT / SIGTERM
    chorus peer earnings --proxy URL [--key F] [--public-key K ...] [--json]
        the receipts that paid this peer, each verified with the proxy's public key

Every request is signed by the key (peers.sign): the proxy knows the peer by it alone.
Timestamps only go up, one second apart at least, so the proxy's replay rule never
refuses this client's own requests. Secrets (the model server's API key, the invite
token) come from environment variables, never from the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from . import peers
from ..settlement.signing import SigningError, key_id, public_key_from, read_key_file, verify, write_key_file

DEFAULT_KEY = "chorus-peer-key.json"
RETRY_FIRST_S, RETRY_MAX_S = 1.0, 30.0  # a proxy that is down: retry after 1, 2, 4 ... 30 s


class Refused(Exception):
    """The proxy said no (4xx): retrying the same request will not help."""


class PeerClient:
    """Signed calls to one proxy as one peer."""

    def __init__(self, proxy: str, seed: bytes, *, transport: httpx.BaseTransport | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        from nacl.signing import SigningKey

        self.proxy, self.seed, self.clock = proxy.rstrip("/"), seed, clock
        self.peer_id = key_id(bytes(SigningKey(seed).verify_key))
        self.http = httpx.Client(base_url=self.proxy, timeout=15, transport=transport, trust_env=False)
        self._last_ts = 0

    def call(self, method: str, path: str, body: dict | None = None, headers: dict | None = None) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        self._last_ts = max(int(self.clock()), self._last_ts + 1)
        signed = peers.sign(self.seed, method, path, self._last_ts, raw)
        return self.http.request(method, path, content=raw,
                                 headers={"Content-Type": "application/json", **signed, **(headers or {})})

    def register(self, offer: dict, invite: str | None = None) -> dict:
        reply = self.call("POST", "/chorus/v1/peers", offer, {peers.INVITE: invite} if invite else None)
        if reply.status_code != 201:
            raise Refused(f"registration refused ({reply.status_code}): {_detail(reply)}")
        return reply.json()

    def heartbeat(self) -> str:
        """'live', or 'unknown' when the proxy no longer knows this peer (register again)."""
        reply = self.call("POST", f"/chorus/v1/peers/{self.peer_id}/heartbeat")
        if reply.status_code == 404:
            return "unknown"
        if reply.status_code != 200:
            raise Refused(f"heartbeat refused ({reply.status_code}): {_detail(reply)}")
        return reply.json()["state"]

    def leave(self) -> bool:
        return self.call("DELETE", f"/chorus/v1/peers/{self.peer_id}").status_code in (204, 404)

    def earnings(self, limit: int = 100) -> dict:
        reply = self.call("GET", f"/chorus/v1/peers/{self.peer_id}/earnings?limit={limit}")
        if reply.status_code != 200:
            raise Refused(f"earnings refused ({reply.status_code}): {_detail(reply)}")
        return reply.json()


def _detail(reply: httpx.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:300]
    detail = body.get("detail", body) if isinstance(body, dict) else body
    return detail if isinstance(detail, str) else json.dumps(detail)


def _say(text: str) -> None:
    print(f"chorus peer: {text}", flush=True)


def join(client: PeerClient, offer: dict, invite: str | None, stop: threading.Event, *,
         heartbeat_s: float | None = None) -> int:
    """Register, then beat until `stop`; 0 after leaving, 2 when refused."""
    registered, delay, every = False, RETRY_FIRST_S, heartbeat_s or peers.HEARTBEAT_S
    while not stop.is_set():
        try:
            if not registered:
                joined = client.register(offer, invite)
                registered, every = True, heartbeat_s or float(joined.get("heartbeat_s") or peers.HEARTBEAT_S)
                _say(f"{client.peer_id} joined pool {joined['pool']!r} on {client.proxy} as {offer['model']} "
                     f"(paid to {offer['payee']}); heartbeat every {every:g} s")
            elif client.heartbeat() == "unknown":
                _say("the proxy no longer knows this peer (restarted?); registering again")
                registered = False
                continue
            delay = RETRY_FIRST_S
            stop.wait(every)
        except Refused as exc:
            _say(str(exc))
            return 2
        except httpx.HTTPError as exc:
            _say(f"proxy unreachable ({type(exc).__name__}); retrying in {delay:g} s")
            stop.wait(delay)
            delay = min(delay * 2, RETRY_MAX_S)
    if registered:
        try:
            left = client.leave()
        except httpx.HTTPError as exc:
            _say(f"could not leave the pool ({type(exc).__name__}); the proxy marks this peer away in a minute")
            return 0
        _say("left the pool" if left else "leaving was refused; the proxy marks this peer away in a minute")
    return 0


def _stop_event() -> threading.Event:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    return stop


def show_earnings(client: PeerClient, pinned: list[bytes], as_json: bool) -> int:
    found = client.earnings()
    keys = pinned or [public_key_from(k["public_key"]) for k in found.get("keys", [])]
    rows, bad = [], 0
    for receipt in found["receipts"]:
        try:
            verify(receipt, keys)
            ok = "verified"
        except SigningError as exc:
            ok, bad = f"INVALID ({exc})", bad + 1
        p = receipt["payload"]
        mine = sum(c["amount"] for c in p["contributions"] if c.get("peer_id") == client.peer_id)
        rows.append({"receipt_id": p["receipt_id"], "issued_at": p["issued_at"], "amount": mine,
                     "currency": p["bounty"]["currency"], "signature": ok})
    if as_json:
        print(json.dumps({"peer_id": client.peer_id, "totals": found["totals"], "receipts": rows}, indent=2))
        return 1 if bad else 0
    print(f"peer {client.peer_id}: {len(rows)} receipt(s)"
          + ("" if pinned else " (checked with the keys the proxy sent; pin one with --public-key)"))
    for r in rows:
        print(f"  {r['issued_at']}  {r['receipt_id']}  {r['amount']:>10d} {r['currency']}  {r['signature']}")
    for t in found["totals"]:
        print(f"total {t['currency']}: {t['amount']} (minor units) over {t['receipts']} receipt(s)")
    return 1 if bad else 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("peer", help="join a proxy's pool as a peer hosting a model")
    cmds = p.add_subparsers(dest="peer_command", required=True)
    keygen = cmds.add_parser("keygen", help="make the peer's Ed25519 key")
    keygen.add_argument("--out", default=DEFAULT_KEY, metavar="FILE",
                        help=f"key file to write (mode 600), never overwritten; prints the peer id to give an "
                             f"operator (default: {DEFAULT_KEY})")
    j = cmds.add_parser("join", help="register, heartbeat until stopped, leave on SIGINT/SIGTERM",
                        description="Offer your model server to a pool of a chorus proxy: register, heartbeat "
                                    "until stopped, leave on SIGINT/SIGTERM. The proxy calls --base-url itself, "
                                    "so it must reach it (docs/peers.md, 'Joining someone else's pool').")
    j.add_argument("--proxy", required=True, metavar="URL", help="the proxy's URL, e.g. http://127.0.0.1:4000")
    j.add_argument("--pool", required=True,
                   help="the pool to join, as the operator named it (a profile's panel.pool, e.g. demo or gpu)")
    j.add_argument("--base-url", required=True, metavar="URL",
                   help="your OpenAI-compatible server as the proxy reaches it (not 127.0.0.1 unless the proxy runs "
                        "on this machine), e.g. http://gpu.example.net:11434/v1")
    j.add_argument("--model", required=True, help="the model name your server serves, e.g. llama3.1:8b")
    j.add_argument("--payee", required=True, help="who is paid for this peer's answers (named on the receipts)")
    j.add_argument("--key", default=DEFAULT_KEY, metavar="FILE",
                   help=f"this peer's key from `chorus peer keygen`: its id is the peer's identity (default: "
                        f"{DEFAULT_KEY})")
    j.add_argument("--personas", default="", metavar="A,B", help="comma-separated personas you accept (default: any)")
    j.add_argument("--max-concurrency", type=int, default=2, metavar="N",
                   help="calls each proxy worker sends your server at once (LiteLLM's max_parallel_requests); "
                        "a run seats you at most this many times (default: 2)")
    j.add_argument("--price-per-token", type=float, default=None, metavar="USD",
                   help="USD per token, input and output alike: the proxy counts it as the call's cost and "
                        "`select: cheapest` sorts by it; what you are paid is the bounty share (default: free)")
    j.add_argument("--api-key-env", metavar="VAR",
                   help="environment variable holding your server's API key, if it needs one")
    j.add_argument("--invite-env", default="CHORUS_INVITE", metavar="VAR",
                   help="environment variable holding the pool's invite token (default CHORUS_INVITE)")
    j.add_argument("--heartbeat-s", type=float, default=None, help=argparse.SUPPRESS)
    e = cmds.add_parser("earnings", help="the receipts that paid this peer, verified")
    e.add_argument("--proxy", required=True, metavar="URL", help="the proxy's URL, e.g. http://127.0.0.1:4000")
    e.add_argument("--key", default=DEFAULT_KEY, metavar="FILE",
                   help=f"the key this peer joined with (default: {DEFAULT_KEY})")
    e.add_argument("--public-key", action="append", default=[],
                   help="the proxy's receipt key (base64 or a file) to verify with; repeat for rotated keys "
                        "(default: the keys the proxy sends with the receipts)")
    e.add_argument("--json", action="store_true", help="print the receipts and totals as JSON")


def run(args: argparse.Namespace) -> int:
    if args.peer_command == "keygen":
        path = Path(args.out)
        if path.exists():
            print(f"chorus peer: {path} exists; not overwriting a peer key", file=sys.stderr)
            return 1
        key = write_key_file(path)
        print(f"wrote {path} (mode 600). peer id {key['key_id']}")
        return 0
    try:
        client = PeerClient(args.proxy, read_key_file(Path(args.key)))
        if args.peer_command == "earnings":
            return show_earnings(client, [public_key_from(k) for k in args.public_key], args.json)
    except (SigningError, Refused, httpx.HTTPError) as exc:
        print(f"chorus peer: {exc}", file=sys.stderr)
        return 2
    offer = {"pool": args.pool, "base_url": args.base_url, "model": args.model, "payee": args.payee,
             "personas": [p.strip() for p in args.personas.split(",") if p.strip()],
             "max_concurrency": args.max_concurrency, "price_per_token": args.price_per_token,
             "api_key": os.environ.get(args.api_key_env) if args.api_key_env else None}
    return join(client, offer, os.environ.get(args.invite_env) or None, _stop_event(), heartbeat_s=args.heartbeat_s)
