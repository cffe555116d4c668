"""Per-request panels (issue 26): `chorus.panel`, `chorus.judge` and `chorus.synthesizer`
in place of the profile's, only models the caller's key may call (LiteLLM's own access
rules: a 403 naming the model before any call), within the profile's seat count, never a
fusion model."""

import litellm
import pytest
from litellm.proxy._types import UserAPIKeyAuth

from chorus_litellm.gateway.access import check_requested_models
from chorus_litellm.gateway.translate import to_litellm_error
from chorus_litellm.core.errors import AccessError, RequestError
from chorus_litellm.core.events import RunDone
from chorus_litellm.testing import FakeCompleter
from tests.factories import profile, request, run_events

MODELS = ["model-a", "model-b", "model-c", "model-d", "judge", "judge-2", "writer", "writer-2"]


def asking(**chorus):
    return request(chorus=chorus)


def test_the_request_panel_and_writers_replace_the_profiles():
    req = asking(panel=["model-d", {"model": "model-a", "persona": "skeptic"}], judge="judge-2",
                 synthesizer="writer-2")
    members = [(m.model, m.persona) for m in req.profile.panel.members]
    assert members == [("model-d", None), ("model-a", "skeptic")]
    assert (req.profile.aggregator.judge, req.profile.aggregator.synthesizer) == ("judge-2", "writer-2")
    assert profile().panel.members[0].model == "model-a"  # the profile itself is untouched
    assert asking().profile == profile()


@pytest.mark.parametrize(("chorus", "message", "param"), [
    ({"panel": ["model-a", "model-b", "model-c", "model-d"]}, "chorus.panel: 4 seats are more than this profile's 3",
     "chorus.panel"),
    ({"panel": ["model-a", "fusion/research"]}, "panel.members[1].model: 'fusion/research' is a fusion model",
     "chorus.panel"),
    ({"judge": "fusion/debate"}, "aggregator.judge: 'fusion/debate' is a fusion model", "chorus"),
    ({"panel": []}, "chorus.panel: Tuple should have at least 1 item", "chorus.panel"),
    ({"panel": ["model-a"], "min_quorum": 2}, "min_quorum: 2 is more than the 1 seats", "chorus.panel"),
])
def test_a_request_panel_outside_the_profiles_limits_is_a_400_naming_the_field(chorus, message, param):
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace("[", r"\[")) as refused:
        asking(**chorus)
    assert refused.value.status_code == 400 and refused.value.param == param


async def test_a_run_with_a_request_panel_calls_only_its_models():
    fake = FakeCompleter(json_models={"judge-2"})
    out = await run_events(asking(panel=["model-d", "model-b"], judge="judge-2", synthesizer="writer-2"), fake)
    assert isinstance(out[-1], RunDone)
    called = {c.model for c in fake.calls}
    assert called == {"model-d", "model-b", "judge-2", "writer-2"}


def router(*names):
    return litellm.Router(model_list=[{"model_name": n, "litellm_params": {"model": f"openai/{n}", "api_key": "x",
                                                                           "api_base": "http://127.0.0.1:9/v1"}}
                                      for n in names])


def metadata(**auth):
    return {"metadata": {"user_api_key_auth": UserAPIKeyAuth(api_key="h", team_id="team-a", **auth)}}


async def test_a_model_the_key_may_not_call_is_a_403_naming_it_before_any_call():
    req = asking(panel=["model-a", "model-d"])
    with pytest.raises(AccessError, match=r"chorus.panel\[1\]: this key may not call 'model-d'") as refused:
        await check_requested_models(req, metadata(models=["model-a", "model-b"]), router(*MODELS))
    mapped = to_litellm_error(refused.value, "fusion/test")
    assert mapped.status_code == 403 and "PermissionDeniedError" in mapped.message
    # the team's models count as well
    with pytest.raises(AccessError, match="'writer-2'"):
        await check_requested_models(asking(synthesizer="writer-2"), metadata(team_models=["writer", "judge"]),
                                     router(*MODELS))


async def test_models_the_key_and_team_may_call_pass_and_so_does_a_request_naming_none():
    every = router(*MODELS)
    await check_requested_models(asking(panel=["model-a", "model-d"]), metadata(models=["model-a", "model-d"]), every)
    await check_requested_models(asking(panel=["model-a", "model-d"]), metadata(), every)  # no list: all models
    await check_requested_models(asking(judge="judge-2"), metadata(models=["judge-*"]), every)  # a wildcard
    await check_requested_models(asking(), metadata(models=["nothing"]), every)
    await check_requested_models(asking(panel=["model-d", "model-a"]), {}, None)  # the SDK: no Router, no key


async def test_a_model_the_proxy_does_not_serve_is_a_400():
    with pytest.raises(RequestError, match="chorus.judge: 'judge-9' is not a model this proxy serves") as refused:
        await check_requested_models(asking(judge="judge-9"), metadata(), router(*MODELS))
    assert refused.value.status_code == 400
