"""`callback_url` webhooks: after a run, its summary is POSTed to the caller's URL, signed.

Boundary: the I/O around one rule set. A request's `callback_url` is checked before any
model is called (`check`: observe/netguard.py's SSRF rule, the operator's
`CHORUS_WEBHOOK_ALLOWLIST`; a refusal is a 400 naming the reason). When the run ends,
`enqueue` puts the summary in the store's durable queue (storage/store.py) before the
response completes, so a proxy restart loses nothing; every worker runs `deliver_due`
in the background, which claims due jobs, POSTs them through the guarded client (the
address is checked again at connect time; no redirects; short timeouts; a bounded read
of the answer), and retries failures with exponential backoff and jitter up to
`max_attempts`, then parks the job as `dead`.

Every delivery carries, per attempt:

    Content-Type: application/json
    X-Chorus-Event: run.done | run.failed
    X-Chorus-Webhook-Id: <job id>            (also Idempotency-Key: the same on every retry)
    X-Chorus-Signature: t=<unix seconds>,key_id=<ed25519:...>,ed25519=<base64 signature>

The signature covers `<job id>.<t>.<body>` with the receipts' Ed25519 key (public keys at
`/chorus/v1/keys`); `verify()` is the receiver's check, refusing a timestamp older than
`tolerance_s` (replay). A 2xx answer is delivered; 410 Gone stops at once; anything else
(and a connection failure) is retried.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..core.errors import RequestError
from ..core.ports import Job, WebhookQueue
from ..core.background import stop
from .netguard import Allowlist, Resolve, UnsafeURL, check_url, guarded_client, post_json
from ..settlement.signing import Signer, SigningError, verify_bytes

log = logging.getLogger("chorus_litellm")

MAX_BODY = 256 * 1024  # a summary larger than this is sent without its `chorus` details
SIGNATURE, EVENT, WEBHOOK_ID = "X-Chorus-Signature", "X-Chorus-Event", "X-Chorus-Webhook-Id"


def job_id(owner: str | None, debate_id: str, event: str) -> str:
    """One job per run and event, per owner: the idempotency key the receiver sees."""
    return "wh_" + hashlib.sha256(f"{len(owner or '')}:{owner or ''}:{debate_id}:{event}".encode()).hexdigest()[:32]


def signed_message(webhook_id: str, timestamp: int, body: bytes) -> bytes:
    return f"{webhook_id}.{timestamp}.".encode() + body


def signature_header(signer: Signer, webhook_id: str, timestamp: int, body: bytes) -> str:
    sig = signer.sign_bytes(signed_message(webhook_id, timestamp, body))
    return f"t={timestamp},key_id={signer.key_id},ed25519={sig}"


def verify(body: bytes, headers: Mapping[str, str], public_keys: list[bytes], *, now: float | None = None,
           tolerance_s: float = 300.0) -> str:
    """The receiver's check: the key id that signed this delivery, else SigningError
    (missing or malformed headers, a timestamp outside `tolerance_s`, a bad signature)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        fields = dict(part.split("=", 1) for part in lower[SIGNATURE.lower()].split(","))
        timestamp, webhook_id = int(fields["t"]), lower[WEBHOOK_ID.lower()]
        claimed, signature = fields["key_id"], fields["ed25519"]
    except (KeyError, ValueError):
        raise SigningError(f"not a signed chorus webhook ({SIGNATURE} and {WEBHOOK_ID} required)") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise SigningError(f"webhook timestamp {timestamp} is outside the {tolerance_s:.0f} s window (a replay?)")
    return verify_bytes(signed_message(webhook_id, timestamp, body), signature, claimed, public_keys)


def backoff(attempts: int, base_s: float, max_s: float, rng: random.Random) -> float:
    """Seconds before retry `attempts` + 1: doubling from `base_s`, capped, +-20% jitter."""
    return min(max_s, base_s * 2 ** (attempts - 1)) * rng.uniform(0.8, 1.2)


def body_of(payload: dict) -> bytes:
    body = json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()
    if len(body) > MAX_BODY and "chorus" in payload:
        chorus = payload["chorus"] or {}
        slim = {"id": chorus.get("id"), "profile": chorus.get("profile"), "cost": chorus.get("cost")}
        body = json.dumps({**payload, "chorus": slim, "truncated": True}, separators=(",", ":"),
                          sort_keys=True).encode()
    return body


class Webhooks:
    def __init__(self, store: WebhookQueue, signer: Signer | None, allowlist: Allowlist, *, timeout_s: float = 5.0,
                 max_attempts: int = 8, base_delay_s: float = 2.0, max_delay_s: float = 600.0, poll_s: float = 1.0,
                 batch: int = 16, resolve: Resolve | None = None, rng: random.Random | None = None) -> None:
        self.store, self.signer, self.allowlist = store, signer, allowlist
        self.timeout_s, self.max_attempts, self.poll_s, self.batch = timeout_s, max_attempts, poll_s, batch
        self.base_delay_s, self.max_delay_s = base_delay_s, max_delay_s
        self.resolve, self.rng = resolve, rng or random.Random()
        self.clock: Callable[[], float] = store.clock  # due times live in the store: one clock
        self._worker: asyncio.Task | None = None
        self._wake = asyncio.Event()

    async def check(self, url: str) -> None:
        """Refuse a callback_url before any model is called (400 naming the reason)."""
        if self.signer is None:
            raise RequestError("webhooks are signed, and this proxy has no signing key (CHORUS_SIGNING_KEY_FILE, "
                               "made by `chorus keygen`)", param="callback_url")
        try:
            await check_url(url, self.allowlist, resolve=self.resolve, what="callback_url")
        except UnsafeURL as exc:
            raise RequestError(f"callback_url refused: {exc}", param="callback_url") from None

    async def enqueue(self, url: str, owner: str | None, debate_id: str, event: str, payload: dict) -> str | None:
        """Queue one delivery (durable before this returns); its job id, None if nothing took it."""
        jid = job_id(owner, debate_id, event)
        job = {"url": url, "event": event, "body": body_of(payload).decode(), "created": self.clock()}
        if not await self.store.enqueue_webhook(jid, job):
            return None
        self._wake.set()
        return jid

    # -- delivery ------------------------------------------------------------------------
    def start(self) -> None:
        """Deliver due jobs in the background on this event loop (idempotent)."""
        if self._worker is None or self._worker.done():
            self._worker = asyncio.get_running_loop().create_task(self._deliver_forever(), name="chorus-webhooks")

    async def _deliver_forever(self) -> None:
        async with guarded_client(self.allowlist, timeout=self.timeout_s, resolve=self.resolve) as client:
            while True:
                try:
                    if await self.deliver_due(client) == self.batch:
                        continue  # more may be due
                except Exception:
                    log.exception("chorus: webhook delivery pass failed")
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_s)

    async def deliver_due(self, client: Any) -> int:
        """One pass: claim due jobs, send them concurrently, record each outcome."""
        jobs = await self.store.claim_webhooks(self.batch, lease_s=self.timeout_s * 4 + 10)
        await asyncio.gather(*(self._attempt(client, job) for job in jobs))
        return len(jobs)

    async def _attempt(self, client: Any, job: Job) -> None:
        attempts = job.attempts + 1
        error = await self._send(client, job)
        if error is None:
            await self.store.finish_webhook(job.id)
        elif attempts >= self.max_attempts or error.startswith("HTTP 410"):
            log.warning("chorus: webhook %s gave up after %d attempts: %s", job.id, attempts, error)
            await self.store.finish_webhook(job.id, attempts=attempts, error=error)
        else:
            due = self.clock() + backoff(attempts, self.base_delay_s, self.max_delay_s, self.rng)
            await self.store.finish_webhook(job.id, due=due, attempts=attempts, error=error)

    async def _send(self, client: Any, job: Job) -> str | None:
        """None when delivered, else why not."""
        if self.signer is None:
            return "no signing key on this proxy"
        body, now = job.job["body"].encode(), int(self.clock())
        headers = {"Content-Type": "application/json", "User-Agent": "chorus-litellm-webhooks",
                   EVENT: job.job["event"], WEBHOOK_ID: job.id, "Idempotency-Key": job.id,
                   SIGNATURE: signature_header(self.signer, job.id, now, body)}
        try:
            status, _answer = await post_json(client, job.job["url"], body, headers)
        except Exception as exc:  # noqa: BLE001 - any transport failure is a retry
            return f"{type(exc).__name__}: {exc}"[:500]
        return None if 200 <= status < 300 else f"HTTP {status}"

    async def aclose(self) -> None:
        await stop(self._worker)
        self._worker = None
