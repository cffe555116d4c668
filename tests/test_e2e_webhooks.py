"""callback_url webhooks through the real proxy: a signed summary reaches an allowlisted
local receiver and verifies with the keys the proxy serves; unsafe targets are refused
before any model is called; a pending webhook survives a proxy restart."""

import time

import httpx
import openai
import pytest

from chorus_litellm.settlement.signing import public_key_from
from chorus_litellm.settlement.signing import verify as verify_receipt
from chorus_litellm.observe.webhooks import verify
from tests.conftest import e2e_config, proxy_env
from tests.servers import litellm_proxy
from tests.test_webhooks import Receiver

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]


def config(upstream):
    return e2e_config(upstream)  # with `fusion/nohooks`, a profile that turns webhooks off


def env_for(workdir, signing_key):
    (workdir / "spend.jsonl").touch()
    return {**proxy_env(workdir, signing_key, workdir / "spend.jsonl"), "CHORUS_WEBHOOK_ALLOWLIST": "127.0.0.1/32"}


@pytest.fixture
def hooked(proxy):
    """The session's proxy: CHORUS_WEBHOOK_ALLOWLIST 127.0.0.1/32, as env_for sets it (tests/conftest.py)."""
    assert proxy.env["CHORUS_WEBHOOK_ALLOWLIST"] == "127.0.0.1/32"
    return proxy


def client(url):
    return openai.OpenAI(base_url=f"{url}/v1", api_key="sk-team-a", max_retries=0, timeout=60)


def keys(url):
    served = httpx.get(f"{url}/chorus/v1/keys", headers={"Authorization": "Bearer sk-team-a"}, timeout=10).json()
    return [public_key_from(k["public_key"]) for k in served["keys"]]


def wait_for(receiver, count, seconds=15.0):
    deadline = time.monotonic() + seconds
    while len(receiver.seen) < count and time.monotonic() < deadline:
        time.sleep(0.05)
    return receiver.seen


def test_a_paid_run_posts_its_signed_summary_and_receipt_to_the_callback(hooked):
    receiver = Receiver()
    try:
        resp = client(hooked.url).chat.completions.create(
            model="fusion/research", messages=HARD,
            extra_body={"callback_url": f"{receiver.url}/hook", "bounty": {"amount": 1000, "currency": "USD"},
                        "chorus": {"debate_id": "hook-paid-1"}})
        ((headers, body),) = wait_for(receiver, 1)
        assert verify(body, headers, keys(hooked.url)) and headers["X-Chorus-Event"] == "run.done"
        import json

        summary = json.loads(body)
        assert summary["debate_id"] == "hook-paid-1" and summary["answer"] == resp.choices[0].message.content
        assert summary["chorus"]["cost"] == resp.model_extra["chorus"]["cost"]
        assert verify_receipt(summary["receipt"], keys(hooked.url))
        assert summary["receipt"]["payload"]["receipt_id"] == resp.model_extra["chorus"]["settlement"]["receipt_id"]
    finally:
        receiver.close()


def test_a_failed_run_posts_its_error(hooked):
    receiver = Receiver()
    try:
        with pytest.raises(openai.APIStatusError):
            client(hooked.url).chat.completions.create(model="fusion/down", messages=HARD,
                                                       extra_body={"callback_url": f"{receiver.url}/hook"})
        ((headers, body),) = wait_for(receiver, 1)
        import json

        summary = json.loads(body)
        assert headers["X-Chorus-Event"] == "run.failed" and summary["status"] == 502
        assert summary["error"]["type"] == "QuorumError" and verify(body, headers, keys(hooked.url))
    finally:
        receiver.close()


@pytest.mark.parametrize(("url", "reason"), [
    ("http://10.0.0.7/hook", "private"), ("http://169.254.169.254/latest/meta-data", "metadata"),
    ("http://[::1]:8080/hook", "loopback"), ("file:///etc/passwd", "http and https"),
    ("http://127.0.0.2:1/x", "loopback"),  # loopback, but not the allowlisted 127.0.0.1/32
])
def test_unsafe_targets_are_a_400_before_any_model_is_called(hooked, upstream, url, reason):
    httpx.post(f"{upstream}/reset", timeout=10)
    with pytest.raises(openai.BadRequestError) as err:
        client(hooked.url).chat.completions.create(model="fusion/research", messages=HARD,
                                                   extra_body={"callback_url": url})
    assert "callback_url refused" in err.value.message and reason in err.value.message
    assert httpx.get(f"{upstream}/stats", timeout=10).json() == {}  # no model was called


def test_a_profile_can_turn_webhooks_off(hooked):
    with pytest.raises(openai.BadRequestError) as err:
        client(hooked.url).chat.completions.create(model="fusion/nohooks", messages=HARD,
                                                   extra_body={"callback_url": "https://example.com/hook"})
    assert "webhooks are turned off" in err.value.message


def test_a_pending_webhook_survives_a_proxy_restart(upstream, signing_key, tmp_path):
    receiver = Receiver(*[503] * 100)  # down until told otherwise
    env = {**env_for(tmp_path, signing_key), "CHORUS_OUTBOX_FLUSH_INTERVAL_S": "0.5"}
    try:
        with litellm_proxy(config(upstream), tmp_path / "first", env=env) as (url, _):
            client(url).chat.completions.create(model="fusion/research", messages=HARD,
                                                extra_body={"callback_url": f"{receiver.url}/hook",
                                                            "chorus": {"debate_id": "hook-restart"}})
            wait_for(receiver, 1)  # the first attempt failed (503): pending, backing off
        receiver.statuses.clear()  # the receiver recovers while the proxy is down
        attempts = len(receiver.seen)
        with litellm_proxy(config(upstream), tmp_path / "second", env=env) as (url, _):
            seen = wait_for(receiver, attempts + 1, seconds=30)  # no new request: the queue is the store
            assert len(seen) == attempts + 1
            ids = {h["X-Chorus-Webhook-Id"] for h, _ in seen}
            assert len(ids) == 1 and verify(seen[-1][1], seen[-1][0], keys(url))
    finally:
        receiver.close()
