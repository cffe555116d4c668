"""A fake OpenAI-compatible server for tests, benchmarks and `chorus serve --demo`.

No instruct model can be downloaded here, so this stands in for Ollama or vLLM. Its
behaviour is chosen by words in the requested model name:

    fail500 / fail429   answer with that HTTP status
    once500             answer 500 to the model's odd-numbered calls (1st, 3rd, ...): a
                        transient error that one retry gets past
    filter              finish with finish_reason "content_filter"
    empty               return an empty answer
    hang                never answer (exercises deadlines)
    slow                take 10x the base latency (a straggler)
    badjson             answer JSON-mode requests with text that is not JSON
    drip                stream 0.2 s per word (a long synthesis to disconnect from)
    midfail             stream three words, then break the connection (not streamed:
                        send the start of the JSON body, then break the connection)

A request with `tools` (and `tool_choice` other than "none") is answered like an agent's
model: a call of the first tool (or the one `tool_choice` names), with the first user
message as `{"query": ...}`, unless the conversation already has a tool result, which it
answers in text (one tool step per conversation). A request with `web_search_options`
gets an answer that cites one source, as a `url_citation` annotation (OpenAI's web search
shape; streamed on a chunk of its own). GET /seen lists each request's model, whether it
carried tools and web search, its message roles and its last message (cleared by POST /reset).

Otherwise it answers after `latency` seconds: judge requests (JSON mode) get a valid
analysis built from the labels in the prompt, classifier requests get a difficulty
score, consensus votes accept (unless the model name says "reject"), council rank
requests rank the labels shown in letter order, `chorus eval`'s
multiple-choice prompts get "Answer: <letter>" (`eval_letter`: a hash of the model and
the question picks the option) and its pairwise judge prompts a verdict
(`pairwise_verdict`), everything else a short deterministic answer. Streams send one word per chunk
and a usage chunk when asked. GET /stats counts calls per model; POST /reset clears it.

With `cast` (`--cast`, what `chorus serve --demo` runs), ordinary answers, the judge, the
writer and consensus votes come from the demo's cast instead (demo/cast.py): members
that take different positions, read each other and come round over the rounds.

Run: python -m chorus_litellm.demo.fake_upstream --port 8001 --latency 0.5 [--cast]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import re
import time
from collections import Counter

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, StreamingResponse
from starlette.routing import Route

from . import cast as demo_cast
from .cast import prompt_text as _prompt_text
from ..evaluation.prompts import MC_ASK_PATTERN, PAIRWISE_ANSWERS, PAIRWISE_MARKER

LABEL = re.compile(r'"label":\s*"([A-Z]{1,2})"')


def _hash(*parts: str) -> int:
    return int(hashlib.sha256("\n".join(parts).encode()).hexdigest(), 16)


def eval_letter(model: str, question: str) -> str | None:
    """The option this fake picks for a `chorus eval` multiple-choice prompt (the whole
    user message that ends with "Answer with the letter (A, B, C or D) only."), or None
    if `question` is not one. Public so tests can predict every model's answer."""
    match = MC_ASK_PATTERN.search(question)
    if not match:
        return None
    letters = [*match.group(1).split(", "), match.group(2)]
    return letters[_hash(model, question) % len(letters)]


def pairwise_verdict(answer_a: str, answer_b: str) -> str:
    """'A' or 'B' for `chorus eval`'s pairwise judge prompt: each answer has a hashed
    quality 0-2 and the better one wins; equal quality gets 'A', a position bias that
    eval's second, swapped ask turns into a tie."""
    qa, qb = _hash(answer_a) % 3, _hash(answer_b) % 3
    return "B" if qb > qa else "A"


def _eval_answer(model: str, messages: list[dict], text: str) -> str | None:
    if PAIRWISE_MARKER in text:
        match = PAIRWISE_ANSWERS.search(text)
        return f"Both answers address the question. [[{pairwise_verdict(*match.groups()) if match else 'C'}]]"
    for message in messages:
        letter = eval_letter(model, _prompt_text([message]))
        if letter:
            return f"{model} weighed the options. Answer: {letter}"
    return None


def _answer(model: str, body: dict) -> str:
    messages = body.get("messages") or []
    text = _prompt_text(messages)
    json_mode = (body.get("response_format") or {}).get("type") == "json_object"
    if "CHORUS-VOTE" in text:
        return json.dumps({"accept": "reject" not in model, "objection": "" if "reject" not in model else "no"})
    if "CHORUS-CLASSIFIER" in text:
        return json.dumps({"difficulty": 0.9 if "hard" in text.lower() else 0.1})
    if "CHORUS-RANK" in text:  # the council: the labels shown, in letter order
        return json.dumps({"ranking": sorted(set(LABEL.findall(text)))})
    if json_mode or "CHORUS-JUDGE" in text:
        if "badjson" in model:
            return "I think answer A is best, no JSON today."
        labels = sorted(set(LABEL.findall(text)))
        return json.dumps({
            "consensus": [{"claim": "The answers agree on the main point.", "support": labels}],
            "contradictions": [],
            "unique_insights": [{"claim": "One answer adds a detail.", "support": labels[:1]}],
            "blind_spots": ["Nobody cited sources."],
            "best": labels[0] if labels else None,
        })
    if (answer := _eval_answer(model, messages, text)) is not None:
        return answer
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    words = int(body.get("max_tokens") or 0) or 24
    filler = " ".join(f"w{i}" for i in range(max(0, min(words, 400) - 4)))
    return f"{model} answers {digest}: {filler}".strip()


def _tool_call(body: dict, n: int) -> dict | None:
    """The tool call an agent's model would make here (module docstring), or None."""
    tools = [t for t in body.get("tools") or [] if isinstance(t, dict) and t.get("type") == "function"]
    choice = body.get("tool_choice")
    messages = body.get("messages") or []
    if not tools or choice == "none" or any(m.get("role") == "tool" for m in messages):
        return None
    named = choice.get("function", {}).get("name") if isinstance(choice, dict) else None
    name = named or tools[0]["function"]["name"]
    asked = _prompt_text([m for m in messages if m.get("role") == "user"][:1])
    return {"id": f"call_fake_{n}", "type": "function",
            "function": {"name": name, "arguments": json.dumps({"query": asked[:80]})}}


def _citations(model: str, text: str) -> list[dict]:
    """The one source a web-searching model cites for `text` (a stable URL per answer)."""
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return [{"type": "url_citation", "url_citation": {
        "start_index": 0, "end_index": len(text), "url": f"https://example.org/{model}/{digest}",
        "title": f"What {model} found"}}]


class FakeUpstream:
    def __init__(self, latency: float = 0.0, token_delay: float = 0.0, cast: bool = False) -> None:
        self.latency = latency
        self.token_delay = token_delay
        self.cast = cast
        self.calls: Counter[str] = Counter()
        self.seen: list[dict] = []
        self.app = Starlette(routes=[
            Route("/seen", lambda r: JSONResponse(self.seen), methods=["GET"]),
            Route("/v1/chat/completions", self.chat, methods=["POST"]),
            Route("/chat/completions", self.chat, methods=["POST"]),
            Route("/stats", self.stats, methods=["GET"]),
            Route("/reset", self.reset, methods=["POST"]),
            Route("/health", lambda r: JSONResponse({"ok": True}), methods=["GET"]),
        ])

    async def stats(self, request: Request) -> JSONResponse:
        return JSONResponse(dict(self.calls))

    async def reset(self, request: Request) -> JSONResponse:
        self.calls.clear()
        self.seen.clear()
        return JSONResponse({"ok": True})

    async def chat(self, request: Request):
        body = await request.json()
        model = str(body.get("model", ""))
        self.calls[model] += 1
        self.seen.append({"model": model, "tools": bool(body.get("tools")), "web_search": "web_search_options" in body,
                          "roles": [m.get("role") for m in body.get("messages") or []],
                          "last": _prompt_text((body.get("messages") or [])[-1:])[:4000]})
        for status in (500, 429):
            if f"fail{status}" in model:
                return JSONResponse(
                    {"error": {"message": f"fake upstream error {status}", "type": "server_error"}},
                    status_code=status,
                )
        if "once500" in model and self.calls[model] % 2:
            return JSONResponse({"error": {"message": "fake upstream: a transient 500", "type": "server_error"}},
                                status_code=500)
        if "hang" in model:
            await asyncio.sleep(3600)
        await asyncio.sleep(self.latency * (10 if "slow" in model else 1) * self._pace(model))
        call = _tool_call(body, self.calls[model])
        text = "" if "empty" in model or call else self._answer(model, body)
        notes = _citations(model, text) if "web_search_options" in body and text else []
        text += f" (source: {notes[0]['url_citation']['url']})" if notes else ""
        finish = "content_filter" if "filter" in model else "tool_calls" if call else "stop"
        prompt_tokens = max(1, len(_prompt_text(body.get("messages") or [])) // 4)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(text.split()),
            "total_tokens": prompt_tokens + len(text.split()),
        }
        rid = f"chatcmpl-fake-{self.calls[model]}"
        if not body.get("stream") and "midfail" in model:
            return StreamingResponse(self._broken_body(rid, model, text), media_type="application/json")
        if not body.get("stream"):
            return JSONResponse({
                "id": rid, "object": "chat.completion", "created": int(time.time()), "model": model,
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text or None if call else text,
                                                     **({"tool_calls": [call]} if call else {}),
                                                     **({"annotations": notes} if notes else {})},
                             "finish_reason": finish}],
                "usage": usage,
            })
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        return StreamingResponse(
            self._stream(rid, model, text, finish, usage if include_usage else None, call, notes),
            media_type="text/event-stream",
        )

    def _pace(self, model: str) -> float:
        """The cast's members think at their own pace (0.6-1.4 x the latency); 1 otherwise."""
        return 0.6 + (_hash(model) % 9) / 10 if self.cast else 1.0

    def _answer(self, model: str, body: dict) -> str:
        cast = demo_cast.reply(model, body.get("messages") or []) if self.cast else None
        return cast if cast is not None else _answer(model, body)

    async def _broken_body(self, rid, model, text):
        """A non-streamed answer whose connection breaks after its first three words."""
        words = " ".join(text.split(" ")[:3])
        yield (f'{{"id": "{rid}", "object": "chat.completion", "model": "{model}", "choices": [{{"index": 0, '
               f'"message": {{"role": "assistant", "content": "{words}')
        await asyncio.sleep(0.01)
        raise ConnectionResetError("fake upstream: the answer broke mid-body")

    async def _stream(self, rid, model, text, finish, usage, call=None, notes=()):
        def chunk(delta, finish_reason=None, **extra):
            data = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [{"index": 0, "delta": delta,
                                                 "finish_reason": finish_reason}], **extra}
            return f"data: {json.dumps(data)}\n\n"

        yield chunk({"role": "assistant", "content": ""})
        if call:  # the name first, then the arguments in two pieces, as OpenAI streams them
            args = call["function"]["arguments"]
            yield chunk({"tool_calls": [{"index": 0, "id": call["id"], "type": "function",
                                         "function": {"name": call["function"]["name"], "arguments": ""}}]})
            for piece in (args[: len(args) // 2], args[len(args) // 2:]):
                yield chunk({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        words = text.split(" ") if text else []
        for i, word in enumerate(words):
            if "midfail" in model and i == 3:
                raise ConnectionResetError("fake upstream: the stream broke mid-answer")
            delay = 0.2 if "drip" in model else self.token_delay
            if delay:
                await asyncio.sleep(delay)
            yield chunk({"content": word if i == 0 else " " + word})
        if notes:
            yield chunk({"annotations": list(notes)})
        yield chunk({}, finish)
        if usage:
            data = {"id": rid, "object": "chat.completion.chunk", "created": int(time.time()),
                    "model": model, "choices": [], "usage": usage}
            yield f"data: {json.dumps(data)}\n\n"
        yield "data: [DONE]\n\n"


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per call")
    parser.add_argument("--token-delay", type=float, default=0.0, help="seconds per streamed word")
    parser.add_argument("--cast", action="store_true",
                        help="panel answers from the demo's cast (demo/cast.py): members that disagree and come round")
    args = parser.parse_args(argv)
    upstream = FakeUpstream(args.latency, args.token_delay, args.cast)
    # Idle connections are kept 75 s (uvicorn's default is 5 s): LiteLLM's clients keep one
    # for reuse up to 15 s (aiohttp) and a call sent as the server closes it fails with a
    # connection error. Real upstreams keep them longer than clients do; so does this one.
    uvicorn.run(upstream.app, host=args.host, port=args.port, log_level="warning", timeout_keep_alive=75)


if __name__ == "__main__":
    main()
