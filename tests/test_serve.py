"""`chorus serve` as a user runs it: a real process tree (chorus -> litellm -> workers)."""

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import e2e_config
from tests.servers import ROOT, free_port, process_tree, wait_http

HARD = [{"role": "user", "content": "Compare Raft and Paxos and explain the trade-offs."}]


def serve(upstream: str, workdir: Path, port: int, sigint) -> subprocess.Popen:
    config = workdir / "litellm_config.yaml"
    config.write_text(yaml.safe_dump(e2e_config(upstream), sort_keys=False))
    env = {**os.environ, "CHORUS_DB_PATH": str(workdir / "chorus.sqlite3"),
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)])}
    return subprocess.Popen(
        [sys.executable, "-m", "chorus_litellm.cli", "serve", "--config", str(config), "--port", str(port),
         "--workers", "1", "--grace", "20"],
        stdout=(workdir / "serve.log").open("w"), stderr=subprocess.STDOUT, env=env, cwd=workdir,
        # SIG_DFL: as from a terminal; SIG_IGN: as started in the background (`chorus serve &`)
        preexec_fn=lambda: signal.signal(signal.SIGINT, sigint),
    )


@pytest.mark.parametrize("signum, sigint", [(signal.SIGINT, signal.SIG_DFL), (signal.SIGINT, signal.SIG_IGN),
                                            (signal.SIGTERM, signal.SIG_DFL)],
                         ids=["ctrl-c", "sigint-to-a-background-serve", "sigterm"])
def test_a_signal_to_chorus_alone_stops_everything_after_the_run_in_flight(upstream, tmp_path, signum, sigint):
    port = free_port()
    proc = serve(upstream, tmp_path, port, sigint)
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout=120, log=tmp_path / "serve.log")
        tree = process_tree(proc.pid)[1:]
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="sk-team-a", max_retries=0,
                               timeout=60)
        words, started = [], threading.Event()

        def stream() -> None:  # the drip writer streams 0.2 s per word: a run in flight
            for chunk in client.chat.completions.create(model="fusion/drip", messages=HARD, stream=True):
                for choice in chunk.choices:
                    if choice.delta.content:
                        words.append(choice.delta.content)
                        started.set()

        reader = threading.Thread(target=stream)
        reader.start()
        assert started.wait(30)
        proc.send_signal(signum)
        reader.join(30)
        assert not reader.is_alive() and "".join(words).startswith("drip-writer answers")
        assert proc.wait(30) == 0
        time.sleep(0.5)
        assert not [pid for pid in tree if Path(f"/proc/{pid}").exists()
                    and "zombie" not in Path(f"/proc/{pid}/status").read_text()]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health/liveliness", timeout=2)
    finally:
        if proc.poll() is None:
            proc.kill()
