import json
import re

import pytest

from chorus_litellm.core.errors import RequestError
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


# -- non-finite numbers (issue 23): JSON's 1e309 parses to inf, Python's json takes
# Infinity and NaN; none may reach a run (charged calls, then an unserializable answer).
NON_FINITE = [float("inf"), float("-inf"), float("nan"), json.loads("1e309")]
NON_FINITE_IDS = ["inf", "-inf", "nan", "1e309"]


NUMBERS = [
    ("chorus.max_cost_usd", lambda v: {"chorus": {"max_cost_usd": v}}),
    ("chorus.min_quorum", lambda v: {"chorus": {"min_quorum": v}}),
    ("chorus.max_rounds", lambda v: {"chorus": {"max_rounds": v}}),
    ("chorus.max_total_tokens", lambda v: {"chorus": {"max_total_tokens": v}}),
    ("bounty.amount", lambda v: {"bounty": {"amount": v, "currency": "USD"}}),
    ("temperature", lambda v: {"temperature": v}),
    ("top_p", lambda v: {"top_p": v}),
    ("presence_penalty", lambda v: {"presence_penalty": v}),
    ("frequency_penalty", lambda v: {"frequency_penalty": v}),
    ("max_tokens", lambda v: {"max_tokens": v}),
]


@pytest.mark.parametrize("value", NON_FINITE, ids=NON_FINITE_IDS)
@pytest.mark.parametrize(("field", "params"), NUMBERS, ids=[field for field, _ in NUMBERS])
def test_a_non_finite_number_is_a_400_naming_the_field(field, params, value):
    with pytest.raises(RequestError) as err:
        request(**params(value))
    assert err.value.status_code == 400 and err.value.param == field
    assert str(err.value).startswith(field)


def test_a_finite_cost_cap_is_still_accepted_without_a_profile_cap():
    assert request(chorus={"max_cost_usd": 1e308}).max_cost_usd == 1e308
    assert request(temperature=0.0, top_p=1).sampling == {"temperature": 0.0, "top_p": 1}


@pytest.mark.parametrize("debate_id", ["a\nb", "a\n", " ", "a\x00b", "\U0001f4a5", "x" * 60_000, "a\r\nx-evil: 1"],
                         ids=["newline", "trailing-newline", "space", "nul", "emoji", "60000-chars", "crlf"])
def test_a_debate_id_a_header_cannot_carry_is_a_400_and_never_the_run_id(debate_id):
    from chorus_litellm.core.request import run_id

    with pytest.raises(RequestError) as err:
        request(chorus={"debate_id": debate_id})
    assert err.value.param == "chorus.debate_id" and str(err.value).startswith("chorus.debate_id")
    assert len(str(err.value)) < 400  # never echoes a 60 KB id
    assert run_id(debate_id, "call-1") is None  # so no header names it


def test_the_run_id_is_the_valid_chosen_id_else_the_call_id():
    from chorus_litellm.core.request import run_id

    assert run_id("retry-7:a.b_c-d", "call-1") == "retry-7:a.b_c-d"
    assert run_id(None, "call-1") == "call-1" and run_id(None, None) is None
    assert run_id("", "call-1") is None  # refused by the request (min length), so no header either
    assert request(chorus={"debate_id": "x" * 128}).debate_id == "x" * 128
    assert request().debate_id == "run-1"


async def test_the_header_hook_names_only_a_valid_id():
    from chorus_litellm.gateway.headers import HEADER, DebateIdHeader

    hook = DebateIdHeader(set(), "fusion")

    async def header(chorus, model="fusion/x"):
        data = {"model": model, "litellm_call_id": "call-1", **({"chorus": chorus} if chorus is not None else {})}
        return await hook.async_post_call_response_headers_hook(data, None, None)

    assert await header({"debate_id": "ok-1"}) == {HEADER: "ok-1"}
    assert await header(None) == {HEADER: "call-1"} and await header("fast") == {HEADER: "call-1"}
    for bad in ("a\nb", " ", "a\x00b", "\U0001f4a5", "x" * 60_000, "", 42):
        assert await header({"debate_id": bad}) is None
    assert await header({"debate_id": "ok-1"}, model="model-a") is None
