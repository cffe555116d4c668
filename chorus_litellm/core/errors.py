"""The exception tree. Config mistakes are the operator's; run failures are the request's.

    ChorusError
    ├── ConfigError            a profile in litellm_config.yaml is wrong (raised at startup)
    ├── ProfileError           a profile sent to the admin API is refused   -> its own 4xx
    └── RunError               one request could not be served
        ├── RequestError       the client sent something invalid          -> HTTP 400
        ├── ConflictError      a debate_id reused for a different request  -> HTTP 409
        ├── QuorumError        too few panel members answered              -> HTTP 502
        ├── UpstreamError      one inner call failed (timeout, HTTP, filter) -> HTTP 502
        ├── DeadlineError      the whole run outlived its deadline          -> HTTP 504
        ├── PoolError          too few live peers in a pool for the quorum   -> HTTP 503
        ├── BudgetError        the run's worst case exceeds the caller's budget -> LiteLLM's budget error
        └── StoreUnavailable   neither the store nor the outbox took a write -> HTTP 503

A failed panel member is not an exception: it is a `PanelFailure` value. Only a missed
quorum, a failed forward to `single_model` or a failed client request become errors,
and `gateway/provider.py` maps them once to LiteLLM's OpenAI-style exceptions.
"""

from __future__ import annotations

import functools
from collections.abc import Callable


class ChorusError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(ChorusError):
    """A profile is misconfigured. The message names the profile and the field."""


class ProfileError(ChorusError):
    """The admin API (`/chorus/v1/profiles`) refuses a change: `status_code` is 400 (a bad
    body, naming the field), 404 (no such profile) or 409 (a name taken, a stale version,
    a config-file profile); the message says which and why."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(message)
        self.status_code = status_code


class RunError(ChorusError):
    """A request failed. `status_code` is the HTTP status a client should see."""

    status_code = 500


class RequestError(RunError):
    """Invalid input from the client (bad messages, options, sizes)."""

    status_code = 400

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class AccessError(RequestError):
    """The caller's key (or its team) may not call a model the request names."""

    status_code = 403


class UpstreamError(RunError):
    """One inner LLM call failed.

    `kind` is one of: timeout, http_error, content_filter, empty, connection, error.
    """

    status_code = 502

    def __init__(self, kind: str, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.kind = kind
        self.status = status

    def describe(self) -> str:
        status = f" {self.status}" if self.status else ""
        return f"{self.kind}{status}: {self}"


class QuorumError(RunError):
    """Fewer than `min_quorum` panel members answered. Lists every failure."""

    status_code = 502

    def __init__(self, message: str, failures: tuple = (), answers: tuple = (), required: int = 0) -> None:
        super().__init__(message)
        self.failures, self.answers, self.required = failures, answers, required


class ConflictError(RunError):
    """An idempotency key (`chorus.debate_id`) was already used for a different request."""

    status_code = 409


class DeadlineError(RunError):
    """The run's end-to-end deadline (`run_timeout_s` or the client's `timeout`) passed."""

    status_code = 504


class PoolError(RunError):
    """A profile's peer pool has too few live peers to seat its quorum."""

    status_code = 503


class BudgetError(RunError):
    """The run's worst-case cost does not fit the caller's remaining LiteLLM budget
    (key, team or user), refused before any model is called; or the cost cap stopped a
    run that must answer in JSON before any JSON answer existed. Served as LiteLLM's own
    budget error (`budget_exceeded`, 422; 429 on LiteLLM 1.98)."""

    status_code = 422


class StoreUnavailable(RunError):
    """The store could not be read or written, and neither could the local outbox."""

    status_code = 503


def unavailable_on(*errors: type[BaseException]) -> Callable:
    """Decorate a backend's async method: `errors` leave it as StoreUnavailable naming `self.name`."""
    def decorate(method: Callable) -> Callable:
        @functools.wraps(method)
        async def mapped(self, *args, **kwargs):
            try:
                return await method(self, *args, **kwargs)
            except errors as exc:
                raise StoreUnavailable(f"{self.name} unavailable ({type(exc).__name__}: {exc})") from exc
        return mapped
    return decorate
