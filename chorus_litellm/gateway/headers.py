"""`x-chorus-debate-id` on every response of a fusion model, streaming ones included.

Boundary: a LiteLLM `CustomLogger` whose `async_post_call_response_headers_hook` the
proxy calls for every response (chat completions, Responses API, Anthropic Messages;
success and failure) before the first byte goes out: the only point where a streaming
response's headers can still be set. It needs no state from the run: the run's id is
the client's `chorus.debate_id`, else LiteLLM's call id (`request.run_id`, the one rule
`FusionRequest.debate_id` follows too), and both are in the request data LiteLLM hands
the hook. The hook also runs for a refused request, before or without validation, so the
header carries only an id that passes the rule: a chosen id that breaks it (a newline,
a NUL, non-ASCII, 129+ characters) gets no header, and the request its 400.

Registered once by `sdk.proxy_handler()`; it answers only for models whose deployment
is a fusion profile (`<provider>/<profile>`), so other models' responses are untouched.
"""

from __future__ import annotations

from typing import Any

from litellm.integrations.custom_logger import CustomLogger

from ..core.request import run_id

HEADER = "x-chorus-debate-id"


def debate_id(data: dict) -> str | None:
    """The run id a request to a fusion model gets (request.FusionRequest.debate_id), or
    None when the client's chosen id is invalid (its request is refused)."""
    chorus = data.get("chorus")
    chosen = chorus.get("debate_id") if isinstance(chorus, dict) else None
    return run_id(chosen, data.get("litellm_call_id"))


class DebateIdHeader(CustomLogger):
    def __init__(self, fusion_models: set[str], provider: str) -> None:
        super().__init__()
        self.fusion_models = fusion_models  # fusion model names (aliases): the live set the profile sync keeps
        self.prefix = f"{provider}/"  # and `<provider>/<profile>` asked directly

    def is_fusion(self, data: dict) -> bool:
        model = str(data.get("model") or "")
        return model.startswith(self.prefix) or model in self.fusion_models

    async def async_post_call_response_headers_hook(self, data: dict, user_api_key_dict: Any, response: Any,
                                                    request_headers: dict | None = None,
                                                    litellm_call_info: dict | None = None) -> dict | None:
        run_id = debate_id(data) if self.is_fusion(data) else None
        return {HEADER: run_id} if run_id else None
