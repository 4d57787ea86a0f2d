"""Teachers: a litellm model string plus its call parameters; where a prompt is sent.

A teacher never raises on a failed call: the failure becomes a ``Generation``
with ``error`` set, so a failed request is data, never a silent empty row.

Every call goes through the one call path, ``engine/client.py``: the durable cache
first (a call that already came back is never paid for twice), then the budget, the
circuit breaker and the teacher's own limits; retries (tenacity) are ours, not the
HTTP client's, so a 429 is counted, honours ``Retry-After`` and slows only this
teacher. The request goes out through ``litellm.acompletion``, or, for ``transport:
direct``, straight to an OpenAI-compatible server (``engine/transport.py``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from arbitrage.config import RunConfig, TeacherConfig
from arbitrage.engine.breaker import CircuitBreaker
from arbitrage.engine.budget import Budget
from arbitrage.engine.cache import CallCache
from arbitrage.engine.client import CallStats, LLMClient
from arbitrage.engine.limits import TeacherLimits
from arbitrage.engine.send import completion_cost
from arbitrage.errors import TeacherUnavailable
from arbitrage.llm import CompletionFn
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


class Teacher:
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
            client's own are used for calls (a Ray run's driver: ``cluster/remote.py``).
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
    ) -> None:
        self.config = config
        self.name = config.name
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
            send=completion_fn,
            transport=config.transport,
            api_key_env=config.api_key_env,
            cache=cache,
            budget=self.budget,
            breaker=self.breaker,
            limits=self.limits,
            retries=config.retries,
            timeout_s=config.timeout_s,
            max_reply_chars=config.max_reply_chars,
            input_cost_per_mtok=config.input_cost_per_mtok,
            output_cost_per_mtok=config.output_cost_per_mtok,
            label=f"teacher {config.name!r}",
        )

    @classmethod
    def from_model(cls, name: str, model: str, **params: Any) -> Teacher:
        """Shorthand: ``Teacher.from_model("gpt", "openai/gpt-4o-mini", max_tokens=256)``."""
        return cls(TeacherConfig(name=name, model=model, **params))

    @property
    def cache(self) -> CallCache | None:
        """The call cache the client answers from."""
        return self.client.cache

    @cache.setter
    def cache(self, cache: CallCache | None) -> None:
        self.client.cache = cache

    @property
    def stats(self) -> CallStats:
        """The client's counters."""
        return self.client.stats

    @stats.setter
    def stats(self, stats: CallStats) -> None:
        self.client.stats = stats

    def request(
        self, messages: list[dict[str, str]], *, max_tokens: int | None = None, key: str = ""
    ) -> dict[str, Any]:
        """The keyword arguments of the litellm call (without the API key).

        ``seed`` is derived from ``key`` (the prompt id) and the teacher name, so a
        rerun asks for the same sample; providers without a seed ignore it.
        """
        cfg = self.config
        kwargs: dict[str, Any] = {
            "model": cfg.model,
            "messages": messages,
            "temperature": cfg.temperature,
            "max_tokens": max_tokens or cfg.max_tokens,
            "timeout": cfg.timeout_s,
            "seed": int(content_id(key, self.name, length=8), 16) % 2**31,
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

    async def agenerate(self, prompt: Prompt) -> Generation:
        """Answer one prompt.

        Raises:
            TeacherUnavailable: the circuit is open (the pipeline routes elsewhere).
            BudgetExceeded: the call could cross the run's ``budget_usd``.
        """
        request = self.request(prompt.messages(), key=prompt.id)
        return await self.client.complete(request, prompt_id=prompt.id)

    def prices(self) -> tuple[float, float]:
        """USD per (input, output) token: the config's overrides, else litellm's price map."""
        return self.client.prices()

    def worst_case_usd(
        self, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> float:
        """The most a call with ``messages`` may cost (what the budget reserves for it)."""
        return self.client.worst_case_usd(messages, max_tokens or self.config.max_tokens)


def make_teachers(configs: Sequence[TeacherConfig], **engine: Any) -> list[Teacher]:
    """Teachers for a list of configs (``engine``: ``cache``, ``budget`` shared by all)."""
    return [Teacher(c, **engine) for c in configs]


def engine_teachers(
    config: RunConfig, *, cache: CallCache | None = None, budget: Budget | None = None
) -> list[Teacher]:
    """The teachers of a run, sharing one budget (default: a new one at ``budget_usd``)
    and the run's cache, each with the configured breaker."""
    budget = budget or Budget(config.budget_usd)
    brk = config.breaker
    return [
        Teacher(
            t,
            cache=cache,
            budget=budget,
            breaker=CircuitBreaker(t.name, failures=brk.failures, cooldown_s=brk.cooldown_s),
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
