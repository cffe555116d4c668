"""The core's ports: the interfaces the pipeline and the stages call, which adapters implement.

Arrows run one way: adapters (LiteLLM, embeddings, storage) import from here and from the
core's nouns (core/types.py, core/events.py); nothing in the core imports an adapter. Each port has
its test double in `chorus_litellm.testing` (FakeCompleter, HashEmbedder).

- `Completer`: every inner model call (adapters/llm.RouterCompleter: LiteLLM's Router).
  `Wrapper` and `DefaultParams` are completers around completers (the run's `Ledger` is
  one); `OWN_RETRIES` and `worth_retrying` are the retry policy stages share.
- `Embedder`: sentence embeddings, off the event loop (gateway/embeddings.py).
- `Forwarder`: the forward leg, the single model's own response relayed (gateway/forward.py).
- The store, one narrow port per job (storage/store.py implements them all, over SQLite
  or Redis): `Receipts` (receipts and transcripts: settlement/finish.py), `RunClaims` (single
  flight: gateway/runs.py), `RunLog` (the live view's events and runs index:
  observe/live.py, routes), `WebhookQueue` (observe/webhooks.py), `PeerRegistry`
  (the marketplace: peer_routes, peer_sync), `Reputation` (settlement/finish.py, peer_sync)
  and `ProfileRegistry` (profiles created at run time: gateway/profile_routes.py and
  gateway/profiles.py, rules in core/profiles.py).
  `Job` and `Claim` are the values they hand out.
- `ReceiptSigner`: signs a settled run's receipt (adapters/signing.Signer, Ed25519).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from .errors import UpstreamError
from .events import Relay
from .types import Completion, Message


class Completer(Protocol):
    """`stage` and `seat` name the call (the ledger records them; LiteLLM sees them as
    `metadata.tags`); `run` is the run id. Everything else goes to the model."""

    async def complete(
        self, model: str, messages: list[Message], *, timeout: float, stage: str = "", seat: str = "",
        **params: Any,
    ) -> Completion:
        """One call; returns the whole answer or raises UpstreamError."""

    def stream(
        self, model: str, messages: list[Message], *, timeout: float, stage: str = "", seat: str = "",
        **params: Any,
    ) -> AsyncGenerator[str | Completion, None]:
        """Yields text deltas as they arrive, then one final Completion (usage, cost).
        `timeout` bounds the time spent waiting for the model, never the consumer."""

    def estimate(self, model: str, messages: list[Message], text: str) -> Completion:
        """Usage and cost of a call that never reported its own (cut off or cancelled):
        the prompt plus `text`, counted with the model's tokenizer and priced."""

    def price(self, model: str, prompt: int, completion: int) -> float:
        """USD for a call to `model` of `prompt` and `completion` tokens (0 when unpriced)."""

    def max_output_tokens(self, model: str) -> int | None:
        """The most tokens `model` may write in one answer, if known."""

    def supports_web_search(self, model: str) -> bool:
        """Whether LiteLLM's `web_search_options` may be sent to `model`."""

    def supports_json_mode(self, model: str) -> bool:
        """Whether `response_format={"type": "json_object"}` may be sent to `model`."""

    def supports_response_schema(self, model: str) -> bool:
        """Whether `response_format={"type": "json_schema", ...}` may be sent to `model`."""


# The params of a call whose stage retries itself (gateway/llm.py's docstring): the
# Router must not retry it too.
OWN_RETRIES: dict[str, Any] = {"num_retries": 0}


def worth_retrying(exc: UpstreamError) -> bool:
    """Worth one more try: a timeout, a dropped connection, a 429 or a 5xx (not a content
    filter, an empty answer or a request the model refused as malformed)."""
    if exc.kind in ("timeout", "connection", "error"):
        return True
    return exc.kind == "http_error" and (exc.status is None or exc.status == 429 or exc.status >= 500)


class Wrapper:
    """A Completer around another: the capability questions go to the inner one."""

    def __init__(self, inner: Completer) -> None:
        self.inner = inner

    def estimate(self, model: str, messages: list[Message], text: str) -> Completion:
        return self.inner.estimate(model, messages, text)

    def price(self, model: str, prompt: int, completion: int) -> float:
        return self.inner.price(model, prompt, completion)

    def max_output_tokens(self, model: str) -> int | None:
        return self.inner.max_output_tokens(model)

    def supports_web_search(self, model: str) -> bool:
        return self.inner.supports_web_search(model)

    def supports_json_mode(self, model: str) -> bool:
        return self.inner.supports_json_mode(model)

    def supports_response_schema(self, model: str) -> bool:
        return self.inner.supports_response_schema(model)


class DefaultParams(Wrapper):
    """A Completer that adds default params (e.g. LiteLLM's `num_retries`) to every call;
    a param the call names itself wins (a stage's `OWN_RETRIES`)."""

    def __init__(self, inner: Completer, **defaults: Any) -> None:
        super().__init__(inner)
        self.defaults = defaults

    async def complete(self, model, messages, *, timeout, **params) -> Completion:
        return await self.inner.complete(model, messages, timeout=timeout, **{**self.defaults, **params})

    def stream(self, model, messages, *, timeout, **params):
        return self.inner.stream(model, messages, timeout=timeout, **{**self.defaults, **params})


class Embedder(Protocol):
    model_id: str

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text."""


class Forwarder(Protocol):
    """The forward leg's port: the gate's single model answers the request as it is."""

    def forward(self, model: str, messages: list[Message], params: dict[str, Any], *, stream: bool,
                timeout: float) -> AsyncGenerator[Relay | Completion, None]:
        """Yields the model's own response (or chunks) as `Relay`s, then its `Completion`."""


class ReceiptSigner(Protocol):
    key_id: str  # the public key's id, written into the payload before it is signed

    def sign(self, payload: dict) -> dict:
        """The signed receipt: the payload, its algorithm, key id and signature."""
        ...


# -- the store's ports ----------------------------------------------------------------------
@dataclass(frozen=True)
class Job:
    """A webhook waiting in the queue: its id (the idempotency key), what to send, and
    how many attempts were made."""

    id: str
    job: dict
    attempts: int = 0


@dataclass(frozen=True)
class Claim:
    """A debate id's single-flight claim as the store holds it: the holder's `token` and
    `request_hash`, live until `expires_at` (store clock); `mine`: this call took it."""

    owner: str
    debate_id: str
    token: str
    request_hash: str
    expires_at: float
    mine: bool = False


@dataclass(frozen=True)
class PeerLoads:
    """What the workers' peer syncs published in their last few passes: how many workers
    publish, each peer's calls in flight summed over them, and how many of them hold the
    peer as a Router deployment (drawable there)."""

    workers: int = 0
    calls: dict[str, int] = field(default_factory=dict)
    deployed: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class ProfilesServed:
    """What the workers' profile syncs published in their last few passes: how many workers
    publish, and per fusion profile how many of them serve each version (0: the config
    file's). A rollout is complete when every worker serves the newest version."""

    workers: int = 0
    versions: dict[str, dict[int, int]] = field(default_factory=dict)


class Receipts(Protocol):
    """Signed receipts (never lost once promised) and transcripts (best effort), per owner."""

    async def put_receipt(self, owner: str, debate_id: str, receipt: dict) -> dict: ...
    async def find_receipt(self, owner: str | None, debate_id: str) -> dict | None: ...
    async def put_transcript(self, owner: str | None, debate_id: str, record: dict, ttl_s: int | None) -> None: ...
    async def get_transcript(self, owner: str | None, debate_id: str) -> dict | None: ...


class RunClaims(Protocol):
    """Single flight: one run per (owner, debate id) across workers and replicas."""

    async def claim(self, owner: str, debate_id: str, request_hash: str, lease_s: float) -> Claim: ...
    async def renew(self, claim: Claim, lease_s: float) -> bool: ...
    async def release(self, claim: Claim) -> None: ...


class RunLog(Protocol):
    """The live view's event log per run and the owner's runs index."""

    async def append_events(self, owner: str | None, run_id: str, events: list[dict], ttl_s: int | None) -> None: ...
    async def read_events(self, owner: str | None, run_id: str, after: int = 0, limit: int = 1000) -> list[dict]: ...
    async def list_runs(self, owner: str | None, limit: int = 20) -> list[dict]: ...


class WebhookQueue(Protocol):
    """The durable webhook queue: first enqueue of a job id wins; claims lease due jobs."""

    clock: Callable[[], float]  # the store's clock (seconds since the epoch)

    async def enqueue_webhook(self, job_id: str, job: dict) -> bool: ...
    async def claim_webhooks(self, limit: int, lease_s: float) -> list[Job]: ...
    async def finish_webhook(self, job_id: str, *, due: float | None = None, attempts: int = 0,
                             error: str | None = None) -> None: ...
    async def webhook_state(self, job_id: str) -> dict | None: ...


class Reputation(Protocol):
    """Counters per payee (or peer), summed over runs (core/stages/reputation.py scores them)."""

    async def add_reputation(self, observations: dict[str, dict[str, float]]) -> None: ...
    async def reputation(self, payees: list[str] | None = None) -> dict[str, dict[str, float]]: ...


class PeerRegistry(Protocol):
    """Marketplace peers (compare-and-set on their signed timestamps), their load and earnings."""

    clock: Callable[[], float]  # the store's clock (seconds since the epoch)

    async def put_peer(self, peer_id: str, pool: str, record: dict, last_seen: float, last_ts: int) -> bool: ...
    async def get_peer(self, peer_id: str) -> dict | None: ...
    async def pool_peers(self, pool: str) -> list[dict]: ...
    async def all_peers(self) -> list[dict]: ...
    async def touch_peer(self, peer_id: str, last_seen: float, last_ts: int) -> bool: ...
    async def delete_peer(self, peer_id: str, last_ts: int | None = None, ttl_s: float = ...) -> None: ...
    async def put_peer_load(self, worker: str, calls: dict[str, int], ttl_s: float,
                            deployed: Sequence[str] = ()) -> None: ...
    async def peer_loads(self) -> PeerLoads: ...
    async def peer_earnings(self, peer_id: str, limit: int = 100) -> dict: ...
    async def earnings_totals(self, peer_ids: list[str]) -> dict[str, list[dict]]: ...


class ProfileRegistry(Protocol):
    """Profiles created at run time, by name: a compare-and-set on each one's version.

    A record is `{"name", "version", "profile" (the `model_info.chorus` block; None once
    deleted), "deleted", "updated_at" (store clock)}`. `put_profile` and `delete_profile`
    take the version the caller read (0: none, for a name never used) and store the next
    one, or return None, storing nothing, when the stored version is another (a stale
    write). A delete keeps a tombstone (`deleted: true`, its version) for good."""

    async def list_profiles(self) -> list[dict]: ...  # every name's record, tombstones included, by name
    async def get_profile(self, name: str) -> dict | None: ...
    async def put_profile(self, name: str, profile: dict, version: int) -> dict | None: ...
    async def delete_profile(self, name: str, version: int) -> dict | None: ...
    async def put_profiles_served(self, worker: str, versions: Mapping[str, int], ttl_s: float) -> None: ...
    async def profiles_served(self) -> ProfilesServed: ...


class StreamSlots(Protocol):
    """A key's open event streams across every worker and replica: a leased slot each,
    renewed while the stream is open; a worker that dies frees its slots when their leases
    run out. `take_stream_slot` is atomic: False when `limit` live slots are held."""

    async def take_stream_slot(self, key: str, slot: str, limit: int, lease_s: float) -> bool: ...
    async def renew_stream_slot(self, key: str, slot: str, lease_s: float) -> bool: ...
    async def drop_stream_slot(self, key: str, slot: str) -> None: ...
