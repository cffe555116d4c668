"""The provider through LiteLLM's own SDK entry points, with a FakeCompleter behind it."""

import litellm
import pytest

from chorus_litellm.adapters.provider import FusionHandler
from chorus_litellm.errors import UpstreamError
from chorus_litellm.testing import FakeCompleter, Reply
from chorus_litellm.types import Usage
from tests.factories import profile

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]


@pytest.fixture
def fake(monkeypatch):
    fake = FakeCompleter()
    handler = FusionHandler({"test": profile()}, completer=fake)
    monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "fusion", "custom_handler": handler}])
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    return fake


async def test_non_streaming_response(fake):
    fake.enqueue("writer", Reply("fused", usage=Usage(7, 3), cost=0.5))
    resp = await litellm.acompletion(model="fusion/test", messages=HARD)
    assert resp.choices[0].message.content == "fused"
    assert resp.model == "fusion/test"
    assert resp.usage.prompt_tokens == 4 * 10 + 7 and resp.usage.completion_tokens == 4 * 5 + 3
    assert resp._hidden_params["response_cost"] == pytest.approx(0.504)
    assert resp.chorus["cost"]["total"] == pytest.approx(0.504)


async def test_streaming_chunks(fake):
    fake.enqueue("writer", Reply("one two three"))
    stream = await litellm.acompletion(model="fusion/test", messages=HARD, stream=True,
                                       stream_options={"include_usage": True})
    chunks = [c async for c in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    reasoning = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
    assert content == "one two three"
    assert "3 of 3 answered" in reasoning and "Judge analysis done" in reasoning
    ext = [c.provider_specific_fields["chorus"] for c in chunks if getattr(c, "provider_specific_fields", None)]
    assert ext and ext[0]["cost"]["total"] == pytest.approx(0.005)
    usage = [c.usage for c in chunks if getattr(c, "usage", None)]
    assert usage[-1].prompt_tokens == 50


@pytest.mark.parametrize("stream", [False, True])
async def test_bad_input_is_400(fake, stream):
    with pytest.raises(litellm.BadRequestError, match="unsupported content part type 'image_url'"):
        resp = await litellm.acompletion(
            model="fusion/test", stream=stream,
            messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x"}}]}],
        )
        if stream:
            async for _ in resp:
                pass
    assert fake.calls == []


@pytest.mark.parametrize("stream", [False, True])
async def test_missed_quorum_is_502_naming_members(fake, stream):
    for m in ("model-a", "model-b"):
        fake.enqueue(m, UpstreamError("http_error", "upstream said no", status=500))
    # LiteLLM's stream wrapper re-raises 5xx errors before the first chunk as
    # MidStreamFallbackError (is_pre_first_chunk=True); status and message are kept.
    expected = litellm.ServiceUnavailableError if stream else litellm.BadGatewayError
    with pytest.raises(expected, match=r"model-a \(model-a\): http_error 500") as err:
        resp = await litellm.acompletion(model="fusion/test", messages=HARD, stream=stream)
        if stream:
            async for _ in resp:
                pass
    assert err.value.status_code == 502


async def test_unknown_profile_is_400(fake):
    with pytest.raises(litellm.BadRequestError, match="unknown fusion profile 'nope'"):
        await litellm.acompletion(model="fusion/nope", messages=HARD)


async def test_caller_identity_is_captured(fake):
    from chorus_litellm.adapters.provider import _caller

    meta = {"user_api_key_hash": "abc", "user_api_key_team_id": "team-a", "user_api_key_user_id": "u1"}
    caller = _caller({"metadata": meta})
    assert (caller.key_hash, caller.team_id, caller.user_id) == ("abc", "team-a", "u1")


def test_sync_completion(fake):
    resp = litellm.completion(model="fusion/test", messages=HARD)
    assert resp.choices[0].message.content
    chunks = list(litellm.completion(model="fusion/test", messages=HARD, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)


async def test_reputation_filters_seats(tmp_path):
    from chorus_litellm.adapters.store_sqlite import SQLiteStore

    store = SQLiteStore(tmp_path / "db.sqlite3")
    await store.add_reputation({"model:model-a": {"runs": 10, "failures": 10},  # score 0
                                "model:model-b": {"runs": 10, "eligible": 10, "impact_ratio": 20}})
    prof = profile(panel={"members": ["model-a", "model-b", "model-c"], "min_quorum": 2,
                          "reputation": {"order": True, "min_score": 0.5}})
    fake = FakeCompleter()
    handler = FusionHandler({"test": prof}, completer=fake, store=store)
    litellm.custom_provider_map = [{"provider": "fusion", "custom_handler": handler}]
    resp = await litellm.acompletion(model="fusion/test", messages=HARD)
    assert fake.calls_to("model-a") == []  # filtered out by reputation
    assert resp.chorus["panel"]["answered"] == ["model-b", "model-c"]
    counters = await store.reputation()
    assert counters["model:model-b"]["runs"] == 11  # this run was recorded too
    litellm.custom_provider_map = []
