"""The LiteLLM custom provider: `fusion/<profile>` requests in, OpenAI responses out.

This is the only module that knows LiteLLM's response and exception types. It validates
the request (400s), runs `pipeline.run`, and turns its events into a `ModelResponse` or
`ModelResponseStream` chunks:

- `Progress` -> `delta.reasoning_content` (clients that show reasoning show the stages)
- `Delta`    -> `delta.content`, forwarded as the synthesizer writes it
- `Done`     -> usage (sum of every stage) and the `chorus` extension field on the last
                content chunk, before the chunk that carries `finish_reason`
- `Forward`  -> the single model's own response or stream, relayed untouched

The caller is charged the summed cost of every inner call exactly once: non-streaming
through `_hidden_params["response_cost"]`, streaming through the logging object's
`additional_response_cost` (the alias itself is priced at 0).
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import litellm
from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import Delta as LDelta
from litellm.types.utils import Message as LMessage
from litellm.types.utils import ModelResponse, ModelResponseStream, StreamingChoices
from litellm.types.utils import Usage as LUsage

from .. import pipeline
from ..config import PREFIX, ProfileConfig, parse_profile
from ..errors import ConfigError, QuorumError, RequestError, RunError, UpstreamError
from ..report import RunReport
from ..request import FusionRequest, build_request
from ..types import Caller, Completion, Delta, Done, Panel, PanelAnswer, Progress, Seat, Synthesis, Usage
from ..settle import ReputationKeeper, Settler, TranscriptKeeper
from ..stages import reputation
from ..stages.panel import seats as panel_seats
from .embeddings import Embedder, SentenceTransformerEmbedder
from .signing import Signer
from .store import store_from_env
from .llm import Completer, RouterCompleter, map_exception, proxy_router

# Keys LiteLLM adds to optional_params that are not the client's request params.
_INTERNAL = {"stream", "stream_options", "extra_body", "metadata"}


def _caller(litellm_params: dict) -> Caller:
    meta = litellm_params.get("metadata") or {}
    get = lambda key: (str(meta[key]) if meta.get(key) is not None else None)  # noqa: E731
    return Caller(
        key_hash=get("user_api_key_hash"),
        key_alias=get("user_api_key_alias"),
        team_id=get("user_api_key_team_id"),
        user_id=get("user_api_key_user_id"),
        org_id=get("user_api_key_org_id"),
    )


def _client_params(optional_params: dict) -> dict:
    params = {k: v for k, v in optional_params.items() if k not in _INTERNAL}
    params.update(optional_params.get("extra_body") or {})
    return params


def to_litellm_error(exc: BaseException, model: str) -> Exception:
    """Map our errors to LiteLLM's OpenAI-style exceptions (which the proxy serves as is).

    Each carries `num_retries = 0`: the inner calls already had the Router's retries, so
    the Router must not re-run the whole fusion (a full panel) for the outer call.
    """
    name = f"{PREFIX}{model}"
    if isinstance(exc, RequestError):
        error: Exception = litellm.BadRequestError(message=str(exc), model=name, llm_provider="fusion")
    elif isinstance(exc, QuorumError | UpstreamError):
        error = litellm.BadGatewayError(message=str(exc), model=name, llm_provider="fusion")
    elif isinstance(exc, ConfigError):
        error = litellm.InternalServerError(
            message=f"fusion profile misconfigured: {exc}", model=name, llm_provider="fusion"
        )
    else:
        return exc if isinstance(exc, Exception) else RuntimeError(str(exc))
    error.num_retries = 0  # type: ignore[attr-defined]
    return error


class FusionHandler(CustomLLM):
    """One instance serves every profile. `profiles` come from startup validation or
    `register()`; inside the proxy, the entry's own `model_info.chorus` wins."""

    def __init__(
        self,
        profiles: dict[str, ProfileConfig] | None = None,
        completer: Completer | None = None,
        get_router: Callable[[], Any] = proxy_router,
        embedder: Embedder | None = None,
        signer: Signer | None = None,
        store: Any = None,
    ) -> None:
        super().__init__()
        self.profiles = dict(profiles or {})
        # Receipts: the signing key from the environment, the SQLite store by default.
        self.signer = signer if signer is not None else Signer.from_env()
        self._store = store
        self._embedder = embedder  # tests inject one; otherwise one per model name, shared
        self._embedders: dict[str, Embedder] = {}
        self.completer = completer or RouterCompleter(get_router)
        self._get_router = get_router
        self._parsed: dict[str, ProfileConfig] = {}
        self._sync_loop: asyncio.AbstractEventLoop | None = None

    # -- request preparation --------------------------------------------------------
    def _profile(self, name: str, litellm_params: dict) -> ProfileConfig:
        raw = (litellm_params.get("model_info") or {}).get("chorus")
        if raw is not None:
            key = name + json.dumps(raw, sort_keys=True, default=str)
            if key not in self._parsed:
                self._parsed[key] = parse_profile(name, raw)
            return self._parsed[key]
        if name in self.profiles:
            return self.profiles[name]
        raise RequestError(f"unknown fusion profile {name!r}", param="model")

    def _prepare(self, model: str, messages: list, optional_params: dict, litellm_params: dict, stream: bool) -> FusionRequest:
        litellm_params = litellm_params or {}
        req = build_request(
            model,
            self._profile(model, litellm_params),
            messages,
            _client_params(optional_params or {}),
            _caller(litellm_params),
            stream=stream,
            request_id=str(litellm_params.get("litellm_call_id") or uuid.uuid4()),
        )
        if req.bounty is not None and self.signer is None:
            raise RequestError(
                "bounties need a receipt signing key on this proxy (CHORUS_SIGNING_KEY_FILE, made by "
                "`chorus keygen`); none is configured", param="bounty",
            )
        return req

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = store_from_env()
        return self._store

    def _plan(self, req: FusionRequest) -> tuple[Embedder | None, list]:
        """The embedder this run needs (debate, bounty impact) and its finishers, in order:
        settle the bounty, keep the transcript, add to reputation."""
        embedder = None
        if req.debate.protocol == "debate" or req.bounty is not None:
            name = req.debate.embedding_model
            embedder = self._embedder or self._embedders.setdefault(name, SentenceTransformerEmbedder(name))
        finishers: list = [Settler(self.signer, self.store, embedder)] if req.bounty is not None else []
        if req.profile.storage.transcripts:
            finishers.append(TranscriptKeeper(self.store))
        finishers.append(ReputationKeeper(self.store))
        return embedder, finishers

    async def _run(self, req: FusionRequest) -> AsyncIterator:
        embedder, finishers = self._plan(req)
        async for event in pipeline.run(req, self.completer, embedder=embedder, finishers=finishers,
                                        seats=await self._seats(req)):
            yield event

    async def _finish_forward(self, req: FusionRequest, report: RunReport, text: str) -> None:
        """A forwarded run is settled and kept like a fused one, with one contributor."""
        model = req.profile.router.single_model or ""
        seat = Seat("single_model", model)
        calls = [c.completion for c in report.calls if c.stage == "forward"]
        last = calls[-1] if calls else Completion("", model)
        completion = Completion(text, model, last.usage, last.cost, last.latency_s)
        report.panel = Panel((PanelAnswer(seat, completion),), ())
        report.synthesis = Synthesis(text, None)
        for finisher in self._plan(req)[1]:
            await finisher(report, req)

    async def _seats(self, req: FusionRequest) -> list | None:
        """The panel ordered / filtered by payee reputation, when the profile asks for it."""
        rep = req.profile.panel.reputation
        if not rep.order and rep.min_score is None:
            return None
        seats = panel_seats(req.profile.panel)
        counters = await self.store.reputation(sorted({s.payee_id for s in seats}))
        scores = {p: reputation.summary(c, rep.min_runs)["score"] for p, c in counters.items()}
        return reputation.select(seats, scores, order=rep.order, min_score=rep.min_score, quorum=req.quorum)

    # -- forwarding (gate chose one model) -------------------------------------------
    def _forward_args(self, req: FusionRequest) -> dict:
        params = {k: v for k, v in req.params.items() if k not in ("chorus", "bounty")}
        return {"model": req.profile.router.single_model, "messages": req.messages, **params}

    def _router(self) -> Any:
        router = self._get_router()
        if router is None:
            raise UpstreamError("error", "no LiteLLM router is configured for forwarding")
        return router

    async def _forward(self, req: FusionRequest, report: RunReport) -> ModelResponse:
        started = time.perf_counter()
        try:
            response = await self._router().acompletion(
                **self._forward_args(req), timeout=req.profile.panel.timeout_s
            )
        except Exception as exc:  # noqa: BLE001 - mapped once
            raise _forward_error(req, exc) from exc
        cost = float((response._hidden_params or {}).get("response_cost") or 0.0)
        usage = getattr(response, "usage", None)
        report.add("forward", "single_model", Completion(
            "", req.profile.router.single_model or "",
            Usage(getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0),
            cost, time.perf_counter() - started,
        ))
        response._hidden_params["response_cost"] = report.cost
        await self._finish_forward(req, report, response.choices[0].message.content or "")
        response.chorus = _extension(report, req)  # type: ignore[attr-defined]
        return response

    async def _forward_stream(self, req: FusionRequest, report: RunReport, logging_obj) -> AsyncIterator:
        """Relay the single model's chunks as they come. Its usage (which arrives after the
        finish chunk) is moved onto the last content chunk, where LiteLLM keeps it, and its
        cost (plus any classifier call) is charged before that chunk goes out."""
        started = time.perf_counter()
        _charge(logging_obj, report)  # the classifier call, if the gate made one
        try:
            stream = await self._router().acompletion(
                **self._forward_args(req), stream=True, stream_options={"include_usage": True},
                timeout=req.profile.panel.timeout_s,
            )
            pending: list = []  # the last content chunk and whatever followed it
            text = ""
            async for chunk in stream:
                usage = getattr(chunk, "usage", None)
                if usage is not None and getattr(usage, "cost", None) is not None:
                    report.add("forward", "single_model", Completion(
                        "", req.profile.router.single_model or "",
                        Usage(usage.prompt_tokens or 0, usage.completion_tokens or 0),
                        float(usage.cost), time.perf_counter() - started,
                    ))
                    _charge(logging_obj, report)
                text += "".join(getattr(c.delta, "content", None) or "" for c in chunk.choices or ())
                if _has_payload(chunk):
                    for held in pending:
                        yield held
                    pending = [chunk]
                elif usage is not None and pending and _has_payload(pending[0]):
                    pending[0].usage = usage
                else:
                    pending.append(chunk)
            await self._finish_forward(req, report, text)
            if pending and _has_payload(pending[0]):
                pending[0].provider_specific_fields = {"chorus": _extension(report, req)}
            for held in pending:
                yield held
        except Exception as exc:  # noqa: BLE001 - mapped once
            raise to_litellm_error(_forward_error(req, exc), req.profile_name) from exc

    # -- async entry points ----------------------------------------------------------
    async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response,
                          print_verbose, encoding, api_key, logging_obj, optional_params,
                          acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                          timeout=None, client=None) -> ModelResponse:
        try:
            req = self._prepare(model, messages, optional_params, litellm_params, stream=False)
            text: list[str] = []
            async for event in self._run(req):
                if isinstance(event, pipeline.Forward):
                    return await self._forward(req, event.report)
                if isinstance(event, Delta):
                    text.append(event.text)
                elif isinstance(event, Done):
                    return self._response(model_response, model, "".join(text), event.report, req)
        except RunError as exc:
            raise to_litellm_error(exc, model) from exc
        except ConfigError as exc:
            raise to_litellm_error(exc, model) from exc
        raise litellm.InternalServerError(message="fusion pipeline ended without an answer",
                                          model=f"{PREFIX}{model}", llm_provider="fusion")

    async def astreaming(self, model, messages, api_base, custom_prompt_dict, model_response,
                         print_verbose, encoding, api_key, logging_obj, optional_params,
                         acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                         timeout=None, client=None) -> AsyncIterator[ModelResponseStream]:
        # An async generator (LiteLLM iterates it without awaiting): errors raised before
        # the first chunk still reach the client as a plain HTTP error, not a broken stream.
        try:
            req = self._prepare(model, messages, optional_params, litellm_params, stream=True)
        except (RunError, ConfigError) as exc:
            raise to_litellm_error(exc, model) from exc
        async for chunk in self._stream(req, model, logging_obj):
            yield chunk

    async def _stream(self, req: FusionRequest, model: str, logging_obj) -> AsyncIterator[ModelResponseStream]:
        chunk_id = f"chatcmpl-{req.request_id}"
        held: str | None = None  # the latest delta, kept so the last one can carry usage
        try:
            async for event in self._run(req):
                if isinstance(event, pipeline.Forward):
                    async for chunk in self._forward_stream(req, event.report, logging_obj):
                        yield chunk
                    return
                if isinstance(event, Progress):
                    yield _chunk(chunk_id, model, reasoning=event.text + "\n")
                elif isinstance(event, Delta):
                    if held is not None:
                        yield _chunk(chunk_id, model, content=held)
                    held = event.text
                elif isinstance(event, Done):
                    report = event.report
                    _charge(logging_obj, report)
                    last = _chunk(chunk_id, model, content=held or "")
                    last.usage = _usage(report)  # type: ignore[attr-defined]
                    last.provider_specific_fields = {
                        "chorus": _extension(report, req)
                    }
                    yield last
                    yield _chunk(chunk_id, model, finish_reason="stop")
        except RunError as exc:
            raise to_litellm_error(exc, model) from exc

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
        while True:
            try:
                yield asyncio.run_coroutine_threadsafe(agen.__anext__(), loop).result()
            except StopAsyncIteration:
                return

    # -- response building -----------------------------------------------------------
    def _response(self, model_response: ModelResponse, model: str, text: str, report: RunReport,
                  req: FusionRequest) -> ModelResponse:
        model_response.choices[0].message = LMessage(role="assistant", content=text)  # type: ignore[union-attr]
        model_response.choices[0].finish_reason = "stop"
        model_response.model = f"{PREFIX}{model}"
        model_response.usage = _usage(report)  # type: ignore[attr-defined]
        model_response._hidden_params["response_cost"] = report.cost
        model_response.chorus = _extension(report, req)  # type: ignore[attr-defined]
        return model_response


def _has_payload(chunk: Any) -> bool:
    return any(
        getattr(c.delta, "content", None) or getattr(c.delta, "tool_calls", None)
        or getattr(c.delta, "function_call", None)
        for c in getattr(chunk, "choices", None) or ()
    )


def _forward_error(req: FusionRequest, exc: BaseException) -> UpstreamError:
    err = map_exception(exc)
    model = req.profile.router.single_model
    return UpstreamError(err.kind, f"single_model {model!r} failed: {err.describe()}", status=err.status)


def _extension(report: RunReport, req: FusionRequest) -> dict:
    return report.extension(include_panel=req.options.include_panel, audit=req.debate.output_mode == "audit")


def _charge(logging_obj, report: RunReport) -> None:
    if logging_obj is not None:
        logging_obj.model_call_details["additional_response_cost"] = report.cost


def _usage(report: RunReport) -> LUsage:
    u = report.usage
    return LUsage(prompt_tokens=u.prompt_tokens, completion_tokens=u.completion_tokens,
                  total_tokens=u.total_tokens)


def _chunk(chunk_id: str, model: str, *, content: str | None = None, reasoning: str | None = None,
           finish_reason: str | None = None) -> ModelResponseStream:
    delta = LDelta(content=content, reasoning_content=reasoning, role="assistant")
    return ModelResponseStream(
        id=chunk_id, model=f"{PREFIX}{model}",
        choices=[StreamingChoices(index=0, delta=delta, finish_reason=finish_reason)],
    )
