"""Registration: the proxy's handler instance, and `register()` for plain LiteLLM SDK use."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from .core.config import load_profiles, profile_name, provider_of, read_config_file
from .core.errors import ConfigError

log = logging.getLogger("chorus_litellm")


def register(config: str | Path | dict, *, owner: str = "local") -> Any:
    """Make `litellm.completion(model="fusion/<profile>")` work in this process.

    Reads a litellm_config.yaml (path or dict), validates every fusion profile, builds a
    `litellm.Router` from its `model_list` for the inner calls, and installs the handler
    in `litellm.custom_provider_map`. Returns the handler. SDK calls carry no LiteLLM key,
    so their receipts and transcripts belong to `owner` (this process's own records).
    """
    import litellm

    from .gateway.compat import is_builtin_provider
    from .gateway.litellm_log import quiet_pricing_warnings
    from .gateway.provider import FusionHandler

    quiet_pricing_warnings()  # before the Router registers the models' prices
    data = read_config_file(config) if isinstance(config, str | Path) else dict(config)
    provider = provider_of(data)
    profiles = load_profiles(data, is_builtin=is_builtin_provider)
    inner = [e for e in data.get("model_list") or [] if profile_name(e, provider) is None]
    router = litellm.Router(model_list=inner, **(data.get("router_settings") or {}))
    handler = FusionHandler(profiles, get_router=lambda: router, anonymous_owner=owner, provider=provider)
    _warm_embeddings(profiles)
    litellm.custom_provider_map = [
        *(p for p in litellm.custom_provider_map if p.get("provider") != provider),
        {"provider": provider, "custom_handler": handler},
    ]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    return handler


def proxy_handler() -> Any:
    """The handler the proxy loads (`custom_handler: chorus_litellm.proxy_handler`).

    Validates every fusion profile in the proxy's config file now, at startup, so a bad
    profile stops the proxy with a message naming the profile and field.
    """
    from .gateway.compat import is_builtin_provider
    from .gateway.litellm_log import quiet_pricing_warnings
    from .gateway.provider import FusionHandler
    from .settings import load_settings

    # Loaded while the proxy reads litellm_settings, before its Router registers the models.
    quiet_pricing_warnings()
    load_settings()  # every CHORUS_* variable, checked now: a bad one stops the proxy, named
    profiles, config = {}, {}
    path = _proxy_config_path()
    if path:
        try:
            config = read_config_file(path)
            profiles = load_profiles(config, is_builtin=is_builtin_provider)
        except ConfigError as exc:
            log.error("chorus: invalid config %s:\n%s", path, exc)
            raise
        log.info("chorus: %d fusion profile(s) valid in %s: %s", len(profiles), path, ", ".join(profiles))
    _warm_embeddings(profiles)
    provider = provider_of(config)
    handler = FusionHandler(profiles, provider=provider)
    _mount_routes(handler)
    entries = [e for e in config.get("model_list") or [] if isinstance(e, dict)]
    handler.fusion_models.update(str(e.get("model_name")) for e in entries if profile_name(e, provider) is not None)
    _add_headers(handler.fusion_models, provider)  # the profile sync adds stored profiles' models
    _start_background(handler)
    return handler


def _start_background(handler: Any) -> None:
    """Deliver webhooks queued before a restart now, not only after the next request, and
    keep stored profiles and live peers in the Router (the proxy loads its config inside
    its serving loop)."""
    import asyncio

    from .settings import load_settings

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return  # no loop yet: the first request starts the worker
    handler.webhooks()
    handler.profile_sync()  # profiles created at run time become Router deployments (gateway/profiles.py)
    if load_settings(create_dirs=False).peer_admission != "closed":
        handler.peer_sync()  # live peers become Router deployments (market/sync.py)


def _add_headers(fusion_models: set[str], provider: str) -> None:
    """`x-chorus-debate-id` on fusion responses (gateway/headers.py), registered once."""
    import litellm

    from .gateway.headers import DebateIdHeader

    if not any(isinstance(cb, DebateIdHeader) for cb in litellm.callbacks):
        litellm.logging_callback_manager.add_litellm_callback(DebateIdHeader(fusion_models, provider))


def _mount_routes(handler: Any) -> None:
    import sys

    module = sys.modules.get("litellm.proxy.proxy_server")
    app = getattr(module, "app", None) if module else None
    if app is not None:
        from .market.routes import mount

        mount(app, handler)


def embedding_models(profiles: dict) -> set[str]:
    """The embedding models runs of these profiles may need (debate geometry, the live
    view's map, bounty impact: a request may bring a bounty to any profile)."""
    return {p.debate.embedding_model for p in profiles.values()}


def _warm_embeddings(profiles: dict) -> None:
    """Load (a static model: distil, the first time) the embedding models in the
    background now, so the first request does not pay for it."""
    import threading

    from .gateway.embeddings import load_model

    for name in embedding_models(profiles):
        threading.Thread(target=load_model, args=(name,), daemon=True, name=f"chorus-warm-{name}").start()


def _proxy_config_path() -> str | None:
    import sys

    module = sys.modules.get("litellm.proxy.proxy_server")
    path = getattr(module, "user_config_file_path", None) if module else None
    return path or os.environ.get("CONFIG_FILE_PATH") or None
