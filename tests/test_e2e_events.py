"""The live view's event stream through the real proxy: replay, follow, resume, scoping,
a viewer that attaches before its run, failed runs, two workers on Redis, bad input."""

import concurrent.futures
import contextlib
import json
import sqlite3
import threading
import time

import httpx
import openai
import pytest

from tests.conftest import wait_for

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
    expected = {"ev-rounds-consensus": 3, "ev-rounds-debate": 2, "ev-rounds-layers": 2, "ev-rounds-moa": 1}
    deadline = time.monotonic() + 20
    while True:  # a run's last events reach the index from the event writer, just after its response
        runs = httpx.get(f"{proxy.url}/chorus/v1/runs", params={"limit": 200}, timeout=30,
                         headers={"Authorization": "Bearer sk-team-a"}).json()["runs"]
        rounds = {r["id"]: r.get("rounds") for r in runs if r["id"].startswith("ev-rounds-")}
        if rounds == expected or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert rounds == expected


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


@pytest.fixture
def redis_workers(redis_proxy):
    """The session's two workers on Redis (tests/conftest.py)."""
    return redis_proxy.url


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


# -- who may hold a stream open (issue 23, point 6) ----------------------------------------------
NOT_FOUND = "no run {!r} for this team (or it expired)"


def probe(url, debate_id, key="sk-team-a", headers=None, timeout=4.0, **params):
    """(status, body, seconds, hung): a refusal's JSON body; for a 200, its first bytes, or
    hung=True when the stream sent nothing within `timeout` (a stream held open, idle)."""
    started = time.monotonic()
    with httpx.stream("GET", f"{url}/chorus/v1/runs/{debate_id}/events", params=params,
                      timeout=httpx.Timeout(timeout),
                      headers={"Authorization": f"Bearer {key}", **(headers or {})}) as resp:
        if resp.status_code != 200:
            resp.read()
            return resp.status_code, resp.json(), time.monotonic() - started, False
        try:
            first = next(resp.iter_raw())
        except httpx.ReadTimeout:
            return 200, None, time.monotonic() - started, True
        return 200, first, time.monotonic() - started, False


@pytest.fixture(scope="module")
def team_b_run(proxy):
    ask(proxy.url, "fusion/research", "ev-owned-by-b", key="sk-team-b")
    assert sse(proxy.url, "ev-owned-by-b", key="sk-team-b")[0] == 200
    return "ev-owned-by-b"


@pytest.mark.parametrize("form,params,headers", [
    ("after=0", {}, {}),
    ("after=1", {"after": 1}, {}),
    ("Last-Event-ID", {}, {"Last-Event-ID": "1"}),
    ("both", {"after": 2}, {"Last-Event-ID": "5"}),
])
@pytest.mark.parametrize("whose", ["unknown", "team-b"])
def test_a_run_the_caller_cannot_see_is_a_404_at_once_in_every_form(proxy, team_b_run, whose, form, params, headers):
    """Once, after=1 or Last-Event-ID on such an id was a 200 held open (polling the store for
    up to 900 s) while after=0 was a 404 (after the default 2 s wait)."""
    run_id = team_b_run if whose == "team-b" else f"ev-nobody-{form.replace('=', '-')}"
    status, body, seconds, hung = probe(proxy.url, run_id, headers=headers, **params)
    assert (status, hung) == (404, False), (status, body, seconds)
    assert body == {"detail": NOT_FOUND.format(run_id)}  # the same answer for both: no existence oracle
    assert seconds < 1.5
    # the owner gets the stream in every form
    status, first, _, hung = probe(proxy.url, team_b_run, key="sk-team-b", headers=headers, **params)
    assert status == 200 and not hung and first


def test_wait_s_waits_for_a_run_not_started_yet_then_answers_404(proxy, team_b_run):
    for run_id in ("ev-wait-never", team_b_run):  # a missing run and another team's: the same wait, same answer
        status, body, seconds, _ = probe(proxy.url, run_id, wait_s=1, after=1)
        assert status == 404 and body == {"detail": NOT_FOUND.format(run_id)}
        assert 0.9 <= seconds < 3, seconds


def test_a_resuming_viewer_that_waits_receives_the_run_when_it_starts(proxy):
    seen: dict = {}
    viewer = threading.Thread(target=lambda: seen.update(result=sse(
        proxy.url, "ev-wait-resume", headers={"Last-Event-ID": "1"}, wait_s=20)))
    viewer.start()
    time.sleep(0.5)  # the viewer is waiting for a run that does not exist yet
    assert probe(proxy.url, "ev-wait-resume")[0] == 404  # without wait_s: not yet
    ask(proxy.url, "fusion/research", "ev-wait-resume")
    viewer.join(30)
    status, frames = seen["result"]
    assert status == 200
    seqs = [f["data"]["seq"] for f in events(frames)]
    assert seqs[0] == 2 and seqs == list(range(2, len(seqs) + 2)) and events(frames)[-1]["event"] == "run_done"


def most_open_streams(proxy) -> int:
    """The most event-stream slots one key holds in the proxy's SQLite store now: the
    cap's own count (gateway/stream_cap.py), whichever worker took them."""
    with contextlib.closing(sqlite3.connect(proxy.env["CHORUS_DB_PATH"], timeout=5)) as db:
        rows = db.execute("SELECT COUNT(*) FROM stream_slots WHERE expires_at > ? GROUP BY key", (time.time(),))
        return max((n for (n,) in rows.fetchall()), default=0)


def test_open_streams_are_capped_per_key(proxy):
    """The default cap is 8 streams per key (CHORUS_EVENT_STREAMS_PER_KEY); the
    ninth is a 429 saying so, other keys are not affected, and a slot frees when its stream
    ends: a 404 after its wait, a finished run, or a viewer that disconnects mid-run."""
    key = "sk-team-c-ok"
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        waiting = [pool.submit(probe, proxy.url, f"ev-cap-{i}", key=key, timeout=15, wait_s=8) for i in range(8)]
        # Each waiter's slot is taken in the store before its 8 s wait starts: wait for all
        # eight (CI once sent the ninth after a fixed second, before every waiter had one).
        wait_for(lambda: most_open_streams(proxy) == 8, 6, "the eight waiters' slots", every=0.05)
        status, body, seconds, _ = probe(proxy.url, "ev-cap-9", key=key, wait_s=3)
        assert status == 429 and seconds < 3, (status, body)  # at once, not after its own 3 s wait
        assert "8" in body["detail"] and "CHORUS_EVENT_STREAMS_PER_KEY" in body["detail"]
        assert probe(proxy.url, "ev-cap-other-key", key="sk-team-b")[0] == 404  # another key: its own slots
        assert [w.result()[0] for w in waiting] == [404] * 8
    assert probe(proxy.url, "ev-cap-9", key=key)[0] == 404  # the slots came back

    def gives_up(i):  # waits for a run that never comes, and hangs up after a second
        with pytest.raises(httpx.ReadTimeout):
            probe(proxy.url, f"ev-cap-gone-{i}", key=key, timeout=1, wait_s=60)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(gives_up, range(8)))
    started = time.monotonic()
    while (status := probe(proxy.url, "ev-cap-9", key=key)[0]) == 429 and time.monotonic() - started < 5:
        time.sleep(0.2)
    assert status == 404  # a waiting viewer that left gave its slot back well before its 60 s
    # viewers of a live run that disconnect give their slots back
    ran = concurrent.futures.ThreadPoolExecutor(1).submit(
        lambda: "".join(c.choices[0].delta.content or "" for c in client(proxy.url, key).chat.completions.create(
            model="fusion/drip", messages=HARD, stream=True, extra_body={"chorus": {"debate_id": "ev-cap-live"}})
            if c.choices))
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        opened = [pool.submit(probe, proxy.url, "ev-cap-live", key=key, timeout=10, wait_s=10) for _ in range(8)]
        assert all(o.result()[0] == 200 for o in opened)  # each read its first frame, then hung up
    deadline = time.monotonic() + 5
    while (status := probe(proxy.url, "ev-cap-live", key=key)[0]) == 429 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status == 200
    assert not ran.done(), "the run ended before the check: it proves nothing"
    assert ran.result(timeout=60)


@pytest.mark.parametrize("params,headers,field", [
    ({"after": "abc"}, {}, "after"),
    ({"after": -1}, {}, "after"),
    ({"after": 1.5}, {}, "after"),
    ({"wait_s": -1}, {}, "wait_s"),
    ({"wait_s": 61}, {}, "wait_s"),
    ({"wait_s": "nan"}, {}, "wait_s"),
    ({"wait_s": "inf"}, {}, "wait_s"),
    ({"wait_s": "soon"}, {}, "wait_s"),
    ({}, {"Last-Event-ID": "x"}, "Last-Event-ID"),
    ({}, {"Last-Event-ID": "-1"}, "Last-Event-ID"),
])
def test_bad_stream_parameters_are_4xx_naming_the_field(proxy, params, headers, field):
    resp = httpx.get(f"{proxy.url}/chorus/v1/runs/ev-moa/events", params=params, timeout=10,
                     headers={"Authorization": "Bearer sk-team-a", **headers})
    assert resp.status_code in (400, 422), resp.text
    detail = resp.json()["detail"]
    assert field in (detail if isinstance(detail, str) else json.dumps(detail)), detail
