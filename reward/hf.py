"""A Hugging Face sequence-classification reward model (e.g. Skywork-Reward-V2).

The pair is rendered with the tokenizer's chat template, scored in length-sorted
batches (little padding) on a worker thread, and returned in the caller's order.
The reward is the model's first logit. Pairs longer than ``max_length`` tokens
are cut, and say so in ``details["truncated"]``.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import Sequence
from typing import Any, ClassVar

from arbitrage.errors import ConfigError, RewardError
from arbitrage.records import Prompt
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
        batch_size: Pairs per forward pass.
        max_length: Longest input in tokens; longer ones are truncated (and flagged).
        trust_remote_code: Passed to ``from_pretrained``.
    """

    name: ClassVar[str] = "hf"

    def __init__(
        self,
        model: str,
        *,
        device: str = "auto",
        dtype: str = "auto",
        batch_size: int = 8,
        max_length: int = 4096,
        trust_remote_code: bool = False,
    ) -> None:
        if dtype not in _DTYPES:
            raise ConfigError(f"hf reward dtype must be one of {', '.join(_DTYPES)}, got {dtype!r}")
        if batch_size < 1:
            raise ConfigError(f"hf reward batch_size must be at least 1, got {batch_size}")
        if max_length < 1:
            raise ConfigError(f"hf reward max_length must be at least 1, got {max_length}")
        self.model = model
        self.device = device
        self.dtype = dtype
        self.batch_size = batch_size
        self.max_length = max_length
        self.trust_remote_code = trust_remote_code
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
        torch, tokenizer, model = self._load()
        encoded: list[list[int]] = []
        truncated: list[bool] = []
        for prompt, completion in pairs:
            ids = tokenizer(self._format(tokenizer, prompt, completion))["input_ids"]
            truncated.append(len(ids) > self.max_length)
            encoded.append(ids[: self.max_length])
        if any(truncated):
            logger.warning(
                "hf reward %s: %d of %d pairs truncated to %d tokens",
                self.model,
                sum(truncated),
                len(pairs),
                self.max_length,
            )
        # Longest first, so similar lengths share a batch and an out-of-memory shows at once.
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]), reverse=True)
        values: list[float | None] = [None] * len(encoded)
        with self._lock, torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                chunk = order[start : start + self.batch_size]
                batch = tokenizer.pad(
                    {"input_ids": [encoded[i] for i in chunk]},
                    padding=True,
                    padding_side="right",  # positions as in an unpadded pass, whatever the model
                    return_attention_mask=True,
                    return_tensors="pt",
                ).to(model.device)
                logits = model(**batch).logits[:, 0].float().cpu().tolist()
                for i, value in zip(chunk, logits, strict=True):
                    values[i] = value if math.isfinite(value) else None
        flags = [{"truncated": 1.0} if cut else {} for cut in truncated]
        return [Score(value, flag) for value, flag in zip(values, flags, strict=True)]

    @staticmethod
    def _format(tokenizer: Any, prompt: Prompt, completion: str) -> str:
        messages = [
            {"role": "user", "content": prompt.text},
            {"role": "assistant", "content": completion},
        ]
        if getattr(tokenizer, "chat_template", None):
            text = str(tokenizer.apply_chat_template(messages, tokenize=False))
            bos = tokenizer.bos_token
            # The tokenizer adds its BOS again; the template's would be a duplicate.
            if bos and text.startswith(bos):
                text = text[len(bos) :]
            return text
        return f"User: {prompt.text}\nAssistant: {completion}"

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
        cuda = torch.cuda.is_available()
        device = ("cuda" if cuda else "cpu") if self.device == "auto" else self.device
        if self.dtype == "auto":
            dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
        else:
            dtype = getattr(torch, self.dtype)
        try:
            tokenizer = AutoTokenizer.from_pretrained(
                self.model, trust_remote_code=self.trust_remote_code
            )
            model = AutoModelForSequenceClassification.from_pretrained(
                self.model, dtype=dtype, trust_remote_code=self.trust_remote_code
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
