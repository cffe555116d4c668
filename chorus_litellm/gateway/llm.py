"""The one seam for inner LLM calls, and its LiteLLM Router implementation.

Stages call a `Completer`; they never import LiteLLM. `RouterCompleter` sends every call
through a `litellm.Router` (inside the proxy: the proxy's own `llm_router`, so deployment
credentials, fallbacks, retries and cooldowns apply). Foreign exceptions are mapped here,
once, to `UpstreamError(kind, ...)`. The test double is `chorus_litellm.testing.FakeCompleter`.

Retries: each stage's retry is decided once, by one layer, so retries never multiply.
- Stages with their own recovery send `OWN_RETRIES` (`num_retries=0`, which the Router
  honours per call over its own and the deployment's setting) and retry, if at all, in
  their own loop inside the run's deadline: the synthesis (one retry before its first
  word, then a panel answer), the judge (two calls in all: a retry of a failed call or
  one JSON repair, then the degraded path) and the gate's classifier (never retried: it
  fails open to fusion at once). Their calls are each one upstream call, so the attempts
  they report (`chorus.synthesis.attempts`, `chorus.judge.attempts`) are exactly what the
  upstream saw.
- Every other call (panel members, debate and consensus rounds) keeps the Router's
  retries (the deployment's or `router_settings.num_retries`; `debate.max_retries` sets
  it per profile); the plugin never re-asks a failed member: the quorum absorbs it. The
  Router's retries are counted from its `x-litellm-attempted-retries` header into
  `Completion.attempts` (`chorus.usage.calls[].attempts`).
A Router `fallbacks` entry (another model group, the operator's routing) still applies
inside one attempt; a Router `retry_policy` overrides a per-call 0 on older LiteLLM
releases (1.98 for one: the Router then retries as the policy says).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

from ..core.errors import UpstreamError
from ..core.ports import OWN_RETRIES, Completer, DefaultParams, Wrapper, worth_retrying  # noqa: F401 - re-exported seam
from ..core.types import Completion, Message, Usage
from . import compat

log = logging.getLogger("chorus_litellm")


def router_attempts(response: Any) -> int:
    """Upstream calls behind a Router response: 1 plus the retries the Router says it made
    (`x-litellm-attempted-retries` in its hidden params); 1 when it does not say."""
    hidden = getattr(response, "_hidden_params", None)
    headers = (hidden.get("additional_headers") if isinstance(hidden, dict) else None) or {}
    try:
        return 1 + max(0, int(headers.get("x-litellm-attempted-retries") or 0))
    except (TypeError, ValueError):
        return 1


def map_exception(exc: BaseException) -> UpstreamError:
    """LiteLLM / httpx / asyncio exceptions -> UpstreamError with a kind and status."""
    import litellm

    if isinstance(exc, UpstreamError):
        return exc
    if isinstance(exc, IndexError):  # `choices` was empty
        return UpstreamError("empty", "the model returned no choices")
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
    """Completer over a `litellm.Router` obtained from `get_router()` at each call.
    `inflight` counts this process's calls in flight per model (a peer's load)."""

    def __init__(self, get_router: Callable[[], Any]) -> None:
        self._get_router = get_router
        self.inflight: Counter[str] = Counter()

    @contextlib.contextmanager
    def _counted(self, model: str) -> Iterator[None]:
        self.inflight[model] += 1
        try:
            yield
        finally:
            self.inflight[model] -= 1
            if not self.inflight[model]:
                del self.inflight[model]

    def router(self) -> Any:
        router = self._get_router()
        if router is None:
            raise UpstreamError("error", "no LiteLLM router is configured for inner calls")
        return router

    async def complete(self, model, messages, *, timeout, stage="", seat="", run="", **params) -> Completion:
        started = time.perf_counter()
        try:
            with self._counted(model):
                response = await asyncio.wait_for(
                    self.router().acompletion(model=model, messages=messages, timeout=timeout,
                                               **_tagged(params, run, stage, seat)),
                    timeout,
                )
            choice = response.choices[0]
        except Exception as exc:
            raise map_exception(exc) from exc
        usage = getattr(response, "usage", None)
        cost = (getattr(response, "_hidden_params", None) or {}).get("response_cost")
        calls = ToolCalls()
        for i, call in enumerate(getattr(choice.message, "tool_calls", None) or ()):
            calls.add(call, i)
        return _completion(model, choice.message.content or "", usage, cost, started, choice.finish_reason,
                           calls.done(), citations(getattr(choice.message, "annotations", None)),
                           router_attempts(response))

    async def stream(self, model, messages, *, timeout, stage="", seat="", run="", **params):
        started = time.perf_counter()
        text: list[str] = []
        usage = finish = None
        calls, attempts = ToolCalls(), 1
        cited: list[Any] = []
        deadline = asyncio.get_running_loop().time() + timeout
        try:
            with self._counted(model):
                # The deadline covers waiting for the model only: a `yield` inside a timeout
                # scope would let the deadline fire in the consumer's code instead.
                async with asyncio.timeout_at(deadline):
                    response = await self.router().acompletion(
                        model=model, messages=messages, timeout=timeout, stream=True,
                        stream_options={"include_usage": True}, **_tagged(params, run, stage, seat),
                    )
                attempts = router_attempts(response)
                chunks = aiter(response)
                while True:
                    async with asyncio.timeout_at(deadline):
                        chunk = await anext(chunks, None)
                    if chunk is None:
                        break
                    if getattr(chunk, "usage", None):
                        usage = chunk.usage
                    for choice in chunk.choices or ():
                        finish = choice.finish_reason or finish
                        piece = getattr(choice.delta, "content", None)
                        for call in getattr(choice.delta, "tool_calls", None) or ():
                            calls.add(call)
                        cited += getattr(choice.delta, "annotations", None) or ()
                        if piece:
                            text.append(piece)
                            yield piece
        except Exception as exc:
            raise map_exception(exc) from exc
        # The cost LiteLLM computed for the stream; priced here when this release does not.
        cost = compat.streamed_cost(usage)
        if cost is None and usage is not None:
            cost = self.price(model, int(usage.prompt_tokens or 0), int(usage.completion_tokens or 0))
        yield _completion(model, "".join(text), usage, cost, started, finish, calls.done(), citations(cited),
                          attempts)

    def estimate(self, model: str, messages: list[Message], text: str) -> Completion:
        """Counted with LiteLLM's tokenizer for the deployment, priced from its
        `model_info` prices (else LiteLLM's cost map); 0 when unknown."""
        import litellm

        underlying = (self._deployment(model).get("litellm_params") or {}).get("model", model)
        try:
            prompt = litellm.token_counter(model=underlying, messages=messages)
            completion = litellm.token_counter(model=underlying, text=text) if text else 0
        except Exception:  # noqa: BLE001 - an estimate: fall back to characters / 4
            prompt = sum(len(str(m.get("content") or "")) for m in messages) // 4
            completion = len(text) // 4
        return Completion(text, model, Usage(prompt, completion), self.price(model, prompt, completion))

    def price(self, model: str, prompt: int, completion: int) -> float:
        """`model_info` prices (else LiteLLM's cost map); 0 when unknown."""
        import litellm

        deployment = self._deployment(model)
        params, info = deployment.get("litellm_params") or {}, deployment.get("model_info") or {}
        underlying = params.get("model", model)
        price_in = info.get("input_cost_per_token", params.get("input_cost_per_token"))
        price_out = info.get("output_cost_per_token", params.get("output_cost_per_token"))
        if price_in is None or price_out is None:
            try:
                price_in, price_out = litellm.cost_per_token(model=underlying, prompt_tokens=1, completion_tokens=1)
            except Exception:  # noqa: BLE001 - unpriced model: counted, not charged
                price_in = price_out = 0.0
        return prompt * float(price_in) + completion * float(price_out)

    def max_output_tokens(self, model: str) -> int | None:
        """`model_info.max_output_tokens` (or `max_tokens`), else LiteLLM's model info."""
        import litellm

        deployment = self._deployment(model)
        info = deployment.get("model_info") or {}
        limit = info.get("max_output_tokens") or info.get("max_tokens")
        if limit is None:
            try:
                known = litellm.get_model_info((deployment.get("litellm_params") or {}).get("model", model))
                limit = known.get("max_output_tokens") or known.get("max_tokens")
            except Exception:  # noqa: BLE001 - not in LiteLLM's map
                return None
        return int(limit) if limit else None

    def _deployment(self, model: str) -> dict:
        try:
            found = self.router().get_model_list(model_name=model) or []
        except Exception:  # noqa: BLE001 - capability probe
            found = []
        return found[0] if found else {}

    def supports_web_search(self, model: str) -> bool:
        """The deployment's `model_info.supports_web_search`, else LiteLLM's model map."""
        import litellm

        deployment = self._deployment(model)
        flag = (deployment.get("model_info") or {}).get("supports_web_search")
        if flag is not None:
            return bool(flag)
        try:
            return bool(litellm.supports_web_search((deployment.get("litellm_params") or {}).get("model", model)))
        except Exception:  # noqa: BLE001 - capability probe: unknown means "no"
            return False

    def supports_json_mode(self, model: str) -> bool:
        import litellm

        try:
            underlying = (self._deployment(model).get("litellm_params") or {}).get("model", model)
            params = litellm.get_supported_openai_params(model=underlying) or []
        except Exception:  # noqa: BLE001 - capability probe: unknown means "no"
            return False
        return "response_format" in params

    def supports_response_schema(self, model: str) -> bool:
        import litellm

        try:
            underlying = (self._deployment(model).get("litellm_params") or {}).get("model", model)
            return bool(litellm.supports_response_schema(model=underlying))
        except Exception:  # noqa: BLE001 - capability probe: unknown means "no"
            return False


def _tagged(params: dict, run: str, stage: str, seat: str) -> dict:
    """The call's params with LiteLLM `metadata.tags` naming run, stage and seat, so
    logging callbacks (and spend logs) can tell a fusion's inner calls apart."""
    if not (run or stage or seat):
        return params
    metadata = dict(params.get("metadata") or {})
    tags = [*metadata.get("tags", ()), "chorus", f"chorus-run:{run}", f"chorus-stage:{stage}", f"chorus-seat:{seat}"]
    metadata.update(tags=tags, chorus={"run": run, "stage": stage, "seat": seat})
    return {**params, "metadata": metadata}


class ToolCalls:
    """Tool calls put together from a response's message, or from stream deltas (each
    names its call by `index`; the first carries the id and name, later ones append
    argument text)."""

    def __init__(self) -> None:
        self.calls: dict[int, dict] = {}

    def add(self, call: Any, index: int | None = None) -> None:
        get = lambda o, k: o.get(k) if isinstance(o, dict) else getattr(o, k, None)  # noqa: E731
        i = int((get(call, "index") if index is None else index) or 0)
        new_id = get(call, "id")
        if new_id and self.calls.get(i, {}).get("id") not in (None, "", new_id):
            i = max(self.calls) + 1  # a whole new call under an index already taken (a delta without one)
        entry = self.calls.setdefault(i, {"id": "", "type": "function", "function": {"name": "", "arguments": ""}})
        function = get(call, "function")
        entry["id"] = get(call, "id") or entry["id"]
        if function is not None:
            entry["function"]["name"] = get(function, "name") or entry["function"]["name"]
            entry["function"]["arguments"] += get(function, "arguments") or ""

    def done(self) -> tuple[dict, ...]:
        return tuple(self.calls[i] for i in sorted(self.calls))


def citations(annotations: Any) -> tuple[dict, ...]:
    """`url_citation` annotations (OpenAI's web search shape) as {url, title}, once each."""
    found: dict[str, dict] = {}
    for note in annotations or ():
        note = note if isinstance(note, dict) else getattr(note, "model_dump", dict)()
        cited = note.get("url_citation") if note.get("type") == "url_citation" else None
        if isinstance(cited, dict) and cited.get("url"):
            found.setdefault(str(cited["url"]), {"url": str(cited["url"]), "title": str(cited.get("title") or "")})
    return tuple(found.values())


def _completion(model, text, usage, cost, started, finish, tool_calls=(), cited=(), attempts=1) -> Completion:
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
        tool_calls=tool_calls,
        citations=cited,
        attempts=attempts,
    )
