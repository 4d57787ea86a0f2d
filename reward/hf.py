"""A Hugging Face sequence-classification reward model (e.g. Skywork-Reward-V2).

The pair is rendered with the tokenizer's chat template, scored in length-sorted
batches (little padding) on a worker thread, and returned in the caller's order.
The reward is the model's ``score`` output where it has one (ArmoRM-style custom
heads), else its single logit. Pairs longer than ``max_length`` tokens are cut,
say so in ``details["truncated"]`` and are counted in a warning. With a call cache
(a run sets its own), a pair scored once is never scored again.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from arbitrage.calls.cache import CallCache, request_key
from arbitrage.errors import ConfigError, RewardError
from arbitrage.records import Generation, Prompt
from reward.base import RewardModel, Score

logger = logging.getLogger(__name__)

_DTYPES = ("auto", "float32", "bfloat16", "float16")


class HFRewardModel(RewardModel):
    """Scores pairs with ``AutoModelForSequenceClassification``, loaded on first use.

    Args:
        model: Hub id or local folder, e.g. ``"Skywork/Skywork-Reward-V2-Qwen3-0.6B"``.
        device: ``"auto"`` (CUDA if available, else CPU) or a torch device string.
        dtype: ``"auto"`` (bfloat16 on CUDA, float32 elsewhere), ``"float32"``,
            ``"bfloat16"`` or ``"float16"``.
        batch_size: Pairs per forward pass; ``None``: 16 on CUDA, 1 on CPU, where
            a padded batch is slower than one pair at a time (benchmarks/scoring.py:
            batch 8 at 0.69x the pairs/s of batch 1, even length-sorted).
        max_length: Longest input in tokens; longer ones are truncated (and flagged).
        trust_remote_code: Passed to ``from_pretrained``; only set it for a model
            whose code you trust (ArmoRM needs it).
        revision: A Hub branch, tag or commit to load (default: the main branch).
        cache: A call cache (``arbitrage.calls.cache.CallCache``) for scores. A score is
            keyed by the pair, ``max_length``, the resolved device and dtype, and the
            weights: a local folder's files (names, sizes, times), or a Hub model's
            ``revision`` (pin a commit: a moving branch keeps serving cached scores).
    """

    name: ClassVar[str] = "hf"
    batched: ClassVar[bool] = True

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int | None = None,
        max_length: int = 4096,
        trust_remote_code: bool = False,
        revision: str | None = None,
        cache: CallCache | None = None,
    ) -> None:
        if dtype not in _DTYPES:
            raise ConfigError(f"hf reward dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"hf reward batch_size must be at least 1, got {batch_size}")
        if max_length < 1:
            raise ConfigError(f"hf reward max_length must be at least 1, got {max_length}")
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self.trust_remote_code = trust_remote_code
        self.revision = revision
        self.cache = cache
        self._weights: str | None = None  # what the cache key says about the weights
        self._loaded: tuple[Any, Any, Any] | None = None  # (torch, tokenizer, model)
        self._lock = threading.Lock()  # one load, one forward pass at a time

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        """Score all pairs on a worker thread (the event loop stays free)."""
        if not pairs:
            return []
        return await asyncio.to_thread(self._score_sync, list(pairs))

    def format_pair(self, prompt: Prompt, completion: str) -> str:
        """The text the model reads for one pair (loads the tokenizer if needed)."""
        _, tokenizer, _ = self._load()
        return self._format(tokenizer, prompt, completion)

    def describe(self) -> str:
        return f"hf({self.model})"

    def _score_sync(self, pairs: list[tuple[Prompt, str]]) -> list[Score]:
        keys = [self._key(prompt, completion) for prompt, completion in pairs]
        scores: list[Score | None] = [self._cached(key) for key in keys]
        todo = [i for i, score in enumerate(scores) if score is None]
        if todo:
            fresh = self._forward([pairs[i] for i in todo])
            for i, score in zip(todo, fresh, strict=True):
                scores[i] = score
                if self.cache is not None:
                    text = json.dumps({"value": score.value, "details": score.details})
                    self.cache.put(keys[i], Generation(pairs[i][0].id, "reward", self.model, text))
        return [s for s in scores if s is not None]

    def _key(self, prompt: Prompt, completion: str) -> str:
        if self.cache is None:
            return ""
        request = {
            "reward": "hf",
            "model": self.model,
            "messages": [
                *prompt.messages(),
                {"role": "assistant", "content": completion},
            ],
            "max_length": self.max_length,
            "placement": self._placement(),
            "weights": self._weights_id(),
        }
        return request_key(request)

    def _placement(self) -> tuple[str, str]:
        """(device, dtype) as resolved: ``auto`` means CUDA + bfloat16 or CPU + float32."""
        import torch

        device = self.device
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = self.dtype
        if dtype == "auto":
            dtype = "bfloat16" if device.startswith("cuda") else "float32"
        return device, dtype

    def _weights_id(self) -> str:
        if self._weights is None:
            folder = Path(self.model)
            if folder.is_dir():  # retrained in place (examples/train_reward_model.py) = new key
                files = sorted(p for p in folder.rglob("*") if p.is_file())
                stats = [
                    (str(p.relative_to(folder)), p.stat().st_size, p.stat().st_mtime_ns)
                    for p in files
                ]
                self._weights = hashlib.sha256(json.dumps(stats).encode()).hexdigest()
            else:
                self._weights = f"revision:{self.revision or 'main'}"
        return self._weights

    def _cached(self, key: str) -> Score | None:
        hit = self.cache.get(key) if self.cache is not None else None
        if hit is None:
            return None
        data = json.loads(hit.text)
        return Score(data["value"], data["details"])

    def _forward(self, pairs: list[tuple[Prompt, str]]) -> list[Score]:
        torch, tokenizer, model = self._load()
        encoded: list[list[int]] = []
        truncated: list[bool] = []
        for prompt, completion in pairs:
            # A chat template writes its own special tokens (BOS included): add none twice.
            templated = bool(getattr(tokenizer, "chat_template", None))
            text = self._format(tokenizer, prompt, completion)
            ids = tokenizer(text, add_special_tokens=not templated)["input_ids"]
            truncated.append(len(ids) > self.max_length)
            encoded.append(ids[: self.max_length])
        if any(truncated):
            logger.warning(
                "hf reward %s: %d of %d pairs truncated to %d tokens (max_length)",
                self.model,
                sum(truncated),
                len(pairs),
                self.max_length,
            )
        # Longest first, so similar lengths share a batch and an out-of-memory shows at once.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        values: list[float | None] = [None] * len(encoded)
        with self._lock, torch.inference_mode():
            size = self.batch_size or (16 if model.device.type == "cuda" else 1)
            for start in range(0, len(order), size):
                chunk = order[start : start + size]
                batch = tokenizer.pad(
                    {"input_ids": [encoded[i] for i in chunk]},
                    padding=True,
                    padding_side="right",  # positions as in an unpadded pass, whatever the model
                    return_attention_mask=True,
                    return_tensors="pt",
                ).to(model.device)
                for i, value in zip(chunk, self._rewards(model, model(**batch)), strict=True):
                    values[i] = value if math.isfinite(value) else None
        flags = [{"truncated": 1.0} if cut else {} for cut in truncated]
        return [Score(value, flag) for value, flag in zip(values, flags, strict=True)]

    def _rewards(self, model: Any, output: Any) -> list[float]:
        """One reward per row: a custom ``score`` output (ArmoRM), else the single logit."""
        score = getattr(output, "score", None)
        if score is not None:
            return [float(v) for v in score.float().reshape(score.shape[0], -1)[:, 0].tolist()]
        logits = output.logits
        if logits.shape[-1] != 1:
            custom = getattr(model.config, "auto_map", None) and not self.trust_remote_code
            hint = (
                ": it ships its own code (auto_map), which loads only with "
                "trust_remote_code: true - set it if you trust that code"
                if custom
                else "; a reward model has one (or a custom head with a 'score' output)"
            )
            raise RewardError(
                f"hf reward model {self.model!r} has {logits.shape[-1]} outputs{hint}"
            )
        return [float(v) for v in logits[:, 0].float().cpu().tolist()]

    @staticmethod
    def _format(tokenizer: Any, prompt: Prompt, completion: str) -> str:
        messages = [*prompt.messages(), {"role": "assistant", "content": completion}]
        if getattr(tokenizer, "chat_template", None):
            return str(tokenizer.apply_chat_template(messages, tokenize=False))
        return "\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)

    def _load(self) -> tuple[Any, Any, Any]:
        with self._lock:
            if self._loaded is None:
                self._loaded = self._load_uncached()
            return self._loaded

    def _load_uncached(self) -> tuple[Any, Any, Any]:
        try:
            import torch
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as exc:
            raise RewardError(
                f"the hf reward model needs torch and transformers ({exc.name} is missing): "
                "pip install torch transformers"
            ) from exc
        device, dtype_name = self._placement()
        dtype = getattr(torch, dtype_name)
        options = {"trust_remote_code": self.trust_remote_code, "revision": self.revision}
        try:
            tokenizer = AutoTokenizer.from_pretrained(self.model, **options)
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model, dtype=dtype, **options
            )
        except (OSError, ValueError) as exc:
            raise RewardError(f"could not load hf reward model {self.model!r}: {exc}") from exc
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
        if model.config.pad_token_id is None:
            # Without it the model cannot find each row's last token in a padded batch.
            model.config.pad_token_id = tokenizer.pad_token_id
        model.to(device).eval()
        return torch, tokenizer, model
