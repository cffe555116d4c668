"""`chorus` command line: validate a config, or run the LiteLLM proxy with fusion models.

    chorus check [litellm_config.yaml]     validate every fusion profile, print a summary
    chorus serve [--config F] [--port N] [--workers N] [--demo]
                                           run `litellm --config F`; --demo also starts the
                                           fake upstream on 127.0.0.1:8001 that the shipped
                                           litellm_config.yaml points at
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys

from .config import load_profiles, read_config_file
from .errors import ConfigError


def check(path: str) -> int:
    try:
        profiles = load_profiles(read_config_file(path))
    except (ConfigError, OSError) as exc:
        print(f"chorus: {path}: invalid\n{exc}", file=sys.stderr)
        return 1
    for name, p in profiles.items():
        panel = f"self-MoA {p.panel.self_moa.model} x{p.panel.self_moa.samples}" if p.panel.self_moa else \
            ", ".join(m.model for m in p.panel.members)
        print(f"fusion/{name}: protocol={p.debate.protocol} router={p.router.policy} panel=[{panel}] quorum={p.panel.quorum} "
              f"judge={p.aggregator.judge} synthesizer={p.aggregator.synthesizer}")
    print(f"chorus: {path}: {len(profiles)} fusion profile(s) valid")
    return 0


def serve(args: argparse.Namespace) -> int:
    if check(args.config):
        return 1
    # The packaged price map: the proxy otherwise tries to download one at start.
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **os.environ}
    children: list[subprocess.Popen] = []
    if args.demo:
        children.append(subprocess.Popen(
            [sys.executable, "-m", "chorus_litellm.fake_upstream", "--port", "8001", "--latency", "0.2",
             "--token-delay", "0.02"]
        ))
        print("chorus: demo upstream on http://127.0.0.1:8001 (a fake OpenAI-compatible server)")
    litellm = shutil.which("litellm") or os.path.join(os.path.dirname(sys.executable), "litellm")
    proxy = subprocess.Popen(
        [litellm, "--config", args.config, "--host", args.host, "--port", str(args.port),
         "--num_workers", str(args.workers)],
        env=env,
    )
    children.append(proxy)
    signal.signal(signal.SIGTERM, lambda *_: proxy.terminate())
    try:
        return proxy.wait()
    except KeyboardInterrupt:
        return 130
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="chorus", description="chorus-litellm: multi-model fusion for LiteLLM")
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate the fusion profiles in a LiteLLM config")
    p_check.add_argument("config", nargs="?", default="litellm_config.yaml")
    p_serve = sub.add_parser("serve", help="run the LiteLLM proxy with fusion models")
    p_serve.add_argument("--config", default="litellm_config.yaml")
    p_serve.add_argument("--host", default="127.0.0.1")
    p_serve.add_argument("--port", type=int, default=4000)
    # One worker per core: each fused request is ~6 LiteLLM calls of CPU (about 45 ms in
    # all on the benchmark machine), so one process saturates one core at high concurrency.
    p_serve.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="proxy worker processes")
    p_serve.add_argument("--demo", action="store_true", help="also start the fake upstream on :8001")
    args = parser.parse_args(argv)
    return check(args.config) if args.command == "check" else serve(args)


if __name__ == "__main__":
    sys.exit(main())
