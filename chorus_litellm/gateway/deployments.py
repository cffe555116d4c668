"""The Router deployments chorus adds while the proxy runs: live peers (market/sync.py)
and stored profiles (gateway/profiles.py), each kept in step with the store by a sync.

Boundary: reads and writes the proxy's Router only. A deployment is tagged by a key of
its `model_info` (`chorus_peer`, `chorus_profile`) naming what it serves, and its id
changes whenever what it serves does (a new registration, a new version), so a pass
compares ids: an id the Router holds that is no longer wanted goes, a wanted one it does
not hold comes. The Router is read on every pass, so a Router the proxy rebuilt is
filled again by the next one.
"""

from __future__ import annotations

import hashlib
from typing import Any


def deployment_id(prefix: str, *parts: object) -> str:
    """`<prefix>-<16 hex>` of `parts`: a new id whenever one of them changes."""
    return f"{prefix}-" + hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:16]


def tagged(router: Any, tag: str) -> dict[str, dict]:
    """The Router's deployments tagged `tag`, by the tag's value (the peer id, the profile name)."""
    return {str(info[tag]): d for d in router.get_model_list() or []
            if (info := d.get("model_info") or {}).get(tag)}


def reconcile(router: Any, tag: str, wanted: dict[str, dict]) -> tuple[dict[str, dict], list[str], dict[str, dict]]:
    """Take down the `tag` deployments not in `wanted` or changed (another id): (the ones the
    Router held, by tag value; those removed; the wanted ones it does not hold now, for the
    caller to add, at once or after a probe, with `add`)."""
    current = tagged(router, tag)
    removed = [key for key, dep in current.items() if wanted.get(key, {}).get("model_info", {}).get("id")
               != dep["model_info"]["id"]]
    for key in removed:
        router.delete_deployment(id=current[key]["model_info"]["id"])
    new = {key: dep for key, dep in wanted.items() if key not in current or key in removed}
    return current, removed, new


def add(router: Any, dep: dict) -> None:
    from litellm.types.router import Deployment

    router.upsert_deployment(Deployment(**dep))
