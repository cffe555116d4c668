"""`chorus serve` as a user runs it: a real process tree (chorus -> litellm -> workers)."""

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from tests.conftest import e2e_config, wait_drawable
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
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, log=tmp_path / "serve.log")
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


def refuse(*_args, **_kwargs):
    raise AssertionError("started something")


@pytest.mark.parametrize("flag, demo", [("--port", False), ("--port", True), ("--demo-port", True)])
def test_a_busy_port_stops_serve_before_anything_starts_naming_it(monkeypatch, capsys, flag, demo):
    """Issue 25: with the demo's port taken, `chorus serve --demo` said "demo upstream on
    ...", logged `address already in use`, and every fused request failed with a 502."""
    from chorus_litellm import cli

    monkeypatch.setattr(cli, "prepare_embeddings", refuse)
    monkeypatch.setattr(subprocess, "Popen", refuse)
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        busy = held.getsockname()[1]
        ports = {"--port": free_port(), "--demo-port": free_port(), flag: busy}
        argv = ["serve", "--config", str(ROOT / "litellm_config.yaml"), "--port", str(ports["--port"])]
        argv += ["--demo", "--demo-port", str(ports["--demo-port"])] if demo else []
        assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{busy} ({flag}): address already in use" in err
    assert f"pass another {flag}" in err


class Started:
    """What `chorus serve` started: each command line and its environment; each one runs
    `code` in Python instead (default: exits 0 at once)."""

    popen = subprocess.Popen  # the real one

    def __init__(self, code: str = "pass"):
        self.code, self.commands, self.processes = code, [], []

    def __call__(self, command, env=None, **_kwargs):
        self.commands.append((command, env))
        self.processes.append(self.popen([sys.executable, "-c", self.code]))
        return self.processes[-1]


@pytest.mark.parametrize("argv, workers", [(["--demo"], 1), ([], os.cpu_count()), (["--demo", "--workers", "3"], 3)],
                         ids=["demo", "no-demo", "demo-told"])
def test_the_demo_runs_one_proxy_worker_unless_told_otherwise(monkeypatch, tmp_path, argv, workers):
    """Issue 25, point 4: LiteLLM imports its proxy in the `litellm` process and again in each
    worker (11-13 s of CPU each on 2 cores); one worker is served by the first import."""
    from chorus_litellm import cli
    from chorus_litellm.gateway import startup

    started = Started()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "prepare_embeddings", lambda _config: None)
    monkeypatch.setattr(startup, "start_demo_upstream", lambda *_args, **_kwargs: started(["demo upstream"]))
    monkeypatch.setattr(startup, "demo_upstream_ready", lambda *_args, **_kwargs: None)
    monkeypatch.setattr(cli, "_stop_on_signals", lambda *_args: threading.Event())
    monkeypatch.setattr(subprocess, "Popen", started)
    assert cli.main(["serve", "--config", str(ROOT / "litellm_config.yaml"), "--port", str(free_port()), *argv,
                     *(["--demo-port", str(free_port())] if "--demo" in argv else [])]) == 0
    command, env = started.commands[-1]
    assert command[:4] == [sys.executable, "-P", "-m", "chorus_litellm.gateway.proxy_command"]  # `litellm`, GC paused
    assert command[command.index("--num_workers") + 1] == str(workers) and env["NUM_WORKERS"] == str(workers)


def test_a_demo_upstream_that_does_not_start_stops_the_proxy_started_beside_it(monkeypatch, tmp_path, capsys):
    """The proxy starts while the demo upstream does (it calls it only once it serves, after
    seconds of imports); an upstream that exits stops it and the command, naming the port."""
    from chorus_litellm import cli
    from chorus_litellm.gateway import startup

    proxy = Started("import time; time.sleep(60)")
    demo_port = free_port()
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "prepare_embeddings", lambda _config: None)
    monkeypatch.setattr(startup, "start_demo_upstream", lambda *_args, **_kwargs: Started("exit(3)")(["demo"]))
    monkeypatch.setattr(cli, "_stop_on_signals", lambda *_args: threading.Event())
    monkeypatch.setattr(subprocess, "Popen", proxy)
    assert cli.main(["serve", "--config", str(ROOT / "litellm_config.yaml"), "--port", str(free_port()), "--demo",
                     "--demo-port", str(demo_port)]) == 1
    assert f"the demo upstream on 127.0.0.1:{demo_port} (--demo-port) exited with 3" in capsys.readouterr().err
    assert proxy.processes[0].wait(10) == -signal.SIGTERM


def test_the_demo_and_the_proxy_cannot_share_a_port(monkeypatch, capsys):
    from chorus_litellm import cli

    monkeypatch.setattr(cli, "prepare_embeddings", refuse)
    port = str(free_port())
    assert cli.main(["serve", "--config", str(ROOT / "litellm_config.yaml"), "--port", port, "--demo",
                     "--demo-port", port]) == 1
    assert f"--port and --demo-port are both {port}" in capsys.readouterr().err


def test_the_demo_port_moves_the_configs_upstream_in_a_copy(tmp_path):
    from chorus_litellm.gateway import startup

    shipped = str(ROOT / "litellm_config.yaml")
    with startup.demo_config(shipped, startup.DEMO_PORT) as config:
        assert config == shipped
    with startup.demo_config(shipped, 8123) as config:
        text = Path(config).read_text()
        assert "http://127.0.0.1:8123/v1" in text and "//127.0.0.1:8001" not in text
        assert yaml.safe_load(text) == yaml.safe_load((ROOT / "litellm_config.yaml").read_text().replace(
            "127.0.0.1:8001", "127.0.0.1:8123"))
    assert not Path(config).exists()


def test_serve_documents_every_option_with_its_default(capsys):
    from chorus_litellm import cli

    with pytest.raises(SystemExit):
        cli.main(["serve", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option, default in [("--config FILE", "litellm_config.yaml"), ("--host HOST", "127.0.0.1"),
                            ("--port N", "4000"), ("--demo-port N", "8001"), ("--grace S", "30")]:
        assert option in text and f"(default: {default}" in text, option


def test_the_demo_pays_two_peers_joined_from_the_command_line(tmp_path):
    """The marketplace's "done when", as a newcomer does it: `chorus serve --demo` with the
    shipped config, two model servers, `chorus peer join` twice, a bounty on
    `fusion/market`; both peers answer and are paid, and each verifies its receipt."""
    port = free_port()
    env = {**os.environ, "CHORUS_DB_PATH": str(tmp_path / "chorus.sqlite3"), "XDG_DATA_HOME": str(tmp_path / "data"),
           "PYTHONPATH": str(ROOT)}
    for var in ("CHORUS_SIGNING_KEY_FILE", "CHORUS_SIGNING_KEY", "CHORUS_PEER_ADMISSION", "CHORUS_STORE"):
        env.pop(var, None)
    chorus = [sys.executable, "-m", "chorus_litellm.cli"]
    # --demo-port: the shipped config's upstream moved off 8001, which another run may hold
    procs = [subprocess.Popen([*chorus, "serve", "--demo", "--config", str(ROOT / "litellm_config.yaml"), "--port",
                               str(port), "--demo-port", str(free_port()), "--demo-latency", "0.05", "--workers", "1"],
                              stdout=(tmp_path / "serve.log").open("w"), stderr=subprocess.STDOUT, env=env,
                              cwd=tmp_path)]
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health/liveliness", procs[0], log=tmp_path / "serve.log")
        peers = {}
        for name in ("alice", "bob"):
            server_port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "chorus_litellm.demo.fake_upstream", "--port",
                                           str(server_port)], env=env))
            wait_http(f"http://127.0.0.1:{server_port}/health", procs[-1])
            key = tmp_path / f"{name}.json"
            made = subprocess.run([*chorus, "peer", "keygen", "--out", str(key)], capture_output=True, text=True,
                                  env=env, check=True)
            peers[name] = made.stdout.split("peer id ")[1].strip()
            procs.append(subprocess.Popen(
                [*chorus, "peer", "join", "--proxy", url, "--pool", "demo", "--key", str(key), "--base-url",
                 f"http://127.0.0.1:{server_port}/v1", "--model", f"{name}-model", "--payee", name],
                stdout=(tmp_path / f"{name}.log").open("w"), stderr=subprocess.STDOUT, env=env))
        listed = wait_drawable(url, "sk-chorus-demo", "demo", list(peers.values()))  # synced and probed
        assert listed["live"] == 2 and listed["workers"] == 1, listed
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="sk-chorus-demo", max_retries=0, timeout=60)
        resp = client.chat.completions.create(model="fusion/market", messages=HARD,
                                              extra_body={"bounty": {"amount": 1000, "currency": "USD"}})
        payouts = resp.model_extra["chorus"]["settlement"]["payouts"]
        assert {(p["peer_id"], p["payee"]) for p in payouts} == {(peers["alice"], "alice"), (peers["bob"], "bob")}
        assert all(p["amount"] > 0 for p in payouts) and sum(p["amount"] for p in payouts) == 1000
        for name in peers:
            out = subprocess.run([*chorus, "peer", "earnings", "--proxy", url, "--key", str(tmp_path / f"{name}.json")],
                                 capture_output=True, text=True, env=env, timeout=60)
            assert out.returncode == 0 and "1 receipt(s)" in out.stdout and "verified" in out.stdout, out.stdout
        procs[2].send_signal(signal.SIGINT)  # alice's join: Ctrl-C leaves the pool
        assert procs[2].wait(15) == 0 and "left the pool" in (tmp_path / "alice.log").read_text()
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
