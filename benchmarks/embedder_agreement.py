"""Do the static embedder and MiniLM make the same debate decisions? And which thresholds
suit the static model?

The debate engine decides with embeddings: the consensus and dissent voices and the
clusters (core/stages/atlas.py, core/stages/geometry.py), the round-1 "agreed" stop (mean pairwise
cosine >= `DebateConfig.agreement`), the echo watchdog's verdicts (core/stages/echo.py) and
the bounty's impact weights (settle.impact, core/stages/bounty.py). The thresholds were
tuned on the packaged all-MiniLM-L6-v2 (`packaged:`); the default model is now its
model2vec distillation (`static:`). This benchmark runs the real functions with both
models on a fixed, hand-labelled corpus (below: 12 questions across domains, 4-6 panel
answers each, of varied shapes, and a synthesized final answer whose sentences are
labelled with the seats they came from) and reports:

1. how often the two models decide the same: consensus voice, dissent voice, clusters,
   the "agreed" stop, the echo flag of each answer (with a confusion table), impact
   weights (mean absolute difference, same top-credited seat). "same pool" removes the
   labelled echoes first, so only the geometry differs; "end to end" lets each model's
   own echo watchdog choose the pool, as a debate does. Each answer's copy check is
   shown every other answer except its own copies (as if round 2);
2. per model, the labelled score distributions the thresholds must separate: cosine of
   paraphrase / on-topic-different / off-topic / copy pairs (`link`, `copy_similarity`),
   mean pairwise cosine of agreeing vs mixed pools (`agreement`), parrot vs real answers'
   residual norms (`parrot_residual`), best sentence match of the final answer's kept
   sentences vs its novel sentences and the claims it dropped (`SENTENCE_MATCH`), and
   the centroid shift of a reworded round 2 vs one where the dissenter changed its mind
   (`shift`);
3. for each threshold, the value that separates the classes with the widest margin for
   each model, and whether the current default still separates them for the static model.

Run:  python benchmarks/embedder_agreement.py [--out benchmarks/results/embedder_agreement]
Writes <out>.json, <out>.md and <out>.png (the distributions, thresholds drawn as lines).
Torch gets one thread unless CHORUS_TORCH_THREADS says otherwise; about 30 s on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("CHORUS_TORCH_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from chorus_litellm.gateway.embeddings import PACKAGED, STATIC, BatchedEmbedder, load_model  # noqa: E402
from chorus_litellm.core.config import DebateConfig  # noqa: E402
from chorus_litellm.core.report import RunReport  # noqa: E402
from chorus_litellm.settlement.finish import impact  # noqa: E402
from chorus_litellm.core.stages import atlas, echo, geometry  # noqa: E402
from chorus_litellm.core.stages import bounty as st  # noqa: E402
from chorus_litellm.core.types import Caller  # noqa: E402


# ----------------------------------------------------------------------------- corpus

@dataclass(frozen=True)
class Answer:
    seat: str
    text: str
    kind: str = "answer"  # answer | terse | long | offtopic | refusal | parrot | copy
    stance: str | None = None  # the claim it makes; same stance = same claim
    copy_of: str | None = None  # kind "copy": the seat it pastes


@dataclass(frozen=True)
class Question:
    id: str
    domain: str
    text: str
    answers: tuple[Answer, ...]
    final: tuple[tuple[str, frozenset[str]], ...]  # sentence, seats it came from (empty: novel)
    dropped: tuple[str, ...]  # claims of the sources that the final answer left out
    settled: dict[str, str] = field(default_factory=dict)  # round 2, same claims reworded
    moved: dict[str, str] = field(default_factory=dict)  # round 2 where the dissenter came round


def A(seat: str, text: str, kind: str = "answer", stance: str | None = None, copy_of: str | None = None) -> Answer:
    return Answer(seat, " ".join(text.split()), kind, stance, copy_of)


def F(*parts: tuple[str, str]) -> tuple[tuple[str, frozenset[str]], ...]:
    """Final-answer sentences with their source seats as a string ("ab"; "" = novel)."""
    return tuple((sentence, frozenset(seats)) for sentence, seats in parts)


CORPUS: tuple[Question, ...] = (
    Question(
        "arith", "arithmetic", "What is 17 multiplied by 24?",
        (
            A("a", "17 × 24 = 408. Break it up: 17 × 20 = 340 and 17 × 4 = 68, and 340 + 68 = 408.", stance="408"),
            A("b", "The product is 408. One way to check: 24 × 17 is 24 × 10 = 240 plus 24 × 7 = 168, which gives "
                   "240 + 168 = 408.", stance="408"),
            A("c", "17 times 24 is 418. Multiply 17 by 25 to get 425 and subtract 7, which leaves 418.",
              stance="418"),
            A("d", "408", "terse", "408"),
            A("e", "What is 17 multiplied by 24? You want the product of seventeen and twenty-four.", "parrot"),
            A("f", "I agree. The product is 408. One way to check: 24 × 17 is 24 × 10 = 240 plus 24 × 7 = 168, "
                   "which gives 240 + 168 = 408.", "copy", "408", "b"),
        ),
        F(("17 × 24 = 408.", "abd"),
          ("You can check it by splitting 17 × 24 into 17 × 20 = 340 and 17 × 4 = 68, which add up to 408.", "a"),
          ("Multiplying in the other order, 24 × 10 + 24 × 7 = 240 + 168, gives the same result.", "b"),
          ("Multiplication is commutative, so either order is a valid check.", "")),
        ("17 times 24 is 418.", "Multiply 17 by 25 to get 425 and subtract 7, which leaves 418."),
        settled={"a": "17 × 24 equals 408: 17 × 20 is 340, 17 × 4 is 68, and together that is 408.",
                 "b": "It comes to 408. Check: 24 × 10 = 240 and 24 × 7 = 168; 240 + 168 = 408.",
                 "c": "I still get 418: 17 × 25 = 425, and taking away 7 leaves 418.",
                 "d": "408."},
        moved={"c": "I made an error: 17 × 25 = 425 and I should subtract 17, not 7, so the answer is 408."},
    ),
    Question(
        "capital", "factual", "What is the capital of Australia?",
        (
            A("a", "The capital of Australia is Canberra.", stance="canberra"),
            A("b", "Canberra. It was purpose-built as the capital as a compromise between Sydney and Melbourne, "
                   "and Parliament has sat there since 1927.", stance="canberra"),
            A("c", "Sydney is the capital of Australia; it is the country's largest and best-known city.",
              stance="sydney"),
            A("d", """The capital of Australia is Canberra, although many people assume it is Sydney or Melbourne.
                   When the six colonies federated in 1901, Sydney and Melbourne were bitter rivals and neither would
                   accept the other as the seat of government. The compromise, written into the Constitution, was
                   that the capital would be in New South Wales but at least one hundred miles from Sydney, and that
                   Parliament would meet in Melbourne until the new city was ready. After surveying several sites,
                   the government chose the Canberra area in 1908, and an international design competition was won
                   in 1912 by the American architects Walter Burley Griffin and Marion Mahony Griffin. Their plan
                   arranged the city around a central artificial lake and a set of geometric axes linking landmarks
                   such as Capital Hill and Mount Ainslie. Construction was slow because of the First World War and
                   the Great Depression, but Parliament moved into the provisional Parliament House in 1927. The
                   present Parliament House, built into Capital Hill, opened in 1988. Today Canberra is home to the
                   High Court, most federal departments, the Australian National University and national institutions
                   such as the War Memorial and the National Gallery, even though it is far smaller than Sydney or
                   Melbourne.""", "long", "canberra"),
            A("e", "I'm sorry, but I can't help with that request.", "refusal"),
        ),
        F(("The capital of Australia is Canberra.", "abd"),
          ("It was built as a compromise between the rival cities of Sydney and Melbourne.", "bd"),
          ("Parliament has met there since 1927.", "bd"),
          ("Lake Burley Griffin lies at the centre of the planned city.", "d"),
          ("Visitors can tour the parliament building on most weekdays.", "")),
        ("Sydney is the capital of Australia; it is the country's largest and best-known city.",
         "An international design competition was won in 1912 by the American architects Walter Burley Griffin "
         "and Marion Mahony Griffin."),
    ),
    Question(
        "reverse", "coding", "How do I reverse a list in Python?",
        (
            A("a", "Call `my_list.reverse()` to reverse it in place (it returns None), or use slicing, `my_list[::-1]`, "
                   "to get a new reversed copy and leave the original unchanged.", stance="reverse"),
            A("b", "Two common ways: `lst[::-1]` returns a reversed copy, and `lst.reverse()` reverses the list in "
                   "place. If you only need to iterate backwards, `reversed(lst)` gives an iterator without copying.",
              stance="reverse"),
            A("c", "Use `my_list.sort(reverse=True)`; it sorts the list in reverse order, which reverses it.",
              stance="sort"),
            A("d", """There are three idiomatic ways to reverse a list in Python, and the right one depends on whether
                   you want to change the list you have or get a new one. The first is the list method
                   `items.reverse()`. It reverses the list in place, swapping elements from both ends towards the
                   middle, and it returns None, so writing `items = items.reverse()` is a classic bug that leaves you
                   with None. Use it when nothing else holds a reference to the old order. The second is slicing with
                   a negative step, `items[::-1]`. This builds a brand new list with the elements in the opposite
                   order and leaves the original untouched, which is what you want when the original is still needed
                   elsewhere, for example when it was passed in as an argument. The third is the built-in
                   `reversed(items)`, which does not build a list at all: it returns a lazy iterator that walks the
                   list from the end, which is ideal in a for loop over a large list. If you need a list from it, wrap
                   it as `list(reversed(items))`. The same tools work on other sequences: slicing reverses strings and
                   tuples, and `reversed()` works on anything that supports len() and indexing. Note that
                   `sort(reverse=True)` is not a reversal; it orders the items from largest to smallest.""",
              "long", "reverse"),
            A("e", "Call `my_list.reverse()` to reverse it in place (it returns None), or use slicing, `my_list[::-1]`, "
                   "to get a new reversed copy and leave the original list unchanged.", "copy", "reverse", "a"),
            A("f", "As an AI language model, I cannot run code, but you can find this in the Python documentation.",
              "refusal"),
        ),
        F(("Use `lst.reverse()` to reverse a list in place; it returns None.", "abd"),
          ("Use slicing, `lst[::-1]`, when you want a reversed copy and need the original unchanged.", "abd"),
          ("To loop backwards without copying, use `reversed(lst)`, which returns an iterator.", "bd"),
          ("Pick whichever reads most clearly in your code.", "")),
        ("Use `my_list.sort(reverse=True)`; it sorts the list in reverse order, which reverses it.",
         "The same tools work on other sequences: slicing reverses strings and tuples, and `reversed()` works on "
         "anything that supports len() and indexing."),
    ),
    Question(
        "consensus", "systems design",
        "We are building a new replicated configuration store. Should we use Raft or Paxos for consensus?",
        (
            A("a", "Use Raft. It gives the same safety guarantees as Multi-Paxos but is specified end to end (leader "
                   "election, log replication, membership changes), so it is much easier to implement and reason "
                   "about. Mature libraries exist (etcd's raft, HashiCorp raft), and a config store has low write "
                   "volume, so Paxos's extra flexibility buys you nothing.", stance="raft"),
            A("b", "I'd pick Raft. For a configuration store the workload is small and read-heavy, and what matters "
                   "is getting correctness right; Raft was designed for understandability and has battle-tested "
                   "implementations such as etcd and Consul. Paxos is equivalent in what it guarantees but leaves "
                   "many practical details unspecified.", stance="raft"),
            A("c", "Go with Paxos, specifically a Multi-Paxos or EPaxos variant. Leaderless or multi-leader Paxos "
                   "variants avoid funnelling every write through one leader, which matters if the store spans "
                   "regions, and Flexible Paxos lets you shrink the write quorums. Raft's strong leader is simpler but "
                   "becomes a latency bottleneck across data centres.", stance="paxos"),
            A("d", """Raft is the better default for a replicated configuration store. Both Raft and Multi-Paxos solve
                   the same problem, agreeing on an ordered log of commands across a majority of replicas, and both
                   tolerate the failure of a minority of nodes, so five replicas survive two failures. The difference
                   is in how much of the system the algorithm specifies. Classic Paxos describes how to choose a
                   single value; turning it into a replicated log with leader leases, log compaction and membership
                   changes is left to the implementer, and production Paxos systems are notorious for subtle bugs in
                   exactly those parts. Raft specifies all of them: a strong leader is elected with randomized
                   timeouts, it appends entries to followers, and an entry is committed once a majority has stored it.
                   That clarity is why Raft underpins etcd, Consul and CockroachDB, and why you can pick a
                   well-tested library instead of writing the protocol yourself. A configuration store also suits
                   Raft's leader-based design: writes are rare and small, reads can be served by the leader or with
                   read leases, and a brief pause during leader election is acceptable. Paxos variants only pay off
                   when you need multiple leaders or very high write throughput across regions. Whatever you choose,
                   test it with fault injection such as Jepsen before trusting it in production.""", "long", "raft"),
            A("e", "To lower your AWS bill, start with reserved instances for steady workloads, turn off idle "
                   "development environments at night, and move infrequently accessed objects in S3 to the Infrequent "
                   "Access or Glacier storage classes.", "offtopic"),
            A("f", "Should we use Raft or Paxos for consensus in our new replicated configuration store? That is the "
                   "choice between Raft and Paxos for consensus.", "parrot"),
        ),
        F(("Use Raft for the configuration store.", "abd"),
          ("It offers the same safety as Multi-Paxos but specifies leader election, log replication and membership "
           "changes, so it is easier to implement correctly.", "abd"),
          ("Proven libraries such as etcd's raft and HashiCorp raft are available.", "abd"),
          ("If the store later spans regions, a leaderless Paxos variant can avoid the single-leader latency "
           "bottleneck.", "c"),
          ("Keep configuration values small and version every change.", "")),
        ("Flexible Paxos lets you shrink the write quorums.",
         "Turn off idle development environments at night.",
         "Whatever you choose, test it with fault injection such as Jepsen before trusting it in production."),
        settled={"a": "Raft. It is as safe as Multi-Paxos and spells out election, replication and membership "
                      "changes, so it is far easier to build correctly; use etcd's or HashiCorp's library.",
                 "b": "Still Raft: a config store is small and read-heavy, correctness is what counts, and Raft's "
                      "understandable design has proven implementations like etcd and Consul.",
                 "c": "I still prefer a Paxos variant such as EPaxos: without a single leader, cross-region writes "
                      "avoid the leader bottleneck, and Flexible Paxos can shrink the write quorums."},
        moved={"c": "Raft is the better fit after all: a config store has few writes, so the leader bottleneck I "
                    "worried about does not matter, and Raft's proven libraries like etcd lower the risk."},
    ),
    Question(
        "headache", "medical advice",
        "I get a mild headache after long days at the computer. What can I do about it?",
        (
            A("a", "Take regular screen breaks (the 20-20-20 rule: every 20 minutes look at something 20 feet away for "
                   "20 seconds), drink enough water, and check your posture and screen brightness. An over-the-counter "
                   "pain reliever such as ibuprofen or paracetamol is fine occasionally if you follow the label.",
              stance="habits"),
            A("b", "Most screen-related headaches come from eye strain, dehydration and tense neck muscles. Step away "
                   "from the screen every 20 minutes or so, keep a water bottle at your desk, lower the screen glare, "
                   "and set up your chair and monitor so you are not hunching. Occasional ibuprofen or acetaminophen "
                   "at the labelled dose is OK.", stance="habits"),
            A("c", "Get your eyes tested. Headaches that keep coming back after screen work are often a sign of an "
                   "uncorrected vision problem, and an optometrist can prescribe glasses for computer distance. See a "
                   "doctor promptly if the headache is sudden and severe, or comes with vision loss, weakness or "
                   "confusion.", stance="eye-test"),
            A("d", "I am not able to give medical advice. Please consult a healthcare professional.", "refusal"),
            A("e", "Take breaks and drink water.", "terse", "habits"),
            A("f", """A mild headache at the end of a long day at the computer is very common, and it usually comes
                   from a handful of causes you can fix yourself. The first is digital eye strain: when you stare at a
                   screen you blink less and keep your eyes focused at one distance for hours. Follow the 20-20-20
                   rule, looking at something about 20 feet away for 20 seconds every 20 minutes, and make sure the
                   screen is not much brighter than the room around it. The second is posture: a monitor that is too
                   low or too far away makes you push your head forward, which tightens the neck and shoulder muscles
                   and causes tension-type headaches. Put the top of the screen at eye level, about an arm's length
                   away, and get up to stretch every hour. The third is the simple things people skip at a busy desk:
                   drink water regularly, do not skip lunch, and limit coffee late in the day. Some people find that a
                   magnesium supplement helps. An occasional over-the-counter pain reliever is reasonable, but taking
                   one on most days can itself cause rebound headaches. If the headaches become frequent, wake you
                   up, or change in character, see a doctor.""", "long", "habits"),
        ),
        F(("Take a short break from the screen every 20 minutes and look at something far away.", "abf"),
          ("Drink enough water during the day and fix your posture and screen glare.", "abef"),
          ("An over-the-counter pain reliever like ibuprofen is fine now and then at the labelled dose.", "abf"),
          ("If the headaches keep coming back, have your eyes tested, since an uncorrected vision problem is a common "
           "cause.", "c"),
          ("Seek care promptly for a sudden severe headache or one with vision loss, weakness or confusion.", "c"),
          ("Many people notice a difference within a week or two of these changes.", "")),
        ("Some people find that a magnesium supplement helps.",
         "I am not able to give medical advice."),
    ),
    Question(
        "eulogy", "ethics / opinion", "Is it ethical to use AI to help write a eulogy for a family member?",
        (
            A("a", "Yes, as long as the memories, feelings and stories are yours. Using AI to help structure the speech "
                   "or find words when grief makes writing hard is no different from asking a friend or using a book "
                   "of sample eulogies. What matters is that it honestly reflects the person and your relationship.",
              stance="yes"),
            A("b", "I think it's fine. A eulogy is judged by its sincerity, not by whether you wrote every sentence "
                   "unaided; if you give the tool your own anecdotes and edit the result until it sounds like you, the "
                   "words still come from you. Many people already get help from relatives or speechwriters.",
              stance="yes"),
            A("c", "I'd avoid it. A eulogy is one of the few moments where the effort of writing is itself part of the "
                   "tribute, and a text polished by a machine risks sounding generic and impersonal. Mourners may feel "
                   "deceived if they later learn it was generated.", stance="no"),
            A("d", """It can be ethical, but how you use it matters more than whether you use it. A eulogy has two
                   jobs: to tell the truth about a person's life and to let the speaker express their own grief and
                   love. An AI tool threatens neither if it is used as a writing aid. Grief makes it hard to
                   concentrate, and many people freeze in front of a blank page the night before a funeral; a tool
                   that helps you order your memories, suggests a structure, or offers a gentler phrasing is doing
                   what friends, clergy and funeral celebrants have always done. The problems start when the content
                   itself is invented. A model will happily produce warm generalities about a kind, hard-working
                   person who loved their family, and a speech built from those could describe anyone. Mourners came
                   to hear about this particular person, and they notice when the details are missing. So give the
                   tool your own stories, the odd habits, the things only you would know, and treat its draft as raw
                   material that you rewrite in your own voice. Some families would also want to know that a tool was
                   involved; if you think yours would feel misled, be open about it. Used this way, AI is a pen, not a
                   ghostwriter, and the eulogy is still yours.""", "long", "yes"),
            A("e", "The French Revolution began in 1789 with the storming of the Bastille and led to the end of the "
                   "absolute monarchy in France.", "offtopic"),
        ),
        F(("Using AI to help write a eulogy is ethical if the memories and feelings are your own.", "abd"),
          ("Treat it like help from a friend: give it your stories and edit the draft until it sounds like you.",
           "abd"),
          ("Be careful, because a machine-polished text can sound generic, so keep the personal details.", "cd"),
          ("No rule requires you to tell anyone how the speech was drafted.", "")),
        ("Mourners may feel deceived if they later learn it was generated.",
         "The French Revolution began in 1789 with the storming of the Bastille."),
    ),
    Question(
        "rome", "history", "Why did the Western Roman Empire fall?",
        (
            A("a", "There was no single cause. Historians point to a combination of political instability (dozens of "
                   "emperors in the third century), economic strain from taxation and debased coinage, over-reliance "
                   "on Germanic mercenaries, and pressure from migrating peoples such as the Goths and Huns, "
                   "culminating in the deposition of Romulus Augustulus in 476.", stance="many"),
            A("b", "It fell through many causes working together: civil wars and a rapid turnover of emperors, a "
                   "weakened economy and tax base, an army increasingly made of barbarian federates, and waves of "
                   "invasions by Goths, Vandals and Huns. By 476, when Odoacer deposed the last emperor, the western "
                   "state had largely dissolved.", stance="many"),
            A("c", "The main reason was lead poisoning: Roman elites drank from lead pipes and sweetened their wine "
                   "with lead acetate, which caused widespread mental decline among the ruling class.", stance="lead"),
            A("d", """Historians have proposed hundreds of explanations, but most now see the fall of the Western
                   Empire as a long process with several interacting causes rather than a single event. Politically,
                   the empire never solved the problem of succession. In the third century more than twenty emperors
                   ruled in fifty years, most of them killed by their own troops, and civil wars kept pulling armies
                   away from the frontiers. Economically, the cost of defending thousands of miles of border drove up
                   taxes, while emperors paid soldiers by debasing the silver coinage, fuelling inflation and pushing
                   small farmers off their land. Militarily, Rome came to rely on Germanic groups settled inside the
                   empire as federates who fought under their own leaders and whose loyalty was conditional. Then came
                   outside pressure: the Huns' advance pushed the Goths across the Danube, a Roman army was destroyed
                   at Adrianople in 378, the Visigoths sacked Rome in 410 and the Vandals took North Africa, the
                   west's richest tax province, in 439. With its revenue gone the western government could no longer
                   pay armies at all. When the general Odoacer deposed the young emperor Romulus Augustulus in 476 and
                   did not bother to name a successor, he was recognizing a collapse that had already happened.""",
              "long", "many"),
            A("e", "I agree. There was no single cause. Historians point to a combination of political instability "
                   "(dozens of emperors in the third century), economic strain from taxation and debased coinage, "
                   "over-reliance on Germanic mercenaries, and pressure from migrating peoples such as the Goths and "
                   "Huns, culminating in the deposition of Romulus Augustulus in 476.", "copy", "many", "a"),
        ),
        F(("The Western Roman Empire fell from many causes acting together rather than one.", "abd"),
          ("Political instability and civil wars weakened the state.", "abd"),
          ("Heavy taxes and debased coinage strained the economy.", "abd"),
          ("Invasions by Goths, Vandals and Huns finished it off, and in 476 Odoacer deposed the last western "
           "emperor.", "abd"),
          ("Its eastern half survived for almost a thousand years more.", "")),
        ("The main reason was lead poisoning: Roman elites drank from lead pipes and sweetened their wine with lead "
         "acetate.",
         "The Vandals took North Africa, the west's richest tax province, in 439."),
    ),
    Question(
        "months", "trick question", "How many months have 28 days?",
        (
            A("a", "All twelve of them. Every month has at least 28 days; February is just the only one with no more "
                   "than that (29 in a leap year).", stance="12"),
            A("b", "12. The question is a classic riddle: people think of February, but January, March and every "
                   "other month also contain a 28th day, so all 12 months have 28 days.", stance="12"),
            A("c", "Only one month, February, has 28 days; in leap years it has 29 days instead.", stance="1"),
            A("d", "All 12.", "terse", "12"),
            A("e", "How many months have 28 days? That is, how many of the months in a year have 28 days?",
              "parrot"),
        ),
        F(("All 12 months have 28 days.", "abd"),
          ("Every month has at least 28 days, so each one contains a 28th day.", "ab"),
          ("February is only the month with no more than 28 days, or 29 in a leap year.", "a"),
          ("It is a riddle that plays on the word have.", "b")),
        ("Only one month, February, has 28 days; in leap years it has 29 days instead.",),
        settled={"a": "Twelve: every month reaches a 28th day, and February is merely the only one that stops there "
                      "(or at 29 in leap years).",
                 "b": "All 12 months. It is a riddle; February comes to mind, but every month contains a 28th day.",
                 "c": "February is the one month with 28 days, or 29 in a leap year.",
                 "d": "12 months."},
        moved={"c": "On reflection, all 12: every month has a 28th day, and February is just the shortest."},
    ),
    Question(
        "pubkey", "long-form explanation",
        "Explain how public-key cryptography lets two strangers communicate securely over the internet.",
        (
            A("a", """Public-key cryptography solves a problem that looks impossible: two people who have never met
                   and share no secret want to talk privately over a network that anyone can listen to. The trick is
                   that each person has two mathematically linked keys. The public key can be handed to anyone, even
                   published on a website; the private key never leaves its owner. The link between them is a one-way
                   problem, such as factoring the product of two huge primes in RSA or the discrete logarithm on an
                   elliptic curve: computing the public key from the private one is easy, but going back is infeasible
                   with any computer we can build. Anything encrypted with a public key can be decrypted only with the
                   matching private key. So if Alice wants to write to Bob, she fetches Bob's public key and encrypts
                   with it, and only Bob can read the result, even though the eavesdropper saw every byte. In
                   practice public-key operations are slow, so protocols like TLS use them only at the start: the two
                   sides run a key exchange, usually elliptic-curve Diffie-Hellman, to agree on a fresh shared
                   secret, and then encrypt the conversation with a fast symmetric cipher such as AES. One problem
                   remains: how does Alice know the key really belongs to Bob and not to an attacker in the middle?
                   That is the job of certificates. A certificate authority that her browser already trusts signs a
                   statement binding Bob's name to his public key, and Alice checks that signature before trusting
                   the key.""", "long", "pubkey"),
            A("b", "Each person has a key pair: a public key they can share with anyone and a private key they keep "
                   "secret. Anything encrypted with your public key can only be decrypted with your private key, so a "
                   "stranger can send you a secret message without ever meeting you. In practice (as in TLS) the "
                   "public-key step is used to agree on a shared symmetric session key, and certificates signed by "
                   "trusted authorities prove the public key really belongs to the site.", stance="pubkey"),
            A("c", "Think of an open padlock. You mail out open padlocks to anyone who asks, but only you have the key. "
                   "A stranger puts a message in a box, snaps your padlock shut and sends it back; nobody who "
                   "intercepts the box can open it, not even the sender.", stance="pubkey"),
            A("d", "Both people agree on a single password and email it to each other first; then they use that same "
                   "password to encrypt everything they send, which is what makes it public-key cryptography.",
              stance="shared-password"),
            A("e", "Sorry, I can't assist with that.", "refusal"),
        ),
        F(("Each party has a key pair: a public key anyone may have and a private key kept secret.", "ab"),
          ("A message encrypted with someone's public key can be decrypted only with their private key, like an open "
           "padlock anyone can close but only the owner can open.", "abc"),
          ("Protocols like TLS use this step to agree on a fast symmetric session key.", "ab"),
          ("Certificates signed by trusted authorities prove that a public key belongs to who it claims.", "ab"),
          ("Digital signatures run the idea in reverse, proving who sent a message.", "")),
        ("Both people agree on a single password and email it to each other first.",
         "The link between them is a one-way problem, such as factoring the product of two huge primes in RSA."),
    ),
    Question(
        "sky", "science", "Why is the sky blue?",
        (
            A("a", "Because of Rayleigh scattering: air molecules scatter short wavelengths of sunlight much more "
                   "strongly than long ones (scattering goes as 1/wavelength^4), so blue light is scattered all over "
                   "the sky and reaches your eyes from every direction.", stance="rayleigh"),
            A("b", "Sunlight contains all colours, but the nitrogen and oxygen molecules in the atmosphere scatter blue "
                   "light far more than red light. That scattered blue light comes at us from all parts of the sky, "
                   "which is why it looks blue. The effect is called Rayleigh scattering.", stance="rayleigh"),
            A("c", "The sky is blue because it reflects the colour of the oceans, which cover most of the Earth's "
                   "surface.", stance="ocean"),
            A("d", "Rayleigh scattering.", "terse", "rayleigh"),
            A("e", "Preheat the oven to 180 °C, cream the butter and sugar, then fold in the flour and bake for 25 "
                   "minutes.", "offtopic"),
            A("f", "I agree. Sunlight contains all colours, but the nitrogen and oxygen molecules in the atmosphere "
                   "scatter blue light far more than red light. That scattered blue light comes at us from all parts "
                   "of the sky, which is why it looks blue. The effect is called Rayleigh scattering.",
              "copy", "rayleigh", "b"),
        ),
        F(("The sky is blue because of Rayleigh scattering.", "abd"),
          ("Air molecules scatter short blue wavelengths much more strongly than long red ones, roughly as one over "
           "the wavelength to the fourth power.", "ab"),
          ("The scattered blue light reaches us from every direction, so the whole sky looks blue.", "ab"),
          ("Violet is scattered even more, but our eyes are less sensitive to it.", "")),
        ("The sky is blue because it reflects the colour of the oceans.",
         "Preheat the oven to 180 °C and bake for 25 minutes."),
        settled={"a": "It is Rayleigh scattering: molecules in the air scatter short, blue wavelengths far more than "
                      "long ones, so blue light arrives from every part of the sky.",
                 "b": "All colours are in sunlight, yet nitrogen and oxygen scatter blue much more than red, and that "
                      "scattered blue reaches us from the whole sky: Rayleigh scattering.",
                 "c": "It reflects the oceans: the sky takes its blue colour from the water that covers most of the "
                      "planet.",
                 "d": "Rayleigh scattering of sunlight."},
        moved={"c": "I was wrong about the oceans; it is Rayleigh scattering of blue light by air molecules."},
    ),
    Question(
        "debt", "personal finance", "Should I pay off my credit card at 22% APR before investing in index funds?",
        (
            A("a", "Yes. Paying off a 22% APR balance is a guaranteed 22% return, while index funds have historically "
                   "returned around 7-10% a year with no guarantee. Keep a small emergency fund, take any employer "
                   "401(k) match, then put everything else toward the card.", stance="pay"),
            A("b", "Pay off the card first. No investment reliably beats eliminating 22% interest; the stock market's "
                   "long-run average is well under that. The one exception is free money like an employer match, "
                   "which you should still capture.", stance="pay"),
            A("c", "Invest now. Time in the market matters more than anything, and if you wait until the card is paid "
                   "off you miss years of compound growth; just make the minimum payments on the card.",
              stance="invest"),
            A("d", """In almost every case you should pay off the card first. The reason is simple arithmetic: every
                   dollar you put toward a 22% APR balance saves you 22 cents a year in interest, with certainty and
                   after tax. A broad stock index fund has returned something like 7 to 10 percent a year over long
                   periods, before taxes, and in any single year it can lose a third of its value. No mainstream
                   investment reliably earns more than 22%, so money sent to the market while the card carries a
                   balance is effectively borrowed at 22% to earn perhaps 8%. There are two sensible exceptions. First,
                   if your employer matches 401(k) contributions, contribute enough to get the full match, because an
                   immediate 50 or 100 percent return beats the card. Second, keep a small emergency fund, perhaps one
                   month of expenses, so that a car repair does not go straight back onto the card and restart the
                   cycle. After that, throw every spare dollar at the balance; if you have several cards, pay the
                   highest rate first. A balance transfer to a 0% card can speed things up if you pay it off within
                   the promotional period. Once the card is clear, keep paying the same amount into an index fund each
                   month and you will barely notice the change.""", "long", "pay"),
            A("e", "Should I pay off my 22% APR credit card before I invest in index funds? You're asking whether to "
                   "pay off the credit card or invest in index funds first.", "parrot"),
        ),
        F(("Pay off the 22% card before investing in index funds.", "abd"),
          ("Clearing it is a guaranteed 22% return, more than the 7-10% that index funds have returned on average.",
           "abd"),
          ("Still take any employer 401(k) match, since it is free money.", "abd"),
          ("Keep a small emergency fund so a surprise expense does not go back on the card.", "ad"),
          ("Check whether your bank offers a lower rate if you ask.", "")),
        ("Time in the market matters more than anything; just make the minimum payments on the card.",
         "A balance transfer to a 0% card can speed things up if you pay it off within the promotional period."),
    ),
    Question(
        "recursion", "debugging",
        "My Python script raises 'RecursionError: maximum recursion depth exceeded'. How do I fix it?",
        (
            A("a", "Check your base case first. This error almost always means the recursive function never reaches "
                   "the condition that stops it, for example because the argument is not getting smaller on each "
                   "call. Add a print or use a debugger to see the arguments on each call.", stance="base-case"),
            A("b", "Most likely the recursion never terminates: make sure there is a base case and that every "
                   "recursive call moves toward it. If the recursion is legitimately deep (like walking a huge tree), "
                   "rewrite it as a loop with an explicit stack.", stance="base-case"),
            A("c", "Increase the limit with `sys.setrecursionlimit(10000)` at the top of your script. Python's default "
                   "limit of 1000 is low, and raising it fixes the error immediately.", stance="raise-limit"),
            A("d", "I agree. Most likely the recursion never terminates: make sure there is a base case and that every "
                   "recursive call moves toward it. If the recursion is legitimately deep (like walking a huge tree), "
                   "rewrite it as a loop with an explicit stack.", "copy", "base-case", "b"),
            A("e", "You can install packages with pip: run `pip install requests` in your terminal, and use a virtual "
                   "environment to keep dependencies separate per project.", "offtopic"),
            A("f", "I'm unable to debug code without seeing it.", "refusal"),
        ),
        F(("The error usually means your recursive function never reaches its base case.", "ab"),
          ("Check that every recursive call moves the argument closer to the stopping condition.", "ab"),
          ("If the recursion is legitimately deep, rewrite it as a loop with an explicit stack.", "b"),
          ("Raising the limit with `sys.setrecursionlimit` only hides the bug and can crash the interpreter.", "c"),
          ("Python does not eliminate tail calls, unlike some functional languages.", "")),
        ("You can install packages with pip and use a virtual environment per project.",),
    ),
)

MODELS = {"minilm": PACKAGED, "static": STATIC}
ECHO_KINDS = {"refusal": "refusal", "parrot": "parrot", "copy": "copy"}  # kind -> the flag it should get
SUBSTANTIVE = {"answer", "terse", "long"}
FLAGS = ["none", "empty", "refusal", "parrot", "copy"]


# ------------------------------------------------------------------------ thresholds

@dataclass(frozen=True)
class Thresholds:
    agreement: float
    link: float
    parrot_residual: float
    copy_similarity: float
    sentence_match: float
    shift: float


_CFG = DebateConfig()
DEFAULTS = Thresholds(_CFG.agreement, _CFG.link, _CFG.echo.parrot_residual, _CFG.echo.copy_similarity,
                      st.SENTENCE_MATCH, _CFG.shift)

# threshold -> (the class that must score high, the classes that must score low, what is
# scored, which side's mistakes are costly: "low" = a low-class point above the threshold)
SEPARATES = {
    "agreement": ("agreeing pool", ["mixed pool"], "mean pairwise cosine of a round's pool", "low"),
    "link": ("paraphrase", ["on-topic different", "off-topic"], "cosine of a pair of answers", None),
    "parrot_residual": ("real answer", ["parrot"], "residual norm after removing the question", "high"),
    "copy_similarity": ("copy", ["paraphrase", "same claim (terse)"], "cosine of a pair of answers", "low"),
    "sentence_match": ("kept sentence", ["novel sentence", "dropped claim"], "best sentence-to-source cosine", None),
    "sentence_match/novel only": ("kept sentence", ["novel sentence"], "best sentence-to-source cosine", None),
    "shift": ("dissenter moved", ["reworded round"], "centroid shift between rounds", "high"),
}
COSTLY = {"agreement": "a mixed round stops as agreed", "parrot_residual": "a real answer is dropped as a parrot",
          "copy_similarity": "a paraphrase is dropped as a copy",
          "shift": "a round that still moves counts as converged"}


def attr(name: str) -> str:
    return name.split("/")[0]


def separation(high: list[float], low: list[float], threshold: float) -> dict:
    """How a threshold splits the classes: errors, and its margin (distance to the nearest
    point on the wrong side of nothing: negative when it misclassifies)."""
    errors = sum(v < threshold for v in high) + sum(v >= threshold for v in low)
    margin = min(min(high) - threshold, threshold - max(low))
    return {"threshold": round(threshold, 4), "errors": int(errors), "margin": round(float(margin), 4)}


def widest_margin(high: list[float], low: list[float], costly: str | None = None) -> dict:
    """The threshold (to 0.01) with the fewest errors and, among those, the most clearance
    from every labelled point: the middle of the gap when the classes separate, else the
    middle of the emptiest stretch among the thresholds that misplace the fewest points.
    `costly` ("high" or "low"): no point of that class may be misplaced, if any such
    threshold exists (then the fewest errors on the other side)."""
    values = np.array(high + low)
    candidates = np.round(np.arange(np.floor(values.min() * 100) / 100, np.ceil(values.max() * 100) / 100 + 0.01,
                                    0.01), 2)
    def cost(t: float) -> tuple:
        worst = sum(v < t for v in high) if costly == "high" else sum(v >= t for v in low) if costly else 0
        return worst, separation(high, low, t)["errors"], -np.abs(values - t).min()

    best = min(candidates, key=lambda t: cost(float(t)))
    result = separation(high, low, float(best))
    return {**result, "separable": result["errors"] == 0}


# ---------------------------------------------------------------------------- embedding

@dataclass
class Embedded:
    answers: np.ndarray
    question: np.ndarray
    final: np.ndarray
    dropped: np.ndarray
    chunks: dict[str, np.ndarray]
    settled: np.ndarray | None
    moved: np.ndarray | None


def truth_pool(q: Question) -> list[int]:
    """The answers that are not labelled echoes (what an ideal watchdog leaves)."""
    return [i for i, a in enumerate(q.answers) if a.kind not in ECHO_KINDS]


def final_text(q: Question) -> str:
    return " ".join(sentence for sentence, _ in q.final)


def embed(model, q: Question) -> Embedded:
    pool = truth_pool(q)
    chunk_texts = {q.answers[i].seat: st.chunks(q.answers[i].text) for i in pool}
    rounds = []
    for override in (q.settled, {**q.settled, **q.moved}):
        rounds.append([override.get(q.answers[i].seat, q.answers[i].text) for i in pool] if q.settled else [])
    groups = [[a.text for a in q.answers], [q.text], [s for s, _ in q.final], list(q.dropped),
              *chunk_texts.values(), *rounds]
    vectors = model.encode([t for g in groups for t in g])
    parts, start = [], 0
    for g in groups:
        parts.append(vectors[start:start + len(g)])
        start += len(g)
    answers, question, final, dropped = parts[:4]
    chunks = dict(zip(chunk_texts, parts[4:4 + len(chunk_texts)], strict=True))
    settled, moved = (p if len(p) else None for p in parts[4 + len(chunk_texts):])
    assert st.sentences(final_text(q)) == [s for s, _ in q.final], q.id  # labels line up with the real split
    return Embedded(answers, question[0], final, dropped, chunks, settled, moved)


# ---------------------------------------------------------------------------- decisions

@contextlib.contextmanager
def sentence_match(value: float):
    """settlement.SENTENCE_MATCH for the duration (the real impact code reads it per call)."""
    old, st.SENTENCE_MATCH = st.SENTENCE_MATCH, value
    try:
        yield
    finally:
        st.SENTENCE_MATCH = old


def echo_flags(q: Question, e: Embedded, thr: Thresholds) -> list[str]:
    """The watchdog's verdict per answer; each is shown every other answer but its own copies."""
    flags = []
    for i, a in enumerate(q.answers):
        shown = [(b.text, e.answers[j]) for j, b in enumerate(q.answers) if j != i and b.copy_of != a.seat]
        flags.append(echo.check(a.text, e.answers[i], e.question, shown, parrot_residual=thr.parrot_residual,
                                copy_similarity=thr.copy_similarity) or "none")
    return flags


def impact_weights(model_name: str, q: Question, eligible: list[int], thr: Thresholds) -> dict[str, float]:
    contribs = [st.Contribution(a.seat, "m", f"payee:{a.seat}", a.text, i in eligible) for i, a in enumerate(q.answers)]
    with sentence_match(thr.sentence_match):
        weights = asyncio.run(impact(RunReport("bench", "bench", Caller()), final_text(q), BatchedEmbedder(model_name),
                                     contribs))
    return {seat: round(w, 4) for seat, w in sorted(weights.items())}


def top_seat(weights: dict[str, float]) -> str | None:
    best = max(weights.values(), default=0.0)
    return "+".join(s for s, w in weights.items() if np.isclose(w, best)) if best > 0 else None


def round_decisions(q: Question, e: Embedded, pool: list[int], thr: Thresholds, model_name: str) -> dict:
    seats = [a.seat for a in q.answers]
    lay = atlas.layout(e.answers, pool, link=thr.link)
    weights = impact_weights(model_name, q, pool, thr)
    return {"pool": [seats[i] for i in pool], "consensus": seats[lay.consensus],
            "dissent": seats[lay.dissent] if lay.dissent is not None else None,
            "clusters": [[seats[pool[j]] for j in c] for c in lay.clusters],
            "agreement": round(lay.agreement, 4), "agreed": lay.agreement >= thr.agreement,
            "impact": weights, "top_seat": top_seat(weights)}


def decide(q: Question, e: Embedded, thr: Thresholds, model_name: str) -> dict:
    flags = echo_flags(q, e, thr)
    e2e = [i for i, f in enumerate(flags) if f == "none"]
    agree = agree_pool(q)
    return {"flags": flags, "same_pool": round_decisions(q, e, truth_pool(q), thr, model_name),
            "end_to_end": round_decisions(q, e, e2e, thr, model_name) if e2e else None,
            "agree_pool_agreed": bool(geometry.mean_pairwise(geometry.similarity(e.answers[agree])) >= thr.agreement)}


# --------------------------------------------------------------------- distributions

def majority_stance(q: Question) -> str:
    return Counter(q.answers[i].stance for i in truth_pool(q) if q.answers[i].stance).most_common(1)[0][0]


def agree_pool(q: Question) -> list[int]:
    """The unfiltered answers that make the majority's claim: a round that agrees."""
    return [i for i in truth_pool(q) if q.answers[i].stance == majority_stance(q)]


def pair_class(a: Answer, b: Answer) -> str | None:
    if a.copy_of == b.seat or b.copy_of == a.seat:
        return "copy"
    if a.kind in ECHO_KINDS or b.kind in ECHO_KINDS:
        return None
    if "offtopic" in (a.kind, b.kind):
        return "off-topic" if {a.kind, b.kind} & SUBSTANTIVE else None
    if a.stance != b.stance:
        return "on-topic different"
    return "same claim (terse)" if "terse" in (a.kind, b.kind) else "paraphrase"


Points = dict[str, list[tuple[float, str]]]  # class -> (score, which item)


def distributions(q: Question, e: Embedded) -> Points:
    """This question's labelled scores, by class (the classes of SEPARATES)."""
    out: Points = {}

    def add(cls: str, value: float, what: str) -> None:
        out.setdefault(cls, []).append((float(value), f"{q.id}:{what}"))

    sim = geometry.similarity(e.answers)
    for i, a in enumerate(q.answers):
        for j in range(i + 1, len(q.answers)):
            cls = pair_class(a, q.answers[j])
            if cls:
                add(cls, sim[i, j], f"{a.seat}~{q.answers[j].seat}")
        if a.kind == "parrot" or a.kind in SUBSTANTIVE | {"offtopic"}:
            add("parrot" if a.kind == "parrot" else "real answer", echo.residual_norm(e.answers[i], e.question),
                f"{a.seat} ({a.kind})")
    pool, agree = truth_pool(q), agree_pool(q)
    add("agreeing pool", geometry.mean_pairwise(geometry.similarity(e.answers[agree])),
        "".join(q.answers[i].seat for i in agree))
    if len({q.answers[i].stance for i in pool}) > 1:
        add("mixed pool", geometry.mean_pairwise(geometry.similarity(e.answers[pool])),
            "".join(q.answers[i].seat for i in pool))
    names = list(e.chunks)
    best = np.stack([(e.final @ e.chunks[n].T).max(axis=1) for n in names], axis=1)
    for (sentence, support), row in zip(q.final, best, strict=True):
        add("kept sentence" if support else "novel sentence", row.max(), repr(sentence[:48]))
        if support:
            add("attributed right", names[int(row.argmax())] in support, repr(sentence[:48]))
    for claim, value in zip(q.dropped, (e.dropped @ e.final.T).max(axis=1), strict=True):
        add("dropped claim", value, repr(claim[:48]))
    if e.settled is not None:
        add("reworded round", geometry.centroid_shift(e.answers[pool], e.settled), "round 2")
        add("dissenter moved", geometry.centroid_shift(e.answers[pool], e.moved), "round 2")
    return out


# ------------------------------------------------------------------------- comparison

def pct(values: list[bool]) -> float:
    return round(100.0 * sum(values) / len(values), 1) if values else float("nan")


def clusters_key(clusters: list[list[str]]) -> frozenset:
    return frozenset(frozenset(c) for c in clusters)


def agreement_between(x: list[dict], y: list[dict]) -> dict[str, dict]:
    """How often two runs (one decide() per question each) decide the same, per scope."""
    out = {}
    for scope in ("same_pool", "end_to_end"):
        pairs = [(a[scope], b[scope]) for a, b in zip(x, y, strict=True) if a[scope] and b[scope]]
        seats = [(ra["impact"], rb["impact"]) for ra, rb in pairs]
        out[scope] = {
            "consensus voice": pct([ra["consensus"] == rb["consensus"] for ra, rb in pairs]),
            "dissent voice": pct([ra["dissent"] == rb["dissent"] for ra, rb in pairs]),
            "clusters identical": pct([clusters_key(ra["clusters"]) == clusters_key(rb["clusters"]) for ra, rb in pairs]),
            "agreed stop (the round's pool)": pct([ra["agreed"] == rb["agreed"] for ra, rb in pairs]),
            "impact top seat (ties: same set)": pct([ra["top_seat"] == rb["top_seat"] for ra, rb in pairs]),
            "impact top seats overlap": pct([bool(set((ra["top_seat"] or "").split("+"))
                                                  & set((rb["top_seat"] or "").split("+")) - {""})
                                             for ra, rb in pairs]),
            "impact mean |diff| per seat": round(float(np.mean([abs(wa.get(k, 0) - wb.get(k, 0)) for wa, wb in seats
                                                                 for k in set(wa) | set(wb)])), 4),
        }
    flags = [(fa, fb) for a, b in zip(x, y, strict=True) for fa, fb in zip(a["flags"], b["flags"], strict=True)]
    both = {"echo flag per answer": pct([fa == fb for fa, fb in flags]),
            "agreed stop (agreeing pools)": pct([a["agree_pool_agreed"] == b["agree_pool_agreed"]
                                                 for a, b in zip(x, y, strict=True)])}
    return {scope: {**both, **metrics} for scope, metrics in out.items()}


def versus_labels(run: list[dict]) -> dict[str, float]:
    """How often one run's decisions match the corpus labels."""
    flags, cons, diss, agreed = [], [], [], []
    for q, d in zip(CORPUS, run, strict=True):
        stance = {a.seat: a.stance for a in q.answers}
        majority = majority_stance(q)
        flags += [f == ECHO_KINDS.get(a.kind, "none") for a, f in zip(q.answers, d["flags"], strict=True)]
        cons.append(stance[d["same_pool"]["consensus"]] == majority)
        diss.append(stance[d["same_pool"]["dissent"]] != majority)
        agreed += [d["agree_pool_agreed"], not d["same_pool"]["agreed"]]
    return {"echo flag = label": pct(flags), "consensus voice makes the majority claim": pct(cons),
            "dissent voice is a minority or off-topic answer": pct(diss),
            "agreed stop right (agreeing pool yes, mixed pool no)": pct(agreed)}


def confusion(x: list[dict], y: list[dict]) -> dict[str, dict[str, int]]:
    counts = Counter((fa, fb) for a, b in zip(x, y, strict=True) for fa, fb in zip(a["flags"], b["flags"], strict=True))
    return {fa: {fb: counts[(fa, fb)] for fb in FLAGS} for fa in FLAGS}


def suggest(dist: dict[str, list[float]]) -> dict[str, dict]:
    out = {}
    for name, (high, lows, _, costly) in SEPARATES.items():
        low = [v for cls in lows for v in dist.get(cls, [])]
        if dist.get(high) and low:
            out[name] = {"suggested": widest_margin(dist[high], low),
                         "default": separation(dist[high], low, getattr(DEFAULTS, attr(name)))}
            if costly:
                out[name]["safe"] = widest_margin(dist[high], low, costly)
    return out


def retuned(suggestions: dict[str, dict], *, safe: bool) -> Thresholds:
    """The static model's thresholds: widest margin, or (`safe`) no costly mistake where the
    classes overlap. `sentence_match` takes the kept-vs-novel split (the decision it makes)."""
    pick = lambda k: suggestions[k]["safe" if safe and "safe" in suggestions[k] else "suggested"]["threshold"]  # noqa: E731
    values = {attr(k): pick(k) for k in SEPARATES if k != "sentence_match"}
    return Thresholds(**values)


def merge(dists: list[Points]) -> Points:
    out: Points = {}
    for d in dists:
        for cls, points in d.items():
            out.setdefault(cls, []).extend(points)
    return out


def scores(points: Points) -> dict[str, list[float]]:
    return {cls: [v for v, _ in pts] for cls, pts in points.items()}


def misplaced(points: Points, name: str, threshold: float) -> list[str]:
    """The labelled items on the wrong side of `threshold`."""
    high, lows, *_ = SEPARATES[name]
    wrong = [(v, w, high) for v, w in points.get(high, []) if v < threshold]
    wrong += [(v, w, cls) for cls in lows for v, w in points.get(cls, []) if v >= threshold]
    return [f"{w} [{cls}] {v:.3f}" for v, w, cls in sorted(wrong)]


# ---------------------------------------------------------------------------- report

def fmt(v) -> str:
    return f"{v:.3f}" if isinstance(v, float) else str(v)


def table(header: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(fmt(c) for c in r) + " |" for r in rows]) + "\n"


def markdown(res: dict) -> str:
    runs, agree, thr = res["runs"], res["agreement"], res["thresholds"]
    n_answers = sum(len(q.answers) for q in CORPUS)
    md = [f"Models: `{PACKAGED}` (MiniLM) vs `{STATIC}` (static). Corpus: {len(CORPUS)} questions, "
          f"{n_answers} panel answers, {sum(len(q.final) for q in CORPUS)} final-answer sentences. "
          f"Wall time {res['wall_s']} s.\n",
          "## Do the two models decide the same? (% of questions; echo flags: % of answers)\n",
          "'same pool': labelled echoes removed first; 'end to end': each model's own echo watchdog picks the pool. "
          "Last two columns: MiniLM at the defaults vs the static model at the thresholds suggested below "
          "(widest margin; safe = no costly mistake where the classes overlap).\n"]
    keys = list(agree["defaults"]["same_pool"])
    md.append(table(["decision", "same pool (defaults)", "end to end (defaults)", "end to end (static widest)",
                     "end to end (static safe)"],
                    [[k, agree["defaults"]["same_pool"][k], agree["defaults"]["end_to_end"][k],
                      agree["static widest"]["end_to_end"][k], agree["static safe"]["end_to_end"][k]] for k in keys]))
    md.append("\n## Against the corpus labels (%)\n")
    labels = {name: versus_labels(run) for name, run in runs.items()}
    md.append(table(["check", *labels], [[k, *(labels[n][k] for n in labels)] for k in labels["minilm"]]))
    md.append("\n## Thresholds (class margin = distance from the threshold to the nearest labelled point; "
              "negative = some points on the wrong side)\n")
    rows = []
    for name, (high, lows, _, costly) in SEPARATES.items():
        m, s = thr["minilm"].get(name), thr["static"].get(name)
        if not (m and s):
            continue
        cell = lambda r: f"{r['threshold']:g} (margin {r['margin']:+.3f}, {r['errors']} err)"  # noqa: E731
        n = len(res["distributions"]["static"][high]) + sum(len(res["distributions"]["static"].get(c, [])) for c in lows)
        rows.append([f"`{name}`: {high} vs {' + '.join(lows)} (n={n})", f"{getattr(DEFAULTS, attr(name)):g}",
                     cell(m["default"]), cell(s["default"]), cell(s["suggested"]),
                     f"{cell(s['safe'])}: never {COSTLY[name]}" if costly else "-", cell(m["suggested"])])
    md.append(table(["threshold: high class vs low class", "default", "MiniLM at default", "static at default",
                     "static, widest margin", "static, safe", "MiniLM, widest margin"], rows))
    moved = {n: sum(r["moved"] > r["reworded"] for r in rows_) for n, rows_ in res["shift_per_question"].items()}
    md.append(f"\nShift, per question: the round where the dissenter came round moved the centroid more than the "
              f"reworded round in {moved['minilm']}/{len(res['shift_per_question']['minilm'])} questions (MiniLM), "
              f"{moved['static']}/{len(res['shift_per_question']['static'])} (static).\n")
    md.append("\n## Score distributions by class (min / median / max)\n")
    classes = sorted({c for d in res["distributions"].values() for c in d})
    dist = res["distributions"]
    summary = lambda v: f"{min(v):.3f} / {statistics.median(v):.3f} / {max(v):.3f}" if v else "-"  # noqa: E731
    md.append(table(["class", "n", "MiniLM", "static"],
                    [[c, len(dist["minilm"].get(c, [])), summary(dist["minilm"].get(c, [])),
                      summary(dist["static"].get(c, []))] for c in classes if c != "attributed right"]))
    md.append("\nKept sentences credited to a seat that holds the claim: "
              + ", ".join(f"{n} {pct([bool(v) for v in d['attributed right']])}%" for n, d in dist.items()) + ".\n")
    md.append("\n## Misplaced items (question:item [its class] score)\n")
    for key, by_threshold in res["misplaced"].items():
        md.append(f"\n**{key}**\n")
        md += [f"- `{k}`: " + ("; ".join(items) if items else "none") for k, items in by_threshold.items()]
    md.append("\n## Echo flags: MiniLM (rows) vs static (columns), defaults\n")
    conf = res["echo_confusion"]
    md.append(table(["MiniLM \\ static", *FLAGS], [[fa, *(conf[fa][fb] for fb in FLAGS)] for fa in FLAGS]))
    md.append("\n## Per question (end to end, defaults; flags in seat order, . = kept)\n")
    short = {"none": ".", "refusal": "R", "parrot": "P", "copy": "C", "empty": "E"}
    rows = []
    for i, q in enumerate(CORPUS):
        for name in ("minilm", "static"):
            d = runs[name][i]
            r = d["end_to_end"] or {}
            rows.append([q.id if name == "minilm" else "", name, "".join(short[f] for f in d["flags"]),
                         " ".join("{" + ",".join(c) + "}" for c in r.get("clusters", [])), r.get("consensus"),
                         r.get("dissent"), r.get("agreement"), "yes" if r.get("agreed") else "no", r.get("top_seat")])
    md.append(table(["question", "model", "flags", "clusters", "consensus", "dissent", "agreement", "agreed",
                     "top seat"], rows))
    return "\n".join(md)


def plot(res: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dist, suggested, safe = res["distributions"], *(res["suggested_static"][k] for k in ("widest_margin", "safe"))
    panels = [("pair cosine", ["paraphrase", "same claim (terse)", "on-topic different", "off-topic", "copy"],
               ["link", "copy_similarity"]),
              ("round agreement (mean pairwise cosine)", ["agreeing pool", "mixed pool"], ["agreement"]),
              ("parrot residual norm", ["real answer", "parrot"], ["parrot_residual"]),
              ("final sentence: best source cosine", ["kept sentence", "novel sentence", "dropped claim"],
               ["sentence_match"]),
              ("centroid shift, round 1 -> 2", ["reworded round", "dissenter moved"], ["shift"])]
    fig, axes = plt.subplots(1, len(panels), figsize=(24, 5.5), gridspec_kw={"width_ratios": [5, 2, 2, 3, 2]})
    rng = np.random.default_rng(0)
    colors = {"minilm": "tab:blue", "static": "tab:orange"}
    for ax, (title, classes, names) in zip(axes, panels, strict=True):
        for x, cls in enumerate(classes):
            for k, model in enumerate(("minilm", "static")):
                v = dist[model].get(cls, [])
                pos = x + (k - 0.5) * 0.36
                ax.scatter(pos + rng.uniform(-0.1, 0.1, len(v)), v, s=14, alpha=0.7, color=colors[model],
                           label=model if x == 0 else None)
                if v:
                    ax.hlines(statistics.median(v), pos - 0.15, pos + 0.15, color=colors[model], lw=2)
        for j, name in enumerate(names):
            style = ["-", "-."][j]
            ax.axhline(getattr(DEFAULTS, name), color="black", ls=style, lw=1, label=f"{name} default")
            ax.axhline(suggested[name], color="tab:red", ls=style, lw=1, label=f"{name} widest margin (static)")
            if safe[name] != suggested[name]:
                ax.axhline(safe[name], color="tab:green", ls=":", lw=1.5, label=f"{name} safe (static)")
        ax.set_xticks(range(len(classes)), [c.replace(" ", "\n", 1) for c in classes], fontsize=8)
        ax.set_title(title, fontsize=10)
        ax.legend(fontsize=7, loc="best")
    fig.suptitle("MiniLM (blue) vs static (orange): labelled score classes, thresholds as lines", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ------------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/embedder_agreement"))
    args = parser.parse_args()
    started = time.perf_counter()
    embedded: dict[str, list[Embedded]] = {}
    runs: dict[str, list[dict]] = {"minilm": [], "static": [], "static widest": [], "static safe": []}
    with tqdm(total=len(MODELS) * len(CORPUS) + len(runs) * len(CORPUS), desc="embedder agreement",
              unit="step") as bar:
        for name, model_name in MODELS.items():
            bar.set_postfix_str(f"loading {name}")
            model = load_model(model_name)
            embedded[name] = []
            for q in CORPUS:
                bar.set_postfix_str(f"{name}: embed {q.id}")
                embedded[name].append(embed(model, q))
                bar.update()
        dists = {name: merge([distributions(q, e) for q, e in zip(CORPUS, embedded[name], strict=True)])
                 for name in MODELS}
        thresholds = {name: suggest(scores(d)) for name, d in dists.items()}
        widest, safe = retuned(thresholds["static"], safe=False), retuned(thresholds["static"], safe=True)
        for name, model_name, thr in [("minilm", PACKAGED, DEFAULTS), ("static", STATIC, DEFAULTS),
                                      ("static widest", STATIC, widest), ("static safe", STATIC, safe)]:
            for q, e in zip(CORPUS, embedded[name.split()[0]], strict=True):
                bar.set_postfix_str(f"{name}: decide {q.id}")
                runs[name].append(decide(q, e, thr, model_name))
                bar.update()
    res = {
        "models": MODELS, "defaults": DEFAULTS.__dict__,
        "suggested_static": {"widest_margin": widest.__dict__, "safe": safe.__dict__},
        "agreement": {"defaults": agreement_between(runs["minilm"], runs["static"]),
                      "static widest": agreement_between(runs["minilm"], runs["static widest"]),
                      "static safe": agreement_between(runs["minilm"], runs["static safe"])},
        "thresholds": thresholds,
        "echo_confusion": confusion(runs["minilm"], runs["static"]),
        "distributions": {n: {c: [round(v, 4) for v in vs] for c, vs in scores(d).items()} for n, d in dists.items()},
        "misplaced": {f"{n} at {which}": {k: misplaced(dists[n], k, getattr(thr, attr(k))) for k in SEPARATES}
                      for n, which, thr in [("minilm", "default", DEFAULTS), ("static", "default", DEFAULTS),
                                            ("static", "widest-margin", widest), ("static", "safe", safe)]},
        "shift_per_question": {n: [{"question": w.split(":")[0], "reworded": round(r, 4), "moved": round(m, 4)}
                                   for (r, w), (m, _) in zip(d["reworded round"], d["dissenter moved"], strict=True)]
                               for n, d in dists.items()},
        "runs": runs,
        "questions": [{"id": q.id, "domain": q.domain, "seats": {a.seat: a.kind + (f":{a.stance}" if a.stance else "")
                                                                  for a in q.answers}} for q in CORPUS],
        "torch_threads": os.environ.get("CHORUS_TORCH_THREADS"),
    }
    res["wall_s"] = round(time.perf_counter() - started, 1)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    plot(res, args.out + ".png")
    write(args.out, res, markdown(res))


if __name__ == "__main__":
    main()
