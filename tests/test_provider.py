"""The provider through LiteLLM's own SDK entry points, with a FakeCompleter behind it."""

import litellm
import pytest

from chorus_litellm.gateway.provider import FusionHandler
from chorus_litellm.core.errors import RequestError, UpstreamError
from chorus_litellm.testing import FakeCompleter, Reply
from chorus_litellm.core.types import Usage
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
    from chorus_litellm.gateway.translate import caller_of

    meta = {"user_api_key_hash": "abc", "user_api_key_team_id": "team-a", "user_api_key_user_id": "u1"}
    caller = caller_of({"metadata": meta})
    assert (caller.key_hash, caller.team_id, caller.user_id) == ("abc", "team-a", "u1")


def test_sync_completion(fake):
    fake.enqueue("writer", Reply("fused sync", usage=Usage(7, 3), cost=0.5), Reply("streamed sync"))
    resp = litellm.completion(model="fusion/test", messages=HARD)
    assert resp.choices[0].message.content == "fused sync"
    assert resp.usage.total_tokens == 4 * 15 + 10 and resp.chorus["cost"]["total"] == pytest.approx(0.504)
    chunks = list(litellm.completion(model="fusion/test", messages=HARD, stream=True,
                                     stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "streamed sync"
    assert [c.usage for c in chunks if getattr(c, "usage", None)][-1].total_tokens == 5 * 15


async def test_reputation_filters_seats(tmp_path):
    from chorus_litellm.storage.sqlite_backend import SQLiteStore

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


async def test_with_store_and_outbox_unwritable_a_run_still_answers_in_configured_order(tmp_path):
    """Reputation is advice and transcripts are best effort: a store whose database and outbox
    both sit under a plain file (so neither can be opened) still answers the request."""
    from chorus_litellm.storage.sqlite_backend import SQLiteStore

    (tmp_path / "a-file").touch()
    down = SQLiteStore(tmp_path / "a-file" / "db.sqlite3", outbox=tmp_path / "a-file" / "outbox.sqlite3",
                       legacy_outbox=tmp_path / "a-file" / "legacy.jsonl")
    prof = profile(panel={"members": ["model-a", "model-b", "model-c"], "min_quorum": 2,
                          "reputation": {"order": True, "min_score": 0.5}})
    handler = FusionHandler({"test": prof}, completer=FakeCompleter(), store=down)
    litellm.custom_provider_map = [{"provider": "fusion", "custom_handler": handler}]
    try:
        resp = await litellm.acompletion(model="fusion/test", messages=HARD, metadata=KEYED["metadata"])
    finally:
        litellm.custom_provider_map = []
        await down.aclose()
    assert resp.choices[0].message.content
    assert resp.chorus["panel"]["answered"] == ["model-a", "model-b", "model-c"]  # configured order
    assert any("reputation unavailable (StoreUnavailable)" in n for n in resp.chorus["notes"])


# -- the one error boundary ----------------------------------------------------------------
class FakeLogging:
    """Stands in for LiteLLM's logging object: what the provider tells it to charge."""

    def __init__(self):
        self.model_call_details = {}
        self.partial = None

    def record_partial_usage_for_failure(self, usage, cost):
        self.partial = (usage.total_tokens, cost)


def direct(handler, method, messages=HARD, logging_obj=None, litellm_params=None, timeout=None, **params):
    """Call the handler as LiteLLM does (positional args), without LiteLLM in between."""
    from litellm.types.utils import ModelResponse

    return getattr(handler, method)("test", messages, None, {}, ModelResponse(), print, None, None,
                                    logging_obj, params, litellm_params=litellm_params or {}, timeout=timeout)


class BrokenStore:
    """A store whose every write fails with a plain bug (not an outage it could outbox)."""

    async def start(self):
        pass

    async def put_transcript(self, *a, **k):
        raise RuntimeError("disk on fire")

    async def get_transcript(self, *a, **k):
        return None

    async def add_reputation(self, *a, **k):
        raise RuntimeError("disk on fire")

    async def reputation(self, *a, **k):
        raise RuntimeError("disk on fire")


class BrokenSigner:
    key_id = "ed25519:broken"

    def sign(self, payload):
        from chorus_litellm.settlement.signing import SigningError

        raise SigningError("the key is unusable")


class BrokenEmbedder:
    model_id = "broken"

    async def encode(self, texts):
        raise OSError("model weights missing")


KEYED = {"metadata": {"user_api_key_hash": "h", "user_api_key_team_id": "team-a"}}
CASES = {
    "store bug": (dict(store=BrokenStore()), {}, profile(), 500, "RuntimeError: disk on fire"),
    "signing error": (dict(signer=BrokenSigner()), {"bounty": {"amount": 100}}, profile(), 500, "SigningError"),
    "embedder load failure": (dict(embedder=BrokenEmbedder()), {}, profile(debate={"protocol": "debate"}), 500,
                              "OSError: model weights missing"),
    "missed quorum": ({}, {}, profile(panel={"members": ["model-a", "fail-b", "fail-c"], "min_quorum": 2}), 502,
                      "quorum not met"),
}


@pytest.mark.parametrize("case", list(CASES))
async def test_no_exception_ever_triggers_a_router_retry(case, tmp_path):
    ports, body, prof, status, match = CASES[case]
    fake = FakeCompleter().enqueue("fail-b", UpstreamError("http_error", "no", status=500))
    fake.enqueue("fail-c", UpstreamError("http_error", "no", status=500))
    ports.setdefault("store", __import__("chorus_litellm.storage.sqlite_backend", fromlist=["x"])
                     .SQLiteStore(tmp_path / "db.sqlite3"))
    handler = FusionHandler({"test": prof}, completer=fake, **ports)
    runs, prepare = [], handler._prepare
    handler._prepare = lambda *a, **k: runs.append(1) or prepare(*a, **k)
    litellm.custom_provider_map = [{"provider": "fusion", "custom_handler": handler}]
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    router = litellm.Router(model_list=[{"model_name": "fusion/test", "litellm_params": {"model": "fusion/test"}}],
                            num_retries=3, retry_after=0)
    try:
        with pytest.raises(Exception) as err:
            await router.acompletion(model="fusion/test", messages=HARD, metadata=KEYED["metadata"], **body)
    finally:
        litellm.custom_provider_map = []
    assert err.value.status_code == status and match in str(err.value)
    assert "Traceback" not in str(err.value)
    assert runs == [1]  # the fusion ran once: never replayed by the Router
    assert all(len(fake.calls_to(m)) <= 1 for m in ("model-a", "fail-b", "fail-c"))


def test_every_run_error_keeps_its_status_and_nothing_retries():
    from chorus_litellm.gateway.provider import to_litellm_error
    from chorus_litellm.core.errors import ConflictError, DeadlineError, QuorumError, StoreUnavailable

    for exc, status in [(RequestError("bad"), 400), (ConflictError("used"), 409), (QuorumError("few"), 502),
                        (UpstreamError("timeout", "slow"), 502), (StoreUnavailable("down"), 503),
                        (DeadlineError("late"), 504), (ValueError("bug"), 500), (KeyError("x"), 500)]:
        err = to_litellm_error(exc, "test")
        assert err.status_code == status and err.num_retries == 0, exc


async def test_an_upstream_with_no_choices_is_a_member_failure_not_a_crash():
    from chorus_litellm.gateway.llm import RouterCompleter
    from litellm.types.utils import ModelResponse

    class NoChoices:
        async def acompletion(self, **kwargs):
            response = ModelResponse()
            response.choices = []
            return response

    with pytest.raises(UpstreamError) as err:
        await RouterCompleter(lambda: NoChoices()).complete("m", HARD, timeout=1)
    assert err.value.kind == "empty"


# -- charging on every exit --------------------------------------------------------------
async def test_a_missed_quorum_is_charged_for_the_members_that_answered():
    fake = FakeCompleter().enqueue("model-b", UpstreamError("http_error", "no", status=500))
    fake.enqueue("model-c", UpstreamError("http_error", "no", status=500))
    fake.enqueue("model-a", Reply("only me", usage=Usage(10, 5), cost=0.25))
    log = FakeLogging()
    with pytest.raises(litellm.BadGatewayError):
        await direct(FusionHandler({"test": profile()}, completer=fake), "acompletion", logging_obj=log)
    assert log.partial == (15, 0.25)  # LiteLLM's failure path bills this to the caller's key


async def test_client_disconnect_mid_synthesis_charges_what_was_spent_and_cancels_the_rest():
    fake = FakeCompleter().enqueue("writer", Reply(" ".join(f"w{i}" for i in range(40)), word_delay=0.02))
    log = FakeLogging()
    stream = direct(FusionHandler({"test": profile()}, completer=fake), "astreaming", logging_obj=log)
    async for chunk in stream:
        if chunk.choices[0].delta.content:
            break  # the client hangs up after the first words of the answer
    await stream.aclose()
    synth = fake.calls_to("writer")[0]
    assert synth.cancelled
    panel_and_judge = 4 * 0.001
    charged = log.model_call_details["additional_response_cost"]
    assert charged > panel_and_judge  # plus the partial synthesis, estimated
    assert log.partial[1] == charged


async def test_the_run_deadline_ends_a_slow_synthesis_with_the_fallback_answer():
    prof = profile(limits={"run_timeout_s": 0.5})
    fake = FakeCompleter().enqueue("writer", Reply("never", delay=30))
    resp = await direct(FusionHandler({"test": prof}, completer=fake), "acompletion")
    ext = resp.chorus
    assert ext["synthesis"]["fallback"] and "timeout" in ext["synthesis"]["error"]
    assert ext["timings_s"]["total"] < 2
    assert resp.choices[0].message.content.split(" ")[0] in {"model-a", "model-b", "model-c"}


async def test_a_panel_past_the_run_deadline_is_a_504():
    prof = profile(limits={"run_timeout_s": 0.3})
    fake = FakeCompleter()
    for m in ("model-a", "model-b", "model-c"):
        fake.enqueue(m, Reply("late", delay=30))
    with pytest.raises(Exception) as err:
        await direct(FusionHandler({"test": prof}, completer=fake), "acompletion")
    assert err.value.status_code == 504 and "deadline" in str(err.value)


async def test_the_clients_timeout_shortens_the_run_deadline():
    fake = FakeCompleter().enqueue("writer", Reply("never", delay=30))
    resp = await direct(FusionHandler({"test": profile()}, completer=fake), "acompletion", timeout=0.4)
    assert resp.chorus["synthesis"]["fallback"]


# -- consensus, params --------------------------------------------------------------------
async def test_consensus_failure_after_progress_falls_back_to_a_draft_not_a_broken_stream():
    prof = profile(debate={"protocol": "consensus"}, panel={"members": ["model-a", "model-b", "model-c"],
                                                             "max_tokens": 16})
    down = UpstreamError("http_error", "down", status=500)
    fake = FakeCompleter().enqueue("writer", down, down)  # the first try and its retry
    chunks = [c async for c in direct(FusionHandler({"test": prof}, completer=fake), "astreaming",
                                      max_tokens=300, stop=["END"])]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text.split(" ")[0] in {"model-a", "model-b", "model-c"}
    assert chunks[-1].choices[0].finish_reason == "stop"
    ext = next(c.provider_specific_fields["chorus"] for c in chunks if getattr(c, "provider_specific_fields", None))
    assert ext["synthesis"]["fallback"] and "stopped" in ext["deliberation"]["stop_reason"]
    # the synthesizer wrote with the final answer's params, not the drafts' cap
    writer = fake.calls_to("writer")[0]
    assert writer.params["max_tokens"] == 300 and writer.params["stop"] == ["END"]


async def test_response_format_reaches_the_synthesizer_only():
    fmt = {"type": "json_object"}
    fake = FakeCompleter().enqueue("writer", Reply('{"answer": 42}'))
    resp = await direct(FusionHandler({"test": profile()}, completer=fake), "acompletion", response_format=fmt,
                        reasoning_effort="low")
    assert resp.choices[0].message.content == '{"answer": 42}'
    assert fake.calls_to("writer")[0].params["response_format"] == fmt
    assert all("response_format" not in c.params for c in fake.calls_to("model-a"))
    assert fake.calls_to("model-a")[0].params["reasoning_effort"] == "low"


async def test_a_json_answer_is_never_replaced_by_a_free_text_fallback():
    down = UpstreamError("http_error", "down", status=500)
    fake = FakeCompleter().enqueue("writer", down, down)
    with pytest.raises(litellm.BadGatewayError, match="JSON the response_format asks for"):
        await direct(FusionHandler({"test": profile()}, completer=fake), "acompletion",
                     response_format={"type": "json_object"})


@pytest.mark.parametrize("param, value", [("logprobs", True), ("top_logprobs", 3), ("logit_bias", {"1": 2})])
async def test_params_a_fusion_cannot_honour_are_refused(param, value):
    with pytest.raises(litellm.BadRequestError, match=f"{param} is not supported"):
        await direct(FusionHandler({"test": profile()}, completer=FakeCompleter()), "acompletion", **{param: value})


# -- idempotency and owners ---------------------------------------------------------------
async def test_a_retried_debate_id_replays_the_first_run_and_a_different_request_is_409(tmp_path):
    from chorus_litellm.settlement.signing import Signer
    from chorus_litellm.storage.sqlite_backend import SQLiteStore
    from chorus_litellm.testing import TEST_SIGNING_SEED

    fake = FakeCompleter()
    handler = FusionHandler({"test": profile()}, completer=fake, store=SQLiteStore(tmp_path / "db.sqlite3"),
                            signer=Signer(TEST_SIGNING_SEED), embedder=__import__("chorus_litellm.testing",
                                                                                  fromlist=["x"]).HashEmbedder())
    body = {"bounty": {"amount": 1000, "currency": "USD"}, "chorus": {"debate_id": "retry-1"}}
    first = await direct(handler, "acompletion", litellm_params=KEYED, extra_body=body)
    calls = len(fake.calls)
    again = await direct(handler, "acompletion", litellm_params=KEYED, extra_body=body)
    assert len(fake.calls) == calls  # nothing ran again
    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.chorus["replayed"] and again.chorus["settlement"]["duplicate"]
    assert again.chorus["settlement"]["receipt_id"] == first.chorus["settlement"]["receipt_id"]
    assert again._hidden_params["response_cost"] == 0
    chunks = [c async for c in direct(handler, "astreaming", litellm_params=KEYED, extra_body=body)]
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == first.choices[0].message.content
    other = [{"role": "user", "content": "A different question about consensus protocols, please."}]
    with pytest.raises(litellm.BadRequestError, match="already used for a different request") as err:
        await direct(handler, "acompletion", messages=other, litellm_params=KEYED, extra_body=body)
    assert err.value.status_code == 409


async def test_unauthenticated_callers_get_no_bounty_and_keep_nothing_readable(tmp_path):
    from chorus_litellm.settlement.signing import Signer
    from chorus_litellm.storage.sqlite_backend import SQLiteStore
    from chorus_litellm.testing import TEST_SIGNING_SEED

    store = SQLiteStore(tmp_path / "db.sqlite3")
    handler = FusionHandler({"test": profile()}, completer=FakeCompleter(), store=store,
                            signer=Signer(TEST_SIGNING_SEED))
    with pytest.raises(litellm.BadRequestError, match="authenticated caller"):
        await direct(handler, "acompletion", extra_body={"bounty": {"amount": 5}})
    resp = await direct(handler, "acompletion", extra_body={"chorus": {"debate_id": "anon-1"}})
    assert resp.choices[0].message.content
    for owner in ("anonymous", "None"):
        assert await store.get_transcript(owner, "anon-1") is None


# -- streams, loops, relayed responses ------------------------------------------------------
def test_an_abandoned_sync_stream_closes_the_run():
    import time

    fake = FakeCompleter().enqueue("writer", Reply(" ".join(["word"] * 200), word_delay=0.02))
    handler = FusionHandler({"test": profile()}, completer=fake)
    stream = direct(handler, "streaming")
    while not (next(stream).choices[0].delta.content):
        pass
    stream.close()
    deadline = time.monotonic() + 2
    while not fake.calls_to("writer")[0].cancelled and time.monotonic() < deadline:
        time.sleep(0.01)
    assert fake.calls_to("writer")[0].cancelled


def test_one_embedder_per_event_loop():
    import asyncio

    from tests.factories import request

    handler = FusionHandler({"test": profile()}, completer=FakeCompleter())
    req = request(profile(debate={"protocol": "debate"}))

    async def get():
        return handler.app.embedder_for(req), handler.app.embedder_for(req)

    (a1, a2), (b1, _) = asyncio.run(get()), asyncio.run(get())
    assert a1 is a2 and a1 is not b1


async def test_a_forwarded_response_is_copied_not_mutated():
    from chorus_litellm.gateway.forward import RouterForwarder
    from litellm.types.utils import ModelResponse

    original = ModelResponse(choices=[{"message": {"role": "assistant", "content": "hi"}}])
    original._hidden_params = {"response_cost": 0.3}

    class OneRouter:
        async def acompletion(self, **kwargs):
            return original

    items = [i async for i in RouterForwarder(lambda: OneRouter()).forward("m", HARD, {}, stream=False, timeout=5)]
    relayed, completion = items[0].item, items[1]
    relayed._hidden_params["response_cost"] = 99
    assert original._hidden_params == {"response_cost": 0.3} and completion.cost == 0.3


def test_the_callers_budgets_come_from_litellms_auth_object_or_its_metadata():
    from litellm.proxy._types import UserAPIKeyAuth

    from chorus_litellm.gateway.translate import caller_of
    from chorus_litellm.core.types import Budget

    auth = UserAPIKeyAuth(api_key="h", key_alias="ci", team_id="t", spend=0.5, max_budget=1.0, team_spend=3.0,
                          team_max_budget=10.0, user_id="u")
    caller = caller_of({"metadata": {"user_api_key_auth": auth, "user_api_key_team_id": "t",
                                   "user_api_key_user_id": "u", "user_api_key_alias": "ci"}})
    assert caller.budgets == (Budget("key", "ci", 0.5, 1.0), Budget("team", "t", 3.0, 10.0))
    meta = {"user_api_key_hash": "h", "user_api_key_user_id": "u", "user_api_key_user_spend": 4,
            "user_api_key_user_max_budget": 5, "user_api_key_max_budget": None}
    assert caller_of({"metadata": meta}).budgets == (Budget("user", "u", 4.0, 5.0),)
    assert caller_of({}).budgets == ()


def test_a_budget_refusal_is_served_as_litellms_budget_error():
    from chorus_litellm.gateway import compat
    from chorus_litellm.gateway.provider import to_litellm_error
    from chorus_litellm.core.errors import BudgetError

    error = to_litellm_error(BudgetError("Budget has been exceeded! Key=k Current cost: 1"), "chorus/research")
    assert error.status_code == compat.budget_status() and error.type == "budget_exceeded"
    assert error.num_retries == 0 and "Budget has been exceeded!" in str(error)


# -- retries counted once, and a cut answer says so -----------------------------------------
async def test_a_synthesis_cut_mid_stream_ends_with_length_and_says_why(fake):
    fake.enqueue("writer", Reply("one two three", error=UpstreamError("connection", "reset"), fail_after=2))
    stream = await litellm.acompletion(model="fusion/test", messages=HARD, stream=True)
    chunks = [c async for c in stream]
    content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    ext = next(c.provider_specific_fields["chorus"] for c in chunks if getattr(c, "provider_specific_fields", None))
    assert content == "one two" and finish == ["length"]
    assert ext["degraded"] == ["synthesis_cut"] and ext["synthesis"]["cut"] and "reset" in ext["synthesis"]["error"]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_synthesizer_stopped_at_max_tokens_ends_with_length(monkeypatch, stream):
    import dataclasses

    class Capped(FakeCompleter):
        async def complete(self, model, messages, **kwargs):
            done = await super().complete(model, messages, **kwargs)
            return dataclasses.replace(done, finish_reason="length") if model == "writer" else done

        async def stream(self, model, messages, **kwargs):
            async for piece in super().stream(model, messages, **kwargs):
                yield dataclasses.replace(piece, finish_reason="length") if model == "writer" and not \
                    isinstance(piece, str) else piece

    handler = FusionHandler({"test": profile()}, completer=Capped().enqueue("writer", Reply("one two")))
    monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "fusion", "custom_handler": handler}])
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    resp = await litellm.acompletion(model="fusion/test", messages=HARD, stream=stream, max_tokens=2)
    if stream:
        finish = [c.choices[0].finish_reason async for c in resp if c.choices and c.choices[0].finish_reason]
        assert finish == ["length"]
    else:
        assert resp.choices[0].finish_reason == "length" and resp.chorus["degraded"] == []


async def test_the_router_completer_passes_num_retries_on_and_counts_the_routers_retries():
    from litellm.types.utils import Choices, Message, ModelResponse

    from chorus_litellm.gateway.llm import OWN_RETRIES, RouterCompleter

    class Router:
        seen: list = []

        async def acompletion(self, **kwargs):
            self.seen.append(kwargs)
            response = ModelResponse(choices=[Choices(message=Message(content="hi"), finish_reason="stop")])
            response._hidden_params["additional_headers"] = {"x-litellm-attempted-retries": len(self.seen) - 1}
            return response

    router = Router()
    completer = RouterCompleter(lambda: router)
    first = await completer.complete("m", HARD, timeout=5, **OWN_RETRIES)
    assert router.seen[0]["num_retries"] == 0 and first.attempts == 1
    second = await completer.complete("m", HARD, timeout=5)  # a member: the Router's retries, counted
    assert "num_retries" not in router.seen[1] and second.attempts == 2
