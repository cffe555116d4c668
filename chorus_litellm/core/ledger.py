"""The call ledger: every inner call of a run, recorded the moment it ends, and charged.

`Ledger` wraps the run's `Completer`; stages call it like any completer, naming their
stage and seat. For each call it
1) caps the call's own deadline at the run's end-to-end deadline (a call that would
   start after it fails at once as a timeout);
2) records the call in the `RunReport` as soon as it ends: whole; partial (a stream cut
   off mid-answer: the text so far, priced by the completer's estimate); or cancelled /
   timed out (the prompt, which the provider already billed, as LiteLLM itself counts
   a read timeout or a client disconnect). A call refused outright (HTTP error,
   connection refused) cost nothing and is not recorded;
3) calls `on_charge(report)`, so whoever charges the caller always holds the running
   total: a run that ends in any way (done, failed, cancelled, missed quorum) is charged
   what it spent up to then.
No LiteLLM types here: the completer behind it does the talking.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncGenerator, Callable
from typing import Any

from .ports import Completer, Wrapper
from .errors import UpstreamError
from .report import RunReport
from .types import Completion, Message


class Ledger(Wrapper):
    def __init__(self, inner: Completer, report: RunReport, *, deadline: float | None = None,
                 on_charge: Callable[[RunReport], None] | None = None) -> None:
        super().__init__(inner)
        self.report = report
        self.deadline = deadline  # loop time; None = no run deadline
        self.on_charge = on_charge

    # -- bookkeeping -------------------------------------------------------------------
    def record(self, stage: str, seat: str, completion: Completion, status: str = "ok",
               estimated: bool = False) -> None:
        self.report.add(stage, seat, completion, status=status, estimated=estimated)
        if self.on_charge is not None:
            self.on_charge(self.report)

    def _estimate(self, stage: str, seat: str, model: str, messages: list[Message], text: str,
                  status: str) -> None:
        self.record(stage, seat, self.inner.estimate(model, messages, text), status=status, estimated=True)

    def timeout(self, timeout: float) -> float:
        """`timeout` capped at what is left of the run's deadline."""
        if self.deadline is None:
            return timeout
        left = self.deadline - asyncio.get_running_loop().time()
        if left <= 0:
            raise UpstreamError("timeout", "the run's deadline passed before this call")
        return min(timeout, left)

    def expired(self) -> bool:
        return self.deadline is not None and asyncio.get_running_loop().time() >= self.deadline

    # -- the Completer interface ---------------------------------------------------------
    async def complete(self, model: str, messages: list[Message], *, timeout: float, stage: str = "",
                       seat: str = "", **params: Any) -> Completion:
        timeout = self.timeout(timeout)
        try:
            completion = await self.inner.complete(model, messages, timeout=timeout, stage=stage, seat=seat,
                                                    run=self.report.run_id, **params)
        except UpstreamError as exc:
            if exc.kind == "timeout":
                self._estimate(stage, seat, model, messages, "", "timeout")
            raise
        except asyncio.CancelledError:
            self._estimate(stage, seat, model, messages, "", "cancelled")
            raise
        self.record(stage, seat, completion)
        return completion

    async def stream(self, model: str, messages: list[Message], *, timeout: float, stage: str = "",
                     seat: str = "", **params: Any) -> AsyncGenerator[str | Completion, None]:
        timeout = self.timeout(timeout)
        sent: list[str] = []
        done = False
        inner = self.inner.stream(model, messages, timeout=timeout, stage=stage, seat=seat,
                                  run=self.report.run_id, **params)
        try:
            async with contextlib.aclosing(inner):
                async for piece in inner:
                    if isinstance(piece, Completion):
                        done = True
                        self.record(stage, seat, piece)
                    else:
                        sent.append(piece)
                    yield piece
        except UpstreamError as exc:
            if not done and (sent or exc.kind == "timeout"):
                self._estimate(stage, seat, model, messages, "".join(sent), "partial" if sent else "timeout")
            raise
        except BaseException:  # cancelled, or the consumer closed the stream early
            if not done:
                self._estimate(stage, seat, model, messages, "".join(sent), "cancelled")
            raise
