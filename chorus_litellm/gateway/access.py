"""May this caller use the models its request names? (`chorus.panel`, `chorus.judge`,
`chorus.synthesizer`.)

Inner calls go through the proxy's Router, which does not check the caller's key: a
model named in the profile was vouched for by the operator, one named in the request was
not. So before any call, each model the request names must be a model this proxy serves
(the Router's model names, aliases included) and one the caller's key and team may call,
by LiteLLM's own access rules (`can_key_call_model`: the key's `models`, its access
groups and wildcards; then the team's models the same way). A refusal is a 403 naming
the model and the field that asked for it; an unknown model is a 400. In the SDK (no
Router, no key) there is nothing to check.
"""

from __future__ import annotations

from typing import Any

from ..core.errors import AccessError, RequestError
from ..core.request import FusionRequest, requested_models


def fusion_aliases(router: Any, provider: str, params: dict) -> frozenset[str]:
    """The proxy's fusion models by their `model_name` (whatever the client calls them),
    when the request names models of its own: none of them may sit in a panel."""
    chorus = params.get("chorus")
    if router is None or not isinstance(chorus, dict) or not {"panel", "judge", "synthesizer"} & set(chorus):
        return frozenset()
    return frozenset(str(d.get("model_name")) for d in router.get_model_list() or ()
                     if str((d.get("litellm_params") or {}).get("model", "")).startswith(f"{provider}/"))


async def check_requested_models(req: FusionRequest, litellm_params: dict, router: Any) -> None:
    named = requested_models(req.options)
    if not named or router is None:
        return
    served = set(router.get_model_names()) | set(getattr(router, "model_group_alias", None) or {})
    for field, model in named.items():
        if model not in served:
            raise RequestError(f"{field}: {model!r} is not a model this proxy serves", param=field)
    auth = (litellm_params.get("metadata") or {}).get("user_api_key_auth")
    if auth is None:
        return
    for field, model in named.items():
        if not await _allowed(auth, model, router):
            raise AccessError(f"{field}: this key may not call {model!r}", param=field)


async def _allowed(auth: Any, model: str, router: Any) -> bool:
    from litellm.proxy.auth.auth_checks import _can_object_call_model, can_key_call_model

    try:
        await can_key_call_model(model, router.get_model_list(), auth, router)
        team_models = getattr(auth, "team_models", None) or []
        if team_models:
            _can_object_call_model(model, router, team_models, team_id=getattr(auth, "team_id", None),
                                   object_type="team")
    except Exception:  # noqa: BLE001 - LiteLLM's refusal (ProxyException) is our answer, whatever its class
        return False
    return True
