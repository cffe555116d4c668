"""Profiles at run time (issue 26, point 5): the rules (core/profiles.py), the sync that
serves stored profiles from a real LiteLLM Router (gateway/profiles.py), the admin API
in-process (gateway/profile_routes.py, LiteLLM's auth dependency replaced by a key table),
and a run through the Router reporting the version it ran. The real proxy with two
workers: tests/test_e2e_profiles.py."""

import asyncio
import hashlib

import httpx
import litellm
import pytest
from fastapi import FastAPI, HTTPException, Request
from litellm.proxy._types import LitellmUserRoles, UserAPIKeyAuth
from litellm.proxy.auth.user_api_key_auth import user_api_key_auth

from chorus_litellm.core.errors import ProfileError, StoreUnavailable
from chorus_litellm.core.profiles import NewProfile, ProfileChange, check_name, plan, read_body, validate
from chorus_litellm.gateway.profile_routes import build_profile_router
from chorus_litellm.gateway.profiles import ProfileSync, deployment
from chorus_litellm.gateway.provider import FusionHandler
from chorus_litellm.storage.sqlite_backend import SQLiteStore
from chorus_litellm.testing import FakeCompleter
from tests.factories import BASE, profile

MODELS = ["model-a", "model-b", "model-c", "judge", "writer"]
SERVED = {*MODELS, "fusion/research"}
QUICK = {"panel": {"members": ["model-a", "model-b"]}, "aggregator": {"judge": "judge", "synthesizer": "writer"}}


def refused(raw, known=SERVED):
    with pytest.raises(ProfileError) as err:
        validate("quick", raw, known_models=known, fusion_models=frozenset({"fusion/research"}), provider="fusion")
    assert err.value.status_code == 400
    return str(err.value)


@pytest.mark.parametrize(("panel", "field", "why"), [
    (["model-a", "fusion/research"], "panel.members[1].model", "is a fusion model"),
    (["model-a", "fusion/not-yet"], "panel.members[1].model", "is a fusion model"),  # served or not
    (["model-a", "chorus/research"], "panel.members[1].model", "is not a model_name in model_list"),
    (["model-a", {"persona": "skeptic"}], "panel.members[1].model", "Field required"),
    (["model-a", {"model": "model-b", "temperature": 9}], "panel.members[1].temperature", "less than or equal"),
    (["model-a", "model-zz"], "panel.members[1].model", "'model-zz' is not a model_name in model_list"),
])
def test_a_bad_profile_is_refused_naming_its_field_as_the_config_is(panel, field, why):
    message = refused({**QUICK, "panel": {"members": panel}})
    assert f"profile 'quick': {field}: " in message and why in message


def test_every_problem_is_named_and_a_good_profile_passes():
    message = refused({**QUICK, "panel": {"members": ["model-a", "model-b"], "min_quorum": 3},
                       "router": {"policy": "auto"}, "debate": {"protocol": "chorale"}})
    assert "panel.min_quorum: 3 is more than the 2 seats" in message
    assert "router.single_model: required when policy is 'auto'" in message and "debate.protocol" in message
    assert validate("quick", QUICK, known_models=SERVED, fusion_models=frozenset(), provider="fusion").panel.quorum == 2
    assert validate("quick", {**QUICK, "panel": {"members": ["any-model", "b"]}}, known_models=None,
                    fusion_models=frozenset(), provider="fusion")  # a wildcard deployment: any name may be served


@pytest.mark.parametrize(("kind", "body", "message"), [
    (NewProfile, b'{"name": "Quick!", "profile": {}}', "name: String should match pattern"),
    (NewProfile, b'{"name": "quick"}', "profile: Field required"),
    (NewProfile, b'{"name": "quick", "profile": [], "x": 1}', "profile: Input should be an object"),
    (ProfileChange, b'{"version": 0, "profile": {}}', "version: Input should be greater than or equal to 1"),
    (ProfileChange, b'{"profile": {}, "extra": 1}', "version: Field required"),
    (ProfileChange, b"not json", "(body): Invalid JSON"),
])
def test_a_bad_body_is_a_400_naming_its_field(kind, body, message):
    with pytest.raises(ProfileError) as err:
        read_body(kind, body)
    assert err.value.status_code == 400 and str(err.value).startswith(message)


def test_a_name_taken_by_the_config_or_a_served_model_is_a_409_naming_it():
    for name, taken in [("research", "defined in litellm_config.yaml"), ("served", "'fusion/served' is already"),
                        ("mine", "'chorus/mine' is already")]:
        with pytest.raises(ProfileError, match=taken) as err:
            check_name(name, config_profiles={"research"}, served={"fusion/served", "chorus/mine"}, provider="chorus")
        assert err.value.status_code == 409
    check_name("quick", config_profiles={"research"}, served=SERVED, provider="chorus")


def rec(name, version, deleted=False):
    return {"name": name, "version": version, "deleted": deleted, "profile": None if deleted else QUICK}


def test_each_worker_serves_the_newest_version_it_has_seen():
    deploy, keep = plan([rec("new", 1), rec("newer", 3), rec("stale", 2), rec("same", 4), rec("gone", 5, True),
                         rec("late-tomb", 2, True), rec("research", 9)],
                        {"newer": 2, "stale": 3, "same": 4, "gone": 4, "late-tomb": 3, "wiped": 1}, {"research"})
    assert sorted(deploy) == ["new", "newer"] and deploy["newer"]["version"] == 3
    # a stale read never rolls back a newer version (nor a tombstone older than it); a newer
    # tombstone takes one down, so does a name the store no longer knows; config names are never touched
    assert keep == {"stale", "same", "late-tomb"}


@pytest.fixture
async def store(tmp_path):
    store = SQLiteStore(tmp_path / "db.sqlite3")
    yield store
    await store.aclose()


@pytest.fixture
def proxy(store, monkeypatch):
    """A proxy's Router (plain models and the config profile `fusion/research`) and the
    handler registered as provider `fusion`, its inner calls on a FakeCompleter:
    (router, handler, fake)."""
    fake, routers = FakeCompleter(), []
    handler = FusionHandler({"research": profile()}, get_router=lambda: routers[0], store=store, completer=fake,
                            observers=[])
    handler.fusion_models.add("fusion/research")
    monkeypatch.setattr(litellm, "custom_provider_map", [{"provider": "fusion", "custom_handler": handler}])
    from litellm.utils import custom_llm_setup

    custom_llm_setup()
    plain = [{"model_name": m, "litellm_params": {"model": f"openai/{m}", "api_key": "x",
                                                  "api_base": "http://127.0.0.1:9"}} for m in MODELS]
    research = {"model_name": "fusion/research", "litellm_params": {"model": "fusion/research"},
                "model_info": {"chorus": BASE}}
    routers.append(litellm.Router(model_list=[*plain, research]))
    return routers[0], handler, fake


def served(router):
    return {d["model_name"]: d["model_info"].get("chorus_profile_version") for d in router.get_model_list()
            if d["model_name"].startswith("fusion/")}


async def test_the_sync_serves_stored_profiles_in_the_router_and_the_handler(store, proxy):
    router, handler, _fake = proxy
    sync = ProfileSync(store, lambda: router, handler)
    assert await sync.sync_once() == {"added": [], "removed": []}
    await store.put_profile("quick", QUICK, 0)
    await store.put_profile("research", QUICK, 0)  # a config name in the store (an older proxy's?): never served
    assert await sync.sync_once() == {"added": ["quick"], "removed": []}
    assert served(router) == {"fusion/research": None, "fusion/quick": 1}
    dep = next(d for d in router.get_model_list() if d["model_name"] == "fusion/quick")
    assert dep["litellm_params"]["model"] == "fusion/quick" and dep["model_info"]["chorus"] == QUICK
    assert handler.profiles["quick"].panel.seat_count == 2 and "fusion/quick" in handler.fusion_models
    assert handler.profiles["research"].panel.seat_count == 3  # the config's, untouched
    await store.put_profile("quick", {**QUICK, "debate": {"protocol": "council"}}, 1)
    assert await sync.sync_once() == {"added": ["quick"], "removed": []}  # version 2 replaces version 1
    assert served(router)["fusion/quick"] == 2 and handler.profiles["quick"].debate.protocol == "council"
    assert len([d for d in router.get_model_list() if d["model_name"] == "fusion/quick"]) == 1
    assert await sync.sync_once() == {"added": [], "removed": []}  # nothing changed: nothing touched
    await store.delete_profile("quick", 2)
    assert await sync.sync_once() == {"added": [], "removed": ["quick"]}
    assert served(router) == {"fusion/research": None} and "quick" not in handler.profiles
    assert "fusion/quick" not in handler.fusion_models and "fusion/research" in handler.fusion_models


async def test_a_pass_that_read_the_store_before_a_change_never_takes_the_change_down(store, proxy):
    """The periodic pass reads the store, an admin's change lands and its own pass serves
    it; the periodic pass, resuming with what it read before, must not reconcile after
    that and take the new profile down (the worker that took a change would briefly answer
    `Invalid model name` for it). Fails on a sync whose passes may interleave."""
    router, handler, _fake = proxy
    sync, read, reads = ProfileSync(store, lambda: router, handler), store.list_profiles, []
    slow_read, stale_taken = asyncio.Event(), asyncio.Event()

    async def list_profiles():
        found = await read()
        reads.append(found)
        if len(reads) == 1:  # the first (periodic) pass: its reply arrives late
            stale_taken.set()
            await slow_read.wait()
        return found

    store.list_profiles = list_profiles
    periodic = asyncio.create_task(sync.sync_once())
    await stale_taken.wait()
    await store.put_profile("quick", QUICK, 0)
    change = asyncio.create_task(sync.sync_once())  # the admin API's pass, at once
    await asyncio.sleep(0.1)
    slow_read.set()
    await asyncio.gather(periodic, change)
    assert reads[0] == [] and served(router) == {"fusion/research": None, "fusion/quick": 1}
    assert "quick" in handler.profiles


async def test_a_stored_block_this_release_cannot_parse_is_not_served(store, proxy, caplog):
    router, handler, _fake = proxy
    await store.put_profile("odd", {**QUICK, "debate": {"protocol": "future"}}, 0)
    await ProfileSync(store, lambda: router, handler).sync_once()
    assert served(router) == {"fusion/research": None} and "odd" not in handler.profiles
    assert "stored profile odd version 1 not served" in caplog.text


# -- the admin API, in-process --------------------------------------------------------------
KEYS = {"sk-admin": LitellmUserRoles.PROXY_ADMIN, "sk-team-a": LitellmUserRoles.INTERNAL_USER}


async def auth(request: Request) -> UserAPIKeyAuth:
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    if key not in KEYS:
        raise HTTPException(status_code=401, detail="unknown key")
    return UserAPIKeyAuth(api_key=hashlib.sha256(key.encode()).hexdigest(), team_id="t", user_role=KEYS[key])


@pytest.fixture
async def api(proxy):
    router, handler, _fake = proxy
    app = FastAPI()
    app.include_router(build_profile_router(handler))
    app.dependency_overrides[user_api_key_auth] = auth
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://proxy",
                                 headers={"Authorization": "Bearer sk-admin"}) as client:
        client.router, client.handler = router, handler
        yield client
    await handler.profile_sync().aclose()


async def test_only_proxy_admins_reach_the_profiles_api_on_every_verb(api, store):
    user = {"Authorization": "Bearer sk-team-a"}
    for method, path, body in [("GET", "", None), ("GET", "/research", None), ("POST", "", {"name": "x", "profile": QUICK}),
                               ("PUT", "/x", {"version": 1, "profile": QUICK}), ("DELETE", "/x?version=1", None)]:
        answer = await api.request(method, f"/chorus/v1/profiles{path}", json=body, headers=user)
        assert answer.status_code == 403 and "proxy admins only" in answer.json()["detail"], (method, path)
    assert await store.list_profiles() == []


async def test_a_profile_is_created_changed_and_deleted_by_the_version_read(api, store):
    made = await api.post("/chorus/v1/profiles", json={"name": "quick", "profile": QUICK})
    assert made.status_code == 201
    assert {k: made.json()[k] for k in ("name", "model", "source", "version", "read_only")} == \
        {"name": "quick", "model": "fusion/quick", "source": "store", "version": 1, "read_only": False}
    assert served(api.router)["fusion/quick"] == 1  # served by this worker before the answer
    again = await api.post("/chorus/v1/profiles", json={"name": "quick", "profile": QUICK})
    assert again.status_code == 409 and "exists (version 1)" in again.json()["detail"]
    changed = await api.put("/chorus/v1/profiles/quick", json={"version": 1, "profile": {**QUICK, "personas": {}}})
    assert changed.status_code == 200 and changed.json()["version"] == 2 and served(api.router)["fusion/quick"] == 2
    stale = await api.put("/chorus/v1/profiles/quick", json={"version": 1, "profile": QUICK})
    assert stale.status_code == 409 and stale.json()["detail"] == \
        "version: 1 is stale: profile 'quick' is at version 2 now; read it again"
    assert (await api.delete("/chorus/v1/profiles/quick?version=1")).status_code == 409
    gone = await api.delete("/chorus/v1/profiles/quick?version=2")
    assert gone.status_code == 200 and gone.json()["version"] == 3 and gone.json()["deleted"] is True
    assert "fusion/quick" not in served(api.router)
    for answer in (await api.get("/chorus/v1/profiles/quick"),
                   await api.put("/chorus/v1/profiles/quick", json={"version": 3, "profile": QUICK}),
                   await api.delete("/chorus/v1/profiles/quick?version=3")):
        assert answer.status_code == 404 and "deleted at version 3" in answer.json()["detail"]
    back = await api.post("/chorus/v1/profiles", json={"name": "quick", "profile": QUICK})
    assert back.status_code == 201 and back.json()["version"] == 4  # versions never repeat
    listed = (await api.get("/chorus/v1/profiles")).json()["profiles"]
    assert [(p["name"], p["source"], p["version"], p["read_only"]) for p in listed] == \
        [("research", "config", 0, True), ("quick", "store", 4, False)]
    assert listed[0]["model"] == "fusion/research" and listed[0]["profile"]["panel"]["members"][0] == \
        {"model": "model-a"}


async def test_every_view_says_how_many_workers_serve_which_version(api, store):
    """A rollout's progress: this worker serves a change before it answers; another worker
    (here: its published state) catches up on its next pass; `complete` once every live
    worker serves the version, and for a delete once none serves any."""

    def rollout(answer):
        assert answer.status_code in (200, 201), answer.text
        return answer.json()["rollout"]

    async def other_worker_serves(versions):
        await store.put_profiles_served("other", {"research": 0, **versions}, ttl_s=60)

    await other_worker_serves({})
    made = await api.post("/chorus/v1/profiles", json={"name": "quick", "profile": QUICK})
    assert rollout(made) == {"workers": 2, "serving": 1, "versions": {"1": 1}, "complete": False}
    await other_worker_serves({"quick": 1})
    assert rollout(await api.get("/chorus/v1/profiles/quick")) == \
        {"workers": 2, "serving": 2, "versions": {"1": 2}, "complete": True}
    assert rollout(await api.get("/chorus/v1/profiles/research")) == \
        {"workers": 2, "serving": 2, "versions": {"0": 2}, "complete": True}
    changed = await api.put("/chorus/v1/profiles/quick", json={"version": 1, "profile": {**QUICK, "personas": {}}})
    assert rollout(changed) == {"workers": 2, "serving": 1, "versions": {"1": 1, "2": 1}, "complete": False}
    gone = await api.delete("/chorus/v1/profiles/quick?version=2")
    assert rollout(gone) == {"workers": 2, "serving": 0, "versions": {"1": 1}, "complete": False}
    assert "quick" not in [p["name"] for p in (await api.get("/chorus/v1/profiles")).json()["profiles"]]
    await other_worker_serves({})
    listed = (await api.get("/chorus/v1/profiles?include_deleted=true")).json()
    assert listed["workers"] == 2
    assert [(p["name"], p["deleted"], p["rollout"]) for p in listed["profiles"] if p["source"] == "store"] == \
        [("quick", True, {"workers": 2, "serving": 0, "versions": {}, "complete": True})]


async def test_a_store_that_cannot_say_leaves_the_rollout_unknown(api, store, monkeypatch):
    async def down():
        raise StoreUnavailable("redis: connection refused")

    monkeypatch.setattr(store, "profiles_served", down)
    listed = (await api.get("/chorus/v1/profiles")).json()
    assert listed["workers"] is None and listed["profiles"][0]["rollout"] is None


async def test_a_bad_body_or_a_taken_name_stores_nothing_and_names_why(api, store):
    bad = await api.post("/chorus/v1/profiles", json={"name": "quick", "profile": {
        **QUICK, "panel": {"members": ["model-a", "fusion/research"]}}})
    assert bad.status_code == 400 and "panel.members[1].model: 'fusion/research' is a fusion model" in \
        bad.json()["detail"]
    for body, status, why in [({"name": "research", "profile": QUICK}, 409, "defined in litellm_config.yaml"),
                              ({"name": "model-a", "profile": QUICK}, 201, None),  # fusion/model-a is free
                              ({"name": "Bad Name", "profile": QUICK}, 400, "name: String should match")]:
        answer = await api.post("/chorus/v1/profiles", json=body)
        assert answer.status_code == status and (why is None or why in answer.json()["detail"]), answer.text
    assert [r["name"] for r in await store.list_profiles()] == ["model-a"]
    for answer in (await api.put("/chorus/v1/profiles/research", json={"version": 1, "profile": QUICK}),
                   await api.delete("/chorus/v1/profiles/research?version=1")):
        assert answer.status_code == 409 and "comes from litellm_config.yaml and is read-only" in answer.json()["detail"]
    assert (await api.put("/chorus/v1/profiles/model-a", json={"version": 1, "profile": {"panel": {}}})).status_code \
        == 400


# -- a run reports the version it ran ---------------------------------------------------------
@pytest.mark.parametrize("stream", [False, True])
async def test_a_run_through_the_router_reports_the_version_of_its_profile(store, proxy, stream):
    router, handler, fake = proxy
    await store.put_profile("quick", QUICK, 0)
    await store.put_profile("quick", QUICK, 1)
    await ProfileSync(store, lambda: router, handler).sync_once()
    versions = {}
    for model in ("fusion/quick", "fusion/research"):
        answer = await router.acompletion(model=model, stream=stream, messages=[{"role": "user", "content": "Why?"}],
                                          metadata={"user_api_key_hash": "h", "user_api_key_team_id": "t"})
        if stream:
            chunks = [c async for c in answer]
            versions[model] = next(c.provider_specific_fields["chorus"]["profile_version"] for c in chunks
                                   if getattr(c, "provider_specific_fields", None))
        else:
            versions[model] = answer.chorus["profile_version"]
    assert versions == {"fusion/quick": 2, "fusion/research": 0}
    for _ in range(100):  # the event log is written off the request path
        runs = {r["profile"]: r for r in await store.list_runs("team:t")}
        if len(runs) == 2:
            break
        await asyncio.sleep(0.05)
    assert {p: r["profile_version"] for p, r in runs.items()} == {"quick": 2, "research": 0}
    transcript = await store.get_transcript("team:t", runs["quick"]["id"])
    assert transcript["profile_version"] == 2 and transcript["profile"] == "quick"
    assert len(fake.calls_to("model-c")) == 1  # the config profile seats it, the stored one (two seats) does not
    assert deployment({"name": "q", "version": 7, "profile": QUICK}, "chorus")["litellm_params"] == \
        {"model": "chorus/q"}
