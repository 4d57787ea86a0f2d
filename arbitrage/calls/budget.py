"""Prices, spend and the ``budget_usd`` stop.

Before each attempt the caller reserves its worst-case cost (an upper bound of the
prompt's tokens plus ``max_tokens`` at the model's price); the call is refused with
``BudgetExceeded`` if spent + reserved + this reservation would cross the budget.
When the call returns, the reservation is replaced by its actual cost, from the token
counts the server reports. Calls served from the cache cost nothing.

The prompt bound holds for every script: 4 characters a token only for ASCII letters
and spaces; a token for every digit, punctuation mark and line break; and for any
other character a token per UTF-8 byte, which no tokenizer exceeds (byte-level BPE,
SentencePiece's byte fallback), where 4 characters a token undercounts Chinese 4 to
12 times. Where tiktoken knows the model, its own count is taken if it is higher.
"""

from __future__ import annotations

import functools
import json
import math
import string
from typing import TYPE_CHECKING, Any

from arbitrage.calls.llm import is_local
from arbitrage.errors import BudgetExceeded
from arbitrage.records import Usage

if TYPE_CHECKING:
    from arbitrage.config import TeacherConfig

PER_MTOK = 1_000_000


def price_per_token(
    model: str, input_override: float | None = None, output_override: float | None = None
) -> tuple[float, float]:
    """USD per (input, output) token: per-million overrides, else litellm's price map, else 0."""
    if input_override is not None and output_override is not None:
        return input_override / PER_MTOK, output_override / PER_MTOK
    known_in, known_out = 0.0, 0.0
    if not is_local(model):
        from arbitrage.calls.llm import litellm

        cost_map: dict[str, Any] = litellm().model_cost
        info = cost_map.get(model) or cost_map.get(model.split("/", 1)[-1]) or {}
        known_in = float(info.get("input_cost_per_token") or 0.0)
        known_out = float(info.get("output_cost_per_token") or 0.0)
    return (
        known_in if input_override is None else input_override / PER_MTOK,
        known_out if output_override is None else output_override / PER_MTOK,
    )


def teacher_prices(config: TeacherConfig) -> tuple[float, float]:
    """USD per (input, output) token of a teacher."""
    return price_per_token(config.model, config.input_cost_per_mtok, config.output_cost_per_mtok)


def batch_price_per_token(
    config: TeacherConfig | None = None,
    discount: float = 0.5,
    *,
    model: str | None = None,
    overrides: tuple[float | None, float | None] = (None, None),
) -> tuple[float, float]:
    """USD per (input, output) token through a batch API: litellm's batch prices
    (``input_cost_per_token_batches``) where its price map has them and no override is
    set, else the online price × ``discount``."""
    if config is not None:
        model = config.model
        overrides = (config.input_cost_per_mtok, config.output_cost_per_mtok)
    assert model is not None
    online = price_per_token(model, *overrides)
    if overrides == (None, None) and not is_local(model):
        from arbitrage.calls.llm import litellm

        cost_map: dict[str, Any] = litellm().model_cost
        info = cost_map.get(model) or cost_map.get(model.split("/", 1)[-1]) or {}
        if "input_cost_per_token_batches" in info and "output_cost_per_token_batches" in info:
            return (
                float(info["input_cost_per_token_batches"] or 0.0),
                float(info["output_cost_per_token_batches"] or 0.0),
            )
    return online[0] * discount, online[1] * discount


# ASCII characters that take a token each, or nearly (many tokenizers split numbers into
# digits; code and JSON are mostly punctuation): deleted, they are counted.
_DENSE = str.maketrans("", "", string.digits + string.punctuation + "\n\r\t")


def text_tokens(text: str) -> int:
    """An upper bound of the tokens of ``text`` in any script, without a tokenizer: 4
    ASCII letters or spaces a token, a token for every digit, punctuation mark or line
    break, and a token for every UTF-8 byte of every other character."""
    ascii_chars = len(text.encode("ascii", "ignore"))
    other_bytes = len(text.encode("utf-8", "surrogatepass")) - ascii_chars
    dense = len(text) - len(text.translate(_DENSE))
    return math.ceil((ascii_chars - dense) / 4) + dense + other_bytes


def prompt_tokens(messages: list[dict[str, str]], model: str | None = None) -> int:
    """An upper bound of a prompt's tokens (``text_tokens`` of the messages as JSON),
    or, where tiktoken knows ``model``, its count if that is higher."""
    bound = text_tokens(json.dumps(messages, ensure_ascii=False)) + 4
    if model is None or not _tiktoken_knows(model):
        return bound
    from arbitrage.calls.llm import litellm

    try:
        counted = int(litellm().token_counter(model=model, messages=messages))
    except Exception:  # a message litellm cannot count: the bound stands
        return bound
    return max(bound, counted)


# The encodings litellm ships (any other would be fetched from the internet).
_BUNDLED_ENCODINGS = frozenset({"cl100k_base", "o200k_base"})


@functools.lru_cache(maxsize=256)
def _tiktoken_knows(model: str) -> bool:
    """Whether tiktoken has ``model``'s own tokenizer (OpenAI models); for others
    litellm would count with a default one, no better than the bound."""
    try:
        import tiktoken
    except ImportError:  # a litellm dependency; without it, the bound
        return False
    name = model.split("/", 1)[1] if model.startswith(("openai/", "azure/")) else model
    try:
        encoding = tiktoken.encoding_name_for_model(name)
    except KeyError:
        return False
    return encoding in _BUNDLED_ENCODINGS


def worst_case_usd(
    messages: list[dict[str, str]],
    max_tokens: int,
    prices: tuple[float, float],
    model: str | None = None,
) -> float:
    """What a call may cost at most: its prompt (an upper bound) plus ``max_tokens`` of
    answer."""
    prompt = prompt_tokens(messages, model) if prices[0] > 0 else 0
    return prompt * prices[0] + max_tokens * prices[1]


def usage_usd(usage: Usage, prices: tuple[float, float]) -> float:
    """What a call cost, from the tokens it used."""
    return usage.prompt_tokens * prices[0] + usage.completion_tokens * prices[1]


class Budget:
    """The spend of a run against an optional limit; shared by every teacher of the run.

    Args:
        limit_usd: The budget, or ``None`` to only count.
    """

    def __init__(self, limit_usd: float | None = None) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = 0.0
        self.reserved_usd = 0.0

    def reserve(self, estimate_usd: float, *, teacher: str) -> None:
        """Reserve a call's worst case, or raise ``BudgetExceeded`` if it would cross the limit."""
        limit = self.limit_usd
        if limit is not None and self.spent_usd + self.reserved_usd + estimate_usd > limit:
            raise BudgetExceeded(
                f"budget_usd {limit:g} reached: ${self.spent_usd:.4f} spent, "
                f"${self.reserved_usd:.4f} in flight, the next call to teacher {teacher!r} "
                f"may cost ${estimate_usd:.4f}; finished work is saved - raise budget_usd "
                "and rerun the same command to resume"
            )
        self.reserved_usd += estimate_usd

    def settle(self, estimate_usd: float, actual_usd: float) -> None:
        """Replace a reservation by what the call cost (0 for a failed call)."""
        self.reserved_usd = max(0.0, self.reserved_usd - estimate_usd)
        self.spent_usd += actual_usd
