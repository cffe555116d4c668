"""One request's run, single-flight: a `debate_id` runs once at a time across workers
and replicas, and a retry replays it.

The first request claims the id in the store (`Store.claim`, renewed every
`CLAIM_LEASE_S / 3` while the run is alive, released once the transcript is stored); a
duplicate that finds the claim waits (polling the store with backoff, within its own
deadline) and replays the stored answer like any later retry, charged nothing; with
`chorus.wait: false` it gets a 409 with `Retry-After` instead; a different request under
the claim is a 409 as always. A claim whose holder crashed expires and the next
duplicate runs; a store that cannot take claims (an outage) lets each request run as
before. A `callback_url` is checked before anything runs and queued its summary when the
run ends (before the answer does).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any, Protocol

from ..core import pipeline, runlog
from ..core.errors import ConflictError, DeadlineError, StoreUnavailable
from ..core.events import CLIENT_KINDS, AnswerDelta, Event, Replayed, RunDone
from ..core.ports import Claim, Receipts, RunClaims
from ..core.report import RunReport
from ..core.request import FusionRequest
from ..settlement.finish import prior_run
from ..core.stages.bounty import idempotency_hash
from .app import App
from .translate import extension

log = logging.getLogger("chorus_litellm")

CLAIM_LEASE_S = 30.0  # a crashed holder's claim frees its debate_id this long after its last renewal
WAIT_POLL_S = (0.05, 1.0)  # a waiting duplicate polls the store from this delay, x1.5 each time, up to that
RETRY_AFTER_S = 2  # what a duplicate that will not wait is told (`Retry-After`)




class FirstRuns(RunClaims, Receipts, Protocol):
    """What single flight takes (a claim) and reads (the first run's receipt or transcript)."""

async def run_events(app: App, req: FusionRequest, logging_obj: Any, timeout: Any) -> AsyncGenerator[Event, None]:
    """The run's events, or a replay of the first run for a retried debate_id; a
    `callback_url` is checked first and queued its summary when the run ends."""
    if req.callback_url:
        await app.webhooks().check(req.callback_url)  # a refused URL: 400, no model called
    store = await app.started_store()
    prior, claim = await first_run(store, req, timeout)
    if prior is not None:  # the first run queued its own webhook
        yield AnswerDelta(prior["answer"])
        yield Replayed(prior)
        return
    done = False
    heartbeat = asyncio.ensure_future(_heartbeat(store, claim)) if claim is not None else None
    try:
        async with contextlib.aclosing(pipeline.run(app.context(req, logging_obj, timeout))) as events:
            async for event in events:
                if isinstance(event, RunDone):
                    if req.callback_url:
                        # before the answer ends
                        await _notify(app, req, "run.done", _done_summary(event.report, req))
                        done = True
                    await _release(store, heartbeat, claim)  # its transcript is stored: duplicates replay it
                    heartbeat = claim = None
                if event.kind in CLIENT_KINDS:  # the rest is the log's subscribers'
                    yield event
    except BaseException as exc:
        if req.callback_url and not done:  # may be a closing generator: queued beside, not awaited here
            task = asyncio.ensure_future(_notify(app, req, "run.failed", {**_summary(req), **runlog.failed(exc)}))
            app.background.add(task)
            task.add_done_callback(app.background.discard)
        raise
    finally:
        if claim is not None:  # failed or abandoned: the id is free for a retry (or a waiting duplicate)
            task = asyncio.ensure_future(_release(store, heartbeat, claim))
            app.background.add(task)
            task.add_done_callback(app.background.discard)
            with contextlib.suppress(Exception):
                await asyncio.shield(task)

async def first_run(store: FirstRuns, req: FusionRequest, timeout: Any) -> tuple[dict | None, Claim | None]:
    """Single flight for a client-chosen `debate_id`: (the stored run to replay, None),
    or (None, this request's claim) to run it, or (None, None) to run unclaimed (no
    debate_id or owner, or a store that cannot take claims). A duplicate of a run in
    progress waits for it (or, with `chorus.wait: false`, gets a 409 with Retry-After);
    one with a different request is a 409."""
    if req.options.debate_id is None or req.owner is None:
        return await prior_run(store, req), None
    prior = await _stored(store, req)
    if prior is not None:
        return prior, None
    digest = idempotency_hash(req.profile_name, req.messages, req.bounty)
    loop = asyncio.get_running_loop()
    seconds = req.profile.limits.run_timeout_s
    if isinstance(timeout, int | float) and timeout > 0:
        seconds = min(seconds, float(timeout))
    deadline, delay = loop.time() + seconds, WAIT_POLL_S[0]
    while True:
        try:
            claim = await store.claim(req.owner, req.debate_id, digest, CLAIM_LEASE_S)
        except StoreUnavailable as exc:
            log.warning("chorus: run %s not single-flight (%s): it runs unclaimed", req.debate_id, exc)
            return None, None
        if claim.mine:
            try:  # a first run that ended between the two looks; a conflict is final now
                prior = await prior_run(store, req)
            except BaseException:
                await _release(store, None, claim)
                raise
            if prior is not None:
                await _release(store, None, claim)
            return prior, (None if prior is not None else claim)
        if claim.request_hash != digest:
            raise ConflictError(f"chorus.debate_id {req.debate_id!r} is in use by a different request "
                                "(profile, messages or bounty differ); use a new debate_id")
        if not req.options.wait:
            busy = ConflictError(f"chorus.debate_id {req.debate_id!r} is still running (its first request); "
                                 "retry later to get its answer, or send chorus.wait: true to wait for it")
            busy.retry_after = RETRY_AFTER_S  # type: ignore[attr-defined]
            raise busy
        if loop.time() >= deadline:
            raise DeadlineError(f"chorus.debate_id {req.debate_id!r}: its first run was still running after "
                                f"{seconds:g} s of waiting")
        await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
        delay = min(delay * 1.5, WAIT_POLL_S[1])
        prior = await _stored(store, req)
        if prior is not None:
            return prior, None

async def _stored(store: Receipts, req: FusionRequest) -> dict | None:
    """`prior_run` outside the claim: its 409 waits to be decided under the claim (a run
    in progress may have stored its receipt and not yet its transcript)."""
    try:
        return await prior_run(store, req)
    except ConflictError:
        return None

async def _heartbeat(store: RunClaims, claim: Claim) -> None:
    """Renew the run's claim while it is alive (cancelled when it ends)."""
    while True:
        await asyncio.sleep(CLAIM_LEASE_S / 3)
        try:
            if not await store.renew(claim, CLAIM_LEASE_S):
                log.warning("chorus: run %s lost its single-flight claim (expired and taken)", claim.debate_id)
                return
        except StoreUnavailable as exc:
            log.warning("chorus: run %s claim not renewed (%s)", claim.debate_id, exc)

async def _release(store: RunClaims, heartbeat: asyncio.Future | None, claim: Claim | None) -> None:
    if heartbeat is not None:
        heartbeat.cancel()
    if claim is not None:
        try:
            await store.release(claim)
        except StoreUnavailable as exc:  # it expires by itself
            log.warning("chorus: run %s claim not released (%s)", claim.debate_id, exc)

async def _notify(app: App, req: FusionRequest, event: str, payload: dict) -> None:
    assert req.callback_url is not None
    if await app.webhooks().enqueue(req.callback_url, req.owner, req.debate_id, event, payload) is None:
        log.error("chorus: webhook for run %s not queued: store and outbox unavailable", req.debate_id)


def _summary(req: FusionRequest) -> dict:
    return {"debate_id": req.debate_id, "profile": req.profile_name, "model": req.model}


def _done_summary(report: RunReport, req: FusionRequest) -> dict:
    """A finished run for its webhook: the answer, the `chorus` extension, the receipt."""
    return {**_summary(req), "status": 200, "answer": report.synthesis.text if report.synthesis else "",
            "chorus": extension(report, req), "receipt": report.receipt}
