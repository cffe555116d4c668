"""Synthesis: one model writes a new answer grounded in the judge's analysis, streamed.

Yields text deltas as the synthesizer produces them, then one `Synthesis`. If the
synthesizer fails before its first token with an error worth retrying (a timeout, a
dropped connection, a 429 or a 5xx), it is asked once more, as the Rust seed does; the
run's deadline caps that second call like any other. The calls say `num_retries=0`, so
LiteLLM's Router never retries them too: `Synthesis.attempts` is the number of upstream
calls made (at most 2). If that fails too (or the error was not worth retrying), the
judge's best-supported panel answer is yielded instead and the `Synthesis` says so; after
its first token, the partial answer stands, marked `cut` with the error (tokens already
sent cannot be taken back; the response then ends with finish_reason "length"). When the
client asked for a `response_format`, a fallback answer must itself be JSON, else the
failure stands: a 504 when the synthesizer ran out of time, else a 502.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from contextlib import aclosing
from typing import Any

from ..ports import OWN_RETRIES, Completer, worth_retrying
from ..config import AggregatorConfig
from ..errors import DeadlineError, UpstreamError
from ..request import prompt_text, wants_json
from ..types import Completion, Message, PanelAnswer, Synthesis, Verdict
from . import prompts
from .judge import best_answer


async def write(
    completer: Completer,
    config: AggregatorConfig,
    messages: list[Message],
    verdict: Verdict,
    answers: tuple[PanelAnswer, ...],
    params: dict[str, Any],
    stream: bool = True,
    vote: dict | None = None,
) -> AsyncGenerator[str | Synthesis, None]:
    """`stream=False` makes one plain call (less per-chunk work) and yields it whole;
    `vote` is the panel's vote on an extractable answer (extract.panel_vote)."""
    question = prompt_text([m for m in messages if m.get("role") == "user"][-1:])
    request = prompts.writer_request(
        messages, prompts.SYNTH_SYSTEM + ("\n" + prompts.SYNTH_TOOLS if params.get("tools") else ""),
        prompts.synth_user(list(verdict.labelled), verdict.raw, vote, question)
    )
    sent: list[str] = []
    call = completer.stream if stream else _whole(completer)
    for attempt in (1, 2):
        try:
            pieces = call(config.synthesizer, request, timeout=config.synthesis_timeout_s, stage="synthesis",
                          seat="synthesizer", **{**params, **OWN_RETRIES})
            async with aclosing(pieces):
                async for piece in pieces:
                    if isinstance(piece, Completion):
                        # + any retries a Router that ignored num_retries=0 made anyway
                        yield Synthesis(piece.text, piece, attempts=attempt - 1 + piece.attempts)
                        return
                    sent.append(piece)
                    yield piece
        except UpstreamError as exc:
            if sent:
                yield Synthesis("".join(sent), None, error=f"synthesizer failed mid-answer: {exc.describe()}",
                                attempts=attempt, cut=True)
                return
            if attempt == 1 and worth_retrying(exc):
                continue  # once, within the run's deadline (the ledger caps the second call)
            best = best_answer(verdict, answers)
            if wants_json(params) and not is_json(best.completion.text):
                detail = (f"synthesizer failed ({exc.describe()}) and no panel answer is the JSON the "
                          "response_format asks for")
                if exc.kind == "timeout":
                    raise DeadlineError(detail) from exc
                raise UpstreamError(exc.kind, detail, status=exc.status) from exc
            yield best.completion.text
            yield Synthesis(
                best.completion.text, None, fallback=True, fallback_source=best.seat.name,
                error=f"synthesizer failed: {exc.describe()}", attempts=attempt,
            )
            return


retryable = worth_retrying  # the name this module used to define it under


def is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _whole(completer: Completer):
    """A non-streaming call shaped like `Completer.stream`: the text, then the Completion."""

    async def call(model: str, messages: list[Message], **kwargs: Any) -> AsyncGenerator[str | Completion, None]:
        completion = await completer.complete(model, messages, **kwargs)
        yield completion.text
        yield completion

    return call
