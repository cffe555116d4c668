"""chorus-litellm: `fusion/<profile>` models for LiteLLM (panel -> judge -> synthesis).

Proxy: `litellm_settings.custom_provider_map: [{provider: fusion, custom_handler:
chorus_litellm.proxy_handler}]`. SDK: `chorus_litellm.register("litellm_config.yaml")`.
"""

from __future__ import annotations

from typing import Any

from .core.config import ProfileConfig, load_profiles
from .core.errors import ChorusError, ConfigError, QuorumError, RequestError, RunError, UpstreamError
from .sdk import register

__version__ = "0.1.0"
__all__ = [
    "ChorusError",
    "ConfigError",
    "ProfileConfig",
    "QuorumError",
    "RequestError",
    "RunError",
    "UpstreamError",
    "load_profiles",
    "proxy_handler",
    "register",
]

_handler: Any = None


def __getattr__(name: str) -> Any:
    # Built on first access, when the proxy resolves `chorus_litellm.proxy_handler` while
    # loading its config: that is when the config can be validated, and only once.
    global _handler
    if name == "proxy_handler":
        if _handler is None:
            from .sdk import proxy_handler

            _handler = proxy_handler()
        return _handler
    raise AttributeError(f"module 'chorus_litellm' has no attribute {name!r}")
