"""Router gate: fuse hard prompts, send easy ones to one model.

`auto` scores difficulty from cheap text features first. Only when that score lands
within `band` of the threshold, and a classifier is configured, does a small model get
asked (strict JSON). If the classifier fails in any way the gate fails open to fusion:
a wasted panel costs money, a wrong single answer on a hard prompt costs trust. It is
asked once, never retried (its call says `num_retries=0`, so LiteLLM's Router does not
retry it either): the gate sits on the critical path, and failing open is the recovery.
"""

from __future__ import annotations

import math
import re
from typing import Literal

from ..ports import OWN_RETRIES, Completer
from ..config import RouterConfig
from ..errors import UpstreamError
from ..types import Message, Route
from . import prompts
from .jsonout import json_object

# Words that signal reasoning, comparison or stakes. Each hit adds evidence of difficulty.
HARD_WORDS = re.compile(
    r"\b(why|explain|prove|derive|compare|trade-?offs?|pros and cons|analy[sz]e|evaluate|design|"
    r"architecture|optimi[sz]e|debug|step[- ]by[- ]step|algorithm|complexity|strategy|risk|"
    r"diagnos\w*|legal|medical|security|ethic\w*|should i|recommend|plan)\b",
    re.IGNORECASE,
)
CODE = re.compile(r"```|\bdef |\bclass |\bfunction\b|[{};]\s*$", re.MULTILINE)
MATH = re.compile(r"\d\s*[-+*/^=]\s*\d|\\frac|\bintegral\b|\bprobability\b|\bequation\b", re.IGNORECASE)
EASY = re.compile(r"^\s*(hi|hello|hey|thanks|thank you|ok|okay|yes|no|ping)\b[\s!.?]*$", re.IGNORECASE)


def difficulty(text: str) -> tuple[float, dict[str, float]]:
    """Cheap difficulty score in [0, 1] and the features behind it (reported to the client).

    A logistic over: length (log words), hard-word hits, question count, code, math.
    Weights are set so a greeting scores ~0.05, a one-line fact question ~0.3, and a
    multi-part "compare/explain/design" request or any code/math ~0.7+.
    """
    words = len(text.split())
    features = {
        "log_words": math.log1p(words),
        "hard_words": float(min(len(HARD_WORDS.findall(text)), 5)),
        "questions": float(min(text.count("?"), 5)),
        "code": 1.0 if CODE.search(text) else 0.0,
        "math": 1.0 if MATH.search(text) else 0.0,
        "greeting": 1.0 if EASY.match(text) else 0.0,
    }
    z = (
        -2.6
        + 0.45 * features["log_words"]
        + 0.9 * features["hard_words"]
        + 0.3 * features["questions"]
        + 1.6 * features["code"]
        + 1.4 * features["math"]
        - 3.0 * features["greeting"]
    )
    return 1.0 / (1.0 + math.exp(-z)), features


def parse_classifier(text: str) -> float:
    value = float(json_object(text)["difficulty"])
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"difficulty {value} is outside [0, 1]")
    return value


async def decide(
    config: RouterConfig, policy: str | None, messages: list[Message], text: str, completer: Completer
) -> Route:
    """The route for this request (the completer records the classifier's call, if any)."""
    policy = policy or config.policy
    if policy == "always_fuse":
        return Route("fuse", policy, "policy")
    if policy == "never_fuse":
        return Route("single", policy, "policy")
    score, _ = difficulty(text)
    cls = config.classifier
    if cls is None or abs(score - config.threshold) > cls.band:
        decision: Literal["fuse", "single"] = "fuse" if score >= config.threshold else "single"
        return Route(decision, policy, "features", score=round(score, 4))
    try:
        completion = await completer.complete(
            cls.model,
            prompts.with_context(messages, prompts.CLASSIFIER_SYSTEM, "Rate the conversation above."),
            timeout=cls.timeout_s,
            stage="classifier",
            seat="classifier",
            max_tokens=20,
            temperature=0,
            **OWN_RETRIES,
        )
    except UpstreamError as exc:
        return Route("fuse", policy, f"classifier failed ({exc.kind}); fail open", score=round(score, 4))
    try:
        judged = parse_classifier(completion.text)
    except (ValueError, KeyError, TypeError) as exc:
        return Route("fuse", policy, f"classifier gave invalid JSON ({type(exc).__name__}); fail open",
                     score=round(score, 4))
    decision = "fuse" if judged >= config.threshold else "single"
    return Route(decision, policy, "classifier", score=round(score, 4), classifier_score=judged)
