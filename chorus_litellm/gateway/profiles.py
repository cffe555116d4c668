"""Stored profiles, served: each worker keeps its Router and its handler in step with the store.

Boundary: reads the store's profiles (`ProfileRegistry`), writes the proxy's Router
(gateway/deployments.py) and the handler's profile map. Every `interval_s`
(CHORUS_PROFILE_SYNC_S), and at once on the worker that made a change:

- each live stored profile, at the newest version this worker has seen
  (core/profiles.plan: a stale read never rolls a newer one back, a tombstone takes it
  down), is a deployment `fusion/<name>` -> `<provider>/<name>`, priced 0 like a config
  entry, whose `model_info` carries the block (`chorus`), the name (`chorus_profile`) and
  the version (`chorus_profile_version`). The provider reads a run's profile and the
  version it reports from the deployment the Router picked for it, so a run never mixes
  two versions, and a run under way when its profile changes finishes on its own.
- the handler's profile map (`/chorus/v1/models`, the personas a peer may offer) and
  the model names the `x-chorus-debate-id` header answers for follow the Router.
- a stored block this code cannot parse (written by another release of it) is not served
  (logged); a version already served stays until a newer one parses.
- each pass publishes the version of every profile this worker now serves (the config
  file's at 0), valid for three passes: the admin API's `rollout` counts the workers
  and replicas serving each version, so a change is known to be live everywhere.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from typing import Any, Protocol

from ..core.background import Periodic
from ..core.config import ProfileConfig, parse_profile
from ..core.errors import ConfigError
from ..core.ports import ProfileRegistry
from ..core.profiles import model_name, plan
from .deployments import add, deployment_id, reconcile, tagged

log = logging.getLogger("chorus_litellm")

TAG = "chorus_profile"  # the model_info key naming a stored profile's deployment
VERSION = "chorus_profile_version"


class Served(Protocol):
    """What the provider serves (gateway/provider.FusionHandler)."""

    provider: str
    profiles: dict[str, ProfileConfig]  # config-file and stored, by name
    config_profiles: frozenset[str]  # the config file's: never touched from here
    fusion_models: set[str]  # the model names of fusion deployments (the header's)


def deployment(record: dict, provider: str) -> dict:
    """The Router deployment serving a stored profile's version (pure)."""
    name, version = record["name"], record["version"]
    return {"model_name": model_name(name), "litellm_params": {"model": f"{provider}/{name}"},
            "model_info": {"id": deployment_id("chorus-profile", name, version), TAG: name, VERSION: version,
                           "chorus": record["profile"], "input_cost_per_token": 0, "output_cost_per_token": 0}}


def version_of(model_info: dict | None) -> int:
    """The stored version a deployment serves; 0 (core/profiles.CONFIG_VERSION) for a config entry."""
    return int((model_info or {}).get(VERSION) or 0)


class ProfileSync:
    def __init__(self, store: ProfileRegistry, get_router: Callable[[], Any], served: Served, *,
                 interval_s: float = 2.0) -> None:
        self.store, self.get_router, self.served = store, get_router, served
        self.interval_s, self.worker = interval_s, uuid.uuid4().hex[:12]
        self._loop = Periodic("profile sync", interval_s, self.sync_once)
        self._one_pass = asyncio.Lock()

    async def sync_once(self) -> dict[str, list[str]]:
        """One pass; the profile names (re)deployed and taken down. Passes run one at a
        time: a periodic pass that read the store before an admin's change must not
        reconcile after the change's own pass and take the new profile down again."""
        async with self._one_pass:
            return await self._pass()

    async def _pass(self) -> dict[str, list[str]]:
        router = self.get_router()
        if router is None:
            return {"added": [], "removed": []}
        records = await self.store.list_profiles()
        deployed = tagged(router, TAG)
        deploy, keep = plan(records, {n: version_of(d["model_info"]) for n, d in deployed.items()},
                            self.served.config_profiles)
        wanted = {name: deployed[name] for name in keep}
        parsed: dict[str, ProfileConfig] = {}
        for name, record in deploy.items():
            try:
                parsed[name] = parse_profile(name, record["profile"], provider=self.served.provider)
                wanted[name] = deployment(record, self.served.provider)
            except ConfigError as exc:
                log.error("chorus: stored profile %s version %s not served: %s", name, record["version"], exc)
                if name in deployed:
                    wanted[name] = deployed[name]
        _held, removed, new = reconcile(router, TAG, wanted)
        for dep in new.values():
            add(router, dep)
        self._serve(removed, wanted, parsed)
        serving = {name: version_of(dep["model_info"]) for name, dep in wanted.items()}
        await self.store.put_profiles_served(self.worker, {**dict.fromkeys(self.served.config_profiles, 0), **serving},
                                             3 * self.interval_s)
        if new or set(removed) - set(new):
            log.info("chorus: stored profiles deployed %s, taken down %s", sorted(new), sorted(set(removed) - set(new)))
        return {"added": sorted(new), "removed": sorted(set(removed) - set(new))}

    def _serve(self, removed: list[str], wanted: dict[str, dict], parsed: dict[str, ProfileConfig]) -> None:
        """The handler's profile map and header names, as the Router now stands."""
        served = self.served
        for name in removed:
            if name not in wanted and name not in served.config_profiles:
                served.profiles.pop(name, None)
                served.fusion_models.discard(model_name(name))
        for name, dep in wanted.items():
            if name not in parsed and name not in served.profiles:  # deployed by another loop's sync
                parsed[name] = parse_profile(name, dep["model_info"]["chorus"], provider=served.provider)
            served.fusion_models.add(model_name(name))
        served.profiles.update(parsed)

    def start(self) -> None:
        self._loop.start()

    async def aclose(self) -> None:
        await self._loop.aclose()
