"""End to end: the real `litellm` proxy on 127.0.0.1, the official `openai` client,
a fake OpenAI-compatible upstream, and a logging callback that records what LiteLLM charged."""

import httpx
import openai
import pytest

from tests.conftest import line_count, spend_records

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]


@pytest.fixture
def client(proxy):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)


def lines(proxy):
    return line_count(proxy.spend)


def charged(proxy, before, inner_calls):
    """Wait for the outer call plus its inner calls to be logged; return (outer, inner)."""
    records = spend_records(proxy.spend, count=before + inner_calls + 1)[before:]
    outer = [r for r in records if r["model_group"] and r["model_group"].startswith("fusion/")]
    inner = [r for r in records if r not in outer]
    return outer, inner


def test_the_spend_log_is_read_a_whole_line_at_a_time(tmp_path):
    # CI once read a line a worker was still appending ("Unterminated string"): the reader
    # waits for it instead, and counts only whole lines.
    log = tmp_path / "spend.jsonl"
    log.write_text('{"call_id": "a"}\n{"call_id": "b", "model_gr')
    assert spend_records(log, wait=0.2, count=2) == [{"call_id": "a"}]
    with log.open("a") as fh:
        fh.write('oup": null}\n')
    assert [r["call_id"] for r in spend_records(log, count=2)] == ["a", "b"]


def test_non_streaming_fused_answer_and_true_cost(client, proxy):
    before = lines(proxy)
    raw = client.chat.completions.with_raw_response.create(model="fusion/research", messages=HARD)
    resp = raw.parse()
    ext = resp.model_extra["chorus"]
    assert resp.choices[0].message.content.startswith("writer answers")
    assert ext["route"]["decision"] == "fuse" and ext["panel"]["failed"] == []
    assert ext["caller"] == {"team_id": "team-a", "user_id": "alice"}
    assert resp.usage.total_tokens == ext["usage"]["total"]["total_tokens"]
    assert resp.usage.prompt_tokens == sum(c["prompt_tokens"] for c in ext["usage"]["calls"])
    total = ext["cost"]["total"]
    assert total > 0
    assert float(raw.headers["x-litellm-response-cost"]) == pytest.approx(total)
    outer, inner = charged(proxy, before, inner_calls=5)
    # charged once, to the caller's team, exactly the sum of the inner calls
    assert len(outer) == 1 and outer[0]["team_id"] == "team-a"
    assert outer[0]["response_cost"] == pytest.approx(total)
    assert sum(r["response_cost"] for r in inner) == pytest.approx(total)
    assert all(r["team_id"] is None for r in inner)


def test_streaming_fused_answer_and_true_cost(client, proxy):
    before = lines(proxy)
    stream = client.chat.completions.create(
        model="fusion/research", messages=HARD, stream=True, stream_options={"include_usage": True}
    )
    content, reasoning, ext, usage = [], [], None, None
    for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            content.append(choice.delta.content or "")
            reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
        ext = (chunk.model_extra or {}).get("provider_specific_fields", {}) or ext
    text = "".join(content)
    assert text.startswith("writer answers")
    assert "3 of 3 answered" in "".join(reasoning)
    assert ext and "chorus" in ext
    total = ext["chorus"]["cost"]["total"]
    assert usage.prompt_tokens == ext["chorus"]["usage"]["total"]["prompt_tokens"]
    outer, inner = charged(proxy, before, inner_calls=5)
    assert len(outer) == 1 and outer[0]["team_id"] == "team-a"
    assert outer[0]["response_cost"] == pytest.approx(total)
    assert sum(r["response_cost"] for r in inner) == pytest.approx(total)


def test_member_failure_is_tolerated_and_reported(client):
    resp = client.chat.completions.create(model="fusion/flaky", messages=HARD)
    failed = resp.model_extra["chorus"]["panel"]["failed"]
    assert [(f["seat"], f["kind"], f["status"]) for f in failed] == [("fail500-b", "http_error", 500)]
    assert resp.choices[0].message.content


@pytest.mark.parametrize("stream", [False, True])
def test_missed_quorum_is_an_openai_error_naming_members(client, upstream, stream):
    httpx.post(f"{upstream}/reset")
    with pytest.raises(openai.APIStatusError) as err:
        resp = client.chat.completions.create(model="fusion/down", messages=HARD, stream=stream)
        if stream:
            list(resp)
    assert err.value.status_code == 502
    message = str(err.value)
    assert "quorum not met" in message
    assert "fail500-a (fail500-a): http_error 500" in message
    assert "fail429-b (fail429-b): http_error 429" in message
    assert "hang-c" in message
    assert "Traceback" not in message
    # the Router (num_retries: 2) did not re-run the whole fusion for the outer call
    assert httpx.get(f"{upstream}/stats").json()["fail500-a"] == 1


def test_straggler_is_cut_after_grace(client):
    # hang-c never answers; once a and b answered it gets min(0.3 s, 0.2 x time-to-quorum)
    resp = client.chat.completions.create(model="fusion/straggler", messages=HARD)
    ext = resp.model_extra["chorus"]
    assert resp.choices[0].message.content
    assert sorted(ext["panel"]["answered"]) == ["model-a", "model-b"]
    assert [(f["seat"], f["kind"]) for f in ext["panel"]["failed"]] == [("hang-c", "cancelled")]
    assert ext["timings_s"]["panel"] < 2.0  # far below the 5 s member timeout


@pytest.mark.parametrize("stream", [False, True])
def test_easy_prompt_is_forwarded_unchanged_and_charged_once(client, proxy, stream):
    before = lines(proxy)
    easy = [{"role": "user", "content": "hi"}]
    if stream:
        chunks = list(client.chat.completions.create(model="fusion/auto", messages=easy, stream=True,
                                                     stream_options={"include_usage": True}))
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        usage = [c.usage for c in chunks if c.usage][-1]
    else:
        resp = client.chat.completions.create(model="fusion/auto", messages=easy)
        text, usage = resp.choices[0].message.content, resp.usage
        assert resp.model_extra["chorus"]["route"]["decision"] == "single"
    assert text.startswith("model-a answers")
    outer, inner = charged(proxy, before, inner_calls=1)
    assert [r["model_group"] for r in inner] == ["model-a"]
    assert len(outer) == 1 and outer[0]["team_id"] == "team-a"
    assert outer[0]["response_cost"] == pytest.approx(inner[0]["response_cost"])
    assert usage.completion_tokens == len(text.split())


@pytest.mark.parametrize("stream", [False, True])
def test_forward_to_a_failing_single_model_is_a_clear_502(client, stream):
    with pytest.raises(openai.APIStatusError) as err:
        resp = client.chat.completions.create(model="fusion/single-down", messages=HARD, stream=stream)
        if stream:
            list(resp)
    assert err.value.status_code == 502
    assert "http_error 500" in str(err.value) and "Traceback" not in str(err.value)


def test_tool_turns_go_to_single_model(client, upstream):
    httpx.post(f"{upstream}/reset")
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}]
    resp = client.chat.completions.create(model="fusion/research", messages=HARD, tools=tools)
    # router.tools: forward (the default): model-a's own tool call, passed on as it is
    assert resp.choices[0].finish_reason == "tool_calls" and resp.choices[0].message.tool_calls[0].function.name == "lookup"
    assert httpx.get(f"{upstream}/stats").json() == {"model-a": 1}


def test_the_go_seed_vote_loop_asks_only_the_dissenter_again_and_says_why_there_is_no_consensus(client, upstream):
    before = httpx.get(f"{upstream}/stats", timeout=10).json()
    resp = client.chat.completions.create(model="fusion/consensus-seed", messages=HARD)
    after = httpx.get(f"{upstream}/stats", timeout=10).json()
    d = resp.model_extra["chorus"]["deliberation"]
    assert not d["reached"] and [set(v) for v in d["votes"]] == [{"model-a", "model-b", "reject-c"}, {"reject-c"}]
    calls = {m: after.get(m, 0) - before.get(m, 0) for m in ("model-a", "reject-c")}
    assert calls == {"model-a": 3, "reject-c": 4}  # draft, critique, votes: a once, c twice
    assert "No consensus after 2 vote(s): best approval 67%" in resp.choices[0].message.content


def test_two_moa_layers_reach_the_upstream_as_two_panel_rounds(client, upstream):
    before = httpx.get(f"{upstream}/stats", timeout=10).json()
    resp = client.chat.completions.create(model="fusion/layers", messages=HARD)
    after = httpx.get(f"{upstream}/stats", timeout=10).json()
    ext = resp.model_extra["chorus"]
    assert ext["deliberation"]["layers"] == 2 and ext["usage"]["stages"]["panel"]["calls"] == 6
    assert {m: after.get(m, 0) - before.get(m, 0) for m in ("model-a", "model-b", "model-c")} == \
        {"model-a": 2, "model-b": 2, "model-c": 2}


def test_degraded_judge_and_synthesis_fallback(client):
    resp = client.chat.completions.create(model="fusion/badjudge", messages=HARD)
    ext = resp.model_extra["chorus"]
    assert ext["judge"]["degraded"] and "2 attempt" in ext["judge"]["error"]
    assert ext["usage"]["stages"]["judge"]["calls"] == 2
    resp = client.chat.completions.create(model="fusion/nosynth", messages=HARD)
    ext = resp.model_extra["chorus"]
    assert ext["synthesis"]["fallback"] and "500" in ext["synthesis"]["error"]
    assert ext["synthesis"]["attempts"] == 2  # retried once before the fallback
    assert resp.choices[0].message.content.split(" ")[0] in {"model-a", "model-b"}


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]},
         "unsupported content part type"),
        ({"messages": HARD, "extra_body": {"chorus": {"policy": "sometimes"}}}, "chorus.policy"),
        ({"messages": HARD, "n": 2}, "n must be 1"),
    ],
)
def test_bad_input_is_400(client, kwargs, match):
    with pytest.raises(openai.BadRequestError, match=match):
        client.chat.completions.create(model="fusion/research", **kwargs)


def test_unknown_key_is_rejected(proxy):
    bad = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-nobody", max_retries=0)
    with pytest.raises(openai.APIStatusError) as err:
        bad.chat.completions.create(model="fusion/research", messages=HARD)
    assert err.value.status_code == 401  # the test extras install `prisma`, without which LiteLLM says 500


@pytest.mark.parametrize("profile, stop", [("debate", "agreed_in_round_1"), ("debate2", "max_rounds")])
def test_debate_through_the_proxy_with_the_default_static_embedding_model(client, profile, stop):
    stream = client.chat.completions.create(model=f"fusion/{profile}", messages=HARD, stream=True,
                                            extra_body={"chorus": {"output_mode": "audit"}})
    content, reasoning, ext = [], [], None
    for chunk in stream:
        for choice in chunk.choices:
            content.append(choice.delta.content or "")
            reasoning.append((choice.delta.model_extra or {}).get("reasoning_content") or "")
        ext = (chunk.model_extra or {}).get("provider_specific_fields", {}) or ext
    d = ext["chorus"]["deliberation"]
    assert d["protocol"] == "debate" and d["stop_reason"] == stop
    assert d["embedding_model"] == "static:all-MiniLM-L6-v2"
    assert "Round 1:" in "".join(reasoning)  # live progress as reasoning_content
    assert "".join(content).startswith("writer answers")
    assert len(ext["chorus"]["transcript"]["rounds"]) == d["rounds"]
    if profile == "debate2":
        assert d["rounds"] == 2 and ext["chorus"]["usage"]["stages"]["debate"]["calls"] == 3


def test_consensus_through_the_proxy(client):
    resp = client.chat.completions.create(model="fusion/consensus", messages=HARD)
    d = resp.model_extra["chorus"]["deliberation"]
    assert d["protocol"] == "consensus" and d["reached"] and d["stop_reason"] == "consensus"
    assert resp.choices[0].message.content.startswith("writer answers")
    stages = resp.model_extra["chorus"]["usage"]["stages"]
    assert stages["critique"]["calls"] == 3 and stages["vote"]["calls"] == 3


# -- charged as it happens: every exit bills what was spent -------------------------------
def failures(proxy, before, wait=10.0):
    records = spend_records(proxy.spend, count=before + 1, wait=wait)[before:]
    return [r for r in records if r.get("failure")]


def test_a_missed_quorum_is_charged_to_the_caller(client, proxy):
    before = lines(proxy)
    with pytest.raises(openai.APIStatusError) as err:
        client.chat.completions.create(model="fusion/half", messages=HARD)
    assert err.value.status_code == 502
    (failure,) = failures(proxy, before)
    # what LiteLLM's failure path bills to the key and team: model-a's answer (or its
    # prompt, if it was cut off when the quorum became impossible)
    assert failure["team_id"] == "team-a" and failure["response_cost"] > 0


def test_a_client_that_hangs_up_mid_answer_pays_for_panel_judge_and_partial_synthesis(client, proxy):
    before = lines(proxy)
    stream = client.chat.completions.create(model="fusion/drip", messages=HARD, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break  # the first words of the answer, then the client goes away
    stream.close()
    # the inner calls that finished (2 panel + judge), then the outer call's bill
    records = spend_records(proxy.spend, count=before + 4, wait=15)[before:]
    inner = [r for r in records if r["model_group"] in ("model-a", "model-b", "judge")]
    outer = [r for r in records if (r["model_group"] or "").startswith("fusion/")]
    assert len(inner) == 3 and len(outer) == 1 and outer[0]["team_id"] == "team-a"
    assert outer[0]["response_cost"] > sum(r["response_cost"] for r in inner)  # + partial synthesis


def test_a_synthesis_that_breaks_mid_answer_keeps_its_words_and_their_cost(client):
    content, ext = [], None
    for chunk in client.chat.completions.create(model="fusion/midfail", messages=HARD, stream=True):
        content += [c.delta.content or "" for c in chunk.choices]
        ext = (chunk.model_extra or {}).get("provider_specific_fields", {}).get("chorus") or ext
    text = "".join(content)
    assert text.startswith("midfail-writer answers") and len(text.split()) == 3  # the words before the break
    assert "mid-answer" in ext["synthesis"]["error"]
    (synth,) = [c for c in ext["usage"]["calls"] if c["stage"] == "synthesis"]
    assert synth["status"] == "partial" and synth["estimated"] and synth["cost"] > 0
    assert ext["cost"]["total"] == pytest.approx(sum(c["cost"] for c in ext["usage"]["calls"]))


def test_inner_calls_are_tagged_with_run_stage_and_seat(client, proxy):
    before = lines(proxy)
    resp = client.chat.completions.create(model="fusion/research", messages=HARD)
    run_id = resp.model_extra["chorus"]["id"]
    inner = [r for r in spend_records(proxy.spend, count=before + 6)[before:]
             if not (r["model_group"] or "").startswith("fusion/")]
    tags = {t for r in inner for t in r["tags"]}
    assert f"chorus-run:{run_id}" in tags and "chorus-stage:judge" in tags and "chorus-seat:model-b" in tags


def test_a_key_without_budget_for_the_worst_case_gets_litellms_budget_error_before_any_call(proxy, upstream):
    from chorus_litellm.gateway.compat import budget_status

    low = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-team-c-low", max_retries=0, timeout=60)
    before = httpx.get(f"{upstream}/stats", timeout=10).json()
    for stream in (False, True):
        with pytest.raises(openai.APIStatusError) as refused:
            resp = low.chat.completions.create(model="fusion/research", messages=HARD, stream=stream)
            list(resp) if stream else None
        error = refused.value
        assert error.status_code == budget_status()  # LiteLLM's own: 422 (429 on 1.98)
        assert error.body["type"] == "budget_exceeded" or error.body.get("code") == str(budget_status())
        assert error.body["message"].startswith("Budget has been exceeded! Key=")
        assert "Current cost: 2.9999" in error.body["message"] and "Max budget: 3.0" in error.body["message"]
    assert httpx.get(f"{upstream}/stats", timeout=10).json() == before  # no member, judge or writer called
    ok = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-team-c-ok", max_retries=0, timeout=60)
    resp = ok.chat.completions.create(model="fusion/research", messages=HARD)
    budget = resp.model_extra["chorus"]["budget"]
    # 3 drafts at the assumed 4096 tokens (2e-6 USD out), judge and synthesis: well under the 3 USD left
    assert 0.02 < budget["worst_case_usd"] < 3.0 and resp.model_extra["chorus"]["cost"]["total"] < 0.01


WEATHER = [{"type": "function", "function": {
    "name": "get_weather", "description": "The weather now in a city",
    "parameters": {"type": "object", "properties": {"query": {"type": "string"}}, "required": ["query"]}}}]


@pytest.mark.parametrize("stream", [False, True])
def test_an_agent_loop_with_tools_runs_through_a_fused_model(client, upstream, stream):
    """The official client drives two steps: the fused turn calls the tool, the client runs
    it, and the next fused turn answers from its result. Members never see the schemas."""
    import json

    messages = [{"role": "user", "content": "Should I cycle to work in Oslo today? Check the weather first."}]
    httpx.post(f"{upstream}/reset")
    for step in (1, 2):
        if stream:
            with client.chat.completions.stream(model="fusion/agent", messages=messages, tools=WEATHER) as events:
                for _ in events:
                    pass
                final = events.get_final_completion()
        else:
            final = client.chat.completions.create(model="fusion/agent", messages=messages, tools=WEATHER)
        choice = final.choices[0]
        if step == 1:
            assert choice.finish_reason == "tool_calls" and not choice.message.content
            (call,) = choice.message.tool_calls
            assert call.function.name == "get_weather" and "Oslo" in json.loads(call.function.arguments)["query"]
            messages += [choice.message.model_dump(exclude_none=True),
                         {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": -12, "snow": true}'}]
        else:
            assert choice.finish_reason == "stop" and choice.message.content.startswith("writer answers")
            assert not choice.message.tool_calls
    seen = httpx.get(f"{upstream}/seen").json()
    offered = {s["model"] for s in seen if s["tools"]}
    assert offered == {"writer"}  # the members and the judge were never shown the tool schemas
    members = [s for s in seen if s["model"].startswith("model-")]
    assert len(members) == 6 and all("tool" not in s["roles"] for s in members)  # tool results as text


def test_panel_web_search_reaches_the_members_that_support_it_and_their_sources_the_judge(client, upstream):
    httpx.post(f"{upstream}/reset")
    resp = client.chat.completions.create(model="fusion/search", messages=HARD)
    assert resp.choices[0].message.content.startswith("writer answers")
    seen = httpx.get(f"{upstream}/seen").json()
    searched = {s["model"]: s["web_search"] for s in seen}
    assert searched == {"search-a": True, "model-b": False, "judge": False, "writer": False}
    judge = next(s for s in seen if s["model"] == "judge")["last"]
    # the judge reads search-a's source under its answer's (anonymous) label
    assert "Sources cited: [1] What search-a found <https://example.org/search-a/" in judge
    assert '"label": "A"' in judge and "search-a answers" in judge
