import re

import pytest

from chorus_litellm.errors import RequestError
from tests.factories import profile, request


@pytest.mark.parametrize(
    "messages, match",
    [
        ([], "non-empty list"),
        ("hello", "non-empty list"),
        ([{"role": "wizard", "content": "x"}], "role 'wizard'"),
        ([{"role": "system", "content": "only system"}], "at least one user"),
        ([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}],
         "unsupported content part type 'image_url'"),
        ([{"role": "user", "content": 42}], "must be a string or a list"),
    ],
)
def test_bad_messages(messages, match):
    with pytest.raises(RequestError, match=match) as err:
        request(messages=messages)
    assert err.value.status_code == 400


def test_prompt_size_and_message_count_limits():
    p = profile(limits={"max_prompt_chars": 10, "max_messages": 2})
    with pytest.raises(RequestError, match="limit of 10"):
        request(p, messages=[{"role": "user", "content": "x" * 11}])
    with pytest.raises(RequestError, match="limit of 2"):
        request(p, messages=[{"role": "user", "content": "a"}] * 3)


@pytest.mark.parametrize(
    "options, match",
    [
        ({"policy": "maybe"}, "chorus.policy"),
        ({"min_quorum": 0}, "chorus.min_quorum"),
        ({"min_quorum": 9}, "more than the profile's 3 seats"),
        ({"unknown": 1}, "chorus.unknown"),
        ("fast", "chorus must be an object"),
    ],
)
def test_bad_options(options, match):
    with pytest.raises(RequestError, match=match):
        request(chorus=options)


def test_n_must_be_one():
    with pytest.raises(RequestError, match="n must be 1"):
        request(n=3)


def test_text_parts_accepted_and_params_split():
    req = request(
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
        temperature=0.3, max_tokens=50, stop=["x"], chorus={"min_quorum": 3},
    )
    assert req.sampling == {"temperature": 0.3}
    assert req.final_params == {"max_tokens": 50, "stop": ["x"]}
    assert req.quorum == 3


def test_tools_are_forwarded_or_refused():
    tools = [{"type": "function", "function": {"name": "f", "parameters": {}}}]
    with pytest.raises(RequestError, match="no router.single_model"):
        request(tools=tools)
    p = profile(router={"policy": "always_fuse", "single_model": "model-a"})
    assert request(p, tools=tools).forward_reason == "tools"
    tool_turn = [{"role": "user", "content": "x"}, {"role": "assistant", "content": None,
                  "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]},
                 {"role": "tool", "tool_call_id": "1", "content": "42"}]
    assert request(p, messages=tool_turn).forward_reason == "tools"


@pytest.mark.parametrize("debate_id", ["", "has space", "x" * 129, "semi;colon"])
def test_bad_debate_ids(debate_id):
    with pytest.raises(RequestError, match="chorus.debate_id"):
        request(chorus={"debate_id": debate_id})


@pytest.mark.parametrize(("value", "words"), [
    (42, "must be an http(s) URL"), ("", "must be an http(s) URL"), ("https://x.example/" + "a" * 2100, "2048"),
])
def test_a_bad_callback_url_is_a_400_naming_the_field(value, words):
    with pytest.raises(RequestError, match=re.escape(words)) as err:
        request(callback_url=value)
    assert err.value.status_code == 400 and err.value.param == "callback_url"


def test_a_profile_with_webhooks_off_refuses_a_callback_url():
    with pytest.raises(RequestError, match="webhooks are turned off"):
        request(profile(webhooks={"enabled": False}), callback_url="https://x.example/hook")
    assert request(callback_url=" https://x.example/hook ").callback_url == "https://x.example/hook"
