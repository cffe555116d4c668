"""End to end: input the validation must refuse at the edge (issue 23), through the real
proxy and raw HTTP (a client library would not even send some of it), with the fake
upstream's `/stats` showing that no model was called.

- a non-finite number (`1e309`, which JSON parsers read as inf, and Python's `Infinity`):
  a 400 naming the field, never a run charged and then a 500 it cannot serialize;
- a `chorus.debate_id` no response header can carry (a newline, only a space, a NUL, an
  emoji, 60,000 characters): a 400 naming `chorus.debate_id`, the connection kept, and
  no `x-chorus-debate-id` header repeating it.
"""

import json

import httpx
import openai
import pytest

HEADER = "x-chorus-debate-id"
AUTH = {"Authorization": "Bearer sk-team-a", "Content-Type": "application/json"}
MESSAGES = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]


def stats(upstream: str) -> dict:
    return httpx.get(f"{upstream}/stats", timeout=10).json()


def post(proxy, content: str) -> httpx.Response:
    """A raw chat completion (what `json.dumps` refuses to write can still be sent)."""
    return httpx.post(f"{proxy.url}/v1/chat/completions", content=content.encode(), headers=AUTH, timeout=60)


def error_of(resp: httpx.Response) -> dict:
    return resp.json()["error"]


@pytest.mark.parametrize("number", ["1e309", "Infinity"])
def test_a_non_finite_cost_cap_is_a_400_before_any_call(proxy, upstream, number):
    before = stats(upstream)
    body = ('{"model": "fusion/research", "messages": ' + json.dumps(MESSAGES)
            + ', "chorus": {"max_cost_usd": ' + number + "}}")
    for _attempt in range(2):  # a retry gets the same 400, not a 500
        resp = post(proxy, body)
        assert resp.status_code == 400, resp.text
        assert "chorus.max_cost_usd" in error_of(resp)["message"] and "finite" in error_of(resp)["message"]
    assert stats(upstream) == before  # no member, judge or writer called, nothing charged


@pytest.mark.parametrize("debate_id", ["a\nb", " ", "a\x00b", "\U0001f4a5", "x" * 60_000],
                         ids=["newline", "space", "nul", "emoji", "60000-chars"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_debate_id_no_header_can_carry_is_a_400_naming_it(proxy, upstream, debate_id, stream):
    before = stats(upstream)
    resp = post(proxy, json.dumps({"model": "fusion/research", "messages": MESSAGES, "stream": stream,
                                   "chorus": {"debate_id": debate_id}}))  # a dropped connection raises here
    assert resp.status_code == 400, resp.text[:500]
    assert "chorus.debate_id" in error_of(resp)["message"]
    assert HEADER not in resp.headers
    assert sum(len(k) + len(v) for k, v in resp.headers.items()) < 4096 and len(resp.content) < 4096
    assert stats(upstream) == before


def test_the_official_client_gets_the_400_and_a_valid_id_still_names_its_run(proxy):
    client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)
    with pytest.raises(openai.BadRequestError, match="chorus.debate_id") as refused:
        client.chat.completions.create(model="fusion/research", messages=MESSAGES,
                                       extra_body={"chorus": {"debate_id": "a\nb"}})
    assert HEADER not in refused.value.response.headers
    raw = client.chat.completions.with_raw_response.create(
        model="fusion/research", messages=[{"role": "user", "content": "hi"}],
        extra_body={"chorus": {"debate_id": "edge-ok.1:" + "x" * 118}})
    assert raw.headers[HEADER] == "edge-ok.1:" + "x" * 118
    assert raw.parse().model_extra["chorus"]["id"] == raw.headers[HEADER]
