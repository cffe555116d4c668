"""Step 5 of the pipeline: pay the bounty and keep a signed receipt.

Builds the contributions from the run (answers used are eligible; failures, timeouts and
echoes the watchdog filtered are not), weighs impact by the judge's per-claim source
labels cross-checked with answer-sentence embeddings, splits the bounty exactly
(stages/settlement.py), signs the receipt and stores it before the response completes.
The `chorus` field then carries the receipt id and a payout summary.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, UTC

from .adapters.embeddings import Embedder
from .adapters.signing import Signer
from .adapters.store import owner_of
from .report import RunReport
from .request import FusionRequest
from .stages import reputation
from .stages import settlement as s


def contributions(report: RunReport) -> list[s.Contribution]:
    panel = report.panel
    out = [s.Contribution(a.seat.name, a.seat.model, a.seat.payee_id, a.completion.text, True)
           for a in panel.answers]
    out += [s.Contribution(f.seat.name, f.seat.model, f.seat.payee_id, "", False, reason=f.kind)
            for f in panel.failures]
    if report.transcript:  # debate: the last round's echoes left the pool
        used = {c.seat for c in out}
        seats = {a.seat.name: a.seat for a in panel.answers} | {f.seat.name: f.seat for f in panel.failures}
        for turn in report.transcript[-1]:
            if turn["echo"] and turn["seat"] not in used:
                seat = seats.get(turn["seat"])
                model = seat.model if seat else turn["seat"]
                payee = seat.payee_id if seat else f"model:{model}"
                out.append(s.Contribution(turn["seat"], model, payee, turn["text"], False,
                                          reason=f"echo: {turn['echo']}"))
    return out


async def impact(report: RunReport, answer: str, embedder: Embedder | None,
                 contribs: list[s.Contribution]) -> dict[str, float]:
    eligible = [c for c in contribs if c.eligible]
    seats = [c.seat for c in eligible]
    analysis = report.verdict.analysis if report.verdict else None
    points = [(p.claim, p.support) for p in (analysis.consensus + analysis.unique_insights)] if analysis else []
    by_judge = s.judge_shares(points, seats)
    by_sentence = dict.fromkeys(seats, 0.0)
    lines = s.sentences(answer)
    if embedder is not None and lines and eligible:
        vectors = await embedder.encode([*lines, *(c.text for c in eligible)])
        by_sentence = s.sentence_shares(vectors[: len(lines)],
                                        {c.seat: vectors[len(lines) + i] for i, c in enumerate(eligible)})
    return s.combine(by_judge, by_sentence)


class Settler:
    """Settles one run; built per request by the provider with the process's signer and store."""

    def __init__(self, signer: Signer, store, embedder: Embedder | None) -> None:
        self.signer, self.store, self.embedder = signer, store, embedder

    async def __call__(self, report: RunReport, req: FusionRequest) -> None:
        if req.bounty is None:
            return
        answer = report.synthesis.text if report.synthesis else ""
        amount, currency = req.bounty
        contribs = contributions(report)
        weights = await impact(report, answer, self.embedder, contribs)
        contribs = [s.Contribution(c.seat, c.model, c.payee, c.text, c.eligible, c.reason, weights.get(c.seat, 0.0))
                    for c in contribs]
        result = s.split(amount, contribs)
        owner = owner_of(req.caller)
        debate_id = req.debate_id
        payload = s.receipt_payload(
            receipt_id="rcpt_" + hashlib.sha256(f"{owner}\n{debate_id}".encode()).hexdigest()[:24],
            debate_id=debate_id, issued_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            profile=req.profile_name, messages=req.messages, answer=answer, contributions=contribs,
            result=result, bounty=amount, currency=currency,
            rounds=(report.deliberation or {}).get("rounds", 1),
            embedding_model=getattr(self.embedder, "model_id", None), key_id=self.signer.key_id,
        )
        receipt = self.signer.sign(payload)
        stored = await self.store.put_receipt(owner, debate_id, receipt)
        report.receipt = stored
        p = stored["payload"]
        report.settlement = {
            "receipt_id": p["receipt_id"], "debate_id": p["debate_id"], "key_id": p["key_id"],
            "bounty": p["bounty"], "unallocated": p["unallocated"],
            "payouts": [{"seat": c["seat"], "payee": c["payee"], "amount": c["amount"]}
                        for c in p["contributions"]],
            "duplicate": stored["signature"] != receipt["signature"],  # a retry: paid once, earlier
            "receipt_url": f"/chorus/v1/receipts/{p['debate_id']}",
        }


class TranscriptKeeper:
    """Stores the run's structured transcript for its team, with the profile's TTL."""

    def __init__(self, store) -> None:
        self.store = store

    async def __call__(self, report: RunReport, req: FusionRequest) -> None:
        storage = req.profile.storage
        if storage.transcripts:
            record = {"caller": {"team_id": req.caller.team_id, "user_id": req.caller.user_id},
                      **report.extension(include_panel=True, audit=True)}
            await self.store.put_transcript(owner_of(req.caller), req.debate_id, record, storage.transcript_ttl_s)


class ReputationKeeper:
    """Adds this run's per-payee observations (judge-attributed impact) to the store."""

    def __init__(self, store) -> None:
        self.store = store

    async def __call__(self, report: RunReport, req: FusionRequest) -> None:
        if report.panel is None:
            return
        contribs = contributions(report)
        analysis = report.verdict.analysis if report.verdict else None
        points = [(p.claim, p.support) for p in (analysis.consensus + analysis.unique_insights)] if analysis else []
        impact_by_seat = s.judge_shares(points, [c.seat for c in contribs if c.eligible])
        latencies = {a.seat.name: a.completion.latency_s for a in report.panel.answers}
        latencies |= {f.seat.name: f.latency_s for f in report.panel.failures}
        await self.store.add_reputation(reputation.observations(contribs, impact_by_seat, latencies))
