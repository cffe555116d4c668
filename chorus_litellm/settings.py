"""Process settings: every `CHORUS_*` environment variable the package reads, validated once.

Boundary: this module reads the environment (or a mapping given instead) and resolves
paths; it opens no file and no connection (it creates at most the data directories).
`load_settings()` turns a validation error into a `ConfigError` naming the variable
(`CHORUS_STORE: Input should be 'sqlite' or 'redis'`). Profile configuration
(litellm_config.yaml) lives in `core/config.py`, not here.

Paths are made absolute at load time, so a later `chdir` changes nothing, and the
default data directory is `$XDG_DATA_HOME/chorus-litellm` (else
`~/.local/share/chorus-litellm`), never the working directory.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from .observe.allowlist import Allowlist
from .core.errors import ConfigError
from .market.peers import Policy

ENV_PREFIX = "CHORUS_"

# The mapping `load_settings` reads; None means os.environ (what `Settings()` reads).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("chorus_environ", default=None)


def data_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_DATA_HOME/chorus-litellm`, else `~/.local/share/chorus-litellm` (XDG spec:
    a relative XDG_DATA_HOME is ignored)."""
    xdg = (os.environ if environ is None else environ).get("XDG_DATA_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "chorus-litellm"


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    """`$XDG_CACHE_HOME/chorus-litellm`, else `~/.cache/chorus-litellm`: files that can be
    rebuilt (the distilled static embedding model), shared by every data dir."""
    xdg = (os.environ if environ is None else environ).get("XDG_CACHE_HOME", "")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".cache"
    return base / "chorus-litellm"


def _default_cache_dir() -> Path:
    return cache_dir(_ENVIRON.get())


def outbox_beside(db_path: Path) -> Path:
    """The default outbox of a SQLite store: `chorus.sqlite3` -> `chorus.outbox.sqlite3`."""
    return db_path.with_name(f"{db_path.stem}.outbox.sqlite3")


def _default_db_path() -> Path:
    return data_dir(_ENVIRON.get()) / "chorus.sqlite3"


class _EnvironSource(PydanticBaseSettingsSource):
    """The non-empty `CHORUS_<FIELD>` variables of the mapping being loaded."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self().get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        env = _ENVIRON.get()
        env = os.environ if env is None else env
        names = {name: ENV_PREFIX + name.upper() for name in self.settings_cls.model_fields}
        return {name: env[var] for name, var in names.items() if env.get(var)}


class Settings(BaseSettings):
    """The process's settings; frozen. Build it with `load_settings()`."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, frozen=True, extra="ignore")

    # SQLite needs no server; Redis is the choice only when several replicas share records.
    store: Literal["sqlite", "redis"] = "sqlite"
    # The user's data directory: the working directory may be read-only or shared.
    db_path: Path = Field(default_factory=_default_db_path)
    # Where `redis-server` listens out of the box.
    redis_url: str = "redis://127.0.0.1:6379/0"
    # Local disk that outlives a backend outage: beside the db (sqlite), in the data dir (redis).
    outbox_path: Path | None = None
    # Records kept during an outage reach the backend seconds after it recovers, at no cost.
    outbox_flush_interval_s: float = Field(5.0, gt=0)
    # No key, no bounties: receipts cannot be signed. SecretStr keeps it out of reprs.
    signing_key: SecretStr | None = None
    # The JSON `chorus keygen` writes; None: the key (if any) comes from signing_key.
    signing_key_file: Path | None = None
    # Empty until the first key rotation: only the current key verifies receipts.
    previous_public_keys: str = ""
    # Rebuildable files: the static embedding model distilled once per machine (~15 MB).
    cache_dir: Path = Field(default_factory=_default_cache_dir)
    # None: torch's own default (all cores); set it when several workers share a host.
    torch_threads: int | None = Field(None, ge=1)
    # callback_url webhooks reach public addresses only; list hosts or CIDRs (comma or space
    # separated) to admit private ones on purpose (e.g. "hooks.internal, 10.0.0.0/8").
    webhook_allowlist: str = ""
    # One delivery attempt: connect, send, first bytes of the answer.
    webhook_timeout_s: float = Field(5.0, gt=0, le=60)
    # Retries back off from 2 s, doubling to at most 10 min: 8 attempts span about 8 minutes.
    webhook_max_attempts: int = Field(8, ge=1, le=50)
    # Marketplace peers (market/peers.py): nobody joins until the operator says how.
    peer_admission: Literal["closed", "open", "allowlist", "invite"] = "closed"
    # allowlist: the peer key ids (ed25519:<16 hex>) that may join, comma separated.
    peer_keys: str = ""
    # invite: one token per pool, "pool=token, pool=token" (tokens of 16+ characters).
    peer_invites: SecretStr | None = None
    # Peers beat every 20 s; three missed beats and a peer is away (not drawn).
    peer_away_after_s: float = Field(60.0, gt=0)
    # A signed peer request older or newer than this is refused (clock skew allowance).
    peer_signature_window_s: float = Field(300.0, gt=0, le=3600)
    # Peer base URLs reach public addresses only; hosts or CIDRs here admit private ones
    # (a LAN GPU box: "10.0.0.0/8"). Separate from the webhook allowlist on purpose.
    peer_url_allowlist: str = ""
    # How often each worker brings its Router in step with the pool (a new peer is drawable
    # within about this long plus its probe); each pass is one store read.
    peer_sync_s: float = Field(2.0, ge=0.1, le=60)
    # How often each worker brings its Router in step with the profiles created at run time
    # (POST/PUT/DELETE /chorus/v1/profiles): another worker or replica serves a change within
    # about this long; each pass is one store read. The worker that took the change serves it at once.
    profile_sync_s: float = Field(2.0, ge=0.1, le=60)
    # Live-view event streams (GET /chorus/v1/runs/{id}/events) one key may hold open at
    # once across every worker and replica sharing the store (leased slots; per worker while
    # the store is down), waiting ones included; the next is a 429.
    event_streams_per_key: int = Field(8, ge=1, le=10_000)
    # Payees are unbounded label values (one series each): off unless the operator wants them.
    metrics_payee_label: bool = False
    # None: only the test proxy writes a spend log; nothing in the package needs one.
    spend_log: str | None = None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: Any,
                                   *_: Any, **__: Any) -> tuple[PydanticBaseSettingsSource, ...]:
        return init_settings, _EnvironSource(settings_cls)

    @model_validator(mode="before")
    @classmethod
    def _default_outbox(cls, data: Any) -> Any:
        if isinstance(data, dict) and not data.get("outbox_path"):
            if data.get("store") == "redis":
                outbox = data_dir(_ENVIRON.get()) / "chorus-redis.outbox.sqlite3"
            else:
                outbox = outbox_beside(Path(data.get("db_path") or _default_db_path()))
            data = {**data, "outbox_path": outbox}
        return data

    @field_validator("db_path", "outbox_path", "signing_key_file", "cache_dir")
    @classmethod
    def _absolute(cls, path: Path | None) -> Path | None:
        return None if path is None else Path(os.path.abspath(path.expanduser()))

    @field_validator("peer_invites")
    @classmethod
    def _invites(cls, text: SecretStr | None) -> SecretStr | None:
        if text is not None:
            Policy.parse_invites(text.get_secret_value())  # a bad entry is a ValueError naming it
        return text

    @field_validator("webhook_allowlist", "peer_url_allowlist")
    @classmethod
    def _allowlist(cls, text: str) -> str:
        Allowlist.parse(text)  # a bad entry is a ValueError naming it
        return text

    def peer_policy(self) -> Policy:
        """The operator's peer admission and health rules (peers.Policy)."""
        invites = Policy.parse_invites(self.peer_invites.get_secret_value()) if self.peer_invites else ()
        return Policy(self.peer_admission, frozenset(k.strip() for k in self.peer_keys.split(",") if k.strip()),
                      invites, self.peer_signature_window_s, self.peer_away_after_s)

    @property
    def previous_keys(self) -> list[str]:
        """`previous_public_keys` split on commas: base64 public keys or key files."""
        return [item.strip() for item in self.previous_public_keys.split(",") if item.strip()]


def load_settings(environ: Mapping[str, str] | None = None, *, create_dirs: bool = True) -> Settings:
    """Validate the `CHORUS_*` variables of `environ` (default: os.environ).

    With `create_dirs`, the parent directories of the db and outbox are created when
    possible (a failure here is not an error: the store reports it when it opens).
    """
    token = _ENVIRON.set(environ)
    try:
        settings = Settings()
    except ValidationError as exc:
        raise ConfigError("; ".join(_describe(err) for err in exc.errors())) from None
    finally:
        _ENVIRON.reset(token)
    if create_dirs:
        for path in (settings.db_path if settings.store == "sqlite" else None, settings.outbox_path):
            if path is not None:
                with contextlib.suppress(OSError):
                    path.parent.mkdir(parents=True, exist_ok=True)
    return settings


def _describe(err: Any) -> str:
    loc = err.get("loc") or ()
    return f"{ENV_PREFIX}{str(loc[0]).upper()}: {err['msg']}" if loc else err["msg"]
