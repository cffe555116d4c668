"""One run's context: what every stage and protocol needs, in one object.

Built by the provider (or a test) from a validated `FusionRequest` and the process's
ports; the stages read it and never reach for globals. `completer` is the run's
`Ledger`, so every inner call is recorded and charged as it ends; `emit` hands a typed
event (core/events.py) to the run's event log (core/runlog.py), and `spawn` runs work beside the
critical path (the live view's map of a MoA round) that `drain` collects before the run
ends.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from .ports import Completer, DefaultParams, Embedder, Forwarder
from .config import DebateConfig, PanelConfig, ProfileConfig
from .ledger import Ledger
from .report import RunReport
from .request import FusionRequest, prompt_text
from .runlog import RunLog
from .stages import prompts
from .events import Event
from .types import Completion, Message, Seat

Finisher = Callable[[RunReport, FusionRequest], Awaitable[None]]


@dataclass
class RunContext:
    req: FusionRequest
    ledger: Ledger
    embedder: Embedder | None = None
    rng: random.Random = field(default_factory=random.Random)
    forwarder: Forwarder | None = None
    # Payee reputation scores, when the profile orders or filters seats by them.
    reputation: Callable[[list[str]], Awaitable[dict[str, dict[str, float]]]] | None = None
    # The live peers of a pool (their registrations), for a panel with pool seats.
    pool: Callable[[str], Awaitable[list[dict]]] | None = None
    finishers: Sequence[Finisher] = ()  # settle, keep the transcript, add to reputation
    seats: list[Seat] = field(default_factory=list)  # set by the pipeline's seat step
    consulted: str | None = None  # router.policy consult: the question the single model asked the panel
    answered: Completion | None = None  # router.policy consult: the single model's own answer (no panel)
    log: RunLog = field(default_factory=RunLog)  # the run's event log (no listeners: dropped)
    background: set[asyncio.Task] = field(default_factory=set)

    @classmethod
    def create(cls, req: FusionRequest, completer: Completer, *, timeout: float | None = None,
               on_charge: Callable[[RunReport], None] | None = None, **ports: Any) -> RunContext:
        """A fresh report and ledger for `req` (inside a running event loop): the run's
        deadline is the profile's `run_timeout_s`, or the client's `timeout` if shorter."""
        report = RunReport(req.debate_id, req.profile_name, req.caller, protocol=req.debate.protocol)
        seconds = req.profile.limits.run_timeout_s
        if isinstance(timeout, int | float) and timeout > 0:
            seconds = min(seconds, float(timeout))
        if req.debate.max_retries is not None:  # LiteLLM's Router retries transient errors with backoff
            completer = DefaultParams(completer, num_retries=req.debate.max_retries)
        deadline = asyncio.get_running_loop().time() + seconds
        return cls(req, Ledger(completer, report, deadline=deadline, on_charge=on_charge), **ports)

    def emit(self, event: Event) -> Event:
        """Hand `event` to the run's log (and so to every subscriber); returns it."""
        return self.log.emit(event)

    @property
    def watched(self) -> bool:
        """Whether a viewer renders this run's maps (else they need not be measured)."""
        return self.log.watched

    def spawn(self, work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        self.background.add(task)

    async def drain(self, *, cancel: bool = False) -> None:
        """Wait for (or cancel) the background work; its failures only cost the view."""
        tasks, self.background = self.background, set()
        for task in tasks if cancel else ():
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if isinstance(result, Exception):
                self.report.notes.append(f"live view: {type(result).__name__}: {result}")

    @property
    def completer(self) -> Ledger:
        return self.ledger

    @property
    def report(self) -> RunReport:
        return self.ledger.report

    @property
    def profile(self) -> ProfileConfig:
        return self.req.profile

    @property
    def panel(self) -> PanelConfig:
        return self.req.profile.panel

    @property
    def preset(self) -> DebateConfig:
        return self.req.debate

    @property
    def messages(self) -> list[Message]:
        return self.req.messages

    @property
    def question(self) -> str:
        """The last user turn's text: what answers are extracted and echoes measured against."""
        return prompt_text([m for m in self.messages if m.get("role") == "user"][-1:])

    @property
    def quorum(self) -> int:
        return self.req.quorum

    @property
    def personas(self) -> dict[str, str]:
        return {**prompts.PERSONAS, **self.profile.personas}

    @property
    def draft_params(self) -> dict[str, Any]:
        """Panel calls: the client's sampling params, the panel's own token cap."""
        params = dict(self.req.sampling)
        if self.panel.max_tokens:
            params["max_tokens"] = self.panel.max_tokens
        if self.panel.tools and self.req.final_params.get("tools"):  # seen, never called: drafts are text
            params.update(tools=self.req.final_params["tools"], tool_choice="none")
        if self.panel.web_search:  # for the seats whose model supports it (core/stages/panel.py)
            params["web_search_options"] = {"search_context_size": self.panel.web_search_context}
        return params

    @property
    def final_params(self) -> dict[str, Any]:
        """The final answer's calls: sampling plus the client's max_tokens, stop and
        response_format (never the panel's cap)."""
        return {**self.req.sampling, **self.req.final_params}

    def tokens_used(self) -> int:
        return self.report.usage.total_tokens

    @property
    def conversation(self) -> list[Message]:
        """The conversation as the panel reads it: tool calls and results as plain text
        turns (it is not offered the client's tools), unless `panel.tools`. The judge
        always reads the text form."""
        seen = self.messages if self.panel.tools else prompts.tool_turns_as_text(self.messages)
        if self.consulted:
            return [*seen, {"role": "user", "content": prompts.CONSULT_TASK.format(question=self.consulted)}]
        return seen

    @property
    def writer_messages(self) -> list[Message]:
        """The synthesizer's conversation: as the client sent it when it is offered the
        client's tools (router.tools: fuse), else tool turns as text like everyone's."""
        return self.messages if self.req.final_params.get("tools") else prompts.tool_turns_as_text(self.messages)

    def seat_messages(self) -> dict[str, list[Message]]:
        """Each seat's view of the conversation, with its persona's instructions if any."""
        personas, conversation = self.personas, self.conversation
        return {s.name: prompts.persona_messages(conversation, personas[s.persona]) if s.persona
                else conversation for s in self.seats}
