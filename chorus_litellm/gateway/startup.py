"""What `chorus serve` makes sure of as the proxy starts: every port it will listen on is
free, and the demo's fake upstream is up on the port the config's models are pointed at.

A busy port or a demo upstream that cannot start is a `StartError` naming it, raised
before anything is started (or, for the upstream, while the proxy starts beside it, which
is then stopped), so the command exits at once instead of serving requests that can only
fail. Process control and signals stay in cli.py.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

DEMO_HOST = "127.0.0.1"
# Where the shipped litellm_config.yaml's api_base entries point (`--demo-port` moves it).
DEMO_PORT = 8001
# The fake upstream imports starlette and uvicorn (about a second); a loaded 2-core
# machine takes a few times that.
DEMO_START_S = 30.0


class StartError(Exception):
    """`chorus serve` cannot start; the message names the port or process and the fix."""


def busy(host: str, port: int) -> str | None:
    """Why a server could not listen on host:port now (e.g. "address already in use"), or
    None. Bound the way uvicorn binds (SO_REUSEADDR, so a port in TIME_WAIT counts as free)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            return (exc.strerror or str(exc)).lower()
    return None


def check_ports(ports: dict[str, tuple[str, int]]) -> None:
    """`ports`: the flag that sets each one -> (host, port). Raises StartError for the first
    that is taken, or two flags that name the same port."""
    seen: dict[int, str] = {}
    for flag, (host, port) in ports.items():
        if port in seen:
            raise StartError(f"{seen[port]} and {flag} are both {port}; give them different ports")
        seen[port] = flag
        if reason := busy(host, port):
            raise StartError(f"cannot listen on {host}:{port} ({flag}): {reason}; stop what holds it, "
                             f"or pass another {flag}")


@contextlib.contextmanager
def demo_config(config: str, port: int) -> Iterator[str]:
    """The config file for a demo on `port`: `config` itself on the default port; otherwise a
    temporary copy whose api_base entries on 127.0.0.1:8001 point at `port`."""
    if port == DEMO_PORT:
        yield config
        return
    text = Path(config).read_text(encoding="utf-8")
    old, new = f"//{DEMO_HOST}:{DEMO_PORT}", f"//{DEMO_HOST}:{port}"
    if old not in text:
        print(f"chorus: {config} names no api_base on {DEMO_HOST}:{DEMO_PORT}; the demo upstream on :{port} "
              "serves none of its models", flush=True)
    with tempfile.TemporaryDirectory(prefix="chorus-demo-") as folder:
        copy = Path(folder) / Path(config).name
        copy.write_text(text.replace(old, new), encoding="utf-8")
        print(f"chorus: serving a copy of {config} with its api_base on {DEMO_HOST}:{DEMO_PORT} moved to :{port}",
              flush=True)
        yield str(copy)


# Seconds a demo model takes per call (`--demo-latency`): slow enough to watch a debate's
# rounds arrive (a 3-round debate takes about 10 s), each member at its own pace.
DEMO_LATENCY_S = 1.0
# Streamed words per second of demo latency: 25 words a second at 1 s, like a hosted model.
WORDS_PER_LATENCY = 25


def start_demo_upstream(port: int, latency_s: float = DEMO_LATENCY_S) -> subprocess.Popen:
    """The fake OpenAI-compatible upstream on 127.0.0.1:`port`, answering as the demo's
    cast (demo/cast.py) at `latency_s` per call, started; `demo_upstream_ready` waits for it."""
    return subprocess.Popen([sys.executable, "-m", "chorus_litellm.demo.fake_upstream", "--host", DEMO_HOST,
                             "--port", str(port), "--cast", "--latency", str(latency_s),
                             "--token-delay", str(latency_s / WORDS_PER_LATENCY)])


def demo_upstream_ready(proc: subprocess.Popen, port: int, timeout_s: float = DEMO_START_S) -> None:
    """Returns once the demo upstream `proc` answers on `port`; a StartError (the process
    stopped) if it exits or stays silent for `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    # One client for every probe: each httpx.get builds one (and its TLS context), CPU the
    # proxy starting beside it would rather have.
    with httpx.Client(timeout=1.0, trust_env=False) as client:
        while proc.poll() is None and time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if client.get(f"http://{DEMO_HOST}:{port}/health").status_code == 200:
                    return
            time.sleep(0.1)
    code = proc.poll()
    if code is None:
        proc.kill()
        proc.wait()
    why = f"exited with {code}" if code is not None else f"did not answer in {timeout_s:g} s"
    raise StartError(f"the demo upstream on {DEMO_HOST}:{port} (--demo-port) {why}")
