"""`chorus_litellm.register()` with the plain LiteLLM SDK, against a fake upstream over HTTP."""

import subprocess
import sys

import httpx
import litellm
import pytest
import yaml

import chorus_litellm
from tests.conftest import e2e_config
from tests.servers import litellm_proxy

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]


@pytest.fixture
def sdk(upstream):
    handler = chorus_litellm.register(e2e_config(upstream))
    yield handler
    litellm.custom_provider_map = []


# e2e_config registers the plugin as `chorus`: SDK calls (no proxy aliases) name that provider.
async def test_acompletion_fuses_through_an_inner_router(sdk, upstream):
    httpx.post(f"{upstream}/reset")
    resp = await litellm.acompletion(model="chorus/research", messages=HARD)
    assert resp.choices[0].message.content.startswith("writer answers")
    ext = resp.chorus
    assert resp._hidden_params["response_cost"] == pytest.approx(ext["cost"]["total"])
    assert sum(c["cost"] for c in ext["usage"]["calls"]) == pytest.approx(ext["cost"]["total"])
    assert httpx.get(f"{upstream}/stats").json() == {"model-a": 1, "model-b": 1, "model-c": 1, "judge": 1, "writer": 1}


async def test_astream_and_forward(sdk):
    stream = await litellm.acompletion(model="chorus/research", messages=HARD, stream=True)
    chunks = [c async for c in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.startswith("writer answers")
    ext = next(c.provider_specific_fields["chorus"] for c in chunks if getattr(c, "provider_specific_fields", None))
    assert [c["stage"] for c in ext["usage"]["calls"]] == ["panel"] * 3 + ["judge", "synthesis"]
    resp = await litellm.acompletion(model="chorus/auto", messages=[{"role": "user", "content": "thanks!"}])
    assert resp.choices[0].message.content.startswith("model-a answers")
    assert resp.chorus["route"] == {"decision": "single", "policy": "auto", "reason": "features",
                                    "score": resp.chorus["route"]["score"], "classifier_score": None}
    assert resp._hidden_params["response_cost"] > 0


def test_sync_completion(sdk):
    resp = litellm.completion(model="chorus/research", messages=HARD)
    assert resp.choices[0].message.content.startswith("writer answers")
    calls = resp.chorus["usage"]["calls"]
    assert [c["stage"] for c in calls] == ["panel"] * 3 + ["judge", "synthesis"]
    assert resp.usage.total_tokens == sum(c["total_tokens"] for c in calls) > 0
    assert resp._hidden_params["response_cost"] == pytest.approx(sum(c["cost"] for c in calls))
    assert resp._hidden_params["response_cost"] > 0


def chorus_block(cfg, name):
    return next(e for e in cfg["model_list"] if e["model_name"] == f"fusion/{name}")["model_info"]["chorus"]


def test_register_rejects_bad_config(upstream):
    cfg = e2e_config(upstream)
    chorus_block(cfg, "nosynth")["panel"]["members"] = ["model-a", "fusion/research"]
    with pytest.raises(chorus_litellm.ConfigError, match="profile 'nosynth': panel.members\\[1\\].model: .*recursion"):
        chorus_litellm.register(cfg)


def test_proxy_refuses_to_start_with_a_bad_profile(upstream, tmp_path):
    cfg = e2e_config(upstream)
    chorus_block(cfg, "nosynth")["panel"]["min_quorum"] = 9
    with pytest.raises(RuntimeError, match="profile 'nosynth': panel.min_quorum: 9 is more than the 2 seats"):
        with litellm_proxy(cfg, tmp_path):
            pass


def test_cli_check(tmp_path, upstream):
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump(e2e_config(upstream)))
    out = subprocess.run([sys.executable, "-m", "chorus_litellm.cli", "check", str(good)], capture_output=True, text=True)
    profiles = sum(1 for m in e2e_config(upstream)["model_list"] if "chorus" in m.get("model_info", {}))
    assert out.returncode == 0 and f"{profiles} fusion profile(s) valid, served as provider 'chorus'" in out.stdout
    assert "chorus/research: protocol=moa" in out.stdout
    cfg = e2e_config(upstream)
    del chorus_block(cfg, "nosynth")["aggregator"]["judge"]
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg))
    out = subprocess.run([sys.executable, "-m", "chorus_litellm.cli", "check", str(bad)], capture_output=True, text=True)
    assert out.returncode == 1 and "profile 'nosynth': aggregator.judge: Field required" in out.stderr


def shadowed(upstream) -> dict:
    """e2e_config registered as `xai`, a built-in LiteLLM provider that would take every `xai/...` model."""
    cfg = e2e_config(upstream)
    cfg["litellm_settings"]["custom_provider_map"][0]["provider"] = "xai"
    for entry in cfg["model_list"]:
        entry["litellm_params"]["model"] = entry["litellm_params"]["model"].replace("chorus/", "xai/")
    return cfg


def test_a_shadowed_provider_name_stops_the_proxy_and_fails_the_check(upstream, tmp_path, monkeypatch):
    path = tmp_path / "shadowed.yaml"
    path.write_text(yaml.safe_dump(shadowed(upstream)))
    out = subprocess.run([sys.executable, "-m", "chorus_litellm.cli", "check", str(path)], capture_output=True, text=True)
    assert out.returncode == 1 and "provider 'xai' is a built-in LiteLLM provider" in out.stderr
    assert "provider: chorus" in out.stderr  # the fix, named
    monkeypatch.setenv("CONFIG_FILE_PATH", str(path))  # what the proxy's startup hands proxy_handler()
    with pytest.raises(chorus_litellm.ConfigError, match="provider 'xai' is a built-in LiteLLM provider"):
        chorus_litellm.proxy_handler()
    with pytest.raises(chorus_litellm.ConfigError, match="provider 'xai'"):
        chorus_litellm.register(path)
