"""I/O: one chat completion against an OpenAI-compatible endpoint, and a fusion run's
stored transcript. The only module of `chorus_litellm.evaluation` that touches the network.

    EvalError        base
      AuthError      401: the key was refused (the run stops)
      CallError      anything else that failed one call (recorded against the question)
        Unreachable  no connection to the endpoint at all (stops the run at the first call)

Cost: a fusion response's `chorus.cost.total` (exactly what the caller was charged),
else LiteLLM's `x-litellm-response-cost` header, else 0.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx


class EvalError(Exception):
    pass


class AuthError(EvalError):
    pass


class CallError(EvalError):
    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class Unreachable(CallError):
    pass


@dataclass(frozen=True)
class Reply:
    text: str
    cost: float
    tokens: int
    latency_s: float
    chorus: dict | None  # the fusion extension, when the model is a fusion profile


def api_root(base_url: str) -> str:
    """`http://host:4000`, `http://host:4000/` and `http://host:4000/v1` all mean the same proxy."""
    return base_url.rstrip("/").removesuffix("/v1")


class Endpoint:
    def __init__(self, base_url: str, api_key: str, timeout: float,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.root = api_root(base_url)
        self.http = httpx.AsyncClient(headers={"Authorization": f"Bearer {api_key}"},
                                      timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                                      transport=transport)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def chat(self, model: str, messages: list[dict], *, max_tokens: int | None = None,
                   temperature: float | None = None, chorus: dict | None = None) -> Reply:
        body: dict = {"model": model, "messages": messages}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        if chorus is not None:
            body["chorus"] = chorus
        start = time.monotonic()
        resp = await self._send("POST", f"{self.root}/v1/chat/completions", json=body)
        latency = time.monotonic() - start
        try:
            data = resp.json()
            text = data["choices"][0]["message"].get("content") or ""
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise CallError(f"{model}: unexpected response body: {resp.text[:200]!r}") from exc
        ext = data.get("chorus")
        if isinstance(ext, dict) and isinstance(ext.get("cost"), dict):
            cost = float(ext["cost"].get("total") or 0.0)
        else:
            cost = _float(resp.headers.get("x-litellm-response-cost"))
        tokens = int((data.get("usage") or {}).get("total_tokens") or 0)
        return Reply(text, cost, tokens, latency, ext if isinstance(ext, dict) else None)

    async def transcript(self, debate_id: str, wait_s: float = 5.0) -> dict:
        """GET /chorus/v1/runs/{debate_id} (waits a little for a transcript still being written)."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                resp = await self._send("GET", f"{self.root}/chorus/v1/runs/{debate_id}")
                return resp.json()
            except CallError as exc:
                if exc.status != 404 or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(0.2)

    async def _send(self, method: str, url: str, **kwargs) -> httpx.Response:
        try:
            resp = await self.http.request(method, url, **kwargs)
        except httpx.TimeoutException as exc:
            raise CallError(f"timed out ({type(exc).__name__})") from exc
        except httpx.ConnectError as exc:
            raise Unreachable(f"cannot connect to {self.root}: {exc}") from exc
        except httpx.HTTPError as exc:
            raise CallError(f"{type(exc).__name__}: {exc}") from exc
        if resp.status_code == 401:
            raise AuthError(f"{url} refused the API key (401): pass --api-key or set LITELLM_API_KEY")
        if resp.status_code >= 400:
            raise CallError(f"HTTP {resp.status_code}: {_message(resp)}", resp.status_code)
        return resp


def _message(resp: httpx.Response) -> str:
    try:
        error = resp.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error or resp.text)[:300]
    except (ValueError, AttributeError):
        return resp.text[:300]


def _float(value: str | None) -> float:
    try:
        return float(value) if value else 0.0
    except ValueError:
        return 0.0
