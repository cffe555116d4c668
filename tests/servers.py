"""Start real servers for tests and benchmarks: the fake upstream, the LiteLLM proxy, and
Debian's haproxy in front of several proxies."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """SIGTERM, then SIGKILL: a server holding hung requests would wait for them."""
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# How long a server the tests start may take to come up. A proxy's start is LiteLLM's
# import (about 10 s of CPU) per worker; CI runs three pytest processes on 2 cores, whose
# session proxies start together: a 2-worker proxy once took over 90 s there. A server
# that exits is seen at once; this bounds only one that hangs.
START_S = 240.0


def wait_http(url: str, proc: subprocess.Popen, timeout: float = START_S, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log.read_text()[-3000:] if log and log.exists() else ""
            raise RuntimeError(f"server exited with {proc.returncode}:\n{tail}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code < 500:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up in {timeout}s")


@contextlib.contextmanager
def fake_upstream(latency: float = 0.0, token_delay: float = 0.0, cast: bool = False):
    """The fake upstream on a free port; `cast`: the demo's cast answers (demo/cast.py)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chorus_litellm.demo.fake_upstream", "--port", str(port),
         "--latency", str(latency), "--token-delay", str(token_delay), *(["--cast"] if cast else [])],
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


# Prices live in model_info: priced litellm_params make LiteLLM re-register the price on
# every call (about 3 ms of CPU each), model_info prices are registered once.
def model_entry(name: str, upstream: str, price: float = 1e-6) -> dict:
    return {"model_name": name,
            "litellm_params": {"model": f"openai/{name}", "api_base": f"{upstream}/v1", "api_key": "x"},
            "model_info": {"input_cost_per_token": price, "output_cost_per_token": 2 * price}}


def fusion_entry(name: str, chorus: dict, provider: str = "fusion") -> dict:
    """A profile `name`, asked for as `fusion/<name>`, served by the plugin registered as `provider`."""
    return {"model_name": f"fusion/{name}",
            "litellm_params": {"model": f"{provider}/{name}"},
            "model_info": {"input_cost_per_token": 0, "output_cost_per_token": 0, "chorus": chorus}}


@contextlib.contextmanager
def litellm_proxy(config: dict, workdir: Path, env: dict | None = None, workers: int = 1, command: str = "chorus"):
    with proxy_process(config, workdir, env, workers, command=command) as (url, log, _proc):
        yield url, log


@contextlib.contextmanager
def proxy_process(config: dict, workdir: Path, env: dict | None = None, workers: int = 1, start_s: float = START_S,
                  command: str = "chorus"):
    """`litellm_proxy` with its process: yields (url, log, proc), for a test that kills it;
    `start_s` is how long it may take to come up. `command`: "chorus" runs LiteLLM's proxy
    command as `chorus serve` does (`python -P -m chorus_litellm.gateway.proxy_command`,
    its import about 30% cheaper), "litellm" LiteLLM's own `litellm` entry point (the
    session's `proxy` fixture starts it so, as the README's "litellm --config" does)."""
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = workdir / "proxy.log"
    environ = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NUM_WORKERS": str(workers),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), **(env or {})}
    with open(log, "w") as fh:
        start = {"litellm": [str(Path(sys.executable).with_name("litellm"))],
                 "chorus": [sys.executable, "-P", "-m", "chorus_litellm.gateway.proxy_command"]}[command]
        proc = subprocess.Popen(
            [*start, "--config", str(path), "--host", "127.0.0.1",
             "--port", str(port), "--num_workers", str(workers), "--timeout_worker_healthcheck", "30"],
            stdout=fh, stderr=subprocess.STDOUT, env=environ, cwd=workdir,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, timeout=start_s, log=log)
        yield f"http://127.0.0.1:{port}", log, proc
    finally:
        stop(proc)


def children(pid: int) -> list[int]:
    """The process's direct children (all its threads'), from /proc."""
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        try:
            found += [int(p) for p in task.read_text().split()]
        except OSError:
            pass  # exited meanwhile
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants, breadth first."""
    pids = [pid]
    for p in pids:  # grows while iterating
        pids += children(p)
    return pids


class Balancer:
    """Debian's haproxy (apt package haproxy) in front of proxy replicas, as a process."""

    def __init__(self, backends: dict[str, str], workdir: Path, health: str = "/health/liveliness") -> None:
        import shutil

        binary = shutil.which("haproxy")
        if binary is None:
            raise RuntimeError("haproxy is not installed: apt-get install -y haproxy (see README)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port, self.socket = free_port(), workdir / "haproxy.sock"
        self.url = f"http://127.0.0.1:{self.port}"
        # Round robin per request; a replica is checked every 250 ms and out after two failed
        # checks; a connection refused (a replica just killed, not yet marked down) is retried
        # on the other one (redispatch); a new connection to a replica per request (never one
        # it is closing as idle); each answer names its replica in X-Served-By.
        servers = "\n".join(f"    server {name} {url.removeprefix('http://')} check inter 250ms fall 2 rise 2"
                            for name, url in backends.items())
        config = workdir / "haproxy.cfg"
        config.write_text(f"""global
    maxconn 2000
    stats socket {self.socket} mode 600 level admin
defaults
    mode http
    timeout connect 2s
    timeout client 180s
    timeout server 180s
    retries 3
    option redispatch 1
    option http-server-close
frontend chorus
    bind 127.0.0.1:{self.port}
    default_backend replicas
backend replicas
    balance roundrobin
    option httpchk GET {health}
    http-check expect status 200
    http-response set-header X-Served-By %[srv_name]
{servers}
""")
        self.log = workdir / "haproxy.log"
        with open(self.log, "w") as fh:
            self.proc = subprocess.Popen([binary, "-f", str(config), "-db"], stdout=fh, stderr=subprocess.STDOUT)
        try:
            wait_http(f"{self.url}{health}", self.proc, timeout=20, log=self.log)
            deadline = time.monotonic() + 20
            while not all(s["status"] == "UP" for s in self.servers().values()):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"haproxy's backends did not come up: {self.servers()}")
                time.sleep(0.05)
        except BaseException:
            stop(self.proc)
            raise

    def stats(self) -> list[dict]:
        """haproxy's `show stat`, one dict per frontend, server and backend."""
        import csv

        with socket.socket(socket.AF_UNIX) as s:
            s.connect(str(self.socket))
            s.sendall(b"show stat\n")
            raw = b"".join(iter(lambda: s.recv(65536), b""))
        lines = raw.decode().splitlines()
        return list(csv.DictReader([lines[0].removeprefix("# ")] + lines[1:]))

    def servers(self) -> dict[str, dict]:
        return {row["svname"]: row for row in self.stats() if row["svname"] not in ("FRONTEND", "BACKEND")}

    def close(self) -> None:
        stop(self.proc)


@contextlib.contextmanager
def balancer(backends: dict[str, str], workdir: Path, health: str = "/health/liveliness"):
    lb = Balancer(backends, workdir, health)
    try:
        yield lb
    finally:
        lb.close()
