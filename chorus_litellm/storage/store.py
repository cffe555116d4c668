"""Durable, team-scoped storage: one async facade, two backends (SQLite, Redis).

Boundary: this module holds the rules every backend shares; the backends
(`store_sqlite.py`, `store_redis.py`) only put, get and count, and raise
`StoreUnavailable` when they cannot. Nothing here knows SQL or Redis commands.

Ownership: records belong to `owner_of(caller)` (`team:<id>`, else `key:<hash>`); an
unauthenticated caller owns nothing (None). Owner and debate id are separate parts of
every key, never joined ambiguously, so one team cannot name another team's record.

The outbox rule (storage never fails or duplicates a run):
- A write goes to the backend; if the backend is down, to the local outbox (a SQLite
  file, first write wins per (kind, owner, debate id)). A record still waiting in the
  outbox is the one promised first, so it is what a later put of the same key stores.
- Receipts: `put_receipt` returns the stored receipt when the backend or the outbox took
  it, else raises `StoreUnavailable` (503): the caller must not promise it.
- Transcripts and reputation are best effort: never raised, a warning logged.
- The outbox is flushed by a background task every `flush_interval_s` after
  `await store.start()` (without it, by the next good write after an outbox write);
  a row is deleted only after the backend accepted it. `aclose()` stops it all.
- Reads (`find_receipt`, `get_transcript`) look in the backend, then the outbox; they
  raise `StoreUnavailable` only when neither can be read. `reputation()` raises it when
  the backend is down (the caller falls back).
- Webhooks (observe/webhooks.py) wait in a durable queue in the backend: `enqueue_webhook`
  (first enqueue of a job id wins; the outbox takes it during an outage), then any
  worker `claim_webhooks` the due ones (each claim moves the job's due time one lease
  ahead, so a worker that dies mid-delivery leaves it to the next), and
  `finish_webhook` deletes it (delivered) or re-schedules it (a retry) or parks it
  (`dead`, kept for `DEAD_TTL_S`). A restart loses nothing: the queue is the store.
- Earnings: a receipt that names marketplace peers (`peer_id` on a contribution) is
  indexed per peer when it is stored, in the backend's same write path as the receipt
  (an outboxed receipt is indexed when it is flushed), so `peer_earnings` lists every
  receipt that paid a peer, across teams, with totals per currency.
- Load: every worker's peer sync publishes its calls in flight per peer and the peers its
  Router holds each pass, valid for a few passes (`put_peer_load`); `peer_loads` sums the
  fresh ones and counts the workers (a worker that died stops counting when its entry
  expires). Best effort, like reputation.
- Peers (market/peers.py): one record per peer key (`put_peer` replaces it; a peer is in one
  pool at a time), with `last_seen` and `last_ts` kept apart so that `touch_peer` is a
  compare-and-set: a heartbeat counts only if its signed timestamp is later than the
  last one accepted (no replay, even across workers). `put_peer` is one too, and a peer
  that leaves (`delete_peer`) leaves a tombstone with its last accepted timestamp until
  no request as old can pass the signature window (`ttl_s` past the later of now and
  that timestamp), so a registration captured before it left cannot bring it back.
  Peer calls need the backend: they raise `StoreUnavailable` (a 503), never go to the
  outbox.
- Profiles created at run time (the admin API): one record per name, changed only by a
  compare-and-set on its version; a delete leaves a tombstone for good. Like peers, they
  need the backend (StoreUnavailable, never the outbox).
  Every worker's profile sync also publishes the version of each profile it serves, valid
  for a few passes (`put_profiles_served`, best effort like load); `profiles_served` counts
  the live workers and, per profile, those serving each version (a rollout's progress).
- Claims (single flight): `claim` takes a debate id for one run, atomically across
  workers and replicas (SQLite: one upsert that only replaces an expired claim; Redis:
  one Lua set-if-absent-or-expired), for `lease_s` by the store's clock, or reports the
  live claim (its holder's request hash). The holder `renew`s it while the run is alive
  and `release`s it when the run ends (both only with its own token); a holder that
  crashed stops renewing and its claim expires. Claims need the backend: they raise
  `StoreUnavailable`, never go to the outbox (the caller then runs unclaimed).
- Event-stream slots: a key's open event streams are counted across workers and replicas,
  one leased slot each (`take_stream_slot`: atomic, refused when `limit` live ones are
  held; the stream `renew`s it while open and `drop`s it when it ends; a worker that died
  frees its slots when their leases run out). They need the backend (StoreUnavailable:
  the caller falls back to its own worker's count).
- Run events (the live view's log, core/runlog.py) are best effort like transcripts: a batch
  the backend cannot take waits in the outbox and is delivered later (events are keyed
  by their sequence number, so batches may arrive in any order and twice). Each batch
  also updates the owner's runs index (`runlog.summarize`). `read_events` and
  `list_runs` read the backend only.

Time comes from the injected `clock` (seconds since the epoch), so tests move it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Mapping, Sequence

from ..core import runlog
from ..core.errors import StoreUnavailable
from ..core.ports import Claim, Job, PeerLoads, ProfilesServed
from ..core.types import Caller
from ..core.background import stop
from .outbox import EVENTS, RECEIPT, TRANSCRIPT, WEBHOOK, Outbox, Pending

log = logging.getLogger("chorus_litellm")

FLUSH_BATCH = 100
Summarize = Callable[[dict | None], dict]  # the runs-index entry after a batch, from the stored one
DEAD_TTL_S = 7 * 24 * 3600  # a webhook that gave up stays readable for the operator this long
PEER_TOMBSTONE_S = 300.0  # a left peer's last timestamp is kept this long (the default signature window)


def owner_of(caller: Caller) -> str | None:
    """`team:<id>`, else `key:<hash>`; None for a caller with neither (owns nothing)."""
    if caller.team_id:
        return f"team:{caller.team_id}"
    if caller.key_hash:
        return f"key:{caller.key_hash}"
    return None


def earnings(receipt: dict) -> dict[str, tuple[str, str, int]]:
    """Per peer a receipt names: (issued_at, currency, amount summed over its seats)."""
    payload = receipt.get("payload") or {}
    paid: dict[str, int] = {}
    for c in payload.get("contributions") or ():
        if c.get("peer_id"):
            paid[c["peer_id"]] = paid.get(c["peer_id"], 0) + int(c["amount"])
    return {peer: (payload["issued_at"], payload["bounty"]["currency"], amount) for peer, amount in paid.items()}


def record_key(owner: str, debate_id: str) -> str:
    """Owner and debate id in one unambiguous string: `<len(owner)>:<owner>:<debate_id>`."""
    return f"{len(owner)}:{owner}:{debate_id}"


class Store:
    """The facade; subclasses implement the backend methods `_put`, `_get`,
    `_add_counters`, `_counters` and `_close`, each raising StoreUnavailable when the
    backend cannot answer."""

    def __init__(self, outbox: Outbox, *, clock: Callable[[], float] = time.time,
                 flush_interval_s: float = 5.0) -> None:
        self.outbox, self.clock, self.flush_interval_s = outbox, clock, flush_interval_s
        self._flusher: asyncio.Task | None = None
        self._outboxed = True  # rows may be waiting from an earlier process: flush after a good write

    # -- backend (subclasses) ---------------------------------------------------------
    async def _put(self, item: Pending) -> dict:
        """Store `item` unless a live record has its key (first write wins); return the stored one."""
        raise NotImplementedError

    async def _get(self, kind: str, owner: str, debate_id: str) -> dict | None:
        """The live record, or None when absent or expired (by `self.clock`)."""
        raise NotImplementedError

    async def _add_counters(self, observations: dict[str, dict[str, float]]) -> None:
        raise NotImplementedError

    async def _counters(self, payees: list[str] | None) -> dict[str, dict[str, float]]:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _append(self, owner: str, run_id: str, events: list[dict], expires_at: float | None,
                      summarize: Summarize) -> None:
        """Add events (envelopes) not yet stored, by sequence number, and replace the run's
        runs-index entry with `summarize(the entry stored now, or None)`, in one step."""
        raise NotImplementedError

    async def _events(self, owner: str, run_id: str, after: int, limit: int) -> list[dict]:
        """The live events with seq > `after`, in order, at most `limit`."""
        raise NotImplementedError

    async def _runs(self, owner: str, limit: int) -> list[dict]:
        """The owner's live runs index entries (each with its `id`), newest first."""
        raise NotImplementedError

    async def _enqueue(self, job_id: str, job: dict, due: float) -> None:
        """Queue a webhook unless one with this id is queued (or dead) already."""
        raise NotImplementedError

    async def _claim(self, now: float, limit: int, lease_until: float) -> list[Job]:
        """Atomically take up to `limit` pending jobs due by `now`, moving each one's due time to `lease_until`."""
        raise NotImplementedError

    async def _finish(self, job_id: str, *, due: float | None, attempts: int, error: str | None) -> None:
        """`due` None and no error: delete (delivered); `due`: pending again then;
        `due` None with an error: dead (kept `DEAD_TTL_S`)."""
        raise NotImplementedError

    async def _webhook(self, job_id: str) -> dict | None:
        """A queued or dead job's state: `{"state", "attempts", "due", "error"}` (None: delivered or unknown)."""
        raise NotImplementedError

    async def _put_peer(self, peer_id: str, pool: str, record: dict, last_seen: float, last_ts: int) -> bool:
        """Compare-and-set against the peer's record and its unexpired tombstone (dropped on success)."""
        raise NotImplementedError

    async def _get_peer(self, peer_id: str) -> dict | None:
        raise NotImplementedError

    async def _pool_peers(self, pool: str | None) -> list[dict]:
        """The pool's peers by id (None: every pool's)."""
        raise NotImplementedError

    async def _touch_peer(self, peer_id: str, last_seen: float, last_ts: int) -> bool:
        raise NotImplementedError

    async def _delete_peer(self, peer_id: str, last_ts: int | None, ttl_s: float) -> None:
        """Remove the peer; tombstone the later of its record's and `last_ts` (if any) until
        `ttl_s` past the later of now and that timestamp."""
        raise NotImplementedError

    async def _put_load(self, worker: str, calls: dict[str, int], deployed: Sequence[str],
                        expires_at: float) -> None:
        raise NotImplementedError

    async def _loads(self, now: float) -> PeerLoads:
        raise NotImplementedError

    async def _earnings(self, peer_id: str, limit: int) -> list[dict]:
        """The peer's newest receipts."""
        raise NotImplementedError

    async def _totals(self, peer_ids: list[str]) -> dict[str, dict[str, dict[str, int]]]:
        """Totals per currency ({"amount", "receipts"}) for each of these peers, in one round trip."""
        raise NotImplementedError

    async def _put_profile(self, name: str, profile: dict | None, version: int, now: float) -> dict | None:
        """Compare-and-set: when the stored version (0: none) is `version`, store `profile`
        (None: a tombstone, only over a live one) as the next version; the record, else None."""
        raise NotImplementedError

    async def _profiles(self, name: str | None) -> list[dict]:
        """The records (tombstones included) by name: one name's, or every one's (None)."""
        raise NotImplementedError

    async def _put_served(self, worker: str, versions: Mapping[str, int], expires_at: float) -> None:
        """Replace what `worker` serves ({profile: version}, maybe none) until `expires_at`."""
        raise NotImplementedError

    async def _served(self, now: float) -> ProfilesServed:
        raise NotImplementedError

    async def _take_claim(self, owner: str, debate_id: str, held: dict, now: float) -> dict | None:
        """Store `held` ({"token", "request_hash", "expires_at"}) unless a claim live at `now`
        has the key; return the live one (`held` when it was taken; None only when the
        holder released it meanwhile)."""
        raise NotImplementedError

    async def _renew_claim(self, owner: str, debate_id: str, token: str, expires_at: float) -> bool:
        """Move the claim's expiry, if `token` still holds it."""
        raise NotImplementedError

    async def _drop_claim(self, owner: str, debate_id: str, token: str) -> None:
        """Delete the claim, if `token` still holds it."""
        raise NotImplementedError

    async def _take_slot(self, key: str, slot: str, limit: int, now: float, expires_at: float) -> bool:
        """Hold `slot` of `key` until `expires_at` unless `limit` slots are live at `now`."""
        raise NotImplementedError

    async def _renew_slot(self, key: str, slot: str, expires_at: float) -> bool:
        """Move a held slot's expiry; False if it is gone (expired and taken back)."""
        raise NotImplementedError

    async def _drop_slot(self, key: str, slot: str) -> None:
        raise NotImplementedError

    # -- records ---------------------------------------------------------------------
    async def put_receipt(self, owner: str, debate_id: str, receipt: dict) -> dict:
        """The stored receipt (the first one for this key); StoreUnavailable if nothing took it."""
        if not owner:
            raise ValueError("a receipt needs an owner: owner_of(caller) was None (unauthenticated)")
        stored = await self._keep(Pending(RECEIPT, owner, debate_id, receipt))
        if stored is None:
            raise StoreUnavailable(f"receipt {debate_id!r} could not be stored: store and outbox unavailable")
        return stored

    async def put_transcript(self, owner: str | None, debate_id: str, record: dict, ttl_s: int | None) -> None:
        """Best effort: kept for `ttl_s` seconds (None or 0: no expiry); never raises for an outage."""
        if not owner:
            return  # nobody could read it back
        expires_at = self.clock() + ttl_s if ttl_s else None
        if await self._keep(Pending(TRANSCRIPT, owner, debate_id, record, expires_at)) is None:
            log.warning("chorus: transcript %s not kept: store and outbox unavailable", debate_id)

    async def find_receipt(self, owner: str | None, debate_id: str) -> dict | None:
        """The stored receipt from the backend, else the outbox; None if neither has one.
        Raises StoreUnavailable only when neither can be read."""
        return await self._find(RECEIPT, owner, debate_id)

    get_receipt = find_receipt  # the HTTP route's name


    async def get_transcript(self, owner: str | None, debate_id: str) -> dict | None:
        return await self._find(TRANSCRIPT, owner, debate_id)

    async def _keep(self, item: Pending) -> dict | None:
        """Backend, else outbox: the stored record, or None when neither took it."""
        waiting = await self._waiting(item)
        try:
            stored = await self._put(waiting or item)
        except StoreUnavailable as down:
            try:
                kept = waiting or await self.outbox.add(item)
            except StoreUnavailable as no_outbox:
                log.error("chorus: %s %s lost: %s; %s", item.kind, item.debate_id, down, no_outbox)
                return None
            self._outboxed = True
            log.warning("chorus: %s; %s %s kept in the outbox", down, item.kind, item.debate_id)
            return kept.record
        if waiting is not None:
            with contextlib.suppress(StoreUnavailable):  # delivered; a leftover row is re-sent harmlessly
                await self.outbox.remove([waiting])
        if self._outboxed and not self._flushing():  # without start(), the next good write flushes
            await self.flush_outbox()
        return stored

    async def _waiting(self, item: Pending) -> Pending | None:
        """The outboxed record with this key, promised before `item` (None if none or unreadable)."""
        try:
            return await self.outbox.find(item.kind, item.owner, item.debate_id)
        except StoreUnavailable:
            return None

    async def _find(self, kind: str, owner: str | None, debate_id: str) -> dict | None:
        if not owner:
            return None
        backend_down = None
        try:
            found = await self._get(kind, owner, debate_id)
            if found is not None:
                return found
        except StoreUnavailable as exc:
            backend_down = exc
        try:
            waiting = await self.outbox.find(kind, owner, debate_id)
        except StoreUnavailable as exc:
            if backend_down is not None:
                raise StoreUnavailable(f"{backend_down}; {exc}") from exc
            return None
        return waiting.record if waiting is not None else None

    # -- event-stream slots -----------------------------------------------------------
    async def take_stream_slot(self, key: str, slot: str, limit: int, lease_s: float) -> bool:
        """Hold one of `key`'s `limit` event-stream slots, named `slot`, for `lease_s` by the
        store's clock; False when `limit` live slots are held (on any worker or replica)."""
        now = self.clock()
        return await self._take_slot(key, slot, limit, now, now + lease_s)

    async def renew_stream_slot(self, key: str, slot: str, lease_s: float) -> bool:
        return await self._renew_slot(key, slot, self.clock() + lease_s)

    async def drop_stream_slot(self, key: str, slot: str) -> None:
        await self._drop_slot(key, slot)

    # -- single-flight claims ---------------------------------------------------------
    async def claim(self, owner: str, debate_id: str, request_hash: str, lease_s: float) -> Claim:
        """Take `debate_id` (of `owner`) for one run, for `lease_s` seconds, unless a live
        claim holds it: the claim now held (`mine` when this call took it). Atomic across
        workers and replicas; raises StoreUnavailable when the backend is down."""
        if not owner:
            raise ValueError("a claim needs an owner: owner_of(caller) was None (unauthenticated)")
        token = uuid.uuid4().hex
        for _ in range(3):  # None: the holder released it between our two looks; look again
            now = self.clock()
            held = await self._take_claim(owner, debate_id, {"token": token, "request_hash": request_hash,
                                                             "expires_at": now + lease_s}, now)
            if held is not None:
                return Claim(owner, debate_id, held["token"], held["request_hash"], float(held["expires_at"]),
                             mine=held["token"] == token)
        raise StoreUnavailable(f"claim {debate_id!r} changed hands three times in a row")

    async def renew(self, claim: Claim, lease_s: float) -> bool:
        """Extend a claim this process holds to `lease_s` from now; False if it no longer
        holds it (released, or expired and taken by another). StoreUnavailable when down."""
        return await self._renew_claim(claim.owner, claim.debate_id, claim.token, self.clock() + lease_s)

    async def release(self, claim: Claim) -> None:
        """Free a claim this process holds (another's is left alone). StoreUnavailable when down."""
        await self._drop_claim(claim.owner, claim.debate_id, claim.token)

    # -- run events (the live view) -------------------------------------------------
    async def append_events(self, owner: str | None, run_id: str, events: list[dict], ttl_s: int | None) -> None:
        """Best effort: the backend, else the outbox; never raises for an outage."""
        if not owner or not events:
            return
        expires_at = self.clock() + ttl_s if ttl_s else None
        try:
            await self._append(owner, run_id, events, expires_at, _summarized(events))
            return
        except StoreUnavailable as down:
            item = Pending(EVENTS, owner, f"{run_id}#{events[0]['seq']}", {"run_id": run_id, "events": events},
                           expires_at)
            try:
                await self.outbox.add(item)
            except StoreUnavailable as no_outbox:
                log.warning("chorus: %d events of run %s lost: %s; %s", len(events), run_id, down, no_outbox)
                return
        self._outboxed = True

    async def read_events(self, owner: str | None, run_id: str, after: int = 0, limit: int = 1000) -> list[dict]:
        """The run's events after `after`; StoreUnavailable when the backend is down."""
        return await self._events(owner, run_id, after, limit) if owner else []

    async def list_runs(self, owner: str | None, limit: int = 20) -> list[dict]:
        """The owner's recent runs, live ones first; StoreUnavailable when the backend is down."""
        if not owner:
            return []
        runs = await self._runs(owner, limit)
        return sorted(runs, key=lambda r: (r.get("state") != "running", -(r.get("started") or 0)))[:limit]

    # -- webhooks ----------------------------------------------------------------------
    async def enqueue_webhook(self, job_id: str, job: dict) -> bool:
        """Queue a webhook (due now): the backend, else the outbox; False when neither took it."""
        try:
            await self._enqueue(job_id, job, self.clock())
            return True
        except StoreUnavailable as down:
            try:
                await self.outbox.add(Pending(WEBHOOK, "-", job_id, job))
            except StoreUnavailable as no_outbox:
                log.error("chorus: webhook %s lost: %s; %s", job_id, down, no_outbox)
                return False
        self._outboxed = True
        return True

    async def claim_webhooks(self, limit: int, lease_s: float) -> list[Job]:
        now = self.clock()
        return await self._claim(now, limit, now + lease_s)

    async def finish_webhook(self, job_id: str, *, due: float | None = None, attempts: int = 0,
                             error: str | None = None) -> None:
        await self._finish(job_id, due=due, attempts=attempts, error=error)

    async def webhook_state(self, job_id: str) -> dict | None:
        return await self._webhook(job_id)

    # -- peers ---------------------------------------------------------------------------
    async def put_peer(self, peer_id: str, pool: str, record: dict, last_seen: float, last_ts: int) -> bool:
        """Register (or update) a peer; False, storing nothing, unless `last_ts` is later than
        the last accepted one: the peer's, or, after it left, its tombstone's (a replay)."""
        return await self._put_peer(peer_id, pool, record, last_seen, last_ts)

    async def get_peer(self, peer_id: str) -> dict | None:
        """`{"record", "pool", "last_seen", "last_ts"}`, or None."""
        return await self._get_peer(peer_id)

    async def pool_peers(self, pool: str) -> list[dict]:
        return await self._pool_peers(pool)

    async def all_peers(self) -> list[dict]:
        return await self._pool_peers(None)

    async def touch_peer(self, peer_id: str, last_seen: float, last_ts: int) -> bool:
        """Record a heartbeat; False if the peer is gone or `last_ts` is not later than the last."""
        return await self._touch_peer(peer_id, last_seen, last_ts)

    async def delete_peer(self, peer_id: str, last_ts: int | None = None, ttl_s: float = PEER_TOMBSTONE_S) -> None:
        """The peer leaves. Its last accepted timestamp (its record's, or `last_ts`, the
        leave request's own, if later) is kept `ttl_s` (the signature window) past the
        later of now and that timestamp, so no older request of its can register it again."""
        await self._delete_peer(peer_id, last_ts, ttl_s)

    # -- profiles created at run time (core/profiles.py) ----------------------------------
    async def list_profiles(self) -> list[dict]:
        """Every stored profile's record, tombstones included, by name."""
        return await self._profiles(None)

    async def get_profile(self, name: str) -> dict | None:
        found = await self._profiles(name)
        return found[0] if found else None

    async def put_profile(self, name: str, profile: dict, version: int) -> dict | None:
        """Store `profile` as the version after `version` (the one the caller read, 0 for a
        name never used, a tombstone's to create it again); None, storing nothing, if stale."""
        return await self._put_profile(name, profile, version, self.clock())

    async def delete_profile(self, name: str, version: int) -> dict | None:
        """Tombstone the live profile at `version` (kept for good: versions never repeat);
        None, changing nothing, if stale or not live."""
        return await self._put_profile(name, None, version, self.clock())

    async def put_profiles_served(self, worker: str, versions: Mapping[str, int], ttl_s: float) -> None:
        """The version of each fusion profile this worker serves, valid for `ttl_s`; never
        raises for an outage."""
        try:
            await self._put_served(worker, dict(versions), self.clock() + ttl_s)
        except StoreUnavailable as exc:
            log.warning("chorus: profiles served not published: %s", exc)

    async def profiles_served(self) -> ProfilesServed:
        """Over every live worker: how many publish, and per profile how many serve each
        version; StoreUnavailable when down."""
        return await self._served(self.clock())

    # -- reputation -----------------------------------------------------------------
    async def put_peer_load(self, worker: str, calls: dict[str, int], ttl_s: float,
                            deployed: Sequence[str] = ()) -> None:
        """This worker's calls in flight per peer and the peers its Router holds, valid for
        `ttl_s`; never raises for an outage."""
        try:
            await self._put_load(worker, {p: n for p, n in calls.items() if n > 0}, sorted(set(deployed)),
                                 self.clock() + ttl_s)
        except StoreUnavailable as exc:
            log.warning("chorus: peer load not published: %s", exc)

    async def peer_loads(self) -> PeerLoads:
        """Over every live worker: calls in flight per peer, and how many workers hold each
        peer as a deployment; StoreUnavailable when down."""
        return await self._loads(self.clock())

    async def peer_earnings(self, peer_id: str, limit: int = 100) -> dict:
        """Receipts that paid this peer (newest first, at most `limit`) and its totals per
        currency; StoreUnavailable when the backend is down."""
        receipts = await self._earnings(peer_id, limit) if limit > 0 else []
        return {"peer_id": peer_id, "totals": (await self.earnings_totals([peer_id]))[peer_id], "receipts": receipts}

    async def earnings_totals(self, peer_ids: list[str]) -> dict[str, list[dict]]:
        """Each peer's totals per currency (the pool view); StoreUnavailable when down."""
        found = await self._totals(peer_ids) if peer_ids else {}
        return {p: [{"currency": cur, **t} for cur, t in sorted(found.get(p, {}).items())] for p in peer_ids}

    async def add_reputation(self, observations: dict[str, dict[str, float]]) -> None:
        """Add one run's observations per payee (atomic increments); best effort, never raises."""
        try:
            await self._add_counters(observations)
        except StoreUnavailable as exc:
            log.warning("chorus: reputation not updated (%s)", exc)

    async def reputation(self, payees: list[str] | None = None) -> dict[str, dict[str, float]]:
        """Counters per payee; raises StoreUnavailable when the backend is down."""
        return await self._counters(payees)

    # -- outbox delivery and lifecycle --------------------------------------------------
    async def flush_outbox(self) -> int:
        """Deliver claimable outbox rows to the backend; how many were delivered.

        Safe beside other workers flushing the same outbox (rows are claimed first, and a
        row is deleted only after the backend took it). Never raises for an outage."""
        delivered = 0
        try:
            while batch := await self.outbox.claim(FLUSH_BATCH):
                for n, item in enumerate(batch):
                    if not item.expired(self.clock()):
                        try:
                            await self._deliver(item)
                        except StoreUnavailable as exc:
                            await self.outbox.release(batch[n:])
                            log.info("chorus: outbox flush waits for the backend (%s)", exc)
                            return delivered
                        delivered += 1
                    await self.outbox.remove([item])
            self._outboxed = False
        except StoreUnavailable as exc:
            log.warning("chorus: outbox not flushed (%s)", exc)
        return delivered

    async def _deliver(self, item: Pending) -> None:
        if item.kind == EVENTS:
            events = item.record["events"]
            await self._append(item.owner, item.record["run_id"], events, item.expires_at, _summarized(events))
        elif item.kind == WEBHOOK:
            await self._enqueue(item.debate_id, item.record, self.clock())
        else:
            await self._put(item)

    async def start(self) -> None:
        """Flush the outbox now and every `flush_interval_s`, in a background task."""
        if not self._flushing():
            self._flusher = asyncio.create_task(self._flush_forever(), name="chorus-outbox-flush")
            self._flusher.add_done_callback(_report_crash)

    def _flushing(self) -> bool:
        return self._flusher is not None and not self._flusher.done()

    async def _flush_forever(self) -> None:
        while True:
            await self.flush_outbox()
            await asyncio.sleep(self.flush_interval_s)

    async def aclose(self) -> None:
        """Stop the background flush and close every connection."""
        await stop(self._flusher)
        self._flusher = None
        await self.outbox.aclose()
        await self._close()


def _report_crash(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("chorus: outbox flush stopped", exc_info=task.exception())


def _summarized(events: list[dict]) -> Summarize:
    """The runs-index reducer for a batch (runlog.summarize, in sequence order): what a
    backend applies to the entry it holds, so no backend knows the log's schema."""
    ordered = sorted(events, key=lambda e: e["seq"])
    return lambda current: runlog.summarize(ordered, current)
