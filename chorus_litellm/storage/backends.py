"""The store the settings name (`CHORUS_STORE`: sqlite, the default, or redis), with its
outbox and flush interval. Apart from storage/store.py so that the facade never imports
its own backends.
"""

from __future__ import annotations

from ..settings import Settings, load_settings
from .store import Store


def store_from_settings(settings: Settings) -> Store:
    """The backend `settings.store` names, with its outbox and flush interval."""
    outbox, flush = settings.outbox_path, settings.outbox_flush_interval_s
    if settings.store == "redis":
        from .redis_backend import RedisStore

        return RedisStore(settings.redis_url, outbox, flush_interval_s=flush)
    from .sqlite_backend import SQLiteStore

    return SQLiteStore(settings.db_path, outbox, flush_interval_s=flush)


def store_from_env() -> Store:
    """`store_from_settings(load_settings())`: raises ConfigError naming a bad variable."""
    return store_from_settings(load_settings())
