import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# In-process handlers keep transcripts in SQLite: never in the working tree.
os.environ["CHORUS_DB_PATH"] = os.path.join(__import__("tempfile").mkdtemp(prefix="chorus-test-"), "chorus.sqlite3")

import json
import time
import warnings
from pathlib import Path

import pytest

# A warning our own code raises is an error in every test (tests/run passes -p no:warnings,
# which silences pytest's capture of other packages' warnings, not this filter).
OURS = r"chorus_litellm(\..*)?$"
warnings.filterwarnings("error", module=OURS)

from tests.servers import ROOT, fake_upstream, fusion_entry, litellm_proxy, model_entry

MODELS = ["model-a", "model-b", "model-c", "slow-c", "fail500-b", "fail500-a", "fail429-b",
          "hang-c", "filter-b", "reject-c", "judge", "badjson-judge", "writer", "fail500-writer", "drip-writer",
          "midfail-writer"]


def fusion(members, judge="judge", writer="writer", **panel):
    # Grace after the quorum: a flat second (ratio 10), not the default 0.2 x the quorum's
    # time. The fake upstream answers in ~20 ms, so 0.2 x that cut healthy members whenever a
    # loaded CI box spread their answers a little (four flaky tests had that one cause).
    return {"router": {"policy": "always_fuse", "single_model": "model-a"},
            "panel": {"members": members, "min_quorum": 2, "timeout_s": 5, "quorum_grace_s": 1.0,
                      "quorum_grace_ratio": 10, **panel},
            "aggregator": {"judge": judge, "synthesizer": writer}}


def no_retries(entry: dict) -> dict:
    entry["litellm_params"]["num_retries"] = 0
    return entry


# The end-to-end proxies register the plugin as `chorus` (the name the docs recommend);
# clients still ask for `fusion/<profile>` (the model_name). The shipped config keeps
# `fusion` (tests/test_serve.py, tests/test_realmodel.py).
E2E_PROVIDER = "chorus"


def e2e_entry(name: str, chorus: dict) -> dict:
    return fusion_entry(name, chorus, provider=E2E_PROVIDER)


def e2e_config(upstream: str) -> dict:
    auto = fusion(["model-a", "model-b", "model-c"])
    auto["router"] = {"policy": "auto", "single_model": "model-a", "threshold": 0.5}
    return {
        "model_list": [
            *(no_retries(model_entry(m, upstream)) for m in MODELS),
            # a model that searches the web (its deployment says so; the fake cites a source)
            {**no_retries(model_entry("search-a", upstream)),
             "model_info": {"input_cost_per_token": 1e-6, "output_cost_per_token": 2e-6, "supports_web_search": True}},
            e2e_entry("research", fusion(["model-a", "model-b", "model-c"])),
            e2e_entry("flaky", fusion(["model-a", "fail500-b", "model-c"])),
            e2e_entry("down", fusion(["fail500-a", "fail429-b", "hang-c"], timeout_s=1)),
            # the grace that cuts hang-c is the product's own rule (0.2 x the quorum's time, at most 0.3 s)
            e2e_entry("straggler", fusion(["model-a", "model-b", "hang-c"], quorum_grace_s=0.3, quorum_grace_ratio=0.2)),
            e2e_entry("auto", auto),
            e2e_entry("badjudge", fusion(["model-a", "model-b"], judge="badjson-judge")),
            e2e_entry("nosynth", fusion(["model-a", "model-b"], writer="fail500-writer")),
            e2e_entry("debate", {**fusion(["model-a", {"model": "model-b", "persona": "skeptic"}, "model-c"]),
                                    "debate": {"protocol": "debate", "max_rounds": 3}}),
            e2e_entry("debate2", {**fusion(["model-a", "model-b", "model-c"]),
                                     "debate": {"protocol": "debate", "max_rounds": 2, "agreement": 1.0,
                                                "answer_agreement": 1.0,
                                                "echo": {"copy_similarity": 1.0}}}),
            # debate2 where every seat must answer every round (the eval test measures per-round majorities)
            e2e_entry("debate-all", {**fusion(["model-a", "model-b", "model-c"], min_quorum=3),
                                        "debate": {"protocol": "debate", "max_rounds": 2, "agreement": 1.0,
                                                   "answer_agreement": 1.0,
                                                   "echo": {"copy_similarity": 1.0}}}),
            e2e_entry("consensus", {**fusion(["model-a", "model-b", "model-c"]),
                                       "debate": {"protocol": "consensus", "max_rounds": 2}}),
            # Its browser test draws all 50 answers: CI once ended a run with fewer (stragglers
            # cut under load), so every seat is waited for here.
            e2e_entry("wide", {**fusion([["model-a", "model-b", "model-c"][i % 3] for i in range(10)], min_quorum=5,
                                        timeout_s=30, quorum_grace_s=30),
                                  "debate": {"protocol": "debate", "max_rounds": 5, "adaptive_stop": False,
                                             "echo": {"copy_similarity": 1.0}}}),
            e2e_entry("half", fusion(["model-a", "fail500-b", "fail429-b"])),
            # Its test reads every member's vote: on a loaded CI box the default 0.3 s grace
            # once cut reject-c's as a straggler (consensus "reached" on two votes).
            e2e_entry("consensus-seed", {**fusion(["model-a", "model-b", "reject-c"], quorum_grace_s=10,
                                                  quorum_grace_ratio=10),
                                            "debate": {"protocol": "consensus", "revote": "dissenters",
                                                       "max_rounds": 2, "strict_unanimity": True}}),
            e2e_entry("layers", {**fusion(["model-a", "model-b", "model-c"]),
                                    "aggregator": {"judge": "judge", "synthesizer": "writer", "layers": 2}}),
            e2e_entry("search", {**fusion(["search-a", "model-b"]), "panel": {
                "members": ["search-a", "model-b"], "min_quorum": 2, "timeout_s": 5, "web_search": True}}),
            e2e_entry("agent", {**fusion(["model-a", "model-b", "model-c"]),
                                "router": {"policy": "always_fuse", "tools": "fuse"}}),
            e2e_entry("drip", fusion(["model-a", "model-b"], writer="drip-writer")),
            e2e_entry("midfail", fusion(["model-a", "model-b"], writer="midfail-writer")),
            e2e_entry("single-down", {**fusion(["model-a", "model-b"]),
                                         "router": {"policy": "never_fuse", "single_model": "fail500-a"}}),
            # issue 26's options (tests/test_e2e_fusion_options.py): a lost quorum answered by
            # the single model, the council protocol, the consult gate
            # (its seats all fail, so no healthy seat's reputation on this shared proxy is touched)
            e2e_entry("fallback", {**fusion(["fail500-b", "fail500-a"], on_quorum_failure="single_model"),
                                      "router": {"policy": "always_fuse", "single_model": "model-c"}}),
            e2e_entry("council", {**fusion(["model-a", "model-b", "model-c"]), "debate": {"protocol": "council"}}),
            e2e_entry("consult", {**fusion(["model-a", "model-b", "model-c"]),
                                     "router": {"policy": "consult", "single_model": "model-a"}}),
            # callback_url refused by the profile (tests/test_e2e_webhooks.py)
            e2e_entry("nohooks", {**fusion(["model-a", "model-b"]), "webhooks": {"enabled": False}}),
            # asked for as chorus/quiz (the plugin's own prefix, not fusion/): on a multiple-choice
            # question the first wave (a, b) settles the vote, c is never asked (early stop), and
            # the writer's letter is no member's (the vote guard's draft stands): tests/test_browser.py
            {**e2e_entry("quiz", fusion(["model-a", "model-b", "model-c"])), "model_name": "chorus/quiz"},
        ],
        # The Router retries twice by default here, but each inner deployment says
        # num_retries: 0 (failures surface at once). A fusion error must not be retried:
        # the missed-quorum test checks that no member is called twice.
        "router_settings": {"num_retries": 2},
        "litellm_settings": {
            "custom_provider_map": [{"provider": E2E_PROVIDER, "custom_handler": "chorus_litellm.proxy_handler"}],
            "callbacks": ["proxy_support.spend_log"],
        },
        "general_settings": {"custom_auth": "proxy_support.user_api_key_auth",
                             "master_key": "sk-chorus-test-0f3c9a7e5b1d4c2a8e6f"},
    }


@pytest.fixture(scope="session")
def upstream():
    with fake_upstream(latency=0.02) as url:
        yield url


@pytest.fixture(scope="session")
def signing_key(tmp_path_factory):
    from chorus_litellm.settlement.signing import generate

    key = generate()
    path = tmp_path_factory.mktemp("keys") / "key.json"
    path.write_text(json.dumps(key))
    return {**key, "path": str(path)}


def proxy_env(workdir: Path, signing_key: dict, spend: Path) -> dict:
    return {"CHORUS_SPEND_LOG": str(spend), "CHORUS_SIGNING_KEY_FILE": signing_key["path"],
            "CHORUS_DB_PATH": str(workdir / "chorus.sqlite3"), "CHORUS_OUTBOX_PATH": str(workdir / "outbox.sqlite3")}


# -- the session's shared proxies ---------------------------------------------------------
# Each LiteLLM proxy start imports litellm[proxy] in every worker (10-20 s of CPU here), so
# the end-to-end files share a few proxies, each test isolated by its own debate ids, keys
# and pools (and counting upstream calls or spend lines as differences):
#   proxy          one worker, SQLite: most of test_e2e_*, test_eval, test_browser, the
#                  webhooks (CHORUS_WEBHOOK_ALLOWLIST 127.0.0.1/32, `fusion/nohooks`), and
#                  test_e2e_retries's deployments without num_retries (`retry-*`, its own)
#   sqlite_workers two workers, SQLite, on their own slow fake upstream (0.3 s a call, so
#                  duplicates overlap a run): test_e2e_workers, test_e2e_single_flight
#   redis_proxy    two workers, Redis, admitting peers (open, 127.0.0.1/32, a sync pass
#                  every 0.5 s, stored profiles' too) with the marketplace's profiles:
#                  test_e2e_market, profiles created at run time (test_e2e_profiles), the
#                  events' two workers, a store outage (test_e2e_workers, stops Redis and
#                  starts it again: last), the first half of a Redis restart (test_e2e_settlement)
# A proxy whose subject is the process itself (restarts, metrics counted from zero, other
# peer admission rules, replicas) still starts its own.
def retry_entries(upstream: str) -> list[dict]:
    from tests.test_e2e_retries import entries

    return entries(upstream)


def session_proxy(url: str, log: Path, workdir: Path, env: dict, spend: Path, **more):
    return type("Proxy", (), {"url": url, "log": log, "spend": spend, "workdir": workdir, "env": env, **more})


@pytest.fixture(scope="session")
def proxy(upstream, tmp_path_factory, signing_key):
    workdir = tmp_path_factory.mktemp("proxy")
    spend = workdir / "spend.jsonl"
    spend.touch()
    env = {**proxy_env(workdir, signing_key, spend), "CHORUS_WEBHOOK_ALLOWLIST": "127.0.0.1/32"}
    config = e2e_config(upstream)
    config["model_list"] += retry_entries(upstream)
    with litellm_proxy(config, workdir, env=env, command="litellm") as (url, log):
        yield session_proxy(url, log, workdir, env, spend)


@pytest.fixture(scope="session")
def sqlite_workers(signing_key, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("sqlite-workers")
    spend = workdir / "spend.jsonl"
    spend.touch()
    env = {**proxy_env(workdir, signing_key, spend), "CHORUS_OUTBOX_FLUSH_INTERVAL_S": "0.5"}
    with fake_upstream(latency=0.3) as slow, \
            litellm_proxy(e2e_config(slow), workdir, env=env, workers=2) as (url, log):
        yield session_proxy(url, log, workdir, env, spend, upstream=slow)


PEER_SYNC_S = 0.5  # redis_proxy's peer sync pass per worker (CHORUS_PEER_SYNC_S; 2 s by default)
PROFILE_SYNC_S = 0.5  # and its stored-profiles pass (CHORUS_PROFILE_SYNC_S; 2 s by default)


def redis_config(upstream: str) -> dict:
    """e2e_config and the marketplace's profiles, drawing seats from pool "gpu" (test_e2e_market)."""
    config = e2e_config(upstream)
    pool = {"aggregator": {"judge": "judge", "synthesizer": "writer"}}
    config["model_list"] += [
        e2e_entry("market", {**pool, "panel": {"pool": "gpu", "seats": 3, "min_quorum": 2, "timeout_s": 20,
                                                   "quorum_grace_s": 10, "quorum_grace_ratio": 10}}),
        e2e_entry("market-mixed", {**pool, "panel": {"members": ["model-a"], "pool": "gpu", "seats": 1,
                                                         "min_quorum": 2}}),
        e2e_entry("market-big", {**pool, "panel": {"pool": "gpu", "seats": 5, "min_quorum": 5}}),
    ]
    return config


@pytest.fixture(scope="session")
def redis_proxy(upstream, redis_server, signing_key, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("redis-proxy")
    spend = workdir / "spend.jsonl"
    spend.touch()
    env = {**proxy_env(workdir, signing_key, spend), "CHORUS_STORE": "redis", "CHORUS_REDIS_URL": redis_server.url,
           "CHORUS_OUTBOX_FLUSH_INTERVAL_S": "0.5", "CHORUS_PEER_ADMISSION": "open",
           "CHORUS_PEER_URL_ALLOWLIST": "127.0.0.1/32", "CHORUS_PEER_AWAY_AFTER_S": "3",
           "CHORUS_PEER_SYNC_S": str(PEER_SYNC_S), "CHORUS_PROFILE_SYNC_S": str(PROFILE_SYNC_S)}
    with litellm_proxy(redis_config(upstream), workdir, env=env, workers=2) as (url, log):
        yield session_proxy(url, log, workdir, env, spend, workers=2)


# The demo: the shipped litellm_config.yaml behind a real proxy, its 127.0.0.1:8001 api_base
# pointed at the demo's cast (the fake upstream with `--cast`, as `chorus serve --demo` runs
# it), at 0.15 s a call (members at their own pace) and about 100 streamed words a second:
# slow enough that a browser sees the rounds arrive, fast enough for the suite.
# tests/test_e2e_readme.py runs the README's examples against it, tests/test_browser.py
# the page (and the docs' screenshots a user can reproduce with the shipped config).
DEMO_KEY = "sk-chorus-demo"  # the shipped config's master key


@pytest.fixture(scope="session")
def demo(tmp_path_factory, signing_key):
    import yaml

    workdir = tmp_path_factory.mktemp("demo")
    with fake_upstream(latency=0.15, token_delay=0.01, cast=True) as cast:
        shipped = (ROOT / "litellm_config.yaml").read_text().replace("http://127.0.0.1:8001", cast)
        (workdir / "litellm_config.yaml").write_text(shipped)  # what the SDK example reads from its folder
        env = {"CHORUS_DB_PATH": str(workdir / "chorus.sqlite3"), "CHORUS_SIGNING_KEY_FILE": signing_key["path"]}
        with litellm_proxy(yaml.safe_load(shipped), workdir / "proxy", env=env) as (url, _log):
            yield type("Demo", (), {"url": url, "workdir": workdir, "env": env, "key": DEMO_KEY})


def whole_lines(path: Path) -> list[dict]:
    """A JSON-lines file's records, its whole lines only: a proxy worker may be half-way
    through appending the last one (CI once read it: "Unterminated string")."""
    text = path.read_text()
    return [json.loads(line) for line in text[: text.rfind("\n") + 1].splitlines() if line.strip()]


def wait_for(predicate, timeout: float = 20.0, what: str = "condition", every: float = 0.1):
    """`predicate()`'s first truthy value, polled every `every` s; an AssertionError naming
    `what` after `timeout` s. What a test waits on is state the system shows, never a sleep."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def wait_drawable(url: str, key: str, pool: str, peer_ids, workers: int = 1, timeout: float = 30.0) -> dict:
    """The pool view once every peer in `peer_ids` is live and a deployment in the Routers
    of at least `workers` workers (its `drawn_by`, published by each worker's sync pass
    after the peer's probe answered), so a run on any of them may seat it. Waited for,
    never slept: on a loaded machine the passes and probes run late."""
    import httpx

    def ready() -> dict | None:
        view = httpx.get(f"{url}/chorus/v1/peers", params={"pool": pool}, headers={"Authorization": f"Bearer {key}"},
                         timeout=10).json()
        listed = {p["peer_id"]: p for p in view["peers"]}
        drawn = all(listed.get(i, {}).get("state") == "live" and listed[i]["drawn_by"] >= workers for i in peer_ids)
        return view if drawn else None

    return wait_for(ready, timeout, f"{list(peer_ids)} live and drawn by {workers} worker(s)")


def line_count(path: Path) -> int:
    """How many whole lines a file has (an offset for `whole_lines(path)[offset:]`)."""
    return path.read_text().count("\n")


def spend_records(path: Path, call_id: str | None = None, wait: float = 10.0, count: int = 1) -> list[dict]:
    """Spend-log lines (optionally of one call id), waiting for async logging to land."""
    deadline = time.monotonic() + wait
    while True:
        records = whole_lines(path)
        if call_id is not None:
            records = [r for r in records if r["call_id"] == call_id]
        if len(records) >= count or time.monotonic() > deadline:
            return records
        time.sleep(0.1)


class RedisServer:
    """A real redis-server on 127.0.0.1 (apt package redis-server), persisting to `dir`."""

    def __init__(self, workdir: Path) -> None:
        import shutil

        from tests.servers import free_port

        self.binary = shutil.which("redis-server")
        if self.binary is None:
            raise RuntimeError("redis-server is not installed: apt-get install -y redis-server (see README)")
        self.dir, self.port, self.proc = workdir, free_port(), None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import subprocess

        import redis

        self.proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.dir),
             "--appendonly", "yes", "--appendfsync", "always", "--save", ""],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(self.url).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        from tests.servers import stop

        if self.proc is not None:
            stop(self.proc)
            self.proc = None


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


def pytest_report_header(config):
    import importlib.metadata

    return f"litellm {importlib.metadata.version('litellm')}"


def pytest_sessionstart(session):
    """Distil the default static embedding model before any proxy starts, as `chorus serve`
    does: once per machine (~30 s, then cached), so no proxy's first request waits for it."""
    from chorus_litellm.gateway.embeddings import STATIC, distilled

    started = time.monotonic()
    folder = distilled(STATIC)
    print(f"\nstatic embedding model {STATIC}: {folder} ({time.monotonic() - started:.1f} s)")


# -- what the floor run (the oldest LiteLLM, README's test command) leaves out ----------------
# Modules whose code never reaches LiteLLM: the stages against the scripted completer, the
# store, signing, settlement, peers' rules, the docs, and the peer CLI against a scripted
# proxy. They cannot differ between LiteLLM releases, so they run once, on the newest
# (marked `newest_only`; the floor run deselects them with -m "not newest_only"), as do
# the tests below, whose subject is this package's own store, CLI or workers (restarts,
# a store outage, the demo's peers, two of `chorus serve`'s three signal variants); the
# same paths through the proxy run on both ends. Two replicas behind haproxy
# (test_e2e_replicas, 100-130 s here) run on the newest only, to keep CI short: their subject is
# the store shared across processes (it passed on the floor too when it was added). The
# embedding models (test_embeddings, 40 s of CPU) are sentence-transformers and model2vec.
NEWEST_ONLY = {"test_geometry", "test_draw", "test_signing", "test_settlement", "test_echo_extract",
               "test_reputation", "test_netguard", "test_docs", "test_settle", "test_ledger", "test_store",
               "test_peers", "test_runlog", "test_judge", "test_panel", "test_debate", "test_consensus",
               "test_pipeline", "test_synthesis", "test_budget", "test_request", "test_router", "test_peer_cli",
               "test_webhooks", "test_eventlog", "test_e2e_replicas", "test_embeddings", "test_fake_upstream"}
NEWEST_ONLY_TESTS = ("[sigterm]", "[sigint-to-a-background-serve]", "test_the_demo_pays_two_peers_joined_from_the_command_line",
                     "test_redis_store_survives_a_proxy_restart", "test_a_pending_webhook_survives_a_proxy_restart",
                     "test_a_store_outage_mid_requests_loses_no_receipt",
                     "test_two_workers_on_redis_serve_any_run_to_any_viewer")


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
        if module in NEWEST_ONLY or item.nodeid.endswith(NEWEST_ONLY_TESTS):
            item.add_marker(pytest.mark.newest_only)


# -- each tier's time, printed at the end of the run (CI reads it) ----------------------------
TIERS = {"test_browser": "browser", "test_realmodel": "real model", "test_eval": "end-to-end (proxy)",
         "test_serve": "end-to-end (proxy)"}
_tier_seconds: dict[str, float] = {}


def _tier(nodeid: str) -> str:
    module = nodeid.split("::")[0].rsplit("/", 1)[-1].removesuffix(".py")
    return TIERS.get(module, "end-to-end (proxy)" if module.startswith("test_e2e") else "unit and in-process")


def pytest_runtest_logreport(report):
    _tier_seconds[_tier(report.nodeid)] = _tier_seconds.get(_tier(report.nodeid), 0.0) + report.duration


def pytest_terminal_summary(terminalreporter):
    terminalreporter.write_sep("-", "time per tier (setup + call + teardown)")
    for tier, seconds in sorted(_tier_seconds.items(), key=lambda kv: -kv[1]):
        terminalreporter.write_line(f"{tier:24s} {seconds:7.1f} s")
