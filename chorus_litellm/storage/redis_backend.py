"""The shared store: Redis, for several proxy replicas (rules in storage/store.py).

Boundary: Redis commands only; every Redis or socket error leaves this module as
`StoreUnavailable`, and the outbox (a local SQLite file, see store_sqlite.Outbox) takes
what Redis could not.

Keys are `{prefix}:{kind}:{len(owner)}:{owner}:{debate_id}`: the length prefix makes
owner and debate id unambiguous, though both may contain `:`. A value is
`{"expires_at": seconds or null, "record": {...}}`; expiry is checked against the
store's clock on every read and write, and a server-side PX (the TTL plus
`GC_MARGIN_S`) only collects garbage. First write wins, atomically, in one Lua script
(an expired value counts as absent).
"""

from __future__ import annotations

import asyncio
import json
import time
import weakref
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from ..core.errors import unavailable_on
from ..core.ports import Job, PeerLoads, ProfilesServed
from ..settings import data_dir
from .outbox import CLAIM, RECEIPT, Pending
from .store import DEAD_TTL_S, Store, Summarize, earnings, record_key
from .sqlite_backend import Outbox

GC_MARGIN_S = 60  # the server keeps an expired value this much longer than the clock says

# KEYS[1] key; ARGV[1] value; ARGV[2] now; ARGV[3] PX in ms, or "" for no expiry.
# A receipt that pays peers also indexes them in the same write (nothing between the
# two to lose): KEYS[2k], KEYS[2k+1] a peer's earnings zset and hash, ARGV[4] the
# receipt's key there, ARGV[5] its issue time, ARGV[5+k] the peer's [currency, amount].
_PUT_FIRST = """
local current = redis.call('GET', KEYS[1])
if current then
  local expires_at = cjson.decode(current)['expires_at']
  if type(expires_at) ~= 'number' or expires_at > tonumber(ARGV[2]) then return current end
end
if ARGV[3] == '' then redis.call('SET', KEYS[1], ARGV[1])
else redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3]) end
for i = 2, #KEYS, 2 do
  redis.call('ZADD', KEYS[i], ARGV[5], ARGV[4])
  redis.call('HSET', KEYS[i + 1], ARGV[4], ARGV[5 + i / 2])
end
return ARGV[1]
"""


# Webhooks: a hash per job ({prefix}:webhook:<id>: job, attempts, state, error) and one
# sorted set of pending ids by due time ({prefix}:webhooks). KEYS[1] the set; ARGV[1] now;
# ARGV[2] limit; ARGV[3] lease_until; ARGV[4] the hash key prefix. Atomic: a job is
# claimed by one worker, which pushes its due time one lease ahead.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], ARGV[3], id)
  local fields = redis.call('HMGET', ARGV[4] .. id, 'job', 'attempts')
  if fields[1] then table.insert(out, {id, fields[1], fields[2]}) else redis.call('ZREM', KEYS[1], id) end
end
return out
"""

# KEYS[1] the peer's hash; ARGV[1] last_seen; ARGV[2] last_ts. A heartbeat counts only if
# it is later than the last accepted one (compare-and-set, atomic across workers).
_TOUCH = """
local last = redis.call('HGET', KEYS[1], 'last_ts')
if not last or tonumber(last) >= tonumber(ARGV[2]) then return 0 end
redis.call('HSET', KEYS[1], 'last_seen', ARGV[1], 'last_ts', ARGV[2])
return 1
"""

# A peer's registration, a compare-and-set like _TOUCH, also against the tombstone a peer
# that left keeps (its last accepted t, until `expires_at` by the store's clock).
# KEYS[1] the peer's hash, KEYS[2] its tombstone hash, KEYS[3] the set of all peers,
# KEYS[4] its pool's set; ARGV[1] record, ARGV[2] pool, ARGV[3] last_seen, ARGV[4] last_ts,
# ARGV[5] the peer id, ARGV[6] the pool sets' key prefix, ARGV[7] now.
_PUT_PEER = """
local new = tonumber(ARGV[4])
local last = redis.call('HGET', KEYS[1], 'last_ts')
if last and tonumber(last) >= new then return 0 end
local gone = redis.call('HMGET', KEYS[2], 'last_ts', 'expires_at')
if gone[1] and tonumber(gone[2]) > tonumber(ARGV[7]) and tonumber(gone[1]) >= new then return 0 end
local before = redis.call('HGET', KEYS[1], 'pool')
if before and before ~= ARGV[2] then redis.call('SREM', ARGV[6] .. before, ARGV[5]) end
redis.call('HSET', KEYS[1], 'record', ARGV[1], 'pool', ARGV[2], 'last_seen', ARGV[3], 'last_ts', ARGV[4])
redis.call('SADD', KEYS[4], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[5])
redis.call('DEL', KEYS[2])
return 1
"""

# A peer leaves: its hash and set entries go, its tombstone keeps the latest of its
# record's, its tombstone's and the leave request's t, until ARGV[5] seconds past the
# later of now and that t (the server's PX adds the GC margin). KEYS as _PUT_PEER's
# first three; ARGV[1] the peer id, ARGV[2] the pool sets' key prefix, ARGV[3] last_ts or
# "", ARGV[4] now, ARGV[5] ttl_s, ARGV[6] GC_MARGIN_S.
_DELETE_PEER = """
local now = tonumber(ARGV[4])
local fields = redis.call('HMGET', KEYS[1], 'pool', 'last_ts')
local kept = tonumber(ARGV[3])
if fields[2] and (not kept or tonumber(fields[2]) > kept) then kept = tonumber(fields[2]) end
local gone = redis.call('HMGET', KEYS[2], 'last_ts', 'expires_at')
if gone[1] and tonumber(gone[2]) > now and (not kept or tonumber(gone[1]) > kept) then kept = tonumber(gone[1]) end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
if fields[1] then redis.call('SREM', ARGV[2] .. fields[1], ARGV[1]) end
if kept then
  local expires_at = math.max(now, kept) + tonumber(ARGV[5])
  redis.call('HSET', KEYS[2], 'last_ts', string.format('%d', kept), 'expires_at', string.format('%.3f', expires_at))
  redis.call('PEXPIRE', KEYS[2], math.ceil((expires_at - now + tonumber(ARGV[6])) * 1000))
end
return 1
"""

# Single-flight claims: the value {"token", "request_hash", "expires_at"}; live while
# expires_at (the store's clock) is later than now, the server's PX only collects garbage.
# _TAKE: KEYS[1] the claim; ARGV[1] the new value, ARGV[2] now, ARGV[3] PX. Set if absent
# or expired (SET NX, with the clock's expiry), else return the live one.
_TAKE_CLAIM = """
local current = redis.call('GET', KEYS[1])
if current and tonumber(cjson.decode(current)['expires_at']) > tonumber(ARGV[2]) then return current end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return ARGV[1]
"""

# KEYS[1] the claim; ARGV[1] the holder's token; ARGV[2] the renewed value ("" to release),
# ARGV[3] its PX. Only the holder renews or releases.
_HOLDER = """
local current = redis.call('GET', KEYS[1])
if not current or cjson.decode(current)['token'] ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3]) end
return 1
"""

# Event-stream slots: a sorted set per key ({prefix}:streams:<key>), each slot scored by
# its expiry (the store's clock). KEYS[1] the set; ARGV[1] the slot, ARGV[2] now, ARGV[3]
# its expiry, ARGV[4] the limit, ARGV[5] the set's PX. Expired slots go, then the slot is
# added only while fewer than the limit are live.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS[1] the set; ARGV[1] the slot, ARGV[2] now, ARGV[3] its new expiry, ARGV[4] the set's
# PX. Only a live slot is renewed (an expired one is not brought back).
_RENEW_SLOT = """
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
return 1
"""

# A profile's compare-and-set (core/profiles.py): KEYS[1] its hash (version, profile,
# updated_at; profile '' once deleted), KEYS[2] the set of every name; ARGV[1] the name,
# ARGV[2] the version read (0: none), ARGV[3] the block as JSON ('' to delete), ARGV[4] now.
# The new version, or false when the stored one is another (or a delete finds none live).
_PUT_PROFILE = """
local current = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if current ~= tonumber(ARGV[2]) then return false end
if ARGV[3] == '' and (current == 0 or redis.call('HGET', KEYS[1], 'profile') == '') then return false end
redis.call('HSET', KEYS[1], 'version', current + 1, 'profile', ARGV[3], 'updated_at', ARGV[4])
redis.call('SADD', KEYS[2], ARGV[1])
return current + 1
"""

mapped = unavailable_on(RedisError, OSError)


class RedisStore(Store):
    """Records and reputation in Redis under `prefix`; the outbox defaults to the data dir,
    and `legacy_outbox` (default `./chorus-redis.outbox.jsonl`, the old outbox) is imported once."""

    def __init__(self, url: str, outbox: str | Path | None = None, prefix: str = "chorus", *,
                 clock: Callable[[], float] = time.time, flush_interval_s: float = 5.0,
                 legacy_outbox: str | Path | None = None) -> None:
        legacy = Path(legacy_outbox or "chorus-redis.outbox.jsonl").absolute()
        box = Outbox(Path(outbox) if outbox else data_dir() / "chorus-redis.outbox.sqlite3", legacy=legacy,
                     clock=clock)
        super().__init__(box, clock=clock, flush_interval_s=flush_interval_s)
        self.url, self.prefix = url, prefix
        netloc = urlsplit(url).netloc
        self.name = f"Redis store {urlsplit(url)._replace(netloc=netloc.rpartition('@')[2]).geturl()}"  # no password
        # redis.asyncio clients belong to one event loop; the sync SDK path runs its own.
        # redis-py types its replies as a union of every shape (sync, async, bytes, str);
        # this store decodes them itself, so its clients are untyped
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()

    def _client(self) -> Any:  # redis.Redis; see _clients
        loop = asyncio.get_running_loop()
        if loop not in self._clients:
            # One immediate retry replaces a connection the server closed (a restart);
            # a server that is down fails at once and the outbox takes over.
            self._clients[loop] = redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=2,
                                                       retry=Retry(NoBackoff(), 1))
        return self._clients[loop]

    def _key(self, kind: str, owner: str, debate_id: str) -> str:
        return f"{self.prefix}:{kind}:{record_key(owner, debate_id)}"

    @mapped
    async def _put(self, item: Pending) -> dict:
        now = self.clock()
        value = json.dumps({"expires_at": item.expires_at, "record": item.record})
        px = "" if item.expires_at is None else str(max(1, int((item.expires_at - now + GC_MARGIN_S) * 1000)))
        keys, extra = [self._key(item.kind, item.owner, item.debate_id)], []
        if item.kind == RECEIPT and (paid := earnings(item.record)):
            issued_at = next(iter(paid.values()))[0]
            extra = [record_key(item.owner, item.debate_id),
                     repr(datetime.strptime(issued_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp())]
            for peer, (_when, currency, amount) in paid.items():
                keys += [f"{self.prefix}:earnings:{peer}", f"{self.prefix}:earnings:{peer}:paid"]
                extra.append(json.dumps([currency, amount]))
        stored = await self._client().eval(_PUT_FIRST, len(keys), *keys, value, repr(now), px, *extra)
        return json.loads(stored)["record"]

    @mapped
    async def _get(self, kind: str, owner: str, debate_id: str) -> dict | None:
        value = await self._client().get(self._key(kind, owner, debate_id))
        if value is None:
            return None
        stored = json.loads(value)
        expires_at = stored["expires_at"]
        return None if expires_at is not None and expires_at <= self.clock() else stored["record"]

    def _claim_px(self, expires_at: float) -> str:
        return str(max(1, int((expires_at - self.clock() + GC_MARGIN_S) * 1000)))

    @mapped
    async def _take_claim(self, owner: str, debate_id: str, held: dict, now: float) -> dict | None:
        value = await self._client().eval(_TAKE_CLAIM, 1, self._key(CLAIM, owner, debate_id), json.dumps(held),
                                          repr(now), self._claim_px(held["expires_at"]))
        return json.loads(value)

    @mapped
    async def _renew_claim(self, owner: str, debate_id: str, token: str, expires_at: float) -> bool:
        key = self._key(CLAIM, owner, debate_id)
        current = await self._client().get(key)
        if current is None:
            return False
        renewed = json.dumps({**json.loads(current), "expires_at": expires_at})
        return bool(await self._client().eval(_HOLDER, 1, key, token, renewed, self._claim_px(expires_at)))

    @mapped
    async def _drop_claim(self, owner: str, debate_id: str, token: str) -> None:
        await self._client().eval(_HOLDER, 1, self._key(CLAIM, owner, debate_id), token, "", "")

    def _slots_key(self, key: str) -> str:
        return f"{self.prefix}:streams:{len(key)}:{key}"

    @mapped
    async def _take_slot(self, key: str, slot: str, limit: int, now: float, expires_at: float) -> bool:
        return bool(await self._client().eval(_TAKE_SLOT, 1, self._slots_key(key), slot, repr(now), repr(expires_at),
                                              limit, self._claim_px(expires_at)))

    @mapped
    async def _renew_slot(self, key: str, slot: str, expires_at: float) -> bool:
        return bool(await self._client().eval(_RENEW_SLOT, 1, self._slots_key(key), slot, repr(self.clock()),
                                              repr(expires_at), self._claim_px(expires_at)))

    @mapped
    async def _drop_slot(self, key: str, slot: str) -> None:
        await self._client().zrem(self._slots_key(key), slot)

    @mapped
    async def _add_counters(self, observations: dict[str, dict[str, float]]) -> None:
        pipe = self._client().pipeline(transaction=True)  # one MULTI: a run's increments land together
        for payee, deltas in observations.items():
            for counter, value in deltas.items():
                pipe.hincrbyfloat(f"{self.prefix}:reputation:{payee}", counter, float(value))
            pipe.sadd(f"{self.prefix}:reputation", payee)
        await pipe.execute()

    @mapped
    async def _counters(self, payees: list[str] | None) -> dict[str, dict[str, float]]:
        client = self._client()
        names = payees if payees is not None else sorted(
            p.decode() for p in await client.smembers(f"{self.prefix}:reputation"))
        pipe = client.pipeline(transaction=False)
        for payee in names:
            pipe.hgetall(f"{self.prefix}:reputation:{payee}")
        rows = await pipe.execute()
        found = {payee: data for payee, data in zip(names, rows, strict=True) if data}
        return {payee: {k.decode(): float(v) for k, v in data.items()} for payee, data in found.items()}

    def _px(self, expires_at: float | None) -> int | None:
        return None if expires_at is None else max(1, int((expires_at - self.clock()) * 1000))

    @mapped
    async def _append(self, owner: str, run_id: str, events: list[dict], expires_at: float | None,
                      summarize: Summarize) -> None:
        client, key, px = self._client(), record_key(owner, run_id), self._px(expires_at)
        pipe = client.pipeline(transaction=True)
        pipe.zadd(f"{self.prefix}:events:{key}", {json.dumps(e, sort_keys=True): e["seq"] for e in events}, nx=True)
        if px is not None:
            pipe.pexpire(f"{self.prefix}:events:{key}", px)
        pipe.get(f"{self.prefix}:run:{key}")
        current = (await pipe.execute())[-1]
        summary = summarize(json.loads(current) if current else None)
        pipe = client.pipeline(transaction=True)
        pipe.set(f"{self.prefix}:run:{key}", json.dumps(summary), px=px)
        index = f"{self.prefix}:runs:{len(owner)}:{owner}"
        pipe.zadd(index, {run_id: summary.get("started") or self.clock()})
        if px is not None:
            pipe.pexpire(index, px)
        await pipe.execute()

    @mapped
    async def _events(self, owner: str, run_id: str, after: int, limit: int) -> list[dict]:
        found = await self._client().zrangebyscore(f"{self.prefix}:events:{record_key(owner, run_id)}",
                                                   f"({after}", "+inf", start=0, num=limit)
        return [json.loads(e) for e in found]

    @mapped
    async def _runs(self, owner: str, limit: int) -> list[dict]:
        client = self._client()
        index = f"{self.prefix}:runs:{len(owner)}:{owner}"
        ids = [i.decode() for i in await client.zrevrange(index, 0, limit * 2 - 1)]
        values = await client.mget([f"{self.prefix}:run:{record_key(owner, i)}" for i in ids]) if ids else []
        gone = [i for i, v in zip(ids, values, strict=True) if v is None]  # expired: drop from the index
        if gone:
            await client.zrem(index, *gone)
        return [{"id": i, **json.loads(v)} for i, v in zip(ids, values, strict=True) if v is not None]

    def _job_key(self, job_id: str) -> str:
        return f"{self.prefix}:webhook:{job_id}"

    @mapped
    async def _enqueue(self, job_id: str, job: dict, due: float) -> None:
        client = self._client()
        if await client.hsetnx(self._job_key(job_id), "job", json.dumps(job)):  # first enqueue wins
            pipe = client.pipeline(transaction=True)
            pipe.hset(self._job_key(job_id), mapping={"attempts": 0, "state": "pending"})
            pipe.zadd(f"{self.prefix}:webhooks", {job_id: due})
            await pipe.execute()

    @mapped
    async def _claim(self, now: float, limit: int, lease_until: float) -> list[Job]:
        rows = await self._client().eval(_CLAIM, 1, f"{self.prefix}:webhooks", repr(now), limit, repr(lease_until),
                                         f"{self.prefix}:webhook:")
        return [Job(job_id.decode(), json.loads(job), int(attempts or 0)) for job_id, job, attempts in rows]

    @mapped
    async def _finish(self, job_id: str, *, due: float | None, attempts: int, error: str | None) -> None:
        pipe = self._client().pipeline(transaction=True)
        if due is None and error is None:
            pipe.delete(self._job_key(job_id))
            pipe.zrem(f"{self.prefix}:webhooks", job_id)
        elif due is not None:
            pipe.hset(self._job_key(job_id), mapping={"attempts": attempts, "error": error or ""})
            pipe.zadd(f"{self.prefix}:webhooks", {job_id: due})
        else:
            pipe.hset(self._job_key(job_id), mapping={"attempts": attempts, "error": error, "state": "dead"})
            pipe.expire(self._job_key(job_id), DEAD_TTL_S)
            pipe.zrem(f"{self.prefix}:webhooks", job_id)
        await pipe.execute()

    @mapped
    async def _webhook(self, job_id: str) -> dict | None:
        client = self._client()
        data = {k.decode(): v.decode() for k, v in (await client.hgetall(self._job_key(job_id))).items()}
        if not data:
            return None
        due = await client.zscore(f"{self.prefix}:webhooks", job_id)
        return {"state": data["state"], "attempts": int(data.get("attempts") or 0), "due": due,
                "error": data.get("error") or None}

    def _peer_key(self, peer_id: str) -> str:
        return f"{self.prefix}:peer:{peer_id}"

    def _peer_keys(self, peer_id: str) -> list[str]:
        """The peer's hash, its tombstone (after it left) and the set of all peers."""
        return [self._peer_key(peer_id), f"{self.prefix}:peer-left:{peer_id}", f"{self.prefix}:peers"]

    @mapped
    async def _put_peer(self, peer_id: str, pool: str, record: dict, last_seen: float, last_ts: int) -> bool:
        keys = [*self._peer_keys(peer_id), f"{self.prefix}:pool:{pool}"]
        return bool(await self._client().eval(_PUT_PEER, len(keys), *keys, json.dumps(record), pool,
                                              repr(last_seen), last_ts, peer_id, f"{self.prefix}:pool:",
                                              repr(self.clock())))

    @staticmethod
    def _peer(data: dict) -> dict | None:
        if not data:
            return None
        d = {k.decode(): v.decode() for k, v in data.items()}
        return {"record": json.loads(d["record"]), "pool": d["pool"], "last_seen": float(d["last_seen"]),
                "last_ts": int(d["last_ts"])}

    @mapped
    async def _get_peer(self, peer_id: str) -> dict | None:
        return self._peer(await self._client().hgetall(self._peer_key(peer_id)))

    @mapped
    async def _pool_peers(self, pool: str | None) -> list[dict]:
        client = self._client()
        members = f"{self.prefix}:pool:{pool}" if pool is not None else f"{self.prefix}:peers"
        ids = sorted(i.decode() for i in await client.smembers(members))
        pipe = client.pipeline(transaction=False)
        for peer_id in ids:
            pipe.hgetall(self._peer_key(peer_id))
        found = [self._peer(data) for data in await pipe.execute()] if ids else []
        return [p for p in found if p is not None and pool in (None, p["pool"])]

    @mapped
    async def _touch_peer(self, peer_id: str, last_seen: float, last_ts: int) -> bool:
        return bool(await self._client().eval(_TOUCH, 1, self._peer_key(peer_id), repr(last_seen), last_ts))

    @mapped
    async def _delete_peer(self, peer_id: str, last_ts: int | None, ttl_s: float) -> None:
        keys = self._peer_keys(peer_id)
        await self._client().eval(_DELETE_PEER, len(keys), *keys, peer_id, f"{self.prefix}:pool:",
                                  "" if last_ts is None else last_ts, repr(self.clock()), repr(ttl_s), GC_MARGIN_S)

    @mapped
    async def _put_profile(self, name: str, profile: dict | None, version: int, now: float) -> dict | None:
        text = "" if profile is None else json.dumps(profile)
        new = await self._client().eval(_PUT_PROFILE, 2, f"{self.prefix}:profile:{name}", f"{self.prefix}:profiles",
                                        name, version, text, repr(now))
        return None if new is None else {"name": name, "version": int(new), "profile": profile,
                                         "deleted": profile is None, "updated_at": now}

    @mapped
    async def _profiles(self, name: str | None) -> list[dict]:
        client = self._client()
        names = [name] if name is not None else sorted(n.decode() for n in await client.smembers(
            f"{self.prefix}:profiles"))
        pipe = client.pipeline(transaction=False)
        for each in names:
            pipe.hgetall(f"{self.prefix}:profile:{each}")
        found = []
        for each, data in zip(names, await pipe.execute() if names else [], strict=True):
            if data:
                d = {k.decode(): v.decode() for k, v in data.items()}
                found.append({"name": each, "version": int(d["version"]), "deleted": d["profile"] == "",
                              "profile": json.loads(d["profile"]) if d["profile"] else None,
                              "updated_at": float(d["updated_at"])})
        return found

    async def _publish(self, workers: str, worker: str, expires_at: float,
                       hashes: dict[str, Mapping[str, int]], sets: dict[str, Sequence[str]] | None = None) -> None:
        """One transaction: replace what `worker` publishes (hashes and sets, kept a GC margin
        past `expires_at`) and mark it live in the `workers` zset until `expires_at`."""
        keep_ms = int(self._claim_px(expires_at))
        sets = sets or {}
        pipe = self._client().pipeline(transaction=True)
        pipe.delete(*hashes, *sets)
        for key, mapping in hashes.items():
            if mapping:
                pipe.hset(key, mapping=dict(mapping))
                pipe.pexpire(key, keep_ms)
        for key, members in sets.items():
            if members:
                pipe.sadd(key, *members)
                pipe.pexpire(key, keep_ms)
        pipe.zadd(workers, {worker: expires_at})
        pipe.zremrangebyscore(workers, "-inf", self.clock())
        await pipe.execute()

    @mapped
    async def _put_served(self, worker: str, versions: Mapping[str, int], expires_at: float) -> None:
        prefix = f"{self.prefix}:profiles-served"
        await self._publish(f"{prefix}-workers", worker, expires_at, {f"{prefix}:{worker}": versions})

    @mapped
    async def _served(self, now: float) -> ProfilesServed:
        client = self._client()
        prefix = f"{self.prefix}:profiles-served"
        workers = [w.decode() for w in await client.zrangebyscore(f"{prefix}-workers", f"({now}", "+inf")]
        pipe = client.pipeline(transaction=False)
        for worker in workers:
            pipe.hgetall(f"{prefix}:{worker}")
        versions: dict[str, dict[int, int]] = {}
        for served in await pipe.execute() if workers else []:
            for name, version in served.items():
                at = versions.setdefault(name.decode(), {})
                at[int(version)] = at.get(int(version), 0) + 1
        return ProfilesServed(len(workers), versions)

    @mapped
    async def _put_load(self, worker: str, calls: dict[str, int], deployed: Sequence[str],
                        expires_at: float) -> None:
        await self._publish(f"{self.prefix}:load-workers", worker, expires_at, {f"{self.prefix}:load:{worker}": calls},
                            {f"{self.prefix}:deployed:{worker}": deployed})

    @mapped
    async def _loads(self, now: float) -> PeerLoads:
        client = self._client()
        workers = [w.decode() for w in await client.zrangebyscore(f"{self.prefix}:load-workers", f"({now}", "+inf")]
        pipe = client.pipeline(transaction=False)
        for worker in workers:
            pipe.hgetall(f"{self.prefix}:load:{worker}")
            pipe.smembers(f"{self.prefix}:deployed:{worker}")
        replies = await pipe.execute() if workers else []
        totals: dict[str, int] = {}
        held: dict[str, int] = {}
        for calls, deployed in zip(replies[::2], replies[1::2], strict=True):
            for peer, n in calls.items():
                totals[peer.decode()] = totals.get(peer.decode(), 0) + int(n)
            for peer in deployed:
                held[peer.decode()] = held.get(peer.decode(), 0) + 1
        return PeerLoads(len(workers), totals, held)

    @mapped
    async def _earnings(self, peer_id: str, limit: int) -> list[dict]:
        client = self._client()
        keys = [k.decode() for k in await client.zrevrange(f"{self.prefix}:earnings:{peer_id}", 0, limit - 1)]
        values = await client.mget([f"{self.prefix}:{RECEIPT}:{k}" for k in keys]) if keys else []
        return [json.loads(v)["record"] for v in values if v is not None]

    @mapped
    async def _totals(self, peer_ids: list[str]) -> dict[str, dict[str, dict[str, int]]]:
        pipe = self._client().pipeline(transaction=False)
        for peer in peer_ids:
            pipe.hvals(f"{self.prefix}:earnings:{peer}:paid")
        out: dict[str, dict[str, dict[str, int]]] = {}
        for peer, rows in zip(peer_ids, await pipe.execute(), strict=True):
            for raw in rows:
                currency, amount = json.loads(raw)
                t = out.setdefault(peer, {}).setdefault(currency, {"amount": 0, "receipts": 0})
                t["amount"] += amount
                t["receipts"] += 1
        return out

    async def _close(self) -> None:
        clients, self._clients = self._clients, weakref.WeakKeyDictionary()
        loop = asyncio.get_running_loop()
        if loop in clients:  # a client of another (stopped) loop cannot be closed from here
            await clients[loop].aclose()
