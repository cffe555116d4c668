"""The forward leg over a LiteLLM Router: the gate's single model answers as it is.

`RouterForwarder.forward()` yields the model's own response (non-streaming) or its
chunks (streaming) as `Relay`s, untouched but for two things: a response's
`_hidden_params` is copied, never mutated (the Router may share it), and a usage-only
chunk is not relayed (the provider puts the run's total usage on the last content
chunk, where LiteLLM keeps it). It ends with the call's `Completion` (usage and cost:
LiteLLM's own, else rebuilt from the chunks with `litellm.stream_chunk_builder`).
Failures are mapped once to `UpstreamError` naming the single model.
"""

from __future__ import annotations

import copy
import time
from collections.abc import AsyncGenerator, Callable
from typing import Any

from ..core.errors import UpstreamError
from ..core.events import Relay
from ..core.types import Completion, Message, Usage
from . import compat
from .llm import RouterCompleter, map_exception


class RouterForwarder:
    def __init__(self, get_router: Callable[[], Any]) -> None:
        self._completer = RouterCompleter(get_router)  # for its router lookup and estimates

    async def forward(self, model: str, messages: list[Message], params: dict[str, Any], *, stream: bool,
                      timeout: float) -> AsyncGenerator[Relay | Completion, None]:
        started = time.perf_counter()
        try:
            router = self._completer.router()
            if not stream:
                response = await router.acompletion(model=model, messages=messages, timeout=timeout, **params)
                relayed = copy.copy(response)
                relayed._hidden_params = dict(response._hidden_params or {})
                yield Relay(relayed)
                text = response.choices[0].message.content or ""
                cost = relayed._hidden_params.get("response_cost")
                yield _completion(model, text, getattr(response, "usage", None), cost, started)
                return
            chunks: list = []
            usage = None
            response = await router.acompletion(model=model, messages=messages, timeout=timeout, stream=True,
                                                stream_options={"include_usage": True}, **params)
            async for chunk in response:
                chunks.append(chunk)
                if getattr(chunk, "usage", None) is not None:
                    usage = chunk.usage
                    if not chunk.choices:
                        continue
                yield Relay(compat.relayed(chunk))
        except Exception as exc:
            err = map_exception(exc)
            raise UpstreamError(err.kind, f"single_model {model!r} failed: {err.describe()}",
                                status=err.status) from exc
        text = "".join(getattr(c.delta, "content", None) or "" for chunk in chunks for c in chunk.choices or ())
        if usage is None:
            yield self._rebuilt(model, messages, chunks, text, started)
        else:
            cost = compat.streamed_cost(usage)
            if cost is None:  # priced here when this LiteLLM does not (gateway/compat.py)
                cost = self._completer.price(model, int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
            yield _completion(model, text, usage, cost, started)

    def _rebuilt(self, model: str, messages: list[Message], chunks: list, text: str, started: float) -> Completion:
        """No usage came with the stream: count it from the chunks, price it like an estimate."""
        import litellm

        estimate = self._completer.estimate(model, messages, text)
        try:
            built = litellm.stream_chunk_builder(chunks, messages=messages)
            counted: Any = getattr(built, "usage", None)  # None: no usage at all, the estimate stands
            usage = Usage(counted.prompt_tokens or 0, counted.completion_tokens or 0)
        except Exception:  # noqa: BLE001 - the estimate's own count stands
            usage = estimate.usage
        per_token = estimate.cost / max(1, estimate.usage.total_tokens)
        return Completion(text, model, usage, per_token * usage.total_tokens, time.perf_counter() - started)


def _completion(model: str, text: str, usage: Any, cost: Any, started: float) -> Completion:
    return Completion(
        text, model,
        Usage(int(getattr(usage, "prompt_tokens", 0) or 0), int(getattr(usage, "completion_tokens", 0) or 0)),
        float(cost or 0.0), time.perf_counter() - started,
    )
