"""Test doubles shipped with the library (like httpx's MockTransport).

`FakeCompleter` stands in for LiteLLM at the `Completer` seam: queue replies per model
with `enqueue()`, or let it answer by default like the fake upstream (judge prompts get
valid analysis JSON, everything else a short deterministic answer). It records calls.

    fake = FakeCompleter()
    fake.enqueue("model-a", "Paris.")                       # text
    fake.enqueue("model-b", UpstreamError("timeout", "slow"))  # a failure
    fake.enqueue("judge", Reply("not json"), Reply('{"consensus": []}'))
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections import defaultdict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .core.errors import UpstreamError
from .demo.fake_upstream import _answer
from .core.events import Relay
from .core.types import Completion, Message, Usage


@dataclass(frozen=True)
class Reply:
    text: str
    delay: float = 0.0
    usage: Usage = field(default_factory=lambda: Usage(10, 5))
    cost: float = 0.001
    # For streams: fail with this error after sending `fail_after` words.
    error: UpstreamError | None = None
    fail_after: int = 0
    word_delay: float = 0.0  # streams: seconds before each word
    tool_calls: tuple[dict, ...] = ()  # the model calls these tools (OpenAI shape)
    citations: tuple[dict, ...] = ()  # sources it cites ({url, title})


@dataclass
class Call:
    model: str
    messages: list[Message]
    params: dict[str, Any]
    stream: bool = False
    cancelled: bool = False
    stage: str = ""
    seat: str = ""


# What `FakeCompleter.estimate` charges per token of a call that never reported usage.
ESTIMATE_PRICE = 1e-4


@dataclass
class FakeCompleter:
    json_models: set[str] = field(default_factory=set)
    schema_models: set[str] = field(default_factory=set)
    calls: list[Call] = field(default_factory=list)
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # model -> USD per in / out token
    output_limits: dict[str, int] = field(default_factory=dict)  # model -> max output tokens
    search_models: set[str] = field(default_factory=set)  # models that take web_search_options

    def __post_init__(self) -> None:
        self._queues: dict[str, deque] = defaultdict(deque)

    def enqueue(self, model: str, *replies: str | Reply | UpstreamError) -> FakeCompleter:
        self._queues[model].extend(replies)
        return self

    def calls_to(self, model: str) -> list[Call]:
        return [c for c in self.calls if c.model == model]

    def _next(self, model: str, messages: list[Message], params: dict) -> Reply:
        queue = self._queues.get(model)
        item = queue.popleft() if queue else Reply(_answer(model, {"messages": messages, **params}))
        if isinstance(item, UpstreamError):
            return Reply("", error=item)
        return Reply(item) if isinstance(item, str) else item

    async def _wait(self, call: Call, delay: float, timeout: float) -> None:
        try:
            if delay > timeout:
                await asyncio.sleep(timeout)
                raise UpstreamError("timeout", "deadline exceeded")
            await asyncio.sleep(delay)
        except asyncio.CancelledError:
            call.cancelled = True
            raise

    async def complete(self, model: str, messages: list[Message], *, timeout: float, stage: str = "",
                       seat: str = "", run: str = "", **params: Any) -> Completion:
        call = Call(model, list(messages), dict(params), stage=stage, seat=seat)
        self.calls.append(call)
        reply = self._next(model, messages, params)
        await self._wait(call, reply.delay, timeout)
        if reply.error is not None:
            raise reply.error
        return Completion(reply.text, model, reply.usage, reply.cost, reply.delay,
                          "tool_calls" if reply.tool_calls else "stop", reply.tool_calls, reply.citations)

    async def stream(self, model: str, messages: list[Message], *, timeout: float, stage: str = "",
                     seat: str = "", run: str = "", **params: Any):
        call = Call(model, list(messages), dict(params), stream=True, stage=stage, seat=seat)
        self.calls.append(call)
        reply = self._next(model, messages, params)
        await self._wait(call, reply.delay, timeout)
        words = reply.text.split(" ") if reply.text else []
        try:
            for i, word in enumerate(words):
                if reply.error is not None and i >= reply.fail_after:
                    break
                if reply.word_delay:
                    await self._wait(call, reply.word_delay, timeout)
                yield word if i == 0 else " " + word
        except GeneratorExit:  # the consumer closed the stream mid-answer
            call.cancelled = True
            raise
        if reply.error is not None:
            raise reply.error
        yield Completion(reply.text, model, reply.usage, reply.cost, reply.delay,
                         "tool_calls" if reply.tool_calls else "stop", reply.tool_calls, reply.citations)

    def estimate(self, model: str, messages: list[Message], text: str) -> Completion:
        """Prompt: its words; completion: the words of `text`; ESTIMATE_PRICE a token."""
        prompt = sum(len(str(m.get("content") or "").split()) for m in messages)
        usage = Usage(prompt, len(text.split()))
        return Completion(text, model, usage, usage.total_tokens * ESTIMATE_PRICE)

    def price(self, model: str, prompt: int, completion: int) -> float:
        """ESTIMATE_PRICE a token, or `prices[model]` (per input, per output token)."""
        per_in, per_out = self.prices.get(model, (ESTIMATE_PRICE, ESTIMATE_PRICE))
        return prompt * per_in + completion * per_out

    def max_output_tokens(self, model: str) -> int | None:
        return self.output_limits.get(model)

    def supports_web_search(self, model: str) -> bool:
        return model in self.search_models

    def supports_json_mode(self, model: str) -> bool:
        return model in self.json_models or model in self.schema_models

    def supports_response_schema(self, model: str) -> bool:
        return model in self.schema_models


class FakeForwarder:
    """The forward leg's test double: the gate's single model answers through a
    FakeCompleter; each text piece (or the whole answer) is relayed as is."""

    def __init__(self, completer: FakeCompleter) -> None:
        self.completer = completer

    async def forward(self, model: str, messages: list[Message], params: dict[str, Any], *, stream: bool,
                      timeout: float):
        if not stream:
            completion = await self.completer.complete(model, messages, timeout=timeout, **params)
            yield Relay(completion.text)
            yield completion
            return
        async for piece in self.completer.stream(model, messages, timeout=timeout, **params):
            yield piece if isinstance(piece, Completion) else Relay(piece)


class HashEmbedder:
    """A deterministic bag-of-words embedder: cosine similarity = shared-word overlap.

    Stands in for sentence-transformers where a test is about debate logic, not semantics.
    """

    model_id = "test:hash-bow-256"

    def __init__(self, dim: int = 256) -> None:
        self.dim = dim
        self.calls = 0

    async def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in re.findall(r"[a-z0-9]+", text.lower()):
                out[row, int(hashlib.md5(word.encode()).hexdigest()[:8], 16) % self.dim] += 1.0
            norm = np.linalg.norm(out[row])
            if norm:
                out[row] /= norm
        return out


# A fixed Ed25519 seed for golden receipts in tests. Never use it to sign anything real.
TEST_SIGNING_SEED = bytes(range(32))
