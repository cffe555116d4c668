"""The one parser for JSON written by a model (judge analysis, classifier score, votes).

Models wrap JSON in code fences or prose even when asked not to; this finds the outermost
object and parses it. Callers validate the shape themselves (pydantic or key checks).
"""

from __future__ import annotations

import json


def json_object(text: str) -> dict:
    """The JSON object in `text`. Raises ValueError saying what was wrong."""
    body = text.strip()
    if body.startswith("```"):
        body = body.strip("`").removeprefix("json").strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise ValueError("no JSON object found")
    try:
        data = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise ValueError("the JSON is not an object")
    return data
