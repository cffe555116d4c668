"""First start on a fresh machine: how long from `chorus serve --demo` to the first answer?

Each start gets empty data and cache dirs (XDG_DATA_HOME, XDG_CACHE_HOME and
CHORUS_CACHE_DIR point at a new temporary folder), so nothing from an earlier start is
reused: no distilled embedding model, no demo signing key, no database. It runs the
README's command, `chorus serve --demo`, on free ports and times, from the moment the
command starts:

- live: the first `GET /health/liveliness` that answers 200;
- first answer: the first `fusion/debate` request (the README's prompt, through the
  `openai` client, sent as soon as the proxy is live) returned its fused answer; the
  request alone took "answer took", and the run reports the embedding model it used.

It also counts what the start wrote to the terminal: lines, LiteLLM's "custom pricing but
not in built-in cost map" warnings and its price map download attempts. A second start
with the same (now filled) dirs is the "next start" row. `--checkout LABEL=PATH` (again
for each) measures other source trees with this venv, e.g. a `git worktree` of an older
commit, alternating with each other start by start so that they share the machine's load.

Run: python benchmarks/first_answer.py [--starts 1] [--checkout before=/tmp/old --checkout after=.]
Writes benchmarks/results/first_answer.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import openai

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
from _results import write

PROMPT = [{"role": "user", "content": "Compare Raft and Paxos. Explain the trade-offs."}]
KEY = "sk-chorus-demo"
# What the start-up log says, counted per start.
PRICING = "has custom pricing but not in built-in cost map"
COST_MAP_FETCH = re.compile(r"model cost map fetch attempt|Failed to fetch remote model cost map|"
                            r"using local model cost map", re.IGNORECASE)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def ask(client: openai.OpenAI) -> str:
    """One fused answer; the embedding model its run used."""
    resp = client.chat.completions.create(model="fusion/debate", messages=PROMPT,
                                          extra_body={"chorus": {"output_mode": "audit"}})
    assert resp.choices[0].message.content
    return resp.model_extra["chorus"]["deliberation"]["embedding_model"]


def start(home: Path, latency: float, timeout_s: float, log: Path, checkout: Path) -> dict:
    """One `chorus serve --demo` of `checkout` with `home` as its data and cache dirs; the timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHORUS_", "LITELLM_"))}
    env.update(XDG_DATA_HOME=str(home / "data"), XDG_CACHE_HOME=str(home / "cache"),
               CHORUS_CACHE_DIR=str(home / "cache" / "chorus-litellm"), PYTHONUNBUFFERED="1")
    if checkout != ROOT:  # its chorus_litellm before the one this venv installed
        env["PYTHONPATH"] = str(checkout)
    port, demo_port = free_port(), free_port()
    chorus = Path(sys.executable).with_name("chorus")
    row: dict = {"load_before": loadavg()}
    started = time.perf_counter()
    with open(log, "w") as out:
        proc = subprocess.Popen([str(chorus), "serve", "--demo", "--port", str(port), "--demo-port", str(demo_port),
                                 "--demo-latency", str(latency), "--grace", "5"],
                                cwd=checkout, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    client = openai.OpenAI(base_url=f"{base}/v1", api_key=KEY, max_retries=0, timeout=300)
    try:
        deadline = started + timeout_s
        while time.perf_counter() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"chorus serve exited with {proc.returncode}; see {log}")
            try:
                if httpx.get(f"{base}/health/liveliness", timeout=1, trust_env=False).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        live = time.perf_counter()
        row["live_s"] = round(live - started, 1)
        row["embedder"] = ask(client)
        row["first_answer_s"] = round(time.perf_counter() - started, 1)
        row["answer_took_s"] = round(time.perf_counter() - live, 1)
        row["load_after"] = loadavg()
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    text = log.read_text(errors="replace")
    lines = text.splitlines()
    row.update(log_lines=sum(1 for line in lines if line.strip()), pricing_warnings=text.count(PRICING),
               cost_map_fetches=len(COST_MAP_FETCH.findall(text)))
    return row


def checkout(value: str) -> tuple[str, Path]:
    label, _, path = value.rpartition("=")
    return label or Path(path).name, Path(path).resolve()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=1, help="fresh-machine starts (each then restarted once)")
    parser.add_argument("--demo-latency", type=float, default=1.0, help="chorus serve --demo-latency (its default: 1)")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a start may take to answer")
    parser.add_argument("--checkout", type=checkout, action="append", metavar="LABEL=PATH",
                        help="a source tree to run with this venv (again for more; default: this one)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "first_answer"))
    parser.add_argument("--logs", default=tempfile.gettempdir(), help="folder for each start's terminal output")
    args = parser.parse_args()
    trees = args.checkout or [("this checkout", ROOT)]
    rows = []
    for i in range(args.starts):
        for label, tree in trees:
            with tempfile.TemporaryDirectory(prefix="chorus-fresh-") as tmp:
                for case in ("fresh machine", "next start"):
                    log = Path(args.logs) / f"first_answer.{label}.{i + 1}.{case.split()[0]}.log"
                    row = {"code": label, "case": case, "start": i + 1,
                           **start(Path(tmp), args.demo_latency, args.timeout, log, tree)}
                    print(row, flush=True)
                    rows.append(row)
    result = {"benchmark": "first_answer", "checkouts": {label: str(tree) for label, tree in trees},
              "demo_latency_s": args.demo_latency, "rows": rows,
              "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()}}
    lines = [(f"`chorus serve --demo` (demo latency {args.demo_latency:g} s a call), {os.cpu_count()} CPUs; seconds "
              "from the command's start; load average (1, 5, 15 min) before and after each start."), "",
             ("| code | case | live (s) | first answer (s) | answer took (s) | its embedder | log lines | "
              "pricing warnings | cost map fetches | load before | load after |"),
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['code']} | {r['case']} | {r['live_s']} | {r['first_answer_s']} | {r['answer_took_s']} | "
              f"{r['embedder']} | {r['log_lines']} | {r['pricing_warnings']} | {r['cost_map_fetches']} | "
              f"{' '.join(map(str, r['load_before']))} | {' '.join(map(str, r['load_after']))} |" for r in rows]
    write(args.out, result, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
