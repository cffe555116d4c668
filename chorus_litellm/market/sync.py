"""Live peers as real LiteLLM deployments: each worker keeps its Router in step with the store.

Boundary: reads the peers in the store, writes the proxy's Router (`upsert_deployment` /
`delete_deployment`), and makes one tiny probe call per new peer. Every `interval_s`:

- a live peer (heartbeat within `away_after_s`) whose base URL still passes the SSRF
  rule (observe/netguard.py, resolved again: a name that now points somewhere private is
  dropped) and whose probe answered is a deployment named `peer/<peer id>`: the peer's
  model on its base URL through LiteLLM's OpenAI-compatible client, its own API key if it
  gave one, its `max_concurrency` as the deployment's `max_parallel_requests`, its price
  per token as the deployment's prices. Inner calls to a peer therefore get LiteLLM's
  timeouts, retries, cooldowns, logging and cost like any configured model.
- a peer that left, went away or fails the rule loses its deployment (the next sync
  after it comes back adds it again, with a new probe).
- a probe (`Say OK.`, 4 tokens, 10 s) runs once per registration before first use; a
  failed probe keeps the peer out and counts as a failed run in the peer's reputation.

Every connection to a peer (the probe and each call to its deployment) goes through the
SSRF guard's client (netguard.guarded_client: the address checked at connect time with
the same allowlist, so DNS rebinding is refused; a redirect is an error, never followed),
as an `openai.AsyncOpenAI` per deployment and event loop (`PeerClients`). LiteLLM's own
client for the provider would follow redirects, so the guarded one is handed to each call
by `PeerGuardHook`, a LiteLLM callback whose `async_pre_call_deployment_hook` (run inside
`litellm.acompletion`, after the Router picked the deployment, on every attempt) sets the
call's `client` for a deployment whose `model_info` names a `chorus_peer`. Fail closed: a
peer deployment with no guarded client here, or called for anything but a chat
completion, is refused instead of called.

Each pass also publishes this worker's calls in flight per peer and the peers its Router
holds (the pool view's `load` and `drawn_by`).

`available(pool)` is what the draw (core/stages/draw.py) may seat: the pool's peers live in
the store right now whose registration this worker's Router holds (deployed by the last
pass, at most `interval_s` ago; a peer that joined since waits for the next pass).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import peers
from ..core.ports import PeerRegistry, Reputation
from ..core.background import Periodic
from ..gateway.deployments import add, deployment_id, reconcile
from ..observe.netguard import Allowlist, Resolve, UnsafeURL, check_url, guarded_client

log = logging.getLogger("chorus_litellm")

PROBE = [{"role": "user", "content": "Say OK."}]

def deployment(record: dict) -> dict:
    """The Router deployment for a peer's registration (pure)."""
    params: dict[str, Any] = {"model": f"openai/{record['model']}", "api_base": record["base_url"],
                              "api_key": record.get("api_key") or "none",
                              "max_parallel_requests": record["max_concurrency"]}
    if record.get("price_per_token") is not None:
        params.update(input_cost_per_token=record["price_per_token"], output_cost_per_token=record["price_per_token"])
    return {"model_name": peers.model_name(record["peer_id"]), "litellm_params": params,
            # a new registration is a new deployment, probed anew
            "model_info": {"id": deployment_id("chorus-peer", record["peer_id"], record["registered_at"]),
                           "chorus_peer": record["peer_id"], "chorus_payee": record["payee"]}}


class PeerSyncStore(PeerRegistry, Reputation, Protocol):
    """The pool's peers and loads, and the reputation their calls earn."""


class PeerRefused(RuntimeError):
    """A call to a peer deployment the guard will not make (no guarded client for it here)."""


CHAT_CALLS = frozenset({"acompletion", "completion"})


CLOSE_AFTER_S = 120.0  # a removed peer's client outlives the calls already under way on it


async def _close_later(client: Any, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    await client.close()


class PeerClients:
    """The guarded `openai.AsyncOpenAI` of each peer deployment, by deployment id, one per
    event loop (an httpx pool belongs to the loop that uses it). `register` records what a
    client needs (base URL, key, allowlist); the client is made on first use in a loop."""

    def __init__(self) -> None:
        self._closing: set[asyncio.Task] = set()
        self.specs: dict[str, tuple[str, str, Allowlist, Resolve | None]] = {}
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Any]] = \
            weakref.WeakKeyDictionary()

    def register(self, dep: dict, urls: Allowlist, resolve: Resolve | None = None) -> None:
        params = dep["litellm_params"]
        spec = (params["api_base"], params["api_key"], urls, resolve)
        dep_id = dep["model_info"]["id"]
        if self.specs.get(dep_id) != spec:  # new, or changed: a client made from the old one is dropped
            self.specs[dep_id] = spec
            for clients in self._clients.values():
                clients.pop(dep_id, None)

    async def unregister(self, dep_id: str) -> None:
        """Forget the deployment: no new call gets its client. Its client in this loop is
        closed `CLOSE_AFTER_S` later, so calls already under way end as they would have
        (others go with their loop)."""
        self.specs.pop(dep_id, None)
        for loop, clients in list(self._clients.items()):
            client = clients.pop(dep_id, None)
            if client is not None and loop is asyncio.get_running_loop():
                task = asyncio.create_task(_close_later(client, CLOSE_AFTER_S))
                self._closing.add(task)
                task.add_done_callback(self._closing.discard)

    def client(self, dep_id: str) -> Any:
        """This loop's guarded client for the deployment; PeerRefused when it is not registered."""
        spec = self.specs.get(dep_id)
        if spec is None:
            raise PeerRefused(f"peer deployment {dep_id} has no guarded client in this process: call refused")
        clients = self._clients.setdefault(asyncio.get_running_loop(), {})
        if dep_id not in clients:
            import openai

            base_url, api_key, urls, resolve = spec
            # Each call sets its own timeout; LiteLLM sets max_retries (its own retries apply).
            # Any: newer openai releases type http_client by their own httpx alias
            guarded: Any = guarded_client(urls, timeout=600.0, resolve=resolve)
            clients[dep_id] = openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0,
                                                 http_client=guarded)
        return clients[dep_id]

    async def aclose(self) -> None:
        """Close this loop's clients (the specs stay: a later loop makes new ones)."""
        for client in self._clients.pop(asyncio.get_running_loop(), {}).values():
            await client.close()

    def attach(self, kwargs: dict, call_type: Any) -> dict | None:
        """The call's kwargs with the guarded client, when it goes to a peer deployment (named
        by the Router's `model_info`, or, for a chat call made outside the Router, such as
        LiteLLM's health checks, by a peer's exact base URL and key); None (unchanged)
        otherwise. PeerRefused for a peer deployment it cannot guard."""
        kind = getattr(call_type, "value", call_type)
        dep_id = peer_deployment_id(kwargs)
        if dep_id is None and kind in CHAT_CALLS:  # outside the Router (LiteLLM's health checks): by endpoint
            dep_id = next((d for d, (base, key, *_) in self.specs.items()
                           if base == kwargs.get("api_base") and key == kwargs.get("api_key")), None)
        if dep_id is None:
            return None
        if kind not in CHAT_CALLS:
            raise PeerRefused(f"peer deployments serve chat completions only, not {kind}: call refused")
        return {**kwargs, "client": self.client(dep_id)}


def peer_deployment_id(kwargs: Mapping[str, Any]) -> str | None:
    """The deployment id of a call the Router sends to a peer deployment (its `model_info`,
    which the Router puts in the call's metadata), else None."""
    for key in ("metadata", "litellm_metadata"):
        info = (kwargs.get(key) or {}).get("model_info") if isinstance(kwargs.get(key), Mapping) else None
        if isinstance(info, Mapping) and info.get("chorus_peer"):
            return str(info.get("id"))
    info = kwargs.get("model_info")
    if isinstance(info, Mapping) and info.get("chorus_peer"):
        return str(info.get("id"))
    return None


CLIENTS = PeerClients()  # one per process: the Router and LiteLLM's callbacks are per process
_hook: Any = None


def install_hook() -> Any:
    """Put `PeerGuardHook` in `litellm.callbacks` (once; again if something removed it)."""
    global _hook
    import litellm
    from litellm.integrations.custom_logger import CustomLogger

    if _hook is None:
        class PeerGuardHook(CustomLogger):
            """Hands each call to a peer deployment its guarded client (see the module docstring)."""

            async def async_pre_call_deployment_hook(self, kwargs: dict, call_type: Any) -> dict | None:
                return CLIENTS.attach(kwargs, call_type)

        _hook = PeerGuardHook()
    if _hook not in litellm.callbacks:
        litellm.callbacks.append(_hook)
    return _hook


class PeerSync:
    def __init__(self, store: PeerSyncStore, get_router: Callable[[], Any], policy: peers.Policy, urls: Allowlist, *,
                 interval_s: float = 2.0, probe_timeout_s: float = 10.0, resolve: Any = None,
                 load: Callable[[], Mapping[str, int]] | None = None) -> None:
        self.store, self.get_router, self.policy, self.urls = store, get_router, policy, urls
        self.load, self.worker = load, uuid.uuid4().hex[:12]  # this worker's calls in flight per model
        self.interval_s, self.probe_timeout_s, self.resolve = interval_s, probe_timeout_s, resolve
        self.probed: dict[str, bool] = {}  # deployment id -> probe passed (this worker)
        self.deployed: dict[str, dict] | None = None  # peer id -> registration, after the last pass
        self._loop = Periodic("peer sync", interval_s, self.sync_once)

    async def sync_once(self) -> dict[str, list[str]]:
        """One pass; the peer ids added and removed."""
        router = self.get_router()
        if router is None:
            return {"added": [], "removed": []}
        now = self.store.clock()
        wanted: dict[str, dict] = {}
        peers_now = await self.store.all_peers()
        for peer in peers_now:
            record = peer["record"]
            if peers.state(peer["last_seen"], now, self.policy.away_after_s) != "live":
                continue
            try:
                await check_url(record["base_url"], self.urls, resolve=self.resolve, what="base_url")
            except UnsafeURL as exc:
                log.warning("chorus: peer %s left out: %s", record["peer_id"], exc)
                continue
            wanted[record["peer_id"]] = deployment(record)
        current, removed, new = reconcile(router, "chorus_peer", wanted)
        for pid in removed:
            await CLIENTS.unregister(current[pid]["model_info"]["id"])
        if wanted:
            install_hook()
        answered = await asyncio.gather(*(self._probe(dep) for dep in new.values()))  # side by side
        added = []
        for (pid, dep), ok in zip(new.items(), answered, strict=True):
            if ok:
                add(router, dep)
                added.append(pid)
        if added or removed:
            log.info("chorus: peers added to the Router %s, removed %s", added, removed)
        in_router = (set(current) - set(removed)) | set(added)
        for pid in in_router & set(wanted):  # deployed by another loop's sync: guarded here too
            CLIENTS.register(wanted[pid], self.urls, self.resolve)
        self.deployed = {pid: peer["record"] for peer in peers_now if (pid := peer["record"]["peer_id"]) in wanted
                         and pid in in_router}
        if self.load is not None:  # valid for three passes: a dead worker's calls stop counting
            calls = {model.removeprefix(peers.ROUTER_PREFIX): n for model, n in self.load().items()
                     if model.startswith(peers.ROUTER_PREFIX)}
            await self.store.put_peer_load(self.worker, calls, 3 * self.interval_s, deployed=list(self.deployed or ()))
        return {"added": added, "removed": removed}

    async def available(self, pool: str) -> list[dict]:
        """The pool's live peers (read now: one that just left or went away is not drawn)
        whose current registration is deployed in this worker's Router."""
        if self.deployed is None:  # the first run before the first pass
            await self.sync_once()
        deployed, now = self.deployed or {}, self.store.clock()
        return [p["record"] for p in await self.store.pool_peers(pool)
                if peers.state(p["last_seen"], now, self.policy.away_after_s) == "live"
                and deployed.get(p["record"]["peer_id"], {}).get("registered_at") == p["record"]["registered_at"]]

    async def _probe(self, dep: dict) -> bool:
        dep_id = dep["model_info"]["id"]
        if dep_id in self.probed:
            return self.probed[dep_id]
        import litellm

        params = dep["litellm_params"]
        CLIENTS.register(dep, self.urls, self.resolve)
        try:  # through the guarded client: connect-time address check, no redirects
            await litellm.acompletion(model=params["model"], api_base=params["api_base"], api_key=params["api_key"],
                                      messages=PROBE, max_tokens=4, timeout=self.probe_timeout_s, num_retries=0,
                                      client=CLIENTS.client(dep_id))
            self.probed[dep_id] = True
        except Exception as exc:  # noqa: BLE001 - any failure keeps the peer out
            log.warning("chorus: peer %s failed its probe: %s", dep["model_info"]["chorus_peer"], exc)
            self.probed[dep_id] = False
            await CLIENTS.unregister(dep_id)
            await self.store.add_reputation({dep["model_info"]["chorus_peer"]: {"runs": 1, "failures": 1}})
        return self.probed[dep_id]

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()
        await CLIENTS.aclose()
