"""The shared store: Redis, for several proxy replicas (see adapters/store.py).

Keys are `chorus:{kind}:{owner}:{debate_id}`; first write wins (`SET NX`), transcripts
carry their TTL (`EX`).
"""

from __future__ import annotations

import json
from pathlib import Path

import redis

from .store import Store


class RedisStore(Store):
    def __init__(self, url: str, outbox: str | Path | None = None, prefix: str = "chorus") -> None:
        super().__init__(outbox or "chorus-redis.outbox.jsonl")
        self.client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.prefix = prefix

    def _key(self, kind, owner, debate_id) -> str:
        return f"{self.prefix}:{kind}:{owner}:{debate_id}"

    def _put(self, kind, owner, debate_id, record, ttl_s):
        key = self._key(kind, owner, debate_id)
        self.client.set(key, json.dumps(record), nx=True, ex=ttl_s or None)
        stored = self.client.get(key)
        return json.loads(stored) if stored is not None else record

    def _get(self, kind, owner, debate_id):
        value = self.client.get(self._key(kind, owner, debate_id))
        return json.loads(value) if value is not None else None

    def _add_counters(self, payee, deltas):
        key = f"{self.prefix}:reputation:{payee}"
        pipe = self.client.pipeline(transaction=True)
        for counter, value in deltas.items():
            pipe.hincrbyfloat(key, counter, float(value))
        pipe.sadd(f"{self.prefix}:reputation", payee)
        pipe.execute()

    def _counters(self, payees):
        names = payees if payees is not None else sorted(
            p.decode() for p in self.client.smembers(f"{self.prefix}:reputation"))
        out = {}
        for payee in names:
            data = self.client.hgetall(f"{self.prefix}:reputation:{payee}")
            if data:
                out[payee] = {k.decode(): float(v) for k, v in data.items()}
        return out
