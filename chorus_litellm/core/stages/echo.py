"""Echo watchdog: answers that add nothing leave the pool for the round.

Three checks, each with the reason recorded:
- `empty` / `refusal`: no content, or a stock refusal.
- `parrot`: the answer restates the question. Residual test: remove the answer
  embedding's projection on the question embedding; if what is left is small
  (norm < `parrot_residual`), the answer says little beyond the question itself.
  Restatements leave residuals 0.21-0.46, real answers (terse ones included) 0.51 and
  up, under both the static model and MiniLM (benchmarks/embedder_agreement.py): the
  default 0.45 (cosine > 0.89) only catches restatements.
- `copy`: from round 2, an answer near-verbatim equal to a peer answer the agent was
  shown (cosine >= `copy_similarity`, default 0.95, and >= 90% identical characters):
  agreeing is fine, pasting is not.
"""

from __future__ import annotations

import difflib
import re

import numpy as np

REFUSAL = re.compile(
    r"^\s*(i('m| am) sorry|sorry,|i can(no|')t (help|assist|answer)|i('m| am) (unable|not able) to|"
    r"as an ai\b)",
    re.IGNORECASE,
)


def residual_norm(answer: np.ndarray, question: np.ndarray) -> float:
    projection = float(answer @ question) * question
    return float(np.linalg.norm(answer - projection))


def check(
    text: str,
    vector: np.ndarray,
    question: np.ndarray,
    shown: list[tuple[str, np.ndarray]],
    *,
    parrot_residual: float,
    copy_similarity: float,
) -> str | None:
    """The reason this answer is an echo, or None if it stays in the pool."""
    if not text.strip():
        return "empty"
    if REFUSAL.match(text):
        return "refusal"
    if residual_norm(vector, question) < parrot_residual:
        return "parrot"
    for peer_text, peer_vector in shown:
        if float(vector @ peer_vector) >= copy_similarity and (
            difflib.SequenceMatcher(None, text, peer_text, autojunk=False).quick_ratio() >= 0.9
            and difflib.SequenceMatcher(None, text, peer_text, autojunk=False).ratio() >= 0.9
        ):
            return "copy"
    return None
