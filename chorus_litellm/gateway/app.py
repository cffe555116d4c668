"""The composition root: the objects the provider runs fusion with, built in one place.

`App` holds what lives as long as the process (the receipt signer, the store, the
completer and forwarder over LiteLLM's Router, the run observers) and what lives per
event loop (the embedders, the event-log writer, the webhook sender, the peer and profile
syncs: each owns futures or tasks of one loop; the SDK's sync loop and a caller's loop
never share one). `context(req, ...)` builds one run's `RunContext` from them: its finishers, its
event log's subscribers, its ports. The provider only translates (provider.py).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable, Sequence
from typing import Any

from ..core.context import RunContext
from ..core.ports import Completer, Embedder
from ..core.request import FusionRequest
from ..core.runlog import Listener, RunLog
from ..settings import load_settings
from ..settlement.finish import ReputationKeeper, Settler, TranscriptKeeper
from ..observe import metrics, tracing
from ..storage.backends import store_from_env
from ..storage.store import Store
from .embeddings import BatchedEmbedder
from ..observe.live import EventLog
from .forward import RouterForwarder
from .llm import RouterCompleter, proxy_router
from ..observe.netguard import Allowlist
from ..market.sync import PeerSync
from .profiles import ProfileSync, Served
from ..settlement.signing import Signer
from .translate import Charge
from ..observe.webhooks import Webhooks


class App:
    """One per provider instance; see the module docstring."""

    def __init__(
        self,
        completer: Completer | None = None,
        get_router: Callable[[], Any] = proxy_router,
        embedder: Embedder | None = None,
        signer: Signer | None = None,
        store: Store | None = None,
        anonymous_owner: str | None = None,
        forwarder: Any = None,
        observers: Sequence[Callable[[FusionRequest], Listener]] | None = None,
    ) -> None:
        self.signer = signer if signer is not None else Signer.from_env()  # never logged
        self._store = store
        self._embedder = embedder  # tests inject one; otherwise one per model and event loop
        self._embedders: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._event_logs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._webhooks: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._peer_syncs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._profile_syncs: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self.get_router = get_router
        self.completer = completer or RouterCompleter(get_router)
        self.forwarder = forwarder or RouterForwarder(get_router)
        self.anonymous_owner = anonymous_owner
        self._store_started = False
        self.background: set[asyncio.Task] = set()  # work a run leaves behind (a webhook, a claim's release)
        # Each makes a run's listener of its events (core/runlog.py): metrics, spans.
        self.observers: list[Callable[[FusionRequest], Listener]] = list(
            (metrics.listener, tracing.listener) if observers is None else observers)

    @property
    def store(self) -> Store:
        if self._store is None:
            self._store = store_from_env()
        return self._store

    async def started_store(self) -> Store:
        """The store, its background outbox flush started on this process's first run."""
        if not self._store_started:
            self._store_started = True
            await self.store.start()
        return self.store

    def event_log(self) -> EventLog:
        """This event loop's writer and follower of run events (one per loop, like the embedder)."""
        loop = asyncio.get_running_loop()
        if loop not in self._event_logs:
            self._event_logs[loop] = EventLog(self.store)
        return self._event_logs[loop]

    def webhooks(self) -> Webhooks:
        """This event loop's webhook sender, its delivery worker started (one per loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._webhooks:
            settings = load_settings(create_dirs=False)
            self._webhooks[loop] = Webhooks(self.store, self.signer, Allowlist.parse(settings.webhook_allowlist),
                                            timeout_s=settings.webhook_timeout_s,
                                            max_attempts=settings.webhook_max_attempts)
        self._webhooks[loop].start()
        return self._webhooks[loop]

    def peer_sync(self) -> PeerSync:
        """This event loop's peer-to-Router sync, started (one per loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._peer_syncs:
            settings = load_settings(create_dirs=False)
            self._peer_syncs[loop] = PeerSync(self.store, self.get_router, settings.peer_policy(),
                                              Allowlist.parse(settings.peer_url_allowlist),
                                              interval_s=settings.peer_sync_s,
                                              load=lambda: getattr(self.completer, "inflight", {}))
        self._peer_syncs[loop].start()
        return self._peer_syncs[loop]

    def profile_sync(self, served: Served) -> ProfileSync:
        """This event loop's stored-profiles-to-Router sync, started (one per loop)."""
        loop = asyncio.get_running_loop()
        if loop not in self._profile_syncs:
            interval_s = load_settings(create_dirs=False).profile_sync_s
            self._profile_syncs[loop] = ProfileSync(self.store, self.get_router, served, interval_s=interval_s)
        self._profile_syncs[loop].start()
        return self._profile_syncs[loop]

    async def pool(self, name: str) -> list[dict]:
        """The pool's live, probed peers (the peer sync starts with the first pool run)."""
        return await self.peer_sync().available(name)

    def context(self, req: FusionRequest, logging_obj: Any, timeout: Any) -> RunContext:
        storage = req.profile.storage
        watched = storage.events and req.owner is not None
        needs_embedder = req.debate.protocol == "debate" or req.bounty is not None or watched
        embedder = self.embedder_for(req) if needs_embedder else None
        # a bounty without a signer was refused before the run (provider)
        finishers: list = [Settler(self.signer, self.store, embedder)] if req.bounty is not None and self.signer else []
        if req.profile.storage.transcripts and req.owner is not None:
            finishers.append(TranscriptKeeper(self.store))
        finishers.append(ReputationKeeper(self.store))
        listeners = [observe(req) for observe in self.observers]
        if watched and req.owner is not None:
            listeners.append(self.event_log().listener(req.owner, req.debate_id, storage.transcript_ttl_s))
        return RunContext.create(req, self.completer, timeout=timeout, on_charge=Charge(logging_obj, req.stream),
                                 embedder=embedder, forwarder=self.forwarder, reputation=self.store.reputation,
                                 pool=self.pool if req.profile.panel.pool else None,
                                 finishers=finishers, log=RunLog(*listeners, watched=watched))

    def embedder_for(self, req: FusionRequest) -> Embedder:
        """One embedder per model and event loop: its batching futures belong to a loop
        (the SDK's sync loop and the caller's own loop must not share one)."""
        if self._embedder is not None:
            return self._embedder
        per_loop = self._embedders.setdefault(asyncio.get_running_loop(), {})
        name = req.debate.embedding_model
        return per_loop.setdefault(name, BatchedEmbedder(name))
