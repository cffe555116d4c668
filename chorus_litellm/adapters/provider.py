"""The LiteLLM custom provider: `fusion/<profile>` requests in, OpenAI responses out.

Translation only, and the one error boundary. It validates the request (400s), answers
a retried `debate_id` from what the first run stored (409 if the request differs),
builds the run's context (ledger, ports, finishers) and turns the client's kinds of
`pipeline.run`'s events (events.CLIENT_KINDS; the rest are the event log's) into a
`ModelResponse` or `ModelResponseStream` chunks:

- `Progress`    -> `delta.reasoning_content` (clients that show reasoning show the stages)
- `AnswerDelta` -> `delta.content`, forwarded as the synthesizer writes it
- `Relay`       -> the forwarded model's own response or chunk, passed on
- `RunDone`     -> usage (sum of every inner call) and the `chorus` extension field on the
                   last content chunk, held back until then, before `finish_reason`
                   (`length` when the synthesis was cut off: `RunReport.finish_reason`);
                   `Replayed` the same from a retried debate_id's stored first run

Charging: the ledger calls `_Charge` after every inner call, so LiteLLM's logging object
always holds the run's running total: the success path charges it (non-streaming
`_hidden_params["response_cost"]`, streaming `additional_response_cost`, also what
LiteLLM bills when a client disconnects mid-stream), and the failure path bills the
stashed partial usage (`record_partial_usage_for_failure`). The alias is priced at 0.

Single flight: a `debate_id` runs once at a time across workers and replicas. The first
request claims it in the store (`Store.claim`, renewed every `CLAIM_LEASE_S / 3` while the
run is alive, released once the transcript is stored); a duplicate that finds the claim
waits (polling the store with backoff, within its own deadline) and replays the stored
answer like any later retry, charged nothing; with `chorus.wait: false` it gets a 409 with
`Retry-After` instead; a different request under the claim is a 409 as always. A claim
whose holder crashed expires and the next duplicate runs; a store that cannot take claims
(an outage) lets each request run as before.

Every exception leaves as a LiteLLM exception with `num_retries = 0`: the inner calls had
the Router's retries already, and a retried outer call would re-run the whole fusion.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import math
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import litellm
import openai
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import Delta as LDelta
from litellm.types.utils import Message as LMessage
from litellm.types.utils import ModelResponse, ModelResponseStream, StreamingChoices
from litellm.types.utils import Usage as LUsage

from .. import pipeline, runlog
from ..config import PROVIDER, ProfileConfig, parse_profile
from ..context import RunContext
from ..errors import BudgetError, ChorusError, ConflictError, DeadlineError, RequestError, RunError, StoreUnavailable
from ..report import RunReport
from ..request import FusionRequest, build_request
from ..runlog import Listener, RunLog
from ..settings import load_settings
from ..settle import ReputationKeeper, Settler, TranscriptKeeper, prior_run
from ..stages.settlement import idempotency_hash
from ..events import CLIENT_KINDS, AnswerDelta, Progress, Relay, Replayed, RunDone
from ..types import Budget, Caller
from . import compat, metrics, tracing
from .embeddings import BatchedEmbedder, Embedder
from .eventlog import EventLog
from .forward import RouterForwarder
from .llm import Completer, RouterCompleter, proxy_router
from .netguard import Allowlist
from .peer_sync import PeerSync
from .signing import Signer
from .store import Claim, owner_of, store_from_env
from .webhooks import Webhooks

log = logging.getLogger("chorus_litellm")

# Keys LiteLLM adds to optional_params that are not the client's request params.
_INTERNAL = {"stream", "stream_options", "extra_body", "metadata"}
# LiteLLM's exception class per HTTP status our errors carry (409/504 have none: the
# nearest class, with the status and name set).
_CLASSES: dict[int, Any] = {400: litellm.BadRequestError, 409: litellm.BadRequestError,
                            502: litellm.BadGatewayError, 503: litellm.ServiceUnavailableError,
                            504: litellm.BadGatewayError}
_NAMES = {409: "ConflictError", 504: "GatewayTimeoutError"}

CLAIM_LEASE_S = 30.0  # a crashed holder's claim frees its debate_id this long after its last renewal
WAIT_POLL_S = (0.05, 1.0)  # a waiting duplicate polls the store from this delay, x1.5 each time, up to that
RETRY_AFTER_S = 2  # what a duplicate that will not wait is told (`Retry-After`)


def _caller(litellm_params: dict) -> Caller:
    meta = litellm_params.get("metadata") or {}
    get = lambda key: (str(meta[key]) if meta.get(key) is not None else None)  # noqa: E731
    caller = Caller(
        key_hash=get("user_api_key_hash"),
        key_alias=get("user_api_key_alias"),
        team_id=get("user_api_key_team_id"),
        user_id=get("user_api_key_user_id"),
        org_id=get("user_api_key_org_id"),
    )
    return dataclasses.replace(caller, budgets=_budgets(meta, caller))


# (scope, spend field, max budget field) on LiteLLM's `UserAPIKeyAuth`; the proxy copies
# the same values into the request metadata as `user_api_key_<field>`.
_BUDGETS = (("key", "spend", "max_budget"), ("team", "team_spend", "team_max_budget"),
            ("user", "user_spend", "user_max_budget"))


def _budgets(meta: dict, caller: Caller) -> tuple[Budget, ...]:
    """The caller's key, team and user budgets, as LiteLLM's auth saw them: the auth
    object (`metadata.user_api_key_auth`, custom auth included), else the metadata keys.
    As LiteLLM does by default, a team key is held to its team's budget, not its user's
    (`apply_user_budget_to_team_keys` is LiteLLM's own check). End-user and organization
    budgets carry no spend here, so LiteLLM alone checks them."""
    auth = meta.get("user_api_key_auth")
    ids = {"key": caller.key_alias or caller.key_hash, "team": caller.team_id, "user": caller.user_id}
    found = []
    for scope, spend_field, max_field in _BUDGETS:
        if scope == "user" and caller.team_id:
            continue
        read = (lambda f: getattr(auth, f, None)) if auth is not None else (lambda f: meta.get(f"user_api_key_{f}"))
        limit = read(max_field)
        if isinstance(limit, int | float) and not isinstance(limit, bool) and math.isfinite(limit):
            found.append(Budget(scope, ids[scope], float(read(spend_field) or 0.0), float(limit)))
    return tuple(found)


def _client_params(optional_params: dict) -> dict:
    params = {k: v for k, v in optional_params.items() if k not in _INTERNAL}
    params.update(optional_params.get("extra_body") or {})
    return params


def to_litellm_error(exc: BaseException, name: str) -> Exception:
    """Any exception -> a LiteLLM exception the proxy serves as an OpenAI-style error.

    Our `RunError`s keep their status (400, 409, 502, 503, 504); anything else (a config
    mistake, a signing or store bug, an embedder that cannot load) is a 500 that names
    its type, with the details in the log. Each carries `num_retries = 0`. `name` is the
    fusion model's own name, `<provider>/<profile>`.
    """
    provider = name.split("/")[0]
    if isinstance(exc, openai.APIStatusError) and getattr(exc, "num_retries", None) == 0:
        return exc  # already mapped (a re-raise through this boundary)
    if isinstance(exc, BudgetError):  # LiteLLM's own budget error, as its auth serves it
        error = litellm.BadRequestError(message=str(exc), model=name, llm_provider=provider)
        error.status_code, error.type, error.code = compat.budget_status(), "budget_exceeded", str(compat.budget_status())
        error.message = str(exc)  # LiteLLM's wording, without its class-name prefix
        error.num_retries = error.max_retries = 0
        return error
    status = exc.status_code if isinstance(exc, RunError) else 500
    if status == 500:
        log.error("chorus: %s failed on an unexpected %s", name, type(exc).__name__, exc_info=exc)
        kind = "configuration error" if isinstance(exc, ChorusError) else "internal error"
        error: Any = litellm.InternalServerError(
            message=f"{name}: {kind} ({type(exc).__name__}: {exc})", model=name, llm_provider=provider)
    else:
        error = _CLASSES[status](message=str(exc), model=name, llm_provider=provider)
        error.status_code = status
        if status in _NAMES:
            error.message = f"litellm.{_NAMES[status]}: {exc}"
        if getattr(exc, "retry_after", None):  # the proxy serves an exception's `headers`
            error.headers = {"retry-after": str(exc.retry_after)}
    error.num_retries = 0
    error.max_retries = 0
    return error


class _Charge:
    """The ledger's charge hook: keep LiteLLM's logging object at the running total."""

    def __init__(self, logging_obj: Any, stream: bool) -> None:
        self.logging_obj, self.stream = logging_obj, stream

    def __call__(self, report: RunReport) -> None:
        if self.logging_obj is None:
            return
        usage, cost = _usage(report), report.cost
        compat.charge_partial(self.logging_obj, usage, cost)  # what a failed run bills
        if self.stream:
            self.logging_obj.model_call_details["additional_response_cost"] = cost


class FusionHandler(CustomLLM):
    """One instance serves every profile. `profiles` come from startup validation or
    `register()`; inside the proxy, the entry's own `model_info.chorus` wins.
    `anonymous_owner` owns the records of callers LiteLLM did not authenticate (SDK
    use: the process itself); None (the proxy) keeps nothing readable for them."""

    def __init__(
        self,
        profiles: dict[str, ProfileConfig] | None = None,
        completer: Completer | None = None,
        get_router: Callable[[], Any] = proxy_router,
        embedder: Embedder | None = None,
        signer: Signer | None = None,
        store: Any = None,
        anonymous_owner: str | None = None,
        forwarder: Any = None,
        observers: Sequence[Callable[[FusionRequest], Listener]] | None = None,
        provider: str = PROVIDER,
    ) -> None:
        super().__init__()
        self.profiles = dict(profiles or {})
        self.provider = provider  # its name in custom_provider_map: profiles are `<provider>/<profile>`
        self.signer = signer if signer is not None else Signer.from_env()  # never logged
        self._store = store
        self._embedder = embedder  # tests inject one; otherwise one per model and event loop
        self._embedders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._event_logs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._webhooks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._peer_syncs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.get_router = get_router
        self.completer = completer or RouterCompleter(get_router)
        self.forwarder = forwarder or RouterForwarder(get_router)
        self.anonymous_owner = anonymous_owner
        self._parsed: dict[str, tuple[dict, ProfileConfig]] = {}
        self._sync_loop: asyncio.AbstractEventLoop | None = None
        self._store_started = False
        self._background: set[asyncio.Task] = set()
        # Each makes a run's listener of its events (runlog.py): metrics, spans.
        self.observers: list[Callable[[FusionRequest], Listener]] = list(
            (metrics.listener, tracing.listener) if observers is None else observers)

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = store_from_env()
        return self._store

    async def _started_store(self) -> Any:
        """The store, its background outbox flush started on this process's first run."""
        if not self._store_started:
            self._store_started = True
            await self.store.start()
        return self.store

    # -- request preparation --------------------------------------------------------
    def _profile(self, name: str, litellm_params: dict) -> ProfileConfig:
        raw = (litellm_params.get("model_info") or {}).get("chorus")
        if raw is not None:
            # Parsed once per process: the same block (or an equal copy) on every request.
            seen, parsed = self._parsed.get(name, (None, None))
            if parsed is None or not (seen is raw or seen == raw):
                parsed = parse_profile(name, raw, provider=self.provider)
                self._parsed[name] = (raw, parsed)
            return parsed
        if name in self.profiles:
            return self.profiles[name]
        raise RequestError(f"unknown fusion profile {name!r}", param="model")

    def _prepare(self, model: str, messages: list, optional_params: dict, litellm_params: dict,
                 stream: bool) -> FusionRequest:
        litellm_params = litellm_params or {}
        caller = _caller(litellm_params)
        req = build_request(
            model, self._profile(model, litellm_params), messages, _client_params(optional_params or {}),
            caller, stream=stream, request_id=str(litellm_params.get("litellm_call_id") or uuid.uuid4()),
        )
        req = dataclasses.replace(req, owner=owner_of(caller) or self.anonymous_owner, provider=self.provider,
                                  trace_parent=(litellm_params.get("metadata") or {}).get("litellm_parent_otel_span"))
        if req.bounty is not None and self.signer is None:
            raise RequestError(
                "bounties need a receipt signing key on this proxy (CHORUS_SIGNING_KEY_FILE, made by "
                "`chorus keygen`); none is configured", param="bounty",
            )
        if req.bounty is not None and req.owner is None:
            raise RequestError("bounties need an authenticated caller (a LiteLLM key): a receipt belongs "
                               "to the caller's team or key", param="bounty")
        return req

    def event_log(self) -> EventLog:
        """This event loop's writer and follower of run events (one per loop, like the embedder)."""
        loop = asyncio.get_running_loop()
        if loop not in self._event_logs:
            self._event_logs[loop] = EventLog(self.store)
        return self._event_logs[loop]

    def webhooks(self) -> Webhooks:
        """This event loop's webhook sender, its delivery worker started (one per loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._webhooks:
            settings = load_settings(create_dirs=False)
            self._webhooks[loop] = Webhooks(self.store, self.signer, Allowlist.parse(settings.webhook_allowlist),
                                            timeout_s=settings.webhook_timeout_s,
                                            max_attempts=settings.webhook_max_attempts)
        self._webhooks[loop].start()
        return self._webhooks[loop]

    def peer_sync(self) -> PeerSync:
        """This event loop's peer-to-Router sync, started (one per loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._peer_syncs:
            settings = load_settings(create_dirs=False)
            self._peer_syncs[loop] = PeerSync(self.store, self.get_router, settings.peer_policy(),
                                              Allowlist.parse(settings.peer_url_allowlist),
                                              interval_s=settings.peer_sync_s,
                                              load=lambda: getattr(self.completer, "inflight", {}))
        self._peer_syncs[loop].start()
        return self._peer_syncs[loop]

    async def _pool(self, name: str) -> list[dict]:
        """The pool's live, probed peers (the peer sync starts with the first pool run)."""
        return await self.peer_sync().available(name)

    def _context(self, req: FusionRequest, logging_obj: Any, timeout: Any) -> RunContext:
        storage = req.profile.storage
        watched = storage.events and req.owner is not None
        needs_embedder = req.debate.protocol == "debate" or req.bounty is not None or watched
        embedder = self._embedder_for(req) if needs_embedder else None
        finishers: list = [Settler(self.signer, self.store, embedder)] if req.bounty is not None else []
        if req.profile.storage.transcripts and req.owner is not None:
            finishers.append(TranscriptKeeper(self.store))
        finishers.append(ReputationKeeper(self.store))
        listeners = [observe(req) for observe in self.observers]
        if watched:
            listeners.append(self.event_log().listener(req.owner, req.debate_id, storage.transcript_ttl_s))
        return RunContext.create(req, self.completer, timeout=timeout, on_charge=_Charge(logging_obj, req.stream),
                                 embedder=embedder, forwarder=self.forwarder, reputation=self.store.reputation,
                                 pool=self._pool if req.profile.panel.pool else None,
                                 finishers=finishers, log=RunLog(*listeners, watched=watched))

    def _embedder_for(self, req: FusionRequest) -> Embedder:
        """One embedder per model and event loop: its batching futures belong to a loop
        (the SDK's sync loop and the caller's own loop must not share one)."""
        if self._embedder is not None:
            return self._embedder
        per_loop = self._embedders.setdefault(asyncio.get_running_loop(), {})
        name = req.debate.embedding_model
        return per_loop.setdefault(name, BatchedEmbedder(name))

    async def _events(self, req: FusionRequest, logging_obj: Any, timeout: Any) -> AsyncIterator:
        """The run's events, or a replay of the first run for a retried debate_id; a
        `callback_url` is checked first and queued its summary when the run ends."""
        if req.callback_url:
            await self.webhooks().check(req.callback_url)  # a refused URL: 400, no model called
        store = await self._started_store()
        prior, claim = await self._first_run(store, req, timeout)
        if prior is not None:  # the first run queued its own webhook
            yield AnswerDelta(prior["answer"])
            yield Replayed(prior)
            return
        done = False
        heartbeat = asyncio.ensure_future(self._heartbeat(store, claim)) if claim is not None else None
        try:
            async with contextlib.aclosing(pipeline.run(self._context(req, logging_obj, timeout))) as events:
                async for event in events:
                    if isinstance(event, RunDone):
                        if req.callback_url:
                            # before the answer ends
                            await self._notify(req, "run.done", _done_summary(event.report, req))
                            done = True
                        await self._release(store, heartbeat, claim)  # its transcript is stored: duplicates replay it
                        heartbeat = claim = None
                    if event.kind in CLIENT_KINDS:  # the rest is the log's subscribers'
                        yield event
        except BaseException as exc:
            if req.callback_url and not done:  # may be a closing generator: queued beside, not awaited here
                task = asyncio.ensure_future(self._notify(req, "run.failed", {**_summary(req), **runlog.failed(exc)}))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
            raise
        finally:
            if claim is not None:  # failed or abandoned: the id is free for a retry (or a waiting duplicate)
                task = asyncio.ensure_future(self._release(store, heartbeat, claim))
                self._background.add(task)
                task.add_done_callback(self._background.discard)
                with contextlib.suppress(Exception):
                    await asyncio.shield(task)

    async def _first_run(self, store: Any, req: FusionRequest, timeout: Any) -> tuple[dict | None, Claim | None]:
        """Single flight for a client-chosen `debate_id`: (the stored run to replay, None),
        or (None, this request's claim) to run it, or (None, None) to run unclaimed (no
        debate_id or owner, or a store that cannot take claims). A duplicate of a run in
        progress waits for it (or, with `chorus.wait: false`, gets a 409 with Retry-After);
        one with a different request is a 409."""
        if req.options.debate_id is None or req.owner is None:
            return await prior_run(store, req), None
        prior = await self._stored(store, req)
        if prior is not None:
            return prior, None
        digest = idempotency_hash(req.profile_name, req.messages, req.bounty)
        loop = asyncio.get_running_loop()
        seconds = req.profile.limits.run_timeout_s
        if isinstance(timeout, int | float) and timeout > 0:
            seconds = min(seconds, float(timeout))
        deadline, delay = loop.time() + seconds, WAIT_POLL_S[0]
        while True:
            try:
                claim = await store.claim(req.owner, req.debate_id, digest, CLAIM_LEASE_S)
            except StoreUnavailable as exc:
                log.warning("chorus: run %s not single-flight (%s): it runs unclaimed", req.debate_id, exc)
                return None, None
            if claim.mine:
                try:  # a first run that ended between the two looks; a conflict is final now
                    prior = await prior_run(store, req)
                except BaseException:
                    await self._release(store, None, claim)
                    raise
                if prior is not None:
                    await self._release(store, None, claim)
                return prior, (None if prior is not None else claim)
            if claim.request_hash != digest:
                raise ConflictError(f"chorus.debate_id {req.debate_id!r} is in use by a different request "
                                    "(profile, messages or bounty differ); use a new debate_id")
            if not req.options.wait:
                busy = ConflictError(f"chorus.debate_id {req.debate_id!r} is still running (its first request); "
                                     "retry later to get its answer, or send chorus.wait: true to wait for it")
                busy.retry_after = RETRY_AFTER_S  # type: ignore[attr-defined]
                raise busy
            if loop.time() >= deadline:
                raise DeadlineError(f"chorus.debate_id {req.debate_id!r}: its first run was still running after "
                                    f"{seconds:g} s of waiting")
            await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
            delay = min(delay * 1.5, WAIT_POLL_S[1])
            prior = await self._stored(store, req)
            if prior is not None:
                return prior, None

    @staticmethod
    async def _stored(store: Any, req: FusionRequest) -> dict | None:
        """`prior_run` outside the claim: its 409 waits to be decided under the claim (a run
        in progress may have stored its receipt and not yet its transcript)."""
        try:
            return await prior_run(store, req)
        except ConflictError:
            return None

    async def _heartbeat(self, store: Any, claim: Claim) -> None:
        """Renew the run's claim while it is alive (cancelled when it ends)."""
        while True:
            await asyncio.sleep(CLAIM_LEASE_S / 3)
            try:
                if not await store.renew(claim, CLAIM_LEASE_S):
                    log.warning("chorus: run %s lost its single-flight claim (expired and taken)", claim.debate_id)
                    return
            except StoreUnavailable as exc:
                log.warning("chorus: run %s claim not renewed (%s)", claim.debate_id, exc)

    async def _release(self, store: Any, heartbeat: asyncio.Future | None, claim: Claim | None) -> None:
        if heartbeat is not None:
            heartbeat.cancel()
        if claim is not None:
            try:
                await store.release(claim)
            except StoreUnavailable as exc:  # it expires by itself
                log.warning("chorus: run %s claim not released (%s)", claim.debate_id, exc)

    async def _notify(self, req: FusionRequest, event: str, payload: dict) -> None:
        if await self.webhooks().enqueue(req.callback_url, req.owner, req.debate_id, event, payload) is None:
            log.error("chorus: webhook for run %s not queued: store and outbox unavailable", req.debate_id)

    # -- async entry points ----------------------------------------------------------
    async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response,
                          print_verbose, encoding, api_key, logging_obj, optional_params,
                          acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                          timeout=None, client=None) -> ModelResponse:
        try:
            req = self._prepare(model, messages, optional_params, litellm_params, stream=False)
            text: list[str] = []
            relayed = None
            async with contextlib.aclosing(self._events(req, logging_obj, timeout)) as events:
                async for event in events:
                    if isinstance(event, Relay):
                        relayed = event.item
                    elif isinstance(event, AnswerDelta):
                        text.append(event.text)
                    elif isinstance(event, RunDone | Replayed):
                        return self._response(relayed or model_response, "".join(text), _report(event), req)
        except Exception as exc:  # noqa: BLE001 - the one mapping boundary
            raise to_litellm_error(exc, self.name(model)) from exc
        raise to_litellm_error(RuntimeError("the fusion pipeline ended without an answer"), self.name(model))

    async def astreaming(self, model, messages, api_base, custom_prompt_dict, model_response,
                         print_verbose, encoding, api_key, logging_obj, optional_params,
                         acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                         timeout=None, client=None) -> AsyncIterator[ModelResponseStream]:
        # An async generator (LiteLLM iterates it without awaiting): errors raised before
        # the first chunk still reach the client as a plain HTTP error, not a broken stream.
        try:
            req = self._prepare(model, messages, optional_params, litellm_params, stream=True)
            async with contextlib.aclosing(self._stream(req, logging_obj, timeout)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except Exception as exc:  # noqa: BLE001 - the one mapping boundary
            raise to_litellm_error(exc, self.name(model)) from exc

    def name(self, profile: str) -> str:
        return f"{self.provider}/{profile}"

    async def _stream(self, req: FusionRequest, logging_obj, timeout) -> AsyncIterator:
        """Chunks go out as they come, except the last content chunk and what follows
        it: held until `Done`, so the usage and the `chorus` field ride on it."""
        chunk_id, model = f"chatcmpl-{req.request_id}", req.model
        roled = False  # the role goes on our first chunk only: clients' accumulators concatenate it

        def own(**fields: Any) -> ModelResponseStream:
            nonlocal roled
            chunk, roled = _chunk(chunk_id, model, role=None if roled else "assistant", **fields), True
            return chunk

        tail: list = []
        events = self._events(req, logging_obj, timeout)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, RunDone | Replayed):
                    report = _report(event)
                    calls = _tool_calls(report)
                    if calls:  # the synthesizer's tool calls: one delta, then finish_reason "tool_calls"
                        for held in tail:
                            yield held
                        tail = [own(tool_calls=calls), own(finish_reason="tool_calls")]
                    if not tail or not _has_payload(tail[0]):
                        tail.insert(0, own(content=""))
                    tail[0].usage = _usage(report) if isinstance(report, RunReport) else _replayed_usage()
                    tail[0].provider_specific_fields = {"chorus": _extension(report, req)}
                    if all(c.choices[0].finish_reason is None for c in tail if c.choices):
                        tail.append(own(finish_reason=_finish_reason(report)))
                    for chunk in tail:
                        yield chunk
                    return
                if isinstance(event, Relay):
                    chunk, roled = event.item, True  # the forwarded model's own chunks carry its role
                elif isinstance(event, Progress):
                    chunk = own(reasoning=event.text + "\n")
                else:
                    chunk = own(content=event.text)
                if _has_payload(chunk):
                    for held in tail:
                        yield held
                    tail = [chunk]
                elif tail:
                    tail.append(chunk)
                else:
                    yield chunk

    # -- sync entry points (SDK `litellm.completion`) ---------------------------------
    def _loop(self) -> asyncio.AbstractEventLoop:
        if self._sync_loop is None:
            self._sync_loop = asyncio.new_event_loop()
            threading.Thread(target=self._sync_loop.run_forever, daemon=True, name="chorus-sync").start()
        return self._sync_loop

    def completion(self, *args, **kwargs) -> ModelResponse:
        return asyncio.run_coroutine_threadsafe(self.acompletion(*args, **kwargs), self._loop()).result()

    def streaming(self, *args, **kwargs) -> Iterator[ModelResponseStream]:
        loop = self._loop()
        agen = self.astreaming(*args, **kwargs)
        try:
            while True:
                try:
                    yield asyncio.run_coroutine_threadsafe(agen.__anext__(), loop).result()
                except StopAsyncIteration:
                    return
        finally:  # abandoned by the caller: close the run (cancels its inner calls)
            asyncio.run_coroutine_threadsafe(agen.aclose(), loop).result()

    # -- response building -----------------------------------------------------------
    def _response(self, response: ModelResponse, text: str, report: Any, req: FusionRequest) -> ModelResponse:
        if not isinstance(report, RunReport):  # a replay of the first run
            calls = _tool_calls(report)
            response.choices[0].message = LMessage(  # type: ignore[union-attr]
                role="assistant", content=text or (None if calls else ""), tool_calls=list(calls) or None)
            response.choices[0].finish_reason = "tool_calls" if calls else "stop"
            response.model = req.model
            response.usage = _replayed_usage()  # type: ignore[attr-defined]
            response._hidden_params["response_cost"] = 0.0
            response.chorus = _extension(report, req)  # type: ignore[attr-defined]
            return response
        if report.route.decision == "fuse":
            calls = list(_tool_calls(report))
            response.choices[0].message = LMessage(  # type: ignore[union-attr]
                role="assistant", content=text or (None if calls else ""), tool_calls=calls or None)
            response.choices[0].finish_reason = report.finish_reason()
            response.model = req.model
        response.usage = _usage(report)  # type: ignore[attr-defined]
        response._hidden_params["response_cost"] = report.cost
        response.chorus = _extension(report, req)  # type: ignore[attr-defined]
        return response


def _report(event: RunDone | Replayed) -> Any:
    """The run's report, or a replayed run's stored record."""
    return event.report if isinstance(event, RunDone) else event.record


def _summary(req: FusionRequest) -> dict:
    return {"debate_id": req.debate_id, "profile": req.profile_name, "model": req.model}


def _done_summary(report: RunReport, req: FusionRequest) -> dict:
    """A finished run for its webhook: the answer, the `chorus` extension, the receipt."""
    return {**_summary(req), "status": 200, "answer": report.synthesis.text if report.synthesis else "",
            "chorus": _extension(report, req), "receipt": report.receipt}


def _tool_calls(report: Any) -> tuple[dict, ...]:
    """The synthesizer's tool calls (router.tools: fuse): of this run, or of a replayed one."""
    if isinstance(report, RunReport):
        return report.synthesis.tool_calls if report.synthesis else ()
    return tuple((report["extension"].get("synthesis") or {}).get("tool_calls") or ())


def _finish_reason(report: Any) -> str:
    """A streamed fused answer's last finish_reason (`length` when it was cut off); a
    replayed run's, and a forwarded one whose model sent none, `stop`."""
    fused = isinstance(report, RunReport) and report.route is not None and report.route.decision == "fuse"
    return report.finish_reason() if fused else "stop"


def _has_payload(chunk: Any) -> bool:
    return any(
        getattr(c.delta, "content", None) or getattr(c.delta, "tool_calls", None)
        or getattr(c.delta, "function_call", None)
        for c in getattr(chunk, "choices", None) or ()
    )


def _extension(report: Any, req: FusionRequest) -> dict:
    if not isinstance(report, RunReport):
        return report["extension"]
    return report.extension(include_panel=req.options.include_panel, audit=req.debate.output_mode == "audit")


def _usage(report: RunReport) -> LUsage:
    u = report.usage
    return LUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                  total_tokens=u.total_tokens)


def _replayed_usage() -> LUsage:
    return LUsage(prompt_tokens=0, completion_tokens=0, total_tokens=0)


def _chunk(chunk_id: str, model: str, *, content: str | None = None, reasoning: str | None = None,
           finish_reason: str | None = None, tool_calls: Sequence[dict] = (), role: str | None = None
           ) -> ModelResponseStream:
    calls = [{**call, "index": i} for i, call in enumerate(tool_calls)] or None
    delta = LDelta(content=content, reasoning_content=reasoning, role=role, tool_calls=calls)
    return ModelResponseStream(
        id=chunk_id, model=model,
        choices=[StreamingChoices(index=0, delta=delta, finish_reason=finish_reason)],
    )
