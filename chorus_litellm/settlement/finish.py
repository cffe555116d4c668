"""Step 5 of the pipeline: pay the bounty, keep the transcript, count reputation; and
the idempotency check that answers a retried `debate_id` before anything runs.

Contributions come from the run's typed `Outcome`: every seat that took part in any
round, eligible when its answer is among those the judge worked from, else with the
reason from its latest round (a failure kind, or the echo watchdog's verdict). Impact
weighs the judge's per-claim source labels, cross-checked by embedding each sentence of
the final answer against chunks of each source answer. The split is exact
(core/stages/bounty.py); the receipt is signed and stored before the response completes.
A receipt is promised only once stored (or outboxed): if neither could take it, the run
answers with `settlement.status: unsettled` and pays nothing.
"""

from __future__ import annotations

import dataclasses
import hashlib
from datetime import UTC, datetime

from ..core.errors import ConflictError, StoreUnavailable
from ..core.ports import Embedder, ReceiptSigner, Receipts, Reputation
from ..core.report import RunReport
from ..core.request import FusionRequest
from ..core.stages import reputation
from ..core.stages import bounty as s


def contributions(report: RunReport) -> list[s.Contribution]:
    outcome = report.outcome
    if outcome is None:
        return []
    used = {a.seat.name: a for a in outcome.panel.answers}
    out = [s.Contribution(a.seat.name, a.seat.model, a.seat.payee_id, a.completion.text, True, peer=a.seat.peer)
           for a in used.values()]
    for name, result in outcome.last_results().items():
        if name not in used:
            out.append(s.Contribution(name, result.seat.model, result.seat.payee_id, result.text, False,
                                      reason=result.reason or "not used", peer=result.seat.peer))
    return out


def _judged_points(report: RunReport) -> list[tuple[str, tuple[str, ...]]]:
    analysis = report.verdict.analysis if report.verdict else None
    return [(p.claim, p.support) for p in (analysis.consensus + analysis.unique_insights)] if analysis else []


async def impact(report: RunReport, answer: str, embedder: Embedder | None,
                 contribs: list[s.Contribution]) -> dict[str, float]:
    eligible = [c for c in contribs if c.eligible]
    ranks = {r["seat"]: r["points"] for r in (report.deliberation or {}).get("ranking") or ()}
    by_judge = ({c.seat: float(ranks.get(c.seat, 0.0)) for c in eligible} if ranks  # council: by the members' ranks
                else s.judge_shares(_judged_points(report), [c.seat for c in eligible]))
    by_sentence = dict.fromkeys(by_judge, 0.0)
    lines = s.sentences(answer)
    if embedder is not None and lines and eligible:
        pieces = {c.seat: s.chunks(c.text) for c in eligible}
        vectors = await embedder.encode([*lines, *(t for texts in pieces.values() for t in texts)])
        start, sources = len(lines), {}
        for seat, texts in pieces.items():
            sources[seat] = vectors[start: start + len(texts)]
            start += len(texts)
        by_sentence = s.sentence_shares(vectors[: len(lines)], sources)
    return s.combine(by_judge, by_sentence)


def receipt_id(owner: str, debate_id: str) -> str:
    """Unambiguous over both parts (length-prefixed): no two (owner, id) pairs collide."""
    return "rcpt_" + hashlib.sha256(f"{len(owner)}:{owner}:{debate_id}".encode()).hexdigest()[:24]


class Settler:
    """Settles one run; built per request by the provider with the process's signer and store."""

    def __init__(self, signer: ReceiptSigner, store: Receipts, embedder: Embedder | None) -> None:
        self.signer, self.store, self.embedder = signer, store, embedder

    async def __call__(self, report: RunReport, req: FusionRequest) -> None:
        if req.bounty is None or req.owner is None:
            return
        if report.quorum_fallback and report.quorum_fallback["fallback"] == "single_model":
            amount, currency = req.bounty
            report.settlement = {"status": "unsettled", "debate_id": req.debate_id,
                                 "bounty": {"amount": amount, "currency": currency},
                                 "error": "the panel lost its quorum and the single model answered: no seat is paid"}
            report.notes.append("bounty unsettled: the panel lost its quorum (panel.on_quorum_failure: single_model)")
            return
        answer = report.synthesis.text if report.synthesis else ""
        amount, currency = req.bounty
        contribs = contributions(report)
        weights = await impact(report, answer, self.embedder, contribs)
        contribs = [dataclasses.replace(c, impact=weights.get(c.seat, 0.0)) for c in contribs]
        result = s.split(amount, contribs)
        payload = s.receipt_payload(
            receipt_id=receipt_id(req.owner, req.debate_id), debate_id=req.debate_id,
            issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            profile=req.profile_name, messages=req.messages, answer=answer, contributions=contribs,
            result=result, bounty=amount, currency=currency,
            rounds=(report.deliberation or {}).get("rounds", 1),
            embedding_model=getattr(self.embedder, "model_id", None), key_id=self.signer.key_id,
            profile_version=req.profile_version,
        )
        receipt = self.signer.sign(payload)
        try:
            stored = await self.store.put_receipt(req.owner, req.debate_id, receipt)
        except StoreUnavailable as exc:
            report.settlement = {"status": "unsettled", "debate_id": req.debate_id, "bounty": payload["bounty"],
                                 "error": f"the receipt could not be stored ({exc}); nothing was paid"}
            report.notes.append("bounty unsettled: the store and its outbox were unavailable")
            return
        report.receipt = stored
        p = stored["payload"]
        report.settlement = {
            "status": "settled", "receipt_id": p["receipt_id"], "debate_id": p["debate_id"], "key_id": p["key_id"],
            "bounty": p["bounty"], "unallocated": p["unallocated"],
            "payouts": [{"seat": c["seat"], "payee": c["payee"], "amount": c["amount"],
                         **({"peer_id": c["peer_id"]} if "peer_id" in c else {})} for c in p["contributions"]],
            "duplicate": stored["signature"] != receipt["signature"],  # a concurrent twin paid first
            "receipt_url": f"/chorus/v1/receipts/{p['debate_id']}",
        }


class TranscriptKeeper:
    """Stores the run's structured transcript for its team, with the profile's TTL
    (best effort: the store logs, never raises, for transcripts)."""

    def __init__(self, store: Receipts) -> None:
        self.store = store

    async def __call__(self, report: RunReport, req: FusionRequest) -> None:
        storage = req.profile.storage
        if storage.transcripts and req.owner is not None:
            record = {"caller": {"team_id": req.caller.team_id, "user_id": req.caller.user_id},
                      "request_hash": s.idempotency_hash(req.profile_name, req.messages, req.bounty),
                      "profile_version": req.profile_version, **report.extension(include_panel=True, audit=True)}
            await self.store.put_transcript(req.owner, req.debate_id, record, storage.transcript_ttl_s)


class ReputationKeeper:
    """Adds this run's per-payee (per-peer for pool seats) observations (judge-attributed impact; every seat of
    every round, failures and echoes included) to the store."""

    def __init__(self, store: Reputation) -> None:
        self.store = store

    async def __call__(self, report: RunReport, req: FusionRequest) -> None:
        if report.outcome is None:
            return
        contribs = contributions(report)
        impact_by_seat = s.judge_shares(_judged_points(report), [c.seat for c in contribs if c.eligible])
        latencies = {a.seat.name: a.completion.latency_s for a in report.outcome.panel.answers}
        latencies |= {r.seat.name: r.failure.latency_s for r in report.outcome.history if r.failure}
        await self.store.add_reputation(reputation.observations(contribs, impact_by_seat, latencies))


async def prior_run(store: Receipts, req: FusionRequest) -> dict | None:
    """For a client-chosen `debate_id` already used by this owner: the first run's answer
    and `chorus` field to replay (nothing runs, nothing is charged or paid again), or
    ConflictError (409) if it answered a different request. None: run as new."""
    if req.options.debate_id is None or req.owner is None:
        return None
    digest = s.idempotency_hash(req.profile_name, req.messages, req.bounty)
    try:
        record = await store.get_transcript(req.owner, req.debate_id)
    except StoreUnavailable:
        record = None  # receipts stay idempotent through the outbox; a transcript is advice
    if record is not None:
        if record.get("request_hash") != digest:
            raise ConflictError(f"chorus.debate_id {req.debate_id!r} was already used for a different request "
                                "(profile, messages or bounty differ); use a new debate_id")
        extension = {k: v for k, v in record.items() if k not in ("transcript", "request_hash")}
        extension["replayed"] = True
        if extension.get("settlement"):
            extension["settlement"] = {**extension["settlement"], "duplicate": True}
        return {"answer": (record.get("transcript") or {}).get("answer") or "", "extension": extension}
    receipt = await store.find_receipt(req.owner, req.debate_id) if req.bounty is not None else None
    if receipt is not None:
        p = receipt["payload"]
        assert req.bounty is not None
        same = (p.get("request_hash") == s.request_hash(req.messages) and p.get("profile") == req.profile_name
                and p.get("bounty") == {"amount": req.bounty[0], "currency": req.bounty[1]})
        if not same:
            raise ConflictError(f"chorus.debate_id {req.debate_id!r} was already used for a different request "
                                "(profile, messages or bounty differ); use a new debate_id")
        raise ConflictError(f"chorus.debate_id {req.debate_id!r} was already settled and its answer is no longer "
                            f"kept; the receipt is at /chorus/v1/receipts/{req.debate_id}")
    return None
