"""Retries never stack, and a cut answer says so: the real proxy, the official `openai`
client and the fake upstream, whose `/stats` counts the calls each model really got.

This proxy is configured the way LiteLLM is by default: no deployment says
`num_retries`, and the Router retries twice (`router_settings.num_retries: 2`, LiteLLM's
default). The plugin's stages that retry themselves (synthesis, judge) or must not wait
(the gate's classifier) send `num_retries=0` on their calls, so each stage's retries are
decided once: the synthesizer and the judge are called at most twice, the classifier once,
and `chorus` counts exactly the calls the upstream saw. A panel member's retries stay the
Router's, never ours on top (docs/design.md, "Retries").
"""

import httpx
import openai
import pytest

from tests.conftest import fusion
from tests.servers import fusion_entry, model_entry

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
ROUTER_RETRIES = 2  # LiteLLM's default num_retries, said explicitly
MODELS = ["model-a", "model-b", "judge", "writer", "once500-b", "fail500-judge", "fail500-writer",
          "once500-writer", "midfail-writer", "fail500-classifier"]
# On the session's proxy (tests/conftest.py), whose other deployments say num_retries: 0, these
# are deployments of their own: `retry-<model>` (the upstream still sees, answers as and counts
# <model>), except the names no other deployment uses, which keep theirs; profiles `retry-<name>`.
OWN_NAMES = {"once500-b", "fail500-judge", "once500-writer", "fail500-classifier"}


def name(model: str) -> str:
    """The deployment's model_name for the upstream model `model`."""
    return model if model in OWN_NAMES else f"retry-{model}"


def entries(upstream: str) -> list[dict]:
    """The deployments (no num_retries: the Router's own setting applies to every call) and
    the profiles, for a proxy whose `router_settings.num_retries` is ROUTER_RETRIES."""
    def deployment(model):
        entry = model_entry(name(model), upstream)
        entry["litellm_params"]["model"] = f"openai/{model}"
        return entry

    def profile(members, judge="judge", writer="writer", **panel):
        chorus = fusion([name(m) for m in members], judge=name(judge), writer=name(writer), **panel)
        return {**chorus, "router": {**chorus["router"], "single_model": name("model-a")}}

    gate = profile(["model-a", "model-b"])
    # band 1: every prompt is "unsure", so the classifier is always asked
    gate["router"] = {"policy": "auto", "single_model": name("model-a"), "threshold": 0.5,
                      "classifier": {"model": name("fail500-classifier"), "band": 1.0}}
    entry = lambda profile_name, chorus: fusion_entry(f"retry-{profile_name}", chorus, provider="chorus")  # noqa: E731
    return [*(deployment(m) for m in MODELS),
            entry("nosynth", profile(["model-a", "model-b"], writer="fail500-writer")),
            entry("oncesynth", profile(["model-a", "model-b"], writer="once500-writer")),
            entry("midfail", profile(["model-a", "model-b"], writer="midfail-writer")),
            entry("nojudge", profile(["model-a", "model-b"], judge="fail500-judge")),
            # every seat must answer, so no quorum cuts the member's retries short
            entry("oncemember", profile(["model-a", "model-b", "once500-b"], min_quorum=3)),
            entry("gate", gate)]


@pytest.fixture
def retry_proxy(proxy, upstream):
    """The session's proxy: its Router retries twice (router_settings.num_retries: 2) and it
    serves entries(upstream)."""
    import yaml

    config = yaml.safe_load((proxy.workdir / "litellm_config.yaml").read_text())
    assert config["router_settings"]["num_retries"] == ROUTER_RETRIES
    served = {e["model_name"]: e for e in config["model_list"]}
    for entry in entries(upstream):
        assert served[entry["model_name"]] == entry
        assert "num_retries" not in entry["litellm_params"]
    return type("RetryProxy", (), {"url": proxy.url, "upstream": upstream})


@pytest.fixture
def client(retry_proxy):
    return openai.OpenAI(base_url=f"{retry_proxy.url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)


def calls(retry_proxy, model: str, make) -> tuple:
    """(what `make()` returned, how many calls `model` got at the upstream meanwhile)."""
    before = httpx.get(f"{retry_proxy.upstream}/stats", timeout=10).json().get(model, 0)
    out = make()
    return out, httpx.get(f"{retry_proxy.upstream}/stats", timeout=10).json().get(model, 0) - before


def streamed(client, profile: str) -> tuple[str, str | None, dict]:
    """(content, finish_reason, chorus) of a streamed fused answer."""
    content, finish, ext = [], None, None
    for chunk in client.chat.completions.create(model=f"fusion/{profile}", messages=HARD, stream=True):
        for choice in chunk.choices:
            content.append(choice.delta.content or "")
            finish = choice.finish_reason or finish
        ext = (chunk.model_extra or {}).get("provider_specific_fields", {}).get("chorus") or ext
    return "".join(content), finish, ext


@pytest.mark.parametrize("stream", [False, True])
def test_a_failing_synthesizer_is_called_at_most_twice_and_the_chorus_counts_each_call(client, retry_proxy, stream):
    def ask():
        if stream:
            return streamed(client, "retry-nosynth")
        resp = client.chat.completions.create(model="fusion/retry-nosynth", messages=HARD)
        return resp.choices[0].message.content, resp.choices[0].finish_reason, resp.model_extra["chorus"]

    (text, finish, ext), upstream = calls(retry_proxy, "fail500-writer", ask)
    synthesis = ext["synthesis"]
    assert synthesis["fallback"] and "500" in synthesis["error"] and "synthesis" in ext["degraded"]
    assert synthesis["attempts"] == upstream == 2  # ours: one retry; the Router's: none on top
    assert text.split(" ")[0] in {"model-a", "model-b"} and finish == "stop"  # a whole panel answer


def test_a_synthesizer_that_fails_once_is_counted_twice(client, retry_proxy):
    resp, upstream = calls(retry_proxy, "once500-writer",
                           lambda: client.chat.completions.create(model="fusion/retry-oncesynth", messages=HARD))
    ext = resp.model_extra["chorus"]
    assert resp.choices[0].message.content.startswith("once500-writer answers")
    assert ext["synthesis"]["attempts"] == upstream == 2 and not ext["synthesis"]["fallback"]
    assert ext["degraded"] == []


def test_a_failing_judge_is_called_at_most_twice_and_the_chorus_counts_each_call(client, retry_proxy):
    resp, upstream = calls(retry_proxy, "fail500-judge",
                           lambda: client.chat.completions.create(model="fusion/retry-nojudge", messages=HARD))
    ext = resp.model_extra["chorus"]
    assert ext["judge"]["degraded"] and "500" in ext["judge"]["error"] and "judge" in ext["degraded"]
    assert ext["judge"]["attempts"] == upstream == 2
    assert resp.choices[0].message.content.startswith("writer answers")  # the synthesis weighs the raw answers


def test_a_failing_classifier_is_asked_once_and_the_gate_fails_open(client, retry_proxy):
    resp, upstream = calls(retry_proxy, "fail500-classifier",
                           lambda: client.chat.completions.create(model="fusion/retry-gate", messages=HARD))
    route = resp.model_extra["chorus"]["route"]
    assert upstream == 1 and route["decision"] == "fuse" and "classifier failed" in route["reason"]


def test_a_member_gets_the_routers_retries_never_ours_and_the_chorus_counts_them(client, retry_proxy):
    resp, upstream = calls(retry_proxy, "once500-b",
                           lambda: client.chat.completions.create(model="fusion/retry-oncemember", messages=HARD))
    ext = resp.model_extra["chorus"]
    assert ext["panel"]["failed"] == [] and ext["degraded"] == []
    (member,) = [c for c in ext["usage"]["calls"] if c["seat"] == "once500-b"]
    assert member["attempts"] == upstream == 2  # the Router retried the transient 500 once; we did not


def test_a_synthesis_stream_cut_mid_answer_says_so_where_clients_look(client, retry_proxy):
    (text, finish, ext), upstream = calls(retry_proxy, "midfail-writer", lambda: streamed(client, "retry-midfail"))
    assert text.startswith("midfail-writer answers") and len(text.split()) == 3  # the words before the break
    assert finish == "length"  # not a normal stop: the answer is incomplete
    assert "synthesis_cut" in ext["degraded"] and ext["synthesis"]["cut"]
    assert "mid-answer" in ext["synthesis"]["error"]
    assert ext["synthesis"]["attempts"] == upstream == 1  # words already sent: never asked again


def test_a_non_streamed_synthesis_cut_mid_body_is_retried_once_then_falls_back(client, retry_proxy):
    resp, upstream = calls(retry_proxy, "midfail-writer",
                           lambda: client.chat.completions.create(model="fusion/retry-midfail", messages=HARD))
    ext = resp.model_extra["chorus"]
    # nothing of a broken body reaches the client: retried once, then a whole panel answer
    assert ext["synthesis"]["attempts"] == upstream == 2 and ext["synthesis"]["fallback"]
    assert not ext["synthesis"]["cut"] and "synthesis" in ext["degraded"]
    assert resp.choices[0].message.content.split(" ")[0] in {"model-a", "model-b"}
    assert resp.choices[0].finish_reason == "stop"
