"""Consult gate (`router.policy: consult`): the single model decides when to fuse.

The single model answers the request as it would alone, offered one more tool beside the
client's: `consult_panel`, private to the run. If it calls it, the panel, judge and
synthesis run: the panel reads the conversation with the model's question as its task
(the synthesizer still answers the user). If it does not, its answer (text, or calls of
the client's own tools) is the response: one call, no panel. The private tool never
reaches the client: a fused run answers with the synthesis, an unfused one with calls of
the client's tools only. The decision call is not streamed (the answer is sent once the
model has decided, as LiteLLM's fusion does); like the classifier it is never retried and
fails open: an error on the decision call fuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..errors import UpstreamError
from ..ports import OWN_RETRIES, Completer
from ..request import prompt_text
from ..types import Completion, Message
from . import prompts

TOOL_NAME = "consult_panel"
TOOL = {"type": "function", "function": {
    "name": TOOL_NAME,
    "description": prompts.CONSULT_TOOL,
    "parameters": {"type": "object", "required": ["question"], "properties": {
        "question": {"type": "string", "description": "The question the panel should answer, self-contained."}}}}}


@dataclass(frozen=True)
class Decision:
    """The single model's decision: `question` set when it consulted the panel (then
    `completion` is the call that asked); else `completion` is its answer. `error`: the
    decision call failed (the run fuses on the user's own question)."""

    completion: Completion | None
    question: str | None
    error: str | None = None


async def decide(completer: Completer, model: str, messages: list[Message], params: dict[str, Any], *,
                 timeout: float) -> Decision:
    tools = [*(params.get("tools") or []), TOOL]
    ask = {**params, "tools": tools, "tool_choice": params.get("tool_choice") or "auto", **OWN_RETRIES}
    try:
        completion = await completer.complete(model, messages, timeout=timeout, stage="gate", seat="single_model",
                                              **ask)
    except UpstreamError as exc:
        return Decision(None, prompt_text(messages[-1:]), error=exc.kind)
    call = next((c for c in completion.tool_calls if (c.get("function") or {}).get("name") == TOOL_NAME), None)
    if call is None:
        return Decision(completion, None)
    return Decision(completion, _question(call, messages))


def _question(call: dict, messages: list[Message]) -> str:
    """The question the model asked (`question`; `query` as some models name it), else
    the user's last message."""
    try:
        args = json.loads((call.get("function") or {}).get("arguments") or "{}")
    except ValueError:
        args = {}
    asked = args.get("question") or args.get("query") if isinstance(args, dict) else None
    return str(asked).strip() if asked else prompt_text([m for m in messages if m.get("role") == "user"][-1:])
