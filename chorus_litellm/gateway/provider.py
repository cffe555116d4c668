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

Single flight, replays and webhooks: runs.py. The objects a run is built from: app.py.
The SDK's sync entry points over these async ones: sync_bridge.py.

Every exception leaves as a LiteLLM exception with `num_retries = 0`: the inner calls had
the Router's retries already, and a retried outer call would re-run the whole fusion.
"""

from __future__ import annotations

import contextlib
import dataclasses
import uuid
from collections.abc import AsyncGenerator
from typing import Any

from litellm.llms.custom_llm import CustomLLM
from litellm.types.utils import ModelResponse, ModelResponseStream

from ..core.config import PROVIDER, ProfileConfig, parse_profile
from ..core.errors import RequestError
from ..core.events import AnswerDelta, Progress, Relay, Replayed, RunDone
from ..core.report import RunReport
from ..core.request import FusionRequest, build_request
from .access import check_requested_models, fusion_aliases
from .app import App
from .profiles import version_of
from .runs import run_events
from .sync_bridge import SyncBridge
from ..storage.store import owner_of
from .translate import (
    caller_of,
    client_params,
    extension,
    finish_reason,
    has_payload,
    replayed_usage,
    final_response,
    openai_usage,
    report_of,
    stream_chunk,
    to_litellm_error,
    tool_calls,
)

__all__ = ["FusionHandler", "to_litellm_error"]


class FusionHandler(SyncBridge, CustomLLM):
    """One instance serves every profile. `profiles` come from startup validation or
    `register()`; inside the proxy, the entry's own `model_info.chorus` wins. Profiles
    created at run time (the admin API) join `profiles` through the profile sync
    (gateway/profiles.py); `config_profiles` are the ones it started with (read-only).
    `anonymous_owner` owns the records of callers LiteLLM did not authenticate (SDK
    use: the process itself); None (the proxy) keeps nothing readable for them. The
    other keyword arguments build its `App` (app.py: completer, get_router, embedder,
    signer, store, anonymous_owner, forwarder, observers): the objects its runs are made of."""

    def __init__(self, profiles: dict[str, ProfileConfig] | None = None, *, provider: str = PROVIDER,
                 **app: Any) -> None:
        super().__init__()
        self.profiles = dict(profiles or {})
        self.config_profiles = frozenset(self.profiles)
        self.fusion_models: set[str] = set()  # fusion model names (the x-chorus-debate-id header's)
        self.provider = provider  # its name in custom_provider_map: profiles are `<provider>/<profile>`
        self.app = App(**app)
        self._parsed: dict[str, tuple[dict, ProfileConfig]] = {}

    # The app's objects, as the proxy's routes and the SDK reach them through the handler.
    store = property(lambda self: self.app.store)
    signer = property(lambda self: self.app.signer)
    get_router = property(lambda self: self.app.get_router)
    completer = property(lambda self: self.app.completer)

    def event_log(self):
        return self.app.event_log()

    def webhooks(self):
        return self.app.webhooks()

    def peer_sync(self):
        return self.app.peer_sync()

    def profile_sync(self):
        return self.app.profile_sync(self)

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
        who, params = caller_of(litellm_params), client_params(optional_params or {})
        req = build_request(
            model, self._profile(model, litellm_params), messages, params,
            who, stream=stream, request_id=str(litellm_params.get("litellm_call_id") or uuid.uuid4()),
            provider=self.provider, fusion_models=fusion_aliases(self.app.get_router(), self.provider, params),
        )
        req = dataclasses.replace(req, owner=owner_of(who) or self.app.anonymous_owner, provider=self.provider,
                                  profile_version=version_of(litellm_params.get("model_info")),
                                  trace_parent=(litellm_params.get("metadata") or {}).get("litellm_parent_otel_span"))
        if req.bounty is not None and self.app.signer is None:
            raise RequestError(
                "bounties need a receipt signing key on this proxy (CHORUS_SIGNING_KEY_FILE, made by "
                "`chorus keygen`); none is configured", param="bounty",
            )
        if req.bounty is not None and req.owner is None:
            raise RequestError("bounties need an authenticated caller (a LiteLLM key): a receipt belongs "
                               "to the caller's team or key", param="bounty")
        return req

    # -- async entry points ----------------------------------------------------------
    async def acompletion(self, model, messages, api_base, custom_prompt_dict, model_response,
                          print_verbose, encoding, api_key, logging_obj, optional_params,
                          acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                          timeout=None, client=None) -> ModelResponse:
        try:
            req = self._prepare(model, messages, optional_params, litellm_params, stream=False)
            await check_requested_models(req, litellm_params or {}, self.app.get_router())
            text: list[str] = []
            relayed = None
            async with contextlib.aclosing(run_events(self.app, req, logging_obj, timeout)) as events:
                async for event in events:
                    if isinstance(event, Relay):
                        relayed = event.item
                    elif isinstance(event, AnswerDelta):
                        text.append(event.text)
                    elif isinstance(event, RunDone | Replayed):
                        return final_response(relayed or model_response, "".join(text), report_of(event), req)
        except Exception as exc:  # the one mapping boundary
            raise to_litellm_error(exc, self.name(model)) from exc
        raise to_litellm_error(RuntimeError("the fusion pipeline ended without an answer"), self.name(model))

    # LiteLLM iterates what astreaming returns; its stub says a coroutine of an iterator
    async def astreaming(self, model, messages, api_base, custom_prompt_dict, model_response,  # type: ignore[override]
                         print_verbose, encoding, api_key, logging_obj, optional_params,
                         acompletion=None, litellm_params=None, logger_fn=None, headers=None,
                         timeout=None, client=None) -> AsyncGenerator[ModelResponseStream, None]:
        # An async generator (LiteLLM iterates it without awaiting): errors raised before
        # the first chunk still reach the client as a plain HTTP error, not a broken stream.
        try:
            req = self._prepare(model, messages, optional_params, litellm_params, stream=True)
            await check_requested_models(req, litellm_params or {}, self.app.get_router())
            async with contextlib.aclosing(self._stream(req, logging_obj, timeout)) as chunks:
                async for chunk in chunks:
                    yield chunk
        except Exception as exc:  # the one mapping boundary
            raise to_litellm_error(exc, self.name(model)) from exc

    def name(self, profile: str) -> str:
        return f"{self.provider}/{profile}"

    async def _stream(self, req: FusionRequest, logging_obj, timeout) -> AsyncGenerator:
        """Chunks go out as they come, except the last content chunk and what follows
        it: held until `Done`, so the usage and the `chorus` field ride on it."""
        chunk_id, model = f"chatcmpl-{req.request_id}", req.model
        roled = False  # the role goes on our first chunk only: clients' accumulators concatenate it

        def own(**fields: Any) -> ModelResponseStream:
            nonlocal roled
            chunk, roled = stream_chunk(chunk_id, model, role=None if roled else "assistant", **fields), True
            return chunk

        tail: list = []
        events = run_events(self.app, req, logging_obj, timeout)
        async with contextlib.aclosing(events):
            async for event in events:
                if isinstance(event, RunDone | Replayed):
                    report = report_of(event)
                    calls = tool_calls(report)
                    if calls:  # the synthesizer's tool calls: one delta, then finish_reason "tool_calls"
                        for held in tail:
                            yield held
                        tail = [own(tool_calls=calls), own(finish_reason="tool_calls")]
                    if not tail or not has_payload(tail[0]):
                        tail.insert(0, own(content=""))
                    tail[0].usage = openai_usage(report) if isinstance(report, RunReport) else replayed_usage()
                    tail[0].provider_specific_fields = {"chorus": extension(report, req)}
                    if all(c.choices[0].finish_reason is None for c in tail if c.choices):
                        tail.append(own(finish_reason=finish_reason(report)))
                    for chunk in tail:
                        yield chunk
                    return
                if isinstance(event, Relay):
                    chunk, roled = event.item, True  # the forwarded model's own chunks carry its role
                elif isinstance(event, Progress):
                    chunk = own(reasoning=event.text + "\n")
                elif isinstance(event, AnswerDelta):
                    chunk = own(content=event.text)
                else:  # the client stream carries only the kinds above
                    continue
                if has_payload(chunk):
                    for held in tail:
                        yield held
                    tail = [chunk]
                elif tail:
                    tail.append(chunk)
                else:
                    yield chunk
