"""Every client surface of a fusion model through the real proxy, with official clients:
the OpenAI Responses API (`openai`) and Anthropic Messages (`anthropic`), each streaming
and not (chat completions: test_e2e_proxy.py). LiteLLM bridges both to the plugin's chat
interface; these tests pin the answer, the usage, the charged cost and the progress
(reasoning / thinking) so a LiteLLM upgrade cannot break them silently."""

import anthropic
import openai
import pytest

from tests.conftest import line_count, spend_records

QUESTION = "Compare Raft and Paxos and explain the trade-offs."
INNER_CALLS = 5  # three panel members, the judge, the synthesizer


@pytest.fixture
def oai(proxy):
    return openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)


@pytest.fixture
def claude(proxy):
    return anthropic.Anthropic(base_url=proxy.url, api_key="sk-team-a", max_retries=0, timeout=60)


def charged(proxy, before: int) -> tuple[dict, list[dict]]:
    """The outer record (charged to the caller's team) and the inner calls' records."""
    records = spend_records(proxy.spend, count=before + INNER_CALLS + 1)[before:]
    outer = [r for r in records if (r["model_group"] or "").startswith("fusion/")]
    assert len(outer) == 1, records
    return outer[0], [r for r in records if r is not outer[0]]


def lines(proxy) -> int:
    return line_count(proxy.spend)


def assert_charged_the_true_cost(proxy, before: int) -> None:
    outer, inner = charged(proxy, before)
    assert outer["team_id"] == "team-a" and len(inner) == INNER_CALLS
    assert outer["response_cost"] == pytest.approx(sum(r["response_cost"] for r in inner)) and outer["response_cost"] > 0


def test_responses_api(oai, proxy):
    before = lines(proxy)
    resp = oai.responses.create(model="fusion/research", input=QUESTION)
    assert resp.output_text.startswith("writer answers")
    assert resp.usage.total_tokens == resp.usage.input_tokens + resp.usage.output_tokens > 0
    assert_charged_the_true_cost(proxy, before)


def test_responses_api_streaming_shows_progress_as_reasoning(oai, proxy):
    before = lines(proxy)
    text, reasoning, done = [], [], None
    for event in oai.responses.create(model="fusion/research", input=QUESTION, stream=True):
        if event.type == "response.output_text.delta":
            text.append(event.delta)
        elif "reasoning" in event.type and event.type.endswith(".delta"):
            reasoning.append(event.delta)
        elif event.type == "response.completed":
            done = event.response
    assert "".join(text).startswith("writer answers")
    assert "Panel:" in "".join(reasoning)
    assert done is not None and done.usage.total_tokens > 0
    assert_charged_the_true_cost(proxy, before)


def test_anthropic_messages(claude, proxy):
    before = lines(proxy)
    msg = claude.messages.create(model="fusion/research", max_tokens=1024,
                                 messages=[{"role": "user", "content": QUESTION}])
    text = "".join(block.text for block in msg.content if block.type == "text")
    assert text.startswith("writer answers")
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert_charged_the_true_cost(proxy, before)


def test_anthropic_messages_streaming_shows_progress_as_thinking(claude, proxy):
    before = lines(proxy)
    text, thinking = [], []
    with claude.messages.stream(model="fusion/research", max_tokens=1024,
                                messages=[{"role": "user", "content": QUESTION}]) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                text.append(event.delta.text)
            elif event.type == "content_block_delta" and event.delta.type == "thinking_delta":
                thinking.append(event.delta.thinking)
        final = stream.get_final_message()
    assert "".join(text).startswith("writer answers")
    assert "Panel:" in "".join(thinking)
    assert final.usage.output_tokens > 0
    assert_charged_the_true_cost(proxy, before)


HEADER = "x-chorus-debate-id"


def stored(proxy, run_id: str) -> dict:
    import httpx

    resp = httpx.get(f"{proxy.url}/chorus/v1/runs/{run_id}", headers={"Authorization": "Bearer sk-team-a"}, timeout=30)
    assert resp.status_code == 200, (run_id, resp.text)
    return resp.json()


@pytest.mark.parametrize("surface", ["chat", "chat-stream", "responses", "responses-stream", "messages",
                                     "messages-stream"])
def test_every_surface_names_its_run_in_a_header_before_the_first_byte(oai, claude, proxy, surface):
    messages = [{"role": "user", "content": QUESTION}]
    stream = surface.endswith("-stream")
    if surface.startswith("chat"):
        raw = oai.chat.completions.with_raw_response.create(model="fusion/research", messages=messages, stream=stream)
    elif surface.startswith("responses"):
        raw = oai.responses.with_raw_response.create(model="fusion/research", input=QUESTION, stream=stream)
    else:
        raw = claude.messages.with_raw_response.create(model="fusion/research", max_tokens=1024, messages=messages,
                                                       stream=stream)
    run_id = raw.headers.get(HEADER)  # read before the body (a stream's first byte)
    assert run_id
    body = raw.parse()
    if stream:
        list(body)
    assert stored(proxy, run_id)["profile"] == "research"


def test_a_chosen_id_a_forwarded_run_and_a_failed_run_carry_the_header_and_other_models_do_not(oai, proxy):
    easy = [{"role": "user", "content": "hi"}]
    chosen = oai.chat.completions.with_raw_response.create(
        model="fusion/research", messages=easy, extra_body={"chorus": {"debate_id": "hdr-chosen-1"}})
    assert chosen.headers[HEADER] == "hdr-chosen-1" and chosen.parse().model_extra["chorus"]["id"] == "hdr-chosen-1"
    forwarded = oai.chat.completions.with_raw_response.create(model="fusion/auto", messages=easy)
    run = stored(proxy, forwarded.headers[HEADER])
    assert run["route"]["decision"] == "single"
    with pytest.raises(openai.APIStatusError) as failed:
        oai.chat.completions.create(model="fusion/down", messages=easy, extra_body={"chorus": {"debate_id": "hdr-down"}})
    assert failed.value.status_code == 502 and failed.value.response.headers.get(HEADER) == "hdr-down"
    plain = oai.chat.completions.with_raw_response.create(model="model-a", messages=easy)
    assert HEADER not in plain.headers
