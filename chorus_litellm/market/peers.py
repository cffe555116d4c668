"""Peers of the marketplace: who they are, how they prove it, who may join, who is live.

Pure rules, no I/O (the store, the routes and the network checks are adapters).

Identity: a peer is an Ed25519 key; its id is the key id (`ed25519:` + 16 hex digits of
SHA-256 over the public key, as for receipts), so a receipt naming a peer id names a key.

Signed requests: every peer request (register, heartbeat, leave, earnings) carries

    X-Chorus-Peer-Key: <base64 public key>
    X-Chorus-Peer-Signature: t=<unix seconds>,ed25519=<base64 signature>

over the bytes `<METHOD> <path>\\n<t>\\n<body>` (the path with its `?query`, if any). A
request is refused when unsigned, badly signed, when `t` is more than `window_s` from the
proxy's clock, or when `t` is not later than the last request the proxy accepted from
that peer (so a captured request cannot be replayed, even inside the window, nor after
the peer left: the store keeps its last `t` for the window; the read-only earnings
listing has only the window).

Admission (`CHORUS_PEER_ADMISSION`): `closed` (the default: no peers), `open`,
`allowlist` (only the key ids in `CHORUS_PEER_KEYS`) or `invite` (a per-pool token from
`CHORUS_PEER_INVITES`, `pool=token,...`, sent as `X-Chorus-Invite`).

Health: a peer is `live` while its last heartbeat is younger than `away_after_s`, else
`away` (not drawn into panels); peers are asked to beat every `HEARTBEAT_S`.
"""

from __future__ import annotations

import base64
import hmac
import re
from dataclasses import dataclass
from typing import Literal

from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ..core.errors import RequestError
from ..settlement.keys import key_id

HEARTBEAT_S = 20.0
ROUTER_PREFIX = "peer/"  # a live peer's deployment in the Router: `peer/<peer id>`
KEY, SIGNATURE, INVITE = "X-Chorus-Peer-Key", "X-Chorus-Peer-Signature", "X-Chorus-Invite"
POOL = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
Admission = Literal["closed", "open", "allowlist", "invite"]


class PeerError(RequestError):
    """A peer request refused: 401 (identity), 403 (not admitted), 400 (bad body)."""

    def __init__(self, message: str, status: int = 401, param: str | None = None) -> None:
        super().__init__(message, param=param)
        self.status_code = status


class Registration(BaseModel):
    """What a peer offers: the body of `POST /chorus/v1/peers`."""

    # allow_inf_nan=False: an offer's 1e309 parses to inf, and an infinite price is no price.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    pool: str
    base_url: str = Field(min_length=8, max_length=2048)  # OpenAI-compatible, e.g. http://host:11434/v1
    model: str = Field(min_length=1, max_length=200)  # the model name the peer serves there
    payee: str = Field(min_length=1, max_length=200)  # who is paid for its answers
    personas: tuple[str, ...] = ()  # personas it accepts; empty: any
    max_concurrency: int = Field(2, ge=1, le=64)
    price_per_token: float | None = Field(None, ge=0)  # USD, input and output alike; None: free
    api_key: str | None = Field(None, max_length=500)  # the peer server's own credential, if any

    @field_validator("pool")
    @classmethod
    def _pool(cls, pool: str) -> str:
        if not POOL.match(pool):
            raise ValueError("a pool name is 1-63 lowercase letters, digits, '-' or '_'")
        return pool


@dataclass(frozen=True)
class Signed:
    """A verified peer request: who sent it, and when it says it did."""

    peer_id: str
    public_key: bytes
    timestamp: int


@dataclass(frozen=True)
class Policy:
    admission: Admission = "closed"
    keys: frozenset[str] = frozenset()  # allowlist: admitted key ids
    invites: tuple[tuple[str, str], ...] = ()  # (pool, token)
    window_s: float = 300.0
    away_after_s: float = 60.0

    @staticmethod
    def parse_invites(text: str) -> tuple[tuple[str, str], ...]:
        """`pool=token, pool=token` -> pairs; ValueError naming a bad entry."""
        pairs = []
        for n, entry in enumerate(filter(None, (e.strip() for e in text.replace(" ", ",").split(","))), 1):
            pool, sep, token = entry.partition("=")
            if not sep or not POOL.match(pool) or len(token) < 16:  # never echo the token: it is a secret
                raise ValueError(f"invite entry {n} must be pool=token, with a pool name and a token of 16+ "
                                 "characters")
            pairs.append((pool, token))
        return tuple(pairs)


def message(method: str, path: str, timestamp: int, body: bytes) -> bytes:
    return f"{method.upper()} {path}\n{timestamp}\n".encode() + body


def sign(seed: bytes, method: str, path: str, timestamp: int, body: bytes) -> dict[str, str]:
    """The two headers a peer sends (what `chorus peer` does)."""
    from nacl.signing import SigningKey

    key = SigningKey(seed)
    sig = key.sign(message(method, path, timestamp, body)).signature
    return {KEY: base64.b64encode(bytes(key.verify_key)).decode(),
            SIGNATURE: f"t={timestamp},ed25519={base64.b64encode(sig).decode()}"}


def verify(headers: dict[str, str], method: str, path: str, body: bytes, *, now: float, window_s: float) -> Signed:
    """The peer behind a signed request, or PeerError (401) saying why not. (Later than
    the peer's last accepted request is the caller's check: it knows the peer.)"""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        public = base64.b64decode(lower[KEY.lower()], validate=True)
        fields = dict(part.split("=", 1) for part in lower[SIGNATURE.lower()].split(","))
        timestamp, signature = int(fields["t"]), base64.b64decode(fields["ed25519"], validate=True)
    except (KeyError, ValueError):
        raise PeerError(f"peer requests must be signed ({KEY} and {SIGNATURE} headers)") from None
    if len(public) != 32:
        raise PeerError("the peer key must be a 32-byte Ed25519 public key")
    if abs(now - timestamp) > window_s:
        raise PeerError(f"signature timestamp {timestamp} is more than {window_s:.0f} s from the proxy's clock")
    try:
        VerifyKey(public).verify(message(method, path, timestamp, body), signature)
    except BadSignatureError:
        raise PeerError("the signature does not match the request") from None
    return Signed(key_id(public), public, timestamp)


def admit(policy: Policy, peer_id: str, pool: str, invite: str | None) -> None:
    """Raise PeerError (403) unless the operator's policy lets this key join this pool."""
    if policy.admission == "closed":
        raise PeerError("this proxy admits no peers (CHORUS_PEER_ADMISSION=closed)", 403)
    if policy.admission == "allowlist" and peer_id not in policy.keys:
        raise PeerError(f"peer {peer_id} is not on this proxy's allowlist", 403)
    if policy.admission == "invite":
        tokens = [token for p, token in policy.invites if p == pool]
        if not tokens or not any(hmac.compare_digest(invite or "", t) for t in tokens):
            raise PeerError(f"pool {pool!r} needs a valid invite token ({INVITE})", 403)


def model_name(peer_id: str) -> str:
    """The Router model name of a peer's deployment (market/sync.py)."""
    return ROUTER_PREFIX + peer_id


def state(last_seen: float, now: float, away_after_s: float) -> Literal["live", "away"]:
    return "live" if now - last_seen < away_after_s else "away"
