"""The engine: what stands between an LLM caller (teacher, writer, judge) and the network.

    client.py    the one call path: cache, budget, breaker, limits, retries, timeout, send
    send.py      its send step (litellm, the direct transport, a given function)
    cache.py     durable call cache (SQLite): a call that returned is never paid for twice
    limits.py    per-model rate limits, adaptive (AIMD) concurrency, Retry-After
    breaker.py   circuit breaker: a model that keeps failing is taken out of rotation
    budget.py    prices, spend accounting and the ``budget_usd`` stop
    estimate.py  pre-run cost estimates (``arbitrage estimate``)
    transport.py ``transport: direct``: an aiohttp client for OpenAI-compatible servers

Each piece is independent and per model (except the cache and the budget, which a
run shares), so one slow or dead teacher never blocks the others.
"""

from arbitrage.engine.breaker import BreakerEvent, CircuitBreaker
from arbitrage.engine.budget import Budget
from arbitrage.engine.cache import CallCache, request_key
from arbitrage.engine.client import CallStats, LLMClient
from arbitrage.engine.limits import TeacherLimits

__all__ = [
    "BreakerEvent",
    "Budget",
    "CallCache",
    "CallStats",
    "CircuitBreaker",
    "LLMClient",
    "TeacherLimits",
    "request_key",
]
