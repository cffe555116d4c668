"""The live view's event stream through the real proxy: replay, follow, resume, scoping,
a viewer that attaches before its run, failed runs, two workers on Redis, bad input."""

import concurrent.futures
import json
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import e2e_config, proxy_env
from tests.servers import litellm_proxy

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
ENDS = ("run_done", "run_failed")


def client(url, key="sk-team-a"):
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=60)


def ask(url, model, debate_id, key="sk-team-a", **kwargs):
    return client(url, key).chat.completions.create(model=model, messages=HARD,
                                                   extra_body={"chorus": {"debate_id": debate_id}}, **kwargs)


def sse(url, debate_id, key="sk-team-a", headers=None, **params):
    """(status, frames): every frame of the stream as {"id", "event", "data"}; comments as {"comment"}."""
    frames, status = [], None
    with httpx.stream("GET", f"{url}/chorus/v1/runs/{debate_id}/events", params=params, timeout=60,
                      headers={"Authorization": f"Bearer {key}", **(headers or {})}) as resp:
        status = resp.status_code
        if status != 200:
            resp.read()
            return status, resp.json()
        assert resp.headers["content-type"].startswith("text/event-stream")
        frame: dict = {}
        for line in resp.iter_lines():
            if not line:
                if frame:
                    frames.append(frame)
                frame = {}
            elif line.startswith(":"):
                frames.append({"comment": line[1:].strip()})
            else:
                field, _, value = line.partition(": ")
                frame[field] = json.loads(value) if field == "data" else value
    return status, frames


def events(frames):
    return [f for f in frames if "event" in f]


def check_frames(frames):
    """Ids are the sequence numbers 1..n, `event` the type, `data` the envelope; one end."""
    evs = events(frames)
    assert [int(f["id"]) for f in evs] == [f["data"]["seq"] for f in evs] == list(range(1, len(evs) + 1))
    assert all(f["event"] == f["data"]["type"] for f in evs)
    assert evs[0]["event"] == "run_started" and evs[-1]["event"] in ENDS
    assert [f["event"] for f in evs].count(evs[-1]["event"]) == 1
    return [f["event"] for f in evs]


def test_a_finished_moa_run_replays_in_order_and_closes(proxy):
    resp = ask(proxy.url, "fusion/research", "ev-moa")
    status, frames = sse(proxy.url, "ev-moa")
    assert status == 200
    kinds = check_frames(frames)
    assert kinds[:3] == ["run_started", "route", "round_started"] and kinds[-1] == "run_done"
    for kind in ("answer", "round_done", "judge_done", "synthesis_started", "answer_delta"):
        assert kind in kinds
    data = {f["event"]: f["data"]["data"] for f in events(frames)}
    assert data["run_started"]["model"] == "chorus/research" and len(data["run_started"]["seats"]) == 3
    assert len(data["round_done"]["points"]) == 3  # real MiniLM embeddings, projected
    text = "".join(f["data"]["data"]["text"] for f in events(frames) if f["event"] == "answer_delta")
    assert text == resp.choices[0].message.content == data["run_done"]["answer"]
    assert data["run_done"]["cost"] == pytest.approx(resp.model_extra["chorus"]["cost"]["total"])


def test_debate_and_consensus_runs_log_every_round(proxy):
    ask(proxy.url, "fusion/debate2", "ev-debate")
    ask(proxy.url, "fusion/consensus", "ev-consensus")
    _, frames = sse(proxy.url, "ev-debate")
    kinds = check_frames(frames)
    rounds = [f["data"]["data"] for f in events(frames) if f["event"] == "round_done"]
    assert [r["round"] for r in rounds] == [1, 2] and [len(r["points"]) for r in rounds] == [3, 6]
    assert rounds[1]["points"][:3] == rounds[0]["points"]  # earlier points keep their place
    assert kinds.index("round_done") < kinds.index("judge_done") < kinds.index("run_done")
    _, frames = sse(proxy.url, "ev-consensus")
    check_frames(frames)
    stages = [f["data"]["data"]["stage"] for f in events(frames) if f["event"] == "round_started"]
    assert stages[:3] == ["panel", "critique", "vote"]
    done = {f["data"]["data"]["round"]: f["data"]["data"] for f in events(frames) if f["event"] == "round_done"}
    assert done[3]["votes"] and all(v["accept"] for v in done[3]["votes"].values())
    assert [p["seat"] for p in done[1]["points"]] and [p["kind"] for p in done[3]["points"]] == ["candidate"]
    written = [f["data"]["data"] for f in events(frames) if f["event"] == "candidate_done"]
    assert [(c["version"], c["stage"], c["status"]) for c in written] == [(1, "candidate", "ok")]


def test_the_runs_index_counts_every_round_of_each_protocol(proxy):
    """A consensus run's drafts, critiques and vote, a debate's rounds, MoA's layers."""
    for model, run_id in (("fusion/consensus", "ev-rounds-consensus"), ("fusion/debate2", "ev-rounds-debate"),
                          ("fusion/layers", "ev-rounds-layers"), ("fusion/research", "ev-rounds-moa")):
        ask(proxy.url, model, run_id)
    runs = httpx.get(f"{proxy.url}/chorus/v1/runs", params={"limit": 200}, timeout=30,
                     headers={"Authorization": "Bearer sk-team-a"}).json()["runs"]
    rounds = {r["id"]: r["rounds"] for r in runs if r["id"].startswith("ev-rounds-")}
    assert rounds == {"ev-rounds-consensus": 3, "ev-rounds-debate": 2, "ev-rounds-layers": 2, "ev-rounds-moa": 1}


def test_a_viewer_attached_before_the_run_sees_it_all_live(proxy):
    seen: dict = {}
    viewer = threading.Thread(target=lambda: seen.update(result=sse(proxy.url, "ev-early", wait_s=20)))
    viewer.start()
    time.sleep(0.5)  # the viewer is waiting for a run that does not exist yet
    stream = client(proxy.url).chat.completions.create(
        model="fusion/drip", messages=HARD, stream=True, extra_body={"chorus": {"debate_id": "ev-early"}})
    streamed = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    viewer.join(30)
    status, frames = seen["result"]
    assert status == 200 and check_frames(frames)[-1] == "run_done"
    deltas = [f for f in events(frames) if f["event"] == "answer_delta"]
    assert "".join(f["data"]["data"]["text"] for f in deltas) == streamed
    assert len(deltas) >= 2  # the answer arrived in pieces while it was written


def test_last_event_id_resumes_after_that_event(proxy):
    ask(proxy.url, "fusion/research", "ev-resume")
    _, whole = sse(proxy.url, "ev-resume")
    _, rest = sse(proxy.url, "ev-resume", headers={"Last-Event-ID": "4"})
    assert [f["id"] for f in events(rest)] == [f["id"] for f in events(whole)][4:]
    _, rest = sse(proxy.url, "ev-resume", after=len(events(whole)) - 1)
    assert [f["event"] for f in events(rest)] == ["run_done"]


def test_a_failed_run_ends_with_the_error_the_client_got(proxy):
    with pytest.raises(openai.APIStatusError) as err:
        ask(proxy.url, "fusion/down", "ev-failed")
    _, frames = sse(proxy.url, "ev-failed")
    kinds = check_frames(frames)
    assert kinds[-1] == "run_failed"
    end = events(frames)[-1]["data"]["data"]
    assert end["status"] == err.value.status_code == 502
    assert end["error"]["message"] in err.value.message
    failed = {f["data"]["data"]["seat"] for f in events(frames) if f["event"] == "answer"}
    assert failed == {"fail500-a", "fail429-b", "hang-c"}


def test_runs_are_listed_and_read_only_by_their_team(proxy):
    ask(proxy.url, "fusion/research", "ev-team-a")
    ask(proxy.url, "fusion/research", "ev-team-b", key="sk-team-b")
    assert sse(proxy.url, "ev-team-a", key="sk-team-b", wait_s=0)[0] == 404
    assert sse(proxy.url, "ev-team-b", key="sk-team-a", wait_s=0)[0] == 404
    assert sse(proxy.url, "never-ran", wait_s=0.5)[0] == 404
    runs = httpx.get(f"{proxy.url}/chorus/v1/runs", params={"limit": 200}, timeout=30,
                     headers={"Authorization": "Bearer sk-team-a"}).json()["runs"]
    ids = [r["id"] for r in runs]
    assert "ev-team-a" in ids and "ev-team-b" not in ids
    mine = next(r for r in runs if r["id"] == "ev-team-a")
    assert mine["state"] == "done" and mine["profile"] == "research" and mine["cost"] > 0
    one = httpx.get(f"{proxy.url}/chorus/v1/runs", params={"limit": 1}, timeout=30,
                    headers={"Authorization": "Bearer sk-team-a"}).json()["runs"]
    assert len(one) == 1


@pytest.mark.parametrize("path,params,headers,status", [
    ("/chorus/v1/runs", {"limit": 0}, {}, 422),
    ("/chorus/v1/runs", {"limit": 201}, {}, 422),
    ("/chorus/v1/runs", {"limit": "many"}, {}, 422),
    ("/chorus/v1/runs/bad%20id/events", {}, {}, 422),
    ("/chorus/v1/runs/ev-moa/events", {"wait_s": 61}, {}, 422),
    ("/chorus/v1/runs/ev-moa/events", {"after": -1}, {}, 422),
    ("/chorus/v1/runs/ev-moa/events", {}, {"Last-Event-ID": "x"}, 400),
    ("/chorus/v1/runs/ev-moa/events", {}, {"Authorization": "Bearer sk-nobody"}, 401),
])
def test_bad_ids_limits_and_keys_are_4xx(proxy, path, params, headers, status):
    resp = httpx.get(f"{proxy.url}{path}", params=params, timeout=30,
                     headers={"Authorization": "Bearer sk-team-a", **headers})
    assert resp.status_code == status, resp.text


def test_the_page_is_served_with_its_assets(proxy):
    page = httpx.get(f"{proxy.url}/chorus/ui/", timeout=30)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    for asset in ("app.js", "app.css"):
        assert f"./{asset}" in page.text or asset in page.text
        assert httpx.get(f"{proxy.url}/chorus/ui/{asset}", timeout=30).status_code == 200
    assert httpx.get(f"{proxy.url}/chorus/ui", timeout=30, follow_redirects=True).status_code == 200


@pytest.fixture(scope="module")
def redis_workers(upstream, signing_key, redis_server, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("events-redis")
    (workdir / "spend.jsonl").touch()
    env = {**proxy_env(workdir, signing_key, workdir / "spend.jsonl"), "CHORUS_STORE": "redis",
           "CHORUS_REDIS_URL": redis_server.url}
    with litellm_proxy(e2e_config(upstream), workdir, env=env, workers=2) as (url, _):
        yield url


def test_two_workers_on_redis_serve_any_run_to_any_viewer(redis_workers):
    url = redis_workers
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        # viewers first (each lands on either worker), then the runs (also on either)
        viewers = [pool.submit(sse, url, f"ev-redis-{i % 3}", wait_s=20) for i in range(6)]
        time.sleep(0.5)
        runs = [pool.submit(ask, url, "fusion/debate2", f"ev-redis-{i}") for i in range(3)]
        answers = [r.result() for r in runs]
        seen = [v.result() for v in viewers]
    for i, (status, frames) in enumerate(seen):
        assert status == 200
        assert check_frames(frames)[-1] == "run_done"
        end = events(frames)[-1]["data"]["data"]
        assert end["answer"] == answers[i % 3].choices[0].message.content
    assert sse(url, "ev-redis-0", key="sk-team-b", wait_s=0)[0] == 404
    runs = httpx.get(f"{url}/chorus/v1/runs", timeout=30, headers={"Authorization": "Bearer sk-team-a"}).json()
    assert {"ev-redis-0", "ev-redis-1", "ev-redis-2"} <= {r["id"] for r in runs["runs"]}
