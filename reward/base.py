"""The RewardModel base class.

A reward model scores (prompt, completion) pairs; higher is better. Implement
``ascore_batch`` for models that batch (HF classifiers), or only ``ascore`` and
inherit the batch loop (judges that make one call per pair).
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, TypeVar, cast

from arbitrage.records import Outcome, Prompt

T = TypeVar("T")


async def gather_all(aws: Iterable[Awaitable[T]]) -> list[T]:
    """``asyncio.gather``, but every call in flight lands (paid for, and cached) before the
    first error is raised."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    failed = next((r for r in results if isinstance(r, BaseException)), None)
    if failed is not None:
        raise failed
    return cast(list[T], results)  # no exception among them


@dataclass(frozen=True)
class Score:
    """A reward and the parts it was made from (for reports and debugging).

    ``value`` is ``None`` when the pair could not be scored (e.g. a judge's reply
    held no score): such a candidate never wins.
    """

    value: float | None
    details: dict[str, float] = field(default_factory=dict)


class RewardModel(ABC):  # noqa: B024 - abstract by contract: override one of two methods
    """Scores completions. Subclasses override ``ascore`` or ``ascore_batch``."""

    name: ClassVar[str] = "base"
    #: Scores depend on the other answers to the same prompt (a pairwise judge): a
    #: batch split over workers is then cut only between prompts.
    per_prompt: ClassVar[bool] = False
    #: A model that scores many pairs in one forward pass (HF, local): the loop hands it
    #: a round's answers at once, one batch at a time, not a prompt at a time.
    batched: ClassVar[bool] = False

    async def ascore(self, prompt: Prompt, completion: str) -> Score:
        """Score one completion."""
        return (await self.ascore_batch([(prompt, completion)]))[0]

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        """Score many completions; the default runs ``ascore`` on each concurrently."""
        if type(self).ascore is RewardModel.ascore:
            raise NotImplementedError(
                f"{type(self).__name__} must implement ascore or ascore_batch"
            )
        return await gather_all(self.ascore(p, c) for p, c in pairs)

    def score(self, prompt: Prompt, completion: str) -> Score:
        """Synchronous ``ascore``."""
        return asyncio.run(self.ascore(prompt, completion))

    def score_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        """Synchronous ``ascore_batch``."""
        return asyncio.run(self.ascore_batch(pairs))

    def describe(self) -> str:
        """One line for reports and dataset cards."""
        return self.name

    def replay(self, outcomes: Sequence[Outcome]) -> None:  # noqa: B027 - an optional hook
        """Relearn state from an interrupted run's outcomes (stateless models: nothing)."""

    def parts(self) -> list[RewardModel]:
        """The models that make the calls (a run gives each its cache and budget)."""
        return [self]


class RewardWrapper(RewardModel):
    """Adjusts another reward model's scores (normalisation, length control, language gate).

    Subclasses implement ``adjust``; the wrapped model's details are kept.
    """

    def __init__(self, inner: RewardModel) -> None:
        self.inner = inner

    async def ascore_batch(self, pairs: Sequence[tuple[Prompt, str]]) -> list[Score]:
        scores = await self.inner.ascore_batch(pairs)
        return await self.adjust(pairs, scores) if pairs else scores

    @abstractmethod
    async def adjust(self, pairs: Sequence[tuple[Prompt, str]], scores: list[Score]) -> list[Score]:
        """The adjusted scores of ``pairs``, given the wrapped model's."""

    def replay(self, outcomes: Sequence[Outcome]) -> None:
        self.inner.replay(outcomes)

    def parts(self) -> list[RewardModel]:
        return self.inner.parts()

    def describe(self) -> str:
        return self.inner.describe()
