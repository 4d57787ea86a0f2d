"""Teachers: a litellm model string plus its call parameters; where a prompt is sent.

A teacher never raises on a failed call: the failure becomes a ``Generation``
with ``error`` set, so a failed request is data, never a silent empty row.

Every call goes through the engine (``arbitrage/engine``): the durable cache first
(a call that already came back is never paid for twice), then the budget, the
circuit breaker and the teacher's own limits. Retries are ours, not the HTTP
client's, so a 429 is counted, honours ``Retry-After`` and slows only this teacher.
The request itself goes out through ``litellm.acompletion``, or, for ``transport:
direct``, straight to an OpenAI-compatible server (``engine/transport.py``).
"""

from __future__ import annotations

import asyncio
import dataclasses
import email.utils
import os
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from arbitrage.config import RunConfig, TeacherConfig
from arbitrage.engine.breaker import CircuitBreaker
from arbitrage.engine.budget import (
    Budget,
    prompt_tokens,
    teacher_prices,
    usage_usd,
    worst_case_usd,
)
from arbitrage.engine.cache import CallCache, request_key
from arbitrage.engine.limits import TeacherLimits
from arbitrage.engine.transport import ChatReply, MalformedReply, chat_reply
from arbitrage.errors import ConfigError, TeacherUnavailable
from arbitrage.llm import CompletionFn, completion_fn, retryable_errors, scrub
from arbitrage.records import Generation, Prompt, Usage, content_id


@dataclass
class TeacherStats:
    """What one teacher did in this process (``report.json`` ``engine``)."""

    requests: int = 0  # HTTP attempts sent
    cached: int = 0  # answers served from the call cache
    ok: int = 0
    failed: int = 0
    retries: int = 0
    rate_limited: int = 0
    rerouted: int = 0  # calls routed here that met an open circuit and went elsewhere
    tokens: int = 0
    cost_usd: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class Teacher:
    """One teacher model.

    Args:
        config: Model string and parameters.
        completion_fn: Anything with ``litellm.acompletion``'s signature; defaults
            to litellm (with the ``local/`` provider registered when needed).
        cache: The run's call cache, or ``None`` for none.
        budget: The run's budget (shared by its teachers), or ``None`` to not count.
        breaker: This teacher's circuit breaker (default: 5 failures, 60 s cooldown).
    """

    def __init__(
        self,
        config: TeacherConfig,
        *,
        completion_fn: CompletionFn | None = None,
        cache: CallCache | None = None,
        budget: Budget | None = None,
        breaker: CircuitBreaker | None = None,
    ) -> None:
        self.config = config
        self.name = config.name
        self.cache = cache
        self.budget = budget or Budget()
        self.breaker = breaker or CircuitBreaker(config.name)
        self.limits = TeacherLimits(
            config.max_concurrency,
            requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute,
        )
        self.stats = TeacherStats()
        self._completion_fn = completion_fn
        self._prices: tuple[float, float] | None = None
        self._call: _CallPlan | None = None

    @classmethod
    def from_model(cls, name: str, model: str, **params: Any) -> Teacher:
        """Shorthand: ``Teacher.from_model("gpt", "openai/gpt-4o-mini", max_tokens=256)``."""
        return cls(TeacherConfig(name=name, model=model, **params))

    def _api_key(self) -> str | None:
        env = self.config.api_key_env
        if env is None:
            return None
        key = os.environ.get(env)
        if not key:
            raise ConfigError(f"teacher {self.name!r}: environment variable {env} is not set")
        return key

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
        try:
            return await self._complete(messages, prompt_id, max_tokens)
        except TeacherUnavailable as exc:
            return self._failed(prompt_id, f"TeacherUnavailable: {exc}", 0.0)

    async def agenerate(self, prompt: Prompt) -> Generation:
        """Answer one prompt.

        Raises:
            TeacherUnavailable: the circuit is open (the pipeline routes elsewhere).
            BudgetExceeded: the call could cross the run's ``budget_usd``.
        """
        return await self._complete(prompt.messages(), prompt.id, None)

    async def _complete(
        self, messages: list[dict[str, str]], prompt_id: str, max_tokens: int | None
    ) -> Generation:
        kwargs = self.request(messages, max_tokens=max_tokens, key=prompt_id)
        cache_key = request_key(kwargs) if self.cache is not None else ""
        if self.cache is not None:
            hit = self.cache.get(cache_key)
            if hit is not None:
                self.stats.cached += 1
                return dataclasses.replace(hit, prompt_id=prompt_id, teacher=self.name)
        gen = await self._send(kwargs, prompt_id)
        if self.cache is not None:
            self.cache.put(cache_key, gen)  # failed calls are not stored: a rerun retries them
        return gen

    async def _send(self, kwargs: dict[str, Any], prompt_id: str) -> Generation:
        key = self._api_key()
        send = dict(kwargs)
        if key is not None:
            send["api_key"] = key
        if self._completion_fn is None and not self.config.model.startswith("local/"):
            send["max_retries"] = 0  # our retries, so 429s are seen, counted and honoured
        fn, retry_on, overload = self._call or self._plan()
        tokens = prompt_tokens(kwargs["messages"]) + int(kwargs["max_tokens"])
        estimate = (
            self.worst_case_usd(kwargs["messages"], int(kwargs["max_tokens"]))
            if self.budget.limit_usd is not None
            else 0.0
        )
        start = time.perf_counter()
        attempts = self.config.retries + 1
        error: BaseException | None = None
        for attempt in range(attempts):
            self.budget.reserve(estimate, teacher=self.name)
            actual = 0.0
            retry_after: float | None = None
            try:
                if not self.breaker.allow():
                    raise TeacherUnavailable(
                        f"teacher {self.name!r} is out of rotation (circuit open)",
                        teacher=self.name,
                        prompt_id=prompt_id,
                    )
                async with self.limits.slot(tokens):
                    self.stats.requests += 1
                    try:
                        response = await fn(**send)
                        gen = self._to_generation(response, prompt_id, time.perf_counter() - start)
                    except retry_on as exc:
                        error = exc
                        if isinstance(exc, overload):
                            # Before the slot is given back (as the breaker's count below),
                            # so no waiting call on any worker slips in ahead of the pause.
                            retry_after = _retry_after(exc)
                            self.limits.overloaded(retry_after)
                            self.stats.rate_limited += 1
                        self.breaker.failure(type(exc).__name__)
                    except Exception as exc:  # not retryable: 4xx, bad request, broken provider
                        self.stats.failed += 1
                        return self._failed(prompt_id, self._message(exc, key), start)
                    else:
                        actual = gen.cost_usd
                        self.breaker.success()
                        self.limits.success()
                        self._count(gen)
                        return gen
            finally:
                self.budget.settle(estimate, actual)
            if attempt + 1 == attempts:
                break
            self.stats.retries += 1
            if retry_after is None:  # the server's Retry-After pauses the teacher in its limits
                await asyncio.sleep(random.uniform(0, min(20.0, 0.5 * 2**attempt)))
        self.stats.failed += 1
        return self._failed(prompt_id, self._message(error, key), start)

    def _message(self, exc: BaseException | None, key: str | None) -> str:
        if isinstance(exc, MalformedReply):
            return scrub(f"malformed reply: {exc}", [key or ""])[:500]
        return scrub(f"{type(exc).__name__}: {exc}", [key or ""])[:500]

    def _failed(self, prompt_id: str, message: str, start: float) -> Generation:
        return Generation(
            prompt_id=prompt_id,
            teacher=self.name,
            model=self.config.model,
            latency_s=time.perf_counter() - start if start else 0.0,
            error=message,
        )

    def _count(self, gen: Generation) -> None:
        self.stats.ok += 1
        self.stats.tokens += gen.usage.total_tokens
        self.stats.cost_usd += gen.cost_usd

    def prices(self) -> tuple[float, float]:
        """USD per (input, output) token: the config's overrides, else litellm's price map."""
        if self._prices is None:
            self._prices = teacher_prices(self.config)
        return self._prices

    def worst_case_usd(
        self, messages: list[dict[str, str]], max_tokens: int | None = None
    ) -> float:
        """The most a call with ``messages`` may cost (what the budget reserves for it)."""
        return worst_case_usd(messages, max_tokens or self.config.max_tokens, self.prices())

    def _plan(self) -> _CallPlan:
        """What to call and which failures to retry: decided once, not per call.

        A malformed 200 (``MalformedReply``) is retried like a 5xx, within ``retries``:
        litellm raises ``InternalServerError`` for most malformed bodies already, and
        both transports must treat the same reply alike.
        """
        if self._completion_fn is not None:
            self._call = (self._completion_fn, (ConnectionError, MalformedReply), ())
        elif self.config.transport == "direct":
            from arbitrage.engine.transport import direct_completion

            retry_on = (*retryable_errors(), MalformedReply)
            self._call = (direct_completion, retry_on, _overload_errors())
        else:
            retry_on = (*retryable_errors(), MalformedReply)
            self._call = (completion_fn(self.config.model), retry_on, _overload_errors())
        return self._call

    def _to_generation(self, response: Any, prompt_id: str, latency: float) -> Generation:
        if isinstance(response, ChatReply):  # the direct transport: parsed, priced by token
            text, finish_reason, counted = response.text, response.finish_reason, response.usage
            cost = usage_usd(counted, self.prices())
        else:  # litellm's response, checked as the direct transport checks its body
            reply = chat_reply(response)
            text, finish_reason, counted = reply.text, reply.finish_reason, reply.usage
            cost = self._cost(response, counted)
        return Generation(
            prompt_id=prompt_id,
            teacher=self.name,
            model=self.config.model,
            text=text.strip(),
            finish_reason=finish_reason,
            usage=counted,
            cost_usd=cost,
            latency_s=latency,
        )

    def _cost(self, response: Any, usage: Usage) -> float:
        cfg = self.config
        if cfg.input_cost_per_mtok is not None or cfg.output_cost_per_mtok is not None:
            return usage_usd(usage, self.prices())
        if cfg.model.startswith("local/"):
            return 0.0
        # litellm priced the response already (None: not in its price map); pricing it
        # again costs about 1 ms of CPU a call.
        hidden = getattr(response, "_hidden_params", None) or {}
        if "response_cost" in hidden:
            return float(hidden["response_cost"] or 0.0)
        try:
            return float(completion_cost(response) or 0.0)
        except Exception:  # unknown model in the price map: cost unknown, not an error
            return 0.0


# The completion function, the failures it retries and those that mean "slow down".
_CallPlan = tuple[CompletionFn, tuple[type[BaseException], ...], tuple[type[BaseException], ...]]


def _overload_errors() -> tuple[type[BaseException], ...]:
    """The failures that mean "slow down": rate limits and timeouts."""
    from arbitrage.llm import litellm

    exc = litellm().exceptions
    return (exc.RateLimitError, exc.Timeout)


def _retry_after(exc: BaseException) -> float | None:
    """Seconds from the ``Retry-After`` header litellm keeps on the exception, if any."""
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_tz(str(value))
        return None if parsed is None else max(0.0, email.utils.mktime_tz(parsed) - time.time())


def completion_cost(response: Any) -> float:
    from arbitrage.llm import litellm

    return float(litellm().completion_cost(completion_response=response))


def make_teachers(configs: Sequence[TeacherConfig], **engine: Any) -> list[Teacher]:
    """Teachers for a list of configs (``engine``: ``cache``, ``budget`` shared by all)."""
    return [Teacher(c, **engine) for c in configs]


def engine_teachers(config: RunConfig) -> list[Teacher]:
    """The teachers of a run, sharing one budget, each with the configured breaker."""
    budget = Budget(config.budget_usd)
    brk = config.breaker
    return [
        Teacher(
            t,
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
