"""Tools inside fusion (router.tools: fuse): the panel and judge read the conversation,
tool results included, as text; only the synthesizer is offered the client's tools."""

import json

import pytest

from chorus_litellm.core.errors import ConfigError, RequestError
from chorus_litellm.core.stages import prompts
from chorus_litellm.testing import FakeCompleter, Reply
from chorus_litellm.core.events import AnswerDelta
from tests.factories import profile, request, run_events

TOOLS = [{"type": "function", "function": {"name": "get_weather", "description": "Weather now in a city",
                                           "parameters": {"type": "object",
                                                          "properties": {"city": {"type": "string"}}}}}]
CALL = {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}}
ASK = [{"role": "user", "content": "Should I cycle to work in Oslo today? Check the weather first."}]
AFTER = [*ASK, {"role": "assistant", "content": None, "tool_calls": [CALL]},
         {"role": "tool", "tool_call_id": "call_1", "content": '{"temp_c": -12, "snow": true}'}]


def fusing(**panel):
    return profile(router={"policy": "always_fuse", "tools": "fuse"},
                   panel={"members": ["model-a", "model-b", "model-c"], "min_quorum": 2, **panel})


@pytest.mark.parametrize("stream", [False, True])
async def test_a_tool_turn_is_fused_and_only_the_synthesizer_may_call_the_clients_tools(stream):
    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("writer", Reply("", tool_calls=(CALL,)))
    events = await run_events(request(fusing(), messages=ASK, stream=stream, tools=TOOLS, tool_choice="auto"), fake)
    report = events[-1].report
    assert report.route.decision == "fuse" and report.synthesis.tool_calls == (CALL,)
    for call in fake.calls:
        offered = "tools" in call.params
        assert offered == (call.model == "writer"), call.model  # members and judge never see the schemas
    writer = fake.calls_to("writer")[0]
    assert writer.params["tools"] == TOOLS and writer.params["tool_choice"] == "auto"
    assert "call the tool instead of answering" in writer.messages[0]["content"]  # instructions: the system turn
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == ""


async def test_the_panel_and_judge_read_tool_results_as_text_and_the_writer_the_real_turns():
    fake = FakeCompleter(json_models={"judge"})
    fake.enqueue("writer", "Too cold and snowy: take the bus.")
    events = await run_events(request(fusing(), messages=AFTER, tools=TOOLS), fake)
    assert "".join(e.text for e in events if isinstance(e, AnswerDelta)) == "Too cold and snowy: take the bus."
    for call in fake.calls_to("model-a") + fake.calls_to("judge"):
        roles = [m["role"] for m in call.messages]
        assert "tool" not in roles and not any(m.get("tool_calls") for m in call.messages)
        text = json.dumps(call.messages)
        assert "[Called: get_weather({\\\"city\\\": \\\"Oslo\\\"})]" in text
        assert "[Result of get_weather]" in text and "temp_c" in text
    writer = fake.calls_to("writer")[0]
    assert writer.messages[1:4] == AFTER  # our instructions, the conversation as it is (tool turns intact), our data


async def test_panel_tools_shows_the_schemas_with_tool_choice_none_and_the_judge_still_reads_text():
    fake = FakeCompleter(json_models={"judge"})
    await run_events(request(fusing(tools=True), messages=AFTER, tools=TOOLS), fake)
    member = fake.calls_to("model-b")[0]
    assert member.params["tools"] == TOOLS and member.params["tool_choice"] == "none"
    assert [m["role"] for m in member.messages] == ["user", "assistant", "tool"]
    judge = fake.calls_to("judge")[0]
    assert "tools" not in judge.params and [m["role"] for m in judge.messages[:3]] == ["user", "assistant", "user"]


async def test_tool_turns_without_tools_reach_the_writer_as_text():
    fake = FakeCompleter(json_models={"judge"})
    await run_events(request(fusing(), messages=AFTER), fake)  # a client that offers no tools this turn
    writer = fake.calls_to("writer")[0]
    assert "tools" not in writer.params and "tool" not in [m["role"] for m in writer.messages]


def test_tool_calls_are_put_together_from_stream_deltas_and_message_objects():
    from litellm.types.utils import ChatCompletionDeltaToolCall, Function

    from chorus_litellm.gateway.llm import ToolCalls

    streamed = ToolCalls()
    streamed.add({"index": 0, "id": "a", "type": "function", "function": {"name": "f", "arguments": ""}})
    streamed.add(ChatCompletionDeltaToolCall(index=0, function=Function(arguments='{"x":')))
    streamed.add({"index": 0, "function": {"arguments": " 1}"}})
    streamed.add(ChatCompletionDeltaToolCall(id="b", index=0, function=Function(name="g", arguments="{}")))
    assert streamed.done() == (
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": "{}"}})  # a new id: a new call
    whole = ToolCalls()
    whole.add({"id": "c", "type": "function", "function": {"name": "h", "arguments": "{}"}}, 1)
    assert whole.done()[0]["id"] == "c"


def test_legacy_function_call_turns_are_text_too():
    legacy = [*ASK, {"role": "assistant", "content": None, "function_call": {"name": "get_weather", "arguments": "{}"}},
              {"role": "function", "name": "get_weather", "content": "sunny"}]
    text = prompts.tool_turns_as_text(legacy)
    assert text[1]["content"] == "[Called: get_weather({})]" and text[2]["content"] == "[Result of get_weather]\nsunny"


async def test_forward_stays_the_default_and_fuse_refuses_what_it_cannot_serve():
    plain = profile(router={"policy": "always_fuse", "single_model": "model-a"})
    assert request(plain, messages=ASK, tools=TOOLS).forward_reason == "tools"
    with pytest.raises(RequestError, match="functions and function_call are the deprecated form of tools"):
        request(fusing(), messages=ASK, functions=[TOOLS[0]["function"]])
    with pytest.raises(ConfigError, match="router.tools: 'fuse' needs the moa or debate protocol"):
        profile(router={"tools": "fuse"}, debate={"protocol": "consensus"})
    with pytest.raises(ConfigError, match="panel.tools: true needs router.tools: fuse"):
        profile(panel={"members": ["model-a", "model-b"], "tools": True})
    with pytest.raises(RequestError, match="tool_choice is only allowed when tools are specified"):
        request(fusing(), messages=ASK, tool_choice="auto")


def test_tool_turns_as_text_names_each_result_by_its_call():
    text = prompts.tool_turns_as_text([*AFTER, {"role": "user", "content": [{"type": "text", "text": "and now?"}]}])
    assert text[1] == {"role": "assistant", "content": '[Called: get_weather({"city": "Oslo"})]'}
    assert text[2] == {"role": "user", "content": '[Result of get_weather]\n{"temp_c": -12, "snow": true}'}
    assert prompts.tool_turns_as_text(ASK) is ASK
