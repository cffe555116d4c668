"""The core's ports: the interfaces the pipeline and the stages call, which adapters implement.

Arrows run one way: adapters (LiteLLM, embeddings, storage) import from here and from the
core's nouns (types.py, events.py); nothing in the core imports an adapter. Each port has
its test double in `chorus_litellm.testing` (FakeCompleter, HashEmbedder).

- `Completer`: every inner model call (adapters/llm.RouterCompleter: LiteLLM's Router).
  `Wrapper` and `DefaultParams` are completers around completers (the run's `Ledger` is
  one); `OWN_RETRIES` and `worth_retrying` are the retry policy stages share.
- `Embedder`: sentence embeddings, off the event loop (adapters/embeddings.py).
- `Forwarder`: the forward leg, the single model's own response relayed (adapters/forward.py).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
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


# The params of a call whose stage retries itself (adapters/llm.py's docstring): the
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
