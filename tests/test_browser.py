"""The live view in a real browser: Debian's Chromium, driven by Playwright, against real
proxies (real MiniLM embeddings): the test proxy (tests/conftest.py's `e2e_config`, the
fake upstream) and the demo (the shipped litellm_config.yaml, the demo's cast upstream),
which takes the docs' screenshots a user can reproduce with `chorus serve --demo`. What a
person would see, checked from the page itself (its DOM and its own state,
`window.chorusView`)."""

import contextlib
import json
import os
import shutil
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "live-view.png"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
KEY = "sk-team-a"


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"Debian's chromium is not installed ({CHROMIUM}); the README's test command installs it")
    with sync_api.sync_playwright() as p:
        # WebGL on the CPU (SwiftShader): the 3D graph draws without a GPU.
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--use-gl=angle", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist"])
        yield browser
        browser.close()


@contextlib.contextmanager
def open_page(browser, url):
    """A fresh browser context on `url`; fails if the page raised."""
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, base_url=url)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.fixture
def page(browser, proxy):
    """The page on the test proxy (tests/conftest.py's e2e_config)."""
    with open_page(browser, proxy.url) as page:
        yield page


@pytest.fixture
def demo_page(browser, demo):
    """The page on the demo: the shipped litellm_config.yaml, the demo's cast upstream."""
    with open_page(browser, demo.url) as page:
        yield page


def view(page, field):
    return page.evaluate(f"window.chorusView && window.chorusView.{field}")


def sign_in(page, key=KEY, query=""):
    page.goto(f"/chorus/ui/{query}")
    page.get_by_test_id("key-input").fill(key)
    page.get_by_test_id("key-save").click()


def start(page, model, prompt):
    page.wait_for_function(f"[...document.querySelectorAll('[data-testid=model-select] option')]"
                           f".some(o => o.value === '{model}')", timeout=30_000)
    page.get_by_test_id("model-select").select_option(model)
    page.get_by_test_id("prompt-input").fill(prompt)
    page.get_by_test_id("run-button").click()


def watch(page, until=("done", "failed"), timeout=90.0):
    """Poll the page's state while the run goes: [(status, rounds, answer length), ...]."""
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        status, rounds, length = page.evaluate(  # one call a poll: a busy page answers slowly
            "(v => v ? [v.status, [...(v.rounds || [])], (v.answer || '').length] : [null, [], 0])(window.chorusView)")
        seen.append((status, rounds, length))
        if status in until:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"the page never reached {until}: {seen[-3:]}")


def assert_nothing_cut(page, selector):
    """Every element `selector` matches shows its whole text (no ellipsis, no clipping)."""
    cut = page.eval_on_selector_all(selector, "els => els.filter(e => e.scrollWidth > e.clientWidth + 1)"
                                              ".map(e => e.textContent)")
    assert page.locator(selector).count() and not cut, cut


# How long the camera may take to reach a fit: the page stays awake for it up to 30 s after
# the fit (graph.js FIT_AWAKE_MS), since a busy software renderer draws a frame in seconds;
# CI once waited 20 s for it with three test processes on 2 cores.
SETTLE_MS = 45_000


def assert_map_says_they_agree(page, last_round):
    """The map draws the round's answers close together when they agree (a fixed scale, not
    fitted to their spread) and says how much they agree beside it."""
    page.get_by_test_id("graph").scroll_into_view_if_needed()  # out of view, the map stops drawing
    page.wait_for_function("!document.querySelector('[data-testid=map-scale]').hidden", timeout=10_000)
    page.wait_for_function("window.chorusView.graphSpread.settled", timeout=SETTLE_MS)  # the camera's fit is done
    spread = view(page, "graphSpread")
    assert spread["px"] < 0.25 * min(spread["width"], spread["height"]), spread
    readout = page.get_by_test_id("map-agreement").inner_text()
    assert f"R{last_round['round']}" in readout and "text agreement" in readout
    assert f"{100 * last_round['agreement']:.0f}%" in readout or f"{100 * last_round['agreement']:.2f}%" in readout
    scale = page.get_by_test_id("map-scale")
    assert scale.is_visible() and "apart" in scale.inner_text() and "cosine" in scale.inner_text()
    bar = float(scale.get_attribute("data-px"))
    assert 40 <= bar <= 400, bar


def spread(points):
    """How far apart the farthest two of `points` are, in the map's units (the embedding's)."""
    xyz = [(p["x"], p["y"], p["z"]) for p in points]
    return max((sum((a - b) ** 2 for a, b in zip(p, q)) ** 0.5 for p in xyz for q in xyz), default=0.0)


def drawn_spread(page, chip):
    """The map filtered to one round (its chip, "R1"), as drawn: its answers' spread on
    screen over the scale bar's pixels per unit, so in the map's units whatever the zoom."""
    page.locator("#round-filter button", has_text=chip).click()
    page.wait_for_timeout(600)  # the camera's move to the new fit (500 ms)
    scale = page.get_by_test_id("map-scale")

    def reading() -> float:
        page.wait_for_function("window.chorusView.graphSpread.settled", timeout=SETTLE_MS)
        return view(page, "graphSpread")["px"] * float(scale.get_attribute("data-distance")) / \
            float(scale.get_attribute("data-px"))

    # A software renderer on a busy machine draws a frame in up to seconds, and the scale bar
    # is redrawn on frames: CI once read a round's spread against the other round's scale.
    # As drawn means once two readings a second apart agree.
    last, deadline = reading(), time.monotonic() + 20
    while True:
        page.wait_for_timeout(1000)
        now = reading()
        if abs(now - last) <= 0.01 * abs(now) or time.monotonic() > deadline:
            return now
        last = now


def final_answers(events, round_no):
    return {e["data"]["seat"]: e["data"]["text"].rsplit("Final answer:", 1)[-1].strip()
            for e in events if e["type"] == "answer" and e["data"]["round"] == round_no and e["data"]["status"] == "ok"}


def test_a_debate_started_from_the_page_on_the_demo_is_watched_live(demo_page, demo):
    """The README's walk-through on the demo (the shipped config, the demo's cast upstream):
    sign in with the demo key, keep the preselected fusion/debate, ask, and watch the
    analyst, the skeptic and the contrarian start apart and come round, round by round.
    The README's screenshot (docs/live-view.png) and the whole page (live-view-full.png)."""
    page = demo_page
    sign_in(page, key=demo.key)
    # before any run: no summary strip (it said "RUN null"); the picker offers the shipped
    # config's chorus profiles (no plain model) and starts on the README's fusion/debate
    page.wait_for_function("document.querySelectorAll('[data-testid=model-select] option').length > 1", timeout=30_000)
    assert page.get_by_test_id("model-select").input_value() == "fusion/debate"
    options = page.eval_on_selector_all("[data-testid=model-select] option", "os => os.map(o => o.value)")
    assert {"fusion/research", "fusion/consensus", "fusion/market"} <= set(options) and "model-a" not in options
    assert page.locator("#summary").is_hidden() and "null" not in page.locator("#summary").inner_text()
    page.get_by_test_id("prompt-input").fill("Should we rewrite our backend in Rust?")
    page.get_by_test_id("run-button").click()
    seen = watch(page)
    assert seen[-1][0] == "done", seen[-1]
    events = view(page, "events")
    kinds = [e["type"] for e in events]
    rounds = view(page, "rounds")
    assert events[0]["data"]["model"] == "fusion/debate"
    assert rounds == list(range(1, len(rounds) + 1)) and len(rounds) >= 2  # in order
    # live: the rounds arrived one by one on the page (a yes/no answer is sent whole, once
    # the vote guard has read it: test_the_answer_is_drawn_as_it_is_written streams one)
    assert any(status == "live" and 0 < len(r) < len(rounds) for status, r, _ in seen), seen
    assert kinds[-1] == "run_done" and kinds.index("settled") < kinds.index("run_done")
    # the debate moved: every seat a position of its own in round 1, fewer positions in the
    # last round, the agreement rose, and the seats' answers moved on the map. (On a busy
    # machine a seat can miss a round: the quorum is two, so not every seat is counted on.)
    done = {e["data"]["round"]: e["data"] for e in events if e["type"] == "round_done"}
    first, last = done[1], done[rounds[-1]]
    opening, closing = final_answers(events, 1), final_answers(events, rounds[-1])
    assert len(set(opening.values())) == len(opening) >= 2, opening
    assert len(set(closing.values())) < len(set(opening.values())), (opening, closing)
    assert last["agreement"] > first["agreement"], (first["agreement"], last["agreement"])
    at = {(p["seat"], p["round"]): (p["x"], p["y"], p["z"]) for p in last["points"]}
    moved = [at[seat, 1] != at[seat, 2] for seat, r in at if r == 1 and (seat, 2) in at]
    assert len(moved) >= 2 and all(moved), at
    # the map: one node per answer of every round, round 1 drawn wider apart than the last
    assert view(page, "graphNodes") == len(last["points"]) >= 2 * len(rounds)
    canvas = page.get_by_test_id("graph").locator("canvas")
    assert canvas.count() >= 1 and canvas.first.bounding_box()["width"] > 200
    apart = [spread([p for p in d["points"] if p["round"] == d["round"]]) for d in (first, last)]
    assert apart[0] > 1.5 * apart[1], apart
    page.get_by_test_id("graph").scroll_into_view_if_needed()  # out of view, the map stops drawing
    page.wait_for_function("!document.querySelector('[data-testid=map-scale]').hidden", timeout=10_000)
    wide, narrow = drawn_spread(page, "R1"), drawn_spread(page, f"R{rounds[-1]}")
    assert wide > 1.5 * narrow, (wide, narrow)
    page.locator("#round-filter button", has_text="All rounds").click()
    readout = page.get_by_test_id("map-agreement").inner_text()
    assert f"R{rounds[-1]}" in readout and f"{100 * last['agreement']:.0f}%" in readout and "text agreement" in readout
    # the analytics have one point per round
    charts = view(page, "chartPoints")
    for name in ("agreement", "answer_agreement", "shift", "clusters", "flips", "filtered"):
        assert charts[name] == len(rounds), (name, charts)
    # the agent cards, the judge, the answer, the timeline and the payouts
    seats = [s["seat"] for s in events[0]["data"]["seats"]]
    assert page.get_by_test_id("agent-card").count() == len(seats) == 3
    answer = events[-1]["data"]["answer"]
    assert view(page, "answer") == answer and answer
    assert page.get_by_test_id("answer").inner_text().strip()[:40] in answer
    judge = page.get_by_test_id("judge").inner_text()  # the cast's judge: the leading position
    assert any(f"The answer is: {position.rstrip('.')}." in judge for position in closing.values()), judge
    assert page.get_by_test_id("timeline").inner_text().strip()
    # every seat answered round 1 (the first wave did not settle the vote): no early stop shown
    assert "early stop" not in page.locator("#round-table").inner_text()
    assert page.get_by_test_id("early-stop").is_hidden()
    payouts = view(page, "payouts")  # the page's bounty box: $10.00 by default
    assert events[0]["data"]["bounty"] == {"amount": 1000, "currency": "USD"}
    assert sum(p["amount"] for p in payouts) == 1000
    assert page.get_by_test_id("payout-bar").count() == len({p["payee"] for p in payouts})
    assert page.get_by_test_id("receipt-link").count() == 1
    assert page.get_by_test_id("stop-reason").inner_text().strip()
    assert "RUN" in page.locator("#summary").inner_text().upper() and "null" not in page.locator("#summary").inner_text()
    # the rounds are in: no card still says "thinking", and no stat label is cut
    assert page.locator("[data-testid=agent-card][data-status=pending]").count() == 0
    assert page.get_by_test_id("status-badge").all_inner_texts() and \
        not any("thinking" in t.lower() for t in page.get_by_test_id("status-badge").all_inner_texts())
    assert_nothing_cut(page, "[data-testid=agent-card] .seat-stats dt, [data-testid=agent-card] .seat-stats dd")
    page.wait_for_timeout(600)  # the camera back on every round, the graph's last frame settled
    page.wait_for_function("window.chorusView.graphSpread.settled", timeout=SETTLE_MS)
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(SCREENSHOT), full_page=False)
    page.screenshot(path=str(SCREENSHOT.with_name("live-view-full.png")), full_page=True)


def test_the_answer_is_drawn_as_it_is_written(page):
    """fusion/drip (the test proxy): the writer streams a word every 0.2 s; the page shows
    the answer growing while the run is live, and the whole of it once done."""
    sign_in(page)
    page.get_by_test_id("bounty-input").fill("")
    start(page, "fusion/drip", "Compare Raft and Paxos and explain the trade-offs.")
    seen = watch(page)
    assert seen[-1][0] == "done", seen[-1]
    assert any(status == "live" and 0 < length < seen[-1][2] for status, _, length in seen), seen
    answer = view(page, "events")[-1]["data"]["answer"]
    assert view(page, "answer") == answer and page.get_by_test_id("answer").inner_text().strip()[:40] in answer


QUIZ = ("Which planet is the largest in the solar system?\nA) Mars\nB) Jupiter\nC) Mercury\nD) Venus\n"
        "Answer with the letter (A, B, C or D) only.")


def replay(page, run_id, events):
    """Open `run_id` with its event stream answered by `events` only, as if the run were still
    going: the page as it looked live right after the last of them."""
    body = "".join(f"id: {e['seq']}\nevent: {e['type']}\ndata: {json.dumps(e)}\n\n" for e in events)
    served = []

    def answer(route):
        served.append(route.request.url)  # later calls are the page resuming: nothing new yet
        route.fulfill(status=200, headers={"Content-Type": "text/event-stream"}, body=body if len(served) == 1 else "")

    page.route("**/chorus/v1/runs/*/events*", answer)
    page.goto(f"/chorus/ui/?run={run_id}")
    page.wait_for_function(f"window.chorusView && window.chorusView.events.length === {len(events)}", timeout=30_000)
    page.wait_for_timeout(100)  # the coalesced redraw
    page.unroute("**/chorus/v1/runs/*/events*")


def test_an_early_stop_and_a_replaced_answer_are_drawn_where_a_user_looks(page, proxy):
    """chorus/quiz (a profile served under the plugin's own prefix) on a multiple-choice
    question: model-a and model-b agree, so model-c is never asked (early stop); the writer
    states another letter, so the vote guard sends model-a's draft instead."""
    served = httpx.get(f"{proxy.url}/chorus/v1/models", headers={"Authorization": f"Bearer {KEY}"},
                       timeout=30).json()["models"]  # what the picker offers
    config = {"source": "config", "version": 0}  # profiles of the config file (not stored at run time)
    assert {"id": "chorus/quiz", "profile": "quiz", "protocol": "moa", **config} in served
    assert {"id": "fusion/debate", "profile": "debate", "protocol": "debate", **config} in served
    assert not {m["id"] for m in served} & {"model-a", "judge", "writer"}
    sign_in(page)
    page.get_by_test_id("bounty-input").fill("")
    start(page, "chorus/quiz", QUIZ)
    watch(page)
    assert view(page, "status") == "done"
    events = view(page, "events")
    early = next(e["data"] for e in events if e["type"] == "early_stop")
    replaced = next(e["data"] for e in events if e["type"] == "answer_replaced")
    assert early["saved_seats"] == ["model-c"] and early["asked"] == 2 and early["cost_saved_usd"] > 0
    # early stop: on the panel (a note, and the seat not asked shown as such), the timeline,
    # the costs and the round table
    note = page.get_by_test_id("early-stop")
    assert note.is_visible() and "early stop" in note.inner_text().lower()
    assert "model-c" in note.inner_text() and "2 of 3" in note.inner_text()
    assert page.get_by_test_id("early-stop-saved").inner_text().startswith("$")
    card = page.locator("[data-testid=agent-card][data-seat='model-c']")
    assert card.get_attribute("data-status") == "skipped"
    assert card.get_by_test_id("status-badge").inner_text().lower() == "not asked"
    assert "early stop" in card.get_by_test_id("skipped-note").inner_text().lower()
    rows = timeline_rows(page)
    assert rows["early-stop"] == ["Early stop · R1", "1 skipped"], rows
    assert list(rows).index("round-1") < list(rows).index("early-stop") < list(rows).index("judge")
    assert "early stop saved" in page.get_by_test_id("costs").inner_text().lower()
    assert "early stop" in page.locator("#round-table").inner_text()
    # the answer replaced: a badge and a note on the answer panel saying why
    assert page.get_by_test_id("answer-badge").is_visible()
    why = page.get_by_test_id("answer-replaced")
    assert why.is_visible() and replaced["seat"] in why.inner_text() and replaced["reason"] in why.inner_text()
    assert view(page, "answer") == next(e["data"]["text"] for e in events
                                         if e["type"] == "answer" and e["data"]["seat"] == replaced["seat"])
    assert "replaced" in page.locator("#answer-meta").inner_text()
    assert f"{replaced['seat']}'s draft stands" in page.get_by_test_id("stop-reason").inner_text()
    assert "replaced" in rows
    # the map: two answers at 99.9% agreement drawn together, the figure beside them
    assert view(page, "graphNodes") == 2
    assert_map_says_they_agree(page, next(e["data"] for e in events if e["type"] == "round_done"))
    assert view(page, "graphSpread")["px"] < 0.1 * view(page, "graphSpread")["width"]
    assert "100% answer agreement" in page.get_by_test_id("map-agreement").inner_text()
    page.wait_for_timeout(500)  # let the graph's last frame settle
    top = page.evaluate("document.querySelector('.graph-panel').getBoundingClientRect().top + window.scrollY - 8")
    bottom = page.evaluate("(() => { const r = document.querySelector('[data-testid=timeline]').closest('section')"
                           ".getBoundingClientRect(); return r.bottom + window.scrollY + 12; })()")
    page.screenshot(path=str(SCREENSHOT.with_name("live-view-early-stop.png")), full_page=True,
                    clip={"x": 0, "y": top, "width": 1440, "height": bottom - top})

    # As it looked live: right after the early stop (round 1's map not measured yet), the seat
    # not asked is "not asked" and nobody is "thinking"; once the judge is in, likewise.
    run_id = view(page, "runId")
    cut = next(i for i, e in enumerate(events) if e["type"] == "early_stop") + 1
    assert "round_done" not in [e["type"] for e in events[:cut]]
    for upto in (cut, next(i for i, e in enumerate(events) if e["type"] == "judge_done") + 1):
        replay(page, run_id, events[:upto])
        statuses = {page.get_by_test_id("agent-card").nth(i).get_attribute("data-seat"):
                    page.get_by_test_id("agent-card").nth(i).get_attribute("data-status") for i in range(3)}
        assert statuses == {"model-a": "ok", "model-b": "ok", "model-c": "skipped"}, (upto, statuses)
        assert not any("thinking" in t.lower() for t in page.get_by_test_id("status-badge").all_inner_texts())
        assert page.get_by_test_id("early-stop").is_visible()


def test_a_wrong_key_gets_a_clear_message(page):
    sign_in(page, key="sk-not-a-key")
    page.wait_for_function("window.chorusView && window.chorusView.status === 'unauthorized'", timeout=30_000)
    message = page.get_by_test_id("message").inner_text()
    assert "401" in message and "key" in message.lower()


def test_another_teams_run_is_not_found(page, proxy):
    resp = httpx.post(f"{proxy.url}/v1/chat/completions", timeout=60, headers={"Authorization": "Bearer sk-team-b"},
                      json={"model": "fusion/research", "messages": [{"role": "user", "content": "Compare A and B."}],
                            "chorus": {"debate_id": "team-b-secret"}})
    assert resp.status_code == 200
    sign_in(page, query="?run=team-b-secret")
    page.wait_for_function("window.chorusView && window.chorusView.status === 'not_found'", timeout=30_000)
    assert "not found" in page.get_by_test_id("message").inner_text().lower()
    assert view(page, "graphNodes") == 0


def test_a_failed_run_shows_its_error_and_what_came_before(page):
    sign_in(page)
    page.get_by_test_id("bounty-input").fill("")  # no bounty: nothing to settle
    start(page, "fusion/down", "Compare Raft and Paxos and explain the trade-offs.")
    watch(page)
    assert view(page, "status") == "failed"
    assert "quorum" in (view(page, "error") or "").lower()
    assert "quorum" in page.get_by_test_id("message").inner_text().lower()
    assert page.get_by_test_id("agent-card").count() == 3  # the seats that failed are still shown


def test_a_lost_quorum_answered_by_the_single_model_is_drawn_where_a_user_looks(page):
    """fusion/fallback (panel.on_quorum_failure: single_model): both seats fail, the single
    model answers. The page says so on the panel (who failed and how, who answers instead),
    on the timeline and with the answer; the run is done, not failed."""
    sign_in(page)
    page.get_by_test_id("bounty-input").fill("")
    start(page, "fusion/fallback", "Compare Raft and Paxos and explain the trade-offs.")
    watch(page)
    assert view(page, "status") == "done" and view(page, "answer").startswith("model-c answers")
    lost = next(e["data"] for e in view(page, "events") if e["type"] == "quorum_lost")
    assert lost["answered_by"] == "model-c" and lost["required"] == 2
    note = page.get_by_test_id("quorum-lost")
    assert note.is_visible(), "the quorum_lost event is not drawn"
    text = note.inner_text()
    assert text.startswith("Quorum lost.") and "0 answered, 2 required" in text, text
    assert "fail500-a" in text and "fail500-b" in text and "HTTP error 500" in text, text
    assert "single model model-c answers instead" in text and "degraded" in text, text
    assert timeline_rows(page)["quorum-lost"] == ["Quorum lost · R1", "0/2"]
    assert page.locator("[data-testid=agent-card][data-status=failed]").count() >= 1
    note.locator("xpath=ancestor::section").screenshot(path=str(ROOT / "docs" / "live-view-quorum-lost.png"))


def test_ten_seats_by_five_rounds_stay_usable(page, proxy):
    sign_in(page)
    start(page, "fusion/wide", "Compare Raft and Paxos and explain the trade-offs.")
    watch(page, timeout=120)
    assert view(page, "status") == "done" and view(page, "rounds") == [1, 2, 3, 4, 5]
    # every seat answered every round (the profile waits for stragglers; a seat that did not
    # answer is named here, not left to a bare node count)
    missed = page.evaluate("""window.chorusView.events
        .filter(e => e.type === 'answer' && e.data.status !== 'ok')
        .map(e => `round ${e.data.round} ${e.data.seat}: ${e.data.status} ${e.data.kind} ${e.data.detail || ''}`)""")
    assert not missed, missed
    page.wait_for_function("window.chorusView.graphNodes === 50", timeout=15_000)
    assert view(page, "graphNodes") == 50 and page.get_by_test_id("agent-card").count() == 10
    # still usable with everything drawn: ten frames of the page take under a second each
    frames_ms = page.evaluate("""async () => { const t = performance.now();
        for (let i = 0; i < 10; i++) await new Promise(r => requestAnimationFrame(r));
        return performance.now() - t; }""")
    assert frames_ms < 10_000, frames_ms
    page.get_by_test_id("agent-card").nth(9).scroll_into_view_if_needed()
    assert page.get_by_test_id("agent-card").nth(9).is_visible()


@pytest.fixture(scope="module")
def market(upstream, signing_key, tmp_path_factory):
    """A proxy that admits peers, with `fusion/pool-web` drawing two seats from pool "web"."""
    from tests.conftest import e2e_config, e2e_entry, proxy_env
    from tests.servers import litellm_proxy

    workdir = tmp_path_factory.mktemp("browser-market")
    (workdir / "spend.jsonl").touch()
    config = e2e_config(upstream)
    config["model_list"].append(e2e_entry("pool-web", {
        "panel": {"pool": "web", "seats": 2, "min_quorum": 2}, "aggregator": {"judge": "judge", "synthesizer": "writer"}}))
    env = {**proxy_env(workdir, signing_key, workdir / "spend.jsonl"), "CHORUS_PEER_ADMISSION": "open",
           "CHORUS_PEER_URL_ALLOWLIST": "127.0.0.1/32", "CHORUS_PEER_AWAY_AFTER_S": "2", "CHORUS_PEER_SYNC_S": "0.5"}
    with litellm_proxy(config, workdir, env=env) as (url, _log):
        yield url


def test_the_network_view_shows_the_pool_by_model_with_state_load_and_earnings(browser, market, upstream):
    """Three peers join pool "web" (two serve one model); one stops beating. The page
    groups them by model, shows who is live or away, marks the two seated in a run started
    from the page, and shows what they earned."""
    import threading

    from tests.conftest import wait_drawable
    from tests.test_e2e_peers import Peer

    live = [Peer(market), Peer(market)]
    quiet = Peer(market)
    for peer, model, payee in ((live[0], "llama-3.1-8b", "alice"), (live[1], "qwen-2.5-7b", "bob"),
                               (quiet, "llama-3.1-8b", "carol")):
        assert peer.register(upstream, pool="web", model=model, payee=payee, personas=[]).status_code == 201
    stop = threading.Event()

    def beat():  # the live ones keep beating; carol went quiet
        while not stop.wait(0.5):
            for peer in live:
                peer.call("POST", f"/chorus/v1/peers/{peer.id}/heartbeat")

    beater = threading.Thread(target=beat, daemon=True)
    beater.start()
    context = browser.new_context(viewport={"width": 1440, "height": 1000}, base_url=market)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        wait_drawable(market, KEY, "web", [peer.id for peer in live])  # alice and bob synced and probed
        sign_in(page)
        page.wait_for_function("window.chorusView.network && window.chorusView.network.away === 1", timeout=20_000)
        assert view(page, "network") == {"pools": 1, "live": 2, "away": 1, "load": 0}
        groups = page.get_by_test_id("model-group")
        assert [groups.nth(i).get_attribute("data-model") for i in range(groups.count())] == \
            ["llama-3.1-8b", "qwen-2.5-7b"]
        assert groups.nth(0).get_by_test_id("peer").count() == 2  # alice (live) then carol (away)
        assert page.locator(f"[data-peer='{quiet.id}']").get_attribute("data-state") == "away"
        start(page, "fusion/pool-web", "Compare Raft and Paxos and explain the trade-offs.")
        assert watch(page)[-1][0] == "done"
        seated = {live[0].id, live[1].id}
        page.wait_for_function("document.querySelectorAll('[data-testid=peer][data-seated=\"1\"]').length === 2",
                               timeout=10_000)
        assert {page.locator("[data-seated='1']").nth(i).get_attribute("data-peer") for i in range(2)} == seated
        page.wait_for_function("[...document.querySelectorAll('[data-seated=\"1\"] [data-testid=peer-earned]')]"
                               ".every(e => e.textContent.startsWith('$'))", timeout=10_000)
        earned = [page.locator(f"[data-peer='{p.id}'] [data-testid=peer-earned]").inner_text() for p in live]
        paid = {p["payee"]: p["amount"] for p in view(page, "payouts")}
        assert earned == [f"${paid['alice'] / 100:.2f}", f"${paid['bob'] / 100:.2f}"]
        assert page.locator(f"[data-peer='{quiet.id}'] [data-testid=peer-earned]").inner_text() == "—"
        network = page.get_by_test_id("network")
        network.scroll_into_view_if_needed()
        network.screenshot(path=str(SCREENSHOT.with_name("network-view.png")))
    finally:
        stop.set()
        beater.join(10)
        context.close()
    assert not errors, f"the page raised: {errors}"


def timeline_rows(page):
    """{data-stage: (label, duration text)} of the stage timeline as drawn."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('[data-testid=timeline] .tl-row')]
        .map(r => [r.dataset.stage,
                   [r.querySelector('.tl-label').textContent, r.querySelector('.tl-dur').textContent]]))""")


def test_a_consensus_run_shows_its_drafts_candidates_and_votes(page, proxy):
    """fusion/consensus-seed: reject-c rejects the candidate twice (strict unanimity,
    dissenters re-vote): drafts, critiques, two votes, a revision, no consensus."""
    sign_in(page)
    page.get_by_test_id("bounty-input").fill("")
    start(page, "fusion/consensus-seed", "Compare Raft and Paxos and explain the trade-offs.")
    watch(page)
    assert view(page, "status") == "done" and sorted(view(page, "rounds")) == [1, 2, 3, 4]
    run_id = view(page, "runId")
    # a. the map keeps the drafts and adds each candidate voted on (3 drafts + v1 + v2),
    #    with the votes as accept/reject links from each voter's draft to the candidate
    assert view(page, "graphNodes") == 5
    cast = [b for e in view(page, "events") if e["type"] == "round_done" and e["data"].get("votes")
            for b in e["data"]["votes"].values() if b["cast"]]
    assert view(page, "graphVotes") == {"accept": sum(b["accept"] is True for b in cast),
                                        "reject": sum(b["accept"] is False for b in cast)}
    assert view(page, "graphVotes")["reject"] == 2  # reject-c, in both votes
    # b. no judge in consensus: the panel says what happened instead of its placeholder
    judge = page.get_by_test_id("judge").inner_text().lower()
    assert "no judge analysis" not in judge and "no judge" in judge
    assert "2 of 3 accept" in judge and "no consensus" in judge
    # c. votes read as votes, not JSON
    cards = page.get_by_test_id("agent-card")
    assert not any('{"accept"' in cards.nth(i).inner_text() for i in range(cards.count()))
    reject = page.locator("[data-testid=agent-card][data-seat='reject-c']")
    assert "reject" in reject.get_by_test_id("vote").inner_text().lower()
    assert "objection: no" in reject.get_by_test_id("vote").inner_text().lower()
    # d. the synthesizer's calls on the timeline with their real time; no empty "Synthesis"
    rows = timeline_rows(page)
    assert "synthesis" not in rows, rows
    assert rows["candidate-1"][0].startswith("Candidate") and rows["candidate-2"][0].startswith("Revision")
    assert all(rows[k][1] not in ("0 ms", "—") for k in ("candidate-1", "candidate-2")), rows
    # e. the runs index counts the four rounds
    runs = httpx.get(f"{proxy.url}/chorus/v1/runs", params={"limit": 50}, timeout=30,
                     headers={"Authorization": f"Bearer {KEY}"}).json()["runs"]
    assert next(r for r in runs if r["id"] == run_id)["rounds"] == 4
    # a finished run opened later replays to the same map
    page.goto(f"/chorus/ui/?run={run_id}")
    page.wait_for_function("window.chorusView && window.chorusView.status === 'done'", timeout=30_000)
    assert view(page, "graphNodes") == 5


def test_a_consensus_run_as_the_demo_shows_it(demo_page, demo):
    """fusion/consensus as shipped, on the demo (`chorus serve --demo`): drafts, critiques,
    one vote in which model-b rejects the candidate and the other two accept, a majority,
    so the candidate stands. The screenshot in docs/live-view.md."""
    page = demo_page
    sign_in(page, key=demo.key)
    page.get_by_test_id("bounty-input").fill("")
    start(page, "fusion/consensus", "Should we move to microservices?")
    watch(page)
    assert view(page, "status") == "done" and sorted(view(page, "rounds")) == [1, 2, 3]
    events = view(page, "events")
    votes = next(e["data"]["votes"] for e in events if e["type"] == "round_done" and e["data"].get("votes"))
    assert {seat: ballot["accept"] for seat, ballot in votes.items()} == \
        {"model-a": True, "model-b": False, "model-c": True}
    assert view(page, "graphNodes") == 4 and view(page, "graphVotes") == {"accept": 2, "reject": 1}
    judge = page.get_by_test_id("judge").inner_text().lower()
    assert "consensus" in judge and "2 of 3 accept" in judge
    reject = page.locator("[data-testid=agent-card][data-seat='model-b']")
    assert "reject" in reject.get_by_test_id("vote").inner_text().lower()
    charts = view(page, "chartPoints")
    assert charts["accepted"] == charts["agreement"] == 3
    assert "67% accepted" in page.get_by_test_id("map-agreement").inner_text()  # the vote beside the map
    page.wait_for_function("window.chorusView.graphSpread.settled", timeout=SETTLE_MS)  # the camera's fit is done
    page.wait_for_timeout(500)  # let the graph's last frame settle
    # the page down to the timeline: map, analytics, cards with votes, the panel's vote, timeline
    bottom = page.evaluate("(() => { const r = document.querySelector('[data-testid=timeline]').closest('section')"
                           ".getBoundingClientRect(); return r.bottom + window.scrollY + 12; })()")
    page.screenshot(path=str(SCREENSHOT.with_name("live-view-consensus.png")), full_page=True,
                    clip={"x": 0, "y": 0, "width": 1440, "height": bottom})


PROFILES_SHOT = ROOT / "docs" / "live-view-profiles.png"


def profile_rows(page):
    return {r["name"]: r for r in page.eval_on_selector_all(
        "[data-testid=profile-row]", "rs => rs.map(r => ({...r.dataset, text: r.innerText}))")}


def save_profile(page, block, name=None):
    """Save `block` (a dict, written as JSON: YAML reads it too; or the editor's text as is)."""
    if name is not None:
        page.get_by_test_id("profile-name").fill(name)
    page.get_by_test_id("profile-editor").fill(block if isinstance(block, str) else json.dumps(block, indent=2))
    page.get_by_test_id("profile-save").click()
    page.wait_for_function("window.chorusView.profiles.message !== null", timeout=20_000)
    return page.get_by_test_id("profile-message").inner_text()


def test_the_profiles_panel_lists_every_profile_and_edits_the_stored_ones(demo_page, demo):
    """Issue 26, point 5, on the demo (the master key is LiteLLM's proxy admin): the shipped
    config's profiles listed read-only at version 0; a stored one created in the page's
    editor (a bad block refused, naming the field, nothing stored), picked and run from the
    page, changed (its version up; a stale save refused) and deleted. The docs' screenshot
    (docs/live-view-profiles.png)."""
    page = demo_page
    admin = {"Authorization": f"Bearer {demo.key}"}
    sign_in(page, key=demo.key)
    page.wait_for_function("window.chorusView.profiles.status === 'ok'", timeout=30_000)
    rows = profile_rows(page)
    assert {"research", "debate", "consensus", "market"} <= set(rows)
    assert all(r["source"] == "config" and r["version"] == "0" and "read-only" in r["text"] for r in rows.values())
    page.locator("[data-testid=profile-row][data-name=research] button", has_text="View").click()
    assert page.get_by_test_id("profile-editor").get_attribute("readonly") is not None
    assert page.get_by_test_id("profile-save").count() == 0  # read-only: nothing to save
    # shown as litellm_config.yaml holds it (YAML, not JSON)
    shown = page.get_by_test_id("profile-editor").input_value()
    assert shown.startswith(("router:", "panel:", "aggregator:", "debate:")) and "\n  members:" in shown, shown

    page.get_by_test_id("profile-new").click()
    broken = save_profile(page, "panel:\n  members: [model-a, model-b\naggregator: {}\n", name="quick")
    assert "not valid YAML (line" in broken, broken  # read in the page: nothing sent
    quick = {"panel": {"members": ["model-a", "fusion/debate"]}, "aggregator": {"judge": "judge", "synthesizer": "writer"}}
    refused = save_profile(page, quick)
    assert "HTTP 400" in refused and "panel.members[1].model: 'fusion/debate' is a fusion model" in refused
    assert httpx.get(f"{demo.url}/chorus/v1/profiles/quick", headers=admin).status_code == 404  # nothing stored
    quick["panel"]["members"] = ["model-a", "model-b"]
    written = ("# a quick two-seat panel\npanel:\n  members:\n    - model-a\n    - model-b  # the second seat\n"
               "aggregator:\n  judge: judge\n  synthesizer: writer\n")
    assert "Saved fusion/quick: version 1" in save_profile(page, written)  # YAML, as the config file has it
    stored = httpx.get(f"{demo.url}/chorus/v1/profiles/quick", headers=admin).json()["profile"]
    assert stored["panel"]["members"] == ["model-a", "model-b"] and stored["aggregator"]["synthesizer"] == "writer"
    assert profile_rows(page)["quick"]["source"] == "store" and profile_rows(page)["quick"]["version"] == "1"
    # served by the demo's one worker before the answer: its rollout is complete, as each config profile's
    rollouts = page.eval_on_selector_all("[data-testid=profile-rollout]", "cs => cs.map(c => [c.innerText, c.dataset.complete])")
    assert len(rollouts) == len(profile_rows(page)) and set(map(tuple, rollouts)) == {("1/1", "true")}, rollouts

    # picked and run from the page like any profile: the run names the version it ran
    page.get_by_test_id("bounty-input").fill("")
    start(page, "fusion/quick", "Should we rewrite our backend in Rust?")
    assert watch(page)[-1][0] == "done"
    assert view(page, "events")[0]["data"]["profile_version"] == 1 and "v1" in page.locator("#summary").inner_text()

    page.locator("[data-testid=profile-row][data-name=quick] button", has_text="Edit").click()
    assert "editing version 1" in page.get_by_test_id("profile-form").inner_text()
    quick["panel"]["members"] = ["model-a", "model-b", "model-c"]
    assert "Saved fusion/quick: version 2" in save_profile(page, quick)
    page.locator("[data-testid=profile-row][data-name=quick] button", has_text="Edit").click()
    other = httpx.put(f"{demo.url}/chorus/v1/profiles/quick", headers=admin,  # another admin, meanwhile
                      json={"version": 2, "profile": {**quick, "debate": {"protocol": "council"}}})
    assert other.status_code == 200 and other.json()["version"] == 3
    stale = save_profile(page, quick)
    assert "HTTP 409" in stale and "version: 2 is stale: profile 'quick' is at version 3 now" in stale
    page.locator("[data-testid=profile-row][data-name=quick] button", has_text="Edit").click()  # read it again
    assert profile_rows(page)["quick"]["version"] == "3" and "council" in profile_rows(page)["quick"]["text"]
    panel = page.get_by_test_id("profiles")
    panel.scroll_into_view_if_needed()
    panel.screenshot(path=str(PROFILES_SHOT))

    delete = page.locator("[data-testid=profile-row][data-name=quick] [data-testid=profile-delete]")
    delete.click()
    assert delete.inner_text() == "Confirm delete" and "quick" in profile_rows(page)  # one click deletes nothing
    delete.click()
    page.wait_for_function("!document.querySelector('[data-testid=profile-row][data-name=quick]')", timeout=20_000)
    assert "Deleted fusion/quick (its version 4 is kept" in page.get_by_test_id("profile-message").inner_text()
    page.wait_for_function("![...document.querySelectorAll('[data-testid=model-select] option')]"
                           ".some(o => o.value === 'fusion/quick')", timeout=20_000)


def test_the_profiles_panel_needs_a_proxy_admins_key(page):
    sign_in(page)  # sk-team-a: an ordinary user's key
    page.wait_for_function("window.chorusView.profiles.status === 'forbidden'", timeout=30_000)
    assert "proxy-admin key" in page.get_by_test_id("profiles-locked").inner_text()
    assert page.get_by_test_id("profile-row").count() == 0
    assert view(page, "status") != "unauthorized"  # the rest of the page works for this key
