"""Start real servers for tests and benchmarks: the fake upstream and the LiteLLM proxy."""

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


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0, log: Path | None = None) -> None:
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
def fake_upstream(latency: float = 0.0, token_delay: float = 0.0):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "chorus_litellm.fake_upstream", "--port", str(port),
         "--latency", str(latency), "--token-delay", str(token_delay)],
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
def litellm_proxy(config: dict, workdir: Path, env: dict | None = None, workers: int = 1):
    port = free_port()
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / "litellm_config.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    log = workdir / "proxy.log"
    environ = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "NUM_WORKERS": str(workers),
               "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), **(env or {})}
    with open(log, "w") as fh:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("litellm")), "--config", str(path), "--host", "127.0.0.1",
             "--port", str(port), "--num_workers", str(workers), "--timeout_worker_healthcheck", "30"],
            stdout=fh, stderr=subprocess.STDOUT, env=environ, cwd=workdir,
        )
    try:
        wait_http(f"http://127.0.0.1:{port}/health/liveliness", proc, log=log)
        yield f"http://127.0.0.1:{port}", log
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
