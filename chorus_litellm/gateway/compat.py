"""What differs between the LiteLLM releases this package supports (`>=1.98,<2`), in one place.

Tested in CI on both ends of the range (1.98.0 and 1.106.2, `.ci/run`). Each function
says which releases need it; the rest of the package calls these and never asks which
LiteLLM it runs on.

- `charge_partial`: a failed run bills what it spent. 1.106 has
  `Logging.record_partial_usage_for_failure`; older releases read the same two
  `model_call_details` keys it sets, so those are set directly.
- `streamed_cost`: 1.106 puts the computed cost on a stream's final usage; up to 1.100
  only with `litellm.include_cost_in_streaming_usage`. None means "price the usage".
- `relayed`: a forwarded model's chunk passed on to the client. Older releases keep the
  chunk's `_hidden_params` (the inner deployment's model id and provider) for the outer
  call and would price the outer call at the inner model's rates on top of the run's
  own charge; the relayed copy carries none.
- `budget_status`: the HTTP status of LiteLLM's budget error: `budget_exceeded_status_code`
  (422 by default) from 1.10x; 1.98 answers 429.
- `is_builtin_provider`: LiteLLM's own provider names, which win over a
  `custom_provider_map` entry of the same name (silently up to 1.108, with a warning
  from 1.109). 1.98 has no JSON-defined providers. Outside a process that has imported
  LiteLLM (`chorus check`, and `chorus serve` before it starts the proxy) the names are
  read from LiteLLM's files instead: importing it for them cost the command 3 s of CPU
  (twice that on a loaded 2-core machine) on the way to the first answer.
"""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import re
import sys
from functools import cache
from pathlib import Path
from typing import Any


def charge_partial(logging_obj: Any, usage: Any, cost: float) -> None:
    record = getattr(logging_obj, "record_partial_usage_for_failure", None)
    if record is not None:
        record(usage, cost)
    else:
        logging_obj.model_call_details["combined_usage_object"] = usage
        logging_obj.model_call_details["response_cost"] = cost


def streamed_cost(usage: Any) -> float | None:
    return getattr(usage, "cost", None) if usage is not None else None


def relayed(chunk: Any) -> Any:
    out = copy.copy(chunk)
    out._hidden_params = {}
    return out



def is_builtin_provider(name: str) -> bool:
    if "litellm" not in sys.modules and (names := provider_names_from_source()) is not None:
        return name in names
    from litellm.types.utils import LlmProviders

    if name in {p.value for p in LlmProviders}:
        return True
    try:
        from litellm.llms.openai_like.json_loader import JSONProviderRegistry
    except ImportError:  # 1.98: no JSON-defined providers
        return False
    return bool(JSONProviderRegistry.exists(name))


@cache
def provider_names_from_source() -> frozenset[str] | None:
    """LiteLLM's provider names without importing it: the values of `LlmProviders` in
    litellm/types/utils.py and the keys of llms/openai_like/providers.json, the two places
    `is_builtin_provider` asks once LiteLLM is imported (a test holds them equal). None
    where LiteLLM's files are not laid out so; the caller then imports it."""
    spec = importlib.util.find_spec("litellm")  # a top-level package: found, not imported
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    try:
        source = (root / "types" / "utils.py").read_text(encoding="utf-8")
        found = re.search(r"^class LlmProviders\(.*?(?=^\S)", source, re.MULTILINE | re.DOTALL)
        body = ast.parse(found.group(0)).body[0] if found else None
        providers = root / "llms" / "openai_like" / "providers.json"
        from_json = set(json.loads(providers.read_text(encoding="utf-8"))) if providers.exists() else set()
    except (OSError, SyntaxError, ValueError):
        return None
    names = {node.value.value for node in getattr(body, "body", ())
             if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
             and isinstance(node.value.value, str)}
    return frozenset(names | from_json) if names else None


def budget_status() -> int:
    import litellm

    return int(getattr(litellm, "budget_exceeded_status_code", 429))
