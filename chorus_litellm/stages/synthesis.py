"""Synthesis: one model writes a new answer grounded in the judge's analysis, streamed.

Yields text deltas as the synthesizer produces them, then one `Synthesis`. If the
synthesizer fails before its first token, the judge's best-supported panel answer is
yielded instead and the `Synthesis` says so; after its first token, the partial answer
stands and the error is recorded (tokens already sent cannot be taken back).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ..adapters.llm import Completer
from ..config import AggregatorConfig
from ..errors import UpstreamError
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
) -> AsyncIterator[str | Synthesis]:
    """`stream=False` makes one plain call (less per-chunk work) and yields it whole."""
    request = prompts.with_context(
        messages, prompts.SYNTH_SYSTEM, prompts.synth_user(list(verdict.labelled), verdict.raw)
    )
    sent: list[str] = []
    call = completer.stream if stream else _whole(completer)
    try:
        async for piece in call(config.synthesizer, request, timeout=config.synthesis_timeout_s, **params):
            if isinstance(piece, Completion):
                yield Synthesis(piece.text, piece)
                return
            sent.append(piece)
            yield piece
    except UpstreamError as exc:
        if sent:
            yield Synthesis("".join(sent), None, error=f"synthesizer failed mid-answer: {exc.describe()}")
            return
        best = best_answer(verdict, answers)
        yield best.completion.text
        yield Synthesis(
            best.completion.text, None, fallback=True, fallback_source=best.seat.name,
            error=f"synthesizer failed: {exc.describe()}",
        )


def _whole(completer: Completer):
    """A non-streaming call shaped like `Completer.stream`: the text, then the Completion."""

    async def call(model: str, messages: list[Message], **kwargs: Any) -> AsyncIterator[str | Completion]:
        completion = await completer.complete(model, messages, **kwargs)
        yield completion.text
        yield completion

    return call
