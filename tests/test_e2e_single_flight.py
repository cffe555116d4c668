"""A debate id is single-flight (issue 23, point 2): identical paid requests sent at once
with one `chorus.debate_id`, spread over two proxy workers sharing one store, run the
fusion once, are charged once, and all answer the same (the duplicates wait for the
first run and replay it). The session's two-worker SQLite proxy (tests/conftest.py,
`sqlite_workers`) on its own fake upstream, slow enough that the duplicates overlap the
run; its `/stats` is read before and after, so only this test's calls are counted."""

import concurrent.futures
import time

import httpx
import litellm
import openai
import pytest

from tests.conftest import line_count, whole_lines

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]
BOUNTY = {"amount": 1000, "currency": "USD"}
ONE_RUN = {"model-a": 1, "model-b": 1, "model-c": 1, "judge": 1, "writer": 1}  # fusion/research


@pytest.fixture
def service(sqlite_workers):
    return sqlite_workers


def stats(service) -> dict:
    return httpx.get(f"{service.upstream}/stats", timeout=10).json()


def calls_since(before: dict, after: dict) -> dict:
    return {m: n - before.get(m, 0) for m, n in after.items() if n != before.get(m, 0)}


def ask(service, debate_id, stream=False, messages=HARD, wait=None):
    """(answer, chorus extension) of one request; streamed ones are read to the end."""
    c = openai.OpenAI(base_url=f"{service.url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)
    chorus = {"debate_id": debate_id, **({} if wait is None else {"wait": wait})}
    body = {"bounty": BOUNTY, "chorus": chorus}
    if not stream:
        resp = c.chat.completions.create(model="fusion/research", messages=messages, extra_body=body)
        return resp.choices[0].message.content, resp.model_extra["chorus"]
    text, ext = [], None
    for chunk in c.chat.completions.create(model="fusion/research", messages=messages, stream=True, extra_body=body):
        if chunk.choices and chunk.choices[0].delta.content:
            text.append(chunk.choices[0].delta.content)
        ext = ((chunk.model_extra or {}).get("provider_specific_fields") or {}).get("chorus") or ext
    return "".join(text), ext


def fusion_records(service, offset: int, count: int, wait: float = 15.0) -> list[dict]:
    """The spend log's `fusion/research` lines after line `offset`, waiting for `count`."""
    deadline = time.monotonic() + wait
    while True:
        found = [r for r in whole_lines(service.spend)[offset:] if r.get("model_group") == "fusion/research"]
        if len(found) >= count or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.parametrize("n", [5, 50])
def test_concurrent_duplicates_run_once_are_charged_once_and_answer_alike(service, n):
    debate_id = f"single-flight-{n}"
    offset, before = line_count(service.spend), stats(service)
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:  # every other one streamed
        futures = [pool.submit(ask, service, debate_id, stream=i % 2 == 1) for i in range(n)]
        concurrent.futures.wait(futures)
    elapsed = time.monotonic() - started
    # Every request's outcome, and the proxy's log, when one failed (CI saw one fail once).
    failed = [f"request {i}: {f.exception()!r}" for i, f in enumerate(futures) if f.exception()]
    assert not failed, "\n".join(failed + ["proxy log:", service.log.read_text()[-4000:]])
    results = [f.result() for f in futures]
    assert calls_since(before, stats(service)) == ONE_RUN  # one run's upstream calls
    answers = {text for text, _ in results}
    receipts = {ext["settlement"]["receipt_id"] for _, ext in results}
    assert len(answers) == 1 and answers != {""} and len(receipts) == 1
    assert sum(not ext.get("replayed") for _, ext in results) == 1  # one ran, the others replayed it
    assert sum(not ext["settlement"]["duplicate"] for _, ext in results) == 1
    records = fusion_records(service, offset, n)
    assert len(records) == n
    charged = [r for r in records if (r["response_cost"] or 0) > 0]
    assert len(charged) == 1 and charged[0]["team_id"] == "team-a"  # one charge, to the team
    assert elapsed < 30


def running(service, before: dict, pool, *args, **kwargs):
    """Submit a request; return its future once its panel reached the upstream (it holds the claim)."""
    future = pool.submit(ask, service, *args, **kwargs)
    deadline = time.monotonic() + 20
    while stats(service).get("model-a", 0) == before.get("model-a", 0) and time.monotonic() < deadline:
        time.sleep(0.05)
    return future


def test_a_duplicate_that_will_not_wait_gets_409_while_the_first_runs(service):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = running(service, stats(service), pool, "single-flight-nowait")
        with pytest.raises(openai.APIStatusError) as err:
            ask(service, "single-flight-nowait", wait=False)
        assert err.value.status_code == 409 and "still running" in err.value.message
        assert int(err.value.response.headers["retry-after"]) >= 1
        text, _ = first.result()
    again_text, again = ask(service, "single-flight-nowait", wait=False)  # finished: replayed at once
    assert again["replayed"] and again_text == text


def test_a_duplicate_with_a_different_request_is_409_while_the_first_runs(service):
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        first = running(service, stats(service), pool, "single-flight-differs")
        with pytest.raises(openai.APIStatusError) as err:
            ask(service, "single-flight-differs", messages=[{"role": "user", "content": "Another question?"}])
        assert err.value.status_code == 409 and "different request" in err.value.message
        assert first.result()[1]["settlement"]["status"] == "settled"


# -- in process (the handler, no proxy): a crashed holder, and one process's duplicates --------
KEYED = {"metadata": {"user_api_key_hash": "h", "user_api_key_team_id": "team-a"}}


def direct(handler, method, litellm_params=KEYED, **params):
    """Call the handler as LiteLLM does (positional args), without LiteLLM in between."""
    from litellm.types.utils import ModelResponse

    return getattr(handler, method)("test", HARD, None, {}, ModelResponse(), print, None, None, None, params,
                                    litellm_params=litellm_params)


def handler_on(tmp_path):
    from chorus_litellm.gateway.provider import FusionHandler
    from chorus_litellm.storage.sqlite_backend import SQLiteStore
    from chorus_litellm.testing import FakeCompleter
    from tests.factories import profile

    fake = FakeCompleter()
    return FusionHandler({"test": profile()}, completer=fake, store=SQLiteStore(tmp_path / "db.sqlite3")), fake


async def test_a_crashed_holders_claim_expires_and_the_duplicate_waiting_on_it_runs(tmp_path):
    from chorus_litellm.core.stages.bounty import idempotency_hash

    handler, fake = handler_on(tmp_path)
    body = {"chorus": {"debate_id": "crashed-1"}}
    req = handler._prepare("test", HARD, {"extra_body": body}, KEYED, stream=False)
    digest = idempotency_hash(req.profile_name, req.messages, req.bounty)
    crashed = await handler.store.claim(req.owner, req.debate_id, digest, lease_s=0.8)  # never renewed
    with pytest.raises(litellm.BadRequestError, match="still running") as err:
        await direct(handler, "acompletion", extra_body={"chorus": {**body["chorus"], "wait": False}})
    assert err.value.status_code == 409 and err.value.headers["retry-after"] == "2" and not fake.calls
    started = time.monotonic()
    resp = await direct(handler, "acompletion", extra_body=body)
    assert time.monotonic() - started >= 0.5 and fake.calls and not resp.chorus.get("replayed")
    assert not await handler.store.renew(crashed, 30)  # taken over, and released when the run ended
    assert (await handler.store.claim(req.owner, req.debate_id, digest, lease_s=1)).mine


async def test_one_processs_concurrent_duplicates_streamed_or_not_run_once(tmp_path):
    import asyncio

    handler, fake = handler_on(tmp_path)
    body = {"chorus": {"debate_id": "local-dups"}}

    async def streamed():
        chunks = [c async for c in direct(handler, "astreaming", extra_body=body)]
        ext = next(c.provider_specific_fields["chorus"] for c in chunks if getattr(c, "provider_specific_fields", None))
        return "".join(c.choices[0].delta.content or "" for c in chunks), ext, chunks[-2].usage or chunks[-1].usage

    async def plain():
        resp = await direct(handler, "acompletion", extra_body=body)
        return resp.choices[0].message.content, resp.chorus, resp.usage

    results = await asyncio.gather(*(streamed() if i % 2 else plain() for i in range(6)))
    assert len(fake.calls) == len({c.model for c in fake.calls}) == 5  # one run: 3 members, judge, writer
    assert len({text for text, _, _ in results}) == 1
    replayed = [usage for _, ext, usage in results if ext.get("replayed")]
    assert len(replayed) == 5 and all(u is None or u.total_tokens == 0 for u in replayed)  # charged nothing
