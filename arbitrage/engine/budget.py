"""Prices, spend and the ``budget_usd`` stop.

Before each call the teacher reserves its worst-case cost (estimated prompt tokens
plus ``max_tokens`` at the teacher's price); the call is refused with
``BudgetExceeded`` if spent + reserved + this reservation would cross the budget.
When the call returns, the reservation is replaced by its actual cost. Calls served
from the cache cost nothing.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

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
    if not model.startswith("local/"):
        from arbitrage.llm import litellm

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


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    """A rough token count (4 characters a token), for reservations and estimates."""
    return len(json.dumps(messages, ensure_ascii=False)) // 4 + 4


def worst_case_usd(
    messages: list[dict[str, str]], max_tokens: int, prices: tuple[float, float]
) -> float:
    """What a call may cost at most: its prompt (estimated) plus ``max_tokens`` of answer."""
    return prompt_tokens(messages) * prices[0] + max_tokens * prices[1]


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
