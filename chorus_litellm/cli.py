"""`chorus` command line: validate a config, or run the LiteLLM proxy with fusion models.

    chorus check [litellm_config.yaml]     validate every fusion profile, print a summary
    chorus keygen [--out key.json]         make an Ed25519 signing key (prints only the public key)
    chorus verify receipt.json --public-key KEY [--public-key OLD_KEY ...]
                                           check a receipt offline (exit 0 valid, 1 not)
    chorus reputation                      payees' scores from the store (CHORUS_STORE, CHORUS_DB_PATH)
    chorus peer keygen|join|earnings       host a model in a proxy's pool (market/cli.py, docs/peers.md)
    chorus eval --data F|--dataset mmlu|mtbench --models a,fusion/x,vote:a:5 [...]
                                           compare models and fusion profiles on a dataset
                                           through the proxy (`chorus eval --help`, docs/eval.md)
    chorus serve [--config F] [--host H] [--port N] [--workers N] [--demo [--demo-port N] [--demo-latency S]]
                                           run `litellm --config F` with a worker per core
                                           (--workers); --demo also starts the fake upstream
                                           on 127.0.0.1:8001 that the shipped
                                           litellm_config.yaml points at (--demo-port moves
                                           it, and the config's api_base with it), (if no key
                                           is configured) signs bounty receipts with a demo key
                                           kept in the data dir, admits peers whose model
                                           servers run on this machine and runs one worker
                                           unless --workers says otherwise. A port in use
                                           stops it before anything starts (exit 1, naming it)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
from contextlib import nullcontext
from pathlib import Path

from .market import cli as peer_cli
from .gateway import startup
from .gateway.litellm_log import pricing_note
from .core.config import load_profiles, provider_of, read_config_file
from .core.errors import ConfigError
from .evaluation import command as eval_command


def check(path: str, *, each: bool = True) -> int:
    """Validate `path`'s fusion profiles: a line per profile (`each`) and a summary line."""
    from .gateway.compat import is_builtin_provider

    try:
        config = read_config_file(path)
        provider, profiles = provider_of(config), load_profiles(config, is_builtin=is_builtin_provider)
    except (ConfigError, OSError) as exc:
        problems = str(exc).splitlines() if isinstance(exc, ConfigError) else [str(exc)]
        print(f"chorus: {path}: invalid, {len(problems)} problem(s)", *problems, sep="\n", file=sys.stderr)
        return 1
    for name, p in profiles.items() if each else ():
        pool = [f"{p.panel.seats} from pool {p.panel.pool} by {p.panel.select}"] if p.panel.pool else []
        panel = f"self-MoA {p.panel.self_moa.model} x{p.panel.self_moa.samples}" if p.panel.self_moa else \
            ", ".join([*(m.model for m in p.panel.members), *pool])
        print(f"{provider}/{name}: protocol={p.debate.protocol} router={p.router.policy} panel=[{panel}] "
              f"quorum={p.panel.quorum} judge={p.aggregator.judge} synthesizer={p.aggregator.synthesizer}")
    print(f"chorus: {path}: {len(profiles)} fusion profile(s) valid, served as provider {provider!r} "
          "(not a LiteLLM provider name)")
    return 0


def keygen(out: str) -> int:
    path = Path(out)
    if path.exists():
        print(f"chorus: {out} exists; not overwriting a signing key", file=sys.stderr)
        return 1
    from .settlement.signing import write_key_file

    key = write_key_file(path)
    print(f"wrote {out} (mode 600). key_id {key['key_id']}\npublic key {key['public_key']}\n"
          f"use it with CHORUS_SIGNING_KEY_FILE={out}")
    return 0


def verify(path: str, keys: list[str]) -> int:
    from .settlement.signing import SigningError, public_key_from
    from .settlement.signing import verify as verify_receipt

    try:
        receipt = json.loads(Path(path).read_text())
        signer = verify_receipt(receipt, [public_key_from(k) for k in keys])
    except (OSError, ValueError, SigningError) as exc:
        print(f"invalid: {exc}", file=sys.stderr)
        return 1
    payload = receipt["payload"]
    print(f"valid: receipt {payload.get('receipt_id')} for debate {payload.get('debate_id')}, signed by {signer}")
    return 0


def show_reputation() -> int:
    import asyncio

    from .storage.backends import store_from_env
    from .core.stages.reputation import summary

    counters = asyncio.run(store_from_env().reputation())
    print(f"{'payee':32s} {'runs':>6s} {'score':>6s} {'impact':>7s} {'echo':>6s} {'fail':>6s} {'latency':>8s}")
    for payee, c in sorted(counters.items()):
        st = summary(c)
        fmt = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
        print(f"{payee:32s} {st['runs']:6d} {fmt(st['score']):>6s} {fmt(st['impact_ratio']):>7s} "
              f"{fmt(st['echo_rate']):>6s} {fmt(st['failure_rate']):>6s} {fmt(st['latency_s']):>8s}")
    return 0


# uvicorn kills a worker that misses one 5 s health ping (answered by a thread that needs
# the GIL) and with it every request in flight; a saturated worker on a small host can
# miss one (seen in benchmarks/load.py on 2 cores). A dead worker is still seen at once.
WORKER_HEALTHCHECK_S = 30


def serve(args: argparse.Namespace) -> int:
    if check(args.config, each=False):  # `chorus check` lists the profiles
        return 1
    if note := pricing_note(read_config_file(args.config)):  # once, for every worker's per-model warnings
        print(f"chorus: {note}", flush=True)
    ports = {"--port": (args.host, args.port), **({"--demo-port": (startup.DEMO_HOST, args.demo_port)}
                                                   if args.demo else {})}
    try:
        startup.check_ports(ports)  # every port before anything starts, not a line in the proxy's log
        prepare_embeddings(args.config)
        with startup.demo_config(args.config, args.demo_port) if args.demo else nullcontext(args.config) as config:
            return _run(args, config)
    except startup.StartError as exc:
        print(f"chorus: {exc}", file=sys.stderr)
    except ConfigError as exc:
        print(f"chorus: {args.config}: invalid\n{exc}", file=sys.stderr)
    return 1


def _run(args: argparse.Namespace, config: str) -> int:
    """Start the demo upstream (with --demo) and the proxy on `config`; wait for the proxy.
    The two start side by side (the proxy calls the upstream only once it serves, after
    seconds of imports); an upstream that does not come up stops both (StartError)."""
    # The packaged price map (main() set it for this process): the proxy otherwise tries
    # to download one at start. NUM_WORKERS tells each worker how many share the cores
    # (embedding threads per worker).
    workers = proxy_workers(args)
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", **os.environ, "NUM_WORKERS": str(workers)}
    children: list[subprocess.Popen] = []
    if args.demo:
        children.append(startup.start_demo_upstream(args.demo_port, latency_s=args.demo_latency))
        if not (env.get("CHORUS_SIGNING_KEY") or env.get("CHORUS_SIGNING_KEY_FILE")):
            env["CHORUS_SIGNING_KEY_FILE"] = str(_demo_key())
        # Peers on this machine may join (`chorus peer join`); set these to close it.
        env.setdefault("CHORUS_PEER_ADMISSION", "open")
        env.setdefault("CHORUS_PEER_URL_ALLOWLIST", "127.0.0.1/32,::1/128")
        print(f"chorus: peers admitted: {env['CHORUS_PEER_ADMISSION']}, model servers at "
              f"{env['CHORUS_PEER_URL_ALLOWLIST']} (chorus peer join --proxy http://{args.host}:{args.port} ...)")
    print(f"chorus: live view on http://{args.host}:{args.port}/chorus/ui/", flush=True)
    # The `litellm` command, importing LiteLLM's proxy in 30 % less CPU (gateway/proxy_command.py);
    # -P: the working directory stays off the front of sys.path, as for the `litellm` script.
    proxy = subprocess.Popen(
        [sys.executable, "-P", "-m", "chorus_litellm.gateway.proxy_command", "--config", config, "--host", args.host,
         "--port", str(args.port), "--num_workers", str(workers),
         "--timeout_worker_healthcheck", str(WORKER_HEALTHCHECK_S)],
        # Its own process group: Ctrl-C reaches only this process, which sends the proxy one
        # SIGTERM (uvicorn takes a second signal as "quit now", dropping runs in flight).
        env=env, start_new_session=True,
    )
    children.append(proxy)
    stopped = _stop_on_signals(proxy, args.grace)
    try:
        if args.demo:
            startup.demo_upstream_ready(children[0], args.demo_port)
            print(f"chorus: demo upstream on http://{startup.DEMO_HOST}:{args.demo_port} "
                  f"(a fake OpenAI-compatible server: a cast of models that debate, {args.demo_latency:g} s a call)",
                  flush=True)
        code = proxy.wait()
    finally:
        for child in children:
            if child.poll() is None:
                child.terminate()
    return 0 if stopped.is_set() else code


def proxy_workers(args: argparse.Namespace) -> int:
    """--workers, else one per core (each fused request is ~6 LiteLLM calls of CPU, about
    45 ms in all on the benchmark machine, so one process saturates one core at high
    concurrency); with --demo one, so that the demo answers sooner: LiteLLM imports its
    proxy in the `litellm` process and again in each of several workers (11-13 s of CPU each
    on 2 cores), but serves one worker in the `litellm` process itself."""
    if args.workers is not None:
        return args.workers
    return 1 if args.demo else os.cpu_count() or 1


def _stop_on_signals(proxy: subprocess.Popen, grace_s: float) -> threading.Event:
    """SIGINT (Ctrl-C, or sent to this process alone) and SIGTERM both stop the proxy the
    same way: SIGTERM to it, so its workers stop taking requests and finish the ones in
    flight; after `grace_s` whatever is left is killed. Installed explicitly: a process
    started in the background inherits an ignored SIGINT."""
    stopped = threading.Event()

    def stop(signum: int, _frame: object) -> None:
        if stopped.is_set() or proxy.poll() is not None:
            return
        stopped.set()
        print(f"chorus: {signal.Signals(signum).name}: stopping; runs in flight get {grace_s:g} s", flush=True)
        proxy.send_signal(signal.SIGTERM)
        def kill_if_running() -> None:
            if proxy.poll() is None:
                proxy.kill()

        timer = threading.Timer(grace_s, kill_if_running)
        timer.daemon = True
        timer.start()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)
    return stopped


def _seconds(value: str) -> float:
    seconds = float(value)
    if not seconds >= 0:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds >= 0")
    return seconds


def _port(value: str) -> int:
    if not (value.isdigit() and 1 <= int(value) <= 65535):
        raise argparse.ArgumentTypeError(f"{value!r} is not a TCP port (1-65535)")
    return int(value)


def prepare_embeddings(config: str) -> None:
    """Distil the profiles' static embedding models that are neither shipped (the default
    is) nor distilled here before, now, so the proxy's workers start with them ready
    instead of each waiting on the first start. Says so first: it takes half a minute."""
    from .gateway.embeddings import STATIC_PREFIX, distilled, ready, static_source
    from .sdk import embedding_models

    for name in sorted(embedding_models(load_profiles(read_config_file(config)))):
        if name.startswith(STATIC_PREFIX) and ready(name) is None:
            print(f"chorus: distilling the static embedding model {name} from {static_source(name)}: once on this "
                  "machine (about 30 s on 2 cores; cached for every later start)", flush=True)
            print(f"chorus: embedding model {name} ready in {distilled(name)}", flush=True)


def _demo_key() -> Path:
    """The demo's receipt signing key, made once in the data dir (mode 600)."""
    from .settings import data_dir

    path = data_dir() / "demo-signing-key.json"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        from .settlement.signing import write_key_file

        write_key_file(path)
        print(f"chorus: demo signing key written to {path} (for bounty receipts; use `chorus keygen` for real)")
    return path


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="chorus", description="chorus-litellm: multi-model fusion for LiteLLM")
    sub = parser.add_subparsers(dest="command", required=True)
    p_check = sub.add_parser("check", help="validate the fusion profiles in a LiteLLM config; lists every problem")
    p_check.add_argument("config", nargs="?", default="litellm_config.yaml",
                         help="the LiteLLM config file (default: litellm_config.yaml)")
    p_serve = sub.add_parser("serve", help="run the LiteLLM proxy with fusion models",
                             description="Check the config and every port, then run the LiteLLM proxy with fusion "
                                         "models (and, with --demo, a fake upstream for them).")
    p_serve.add_argument("--config", default="litellm_config.yaml", metavar="FILE",
                         help="the LiteLLM config file, checked first as `chorus check` does "
                              "(default: litellm_config.yaml)")
    p_serve.add_argument("--host", default="127.0.0.1", metavar="HOST",
                         help="address the proxy listens on; 0.0.0.0 for every interface (default: 127.0.0.1)")
    p_serve.add_argument("--port", type=_port, default=4000, metavar="N",
                         help="port the proxy listens on (default: 4000)")
    p_serve.add_argument("--workers", type=int, metavar="N",  # the default: proxy_workers()
                         help=f"proxy worker processes (default: one per core, here {os.cpu_count() or 1}; "
                              "1 with --demo, which then answers its first request sooner)")
    p_serve.add_argument("--demo", action="store_true",
                         help="also start a fake OpenAI-compatible upstream (on --demo-port), sign receipts with "
                              "a demo key and admit peers on this machine")
    p_serve.add_argument("--demo-port", type=_port, default=startup.DEMO_PORT, metavar="N",
                         help="port of the demo upstream on 127.0.0.1 (default: %(default)s, where the shipped "
                              "config points); another port is served with a copy of the config whose api_base "
                              "entries on 127.0.0.1:8001 point at it")
    p_serve.add_argument("--demo-latency", type=_seconds, default=startup.DEMO_LATENCY_S, metavar="S",
                         help="seconds each demo model call takes, each member at its own pace (0.6-1.4 x), "
                              "streaming about 25 words a second per second of latency (default: %(default)s; "
                              "0 answers at once)")
    p_serve.add_argument("--grace", type=_seconds, default=30.0, metavar="S",
                         help="seconds runs in flight get to finish on SIGINT / SIGTERM, then killed (default: 30)")
    p_keygen = sub.add_parser("keygen", help="make an Ed25519 receipt signing key")
    p_keygen.add_argument("--out", default="chorus-signing-key.json",
                          help="key file to write, never overwritten (default: chorus-signing-key.json)")
    p_verify = sub.add_parser("verify", help="verify a receipt offline")
    p_verify.add_argument("receipt", help="a receipt JSON file (GET /chorus/v1/receipts/{debate_id})")
    p_verify.add_argument("--public-key", action="append", required=True,
                          help="base64 public key or a file with one; repeat for rotated keys")
    sub.add_parser("reputation", help="show payees' reputation from the store")
    eval_command.add_parser(sub)
    peer_cli.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    # LiteLLM's bundled price map, as its own `lite` and `litellm-proxy` commands use: at
    # import it otherwise downloads one, retrying for seconds where there is no network.
    # Before anything imports litellm (`check` does); an explicit setting is kept.
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    args = build_parser().parse_args(argv)
    if args.command == "peer":
        return peer_cli.run(args)
    if args.command == "eval":
        return eval_command.run(args)
    if args.command == "reputation":
        return show_reputation()
    if args.command == "keygen":
        return keygen(args.out)
    if args.command == "verify":
        return verify(args.receipt, args.public_key)
    return check(args.config) if args.command == "check" else serve(args)


if __name__ == "__main__":
    sys.exit(main())
