"""The model decides when to fuse (issue 26): `router.policy: consult` offers the single
model a private `consult_panel` tool beside the client's; the panel runs only when it calls
it, and the private tool never reaches the client."""

import json

import pytest

from chorus_litellm.gateway.provider import FusionHandler
from chorus_litellm.core.errors import UpstreamError
from chorus_litellm.core.events import AnswerDelta, RunDone
from chorus_litellm.core.stages.consult import TOOL_NAME
from chorus_litellm.testing import FakeCompleter, Reply
from tests.factories import profile, request, run_events
from tests.test_provider import direct

QUESTION = "Which is easier to run in production, Raft or Paxos?"
CLIENT_TOOL = {"type": "function", "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}}}


def consult_profile(**router):
    return profile(router={"policy": "consult", "single_model": "solo", **router})


def consults(question=QUESTION):
    return Reply("", tool_calls=({"id": "c1", "type": "function",
                                  "function": {"name": TOOL_NAME, "arguments": json.dumps({"question": question})}},))


def offered(call) -> list[str]:
    return [t["function"]["name"] for t in call.params["tools"]]


async def test_an_easy_prompt_is_answered_by_the_single_model_in_one_call():
    fake = FakeCompleter().enqueue("solo", Reply("Paris."))
    out = await run_events(request(consult_profile(), [{"role": "user", "content": "Capital of France?"}]), fake)
    assert "".join(e.text for e in out if isinstance(e, AnswerDelta)) == "Paris."
    assert [c.model for c in fake.calls] == ["solo"]  # no panel, no judge, no writer
    assert offered(fake.calls[0]) == [TOOL_NAME] and fake.calls[0].params["tool_choice"] == "auto"
    report = out[-1].report
    assert (report.route.decision, report.route.policy) == ("single", "consult")
    assert [(c.stage, c.seat) for c in report.calls] == [("gate", "single_model")] and report.cost == 0.001


async def test_when_the_model_consults_the_panel_reads_its_question_and_the_writer_answers_the_user():
    fake = FakeCompleter(json_models={"judge"}).enqueue("solo", consults())
    out = await run_events(request(consult_profile()), fake)
    report = out[-1].report
    assert (report.route.decision, report.route.reason) == ("fuse", "the single model consulted the panel")
    for member in ("model-a", "model-b", "model-c"):
        assert QUESTION in fake.calls_to(member)[0].messages[-1]["content"]
    assert all(QUESTION not in m["content"] for m in fake.calls_to("writer")[0].messages)
    assert [c.stage for c in report.calls] == ["gate", "panel", "panel", "panel", "judge", "synthesis"]
    assert not report.synthesis.tool_calls  # the private call never becomes the answer


async def test_with_client_tools_the_private_tool_sits_beside_them_and_never_leaks():
    call = {"id": "t1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
    fake = FakeCompleter().enqueue("solo", Reply("", tool_calls=(call,)))
    resp = await direct(FusionHandler({"test": consult_profile()}, completer=fake), "acompletion",
                        tools=[CLIENT_TOOL])
    assert offered(fake.calls[0]) == ["lookup", TOOL_NAME]
    message = resp.choices[0].message
    assert [c.function.name for c in message.tool_calls] == ["lookup"] and resp.choices[0].finish_reason == "tool_calls"
    assert TOOL_NAME not in json.dumps(resp.model_dump())


@pytest.mark.parametrize("method", ["acompletion", "astreaming"])
async def test_the_single_models_answer_reaches_the_client_streamed_or_not(method):
    fake = FakeCompleter().enqueue("solo", Reply("Paris is the capital."))
    handler = FusionHandler({"test": consult_profile()}, completer=fake)
    if method == "acompletion":
        resp = await direct(handler, method)
        text, ext = resp.choices[0].message.content, resp.chorus
    else:
        chunks = [c async for c in direct(handler, method)]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        ext = next(c.provider_specific_fields["chorus"] for c in chunks if c.provider_specific_fields)
    assert text == "Paris is the capital." and ext["route"]["policy"] == "consult"
    assert ext["route"]["decision"] == "single" and TOOL_NAME not in json.dumps(ext)


async def test_a_failed_decision_call_fails_open_to_the_panel():
    fake = FakeCompleter(json_models={"judge"}).enqueue("solo", UpstreamError("http_error", "down", status=503))
    out = await run_events(request(consult_profile()), fake)
    assert isinstance(out[-1], RunDone)
    route = out[-1].report.route
    assert route.decision == "fuse" and "fail open" in route.reason and fake.calls_to("writer")


async def test_the_request_may_ask_for_the_consult_policy_itself():
    fake = FakeCompleter().enqueue("solo", Reply("Fine."))
    prof = profile(router={"policy": "always_fuse", "single_model": "solo"})
    out = await run_events(request(prof, chorus={"policy": "consult"}), fake)
    assert out[-1].report.route.policy == "consult" and [c.model for c in fake.calls] == ["solo"]
