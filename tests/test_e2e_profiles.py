"""Profiles at run time through the real proxy (issue 26, point 5): the session's two
workers on Redis (tests/conftest.py's `redis_proxy`, a profile sync pass every 0.5 s),
the admin API over httpx with LiteLLM's own auth (tests/proxy_support.py: `sk-admin` is a
proxy admin's key, `sk-team-a` a user's), and the fusion models asked with the official
`openai` client. Each read opens a new connection and may land on either worker, so no
number of reads in a row proves what the other worker serves: the test waits on what
every worker published (the admin API's `rollout`), then checks that reads agree."""

import time
import uuid

import httpx
import openai
import pytest

from chorus_litellm.core.profiles import model_name
from tests.conftest import PROFILE_SYNC_S, fusion

ADMIN, USER = "sk-admin", "sk-team-a"
ASK = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
WORKERS = 2  # the session proxy's (tests/conftest.py)
IN_A_ROW = 8  # reads after a rollout completes: each on either worker, all must agree


def api(url, method, path="", key=ADMIN, **kw):
    return httpx.request(method, f"{url}/chorus/v1/profiles{path}", headers={"Authorization": f"Bearer {key}"},
                         timeout=30, **kw)


def served_version(url, model):
    """The version this read's worker serves `model` at (None: not served)."""
    found = httpx.get(f"{url}/chorus/v1/models", headers={"Authorization": f"Bearer {USER}"}, timeout=30)
    return next((m["version"] for m in found.json()["models"] if m["id"] == model), None)


def settled(url, name, version, within_s):
    """Seconds until the admin API says every worker serves profile `name` at `version`
    (None: deleted, served by none) as the workers published it: `rollout.complete`, with
    both of this proxy's workers counted. Then any read, on either worker, agrees."""
    started, want = time.monotonic(), "deleted" if version is None else version
    while True:
        listed = api(url, "GET", params={"include_deleted": "true"}).json()
        now = next(p for p in listed["profiles"] if p["name"] == name)
        at = "deleted" if now.get("deleted") else now["version"]
        if at == want and now["rollout"]["complete"] and now["rollout"]["workers"] >= WORKERS:
            break
        assert time.monotonic() - started < within_s, f"{name} not at version {version} on every worker: {now}"
        time.sleep(0.1)
    for _ in range(IN_A_ROW):
        assert served_version(url, model_name(name)) == version
    return time.monotonic() - started


def chorus_of(client, model, stream, **extra):
    """The `chorus` field a run of `model` answers with, and the x-chorus-debate-id it got."""
    raw = client.chat.completions.with_raw_response.create(model=model, messages=ASK, stream=stream, **extra)
    run_id = raw.headers.get("x-chorus-debate-id")
    answer = raw.parse()
    if not stream:
        return answer.model_extra["chorus"], run_id
    fields = [(c.model_extra or {}).get("provider_specific_fields") for c in answer]
    return next(f["chorus"] for f in fields if f and "chorus" in f), run_id


@pytest.fixture
def url(redis_proxy):
    assert redis_proxy.env["CHORUS_PROFILE_SYNC_S"] == str(PROFILE_SYNC_S)
    return redis_proxy.url


def test_only_proxy_admins_reach_the_profiles_api_and_a_bad_body_stores_nothing(url):
    name = f"rt-{uuid.uuid4().hex[:8]}"
    for method, path, body in [("GET", "", None), ("GET", "/research", None),
                               ("POST", "", {"name": name, "profile": fusion(["model-a", "model-b"])}),
                               ("PUT", f"/{name}", {"version": 1, "profile": fusion(["model-a"])}),
                               ("DELETE", f"/{name}?version=1", None)]:
        refused = api(url, method, path, key=USER, json=body)
        assert refused.status_code == 403 and "proxy admins only" in refused.json()["detail"], (method, refused.text)
    bad = api(url, "POST", json={"name": name, "profile": fusion(["model-a", "fusion/research", "model-c"])})
    assert bad.status_code == 400, bad.text
    assert "panel.members[1].model: 'fusion/research' is a fusion model" in bad.json()["detail"]
    unknown = api(url, "POST", json={"name": name, "profile": fusion(["model-a", "model-zz"])})
    assert unknown.status_code == 400 and "panel.members[1].model: 'model-zz' is not a model_name" in \
        unknown.json()["detail"]
    taken = api(url, "POST", json={"name": "research", "profile": fusion(["model-a", "model-b"])})
    assert taken.status_code == 409 and "defined in litellm_config.yaml" in taken.json()["detail"]
    assert api(url, "GET", f"/{name}").status_code == 404
    assert name not in [p["name"] for p in api(url, "GET").json()["profiles"]]
    for method, path, body in [("PUT", "/research", {"version": 1, "profile": fusion(["model-a", "model-b"])}),
                               ("DELETE", "/research?version=1", None)]:
        read_only = api(url, method, path, json=body)
        assert read_only.status_code == 409 and "read-only" in read_only.json()["detail"]


def test_a_profile_created_changed_and_deleted_at_run_time_is_served_by_every_worker(url):
    name = f"rt-{uuid.uuid4().hex[:8]}"
    model = f"fusion/{name}"
    client = openai.OpenAI(base_url=f"{url}/v1", api_key=USER, max_retries=0, timeout=60)
    made = api(url, "POST", json={"name": name, "profile": fusion(["model-a", "model-b"])})
    assert made.status_code == 201, made.text
    assert {k: made.json()[k] for k in ("model", "source", "version")} == {"model": model, "source": "store",
                                                                            "version": 1}
    assert made.json()["rollout"]["serving"] >= 1  # the worker that took it serves it before answering
    assert settled(url, name, 1, within_s=10) < 10
    listed = {p["name"]: p for p in api(url, "GET").json()["profiles"]}
    assert listed["research"]["source"] == "config" and listed["research"]["version"] == 0
    assert listed[name]["source"] == "store" and listed[name]["version"] == 1

    # served like a config profile: streamed or not, its version in `chorus`, the header, the
    # transcript, the runs index and the signed receipt
    plain, run_id = chorus_of(client, model, stream=False, extra_body={"bounty": {"amount": 500, "currency": "USD"}})
    assert plain["profile"] == name and plain["profile_version"] == 1 and run_id == plain["id"]
    assert plain["panel"]["answered"] == ["model-a", "model-b"] and plain["settlement"]["status"] == "settled"
    streamed, _ = chorus_of(client, model, stream=True)
    assert streamed["profile_version"] == 1
    auth = {"Authorization": f"Bearer {USER}"}
    assert httpx.get(f"{url}/chorus/v1/runs/{run_id}", headers=auth).json()["profile_version"] == 1
    receipt = httpx.get(f"{url}/chorus/v1/receipts/{run_id}", headers=auth).json()
    assert receipt["payload"]["profile"] == name and receipt["payload"]["profile_version"] == 1
    for _ in range(50):  # the runs index is written off the request path
        runs = {r["id"]: r for r in httpx.get(f"{url}/chorus/v1/runs", headers=auth).json()["runs"]}
        if run_id in runs:
            break
        time.sleep(0.1)
    assert runs[run_id]["profile_version"] == 1
    assert chorus_of(client, "fusion/research", stream=False)[0]["profile_version"] == 0  # a config profile

    # a change, with the version read; a stale one is refused; every worker serves it within seconds
    changed = api(url, "PUT", f"/{name}", json={"version": 1, "profile": fusion(["model-a", "model-b", "model-c"])})
    assert changed.status_code == 200 and changed.json()["version"] == 2
    stale = api(url, "PUT", f"/{name}", json={"version": 1, "profile": fusion(["model-a", "model-b"])})
    assert stale.status_code == 409 and "version: 1 is stale" in stale.json()["detail"]
    assert settled(url, name, 2, within_s=10) < 10
    for stream in (False, True, False, True):
        assert chorus_of(client, model, stream=stream)[0]["profile_version"] == 2
    assert chorus_of(client, model, stream=False)[0]["panel"]["answered"] == ["model-a", "model-b", "model-c"]

    # deleted: gone from every worker, a model-not-found for the client
    assert api(url, "DELETE", f"/{name}?version=1").status_code == 409
    gone = api(url, "DELETE", f"/{name}?version=2")
    assert gone.status_code == 200 and gone.json()["version"] == 3
    assert settled(url, name, None, within_s=10) < 10
    for _ in range(IN_A_ROW // 2):
        with pytest.raises((openai.BadRequestError, openai.NotFoundError)) as err:
            client.chat.completions.create(model=model, messages=ASK)
        assert "Invalid model name" in str(err.value) and model in str(err.value)
    assert api(url, "PUT", f"/{name}", json={"version": 2, "profile": fusion(["model-a", "model-b"])}).status_code == 404
    assert name not in [p["name"] for p in api(url, "GET").json()["profiles"]]
