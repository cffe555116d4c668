"""The one seam for inner LLM calls, and its LiteLLM Router implementation.

Stages call a `Completer`; they never import LiteLLM. `RouterCompleter` sends every call
through a `litellm.Router` (inside the proxy: the proxy's own `llm_router`, so deployment
credentials, fallbacks, retries and cooldowns apply). Foreign exceptions are mapped here,
once, to `UpstreamError(kind, ...)`. The test double is `chorus_litellm.testing.FakeCompleter`.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, Protocol

from ..errors import UpstreamError
from ..types import Completion, Message, Usage

log = logging.getLogger("chorus_litellm")


class Completer(Protocol):
    async def complete(
        self, model: str, messages: list[Message], *, timeout: float, **params: Any
    ) -> Completion:
        """One call; returns the whole answer or raises UpstreamError."""

    def stream(
        self, model: str, messages: list[Message], *, timeout: float, **params: Any
    ) -> AsyncIterator[str | Completion]:
        """Yields text deltas as they arrive, then one final Completion (usage, cost)."""

    def supports_json_mode(self, model: str) -> bool:
        """Whether `response_format={"type": "json_object"}` may be sent to `model`."""


def map_exception(exc: BaseException) -> UpstreamError:
    """LiteLLM / httpx / asyncio exceptions -> UpstreamError with a kind and status."""
    import litellm

    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, asyncio.TimeoutError | litellm.Timeout):
        return UpstreamError("timeout", "deadline exceeded")
    if isinstance(exc, litellm.ContentPolicyViolationError):
        return UpstreamError("content_filter", _short(exc), status=400)
    if isinstance(exc, litellm.APIConnectionError):
        return UpstreamError("connection", _short(exc), status=getattr(exc, "status_code", None))
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        return UpstreamError("http_error", _short(exc), status=status)
    return UpstreamError("error", f"{type(exc).__name__}: {_short(exc)}")


def _short(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def proxy_router() -> Any:
    """The running proxy's Router (read at call time: the global is rebound at startup)."""
    module = sys.modules.get("litellm.proxy.proxy_server")
    return getattr(module, "llm_router", None) if module else None


class RouterCompleter:
    """Completer over a `litellm.Router` obtained from `get_router()` at each call."""

    def __init__(self, get_router: Callable[[], Any]) -> None:
        self._get_router = get_router

    def _router(self) -> Any:
        router = self._get_router()
        if router is None:
            raise UpstreamError("error", "no LiteLLM router is configured for inner calls")
        return router

    async def complete(self, model, messages, *, timeout, **params) -> Completion:
        started = time.perf_counter()
        try:
            response = await asyncio.wait_for(
                self._router().acompletion(model=model, messages=messages, timeout=timeout, **params),
                timeout,
            )
        except Exception as exc:  # noqa: BLE001 - the one mapping boundary
            raise map_exception(exc) from exc
        choice = response.choices[0]
        usage = getattr(response, "usage", None)
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        return _completion(
            model, choice.message.content or "", usage, cost, started, choice.finish_reason
        )

    async def stream(self, model, messages, *, timeout, **params):
        started = time.perf_counter()
        text: list[str] = []
        usage = finish = None
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            async with asyncio.timeout_at(deadline):
                response = await self._router().acompletion(
                    model=model, messages=messages, timeout=timeout, stream=True,
                    stream_options={"include_usage": True}, **params,
                )
                async for chunk in response:
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    for choice in chunk.choices or ():
                        finish = choice.finish_reason or finish
                        piece = getattr(choice.delta, "content", None)
                        if piece:
                            text.append(piece)
                            yield piece
        except Exception as exc:  # noqa: BLE001 - the one mapping boundary
            raise map_exception(exc) from exc
        # LiteLLM puts the computed cost on the streamed usage object.
        cost = getattr(usage, "cost", None) if usage is not None else None
        yield _completion(model, "".join(text), usage, cost, started, finish)

    def supports_json_mode(self, model: str) -> bool:
        import litellm

        try:
            deployment = self._router().get_model_list(model_name=model) or []
            underlying = deployment[0]["litellm_params"]["model"] if deployment else model
            params = litellm.get_supported_openai_params(model=underlying) or []
        except Exception:  # noqa: BLE001 - capability probe: unknown means "no"
            return False
        return "response_format" in params


def _completion(model, text, usage, cost, started, finish) -> Completion:
    if finish == "content_filter":
        raise UpstreamError("content_filter", "the model's content filter stopped the answer")
    if cost is None:
        log.warning("no cost reported for an inner call to %s; counted as 0", model)
    return Completion(
        text=text,
        model=model,
        usage=Usage(
            int(getattr(usage, "prompt_tokens", 0) or 0),
            int(getattr(usage, "completion_tokens", 0) or 0),
        ),
        cost=float(cost or 0.0),
        latency_s=time.perf_counter() - started,
        finish_reason=finish,
    )


class DefaultParams:
    """A Completer that adds default params (e.g. LiteLLM's `num_retries`) to every call."""

    def __init__(self, inner: Completer, **defaults: Any) -> None:
        self.inner = inner
        self.defaults = defaults

    async def complete(self, model, messages, *, timeout, **params) -> Completion:
        return await self.inner.complete(model, messages, timeout=timeout, **{**self.defaults, **params})

    def stream(self, model, messages, *, timeout, **params):
        return self.inner.stream(model, messages, timeout=timeout, **{**self.defaults, **params})

    def supports_json_mode(self, model: str) -> bool:
        return self.inner.supports_json_mode(model)
