"""The one parser for JSON written by a model (judge analysis, classifier score, votes).

Models wrap JSON in code fences or prose even when asked not to, and small models add a
second object, a trailing remark or an unclosed brace. This takes the outermost object
when it parses, else the first object that does. Callers validate the shape themselves
(pydantic or key checks).
"""

from __future__ import annotations

import json

_DECODER = json.JSONDecoder()


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
        data = _first_object(body, start)
        if data is None:
            raise ValueError(f"not valid JSON: {exc.msg} at position {exc.pos}") from None
    if not isinstance(data, dict):
        raise ValueError("the JSON is not an object")
    return data


def _first_object(body: str, start: int) -> dict | None:
    """The first `{...}` in `body` that decodes to an object, from `start` on."""
    while start >= 0:
        try:
            data, _ = _DECODER.raw_decode(body, start)
        except json.JSONDecodeError:
            start = body.find("{", start + 1)
            continue
        if isinstance(data, dict):
            return data
        start = body.find("{", start + 1)
    return None
