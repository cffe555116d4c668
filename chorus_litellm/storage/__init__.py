"""Durable, team-scoped storage: the `Store` facade (`store.py`) over a SQLite or Redis
backend, with a local outbox for records a backend could not take. Internal."""
