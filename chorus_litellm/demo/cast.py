"""The demo's cast: panel members that disagree, read each other and come round.

`chorus serve --demo` answers every model from the fake upstream (demo/fake_upstream.py),
whose filler text is alike for every member, so a demo debate agreed in round 1 and the
live view had one dot per chart. With the cast (`fake_upstream --cast`, what the demo
runs), the answers a panel sees are a believable discussion instead:

- Round 1: each member takes a position on the prompt that depends on its persona (the
  analyst, the skeptic and the contrarian start apart) or, with no persona, on the model.
  A sum ("What is 17 + 25?") gets numbers, one of them right; a yes/no question yes, no
  or "it depends"; anything else one of three approaches. Every answer ends on
  "Final answer: ...", so the vote can read it.
- Later rounds (debate, MoA layers): a member reads the others' final answers; one
  outside the leading position (a sum's: the right answer, once a member sees it) moves
  to it, most in round 2 and all by round 3, except a stubborn contrarian on about a
  third of the prompts, who keeps dissenting to the end. A debate shows each member the
  voice shared by most panelists and the most different one, never its own: a tie goes
  to the shared voice, and the member that is the shared voice (shown only the most
  different one) keeps its answer, so the panel comes round to the shared voice. A
  member's wording changes every round, so the answers move on the map.
- The judge groups the answers by position (consensus, contradictions, the best); the
  writer states the leading position and the dissent; consensus critiques, candidates,
  revisions and votes follow the same positions.

All of it is deterministic: a hash of the model, the prompt and the round picks each
choice, so a prompt replays the same discussion. `reply` returns None for what the cast
does not answer (the router's classifier, `chorus eval`'s prompts), which the fake
upstream answers as before.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from ..core.stages import prompts

FINAL = re.compile(r'Final answer:\s*([^\n"\\]+)')  # in plain text, or inside a JSON string
SUM = re.compile(r"(-?\d+)\s*(\+|-|plus|minus|times|x|\*)\s*(-?\d+)")
YES_NO = re.compile(r"^\s*(should|is|are|can|could|does|do|did|will|would|was|were|has|have|must)\b", re.IGNORECASE)

# Round 1 positions by persona, per kind of prompt: an index into its three positions
# (a sum's: right, one over, ten under; yes/no's: yes, no, it depends; OPEN's, in order).
PERSONA_START = {"sum": {"analyst": 0, "optimist": 0, "skeptic": 1, "contrarian": 2},
                 "yes/no": {"analyst": 2, "optimist": 0, "skeptic": 1, "contrarian": 0},
                 "open": {"analyst": 2, "optimist": 1, "skeptic": 0, "contrarian": 1}}

OPEN = {  # position -> (a claim in three wordings, the bottom line)
    "start simple and measure": (
        ("The pragmatic path is to start with the simplest option that works, measure it under real load, "
         "and add complexity only when the numbers demand it.",
         "Begin small: ship the plainest design, instrument it, and let measurements rather than guesses "
         "decide what to change next.",
         "Keep it simple first. A minimal version in production teaches more than a plan, and it is cheap to "
         "replace once you know where it hurts."),
        "Most of the risk is in guessing wrong about what matters, and measuring early removes it."),
    "invest in the robust option now": (
        ("Invest up front: changing course later costs more than doing it properly now, so pick the robust, "
         "well-supported option from the start.",
         "Do it properly from day one. Migrations under load are where projects stall, and the robust choice "
         "avoids one.",
         "Choose the option built to last. The extra effort now is small next to a rewrite when the load "
         "arrives."),
        "The cost of a later migration outweighs the extra work today."),
    "it depends on the team and the timeline": (
        ("There is no single answer: weigh the team's skills, the timeline and the cost of being wrong; a "
         "hybrid that keeps both options open is the safest bet.",
         "It depends. With an experienced team and time to spare the ambitious route pays off; otherwise the "
         "conservative one does.",
         "The right call turns on constraints the question leaves open: who builds it, by when, and what a "
         "failure would cost."),
        "Decide on the constraints, not on the technology."),
}
YES_NO_POSITIONS = {
    "yes": ("Yes. The benefits are concrete and show up early, while the costs are known and can be managed.",
            "Yes, in most cases. The upside is large and the usual objections have well-tested answers.",
            "Yes. Weighing both sides, the case for it is stronger and the risks are containable."),
    "no": ("No. The costs and risks are easy to underestimate, and the benefits rarely arrive as promised.",
           "No, not as things stand. The evidence for the gains is thin and the downside is real.",
           "No. A careful look at the failure modes outweighs the optimistic case."),
    "it depends": ("It depends on the situation: the same choice is right for one team and wrong for another.",
                   "It depends. The answer changes with the constraints, so state them before deciding.",
                   "It depends on what matters most here: speed, cost or safety each point a different way."),
}
SIGNATURES: dict[str | None, Any] = {  # each persona's (or a plain member's) habit, so no two members read alike
    "analyst": "Put numbers on the trade-off before committing.",
    "skeptic": "Ask for evidence before trusting the promised gains.",
    "contrarian": "Consider the option nobody has proposed yet.",
    "optimist": "The upside is worth aiming for.",
    None: ("Weigh it against the alternatives.", "Test the assumption on a small case first.",
           "Write the decision down with its reasons.", "Revisit it when the facts change."),
}
SUM_SIGNATURES: dict[str | None, Any] = {
    "analyst": "Checked by adding the tens, then the ones.",
    "skeptic": "Checked again by counting on from the larger number.",
    "contrarian": "Checked from the other end.",
    "optimist": "That settles it.",
    None: ("Checked once more.", "Checked with the ones first.", "Checked on paper.", "Checked twice."),
}
OPENERS = {"kept": "I keep my answer after reading the others. ",
           "moved": "The other answers changed my mind. ",
           "dissent": "I still disagree with the others. "}


def reply(model: str, messages: list[dict]) -> str | None:
    """The cast's answer to one request, or None for the fake upstream's own."""
    text = prompt_text(messages)
    if "CHORUS-CLASSIFIER" in text or "CHORUS-RANK" in text:
        return None  # the fake upstream's own answer
    last = prompt_text(messages[-1:])
    question = _question(messages)
    if question is None:
        return None
    cast = _Cast(question)
    persona = _persona(messages)
    if "CHORUS-VOTE" in text:
        return cast.vote(model, persona, last)
    if "CHORUS-JUDGE" in text:
        return cast.judge(_drafts(last))
    if _system(messages).startswith(prompts.SYNTH_SYSTEM[:40]):
        return cast.write(_drafts(last))
    if last.startswith(prompts.CONSENSUS_CRITIQUE[:40]):
        return cast.critique(_keys(last))
    if last.startswith((prompts.CONSENSUS_CANDIDATE[:40], prompts.CONSENSUS_REVISE[:40])):
        return cast.candidate(_keys(last), revised=last.startswith(prompts.CONSENSUS_REVISE[:40]))
    round_no = _round(last)
    if round_no or last.startswith(prompts.MOA_LAYER[:40]):
        own, others, shared = _debate_data(last)
        return cast.later(model, persona, round_no or 2, own, others, shared)
    return cast.first(model, persona)


class _Cast:
    def __init__(self, question: str) -> None:
        self.question = question
        self.seed = _hash(question)
        match = SUM.search(question)
        if match:
            a, op, b = int(match.group(1)), match.group(2), int(match.group(3))
            right = a + b if op in ("+", "plus") else a - b if op in ("-", "minus") else a * b
            self.kind, self.positions = "sum", [str(right), str(right + 1), str(right - 10)]
            self.terms = (a, op, b)
        elif YES_NO.match(question):
            self.kind, self.positions = "yes/no", list(YES_NO_POSITIONS)
        else:
            self.kind, self.positions = "open", list(OPEN)
        # the stubborn contrarian: on about a third of the prompts
        self.stubborn_prompt = self.seed % 3 == 0

    # -- positions ---------------------------------------------------------------------

    def start(self, model: str, persona: str | None) -> str:
        if persona in PERSONA_START[self.kind]:
            index = PERSONA_START[self.kind][persona]
        else:
            index = (_hash(model, self.question) % 4) % 3  # more often the first: a plain panel often agrees
        return self.positions[index]

    def leader(self, keys: list[str], shared: str | None = None) -> str | None:
        """The leading position among `keys`: for a sum, the right answer once anybody
        gives it (a member checks the arithmetic); else the commonest, ties going to the
        `shared` position (the voice shared by most panelists), else to the prompt's
        preferred one."""
        known = [k for k in keys if k in self.positions]
        if not known:
            return None
        best = max(known.count(k) for k in known)
        tied = [k for k in self.positions if known.count(k) == best]
        if self.kind == "sum":
            return self.positions[0] if self.positions[0] in known else tied[0]
        return shared if shared in tied else min(tied, key=lambda k: _hash(self.question, k))

    def stubborn(self, model: str, persona: str | None) -> bool:
        if persona:
            return persona == "contrarian" and self.stubborn_prompt
        return _hash(model, self.question) % 5 == 0

    # -- answers -----------------------------------------------------------------------

    def first(self, model: str, persona: str | None) -> str:
        sign = _signature(model, persona, self.kind)
        return self.answer(self.start(model, persona), self.wording(model, 1), sign)

    def later(self, model: str, persona: str | None, round_no: int, own: str | None, others: list[str],
              shared: str | None = None) -> str:
        """`shared`: the text of the voice shared by most panelists; "" when that voice is
        this member's own (a debate shows it only the most different one); None: unknown."""
        mine = _key(own) if own else self.start(model, persona)
        mine = mine if mine in self.positions else self.start(model, persona)
        lead = self.leader([mine, *(k for k in map(_key, others) if k)], mine if shared == "" else _key(shared))
        wording, sign = self.wording(model, round_no), _signature(model, persona, self.kind)
        if lead is None or lead == mine:
            return OPENERS["kept"] + self.answer(mine, wording, sign)
        salt = _hash(model, self.question, str(round_no))
        persuaded = not self.stubborn(model, persona) and (round_no >= 3 or salt % 3 != 0)
        if persuaded:
            return OPENERS["moved"] + self.answer(lead, wording, sign)
        return OPENERS["dissent"] + self.answer(mine, wording, sign)

    def wording(self, model: str, round_no: int) -> int:
        """A member's wording: the next of three each round, so it never repeats its last answer."""
        return _hash(model, self.question) + round_no

    def answer(self, key: str, salt: int, sign: str = "") -> str:
        if self.kind == "sum":
            a, op, b = self.terms
            lines = (f"Working it out: {a} {op} {b} gives {key}.", f"{a} {op} {b} comes to {key}.",
                     f"Step by step, {a} {op} {b} = {key}.")
            return f"{lines[salt % 3]} {sign}".strip() + f"\nFinal answer: {key}."
        if self.kind == "yes/no":
            return f"{YES_NO_POSITIONS[key][salt % 3]} {sign}".strip() + f"\nFinal answer: {key}."
        claims, why = OPEN[key]
        return f"{claims[salt % 3]} {why} {sign}".strip() + f"\nFinal answer: {key}."

    def judge(self, drafts: list[tuple[str, str]]) -> str:
        groups: dict[str, list[str]] = {}
        for label, text in drafts:
            groups.setdefault(_key(text) or "no stated answer", []).append(label)
        ranked = sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[1]))
        lead, lead_labels = ranked[0] if ranked else ("no stated answer", [])
        return json.dumps({
            "consensus": [{"claim": f"The answer is: {lead}.", "support": lead_labels}],
            "contradictions": [{"claim": f"A minority answers {key} instead; the majority's reasoning is stronger.",
                                "support": labels} for key, labels in ranked[1:]],
            "unique_insights": [{"claim": "One answer spells out the reasoning step by step.",
                                 "support": lead_labels[:1]}],
            "blind_spots": ["None of the answers states what would change its conclusion."],
            "best": lead_labels[0] if lead_labels else None,
        })

    def write(self, drafts: list[tuple[str, str]]) -> str:
        keys = [k for k in (_key(t) for _, t in drafts) if k]
        lead = self.leader(keys) or self.positions[0]
        dissent = sorted({k for k in keys if k != lead})
        body = self.answer(lead, self.seed).rsplit("\n", 1)[0].strip()
        note = f" A minority view ({'; '.join(dissent)}) was weighed and not adopted." if dissent else ""
        return f"{body}{note}\nFinal answer: {lead}."

    def critique(self, keys: list[str]) -> str:
        lead = self.leader(keys) or self.positions[0]
        others = sorted({k for k in keys if k != lead})
        gaps = f" The drafts answering {', '.join(others)} do not survive a close reading." if others else ""
        return f"The strongest case is for: {lead}.{gaps} The best answer must state its reasoning plainly."

    def candidate(self, keys: list[str], revised: bool) -> str:
        lead = self.leader(keys) or self.positions[0]
        prefix = "Revised to answer the objections. " if revised else ""
        return prefix + self.answer(lead, self.seed + revised)

    def vote(self, model: str, persona: str | None, last: str) -> str:
        candidate = _key(last)
        mine = self.start(model, persona)
        revised = "Revised to answer the objections." in last
        accept = candidate == mine or revised or (not self.stubborn(model, persona) and _hash(model, last) % 3)
        objection = "" if accept else f"It dismisses the case for: {mine}."
        return json.dumps({"accept": bool(accept), "confidence": 0.8 if accept else 0.6,
                           "blocking": [] if accept else [objection], "objection": objection})


def _signature(model: str, persona: str | None, kind: str) -> str:
    habits = SUM_SIGNATURES if kind == "sum" else SIGNATURES
    if persona is not None and persona in habits:
        return str(habits[persona])
    return str(habits[None][_hash(model) % len(habits[None])])


# -- reading the requests --------------------------------------------------------------------

def _hash(*parts: str) -> int:
    return int(hashlib.sha256("\n".join(parts).encode()).hexdigest()[:12], 16)


def prompt_text(messages: list[dict]) -> str:
    """The text of `messages`, one line per message (list contents' text parts joined)."""
    parts = []
    for m in messages:
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


def _system(messages: list[dict]) -> str:
    return prompt_text([m for m in messages if m.get("role") == "system"][:1])


def _persona(messages: list[dict]) -> str | None:
    system = _system(messages)
    return next((name for name, text in prompts.PERSONAS.items() if text in system), None)


MARKERS = (*(p[:40].split("{")[0] for p in (prompts.DEBATE_ROUND, prompts.MOA_LAYER, prompts.CONSENSUS_CRITIQUE,
                                           prompts.CONSENSUS_CANDIDATE, prompts.CONSENSUS_REVISE)),
           "Drafts (JSON data", "Panel answers (JSON data", "Below is a candidate answer")


def _question(messages: list[dict]) -> str | None:
    """The client's last question: the last user turn that is not one of our prompts."""
    for m in reversed(messages):
        if m.get("role") == "user":
            text = prompt_text([m]).strip()
            if text and not text.startswith(MARKERS) and "CHORUS-" not in text:
                return text
    return None


def _round(last: str) -> int:
    match = re.match(r"This is round (\d+) of a panel discussion", last)
    return int(match.group(1)) if match else 0


def _json_after(text: str, opener: str) -> object | None:
    start = text.find(opener)
    if start < 0:
        return None
    try:
        return json.JSONDecoder().raw_decode(text[start:])[0]
    except ValueError:
        return None


SHARED, MOST_DIFFERENT = "shared by most panelists", "most different"  # a debate's voices (core/stages/debate.py)


def _debate_data(last: str) -> tuple[str | None, list[str], str | None]:
    """(your previous answer, the others' texts, the shared voice's text: "" when it is
    yours, None when the prompt does not say)."""
    data = _json_after(last, "{")
    if isinstance(data, dict):  # a debate round
        panelists = [p for p in data.get("panelists") or [] if isinstance(p, dict)]
        views = {p.get("view"): p.get("text", "") for p in panelists}
        shared = views.get(SHARED, "" if MOST_DIFFERENT in views else None)
        return data.get("your_previous_answer"), [p.get("text", "") for p in panelists], shared
    data = _json_after(last, "[")  # an MoA layer
    rows = data if isinstance(data, list) else []
    return None, [r.get("text", "") for r in rows if isinstance(r, dict)], None


def _drafts(last: str) -> list[tuple[str, str]]:
    """The labelled answers in a judge's or a writer's request: the first JSON list of
    {label, text} (a judge's instructions, when they share the turn, show a list first)."""
    at = last.find("[")
    while at >= 0:
        data = _json_after(last[at:], "[")
        drafts = [(d.get("label", "?"), d["text"]) for d in data if isinstance(d, dict) and "text" in d] \
            if isinstance(data, list) else []
        if drafts:
            return drafts
        at = last.find("[", at + 1)
    return []


def _keys(text: str | None) -> list[str]:
    """Every stated final answer in `text`, in order."""
    return [m.strip().rstrip(".").strip() for m in FINAL.findall(text or "")]


def _key(text: str | None) -> str | None:
    found = _keys(text)
    return found[-1] if found else None
