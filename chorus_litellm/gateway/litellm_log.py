"""LiteLLM's start-up warnings that a chorus proxy says once instead of once per model.

LiteLLM warns, for every model whose `model_info` carries per-token prices and whose name
is not in its built-in cost map, that the model's cached-token prices default to 0: with
the shipped config that is 13 warnings per worker (26 on 2 workers), one per model, every
start, all saying the same. `PricingWarnings` (a filter on LiteLLM's logger, installed by
`sdk.proxy_handler()` and `sdk.register()` before the Router registers the models) moves
each to debug level, where `LITELLM_LOG=DEBUG` still shows it; `chorus serve` prints
`pricing_note()` once instead. Nothing else LiteLLM logs is touched.
"""

from __future__ import annotations

import logging
import re
from typing import Any

LITELLM_LOGGER = "LiteLLM"
PRICING = "has custom pricing but not in built-in cost map"
MODEL = re.compile(r"model=(\S+) " + re.escape(PRICING))
PRICES = ("input_cost_per_token", "output_cost_per_token")


class PricingWarnings(logging.Filter):
    """Moves LiteLLM's per-model "custom pricing but not in built-in cost map" warning to
    debug level; `models` are the models it named, in order."""

    def __init__(self) -> None:
        super().__init__()
        self.models: list[str] = []

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        # the model may sit in the arguments: newer LiteLLMs' own redaction filter formats
        # the message before this one runs, older ones (1.98) leave msg and args apart
        message = record.getMessage()
        if PRICING not in message:
            return True
        named = MODEL.search(message)
        model = named.group(1) if named else "?"
        if model not in self.models:
            self.models.append(model)
        logging.getLogger(record.name).debug("%s", message)  # below WARNING: passes this filter
        return False


def quiet_pricing_warnings() -> PricingWarnings:
    """Install the filter on LiteLLM's logger once per process; returns it."""
    logger = logging.getLogger(LITELLM_LOGGER)
    for existing in logger.filters:
        if isinstance(existing, PricingWarnings):
            return existing
    pricing = PricingWarnings()
    logger.addFilter(pricing)
    return pricing


def priced_models(config: dict[str, Any]) -> list[str]:
    """The config's models that carry their own per-token prices in `model_info`."""
    entries = config.get("model_list") or []
    return [str(e.get("model_name")) for e in entries if isinstance(e, dict) and isinstance(e.get("model_info"), dict)
            and any(key in e["model_info"] for key in PRICES)]


def pricing_note(config: dict[str, Any]) -> str | None:
    """One line for the warnings `PricingWarnings` moves to debug level (None: no model is
    priced in `model_info`)."""
    count = len(priced_models(config))
    if not count:
        return None
    return (f"{count} model(s) priced by their model_info; LiteLLM's warning for each one missing from its "
            "cost map (cached tokens then cost 0) is logged at debug level (LITELLM_LOG=DEBUG)")
