"""Profiles at run time: the rules of the admin API (gateway/profile_routes.py) and of the
sync that serves stored profiles (gateway/profiles.py). Pure: no store, no Router.

A stored profile is a `model_info.chorus` block kept in the store (core/ports.py,
`ProfileRegistry`) under a name, and served as the model `fusion/<name>` beside the
profiles of litellm_config.yaml, which stay read-only through the API.

- A body is validated exactly as the config is (`config.parse_profile`, the models the
  proxy serves standing in for `model_list`): a problem is a 400 naming the field, e.g.
  `panel.members[1].model`. Any `fusion/*` model inside a profile is refused (recursion),
  whether or not it is served yet.
- A name is `[a-z0-9][a-z0-9._-]*`, at most 63 characters. A config-file profile's name,
  or a name whose model (`fusion/<name>`, `<provider>/<name>`) the proxy already serves
  otherwise, is a 409 naming it.
- Versions: creating makes version 1 (or one past a deleted profile's last); a change
  or a delete names the version it read and makes the next one; a stale version is a
  409 (the store's compare-and-set). A delete keeps a tombstone with its version, so a
  version is never reused and no stale write brings the profile back. A config-file
  profile's version is `CONFIG_VERSION` (0): it changes only with the file.
- Serving (`plan`): each worker serves the newest version it has seen of every live
  stored profile; a stale read never rolls a newer one back, a tombstone at least as new
  takes it down, and so does a name the store no longer knows at all.
- Rollout (`rollout`): every worker publishes the versions it serves; a version's rollout
  is complete when every live worker serves it, a delete's when none serves any.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .config import ProfileConfig, field_path, parse_profile
from .errors import ConfigError, ProfileError
from .ports import ProfilesServed

NAME = r"^[a-z0-9][a-z0-9._-]{0,62}$"
MODEL_PREFIX = "fusion"  # a stored profile `<name>` is the model `fusion/<name>`
CONFIG_VERSION = 0  # the version runs of a config-file profile report


def model_name(name: str) -> str:
    return f"{MODEL_PREFIX}/{name}"


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewProfile(_Body):
    """POST /chorus/v1/profiles"""

    name: str = Field(pattern=NAME)
    profile: dict[str, Any]


class ProfileChange(_Body):
    """PUT /chorus/v1/profiles/{name}: the version read, and the whole new block."""

    version: int = Field(ge=1)
    profile: dict[str, Any]


Body = TypeVar("Body", bound=_Body)


def read_body(kind: type[Body], raw: bytes | str) -> Body:
    """The request body as `kind`; a ProfileError (400) naming the first bad field."""
    try:
        return kind.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ProfileError(400, f"{field_path(err['loc']) or '(body)'}: {err['msg']}") from None


def check_name(name: str, *, config_profiles: Collection[str], served: Collection[str], provider: str) -> None:
    """A ProfileError (409) when `name` is a config-file profile, or its model is already
    one the proxy serves (`served`: the Router's model names and `<provider>/...` models,
    stored profiles' own deployments left out)."""
    if name in config_profiles:
        raise ProfileError(409, f"name: profile {name!r} is defined in litellm_config.yaml (read-only here); "
                                "choose another name")
    for model in (model_name(name), f"{provider}/{name}"):
        if model in served:
            raise ProfileError(409, f"name: {model!r} is already a model this proxy serves; choose another name")


def validate(name: str, raw: dict, *, known_models: set[str] | None, fusion_models: frozenset[str],
             provider: str) -> ProfileConfig:
    """`raw` validated as litellm_config.yaml's `model_info.chorus` is; a ProfileError
    (400) listing every problem, each naming its field."""
    try:  # the fusion models it names that are not served (yet): refused all the same
        named: Iterable[str] = ProfileConfig.model_validate(raw).referenced_models().values()
    except ValidationError:
        named = ()  # parse_profile reports it, field by field
    reserved = {m for m in named if m.startswith(f"{MODEL_PREFIX}/")}
    try:
        return parse_profile(name, raw, known_models=known_models, provider=provider,
                             fusion_models=fusion_models | reserved)
    except ConfigError as exc:
        raise ProfileError(400, str(exc)) from None


def plan(records: Iterable[dict], deployed: Mapping[str, int],
         config_profiles: Collection[str]) -> tuple[dict[str, dict], set[str]]:
    """What a worker serving `deployed` (name -> version) serves after reading `records`
    (the store's, tombstones included): (records to deploy, names to keep as they are).
    Every other deployed name is taken down. Config-file names are never served from here."""
    deploy: dict[str, dict] = {}
    keep: set[str] = set()
    for record in records:
        name, version = record["name"], record["version"]
        if name in config_profiles:
            continue
        current = deployed.get(name)
        if current is not None and current >= version:
            if not (record["deleted"] and version >= current):
                keep.add(name)  # newer than what this read says (a stale read), or the same
        elif not record["deleted"]:
            deploy[name] = record
    return deploy, keep


def rollout(served: ProfilesServed, name: str, version: int | None) -> dict:
    """How far `name` at `version` (None: deleted) has reached: the live workers, those
    serving this version, how many serve each version, and whether that is all of them."""
    versions = served.versions.get(name, {})
    serving = versions.get(version, 0) if version is not None else 0
    complete = not versions if version is None else served.workers > 0 and serving == served.workers
    return {"workers": served.workers, "serving": serving,
            "versions": {str(v): n for v, n in sorted(versions.items())}, "complete": complete}
