"""Teachers: a litellm model string plus its call parameters; where a prompt is sent.

A teacher never raises on a failed call: the failure becomes a ``Generation``
with ``error`` set, so a failed request is data, never a silent empty row.

Every call goes through the one call path, ``calls/client.py``: the durable cache
first (a call that already came back is never paid for twice), then the budget, the
circuit breaker and the teacher's own limits; retries (tenacity) are ours, not the
HTTP client's, so a 429 is counted, honours ``Retry-After`` and slows only this
teacher. The request goes out through ``litellm.acompletion``, or, for ``transport:
direct``, straight to an OpenAI-compatible server (``calls/transport.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Sequence
from typing import Any

from arbitrage.calls.batch import BatchJournal, BatchSender, batch_sender
from arbitrage.calls.breaker import CircuitBreaker
from arbitrage.calls.budget import PER_MTOK, Budget, batch_price_per_token
from arbitrage.calls.cache import CallCache
from arbitrage.calls.client import CallStats, LLMClient, OnClient
from arbitrage.calls.limits import TeacherLimits
from arbitrage.calls.llm import CompletionFn
from arbitrage.calls.send import completion_cost
from arbitrage.config import RunConfig, TeacherConfig
from arbitrage.errors import TeacherUnavailable
from arbitrage.records import Generation, Prompt, content_id

#: What one teacher did in this process (``report.json`` ``engine``).
TeacherStats = CallStats

__all__ = [
    "Teacher",
    "TeacherStats",
    "completion_cost",
    "engine_report",
    "engine_teachers",
    "make_teachers",
    "open_cache",
]


class Teacher(OnClient):
    """One teacher model.

    Args:
        config: Model string and parameters.
        completion_fn: Anything with ``litellm.acompletion``'s signature (the send
            step); defaults to litellm (with the ``local/`` provider registered when
            needed), or the direct transport for ``transport: direct``.
        cache: The run's call cache, or ``None`` for none.
        budget: The run's budget (shared by its teachers), or ``None`` to not count.
        breaker: This teacher's circuit breaker (default: 5 failures, 60 s cooldown).
        limits: This teacher's limits (default: the config's ``max_concurrency``,
            ``requests_per_minute`` and ``tokens_per_minute``).
        client: The call path (default: one through the above). ``budget``,
            ``breaker`` and ``limits`` are then what the teacher reports, and the
            client's own are used for calls (a Ray run's driver: ``executors/ray/remote.py``).
        batch: The send step of ``mode: batch`` (``calls/batch.py``): calls go out in
            batch jobs, at batch prices, with no per-call timeout or concurrency limit.
    """

    def __init__(
        self,
        config: TeacherConfig,
        *,
        completion_fn: CompletionFn | None = None,
        cache: CallCache | None = None,
        budget: Budget | None = None,
        breaker: CircuitBreaker | None = None,
        limits: TeacherLimits | None = None,
        client: LLMClient | None = None,
        batch: BatchSender | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.batch = batch
        prices = (config.input_cost_per_mtok, config.output_cost_per_mtok)
        if batch is not None:
            unit = batch_price_per_token(config, batch.settings.discount)
            prices = (unit[0] * PER_MTOK, unit[1] * PER_MTOK)
        self.budget = budget or Budget()
        self.breaker = breaker or CircuitBreaker(config.name)
        self.limits = limits or TeacherLimits(
            config.max_concurrency,
            requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute,
        )
        self.client = client or LLMClient(
            config.name,
            config.model,
            send=batch or completion_fn,
            transport=config.transport,
            api_key_env=config.api_key_env,
            cache=cache,
            budget=self.budget,
            breaker=self.breaker,
            # a batch holds a round's calls at once, and may take hours
            limits=None if batch is not None else self.limits,
            retries=config.retries,
            timeout_s=None if batch is not None else config.timeout_s,
            max_reply_chars=config.max_reply_chars,
            input_cost_per_mtok=prices[0],
            output_cost_per_mtok=prices[1],
            label=f"teacher {config.name!r}",
        )

    @classmethod
    def from_model(cls, name: str, model: str, **params: Any) -> Teacher:
        """Shorthand: ``Teacher.from_model("gpt", "openai/gpt-4o-mini", max_tokens=256)``."""
        return cls(TeacherConfig(name=name, model=model, **params))

    def request(
        self,
        messages: list[dict[str, str]],
        *,
        max_tokens: int | None = None,
        key: str = "",
        sample: int = 0,
    ) -> dict[str, Any]:
        """The keyword arguments of the litellm call (without the API key).

        ``seed`` is derived from ``key`` (the prompt id), the teacher name and, past
        the first, the sample index, so a rerun asks for the same samples and each
        sample is its own cache row; providers without a seed ignore it.
        """
        cfg = self.config
        parts = (key, self.name) if sample == 0 else (key, self.name, f"sample {sample}")
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": max_tokens or cfg.max_tokens,
            "timeout": cfg.timeout_s,
            "seed": int(content_id(*parts, length=8), 16) % 2**31,
            **cfg.params,
        }
        if cfg.api_base:
            kwargs["api_base"] = cfg.api_base
        return kwargs

    def available(self) -> bool:
        """Whether the pipeline may route to this teacher now (its circuit is not open)."""
        return self.breaker.available()

    async def acomplete(
        self, messages: list[dict[str, str]], *, prompt_id: str = "", max_tokens: int | None = None
    ) -> Generation:
        """Send ``messages``; return the answer or the reason there is none.

        Raises:
            BudgetExceeded: the call could cross the run's ``budget_usd``.
        """
        request = self.request(messages, max_tokens=max_tokens, key=prompt_id)
        try:
            return await self.client.complete(request, prompt_id=prompt_id)
        except TeacherUnavailable as exc:
            return Generation(
                prompt_id=prompt_id,
                teacher=self.name,
                model=self.config.model,
                error=f"TeacherUnavailable: {exc}",
            )

    async def agenerate(self, prompt: Prompt, *, sample: int = 0) -> Generation:
        """Answer one prompt (``sample``: which of the teacher's samples, for its seed).

        Raises:
            TeacherUnavailable: the circuit is open (the pipeline routes elsewhere).
            BudgetExceeded: the call could cross the run's ``budget_usd``.
        """
        request = self.request(prompt.messages(), key=prompt.id, sample=sample)
        gen = await self.client.complete(request, prompt_id=prompt.id)
        return gen if sample == 0 else dataclasses.replace(gen, sample=sample)

    async def asample(self, prompt: Prompt) -> list[Generation]:
        """The teacher's ``samples`` answers to one prompt, each with its own seed and
        cache row: those not cached in one request with ``n`` where ``samples_via``
        allows and the provider takes it (never in batch mode: a batch line a sample),
        else one call each. Raises as ``agenerate`` does."""
        if self.config.samples == 1:
            return [await self.agenerate(prompt)]
        if self.batch is None and self.client.takes_n(self.config.samples_via):
            requests = [
                self.request(prompt.messages(), key=prompt.id, sample=i)
                for i in range(self.config.samples)
            ]
            gens = await self.client.complete_samples(requests, prompt_id=prompt.id)
            return [dataclasses.replace(g, sample=i) for i, g in enumerate(gens)]
        calls = [self.agenerate(prompt, sample=i) for i in range(self.config.samples)]
        got = await asyncio.gather(*calls, return_exceptions=True)  # every call lands first
        for result in got:
            if isinstance(result, BaseException):
                raise result
        return list(got)  # type: ignore[arg-type]

    def prices(self) -> tuple[float, float]:
        """USD per (input, output) token: the config's overrides, else litellm's price map."""
        return self.client.prices()

    def worst_case_usd(
        self, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> float:
        """The most a call with ``messages`` may cost (what the budget reserves for it)."""
        return self.client.worst_case_usd(messages, max_tokens or self.config.max_tokens)

    async def aclose(self) -> None:
        """Stop polling batch jobs (a rerun re-attaches to them)."""
        if self.batch is not None:
            await self.batch.aclose()


def make_teachers(configs: Sequence[TeacherConfig], **engine: Any) -> list[Teacher]:
    """Teachers for a list of configs (``engine``: ``cache``, ``budget`` shared by all)."""
    return [Teacher(c, **engine) for c in configs]


def engine_teachers(
    config: RunConfig,
    *,
    cache: CallCache | None = None,
    budget: Budget | None = None,
    batch: bool = True,
) -> list[Teacher]:
    """The teachers of a run, sharing one budget (default: a new one at ``budget_usd``)
    and the run's cache, each with the configured breaker; those with ``mode: batch``
    send through batch jobs recorded in ``<out>/batches.jsonl`` (``batch=False``: online)."""
    budget = budget or Budget(config.budget_usd)
    brk = config.breaker
    journal = None
    if batch and any(t.mode == "batch" for t in config.teachers):
        journal = BatchJournal.shared(os.path.join(config.out, "batches.jsonl"))
    return [
        Teacher(
            t,
            cache=cache,
            budget=budget,
            breaker=CircuitBreaker(t.name, failures=brk.failures, cooldown_s=brk.cooldown_s),
            batch=batch_sender(t, config, journal) if journal and t.mode == "batch" else None,
        )
        for t in config.teachers
    ]


def open_cache(config: RunConfig) -> CallCache | None:
    """The run's call cache (``cache.path``, default ``<out>/cache.sqlite``), or ``None``."""
    if not config.cache.enabled:
        return None
    return CallCache(config.cache.path or os.path.join(config.out, "cache.sqlite"))


def engine_report(teachers: Sequence[Teacher], cache: CallCache | None) -> dict[str, Any]:
    """``report.json`` keys ``engine`` (per-teacher calls, cache hits, retries, 429s,
    concurrency, spend) and ``breaker`` (every circuit state change)."""
    per_teacher = {
        t.name: {
            **t.stats.to_dict(),
            "concurrency": t.limits.concurrency,
            "concurrency_decreases": t.limits.decreases,
        }
        for t in teachers
    }
    budget = teachers[0].budget if teachers else Budget()
    return {
        "engine": {
            "teachers": per_teacher,
            "cache": None if cache is None else {"path": str(cache.path), "hits": cache.hits},
            "spent_usd": round(budget.spent_usd, 6),
            "budget_usd": budget.limit_usd,
        },
        "breaker": [e.to_dict() for t in teachers for e in t.breaker.events],
    }
