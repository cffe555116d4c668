"""LiteLLM's per-model pricing warning at start: one line from `chorus serve` instead of
one warning per model and worker (issue 25: 26 of them on the shipped config's 2 workers)."""

import logging
import socket
from pathlib import Path

import litellm
import pytest

import chorus_litellm
from chorus_litellm.core.config import read_config_file
from tests.servers import ROOT

PRICING = "has custom pricing but not in built-in cost map"
CONFIG = ROOT / "litellm_config.yaml"


@pytest.fixture
def litellm_records():
    """Every record LiteLLM's logger emits, at every level, while the test runs."""
    logger = logging.getLogger("LiteLLM")
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler, level = Keep(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield records
    logger.removeHandler(handler)
    logger.setLevel(level)


def priced_config(n: int) -> dict:
    """`n` models LiteLLM's price map does not know, priced in model_info as the shipped
    config prices its own."""
    price = {"input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002}
    return {"model_list": [{"model_name": f"unmapped-{i}",
                            "litellm_params": {"model": f"openai/unmapped-model-{i}", "api_base": "http://127.0.0.1:9/v1",
                                               "api_key": "x"},
                            "model_info": dict(price)} for i in range(n)],
            "litellm_settings": {"custom_provider_map": [{"provider": "fusion",
                                                          "custom_handler": "chorus_litellm.proxy_handler"}]}}


def test_the_plugin_moves_litellms_per_model_pricing_warning_to_debug_level(litellm_records):
    """`register()` (and the proxy's handler, the same call) installs the filter before the
    Router registers the models: no warning, each one still there at debug level."""
    try:
        chorus_litellm.register(priced_config(13))
    finally:
        litellm.custom_provider_map = []
    pricing = [r for r in litellm_records if PRICING in r.getMessage()]
    # LiteLLM 1.98 (the supported floor) has no such warning at all; newer ones say it per model
    warns = PRICING in Path(litellm.utils.__file__).read_text()
    assert len(pricing) == (13 if warns else 0) and all(r.levelno == logging.DEBUG for r in pricing)
    assert not [r for r in litellm_records if r.levelno >= logging.WARNING and PRICING in r.getMessage()]


def test_the_filter_leaves_every_other_litellm_record_alone(litellm_records):
    from chorus_litellm.gateway.litellm_log import quiet_pricing_warnings

    pricing = quiet_pricing_warnings()
    assert quiet_pricing_warnings() is pricing  # installed once
    logger = logging.getLogger("LiteLLM")
    logger.warning("register_model: model=openai/m1 %s and no prefix/region variant matched", PRICING)
    logger.warning("something else entirely")
    assert [(r.levelname, r.getMessage()) for r in litellm_records] == [
        ("DEBUG", f"register_model: model=openai/m1 {PRICING} and no prefix/region variant matched"),
        ("WARNING", "something else entirely")]
    assert "openai/m1" in pricing.models


def test_chorus_serve_says_it_once_and_lists_no_profiles(capsys):
    """What `chorus serve --demo` prints before starting anything: the config check's
    summary (`chorus check` lists the profiles) and one pricing line for the shipped
    config's 13 priced models; here it then stops at a busy port."""
    from chorus_litellm import cli

    priced = sum(1 for e in read_config_file(CONFIG)["model_list"] if "input_cost_per_token" in e["model_info"])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        assert cli.main(["serve", "--config", str(CONFIG), "--port", str(taken.getsockname()[1])]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"chorus: {CONFIG}: 8 fusion profile(s) valid, served as provider 'fusion' (not a LiteLLM provider name)",
        (f"chorus: {priced} model(s) priced by their model_info; LiteLLM's warning for each one missing from its "
         "cost map (cached tokens then cost 0) is logged at debug level (LITELLM_LOG=DEBUG)")]
    assert priced == 13
